"""The RFC 7208 test suite through maillab's real path: each scenario's zone
data served by a lab DNS server (real sockets, the lab resolver), each case
judged by the lab MX's own SPF evaluation (its caching stub resolver, its
memo), and, where the case can be sent over SMTP, by a real SMTP session
from a node with the case's address, read back from the MX's check event.

``tests/test_spf.py`` runs the same suite over an in-memory DNS; this file is
the one that catches what only the wire shows (name escapes, time-outs, TXT
splitting, the stub cache).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from spfsuite import scenarios, zone_from_zonedata

import sim
from sim.auth.result import CheckResult
from sim.services.mx import MxServer, _spf_safely
from sim.services.smtpclient import SmtpClient
from sim.topology import loads_topology

pytestmark = pytest.mark.slow

MX_IP = "203.0.113.250"
NS_IP = "198.51.100.53"


def _zone_of(name: str) -> str:
    labels = name.lower().rstrip(".").split(".")
    return ".".join(labels[-2:])


def _indent(text: str, by: int) -> str:
    return "".join(" " * by + line + "\n" for line in text.splitlines())


# The types an SPF evaluation asks for.
_TYPES = ("A", "AAAA", "MX", "TXT", "SPF", "PTR", "CNAME")


def _silenced(zonedata: dict[str, list[Any]]) -> set[tuple[str, str]]:
    """(name, type) pairs that time out: as the suite's driver says, TIMEOUT
    makes every type not listed before it time out."""
    out: set[tuple[str, str]] = set()
    for name, rrs in zonedata.items():
        listed: set[str] = set()
        for rr in rrs:
            if rr == "TIMEOUT":
                out |= {(name, t) for t in _TYPES if t not in listed}
                break
            ((rtype, value),) = rr.items()
            if value != "NONE" and value != ["NONE"]:  # NONE: the type has no record
                listed.add(rtype)
    return out


def _node_name(ip: str) -> str:
    return "s-" + ip.replace(".", "-")


def topology_text(scenario: dict[str, Any]) -> str:
    """The scenario as a topology: its zones on one DNS server (also the
    resolver), names that time out left unanswered, the MX with SPF noted
    in a header (so every case is judged and delivered), and a sender node
    for each IPv4 address the cases connect from."""
    text, timeouts, _ = zone_from_zonedata(scenario["zonedata"])
    silenced = _silenced(scenario["zonedata"])
    zones: dict[str, list[str]] = {}
    for line in text.splitlines():
        owner = line.split(" ", 1)[0]
        zones.setdefault(_zone_of(owner.replace("\\032", " ")), []).append(line)
    assert {n for n, _ in silenced} == set(timeouts)
    silent = "".join(f"          - {{name: '{n}', type: {t}}}\n" for n, t in sorted(silenced))
    senders = sorted(
        {
            str(t["host"])
            for t in scenario["tests"].values()
            if ipaddress.ip_address(str(t["host"])).version == 4
        }
    )
    nodes = "".join(
        f"  {_node_name(ip)}: {{kind: host, ip: {ip}/24, gateway: internet}}\n" for ip in senders
    )
    zone_yaml = "".join(
        f"  {zone}: |\n" + _indent("\n".join(lines), 4) for zone, lines in sorted(zones.items())
    )
    return (
        "name: rfc7208\n"
        # The suite's zones are broken on purpose (MX targets without addresses).
        f"settings: {{resolver: {NS_IP}, time_scale: 60, skip_checks: [verify_mx_ns_targets]}}\n"
        "nodes:\n"
        "  internet: {kind: router}\n"
        f"  ns:\n    kind: host\n    ip: {NS_IP}/24\n    gateway: internet\n"
        "    services:\n      dns:\n"
        f"        zones: [{', '.join(sorted(zones))}, mx.test]\n"
        + (f"        unanswered:\n{silent}" if silent else "")
        + f"  mx:\n    kind: host\n    ip: {MX_IP}/24\n    gateway: internet\n"
        "    services:\n      mx: {domains: [mx.test], mailboxes: [postmaster], "
        "checks: {spf: header}}\n" + nodes + "zones:\n" + zone_yaml + "  mx.test: |\n"
        f"    @ MX 10 mx\n    mx A {MX_IP}\n"
    )


SCENARIOS = scenarios()


@pytest.fixture(scope="module", params=range(len(SCENARIOS)), ids=lambda i: f"scenario{i}")
def scenario_lab(request: pytest.FixtureRequest) -> Iterator[tuple[dict[str, Any], sim.Lab]]:
    scenario = SCENARIOS[request.param]
    topology = loads_topology(topology_text(scenario))
    with sim.start(topology) as lab:
        yield scenario, lab


def _mx_path(lab: sim.Lab, ip: str, mail_from: str, helo: str) -> CheckResult:
    """The MX's own SPF evaluation: its stub resolver over the lab network."""
    backend: Any = lab.backend
    mx = backend.service("mx", "mx")
    assert isinstance(mx, MxServer)
    lookup = mx.lookup_for(None)
    check = partial(_spf_safely, ip, mail_from, helo)
    result: CheckResult = backend.call(lookup.run(check, key=("spf", ip, mail_from, helo)))
    return result


