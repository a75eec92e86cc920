"""The submission service (RFC 6409): TLS before AUTH, AUTH, sender ownership,
implicit TLS on 465, the headers it adds, and a real swaks run."""

from __future__ import annotations

import asyncio
import base64
import email
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiosmtplib
import pytest
from mailrig import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    Sink,
    ca_path,
    events,
    message,
    start_sink,
    submission_endpoint,
    topology,
    wait_until,
)

import sim
from sim.hosting.runtime import Lab
from sim.services.smtpclient import SmtpClient

SWAKS = shutil.which("swaks")
HOSTNAME = "smtp.relay.example"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    running = sim.start(topology(), state_dir=tmp_path / "state")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def sink(lab: Lab) -> Sink:
    return start_sink(lab, "mx1")


def client_context(lab: Lab) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_path(lab)))


async def connect(lab: Lab, port: int = 587, *, implicit: bool = False) -> aiosmtplib.SMTP:
    """A real client on this machine (the lab's outside host) connected to
    the submission service, verifying the lab CA and the server's name."""
    host, local = submission_endpoint(lab, port)
    sock = socket.create_connection((host, local))
    sock.setblocking(False)
    smtp = aiosmtplib.SMTP(
        hostname=HOSTNAME,
        sock=sock,
        use_tls=implicit,
        start_tls=False,
        tls_context=client_context(lab),
        local_hostname="client.outside.example",
        timeout=5,
    )
    await smtp.connect()
    return smtp


def plain(user: str, password: str) -> bytes:
    return base64.b64encode(f"\0{user}\0{password}".encode())


async def test_auth_is_not_offered_before_starttls_and_refused_with_538(lab: Lab) -> None:
    smtp = await connect(lab)
    try:
        await smtp.ehlo()
        assert "starttls" in smtp.esmtp_extensions
        assert "auth" not in smtp.esmtp_extensions
        reply = await smtp.execute_command(b"AUTH", b"PLAIN", plain(ALICE, ALICE_PASSWORD))
        assert reply.code == 538
        assert reply.message.startswith("5.7.11 Encryption required")
        # After STARTTLS the same server offers AUTH (RFC 3207 §4.2: greet again).
        await smtp.starttls()
        await smtp.ehlo()
        assert set(smtp.esmtp_extensions["auth"].split()) >= {"PLAIN", "LOGIN"}
    finally:
        smtp.close()


async def test_wrong_password_gets_535_at_once_and_the_session_goes_on(lab: Lab) -> None:
    smtp = await connect(lab)
    try:
        await smtp.starttls()
        await smtp.ehlo()
        reply = await asyncio.wait_for(
            smtp.execute_command(b"AUTH", b"PLAIN", plain(ALICE, "wrong")), 3
        )
        assert (reply.code, reply.message) == (535, "5.7.8 Authentication credentials invalid")
        unknown = await smtp.execute_command(b"AUTH", b"PLAIN", plain("eve@home.example", "x"))
        assert unknown.code == 535
        # Not hung, not disconnected: the right password still works.
        ok = await smtp.execute_command(b"AUTH", b"PLAIN", plain(ALICE, ALICE_PASSWORD))
        assert ok.code == 235
    finally:
        smtp.close()
    explained = [e.data["explanation"] for e in events(lab, "smtp", role="server")]
    assert any("wrong password" in text for text in explained)
    assert any("no such user" in text for text in explained)


async def test_mail_before_auth_gets_530(lab: Lab) -> None:
    smtp = await connect(lab)
    try:
        await smtp.starttls()
        await smtp.ehlo()
        reply = await smtp.execute_command(b"MAIL", b"FROM:<alice@home.example>")
        assert (reply.code, reply.message) == (530, "5.7.0 Authentication required")
    finally:
        smtp.close()


async def test_foreign_mail_from_gets_553(lab: Lab) -> None:
    smtp = await connect(lab)
    try:
        await smtp.starttls()
        await smtp.login(ALICE, ALICE_PASSWORD)
        reply = await smtp.execute_command(b"MAIL", b"FROM:<ceo@bank.example>")
        assert reply.code == 553
        assert reply.message == (
            "5.7.1 <ceo@bank.example>: Sender address rejected: not owned by user "
            "alice@home.example"
        )
        # The empty reverse-path is not the user's either.
        empty = await smtp.execute_command(b"MAIL", b"FROM:<>")
        assert empty.code == 553
        own = await smtp.execute_command(b"MAIL", b"FROM:<Alice@Home.example>")
        assert own.code == 250
    finally:
        smtp.close()


