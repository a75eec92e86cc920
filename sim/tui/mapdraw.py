"""A compact text map of a lab network, with the way a packet went drawn on it.

The map is for a terminal of 80 columns: routers in a row joined by their
links, each router's hosts hanging below it (the LAN it is the gateway of)::

    [isp]──────────[internet]
     ├ laptop       ├ ns
     └ smtp-isp     ├ mx-qq
                    └ mta

When the row does not fit, routers are stacked, each with its links named.

A :class:`Walk` is one packet's way through the lab, read from the ``net``
events of a trace (``data["path"]``); a firewall that dropped or rejected it
(``data["router"]``), a port where nothing listens, or a mail server that
answered 4xx/5xx (the ``smtp`` replies) is where it *stopped*; for a packet
stopped on its way, the rest of the route it would have taken is drawn as
``onward``. Pure functions: the widget in :mod:`sim.tui.topo_map` renders
them and lets the student step through the walks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any

from rich.style import StyleType
from rich.table import Table
from rich.text import Text

from sim.errors import SimError
from sim.topology.graph import LabNetwork, router_order
from sim.trace import TraceEvent

__all__ = [
    "MapStyles",
    "Walk",
    "describe_walk",
    "draw_map",
    "message_walks",
    "walks_from_trace",
    "walks_heading",
]


@dataclass(frozen=True)
class Walk:
    """One packet's way through the lab."""

    #: ``tcp 192.0.2.10 → 203.0.113.25:25``
    label: str
    #: The nodes it passed, its source first.
    nodes: tuple[str, ...]
    proto: str = "tcp"
    port: int | None = None
    #: The node where it stopped (a router's firewall, a closed port, the mail
    #: server that refused the message); None when it arrived.
    stopped_at: str | None = None
    #: Why it stopped, in words.
    reason: str = ""
    #: The route it would have taken on from ``stopped_at`` (that node first).
    onward: tuple[str, ...] = ()

    def edges(self) -> set[frozenset[str]]:
        return _edges(self.nodes)

    def onward_edges(self) -> set[frozenset[str]]:
        return _edges(self.onward)


def _edges(nodes: Sequence[str]) -> set[frozenset[str]]:
    return {frozenset((a, b)) for a, b in pairwise(nodes) if a != b}


# -- reading walks from a trace ---------------------------------------------------


def walks_from_trace(
    events: Iterable[TraceEvent],
    network: LabNetwork | None = None,
    result: Mapping[str, Any] | None = None,
    source: str | None = None,
) -> list[Walk]:
    """Every packet of the trace that the network judged, in order; repeats
    of one packet (a resolver asked three times) count once.

    ``result`` (the experiment's JSON) and ``source`` (the node that ran it)
    let a message refused before any connection (a null MX, RFC 7505) show
    as stopped at its source.
    """
    walks: list[Walk] = []
    keys: list[tuple[Any, ...]] = []
    for e in events:
        d = e.data
        if e.kind == "net":
            _add_net(walks, keys, e, d, network)
        elif e.kind == "smtp" and d.get("role") == "client":
            _mark_refusal(walks, d)
    outcome = (result or {}).get("outcome")
    if outcome in ("rejected", "bounced") and source and not any(w.stopped_at for w in walks):
        reply = (result or {}).get("reply") or {}
        said = " ".join(str(reply[k]) for k in ("code", "enhanced", "text") if reply.get(k))
        stage = (result or {}).get("stage") or "?"
        walks.append(
            Walk(
                f"{source} gave up before connecting",
                (source,),
                "",
                None,
                source,
                f"{outcome} at {stage}: {said}".strip(": "),
            )
        )
    return walks


