"""The student id, asked once on the TUI's first start (issue 16 §1).

The id picks the student's variant of every lab (sim.lab.variants) and names
their submission (``maillab export``). It is stored with the progress, so it
is asked only once per machine account; ``$MAILLAB_STUDENT`` overrides it
and then nothing is asked.
"""

from __future__ import annotations

import os
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from sim.errors import SimError
from sim.lab.progress import check_student_id, remember_student, stored_student

__all__ = ["StudentScreen", "needs_student"]

_ASK = (
    "Your student id, as your teacher gave it (a login, a number). It picks "
    "your own version of each lab, and names what you hand in with "
    "`maillab export`. You are asked once; $MAILLAB_STUDENT overrides it."
)


def needs_student() -> bool:
    """Whether to ask: no ``$MAILLAB_STUDENT`` and no id stored yet."""
    return not os.environ.get("MAILLAB_STUDENT") and stored_student() is None


class StudentScreen(ModalScreen[str]):
    """Dismisses with the student id, once it is valid and stored."""

    def __init__(self, suggestion: str = "", path: Path | None = None) -> None:
        super().__init__()
        self.suggestion = suggestion
        #: The progress file the id is stored in (None: the default one).
        self.path = path

    def compose(self) -> ComposeResult:
        with Vertical(id="student-box"):
            yield Static("[b]Who are you?[/b]", id="student-title")
            yield Static(_ASK, id="student-text")
            yield Input(value=self.suggestion, placeholder="student id", id="student-id")
            yield Static("", id="student-error")

    def on_mount(self) -> None:
        self.query_one("#student-id", Input).focus()

    @on(Input.Submitted, "#student-id")
    def _submitted(self, event: Input.Submitted) -> None:
        error = self.query_one("#student-error", Static)
        try:
            student = remember_student(check_student_id(event.value), self.path)
        except SimError as err:
            error.update(f"[red]{err}[/red]")
            return
        self.dismiss(student)
