"""The shipped labs a test iterates, on one backend.

A lab says where it runs (``backends:``, default both; the lab with real
Postfix and Dovecot says ``[mininet]``). A test that runs every lab on the
local backend skips the others by that field, never by name, and the
mininet variant of the test includes them. Read with ruamel's safe loader (no
positions, no validation): collection stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from sim.lab.model import LAB_BACKENDS

ROOT = Path(__file__).resolve().parent.parent
LABS = sorted((ROOT / "labs").glob("*.yaml"))


def lab_backends(path: Path) -> tuple[str, ...]:
    """The backends a lab file says it runs on (default: both)."""
    doc = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    given = doc.get("backends") if isinstance(doc, dict) else None
    return tuple(str(b) for b in given) if given else LAB_BACKENDS


def runs_on(path: Path, backend: str) -> bool:
    return backend in lab_backends(path)


def lab_params(backend: str, *marks: Any, paths: list[Path] | None = None) -> list[Any]:
    """``pytest.param`` per lab that runs on ``backend``, id its stem. A lab
    that does not run there is left out, not skipped: CI runs every test it
    collects, and that lab's run is in the other backend's half."""
    return [
        pytest.param(path, marks=list(marks), id=path.stem)
        for path in (LABS if paths is None else paths)
        if runs_on(path, backend)
    ]


def topology_hostable(path: Path, backend: str) -> bool:
    """Whether ``backend`` can host every service of a topology file (real
    Postfix and Dovecot only on mininet: sim.hosting.backend.check_hostable)."""
    import sim
    from sim.errors import BackendError
    from sim.hosting.backend import check_hostable

    try:
        check_hostable(sim.load_topology(path), backend)
    except BackendError:
        return False
    return True
