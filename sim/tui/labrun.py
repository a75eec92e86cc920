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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.errors import Problem
from sim.lab.catalog import CatalogEntry, lab_files, load_catalog
from sim.lab.engine import ExperimentOutcome, LabSession
from sim.lab.model import ExperimentRun, LabDef
from sim.lab.progress import ProgressStore

__all__ = [
    "Catalog",
    "LabEntry",
    "TracingSession",
    "describe_minutes",
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
            )
        )
    return entries


def describe_minutes(seconds: float) -> str:
    """``1500`` → ``25 min``; ``5400`` → ``1 h 30 min``."""
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h" + (f" {rest} min" if rest else "")
