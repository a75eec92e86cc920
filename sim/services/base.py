"""What every lab service is given, and what it must provide.

A service (dns, dnsbl, mx, submission, relay, mailbox) is started on one node
with a :class:`NodeContext` and the node's config from the topology. The same
service code runs on both backends: only ``ctx.net`` differs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sim.clock import LabClock
from sim.events import EventData
from sim.fastclass import dataclass
from sim.net.api import Endpoint, NodeNet
from sim.topology.model import Node, Topology
from sim.trace import TraceEvent, TraceHub

if TYPE_CHECKING:
    from sim.resolve import Resolver
    from sim.tls import LabCA
    from sim.topology.graph import LabNetwork

__all__ = ["NodeContext", "Service"]


@dataclass
class NodeContext:
    """Everything a service on ``node`` may use."""

    topology: Topology
    network: LabNetwork
    node: Node
    net: NodeNet
    clock: LabClock
    hub: TraceHub
    state_dir: Path
    resolver: Resolver
    ca: LabCA
    #: The other services running on the same node, by kind (the submission
    #: service hands accepted mail to ``services["relay"]``). Filled by the backend.
    services: dict[str, Service] = field(default_factory=dict)

    def record(self, trace_id: str | None, data: EventData, summary: str) -> TraceEvent:
        """Record an event that happened on this node; ``data`` is one of the
        classes of :mod:`sim.events`, which gives the event its kind."""
        event = TraceEvent(round(self.clock.now(), 3), data.KIND, self.node.name, summary, data)
        self.hub.emit(trace_id, event)
        return event

    def emit(self, trace_id: str | None, kind: str, summary: str, **data: Any) -> TraceEvent:
        """Record an event with a plain dict as its data: the old way, kept
        while other branches move to :meth:`record` (the tests name every
        event recorded so, with the kind and keys to declare in sim/events.py)."""
        event = TraceEvent(
            t=round(self.clock.now(), 3), kind=kind, node=self.node.name, summary=summary, data=data
        )
        self.hub.emit(trace_id, event)
        return event


class Service(ABC):
    """A running service on one node."""

    kind: ClassVar[str]

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    @abstractmethod
    async def start(self) -> list[Endpoint]:
        """Start listening; return the endpoints."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop listening and release everything started."""

    async def lab_started(self) -> None:
        """Every service of the lab has started, on every node: what talks to
        other nodes of its own accord at start (a relay's recovered queue)
        begins here. Each backend calls it once, after its last start. Most
        services have nothing to do then."""
        return None

    async def control(self, command: str, **args: Any) -> dict[str, Any]:
        """Change the running service (a lab task); see each service."""
        raise NotImplementedError(f"{self.kind} has no control command {command!r}")
