"""Drawing a topology: a text tree for terminals, a picture for documents.

Two renderings of one :class:`~sim.topology.graph.LabNetwork` (what both
backends realise, so the drawing shows the addresses a lab really uses,
router interfaces and link networks included):

* :func:`render_text` — a tree from each router, the way ``ip -br addr``
  meets ``tree``: the router's firewall rules (in order: first match wins),
  then each interface with what hangs off it: a LAN with its hosts (address,
  services with their ports) or a link to another router. LANs without a
  router come last.
* :func:`render_image` / :func:`render_svg` / :func:`draw` — the same picture
  drawn with networkx and matplotlib (Agg, no display needed): routers in a
  row joined by their links, each router's LANs hanging below it as buses
  with the hosts on them, labels with addresses and services, firewall rules
  written above their router. An optional ``highlight`` (a list of node
  names, e.g. the ``path`` of a firewall verdict) is drawn over the edges; the
  part after ``stopped_at`` (the router that dropped the packet) is dashed, as
  the way the packet would have gone.

matplotlib is an optional dependency (the ``notebooks`` extra): it is
imported only when a picture is drawn, and its absence is one clear
:class:`DrawError`.

SVG output keeps text as text and gives every drawn element a stable id, so
tests, notebooks and the TUI can find things in it: ``node-<name>`` (the
marker), ``label-<name>`` and ``address-<name>``, ``rules-<router>``,
``lan-<segment>`` and ``lan-label-<segment>``, ``edge-<node>--<segment>``
(a node's line to its LAN), ``edge-<router>--<router>`` (a link), and for a
highlighted path ``path-<i>`` (the i-th hop, from 0), ``hop-<n>`` (the hop
numbers, from 1) and ``stopped-at``.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

from sim.clock import format_duration
from sim.errors import NetworkError, SimError
from sim.fastclass import dataclass
from sim.topology.firewall import describe_rule
from sim.topology.graph import LabNetwork, Segment, router_order
from sim.topology.graph import layout as network_of
from sim.topology.model import Node, Services, Topology

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "FORMATS",
    "DrawError",
    "describe_services",
    "draw",
    "render_image",
    "render_svg",
    "render_text",
]

#: Picture formats :func:`render_image` writes.
FORMATS = ("svg", "png")

INSTALL_HINT = "pip install 'maillab[notebooks]' (or: pip install matplotlib)"


class DrawError(SimError):
    """A picture cannot be drawn or written; the message says why in one line."""


def _as_network(network: LabNetwork | Topology) -> LabNetwork:
    return network if isinstance(network, LabNetwork) else network_of(network)


# -- what a node runs -------------------------------------------------------------


def _durations(values: Iterable[float]) -> str:
    return " ".join(format_duration(v) for v in values)


def _alias(local: str) -> str:
    """An alias's key as a person reads it: ``*`` is the catch-all."""
    return "* (catch-all)" if local == "*" else local


