"""Courses: a directory of labs, topologies and notebooks, with a manifest.

::

    course/
      course.yaml        title, version, order (the manifest)
      labs/*.yaml        the labs, played in the manifest's order
      topologies/*.yaml  the topologies the labs run on
      notebooks/         optional

The repository itself is one (``course.yaml`` at its root, beside ``labs/``
and ``topologies/``; the wheel carries it to ``sim/data``). ``maillab
--course DIR`` or ``$MAILLAB_COURSE`` makes ``list``, ``check``, ``run`` and
the TUI use a course's labs; ``maillab pack`` writes one.

The manifest is checked like every other file maillab reads: each problem as
``PATH:LINE:COL: message`` (the spec engine, :mod:`sim.spec`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sim.errors import InputError, Problem
from sim.fastclass import dataclass
from sim.spec.kinds import Checker, Field, ListOf, Record, Str, path_text, suggest

__all__ = [
    "COURSE_SPEC",
    "MANIFEST",
    "Course",
    "course_from_env",
    "load_course",
    "ordered_lab_files",
]

MANIFEST = "course.yaml"
#: Where ``maillab --course DIR`` puts DIR for the rest of the process (and
#: the processes it starts: ``maillab serve`` runs a TUI per tab).
ENV = "MAILLAB_COURSE"

COURSE_SPEC = Record(
    {
        "title": Field(Str(), required=True, description="the course's name, shown to students"),
        "version": Field(
            Str(pattern=r"^[0-9A-Za-z][0-9A-Za-z.+-]*$", pattern_hint="such as 1.0 or 2026.1"),
            required=True,
            description='the course\'s version (quote it in YAML: `"1.0"`)',
        ),
        "order": Field(
            ListOf(Str(), min_items=1),
            required=True,
            description="the lab files of `labs/`, by file name with or without `.yaml`, "
            "in the order students take them",
        ),
        "description": Field(Str(markdown=True), description="an introduction"),
        "audience": Field(
            Str(enum=("student", "instructor")),
            description="written by `maillab pack`: `student` (no solutions) or `instructor`",
        ),
    },
    name="Course",
    description="A course's manifest, `course.yaml`.",
)


@dataclass(frozen=True)
class Course:
    root: Path
    title: str
    version: str
    #: The lab files, in the manifest's order.
    labs: tuple[Path, ...]
    description: str = ""
    audience: str = ""

    @property
    def labs_dir(self) -> Path:
        return self.root / "labs"

    @property
    def topologies_dir(self) -> Path:
        return self.root / "topologies"

    def to_json(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "title": self.title,
            "version": self.version,
            "labs": [p.name for p in self.labs],
            "audience": self.audience or None,
        }


def _files(labs: Path) -> list[Path]:
    if not labs.is_dir():
        return []
    return sorted(
        p
        for p in labs.iterdir()
        if p.is_file() and p.suffix in (".yaml", ".yml") and not p.name.startswith(".")
    )


def _analyse(root: Path) -> tuple[Course | None, list[Problem]]:
    from sim.spec.yamlpos import load_yaml, locate

    manifest = root / MANIFEST
    if not root.is_dir():
        return None, [Problem(str(root), 1, 1, "no such course directory")]
    if not manifest.is_file():
        return None, [
            Problem(
                str(manifest), 1, 1, "a course needs a manifest course.yaml (title, version, order)"
            )
        ]
    doc, problems = load_yaml(manifest)
    if problems:
        return None, problems
    if not isinstance(doc, dict):
        return None, [
            Problem(str(manifest), 1, 1, "the manifest must be a mapping (title, version, order)")
        ]
    checker = Checker(str(manifest))
    COURSE_SPEC.check(doc, (1, 1), (), checker)
    if checker.problems:
        return None, sorted(checker.problems)

    def add(path: tuple[str | int, ...], message: str) -> None:
        line, col = locate(doc, path)
        problems.append(Problem(str(manifest), line, col, f"{path_text(path)}: {message}"))

    files = _files(root / "labs")
    by_name = {p.name: p for p in files} | {p.stem: p for p in files}
    ordered: list[Path] = []
    for i, name in enumerate(doc["order"]):
        found = by_name.get(str(name))
        if found is None:
            known = sorted(p.stem for p in files)
            hint = suggest(str(name), known) or f" (labs/: {', '.join(known) or 'no lab files'})"
            add(("order", i), f"no lab file {name!r} in {root / 'labs'}{hint}")
        elif found in ordered:
            add(("order", i), f"{name!r} is listed twice")
        else:
            ordered.append(found)
    for path in files:
        if path not in ordered and not problems:
            add(("order",), f"labs/{path.name} is not in `order`: list it, or move it out of labs/")
    if not (root / "topologies").is_dir():
        problems.append(
            Problem(str(manifest), 1, 1, f"a course needs a topologies/ directory in {root}")
        )
    if problems:
        return None, sorted(problems)
    return (
        Course(
            root,
            str(doc["title"]),
            str(doc["version"]),
            tuple(ordered),
            str(doc.get("description") or ""),
            str(doc.get("audience") or ""),
        ),
        [],
    )


def validate_course(root: str | os.PathLike[str]) -> list[Problem]:
    """Every problem of a course's manifest (not of its lab files)."""
    return _analyse(Path(root))[1]


def load_course(root: str | os.PathLike[str]) -> Course:
    """The course at ``root``; raises :class:`InputError` with every problem."""
    course, problems = _analyse(Path(root))
    if course is None:
        raise InputError(problems)
    return course


def course_from_env() -> Course | None:
    """The course ``--course`` / ``$MAILLAB_COURSE`` names, if any."""
    value = os.environ.get(ENV)
    return load_course(value) if value else None


def ordered_lab_files(directory: Path) -> list[Path] | None:
    """The lab files of a course's ``labs/`` in its manifest's order; None
    when ``directory`` is not the labs of a course with a valid manifest."""
    if directory.name != "labs" or not (directory.parent / MANIFEST).is_file():
        return None
    course, _ = _analyse(directory.parent)
    return list(course.labs) if course is not None else None