async def test_a_sender_that_is_no_address_gets_501_before_the_ownership_check(lab: Lab) -> None:
    smtp = await connect(lab)
    try:
        await smtp.starttls()
        await smtp.login(ALICE, ALICE_PASSWORD)
        for path in (b"<not an address>", b"<alice>", b"<bob at home.example>"):
            reply = await smtp.execute_command(b"MAIL", b"FROM:" + path)
            # RFC 5321 §4.1.2 syntax first (501 5.1.7), not the policy's 553 5.7.1.
            assert reply.code == 501, (path, reply)
            assert reply.message.startswith("5.1.7 "), (path, reply)
            assert "Bad sender address syntax" in reply.message
        # The session goes on: the user's own address is accepted.
        own = await smtp.execute_command(b"MAIL", b"FROM:<alice@home.example>")
        assert own.code == 250
    finally:
        smtp.close()


async def test_auth_login_mechanism(lab: Lab) -> None:
    smtp = await connect(lab)
    try:
        await smtp.starttls()
        await smtp.ehlo()
        reply = await smtp.auth_login(ALICE, ALICE_PASSWORD)
        assert reply.code == 235
    finally:
        smtp.close()


async def test_implicit_tls_on_465_offers_auth_at_once_and_delivers(lab: Lab, sink: Sink) -> None:
    smtp = await connect(lab, 465, implicit=True)
    try:
        assert smtp.get_transport_info("ssl_object") is not None
        await smtp.ehlo()
        assert "starttls" not in smtp.esmtp_extensions  # already encrypted
        assert "PLAIN" in smtp.esmtp_extensions["auth"].split()
        await smtp.login(ALICE, ALICE_PASSWORD)
        errors, reply = await smtp.sendmail(ALICE, [BOB], message("over 465"))
        assert errors == {}
        assert reply.startswith("2.0.0 Ok: queued as ")
    finally:
        smtp.close()
    wait_until(lambda: len(sink.received) == 1)
    assert email.message_from_bytes(sink.received[0].data)["Subject"] == "over 465"


async def test_plain_tcp_to_465_is_not_served(lab: Lab) -> None:
    host, port = submission_endpoint(lab, 465)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"EHLO not-tls\r\n")
        await writer.drain()
        # No SMTP greeting in clear text; the TLS layer closes on garbage.
        data = await asyncio.wait_for(reader.read(100), 5)
        assert not data.startswith(b"220")
    finally:
        writer.close()


async def test_submission_adds_received_message_id_and_date(lab: Lab, sink: Sink) -> None:
    smtp = await connect(lab)
    try:
        await smtp.starttls()
        await smtp.login(ALICE, ALICE_PASSWORD)
        raw = b"From: Alice <alice@home.example>\r\nTo: bob@qq.example\r\nSubject: hi\r\n\r\nx\r\n"
        _errors, reply = await smtp.sendmail(ALICE, [BOB], raw)
    finally:
        smtp.close()
    queue_id = reply.rsplit(" ", 1)[1]
    wait_until(lambda: len(sink.received) == 1)
    got = email.message_from_bytes(sink.received[0].data)
    (received,) = got.get_all("Received")
    assert "with ESMTPSA" in received
    assert f"id {queue_id}" in received
    assert "(Authenticated sender: alice@home.example)" in received
    assert f"by {HOSTNAME}" in received
    assert "for <bob@qq.example>" in received
    assert "using TLSv1" in received
    assert got["Message-ID"].endswith(f"@{HOSTNAME}>")
    assert got["Date"]
    # The relay then carried it with the submission's trace and queue id.
    assert sink.received[0].mail_from == ALICE


async def test_client_message_id_is_kept(lab: Lab, sink: Sink) -> None:
    smtp = await connect(lab)
    try:
        await smtp.starttls()
        await smtp.login(ALICE, ALICE_PASSWORD)
        extra = "Message-ID: <mine@home.example>\r\nDate: Sat, 28 Nov 2026 08:00:00 +0000\r\n"
        await smtp.sendmail(ALICE, [BOB], message("own id", extra=extra))
    finally:
        smtp.close()
    wait_until(lambda: len(sink.received) == 1)
    got = email.message_from_bytes(sink.received[0].data)
    assert got.get_all("Message-ID") == ["<mine@home.example>"]
    assert len(got.get_all("Date")) == 1


