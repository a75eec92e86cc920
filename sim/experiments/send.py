"""The ``send`` experiment: one message from a node, followed to its end.

Two ways to send, as in the curriculum:

* ``via="direct"`` — what a naive script on a laptop does: look up the
  recipient domain's MX (RFC 5321 §5.1: MX records by preference; no MX →
  the domain's own A record; a null MX ``0 .`` → the domain takes no mail,
  RFC 7505), connect to port 25 and speak SMTP. The network may stop it
  (``blocked``), the receiver may refuse it (``rejected`` at a stage), defer
  it (``deferred``), or accept it (``delivered`` or ``junk``).
* ``via=NODE`` — what a mail client does: submit to NODE's submission
  service (587 with STARTTLS, or 465 with implicit TLS; RFC 6409, RFC 8314)
  with AUTH. After the 250 the relay there owns the message (RFC 5321 §6.1);
  the experiment follows its queue events to the end: delivered, junk,
  bounced, or deferred (with ``settle=True`` lab time is advanced until the
  queue is done with it).

The outcome, stage and reply come from the SMTP transcripts and the events
the services emitted into the experiment's trace, so the same code gives the
same answer on both backends.
"""

from __future__ import annotations

import email.policy
import email.utils
import re
from collections.abc import Callable, Mapping
from dataclasses import field
from email.message import EmailMessage
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sim.errors import NetworkError, SimError
from sim.events import (
    Delivered,
    Forwarded,
    ListResent,
    QueueAttempt,
    QueueBounced,
    QueueBounceDropped,
    QueueDeferred,
    QueueDelivered,
    QueueDsn,
    QueueInternalError,
    QueueQueued,
    QueueRecovered,
    QueueWarning,
    ServerChosen,
)
from sim.experiments import Experiment, ExperimentResult
from sim.experiments.alignment import alignment_json
from sim.experiments.params import param
from sim.fastclass import dataclass
from sim.services.maildir import Maildir, StoredMessage, mail_root
from sim.spec.kinds import Bool, Either, Int, ListOf, MapOf, Str
from sim.topology.model import Topology
from sim.trace import Trace, TraceEvent

if TYPE_CHECKING:
    from sim.services.base import NodeContext
    from sim.services.smtpclient import Reply, TlsMode, Transcript

__all__ = ["Send", "SendResult", "mailbox_of"]

#: How long (real seconds) to wait for a relay's next queue event.
QUEUE_WAIT = 60.0
#: How much lab time ``settle`` may advance in all (RFC 5321 §4.5.4.1
#: suggests giving up after 4-5 days; relays here are configured likewise).
SETTLE_LIMIT = 8 * 86400.0
#: Real seconds a send waits for a Postfix MX to store what it queued.
REAL_DELIVERY_WAIT = 10.0
_QUEUED_AS = re.compile(r"queued as ([A-Za-z0-9._-]+)")


@dataclass(repr=False)
class SendResult(ExperimentResult):
    """``outcome``: one of :data:`sim.experiments.OUTCOMES` (delivered, junk,
    forwarded, rejected, deferred, bounced or blocked)."""

    outcome: str = "delivered"
    stage: str | None = None
    reply: dict[str, Any] | None = None
    checks: dict[str, str] = field(default_factory=dict)
    verdict: dict[str, Any] | None = None
    queue_id: str | None = None
    #: The server a direct send was told to use (``server``), instead of the MX.
    server: dict[str, str] | None = None
    message_id: str = ""
    mail_from: str = ""
    rcpts: list[str] = field(default_factory=list)
    recipients: list[dict[str, Any]] = field(default_factory=list)
    transcripts: list[dict[str, Any]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "stage": self.stage,
            "reply": self.reply,
            "checks": self.checks,
            "verdict": self.verdict,
            "queue_id": self.queue_id,
            "server": self.server,
            "message_id": self.message_id,
            "mail_from": self.mail_from,
            "rcpts": self.rcpts,
            "recipients": self.recipients,
            "transcripts": self.transcripts,
            "alignment": alignment_json(self.trace),
        }

    @property
    def ok(self) -> bool:
        return self.outcome == "delivered"

    @property
    def code(self) -> int | None:
        return int(self.reply["code"]) if self.reply else None

    @property
    def enhanced(self) -> str | None:
        return self.reply.get("enhanced") if self.reply else None


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def _addresses(value: Any) -> tuple[str, ...]:
    return (str(value),) if isinstance(value, str) else tuple(str(v) for v in value)


