"""The backend interface: what realises a topology.

Narrow on purpose (compare httpx's ``BaseTransport``): start, stop, the
endpoints, run an experiment on a node, control a service, and the lab clock.
The local backend (:mod:`sim.net.local`) and the mininet backend
(:mod:`sim.net.mininet`) implement it; everything above (the Python API, the
CLI, the lab engine, the TUI) only talks to this.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim.errors import BackendError
from sim.net.api import Endpoint
from sim.topology.model import FirewallRule, Topology
from sim.trace import Trace

if TYPE_CHECKING:
    from sim.experiments import Experiment, ExperimentResult

__all__ = ["Backend"]


class Backend(ABC):
    name: str

    def __init__(
        self,
        topology: Topology,
        state_dir: Path,
        *,
        as_node: str | None = None,
        time_scale: float | None = None,
    ) -> None:
        self.topology = topology
        self.state_dir = state_dir
        self.as_node = as_node
        self.time_scale = time_scale if time_scale is not None else topology.settings.time_scale

    @abstractmethod
    def start(self) -> None:
        """Realise the topology and start every service; return when all answer."""

    @abstractmethod
    def stop(self) -> None:
        """Stop everything this backend started. Safe to call twice."""

    @abstractmethod
    def endpoints(self) -> list[Endpoint]:
        """Every service endpoint, as seen by ``as_node`` (blocked ones marked)."""

    @abstractmethod
    def run(self, node: str, experiment: Experiment) -> ExperimentResult:
        """Run one experiment from ``node`` and return its result and trace."""

    @abstractmethod
    def control(self, node: str, service: str, command: str, **args: Any) -> dict[str, Any]:
        """Change a running service (lab tasks: edit a zone, delist an address...)."""

    @abstractmethod
    def now(self) -> float:
        """Lab time in seconds since the lab started."""

    @abstractmethod
    def advance(self, lab_seconds: float) -> None:
        """Move lab time forward at once (queues retry, greylisting expires)."""

    @abstractmethod
    def log(self) -> Trace:
        """Every event of the lab so far."""

    def set_firewall(self, router: str, rules: tuple[FirewallRule, ...]) -> None:
        """Replace a router's firewall rules in the running lab (a lab task:
        "switch the rule to reject and compare")."""
        raise BackendError(f"the {self.name} backend cannot change firewall rules yet")
