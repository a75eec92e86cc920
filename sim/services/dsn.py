"""Delivery status notifications (RFC 3464): how a relay tells a sender.

When a relay gives up on a recipient (a 5xx reply, or days of 4xx), it
writes back to the envelope sender. The notification is a
``multipart/report; report-type=delivery-status`` message (RFC 6522) with
three parts:

1. a human-readable explanation (``text/plain``);
2. ``message/delivery-status``: one block about the message (Reporting-MTA,
   Arrival-Date) and one per recipient (Final-Recipient, Action, Status,
   Remote-MTA, Diagnostic-Code), so programs can read what happened;
3. the original message's header (``text/rfc822-headers``).

``Action: delayed`` (RFC 3464 §2.3.3) is the warning a relay may send while it
keeps retrying; ``Action: failed`` is final. The DSN itself is sent with an
empty reverse-path ``MAIL FROM:<>`` (RFC 5321 §4.5.5), so that a DSN that
cannot be delivered is dropped instead of bouncing back and forth
(RFC 5321 §6.2; RFC 3834 §5 adds ``Auto-Submitted: auto-replied``).
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import secrets
from collections.abc import Sequence
from email.message import Message
from typing import Any, Literal

from sim.clock import format_duration
from sim.fastclass import dataclass
from sim.services.smtpclient import Reply

__all__ = [
    "DsnRecipient",
    "DsnReport",
    "build_dsn",
    "explain_status",
    "original_headers",
    "parse_dsn",
    "status_of",
]

Action = Literal["failed", "delayed"]

#: What common status codes mean, for the human-readable part (RFC 3463,
#: RFC 7372, RFC 7505 and the replies DESIGN.md lists).
_MEANINGS: dict[str, str] = {
    "5.1.1": "the receiving server does not know this mailbox (a typo in the address?)",
    "5.1.2": "the domain of the address does not exist in DNS",
    "5.1.10": "the domain publishes a null MX (RFC 7505): it accepts no mail at all",
    "5.2.2": "the mailbox is full",
    "5.3.4": "the message is larger than the receiving server accepts",
    "5.4.4": "no mail server could be found for the domain (no MX and no address record)",
    "4.4.1": "no answer from the receiving server: it is down or a firewall drops the connection",
    "4.4.2": "the connection to the receiving server broke off",
    "4.4.3": "DNS did not answer, so the receiving server could not be found",
    "4.7.1": "the receiving server asked to try again later (greylisting or a temporary policy)",
    "5.7.1": "the receiving server's policy refused the message (a blocklist, relay "
    "access, or a content rule)",
    "5.7.23": "the sending address is not authorised by the domain's SPF record",
    "5.7.25": "the sending server's IP address has no valid reverse DNS (PTR)",
    "5.7.26": "the message failed the sender domain's DMARC policy",
    "5.7.0": "the receiving server refused the message for a security reason",
}

_STAGE_COMMAND = {
    "connect": "the initial greeting",
    "helo": "EHLO",
    "starttls": "STARTTLS",
    "auth": "AUTH",
    "mail": "MAIL FROM",
    "rcpt": "RCPT TO",
    "data": "end of DATA",
}


def status_of(reply: Reply | None, default: str = "5.0.0") -> str:
    """The RFC 3463 status for a reply: its enhanced code, or the class of
    its basic code with unknown subject (``4.0.0``/``5.0.0``)."""
    if reply is None:
        return default
    if reply.enhanced:
        return reply.enhanced
    return f"{reply.code // 100}.0.0" if reply.code >= 400 else default


def explain_status(status: str) -> str:
    """One sentence about what a status code means."""
    if status in _MEANINGS:
        return _MEANINGS[status]
    if status.startswith("4."):
        return "a temporary failure: the sender should try again later"
    return "a permanent failure: sending the same message again will fail again"


@dataclass(frozen=True)
class DsnRecipient:
    """One recipient's line in a DSN."""

    address: str
    action: Action
    status: str
    reply: Reply | None = None
    remote_mta: str | None = None
    remote_address: str | None = None
    stage: str | None = None
    last_attempt: str | None = None
    #: Locally generated reason when there is no remote reply (e.g. null MX).
    diagnostic: str | None = None


