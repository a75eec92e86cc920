"""A sequence diagram of a trace: lanes per node, one step per exchange.

The model is built from the events the services emit (see :mod:`sim.events`)
and rendered by :mod:`sim.present.seqrender` as Mermaid ``sequenceDiagram``
text, as SVG and as 80-column text. What becomes a step:

* ``dns`` — the question as an arrow from the asking node to the server, the
  answer (or the rcode) as the reply arrow; an answer from the node's own
  cache is a note on the asking lane (no packet left the node).
* ``net`` — a TCP connection that got through is an arrow to the server
  ("TCP :25 via isp, internet"); a dropped or refused one ends at the router
  that stopped it, marked ✗. A client that then waited for its time-out gets
  a note saying how long it waited (lab time). UDP packets to port 53 that
  got through are left out: the ``dns`` step beside them says more.
* ``smtp``/``imap``/``pop3`` — each client command as an arrow, each reply as
  the answer (first line; the whole text stays in ``detail``). Server-side
  records are used only when no client recorded the dialogue (a real client
  outside the lab, ``maillab up``).
* ``tls`` — a note across both lanes: version and cipher (RFC 3207 STARTTLS).
* ``check`` — a note on the receiver with the verdict and what it cost,
  in the order the receiver ran them.
* ``queue``, ``delivery``, ``mailbox``, ``outcome`` — notes on their node.

The *failing step* is the last network block or negative reply (4xx/5xx, or
a broken dialogue) of an experiment that did not succeed: the step that
decided the outcome. Renderers highlight it.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Interface
from typing import TYPE_CHECKING, Any

from sim.events import (
    Check,
    Delivered,
    Dns,
    Forwarded,
    ImapExchange,
    ListResent,
    Net,
    Pop3Exchange,
    QueueAttempt,
    QueueBounced,
    QueueBounceDropped,
    QueueDeferred,
    QueueDelivered,
    QueueDsn,
    QueueInternalError,
    SmtpClientExchange,
    SmtpFault,
    SmtpServerAnswer,
    Tls,
)
from sim.fastclass import dataclass
from sim.trace import Trace, TraceEvent

if TYPE_CHECKING:
    from sim.experiments import ExperimentResult
    from sim.topology.model import Topology

__all__ = ["AddressBook", "Lane", "Sequence", "Step", "sequence_of"]

#: Outcomes that need no failing step highlighted.
_SUCCESS = {"delivered", "connected", "NOERROR", "ok", "read", None}


@dataclass(frozen=True)
class Lane:
    """One participant: a node of the topology, or an address outside it."""

    name: str
    address: str = ""


@dataclass(frozen=True)
class Step:
    """One arrow or note.

    ``style``: ``call`` (a request), ``reply``, ``block`` (stopped by the
    network: the arrow ends at the router), or ``note`` (on ``src``, spanning
    to ``dst`` when they differ). ``tone``: ``good``, ``warn``, ``bad`` or
    ``""``. ``text`` is short; ``detail`` the full sentence from the trace.
    """

    t: float
    style: str
    src: str
    dst: str
    text: str
    kind: str
    tone: str = ""
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "style": self.style,
            "src": self.src,
            "dst": self.dst,
            "text": self.text,
            "kind": self.kind,
            "tone": self.tone,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Sequence:
    """Lanes (left to right) and steps (top to bottom); ``failing`` is the
    index of the step that decided a failed outcome, or None."""

    lanes: tuple[Lane, ...]
    steps: tuple[Step, ...]
    failing: int | None = None
    title: str = ""

    def lane_names(self) -> list[str]:
        return [lane.name for lane in self.lanes]

    def tail(self, count: int) -> Sequence:
        """The last ``count`` steps (a lab's whole log can hold thousands),
        with the lanes they use and the failing step if it is among them."""
        if len(self.steps) <= count:
            return self
        cut = len(self.steps) - count
        steps = self.steps[cut:]
        used = {s.src for s in steps} | {s.dst for s in steps}
        failing = self.failing - cut if self.failing is not None and self.failing >= cut else None
        title = self.title or f"the last {count} of {len(self.steps)} steps"
        return Sequence(
            tuple(lane for lane in self.lanes if lane.name in used), steps, failing, title
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "lanes": [{"name": lane.name, "address": lane.address} for lane in self.lanes],
            "steps": [s.to_json() for s in self.steps],
            "failing": self.failing,
        }

    # Renderings live in seqrender (imported late: this module stays small).
    def to_mermaid(self) -> str:
        """Mermaid ``sequenceDiagram`` text (JupyterLab and GitHub render it)."""
        from sim.present.seqrender import to_mermaid

        return to_mermaid(self)

    def to_text(self, width: int = 80, *, ascii_only: bool = False) -> str:
        """The diagram in ``width`` columns of text (terminals, the TUI)."""
        from sim.present.seqrender import to_text

        return to_text(self, width, ascii_only=ascii_only)

    def to_svg(self) -> str:
        """A standalone SVG document."""
        from sim.present.seqrender import to_svg

        return to_svg(self)

    def save(self, path: Any) -> None:
        """Write ``.svg`` or ``.mmd`` (Mermaid) or ``.txt``, by the suffix."""
        from sim.present.seqrender import save

        save(self, path)

    def _repr_html_(self) -> str:
        # Lanes keep their width (shrinking would make the words unreadable):
        # a wide diagram scrolls sideways in the page instead.
        svg = self.to_svg()
        return f'<div class="maillab-picture" style="overflow-x:auto">{svg}</div>'

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return (
            f"<Sequence {len(self.lanes)} lanes ({', '.join(self.lane_names())}), "
            f"{len(self.steps)} steps"
            + (f", failing step {self.failing}" if self.failing is not None else "")
            + ">"
        )


# -- building ---------------------------------------------------------------------


class AddressBook:
    """Lab address → node name, from the topology and from the trace itself."""

    def __init__(self, topology: Topology | None, events: Iterable[TraceEvent]) -> None:
        self.names: dict[str, str] = {}
        if topology is not None:
            for node in topology.nodes:
                ip = getattr(node, "ip", None)
                if isinstance(ip, IPv4Interface):
                    self.names[str(ip.ip)] = node.name
        for event in events:
            data = event.data
            if isinstance(data, Net):
                path = data.path or []
                if path and data.src:
                    self.names.setdefault(data.src, path[0])
                if path and data.verdict == "accept" and data.dst:
                    self.names.setdefault(data.dst, path[-1])
            elif isinstance(data, Dns) and data.server and not data.cached:
                self.names.setdefault(data.server, event.node)

    def name(self, address: Any) -> str:
        text = str(address or "")
        host = text.rsplit(":", 1)[0] if text.count(":") == 1 else text
        return self.names.get(host, host or "?")


def _first_line(text: Any) -> str:
    return str(text or "").split("\n", 1)[0]


def _reply_tone(code: Any) -> str:
    if not isinstance(code, int):
        return ""
    return "bad" if code >= 500 else "warn" if code >= 400 else ""


def _answers(data: Dns) -> str:
    answers = data.answers
    if not answers:
        return data.rcode or "no answer"
    first = f"{answers[0]['type']} {answers[0]['data']}"
    return first + (f" (+{len(answers) - 1})" if len(answers) > 1 else "")


def _port(data: Net) -> str:
    return f":{data.port}" if data.port is not None else ""


_CHECK_TONE = {
    "pass": "good",
    "notlisted": "good",
    "fail": "bad",
    "permerror": "bad",
    "listed": "bad",
    "softfail": "warn",
    "temperror": "warn",
}


class _Builder:
    def __init__(self, trace: Trace, topology: Topology | None) -> None:
        self.events = list(trace)
        self.addr = AddressBook(topology, self.events)
        self.steps: list[Step] = []
        self.lanes: dict[str, Lane] = {}
        self.has_client_dialogue = any(
            isinstance(e.data, SmtpClientExchange | ImapExchange | Pop3Exchange)
            for e in self.events
        )
        self.drops: dict[str, TraceEvent] = {}  # dst:port → the net event that blocked it

    def lane(self, name: str) -> str:
        if name not in self.lanes:
            address = next((a for a, n in self.addr.names.items() if n == name), "")
            self.lanes[name] = Lane(name, address)
        return name

    def add(
        self, event: TraceEvent, style: str, src: str, dst: str, text: str, tone: str = ""
    ) -> None:
        self.steps.append(
            Step(
                t=event.t,
                style=style,
                src=self.lane(src),
                dst=self.lane(dst),
                text=text,
                kind=event.kind,
                tone=tone,
                detail=event.summary,
            )
        )

    def build(self) -> list[Step]:
        for event in self.events:
            handler = getattr(self, f"on_{event.kind}", None)
            if handler is not None:
                handler(event)
        return self.steps

    # -- one method per kind of event ----------------------------------------

    def on_dns(self, e: TraceEvent) -> None:
        d = e.as_(Dns)
        if d is None or not d.name:
            self.add(e, "note", e.node, e.node, _first_line(e.summary), "warn")
            return
        client = self.addr.name(d.client)
        tone = "" if d.rcode == "NOERROR" else "warn"
        if d.cached:
            text = f"cache: {d.type} {d.name} → {_answers(d)}"
            self.add(e, "note", client, client, text, tone)
            return
        self.add(e, "call", client, e.node, f"{d.type}? {d.name}")
        self.add(e, "reply", e.node, client, _answers(d), tone)

    def on_error(self, e: TraceEvent) -> None:
        self.add(e, "note", e.node, e.node, _first_line(e.summary), "warn")

    def on_net(self, e: TraceEvent) -> None:
        d = e.as_(Net)
        if d is None:
            return
        path = d.path or []
        verdict = d.verdict
        if verdict == "accept" and d.proto == "udp" and d.port == 53:
            return  # the dns step says more
        src = path[0] if path else self.addr.name(d.src)
        if verdict == "accept":
            dst = path[-1] if path else self.addr.name(d.dst)
            via = path[1:-1]
            text = f"{d.proto.upper()} {_port(d)}" + (f" via {', '.join(via)}" if via else "")
            self.add(e, "call", src, dst, text)
            return
        where = d.router or (path[-1] if path else self.addr.name(d.dst))
        how = {"drop": "dropped", "reject": "refused"}.get(verdict, verdict)
        text = f"{d.proto.upper()} {d.dst}{_port(d)} {how}"
        if d.rule is not None:
            text += f" (rule {d.rule + 1})"
        self.add(e, "block", src, where, text, "bad")
        self.drops[f"{d.dst}{_port(d)}"] = e

    def _server_note(self, e: TraceEvent, text: str, code: int | None) -> None:
        if not self.has_client_dialogue:  # else the client's record of it is shown
            self.add(e, "note", e.node, e.node, text.strip(), _reply_tone(code))

    def _dialogue(
        self,
        e: TraceEvent,
        d: SmtpClientExchange | ImapExchange | Pop3Exchange,
        status: str | None,
        code: int | None,
    ) -> None:
        client, server = e.node, self.addr.name(d.peer)
        command = d.command or ""
        if command.startswith("connect "):
            dropped = self.drops.get(d.peer)
            if code is None and status is None:
                if dropped is not None:
                    wait = e.t - dropped.t
                    text = f"waited {_seconds(wait)}: {_first_line(d.text)[:60]}"
                else:
                    text = _first_line(d.text)
                self.add(e, "note", client, client, text, "bad")
                return
        elif command:  # (an IMAP greeting answers no command)
            self.add(e, "call", client, server, command)
        if code is None and status is None:
            self.add(e, "note", client, client, "✗ " + _first_line(d.text), "bad")
            return
        enhanced = d.enhanced if isinstance(d, SmtpClientExchange) else None
        response = None if isinstance(d, SmtpClientExchange) else d.response
        head = " ".join(str(p) for p in (code, enhanced, status) if p)
        text = f"{head} {_first_line(d.text or response)}".strip()
        tone = _reply_tone(code) or ("bad" if status in ("NO", "BAD", "-ERR") else "")
        self.add(e, "reply", server, client, text, tone)

    def on_smtp(self, e: TraceEvent) -> None:
        d = e.data
        if isinstance(d, SmtpClientExchange):
            self._dialogue(e, d, None, d.code)
        elif isinstance(d, SmtpServerAnswer):
            self._server_note(e, f"{d.command}: {d.code} {_first_line(d.text)}", d.code)
        elif isinstance(d, SmtpFault):
            self._server_note(e, _first_line(e.summary), None)

    def on_imap(self, e: TraceEvent) -> None:
        d = e.as_(ImapExchange)
        if d is not None:
            self._dialogue(e, d, d.status, None)

    def on_pop3(self, e: TraceEvent) -> None:
        d = e.as_(Pop3Exchange)
        if d is not None:
            self._dialogue(e, d, d.status, None)

    def on_tls(self, e: TraceEvent) -> None:
        d = e.as_(Tls)
        if d is None:
            return
        peer = self.addr.name(d.peer)
        text = f"TLS {(d.version or '').replace('TLSv', '')} {d.cipher or ''}".strip()
        if d.verified is False:
            text += " (cert not verified)"
        self.add(e, "note", e.node, peer, text, "good")

    def on_check(self, e: TraceEvent) -> None:
        d = e.as_(Check)
        if d is None:
            return
        text = f"{d.check}: {d.result}"
        if d.action not in (None, "none"):
            text += f" → {d.action}"
        self.add(e, "note", e.node, e.node, text, _CHECK_TONE.get(d.result, ""))

    def on_queue(self, e: TraceEvent) -> None:
        d = e.data
        name = str(getattr(d, "event", None))
        qid = getattr(d, "queue_id", None) or ""
        if isinstance(d, QueueAttempt):
            text = f"{qid} attempt {d.attempt}: {d.mx or d.address}"
        elif isinstance(
            d,
            QueueDeferred
            | QueueInternalError
            | QueueBounced
            | QueueDsn
            | QueueBounceDropped
            | QueueDelivered,
        ):
            reply = getattr(d, "reply", None) or {}
            said = " ".join(str(p) for p in (reply.get("code"), reply.get("enhanced")) if p)
            text = f"{qid} {name}" + (f" ({said})" if said else "")
        else:
            text = f"{qid} {name}"
        tone = {"delivered": "good", "deferred": "warn", "warning": "warn", "bounced": "bad"}
        self.add(e, "note", e.node, e.node, text, tone.get(name, ""))

    def on_delivery(self, e: TraceEvent) -> None:
        d = e.data
        if not isinstance(d, Delivered | Forwarded | ListResent):
            return
        folder = d.folder
        text = f"stored for {d.mailbox} in {folder.upper() if folder == 'inbox' else folder}"
        self.add(e, "note", e.node, e.node, text, "warn" if folder == "junk" else "good")

    def on_mailbox(self, e: TraceEvent) -> None:
        d = e.data
        protocol, event = getattr(d, "protocol", None), getattr(d, "event", None)
        self.add(e, "note", e.node, e.node, f"{protocol} {event}")


def _seconds(value: float) -> str:
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    if value >= 90:
        return f"{value / 60:.1f} min"
    return f"{value:.1f} s"


def _failing(steps: list[Step], outcome: str | None, trace: Trace) -> int | None:
    if outcome is None:
        # A bare trace: it failed unless something was stored or delivered.
        for event in trace.events:
            if event.kind == "delivery" or isinstance(event.data, QueueDelivered):
                return None
        if outcome is None:
            outcome = "unknown"
    if outcome in _SUCCESS:
        return None
    decisive = None
    broken = None
    for i, step in enumerate(steps):
        if step.style == "block" or (step.style == "reply" and step.tone in ("bad", "warn")):
            decisive = i
        elif step.style == "note" and step.tone == "bad" and step.kind in ("smtp", "imap", "pop3"):
            broken = i  # a dialogue that broke without a reply
    return decisive if decisive is not None else broken


def _order(lanes: dict[str, Lane], steps: list[Step], first: str | None) -> tuple[Lane, ...]:
    """The node that started first, then the others as they first act; nodes
    that only answer DNS (the resolver, a blocklist) go to the right, so the
    way of the message reads left to right."""
    names = list(lanes)
    if first in lanes:
        names.remove(first)
        names.insert(0, first)
    kinds: dict[str, set[str]] = {n: set() for n in names}
    for step in steps:
        kinds[step.src].add(step.kind)
        kinds[step.dst].add(step.kind)
    dns_only = [n for n in names[1:] if kinds[n] == {"dns"}]
    return tuple(lanes[n] for n in [*(n for n in names if n not in dns_only), *dns_only])


def sequence_of(
    source: Trace | ExperimentResult | Iterable[TraceEvent],
    topology: Topology | None = None,
    *,
    title: str = "",
) -> Sequence:
    """The sequence diagram of a trace, a result or a list of events.

    ``topology`` names the nodes behind addresses that the trace itself does
    not (a host that never sent a packet of its own); a running lab's
    ``lab.topology`` fits. Lanes appear in the order nodes first act, the
    node that started the experiment first and nodes that only answered DNS
    last (laptop, smtp-isp, mx-qq, then ns).
    """
    from sim.experiments import ExperimentResult

    outcome: str | None = None
    if isinstance(source, ExperimentResult):
        outcome = (
            getattr(source, "outcome", None)
            or getattr(source, "rcode", None)
            or ("ok" if source.ok else "failed")
        )
        trace = source.trace
    elif isinstance(source, Trace):
        trace = source
    else:
        trace = Trace(id="events", events=list(source))
    builder = _Builder(trace, topology)
    steps = builder.build()
    first = steps[0].src if steps else None
    return Sequence(
        lanes=_order(builder.lanes, steps, first),
        steps=tuple(steps),
        failing=_failing(steps, outcome, trace),
        title=title,
    )


def reply_owner(result: ExperimentResult) -> str | None:
    """The node that sent ``result.reply``: the last SMTP exchange (or relay
    delivery attempt) in the trace that got exactly that reply."""
    reply = getattr(result, "reply", None)
    if not isinstance(reply, dict):
        return None
    events = list(result.trace)
    names = AddressBook(None, events)
    owner: str | None = None
    for event in events:
        d = event.data
        if event.kind == "smtp" and d.get("role") == "client":
            if d.get("code") == reply.get("code") and d.get("text") == reply.get("text"):
                owner = names.name(d.get("peer"))
        elif event.kind == "queue" and isinstance(d.get("reply"), dict):
            if d["reply"].get("code") == reply.get("code") and d.get("address"):
                owner = names.name(d.get("address"))
        elif (
            event.kind in ("imap", "pop3")
            and d.get("role") == "client"
            and d.get("status") == reply.get("status")
            and d.get("text") == reply.get("text")
        ):
            owner = names.name(d.get("peer"))
    return owner
