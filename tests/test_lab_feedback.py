"""Feedback drawn from the run (issue 12 §3).

For every task of every lab: the check run before the solution (nothing done,
the first wrong solution), every listed mistake and the reference solution;
each time, every fact the hint or explanation quotes must be in that run's
trace, so a text never claims an event that did not happen.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from labsets import LABS, lab_params, runs_on

from sim.errors import LabFileError
from sim.lab import engine
from sim.lab.engine import CheckOutcome, LabSession
from sim.lab.facts import PLACEHOLDER, render, run_facts
from sim.lab.loader import load_lab, validate_lab_file
from sim.lab.model import LabDef, TaskStep
from sim.lab.progress import MemoryProgressStore
from sim.lab.zonenames import relative_name_warnings

#: A shipped lab file by its name (the list grows: never by position).
LAB = {p.stem: p for p in LABS}
NOT_SEEN = "(not seen in this run)"


def _dump(event: Mapping[str, Any]) -> str:
    return json.dumps(event, ensure_ascii=False, default=str)


def assert_quotes_the_run(outcome: CheckOutcome, where: str) -> None:
    """Every quoted fact comes from events of this run's trace, and a literal
    fact's text is written in one of them."""
    trace = [_dump(e) for e in outcome.trace]
    for name, fact in outcome.quoted.items():
        assert fact.evidence, f"{where}: {{{name}}} has no evidence"
        for event in fact.evidence:
            assert _dump(event) in trace, f"{where}: {{{name}}}'s event is not in the run's trace"
        if name == "attempts":
            queue_ids = {e["data"]["queue_id"] for e in fact.evidence}
            assert len(queue_ids) == 1
            attempts = [
                e
                for e in outcome.trace
                if e.get("kind") == "queue"
                and e["data"].get("event") == "attempt"
                and e["data"].get("queue_id") in queue_ids
            ]
            assert int(fact.value) == len(attempts), where
        elif not fact.derived:
            assert any(fact.value in _dump(e) for e in fact.evidence), (
                f"{where}: {{{name}}}={fact.value!r} is not written in its events"
            )


def _walk_to(session: LabSession, lab: LabDef, step_id: str) -> None:
    for step in lab.steps:
        if step.id == step_id:
            return
        engine._reference_step(session, step)


def _session(lab: LabDef) -> LabSession:
    session = LabSession(lab, "local", store=MemoryProgressStore())
    session.start(resume=False)
    return session


@pytest.mark.parametrize("path", lab_params("local"))
def test_every_task_quotes_only_its_run(path: Path) -> None:
    lab = load_lab(path)
    tasks = [s for s in lab.steps if isinstance(s, TaskStep)]
    assert tasks
    session = _session(lab)
    try:
        for step in lab.steps:
            if not isinstance(step, TaskStep):
                engine._reference_step(session, step)
                continue
            where = f"{lab.id}/{step.id}"
            before = session.check(step)
            assert not before.passed, f"{where}: passes with nothing done"
            assert_quotes_the_run(before, f"{where} (nothing done)")
            for result in session.solve(step):
                assert result.ok, f"{where}: {result.message}"
            after = session.check(step)
            assert after.passed, f"{where}: {after.detail}"
            assert_quotes_the_run(after, f"{where} (reference)")
            # The success text quotes facts the reference run really has.
            assert NOT_SEEN not in after.explanation, f"{where}: {after.explanation}"
            quoted = {m.group(1) for m in PLACEHOLDER.finditer(step.explanation)}
            assert quoted == set(after.quoted), f"{where}: {quoted - set(after.quoted)} missing"
    finally:
        session.stop()


# On the local backend: a mininet-only lab's mistakes are checked by its
# reference run on mininet (tests/test_trace_vocabulary_labs.py).
MISTAKES = [
    (path, step.id, i)
    for path in LABS
    if runs_on(path, "local")
    for step in load_lab(path).steps
    if isinstance(step, TaskStep)
    for i in range(len(step.mistakes))
]


@pytest.mark.parametrize(
    ("path", "step_id", "index"), MISTAKES, ids=[f"{p.stem}-{s}-{i}" for p, s, i in MISTAKES]
)
def test_a_listed_mistake_fails_and_its_hint_quotes_its_run(
    path: Path, step_id: str, index: int
) -> None:
    lab = load_lab(path)
    step = lab.step(step_id)
    assert isinstance(step, TaskStep)
    session = _session(lab)
    try:
        _walk_to(session, lab, step_id)
        for action in step.mistakes[index]:
            assert session.apply(step, action).ok
        outcome = session.check(step)
        assert not outcome.passed, f"{lab.id}/{step_id}: mistake {index} passes the check"
        assert outcome.hint
        assert_quotes_the_run(outcome, f"{lab.id}/{step_id} mistake {index}")
    finally:
        session.stop()


