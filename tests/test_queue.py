"""The durable spool: atomic files, what a load recovers and cleans up, and
the relay's rule that a delivered message leaves the spool first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mailrig import (
    ALICE,
    BOB,
    flush_until,
    message,
    queue,
    relay_of,
    start_sink,
    topology,
    wait_until,
)

import sim
from sim.services.queue import QueueEntry, Recipient, Spool
from sim.services.smtpclient import Reply
from sim.trace import TraceEvent


def entry(spool: Spool, **kwargs: Any) -> QueueEntry:
    values: dict[str, Any] = {
        "id": spool.new_id(),
        "mail_from": ALICE,
        "rcpts": [Recipient(BOB)],
        "created": 100.0,
        "next_attempt": 400.0,
        "arrival": "Sat, 28 Nov 2026 08:00:00 +0000",
        "trace_id": "t-1",
    }
    values.update(kwargs)
    return QueueEntry(**values)


def test_add_then_load_round_trips(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "queue")
    reply = Reply(451, "4.7.1", "Greylisted")
    original = entry(
        spool,
        rcpts=[
            Recipient(BOB, state="deferred", reply=reply, remote_mta="mx1.qq.example"),
            Recipient("carol@qq.example", state="delivered", reply=Reply(250, "2.0.0", "Ok")),
        ],
        attempts=2,
        warned=True,
    )
    spool.add(original, b"Subject: x\r\n\r\nbody\r\n", now=150.0)
    names = sorted(p.name for p in (tmp_path / "queue").iterdir())
    assert names == [f"{original.id}.eml", f"{original.id}.json"]
    (loaded,), problems = Spool(tmp_path / "queue").load(now=150.0)
    assert problems == []
    assert loaded.to_json() == original.to_json()
    assert loaded.rcpts[0].reply == reply
    assert [r.address for r in loaded.open_rcpts()] == [BOB]
    assert spool.data(original.id) == b"Subject: x\r\n\r\nbody\r\n"


def test_load_keeps_the_age_of_a_message_across_a_new_lab_clock(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.add(entry(spool, created=400.0, next_attempt=1300.0), b"x", now=1000.0)
    # The new lab's clock starts near zero: the message stays 600 s old and
    # its next attempt stays 300 s away.
    (loaded,), _ = spool.load(now=5.0)
    assert loaded.created == pytest.approx(-595.0)
    assert loaded.next_attempt == pytest.approx(305.0)


def test_load_cleans_up_what_a_crash_left(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    kept = entry(spool)
    spool.add(kept, b"kept", now=100.0)
    # An enqueue that died between its two files: never acknowledged.
    (tmp_path / "ABCDEF0123.eml").write_bytes(b"half")
    # A write that died before its rename.
    (tmp_path / f".tmp-{kept.id}.json-1234").write_text("{")
    # An envelope that does not parse: set aside with its message, not deleted.
    (tmp_path / "BADBADBAD0.json").write_text("{not json")
    (tmp_path / "BADBADBAD0.eml").write_bytes(b"acknowledged")
    loaded, problems = spool.load(now=100.0)
    assert [e.id for e in loaded] == [kept.id]
    assert not (tmp_path / "ABCDEF0123.eml").exists()
    assert not list(tmp_path.glob(".tmp-*"))
    assert (tmp_path / "corrupt" / "BADBADBAD0.json").exists()
    assert (tmp_path / "corrupt" / "BADBADBAD0.eml").read_bytes() == b"acknowledged"
    assert len(problems) == 2
    assert any("never completed" in p for p in problems)
    assert any("BADBADBAD0.json set aside" in p for p in problems)


def test_an_envelope_without_its_message_is_set_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    lost = entry(spool)
    spool.add(lost, b"x", now=0.0)
    (tmp_path / f"{lost.id}.eml").unlink()
    loaded, problems = spool.load(now=0.0)
    assert loaded == []
    assert "message file is missing" in problems[0]


def test_remove_and_save(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    item = entry(spool)
    spool.add(item, b"x", now=0.0)
    item.rcpts[0].state = "delivered"
    spool.save(item, now=7.0)
    saved = json.loads((tmp_path / f"{item.id}.json").read_text())
    assert saved["rcpts"][0]["state"] == "delivered"
    assert saved["saved_at"] == 7.0
    spool.remove(item.id)
    spool.remove(item.id)  # twice is harmless
    assert list(tmp_path.iterdir()) == []


def test_new_ids_are_unique_and_postfix_like(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    ids = {spool.new_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 10 and i == i.upper() for i in ids)


# --- the relay and its spool -------------------------------------------------------


def test_delivered_message_leaves_the_spool_before_the_delivered_event(tmp_path: Path) -> None:
    with sim.start(topology(), state_dir=tmp_path / "state") as lab:
        start_sink(lab, "mx1")
        spool_dir = lab.state_dir / "smtp" / "queue"
        on_disk_at_event: list[bool] = []

        def listener(trace_id: str | None, event: TraceEvent) -> None:
            if event.kind == "queue" and event.data.get("event") == "delivered":
                queue_id = event.data["queue_id"]
                on_disk_at_event.append((spool_dir / f"{queue_id}.json").exists())

        lab.backend.hub.subscribe(listener)  # type: ignore[attr-defined]
        queue_id = lab.backend.call(  # type: ignore[attr-defined]
            relay_of(lab).enqueue(ALICE, [BOB], message())
        )
        wait_until(lambda: len(on_disk_at_event) == 1)
        assert on_disk_at_event == [False]
        assert not (spool_dir / f"{queue_id}.eml").exists()


def test_a_delivered_recipient_is_recorded_while_another_waits(tmp_path: Path) -> None:
    with sim.start(topology(), state_dir=tmp_path / "state") as lab:
        start_sink(
            lab,
            "mx1",
            behaviour=lambda rcpt, n: (
                "450 4.2.1 mailbox busy" if rcpt.startswith("carol") else None
            ),
        )
        queue_id = lab.backend.call(  # type: ignore[attr-defined]
            relay_of(lab).enqueue(ALICE, [BOB, "carol@qq.example"], message())
        )
        path = lab.state_dir / "smtp" / "queue" / f"{queue_id}.json"

        def states() -> dict[str, str]:
            return {r["address"]: r["state"] for r in json.loads(path.read_text())["rcpts"]}

        wait_until(lambda: path.exists() and states() == {
            BOB: "delivered", "carol@qq.example": "deferred"})  # fmt: skip
        (listed,) = queue(lab)
        assert listed["id"] == queue_id


def test_the_relay_recovers_the_spool_on_start(tmp_path: Path) -> None:
    state = tmp_path / "state"
    spool = Spool(state / "smtp" / "queue")
    waiting = entry(spool, next_attempt=10_000.0, attempts=3)
    spool.add(waiting, message("recovered"), now=50.0)
    with sim.start(topology(), state_dir=state) as lab:
        sink = start_sink(lab, "mx1")
        # Queued long before; the restarted relay tries at once, not in 10 000 s.
        # (flushed again in case that was before the sink listened).
        flush_until(lab, lambda: len(sink.received) == 1)
        recovered = [
            e
            for e in lab.trace().events
            if e.kind == "queue" and e.data.get("recovered") and e.data["queue_id"] == waiting.id
        ]
        assert len(recovered) == 1
        wait_until(lambda: not (spool.root / f"{waiting.id}.json").exists())
