"""One MX finder for both senders (issue 13 §1): a direct ``send`` and the
relay read the same DNS answers the same way and give the same reply."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sim.experiments.send import mx_hosts
from sim.resolve import DnsAnswer, DnsRecord
from sim.services.relay import RelayServer
from sim.trace import Trace

Table = dict[tuple[str, str], tuple[str, ...]]


class Answers:
    """A resolver that answers from a table: (name, type) → (rcode, data...)."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.asked: list[tuple[str, str]] = []

    async def query(self, name: str, rtype: str, **_: Any) -> DnsAnswer:
        self.asked.append((name, rtype))
        rcode, *data = self.table.get((name, rtype), ("NOERROR",))
        records = tuple(DnsRecord(name, rtype, 300, d) for d in data)
        return DnsAnswer(name, rtype, rcode, records)


def direct(table: Table) -> tuple[list[Any], Any]:
    ctx = SimpleNamespace(resolver=Answers(table))
    return asyncio.run(mx_hosts(ctx, "qq.example", Trace()))  # type: ignore[arg-type]


def relayed(table: Table) -> Any:
    """What the relay's queue runner decides for the same DNS."""
    relay = SimpleNamespace(ctx=SimpleNamespace(resolver=Answers(table)))
    return asyncio.run(RelayServer._route(relay, "qq.example", None))  # type: ignore[arg-type]


@pytest.mark.parametrize("rcode", ["SERVFAIL", "TIMEOUT", "REFUSED"])
def test_a_dns_failure_is_temporary_for_both_senders(rcode: str) -> None:
    table: Table = {("qq.example", "MX"): (rcode,)}
    hosts, problem = direct(table)
    assert hosts == []
    assert (problem.code, problem.enhanced) == (451, "4.4.3")  # was 550 5.1.2 for direct
    assert rcode in problem.text and "try again" in problem.text
    route = relayed(table)
    assert route.reply == problem


def test_a_malformed_mx_record_is_skipped_not_a_crash() -> None:
    table: Table = {
        ("qq.example", "MX"): ("NOERROR", "ten mx1.qq.example.", "20 mx2.qq.example."),
        ("mx2.qq.example", "A"): ("NOERROR", "203.0.113.26"),
    }
    hosts, problem = direct(table)  # raised ValueError before
    assert problem is None
    assert [(h, str(a)) for h, a in hosts] == [("mx2.qq.example", "203.0.113.26")]
    assert relayed(table).hosts == ("mx2.qq.example",)


def test_nxdomain_and_null_mx_are_permanent_and_the_same() -> None:
    hosts, problem = direct({("qq.example", "MX"): ("NXDOMAIN",)})
    assert hosts == [] and (problem.code, problem.enhanced) == (550, "5.1.2")
    null: Table = {("qq.example", "MX"): ("NOERROR", "0 .")}
    hosts, problem = direct(null)
    assert hosts == []
    assert (problem.code, problem.enhanced) == (556, "5.1.10")
    assert relayed(null).reply == problem


def test_implicit_mx_without_an_address_cannot_be_routed() -> None:
    hosts, problem = direct({})  # no MX, no A
    assert hosts == []
    assert (problem.code, problem.enhanced) == (550, "5.4.4")
    hosts, problem = direct({("qq.example", "A"): ("NOERROR", "203.0.113.25")})
    assert problem is None and [h for h, _ in hosts] == ["qq.example"]


def test_mx_hosts_in_preference_order_and_a_host_without_address_is_skipped() -> None:
    table: Table = {
        ("qq.example", "MX"): ("NOERROR", "20 mx2.qq.example.", "10 mx1.qq.example."),
        ("mx1.qq.example", "A"): ("SERVFAIL",),
        ("mx2.qq.example", "A"): ("NOERROR", "203.0.113.26"),
    }
    hosts, problem = direct(table)
    assert problem is None and [h for h, _ in hosts] == ["mx2.qq.example"]
    assert relayed(table).hosts == ("mx1.qq.example", "mx2.qq.example")
    # Every host without an address: a temporary failure, as the relay says.
    del table[("mx2.qq.example", "A")]
    hosts, problem = direct(table)
    assert (problem.code, problem.enhanced) == (451, "4.4.3")


BROKEN = """\
name: mx-servfail
settings: {time_scale: 60, skip_checks: [verify_mx_ns_targets]}
nodes:
  r1: {kind: router}
  ns:
    kind: host
    ip: 192.0.2.53/24
    gateway: r1
    services:
      dns:
        zones: [a.example]
        unanswered: [{name: a.example, type: MX}]
  mx:
    kind: host
    ip: 192.0.2.25/24
    gateway: r1
    services: {mx: {domains: [a.example], mailboxes: [bob]}}
  sender: {kind: host, ip: 192.0.2.10/24, gateway: r1}
zones:
  a.example: |
    @     MX 10 mx
    mx    A  192.0.2.25
"""


def test_a_direct_send_to_a_domain_whose_mx_times_out_is_deferred(tmp_path: Path) -> None:
    """Through the lab's own DNS: the MX question never gets an answer, so
    the direct send says what the relay would (try again), not 550 5.1.2."""
    import sim

    path = tmp_path / "servfail.yaml"
    path.write_text(BROKEN)
    with sim.start(path) as lab:
        result = lab.send("sender", "bob@a.example", mail_from="alice@a.example")
    assert result.outcome == "deferred"
    assert result.stage == "dns"
    assert (result.code, result.enhanced) == (451, "4.4.3")
