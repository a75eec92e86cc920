"""The lab screen: one lab, step by step, on a running topology.

Four tabs: **Step** (the step's text and what to do: run, answer, change,
check), **Trace** (the last experiment in readable panes, and the lab's
mail), **Map** (the topology with the last experiment's path and the point
where it stopped, then each receiver's policy) and **Try** (the student's own
experiments, with the same trace). The top line says where the student is;
on wide terminals a sidebar lists every step.

Everything has a key (F1 lists them): each view of the trace its own letter,
PageUp/PageDown and the arrows scroll what is on screen wherever the focus
is, and Esc never leaves the lab without asking.

The screen only shows and asks; the engine (:class:`~sim.lab.engine.LabSession`)
judges. Every engine call runs in a worker thread (starting a lab, sending
mail that a relay retries in lab time, checks that send mail), with a
progress line, so the screen never freezes; errors come back as
notifications, never as a traceback.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace as dataclass_replace
from typing import TYPE_CHECKING, Any, TypeVar, cast

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import (
    Button,
    Footer,
    Input,
    OptionList,
    RadioSet,
    Static,
    TabbedContent,
    TabPane,
    TextArea,
)
from textual.widgets.option_list import Option

from sim.errors import InputError, SimError
from sim.events import (
    QueueAttempt,
    QueueBounced,
    QueueDeferred,
    QueueDelivered,
    QueueInternalError,
)
from sim.lab.actions import ActionResult
from sim.lab.checks import PredicateOutcome
from sim.lab.engine import CheckOutcome, ExperimentOutcome, Feedback
from sim.lab.model import (
    CheckpointStep,
    ExperimentStep,
    ExplainStep,
    LabDef,
    QuestionStep,
    Show,
    Step,
    TaskStep,
)
from sim.topology.graph import LabNetwork, layout
from sim.trace import TraceEvent
from sim.tui.activity import Activity
from sim.tui.confirm import ConfirmScreen
from sim.tui.experiment_box import ExperimentBox
from sim.tui.inline import inline_markdown, prose
from sim.tui.labrun import TracingSession
from sim.tui.policyfmt import render_policy
from sim.tui.question import QuestionWidget
from sim.tui.task_form import MODE_OF_ACTION, TaskForm
from sim.tui.topo_map import TopoMap
from sim.tui.trace_view import TraceView
from sim.tui.tracefmt import events_from, headline, with_waits

if TYPE_CHECKING:
    from sim.tui.app import MaillabApp

__all__ = ["LabScreen", "describe_error"]

T = TypeVar("T")

_KIND_LABEL = {
    "explain": "read",
    "experiment": "experiment",
    "question": "question",
    "task": "task",
    "checkpoint": "checkpoint",
}


def describe_error(err: BaseException) -> str:
    """One readable paragraph for an error (a bug names its type; no traceback)."""
    if isinstance(err, InputError):
        lines = [str(p) for p in err.problems]
        more = f"\n… and {len(lines) - 5} more" if len(lines) > 5 else ""
        return "\n".join(lines[:5]) + more
    if isinstance(err, SimError):
        return str(err)
    return f"internal error: {type(err).__name__}: {err}"


class LabScreen(Screen[None]):
    """One lab on a running topology."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]

    BINDINGS = [
        Binding("n", "next", "Next"),
        Binding("p", "previous", "Prev"),
        Binding("r", "run", "Run"),
        Binding("c", "check", "Check"),
        Binding("h", "hint", "Hint"),
        Binding("o", "show_step", "Open"),
        Binding("1", "tab('step')", "Step", show=False),
        # The tab titles show their digit; the footer keeps room for F1.
        Binding("2,t", "tab('trace')", "Trace", show=False),
        Binding("3,m", "tab('map')", "Map", show=False),
        Binding("4,x", "tab('try')", "Try", show=False),
        # One key per view of the trace (F1 lists them).
        Binding("s", "pane('story')", "Story", show=False),
        Binding("d", "pane('dns')", "DNS", show=False),
        Binding("w", "pane('net')", "Network", show=False),
        Binding("e", "pane('smtp')", "SMTP", show=False),
        Binding("k", "pane('checks')", "Checks", show=False),
        Binding("q", "pane('queue')", "Queue", show=False),
        Binding("b", "pane('mail')", "Mail", show=False),
        Binding("y", "policy", "Policy", show=False),
        # Scroll what is on screen without moving the focus there first.
        Binding("pageup", "scroll('page_up')", "Page up", show=False),
        Binding("pagedown", "scroll('page_down')", "Page down", show=False),
        Binding("up", "scroll('up')", "Up", show=False),
        Binding("down", "scroll('down')", "Down", show=False),
        Binding("home", "scroll('home')", "Top", show=False),
        Binding("end", "scroll('end')", "Bottom", show=False),
        Binding("escape", "back", "Leave"),
    ]

    def __init__(self, lab: LabDef, session: TracingSession) -> None:
        super().__init__()
        self.lab = lab
        self.session = session
        self.viewing = 0
        self.started = False
        self._busy = False
        self._pending_zone: tuple[TaskForm, str, str] | None = None
        self._last_run: ExperimentOutcome | None = None
        self._complete_at_start = False
        #: Since when the time spent in the lab is not yet counted.
        self._clock_from = time.monotonic()
        self.network: LabNetwork | None = None

    @property
    def maillab(self) -> MaillabApp:
        return cast("MaillabApp", self.app)

    @property
    def busy(self) -> bool:
        return self._busy

    # -- layout ------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(self.lab.title, id="where")
        with Horizontal(id="lab-body"):
            with Vertical(id="sidebar"):
                yield Static("Steps", id="sidebar-title")
                yield OptionList(id="steps")
            with TabbedContent(id="tabs"):
                with TabPane("1 Step", id="tab-step"), VerticalScroll(id="step-scroll"):
                    yield Static("", id="step-title")
                    yield Static("", id="step-text")
                    yield Vertical(id="step-body")
                with TabPane("2 Trace", id="tab-trace"):
                    yield TraceView(id="trace")
                with TabPane("3 Map", id="tab-map"), VerticalScroll(id="map-scroll"):
                    yield TopoMap(None, id="map")
                    yield Static("", id="policy-title")
                    yield Static("", id="policy")
                with TabPane("4 Try", id="tab-try"):
                    yield ExperimentBox(self.session.topology, id="try")
        yield Activity(id="activity")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.lab.title
        try:
            self.network = layout(self.session.topology)
        except SimError as err:
            self.notify(describe_error(err), title="Bad topology", severity="error", timeout=15)
            self.network = None
        self.query_one("#map", TopoMap).network = self.network
        self.query_one("#map", TopoMap).show([])
        self.query_one("#policy-title", Static).update(
            Text("What each receiver checks, and what each verdict does (y)", style="bold")
        )
        self.query_one("#policy", Static).update(render_policy(self.session.topology))
        trace = self.query_one("#trace", TraceView)
        trace.connect_timeout = self.session.topology.settings.connect_timeout
        trace.mail.loader = self.session.mailboxes
        self._fill_sidebar()
        self._update_where()
        backend = self.session.backend
        # A resumed lab runs its finished steps again (the mail they
        # delivered): say so, the wait is longer than a fresh start.
        again = " and replaying your finished steps" if self.session.progress.steps else ""
        self.query_one("#step-title", Static).update(
            Text(f"Starting the lab's network ({backend} backend){again}…", style="dim")
        )
        self._call(
            f"Starting the lab ({backend} backend){again}…",
            lambda: self.session.start(resume=True),
            self._started,
            on_error=self._start_failed,
        )

    def on_resize(self) -> None:
        self._fill_sidebar()

    def on_unmount(self) -> None:
        if self.started:
            self._bank_time()
            with contextlib.suppress(Exception):  # leaving must not fail on a full disk
                self.session.save()
        self.maillab.stop_session(self.session)

    def _bank_time(self) -> None:
        """Count the time spent since the last count (saved with the progress)."""
        now = time.monotonic()
        self.session.progress.seconds += now - self._clock_from
        self._clock_from = now

    # -- where the student is ------------------------------------------------------------

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.lab.steps

    @property
    def viewed(self) -> Step | None:
        """The step on screen (None: the lab-complete view)."""
        return self.steps[self.viewing] if self.viewing < len(self.steps) else None

    def _done(self, step: Step) -> bool:
        return self.session.progress.done(step.id)

    @property
    def frontier(self) -> int:
        """The index of the first step not done (len(steps) when all are)."""
        return next((i for i, s in enumerate(self.steps) if not self._done(s)), len(self.steps))

    def _update_where(self) -> None:
        total = len(self.steps)
        done = sum(1 for s in self.steps if self._done(s))
        text = Text()
        if self.viewed is not None:
            text.append(f"Step {self.viewing + 1}/{total} ", style="bold")
        else:
            text.append("Complete ", style="bold green")
        for i, step in enumerate(self.steps):
            done_here = self._done(step)
            style = "green" if done_here else "dim"
            text.append(
                "●" if done_here else "○", style="bold reverse" if i == self.viewing else style
            )
        text.append(f" {done}/{total} done · ", style="dim")
        text.append(self.lab.title)
        self.query_one("#where", Static).update(text)
        self._fill_sidebar()

    def _fill_sidebar(self) -> None:
        if not self.has_class("-wide"):
            return  # hidden on narrow terminals; filled when it shows
        options = self.query_one("#steps", OptionList)
        frontier = self.frontier
        options.clear_options()
        for i, step in enumerate(self.steps):
            mark = "✓" if self._done(step) else ("▸" if i == frontier else " ")
            prompt = Table.grid(padding=(0, 1, 0, 0))
            prompt.add_column(width=5, no_wrap=True)
            prompt.add_column(ratio=1)
            prompt.add_row(
                Text(f"{mark}{i + 1:>2}.", style="green" if self._done(step) else ""),
                Text(step.title, style="bold" if i == self.viewing else ""),
            )
            options.add_option(Option(prompt, id=step.id, disabled=i > frontier))
        if self.viewing < len(self.steps):
            options.highlighted = self.viewing

    @on(OptionList.OptionSelected, "#steps")
    def _step_chosen(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.view(event.option_index)

    # -- showing a step --------------------------------------------------------------------

    def view(self, index: int) -> None:
        """Show step ``index`` (up to the first step not done), or the end."""
        index = max(0, min(index, self.frontier, len(self.steps)))
        self.viewing = index
        # n and p show the step, from whichever tab they were pressed on.
        self.query_one("#tabs", TabbedContent).active = "tab-step"
        self._update_where()
        self.refresh_bindings()
        self.run_worker(self._render_step(), group="render", exclusive=True)

    async def _render_step(self) -> None:
        step = self.viewed
        title = self.query_one("#step-title", Static)
        text = self.query_one("#step-text", Static)
        body = self.query_one("#step-body", Vertical)
        await body.remove_children()
        if step is None:
            title.update(Text("Lab complete", style="bold green"))
            text.update(prose(_completion_text(self.lab)))
            await body.mount(
                Horizontal(
                    Button("Back to the labs", id="home", variant="primary", compact=True),
                    Button("Review the steps (p)", id="review", compact=True),
                    classes="buttons",
                )
            )
            self.query_one("#home", Button).focus()
            return
        header = Text()
        header.append(f"Step {self.viewing + 1} of {len(self.steps)}", style="bold")
        header.append(f" · {_KIND_LABEL.get(step.kind, step.kind)}", style="dim")
        if self._done(step):
            header.append("  ✓ done", style="green")
        header.append(f"\n{step.title}", style="bold")
        title.update(header)
        text.update(prose(step.text.strip()))
        widgets = self._step_widgets(step)
        await body.mount(*widgets)
        self.query_one("#step-scroll", VerticalScroll).scroll_home(animate=False)
        self._focus_step(step)

    def _step_widgets(self, step: Step) -> list[Widget]:
        done = self._done(step)
        widgets: list[Widget] = []
        if isinstance(step, ExplainStep):
            widgets.append(
                Horizontal(
                    Button("Continue (n)", id="continue", variant="primary", compact=True),
                    classes="buttons",
                )
            )
        elif isinstance(step, ExperimentStep):
            what = step.run.describe() if step.run is not None else "(no experiment)"
            widgets.append(Static(Text("Experiment: ", style="bold") + Text(what), id="exp-what"))
            label = "Run it again (r)" if done else "Run the experiment (r)"
            widgets.append(
                Horizontal(
                    Button(label, id="run", variant="primary", compact=True), classes="buttons"
                )
            )
            widgets.append(Static(self._experiment_text(step), id="exp-result"))
        elif isinstance(step, QuestionStep):
            question = QuestionWidget(step, solved=done, id="question")
            widgets.append(question)
        elif isinstance(step, TaskStep):
            mode = "add"
            node = zone = action = None
            if step.solution:
                first = step.solution[0]
                mode = MODE_OF_ACTION.get(first.name, "other")
                action = first.name
                if isinstance(first.args, Mapping):
                    node = _opt_str(first.args.get("node"))
                    zone = _opt_str(first.args.get("zone"))
            widgets.append(
                TaskForm(
                    self.session.topology,
                    mode=mode,
                    node=node,
                    zone=zone,
                    action=action,
                    id="task-form",
                )
            )
            widgets.append(Static(self._edits_text(step), id="edits"))
            widgets.append(
                Horizontal(
                    Button("Check (c)", id="check", variant="primary", compact=True),
                    Button("Hint (h)", id="hint", compact=True),
                    classes="buttons",
                )
            )
            widgets.append(Static(self._hints_text(step), id="hints"))
            widgets.append(Static("", id="check-result"))
        elif isinstance(step, CheckpointStep):
            widgets.append(
                Horizontal(
                    Button("Check (c)", id="check", variant="primary", compact=True),
                    classes="buttons",
                )
            )
            widgets.append(Static("", id="check-result"))
        if step.show is not None:
            widgets.insert(
                0,
                Horizontal(
                    Button(f"Open {step.show.describe()} (o)", id="show", compact=True),
                    classes="buttons",
                ),
            )
        if done and not isinstance(step, ExplainStep):
            widgets.append(
                Horizontal(
                    Button("Next step (n)", id="next", variant="success", compact=True),
                    classes="buttons",
                )
            )
        return widgets

    def _focus_step(self, step: Step) -> None:
        targets = {
            "explain": "#continue",
            "experiment": "#run",
            "checkpoint": "#check",
            "task": "#task-form #mode",
        }
        selector = targets.get(step.kind)
        if isinstance(step, QuestionStep):
            selector = "#question #choices" if step.multiple_choice else "#question #answer"
        if selector:
            found = self.query(selector)
            if found:
                found.first().focus()

    def _experiment_text(self, step: ExperimentStep) -> RenderableType:
        outcome = self.session.outcome_of(step)
        if outcome is None:
            return Text(
                "Run it to see what happens; its trace and path appear in tabs 2 and 3.",
                style="dim",
            )
        return _outcome_text(outcome)

    def _hints_text(self, step: TaskStep) -> Text:
        shown = self.session.hints_shown(step)
        if not step.hints:
            return Text("")
        if not shown:
            return Text(f"{len(step.hints)} hint(s) available: press h.", style="dim")
        text = Text()
        for i, hint in enumerate(shown, 1):
            if i > 1:
                text.append("\n")
            text.append(f"Hint {i}: ", style="bold yellow")
            text.append_text(inline_markdown(hint))
        if len(shown) < len(step.hints):
            text.append(f"\n{len(step.hints) - len(shown)} more: press h.", style="dim")
        return text

    def _edits_text(self, step: TaskStep) -> Text:
        edits = [a for a in self.session.progress.actions if a.get("step") == step.id]
        if not edits:
            return Text("")
        text = Text("Your changes so far:", style="bold")
        for record in edits:
            text.append(f"\n  • {_action_words(record.get('action'))}")
        return text

    # -- engine calls in a worker -------------------------------------------------------------

    def _call(
        self,
        label: str,
        fn: Callable[[], T],
        done: Callable[[T], None],
        *,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> bool:
        """Run ``fn`` (an engine call) in a thread; then ``done(result)`` here."""
        if self._busy:
            self.notify(
                f"Still busy: {self.query_one('#activity', Activity).label}",
                severity="warning",
                timeout=3,
            )
            return False
        self._busy = True
        self.query_one("#activity", Activity).start(label, self.session.lab)
        self._engine(label, fn, cast("Callable[[Any], None]", done), on_error)
        return True

    @work(thread=True, exit_on_error=False, group="engine")
    def _engine(
        self,
        label: str,
        fn: Callable[[], Any],
        done: Callable[[Any], None],
        on_error: Callable[[BaseException], None] | None,
    ) -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = fn()
        except Exception as err:  # SimError: the engine's word; anything else: a bug
            error = err
        # RuntimeError: the app is shutting down, nobody to tell.
        with contextlib.suppress(RuntimeError):
            self.app.call_from_thread(self._finished, label, result, error, done, on_error)

    def _finished(
        self,
        label: str,
        result: Any,
        error: BaseException | None,
        done: Callable[[Any], None],
        on_error: Callable[[BaseException], None] | None,
    ) -> None:
        self._busy = False
        if not self.is_attached:
            # The student left while the engine worked (a slow start, say):
            # whatever it started must not outlive the screen.
            self.maillab.stop_session(self.session)
            return
        self.query_one("#activity", Activity).stop()
        if error is not None:
            self.notify(
                describe_error(error), title=label.rstrip("…"), severity="error", timeout=12
            )
            if on_error is not None:
                on_error(error)
        else:
            done(result)
        if self._pending_zone is not None and not self._busy:
            form, node, zone = self._pending_zone
            self._pending_zone = None
            self._fetch_zone(form, node, zone)

    # -- starting ------------------------------------------------------------

    def _started(self, _: None) -> None:
        self.started = True
        self._clock_from = time.monotonic()
        self._complete_at_start = self.session.complete
        self.maillab.session_started(self.session)
        for replay in self.session.replayed:
            if not replay.ok:
                self.notify(
                    replay.message, title="A saved change was not replayed", severity="warning"
                )
        if any(self._done(s) for s in self.steps) and not self.session.complete:
            self.notify(
                "Welcome back: you continue where you left off.", title="Resumed", timeout=4
            )
        self.view(self.frontier if not self.session.complete else len(self.steps))

    def _start_failed(self, error: BaseException) -> None:
        self.dismiss(None)

    # -- actions ------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        step = self.viewed
        if action == "run":
            return isinstance(step, ExperimentStep)
        if action == "check":
            return isinstance(step, TaskStep | CheckpointStep)
        if action == "hint":
            return isinstance(step, TaskStep) and bool(step.hints)
        if action == "show_step":
            return step is not None and step.show is not None
        if action == "previous":
            return True if self.viewing > 0 else None
        if action == "next":
            return True if step is not None else None
        return True

    def action_next(self) -> None:
        step = self.viewed
        if step is None or not self._ready():
            return
        if isinstance(step, ExplainStep) and not self._done(step):
            try:
                self.session.mark_read(step)
            except SimError as err:
                self.notify(describe_error(err), severity="error")
                return
        if not self._done(step):
            self.notify(_todo(step), title="Not done yet", severity="warning", timeout=4)
            return
        if self.viewing + 1 >= len(self.steps) and not self.session.complete:
            self.view(self.frontier)
            return
        self.view(self.viewing + 1)

    def action_previous(self) -> None:
        if self.viewing > 0:
            self.view(self.viewing - 1)

    def action_tab(self, name: str) -> None:
        self.query_one("#tabs", TabbedContent).active = f"tab-{name}"
        if name == "map":
            self.query_one("#map", TopoMap).focus()
        elif name == "trace":
            self._catch_up()
            trace = self.query_one("#trace", TraceView)
            trace.show_pane(trace.active_pane)
        elif name == "try":
            self.query_one("#try", ExperimentBox).focus_input()
        else:
            step = self.viewed
            if step is not None:
                self._focus_step(step)

    def action_pane(self, pane: str) -> None:
        """Open one view of the trace (s d w e k q b)."""
        self._catch_up()
        self.query_one("#tabs", TabbedContent).active = "tab-trace"
        self.query_one("#trace", TraceView).show_pane(pane)

    def _catch_up(self) -> None:
        """Add the relay's attempts that happened since the trace was shown,
        as lab time ran on by itself (a retry falls due while the student
        reads): what became of the messages of the trace shown."""
        if self._busy or not self.started:
            return
        trace = self.query_one("#trace", TraceView)
        shown = events_from(trace.data)
        ids = {_queue_id(e) for e in shown} - {None}
        if not ids:
            return
        last = max(e.t for e in shown)
        try:
            later = self.session.events_since(last + 0.001)
        except Exception:  # a lab that is stopping: nothing to add
            return
        new = [e for e in later if _queue_id(e) in ids]
        if new:
            trace.add_events("meanwhile, as lab time ran on by itself", new[0].t, new, yours=False)

    def action_policy(self) -> None:
        """The receivers' policy, below the map (y)."""
        self.query_one("#tabs", TabbedContent).active = "tab-map"
        scroll = self.query_one("#map-scroll", VerticalScroll)
        scroll.focus()
        title = self.query_one("#policy-title", Static)
        self.call_after_refresh(lambda: scroll.scroll_to_widget(title, animate=False, top=True))

    def _scroller(self) -> VerticalScroll | None:
        active = self.query_one("#tabs", TabbedContent).active
        if active == "tab-step":
            return self.query_one("#step-scroll", VerticalScroll)
        if active == "tab-map":
            return self.query_one("#map-scroll", VerticalScroll)
        if active == "tab-trace":
            return self.query_one("#trace", TraceView).scroller()
        if active == "tab-try":
            return self.query_one("#try", ExperimentBox).scroller()
        return None

    def action_scroll(self, how: str) -> None:
        """Scroll the tab on screen, wherever the focus is (a widget that
        uses the key itself, a list or a field, gets it first)."""
        target = self._scroller()
        if target is None:
            return
        {
            "page_up": lambda: target.scroll_page_up(animate=False),
            "page_down": lambda: target.scroll_page_down(animate=False),
            "up": lambda: target.scroll_up(animate=False),
            "down": lambda: target.scroll_down(animate=False),
            "home": lambda: target.scroll_home(animate=False),
            "end": lambda: target.scroll_end(animate=False),
        }[how]()

    def action_show_step(self) -> None:
        """Open what the step talks about (o): a view, a message, the policy."""
        step = self.viewed
        if step is None or step.show is None:
            self.notify("This step points at nothing in particular: the trace is 2.", timeout=3)
            return
        self._open_show(step.show)

    def _open_show(self, show: Show) -> None:
        if show.view == "policy":
            self.action_policy()
        elif show.view == "mail":
            self.action_pane("mail")
            if show.mailbox:
                self.query_one("#trace", TraceView).mail.open_mailbox(show.mailbox, show.folder)
        else:
            self.action_pane(show.view)

    def action_back(self) -> None:
        focused = self.focused
        if isinstance(focused, Input | TextArea):
            # Leave the field first, so that the single-key bindings work
            # again; the focus goes somewhere visible, not nowhere.
            self._focus_out_of_field()
            return

        def leave(yes: bool | None) -> None:
            if yes:
                self.dismiss(None)

        self.app.push_screen(
            ConfirmScreen(
                f"Leave “{self.lab.title}”?\n\n"
                + (
                    "You finished it; the lab's network stops."
                    if self.session.complete
                    else "Your progress is saved; the lab's network stops. "
                    "You continue where you left off next time."
                ),
                yes="Leave",
            ),
            leave,
        )

    def _ready(self) -> bool:
        if not self.started:
            self.notify("The lab is still starting: a moment.", timeout=3)
        return self.started

    def action_run(self) -> None:
        step = self.viewed
        if not isinstance(step, ExperimentStep) or step.run is None or not self._ready():
            return
        self.session.take_runs()
        self._call(
            f"Running: {step.run.describe()}…",
            lambda: self.session.run_experiment(step),
            lambda outcome: self._ran(step, outcome),
        )

    def _ran(self, step: ExperimentStep, outcome: ExperimentOutcome) -> None:
        self.session.take_runs()
        outcome = self._with_waits(outcome)
        self._show_run(outcome, f"Step {self.viewing + 1}: {outcome.experiment.describe()}")
        if self.viewed is step:
            found = self.query("#exp-result")
            if found:
                result = cast(Static, found.first())
                result.update(_outcome_text(outcome))
                self.call_after_refresh(result.scroll_visible, animate=False)
        if outcome.error is not None:
            self.notify(outcome.detail, title="The experiment failed", severity="error")
        elif outcome.passed or outcome.hidden_until is not None:
            self.notify("Done: the trace is in 2, the map in 3; then go on (n).", timeout=4)
        self._after_progress(step)
        if outcome.error is None and step.show is not None and self.viewed is step:
            self._open_show(step.show)

    def _with_waits(self, outcome: ExperimentOutcome) -> ExperimentOutcome:
        """The outcome with the client's wait after a drop in its trace."""
        names = _names(self.network.owner if self.network is not None else None)
        data = with_waits(outcome.data, self.session.topology.settings.connect_timeout, names)
        if data is outcome.data:
            return outcome
        return dataclass_replace(outcome, data=dict(data or {}))

    def _show_run(self, outcome: ExperimentOutcome, title: str) -> None:
        """Put an experiment's trace and path in the Trace and Map tabs."""
        if outcome.data is None:
            return
        self._last_run = outcome
        names = self.network.owner if self.network is not None else None
        self.query_one("#trace", TraceView).show(outcome.data, title=title, names=_names(names))
        self.query_one("#map", TopoMap).show(
            events_from(outcome.data), outcome.data, outcome.experiment.node
        )

    def _after_progress(self, step: Step) -> None:
        """The step may be done now: update the marks and the step's buttons."""
        self._bank_time()
        if self.session.complete and not self._complete_at_start:
            # The home list moves on to the next lab when the student is back.
            self.maillab.just_finished = self.lab.id
        self._update_where()
        self.refresh_bindings()
        if self._done(step) and self.viewed is step and not self.query("#step-body #next"):
            self.query_one("#step-body", Vertical).mount(
                Horizontal(
                    Button("Next step (n)", id="next", variant="success", compact=True),
                    classes="buttons",
                )
            )
        if (
            self._done(step)
            and self.viewed is step
            and step.show is None
            and isinstance(self.focused, Input | TextArea)
        ):
            # Done: the field has nothing more to take, and n/p must work.
            self.call_after_refresh(self._focus_next)

    def _focus_out_of_field(self) -> None:
        """After Esc in a field: the step's next move (Next, Check, Run,
        Answer), or what scrolls on the tab shown."""
        if self.query_one("#tabs", TabbedContent).active == "tab-step":
            for selector in ("#next", "#check", "#run", "#submit", "#continue"):
                found = self.query(f"#step-body {selector}")
                if found:
                    found.first().focus()
                    return
        target = self._scroller()
        if target is not None:
            target.focus()
        else:
            self.set_focus(None)

    def _focus_next(self) -> None:
        found = self.query("#step-body #next")
        if found:
            found.first().focus()
        else:
            self.set_focus(None)

    @on(QuestionWidget.Answered)
    def _answered(self, event: QuestionWidget.Answered) -> None:
        step = self.session.step(event.step_id)
        question = event.question
        self._call(
            "Checking your answer…",
            lambda: self.session.answer(step, event.answer),
            lambda feedback: self._judged(step, question, feedback),
        )

    def _judged(self, step: Step, question: QuestionWidget, feedback: Feedback) -> None:
        if question.is_attached:
            question.show_feedback(feedback, self.session.state(step).attempts)
        if feedback.correct:
            revealed = [
                i + 1
                for i, s in enumerate(self.session.steps)
                if isinstance(s, ExperimentStep) and s.hide_expect_until == step.id
            ]
            if revealed:
                which = ", ".join(str(n) for n in revealed)
                self.notify(f"What step {which} expects is now shown there.", timeout=4)
        self._after_progress(step)
        if feedback.correct and self.viewed is step:
            if step.show is not None:
                self.set_focus(None)  # out of the field: n and p work
                self._open_show(step.show)
            else:
                self.call_after_refresh(self._focus_next)

    def action_hint(self) -> None:
        step = self.viewed
        if not isinstance(step, TaskStep):
            return
        try:
            hint = self.session.hint(step)
        except SimError as err:
            self.notify(describe_error(err), severity="error")
            return
        if hint is None:
            self.notify("That was the last hint.", timeout=3)
        found = self.query("#hints")
        if found:
            cast(Static, found.first()).update(self._hints_text(step))

    def action_check(self) -> None:
        step = self.viewed
        if not isinstance(step, TaskStep | CheckpointStep) or not self._ready():
            return
        self.session.take_runs()
        self._call(
            "Checking…",
            lambda: self.session.check(step),
            lambda outcome: self._checked(step, outcome),
        )

    def _checked(self, step: TaskStep | CheckpointStep, outcome: CheckOutcome) -> None:
        runs = [self._with_waits(r) for r in self.session.take_runs() if r.data is not None]
        if runs:
            last = runs[-1]
            self._show_run(last, f"Check of step {self.viewing + 1}: {last.experiment.describe()}")
        if self.viewed is step:
            found = self.query("#check-result")
            if found:
                result = cast(Static, found.first())
                result.update(_check_text(outcome, bool(runs)))
                self.call_after_refresh(result.scroll_visible, animate=False)
            if isinstance(step, TaskStep):
                hints = self.query("#hints")
                if hints:
                    cast(Static, hints.first()).update(self._hints_text(step))
        if outcome.passed:
            self.notify("Check passed.", title="✓", timeout=3)
        else:
            self.notify("Not yet: read the results (a hint: h).", severity="warning", timeout=4)
        self._after_progress(step)
        if outcome.passed and self.viewed is step:
            # What the step talks about, else the way on (focusing a widget
            # of the Step tab would bring that tab back).
            if step.show is not None:
                self._open_show(step.show)
            else:
                self.call_after_refresh(self._focus_next)
        self.query_one("#trace", TraceView).mail.reload()

    @on(TaskForm.Submitted)
    def _apply(self, event: TaskForm.Submitted) -> None:
        step = self.viewed
        form = event.form
        action = event.action
        session = self.session

        def apply() -> tuple[ActionResult, float | None, list[Any]]:
            before = session.now()
            result = session.apply(step, action)
            return result, before, _caused(session, action, before) if result.ok else []

        self._call(
            f"Applying: {_action_words(action)}…",
            apply,
            lambda done: self._applied(step, form, *done, action=action),
        )

    def _applied(
        self,
        step: Step | None,
        form: TaskForm,
        result: ActionResult,
        before: float | None = None,
        caused: Sequence[Any] = (),
        *,
        action: Mapping[str, Any] | None = None,
    ) -> None:
        if result.ok and before is not None and caused:
            trace = self.query_one("#trace", TraceView)
            trace.add_events(_action_words(action), before, caused)
            attempts = sum(1 for e in caused if isinstance(e.data, QueueAttempt))
            if attempts:
                self.notify(
                    f"{attempts} relay attempt{'s' if attempts != 1 else ''} meanwhile: "
                    "see the Queue view (q).",
                    timeout=5,
                )
        if result.ok:
            self.query_one("#trace", TraceView).mail.reload()
            self.notify(result.message, title="Changed", timeout=5)
            if form.is_attached:
                form.clear()
                if form.node is not None and form.zone is not None:
                    self._fetch_zone(form, form.node, form.zone)
            if isinstance(step, TaskStep) and self.viewed is step:
                found = self.query("#edits")
                if found:
                    cast(Static, found.first()).update(self._edits_text(step))
        else:
            self.notify(result.message, title="Not applied", severity="error", timeout=10)

    @on(TaskForm.ZoneWanted)
    def _zone_wanted(self, event: TaskForm.ZoneWanted) -> None:
        self._fetch_zone(event.form, event.node, event.zone)

    def _fetch_zone(self, form: TaskForm, node: str, zone: str) -> None:
        if not self.started or self.session.lab is None:
            self._pending_zone = (form, node, zone)
            return
        if self._busy:
            self._pending_zone = (form, node, zone)
            return
        lab = self.session.lab

        def records() -> str | None:
            reply = lab.control(node, "dns", "records", zone=zone)
            text = reply.get("text")
            return str(text) if text is not None else None

        def show(text: str | None) -> None:
            if form.is_attached:
                form.show_zone(node, zone, text)

        self._call(f"Reading the zone {zone} on {node}…", records, show)

    # -- buttons ------------------------------------------------------------

    @on(Button.Pressed, "#continue")
    @on(Button.Pressed, "#next")
    def _next_pressed(self) -> None:
        self.action_next()

    @on(Button.Pressed, "#run")
    def _run_pressed(self) -> None:
        self.action_run()

    @on(Button.Pressed, "#show")
    def _show_pressed(self) -> None:
        self.action_show_step()

    @on(ExperimentBox.Wanted)
    def _try(self, event: ExperimentBox.Wanted) -> None:
        run = event.run
        if not self._ready():
            return
        self.session.take_runs()

        def ran(outcome: ExperimentOutcome) -> None:
            self.session.take_runs()
            outcome = self._with_waits(outcome)
            box = self.query_one("#try", ExperimentBox)
            box.show_outcome(outcome)
            if outcome.data is not None:
                self._show_run(outcome, f"Your experiment: {run.describe()}")

        self._call(f"Running: {run.describe()}…", lambda: self.session.try_run(run), ran)

    @on(Button.Pressed, "#check")
    def _check_pressed(self) -> None:
        self.action_check()

    @on(Button.Pressed, "#hint")
    def _hint_pressed(self) -> None:
        self.action_hint()

    @on(Button.Pressed, "#home")
    def _home_pressed(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#review")
    def _review_pressed(self) -> None:
        self.action_previous()

    @on(RadioSet.Changed)
    def _radio(self, event: RadioSet.Changed) -> None:
        event.stop()


# -- texts ------------------------------------------------------------


def _names(owner: Callable[[str], str | None] | None) -> Callable[[str], str | None] | None:
    if owner is None:
        return None

    def name(address: str) -> str | None:
        try:
            return owner(address)
        except ValueError:
            return None

    return name


def _queue_id(event: TraceEvent) -> str | None:
    """The queue entry a relay's ``queue`` event is about (None: another event)."""
    queue_id = getattr(event.data, "queue_id", None) if event.kind == "queue" else None
    return queue_id if isinstance(queue_id, str) else None


def _opt_str(value: Any) -> str | None:
    return str(value) if value is not None else None


def _caused(session: TracingSession, action: Mapping[str, Any], before: float | None) -> list[Any]:
    """The lab's events since ``before``: what the change caused. A flush
    only starts the relay's attempts, so wait (a few real seconds at most)
    for each to end in a delivery, a deferral or a bounce."""
    if before is None:
        return []
    events = session.events_since(before)
    if "relay_flush" not in action:
        return events
    ends = (QueueDelivered, QueueDeferred, QueueInternalError, QueueBounced)
    for _ in range(30):
        attempts = [e for e in events if isinstance(e.data, QueueAttempt)]
        finished = [e for e in events if isinstance(e.data, ends)]
        if attempts and len(finished) >= len(attempts):
            break
        threading.Event().wait(0.1)
        events = session.events_since(before)
    return events


def _todo(step: Step) -> str:
    if isinstance(step, ExperimentStep):
        return "Run the experiment first (r)."
    if isinstance(step, QuestionStep):
        return "Answer the question first."
    if isinstance(step, TaskStep):
        return "Make the change, then check it (c). Stuck? Ask for a hint (h)."
    if isinstance(step, CheckpointStep):
        return "Run the check first (c)."
    return "Finish this step first."


def _marked(results: Sequence[PredicateOutcome]) -> Table:
    """✓/✗ lines whose text wraps under itself."""
    grid = Table.grid(padding=(0, 1, 0, 0))
    grid.add_column(width=3, justify="right")
    grid.add_column(ratio=1)
    for r in results:
        grid.add_row(
            Text("✓" if r.passed else "✗", style="green" if r.passed else "red"), Text(r.detail)
        )
    return grid


def _outcome_text(outcome: ExperimentOutcome) -> RenderableType:
    if outcome.error is not None:
        return Text("✗ The experiment did not run: ", style="bold red") + Text(outcome.error)
    parts: list[RenderableType] = []
    if outcome.hidden_until is not None:
        # hide_expect_until: the verdicts would answer the question that follows.
        parts.append(
            Text(
                "Read the trace yourself: what this step expects is shown once you have "
                "answered the question that follows.",
                style="italic",
            )
        )
    elif outcome.expectations:
        if outcome.passed:
            parts.append(Text("✓ As the step expects", style="bold green"))
        else:
            parts.append(Text("✗ Not what the step expects", style="bold red"))
        parts.append(_marked(outcome.expectations))
    parts.append(headline(outcome.data))
    parts.append(Text("The trace is in tab 2, the path on the map in tab 3.", style="dim"))
    return Group(*parts)


def _check_text(outcome: CheckOutcome, ran: bool) -> RenderableType:
    parts: list[RenderableType] = []
    if outcome.passed:
        parts.append(Text("✓ Check passed", style="bold green"))
    else:
        parts.append(Text("✗ Not yet", style="bold red"))
    parts.append(_marked(outcome.results))
    if outcome.passed and outcome.explanation:
        parts.append(Text("\n") + inline_markdown(outcome.explanation))
    if not outcome.passed and outcome.hint:
        parts.append(Text("\nHint: ", style="bold yellow") + inline_markdown(outcome.hint))
    if ran:
        parts.append(
            Text("The check's last experiment is in the trace (2) and on the map (3).", style="dim")
        )
    return Group(*parts)


def _action_words(action: Mapping[str, Any] | Any) -> str:
    from sim.lab.actions import ACTIONS

    if not isinstance(action, Mapping) or len(action) != 1:
        return str(action)
    name, args = next(iter(action.items()))
    definition = ACTIONS.get(str(name))
    if definition is None:
        return f"{name}: {args}"
    try:
        return definition.summary(args)
    except (KeyError, TypeError, AttributeError):
        return f"{name}: {args}"


def _completion_text(lab: LabDef) -> str:
    goals = "\n".join(f"- {g}" for g in lab.goals)
    return (
        f"You finished **{lab.title}**.\n\n"
        f"What you saw:\n\n{goals}\n\n"
        "Go back to the labs for the next one, or review the steps (p)."
    )
