"""The backend interface: what realises a topology.

Narrow on purpose (compare httpx's ``BaseTransport``): start, stop, the
endpoints, run an experiment on a node, control a service, and the lab clock.
The local backend (:mod:`sim.hosting.local`) and the mininet backend
(:mod:`sim.hosting.mininet`) implement it; everything above (the Python API,
the CLI, the lab engine, the TUI) only talks to this. :data:`BACKENDS` says
which class realises which backend name: adding a backend is one line there.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim.errors import BackendError
from sim.net.api import Endpoint
from sim.services.registry import hosted_only_by
from sim.topology.model import FirewallRule, Topology
from sim.trace import Trace

if TYPE_CHECKING:
    from sim.experiments import Experiment, ExperimentResult

__all__ = ["BACKENDS", "Backend", "backend_class", "check_hostable", "prepare_topology"]

#: Backend name → its class, imported on first use (mininet is Linux-only and
#: loads more).
BACKENDS: dict[str, str] = {
    "local": "sim.hosting.local:LocalBackend",
    "mininet": "sim.hosting.mininet:MininetBackend",
}


def backend_class(name: str) -> type[Backend]:
    """The class of backend ``name``; a :class:`BackendError` naming the choices."""
    try:
        module_name, _, class_name = BACKENDS[name].partition(":")
    except KeyError:
        raise BackendError(
            f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}"
        ) from None
    cls: type[Backend] = getattr(importlib.import_module(module_name), class_name)
    return cls


def check_hostable(topology: Topology, backend: str) -> None:
    """Refuse, in one line, a topology with a service ``backend`` cannot host
    (real Postfix or Dovecot nodes run only inside mininet namespaces)."""
    for node in topology.hosts():
        for kind in node.services.names():
            where = hosted_only_by(kind)
            if where is not None and backend not in where:
                raise BackendError(
                    f"{node.name}: the {kind} service runs only on the "
                    f"{' or '.join(sorted(where))} backend, not on {backend}"
                )


def prepare_topology(topology: Topology, state_dir: Path) -> Topology:
    """The topology as the services see it: with the relays' DKIM keys
    (made once per state directory) published in the zones, before any DNS
    starts."""
    from sim.services.dkimkeys import ensure_keys, publish

    return publish(topology, ensure_keys(topology, state_dir))


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
        # A service this backend cannot host: one line, before anything starts.
        check_hostable(topology, self.name)
        self.state_dir = state_dir
        #: The topology the services see, and sim.Lab.topology is: once
        #: started, with the relays' DKIM keys published (publish_keys).
        self.topology = topology
        self.as_node = as_node
        self.time_scale = time_scale if time_scale is not None else topology.settings.time_scale

    def publish_keys(self) -> None:
        """Make the relays' DKIM keys (once per state directory) and publish
        them in the zones: each backend's start does it before any DNS serves.
        The layout is unchanged (zones are not part of it)."""
        self.topology = prepare_topology(self.topology, self.state_dir)

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
