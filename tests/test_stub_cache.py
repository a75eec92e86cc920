"""The nodes' own DNS caches (``Resolver(..., cache=True)``): answers kept for
their TTL in lab time, shown in the trace, forgotten whenever the lab's DNS
changes, on both backends."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from netdouble import DnsLab, dns_topology

import sim
from sim.resolve import Resolver, bump_generation, generation_path

SPF_TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "spf.yaml"


@pytest.fixture
async def dns(tmp_path: Path) -> AsyncIterator[DnsLab]:
    lab = await DnsLab(dns_topology(), tmp_path).start()
    yield lab
    await lab.stop()


async def test_a_cached_answer_is_still_a_dns_event_of_the_node(dns: DnsLab) -> None:
    stub = dns.resolver("laptop")
    first = dns.lab.hub.open()
    await stub.query("qq.example", "MX", trace_id=first.id, cache=True)
    assert [e.node for e in first.of_kind("dns")] == ["ns"]  # the resolver was asked

    dns.lab.clock.advance(100)
    second = dns.lab.hub.open()
    answer = await stub.query("qq.example", "MX", trace_id=second.id, cache=True)
    assert [r.data for r in answer.records] == ["10 mx.qq.example."]
    assert answer.records[0].ttl == 200  # 300 s, 100 s ago: the TTL counts down
    (event,) = second.of_kind("dns")  # nobody else was asked
    assert event.node == "laptop"
    assert event.data["cached"] is True
    assert event.data["client"] == str(stub.net.address)
    assert event.data["server"] == "198.51.100.53"
    assert (event.data["name"], event.data["type"], event.data["rcode"]) == (
        "qq.example.",
        "MX",
        "NOERROR",
    )
    assert event.data["answers"][0]["data"] == "10 mx.qq.example."
    assert "own cache" in event.summary


async def test_answers_expire_after_their_ttl_in_lab_time(dns: DnsLab) -> None:
    stub = dns.resolver("laptop")
    await stub.query("qq.example", "MX", cache=True)
    dns.lab.clock.advance(301)
    trace = dns.lab.hub.open()
    await stub.query("qq.example", "MX", trace_id=trace.id, cache=True)
    assert [e.data["cached"] for e in trace.of_kind("dns")] == [False]
    assert [e.node for e in trace.of_kind("dns")] == ["ns"]


async def test_without_cache_every_question_goes_to_the_resolver(dns: DnsLab) -> None:
    stub = dns.resolver("laptop")
    await stub.query("qq.example", "MX", cache=True)
    trace = dns.lab.hub.open()
    await stub.query("qq.example", "MX", trace_id=trace.id)
    assert [e.node for e in trace.of_kind("dns")] == ["ns"]


async def test_negative_answers_last_the_soa_minimum(dns: DnsLab) -> None:
    stub = dns.resolver("laptop")
    missing = await stub.query("nope.qq.example", "A", cache=True)
    assert missing.rcode == "NXDOMAIN"
    hit = stub.from_cache("nope.qq.example", "A", emit=False)
    assert hit is not None and hit.answer.rcode == "NXDOMAIN"
    # RFC 2308 §5: no longer than the SOA minimum (the zone's default TTL here).
    dns.lab.clock.advance(hit.left + 1)
    assert stub.from_cache("nope.qq.example", "A", emit=False) is None


async def test_servfail_and_timeouts_are_not_kept(dns: DnsLab) -> None:
    lost = Resolver(dns.lab.net("laptop"), IPv4Address("192.0.2.1"), dns.lab.clock, min_real=0.2)
    answer = await lost.query("qq.example", "MX", cache=True)
    assert answer.rcode == "TIMEOUT"
    assert lost.from_cache("qq.example", "MX", emit=False) is None


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("flush", {}),
        ("add", {"zone": "qq.example", "text": 'note TXT "an edit"'}),
        ("remove", {"zone": "qq.example", "name": "note"}),
    ],
)
async def test_every_dns_change_empties_every_nodes_cache(
    dns: DnsLab, command: str, args: dict[str, str]
) -> None:
    laptop, ns2 = dns.resolver("laptop"), dns.resolver("ns2")
    if command == "remove":
        await dns.service("ns", "dns").control("add", zone="qq.example", text='note TXT "x"')
    for stub in (laptop, ns2):
        await stub.query("qq.example", "MX", cache=True)
        assert stub.from_cache("qq.example", "MX", emit=False) is not None
    await dns.service("ns", "dns").control(command, **args)
    for stub in (laptop, ns2):
        assert stub.from_cache("qq.example", "MX", emit=False) is None


async def test_listing_records_is_not_a_change(dns: DnsLab) -> None:
    stub = dns.resolver("laptop")
    await stub.query("qq.example", "MX", cache=True)
    await dns.service("ns", "dns").control("records", zone="qq.example")
    assert stub.from_cache("qq.example", "MX", emit=False) is not None


async def test_an_edit_shows_on_the_next_cached_question(dns: DnsLab) -> None:
    stub = dns.resolver("laptop")
    before = await stub.query("qq.example", "TXT", cache=True)
    assert before.texts() == ["v=spf1 mx -all"]
    await dns.service("ns", "dns").control("add", zone="qq.example", text='@ TXT "hello"')
    after = await stub.query("qq.example", "TXT", cache=True)
    assert sorted(after.texts()) == ["hello", "v=spf1 mx -all"]


async def test_another_process_tells_a_node_through_the_generation_file(
    dns: DnsLab, tmp_path: Path
) -> None:
    # On mininet each node's resolver lives in its own agent process; a DNS
    # change elsewhere reaches it only through the generation file.
    path = generation_path(tmp_path / "other-state")
    stub = Resolver(
        dns.lab.net("laptop"),
        IPv4Address("198.51.100.53"),
        dns.lab.clock,
        generation_file=path,
    )
    await stub.query("qq.example", "MX", cache=True)
    assert stub.from_cache("qq.example", "MX", emit=False) is not None
    bump_generation(path)
    assert stub.from_cache("qq.example", "MX", emit=False) is None
    await stub.query("qq.example", "MX", cache=True)
    bump_generation(path)  # two changes in a row are two changes
    bump_generation(path)
    assert stub.from_cache("qq.example", "MX", emit=False) is None


def test_generation_always_moves_forward(tmp_path: Path) -> None:
    path = generation_path(tmp_path)
    stamps = []
    for _ in range(20):
        bump_generation(path)
        stamps.append(path.stat().st_mtime_ns)
    assert stamps == sorted(set(stamps))


# --- the MX on both backends ----------------------------------------------------------


@pytest.fixture(
    scope="module",
    params=["local", pytest.param("mininet", marks=pytest.mark.mininet)],
)
def spf_lab(request: pytest.FixtureRequest) -> Iterator[sim.Lab]:
    with sim.start(SPF_TOPOLOGY, backend=request.param) as running:
        yield running


def test_the_mx_caches_and_sees_a_dns_edit_at_once(spf_lab: sim.Lab) -> None:
    # bank.example publishes no SPF record yet: SPF none.
    first = spf_lab.send("mail-bank", "bob@qq.example", mail_from="info@bank.example")
    assert first.checks["spf"] == "none"
    second = spf_lab.send("mail-bank", "bob@qq.example", mail_from="info@bank.example")
    assert second.checks["spf"] == "none"
    cached = [e for e in second.trace.of_kind("dns") if e.data.get("cached") and e.node == "mx-qq"]
    assert any(e.data["name"] == "bank.example." for e in cached), "the MX asked its own cache"

    # The edit happens in ns (on mininet: another process than the MX's).
    spf_lab.control("ns", "dns", "add", zone="bank.example", text='@ TXT "v=spf1 -all"')
    try:
        third = spf_lab.send("mail-bank", "bob@qq.example", mail_from="info@bank.example")
        assert third.checks["spf"] == "fail"
    finally:
        spf_lab.control("ns", "dns", "remove", zone="bank.example", name="@", rtype="TXT")
    fourth = spf_lab.send("mail-bank", "bob@qq.example", mail_from="info@bank.example")
    assert fourth.checks["spf"] == "none"


async def test_each_hit_tells_its_own_age_and_time_left(dns: DnsLab) -> None:
    # Hits within one lab second share what they are made of; a later hit
    # must still say its own age, time left and TTL.
    stub = dns.resolver("laptop")
    await stub.query("qq.example", "MX", cache=True)
    seen = []
    for step in (10, 0, 7):
        dns.lab.clock.advance(step)
        trace = dns.lab.hub.open()
        answer = await stub.query("qq.example", "MX", trace_id=trace.id, cache=True)
        (event,) = trace.of_kind("dns")
        seen.append((answer.records[0].ttl, event.data["answers"][0]["ttl"], event.summary))
    assert [s[:2] for s in seen] == [(290, 290), (290, 290), (283, 283)]
    assert "answered 10s ago" in seen[0][2] and seen[1][2] == seen[0][2]
    assert "answered 17s ago" in seen[2][2]
    left = [int(re.search(r"(\d+)s left", s[2]).group(1)) for s in seen]  # type: ignore[union-attr]
    assert left[0] - left[2] == 7
