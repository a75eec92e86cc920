"""ZoneStore: authoritative answers (RFC 1034 §4.3.2) and zone edits."""

from __future__ import annotations

from ipaddress import IPv4Address

import dnslib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.resolve import record_from_rr
from sim.services.zonestore import ZoneEditError, ZoneStore, split_long_strings, split_txt
from sim.topology.zones import ZoneSyntaxError, parse_zone

QQ = """\
@      MX  10 mx
mx     A   203.0.113.25
@      TXT "v=spf1 mx -all"
_dmarc TXT "v=DMARC1; p=reject"
www    CNAME web
web    CNAME mx
away   CNAME www.elsewhere.example.
loop1  CNAME loop2
loop2  CNAME loop1
deep.below.tree A 192.0.2.7
*.wild A 192.0.2.99
known.wild TXT "not from the wildcard"
"""


@pytest.fixture
def store() -> ZoneStore:
    return ZoneStore(
        {"qq.example": QQ, "113.0.203.in-addr.arpa": "25 PTR mx.qq.example."},
        server_name="ns",
        server_address=IPv4Address("198.51.100.53"),
    )


def data(answer_rrs: tuple[dnslib.RR, ...]) -> list[tuple[str, str, str]]:
    return [(r.name, r.type, r.data) for r in map(record_from_rr, answer_rrs)]


# --- answering -----------------------------------------------------------------


def test_records_of_the_asked_type(store: ZoneStore) -> None:
    answer = store.lookup("qq.example", "MX")
    assert answer.rcode == "NOERROR"
    assert answer.authoritative
    assert data(answer.answers) == [("qq.example.", "MX", "10 mx.qq.example.")]
    assert answer.authority == ()


def test_names_are_case_insensitive(store: ZoneStore) -> None:
    answer = store.lookup("MX.QQ.Example.", "a")
    assert data(answer.answers) == [("mx.qq.example.", "A", "203.0.113.25")]


def test_nxdomain_carries_the_soa_with_the_negative_ttl(store: ZoneStore) -> None:
    answer = store.lookup("nope.qq.example", "A")
    assert answer.rcode == "NXDOMAIN"
    assert answer.answers == ()
    (soa,) = answer.authority
    assert soa.rtype == dnslib.QTYPE.SOA
    # RFC 2308 §3: the SOA's TTL is min(TTL, minimum).
    assert soa.ttl == min(300, soa.rdata.times[4])


def test_nodata_is_noerror_with_an_empty_answer(store: ZoneStore) -> None:
    answer = store.lookup("mx.qq.example", "TXT")
    assert answer.rcode == "NOERROR"
    assert answer.answers == ()
    assert [rr.rtype for rr in answer.authority] == [dnslib.QTYPE.SOA]
    assert "NODATA" in answer.explanation


def test_an_empty_non_terminal_exists(store: ZoneStore) -> None:
    # below.qq.example has no records but deep.below.tree... does (RFC 8020).
    assert store.lookup("below.tree.qq.example", "A").rcode == "NOERROR"
    assert store.lookup("tree.qq.example", "A").rcode == "NOERROR"
    assert store.lookup("other.tree.qq.example", "A").rcode == "NXDOMAIN"


def test_cname_chain_is_followed_inside_the_store(store: ZoneStore) -> None:
    answer = store.lookup("www.qq.example", "A")
    assert answer.rcode == "NOERROR"
    assert data(answer.answers) == [
        ("www.qq.example.", "CNAME", "web.qq.example."),
        ("web.qq.example.", "CNAME", "mx.qq.example."),
        ("mx.qq.example.", "A", "203.0.113.25"),
    ]


def test_cname_asked_for_itself_is_not_followed(store: ZoneStore) -> None:
    answer = store.lookup("www.qq.example", "CNAME")
    assert data(answer.answers) == [("www.qq.example.", "CNAME", "web.qq.example.")]


def test_cname_to_a_nodata_target_keeps_the_chain(store: ZoneStore) -> None:
    answer = store.lookup("www.qq.example", "TXT")
    assert answer.rcode == "NOERROR"
    assert [r[1] for r in data(answer.answers)] == ["CNAME", "CNAME"]
    assert [rr.rtype for rr in answer.authority] == [dnslib.QTYPE.SOA]


def test_cname_leaving_the_store_ends_with_the_cname(store: ZoneStore) -> None:
    answer = store.lookup("away.qq.example", "A")
    assert answer.rcode == "NOERROR"
    assert data(answer.answers) == [("away.qq.example.", "CNAME", "www.elsewhere.example.")]


