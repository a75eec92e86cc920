"""The topology as a network: segments, addressing, routing, direction."""

from __future__ import annotations

import itertools
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.errors import NetworkError, TopologyError
from sim.topology.graph import (
    ADDRESS_POOL,
    OUTSIDE,
    AddressingError,
    LabNetwork,
    Route,
    build_network,
)
from sim.topology.model import FirewallRule, Node, Settings, Topology

# -- building topologies in Python ---------------------------------------------


def host(name: str, ip: str, gateway: str | None = None) -> Node:
    return Node(name=name, kind="host", ip=IPv4Interface(ip), gateway=gateway)


def router(name: str, *rules: FirewallRule) -> Node:
    return Node(name=name, kind="router", firewall=rules)


def topology(
    *nodes: Node,
    links: tuple[tuple[str, str], ...] = (),
    name: str = "test",
    zones: tuple[tuple[str, str], ...] = (),
    **settings: object,
) -> Topology:
    return Topology(
        name=name,
        nodes=nodes,
        links=links,
        zones=zones,
        settings=Settings(**settings),  # type: ignore[arg-type]
    )


def home_isp() -> Topology:
    """DESIGN.md's example topology."""
    return topology(
        host("laptop", "100.64.10.20/24", "isp"),
        router(
            "isp",
            FirewallRule(
                action="drop",
                proto="tcp",
                dport=(25, 25),
                src=IPv4Network("100.64.0.0/10"),
                note="residential customers may not send on port 25",
            ),
        ),
        router("internet"),
        host("ns", "198.51.100.53/24", "internet"),
        host("mx-qq", "203.0.113.25/24", "internet"),
        host("smtp-isp", "192.0.2.25/24", "isp"),
        links=(("isp", "internet"),),
        name="home-isp",
        resolver=IPv4Address("198.51.100.53"),
    )


@pytest.fixture
def net() -> LabNetwork:
    return build_network(home_isp())


def addr(text: str) -> IPv4Address:
    return IPv4Address(text)


def iface_map(network: LabNetwork, node: str) -> dict[str, str]:
    return {i.name: str(i.address) for i in network.interfaces(node)}


# -- addressing ----------------------------------------------------------------


def test_hosts_keep_their_address_on_eth0(net: LabNetwork) -> None:
    assert iface_map(net, "laptop") == {"eth0": "100.64.10.20/24"}
    assert iface_map(net, "mx-qq") == {"eth0": "203.0.113.25/24"}
    assert net.address_of("laptop") == addr("100.64.10.20")


def test_routers_get_the_first_free_address_of_each_lan_then_link_addresses(
    net: LabNetwork,
) -> None:
    # LANs in order of their first host (laptop, then smtp-isp), then links.
    assert iface_map(net, "isp") == {
        "eth0": "100.64.10.1/24",
        "eth1": "192.0.2.1/24",
        "eth2": "198.18.0.1/30",
    }
    assert iface_map(net, "internet") == {
        "eth0": "198.51.100.1/24",
        "eth1": "203.0.113.1/24",
        "eth2": "198.18.0.2/30",
        "eth3": str(net.interfaces("internet")[3].address),
    }
    assert net.address_of("isp") == addr("100.64.10.1")


def test_segments_of_the_example(net: LabNetwork) -> None:
    lans = [s for s in net.segments if s.kind == "lan" and not s.synthetic]
    assert {(s.router, str(s.network), s.members) for s in lans} == {
        ("isp", "100.64.10.0/24", ("isp", "laptop")),
        ("isp", "192.0.2.0/24", ("isp", "smtp-isp")),
        ("internet", "198.51.100.0/24", ("internet", "ns")),
        ("internet", "203.0.113.0/24", ("internet", "mx-qq")),
    }
    links = [s for s in net.segments if s.kind == "link"]
    assert [(str(s.network), s.members) for s in links] == [("198.18.0.0/30", ("isp", "internet"))]
    for seg in net.segments:
        for member in seg.members:
            assert any(i.segment == seg.id for i in net.interfaces(member))


