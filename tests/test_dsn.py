"""Delivery status notifications (RFC 3464): structure, fields, and reading back."""

from __future__ import annotations

import email
import email.policy

import pytest

from sim.services.dsn import (
    DsnRecipient,
    build_dsn,
    explain_status,
    original_headers,
    parse_dsn,
    status_of,
)
from sim.services.smtpclient import Reply

ORIGINAL = (
    b"Received: from laptop (unknown [100.64.10.20])\r\n\tby smtp.relay.example\r\n"
    b"From: Alice <alice@home.example>\r\nTo: bob@qq.example\r\nSubject: Plans\r\n\r\n"
    b"The secret body.\r\n"
)
ARRIVAL = "Sat, 28 Nov 2026 08:00:00 +0000"


def failed(**kwargs: object) -> DsnRecipient:
    values: dict[str, object] = {
        "address": "bob@qq.example",
        "action": "failed",
        "status": "5.7.26",
        "reply": Reply(
            550,
            "5.7.26",
            "Unauthenticated email from home.example is not accepted due to domain's DMARC policy",
        ),
        "remote_mta": "mx1.qq.example",
        "remote_address": "203.0.113.25",
        "stage": "data",
        "last_attempt": ARRIVAL,
    }
    values.update(kwargs)
    return DsnRecipient(**values)  # type: ignore[arg-type]


def build(*recipients: DsnRecipient, **kwargs: object) -> bytes:
    return build_dsn(
        reporting_mta="smtp.relay.example",
        queue_id="4F2A9C01B3",
        original_sender="alice@home.example",
        arrival_date=ARRIVAL,
        recipients=list(recipients) or [failed()],
        original=ORIGINAL,
        **kwargs,  # type: ignore[arg-type]
    )


def test_structure_is_a_multipart_report_of_three_parts() -> None:
    msg = email.message_from_bytes(build(), policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@smtp.relay.example>"
    assert msg["To"] == "alice@home.example"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    assert b"\r\n" in build()
    assert b"\n" not in build().replace(b"\r\n", b"")


def test_delivery_status_fields() -> None:
    report = parse_dsn(build())
    assert report is not None
    assert report.action == "failed"
    assert report.reporting_mta == "dns; smtp.relay.example"
    assert report.arrival_date == ARRIVAL
    (rcpt,) = report.recipients
    assert rcpt == {
        "final-recipient": "rfc822; bob@qq.example",
        "action": "failed",
        "status": "5.7.26",
        "remote-mta": "dns; mx1.qq.example",
        "diagnostic-code": "smtp; 550 5.7.26 Unauthenticated email from home.example is "
        "not accepted due to domain's DMARC policy",
        "last-attempt-date": ARRIVAL,
    }
    assert report.status("bob@qq.example") == "5.7.26"
    assert report.status("nobody@qq.example") is None


def test_the_human_part_explains_and_the_original_header_comes_back() -> None:
    report = parse_dsn(build())
    assert report is not None
    assert "could not" in report.explanation
    assert "host mx1.qq.example[203.0.113.25] said: 550 5.7.26" in report.explanation
    assert "(in reply to end of DATA command)" in report.explanation
    assert "DMARC policy" in report.explanation
    assert "Subject: Plans" in report.original_headers
    assert "Received: from laptop" in report.original_headers
    # Only the header: a bounce does not carry the body back (RFC 3462 text/rfc822-headers).
    assert "secret body" not in build().decode()


def test_a_delay_warning() -> None:
    data = build(
        failed(action="delayed", status="4.4.1", reply=None, remote_mta=None,
               diagnostic="connect to mx1.qq.example[203.0.113.25]:25: timed out"),
        retry_until="Thu, 03 Dec 2026 08:00:00 +0000",
        waited=4 * 3600.0,
        give_up=5 * 86400.0,
    )  # fmt: skip
    msg = email.message_from_bytes(data)
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    report = parse_dsn(data)
    assert report is not None
    assert report.action == "delayed"
    (rcpt,) = report.recipients
    assert rcpt["will-retry-until"] == "Thu, 03 Dec 2026 08:00:00 +0000"
    # No remote reply: a locally generated diagnostic, and no Remote-MTA.
    assert "remote-mta" not in rcpt
    assert rcpt["diagnostic-code"].startswith("X-Maillab; connect to mx1.qq.example")
    assert "THIS IS A WARNING ONLY" in report.explanation
    assert "for 4h" in report.explanation
    assert "until it is 5d old" in report.explanation


def test_several_recipients_each_get_a_block() -> None:
    report = parse_dsn(
        build(failed(), failed(address="carol@qq.example", status="5.1.1", stage="rcpt"))
    )
    assert report is not None
    assert [r["final-recipient"] for r in report.recipients] == [
        "rfc822; bob@qq.example",
        "rfc822; carol@qq.example",
    ]
    assert report.status("carol@qq.example") == "5.1.1"


def test_one_action_per_report() -> None:
    with pytest.raises(ValueError, match="one action"):
        build(failed(), failed(action="delayed"))
    with pytest.raises(ValueError, match="at least one"):
        build_dsn(
            reporting_mta="r",
            queue_id="q",
            original_sender="a@b",
            arrival_date=ARRIVAL,
            recipients=[],
            original=b"",
        )


def test_status_of_and_explanations() -> None:
    assert status_of(Reply(550, "5.1.1", "x")) == "5.1.1"
    assert status_of(Reply(451, None, "try later")) == "4.0.0"
    assert status_of(Reply(554, None, "no")) == "5.0.0"
    assert status_of(None, "4.0.0") == "4.0.0"
    assert "mailbox" in explain_status("5.1.1")
    assert "temporary" in explain_status("4.9.9")
    assert "permanent" in explain_status("5.9.9")


def test_original_headers_handles_bare_lf() -> None:
    assert original_headers(b"A: 1\nB: 2\n\nbody\n") == b"A: 1\r\nB: 2\r\n"


def test_parse_rejects_what_is_not_a_dsn() -> None:
    assert parse_dsn(ORIGINAL) is None
    assert parse_dsn(b"Content-Type: multipart/report; report-type=disposition-notification\r\n"
                     b"\r\nx") is None  # fmt: skip
