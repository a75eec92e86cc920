"""Every variant of a lab must be a valid lab (issue 16 §1).

A lab with variables is a family of labs, one per student. Validation reads
the family as follows:

* when the variables have few values together (their product is at most
  :data:`ALL_LIMIT`, passwords and built values aside), **every
  combination** is read;
* else :data:`SAMPLE` students (``student-1``, ``student-2``...) are read,
  each with the values drawn for them.

A failing variant is reported at the line of the problem, with the student
id and the values that make it fail, so that the author can reproduce it
(``maillab check LAB`` with ``MAILLAB_STUDENT``)::

    labs/01-x.yaml:40:7: variant of student-3 (shop=cafe.example): ...

:func:`variant_students` names the students ``maillab check --variants N``
runs the reference solution for.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from sim.errors import LabFileError, Problem
from sim.lab.loader import load_lab, validate_lab_file
from sim.lab.model import LabDef
from sim.lab.variants import describe_values

__all__ = ["ALL_LIMIT", "SAMPLE", "variant_problems", "variant_students", "variants"]

#: Read every combination of values when there are at most this many.
ALL_LIMIT = 64
#: Else read this many students' variants.
SAMPLE = 16


def variant_students(n: int) -> list[str]:
    """The student ids ``maillab check --variants N`` uses: the same on every machine."""
    return [f"student-{i}" for i in range(1, n + 1)]


def variants(lab: LabDef, sample: int = SAMPLE) -> Iterator[tuple[str | None, dict[str, str]]]:
    """The variants validation reads: (student or None, values) pairs."""
    pools = {v.name: v.values() for v in lab.variables if v.kind not in ("value", "password")}
    counts = [len(p) for p in pools.values() if p is not None]
    if all(p is not None for p in pools.values()) and _product(counts) <= ALL_LIMIT:
        names = list(pools)
        for combo in itertools.product(*(pools[n] or [] for n in names)):
            yield None, dict(zip(names, combo, strict=True))
        return
    for student in variant_students(sample):
        yield student, {}


def _product(counts: list[int]) -> int:
    total = 1
    for count in counts:
        total *= count
    return total


def variant_problems(path: str | os.PathLike[str], sample: int = SAMPLE) -> list[Problem]:
    """The problems of every variant of the lab at ``path`` but its default
    (which :func:`~sim.lab.loader.validate_lab_file` reads), each naming its
    variant; [] for a lab without variables or whose default does not load."""
    try:
        lab = load_lab(path)
    except LabFileError:
        return []
    problems: list[Problem] = []
    seen: set[tuple[tuple[str, str], ...]] = set()
    for student, chosen in variants(lab, sample):
        found = validate_lab_file(path, student=student, values=chosen or None)
        if not found:
            continue
        values = _values(Path(path), student, chosen)
        key = tuple(sorted(values.items()))
        if key in seen:
            continue
        seen.add(key)
        who = f"variant of {student}" if student else "variant"
        label = f"{who} ({describe_values(values)})"
        problems.extend(Problem(p.path, p.line, p.col, f"{label}: {p.message}") for p in found)
    return sorted(problems)


def _values(path: Path, student: str | None, chosen: Mapping[str, str]) -> dict[str, str]:
    """The values of a variant that does not load: the draws, read again."""
    from sim.lab.variants import draw_values, parse_variables
    from sim.spec.yamlpos import load_yaml

    doc, _ = load_yaml(path)
    variables, _ = parse_variables(doc, str(path))
    lab_id = str(doc.get("id") if isinstance(doc, dict) else path.stem)
    return draw_values(variables, student, lab_id, chosen or None)
