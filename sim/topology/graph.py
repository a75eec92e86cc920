"""The topology as a network: segments, interfaces, addresses, routing.

:func:`build_network` turns a :class:`~sim.topology.model.Topology` (what an
instructor wrote) into a :class:`LabNetwork` (what both backends realise):

* **LANs.** Every host sits on a LAN identified by ``(gateway, network of the
  host's address)``: hosts with the same gateway and the same network share
  one LAN (a Linux bridge on mininet). Hosts without a gateway that share a
  network form a LAN with no router: they reach each other and nothing else.
  A router gets an address on each of its LANs: the first usable address of
  the network that no host uses (usually ``.1``).
* **Links.** Each router-to-router link is a point-to-point /30 (RFC 3021
  /31s would do, but a /30 is what students meet in textbooks), allocated in
  link order from 198.18.0.0/15, the block RFC 2544 §C.2.2 reserves for
  benchmarking: it never clashes with the documentation ranges (RFC 5737)
  and the shared address space (RFC 6598) that topologies use. Blocks that
  overlap anything the topology mentions are skipped.
* **outside.** A synthetic host named ``outside`` (the neutral client that
  ``maillab up`` lends to real tools on the machine) on a /24 of its own from
  the same block, attached to ``settings.outside``, else to the gateway of the
  resolver host, else to the first router. It takes part in the graph and in
  routing like any host; :meth:`LabNetwork.is_synthetic` tells it apart.
* **Routing.** Static, shortest paths by hop count (what a link-state IGP
  with equal link costs would compute). Ties are broken by the smallest
  next-hop router name, so every run, and both backends, pick the same path.
  Hosts have one default route via their gateway; routers have a route for
  every segment they are not on, and no default route: an address that is
  not in the lab is unreachable, because nothing leaves the lab.

Direction of a forwarded packet, as seen by a router (what a firewall rule's
``direction`` matches; see :meth:`LabNetwork.direction`):

* ``out``: arrives from one of the router's LANs (its own customers) and leaves
  on a router link (an uplink);
* ``in``: the reverse, from a link to one of its LANs;
* ``through``: LAN to LAN or link to link (transit). Only rules whose direction
  is ``any`` match it.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Iterable
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    ip_address,
)
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from sim.errors import NetworkError, Problem, TopologyError
from sim.fastclass import dataclass
from sim.topology.model import Node, Topology

if TYPE_CHECKING:
    import networkx as nx

__all__ = [
    "ADDRESS_POOL",
    "LINK_PREFIX",
    "OUTSIDE",
    "OUTSIDE_PREFIX",
    "AddressingError",
    "Hop",
    "Interface",
    "LabNetwork",
    "Route",
    "Segment",
    "SegmentKind",
    "build_network",
    "layout",
    "router_order",
]

#: RFC 2544 §C.2.2 benchmarking block: router links and the outside LAN.
ADDRESS_POOL = IPv4Network("198.18.0.0/15")
LINK_PREFIX = 30
OUTSIDE_PREFIX = 24
#: The name of the synthetic outside host (a reserved node name).
OUTSIDE = "outside"

SegmentKind = Literal["lan", "link"]
Hop = Literal["in", "out", "through"]

_DEFAULT = IPv4Network("0.0.0.0/0")
_IPV4_LITERAL = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")


class AddressingError(TopologyError):
    """The topology cannot be laid out as a network.

    ``keys`` names, for each problem, the topology key it is about (for
    example ``nodes.laptop.gateway`` or ``links[0]``), so that the loader can
    point at the line.
    """

    def __init__(self, problems: list[Problem], keys: list[str]) -> None:
        super().__init__(problems)
        self.keys = keys


@dataclass(frozen=True)
class Segment:
    """One layer-2 segment: a LAN (a bridge) or a router-to-router link.

    ``members`` lists the nodes on it, the router first. ``router`` is the
    LAN's gateway (``None`` for links and router-less LANs).
    """

    id: str
    kind: SegmentKind
    network: IPv4Network
    members: tuple[str, ...]
    router: str | None = None
    synthetic: bool = False


@dataclass(frozen=True)
class Interface:
    """A node's attachment to a segment: ``eth0``, ``eth1``… per node."""

    node: str
    name: str
    address: IPv4Interface
    segment: str