def _header_pairs(value: Any) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    return tuple((str(k), str(v)) for k, v in items)


def _message_file(path: str) -> str:
    """``--message FILE``: the file's text (a regular file under the input
    size limit, sim.inputfile), read before the lab starts."""
    from sim.errors import ArgumentError
    from sim.inputfile import InputFileError, read_input_text

    try:
        return read_input_text(path, what="message file")
    except InputFileError as err:
        raise ArgumentError(f"--message {err.problem.path}: {err.problem.message}") from None


def _header_lines(lines: list[str]) -> dict[str, str]:
    """``--header 'Name: value'`` given several times → the lab file's mapping."""
    out: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise SimError(f"--header {line!r}: write it as 'Name: value'")
        out[name.strip()] = value.strip()
    return out


#: TLS on the first hop, as sim.services.smtpclient.TlsMode spells it (spelled
#: out: the SMTP client is imported when mail is sent, not when the command
#: line is built; tests/test_experiment_params.py keeps the two equal).
TLS_MODES: tuple[str, ...] = ("none", "opportunistic", "required", "implicit")
_PORT = Int(minimum=1, maximum=65535)


@dataclass(frozen=True)
class Send(Experiment):
    """Send one message and follow it."""

    kind: ClassVar[str] = "send"
    noun: ClassVar[str] = "a message"
    to: tuple[str, ...] = field(
        metadata=param(
            Either((Str(), ListOf(Str(), min_items=1))),
            "recipient address(es)",
            convert=_addresses,
            repeat=True,
            metavar="ADDR",
        )
    )
    mail_from: str | None = field(
        default=None, metadata=param(Str(), "envelope sender (MAIL FROM)", metavar="ADDR")
    )
    from_header: str | None = field(
        default=None, metadata=param(Str(), "the From: header a person reads", metavar="ADDR")
    )
    via: str = field(
        default="direct",
        metadata=param(
            Str(),
            "`direct` (MX lookup, port 25) or the node of a submission service",
            metavar="direct|NODE",
        ),
    )
    #: Skip the MX lookup and connect to this server's port 25 (a node or a
    #: lab address): what a spammer does with a domain's backup MX, which
    #: often checks less than the primary (RFC 5321 §5.1 lets any MX host
    #: be tried; nothing makes a client start with the most preferred).
    server: str | None = field(
        default=None,
        metadata=param(
            Str(),
            "connect to this node (or lab address) on port 25 instead of following "
            "the MX records (a direct send only)",
            metavar="NODE|IP",
        ),
    )
    user: str | None = field(
        default=None, metadata=param(Str(), "AUTH user (with `via`)", metavar="U")
    )
    password: str | None = field(default=None, metadata=param(Str(), "AUTH password", metavar="P"))
    subject: str = field(default="Hello from maillab", metadata=param(Str(), "the Subject: header"))
    body: str = field(
        default="This is a test message.\n",
        metadata=param(Str(min_length=0), "the message text"),
    )
    headers: tuple[tuple[str, str], ...] = field(
        default=(),
        metadata=param(
            MapOf(Str(min_length=0)),
            "extra header fields",
            convert=_header_pairs,
            cli_name="header",
            repeat=True,
            metavar="'NAME: VALUE'",
            from_cli=_header_lines,
        ),
    )
    #: A whole RFC 5322 message sent as it is (headers and body): any case,
    #: spoofed or malformed, can be tried. The envelope still comes from
    #: ``to``, ``mail_from`` (``--message FILE`` on the command line).
    message: str | None = field(
        default=None,
        metadata=param(
            Str(),
            "a whole message (RFC 5322) sent as it is; the envelope comes from the "
            "other options (command line: a file)",
            metavar="FILE",
            from_cli=_message_file,
        ),
    )
    port: int | None = field(default=None, metadata=param(_PORT, "override the port"))
    settle: bool = field(
        default=False,
        metadata=param(Bool(), "let lab time pass until the relay's queue is done"),
    )
    helo: str | None = field(
        default=None,
        metadata=param(Str(), "the EHLO name (default: the node's PTR name)", metavar="NAME"),
    )
    #: TLS on the first hop (sim.services.smtpclient.TlsMode); None: what the
    #: route implies: opportunistic STARTTLS direct (RFC 7435), required
    #: STARTTLS for submission, implicit TLS on 465 (RFC 8314). ``none`` lets a
    #: lab show what a server says to AUTH in the clear (538 5.7.11).
    tls: TlsMode | None = field(
        default=None,
        metadata=param(
            Str(enum=TLS_MODES),
            "TLS on the first hop: `none` (never STARTTLS: AUTH goes in "
            "the clear), `opportunistic` (STARTTLS when offered), "
            "`required` (STARTTLS or stop), `implicit` (TLS from the first "
            "byte, port 465); default: opportunistic direct, required via "
            "a submission node, implicit on 465",
        ),
    )

    def __post_init__(self) -> None:
        if self.server is not None and self.via != "direct":
            raise SimError(
                f"server={self.server!r} chooses the MX of a direct send: leave out "
                f"via={self.via!r} (a submission node is the server already)"
            )
        if self.tls is not None and self.tls not in TLS_MODES:
            raise SimError(f"tls={self.tls!r}: choose one of {', '.join(TLS_MODES)}")
        if self.message is not None:
            composed = [
                name
                for name, given in (
                    ("from_header", self.from_header is not None),
                    ("subject", self.subject != "Hello from maillab"),
                    ("body", self.body != "This is a test message.\n"),
                    ("headers", bool(self.headers)),
                )
                if given
            ]
            if composed:
                raise SimError(
                    f"message is sent as it is: leave out {', '.join(composed)} "
                    "(write them into the message)"
                )
            if not self.message.strip():
                raise SimError("message is empty: give a whole message, headers and body")

    def describe(self, node: str) -> str:
        via = "" if self.via == "direct" else f" via {self.via}"
        if self.server is not None:
            via = f" straight to {self.server}"
        return f"send from {node} to {', '.join(self.to)}{via}"

    # -- the message ----------------------------------------------------------

    def envelope_from(self, ctx: NodeContext) -> str:
        return self.mail_from or self.user or f"{ctx.node.name}@{ctx.node.name}.test"

    def build(self, ctx: NodeContext) -> tuple[bytes, str]:
        sender = self.envelope_from(ctx)
        if self.message is not None:
            # As written, line endings made CRLF (RFC 5322 §2.1); its own
            # Message-ID, if any, is the one the trace follows.
            data = (
                self.message.replace("\r\n", "\n")
                .replace("\n", "\r\n")
                .encode("utf-8", "surrogateescape")
            )
            parsed = email.message_from_bytes(data, policy=email.policy.default)
            return data, str(parsed.get("Message-ID", "") or "").strip()
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["From"] = self.from_header or sender
        msg["To"] = ", ".join(self.to)
        msg["Subject"] = self.subject
        msg["Date"] = email.utils.formatdate(localtime=False)
        message_id = email.utils.make_msgid(domain=_domain(sender) or "maillab.test")
        msg["Message-ID"] = message_id
        for name, value in self.headers:
            msg[name] = value
        msg.set_content(self.body)
        return msg.as_bytes(policy=email.policy.SMTP), message_id

    async def helo_name(self, ctx: NodeContext, trace: Trace) -> str:
        """What the node says in EHLO: its PTR name if it has one (a well-run
        MTA's HELO matches its reverse DNS), else a name under its domain."""
        if self.helo:
            return self.helo
        answer = await ctx.resolver.query(
            ".".join(reversed(str(ctx.net.address).split("."))) + ".in-addr.arpa",
            "PTR",
            trace_id=trace.id,
        )
        for record in answer.of_type("PTR"):
            return record.data.rstrip(".")
        return f"{ctx.node.name}.{_domain(self.envelope_from(ctx)) or 'maillab.test'}"

    # -- running ----------------------------------------------------------------

    async def run(self, ctx: NodeContext, trace: Trace) -> SendResult:
        data, message_id = self.build(ctx)
        sender = self.envelope_from(ctx)
        base = SendResult(message_id=message_id, mail_from=sender, rcpts=list(self.to))
        if message_id:
            # Real MTAs (Postfix) log the Message-ID on every hop: the trace
            # follows the message there too.
            ctx.net.tag_message(message_id, trace.id)
        if self.via == "direct":
            result = await self._direct(ctx, trace, data, base)
        else:
            result = await self._submit(ctx, trace, data, base)
        if self.settle:
            # What the message caused (a bounce, a forward, a backup MX's
            # relaying) is done before the experiment returns: a read or a
            # mailbox check right after sees it, on either backend.
            # (The result stays the message's own: the checks a bounce met
            # on its way are in the trace, not in ``checks``.)
            await settle_consequences(ctx, trace)
        from sim.experiments.reallogs import settle_real_logs

        if await settle_real_logs(ctx.topology):
            # Postfix and Dovecot report through their logs (sim.services.realmail).
            if result.outcome in ("delivered", "junk"):
                # A Postfix MX's 250 means "queued"; the message is in the
                # mailbox once its LMTP delivery is logged: wait for that.
                for rcpt in result.rcpts:
                    await ctx.hub.wait_for(trace.id, _stored_for(rcpt), REAL_DELIVERY_WAIT)
            _checks(result, fresh(ctx, trace))
        return result

    async def _direct(
        self, ctx: NodeContext, trace: Trace, data: bytes, result: SendResult
    ) -> SendResult:
        from sim.services.smtpclient import SmtpClient

        client = SmtpClient.for_node(ctx)
        helo = await self.helo_name(ctx, trace)
        domains = list(dict.fromkeys(_domain(r) for r in self.to))
        per_rcpt: list[dict[str, Any]] = []
        for domain in domains:
            rcpts = [r for r in self.to if _domain(r) == domain]
            if self.server is not None:
                hosts, problem = [chosen_server(ctx, trace, self.server, domain)], None
                name, address = hosts[0]
                result.server = {"server": self.server, "host": name, "address": str(address)}
            else:
                hosts, problem = await mx_hosts(ctx, domain, trace)
            if problem is not None:
                # A temporary failure (4xx) is what a queue would retry.
                outcome = "deferred" if problem.transient else "rejected"
                per_rcpt += [
                    {"rcpt": r, "outcome": outcome, "stage": "dns", "reply": problem.to_json()}
                    for r in rcpts
                ]
                continue
            transcript: Transcript | None = None
            for host, address in hosts:
                transcript = await client.send(
                    address,
                    self.port or 25,
                    mail_from=result.mail_from,
                    rcpts=rcpts,
                    data=data,
                    helo=helo,
                    tls=self.tls or "opportunistic",
                    server_name=host,
                    trace_id=trace.id,
                )
                result.transcripts.append(transcript.to_json())
                if not transcript.blocked:
                    break  # RFC 5321 §5.1: the next MX only when this one did not answer
            assert transcript is not None
            for rcpt in rcpts:
                per_rcpt.append(_direct_outcome(transcript, rcpt, fresh(ctx, trace)))
        per_rcpt = await chase_forwards(ctx, trace, per_rcpt, self.settle)
        return _summarise(result, per_rcpt, fresh(ctx, trace))

    async def _submit(
        self, ctx: NodeContext, trace: Trace, data: bytes, result: SendResult
    ) -> SendResult:
        address: IPv4Address | None
        try:
            address = ctx.network.address_of(self.via)
        except NetworkError:
            address = IPv4Address(self.via) if _is_ip(self.via) else None
        if address is None:
            raise NetworkError(f"via {self.via!r}: no such node or lab address")
        owner = ctx.network.owner(address)
        node = ctx.network.node(owner) if owner is not None else None
        submission = node.services.submission if node is not None and node.kind == "host" else None
        hostname = (submission.hostname if submission else None) or self.via
        port = self.port or 587
        from sim.services.smtpclient import SmtpClient

        client = SmtpClient.for_node(ctx)
        transcript = await client.send(
            address,
            port,
            mail_from=result.mail_from,
            rcpts=list(self.to),
            data=data,
            helo=await self.helo_name(ctx, trace),
            tls=self.tls or ("implicit" if port == 465 else "required"),
            verify=True,
            server_name=hostname,
            auth=(self.user, self.password or "") if self.user else None,
            trace_id=trace.id,
        )
        result.transcripts.append(transcript.to_json())
        if not transcript.delivered:
            per = [_direct_outcome(transcript, r, trace, final_hop=False) for r in self.to]
            return _summarise(result, per, fresh(ctx, trace))
        final = transcript.final
        match = _QUEUED_AS.search(final.text if final else "")
        result.queue_id = match.group(1) if match else None
        if result.queue_id is None:
            per = [
                {
                    "rcpt": r,
                    "outcome": "delivered",
                    "stage": None,
                    "reply": final.to_json() if final else None,
                }
                for r in self.to
            ]
            return _summarise(result, per, fresh(ctx, trace))
        per = await follow_queue(ctx, trace, result.queue_id, list(self.to), self.settle)
        per = await chase_forwards(ctx, trace, per, self.settle)
        return _summarise(result, per, fresh(ctx, trace))


