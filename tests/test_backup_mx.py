"""The backup-MX scenario (issue 21): send to a chosen server, a backup MX
that accepts everything and relays it (RFC 5321 §5.1), a primary that
trusts its backup, the spoof that gets in that way, and both fixes; with a
catch-all alias and settling that waits for the bounce. On both backends."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

import sim
from sim.experiments.send import SendResult
from sim.lab.checks import evaluate
from sim.services.mxroute import MxRoute

TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "backup-mx.yaml"
SPOOF = {"mail_from": "ceo@corp.example", "from_header": "ceo@corp.example"}


@pytest.fixture(
    scope="module",
    params=["local", pytest.param("mininet", marks=pytest.mark.mininet)],
)
def lab(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sim.Lab]:
    # The catch-all on the primary: every unknown local part goes to bob.
    text = TOPOLOGY.read_text().replace(
        "        trusted_clients: [mx2]\n",
        '        trusted_clients: [mx2]\n        forward: {"*": bob@corp.example}\n',
    )
    path = tmp_path_factory.mktemp("backup") / "backup-mx.yaml"
    path.write_text(text)
    with sim.start(path, backend=request.param) as running:
        yield running


def _subject() -> str:
    return "wire money " + secrets.token_hex(3)


def _holds(name: str, value: object, result: SendResult) -> bool:
    """A lab file's predicate over the result, as ``maillab check`` evaluates it."""
    outcome = evaluate(name, value, result.to_json(), None)
    assert outcome.detail
    return outcome.passed


def _count(lab: sim.Lab, address: str, subject: str) -> int:
    return len([m for m in lab.mailbox(address) if subject in (m.subject or "")])


def test_the_primary_refuses_the_spoof(lab: sim.Lab) -> None:
    result = lab.send("spammer", "bob@corp.example", subject=_subject(), **SPOOF)
    assert result.outcome == "rejected"
    assert result.checks["dmarc"] == "fail"
    assert result.server is None
    assert not result.trace.of_kind("route")
    # The negative predicates: nothing arrived, no bounce, but SPF did run.
    assert _holds("not_delivered_to", "bob@corp.example", result)
    assert _holds("bounce", False, result)
    assert not _holds("bounce", True, result)
    assert not _holds("not_run", "spf", result)
    assert not _holds("not_run", {"checks": ["spf", "dmarc"], "node": "mx1"}, result)
    assert _holds("not_run", {"checks": "dmarc", "node": "mx2"}, result)
    assert _holds("trace_lacks", {"text": "straight to", "kind": "route"}, result)
    assert not _holds("trace_lacks", "dmarc", result)


def test_the_spoof_gets_in_through_the_trusted_backup(lab: sim.Lab) -> None:
    subject = _subject()
    result = lab.send(
        "spammer", "bob@corp.example", subject=subject, server="mx2", settle=True, **SPOOF
    )
    assert result.outcome == "delivered", result.recipients
    assert result.server == {
        "server": "mx2",
        "host": "mx2.backupco.example",
        "address": "192.0.2.40",
    }
    # No MX lookup for corp.example from the spammer: it connected to mx2.
    mx_queries = [
        e for e in result.trace.of_kind("dns") if e.node == "spammer" and e.data.get("type") == "MX"
    ]
    assert mx_queries == []
    [route] = [e for e in result.trace.of_kind("route") if e.node == "spammer"]
    assert route.data["mx_lookup"] is False and route.data["node"] == "mx2"
    # The backup queued it for the more preferred MX, never itself.
    handed = [e for e in result.trace.of_kind("delivery") if e.data.get("role") == "backup"]
    assert handed and handed[0].node == "mx2"
    attempts = [e for e in result.trace.of_kind("queue") if e.data.get("event") == "attempt"]
    assert attempts and {e.data["mx"] for e in attempts} == {"mx1.corp.example"}
    # The primary ran no check on its trusted backup's mail.
    trusted = [e for e in result.trace.of_kind("check") if e.data.get("check") == "trusted"]
    assert trusted and trusted[0].node == "mx1"
    assert not [
        e
        for e in result.trace.of_kind("check")
        if e.node == "mx1" and e.data.get("check") in ("spf", "dmarc")
    ]
    assert _count(lab, "bob@corp.example", subject) == 1
    assert _holds("not_run", {"checks": ["spf", "dmarc"], "node": "mx1"}, result)
    assert not _holds("not_delivered_to", ["nobody@corp.example", "bob@corp.example"], result)
    assert not _holds("trace_lacks", {"text": "straight to", "kind": "route"}, result)
    assert _holds(
        "trace_lacks", {"text": "192.0.2.150 asked 198.51.100.53 MX", "kind": "dns"}, result
    )
    assert not _holds(
        "trace_lacks", {"text": "192.0.2.40 asked 198.51.100.53 MX", "kind": "dns"}, result
    )
    assert _holds("bounce", False, result)