@dataclass(frozen=True)
class Route:
    """One routing-table entry; ``via`` is ``None`` for an on-link network."""

    network: IPv4Network
    via: IPv4Address | None
    interface: str

    def __str__(self) -> str:
        target = "default" if self.network == _DEFAULT else str(self.network)
        via = f" via {self.via}" if self.via is not None else ""
        return f"{target}{via} dev {self.interface}"


def _as_address(address: IPv4Address | str) -> IPv4Address:
    if isinstance(address, IPv4Address):
        return address
    parsed = ip_address(address)
    if not isinstance(parsed, IPv4Address):
        raise ValueError(f"{address!r} is not an IPv4 address")
    return parsed


class LabNetwork:
    """A topology laid out as a network. Immutable once built.

    Build it with :func:`build_network`. ``graph`` is a frozen networkx graph:
    nodes are node names (attributes ``kind`` and ``synthetic``), edges join
    nodes that share a segment (attribute ``segment``: the segment id).
    """

    def __init__(
        self,
        topology: Topology,
        nodes: dict[str, Node],
        segments: tuple[Segment, ...],
        interfaces: dict[str, tuple[Interface, ...]],
        next_hops: dict[tuple[str, str], str],
    ) -> None:
        self._topology = topology
        self._nodes = MappingProxyType(nodes)
        self._segments = segments
        self._segment_by_id = MappingProxyType({s.id: s for s in segments})
        self._interfaces = MappingProxyType(interfaces)
        self._next_hops = MappingProxyType(next_hops)
        owners: dict[IPv4Address, Interface] = {}
        for ifaces in interfaces.values():
            for iface in ifaces:
                owners[iface.address.ip] = iface
        self._by_address = MappingProxyType(owners)
        # Neighbours and the segment they share, both ways round (a later
        # segment between the same two nodes wins, as in the networkx graph).
        edges: dict[tuple[str, str], str] = {}
        for seg in segments:
            for i, a in enumerate(seg.members):
                for b in seg.members[i + 1 :]:
                    edges[(a, b)] = edges[(b, a)] = seg.id
        self._edges = MappingProxyType(edges)
        self._graph: nx.Graph | None = None

    # -- what it is made of ------------------------------------------------

    @property
    def topology(self) -> Topology:
        return self._topology

    @property
    def graph(self) -> nx.Graph:
        """The frozen networkx graph, built on first use: importing networkx
        costs a command line (``maillab validate``) more than it does."""
        if self._graph is None:
            import networkx as nx

            graph: nx.Graph = nx.Graph()
            for name, node in self._nodes.items():
                graph.add_node(name, kind=node.kind, synthetic=name == OUTSIDE)
            for seg in self._segments:
                for i, a in enumerate(seg.members):
                    for b in seg.members[i + 1 :]:
                        graph.add_edge(a, b, segment=seg.id)
            self._graph = nx.freeze(graph)
        return self._graph

    @property
    def segments(self) -> tuple[Segment, ...]:
        return self._segments

    @property
    def outside(self) -> str:
        """The name of the synthetic outside host."""
        return OUTSIDE

    def nodes(self) -> tuple[str, ...]:
        """Every node name, the topology's in order, then ``outside``."""
        return tuple(self._nodes)

    def node(self, name: str) -> Node:
        """The topology's node, or a synthetic :class:`Node` for ``outside``."""
        try:
            return self._nodes[name]
        except KeyError:
            raise NetworkError(f"no node named {name!r} in {self._topology.name}") from None

    def is_synthetic(self, name: str) -> bool:
        """True for nodes the network added (``outside``), not the instructor."""
        return name == OUTSIDE

    def segment(self, segment_id: str) -> Segment:
        try:
            return self._segment_by_id[segment_id]
        except KeyError:
            raise NetworkError(f"no segment {segment_id!r} in {self._topology.name}") from None

    def interfaces(self, node: str) -> tuple[Interface, ...]:
        self.node(node)
        return self._interfaces[node]

    def address_of(self, node: str) -> IPv4Address:
        """A host's address; a router's first interface address."""
        ifaces = self.interfaces(node)
        if not ifaces:
            raise NetworkError(f"router {node} has no interface: it is on no LAN and no link")
        return ifaces[0].address.ip

    def owner(self, address: IPv4Address | str) -> str | None:
        """The node that has ``address`` on one of its interfaces."""
        iface = self._by_address.get(_as_address(address))
        return iface.node if iface is not None else None

    def interface_of(self, address: IPv4Address | str) -> Interface | None:
        """The interface that has ``address``."""
        return self._by_address.get(_as_address(address))

    def in_lab(self, address: IPv4Address | str) -> bool:
        return self.owner(address) is not None

    # -- routing -------------------------------------------------------------

    def walk(self, src_node: str, dst_address: IPv4Address | str) -> tuple[tuple[str, ...], bool]:
        """Forward a packet hop by hop as the routing tables say.

        Returns the nodes it reached and whether it reached the owner of
        ``dst_address``. On failure the path ends where forwarding stopped: at
        the source (no gateway, or not a lab address) or at the router that
        has no route.
        """
        self.node(src_node)
        iface = self._by_address.get(_as_address(dst_address))
        if iface is None:
            return (src_node,), False
        dst_node, dst_segment = iface.node, iface.segment
        path = [src_node]
        current = src_node
        # A node delivers locally any packet for one of its own addresses
        # (Linux's weak host model, RFC 1122 §3.3.4.2), whichever interface
        # the address is on.
        while current != dst_node:
            if len(path) > len(self._nodes):  # pragma: no cover - tables are loop-free
                return tuple(path), False
            if any(i.segment == dst_segment for i in self._interfaces[current]):
                nxt: str | None = dst_node  # on-link: ARP for it and deliver
            elif self._nodes[current].kind == "host":
                nxt = self._nodes[current].gateway
            else:
                nxt = self._next_hops.get((current, dst_segment))
            if nxt is None:
                return tuple(path), False
            path.append(nxt)
            current = nxt
        return tuple(path), True

    def route(self, src_node: str, dst_address: IPv4Address | str) -> tuple[str, ...] | None:
        """The nodes a packet from ``src_node`` to ``dst_address`` passes,
        both ends included; ``None`` when it cannot get there."""
        path, reached = self.walk(src_node, dst_address)
        return path if reached else None

    def routes(self, node: str, *, connected: bool = False) -> list[Route]:
        """The static routes to install on ``node``.

        Hosts: a default route via their gateway (none without a gateway).
        Routers: a route to every segment they are not on, via the next hop.
        With ``connected=True`` the on-link networks come first (``via`` is
        ``None``); the kernel adds those itself when an address is set, so a
        backend installs only the others.
        """
        ifaces = self.interfaces(node)
        out: list[Route] = []
        if connected:
            out.extend(Route(i.address.network, None, i.name) for i in ifaces)
        spec = self._nodes[node]
        if spec.kind == "host":
            if spec.gateway is not None:
                gw = self._neighbour_interface(spec.gateway, ifaces[0].segment)
                out.append(Route(_DEFAULT, gw.address.ip, ifaces[0].name))
            return out
        own = {i.segment for i in ifaces}
        for seg in self._segments:
            if seg.id in own:
                continue
            hop = self._next_hops.get((node, seg.id))
            if hop is None:
                continue
            link = self._edges[(node, hop)]
            mine = next(i for i in ifaces if i.segment == link)
            theirs = self._neighbour_interface(hop, link)
            out.append(Route(seg.network, theirs.address.ip, mine.name))
        return out

    def direction(self, router: str, prev_node: str, next_node: str) -> Hop:
        """How ``router`` sees a packet it forwards from ``prev_node`` to ``next_node``.

        ``out``: from one of its LANs to a router link; ``in``: from a link to
        one of its LANs; ``through``: LAN to LAN or link to link.
        """
        came = self._segment_between(router, prev_node)
        goes = self._segment_between(router, next_node)
        if came.kind == "lan" and goes.kind == "link":
            return "out"
        if came.kind == "link" and goes.kind == "lan":
            return "in"
        return "through"

    # -- helpers -------------------------------------------------------------

    def _segment_between(self, a: str, b: str) -> Segment:
        try:
            return self._segment_by_id[self._edges[(a, b)]]
        except KeyError:
            raise NetworkError(f"{a} and {b} are not neighbours") from None

    def _neighbour_interface(self, node: str, segment: str) -> Interface:
        return next(i for i in self._interfaces[node] if i.segment == segment)

    def __repr__(self) -> str:
        return (
            f"<LabNetwork {self._topology.name}: {len(self._nodes)} nodes, "
            f"{len(self._segments)} segments>"
        )


