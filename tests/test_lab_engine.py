"""The lab engine on the shipped receive-only lab, with a stand-in lab
(``labfake.FakeLab``: real zone data, simple delivery): answers and their
feedback, tasks, hints, student edits, checks, resume and reset.
The same lab against the real local backend is in ``test_lab_e2e.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
from labfake import FakeStarter

from sim.errors import LabError
from sim.lab.engine import LabSession, run_reference
from sim.lab.loader import load_lab
from sim.lab.model import LabDef
from sim.lab.progress import FileProgressStore, MemoryProgressStore

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "labs" / "01-receive-only.yaml"


@pytest.fixture(scope="module")
def lab() -> LabDef:
    return load_lab(LAB)


@pytest.fixture
def starter() -> FakeStarter:
    return FakeStarter()


@pytest.fixture
def session(lab: LabDef, starter: FakeStarter) -> LabSession:
    s = LabSession(lab, store=MemoryProgressStore(), starter=starter)
    s.start()
    return s


def test_the_reference_path_passes(lab: LabDef, starter: FakeStarter) -> None:
    report = run_reference(lab, starter=starter)
    assert report.passed, [s for s in report.steps if not s.passed]
    assert [s.id for s in report.steps] == [s.id for s in lab.steps]
    assert report.to_json()["steps"][0] == {
        "id": "finding-the-server",
        "kind": "explain",
        "passed": True,
        "detail": "text: How a sender finds where to deliver",
    }
    assert starter.labs[0].stopped


def test_a_wrong_choice_gets_its_own_feedback(session: LabSession, lab: LabDef) -> None:
    feedback = session.answer("mx-target", "a")
    assert not feedback.correct
    assert feedback.choice == "a"
    assert "RFC 1035 §3.3.9" in feedback.text
    assert not session.state("mx-target").done
    feedback = session.answer("mx-target", 1)  # by 0-based index: choice b
    assert (feedback.correct, feedback.choice) == (False, "b")
    assert "RFC 2181 §10.3" in feedback.text
    feedback = session.answer("mx-target", "C")
    assert feedback.correct
    assert "indirection" in feedback.text
    state = session.state("mx-target")
    assert state.done
    assert state.attempts == 3
    assert state.answers == ["a", "b", "c"]


def test_an_answer_that_names_no_choice_is_not_an_attempt(session: LabSession) -> None:
    feedback = session.answer("mx-target", "z")
    assert not feedback.correct
    assert "answer one of a, b, c" in feedback.text
    assert session.state("mx-target").attempts == 0


def test_short_answers(session: LabSession) -> None:
    wrong = session.answer("which-port", " 587 ")
    assert not wrong.correct
    assert "submission" in wrong.text
    assert "RFC 6409" in wrong.text
    other = session.answer("which-port", "80")
    assert not other.correct
    assert "Look at the `net` event" in other.text
    right = session.answer("which-port", "Port 25")  # the pattern, ignoring case
    assert right.correct
    assert "SMTP port" in right.text


def test_an_undone_task_fails_and_shows_the_first_hint(session: LabSession, lab: LabDef) -> None:
    task = lab.step("null-mx")
    outcome = session.check(task)
    assert not outcome.passed
    assert outcome.hint == task.hints[0]  # type: ignore[union-attr]
    assert "shop.example. MX has 0 record(s), expected 1" in outcome.detail
    assert session.hints_shown(task) == [task.hints[0]]  # type: ignore[union-attr]
    # Failing again shows the same hint; more come one at a time on request.
    assert session.check(task).hint == task.hints[0]  # type: ignore[union-attr]
    assert session.hint(task) == task.hints[1]  # type: ignore[union-attr]
    assert session.hint(task) is None
    assert session.check(task).hint == task.hints[1]  # type: ignore[union-attr]
    assert not session.state(task).done
    assert session.state(task).attempts == 3


def test_a_student_edit_fixes_the_task(session: LabSession, starter: FakeStarter) -> None:
    edit = {"dns_add": {"node": "ns", "zone": "shop.example", "record": "@ MX 0 ."}}
    result = session.apply("null-mx", edit)
    assert result.ok, result.message
    assert "flushed the resolver cache on ns" in result.message
    fake = starter.labs[0]
    assert ("control", ("ns", "dns", "flush", {})) in fake.calls
    outcome = session.check("null-mx")
    assert outcome.passed, outcome.detail
    assert outcome.hint is None
    assert "556 5.1.10" in outcome.explanation
    assert session.state("null-mx").done
    assert session.progress.actions == [{"step": "null-mx", "action": edit}]


def test_a_fix_in_the_wrong_place_fails_as_it_would(session: LabSession) -> None:
    # Removing the apex A record instead of the MX: mail still goes by MX,
    # and the check says the MX is still there.
    result = session.apply(
        "implicit-mx",
        {"dns_remove": {"node": "ns", "zone": "qq.example", "name": "@", "type": "A"}},
    )
    assert result.ok
    outcome = session.check("implicit-mx")
    assert not outcome.passed
    assert "qq.example. MX has 1 record(s), expected 0" in outcome.detail
    # Then the MX too: now there is neither, and mail to bob cannot be delivered.
    session.solve("implicit-mx")
    outcome = session.check("implicit-mx")
    assert not outcome.passed
    assert "the outcome was blocked" in outcome.detail


def test_bad_edits_come_back_as_data(session: LabSession) -> None:
    nonsense = session.apply("null-mx", {"dns_ad": {"node": "ns"}})
    assert not nonsense.ok
    assert "unknown key 'dns_ad'" in nonsense.message
    wrong_zone = session.apply(
        "null-mx", {"dns_add": {"node": "ns", "zone": "nowhere.example", "record": "@ MX 0 ."}}
    )
    assert not wrong_zone.ok
    assert "ns does not serve the zone nowhere.example." in wrong_zone.message
    bad_record = session.apply(
        "null-mx", {"dns_add": {"node": "ns", "zone": "shop.example", "record": "@ MX zero ."}}
    )
    assert not bad_record.ok
    assert "not a valid zone record" in bad_record.message
    missing = session.apply(
        "null-mx", {"dns_remove": {"node": "ns", "zone": "shop.example", "name": "@", "type": "MX"}}
    )
    assert not missing.ok
    assert "could not remove" in missing.message
    assert "no MX record at shop.example." in missing.message
    assert session.progress.actions == []


def test_dns_edits_under_ttl_caching_explain_the_wait(lab: LabDef, starter: FakeStarter) -> None:
    from dataclasses import replace

    session = LabSession(replace(lab, dns_cache="ttl"), starter=starter)
    session.start()
    result = session.apply(
        None, {"dns_add": {"node": "ns", "zone": "shop.example", "record": "@ MX 0 ."}}
    )
    assert result.ok
    assert "until its TTL runs out" in result.message
    assert not any(c[0] == "control" and c[1][2] == "flush" for c in starter.labs[0].calls)


def test_steps_know_what_they_are(session: LabSession) -> None:
    assert session.current is not None
    assert session.current.id == "finding-the-server"
    session.mark_read("finding-the-server")
    assert session.current.id == "dig-mx"
    with pytest.raises(LabError, match="not an experiment"):
        session.run_experiment("mx-target")
    with pytest.raises(LabError, match="only tasks have hints"):
        session.hint("dig-mx")
    with pytest.raises(LabError, match="no step 'nope'"):
        session.step("nope")
    with pytest.raises(LabError, match="done by doing it"):
        session.mark_read("dig-mx")
    outcome = session.run_experiment("dig-mx")
    assert outcome.passed
    assert outcome.data is not None
    assert outcome.data["answers"][0]["data"] == "10 mx.qq.example."
    assert session.current.id == "send-to-bob"


def test_a_checkpoint_runs_the_experiment_it_needs(
    session: LabSession, starter: FakeStarter
) -> None:
    outcome = session.check("recap")
    assert not outcome.passed
    assert "bob@qq.example has 0 messages in INBOX" in outcome.detail
    session.run_experiment("send-to-bob")
    session.solve("implicit-mx")
    session.check("implicit-mx")
    assert session.check("recap").passed


def test_the_lab_is_complete_when_every_step_is_done(lab: LabDef, starter: FakeStarter) -> None:
    store = MemoryProgressStore()
    run = LabSession(lab, store=store, starter=starter)
    run.start()
    for step in lab.steps:
        if step.kind == "explain":
            run.mark_read(step)
        elif step.kind == "experiment":
            run.run_experiment(step)
        elif step.kind == "question":
            run.answer(step, step.reference_answer())  # type: ignore[union-attr]
        else:
            if step.kind == "task":
                run.solve(step)
            assert run.check(step).passed
    assert run.complete
    assert run.current is None
    assert run.progress.completed is not None


def test_resume_after_a_crash_replays_the_edits(lab: LabDef, tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    first = FakeStarter()
    session = LabSession(lab, store=FileProgressStore(path, "alice"), starter=first)
    session.start()
    session.mark_read("finding-the-server")
    session.answer("mx-target", "a")
    session.check("null-mx")  # reveals the first hint
    session.solve("implicit-mx")
    assert session.check("implicit-mx").passed
    # The process dies here: no stop(), nothing else saved. A new one resumes.
    second = FakeStarter()
    resumed = LabSession(lab, store=FileProgressStore(path, "alice"), starter=second)
    resumed.start()
    assert [r.ok for r in resumed.replayed] == [True]
    assert resumed.state("finding-the-server").done
    assert resumed.state("mx-target").answers == ["a"]
    assert resumed.hints_shown("null-mx") == [lab.step("null-mx").hints[0]]  # type: ignore[union-attr]
    assert resumed.current is not None
    assert resumed.current.id == "dig-mx"
    # The edit is back in the fresh lab's DNS: qq.example has no MX.
    fake = second.labs[0]
    rcode, answers = fake._lookup("qq.example", "MX")
    assert (rcode, answers) == ("NOERROR", [])
    # Another student on the same machine starts from nothing.
    other = LabSession(lab, store=FileProgressStore(path, "bob"), starter=FakeStarter())
    assert other.current is not None
    assert other.current.id == "finding-the-server"


def test_reset_starts_the_lab_afresh(lab: LabDef, tmp_path: Path) -> None:
    store = FileProgressStore(tmp_path / "progress.json", "alice")
    starter = FakeStarter()
    session = LabSession(lab, store=store, starter=starter)
    session.start()
    session.solve("implicit-mx")
    session.check("implicit-mx")
    session.mark_read("finding-the-server")
    session.reset()
    assert starter.labs[0].stopped
    assert len(starter.labs) == 2
    assert session.current is not None
    assert session.current.id == "finding-the-server"
    assert session.progress.actions == []
    assert not store.exists(lab.id)
    _rcode, answers = starter.labs[1]._lookup("qq.example", "MX")
    assert answers
    assert answers[0]["data"] == "10 mx.qq.example."
    # start(resume=False) also forgets.
    session.mark_read("finding-the-server")
    session.stop()
    session.start(resume=False)
    assert not session.state("finding-the-server").done


def test_a_session_that_is_not_running_says_so(lab: LabDef) -> None:
    session = LabSession(lab, starter=FakeStarter())
    with pytest.raises(LabError, match="not running"):
        session.run_experiment("dig-mx")
