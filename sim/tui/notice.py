"""A lab the chosen backend cannot run: why, and the exact command instead.

The lab with real Postfix and Dovecot says ``backends: [mininet]``; on the
local backend (``maillab`` alone, or ``maillab run`` without ``--backend``)
the home screen lists it with a "mininet only" mark, and choosing it opens
this notice rather than a lab that could not start.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from sim.lab.model import LabDef

__all__ = ["BackendNotice", "backend_notice_text", "only_mark"]


def only_mark(lab: LabDef) -> str:
    """``mininet only`` for a lab that runs on one backend; empty otherwise."""
    return f"{lab.backends[0]} only" if len(lab.backends) == 1 else ""


def backend_notice_text(lab: LabDef, backend: str) -> str:
    """Why ``lab`` does not start on ``backend``, and how to run it."""
    other = lab.backends[0]
    command = f"maillab run {lab.id} --backend {other}"
    why = (
        "Its mail servers are the real Postfix and Dovecot, which run only inside "
        "the network namespaces of the mininet backend: that needs Linux and root."
        if other == "mininet"
        else ""
    )
    return (
        f"“{lab.title}” runs only on the {other} backend; this session uses the "
        f"{backend} backend. {why}\n\n"
        f"Quit (ctrl+q), then run, as root:\n\n    {command}\n\n"
        f"(maillab check {lab.id} --backend {other} runs its reference solution.)"
    )


class BackendNotice(ModalScreen[None]):
    """Closes with Enter, Esc or its button."""

    BINDINGS = [Binding("enter,escape", "close", "Close")]

    def __init__(self, lab: LabDef, backend: str) -> None:
        super().__init__()
        self.lab = lab
        self.backend = backend

    def compose(self) -> ComposeResult:
        with Vertical(id="notice-box"):
            yield Static(f"{only_mark(self.lab).capitalize()}", id="notice-title")
            yield Static(backend_notice_text(self.lab, self.backend), id="notice-text")
            with Horizontal(id="notice-buttons"):
                yield Button("OK (Enter)", id="ok", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one("#ok", Button).focus()

    def action_close(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        self.dismiss(None)
