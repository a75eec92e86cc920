"""Check predicates: declarative tests over experiment results and lab state.

A lab file writes a check as data::

    checks:
      - run: {send: {from: mta, to: bob@qq.example}}
        expect:
          - outcome: delivered
          - checks: {spf: pass}
      - expect:
          - mailbox: {address: bob@qq.example, min: 1}

Each predicate is one entry of :data:`PREDICATES`: its shape (checked when
the file loads, and published in the JSON Schema), which experiment results
it can test (``subjects``; ``None`` for predicates over the lab's state),
and how to evaluate it. Results are read in their JSON form (the shapes
DESIGN.md fixes for ``--json``), so a check means the same whichever front
end ran the experiment. Every evaluation returns a sentence for the student.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from sim.errors import SimError
from sim.events import service_kinds
from sim.experiments import OUTCOMES as EXPERIMENT_OUTCOMES
from sim.fastclass import dataclass
from sim.services import checks as checks_registry
from sim.spec.kinds import Bool, Either, Field, Int, ListOf, MapOf, Record, Spec, Str

__all__ = [
    "CHECK_NAMES",
    "OUTCOMES",
    "PREDICATES",
    "LabState",
    "PredicateDef",
    "PredicateOutcome",
    "evaluate",
    "summarise",
]

#: The outcome vocabulary: the experiments' own (one list, with meanings).
OUTCOMES = tuple(EXPERIMENT_OUTCOMES)
#: Where a send ended: the SMTP client's stages (sim.services.smtpclient), and
#: ``dns`` when the recipient's domain itself says no (a null MX, RFC 7505).
STAGES = ("dns", "connect", "helo", "starttls", "auth", "mail", "rcpt", "data")
RCODES = ("NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", "TIMEOUT")
#: The receiver's checks (sim.services.checks: one module each).
CHECK_NAMES = checks_registry.names()
CONNECT_ERRORS = ("timeout", "refused", "unreachable")
#: Every kind a service records (sim/events.py declares them).
TRACE_KINDS = service_kinds()
FOLDERS = ("INBOX", "Junk")
ENHANCED = r"^[245]\.\d{1,3}\.\d{1,3}$"


class LabState(Protocol):
    """What predicates over the lab's state may ask a running lab."""

    def mailbox(self, address: str, folder: str = "INBOX") -> Sequence[Any]: ...

    def control(self, node: str, service: str, command: str, **args: Any) -> dict[str, Any]: ...


@dataclass(frozen=True)
class PredicateOutcome:
    passed: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "detail": self.detail}


Evaluator = Callable[[Any, Mapping[str, Any] | None, LabState | None], PredicateOutcome]


@dataclass(frozen=True)
class PredicateDef:
    name: str
    spec: Spec
    #: Experiment kinds whose result it tests; None: it reads the lab's state.
    subjects: frozenset[str] | None
    description: str
    evaluate: Evaluator