# -- building -----------------------------------------------------------------


class _Problems:
    def __init__(self, topology: Topology) -> None:
        self.path = topology.source or f"<topology {topology.name}>"
        self.problems: list[Problem] = []
        self.keys: list[str] = []

    def add(self, key: str, message: str) -> None:
        # The loader checks the file with line numbers first; what reaches
        # here is reported at the top of the file, with the key named.
        self.problems.append(Problem(self.path, 1, 1, f"{key}: {message}"))
        self.keys.append(key)

    def raise_if_any(self) -> None:
        if self.problems:
            raise AddressingError(self.problems, self.keys)


def _check_structure(topology: Topology, problems: _Problems) -> dict[str, Node]:
    nodes: dict[str, Node] = {}
    for node in topology.nodes:
        key = f"nodes.{node.name}"
        if node.name in nodes:
            problems.add(key, f"two nodes are named {node.name!r}")
            continue
        if node.name == OUTSIDE:
            problems.add(key, f"{OUTSIDE!r} is reserved for the synthetic outside host")
            continue
        nodes[node.name] = node
    owners: dict[IPv4Address, str] = {}
    for node in nodes.values():
        key = f"nodes.{node.name}"
        if node.kind == "host":
            if node.ip is None:
                problems.add(f"{key}.ip", f"host {node.name} has no address")
            elif node.ip.ip in owners:
                problems.add(
                    f"{key}.ip", f"{node.ip.ip} is also the address of {owners[node.ip.ip]}"
                )
            else:
                owners[node.ip.ip] = node.name
            gw = node.gateway
            if gw is not None and (gw not in nodes or nodes[gw].kind != "router"):
                problems.add(f"{key}.gateway", f"gateway {gw!r} is not a router of this topology")
    seen: dict[frozenset[str], int] = {}
    for index, (a, b) in enumerate(topology.links):
        key = f"links[{index}]"
        for end in (a, b):
            if end not in nodes or nodes[end].kind != "router":
                problems.add(key, f"{end!r} is not a router of this topology")
        pair = frozenset((a, b))
        if a == b:
            problems.add(key, f"a link from {a} to itself")
        elif pair in seen:
            problems.add(key, f"{a} and {b} are already linked by links[{seen[pair]}]")
        else:
            seen[pair] = index
    outside = topology.settings.outside
    if outside is not None and (outside not in nodes or nodes[outside].kind != "router"):
        problems.add("settings.outside", f"{outside!r} is not a router of this topology")
    return nodes


