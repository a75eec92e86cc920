"""The relay: an outbound MTA with a durable queue (Postfix's qmgr + smtp roles).

What it does with a message, in order:

1. :meth:`RelayServer.enqueue` (called by the submission service on the same
   node, or by the relay itself for a DSN): DKIM-sign it when the From:
   domain (or else the envelope sender's domain) is one the relay signs for
   (RFC 6376 §5), write it to the spool and fsync (:mod:`sim.services.queue`).
   Only then does the caller answer 250.
2. A delivery task per entry waits until the entry is due (lab time), then
   groups the open recipients by domain and, for each domain, finds the next
   hop (RFC 5321 §5.1): the MX records sorted by preference, each tried in
   order; no MX → the domain's own address (implicit MX); a null MX ``0 .``
   (RFC 7505) → permanent failure at once. In smarthost mode every message goes
   to the configured smarthost instead, over TLS with AUTH.
3. Each MX address gets one SMTP transaction (:mod:`sim.services.smtpclient`):
   EHLO with the relay's host name, STARTTLS when offered (opportunistic,
   RFC 3207 / RFC 7435: not verified), MAIL, RCPT, DATA. A connection the
   network drops, refuses or cannot route, and a server that fails before
   MAIL, count as a temporary failure of that MX: the next one is tried.
4. Per recipient: 2xx → delivered; 4xx (or every MX failing) → deferred, next
   attempt after the next interval of the ``retry`` schedule (the last
   interval repeats, RFC 5321 §4.5.4.1); 5xx → bounced at once. A recipient
   still deferred when the message is older than ``give_up`` is bounced; one
   delay warning goes out when it is older than ``warn_after``.
5. Bounces and warnings are DSNs (:mod:`sim.services.dsn`) queued like any
   message, with an empty reverse-path ``<>``. A DSN that itself fails is
   dropped and logged, never bounced (RFC 5321 §6.2).

Exactly once, almost: right after the remote server's 250 to the final dot
(before QUIT, before any trace event), the recipients are marked delivered
and the spool entry rewritten or removed, fsynced. A crash after the server
stored the message but before that write completes would deliver it again on
restart: that window (one reply in flight plus one fsync) is what every MTA
has; RFC 5321 §6.1 accepts duplicates over losses.

On start the relay loads the spool (crash recovery) and attempts every entry
as soon as the whole lab is up (:meth:`RelayServer.lab_started`). Every step
is a ``queue`` trace event under the message's trace id.

``control`` commands: ``queue`` (the entries as data), ``flush`` (attempt every
entry now), ``hold`` / ``release`` (``queue_id`` or all).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import secrets
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import replace
from email.headerregistry import Address
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from ipaddress import IPv4Address
from typing import Any, ClassVar

from sim.auth.dkim import sign
from sim.clock import format_duration
from sim.errors import ServiceError
from sim.events import (
    EventData,
    QueueAttempt,
    QueueBounced,
    QueueBounceDropped,
    QueueDeferred,
    QueueDelivered,
    QueueDsn,
    QueueInternalError,
    QueueQueued,
    QueueRecovered,
    QueueRecovery,
    QueueRoute,
    QueueWarning,
)
from sim.net.api import Endpoint
from sim.services.base import NodeContext, Service
from sim.services.dkimkeys import KeyPair, ensure_keys
from sim.services.dsn import DsnRecipient, build_dsn, status_of
from sim.services.mxroute import MxRoute, find_mx, host_addresses, no_address, unroutable
from sim.services.queue import EntryKind, QueueEntry, Recipient, Spool
from sim.services.smtpclient import Reply, SmtpClient, TlsMode, Transcript
from sim.topology.model import RelayService

__all__ = ["RelayServer", "Route"]

#: The stages before MAIL: a failure there says nothing about the message,
#: only about that server, so the next MX is tried (RFC 5321 §5.1).
_BEFORE_MAIL = ("connect", "helo", "starttls", "auth")


def _now_rfc5322() -> str:
    return email.utils.format_datetime(dt.datetime.now(dt.UTC))


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip().lower().rstrip(".")


#: Where mail for a domain goes (kept under its old name).
Route = MxRoute


class RelayServer(Service):
    """The outbound MTA of a node (see the module docstring)."""

    kind: ClassVar[str] = "relay"

    def __init__(self, ctx: NodeContext) -> None:
        super().__init__(ctx)
        config = ctx.node.services.relay
        if config is None:
            raise ServiceError(f"{ctx.node.name} has no relay service")
        self.config: RelayService = config
        self.spool = Spool(ctx.state_dir / ctx.node.name / "queue")
        self.client = SmtpClient.for_node(ctx)
        self.entries: dict[str, QueueEntry] = {}
        self.keys: dict[tuple[str, str], KeyPair] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._saving: dict[str, asyncio.Lock] = {}
        #: Records deliveries: its own thread, so that the record of a 250
        #: never waits behind enqueues or reads in the loop's shared pool.
        self._recorder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-record")
        self._stopping = False
        #: Set when the whole lab is up (lab_started): no attempt before.
        self._lab_up = asyncio.Event()
        #: Text appended to every message's body on the way out, after DKIM
        #: signing: what a disclaimer gateway or a mailing list does, and why
        #: their mail fails DKIM (body hash mismatch, RFC 6376 §3.7). Set with
        #: ``control("footer", text=...)``.
        self.footer: str | None = None

    # -- identity -------------------------------------------------------------

    @property
    def hostname(self) -> str:
        """The name this MTA gives in EHLO, Received and DSNs."""
        if self.config.hostname:
            return self.config.hostname
        submission = self.ctx.node.services.submission
        if submission is not None and submission.hostname:
            return submission.hostname
        return self.ctx.node.name

    # -- life cycle -------------------------------------------------------------

    async def start(self) -> list[Endpoint]:
        loop = asyncio.get_running_loop()
        every_key = await loop.run_in_executor(
            None, ensure_keys, self.ctx.topology, self.ctx.state_dir
        )
        # ensure_keys returns the keys of every relay of the lab: sign only
        # with this relay's own (domain, selector) pairs.
        mine = {(d.strip().lower().rstrip("."), s.strip().lower()) for d, s in self.config.dkim}
        self.keys = {key: pair for key, pair in every_key.items() if key in mine}
        entries, problems = await loop.run_in_executor(None, self.spool.load, self.ctx.clock.now())
        for problem in problems:
            self.ctx.record(None, QueueRecovery(problem=problem), problem)
        now = self.ctx.clock.now()
        for entry in entries:
            # A restarted MTA runs its queue at once (like `postqueue -f`).
            entry.next_attempt = now
            self.entries[entry.id] = entry
            self.ctx.record(
                entry.trace_id,
                QueueRecovered(queue_id=entry.id),
                f"{entry.id} recovered from the spool after a restart: "
                f"{len(entry.open_rcpts())} recipient(s) still to deliver",
            )
            self._schedule(entry)
        # The relay sends only; it listens on nothing.
        return []

    async def lab_started(self) -> None:
        """The receivers of the lab are listening now: attempts may begin. A
        restarted lab's recovered entries wait for this, on both backends:
        on mininet each node's services start in a process of their own, and
        a relay that ran its queue while the first MX was still starting
        would hand the message to the backup MX."""
        self._lab_up.set()
        for queue_id in list(self._wake):
            self._poke(queue_id)

    async def stop(self) -> None:
        self._stopping = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._recorder.shutdown(wait=True)

    # -- trace ----------------------------------------------------------------

    def _emit(self, entry: QueueEntry, data: EventData, summary: str) -> None:
        """A ``queue`` event of ``entry`` (in the trace of the experiment that queued it)."""
        self.ctx.record(entry.trace_id, data, summary)

    # -- enqueue --------------------------------------------------------------

    def new_queue_id(self) -> str:
        """A queue id to use for the next :meth:`enqueue` (the submission
        service names it in its Received header before the message is queued)."""
        return self.spool.new_id()

    async def enqueue(
        self,
        mail_from: str,
        rcpts: Sequence[str],
        data: bytes,
        *,
        trace_id: str | None = None,
        authenticated_user: str | None = None,
        queue_id: str | None = None,
        kind: EntryKind = "message",
    ) -> str:
        """Sign, store durably, schedule; returns the queue id once the entry
        is on disk (the caller may then answer 250). Raises OSError if the
        spool cannot be written."""
        if not rcpts:
            raise ValueError("a message needs at least one recipient")
        loop = asyncio.get_running_loop()
        data, signed = await loop.run_in_executor(None, self._sign, mail_from, data)
        now = self.ctx.clock.now()
        entry = QueueEntry(
            id=queue_id or self.new_queue_id(),
            kind=kind,
            mail_from=mail_from,
            rcpts=[Recipient(r) for r in dict.fromkeys(rcpts)],
            created=now,
            next_attempt=now,
            arrival=_now_rfc5322(),
            size=len(data),
            trace_id=trace_id,
            authenticated_user=authenticated_user,
        )
        await loop.run_in_executor(None, self.spool.add, entry, data, now)
        self.entries[entry.id] = entry
        what = "a delivery status notification" if kind == "dsn" else "message"
        signed_note = f", DKIM-signed d={', '.join(signed)}" if signed else ""
        self.ctx.record(
            trace_id,
            QueueQueued(
                queue_id=entry.id,
                mail_from=mail_from,
                rcpts=list(rcpts),
                size=len(data),
                dkim=signed,
                entry_kind=kind,
            ),
            f"{entry.id} queued {what} from <{mail_from}> to "
            f"{', '.join(f'<{r}>' for r in rcpts)} ({len(data)} bytes{signed_note})",
        )
        self._schedule(entry)
        return entry.id

    def _sign(self, mail_from: str, data: bytes) -> tuple[bytes, list[str]]:
        """DKIM-sign for the From: domain, else for the envelope domain, with
        every selector configured for it (worker thread)."""
        if not self.config.dkim:
            return data, []
        header_domain = ""
        try:
            headers = BytesHeaderParser(policy=default_policy).parsebytes(data)
            addresses = getattr(headers["From"], "addresses", ()) if headers["From"] else ()
            if addresses and isinstance(addresses[0], Address):
                header_domain = addresses[0].domain.lower()
        except Exception:  # a malformed From: is the receiver's problem, not ours
            header_domain = ""
        signed: list[str] = []
        for wanted in (header_domain, _domain(mail_from) if mail_from else ""):
            if not wanted:
                continue
            for (domain, selector), pair in self.keys.items():
                if domain != wanted:
                    continue
                try:
                    data = sign(data, domain, selector, pair.private_pem)
                except ValueError:
                    continue
                signed.append(f"{domain} s={selector}")
            if signed:
                break
        return data, signed

    # -- scheduling -------------------------------------------------------------

    def _schedule(self, entry: QueueEntry) -> None:
        if self._stopping or entry.id in self._tasks:
            return
        self._wake[entry.id] = asyncio.Event()
        self._saving[entry.id] = asyncio.Lock()
        task = asyncio.get_running_loop().create_task(
            self._run(entry), name=f"relay-{self.ctx.node.name}-{entry.id}"
        )
        self._tasks[entry.id] = task
        queue_id = entry.id

        def forget(_task: asyncio.Task[None]) -> None:
            self._forget_task(queue_id)

        task.add_done_callback(forget)

    def _forget_task(self, queue_id: str) -> None:
        self._tasks.pop(queue_id, None)
        self._wake.pop(queue_id, None)
        self._saving.pop(queue_id, None)

    async def _wait_due(self, entry: QueueEntry) -> None:
        """Until the entry is due and not on hold (a flush or release wakes
        it), and the lab is up (:meth:`lab_started` wakes it)."""
        clock = self.ctx.clock
        while True:
            wake = self._wake[entry.id]
            up = self._lab_up.is_set()
            if up and not entry.held and clock.now() >= entry.next_attempt:
                return
            sleeper = asyncio.ensure_future(
                clock.sleep_until(entry.next_attempt) if up and not entry.held else asyncio.Future()
            )
            waiter = asyncio.ensure_future(wake.wait())
            try:
                await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sleeper, waiter):
                    task.cancel()
                wake.clear()

    async def _run(self, entry: QueueEntry) -> None:
        while entry.id in self.entries:
            await self._wait_due(entry)
            try:
                await self._attempt(entry)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # a bug or a full disk: keep the message queued
                interval = self._interval(entry)
                entry.next_attempt = self.ctx.clock.now() + interval
                self._emit(
                    entry,
                    QueueInternalError(
                        queue_id=entry.id,
                        error=str(err),
                        next_attempt=round(entry.next_attempt, 3),
                    ),
                    f"{entry.id} delivery attempt failed inside the relay ({err}); "
                    f"next attempt in {format_duration(interval)}",
                )

    def _interval(self, entry: QueueEntry) -> float:
        retry = self.config.retry or (300.0,)
        return retry[min(max(entry.attempts, 1) - 1, len(retry) - 1)]

    async def _save(self, entry: QueueEntry, executor: Executor | None = None) -> None:
        """Persist the entry's state, or remove it when nothing is left to do
        (in ``executor``, by default the loop's)."""
        loop = asyncio.get_running_loop()
        lock = self._saving.get(entry.id) or asyncio.Lock()
        async with lock:
            if entry.open_rcpts() or any(
                r.state == "bounced" and not r.reported for r in entry.rcpts
            ):
                if entry.id in self.entries:
                    await loop.run_in_executor(
                        executor, self.spool.save, entry, self.ctx.clock.now()
                    )
            else:
                self.entries.pop(entry.id, None)
                await loop.run_in_executor(executor, self.spool.remove, entry.id)

    # -- one attempt ------------------------------------------------------------

    async def _attempt(self, entry: QueueEntry) -> None:
        loop = asyncio.get_running_loop()
        entry.attempts += 1
        data = await loop.run_in_executor(None, self.spool.data, entry.id)
        if self.footer and entry.kind == "message":
            data = append_footer(data, self.footer)
        groups: dict[str, list[Recipient]] = {}
        for rcpt in entry.open_rcpts():
            key = "" if self.config.smarthost else _domain(rcpt.address)
            groups.setdefault(key, []).append(rcpt)
        for domain, rcpts in groups.items():
            if self.config.smarthost is not None:
                await self._via_smarthost(entry, rcpts, data)
            else:
                await self._via_mx(entry, domain, rcpts, data)
        await self._settle(entry, data)

    async def _settle(self, entry: QueueEntry, data: bytes) -> None:
        """After an attempt: give up, warn, report, reschedule or finish."""
        clock = self.ctx.clock
        now = clock.now()
        age = now - entry.created
        deferred = [r for r in entry.rcpts if r.state == "deferred"]
        if deferred and age >= self.config.give_up:
            for rcpt in deferred:
                rcpt.state = "bounced"
                self._emit(
                    entry,
                    QueueBounced(
                        queue_id=entry.id,
                        rcpt=rcpt.address,
                        reply=rcpt.reply.to_json() if rcpt.reply else None,
                        reason="give_up",
                        stage=rcpt.stage,
                        remote_mta=rcpt.remote_mta,
                    ),
                    f"{entry.id} <{rcpt.address}>: giving up after "
                    f"{format_duration(round(age))} in the queue (give_up "
                    f"{format_duration(self.config.give_up)}); last reply: {rcpt.reply}",
                )
            deferred = []
        failed = [r for r in entry.rcpts if r.state == "bounced" and not r.reported]
        if failed:
            await self._report(entry, failed, "failed", data)
            for rcpt in failed:
                rcpt.reported = True
        warn_after = self.config.warn_after
        if deferred and warn_after is not None and not entry.warned and age >= warn_after:
            entry.warned = True
            await self._report(entry, deferred, "delayed", data)
        if entry.open_rcpts():
            interval = self._interval(entry)
            entry.next_attempt = now + interval
            for rcpt in deferred:
                self._emit(
                    entry,
                    QueueDeferred(
                        queue_id=entry.id,
                        rcpt=rcpt.address,
                        reply=rcpt.reply.to_json() if rcpt.reply else None,
                        next_attempt=round(entry.next_attempt, 3),
                        remote_mta=rcpt.remote_mta,
                        stage=rcpt.stage,
                    ),
                    f"{entry.id} <{rcpt.address}> deferred: {rcpt.reply}; next attempt in "
                    f"{format_duration(interval)} (attempt {entry.attempts + 1})",
                )
        await self._save(entry)

    # -- routing ----------------------------------------------------------------

    async def _route(self, domain: str, trace_id: str | None) -> Route:
        """The MX hosts of ``domain`` in order (RFC 5321 §5.1; sim.services.mxroute)."""
        return await find_mx(self.ctx.resolver, domain, trace_id)

    def _backup_for(self, domain: str) -> bool:
        """Whether the mx beside this relay is a backup MX for ``domain``."""
        mx = self.ctx.node.services.mx
        return bool(
            mx is not None
            and mx.backup
            and domain.lower().rstrip(".") in (d.lower().rstrip(".") for d in mx.domains)
        )

    def _own_names(self) -> set[str]:
        """The names this host goes by in MX records: its mx's and relay's
        host names and the node's name."""
        mx = self.ctx.node.services.mx
        names = {self.hostname, self.ctx.node.name}
        if mx is not None:
            names.add(mx.hostname or f"mx.{mx.domains[0]}")
        return {n.lower().rstrip(".") for n in names}

    async def _addresses(self, host: str, trace_id: str | None) -> tuple[list[IPv4Address], str]:
        return await host_addresses(self.ctx.resolver, host, trace_id)

    async def _via_mx(
        self, entry: QueueEntry, domain: str, rcpts: list[Recipient], data: bytes
    ) -> None:
        route = await self._route(domain, entry.trace_id)
        if route.reply is not None:
            self._apply_local(entry, rcpts, route.reply)
            return
        if self._backup_for(domain):
            names = self._own_names()
            below = route.below(names)
            if below is not route:
                mine = [h for h in route.hosts if h in names]
                self._emit(
                    entry,
                    QueueRoute(queue_id=entry.id, domain=domain, hosts=list(below.hosts)),
                    f"{entry.id}: this host is {mine[0]}, an MX of {domain}: only the more "
                    f"preferred MX hosts are tried ({', '.join(below.hosts) or 'none'}), "
                    "never itself or a less preferred one (RFC 5321 §5.1)",
                )
                if not below.hosts:
                    # Postfix: "mail for DOMAIN loops back to myself" (5.4.6).
                    self._apply_local(
                        entry,
                        rcpts,
                        Reply(554, "5.4.6", f"mail for {domain} loops back to myself"),
                    )
                    return
                route = below
        last: Reply | None = None
        tried = False
        for host in route.hosts:
            addresses, rcode = await self._addresses(host, entry.trace_id)
            if not addresses:
                unknown = unroutable(route, domain, rcode)
                if unknown is not None:
                    # Neither MX nor address: no way to route the mail.
                    self._apply_local(entry, rcpts, unknown)
                    return
                last = no_address(host, rcode)
                continue
            for address in addresses:
                tried = True
                transcript = await self._transaction(
                    entry, rcpts, data, host, address, 25, implicit_mx=route.implicit
                )
                if transcript.failed_stage not in _BEFORE_MAIL:
                    self._apply(entry, rcpts, transcript, host)
                    return
                last = self._connection_reply(transcript, host)
        reason = last or Reply(451, "4.4.1", f"no MX host of {domain} could be reached")
        if not tried and last is None:
            reason = Reply(451, "4.4.3", f"no usable MX host for {domain}")
        self._apply_local(entry, rcpts, reason, temporary=True)

    async def _via_smarthost(self, entry: QueueEntry, rcpts: list[Recipient], data: bytes) -> None:
        smarthost = self.config.smarthost
        assert smarthost is not None
        try:
            node = self.ctx.topology.node(smarthost.host)
        except KeyError:
            self._apply_local(
                entry, rcpts, Reply(451, "4.3.5", f"smarthost {smarthost.host} is not in the lab")
            )
            return
        if node.ip is None:
            self._apply_local(
                entry, rcpts, Reply(451, "4.3.5", f"smarthost {smarthost.host} has no address")
            )
            return
        submission = node.services.submission
        name = (submission.hostname if submission else None) or node.name
        auth = (smarthost.user, smarthost.password or "") if smarthost.user is not None else None
        transcript = await self._transaction(
            entry,
            rcpts,
            data,
            name,
            node.ip.ip,
            smarthost.port,
            smarthost=True,
            auth=auth,
        )
        if transcript.failed_stage in _BEFORE_MAIL:
            reply = self._connection_reply(transcript, name)
            if transcript.failed_stage == "auth" and reply.permanent:
                # Wrong credentials will not fix themselves, but an operator
                # can fix the configuration: keep the mail and retry.
                reply = Reply(454, "4.7.0", f"smarthost {name} refused AUTH: {reply}")
            self._apply_local(entry, rcpts, reply, temporary=True)
            return
        self._apply(entry, rcpts, transcript, name)

    async def _transaction(
        self,
        entry: QueueEntry,
        rcpts: list[Recipient],
        data: bytes,
        host: str,
        address: IPv4Address,
        port: int,
        *,
        implicit_mx: bool = False,
        smarthost: bool = False,
        auth: tuple[str, str] | None = None,
    ) -> Transcript:
        addresses = [r.address for r in rcpts]
        for rcpt in rcpts:
            rcpt.attempts += 1
        how = (
            "smarthost"
            if smarthost
            else "implicit MX (the domain's own address)"
            if implicit_mx
            else "MX"
        )
        self._emit(
            entry,
            QueueAttempt(
                queue_id=entry.id,
                rcpt=", ".join(addresses),
                rcpts=addresses,
                mx=host,
                address=str(address),
                port=port,
                attempt=entry.attempts,
            ),
            f"{entry.id} attempt {entry.attempts}: {how} {host} [{address}]:{port} for "
            f"{', '.join(f'<{a}>' for a in addresses)}",
        )

        txn = secrets.token_hex(4)

        async def accepted(transcript: Transcript) -> None:
            # The 250 to the final dot: record it durably before anything
            # else (no trace event, no QUIT first), on the relay's own writer
            # thread, never queued behind other work: a kill from here to the
            # end of the write is the only way to deliver this message twice.
            final = transcript.final
            for rcpt in rcpts:
                if rcpt.address in transcript.accepted:
                    rcpt.state = "delivered"
                    rcpt.reply = final
                    rcpt.remote_mta = host
                    rcpt.remote_address = str(address)
                    rcpt.stage = "data"
            await self._save(entry, self._recorder)
            self.spool.journal("recorded", entry.id, txn)

        self.spool.journal("start", entry.id, txn, rcpts=addresses, mx=host)
        try:
            return await self._send(
                entry, data, addresses, host, address, port, accepted, smarthost, auth
            )
        finally:
            self.spool.journal("end", entry.id, txn)

    async def _send(
        self,
        entry: QueueEntry,
        data: bytes,
        addresses: list[str],
        host: str,
        address: IPv4Address,
        port: int,
        accepted: Callable[[Transcript], Awaitable[None]],
        smarthost: bool,
        auth: tuple[str, str] | None,
    ) -> Transcript:
        if smarthost:
            tls: TlsMode = "implicit" if port == 465 else "required"
            return await self.client.send(
                address,
                port,
                mail_from=entry.mail_from,
                rcpts=addresses,
                data=data,
                helo=self.hostname,
                tls=tls,
                verify=True,
                server_name=host,
                auth=auth,
                trace_id=entry.trace_id,
                on_accepted=accepted,
            )
        return await self.client.send(
            address,
            port,
            mail_from=entry.mail_from,
            rcpts=addresses,
            data=data,
            helo=self.hostname,
            tls="opportunistic",
            verify=False,
            server_name=host,
            trace_id=entry.trace_id,
            on_accepted=accepted,
        )

    # -- outcomes ---------------------------------------------------------------

    @staticmethod
    def _connection_reply(transcript: Transcript, host: str) -> Reply:
        """What a failure before MAIL amounts to, as a reply."""
        reply = transcript.last_reply
        where = f"{host}[{transcript.address}]:{transcript.port}"
        if transcript.blocked or reply is None:
            error = transcript.error or "no reply"
            status = "4.4.1" if transcript.failed_stage == "connect" else "4.4.2"
            return Reply(451, status, f"connect to {where}: {error}")
        if reply.positive:
            # e.g. the server never offered STARTTLS to a client that requires it
            return Reply(451, "4.7.5", f"{where}: {transcript.error or 'failed'}")
        return reply

    def _apply_local(
        self,
        entry: QueueEntry,
        rcpts: list[Recipient],
        reply: Reply,
        *,
        temporary: bool = False,
    ) -> None:
        """A failure found without a remote reply (DNS, every MX unreachable)."""
        for rcpt in rcpts:
            rcpt.reply = reply
            rcpt.remote_mta = None
            rcpt.remote_address = None
            rcpt.stage = None
            self._classify(entry, rcpt, reply, temporary=temporary)

    def _apply(
        self, entry: QueueEntry, rcpts: list[Recipient], transcript: Transcript, host: str
    ) -> None:
        """Per-recipient outcome of a transaction that reached MAIL FROM."""
        mail = transcript.reply_at("mail")
        for rcpt in rcpts:
            if rcpt.state == "delivered":
                self._emit(
                    entry,
                    QueueDelivered(
                        queue_id=entry.id,
                        rcpt=rcpt.address,
                        reply=rcpt.reply.to_json() if rcpt.reply else None,
                        mx=host,
                        address=transcript.address,
                    ),
                    f"{entry.id} <{rcpt.address}> delivered to {host} "
                    f"[{transcript.address}]: {rcpt.reply}",
                )
                continue
            reply: Reply | None
            stage: str
            if mail is not None and not mail.positive:
                reply, stage = mail, "mail"
            elif rcpt.address in transcript.rcpt_replies and not (
                transcript.rcpt_replies[rcpt.address].positive
            ):
                reply, stage = transcript.rcpt_replies[rcpt.address], "rcpt"
            else:
                reply, stage = transcript.final or transcript.reply_at("data"), "data"
            if reply is None or reply.positive:
                # The connection broke before a verdict on this recipient.
                stage = transcript.failed_stage or "data"
                reply = Reply(
                    451,
                    "4.4.2",
                    f"lost connection with {host}[{transcript.address}] "
                    f"({transcript.error or 'no reply'})",
                )
            rcpt.reply = reply
            rcpt.remote_mta = host
            rcpt.remote_address = transcript.address
            rcpt.stage = stage
            self._classify(entry, rcpt, reply)

    def _classify(
        self, entry: QueueEntry, rcpt: Recipient, reply: Reply, *, temporary: bool = False
    ) -> None:
        if reply.permanent and not temporary:
            rcpt.state = "bounced"
            where = f" by {rcpt.remote_mta}" if rcpt.remote_mta else ""
            self._emit(
                entry,
                QueueBounced(
                    queue_id=entry.id,
                    rcpt=rcpt.address,
                    reply=reply.to_json(),
                    remote_mta=rcpt.remote_mta,
                    stage=rcpt.stage,
                    reason="permanent",
                ),
                f"{entry.id} <{rcpt.address}> rejected{where}: {reply}",
            )
        else:
            rcpt.state = "deferred"

    # -- DSNs -----------------------------------------------------------------

    async def _report(
        self, entry: QueueEntry, rcpts: list[Recipient], action: str, data: bytes
    ) -> None:
        """Queue a failure DSN or a delay warning to the envelope sender."""
        if (entry.kind == "dsn" or not entry.mail_from) and action != "failed":
            return  # a bounce that is late gets no delay warning of its own
        if entry.kind == "dsn" or not entry.mail_from:
            # RFC 5321 §6.2: never send a notification about a notification.
            self._emit(
                entry,
                QueueBounceDropped(queue_id=entry.id, rcpts=[r.address for r in rcpts]),
                f"{entry.id} is itself a bounce (MAIL FROM:<>); it is dropped, "
                "not bounced (RFC 5321 §6.2)",
            )
            return
        dsn_rcpts = [
            DsnRecipient(
                address=r.address,
                action="failed" if action == "failed" else "delayed",
                status=status_of(r.reply, "5.0.0" if action == "failed" else "4.0.0"),
                reply=r.reply,
                remote_mta=r.remote_mta,
                remote_address=r.remote_address,
                stage=r.stage,
                last_attempt=_now_rfc5322(),
                diagnostic=None if r.remote_mta else (r.reply.text if r.reply else None),
            )
            for r in rcpts
        ]
        age = self.ctx.clock.now() - entry.created
        retry_until = email.utils.format_datetime(
            dt.datetime.now(dt.UTC)
            + dt.timedelta(seconds=self.ctx.clock.real_seconds(self.config.give_up - age))
        )
        message = build_dsn(
            reporting_mta=self.hostname,
            queue_id=entry.id,
            original_sender=entry.mail_from,
            arrival_date=entry.arrival,
            recipients=dsn_rcpts,
            original=data,
            retry_until=retry_until if action == "delayed" else None,
            waited=age,
            give_up=self.config.give_up,
        )
        dsn_id = await self.enqueue(
            "", [entry.mail_from], message, trace_id=entry.trace_id, kind="dsn"
        )
        if action == "delayed":
            self._emit(
                entry,
                QueueWarning(queue_id=entry.id, rcpts=[r.address for r in rcpts], dsn=dsn_id),
                f"{entry.id} still undelivered after {format_duration(round(age))}: "
                f"delay warning {dsn_id} queued to <{entry.mail_from}>",
            )
        else:
            self._emit(
                entry,
                QueueDsn(queue_id=entry.id, rcpts=[r.address for r in rcpts], dsn=dsn_id),
                f"{entry.id} non-delivery report {dsn_id} queued to <{entry.mail_from}> "
                f"for {', '.join(f'<{r.address}>' for r in rcpts)}",
            )

    # -- control --------------------------------------------------------------

    async def control(self, command: str, **args: Any) -> dict[str, Any]:
        """``queue``; ``flush``; ``hold`` / ``release`` [queue_id]; ``footer`` [text];
        ``dkim_key`` domain selector (the public half a customer publishes);
        ``smarthost_password`` password (what it logs in to its smarthost with)."""
        if command == "dkim_key":
            return self._dkim_key(str(args.get("domain", "")), str(args.get("selector", "")))
        if command == "smarthost_password":
            return self._smarthost_password(args.get("password"))
        if command == "footer":
            text = args.get("text")
            self.footer = str(text) if text else None
            return {"footer": self.footer}
        if command == "queue":
            return {
                "entries": [e.to_json() for e in sorted(self.entries.values(), key=_by_age)],
                "now": round(self.ctx.clock.now(), 3),
            }
        if command == "flush":
            now = self.ctx.clock.now()
            flushed = []
            for entry in self.entries.values():
                if entry.held:
                    continue
                entry.next_attempt = min(entry.next_attempt, now)
                flushed.append(entry.id)
                self._poke(entry.id)
            return {"flushed": flushed}
        if command in ("hold", "release"):
            queue_id = args.get("queue_id")
            targets = (
                [self.entries[str(queue_id)]]
                if queue_id is not None and str(queue_id) in self.entries
                else []
                if queue_id is not None
                else list(self.entries.values())
            )
            if queue_id is not None and not targets:
                raise ServiceError(f"{self.ctx.node.name} relay: no queue entry {queue_id}")
            for entry in targets:
                entry.held = command == "hold"
                await self._save(entry)
                self._poke(entry.id)
            key = "held" if command == "hold" else "released"
            return {key: [e.id for e in targets]}
        raise ServiceError(
            f"relay has no control command {command!r} "
            "(queue, flush, hold, release, footer, dkim_key, smarthost_password)"
        )

    def _smarthost_password(self, password: Any) -> dict[str, Any]:
        """The password this relay gives its smarthost (RFC 4954 AUTH), as an
        administrator edits it in the relay's configuration."""
        smarthost = self.config.smarthost
        if smarthost is None or smarthost.user is None:
            raise ServiceError(f"{self.ctx.node.name} relay logs in to no smarthost")
        if not isinstance(password, str) or not password:
            raise ServiceError("smarthost_password: give the new password (text)")
        self.config = replace(self.config, smarthost=replace(smarthost, password=password))
        return {"smarthost": smarthost.host, "user": smarthost.user, "changed": True}

    def _dkim_key(self, domain: str, selector: str) -> dict[str, Any]:
        """What a provider's setup page shows its customer: the TXT value
        that publishes the public half of the key this relay signs
        ``domain`` with, and where it belongs (RFC 6376 §3.6.2.1)."""
        pair = self.keys.get((domain.strip().lower().rstrip("."), selector.strip().lower()))
        if pair is None:
            mine = ", ".join(f"{d} (selector {s})" for d, s in self.keys) or "nothing"
            raise ServiceError(
                f"{self.ctx.node.name} relay has no DKIM key for {domain} "
                f"selector {selector}; it signs {mine}"
            )
        return {
            "domain": pair.domain,
            "selector": pair.selector,
            "txt": pair.txt,
            "record_name": pair.record_name,
        }

    def _poke(self, queue_id: str) -> None:
        wake = self._wake.get(queue_id)
        if wake is not None:
            wake.set()


def _by_age(entry: QueueEntry) -> tuple[float, str]:
    return (entry.created, entry.id)


def append_footer(data: bytes, footer: str) -> bytes:
    """The message with ``footer`` added as the last lines of its body."""
    body = data if data.endswith(b"\r\n") else data + b"\r\n"
    return body + footer.replace("\r\n", "\n").replace("\n", "\r\n").encode() + b"\r\n"
