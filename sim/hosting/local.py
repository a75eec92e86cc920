"""The local backend: a whole lab in one process, on 127.0.0.1, without root.

Every service runs on one asyncio event loop in a background thread (so the
lab is usable from plain scripts and from Jupyter, which runs its own loop),
each node's services in a :class:`~sim.hosting.nodehost.NodeHost` on a
:class:`~sim.net.local.LocalNodeNet` (the network simulated on loopback).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, TypeVar

from sim.clock import LabClock
from sim.errors import BackendError
from sim.experiments import Experiment, ExperimentResult
from sim.hosting.backend import Backend
from sim.hosting.nodehost import STOP_PHASE, NodeHost, make_context
from sim.net.api import Endpoint
from sim.net.local import LocalNodeNet
from sim.net.registry import LoopbackRegistry
from sim.net.wirelog import WireLog
from sim.services.base import NodeContext, Service
from sim.services.registry import SERVICE_ORDER
from sim.tls import LabCA
from sim.topology.firewall import Packet, evaluate, with_firewall
from sim.topology.graph import LabNetwork, layout
from sim.topology.model import FirewallRule, Topology
from sim.trace import Trace, TraceEvent, TraceHub

__all__ = ["LocalBackend"]

T = TypeVar("T")
#: How long (real seconds) a call from the API thread may wait for the loop.
CALL_TIMEOUT = 600.0


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
        self.network: LabNetwork = layout(self.topology)
        self.registry = LoopbackRegistry()
        self.clock = LabClock(self.time_scale)
        self.hub = TraceHub()
        #: Set while ``up --pcap`` runs (sim.present.wire): real programs'
        #: conversations with the lab's servers.
        self.wire_log: WireLog | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._hosts: dict[str, NodeHost] = {}
        self._nets: list[LocalNodeNet] = []
        self._endpoints: list[Endpoint] = []
        self._ca: LabCA | None = None
        as_name = as_node or self.network.outside
        if as_name not in self.network.nodes():
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
        await loop.run_in_executor(None, self.publish_keys)
        for name in self.network.nodes():
            net = LocalNodeNet(self, name, self.network.address_of(name))
            self._nets.append(net)
            ctx = make_context(
                self.topology,
                self.network,
                name,
                net,
                clock=self.clock,
                hub=self.hub,
                state_dir=self.state_dir,
                ca=self._ca,
            )
            self._hosts[name] = NodeHost(ctx)
        # Services start in waves (DNS first: everyone else looks things up),
        # each wave on every node at once.
        hosts = list(self._hosts.values())
        for wave in SERVICE_ORDER:
            for endpoints in await asyncio.gather(*(h.start_wave(wave) for h in hosts)):
                self._endpoints.extend(endpoints)
        await asyncio.gather(*(host.lab_started() for host in hosts))

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
        for host in reversed(self._hosts.values()):
            await host.stop(STOP_PHASE)
        for net in self._nets:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(net.close(), STOP_PHASE)
        self._hosts.clear()
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

    def host(self, node: str) -> NodeHost:
        try:
            return self._hosts[node]
        except KeyError:
            raise BackendError(f"no node named {node!r} in {self.topology.name}") from None

    def context(self, node: str) -> NodeContext:
        return self.host(node).ctx

    def run(self, node: str, experiment: Experiment) -> ExperimentResult:
        return self._call(self._run(self.host(node), experiment))

    async def _run(self, host: NodeHost, experiment: Experiment) -> ExperimentResult:
        trace = self.hub.open()
        result = await host.run(experiment, trace)
        result.trace = trace
        return result

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the lab's loop (for the Python API and tests)."""
        return self._call(coro)

    def control(self, node: str, service: str, command: str, **args: Any) -> dict[str, Any]:
        return self._call(self.service(node, service).control(command, **args))

    def service(self, node: str, kind: str) -> Service:
        host = self._hosts.get(node)
        if host is None:
            raise BackendError(f"{node} runs no {kind} service")
        return host.service(kind)

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
        self.network = layout(self.topology)
        for host in self._hosts.values():
            host.retarget(self.network)

    def emit(self, trace_id: str | None, event: TraceEvent) -> None:
        self.hub.emit(trace_id, event)
