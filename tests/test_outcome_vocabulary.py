"""One vocabulary of outcomes (issue 21): every outcome an experiment can
report is one lab files may expect, and the one the docs explain."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from sim.experiments import OUTCOMES
from sim.experiments import send as send_module
from sim.lab import checks
from sim.lab.loader import validate_lab_file

ROOT = Path(__file__).resolve().parent.parent


def _produced() -> set[str]:
    """Every outcome the experiments' code can put in a result: the string
    values given to an ``outcome`` key or attribute, and the tables that map
    onto outcomes."""
    found: set[str] = set()
    for path in (ROOT / "sim" / "experiments").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if (
                        isinstance(key, ast.Constant)
                        and key.value == "outcome"
                        and isinstance(value, ast.Constant)
                    ):
                        found.add(str(value.value))
            if (
                isinstance(node, ast.keyword)
                and node.arg == "outcome"
                and isinstance(node.value, ast.Constant)
            ):
                found.add(str(node.value.value))
            if isinstance(node, ast.IfExp):
                for side in (node.body, node.orelse):
                    if isinstance(side, ast.Constant) and side.value in (
                        "deferred",
                        "rejected",
                    ):
                        found.add(str(side.value))
    found |= set(send_module._FOLDER_OUTCOME.values())
    found |= set(send_module._RANK)
    return found


def test_every_produced_outcome_is_in_the_vocabulary() -> None:
    produced = _produced()
    assert {"delivered", "junk", "forwarded", "rejected", "bounced", "blocked"} <= produced
    assert produced <= set(OUTCOMES), produced - set(OUTCOMES)


def test_the_lab_checks_use_the_vocabulary() -> None:
    assert tuple(OUTCOMES) == checks.OUTCOMES


LAB = """\
id: vocab
title: Outcomes
topology: {topology}
estimated_time: 5m
goals: [Say what became of a message]
steps:
  - id: s
    kind: experiment
    title: Send
    text: Send one.
    run: {{send: {{from: spammer, to: bob@corp.example}}}}
    expect: [{{outcome: {outcome}}}]
"""


@pytest.mark.parametrize("outcome", sorted(OUTCOMES))
def test_validation_accepts_every_outcome(outcome: str, tmp_path: Path) -> None:
    text = LAB.format(topology=ROOT / "topologies" / "backup-mx.yaml", outcome=outcome)
    path = tmp_path / "vocab.yaml"
    path.write_text(text)
    problems = validate_lab_file(path, curriculum=False)
    assert problems == []


def test_validation_refuses_a_word_outside_it(tmp_path: Path) -> None:
    text = LAB.format(topology=ROOT / "topologies" / "backup-mx.yaml", outcome="arrived")
    path = tmp_path / "vocab.yaml"
    path.write_text(text)
    problems = validate_lab_file(path, curriculum=False)
    assert any("arrived" in p.message for p in problems)


def test_the_docs_list_the_vocabulary() -> None:
    text = (ROOT / "docs" / "concepts.md").read_text()
    table = dict(re.findall(r"^\| `([a-z]+)` \| (.+) \|$", text, re.MULTILINE))
    assert {k: table.get(k) for k in OUTCOMES} == OUTCOMES
    reference = (ROOT / "docs" / "lab-reference.md").read_text()
    for outcome in OUTCOMES:
        assert f"`{outcome}`" in reference
