"""The local backend: a whole lab in one process, on 127.0.0.1, without root.

Every service runs on one asyncio event loop in a background thread (so the
lab is usable from plain scripts and from Jupyter, which runs its own loop).
Each service listens on 127.0.0.1 at a free port; :class:`LoopbackRegistry`
maps lab addresses to those ports and tells servers the lab address of each
client. The network layer is simulated from the topology: routing and router
firewalls are decided by :mod:`sim.topology.firewall` (the same rules the mininet
backend compiles to iptables), and their effects are reproduced for real:

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
import threading
import weakref
from collections.abc import Coroutine
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any, TypeVar

from sim.clock import LabClock
from sim.errors import BackendError, ServiceError
from sim.experiments import Experiment, ExperimentResult
from sim.hosting.backend import Backend
from sim.net.api import (
    Dropped,
    Endpoint,
    NodeNet,
    Peer,
    ProtocolFactory,
    Refused,
    Unreachable,
)
from sim.net.registry import ClientEntry, LoopbackRegistry
from sim.services.base import NodeContext, Service
from sim.services.registry import SERVICE_ORDER, service_class
from sim.tls import LabCA
from sim.topology.firewall import Packet, PacketProto, Verdict, evaluate
from sim.topology.graph import LabNetwork, build_network
from sim.topology.model import FirewallRule, Node, Topology
from sim.trace import Trace, TraceEvent, TraceHub

__all__ = ["LocalBackend", "LocalNodeNet"]

T = TypeVar("T")
LOOPBACK = "127.0.0.1"
#: How long (real seconds) each phase of stopping may take.
STOP_PHASE = 5.0
#: How long (real seconds) a call from the API thread may wait for the loop.
CALL_TIMEOUT = 600.0


def node_or_synthetic(topology: Topology, network: LabNetwork, name: str) -> Node:
    """The topology's node, or the synthetic outside host the network adds."""
    try:
        return topology.node(name)
    except KeyError:
        address = network.address_of(name)
        return Node(
            name=name,
            kind="host",
            ip=IPv4Interface(f"{address}/24"),
            title="a neutral host outside every ISP",
        )


def prepare_topology(topology: Topology, state_dir: Path) -> Topology:
    """The topology as the services see it: with published DKIM keys."""
    from sim.services.dkimkeys import ensure_keys, publish

    return publish(topology, ensure_keys(topology, state_dir))


def with_firewall(topology: Topology, router: str, rules: tuple[FirewallRule, ...]) -> Topology:
    """``topology`` with ``router``'s rules replaced."""
    try:
        node = topology.node(router)
    except KeyError:
        raise BackendError(f"no node named {router!r} in {topology.name}") from None
    if node.kind != "router":
        raise BackendError(f"{router} is a host: only routers have firewall rules")
    nodes = tuple(
        replace(n, firewall=tuple(rules)) if n.name == router else n for n in topology.nodes
    )
    return replace(topology, nodes=nodes)


def resolver_address(topology: Topology) -> IPv4Address:
    """The lab resolver's address; a topology without DNS cannot run."""
    address = topology.resolver_address()
    if address is None:
        raise BackendError(f"{topology.name}: no DNS resolver (settings.resolver)")
    return address


