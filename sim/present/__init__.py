"""Pictures of what happened: one model per picture, built from a trace.

Every picture here is a rendering of structured data the experiments already
return (a :class:`~sim.trace.Trace`, a result); nothing here decides an
outcome. Each model renders as text (80 columns, for terminals and the TUI),
as SVG (notebooks, files) and, where the format fits, as Mermaid or JSON:

* :mod:`sim.present.sequence` — who talked to whom, step by step
  (:func:`sequence_of`), rendered by :mod:`sim.present.seqrender`;
* :mod:`sim.present.alignment` — the DMARC alignment panel (:func:`alignment_of`);
* :mod:`sim.present.timeline` — a message's retries on a lab-time axis
  (:func:`timeline_of`);
* :mod:`sim.present.cards` — ``_repr_html_`` and short ``repr`` of results and the lab;
* :mod:`sim.present.pcap` — the experiment as a pcapng file Wireshark opens.
"""

from __future__ import annotations

from sim.present.alignment import AlignmentPanel, alignment_of
from sim.present.sequence import Lane, Sequence, Step, sequence_of
from sim.present.timeline import Timeline, timeline_of

__all__ = [
    "AlignmentPanel",
    "Lane",
    "Sequence",
    "Step",
    "Timeline",
    "alignment_of",
    "sequence_of",
    "timeline_of",
]
