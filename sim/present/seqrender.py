"""Renderings of a :class:`~sim.present.sequence.Sequence`: Mermaid, text, SVG.

* Mermaid ``sequenceDiagram`` text: participants with ids made of letters,
  digits and ``_`` (a node name such as ``mx-qq`` becomes ``mx_qq as mx-qq``);
  message text with Mermaid's entity codes for the characters its grammar
  reserves (``;`` ``#`` ``<`` ``>``); the failing step inside a red ``rect``.
* Text: one line per step in ``width`` columns, the lanes as columns of
  ``│`` with the arrow drawn between them and the words to the right, for a
  terminal or the TUI (``ascii_only`` for terminals without box drawing).
* SVG: lanes as vertical lines under their names, arrows with their words
  above, notes as boxes, the failing step on a red band. Long words are cut
  with ``…``; the full sentence from the trace is the element's ``<title>``
  (a tooltip). Elements carry ids for tests: ``lane-<name>``, ``step-<i>``,
  ``failing``.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sim.errors import SimError

if TYPE_CHECKING:
    from sim.present.sequence import Sequence, Step

__all__ = ["diagram_format", "lab_clock", "save", "to_mermaid", "to_svg", "to_text"]

#: Step tones → (fill, stroke) in every picture of this package.
TONES = {
    "good": ("#e6f4ea", "#2e7d32"),
    "warn": ("#fff4d6", "#b26a00"),
    "bad": ("#fde2e1", "#c62828"),
    "": ("#f4f4f4", "#555555"),
}


def lab_clock(seconds: float) -> str:
    """A compact lab-time reading, at most 9 characters: ``3.61``, ``133.6``,
    ``12:03.4`` (minutes), ``5h02:13``, ``3d 04:05``."""
    if seconds < 100:
        return f"{seconds:.2f}"
    if seconds < 600:
        return f"{seconds:.1f}"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}:{minutes:02d}"
    if hours:
        return f"{hours}h{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}.{int((seconds - whole) * 10)}"


# -- Mermaid --------------------------------------------------------------------------


def _mermaid_id(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", name) or "node"
    if base[0].isdigit():
        base = f"n_{base}"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}_{n}", n + 1
    taken.add(candidate)
    return candidate


_MERMAID_CODES = {"#": "#35;", ";": "#59;", "<": "#60;", ">": "#62;"}


def mermaid_text(text: str) -> str:
    """``text`` safe after ``:`` in a Mermaid statement: one line, with
    entity codes for ``#`` ``;`` ``<`` ``>`` (Mermaid's ``#NNN;`` syntax)."""
    out = "".join(_MERMAID_CODES.get(c, c) for c in " ".join(text.split()))
    return out or " "


_ARROW = {"call": "->>", "reply": "-->>", "block": "-x"}


def to_mermaid(seq: Sequence) -> str:
    taken: set[str] = set()
    ids = {lane.name: _mermaid_id(lane.name, taken) for lane in seq.lanes}
    lines = ["sequenceDiagram"]
    if seq.title:
        lines.append(f"    title {mermaid_text(seq.title)}")
    for lane in seq.lanes:
        label = lane.name + (f" {lane.address}" if lane.address else "")
        lines.append(f"    participant {ids[lane.name]} as {mermaid_text(label)}")
    for i, step in enumerate(seq.steps):
        failing = i == seq.failing
        if failing:
            lines.append("    rect rgb(253, 226, 225)")
        text = mermaid_text(("✗ " if failing else "") + step.text)
        if step.style == "note":
            span = ids[step.src] if step.src == step.dst else f"{ids[step.src]},{ids[step.dst]}"
            lines.append(f"    Note over {span}: {text}")
        else:
            lines.append(f"    {ids[step.src]}{_ARROW[step.style]}{ids[step.dst]}: {text}")
        if failing:
            lines.append("    end")
    return "\n".join(lines) + "\n"


# -- text -------------------------------------------------------------------------------

_BOX = {"h": "─", "v": "│", "r": "▶", "l": "◀", "x": "✗", "n": "●", "s": "├", "e": "┤"}
_PLAIN = {"h": "-", "v": "|", "r": ">", "l": "<", "x": "X", "n": "*", "s": "+", "e": "+"}
_TIME_W = 9


