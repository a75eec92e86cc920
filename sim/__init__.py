"""maillab: a teaching simulator and lab environment for email architecture.

The public API a script or notebook may use::

    import sim
    topo = sim.load_topology("topologies/home-isp.yaml")
    with sim.start(topo) as lab:
        lab.dig("laptop", "qq.example", "MX")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sim.errors import (
    BackendError,
    BackendUnavailable,
    InputError,
    LabError,
    LabFileError,
    NetworkError,
    Problem,
    ServiceError,
    SimError,
    TopologyError,
)
from sim.hosting.runtime import Lab, start
from sim.trace import Trace, TraceEvent

if TYPE_CHECKING:
    from sim.topology.model import Topology

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "InputError",
    "Lab",
    "LabError",
    "LabFileError",
    "NetworkError",
    "Problem",
    "ServiceError",
    "SimError",
    "TopologyError",
    "Trace",
    "TraceEvent",
    "load_topology",
    "start",
]


def load_topology(path: Any) -> Topology:
    """Load and validate a topology file; raises :class:`TopologyError`."""
    from sim.topology import load_topology as _load

    return _load(path)