def test_there_are_mistakes_to_run() -> None:
    # Lab 4's PTR without its final dot and lab 9's early flush (issue 12 §3).
    found = {(p.stem, s) for p, s, _ in MISTAKES}
    assert ("04-ip-reputation", "set-the-ptr") in found
    assert ("09-reliability", "wait-for-retry") in found


def test_ptr_without_final_dot_fails_and_says_what_the_name_became() -> None:
    lab = load_lab(LAB["04-ip-reputation"])
    session = _session(lab)
    try:
        _walk_to(session, lab, "set-the-ptr")
        result = session.apply(
            "set-the-ptr",
            {
                "dns_add": {
                    "node": "ns-hosting",
                    "zone": "2.0.192.in-addr.arpa",
                    "record": "10 PTR mail.startup.example",
                }
            },
        )
        assert result.ok
        assert result.data["warnings"]
        assert "mail.startup.example.2.0.192.in-addr.arpa." in result.message
        outcome = session.check("set-the-ptr")
        assert not outcome.passed
        assert outcome.quoted["ptr.name"].value == "mail.startup.example.2.0.192.in-addr.arpa"
        assert "mail.startup.example.2.0.192.in-addr.arpa" in (outcome.hint or "")
        assert "expected exactly mail.startup.example." in outcome.detail
    finally:
        session.stop()


def test_an_early_flush_then_ten_minutes_leaves_the_message_queued_and_says_when() -> None:
    lab = load_lab(LAB["09-reliability"])
    session = _session(lab)
    try:
        _walk_to(session, lab, "wait-for-retry")
        assert session.apply("wait-for-retry", {"relay_flush": {"node": "smtp-isp"}}).ok
        settled = session.apply("wait-for-retry", {"settle": "10m"})
        assert settled.data["advanced"] == 600
        outcome = session.check("wait-for-retry")
        assert not outcome.passed
        assert outcome.quoted["attempts"].value == "2"
        # Attempt 2 was the flush: the schedule counts 30 minutes from it.
        assert outcome.quoted["next_attempt.in"].value == "30m"
        assert "5 minutes after the first attempt" not in (outcome.hint or "")
        assert session.solve("wait-for-retry")[0].ok
        done = session.check("wait-for-retry")
        assert done.passed
        assert done.quoted["attempts"].value == "3"
        assert "five lab minutes later" not in done.explanation
    finally:
        session.stop()


# -- templates: rendering and validation ----------------------------------------


def test_render_fills_facts_and_leaves_yaml_braces_alone() -> None:
    result = {
        "reply": {"code": 450},
        "trace": [{"t": 1, "kind": "smtp", "summary": "RCPT  ← 450", "data": {"code": 450}}],
    }
    facts = run_facts("send", result)
    text = render("code {reply.code}; `dns_add: {node: ns, zone: x}`; {ptr.name|no PTR}", facts)
    assert text.text == "code 450; `dns_add: {node: ns, zone: x}`; no PTR"
    assert set(text.quoted) == {"reply.code"}
    assert render("{ptr.name}", None).text == NOT_SEEN


BAD_LAB = """\
id: bad-facts
title: Bad facts
topology: {topology}
estimated_time: 5m
goals: [a goal]
steps:
  - id: intro
    kind: explain
    title: Intro
    text: hello
  - id: t
    kind: task
    title: A task
    text: Do it.
    checks:
      - run:
          dig: {{from: mta, name: mx.qq.example, type: A}}
        expect:
          - rcode: NOERROR
    hints:
      - "The answer was {{answer}}, the code {{reply.code}}."
    solution:
      - advance: 1m
    explanation: |
      Fine.
      The address is {{answr}}.
"""


def test_a_template_naming_an_unknown_fact_is_an_error_at_its_place(tmp_path: Path) -> None:
    topology = LABS[0].parent.parent / "topologies" / "receive-only.yaml"
    lab_file = tmp_path / "bad.yaml"
    lab_file.write_text(BAD_LAB.format(topology=topology), encoding="utf-8")
    problems = validate_lab_file(lab_file, curriculum=False)
    found = {(p.line, p.col): p.message for p in problems}
    text = lab_file.read_text().splitlines()

    def where(template: str) -> tuple[int, int]:
        line = next(i for i, t in enumerate(text) if template in t)
        return line + 1, text[line].index(template) + 1

    # {reply.code} is a send fact; this task only digs.
    assert "send" in found[where("{reply.code}")]
    assert "did you mean 'answer'" in found[where("{answr}")]
    assert len(found) == 2, found
    with pytest.raises(LabFileError):
        load_lab(lab_file, curriculum=False)


# -- the zone editor's final-dot warning -------------------------------------------