def describe_services(node: Node, topology: Topology, *, short: bool = False) -> list[str]:
    """One phrase per service of ``node``, with the ports it listens on.

    ``short`` gives the few words a picture has room for; the long form is
    what :func:`render_text` prints.
    """
    services: Services = node.services
    resolver = topology.settings.resolver
    is_resolver = node.ip is not None and resolver is not None and node.ip.ip == resolver
    out: list[str] = []
    if services.dns is not None:
        role = " (the lab resolver)" if is_resolver else ""
        if short:
            out.append(f"dns :53{' resolver' if is_resolver else ''}")
        else:
            out.append(f"dns :53 udp+tcp{role}: zones {', '.join(services.dns.zones)}")
    if services.dnsbl is not None:
        bl = services.dnsbl
        if short:
            out.append(f"dnsbl :53 {bl.zone}")
        else:
            listed = "; ".join(
                f"{item.net} → {item.code}" + (f" ({item.reason})" if item.reason else "")
                for item in bl.listed
            )
            out.append(
                f"dnsbl :53 {bl.zone}: " + (f"lists {listed}" if listed else "lists nothing")
            )
    if services.mx is not None:
        mx = services.mx
        if short:
            role = " backup" if mx.backup else ""
            out.append(f"mx :25{role} {', '.join(mx.domains)}" + (" (down)" if mx.down else ""))
            out += [f"alias {_alias(local)} → {target}" for local, target in mx.forward]
        else:
            parts = [f"mx :25 for {', '.join(mx.domains)}"]
            if mx.hostname:
                parts.append(f"as {mx.hostname}")
            if mx.backup:
                parts.append("backup MX (queues for a more preferred MX)")
            if mx.mailboxes:
                parts.append(f"mailboxes {', '.join(mx.mailboxes)}")
            if mx.forward:
                aliases = ", ".join(f"{_alias(local)} → {target}" for local, target in mx.forward)
                parts.append(f"forwards {aliases}")
            checks = ", ".join(f"{c.check} {c.action}" for c in mx.checks)
            parts.append(f"checks {checks}" if checks else "no checks")
            if mx.trusted_clients:
                parts.append(f"trusts {', '.join(mx.trusted_clients)} (no checks)")
            if mx.dnsbl:
                parts.append(f"asks {', '.join(mx.dnsbl)}")
            if mx.greylist is not None:
                parts.append(f"greylist {format_duration(mx.greylist)}")
            if not mx.tls:
                parts.append("no STARTTLS")
            if mx.dmarc_discovery != "treewalk":
                parts.append(f"DMARC discovery {mx.dmarc_discovery}")
            if mx.down:
                parts.append("DOWN")
            out.append(", ".join(parts))
    if services.submission is not None:
        sub = services.submission
        ports = " ".join(f":{p}" for p in sub.ports)
        if short:
            out.append(f"submission {ports}")
        else:
            users = ", ".join(user for user, _ in sub.users)
            name = f" as {sub.hostname}" if sub.hostname else ""
            out.append(f"submission {ports}{name}, users {users}")
    if services.relay is not None:
        relay = services.relay
        smart = relay.smarthost
        if short:
            out.append(f"relay → {smart.host}:{smart.port}" if smart else "relay (queue)")
        else:
            parts = [
                f"relay retry {_durations(relay.retry)}",
                f"give up after {format_duration(relay.give_up)}",
            ]
            if smart is not None:
                parts.append(f"smarthost {smart.host}:{smart.port}")
            for domain, selector in relay.dkim:
                parts.append(f"DKIM-signs {domain} (selector {selector})")
            out.append(", ".join(parts))
    if services.mailbox is not None:
        users = ", ".join(user for user, _ in services.mailbox.users)
        out.append("mailbox :143 imap" if short else f"mailbox :143 (IMAP), users {users}")
    return out


# -- highlighted paths --------------------------------------------------------------


def _hops(
    network: LabNetwork, highlight: Sequence[str] | None, stopped_at: str | None
) -> tuple[list[str], int | None]:
    """Check a highlighted path; return it and the index where it stopped."""
    path = list(highlight or [])
    for name in path:
        network.node(name)  # raises NetworkError naming an unknown node
    for a, b in itertools.pairwise(path):
        if not network.graph.has_edge(a, b):
            raise NetworkError(f"{a} and {b} are not neighbours: not a path through the lab")
    stop: int | None = None
    if stopped_at is not None:
        network.node(stopped_at)
        if stopped_at in path:
            stop = path.index(stopped_at)
    return path, stop


def _hop_note(name: str, path: list[str], stop: int | None, stopped_at: str | None) -> str:
    notes = []
    if name in path:
        hop = path.index(name)
        after = stop is not None and hop > stop
        notes.append(f"hop {hop + 1}" + (" (not reached)" if after else ""))
    if name == stopped_at:
        notes.append("stopped here")
    return f"  «{', '.join(notes)}»" if notes else ""


# -- text ----------------------------------------------------------------------------


#: The glyphs this module writes, and their plain-ASCII stand-ins.
_ASCII = {"──": "--", "→": "->", "«": "<<", "»": ">>", "·": "|"}


