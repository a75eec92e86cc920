"""The IMAP server (sim.services.imap) against real clients: imaplib and raw sockets.

One lab for the module (``mdarig``); each test starts from empty mailboxes
and stores its own messages with the MX's Maildir code. Assertions look at
protocol replies and at the Maildir on disk: where each file is and what
its name says.
"""

from __future__ import annotations

import imaplib
import re
import time
from collections.abc import Iterator

import pytest
from mdarig import (
    BOB,
    BOB_PW,
    CAROL,
    Raw,
    ca_context,
    clear,
    deliver,
    files,
    local,
    start_lab,
)

from sim.hosting.runtime import Lab
from sim.services.imap import Atom, Reply, Str, parse_sequence_set, tokenize


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with start_lab() as running:
        yield running


@pytest.fixture(autouse=True)
def empty(lab: Lab) -> None:
    clear(lab, BOB)
    clear(lab, CAROL)


def connect(lab: Lab, *, login: bool = True) -> imaplib.IMAP4:
    host, port = local(lab, 143)
    client = imaplib.IMAP4(host, port, timeout=5)
    client.starttls(ca_context(lab))
    if login:
        client.login(BOB, BOB_PW)
    return client


def fetch_meta(client: imaplib.IMAP4, what: str, items: str, uid: bool = False) -> list[str]:
    typ, data = client.uid("FETCH", what, items) if uid else client.fetch(what, items)
    assert typ == "OK", data
    out = []
    for item in data:
        if isinstance(item, tuple):
            out.append(item[0].decode())
        elif isinstance(item, bytes) and item != b")":
            out.append(item.decode())
    return out


def flags(client: imaplib.IMAP4, seq: str = "1:*") -> list[str]:
    return [re.search(r"FLAGS \(([^)]*)\)", m).group(1) for m in fetch_meta(client, seq, "(FLAGS)")]


# -- pure parsing -----------------------------------------------------------------


def test_tokenizer_keeps_sections_whole_and_reads_strings() -> None:
    tokens = tokenize(['1:* (UID BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]<0.100>) "a \\"b\\""'])
    assert tokens == ["1:*", ["UID", "BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]<0.100>"], 'a "b"']
    assert isinstance(tokens[0], Atom) and isinstance(tokens[2], Str)
    assert tokenize(["LOGIN bob ", b"p w\x20d"]) == ["LOGIN", "bob", "p w d"]
    for bad in ['"open', "(a (b)", "a)"]:
        with pytest.raises(Reply) as err:
            tokenize([bad])
        assert err.value.status == "BAD"


def test_sequence_sets() -> None:
    assert parse_sequence_set("1,3:5,7:*") == [(1, 1), (3, 5), (7, None)]
    assert parse_sequence_set("*") == [(None, None)]
    for bad in ("0", "1:", "a", "1::2", ""):
        with pytest.raises(Reply):
            parse_sequence_set(bad)


# -- TLS and login ------------------------------------------------------------------


def test_starttls_changes_the_capabilities(lab: Lab) -> None:
    host, port = local(lab, 143)
    client = imaplib.IMAP4(host, port, timeout=5)
    # RFC 3501 §6.2.3: no password before TLS, and the server says so.
    assert {"STARTTLS", "LOGINDISABLED"} <= set(client.capabilities)
    assert "AUTH=PLAIN" not in client.capabilities
    client.starttls(ca_context(lab))
    assert "AUTH=PLAIN" in client.capabilities
    assert not {"STARTTLS", "LOGINDISABLED"} & set(client.capabilities)
    client.logout()


def test_login_before_starttls_is_refused(lab: Lab) -> None:
    raw = Raw(local(lab, 143))
    raw.line()
    raw.send(b"a1 LOGIN bob bob-secret\r\n")
    lines = raw.until("a1 ")
    assert lines[-1].startswith("a1 NO [PRIVACYREQUIRED]")  # RFC 5530 §3
    assert any(line.startswith("* BAD [ALERT]") for line in lines)
    raw.send(b"a2 SELECT INBOX\r\n")
    assert raw.until("a2 ")[-1].startswith("a2 BAD")  # still not logged in
    raw.close()


def test_wrong_password_and_user_names(lab: Lab) -> None:
    client = connect(lab, login=False)
    with pytest.raises(imaplib.IMAP4.error, match=r"AUTHENTICATIONFAILED"):
        client.login(BOB, "wrong")
    with pytest.raises(imaplib.IMAP4.error, match=r"AUTHENTICATIONFAILED"):
        client.login("bob@other.example", BOB_PW)
    with pytest.raises(imaplib.IMAP4.error, match=r"AUTHENTICATIONFAILED"):
        client.login("nobody", BOB_PW)
    typ, _ = client.login("Bob@QQ.example", BOB_PW)  # the address works too
    assert typ == "OK"
    client.logout()


