"""What the MX reads from and writes into a message.

The header section read once, by the email package's rules but without
building a message (From: fields, Message-ID, the sender's queue id); the
trace fields a stored copy gets (``Received``, RFC 5321 §4.4, and the
lab's ``X-Maillab-Checks``); folding (RFC 5322 §2.2.3); a stored message
described for the ``mailbox`` control command.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sim.fastclass import dataclass
from sim.services.mxscore import Score
from sim.services.policy import Decision, Judgement

if TYPE_CHECKING:
    from sim.services.mxhandler import Connection
    from sim.services.mxscore import Score
    from sim.services.policy import Decision, Judgement


# RFC 5321 §4.4: the "id" clause of a Received field (the sender's queue id).
_RECEIVED_ID = re.compile(r"\bid\s+([A-Za-z0-9._-]+)", re.IGNORECASE)
_UNPRINTABLE = re.compile(r"[^\x21-\x7e]")


def _tls_info(session: Any) -> tuple[str | None, str | None]:
    info = session.ssl
    if not info:
        return None, None
    ssl_object = info.get("ssl_object")
    cipher = info.get("cipher")
    version = ssl_object.version() if ssl_object is not None else None
    return version, (cipher[0] if cipher else None)


def _describe_stored(folder: str, key: str, data: bytes) -> dict[str, Any]:
    headers = BytesHeaderParser(policy=compat32).parsebytes(data)

    def all_of(name: str) -> list[str]:
        return [str(v) for v in headers.get_all(name, [])]

    return {
        "folder": folder,
        "key": key,
        "size": len(data),
        "subject": str(headers.get("Subject", "")),
        "from": str(headers.get("From", "")),
        "to": str(headers.get("To", "")),
        "message_id": str(headers.get("Message-ID", "")),
        "return_path": str(headers.get("Return-Path", "")),
        "delivered_to": str(headers.get("Delivered-To", "")),
        "authentication_results": all_of("Authentication-Results"),
        "received": all_of("Received"),
    }


@dataclass(frozen=True)
class _Headers:
    """What the MX reads from a message's header section (parsed once)."""

    from_domain: str = ""
    message_id: str | None = None
    client_queue_id: str | None = None
    #: Every From: field's value, in order (RFC 5322 §3.6 allows one).
    from_fields: tuple[str, ...] = ()


def _header_section(content: bytes) -> bytes:
    """The header section with the empty line that ends it (RFC 5322 §2.1):
    the parser need not read the body, which may be megabytes."""
    ends = [i + len(sep) for sep in (b"\r\n\r\n", b"\n\n") if (i := content.find(sep)) >= 0]
    return content[: min(ends)] if ends else content


# A line of the header section as the email package's parser sees one: an
# mbox envelope line, a field (printable US-ASCII but the colon, RFC 5322
# §3.6.8 ftext, possibly empty, then a colon) or a continuation (email.feedparser).
_HEADER_LINE = re.compile(r"From |[\x21-\x39\x3b-\x7e]*:|[\t ]")


def _header_fields(section: bytes) -> list[tuple[str, str]]:
    """The fields of a header section as (name, value), in order, read by
    the rules of the email package's feedparser (compat32), without building
    a Message: the section ends at the first line that is not a header line;
    a line starting with a space or tab continues the field before it (RFC
    5322 §2.2.3; the value keeps its line breaks but the last); a first line
    "From " is the mbox envelope; misplaced ones and nameless fields are
    dropped, and so are continuations of what was dropped."""
    lines: list[str] = []
    for line in section.splitlines(keepends=True):
        text = line.decode("ascii", "surrogateescape")
        if not _HEADER_LINE.match(text):
            break
        lines.append(text)
    fields: list[tuple[str, str]] = []
    current: list[str] = []  # the lines of the field being read

    def close() -> None:
        if current:
            name, _, value = current[0].partition(":")
            value = value.lstrip(" \t") + "".join(current[1:])
            fields.append((name, value.rstrip("\r\n")))
            current.clear()

    for number, text in enumerate(lines):
        if text[0] in " \t":
            if current:
                current.append(text)
            continue
        close()
        if text.startswith("From "):
            if number == len(lines) - 1 and number:
                break  # the parser gives it to the body
            continue  # the envelope line, or a misplaced one
        if text.startswith(":"):
            continue  # no field name
        current.append(text)
    close()
    return fields


