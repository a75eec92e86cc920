"""``maillab validate``: every problem of topology and lab files, as Problems.

A file is a lab file when its top level has ``steps``, a topology otherwise
(``nodes``); the kind decides which validator reads it.
"""

from __future__ import annotations

from pathlib import Path

from sim.errors import Problem
from sim.inputfile import InputFileError, read_input_bytes

__all__ = ["hosting_problems", "looks_like_lab", "validate_path"]


def looks_like_lab(path: Path) -> bool:
    """Whether ``path`` reads as a lab file (False when it cannot be read)."""
    try:
        head = read_input_bytes(path).decode("utf-8", "replace")
    except InputFileError:
        return False  # the topology loader reports why it cannot be read
    keys = {
        line.split(":", 1)[0] for line in head.splitlines() if line[:1].isalpha() and ":" in line
    }
    # A lab names its topology and has steps; a topology has nodes.
    return "steps" in keys or ("topology" in keys and "nodes" not in keys)


def validate_path(path: Path, backend: str | None = None) -> list[Problem]:
    """Problems of one file; a missing path or directory is itself a problem.
    With ``backend``: also a service that backend cannot host (topologies).

    A course's manifest (``course.yaml``) is checked as one, and a course
    directory (one with a ``course.yaml``) as a whole: the manifest, every
    lab and every topology (sim.lab.course)."""
    if path.name == "course.yaml" or (path / "course.yaml").is_file():
        return _validate_course(path.parent if path.name == "course.yaml" else path, path.is_dir())
    if looks_like_lab(path):
        try:
            from sim.lab.loader import validate_lab_file  # type: ignore[import-not-found,unused-ignore]
        except ModuleNotFoundError:
            return [Problem(str(path), 1, 1, "lab files are not supported yet")]
        problems: list[Problem] = validate_lab_file(path)
        if not problems:
            # Every student's variant must be valid too (issue 16).
            from sim.lab.variants_check import variant_problems

            problems = variant_problems(path)
        return problems
    from sim.topology import validate_topology_file

    problems = validate_topology_file(path)
    if backend is not None and not problems:
        problems = hosting_problems(path, backend)
    return problems


def hosting_problems(path: Path, backend: str) -> list[Problem]:
    """A service ``backend`` cannot host (a Postfix node on local), at the
    line of its key: one problem, the line the backend itself would say."""
    import sim
    from sim.errors import BackendError
    from sim.hosting.backend import check_hostable

    topology = sim.load_topology(path)
    try:
        check_hostable(topology, backend)
    except BackendError as err:
        node, _, rest = str(err).partition(": the ")
        kind = rest.split(" ", 1)[0]
        line, col = _key_position(path, node, kind)
        return [Problem(str(path), line, col, f"{err} (--backend {backend})")]
    return []


def _key_position(path: Path, node: str, key: str) -> tuple[int, int]:
    """Line and column of ``key:`` under node ``node`` (1, 1 if not found)."""
    lines = read_input_bytes(path).decode("utf-8", "replace").splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip() == f"{node}:"), 0)
    for number, text in enumerate(lines[start:], start + 1):
        if text.strip().startswith(f"{key}:"):
            return number, len(text) - len(text.lstrip()) + 1
    return start + 1, 1


def _validate_course(root: Path, everything: bool) -> list[Problem]:
    from sim.lab.course import validate_course

    problems = validate_course(root)
    if everything:
        for folder in ("topologies", "labs"):
            for file in sorted((root / folder).glob("*.y*ml")):
                problems.extend(validate_path(file))
    return problems