def original_headers(message: bytes) -> bytes:
    """The header section of ``message`` (up to the first empty line), CRLF-terminated."""
    text = message.replace(b"\r\n", b"\n")
    head, _, _ = text.partition(b"\n\n")
    return head.replace(b"\n", b"\r\n") + b"\r\n"


def _human(
    reporting_mta: str,
    recipients: Sequence[DsnRecipient],
    action: Action,
    waited: float | None,
    give_up: float | None,
) -> str:
    lines = [f"This is the mail system at host {reporting_mta}.", ""]
    if action == "delayed":
        lines += [
            "####################################################################",
            "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #",
            "####################################################################",
            "",
            "Your message could not be delivered"
            + (f" for {format_duration(round(waited))}" if waited is not None else " yet")
            + "."
            + (
                f" It will be retried until it is {format_duration(round(give_up))} old."
                if give_up is not None
                else ""
            ),
            "",
            "A reply starting with 4 is temporary (RFC 5321 section 4.2.1): the relay keeps",
            "the message in its queue and tries again on a schedule.",
        ]
    else:
        lines += [
            "I'm sorry to have to inform you that your message could not",
            "be delivered to one or more recipients. It's attached below.",
            "",
            "A reply starting with 5 is permanent; a relay also gives up after",
            "retrying temporary failures for too long (RFC 5321 section 4.5.4.1).",
        ]
    lines += ["", "                   The mail system", ""]
    for rcpt in recipients:
        if rcpt.reply is not None and rcpt.remote_mta:
            where = rcpt.remote_mta + (f"[{rcpt.remote_address}]" if rcpt.remote_address else "")
            said = f"host {where} said: {rcpt.reply}"
            if rcpt.stage in _STAGE_COMMAND:
                said += f" (in reply to {_STAGE_COMMAND[rcpt.stage]} command)"
        else:
            said = rcpt.diagnostic or (str(rcpt.reply) if rcpt.reply else "unknown failure")
        lines.append(f"<{rcpt.address}>: {said}")
        lines.append(f"    What it means: {explain_status(rcpt.status)}.")
        lines.append("")
    return "\r\n".join(lines)


def _status_fields(
    reporting_mta: str,
    queue_id: str,
    arrival_date: str,
    recipients: Sequence[DsnRecipient],
    retry_until: str | None,
) -> str:
    # RFC 3464 §2.2: per-message fields, then an empty line before each
    # recipient's block (§2.3).
    blocks = [
        "\r\n".join(
            [
                f"Reporting-MTA: dns; {reporting_mta}",
                f"X-Maillab-Queue-ID: {queue_id}",
                f"Arrival-Date: {arrival_date}",
            ]
        )
    ]
    for rcpt in recipients:
        fields = [
            f"Final-Recipient: rfc822; {rcpt.address}",
            f"Action: {rcpt.action}",
            f"Status: {rcpt.status}",
        ]
        if rcpt.remote_mta:
            fields.append(f"Remote-MTA: dns; {rcpt.remote_mta}")
        if rcpt.reply is not None and rcpt.remote_mta:
            # The remote server's own words (RFC 3464 §2.3.6, diagnostic-type smtp).
            fields.append(f"Diagnostic-Code: smtp; {' '.join(str(rcpt.reply).split())}")
        elif rcpt.diagnostic or rcpt.reply is not None:
            text = rcpt.diagnostic or str(rcpt.reply)
            fields.append(f"Diagnostic-Code: X-Maillab; {' '.join(text.split())}")
        if rcpt.last_attempt:
            fields.append(f"Last-Attempt-Date: {rcpt.last_attempt}")
        if rcpt.action == "delayed" and retry_until:
            fields.append(f"Will-Retry-Until: {retry_until}")
        blocks.append("\r\n".join(fields))
    return "\r\n\r\n".join(blocks) + "\r\n"