def test_cname_loop_stops(store: ZoneStore) -> None:
    answer = store.lookup("loop1.qq.example", "A")
    assert [r[1] for r in data(answer.answers)] == ["CNAME", "CNAME"]
    assert "loop" in answer.explanation


def test_any_returns_every_record_at_the_name(store: ZoneStore) -> None:
    types = {r[1] for r in data(store.lookup("qq.example", "ANY").answers)}
    assert types == {"SOA", "NS", "MX", "TXT"}


def test_wildcard_answers_under_the_asked_name(store: ZoneStore) -> None:
    answer = store.lookup("anything.wild.qq.example", "A")
    assert data(answer.answers) == [("anything.wild.qq.example.", "A", "192.0.2.99")]
    assert "wildcard" in answer.explanation


def test_wildcard_does_not_cover_existing_names_or_their_children(store: ZoneStore) -> None:
    # RFC 4592 §3.3.1: known.wild exists, so it gets NODATA for A, and
    # x.known.wild has closest encloser known.wild, which has no wildcard.
    assert store.lookup("known.wild.qq.example", "A").answers == ()
    assert store.lookup("known.wild.qq.example", "A").rcode == "NOERROR"
    assert store.lookup("x.known.wild.qq.example", "A").rcode == "NXDOMAIN"


def test_reverse_zone(store: ZoneStore) -> None:
    answer = store.lookup("25.113.0.203.in-addr.arpa", "PTR")
    assert data(answer.answers) == [("25.113.0.203.in-addr.arpa.", "PTR", "mx.qq.example.")]


def test_outside_every_zone_is_refused_and_not_authoritative(store: ZoneStore) -> None:
    answer = store.lookup("qq.test", "A")
    assert answer.rcode == "REFUSED"
    assert not answer.authoritative


def test_unknown_type_name_is_a_clear_error(store: ZoneStore) -> None:
    with pytest.raises(ValueError, match="not a DNS record type"):
        store.lookup("qq.example", "BOGUS")


# --- made-up SOA and NS --------------------------------------------------------


def test_soa_and_ns_are_made_up_after_the_node(store: ZoneStore) -> None:
    ns = store.lookup("qq.example", "NS")
    assert data(ns.answers) == [("qq.example.", "NS", "ns.qq.example.")]
    soa = record_from_rr(store.lookup("qq.example", "SOA").answers[0])
    assert soa.data.startswith("ns.qq.example. hostmaster.qq.example. 1 ")
    glue = store.lookup("ns.qq.example", "A")
    assert data(glue.answers) == [("ns.qq.example.", "A", "198.51.100.53")]


def test_a_written_soa_and_ns_are_kept() -> None:
    text = "@ SOA ns1.corp.example. admin.corp.example. 42 1 2 3 60\n@ NS ns1.corp.example.\n"
    store = ZoneStore({"corp.example": text}, server_name="ns")
    assert store.serial("corp.example") == 42
    assert data(store.lookup("corp.example", "NS").answers) == [
        ("corp.example.", "NS", "ns1.corp.example.")
    ]
    assert store.lookup("ns.corp.example", "A").rcode == "NXDOMAIN"
    # The negative TTL is the SOA minimum when that is smaller (RFC 2308 §3).
    assert store.lookup("nope.corp.example", "A").authority[0].ttl == 60


def test_a_node_name_that_is_no_hostname_falls_back_to_ns() -> None:
    store = ZoneStore({"x.example": ""}, server_name="Mail Server_1")
    assert data(store.lookup("x.example", "NS").answers)[0][2] == "ns.x.example."


# --- bad zone data -----------------------------------------------------------------


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(ZoneSyntaxError) as err:
        ZoneStore({"qq.example": "mx A 203.0.113.25\nbad A not-an-address\n"})
    assert err.value.line == 2


def test_records_outside_the_zone_are_refused_with_their_line() -> None:
    with pytest.raises(ZoneSyntaxError) as err:
        ZoneStore({"qq.example": "mx A 203.0.113.25\nwww.other.test. A 192.0.2.1\n"})
    assert err.value.line == 2
    assert "outside the zone" in err.value.message


def test_cname_and_other_data_is_refused() -> None:
    with pytest.raises(ZoneSyntaxError, match="CNAME and other data") as err:
        ZoneStore({"qq.example": 'mx A 203.0.113.25\nwww CNAME mx\nwww TXT "hi"\n'})
    assert err.value.line == 2


