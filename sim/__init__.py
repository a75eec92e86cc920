"""maillab: a teaching simulator and lab environment for email architecture.

The public API a script or notebook may use::

    import sim
    topo = sim.load_topology("topologies/home-isp.yaml")
    with sim.start(topo) as lab:
        lab.dig("laptop", "qq.example", "MX")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sim.errors import (
    ArgumentError,
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

if TYPE_CHECKING:
    from sim.hosting.runtime import Lab, start
    from sim.topology.model import Topology
    from sim.trace import Trace, TraceEvent

__all__ = [
    "ArgumentError",
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


# Imported on first use: `maillab list`, `validate` and `--help` import
# ``sim`` (every submodule does) but never start a lab, and the runtime pulls
# in asyncio, the services and their libraries.
_HOMES = {
    "Lab": "sim.hosting.runtime",
    "start": "sim.hosting.runtime",
    "Trace": "sim.trace",
    "TraceEvent": "sim.trace",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


def load_topology(path: Any) -> Topology:
    """Load and validate a topology file, or one by name (``"home-isp"``);
    raises :class:`TopologyError` (for a missing file: where it looked)."""
    import os
    from pathlib import Path

    from sim.discover import find_topology
    from sim.topology import load_topology as _load
    from sim.validation import looks_like_lab

    if isinstance(path, str | os.PathLike) and looks_like_lab(Path(path)):
        # One line rather than every topology key the lab file lacks.
        raise TopologyError(
            [
                Problem(
                    str(path), 1, 1, "a lab file, not a topology: open it with `maillab run FILE`"
                )
            ]
        )
    return _load(find_topology(path))
