"""SPF (RFC 7208) through pyspf and our lab-DNS adapter.

The bulk of the cases come from the openspf RFC 7208 test suite shipped in the
pyspf sdist (``tests/fixtures/auth/rfc7208-tests.yml``): each scenario's
``zonedata`` becomes zone text, is parsed by the lab's zone parser into a
:class:`FakeDns`, and every test runs through :func:`check_spf`, i.e. through
``spf.DNSLookup`` → our contextvar → the lookup.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import spf
from fakedns import FakeDns
from spfsuite import SKIPPED, _load_suite, zone_from_zonedata

from sim.auth.spf import _lab_dns_lookup, check_spf, describe_record
from sim.resolve import DnsAnswer

_dns_cache: dict[int, FakeDns] = {}


def _scenario_dns(scenario: dict[str, Any]) -> FakeDns:
    key = id(scenario)
    if key not in _dns_cache:
        text, timeouts, expected_txt = zone_from_zonedata(scenario["zonedata"])
        dns = FakeDns()
        dns.add_zone(".", text)
        for name in timeouts:
            dns.timeout(name)
        # The zone text must carry every TXT string exactly (escapes included).
        for name, texts in expected_txt.items():
            got = sorted("".join(r.strings) for r in dns.records[name + "."] if r.type == "TXT")
            assert got == sorted(texts), name
        _dns_cache[key] = dns
    return _dns_cache[key]


@pytest.mark.parametrize(("scenario", "test"), _load_suite())
def test_rfc7208_suite(scenario: dict[str, Any], test: dict[str, Any]) -> None:
    dns = _scenario_dns(scenario)
    result = check_spf(str(test["host"]), test["mailfrom"], test["helo"], dns)
    expected = test["result"]
    accepted = [expected] if isinstance(expected, str) else list(expected)
    assert result.result in accepted, result.explanation
    if "explanation" in test:
        # 'DEFAULT' in the suite means "the receiver's own text": the domain's
        # exp= must not have been used.
        wanted = None if test["explanation"] == "DEFAULT" else test["explanation"]
        assert result.details["domain_explanation"] == wanted


def test_suite_size_and_skips() -> None:
    cases = _load_suite()
    assert len(cases) == 203
    assert set(SKIPPED) <= {c.id for c in cases}
    assert not SKIPPED, "every case of the suite runs"


# --- the lab's own cases ----------------------------------------------------

QQ = """
@      MX  10 mx
mx     A   203.0.113.25
@      TXT "v=spf1 mx -all"
soft   TXT "v=spf1 ip4:192.0.2.0/24 ~all"
open   TXT "v=spf1 ip4:192.0.2.0/24 ?all"
nothing TXT "v=spf1 ip4:192.0.2.0/24"
exp    TXT "v=spf1 -all exp=why.exp.qq.example"
why.exp TXT "%{i} may not send for %{d}"
"""


@pytest.fixture
def dns() -> FakeDns:
    return FakeDns.from_zones({"qq.example": QQ})


def test_fail_names_ip_domain_record_and_meaning(dns: FakeDns) -> None:
    r = check_spf("203.0.113.10", "alice@qq.example", "vps.example", dns)
    assert r.check == "spf"
    assert r.result == "fail"
    assert r.failed
    assert r.inputs == {
        "ip": "203.0.113.10",
        "mail_from": "alice@qq.example",
        "helo": "vps.example",
        "domain": "qq.example",
        "record": "v=spf1 mx -all",
    }
    assert r.details["mechanism"] == "-all"
    assert r.details["identity"] == "mailfrom"
    assert "203.0.113.10" in r.explanation
    assert "only its MX hosts may send" in r.explanation


def test_pass_names_the_matching_mechanism(dns: FakeDns) -> None:
    r = check_spf("203.0.113.25", "alice@qq.example", "mx.qq.example", dns)
    assert r.result == "pass"
    assert r.details["mechanism"] == "mx"
    assert "'mx'" in r.explanation


@pytest.mark.parametrize(
    ("sender", "result"),
    [
        ("a@soft.qq.example", "softfail"),
        ("a@open.qq.example", "neutral"),
        ("a@nothing.qq.example", "neutral"),
        ("a@nosuch.example", "none"),
    ],
)
def test_other_results(dns: FakeDns, sender: str, result: str) -> None:
    assert check_spf("198.51.100.7", sender, "h.example", dns).result == result


def test_default_neutral_says_no_all_term(dns: FakeDns) -> None:
    r = check_spf("198.51.100.7", "a@nothing.qq.example", "h.example", dns)
    assert r.details["mechanism"] is None
    assert "no 'all'" in r.explanation


def test_domain_explanation_from_exp_modifier(dns: FakeDns) -> None:
    r = check_spf("198.51.100.7", "a@exp.qq.example", "h.example", dns)
    assert r.result == "fail"
    assert r.details["domain_explanation"] == "198.51.100.7 may not send for exp.qq.example"
    assert "the domain explains" in r.explanation


def test_empty_mail_from_checks_helo_identity(dns: FakeDns) -> None:
    # RFC 7208 §2.4: a bounce (MAIL FROM:<>) is checked as postmaster@HELO.
    r = check_spf("203.0.113.10", "", "qq.example", dns)
    assert r.result == "fail"
    assert r.details["identity"] == "helo"
    assert r.inputs["domain"] == "qq.example"
    assert "HELO" in r.explanation
    r = check_spf("203.0.113.25", "<>", "qq.example", dns)
    assert r.result == "pass"


def _chain(depth: int) -> str:
    # include: chain a0 → a1 → ... each costing one DNS-querying term.
    lines = [f'a{i} TXT "v=spf1 include:a{i + 1}.chain.example -all"' for i in range(depth)]
    lines.append(f'a{depth} TXT "v=spf1 ip4:192.0.2.1 -all"')
    return "\n".join(lines)


def test_ten_lookups_are_allowed() -> None:
    dns = FakeDns.from_zones({"chain.example": _chain(10)})
    r = check_spf("192.0.2.1", "x@a0.chain.example", "h.example", dns)
    assert r.result == "pass"
    assert r.details["dns_lookups"] == 10


def test_eleventh_lookup_is_permerror() -> None:
    # RFC 7208 §4.6.4: at most 10 terms that cause DNS queries.
    dns = FakeDns.from_zones({"chain.example": _chain(11)})
    r = check_spf("192.0.2.1", "x@a0.chain.example", "h.example", dns)
    assert r.result == "permerror"
    assert "Too many DNS lookups" in r.details["problem"]
    assert "at most 10" in r.explanation


def test_timeout_and_servfail_are_temperror(dns: FakeDns) -> None:
    dns.timeout("slow.example")
    r = check_spf("192.0.2.1", "x@slow.example", "h.example", dns)
    assert r.result == "temperror"
    assert "TIMEOUT" in r.details["problem"]
    dns.fail("broken.example", "SERVFAIL")
    assert check_spf("192.0.2.1", "x@broken.example", "h.example", dns).result == "temperror"


def test_lookup_that_raises_is_temperror() -> None:
    def boom(name: str, rtype: str) -> DnsAnswer:
        raise OSError("lab resolver unreachable")

    r = check_spf("192.0.2.1", "x@qq.example", "h.example", boom)
    assert r.result == "temperror"
    assert "unreachable" in r.explanation


def test_long_txt_split_into_strings_is_joined() -> None:
    # RFC 7208 §3.3: the strings of one TXT record are concatenated.
    dns = FakeDns.from_zones(
        {"split.example": '@ TXT "v=spf1 ip4:192.0.2.0/24" " ip4:198.51.100.0/24 -all"'}
    )
    r = check_spf("198.51.100.9", "x@split.example", "h.example", dns)
    assert r.result == "pass"
    assert r.inputs["record"] == "v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.0/24 -all"


def test_cname_is_followed() -> None:
    dns = FakeDns.from_zones(
        {
            "alias.example": (
                '@ TXT "v=spf1 a:host.alias.example -all"\nhost CNAME real\nreal A 192.0.2.8'
            )
        }
    )
    assert check_spf("192.0.2.8", "x@alias.example", "h", dns).result == "pass"
    assert check_spf("192.0.2.9", "x@alias.example", "h", dns).result == "fail"


def test_bad_ip_is_a_clear_error(dns: FakeDns) -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        check_spf("not-an-ip", "x@qq.example", "h", dns)


def test_no_lookup_outside_a_check_never_uses_host_resolver() -> None:
    assert spf.DNSLookup is _lab_dns_lookup
    with pytest.raises(spf.TempError):
        spf.DNSLookup("qq.example", "TXT", True, 5)


def test_concurrent_checks_use_their_own_lab() -> None:
    # Two labs publish different records for the same name; threads evaluate
    # at once, each must see only its own lab's DNS (the contextvar).
    lab_a = FakeDns.from_zones({"same.example": '@ TXT "v=spf1 ip4:192.0.2.1 -all"'})
    lab_b = FakeDns.from_zones({"same.example": '@ TXT "v=spf1 -all"'})
    results: dict[str, list[str]] = {"a": [], "b": []}
    barrier = threading.Barrier(2)

    def run(name: str, lab: FakeDns) -> None:
        barrier.wait()
        for _ in range(50):
            results[name].append(check_spf("192.0.2.1", "x@same.example", "h", lab).result)

    threads = [
        threading.Thread(target=run, args=("a", lab_a)),
        threading.Thread(target=run, args=("b", lab_b)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["a"] == ["pass"] * 50
    assert results["b"] == ["fail"] * 50


def test_describe_record() -> None:
    assert describe_record("v=spf1 mx -all", "qq.example") == "its MX hosts"
    assert (
        describe_record("v=spf1 ip4:192.0.2.0/24 include:relay.example ~all", "d")
        == "192.0.2.0/24 and the senders relay.example allows"
    )
    assert describe_record("v=spf1 -all", "d") == "no host"
    assert describe_record("v=spf1 redirect=_spf.relay.example", "d") == (
        "the senders _spf.relay.example allows"
    )
