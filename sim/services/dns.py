"""The lab's DNS servers: authoritative for their zones, one of them also the resolver.

Each node that runs ``dns`` (or ``dnsbl``) listens on port 53, UDP and TCP,
through its :class:`~sim.net.api.NodeNet`, and speaks real DNS (dnslib does the
wire format). One node per lab, the one at ``settings.resolver``, is also the
*recursive resolver* every lab client asks: a question about a zone it does
not hold goes to the lab node that serves the longest matching zone, over the
lab network (so routers and firewalls apply and the trace shows the hop), and
the answer is cached for its TTL in lab time. Real resolvers find that node by
walking down from the root (RFC 1034 §5.3.3); the lab resolver reads it from
the topology, since every lab zone is declared there. It never asks the real
DNS: a name under no lab zone gets NXDOMAIN, with an explanation in the trace.

A node's ``dns`` and ``dnsbl`` services share one listener (:class:`DnsFront`):
each plugs its zones in, the front picks the one that holds the asked name.

Every query answered is a ``dns`` trace event (who asked, what, what came back).

Lab tasks edit the zones through :meth:`DnsServer.control`::

    add          zone, text                 records in zone-file syntax
    remove       zone, name[, rtype][, data]
    replace_zone zone, text                 the whole zone
    records      zone                       the zone's records as text
    flush        [name]                     empty the resolver's cache

Every command but ``records`` also empties the stub cache of every node
(:func:`sim.resolve.forget_stub_caches`), so the next question a node asks
sees the change.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import weakref
from collections.abc import Callable, Iterable
from dataclasses import field, replace
from ipaddress import IPv4Address
from typing import Any, ClassVar, Protocol, cast

import dnslib

from sim.errors import ServiceError
from sim.events import Dns, DnsWire, ServiceFailure
from sim.fastclass import dataclass
from sim.net.api import Endpoint, NodeNet
from sim.resolve import (
    NoAnswer,
    exchange,
    forget_stub_caches,
    generation_path,
    new_query,
    qtype_name,
    record_from_rr,
)
from sim.services.base import NodeContext, Service
from sim.services.zonestore import MAX_CHAIN, ZoneAnswer, ZoneEditError, ZoneStore
from sim.topology.model import Topology
from sim.topology.zones import ZoneSyntaxError, fqdn

__all__ = [
    "CLASSIC_UDP",
    "NOT_LAB_ZONE",
    "DnsCache",
    "DnsFront",
    "DnsServer",
    "ZoneHandler",
    "lab_zones",
    "resolver_address",
]

QTYPE = dnslib.QTYPE
RCODE = dnslib.RCODE

#: RFC 1035 §4.2.1: without EDNS a UDP answer carries at most 512 bytes.
CLASSIC_UDP = 512
#: The largest UDP answer we send when the client offers more (RFC 6891 §6.2.5;
#: DNS Flag Day 2020 suggests 1232, which dig offers by default).
MAX_UDP = 4096
#: How long the resolver waits for an authoritative node (lab seconds), and
#: the real seconds it grants all the servers of a zone together at least
#: (shared among them, asked in turn). Shorter than a stub's wait (3 real
#: seconds at least), so the stub hears SERVFAIL rather than nothing; long
#: enough that a busy machine (a mininet run under load) does not turn a slow
#: answer into SERVFAIL.
UPSTREAM_TIMEOUT = 4.0
UPSTREAM_REAL_BUDGET = 2.0
#: A TCP client that sends nothing for this long (real seconds) is closed
#: (RFC 7766 §6.2.3 suggests seconds). Real time: the client may be a person's dig.
TCP_IDLE = 10.0
#: Negative answers without an SOA are not cached; positive TTLs are capped
#: (RFC 2308 §5 recommends a cap; BIND's max-cache-ttl default is a week).
MAX_CACHE_TTL = 7 * 86400

NOT_LAB_ZONE = "not a lab zone: maillab never asks the real DNS"


class ZoneHandler(Protocol):
    """Authoritative data a front can serve (a :class:`ZoneStore`, a DNSBL zone)."""

    @property
    def origins(self) -> tuple[str, ...]: ...

    def lookup(self, qname: str, qtype: str | int) -> ZoneAnswer: ...


# --- the topology's view of DNS --------------------------------------------


def resolver_address(topology: Topology) -> IPv4Address | None:
    """The address every stub asks (see :meth:`Topology.resolver_address`)."""
    return topology.resolver_address()


def lab_zones(topology: Topology) -> dict[str, list[IPv4Address]]:
    """Every zone a lab node serves (dns zones and dnsbl zones) → its servers."""
    zones: dict[str, list[IPv4Address]] = {}
    for node in topology.hosts():
        if node.ip is None:
            continue
        names: list[str] = []
        if node.services.dns is not None:
            names.extend(node.services.dns.zones)
        if node.services.dnsbl is not None:
            names.append(node.services.dnsbl.zone)
        for name in names:
            zones.setdefault(fqdn(name), []).append(node.ip.ip)
    return zones


def _within(name: str, origin: str) -> bool:
    return origin == "." or name == origin or name.endswith("." + origin)


def _longest(name: str, origins: Iterable[str]) -> str | None:
    best: str | None = None
    for origin in origins:
        if _within(name, origin) and (best is None or len(origin) > len(best)):
            best = origin
    return best


# --- the cache ----------------------------------------------------------------


@dataclass(frozen=True)
class _Cached:
    stored: float
    expires: float
    rcode: str
    answers: tuple[dnslib.RR, ...]
    authority: tuple[dnslib.RR, ...]
    source: str


class DnsCache:
    """Answers the resolver got from other nodes, kept for their TTL in lab time.

    Positive answers live as long as their smallest TTL; negative ones
    (NXDOMAIN, NODATA) as long as the SOA's TTL or minimum, whichever is
    smaller (RFC 2308 §5). A hit hands the records out with the time left as
    their TTL, as a real resolver does (RFC 1035 §4.1.3: TTLs count down).
    """

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._entries: dict[tuple[str, int], _Cached] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(
        self, name: str, qtype: int
    ) -> tuple[str, list[dnslib.RR], list[dnslib.RR], str, int] | None:
        """(rcode, answers, authority, source, seconds left) or None."""
        entry = self._entries.get((name, qtype))
        if entry is None:
            return None
        now = self._now()
        if now >= entry.expires:
            del self._entries[(name, qtype)]
            return None
        age = int(now - entry.stored)

        def aged(rrs: tuple[dnslib.RR, ...]) -> list[dnslib.RR]:
            return [
                dnslib.RR(rr.rname, rr.rtype, rr.rclass, max(0, rr.ttl - age), rr.rdata)
                for rr in rrs
            ]

        left = int(entry.expires - now)
        return entry.rcode, aged(entry.answers), aged(entry.authority), entry.source, left

    def put(
        self,
        name: str,
        qtype: int,
        rcode: str,
        answers: list[dnslib.RR],
        authority: list[dnslib.RR],
        source: str,
    ) -> None:
        if rcode == "NOERROR" and answers:
            ttl = min(int(rr.ttl) for rr in answers)
        elif rcode in ("NOERROR", "NXDOMAIN"):
            soas = [rr for rr in authority if rr.rtype == QTYPE.SOA]
            if not soas:
                return
            ttl = min(int(soas[0].ttl), int(soas[0].rdata.times[4]))
        else:
            return  # failures are not cached here (RFC 2308 §7 allows, briefly)
        ttl = min(ttl, MAX_CACHE_TTL)
        if ttl <= 0:
            return
        now = self._now()
        self._entries[(name, qtype)] = _Cached(
            now, now + ttl, rcode, tuple(answers), tuple(authority), source
        )

    def flush(self, name: str | None = None) -> int:
        """Forget everything, or only the entries for ``name`` and below it."""
        if name is None:
            count = len(self._entries)
            self._entries.clear()
            return count
        target = fqdn(name)
        doomed = [key for key in self._entries if _within(key[0], target)]
        for key in doomed:
            del self._entries[key]
        return len(doomed)


# --- one node's DNS listener -------------------------------------------------


#: The rcode of a question left unanswered on purpose (no reply is sent).
_DROP = "DROP"


@dataclass
class _Resolution:
    rcode: str
    answers: list[dnslib.RR] = field(default_factory=list)
    authority: list[dnslib.RR] = field(default_factory=list)
    authoritative: bool = False
    cached: bool = False
    upstream: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


_FRONTS: weakref.WeakKeyDictionary[NodeNet, DnsFront] = weakref.WeakKeyDictionary()


class DnsFront:
    """The DNS listener of one node (UDP and TCP port 53), shared by its dns
    and dnsbl services, and the lab's recursive resolver on the resolver node."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.handlers: list[ZoneHandler] = []
        #: Questions dropped unanswered (the topology's ``unanswered``).
        self.silent: set[tuple[str, int]] = set()
        self.cache = DnsCache(ctx.clock.now)
        address = ctx.node.ip.ip if ctx.node.ip is not None else ctx.net.address
        self.address: IPv4Address = address
        self.is_resolver = resolver_address(ctx.topology) == address
        self.lab_zones = {
            origin: [a for a in servers if a != address]
            for origin, servers in lab_zones(ctx.topology).items()
        }
        self.endpoints: list[Endpoint] = []
        self._lock = asyncio.Lock()
        self._udp: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._stopped = False

    @classmethod
    def of(cls, ctx: NodeContext) -> DnsFront:
        """The node's front, made on first use (one per node's network)."""
        front = _FRONTS.get(ctx.net)
        if front is None or front._stopped:
            front = cls(ctx)
            _FRONTS[ctx.net] = front
        return front

    # -- life -------------------------------------------------------------

    async def attach(self, handler: ZoneHandler, service: str) -> list[Endpoint]:
        """Serve ``handler``'s zones; the first service to attach starts the
        listeners. Returns the endpoints, named after ``service``."""
        async with self._lock:
            self.handlers.append(handler)
            if not self.endpoints:
                udp = await self.ctx.net.serve_udp(service, 53, lambda: _UdpProtocol(self))
                tcp = await self.ctx.net.serve_tcp(service, 53, self._tcp_protocol)
                self.endpoints = [udp, tcp]
        return [replace(ep, service=service) for ep in self.endpoints]

    async def detach(self, handler: ZoneHandler) -> None:
        """Stop serving ``handler``; the last one out closes the listeners."""
        if handler in self.handlers:
            self.handlers.remove(handler)
        if self.handlers:
            return
        self._stopped = True
        # The front refers to its node's network (through ctx), so the weak
        # key would never die while the front is in the table: take it out,
        # or every stopped lab stays in memory.
        if _FRONTS.get(self.ctx.net) is self:
            del _FRONTS[self.ctx.net]
        if self._udp is not None:
            self._udp.close()
        for writer in list(self._writers):
            writer.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # The TCP listener itself belongs to the backend, which closes it with
        # the node; new connections are closed at once from now on.

    # -- answering ---------------------------------------------------------

    async def answer(
        self, data: bytes, client: IPv4Address, trace_id: str | None, transport: str
    ) -> bytes | None:
        """The reply to one DNS message (None: drop it). Never raises."""
        request = _parse(data)
        if isinstance(request, bytes | None):
            if request is not None:
                self._emit_malformed(client, trace_id, transport)
            return request
        truncated = False
        try:
            reply, resolution = await self._reply(request, trace_id)
            wire: bytes = reply.pack()
            if transport == "udp" and len(wire) > _udp_limit(request):
                # RFC 1035 §4.2.1 / RFC 2181 §9: too big for UDP → TC, and the
                # client asks again over TCP.
                truncated = True
                wire = _truncated(reply).pack()
        except Exception as err:  # a bug must cost one answer, not the server
            resolution = _Resolution("SERVFAIL", notes=[f"internal error: {err!r}"])
            failed = _truncated(request.reply())
            failed.header.tc, failed.header.rcode = 0, RCODE.SERVFAIL
            wire = failed.pack()
        dropped = resolution.rcode == _DROP
        # A dropped question had no reply: none goes into the trace's wire bytes.
        reply = b"" if dropped else wire
        self._emit_query(request, resolution, client, trace_id, transport, truncated, data, reply)
        return None if dropped else wire

    async def _reply(
        self, request: dnslib.DNSRecord, trace_id: str | None
    ) -> tuple[dnslib.DNSRecord, _Resolution]:
        header = request.header
        reply = dnslib.DNSRecord(
            dnslib.DNSHeader(id=header.id, qr=1, opcode=header.opcode, rd=header.rd),
            q=request.q,
        )
        reply.header.ra = 1 if self.is_resolver else 0
        if _edns(request) is not None:
            # RFC 6891 §7: answer an OPT with an OPT.
            reply.add_ar(dnslib.EDNS0(udp_len=MAX_UDP))
        if header.opcode != dnslib.OPCODE.QUERY:
            resolution = _Resolution("NOTIMP", notes=["only standard queries are supported"])
        elif len(request.questions) != 1:
            resolution = _Resolution("FORMERR", notes=["a query asks exactly one question"])
        elif request.q.qclass not in (1, 255):  # IN and ANY (RFC 1035 §3.2.5)
            resolution = _Resolution("REFUSED", notes=["the lab serves class IN only"])
        else:
            resolution = await self.resolve(
                fqdn(str(request.q.qname)), int(request.q.qtype), trace_id
            )
        if resolution.rcode == _DROP:
            return reply, resolution
        reply.header.rcode = getattr(RCODE, resolution.rcode)
        reply.header.aa = 1 if resolution.authoritative else 0
        for rr in resolution.answers:
            reply.add_answer(rr)
        for rr in resolution.authority:
            reply.add_auth(rr)
        return reply, resolution

    async def resolve(self, qname: str, qtype: int, trace_id: str | None) -> _Resolution:
        """Answer ``qname``/``qtype`` from local zones, the cache or the lab
        node that holds the zone, following CNAMEs across zones."""
        result = await self._resolve_one(qname, qtype, trace_id)
        name, seen = qname, {qname}
        while (
            self.is_resolver
            and result.rcode == "NOERROR"
            and qtype not in (QTYPE.CNAME, QTYPE.ANY)
            and len(result.answers) < MAX_CHAIN
        ):
            # RFC 1034 §5.3.3 step 4: an answer that ends in a CNAME to a name
            # in another zone is completed by asking about the target.
            target = _dangling(result.answers, name, qtype)
            if target is None or target in seen:
                break
            seen.add(target)
            name = target
            step = await self._resolve_one(target, qtype, trace_id)
            result.answers.extend(step.answers)
            result.authority = step.authority
            result.rcode = step.rcode  # RFC 6604 §2: the rcode of the last name
            result.cached = result.cached and step.cached
            result.upstream.extend(step.upstream)
            result.notes.extend(step.notes)
        return result

    async def _resolve_one(self, qname: str, qtype: int, trace_id: str | None) -> _Resolution:
        handler, local = self._local(qname)
        remote = _longest(qname, (o for o, servers in self.lab_zones.items() if servers))
        # The most specific zone wins; the resolver may know a deeper zone
        # held by another node (a zone cut the lab does not delegate).
        if (
            handler is not None
            and local is not None
            and (not self.is_resolver or remote is None or len(local) >= len(remote))
        ):
            if (qname, qtype) in self.silent or (qname, QTYPE.ANY) in self.silent:
                return _Resolution(
                    _DROP,
                    notes=[f"{qname} {qtype_name(qtype)}: this server is set never to answer it"],
                )
            found = handler.lookup(qname, qtype)
            notes = [found.explanation] if found.explanation else []
            return _Resolution(
                found.rcode,
                list(found.answers),
                list(found.authority),
                authoritative=found.authoritative,
                notes=notes,
            )
        if not self.is_resolver:
            # RFC 1035 §4.3.1: an authoritative-only server does not recurse;
            # it refuses names outside its zones (as BIND with recursion no).
            return _Resolution(
                "REFUSED",
                notes=[f"{qname} is in none of this server's zones and it is not the lab resolver"],
            )
        if remote is None:
            return _Resolution("NXDOMAIN", notes=[NOT_LAB_ZONE])
        return await self._ask_upstream(remote, qname, qtype, trace_id)

    def _local(self, qname: str) -> tuple[ZoneHandler | None, str | None]:
        best: tuple[ZoneHandler | None, str | None] = (None, None)
        for handler in self.handlers:
            origin = _longest(qname, handler.origins)
            if origin is not None and (best[1] is None or len(origin) > len(best[1])):
                best = (handler, origin)
        return best

    async def _ask_upstream(
        self, zone: str, qname: str, qtype: int, trace_id: str | None
    ) -> _Resolution:
        hit = self.cache.get(qname, qtype)
        if hit is not None:
            rcode, answers, authority, source, left = hit
            return _Resolution(
                rcode,
                answers,
                authority,
                cached=True,
                upstream=[source],
                notes=[f"from the cache ({left}s left)"],
            )
        notes: list[str] = []
        servers = self.lab_zones[zone]
        for server in servers:
            # Iterative question (RD=0): the authoritative node answers from its data.
            request = new_query(qname, qtype, recursion=False)
            try:
                reply, _ = await exchange(
                    self.ctx.net,
                    server,
                    request,
                    clock=self.ctx.clock,
                    trace_id=trace_id,
                    timeout=UPSTREAM_TIMEOUT,
                    min_real=UPSTREAM_REAL_BUDGET / len(servers),
                )
            except NoAnswer as err:
                notes.append(f"{server}, which serves {zone}, did not answer: {err}")
                continue
            rcode = RCODE.get(reply.header.rcode)
            if rcode not in ("NOERROR", "NXDOMAIN"):
                notes.append(f"{server}, which serves {zone}, answered {rcode}")
                continue
            answers, authority = list(reply.rr), list(reply.auth)
            self.cache.put(qname, qtype, str(rcode), answers, authority, str(server))
            return _Resolution(str(rcode), answers, authority, upstream=[str(server)])
        # RFC 2308 §7.1: no server answered → SERVFAIL.
        return _Resolution("SERVFAIL", upstream=[str(a) for a in self.lab_zones[zone]], notes=notes)

    # -- the trace ---------------------------------------------------------

    def _emit_query(
        self,
        request: dnslib.DNSRecord,
        res: _Resolution,
        client: IPv4Address,
        trace_id: str | None,
        transport: str,
        truncated: bool,
        query: bytes = b"",
        reply: bytes = b"",
    ) -> None:
        name = fqdn(str(request.q.qname)) if request.questions else ""
        qtype = qtype_name(int(request.q.qtype)) if request.questions else ""
        answers = [record_from_rr(rr).to_json() for rr in res.answers]
        # Both DNS messages as they went on the wire (base64), for --pcap.
        wire: DnsWire | None = (
            {"query": base64.b64encode(query).decode(), "reply": base64.b64encode(reply).decode()}
            if query and reply
            else None
        )
        data = Dns(
            client=str(client),
            server=str(self.address),
            name=name,
            type=qtype,
            rcode=res.rcode,
            answers=answers,
            authoritative=res.authoritative,
            cached=res.cached,
            transport=transport,
            truncated=truncated,
            upstream=res.upstream or None,
            wire=wire,
            explanation="; ".join(res.notes) if res.notes else None,
        )
        summary = f"{client} asked {self.address} {qtype} {name} → {_describe(res, qtype)}"
        extras = []
        if res.upstream and not res.cached and res.rcode != "SERVFAIL":
            extras.append(f"answered by {', '.join(res.upstream)}")
        if res.cached:
            extras.append("from the cache")
        if truncated:
            extras.append("too big for UDP: truncated, retry over TCP")
        if res.rcode in ("NXDOMAIN", "REFUSED", "SERVFAIL") and res.notes:
            extras.append(res.notes[-1])
        if extras:
            summary += f" ({'; '.join(extras)})"
        self.ctx.record(trace_id, data, summary)

    def _emit_malformed(self, client: IPv4Address, trace_id: str | None, transport: str) -> None:
        self.ctx.record(
            trace_id,
            Dns(
                client=str(client),
                server=str(self.address),
                name="",
                type="",
                rcode="FORMERR",
                answers=[],
                transport=transport,
                explanation="the message could not be parsed (RFC 1035 §4.1.1: FORMERR)",
            ),
            f"{client} sent {self.address} a malformed DNS message → FORMERR",
        )

    # -- transports --------------------------------------------------------

    def spawn(self, coro: Any) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _tcp_protocol(self) -> asyncio.BaseProtocol:
        reader = asyncio.StreamReader(limit=2**17)
        return asyncio.StreamReaderProtocol(reader, self._serve_tcp)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # RFC 1035 §4.2.2 / RFC 7766 §6.2.1: each message is preceded by its
        # two-byte length; a client may send several on one connection.
        if self._stopped:
            writer.close()
            return
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            peer = self.ctx.net.peer(writer.transport)
            while True:
                try:
                    async with asyncio.timeout(TCP_IDLE):
                        (length,) = struct.unpack("!H", await reader.readexactly(2))
                        data = await reader.readexactly(length)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                wire = await self.answer(data, peer.address, peer.trace_id, "tcp")
                if wire is None:
                    return
                writer.write(struct.pack("!H", len(wire)) + wire)
                await writer.drain()
        except ConnectionError:
            return
        except Exception as err:  # never let one client take the server down
            self.ctx.record(
                None,
                ServiceFailure(service="dns", error=repr(err)),
                f"DNS over TCP failed: {err!r}",
            )
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)
            writer.close()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, front: DnsFront) -> None:
        self.front = front
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (asyncio's selector transport for UDP does not subclass DatagramTransport.)
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.front._udp = self.transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.front._stopped:
            return
        self.front.spawn(self._handle(data, addr))

    async def _handle(self, data: bytes, addr: Any) -> None:
        transport = self.transport
        if transport is None:
            return
        try:
            peer = self.front.ctx.net.peer(transport, addr)
            wire = await self.front.answer(data, peer.address, peer.trace_id, "udp")
        except Exception as err:  # never let one datagram take the server down
            self.front.ctx.record(
                None,
                ServiceFailure(service="dns", error=repr(err)),
                f"DNS over UDP failed: {err!r}",
            )
            return
        if wire is not None and not transport.is_closing():
            transport.sendto(wire, addr)


# --- wire helpers -------------------------------------------------------------


def _parse(data: bytes) -> dnslib.DNSRecord | bytes | None:
    """A request, or the bytes of a FORMERR reply, or None to drop it."""
    try:
        request = dnslib.DNSRecord.parse(data)
    except Exception:  # dnslib raises many kinds on garbage; all mean "malformed"
        if len(data) < 12:
            return None  # not even a header: nothing to answer to
        try:
            header = dnslib.DNSHeader.parse(dnslib.Buffer(data[:12]))
        except Exception:
            return None
        if header.qr:
            return None  # never answer an answer (loops)
        # RFC 1035 §4.1.1: FORMERR, the format error, echoing the id.
        reply = dnslib.DNSHeader(id=header.id, qr=1, opcode=header.opcode, rcode=RCODE.FORMERR)
        return bytes(dnslib.DNSRecord(reply).pack())
    if request.header.qr:
        return None
    return request


def _edns(request: dnslib.DNSRecord) -> dnslib.RR | None:
    return next((rr for rr in request.ar if rr.rtype == QTYPE.OPT), None)


def _udp_limit(request: dnslib.DNSRecord) -> int:
    opt = _edns(request)
    if opt is None:
        return CLASSIC_UDP
    # RFC 6891 §6.2.3/§6.2.5: the requestor's payload size, never below 512.
    return max(CLASSIC_UDP, min(int(opt.rclass), MAX_UDP))


def _truncated(reply: dnslib.DNSRecord) -> dnslib.DNSRecord:
    header = reply.header
    out = dnslib.DNSRecord(
        dnslib.DNSHeader(
            id=header.id,
            qr=1,
            opcode=header.opcode,
            aa=header.aa,
            tc=1,
            rd=header.rd,
            ra=header.ra,
            rcode=header.rcode,
        ),
        q=reply.q,
    )
    for rr in reply.ar:
        if rr.rtype == QTYPE.OPT:
            out.add_ar(rr)
    return out


def _dangling(answers: list[dnslib.RR], qname: str, qtype: int) -> str | None:
    """The target of a CNAME chain in ``answers`` that has no answer yet."""
    name = qname
    for _ in range(MAX_CHAIN):
        cname = next(
            (rr for rr in answers if rr.rtype == QTYPE.CNAME and fqdn(str(rr.rname)) == name),
            None,
        )
        if cname is None:
            break
        name = fqdn(str(cname.rdata.label))
    if name == qname:
        return None
    if any(fqdn(str(rr.rname)) == name and rr.rtype == qtype for rr in answers):
        return None
    return name


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _describe(res: _Resolution, qtype: str) -> str:
    if res.rcode == "NOERROR":
        if not res.answers:
            return f"NOERROR, no {qtype} record (NODATA)"
        shown = [
            f"{qtype_name(rr.rtype)} {_short(record_from_rr(rr).data)}" for rr in res.answers[:4]
        ]
        more = len(res.answers) - len(shown)
        return ", ".join(shown) + (f" and {more} more" if more > 0 else "")
    if res.rcode == "NXDOMAIN":
        return "NXDOMAIN (no such name)"
    if res.rcode == _DROP:
        return "no answer (the server is set never to answer this question)"
    return str(res.rcode)


# --- the service --------------------------------------------------------------


class DnsServer(Service):
    """Authoritative DNS for the node's zones (and the lab resolver on the
    resolver node)."""

    kind: ClassVar[str] = "dns"

    def __init__(self, ctx: NodeContext) -> None:
        super().__init__(ctx)
        config = ctx.node.services.dns
        if config is None:
            raise ServiceError(f"{ctx.node.name} has no dns service")
        zones: dict[str, str] = {}
        for zone in config.zones:
            try:
                zones[zone] = ctx.topology.zone_text(zone)
            except KeyError:
                zones[zone] = ""  # a zone with no records of its own: SOA and NS only
        try:
            self.store = ZoneStore(
                zones,
                server_name=ctx.node.name,
                server_address=ctx.node.ip.ip if ctx.node.ip is not None else None,
            )
        except ZoneSyntaxError as err:
            raise ServiceError(f"{ctx.node.name}: a zone does not load: {err}") from err
        self.front: DnsFront | None = None

    async def start(self) -> list[Endpoint]:
        self.front = DnsFront.of(self.ctx)
        config = self.ctx.node.services.dns
        if config is not None:
            self.front.silent |= {
                (fqdn(s.name), int(getattr(QTYPE, s.type))) for s in config.unanswered
            }
        return await self.front.attach(self.store, self.kind)

    async def stop(self) -> None:
        if self.front is not None:
            await self.front.detach(self.store)
            self.front = None

    async def control(self, command: str, **args: Any) -> dict[str, Any]:
        """Edit a zone or the cache; see the module docstring for commands."""
        try:
            return self._control(command, args)
        except (ZoneSyntaxError, ZoneEditError, ValueError) as err:
            zone = args.get("zone", args.get("origin", ""))
            where = f"{self.ctx.node.name} dns {command}" + (f" {zone}" if zone else "")
            raise ServiceError(f"{where}: {err}") from err

    def _control(self, command: str, args: dict[str, Any]) -> dict[str, Any]:
        if command == "flush":
            name = args.get("name")
            flushed = self.front.cache.flush(name) if self.front is not None else 0
            # The nodes' own caches too (the stub caches of sim.resolve), or
            # they would keep the answer the resolver just forgot.
            self._forget_stub_caches()
            return {"flushed": flushed}
        if command not in ("add", "remove", "replace_zone", "records"):
            raise ServiceError(
                f"dns has no control command {command!r} "
                "(add, remove, replace_zone, records, flush)"
            )
        zone = _required(args, "zone", "origin")
        if command == "add":
            added = self.store.add(zone, _required(args, "text"))
            result: dict[str, Any] = {"added": added}
        elif command == "remove":
            rtype = args.get("rtype", args.get("type"))
            removed = self.store.remove(zone, _required(args, "name"), rtype, args.get("data"))
            result = {"removed": removed}
        elif command == "replace_zone":
            self.store.replace_zone(zone, _required(args, "text"))
            result = {"replaced": True}
        else:
            text = self.store.zone_text(zone)
            result = {"records": text.splitlines(), "text": text}
        if command != "records":
            # An edit: no node may answer the next question from its own
            # cache (the lab resolver's cache is the lab's to flush, or not:
            # a lab with dns_cache "ttl" keeps it).
            self._forget_stub_caches()
        return {"zone": fqdn(zone), "serial": self.store.serial(zone), **result}

    def _forget_stub_caches(self) -> None:
        forget_stub_caches(self.ctx.clock, generation_path(self.ctx.state_dir))


def _required(args: dict[str, Any], *names: str) -> str:
    for name in names:
        value = args.get(name)
        if value is not None:
            return str(value)
    raise ValueError(f"missing argument {names[0]!r}")
