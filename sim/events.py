"""The trace vocabulary: every kind of event, as a typed class.

A :class:`~sim.trace.TraceEvent` says when (``t``), where (``node``) and, in
one sentence, what happened (``summary``); its ``data`` says it as data. This
module declares every ``data`` a service may record: one frozen class per
kind (or per variant of a kind, such as each ``queue`` event), with typed
fields, what each field means, and the RFC the event reflects.

Services construct these classes (``ctx.record(trace_id, Dns(...), summary)``);
readers narrow with ``event.as_(Dns)`` and read attributes. Each class is
also a read-only mapping of its keys, so ``event.data["rcode"]`` keeps working
while the readers of other branches move over, and ``--json`` keeps its shape
(``{"t", "kind", "node", "summary", "data": {...}}``).

``docs/trace.schema.json`` and ``docs/trace.md`` are generated from these
classes: ``python -m sim.events`` (``--check`` reports stale files).
Construction does no validation at run time (the MX is benchmarked): the
tests check every service's events against the declarations.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import MISSING, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, TypedDict, TypeVar, Union

from sim.fastclass import dataclass

__all__ = [
    "EVENT_CLASSES",
    "FRONT_END_KINDS",
    "KINDS",
    "Check",
    "Delivered",
    "DmarcReportSent",
    "Dns",
    "EventData",
    "Forwarded",
    "ImapExchange",
    "LabAction",
    "MailboxDeleted",
    "MailboxLogin",
    "MailboxLoginFailed",
    "MailboxMoved",
    "MailboxTls",
    "Net",
    "Pop3Exchange",
    "QueueAttempt",
    "QueueBounceDropped",
    "QueueBounced",
    "QueueDeferred",
    "QueueDelivered",
    "QueueDsn",
    "QueueInternalError",
    "QueueQueued",
    "QueueRecovered",
    "QueueRecovery",
    "QueueWarning",
    "ServiceFailure",
    "SmtpClientExchange",
    "SmtpFault",
    "SmtpServerAnswer",
    "Tls",
    "Wait",
    "classes_of",
    "keys_of",
    "parse_data",
    "service_kinds",
    "undeclared",
]

E = TypeVar("E", bound="EventData")


def _doc(text: str) -> Any:
    """A field every event of the class carries."""
    return field(metadata={"doc": text})


def _opt(text: str) -> Any:
    """A field present only in some events: ``None`` means absent (not in
    ``data``, not in the JSON)."""
    return field(default=None, metadata={"doc": text, "omit": True})


# -- nested values (plain JSON: they go to --json as they are) ---------------------------


class DnsRecordJson(TypedDict):
    """One resource record of an answer (RFC 1035 §3.2.1)."""

    name: str
    type: str
    ttl: int
    data: str


class DnsWire(TypedDict):
    """Both DNS messages as they went on the wire, base64 (for ``--pcap``)."""

    query: str
    reply: str


class ReplyJson(TypedDict):
    """An SMTP reply: code (RFC 5321 §4.2), enhanced code (RFC 3463), text."""

    code: int
    enhanced: str | None
    text: str


class DmarcReportJson(TypedDict):
    """One DMARC aggregate report mailed at the end of a period (RFC 7489 §7.2)."""

    policy_domain: str
    report_id: str
    messages: int
    to: list[str]
    filename: str
    queue_id: str | None


# -- the base ----------------------------------------------------------------------------


class EventData(Mapping[str, Any]):
    """The typed ``data`` of one event; also a read-only mapping of its keys."""

    __slots__ = ()

    #: The event's ``kind`` (``dns``, ``smtp``, ...).
    KIND: ClassVar[str]
    #: The keys in declaration order, and those left out when None.
    KEYS: ClassVar[tuple[str, ...]] = ()
    OMIT: ClassVar[frozenset[str]] = frozenset()
    REQUIRED: ClassVar[frozenset[str]] = frozenset()
    #: Fields whose type is one literal value: they tell the variants of a kind apart.
    TAGS: ClassVar[dict[str, object]] = {}

    def __getitem__(self, key: str) -> Any:
        if key not in self.KEYS:
            raise KeyError(key)
        value = getattr(self, key)
        if value is None and key in self.OMIT:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        omit = self.OMIT
        for key in self.KEYS:
            if key in omit and getattr(self, key) is None:
                continue
            yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def to_json(self) -> dict[str, Any]:
        """The ``data`` object of ``--json``."""
        omit = self.OMIT
        out = {}
        for key in self.KEYS:
            value = getattr(self, key)
            if value is None and key in omit:
                continue
            out[key] = value
        return out


#: kind → the classes of its variants, in the order they are tried.
KINDS: dict[str, list[type[EventData]]] = {}
#: Every declared class, in declaration order.
EVENT_CLASSES: list[type[EventData]] = []


def _one_literal(annotation: Any) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("Literal[", "typing.Literal[")) and "," not in text


def _declare(kind: str) -> Any:
    def register(cls: type[E]) -> type[E]:
        cls.KIND = kind
        cls.KEYS = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
        cls.OMIT = frozenset(f.name for f in fields(cls) if f.metadata.get("omit"))  # type: ignore[arg-type]
        cls.REQUIRED = frozenset(
            f.name
            for f in fields(cls)  # type: ignore[arg-type]
            if f.default is MISSING and f.default_factory is MISSING
        )
        # A tag is a field typed as one literal value, which is its default
        # (``event: Literal["queued"] = field(default="queued", ...)``). Read
        # from the annotation's text: evaluating every class's type hints
        # (typing.get_type_hints) cost the command line ~40 ms at start.
        cls.TAGS = {
            f.name: f.default
            for f in fields(cls)  # type: ignore[arg-type]
            if _one_literal(f.type) and f.default is not MISSING
        }
        KINDS.setdefault(kind, []).append(cls)
        EVENT_CLASSES.append(cls)
        return cls

    return register


# -- dns ---------------------------------------------------------------------------------


@_declare("dns")
@dataclass(frozen=True, slots=True, kw_only=True)
class Dns(EventData):
    """A DNS question and its answer (RFC 1034 §4.3, RFC 1035 §4.1): asked
    of a lab name server, or answered from a node's own cache (RFC 2308 for
    how long a negative answer is kept)."""

    client: str = _doc("the address that asked")
    server: str = _doc("the name server asked (or that gave the cached answer)")
    name: str = _doc("the name asked about, fully qualified (empty for a malformed query)")
    type: str = _doc("the record type asked for: A, MX, TXT, PTR ...")
    rcode: str = _doc(
        "the response code: NOERROR, NXDOMAIN, SERVFAIL, REFUSED, FORMERR (RFC 1035 §4.1.1); "
        "TIMEOUT when no answer came back at all"
    )
    answers: list[DnsRecordJson] = _doc("the records of the answer section")
    authoritative: bool | None = _opt("the AA bit: the server owns the zone (RFC 1035 §4.1.1)")
    cached: bool | None = _opt("answered from a cache, not asked again")
    transport: str | None = _opt("udp or tcp (RFC 7766: TCP after a truncated UDP answer)")
    truncated: bool | None = _opt("the TC bit: too big for UDP, ask again over TCP")
    upstream: list[str] | None = _opt("the servers a recursive resolver asked on the way")
    wire: DnsWire | None = _opt("both messages as sent, base64 (for --pcap)")
    explanation: str | None = _opt("why the answer is what it is, in words")


# -- net ---------------------------------------------------------------------------------


@_declare("net")
@dataclass(frozen=True, slots=True, kw_only=True)
class Net(EventData):
    """A packet's fate on its path through the lab's routers: accepted,
    dropped, rejected (an ICMP error, RFC 792, or a TCP reset, RFC 9293
    §3.10.7.1), unreachable, or a reset because nothing listens (``closed``)."""

    src: str = _doc("the source address")
    dst: str = _doc("the destination address")
    proto: str = _doc("tcp or udp")
    port: int | None = _doc("the destination port (null: a packet without ports)")
    verdict: Literal["accept", "drop", "reject", "unreachable", "closed"] = _doc(
        "what happened to the packet"
    )
    path: list[str] | None = _opt("the nodes the packet crosses, in order")
    router: str | None = field(
        default=None, metadata={"doc": "the router whose rule decided (null: none did)"}
    )
    rule: int | None = field(
        default=None, metadata={"doc": "the 0-based index of that rule in the router's list"}
    )
    rule_text: str | None = field(default=None, metadata={"doc": "that rule, as written"})
    reject_with: str | None = field(
        default=None, metadata={"doc": "for reject: icmp-port-unreachable, tcp-reset ..."}
    )
    note: str | None = field(default=None, metadata={"doc": "the rule's note, or why unreachable"})
    explanation: str | None = _opt("the verdict in one sentence")
    observed: str | None = _opt(
        "mininet only: what the real socket saw (connected, refused, timeout, unreachable, "
        "not sent, expected to fail)"
    )


# -- smtp --------------------------------------------------------------------------------


@_declare("smtp")
@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpClientExchange(EventData):
    """One SMTP command a client sent and the reply it got (RFC 5321 §4.1,
    §4.2; enhanced status codes RFC 3463 via RFC 2034)."""

    role: Literal["client"] = field(default="client", metadata={"doc": "who records: the client"})
    peer: str = _doc("the server's address and port")
    stage: str = _doc("connect, helo, starttls, auth, mail, rcpt or data")
    command: str = _doc("the command as sent (passwords masked)")
    code: int | None = _doc("the reply code; null when no reply came (see text)")
    enhanced: str | None = _doc("the enhanced status code (RFC 3463), if the server sent one")
    text: str = _doc("the reply text, or the error when no reply came")
    payload: str | None = _opt(
        "at the final dot of DATA: the message as it went on the wire, latin-1 (for --pcap)"
    )
    headers: list[str] | None = _opt("at the final dot of DATA: the message's header lines")


@_declare("smtp")
@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpServerAnswer(EventData):
    """A decision of a lab SMTP server (the submission service), with the
    reply it sent and why (RFC 5321 §4.2, RFC 6409 for submission)."""

    role: Literal["server"] = field(default="server", metadata={"doc": "who records: the server"})
    command: str = _doc("the command answered")
    code: int = _doc("the reply code")
    enhanced: str = _doc("the enhanced status code (RFC 3463)")
    text: str = _doc("the reply text")
    explanation: str = _doc("why the server answered so")


@_declare("smtp")
@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpFault(EventData):
    """A client broke the protocol (an over-long line, RFC 5321 §4.5.3.1; a
    message over the size limit, RFC 1870) and the server said so."""

    role: Literal["server"] = field(default="server", metadata={"doc": "who records: the server"})
    fault: str = _doc("what the client did wrong: line, size ...")


# -- tls ---------------------------------------------------------------------------------


@_declare("tls")
@dataclass(frozen=True, slots=True, kw_only=True)
class Tls(EventData):
    """A client's TLS handshake succeeded (RFC 8446; STARTTLS in SMTP RFC
    3207, in IMAP/POP3 RFC 2595)."""

    peer: str = _doc("the server's address and port")
    version: str | None = _doc("the protocol version, e.g. TLSv1.3")
    cipher: str | None = _doc("the cipher suite")
    verified: bool = _doc("the certificate was checked against the lab CA")
    server_name: str | None = _opt("the name the certificate was checked for")


# -- check -------------------------------------------------------------------------------


@_declare("check")
@dataclass(frozen=True, slots=True, kw_only=True)
class Check(EventData):
    """A receiving check's verdict and what the receiver did with it (SPF RFC
    7208, DKIM RFC 6376, DMARC RFC 7489, ARC RFC 8617, DNSBL RFC 5782, FCrDNS,
    greylisting, the score); results as in Authentication-Results (RFC 8601)."""

    client: str = _doc("the connecting client's address")
    check: str = _doc("the check: spf, dkim, dmarc, dnsbl, fcrdns, greylist, score ...")
    result: str = _doc("its result: pass, fail, softfail, none, listed ...")
    action: str = _doc("what the receiver did: reject, defer, junk, header or none")
    configured: str | None = _doc("the action configured for this result (null: none)")
    stage: str = _doc("the SMTP stage it ran at: connect, helo, mail, rcpt, data")
    explanation: str = _doc("the result in words")
    inputs: dict[str, Any] = _doc("what the check looked at (per check)")
    details: dict[str, Any] = _doc("what it found on the way (per check)")
    reply: ReplyJson | None = _doc("the reply sent because of it (null: none)")
    software: str | None = _opt(
        "the real program that logged it (postfix, dovecot: mininet, docs/postfix.md)"
    )


# -- queue -------------------------------------------------------------------------------


@_declare("queue")
@dataclass(frozen=True, slots=True, kw_only=True)
class QueueQueued(EventData):
    """A relay put a message in its queue (RFC 5321 §4.5.4: store, then try)."""

    event: Literal["queued"] = field(default="queued", metadata={"doc": "queued"})
    queue_id: str = _doc("the relay's queue id")
    mail_from: str = _doc("the envelope sender (MAIL FROM)")
    rcpts: list[str] = _doc("the envelope recipients (RCPT TO)")
    size: int = _doc("the message's size in bytes")
    dkim: list[str] = _doc("the domains it was DKIM-signed for (RFC 6376)")
    entry_kind: str = _doc("what the entry is: mail, dsn ...")


@_declare("queue")
@dataclass(frozen=True, slots=True, kw_only=True)
class QueueRecovered(EventData):
    """A restarted relay found the entry in its spool and runs it at once (the
    queue survives a restart: RFC 5321 §4.5.4.1 asks for stable storage)."""

    event: Literal["queued"] = field(default="queued", metadata={"doc": "queued"})
    queue_id: str = _doc("the relay's queue id")
    recovered: Literal[True] = field(default=True, metadata={"doc": "always true"})


@_declare("queue")
@dataclass(frozen=True, slots=True, kw_only=True)
class QueueRecovery(EventData):
    """A spool file the restarted relay could not read (RFC 5321 §6.1: a
    message accepted must not be lost silently, so it is said here)."""

    event: Literal["recovery"] = field(default="recovery", metadata={"doc": "recovery"})
    problem: str = _doc("what was wrong with the file")


@_declare("queue")
@dataclass(frozen=True, slots=True, kw_only=True)
class QueueAttempt(EventData):
    """A delivery attempt begins: the relay connects to an MX (RFC 5321 §5.1)."""

    event: Literal["attempt"] = field(default="attempt", metadata={"doc": "attempt"})
    queue_id: str = _doc("the relay's queue id")
    rcpt: str = _doc("the recipients of this attempt, comma-separated")
    rcpts: list[str] = _doc("the recipients of this attempt")
    mx: str = _doc("the host name tried")
    address: str = _doc("its address")
    port: int = _doc("its port")
    attempt: int = _doc("the attempt's number, from 1")


@_declare("queue")
@dataclass(frozen=True, slots=True, kw_only=True)
class QueueDelivered(EventData):
    """The next hop accepted a recipient (250 at the end of DATA, RFC 5321 §4.1.1.4)."""

    event: Literal["delivered"] = field(default="delivered", metadata={"doc": "delivered"})
    queue_id: str = _doc("the relay's queue id")
    rcpt: str = _doc("the recipient")
    reply: ReplyJson | None = _doc("the reply that accepted it")
    mx: str = _doc("the host that accepted it")
    address: str = _doc("its address")
    software: str | None = _opt(
        "the real program that logged it (postfix, dovecot: mininet, docs/postfix.md)"
    )
    bounce: bool | None = _opt("it concerns a bounce (DSN) the real MTA sent back")


@_declare("queue")
@dataclass(frozen=True, slots=True, kw_only=True)
class QueueDeferred(EventData):
    """A recipient failed temporarily and stays queued for a retry (RFC 5321
    §4.5.4.1)."""

    event: Literal["deferred"] = field(default="deferred", metadata={"doc": "deferred"})
    queue_id: str = _doc("the relay's queue id")
    rcpt: str = _doc("the recipient")
    reply: ReplyJson | None = _doc("the reply, or the relay's own classification")
    next_attempt: float = _doc("lab time of the next attempt")
    remote_mta: str | None = _doc("the server that answered (null: none was reached)")
    stage: str | None = _doc("the SMTP stage it failed at")
    software: str | None = _opt(
        "the real program that logged it (postfix, dovecot: mininet, docs/postfix.md)"
    )
    bounce: bool | None = _opt("it concerns a bounce (DSN) the real MTA sent back")


@_declare("queue")
@dataclass(frozen=True, slots=True, kw_only=True)
class QueueInternalError(EventData):
    """An attempt failed inside the relay itself; it retries later, as for a
    temporary failure (RFC 5321 §4.5.4.1)."""

    event: Literal["deferred"] = field(default="deferred", metadata={"doc": "deferred"})
    queue_id: str = _doc("the relay's queue id")
    error: str = _doc("what went wrong")
    next_attempt: float = _doc("lab time of the next attempt")


@_declare("queue")
@dataclass(frozen=True, slots=True, kw_only=True)
class QueueBounced(EventData):
    """A recipient failed for good: a 5xx reply, or too long in the queue
    (RFC 5321 §4.5.4.1 give-up time)."""

    event: Literal["bounced"] = field(default="bounced", metadata={"doc": "bounced"})
    queue_id: str = _doc("the relay's queue id")
    rcpt: str = _doc("the recipient")
    reply: ReplyJson | None = _doc("the last reply")
    reason: Literal["give_up", "permanent"] = _doc("a permanent reply, or the give-up time")
    stage: str | None = _doc("the SMTP stage it failed at")
    remote_mta: str | None = _doc("the server that answered (null: none was reached)")
    software: str | None = _opt(
        "the real program that logged it (postfix, dovecot: mininet, docs/postfix.md)"
    )
    bounce: bool | None = _opt("it concerns a bounce (DSN) the real MTA sent back")


@_declare("queue")
@dataclass(frozen=True, slots=True, kw_only=True)
class QueueDsn(EventData):
    """A non-delivery report (RFC 3464) was queued to the envelope sender."""

    event: Literal["bounced"] = field(default="bounced", metadata={"doc": "bounced"})
    queue_id: str = _doc("the failed message's queue id")
    rcpts: list[str] = _doc("the failed recipients")
    dsn: str = _doc("the report's own queue id")


@_declare("queue")
@dataclass(frozen=True, slots=True, kw_only=True)
class QueueBounceDropped(EventData):
    """A bounce that failed is dropped, not bounced (RFC 5321 §6.2)."""

    event: Literal["bounced"] = field(default="bounced", metadata={"doc": "bounced"})
    queue_id: str = _doc("the bounce's queue id")
    rcpts: list[str] = _doc("its failed recipients")
    dropped: Literal[True] = field(default=True, metadata={"doc": "always true"})


@_declare("queue")
@dataclass(frozen=True, slots=True, kw_only=True)
class QueueWarning(EventData):
    """A delay warning (RFC 3464 Action: delayed) was queued to the sender."""

    event: Literal["warning"] = field(default="warning", metadata={"doc": "warning"})
    queue_id: str = _doc("the delayed message's queue id")
    rcpts: list[str] = _doc("the recipients still undelivered")
    dsn: str = _doc("the warning's own queue id")


@_declare("queue")
@dataclass(frozen=True, slots=True, kw_only=True)
class QueueRoute(EventData):
    """A backup MX's relay keeps to the more preferred MX hosts of the domain:
    never itself or a less preferred one (RFC 5321 §5.1)."""

    event: Literal["route"] = field(default="route", metadata={"doc": "route"})
    queue_id: str = _doc("the relay's queue id")
    domain: str = _doc("the recipients' domain")
    hosts: list[str] = _doc("the MX hosts it will try, best first (empty: none is left)")


@_declare("queue")
@dataclass(frozen=True, slots=True, kw_only=True)
class DmarcReportSent(EventData):
    """An MX mailed a DMARC aggregate report (RFC 7489 §7.2)."""

    dmarc_report: DmarcReportJson = _doc("the report")


# -- delivery ----------------------------------------------------------------------------


@_declare("delivery")
@dataclass(frozen=True, slots=True, kw_only=True)
class Delivered(EventData):
    """The MX stored the message in a mailbox (the MDA's part, RFC 5598
    §4.3.2), in the inbox or the junk folder."""

    mailbox: str = _doc("the recipient address")
    user: str = _doc("the mailbox (user) it was stored for")
    folder: Literal["inbox", "junk"] = _doc("where it was stored")
    message_id: str | None = _doc("the Message-ID: header (RFC 5322 §3.6.4)")
    queue_id: str | None = _doc("the sending client's queue id, if it said one")
    mx_queue_id: str = _doc("the MX's own queue id (in its Received: header)")
    key: str = _doc("the Maildir file name")
    junk_by: list[str] = _doc("the checks that made it junk")
    software: str | None = _opt(
        "the real program that logged it (postfix, dovecot: mininet, docs/postfix.md)"
    )
    bounce: bool | None = _opt("it concerns a bounce (DSN) the real MTA sent back")


@_declare("delivery")
@dataclass(frozen=True, slots=True, kw_only=True)
class Forwarded(EventData):
    """An alias: the MX handed the message to its relay for another address,
    envelope sender unchanged (RFC 5321 §3.9.1), which is why SPF fails next."""

    mailbox: str = _doc("the alias address")
    folder: Literal["forwarded"] = field(default="forwarded", metadata={"doc": "forwarded"})
    forwarded_to: str = _doc("the address it goes to")
    relay_queue_id: str = _doc("the relay's queue id")
    message_id: str | None = _doc("the Message-ID: header (RFC 5322 §3.6.4)")
    queue_id: str | None = _doc("the sending client's queue id, if it said one")
    mx_queue_id: str = _doc("the MX's own queue id")
    role: str | None = _opt("backup: a backup MX queued it for a more preferred MX (RFC 5321 §5.1)")


@_declare("delivery")
@dataclass(frozen=True, slots=True, kw_only=True)
class ListResent(EventData):
    """A mailing list hosted by the MX: the message resent to the members
    through the relay, from the list's own envelope sender (RFC 5321
    §3.9.2), changed as lists change it (subject tag, footer, From:
    rewriting, an ARC seal: RFC 8617)."""

    mailbox: str = _doc("the list's address")
    folder: Literal["list"] = field(default="list", metadata={"doc": "list"})
    forwarded_to: str = _doc("the members, comma-separated")
    relay_queue_id: str = _doc("the relay's queue id")
    message_id: str | None = _doc("the Message-ID: header (RFC 5322 §3.6.4)")
    queue_id: str | None = _doc("the sending client's queue id, if it said one")
    mx_queue_id: str = _doc("the MX's own queue id")
    list_changes: list[str] = _doc("what the list changed, in words")


# -- route: where a direct send connects --------------------------------------------------


@_declare("route")
@dataclass(frozen=True, slots=True, kw_only=True)
class ServerChosen(EventData):
    """A direct send told where to connect (``server:``): it goes there
    without looking up the domain's MX records (RFC 5321 §5.1), as a
    spammer aiming at a backup MX does."""

    domain: str = _doc("the recipients' domain")
    server: str = _doc("the server as given: a node name or an address")
    host: str = _doc("the host name it stands for")
    address: str = _doc("the address connected to")
    node: str | None = _doc("the lab node at that address (null: none)")
    mx_lookup: bool = _doc("whether the MX records were looked up (false here)")


# -- imap, pop3 --------------------------------------------------------------------------


@_declare("imap")
@dataclass(frozen=True, slots=True, kw_only=True)
class ImapExchange(EventData):
    """One IMAP command a client sent and the lines that answered it (RFC 9051)."""

    role: Literal["client"] = field(default="client", metadata={"doc": "who records: the client"})
    peer: str = _doc("the server's address and port")
    command: str | None = _doc("the command as sent (passwords masked); null for the greeting")
    response: str = _doc("the status line")
    status: str | None = _doc("OK, NO, BAD, BYE, PREAUTH (RFC 9051 §7.1)")
    code: str | None = _doc("the response code, e.g. AUTHENTICATIONFAILED (RFC 5530)")
    text: str = _doc("the status line's text")
    lines: list[str] = _doc("the untagged lines before it (the first ones)")
    more_lines: int = _doc("how many more lines were left out")


@_declare("pop3")
@dataclass(frozen=True, slots=True, kw_only=True)
class Pop3Exchange(EventData):
    """One POP3 command a client sent and its answer (RFC 1939)."""

    role: Literal["client"] = field(default="client", metadata={"doc": "who records: the client"})
    peer: str = _doc("the server's address and port")
    command: str | None = _doc("the command as sent (passwords masked); null for the greeting")
    response: str = _doc("the status line")
    status: str | None = _doc("+OK or -ERR")
    code: str | None = _doc("the response code, e.g. AUTH, IN-USE (RFC 2449, RFC 3206)")
    text: str = _doc("the status line's text")
    lines: list[str] = _doc("the lines of a multi-line answer (the first ones)")
    more_lines: int = _doc("how many more lines were left out")


# -- mailbox: what the message store did (RFC 5598 §4.3.2: the MDA stores, the store serves)


@_declare("mailbox")
@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxLogin(EventData):
    """A user logged in to the message store (IMAP LOGIN RFC 9051 §6.2.3, POP3 USER/PASS)."""

    protocol: str = _doc("imap or pop3")
    event: Literal["login"] = field(default="login", metadata={"doc": "login"})
    user: str = _doc("the mailbox")
    messages: int | None = _opt("POP3: the messages in INBOX")


@_declare("mailbox")
@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxLoginFailed(EventData):
    """A login was refused (IMAP NO [AUTHENTICATIONFAILED] RFC 5530, POP3 -ERR
    [AUTH] RFC 3206)."""

    protocol: str = _doc("imap or pop3")
    event: Literal["login_failed"] = field(default="login_failed", metadata={"doc": "login_failed"})
    user: str | None = _doc("the user name tried (null: AUTHENTICATE, not said yet)")
    reason: str | None = _opt("IMAP: credentials, or privacy (a password before STARTTLS)")


@_declare("mailbox")
@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxTls(EventData):
    """The session is now in TLS (STARTTLS/STLS, RFC 2595)."""

    protocol: str = _doc("imap or pop3")
    event: Literal["tls"] = field(default="tls", metadata={"doc": "tls"})
    version: str | None = _opt("the TLS version")
    cipher: str | None = _opt("the cipher suite")


@_declare("mailbox")
@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxMoved(EventData):
    """A Maildir file moved (new/ → cur/ when seen, a flag added to its name):
    the \\Seen flag of RFC 9051 §2.3.2, kept in the file name."""

    protocol: str = _doc("imap or pop3")
    user: str = _doc("the mailbox")
    event: Literal["moved"] = field(default="moved", metadata={"doc": "moved"})
    path: str = _doc("the file before, relative to the Maildir")
    to: str = _doc("the file after")


@_declare("mailbox")
@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxDeleted(EventData):
    """A Maildir file was deleted (IMAP EXPUNGE RFC 9051 §6.4.3, POP3 DELE then
    QUIT RFC 1939 §6)."""

    protocol: str = _doc("imap or pop3")
    user: str = _doc("the mailbox")
    event: Literal["deleted"] = field(default="deleted", metadata={"doc": "deleted"})
    path: str = _doc("the file deleted, relative to the Maildir")
    to: None = field(default=None, metadata={"doc": "always null"})


# -- what only a real MTA's log says (mininet: sim.services.maillog) ----------------------


@_declare("smtp")
@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpConnectLogged(EventData):
    """A real MTA logged a client's connection (Postfix's ``connect from``;
    the session RFC 5321 §3.1 opens)."""

    role: Literal["server"] = field(default="server", metadata={"doc": "who records: the server"})
    event: Literal["connect"] = field(default="connect", metadata={"doc": "connect"})
    client: str = _doc("the client as logged: name[address]:port")
    software: str = _doc("the program that logged it: postfix")


@_declare("smtp")
@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpRefusalLogged(EventData):
    """A real MTA logged a command it refused, with its reply (RFC 5321 §4.2)."""

    role: Literal["server"] = field(default="server", metadata={"doc": "who records: the server"})
    stage: str = _doc("the SMTP stage refused: helo, mail, rcpt, data ...")
    code: int = _doc("the reply code")
    enhanced: str | None = _doc("the enhanced status code (RFC 3463)")
    text: str = _doc("the reply text")
    software: str = _doc("the program that logged it: postfix")


@_declare("queue")
@dataclass(frozen=True, slots=True, kw_only=True)
class QueueBounceSent(EventData):
    """A real MTA sent the sender a bounce (a DSN, RFC 3464) for a message."""

    event: Literal["dsn"] = field(default="dsn", metadata={"doc": "dsn"})
    queue_id: str = _doc("the failed message's queue id")
    dsn_queue_id: str = _doc("the bounce's own queue id")
    software: str = _doc("the program that logged it: postfix")


@_declare("imap")
@dataclass(frozen=True, slots=True, kw_only=True)
class ImapLoginLogged(EventData):
    """The real IMAP server logged a login (Dovecot's ``Login: user=<...>``;
    LOGIN or AUTHENTICATE, RFC 9051 §6.2)."""

    role: Literal["server"] = field(default="server", metadata={"doc": "who records: the server"})
    event: Literal["login"] = field(default="login", metadata={"doc": "login"})
    user: str = _doc("the user who logged in")
    software: str = _doc("the program that logged it: dovecot")


@_declare("pop3")
@dataclass(frozen=True, slots=True, kw_only=True)
class Pop3LoginLogged(EventData):
    """The real POP3 server logged a login (Dovecot's ``Login: user=<...>``;
    USER/PASS, RFC 1939 §7)."""

    role: Literal["server"] = field(default="server", metadata={"doc": "who records: the server"})
    event: Literal["login"] = field(default="login", metadata={"doc": "login"})
    user: str = _doc("the user who logged in")
    software: str = _doc("the program that logged it: dovecot")


# -- errors and front-end markers --------------------------------------------------------


@_declare("error")
@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceFailure(EventData):
    """A service failed on one request (a bug or a broken client); it keeps
    serving the others."""

    service: str = _doc("the service: dns, dmarc_reports ...")
    error: str = _doc("what failed")


@_declare("lab")
@dataclass(frozen=True, slots=True, kw_only=True)
class LabAction(EventData):
    """Not from a service: a front end's marker for a change the student made
    (what follows happened because of it), or lab time running on."""

    action: str | None = _doc("the change, or null when lab time ran on by itself")


@_declare("wait")
@dataclass(frozen=True, slots=True, kw_only=True)
class Wait(EventData):
    """Not from a service: a front end's line for the time a client waited
    for an answer that never came (a dropped SYN, RFC 9293 §3.8.1 retries)."""

    peer: str = _doc("the address and port the client waited for")
    waited: float = _doc("lab seconds waited")
    src: str | None = _doc("the client's address")
    dst: str | None = _doc("the server's address")


# -- reading -----------------------------------------------------------------------------


#: Kinds only the front ends make (markers in a trace view), never a service.
FRONT_END_KINDS = ("lab", "wait")


def service_kinds() -> tuple[str, ...]:
    """Every kind a service can record: what lab checks may name."""
    return tuple(kind for kind in KINDS if kind not in FRONT_END_KINDS)


def keys_of(kind: str) -> tuple[str, ...]:
    """Every ``data`` key some variant of ``kind`` declares, sorted."""
    return tuple(sorted({key for cls in KINDS.get(kind, ()) for key in cls.KEYS}))


def classes_of(kind: str) -> list[type[EventData]]:
    """The variants of ``kind`` (empty for an undeclared kind)."""
    return KINDS.get(kind, [])


def _fits(cls: type[EventData], data: Mapping[str, Any]) -> bool:
    keys = cls.KEYS
    if any(key not in keys for key in data):
        return False
    if any(key not in data for key in cls.REQUIRED):
        return False
    return all(data.get(key, value) == value for key, value in cls.TAGS.items())


def parse_data(kind: str, data: Mapping[str, Any]) -> EventData | None:
    """``data`` of a ``kind`` event as its typed class, or None when no
    declared variant fits (an older or newer trace: kept as a plain dict)."""
    for cls in KINDS.get(kind, ()):
        if _fits(cls, data):
            return cls(**data)
    return None


def undeclared(kind: str, data: Mapping[str, Any]) -> str | None:
    """Why ``data`` fits no declared variant of ``kind``, in one sentence
    naming the kind and the keys (None when one fits)."""
    variants = KINDS.get(kind)
    if not variants:
        return f"kind {kind!r} is not declared in sim/events.py"
    if any(_fits(cls, data) for cls in variants):
        return None
    known = {key for cls in variants for key in cls.KEYS}
    unknown = sorted(set(data) - known)
    if unknown:
        return (
            f"kind {kind!r}: key(s) {', '.join(map(repr, unknown))} not declared in "
            f"sim/events.py (declared: {', '.join(sorted(known))})"
        )
    tried = "; ".join(
        f"{cls.__name__} needs {sorted(cls.REQUIRED)} and {cls.TAGS}" for cls in variants
    )
    return f"kind {kind!r} with keys {sorted(data)} fits no variant ({tried})"


# -- the schema and the reference --------------------------------------------------------


def _type_schema(hint: Any) -> dict[str, Any]:
    if hint is Any:
        return {}
    if hint is None or hint is type(None):
        return {"type": "null"}
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if hint in simple:
        return {"type": simple[hint]}
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        return {"const": args[0]} if len(args) == 1 else {"enum": list(args)}
    if origin in (Union, types.UnionType):
        return {"anyOf": [_type_schema(a) for a in args]}
    if origin is list:
        return {"type": "array", "items": _type_schema(args[0])}
    if origin is dict:
        return {"type": "object"}
    if typing.is_typeddict(hint):
        return {"$ref": f"#/$defs/{hint.__name__}"}
    raise TypeError(f"no JSON Schema for {hint!r}")


def _typeddict_schema(td: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(td)
    return {
        "type": "object",
        "description": (td.__doc__ or "").strip(),
        "properties": {name: _type_schema(h) for name, h in hints.items()},
        "required": sorted(hints),
        "additionalProperties": False,
    }


def _class_schema(cls: type[EventData]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    props = {}
    for f in fields(cls):  # type: ignore[arg-type]
        prop = _type_schema(hints[f.name])
        prop["description"] = f.metadata["doc"]
        props[f.name] = prop
    required = [f.name for f in fields(cls) if f.name not in cls.OMIT]  # type: ignore[arg-type]
    return {
        "title": cls.__name__,
        "description": " ".join((cls.__doc__ or "").split()),
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }


_NESTED = (DnsRecordJson, DnsWire, ReplyJson, DmarcReportJson)


def schema() -> dict[str, Any]:
    """The JSON Schema of one event of ``--json`` (and of saved traces)."""
    defs: dict[str, Any] = {td.__name__: _typeddict_schema(td) for td in _NESTED}
    for cls in EVENT_CLASSES:
        defs[cls.__name__] = _class_schema(cls)
    branches = []
    for kind, variants in KINDS.items():
        refs = [{"$ref": f"#/$defs/{cls.__name__}"} for cls in variants]
        data = refs[0] if len(refs) == 1 else {"oneOf": refs}
        branches.append(
            {
                "if": {"properties": {"kind": {"const": kind}}},
                "then": {"properties": {"data": data}},
            }
        )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://maillab.example/trace.schema.json",
        "title": "maillab trace event",
        "description": "One event of a trace (maillab --json, saved traces); "
        "generated from sim/events.py by python -m sim.events.",
        "type": "object",
        "properties": {
            "t": {"type": "number", "description": "lab seconds since the lab started"},
            "kind": {"enum": list(KINDS), "description": "what sort of event"},
            "node": {"type": "string", "description": "the node where it happened"},
            "summary": {"type": "string", "description": "what happened, in one sentence"},
            "data": {"type": "object", "description": "the event as data (per kind)"},
        },
        "required": ["t", "kind", "node", "summary", "data"],
        "additionalProperties": False,
        "allOf": branches,
        "$defs": defs,
    }


def render_schema() -> str:
    return json.dumps(schema(), indent=2, ensure_ascii=False) + "\n"


def _hint_text(hint: Any) -> str:
    text = str(hint).replace("<class '", "").replace("'>", "").replace("NoneType", "None")
    text = re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", text)  # typing.Any, sim.events.X → Any, X
    return text.replace("|", "\\|")  # inside a Markdown table cell


def render_reference() -> str:
    """docs/trace.md: every kind, its variants and fields."""
    out = [
        "# The trace vocabulary",
        "",
        "<!-- generated from sim/events.py by `python -m sim.events`; do not edit -->",
        "",
        "Every experiment returns a trace: a list of events, each",
        '`{"t", "kind", "node", "summary", "data"}` in `--json` and in saved traces.',
        "`t` is lab seconds since the lab started, `node` where it happened,",
        "`summary` one readable sentence; `data` depends on the kind, as below.",
        "`docs/trace.schema.json` is the JSON Schema of one event.",
        "",
        "In Python, `event.data` is an instance of the class named here (a",
        "read-only mapping of the same keys); read it typed with",
        "`event.as_(Dns)`, which is None for an event of another class.",
        "Services construct these classes (`ctx.record(trace_id, Dns(...), summary)`).",
        "A key marked *optional* is left out of `data` when it does not apply.",
        "Lab checks (`trace_contains`) accept every kind a service records (all",
        "but `lab` and `wait`, which only the front ends draw) and match `data`",
        "values with `fields`.",
        "",
        "## What changed in the JSON when the vocabulary was typed",
        "",
        "The shape `{t, kind, node, summary, data}` is the same, and so is every",
        "kind's `data`, except:",
        "",
        "* a service's own failure on one request (the DNS server's `DNS over TCP",
        "  failed`, the MX's `DMARC reports could not be sent`) is kind `error`",
        "  (`service`, `error`); it was a `dns` event with only `error`, or a",
        "  `queue` event with no data;",
        "* a `net` event `closed` (nothing listens) carries `router`, `rule`,",
        "  `rule_text`, `reject_with` and `note` as null, like every other `net`",
        "  event;",
        "* no `outcome` kind: nothing recorded one (a result says its outcome).",
        "",
        "A saved trace from before reads back all the same: an event whose data",
        "fits no class keeps its data as a plain mapping.",
        "",
    ]
    for kind, variants in KINDS.items():
        out += [f"## `{kind}`", ""]
        for cls in variants:
            tags = ", ".join(f"`{k}: {json.dumps(v)}`" for k, v in cls.TAGS.items())
            out.append(f"### {cls.__name__}" + (f" ({tags})" if tags else ""))
            out += ["", " ".join((cls.__doc__ or "").split()), ""]
            out += ["| key | type | meaning |", "|---|---|---|"]
            hints = typing.get_type_hints(cls)
            for f in fields(cls):  # type: ignore[arg-type]
                extra = " *optional*" if f.name in cls.OMIT else ""
                out.append(
                    f"| `{f.name}` | `{_hint_text(hints[f.name])}` | {f.metadata['doc']}{extra} |"
                )
            out.append("")
    out += ["## Values inside `data`", ""]
    for td in _NESTED:
        out += [f"### {td.__name__}", "", " ".join((td.__doc__ or "").split()), ""]
        out += ["| key | type |", "|---|---|"]
        for name, hint in typing.get_type_hints(td).items():
            out.append(f"| `{name}` | `{_hint_text(hint)}` |")
        out.append("")
    return "\n".join(out)


def _docs_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "docs"


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or, with ``--check``, compare) docs/trace.schema.json and docs/trace.md."""
    parser = argparse.ArgumentParser(
        prog="python -m sim.events",
        description="Regenerate docs/trace.schema.json and docs/trace.md.",
    )
    parser.add_argument("--check", action="store_true", help="only report stale files")
    parser.add_argument("--docs", type=Path, default=_docs_dir(), help="the docs directory")
    args = parser.parse_args(argv)
    stale = 0
    for name, text in (("trace.schema.json", render_schema()), ("trace.md", render_reference())):
        target: Path = args.docs / name
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            continue
        if args.check:
            print(f"{target}: stale; run python -m sim.events", file=sys.stderr)
            stale += 1
        else:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target}")
    return 1 if stale else 0


if __name__ == "__main__":
    # Through the imported module: run as __main__, this file's classes would
    # be a second copy, named __main__.X.
    from sim.events import main as _main

    raise SystemExit(_main())
