"""The receive-only lab on the real local backend: the reference path, and
the wrong paths a student takes, with the outcomes the real world gives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.lab.engine import LabSession, run_reference
from sim.lab.loader import load_lab
from sim.lab.model import LabDef, TaskStep
from sim.lab.progress import FileProgressStore

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "labs" / "01-receive-only.yaml"


@pytest.fixture(scope="module")
def lab() -> LabDef:
    return load_lab(LAB)


@pytest.fixture
def session(lab: LabDef) -> Iterator[LabSession]:
    with LabSession(lab, backend="local") as running:
        yield running


def test_reference_path_on_the_local_backend(lab: LabDef) -> None:
    report = run_reference(lab, "local")
    assert report.passed, [s for s in report.steps if not s.passed]
    by_id = {s.id: s for s in report.steps}
    assert "10 mx.qq.example." in by_id["dig-mx"].detail
    assert "5.1.10" in by_id["null-mx"].detail
    assert report.seconds < 30


def test_experiments_show_the_path_in_their_trace(session: LabSession) -> None:
    outcome = session.run_experiment("send-to-bob")
    assert outcome.passed, outcome.detail
    kinds = [e.kind for e in outcome.result.trace]
    assert "dns" in kinds
    assert "net" in kinds
    assert "smtp" in kinds
    shop = session.run_experiment("send-to-shop")
    assert shop.passed, shop.detail
    assert shop.data is not None
    assert shop.data["outcome"] == "blocked"


def test_undone_task_fails_with_the_first_hint(session: LabSession, lab: LabDef) -> None:
    task = lab.step("null-mx")
    assert isinstance(task, TaskStep)
    outcome = session.check(task)
    assert not outcome.passed
    assert outcome.hint == task.hints[0]
    # What the real sender did: no MX, so the web server's port 25, and nobody there.
    assert "the outcome was blocked, expected rejected" in outcome.detail
    assert "expected the enhanced status code 5.1.10" in outcome.detail


def test_a_wrong_answer_gets_its_feedback(session: LabSession) -> None:
    feedback = session.answer("which-port", "587")
    assert not feedback.correct
    assert "submission" in feedback.text


def test_half_done_fixes_give_real_world_outcomes(session: LabSession) -> None:
    # The apex A record removed instead of the MX: the MX still answers.
    wrong = session.apply(
        "implicit-mx",
        {"dns_remove": {"node": "ns", "zone": "qq.example", "name": "@", "type": "A"}},
    )
    assert wrong.ok, wrong.message
    first = session.check("implicit-mx")
    assert not first.passed
    assert "MX has 1 record(s), expected 0" in first.detail
    # Then the MX as well: no MX and no address, so no server to deliver to
    # (RFC 5321 §5.1: the sender must report an error).
    session.solve("implicit-mx")
    second = session.check("implicit-mx")
    assert not second.passed
    assert "the outcome was rejected" in second.detail
    assert "5.4.4" in second.detail  # RFC 3463 X.4.4, as the relay says
    # Putting the A record back makes the implicit MX work.
    back = session.apply(
        "implicit-mx",
        {"dns_add": {"node": "ns", "zone": "qq.example", "record": "@ A 203.0.113.25"}},
    )
    assert back.ok, back.message
    assert session.check("implicit-mx").passed


def test_an_edit_the_dns_refuses_comes_back_as_data(session: LabSession) -> None:
    result = session.apply(
        "null-mx", {"dns_remove": {"node": "ns", "zone": "shop.example", "name": "@", "type": "MX"}}
    )
    assert not result.ok
    assert "no MX record" in result.message
    cname = session.apply(
        "null-mx", {"dns_add": {"node": "ns", "zone": "shop.example", "record": "www CNAME web"}}
    )
    assert not cname.ok
    assert "CNAME" in cname.message


def test_resumed_session_replays_edits_into_the_real_dns(
    lab: LabDef, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILLAB_HOME", str(tmp_path))
    monkeypatch.setenv("MAILLAB_STUDENT", "alice")
    with LabSession.for_student(lab) as first:
        assert isinstance(first.store, FileProgressStore)
        assert first.store.path == tmp_path / "progress.json"
        first.solve("null-mx")
    with LabSession.for_student(lab) as second:
        assert [r.ok for r in second.replayed] == [True]
        dig = second.check("null-mx")
        assert dig.passed, dig.detail


def test_a_resumed_lab_has_the_mail_its_finished_steps_delivered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lab 10: bob's IMAP read (read-imap) reads the message an earlier step
    (send-to-bob) delivered. A student who quits after sending and resumes
    gets a fresh topology (no mailbox survives a run), so resuming runs the
    finished experiment again: the read still finds the message."""
    monkeypatch.setenv("MAILLAB_HOME", str(tmp_path))
    monkeypatch.setenv("MAILLAB_STUDENT", "alice")
    mta_mda = load_lab(ROOT / "labs" / "10-mta-mda.yaml")
    with LabSession.for_student(mta_mda) as first:
        assert first.run_experiment("send-to-bob").passed
    with LabSession.for_student(mta_mda) as second:
        assert second.outcome_of("send-to-bob") is not None  # its views show it again
        read = second.run_experiment("read-imap")
        assert read.passed, read.detail
