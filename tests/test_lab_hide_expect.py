"""`hide_expect_until`: an experiment's verdicts stay hidden from the student
until the question they would answer is answered (issue 21). The engine
withholds them (``detail``, ``to_json``, ``shown_expectations``), so every
front end honours it; the TUI says why nothing is judged yet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from sim.lab.engine import LabSession
from sim.lab.loader import load_lab, validate_lab_file
from sim.lab.model import ExperimentStep, LabDef
from sim.notebook import show_outcome
from sim.tui.lab import _outcome_text

ROOT = Path(__file__).resolve().parents[1]
KEY_NAME = "mail2026._domainkey.home.example"


@pytest.fixture(scope="module")
def lab() -> LabDef:
    return load_lab(ROOT / "labs" / "06-dkim.yaml")


@pytest.fixture
def session(lab: LabDef) -> Iterator[LabSession]:
    with LabSession(lab, backend="local") as running:
        yield running


def _rendered(renderable: object) -> str:
    console = Console(width=100, record=True)
    console.print(renderable)
    return console.export_text()


def test_the_dkim_lab_hides_the_key_name_until_the_question_is_answered(
    lab: LabDef, session: LabSession
) -> None:
    step = lab.step("no-key-yet")
    assert isinstance(step, ExperimentStep)
    assert step.hide_expect_until == "where-is-the-key"
    outcome = session.run_experiment(step)
    assert outcome.error is None
    assert session.progress.done("no-key-yet")  # the step is done: it ran
    assert outcome.hidden_until == "where-is-the-key"
    # The verdicts were judged (they pass) but nothing shows them.
    assert outcome.expectations and all(e.passed for e in outcome.expectations)
    assert outcome.shown_expectations == ()
    assert KEY_NAME not in outcome.detail
    data = outcome.to_json()
    assert data["expectations"] == [] and data["passed"] is None
    assert data["hidden_until"] == "where-is-the-key"
    shown = _rendered(_outcome_text(outcome))
    assert "shown once you have answered" in shown
    assert KEY_NAME not in shown and "✓" not in shown
    # A notebook's card of the step says the same.
    card = show_outcome(outcome)
    assert card.row("expects") == "shown once you have answered the question where-is-the-key"
    assert not any(label in ("✓", "✗") for label, _ in card.rows)

    assert not session.answer("where-is-the-key", "home.example").correct
    assert session.outcome_of(step).hidden_until == "where-is-the-key"  # type: ignore[union-attr]
    assert session.answer("where-is-the-key", KEY_NAME).correct
    revealed = session.outcome_of(step)
    assert revealed is not None and revealed.hidden_until is None
    assert KEY_NAME in revealed.detail
    assert KEY_NAME in _rendered(_outcome_text(revealed))
    opened = show_outcome(revealed)
    assert opened.row("expects") is None
    assert [label for label, _ in opened.rows if label in ("✓", "✗")] == ["✓", "✓", "✓"]
    assert any(KEY_NAME in text for _, text in opened.rows)


def test_hide_expect_until_must_name_a_later_question(tmp_path: Path) -> None:
    text = (ROOT / "labs" / "06-dkim.yaml").read_text()
    wrong = text.replace("hide_expect_until: where-is-the-key", "hide_expect_until: where-is-key")
    assert wrong != text
    lab_file = tmp_path / "labs" / "06-dkim.yaml"
    lab_file.parent.mkdir()
    lab_file.write_text(wrong)
    (tmp_path / "topologies").symlink_to(ROOT / "topologies")
    problems = validate_lab_file(lab_file)
    assert [p.message for p in problems] == [
        "steps[1].hide_expect_until: 'where-is-key' is not a later question step "
        "(did you mean 'where-is-the-key'?)"
    ]
    assert problems[0].line == text[: text.index("hide_expect_until")].count("\n") + 1