def fresh(ctx: NodeContext, trace: Trace) -> Trace:
    """Every event of ``trace`` so far, including those other processes wrote
    (on mininet the services run in other namespaces and write to files)."""
    return ctx.hub.get(trace.id) or trace


def chosen_server(
    ctx: NodeContext, trace: Trace, server: str, domain: str
) -> tuple[str, IPv4Address]:
    """The (name, address) of the server a send was told to use instead of
    the MX records: a node (its mx host name, for TLS and the trace) or a
    lab address. Noted in the trace, so that nobody reads the missing MX
    lookup as the receiver's DNS being wrong."""
    address: IPv4Address | None
    try:
        address = ctx.network.address_of(server)
    except NetworkError:
        address = IPv4Address(server) if _is_ip(server) else None
    if address is None:
        raise NetworkError(f"server {server!r}: no such node or lab address")
    owner = ctx.network.owner(address)
    node = ctx.network.node(owner) if owner is not None else None
    mx = node.services.mx if node is not None and node.kind == "host" else None
    host = (mx.hostname if mx is not None else None) or (
        f"mx.{mx.domains[0]}" if mx is not None else (owner or str(address))
    )
    ctx.record(
        trace.id,
        ServerChosen(
            domain=domain,
            server=server,
            host=host,
            address=str(address),
            node=owner,
            mx_lookup=False,
        ),
        f"mail for {domain} sent straight to {host} [{address}] as told (server: "
        f"{server}), without looking up {domain}'s MX records",
    )
    return host, address