def test_lab_client_sees_538_and_the_trace_hides_the_password(lab: Lab) -> None:
    ctx = lab.backend.context("laptop")  # type: ignore[attr-defined]
    trace = lab.backend.hub.open()  # type: ignore[attr-defined]
    transcript = lab.backend.call(  # type: ignore[attr-defined]
        SmtpClient.for_node(ctx).send(
            ctx.network.address_of("smtp"),
            587,
            mail_from=ALICE,
            rcpts=[BOB],
            data=message(),
            helo="laptop.home.example",
            tls="none",
            auth=(ALICE, ALICE_PASSWORD),
            trace_id=trace.id,
        )
    )
    assert transcript.failed_stage == "auth"
    reply = transcript.reply_at("auth")
    assert reply is not None
    assert (reply.code, reply.enhanced) == (538, "5.7.11")
    commands = [e.data["command"] for e in trace.of_kind("smtp")]
    assert "AUTH PLAIN ********" in commands
    assert not any(ALICE_PASSWORD in str(e.data) for e in trace.events)


@pytest.mark.skipif(SWAKS is None, reason="swaks is not installed")
def test_swaks_submits_over_starttls_with_auth(lab: Lab, sink: Sink) -> None:
    host, port = submission_endpoint(lab, 587)
    assert SWAKS is not None
    run = subprocess.run(
        [
            SWAKS,
            "--server", f"{host}:{port}",
            "--ehlo", "client.outside.example",
            "--from", ALICE,
            "--to", BOB,
            "--tls",
            "--tls-verify",
            "--tls-ca-path", str(ca_path(lab)),
            "--tls-sni", HOSTNAME,
            "--auth", "PLAIN",
            "--auth-user", ALICE,
            "--auth-password", ALICE_PASSWORD,
            "--header", "Subject: from swaks",
            "--timeout", "10",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "queued as" in run.stdout
    wait_until(lambda: len(sink.received) == 1)
    got = email.message_from_bytes(sink.received[0].data)
    assert got["Subject"] == "from swaks"
    assert "with ESMTPSA" in got["Received"]


# --- bad input: the server keeps serving and queues nothing it did not accept ----------


async def test_malformed_commands_get_errors_and_the_session_goes_on(lab: Lab) -> None:
    smtp = await connect(lab)
    try:
        assert (await smtp.execute_command(b"XYZZY")).code == 500
        assert (await smtp.execute_command(b"HELO")).code == 501
        assert (await smtp.execute_command(b"RCPT", b"TO:<bob@qq.example>")).code == 503
        await smtp.starttls()
        await smtp.login(ALICE, ALICE_PASSWORD)
        assert (await smtp.execute_command(b"MAIL", b"FROM:")).code == 501
        assert (await smtp.execute_command(b"MAIL", b"FROM:<alice@home.example>")).code == 250
        bad = await smtp.execute_command(b"RCPT", b"TO:<bob>")
        assert (bad.code, bad.message.split()[0]) == (501, "5.1.3")
        assert (await smtp.execute_command(b"NOOP")).code == 250
    finally:
        smtp.close()


async def test_oversized_message_gets_552_and_is_not_queued(lab: Lab) -> None:
    smtp = await connect(lab)
    try:
        await smtp.starttls()
        await smtp.login(ALICE, ALICE_PASSWORD)
        big = message("big", body="x" * 998 + "\r\n") * 11_000  # ~11 MB > 10 MiB
        with pytest.raises(aiosmtplib.SMTPResponseException) as info:
            await smtp.sendmail(ALICE, [BOB], big)
        assert info.value.code == 552
        # The session still works for a message of a sensible size.
        await smtp.rset()
        errors, _ = await smtp.sendmail(ALICE, [BOB], message("small"))
        assert errors == {}
    finally:
        smtp.close()
    queued = [e for e in events(lab, "queue", event="queued")]
    assert len(queued) == 1


async def test_disconnect_mid_data_queues_nothing(lab: Lab) -> None:
    smtp = await connect(lab)
    try:
        await smtp.starttls()
        await smtp.login(ALICE, ALICE_PASSWORD)
        await smtp.mail(ALICE)
        await smtp.rcpt(BOB)
        assert (await smtp.execute_command(b"DATA")).code == 354
        assert smtp.protocol is not None
        smtp.protocol.write(b"Subject: half\r\n\r\nthe first half of a mess")
        await asyncio.sleep(0.1)
    finally:
        smtp.close()
    await asyncio.sleep(0.3)
    assert events(lab, "queue", event="queued") == []
    # And the server goes on serving.
    again = await connect(lab)
    try:
        await again.starttls()
        await again.login(ALICE, ALICE_PASSWORD)
        errors, _ = await again.sendmail(ALICE, [BOB], message("whole"))
        assert errors == {}
    finally:
        again.close()
