"""Helpers that make experiments readable in a notebook.

The notebooks in ``notebooks/`` use the public API (``sim.start``,
``lab.send``...) for the experiments and these helpers only to *show* what
came back; nothing here decides an outcome::

    from sim.notebook import draw_path, find_topology, show_result, trace_table

    result = lab.send("laptop", "bob@qq.example", mail_from="alice@home.example")
    show_result(result)                       # a card: outcome, stage, reply, checks
    trace_table(result, kinds=["net", "smtp"])  # the trace as an HTML table
    draw_path(lab, result)                    # the topology, the path, where it stopped
    show_mail(lab, "bob@qq.example")          # bob's newest message, taken apart

Each helper returns a small object with ``_repr_html_`` or ``_repr_png_``, so
Jupyter shows it as the value of a cell, and with structured attributes
(``rows``, ``path``, ``stopped_at``) that a notebook can assert on. No pandas:
the tables are plain HTML, escaped.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim.events import (
    Check,
    Delivered,
    Dns,
    Forwarded,
    ListResent,
    Net,
    SmtpClientExchange,
    SmtpServerAnswer,
)
from sim.experiments import ConnectResult, DigResult, ExperimentResult
from sim.fastclass import dataclass
from sim.mailview import MailParts, parse_mail
from sim.present.walks import read_walks
from sim.render import KIND_LABEL, render_trace
from sim.topology.graph import LabNetwork, layout
from sim.topology.model import Topology
from sim.trace import Trace, TraceEvent

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from sim.hosting.runtime import Lab
    from sim.lab.engine import ExperimentOutcome, LabSession

__all__ = [
    "Journey",
    "MailCard",
    "Picture",
    "ResultCard",
    "SideBySide",
    "TraceSource",
    "TraceTable",
    "draw_path",
    "draw_topology",
    "find_topology",
    "journey",
    "lab_session",
    "lab_time",
    "responsive_svg",
    "show_mail",
    "show_outcome",
    "show_result",
    "side_by_side",
    "student",
    "trace_table",
]

_PACKAGE = Path(__file__).resolve().parent

# Colours shared by the table and the card: one meaning each.
_TONES = {
    "good": "#e6f4ea",
    "warn": "#fff4d6",
    "bad": "#fde2e1",
    "": "transparent",
}
_OUTCOME_TONE = {
    "delivered": "good",
    "connected": "good",
    "read": "good",
    "failed": "bad",
    "NOERROR": "good",
    "junk": "warn",
    "forwarded": "warn",
    "deferred": "warn",
    "rejected": "bad",
    "bounced": "bad",
    "blocked": "bad",
}
_CHECK_TONE = {
    "pass": "good",
    "notlisted": "good",
    "none": "",
    "neutral": "",
    "softfail": "warn",
    "temperror": "warn",
    "fail": "bad",
    "permerror": "bad",
    "listed": "bad",
}


# -- finding files ------------------------------------------------------------------


def find_topology(name: str | Path) -> Path:
    """The file of topology ``name`` (``"internet"`` or a path), found from a
    notebook's directory too; see :func:`sim.discover.find_topology`."""
    from sim.discover import find_topology as find

    return find(name)


# -- time -----------------------------------------------------------------------------


def student(ask: Callable[[str], str] | None = input) -> str:
    """The student id a notebook works as, asked once (issue 16).

    ``$MAILLAB_STUDENT``, else the id stored with the progress (the TUI
    stores it too), else asked with ``ask`` (``input``) and stored, so the
    next notebook does not ask again. ``ask=None`` never asks (the login
    name then)."""
    import os

    from sim.lab.progress import default_student, remember_student, stored_student

    if os.environ.get("MAILLAB_STUDENT") or stored_student() is not None or ask is None:
        return default_student()
    prompt = "Your student id (it picks your own version of each lab): "
    return remember_student(ask(prompt))


