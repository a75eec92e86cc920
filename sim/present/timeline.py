"""A message's life in a relay's queue, on a lab-time axis.

Read from the relay's ``queue`` events for one queue id: queued, each
delivery attempt and what came of it (deferred with the reply, delivered,
bounced), the delay warning (RFC 3464 ``Action: delayed``) and the final
bounce (``Action: failed``) with the notification's own queue id.

Retries run over minutes, hours and days (RFC 5321 §4.5.4.1 suggests at
least 30 minutes apart and giving up after 4-5 days), so the axis is
logarithmic once the span exceeds an hour: ``x = log(1 + minutes)``. The
first retries and the last days are then both readable.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sim.events import (
    QueueAttempt,
    QueueBounced,
    QueueBounceDropped,
    QueueDeferred,
    QueueDelivered,
    QueueDsn,
    QueueInternalError,
    QueueQueued,
    QueueRecovered,
    QueueWarning,
)
from sim.fastclass import dataclass
from sim.trace import Trace, TraceEvent

if TYPE_CHECKING:
    from sim.experiments import ExperimentResult

__all__ = ["Mark", "Timeline", "timeline_of"]


@dataclass(frozen=True)
class Mark:
    """One thing on the axis. ``kind``: queued, attempt, warning, bounced,
    delivered. ``dt``: lab seconds since the message was queued. ``result``
    of an attempt: deferred, delivered, bounced (or "" while unknown)."""

    kind: str
    dt: float
    text: str
    attempt: int | None = None
    result: str = ""
    reply: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "dt": self.dt,
            "text": self.text,
            "attempt": self.attempt,
            "result": self.result,
            "reply": self.reply,
        }


_TICKS = [
    (0, "0"),
    (60, "1m"),
    (300, "5m"),
    (1800, "30m"),
    (3600, "1h"),
    (7200, "2h"),
    (21600, "6h"),
    (86400, "1d"),
    (2 * 86400, "2d"),
    (5 * 86400, "5d"),
    (7 * 86400, "7d"),
]


def _span_text(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    if seconds >= 60:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds:.0f} seconds"


@dataclass(frozen=True)
class Timeline:
    """``queue_id``'s marks in order; ``end`` the final state: delivered,
    bounced, or deferred (still in the queue when the trace was read)."""

    queue_id: str
    node: str
    start: float
    marks: tuple[Mark, ...]
    end: str

    @property
    def attempts(self) -> list[Mark]:
        return [m for m in self.marks if m.kind == "attempt"]

    @property
    def span(self) -> float:
        return max((m.dt for m in self.marks), default=0.0)

    @property
    def log_scale(self) -> bool:
        return self.span > 3600

    def x(self, dt: float) -> float:
        """Position in [0, 1] of ``dt`` on this timeline's axis."""
        span = max(self.span, 1.0)
        if self.log_scale:
            return math.log1p(dt / 60) / math.log1p(span / 60)
        return dt / span

    def ticks(self) -> list[tuple[float, str]]:
        out = [(self.x(s), label) for s, label in _TICKS if s <= self.span * 1.0001]
        if not self.log_scale:
            if self.span < 1:
                return [(0.0, "0s")]
            step = self.span / 4
            out = [(self.x(step * i), _clock(step * i)) for i in range(5)]
        return out

    def summary(self) -> str:
        n = len(self.attempts)
        return (
            f"{self.queue_id} at {self.node}: {n} attempt{'s' if n != 1 else ''} "
            f"over {_span_text(self.span)}, {self.end}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "queue_id": self.queue_id,
            "node": self.node,
            "start": self.start,
            "end": self.end,
            "log_scale": self.log_scale,
            "marks": [m.to_json() for m in self.marks],
        }

    # -- text ------------------------------------------------------------------------

    def to_text(self, width: int = 80, *, ascii_only: bool = False) -> str:
        symbols = {"deferred": "o", "delivered": "✓", "bounced": "✗", "": "?"}
        if ascii_only:
            symbols = {"deferred": "o", "delivered": "+", "bounced": "X", "": "?"}
        axis_w = width - 4
        axis = [("-" if ascii_only else "─")] * axis_w
        for mark in self.marks:
            col = min(int(self.x(mark.dt) * (axis_w - 1)), axis_w - 1)
            if mark.kind == "attempt":
                axis[col] = symbols.get(mark.result, "?")
            elif mark.kind == "warning":
                axis[col] = "W"
            elif mark.kind == "queued":
                axis[col] = "Q"
        labels = [" "] * axis_w
        for pos, label in self.ticks():
            col = min(int(pos * (axis_w - 1)), axis_w - len(label))
            if all(c == " " for c in labels[max(col - 1, 0) : col + len(label) + 1]):
                labels[col : col + len(label)] = list(label)
        scale = "log scale" if self.log_scale else "linear"
        lines = [self.summary(), f"  {''.join(axis)}", f"  {''.join(labels).rstrip()}"]
        lines.append(
            f"  Q queued {symbols['deferred']} deferred {symbols['delivered']} delivered "
            f"{symbols['bounced']} bounced W warning; lab time since queued, {scale}"
        )
        lines.extend("  " + row for row in self._rows())
        text = "\n".join(line[:width] for line in lines) + "\n"
        if ascii_only:
            from sim.present.seqrender import to_ascii

            text = to_ascii(text)
        return text

    def _rows(self) -> list[str]:
        """One line per mark, a run of identical deferrals folded into one."""
        rows: list[str] = []
        run: list[Mark] = []

        def flush() -> None:
            if not run:
                return
            if len(run) == 1:
                m = run[0]
                rows.append(f"{'+' + _clock(m.dt):>12}  attempt {m.attempt}: {m.result} {m.reply}")
            else:
                a, b = run[0], run[-1]
                rows.append(
                    f"{'+' + _clock(a.dt):>12}  attempts {a.attempt}-{b.attempt} "
                    f"(to +{_clock(b.dt)}): {a.result} {a.reply}"
                )
            run.clear()

        for mark in self.marks:
            if mark.kind == "attempt" and mark.result == "deferred":
                if run and (run[-1].reply != mark.reply):
                    flush()
                run.append(mark)
                continue
            flush()
            if mark.kind == "attempt":
                at = "+" + _clock(mark.dt)
                rows.append(f"{at:>12}  attempt {mark.attempt}: {mark.result} {mark.reply}")
            else:
                rows.append(f"{'+' + _clock(mark.dt):>12}  {mark.text}")
        flush()
        return [r.rstrip() for r in rows]

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return f"<Timeline {self.summary()}>"

    # -- SVG --------------------------------------------------------------------------

    def to_svg(self, width: int = 760) -> str:
        left, right, axis_y = 30, 30, 70
        length = width - left - right
        height = 120
        colours = {"deferred": "#b26a00", "delivered": "#2e7d32", "bounced": "#c62828", "": "#777"}
        out = [
            f'<svg xmlns="http://www.w3.org/2000/svg" class="maillab-timeline" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" '
            'font-family="DejaVu Sans, Arial, sans-serif" font-size="11">',
            f'<rect width="{width}" height="{height}" fill="white"/>',
            f'<text x="{left}" y="16" font-weight="bold">{html.escape(self.summary())}</text>',
            f'<text x="{width - right}" y="16" text-anchor="end" fill="#777">lab time since '
            f"queued{' (log scale)' if self.log_scale else ''}</text>",
            f'<line x1="{left}" y1="{axis_y}" x2="{left + length}" y2="{axis_y}" stroke="#555"/>',
        ]
        for pos, label in self.ticks():
            x = left + pos * length
            out.append(
                f'<line x1="{x:.1f}" y1="{axis_y}" x2="{x:.1f}" y2="{axis_y + 5}" stroke="#555"/>'
                f'<text x="{x:.1f}" y="{axis_y + 18}" text-anchor="middle" fill="#555">'
                f"{html.escape(label)}</text>"
            )
        for i, mark in enumerate(self.marks):
            x = left + self.x(mark.dt) * length
            tip = f"<title>+{html.escape(_clock(mark.dt))}: {html.escape(mark.text)}</title>"
            if mark.kind == "attempt":
                colour = colours.get(mark.result, "#777")
                out.append(
                    f'<g id="mark-{i}" class="attempt {mark.result}">{tip}'
                    f'<circle cx="{x:.1f}" cy="{axis_y}" r="5" fill="{colour}" '
                    'fill-opacity="0.8" stroke="white"/></g>'
                )
            elif mark.kind == "warning":
                out.append(
                    f'<g id="mark-{i}" class="warning">{tip}<path d="M{x:.1f},{axis_y - 22} '
                    f'l6,10 h-12 z" fill="#b26a00"/><text x="{x:.1f}" y="{axis_y - 26}" '
                    'text-anchor="middle" fill="#b26a00">warning</text></g>'
                )
            elif mark.kind == "bounced":
                out.append(
                    f'<g id="mark-{i}" class="bounced">{tip}<path d="M{x - 6:.1f},{axis_y - 18} '
                    f'l12,12 M{x + 6:.1f},{axis_y - 18} l-12,12" stroke="#c62828" '
                    f'stroke-width="3"/><text x="{x:.1f}" y="{axis_y - 26}" text-anchor="end" '
                    'fill="#c62828">bounce</text></g>'
                )
            elif mark.kind == "queued":
                out.append(
                    f'<g id="mark-{i}" class="queued">{tip}<rect x="{x - 4:.1f}" '
                    f'y="{axis_y - 4}" width="8" height="8" fill="#5b7db1"/>'
                    f'<text x="{x:.1f}" y="{axis_y - 12}" fill="#5b7db1">queued</text></g>'
                )
        out.append("</svg>")
        return "\n".join(out) + "\n"

    def _repr_html_(self) -> str:
        return self.to_svg()


