"""A stored message as text a student can read (the Mail view's body).

Pure functions from :class:`~sim.mailview.MailParts` to Rich text, tested
without a terminal. The order follows what the labs ask about: who sent it
and what it is; how it travelled (the ``Received:`` chain, oldest hop first,
with the time each hop took); what the receiver concluded
(``Authentication-Results``, ``DKIM-Signature``, ARC); for a bounce or a
delay notice, the delivery status per recipient (RFC 3464); then the body.
The raw source is a separate rendering (:func:`raw_text`).
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from sim.mailview import MailParts, describe_delta

__all__ = ["message_line", "raw_text", "render_message"]

_ACTION_STYLE = {"failed": "red", "delayed": "yellow", "delivered": "green", "relayed": "green"}


def _section(title: str) -> Text:
    return Text(f"\n{title}", style="bold underline")


def _field(name: str, value: str, style: str = "") -> Table:
    """``name: value`` with the value wrapping under itself."""
    grid = Table.grid(padding=(0, 1, 0, 0))
    grid.add_column(no_wrap=True, style="bold")
    grid.add_column(ratio=1)
    grid.add_row(f"{name}:", Text(value, style=style))
    return grid


def message_line(parts: MailParts) -> str:
    """One line for a list of messages: subject, sender."""
    subject = parts.subject or "(no subject)"
    sender = parts.sender or "?"
    return f"{subject} — {sender}"


def _auth_text(value: str) -> Text:
    """An Authentication-Results value, one method per line, results coloured."""
    text = Text()
    items = [item.strip() for item in value.split(";") if item.strip()]
    for i, item in enumerate(items):
        if i:
            text.append("\n")
        method, _, rest = item.partition("=")
        if not rest:
            text.append(item, style="dim" if i == 0 else "")
            continue
        result = rest.split()[0] if rest.split() else ""
        style = {"pass": "green", "fail": "red", "softfail": "yellow", "none": "dim"}.get(
            result, "yellow"
        )
        text.append(f"{method}=")
        text.append(result, style=f"bold {style}")
        text.append(rest[len(result) :])
    return text


def _dkim_text(value: str) -> Text:
    """A DKIM-Signature's tags (RFC 6376 §3.5), long base64 values cut."""
    text = Text()
    for i, tag in enumerate(t.strip() for t in value.split(";") if t.strip()):
        name, _, tag_value = tag.partition("=")
        name = name.strip()
        tag_value = " ".join(tag_value.split())
        if name in ("b", "bh") and len(tag_value) > 16:
            tag_value = tag_value[:16] + "…"
        if i:
            text.append("; ")
        style = "bold" if name in ("d", "s") else ""
        text.append(f"{name}=", style=style)
        text.append(tag_value, style=style)
    return text


def _dsn(parts: MailParts) -> list[RenderableType]:
    """A report's delivery status, per recipient (RFC 3464 §2.3)."""
    out: list[RenderableType] = []
    if parts.dsn is not None:
        out.append(_section("Delivery status (RFC 3464)"))
        for name, value in parts.dsn.message_fields:
            out.append(_field(name, value, "dim"))
        for rcpt in parts.dsn.recipients:
            out.append(Text(""))
            out.append(_field("Final-Recipient", rcpt.recipient, "bold"))
            action = rcpt.action
            out.append(_field("Action", action, f"bold {_ACTION_STYLE.get(action, '')}".strip()))
            out.append(_field("Status", rcpt.status, "red" if rcpt.status[:1] == "5" else "yellow"))
            for name in ("Remote-MTA", "Diagnostic-Code", "Last-Attempt-Date", "Will-Retry-Until"):
                value = rcpt.get(name)
                if value:
                    out.append(_field(name, value))
    return out


def render_message(parts: MailParts) -> RenderableType:
    """The whole message, section by section."""
    out: list[RenderableType] = []
    for name, value in parts.summary:
        out.append(_field(name, value))
    # A bounce or a delay notice is read for its status first.
    out += _dsn(parts)

    count = len(parts.hops)
    hops = f"{count} hop{'' if count == 1 else 's'}"
    out.append(_section(f"How it travelled (Received:, {hops}, first hop first)"))
    if not parts.hops:
        out.append(Text("No Received: header.", style="dim"))
    first = next((h.date for h in parts.hops if h.date is not None), None)
    for i, hop in enumerate(parts.hops, 1):
        line = Text(f"{i}. ", style="bold")
        line.append(hop.from_ or "?", style="cyan")
        line.append(" → ")
        line.append(hop.by or "?", style="cyan")
        if hop.with_:
            line.append(f"  with {hop.with_}")
        if hop.id:
            line.append(f"  id {hop.id}", style="dim")
        out.append(line)
        when = Text(hop.date_text or "(no date)", style="dim")
        if hop.date is not None and first is not None:
            when.append(f"  {describe_delta((hop.date - first).total_seconds())}", style="yellow")
        out.append(Padding(when, (0, 0, 0, 3)))
        for note in hop.notes:
            if note != "maillab":
                out.append(Padding(Text(f"({note})", style="dim"), (0, 0, 0, 3)))

    auth = parts.authentication_results
    out.append(_section("What the receiver concluded (Authentication-Results:)"))
    if not auth:
        out.append(Text("No Authentication-Results header.", style="dim"))
    for value in auth:
        out.append(Padding(_auth_text(value), (0, 0, 0, 2)))

    signatures = parts.dkim_signatures
    out.append(_section("DKIM-Signature:"))
    if not signatures:
        out.append(Text("Not signed.", style="dim"))
    for value in signatures:
        out.append(Padding(_dkim_text(value), (0, 0, 0, 2)))

    if parts.arc:
        out.append(_section("ARC (RFC 8617)"))
        for name, value in parts.arc:
            out.append(_field(name, value))

    if parts.dsn is not None and parts.dsn.returned_headers:
        out.append(_section("The returned message's headers"))
        out.append(Text(parts.dsn.returned_headers, style="dim"))

    out.append(_section("Body"))
    out.append(Text(parts.body.rstrip() or "(empty)"))
    if parts.attachments:
        out.append(Text(f"\nOther parts: {', '.join(parts.attachments)}", style="dim"))
    out.append(Text("\nv: the raw source, as stored", style="dim"))
    return Group(*out)


def raw_text(parts: MailParts) -> Text:
    """The message exactly as stored (tabs shown as spaces)."""
    return Text(parts.raw.replace("\t", "    ").replace("\r\n", "\n"))
