"""Facts of a run, quoted by a lab's feedback texts.

A task's hints and explanation may quote what happened in the run its check
just made, so they never tell of an event that did not happen::

    explanation: |
      The PTR check passes: 192.0.2.10 is now {ptr.name}, and the VPS
      greeted the MX with `EHLO {helo.name}`.
    hints:
      - "The relay's next attempt comes {next_attempt.in|later}: let lab time pass."

``{name}`` is replaced by the fact; ``{name|other words}`` says ``other
words`` when the run has no such fact (a hint may be read before any check
ran). Only dotted lower-case names in braces are templates, so a hint that
shows YAML such as ``{node: ns, zone: x}`` is left alone. A template that
names a fact this step's runs cannot produce is a lab file error, found when
the file loads (:func:`unknown_facts`).

Every fact comes from trace events of the run and keeps them as its
``evidence``; ``tests/test_lab_feedback.py`` checks, for every task of every
lab, that what the feedback quotes is in that run's trace.

Subjects: a check that runs an experiment (``send``, ``dig``, ``read``,
``connect``) gives that result's facts; a check over the lab's state gives
``state`` facts, read from the lab's trace since the step began (queue
attempts of the messages that moved since then).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import field
from typing import Any, TypeVar

from sim.clock import format_duration
from sim.events import (
    Check,
    Dns,
    EventData,
    QueueAttempt,
    QueueDeferred,
    QueueDelivered,
    QueueInternalError,
    SmtpClientExchange,
    parse_data,
)
from sim.fastclass import dataclass

__all__ = [
    "FACTS",
    "Fact",
    "FactDef",
    "Rendered",
    "RunFacts",
    "duration",
    "known_facts",
    "last_queue_events",
    "placeholders",
    "render",
    "run_facts",
    "state_trace",
    "unknown_facts",
]

Event = Mapping[str, Any]

#: ``{name}`` or ``{name|fallback}``; a name is dotted lower-case words.
PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*)(?:\|([^{}\n]*))?\}")

SEND = "send"
STATE = "state"


@dataclass(frozen=True)
class Fact:
    """One fact of a run: its text and the trace events it was read from.

    ``derived`` facts (a count, a time between two events) are not written
    literally in any one event; the others are.
    """

    value: str
    evidence: tuple[Event, ...]
    derived: bool = False


Extractor = Callable[[Mapping[str, Any], Sequence[Event]], Fact | None]


@dataclass(frozen=True)
class FactDef:
    name: str
    #: The run kinds that produce it (``send``, ``dig``, ``read``, ``connect``, ``state``).
    subjects: frozenset[str]
    description: str
    extract: Extractor = field(compare=False)


# -- extractors ---------------------------------------------------------------


E = TypeVar("E", bound=EventData)


def _as(event: Event, cls: type[E]) -> E | None:
    """The event's data as ``cls`` (sim/events.py), or None when it is another
    kind (the facts read a result's JSON: each event is read typed here)."""
    if event.get("kind") != cls.KIND:
        return None
    data = event.get("data")
    typed = parse_data(cls.KIND, data) if isinstance(data, Mapping) else None
    return typed if isinstance(typed, cls) else None


def _queue_entry(event: Event) -> tuple[str, EventData] | None:
    """The queue id and typed data of a relay's ``queue`` event about one entry."""
    if event.get("kind") != "queue":
        return None
    data = event.get("data")
    typed = parse_data("queue", data) if isinstance(data, Mapping) else None
    queue_id = getattr(typed, "queue_id", None)
    return (queue_id, typed) if isinstance(queue_id, str) and typed is not None else None


def _queue_id(event: Event) -> str | None:
    entry = _queue_entry(event)
    return entry[0] if entry else None


def last_queue_events(trace: Iterable[Event]) -> dict[str, EventData]:
    """Each queue entry's last ``queue`` event in ``trace`` (typed), by queue id."""
    last: dict[str, EventData] = {}
    for event in trace:
        entry = _queue_entry(event)
        if entry is not None:
            last[entry[0]] = entry[1]
    return last


def _first(events: Iterable[Event], test: Callable[[Event], bool]) -> Event | None:
    return next((e for e in events if test(e)), None)


def _reply_fact(key: str) -> Extractor:
    """The last SMTP reply's code/enhanced/text, from the smtp event that carried it."""

    def extract(result: Mapping[str, Any], trace: Sequence[Event]) -> Fact | None:
        reply = result.get("reply") or {}
        value = reply.get(key)
        if value in (None, ""):
            return None
        wanted = str(value)
        for event in reversed(trace):
            if event.get("kind") in ("smtp", "queue") and wanted in _event_json(event):
                return Fact(wanted, (event,))
        return None

    return extract


def _event_json(event: Event) -> str:
    return json.dumps(event, ensure_ascii=False, default=str)


def _outcome(result: Mapping[str, Any], trace: Sequence[Event]) -> Fact | None:
    """The send's outcome, read from the last reply or queue event that decided it."""
    value = result.get("outcome")
    event = _first(reversed(trace), lambda e: e.get("kind") in ("smtp", "queue", "delivery"))
    if event is None or value is None:
        return None
    return Fact(str(value), (event,), derived=True)


def _helo_name(result: Mapping[str, Any], trace: Sequence[Event]) -> Fact | None:
    """The name the sending client greeted its first server with."""
    for event in trace:
        data = _as(event, SmtpClientExchange)
        if data is not None and data.stage == "helo":
            words = data.command.split()
            if len(words) >= 2 and words[0].upper() in ("EHLO", "HELO"):
                return Fact(words[1], (event,))
    return None


def _check_event(name: str, trace: Sequence[Event]) -> tuple[Event, Check] | None:
    for event in trace:
        check = _as(event, Check)
        if check is not None and check.check == name:
            return event, check
    return None


def _check_result(name: str) -> Extractor:
    def extract(result: Mapping[str, Any], trace: Sequence[Event]) -> Fact | None:
        found = _check_event(name, trace)
        if found is None:
            return None
        event, check = found
        return Fact(check.result, (event,))

    return extract


def _client_ip(result: Mapping[str, Any], trace: Sequence[Event]) -> Fact | None:
    for event in trace:
        check = _as(event, Check)
        if check is not None and check.client:
            return Fact(check.client, (event,))
    return None


def _ptr_name(result: Mapping[str, Any], trace: Sequence[Event]) -> Fact | None:
    """The name the receiver found in the PTR record of the client's address."""
    found = _check_event("ptr", trace) or _check_event("fcrdns", trace)
    if found is None:
        return None
    event, check = found
    names = check.details.get("names") or []
    return Fact(str(names[0]), (event,)) if names else None


def _answer(result: Mapping[str, Any], trace: Sequence[Event]) -> Fact | None:
    answers = result.get("answers") or []
    if not answers:
        return None
    value = str(answers[0].get("data"))
    event = _first(reversed(trace), lambda e: e.get("kind") == Dns.KIND and value in _event_json(e))
    return None if event is None else Fact(value, (event,))


def _rcode(result: Mapping[str, Any], trace: Sequence[Event]) -> Fact | None:
    value = result.get("rcode")
    event = _first(reversed(trace), lambda e: getattr(_as(e, Dns), "rcode", None) == value)
    return None if event is None or value is None else Fact(str(value), (event,))


# -- queue facts (a relay's attempts) -----------------------------------------


def _queue_events(trace: Sequence[Event]) -> list[Event]:
    """The queue events of the first message (not a bounce) that a relay tried
    to deliver in this run, from its first event on."""
    first = next((a for e in trace if (a := _as(e, QueueAttempt)) and a.queue_id), None)
    if first is None:
        return []
    return [e for e in trace if _queue_id(e) == first.queue_id]


def _attempt_events(trace: Sequence[Event]) -> list[Event]:
    return [e for e in _queue_events(trace) if _as(e, QueueAttempt) is not None]


def _attempts(result: Mapping[str, Any], trace: Sequence[Event]) -> Fact | None:
    events = _attempt_events(trace)
    return Fact(str(len(events)), tuple(events), derived=True) if events else None


def _since_first(result: Mapping[str, Any], trace: Sequence[Event]) -> Fact | None:
    """Lab time between the message's first and its last delivery attempt."""
    events = _attempt_events(trace)
    if len(events) < 2:
        return None
    gap = float(events[-1]["t"]) - float(events[0]["t"])
    return Fact(duration(gap), (events[0], events[-1]), derived=True)


_NEXT = re.compile(r"next attempt in (\S+?)(?:\s|\)|;|$)")


def _next_attempt(result: Mapping[str, Any], trace: Sequence[Event]) -> Fact | None:
    """When the relay will try next, as its last deferral said."""
    events = [
        e
        for e in _queue_events(trace)
        if _as(e, QueueDeferred) is not None or _as(e, QueueDelivered) is not None
    ]
    if not events or _as(events[-1], QueueDeferred) is None:
        return None
    found = _NEXT.search(str(events[-1].get("summary") or ""))
    return None if found is None else Fact(found.group(1), (events[-1],))


def _delivered_to(result: Mapping[str, Any], trace: Sequence[Event]) -> Fact | None:
    delivered = [(e, d) for e in _queue_events(trace) if (d := _as(e, QueueDelivered))]
    if not delivered:
        return None
    event, data = delivered[-1]
    return None if not data.mx else Fact(data.mx, (event,))


def duration(seconds: float) -> str:
    """Lab time as a student reads it: ``30m``, ``5m 2s``, ``1d 2h``."""
    whole = round(seconds)
    if whole < 60:
        return format_duration(whole)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return " ".join(parts[:2])


# -- the catalogue ------------------------------------------------------------

_SEND = frozenset({SEND})
_QUEUE = frozenset({SEND, STATE})
_DIG = frozenset({"dig"})

FACTS: dict[str, FactDef] = {
    f.name: f
    for f in (
        FactDef("outcome", _SEND, "what became of the message (delivered, rejected…)", _outcome),
        FactDef("reply.code", _SEND, "the code of the last SMTP reply", _reply_fact("code")),
        FactDef(
            "reply.enhanced", _SEND, "its enhanced status code (RFC 3463)", _reply_fact("enhanced")
        ),
        FactDef("reply.text", _SEND, "its text", _reply_fact("text")),
        FactDef("helo.name", _SEND, "the name the client greeted with (EHLO/HELO)", _helo_name),
        FactDef("client.ip", _SEND, "the address the receiver saw the client at", _client_ip),
        FactDef("ptr.name", _SEND, "the name the receiver found in the client's PTR", _ptr_name),
        *(
            FactDef(f"{c}.result", _SEND, f"the receiver's {c} verdict", _check_result(c))
            for c in ("ptr", "fcrdns", "helo", "dnsbl", "spf", "dkim", "dmarc")
        ),
        FactDef("attempts", _QUEUE, "how many delivery attempts the relay made", _attempts),
        FactDef(
            "last_attempt.after",
            _QUEUE,
            "lab time from the first attempt to the last one",
            _since_first,
        ),
        FactDef(
            "next_attempt.in",
            _QUEUE,
            "when the relay tries next (its last deferral)",
            _next_attempt,
        ),
        FactDef("delivered.mx", _QUEUE, "the MX the relay delivered to", _delivered_to),
        FactDef("answer", _DIG, "the first answer's data", _answer),
        FactDef("rcode", _DIG, "the DNS response code", _rcode),
    )
}


# -- a run's facts --------------------------------------------------------------


@dataclass
class RunFacts:
    """The facts of the runs a step's check made, first run first."""

    facts: dict[str, Fact] = field(default_factory=dict)

    def add_run(self, subject: str, result: Mapping[str, Any], trace: Sequence[Event]) -> None:
        """Read the facts of one run (earlier runs keep the facts they gave)."""
        for definition in FACTS.values():
            if subject not in definition.subjects or definition.name in self.facts:
                continue
            found = definition.extract(result, trace)
            if found is not None:
                self.facts[definition.name] = found

    def get(self, name: str) -> Fact | None:
        return self.facts.get(name)


def state_trace(trace: Sequence[Event], since: float) -> list[Event]:
    """The lab trace a check over the lab's state reads: the events from lab
    time ``since`` on, with the earlier queue events of every message the
    relays tried again since then or still hold (its first attempt counts
    too)."""
    recent = [e for e in trace if float(e.get("t") or 0) >= since]
    moved = {a.queue_id for e in recent if (a := _as(e, QueueAttempt))}
    # A message still waiting (its last word a deferral) belongs to the
    # step's story even when nothing moved yet.
    moved |= {
        queue_id
        for queue_id, data in last_queue_events(trace).items()
        if isinstance(data, QueueDeferred | QueueInternalError)
    }
    return [e for e in trace if float(e.get("t") or 0) >= since or _queue_id(e) in moved]


def run_facts(subject: str, result: Mapping[str, Any] | None) -> RunFacts:
    """The facts of one experiment result (JSON, with its ``trace``)."""
    facts = RunFacts()
    if result is not None:
        facts.add_run(subject, result, list(result.get("trace") or ()))
    return facts


@dataclass(frozen=True)
class Rendered:
    text: str
    #: The facts the text quotes, by name.
    quoted: dict[str, Fact]


def render(template: str, facts: RunFacts | None) -> Rendered:
    """Fill ``template``; a fact the run lacks becomes its fallback words, or
    "(not seen in this run)" so the text never claims it."""
    quoted: dict[str, Fact] = {}

    def fill(match: re.Match[str]) -> str:
        name, fallback = match.group(1), match.group(2)
        found = facts.get(name) if facts is not None else None
        if found is None:
            return fallback.strip() if fallback is not None else "(not seen in this run)"
        quoted[name] = found
        return found.value

    return Rendered(PLACEHOLDER.sub(fill, template), quoted)


def placeholders(text: str) -> list[tuple[int, str]]:
    """Every template in ``text``: (offset, fact name)."""
    return [(m.start(), m.group(1)) for m in PLACEHOLDER.finditer(text)]


def unknown_facts(text: str, subjects: Iterable[str]) -> list[tuple[int, str, str]]:
    """Templates in ``text`` that no run of these subjects can fill:
    (offset, name, why)."""
    kinds = set(subjects)
    problems = []
    for offset, name in placeholders(text):
        definition = FACTS.get(name)
        if definition is None:
            problems.append((offset, name, f"there is no fact {{{name}}}"))
        elif not definition.subjects & kinds:
            runs = ", ".join(sorted(kinds)) or "none"
            problems.append(
                (
                    offset,
                    name,
                    f"the fact {{{name}}} comes from a {' or '.join(sorted(definition.subjects))} "
                    f"run, and this step's checks make {runs}",
                )
            )
    return problems


def known_facts(subjects: Iterable[str]) -> list[str]:
    kinds = set(subjects)
    return [name for name, d in FACTS.items() if d.subjects & kinds]