def _cut(text: str, width: int) -> str:
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def to_text(seq: Sequence, width: int = 80, *, ascii_only: bool = False) -> str:
    g = _PLAIN if ascii_only else _BOX
    n = max(len(seq.lanes), 1)
    # Each lane gets a column wide enough for its name, within what leaves the
    # words at least a third of the line.
    room = width - _TIME_W - 2
    lane_w = max(4, min(10, max((len(lane.name) + 1 for lane in seq.lanes), default=4)))
    while lane_w > 4 and n * lane_w > room * 2 // 3:
        lane_w -= 1
    x = {lane.name: _TIME_W + 2 + i * lane_w for i, lane in enumerate(seq.lanes)}
    words_at = _TIME_W + 2 + (n - 1) * lane_w + 3
    head = [" "] * width
    for lane in seq.lanes:
        for j, ch in enumerate(_cut(lane.name, lane_w - 1)):
            if x[lane.name] + j < width:
                head[x[lane.name] + j] = ch
    lines = []
    if seq.title:
        lines.append(_cut(seq.title, width))
    lines.append("lab time".rjust(_TIME_W) + "".join(head[_TIME_W:]).rstrip())
    for i, step in enumerate(seq.steps):
        row = [" "] * width
        for col in x.values():
            row[col] = g["v"]
        a, b = x[step.src], x[step.dst]
        if step.style == "note":
            lo, hi = min(a, b), max(a, b)
            for c in range(lo, hi + 1):
                row[c] = g["h"] if lo != hi else g["n"]
            if lo != hi:
                row[lo], row[hi] = g["s"], g["e"]
        else:
            lo, hi = min(a, b), max(a, b)
            for c in range(lo + 1, hi):
                row[c] = g["h"]
            if step.style == "block":
                row[b] = g["x"]
            elif b > a:
                row[b - 1] = g["r"]
            else:
                row[b + 1] = g["l"]
        mark = "!" if i == seq.failing else " "
        stamp = lab_clock(step.t).rjust(_TIME_W - 1)
        words = _cut(step.text, width - words_at)
        body = "".join(row[_TIME_W : words_at - 1]).rstrip()
        body = body.ljust(words_at - 1 - _TIME_W)
        lines.append(f"{mark}{stamp}{body} {words}".rstrip())
    if seq.failing is not None:
        lines.append(f"! the failing step: {_cut(seq.steps[seq.failing].detail, width - 20)}")
    text = "\n".join(lines) + "\n"
    return to_ascii(text) if ascii_only else text


#: One character for one, so that columns stay where they are.
_ASCII = str.maketrans({"→": ">", "←": "<", "…": "~", "✗": "X", "✓": "+", "↳": ">"})


def to_ascii(text: str) -> str:
    """``text`` with every character outside ASCII replaced by one that is."""
    return text.translate(_ASCII).encode("ascii", "replace").decode("ascii")


# -- SVG --------------------------------------------------------------------------------

_LANE_W = 170
_LEFT = 70
_TOP = 46
_ROW = 26
_CHAR = 6.6  # px per character at 11px sans-serif, a safe over-estimate


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _svg_step(i: int, step: Step, x: dict[str, float], y: float, failing: bool) -> list[str]:
    fill, stroke = TONES[step.tone if step.tone in TONES else ""]
    colour = stroke if step.tone else "#333"
    out = [f'<g id="step-{i}" class="step {step.style} {step.kind}">']
    out.append(f"<title>{_esc(step.detail or step.text)}</title>")
    a, b = x[step.src], x[step.dst]
    if step.style == "note":
        lo, hi = min(a, b), max(a, b)
        span = max(hi - lo + 40, _LANE_W * 1.5)
        chars = int((span - 10) / _CHAR)
        text = _cut(step.text, chars)
        w = min(span, len(text) * _CHAR + 14)
        left = (lo + hi) / 2 - w / 2
        out.append(
            f'<rect x="{left:.1f}" y="{y - 9:.1f}" width="{w:.1f}" height="18" rx="4" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="{2 if failing else 1}"/>'
        )
        out.append(
            f'<text x="{(lo + hi) / 2:.1f}" y="{y + 4:.1f}" text-anchor="middle">'
            f"{_esc(text)}</text>"
        )
    else:
        span = abs(b - a)
        chars = int(max(span, _LANE_W * 1.6) / _CHAR) - 1
        text = _cut(step.text, chars)
        dash = ' stroke-dasharray="5,3"' if step.style == "reply" else ""
        width = 2.5 if failing else 1.3
        end = b - 4 if b > a else b + 4
        marker = "cross" if step.style == "block" else "head"
        out.append(
            f'<line x1="{a:.1f}" y1="{y + 5:.1f}" x2="{end:.1f}" y2="{y + 5:.1f}" '
            f'stroke="{colour}" stroke-width="{width}"{dash} marker-end="url(#{marker})"/>'
        )
        mid = (a + b) / 2
        out.append(
            f'<text x="{mid:.1f}" y="{y:.1f}" text-anchor="middle" fill="{colour}">'
            f"{_esc(text)}</text>"
        )
    out.append("</g>")
    return out


