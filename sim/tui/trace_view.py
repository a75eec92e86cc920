"""The trace of the last experiment, in panes a student can read.

A headline says what became of the experiment (delivered, blocked by the
ISP, rejected with 556 5.1.10...); below it one tab per layer: the whole
story in time order, DNS, the network's verdicts, the SMTP dialogue, the
receiving checks and the queue (see :mod:`sim.tui.tracefmt`), and the lab's
mail (:mod:`sim.tui.mail_view`). Each tab's title counts its events, so an
empty layer (no checks ran: the mail never got that far) is visible without
opening it.

What happened after the experiment because of the student (a flush, lab
time passing: the relay's later attempts) is added to the same trace, after
a marker line (:meth:`TraceView.add_events`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static, TabbedContent, TabPane

from sim.trace import TraceEvent
from sim.tui.mail_view import MailView
from sim.tui.tracefmt import (
    PANES,
    AddressNames,
    events_from,
    headline,
    lab_action_event,
    render_pane,
    with_waits,
)

__all__ = ["VIEWS", "TraceView"]

#: Every view of the trace view: (id, title); ``mail`` is the mailboxes.
VIEWS: tuple[tuple[str, str], ...] = (*((p.id, p.title) for p in PANES), ("mail", "Mail"))


class TraceView(Vertical):
    """The headline and the panes of one experiment's trace, and the mail."""

    DEFAULT_CLASSES = "empty"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._data: Mapping[str, Any] | None = None
        self._names: AddressNames | None = None
        self._title = ""
        self.connect_timeout: float | None = None

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
            with TabPane("Mail", id="pane-mail"):
                yield MailView(id="mail")

    @property
    def data(self) -> Mapping[str, Any] | None:
        """The result shown (its JSON, with ``trace``)."""
        return self._data

    @property
    def mail(self) -> MailView:
        return self.query_one("#mail", MailView)

    def show(
        self,
        data: Mapping[str, Any] | None,
        *,
        title: str = "",
        names: AddressNames | None = None,
    ) -> None:
        """Show a result's trace (``None`` clears the view)."""
        self._data = with_waits(data, self.connect_timeout, names)
        self._names, self._title = names, title
        self.set_class(data is None, "empty")
        if self.is_mounted:
            self._refresh_panes()
            self.mail.reload()

    def add_events(
        self, what: str, at: float, events: Sequence[TraceEvent], *, yours: bool = True
    ) -> None:
        """Add what a change to the lab caused (``what``, made at lab time
        ``at``) to the trace shown: a marker line, then ``events``."""
        if not events and self._data is None:
            return
        base = dict(self._data or {"trace": []})
        known = {(e.t, e.kind, e.node, e.summary) for e in events_from(base)}
        added = [lab_action_event(at, what, yours)]
        added += [e for e in events if (e.t, e.kind, e.node, e.summary) not in known]
        base["trace"] = [*(e.to_json() for e in events_from(base)), *(e.to_json() for e in added)]
        self._data = with_waits(base, self.connect_timeout, self._names)
        if what not in self._title:
            self._title = f"{self._title} · then: {what}" if self._title else f"After: {what}"
        self.set_class(False, "empty")
        if self.is_mounted:
            self._refresh_panes()
            self.mail.reload()

    def on_mount(self) -> None:
        self._refresh_panes()

    def _refresh_panes(self) -> None:
        events = events_from(self._data)
        self.query_one("#trace-title", Static).update(self._title)
        self.query_one("#trace-headline", Static).update(headline(self._data))
        tabs = self.query_one("#trace-panes", TabbedContent)
        for pane in PANES:
            count = sum(
                1
                for e in events
                if (not pane.kinds or e.kind in pane.kinds) and e.kind not in ("lab", "wait")
            )
            label = pane.title if self._data is None else f"{pane.title} {count}"
            tabs.get_tab(f"pane-{pane.id}").label = label
            body = render_pane(pane.id, events, self._names)
            self.query_one(f"#trace-{pane.id}", Static).update(body)

    @property
    def active_pane(self) -> str:
        return self.query_one("#trace-panes", TabbedContent).active.removeprefix("pane-")

    def show_pane(self, pane: str) -> None:
        """Open one pane (``story``, ``dns``, ``net``, ``smtp``, ``checks``,
        ``queue``, ``mail``) and focus what scrolls in it."""
        # The mail is there before any experiment: the panes show even empty.
        self.set_class(False, "empty")
        self.query_one("#trace-panes", TabbedContent).active = f"pane-{pane}"
        if pane == "mail":
            self.mail.reload()
            self.mail.focus_inside()
        else:
            self.query_one(f"#pane-{pane} .trace-scroll", VerticalScroll).focus()

    def scroller(self) -> VerticalScroll | None:
        """The scrolling part of the pane on screen."""
        pane = self.active_pane
        if pane == "mail":
            found = self.query("#mail-read") if self.mail.reading else None
            return found.first(VerticalScroll) if found else None
        return self.query_one(f"#pane-{pane} .trace-scroll", VerticalScroll)
