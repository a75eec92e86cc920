"""Validation of topology files: every bad fixture, the meaning checks one by
one, and bad input of any shape never raising."""

from __future__ import annotations

import re
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.errors import Problem
from sim.topology import validate_topology_file, validate_topology_text
from sim.topology.model import (
    DnsService,
    FirewallRule,
    MxService,
    Node,
    RelayService,
    Services,
    Settings,
    Smarthost,
    SubmissionService,
    Topology,
)
from sim.topology.validate import CHECKS, Finding, check_topology, render_path

FIXTURES = Path(__file__).parent / "fixtures" / "topologies"
BAD = sorted((FIXTURES / "bad").glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (\d+):(\d+): (.+)$")


def expectations(path: Path) -> list[tuple[int, int, str]]:
    """The ``# expect: LINE:COL: text`` lines at the top of a fixture."""
    head = path.read_bytes().decode("utf-8", errors="replace")
    found = [EXPECT.match(line) for line in head.splitlines()]
    return sorted((int(m[1]), int(m[2]), m[3]) for m in found if m)


def test_there_are_enough_bad_fixtures() -> None:
    assert len(BAD) >= 20
    assert all(expectations(path) for path in BAD), "every bad fixture says what it expects"


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_fixture_reports_exactly_its_problems(path: Path) -> None:
    problems = validate_topology_file(path)
    expected = expectations(path)
    got = [(p.line, p.col, p.message) for p in problems]
    assert len(got) == len(expected), "\n".join(str(p) for p in problems)
    for (line, col, message), (want_line, want_col, want_text) in zip(got, expected, strict=True):
        assert want_text in message, f"{line}:{col}: {message}"
        assert (line, col) == (want_line, want_col), f"{line}:{col}: {message}"
    assert all(p.path == str(path) for p in problems)
    assert problems == sorted(problems)


# -- the meaning checks on models built in Python -----------------------------------


def host(name: str, ip: str, gateway: str | None = "r1", **services: object) -> Node:
    return Node(name, "host", ip=IPv4Interface(ip), gateway=gateway, services=Services(**services))  # type: ignore[arg-type]


def router(name: str, *rules: FirewallRule) -> Node:
    return Node(name, "router", firewall=rules)


ZONE = "@ MX 10 mx\nmx A 192.0.2.25\n"


def lab(*nodes: Node, zones: dict[str, str] | None = None, **kw: object) -> Topology:
    base = [
        router("r1"),
        host("ns", "192.0.2.53/24", dns=DnsService(("a.example",))),
        host("mx", "192.0.2.25/24", mx=MxService(("a.example",))),
    ]
    named = {n.name: n for n in (*base, *nodes)}
    return Topology(
        "t",
        nodes=tuple(named.values()),
        zones=tuple((zones if zones is not None else {"a.example": ZONE}).items()),
        **kw,  # type: ignore[arg-type]
    )


def findings(topology: Topology, check: str | None = None) -> list[Finding]:
    return [f for f in check_topology(topology) if check is None or f.check == check]


def test_a_sound_topology_has_no_findings() -> None:
    assert findings(lab()) == []


def test_every_check_is_documented() -> None:
    assert len(CHECKS) >= 15
    assert all(name.startswith("verify_") and doc for name, doc in CHECKS.items())


def test_duplicate_addresses() -> None:
    (f,) = findings(lab(host("mx2", "192.0.2.25/24")), "verify_duplicate_addresses")
    assert f.path == ("nodes", "mx2", "ip")
    assert f.refers == ("nodes", "mx", "ip")
    assert "192.0.2.25" in f.message


def test_gateway_must_be_a_router() -> None:
    unknown = findings(lab(host("pc", "192.0.2.9/24", gateway="r9")), "verify_gateways")
    assert [f.path for f in unknown] == [("nodes", "pc", "gateway")]
    assert "not a node" in unknown[0].message
    to_host = findings(lab(host("pc", "10.0.0.9/24", gateway="ns")), "verify_gateways")
    assert "is a host, not a router" in to_host[0].message


def test_one_network_one_gateway() -> None:
    topo = lab(router("r2"), host("pc", "192.0.2.99/24", gateway="r2"), links=(("r1", "r2"),))
    (f,) = findings(topo, "verify_shared_subnets")
    assert f.path == ("nodes", "pc", "gateway")
    overlap = lab(router("r2"), host("pc", "192.0.2.130/25", gateway="r2"), links=(("r1", "r2"),))
    (g,) = findings(overlap, "verify_shared_subnets")
    assert "overlaps" in g.message
    # Two hosts without gateway on their own LAN are fine, and so is a
    # second network behind the same router.
    fine = lab(
        host("a", "10.1.0.1/24", None), host("b", "10.1.0.2/24", None), host("c", "10.2.0.1/24")
    )
    assert findings(fine) == []


def test_isolated_nodes() -> None:
    topo = lab(router("spare"), host("alone", "10.9.0.1/24", None))
    got = {f.path for f in findings(topo, "verify_isolated_nodes")}
    assert got == {("nodes", "spare"), ("nodes", "alone")}
    linked = lab(router("spare"), links=(("r1", "spare"),))
    assert findings(linked) == []


def test_links() -> None:
    topo = lab(
        router("r2"), links=(("r1", "r2"), ("r2", "r1"), ("r2", "r2"), ("r2", "ns"), ("r2", "zz"))
    )
    got = [(f.path, f.message.split(":")[0]) for f in findings(topo, "verify_links")]
    assert [path for path, _ in got] == [
        ("links", 1),
        ("links", 2),
        ("links", 3, 1),
        ("links", 4, 1),
    ]


def test_zone_text_errors_point_inside_the_text() -> None:
    topo = lab(zones={"a.example": ZONE + "\nbad A 1.2.3\n"})
    (f,) = findings(topo)
    assert f.check == "verify_zone_text"
    assert f.text_line == 4
    # What a broken zone holds is unknown: no "no MX" conclusion about it.
    assert not findings(topo, "verify_mail_domains")


@pytest.mark.parametrize(
    ("zone", "fragment"),
    [
        ("@ MX 10 192.0.2.25\n", "is an IP address"),
        ("@ MX 10 192.0.2.25.\n", "is an IP address"),
        ("@ MX 10 mail\nmail CNAME mx\nmx A 192.0.2.25\n", "alias (CNAME)"),
        ("@ MX 10 mx.elsewhere.test.\n", "outside the lab's zones"),
        ("@ MX 10 mx\n", "has no A record"),
        ("@ NS ns1\n@ MX 10 mx\nmx A 192.0.2.25\n", "NS target ns1.a.example has no A record"),
        ("@ MX 5 .\n", "a null MX has preference 0"),
        ("@ MX 0 .\n@ MX 10 mx\nmx A 192.0.2.25\n", "null MX and other MX records"),
    ],
)
def test_mx_and_ns_targets(zone: str, fragment: str) -> None:
    got = findings(lab(zones={"a.example": zone}), "verify_mx_ns_targets")
    assert len(got) == 1, got
    assert fragment in got[0].message, got


def test_null_mx_and_implicit_mx_are_fine() -> None:
    assert findings(lab(zones={"a.example": "@ MX 0 .\n"})) == []
    # RFC 5321 §5.1: no MX, but an A record: the domain itself is the mail host.
    assert findings(lab(zones={"a.example": "@ A 192.0.2.25\n"})) == []


def test_mail_domain_without_mx_or_a() -> None:
    (f,) = findings(lab(zones={"a.example": "www A 192.0.2.80\n"}), "verify_mail_domains")
    assert f.path == ("nodes", "mx", "services", "mx", "domains", 0)


def test_service_zones() -> None:
    topo = lab(zones={"a.example": ZONE, "b.example": "@ A 192.0.2.1\n"})
    (f,) = findings(topo)
    assert f.path == ("zones", "b.example")
    assert "no dns service" in f.message
    undefined = lab(zones={})
    assert {f.check for f in findings(undefined)} == {"verify_service_zones", "verify_mail_domains"}


def test_resolver() -> None:
    assert findings(lab(settings=Settings(resolver=IPv4Address("192.0.2.53")))) == []
    (wrong,) = findings(lab(settings=Settings(resolver=IPv4Address("192.0.2.25"))))
    assert "runs no dns" in wrong.message
    (nobody,) = findings(lab(settings=Settings(resolver=IPv4Address("192.0.2.1"))))
    assert "no host has the address" in nobody.message
    two = lab(host("ns2", "192.0.2.54/24", dns=DnsService()))
    assert [f.path for f in findings(two)] == [("settings",)]


def test_outside_must_be_a_router() -> None:
    assert findings(lab(settings=Settings(outside="r1"))) == []
    (f,) = findings(lab(settings=Settings(outside="ns")))
    assert f.path == ("settings", "outside")
    assert "a host, not a router" in f.message


def test_submission_relay_and_smarthost() -> None:
    users = (("a@a.example", "pw"),)
    alone = lab(host("s", "192.0.2.40/24", submission=SubmissionService(users)))
    assert [f.check for f in findings(alone)] == ["verify_submission"]
    provider = host("p", "192.0.2.40/24", submission=SubmissionService(users), relay=RelayService())

    def via(smarthost: Smarthost) -> list[Finding]:
        client = host("c", "192.0.2.41/24", relay=RelayService(smarthost=smarthost))
        return findings(lab(provider, client), "verify_smarthosts")

    assert via(Smarthost("p")) == []
    assert via(Smarthost("p", port=465)) == []
    assert "does not listen" in via(Smarthost("p", port=2525))[0].message
    assert "without a submission" in via(Smarthost("ns"))[0].message
    assert "not a node" in via(Smarthost("nowhere"))[0].message
    assert "its own host" in via(Smarthost("c"))[0].message


def test_dkim_domains_need_a_lab_zone() -> None:
    relay = RelayService(dkim=(("a.example", "s1"), ("sub.a.example", "s1"), ("b.example", "s1")))
    got = findings(lab(host("r", "192.0.2.41/24", relay=relay)), "verify_dkim_domains")
    assert [f.path[-1] for f in got] == ["b.example"]


def rule(action: str = "drop", **kw: object) -> FirewallRule:
    return FirewallRule(action, **kw)  # type: ignore[arg-type]


NET = IPv4Network


@pytest.mark.parametrize(
    ("first", "second", "shadowed"),
    [
        (rule(), rule("accept", proto="tcp", dport=(25, 25)), True),
        (rule(proto="tcp"), rule(proto="udp"), False),
        (rule(proto="tcp", dport=(20, 30)), rule(proto="tcp", dport=(25, 25)), True),
        (rule(proto="tcp", dport=(25, 25)), rule(proto="tcp", dport=(20, 30)), False),
        (rule(proto="tcp", dport=(25, 25)), rule(proto="tcp"), False),
        (rule(src=NET("100.64.0.0/10")), rule(src=NET("100.64.10.0/24")), True),
        (rule(src=NET("100.64.10.0/24")), rule(src=NET("100.64.0.0/10")), False),
        (rule(src=NET("100.64.10.0/24")), rule(), False),
        (rule(dst=NET("192.0.2.0/24")), rule(dst=NET("192.0.2.25/32")), True),
        (rule(direction="out"), rule(direction="in"), False),
        (rule(direction="out"), rule(), False),
        (rule(), rule(direction="in"), True),
        (rule("reject", reject_with="icmp-port-unreachable"), rule("drop"), True),
    ],
)
def test_firewall_shadowing(first: FirewallRule, second: FirewallRule, shadowed: bool) -> None:
    got = findings(lab(router("r1", first, second)), "verify_firewall_shadowing")
    assert bool(got) == shadowed
    if got:
        assert got[0].path == ("nodes", "r1", "firewall", 1)


def test_reserved_node_name_matches_the_layout() -> None:
    from sim.topology.graph import OUTSIDE

    (f,) = findings(lab(host(OUTSIDE, "192.0.2.77/24")))
    assert f.check == "verify_node_names"


def test_render_path() -> None:
    assert (
        render_path(("nodes", "mx-qq", "firewall", 0, "dport")) == "nodes.mx-qq.firewall[0].dport"
    )
    assert render_path(("zones", "qq.example")) == 'zones["qq.example"]'
    assert render_path(()) == ""


# -- structural problems hide the meaning checks they would confuse -----------------

GOOD = """\
name: t
nodes:
  r1: {kind: router}
  ns: {kind: host, ip: 192.0.2.53/24, gateway: r1, services: {dns: {zones: [a.example]}}}
  mx: {kind: host, ip: 192.0.2.25/24, gateway: r1, services: {mx: {domains: [a.example]}}}
zones:
  a.example: |
    @ MX 10 mx
    mx A 192.0.2.25
"""


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        # The router is broken: hosts naming it as gateway are not "unknown".
        ("r1: {kind: router}", "r1: {kind: ruter}", "'ruter' is not one of: host, router"),
        # A misspelt service key: the zone is not "served by no dns".
        ("services: {dns:", "services: {dsn:", "unknown key 'dsn'"),
        # A zone key that is not a domain name: no "zone not defined".
        ("  a.example: |", "  a..example: |", "is not a domain name"),
        # A misspelt gateway: the host is not "on no link".
        (
            "ip: 192.0.2.25/24, gateway: r1",
            "ip: 192.0.2.25/24, gatewy: r1",
            "did you mean 'gateway'",
        ),
    ],
)
def test_structural_problems_do_not_cascade(old: str, new: str, fragment: str) -> None:
    assert validate_topology_text(GOOD) == []
    assert old in GOOD
    (problem,) = validate_topology_text(GOOD.replace(old, new))
    assert fragment in problem.message


