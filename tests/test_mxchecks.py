"""The MX's client checks (sim.services.mxchecks) against a dict-backed DNS."""

from __future__ import annotations

import pytest
from fakedns import FakeDns

from sim.resolve import DnsAnswer
from sim.services.mxchecks import (
    ask,
    check_dnsbl,
    check_fcrdns,
    check_helo,
    check_ptr,
    check_tls,
    dnsbl_name,
    helo_problem,
    reverse_dns,
)
from sim.services.policy import judge

ZONES = {
    "good.example": """
mail   A 192.0.2.10
multi  A 192.0.2.99
multi2 A 192.0.2.40
fake   A 192.0.2.99
""",
    "2.0.192.in-addr.arpa": """
10 PTR mail.good.example.
30 PTR fake.good.example.
31 PTR gone.good.example.
40 PTR multi.good.example.
40 PTR multi2.good.example.
""",
    "zen.dnsbl.example": """
66.2.0.192   A   127.0.0.2
66.2.0.192   TXT "spam source, see https://dnsbl.example/lookup?192.0.2.66"
67.2.0.192   A   127.0.0.11
68.2.0.192   A   127.255.255.254
""",
}


@pytest.fixture
def dns() -> FakeDns:
    return FakeDns.from_zones(ZONES)


# --- ptr ----------------------------------------------------------------------------


def test_ptr_pass_names_the_host(dns: FakeDns) -> None:
    result = check_ptr("192.0.2.10", dns)
    assert result.check == "ptr"
    assert result.result == "pass"
    assert result.details["names"] == ["mail.good.example"]
    assert result.inputs["ptr_query"] == "10.2.0.192.in-addr.arpa. PTR"
    assert "mail.good.example" in result.explanation


def test_ptr_missing_fails(dns: FakeDns) -> None:
    result = check_ptr("192.0.2.20", dns)
    assert result.result == "fail"
    assert result.details["ptr_rcode"] == "NXDOMAIN"
    assert result.failed
    assert "no PTR record" in result.explanation


def test_ptr_servfail_is_temperror(dns: FakeDns) -> None:
    dns.fail("20.2.0.192.in-addr.arpa", "SERVFAIL")
    result = check_ptr("192.0.2.20", dns)
    assert result.result == "temperror"


# --- fcrdns (iprev) -----------------------------------------------------------------


def test_fcrdns_pass_when_the_name_points_back(dns: FakeDns) -> None:
    result = check_fcrdns("192.0.2.10", dns)
    assert result.result == "pass"
    assert result.details["confirmed"] == "mail.good.example"
    assert ("mail.good.example", "A") in dns.queries


def test_fcrdns_fails_when_the_name_points_elsewhere(dns: FakeDns) -> None:
    result = check_fcrdns("192.0.2.30", dns)
    assert result.result == "fail"
    assert result.details["forward"] == {"fake.good.example": ["192.0.2.99"]}
    assert "192.0.2.99" in result.explanation


def test_fcrdns_fails_when_the_name_does_not_resolve(dns: FakeDns) -> None:
    result = check_fcrdns("192.0.2.31", dns)
    assert result.result == "fail"
    assert result.details["forward"] == {"gone.good.example": []}


def test_fcrdns_without_ptr_is_permerror(dns: FakeDns) -> None:
    # RFC 8601 §2.7.3: no PTR data at all is iprev permerror.
    assert check_fcrdns("192.0.2.20", dns).result == "permerror"


def test_fcrdns_any_ptr_name_may_confirm(dns: FakeDns) -> None:
    rdns = reverse_dns("192.0.2.40", dns)
    assert set(rdns.names) == {"multi.good.example", "multi2.good.example"}
    assert rdns.confirmed == "multi2.good.example"
    assert check_fcrdns("192.0.2.40", dns).result == "pass"


def test_fcrdns_forward_timeout_is_temperror(dns: FakeDns) -> None:
    dns.fail("fake.good.example", "TIMEOUT")
    assert check_fcrdns("192.0.2.30", dns).result == "temperror"


# --- helo ---------------------------------------------------------------------------


def test_helo_fqdn_pointing_to_the_client_passes(dns: FakeDns) -> None:
    result = check_helo("mail.good.example", "192.0.2.10", dns)
    assert result.result == "pass"
    assert result.inputs["query"] == "mail.good.example A"


def test_helo_name_of_another_host_fails(dns: FakeDns) -> None:
    result = check_helo("mail.good.example", "192.0.2.30", dns)
    assert result.result == "fail"
    assert result.details["reason"] == "mismatch"


