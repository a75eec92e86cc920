"""Firewall semantics: which router stops which packet, by which rule."""

from __future__ import annotations

import itertools
from ipaddress import IPv4Address, IPv4Network
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from topobuild import PORT_25, RESIDENTIAL, host, router

from sim.errors import NetworkError
from sim.topology.firewall import (
    Packet,
    PacketProto,
    Verdict,
    describe_rule,
    effective_reject_with,
    evaluate,
    rule_matches,
)
from sim.topology.graph import OUTSIDE, LabNetwork, build_network
from sim.topology.model import FirewallRule, Node, Settings, Topology


def home_isp(
    isp: tuple[FirewallRule, ...] = (PORT_25,), internet: tuple[FirewallRule, ...] = ()
) -> LabNetwork:
    """DESIGN.md's example topology, with the given rules on each router."""
    return build_network(
        Topology(
            name="home-isp",
            settings=Settings(resolver=IPv4Address("198.51.100.53")),
            nodes=(
                host("laptop", "100.64.10.20/24", "isp"),
                router("isp", *isp),
                router("internet", *internet),
                host("ns", "198.51.100.53/24", "internet"),
                host("mx-qq", "203.0.113.25/24", "internet"),
                host("smtp-isp", "192.0.2.25/24", "isp"),
            ),
            links=(("isp", "internet"),),
        )
    )


def send(
    network: LabNetwork, src: str, dst: str, port: int | None = 25, proto: PacketProto = "tcp"
) -> Verdict:
    packet = Packet(network.address_of(src), IPv4Address(dst), proto, port)
    return evaluate(network, src, packet)


MX = "203.0.113.25"


# -- the DESIGN example ------------------------------------------------------------


def test_the_isp_drops_port_25_from_home() -> None:
    verdict = send(home_isp(), "laptop", MX, 25)
    assert verdict.action == "drop"
    assert verdict.router == "isp"
    assert verdict.rule_index == 0
    assert verdict.rule == PORT_25
    assert verdict.path == ("laptop", "isp")
    assert verdict.note == "residential customers may not send on port 25"
    assert verdict.reject_with is None
    assert not verdict.passed


def test_the_explanation_names_router_rule_and_reason() -> None:
    verdict = send(home_isp(), "laptop", MX, 25)
    assert verdict.explain() == (
        "isp dropped tcp 100.64.10.20 → 203.0.113.25:25 by rule 1 "
        "(drop tcp dport 25 from 100.64.0.0/10): "
        "residential customers may not send on port 25"
    )


def test_submission_port_passes() -> None:
    verdict = send(home_isp(), "laptop", MX, 587)
    assert verdict.action == "accept"
    assert verdict.passed
    assert verdict.path == ("laptop", "isp", "internet", "mx-qq")
    assert verdict.router is None
    assert verdict.rule is None


def test_the_isps_relay_is_not_residential() -> None:
    verdict = send(home_isp(), "smtp-isp", MX, 25)
    assert verdict.action == "accept"
    assert verdict.path == ("smtp-isp", "isp", "internet", "mx-qq")


def test_a_packet_inside_one_lan_meets_no_router() -> None:
    network = home_isp(internet=(FirewallRule(action="drop"),))
    assert send(network, "mx-qq", "203.0.113.25").path == ("mx-qq",)
    verdict = send(network, "ns", MX, 53, "udp")
    # ns and mx-qq are on different LANs of internet: it forwards, and drops.
    assert verdict.action == "drop"
    assert verdict.router == "internet"


def test_routers_do_not_judge_packets_addressed_to_themselves() -> None:
    network = home_isp(isp=(FirewallRule(action="drop"),))
    isp_address = str(network.address_of("isp"))
    assert send(network, "laptop", isp_address, 22).action == "accept"
    # ...nor packets they send.
    assert send(network, "isp", MX, 25).action == "accept"