def _is_ip(text: str) -> bool:
    try:
        IPv4Address(text)
    except ValueError:
        return False
    return True


async def mx_hosts(
    ctx: NodeContext, domain: str, trace: Trace
) -> tuple[list[tuple[str, IPv4Address]], Reply | None]:
    """The hosts to try for ``domain``, best first, with their addresses, or
    the reply that stops the mail: the relay's rules and replies
    (:mod:`sim.services.mxroute`), so that a direct send and a queued one
    report the same thing (a SERVFAIL is 451 4.4.3, try again)."""
    from sim.services.mxroute import find_mx, host_addresses, no_address, unroutable

    route = await find_mx(ctx.resolver, domain, trace.id)
    if route.reply is not None:
        return [], route.reply
    hosts: list[tuple[str, IPv4Address]] = []
    last: Reply | None = None
    for name in route.hosts:
        addresses, rcode = await host_addresses(ctx.resolver, name, trace.id)
        if not addresses:
            stop = unroutable(route, domain, rcode)
            if stop is not None:
                return [], stop
            last = no_address(name, rcode)
        hosts += [(name, address) for address in addresses]
    if not hosts:
        return [], last or Reply(451, "4.4.3", f"no usable MX host for {domain}")
    return hosts, None


def _delivery_for(
    trace: Trace, rcpt: str, handed_to: str | None = None
) -> Delivered | Forwarded | ListResent | None:
    """The last ``delivery`` event for ``rcpt`` in ``trace``; with
    ``handed_to``, not the one that handed it to that relay queue (a backup
    MX keeps the address: the event wanted is the next hop's)."""
    found = None
    for event in trace:  # in time order, as of_kind
        data = event.data
        if not isinstance(data, Delivered | Forwarded | ListResent):
            continue
        if data.mailbox.lower() != rcpt.lower():
            continue
        if not isinstance(data, Delivered) and data.relay_queue_id == handed_to:
            continue
        found = data
    return found


