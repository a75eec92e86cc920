"""Labs: the lab file model, loading and validation, the runner, progress.

::

    from sim.lab import load_lab, LabSession
    lab = load_lab("labs/01-receive-only.yaml")
    with LabSession(lab) as session:
        session.run_experiment("dig-mx")

Modules: :mod:`~sim.lab.model` (the data), :mod:`~sim.lab.loader` (file →
model, with problems at their lines), :mod:`~sim.lab.schema` (the shape, its
JSON Schema and reference), :mod:`~sim.lab.checks` (check predicates),
:mod:`~sim.lab.actions` (task actions), :mod:`~sim.lab.engine` (the runner),
:mod:`~sim.lab.progress` (saved progress), :mod:`~sim.lab.catalog` (where the
labs are), :mod:`~sim.lab.commands` (``maillab list`` and ``check``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.lab.engine import (
        CheckOutcome,
        ExperimentOutcome,
        Feedback,
        LabReport,
        LabSession,
        StepReport,
        run_reference,
    )
    from sim.lab.loader import load_lab, validate_lab_file
    from sim.lab.model import LabDef, Step
    from sim.lab.progress import FileProgressStore, MemoryProgressStore

__all__ = [
    "CheckOutcome",
    "ExperimentOutcome",
    "Feedback",
    "FileProgressStore",
    "LabDef",
    "LabReport",
    "LabSession",
    "MemoryProgressStore",
    "Step",
    "StepReport",
    "load_lab",
    "run_reference",
    "validate_lab_file",
]

_HOMES = {
    **dict.fromkeys(
        (
            "CheckOutcome",
            "ExperimentOutcome",
            "Feedback",
            "LabReport",
            "LabSession",
            "StepReport",
            "run_reference",
        ),
        "sim.lab.engine",
    ),
    **dict.fromkeys(("load_lab", "validate_lab_file"), "sim.lab.loader"),
    **dict.fromkeys(("LabDef", "Step"), "sim.lab.model"),
    **dict.fromkeys(("FileProgressStore", "MemoryProgressStore"), "sim.lab.progress"),
}


def __getattr__(name: str) -> Any:
    # Imported on first use (as sim.topology does), so that
    # `python -m sim.lab.schema` does not import its own module twice.
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