class LocalNodeNet(NodeNet):
    """The lab network as seen from one node, realised on loopback."""

    def __init__(self, backend: LocalBackend, node: str, address: IPv4Address) -> None:
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
            TraceEvent(
                t=round(self.backend.clock.now(), 3),
                kind="net",
                node=verdict.router or self.node,
                summary=verdict.explain(),
                data={
                    "src": str(self.address),
                    "dst": str(dst),
                    "proto": proto,
                    "port": port,
                    **verdict.to_json(),
                },
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
                self.backend.event(
                    "net",
                    self.node,
                    f"{dst}:{port} answered with a reset: nothing listens there",
                    src=str(self.address),
                    dst=str(dst),
                    proto="tcp",
                    port=port,
                    verdict="closed",
                ),
            )
            raise Refused(f"connection to {dst}:{port} refused: nothing listens there", verdict)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.bind((LOOPBACK, 0))
            self.backend.registry.register_client(
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
                name, ClientEntry(self.node, self.address, trace_id)
            )
            sock.connect((LOOPBACK, local_port))
            await loop.sock_sendall(sock, payload)
            real = self.backend.clock.real_seconds(timeout)
            try:
                return await asyncio.wait_for(loop.sock_recv(sock, 65535), real)
            except TimeoutError:
                raise Dropped(f"no answer from {dst}:{port}/udp", verdict) from None
        finally:
            self.backend.registry.forget_client(sock.getsockname())
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
                server = await loop.create_server(factory, LOOPBACK, twin)
        if server is None:
            server = await loop.create_server(factory, LOOPBACK, 0)
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
        entry = self.backend.registry.client(peername)
        port = int(peername[1]) if peername else 0
        if entry is None:
            # A real program on this machine (swaks, dig): it speaks for --as.
            return Peer(self.backend.as_address, port, None)
        return Peer(entry.address, port, entry.trace_id)

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


