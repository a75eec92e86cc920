"""What the lab is doing while the student waits.

Starting a lab (seconds on mininet), a relay retrying in lab time, a check
that sends a message: engine calls run in a worker thread, and this bar
shows that something is happening, how much lab time has passed and the
latest thing that happened in the lab (a DNS answer, a deferral...), read
from the lab's own event log.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.timer import Timer
from textual.widgets import ProgressBar, Static

from sim.tui.tracefmt import lab_time

__all__ = ["Activity"]


class Activity(Horizontal):
    """An indeterminate progress bar and a line of what is going on."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.label = ""
        self._lab: Any = None
        self._t0: float | None = None
        self._seen = 0
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield ProgressBar(total=None, show_eta=False, show_percentage=False, id="activity-bar")
        yield Static("", id="activity-text")

    @property
    def running(self) -> bool:
        return self.has_class("running")

    def start(self, label: str, lab: Any = None) -> None:
        """Show ``label``; with a running lab, also its clock and latest event."""
        self.label = label
        self._lab = lab
        self._t0 = self._now()
        self._seen = self._event_count()
        self.add_class("running")
        self._tick()
        if self._timer is None:
            self._timer = self.set_interval(0.25, self._tick)
        else:
            self._timer.resume()

    def stop(self) -> None:
        self.remove_class("running")
        if self._timer is not None:
            self._timer.pause()
        self._lab = None

    def _now(self) -> float | None:
        now = getattr(self._lab, "now", None)
        try:
            return float(now()) if callable(now) else None
        except Exception:  # the lab may be stopping under us: just show less
            return None

    def _events(self) -> list[Any]:
        trace = getattr(self._lab, "trace", None)
        try:
            return list(getattr(trace(), "events", ())) if callable(trace) else []
        except Exception:
            return []

    def _event_count(self) -> int:
        return len(self._events())

    def _tick(self) -> None:
        text = Text(self.label, style="bold")
        now = self._now()
        if now is not None and self._t0 is not None:
            text.append(f"  lab time {lab_time(now, self._t0)}", style="dim")
        events = self._events()
        if len(events) > self._seen:
            latest = events[-1]
            summary = str(getattr(latest, "summary", "")).split("\n")[0]
            text.append(f"  {getattr(latest, 'node', '')}: {summary}", style="dim")
        self.query_one("#activity-text", Static).update(text)