def test_cname_at_the_apex_is_refused() -> None:
    with pytest.raises(ZoneSyntaxError, match="apex"):
        ZoneStore({"qq.example": "@ CNAME other.example.\n"})


# --- edits -------------------------------------------------------------------------


def test_add_is_visible_and_bumps_the_serial(store: ZoneStore) -> None:
    before = store.serial("qq.example")
    assert store.add("qq.example", 'selector._domainkey TXT "v=DKIM1; p=abc"') == 1
    assert store.serial("qq.example") == before + 1
    answer = store.lookup("selector._domainkey.qq.example", "TXT")
    assert [record_from_rr(rr).strings for rr in answer.answers] == [("v=DKIM1; p=abc",)]


def test_add_of_a_record_already_there_adds_nothing(store: ZoneStore) -> None:
    assert store.add("qq.example", "mx A 203.0.113.25") == 0
    assert len(store.lookup("mx.qq.example", "A").answers) == 1


def test_add_bad_text_changes_nothing(store: ZoneStore) -> None:
    before = store.zone_text("qq.example")
    with pytest.raises(ZoneSyntaxError) as err:
        store.add("qq.example", 'ok TXT "fine"\n@ MX ten mx\n')
    assert err.value.line == 2
    with pytest.raises(ZoneSyntaxError, match="CNAME and other data"):
        store.add("qq.example", "mx CNAME www")
    assert store.zone_text("qq.example") == before


def test_add_to_an_unknown_zone(store: ZoneStore) -> None:
    with pytest.raises(ZoneEditError, match=r"no zone nope\.example"):
        store.add("nope.example", "a A 192.0.2.1")


def test_add_an_soa_replaces_it_and_the_serial_still_grows(store: ZoneStore) -> None:
    store.add("qq.example", "@ SOA ns.qq.example. admin.qq.example. 1 10 10 10 30")
    assert store.serial("qq.example") == 2
    soas = store.lookup("qq.example", "SOA").answers
    assert len(soas) == 1
    assert record_from_rr(soas[0]).data.startswith("ns.qq.example. admin.qq.example.")


def test_remove_by_name_type_and_data(store: ZoneStore) -> None:
    store.add("qq.example", '@ TXT "google-site-verification=abc"')
    assert store.remove("qq.example", "@", "TXT", "v=spf1 mx -all") == 1
    texts = [record_from_rr(rr).strings for rr in store.lookup("qq.example", "TXT").answers]
    assert texts == [("google-site-verification=abc",)]
    assert store.remove("qq.example", "mx") == 1
    assert store.lookup("mx.qq.example", "A").rcode == "NXDOMAIN"
    assert store.remove("qq.example", "_dmarc.qq.example.", "txt") == 1


def test_remove_at_the_apex_keeps_soa_and_ns(store: ZoneStore) -> None:
    assert store.remove("qq.example", "@") == 2  # MX and TXT
    types = {r[1] for r in data(store.lookup("qq.example", "ANY").answers)}
    assert types == {"SOA", "NS"}


def test_remove_what_must_stay_or_is_not_there(store: ZoneStore) -> None:
    serial = store.serial("qq.example")
    with pytest.raises(ZoneEditError, match="SOA"):
        store.remove("qq.example", "@", "SOA")
    with pytest.raises(ZoneEditError, match="NS"):
        store.remove("qq.example", "@", "NS")
    with pytest.raises(ZoneEditError, match=r"no AAAA record at mx\.qq\.example\."):
        store.remove("qq.example", "mx", "AAAA")
    assert store.serial("qq.example") == serial


def test_replace_zone(store: ZoneStore) -> None:
    serial = store.serial("qq.example")
    store.replace_zone("qq.example", "@ MX 20 backup\nbackup A 203.0.113.26\n")
    assert data(store.lookup("qq.example", "MX").answers) == [
        ("qq.example.", "MX", "20 backup.qq.example.")
    ]
    assert store.lookup("mx.qq.example", "A").rcode == "NXDOMAIN"
    assert store.serial("qq.example") == serial + 1
    with pytest.raises(ZoneSyntaxError):
        store.replace_zone("qq.example", "@ MX")
    assert store.lookup("backup.qq.example", "A").rcode == "NOERROR"


def test_serial_wraps_around_by_rfc_1982() -> None:
    text = "@ SOA ns.w.example. h.w.example. 4294967295 1 1 1 1\n"
    store = ZoneStore({"w.example": text})
    store.add("w.example", "a A 192.0.2.1")
    assert store.serial("w.example") == 0


# --- TXT and zone text -------------------------------------------------------------


