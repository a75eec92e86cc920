"""The receiving MTA: port 25 of a domain's MX host (RFC 5321).

What it does, in the order a session meets it:

1. **Greeting and EHLO.** ``220 HOST ESMTP``; EHLO lists SIZE (RFC 1870),
   8BITMIME (RFC 6152), PIPELINING (RFC 2920), STARTTLS (RFC 3207, with a
   certificate from the lab CA) and ENHANCEDSTATUSCODES (RFC 2034). Every reply
   after the greeting and EHLO carries an enhanced status code (RFC 3463).
2. **MAIL.** The null reverse-path ``<>`` is accepted: bounces use it
   (RFC 5321 §4.5.5). The ``tls`` check runs here, so "Must issue a STARTTLS
   command first" comes at MAIL, as with Postfix.
3. **RCPT.** Only the MX's own domains (never an open relay: ``554 5.7.1
   Relay access denied``), then the checks of the client (ptr, fcrdns, helo,
   dnsbl: once per connection, at the first RCPT, like Postfix's
   ``smtpd_delay_reject`` so that the reply names the recipient's stage) and
   SPF (once per transaction), then unknown users (``550 5.1.1``), then
   greylisting (RFC 6647). ``postmaster`` is always accepted (RFC 5321 §4.5.1)
   and is exempt from the client checks and greylisting, so a rejected sender
   can still reach a person. The lookups of these checks start earlier, as
   soon as their inputs are known (the client's at connect, the HELO name's
   at EHLO, SPF's at MAIL), so the trace shows them there.
4. **DATA.** DKIM and DMARC need the message, so they run after the final
   dot; then the message is stored (Maildir, INBOX or Junk) **before** the
   ``250 2.0.0 Ok: queued as ID`` (RFC 5321 §6.1: what is acknowledged must
   not be lost). Each stored copy gets ``Return-Path``, ``Delivered-To``
   (what the MDA adds at final delivery, RFC 5321 §4.4), ``Received``
   (RFC 5321 §4.4) and ``Authentication-Results`` (RFC 8601).

Which checks run, and what a failure costs, is the topology's
(:class:`~sim.topology.model.MxService`); the decision rules are in
:mod:`sim.services.policy`, the reply texts in :mod:`sim.services.replies`.
Every check emits a ``check`` trace event, every stored copy a ``delivery``
event, under the trace id the connection came with.

Robustness (each in ``tests/test_mx_robustness.py``): aiosmtpd answers
malformed commands with 500/501 and goes on; a line longer than the limit is
read to its end and answered ``500 5.5.2``; data beyond ``max_size`` is read
and answered ``552 5.3.4``; a client that disconnects mid-DATA leaves nothing
stored. **Bare LF**: command lines ending in a bare LF are accepted (aiosmtpd
reads commands up to LF, as Postfix's default ``smtpd_forbid_bare_newline =
normalize`` does), but inside DATA only CRLF ends a line and only
``CRLF.CRLF`` ends the message; ``LF.LF`` does not (RFC 5321 §4.1.1.4 says it
MUST NOT), which is what defeats SMTP smuggling (CVE-2023-51766 and
relatives): a message cannot hide a second one. A bare LF inside the content
is kept as it came.

Control commands (:meth:`MxServer.control`, labs use them)::

    down / up                       stop / start listening (connection refused)
    set_check  check, action        change (or add) a check's action; "off" removes it
    greylist   delay                turn greylisting on (lab seconds or "5m") or off (0)
    greylist_clear                  forget every greylisting triplet
    mailbox    user[, folder]       the stored messages of a user, as data
    status                          the MX's configuration now
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import inspect
import logging
import re
import secrets
import socket
import ssl
import struct
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from functools import lru_cache, partial
from typing import Any, AnyStr, ClassVar, Literal, TypeVar

from sim.auth.headers import authentication_results
from sim.auth.replay import Memo, replay
from sim.auth.result import CheckResult, Lookup
from sim.clock import parse_duration
from sim.errors import ServiceError
from sim.net.api import Endpoint
from sim.resolve import DnsAnswer, Resolver
from sim.services import checks as registry
from sim.services.base import NodeContext, Service
from sim.services.checks import dkim as dkim_check
from sim.services.checks import dmarc as dmarc_check
from sim.services.checks import spf as spf_check
from sim.services.checks.base import ALL_ACTIONS, Check, CheckInput, Stage
from sim.services.greylist import Greylist
from sim.services.maildir import Maildir, mail_root
from sim.services.mxchecks import (
    ReverseDns,
    check_dnsbl_async,
    check_helo_async,
    check_tls,
    fcrdns_result,
    ptr_result,
    reverse_dns_async,
)
from sim.services.mxscore import Score, Weights, score
from sim.services.mxscore import apply as apply_score
from sim.services.policy import Decision, Judgement, decide, judge
from sim.services.replies import enhance, reply
from sim.services.smtpbase import LabSMTP, fault_sink, idle_timeout
from sim.topology.model import CheckAction, CheckPolicy, MxService, Scoring

__all__ = ["Connection", "MxHandler", "MxSMTP", "MxServer", "Route", "Transaction"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Checks that need the message, run after DATA (their modules say so).
MESSAGE_CHECKS = tuple(c.name for c in registry.all_checks() if c.scope == "message")
#: Checks the MX keeps with the transaction, not the connection.
_TX_SCOPES = ("envelope", "session", "message", "generic")
ACTIONS: tuple[str, ...] = ALL_ACTIONS

# RFC 5321 §4.4: the "id" clause of a Received field (the sender's queue id).
_RECEIVED_ID = re.compile(r"\bid\s+([A-Za-z0-9._-]+)", re.IGNORECASE)
_UNPRINTABLE = re.compile(r"[^\x21-\x7e]")
# The usual path of MAIL and RCPT, <dot-atom@domain> (RFC 5321 §4.1.2).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(rf"<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>")


# --- per-connection and per-transaction state ---------------------------------


@dataclass
class Connection:
    """What the MX knows about one client connection (kept across STARTTLS:
    these facts come from the network, not from the client, RFC 3207 §4.2)."""

    ip: str
    port: int
    trace_id: str | None
    rdns: ReverseDns | None = None
    #: Results of the client checks (ptr, fcrdns, dnsbl), once computed.
    client: dict[str, list[CheckResult]] | None = None
    #: Result of the helo check, per HELO name.
    helo: dict[str, CheckResult] = field(default_factory=dict)
    #: The iprev clause of Authentication-Results, once made.
    iprev: CheckResult | None = None
    #: Checks started ahead, as soon as their inputs were known, keyed by
    #: what they compute: ("client", zones), ("helo", name), ("spf",
    #: mail_from, helo). See MxHandler.start.
    started: dict[tuple[Any, ...], asyncio.Task[Any]] = field(default_factory=dict)
    #: Counted in MxServer.open_sessions.
    open: bool = False


@dataclass
class Transaction:
    """One MAIL ... DATA transaction (kept on the aiosmtpd envelope, which
    aiosmtpd renews after DATA, RSET and EHLO)."""

    mail_from: str
    judgements: list[Judgement] = field(default_factory=list)
    spf: CheckResult | None = None
    #: The judgements of the RCPT-stage generic checks, once evaluated.
    generic: list[Judgement] | None = None
    recipients: list[tuple[str, str]] = field(default_factory=list)
    #: (recipient, address it forwards to): aliases sent on by the relay.
    forwards: list[tuple[str, str]] = field(default_factory=list)


RouteKind = Literal["local", "postmaster", "unknown", "relay", "syntax", "forward"]


@dataclass(frozen=True)
class Route:
    """Where a RCPT address goes: ``local`` (a mailbox), ``postmaster``,
    ``unknown`` (our domain, no such user), ``relay`` (not our domain),
    ``syntax`` (not an address)."""

    kind: RouteKind
    mailbox: str | None = None


class CachedLookup:
    """The MX host's DNS questions, on the event loop, through its own
    caching stub resolver (see :class:`sim.resolve.Resolver`): ``peek``
    gives a cached answer at once (recorded in the trace as it is given),
    ``await lookup(name, rtype)`` asks the lab resolver. :meth:`run` runs a
    synchronous check (ours, pyspf, dkimpy, the DMARC walk) over them
    (:func:`~sim.auth.replay.replay`): no worker thread, and a check whose
    answers are all cached runs once. Given a ``key`` naming the check and
    its arguments, the result of its last run is reused while the answers
    it depended on are unchanged (``memo``, the MX's)."""

    def __init__(self, resolver: Resolver, trace_id: str | None, memo: Memo) -> None:
        self.resolver = resolver
        self.trace_id = trace_id
        self.memo = memo

    async def __call__(self, name: str, rtype: str) -> DnsAnswer:
        return await self.resolver.query(name, rtype, trace_id=self.trace_id, cache=True)

    def peek(self, name: str, rtype: str) -> DnsAnswer | None:
        hit = self.resolver.from_cache(name, rtype, trace_id=self.trace_id)
        return None if hit is None else hit.answer

    async def run(self, check: Callable[[Lookup], T], key: Hashable = None) -> T:
        return await replay(check, self, self.peek, memo=self.memo, key=key)


# --- the SMTP protocol object ------------------------------------------------------


class MxSMTP(LabSMTP):
    """aiosmtpd's SMTP for the MX: enhanced status codes on aiosmtpd's own
    replies, and the connection's state."""

    def __init__(self, handler: Any, *, net: Any, **kwargs: Any) -> None:
        super().__init__(handler, net=net, ident="ESMTP maillab", **kwargs)
        self.mx_conn: Connection | None = None
        self._greeted = False
        self._verbatim = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.mx_conn is None:  # not again after STARTTLS (RFC 3207 §4.2)
            self.mx_conn = _new_connection(self)
            handler = self.event_handler
            if isinstance(handler, MxHandler):
                handler.connected(self.mx_conn)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        handler = self.event_handler
        if self.mx_conn is not None and isinstance(handler, MxHandler):
            handler.disconnected(self.mx_conn)

    async def push(self, status: AnyStr) -> None:
        # RFC 2034 §3: an enhanced code on every reply but the greeting and
        # the EHLO/HELO reply.
        if isinstance(status, str) and not self._verbatim:
            greeted, self._greeted = self._greeted, True
            if greeted:
                await super().push(enhance(status))
                return
        await super().push(status)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd reads every MAIL and RCPT path with the email package's
        # RFC 5322 parser, a tenth of the MX's time; the plain form is read
        # here to the same result, anything else (quotes, comments, address
        # literals, null path) still goes to that parser.
        match = _PLAIN_PATH.match(arg)
        if match is not None:
            rest = arg[match.end() :]
            if "(" not in rest and "\r" not in rest and "\n" not in rest:
                address = match.group(1)
                local = address.rpartition("@")[0]
                if self.local_part_limit and len(local) > self.local_part_limit:
                    return None, None
                return address, rest.lstrip(" \t")
        found: tuple[str | None, str | None] = super()._getaddr(arg)
        return found

    async def smtp_EHLO(self, hostname: str) -> None:
        self._verbatim = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._verbatim = False

    async def smtp_HELO(self, hostname: str) -> None:
        self._verbatim = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._verbatim = False


class _Reset(asyncio.Protocol):
    """Answers a connection with a TCP reset: the "down" MX on a backend
    that cannot stop one listener (see :meth:`MxServer._go_down`)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER on, 0 seconds: close() sends a reset, not a FIN.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()  # type: ignore[attr-defined]


# --- the service -------------------------------------------------------------------


class MxServer(Service):
    """The receiving MTA of one node."""

    kind: ClassVar[str] = "mx"

    def __init__(self, ctx: NodeContext) -> None:
        super().__init__(ctx)
        config = ctx.node.services.mx
        if config is None:
            raise ServiceError(f"{ctx.node.name} has no mx service")
        if not config.domains:
            raise ServiceError(f"{ctx.node.name}: an mx service needs at least one domain")
        self.config: MxService = config
        self.hostname = config.hostname or f"mx.{config.domains[0]}"
        self.domains = tuple(d.lower().rstrip(".") for d in config.domains)
        self.mailboxes = tuple(m.lower() for m in config.mailboxes)
        self.forwards = {local.lower(): target for local, target in config.forward}
        #: The checks in the order they run, with their actions (``set_check`` edits it).
        self.checks: list[CheckPolicy] = list(config.checks)
        #: Checks evaluated through their module's ``evaluate``, by stage
        #: (computed when the checks change, not per message).
        self.generic: dict[str, tuple[tuple[Check, CheckAction], ...]] = _generic_by_stage(
            self.checks
        )
        #: The scoring table (None: the checks' actions alone decide).
        self.weights: Weights | None = (
            Weights(config.scoring) if config.scoring is not None else None
        )
        self.greylist: Greylist | None = (
            Greylist(config.greylist) if config.greylist is not None else None
        )
        self.maildir = Maildir(mail_root(ctx.state_dir, ctx.node.name))
        self.handler = MxHandler(self)
        self.down = config.down
        self._endpoint: Endpoint | None = None
        self._reset_mode = False
        self._sessions: weakref.WeakSet[MxSMTP] = weakref.WeakSet()
        #: Connected clients now (see blocking()).
        self.open_sessions = 0
        self._tls: ssl.SSLContext | None = None
        self._faults = fault_sink(ctx, "mx")
        #: The last results of the client checks, SPF and DMARC (functions of
        #: their arguments and DNS answers), reused while those answers hold
        #: (sim.auth.replay).
        self.memo = Memo()

    # -- configuration views ------------------------------------------------

    def action(self, check: str) -> CheckAction | None:
        for policy in self.checks:
            if policy.check == check:
                return policy.action
        return None

    def runs(self, check: str) -> bool:
        return self.action(check) is not None

    @property
    def postmaster_mailbox(self) -> str:
        """RFC 5321 §4.5.1: postmaster mail goes to a person: the first mailbox."""
        return self.mailboxes[0] if self.mailboxes else "postmaster"

    def route(self, address: str) -> Route:
        """Where a RCPT TO address goes (domains compare case-insensitively;
        local parts too, as Postfix's virtual mailbox lookups do)."""
        address = address.strip()
        if "@" not in address:
            # RFC 5321 §4.1.1.3: "RCPT TO:<Postmaster>" without a domain must work.
            if address.lower() == "postmaster":
                return Route("postmaster", self.postmaster_mailbox)
            return Route("syntax")
        local, _, domain = address.rpartition("@")
        if not local or not domain:
            return Route("syntax")
        if domain.lower().rstrip(".") not in self.domains:
            return Route("relay")
        local = local.lower()
        if local == "postmaster":
            return Route("postmaster", self.postmaster_mailbox)
        if local in self.mailboxes:
            return Route("local", local)
        if local in self.forwards:
            # An alias (RFC 5321 §3.9.1): accepted here, sent on by the relay.
            return Route("forward", self.forwards[local])
        return Route("unknown")

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> list[Endpoint]:
        loop = asyncio.get_running_loop()
        if self.config.tls:
            # RFC 3207: STARTTLS with a certificate for the MX's name from the lab CA.
            self._tls = await loop.run_in_executor(
                None, self.ctx.ca.server_context, [self.hostname]
            )
        mailboxes = set(self.mailboxes) | {self.postmaster_mailbox}
        try:
            for user in sorted(mailboxes):
                await loop.run_in_executor(None, self.maildir.create, user)
        except (ValueError, OSError) as err:
            raise ServiceError(f"{self.ctx.node.name}: cannot create the mailboxes: {err}") from err
        if self.down:
            return []
        return [await self._listen()]

    async def stop(self) -> None:
        await self._unlisten()
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()

    def _factory(self) -> asyncio.BaseProtocol:
        if self._reset_mode:
            return _Reset()
        session = MxSMTP(
            self.handler,
            net=self.ctx.net,
            faults=self._faults,
            hostname=self.hostname,
            data_size_limit=self.config.max_size,
            tls_context=self._tls,
            # RFC 5321 §4.5.3.2.7: the server waits at least 5 minutes for a
            # command (lab minutes: the lab clock's scale applies).
            timeout=idle_timeout(self.ctx.clock),
        )
        self._sessions.add(session)
        return session

    async def _listen(self) -> Endpoint:
        if self._endpoint is None:
            self._endpoint = await self.ctx.net.serve_tcp("mx", 25, self._factory)
        self._reset_mode = False
        return self._endpoint

    async def _unlisten(self) -> None:
        if self._endpoint is None:
            return
        try:
            await self.ctx.net.unserve(self._endpoint)
        except NotImplementedError:
            # This backend cannot close one listener: answer every new
            # connection with a reset, which a client also sees as refused.
            self._reset_mode = True
            return
        self._endpoint = None

    # -- control ---------------------------------------------------------------

    async def control(self, command: str, **args: Any) -> dict[str, Any]:
        """Change the running MX; see the module docstring for the commands."""
        if command == "down":
            self.down = True
            await self._unlisten()
            return {"down": True}
        if command == "up":
            self.down = False
            endpoint = await self._listen()
            return {"down": False, "endpoint": endpoint.to_json()}
        if command == "set_check":
            return self._set_check(args)
        if command == "greylist":
            return self._set_greylist(args)
        if command == "greylist_clear":
            cleared = self.greylist.clear() if self.greylist is not None else 0
            return {"cleared": cleared}
        if command == "mailbox":
            return await self._mailbox(args)
        if command == "status":
            return self.status()
        raise ServiceError(
            f"mx has no control command {command!r} (down, up, set_check, greylist, "
            "greylist_clear, mailbox, status)"
        )

    def status(self) -> dict[str, Any]:
        return {
            "hostname": self.hostname,
            "domains": list(self.domains),
            "mailboxes": list(self.mailboxes),
            "checks": [{"check": p.check, "action": p.action} for p in self.checks],
            "dnsbl": list(self.config.dnsbl),
            "greylist": self.greylist.delay if self.greylist is not None else None,
            "tls": self._tls is not None,
            "max_size": self.config.max_size,
            "down": self.down,
            "scoring": _scoring_json(self.config.scoring),
        }

    def _set_check(self, args: dict[str, Any]) -> dict[str, Any]:
        check = str(args.get("check", "")).lower()
        action = str(args.get("action", "")).lower()
        names = registry.names()
        spec = registry.get(check)
        if spec is None or not spec.listed:
            raise ServiceError(f"mx set_check: unknown check {check!r} ({', '.join(names)})")
        if action not in (*ACTIONS, "off"):
            raise ServiceError(
                f"mx set_check: unknown action {action!r} ({', '.join(ACTIONS)}, off)"
            )
        if action != "off" and action not in spec.actions:
            if action == "policy":
                raise ServiceError("mx set_check: action 'policy' is for dmarc only")
            raise ServiceError(
                f"mx set_check: {check} takes {', '.join(spec.actions)}, not {action!r}"
            )
        updated: list[CheckPolicy] = []
        found = False
        for policy in self.checks:
            if policy.check == check:
                found = True
                if action != "off":
                    updated.append(CheckPolicy(policy.check, action))  # type: ignore[arg-type]
            else:
                updated.append(policy)
        if not found and action != "off":
            updated.append(CheckPolicy(check, action))  # type: ignore[arg-type]
        self.checks = updated
        self.generic = _generic_by_stage(updated)
        return {"checks": [{"check": p.check, "action": p.action} for p in self.checks]}

    def _set_greylist(self, args: dict[str, Any]) -> dict[str, Any]:
        raw = args.get("delay")
        if raw in (None, False, "off", "0", 0):
            self.greylist = None
            return {"greylist": None}
        try:
            delay = parse_duration(raw)
        except ValueError as err:
            raise ServiceError(f"mx greylist: {err}") from None
        self.greylist = Greylist(delay)
        return {"greylist": delay}

    async def _mailbox(self, args: dict[str, Any]) -> dict[str, Any]:
        user = str(args.get("user", "")).strip().lower()
        if "@" in user:
            user = user.split("@", 1)[0]
        folders = [args["folder"]] if args.get("folder") else ["INBOX", "Junk"]
        for folder in folders:
            if folder not in ("INBOX", "Junk"):
                raise ServiceError(f"mx mailbox: no folder {folder!r} (INBOX, Junk)")
        if user not in {*self.mailboxes, self.postmaster_mailbox}:
            raise ServiceError(
                f"mx mailbox: no mailbox {user!r} on {self.ctx.node.name} "
                f"({', '.join(self.mailboxes) or 'none'})"
            )
        loop = asyncio.get_running_loop()
        out: list[dict[str, Any]] = []
        for folder in folders:
            stored = await loop.run_in_executor(None, self.maildir.messages, user, folder)
            for message in stored:
                out.append(_describe_stored(message.folder, message.key, message.data))
        return {"user": user, "messages": out}

    # -- helpers for the handler ---------------------------------------------------

    def lookup_for(self, trace_id: str | None) -> CachedLookup:
        """DNS for the checks of a connection, through the MX host's own
        caching resolver."""
        return CachedLookup(self.ctx.resolver, trace_id, self.memo)

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work (storing: fsync). With other sessions open on
        this MX, in a worker thread, so that they go on while the disk syncs.
        As the MX's only session, right here: the loop would only wait, and a
        hop to a thread and back costs two thread wake-ups (about 0.2 ms on a
        small VM, a twentieth of an MX's time per message). The lab's other
        services on this loop (local backend) wait for the sync too, about a
        millisecond, as they would for any busy handler."""
        if self.open_sessions <= 1:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def emit_check(self, conn: Connection, judgement: Judgement) -> None:
        result = judgement.result
        self.ctx.emit(
            conn.trace_id,
            "check",
            f"{judgement.summary}: {result.explanation}",
            client=conn.ip,
            **judgement.event_data(),
        )


def _describe_stored(folder: str, key: str, data: bytes) -> dict[str, Any]:
    headers = BytesHeaderParser(policy=compat32).parsebytes(data)

    def all_of(name: str) -> list[str]:
        return [str(v) for v in headers.get_all(name, [])]

    return {
        "folder": folder,
        "key": key,
        "size": len(data),
        "subject": str(headers.get("Subject", "")),
        "from": str(headers.get("From", "")),
        "to": str(headers.get("To", "")),
        "message_id": str(headers.get("Message-ID", "")),
        "return_path": str(headers.get("Return-Path", "")),
        "delivered_to": str(headers.get("Delivered-To", "")),
        "authentication_results": all_of("Authentication-Results"),
        "received": all_of("Received"),
    }


# --- the aiosmtpd handler ----------------------------------------------------------


class MxHandler:
    """aiosmtpd hooks: the receiving policy, step by step."""

    def __init__(self, mx: MxServer) -> None:
        self.mx = mx

    # -- greeting -------------------------------------------------------------------

    async def handle_EHLO(
        self, server: MxSMTP, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        self._greeted(server, hostname)
        lines = [f"{server.hostname}"]
        if server.data_size_limit:
            lines.append(f"SIZE {server.data_size_limit}")  # RFC 1870
        lines += ["8BITMIME", "PIPELINING"]  # RFC 6152, RFC 2920
        if server.tls_context is not None and session.ssl is None:
            lines.append("STARTTLS")  # RFC 3207; not again once in TLS
        lines.append("ENHANCEDSTATUSCODES")  # RFC 2034
        return [f"250-{line}" for line in lines[:-1]] + [f"250 {lines[-1]}"]

    async def handle_HELO(self, server: MxSMTP, session: Any, envelope: Any, hostname: str) -> str:
        session.host_name = hostname
        self._greeted(server, hostname)
        return f"250 {server.hostname}"

    def _greeted(self, server: MxSMTP, helo: str) -> None:
        conn = _conn(server)
        if self.mx.runs("helo") and helo not in conn.helo:
            self.start(conn, ("helo", helo), self._helo_check(conn, helo))

    # -- MAIL -------------------------------------------------------------------------

    async def handle_MAIL(
        self, server: MxSMTP, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        conn = _conn(server)
        null = address == "<>"
        mail_from = "" if null else address
        if not null and not _is_address(mail_from):
            return reply("sender_syntax", address=address).line
        tx = Transaction(mail_from)
        action = self.mx.action("tls")
        if action is not None:
            version, cipher = _tls_info(session)
            result = check_tls(session.ssl is not None, version, cipher)
            judgement = judge(result, action, "mail", ip=conn.ip)
            self.mx.emit_check(conn, judgement)
            tx.judgements.append(judgement)
            decision = decide([judgement], "mail")
            if not decision.accepted and decision.reply is not None:
                return decision.reply.line
        if self.mx.generic.get("mail"):
            found = await self._generic(conn, tx, "mail", str(session.host_name or ""), None)
            tx.judgements += found
            decision = decide(found, "mail")
            if not decision.accepted and decision.reply is not None:
                return decision.reply.line
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.mx_tx = tx
        if self.mx.runs("spf") or self.mx.runs("dmarc"):
            helo = str(session.host_name or "")
            key = ("spf", mail_from, helo)
            self.start(conn, key, self._spf_check(conn, mail_from, helo))
        return reply("mail_ok").line

    # -- RCPT -------------------------------------------------------------------------

    async def handle_RCPT(
        self, server: MxSMTP, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        conn = _conn(server)
        tx: Transaction | None = getattr(envelope, "mx_tx", None)
        if tx is None:  # aiosmtpd checks MAIL came first; be safe anyway
            return "503 5.5.1 Error: need MAIL command"
        route = self.mx.route(address)
        if route.kind == "syntax":
            return reply("rcpt_syntax", address=address).line
        if route.kind == "relay":
            # Never an open relay (RFC 5321 §3.6.2 leaves relaying to policy;
            # an MX that relays for anyone is abused and blocklisted).
            return reply("relay_denied", address=address).line
        helo = str(session.host_name or "")
        current = await self._client_judgements(conn, helo)
        current += await self._spf_judgements(conn, tx, helo)
        if self.mx.generic.get("rcpt"):
            current += await self._rcpt_generic(conn, tx, helo)
        decision = decide(current, "rcpt")
        postmaster = route.kind == "postmaster"
        if not decision.accepted:
            if not postmaster:
                assert decision.reply is not None
                return decision.reply.line
            self._note_postmaster(conn, decision)
        if route.kind == "unknown":
            return reply("user_unknown", address=address).line
        if self.mx.greylist is not None and not postmaster:
            verdict = self.mx.greylist.check(
                conn.ip, tx.mail_from, address, self.mx.ctx.clock.now()
            )
            defer = reply("greylisted", rcpt=address, seconds=verdict.wait_seconds)
            self.mx.ctx.emit(
                conn.trace_id,
                "check",
                f"greylist {'pass' if verdict.passed else 'deferred'}: {verdict.explanation}",
                client=conn.ip,
                check="greylist",
                result="pass" if verdict.passed else "greylisted",
                action="none" if verdict.passed else "defer",
                configured="defer",
                stage="rcpt",
                explanation=verdict.explanation,
                inputs={
                    "client": verdict.triplet[0],
                    "sender": verdict.triplet[1],
                    "rcpt": verdict.triplet[2],
                },
                details={
                    "first_seen": verdict.first_seen,
                    "wait": verdict.wait,
                    "delay": self.mx.greylist.delay,
                },
                reply=None if verdict.passed else defer.to_json(),
            )
            if not verdict.passed:
                return defer.line
        assert route.mailbox is not None
        if route.kind == "forward":
            tx.forwards.append((address, route.mailbox))
        else:
            tx.recipients.append((address, route.mailbox))
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return reply("rcpt_ok").line

    def _note_postmaster(self, conn: Connection, decision: Decision) -> None:
        sentence = (
            f"Mail to postmaster is accepted although {decision.decided_by} would "
            f"{decision.verdict} it: RFC 5321 §4.5.1 expects every site to accept mail "
            "for its postmaster, so that a blocked sender can reach a person."
        )
        self.mx.ctx.emit(
            conn.trace_id,
            "check",
            f"postmaster exempt: {sentence}",
            client=conn.ip,
            check="postmaster",
            result="exempt",
            action="none",
            configured=None,
            stage="rcpt",
            explanation=sentence,
            inputs={"decided_by": decision.decided_by},
            details={},
            reply=None,
        )

    # -- checks started ahead -----------------------------------------------------------
    #
    # A check's lookups start as soon as its inputs are known, and run while
    # the client reads the reply and sends its next command: the client's
    # name and blocklist entries at connect (as Postfix's smtpd looks up the
    # client's name at connect, "connect from smtp.home.example[192.0.2.25]",
    # and postscreen its DNSBL entries), the HELO name at EHLO, SPF at MAIL
    # (RFC 7208 §2.4 checks the MAIL FROM identity there). Every check is
    # still judged, and its result reported, at RCPT (smtpd_delay_reject),
    # so that the reply names the recipient's stage.

    def start(self, conn: Connection, key: tuple[Any, ...], work: Coroutine[Any, Any, T]) -> None:
        """Start ``work`` (the lookups of one check) for :meth:`result`."""
        if key in conn.started:
            work.close()  # started already: this one never runs
            return
        task = asyncio.get_running_loop().create_task(work)
        task.add_done_callback(_retrieved)
        conn.started[key] = task

    async def result(
        self, conn: Connection, key: tuple[Any, ...], work: Callable[[], Awaitable[T]]
    ) -> T:
        """What the check started as ``key`` found (waiting for it if it is
        still looking), or ``work()`` now when it was not started."""
        task = conn.started.pop(key, None)
        if task is not None and not task.cancelled():
            found: T = await asyncio.shield(task)
            return found
        return await work()

    def connected(self, conn: Connection) -> None:
        """A client connected: its name and blocklist entries, looked up now."""
        mx = self.mx
        zones = _dnsbl_zones(mx)
        lookup = mx.lookup_for(conn.trace_id)
        self.start(
            conn, ("client", zones), _client_checks_async(conn.ip, zones, lookup, pause=True)
        )
        conn.open = True
        mx.open_sessions += 1

    def disconnected(self, conn: Connection) -> None:
        for task in conn.started.values():
            task.cancel()  # nothing if it finished
        conn.started.clear()
        if conn.open:
            conn.open = False
            self.mx.open_sessions -= 1

    def _helo_check(self, conn: Connection, helo: str) -> Coroutine[Any, Any, CheckResult]:
        lookup = self.mx.lookup_for(conn.trace_id)
        return check_helo_async(helo, conn.ip, lookup, lookup.peek, lookup.memo)

    async def _client_judgements(self, conn: Connection, helo: str) -> list[Judgement]:
        """ptr, fcrdns, dnsbl (once per connection) and helo (once per
        name), judged with the actions in force, in the configured order."""
        mx = self.mx
        lookup = mx.lookup_for(conn.trace_id)
        fresh: list[CheckResult] = []
        if conn.client is None:
            # (With the zones changed since connect, by a lab task, the
            # lookups started then are not the ones wanted: looked up now.)
            zones = _dnsbl_zones(mx)
            rdns, found = await self.result(
                conn,
                ("client", zones),
                partial(_client_checks_async, conn.ip, zones, lookup),
            )
            conn.rdns = rdns
            conn.client = {"dnsbl": found}
            if mx.runs("ptr"):
                conn.client["ptr"] = [ptr_result(rdns)]
            if mx.runs("fcrdns"):
                conn.client["fcrdns"] = [fcrdns_result(rdns)]
            fresh += [r for p in mx.checks for r in conn.client.get(p.check, [])]
        if mx.runs("helo") and helo not in conn.helo:
            conn.helo[helo] = await self.result(
                conn, ("helo", helo), partial(self._helo_check, conn, helo)
            )
            fresh.append(conn.helo[helo])
        out: list[Judgement] = []
        for policy in mx.checks:
            if policy.check == "helo" and helo in conn.helo:
                results = [conn.helo[helo]]
            else:
                results = conn.client.get(policy.check, []) if conn.client else []
            for result in results:
                judgement = judge(result, policy.action, "rcpt", ip=conn.ip, helo=helo)
                if any(result is r for r in fresh):
                    mx.emit_check(conn, judgement)
                out.append(judgement)
        return out

    async def _spf(self, conn: Connection, tx: Transaction, helo: str) -> CheckResult:
        return await self.result(
            conn, ("spf", tx.mail_from, helo), partial(self._spf_check, conn, tx.mail_from, helo)
        )

    def _spf_check(
        self, conn: Connection, mail_from: str, helo: str
    ) -> Coroutine[Any, Any, CheckResult]:
        lookup = self.mx.lookup_for(conn.trace_id)
        check = partial(_spf_safely, conn.ip, mail_from, helo)
        return lookup.run(check, key=("spf", conn.ip, mail_from, helo))

    async def _spf_judgements(
        self, conn: Connection, tx: Transaction, helo: str
    ) -> list[Judgement]:
        action = self.mx.action("spf")
        if action is None:
            return []
        if tx.spf is None:
            tx.spf = await self._spf(conn, tx, helo)
            judgement = judge(tx.spf, action, "rcpt", ip=conn.ip, helo=helo)
            self.mx.emit_check(conn, judgement)
            tx.judgements.append(judgement)
        else:
            judgement = judge(tx.spf, action, "rcpt", ip=conn.ip, helo=helo)
        return [judgement]

    async def _generic(
        self, conn: Connection, tx: Transaction, stage: Stage, helo: str, content: bytes | None
    ) -> list[Judgement]:
        """The checks of ``stage`` that only their module knows how to
        evaluate (:attr:`Check.evaluate`): evaluated, judged, reported."""
        lookup = self.mx.lookup_for(conn.trace_id)
        rcpts = tuple(a for a, _ in tx.recipients)
        given = CheckInput(conn.ip, helo, tx.mail_from, rcpts, content, lookup)
        out: list[Judgement] = []
        for spec, action in self.mx.generic.get(stage, ()):
            assert spec.evaluate is not None
            try:
                results = await spec.evaluate(given)
            except Exception as err:  # a broken check must not break the session
                log.exception("mx: check %s failed", spec.name)
                results = [
                    CheckResult(spec.name, "temperror", f"{spec.name} could not run: {err}.", {})
                ]
            for result in results:
                judgement = judge(result, action, stage, ip=conn.ip, helo=helo)
                self.mx.emit_check(conn, judgement)
                out.append(judgement)
        return out

    async def _rcpt_generic(self, conn: Connection, tx: Transaction, helo: str) -> list[Judgement]:
        """RCPT-stage generic checks: once per transaction (like SPF), then
        judged again with the actions in force for each recipient."""
        if tx.generic is None:
            tx.generic = await self._generic(conn, tx, "rcpt", helo, None)
            tx.judgements += tx.generic
            return list(tx.generic)
        actions = {spec.name: action for spec, action in self.mx.generic.get("rcpt", ())}
        return [
            judge(j.result, actions.get(j.check), "rcpt", ip=conn.ip, helo=helo) for j in tx.generic
        ]

    # -- DATA -------------------------------------------------------------------------

    async def handle_DATA(self, server: MxSMTP, session: Any, envelope: Any) -> str:
        conn = _conn(server)
        tx: Transaction | None = getattr(envelope, "mx_tx", None)
        if tx is None or not (tx.recipients or tx.forwards):
            return "503 5.5.1 Error: need RCPT command"
        content = envelope.original_content
        if not isinstance(content, bytes):
            content = bytes(content or b"")
        helo = str(session.host_name or "")
        mx = self.mx
        checks = tuple(mx.checks)  # the policy in force for this message
        if _action(checks, "dmarc") is not None and tx.spf is None:
            # DMARC needs the SPF result even when SPF has no action of its own.
            tx.spf = await self._spf(conn, tx, helo)
            judgement = judge(tx.spf, None, "data", ip=conn.ip)
            mx.emit_check(conn, judgement)
            tx.judgements.append(judgement)
        # Storing must finish even if the client disconnects meanwhile, and
        # before the 250 (RFC 5321 §6.1).
        return await asyncio.shield(self._data(conn, session, tx, helo, content, checks))

    async def _data(
        self,
        conn: Connection,
        session: Any,
        tx: Transaction,
        helo: str,
        content: bytes,
        checks: tuple[CheckPolicy, ...],
    ) -> str:
        """DKIM and DMARC on the event loop (dkimpy and the DMARC walk look
        names up synchronously: replayed over the stub cache), the decision,
        then storing (see MxServer.blocking for where the fsync waits)."""
        mx = self.mx
        headers = _read_headers(content)
        dmarc_action = _action(checks, "dmarc")
        message: _MessageChecks | None = None
        if _action(checks, "dkim") is not None or dmarc_action is not None:
            message = await _message_checks(
                mx.lookup_for(conn.trace_id),
                content,
                headers.from_fields,
                tx.spf,
                dmarc_action is not None,
                mx.config.dmarc_discovery,
            )
        extra: list[Judgement] = []
        if mx.generic.get("data"):
            extra = await self._generic(conn, tx, "data", helo, content)
        done = self._judge(conn, tx, helo, checks, headers, message, extra)
        for judgement in done.emitted:
            mx.emit_check(conn, judgement)
        if done.score is not None:
            data = done.score.event_data()
            summary = f"score {data['result']}: {data['explanation']}"
            mx.ctx.emit(conn.trace_id, "check", summary, client=conn.ip, **data)
        tx.judgements.extend(done.to_tx)
        decision = done.decision
        if not decision.accepted:
            assert decision.reply is not None
            return decision.reply.line
        await mx.blocking(self._store, conn, session, tx, content, checks, done)
        if done.error is not None:
            log.warning("%s: storing failed: %s", mx.ctx.node.name, done.error)
            return reply("store_failed").line
        if done.forwards and not await self._forward(conn, tx, done):
            return reply("store_failed").line
        self._emit_deliveries(conn, done)
        return reply("queued", queue_id=done.queue_id).line

    async def _forward(self, conn: Connection, tx: Transaction, done: _DataDone) -> bool:
        """Hand forwarded recipients to this node's relay, envelope sender
        unchanged (RFC 5321 §3.9.1): the next hop sees this server's address
        with the original domain in MAIL FROM, which is why SPF fails there."""
        relay = self.mx.ctx.services.get("relay")
        enqueue = getattr(relay, "enqueue", None)
        if enqueue is None:
            log.warning("%s: forwarding needs a relay on this node", self.mx.ctx.node.name)
            return False
        for address, target, data in done.forwards:
            try:
                queue_id = await enqueue(tx.mail_from, [target], data, trace_id=conn.trace_id)
            except OSError as err:
                log.warning("%s: forwarding failed: %s", self.mx.ctx.node.name, err)
                return False
            self.mx.ctx.emit(
                conn.trace_id,
                "delivery",
                f"{address} is an alias: forwarded to {target} as relay queue id {queue_id}, "
                f"envelope sender <{tx.mail_from}> unchanged",
                mailbox=address,
                folder="forwarded",
                forwarded_to=target,
                relay_queue_id=queue_id,
                message_id=done.headers.message_id,
                queue_id=done.headers.client_queue_id,
                mx_queue_id=done.queue_id,
            )
        return True

    def _earlier(
        self, conn: Connection, tx: Transaction, helo: str, checks: Sequence[CheckPolicy]
    ) -> list[Judgement]:
        """The judgements of the connection (with the actions in force now)
        and of the transaction so far: they may add junk at DATA, and count
        for X.7.26."""
        out: list[Judgement] = []
        for policy in checks:
            spec = registry.get(policy.check)
            if spec is None or spec.scope in _TX_SCOPES:
                continue  # in tx.judgements (or judged at DATA)
            if policy.check == "helo":
                results = [conn.helo[helo]] if helo in conn.helo else []
            else:
                results = conn.client.get(policy.check, []) if conn.client else []
            out += [judge(r, policy.action, "rcpt", ip=conn.ip, helo=helo) for r in results]
        return out + tx.judgements

    def _judge(
        self,
        conn: Connection,
        tx: Transaction,
        helo: str,
        checks: tuple[CheckPolicy, ...],
        headers: _Headers,
        message: _MessageChecks | None,
        extra: Sequence[Judgement] = (),
    ) -> _DataDone:
        """The judgements of the message checks and the decision at DATA.
        Emits nothing (the caller does)."""
        dkim_action, dmarc_action = _action(checks, "dkim"), _action(checks, "dmarc")
        current: list[Judgement] = []
        emitted: list[Judgement] = []
        to_tx: list[Judgement] = []
        if message is not None:
            dkim, dmarc = message
            # RFC 6376 §6.1: one verifying signature is enough; the others are noted.
            any_pass = any(r.result == "pass" for r in dkim)
            for result in dkim:
                action = dkim_action
                if any_pass and action is not None:
                    action = "header"
                judgement = judge(result, action, "data", ip=conn.ip)
                emitted.append(judgement)
                (current if dkim_action is not None else to_tx).append(judgement)
            if dmarc is not None:
                judgement = judge(
                    dmarc, dmarc_action, "data", ip=conn.ip, domain=headers.from_domain
                )
                emitted.append(judgement)
                current.append(judgement)
            current = _in_order(current, checks)
        if extra:
            current = _in_order([*current, *extra], checks)
        # The DKIM results without an action of their own count as earlier ones.
        earlier = self._earlier(conn, tx, helo, checks) + to_tx
        decision = decide(current, "data", earlier)
        scored: Score | None = None
        if self.mx.weights is not None:
            scored = score(self.mx.weights, [*earlier, *current])
            decision = apply_score(decision, scored)
        return _DataDone(decision, emitted, to_tx, headers, [*earlier, *current], scored)

    def _store(
        self,
        conn: Connection,
        session: Any,
        tx: Transaction,
        content: bytes,
        checks: tuple[CheckPolicy, ...],
        done: _DataDone,
    ) -> None:
        """Blocking work (MxServer.blocking): the copies of an accepted
        message, each with its trace headers, stored (fsync'd) in the
        recipients' Maildirs, and the copies to forward. Fills in ``done``;
        emits nothing (it may run in a worker thread)."""
        mx = self.mx
        decision, judgements = done.decision, done.judgements
        ar_checks = registry.with_clause()
        results = [j.result for j in judgements if j.check in ar_checks]
        runs_iprev = _action(checks, "ptr") is not None or _action(checks, "fcrdns") is not None
        if conn.rdns is not None and runs_iprev:
            # One iprev clause for the A-R header (RFC 8601 §3): the
            # forward-confirmed result, whichever of the two checks ran.
            if conn.iprev is None:
                conn.iprev = _iprev(conn.rdns)
            results.insert(0, conn.iprev)
        done.queue_id = secrets.token_hex(5).upper()
        a_r = authentication_results(mx.hostname, results)
        noted = _checks_header(judgements, decision, done.score)
        spam = done.score.headers() if done.score is not None else []
        for address, mailbox in tx.recipients:
            headers_added = [
                f"Return-Path: <{_printable(tx.mail_from)}>",
                f"Delivered-To: {_printable(address)}",
                _received(conn, session, mx.hostname, done.queue_id, address),
                "Authentication-Results: " + _fold(a_r),
                f"X-Maillab-Checks: {_fold(noted)}",
                *spam,
            ]
            data = ("\r\n".join(headers_added) + "\r\n").encode() + content
            try:
                done.keys.append(mx.maildir.deliver(mailbox, data, decision.folder))
            except OSError as err:
                done.error = err
                break
            done.stored.append((address, mailbox))
        for address, target in tx.forwards:
            # Only the trace line: Return-Path and Delivered-To belong to final
            # delivery, and the next MX judges the message afresh.
            received = _received(conn, session, mx.hostname, done.queue_id, address)
            done.forwards.append((address, target, (received + "\r\n").encode() + content))

    def _emit_deliveries(self, conn: Connection, done: _DataDone) -> None:
        decision = done.decision
        folder = decision.folder
        for (address, mailbox), key in zip(done.stored, done.keys, strict=True):
            where = "junk" if folder == "Junk" else "inbox"
            why = f" (junk because of {', '.join(decision.junk_by)})" if decision.junk_by else ""
            self.mx.ctx.emit(
                conn.trace_id,
                "delivery",
                f"stored for {address} in {folder}{why}, queued as {done.queue_id}",
                mailbox=address,
                user=mailbox,
                folder=where,
                message_id=done.headers.message_id,
                queue_id=done.headers.client_queue_id,
                mx_queue_id=done.queue_id,
                key=key,
                junk_by=list(decision.junk_by),
            )

    async def handle_exception(self, error: Exception) -> str:
        # A bug must not show a traceback to the client nor kill the server;
        # 451 makes a real MTA retry later (nothing was acknowledged).
        log.exception("mx: error in an SMTP session: %s", error)
        return reply("internal").line


# --- helpers -------------------------------------------------------------------------


# aiosmtpd asks inspect.signature() of handle_EHLO on every connection (to
# tell its old four-argument form from the current one); a function's own
# __signature__ answers at once instead of parsing the code again (PEP 362).
MxHandler.handle_EHLO.__signature__ = inspect.signature(MxHandler.handle_EHLO)  # type: ignore[attr-defined]


def _new_connection(server: MxSMTP) -> Connection:
    session: Any = server.session
    ip, port = session.peer
    return Connection(str(ip), int(port), session.trace_id)


def _conn(server: MxSMTP) -> Connection:
    if server.mx_conn is None:  # connection_made always sets it
        server.mx_conn = _new_connection(server)
    return server.mx_conn


def _is_address(address: str) -> bool:
    local, at, domain = address.rpartition("@")
    return bool(at and local and domain and not _UNPRINTABLE.search(address))


def _tls_info(session: Any) -> tuple[str | None, str | None]:
    info = session.ssl
    if not info:
        return None, None
    ssl_object = info.get("ssl_object")
    cipher = info.get("cipher")
    version = ssl_object.version() if ssl_object is not None else None
    return version, (cipher[0] if cipher else None)


#: The client's reverse DNS and its DNSBL results (one per zone).
_ClientDns = tuple[ReverseDns, list[CheckResult]]


def _dnsbl_zones(mx: MxServer) -> tuple[str, ...]:
    return tuple(mx.config.dnsbl) if mx.runs("dnsbl") else ()


def _retrieved(task: asyncio.Task[Any]) -> None:
    # A task nobody awaited (the client left before RCPT) must not log
    # "exception was never retrieved"; its errors matter only to a RCPT.
    if not task.cancelled():
        task.exception()


async def _client_checks_async(
    ip: str, zones: tuple[str, ...], lookup: CachedLookup, *, pause: bool = False
) -> _ClientDns:
    """The DNS work of the client checks, on the event loop. The reverse
    lookup always runs: the Received field names the client (RFC 5321 §4.4).
    With ``pause``, other work of the loop (the client's next command) may
    run between two lookups, even when every answer is cached."""
    peek, memo = lookup.peek, lookup.memo
    rdns = await reverse_dns_async(ip, lookup, peek, memo)
    found: list[CheckResult] = []
    for zone in zones:
        if pause:
            await asyncio.sleep(0)
        found.append(await check_dnsbl_async(ip, zone, lookup, peek, memo))
    return rdns, found


#: SPF, never raising (the spf check's evaluation; the name is older).
_spf_safely = spf_check.evaluate


#: The message checks' results: DKIM (one per signature) and DMARC (or None).
_MessageChecks = tuple[list[CheckResult], CheckResult | None]


async def _message_checks(
    lookup: CachedLookup,
    content: bytes,
    from_fields: tuple[str, ...],
    spf: CheckResult | None,
    want_dmarc: bool,
    discovery: Any,
) -> _MessageChecks:
    """DKIM (every signature) and DMARC, on the event loop."""
    dkim = await lookup.run(partial(dkim_check.evaluate, content))
    if not want_dmarc:
        return dkim, None
    # What DMARC reads of the other results (RFC 9989 §4.4): SPF's result and
    # domain, each signature's result, d= and s=; with the From: domain and
    # the discovery method, they make the key of its remembered result.
    key = (
        "dmarc",
        from_fields,
        discovery,
        None if spf is None else (spf.result, spf.inputs.get("domain")),
        tuple(
            (
                r.result,
                r.details.get("d") or r.inputs.get("d"),
                r.details.get("s") or r.inputs.get("s"),
            )
            for r in dkim
        ),
    )
    check = partial(dmarc_check.evaluate, from_fields, spf, dkim, discovery)
    return dkim, await lookup.run(check, key=key)


def _scoring_json(config: Scoring | None) -> dict[str, Any] | None:
    if config is None:
        return None
    weights: dict[str, dict[str, float]] = {}
    for check, key, weight in config.weights:
        weights.setdefault(check, {})[key] = weight
    return {"junk": config.junk, "reject": config.reject, "weights": weights}


def _generic_by_stage(
    policies: Sequence[CheckPolicy],
) -> dict[str, tuple[tuple[Check, CheckAction], ...]]:
    """The configured checks the MX evaluates through their module, by stage."""
    table: dict[str, list[tuple[Check, CheckAction]]] = {}
    for policy in policies:
        spec = registry.get(policy.check)
        if spec is not None and spec.scope == "generic" and spec.evaluate is not None:
            table.setdefault(spec.stage, []).append((spec, policy.action))
    return {stage: tuple(found) for stage, found in table.items()}


def _action(checks: Sequence[CheckPolicy], check: str) -> CheckAction | None:
    return next((p.action for p in checks if p.check == check), None)


def _in_order(judgements: Sequence[Judgement], checks: Sequence[CheckPolicy]) -> list[Judgement]:
    order: dict[str, int] = {p.check: i for i, p in enumerate(checks)}
    return sorted(judgements, key=lambda j: order.get(j.check, len(order)))


@dataclass
class _DataDone:
    """What the worker did at DATA: the judgements to record, the decision,
    and the copies it stored (or the error that stopped it)."""

    decision: Decision
    emitted: list[Judgement]
    to_tx: list[Judgement]
    headers: _Headers
    #: Every judgement of the message (the connection's, the transaction's
    #: and the message's), for the Authentication-Results header.
    judgements: list[Judgement]
    #: The message's score, on a scoring MX.
    score: Score | None = None
    queue_id: str = ""
    stored: list[tuple[str, str]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    forwards: list[tuple[str, str, bytes]] = field(default_factory=list)
    error: OSError | None = None


def _iprev(rdns: ReverseDns) -> CheckResult:
    result = fcrdns_result(rdns)
    name = rdns.confirmed or (rdns.names[0] if rdns.names else None)
    return CheckResult(
        result.check,
        result.result,
        result.explanation,
        result.inputs,
        {**result.details, "hostname": name},
    )


@dataclass(frozen=True)
class _Headers:
    """What the MX reads from a message's header section (parsed once)."""

    from_domain: str = ""
    message_id: str | None = None
    client_queue_id: str | None = None
    #: Every From: field's value, in order (RFC 5322 §3.6 allows one).
    from_fields: tuple[str, ...] = ()


def _header_section(content: bytes) -> bytes:
    """The header section with the empty line that ends it (RFC 5322 §2.1):
    the parser need not read the body, which may be megabytes."""
    ends = [i + len(sep) for sep in (b"\r\n\r\n", b"\n\n") if (i := content.find(sep)) >= 0]
    return content[: min(ends)] if ends else content


# A line of the header section as the email package's parser sees one: an
# mbox envelope line, a field (printable US-ASCII but the colon, RFC 5322
# §3.6.8 ftext, possibly empty, then a colon) or a continuation (email.feedparser).
_HEADER_LINE = re.compile(r"From |[\x21-\x39\x3b-\x7e]*:|[\t ]")


def _header_fields(section: bytes) -> list[tuple[str, str]]:
    """The fields of a header section as (name, value), in order, read by
    the rules of the email package's feedparser (compat32), without building
    a Message: the section ends at the first line that is not a header line;
    a line starting with a space or tab continues the field before it (RFC
    5322 §2.2.3; the value keeps its line breaks but the last); a first line
    "From " is the mbox envelope; misplaced ones and nameless fields are
    dropped, and so are continuations of what was dropped."""
    lines: list[str] = []
    for line in section.splitlines(keepends=True):
        text = line.decode("ascii", "surrogateescape")
        if not _HEADER_LINE.match(text):
            break
        lines.append(text)
    fields: list[tuple[str, str]] = []
    current: list[str] = []  # the lines of the field being read

    def close() -> None:
        if current:
            name, _, value = current[0].partition(":")
            value = value.lstrip(" \t") + "".join(current[1:])
            fields.append((name, value.rstrip("\r\n")))
            current.clear()

    for number, text in enumerate(lines):
        if text[0] in " \t":
            if current:
                current.append(text)
            continue
        close()
        if text.startswith("From "):
            if number == len(lines) - 1 and number:
                break  # the parser gives it to the body
            continue  # the envelope line, or a misplaced one
        if text.startswith(":"):
            continue  # no field name
        current.append(text)
    close()
    return fields


def _read_headers(content: bytes) -> _Headers:
    fields = _header_fields(_header_section(content))

    def first(name: str) -> str | None:
        return next((v for n, v in fields if n.lower() == name), None)

    from_values = [v for n, v in fields if n.lower() == "from"]
    message_id = first("message-id")
    return _Headers(
        _from_domain(from_values),
        message_id.strip() if message_id else None,
        _client_queue_id(first("received")),
        tuple(from_values),
    )


def _from_domain(values: list[str]) -> str:
    """The RFC5322.From domain DMARC judges (RFC 9989 §5.3.1): the first
    address's domain; empty when there is none."""
    try:
        addresses = email.utils.getaddresses(values)
    except Exception:
        return ""
    for _, address in addresses:
        if "@" in address:
            return address.rpartition("@")[2].strip().lower().rstrip(".")
    return ""


def _client_queue_id(top: str | None) -> str | None:
    """The sending MTA's queue id, from the ``id`` clause of the topmost
    Received field (the one the client added, RFC 5321 §4.4)."""
    if not top:
        return None
    match = _RECEIVED_ID.search(top)
    return match.group(1) if match else None


def _printable(text: str) -> str:
    return _UNPRINTABLE.sub("?", text.replace(" ", "?"))[:255] if text else ""


def _received(conn: Connection, session: Any, host: str, queue_id: str, rcpt: str) -> str:
    """``Received: from HELO (NAME [IP]) by HOST with ESMTPS id ID for <rcpt>; date``
    (RFC 5321 §4.4; "with" values from RFC 3848; the name in parentheses is the
    forward-confirmed PTR name, "unknown" without one, as Postfix writes it)."""
    helo = _printable(str(session.host_name or "")) or "unknown"
    name = (conn.rdns.confirmed if conn.rdns is not None else None) or "unknown"
    tls = session.ssl is not None
    protocol = ("ESMTP" if session.extended_smtp else "SMTP") + ("S" if tls else "")
    lines = [f"Received: from {helo} ({name} [{conn.ip}])"]
    if tls:
        version, cipher = _tls_info(session)
        lines.append(f"\t(using {version} with cipher {cipher})")
    lines.append(f"\tby {host} (maillab) with {protocol} id {queue_id}")
    date = email.utils.format_datetime(datetime.now(UTC).astimezone())
    lines.append(f"\tfor <{_printable(rcpt)}>; {date}")
    return "\r\n".join(lines)


@lru_cache(maxsize=256)
def _fold(value: str, width: int = 78) -> str:
    """Fold a long structured field after ``;`` outside quotes and comments
    (RFC 5322 §2.2.3: lines SHOULD stay within 78 characters), packing as
    many clauses on a line as fit. (Remembered: messages with the same
    results get the same fields, and this reads them character by character.)"""
    parts: list[str] = []
    depth, quoted, start = 0, False, 0
    for i, ch in enumerate(value):
        if ch == '"' and (i == 0 or value[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")" and depth:
            depth -= 1
        elif ch == ";" and not quoted and depth == 0:
            parts.append(value[start : i + 1].strip())
            start = i + 1
    parts.append(value[start:].strip())
    lines: list[str] = []
    for part in (p for p in parts if p):
        if lines and len(lines[-1]) + 1 + len(part) <= width - 8:
            lines[-1] += " " + part
        else:
            lines.append(part)
    return "\r\n\t".join(lines)


def _checks_header(
    judgements: Sequence[Judgement], decision: Decision, scored: Score | None = None
) -> str:
    """``X-Maillab-Checks``: every check with its result and the action
    taken, including those Authentication-Results has no method for (DNSBL,
    HELO, TLS), and where the message was filed."""
    parts: list[str] = []
    for j in judgements:
        text = f"{j.check}={j.result.result}"
        zone = j.result.inputs.get("zone") if j.check == "dnsbl" else None
        extra = [str(zone)] if zone else []
        if j.taken != "none":
            extra.append(f"action={j.taken}")
        if extra:
            text += f" ({', '.join(extra)})"
        parts.append(text)
    if scored is not None:
        parts.append(f"score={scored.total:g}")
    parts.append(f"folder={decision.folder}")
    return "; ".join(parts)