@dataclass
class _Tree:
    text: str
    children: list[_Tree] = field(default_factory=list)

    def lines(self, ascii_only: bool, prefix: str = "") -> list[str]:
        tee, last, bar = ("|-- ", "`-- ", "|   ") if ascii_only else ("├── ", "└── ", "│   ")
        out = []
        for i, child in enumerate(self.children):
            final = i == len(self.children) - 1
            head, *rest = child.text.split("\n")
            out.append(prefix + (last if final else tee) + head)
            inner = prefix + ("    " if final else bar)
            out.extend(inner + line for line in rest)
            out.extend(child.lines(ascii_only, inner))
        return out


def _host_tree(network: LabNetwork, name: str, notes: dict[str, str]) -> _Tree:
    node = network.node(name)
    iface = network.interfaces(name)[0]
    head = f"{name} {iface.address}"
    if node.title:
        head += f": {node.title}"
    tree = _Tree(head + notes.get(name, ""))
    tree.children = [_Tree(s) for s in describe_services(node, network.topology)]
    return tree


def _router_tree(network: LabNetwork, name: str, notes: dict[str, str]) -> _Tree:
    node = network.node(name)
    tree = _Tree(
        f"{name} (router)" + (f": {node.title}" if node.title else "") + notes.get(name, "")
    )
    if node.firewall:
        rules = _Tree("firewall: rules in order, the first match wins, no match accepts")
        for i, rule in enumerate(node.firewall, 1):
            text = f"{i}. {describe_rule(rule)}"
            rules.children.append(_Tree(text + (f": {rule.note}" if rule.note else "")))
        tree.children.append(rules)
    for iface in network.interfaces(name):
        seg = network.segment(iface.segment)
        if seg.kind == "link":
            other = next(m for m in seg.members if m != name)
            far = next(i for i in network.interfaces(other) if i.segment == seg.id)
            tree.children.append(
                _Tree(f"{iface.name} {iface.address} ── link to {other} ({far.name} {far.address})")
            )
        else:
            lan = _Tree(f"{iface.name} {iface.address} ── LAN {seg.network}")
            lan.children = [_host_tree(network, h, notes) for h in seg.members if h != name]
            tree.children.append(lan)
    return tree


def render_text(
    network: LabNetwork | Topology,
    *,
    highlight: Sequence[str] | None = None,
    stopped_at: str | None = None,
    ascii_only: bool = False,
) -> str:
    """The topology as a text tree: routers, their rules, LANs, links, hosts.

    ``highlight`` (node names in path order) and ``stopped_at`` annotate the
    nodes of an experiment's path with their hop number.
    """
    net = _as_network(network)
    topo = net.topology
    path, stop = _hops(net, highlight, stopped_at)
    notes = {n: _hop_note(n, path, stop, stopped_at) for n in net.nodes()}
    settings = topo.settings
    facts = [
        f"resolver {settings.resolver}" if settings.resolver else "no resolver",
        f"time scale {settings.time_scale:g} lab seconds per second",
        f"connect timeout {format_duration(settings.connect_timeout)}",
    ]
    lines = [f"{topo.name}" + (f": {topo.title}" if topo.title else ""), "  " + " · ".join(facts)]
    root = _Tree("")
    for router in (r.name for r in topo.routers()):
        root.children.append(_router_tree(net, router, notes))
    loose = [s for s in net.segments if s.kind == "lan" and s.router is None]
    if loose:
        others = _Tree("LANs without a router (their hosts reach only each other)")
        for seg in loose:
            lan = _Tree(f"LAN {seg.network}")
            lan.children = [_host_tree(net, h, notes) for h in seg.members]
            others.children.append(lan)
        root.children.append(others)
    body = root.lines(ascii_only)
    # Top-level entries read better without a tree trunk on the left margin.
    lines += [""] + [line[4:] for line in body]
    text = "\n".join(lines) + "\n"
    if ascii_only:
        for glyph, plain in _ASCII.items():
            text = text.replace(glyph, plain)
    return text


# -- pictures: layout ------------------------------------------------------------------