def test_authenticate_plain(lab: Lab) -> None:
    client = connect(lab, login=False)
    typ, _ = client.authenticate("PLAIN", lambda _: f"\0{BOB}\0{BOB_PW}".encode())
    assert typ == "OK"
    assert client.select("INBOX")[0] == "OK"
    client.logout()
    client = connect(lab, login=False)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.authenticate("PLAIN", lambda _: f"\0{BOB}\0nope".encode())
    client.logout()


def test_implicit_tls_on_993(lab: Lab) -> None:
    deliver(lab, "over imaps")
    host, port = local(lab, 993)
    client = imaplib.IMAP4_SSL(host, port, ssl_context=ca_context(lab), timeout=5)
    assert "STARTTLS" not in client.capabilities and "AUTH=PLAIN" in client.capabilities
    client.login(BOB, BOB_PW)
    typ, data = client.select("INBOX")
    assert (typ, data) == ("OK", [b"1"])
    client.logout()


def test_plain_client_on_993_is_dropped(lab: Lab) -> None:
    raw = Raw(local(lab, 993))
    raw.send(b"a1 CAPABILITY\r\n")  # not a TLS ClientHello
    assert raw.closed_by_server()
    raw.close()


# -- reading and flags ---------------------------------------------------------------


def test_select_moves_new_mail_to_cur_and_body_fetch_sets_seen(lab: Lab) -> None:
    first = deliver(lab, "first")
    second = deliver(lab, "second")
    assert files(lab)["new"] == sorted([first, second])
    client = connect(lab)
    typ, data = client.select("INBOX")
    assert (typ, data) == ("OK", [b"2"])
    assert client.response("RECENT") == ("RECENT", [b"2"])
    # Maildir: a client has seen them, so they leave new/ with an empty info.
    assert files(lab) == {"new": [], "cur": sorted([f"{first}:2,", f"{second}:2,"])}
    assert flags(client) == ["\\Recent", "\\Recent"]

    # PEEK reads without setting \Seen.
    meta = fetch_meta(client, "1", "(UID RFC822.SIZE BODY.PEEK[])")
    assert re.search(r"UID 1 RFC822\.SIZE (\d+) BODY\[\] \{\1\}", meta[0])
    assert files(lab)["cur"] == sorted([f"{first}:2,", f"{second}:2,"])

    typ, data = client.fetch("1", "(BODY[])")
    body = data[0][1]
    assert b"Subject: first" in body and body.count(b"\r\n") == body.count(b"\n")
    # RFC 3501 §6.4.5: the implicit \Seen is reported with the data.
    assert data[1] == b" FLAGS (\\Seen \\Recent))"
    assert f"{first}:2,S" in files(lab)["cur"]
    assert flags(client) == ["\\Seen \\Recent", "\\Recent"]
    client.logout()

    # Another session: nothing is \Recent any more, \Seen stayed.
    client = connect(lab)
    client.select("INBOX")
    assert client.response("RECENT") == ("RECENT", [b"0"])
    assert flags(client) == ["\\Seen", ""]
    client.logout()


def test_rfc822_size_matches_the_octets_sent(lab: Lab) -> None:
    deliver(lab, "sized", body="line one\nline two\n.\n..dots\n")
    client = connect(lab)
    client.select("INBOX")
    _typ, data = client.fetch("1", "(RFC822.SIZE RFC822)")
    size = int(re.search(r"RFC822\.SIZE (\d+)", data[0][0].decode()).group(1))
    assert size == len(data[0][1])
    assert data[0][1].endswith(b"line two\r\n.\r\n..dots\r\n")
    client.logout()


def test_store_flags_rename_files_and_expunge_deletes(lab: Lab) -> None:
    keys = [deliver(lab, f"m{i}") for i in range(3)]
    client = connect(lab)
    client.select("INBOX")
    typ, data = client.store("2", "+FLAGS", "(\\Flagged \\Answered)")
    assert typ == "OK" and b"FLAGS (\\Answered \\Flagged \\Recent)" in data[0]
    assert f"{keys[1]}:2,FR" in files(lab)["cur"]
    client.store("2", "-FLAGS", "(\\Answered)")
    assert f"{keys[1]}:2,F" in files(lab)["cur"]
    client.store("2", "FLAGS.SILENT", "(\\Seen)")
    assert f"{keys[1]}:2,S" in files(lab)["cur"]

    typ, data = client.uid("STORE", "1,3", "+FLAGS", "(\\Deleted)")
    assert typ == "OK" and all(b"UID" in d for d in data)
    assert f"{keys[0]}:2,T" in files(lab)["cur"]
    typ, data = client.expunge()
    # RFC 3501 §7.4.1: each EXPUNGE renumbers the rest; descending order.
    assert (typ, data) == ("OK", [b"3", b"1"])
    assert files(lab) == {"new": [], "cur": [f"{keys[1]}:2,S"]}
    # The survivor keeps its UID (2) and is now message 1.
    assert fetch_meta(client, "1", "(UID)") == ["1 (UID 2)"]
    client.logout()


