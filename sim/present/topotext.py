"""A topology as Mermaid ``flowchart`` text and as Graphviz DOT.

Both draw what :func:`sim.graphdraw.render_text` lists: routers (round),
hosts (boxes) with their address and services, each LAN as a small node its
members hang off, router-to-router links labelled with their network, and
the firewall rules as a note on their router. A highlighted path (the hops
of an experiment) is drawn thick, the part after ``stopped_at`` dashed, and
the node where it stopped in red, as in the pictures.

Mermaid renders in JupyterLab, GitHub and GitLab; DOT in Graphviz (``dot
-Tsvg``) and many editors.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

from sim.graphdraw import describe_services
from sim.topology.firewall import describe_rule
from sim.topology.graph import LabNetwork, build_network
from sim.topology.model import Topology

__all__ = ["render_dot", "render_mermaid"]


def _id(name: str) -> str:
    out = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return f"n_{out}" if not out or out[0].isdigit() else out


def _mermaid_label(lines: Sequence[str]) -> str:
    """Lines for a quoted Mermaid label: ``"`` and ``#`` as entity codes,
    ``<br>`` between lines."""
    safe = [
        line.replace("#", "#35;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
        for line in lines
    ]
    return "<br>".join(safe)


def _edges(network: LabNetwork) -> list[tuple[str, str, str]]:
    """(a, b, label) for every drawn line: member–LAN, router–router."""
    out = []
    for seg in network.segments:
        if seg.synthetic:
            continue  # "outside", where real clients attach: not the instructor's
        if seg.kind == "link":
            a, b = seg.members
            out.append((a, b, str(seg.network)))
        else:
            for member in seg.members:
                out.append((member, f"lan:{seg.id}", ""))
    return out


def _path_pairs(
    network: LabNetwork, path: Sequence[str] | None, stopped_at: str | None
) -> tuple[set[frozenset[str]], set[frozenset[str]]]:
    """The drawn lines the path used (reached) and would have used (after the stop)."""
    reached: set[frozenset[str]] = set()
    missed: set[frozenset[str]] = set()
    if not path:
        return reached, missed
    stop = path.index(stopped_at) if stopped_at in path else None
    for i, (a, b) in enumerate(itertools.pairwise(path)):
        into = reached if stop is None or i < stop else missed
        try:
            seg = network.graph.edges[a, b]["segment"]
        except KeyError:
            continue
        if any(s.id == seg and s.kind == "link" for s in network.segments):
            into.add(frozenset((a, b)))
        else:
            into.add(frozenset((a, f"lan:{seg}")))
            into.add(frozenset((b, f"lan:{seg}")))
    return reached, missed


def _node_lines(network: LabNetwork, name: str) -> list[str]:
    node = network.node(name)
    if node.kind == "router":
        return [name] + ([node.title] if node.title else [])
    address = network.interfaces(name)[0].address if network.interfaces(name) else ""
    return [f"{name} {address}", *describe_services(node, network.topology, short=True)]


def render_mermaid(
    topology: Topology | LabNetwork,
    *,
    highlight: Sequence[str] | None = None,
    stopped_at: str | None = None,
) -> str:
    network = topology if isinstance(topology, LabNetwork) else build_network(topology)
    lines = ["flowchart LR"]
    names = [n.name for n in network.topology.nodes]
    for name in names:
        label = _mermaid_label(_node_lines(network, name))
        if network.node(name).kind == "router":
            lines.append(f'    {_id(name)}(("{label}"))')
        else:
            lines.append(f'    {_id(name)}["{label}"]')
        rules = [describe_rule(r) for r in network.node(name).firewall]
        if rules:
            numbered = [f"{i}. {r}" for i, r in enumerate(rules, 1)]
            lines.append(f'    {_id(name)}_rules>"{_mermaid_label(numbered)}"]')
            lines.append(f"    {_id(name)}_rules -.- {_id(name)}")
    for seg in network.segments:
        if seg.kind == "lan" and not seg.synthetic:
            lines.append(f'    {_id("lan_" + seg.id)}[/"LAN {seg.network}"/]')
    reached, missed = _path_pairs(network, highlight, stopped_at)
    styles: list[str] = []
    for index, (a, b, label) in enumerate(_edges(network)):
        ida = _id("lan_" + a[4:]) if a.startswith("lan:") else _id(a)
        idb = _id("lan_" + b[4:]) if b.startswith("lan:") else _id(b)
        pair = frozenset((a, b))
        arrow = "---" if not label else f'---|"{_mermaid_label([label])}"|'
        lines.append(f"    {ida} {arrow} {idb}")
        if pair in reached:
            styles.append(f"    linkStyle {index} stroke:#e8890c,stroke-width:4px")
        elif pair in missed:
            styles.append(
                f"    linkStyle {index} stroke:#e8890c,stroke-width:2px,stroke-dasharray:5 4"
            )
    lines += styles
    if stopped_at is not None:
        lines.append(f"    style {_id(stopped_at)} fill:#fde2e1,stroke:#c0392b,stroke-width:3px")
    return "\n".join(lines) + "\n"


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def render_dot(
    topology: Topology | LabNetwork,
    *,
    highlight: Sequence[str] | None = None,
    stopped_at: str | None = None,
) -> str:
    network = topology if isinstance(topology, LabNetwork) else build_network(topology)
    title = network.topology.name + (
        f": {network.topology.title}" if network.topology.title else ""
    )
    lines = [
        f'graph "{_dot_text(network.topology.name)}" {{',
        f'  label="{_dot_text(title)}"; labelloc=t; rankdir=LR;',
        '  node [fontname="DejaVu Sans Mono", fontsize=10];',
    ]
    for node in network.topology.nodes:
        label = "\\n".join(_dot_text(line) for line in _node_lines(network, node.name))
        shape = "ellipse" if node.kind == "router" else "box"
        extra = (
            ', style=filled, fillcolor="#fde2e1", color="#c0392b", penwidth=3'
            if node.name == stopped_at
            else ""
        )
        lines.append(f'  "{_dot_text(node.name)}" [label="{label}", shape={shape}{extra}];')
        rules = [f"{i}. {describe_rule(r)}" for i, r in enumerate(node.firewall, 1)]
        if rules:
            text = "\\l".join(_dot_text(r) for r in rules) + "\\l"
            lines.append(
                f'  "{_dot_text(node.name)} rules" [label="{text}", shape=note, color="#8c2d19"];'
            )
            lines.append(
                f'  "{_dot_text(node.name)} rules" -- "{_dot_text(node.name)}" [style=dotted];'
            )
    for seg in network.segments:
        if seg.kind == "lan" and not seg.synthetic:
            lines.append(f'  "lan:{seg.id}" [label="LAN {seg.network}", shape=plaintext];')
    reached, missed = _path_pairs(network, highlight, stopped_at)
    for a, b, label in _edges(network):
        attrs = [f'label="{_dot_text(label)}"'] if label else []
        pair = frozenset((a, b))
        if pair in reached:
            attrs += ['color="#e8890c"', "penwidth=4"]
        elif pair in missed:
            attrs += ['color="#e8890c"', "penwidth=2", "style=dashed"]
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f'  "{_dot_text(a)}" -- "{_dot_text(b)}"{suffix};')
    lines.append("}")
    return "\n".join(lines) + "\n"
