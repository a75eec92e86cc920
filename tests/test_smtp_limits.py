"""The lab's SMTP servers against clients that misbehave: a message line
without end, a silent client, a TLS handshake that never comes, STARTTLS
twice. Each gets the reply a real server sends (RFC 5321, RFC 3207), the
server's memory stays bounded, and no traceback reaches the log: a client's
fault is a trace event and at most one log line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import ssl
import subprocess
import types
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

import pytest

import sim
import sim.services.smtpbase
from sim.hosting.runtime import Lab
from sim.net.api import Peer
from sim.services.smtpbase import LabSMTP
from sim.topology.model import (
    DnsService,
    MailboxService,
    MxService,
    Node,
    Services,
    Settings,
    Topology,
)

MX = IPv4Address("203.0.113.25")
MAX_SIZE = 64 * 1024
#: Lab seconds per real second: the MX's 300 s idle time-out is 1 real second.
TIME_SCALE = 300.0

ZONES = {"qq.example": "@ MX 10 mx\nmx A 203.0.113.25\n"}


def topology() -> Topology:
    def host(name: str, ip: str, services: Services | None = None) -> Node:
        return Node(
            name=name,
            kind="host",
            ip=IPv4Interface(ip),
            gateway="internet",
            services=services or Services(),
        )

    mx = MxService(domains=("qq.example",), mailboxes=("bob",), max_size=MAX_SIZE)
    mailbox = MailboxService(users=(("bob", "bob-secret"),))
    return Topology(
        name="smtp-limits",
        settings=Settings(resolver=IPv4Address("198.51.100.53"), time_scale=TIME_SCALE),
        nodes=(
            Node(name="internet", kind="router"),
            host("ns", "198.51.100.53/24", Services(dns=DnsService(zones=tuple(ZONES)))),
            host("mx", "203.0.113.25/24", Services(mx=mx, mailbox=mailbox)),
            host("client", "192.0.2.10/24"),
        ),
        zones=tuple(ZONES.items()),
    )


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    # The idle time-out is 5 lab minutes; its floor for people typing into
    # telnet is lowered so that the scaled value (1 s) applies here.
    patch = pytest.MonkeyPatch()
    patch.setattr(sim.services.smtpbase, "MIN_IDLE_REAL", 0.0)
    try:
        with sim.start(topology()) as running:
            yield running
    finally:
        patch.undo()


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def no_traceback(records: list[logging.LogRecord]) -> None:
    bad = [r for r in records if r.exc_info or r.levelno >= logging.WARNING]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad[:5]]


def run(lab: Lab, coro: Any) -> Any:
    return lab.backend.call(coro)  # type: ignore[attr-defined]


def mx_port(lab: Lab) -> int:
    for endpoint in lab.endpoints():
        if endpoint.node == "mx" and endpoint.service == "mx" and endpoint.local:
            return int(endpoint.local.rpartition(":")[2])
    raise AssertionError("no MX endpoint")


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await asyncio.wait_for(reader.readline(), 10)
        if not line or line[3:4] != b"-":
            return line


async def open_mx(lab: Lab) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    ctx = lab.backend.context("client")  # type: ignore[attr-defined]
    reader, writer = await ctx.net.open_connection(MX, 25)
    assert (await reply(reader)).startswith(b"220 ")
    return reader, writer


async def command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes) -> bytes:
    writer.write(line + b"\r\n")
    await writer.drain()
    return await reply(reader)


async def to_data(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    assert (await command(reader, writer, b"EHLO client.test")).startswith(b"250 ")
    assert (await command(reader, writer, b"MAIL FROM:<a@client.test>")).startswith(b"250 ")
    assert (await command(reader, writer, b"RCPT TO:<bob@qq.example>")).startswith(b"250 ")
    assert (await command(reader, writer, b"DATA")).startswith(b"354 ")


def test_a_message_line_without_end_is_not_buffered(
    lab: Lab, logged: pytest.LogCaptureFixture
) -> None:
    chunk = b"x" * (1 << 20)
    megabytes = 64

    async def scenario() -> tuple[bytes, int, bytes]:
        reader, writer = await open_mx(lab)
        await to_data(reader, writer)
        before = rss()
        for _ in range(megabytes):  # 64 MB, not one CRLF
            writer.write(chunk)
            await writer.drain()
        grown = rss() - before
        answer = await command(reader, writer, b"\r\n.")
        # The session goes on: a normal message is accepted afterwards.
        await to_data(reader, writer)
        ok = await command(reader, writer, b"Subject: fine\r\n\r\nshort lines\r\n.")
        writer.close()
        return answer, grown, ok

    answer, grown, ok = run(lab, scenario())
    # RFC 5321 §4.5.3.1.6: at most 1000 octets a line; aiosmtpd alone kept
    # every piece of the line (64 MB here).
    assert answer.startswith(b"500 5.5.2 "), answer
    assert b"line too long" in answer
    assert grown < 16 << 20, f"the server grew by {grown >> 20} MB for one line"
    assert ok.startswith(b"250 "), ok
    no_traceback(logged.records)


@pytest.mark.parametrize(("port", "answer"), [(143, b"* BAD Line too long"), (110, b"-ERR Line")])
def test_imap_and_pop3_do_not_buffer_a_line_without_end(
    lab: Lab, logged: pytest.LogCaptureFixture, port: int, answer: bytes
) -> None:
    chunk = b"y" * (1 << 20)

    async def scenario() -> tuple[bytes, int]:
        ctx = lab.backend.context("client")  # type: ignore[attr-defined]
        reader, writer = await ctx.net.open_connection(MX, port)
        await asyncio.wait_for(reader.readline(), 10)  # the greeting
        before = rss()
        for _ in range(32):
            writer.write(chunk)
            await writer.drain()
        grown = rss() - before
        writer.write(b"\r\n")
        line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        return line, grown

    line, grown = run(lab, scenario())
    assert line.startswith(answer), line
    assert grown < 16 << 20, f"the server grew by {grown >> 20} MB for one line"
    no_traceback(logged.records)


def test_too_much_data_is_552_and_one_long_line_among_many_is_500(lab: Lab) -> None:
    async def scenario() -> tuple[bytes, bytes, bytes]:
        reader, writer = await open_mx(lab)
        await to_data(reader, writer)
        lines = b"".join(b"%06d short line\r\n" % i for i in range(MAX_SIZE // 10))
        too_much = await command(reader, writer, lines + b".")
        await to_data(reader, writer)
        one_long = await command(reader, writer, b"a\r\n" + b"y" * 5000 + b"\r\nb\r\n.")
        await to_data(reader, writer)
        dots = await command(reader, writer, b"..leading dot\r\n" + b"z" * 990 + b"\r\n.")
        writer.close()
        return too_much, one_long, dots

    too_much, one_long, dots = run(lab, scenario())
    assert too_much.startswith(b"552 5.3.4 "), too_much
    assert one_long.startswith(b"500 5.5.2 "), one_long
    assert dots.startswith(b"250 "), dots  # a 992-octet line is within the limit
    stored = [m.data for m in lab.mailbox("bob@qq.example")]
    assert any(b"\r\n.leading dot\r\n" in data for data in stored), "dot-stuffing undone"


def test_an_idle_client_is_told_421_before_the_close(
    lab: Lab, logged: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> tuple[bytes, bytes, float]:
        loop = asyncio.get_running_loop()
        reader, writer = await open_mx(lab)
        assert (await command(reader, writer, b"EHLO client.test")).startswith(b"250 ")
        start = loop.time()
        said = await asyncio.wait_for(reader.readline(), 10)
        waited = loop.time() - start
        rest = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return said, rest, waited

    said, rest, waited = run(lab, scenario())
    # RFC 5321 §4.5.3.2: 421 first; Postfix's words.
    assert said == b"421 4.4.2 mx.qq.example Error: timeout exceeded\r\n"
    assert rest == b"", "then the server closes"
    assert 0.5 < waited < 8, waited  # 300 lab seconds at 300 lab seconds a second
    no_traceback(logged.records)
    faults = [e for e in lab.trace().events if e.data.get("fault") == "timeout"]
    assert faults and faults[-1].node == "mx"


def test_plain_text_instead_of_a_tls_handshake(lab: Lab, logged: pytest.LogCaptureFixture) -> None:
    async def scenario() -> tuple[bytes, bytes]:
        reader, writer = await open_mx(lab)
        assert (await command(reader, writer, b"EHLO x")).startswith(b"250 ")
        go = await command(reader, writer, b"STARTTLS")
        writer.write(b"MAIL FROM:<a@b.example>\r\nthis is not a ClientHello\r\n")
        await writer.drain()
        rest = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return go, rest

    go, rest = run(lab, scenario())
    assert go.startswith(b"220 ")
    assert b"250" not in rest  # nothing of the plain text was served
    no_traceback(logged.records)
    faults = [e for e in lab.trace().events if e.data.get("fault") == "tls"]
    assert faults, "the failed handshake is a trace event"


def test_starttls_inside_tls_is_refused(lab: Lab, logged: pytest.LogCaptureFixture) -> None:
    async def scenario() -> tuple[bytes, bytes]:
        reader, writer = await open_mx(lab)
        assert (await command(reader, writer, b"EHLO x")).startswith(b"250 ")
        assert (await command(reader, writer, b"STARTTLS")).startswith(b"220 ")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        await writer.start_tls(context)
        again = await command(reader, writer, b"STARTTLS")
        still = await command(reader, writer, b"NOOP")
        writer.close()
        return again, still

    again, still = run(lab, scenario())
    assert again.startswith(b"554 5.5.1 "), again
    assert still.startswith(b"250 "), still
    no_traceback(logged.records)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is missing")
def test_openssl_with_tls1_gets_a_clean_refusal(lab: Lab, logged: pytest.LogCaptureFixture) -> None:
    port = mx_port(lab)
    proc = subprocess.run(
        ["openssl", "s_client", "-starttls", "smtp", "-tls1", "-connect", f"127.0.0.1:{port}"],
        input=b"",
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode != 0  # TLS 1.0 is not offered (RFC 8996)
    no_traceback(logged.records)


class _Net:
    def __init__(self) -> None:
        self.asked = 0

    def peer(self, transport: Any, addr: Any = None) -> Peer:
        self.asked += 1
        return Peer(IPv4Address("192.0.2.25"), 40000 + self.asked, "t-1")

    def record(self, transport: Any, peer: Peer) -> None:
        return None  # no capture runs (sim.net.wirelog)


class _Transport(asyncio.Transport):
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40001) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def write(self, data: Any) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def test_the_client_is_looked_up_once_not_again_after_starttls() -> None:
    net = _Net()
    server = LabSMTP(object(), net=net, hostname="mx.test")  # type: ignore[arg-type]
    server.connection_made(_Transport())
    first = server.session
    # What aiosmtpd does after STARTTLS: connection_made again, a new session.
    server._original_transport = _Transport()  # type: ignore[assignment]
    server._tls_protocol = types.SimpleNamespace(_extra={})  # type: ignore[assignment]
    server.connection_made(_Transport())
    assert server.session is not first
    assert net.asked == 1
    assert server.session is not None
    assert server.session.peer == ("192.0.2.25", 40001)
    assert server.session.trace_id == "t-1"  # type: ignore[attr-defined]
    task = server._handler_coroutine
    assert task is not None
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
