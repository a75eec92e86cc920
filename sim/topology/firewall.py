"""Router firewalls: the one definition of what a rule means.

The local backend asks :func:`evaluate` for a verdict on every connection it
simulates; the mininet backend compiles the same rules to iptables
(:mod:`sim.net.iptables`). Both follow these semantics:

* A router judges packets it **forwards** (iptables' FORWARD chain): not
  packets it sends itself, nor packets addressed to it.
* Each router's rules are tried in order; the **first match wins**; a packet
  no rule matches is accepted.
* Routers are **stateful**: only the first packet of a connection (the TCP
  SYN, the first UDP datagram, the ICMP echo request) is judged. Replies and
  the rest of the flow ride on the connection-tracking entry (iptables'
  ``ESTABLISHED,RELATED``), so they always pass.
* ``proto: any`` matches tcp, udp and icmp; a rule with ``dport`` matches only
  tcp and udp (icmp has no ports).
* ``direction`` is seen from the router (see
  :meth:`sim.topology.graph.LabNetwork.direction`): ``out`` from its LANs to
  its links, ``in`` the reverse, ``any`` everything, transit included.
* A REJECT answers the sender: ``tcp-reset`` (a RST, RFC 9293 §3.10.7.1: the
  client sees "connection refused") exists only for TCP; for udp and icmp
  packets a ``tcp-reset`` rule answers ICMP port unreachable instead, which
  is what the compiled iptables rules do too. ``icmp-admin-prohibited``
  (RFC 1812 §5.2.7.1, code 13) shows as "no route to host".
* A packet walks the path :meth:`~sim.topology.graph.LabNetwork.route` gives;
  the first router on it whose first matching rule drops or rejects stops it.

Everything here is a pure function of the network and a packet: no sockets.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address
from typing import Any, Literal

from sim.errors import BackendError
from sim.events import Net
from sim.fastclass import dataclass
from sim.topology.graph import Hop, LabNetwork
from sim.topology.model import FirewallRule, RejectWith, Topology

__all__ = [
    "Packet",
    "PacketProto",
    "Verdict",
    "VerdictAction",
    "describe_rule",
    "effective_reject_with",
    "evaluate",
    "rule_matches",
]

PacketProto = Literal["tcp", "udp", "icmp"]
VerdictAction = Literal["accept", "drop", "reject", "unreachable"]

_PROTOS = ("tcp", "udp", "icmp")


@dataclass(frozen=True)
class Packet:
    """The first packet of a connection, as far as a firewall looks at it."""

    src: IPv4Address
    dst: IPv4Address
    proto: PacketProto
    dport: int | None = None

    def __post_init__(self) -> None:
        if self.proto not in _PROTOS:
            raise ValueError(f"unknown protocol {self.proto!r}: expected tcp, udp or icmp")
        if self.dport is not None and not 0 <= self.dport <= 65535:
            raise ValueError(f"port {self.dport} is not between 0 and 65535")

    def __str__(self) -> str:
        port = f":{self.dport}" if self.dport is not None else ""
        return f"{self.proto} {self.src} → {self.dst}{port}"


def rule_matches(rule: FirewallRule, packet: Packet, direction: Hop) -> bool:
    """Whether ``rule`` matches ``packet`` forwarded in ``direction``."""
    if rule.direction != "any" and rule.direction != direction:
        return False
    if rule.proto != "any" and rule.proto != packet.proto:
        return False
    if rule.src is not None and packet.src not in rule.src:
        return False
    if rule.dst is not None and packet.dst not in rule.dst:
        return False
    if rule.dport is not None:
        low, high = rule.dport
        if packet.dport is None or packet.proto == "icmp" or not low <= packet.dport <= high:
            return False
    return True


def effective_reject_with(rule: FirewallRule, proto: str) -> RejectWith:
    """What a REJECT by ``rule`` answers to a ``proto`` packet: a TCP reset
    can only answer TCP; anything else gets ICMP port unreachable."""
    if rule.reject_with == "tcp-reset" and proto != "tcp":
        return "icmp-port-unreachable"
    return rule.reject_with


def _ports(dport: tuple[int, int]) -> str:
    low, high = dport
    return f"dport {low}" if low == high else f"dports {low}-{high}"


def describe_rule(rule: FirewallRule) -> str:
    """A rule as a short phrase: ``drop tcp dport 25 from 100.64.0.0/10``."""
    words: list[str] = [rule.action]
    if rule.proto != "any":
        words.append(rule.proto)
    if rule.dport is not None:
        words.append(_ports(rule.dport))
    if rule.src is not None:
        words.append(f"from {rule.src}")
    if rule.dst is not None:
        words.append(f"to {rule.dst}")
    if rule.direction == "out":
        words.append("going out")
    elif rule.direction == "in":
        words.append("coming in")
    if len(words) == 1:
        words.append("everything")
    if rule.action == "reject":
        words.append(f"with {rule.reject_with}")
    return " ".join(words)


@dataclass(frozen=True)
class Verdict:
    """What the lab network did with a packet.

    ``path`` holds the nodes the packet reached: up to the router that stopped
    it, or to the destination. ``rule_index`` is 0-based (as in trace data);
    :meth:`explain` numbers rules from 1, as a person counts a YAML list.
    ``reject_with`` is the answer actually sent (see
    :func:`effective_reject_with`).
    """

    action: VerdictAction
    packet: Packet
    path: tuple[str, ...]
    router: str | None = None
    rule_index: int | None = None
    rule: FirewallRule | None = None
    reject_with: RejectWith | None = None
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.action == "accept"

    def explain(self) -> str:
        """One sentence a student reads."""
        packet = str(self.packet)
        if self.action in ("drop", "reject") and self.rule is not None:
            assert self.rule_index is not None
            verb = "dropped" if self.action == "drop" else f"rejected (with {self.reject_with})"
            sentence = (
                f"{self.router} {verb} {packet} by rule {self.rule_index + 1} "
                f"({describe_rule(self.rule)})"
            )
            return f"{sentence}: {self.note}" if self.note else sentence
        if self.action == "unreachable":
            return f"{packet} is unreachable from {self.path[0]}: {self.note}"
        src, dst = self.path[0], self.path[-1]
        if len(self.path) == 1:
            return f"{packet} stayed on {src}"
        routers = list(self.path[1:-1])
        if not routers:
            return f"{packet} reached {dst} directly on their LAN"
        via = routers[0] if len(routers) == 1 else ", ".join(routers[:-1]) + " and " + routers[-1]
        return f"{packet} reached {dst} via {via}"

    def event(self, observed: str | None = None) -> Net:
        """The ``net`` trace event of this verdict (:mod:`sim.events`);
        ``observed``: what a real socket saw (mininet backend)."""
        packet = self.packet
        return Net(
            src=str(packet.src),
            dst=str(packet.dst),
            proto=packet.proto,
            port=packet.dport,
            verdict=self.action,
            path=list(self.path),
            router=self.router,
            rule=self.rule_index,
            rule_text=describe_rule(self.rule) if self.rule is not None else None,
            reject_with=self.reject_with,
            note=self.note,
            explanation=self.explain(),
            observed=observed,
        )

    def to_json(self) -> dict[str, Any]:
        """The keys of a ``net`` trace event (see :mod:`sim.events`)."""
        return {
            "verdict": self.action,
            "src": str(self.packet.src),
            "dst": str(self.packet.dst),
            "proto": self.packet.proto,
            "port": self.packet.dport,
            "path": list(self.path),
            "router": self.router,
            "rule": self.rule_index,
            "rule_text": describe_rule(self.rule) if self.rule is not None else None,
            "reject_with": self.reject_with,
            "note": self.note,
            "explanation": self.explain(),
        }


def _unreachable_note(network: LabNetwork, packet: Packet, path: tuple[str, ...]) -> str:
    if not network.in_lab(packet.dst):
        return f"{packet.dst} is not an address in the lab, and nothing leaves the lab"
    stuck = path[-1]
    node = network.node(stuck)
    if node.kind == "host":
        return f"{stuck} has no gateway, so it cannot leave its LAN"
    return f"{stuck} has no route to {packet.dst}"


def evaluate(network: LabNetwork, src_node: str, packet: Packet) -> Verdict:
    """The verdict on ``packet`` sent by ``src_node``.

    Raises :class:`~sim.errors.NetworkError` only for an unknown node; any
    destination address gives a verdict.
    """
    path, reached = network.walk(src_node, packet.dst)
    # Only the routers a packet is forwarded by judge it: on a complete path
    # every node between the ends; on a broken one, every node between the
    # source and the node that had no route (that node forwards nothing).
    for position in range(1, len(path) - 1):
        router = path[position]
        direction = network.direction(router, path[position - 1], path[position + 1])
        for index, rule in enumerate(network.node(router).firewall):
            if not rule_matches(rule, packet, direction):
                continue
            if rule.action == "accept":
                break
            return Verdict(
                action=rule.action,
                packet=packet,
                path=path[: position + 1],
                router=router,
                rule_index=index,
                rule=rule,
                reject_with=(
                    effective_reject_with(rule, packet.proto) if rule.action == "reject" else None
                ),
                note=rule.note,
            )
    if not reached:
        stuck = path[-1]
        return Verdict(
            action="unreachable",
            packet=packet,
            path=path,
            router=stuck if network.node(stuck).kind == "router" else None,
            note=_unreachable_note(network, packet, path),
        )
    return Verdict(action="accept", packet=packet, path=path)


def with_firewall(topology: Topology, router: str, rules: tuple[FirewallRule, ...]) -> Topology:
    """``topology`` with ``router``'s rules replaced (a lab task changes them
    while the lab runs)."""
    try:
        node = topology.node(router)
    except KeyError:
        raise BackendError(f"no node named {router!r} in {topology.name}") from None
    if node.kind != "router":
        raise BackendError(f"{router} is a host: only routers have firewall rules")
    nodes = tuple(
        replace(n, firewall=tuple(rules)) if n.name == router else n for n in topology.nodes
    )
    return replace(topology, nodes=nodes)