_FONT = 8.0  # points
_CHAR_W = 0.6 * _FONT / 72  # DejaVu Sans Mono: every glyph is 0.6 em wide (inches)
_LINE_H = 1.35 * _FONT / 72
_FAMILY = "DejaVu Sans Mono"
_HOST_X = 0.45  # host marker, right of its router's trunk
_BUS_X = 0.2  # the LAN bus, between trunk and hosts
_COLUMN_GAP = 0.7
_COLOURS = {
    "router": "#4c72b0",
    "host": "#55a868",
    "synthetic": "#bbbbbb",
    "lan": "#333333",
    "edge": "#777777",
    "path": "#e8890c",
    "stop": "#c0392b",
    "rule": "#8c2d19",
}

Point = tuple[float, float]


def _width(lines: Iterable[str], size: float = _FONT) -> float:
    return max((len(line) for line in lines), default=0) * _CHAR_W * size / _FONT


@dataclass
class _Layout:
    """Where everything goes; one unit is one inch of the figure."""

    pos: dict[str, Point] = field(default_factory=dict)
    labels: dict[str, tuple[Point, list[str], str]] = field(default_factory=dict)  # xy, lines, va
    lan_pos: dict[str, Point] = field(default_factory=dict)
    lan_labels: dict[str, tuple[Point, str]] = field(default_factory=dict)
    # polylines from a node to its LAN's node (hosts) or to the LAN node (routers)
    spokes: dict[tuple[str, str], list[Point]] = field(default_factory=dict)
    links: dict[frozenset[str], list[Point]] = field(default_factory=dict)
    link_labels: list[tuple[Point, str, str]] = field(default_factory=list)  # xy, text, ha
    rules: dict[str, tuple[Point, list[str]]] = field(default_factory=dict)
    xmin: float = 0.0
    xmax: float = 1.0
    ymin: float = -1.0
    ymax: float = 0.0


def _host_lines(network: LabNetwork, name: str) -> list[str]:
    node = network.node(name)
    head = f"{name} {network.interfaces(name)[0].address}"
    return [head, *describe_services(node, network.topology, short=True)]


def _router_lines(network: LabNetwork, name: str) -> list[str]:
    node = network.node(name)
    return [name] + ([node.title] if node.title else [])


def _rule_lines(network: LabNetwork, name: str) -> list[str]:
    lines = []
    for i, rule in enumerate(network.node(name).firewall, 1):
        lines.append(f"{i}. {describe_rule(rule)}")
        if rule.note:
            lines.append(f"   {rule.note}")
    return lines


def _column(
    network: LabNetwork, layout: _Layout, x: float, router: str | None, lans: list[Segment]
) -> float:
    """Lay out one router (or none) and its LANs below it from ``x``; return
    the column's width."""
    width = 0.0
    y = 0.0
    if router is not None:
        layout.pos[router] = (x, 0.0)
        lines = _router_lines(network, router)
        # Labels sit right of the router's x, so that the vertical legs of
        # link arcs (drawn at that x) never cross them.
        layout.labels[router] = ((x + 0.12, 0.22), lines, "bottom")
        width = max(width, 0.12 + _width(lines))
        rules = _rule_lines(network, router)
        if rules:
            top = 0.22 + len(lines) * _LINE_H + 0.08
            layout.rules[router] = ((x + 0.12, top), rules)
            width = max(width, 0.12 + _width(rules))
        y = -0.45
    for seg in lans:
        lan_y = y
        layout.lan_pos[seg.id] = (x, lan_y)
        gw = ""
        if router is not None:
            iface = next(i for i in network.interfaces(router) if i.segment == seg.id)
            gw = f" gw {iface.address.ip} ({iface.name})"
            layout.spokes[router, seg.id] = [(x, 0.0), (x, lan_y)]
        text = f"LAN {seg.network}" + (gw or " (no router)")
        text += " (synthetic)" if seg.synthetic else ""
        layout.lan_labels[seg.id] = ((x + _BUS_X + 0.06, lan_y), text)
        width = max(width, _BUS_X + 0.06 + _width([text]))
        y = lan_y - 0.3
        for host in (m for m in seg.members if m != seg.router):
            lines = _host_lines(network, host)
            hy = y
            layout.pos[host] = (x + _HOST_X, hy)
            layout.labels[host] = ((x + _HOST_X + 0.15, hy + _LINE_H / 2), lines, "top")
            layout.spokes[host, seg.id] = [
                (x, lan_y),
                (x + _BUS_X, lan_y),
                (x + _BUS_X, hy),
                (x + _HOST_X, hy),
            ]
            width = max(width, _HOST_X + 0.15 + _width(lines))
            y = hy - max(len(lines), 1) * _LINE_H - 0.22
        y -= 0.15
    layout.ymin = min(layout.ymin, y)
    return width