def test_split_txt_cuts_at_255_bytes() -> None:
    parts = split_txt([b"a" * 600, b"", b"short"])
    assert [len(p) for p in parts] == [255, 255, 90, 0, 5]
    assert b"".join(parts) == b"a" * 600 + b"short"


def test_a_long_string_is_split_into_character_strings() -> None:
    key = "p=" + "A" * 600
    text = f'sel._domainkey TXT "v=DKIM1; k=rsa; {key}" ; a "comment" {"x" * 300}\n'
    store = ZoneStore({"q.example": text})
    (rr,) = store.lookup("sel._domainkey.q.example", "TXT").answers
    strings = record_from_rr(rr).strings
    assert [len(s) for s in strings] == [255, 255, 618 - 510]
    assert "".join(strings) == "v=DKIM1; k=rsa; " + key


def test_split_long_strings_leaves_short_strings_and_comments_alone() -> None:
    text = '@ TXT "short" "also \\"short\\"" ; "' + "c" * 300 + '"\n'
    assert split_long_strings(text) == text
    long = '@ TXT "' + "é" * 200 + '"'
    parts = split_long_strings(long).split('" "')
    assert len(parts) == 2
    assert len(parts[0].removeprefix('@ TXT "').encode()) <= 255


labels = st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9]", fullmatch=True)
addresses = st.ip_addresses(v=4).map(str)


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(labels, st.lists(addresses, min_size=1, max_size=3), max_size=6))
def test_every_written_record_is_answered_and_survives_zone_text(
    names: dict[str, list[str]],
) -> None:
    text = "".join(f"{name} A {ip}\n" for name, ips in names.items() for ip in ips)
    store = ZoneStore({"h.example": text}, server_name="zz-server")
    for name, ips in names.items():
        answer = store.lookup(f"{name}.h.example", "A")
        assert sorted(r.data for r in map(record_from_rr, answer.answers)) == sorted(set(ips))
    # The listing a lab task shows parses back to the same records.
    again = parse_zone("h.example", store.zone_text("h.example"))
    assert sorted(map(str, again)) == sorted(map(str, store.records("h.example")))


def test_a_relative_srv_target_is_completed_with_the_origin() -> None:
    # RFC 1035 §5.1; dnslib leaves SRV targets unqualified on its own.
    from sim.topology.zones import parse_zone

    records = parse_zone("home.example", "_submissions._tcp SRV 0 1 465 smtp\n")
    assert str(records[0].rdata.target) == "smtp.home.example."
    absolute = parse_zone("home.example", "x SRV 0 1 465 smtp.other.example.\n")
    assert str(absolute[0].rdata.target) == "smtp.other.example."


def test_txt_escapes_are_decimal_as_rfc1035_says() -> None:
    """RFC 1035 §5.1: ``\\DDD`` is a decimal octet (dnslib alone reads octal)."""
    (rr,) = parse_zone("q.example", '@ TXT "\\065\\066" "a\\"b" \\059x\n')
    assert rr.rdata.data == [b"AB", b'a"b', b";x"]


def test_escaped_owner_names_are_the_octets_they_stand_for() -> None:
    store = ZoneStore({"q.example": 'a\\032b A 192.0.2.1\nx\\.y TXT "dot"\n'})
    (a,) = store.lookup("a\\032b.q.example", "A").answers
    assert a.rname.label[0] == b"a b"
    assert store.lookup("x\\.y.q.example", "TXT").answers


def test_a_txt_record_without_strings_is_a_zone_error() -> None:
    # RFC 1035 §3.3.14: one or more character-strings (an empty one is "").
    with pytest.raises(ZoneSyntaxError, match="TXT data is"):
        parse_zone("q.example", "@ TXT\n")
    (rr,) = parse_zone("q.example", '@ TXT ""\n')
    assert rr.rdata.data == [b""]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=3))
def test_printed_txt_reads_back_the_same(strings: list[bytes]) -> None:
    """The zone a lab task shows (decimal escapes) parses back to the same octets."""
    text = (
        "@ TXT "
        + " ".join(
            '"'
            + "".join(
                chr(b) if 0x20 <= b <= 0x7E and chr(b) not in '"\\();' else f"\\{b:03d}" for b in s
            )
            + '"'
            for s in strings
        )
        + "\n"
    )
    store = ZoneStore({"p.example": text})
    again = parse_zone("p.example", store.zone_text("p.example"))
    (txt,) = [rr for rr in again if rr.rtype == dnslib.QTYPE.TXT]
    assert [bytes(s) for s in txt.rdata.data] == strings
