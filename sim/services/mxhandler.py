"""The MX's aiosmtpd handler: the ``handle_*`` hooks, and the checks by stage.

aiosmtpd calls one hook per command (``handle_EHLO``, ``handle_MAIL``,
``handle_RCPT``, ``handle_DATA``); each judges what its stage can judge and
answers (the order and the reasons are in :mod:`sim.services.mx`). What a
check computes, what it costs and what it answers are its module's
(:mod:`sim.services.checks`): the built-in client, HELO, SPF and message
checks are started ahead here (their lookups begin as soon as their inputs
are known), a check that only declares ``evaluate`` is run at its stage from
a table the server precomputes when its checks change.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Sequence
from dataclasses import field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from sim.auth.headers import authentication_results
from sim.auth.replay import Memo, replay
from sim.auth.result import CheckResult, Lookup
from sim.events import Check, Delivered, Forwarded, ListResent
from sim.fastclass import dataclass
from sim.resolve import DnsAnswer, Resolver
from sim.services import checks as registry
from sim.services.checks import dkim as dkim_check
from sim.services.checks import dmarc as dmarc_check
from sim.services.checks import dnsbl as dnsbl_check
from sim.services.checks import fcrdns as fcrdns_check
from sim.services.checks import helo as helo_check
from sim.services.checks import ptr as ptr_check
from sim.services.checks import spf as spf_check
from sim.services.checks import tls as tls_check
from sim.services.checks.base import CheckInput, Stage
from sim.services.mxchecks import (
    ReverseDns,
    reverse_dns_async,
)
from sim.services.mxmessage import (
    _UNPRINTABLE,
    _checks_header,
    _fold,
    _Headers,
    _printable,
    _read_headers,
    _received,
    _tls_info,
)
from sim.services.mxscore import Score, score
from sim.services.mxscore import apply as apply_score
from sim.services.policy import Decision, Judgement, decide, judge
from sim.services.replies import reply
from sim.topology.model import CheckAction, CheckPolicy

if TYPE_CHECKING:
    from sim.services.dmarcreport import DmarcReporter
    from sim.services.mx import MxServer
    from sim.services.mxprotocol import MxSMTP

__all__ = ["CachedLookup", "Connection", "MxHandler", "Transaction"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Checks that need the message, run after DATA (their modules say so).
MESSAGE_CHECKS = tuple(c.name for c in registry.all_checks() if c.scope == "message")
#: Received fields that mean a mail loop (RFC 5321 §6.3 asks for a limit of
#: at least 100; Postfix's hopcount_limit is 50).
MAX_HOPS = 100


def _received_count(content: bytes) -> int:
    """How many Received fields the header section holds (each hop adds one)."""
    head = content.split(b"\r\n\r\n", 1)[0]
    return sum(1 for line in head.split(b"\r\n") if line[:9].lower() == b"received:")


#: Checks the MX keeps with the transaction, not the connection.
_TX_SCOPES = ("envelope", "session", "message", "generic")


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
    #: One of the MX's ``trusted_clients``: its mail skips every check.
    trusted: bool = False


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
    #: (recipient, list name): mailing lists hosted here (sim.services.mailinglist).
    lists: list[tuple[str, str]] = field(default_factory=list)
    #: Recipients a backup MX queues for a more preferred MX (RFC 5321 §5.1).
    backup: list[str] = field(default_factory=list)
    #: The "trusted client, no checks" event was emitted for this transaction.
    trusted_noted: bool = False


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
        action = None if conn.trusted else self.mx.action("tls")
        if action is not None:
            version, cipher = _tls_info(session)
            result = tls_check.evaluate(session.ssl is not None, version, cipher)
            judgement = judge(result, action, "mail", ip=conn.ip)
            self.mx.emit_check(conn, judgement)
            tx.judgements.append(judgement)
            decision = decide([judgement], "mail")
            if not decision.accepted and decision.reply is not None:
                return decision.reply.line
        if self.mx.generic.get("mail") and not conn.trusted:
            found = await self._generic(conn, tx, "mail", str(session.host_name or ""), None)
            tx.judgements += found
            decision = decide(found, "mail")
            if not decision.accepted and decision.reply is not None:
                return decision.reply.line
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.mx_tx = tx
        if (self.mx.runs("spf") or self.mx.runs("dmarc")) and not conn.trusted:
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
        current: list[Judgement] = []
        if conn.trusted:
            self._note_trusted(conn, tx, address)
        else:
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
        if self.mx.greylist is not None and not postmaster and not conn.trusted:
            verdict = self.mx.greylist.check(
                conn.ip, tx.mail_from, address, self.mx.ctx.clock.now()
            )
            defer = reply("greylisted", rcpt=address, seconds=verdict.wait_seconds)
            self.mx.ctx.record(
                conn.trace_id,
                Check(
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
                ),
                f"greylist {'pass' if verdict.passed else 'deferred'}: {verdict.explanation}",
            )
            if not verdict.passed:
                return defer.line
        assert route.mailbox is not None
        if route.kind == "forward":
            tx.forwards.append((address, route.mailbox))
        elif route.kind == "list":
            tx.lists.append((address, route.mailbox))
        elif route.kind == "backup":
            tx.backup.append(address)
        else:
            tx.recipients.append((address, route.mailbox))
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return reply("rcpt_ok").line

    def _note_trusted(self, conn: Connection, tx: Transaction, address: str) -> None:
        """Say, once per transaction, that no check ran and why: a primary MX
        that trusts its backup takes the backup's word for the mail, so what
        the backup let in gets in (the spoof through the backup MX)."""
        if tx.trusted_noted:
            return
        tx.trusted_noted = True
        skipped = [p.check for p in self.mx.checks]
        if self.mx.greylist is not None:
            skipped.append("greylist")
        sentence = (
            f"{conn.ip} is a trusted client of this MX (trusted_clients): no receiving "
            f"check runs on its mail ({', '.join(skipped) or 'none configured'} skipped); "
            "whatever it relays is accepted as it came."
        )
        self.mx.ctx.record(
            conn.trace_id,
            Check(
                client=conn.ip,
                check="trusted",
                result="skipped",
                action="none",
                configured=None,
                stage="rcpt",
                explanation=sentence,
                inputs={"client": conn.ip, "rcpt": address},
                details={"skipped": skipped},
                reply=None,
            ),
            f"trusted client: {sentence}",
        )

    def _note_postmaster(self, conn: Connection, decision: Decision) -> None:
        sentence = (
            f"Mail to postmaster is accepted although {decision.decided_by} would "
            f"{decision.verdict} it: RFC 5321 §4.5.1 expects every site to accept mail "
            "for its postmaster, so that a blocked sender can reach a person."
        )
        self.mx.ctx.record(
            conn.trace_id,
            Check(
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
            ),
            f"postmaster exempt: {sentence}",
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
        conn.trusted = mx.trusts(conn.ip)
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
        return helo_check.evaluate(helo, conn.ip, lookup, lookup.peek, lookup.memo)

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
                conn.client["ptr"] = [ptr_check.evaluate(rdns)]
            if mx.runs("fcrdns"):
                conn.client["fcrdns"] = [fcrdns_check.evaluate(rdns)]
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
        given = CheckInput(conn.ip, helo, tx.mail_from, rcpts, content, lookup, self.mx.config)
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
        if tx is None or not (tx.recipients or tx.forwards or tx.lists or tx.backup):
            return "503 5.5.1 Error: need RCPT command"
        content = envelope.original_content
        if not isinstance(content, bytes):
            content = bytes(content or b"")
        hops = _received_count(content)
        if hops >= MAX_HOPS:
            # An alias or a backup MX that sends mail round in circles: RFC
            # 5321 §6.3 finds the loop by counting Received fields.
            return reply("too_many_hops", hops=hops).line
        helo = str(session.host_name or "")
        mx = self.mx
        # The policy in force for this message (none for a trusted client).
        checks = () if conn.trusted else tuple(mx.checks)
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
        if mx.generic.get("data") and checks:
            extra = await self._generic(conn, tx, "data", helo, content)
        done = self._judge(conn, tx, helo, checks, headers, message, extra)
        for judgement in done.emitted:
            mx.emit_check(conn, judgement)
        if mx.reports is not None and message is not None and message[1] is not None:
            _report(mx.reports, conn, tx, message, done)
        if done.score is not None:
            data = done.score.check_event(conn.ip)
            mx.ctx.record(conn.trace_id, data, f"score {data.result}: {data.explanation}")
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
        if tx.lists and not await self._lists(conn, session, tx, content, done):
            return reply("store_failed").line
        if tx.backup and not await self._backup(conn, tx, done):
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
            self.mx.ctx.record(
                conn.trace_id,
                Forwarded(
                    mailbox=address,
                    forwarded_to=target,
                    relay_queue_id=queue_id,
                    message_id=done.headers.message_id,
                    queue_id=done.headers.client_queue_id,
                    mx_queue_id=done.queue_id,
                ),
                f"{address} is an alias: forwarded to {target} as relay queue id {queue_id}, "
                f"envelope sender <{tx.mail_from}> unchanged",
            )
        return True

    async def _lists(
        self, conn: Connection, session: Any, tx: Transaction, content: bytes, done: _DataDone
    ) -> bool:
        """Resend list mail to the members through this node's relay,
        changed as lists change it and ARC-sealed when configured
        (sim.services.mailinglist)."""
        from sim.auth.arc import ArcSealError, seal
        from sim.services.checks.arc import verify_arc
        from sim.services.mailinglist import rewrite

        mx = self.mx
        relay = mx.ctx.services.get("relay")
        enqueue = getattr(relay, "enqueue", None)
        if enqueue is None:
            log.warning("%s: a mailing list needs a relay on this node", mx.ctx.node.name)
            return False
        loop = asyncio.get_running_loop()
        for address, name in tx.lists:
            spec = mx.lists[name]
            domain = address.rpartition("@")[2].lower().rstrip(".")
            received = _received(conn, session, mx.hostname, done.queue_id, address)
            copy = rewrite((received + "\r\n").encode() + content, name, domain, spec)
            data = copy.data
            if spec.arc_seal:
                keys = getattr(relay, "keys", {})
                pair = next((p for (d, _), p in keys.items() if d == domain), None)
                if pair is None:
                    copy.changes.append(
                        f"not ARC-sealed: the relay has no DKIM key for {domain} (relay.dkim)"
                    )
                else:
                    cv = await self._chain_status(conn, content, done, verify_arc)
                    verdicts = self._verdicts(done)
                    try:
                        data = await loop.run_in_executor(
                            None,
                            partial(
                                seal,
                                data,
                                domain,
                                pair.selector,
                                pair.private_pem,
                                mx.hostname,
                                verdicts,
                                cv,
                            ),
                        )
                        copy.changes.append(
                            f"ARC-sealed by {domain} (s={pair.selector}, cv={cv}), "
                            f"recording {verdicts or 'no verdicts'}"
                        )
                    except ArcSealError as err:
                        copy.changes.append(f"not ARC-sealed: {err}")
            members = list(spec.members)
            try:
                queue_id = await enqueue(copy.mail_from, members, data, trace_id=conn.trace_id)
            except OSError as err:
                log.warning("%s: list %s failed: %s", mx.ctx.node.name, name, err)
                return False
            mx.ctx.record(
                conn.trace_id,
                ListResent(
                    mailbox=address,
                    forwarded_to=", ".join(members),
                    relay_queue_id=queue_id,
                    message_id=done.headers.message_id,
                    queue_id=done.headers.client_queue_id,
                    mx_queue_id=done.queue_id,
                    list_changes=copy.changes,
                ),
                f"{address} is a mailing list: resent to {', '.join(members)} as relay queue "
                f"id {queue_id}; {'; '.join(copy.changes)}",
            )
        return True

    async def _chain_status(
        self, conn: Connection, content: bytes, done: _DataDone, verify: Any
    ) -> str:
        """The cv a sealer states (RFC 8617 §5.1.1): the arc check's result
        if the MX ran it, else the chain verified now."""
        found: CheckResult | None = next(
            (j.result for j in done.judgements if j.check == "arc"), None
        )
        if found is None:
            found = await self.mx.lookup_for(conn.trace_id).run(partial(verify, content))
        assert found is not None
        return found.result if found.result in ("none", "pass") else "fail"

    def _verdicts(self, done: _DataDone) -> str:
        """What this MX found, as Authentication-Results clauses (without
        its authserv-id and without arc=: the seal states the chain)."""
        ar_checks = registry.with_clause()
        results = [j.result for j in done.judgements if j.check in ar_checks and j.check != "arc"]
        value = authentication_results(self.mx.hostname, results)
        verdicts = value.partition(";")[2].strip()
        return "" if verdicts == "none" else verdicts

    async def _backup(self, conn: Connection, tx: Transaction, done: _DataDone) -> bool:
        """A backup MX's accepted mail: one entry in this node's relay queue,
        envelope unchanged, which delivers it to a more preferred MX of the
        domain (RFC 5321 §5.1), with the relay's retries and bounces."""
        relay = self.mx.ctx.services.get("relay")
        enqueue = getattr(relay, "enqueue", None)
        if enqueue is None:
            log.warning("%s: a backup MX needs a relay on this node", self.mx.ctx.node.name)
            return False
        data = (done.backup_received + "\r\n").encode() + done.content
        try:
            queue_id = await enqueue(tx.mail_from, list(tx.backup), data, trace_id=conn.trace_id)
        except OSError as err:
            log.warning("%s: queueing for the primary MX failed: %s", self.mx.ctx.node.name, err)
            return False
        for address in tx.backup:
            self.mx.ctx.record(
                conn.trace_id,
                Forwarded(
                    mailbox=address,
                    role="backup",
                    forwarded_to=address,
                    relay_queue_id=queue_id,
                    message_id=done.headers.message_id,
                    queue_id=done.headers.client_queue_id,
                    mx_queue_id=done.queue_id,
                ),
                f"{address}: accepted as a backup MX and queued as relay queue id "
                f"{queue_id} for a more preferred MX of its domain (RFC 5321 §5.1)",
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
            current, emitted = _amended(current, emitted, extra, self.mx.config)
        # The DKIM results without an action of their own count as earlier ones.
        earlier = self._earlier(conn, tx, helo, checks) + to_tx
        decision = decide(current, "data", earlier)
        scored: Score | None = None
        if self.mx.weights is not None and not conn.trusted:
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
        if tx.backup:
            done.backup_received = _received(
                conn, session, mx.hostname, done.queue_id, tx.backup[0]
            )
            done.content = content

    def _emit_deliveries(self, conn: Connection, done: _DataDone) -> None:
        decision = done.decision
        folder = decision.folder
        for (address, mailbox), key in zip(done.stored, done.keys, strict=True):
            why = f" (junk because of {', '.join(decision.junk_by)})" if decision.junk_by else ""
            self.mx.ctx.record(
                conn.trace_id,
                Delivered(
                    mailbox=address,
                    user=mailbox,
                    folder="junk" if folder == "Junk" else "inbox",
                    message_id=done.headers.message_id,
                    queue_id=done.headers.client_queue_id,
                    mx_queue_id=done.queue_id,
                    key=key,
                    junk_by=list(decision.junk_by),
                ),
                f"stored for {address} in {folder}{why}, queued as {done.queue_id}",
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
        found.append(await dnsbl_check.evaluate(ip, zone, lookup, peek, memo))
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


_APPLIED = {"reject": "reject", "defer": "none", "junk": "quarantine"}


def _report(
    reports: DmarcReporter, conn: Connection, tx: Transaction, message: _MessageChecks, done: Any
) -> None:
    """Count the message in the DMARC aggregate report (RFC 9990): what DMARC
    found, and what this receiver then did with it."""
    dkim, dmarc = message
    assert dmarc is not None
    taken = next((j.taken for j in done.emitted if j.check == "dmarc"), "none")
    reports.collector.record(
        dmarc,
        source_ip=conn.ip,
        envelope_from=tx.mail_from,
        envelope_to=tx.recipients[0][0] if tx.recipients else "",
        spf=tx.spf,
        dkim=dkim,
        applied=_APPLIED.get(taken, "none"),
    )


def _amended(
    current: list[Judgement], emitted: list[Judgement], extra: Sequence[Judgement], settings: Any
) -> tuple[list[Judgement], list[Judgement]]:
    """The DATA judgements after the local policies of the checks that ran
    (:attr:`Check.amend`: ARC's trusted sealers override DMARC, RFC 8617
    §7.2); the emitted ones follow, so that the trace shows the override."""
    for name in dict.fromkeys(j.check for j in extra):
        spec = registry.get(name)
        if spec is None or spec.amend is None:
            continue
        changed = spec.amend(current, settings)
        swap = {id(a): b for a, b in zip(current, changed, strict=True) if a is not b}
        current = changed
        emitted = [swap.get(id(j), j) for j in emitted]
    return current, emitted


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
    #: A backup MX's copy for the primary: its Received line and the content.
    backup_received: str = ""
    content: bytes = b""
    error: OSError | None = None


def _iprev(rdns: ReverseDns) -> CheckResult:
    result = fcrdns_check.evaluate(rdns)
    name = rdns.confirmed or (rdns.names[0] if rdns.names else None)
    return CheckResult(
        result.check,
        result.result,
        result.explanation,
        result.inputs,
        {**result.details, "hostname": name},
    )
