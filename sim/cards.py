"""Short ``repr`` and ``_repr_html_`` for results, traces and the running lab.

Jupyter shows the value of a cell's last line with ``_repr_html_`` when an
object has one, and with ``repr`` otherwise. The dataclass ``repr`` of a
result prints every field, the trace included (tens of kilobytes); these
give one line of text, and in a notebook a card (outcome, stage, whose reply
it is, checks in the order the receiver ran them), with the sequence
diagram, the DMARC panel and the retry timeline where the result has them.

The classes sit below the presentation layer (docs/architecture.md) and do
not import it: they find these functions by name when a notebook displays
them (:func:`sim.trace.presented`), long after every module is importable.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from sim.trace import Trace

if TYPE_CHECKING:
    from sim.experiments import ExperimentResult
    from sim.hosting.runtime import Lab

__all__ = [
    "lab_html",
    "lab_repr",
    "result_html",
    "result_repr",
    "trace_html",
    "trace_repr",
]


#: Steps a sequence diagram in a notebook shows at most (the latest ones).
MAX_STEPS = 400


def _reply_text(reply: dict[str, Any] | None) -> str:
    if not reply:
        return ""
    parts = [str(reply.get("code") or reply.get("status") or ""), str(reply.get("enhanced") or "")]
    parts.append(str(reply.get("text") or "").split("\n", 1)[0])
    return " ".join(p for p in parts if p)


# -- one line of text -------------------------------------------------------------------


def result_repr(result: ExperimentResult) -> str:
    name = type(result).__name__
    outcome = getattr(result, "outcome", None)
    events = f"{len(result.trace)} trace events"
    if name == "SendResult":
        head = str(outcome)
        if getattr(result, "stage", None):
            head += f" at {result.stage}"  # type: ignore[attr-defined]
        said = _reply_text(getattr(result, "reply", None))
        if said:
            head += f": {said[:70]}"
        rcpts = ", ".join(getattr(result, "rcpts", []))
        return f"<SendResult {head} (<{getattr(result, 'mail_from', '')}> → {rcpts}), {events}>"
    if name == "DigResult":
        d = result.body()
        answers = [a.get("data") for a in d.get("answers", [])]
        shown = ", ".join(str(a) for a in answers[:3]) + (" …" if len(answers) > 3 else "")
        q = d["question"]
        return f"<DigResult {q['name']} {q['type']} {d['rcode']}: {shown or 'no answer'}, {events}>"
    if name == "ConnectResult":
        d = result.body()
        more = f" ({d['error']})" if d.get("error") else ""
        return f"<ConnectResult {d['dst']}:{d['port']} {d['outcome']}{more}, {events}>"
    if name == "ReadResult":
        d = result.body()
        state = (
            f"{len(d['messages'])} messages"
            if d.get("error") is None
            else f"failed at {d.get('stage')}: {_reply_text(d.get('reply'))[:60]}"
        )
        return f"<ReadResult {d['protocol']} {d['user']} {d['folder']}: {state}, {events}>"
    return f"<{name} {outcome or ''}, {events}>"


def trace_repr(trace: Trace) -> str:
    kinds: dict[str, int] = {}
    for event in trace.events:
        kinds[event.kind] = kinds.get(event.kind, 0) + 1
    counted = ", ".join(f"{n} {k}" for k, n in kinds.items())
    span = ""
    if trace.events:
        times = [e.t for e in trace.events]
        span = f", lab time {min(times):.1f}-{max(times):.1f}"
    return f"<Trace {trace.id}: {len(trace)} events ({counted}){span}>"


def lab_repr(lab: Lab) -> str:
    backend = lab.backend
    state = "stopped" if getattr(lab, "_stopped", False) else "running"
    hosts = len(lab.topology.hosts())
    routers = len(lab.topology.routers())
    return (
        f"<Lab {lab.topology.name} on {backend.name}, {state}: {hosts} hosts, {routers} routers; "
        "lab.commands(node, service) lists what lab.control can do>"
    )


# -- HTML ----------------------------------------------------------------------------------


def result_html(result: ExperimentResult) -> str:
    """The result card, then the pictures that apply to it."""
    from sim.experiments.alignment import alignment_of
    from sim.notebook import show_result
    from sim.present.sequence import sequence_of
    from sim.present.timeline import timeline_of

    parts = [show_result(result)._repr_html_()]
    panel = alignment_of(result)
    if panel is not None:
        parts.append(panel._repr_html_())
    timeline = timeline_of(result)
    if timeline is not None and len(timeline.attempts) > 1:
        parts.append(timeline.to_svg())
    sequence = sequence_of(result).tail(MAX_STEPS)
    if sequence.steps:
        parts.append(
            "<details><summary>sequence diagram "
            f"({len(sequence.steps)} steps)</summary>{sequence.to_svg()}</details>"
        )
    return '<div class="maillab-rich">' + "".join(parts) + "</div>"


def trace_html(trace: Trace) -> str:
    from sim.notebook import trace_table
    from sim.present.sequence import sequence_of

    sequence = sequence_of(trace).tail(MAX_STEPS)
    return (
        f"<div><b>{html.escape(trace_repr(trace))}</b>"
        f"{sequence.to_svg() if sequence.steps else ''}"
        f"<details><summary>events</summary>{trace_table(trace)._repr_html_()}</details></div>"
    )


def lab_html(lab: Lab) -> str:
    """The lab as a node map: every node with its address, services and endpoints."""
    e = html.escape
    try:
        endpoints = lab.endpoints()
    except Exception:  # a stopped lab has none: show the map without them
        endpoints = []
    by_node: dict[str, list[str]] = {}
    for ep in endpoints:
        where = f" → {ep.local}" if ep.local else ""
        if ep.blocked:
            where = f" (blocked: {ep.blocked})"
        by_node.setdefault(ep.node, []).append(f"{ep.service} {ep.lab}/{ep.proto}{where}")
    cell = "padding:2px 8px;text-align:left;vertical-align:top;border-bottom:1px solid #ddd"
    rows = []
    for node in lab.topology.nodes:
        address = str(node.ip) if node.ip is not None else ""
        role = node.kind + (f", via {node.gateway}" if node.gateway else "")
        if node.kind == "router" and node.firewall:
            role += f", {len(node.firewall)} firewall rule{'s' if len(node.firewall) > 1 else ''}"
        services = "<br>".join(e(s) for s in by_node.get(node.name, []))
        rows.append(
            f'<tr><td style="{cell};font-weight:bold">{e(node.name)}</td>'
            f'<td style="{cell}">{e(role)}</td>'
            f'<td style="{cell};font-family:monospace">{e(address)}</td>'
            f'<td style="{cell};font-family:monospace">{services}</td>'
            f'<td style="{cell}">{e(node.title)}</td></tr>'
        )
    head = "".join(
        f'<th style="{cell}">{h}</th>' for h in ("node", "kind", "address", "services", "")
    )
    return (
        f'<div class="maillab-lab"><b>{e(lab_repr(lab))}</b>'
        f'<table style="border-collapse:collapse;font-size:90%"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>{_map(lab)}</div>"
    )


def _map(lab: Lab) -> str:
    """The topology drawing, folded (matplotlib is optional: none without it)."""
    from sim.errors import SimError

    try:
        from sim.notebook import draw_topology

        picture = draw_topology(lab)._repr_html_()
    except SimError:
        return ""
    return f"<details><summary>the map</summary>{picture}</details>"