# -- reject ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reject_with", "proto", "answer"),
    [
        ("tcp-reset", "tcp", "tcp-reset"),
        ("tcp-reset", "udp", "icmp-port-unreachable"),
        ("tcp-reset", "icmp", "icmp-port-unreachable"),
        ("icmp-port-unreachable", "tcp", "icmp-port-unreachable"),
        ("icmp-port-unreachable", "udp", "icmp-port-unreachable"),
        ("icmp-admin-prohibited", "tcp", "icmp-admin-prohibited"),
        ("icmp-admin-prohibited", "icmp", "icmp-admin-prohibited"),
    ],
)
def test_reject_answers(reject_with: str, proto: PacketProto, answer: str) -> None:
    rule = FirewallRule(action="reject", src=RESIDENTIAL, reject_with=reject_with)  # type: ignore[arg-type]
    network = home_isp(isp=(rule,))
    port = None if proto == "icmp" else 25
    verdict = send(network, "laptop", MX, port, proto)
    assert verdict.action == "reject"
    assert verdict.reject_with == answer
    assert effective_reject_with(rule, proto) == answer
    assert f"with {answer}" in verdict.explain()
    assert verdict.to_json()["reject_with"] == answer


# -- matching ------------------------------------------------------------------------


def test_direction_out_and_in() -> None:
    out = FirewallRule(action="drop", proto="tcp", dport=(25, 25), direction="out")
    network = home_isp(isp=(out,))
    assert send(network, "laptop", MX).action == "drop"  # LAN → link at isp
    assert send(network, "mx-qq", "100.64.10.20").action == "accept"  # link → LAN
    assert send(network, "laptop", "192.0.2.25").action == "accept"  # LAN → LAN

    inward = FirewallRule(action="drop", proto="tcp", dport=(25, 25), direction="in")
    network = home_isp(isp=(), internet=(inward,))
    assert send(network, "laptop", MX).action == "drop"  # link → LAN at internet
    assert send(network, "mx-qq", "100.64.10.20").action == "accept"
    assert send(network, "ns", MX).action == "accept"  # through: LAN → LAN
    assert send(network, OUTSIDE, MX).action == "accept"  # the outside LAN is a LAN


def test_direction_any_matches_transit() -> None:
    rule = FirewallRule(action="drop", proto="tcp")
    assert send(home_isp(isp=(rule,)), "laptop", "192.0.2.25").action == "drop"


def test_first_match_wins() -> None:
    allow = FirewallRule(action="accept", src=IPv4Network("100.64.10.20/32"))
    block = FirewallRule(action="drop", proto="tcp", dport=(25, 25))
    assert send(home_isp(isp=(allow, block)), "laptop", MX).action == "accept"
    verdict = send(home_isp(isp=(block, allow)), "laptop", MX)
    assert verdict.action == "drop"
    assert verdict.rule_index == 0
    # A later match is reported with its own index.
    other = FirewallRule(action="drop", proto="udp")
    verdict = send(home_isp(isp=(other, block)), "laptop", MX)
    assert verdict.rule_index == 1
    assert "by rule 2" in verdict.explain()


def test_an_accept_at_one_router_does_not_bind_the_next() -> None:
    allow = FirewallRule(action="accept")
    block = FirewallRule(action="reject", proto="tcp", dport=(25, 25), note="no")
    verdict = send(home_isp(isp=(allow,), internet=(block,)), "laptop", MX)
    assert verdict.action == "reject"
    assert verdict.router == "internet"
    assert verdict.path == ("laptop", "isp", "internet")


def test_port_ranges_and_protocols() -> None:
    rule = FirewallRule(action="drop", dport=(25, 587))
    net = home_isp(isp=(rule,))
    assert send(net, "laptop", MX, 25).action == "drop"
    assert send(net, "laptop", MX, 587).action == "drop"
    assert send(net, "laptop", MX, 53, "udp").action == "drop"
    assert send(net, "laptop", MX, 588).action == "accept"
    assert send(net, "laptop", MX, 24).action == "accept"
    assert send(net, "laptop", MX, None, "icmp").action == "accept"  # no ports in icmp

    net = home_isp(isp=(FirewallRule(action="drop", proto="icmp"),))
    assert send(net, "laptop", MX, None, "icmp").action == "drop"
    assert send(net, "laptop", MX, 25).action == "accept"


def test_destination_match() -> None:
    rule = FirewallRule(action="drop", dst=IPv4Network("198.51.100.0/24"))
    net = home_isp(isp=(rule,))
    assert send(net, "laptop", "198.51.100.53", 53, "udp").action == "drop"
    assert send(net, "laptop", MX).action == "accept"