def test_the_layout_is_checked_too() -> None:
    """What the meaning checks miss, the network layout reports, with a line."""
    assert validate_topology_text(GOOD) == []
    from sim.topology import loads_topology
    from sim.topology.graph import build_network

    net = build_network(loads_topology(GOOD))
    assert net.address_of("mx") == IPv4Address("192.0.2.25")


# -- bad input of any shape ----------------------------------------------------------

KEYS = [
    "name",
    "title",
    "settings",
    "nodes",
    "links",
    "zones",
    "kind",
    "ip",
    "gateway",
    "firewall",
    "services",
    "dns",
    "mx",
    "zones",
    "domains",
    "action",
    "proto",
    "dport",
    "time_scale",
    "resolver",
    "users",
    "relay",
    "retry",
    "smarthost",
    "checks",
    "<<",
    "? x",
]
SCALARS = [
    "host",
    "router",
    "r1",
    "192.0.2.1/24",
    "5m",
    "tcp",
    "25",
    "1-2",
    "null",
    "~",
    "",
    "'q'",
    '"\\t"',
    "&a x",
    "*a",
    "!tag v",
    "|",
    ">",
    "- ",
    "{",
    "[",
    "}",
    "]",
    ":",
    "#",
    "%",
    "@",
    "`",
    "0x1F",
    "1e9",
    ".inf",
    "true",
    "2024-01-01",
    "\t",
    "\x00",
    "\ufeff",
]


