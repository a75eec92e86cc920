"""Export and grading by replay (issue 16 §2): the grade comes from the
replay, never from what the submission says."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from mininet_support import needs_mininet

from sim.cli import main
from sim.lab.engine import LabSession, _reference_step
from sim.lab.loader import load_lab
from sim.lab.progress import default_student, remember_student, stored_student

ROOT = Path(__file__).resolve().parents[1]
RECEIVE = ROOT / "labs" / "01-receive-only.yaml"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MAILLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MAILLAB_STUDENT", raising=False)
    return tmp_path


def _work_through(student: str, backend: str = "local") -> None:
    """A student doing lab 01 the reference way, saved in their progress file."""
    session = LabSession.for_student(load_lab(RECEIVE), backend, student=student)
    with session:
        for step in session.steps:
            assert _reference_step(session, step).passed
        # A wrong answer before the right one would count as an attempt:
        # the reference answered right at once.


def _export(home: Path, student: str) -> Path:
    out = home / f"{student}.json"
    assert main(["export", "receive-only", "-o", str(out), "--student", student]) == 0
    return out


def _grade(*paths: Path, backend: str = "local") -> dict[str, Any]:
    out = paths[0].with_suffix(".grades.json")
    assert main(["grade", *map(str, paths), "--backend", backend, "--json", str(out)]) == 0
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return data


def _rows(data: dict[str, Any], student: str) -> dict[str, dict[str, Any]]:
    return {r["step"]: r for r in data["rows"] if r["student"] == student}


def test_a_submission_holds_the_record_and_the_variant(home: Path) -> None:
    _work_through("alice")
    data = json.loads(_export(home, "alice").read_text(encoding="utf-8"))
    assert data["format"] == "maillab-submission" and data["student"] == "alice"
    (lab,) = data["labs"]
    assert lab["id"] == "receive-only" and lab["version"].startswith("sha256:")
    assert lab["variables"] == dict(load_lab(RECEIVE, student="alice").values)
    assert lab["steps"]["mx-target"]["answers"] == ["c"]
    assert any(a["step"] == "null-mx" for a in lab["actions"])
    assert all("seconds" in s for s in lab["steps"].values())


def test_an_honest_submission_passes_on_replay(home: Path) -> None:
    _work_through("alice")
    data = _grade(_export(home, "alice"))
    rows = _rows(data, "alice")
    assert set(rows) == {s.id for s in load_lab(RECEIVE).steps}
    assert all(r["passed"] for r in rows.values() if r["assessed"]), rows
    assert all(r["version_ok"] for r in rows.values())
    (summary,) = data["summary"]
    assert summary["passed"] == summary["assessed"] == summary["claimed"]


def test_a_tampered_submission_gets_no_credit(home: Path) -> None:
    """The file claims every step done and keeps the right answers, but the
    edits that make the tasks pass are gone: the tasks fail on replay."""
    _work_through("mallory")
    path = _export(home, "mallory")
    data = json.loads(path.read_text(encoding="utf-8"))
    (lab,) = data["labs"]
    lab["actions"] = []
    lab["steps"]["mx-target"]["answers"] = ["a"]  # a wrong choice, claimed done
    for step in lab["steps"].values():
        step["done"] = True
    lab["completed"] = "2026-01-01T00:00:00Z"
    path.write_text(json.dumps(data), encoding="utf-8")
    rows = _rows(_grade(path), "mallory")
    assert rows["null-mx"]["claimed"] and not rows["null-mx"]["passed"]
    assert rows["mx-target"]["claimed"] and not rows["mx-target"]["passed"]
    assert rows["dig-mx"]["passed"]  # what was really done still counts


def test_a_variant_is_graded_as_that_students(home: Path) -> None:
    """bob's edits name bob's domain; replayed as alice's variant they would
    not apply. Grading starts each student's own variant."""
    students = ["alice", "bob", "carol", "dave"]
    domains = {s: dict(load_lab(RECEIVE, student=s).values)["shop"] for s in students}
    a, b = next((x, y) for x in students for y in students if domains[x] != domains[y])
    for student in (a, b):
        _work_through(student)
    data = _grade(_export(home, a), _export(home, b))
    for student in (a, b):
        assert all(r["passed"] for r in _rows(data, student).values() if r["assessed"])


def test_csv_has_one_row_per_student_lab_and_step(home: Path) -> None:
    _work_through("alice")
    path = _export(home, "alice")
    out = home / "grades.csv"
    assert main(["grade", str(path), "--csv", str(out)]) == 0
    with out.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(load_lab(RECEIVE).steps)
    assert rows[0].keys() >= {"student", "lab", "step", "passed", "attempts", "hints", "seconds"}


def test_grade_explain_says_what_is_assessed_per_step(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grade", "--explain", "dkim", "--json", "-"]) == 0
    (lab,) = json.loads(capsys.readouterr().out)["labs"]
    assert [s["step"] for s in lab["steps"]] == [
        s.id for s in load_lab(ROOT / "labs" / "06-dkim.yaml").steps
    ]
    task = next(s for s in lab["steps"] if s["step"] == "publish-key")
    assert "edits are replayed" in task["assessed"] and "dkim=pass" in task["assessed"]
    assert lab["variables"][0]["name"] == "selector"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{}", 'not a maillab submission (no "format": "maillab-submission")'),
        ("[1", "not JSON"),
        (
            '{"format": "maillab-submission", "version": 1, "student": "a b", "labs": []}',
            "student:",
        ),
    ],
)
def test_a_bad_submission_is_one_line_exit_2(
    home: Path, capsys: pytest.CaptureFixture[str], content: str, expected: str
) -> None:
    path = home / "bad.json"
    path.write_text(content, encoding="utf-8")
    assert main(["grade", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0] and str(path) in err[0]


def test_the_student_id_is_stored_once_and_the_environment_wins(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert stored_student() is None
    remember_student("alice")
    assert stored_student() == "alice" and default_student() == "alice"
    monkeypatch.setenv("MAILLAB_STUDENT", "bob")
    assert default_student() == "bob"
    assert main(["export", "-o", str(home / "x.json"), "--student", "no spaces"]) == 2


@pytest.mark.mininet
@pytest.mark.parametrize("backend", [pytest.param("mininet", marks=needs_mininet)])
def test_grading_on_mininet_agrees_with_local(home: Path, backend: str) -> None:
    _work_through("alice")
    path = _export(home, "alice")
    local = _grade(path)
    mininet = _grade(path, backend=backend)
    assert [(r["step"], r["passed"]) for r in mininet["rows"]] == [
        (r["step"], r["passed"]) for r in local["rows"]
    ]