def _used_ranges(topology: Topology) -> list[tuple[int, int]]:
    """Integer ranges of every address the topology mentions, for the pool
    allocator to avoid.

    Host networks are always avoided: a host treats its whole network as
    on-link, so a link or the outside LAN inside it would be unreachable from
    it. Other mentions (rule, blocklist and zone addresses) that swallow the
    whole pool, such as a rule's 0.0.0.0/0, cannot be avoided and are ignored.
    """
    always: list[IPv4Network] = []
    mentioned: list[IPv4Network] = []
    for node in topology.nodes:
        if node.ip is not None:
            always.append(node.ip.network)
        for rule in node.firewall:
            mentioned.extend(n for n in (rule.src, rule.dst) if n is not None)
        if node.services.dnsbl is not None:
            mentioned.extend(listing.net for listing in node.services.dnsbl.listed)
    if topology.settings.resolver is not None:
        mentioned.append(IPv4Network(topology.settings.resolver))
    for _, text in topology.zones:
        for literal in _IPV4_LITERAL.findall(text):
            try:
                mentioned.append(IPv4Network(literal))
            except ValueError:
                continue
    nets = always + [n for n in mentioned if not n.supernet_of(ADDRESS_POOL)]
    return sorted((int(n.network_address), int(n.broadcast_address)) for n in nets)