def _layout(network: LabNetwork) -> _Layout:
    layout = _Layout()
    order = router_order(network)
    x = 0.0
    for router in order:
        lans = [s for s in network.segments if s.kind == "lan" and s.router == router]
        width = _column(network, layout, x, router, lans)
        x += width + _COLUMN_GAP
    for seg in (s for s in network.segments if s.kind == "lan" and s.router is None):
        width = _column(network, layout, x, None, [seg])
        x += width + _COLUMN_GAP
    layout.xmax = max(x - _COLUMN_GAP, 1.0)

    # Router links: straight between neighbours in the row, arcs over the
    # labels otherwise, each arc on its own level where spans overlap.
    index = {r: i for i, r in enumerate(order)}
    label_top = 0.0
    for router in order:
        (_, ly), lines, _ = layout.labels[router]
        top = ly + len(lines) * _LINE_H
        if router in layout.rules:
            (_, ry), rules = layout.rules[router]
            top = ry + len(rules) * _LINE_H
        label_top = max(label_top, top)
    levels: list[list[tuple[int, int]]] = []
    for seg in (s for s in network.segments if s.kind == "link"):
        a, b = sorted(seg.members, key=index.__getitem__)
        (xa, _), (xb, _) = layout.pos[a], layout.pos[b]
        ia = next(i for i in network.interfaces(a) if i.segment == seg.id)
        ib = next(i for i in network.interfaces(b) if i.segment == seg.id)
        if index[b] - index[a] == 1:
            layout.links[frozenset((a, b))] = [(xa, 0.0), (xb, 0.0)]
            layout.link_labels += [
                ((xa + 0.12, 0.04), str(ia.address.ip), "left"),
                ((xb - 0.12, 0.04), str(ib.address.ip), "right"),
                (((xa + xb) / 2, -0.16), str(seg.network), "center"),
            ]
            continue
        span = (index[a], index[b])
        level = next(
            (
                i
                for i, used in enumerate(levels)
                if all(span[1] <= lo or span[0] >= hi for lo, hi in used)
            ),
            len(levels),
        )
        if level == len(levels):
            levels.append([])
        levels[level].append(span)
        h = label_top + 0.25 + 0.3 * level
        layout.links[frozenset((a, b))] = [(xa, 0.0), (xa, h), (xb, h), (xb, 0.0)]
        layout.link_labels.append(
            (
                ((xa + xb) / 2, h + 0.04),
                f"{ia.address.ip} — {seg.network} — {ib.address.ip}",
                "center",
            )
        )
        layout.ymax = max(layout.ymax, h + 0.25)
    layout.ymax = max(layout.ymax, label_top + 0.15)
    return layout


def _polyline(layout: _Layout, a: str, b: str, network: LabNetwork) -> list[Point]:
    """The drawn line between two neighbouring nodes, from ``a`` to ``b``."""
    link = layout.links.get(frozenset((a, b)))
    if link is not None:
        return link if link[0] == layout.pos[a] else list(reversed(link))
    seg = network.graph.edges[a, b]["segment"]
    first = layout.spokes[a, seg]
    second = layout.spokes[b, seg]
    return list(reversed(first)) + second


# -- pictures: drawing -----------------------------------------------------------------


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise DrawError(f"drawing pictures needs matplotlib: {INSTALL_HINT}") from None
    return matplotlib


