"""sim.events: the typed trace vocabulary.

Every declared class round-trips through ``--json`` and validates against
docs/trace.schema.json (which is not stale); its variants are told apart the
same way by the schema and by ``TraceEvent.from_json``; nothing in ``sim/``
records an event the old way (a kind and a plain dict), and when a branch
does, the failure names the file, the line, the kind and the keys to declare.
"""

from __future__ import annotations

import ast
import json
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal, Union

import jsonschema
import pytest

from sim import events
from sim.events import (
    EVENT_CLASSES,
    KINDS,
    Dns,
    EventData,
    MailboxDeleted,
    QueueAttempt,
    parse_data,
    undeclared,
)
from sim.trace import Trace, TraceEvent, event

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "docs" / "trace.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def _sample(hint: Any, name: str) -> Any:
    """A value of type ``hint`` (the first choice of a union or a literal)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None) or hint is None:
        return None
    if origin is Literal:
        return args[0]
    if origin in (Union, types.UnionType):
        return _sample(next(a for a in args if a is not type(None)), name)
    if origin is list:
        return [_sample(args[0], name)]
    if origin is dict:
        return {"k": 1}
    if typing.is_typeddict(hint):
        return {k: _sample(h, k) for k, h in typing.get_type_hints(hint).items()}
    return {str: f"{name}-x", int: 7, float: 1.5, bool: True}[hint]


def _instance(cls: type[EventData]) -> EventData:
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: _sample(hints[f.name], f.name) for f in fields(cls)})  # type: ignore[arg-type]


def test_schema_and_reference_are_not_stale(tmp_path: Path) -> None:
    for name in ("trace.schema.json", "trace.md"):
        (tmp_path / name).write_text((ROOT / "docs" / name).read_text(encoding="utf-8"))
    assert events.main(["--check", "--docs", str(tmp_path)]) == 0, (
        "docs/trace.schema.json or docs/trace.md is stale: run python -m sim.events"
    )


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert set(SCHEMA["properties"]["kind"]["enum"]) == set(KINDS)


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.__name__)
def test_every_class_round_trips_and_validates(cls: type[EventData]) -> None:
    data = _instance(cls)
    original = event(12.5, "mx", "something happened", data)
    wire = json.loads(json.dumps(original.to_json()))
    assert wire["kind"] == cls.KIND
    errors = [e.message for e in VALIDATOR.iter_errors(wire)]
    assert not errors, errors
    back = TraceEvent.from_json(wire)
    # the same variant, told apart from the others of its kind
    assert type(back.data) is cls
    assert back == original


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.__name__)
def test_every_field_says_what_it_means(cls: type[EventData]) -> None:
    # what it reflects, by RFC (the markers of the front ends and a service's own
    # failure reflect none)
    assert cls.KIND in ("error", "lab") or "RFC" in (cls.__doc__ or ""), cls.__name__
    for f in fields(cls):  # type: ignore[arg-type]
        assert f.metadata.get("doc"), f"{cls.__name__}.{f.name} has no meaning written"


def test_data_reads_typed_and_as_the_old_mapping() -> None:
    data = Dns(
        client="1.2.3.4",
        server="5.6.7.8",
        name="qq.example.",
        type="MX",
        rcode="NOERROR",
        answers=[],
    )
    e = event(1.0, "isp", "asked", data)
    assert e.kind == "dns"
    got = e.as_(Dns)
    assert got is not None and got.rcode == "NOERROR"
    assert e.as_(QueueAttempt) is None
    # the old way still reads it: a branch not yet moved over keeps working
    assert e.data["rcode"] == "NOERROR" and e.data.get("cached") is None
    assert "cached" not in e.data  # an optional key that does not apply is absent
    assert "cached" not in e.to_json()["data"]
    with pytest.raises(KeyError):
        e.data["cached"]
    # a key that is null but always there stays there
    deleted = MailboxDeleted(protocol="imap", user="bob", path="new/1")
    assert deleted.to_json()["to"] is None and "to" in deleted


def test_trace_of_a_class() -> None:
    trace = Trace()
    trace.add(event(2.0, "a", "x", MailboxDeleted(protocol="pop3", user="bob", path="cur/1")))
    trace.add(TraceEvent(1.0, "dns", "a", "y", {"odd": 1}))
    assert [(e.t, d.user) for e, d in trace.of(MailboxDeleted)] == [(2.0, "bob")]


def test_an_unknown_key_is_named_with_its_kind() -> None:
    raw = {"event": "attempt", "queue_id": "Q1", "rcpt": "a", "rcpts": ["a"], "mx": "m",
           "address": "1.2.3.4", "port": 25, "attempt": 1, "colour": "red"}  # fmt: skip
    assert parse_data("queue", raw) is None
    why = undeclared("queue", raw)
    assert why is not None and "'queue'" in why and "'colour'" in why and "sim/events.py" in why
    why = undeclared("score", {"total": 3})
    assert why is not None and "'score'" in why and "not declared" in why
    # a trace with such an event still loads: its data stays a plain dict
    e = TraceEvent.from_json({"t": 1, "kind": "queue", "node": "r", "summary": "s", "data": raw})
    assert e.data == raw and not isinstance(e.data, EventData)
    wire = e.to_json()
    assert VALIDATOR.is_valid(json.loads(json.dumps(wire))) is False


# -- nothing records the old way ------------------------------------------------------


def _literal(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _old_way_calls(path: Path) -> list[tuple[int, str, list[str]]]:
    """``x.emit(trace_id, "kind", summary, key=...)`` and ``TraceEvent(t,
    "kind", node, summary, {...})``: the kind and the keys a call records."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        receiver = func.value if isinstance(func, ast.Attribute) else None
        on_ctx = (isinstance(receiver, ast.Name) and receiver.id == "ctx") or (
            isinstance(receiver, ast.Attribute) and receiver.attr == "ctx"
        )
        if name == "emit" and len(node.args) >= 2 and (on_ctx or len(node.args) >= 3):
            kind = _literal(node.args[1])
            if kind is None and not on_ctx:
                continue  # another emit (a pcap packet, a hub's event)
            keys = [k.arg or "**" for k in node.keywords]
            found.append((node.lineno, kind or "(from a variable)", keys))
        elif name == "TraceEvent":
            kind_node = node.args[1] if len(node.args) > 1 else None
            for k in node.keywords:
                if k.arg == "kind":
                    kind_node = k.value
            kind = _literal(kind_node) if kind_node is not None else None
            if kind is None:
                continue  # data.KIND: the typed way, or a trace read back
            data = node.args[4] if len(node.args) > 4 else None
            for k in node.keywords:
                if k.arg == "data":
                    data = k.value
            keys = (
                [_literal(k) or "**" if k is not None else "**" for k in data.keys]
                if isinstance(data, ast.Dict)
                else ["(data)"]
            )
            found.append((node.lineno, kind, keys))
    return found


