"""A minimal :class:`~sim.net.api.NodeNet` over 127.0.0.1 for service tests.

No routing and no firewall: every lab address reaches every other. What it
does keep from a real backend is what the DNS services depend on:

* each listener binds 127.0.0.1 port 0; a shared table maps
  (lab address, proto, lab port) → that loopback port;
* a client binds its socket first and registers its loopback address with its
  lab address and trace id, so a server's ``peer()`` can tell who asks;
* time-outs are lab seconds, turned into real seconds by the lab clock.

:class:`DoubleLab` also builds :class:`~sim.services.base.NodeContext` objects
for hand-made topologies, so a test can start services on several nodes.
"""

from __future__ import annotations

import asyncio
import socket
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from sim.clock import LabClock
from sim.net.api import Endpoint, NodeNet, Peer, ProtocolFactory, Refused
from sim.resolve import Resolver
from sim.services.base import NodeContext
from sim.topology.model import Topology
from sim.trace import TraceHub

__all__ = ["DoubleLab", "DoubleNet"]

LOOPBACK = "127.0.0.1"
#: Where a real program on this machine (dig) appears to come from.
OUTSIDE = IPv4Address("192.0.2.200")


class DoubleLab:
    """The shared address table of one test lab, and its clock and hub."""

    def __init__(
        self,
        topology: Topology,
        state_dir: Path,
        *,
        time_scale: float | None = None,
        outside: IPv4Address = OUTSIDE,
    ) -> None:
        self.topology = topology
        self.state_dir = state_dir
        self.clock = LabClock(time_scale or topology.settings.time_scale)
        self.hub = TraceHub()
        self.outside = outside
        self.listeners: dict[tuple[IPv4Address, str, int], int] = {}
        self.clients: dict[tuple[str, int], tuple[IPv4Address, str | None]] = {}
        self.nets: dict[str, DoubleNet] = {}
        self.contexts: dict[str, NodeContext] = {}
        self._closers: list[Any] = []

    def net(self, node: str) -> DoubleNet:
        if node not in self.nets:
            ip = self.topology.node(node).ip
            assert ip is not None, f"{node} has no address"
            self.nets[node] = DoubleNet(self, node, ip.ip)
        return self.nets[node]

    def context(self, node: str) -> NodeContext:
        """A node's context (one per node, as in a backend), its stub resolver
        pointed at ``settings.resolver``. Make it on the event loop: the
        resolver's ``query_sync`` uses the loop it was made on."""
        if node in self.contexts:
            return self.contexts[node]
        net = self.net(node)
        resolver_ip = self.topology.settings.resolver
        assert resolver_ip is not None
        ctx = NodeContext(
            topology=self.topology,
            network=None,  # type: ignore[arg-type]  # the DNS services do not use the graph
            node=self.topology.node(node),
            net=net,
            clock=self.clock,
            hub=self.hub,
            state_dir=self.state_dir,
            resolver=None,  # type: ignore[arg-type]  # set below: it needs ctx.record
            ca=None,  # type: ignore[arg-type]  # no TLS in DNS
        )
        ctx.resolver = Resolver(net, resolver_ip, self.clock, emit=ctx.record)
        self.contexts[node] = ctx
        return ctx

    def loopback_port(self, address: IPv4Address | str, proto: str, port: int) -> int:
        return self.listeners[(IPv4Address(str(address)), proto, port)]

    async def close(self) -> None:
        for closer in reversed(self._closers):
            closer.close()
        for closer in self._closers:
            if isinstance(closer, asyncio.AbstractServer):
                await closer.wait_closed()
        self._closers.clear()
        self.listeners.clear()


class DoubleNet(NodeNet):
    """One node's view of the :class:`DoubleLab`."""

    def __init__(self, lab: DoubleLab, node: str, address: IPv4Address) -> None:
        self.lab = lab
        self.node = node
        self.address = address

    def _target(self, dst: IPv4Address, proto: str, port: int) -> int:
        local = self.lab.listeners.get((dst, proto, port))
        if local is None:
            raise Refused(f"{dst}:{port}/{proto}: nothing listens there")
        return local

    async def connect(
        self,
        dst: IPv4Address,
        port: int,
        *,
        trace_id: str | None = None,
        timeout: float | None = None,
    ) -> socket.socket:
        local = self._target(dst, "tcp", port)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.bind((LOOPBACK, 0))
            self.lab.clients[("tcp", sock.getsockname()[1])] = (self.address, trace_id)
            real = self.lab.clock.real_seconds(
                timeout or self.lab.topology.settings.connect_timeout
            )
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(loop.sock_connect(sock, (LOOPBACK, local)), real)
        except BaseException:
            sock.close()
            raise
        return sock

    async def udp_exchange(
        self,
        dst: IPv4Address,
        port: int,
        payload: bytes,
        *,
        trace_id: str | None = None,
        timeout: float = 5.0,
    ) -> bytes:
        local = self._target(dst, "udp", port)
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        key: tuple[str, int] | None = None
        try:
            sock.bind((LOOPBACK, 0))
            key = ("udp", sock.getsockname()[1])
            self.lab.clients[key] = (self.address, trace_id)
            sock.connect((LOOPBACK, local))
            await loop.sock_sendall(sock, payload)
            real = self.lab.clock.real_seconds(timeout)
            return await asyncio.wait_for(loop.sock_recv(sock, 65535), real)
        finally:
            if key is not None:
                self.lab.clients.pop(key, None)
            sock.close()

    async def serve_tcp(self, service: str, port: int, factory: ProtocolFactory) -> Endpoint:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(factory, LOOPBACK, 0)
        local = server.sockets[0].getsockname()[1]
        self._listen("tcp", port, local)
        self.lab._closers.append(server)
        return Endpoint(self.node, service, "tcp", f"{self.address}:{port}", f"{LOOPBACK}:{local}")

    async def serve_udp(self, service: str, port: int, factory: ProtocolFactory) -> Endpoint:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(factory, local_addr=(LOOPBACK, 0))
        local = transport.get_extra_info("sockname")[1]
        self._listen("udp", port, local)
        self.lab._closers.append(transport)
        return Endpoint(self.node, service, "udp", f"{self.address}:{port}", f"{LOOPBACK}:{local}")

    def _listen(self, proto: str, port: int, local: int) -> None:
        key = (self.address, proto, port)
        if key in self.lab.listeners:
            raise OSError(f"{self.address}:{port}/{proto} is already in use")
        self.lab.listeners[key] = local

    def peer(self, transport: asyncio.BaseTransport, addr: Any = None) -> Peer:
        proto = "udp" if addr is not None else "tcp"
        peername = addr if addr is not None else transport.get_extra_info("peername")
        port = int(peername[1])
        entry = self.lab.clients.get((proto, port))
        if entry is None:
            # Someone on this machine (dig): the neutral outside host.
            return Peer(self.lab.outside, port, None)
        return Peer(entry[0], port, entry[1])