def _add_net(
    walks: list[Walk],
    keys: list[tuple[Any, ...]],
    e: TraceEvent,
    d: Mapping[str, Any],
    network: LabNetwork | None,
) -> None:
    verdict = str(d.get("verdict") or "")
    proto = str(d.get("proto") or "?")
    port = d.get("port") if isinstance(d.get("port"), int) else None
    label = f"{proto} {d.get('src')} → {d.get('dst')}:{port}"
    path = tuple(str(n) for n in d.get("path") or ())
    if verdict == "closed":
        # A reset from the destination: the packet arrived, nothing listens.
        for i in range(len(walks) - 1, -1, -1):
            w = walks[i]
            if w.label == label and w.stopped_at is None:
                walks[i] = replace(
                    w, stopped_at=w.nodes[-1], reason=f"nothing listens on {proto}/{port}"
                )
                break
        return
    if not path:
        path = (e.node,)
    key = (label, verdict, path)
    if verdict == "accept" and key in keys:
        return
    keys.append(key)
    if verdict == "accept":
        walks.append(Walk(label, path, proto, port))
        return
    stopped = str(d.get("router") or path[-1])
    rule = d.get("rule")
    reason = {"drop": "dropped", "reject": "rejected", "unreachable": "unreachable"}.get(
        verdict, verdict
    )
    if d.get("router"):
        reason += f" at {stopped}"
    if isinstance(rule, int):
        reason += f" by rule {rule + 1}"
    if d.get("rule_text"):
        reason += f" ({d['rule_text']})"
    if d.get("note"):
        reason += f": {d['note']}"
    onward: tuple[str, ...] = ()
    if network is not None and d.get("dst"):
        try:
            whole = network.route(path[0], str(d["dst"]))
        except (SimError, ValueError):
            whole = None
        if whole and stopped in whole:
            onward = whole[whole.index(stopped) :]
    walks.append(Walk(label, path, proto, port, stopped, reason, onward))


def _mark_refusal(walks: list[Walk], d: Mapping[str, Any]) -> None:
    """A 4xx/5xx from a mail server stops the message there (the MX that rejected)."""
    code = d.get("code")
    if not isinstance(code, int) or code < 400:
        return
    peer = str(d.get("peer") or "")
    address, _, port = peer.rpartition(":")
    for i in range(len(walks) - 1, -1, -1):
        w = walks[i]
        if w.proto == "tcp" and w.label.endswith(f"→ {address}:{port}"):
            if w.stopped_at is None:
                said = " ".join(str(d[k]) for k in ("code", "enhanced", "text") if d.get(k))
                kind = "deferred" if code < 500 else "refused"
                reason = f"{kind} the message at {_command_stage(d.get('command'))}: {said}"
                walks[i] = replace(w, stopped_at=w.nodes[-1], reason=reason)
            return


def _command_stage(command: Any) -> str:
    """Where in the dialogue a reply came, from the client's command as the
    trace records it: ``RCPT TO:<bob@...>`` → ``RCPT``; the final dot, which
    the trace shows as ``(message, 536 bytes) .``, → ``the end of DATA``
    (RFC 5321 §4.1.1.4: the reply to the dot is the verdict on the message);
    no command (the greeting) → ``connect``."""
    text = str(command or "").strip()
    if not text:
        return "connect"
    if text.startswith("(message"):
        return "the end of DATA"
    return text.split(" ")[0].rstrip(":").upper()


def message_walks(walks: Sequence[Walk]) -> list[Walk]:
    """The walks that carried the message: TCP connections (SMTP), or, for an
    experiment that made none (``dig``), everything; plus any stop."""
    chosen = [w for w in walks if w.proto == "tcp" or w.stopped_at is not None]
    return chosen or list(walks)


def describe_walk(walk: Walk, styles: MapStyles | None = None) -> Table:
    """Lines under the map: the packet, its path and its fate (wrapped text
    stays indented under its line)."""
    s = styles or MapStyles()
    grid = Table.grid(padding=(0, 1, 0, 0))
    grid.add_column(width=1)
    grid.add_column(ratio=1)
    grid.add_row(Text("▸", style=s.dim), Text(walk.label, style="bold"))
    path = Text()
    for i, node in enumerate(walk.nodes):
        if i:
            path.append(" → ", style=s.path)
        path.append(node, style=s.stop if node == walk.stopped_at else s.path)
    if walk.stopped_at is None:
        path.append("  ✓ arrived", style=s.path)
    else:
        path.append("  ✗ ", style=s.stop)
        path.append(walk.reason, style=s.stop)
    grid.add_row("", path)
    if walk.stopped_at is not None and len(walk.onward) > 1:
        onward = Text("it would have gone on: ", style=s.onward)
        onward.append(" ┄ ".join(walk.onward), style=s.onward)
        grid.add_row("", onward)
    return grid