def test_interface_addresses_lie_in_their_segment(net: LabNetwork) -> None:
    for name in net.nodes():
        for iface in net.interfaces(name):
            assert iface.address.network == net.segment(iface.segment).network
            assert iface.node == name


def test_hosts_with_the_same_gateway_and_network_share_a_lan() -> None:
    network = build_network(
        topology(
            router("r"),
            host("a", "10.0.0.10/24", "r"),
            host("b", "10.0.0.11/24", "r"),
            host("c", "10.0.1.10/24", "r"),
        )
    )
    a, b, c = (network.interfaces(n)[0].segment for n in "abc")
    assert a == b != c
    assert network.segment(a).members == ("r", "a", "b")
    # One router interface per LAN, not per host.
    assert [str(i.address) for i in network.interfaces("r")][:2] == ["10.0.0.1/24", "10.0.1.1/24"]
    assert network.graph.has_edge("a", "b")
    assert network.graph.edges["a", "b"]["segment"] == a


def test_router_address_skips_addresses_hosts_use() -> None:
    network = build_network(
        topology(
            router("r"),
            host("a", "10.0.0.1/24", "r"),
            host("b", "10.0.0.2/24", "r"),
            host("lonely", "10.9.0.3/24"),
        )
    )
    assert str(network.interfaces("r")[0].address) == "10.0.0.3/24"


def test_gatewayless_hosts_form_a_lan_without_router_and_cannot_leave_it() -> None:
    network = build_network(
        topology(
            router("r"),
            host("a", "10.0.0.10/24"),
            host("b", "10.0.0.11/24"),
            host("c", "10.0.1.10/24", "r"),
        )
    )
    seg = network.segment(network.interfaces("a")[0].segment)
    assert seg.router is None
    assert seg.members == ("a", "b")
    assert network.route("a", addr("10.0.0.11")) == ("a", "b")
    assert network.route("a", addr("10.0.1.10")) is None
    assert network.walk("a", addr("10.0.1.10")) == (("a",), False)
    # ...and nobody routes to them.
    assert network.route("c", addr("10.0.0.10")) is None
    assert network.walk("c", addr("10.0.0.10")) == (("c", "r"), False)
    assert network.routes("a") == []


def test_link_allocation_skips_what_the_topology_uses() -> None:
    network = build_network(
        topology(
            router("r1"),
            router(
                "r2",
                # A broad rule cannot be avoided and must not exhaust the pool.
                FirewallRule(action="drop", src=IPv4Network("0.0.0.0/0")),
                FirewallRule(action="drop", dst=IPv4Network("198.18.0.8/29")),
            ),
            router("r3"),
            host("h", "198.18.0.2/30", "r1"),
            links=(("r1", "r2"), ("r2", "r3")),
            zones=(("lab.example", "www A 198.18.0.17\n"),),
        )
    )
    links = [s.network for s in network.segments if s.kind == "link"]
    # 198.18.0.0/30 holds h, .8/29 is in a rule, .16/30 holds a zone's A record.
    assert [str(n) for n in links] == ["198.18.0.4/30", "198.18.0.20/30"]
    outside = network.segment(network.interfaces(OUTSIDE)[0].segment).network
    for used in [IPv4Network("198.18.0.0/30"), IPv4Network("198.18.0.8/29"), *links]:
        assert not outside.overlaps(used)
    assert outside.subnet_of(ADDRESS_POOL)


def test_link_addresses_are_deterministic_and_in_link_order() -> None:
    topo = topology(
        router("a"),
        router("b"),
        router("c"),
        links=(("b", "c"), ("a", "b")),
    )
    first, second = build_network(topo), build_network(topo)
    assert [s.network for s in first.segments] == [s.network for s in second.segments]
    assert iface_map(first, "b") == {"eth0": "198.18.0.1/30", "eth1": "198.18.0.6/30"}
    assert iface_map(first, "c")["eth0"] == "198.18.0.2/30"
    assert iface_map(first, "a")["eth0"] == "198.18.0.5/30"


def test_a_host_network_covering_the_pool_is_an_error() -> None:
    with pytest.raises(AddressingError, match="no room"):
        build_network(topology(router("r"), host("h", "198.0.0.5/8", "r")))


