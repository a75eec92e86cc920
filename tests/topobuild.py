"""Building topologies in Python for tests of the network layer."""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv4Network

from sim.topology.model import FirewallRule, Node

RESIDENTIAL = IPv4Network("100.64.0.0/10")
#: DESIGN.md's ISP rule: residential customers may not send on port 25.
PORT_25 = FirewallRule(
    action="drop",
    proto="tcp",
    dport=(25, 25),
    src=RESIDENTIAL,
    note="residential customers may not send on port 25",
)


def host(name: str, ip: str, gateway: str | None = None) -> Node:
    return Node(name=name, kind="host", ip=IPv4Interface(ip), gateway=gateway)


def router(name: str, *rules: FirewallRule) -> Node:
    return Node(name=name, kind="router", firewall=rules)
