"""The stub resolver, asking the lab resolver over the (double) lab network."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from netdouble import DnsLab, DoubleLab, dns_topology

from sim.events import Dns, EventData
from sim.resolve import DnsAnswer, Resolver, reverse_name
from sim.services.dns import NOT_LAB_ZONE


@pytest.fixture
async def dns(tmp_path: Path) -> AsyncIterator[DnsLab]:
    lab = await DnsLab(dns_topology(), tmp_path).start()
    yield lab
    await lab.stop()


@pytest.fixture
def stub(dns: DnsLab) -> Resolver:
    return dns.resolver("laptop")


def rows(answer: DnsAnswer) -> list[tuple[str, str, str]]:
    return [(r.name, r.type, r.data) for r in answer.records]


async def test_mx_lookup(stub: Resolver) -> None:
    answer = await stub.query("qq.example", "MX")
    assert answer.rcode == "NOERROR"
    assert answer.server == "198.51.100.53"
    assert (answer.name, answer.type) == ("qq.example.", "MX")
    assert rows(answer) == [("qq.example.", "MX", "10 mx.qq.example.")]
    assert answer.records[0].ttl == 300


async def test_a_and_ptr(stub: Resolver) -> None:
    a = await stub.query("mx.qq.example", "A")
    assert rows(a) == [("mx.qq.example.", "A", "203.0.113.25")]
    ptr = await stub.query(reverse_name("203.0.113.25"), "PTR")
    assert rows(ptr) == [("25.113.0.203.in-addr.arpa.", "PTR", "mx.qq.example.")]


async def test_txt_strings_are_joined(stub: Resolver) -> None:
    answer = await stub.query("dkim._domainkey.qq.example", "TXT")
    (record,) = answer.of_type("TXT")
    assert record.strings == ("v=DKIM1; k=rsa; ", "p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC")
    assert answer.texts() == ["v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC"]
    assert record.data == '"v=DKIM1; k=rsa; " "p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC"'


async def test_nxdomain_versus_nodata(stub: Resolver) -> None:
    missing = await stub.query("nope.qq.example", "A")
    nodata = await stub.query("mx.qq.example", "TXT")
    assert (missing.rcode, missing.records) == ("NXDOMAIN", ())
    assert (nodata.rcode, nodata.records) == ("NOERROR", ())


async def test_cname_chain_is_in_the_answer(stub: Resolver) -> None:
    answer = await stub.query("www.qq.example", "A")
    assert rows(answer) == [
        ("www.qq.example.", "CNAME", "web.qq.example."),
        ("web.qq.example.", "CNAME", "mx.qq.example."),
        ("mx.qq.example.", "A", "203.0.113.25"),
    ]


async def test_cname_into_a_zone_on_another_node_is_chased(stub: Resolver) -> None:
    answer = await stub.query("out.qq.example", "A")
    assert answer.rcode == "NOERROR"
    assert rows(answer) == [
        ("out.qq.example.", "CNAME", "www.other.example."),
        ("www.other.example.", "A", "203.0.113.80"),
    ]


async def test_big_answer_falls_back_to_tcp(dns: DnsLab, stub: Resolver) -> None:
    trace = dns.lab.hub.open()
    answer = await stub.query("big.example", "TXT", trace_id=trace.id)
    assert answer.rcode == "NOERROR"
    assert sorted(t[:2] for t in answer.texts()) == [f"{i:02d}" for i in range(8)]
    assert all(len(t) == 200 for t in answer.texts())
    events = trace.of_kind("dns")
    assert [(e.data["transport"], e.data["truncated"]) for e in events] == [
        ("udp", True),
        ("tcp", False),
    ]
    assert events[0].data["answers"] == events[1].data["answers"]


async def test_a_pasted_dkim_key_comes_back_whole(dns: DnsLab, stub: Resolver) -> None:
    key = "v=DKIM1; k=rsa; p=" + "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A" * 12
    await dns.service("ns", "dns").control(
        "add", zone="qq.example", text=f'lab._domainkey TXT "{key}"'
    )
    answer = await stub.query("lab._domainkey.qq.example", "TXT")
    assert answer.texts() == [key]
    assert all(len(s) <= 255 for s in answer.records[0].strings)


async def test_name_under_no_lab_zone(dns: DnsLab, stub: Resolver) -> None:
    trace = dns.lab.hub.open()
    answer = await stub.query("www.example.com", "A", trace_id=trace.id)
    assert answer.rcode == "NXDOMAIN"
    (event,) = trace.of_kind("dns")
    assert event.data["explanation"] == NOT_LAB_ZONE


async def test_no_resolver_listening_is_a_timeout(dns: DnsLab) -> None:
    ctx = dns.lab.context("laptop")
    events: list[tuple[str | None, str, EventData]] = []

    def emit(trace_id: str | None, data: EventData, summary: str) -> None:
        events.append((trace_id, data.KIND, data))

    lost = Resolver(ctx.net, IPv4Address("192.0.2.1"), dns.lab.clock, emit=emit)
    answer = await lost.query("qq.example", "MX", trace_id="t-1")
    assert answer.rcode == "TIMEOUT"
    assert answer.records == ()
    ((trace_id, kind, data),) = events
    assert isinstance(data, Dns)
    assert (trace_id, kind, data.rcode, data.server) == ("t-1", "dns", "TIMEOUT", "192.0.2.1")


async def test_silent_resolver_times_out_in_lab_time(tmp_path: Path) -> None:
    # A UDP socket that never answers: the stub gives up after its time-out.
    lab = DoubleLab(dns_topology(), tmp_path)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    try:
        lab.listeners[(IPv4Address("198.51.100.53"), "udp", 53)] = transport.get_extra_info(
            "sockname"
        )[1]
        stub = Resolver(
            lab.net("laptop"), IPv4Address("198.51.100.53"), lab.clock, timeout=1.0, min_real=0.3
        )
        started = loop.time()
        answer = await stub.query("qq.example", "MX")
        assert answer.rcode == "TIMEOUT"
        # 1 lab second is 1/60 s here: the real-time floor wins.
        assert loop.time() - started >= 0.3
    finally:
        transport.close()


async def test_query_sync_from_a_worker_thread(stub: Resolver) -> None:
    answer = await asyncio.to_thread(stub.query_sync, "qq.example", "TXT")
    assert answer.texts() == ["v=spf1 mx -all"]


async def test_query_sync_on_the_loop_thread_refuses_to_deadlock(stub: Resolver) -> None:
    with pytest.raises(RuntimeError, match="block the event loop"):
        stub.query_sync("qq.example", "MX")


def test_query_sync_without_a_loop_says_so(tmp_path: Path) -> None:
    lab = DoubleLab(dns_topology(), tmp_path)
    stub = Resolver(lab.net("laptop"), IPv4Address("198.51.100.53"), lab.clock)
    with pytest.raises(RuntimeError, match="event loop"):
        stub.query_sync("qq.example", "MX")


async def test_bad_questions_are_value_errors(stub: Resolver) -> None:
    with pytest.raises(ValueError, match="not a DNS record type"):
        await stub.query("qq.example", "MAILSERVER")
    with pytest.raises(ValueError, match="not a valid DNS name"):
        await stub.query("a" * 64 + ".qq.example", "A")


async def test_numeric_and_rfc3597_types(stub: Resolver) -> None:
    assert rows(await stub.query("qq.example", 15)) == rows(await stub.query("qq.example", "MX"))
    answer = await stub.query("qq.example", "TYPE99")
    assert (answer.type, answer.rcode, answer.records) == ("SPF", "NOERROR", ())


def test_reverse_name() -> None:
    assert reverse_name("192.0.2.1") == "1.2.0.192.in-addr.arpa."
    assert reverse_name(IPv4Address("203.0.113.25")) == "25.113.0.203.in-addr.arpa."
