"""Labs 6 to 10 on the real local backend: each reference path passes as
``maillab check`` runs it, and the wrong paths a student takes give the
feedback, the hint and the real-world outcome they should."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from sim.cli import main
from sim.errors import LabFileError
from sim.lab.engine import LabSession
from sim.lab.loader import load_lab
from sim.lab.model import LabDef, QuestionStep, TaskStep

ROOT = Path(__file__).resolve().parents[1]
LABS = ROOT / "labs"
FILES = {
    "dkim": "06-dkim.yaml",
    "dmarc": "07-dmarc.yaml",
    "borrowed-reputation": "08-borrowed-reputation.yaml",
    "reliability": "09-reliability.yaml",
    "mta-mda": "10-mta-mda.yaml",
}
ALICE = {
    "from": "laptop",
    "to": "bob@qq.example",
    "mail_from": "alice@home.example",
    "via": "smtp-isp",
    "user": "alice@home.example",
    "password": "secret",
}


def lab_def(lab_id: str) -> LabDef:
    return load_lab(LABS / FILES[lab_id])


@pytest.fixture
def session(request: pytest.FixtureRequest) -> Iterator[LabSession]:
    with LabSession(lab_def(request.param), backend="local") as running:
        yield running


def task(session: LabSession, step_id: str) -> TaskStep:
    step = session.step(step_id)
    assert isinstance(step, TaskStep)
    return step


def send(session: LabSession, **kwargs: Any) -> dict[str, Any]:
    """Send as a student would (an experiment outside the lab's steps)."""
    args = dict(kwargs)
    node, to = args.pop("from"), args.pop("to")
    assert session.lab is not None
    result = session.lab.send(node, to, **args)
    data: dict[str, Any] = result.to_json()
    return data


# -- the reference paths, as `maillab check` runs them -----------------------


def test_maillab_check_passes_labs_6_to_10(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", *FILES, "--labs-dir", str(LABS), "--json"])
    report = json.loads(capsys.readouterr().out)
    failed = [
        (lab["id"], step["id"], step["detail"])
        for lab in report["labs"]
        for step in lab["steps"]
        if not step["passed"]
    ]
    assert code == 0, failed
    assert [lab["id"] for lab in report["labs"]] == list(FILES)
    # Lab time passes instantly: days of retries in seconds.
    assert all(lab["seconds"] < 20 for lab in report["labs"])


@pytest.mark.parametrize("lab_id", list(FILES))
def test_curriculum_shape(lab_id: str) -> None:
    lab = lab_def(lab_id)
    assert 4 <= len(lab.steps) <= 10
    kinds = {s.kind for s in lab.steps}
    assert {"question", "task"} <= kinds
    for step in lab.steps:
        if isinstance(step, TaskStep):
            assert step.hints and step.solution
        if isinstance(step, QuestionStep):
            assert step.explanation


# -- lab 6: DKIM ----------------------------------------------------------


@pytest.mark.parametrize("session", ["dkim"], indirect=True)
def test_dkim_wrong_answer_and_undone_task(session: LabSession) -> None:
    feedback = session.answer("where-is-the-key", "_domainkey.home.example")
    assert not feedback.correct
    assert "selector is missing" in feedback.text
    outcome = session.check("publish-key")
    assert not outcome.passed
    assert outcome.hint == task(session, "publish-key").hints[0]
    assert "dkim=permerror, expected pass" in outcome.detail


@pytest.mark.parametrize("session", ["dkim"], indirect=True)
def test_dkim_key_under_the_wrong_selector_is_permerror(session: LabSession) -> None:
    wrong = session.apply(
        "publish-key",
        {
            "dkim_publish": {
                "node": "ns",
                "zone": "home.example",
                "name": "default._domainkey",
                "signer": "smtp-isp",
                "selector": "mail2026",
            }
        },
    )
    assert wrong.ok, wrong.message
    assert "v=DKIM1" in wrong.message
    # The whole value, and where the signer's verifiers will look for it.
    assert wrong.data["txt"].startswith("v=DKIM1; k=rsa; p=MII")
    assert wrong.data["key_name"] == "mail2026._domainkey.home.example."
    outcome = session.check("publish-key")
    assert not outcome.passed
    assert "dkim=permerror, expected pass" in outcome.detail
    # The key is in DNS, just not where the verifier looks (s=mail2026).
    assert session.lab is not None
    found = session.lab.dig("laptop", "default._domainkey.home.example", "TXT")
    assert any("v=DKIM1" in str(a["data"]) for a in found.to_json()["answers"])
    result = send(session, **ALICE)
    assert result["checks"]["dkim"] == "permerror"
    assert result["outcome"] == "delivered"  # DKIM alone decides nothing


@pytest.mark.parametrize("session", ["dkim"], indirect=True)
def test_dkim_another_signers_key_fails_to_verify(session: LabSession) -> None:
    # The newsletter server's key published at smtp-isp's selector: a key
    # that exists but is not the signer's gives fail, not permerror.
    wrong = session.apply(
        "publish-key",
        {
            "dkim_publish": {
                "node": "ns",
                "zone": "home.example",
                "name": "mail2026._domainkey",
                "signer": "news",
            }
        },
    )
    assert wrong.ok, wrong.message
    outcome = session.check("publish-key")
    assert not outcome.passed
    assert "dkim=fail, expected pass" in outcome.detail


@pytest.mark.parametrize("session", ["dkim"], indirect=True)
def test_dkim_publish_refuses_a_key_the_signer_does_not_have(session: LabSession) -> None:
    result = session.apply(
        "publish-key",
        {
            "dkim_publish": {
                "node": "ns",
                "zone": "home.example",
                "name": "mail2027._domainkey",
                "signer": "smtp-isp",
                "selector": "mail2027",
            }
        },
    )
    assert not result.ok
    assert "no key for home.example with selector mail2027" in result.message


# -- lab 7: DMARC -----------------------------------------------------------


@pytest.mark.parametrize("session", ["dmarc"], indirect=True)
def test_dmarc_wrong_answer_and_undone_task(session: LabSession) -> None:
    feedback = session.answer("why-spf-did-not-help", "c")
    assert not feedback.correct
    assert "One aligned pass is enough" in feedback.text
    outcome = session.check("shop-quarantine")
    assert not outcome.passed
    assert outcome.hint == task(session, "shop-quarantine").hints[0]
    # Without a policy record DMARC does not apply: the forgery is delivered.
    assert "the outcome was delivered" in outcome.detail


@pytest.mark.parametrize("session", ["dmarc"], indirect=True)
def test_dmarc_a_second_record_instead_of_a_replacement_means_no_policy(
    session: LabSession,
) -> None:
    session.solve("shop-quarantine")
    added = session.apply(
        "shop-testing",
        {
            "dns_add": {
                "node": "ns",
                "zone": "shop.example",
                "record": '_dmarc TXT "v=DMARC1; p=reject; t=y"',
            }
        },
    )
    assert added.ok, added.message
    outcome = session.check("shop-testing")
    assert not outcome.passed
    assert outcome.hint == task(session, "shop-testing").hints[0]
    # Two DMARC records at one name are both discarded (RFC 9989 §4.10).
    forged = send(
        session,
        **{"from": "spoofer", "to": "bob@qq.example"},
        mail_from="x@evil.example",
        from_header="sales@shop.example",
    )
    assert forged["checks"]["dmarc"] == "none"
    assert forged["outcome"] == "delivered"


@pytest.mark.parametrize("session", ["dmarc"], indirect=True)
def test_dmarc_reject_without_test_mode_rejects_the_forgery(session: LabSession) -> None:
    session.solve("shop-quarantine")
    session.apply(
        "shop-testing",
        {"dns_remove": {"node": "ns", "zone": "shop.example", "name": "_dmarc", "type": "TXT"}},
    )
    session.apply(
        "shop-testing",
        {
            "dns_add": {
                "node": "ns",
                "zone": "shop.example",
                "record": '_dmarc TXT "v=DMARC1; p=reject"',
            }
        },
    )
    outcome = session.check("shop-testing")
    assert not outcome.passed
    assert "the outcome was rejected" in outcome.detail
    assert "550 5.7.26" in outcome.detail


# -- lab 8: borrowed reputation ------------------------------------------------


RELAYCO = {
    "from": "vps",
    "to": "bob@qq.example",
    "mail_from": "app@startup.example",
    "via": "relayco",
    "user": "app@startup.example",
    "password": "apikey",
}


@pytest.mark.parametrize("session", ["borrowed-reputation"], indirect=True)
def test_relay_wrong_answer_and_undone_task(session: LabSession) -> None:
    feedback = session.answer("why-dkim-too", "a")
    assert not feedback.correct
    assert "one aligned identifier is enough" in feedback.text
    outcome = session.check("authorise-relayco")
    assert not outcome.passed
    assert outcome.hint == session.hints_shown("authorise-relayco")[0]
    assert "the receiver's DKIM check said permerror" in outcome.hint
    assert "the outcome was junk" in outcome.detail and "expected delivered" in outcome.detail


@pytest.mark.parametrize("session", ["borrowed-reputation"], indirect=True)
def test_relay_spf_include_without_the_dkim_key(session: LabSession) -> None:
    for action in (
        {"dns_remove": {"node": "ns", "zone": "startup.example", "name": "@", "type": "TXT"}},
        {
            "dns_add": {
                "node": "ns",
                "zone": "startup.example",
                "record": '@ TXT "v=spf1 include:_spf.relayco.example -all"',
            }
        },
    ):
        assert session.apply("authorise-relayco", action).ok
    outcome = session.check("authorise-relayco")
    assert not outcome.passed
    assert "dkim=permerror, expected pass" in outcome.detail
    # What the real world does with it: aligned SPF alone passes DMARC, so
    # the message reaches the inbox; only forwarding would show the gap.
    result = send(session, **RELAYCO)
    assert result["outcome"] == "delivered"
    assert result["checks"]["spf"] == "pass"
    assert result["checks"]["dkim"] == "permerror"
    assert result["checks"]["dmarc"] == "pass"


@pytest.mark.parametrize("session", ["borrowed-reputation"], indirect=True)
def test_relay_second_spf_record_is_permerror(session: LabSession) -> None:
    added = session.apply(
        "authorise-relayco",
        {
            "dns_add": {
                "node": "ns",
                "zone": "startup.example",
                "record": '@ TXT "v=spf1 include:_spf.relayco.example -all"',
            }
        },
    )
    assert added.ok
    session.apply(
        "authorise-relayco",
        {
            "dkim_publish": {
                "node": "ns",
                "zone": "startup.example",
                "name": "rc1._domainkey",
                "signer": "relayco",
            }
        },
    )
    outcome = session.check("authorise-relayco")
    assert not outcome.passed
    assert "spf=permerror, expected pass" in outcome.detail
    # The key alone carries DMARC: aligned DKIM passes, so the inbox.
    result = send(session, **RELAYCO)
    assert result["checks"]["dkim"] == "pass"
    assert result["checks"]["dmarc"] == "pass"
    assert result["outcome"] == "delivered"


# -- lab 9: reliability -------------------------------------------------------


@pytest.mark.parametrize("session", ["reliability"], indirect=True)
def test_reliability_wrong_answer(session: LabSession) -> None:
    feedback = session.answer("bounce-sender", "MAILER-DAEMON")
    assert not feedback.correct
    assert "From:" in feedback.text
    assert session.answer("bounce-sender", "MAIL FROM:<>").correct


@pytest.mark.parametrize("session", ["reliability"], indirect=True)
def test_reliability_flush_too_early_is_greylisted_again(session: LabSession) -> None:
    first = session.run_experiment("greylisted")
    assert first.passed, first.detail
    flushed = session.apply("wait-for-retry", {"relay_flush": {"node": "smtp-isp"}})
    assert flushed.ok
    # A minute: the flushed attempt finishes, but the greylisting delay does not pass.
    waited = session.apply("wait-for-retry", {"settle": "1m"})
    assert waited.ok and "1 message still queued" in waited.message
    assert session.lab is not None
    outcome = session.check("wait-for-retry")
    assert not outcome.passed
    assert outcome.hint == session.hints_shown("wait-for-retry")[0]
    assert "carol@grey.example has 0 messages" in outcome.detail
    entries = session.lab.control("smtp-isp", "relay", "queue")["entries"]
    assert entries[0]["attempts"] == 2
    assert "Greylisted" in entries[0]["rcpts"][0]["reply"]["text"]


@pytest.mark.parametrize("session", ["reliability"], indirect=True)
def test_reliability_warning_comes_before_giving_up(session: LabSession) -> None:
    assert session.run_experiment("unknown-user").passed
    assert session.run_experiment("far-away").passed
    short = session.apply("a-day-later", {"settle": "3h"})
    assert short.ok
    assert "1 message still queued" in short.message
    early = session.check("a-day-later")
    assert not early.passed  # no delay warning before warn_after (4h)
    assert early.hint == task(session, "a-day-later").hints[0]
    session.solve("a-day-later")
    assert session.check("a-day-later").passed
    before = session.check("give-up")
    assert not before.passed
    assert "smtp-isp's queue holds 1 message, expected exactly 0" in before.detail


# -- lab 10: MTA and MDA --------------------------------------------------------


@pytest.mark.parametrize("session", ["mta-mda"], indirect=True)
def test_mta_mda_wrong_answer_and_undone_task(session: LabSession) -> None:
    feedback = session.answer("reading-received", "a")
    assert not feedback.correct
    assert "forge" in feedback.text
    outcome = session.check("mta-maintenance")
    assert not outcome.passed
    assert outcome.hint == task(session, "mta-maintenance").hints[0]
    assert "the outcome was delivered" in outcome.detail


@pytest.mark.parametrize("session", ["mta-mda"], indirect=True)
def test_mta_back_up_but_not_retried_yet(session: LabSession) -> None:
    assert session.run_experiment("send-to-bob").passed
    session.solve("mta-maintenance")
    assert session.check("mta-maintenance").passed
    # The MDA serves bob while the MTA is down.
    reading = session.run_experiment("read-imap")
    assert reading.passed, reading.detail
    # Half the fix: the MX is back, but the queued message waits for its
    # retry (5 lab minutes away; lab time here runs like real time).
    assert session.apply("mta-back", {"mx_up": {"node": "mx-qq"}}).ok
    outcome = session.check("mta-back")
    assert not outcome.passed
    assert outcome.hint == task(session, "mta-back").hints[0]
    assert "smtp-isp's queue holds 1 message, expected exactly 0" in outcome.detail
    assert session.apply("mta-back", {"settle": "1h"}).ok
    assert session.check("mta-back").passed


@pytest.mark.parametrize("session", ["mta-mda"], indirect=True)
def test_reading_without_tls_is_refused(session: LabSession) -> None:
    session.run_experiment("send-to-bob")
    assert session.lab is not None
    read = cast(Any, session.lab).read
    clear = read("bob-pc", "bob", "bob-secret", via="mx-qq", tls=False)
    assert clear.error is not None and clear.stage == "login"
    assert not clear.messages
    wrong = read("bob-pc", "bob", "wrong", via="mx-qq", protocol="pop3")
    assert wrong.error is not None and wrong.stage == "login"
    pop = read("bob-pc", "bob", "bob-secret", via="mx-qq", protocol="pop3")
    assert pop.error is None
    assert [m["subject"] for m in pop.messages] == ["Dinner on Saturday"]


# -- the engine additions these labs use -----------------------------------------


def _lab_file(tmp_path: Path, topology: str, steps: str) -> Path:
    (tmp_path / "topologies").mkdir()
    shutil.copy(ROOT / "topologies" / f"{topology}.yaml", tmp_path / "topologies")
    (tmp_path / "labs").mkdir()
    path = tmp_path / "labs" / "x.yaml"
    path.write_text(
        f"id: x\ntitle: X\ntopology: {topology}\nestimated_time: 5m\ngoals: [g]\nsteps:\n{steps}",
        encoding="utf-8",
    )
    return path


def test_dkim_publish_is_checked_against_the_topology(tmp_path: Path) -> None:
    path = _lab_file(
        tmp_path,
        "dkim",
        """  - id: t
    kind: task
    title: T
    text: T
    checks: [{expect: [{mailbox: {address: bob@qq.example}}]}]
    hints: [h]
    solution:
      - dkim_publish: {node: ns, zone: home.example, name: s._domainkey, signer: mx-qq}
""",
    )
    with pytest.raises(LabFileError) as err:
        load_lab(path)
    assert any("mx-qq signs nothing" in p.message for p in err.value.problems)


def test_read_needs_a_mailbox_host(tmp_path: Path) -> None:
    path = _lab_file(
        tmp_path,
        "mta-mda",
        """  - id: r
    kind: experiment
    title: R
    run: {read: {from: bob-pc, via: smtp-isp, user: bob, password: x}}
    expect: [{messages: {min: 1}}]
  - id: d
    kind: experiment
    title: D
    run: {dig: {from: bob-pc, name: qq.example}}
    expect: [{messages: {min: 1}}]
""",
    )
    with pytest.raises(LabFileError) as err:
        load_lab(path)
    messages = [p.message for p in err.value.problems]
    assert any("smtp-isp runs no mailbox service" in m for m in messages)
    assert any("messages tests the result of read, not of dig" in m for m in messages)