def _wanted(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def _either(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _reply_text(result: Mapping[str, Any]) -> str:
    reply = result.get("reply") or {}
    parts = [str(reply.get(k)) for k in ("code", "enhanced", "text") if reply.get(k)]
    return " ".join(parts)


# -- send and connect ------------------------------------------------------


def _outcome(
    value: Any, result: Mapping[str, Any] | None, lab: LabState | None
) -> PredicateOutcome:
    assert result is not None
    wanted = _wanted(value)
    actual = str(result.get("outcome"))
    reply = _reply_text(result)
    said = f" ({reply})" if reply else ""
    if actual in wanted:
        return PredicateOutcome(True, f"the outcome was {actual}{said}, as expected")
    return PredicateOutcome(False, f"the outcome was {actual}{said}, expected {_either(wanted)}")


def _stage(value: Any, result: Mapping[str, Any] | None, lab: LabState | None) -> PredicateOutcome:
    assert result is not None
    actual = result.get("stage")
    if actual == value:
        return PredicateOutcome(True, f"it ended at the {value} stage, as expected")
    where = f"at the {actual} stage" if actual else "with no SMTP stage"
    return PredicateOutcome(False, f"it ended {where}, expected the {value} stage")


def _reply_code(
    value: Any, result: Mapping[str, Any] | None, lab: LabState | None
) -> PredicateOutcome:
    assert result is not None
    reply = result.get("reply") or {}
    actual = reply.get("code")
    if actual == value:
        return PredicateOutcome(True, f"the reply code was {value}: {_reply_text(result)}")
    got = f"the reply was {_reply_text(result)}" if actual else "there was no SMTP reply"
    return PredicateOutcome(False, f"{got}, expected code {value}")


#: Enhanced status codes registered after RFC 3463, by the RFC that did it
#: (the IANA "Enumerated Status Codes" registry, RFC 5248).
_REGISTERED_BY = {
    **{f"7.{n}": "RFC 7372" for n in range(20, 27)},  # email authentication
    "7.27": "RFC 7505",  # sender address has null MX
    "1.10": "RFC 7505",  # recipient address has null MX
    **{f"7.{n}": "RFC 4954" for n in (8, 9, 11, 12)},  # SMTP AUTH
}


def registered_by(code: str) -> str:
    """The RFC that registered an enhanced status code such as ``5.7.25``."""
    return _REGISTERED_BY.get(code.partition(".")[2], "RFC 3463")


def _enhanced(
    value: Any, result: Mapping[str, Any] | None, lab: LabState | None
) -> PredicateOutcome:
    assert result is not None
    actual = (result.get("reply") or {}).get("enhanced")
    if actual == value:
        return PredicateOutcome(
            True, f"the enhanced status code was {value} ({registered_by(str(value))})"
        )
    got = f"it was {actual}" if actual else "the reply carried none"
    return PredicateOutcome(False, f"expected the enhanced status code {value}, {got}")


def _reply_contains(
    value: Any, result: Mapping[str, Any] | None, lab: LabState | None
) -> PredicateOutcome:
    assert result is not None
    text = _reply_text(result)
    if str(value).lower() in text.lower():
        return PredicateOutcome(True, f"the reply says {text!r}")
    return PredicateOutcome(
        False,
        f"the reply {text!r} does not mention {value!r}"
        if text
        else f"there was no reply mentioning {value!r}",
    )


def _check_result(raw: Any) -> str | None:
    """A check's verdict, whether the result lists it as text or as a mapping."""
    if raw is None:
        return None
    if isinstance(raw, Mapping):
        found = raw.get("result")
        return None if found is None else str(found)
    return str(raw)


def _checks(value: Any, result: Mapping[str, Any] | None, lab: LabState | None) -> PredicateOutcome:
    assert result is not None
    found = result.get("checks") or {}
    good: list[str] = []
    bad: list[str] = []
    for name, expected in value.items():
        wanted = _wanted(expected)
        actual = _check_result(found.get(name))
        if actual is None:
            bad.append(f"{name} was not evaluated (expected {_either(wanted)})")
        elif actual in wanted:
            good.append(f"{name}={actual}")
        else:
            bad.append(f"{name}={actual}, expected {_either(wanted)}")
    if bad:
        return PredicateOutcome(False, "; ".join(bad))
    return PredicateOutcome(True, "the receiver's checks gave " + ", ".join(good))


#: What a scoring receiver calls its verdicts (sim.services.mxscore).
SCORE_VERDICTS = ("ham", "junk", "spam")


def _score(value: Any, result: Mapping[str, Any] | None, lab: LabState | None) -> PredicateOutcome:
    """The scoring receiver's total (the last ``score`` check event: the
    final hop's), exactly or within bounds, and optionally its verdict."""
    assert result is not None
    events = [
        e
        for e in result.get("trace") or []
        if e.get("kind") == "check" and (e.get("data") or {}).get("check") == "score"
    ]
    if not events:
        return PredicateOutcome(False, "no scoring receiver judged the message (no score)")
    data = events[-1].get("data") or {}
    total = float((data.get("details") or {}).get("score", 0.0))
    verdict = str(data.get("result", ""))
    shown = f"{total:g}"
    wanted = value if isinstance(value, Mapping) else {"equals": value}
    bad: list[str] = []
    if "equals" in wanted and total != float(wanted["equals"]):
        bad.append(f"the score is {shown}, expected {wanted['equals']}")
    if "at_least" in wanted and total < float(wanted["at_least"]):
        bad.append(f"the score is {shown}, expected at least {wanted['at_least']}")
    if "below" in wanted and total >= float(wanted["below"]):
        bad.append(f"the score is {shown}, expected below {wanted['below']}")
    if "verdict" in wanted and verdict != wanted["verdict"]:
        bad.append(f"the verdict is {verdict}, expected {wanted['verdict']}")
    if bad:
        return PredicateOutcome(False, "; ".join(bad))
    return PredicateOutcome(True, f"the receiver scored the message {shown} ({verdict})")


def _error(value: Any, result: Mapping[str, Any] | None, lab: LabState | None) -> PredicateOutcome:
    assert result is not None
    actual = result.get("error")
    verdict = result.get("verdict") or {}
    why = f" ({verdict.get('note') or verdict.get('router') or ''})".replace(" ()", "")
    if actual == value:
        return PredicateOutcome(True, f"the connection failed with {value}{why}")
    got = f"failed with {actual}" if actual else f"was {result.get('outcome')}"
    return PredicateOutcome(False, f"the connection {got}, expected {value}")


def _banner_contains(
    value: Any, result: Mapping[str, Any] | None, lab: LabState | None
) -> PredicateOutcome:
    assert result is not None
    banner = result.get("banner") or ""
    if str(value).lower() in banner.lower():
        return PredicateOutcome(True, f"the server greeted with {banner!r}")
    if not banner:
        return PredicateOutcome(False, f"no greeting came back (expected one mentioning {value!r})")
    return PredicateOutcome(False, f"the greeting {banner!r} does not mention {value!r}")


# -- dig -------------------------------------------------------------------


def _question(result: Mapping[str, Any]) -> str:
    q = result.get("question") or {}
    return f"{q.get('name', '?')} {q.get('type', '?')}"


def _answers_text(result: Mapping[str, Any]) -> str:
    answers = result.get("answers") or []
    if not answers:
        return f"no answer ({result.get('rcode')})"
    return "; ".join(f"{a.get('type')} {a.get('data')}" for a in answers)


def _rcode(value: Any, result: Mapping[str, Any] | None, lab: LabState | None) -> PredicateOutcome:
    assert result is not None
    actual = result.get("rcode")
    if actual == value:
        return PredicateOutcome(True, f"{_question(result)} answered {value}")
    return PredicateOutcome(False, f"{_question(result)} answered {actual}, expected {value}")


def _answer_contains(
    value: Any, result: Mapping[str, Any] | None, lab: LabState | None
) -> PredicateOutcome:
    assert result is not None
    needle = str(value).lower()
    for answer in result.get("answers") or []:
        if needle in str(answer.get("data", "")).lower():
            return PredicateOutcome(
                True, f"{_question(result)} answered {answer.get('type')} {answer.get('data')}"
            )
    return PredicateOutcome(
        False, f"no answer to {_question(result)} contains {value!r}: {_answers_text(result)}"
    )


def _same_data(a: str, b: str) -> bool:
    """Record data equal as DNS compares names: case-insensitive, and a name
    in an answer is always absolute, so a final dot in the check is optional."""
    return a.strip().lower().rstrip(".") == b.strip().lower().rstrip(".")


def _answer_is(
    value: Any, result: Mapping[str, Any] | None, lab: LabState | None
) -> PredicateOutcome:
    assert result is not None
    qtype = (result.get("question") or {}).get("type")
    answers = [a for a in result.get("answers") or [] if a.get("type") == qtype]
    for answer in answers:
        if _same_data(str(answer.get("data", "")), str(value)):
            return PredicateOutcome(
                True, f"{_question(result)} answered {answer.get('type')} {answer.get('data')}"
            )
    return PredicateOutcome(
        False, f"{_question(result)} answered {_answers_text(result)}, expected exactly {value}"
    )


def _answer_matches(
    value: Any, result: Mapping[str, Any] | None, lab: LabState | None
) -> PredicateOutcome:
    assert result is not None
    qtype = (result.get("question") or {}).get("type")
    for answer in result.get("answers") or []:
        data = str(answer.get("data", ""))
        if answer.get("type") == qtype and re.fullmatch(str(value), data, re.IGNORECASE):
            return PredicateOutcome(
                True, f"{_question(result)} answered {answer.get('type')} {data}"
            )
    return PredicateOutcome(
        False, f"{_question(result)} answered {_answers_text(result)}, which does not match {value}"
    )


def _answer_count(
    value: Any, result: Mapping[str, Any] | None, lab: LabState | None
) -> PredicateOutcome:
    assert result is not None
    answers = result.get("answers") or []
    qtype = (result.get("question") or {}).get("type")
    # Count records of the asked type (a CNAME on the way is not an answer).
    count = len([a for a in answers if qtype in (None, "ANY") or a.get("type") == qtype])
    if count == value:
        return PredicateOutcome(
            True, f"{_question(result)} has {count} record(s): {_answers_text(result)}"
        )
    return PredicateOutcome(
        False,
        f"{_question(result)} has {count} record(s), expected {value}: {_answers_text(result)}",
    )


# -- any experiment --------------------------------------------------------


def _event_text(event: Mapping[str, Any]) -> str:
    data = event.get("data") or {}
    values = " ".join(str(v) for v in data.values() if isinstance(v, str | int | float))
    return f"{event.get('summary', '')} {values}".lower()


def _fields_match(event: Mapping[str, Any], fields: Mapping[str, Any]) -> bool:
    """Each key of ``fields`` has that value in the event's data (compared as
    text, case-insensitively: ``login`` matches ``LOGIN``, ``25`` matches 25)."""
    data = event.get("data") or {}
    return all(
        key in data and str(data[key]).lower() == str(wanted).lower()
        for key, wanted in fields.items()
    )


def _trace_contains(
    value: Any, result: Mapping[str, Any] | None, lab: LabState | None
) -> PredicateOutcome:
    assert result is not None
    fields: Mapping[str, Any]
    if isinstance(value, str):
        text, kind, fields = value, None, {}
    else:
        text, kind, fields = value.get("text", ""), value.get("kind"), value.get("fields") or {}
    events = [
        e
        for e in result.get("trace") or []
        if (kind is None or e.get("kind") == kind) and _fields_match(e, fields)
    ]
    for event in events:
        if str(text).lower() in _event_text(event):
            return PredicateOutcome(True, f"the trace shows: {event.get('summary')}")
    what = f"{kind} event" if kind else "event"
    if fields:
        what += " with " + ", ".join(f"{k}={v}" for k, v in fields.items())
    if not text:
        return PredicateOutcome(False, f"no {what} in the trace")
    return PredicateOutcome(False, f"no {what} in the trace mentions {text!r}")


def _trace_lacks(
    value: Any, result: Mapping[str, Any] | None, lab: LabState | None
) -> PredicateOutcome:
    found = _trace_contains(value, result, lab)
    text = value if isinstance(value, str) else value.get("text") or value.get("kind") or ""
    if found.passed:
        return PredicateOutcome(False, f"expected no mention of {text!r}, but {found.detail}")
    return PredicateOutcome(True, found.detail)


# -- what did not happen ----------------------------------------------------
#
# Negative predicates read the experiment's whole trace (every node's events
# under its trace id), so "nothing arrived" means nothing arrived anywhere in
# the lab while the experiment ran; with ``settle: true`` that includes what
# the message caused later (a forward, a backup MX's relaying, a bounce).


def _stored_copies(result: Mapping[str, Any], address: str) -> list[Mapping[str, Any]]:
    """Delivery events that stored a copy for ``address`` (not a forwarder's
    or a backup MX's hand-over: those store nothing)."""
    return [
        e
        for e in result.get("trace") or []
        if e.get("kind") == "delivery"
        and str((e.get("data") or {}).get("mailbox", "")).lower() == address.lower()
        and (e.get("data") or {}).get("folder") in ("inbox", "junk")
    ]


def _not_delivered_to(
    value: Any, result: Mapping[str, Any] | None, lab: LabState | None
) -> PredicateOutcome:
    assert result is not None
    arrived: list[str] = []
    for address in _wanted(value):
        for event in _stored_copies(result, address):
            folder = (event.get("data") or {}).get("folder")
            arrived.append(f"{address} ({folder} at {event.get('node')})")
    if arrived:
        return PredicateOutcome(False, "a copy was stored for " + ", ".join(arrived))
    return PredicateOutcome(
        True, f"no copy was stored for {_either(_wanted(value)).replace(' or ', ' nor ')}"
    )


def _bounces(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The non-delivery reports (DSNs, RFC 3464) queued during the experiment."""
    return [
        e
        for e in result.get("trace") or []
        if e.get("kind") == "queue"
        and (e.get("data") or {}).get("event") == "bounced"
        and (e.get("data") or {}).get("dsn")
    ]


def _bounce(value: Any, result: Mapping[str, Any] | None, lab: LabState | None) -> PredicateOutcome:
    assert result is not None
    found = _bounces(result)
    said = "; ".join(f"{e.get('node')}: {e.get('summary')}" for e in found)
    if bool(value):
        if found:
            return PredicateOutcome(True, f"a bounce was written ({said})")
        return PredicateOutcome(False, "no bounce (DSN) was written, expected one")
    if found:
        return PredicateOutcome(False, f"a bounce was written, expected none ({said})")
    return PredicateOutcome(True, "no bounce (DSN) was written")


def _not_run(
    value: Any, result: Mapping[str, Any] | None, lab: LabState | None
) -> PredicateOutcome:
    assert result is not None
    if isinstance(value, Mapping):
        names, node = _wanted(value["checks"]), value.get("node")
    else:
        names, node = _wanted(value), None
    where = f" at {node}" if node else ""
    ran = []
    for event in result.get("trace") or []:
        data = event.get("data") or {}
        if event.get("kind") != "check" or data.get("check") not in names:
            continue
        if node is not None and event.get("node") != node:
            continue
        ran.append(f"{data.get('check')}={data.get('result')} at {event.get('node')}")
    if ran:
        return PredicateOutcome(
            False,
            f"expected no {_either(names)} check{where}; ran: " + ", ".join(dict.fromkeys(ran)),
        )
    return PredicateOutcome(True, f"no {_either(names)} check ran{where}")


# -- read ------------------------------------------------------------------


def _messages(
    value: Any, result: Mapping[str, Any] | None, lab: LabState | None
) -> PredicateOutcome:
    assert result is not None
    folder = result.get("folder") or "INBOX"
    if result.get("error"):
        return PredicateOutcome(False, f"the client could not read {folder}: {result['error']}")
    messages = list(result.get("messages") or [])
    filters: list[str] = []
    if "subject_contains" in value:
        needle = str(value["subject_contains"]).lower()
        messages = [m for m in messages if needle in str(m.get("subject") or "").lower()]
        filters.append(f"with {value['subject_contains']!r} in the subject")
    if "flag" in value:
        flag = str(value["flag"]).lower()
        messages = [m for m in messages if flag in (str(f).lower() for f in m.get("flags") or ())]
        filters.append(f"flagged {value['flag']}")
    count = len(messages)
    noun = "message" if count == 1 else "messages"
    found = " ".join([f"the client saw {count} {noun}", *filters, f"in {folder}"])
    if "count" in value:
        ok, expected = count == value["count"], f"exactly {value['count']}"
    else:
        ok, expected = count >= value.get("min", 1), f"at least {value.get('min', 1)}"
    return PredicateOutcome(ok, found if ok else f"{found}, expected {expected}")


# -- lab state -------------------------------------------------------------


def _subject_of(message: Any) -> str:
    subject = getattr(message, "subject", None)
    return str(subject) if subject is not None else ""


def _headers_of(message: Any, name: str) -> list[str]:
    header = getattr(message, "header", None)
    if callable(header):
        return [str(v) for v in header(name)]
    return []


def _mailbox(
    value: Any, result: Mapping[str, Any] | None, lab: LabState | None
) -> PredicateOutcome:
    assert lab is not None
    address = value["address"]
    folder = value.get("folder", "INBOX")
    messages = list(lab.mailbox(address, folder))
    matching = messages
    filters: list[str] = []
    if "subject_contains" in value:
        needle = str(value["subject_contains"]).lower()
        matching = [m for m in matching if needle in _subject_of(m).lower()]
        filters.append(f"with {value['subject_contains']!r} in the subject")
    header = value.get("header")
    if header is not None:
        needle = str(header["contains"]).lower()
        matching = [
            m for m in matching if any(needle in h.lower() for h in _headers_of(m, header["name"]))
        ]
        filters.append(f"whose {header['name']} header contains {header['contains']!r}")
    count = len(matching)
    what = (
        "message" + ("" if count == 1 else "s") + (" " + " and ".join(filters) if filters else "")
    )
    found = f"{address} has {count} {what} in {folder}"
    if "count" in value:
        ok = count == value["count"]
        expected = f"exactly {value['count']}"
    else:
        least = value.get("min", 1)
        ok = count >= least
        expected = f"at least {least}"
    if ok:
        return PredicateOutcome(True, found)
    more = ""
    if header is not None and messages and not matching:
        seen = _headers_of(messages[-1], header["name"])
        more = (
            f"; the newest message's {header['name']}: {seen[0]!r}"
            if seen
            else f"; the newest message has no {header['name']} header"
        )
    return PredicateOutcome(False, f"{found}, expected {expected}{more}")


def _queue_size(raw: Mapping[str, Any]) -> int:
    for key in ("messages", "queue", "entries", "items"):
        entries = raw.get(key)
        if isinstance(entries, list):
            return len(entries)
    count = raw.get("count", raw.get("size"))
    return int(count) if isinstance(count, int) else 0


def _queue(value: Any, result: Mapping[str, Any] | None, lab: LabState | None) -> PredicateOutcome:
    assert lab is not None
    node = value["node"]
    size = _queue_size(lab.control(node, "relay", "queue"))
    found = f"{node}'s queue holds {size} message" + ("" if size == 1 else "s")
    if "count" in value:
        ok, expected = size == value["count"], f"exactly {value['count']}"
    else:
        ok, expected = size >= value.get("min", 1), f"at least {value.get('min', 1)}"
    return PredicateOutcome(ok, found if ok else f"{found}, expected {expected}")


# -- the registry ----------------------------------------------------------

_OUTCOME = Str(enum=OUTCOMES)
_TRACE_MATCH = Record(
    {
        "text": Field(
            Str(),
            description="the text to find (in the sentence or the data)",
        ),
        "kind": Field(
            Str(enum=TRACE_KINDS),
            description="only events of this kind (docs/trace.md)",
        ),
        "fields": Field(
            MapOf(Either((Str(), Int(), Bool()))),
            description="only events whose data has these values "
            "(keys of the kind in docs/trace.md; needs kind)",
        ),
    },
    name="TraceMatch",
    description="Text to find in the trace, optionally in one kind of event with given data "
    "values.",
)
_SEND = frozenset({"send"})
_SEND_CONNECT = frozenset({"send", "connect"})
_DIG = frozenset({"dig"})
_CONNECT = frozenset({"connect"})
_ANY = frozenset({"send", "connect", "dig", "read"})
_READ = frozenset({"read"})
_SEND_READ = frozenset({"send", "read"})


def _def(
    name: str, spec: Spec, subjects: frozenset[str] | None, description: str, fn: Evaluator
) -> PredicateDef:
    return PredicateDef(name, spec, subjects, description, fn)


PREDICATES: dict[str, PredicateDef] = {
    p.name: p
    for p in (
        _def(
            "outcome",
            Either((_OUTCOME, ListOf(_OUTCOME, min_items=1))),
            _SEND_CONNECT,
            "What became of a message or a connection; a list accepts any of them. "
            + "; ".join(f"`{name}`: {meaning}" for name, meaning in EXPERIMENT_OUTCOMES.items())
            + ".",
            _outcome,
        ),
        _def(
            "stage",
            Str(enum=STAGES),
            _SEND,
            "The SMTP stage where a rejected message was refused.",
            _stage,
        ),
        _def(
            "reply_code",
            Int(minimum=200, maximum=599),
            _SEND,
            "The SMTP reply code of the last reply (RFC 5321 §4.2).",
            _reply_code,
        ),
        _def(
            "enhanced",
            Str(pattern=ENHANCED, pattern_hint="like 5.7.1 (RFC 3463)"),
            _SEND,
            "The enhanced status code of the last reply (RFC 3463, RFC 7372).",
            _enhanced,
        ),
        _def(
            "reply_contains",
            Str(),
            _SEND_READ,
            "Text the last SMTP reply (or the mailbox server's reply) contains "
            "(case does not matter).",
            _reply_contains,
        ),
        _def(
            "checks",
            MapOf(
                Either((Str(), ListOf(Str(), min_items=1))),
                key=Str(enum=(*CHECK_NAMES, "score")),
                min_items=1,
            ),
            _SEND,
            "Results of the receiver's checks, such as `{spf: pass, dkim: [fail, permerror]}`; "
            "`score` is a scoring receiver's verdict (ham, junk, spam).",
            _checks,
        ),
        _def(
            "score",
            Either(
                (
                    Int(),
                    Record(
                        {
                            "at_least": Field(Int(), description="the total is at least this"),
                            "below": Field(Int(), description="the total is less than this"),
                            "verdict": Field(
                                Str(enum=SCORE_VERDICTS),
                                description="ham, junk (at the junk threshold) or spam (reject)",
                            ),
                        },
                        name="ScoreMatch",
                        description="Bounds on a scoring receiver's total, and its verdict.",
                    ),
                )
            ),
            _SEND,
            "A scoring receiver's total (sim.services.mxscore: each check result adds its "
            "weight): exactly this number, or `{at_least: 5, below: 10, verdict: junk}`.",
            _score,
        ),
        _def(
            "error",
            Str(enum=CONNECT_ERRORS),
            _CONNECT,
            "How a blocked connection failed: timeout (a drop), refused (a reset), unreachable.",
            _error,
        ),
        _def(
            "banner_contains",
            Str(),
            _CONNECT,
            "Text the server's greeting contains.",
            _banner_contains,
        ),
        _def("rcode", Str(enum=RCODES), _DIG, "The DNS response code.", _rcode),
        _def(
            "answer_contains",
            Str(),
            _DIG,
            "Text some answer record's data contains (case does not matter).",
            _answer_contains,
        ),
        _def(
            "answer_is",
            Str(),
            _DIG,
            "Some record of the asked type has exactly this data (names compared "
            "without case; the final dot optional): tests the exact record, where "
            "`answer_contains` would also accept `mail.example.2.0.192.in-addr.arpa.`.",
            _answer_is,
        ),
        _def(
            "answer_matches",
            Str(),
            _DIG,
            "Some record of the asked type has data matching this regular expression "
            "(all of it, case ignored), such as `\\d+ \\d+ 465 smtp\\.home\\.example\\.`: "
            "exact where it matters, free where the author does not mind.",
            _answer_matches,
        ),
        _def(
            "answer_count",
            Int(minimum=0),
            _DIG,
            "How many records of the asked type the answer holds.",
            _answer_count,
        ),
        _def(
            "trace_contains",
            Either((Str(), _TRACE_MATCH)),
            _ANY,
            "Some trace event (its sentence or its data) mentions this text.",
            _trace_contains,
        ),
        _def(
            "trace_lacks",
            Either((Str(), _TRACE_MATCH)),
            _ANY,
            "No trace event (of `kind`, if given) mentions this text: the negation of "
            "`trace_contains`, such as no `MX` question when a send goes to a chosen server.",
            _trace_lacks,
        ),
        _def(
            "not_delivered_to",
            Either((Str(), ListOf(Str(), min_items=1))),
            _SEND,
            "No copy was stored (inbox or junk) for this address, or any of these, anywhere "
            'in the lab during the experiment: "no message arrived". With `settle: true` '
            "this includes forwards and a backup MX's relaying.",
            _not_delivered_to,
        ),
        _def(
            "bounce",
            Bool(),
            _SEND,
            "`true`: a bounce (a DSN, RFC 3464) was written to the envelope sender during "
            "the experiment; `false`: none was (use `settle: true`, so that the relay "
            "has given its verdict).",
            _bounce,
        ),
        _def(
            "not_run",
            Either(
                (
                    Str(enum=CHECK_NAMES),
                    ListOf(Str(enum=CHECK_NAMES), min_items=1),
                    Record(
                        {
                            "checks": Field(
                                Either(
                                    (
                                        Str(enum=CHECK_NAMES),
                                        ListOf(Str(enum=CHECK_NAMES), min_items=1),
                                    )
                                ),
                                required=True,
                                description="the check(s) that must not have run",
                            ),
                            "node": Field(Str(), description="only on this node"),
                        },
                        name="NotRun",
                        description="Checks that must not have run, optionally on one node.",
                    ),
                )
            ),
            _SEND,
            "These receiving checks did not run (on any MX, or on `node`), such as `spf` "
            "at a primary MX that trusts its backup.",
            _not_run,
        ),
        _def(
            "messages",
            Record(
                {
                    "count": Field(Int(minimum=0), description="exactly this many messages"),
                    "min": Field(Int(minimum=0), default="1", description="at least this many"),
                    "subject_contains": Field(
                        Str(), description="only messages whose subject has this"
                    ),
                    "flag": Field(
                        Str(), description="only messages with this IMAP flag, such as `\\Seen`"
                    ),
                },
                name="MessagesMatch",
                description="How many messages a mail client read, optionally by subject.",
            ),
            _READ,
            "Messages a mail client read from its mailbox.",
            _messages,
        ),
        _def(
            "mailbox",
            Record(
                {
                    "address": Field(
                        Str(pattern=r"^[^@\s]+@[^@\s]+$", pattern_hint="user@domain"),
                        required=True,
                        description="whose mailbox",
                    ),
                    "folder": Field(Str(enum=FOLDERS), default="INBOX", description="which folder"),
                    "count": Field(
                        Int(minimum=0), description="exactly this many matching messages"
                    ),
                    "min": Field(
                        Int(minimum=0),
                        default="1",
                        description="at least this many matching messages",
                    ),
                    "subject_contains": Field(
                        Str(), description="only messages whose subject has this"
                    ),
                    "header": Field(
                        Record(
                            {
                                "name": Field(
                                    Str(), required=True, description="header field name"
                                ),
                                "contains": Field(
                                    Str(), required=True, description="text it must contain"
                                ),
                            },
                            name="HeaderMatch",
                            description="A header field and text its value must contain.",
                        ),
                        description="only messages with this header content",
                    ),
                },
                name="MailboxMatch",
                description="Which mailbox, which messages in it, and how many.",
            ),
            None,
            "Messages stored in a mailbox, optionally only those with a subject or a "
            "header content.",
            _mailbox,
        ),
        _def(
            "queue",
            Record(
                {
                    "node": Field(Str(), required=True, description="the node running the relay"),
                    "count": Field(Int(minimum=0), description="exactly this many queued messages"),
                    "min": Field(Int(minimum=0), default="1", description="at least this many"),
                },
                name="QueueMatch",
                description="Which relay's queue, and how many messages in it.",
            ),
            None,
            "Messages waiting in a relay's queue; `count: 0` means empty.",
            _queue,
        ),
    )
}


def evaluate(
    name: str, value: Any, result: Mapping[str, Any] | None, lab: LabState | None
) -> PredicateOutcome:
    """Evaluate one predicate; a lab that fails to answer is a failed check."""
    definition = PREDICATES[name]
    try:
        return definition.evaluate(value, result, lab)
    except SimError as err:
        return PredicateOutcome(False, f"{name}: the lab could not answer: {err}")
    except (LookupError, ValueError, TypeError, AttributeError, NotImplementedError) as err:
        # A result without the keys we read, or a service without that command.
        return PredicateOutcome(False, f"{name}: cannot evaluate ({type(err).__name__}: {err})")


def summarise(outcomes: Sequence[PredicateOutcome]) -> str:
    """One paragraph: the failures first (what to fix), else what was seen."""
    failed = [o.detail for o in outcomes if not o.passed]
    chosen = failed or [o.detail for o in outcomes]
    text = "; ".join(chosen)
    return text + ("." if text and not text.endswith(".") else "")


def pattern_ok(pattern: str) -> str | None:
    """None when ``pattern`` is a valid regular expression, else the reason."""
    try:
        re.compile(pattern)
    except re.error as err:
        return str(err)
    return None