class LocalBackend(Backend):
    """One process, one event loop thread, every service on 127.0.0.1."""

    name = "local"

    def __init__(
        self,
        topology: Topology,
        state_dir: Path,
        *,
        as_node: str | None = None,
        time_scale: float | None = None,
    ) -> None:
        super().__init__(topology, state_dir, as_node=as_node, time_scale=time_scale)
        self.network: LabNetwork = build_network(topology)
        self.registry = LoopbackRegistry()
        self.clock = LabClock(self.time_scale)
        self.hub = TraceHub()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._services: list[tuple[str, Service]] = []
        self._contexts: dict[str, NodeContext] = {}
        self._nets: list[LocalNodeNet] = []
        self._endpoints: list[Endpoint] = []
        self._ca: LabCA | None = None
        as_name = as_node or self.network.outside
        if as_name not in self.network.graph:
            raise BackendError(f"--as {as_name}: no such node in {topology.name}")
        self.as_name = as_name
        self.as_address = self.network.address_of(as_name)

    # -- the loop thread ----------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        loop = self._loop
        if loop is None:
            coro.close()
            raise BackendError("the lab is not running")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    def start(self) -> None:
        if self._loop is not None:
            return
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(
            target=main, name=f"maillab-{self.topology.name}", daemon=True
        )
        self._thread.start()
        ready.wait()
        self._loop = loop
        try:
            self._call(self._start())
        except BaseException:
            self.stop()
            raise

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self.clock.bind(loop)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._ca = await loop.run_in_executor(None, LabCA, self.state_dir / "tls")
        # DKIM keys are made once per state directory; the ones a relay should
        # publish go into the zones before the DNS starts.
        self.topology = await loop.run_in_executor(
            None, prepare_topology, self.topology, self.state_dir
        )
        for name in self.network.graph.nodes:
            self._contexts[name] = self._make_context(name)
        # Services start in waves: DNS first (everyone else looks things up),
        # then mailboxes, receivers, relays, submission.
        # Every service object exists before any starts, so siblings can find
        # each other (submission hands mail to the relay on its node).
        for node in self.topology.hosts():
            ctx = self._contexts[node.name]
            for kind in node.services.names():
                service = service_class(kind)(ctx)
                ctx.services[kind] = service
                self._services.append((node.name, service))
        for wave in SERVICE_ORDER:
            batch = [svc.start() for _, svc in self._services if svc.kind in wave]
            for endpoints in await asyncio.gather(*batch):
                self._endpoints.extend(endpoints)
        await asyncio.gather(*(svc.lab_started() for _, svc in self._services))

    def _make_context(self, name: str) -> NodeContext:
        from sim.resolve import Resolver

        net = LocalNodeNet(self, name, self.network.address_of(name))
        self._nets.append(net)
        node = node_or_synthetic(self.topology, self.network, name)
        resolver_ip = resolver_address(self.topology)
        assert self._ca is not None
        ctx = NodeContext(
            topology=self.topology,
            network=self.network,
            node=node,
            net=net,
            clock=self.clock,
            hub=self.hub,
            state_dir=self.state_dir,
            resolver=None,  # type: ignore[arg-type]  # set just below: it needs ctx.emit
            ca=self._ca,
        )
        ctx.resolver = Resolver(net, resolver_ip, self.clock, emit=ctx.emit)
        return ctx

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        try:
            if not loop.is_closed():
                self._call(self._stop(), timeout=30)
        finally:
            if not loop.is_closed():
                loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(timeout=10)
            self._loop = None
            self._thread = None

    async def _stop(self) -> None:
        # Every phase is bounded: a service or a connection handler that does
        # not finish must not keep the lab (and the caller) from stopping.
        for _, service in reversed(self._services):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(service.stop(), STOP_PHASE)
        for net in self._nets:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(net.close(), STOP_PHASE)
        self._services.clear()
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        if pending:
            # A task that swallows its cancellation is left to the loop's close.
            await asyncio.wait(pending, timeout=STOP_PHASE)

    # -- the Backend interface --------------------------------------------

    def endpoints(self) -> list[Endpoint]:
        out = []
        for ep in self._endpoints:
            address, _, port = ep.lab.partition(":")
            verdict = evaluate(
                self.network,
                self.as_name,
                Packet(self.as_address, IPv4Address(address), ep.proto, int(port)),
            )
            if verdict.action != "accept":
                out.append(
                    Endpoint(ep.node, ep.service, ep.proto, ep.lab, None, blocked=verdict.explain())
                )
            else:
                out.append(ep)
        return out

    def context(self, node: str) -> NodeContext:
        try:
            return self._contexts[node]
        except KeyError:
            raise BackendError(f"no node named {node!r} in {self.topology.name}") from None

    def run(self, node: str, experiment: Experiment) -> ExperimentResult:
        ctx = self.context(node)
        return self._call(self._run(ctx, experiment))

    async def _run(self, ctx: NodeContext, experiment: Experiment) -> ExperimentResult:
        import time

        trace = self.hub.open()
        start = time.monotonic()
        result = await experiment.run(ctx, trace)
        result.trace = trace
        result.seconds = round(time.monotonic() - start, 4)
        return result

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the lab's loop (for the Python API and tests)."""
        return self._call(coro)

    def control(self, node: str, service: str, command: str, **args: Any) -> dict[str, Any]:
        for name, svc in self._services:
            if name == node and svc.kind == service:
                return self._call(svc.control(command, **args))
        raise BackendError(f"{node} runs no {service} service")

    def service(self, node: str, kind: str) -> Service:
        for name, svc in self._services:
            if name == node and svc.kind == kind:
                return svc
        raise BackendError(f"{node} runs no {kind} service")

    def now(self) -> float:
        return self.clock.now()

    def advance(self, lab_seconds: float) -> None:
        self.clock.advance(lab_seconds)

    def log(self) -> Trace:
        return self.hub.log

    def set_firewall(self, router: str, rules: tuple[FirewallRule, ...]) -> None:
        self.topology = with_firewall(self.topology, router, rules)
        # Verdicts are computed from self.network on every connection, so the
        # new rules apply to the next packet, as `iptables -R` would.
        self.network = build_network(self.topology)

    def emit(self, trace_id: str | None, event: TraceEvent) -> None:
        self.hub.emit(trace_id, event)

    def event(self, kind: str, node: str, summary: str, **data: Any) -> TraceEvent:
        return TraceEvent(
            t=round(self.clock.now(), 3), kind=kind, node=node, summary=summary, data=data
        )
