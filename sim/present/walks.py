"""The way packets went, read from a trace: the one reader of paths.

Every picture of where a message or a connection went (the TUI's map in
:mod:`sim.tui.mapdraw`, the notebook's :func:`sim.notebook.journey` and its
drawing) reads it here, so that they cannot disagree about a trace.

A :class:`Walk` is one packet the network judged, read from a ``net`` event
(``data["path"]``, the nodes it passed). It *stopped* where a router's
firewall dropped or rejected it (``data["router"]``), where nothing listened
(a ``closed`` event after it), or at a mail server that answered 4xx/5xx (an
``smtp`` client event with that code); for a packet stopped on its way the
rest of the route it would have taken is its ``onward``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from itertools import pairwise
from typing import Any

from sim.errors import SimError
from sim.fastclass import dataclass
from sim.topology.graph import LabNetwork
from sim.trace import TraceEvent

__all__ = ["Walk", "message_walks", "read_walks", "walks_from_trace"]


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
    #: The network's verdict on the packet (``accept``, ``drop``, ``reject``,
    #: ``unreachable``); an accepted packet may still stop at a closed port.
    verdict: str = "accept"
    #: It arrived, and the mail server there refused or deferred the message.
    refused: bool = False

    def edges(self) -> set[frozenset[str]]:
        return _edges(self.nodes)

    def onward_edges(self) -> set[frozenset[str]]:
        return _edges(self.onward)


def _edges(nodes: Sequence[str]) -> set[frozenset[str]]:
    return {frozenset((a, b)) for a, b in pairwise(nodes) if a != b}


def read_walks(events: Iterable[TraceEvent], network: LabNetwork | None = None) -> list[Walk]:
    """Every packet of the trace that the network judged, in order; a packet
    repeated at once (a resolver asking again, a client retrying the same
    connection) counts once. ``network`` gives a stopped packet its onward route."""
    walks: list[Walk] = []
    last: tuple[Any, ...] | None = None
    for e in events:
        d = e.data
        if e.kind == "net":
            last = _add_net(walks, last, e, d, network)
        elif e.kind == "smtp" and d.get("role") == "client":
            _mark_refusal(walks, d)
    return walks


def walks_from_trace(
    events: Iterable[TraceEvent],
    network: LabNetwork | None = None,
    result: Mapping[str, Any] | None = None,
    source: str | None = None,
) -> list[Walk]:
    """:func:`read_walks`, and a message refused before any connection (a
    null MX, RFC 7505) as a walk stopped at its ``source`` (the node that ran
    the experiment whose JSON is ``result``)."""
    walks = read_walks(events, network)
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
    last: tuple[Any, ...] | None,
    e: TraceEvent,
    d: Mapping[str, Any],
    network: LabNetwork | None,
) -> tuple[Any, ...] | None:
    """Add the walk of one ``net`` event; returns the key of the last packet added."""
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
        return last
    if not path:
        path = (e.node,)
    key = (label, verdict, path)
    if verdict == "accept" and key == last:
        return last
    if verdict == "accept":
        walks.append(Walk(label, path, proto, port))
        return key
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
    walks.append(Walk(label, path, proto, port, stopped, reason, onward, verdict))
    return key


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
                walks[i] = replace(w, stopped_at=w.nodes[-1], reason=reason, refused=True)
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
