"""Traces: what happened during an experiment, as structured events.

Every experiment returns a :class:`Trace`. Each :class:`TraceEvent` has a kind,
the node where it happened, one readable sentence and structured data; the
TUI, ``--json`` and notebooks all render the same events.

Kinds and the keys their ``data`` carries (more keys may be added):

``dns``       client, server, name, type, rcode, answers [{name,type,ttl,data}]
``net``       src, dst, proto, port, verdict (accept|drop|reject|unreachable|closed),
              path [node...], router, rule (0-based index), note
``smtp``      role ("client"), peer, command, code, enhanced, text; on the final
              dot of DATA also headers (the message's header lines as sent)
``tls``       peer, version, cipher
``check``     check, result, action (reject|junk|header|none), explanation, inputs {...}
``queue``     event (queued|attempt|deferred|delivered|bounced|warning|route), queue_id, ...
``delivery``  mailbox, folder (inbox|junk), message_id
``imap``      role ("client"), peer, command (passwords masked), response, status
              (OK|NO|BAD|BYE), code (e.g. AUTHENTICATIONFAILED), text, lines
``pop3``      the same for POP3: status +OK|-ERR, code (e.g. AUTH, IN-USE)
``mailbox``   what the MDA did: protocol (imap|pop3), event (login|login_failed|tls|
              moved|deleted), user, path and to (Maildir paths, for moved/deleted)
``outcome``   outcome, stage, code, enhanced, text
``route``     a direct send told where to connect (``server``): domain, server, host,
              address, node, mx_lookup (false: the MX records were not looked up)
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["LOG_LIMIT", "Trace", "TraceEvent", "TraceHub", "new_trace_id"]

_ids = itertools.count(1)


def new_trace_id() -> str:
    """A trace id unique within this process and distinct across processes."""
    return f"t{int(time.time() * 1000) % 10**9:09d}-{next(_ids)}"


@dataclass(frozen=True)
class TraceEvent:
    """One thing that happened, at lab time ``t`` (seconds since lab start)."""

    t: float
    kind: str
    node: str
    summary: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TraceEvent:
        return cls(
            t=float(raw["t"]),
            kind=str(raw["kind"]),
            node=str(raw["node"]),
            summary=str(raw["summary"]),
            data=dict(raw.get("data", {})),
        )


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