def lab_session(lab: str | Path, backend: str = "local") -> LabSession:
    """A lab (id, number or file) as this student's variant, with progress
    saved as the TUI saves it: ``with lab_session("dkim") as s: ...``."""
    from sim.lab.catalog import find_lab, labs_dir
    from sim.lab.engine import LabSession
    from sim.lab.loader import load_lab

    path = Path(lab) if Path(lab).is_file() else find_lab(str(lab), labs_dir())
    found = load_lab(path)
    if not found.runs_on(backend):
        from sim.errors import ArgumentError

        # A lab with real Postfix and Dovecot (`backends: [mininet]`): say so
        # before anything starts, with the call that runs it.
        raise ArgumentError(
            f"the lab {found.id} does not run on the {backend} backend; as root: "
            f"lab_session({found.id!r}, backend={found.backends[0]!r})"
        )
    return LabSession.for_student(found, backend, student=student())


def lab_time(seconds: float) -> str:
    """Lab seconds as a clock reading: ``0:02:43.7``, ``2d 03:04:05.0``."""
    whole = int(seconds)
    tenths = int((seconds - whole) * 10)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{secs:02d}.{tenths}"
    return f"{days}d {hours:02d}:{minutes:02d}:{secs:02d}.{tenths}" if days else clock


# -- traces as tables --------------------------------------------------------------------


#: What the helpers read events from: a trace, a result, or chosen events.
TraceSource = Trace | ExperimentResult | Iterable[TraceEvent]


def _trace_of(source: TraceSource) -> Trace:
    if isinstance(source, Trace):
        return source
    if isinstance(source, ExperimentResult):
        return source.trace
    return Trace(id="events", events=list(source))


def _is_dns_packet(event: TraceEvent) -> bool:
    """A ``net`` event that only says a DNS packet got through (every query
    has one, and its ``dns`` event says more)."""
    data = event.as_(Net)
    return data is not None and data.verdict == "accept" and data.proto == "udp" and data.port == 53


def _tone(event: TraceEvent) -> str:
    """good / warn / bad / "" for one event, from its structured data."""
    data = event.data
    if isinstance(data, Net):
        return "" if data.verdict == "accept" else "bad"
    if isinstance(data, Check):
        return _CHECK_TONE.get(data.result, "")
    if isinstance(data, SmtpClientExchange | SmtpServerAnswer):
        code = data.code
        if code is not None:
            return "bad" if code >= 500 else "warn" if code >= 400 else ""
        return "bad" if getattr(data, "stage", None) == "connect" else ""
    if event.kind == "queue":
        name = getattr(data, "event", None)
        return {"delivered": "good", "deferred": "warn", "warning": "warn", "bounced": "bad"}.get(
            str(name), ""
        )
    if isinstance(data, Delivered | Forwarded | ListResent):
        return "warn" if data.folder == "junk" else "good"
    if isinstance(data, Dns):
        return "" if data.rcode == "NOERROR" else "warn"
    return ""


_CELL = "padding:2px 8px;text-align:left;vertical-align:top;border-bottom:1px solid #ddd;"