def walks_heading(shown: Sequence[Walk]) -> str:
    """What the highlighted walks are, in words."""
    tcp = [w for w in shown if w.proto == "tcp"]
    if tcp:
        return f"The message: {len(tcp)} connection{'s' if len(tcp) != 1 else ''}"
    if shown and all(len(w.nodes) == 1 and w.stopped_at for w in shown):
        return f"The message never left {shown[0].nodes[0]}"
    return f"{len(shown)} packet{'s' if len(shown) != 1 else ''}"


# -- drawing ------------------------------------------------------------------------


@dataclass(frozen=True)
class MapStyles:
    """Rich styles for the parts of the map (the widget takes them from its CSS)."""

    router: StyleType = "bold"
    host: StyleType = ""
    path: StyleType = "bold green"
    stop: StyleType = "bold red"
    onward: StyleType = "dim"
    dim: StyleType = "dim"


@dataclass
class _Column:
    router: str | None
    label: str
    hosts: list[tuple[str, str]]  # (name, address)


def _columns(network: LabNetwork) -> list[_Column]:
    topology = network.topology
    order = router_order(network)
    columns = [_Column(r, r, []) for r in order]
    by_router = {c.router: c for c in columns}
    loose: dict[str, _Column] = {}
    for node in topology.hosts():
        address = str(node.ip.ip) if node.ip is not None else ""
        if node.gateway is not None and node.gateway in by_router:
            by_router[node.gateway].hosts.append((node.name, address))
        else:
            lan = str(node.ip.network) if node.ip is not None else "no address"
            column = loose.setdefault(lan, _Column(None, f"LAN {lan}", []))
            column.hosts.append((node.name, address))
    return columns + list(loose.values())


def _router_links(network: LabNetwork, routers: Sequence[str]) -> dict[str, set[str]]:
    graph = network.graph
    return {
        r: {n for n in graph.neighbors(r) if n in routers} if r in graph else set() for r in routers
    }


@dataclass(frozen=True)
class _Marks:
    nodes: frozenset[str]
    edges: frozenset[frozenset[str]]
    stops: frozenset[str]
    onward: frozenset[frozenset[str]]
    onward_nodes: frozenset[str]

    @classmethod
    def of(cls, walks: Sequence[Walk]) -> _Marks:
        return cls(
            frozenset(n for w in walks for n in w.nodes),
            frozenset(e for w in walks for e in w.edges()),
            frozenset(w.stopped_at for w in walks if w.stopped_at),
            frozenset(e for w in walks for e in w.onward_edges()),
            frozenset(n for w in walks for n in w.onward[1:]),
        )

    def node_style(self, name: str, s: MapStyles, base: StyleType) -> StyleType:
        if name in self.stops:
            return s.stop
        if name in self.nodes:
            return s.path
        if name in self.onward_nodes:
            return s.onward
        return base

    def edge_style(self, a: str, b: str, s: MapStyles, base: StyleType) -> StyleType:
        edge = frozenset((a, b))
        if edge in self.edges:
            return s.path
        if edge in self.onward:
            return s.onward
        return base


def draw_map(
    network: LabNetwork,
    width: int,
    walks: Sequence[Walk] = (),
    styles: MapStyles | None = None,
) -> Text:
    """The map, at most ``width`` columns wide when it can be, with ``walks``
    highlighted: their nodes and links in the path style, the nodes where they
    stopped in the stop style (and marked ✗), the rest of the way in the onward style."""
    s = styles or MapStyles()
    marks = _Marks.of(walks)
    columns = _columns(network)
    for with_addresses in (True, False):
        text = _horizontal(network, columns, marks, s, with_addresses, width)
        if text is not None:
            return text
    return _vertical(network, columns, marks, s, width)


_GAP = 4


def _router_label(name: str, marks: _Marks) -> str:
    return f"[{name}]" + (" ✗ " if name in marks.stops else "")


def _host_label(name: str, address: str, marks: _Marks, with_address: bool) -> str:
    label = name + (" ✗" if name in marks.stops else "")
    return f"{label} {address}" if with_address and address else label


