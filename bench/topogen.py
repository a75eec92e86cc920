"""Generated topologies of any size, for benchmarks.

``generate(n)`` makes ``n`` nodes: a chain of routers (one per 10 nodes), one
DNS host, MX hosts (one in ten hosts) with their zone records, and plain
hosts; one firewall rule on the first router, like an ISP's.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from sim.topology.model import (
    DnsService,
    FirewallRule,
    MxService,
    Node,
    Services,
    Settings,
    Topology,
)

__all__ = ["generate"]


def generate(n: int, *, with_mx: bool = True) -> Topology:
    routers = max(1, n // 10)
    hosts = n - routers
    nodes: list[Node] = []
    for r in range(routers):
        rules = ()
        if r == 0:
            rules = (
                FirewallRule(
                    action="drop",
                    proto="tcp",
                    dport=(25, 25),
                    src=IPv4Network("100.64.0.0/10"),
                    direction="out",
                    note="residential customers may not send on port 25",
                ),
            )
        nodes.append(Node(name=f"r{r}", kind="router", firewall=rules))
    zone_lines = []
    dns_ip = IPv4Address("198.51.100.53")
    nodes.append(
        Node(
            name="ns",
            kind="host",
            ip=IPv4Interface(f"{dns_ip}/24"),
            gateway="r0",
            services=Services(dns=DnsService(zones=("bench.example",))),
        )
    )
    for h in range(hosts - 1):
        router = h % routers
        # Each router serves its own /24 in 100.64.0.0/10 (residential-like).
        ip = IPv4Address(f"100.{64 + router // 250}.{router % 250}.{10 + h // routers}")
        services = Services()
        if with_mx and h % 10 == 0:
            domain = f"d{h}.bench.example"
            services = Services(mx=MxService(domains=(domain,), mailboxes=("user",), checks=()))
            zone_lines += [f"d{h} MX 10 mx{h}", f"mx{h} A {ip}"]
        nodes.append(
            Node(
                name=f"h{h}",
                kind="host",
                ip=IPv4Interface(f"{ip}/24"),
                gateway=f"r{router}",
                services=services,
            )
        )
    links = tuple((f"r{r}", f"r{r + 1}") for r in range(routers - 1))
    return Topology(
        name=f"generated-{n}",
        settings=Settings(time_scale=60.0, resolver=dns_ip),
        nodes=tuple(nodes),
        links=links,
        zones=(("bench.example", "\n".join(zone_lines) + "\n"),),
    )