def build_dsn(
    *,
    reporting_mta: str,
    queue_id: str,
    original_sender: str,
    arrival_date: str,
    recipients: Sequence[DsnRecipient],
    original: bytes,
    date: str | None = None,
    retry_until: str | None = None,
    waited: float | None = None,
    give_up: float | None = None,
) -> bytes:
    """The whole DSN message (CRLF line endings), ready to queue with
    ``MAIL FROM:<>`` to ``original_sender``.

    All recipients must share one action (a failure report or a delay
    warning). ``waited`` and ``give_up`` (lab seconds) go into the
    human-readable text of a delay warning.
    """
    if not recipients:
        raise ValueError("a DSN needs at least one recipient")
    actions = {r.action for r in recipients}
    if len(actions) != 1:
        raise ValueError("a DSN reports one action: failed or delayed")
    action: Action = recipients[0].action
    boundary = f"{queue_id}.{secrets.token_hex(8)}/{reporting_mta}"
    subject = (
        "Delayed Mail (still being retried)"
        if action == "delayed"
        else "Undelivered Mail Returned to Sender"
    )
    headers = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: {original_sender}",
        f"Subject: {subject}",
        f"Date: {date or email.utils.formatdate(usegmt=True)}",
        f"Message-ID: <{queue_id}.{secrets.token_hex(6)}@{reporting_mta}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="{boundary}"',
    ]
    parts = [
        "Content-Description: Notification\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        + _human(reporting_mta, recipients, action, waited, give_up),
        "Content-Description: Delivery report\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        + _status_fields(reporting_mta, queue_id, arrival_date, recipients, retry_until),
        "Content-Description: Undelivered Message Headers\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
        + original_headers(original).decode("utf-8", "replace"),
    ]
    body = "This is a MIME-encapsulated message.\r\n\r\n"
    for part in parts:
        body += f"--{boundary}\r\n{part}\r\n"
    body += f"--{boundary}--\r\n"
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode("utf-8")


@dataclass(frozen=True)
class DsnReport:
    """What a DSN says, read back (for tests, checks and the TUI)."""

    action: str
    reporting_mta: str
    arrival_date: str
    recipients: tuple[dict[str, str], ...]
    explanation: str
    original_headers: str

    def status(self, address: str) -> str | None:
        for rcpt in self.recipients:
            if rcpt.get("final-recipient", "").split(";")[-1].strip() == address:
                return rcpt.get("status")
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "reporting_mta": self.reporting_mta,
            "arrival_date": self.arrival_date,
            "recipients": list(self.recipients),
        }


def _fields(block: Message) -> dict[str, str]:
    return {k.lower(): str(v) for k, v in block.items()}


def parse_dsn(data: bytes) -> DsnReport | None:
    """Read a DSN; None if ``data`` is not a delivery-status report."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    if msg.get_content_type() != "multipart/report":
        return None
    report_type = msg.get_param("report-type")
    if not isinstance(report_type, str) or report_type.lower() != "delivery-status":
        return None
    explanation = ""
    headers = ""
    blocks: list[Message] = []
    payload = msg.get_payload()
    if not isinstance(payload, list):
        return None
    for part in payload:
        if not isinstance(part, Message):
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain" and not explanation:
            raw = part.get_payload(decode=True)
            explanation = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
        elif ctype == "message/delivery-status":
            inner = part.get_payload()
            if isinstance(inner, list):
                blocks = [b for b in inner if isinstance(b, Message)]
        elif ctype == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            headers = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
    if not blocks:
        return None
    per_message = _fields(blocks[0])
    recipients = tuple(_fields(b) for b in blocks[1:])
    actions = {r.get("action", "").lower() for r in recipients}
    return DsnReport(
        action=actions.pop() if len(actions) == 1 else ",".join(sorted(actions)),
        reporting_mta=per_message.get("reporting-mta", ""),
        arrival_date=per_message.get("arrival-date", ""),
        recipients=recipients,
        explanation=explanation,
        original_headers=headers,
    )