def _crop(layout: _Layout, names: Iterable[str], title: str) -> tuple[float, float, float, float]:
    """The box (x0, x1, y0, y1) around ``names`` and their labels: a picture
    cropped to an experiment's path, so that it stays legible on a page."""
    xs: list[float] = []
    ys: list[float] = []
    for name in names:
        x, y = layout.pos[name]
        xs.append(x)
        ys.append(y)
        if name in layout.labels:
            (lx, ly), lines, va = layout.labels[name]
            xs.append(lx + _width(lines))
            ys.append(ly + (len(lines) * _LINE_H if va == "bottom" else -len(lines) * _LINE_H))
        if name in layout.rules:
            (rx, ry), rules = layout.rules[name]
            xs.append(rx + _width(rules))
            ys.append(ry + len(rules) * _LINE_H + 0.1)
    margin = 0.35
    x0 = min(xs) - margin - 0.4
    x1 = max(max(xs), x0 + margin + _width([title], 10))
    # Whatever else starts inside the box is drawn whole, not cut at its edge.
    for (lx, _), lines, _ in layout.labels.values():
        if x0 <= lx <= x1:
            x1 = max(x1, lx + _width(lines))
    for (lx, _), text in layout.lan_labels.values():
        if x0 <= lx <= x1:
            x1 = max(x1, lx + _width([text], 7))
    return x0, x1 + margin, min(ys) - margin, max(ys) + margin + 0.3


def draw(
    network: LabNetwork | Topology,
    *,
    highlight: Sequence[str] | None = None,
    stopped_at: str | None = None,
    failed: Sequence[Sequence[str]] = (),
    crop: bool = False,
) -> Figure:
    """A matplotlib Figure of the topology (not attached to pyplot).

    ``failed``: connections that did not get through before the one drawn
    as ``highlight`` (the refused first MX): each drawn dashed in red with a
    ✗ where it stopped. ``crop``: only the part of the lab the highlighted
    path and the failed legs cross, so that it reads at page width.

    In Jupyter the returned figure displays itself; elsewhere save it with
    :func:`render_image`.
    """
    _matplotlib()
    from matplotlib.figure import Figure

    net = _as_network(network)
    path, stop = _hops(net, highlight, stopped_at)
    legs = [_hops(net, leg, None)[0] for leg in failed]
    layout = _layout(net)
    title = net.topology.name + (f": {net.topology.title}" if net.topology.title else "")
    margin = 0.35
    # Room on the left for the "stopped" mark of the first router.
    x0, x1 = layout.xmin - margin - 0.4, max(layout.xmax, _width([title], 10)) + margin
    y0, y1 = layout.ymin - margin, layout.ymax + margin + 0.3
    if crop and path:
        x0, x1, y0, y1 = _crop(layout, [*path, *(n for leg in legs for n in leg)], title)
    fig = Figure(figsize=(x1 - x0, y1 - y0))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_axis_off()
    ax.text(
        x0 + margin,
        y1 - 0.15,
        title,
        fontsize=10,
        fontweight="bold",
        va="top",
        family=_FAMILY,
        gid="title",
    )
    _draw_edges(ax, layout, net)
    _draw_nodes(ax, layout, net)
    _draw_labels(ax, layout, net)
    for i, leg in enumerate(legs):
        _draw_failed_leg(ax, layout, net, leg, i)
    if path:
        _draw_path(ax, layout, net, path, stop)
    if stopped_at is not None:
        x, y = layout.pos[stopped_at]
        ax.plot(
            [x], [y], marker="X", markersize=14, color=_COLOURS["stop"], zorder=6, gid="stopped-at"
        )
        ax.text(
            x - 0.12,
            y - 0.14,
            "stopped",
            color=_COLOURS["stop"],
            fontsize=7,
            ha="right",
            va="top",
            family=_FAMILY,
            zorder=6,
            gid="stopped-at-label",
            bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none"},
        )
    return fig