def _sendable(test: dict[str, Any]) -> bool:
    """A case a real SMTP client can put on the wire as it stands."""
    host = ipaddress.ip_address(str(test["host"]))
    return host.version == 4 and " " not in test["helo"] and " " not in test["mailfrom"]


def _smtp_path(lab: sim.Lab, test: dict[str, Any]) -> str | None:
    """The MX's SPF verdict for the case sent over SMTP, or None when the MX
    refused the MAIL FROM address as malformed before any SPF check (as a
    real server does: aiosmtpd answers 553 5.1.3)."""
    backend: Any = lab.backend
    ctx = backend.context(_node_name(str(test["host"])))
    trace = backend.hub.open()
    data = b"From: <postmaster@mx.test>\r\nSubject: spf\r\n\r\nsuite\r\n"
    transcript = backend.call(
        SmtpClient.for_node(ctx).send(
            MX_IP,
            25,
            mail_from=test["mailfrom"],
            rcpts=["postmaster@mx.test"],
            data=data,
            helo=test["helo"],
            tls="none",
            trace_id=trace.id,
        )
    )
    spf = [e.data for e in trace.of_kind("check") if e.data.get("check") == "spf"]
    if not spf:
        mail = next(x for x in transcript.exchanges if x.stage == "mail")
        assert mail.reply is not None and mail.reply.code == 553, transcript.exchanges
        return None
    return str(spf[-1]["result"])


def test_every_case_through_the_lab(scenario_lab: tuple[dict[str, Any], sim.Lab]) -> None:
    scenario, lab = scenario_lab
    wrong: list[str] = []
    sent = 0
    for test_id, test in scenario["tests"].items():
        expected = test["result"]
        accepted = [expected] if isinstance(expected, str) else list(expected)
        result = _mx_path(lab, str(test["host"]), test["mailfrom"], test["helo"])
        if result.result not in accepted:
            wrong.append(f"{test_id}: {result.result} not in {accepted}: {result.explanation}")
        if "explanation" in test:
            wanted = None if test["explanation"] == "DEFAULT" else test["explanation"]
            if result.details.get("domain_explanation") != wanted:
                wrong.append(f"{test_id}: explanation {result.details.get('domain_explanation')!r}")
        if _sendable(test):
            sent += 1
            over_smtp = _smtp_path(lab, test)
            if over_smtp is not None and over_smtp not in accepted:
                wrong.append(f"{test_id} over SMTP: {over_smtp} not in {accepted}")
    assert not wrong, "\n".join(wrong)


def test_the_suite_is_all_there() -> None:
    cases = [t for s in SCENARIOS for t in s["tests"].values()]
    assert len(cases) == 203
    # Most cases go over SMTP too; the rest (IPv6 clients, HELO names or
    # addresses with spaces) through the MX's evaluation alone.
    assert sum(map(_sendable, cases)) >= 170
