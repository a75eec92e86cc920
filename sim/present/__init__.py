"""Pictures of what happened: one model per picture, built from a trace.

Every picture here is a rendering of structured data the experiments already
return (a :class:`~sim.trace.Trace`, a result); nothing here decides an
outcome. Each model renders as text (80 columns, for terminals and the TUI),
as SVG (notebooks, files) and, where the format fits, as Mermaid or JSON:

* :mod:`sim.present.sequence` — who talked to whom, step by step
  (:func:`sequence_of`), rendered by :mod:`sim.present.seqrender`;
* :mod:`sim.experiments.alignment` — the DMARC alignment panel (:func:`alignment_of`);
* :mod:`sim.present.timeline` — a message's retries on a lab-time axis
  (:func:`timeline_of`);
* :mod:`sim.cards` (beside the notebooks) — ``_repr_html_`` and short ``repr``
  of results and the lab;
* :mod:`sim.present.pcap` — the experiment as a pcapng file Wireshark opens;
* :mod:`sim.present.walks` — the way each packet went (the one reader of
  paths, behind the TUI's map and the notebooks' ``journey``).

For a terminal or the TUI, one call each gives text of a given width
(``None`` when the trace has nothing to show)::

    sequence_text(result, width=80)     # who talked to whom
    alignment_text(result, width=80)    # the DMARC panel (lab 7)
    timeline_text(result, width=80)     # the retries (lab 9)
"""

from __future__ import annotations

from typing import Any

from sim.experiments.alignment import AlignmentPanel, alignment_of
from sim.present.sequence import Lane, Sequence, Step, sequence_of
from sim.present.timeline import Timeline, timeline_of

__all__ = [
    "AlignmentPanel",
    "Lane",
    "Sequence",
    "Step",
    "Timeline",
    "alignment_of",
    "alignment_text",
    "sequence_of",
    "sequence_text",
    "timeline_of",
    "timeline_text",
]


def sequence_text(source: Any, width: int = 80, *, ascii_only: bool = False) -> str | None:
    """The sequence diagram of ``source`` (a result, trace or events) in
    ``width`` columns; None when it has no steps."""
    diagram = sequence_of(source)
    return diagram.to_text(width, ascii_only=ascii_only) if diagram.steps else None


def alignment_text(source: Any, width: int = 80) -> str | None:
    """The DMARC alignment panel in ``width`` columns; None without checks."""
    panel = alignment_of(source)
    return panel.to_text(width) if panel is not None else None


def timeline_text(source: Any, width: int = 80, *, ascii_only: bool = False) -> str | None:
    """A queued message's retry timeline in ``width`` columns; None when
    nothing was queued."""
    timeline = timeline_of(source)
    return timeline.to_text(width, ascii_only=ascii_only) if timeline is not None else None
