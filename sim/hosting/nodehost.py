"""Hosting a node's services: written once, used by both backends.

A :class:`NodeHost` holds the services of one node on that node's
:class:`~sim.services.base.NodeContext`. The local backend keeps one per node
on its single event loop; on the mininet backend each node's agent
(:mod:`sim.hosting.agent`) keeps one in its own process. Either way the
services are created together (so siblings find each other: submission hands
mail to the relay on its node), started wave by wave
(:data:`~sim.services.registry.SERVICE_ORDER`), told when the whole lab is up,
controlled by lab tasks and stopped in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from sim.clock import LabClock
from sim.errors import BackendError
from sim.experiments import Experiment, ExperimentResult
from sim.net.api import Endpoint, NodeNet
from sim.resolve import Resolver
from sim.services.base import NodeContext, Service
from sim.services.registry import SERVICE_ORDER, hosted_kinds, service_class
from sim.tls import LabCA
from sim.topology.graph import LabNetwork
from sim.topology.model import Topology
from sim.trace import Trace, TraceHub

__all__ = [
    "STOP_PHASE",
    "NodeHost",
    "make_context",
    "resolver_address",
]

#: How long (real seconds) each service may take to stop.
STOP_PHASE = 5.0


def resolver_address(topology: Topology) -> IPv4Address:
    """The lab resolver's address; a topology without DNS cannot run."""
    address = topology.resolver_address()
    if address is None:
        raise BackendError(f"{topology.name}: no DNS resolver (settings.resolver)")
    return address


def make_context(
    topology: Topology,
    network: LabNetwork,
    node: str,
    net: NodeNet,
    *,
    clock: LabClock,
    hub: TraceHub,
    state_dir: Path,
    ca: LabCA,
    generation_file: Path | None = None,
) -> NodeContext:
    """The context of ``node``'s services and experiments, with its stub resolver.

    ``generation_file``: where DNS edits made in other processes show (the
    mininet agents; see :func:`sim.resolve.generation_path`)."""
    ctx = NodeContext(
        topology=topology,
        network=network,
        node=network.node(node),
        net=net,
        clock=clock,
        hub=hub,
        state_dir=state_dir,
        resolver=None,  # type: ignore[arg-type]  # set just below: it needs ctx.record
        ca=ca,
    )
    ctx.resolver = Resolver(
        net,
        resolver_address(topology),
        clock,
        emit=ctx.record,
        generation_file=generation_file,
    )
    return ctx


class NodeHost:
    """The services of one node (none on a router), and experiments run from it."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.services: list[Service] = []
        # A node whose mx/submission/relay Postfix runs (mailbox: Dovecot)
        # has no maillab object for those kinds (registry.REPLACES).
        kinds = hosted_kinds(ctx.node.services.names()) if ctx.node.kind == "host" else ()
        # Every service object exists before any starts, so siblings can find each other.
        for kind in kinds:
            service = service_class(kind)(ctx)
            ctx.services[kind] = service
            self.services.append(service)

    @property
    def name(self) -> str:
        return self.ctx.node.name

    async def start_wave(self, wave: tuple[str, ...]) -> list[Endpoint]:
        """Start this node's services of one wave; their endpoints."""
        started = await asyncio.gather(*(s.start() for s in self.services if s.kind in wave))
        return [endpoint for endpoints in started for endpoint in endpoints]

    async def start(self) -> list[Endpoint]:
        """Every wave in order (a node on its own: the mininet agent)."""
        endpoints: list[Endpoint] = []
        for wave in SERVICE_ORDER:
            endpoints.extend(await self.start_wave(wave))
        return endpoints

    async def lab_started(self) -> None:
        await asyncio.gather(*(service.lab_started() for service in self.services))

    def service(self, kind: str) -> Service:
        for service in self.services:
            if service.kind == kind:
                return service
        raise BackendError(f"{self.name} runs no {kind} service")

    async def control(self, kind: str, command: str, **args: Any) -> dict[str, Any]:
        return await self.service(kind).control(command, **args)

    async def run(self, experiment: Experiment, trace: Trace) -> ExperimentResult:
        """Run ``experiment`` from this node; the backend attaches the trace."""
        begin = time.monotonic()
        result = await experiment.run(self.ctx, trace)
        result.seconds = round(time.monotonic() - begin, 4)
        return result

    def retarget(self, network: LabNetwork) -> None:
        """A router's rules changed (a lab task): explain verdicts from the new copy."""
        self.ctx.network = network

    async def stop(self, phase: float = STOP_PHASE) -> None:
        """Stop the services in reverse order, each within ``phase`` seconds: a
        service that does not finish must not keep the lab from stopping."""
        for service in reversed(self.services):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(service.stop(), phase)