#: How the final MX filed a message → the outcome. "forwarded" is not final:
#: :func:`chase_forwards` follows the forwarder's relay to the next MX.
_FOLDER_OUTCOME = {
    "inbox": "delivered",
    "junk": "junk",
    "forwarded": "forwarded",
    "list": "forwarded",
}
#: Forwarders chained in a row that a send follows (mail loops stop here).
MAX_FORWARDS = 5


async def chase_forwards(
    ctx: NodeContext, trace: Trace, per_rcpt: list[dict[str, Any]], settle: bool
) -> list[dict[str, Any]]:
    """Follow recipients an MX forwarded (an alias, RFC 5321 §3.9.1) through
    the forwarder's relay, so the outcome is that of the final mailbox."""
    out = []
    for entry in per_rcpt:
        hops = 0
        while entry.get("outcome") == "forwarded" and hops < MAX_FORWARDS:
            hops += 1
            delivery = _delivery_for(fresh(ctx, trace), str(entry["rcpt"]))
            if not isinstance(delivery, Forwarded | ListResent):
                break
            target, queue_id = delivery.forwarded_to, delivery.relay_queue_id
            if not target or not queue_id:
                break
            # A mailing list resends to every member: the first member's
            # outcome stands for the list's, each member's is kept.
            targets = [t.strip() for t in str(target).split(",") if t.strip()]
            found = await follow_queue(ctx, trace, str(queue_id), targets, settle)
            nxt = found[0]
            via = [*entry.get("forwarded", []), targets[0]]
            entry = {**nxt, "rcpt": entry["rcpt"], "forwarded": via}
            if len(found) > 1:
                entry["members"] = found
        out.append(entry)
    return out


