"""Every event of every lab's reference run, on both backends, is a declared
class of sim/events.py and validates against docs/trace.schema.json.

A branch that records a new kind or key the old way fails here with the
kind, the key, the node and the sentence of the event, so whoever merges it
knows what to declare. One reference run per lab and backend (the mininet
ones are the costly part: each is marked ``mininet``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from sim.events import EventData, undeclared
from sim.hosting.runtime import start
from sim.lab.engine import RunningLab, run_reference
from sim.lab.loader import load_lab
from sim.topology.model import Topology
from sim.trace import TraceEvent
from tests.labsets import lab_params
from tests.mininet_support import needs_mininet

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "docs" / "trace.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def reference_events(lab_file: Path, backend: str) -> list[TraceEvent]:
    """The lab-wide log of ``lab_file``'s reference run, taken just before
    the lab stops."""
    events: list[TraceEvent] = []

    def starter(topology: Topology, backend: str) -> RunningLab:
        lab: Any = start(topology, backend=backend)
        stop = lab.stop

        def stop_after_reading() -> None:
            events.extend(lab.trace())
            stop()

        lab.stop = stop_after_reading
        return lab  # type: ignore[no-any-return]

    report = run_reference(load_lab(lab_file), backend, starter=starter)
    assert report.passed, [s for s in report.steps if not s.passed]
    return events


def problems_of(events: list[TraceEvent]) -> list[str]:
    """One line per event that is not declared, or not valid against the schema."""
    out = []
    for e in events:
        where = f"t={e.t} {e.node}: {e.summary!r}"
        if not isinstance(e.data, EventData):
            out.append(f"{where}: {undeclared(e.kind, e.data) or 'recorded as a plain dict'}")
            continue
        wire = json.loads(json.dumps(e.to_json()))
        error = jsonschema.exceptions.best_match(VALIDATOR.iter_errors(wire))
        if error is not None:
            out.append(f"{where}: kind {e.kind!r}: {error.message}")
    return out


def check_lab(lab_file: Path, backend: str) -> None:
    events = reference_events(lab_file, backend)
    assert events, "the reference run recorded nothing"
    problems = problems_of(events)
    assert not problems, f"{len(problems)} event(s):\n" + "\n".join(problems[:20])


# A lab with `backends: [mininet]` (real Postfix and Dovecot) is skipped on
# local and runs in the mininet half: its one reference run on mininet (the
# lab passes, every event of the real software's logs is declared).
@pytest.mark.parametrize("lab_file", lab_params("local"))
def test_reference_run_events_are_declared_local(lab_file: Path) -> None:
    check_lab(lab_file, "local")


@pytest.mark.parametrize("lab_file", lab_params("mininet", *needs_mininet))
def test_reference_run_events_are_declared_mininet(lab_file: Path) -> None:
    check_lab(lab_file, "mininet")


def test_an_undeclared_event_fails_with_kind_and_key() -> None:
    odd = TraceEvent(
        3.0, "queue", "relay", "expanded the list", {"event": "expanded", "members": 3}
    )
    (line,) = problems_of([odd])
    assert line.startswith("t=3.0 relay: 'expanded the list': kind 'queue'")
    assert "'members'" in line
    typed_but_wrong = TraceEvent(1.0, "dns", "x", "y", {"client": 1})
    assert "plain dict" not in problems_of([typed_but_wrong])[0]