def _draw_edges(ax: Axes, layout: _Layout, network: LabNetwork) -> None:
    for (node, seg), line in layout.spokes.items():
        xs, ys = zip(*line, strict=True)
        ax.plot(
            xs,
            ys,
            color=_COLOURS["edge"],
            linewidth=1.2,
            zorder=1,
            solid_capstyle="round",
            gid=f"edge-{node}--{seg}",
        )
    for pair, line in layout.links.items():
        a, b = sorted(pair)
        xs, ys = zip(*line, strict=True)
        ax.plot(xs, ys, color=_COLOURS["router"], linewidth=2.0, zorder=1, gid=f"edge-{a}--{b}")
    for (x, y), text, ha in layout.link_labels:
        ax.text(
            x,
            y,
            text,
            fontsize=6.5,
            ha=ha,
            va="bottom" if y >= 0 else "top",
            color=_COLOURS["router"],
            family=_FAMILY,
            zorder=3,
        )


def _draw_nodes(ax: Axes, layout: _Layout, network: LabNetwork) -> None:
    graph: nx.Graph = nx.Graph()
    graph.add_nodes_from(layout.pos)
    for name, _xy in layout.pos.items():
        kind = network.node(name).kind
        colour = _COLOURS["synthetic"] if network.is_synthetic(name) else _COLOURS[kind]
        collection = nx.draw_networkx_nodes(
            graph,
            layout.pos,
            nodelist=[name],
            ax=ax,
            node_color=colour,
            node_shape="o" if kind == "router" else "s",
            node_size=260 if kind == "router" else 110,
            edgecolors="#222222",
            linewidths=0.8,
        )
        collection.set_gid(f"node-{name}")
        collection.set_zorder(4)
    for seg_id, (x, y) in layout.lan_pos.items():
        ax.plot(
            [x], [y], marker="s", markersize=4, color=_COLOURS["lan"], zorder=3, gid=f"lan-{seg_id}"
        )


def _draw_labels(ax: Axes, layout: _Layout, network: LabNetwork) -> None:
    for name, ((x, y), lines, va) in layout.labels.items():
        # The name alone first (bold, and its own <text> in SVG), then the rest.
        head, rest = lines[0], lines[1:]
        kind = network.node(name).kind
        if va == "bottom":  # routers: name on top of their title
            ax.text(
                x,
                y + len(rest) * _LINE_H,
                head,
                fontsize=_FONT,
                fontweight="bold",
                va="bottom",
                family=_FAMILY,
                gid=f"label-{name}",
                zorder=5,
            )
            if rest:
                ax.text(
                    x,
                    y,
                    "\n".join(rest),
                    fontsize=_FONT,
                    va="bottom",
                    family=_FAMILY,
                    color="#444444",
                    linespacing=1.35,
                    zorder=5,
                )
            continue
        name_part, _, address = head.partition(" ")
        ax.text(
            x,
            y,
            name_part,
            fontsize=_FONT,
            fontweight="bold",
            va="top",
            family=_FAMILY,
            gid=f"label-{name}",
            zorder=5,
            color="#777777" if network.is_synthetic(name) else "black",
        )
        ax.text(
            x + (len(name_part) + 1) * _CHAR_W,
            y,
            address,
            fontsize=_FONT,
            va="top",
            family=_FAMILY,
            zorder=5,
            gid=f"address-{name}",
        )
        if rest:
            ax.text(
                x,
                y - 0.95 * _LINE_H,
                "\n".join(rest),
                fontsize=_FONT,
                va="top",
                family=_FAMILY,
                color="#2b5d34" if kind == "host" else "#444444",
                linespacing=1.35,
                zorder=5,
            )
    for name, ((x, y), rules) in layout.rules.items():
        ax.text(
            x,
            y,
            "\n".join(rules),
            fontsize=_FONT,
            va="bottom",
            family=_FAMILY,
            color=_COLOURS["rule"],
            linespacing=1.35,
            zorder=5,
            gid=f"rules-{name}",
            bbox={
                "boxstyle": "round,pad=0.25",
                "facecolor": "#fbeee6",
                "edgecolor": _COLOURS["rule"],
                "linewidth": 0.6,
            },
        )
    for seg_id, ((x, y), text) in layout.lan_labels.items():
        ax.text(
            x,
            y,
            text,
            fontsize=7,
            va="center",
            family=_FAMILY,
            color="#555555",
            gid=f"lan-label-{seg_id}",
            zorder=5,
        )


