"""The DNSBL service: RFC 5782 answers, test points, listing changes, and a
shared port 53 with the node's dns service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import dnslib
import pytest
from netdouble import DnsLab, dns_topology

from sim.errors import ServiceError
from sim.resolve import Resolver, record_from_rr
from sim.services.dnsbl import DnsblZone
from sim.topology.model import DnsblListing

ZONE = "zen.dnsbl.example"


def listed_as(zone: DnsblZone, name: str, qtype: str) -> list[str]:
    answer = zone.lookup(name, qtype)
    return [record_from_rr(rr).data for rr in answer.answers]


@pytest.fixture
def zone() -> DnsblZone:
    return DnsblZone(
        ZONE,
        (
            DnsblListing(IPv4Network("100.64.0.0/10"), IPv4Address("127.0.0.11"), "PBL: $"),
            DnsblListing(IPv4Network("203.0.113.66/32"), IPv4Address("127.0.0.2"), ""),
            DnsblListing(IPv4Network("203.0.113.64/28"), IPv4Address("127.0.0.3"), "botnet"),
        ),
    )


# --- answers -----------------------------------------------------------------------


def test_rfc5782_test_points(zone: DnsblZone) -> None:
    assert listed_as(zone, f"2.0.0.127.{ZONE}", "A") == ["127.0.0.2"]
    assert zone.lookup(f"2.0.0.127.{ZONE}", "TXT").answers
    assert zone.lookup(f"1.0.0.127.{ZONE}", "A").rcode == "NXDOMAIN"


def test_127_0_0_1_is_never_listed_even_if_a_range_covers_it() -> None:
    wide = DnsblZone(ZONE, (DnsblListing(IPv4Network("127.0.0.0/8")),))
    assert wide.lookup(f"1.0.0.127.{ZONE}", "A").rcode == "NXDOMAIN"
    assert wide.lookup(f"3.0.0.127.{ZONE}", "A").rcode == "NOERROR"


def test_listed_address_answers_code_and_reason(zone: DnsblZone) -> None:
    name = f"20.10.64.100.{ZONE}"
    assert listed_as(zone, name, "A") == ["127.0.0.11"]
    # '$' in the reason stands for the address.
    assert listed_as(zone, name, "TXT") == ['"PBL: 100.64.10.20"']
    assert "100.64.10.20 is listed" in zone.lookup(name, "A").explanation


def test_several_listings_give_several_codes(zone: DnsblZone) -> None:
    name = f"66.113.0.203.{ZONE}"
    assert sorted(listed_as(zone, name, "A")) == ["127.0.0.2", "127.0.0.3"]
    texts = listed_as(zone, name, "TXT")
    assert sorted(texts) == sorted(['"botnet"', f'"203.0.113.66 is listed in {ZONE}"'])
    assert {r.split()[0] for r in map(str, zone.lookup(name, "ANY").answers)} == {f"{name}."}


def test_unlisted_is_nxdomain_with_soa(zone: DnsblZone) -> None:
    answer = zone.lookup(f"25.113.0.203.{ZONE}", "A")
    assert answer.rcode == "NXDOMAIN"
    assert [rr.rtype for rr in answer.authority] == [dnslib.QTYPE.SOA]


def test_other_types_of_a_listed_address_are_nodata(zone: DnsblZone) -> None:
    answer = zone.lookup(f"20.10.64.100.{ZONE}", "MX")
    assert (answer.rcode, answer.answers) == ("NOERROR", ())


def test_partial_addresses_and_other_names(zone: DnsblZone) -> None:
    assert zone.lookup(f"64.100.{ZONE}", "A").rcode == "NOERROR"  # 100.64/10 lies below
    assert zone.lookup(f"0.127.{ZONE}", "A").rcode == "NOERROR"  # the test point
    assert zone.lookup(f"10.{ZONE}", "A").rcode == "NXDOMAIN"
    assert zone.lookup(f"1.2.3.4.5.{ZONE}", "A").rcode == "NXDOMAIN"
    assert zone.lookup(f"01.0.0.127.{ZONE}", "A").rcode == "NXDOMAIN"  # not canonical
    assert listed_as(zone, ZONE, "NS") == [f"ns.{ZONE}."]
    assert zone.lookup(ZONE, "SOA").rcode == "NOERROR"


def test_a_long_reason_is_split_into_character_strings() -> None:
    reason = "listed because " + "x" * 400
    zone = DnsblZone(ZONE, (DnsblListing(IPv4Network("192.0.2.0/24"), reason=reason),))
    (rr,) = zone.lookup(f"1.2.0.192.{ZONE}", "TXT").answers
    record = record_from_rr(rr)
    assert [len(s) for s in record.strings] == [255, len(reason) - 255]
    assert "".join(record.strings) == reason


def test_delist_removes_part_of_a_range(zone: DnsblZone) -> None:
    assert zone.delist(IPv4Network("100.64.10.20/32")) == 1
    assert zone.lookup(f"20.10.64.100.{ZONE}", "A").rcode == "NXDOMAIN"
    assert listed_as(zone, f"21.10.64.100.{ZONE}", "A") == ["127.0.0.11"]
    assert listed_as(zone, f"255.255.127.100.{ZONE}", "A") == ["127.0.0.11"]
    # Removing a range takes every listing inside it.
    assert zone.delist(IPv4Network("203.0.113.0/24")) == 2
    assert zone.lookup(f"66.113.0.203.{ZONE}", "A").rcode == "NXDOMAIN"
    assert zone.delist(IPv4Network("198.51.100.0/24")) == 0


def test_list_needs_a_loopback_code(zone: DnsblZone) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
        zone.add_listing(IPv4Network("192.0.2.0/24"), code=IPv4Address("192.0.2.1"))


# --- the running service -----------------------------------------------------------


@pytest.fixture
async def dns(tmp_path: Path) -> AsyncIterator[DnsLab]:
    lab = await DnsLab(dns_topology(), tmp_path).start()
    yield lab
    await lab.stop()


async def test_resolver_reaches_the_dnsbl_on_another_node(dns: DnsLab) -> None:
    stub = dns.resolver("laptop")
    trace = dns.lab.hub.open()
    answer = await stub.query(f"20.10.64.100.{ZONE}", "A", trace_id=trace.id)
    assert [r.data for r in answer.records] == ["127.0.0.11"]
    upstream, reply = trace.of_kind("dns")
    assert (upstream.node, upstream.data["client"]) == ("ns2", "198.51.100.53")
    assert "100.64.10.20 is listed" in upstream.data["explanation"]
    assert reply.data["client"] == "100.64.10.20"
    txt = await stub.query(f"20.10.64.100.{ZONE}", "TXT")
    assert txt.texts() == ["residential range, see https://dnsbl.example/query/100.64.10.20"]
    assert (await stub.query(f"2.0.0.127.{ZONE}", "A")).rcode == "NOERROR"
    assert (await stub.query(f"1.0.0.127.{ZONE}", "A")).rcode == "NXDOMAIN"


async def test_dns_and_dnsbl_share_one_port(dns: DnsLab) -> None:
    on_ns2 = [ep for ep in dns.endpoints if ep.node == "ns2"]
    by_service = {(ep.service, ep.proto): (ep.lab, ep.local) for ep in on_ns2}
    assert by_service[("dns", "udp")] == by_service[("dnsbl", "udp")]
    assert by_service[("dns", "tcp")] == by_service[("dnsbl", "tcp")]
    direct = Resolver(dns.lab.net("laptop"), IPv4Address("203.0.113.53"), dns.lab.clock)
    assert (await direct.query("www.other.example", "A")).rcode == "NOERROR"
    assert (await direct.query(f"66.113.0.203.{ZONE}", "A")).rcode == "NOERROR"
    # One service stopping leaves the other answering.
    await dns.service("ns2", "dns").stop()
    assert (await direct.query(f"66.113.0.203.{ZONE}", "A")).rcode == "NOERROR"
    assert (await direct.query("www.other.example", "A")).rcode == "REFUSED"


async def test_listing_and_delisting_at_run_time(dns: DnsLab) -> None:
    stub = dns.resolver("laptop")
    dnsbl = dns.service("ns2", "dnsbl")
    name = f"10.113.0.203.{ZONE}"
    assert (await stub.query(name, "A")).rcode == "NXDOMAIN"

    await dnsbl.control("list", net="203.0.113.0/24", reason="spam from $", code="127.0.0.4")
    await dns.service("ns", "dns").control("flush", name=ZONE)
    listed = await stub.query(name, "ANY")
    assert {r.data for r in listed.records} == {"127.0.0.4", '"spam from 203.0.113.10"'}

    result = await dnsbl.control("delist", net="203.0.113.10")
    assert result["changed"] == 1
    await dns.service("ns", "dns").control("flush")
    assert (await stub.query(name, "A")).rcode == "NXDOMAIN"
    assert (await stub.query(f"11.113.0.203.{ZONE}", "A")).rcode == "NOERROR"
    nets = {entry["net"] for entry in (await dnsbl.control("listings"))["listings"]}
    assert "203.0.113.11/32" in nets


async def test_dnsbl_control_errors(dns: DnsLab) -> None:
    dnsbl = dns.service("ns2", "dnsbl")
    with pytest.raises(ServiceError, match="not an IPv4 address or network"):
        await dnsbl.control("list", net="bogus")
    with pytest.raises(ServiceError, match="missing argument 'net'"):
        await dnsbl.control("delist")
    with pytest.raises(ServiceError, match=r"127\.0\.0\.0/8"):
        await dnsbl.control("list", net="192.0.2.1", code="10.0.0.1")
    with pytest.raises(ServiceError, match="no control command"):
        await dnsbl.control("purge")