def to_svg(seq: Sequence) -> str:
    n = max(len(seq.lanes), 1)
    width = _LEFT + n * _LANE_W + 10
    height = _TOP + (len(seq.steps) + 1) * _ROW + 10
    x = {lane.name: _LEFT + (i + 0.5) * _LANE_W for i, lane in enumerate(seq.lanes)}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="maillab-sequence" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="DejaVu Sans, Arial, sans-serif" font-size="11">',
        "<defs>"
        '<marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="context-stroke"/></marker>'
        '<marker id="cross" viewBox="0 0 10 10" refX="5" refY="5" markerWidth="10" '
        'markerHeight="10"><path d="M1,1 L9,9 M9,1 L1,9" stroke="#c62828" stroke-width="2"/>'
        "</marker></defs>",
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    if seq.title:
        parts.append(
            f'<text x="8" y="16" font-size="13" font-weight="bold">{_esc(seq.title)}</text>'
        )
    bottom = height - 6
    for lane in seq.lanes:
        cx = x[lane.name]
        parts.append(f'<g id="lane-{_esc(lane.name)}" class="lane">')
        parts.append(
            f'<line x1="{cx:.1f}" y1="{_TOP - 4}" x2="{cx:.1f}" y2="{bottom}" '
            'stroke="#bbb" stroke-width="1"/>'
        )
        parts.append(
            f'<rect x="{cx - 70:.1f}" y="{_TOP - 26}" width="140" height="22" rx="3" '
            'fill="#eef3fb" stroke="#5b7db1"/>'
        )
        label = _cut(lane.name, 20)
        parts.append(
            f'<text x="{cx:.1f}" y="{_TOP - 11}" text-anchor="middle" font-weight="bold">'
            f"{_esc(label)}</text>"
        )
        if lane.address:
            parts.append(f"<title>{_esc(lane.name)} {_esc(lane.address)}</title>")
        parts.append("</g>")
    for i, step in enumerate(seq.steps):
        y = _TOP + (i + 1) * _ROW - 6
        failing = i == seq.failing
        if failing:
            parts.append(
                f'<rect id="failing" x="0" y="{y - 14:.1f}" width="{width}" height="{_ROW}" '
                'fill="#fde2e1"/>'
            )
        parts.append(
            f'<text x="{_LEFT - 8}" y="{y + 4:.1f}" text-anchor="end" fill="#777">'
            f"{_esc(lab_clock(step.t))}</text>"
        )
        parts.extend(_svg_step(i, step, x, y, failing))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


# -- files --------------------------------------------------------------------------------


_SUFFIXES = {".svg": "svg", ".mmd": "mermaid", ".mermaid": "mermaid", ".txt": "text"}


def diagram_format(path: str | Path) -> str:
    """``svg``, ``mermaid`` or ``text`` from a file name; SimError otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise SimError(
            f"{path}: a diagram is written as .svg, .mmd or .txt, not {suffix or 'no suffix'!r}"
        )
    return _SUFFIXES[suffix]


def save(seq: Sequence, path: str | Path) -> Path:
    """Write by suffix: ``.svg``, ``.mmd`` (or ``.mermaid``), ``.txt``."""
    out = Path(path)
    fmt = diagram_format(out)
    text = to_svg(seq) if fmt == "svg" else to_mermaid(seq) if fmt == "mermaid" else to_text(seq)
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as err:
        raise SimError(f"cannot write {out}: {err.strerror or err}") from None
    return out
