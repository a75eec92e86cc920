"""The POP3 server (sim.services.pop3) against poplib and raw sockets.

One lab for the module (``mdarig``); each test starts from empty mailboxes.
What counts is the protocol's answer (+OK/-ERR with RFC 2449 response
codes) and the Maildir afterwards: RETR+QUIT moves a file from new/ to cur/
with the S flag, DELE+QUIT deletes it, a session without QUIT changes nothing.
"""

from __future__ import annotations

import poplib
import time
from collections.abc import Iterator

import pytest
from mdarig import BOB, BOB_PW, Raw, ca_context, clear, deliver, files, local, start_lab

from sim.hosting.runtime import Lab


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with start_lab() as running:
        yield running


@pytest.fixture(autouse=True)
def empty(lab: Lab) -> None:
    clear(lab, BOB)


def connect(lab: Lab, *, login: bool = True) -> poplib.POP3:
    host, port = local(lab, 110)
    client = poplib.POP3(host, port, timeout=5)
    client.stls(ca_context(lab))
    if login:
        client.user(BOB)
        client.pass_(BOB_PW)
    return client


def wait_for(condition: object, seconds: float = 5.0) -> None:
    """The server applies QUIT's changes a moment after the client hears +OK."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not condition():
        time.sleep(0.02)


# -- TLS and login ------------------------------------------------------------------


def test_capabilities_before_and_after_stls(lab: Lab) -> None:
    host, port = local(lab, 110)
    client = poplib.POP3(host, port, timeout=5)
    before = client.capa()
    assert "STLS" in before and "USER" not in before
    assert {"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE"} <= set(before)
    client.stls(ca_context(lab))
    after = client.capa()
    assert "USER" in after and "STLS" not in after
    client.quit()


def test_user_and_pass_before_stls_are_refused(lab: Lab) -> None:
    raw = Raw(local(lab, 110))
    assert raw.line().startswith("+OK")
    raw.send(b"USER bob\r\n")
    assert raw.line().startswith("-ERR [AUTH] Plaintext authentication disallowed")
    raw.send(b"PASS bob-secret\r\n")
    assert raw.line().startswith("-ERR [AUTH] Plaintext authentication disallowed")
    raw.send(b"STAT\r\n")
    assert raw.line() == "-ERR Log in first (USER and PASS)."
    raw.send(b"QUIT\r\n")
    assert raw.line().startswith("+OK")
    raw.close()


def test_wrong_password(lab: Lab) -> None:
    client = connect(lab, login=False)
    client.user(BOB)
    with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\] Authentication failed"):
        client.pass_("wrong")
    client.user("bob@qq.example")  # USER again, then the right password
    assert client.pass_(BOB_PW).startswith(b"+OK")
    client.quit()


def test_pass_without_user(lab: Lab) -> None:
    client = connect(lab, login=False)
    with pytest.raises(poplib.error_proto, match="USER first"):
        client.pass_(BOB_PW)
    client.quit()


def test_implicit_tls_on_995(lab: Lab) -> None:
    deliver(lab, "over pop3s")
    host, port = local(lab, 995)
    client = poplib.POP3_SSL(host, port, context=ca_context(lab), timeout=5)
    assert "STLS" not in client.capa()
    client.user(BOB)
    client.pass_(BOB_PW)
    assert client.stat()[0] == 1
    client.quit()


# -- the maildrop ----------------------------------------------------------------------


def test_stat_list_uidl_top_retr(lab: Lab) -> None:
    first = deliver(lab, "first", body="one\ntwo\nthree\n")
    second = deliver(lab, "second", body=".starts with a dot\n..two dots\n")
    client = connect(lab)
    count, octets = client.stat()
    _, listing, _ = client.list()
    sizes = [int(line.split()[1]) for line in listing]
    assert count == 2 and octets == sum(sizes)
    _, uidl, _ = client.uidl()
    # RFC 1939 §7: the unique-id is the Maildir key (the file name, without flags).
    assert uidl == [f"1 {first}".encode(), f"2 {second}".encode()]
    assert client.uidl(2) == f"+OK 2 {second}".encode()
    _, top, _ = client.top(1, 1)
    assert b"Subject: first" in top and top[-1] == b"one" and b"two" not in top
    _, lines, _ = client.retr(2)
    # poplib undoes the byte-stuffing: the lines are the message's own.
    assert lines[-2:] == [b".starts with a dot", b"..two dots"]
    assert sum(len(line) + 2 for line in lines) == sizes[1]
    client.quit()


def test_retr_then_quit_marks_read_and_without_quit_nothing_changes(lab: Lab) -> None:
    read, unread = deliver(lab, "read me"), deliver(lab, "leave me")
    # A session that retrieves and then just goes away changes nothing (RFC 1939 §6).
    client = connect(lab)
    client.retr(1)
    client.close()
    time.sleep(0.1)
    assert files(lab) == {"new": sorted([read, unread]), "cur": []}
    client = connect(lab)  # the maildrop lock went with the dropped session
    client.retr(1)
    assert client.quit().startswith(b"+OK")
    wait_for(lambda: files(lab)["cur"])
    assert files(lab) == {"new": [unread], "cur": [f"{read}:2,S"]}


def test_dele_rset_and_update_state(lab: Lab) -> None:
    keys = [deliver(lab, f"m{i}") for i in range(3)]
    client = connect(lab)
    client.dele(1)
    with pytest.raises(poplib.error_proto, match="deleted"):
        client.retr(1)
    assert client.stat()[0] == 2  # deleted messages no longer count
    client.rset()
    assert client.stat()[0] == 3
    client.dele(2)
    client.dele(3)
    assert client.quit() == b"+OK Logging out, 2 message(s) deleted."
    wait_for(lambda: len(files(lab)["new"]) == 1)
    assert files(lab) == {"new": [keys[0]], "cur": []}


def test_a_second_session_finds_the_maildrop_locked(lab: Lab) -> None:
    deliver(lab, "locked")
    first = connect(lab)
    second = connect(lab, login=False)
    second.user(BOB)
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):  # RFC 2449 §8.1.2
        second.pass_(BOB_PW)
    first.quit()
    time.sleep(0.05)
    second.user(BOB)
    assert second.pass_(BOB_PW).startswith(b"+OK")
    second.quit()


# -- bad input ----------------------------------------------------------------------------


def test_malformed_commands_get_err_and_the_server_keeps_serving(lab: Lab) -> None:
    deliver(lab, "x")
    raw = Raw(local(lab, 110))
    raw.line()
    for command, expected in [
        (b"\r\n", "-ERR Empty command"),
        (b"FROB\r\n", "-ERR Unknown command"),
        (b"APOP bob 0123\r\n", "-ERR APOP is not supported"),
        (b"USER " + b"x" * 400 + b"\r\n", "-ERR Line too long"),
        (b"CA\x00PA\r\n", "-ERR NUL"),
        (b"\xff\xfe\r\n", "-ERR Command is not valid UTF-8"),
    ]:
        raw.send(command)
        assert raw.line().startswith(expected), command[:30]
    raw.send(b"STLS\r\n")
    assert raw.line() == "+OK Begin TLS negotiation now."
    raw.starttls(ca_context(lab, check_hostname=True))
    raw.send(b"USER bob\r\nPASS bob-secret\r\n")
    assert raw.line() == "+OK"
    assert raw.line().startswith("+OK Logged in: 1 messages")
    for command, expected in [
        (b"RETR\r\n", "-ERR Invalid message number"),
        (b"RETR abc\r\n", "-ERR Invalid message number"),
        (b"RETR 99\r\n", "-ERR There is no such message"),
        (b"RETR 0\r\n", "-ERR There is no such message"),
        (b"TOP 1\r\n", "-ERR Usage: TOP"),
        (b"STLS\r\n", "-ERR Already logged in"),
        (b"USER bob\r\n", "-ERR Already logged in"),
    ]:
        raw.send(command)
        assert raw.line().startswith(expected), command
    raw.send(b"NOOP\r\n")
    assert raw.line() == "+OK"
    raw.close()


def test_plaintext_pipelined_after_stls_is_discarded(lab: Lab) -> None:
    # RFC 2595 §3.1: what came in clear text after STLS must not count.
    raw = Raw(local(lab, 110))
    raw.line()
    raw.send(b"STLS\r\nUSER bob\r\n")
    assert raw.line() == "+OK Begin TLS negotiation now."
    raw.starttls(ca_context(lab, check_hostname=True))
    raw.send(b"PASS bob-secret\r\n")
    assert raw.line() == "-ERR No user name given: USER first."
    raw.close()


def test_client_disconnecting_mid_command(lab: Lab) -> None:
    key = deliver(lab, "still here")
    raw = Raw(local(lab, 110))
    raw.line()
    raw.send(b"STL")  # half a command, then gone
    raw.close()
    client = connect(lab)
    client.dele(1)
    client.sock.sendall(b"QU")  # QUIT never completed: no UPDATE state
    client.close()
    time.sleep(0.1)
    assert files(lab)["new"] == [key]
    client = connect(lab)  # serving, and the lock is free again
    assert client.stat()[0] == 1
    client.quit()