def _read_headers(content: bytes) -> _Headers:
    fields = _header_fields(_header_section(content))

    def first(name: str) -> str | None:
        return next((v for n, v in fields if n.lower() == name), None)

    from_values = [v for n, v in fields if n.lower() == "from"]
    message_id = first("message-id")
    return _Headers(
        _from_domain(from_values),
        message_id.strip() if message_id else None,
        _client_queue_id(first("received")),
        tuple(from_values),
    )


def _from_domain(values: list[str]) -> str:
    """The RFC5322.From domain DMARC judges (RFC 9989 §5.3.1): the first
    address's domain; empty when there is none."""
    try:
        addresses = email.utils.getaddresses(values)
    except Exception:
        return ""
    for _, address in addresses:
        if "@" in address:
            return address.rpartition("@")[2].strip().lower().rstrip(".")
    return ""


def _client_queue_id(top: str | None) -> str | None:
    """The sending MTA's queue id, from the ``id`` clause of the topmost
    Received field (the one the client added, RFC 5321 §4.4)."""
    if not top:
        return None
    match = _RECEIVED_ID.search(top)
    return match.group(1) if match else None


def _printable(text: str) -> str:
    return _UNPRINTABLE.sub("?", text.replace(" ", "?"))[:255] if text else ""


def _received(conn: Connection, session: Any, host: str, queue_id: str, rcpt: str) -> str:
    """``Received: from HELO (NAME [IP]) by HOST with ESMTPS id ID for <rcpt>; date``
    (RFC 5321 §4.4; "with" values from RFC 3848; the name in parentheses is the
    forward-confirmed PTR name, "unknown" without one, as Postfix writes it)."""
    helo = _printable(str(session.host_name or "")) or "unknown"
    name = (conn.rdns.confirmed if conn.rdns is not None else None) or "unknown"
    tls = session.ssl is not None
    protocol = ("ESMTP" if session.extended_smtp else "SMTP") + ("S" if tls else "")
    lines = [f"Received: from {helo} ({name} [{conn.ip}])"]
    if tls:
        version, cipher = _tls_info(session)
        lines.append(f"\t(using {version} with cipher {cipher})")
    lines.append(f"\tby {host} (maillab) with {protocol} id {queue_id}")
    date = email.utils.format_datetime(datetime.now(UTC).astimezone())
    lines.append(f"\tfor <{_printable(rcpt)}>; {date}")
    return "\r\n".join(lines)


@lru_cache(maxsize=256)
def _fold(value: str, width: int = 78) -> str:
    """Fold a long structured field after ``;`` outside quotes and comments
    (RFC 5322 §2.2.3: lines SHOULD stay within 78 characters), packing as
    many clauses on a line as fit. (Remembered: messages with the same
    results get the same fields, and this reads them character by character.)"""
    parts: list[str] = []
    depth, quoted, start = 0, False, 0
    for i, ch in enumerate(value):
        if ch == '"' and (i == 0 or value[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")" and depth:
            depth -= 1
        elif ch == ";" and not quoted and depth == 0:
            parts.append(value[start : i + 1].strip())
            start = i + 1
    parts.append(value[start:].strip())
    lines: list[str] = []
    for part in (p for p in parts if p):
        if lines and len(lines[-1]) + 1 + len(part) <= width - 8:
            lines[-1] += " " + part
        else:
            lines.append(part)
    return "\r\n\t".join(lines)


def _checks_header(
    judgements: Sequence[Judgement], decision: Decision, scored: Score | None = None
) -> str:
    """``X-Maillab-Checks``: every check with its result and the action
    taken, including those Authentication-Results has no method for (DNSBL,
    HELO, TLS), and where the message was filed."""
    parts: list[str] = []
    for j in judgements:
        text = f"{j.check}={j.result.result}"
        zone = j.result.inputs.get("zone") if j.check == "dnsbl" else None
        extra = [str(zone)] if zone else []
        if j.taken != "none":
            extra.append(f"action={j.taken}")
        if extra:
            text += f" ({', '.join(extra)})"
        parts.append(text)
    if scored is not None:
        parts.append(f"score={scored.total:g}")
    parts.append(f"folder={decision.folder}")
    return "; ".join(parts)
