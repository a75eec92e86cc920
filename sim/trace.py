"""Traces: what happened during an experiment, as structured events.

Every experiment returns a :class:`Trace`. Each :class:`TraceEvent` has a kind,
the node where it happened, one readable sentence and structured data; the
TUI, ``--json`` and notebooks all render the same events.

What each kind's ``data`` holds is declared once, as typed classes, in
:mod:`sim.events` (generated into docs/trace.md and docs/trace.schema.json):
services construct those, readers narrow with ``event.as_(Cls)`` and read
attributes. ``TraceEvent(t, kind, node, summary, {...})`` with a plain dict
still works (a trace saved by another version, a branch not yet moved over);
the tests name every service event whose data is not a declared class.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import field
from typing import Any, TypeVar

from sim.events import EventData, parse_data
from sim.fastclass import dataclass

__all__ = ["LOG_LIMIT", "Trace", "TraceEvent", "TraceHub", "event", "new_trace_id"]

E = TypeVar("E", bound=EventData)

_ids = itertools.count(1)


def new_trace_id() -> str:
    """A trace id unique within this process and distinct across processes."""
    return f"t{int(time.time() * 1000) % 10**9:09d}-{next(_ids)}"


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One thing that happened, at lab time ``t`` (seconds since lab start).

    ``data`` is an instance of the kind's class in :mod:`sim.events` (a
    read-only mapping of its keys); a plain dict only for events read from a
    trace whose data no declared class fits."""

    t: float
    kind: str
    node: str
    summary: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def as_(self, cls: type[E]) -> E | None:
        """``data`` as ``cls`` (a class of :mod:`sim.events`), or None when
        this event is of another class."""
        data = self.data
        return data if isinstance(data, cls) else None

    def to_json(self) -> dict[str, Any]:
        data = self.data
        return {
            "t": self.t,
            "kind": self.kind,
            "node": self.node,
            "summary": self.summary,
            "data": data.to_json() if isinstance(data, EventData) else dict(data),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> TraceEvent:
        kind = str(raw["kind"])
        data = dict(raw.get("data", {}))
        return cls(
            t=float(raw["t"]),
            kind=kind,
            node=str(raw["node"]),
            summary=str(raw["summary"]),
            data=parse_data(kind, data) or data,
        )


def event(t: float, node: str, summary: str, data: EventData) -> TraceEvent:
    """An event whose data is a declared class (its kind comes from the class)."""
    return TraceEvent(t, data.KIND, node, summary, data)


@dataclass
class Trace:
    """An ordered list of events that belong to one experiment."""

    id: str = field(default_factory=new_trace_id)
    events: list[TraceEvent] = field(default_factory=list)

    def add(self, event: TraceEvent) -> None:
        self.events.append(event)

    def __iter__(self) -> Iterator[TraceEvent]:
        return iter(sorted(self.events, key=lambda e: e.t))

    def __len__(self) -> int:
        return len(self.events)

    def of_kind(self, kind: str) -> list[TraceEvent]:
        return [e for e in self if e.kind == kind]

    def of(self, cls: type[E]) -> list[tuple[TraceEvent, E]]:
        """The events whose data is ``cls``, each with its data, in time order."""
        return [(e, e.data) for e in self if isinstance(e.data, cls)]

    def to_json(self) -> list[dict[str, Any]]:
        return [e.to_json() for e in self]

    def __repr__(self) -> str:
        return str(presented("trace_repr")(self))

    def _repr_html_(self) -> str:
        return str(presented("trace_html")(self))


#: How many events the lab-wide log keeps at most: a lab left running under
#: traffic (``maillab up`` with a client sending in a loop) would otherwise
#: grow without bound. When full, the older half goes.
LOG_LIMIT = 50_000


class TraceHub:
    """Collects events from every service of a running lab.

    Services do not know which experiment they serve: a connection carries a
    trace id (see :mod:`sim.net.api`), and services emit into the hub under
    that id. Events without an id still land in the lab-wide log, which
    ``Lab.trace()`` shows: its latest events (at least ``log_limit / 2``),
    while an experiment's own trace keeps all of its events.
    """

    def __init__(self, log_limit: int = LOG_LIMIT) -> None:
        self._traces: dict[str, Trace] = {}
        self.log = Trace(id="lab")
        self.log_limit = log_limit
        self._listeners: list[Any] = []

    def open(self, trace_id: str | None = None) -> Trace:
        trace = Trace(id=trace_id) if trace_id else Trace()
        self._traces[trace.id] = trace
        return trace

    def get(self, trace_id: str) -> Trace | None:
        return self._traces.get(trace_id)

    def emit(self, trace_id: str | None, event: TraceEvent) -> None:
        log = self.log.events
        log.append(event)
        if len(log) > self.log_limit:
            del log[: len(log) // 2]
        if trace_id is not None:
            trace = self._traces.get(trace_id)
            if trace is not None:
                trace.add(event)
        for listener in list(self._listeners):
            listener(trace_id, event)

    async def wait_for(
        self,
        trace_id: str,
        predicate: Callable[[TraceEvent], bool],
        timeout: float,
    ) -> TraceEvent | None:
        """The first event of ``trace_id`` (already there or still to come) for
        which ``predicate`` holds; None after ``timeout`` real seconds."""
        trace = self._traces.get(trace_id)
        if trace is not None:
            for event in trace.events:
                if predicate(event):
                    return event
        import asyncio  # (here: the command line imports traces, and needs no loop)

        loop = asyncio.get_running_loop()
        found: asyncio.Future[TraceEvent] = loop.create_future()

        def listener(tid: str | None, event: TraceEvent) -> None:
            if tid == trace_id and not found.done() and predicate(event):
                found.set_result(event)

        self.subscribe(listener)
        try:
            return await asyncio.wait_for(found, timeout)
        except TimeoutError:
            return None
        finally:
            self.unsubscribe(listener)

    def subscribe(self, listener: Any) -> None:
        """Call ``listener(trace_id, event)`` for every event from now on."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Any) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)


def presented(name: str) -> Callable[..., Any]:
    """The display function ``name`` of :mod:`sim.cards` (a short ``repr`` or
    a notebook's ``_repr_html_``). Results, traces and the lab sit below the
    presentation layer and never import it (docs/architecture.md): Jupyter
    asks for the display long after every module can be loaded, so it is
    looked up by name then."""
    import importlib

    return getattr(importlib.import_module("sim.cards"), name)  # type: ignore[no-any-return]