def test_server_by_address(lab: sim.Lab) -> None:
    result = lab.send("spammer", "bob@corp.example", subject=_subject(), server="192.0.2.40")
    assert result.server is not None and result.server["host"] == "mx2.backupco.example"
    assert result.outcome == "delivered"


def test_catch_all_delivers_unknown_local_parts(lab: sim.Lab) -> None:
    subject = _subject()
    result = lab.send("mx2", "nobody@corp.example", mail_from="x@backupco.example", subject=subject)
    assert result.outcome == "delivered", result.recipients
    [stored] = [m for m in lab.mailbox("bob@corp.example") if m.subject == subject]
    assert stored.header("Delivered-To") == ["nobody@corp.example"]


def test_fix_the_primary_stops_trusting_the_backup(lab: sim.Lab) -> None:
    lab.control("mx1", "mx", "trusted_clients", clients=[])
    try:
        subject = _subject()
        before = len(lab.mailbox("ceo@corp.example"))
        result = lab.send(
            "spammer", "bob@corp.example", subject=subject, server="mx2", settle=True, **SPOOF
        )
        # The backup accepted it, the primary refused it, the backup bounced
        # it: a bounce to the forged sender (backscatter), already written
        # when the send returns (settle includes the consequences).
        assert result.outcome == "bounced", result.recipients
        assert result.reply is not None and result.reply["enhanced"] == "5.7.26"
        assert _count(lab, "bob@corp.example", subject) == 0
        assert len(lab.mailbox("ceo@corp.example")) == before + 1
        # A mail client reading right after the send sees the bounce too.
        read = lab.read("spammer", "ceo", "ceo-secret", via="mx1", peek=True)
        assert read.error is None and len(read.messages) == before + 1
        assert _holds("bounce", True, result)
        assert not _holds("bounce", False, result)
        assert _holds("not_delivered_to", "bob@corp.example", result)
        assert not _holds("not_run", {"checks": "dmarc", "node": "mx1"}, result)
    finally:
        lab.control("mx1", "mx", "trusted_clients", clients=["mx2"])


def test_fix_the_backup_checks_too(lab: sim.Lab) -> None:
    lab.control("mx2", "mx", "set_check", check="spf", action="header")
    lab.control("mx2", "mx", "set_check", check="dmarc", action="policy")
    try:
        subject = _subject()
        result = lab.send(
            "spammer", "bob@corp.example", subject=subject, server="mx2", settle=True, **SPOOF
        )
        assert result.outcome == "rejected"
        assert result.stage == "data"
        assert result.reply is not None and result.reply["enhanced"] == "5.7.26"
        assert _count(lab, "bob@corp.example", subject) == 0
    finally:
        lab.control("mx2", "mx", "set_check", check="spf", action="off")
        lab.control("mx2", "mx", "set_check", check="dmarc", action="off")


# -- without a running lab --------------------------------------------------


def test_a_route_seen_from_a_backup_keeps_only_the_more_preferred() -> None:
    route = MxRoute(hosts=("mx1.a", "mx2.b", "mx3.c"), preferences=(10, 20, 30))
    assert route.below({"mx2.b"}).hosts == ("mx1.a",)
    assert route.below({"mx1.a"}).hosts == ()
    assert route.below({"other"}) is route
    tie = MxRoute(hosts=("a", "b"), preferences=(10, 10))
    assert tie.below({"b"}).hosts == ()


def _problems(text: str) -> list[str]:
    from sim.topology import validate_topology_text

    return [p.message for p in validate_topology_text(text, "backup-mx.yaml")]


def test_shipped_topology_is_valid() -> None:
    assert _problems(TOPOLOGY.read_text()) == []


def test_a_backup_without_a_relay_is_an_error() -> None:
    text = TOPOLOGY.read_text().replace(
        "      relay:\n        hostname: mx2.backupco.example\n"
        "        retry: [5m, 30m, 2h]\n        give_up: 1d\n",
        "",
    )
    assert any("backup MX" in p and "relay" in p for p in _problems(text))


def test_an_unknown_trusted_client_is_an_error() -> None:
    text = TOPOLOGY.read_text().replace("trusted_clients: [mx2]", "trusted_clients: [mx3]")
    assert any("trusted client 'mx3'" in p and "mx2" in p for p in _problems(text))


