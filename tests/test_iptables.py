"""Router firewalls compiled to iptables: exact argv, same semantics as the model."""

from __future__ import annotations

import itertools
import os
import secrets
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from topobuild import PORT_25, RESIDENTIAL, host, router

from sim.errors import NetworkError
from sim.net.iptables import (
    CHAIN,
    chain_name,
    cleanup_commands,
    compile_router,
    rule_comment,
)
from sim.topology.firewall import Packet, effective_reject_with, rule_matches
from sim.topology.graph import LabNetwork, build_network
from sim.topology.model import FirewallRule, Settings, Topology


def home_isp(*isp: FirewallRule) -> LabNetwork:
    """DESIGN.md's example; isp has eth0 (laptop's LAN), eth1 (smtp-isp's
    LAN) and eth2 (the link to internet)."""
    return build_network(
        Topology(
            name="home-isp",
            settings=Settings(resolver=IPv4Address("198.51.100.53")),
            nodes=(
                host("laptop", "100.64.10.20/24", "isp"),
                router("isp", *isp),
                router("internet"),
                host("ns", "198.51.100.53/24", "internet"),
                host("mx-qq", "203.0.113.25/24", "internet"),
                host("smtp-isp", "192.0.2.25/24", "isp"),
            ),
            links=(("isp", "internet"),),
        )
    )


def comment(tag: str) -> list[str]:
    return ["-m", "comment", "--comment", f"maillab:home-isp:{tag}"]


HEAD = [
    ["-N", "MAILLAB-FWD"],
    ["-A", "FORWARD", *comment("jump"), "-j", "MAILLAB-FWD"],
    [
        "-A",
        "MAILLAB-FWD",
        *["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"],
        *comment("established"),
        "-j",
        "ACCEPT",
    ],
]


def rules_of(argvs: list[list[str]]) -> list[list[str]]:
    assert argvs[:3] == HEAD
    return argvs[3:]


# -- exact argv ---------------------------------------------------------------------


def test_the_design_rule() -> None:
    assert compile_router(home_isp(PORT_25), "isp") == [
        *HEAD,
        [
            "-A", "MAILLAB-FWD", "-s", "100.64.0.0/10", "-p", "tcp", "-m", "tcp",
            "--dport", "25", *comment("rule1"), "-j", "DROP",
        ],
    ]  # fmt: skip


def test_chain_name() -> None:
    assert chain_name() == CHAIN == "MAILLAB-FWD"


def test_direction_becomes_interface_pairs() -> None:
    out = FirewallRule(action="drop", proto="tcp", dport=(25, 25), direction="out")
    inward = FirewallRule(action="accept", dst=IPv4Network("192.0.2.25/32"), direction="in")
    assert rules_of(compile_router(home_isp(out, inward), "isp")) == [
        ["-A", CHAIN, "-i", "eth0", "-o", "eth2", "-p", "tcp", "-m", "tcp", "--dport", "25",
         *comment("rule1"), "-j", "DROP"],
        ["-A", CHAIN, "-i", "eth1", "-o", "eth2", "-p", "tcp", "-m", "tcp", "--dport", "25",
         *comment("rule1"), "-j", "DROP"],
        ["-A", CHAIN, "-d", "192.0.2.25/32", "-i", "eth2", "-o", "eth0",
         *comment("rule2"), "-j", "ACCEPT"],
        ["-A", CHAIN, "-d", "192.0.2.25/32", "-i", "eth2", "-o", "eth1",
         *comment("rule2"), "-j", "ACCEPT"],
    ]  # fmt: skip


def test_interface_names_can_be_mapped() -> None:
    out = FirewallRule(action="drop", direction="out")
    argvs = rules_of(compile_router(home_isp(out), "isp", ifname=lambda i: f"{i.node}-{i.name}"))
    assert [(a[a.index("-i") + 1], a[a.index("-o") + 1]) for a in argvs] == [
        ("isp-eth0", "isp-eth2"),
        ("isp-eth1", "isp-eth2"),
    ]


def test_any_protocol_with_a_port_is_tcp_and_udp() -> None:
    rule = FirewallRule(action="drop", dport=(25, 587))
    assert rules_of(compile_router(home_isp(rule), "isp")) == [
        ["-A", CHAIN, "-p", "tcp", "-m", "tcp", "--dport", "25:587", *comment("rule1"),
         "-j", "DROP"],
        ["-A", CHAIN, "-p", "udp", "-m", "udp", "--dport", "25:587", *comment("rule1"),
         "-j", "DROP"],
    ]  # fmt: skip


