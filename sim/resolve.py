"""The lab's stub resolver: how services and experiments ask DNS questions.

Every query goes to the topology's resolver address over the node's
:class:`~sim.net.api.NodeNet` (never the host's resolver) and is recorded in
the trace. Answers come back as plain data.

The wire exchange (:func:`exchange`) is shared with the lab's recursive
resolver (:mod:`sim.services.dns`), which asks the authoritative nodes the
same way: one UDP datagram, and the same question again over TCP when the
answer comes back truncated (RFC 1035 §4.2.1, RFC 7766 §5).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import struct
import threading
import time
import weakref
from dataclasses import field
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any, Protocol

import dnslib

from sim.clock import LabClock
from sim.events import Dns, DnsRecordJson, EventData
from sim.fastclass import dataclass
from sim.net.api import NodeNet
from sim.topology.zones import fqdn, name_labels

__all__ = [
    "DnsAnswer",
    "DnsRecord",
    "Emit",
    "NoAnswer",
    "Resolver",
    "StubHit",
    "bump_generation",
    "exchange",
    "forget_stub_caches",
    "generation_path",
    "lab_timeout",
    "new_query",
    "qtype_code",
    "qtype_name",
    "rdata_text",
    "record_from_rr",
    "reverse_name",
]

#: How long a stub waits for its resolver, in lab seconds (glibc's default is 5 s;
#: the lab resolver may itself wait for an authoritative node, so the stub waits longer).
STUB_TIMEOUT = 10.0

#: A lab clock may run so fast (time_scale 60 makes 10 lab seconds 0.17 real
#: seconds) that a time-out in lab time would be shorter than a loopback round
#: trip on a busy machine. A stub's time-outs never go below this many real
#: seconds (the lab resolver's own, towards authoritative nodes, are shorter,
#: so that it can still answer SERVFAIL before its client gives up).
MIN_REAL_TIMEOUT = 3.0

# The largest DNS message (RFC 1035 §4.2.2: TCP messages carry a 16-bit length).
_MAX_MESSAGE = 65535

#: A node's stub cache keeps a negative answer (NXDOMAIN, NODATA) as long as
#: the SOA in it says (RFC 2308 §5: min(SOA TTL, SOA minimum)); one without an
#: SOA this many lab seconds. Positive answers are capped like a resolver's
#: (unbound's cache-max-ttl default is a day).
STUB_NEGATIVE_TTL = 30
STUB_MAX_TTL = 86400


@dataclass(frozen=True)
class DnsRecord:
    """One resource record; ``data`` is its presentation form (zone-file text
    of the RDATA, e.g. ``10 mx.qq.example.``); for TXT, ``strings`` holds the
    character-strings as text."""

    name: str
    type: str
    ttl: int
    data: str
    strings: tuple[str, ...] = ()

    def to_json(self) -> DnsRecordJson:
        return {"name": self.name, "type": self.type, "ttl": self.ttl, "data": self.data}


@dataclass(frozen=True)
class DnsAnswer:
    """The answer to one question. ``rcode`` is NOERROR, NXDOMAIN, SERVFAIL,
    REFUSED or TIMEOUT (no answer at all)."""

    name: str
    type: str
    rcode: str
    records: tuple[DnsRecord, ...] = ()
    server: str = ""
    trace: list[Any] = field(default_factory=list, compare=False)

    def of_type(self, rtype: str) -> tuple[DnsRecord, ...]:
        return tuple(r for r in self.records if r.type == rtype)

    def texts(self) -> list[str]:
        """TXT records, each with its strings joined (RFC 7208 §3.3)."""
        return ["".join(r.strings) for r in self.of_type("TXT")]


class Emit(Protocol):
    """Where the resolver records what it saw (``NodeContext.record`` fits)."""

    def __call__(self, trace_id: str | None, data: EventData, summary: str) -> Any: ...


class NoAnswer(Exception):
    """No usable reply came back: time-out, a firewall, or a broken reply."""


# --- presentation ---------------------------------------------------------


def qtype_code(rtype: str | int) -> int:
    """``"MX"`` → 15; ``"TYPE99"`` (RFC 3597 §5) → 99. Raises ValueError."""
    if isinstance(rtype, int):
        if not 0 <= rtype <= 0xFFFF:
            raise ValueError(f"not a DNS record type: {rtype}")
        return rtype
    name = rtype.strip().upper()
    code = dnslib.QTYPE.reverse.get(name)
    if code is not None:
        return int(code)
    if name.startswith("TYPE") and name[4:].isdigit():
        return qtype_code(int(name[4:]))
    raise ValueError(f"not a DNS record type: {rtype!r} (A, AAAA, MX, TXT, PTR, CNAME, NS, SOA...)")


def qtype_name(code: int) -> str:
    """15 → ``"MX"``; a type dnslib does not name → ``"TYPE<n>"`` (RFC 3597 §5)."""
    name = dnslib.QTYPE.get(code)
    return name if isinstance(name, str) else f"TYPE{code}"


def _quote(raw: bytes) -> str:
    # RFC 1035 §5.1: a character-string in quotes; '"' and '\' escaped, and
    # bytes that are not printable ASCII as \DDD.
    out = []
    for byte in raw:
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= byte < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def rdata_text(rr: dnslib.RR) -> str:
    """The RDATA in zone-file form: ``10 mx.qq.example.``, ``"v=spf1" " -all"``."""
    if rr.rtype == dnslib.QTYPE.TXT:
        return " ".join(_quote(bytes(s)) for s in rr.rdata.data)
    return str(rr.rdata)


def record_from_rr(rr: dnslib.RR) -> DnsRecord:
    strings: tuple[str, ...] = ()
    if rr.rtype == dnslib.QTYPE.TXT:
        strings = tuple(bytes(s).decode("utf-8", "surrogateescape") for s in rr.rdata.data)
    return DnsRecord(
        name=fqdn(str(rr.rname)),
        type=qtype_name(rr.rtype),
        ttl=int(rr.ttl),
        data=rdata_text(rr),
        strings=strings,
    )


def reverse_name(address: str | IPv4Address | IPv6Address) -> str:
    """``203.0.113.25`` → ``25.113.0.203.in-addr.arpa.`` (RFC 1035 §3.5)."""
    return fqdn(ip_address(address).reverse_pointer)


# --- the wire -------------------------------------------------------------


def lab_timeout(clock: LabClock, lab_seconds: float, min_real: float = MIN_REAL_TIMEOUT) -> float:
    """A time-out in lab seconds, never shorter than ``min_real`` real seconds."""
    return max(lab_seconds, min_real * clock.time_scale)


def _why(err: BaseException) -> str:
    """An exception as a short reason (a lab verdict's message, not ``[Errno 110]``)."""
    if isinstance(err, asyncio.IncompleteReadError):
        return "the connection closed before a whole answer came"
    if isinstance(err, OSError) and err.strerror:
        return str(err.strerror)
    return str(err) or ("timed out" if isinstance(err, TimeoutError) else type(err).__name__)


def _check_reply(request: dnslib.DNSRecord, raw: bytes) -> dnslib.DNSRecord:
    try:
        reply = dnslib.DNSRecord.parse(raw)
    except Exception as err:  # dnslib raises many kinds on garbage; all mean "unreadable"
        raise NoAnswer(f"unreadable reply: {err}") from None
    # RFC 5452 §4.1: a reply belongs to a query only if the id and the
    # question match; anything else is ignored, like a spoofed answer.
    if reply.header.id != request.header.id or not reply.header.qr:
        raise NoAnswer("the reply does not belong to the query (id mismatch)")
    if reply.q.qtype != request.q.qtype or reply.q.qname != request.q.qname:
        raise NoAnswer("the reply answers a different question")
    return reply


async def _exchange_tcp(
    net: NodeNet,
    server: IPv4Address,
    request: dnslib.DNSRecord,
    packet: bytes,
    *,
    trace_id: str | None,
    timeout: float,
    clock: LabClock,
) -> dnslib.DNSRecord:
    # RFC 1035 §4.2.2: over TCP each message is preceded by its length (2 bytes).
    try:
        reader, writer = await net.open_connection(server, 53, trace_id=trace_id, timeout=timeout)
    except (TimeoutError, OSError) as err:
        raise NoAnswer(f"TCP to {server}:53: {_why(err)}") from None
    try:
        writer.write(struct.pack("!H", len(packet)) + packet)
        await writer.drain()
        async with asyncio.timeout(clock.real_seconds(timeout)):
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            raw = await reader.readexactly(length)
    except (TimeoutError, OSError, asyncio.IncompleteReadError) as err:
        raise NoAnswer(f"TCP to {server}:53: {_why(err)}") from None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return _check_reply(request, raw)


async def exchange(
    net: NodeNet,
    server: IPv4Address,
    request: dnslib.DNSRecord,
    *,
    clock: LabClock,
    trace_id: str | None = None,
    timeout: float = STUB_TIMEOUT,
    min_real: float = MIN_REAL_TIMEOUT,
) -> tuple[dnslib.DNSRecord, str]:
    """Ask ``server`` one question; returns the reply and the transport used.

    Over UDP first; a reply with TC set is discarded and the question asked
    again over TCP (RFC 1035 §4.2.1, RFC 7766 §5). Raises :class:`NoAnswer`.
    """
    packet = request.pack()
    timeout = lab_timeout(clock, timeout, min_real)
    try:
        raw = await net.udp_exchange(server, 53, packet, trace_id=trace_id, timeout=timeout)
    except (TimeoutError, OSError) as err:
        raise NoAnswer(f"UDP to {server}:53: {_why(err)}") from None
    reply = _check_reply(request, raw)
    if not reply.header.tc:
        return reply, "udp"
    reply = await _exchange_tcp(
        net, server, request, packet, trace_id=trace_id, timeout=timeout, clock=clock
    )
    return reply, "tcp"


def new_query(name: str, qtype: int, *, recursion: bool = True) -> dnslib.DNSRecord:
    """A query with a random id (RFC 5452 §9.2) and no EDNS: answers over 512
    bytes come back truncated and are fetched again over TCP."""
    try:
        # A name in presentation form may carry RFC 1035 §5.1 escapes (\\032
        # for a space): the query must ask for the octets they stand for.
        label = dnslib.DNSLabel(name_labels(fqdn(name)) if "\\" in name else fqdn(name))
        # Packing checks label lengths (63) and the whole name (255 bytes).
        dnslib.DNSBuffer().encode_name(label)
    except (dnslib.DNSError, UnicodeError, ValueError) as err:
        raise ValueError(
            f"not a valid DNS name: {name!r} (labels of 1-63 characters, at most 255 in all)"
        ) from err
    header = dnslib.DNSHeader(id=secrets.randbelow(1 << 16), rd=1 if recursion else 0)
    return dnslib.DNSRecord(header, q=dnslib.DNSQuestion(label, qtype))


# --- the node's stub cache ------------------------------------------------


def generation_path(state_dir: Path) -> Path:
    """The file whose modification time is the lab's DNS *generation*: every
    change to the lab's DNS (a zone edit, a flush) touches it, and a stub
    cache in another process (a mininet node's agent) forgets its answers
    when it sees the time change."""
    return state_dir / "run" / "dns-generation"


def bump_generation(path: Path) -> None:
    """Mark a change of the lab's DNS in ``path`` (see :func:`generation_path`).

    The time is set explicitly and always moves forward: file times from the
    kernel's clock are coarse (a few ms), and two edits in a row must still
    read as two changes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        old = path.stat().st_mtime_ns
    except FileNotFoundError:
        old = 0
    stamp = max(time.time_ns(), old + 1)
    path.write_text(f"{stamp}\n")
    os.utime(path, ns=(stamp, stamp))


#: Every stub resolver in this process, by the lab clock it runs on (one
#: clock per lab): a DNS change clears the caches of the whole lab at once.
_STUBS: weakref.WeakKeyDictionary[LabClock, weakref.WeakSet[Resolver]] = weakref.WeakKeyDictionary()
_STUBS_LOCK = threading.Lock()


def forget_stub_caches(clock: LabClock, generation_file: Path | None = None) -> int:
    """The lab's DNS changed: empty the stub cache of every node of the lab
    run by ``clock`` in this process, and (``generation_file``) tell the
    nodes in other processes. Returns how many answers were forgotten here."""
    with _STUBS_LOCK:
        stubs = list(_STUBS.get(clock, ()))
    forgotten = sum(stub.forget() for stub in stubs)
    if generation_file is not None:
        bump_generation(generation_file)
    return forgotten


#: The records of a cached answer with their TTLs at one age, their trace
#: form, and the answer shown as text.
_Aged = tuple[tuple[DnsRecord, ...], list[DnsRecordJson], str]


@dataclass(frozen=True)
class _Entry:
    stored: float
    expires: float
    rcode: str
    records: tuple[DnsRecord, ...]
    #: {age: _Aged} for the latest age asked: the questions of a busy MX
    #: within one lab second share it instead of rebuilding it each time.
    aged: dict[int, _Aged] = field(default_factory=dict, compare=False)
    #: The hit for the latest (age, time left, server) asked, likewise.
    hits: dict[tuple[int, int, str], StubHit] = field(default_factory=dict, compare=False)

    def hit(self, age: int, left: int, name: str, rtype: str, server: str) -> StubHit:
        """This answer as a hit ``age`` seconds after it came, ``left`` before it goes."""
        key = (age, left, server)
        got = self.hits.get(key)
        if got is None:
            records, answers, shown = self.at_age(age, name, rtype)
            answer = DnsAnswer(name, rtype, self.rcode, records, server)
            got = StubHit(answer, age, left, answers, shown)
            self.hits.clear()  # only the latest is worth keeping
            self.hits[key] = got
        return got

    def at_age(self, age: int, name: str, rtype: str) -> _Aged:
        got = self.aged.get(age)
        if got is None:
            records = tuple(
                DnsRecord(r.name, r.type, max(0, r.ttl - age), r.data, r.strings)
                for r in self.records
            )
            shown = _shown(DnsAnswer(name, rtype, self.rcode, records))
            got = (records, [r.to_json() for r in records], shown)
            self.aged.clear()  # only the latest age is worth keeping
            self.aged[age] = got
        return got


@dataclass(frozen=True)
class StubHit:
    """An answer from a node's stub cache: the records with the time left as
    their TTL (RFC 1035 §4.1.3: TTLs count down), how long ago the resolver
    gave it and how long it stays; ``answers`` and ``shown`` are the records
    as the trace shows them."""

    answer: DnsAnswer
    age: int
    left: int
    answers: list[DnsRecordJson] = field(default_factory=list, compare=False)
    shown: str = ""
    #: The trace event's summary and data, once made, with the (client,
    #: server) they name (see Resolver.emit_hit).
    event: list[tuple[tuple[str, str], str, Dns]] = field(
        default_factory=list, compare=False, repr=False
    )


def _stub_ttl(reply: dnslib.DNSRecord, rcode: str) -> int:
    """How long (lab seconds) a stub keeps ``reply``; 0: not at all."""
    if rcode == "NOERROR" and reply.rr:
        return min(min(int(rr.ttl) for rr in reply.rr), STUB_MAX_TTL)
    if rcode not in ("NOERROR", "NXDOMAIN"):
        return 0  # SERVFAIL, REFUSED: ask again next time (RFC 2308 §7)
    soa = next((rr for rr in reply.auth if rr.rtype == dnslib.QTYPE.SOA), None)
    if soa is None:
        return STUB_NEGATIVE_TTL
    # RFC 2308 §5: a negative answer lives min(SOA TTL, SOA minimum).
    return min(int(soa.ttl), int(soa.rdata.times[4]), STUB_MAX_TTL)


def _shown(answer: DnsAnswer) -> str:
    if answer.rcode == "NXDOMAIN":
        return "NXDOMAIN (no such name)"
    if answer.rcode != "NOERROR":
        return answer.rcode
    if not answer.records:
        return f"NOERROR, no {answer.type} record (NODATA)"
    shown = []
    for record in answer.records[:4]:
        data = record.data if len(record.data) <= 60 else record.data[:59] + "…"
        shown.append(f"{record.type} {data}")
    more = len(answer.records) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


# --- the stub resolver ----------------------------------------------------


class Resolver:
    """The stub resolver of one node: asks the lab resolver at ``server``.

    ``await query(...)`` on the lab's event loop; ``query_sync(...)`` from a
    worker thread (pyspf and dkimpy look names up synchronously) while that
    loop runs elsewhere. The host's resolver is never used.

    The DNS servers record every query they answer in the trace; the stub
    itself emits a ``dns`` event only when no answer came back at all
    (rcode TIMEOUT), since then no server saw the question, and when it
    answers from its cache.

    **The stub cache.** A mail server usually runs its own caching resolver
    (unbound, systemd-resolved) so that the same questions, asked for every
    message, do not cross the network each time. Queries made with
    ``cache=True`` (the MX's checks) use such a cache: answers are kept for
    their TTL in lab time, negative ones for the SOA minimum (RFC 2308 §5).
    A cached answer still appears in the trace, as a ``dns`` event of this
    node with ``cached: true``. Any change to the lab's DNS clears every
    node's cache (:func:`forget_stub_caches`; across processes through
    ``generation_file``), so an edit shows on the next question, as before.
    """

    def __init__(
        self,
        net: NodeNet,
        server: IPv4Address,
        clock: LabClock,
        emit: Emit | None = None,
        *,
        timeout: float = STUB_TIMEOUT,
        min_real: float = MIN_REAL_TIMEOUT,
        generation_file: Path | None = None,
    ) -> None:
        self.net = net
        self.server = server
        # As text, once: they go into every trace event of a busy MX.
        self._server = str(server)
        self._client = str(net.address)
        self.clock = clock
        self.emit = emit
        self.timeout = timeout
        self.min_real = min_real
        #: Set where other processes change the lab's DNS (the mininet backend).
        self.generation_file = generation_file
        self._loop: asyncio.AbstractEventLoop | None = None
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()
        self._cache: dict[tuple[str, int], _Entry] = {}
        # Bumped by forget(): an answer that was on its way while the DNS
        # changed is not stored.
        self._epoch = 0
        self._seen_generation = self._file_generation()
        with _STUBS_LOCK:
            _STUBS.setdefault(clock, weakref.WeakSet()).add(self)

    # -- the cache -------------------------------------------------------

    def _file_generation(self) -> int:
        if self.generation_file is None:
            return 0
        try:
            return self.generation_file.stat().st_mtime_ns
        except OSError:
            return 0

    def _generation(self) -> tuple[int, int]:
        """The cache's generation now, after forgetting what another process
        made stale."""
        if self.generation_file is not None:
            seen = self._file_generation()
            if seen != self._seen_generation:
                self._seen_generation = seen
                self.forget()
        return self._epoch, self._seen_generation

    def forget(self) -> int:
        """Empty the stub cache; returns how many answers it held."""
        count = len(self._cache)
        self._epoch += 1
        self._cache = {}
        return count

    def from_cache(
        self, name: str, rtype: str | int = "A", *, trace_id: str | None = None, emit: bool = True
    ) -> StubHit | None:
        """The cached answer to ``rtype`` of ``name``, or None. With ``emit``
        the hit is recorded in the trace at once (else see :meth:`emit_hit`).
        Safe from any thread. Raises ValueError for a type that cannot be asked."""
        code = qtype_code(rtype)
        self._generation()
        key = (fqdn(name), code)
        entry = self._cache.get(key)
        if entry is None:
            return None
        now = self.clock.now()
        if now >= entry.expires:
            self._cache.pop(key, None)
            return None
        age, left = max(0, int(now - entry.stored)), max(0, int(entry.expires - now))
        hit = entry.hit(age, left, key[0], qtype_name(code), self._server)
        if emit:
            self.emit_hit(hit, trace_id)
        return hit

    def emit_hit(self, hit: StubHit, trace_id: str | None) -> None:
        """Record a cached answer in the trace (from any thread: off the
        loop the event is handed to the loop, after what is already queued)."""
        if self.emit is None:
            return
        client, server = self._client, self._server
        made = hit.event
        if made and made[0][0] == (client, server):
            _, summary, data = made[0]
        else:
            summary, data = self._hit_event(hit)
            made[:] = [((client, server), summary, data)]
        loop = self._loop
        running: asyncio.AbstractEventLoop | None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop or loop.is_closed():
            self.emit(trace_id, data, summary)
        else:
            loop.call_soon_threadsafe(lambda: self._emit_later(trace_id, summary, data))

    def _hit_event(self, hit: StubHit) -> tuple[str, Dns]:
        answer = hit.answer
        client, server = self._client, self._server
        shown = hit.shown or _shown(answer)
        summary = (
            f"{client} looked up {answer.type} {answer.name} → {shown} "
            f"(from its own cache: {server} answered {hit.age}s ago, {hit.left}s left)"
        )
        data = Dns(
            client=client,
            server=server,
            name=answer.name,
            type=answer.type,
            rcode=answer.rcode,
            answers=hit.answers or [r.to_json() for r in answer.records],
            cached=True,
            explanation=(
                f"answered by the node's own caching resolver, like unbound on a mail "
                f"server: {server} gave this answer {hit.age} lab seconds ago and it "
                f"stays for {hit.left} more (its TTL)"
            ),
        )
        return summary, data

    def _emit_later(self, trace_id: str | None, summary: str, data: Dns) -> None:
        if self.emit is not None:
            self.emit(trace_id, data, summary)

    def _store(
        self, key: tuple[str, int], reply: dnslib.DNSRecord, answer: DnsAnswer, sent_at: float
    ) -> None:
        ttl = _stub_ttl(reply, answer.rcode)
        if ttl > 0:
            self._cache[key] = _Entry(sent_at, sent_at + ttl, answer.rcode, answer.records)

    # -- asking ----------------------------------------------------------

    async def query(
        self,
        name: str,
        rtype: str | int = "A",
        *,
        trace_id: str | None = None,
        cache: bool = False,
    ) -> DnsAnswer:
        """Ask ``rtype`` of ``name``; the answer includes any CNAME chain.

        With ``cache``, answer from the node's stub cache when it can and
        keep the answer there. Raises ValueError for a name or type that
        cannot be asked.
        """
        self._loop = asyncio.get_running_loop()
        code = qtype_code(rtype)
        if cache:
            # (Only names that could be asked are ever stored.)
            hit = self.from_cache(name, code, trace_id=trace_id)
            if hit is not None:
                return hit.answer
        request = new_query(name, code)
        qname, qtype = fqdn(name), qtype_name(code)
        generation = self._generation()
        sent_at = self.clock.now()
        try:
            reply, _ = await exchange(
                self.net,
                self.server,
                request,
                clock=self.clock,
                trace_id=trace_id,
                timeout=self.timeout,
                min_real=self.min_real,
            )
        except NoAnswer as err:
            self._emit_timeout(trace_id, qname, qtype, str(err))
            return DnsAnswer(name=qname, type=qtype, rcode="TIMEOUT", server=str(self.server))
        rcode = dnslib.RCODE.get(reply.header.rcode)
        answer = DnsAnswer(
            name=qname,
            type=qtype,
            rcode=rcode if isinstance(rcode, str) else f"RCODE{rcode}",
            records=tuple(record_from_rr(rr) for rr in reply.rr),
            server=str(self.server),
        )
        if cache and self._generation() == generation:
            self._store((qname, code), reply, answer, sent_at)
        return answer

    def query_sync(
        self,
        name: str,
        rtype: str | int = "A",
        *,
        trace_id: str | None = None,
        cache: bool = False,
    ) -> DnsAnswer:
        """:meth:`query` from a thread other than the event loop's (blocks;
        a cached answer comes without waking the loop)."""
        if cache:
            hit = self.from_cache(name, rtype, trace_id=trace_id)
            if hit is not None:
                return hit.answer
        loop = self._loop
        if loop is None or loop.is_closed():
            raise RuntimeError(
                "Resolver.query_sync needs the lab's event loop: create the resolver "
                "inside it or await query() once first"
            )
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError("Resolver.query_sync would block the event loop; await query()")
        future = asyncio.run_coroutine_threadsafe(
            self.query(name, rtype, trace_id=trace_id, cache=cache), loop
        )
        # The exchange can take a UDP and a TCP time-out; allow both and a margin.
        lab_wait = lab_timeout(self.clock, self.timeout, self.min_real)
        wait = 2 * self.clock.real_seconds(lab_wait) + 5.0
        return future.result(timeout=wait)

    def _emit_timeout(self, trace_id: str | None, name: str, qtype: str, reason: str) -> None:
        if self.emit is None:
            return
        self.emit(
            trace_id,
            Dns(
                client=str(self.net.address),
                server=str(self.server),
                name=name,
                type=qtype,
                rcode="TIMEOUT",
                answers=[],
                explanation=reason,
            ),
            f"{self.net.address} asked {self.server} {qtype} {name} → no answer ({reason})",
        )
