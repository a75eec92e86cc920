"""Where the labs are, and finding one by what a person types.

The labs directory is, in order: ``--labs-dir``; ``$MAILLAB_LABS``; the
``labs/`` of the course ``maillab --course DIR`` or ``$MAILLAB_COURSE`` names
(its manifest checked first, :mod:`sim.lab.course`); ``labs/`` of the
repository checkout this package runs from; the labs installed with the
package (``sim/data/labs``). Lab files are ``*.yaml`` there, in the order of
the course's manifest when the directory is a course's ``labs/``, else in
file name order (``01-receive-only.yaml``, ``02-...``).

A lab is named by its id (``receive-only``), its file name with or without
the suffix (``01-receive-only``), its number (``1`` or ``01``), or a path.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sim.errors import LabError, LabFileError, Problem
from sim.fastclass import dataclass

if TYPE_CHECKING:
    from sim.lab.model import LabDef

# The loader and the YAML reader are imported where a lab is read: finding
# the labs directory (every lab command, `maillab list` from its cache) must
# not load them.

__all__ = [
    "CatalogEntry",
    "declared_backends",
    "find_lab",
    "lab_files",
    "labs_dir",
    "load_catalog",
    "refuse_backend",
]

_PACKAGE = Path(__file__).resolve().parents[1]
REPO_LABS = _PACKAGE.parent / "labs"
PACKAGED_LABS = _PACKAGE / "data" / "labs"


def labs_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The labs directory; raises :class:`LabError` when there is none."""
    candidates: list[tuple[Path, str]] = []
    if override is not None:
        candidates.append((Path(override), "--labs-dir"))
    elif os.environ.get("MAILLAB_LABS"):
        candidates.append((Path(os.environ["MAILLAB_LABS"]), "$MAILLAB_LABS"))
    elif os.environ.get("MAILLAB_COURSE"):
        from sim.lab.course import course_from_env

        course = course_from_env()  # a bad manifest: InputError, exit 2
        assert course is not None
        return course.labs_dir
    else:
        candidates += [(REPO_LABS, "the repository"), (PACKAGED_LABS, "the package")]
    for path, _ in candidates:
        if path.is_dir():
            return path
    if override is not None or os.environ.get("MAILLAB_LABS"):
        path, origin = candidates[0]
        raise LabError(f"{origin}: {path} is not a directory")
    raise LabError(
        f"no labs directory: neither {REPO_LABS} nor {PACKAGED_LABS} exists (use --labs-dir)"
    )


def lab_files(directory: Path) -> list[Path]:
    """The lab files of a directory: a course's in its manifest's order,
    others in name order."""
    from sim.lab.course import ordered_lab_files

    ordered = ordered_lab_files(directory)
    if ordered is not None:
        return ordered
    return sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and p.suffix in (".yaml", ".yml") and not p.name.startswith(".")
    )


def _declared_id(path: Path) -> str | None:
    from sim.spec.yamlpos import load_yaml

    doc, problems = load_yaml(path)
    if problems or not isinstance(doc, dict):
        return None
    value = doc.get("id")
    return str(value) if isinstance(value, str) else None


def declared_backends(path: Path) -> tuple[str, ...]:
    """The backends a lab file says it runs on (``backends:``; both when it
    says nothing or cannot be read: the loader reports why), without
    validating the file."""
    from sim.lab.model import LAB_BACKENDS
    from sim.spec.yamlpos import load_yaml

    doc, problems = load_yaml(path)
    given = doc.get("backends") if not problems and isinstance(doc, dict) else None
    if isinstance(given, list) and given and all(isinstance(b, str) for b in given):
        return tuple(given)
    return LAB_BACKENDS


def refuse_backend(lab_id: str, backends: tuple[str, ...], backend: str, command: str) -> None:
    """One line, exit 2 (:class:`ArgumentError`), for a lab asked for on a
    backend it does not run on: ``maillab run real-thing`` on local."""
    from sim.errors import ArgumentError
    from sim.lab.model import needs_backend

    if backend not in backends:
        raise ArgumentError(
            f"the lab {lab_id} does not run on the {backend} backend; "
            f"it {needs_backend(lab_id, backends, command)}"
        )


def find_lab(ref: str, directory: Path) -> Path:
    """The file of the lab ``ref`` names; raises :class:`LabError`."""
    as_path = Path(ref)
    if as_path.is_file():
        return as_path
    if os.sep in ref or "/" in ref:
        raise LabError(f"no lab file {ref}")
    files = lab_files(directory)
    for path in files:
        if ref in (path.stem, path.name):
            return path
    if ref.isdigit():
        for path in files:
            number = re.match(r"^(\d+)", path.stem)
            if number and int(number.group(1)) == int(ref):
                return path
    for path in files:
        if _declared_id(path) == ref:
            return path
    known = ", ".join(_declared_id(p) or p.stem for p in files) or "none"
    raise LabError(f"no lab {ref!r} in {directory} (labs: {known})")


@dataclass(frozen=True)
class CatalogEntry:
    """One lab file: the lab when it loads, its problems when it does not."""

    path: Path
    lab: LabDef | None
    problems: tuple[Problem, ...] = ()

    @property
    def id(self) -> str:
        return self.lab.id if self.lab is not None else (_declared_id(self.path) or self.path.stem)


def load_catalog(directory: Path) -> list[CatalogEntry]:
    """Every lab of ``directory``, loaded and validated; two labs with one id
    are a problem of the second."""
    from sim.lab.loader import load_lab

    entries = []
    seen: dict[str, Path] = {}
    for path in lab_files(directory):
        try:
            lab = load_lab(path)
        except LabFileError as err:
            entries.append(CatalogEntry(path, None, tuple(err.problems)))
            continue
        first = seen.setdefault(lab.id, path)
        if first != path:
            where = locate_key(path, "id")
            problem = Problem(
                str(path), where[0], where[1], f"id: {lab.id!r} is also the id of {first.name}"
            )
            entries.append(CatalogEntry(path, None, (problem,)))
            continue
        entries.append(CatalogEntry(path, lab))
    return entries


def locate_key(path: Path, key: str) -> tuple[int, int]:
    from sim.spec.yamlpos import load_yaml, locate

    doc, _ = load_yaml(path)
    return locate(doc, (key,)) if isinstance(doc, dict) else (1, 1)
