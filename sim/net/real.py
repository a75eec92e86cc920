"""NodeNet on real sockets, inside a node's network namespace (mininet).

The kernel routes and the routers' iptables rules filter: nothing here
simulates the network. What this adds is the lab's view of what happened:
before connecting, the verdict :mod:`sim.topology.firewall` predicts from the
topology (the very rules compiled into iptables) names the router and rule
that explain a time-out or a refusal; the trace records what the kernel
actually reported beside it, so a difference between the two backends shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from ipaddress import IPv4Address
from typing import Any

from sim.clock import LabClock
from sim.net.api import Dropped, Endpoint, NodeNet, Peer, ProtocolFactory, Refused, Unreachable
from sim.net.backlog import listen_backlog
from sim.net.shared import ConnTags
from sim.topology.firewall import Packet, Verdict, evaluate
from sim.topology.graph import LabNetwork
from sim.trace import TraceHub, event

__all__ = ["MIN_ACCEPTED_WAIT", "RealNodeNet"]

#: Real seconds a connection the firewall accepts may take to be answered.
MIN_ACCEPTED_WAIT = 5.0


class RealNodeNet(NodeNet):
    def __init__(
        self, network: LabNetwork, node: str, clock: LabClock, hub: TraceHub, tags: ConnTags
    ) -> None:
        self.network = network
        self.node = node
        self.address = network.address_of(node)
        self.clock = clock
        self.hub = hub
        self.tags = tags
        self._servers: list[asyncio.AbstractServer] = []
        self._transports: list[asyncio.BaseTransport] = []

    def trace_of(self, address: str, port: int) -> str | None:
        return self.tags.lookup(address, port)

    @staticmethod
    def _message_key(message_id: str) -> str:
        import hashlib

        return "msg-" + hashlib.sha256(message_id.strip().strip("<>").encode()).hexdigest()[:32]

    def tag_message(self, message_id: str, trace_id: str) -> None:
        self.tags.tag(self._message_key(message_id), 0, trace_id)

    def trace_of_message(self, message_id: str) -> str | None:
        return self.tags.lookup(self._message_key(message_id), 0)

    def _predict(self, dst: IPv4Address, proto: str, port: int) -> Verdict:
        return evaluate(self.network, self.node, Packet(self.address, dst, proto, port))  # type: ignore[arg-type]

    def _emit(
        self,
        trace_id: str | None,
        verdict: Verdict,
        dst: IPv4Address,
        proto: str,
        port: int,
        observed: str,
    ) -> None:
        self.hub.emit(
            trace_id,
            event(
                round(self.clock.now(), 3),
                verdict.router or self.node,
                verdict.explain(),
                verdict.event(observed),
            ),
        )

    async def connect(
        self,
        dst: IPv4Address,
        port: int,
        *,
        trace_id: str | None = None,
        timeout: float | None = None,
    ) -> socket.socket:
        verdict = self._predict(dst, "tcp", port)
        if not self.network.in_lab(dst):
            # Never let a packet leave for an address outside the lab.
            self._emit(trace_id, verdict, dst, "tcp", port, "not sent")
            raise Unreachable(f"{dst}: not an address of this lab", verdict)
        wait = timeout if timeout is not None else self.network.topology.settings.connect_timeout
        real_wait = self.clock.real_seconds(wait)
        if verdict.action == "accept":
            # Nothing on the path drops it, so the kernel answers at once (a
            # SYN-ACK, or a reset from a closed port). Only a starved machine
            # is slow: never give up on such a connection sooner than this,
            # or load alone could turn it into a time-out the local backend
            # would never show. Dropped connections keep the scaled wait.
            real_wait = max(real_wait, MIN_ACCEPTED_WAIT)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.bind((str(self.address), 0))
            self.tags.tag(self.address, sock.getsockname()[1], trace_id)
            loop = asyncio.get_running_loop()
            try:
                await asyncio.wait_for(loop.sock_connect(sock, (str(dst), port)), real_wait)
            except TimeoutError:
                self._emit(trace_id, verdict, dst, "tcp", port, "timeout")
                raise Dropped(
                    f"connection to {dst}:{port} timed out ({verdict.explain()})", verdict
                ) from None
            except ConnectionRefusedError:
                self._emit(trace_id, verdict, dst, "tcp", port, "refused")
                raise Refused(f"connection to {dst}:{port} refused", verdict) from None
            except OSError as err:
                if err.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES):
                    self._emit(trace_id, verdict, dst, "tcp", port, "unreachable")
                    raise Unreachable(f"{dst}:{port}: {err.strerror}", verdict) from None
                raise
        except BaseException:
            sock.close()
            raise
        self._emit(trace_id, verdict, dst, "tcp", port, "connected")
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
        verdict = self._predict(dst, "udp", port)
        if not self.network.in_lab(dst):
            self._emit(trace_id, verdict, dst, "udp", port, "not sent")
            raise Unreachable(f"{dst}: not an address of this lab", verdict)
        if verdict.action != "accept":
            self._emit(trace_id, verdict, dst, "udp", port, "expected to fail")
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.bind((str(self.address), 0))
            self.tags.tag(self.address, sock.getsockname()[1], trace_id, "udp")
            sock.connect((str(dst), port))
            await loop.sock_sendall(sock, payload)
            try:
                return await asyncio.wait_for(
                    loop.sock_recv(sock, 65535), self.clock.real_seconds(timeout)
                )
            except TimeoutError:
                raise Dropped(f"no answer from {dst}:{port}/udp", verdict) from None
            except ConnectionRefusedError:
                raise Refused(f"{dst}:{port}/udp: port unreachable", verdict) from None
        finally:
            self.tags.tag(self.address, sock.getsockname()[1], None, "udp")
            sock.close()

    async def serve_tcp(self, service: str, port: int, factory: ProtocolFactory) -> Endpoint:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            factory, str(self.address), port, reuse_address=True, backlog=listen_backlog()
        )
        self._servers.append(server)
        return Endpoint(self.node, service, "tcp", f"{self.address}:{port}")

    async def serve_udp(self, service: str, port: int, factory: ProtocolFactory) -> Endpoint:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            factory, local_addr=(str(self.address), port)
        )
        self._transports.append(transport)
        return Endpoint(self.node, service, "udp", f"{self.address}:{port}")

    async def unserve(self, endpoint: Endpoint) -> None:
        _, _, port_text = endpoint.lab.rpartition(":")
        port = int(port_text)
        if endpoint.proto == "tcp":
            for server in list(self._servers):
                sockets = getattr(server, "sockets", ())  # asyncio.Server has them
                if any(sock.getsockname()[1] == port for sock in sockets):
                    # The kernel now answers SYNs with a reset: "connection
                    # refused", as for a stopped daemon. Established sessions go on.
                    server.close()
                    self._servers.remove(server)
        else:
            for transport in list(self._transports):
                if transport.get_extra_info("sockname")[1] == port:
                    transport.close()
                    self._transports.remove(transport)

    def peer(self, transport: asyncio.BaseTransport, addr: Any = None) -> Peer:
        peername = addr if addr is not None else transport.get_extra_info("peername")
        host, port = str(peername[0]), int(peername[1])
        sock = transport.get_extra_info("socket")
        proto = "udp" if sock is not None and sock.type == socket.SOCK_DGRAM else "tcp"
        return Peer(IPv4Address(host), port, self.tags.lookup(host, port, proto))

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for transport in self._transports:
            transport.close()
        for server in self._servers:
            with contextlib.suppress(TimeoutError, OSError):
                await asyncio.wait_for(server.wait_closed(), 2)
        self._servers.clear()
        self._transports.clear()