def test_helo_fqdn_that_does_not_resolve_fails(dns: FakeDns) -> None:
    """The check promises a name that resolves (Postfix's
    reject_unknown_helo_hostname); it used to pass such a name as neutral."""
    result = check_helo("nowhere.good.example", "192.0.2.30", dns)
    assert (result.result, result.details["reason"]) == ("fail", "unknown")
    assert result.failed
    judgement = judge(result, "reject", "helo", ip="192.0.2.30", helo="nowhere.good.example")
    assert judgement.taken == "reject" and judgement.reply is not None
    assert judgement.reply.line == (
        "550 5.7.1 <nowhere.good.example>: Helo command rejected: Host not found"
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("localhost", "not_fqdn"),
        ("localhost.localdomain", "not_fqdn"),
        ("mybox", "not_fqdn"),
        ("192.0.2.10", "not_fqdn"),
        ("bad_name.example", "invalid"),
        ("a..example", "invalid"),
        ("-a.example", "invalid"),
        ("host.123", "invalid"),
        ("a\x00b.example", "invalid"),
        ("x" * 64 + ".example", "invalid"),
        ("[not-an-address]", "invalid"),
    ],
)
def test_helo_names_that_fail_by_form(dns: FakeDns, name: str, reason: str) -> None:
    result = check_helo(name, "192.0.2.10", dns)
    assert result.result == "fail"
    assert result.details["reason"] == reason
    # Form alone decides: no DNS question is asked for these.
    assert dns.queries == []


def test_helo_problem_accepts_a_trailing_dot() -> None:
    assert helo_problem("mail.good.example.") is None


def test_helo_address_literal_of_the_client_passes(dns: FakeDns) -> None:
    assert check_helo("[192.0.2.10]", "192.0.2.10", dns).result == "pass"


def test_helo_address_literal_of_another_host_fails(dns: FakeDns) -> None:
    result = check_helo("[192.0.2.11]", "192.0.2.10", dns)
    assert result.result == "fail"
    assert result.details["reason"] == "mismatch"


def test_helo_lookup_failure_is_temperror(dns: FakeDns) -> None:
    dns.fail("mail.good.example", "SERVFAIL")
    assert check_helo("mail.good.example", "192.0.2.10", dns).result == "temperror"


# --- dnsbl (RFC 5782) ---------------------------------------------------------------


def test_dnsbl_query_name_reverses_the_octets() -> None:
    assert dnsbl_name("203.0.113.10", "zen.dnsbl.example") == "10.113.0.203.zen.dnsbl.example."


def test_dnsbl_listed_with_reason(dns: FakeDns) -> None:
    result = check_dnsbl("192.0.2.66", "zen.dnsbl.example", dns)
    assert result.result == "listed"
    assert result.details["codes"] == ["127.0.0.2"]
    assert result.details["reason"].startswith("spam source")
    assert dns.queries == [
        ("66.2.0.192.zen.dnsbl.example", "A"),
        ("66.2.0.192.zen.dnsbl.example", "TXT"),
    ]


def test_dnsbl_listed_without_txt(dns: FakeDns) -> None:
    result = check_dnsbl("192.0.2.67", "zen.dnsbl.example", dns)
    assert result.result == "listed"
    assert result.details["reason"] is None


def test_dnsbl_not_listed_asks_only_a(dns: FakeDns) -> None:
    result = check_dnsbl("192.0.2.10", "zen.dnsbl.example", dns)
    assert result.result == "notlisted"
    assert not result.failed
    assert dns.queries == [("10.2.0.192.zen.dnsbl.example", "A")]


def test_dnsbl_error_code_is_not_a_listing(dns: FakeDns) -> None:
    # Spamhaus answers 127.255.255.x for refused queries: not a listing.
    assert check_dnsbl("192.0.2.68", "zen.dnsbl.example", dns).result == "permerror"


def test_dnsbl_that_does_not_answer(dns: FakeDns) -> None:
    dns.fail("66.2.0.192.zen.dnsbl.example", "TIMEOUT")
    assert check_dnsbl("192.0.2.66", "zen.dnsbl.example", dns).result == "temperror"


# --- tls and plumbing ---------------------------------------------------------------


def test_tls_check() -> None:
    used = check_tls(True, "TLSv1.3", "TLS_AES_256_GCM_SHA384")
    assert used.result == "pass"
    assert "TLSv1.3" in used.explanation
    plain = check_tls(False)
    assert plain.result == "fail"
    assert plain.inputs["tls"] is False


def test_ask_never_raises() -> None:
    def refuses(name: str, rtype: str) -> DnsAnswer:
        raise ValueError("not a valid DNS name")

    def broken(name: str, rtype: str) -> DnsAnswer:
        raise RuntimeError("resolver gone")

    assert ask(refuses, "x", "A").rcode == "FORMERR"
    assert ask(broken, "x", "A").rcode == "TIMEOUT"
    # A broken resolver makes a check temperror, not a crash.
    assert check_ptr("192.0.2.10", broken).result == "temperror"