def test_any_protocol_reject_with_tcp_reset_is_split() -> None:
    rule = FirewallRule(action="reject", src=RESIDENTIAL)
    assert rules_of(compile_router(home_isp(rule), "isp")) == [
        ["-A", CHAIN, "-s", "100.64.0.0/10", "-p", "tcp", *comment("rule1"),
         "-j", "REJECT", "--reject-with", "tcp-reset"],
        ["-A", CHAIN, "-s", "100.64.0.0/10", *comment("rule1"),
         "-j", "REJECT", "--reject-with", "icmp-port-unreachable"],
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("proto", "reject_with", "expected"),
    [
        ("udp", "tcp-reset", ["-p", "udp", "-m", "udp", "--dport", "53"]),
        ("tcp", "icmp-admin-prohibited", ["-p", "tcp", "-m", "tcp", "--dport", "53"]),
        ("udp", "icmp-port-unreachable", ["-p", "udp", "-m", "udp", "--dport", "53"]),
    ],
)
def test_reject_answers(proto: str, reject_with: str, expected: list[str]) -> None:
    rule = FirewallRule(action="reject", proto=proto, dport=(53, 53), reject_with=reject_with)  # type: ignore[arg-type]
    answer = "icmp-port-unreachable" if reject_with == "tcp-reset" else reject_with
    assert rules_of(compile_router(home_isp(rule), "isp")) == [
        ["-A", CHAIN, *expected, *comment("rule1"), "-j", "REJECT", "--reject-with", answer]
    ]


def test_any_protocol_reject_without_tcp_reset_is_one_rule() -> None:
    rule = FirewallRule(action="reject", reject_with="icmp-admin-prohibited")
    assert rules_of(compile_router(home_isp(rule), "isp")) == [
        ["-A", CHAIN, *comment("rule1"), "-j", "REJECT", "--reject-with", "icmp-admin-prohibited"]
    ]


def test_icmp_rules() -> None:
    ping = FirewallRule(action="drop", proto="icmp")
    never = FirewallRule(action="drop", proto="icmp", dport=(25, 25))
    later = FirewallRule(action="accept")
    assert rules_of(compile_router(home_isp(ping, never, later), "isp")) == [
        ["-A", CHAIN, "-p", "icmp", *comment("rule1"), "-j", "DROP"],
        # rule 2 can match nothing and emits nothing; numbering is kept.
        ["-A", CHAIN, *comment("rule3"), "-j", "ACCEPT"],
    ]


def test_routers_without_rules_need_nothing() -> None:
    assert compile_router(home_isp(PORT_25), "internet") == []


def test_hosts_have_no_firewall() -> None:
    with pytest.raises(NetworkError, match="not a router"):
        compile_router(home_isp(), "laptop")


def test_every_rule_carries_a_maillab_comment() -> None:
    rules = (
        PORT_25,
        FirewallRule(action="reject", direction="in"),
        FirewallRule(action="drop", dport=(1, 1024), direction="out"),
    )
    for argv in compile_router(home_isp(*rules), "isp"):
        if argv[0] == "-A":
            value = argv[argv.index("--comment") + 1]
            assert value.startswith("maillab:home-isp:")


def test_comments_are_safe_for_any_topology_name() -> None:
    assert rule_comment('a "b" c', "rule1") == "maillab:a__b__c:rule1"
    assert len(rule_comment("x" * 1000, "rule1")) < 256


def test_cleanup_removes_only_maillab_rules() -> None:
    listing = """\
-P INPUT ACCEPT
-P FORWARD ACCEPT
-P OUTPUT ACCEPT
-N MAILLAB-FWD
-N OTHER
-A FORWARD -i eth9 -j OTHER
-A FORWARD -m comment --comment "maillab:home-isp:jump" -j MAILLAB-FWD
-A MAILLAB-FWD -m conntrack --ctstate RELATED,ESTABLISHED -m comment \
--comment "maillab:home-isp:established" -j ACCEPT
-A OTHER -m comment --comment "someone else" -j DROP
"""
    assert cleanup_commands(listing) == [
        ["-D", "FORWARD", "-m", "comment", "--comment", "maillab:home-isp:jump", "-j", CHAIN],
        ["-F", CHAIN],
        ["-X", CHAIN],
    ]
    assert cleanup_commands("-P FORWARD ACCEPT\n") == []


# -- the compiled rules mean what the model means ---------------------------------------


def _in_range(value: str, port: int) -> bool:
    low, _, high = value.partition(":")
    return int(low) <= port <= int(high or low)


def iptables_verdict(
    argvs: list[list[str]], packet: Packet, in_if: str, out_if: str
) -> tuple[str, str | None]:
    """A small interpreter of the argv subset compile_router emits, for the
    first packet of a connection (conntrack state NEW)."""
    for argv in argvs:
        if argv[:2] != ["-A", CHAIN] or "--ctstate" in argv:
            continue
        opts = dict(zip(argv[2::2], argv[3::2], strict=False))
        # "-m" repeats (tcp, comment): only the last survives in the dict,
        # which is fine, as it is not a match by itself.
        checks = [
            "-s" not in opts or packet.src in IPv4Network(opts["-s"]),
            "-d" not in opts or packet.dst in IPv4Network(opts["-d"]),
            "-i" not in opts or opts["-i"] == in_if,
            "-o" not in opts or opts["-o"] == out_if,
            "-p" not in opts or opts["-p"] == packet.proto,
            "--dport" not in opts
            or (packet.dport is not None and _in_range(opts["--dport"], packet.dport)),
        ]
        if all(checks):
            target = argv[argv.index("-j") + 1]
            reject = argv[argv.index("--reject-with") + 1] if "--reject-with" in argv else None
            return target, reject
    return "ACCEPT", None


