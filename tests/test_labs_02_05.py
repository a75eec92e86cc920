"""Curriculum labs 2-5 on the real local backend: the reference path (as
``maillab check`` runs it) and the wrong paths a student takes.

For each lab: a wrong answer gets its own feedback; a task left undone fails
its check and reveals the first hint; a half-done fix gives the outcome the
real world would (an ICMP reject shows as "no route to host", a PTR without
its A record is deferred, ``~all`` files a forgery as junk instead of
rejecting it...).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import sim.cli
from sim.errors import SimError
from sim.lab.engine import CheckOutcome, LabSession
from sim.lab.loader import load_lab, validate_lab_file
from sim.lab.model import LabDef, TaskStep
from sim.net.requirements import missing as mininet_missing

ROOT = Path(__file__).resolve().parents[1]
LABS = {
    "direct-from-home": ROOT / "labs" / "02-direct-from-home.yaml",
    "submission": ROOT / "labs" / "03-submission.yaml",
    "ip-reputation": ROOT / "labs" / "04-ip-reputation.yaml",
    "spf": ROOT / "labs" / "05-spf.yaml",
}

Open = Callable[[str], LabSession]


@pytest.fixture
def open_lab() -> Iterator[Open]:
    """Start a lab's topology; every session started is stopped at the end."""
    sessions: list[LabSession] = []

    def start(lab_id: str) -> LabSession:
        session = LabSession(load_lab(LABS[lab_id]), backend="local")
        session.start(resume=False)
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        session.stop()


def task(session: LabSession, step_id: str) -> TaskStep:
    step = session.step(step_id)
    assert isinstance(step, TaskStep)
    return step


def apply_ok(session: LabSession, step_id: str, action: dict[str, Any]) -> None:
    result = session.apply(step_id, action)
    assert result.ok, result.message


def failed(outcome: CheckOutcome) -> list[str]:
    return [r.detail for r in outcome.results if not r.passed]


def send(session: LabSession, node: str, to: str, **kwargs: Any) -> dict[str, Any]:
    assert session.lab is not None
    data = session.lab.send(node, to, **kwargs).to_json()
    assert isinstance(data, dict)
    return data


# -- every lab: the reference path, as `maillab check` runs it ------------------


