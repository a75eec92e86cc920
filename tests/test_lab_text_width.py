"""Every diagram and code block in the labs' texts fits 76 columns.

A code block is shown as written (no wrapping: a wrapped diagram is
unreadable), inside the lab screen's text column, which is 76 columns wide
on an 80-column terminal (a border and padding on each side). The test reads
every Markdown text of every lab (descriptions, step texts, choices and
their feedback, hints, explanations) and measures each line of each fenced
block in terminal cells (a "→" is one cell, a CJK character two).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.cells import cell_len

from sim.lab.catalog import labs_dir
from sim.lab.loader import load_lab
from sim.lab.model import LabDef, QuestionStep, TaskStep

WIDTH = 76
LABS = sorted(labs_dir().glob("*.yaml"))
_FENCE = re.compile(r"^\s*(```|~~~)")


def texts(lab: LabDef) -> Iterator[tuple[str, str]]:
    """(where, Markdown text) for every text a student reads."""
    yield "description", lab.description
    for step in lab.steps:
        yield f"{step.id}.text", step.text
        if isinstance(step, QuestionStep):
            for choice in step.choices:
                yield f"{step.id}.choice {choice.id}", choice.text
                yield f"{step.id}.choice {choice.id}.feedback", choice.feedback
            for wrong in step.wrong:
                yield f"{step.id}.wrong", wrong.feedback
            yield f"{step.id}.feedback", step.feedback
            yield f"{step.id}.explanation", step.explanation
        if isinstance(step, TaskStep):
            for i, hint in enumerate(step.hints, 1):
                yield f"{step.id}.hint {i}", hint
            yield f"{step.id}.explanation", step.explanation


def code_lines(text: str) -> Iterator[str]:
    inside = False
    for line in text.splitlines():
        if _FENCE.match(line):
            inside = not inside
            continue
        if inside:
            yield line


def test_code_lines_are_found_only_inside_fences() -> None:
    text = "prose that is long " * 10 + "\n```\n a ── b\n```\nmore prose\n"
    assert list(code_lines(text)) == [" a ── b"]


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.stem)
def test_every_code_block_fits_76_columns(path: Path) -> None:
    lab = load_lab(path)
    too_wide = [
        f"{where}: {cell_len(line.rstrip())} columns: {line.rstrip()}"
        for where, text in texts(lab)
        for line in code_lines(text)
        if cell_len(line.rstrip()) > WIDTH
    ]
    assert not too_wide, "\n".join(too_wide)
