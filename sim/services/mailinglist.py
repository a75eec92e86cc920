"""A mailing list at the MX: what Mailman does to a message before resending it.

Mail to ``news@list.example`` (``mx.lists``) is accepted and judged like any
other, then the list resends one copy to its members through the node's
relay, changed the way real lists change mail:

* the **envelope sender** becomes ``news-bounces@list.example`` (RFC 5321
  §3.9.2: bounces go to the list, not to the author), so the next hop judges
  SPF on the list's domain, and it passes: the list's server is in the
  list's own SPF record;
* a **subject tag** (``[news] ...``) and a **footer** (unsubscribe text) are
  added, and ``List-Id`` (RFC 2919) and ``List-Post`` (RFC 2369) fields: the
  footer changes the body, so the author's DKIM signature no longer verifies
  (body hash mismatch, RFC 6376 §3.7), and with SPF now for the list's domain
  nothing aligned with the author's From: passes: **DMARC fails** at the
  members' servers, and a ``p=reject`` domain's mail is refused;
* two mitigations a list may apply: ``rewrite_from`` (Mailman's
  ``munge_from``): From: becomes ``Alice via news <news@list.example>`` and
  the author moves to Reply-To:, so DMARC is judged on the list's domain;
  ``arc_seal``: the list seals each copy with ARC (RFC 8617,
  :mod:`sim.auth.arc`) with the relay's DKIM key for its domain, recording in
  the ARC-Authentication-Results what its MX saw on arrival (the author's
  DKIM and DMARC passing): a receiver that trusts the list can then accept
  the message despite the DMARC failure (:mod:`sim.services.checks.arc`).

The relay then DKIM-signs the copy for the list's domain when it has a key
for it (the envelope sender's domain), as a list's MTA does.
"""

from __future__ import annotations

import re
from dataclasses import field
from email.headerregistry import Address
from email.utils import getaddresses

from sim.fastclass import dataclass
from sim.topology.model import MailingList

__all__ = ["ListCopy", "bounce_address", "rewrite"]

_FIELD_START = re.compile(rb"\r?\n(?![ \t])")


@dataclass
class ListCopy:
    """The copy a list resends, and what it changed (for the trace)."""

    data: bytes
    mail_from: str
    changes: list[str] = field(default_factory=list)


def bounce_address(name: str, domain: str) -> str:
    """Where the list's bounces go (Mailman's ``<list>-bounces@domain``)."""
    return f"{name}-bounces@{domain}"


def _split(content: bytes) -> tuple[list[bytes], bytes, bytes]:
    """(header fields, each with its folding, the line separator, the body)."""
    sep = b"\r\n" if b"\r\n" in content[:2048] else b"\n"
    head, blank, body = content.partition(sep + sep)
    if not blank:
        head, body = content, b""
    return [f for f in _FIELD_START.split(head) if f], sep, body


def _name(field_: bytes) -> bytes:
    return field_.split(b":", 1)[0].strip().lower()


def _value(field_: bytes) -> str:
    raw = field_.split(b":", 1)[1] if b":" in field_ else b""
    return re.sub(r"\s+", " ", raw.decode("utf-8", "replace")).strip()


def rewrite(content: bytes, name: str, domain: str, config: MailingList) -> ListCopy:
    """The list's copy of ``content`` (see the module docstring), before
    ARC sealing and DKIM signing."""
    fields, sep, body = _split(content)
    list_address = f"{name}@{domain}"
    changes: list[str] = [f"envelope sender <{bounce_address(name, domain)}> (RFC 5321 §3.9.2)"]
    out: list[bytes] = []
    author: str | None = None
    has_reply_to = any(_name(f) == b"reply-to" for f in fields)
    for f in fields:
        key = _name(f)
        if key == b"subject" and config.subject_tag:
            subject = _value(f)
            if config.subject_tag not in subject:
                out.append(f"Subject: {config.subject_tag} {subject}".encode())
                changes.append(f"subject tagged {config.subject_tag!r}")
                continue
        if key == b"from" and config.rewrite_from:
            author = _value(f)
            pairs = getaddresses([author])
            shown = (pairs[0][0] or pairs[0][1]) if pairs else author
            rewritten = Address(display_name=f"{shown} via {name}", addr_spec=list_address)
            out.append(f"From: {rewritten}".encode())
            changes.append(f"From: rewritten to {list_address} (DMARC mitigation)")
            continue
        if key in (b"list-id", b"list-post"):
            continue  # ours replace an upstream list's
        out.append(f)
    if author is not None and not has_reply_to:
        out.append(f"Reply-To: {author}".encode())
    out.append(f"List-Id: <{name}.{domain}>".encode())  # RFC 2919
    out.append(f"List-Post: <mailto:{list_address}>".encode())  # RFC 2369
    if config.footer:
        footer = config.footer.replace("\r\n", "\n").replace("\n", sep.decode())
        if body and not body.endswith(sep):
            body += sep
        body += footer.encode("utf-8")
        if not body.endswith(sep):
            body += sep
        changes.append("footer appended (the body changed: DKIM body hashes break)")
    data = sep.join(out) + sep + sep + body
    return ListCopy(data, bounce_address(name, domain), changes)