class _PoolAllocator:
    """Hands out aligned blocks from :data:`ADDRESS_POOL` in order, skipping
    used ranges."""

    def __init__(self, used: list[tuple[int, int]]) -> None:
        self.used = used
        self.cursor = int(ADDRESS_POOL.network_address)
        self.end = int(ADDRESS_POOL.broadcast_address)

    def take(self, prefix: int) -> IPv4Network | None:
        size = 1 << (32 - prefix)
        start = -(-self.cursor // size) * size  # align up
        while start + size - 1 <= self.end:
            last = start + size - 1
            clash = next((hi for lo, hi in self.used if lo <= last and hi >= start), None)
            if clash is None:
                self.cursor = start + size
                return IPv4Network((start, prefix))
            start = -(-(clash + 1) // size) * size
        return None


def _first_free(network: IPv4Network, taken: set[IPv4Address]) -> IPv4Address | None:
    for candidate in network.hosts():
        if candidate not in taken:
            return candidate
    return None


def _overlapping(networks: list[IPv4Network]) -> list[tuple[int, int]]:
    """For each network that overlaps one listed before it: (that earlier
    one's index, its index)."""
    ranges = [(int(n.network_address), int(n.broadcast_address)) for n in networks]
    found: list[tuple[int, int]] = []
    for later, (lo, hi) in enumerate(ranges):
        for first in range(later):
            if ranges[first][0] <= hi and lo <= ranges[first][1]:
                found.append((first, later))
                break
    return found


def build_network(topology: Topology) -> LabNetwork:
    """Lay ``topology`` out as a network. Raises :class:`AddressingError`
    (a :class:`~sim.errors.TopologyError`) naming every problem found."""
    problems = _Problems(topology)
    nodes = _check_structure(topology, problems)
    problems.raise_if_any()

    host_addresses = {n.ip.ip for n in nodes.values() if n.ip is not None}

    # LANs, in order of their first host.
    lan_keys: dict[tuple[str | None, IPv4Network], list[str]] = {}
    for node in nodes.values():
        if node.kind == "host" and node.ip is not None:
            lan_keys.setdefault((node.gateway, node.ip.network), []).append(node.name)

    # Two routed LANs with overlapping networks would make routing by
    # destination ambiguous. Router-less LANs are never routed to.
    routed = [key for key in lan_keys if key[0] is not None]
    for i, j in _overlapping([key[1] for key in routed]):
        (gw_a, net_a), (gw_b, net_b) = routed[i], routed[j]
        if net_a.overlaps(net_b):
            host = lan_keys[routed[j]][0]
            problems.add(
                f"nodes.{host}.ip",
                f"{net_b} (behind {gw_b}) overlaps {net_a} (behind {gw_a}): "
                "one network cannot be on two LANs",
            )

    segments: list[Segment] = []
    addresses: dict[tuple[str, str], IPv4Interface] = {}  # (node, segment) → address
    for index, ((gateway, network), members) in enumerate(lan_keys.items()):
        seg_id = f"lan{index}"
        for host in members:
            ip = nodes[host].ip
            assert ip is not None
            addresses[host, seg_id] = ip
        if gateway is not None:
            free = _first_free(network, host_addresses)
            if free is None:
                problems.add(
                    f"nodes.{members[0]}.ip",
                    f"no address left in {network} for its gateway {gateway}",
                )
                continue
            addresses[gateway, seg_id] = IPv4Interface((free, network.prefixlen))
            members = [gateway, *members]
        segments.append(Segment(seg_id, "lan", network, tuple(members), router=gateway))
    problems.raise_if_any()

    pool = _PoolAllocator(_used_ranges(topology))
    for index, (a, b) in enumerate(topology.links):
        block = pool.take(LINK_PREFIX)
        if block is None:
            problems.add(f"links[{index}]", f"{ADDRESS_POOL} has no room left for this link")
            problems.raise_if_any()
        assert block is not None
        seg_id = f"link{index}"
        first, second = list(block.hosts())[:2]
        addresses[a, seg_id] = IPv4Interface((first, LINK_PREFIX))
        addresses[b, seg_id] = IPv4Interface((second, LINK_PREFIX))
        segments.append(Segment(seg_id, "link", block, (a, b)))

    # The synthetic outside host: a /24 LAN of its own.
    routers = [n.name for n in nodes.values() if n.kind == "router"]
    attach = _outside_router(topology, nodes, routers)
    block = pool.take(OUTSIDE_PREFIX)
    if block is None:
        problems.add("settings.outside", f"{ADDRESS_POOL} has no room left for the outside LAN")
        problems.raise_if_any()
    assert block is not None
    hosts = block.hosts()
    router_ip, outside_ip = next(hosts), next(hosts)
    nodes[OUTSIDE] = Node(
        name=OUTSIDE,
        kind="host",
        ip=IPv4Interface((outside_ip, OUTSIDE_PREFIX)),
        gateway=attach,
        title="a neutral host outside every ISP (synthetic)",
    )
    outside_seg = f"lan{len(lan_keys)}"
    addresses[OUTSIDE, outside_seg] = IPv4Interface((outside_ip, OUTSIDE_PREFIX))
    on_lan: tuple[str, ...] = (OUTSIDE,)
    if attach is not None:
        addresses[attach, outside_seg] = IPv4Interface((router_ip, OUTSIDE_PREFIX))
        on_lan = (attach, OUTSIDE)
    segments.append(Segment(outside_seg, "lan", block, on_lan, router=attach, synthetic=True))

    interfaces = _name_interfaces(nodes, segments, addresses)
    next_hops = _next_hops(routers, segments, topology.links)
    return LabNetwork(topology, nodes, tuple(segments), interfaces, next_hops)


def _outside_router(topology: Topology, nodes: dict[str, Node], routers: list[str]) -> str | None:
    if topology.settings.outside is not None:
        return topology.settings.outside
    resolver = topology.settings.resolver
    if resolver is not None:
        for node in nodes.values():
            if node.ip is not None and node.ip.ip == resolver and node.gateway is not None:
                return node.gateway
    return routers[0] if routers else None


def _name_interfaces(
    nodes: dict[str, Node],
    segments: Iterable[Segment],
    addresses: dict[tuple[str, str], IPv4Interface],
) -> dict[str, tuple[Interface, ...]]:
    """eth0, eth1… per node: LANs first (in segment order), then links (in
    link order), then the synthetic outside LAN, so that adding ``outside``
    never renames an interface the instructor's topology implies."""
    ordered = sorted(segments, key=lambda s: (s.synthetic, s.kind != "lan"))
    per_node: dict[str, list[Interface]] = {name: [] for name in nodes}
    for seg in ordered:
        for member in seg.members:
            ifaces = per_node[member]
            ifaces.append(Interface(member, f"eth{len(ifaces)}", addresses[member, seg.id], seg.id))
    return {name: tuple(ifaces) for name, ifaces in per_node.items()}


def _next_hops(
    routers: list[str], segments: list[Segment], links: tuple[tuple[str, str], ...]
) -> dict[tuple[str, str], str]:
    """(router, segment) → the neighbouring router to forward to.

    For each segment a breadth-first search over router links from the
    routers on it gives every router its hop distance; a router forwards to
    the neighbour one hop closer, the smallest name among equals. Following
    next hops strictly decreases the distance, so forwarding never loops and
    every path is a shortest one.
    """
    adjacent: dict[str, list[str]] = {r: [] for r in routers}
    for a, b in links:
        adjacent[a].append(b)
        adjacent[b].append(a)
    for neighbours in adjacent.values():
        neighbours.sort()
    hops: dict[tuple[str, str], str] = {}
    for seg in segments:
        roots = [m for m in seg.members if m in adjacent]
        if not roots:
            continue
        distance = dict.fromkeys(roots, 0)
        queue = deque(sorted(roots))
        while queue:
            here = queue.popleft()
            for there in adjacent[here]:
                if there not in distance:
                    distance[there] = distance[here] + 1
                    queue.append(there)
        for router, d in distance.items():
            if d > 0:
                hops[router, seg.id] = min(n for n in adjacent[router] if distance.get(n) == d - 1)
    return hops


#: Recent layouts, newest last: (nodes, links, settings, network). A layout
#: depends on these three parts only, so a topology that differs in its zones
#: (the relays' DKIM keys published at start) shares its original's layout.
_LAYOUTS: list[tuple[object, object, object, LabNetwork]] = []
_LAYOUTS_KEPT = 16
_LAYOUTS_LOCK = threading.Lock()


def layout(topology: Topology) -> LabNetwork:
    """The network of ``topology``, laid out once: the loader lays it out to
    validate it, and every later user (a backend, a drawing) gets the same
    :class:`LabNetwork`. Raises as :func:`build_network` does."""
    with _LAYOUTS_LOCK:
        for nodes, links, settings, network in reversed(_LAYOUTS):
            # Identity, not equality: the parts of a loaded topology are
            # shared by every copy made of it with dataclasses.replace.
            if (
                nodes is topology.nodes
                and links is topology.links
                and settings is topology.settings
            ):
                return network
    network = build_network(topology)
    with _LAYOUTS_LOCK:
        _LAYOUTS.append((topology.nodes, topology.links, topology.settings, network))
        del _LAYOUTS[:-_LAYOUTS_KEPT]
    return network


def router_order(network: LabNetwork) -> list[str]:
    """Routers left to right so that most links join neighbours in the row:
    the one order every drawing of the lab uses (``maillab graph``, the TUI's
    map, notebooks), so a student finds each router in the same place.

    A chain is drawn in chain order; otherwise the best connected router goes
    in the middle with its neighbours alternating left and right.
    """
    import networkx as nx  # (drawings only: loading a topology needs none)

    routers = [r.name for r in network.topology.routers()]
    rank = {name: i for i, name in enumerate(routers)}
    graph: nx.Graph = nx.Graph()
    graph.add_nodes_from(routers)
    graph.add_edges_from(network.topology.links)
    order: list[str] = []
    for component in sorted(nx.connected_components(graph), key=lambda c: min(rank[n] for n in c)):
        sub = graph.subgraph(component)
        if nx.is_tree(sub) and max((d for _, d in sub.degree()), default=0) <= 2:
            ends = sorted((n for n, d in sub.degree() if d <= 1), key=rank.__getitem__)
            order.extend(nx.dfs_preorder_nodes(sub, ends[0]) if ends else component)
            continue
        centre = min(component, key=lambda n: (-sub.degree(n), rank[n]))
        bfs = [centre] + [
            v
            for _, v in nx.bfs_edges(
                sub, centre, sort_neighbors=lambda ns: sorted(ns, key=rank.__getitem__)
            )
        ]
        left = [n for i, n in enumerate(bfs[1:]) if i % 2 == 1]
        right = [n for i, n in enumerate(bfs[1:]) if i % 2 == 0]
        order.extend([*reversed(left), centre, *right])
    return order
