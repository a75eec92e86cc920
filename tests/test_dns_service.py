"""The lab DNS service: wire behaviour, the recursive path, the cache, traces,
zone edits through control(), and agreement with the real ``dig``."""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
from collections.abc import AsyncIterator
from ipaddress import IPv4Address
from pathlib import Path

import dnslib
import pytest
from netdouble import OUTSIDE, DnsLab, dns_topology

from sim.errors import ServiceError
from sim.resolve import Resolver
from sim.topology.zones import ZoneSyntaxError

DIG = shutil.which("dig")


@pytest.fixture
async def dns(tmp_path: Path) -> AsyncIterator[DnsLab]:
    lab = await DnsLab(dns_topology(), tmp_path).start()
    yield lab
    await lab.stop()


async def udp_raw(port: int, payload: bytes, wait: float = 2.0) -> bytes | None:
    """One datagram to 127.0.0.1:port from a socket no lab node owns."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect(("127.0.0.1", port))
        await loop.sock_sendall(sock, payload)
        try:
            return await asyncio.wait_for(loop.sock_recv(sock, 65535), wait)
        except TimeoutError:
            return None


async def tcp_raw(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(struct.pack("!H", len(payload)) + payload)
        await writer.drain()
        (length,) = struct.unpack("!H", await reader.readexactly(2))
        return await reader.readexactly(length)
    finally:
        writer.close()
        await writer.wait_closed()


def question(name: str, qtype: str, *, edns: int | None = None) -> dnslib.DNSRecord:
    query = dnslib.DNSRecord.question(name, qtype)
    if edns is not None:
        query.add_ar(dnslib.EDNS0(udp_len=edns))
    return query


# --- traces ------------------------------------------------------------------------


async def test_every_query_is_a_dns_event_with_the_clients_lab_address(dns: DnsLab) -> None:
    trace = dns.lab.hub.open()
    answer = await dns.resolver("laptop").query("qq.example", "MX", trace_id=trace.id)
    (event,) = trace.of_kind("dns")
    assert event.node == "ns"
    assert event.data["client"] == "100.64.10.20"
    assert event.data["server"] == "198.51.100.53"
    assert (event.data["name"], event.data["type"], event.data["rcode"]) == (
        "qq.example.",
        "MX",
        "NOERROR",
    )
    assert event.data["answers"] == [r.to_json() for r in answer.records]
    assert event.data["authoritative"] is True
    assert "100.64.10.20" in event.summary
    assert "10 mx.qq.example." in event.summary


async def test_recursion_shows_the_hop_to_the_authoritative_node(dns: DnsLab) -> None:
    trace = dns.lab.hub.open()
    await dns.resolver("laptop").query("www.other.example", "A", trace_id=trace.id)
    upstream, answer = trace.of_kind("dns")
    # The resolver asked ns2 (under the same trace id), then answered the laptop.
    assert (upstream.node, upstream.data["client"], upstream.data["authoritative"]) == (
        "ns2",
        "198.51.100.53",
        True,
    )
    assert (answer.node, answer.data["client"], answer.data["authoritative"]) == (
        "ns",
        "100.64.10.20",
        False,
    )
    assert answer.data["upstream"] == ["203.0.113.53"]
    assert answer.data["answers"] == upstream.data["answers"]


# --- the cache ---------------------------------------------------------------------


async def test_cache_honours_the_ttl_in_lab_time(dns: DnsLab) -> None:
    stub = dns.resolver("laptop")
    ns2 = dns.service("ns2", "dns")
    first = await stub.query("short.other.example", "A")
    assert [r.data for r in first.records] == ["203.0.113.81"]

    await ns2.control("remove", zone="other.example", name="short")
    await ns2.control("add", zone="other.example", text="short 3600 A 203.0.113.99")

    dns.lab.clock.advance(1000)
    trace = dns.lab.hub.open()
    cached = await stub.query("short.other.example", "A", trace_id=trace.id)
    assert [r.data for r in cached.records] == ["203.0.113.81"]
    assert 2500 < cached.records[0].ttl <= 2600  # the TTL counts down
    (event,) = trace.of_kind("dns")  # ns2 was not asked
    assert event.data["cached"] is True

    dns.lab.clock.advance(2601)
    fresh = await stub.query("short.other.example", "A")
    assert [(r.data, r.ttl) for r in fresh.records] == [("203.0.113.99", 3600)]


async def test_negative_answers_are_cached_until_flushed(dns: DnsLab) -> None:
    stub = dns.resolver("laptop")
    assert (await stub.query("later.other.example", "A")).rcode == "NXDOMAIN"
    await dns.service("ns2", "dns").control(
        "add", zone="other.example", text="later A 203.0.113.82"
    )
    # RFC 2308: the resolver remembers the NXDOMAIN for the SOA minimum.
    assert (await stub.query("later.other.example", "A")).rcode == "NXDOMAIN"
    flushed = await dns.service("ns", "dns").control("flush")
    assert flushed["flushed"] >= 1
    after = await stub.query("later.other.example", "A")
    assert [r.data for r in after.records] == ["203.0.113.82"]


async def test_edits_of_the_resolvers_own_zones_show_at_once(dns: DnsLab) -> None:
    stub = dns.resolver("laptop")
    await stub.query("qq.example", "TXT")
    result = await dns.service("ns", "dns").control("add", zone="qq.example", text='@ TXT "hello"')
    assert result["added"] == 1
    assert sorted((await stub.query("qq.example", "TXT")).texts()) == ["hello", "v=spf1 mx -all"]


# --- control -----------------------------------------------------------------------


async def test_records_lists_the_zone_as_text(dns: DnsLab) -> None:
    ns = dns.service("ns", "dns")
    listing = await ns.control("records", zone="113.0.203.in-addr.arpa")
    assert listing["zone"] == "113.0.203.in-addr.arpa."
    assert "25.113.0.203.in-addr.arpa. 300 IN PTR mx.qq.example." in listing["records"]
    assert listing["records"][0].split()[3] == "SOA"
    changed = await ns.control("replace_zone", zone="113.0.203.in-addr.arpa", text="")
    assert changed["serial"] == listing["serial"] + 1
    assert (await dns.resolver("laptop").query("25.113.0.203.in-addr.arpa", "PTR")).rcode == (
        "NXDOMAIN"
    )


async def test_control_errors_are_one_line_service_errors(dns: DnsLab) -> None:
    ns = dns.service("ns", "dns")
    with pytest.raises(ServiceError, match="line 2") as err:
        await ns.control("add", zone="qq.example", text="ok A 192.0.2.1\nbad MX high mx\n")
    assert isinstance(err.value.__cause__, ZoneSyntaxError)
    assert "\n" not in str(err.value)
    with pytest.raises(ServiceError, match=r"no zone nope\.example"):
        await ns.control("add", zone="nope.example", text="a A 192.0.2.1")
    with pytest.raises(ServiceError, match="missing argument 'text'"):
        await ns.control("add", zone="qq.example")
    with pytest.raises(ServiceError, match="no control command 'reboot'"):
        await ns.control("reboot")
    # Nothing half-applied.
    assert (await dns.resolver("laptop").query("ok.qq.example", "A")).rcode == "NXDOMAIN"


# --- the wire ----------------------------------------------------------------------


async def test_malformed_packet_gets_formerr_and_the_server_keeps_serving(dns: DnsLab) -> None:
    port = dns.port("ns")
    header = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    raw = await udp_raw(port, header + b"\x07example\x03co")  # the question is cut short
    assert raw is not None
    reply = dnslib.DNSRecord.parse(raw)
    assert (reply.header.id, reply.header.qr, reply.header.rcode) == (
        0x1234,
        1,
        dnslib.RCODE.FORMERR,
    )
    # Not even a header: dropped. An answer sent to the server: dropped (no loops).
    assert await udp_raw(port, b"\x01\x02\x03", wait=0.3) is None
    answer_packet = question("qq.example", "MX").reply().pack()
    assert await udp_raw(port, answer_packet, wait=0.3) is None
    # Over TCP too.
    tcp_reply = dnslib.DNSRecord.parse(await tcp_raw(dns.port("ns", "tcp"), header + b"\xff"))
    assert tcp_reply.header.rcode == dnslib.RCODE.FORMERR

    still = await dns.resolver("laptop").query("qq.example", "MX")
    assert still.rcode == "NOERROR"
    formerr = [e for e in dns.lab.hub.log.of_kind("dns") if e.data["rcode"] == "FORMERR"]
    assert len(formerr) == 2
    assert formerr[0].data["client"] == str(OUTSIDE)


async def test_udp_truncates_without_edns_and_honours_the_edns_size(dns: DnsLab) -> None:
    port = dns.port("ns")
    classic = dnslib.DNSRecord.parse(await udp_raw(port, question("big.example", "TXT").pack()))
    assert classic.header.tc == 1
    assert classic.rr == []
    assert str(classic.q.qname) == "big.example."  # the question is echoed

    raw = await udp_raw(port, question("big.example", "TXT", edns=4096).pack())
    assert raw is not None
    assert len(raw) > 512
    roomy = dnslib.DNSRecord.parse(raw)
    assert roomy.header.tc == 0
    assert len(roomy.rr) == 8
    assert [rr.rtype for rr in roomy.ar] == [dnslib.QTYPE.OPT]  # RFC 6891 §7

    small = dnslib.DNSRecord.parse(
        await udp_raw(port, question("big.example", "TXT", edns=1000).pack())
    )
    assert small.header.tc == 1


async def test_header_flags(dns: DnsLab) -> None:
    own = dnslib.DNSRecord.parse(await udp_raw(dns.port("ns"), question("qq.example", "MX").pack()))
    assert (own.header.aa, own.header.ra) == (1, 1)
    relayed = dnslib.DNSRecord.parse(
        await udp_raw(dns.port("ns"), question("www.other.example", "A").pack())
    )
    assert (relayed.header.aa, relayed.header.ra) == (0, 1)
    direct = dnslib.DNSRecord.parse(
        await udp_raw(dns.port("ns2"), question("www.other.example", "A").pack())
    )
    assert (direct.header.aa, direct.header.ra) == (1, 0)


async def test_an_authoritative_only_server_refuses_other_zones(dns: DnsLab) -> None:
    ctx = dns.lab.context("laptop")
    direct = Resolver(ctx.net, IPv4Address("203.0.113.53"), dns.lab.clock)
    assert (await direct.query("qq.example", "MX")).rcode == "REFUSED"
    assert (await direct.query("www.other.example", "A")).rcode == "NOERROR"


async def test_an_upstream_that_does_not_answer_gives_servfail(dns: DnsLab) -> None:
    for kind in ("dns", "dnsbl"):
        await dns.service("ns2", kind).stop()
    trace = dns.lab.hub.open()
    answer = await dns.resolver("laptop").query("www.other.example", "A", trace_id=trace.id)
    assert answer.rcode == "SERVFAIL"
    (event,) = trace.of_kind("dns")
    assert "203.0.113.53" in event.data["explanation"]
    # The resolver's own zones still answer.
    assert (await dns.resolver("laptop").query("qq.example", "MX")).rcode == "NOERROR"


async def test_many_queries_at_once(dns: DnsLab) -> None:
    stub = dns.resolver("laptop")
    names = ["qq.example", "www.other.example", "nope.qq.example"] * 10
    answers = await asyncio.gather(*(stub.query(n, "A") for n in names))
    assert {a.name: a.rcode for a in answers} == {
        "qq.example.": "NOERROR",
        "www.other.example.": "NOERROR",
        "nope.qq.example.": "NXDOMAIN",
    }


# --- the real dig ------------------------------------------------------------------


async def dig(port: int, *args: str) -> list[str]:
    assert DIG is not None
    process = await asyncio.create_subprocess_exec(
        DIG,
        "@127.0.0.1",
        "-p",
        str(port),
        "+short",
        "+time=3",
        "+tries=1",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode().splitlines()


@pytest.mark.skipif(DIG is None, reason="dig (dnsutils) is not installed")
async def test_dig_agrees_with_the_resolver(dns: DnsLab) -> None:
    stub = dns.resolver("laptop")
    port = dns.port("ns")
    for name, rtype in [
        ("qq.example", "MX"),
        ("www.qq.example", "A"),
        ("out.qq.example", "A"),
        ("25.113.0.203.in-addr.arpa", "PTR"),
        ("dkim._domainkey.qq.example", "TXT"),
        ("nope.qq.example", "A"),
    ]:
        ours = [r.data for r in (await stub.query(name, rtype)).records]
        assert await dig(port, rtype, name) == ours, (name, rtype)
    # dig offers EDNS (1232 bytes): the 8 TXT records do not fit, the answer
    # is truncated. (dig would retry over TCP on the same port; the loopback
    # TCP port differs, so ask over TCP directly.)
    truncated = await dig(port, "+ignore", "TXT", "big.example")
    assert truncated == []
    assert len(await dig(dns.port("ns", "tcp"), "+tcp", "TXT", "big.example")) == 8
    events = [e for e in dns.lab.hub.log.of_kind("dns") if e.data["client"] == str(OUTSIDE)]
    assert {"udp", "tcp"} <= {e.data["transport"] for e in events}


# --- on the local backend ------------------------------------------------------------


def test_a_firewall_drop_on_the_way_to_an_authoritative_node(tmp_path: Path) -> None:
    """On the real local backend: routers apply to the resolver's own queries."""
    local = pytest.importorskip("sim.hosting.local")
    from dataclasses import replace
    from ipaddress import IPv4Network

    from sim.topology.model import FirewallRule

    rule = FirewallRule(
        "drop", proto="udp", dport=(53, 53), dst=IPv4Network("203.0.113.53/32"), note="no DNS"
    )
    topology = dns_topology()
    nodes = tuple(
        replace(n, firewall=(rule,)) if n.name == "internet" else n for n in topology.nodes
    )
    backend = local.LocalBackend(replace(topology, nodes=nodes), tmp_path)
    backend.start()
    try:
        ctx = backend.context("laptop")
        trace = backend.hub.open()
        dropped = backend.call(ctx.resolver.query("www.other.example", "A", trace_id=trace.id))
        fine = backend.call(ctx.resolver.query("qq.example", "MX", trace_id=trace.id))
    finally:
        backend.stop()
    assert dropped.rcode == "SERVFAIL"
    assert fine.rcode == "NOERROR"
    verdicts = [e.data.get("verdict") for e in trace.of_kind("net")]
    assert "drop" in verdicts
    servfail = next(e for e in trace.of_kind("dns") if e.data["rcode"] == "SERVFAIL")
    assert "203.0.113.53" in servfail.data["explanation"]


def test_unanswered_questions_time_out_and_the_rest_answer() -> None:
    """``unanswered`` makes a DNS time-out on demand (a broken authoritative
    server): the asker gets no reply for that name and type, only for it."""
    import sim

    with sim.start(
        Path(__file__).parent / "fixtures/topologies/good/broken-on-purpose.yaml"
    ) as lab:
        silent = lab.dig("mx", "slow.a.example", "TXT")
        assert silent.rcode in ("TIMEOUT", "SERVFAIL")
        assert lab.dig("mx", "slow.a.example", "A").rcode == "NOERROR"
        assert lab.dig("mx", "a.example", "MX").rcode == "NOERROR"
        dropped = [
            e.data for e in silent.trace.of_kind("dns") if e.data.get("name") == "slow.a.example."
        ]
        assert any(d.get("rcode") == "DROP" for d in dropped), dropped
