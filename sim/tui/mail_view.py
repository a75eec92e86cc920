"""The Mail view: the lab's mailboxes, and one message taken apart.

A list of every mailbox of the running lab (``bob@qq.example · INBOX on
mx-qq``) with its messages; Enter opens one: its header block, the
``Received:`` chain hop by hop with times, Authentication-Results,
DKIM-Signature, ARC, the delivery status of a bounce (RFC 3464), the body;
``v`` switches to the raw source and back; Esc returns to the list.

It reads what ``maillab mailbox`` reads (the MX's Maildir, through
:meth:`sim.Lab.mailbox`), in a worker thread, each time it is shown, so it
shows the mail of this run as it is now. A lab step can open a given
mailbox's newest message (:meth:`MailView.open_mailbox`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from sim.mailview import MailParts, parse_mail
from sim.topology.model import Topology
from sim.tui.mailfmt import message_line, raw_text, render_message

__all__ = ["MailView", "Mailbox", "lab_mailboxes"]


@dataclass(frozen=True)
class Mailbox:
    """One folder of one address, with its messages (oldest first)."""

    node: str
    address: str
    folder: str
    messages: tuple[Any, ...]  # StoredMessage-like: .key and .data

    @property
    def title(self) -> str:
        count = len(self.messages)
        return f"{self.address} · {self.folder} on {self.node} ({count})"


def lab_mailboxes(topology: Topology) -> list[tuple[str, str]]:
    """(node, address) for every mailbox an MX of the topology keeps."""
    out = []
    for node in topology.hosts():
        mx = node.services.mx
        if mx is None:
            continue
        for domain in mx.domains:
            for user in mx.mailboxes:
                out.append((node.name, f"{user}@{domain}"))
    return out


#: Reads the mailboxes (runs in a worker thread).
MailLoader = Callable[[], Sequence[Mailbox]]


class MailView(Vertical):
    """Mailboxes and messages of the running lab."""

    BINDINGS = [
        Binding("escape", "back", "List", show=True),
        Binding("v", "raw", "Raw/parsed"),
    ]

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.loader: MailLoader | None = None
        self.boxes: list[Mailbox] = []
        #: option id → (mailbox index, message index)
        self._index: dict[str, tuple[int, int]] = {}
        self.opened: tuple[int, int] | None = None
        self.parts: MailParts | None = None
        self.raw = False
        self._want: tuple[str, str | None] | None = None

    def compose(self) -> ComposeResult:
        yield Static(
            Text("Enter opens a message · v raw source · Esc back to the list", style="dim"),
            id="mail-help",
        )
        yield OptionList(id="mail-list")
        with VerticalScroll(id="mail-read"):
            yield Static("", id="mail-text")

    @property
    def reading(self) -> bool:
        return self.has_class("-reading")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("back", "raw"):
            return self.reading
        return True

    # -- loading -----------------------------------------------------------------

    def reload(self) -> None:
        """Read the mailboxes again (after an experiment, a check, a settle)."""
        if self.loader is not None:
            self._load(self.loader)

    @work(thread=True, exclusive=True, group="mail", exit_on_error=False)
    def _load(self, loader: MailLoader) -> None:
        try:
            boxes = list(loader())
        except Exception as err:  # a mailbox that cannot be read: say so, keep going
            self.app.call_from_thread(self._failed, f"{type(err).__name__}: {err}")
            return
        self.app.call_from_thread(self._loaded, boxes)

    def _failed(self, problem: str) -> None:
        self.query_one("#mail-help", Static).update(
            Text(f"The mailboxes could not be read: {problem}", style="red")
        )

    def _loaded(self, boxes: list[Mailbox]) -> None:
        self.boxes = boxes
        options = self.query_one("#mail-list", OptionList)
        highlighted = options.highlighted
        options.clear_options()
        self._index = {}
        if not boxes:
            options.add_option(
                Option(Text("No mailboxes in this lab.", style="dim"), disabled=True)
            )
        for b, box in enumerate(boxes):
            options.add_option(Option(Text(box.title, style="bold"), disabled=True))
            if not box.messages:
                options.add_option(Option(Text("   (empty)", style="dim"), disabled=True))
            for m, message in enumerate(box.messages):
                option_id = f"m{b}-{m}"
                self._index[option_id] = (b, m)
                try:
                    line = message_line(parse_mail(message.data))
                except Exception:  # an unreadable message still gets a line
                    line = f"(unreadable message {message.key})"
                options.add_option(Option(Text(f" {m + 1:>2}. {line}"), id=option_id))
        if highlighted is not None and highlighted < options.option_count:
            options.highlighted = highlighted
        elif self._index:
            options.highlighted = options.get_option_index(next(iter(self._index)))
        if self._want is not None:
            address, folder = self._want
            self._want = None
            self._open_newest(address, folder)

    # -- opening -----------------------------------------------------------------

    def open_mailbox(self, address: str, folder: str | None = None) -> None:
        """Open the newest message of ``address`` (in ``folder``, else in any
        folder), reading the mailboxes first."""
        self._want = (address, folder)
        self.reload()

    def _open_newest(self, address: str, folder: str | None) -> None:
        found: tuple[int, int] | None = None
        best = ""
        for b, box in enumerate(self.boxes):
            if box.address.lower() != address.lower() or not box.messages:
                continue
            if folder is not None and box.folder != folder:
                continue
            key = str(box.messages[-1].key)
            if found is None or key > best:  # Maildir keys start with the delivery time
                found, best = (b, len(box.messages) - 1), key
        if found is None:
            self.app.notify(
                f"No message for {address}{' in ' + folder if folder else ''} yet.",
                title="Mail",
                timeout=4,
            )
            self.back()
            return
        self.open(*found)

    def open(self, box: int, message: int) -> None:
        self.opened = (box, message)
        data = self.boxes[box].messages[message].data
        self.parts = parse_mail(data)
        self.raw = False
        self._show()
        self.add_class("-reading")
        scroll = self.query_one("#mail-read", VerticalScroll)
        scroll.scroll_home(animate=False)
        scroll.focus()

    def _show(self) -> None:
        if self.parts is None or self.opened is None:
            return
        box = self.boxes[self.opened[0]]
        head = Text(f"{box.address} · {box.folder} on {box.node} · ", style="dim")
        head.append("raw source" if self.raw else "message", style="bold")
        head.append("  (v raw/parsed, Esc list)", style="dim")
        self.query_one("#mail-help", Static).update(head)
        body = raw_text(self.parts) if self.raw else render_message(self.parts)
        self.query_one("#mail-text", Static).update(body)

    def back(self) -> None:
        self.remove_class("-reading")
        self.query_one("#mail-help", Static).update(
            Text("Enter opens a message · v raw source · Esc back to the list", style="dim")
        )

    @on(OptionList.OptionSelected, "#mail-list")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        where = self._index.get(event.option.id or "")
        if where is not None:
            self.open(*where)

    def action_back(self) -> None:
        self.back()
        self.query_one("#mail-list", OptionList).focus()

    def action_raw(self) -> None:
        self.raw = not self.raw
        self._show()

    def focus_inside(self) -> None:
        """Focus what the student reads: the message, else the list."""
        if self.reading:
            self.query_one("#mail-read", VerticalScroll).focus()
        else:
            self.query_one("#mail-list", OptionList).focus()
