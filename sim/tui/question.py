"""A question step: multiple choice or a short answer, with feedback.

Multiple choice is a radio set (arrows move, Enter or Space picks, then
Enter on *Answer*); a short answer is a line of text (Enter answers). The
widget only asks: it posts :class:`QuestionWidget.Answered` and the lab
screen has the engine judge it, then calls :meth:`QuestionWidget.show_feedback`.
"""

from __future__ import annotations

import re

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Input, Markdown, RadioButton, RadioSet, Static

from sim.lab.engine import Feedback
from sim.lab.model import QuestionStep

__all__ = ["QuestionWidget", "inline_code"]

_CODE = re.compile(r"`([^`]+)`")


def inline_code(text: str) -> Text:
    """Text with Markdown's ```code``` spans shown in bold, without backticks
    (radio labels are not Markdown)."""
    out = Text()
    last = 0
    for match in _CODE.finditer(text):
        out.append(text[last : match.start()])
        out.append(match.group(1), style="bold")
        last = match.end()
    out.append(text[last:])
    return out


class QuestionWidget(Vertical):
    """Asks one question and shows the feedback on each answer."""

    class Answered(Message):
        """The student answered: a choice id, or the text typed."""

        def __init__(self, question: QuestionWidget, step_id: str, answer: str) -> None:
            super().__init__()
            self.question = question
            self.step_id = step_id
            self.answer = answer

        @property
        def control(self) -> QuestionWidget:
            return self.question

    def __init__(
        self,
        step: QuestionStep,
        *,
        solved: bool = False,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.step = step
        self.solved = solved

    def compose(self) -> ComposeResult:
        if self.step.multiple_choice:
            with RadioSet(id="choices"):
                for choice in self.step.choices:
                    label = Text(f"{choice.id})  ", style="bold") + inline_code(choice.text)
                    yield RadioButton(label, name=choice.id)
        else:
            yield Input(placeholder="Your answer, then Enter", id="answer")
        with Horizontal(classes="buttons"):
            yield Button("Answer", id="submit", variant="primary")
            yield Static("", id="attempts")
        yield Static("", id="verdict")
        yield Markdown("", id="feedback")

    def on_mount(self) -> None:
        if self.solved:
            self.query_one("#verdict", Static).update(
                Text("✓ You answered this question correctly.", style="bold green")
            )

    # -- answering -----------------------------------------------------------------

    def current_answer(self) -> str | None:
        if self.step.multiple_choice:
            pressed = self.query_one("#choices", RadioSet).pressed_button
            return pressed.name if pressed is not None else None
        text = self.query_one("#answer", Input).value.strip()
        return text or None

    def submit(self) -> None:
        answer = self.current_answer()
        if answer is None:
            what = "Pick a choice first" if self.step.multiple_choice else "Type an answer first"
            self.query_one("#verdict", Static).update(Text(what, style="yellow"))
            return
        self.post_message(self.Answered(self, self.step.id, answer))

    @on(Button.Pressed, "#submit")
    def _answer_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.submit()

    @on(Input.Submitted, "#answer")
    def _answer_typed(self, event: Input.Submitted) -> None:
        event.stop()
        self.submit()

    @on(RadioSet.Changed, "#choices")
    def _choice_made(self, event: RadioSet.Changed) -> None:
        # Keyboard flow: arrows, Enter to pick, Enter again to answer.
        self.query_one("#submit", Button).focus()

    def show_feedback(self, feedback: Feedback) -> None:
        verdict = self.query_one("#verdict", Static)
        if feedback.correct:
            verdict.update(Text("✓ Correct", style="bold green"))
        else:
            verdict.update(Text("✗ Not quite — try again", style="bold red"))
        self.query_one("#feedback", Markdown).update(feedback.text)
        self.set_class(feedback.correct, "correct")
        self.set_class(not feedback.correct, "wrong")

    def show_attempts(self, attempts: int) -> None:
        shown = f"{attempts} attempt{'s' if attempts != 1 else ''}" if attempts else ""
        self.query_one("#attempts", Static).update(shown)
