"""The trace of the last experiment, in panes a student can read.

A headline says what became of the experiment (delivered, blocked by the
ISP, rejected with 556 5.1.10...); below it one tab per layer: the whole
story in time order, DNS, the network's verdicts, the SMTP dialogue, the
receiving checks and the queue (see :mod:`sim.tui.tracefmt`). Each tab's
title counts its events, so an empty layer (no checks ran: the mail never
got that far) is visible without opening it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static, TabbedContent, TabPane

from sim.tui.tracefmt import PANES, AddressNames, events_from, headline, render_pane

__all__ = ["TraceView"]


class TraceView(Vertical):
    """The headline and the panes of one experiment's trace."""

    DEFAULT_CLASSES = "empty"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._data: Mapping[str, Any] | None = None
        self._names: AddressNames | None = None
        self._title = ""

    def compose(self) -> ComposeResult:
        yield Static(id="trace-title")
        yield Static(headline(None), id="trace-headline")
        with TabbedContent(id="trace-panes"):
            for pane in PANES:
                with (
                    TabPane(pane.title, id=f"pane-{pane.id}"),
                    VerticalScroll(classes="trace-scroll"),
                ):
                    yield Static(id=f"trace-{pane.id}", classes="trace-text")

    @property
    def data(self) -> Mapping[str, Any] | None:
        """The result shown (its JSON, with ``trace``)."""
        return self._data

    def show(
        self,
        data: Mapping[str, Any] | None,
        *,
        title: str = "",
        names: AddressNames | None = None,
    ) -> None:
        """Show a result's trace (``None`` clears the view)."""
        self._data, self._names, self._title = data, names, title
        self.set_class(data is None, "empty")
        if self.is_mounted:
            self._refresh_panes()

    def on_mount(self) -> None:
        self._refresh_panes()

    def _refresh_panes(self) -> None:
        events = events_from(self._data)
        self.query_one("#trace-title", Static).update(self._title)
        self.query_one("#trace-headline", Static).update(headline(self._data))
        tabs = self.query_one("#trace-panes", TabbedContent)
        for pane in PANES:
            count = sum(1 for e in events if not pane.kinds or e.kind in pane.kinds)
            label = pane.title if self._data is None else f"{pane.title} {count}"
            tabs.get_tab(f"pane-{pane.id}").label = label
            body = render_pane(pane.id, events, self._names) if self._data is not None else ""
            self.query_one(f"#trace-{pane.id}", Static).update(body)