def test_an_mx_target_without_its_final_dot_says_so() -> None:
    text = TOPOLOGY.read_text().replace("mx2.backupco.example.\n", "mx2.backupco.example\n")
    found = [p for p in _problems(text) if "mx2.backupco.example.corp.example" in p]
    assert found and "final dot" in found[0] and "`mx2.backupco.example.`" in found[0]


def test_an_alias_target_must_be_an_address() -> None:
    text = TOPOLOGY.read_text().replace(
        "        trusted_clients: [mx2]\n",
        '        trusted_clients: [mx2]\n        forward: {"*": bob}\n',
    )
    assert any("a target is a mail address" in p for p in _problems(text)) or any(
        "mail address" in p for p in _problems(text)
    )


LAB = """\
id: backup
title: Backup
topology: {topology}
estimated_time: 5m
goals: [Say what became of a message]
steps:
  - id: s
    kind: experiment
    title: Send to the backup
    text: Send to the backup.
    run: {{send: {{from: spammer, to: bob@corp.example, {extra}}}}}
    expect: [{{outcome: delivered}}, {{not_run: {{checks: [spf], node: mx1}}}}, {{bounce: false}}]
"""


def _lab_problems(tmp_path: Path, extra: str) -> list[str]:
    from sim.lab.loader import validate_lab_file

    path = tmp_path / "backup.yaml"
    path.write_text(LAB.format(topology=TOPOLOGY, extra=extra))
    return [p.message for p in validate_lab_file(path, curriculum=False)]


def test_a_lab_file_sends_to_a_chosen_server(tmp_path: Path) -> None:
    assert _lab_problems(tmp_path, "server: mx2") == []
    assert _lab_problems(tmp_path, "server: 192.0.2.40") == []
    [unknown] = _lab_problems(tmp_path, "server: mx3")
    assert "mx3" in unknown and "mx2" in unknown
    [no_mx] = _lab_problems(tmp_path, "server: ns")
    assert "runs no mx service" in no_mx
    both = _lab_problems(tmp_path, "server: mx2, via: mx2")
    assert any("leave out `via`" in p for p in both)