@st.composite
def yamlish(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        indent = " " * draw(st.sampled_from([0, 2, 4, 6, 1]))
        shape = draw(st.integers(0, 4))
        key = draw(st.sampled_from(KEYS))
        value = draw(st.sampled_from(SCALARS) | st.text(max_size=8))
        if shape == 0:
            lines.append(f"{indent}{key}: {value}")
        elif shape == 1:
            lines.append(f"{indent}- {value}")
        elif shape == 2:
            lines.append(f"{indent}{key}:")
        elif shape == 3:
            lines.append(f"{indent}{key}: {{{key}: [{value}, {value}]}}")
        else:
            lines.append(indent + draw(st.text(max_size=20)))
    return "\n".join(lines)


def assert_problems(problems: list[Problem], source: str) -> None:
    assert isinstance(problems, list)
    for problem in problems:
        assert isinstance(problem, Problem)
        assert problem.path == source
        assert problem.line >= 1
        assert problem.col >= 1
        assert problem.message
        assert "\n" not in problem.message.strip()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(yamlish())
def test_random_yamlish_text_gives_problems_never_exceptions(text: str) -> None:
    assert_problems(validate_topology_text(text, "x.yaml"), "x.yaml")


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([GOOD, (FIXTURES / "good" / "rich.yaml").read_text()]), st.data())
def test_mutated_topologies_give_problems_never_exceptions(base: str, data: st.DataObject) -> None:
    text = base
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 6))
        insert = data.draw(st.sampled_from(SCALARS) | st.text(max_size=4))
        text = text[:at] + insert + text[at + cut :]
    assert_problems(validate_topology_text(text, "m.yaml"), "m.yaml")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_in_a_file_give_problems(
    tmp_path_factory: pytest.TempPathFactory, blob: bytes
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "t.yaml"
    path.write_bytes(blob)
    assert_problems(validate_topology_file(path), str(path))


def test_deep_nesting_is_one_problem() -> None:
    (problem,) = validate_topology_text("a: " + "[" * 600 + "]" * 600)
    assert "nested too deeply" in problem.message


def test_anchors_aliases_and_merge_keys() -> None:
    text = (
        GOOD.replace(
            "  r1: {kind: router}",
            "  r1: &router {kind: router}\n  r2:\n    <<: *router\n    title: second\n",
        )
        + "links:\n  - [r1, r2]\n"
    )
    assert validate_topology_text(text) == []


def test_replace_keeps_model_frozen_semantics() -> None:
    # check_topology must not depend on node order for its verdicts.
    topo = lab(host("mx2", "192.0.2.25/24"))
    reordered = replace(topo, nodes=tuple(reversed(topo.nodes)))
    assert len(findings(topo, "verify_duplicate_addresses")) == 1
    assert len(findings(reordered, "verify_duplicate_addresses")) == 1
