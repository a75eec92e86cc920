"""`maillab check --explain`: each task's check before and after its
solution, predicate by predicate with the facts of the runs, and flags for a
task that passes or fails by accident (issue 21, authoring tools)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sim.cli import main
from sim.lab.checks import PredicateOutcome
from sim.lab.engine import CheckOutcome
from sim.lab.explain import explain_task, explanation_lines
from sim.lab.facts import RunFacts
from sim.lab.model import Check, ExperimentRun, Predicate, TaskStep

ROOT = Path(__file__).resolve().parents[1]


def _check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(["check", *argv, "--explain", "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_explain_shows_why_each_task_failed_before_its_solution(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, report = _check(capsys, "receive-only", "--labs-dir", str(ROOT / "labs"))
    assert code == 0
    steps = {s["id"]: s for s in report["labs"][0]["steps"]}
    # Only tasks are explained.
    assert "explain" not in steps["send-to-bob"]
    null_mx = steps["null-mx"]["explain"]
    assert null_mx["flags"] == []
    before = null_mx["before"]
    assert before["passed"] is False
    failing = {(p["check"], p["predicate"]) for p in before["predicates"] if not p["passed"]}
    # The intended reasons: no null MX published, so the sender did not get 556 5.1.10.
    assert (0, "answer_is") in failing
    assert (1, "reply_code") in failing
    assert before["facts"]["outcome"] == "blocked"
    after = null_mx["after"]
    assert after["passed"] is True
    assert all(p["passed"] for p in after["predicates"])
    assert after["facts"]["answer"] == "0 ."
    # The implicit-MX task: only the MX lookup fails before, the delivery already works.
    implicit = steps["implicit-mx"]["explain"]["before"]["predicates"]
    assert [p["predicate"] for p in implicit if not p["passed"]] == ["answer_count"]


LAB = """\
id: already-done
title: A task whose check passes before its solution
topology: receive-only.yaml
estimated_time: 5m
goals: [An author sees a task that teaches nothing.]
steps:
  - id: nothing-to-do
    kind: task
    title: qq.example already has its MX
    text: Publish an MX record for qq.example.
    checks:
      - run: {dig: {from: mta, name: qq.example, type: MX}}
        expect: [{answer_count: 1}]
    hints: [It is already there.]
    solution:
      - dns_add: {node: ns, zone: qq.example, record: "@ TXT \\"v=spf1 -all\\""}
"""


def test_explain_flags_a_task_that_passes_before_its_solution(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(ROOT / "topologies" / "receive-only.yaml", tmp_path / "receive-only.yaml")
    (tmp_path / "lab.yaml").write_text(LAB)
    code, report = _check(capsys, str(tmp_path / "lab.yaml"))
    assert code == 1
    (step,) = report["labs"][0]["steps"]
    assert step["passed"] is False
    assert step["explain"]["flags"] == ["passes-before"]
    assert step["explain"]["after"] is None
    # The text report says so in words.
    assert main(["check", str(tmp_path / "lab.yaml"), "--explain"]) == 1
    text = capsys.readouterr().out
    assert "! passes-before: the check already passes before the solution" in text
    assert "ok   [1] answer_count: 1" in text


def _outcome(by_check: list[tuple[Check, tuple[PredicateOutcome, ...]]]) -> CheckOutcome:
    results = tuple(r for _, outcomes in by_check for r in outcomes)
    return CheckOutcome(
        all(r.passed for r in results), "", by_check=tuple(by_check), facts=RunFacts()
    )


def test_explain_flags_a_check_that_fails_by_accident() -> None:
    run = ExperimentRun("send", "mta", (("to", ("bob@qq.example",)),))
    check = Check((Predicate("outcome", "delivered"), Predicate("reply_code", 250)), run=run)
    task = TaskStep("t", "T", checks=(check,))
    # The experiment did not run: one failed outcome stands for the whole check.
    errored = _outcome([(check, (PredicateOutcome(False, "send from mta failed: boom"),))])
    fixed = _outcome(
        [(check, (PredicateOutcome(True, "delivered"), PredicateOutcome(True, "250")))]
    )
    explained = explain_task(task, errored, fixed)
    assert explained.flags == ("error-before",)
    (only,) = explained.before.predicates
    assert only.error and only.predicate == "run" and "boom" in only.detail
    # A predicate that failed before still fails after: the solution fixed something else.
    half = _outcome(
        [(check, (PredicateOutcome(True, "delivered"), PredicateOutcome(False, "550")))]
    )
    still = _outcome(
        [(check, (PredicateOutcome(False, "bounced"), PredicateOutcome(False, "550")))]
    )
    assert explain_task(task, half, still).flags == ("fails-after", "same-failure-after")
    lines = explanation_lines(explain_task(task, half, still))
    assert any(line.startswith("  FAIL [1] reply_code: 250") for line in lines)
    assert any("! same-failure-after" in line for line in lines)
