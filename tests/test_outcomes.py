"""The mail-services outcomes (issue 3) on the curriculum's internet topology.

Each test sends one message the way a lab does and asserts the structured
result: outcome, stage, reply code and enhanced code, the receiver's checks.
The same table runs on the mininet backend in the parity test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import sim
from sim.auth.dkim import verify_dkim
from sim.experiments.send import SendResult
from sim.services.dsn import parse_dsn

TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "internet.yaml"
ALICE = {
    "mail_from": "alice@home.example",
    "via": "smtp-isp",
    "user": "alice@home.example",
    "password": "secret",
}


@pytest.fixture(
    scope="module",
    params=["local", pytest.param("mininet", marks=pytest.mark.mininet)],
)
def lab(request: pytest.FixtureRequest) -> Iterator[sim.Lab]:
    # The same outcomes on both backends (issue 4: parity).
    with sim.start(TOPOLOGY, backend=request.param) as running:
        yield running


def reply(result: SendResult) -> tuple[int | None, str | None]:
    return result.code, result.enhanced


def test_home_to_mx_direct_is_blocked_at_the_isp(lab: sim.Lab) -> None:
    result = lab.send("laptop", "bob@qq.example", mail_from="alice@home.example")
    assert result.outcome == "blocked"
    assert result.verdict is not None and result.verdict["router"] == "isp"
    assert result.reply is None


def test_home_through_isp_submission_is_delivered_and_authenticated(lab: sim.Lab) -> None:
    result = lab.send("laptop", "bob@qq.example", subject="through the ISP", **ALICE)
    assert result.outcome == "delivered"
    assert result.checks["spf"] == "pass"
    assert result.checks["dkim"] == "pass"
    assert result.checks["dmarc"] == "pass"
    stored = [m for m in lab.mailbox("bob@qq.example") if m.subject == "through the ISP"]
    assert len(stored) == 1
    headers = stored[0].message()
    auth = " ".join(str(h) for h in headers.get_all("Authentication-Results", []))
    assert "spf=pass" in auth and "dkim=pass" in auth and "dmarc=pass" in auth
    # Return-Path and Delivered-To are added at final delivery (RFC 5321 §4.4).
    assert headers["Return-Path"] and headers["Delivered-To"]


def test_a_message_from_the_relay_verifies_with_only_the_lab_dns(lab: sim.Lab) -> None:
    lab.send("laptop", "bob@qq.example", subject="verify me", **ALICE)
    stored = next(m for m in lab.mailbox("bob@qq.example") if m.subject == "verify me")

    answers = {}
    for name in ("mail2026._domainkey.home.example",):
        answers[name] = lab.dig("outside", name, "TXT")

    def lookup(name: str, rtype: str):  # type: ignore[no-untyped-def]
        from sim.resolve import DnsAnswer, DnsRecord

        result = answers.get(name.rstrip(".")) or lab.dig("outside", name, rtype)
        records = tuple(
            DnsRecord(a["name"], a["type"], a["ttl"], a["data"], strings=_strings(a["data"]))
            for a in result.answers
        )
        return DnsAnswer(result.name, result.type, result.rcode, records)

    results = verify_dkim(stored.data, lookup)
    assert [r.result for r in results] == ["pass"]
    assert results[0].details["d"] == "home.example"


def _strings(data: str) -> tuple[str, ...]:
    """The character-strings of a TXT record's presentation form."""
    import shlex

    return tuple(shlex.split(data))


def test_vps_without_ptr_is_rejected_with_5_7_25(lab: sim.Lab) -> None:
    result = lab.send("vps-noptr", "bob@qq.example", mail_from="app@startup.example")
    assert result.outcome == "rejected"
    assert reply(result) == (550, "5.7.25")
    assert result.checks["ptr"] == "fail"


def test_ptr_that_does_not_resolve_back_is_deferred(lab: sim.Lab) -> None:
    result = lab.send("vps-badptr", "bob@qq.example", mail_from="ops@hosting.example")
    assert result.outcome == "deferred"
    assert reply(result) == (450, "4.7.25")  # RFC 7372 §3: reverse DNS validation failed
    assert result.checks["fcrdns"] == "fail"


def test_a_residential_address_is_rejected_naming_the_list(lab: sim.Lab) -> None:
    result = lab.send("homeserver", "bob@qq.example", mail_from="me@cheapnet.example")
    assert result.outcome == "rejected"
    assert reply(result) == (554, "5.7.1")
    assert result.reply is not None and "zen.dnsbl.example" in result.reply["text"]
    assert result.checks["dnsbl"] == "listed"


def test_spf_fail_spoof_is_rejected(lab: sim.Lab) -> None:
    result = lab.send("spoofer", "bob@qq.example", mail_from="ceo@bank.example")
    assert result.outcome == "rejected"
    assert result.code == 550
    assert result.checks["spf"] == "fail"


