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

import re
from collections.abc import Mapping
from dataclasses import field
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any, ClassVar

from sim.errors import NetworkError, SimError
from sim.experiments import Experiment, ExperimentResult
from sim.experiments.params import param
from sim.fastclass import dataclass
from sim.spec.kinds import Bool, Either, Int, ListOf, MapOf, Str

if TYPE_CHECKING:
    from pathlib import Path

    from sim.services.base import NodeContext
    from sim.services.maildir import StoredMessage
    from sim.services.smtpclient import TlsMode, Transcript
    from sim.topology.model import Topology
    from sim.trace import Trace

__all__ = ["Send", "SendResult", "mailbox_of"]

#: What moved to sim.experiments.follow (the machinery a send runs, imported
#: when a message is sent, not when the command line is built), still
#: importable from here.
_FOLLOW = frozenset(
    {
        "QUEUE_WAIT",
        "SETTLE_LIMIT",
        "MAX_FORWARDS",
        "MAX_CONSEQUENCES",
        "fresh",
        "chosen_server",
        "mx_hosts",
        "chase_forwards",
        "follow_queue",
        "settle_consequences",
        "_FOLDER_OUTCOME",
        "_RANK",
    }
)


def __getattr__(name: str) -> Any:
    if name in _FOLLOW:
        from sim.experiments import follow

        return getattr(follow, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
            "alignment": _alignment(self.trace),
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


def _alignment(trace: Trace) -> dict[str, Any] | None:
    from sim.experiments.alignment import alignment_json

    return alignment_json(trace)


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
        import email.policy
        import email.utils
        from email.message import EmailMessage

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
        from sim.experiments.follow import _checks, _stored_for, fresh, settle_consequences

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
        from sim.experiments.follow import (
            _direct_outcome,
            _summarise,
            chase_forwards,
            chosen_server,
            fresh,
            mx_hosts,
        )
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
        from sim.experiments.follow import (
            _direct_outcome,
            _is_ip,
            _summarise,
            chase_forwards,
            follow_queue,
            fresh,
        )

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


def mailbox_of(
    topology: Topology, state_dir: Path, address: str, folder: str = "INBOX"
) -> list[StoredMessage]:
    """Messages for ``address`` stored by every MX that serves its domain
    (a domain with a backup MX has mail on either), oldest first."""
    from sim.services.maildir import Maildir, mail_root

    user, _, domain = address.partition("@")
    domain = domain.lower()
    found: list[StoredMessage] = []
    for node in topology.hosts():
        mx = node.services.mx
        if mx is not None and domain in (d.lower() for d in mx.domains):
            found += Maildir(mail_root(state_dir, node.name)).messages(user, folder)
    return sorted(found, key=lambda m: (m.path.stat().st_mtime_ns, m.key))