def test_close_expunges_silently_and_examine_changes_nothing(lab: Lab) -> None:
    keys = [deliver(lab, "keep"), deliver(lab, "drop")]
    client = connect(lab)
    client.select("INBOX", readonly=True)  # EXAMINE
    assert files(lab)["new"] == sorted(keys)  # read-only: nothing moved
    typ, data = client.fetch("1", "(BODY[])")
    assert typ == "OK" and files(lab)["new"] == sorted(keys)  # no \Seen either
    typ, data = client.store("1", "+FLAGS", "(\\Deleted)")
    assert typ == "NO" and b"read-only" in data[0]
    client.close()
    client.select("INBOX")
    client.store("2", "+FLAGS", "(\\Deleted)")
    typ, _ = client.close()
    assert typ == "OK"
    assert files(lab) == {"new": [], "cur": [f"{keys[0]}:2,"]}
    client.logout()


def test_search(lab: Lab) -> None:
    deliver(lab, "apples")
    deliver(lab, "pears", sender="carol@good.example")
    deliver(lab, "more apples")
    client = connect(lab)
    client.select("INBOX")
    client.store("2", "+FLAGS", "(\\Seen)")
    assert client.search(None, "ALL") == ("OK", [b"1 2 3"])
    assert client.search(None, "UNSEEN") == ("OK", [b"1 3"])
    assert client.search(None, "SEEN") == ("OK", [b"2"])
    assert client.search(None, "SUBJECT", "apples") == ("OK", [b"1 3"])
    assert client.search(None, "FROM", "carol") == ("OK", [b"2"])
    assert client.search(None, "NOT", "SEEN", "2:*") == ("OK", [b"3"])
    assert client.search(None, "OR", "1", "3") == ("OK", [b"1 3"])
    assert client.uid("SEARCH", "UNSEEN") == ("OK", [b"1 3"])
    with pytest.raises(imaplib.IMAP4.error):
        client.search(None, "FROBNICATE")
    client.logout()


def test_list_status_and_the_junk_folder(lab: Lab) -> None:
    deliver(lab, "inbox mail")
    deliver(lab, "spam one", folder="Junk")
    deliver(lab, "spam two", folder="Junk")
    client = connect(lab)
    typ, data = client.list()
    assert typ == "OK"
    assert sorted(data) == [b'(\\HasNoChildren \\Junk) "." Junk', b'(\\HasNoChildren) "." INBOX']
    assert client.list('""', "J*") == ("OK", [b'(\\HasNoChildren \\Junk) "." Junk'])
    typ, data = client.status("Junk", "(MESSAGES UNSEEN RECENT)")
    assert data == [b"Junk (MESSAGES 2 UNSEEN 2 RECENT 2)"]
    assert client.select("Junk") == ("OK", [b"2"])
    subjects = [m for m in fetch_meta(client, "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")]
    assert len(subjects) == 2
    typ, data = client.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert data[0][1] == b"Subject: spam two\r\n\r\n"
    typ, data = client.select("Nope")
    assert typ == "NO" and b"NONEXISTENT" in data[0]
    # A failed SELECT leaves no mailbox selected (RFC 3501 §6.3.1). imaplib
    # knows and would refuse to send FETCH: ask the server all the same.
    client.state = "SELECTED"
    with pytest.raises(imaplib.IMAP4.error, match="no mailbox selected"):
        client.fetch("1", "(FLAGS)")
    client.logout()


def test_envelope_header_text_and_partial(lab: Lab) -> None:
    deliver(lab, "parts", body="body line\n")
    client = connect(lab)
    client.select("INBOX")
    _, data = client.fetch("1", "(ENVELOPE INTERNALDATE)")
    meta = data[0].decode()
    assert '"parts" (("Alice" NIL "alice" "good.example"))' in meta
    assert re.search(r'INTERNALDATE "\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d \+0000"', meta)
    _, data = client.fetch("1", "(BODY.PEEK[TEXT] BODY.PEEK[]<0.5> BODY.PEEK[HEADER])")
    got = {d[0].decode().split()[-2].lstrip("("): d[1] for d in data if isinstance(d, tuple)}
    assert got["BODY[TEXT]"] == b"body line\r\n"
    assert got["BODY[]<0>"] == b"From:"
    assert got["BODY[HEADER]"].startswith(b"From: Alice") and got["BODY[HEADER]"].endswith(
        b"\r\n\r\n"
    )
    _typ, data = client.fetch("1", "(FLAGS)")
    assert b"\\Seen" not in data[0]
    client.logout()


