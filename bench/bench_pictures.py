"""How long the pictures of a trace take (issue 20), on recorded traces.

A notebook cell's value is rendered with its pictures (card, alignment
panel, timeline, sequence diagram), so they must stay quick even for the
long trace of a message retried for five days (24 attempts, ~280 events).
Target on a 2-core machine: every rendering of the longest recorded trace
under 0.2 s. Prints per-rendering times; asserts nothing.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sim.present import alignment_of, sequence_of, timeline_of
from sim.present.pcap import synthesise
from sim.trace import Trace, TraceEvent

TRACES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "traces"


def _best(fn: Callable[[], Any], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _renderings(trace: Trace) -> dict[str, Callable[[], Any]]:
    seq = sequence_of(trace)
    return {
        "sequence model": lambda: sequence_of(trace),
        "sequence svg": seq.to_svg,
        "sequence text": seq.to_text,
        "sequence mermaid": seq.to_mermaid,
        "alignment panel": lambda: alignment_of(trace),
        "timeline": lambda: timeline_of(trace),
        "pcap synthesis": lambda: synthesise(trace).to_bytes(),
    }


def main() -> None:
    print(f"# pictures of recorded traces ({platform.node()}, python {platform.python_version()}; "
          "target: each < 0.2 s)")  # fmt: skip
    for path in sorted(TRACES.glob("*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        trace = Trace(id=path.stem, events=[TraceEvent.from_json(e) for e in raw["trace"]])
        seq = sequence_of(trace)
        rows = _renderings(trace)
        print(f"  {path.stem} ({len(trace)} events, {len(seq.steps)} steps)")
        for name, fn in rows.items():
            print(f"    {name:<18} {_best(fn) * 1000:8.2f} ms")


if __name__ == "__main__":
    main()