def test_maillab_check_passes_labs_2_to_5_on_the_local_backend(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = sim.cli.main(["check", *LABS, "--json"])
    report = json.loads(capsys.readouterr().out)
    failures = [
        (lab["id"], step["id"], step["detail"])
        for lab in report["labs"]
        for step in lab["steps"]
        if not step["passed"]
    ]
    assert code == 0, failures
    assert report["passed"] and report["backend"] == "local"
    assert [lab["id"] for lab in report["labs"]] == list(LABS)
    for lab in report["labs"]:
        assert lab["seconds"] < 20, (lab["id"], lab["seconds"])
    steps = {(lab["id"], s["id"]): s["detail"] for lab in report["labs"] for s in lab["steps"]}
    assert "isp dropped" in steps["direct-from-home", "connect-25"]
    assert "blocked using zen.dnsbl.example" in steps["direct-from-home", "lift-the-block"]
    assert "538 5.7.11" in steps["submission", "auth-in-the-clear"]
    assert "450 4.7.25" in steps["ip-reputation", "not-confirmed"]
    assert "spf=permerror" in steps["spf", "too-many-lookups"]


@pytest.mark.slow
@pytest.mark.mininet
@pytest.mark.skipif(mininet_missing() is not None, reason=f"mininet: {mininet_missing()}")
def test_maillab_check_passes_labs_2_to_5_on_the_mininet_backend(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Real iptables rules on the isp router: `firewall_set` recompiles them.
    code = sim.cli.main(["check", *LABS, "--backend", "mininet", "--json"])
    report = json.loads(capsys.readouterr().out)
    failures = [
        (lab["id"], step["id"], step["detail"])
        for lab in report["labs"]
        for step in lab["steps"]
        if not step["passed"]
    ]
    assert code == 0, failures
    assert report["backend"] == "mininet"


@pytest.mark.parametrize("lab_id", list(LABS))
def test_each_lab_is_a_valid_curriculum_lab(lab_id: str) -> None:
    assert validate_lab_file(LABS[lab_id]) == []
    lab: LabDef = load_lab(LABS[lab_id])
    assert lab.id == lab_id
    assert 4 <= len(lab.steps) <= 10
    kinds = {s.kind for s in lab.steps}
    assert {"question", "task"} <= kinds
    # Each lab has its own topology, named after it.
    assert lab.topology_path == ROOT / "topologies" / f"{lab_id}.yaml"


# -- lab 2: direct from home ------------------------------------------------------


def test_lab2_wrong_answers_name_the_misconception(open_lab: Open) -> None:
    session = open_lab("direct-from-home")
    down = session.answer("who-blocked", "a")
    assert not down.correct and "isp" in down.text
    laptop = session.answer("who-blocked", "b")
    assert not laptop.correct and "not the laptop" in laptop.text
    symptom = session.answer("drop-or-reject", "b")
    assert not symptom.correct and "answers at once" in symptom.text
    assert session.answer("who-blocked", "d").correct


def test_lab2_undone_task_times_out_and_shows_the_first_hint(open_lab: Open) -> None:
    session = open_lab("direct-from-home")
    step = task(session, "reject-instead")
    outcome = session.check(step)
    assert not outcome.passed
    assert outcome.hint == step.hints[0]
    assert any("failed with timeout, expected refused" in d for d in failed(outcome))
    assert any("isp rejected" in d for d in failed(outcome))


def test_lab2_icmp_reject_is_no_route_to_host_not_a_refusal(open_lab: Open) -> None:
    session = open_lab("direct-from-home")
    apply_ok(
        session,
        "reject-instead",
        {
            "firewall_set": {
                "router": "isp",
                "rule": 1,
                "action": "reject",
                "reject_with": "icmp-admin-prohibited",
            }
        },
    )
    outcome = session.check("reject-instead")
    assert not outcome.passed
    assert any("failed with unreachable, expected refused" in d for d in failed(outcome))
    # The student fixes it; the same check now passes, and the change is recorded.
    apply_ok(
        session,
        "reject-instead",
        {"firewall_set": {"router": "isp", "rule": 1, "action": "reject"}},
    )
    assert session.check("reject-instead").passed
    assert [a["action"]["firewall_set"]["action"] for a in session.progress.actions] == [
        "reject",
        "reject",
    ]


def test_lab2_firewall_edits_that_cannot_apply_say_why(open_lab: Open) -> None:
    session = open_lab("direct-from-home")
    no_rules = session.apply(
        "reject-instead", {"firewall_set": {"router": "internet", "rule": 1, "action": "reject"}}
    )
    assert not no_rules.ok and "internet has no firewall rules" in no_rules.message
    host = session.apply(
        "reject-instead", {"firewall_set": {"router": "laptop", "rule": 1, "action": "reject"}}
    )
    assert not host.ok and "laptop is a host, not a router" in host.message
    too_far = session.apply(
        "reject-instead", {"firewall_set": {"router": "isp", "rule": 2, "action": "reject"}}
    )
    assert not too_far.ok and "from 1 to 1" in too_far.message
    pointless = session.apply(
        "reject-instead",
        {
            "firewall_set": {
                "router": "isp",
                "rule": 1,
                "action": "drop",
                "reject_with": "tcp-reset",
            }
        },
    )
    assert not pointless.ok and "reject_with" in pointless.message
    bad_action = session.apply(
        "reject-instead", {"firewall_set": {"router": "isp", "rule": 1, "action": "deny"}}
    )
    assert not bad_action.ok and "not a valid action" in bad_action.message
    assert session.progress.actions == []


def test_lab2_port_25_open_meets_the_policy_blocklist(open_lab: Open) -> None:
    session = open_lab("direct-from-home")
    # Still rejecting at the ISP: the message never reaches the receiver.
    apply_ok(
        session,
        "reject-instead",
        {"firewall_set": {"router": "isp", "rule": 1, "action": "reject"}},
    )
    step = task(session, "lift-the-block")
    blocked = session.check(step)
    assert not blocked.passed and blocked.hint == step.hints[0]
    assert any("the outcome was blocked, expected rejected" in d for d in failed(blocked))
    apply_ok(
        session,
        "lift-the-block",
        {"firewall_set": {"router": "isp", "rule": 1, "action": "accept"}},
    )
    data = send(session, "laptop", "bob@qq.example", mail_from="alice@home.example")
    assert data["outcome"] == "rejected" and data["stage"] == "rcpt"
    assert (data["reply"]["code"], data["reply"]["enhanced"]) == (554, "5.7.1")
    assert data["checks"]["dnsbl"] == "listed"
    assert "residential range" in data["reply"]["text"]


# -- lab 3: submission --------------------------------------------------------------


def test_lab3_wrong_answers_get_their_feedback(open_lab: Open) -> None:
    session = open_lab("submission")
    spf = session.answer("why-553", "a")
    assert not spf.correct and "SPF" in spf.text
    top = session.answer("read-the-chain", "a")
    assert not top.correct and "prepends" in top.text


def test_lab3_auth_without_tls_is_refused_before_mail(open_lab: Open) -> None:
    session = open_lab("submission")
    data = send(
        session,
        "laptop",
        "bob@qq.example",
        via="smtp-isp",
        tls="none",
        mail_from="alice@home.example",
        user="alice@home.example",
        password="secret",
    )
    assert (data["outcome"], data["stage"]) == ("rejected", "auth")
    assert (data["reply"]["code"], data["reply"]["enhanced"]) == (538, "5.7.11")
    smtp = [e for e in data["trace"] if e["kind"] == "smtp" and e["data"].get("role") == "client"]
    ehlo = next(e for e in smtp if e["data"]["stage"] == "helo")
    assert "AUTH" not in ehlo["data"]["text"] and "STARTTLS" in ehlo["data"]["text"]
    assert not [e for e in data["trace"] if e["kind"] == "tls"]


def test_lab3_an_unknown_tls_mode_is_one_clear_error(open_lab: Open, tmp_path: Path) -> None:
    session = open_lab("submission")
    assert session.lab is not None
    with pytest.raises(SimError, match="tls='starttls': choose one of none, opportunistic"):
        session.lab.send("laptop", "bob@qq.example", via="smtp-isp", tls="starttls")
    bad = tmp_path / "bad.yaml"
    text = LABS["submission"].read_text().replace("port: 587, tls: none,", "port: 587, tls: plain,")
    bad.write_text(
        text.replace("topology: submission", f"topology: {ROOT}/topologies/submission.yaml")
    )
    problems = [str(p) for p in validate_lab_file(bad, curriculum=False)]
    assert any(
        "'plain' is not one of: none, opportunistic, required, implicit" in p for p in problems
    )


def test_lab3_undone_and_half_done_srv_records(open_lab: Open) -> None:
    session = open_lab("submission")
    step = task(session, "publish-srv")
    undone = session.check(step)
    assert not undone.passed and undone.hint == step.hints[0]
    assert any("SRV has 0 record(s), expected 1" in d for d in failed(undone))
    # Only the STARTTLS port published, and the implicit-TLS record with 587:
    # a mail program would find the wrong door.
    apply_ok(
        session,
        "publish-srv",
        {
            "dns_add": {
                "node": "ns",
                "zone": "home.example",
                "record": "_submission._tcp SRV 10 1 587 smtp.home.example.\n"
                "_submissions._tcp SRV 0 1 587 smtp.home.example.",
            }
        },
    )
    half = session.check(step)
    assert not half.passed
    assert failed(half) == [
        "_submissions._tcp.home.example. SRV answered SRV 0 1 587 smtp.home.example., "
        "which does not match \\d+ \\d+ 465 smtp\\.home\\.example\\."
    ]


def test_lab3_relay_probe_without_auth_and_a_correct_submission(open_lab: Open) -> None:
    session = open_lab("submission")
    probe = send(
        session, "spammer", "bob@qq.example", via="smtp-isp", port=25, mail_from="x@y.test"
    )
    assert (probe["outcome"], probe["stage"], probe["reply"]["code"]) == ("rejected", "rcpt", 554)
    assert session.check("received-chain").passed is False
    outcome = session.run_experiment("submit-on-465")
    assert outcome.passed, outcome.detail
    chain = session.check("received-chain")
    assert chain.passed, chain.detail


# -- lab 4: IP reputation -----------------------------------------------------------


def test_lab4_wrong_answers_get_their_feedback(open_lab: Open) -> None:
    session = open_lab("ip-reputation")
    own_zone = session.answer("who-sets-the-ptr", "a")
    assert not own_zone.correct and "in-addr.arpa" in own_zone.text
    registrar = session.answer("who-sets-the-ptr", "b")
    assert not registrar.correct and "addresses" in registrar.text
    spf = session.answer("which-list", "c")
    assert not spf.correct and "address" in spf.text


def test_lab4_a_ptr_in_the_senders_own_zone_does_nothing(open_lab: Open) -> None:
    session = open_lab("ip-reputation")
    step = task(session, "set-the-ptr")
    undone = session.check(step)
    assert not undone.passed and undone.hint == session.hints_shown(step)[0]
    assert failed(undone) == [
        "ptr=fail, expected pass",
        "10.2.0.192.in-addr.arpa. PTR has 0 record(s), expected 1: no answer (NXDOMAIN)",
        "10.2.0.192.in-addr.arpa. PTR answered no answer (NXDOMAIN), expected exactly "
        "mail.startup.example.",
    ]
    # The reverse name itself cannot go into startup.example's zone...
    outside = session.apply(
        "set-the-ptr",
        {
            "dns_add": {
                "node": "ns",
                "zone": "startup.example",
                "record": "10.2.0.192.in-addr.arpa. PTR mail.startup.example.",
            }
        },
    )
    assert not outside.ok and "outside the zone" in outside.message
    # ...and a PTR record under startup.example is just a name nobody asks for.
    apply_ok(
        session,
        "set-the-ptr",
        {
            "dns_add": {
                "node": "ns",
                "zone": "startup.example",
                "record": "10 PTR mail.startup.example.",
            }
        },
    )
    assert not session.check(step).passed
    data = send(session, "vps", "bob@qq.example", mail_from="hello@startup.example")
    assert (data["reply"]["code"], data["reply"]["enhanced"]) == (550, "5.7.25")


def test_lab4_a_ptr_without_its_a_record_is_deferred_then_a_wrong_a_too(open_lab: Open) -> None:
    session = open_lab("ip-reputation")
    session.solve("set-the-ptr")
    assert session.check("set-the-ptr").passed
    step = task(session, "forward-confirm")
    half = session.check(step)
    assert not half.passed and half.hint == session.hints_shown(step)[0]
    assert any("the outcome was deferred (450 4.7.25" in d for d in failed(half))
    # The A record published, with a typo in the address: still unconfirmed.
    apply_ok(
        session,
        "forward-confirm",
        {"dns_add": {"node": "ns", "zone": "startup.example", "record": "mail A 192.0.2.11"}},
    )
    data = send(session, "vps", "bob@qq.example", mail_from="hello@startup.example")
    assert data["outcome"] == "deferred"
    assert data["checks"]["fcrdns"] == "fail"
    assert data["reply"]["code"] == 450
    assert "192.0.2.10" in data["reply"]["text"]


def test_lab4_delisting_the_wrong_address_or_the_whole_block(open_lab: Open) -> None:
    session = open_lab("ip-reputation")
    step = task(session, "delist")
    apply_ok(session, "delist", {"dnsbl_delist": {"node": "dnsbl", "net": "192.0.2.10"}})
    wrong = session.check(step)
    assert not wrong.passed and wrong.hint == step.hints[0]
    assert any("dnsbl=listed, expected notlisted" in d for d in failed(wrong))
    # Delisting the spammer's whole block gets the mail through, but the
    # operator would never do that: the check sees the neighbour unlisted.
    apply_ok(session, "delist", {"dnsbl_delist": {"node": "dnsbl", "net": "192.0.2.192/26"}})
    whole = session.check(step)
    assert not whole.passed
    assert failed(whole) == [
        "no answer to 201.2.0.192.zen.dnsbl.example. A contains '127.0.0.2': no answer (NXDOMAIN)"
    ]


# -- lab 5: SPF ---------------------------------------------------------------------


def test_lab5_wrong_answers_get_their_feedback(open_lab: Open) -> None:
    session = open_lab("spf")
    same = session.answer("softer-all", "a")
    assert not same.correct and "softfail" in same.text
    header = session.answer("which-identity", "a")
    assert not header.correct and "MAIL FROM" in header.text


def test_lab5_undone_task_shows_the_first_hint(open_lab: Open) -> None:
    session = open_lab("spf")
    step = task(session, "publish-spf")
    outcome = session.check(step)
    assert not outcome.passed and outcome.hint == step.hints[0]
    assert "spf=none, expected pass" in failed(outcome)
    assert any(
        "the outcome was delivered" in d and "expected rejected" in d for d in failed(outcome)
    )


def test_lab5_softfail_all_files_the_forgery_as_junk(open_lab: Open) -> None:
    session = open_lab("spf")
    apply_ok(
        session,
        "publish-spf",
        {"dns_add": {"node": "ns", "zone": "bank.example", "record": '@ TXT "v=spf1 mx ~all"'}},
    )
    outcome = session.check("publish-spf")
    assert not outcome.passed
    wrong = failed(outcome)
    assert len(wrong) == 2
    assert (
        wrong[0].startswith("the outcome was junk (250 2.0.0") and "expected rejected" in wrong[0]
    )
    assert wrong[1] == "spf=softfail, expected fail"
    assert session.lab is not None
    junk = [m.subject for m in session.lab.mailbox("bob@qq.example", "Junk")]
    assert junk == ["Urgent - verify your account"]


def test_lab5_a_record_that_forgets_the_own_server_rejects_the_banks_mail(
    open_lab: Open,
) -> None:
    session = open_lab("spf")
    # `a` means the apex's A record, and bank.example has none at its apex.
    apply_ok(
        session,
        "publish-spf",
        {"dns_add": {"node": "ns", "zone": "bank.example", "record": '@ TXT "v=spf1 a -all"'}},
    )
    data = send(session, "mail-bank", "bob@qq.example", mail_from="ceo@bank.example")
    assert (data["outcome"], data["stage"]) == ("rejected", "rcpt")
    assert (data["reply"]["code"], data["reply"]["enhanced"]) == (550, "5.7.23")
    # Adding the right record next to it: two SPF records are a permerror,
    # which protects nothing (RFC 7208 §4.5).
    apply_ok(
        session,
        "publish-spf",
        {"dns_add": {"node": "ns", "zone": "bank.example", "record": '@ TXT "v=spf1 mx -all"'}},
    )
    spoof = send(session, "spoofer", "bob@qq.example", mail_from="ceo@bank.example")
    assert spoof["checks"]["spf"] == "permerror"
    assert spoof["outcome"] == "delivered"
    assert not session.check("publish-spf").passed


def test_lab5_moving_mx_first_fixes_the_shop_but_not_the_forgery(open_lab: Open) -> None:
    session = open_lab("spf")
    step = task(session, "fix-shop-spf")
    undone = session.check(step)
    assert not undone.passed and undone.hint == step.hints[0]
    assert "spf=permerror, expected pass" in failed(undone)
    apply_ok(
        session,
        "fix-shop-spf",
        {"dns_remove": {"node": "ns", "zone": "shop.example", "name": "@", "type": "TXT"}},
    )
    apply_ok(
        session,
        "fix-shop-spf",
        {
            "dns_add": {
                "node": "ns",
                "zone": "shop.example",
                "record": '@ TXT "v=spf1 mx include:_spf.crm.example include:_spf.news.example '
                'include:_spf.helpdesk.example ~all"',
            }
        },
    )
    half = session.check(step)
    assert not half.passed
    # The shop's own mail matches `mx` at once; the forger's address matches
    # nothing and runs into the limit, so it lands in the inbox.
    wrong = failed(half)
    assert len(wrong) == 2
    assert wrong[0].startswith("the outcome was delivered") and "expected junk" in wrong[0]
    assert wrong[1] == "spf=permerror, expected softfail"
    shop = send(session, "mail-shop", "bob@qq.example", mail_from="orders@shop.example")
    assert shop["checks"]["spf"] == "pass"