def _direct_outcome(
    transcript: Transcript, rcpt: str, trace: Trace, final_hop: bool = True
) -> dict[str, Any]:
    """What became of ``rcpt`` in one SMTP transaction."""
    if transcript.blocked:
        return {
            "rcpt": rcpt,
            "outcome": "blocked",
            "stage": "connect",
            "reply": None,
            "verdict": transcript.verdict,
            "error": transcript.error,
        }
    reply = transcript.rcpt_replies.get(rcpt)
    stage: str | None = transcript.failed_stage
    if reply is not None and not reply.positive:
        stage = "rcpt"
    elif transcript.delivered:
        reply = transcript.final
        stage = None
    else:
        reply = transcript.last_reply
    if stage is None and reply is not None and reply.positive:
        delivery = _delivery_for(trace, rcpt) if final_hop else None
        folder = delivery.folder if delivery else "inbox"
        return {
            "rcpt": rcpt,
            "outcome": _FOLDER_OUTCOME.get(str(folder), "delivered"),
            "stage": None,
            "reply": reply.to_json(),
        }
    if reply is None:
        # The dialogue broke without a reply (time-out, lost connection): as
        # with a 4xx, a sender would try again later.
        return {
            "rcpt": rcpt,
            "outcome": "deferred",
            "stage": stage,
            "reply": None,
            "error": transcript.error,
        }
    outcome = "deferred" if reply.transient else "rejected"
    return {"rcpt": rcpt, "outcome": outcome, "stage": stage, "reply": reply.to_json()}


