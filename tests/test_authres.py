"""The Authentication-Results header (RFC 8601) built from our check results."""

from __future__ import annotations

import authres
import pytest
from fakedns import FakeDns

from sim.auth import (
    authentication_results,
    check_dmarc,
    check_spf,
    generate_key,
    key_txt_rdata,
    parse_authentication_results,
    sign,
    verify_dkim,
)
from sim.auth.result import CheckResult


def clauses(value: str) -> dict[str, tuple[str, dict[str, str], str | None]]:
    header = parse_authentication_results(value)
    return {
        r.method: (r.result, {f"{p.type}.{p.name}": str(p.value) for p in r.properties}, r.reason)
        for r in header.results
    }


def test_round_trip_of_real_checks() -> None:
    pem, txt = generate_key(1024)
    dns = FakeDns.from_zones(
        {
            "relay.example": (
                '@ TXT "v=spf1 ip4:192.0.2.25 -all"\n'
                '_dmarc TXT "v=DMARC1; p=reject"\n'
                f"s1._domainkey TXT {key_txt_rdata(txt)}"
            )
        }
    )
    message = sign(
        b"From: alice@relay.example\r\nTo: bob@qq.example\r\nSubject: hi\r\n\r\nhello\r\n",
        "relay.example",
        "s1",
        pem,
    )
    spf = check_spf("192.0.2.25", "alice@relay.example", "mx.relay.example", dns)
    dkim = verify_dkim(message, dns)
    dmarc = check_dmarc("relay.example", spf, None, dkim, dns)
    fcrdns = CheckResult(
        "fcrdns", "pass", "", inputs={"ip": "192.0.2.25"}, details={"ptr": "mx.relay.example."}
    )
    value = authentication_results("MX.qq.example", [fcrdns, spf, *dkim, dmarc])
    header = parse_authentication_results(value)
    assert header.authserv_id == "mx.qq.example"
    parsed = clauses(value)
    assert parsed["iprev"] == ("pass", {"policy.iprev": "192.0.2.25"}, None)
    assert parsed["spf"] == ("pass", {"smtp.mailfrom": "alice@relay.example"}, None)
    assert parsed["dkim"] == ("pass", {"header.d": "relay.example", "header.s": "s1"}, None)
    assert parsed["dmarc"] == (
        "pass",
        {"header.from": "relay.example", "policy.dmarc": "none"},
        None,
    )
    assert "(mx.relay.example)" in value  # the PTR name as a comment


def test_failures_carry_reason_and_disposition() -> None:
    dkim = CheckResult(
        "dkim",
        "fail",
        "",
        inputs={"d": "bank.example", "s": "s1"},
        details={"d": "bank.example", "s": "s1", "reason": "body hash mismatch"},
    )
    dmarc = CheckResult(
        "dmarc",
        "fail",
        "",
        inputs={"from_domain": "bank.example"},
        details={"disposition": "quarantine"},
    )
    parsed = clauses(authentication_results("mx.qq.example", [dkim, dmarc]))
    assert parsed["dkim"] == (
        "fail",
        {"header.d": "bank.example", "header.s": "s1"},
        "body hash mismatch",
    )
    assert parsed["dmarc"][1]["policy.dmarc"] == "quarantine"


def test_bounce_uses_smtp_helo() -> None:
    spf = CheckResult("spf", "pass", "", inputs={"mail_from": "", "helo": "mx.relay.example"})
    assert clauses(authentication_results("mx.qq.example", [spf]))["spf"] == (
        "pass",
        {"smtp.helo": "mx.relay.example"},
        None,
    )


@pytest.mark.parametrize(
    ("check", "ours", "iprev"),
    [
        ("fcrdns", "fail", "fail"),
        ("ptr", "none", "permerror"),  # RFC 8601 §2.7.3: no PTR data → permerror
        ("ptr", "temperror", "temperror"),
    ],
)
def test_iprev_results(check: str, ours: str, iprev: str) -> None:
    r = CheckResult(check, ours, "", inputs={"ip": "203.0.113.10"})
    assert clauses(authentication_results("mx.qq.example", [r]))["iprev"][0] == iprev


def test_one_iprev_clause_preferring_fcrdns() -> None:
    ptr = CheckResult("ptr", "pass", "", inputs={"ip": "203.0.113.10"})
    fcrdns = CheckResult("fcrdns", "fail", "", inputs={"ip": "203.0.113.10"})
    value = authentication_results("mx.qq.example", [ptr, fcrdns])
    assert value.count("; iprev=") == 1
    assert clauses(value)["iprev"][0] == "fail"


def test_unregistered_checks_are_left_out_and_empty_is_none() -> None:
    dnsbl = CheckResult("dnsbl", "listed", "", inputs={"ip": "203.0.113.10"})
    value = authentication_results("mx.qq.example", [dnsbl])
    assert value == "mx.qq.example; none"
    header = authres.AuthenticationResultsHeader.parse_value(value)
    assert header.authserv_id == "mx.qq.example"
    assert header.results == []  # authres reads "none" as no results