def test_dmarc_reject_with_unaligned_from_is_rejected_5_7_26(lab: sim.Lab) -> None:
    result = lab.send(
        "spoofer", "bob@qq.example", mail_from="x@evil.example", from_header="ceo@bank.example"
    )
    assert result.checks["spf"] == "pass"  # SPF passes for the spoofer's own domain
    assert result.outcome == "rejected"
    assert result.stage == "data"
    assert reply(result) == (550, "5.7.26")
    assert result.checks["dmarc"] == "fail"


def test_dmarc_quarantine_files_as_junk(lab: sim.Lab) -> None:
    result = lab.send(
        "spoofer",
        "bob@qq.example",
        mail_from="x@evil.example",
        from_header="sales@shop.example",
        subject="quarantined",
    )
    assert result.outcome == "junk"
    junk = [m for m in lab.mailbox("bob@qq.example", "Junk") if m.subject == "quarantined"]
    assert len(junk) == 1


def test_body_changed_after_signing_fails_dkim(lab: sim.Lab) -> None:
    lab.control("smtp-isp", "relay", "footer", text="-- scanned by the ISP's virus gateway")
    try:
        result = lab.send("laptop", "bob@qq.example", subject="tampered", **ALICE)
    finally:
        lab.control("smtp-isp", "relay", "footer", text=None)
    assert result.checks["dkim"] == "fail"
    assert result.checks["spf"] == "pass"
    # SPF still passes aligned, so DMARC passes: DKIM alone decides nothing.
    assert result.outcome == "delivered"


def test_greylisting_defers_then_delivers_after_a_retry(lab: sim.Lab) -> None:
    first = lab.send("laptop", "carol@grey.example", subject="grey 1", **ALICE)
    assert first.outcome == "deferred"
    assert reply(first) == (450, "4.7.1")
    lab.settle()
    stored = [m for m in lab.mailbox("carol@grey.example") if m.subject == "grey 1"]
    assert len(stored) == 1


def test_greylisting_with_settle_reports_delivered(lab: sim.Lab) -> None:
    result = lab.send(
        "laptop",
        "carol@grey.example",
        subject="grey 2",
        settle=True,
        mail_from="alice@home.example",
        via="smtp-isp",
        user="alice@home.example",
        password="secret",
    )
    assert result.outcome == "delivered"
    events = [e.data.get("event") for e in result.trace.of_kind("queue")]
    assert "deferred" in events or "delivered" in events


def test_first_mx_down_delivers_through_the_second(lab: sim.Lab) -> None:
    result = lab.send("laptop", "dave@backup.example", subject="backup", **ALICE)
    assert result.outcome == "delivered"
    delivered = [e for e in result.trace.of_kind("queue") if e.data.get("event") == "delivered"]
    assert delivered and "mx2.backup.example" in delivered[-1].summary
    assert [m.subject for m in lab.mailbox("dave@backup.example")] == ["backup"]


def test_permanent_failure_brings_a_dsn_to_the_sender(lab: sim.Lab) -> None:
    result = lab.send("laptop", "nobody@qq.example", subject="to nobody", **ALICE)
    assert result.outcome == "bounced"
    assert reply(result) == (550, "5.1.1")
    lab.settle()
    reports = [parse_dsn(m.data) for m in lab.mailbox("alice@home.example")]
    failed = [r for r in reports if r is not None and r.action == "failed"]
    assert failed, "a delivery status notification must reach alice"
    assert failed[-1].status("nobody@qq.example") == "5.1.1"


def test_unauthenticated_relay_attempt_is_refused(lab: sim.Lab) -> None:
    # The ISP's MX on port 25 takes mail for home.example only: no open relay.
    result = lab.send(
        "mail-bank", "bob@qq.example", mail_from="ceo@bank.example", via="smtp-isp", port=25
    )
    assert result.outcome == "rejected"
    assert reply(result) == (554, "5.7.1")


def test_submission_rejects_auth_before_starttls_and_bad_passwords(lab: sim.Lab) -> None:
    wrong = lab.send(
        "laptop",
        "bob@qq.example",
        mail_from="alice@home.example",
        via="smtp-isp",
        user="alice@home.example",
        password="wrong",
    )
    assert wrong.outcome == "rejected" and wrong.stage == "auth"
    assert reply(wrong) == (535, "5.7.8")
    foreign = lab.send(
        "laptop",
        "bob@qq.example",
        mail_from="ceo@bank.example",
        via="smtp-isp",
        user="alice@home.example",
        password="secret",
    )
    assert foreign.outcome == "rejected" and foreign.stage == "mail"
    assert foreign.code == 553


def test_implicit_tls_submission_on_465(lab: sim.Lab) -> None:
    result = lab.send("laptop", "bob@qq.example", port=465, subject="over 465", **ALICE)
    assert result.outcome == "delivered"
    tls = result.trace.of_kind("tls")
    assert tls and tls[0].data.get("version", "").startswith("TLS")