@dataclass(frozen=True)
class TraceTable:
    """Trace events shown as a table: lab time, kind, node, what happened.

    ``rows`` holds the events shown; ``hidden`` counts the DNS packets left
    out (see :func:`trace_table`).
    """

    rows: tuple[TraceEvent, ...]
    hidden: int = 0
    title: str = ""

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[TraceEvent]:
        return iter(self.rows)

    def kinds(self) -> list[str]:
        """The kinds of the events shown, in order."""
        return [e.kind for e in self.rows]

    def summaries(self) -> list[str]:
        return [e.summary for e in self.rows]

    def __str__(self) -> str:
        return render_trace(Trace(id="table", events=list(self.rows)))

    def _repr_html_(self) -> str:
        head = "".join(
            f'<th style="{_CELL}">{h}</th>' for h in ("lab time", "kind", "node", "what happened")
        )
        body = []
        for event in self.rows:
            tone = _TONES[_tone(event)]
            cells = (
                lab_time(event.t),
                KIND_LABEL.get(event.kind, event.kind.upper()),
                event.node,
                event.summary,
            )
            tds = "".join(
                f'<td style="{_CELL}{"white-space:pre-wrap;" if i == 3 else ""}'
                f'{"font-family:monospace;" if i < 2 else ""}">{html.escape(str(c))}</td>'
                for i, c in enumerate(cells)
            )
            body.append(f'<tr style="background:{tone}" data-kind="{event.kind}">{tds}</tr>')
        caption = f"{len(self.rows)} events"
        if self.hidden:
            packets = "packet" if self.hidden == 1 else "packets"
            caption += f" ({self.hidden} DNS {packets} not shown: dns_packets=True shows them)"
        if self.title:
            caption = f"{html.escape(self.title)}: {caption}"
        return (
            '<table class="maillab-trace" style="border-collapse:collapse;font-size:90%">'
            f'<caption style="text-align:left;caption-side:top">{caption}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        )


def trace_table(
    source: TraceSource,
    *,
    kinds: Iterable[str] | str | None = None,
    nodes: Iterable[str] | str | None = None,
    dns_packets: bool = False,
    title: str = "",
) -> TraceTable:
    """A table of a trace (a result's, or a list of events), oldest first.

    ``kinds`` and ``nodes`` keep only those kinds of event (``"dns"``,
    ``"net"``, ``"smtp"``, ``"tls"``, ``"check"``, ``"queue"``,
    ``"delivery"``) or those nodes. The ``net`` events of DNS packets that
    got through are left out unless ``dns_packets=True``: every DNS query
    has one, and the ``dns`` event beside it says more.
    """
    wanted_kinds = {kinds} if isinstance(kinds, str) else set(kinds) if kinds else None
    wanted_nodes = {nodes} if isinstance(nodes, str) else set(nodes) if nodes else None
    rows: list[TraceEvent] = []
    hidden = 0
    for event in _trace_of(source):
        if wanted_kinds is not None and event.kind not in wanted_kinds:
            continue
        if wanted_nodes is not None and event.node not in wanted_nodes:
            continue
        if not dns_packets and _is_dns_packet(event):
            hidden += 1
            continue
        rows.append(event)
    return TraceTable(tuple(rows), hidden, title)


# -- results as cards ---------------------------------------------------------------------


def _reply_text(reply: dict[str, Any] | None) -> str:
    if not reply:
        return "—"
    parts = [str(reply.get("code", "")), str(reply.get("enhanced") or ""), str(reply.get("text"))]
    return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class ResultCard:
    """One experiment's result at a glance. ``rows`` is what the card shows,
    as (label, text) pairs; ``checks`` the receiver's verdicts by name."""

    kind: str
    outcome: str
    rows: tuple[tuple[str, str], ...]
    checks: tuple[tuple[str, str], ...] = ()

    def row(self, label: str) -> str | None:
        """The text of the row named ``label`` (None when absent). A row whose
        label names its source, ``final reply, mx-qq``, answers to ``reply``."""
        for name, text in self.rows:
            if name == label or name.split(",", 1)[0].split()[-1] == label:
                return text
        return None

    def __str__(self) -> str:
        lines = [f"{label}: {text}" for label, text in self.rows]
        if self.checks:
            lines.append("checks: " + " ".join(f"{k}={v}" for k, v in self.checks))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        tone = _TONES[_OUTCOME_TONE.get(self.outcome, "")]
        trs = [
            f'<tr><th style="{_CELL}">{html.escape(label)}</th>'
            f'<td style="{_CELL}white-space:pre-wrap">{html.escape(text)}</td></tr>'
            for label, text in self.rows
        ]
        if self.checks:
            badges = " ".join(
                f'<span style="background:{_TONES[_CHECK_TONE.get(value, "")]};'
                f'border:1px solid #bbb;border-radius:3px;padding:0 4px;font-family:monospace">'
                f"{html.escape(name)}={html.escape(value)}</span>"
                for name, value in self.checks
            )
            trs.append(f'<tr><th style="{_CELL}">checks</th><td style="{_CELL}">{badges}</td></tr>')
        return (
            f'<div class="maillab-result" style="border-left:6px solid #888;'
            f'background:{tone};padding:4px 8px;margin:4px 0">'
            f'<div style="font-weight:bold;font-size:110%">{html.escape(self.kind)}: '
            f"{html.escape(self.outcome)}</div>"
            f'<table style="border-collapse:collapse">{"".join(trs)}</table></div>'
        )


@dataclass(frozen=True)
class MailCard:
    """One stored message taken apart (:mod:`sim.mailview`): ``parts`` has
    the Received: hops, Authentication-Results, DKIM-Signature, ARC, the
    delivery status of a bounce (RFC 3464) and the raw source."""

    address: str
    folder: str
    parts: MailParts

    def __str__(self) -> str:
        lines = [f"{name}: {value}" for name, value in self.parts.summary]
        for i, hop in enumerate(self.parts.hops, 1):
            lines.append(f"hop {i}: {hop.from_} -> {hop.by} ({hop.with_}) {hop.date_text}")
        lines += [f"Authentication-Results: {v}" for v in self.parts.authentication_results]
        lines += [f"DKIM-Signature: {v}" for v in self.parts.dkim_signatures]
        lines += [f"{k}: {v}" for k, v in self.parts.arc]
        if self.parts.dsn is not None:
            for rcpt in self.parts.dsn.recipients:
                lines.append(
                    f"DSN {rcpt.recipient}: Action {rcpt.action}, Status {rcpt.status}, "
                    f"Diagnostic-Code {rcpt.diagnostic or '-'}, "
                    f"Will-Retry-Until {rcpt.will_retry_until or '-'}"
                )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        def rows(pairs: Iterable[tuple[str, str]]) -> str:
            return "".join(
                f'<tr><th style="{_CELL}">{html.escape(k)}</th>'
                f'<td style="{_CELL}white-space:pre-wrap">{html.escape(v)}</td></tr>'
                for k, v in pairs
            )

        parts = self.parts
        hops = [
            (f"hop {i}", f"{h.from_} → {h.by}  with {h.with_}  {h.date_text}")
            for i, h in enumerate(parts.hops, 1)
        ]
        auth = [("Authentication-Results", v) for v in parts.authentication_results]
        dkim = [("DKIM-Signature", v) for v in parts.dkim_signatures]
        dsn: list[tuple[str, str]] = []
        if parts.dsn is not None:
            for rcpt in parts.dsn.recipients:
                dsn += [(k, v) for k, v in rcpt.fields]
        sections = [
            ("Headers", parts.summary),
            ("Received (first hop first)", hops),
            ("What the receiver concluded", auth + dkim + parts.arc),
            ("Delivery status (RFC 3464)", dsn),
        ]
        body = "".join(
            f"<h4>{html.escape(title)}</h4><table>{rows(pairs)}</table>"
            for title, pairs in sections
            if pairs
        )
        return (
            f'<div class="maillab-mail" style="border-left:6px solid #888;padding:4px 8px">'
            f"<b>{html.escape(self.address)} · {html.escape(self.folder)}</b>{body}"
            f"<h4>Body</h4><pre>{html.escape(parts.body)}</pre>"
            f"<details><summary>raw source</summary><pre>{html.escape(parts.raw)}</pre>"
            "</details></div>"
        )


def show_mail(
    source: Lab | Any, address: str | None = None, folder: str = "INBOX", index: int = -1
) -> MailCard:
    """A message taken apart: ``show_mail(lab, "bob@qq.example")`` reads the
    newest message of that mailbox (``index`` picks another, ``folder="Junk"``
    the spam folder), as ``maillab mailbox`` does; ``show_mail(stored)``
    takes a message of ``lab.mailbox(...)`` or its bytes."""
    if isinstance(source, bytes | bytearray):
        return MailCard(address or "", folder, parse_mail(bytes(source)))
    data = getattr(source, "data", None)
    if isinstance(data, bytes):
        owner = address or f"{getattr(source, 'user', '')}"
        return MailCard(owner, str(getattr(source, "folder", folder)), parse_mail(data))
    if address is None:
        raise ValueError("show_mail(lab, address): which mailbox?")
    messages = list(source.mailbox(address, folder))
    if not messages:
        raise ValueError(f"{address} has no message in {folder}")
    return MailCard(address, folder, parse_mail(messages[index].data))


def show_outcome(outcome: ExperimentOutcome) -> ResultCard:
    """A lab step's experiment (``LabSession.run_experiment`` or
    ``outcome_of``): the result's card with what the step expects, ✓ or ✗;
    while the question named in ``hide_expect_until`` is unanswered, a note
    instead of the verdicts, as in the TUI (they would give the answer)."""
    if outcome.error is not None or outcome.result is None:
        return ResultCard(outcome.experiment.kind, "error", (("error", outcome.detail),))
    card = show_result(outcome.result)
    if outcome.hidden_until is not None:
        extra: tuple[tuple[str, str], ...] = (
            ("expects", f"shown once you have answered the question {outcome.hidden_until}"),
        )
    else:
        extra = tuple(("✓" if e.passed else "✗", e.detail) for e in outcome.expectations)
    return ResultCard(card.kind, card.outcome, card.rows + extra, card.checks)


def show_result(result: ExperimentResult) -> ResultCard:
    """A compact card of a ``send``, ``connect``, ``dig`` or ``read`` result."""
    from sim.experiments.send import SendResult
    from sim.present.sequence import reply_owner

    rows: list[tuple[str, str]] = []
    if isinstance(result, SendResult):
        rows.append(("outcome", result.outcome))
        if result.stage:
            rows.append(("stage", result.stage))
        owner = reply_owner(result)
        final = "final reply" if result.queue_id or len(result.transcripts) > 1 else "reply"
        rows.append((f"{final}, {owner}" if owner else "reply", _reply_text(result.reply)))
        if result.verdict:
            rows.append(("network", str(result.verdict.get("explanation", ""))))
        rows.append(("envelope", f"<{result.mail_from}> → {', '.join(result.rcpts)}"))
        if result.queue_id:
            rows.append(("queue id", result.queue_id))
        if len(result.recipients) > 1:
            for r in result.recipients:
                rows.append((f"<{r['rcpt']}>", f"{r['outcome']}: {_reply_text(r.get('reply'))}"))
        # In the order the receiver ran them (the trace's order), not by name.
        checks = tuple(result.checks.items())
        return ResultCard("send", result.outcome, tuple(rows), checks)
    if isinstance(result, ConnectResult):
        rows.append(("outcome", result.outcome))
        rows.append(("to", f"{result.dst}:{result.port}"))
        if result.error:
            rows.append(("error", result.error))
        if result.banner:
            rows.append(("banner", result.banner))
        if result.verdict:
            rows.append(("network", str(result.verdict.get("explanation", ""))))
        return ResultCard("connect", result.outcome, tuple(rows))
    if isinstance(result, DigResult):
        rows.append(("question", f"{result.name} {result.type}"))
        rows.append(("status", result.rcode))
        rows.append(("server", result.server))
        answers = [f"{a['name']} {a['ttl']} IN {a['type']} {a['data']}" for a in result.answers]
        rows.append(("answers", "\n".join(answers) or "(none)"))
        return ResultCard("dig", result.rcode, tuple(rows))
    from sim.experiments.read import ReadResult

    if isinstance(result, ReadResult):
        state = "read" if result.error is None else "failed"
        rows.append(("outcome", state))
        rows.append(("mailbox", f"{result.user} {result.folder} over {result.protocol}"))
        rows.append(("server", f"{result.hostname or result.server}"))
        if result.error is not None:
            rows.append(("stage", str(result.stage)))
            reply = result.reply or {}
            said = " ".join(str(reply.get(k) or "") for k in ("status", "code", "text")).strip()
            owner = reply_owner(result)
            rows.append((f"reply, {owner}" if owner else "reply", said or result.error))
        else:
            rows.append(("messages", str(len(result.messages))))
            for m in result.messages[:10]:
                rows.append((f"uid {m.get('uid')}", f"{m.get('from')}: {m.get('subject')}"))
        return ResultCard("read", state, tuple(rows))
    raise TypeError(f"show_result: not an experiment result: {type(result).__name__}")


# -- several results side by side ---------------------------------------------------------


@dataclass(frozen=True)
class SideBySide:
    """Results in rows, their checks in columns, in the order the receiver
    ran them (the first result's order, then checks only later ones ran).
    ``rows``: (label, outcome, reply, {check: verdict})."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, str, str, dict[str, str]], ...]

    def outcomes(self) -> dict[str, str]:
        return {label: outcome for label, outcome, _, _ in self.rows}

    def __str__(self) -> str:
        width = max((len(r[0]) for r in self.rows), default=7)
        head = f"{'message':<{width}} " + " ".join(f"{c:<9}" for c in self.columns) + " outcome"
        lines = [head]
        for label, outcome, reply, checks in self.rows:
            cells = " ".join(f"{checks.get(c, '-'):<9}" for c in self.columns)
            lines.append(f"{label:<{width}} {cells} {outcome} {reply}".rstrip())
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        e = html.escape
        head = "".join(
            f'<th style="{_CELL}">{e(h)}</th>'
            for h in ("message", *self.columns, "outcome", "reply")
        )
        body = []
        for label, outcome, reply, checks in self.rows:
            cells = [f'<td style="{_CELL}">{e(label)}</td>']
            for column in self.columns:
                value = checks.get(column, "")
                tone = _TONES[_CHECK_TONE.get(value, "")]
                style = f"{_CELL}background:{tone};font-family:monospace"
                cells.append(f'<td style="{style}">{e(value or "—")}</td>')
            tone = _TONES[_OUTCOME_TONE.get(outcome, "")]
            cells.append(f'<td style="{_CELL}background:{tone};font-weight:bold">{e(outcome)}</td>')
            cells.append(f'<td style="{_CELL}font-family:monospace">{e(reply)}</td>')
            body.append(f"<tr>{''.join(cells)}</tr>")
        return (
            '<table class="maillab-side-by-side" style="border-collapse:collapse;font-size:90%">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        )


def side_by_side(rows: Iterable[tuple[str, ExperimentResult]]) -> SideBySide:
    """A table of several ``send`` results: one row each (label, result),
    the receiver's verdicts in columns in the order it ran its checks."""
    columns: list[str] = []
    out = []
    for label, result in rows:
        checks = dict(getattr(result, "checks", {}) or {})
        columns += [c for c in checks if c not in columns]
        reply = _reply_text(getattr(result, "reply", None))
        out.append((label, str(getattr(result, "outcome", "")), reply, checks))
    return SideBySide(tuple(columns), tuple(out))


# -- the path on the topology ----------------------------------------------------------------


@dataclass(frozen=True)
class Journey:
    """The way an experiment's packets went, read from its ``net`` events.

    ``path`` is the chain of nodes (a submission then the relay's delivery
    join at the relay); ``stopped_at`` the node where it ended without
    getting through: the router that dropped or refused it, the host that
    refused the connection, or the receiver that refused or deferred the
    message. ``legs`` are the single connections, in order.
    """

    path: tuple[str, ...]
    stopped_at: str | None
    legs: tuple[tuple[str, ...], ...] = field(default=())
    #: Legs that did not get through before the way that was taken (a
    #: refused first MX), each up to where it stopped.
    failed: tuple[tuple[str, ...], ...] = field(default=())


def _network_of(where: Lab | Topology | LabNetwork) -> LabNetwork:
    if isinstance(where, LabNetwork):
        return where
    if isinstance(where, Topology):
        return layout(where)
    # A running lab: its topology has the firewall rules in force.
    return layout(where.topology)


def journey(where: Lab | Topology | LabNetwork, source: TraceSource) -> Journey:
    """The path of ``source``'s connections through ``where``'s network."""
    network = _network_of(where)
    walks = read_walks(_trace_of(source).events, network)
    # The message's way is its TCP connections; a dig has only UDP ones.
    chosen = [w for w in walks if w.proto == "tcp"] or walks
    path: list[str] = []
    stop: str | None = None
    legs: list[tuple[str, ...]] = []
    stopped_legs: list[tuple[int, tuple[str, ...]]] = []  # (index in legs, up to the stop)
    for walk in chosen:
        hops = walk.nodes
        # A receiver's refusal is judged by the outcome below (a deferred
        # first attempt may be followed by a delivery).
        leg_stop = None if walk.refused else walk.stopped_at
        if walk.verdict in ("drop", "reject") and len(walk.onward) > 1 and walk.onward[0] in hops:
            # Where it would have gone, had the router let it pass.
            hops = hops[: hops.index(walk.onward[0])] + walk.onward
        if legs and legs[-1] == hops:
            continue  # a retry of the same connection
        legs.append(hops)
        if leg_stop is not None:
            trimmed = hops[: hops.index(leg_stop) + 1] if leg_stop in hops else hops
            stopped_legs.append((len(legs) - 1, trimmed))
        if path and path[-1] == hops[0]:
            path.extend(hops[1:])
        elif hops[0] in path:
            # The same sender tries again elsewhere (the next MX): the way it
            # finally went replaces the one before.
            del path[len(path) - path[::-1].index(hops[0]) :]
            path.extend(hops[1:])
        else:
            path = list(hops)
        stop = leg_stop
    outcome = getattr(source, "outcome", None)
    if stop is None and path and outcome in ("rejected", "deferred", "bounced"):
        stop = path[-1]  # the network delivered it; the receiver said no (or not yet)
    # A leg that stopped and was not the last: the sender went on elsewhere.
    failed = tuple(leg for index, leg in stopped_legs if index != len(legs) - 1)
    return Journey(tuple(path), stop, tuple(legs), failed)


@dataclass
class Picture:
    """A drawing of the topology. Jupyter shows it as SVG, as wide as the
    page at most (text stays text: it zooms and can be searched);
    :meth:`png` and :meth:`save` give files."""

    figure: Figure
    path: tuple[str, ...] = ()
    stopped_at: str | None = None
    failed: tuple[tuple[str, ...], ...] = ()

    def svg(self) -> str:
        from sim.graphdraw import figure_svg

        return figure_svg(self.figure)

    def _repr_html_(self) -> str:
        return responsive_svg(self.svg())

    def png(self, dpi: int = 100) -> bytes:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=dpi)
        return buffer.getvalue()

    def save(self, path: str | Path, dpi: int = 150) -> Path:
        out = Path(path)
        self.figure.savefig(out, dpi=dpi)
        return out


