"""Helpers for the picture tests: recorded results and snapshot files.

The recorded results in ``tests/fixtures/traces/`` are real ``send`` results
(see ``regenerate.py`` there); loading them gives a :class:`SendResult` with
its trace, without starting a lab.
"""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from sim.experiments.send import SendResult
from sim.trace import Trace, TraceEvent

TRACES = Path(__file__).resolve().parent / "fixtures" / "traces"


def recorded(name: str) -> SendResult:
    raw: dict[str, Any] = json.loads((TRACES / f"{name}.json").read_text(encoding="utf-8"))
    known = {f.name for f in fields(SendResult)} - {"trace", "seconds"}
    result = SendResult(**{k: v for k, v in raw.items() if k in known})
    result.trace = Trace(id=name, events=[TraceEvent.from_json(e) for e in raw["trace"]])
    return result


class TextSnapshot(SingleFileSnapshotExtension):
    """One ``.txt`` file per snapshot, readable in a diff."""

    _write_mode = WriteMode.TEXT
    _file_extension = "txt"


class SvgSnapshot(SingleFileSnapshotExtension):
    """One ``.svg`` file per snapshot: open it to see the picture."""

    _write_mode = WriteMode.TEXT
    _file_extension = "svg"


# -- a grammar check of Mermaid sequenceDiagram text ----------------------------------

_ID = r"[A-Za-z_][A-Za-z0-9_]*"
# Mermaid reserves ';' (statement end), '#' (entity codes) and '<' '>' (HTML):
# they may appear only as entity codes such as ``#59;``.
_TEXT = r"(?:[^;<>#\n]|#\d+;)*"
_RULES = [
    re.compile(r"^sequenceDiagram$"),
    re.compile(rf"^    title {_TEXT}$"),
    re.compile(rf"^    participant (?P<decl>{_ID})(?: as {_TEXT})?$"),
    re.compile(rf"^    (?P<a>{_ID})(?:->>|-->>|-x|--x|->|-->)(?P<b>{_ID}): {_TEXT}$"),
    re.compile(rf"^    Note (?:over|left of|right of) (?P<a>{_ID})(?:,(?P<b>{_ID}))?: {_TEXT}$"),
    re.compile(r"^    rect rgb\(\d{1,3}, \d{1,3}, \d{1,3}\)$"),
    re.compile(r"^    end$"),
]


def mermaid_problems(text: str) -> list[str]:
    """Every line that is not a statement of Mermaid's sequenceDiagram grammar
    (the subset maillab writes), or that names an undeclared participant, or
    leaves a ``rect`` block open."""
    problems: list[str] = []
    declared: set[str] = set()
    depth = 0
    lines = text.rstrip("\n").split("\n")
    if not lines or lines[0] != "sequenceDiagram":
        problems.append("line 1: must be 'sequenceDiagram'")
    for number, line in enumerate(lines[1:], start=2):
        match = next((m for rule in _RULES[1:] if (m := rule.match(line))), None)
        if match is None:
            problems.append(f"line {number}: not a statement: {line!r}")
            continue
        groups = match.groupdict()
        if groups.get("decl"):
            declared.add(groups["decl"])
        for name in (groups.get("a"), groups.get("b")):
            if name and name not in declared:
                problems.append(f"line {number}: {name} is not a declared participant")
        if line.startswith("    rect "):
            depth += 1
        elif line == "    end":
            depth -= 1
            if depth < 0:
                problems.append(f"line {number}: 'end' without 'rect'")
    if depth > 0:
        problems.append("a rect block is not closed")
    return problems