def test_a_full_network_leaves_no_address_for_the_gateway() -> None:
    with pytest.raises(AddressingError) as err:
        build_network(topology(router("r"), host("h", "10.0.0.5/32", "r")))
    assert err.value.keys == ["nodes.h.ip"]


# -- outside ------------------------------------------------------------------


def test_outside_attaches_to_the_resolvers_gateway(net: LabNetwork) -> None:
    assert net.outside == OUTSIDE
    assert net.is_synthetic(OUTSIDE)
    assert not net.is_synthetic("laptop")
    assert OUTSIDE in net.graph
    assert net.graph.nodes[OUTSIDE]["synthetic"] is True
    assert set(net.graph.neighbors(OUTSIDE)) == {"internet"}
    assert net.address_of(OUTSIDE) in ADDRESS_POOL
    assert net.owner(net.address_of(OUTSIDE)) == OUTSIDE
    assert net.route(OUTSIDE, addr("203.0.113.25")) == (OUTSIDE, "internet", "mx-qq")
    seg = net.segment(net.interfaces(OUTSIDE)[0].segment)
    assert seg.synthetic
    assert seg.network.prefixlen == 24
    # The outside LAN's router interface comes after the topology's own.
    assert net.interfaces("internet")[-1].segment == seg.id


def test_outside_follows_settings_outside() -> None:
    topo = home_isp()
    topo = Topology(
        name=topo.name,
        nodes=topo.nodes,
        links=topo.links,
        settings=Settings(resolver=topo.settings.resolver, outside="isp"),
    )
    network = build_network(topo)
    assert set(network.graph.neighbors(OUTSIDE)) == {"isp"}
    assert network.routes(OUTSIDE) == [
        Route(IPv4Network("0.0.0.0/0"), network.interfaces("isp")[-1].address.ip, "eth0")
    ]


def test_outside_falls_back_to_the_first_router() -> None:
    network = build_network(topology(host("h", "10.0.0.2/24", "r2"), router("r2"), router("r1")))
    assert set(network.graph.neighbors(OUTSIDE)) == {"r2"}


def test_outside_without_routers_is_alone() -> None:
    network = build_network(topology(host("a", "10.0.0.2/24"), host("b", "10.0.0.3/24")))
    assert list(network.graph.neighbors(OUTSIDE)) == []
    assert network.route(OUTSIDE, addr("10.0.0.2")) is None


def test_outside_is_a_reserved_name() -> None:
    with pytest.raises(AddressingError, match="reserved") as err:
        build_network(topology(router("r"), host(OUTSIDE, "10.0.0.2/24", "r")))
    assert err.value.keys == ["nodes.outside"]


# -- lookups ---------------------------------------------------------------------


def test_owner_and_in_lab(net: LabNetwork) -> None:
    assert net.owner(addr("203.0.113.25")) == "mx-qq"
    assert net.owner("198.18.0.2") == "internet"
    assert net.owner(addr("100.64.10.1")) == "isp"
    assert net.owner(addr("203.0.113.26")) is None
    assert net.in_lab("192.0.2.25")
    assert not net.in_lab(addr("8.8.8.8"))
    every = [i.address.ip for n in net.nodes() for i in net.interfaces(n)]
    assert len(every) == len(set(every))
    assert all(net.in_lab(a) for a in every)


def test_unknown_nodes_are_a_network_error(net: LabNetwork) -> None:
    with pytest.raises(NetworkError, match="nobody"):
        net.interfaces("nobody")
    with pytest.raises(NetworkError):
        net.route("nobody", addr("203.0.113.25"))


def test_the_network_is_frozen(net: LabNetwork) -> None:
    with pytest.raises(nx.NetworkXError):
        net.graph.add_node("intruder")
    with pytest.raises(AttributeError):
        net.topology = home_isp()  # type: ignore[misc]
    assert isinstance(net.segments, tuple)


# -- routing ----------------------------------------------------------------------


def test_laptop_to_mx_goes_through_both_routers(net: LabNetwork) -> None:
    assert net.route("laptop", addr("203.0.113.25")) == ("laptop", "isp", "internet", "mx-qq")
    assert net.route("mx-qq", addr("100.64.10.20")) == ("mx-qq", "internet", "isp", "laptop")


