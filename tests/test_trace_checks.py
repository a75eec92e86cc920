"""Every kind a service records is usable in lab checks: ``trace_contains``
accepts each kind of sim/events.py, and matches data values with
``fields``, whose keys the lab loader checks against the declared keys.

The kinds of the message store (imap, pop3, mailbox) are checked on a real
run of lab 10's topology (local backend): mail sent to bob, then read as bob's
mail program does, over IMAP and over POP3.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sim
from sim.errors import LabFileError
from sim.events import FRONT_END_KINDS, KINDS
from sim.hosting.runtime import Lab
from sim.lab.checks import PREDICATES, TRACE_KINDS
from sim.lab.loader import load_lab

ROOT = Path(__file__).resolve().parents[1]


def trace_contains(value: Any, result: dict[str, Any]) -> tuple[bool, str]:
    outcome = PREDICATES["trace_contains"].evaluate(value, result, None)
    return outcome.passed, outcome.detail


def test_every_service_kind_is_a_lab_check_kind() -> None:
    assert set(TRACE_KINDS) == set(KINDS) - set(FRONT_END_KINDS)
    for kind in ("imap", "pop3", "mailbox", "error", "queue", "delivery"):
        assert kind in TRACE_KINDS


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with sim.start(sim.load_topology(ROOT / "topologies" / "mta-mda.yaml")) as running:
        sent = running.send(
            "laptop",
            "bob@qq.example",
            mail_from="alice@home.example",
            via="smtp-isp",
            user="alice@home.example",
            password="secret",
            subject="Dinner on Saturday",
        )
        assert sent.outcome == "delivered", sent.to_json()
        yield running


@pytest.fixture(scope="module")
def imap_read(lab: Lab) -> dict[str, Any]:
    return lab.read("bob-pc", "bob", "bob-secret", via="mx-qq", protocol="imap").to_json()


@pytest.fixture(scope="module")
def pop3_read(lab: Lab, imap_read: dict[str, Any]) -> dict[str, Any]:
    return lab.read("bob-pc", "bob", "bob-secret", via="mx-qq", protocol="pop3").to_json()


def test_an_imap_login_is_a_check_on_the_imap_and_mailbox_kinds(imap_read: dict[str, Any]) -> None:
    assert trace_contains({"kind": "imap", "text": "LOGIN"}, imap_read)[0]
    assert trace_contains(
        {"kind": "imap", "fields": {"status": "ok"}, "text": "SELECT"}, imap_read
    )[0]
    passed, detail = trace_contains(
        {"kind": "mailbox", "fields": {"event": "login", "protocol": "imap", "user": "bob"}},
        imap_read,
    )
    assert passed, detail
    assert "bob logged in over IMAP" in detail
    # SELECT moved the message from new/ to cur/ (the MDA's record)
    assert trace_contains(
        {"kind": "mailbox", "fields": {"event": "moved"}, "text": "cur/"}, imap_read
    )[0]


def test_a_check_fails_with_what_it_looked_for(imap_read: dict[str, Any]) -> None:
    passed, detail = trace_contains(
        {"kind": "mailbox", "fields": {"event": "login_failed"}}, imap_read
    )
    assert not passed
    assert detail == "no mailbox event with event=login_failed in the trace"
    passed, detail = trace_contains({"kind": "pop3", "text": "RETR"}, imap_read)
    assert (passed, detail) == (False, "no pop3 event in the trace mentions 'RETR'")


def test_a_pop3_read_is_a_check_on_the_pop3_kind(pop3_read: dict[str, Any]) -> None:
    assert trace_contains({"kind": "pop3", "text": "RETR"}, pop3_read)[0]
    assert trace_contains(
        {"kind": "pop3", "fields": {"status": "+OK", "command": "UIDL"}}, pop3_read
    )[0]
    passed, detail = trace_contains(
        {"kind": "mailbox", "fields": {"event": "login", "protocol": "pop3", "messages": 1}},
        pop3_read,
    )
    assert passed, detail


def test_the_error_kind_is_a_check_too() -> None:
    result = {
        "trace": [
            {
                "t": 1.0,
                "kind": "error",
                "node": "dns",
                "summary": "DNS over TCP failed: OSError()",
                "data": {"service": "dns", "error": "OSError()"},
            }
        ]
    }
    assert trace_contains({"kind": "error", "fields": {"service": "dns"}}, result)[0]
    assert not trace_contains({"kind": "error", "fields": {"service": "mx"}}, result)[0]


LAB = """\
id: fields-test
title: Fields
topology: mta-mda
estimated_time: 5m
goals: [Check]
steps:
  - id: read
    kind: experiment
    title: Read
    text: Read.
    run:
      read: {from: bob-pc, via: mx-qq, user: bob, password: bob-secret}
    expect:
      - trace_contains: %s
"""


def _load(tmp_path: Path, match: str) -> None:
    labs = tmp_path / "labs"
    labs.mkdir(exist_ok=True)
    (tmp_path / "topologies").mkdir(exist_ok=True)
    (tmp_path / "topologies" / "mta-mda.yaml").write_text(
        (ROOT / "topologies" / "mta-mda.yaml").read_text(encoding="utf-8")
    )
    path = labs / "fields.yaml"
    path.write_text(LAB % match)
    load_lab(path, curriculum=False)


def test_the_loader_accepts_declared_fields(tmp_path: Path) -> None:
    _load(tmp_path, "{kind: mailbox, fields: {event: login, user: bob}}")
    _load(tmp_path, "{kind: error, text: failed}")


def test_the_loader_names_an_undeclared_field_and_the_kind_keys(tmp_path: Path) -> None:
    with pytest.raises(LabFileError) as err:
        _load(tmp_path, "{kind: mailbox, fields: {evnet: login}}")
    text = str(err.value)
    assert "fields.yaml:14:" in text
    assert "a mailbox event has no key 'evnet' (did you mean 'event'?)" in text
    assert "its keys: cipher, event, messages, path, protocol, reason, to, user, version" in text


def test_fields_need_a_kind(tmp_path: Path) -> None:
    with pytest.raises(LabFileError, match="`fields` needs a `kind`"):
        _load(tmp_path, "{fields: {user: bob}}")


def test_an_undeclared_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LabFileError, match="outcome"):
        _load(tmp_path, "{kind: outcome, text: delivered}")