def _horizontal(
    network: LabNetwork,
    columns: list[_Column],
    marks: _Marks,
    s: MapStyles,
    with_addresses: bool,
    width: int,
) -> Text | None:
    links = _router_links(network, [c.router for c in columns if c.router])
    widths = []
    for c in columns:
        label = _router_label(c.router, marks) if c.router else f"({c.label})"
        hosts = [3 + len(_host_label(n, a, marks, with_addresses)) for n, a in c.hosts]
        widths.append(max([len(label), *hosts]))
    total = sum(widths) + _GAP * (len(columns) - 1)
    if total > width:
        return None
    text = Text(no_wrap=True, overflow="crop")
    # The row of routers and their links.
    for i, c in enumerate(columns):
        if c.router is None:
            text.append(f"({c.label})".ljust(widths[i] + (_GAP if i < len(columns) - 1 else 0)))
            continue
        label = _router_label(c.router, marks)
        text.append(label, style=marks.node_style(c.router, s, s.router))
        pad = widths[i] - len(label)
        if i + 1 < len(columns):
            nxt = columns[i + 1].router
            if nxt is not None and nxt in links[c.router]:
                onward = frozenset((c.router, nxt)) in marks.onward
                style = marks.edge_style(c.router, nxt, s, "")
                char = "┄" if onward and frozenset((c.router, nxt)) not in marks.edges else "─"
                text.append(char * (pad + _GAP), style=style)
            else:
                text.append(" " * (pad + _GAP))
    # Links between routers that are not neighbours in the row.
    extra = []
    placed = [c.router for c in columns]
    for i, c in enumerate(columns):
        if c.router is None:
            continue
        for other in sorted(links[c.router]):
            j = placed.index(other)
            if j > i + 1:
                extra.append((c.router, other))
    rows = max((len(c.hosts) for c in columns), default=0)
    for row in range(rows):
        text.append("\n")
        for i, c in enumerate(columns):
            cell = widths[i] + (_GAP if i < len(columns) - 1 else 0)
            if row >= len(c.hosts):
                text.append(" " * cell)
                continue
            name, address = c.hosts[row]
            branch = "└" if row == len(c.hosts) - 1 else "├"
            gateway = c.router or ""
            text.append(" ")
            text.append(f"{branch} ", style=marks.edge_style(name, gateway, s, s.dim))
            label = _host_label(name, address, marks, with_addresses)
            shown_name = label[: len(name) + (2 if name in marks.stops else 0)]
            text.append(shown_name, style=marks.node_style(name, s, s.host))
            text.append(label[len(shown_name) :], style=s.dim)
            text.append(" " * (cell - 3 - len(label)))
    for a, b in extra:
        text.append("\n")
        text.append(f"[{a}]", style=marks.node_style(a, s, s.router))
        text.append(" ──── ", style=marks.edge_style(a, b, s, ""))
        text.append(f"[{b}]", style=marks.node_style(b, s, s.router))
        text.append(" (also linked)", style=s.dim)
    return _rstrip_lines(text)


def _vertical(
    network: LabNetwork, columns: list[_Column], marks: _Marks, s: MapStyles, width: int
) -> Text:
    links = _router_links(network, [c.router for c in columns if c.router])
    text = Text()
    for i, c in enumerate(columns):
        if i:
            text.append("\n")
        if c.router is None:
            text.append(f"({c.label})", style=s.dim)
        else:
            text.append(
                _router_label(c.router, marks), style=marks.node_style(c.router, s, s.router)
            )
            for j, other in enumerate(sorted(links[c.router])):
                text.append(" ── " if j == 0 else ", ", style=s.dim)
                text.append(other, style=marks.edge_style(c.router, other, s, ""))
        name_width = max((len(n) for n, _ in c.hosts), default=0) + 2
        for row, (name, address) in enumerate(c.hosts):
            branch = "└" if row == len(c.hosts) - 1 else "├"
            text.append("\n ")
            text.append(f"{branch} ", style=marks.edge_style(name, c.router or "", s, s.dim))
            label = name + (" ✗" if name in marks.stops else "")
            text.append(label, style=marks.node_style(name, s, s.host))
            if address and 3 + name_width + len(address) <= width:
                text.append(" " * (name_width - len(label)) + address, style=s.dim)
    return text


def _rstrip_lines(text: Text) -> Text:
    lines = text.split("\n", allow_blank=True)
    out = Text(no_wrap=True, overflow="crop")
    for i, line in enumerate(lines):
        if i:
            out.append("\n")
        line.rstrip()
        out.append_text(line)
    return out