def test_short_routes(net: LabNetwork) -> None:
    assert net.route("laptop", addr("100.64.10.20")) == ("laptop",)
    assert net.route("laptop", addr("192.0.2.25")) == ("laptop", "isp", "smtp-isp")
    assert net.route("ns", addr("203.0.113.25")) == ("ns", "internet", "mx-qq")
    # A router's address on another segment is delivered by that router.
    assert net.route("laptop", addr("198.18.0.2")) == ("laptop", "isp", "internet")
    assert net.route("laptop", addr("198.18.0.1")) == ("laptop", "isp")
    assert net.route("isp", addr("203.0.113.25")) == ("isp", "internet", "mx-qq")


def test_no_route_outside_the_lab(net: LabNetwork) -> None:
    assert net.route("laptop", addr("8.8.8.8")) is None
    assert net.walk("laptop", addr("8.8.8.8")) == (("laptop",), False)


def test_routing_tables_of_the_example(net: LabNetwork) -> None:
    assert net.routes("laptop") == [Route(IPv4Network("0.0.0.0/0"), addr("100.64.10.1"), "eth0")]
    isp = {str(r.network): (str(r.via), r.interface) for r in net.routes("isp")}
    outside_net = str(net.segment(net.interfaces(OUTSIDE)[0].segment).network)
    assert isp == {
        "198.51.100.0/24": ("198.18.0.2", "eth2"),
        "203.0.113.0/24": ("198.18.0.2", "eth2"),
        outside_net: ("198.18.0.2", "eth2"),
    }
    internet = {str(r.network): (str(r.via), r.interface) for r in net.routes("internet")}
    assert internet == {
        "100.64.10.0/24": ("198.18.0.1", "eth2"),
        "192.0.2.0/24": ("198.18.0.1", "eth2"),
    }
    assert str(net.routes("laptop")[0]) == "default via 100.64.10.1 dev eth0"


def test_connected_routes_on_request(net: LabNetwork) -> None:
    connected = [r for r in net.routes("isp", connected=True) if r.via is None]
    assert [(str(r.network), r.interface) for r in connected] == [
        ("100.64.10.0/24", "eth0"),
        ("192.0.2.0/24", "eth1"),
        ("198.18.0.0/30", "eth2"),
    ]


def line(n: int, *, prefix: str = "r") -> tuple[list[Node], tuple[tuple[str, str], ...]]:
    routers = [router(f"{prefix}{i}") for i in range(n)]
    links = tuple((f"{prefix}{i}", f"{prefix}{i + 1}") for i in range(n - 1))
    return routers, links


def test_shortest_path_wins_over_a_longer_one() -> None:
    # a - b - c - d and a shortcut a - d.
    network = build_network(
        topology(
            router("a"),
            router("b"),
            router("c"),
            router("d"),
            host("src", "10.0.0.2/24", "a"),
            host("dst", "10.0.3.2/24", "d"),
            links=(("a", "b"), ("b", "c"), ("c", "d"), ("a", "d")),
        )
    )
    assert network.route("src", addr("10.0.3.2")) == ("src", "a", "d", "dst")


def test_ties_go_to_the_smallest_next_hop_name() -> None:
    # Two equal paths from s to t: via m1 and via m2.
    nodes = [router("s"), router("m2"), router("m1"), router("t")]
    topo = topology(
        *nodes,
        host("a", "10.0.0.2/24", "s"),
        host("z", "10.0.9.2/24", "t"),
        links=(("s", "m2"), ("m2", "t"), ("s", "m1"), ("m1", "t")),
    )
    network = build_network(topo)
    assert network.route("a", addr("10.0.9.2")) == ("a", "s", "m1", "t", "z")
    assert network.route("z", addr("10.0.0.2")) == ("z", "t", "m1", "s", "a")


def test_disconnected_routers_have_no_route() -> None:
    network = build_network(
        topology(
            router("r1"),
            router("r2"),
            host("a", "10.0.0.2/24", "r1"),
            host("b", "10.0.1.2/24", "r2"),
        )
    )
    assert network.route("a", addr("10.0.1.2")) is None
    assert network.walk("a", addr("10.0.1.2")) == (("a", "r1"), False)