def _merge_hop_numbers(figure: Figure, path: Sequence[str]) -> None:
    """A node the path passes twice (the ISP router, out to the relay and
    back) gets one label ``2,4`` instead of two numbers drawn on top of each
    other. graphdraw names the labels ``hop-<n>``."""
    if len(set(path)) == len(path):
        return
    labels = {t.get_gid(): t for ax in figure.axes for t in ax.texts}
    first: dict[str, int] = {}
    for index, name in enumerate(path):
        text = labels.get(f"hop-{index + 1}")
        if text is None:
            continue
        if name in first:
            owner = labels[f"hop-{first[name] + 1}"]
            owner.set_text(f"{owner.get_text()},{index + 1}")
            text.set_visible(False)
        else:
            first[name] = index


def draw_topology(where: Lab | Topology | LabNetwork) -> Picture:
    """The topology as a picture: routers, LANs, hosts, services, rules."""
    from sim.graphdraw import draw

    return Picture(draw(_network_of(where)))


def draw_path(
    where: Lab | Topology | LabNetwork, source: TraceSource, *, crop: bool = True
) -> Picture:
    """The topology with the experiment's path highlighted, numbered hop by
    hop, and an ✗ where it stopped (the part it never reached is dashed).
    Connections that failed before the way taken (a refused first MX) are
    drawn dashed in red with their own ✗. ``crop``: only the part of the lab
    the experiment crossed, so that a large lab stays legible."""
    from sim.graphdraw import draw

    network = _network_of(where)
    way = journey(network, source)
    if way.stopped_at is not None and way.stopped_at not in way.path:
        way = Journey(way.path, None, way.legs, way.failed)
    figure = draw(
        network,
        highlight=list(way.path) or None,
        stopped_at=way.stopped_at,
        failed=[list(leg) for leg in way.failed if len(leg) > 1],
        crop=crop,
    )
    _merge_hop_numbers(figure, way.path)
    return Picture(figure, way.path, way.stopped_at, way.failed)


def responsive_svg(svg: str) -> str:
    """An SVG document for an HTML page: no XML prolog, as wide as its
    container at most and never wider than drawn (``viewBox`` keeps the
    proportions), so a wide lab fits the page instead of overflowing it."""
    start = svg.find("<svg")
    body = svg[start:] if start >= 0 else svg
    match = re.match(r'<svg([^>]*?)\swidth="([\d.]+)(pt|px)?"\s+height="([\d.]+)(pt|px)?"', body)
    if match:
        unit = match.group(3) or "px"
        natural = f"{match.group(2)}{unit}"
        body = (
            f'<svg{match.group(1)} width="100%" style="max-width:{natural};height:auto"'
            + body[match.end() :]
        )
    return f'<div class="maillab-picture" style="overflow-x:auto">{body}</div>'
