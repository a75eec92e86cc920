"""The ``read`` experiment (sim.experiments.read): the last hop, read as a mail client would.

Mail goes in with ``lab.send`` (the MX stores it in the Maildir), and comes
out with ``lab.read`` from the ``client`` node over IMAP or POP3. The
assertions are on the structured result (messages, stage, reply codes), the
trace (the client's dialogue, TLS, the MDA's file moves) and the Maildir.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path

import pytest
from mdarig import BOB, BOB_PW, CAROL, CAROL_PW, MAIL, TOPOLOGY, clear, deliver, files, start_lab

import sim
from sim.cli import main
from sim.errors import SimError
from sim.experiments.read import Read, ReadResult
from sim.hosting.runtime import Lab
from sim.topology.model import FirewallRule


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with start_lab() as running:
        yield running


@pytest.fixture(autouse=True)
def empty(lab: Lab) -> None:
    clear(lab, BOB)
    clear(lab, CAROL)


def send(lab: Lab, subject: str, node: str = "client", rcpt: str = "bob@qq.example") -> None:
    sent = lab.send(node, rcpt, mail_from=f"{node}@good.example", subject=subject)
    assert sent.outcome in ("delivered", "junk"), sent.to_json()


def events(result: ReadResult, kind: str) -> list[dict[str, object]]:
    return [e.data for e in result.trace.of_kind(kind)]


def test_read_over_imap_after_send(lab: Lab) -> None:
    send(lab, "over the whole path")
    result = lab.read("client", BOB, BOB_PW, via=MAIL)
    assert result.ok and result.error is None and result.stage is None
    assert result.protocol == "imap" and result.server == "203.0.113.25:143"
    [msg] = result.messages
    assert msg["subject"] == "over the whole path" and msg["from"] == "client@good.example"
    assert msg["uid"] == 1 and "\\Seen" in msg["flags"] and msg["size"] > 0
    names = [name for name, _ in msg["headers"]]
    # The MDA side of lab 10: final delivery added Return-Path and Delivered-To.
    assert names[:2] == ["Return-Path", "Delivered-To"] and "Received" in names
    # Reading it the way a client opens it marked it read in the Maildir.
    [name] = files(lab)["cur"]
    assert name.endswith(":2,S") and files(lab)["new"] == []


def test_the_trace_shows_the_dialogue_tls_and_the_mda(lab: Lab) -> None:
    send(lab, "traced")
    result = lab.read("client", BOB, BOB_PW, via=MAIL)
    imap = events(result, "imap")
    assert all(e["role"] == "client" for e in imap)
    commands = [str(e["command"]).split(" ", 1)[-1] for e in imap if e["command"]]
    assert commands[:4] == ["CAPABILITY", "STARTTLS", "CAPABILITY", f"LOGIN {BOB} ********"]
    assert commands[-1] == "LOGOUT" and any(c.startswith("UID FETCH") for c in commands)
    login = next(e for e in imap if "LOGIN" in str(e["command"]))
    assert login["status"] == "OK"
    # STARTTLS happened before the password, and the certificate was checked.
    [tls] = events(result, "tls")
    assert tls["verified"] is True and tls["server_name"] == "mx.qq.example"
    order = [
        e.kind if e.kind == "tls" else str(e.data["command"]).split(" ")[-3:][0]
        for e in result.trace
        if e.kind in ("tls", "imap")
    ]
    assert order.index("tls") < order.index("LOGIN")
    mda = events(result, "mailbox")
    assert {"login", "moved"} <= {e["event"] for e in mda}
    moved = [e for e in mda if e["event"] == "moved"]
    assert moved[0]["path"].startswith("bob/new/") and moved[-1]["to"].endswith(":2,S")
    assert BOB_PW not in json.dumps(result.to_json())  # the password never shows


def test_peek_leaves_the_maildir_alone(lab: Lab) -> None:
    send(lab, "just looking")
    before = files(lab)
    result = lab.read("client", BOB, BOB_PW, via=MAIL, peek=True)
    assert [m["subject"] for m in result.messages] == ["just looking"]
    assert "\\Seen" not in result.messages[0]["flags"]
    assert files(lab) == before and before["cur"] == []


def test_read_over_pop3(lab: Lab) -> None:
    send(lab, "by pop")
    send(lab, "by pop again")
    result = lab.read("client", BOB, BOB_PW, via=MAIL, protocol="pop3")
    assert result.ok, result.to_json()
    assert [m["subject"] for m in result.messages] == ["by pop", "by pop again"]
    stored = files(lab)
    # POP3's unique ids are the Maildir keys (the order is arrival, checked
    # above; file names need not sort that way: M95732 comes after M114406).
    assert sorted(m["uid"] for m in result.messages) == [n.split(":")[0] for n in stored["cur"]]
    assert all(n.endswith(":2,S") for n in stored["cur"]) and stored["new"] == []
    commands = [e["command"] for e in events(result, "pop3") if e["command"]]
    assert commands[:4] == ["CAPA", "STLS", f"USER {BOB}", "PASS ********"]
    assert commands[-1] == "QUIT" and "RETR 2" in commands
    assert events(result, "tls")[0]["version"].startswith("TLS")


@pytest.mark.parametrize(("protocol", "port"), [("imap", 993), ("pop3", 995)])
def test_implicit_tls_ports(lab: Lab, protocol: str, port: int) -> None:
    send(lab, f"over {port}")
    result = lab.read("client", BOB, BOB_PW, via=MAIL, protocol=protocol, port=port)
    assert result.ok and result.server.endswith(f":{port}")
    assert result.messages[0]["subject"] == f"over {port}"
    assert not any(
        "STARTTLS" in str(e["command"]) or e["command"] == "STLS" for e in events(result, protocol)
    )


@pytest.mark.parametrize(
    ("protocol", "status", "code"),
    [("imap", "NO", "PRIVACYREQUIRED"), ("pop3", "-ERR", "AUTH")],
)
def test_password_before_tls_is_refused(lab: Lab, protocol: str, status: str, code: str) -> None:
    result = lab.read("client", BOB, BOB_PW, via=MAIL, protocol=protocol, tls=False)
    assert not result.ok and result.stage == "login"
    assert result.reply is not None
    assert (result.reply["status"], result.reply["code"]) == (status, code)
    assert result.tls is None and not events(result, "tls")
    assert "login refused" in (result.error or "")


@pytest.mark.parametrize(
    ("protocol", "status", "code"),
    [("imap", "NO", "AUTHENTICATIONFAILED"), ("pop3", "-ERR", "AUTH")],
)
def test_wrong_password(lab: Lab, protocol: str, status: str, code: str) -> None:
    result = lab.read("client", BOB, "guess", via=MAIL, protocol=protocol)
    assert result.stage == "login" and result.reply is not None
    assert (result.reply["status"], result.reply["code"]) == (status, code)
    assert result.tls is not None  # it failed after TLS, at the password
    mda = events(result, "mailbox")
    assert any(e["event"] == "login_failed" for e in mda)
    assert "guess" not in json.dumps(result.to_json())


def test_the_junk_folder(lab: Lab) -> None:
    send(lab, "honest")
    # The spoofer sends as good.example from an address its SPF does not
    # list: the MX files it as junk.
    send(lab, "prize!", node="spoofer")
    inbox = lab.read("client", BOB, BOB_PW, via=MAIL)
    junk = lab.read("client", BOB, BOB_PW, via=MAIL, folder="Junk")
    assert [m["subject"] for m in inbox.messages] == ["honest"]
    assert [m["subject"] for m in junk.messages] == ["prize!"]
    assert any(
        "spf=fail" in value
        for name, value in junk.messages[0]["headers"]
        if name == "Authentication-Results"
    )
    assert files(lab, folder="Junk")["cur"][0].endswith(":2,S")


def test_a_folder_that_does_not_exist(lab: Lab) -> None:
    result = lab.read("client", BOB, BOB_PW, via=MAIL, folder="Archive")
    assert result.stage == "select" and result.reply is not None
    assert result.reply["code"] == "NONEXISTENT"


def test_each_user_reads_their_own_mailbox(lab: Lab) -> None:
    send(lab, "for carol", rcpt="carol@qq.example")
    assert lab.read("client", BOB, BOB_PW, via=MAIL).messages == []
    carol = lab.read("client", "carol@qq.example", CAROL_PW, via=MAIL)
    assert [m["subject"] for m in carol.messages] == ["for carol"]


def test_via_a_host_name_in_the_lab_dns(lab: Lab) -> None:
    deliver(lab, "by name")
    result = lab.read("client", BOB, BOB_PW, via="imap.qq.example", peek=True)
    assert result.ok and result.hostname == "imap.qq.example"
    assert any(e["name"] == "imap.qq.example." for e in events(result, "dns"))
    # mail.qq.example points at the same host, but the certificate does not
    # carry that name: the client stops before it sends the password.
    result = lab.read("client", BOB, BOB_PW, via="mail.qq.example")
    assert result.stage == "starttls" and "certificate" in (result.error or "")
    assert not any("LOGIN" in str(e["command"]) for e in events(result, "imap"))


def test_a_firewall_in_the_way(lab: Lab) -> None:
    lab.set_firewall(
        "internet",
        [
            FirewallRule(
                "reject",
                proto="tcp",
                dport=(143, 143),
                src=IPv4Network("192.0.2.0/24"),
                note="no IMAP from the client network",
            )
        ],
    )
    try:
        result = lab.read("client", BOB, BOB_PW, via=MAIL)
    finally:
        lab.set_firewall("internet", [])
    assert result.stage == "connect" and result.error and result.error.startswith("blocked")
    assert result.verdict is not None and result.verdict["router"] == "internet"
    assert lab.read("client", BOB, BOB_PW, via=MAIL).ok


def test_bad_requests_are_one_clear_error() -> None:
    with pytest.raises(SimError, match="imap or pop3"):
        Read(via=MAIL, user=BOB, password=BOB_PW, protocol="smtp")
    with pytest.raises(SimError, match="POP3 has no folders"):
        Read(via=MAIL, user=BOB, password=BOB_PW, protocol="pop3", folder="Junk")
    with pytest.raises(SimError, match="TLS from the first byte"):
        Read(via=MAIL, user=BOB, password=BOB_PW, port=993, tls=False)


def test_result_json_shape(lab: Lab) -> None:
    send(lab, "json")
    data = lab.read("client", BOB, BOB_PW, via=MAIL).to_json()
    json.dumps(data)
    assert {"protocol", "folder", "messages", "error", "stage", "reply", "trace"} <= set(data)
    assert {"uid", "subject", "from", "size", "flags", "headers"} <= set(data["messages"][0])


def test_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    with sim.start(sim.load_topology(TOPOLOGY), state_dir=state) as lab:
        send(lab, "kept in the state dir")
    common = [
        "read",
        str(TOPOLOGY),
        "--from",
        "client",
        "--via",
        MAIL,
        "--user",
        BOB,
        "--state-dir",
        str(state),
    ]
    assert main([*common, "--password", BOB_PW, "--json", "--peek"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [m["subject"] for m in out["messages"]] == ["kept in the state dir"]
    assert main([*common, "--password", BOB_PW, "--protocol", "pop3"]) == 0
    text = capsys.readouterr().out
    assert "1 message(s)" in text and "kept in the state dir" in text and "POP3" in text
    assert main([*common, "--password", "nope"]) == 1
    assert "failed at login" in capsys.readouterr().out
    assert main([*common, "--password", BOB_PW, "--protocol", "pop3", "--folder", "Junk"]) == 2
    assert "POP3 has no folders" in capsys.readouterr().err


def test_the_service_reports_its_mailboxes(lab: Lab) -> None:
    deliver(lab, "counted")
    deliver(lab, "junk counted", folder="Junk")
    status = lab.control(MAIL, "mailbox", "status")
    assert status["hostname"] == "mx.qq.example"
    assert status["users"][BOB] == {"INBOX": 1, "Junk": 1}
    with pytest.raises(SimError, match="no control command"):
        lab.control(MAIL, "mailbox", "frobnicate")