def test_rule_matches_directly() -> None:
    packet = Packet(IPv4Address("100.64.10.20"), IPv4Address(MX), "tcp", 25)
    assert rule_matches(PORT_25, packet, "out")
    assert rule_matches(PORT_25, packet, "through")
    assert not rule_matches(FirewallRule(action="drop", direction="out"), packet, "through")
    assert not rule_matches(FirewallRule(action="drop", direction="in"), packet, "out")
    assert not rule_matches(PORT_25, Packet(packet.src, packet.dst, "udp", 25), "out")
    assert not rule_matches(
        PORT_25, Packet(IPv4Address("192.0.2.25"), packet.dst, "tcp", 25), "out"
    )


# -- unreachable ------------------------------------------------------------------------


def test_an_address_outside_the_lab_is_unreachable() -> None:
    verdict = send(home_isp(), "laptop", "8.8.8.8", 25)
    assert verdict.action == "unreachable"
    assert verdict.path == ("laptop",)
    assert verdict.router is None
    assert "not an address in the lab" in verdict.note


def test_a_router_without_route_stops_the_packet() -> None:
    network = build_network(
        Topology(
            name="split",
            nodes=(
                router("r1"),
                router("r2"),
                host("a", "10.0.0.2/24", "r1"),
                host("b", "10.0.1.2/24", "r2"),
                host("c", "10.0.2.2/24"),
                host("d", "10.0.2.3/24"),
            ),
        )
    )
    verdict = send(network, "a", "10.0.1.2")
    assert verdict.action == "unreachable"
    assert verdict.path == ("a", "r1")
    assert verdict.router == "r1"
    assert verdict.note == "r1 has no route to 10.0.1.2"
    verdict = send(network, "c", "10.0.0.2")
    assert verdict.path == ("c",)
    assert "no gateway" in verdict.note
    assert send(network, "c", "10.0.2.3").action == "accept"


def test_a_drop_before_a_missing_route_is_a_drop() -> None:
    # isp drops before internet would find that it has no route.
    network = home_isp(isp=(FirewallRule(action="drop"),))
    verdict = send(network, "laptop", "203.0.113.99")
    assert verdict.action == "unreachable"  # not in the lab: nothing is sent
    verdict = send(network, "laptop", MX)
    assert verdict.action == "drop"


def test_unknown_source_node_is_a_network_error() -> None:
    with pytest.raises(NetworkError):
        evaluate(home_isp(), "nobody", Packet(IPv4Address("1.2.3.4"), IPv4Address(MX), "tcp", 25))


# -- shapes -------------------------------------------------------------------------


def test_to_json_has_the_trace_keys() -> None:
    data = send(home_isp(), "laptop", MX, 25).to_json()
    assert data == {
        "verdict": "drop",
        "src": "100.64.10.20",
        "dst": MX,
        "proto": "tcp",
        "port": 25,
        "path": ["laptop", "isp"],
        "router": "isp",
        "rule": 0,
        "rule_text": "drop tcp dport 25 from 100.64.0.0/10",
        "reject_with": None,
        "note": "residential customers may not send on port 25",
        "explanation": data["explanation"],
    }
    assert data["explanation"] == send(home_isp(), "laptop", MX, 25).explain()


def test_describe_rule() -> None:
    assert describe_rule(FirewallRule(action="accept")) == "accept everything"
    assert (
        describe_rule(
            FirewallRule(
                action="reject",
                proto="udp",
                dport=(6660, 6669),
                dst=IPv4Network("192.0.2.0/24"),
                direction="in",
                reject_with="icmp-admin-prohibited",
            )
        )
        == "reject udp dports 6660-6669 to 192.0.2.0/24 coming in with icmp-admin-prohibited"
    )


def test_accept_explanations() -> None:
    net = home_isp()
    assert send(net, "laptop", MX, 587).explain().endswith("reached mx-qq via isp and internet")
    assert send(net, "laptop", "192.0.2.25", 587).explain().endswith("reached smtp-isp via isp")
    assert "stayed on laptop" in send(net, "laptop", "100.64.10.20").explain()


def test_packets_are_validated() -> None:
    with pytest.raises(ValueError, match="protocol"):
        Packet(IPv4Address("1.2.3.4"), IPv4Address(MX), "sctp", 25)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="port"):
        Packet(IPv4Address("1.2.3.4"), IPv4Address(MX), "tcp", 70000)
    assert str(Packet(IPv4Address("1.2.3.4"), IPv4Address(MX), "icmp")) == "icmp 1.2.3.4 → " + MX


# -- properties -------------------------------------------------------------------


NETS = [IPv4Network(f"10.{k}.0.0/24") for k in range(4)] + [IPv4Network("10.0.0.0/8")]