def test_cli_send_to_a_chosen_server(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from sim.cli import main

    code = main(
        [
            "send",
            str(TOPOLOGY),
            "--from",
            "spammer",
            "--to",
            "bob@corp.example",
            "--mail-from",
            "ceo@corp.example",
            "--server",
            "mx2",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["outcome"] == "delivered"
    assert out["server"]["host"] == "mx2.backupco.example"
    assert any(e["kind"] == "route" for e in out["trace"])


def test_graph_shows_aliases_backup_and_trust(tmp_path: Path) -> None:
    from sim.graphdraw import describe_services
    from sim.topology import load_topology

    text = TOPOLOGY.read_text().replace(
        "        trusted_clients: [mx2]\n",
        "        trusted_clients: [mx2]\n"
        '        forward: {"*": bob@corp.example, boss: ceo@corp.example}\n',
    )
    path = tmp_path / "backup-mx.yaml"
    path.write_text(text)
    topology = load_topology(path)
    mx1 = " ".join(describe_services(topology.node("mx1"), topology))
    assert "forwards * (catch-all) → bob@corp.example, boss → ceo@corp.example" in mx1
    assert "trusts mx2" in mx1
    short = describe_services(topology.node("mx1"), topology, short=True)
    assert "alias boss → ceo@corp.example" in short
    mx2 = " ".join(describe_services(topology.node("mx2"), topology))
    assert "backup MX" in mx2


@pytest.mark.parametrize("word", ["relay_to", "redirect", "aliases"])
def test_an_unknown_key_points_at_forward_by_meaning(word: str) -> None:
    text = TOPOLOGY.read_text().replace(
        "        trusted_clients: [mx2]\n",
        f"        trusted_clients: [mx2]\n        {word}: {{bob: ceo@corp.example}}\n",
    )
    [problem] = _problems(text)
    assert f"unknown key {word!r}" in problem
    assert "did you mean 'forward'" in problem


def test_a_typo_still_gets_the_spelling_suggestion() -> None:
    text = TOPOLOGY.read_text().replace("trusted_clients: [mx2]", "trusted_client: [mx2]")
    [problem] = _problems(text)
    assert "did you mean 'trusted_clients'" in problem


LAB_FILE = Path(__file__).resolve().parent / "fixtures" / "labs" / "good" / "backup-mx.yaml"


@pytest.mark.parametrize("backend", ["local", pytest.param("mininet", marks=pytest.mark.mininet)])
def test_the_scenario_as_a_lab_passes_maillab_check(
    backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from sim.cli import main

    code = main(["check", str(LAB_FILE), "--backend", backend, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    steps = {s["id"]: s for s in out["labs"][0]["steps"]}
    assert "no spf or dmarc check ran at mx1" in steps["back"]["detail"]
    assert "a bounce was written" in steps["fix"]["detail"]


def test_the_tui_experiment_line_takes_a_server() -> None:
    from sim.topology import load_topology
    from sim.tui.experiment_box import parse_experiment

    topology = load_topology(TOPOLOGY)
    run, problem = parse_experiment("send spammer bob@corp.example server=mx2", topology)
    assert problem is None and run is not None and run.server == "mx2"
    _, problem = parse_experiment("send spammer bob@corp.example server=ns", topology)
    assert problem is not None and "not an mx node" in problem
    _, problem = parse_experiment("send spammer bob@corp.example server=mx2 via=mx2", topology)
    assert problem is not None and "leave out via" in problem


def test_a_backup_that_is_the_best_mx_says_the_mail_loops(tmp_path: Path) -> None:
    """RFC 5321 §5.1: the backup discards itself and every less preferred
    MX; with nothing left it must not send the mail to itself (Postfix:
    "mail for DOMAIN loops back to myself")."""
    with sim.start(TOPOLOGY, state_dir=tmp_path) as lab:
        # "Delete the primary's MX record" (a lab task's wrong fix): the
        # backup is then the best MX left.
        lab.control(
            "ns",
            "dns",
            "remove",
            zone="corp.example",
            name="@",
            rtype="MX",
            data="10 mx1.corp.example.",
        )
        result = lab.send("spammer", "bob@corp.example", server="mx2", settle=True)
    assert result.outcome == "bounced"
    assert result.reply is not None and result.reply["enhanced"] == "5.4.6"
    assert "loops back to myself" in result.reply["text"]
    attempts = [
        e
        for e in result.trace.of_kind("queue")
        if e.data.get("event") == "attempt" and "bob@corp.example" in e.data.get("rcpts", [])
    ]
    assert attempts == []


def test_a_catch_all_to_an_unknown_local_part_of_its_own_domain_is_an_error() -> None:
    text = TOPOLOGY.read_text().replace(
        "        trusted_clients: [mx2]\n",
        '        trusted_clients: [mx2]\n        forward: {"*": nobody@corp.example}\n',
    )
    assert any("'nobody' is neither a mailbox nor an alias" in p for p in _problems(text))


def test_a_mail_loop_is_stopped_by_counting_received_fields(tmp_path: Path) -> None:
    def message(hops: int) -> str:
        trace = "".join(
            f"Received: from hop{i}.example by hop{i + 1}.example\n" for i in range(hops)
        )
        return f"{trace}From: a@evil.example\nTo: bob@corp.example\nSubject: loop\n\nround\n"

    with sim.start(TOPOLOGY, state_dir=tmp_path) as lab:
        looped = lab.send(
            "mx2", "bob@corp.example", mail_from="a@evil.example", message=message(100)
        )
        fine = lab.send("mx2", "bob@corp.example", mail_from="a@evil.example", message=message(99))
    assert looped.outcome == "rejected" and looped.stage == "data"
    assert looped.reply is not None and looped.reply["enhanced"] == "5.4.6"
    assert "too many hops (100" in looped.reply["text"]
    assert fine.outcome == "delivered", fine.reply


def test_the_tui_headline_says_where_the_send_went() -> None:
    from sim.tui.tracefmt import headline

    data = {
        "outcome": "delivered",
        "reply": {"code": 250, "enhanced": "2.0.0", "text": "Ok"},
        "server": {"server": "mx2", "host": "mx2.backupco.example", "address": "192.0.2.40"},
        "trace": [],
    }
    assert "sent straight to mx2.backupco.example [192.0.2.40]" in headline(data).plain
    assert "sent straight" not in headline({**data, "server": None}).plain


def test_a_backup_the_mx_records_do_not_name_is_an_error() -> None:
    text = TOPOLOGY.read_text().replace("    @        MX   20 mx2.backupco.example.\n", "")
    assert any(
        "no MX record of corp.example names mx2.backupco.example" in p for p in _problems(text)
    )


def test_a_backup_that_is_the_most_preferred_mx_is_an_error() -> None:
    text = TOPOLOGY.read_text().replace(
        "MX   20 mx2.backupco.example.", "MX   5 mx2.backupco.example."
    )
    assert any("is its most preferred MX (preference 5)" in p for p in _problems(text))
