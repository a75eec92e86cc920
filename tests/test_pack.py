"""`maillab pack`: a course for students without solutions, still valid and
playable; a course for instructors with them (issue 21)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from sim.cli import main
from sim.lab.catalog import lab_files
from sim.lab.engine import LabSession, run_reference
from sim.lab.loader import load_lab
from sim.lab.model import (
    CheckpointStep,
    ExperimentStep,
    ExplainStep,
    LabDef,
    QuestionStep,
    TaskStep,
)

ROOT = Path(__file__).resolve().parents[1]
SOURCES = lab_files(ROOT / "labs")


@pytest.fixture(scope="module")
def students(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("packs") / "students"
    code = main(["pack", "--student", "-o", str(out), "--labs-dir", str(ROOT / "labs")])
    assert code == 0
    return out


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)
    elif value is not None:
        yield str(value)


def _visible(doc: dict[str, Any]) -> str:
    """Everything of a source lab a student is shown before solving: texts,
    hints (asked for, and allowed to quote the answer), checks, choices."""
    parts = [doc.get("title"), doc.get("description"), *doc.get("goals", [])]
    parts += list(_leaves(doc.get("setup")))
    for step in doc["steps"]:
        parts += [step.get("title"), step.get("text"), *step.get("hints", [])]
        parts += list(_leaves(step.get("run")))
        parts += list(_leaves(step.get("checks")))
        if not step.get("hide_expect_until"):
            parts += list(_leaves(step.get("expect")))
        parts += [c.get("text") for c in step.get("choices", [])]
        parts += list(_leaves(step.get("wrong")))
        parts.append(step.get("feedback"))
    return "\n".join(str(p) for p in parts if p)


def _secrets(doc: dict[str, Any]) -> set[str]:
    """The source's solution values: answers, explanations, solution and
    mistake edits, hidden verdicts."""
    found: set[str] = set()
    for step in doc["steps"]:
        found.update(_leaves(step.get("solution")))
        found.update(_leaves(step.get("mistakes")))
        found.update(_leaves(step.get("accept")))
        if step.get("pattern"):
            found.add(step["pattern"])
        if step.get("kind") == "question":
            found.update(_leaves(step.get("explanation")))
            found.update(c["feedback"] for c in step.get("choices", []) if c.get("feedback"))
            answer = step.get("answer")
            if answer is not None:
                found.add(next(c["text"] for c in step["choices"] if c["id"] == answer))
        if step.get("hide_expect_until"):
            found.update(_leaves(step.get("expect")))
    return found


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_a_student_pack_contains_no_solution_value(students: Path, source: Path) -> None:
    doc = YAML(typ="safe").load(source.read_text())
    visible = _visible(doc)
    secrets = {s for s in _secrets(doc) if len(s.strip()) >= 4 and s.strip() not in visible}
    assert secrets, "the search must search for something"
    # The lab's own file and the manifest (another lab may show a value in its text).
    packed_text = (students / "labs" / source.name).read_text() + (
        students / "course.yaml"
    ).read_text()
    packed = YAML(typ="safe").load((students / "labs" / source.name).read_text())
    packed_leaves = list(_leaves(packed))
    for secret in sorted(secrets):
        chunk = secret.strip()
        assert chunk not in packed_text, f"{source.name}: {chunk[:60]!r} is in the student pack"
        assert not any(chunk in leaf for leaf in packed_leaves), chunk[:60]
    # No answer key, solution or wrong-solution list is left in any form.
    for step in packed["steps"]:
        assert not {"solution", "mistakes", "answer", "accept", "pattern"} & set(step)
        if step["kind"] == "question":
            assert "explanation" not in step and "sealed" in step
            assert all("feedback" not in c and c["sealed"] for c in step.get("choices", []))
            # Every choice's sealed feedback looks alike: the right one is not the short one.
            assert len({len(c["sealed"]) for c in step.get("choices", [])}) <= 1
    assert packed["pack"] == "student"


def test_the_student_pack_is_a_valid_course(
    students: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(students), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True
    manifest = YAML(typ="safe").load((students / "course.yaml").read_text())
    assert manifest["audience"] == "student"
    assert manifest["order"] == [p.stem for p in SOURCES]
    assert (students / "notebooks").is_dir()
    # `maillab check` needs solutions: it refuses a student pack in one line.
    assert main(["--course", str(students), "check", "receive-only"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "student pack has no reference solutions" in err[0]


def _play(packed: LabDef, source: LabDef) -> list[str]:
    """Walk a packed lab with the source's answers and solutions; return the
    ids of the steps done. Fails on anything a student could not do."""
    done = []
    with LabSession(packed, backend="local") as session:
        for step, original in zip(packed.steps, source.steps, strict=True):
            if isinstance(step, ExplainStep):
                session.mark_read(step)
            elif isinstance(step, ExperimentStep):
                assert session.run_experiment(step).error is None
            elif isinstance(step, QuestionStep):
                assert isinstance(original, QuestionStep)
                assert step.sealed is not None and step.answer is None and not step.accept
                for choice in original.choices:
                    if choice.id != original.answer:
                        wrong = session.answer(step, choice.id)
                        assert not wrong.correct and wrong.text == choice.feedback.strip()
                right = session.answer(step, original.reference_answer())
                assert right.correct, step.id
                assert right.text == (original.explanation.strip() or "Right.")
            elif isinstance(step, TaskStep):
                assert isinstance(original, TaskStep)
                assert not step.solution and not step.mistakes
                assert not session.check(step).passed
                for action in original.solution:
                    assert session.apply(step, action).ok
                outcome = session.check(step)
                assert outcome.passed, (step.id, outcome.detail)
            else:
                assert isinstance(step, CheckpointStep)
                assert session.check(step).passed
            done.append(step.id)
        assert session.complete
    return done


@pytest.mark.parametrize("name", ["01-receive-only", "06-dkim"])
def test_a_packed_lab_plays_to_the_end(students: Path, name: str) -> None:
    source = load_lab(ROOT / "labs" / f"{name}.yaml")
    packed = load_lab(students / "labs" / f"{name}.yaml")
    assert packed.pack == "student"
    assert _play(packed, source) == [s.id for s in source.steps]


def test_sealed_verdicts_open_with_the_right_answer(students: Path) -> None:
    packed = load_lab(students / "labs" / "06-dkim.yaml")
    step = packed.step("no-key-yet")
    assert isinstance(step, ExperimentStep) and step.sealed_expect and not step.expect
    with LabSession(packed, backend="local") as session:
        outcome = session.run_experiment(step)
        assert outcome.hidden_until == "where-is-the-key" and outcome.expectations == ()
        assert session.answer("where-is-the-key", "MAIL2026._domainkey.home.example").correct
        opened = session.outcome_of(step)
        assert opened is not None and opened.hidden_until is None
        assert [e.passed for e in opened.expectations] == [True, True, True]
        assert "mail2026._domainkey.home.example" in opened.detail


def test_a_resumed_student_keeps_what_a_right_answer_opened(students: Path, tmp_path: Path) -> None:
    from sim.lab.progress import FileProgressStore

    packed = load_lab(students / "labs" / "06-dkim.yaml")
    store = FileProgressStore(tmp_path / "progress.json")
    with LabSession(packed, store=store) as session:
        session.run_experiment("no-key-yet")
        assert session.answer("where-is-the-key", "mail2026._domainkey.home.example").correct
    saved = (tmp_path / "progress.json").read_text()
    with LabSession(packed, store=FileProgressStore(tmp_path / "progress.json")) as again:
        outcome = again.run_experiment("no-key-yet")
        assert outcome.hidden_until is None and outcome.expectations
    assert "gAAAA" not in saved  # the progress keeps answers, never a key


def test_an_instructor_pack_keeps_the_labs_as_written(tmp_path: Path) -> None:
    out = tmp_path / "staff"
    assert (
        main(["pack", "1", "spf", "--instructor", "-o", str(out), "--labs-dir", str(ROOT / "labs")])
        == 0
    )
    for name in ("01-receive-only.yaml", "05-spf.yaml"):
        assert (out / "labs" / name).read_bytes() == (ROOT / "labs" / name).read_bytes()
    assert YAML(typ="safe").load((out / "course.yaml").read_text())["order"] == [
        "01-receive-only",
        "05-spf",
    ]
    report = run_reference(load_lab(out / "labs" / "01-receive-only.yaml"))
    assert report.passed


def test_pack_refuses_a_directory_that_is_not_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    code = main(["pack", "1", "--student", "-o", str(tmp_path), "--labs-dir", str(ROOT / "labs")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an empty directory" in err[0]
    assert (tmp_path / "keep.txt").read_text() == "mine"
    assert main(["pack", "1", "-o", str(tmp_path / "x")]) == 2  # --student or --instructor
    assert os.listdir(tmp_path) == ["keep.txt"]


def test_a_student_pack_accepts_the_listed_forms_of_a_short_answer(students: Path) -> None:
    # Answers are judged without a running lab: no topology is started here.
    session = LabSession(load_lab(students / "labs" / "01-receive-only.yaml"))
    for given in ("25", "  Port   25 ", "25/TCP"):
        assert session.answer("which-port", given).correct, given
    wrong = session.answer("which-port", "587")
    assert not wrong.correct and "587" in wrong.text  # the misconception's own feedback
    assert not session.answer("which-port", "26").correct
