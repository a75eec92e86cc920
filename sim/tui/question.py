"""A question step: multiple choice or a short answer, with feedback.

Multiple choice is a list of the choices (arrows move, Enter or a click
answers; long choices wrap); a short answer is a line of text (Enter
answers). The widget only asks: it posts :class:`QuestionWidget.Answered`,
the lab screen has the engine judge it and calls
:meth:`QuestionWidget.show_feedback`, which marks the choice ✓ or ✗ and shows
why.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Input, OptionList, Static
from textual.widgets.option_list import Option

from sim.lab.engine import Feedback
from sim.lab.model import QuestionStep
from sim.tui.inline import inline_markdown, prose

__all__ = ["QuestionWidget"]


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
        #: Each choice answered so far, with whether it was right.
        self.marks: dict[str, bool] = {}

    def compose(self) -> ComposeResult:
        if self.step.multiple_choice:
            yield Static("Pick one (↑ ↓, then Enter or a click):", classes="prompt", id="how")
            yield OptionList(*self._options(), id="choices")
        else:
            with Horizontal(classes="answer-row"):
                yield Input(placeholder="Your answer, then Enter", id="answer")
                yield Button("Answer", id="submit", variant="primary", compact=True)
        yield Static("", id="verdict")
        yield Static("", id="feedback")

    def _options(self) -> list[Option]:
        options = []
        for choice in self.step.choices:
            mark = self.marks.get(choice.id)
            # A grid, so that a long choice wraps under its own text.
            prompt = Table.grid(padding=(0, 1, 0, 0))
            prompt.add_column(width=4, no_wrap=True)
            prompt.add_column(ratio=1)
            if mark is None:
                label = Text(f"  {choice.id})", style="bold")
            else:
                style = "bold green" if mark else "bold red"
                label = Text(f"{'✓' if mark else '✗'} {choice.id})", style=style)
            prompt.add_row(label, inline_markdown(choice.text))
            options.append(Option(prompt, id=choice.id))
        return options

    def on_mount(self) -> None:
        if self.solved:
            self.query_one("#verdict", Static).update(
                Text("✓ You answered this question correctly.", style="bold green")
            )

    # -- answering -----------------------------------------------------------------

    def submit(self, answer: str | None = None) -> None:
        if answer is None and not self.step.multiple_choice:
            answer = self.query_one("#answer", Input).value.strip() or None
        if answer is None:
            what = "Pick a choice first" if self.step.multiple_choice else "Type an answer first"
            self.query_one("#verdict", Static).update(Text(what, style="yellow"))
            return
        self.post_message(self.Answered(self, self.step.id, answer))

    @on(OptionList.OptionSelected, "#choices")
    def _choice_made(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.submit(event.option.id)

    @on(Button.Pressed, "#submit")
    def _answer_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.submit()

    @on(Input.Submitted, "#answer")
    def _answer_typed(self, event: Input.Submitted) -> None:
        event.stop()
        self.submit()

    def show_feedback(self, feedback: Feedback, attempts: int = 0) -> None:
        verdict = self.query_one("#verdict", Static)
        tries = f" (attempt {attempts})" if attempts > 1 else ""
        if feedback.correct:
            verdict.update(Text(f"✓ Correct{tries}", style="bold green"))
        else:
            verdict.update(Text(f"✗ Not quite — try again{tries}", style="bold red"))
        self.query_one("#feedback", Static).update(prose(feedback.text))
        self.set_class(feedback.correct, "correct")
        self.set_class(not feedback.correct, "wrong")
        if feedback.choice is not None and self.step.multiple_choice:
            self.marks[feedback.choice] = feedback.correct
            choices = self.query_one("#choices", OptionList)
            highlighted = choices.highlighted
            choices.set_options(self._options())
            choices.highlighted = highlighted