# -- direction ------------------------------------------------------------------


def test_direction_seen_from_a_router(net: LabNetwork) -> None:
    assert net.direction("isp", "laptop", "internet") == "out"
    assert net.direction("isp", "internet", "laptop") == "in"
    assert net.direction("isp", "laptop", "smtp-isp") == "through"
    assert net.direction("internet", "ns", OUTSIDE) == "through"
    assert net.direction("internet", OUTSIDE, "isp") == "out"


def test_link_to_link_is_through() -> None:
    routers, links = line(3)
    network = build_network(topology(*routers, links=links))
    assert network.direction("r1", "r0", "r2") == "through"


def test_direction_needs_neighbours(net: LabNetwork) -> None:
    with pytest.raises(NetworkError, match="neighbours"):
        net.direction("isp", "mx-qq", "laptop")


# -- bad topologies --------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "links", "keys"),
    [
        ([host("h", "10.0.0.2/24", "nowhere")], (), ["nodes.h.gateway"]),
        ([host("g", "10.0.1.2/24"), host("h", "10.0.0.2/24", "g")], (), ["nodes.h.gateway"]),
        (
            [router("r"), host("a", "10.0.0.2/24", "r"), host("b", "10.0.0.2/24", "r")],
            (),
            ["nodes.b.ip"],
        ),
        ([router("r"), host("h", "10.0.0.2/24")], (("r", "h"),), ["links[0]"]),
        ([router("r")], (("r", "r"),), ["links[0]"]),
        ([router("r"), router("s")], (("r", "s"), ("s", "r")), ["links[1]"]),
        ([Node(name="h", kind="host")], (), ["nodes.h.ip"]),
        ([router("r"), router("r")], (), ["nodes.r"]),
        (
            [
                router("r"),
                router("s"),
                host("a", "10.0.0.2/24", "r"),
                host("b", "10.0.0.3/16", "s"),
            ],
            (),
            ["nodes.b.ip"],
        ),
    ],
)
def test_bad_topologies_raise_with_the_key(
    nodes: list[Node], links: tuple[tuple[str, str], ...], keys: list[str]
) -> None:
    with pytest.raises(TopologyError) as err:
        build_network(topology(*nodes, links=links))
    assert isinstance(err.value, AddressingError)
    assert err.value.keys == keys
    assert len(err.value.problems) == len(keys)
    assert keys[0] in str(err.value)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from([8, 16, 24, 28]), st.integers(0, 2)),
        min_size=1,
        max_size=8,
    )
)
def test_overlapping_routed_lans_are_reported(lans: list[tuple[int, int, int]]) -> None:
    nodes: list[Node] = [router(f"r{g}") for g in range(3)]
    networks: dict[tuple[str, IPv4Network], str] = {}
    for i, (octet, prefix, gw) in enumerate(lans):
        ip = IPv4Interface(f"10.{octet}.{i}.{i + 10}/{prefix}")
        nodes.append(host(f"h{i}", str(ip), f"r{gw}"))
        networks.setdefault((f"r{gw}", ip.network), f"h{i}")
    # combinations() keeps topology order: b is the later LAN.
    clashing = {networks[b] for a, b in itertools.combinations(networks, 2) if a[1].overlaps(b[1])}
    if not clashing:
        build_network(topology(*nodes))
        return
    with pytest.raises(AddressingError) as err:
        build_network(topology(*nodes))
    # Every LAN that overlaps an earlier one is named, once.
    named = [key.split(".")[1] for key in err.value.keys]
    assert named == sorted(clashing, key=lambda h: int(h[1:]))


def test_settings_outside_must_be_a_router() -> None:
    with pytest.raises(AddressingError) as err:
        build_network(topology(router("r"), host("h", "10.0.0.2/24", "r"), outside="h"))
    assert err.value.keys == ["settings.outside"]


# -- scale ------------------------------------------------------------------------