def _clock(seconds: float) -> str:
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h{minutes:02d}"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _reply(data: object) -> str:
    reply = getattr(data, "reply", None) or {}
    return " ".join(str(p) for p in (reply.get("code"), reply.get("enhanced")) if p)


#: A relay's word on an attempt: its result.
_RESULTS = (QueueDeferred, QueueInternalError, QueueDelivered, QueueBounced, QueueBounceDropped)


def _is_first(data: object) -> bool:
    """A message (not a bounce the relay made) entering the queue."""
    return isinstance(data, QueueRecovered) or (
        isinstance(data, QueueQueued) and data.entry_kind != "dsn"
    )


def timeline_of(
    source: Trace | ExperimentResult | Iterable[TraceEvent], queue_id: str | None = None
) -> Timeline | None:
    """The timeline of ``queue_id`` (default: the result's own queue id, or
    the first message queued in the trace); None when nothing was queued."""
    from sim.experiments import ExperimentResult

    if isinstance(source, ExperimentResult):
        queue_id = queue_id or getattr(source, "queue_id", None)
        events = list(source.trace)
    elif isinstance(source, Trace):
        events = list(source)
    else:
        events = sorted(source, key=lambda e: e.t)
    queue = [e for e in events if e.kind == "queue"]
    if queue_id is None:
        first = next((e for e in queue if _is_first(e.data)), None)
        if first is None:
            return None
        queue_id = str(getattr(first.data, "queue_id", None))
    mine = [e for e in queue if getattr(e.data, "queue_id", None) == queue_id]
    if not mine:
        return None
    start = mine[0].t
    marks: list[Mark] = []
    end = "deferred"
    pending: int | None = None  # index in marks of the attempt awaiting its result
    for e in mine:
        d = e.data
        dt = e.t - start
        if isinstance(d, QueueQueued | QueueRecovered):
            marks.append(Mark("queued", dt, e.summary))
        elif isinstance(d, QueueAttempt):
            marks.append(Mark("attempt", dt, e.summary, attempt=d.attempt))
            pending = len(marks) - 1
        elif isinstance(d, _RESULTS):
            name = d.event
            if pending is not None:
                m = marks[pending]
                marks[pending] = Mark(
                    m.kind, m.dt, f"{m.text}: {e.summary}", m.attempt, name, _reply(d)
                )
                pending = None
            if name == "delivered":
                end = "delivered"
            elif name == "bounced":
                end = "bounced"
                marks.append(Mark("bounced", dt, e.summary, reply=_reply(d)))
        elif isinstance(d, QueueWarning):
            marks.append(Mark("warning", dt, e.summary))
        elif isinstance(d, QueueDsn):
            marks.append(Mark("notice", dt, e.summary))
    return Timeline(str(queue_id), mine[0].node, start, tuple(marks), end)
