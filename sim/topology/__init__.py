"""Topologies: the model, loading and validating files, the network layout.

``load_topology(path)`` reads and checks a file and returns a
:class:`~sim.topology.model.Topology`, or raises
:class:`~sim.errors.TopologyError` with every problem (a topology that
loaded is remembered between runs: :mod:`sim.topology.filecache`);
``validate_topology_file(path)`` returns the problems and never raises.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.topology.filecache import load_topology
    from sim.topology.loader import (
        loads_topology,
        validate_topology_file,
        validate_topology_text,
    )
    from sim.topology.model import Topology

__all__ = [
    "Topology",
    "load_topology",
    "loads_topology",
    "validate_topology_file",
    "validate_topology_text",
]

_HOMES = {
    "Topology": "sim.topology.model",
    "load_topology": "sim.topology.filecache",
    "loads_topology": "sim.topology.loader",
    "validate_topology_file": "sim.topology.loader",
    "validate_topology_text": "sim.topology.loader",
}


def __getattr__(name: str) -> Any:
    # Imported on first use, so that importing the model (which every backend
    # and service does) does not load the YAML and validation machinery, and
    # `python -m sim.topology.schema` does not import its own module twice.
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