def big_topology(n_routers: int = 40, hosts_per_router: int = 4) -> Topology:
    nodes: list[Node] = []
    links: list[tuple[str, str]] = []
    for r in range(n_routers):
        nodes.append(router(f"r{r}"))
        if r:
            links.append((f"r{(r - 1) // 2}", f"r{r}"))  # a binary tree
        if r >= 2 and r % 5 == 0:
            links.append((f"r{r - 2}", f"r{r}"))  # and some cycles
        for h in range(hosts_per_router):
            nodes.append(host(f"h{r}-{h}", f"10.{r}.{h}.10/24", f"r{r}"))
    return topology(*nodes, links=tuple(links), name="big")


def test_a_200_node_topology_builds() -> None:
    network = build_network(big_topology())
    assert len(network.nodes()) == 201
    assert nx.is_connected(network.graph)
    path = network.route("h39-3", addr("10.20.0.10"))
    assert path is not None
    assert path[0] == "h39-3"
    assert path[-1] == "h20-0"


# -- properties ----------------------------------------------------------------------


@st.composite
def random_topologies(draw: st.DrawFn) -> Topology:
    n_routers = draw(st.integers(1, 6))
    routers = [f"r{i}" for i in range(n_routers)]
    pairs = list(itertools.combinations(routers, 2))
    links = draw(st.lists(st.sampled_from(pairs), unique=True)) if pairs else []
    # Each network has one gateway (or none), so routed LANs never overlap.
    gateways = draw(st.lists(st.sampled_from([None, *routers]), min_size=4, max_size=4))
    nodes: list[Node] = [router(r) for r in routers]
    for i in range(draw(st.integers(1, 10))):
        k = draw(st.integers(0, 3))
        nodes.append(host(f"h{i}", f"10.{k}.0.{i + 10}/24", gateways[k]))
    return topology(*nodes, links=tuple(links))


@settings(max_examples=60, deadline=None)
@given(random_topologies())
def test_routes_are_hop_by_hop_consistent_and_shortest(topo: Topology) -> None:
    network = build_network(topo)
    graph = network.graph
    addresses = [i.address.ip for n in network.nodes() for i in network.interfaces(n)]
    for src in network.nodes():
        for dst in addresses:
            path, reached = network.walk(src, dst)
            assert path[0] == src
            if not reached:
                assert network.route(src, dst) is None
                continue
            assert path[-1] == network.owner(dst)
            assert len(set(path)) == len(path)
            # Consecutive nodes share a segment; only routers forward.
            for a, b in itertools.pairwise(path):
                assert graph.has_edge(a, b)
            for middle in path[1:-1]:
                assert network.node(middle).kind == "router"
            # Every router on the way would send it the same way (the
            # routing tables agree with the path).
            for k in range(1, len(path) - 1):
                assert network.route(path[k], dst) == path[k:]
            # Shortest through routers only. Routing is by destination
            # network: an address on a link is routed to the link, whose two
            # routers may be equally close, so it can take one hop more than
            # the shortest path to the router that owns it.
            allowed = {n for n in graph if network.node(n).kind == "router"} | {src, path[-1]}
            shortest = nx.shortest_path_length(graph.subgraph(allowed), src, path[-1])
            iface = network.interface_of(dst)
            assert iface is not None
            if network.segment(iface.segment).kind == "lan":
                assert len(path) - 1 == shortest
            else:
                assert shortest <= len(path) - 1 <= shortest + 1


@settings(max_examples=60, deadline=None)
@given(random_topologies())
def test_routing_tables_match_the_walk(topo: Topology) -> None:
    network = build_network(topo)
    for name in network.nodes():
        ifaces = {i.name: i for i in network.interfaces(name)}
        for r in network.routes(name):
            assert r.via is not None
            assert r.interface in ifaces
            assert r.via in ifaces[r.interface].address.network
            hop = network.owner(r.via)
            assert hop is not None
            if r.network.prefixlen == 0:
                continue
            # The first host address of the routed network is reached
            # through the route's next hop.
            target = next(
                i.address.ip
                for i in (iface for n in network.nodes() for iface in network.interfaces(n))
                if i.address.network == r.network
            )
            path = network.route(name, target)
            assert path is not None
            assert path[1] == hop
