"""The local backend's network: a node's view of the lab, on 127.0.0.1.

The local backend (:mod:`sim.hosting.local`) runs a whole lab in one process
without root. Each service listens on 127.0.0.1 at a free port;
:class:`~sim.net.registry.LoopbackRegistry` maps lab addresses to those ports
and tells servers the lab address of each client. The network layer is
simulated from the topology: routing and router firewalls are decided by
:mod:`sim.topology.firewall` (the same rules the mininet backend compiles to
iptables), and their effects are reproduced for real:

* drop → the client waits the lab's connect time-out (scaled by the lab
  clock), then fails with a time-out, as a SYN into the void would;
* reject → refused at once (TCP reset) or host unreachable (ICMP);
* no route, or an address outside the lab → unreachable. Nothing is ever
  sent to an address other than 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import weakref
from ipaddress import IPv4Address
from typing import Any, Protocol

from sim.clock import LabClock
from sim.errors import ServiceError
from sim.events import Net
from sim.net.api import (
    Dropped,
    Endpoint,
    NodeNet,
    Peer,
    ProtocolFactory,
    Refused,
    Unreachable,
)
from sim.net.backlog import listen_backlog
from sim.net.registry import ClientEntry, LoopbackRegistry, Proto
from sim.net.wirelog import WireConnection, WireLog
from sim.topology.firewall import Packet, PacketProto, Verdict, evaluate
from sim.topology.graph import LabNetwork
from sim.topology.model import Topology
from sim.trace import TraceEvent, event

__all__ = ["LOOPBACK", "LocalNodeNet", "LoopbackLab"]

LOOPBACK = "127.0.0.1"


class LoopbackLab(Protocol):
    """What a :class:`LocalNodeNet` uses of the lab it belongs to (the local
    backend): the network that decides verdicts, the loopback registry, the
    lab clock, the trace, and the node real programs on this machine speak for."""

    network: LabNetwork
    topology: Topology
    registry: LoopbackRegistry
    clock: LabClock
    as_address: IPv4Address
    #: While ``up --pcap`` runs: the conversations of real programs.
    wire_log: WireLog | None

    def emit(self, trace_id: str | None, event: TraceEvent) -> None: ...


def _proto(transport: asyncio.BaseTransport) -> Proto:
    """The transport protocol of a server-side transport. (asyncio's UDP
    transport does not subclass DatagramTransport: ask its socket. A TLS
    transport reports the socket of the TCP transport under it.)"""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.type == socket.SOCK_DGRAM:
        return "udp"
    return "tcp"


class LocalNodeNet(NodeNet):
    """The lab network as seen from one node, realised on loopback."""

    def __init__(self, backend: LoopbackLab, node: str, address: IPv4Address) -> None:
        self.backend = backend
        self.node = node
        self.address = address
        self._servers: list[asyncio.AbstractServer] = []
        self._transports: list[asyncio.BaseTransport] = []
        self._listening: list[tuple[IPv4Address, str, int]] = []

    # -- the path ---------------------------------------------------------

    def _judge(
        self, dst: IPv4Address, proto: PacketProto, port: int, trace_id: str | None
    ) -> Verdict:
        verdict = evaluate(self.backend.network, self.node, Packet(self.address, dst, proto, port))
        self.backend.emit(
            trace_id,
            event(
                round(self.backend.clock.now(), 3),
                verdict.router or self.node,
                verdict.explain(),
                verdict.event(),
            ),
        )
        return verdict

    async def _enforce(
        self, verdict: Verdict, dst: IPv4Address, port: int, timeout: float | None
    ) -> None:
        where = f"{dst}:{port}"
        if verdict.action == "drop":
            # The SYN vanishes: the client learns nothing until its timer fires.
            wait = (
                timeout if timeout is not None else self.backend.topology.settings.connect_timeout
            )
            await self.backend.clock.sleep(wait)
            raise Dropped(f"connection to {where} timed out ({verdict.explain()})", verdict)
        if verdict.action == "reject":
            if verdict.reject_with == "tcp-reset":
                raise Refused(f"connection to {where} refused ({verdict.explain()})", verdict)
            raise Unreachable(f"{where}: host unreachable ({verdict.explain()})", verdict)
        if verdict.action == "unreachable":
            raise Unreachable(f"{where}: {verdict.explain()}", verdict)

    async def connect(
        self,
        dst: IPv4Address,
        port: int,
        *,
        trace_id: str | None = None,
        timeout: float | None = None,
    ) -> socket.socket:
        verdict = self._judge(dst, "tcp", port, trace_id)
        await self._enforce(verdict, dst, port, timeout)
        local_port = self.backend.registry.listener(dst, "tcp", port)
        if local_port is None:
            self.backend.emit(
                trace_id,
                event(
                    round(self.backend.clock.now(), 3),
                    self.node,
                    f"{dst}:{port} answered with a reset: nothing listens there",
                    Net(
                        src=str(self.address),
                        dst=str(dst),
                        proto="tcp",
                        port=port,
                        verdict="closed",
                    ),
                ),
            )
            raise Refused(f"connection to {dst}:{port} refused: nothing listens there", verdict)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.bind((LOOPBACK, 0))
            self.backend.registry.register_client(
                "tcp",
                sock.getsockname(),
                ClientEntry(self.node, self.address, trace_id, weakref.ref(sock)),
            )
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, (LOOPBACK, local_port))
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
        verdict = self._judge(dst, "udp", port, trace_id)
        await self._enforce(verdict, dst, port, timeout)
        local_port = self.backend.registry.listener(dst, "udp", port)
        if local_port is None:
            # ICMP port unreachable comes back to a connected UDP socket.
            raise Refused(f"{dst}:{port}/udp: port unreachable", verdict)
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.bind((LOOPBACK, 0))
            name = sock.getsockname()
            self.backend.registry.register_client(
                "udp", name, ClientEntry(self.node, self.address, trace_id)
            )
            sock.connect((LOOPBACK, local_port))
            await loop.sock_sendall(sock, payload)
            real = self.backend.clock.real_seconds(timeout)
            try:
                return await asyncio.wait_for(loop.sock_recv(sock, 65535), real)
            except TimeoutError:
                raise Dropped(f"no answer from {dst}:{port}/udp", verdict) from None
        finally:
            self.backend.registry.forget_client("udp", sock.getsockname())
            sock.close()

    # -- serving ----------------------------------------------------------

    async def serve_tcp(self, service: str, port: int, factory: ProtocolFactory) -> Endpoint:
        loop = asyncio.get_running_loop()
        server = None
        twin = self.backend.registry.listener(self.address, "udp", port)
        if twin is not None:
            # Same loopback port number as the UDP twin: dig retries a
            # truncated UDP answer over TCP on the same port (RFC 7766 §5).
            with contextlib.suppress(OSError):
                server = await loop.create_server(factory, LOOPBACK, twin, backlog=listen_backlog())
        if server is None:
            server = await loop.create_server(factory, LOOPBACK, 0, backlog=listen_backlog())
        local_port = server.sockets[0].getsockname()[1]
        self._register(service, "tcp", port, local_port)
        self._servers.append(server)
        return Endpoint(
            self.node, service, "tcp", f"{self.address}:{port}", f"{LOOPBACK}:{local_port}"
        )

    async def serve_udp(self, service: str, port: int, factory: ProtocolFactory) -> Endpoint:
        loop = asyncio.get_running_loop()
        transport = None
        twin = self.backend.registry.listener(self.address, "tcp", port)
        if twin is not None:
            with contextlib.suppress(OSError):
                transport, _ = await loop.create_datagram_endpoint(
                    factory, local_addr=(LOOPBACK, twin)
                )
        if transport is None:
            transport, _ = await loop.create_datagram_endpoint(factory, local_addr=(LOOPBACK, 0))
        local_port = transport.get_extra_info("sockname")[1]
        self._register(service, "udp", port, local_port)
        self._transports.append(transport)
        return Endpoint(
            self.node, service, "udp", f"{self.address}:{port}", f"{LOOPBACK}:{local_port}"
        )

    def _register(self, service: str, proto: Any, port: int, local_port: int) -> None:
        try:
            self.backend.registry.listen(
                self.address, proto, port, local_port, f"{self.node}/{service}"
            )
        except ValueError as err:
            raise ServiceError(f"{self.node}: {err}") from None
        self._listening.append((self.address, proto, port))

    async def unserve(self, endpoint: Endpoint) -> None:
        address, _, port = endpoint.lab.rpartition(":")
        key = (IPv4Address(address), endpoint.proto, int(port))
        local_port = self.backend.registry.listener(*key)
        self.backend.registry.unlisten(*key)
        if key in self._listening:
            self._listening.remove(key)
        # A TCP listener and its UDP twin may share a port number: match the protocol.
        if endpoint.proto == "tcp":
            for server in list(self._servers):
                if any(s.getsockname()[1] == local_port for s in getattr(server, "sockets", ())):
                    server.close()  # established connections are not touched
                    self._servers.remove(server)
        else:
            for transport in list(self._transports):
                if transport.get_extra_info("sockname")[1] == local_port:
                    transport.close()
                    self._transports.remove(transport)

    def peer(self, transport: asyncio.BaseTransport, addr: Any = None) -> Peer:
        peername = addr if addr is not None else transport.get_extra_info("peername")
        # TCP and UDP port spaces differ: look the client up in its own.
        proto = _proto(transport)
        entry = self.backend.registry.client(proto, peername)
        port = int(peername[1]) if peername else 0
        if entry is None:
            # A real program on this machine (swaks, dig): it speaks for --as.
            return Peer(self.backend.as_address, port, None, outside=True)
        return Peer(entry.address, port, entry.trace_id)

    def record(self, transport: asyncio.BaseTransport, peer: Peer) -> WireConnection | None:
        log = self.backend.wire_log
        if log is None or not peer.outside:
            return None
        # The lab port the client meant (25, 587...), not the loopback port
        # the service really listens on.
        sockname = transport.get_extra_info("sockname")
        local_port = int(sockname[1]) if sockname else 0
        lab_port = next(
            (
                port
                for address, proto, port in self._listening
                if proto == "tcp"
                and self.backend.registry.listener(address, "tcp", port) == local_port
            ),
            local_port,
        )
        return log.open(peer.address, peer.port, self.address, lab_port)

    async def close(self) -> None:
        for address, proto, port in self._listening:
            self.backend.registry.unlisten(address, proto, port)  # type: ignore[arg-type]
        for server in self._servers:
            server.close()
        for transport in self._transports:
            transport.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        self._servers.clear()
        self._transports.clear()
