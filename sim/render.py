"""Plain-text renderings of results and traces for the CLI.

The text is a rendering of structured data (the same data ``--json`` prints),
never the other way round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sim.experiments import ConnectResult, DigResult
from sim.net.api import Endpoint
from sim.trace import Trace

if TYPE_CHECKING:
    from sim.experiments.read import ReadResult
    from sim.experiments.send import SendResult
    from sim.hosting.runtime import Lab

__all__ = [
    "render_connect",
    "render_dig",
    "render_endpoints",
    "render_read",
    "render_send",
    "render_trace",
]

KIND_LABEL = {
    "dns": "DNS",
    "net": "NET",
    "smtp": "SMTP",
    "tls": "TLS",
    "check": "CHECK",
    "queue": "QUEUE",
    "delivery": "STORE",
    "outcome": "RESULT",
    "imap": "IMAP",
    "pop3": "POP3",
    "mailbox": "MDA",
    "route": "ROUTE",
}


def render_trace(trace: Trace) -> str:
    lines = []
    for event in trace:
        label = KIND_LABEL.get(event.kind, event.kind.upper())
        lines.append(f"{event.t:>9.3f}  {label:<6} {event.node:<12} {event.summary}")
    return "\n".join(lines)


def render_dig(result: DigResult) -> str:
    lines = [
        f";; QUESTION: {result.name} {result.type}",
        f";; status: {result.rcode}  server: {result.server}",
    ]
    if result.answers:
        lines.append(";; ANSWER SECTION:")
        for a in result.answers:
            lines.append(f"{a['name']:<32} {a['ttl']:<6} IN {a['type']:<6} {a['data']}")
    lines += ["", ";; TRACE:", render_trace(result.trace)]
    return "\n".join(lines)


def render_connect(result: ConnectResult) -> str:
    if result.outcome == "connected":
        head = f"connected to {result.dst}:{result.port}"
        if result.banner:
            head += f"\n{result.banner}"
    else:
        reason = (result.verdict or {}).get("explanation") or ""
        head = f"blocked: {result.error} connecting to {result.dst}:{result.port}"
        if reason:
            head += f"\n  {reason}"
    return head + "\n\n;; TRACE:\n" + render_trace(result.trace)


def render_send(result: SendResult) -> str:
    head = f"{result.outcome.upper()}"
    if result.stage == "dns":
        # RFC 7505 §4.1: the sender's own verdict, before any connection.
        head += " by the sender (DNS said no; no server was contacted)"
    elif result.stage:
        head += f" at {result.stage}"
    if result.reply:
        reply = result.reply
        head += f": {reply.get('code')} {reply.get('enhanced') or ''} {reply.get('text')}".rstrip()
    lines = [head, f"  from <{result.mail_from}> to {', '.join(result.rcpts)}"]
    if result.server:
        chosen = result.server
        lines.append(
            f"  sent straight to {chosen['host']} [{chosen['address']}] (server "
            f"{chosen['server']}), not where the MX records point"
        )
    if result.verdict:
        lines.append(f"  {result.verdict.get('explanation', '')}")
    if result.queue_id:
        lines.append(f"  relay queue id {result.queue_id}")
    if result.checks:
        lines.append("  checks: " + " ".join(f"{k}={v}" for k, v in result.checks.items()))
    if len(result.recipients) > 1:
        for r in result.recipients:
            lines.append(f"  <{r['rcpt']}>: {r['outcome']}")
    from sim.present import alignment_text

    panel = alignment_text(result)
    if panel:
        lines += ["", panel.rstrip("\n")]
    return "\n".join(lines) + "\n\n;; TRACE:\n" + render_trace(result.trace)


def render_endpoints(lab: Lab, endpoints: list[Endpoint]) -> str:
    backend = lab.backend
    who = backend.as_node or "outside"
    lines = [
        f"maillab: {lab.topology.name} is up on the {backend.name} backend "
        f"(state in {lab.state_dir})",
        f"Real clients on this machine speak as {who}. Lab CA: {lab.state_dir / 'tls' / 'ca.pem'}",
        "",
        f"{'node':<14} {'service':<11} {'lab address':<22} reach it at",
    ]
    for ep in endpoints:
        where = ep.local or "(from the node's shell)"
        if ep.blocked:
            where = f"blocked: {ep.blocked}"
        lab_addr = f"{ep.lab}/{ep.proto}" if ep.proto == "udp" else ep.lab
        lines.append(f"{ep.node:<14} {ep.service:<11} {lab_addr:<22} {where}")
    lines += ["", "Ctrl-C stops the lab."]
    return "\n".join(lines)


def render_read(result: ReadResult) -> str:
    """The text ``maillab read`` prints (a rendering of the JSON)."""
    who = f"{result.user} at {result.server} ({result.protocol.upper()}, {result.folder})"
    if result.error is None:
        lines = [f"{who}: {len(result.messages)} message(s)"]
        for m in result.messages:
            flags = " ".join(m.get("flags") or []) or "-"
            lines.append(
                f"  {m.get('uid')!s:<10} {flags:<16} {m.get('size'):>7}  "
                f"{m.get('from')}  {m.get('subject')}"
            )
    else:
        lines = [f"{who}: failed at {result.stage}: {result.error}"]
    if result.tls:
        lines.append(f"TLS: {result.tls.get('version')} {result.tls.get('cipher')}")
    lines += ["", ";; TRACE:", render_trace(result.trace)]
    return "\n".join(lines)