rules = st.builds(
    FirewallRule,
    action=st.sampled_from(["accept", "drop", "reject"]),
    proto=st.sampled_from(["tcp", "udp", "icmp", "any"]),
    src=st.none() | st.sampled_from(NETS),
    dst=st.none() | st.sampled_from(NETS),
    dport=st.none()
    | st.tuples(st.integers(20, 30), st.integers(0, 5)).map(lambda t: (t[0], t[0] + t[1])),
    direction=st.sampled_from(["in", "out", "any"]),
    reject_with=st.sampled_from(["tcp-reset", "icmp-port-unreachable", "icmp-admin-prohibited"]),
)


@st.composite
def networks(draw: st.DrawFn, with_rules: bool = True) -> LabNetwork:
    routers = [f"r{i}" for i in range(draw(st.integers(1, 5)))]
    pairs = list(itertools.combinations(routers, 2))
    links = draw(st.lists(st.sampled_from(pairs), unique=True)) if pairs else []
    gateways = draw(st.lists(st.sampled_from([None, *routers]), min_size=4, max_size=4))
    nodes: list[Node] = [
        router(r, *(draw(st.lists(rules, max_size=4)) if with_rules else [])) for r in routers
    ]
    for i in range(draw(st.integers(1, 8))):
        k = draw(st.integers(0, 3))
        nodes.append(host(f"h{i}", f"10.{k}.0.{i + 10}/24", gateways[k]))
    return build_network(Topology(name="random", nodes=tuple(nodes), links=tuple(links)))


def source_address(network: LabNetwork, node: str) -> IPv4Address:
    """The node's address; a router on no segment has none, so borrow one."""
    ifaces = network.interfaces(node)
    return ifaces[0].address.ip if ifaces else IPv4Address("10.1.0.99")


packets_to = st.builds(
    lambda dst, proto, port: (dst, proto, None if proto == "icmp" else port),
    st.ip_addresses(v=4),
    st.sampled_from(["tcp", "udp", "icmp"]),
    st.integers(0, 65535),
)


@settings(max_examples=80, deadline=None)
@given(networks(with_rules=False), st.data())
def test_without_rules_every_routable_packet_is_accepted(
    network: LabNetwork, data: st.DataObject
) -> None:
    addresses = [i.address.ip for n in network.nodes() for i in network.interfaces(n)]
    src = data.draw(st.sampled_from(network.nodes()))
    for dst in addresses:
        verdict = evaluate(network, src, Packet(source_address(network, src), dst, "tcp", 25))
        route = network.route(src, dst)
        assert verdict.action == ("accept" if route is not None else "unreachable")
        if route is not None:
            assert verdict.path == route


@settings(max_examples=150, deadline=None)
@given(networks(), st.data())
def test_evaluate_never_raises_and_is_consistent(network: LabNetwork, data: st.DataObject) -> None:
    src = data.draw(st.sampled_from(network.nodes()))
    in_lab = [i.address.ip for n in network.nodes() for i in network.interfaces(n)]
    dst, proto, port = data.draw(st.sampled_from(in_lab).map(lambda a: (a, "tcp", 25)) | packets_to)
    source = data.draw(st.sampled_from([source_address(network, src), IPv4Address("10.1.0.99")]))
    packet = Packet(source, dst, cast(PacketProto, proto), port)
    verdict = evaluate(network, src, packet)
    assert isinstance(verdict, Verdict)
    assert verdict.explain()
    assert verdict.to_json()["verdict"] == verdict.action
    walk, reached = network.walk(src, dst)
    assert walk[: len(verdict.path)] == verdict.path
    if verdict.action in ("drop", "reject"):
        assert verdict.router == verdict.path[-1]
        assert verdict.rule is not None
        assert verdict.rule_index is not None
        position = len(verdict.path) - 1
        assert 0 < position < len(walk) - 1
        direction = network.direction(verdict.router, walk[position - 1], walk[position + 1])
        rules_here = network.node(verdict.router).firewall
        assert rules_here[verdict.rule_index] == verdict.rule
        assert rule_matches(verdict.rule, packet, direction)
        # No earlier rule of that router matched.
        for earlier in rules_here[: verdict.rule_index]:
            assert not rule_matches(earlier, packet, direction)
    elif verdict.action == "accept":
        assert reached
        assert verdict.path == walk
    else:
        assert not reached
        assert verdict.path == walk
    if not network.in_lab(dst):
        assert verdict.action == "unreachable"
