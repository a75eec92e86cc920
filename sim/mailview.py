"""A stored message taken apart the way a student reads it.

The labs keep saying "look at bob's copy", "read the bounce", "read the
headers". This module turns the bytes of a delivered message (a Maildir
file, :class:`~sim.services.maildir.StoredMessage`) into the parts those
steps talk about, as plain data the TUI's Mail view and the notebooks both
render:

* the **Received:** chain (RFC 5321 §4.4), one :class:`Hop` per header, in
  the order the message travelled (the bottom header is the first hop), each
  with its ``from``/``by``/``with``/``id``/``for`` clauses and its time;
* **Authentication-Results** (RFC 8601), **DKIM-Signature** (RFC 6376 §3.5)
  and the **ARC** set (RFC 8617) when present;
* the body as text (the first text part of a MIME message);
* for a bounce or a delay notice, the **delivery status** (RFC 3464): the
  per-message fields and, per recipient, Action, Status, Diagnostic-Code,
  Remote-MTA and Will-Retry-Until;
* the raw source, as stored.

Parsing uses the standard library's :mod:`email` (RFC 5322 and MIME); only
the ``Received:`` clauses, which RFC 5321 defines as free-form tokens, are
read here with a tolerant pattern.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import gzip
import io
import re
from dataclasses import field
from datetime import datetime
from email.message import EmailMessage, Message
from typing import Any

from sim.fastclass import dataclass

__all__ = [
    "DsnRecipient",
    "DsnReport",
    "Hop",
    "MailParts",
    "describe_delta",
    "parse_mail",
    "parse_received",
]

#: The ARC header fields (RFC 8617 §4.1), shown together as one set.
ARC_HEADERS = ("ARC-Seal", "ARC-Message-Signature", "ARC-Authentication-Results")

#: The headers a student reads first, in this order (present ones only).
SUMMARY_HEADERS = ("From", "To", "Subject", "Date", "Message-ID", "Return-Path", "Delivered-To")

_CLAUSE = re.compile(r"\b(from|by|via|with|id|for)\s+", re.IGNORECASE)


def _unfold(value: str) -> str:
    """One line: RFC 5322 §2.2.3 folding (CRLF + whitespace) undone."""
    return re.sub(r"\s*\r?\n\s*", " ", value).strip()


@dataclass(frozen=True)
class Hop:
    """One ``Received:`` header: which host handed the message to which."""

    from_: str = ""
    by: str = ""
    with_: str = ""
    id: str = ""
    for_: str = ""
    #: The date after the final ``;`` as written, and parsed (None if unreadable).
    date_text: str = ""
    date: datetime | None = None
    #: Parenthesised notes, such as ``(using TLSv1.3 ...)`` or ``(Authenticated sender: ...)``.
    notes: tuple[str, ...] = ()
    raw: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.from_,
            "by": self.by,
            "with": self.with_,
            "id": self.id,
            "for": self.for_,
            "date": self.date_text,
            "notes": list(self.notes),
        }


def parse_received(value: str) -> Hop:
    """Read one ``Received:`` value (RFC 5321 §4.4 "Time-stamp-line").

    The clauses are taken in any order; a comment in parentheses after a
    clause (``from a (a [192.0.2.1])``) stays with it, other comments become
    notes. Anything unreadable stays in ``raw``.
    """
    raw = _unfold(value)
    head, sep, date_text = raw.rpartition(";")
    if not sep:
        head, date_text = raw, ""
    date: datetime | None = None
    if date_text.strip():
        try:
            date = email.utils.parsedate_to_datetime(date_text.strip())
        except (TypeError, ValueError, IndexError):
            date = None
    clauses: dict[str, str] = {}
    notes: list[str] = []
    # Clause words inside comments ("(using TLSv1.3 with cipher ...)") are
    # not clauses: find them in a copy with the comments blanked out.
    matches = list(_CLAUSE.finditer(_mask_comments(head)))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(head)
        text = head[match.end() : end].strip()
        # Comments that are not the host's own "(name [address])" are notes.
        value_part, comments = _split_comments(text)
        name = match.group(1).lower()
        keep = value_part
        for comment in comments:
            if name == "from" and ("[" in comment or comment.startswith("unknown")):
                keep += f" ({comment})"
            else:
                notes.append(comment)
        clauses.setdefault(name, keep.strip())
    return Hop(
        from_=clauses.get("from", ""),
        by=clauses.get("by", ""),
        with_=clauses.get("with", ""),
        id=clauses.get("id", ""),
        for_=clauses.get("for", ""),
        date_text=date_text.strip(),
        date=date,
        notes=tuple(notes),
        raw=raw,
    )


def _mask_comments(text: str) -> str:
    """``text`` with every character inside parentheses replaced (same length)."""
    out, depth = [], 0
    for ch in text:
        if ch == "(":
            depth += 1
        out.append("\x00" if depth else ch)
        if ch == ")" and depth:
            depth -= 1
    return "".join(out)


def _split_comments(text: str) -> tuple[str, list[str]]:
    """``a (b) c (d)`` → (``a c``, [``b``, ``d``]); nested parentheses kept whole."""
    out, comments, depth, current = [], [], 0, []
    for ch in text:
        if ch == "(":
            if depth:
                current.append(ch)
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
            if depth:
                current.append(ch)
            else:
                comments.append("".join(current).strip())
                current = []
        elif depth:
            current.append(ch)
        else:
            out.append(ch)
    return re.sub(r"\s+", " ", "".join(out)).strip(), comments


def describe_delta(seconds: float) -> str:
    """``+0s``, ``+42s``, ``+5m02s``, ``+2h05m``, ``+1d04h`` (for hop times)."""
    seconds = round(max(0.0, seconds))
    if seconds < 60:
        return f"+{seconds}s"
    if seconds < 3600:
        return f"+{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"+{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"+{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


@dataclass(frozen=True)
class DsnRecipient:
    """The per-recipient fields of a delivery status notification (RFC 3464 §2.3)."""

    fields: tuple[tuple[str, str], ...]

    def get(self, name: str) -> str:
        low = name.lower()
        return next((v for k, v in self.fields if k.lower() == low), "")

    @property
    def recipient(self) -> str:
        return self.get("Final-Recipient").partition(";")[2].strip() or self.get("Final-Recipient")

    @property
    def action(self) -> str:
        return self.get("Action")

    @property
    def status(self) -> str:
        return self.get("Status")

    @property
    def diagnostic(self) -> str:
        return self.get("Diagnostic-Code")

    @property
    def will_retry_until(self) -> str:
        return self.get("Will-Retry-Until")


@dataclass(frozen=True)
class DsnReport:
    """A ``message/delivery-status`` part: who reports, and on whom (RFC 3464 §2.2-2.3)."""

    message_fields: tuple[tuple[str, str], ...]
    recipients: tuple[DsnRecipient, ...]
    #: The headers of the returned message (``text/rfc822-headers``), if included.
    returned_headers: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "message": dict(self.message_fields),
            "recipients": [dict(r.fields) for r in self.recipients],
            "returned_headers": self.returned_headers,
        }


@dataclass(frozen=True)
class MailParts:
    """A message, taken apart (see the module docstring)."""

    headers: tuple[tuple[str, str], ...]
    hops: tuple[Hop, ...]
    body: str
    raw: str
    dsn: DsnReport | None = None
    attachments: tuple[str, ...] = field(default=())

    def header(self, name: str) -> str:
        low = name.lower()
        return next((v for k, v in self.headers if k.lower() == low), "")

    def all(self, name: str) -> list[str]:
        low = name.lower()
        return [v for k, v in self.headers if k.lower() == low]

    @property
    def subject(self) -> str:
        return self.header("Subject")

    @property
    def sender(self) -> str:
        return self.header("From")

    @property
    def summary(self) -> list[tuple[str, str]]:
        return [(n, v) for n in SUMMARY_HEADERS for v in self.all(n)]

    @property
    def authentication_results(self) -> list[str]:
        return self.all("Authentication-Results")

    @property
    def dkim_signatures(self) -> list[str]:
        return self.all("DKIM-Signature")

    @property
    def arc(self) -> list[tuple[str, str]]:
        wanted = {h.lower() for h in ARC_HEADERS}
        return [(k, v) for k, v in self.headers if k.lower() in wanted]

    @property
    def is_report(self) -> bool:
        return self.dsn is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "headers": [list(h) for h in self.headers],
            "received": [h.to_json() for h in self.hops],
            "authentication_results": self.authentication_results,
            "dkim_signatures": self.dkim_signatures,
            "arc": [list(h) for h in self.arc],
            "body": self.body,
            "dsn": self.dsn.to_json() if self.dsn is not None else None,
        }


def parse_mail(data: bytes) -> MailParts:
    """Take a message apart; never raises on a malformed message (what the
    parser could not read stays in ``raw``)."""
    parsed = email.message_from_bytes(data, policy=email.policy.compat32)
    headers = tuple((str(k), _unfold(str(v))) for k, v in parsed.items())
    received = [v for k, v in parsed.items() if str(k).lower() == "received"]
    # Each relay adds its Received: on top (RFC 5321 §4.4): reversed, they
    # read in the order the message travelled.
    hops = tuple(parse_received(str(v)) for v in reversed(received))
    body, attachments = _body(parsed)
    return MailParts(
        headers=headers,
        hops=hops,
        body=body,
        raw=data.decode("utf-8", "replace"),
        dsn=_dsn(parsed),
        attachments=tuple(attachments),
    )


def _text_of(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, "replace")
        except LookupError:
            return payload.decode("utf-8", "replace")
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""


def _body(message: Message) -> tuple[str, list[str]]:
    """The first text/plain part (the human-readable one of a report), and
    the content types of the other parts."""
    if not message.is_multipart():
        return _text_of(message), []
    text: str | None = None
    others: list[str] = []
    reports: list[str] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        if text is None and ctype == "text/plain":
            text = _text_of(part)
        else:
            others.append(ctype)
            shown = _report_xml(part)
            if shown is not None:
                reports.append(shown)
    return "\n".join([text or "", *reports]) if reports else text or "", others


#: The most of a compressed report shown (a lab's reports are a few KB).
_REPORT_LIMIT = 256 * 1024


def _report_xml(part: Message) -> str | None:
    """A DMARC aggregate report attached as ``application/gzip`` (RFC 9990
    §5: ``....xml.gz``), uncompressed for reading, or None for any other part."""
    name = str(part.get_filename() or "")
    if part.get_content_type() != "application/gzip" or not name.endswith(".xml.gz"):
        return None
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return None
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(payload)) as stream:
            xml = stream.read(_REPORT_LIMIT)
    except (OSError, EOFError):
        return f"--- {name}: not a readable gzip file ---"
    return f"--- {name} (uncompressed) ---\n" + xml.decode("utf-8", "replace")


def _fields(block: Message) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), _unfold(str(v))) for k, v in block.items())


def _dsn(message: Message) -> DsnReport | None:
    """The ``message/delivery-status`` part of a report (RFC 3464 §2.1), or None."""
    if message.get_content_type() != "multipart/report":
        return None
    status: Message | None = None
    returned = ""
    for part in message.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status" and status is None:
            status = part
        elif ctype in ("text/rfc822-headers", "message/rfc822-headers"):
            returned = _text_of(part).strip()
        elif ctype == "message/rfc822" and not returned:
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                returned = "\n".join(f"{k}: {v}" for k, v in inner[0].items())
    if status is None:
        return None
    blocks = status.get_payload()
    if not isinstance(blocks, list) or not blocks:
        return DsnReport((), (), returned)
    groups = [b for b in blocks if isinstance(b, Message)]
    first, rest = groups[0], groups[1:]
    return DsnReport(
        _fields(first), tuple(DsnRecipient(_fields(b)) for b in rest if list(b.items())), returned
    )


def as_email(data: bytes) -> EmailMessage:
    """The modern :class:`EmailMessage` view of the same bytes (for callers
    that want the stdlib's API)."""
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed
