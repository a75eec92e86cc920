"""The home screen: the labs, with what each teaches and how far the student got.

A table of labs (number, title, status, attempts, hints used, time spent)
and, for the lab under the cursor, its description and goals. Titles wrap
onto a second line rather than being cut. Enter starts a lab, or resumes it
where the student left; back from a lab just finished, the cursor is on the
next one; ``r`` resets its progress after asking. A lab
file with problems is listed as invalid, with its problems, and cannot be
started. A lab for one backend only (``backends: [mininet]``) is marked so;
chosen on another backend, it opens a notice with the command to run it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, cast

from rich.markdown import Markdown as RichMarkdown
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Static

from sim.errors import SimError
from sim.lab.model import LabDef
from sim.lab.progress import FileProgressStore
from sim.tui.confirm import ConfirmScreen
from sim.tui.labrun import LabEntry, describe_minutes, describe_spent, load_entries
from sim.tui.notice import only_mark

if TYPE_CHECKING:
    from sim.tui.app import MaillabApp

__all__ = ["HomeScreen", "details_markdown"]


def _number(entry: LabEntry) -> str:
    found = re.match(r"^(\d+)", entry.path.stem)
    return str(int(found.group(1))) if found else ""


def details_markdown(entry: LabEntry) -> str:
    """What the lab is about, as Markdown."""
    if entry.lab is None:
        problems = "\n".join(f"- `{p}`" for p in entry.problems[:10])
        return (
            f"## {entry.path.name}\n\nThis lab file has problems and cannot be started "
            f"(`maillab validate {entry.path}` lists them all):\n\n{problems}\n"
        )
    lab = entry.lab
    goals = "\n".join(f"- {goal}" for goal in lab.goals)
    only = ""
    if len(lab.backends) == 1:
        only = (
            f"**{only_mark(lab).capitalize()}**: run it as root with "
            f"`maillab run {lab.id} --backend {lab.backends[0]}`.\n\n"
        )
    if entry.completed:
        progress = f"completed: all {entry.total} steps done"
    elif entry.started:
        progress = f"{entry.done} of {entry.total} steps done"
    else:
        progress = "not started"
    if entry.started:
        progress += (
            f", {entry.attempts} attempt{'' if entry.attempts == 1 else 's'}, "
            f"{entry.hints} hint{'' if entry.hints == 1 else 's'}, "
            f"{describe_spent(entry.spent)} spent"
        )
    return (
        f"## {lab.title}\n\n"
        f"{only}"
        f"{lab.description.strip()}\n\n"
        f"**You will learn**\n\n{goals}\n\n"
        f"**Time** about {describe_minutes(lab.estimated_time)} · "
        f"**Steps** {entry.total} · **Progress** {progress}\n\n"
        f"{assessed_markdown(lab)}"
    )


def assessed_markdown(lab: LabDef) -> str:
    """What grading assesses in each step (sim.lab.grading), without the
    answers: the student knows what counts before starting."""
    from sim.lab.grading import assessed_briefly

    steps = "\n".join(
        f"{i}. {step.title}: {assessed_briefly(step)}" for i, step in enumerate(lab.steps, 1)
    )
    variant = (
        "Some names and values in this lab are yours alone (drawn from your student "
        "id), so your answers differ from your classmates'.\n\n"
        if lab.variables
        else ""
    )
    return (
        f"**What is assessed** (graded by replaying what you did: every check runs "
        f"again)\n\n{variant}{steps}\n"
    )


class LabTable(DataTable[object]):
    """The table of labs; Enter opens the lab under the cursor."""

    BINDINGS = [Binding("enter", "select_cursor", "Start/Resume")]


class HomeScreen(Screen[None]):
    """Every lab and the student's progress in it."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]

    BINDINGS = [
        Binding("enter", "open", "Start/Resume"),
        Binding("r", "reset", "Reset"),
        Binding("q", "app.quit", "Quit", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[LabEntry] = []

    @property
    def maillab(self) -> MaillabApp:
        return cast("MaillabApp", self.app)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="home-body"):
            with Vertical(id="home-list"):
                yield Static("Labs", id="home-heading")
                yield LabTable(id="labs", cursor_type="row", zebra_stripes=True)
            with Vertical(id="home-side"):
                with VerticalScroll(id="details"):
                    yield Static("", id="lab-details")
                with Horizontal(id="home-buttons"):
                    yield Button("Start", id="open", variant="primary", compact=True)
                    yield Button("Reset", id="reset", variant="default", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "labs"
        table = self.query_one("#labs", DataTable)
        self.reload()
        table.focus()

    def on_screen_resume(self) -> None:
        self.reload()
        finished, self.maillab.just_finished = self.maillab.just_finished, None
        index = next((i for i, e in enumerate(self.entries) if e.id == finished), None)
        if index is None:
            return
        # Finished just now: on to the next lab.
        table = self.query_one("#labs", DataTable)
        table.move_cursor(row=min(index + 1, len(self.entries) - 1))
        self._show_details()

    # -- the list ------------------------------------------------------------------------

    def reload(self) -> None:
        """Read the labs and the progress again (after a lab, a reset)."""
        app = self.maillab
        table = self.query_one("#labs", DataTable)
        keep = table.cursor_row
        try:
            directory = app.labs_directory()
            self.entries = load_entries(directory, app.store, app.catalog)
        except SimError as err:
            self.entries = []
            self.notify(str(err), title="No labs", severity="error", timeout=10)
        store = app.store
        if isinstance(store, FileProgressStore) and store.warning:
            self.notify(store.warning, title="Progress", severity="warning", timeout=10)
            store.warning = None
        self._fill_table(keep)

    def _fill_table(self, keep: int) -> None:
        table = self.query_one("#labs", DataTable)
        # The title column takes what the other columns leave (a DataTable's
        # columns never shrink, so they are made again at every size); a long
        # title wraps onto a second line of its row instead of being cut.
        room = self.size.width if not self.has_class("-wide") else self.size.width * 3 // 5
        fixed = {"n": 2, "status": 6, "tries": 5, "hints": 5, "spent": 5}
        width = max(16, room - sum(fixed.values()) - 2 * (len(fixed) + 1) - 2)
        table.clear(columns=True)
        table.add_column("#", key="n", width=fixed["n"])
        table.add_column("Lab", key="title", width=width)
        table.add_column("Status", key="status", width=fixed["status"])
        table.add_column("Tries", key="tries", width=fixed["tries"])
        table.add_column("Hints", key="hints", width=fixed["hints"])
        table.add_column("Spent", key="spent", width=fixed["spent"])
        for entry in self.entries:
            title = Text(entry.title, style="red" if entry.lab is None else "")
            mark = only_mark(entry.lab) if entry.lab is not None else ""
            if mark:
                # Marked whatever the backend: the student sees where it runs.
                title.append(f" [{mark}]", style="yellow")
            lines = len(title.wrap(self.app.console, width))
            table.add_row(
                _number(entry),
                title,
                _state(entry),
                str(entry.attempts) if entry.started else "",
                str(entry.hints) if entry.started else "",
                describe_spent(entry.spent) if entry.started else "",
                key=entry.id,
                height=max(1, min(lines, 3)),
            )
        if self.entries:
            table.move_cursor(row=min(max(keep, 0), len(self.entries) - 1))
        self._show_details()

    def on_resize(self) -> None:
        if self.entries:
            self._fill_table(self.query_one("#labs", DataTable).cursor_row)

    @property
    def selected(self) -> LabEntry | None:
        table = self.query_one("#labs", DataTable)
        if not self.entries or table.cursor_row < 0:
            return None
        return self.entries[min(table.cursor_row, len(self.entries) - 1)]

    def _show_details(self) -> None:
        entry = self.selected
        details = self.query_one("#lab-details", Static)
        start = self.query_one("#open", Button)
        reset = self.query_one("#reset", Button)
        if entry is None:
            details.update("No labs found.")
            start.disabled = reset.disabled = True
            return
        # Rich's Markdown in a Static: one widget, cheaper than a Markdown
        # widget's tree of blocks, and this text changes with every key press.
        details.update(RichMarkdown(details_markdown(entry)))
        start.label = "Resume" if entry.started and not entry.completed else "Start"
        start.disabled = entry.lab is None
        reset.disabled = not entry.started

    @on(DataTable.RowHighlighted, "#labs")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_details()

    @on(DataTable.RowSelected, "#labs")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    # -- actions -----------------------------------------------------------------------------

    def action_open(self) -> None:
        entry = self.selected
        if entry is None:
            return
        if entry.lab is None:
            self.notify(
                f"{entry.path.name} has problems and cannot be started: "
                f"{entry.problems[0] if entry.problems else 'it does not load'}",
                title="Invalid lab",
                severity="error",
            )
            return
        self.maillab.open_lab(entry.lab)

    def action_reset(self) -> None:
        entry = self.selected
        if entry is None or entry.lab is None:
            return
        if not entry.started:
            self.notify(f"{entry.title}: nothing to reset, the lab is not started.")
            return

        def reset(yes: bool | None) -> None:
            if not yes:
                return
            try:
                self.maillab.store.reset(entry.id)
            except SimError as err:
                self.notify(str(err), title="Reset failed", severity="error")
                return
            self.notify(f"{entry.title}: progress reset.", title="Reset")
            self.reload()

        self.app.push_screen(
            ConfirmScreen(
                f"Reset your progress in “{entry.title}”?\n\n"
                "Your answers, hints and changes to the lab are forgotten.",
                yes="Reset",
            ),
            reset,
        )

    @on(Button.Pressed, "#open")
    def _open_pressed(self) -> None:
        self.action_open()

    @on(Button.Pressed, "#reset")
    def _reset_pressed(self) -> None:
        self.action_reset()


def _state(entry: LabEntry) -> Text:
    state = entry.state
    style = {"done": "green", "invalid": "red", "new": "dim"}.get(state, "yellow")
    return Text("done ✓" if state == "done" else state, style=style)