def _problems(root: Path) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "base.py" and path.parent.name == "services":
            continue  # NodeContext.emit itself, kept for the branches still moving over
        for line, kind, keys in _old_way_calls(path):
            declared = {key for cls in KINDS.get(kind, []) for key in cls.KEYS}
            unknown = [k for k in keys if k not in declared]
            where = f"{path.relative_to(root.parent)}:{line}"
            if kind == "(from a variable)":
                out.append(
                    f"{where}: ctx.emit with its kind from a variable records a plain dict: "
                    "construct a class of sim/events.py for each kind and use ctx.record"
                )
            elif kind not in KINDS:
                out.append(
                    f"{where}: kind {kind!r} (keys {', '.join(keys) or 'none'}) is not declared "
                    "in sim/events.py: declare a class for it and record it with ctx.record"
                )
            elif unknown:
                out.append(
                    f"{where}: kind {kind!r} records key(s) {', '.join(unknown)} not declared in "
                    f"sim/events.py (declared: {', '.join(sorted(declared))})"
                )
            else:
                out.append(
                    f"{where}: kind {kind!r} is recorded as a plain dict: construct its class "
                    "from sim/events.py and use ctx.record"
                )
    return out


def test_nothing_in_sim_records_an_event_the_old_way() -> None:
    problems = _problems(ROOT / "sim")
    assert not problems, "\n".join(problems)


def test_an_old_way_call_is_named_with_file_line_kind_and_key(tmp_path: Path) -> None:
    pkg = tmp_path / "sim"
    pkg.mkdir()
    (pkg / "lists.py").write_text(
        "def f(ctx):\n"
        "    ctx.emit(None, 'list', 'expanded', members=3)\n"
        "    ctx.emit(None, 'queue', 'x', event='attempt', colour='red')\n"
        "    ctx.emit(None, 'dns', 'y', client='a')\n"
        "    self.ctx.emit(e.trace_id, e.kind, e.summary, **e.data)\n"
        "    self.emit(1.0, packet, 'a comment')\n"
    )
    problems = _problems(pkg)
    assert problems[0].startswith("sim/lists.py:2: kind 'list' (keys members) is not declared")
    assert problems[1].startswith("sim/lists.py:3: kind 'queue' records key(s) colour")
    assert "plain dict" in problems[2]
    assert problems[3].startswith("sim/lists.py:5: ctx.emit with its kind from a variable")
    assert len(problems) == 4, "a pcap packet's emit is not an event"
