"""What the TUI needs from the lab engine, in one place.

* :class:`TracingSession` is a :class:`~sim.lab.engine.LabSession` that keeps
  the experiments its checks ran: a task's check sends a message, and the
  student should see that message's trace and path (the MX that now answers
  556, the mail that now arrives), not only "passed".
* :class:`LabEntry` and :func:`load_entries` are the home screen's rows: each
  lab file with its title, goals, estimated time and this student's progress,
  or its problems when it does not load.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sim.errors import Problem
from sim.lab.catalog import CatalogEntry, lab_files, load_catalog
from sim.lab.engine import CheckOutcome, ExperimentOutcome, Feedback, LabSession
from sim.lab.model import ExperimentRun, LabDef, QuestionStep, Step, TaskStep
from sim.lab.progress import LabProgress, ProgressStore
from sim.services.maildir import FOLDERS
from sim.trace import TraceEvent
from sim.tui.mail_view import Mailbox, lab_mailboxes

__all__ = [
    "Catalog",
    "LabEntry",
    "TracingSession",
    "describe_minutes",
    "describe_spent",
    "load_entries",
]


class TracingSession(LabSession):
    """A lab session that remembers every experiment it ran, checks included."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.runs: list[ExperimentOutcome] = []

    def _execute(self, run: ExperimentRun, step_id: str | None = None) -> ExperimentOutcome:
        outcome = super()._execute(run, step_id)
        self.runs.append(outcome)
        return outcome

    def take_runs(self) -> list[ExperimentOutcome]:
        """The experiments run since the last call (oldest first)."""
        runs, self.runs = self.runs, []
        return runs

    # -- what the screen asks beyond the engine ------------------------------------

    def check(self, step: Step | str) -> CheckOutcome:
        """The engine's check, except that a failing check reveals no hint by
        itself: a hint appears only when the student asks for one (``h``).
        The hint already shown, if any, is still returned."""
        found = self.step(step)
        if not isinstance(found, TaskStep):
            return super().check(found)
        before = self.progress.step(found.id).hints
        outcome = super().check(found)
        state = self.progress.step(found.id)
        if state.hints != before:
            state.hints = before
            self.save()
        return outcome if before else replace(outcome, hint=None)

    def answer(self, step: Step | str, given: str | int) -> Feedback:
        """The engine's judgement; the same multiple-choice answer given again
        is not another attempt (the student pressed Enter twice, or came
        back to read the feedback)."""
        found = self.step(step)
        state = self.progress.step(found.id)
        before = (state.attempts, list(state.answers))
        feedback = super().answer(found, given)
        repeated = (
            isinstance(found, QuestionStep)
            and found.multiple_choice
            and feedback.choice is not None
            and feedback.choice in before[1]
        )
        if repeated and state.attempts > before[0]:
            state.attempts, state.answers = before[0], before[1]
            self.save()
        return feedback

    def try_run(self, run: ExperimentRun) -> ExperimentOutcome:
        """A student's own experiment (the free experiment box): run, not judged."""
        return self._execute(run, None)

    def now(self) -> float | None:
        lab = self.lab
        if lab is None:
            return None
        now = getattr(lab, "now", None)
        return float(now()) if callable(now) else None

    def events_since(self, t: float | None) -> list[TraceEvent]:
        """The lab-wide trace's events from lab time ``t`` on (what a change to
        the lab caused: a flush, lab time passing); [] where the lab keeps no
        such log."""
        lab = self.lab
        trace = getattr(lab, "trace", None) if lab is not None else None
        if t is None or not callable(trace):
            return []
        return [e for e in trace() if e.t >= t]

    def mailboxes(self) -> list[Mailbox]:
        """Every mailbox of the lab's MXs with its messages, as stored now."""
        lab = self.lab
        if lab is None:
            return []
        nodes: dict[str, list[str]] = {}
        for node, address in lab_mailboxes(self.topology):
            nodes.setdefault(address, []).append(node)
        out = []
        for address, where in nodes.items():
            for folder in FOLDERS:
                messages = tuple(lab.mailbox(address, folder))
                if messages or folder == "INBOX":
                    out.append(Mailbox(", ".join(where), address, folder, messages))
        return out


@dataclass(frozen=True)
class LabEntry:
    """One lab of the catalog, as the home screen shows it."""

    id: str
    path: Path
    lab: LabDef | None
    problems: tuple[Problem, ...] = ()
    started: bool = False
    done: int = 0
    completed: bool = False
    attempts: int = 0
    hints: int = 0
    #: Seconds from the first start to the last activity (or the end).
    spent: float = 0.0

    @property
    def title(self) -> str:
        return self.lab.title if self.lab is not None else self.path.name

    @property
    def total(self) -> int:
        return len(self.lab.steps) if self.lab is not None else 0

    @property
    def state(self) -> str:
        """``not started``, ``3/9``, ``done`` or ``invalid``."""
        if self.lab is None:
            return "invalid"
        if self.completed:
            return "done"
        if not self.started:
            return "new"
        return f"{self.done}/{self.total}"


class Catalog:
    """The lab files of a directory, loaded once and again only when a file
    changes (loading and validating a lab takes a fraction of a second, and
    the home screen asks often: on every return to it)."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._items: list[CatalogEntry] = []

    def load(self, directory: Path) -> list[CatalogEntry]:
        files = lab_files(directory)
        key = (directory, tuple((f, f.stat().st_mtime_ns) for f in files))
        if key != self._key:
            self._items = load_catalog(directory)
            self._key = key
        return self._items


def load_entries(
    directory: Path, store: ProgressStore, catalog: Catalog | None = None
) -> list[LabEntry]:
    """Every lab file of ``directory`` with this student's progress."""
    entries = []
    items = catalog.load(directory) if catalog is not None else load_catalog(directory)
    for item in items:
        lab = item.lab
        if lab is None:
            entries.append(LabEntry(item.id, item.path, None, item.problems))
            continue
        started = store.exists(lab.id)
        progress = store.load(lab.id) if started else None
        ids = {s.id for s in lab.steps}
        done = sum(1 for k, s in progress.steps.items() if s.done and k in ids) if progress else 0
        entries.append(
            LabEntry(
                lab.id,
                item.path,
                lab,
                started=started,
                done=done,
                completed=bool(progress and progress.completed) or (started and done == len(ids)),
                attempts=sum(s.attempts for s in progress.steps.values()) if progress else 0,
                hints=sum(s.hints for s in progress.steps.values()) if progress else 0,
                spent=time_spent(progress) if progress else 0.0,
            )
        )
    return entries


def _epoch(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        return float(calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


def time_spent(progress: LabProgress) -> float:
    """The time the lab was open (counted by the TUI); for progress saved
    before it was counted, from the first start to the end or the last
    thing done."""
    if progress.seconds > 0:
        return progress.seconds
    start = _epoch(progress.started)
    end = _epoch(progress.completed) or _epoch(progress.updated)
    if start is None or end is None:
        return 0.0
    return max(0.0, end - start)


def describe_spent(seconds: float) -> str:
    """``0:42`` (minutes:seconds) up to an hour, then ``1h05``; ``-`` for none."""
    if seconds <= 0:
        return "-"
    minutes = round(seconds) // 60
    if minutes < 60:
        return f"{minutes}m" if minutes else f"{round(seconds)}s"
    return f"{minutes // 60}h{minutes % 60:02d}"


def describe_minutes(seconds: float) -> str:
    """``1500`` → ``25 min``; ``5400`` → ``1 h 30 min``."""
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h" + (f" {rest} min" if rest else "")