@pytest.mark.parametrize(
    ("zone", "record", "becomes"),
    [
        (
            "2.0.192.in-addr.arpa",
            "10 PTR mail.startup.example",
            "mail.startup.example.2.0.192.in-addr.arpa.",
        ),
        ("shop.example", "@ 300 IN MX 10 mx.other.example ; c", "mx.other.example.shop.example."),
        (
            "shop.example",
            "s1._domainkey CNAME s1.dkim.mailer.example",
            "s1.dkim.mailer.example.shop.example.",
        ),
    ],
)
def test_a_dotted_name_without_final_dot_is_warned_about(
    zone: str, record: str, becomes: str
) -> None:
    (warning,) = relative_name_warnings(zone, record)
    assert becomes in warning


def test_an_owner_that_repeats_the_zone_without_final_dot_is_warned_about() -> None:
    (warning,) = relative_name_warnings("startup.example", "mail.startup.example A 192.0.2.10")
    assert "mail.startup.example.startup.example." in warning


@pytest.mark.parametrize(
    "record",
    [
        "10 PTR mail.startup.example.",
        "@ MX 10 mx",
        '@ TXT "v=spf1 a.b -all"',
        "@ MX 0 .",
        "mail.startup.example. A 192.0.2.10",
        '_dmarc.sub TXT "v=DMARC1; p=none"',
    ],
)
def test_absolute_and_single_label_names_get_no_warning(record: str) -> None:
    assert relative_name_warnings("shop.example", record) == []


def test_every_fact_is_documented_for_authors() -> None:
    from sim.lab.facts import FACTS

    guide = (LABS[0].parent.parent / "docs" / "authoring.md").read_text(encoding="utf-8")
    for name in FACTS:
        assert f"`{{{name}}}`" in guide, f"{{{name}}} is missing from docs/authoring.md"


# -- checks that test the exact record ------------------------------------------------

PTR_RESULT = {
    "question": {"name": "10.2.0.192.in-addr.arpa.", "type": "PTR"},
    "rcode": "NOERROR",
    "answers": [{"type": "PTR", "data": "mail.startup.example.2.0.192.in-addr.arpa."}],
}


def test_answer_is_tells_the_exact_name_from_one_that_merely_contains_it() -> None:
    from sim.lab.checks import evaluate

    assert evaluate("answer_contains", "mail.startup.example", PTR_RESULT, None).passed
    exact = evaluate("answer_is", "mail.startup.example.", PTR_RESULT, None)
    assert not exact.passed
    assert "mail.startup.example.2.0.192.in-addr.arpa." in exact.detail
    right = {**PTR_RESULT, "answers": [{"type": "PTR", "data": "mail.startup.example."}]}
    assert evaluate("answer_is", "MAIL.startup.example", right, None).passed


def test_answer_matches_holds_the_whole_data_to_a_pattern() -> None:
    from sim.lab.checks import evaluate

    srv = {
        "question": {"name": "_submissions._tcp.home.example.", "type": "SRV"},
        "answers": [{"type": "SRV", "data": "0 1 465 smtp.home.example.home.example."}],
    }
    pattern = r"\d+ \d+ 465 smtp\.home\.example\."
    assert not evaluate("answer_matches", pattern, srv, None).passed
    srv["answers"] = [{"type": "SRV", "data": "5 0 465 smtp.home.example."}]
    assert evaluate("answer_matches", pattern, srv, None).passed


def test_a_bad_answer_pattern_is_a_lab_file_error(tmp_path: Path) -> None:
    topology = LABS[0].parent.parent / "topologies" / "receive-only.yaml"
    text = BAD_LAB.format(topology=topology).replace(
        "          - rcode: NOERROR", "          - answer_matches: '(unclosed'"
    )
    lab_file = tmp_path / "bad.yaml"
    lab_file.write_text(text, encoding="utf-8")
    problems = validate_lab_file(lab_file, curriculum=False)
    assert any("not a valid regular expression" in p.message for p in problems), problems


def test_a_state_check_waits_for_an_attempt_to_report_its_outcome() -> None:
    from sim.events import QueueAttempt, QueueDelivered, QueueQueued
    from sim.lab.engine import _attempts_in_flight
    from sim.trace import event as make

    data = {
        "queued": QueueQueued(
            queue_id="Q1", mail_from="a@x", rcpts=["b@y"], size=9, dkim=[], entry_kind="mail"
        ),
        "attempt": QueueAttempt(
            queue_id="Q1",
            rcpt="b@y",
            rcpts=["b@y"],
            mx="mx.y",
            address="1.2.3.4",
            port=25,
            attempt=1,
        ),
        "delivered": QueueDelivered(
            queue_id="Q1", rcpt="b@y", reply=None, mx="mx.y", address="1.2.3.4"
        ),
    }

    def queue(event: str) -> dict[str, Any]:
        return make(1.0, "relay", event, data[event]).to_json()

    # The relay empties its queue a moment before it reports the delivery.
    assert _attempts_in_flight([queue("queued"), queue("attempt")])
    assert not _attempts_in_flight([queue("queued"), queue("attempt"), queue("delivered")])
    assert not _attempts_in_flight([])