async def follow_queue(
    ctx: NodeContext, trace: Trace, queue_id: str, rcpts: list[str], settle: bool
) -> list[dict[str, Any]]:
    """Wait for the relay's verdict on each recipient of ``queue_id``."""
    status: dict[str, dict[str, Any]] = {}
    seen = 0
    advanced = 0.0

    def key(event: TraceEvent) -> tuple[float, str, str]:
        # Events may be re-read from a file (mininet): compare by content.
        return (event.t, event.node, event.summary)

    known: set[tuple[float, str, str]] = set()

    def wanted(event: TraceEvent) -> bool:
        data = event.data
        return isinstance(data, _VERDICTS) and data.queue_id == queue_id and key(event) not in known

    while True:
        events = [
            e
            for e in (ctx.hub.get(trace.id) or trace).events
            if isinstance(e.data, _OF_ENTRY) and e.data.queue_id == queue_id
        ]
        for event in events[seen:]:
            data = event.data
            if isinstance(data, QueueDelivered | QueueBounced | QueueDeferred):
                targets = [data.rcpt]
            elif isinstance(data, QueueBounceDropped):
                targets = data.rcpts
            else:
                continue  # queued, an attempt, a report (DSN, warning), an internal error
            for rcpt in targets:
                if rcpt not in rcpts:
                    continue
                if isinstance(data, QueueDelivered):
                    delivery = _delivery_for(ctx.hub.get(trace.id) or trace, rcpt, queue_id)
                    folder = delivery.folder if delivery else "inbox"
                    status[rcpt] = {
                        "rcpt": rcpt,
                        "outcome": _FOLDER_OUTCOME.get(str(folder), "delivered"),
                        "stage": None,
                        "reply": data.reply,
                    }
                elif isinstance(data, QueueBounced | QueueBounceDropped):
                    status[rcpt] = {
                        "rcpt": rcpt,
                        "outcome": "bounced",
                        "stage": data.stage if isinstance(data, QueueBounced) else None,
                        "reply": data.reply if isinstance(data, QueueBounced) else None,
                    }
                elif status.get(rcpt, {}).get("outcome") in (None, "deferred"):
                    status[rcpt] = {
                        "rcpt": rcpt,
                        "outcome": "deferred",
                        "stage": data.stage,
                        "reply": data.reply,
                        "next_attempt": data.next_attempt,
                    }
        seen = len(events)
        known.update(key(e) for e in events)
        pending = [r for r in rcpts if status.get(r, {}).get("outcome") in (None, "deferred")]
        waiting_first = [r for r in rcpts if r not in status]
        if not pending:
            break
        if not waiting_first and not settle:
            break  # every recipient has had its first attempt: report deferred
        if not waiting_first and settle:
            due = min(float(status[r].get("next_attempt") or ctx.clock.now()) for r in pending)
            step = max(due - ctx.clock.now(), 0.0) + 1.0
            if advanced + step > SETTLE_LIMIT:
                break
            advanced += step
            ctx.clock.advance(step)
            for r in pending:
                status.pop(r, None)  # wait for the next attempt's verdict
        if await ctx.hub.wait_for(trace.id, wanted, QUEUE_WAIT) is None:
            break
    return [
        status.get(
            r,
            {
                "rcpt": r,
                "outcome": "deferred",
                "stage": None,
                "reply": None,
                "error": "no word from the relay",
            },
        )
        for r in rcpts
    ]


#: Rounds of :func:`settle_consequences` (each may reveal new queue entries:
#: a bounce of a forward...); a mail loop stops here.
MAX_CONSEQUENCES = 8


def _open_entries(trace: Trace) -> tuple[dict[str, list[str]], set[str]]:
    """Relay queue entries of ``trace`` with recipients that have no final
    event yet (delivered, or bounced: given up or dropped), by queue id; and
    the entries with a bounced recipient whose bounce (DSN) is not queued
    yet (the relay queues it right after the verdict, RFC 3464)."""
    queued: dict[str, list[str]] = {}
    returns: set[str] = set()  # entries that would send a DSN (not DSNs, not <>)
    done: set[tuple[str, str]] = set()
    bounced: set[str] = set()
    reported: set[str] = set()
    for event in trace.of_kind("queue"):
        queue_id = str(event.data.get("queue_id") or "")
        name = event.data.get("event")
        if not queue_id:
            continue
        if name == "queued":
            queued[queue_id] = [str(r) for r in event.data.get("rcpts", [])]
            if event.data.get("entry_kind") != "dsn" and event.data.get("mail_from"):
                returns.add(queue_id)
        elif name == "bounced" and (event.data.get("dsn") or event.data.get("dropped")):
            reported.add(queue_id)
            if event.data.get("dropped"):
                done.update((queue_id, str(r)) for r in event.data.get("rcpts", []))
        elif name in ("delivered", "bounced"):
            rcpts = event.data.get("rcpts") or [event.data.get("rcpt")]
            done.update((queue_id, str(r)) for r in rcpts if r)
            if name == "bounced":
                bounced.add(queue_id)
    pending = {
        queue_id: [r for r in rcpts if (queue_id, r) not in done]
        for queue_id, rcpts in queued.items()
        if any((queue_id, r) not in done for r in rcpts)
    }
    return pending, (bounced & returns) - reported


