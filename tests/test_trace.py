"""sim.trace.TraceHub: the lab-wide log keeps the latest events (a lab left
running under traffic must not grow without bound); an experiment's own trace
keeps every event it was given; listeners see every event."""

from __future__ import annotations

from sim.trace import TraceEvent, TraceHub


def _event(i: int) -> TraceEvent:
    return TraceEvent(t=float(i), kind="net", node="n", summary=f"event {i}")


def test_the_lab_log_keeps_the_latest_events_and_a_trace_all_of_its_own() -> None:
    hub = TraceHub(log_limit=10)
    trace = hub.open()
    seen: list[str] = []
    hub.subscribe(lambda trace_id, event: seen.append(event.summary))
    for i in range(25):
        hub.emit(trace.id if i % 2 == 0 else None, _event(i))
    kept = [e.summary for e in hub.log.events]
    assert 5 <= len(kept) <= 10
    assert kept == [f"event {i}" for i in range(25 - len(kept), 25)]  # the latest, in order
    assert [e.summary for e in trace.events] == [f"event {i}" for i in range(0, 25, 2)]
    assert len(seen) == 25