def _draw_path(
    ax: Axes, layout: _Layout, network: LabNetwork, path: list[str], stop: int | None
) -> None:
    for i, (a, b) in enumerate(itertools.pairwise(path)):
        xs, ys = zip(*_polyline(layout, a, b, network), strict=True)
        reached = stop is None or i < stop
        ax.plot(
            xs,
            ys,
            color=_COLOURS["path"],
            linewidth=4.0 if reached else 2.5,
            linestyle="-" if reached else (0, (3, 2)),
            alpha=0.85 if reached else 0.6,
            zorder=2,
            solid_capstyle="round",
            gid=f"path-{i}",
        )
    for i, name in enumerate(path):
        x, y = layout.pos[name]
        # Hop numbers in a white disc, larger than the labels: they must stay
        # readable when a wide lab is shrunk to a page.
        ax.text(
            x - 0.05,
            y + 0.1,
            str(i + 1),
            fontsize=10,
            ha="right",
            va="bottom",
            color=_COLOURS["path"],
            fontweight="bold",
            family=_FAMILY,
            zorder=7,
            gid=f"hop-{i + 1}",
            bbox={
                "boxstyle": "circle,pad=0.15",
                "facecolor": "white",
                "edgecolor": _COLOURS["path"],
                "linewidth": 1.2,
            },
        )


def _draw_failed_leg(
    ax: Axes, layout: _Layout, network: LabNetwork, leg: list[str], i: int
) -> None:
    """A connection that did not get through: dashed red, ✗ at its end."""
    for j, (a, b) in enumerate(itertools.pairwise(leg)):
        xs, ys = zip(*_polyline(layout, a, b, network), strict=True)
        ax.plot(
            xs,
            ys,
            color=_COLOURS["stop"],
            linewidth=2.5,
            linestyle=(0, (2, 2)),
            alpha=0.8,
            zorder=2,
            gid=f"failed-{i}-{j}",
        )
    x, y = layout.pos[leg[-1]]
    ax.plot(
        [x], [y], marker="X", markersize=12, color=_COLOURS["stop"], zorder=6, gid=f"failed-{i}"
    )


def _fonts_as_text() -> dict[str, Any]:
    # Keep SVG text as <text> elements (searchable, selectable) rather than
    # glyph outlines; a stable hash salt keeps the SVG identical run to run.
    return {"svg.fonttype": "none", "svg.hashsalt": "maillab"}


def render_svg(
    network: LabNetwork | Topology,
    *,
    highlight: Sequence[str] | None = None,
    stopped_at: str | None = None,
    failed: Sequence[Sequence[str]] = (),
    crop: bool = False,
) -> str:
    """The topology as an SVG document (text kept as text)."""
    mpl = _matplotlib()
    with mpl.rc_context(_fonts_as_text()):
        fig = draw(network, highlight=highlight, stopped_at=stopped_at, failed=failed, crop=crop)
        return figure_svg(fig)


def figure_svg(fig: Figure) -> str:
    """A figure as SVG with text kept as text (see :func:`_fonts_as_text`)."""
    mpl = _matplotlib()
    buffer = io.StringIO()
    with mpl.rc_context(_fonts_as_text()):
        fig.savefig(buffer, format="svg")
    return buffer.getvalue()


def render_image(
    network: LabNetwork | Topology,
    path: str | Path,
    format: str | None = None,
    *,
    highlight: Sequence[str] | None = None,
    stopped_at: str | None = None,
    dpi: int = 150,
) -> Path:
    """Draw the topology into ``path`` as ``svg`` or ``png`` (by default
    from the file's suffix); returns the path written."""
    out = Path(path)
    fmt = (format or out.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise DrawError(
            f"cannot draw {fmt or 'a file without a suffix'!r}: use one of {', '.join(FORMATS)}"
        )
    mpl = _matplotlib()
    with mpl.rc_context(_fonts_as_text()):
        fig = draw(network, highlight=highlight, stopped_at=stopped_at)
        try:
            fig.savefig(out, format=fmt, dpi=dpi)
        except OSError as err:
            raise DrawError(f"cannot write {out}: {err.strerror or err}") from None
    return out
