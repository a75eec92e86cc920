"""Ready time of the mininet backend, beside a bare Mininet start.

Run as root::

    python bench/bench_mininet.py            # home-isp and a 100-node topology
    python bench/bench_mininet.py --runs 5 --json

For each topology it measures, in the same run:

* **maillab**: ``MininetBackend.start()`` until every agent said ready (all
  services answering), with its phases (network built and configured,
  agents ready);
* **bare Mininet**: ``Mininet(topo=None, controller=None)`` with the same
  number of nodes and links (the same pairs), each host's address set by
  mininet, ``net.start()``: what mininet alone costs for that shape;

and prints the ratios. Targets (issue 4): home-isp ready in under 2 s; the
100-node topology within 1.5x of bare Mininet plus the service start.
``--agents popen`` starts agents as separate programs (``node.popen``)
instead of forking them, to show what the fork server saves.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sim  # noqa: E402
from sim.hosting.mininet import MininetBackend  # noqa: E402
from sim.net.mininet import Plan, import_mininet  # noqa: E402
from sim.topology.graph import build_network  # noqa: E402
from sim.topology.model import DnsService, Node, Services, Settings, Topology  # noqa: E402


def hundred_nodes() -> Topology:
    """101 nodes: a core router with a DNS host, nine access routers linked to
    it, ten hosts on each access router's LAN (a bridge of eleven)."""
    nodes = [
        Node("core", "router"),
        Node(
            "ns",
            "host",
            IPv4Interface("198.51.100.53/24"),
            "core",
            services=Services(dns=DnsService(zones=("big.example",))),
        ),
    ]
    links = []
    for r in range(1, 10):
        nodes.append(Node(f"r{r}", "router"))
        links.append(("core", f"r{r}"))
        for h in range(10):
            nodes.append(Node(f"h{r}-{h}", "host", IPv4Interface(f"10.{r}.0.{10 + h}/24"), f"r{r}"))
    zone = "\n".join(f"h{r}-{h} A 10.{r}.0.{10 + h}" for r in range(1, 10) for h in range(10))
    return Topology(
        name="hundred",
        nodes=tuple(nodes),
        links=tuple(links),
        zones=(("big.example", zone),),
        settings=Settings(resolver=IPv4Address("198.51.100.53")),
    )


def maillab_start(topology: Topology, agents: str) -> dict[str, float]:
    state = Path(tempfile.mkdtemp(prefix="maillab-bench-"))
    backend = MininetBackend(topology, state, agents=agents)
    begin = time.monotonic()
    try:
        backend.start()
        ready = time.monotonic() - begin
        # Prove "all services answering": one DNS question from a host.
        host = next(n for n in backend.network.nodes() if backend.network.node(n).kind == "host")
        zone = topology.zones[0][0] if topology.zones else "example"
        from sim.experiments import Dig

        backend.run(host, Dig(name=zone, type="SOA"))
    finally:
        stop_begin = time.monotonic()
        backend.stop()
        stopped = time.monotonic() - stop_begin
        import shutil

        shutil.rmtree(state, ignore_errors=True)
    return {
        "ready": ready,
        "network": backend.timings.get("network", 0.0),
        "agents": backend.timings.get("agents", 0.0),
        "stop": stopped,
    }


def bare_mininet(topology: Topology) -> dict[str, float]:
    """Mininet alone, same number of nodes and the same links."""
    mnet = import_mininet()
    from mininet.node import Host

    plan = Plan.of(build_network(topology), "bench0")
    names = [*plan.names.values(), *plan.bridges]
    short = {name: f"b{i}" for i, name in enumerate(names)}
    mnet.Mininet.inited = True  # as the backend: leave the machine's sysctls alone
    begin = time.monotonic()
    net = mnet.Mininet(topo=None, controller=None, build=False)
    try:
        for name in names:
            net.addHost(short[name], cls=Host)
        for a, _, b, _ in plan.links:
            net.addLink(short[a], short[b])
        net.start()
        ready = time.monotonic() - begin
    finally:
        stop_begin = time.monotonic()
        net.stop()
        stopped = time.monotonic() - stop_begin
    return {"ready": ready, "nodes": len(names), "links": len(plan.links), "stop": stopped}


def measure(name: str, topology: Topology, runs: int, agents: str) -> dict[str, Any]:
    ours = [maillab_start(topology, agents) for _ in range(runs)]
    bare = [bare_mininet(topology) for _ in range(runs)]

    def med(rows: list[dict[str, float]], key: str) -> float:
        return round(statistics.median(r[key] for r in rows), 3)

    out: dict[str, Any] = {
        "topology": name,
        "runs": runs,
        "agents": agents,
        "nodes": bare[0]["nodes"],
        "links": bare[0]["links"],
        "maillab_ready": med(ours, "ready"),
        "maillab_network": med(ours, "network"),
        "maillab_agents": med(ours, "agents"),
        "maillab_stop": med(ours, "stop"),
        "bare_ready": med(bare, "ready"),
        "bare_stop": med(bare, "stop"),
    }
    out["ratio_network_vs_bare"] = round(out["maillab_network"] / out["bare_ready"], 2)
    out["ratio_ready_vs_bare_plus_services"] = round(
        out["maillab_ready"] / (out["bare_ready"] + out["maillab_agents"]), 2
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--agents", choices=["fork", "popen"], default="fork")
    parser.add_argument("--only", choices=["home-isp", "hundred"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from sim.net.requirements import missing

    problem = missing()
    if problem:
        print(f"bench_mininet: {problem}", file=sys.stderr)
        return 2
    warnings.simplefilter("ignore")
    cases = {
        "home-isp": lambda: sim.load_topology(ROOT / "topologies" / "home-isp.yaml"),
        "hundred": hundred_nodes,
    }
    results = []
    for name, make in cases.items():
        if args.only and name != args.only:
            continue
        results.append(measure(name, make(), args.runs, args.agents))
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    for r in results:
        print(
            f"{r['topology']}: {r['nodes']} namespaces, {r['links']} links, "
            f"median of {r['runs']}, agents={r['agents']}"
        )
        print(
            f"  maillab ready {r['maillab_ready']:.3f} s (network {r['maillab_network']:.3f}"
            f" s, agents {r['maillab_agents']:.3f} s), stop {r['maillab_stop']:.3f} s"
        )
        print(f"  bare mininet  {r['bare_ready']:.3f} s, stop {r['bare_stop']:.3f} s")
        print(
            f"  ratio network / bare mininet: {r['ratio_network_vs_bare']}x;"
            f" ready / (bare mininet + agents): {r['ratio_ready_vs_bare_plus_services']}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