async def settle_consequences(ctx: NodeContext, trace: Trace) -> None:
    """Follow every queue entry the message caused (bounces to the sender,
    forwards, a backup MX's relaying, and the bounces of those) until each
    recipient is delivered or given up, advancing lab time as ``settle``
    does for the message itself."""
    followed: set[str] = set()
    waited: set[str] = set()
    for _ in range(MAX_CONSEQUENCES):
        open_entries, unreported = _open_entries(fresh(ctx, trace))
        unreported -= waited
        if unreported:
            waited |= unreported

            # The verdict is in the trace, the bounce it causes not yet.
            def reports(event: TraceEvent, ids: set[str] = unreported) -> bool:
                return (
                    event.kind == "queue"
                    and event.data.get("queue_id") in ids
                    and bool(event.data.get("dsn") or event.data.get("dropped"))
                )

            await ctx.hub.wait_for(trace.id, reports, QUEUE_WAIT)
            continue
        pending = {q: r for q, r in open_entries.items() if q not in followed}
        if not pending:
            return
        for queue_id, rcpts in pending.items():
            followed.add(queue_id)
            await follow_queue(ctx, trace, queue_id, rcpts, True)


#: The queue events of one entry (every one but a spool problem and a DMARC report).
_OF_ENTRY = (
    QueueQueued,
    QueueRecovered,
    QueueAttempt,
    QueueDelivered,
    QueueDeferred,
    QueueInternalError,
    QueueBounced,
    QueueDsn,
    QueueBounceDropped,
    QueueWarning,
)
#: A relay's word on a recipient (or a report of it) that a waiting send wakes up for.
_VERDICTS = (
    QueueDelivered,
    QueueDeferred,
    QueueInternalError,
    QueueBounced,
    QueueDsn,
    QueueBounceDropped,
)

_RANK = {
    "blocked": 0,
    "rejected": 1,
    "bounced": 2,
    "deferred": 3,
    "forwarded": 4,
    "junk": 5,
    "delivered": 6,
}


def _summarise(result: SendResult, per_rcpt: list[dict[str, Any]], trace: Trace) -> SendResult:
    """The first recipient's fate is the message's; all are in ``recipients``."""
    result.recipients = per_rcpt
    worst = min(per_rcpt, key=lambda p: _RANK.get(p["outcome"], 0)) if per_rcpt else None
    main = per_rcpt[0] if per_rcpt else worst
    if main is not None:
        result.outcome = main["outcome"]
        result.stage = main.get("stage")
        result.reply = main.get("reply")
        result.verdict = main.get("verdict")
    _checks(result, trace, _decided_at(per_rcpt, trace))
    return result


def _decided_at(per_rcpt: list[dict[str, Any]], trace: Trace) -> float | None:
    """Lab time of the last relay verdict on the message's recipients (and
    those it was forwarded or listed to): what a settled send saw later (a
    bounce arriving somewhere, checked in its turn) is not this message's."""
    addresses: set[str] = set()
    for entry in per_rcpt:
        addresses.add(str(entry.get("rcpt", "")).lower())
        addresses.update(str(a).lower() for a in entry.get("forwarded", []))
        addresses.update(str(m.get("rcpt", "")).lower() for m in entry.get("members", []))
    times = [
        e.t
        for e in trace
        if isinstance(e.data, QueueDelivered | QueueBounced | QueueDeferred)
        and e.data.rcpt.lower() in addresses
    ]
    return max(times, default=None)


def _checks(result: SendResult, trace: Trace, until: float | None = None) -> None:
    for event in trace.of_kind("check"):
        if until is not None and event.t > until:
            break  # in time order: what came after the message's fate
        name, value = event.data.get("check"), event.data.get("result")
        if isinstance(name, str) and isinstance(value, str):
            result.checks[name] = value


def _stored_for(rcpt: str) -> Callable[[TraceEvent], bool]:
    wanted = rcpt.lower()
    return lambda e: e.kind == "delivery" and str(e.data.get("mailbox", "")).lower() == wanted


def mailbox_of(
    topology: Topology, state_dir: Path, address: str, folder: str = "INBOX"
) -> list[StoredMessage]:
    """Messages for ``address`` stored by every MX that serves its domain
    (a domain with a backup MX has mail on either), oldest first."""
    user, _, domain = address.partition("@")
    domain = domain.lower()
    found: list[StoredMessage] = []
    for node in topology.hosts():
        mx = node.services.mx
        if mx is not None and domain in (d.lower() for d in mx.domains):
            found += Maildir(mail_root(state_dir, node.name)).messages(user, folder)
    return sorted(found, key=lambda m: (m.path.stat().st_mtime_ns, m.key))
