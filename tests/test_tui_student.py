"""The TUI asks the student id once, on its first start, and stores it with
the progress (issue 16 §1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tuikit import settle

from sim.lab.progress import FileProgressStore, stored_student
from sim.tui.app import MaillabApp
from sim.tui.home import HomeScreen
from sim.tui.student import StudentScreen, needs_student

SIZE = (80, 24)


async def test_the_first_start_asks_the_student_id_once(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    app = MaillabApp(store=FileProgressStore(path, "login"), ask_student=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, StudentScreen)
        await pilot.press("ctrl+u", "a", "space", "b", "enter")  # not an id: asked again
        await settle(pilot)
        assert isinstance(app.screen, StudentScreen)
        await pilot.press(*["ctrl+u", "a", "l", "i", "c", "e", "enter"])
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert app.store.student == "alice" and app.student == "alice"
    assert stored_student(path) == "alice"


def test_the_environment_or_a_stored_id_means_no_question(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILLAB_HOME", str(tmp_path))
    monkeypatch.delenv("MAILLAB_STUDENT", raising=False)
    assert needs_student()
    monkeypatch.setenv("MAILLAB_STUDENT", "bob")
    assert not needs_student()


def test_a_notebook_asks_once_then_remembers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sim.notebook import lab_session, student

    monkeypatch.setenv("MAILLAB_HOME", str(tmp_path))
    monkeypatch.delenv("MAILLAB_STUDENT", raising=False)
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return "carol"

    assert student(ask) == "carol"
    assert student(ask) == "carol"
    assert len(asked) == 1
    session = lab_session("dkim")
    assert session.student == "carol" and session.store.student == "carol"
    assert session.definition.student == "carol"
