"""DMARC (RFC 9989) rule by rule, through a lab: the cases of
``fixtures/auth/dmarc-rfc9989-cases.yaml`` are judged by the lab MX's own DMARC
evaluation (its caching stub resolver asking the lab DNS over the lab
network), and where a case says so, checkdmarc (RFC 9989 discovery) is asked
the same lab DNS server where the policy record is, as a second opinion.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import dns.resolver
import pytest
from ruamel.yaml import YAML

import sim
from sim.auth.dmarc import check_dmarc_authors
from sim.auth.result import CheckResult
from sim.services.mx import MxServer
from sim.topology import loads_topology

CASES_FILE = Path(__file__).parent / "fixtures" / "auth" / "dmarc-rfc9989-cases.yaml"
DATA = YAML(typ="safe").load(CASES_FILE.read_text(encoding="utf-8"))
NS_IP = "198.51.100.53"


def topology_text() -> str:
    zones = sorted(DATA["zones"])
    silent = "".join(
        f"          - {{name: {s['name']}, type: {s['type']}}}\n" for s in DATA["unanswered"]
    )
    zone_yaml = "".join(
        f"  {zone}: |\n" + "".join(f"    {line}\n" for line in DATA["zones"][zone].splitlines())
        for zone in zones
    )
    return (
        "name: dmarc-cases\n"
        f"settings: {{resolver: {NS_IP}, time_scale: 60}}\n"
        "nodes:\n"
        "  internet: {kind: router}\n"
        f"  ns:\n    kind: host\n    ip: {NS_IP}/24\n    gateway: internet\n"
        f"    services:\n      dns:\n        zones: [{', '.join(zones)}]\n"
        f"        unanswered:\n{silent}"
        "  mx:\n    kind: host\n    ip: 203.0.113.25/24\n    gateway: internet\n"
        "    services:\n      mx: {domains: [bank.example], mailboxes: [bob], "
        "checks: {dmarc: policy}}\n"
        "zones:\n" + zone_yaml
    )


@pytest.fixture(scope="module")
def lab() -> Iterator[sim.Lab]:
    with sim.start(loads_topology(topology_text())) as running:
        yield running


def _results(case: dict[str, Any]) -> tuple[CheckResult | None, list[CheckResult]]:
    spf = None
    if "spf" in case:
        spf = CheckResult("spf", case["spf"]["result"], "", {"domain": case["spf"]["domain"]})
    dkim = [
        CheckResult("dkim", d["result"], "", {"d": d["d"], "s": "s1"}, {"d": d["d"], "s": "s1"})
        for d in case.get("dkim", [])
    ]
    return spf, dkim


def _from_fields(case: dict[str, Any]) -> tuple[str, ...]:
    value = case["from"]
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list) else (value,)


def evaluate(lab: sim.Lab, case: dict[str, Any]) -> CheckResult:
    """The MX's DMARC evaluation, its DNS through the lab."""
    backend: Any = lab.backend
    mx = backend.service("mx", "mx")
    assert isinstance(mx, MxServer)
    spf, dkim = _results(case)
    check = partial(check_dmarc_authors, _from_fields(case), spf, dkim)
    result: CheckResult = backend.call(mx.lookup_for(None).run(check))
    return result


@pytest.mark.parametrize("case", DATA["cases"], ids=[c["id"] for c in DATA["cases"]])
def test_rule(lab: sim.Lab, case: dict[str, Any]) -> None:
    result = evaluate(lab, case)
    expect = case["expect"]
    assert result.result == expect["result"], result.explanation
    for key in ("record_domain", "org_domain", "policy", "policy_tag", "disposition", "testing"):
        if key in expect:
            assert result.details.get(key) == expect[key], (key, result.explanation)
    if "aligned" in expect:
        assert result.details.get("aligned") == expect["aligned"]
    if "queries" in expect:
        asked = [q.split()[0] for q in result.details["queries"] if q.startswith("_dmarc.")]
        assert asked == expect["queries"]


def _lab_resolver(lab: sim.Lab) -> dns.resolver.Resolver:
    """A dnspython resolver for the lab DNS (its loopback endpoint), never
    the host's: checkdmarc asks nothing else."""
    endpoint = next(
        e for e in lab.endpoints() if e.node == "ns" and e.service == "dns" and e.proto == "udp"
    )
    assert endpoint.local is not None
    host, _, port = endpoint.local.rpartition(":")
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = int(port)
    resolver.lifetime = 5
    return resolver


CROSS = [c for c in DATA["cases"] if c.get("checkdmarc")]


@pytest.mark.parametrize("case", CROSS, ids=[c["id"] for c in CROSS])
def test_checkdmarc_finds_the_same_policy_record(
    lab: sim.Lab, case: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    checkdmarc = pytest.importorskip("checkdmarc.dmarc")
    resolver = _lab_resolver(lab)
    # Anything checkdmarc resolves without our resolver would go to the host's.
    monkeypatch.setattr(dns.resolver, "default_resolver", resolver)
    (author,) = {a.rpartition("@")[2].strip(">").lower() for a in _from_fields(case)}
    found = checkdmarc.get_dmarc_record(author, resolver=resolver)
    ours = evaluate(lab, case)
    assert found["location"].rstrip(".") == ours.details["record_domain"]


def test_every_rule_has_a_case() -> None:
    ids = {c["id"] for c in DATA["cases"]}
    assert len(ids) == len(DATA["cases"]) >= 30
    assert len(CROSS) >= 4