def test_noop_reports_new_mail_and_other_sessions_changes(lab: Lab) -> None:
    deliver(lab, "one")
    client = connect(lab)
    client.select("INBOX")
    other = connect(lab)
    other.select("INBOX")
    other.store("1", "+FLAGS", "(\\Flagged)")
    deliver(lab, "two")
    client.response("EXISTS")  # imaplib keeps SELECT's; forget it
    client.noop()
    assert client.response("EXISTS") == ("EXISTS", [b"2"])
    assert any(b"FLAGS (\\Flagged" in d for d in client.response("FETCH")[1])
    other.store("1", "+FLAGS", "(\\Deleted)")
    other.expunge()
    client.noop()
    assert client.response("EXPUNGE") == ("EXPUNGE", [b"1"])
    assert fetch_meta(client, "1:*", "(UID)") == ["1 (UID 2)"]
    client.logout()
    other.logout()


# -- bad input ---------------------------------------------------------------------------


def test_malformed_commands_get_bad_and_the_server_keeps_serving(lab: Lab) -> None:
    raw = Raw(local(lab, 143))
    raw.line()
    cases = [
        (b"\r\n", "* BAD"),
        (b"lonely\r\n", "lonely BAD"),
        (b"a1 FROBNICATE\r\n", "a1 BAD Unknown command"),
        (b"a2 FETCH 1 (FLAGS)\r\n", "a2 BAD FETCH: log in first"),
        (b'a3 LOGIN "unterminated\r\n', "a3 BAD Unterminated"),
        (b"a4 NOOP \x00\r\n", "a4 BAD NUL"),
        (b"a5 NOOP \xff\xfe\r\n", "a5 BAD"),
        (b"a6 LIST (\r\n", "a6 BAD"),
        (b"a7 LOGIN {999999}\r\n", "a7 BAD Literal too large"),
        (b"a8 COPY 1 Junk\r\n", "a8 BAD COPY is not supported"),
        (b"a9 " + b"X" * 70_000 + b"\r\n", "* BAD Line too long"),
        (b"b1 UID FROB 1\r\n", "b1 BAD"),
    ]
    for command, expected in cases:
        raw.send(command)
        got = raw.line()
        assert got.startswith(expected), (command[:40], got)
    raw.send(b"b2 NOOP\r\n")
    assert raw.line() == "b2 OK NOOP completed."
    raw.close()


def test_bad_arguments_when_logged_in(lab: Lab) -> None:
    deliver(lab, "x")
    client = connect(lab)
    client.select("INBOX")
    for what, items in [
        ("0", "(FLAGS)"),
        ("5", "(FLAGS)"),
        ("1", "(BODY[1.MIME])"),
        ("1", "(BODYSTRUCTURE)"),
        ("x", "(FLAGS)"),
    ]:
        with pytest.raises(imaplib.IMAP4.error):
            client.fetch(what, items)
    assert client.uid("FETCH", "99", "(FLAGS)") == ("OK", [None])  # unknown UIDs: nothing
    assert client.noop()[0] == "OK"
    client.logout()


def test_plaintext_pipelined_after_starttls_is_discarded(lab: Lab) -> None:
    # RFC 3501 §6.2.1: a command injected in clear text after STARTTLS must
    # not run inside the TLS session.
    raw = Raw(local(lab, 143))
    raw.line()
    raw.send(b"a1 STARTTLS\r\na2 LOGIN bob bob-secret\r\n")
    assert raw.line() == "a1 OK Begin TLS negotiation now."
    raw.starttls(ca_context(lab, check_hostname=True))
    raw.send(b"a3 SELECT INBOX\r\n")
    assert raw.line().startswith("a3 BAD SELECT: log in first")
    raw.close()


def test_client_disconnecting_mid_command(lab: Lab) -> None:
    key = deliver(lab, "survivor")
    # Gone while the server waits for a literal's octets...
    raw = Raw(local(lab, 143))
    raw.line()
    raw.send(b"a1 LOGIN {3}\r\n")
    assert raw.line() == "+ Ready for literal data"
    raw.send(b"bo")
    raw.close()
    # ... in the middle of a line, and after STORE without reading the answer.
    raw = Raw(local(lab, 143))
    raw.line()
    raw.send(b"a1 CAPABI")
    raw.close()
    client = connect(lab)
    client.select("INBOX")
    client.send(b"z1 STORE 1 +FLAGS (\\Deleted)\r\nz2 EXPUNGE\r\n")
    client.shutdown()
    # The server keeps serving; STORE ran, the half-read EXPUNGE may have too.
    deadline = time.monotonic() + 5
    client = connect(lab)
    while time.monotonic() < deadline and files(lab)["cur"] == [f"{key}:2,"]:
        time.sleep(0.05)
    assert files(lab)["cur"] in ([f"{key}:2,T"], [])
    assert client.noop()[0] == "OK"
    client.logout()
