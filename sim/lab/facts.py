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
from dataclasses import dataclass, field
from typing import Any

from sim.clock import format_duration

__all__ = [
    "FACTS",
    "Fact",
    "FactDef",
    "Rendered",
    "RunFacts",
    "duration",
    "known_facts",
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


def _data(event: Event) -> Mapping[str, Any]:
    data = event.get("data")
    return data if isinstance(data, Mapping) else {}


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
        data = _data(event)
        command = str(data.get("command") or "")
        if (
            event.get("kind") == "smtp"
            and data.get("role") == "client"
            and data.get("stage") == "helo"
        ):
            words = command.split()
            if len(words) >= 2 and words[0].upper() in ("EHLO", "HELO"):
                return Fact(words[1], (event,))
    return None


def _check_event(name: str, trace: Sequence[Event]) -> Event | None:
    return _first(trace, lambda e: e.get("kind") == "check" and _data(e).get("check") == name)


def _check_result(name: str) -> Extractor:
    def extract(result: Mapping[str, Any], trace: Sequence[Event]) -> Fact | None:
        event = _check_event(name, trace)
        if event is None:
            return None
        return Fact(str(_data(event).get("result")), (event,))

    return extract


def _client_ip(result: Mapping[str, Any], trace: Sequence[Event]) -> Fact | None:
    event = _first(trace, lambda e: e.get("kind") == "check" and bool(_data(e).get("client")))
    return None if event is None else Fact(str(_data(event)["client"]), (event,))


def _ptr_name(result: Mapping[str, Any], trace: Sequence[Event]) -> Fact | None:
    """The name the receiver found in the PTR record of the client's address."""
    event = _check_event("ptr", trace) or _check_event("fcrdns", trace)
    if event is None:
        return None
    names = (_data(event).get("details") or {}).get("names") or []
    return Fact(str(names[0]), (event,)) if names else None


def _answer(result: Mapping[str, Any], trace: Sequence[Event]) -> Fact | None:
    answers = result.get("answers") or []
    if not answers:
        return None
    value = str(answers[0].get("data"))
    event = _first(reversed(trace), lambda e: e.get("kind") == "dns" and value in _event_json(e))
    return None if event is None else Fact(value, (event,))


def _rcode(result: Mapping[str, Any], trace: Sequence[Event]) -> Fact | None:
    value = result.get("rcode")
    event = _first(
        reversed(trace), lambda e: e.get("kind") == "dns" and _data(e).get("rcode") == value
    )
    return None if event is None or value is None else Fact(str(value), (event,))


# -- queue facts (a relay's attempts) -----------------------------------------


def _queue_events(trace: Sequence[Event]) -> list[Event]:
    """The queue events of the first message (not a bounce) that a relay tried
    to deliver in this run, from its first event on."""
    attempts = [
        e
        for e in trace
        if e.get("kind") == "queue"
        and _data(e).get("event") == "attempt"
        and _data(e).get("queue_id")
    ]
    if not attempts:
        return []
    queue_id = _data(attempts[0])["queue_id"]
    return [e for e in trace if e.get("kind") == "queue" and _data(e).get("queue_id") == queue_id]


def _attempt_events(trace: Sequence[Event]) -> list[Event]:
    return [e for e in _queue_events(trace) if _data(e).get("event") == "attempt"]


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
    events = [e for e in _queue_events(trace) if _data(e).get("event") in ("deferred", "delivered")]
    if not events or _data(events[-1]).get("event") != "deferred":
        return None
    found = _NEXT.search(str(events[-1].get("summary") or ""))
    return None if found is None else Fact(found.group(1), (events[-1],))


def _delivered_to(result: Mapping[str, Any], trace: Sequence[Event]) -> Fact | None:
    events = [e for e in _queue_events(trace) if _data(e).get("event") == "delivered"]
    if not events:
        return None
    mx = _data(events[-1]).get("remote_mta") or _data(events[-1]).get("mx")
    return None if not mx else Fact(str(mx), (events[-1],))


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
    moved = {
        _data(e).get("queue_id")
        for e in recent
        if e.get("kind") == "queue" and _data(e).get("event") == "attempt"
    }
    # A message still waiting (its last word a deferral) belongs to the
    # step's story even when nothing moved yet.
    last: dict[Any, str] = {}
    for e in trace:
        if e.get("kind") == "queue" and _data(e).get("queue_id"):
            last[_data(e)["queue_id"]] = str(_data(e).get("event"))
    moved |= {queue_id for queue_id, event in last.items() if event == "deferred"}
    moved.discard(None)
    return [
        e
        for e in trace
        if float(e.get("t") or 0) >= since
        or (e.get("kind") == "queue" and _data(e).get("queue_id") in moved)
    ]


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