def model_verdict(
    network: LabNetwork, router: str, packet: Packet, prev: str, nxt: str
) -> tuple[str, str | None]:
    direction = network.direction(router, prev, nxt)
    for rule in network.node(router).firewall:
        if rule_matches(rule, packet, direction):
            if rule.action == "reject":
                return "REJECT", effective_reject_with(rule, packet.proto)
            return rule.action.upper(), None
    return "ACCEPT", None


NETS = [IPv4Network(f"10.{k}.0.0/24") for k in range(3)] + [IPv4Network("10.0.0.0/8")]

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

packets = st.builds(
    lambda src, dst, proto, port: Packet(src, dst, proto, None if proto == "icmp" else port),
    st.sampled_from([IPv4Address(f"10.{k}.0.{k + 5}") for k in range(4)]),
    st.sampled_from([IPv4Address(f"10.{k}.0.{k + 7}") for k in range(4)]),
    st.sampled_from(["tcp", "udp", "icmp"]),
    st.integers(18, 37),
)


def forwarding_pairs(network: LabNetwork, router: str) -> Iterator[tuple[str, str]]:
    """Every (from, to) neighbour pair the router forwards between."""
    graph = network.graph
    for prev, nxt in itertools.permutations(sorted(graph.neighbors(router)), 2):
        if graph.edges[router, prev]["segment"] != graph.edges[router, nxt]["segment"]:
            yield prev, nxt


@settings(max_examples=150, deadline=None)
@given(
    st.lists(rules, min_size=1, max_size=6),
    st.lists(packets, min_size=1, max_size=6),
    st.integers(1, 2),
)
def test_compiled_rules_decide_like_the_model(
    firewall: list[FirewallRule], probes: list[Packet], lans: int
) -> None:
    # r has `lans` LANs and two links; every kind of forwarding happens at r.
    nodes = [
        router("r", *firewall),
        router("up"),
        router("side"),
        *[host(f"h{k}", f"10.{k}.0.2/24", "r") for k in range(lans)],
    ]
    network = build_network(
        Topology(name="prop", nodes=tuple(nodes), links=(("r", "up"), ("r", "side")))
    )
    argvs = compile_router(network, "r")
    names = {i.segment: i.name for i in network.interfaces("r")}
    graph = network.graph
    for prev, nxt in forwarding_pairs(network, "r"):
        in_if = names[graph.edges["r", prev]["segment"]]
        out_if = names[graph.edges["r", nxt]["segment"]]
        for packet in probes:
            assert iptables_verdict(argvs, packet, in_if, out_if) == model_verdict(
                network, "r", packet, prev, nxt
            ), (prev, nxt, packet)


# -- real iptables, in a namespace of our own -------------------------------------------


def _can_use_netns() -> bool:
    return (
        hasattr(os, "geteuid")
        and os.geteuid() == 0
        and shutil.which("iptables") is not None
        and shutil.which("ip") is not None
    )


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"maillab-test-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


def in_ns(ns: str, *argv: str) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", ns, *argv], check=False, capture_output=True, text=True
    )
    assert done.returncode == 0, f"{shlex.join(argv)}: {done.stderr.strip()}"
    return done.stdout


@pytest.mark.mininet
@pytest.mark.skipif(not _can_use_netns(), reason="needs root, iptables and ip netns")
def test_real_iptables_accepts_and_lists_the_rules(netns: str) -> None:
    network = home_isp(
        PORT_25,
        FirewallRule(action="reject", proto="tcp", dport=(465, 587), direction="out"),
        FirewallRule(action="reject", src=RESIDENTIAL, dst=IPv4Network("192.0.2.25/32")),
        FirewallRule(action="reject", proto="udp", reject_with="icmp-admin-prohibited"),
        FirewallRule(action="drop", dport=(53, 53), direction="in"),
        FirewallRule(action="accept", proto="icmp"),
    )
    argvs = compile_router(network, "isp")
    for argv in argvs:
        in_ns(netns, "iptables", "-w", *argv)
    listing = in_ns(netns, "iptables", "-S")
    listed = [shlex.split(line) for line in listing.splitlines() if not line.startswith("-P")]
    # Read back, the rules are exactly what was applied, in order.
    assert listed == argvs

    for argv in cleanup_commands(listing):
        in_ns(netns, "iptables", "-w", *argv)
    after = in_ns(netns, "iptables", "-S").splitlines()
    assert after == ["-P INPUT ACCEPT", "-P FORWARD ACCEPT", "-P OUTPUT ACCEPT"]