# --- a DNS lab for the tests: DESIGN.md's example and a little more ---------

QQ_ZONE = """\
@      MX  10 mx
mx     A   203.0.113.25
@      TXT "v=spf1 mx -all"
_dmarc TXT "v=DMARC1; p=reject"
www    CNAME web
web    CNAME mx
out    CNAME www.other.example.
dkim._domainkey TXT "v=DKIM1; k=rsa; " "p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC"
*.wild A 192.0.2.99
"""

REVERSE_ZONE = """\
25     PTR mx.qq.example.
"""

OTHER_ZONE = """\
www          A  203.0.113.80
short 3600   A  203.0.113.81
"""


def big_zone(count: int = 8, size: int = 200) -> str:
    """Many long TXT records at the apex: the answer needs more than 512 bytes."""
    return "".join(f'@ TXT "{i:02d}{"x" * (size - 2)}"\n' for i in range(count))


def dns_topology(listed: tuple[Any, ...] | None = None) -> Topology:
    """``laptop`` (a client), ``ns`` (the resolver, DESIGN.md's zones and
    big.example), ``ns2`` (other.example and the DNSBL zen.dnsbl.example on
    one port)."""
    from ipaddress import IPv4Interface, IPv4Network

    from sim.topology.model import (
        DnsblListing,
        DnsblService,
        DnsService,
        Node,
        Services,
        Settings,
    )

    if listed is None:
        listed = (
            DnsblListing(
                IPv4Network("100.64.0.0/10"),
                IPv4Address("127.0.0.11"),
                "residential range, see https://dnsbl.example/query/$",
            ),
            DnsblListing(IPv4Network("203.0.113.66/32"), IPv4Address("127.0.0.2"), "spam source"),
        )
    return Topology(
        name="dns-test",
        settings=Settings(time_scale=60.0, resolver=IPv4Address("198.51.100.53")),
        nodes=(
            Node("isp", "router"),
            Node("internet", "router"),
            Node("laptop", "host", ip=IPv4Interface("100.64.10.20/24"), gateway="isp"),
            Node(
                "ns",
                "host",
                ip=IPv4Interface("198.51.100.53/24"),
                gateway="internet",
                services=Services(
                    dns=DnsService(zones=("qq.example", "113.0.203.in-addr.arpa", "big.example"))
                ),
            ),
            Node(
                "ns2",
                "host",
                ip=IPv4Interface("203.0.113.53/24"),
                gateway="internet",
                services=Services(
                    dns=DnsService(zones=("other.example",)),
                    dnsbl=DnsblService(zone="zen.dnsbl.example", listed=listed),
                ),
            ),
        ),
        links=(("isp", "internet"),),
        zones=(
            ("qq.example", QQ_ZONE),
            ("113.0.203.in-addr.arpa", REVERSE_ZONE),
            ("big.example", big_zone()),
            ("other.example", OTHER_ZONE),
        ),
    )


class DnsLab:
    """Every dns and dnsbl service of a topology running on a :class:`DoubleLab`."""

    def __init__(self, topology: Topology, state_dir: Path) -> None:
        self.lab = DoubleLab(topology, state_dir)
        self.services: dict[tuple[str, str], Any] = {}
        self.endpoints: list[Endpoint] = []

    async def start(self) -> DnsLab:
        from sim.services.dns import DnsServer
        from sim.services.dnsbl import DnsblServer

        self.lab.clock.bind(asyncio.get_running_loop())
        for node in self.lab.topology.hosts():
            ctx = self.lab.context(node.name)
            for kind, cls in (("dns", DnsServer), ("dnsbl", DnsblServer)):
                if getattr(node.services, kind) is None:
                    continue
                service = cls(ctx)
                ctx.services[kind] = service
                self.services[(node.name, kind)] = service
        # Like the backend's start wave: dns and dnsbl start together.
        for endpoints in await asyncio.gather(*(s.start() for s in self.services.values())):
            self.endpoints.extend(endpoints)
        return self

    def resolver(self, node: str) -> Resolver:
        return self.lab.context(node).resolver

    def service(self, node: str, kind: str) -> Any:
        return self.services[(node, kind)]

    def port(self, node: str, proto: str = "udp") -> int:
        ip = self.lab.topology.node(node).ip
        assert ip is not None
        return self.lab.loopback_port(ip.ip, proto, 53)

    async def stop(self) -> None:
        for service in self.services.values():
            await service.stop()
        await self.lab.close()
