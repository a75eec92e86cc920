"""The MX under bad input, through real sockets: it answers, keeps serving and
loses nothing it accepted.

The client here is a raw socket (no SMTP library smoothing anything over),
opened from a lab node so the MX sees a lab address. Each reply is read whole
(multi-line replies included) and checked for form: a 3-digit code, and after
the greeting and EHLO/HELO an enhanced status code whose class matches
(RFC 2034, RFC 3463).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sim
from sim.hosting.runtime import Lab
from sim.topology.model import (
    CheckPolicy,
    DnsService,
    MxService,
    Node,
    Services,
    Settings,
    Topology,
)

MX = IPv4Address("203.0.113.25")
MAX_SIZE = 4096
TIMEOUT = 10.0

ZONES = {
    "qq.example": "@ MX 10 mx\nmx A 203.0.113.25\n",
    "good.example": 'client A 192.0.2.10\n@ TXT "v=spf1 ip4:192.0.2.10 -all"\n',
    "2.0.192.in-addr.arpa": "10 PTR client.good.example.\n",
}

LINE = re.compile(rb"^[2-5]\d\d[ -]")
FINAL = re.compile(rb"^([2-5])\d\d(?: |$)")
ENHANCED = re.compile(rb"^([2-5])\d\d ([245])\.\d{1,3}\.\d{1,3}(?: |$)")


def topology() -> Topology:
    def host(name: str, ip: str, services: Services | None = None) -> Node:
        return Node(
            name=name,
            kind="host",
            ip=IPv4Interface(ip),
            gateway="internet",
            services=services or Services(),
        )

    mx = MxService(
        domains=("qq.example",),
        mailboxes=("bob",),
        checks=(
            CheckPolicy("ptr", "header"),
            CheckPolicy("helo", "reject"),
            CheckPolicy("spf", "header"),
        ),
        max_size=MAX_SIZE,
    )
    return Topology(
        name="mx-robustness",
        settings=Settings(resolver=IPv4Address("198.51.100.53"), time_scale=1.0),
        nodes=(
            Node(name="internet", kind="router"),
            host("ns", "198.51.100.53/24", Services(dns=DnsService(zones=tuple(ZONES)))),
            host("mx", "203.0.113.25/24", Services(mx=mx)),
            host("client", "192.0.2.10/24"),
        ),
        zones=tuple(ZONES.items()),
    )


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with sim.start(topology()) as running:
        yield running


def stored(lab: Lab) -> list[bytes]:
    return [m.data for m in lab.mailbox("bob@qq.example")]


def run(lab: Lab, coro: Any) -> Any:
    return lab.backend.call(coro)  # type: ignore[attr-defined]


class Closed(Exception):
    """The server closed the connection."""


class Raw:
    """A raw SMTP client: bytes out, whole replies in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, lab: Lab) -> tuple[Raw, list[bytes]]:
        ctx = lab.backend.context("client")  # type: ignore[attr-defined]
        reader, writer = await ctx.net.open_connection(MX, 25)
        raw = cls(reader, writer)
        greeting = await raw.reply()
        assert greeting[-1].startswith(b"220 mx.qq.example ESMTP")
        return raw, greeting

    async def reply(self) -> list[bytes]:
        lines: list[bytes] = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
            if not line:
                raise Closed(b"".join(lines))
            assert line.endswith(b"\r\n"), line
            line = line[:-2]
            assert LINE.match(line) or FINAL.match(line), line
            lines.append(line)
            if len(line) == 3 or line[3:4] == b" ":
                return lines

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def command(self, line: bytes) -> list[bytes]:
        await self.send(line + b"\r\n")
        return await self.reply()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def code(reply: list[bytes]) -> int:
    return int(reply[-1][:3])


def enhanced(reply: list[bytes]) -> str:
    match = ENHANCED.match(reply[-1])
    assert match, reply[-1]
    assert match.group(1) == match.group(2), reply[-1]  # RFC 3463 §3.1: same class
    return reply[-1].split()[1].decode()


async def start_transaction(raw: Raw, rcpt: bytes = b"bob@qq.example") -> None:
    assert code(await raw.command(b"EHLO client.good.example")) == 250
    assert code(await raw.command(b"MAIL FROM:<alice@good.example>")) == 250
    assert code(await raw.command(b"RCPT TO:<" + rcpt + b">")) == 250


def test_malformed_commands_are_answered_and_the_session_goes_on(lab: Lab) -> None:
    cases = [
        (b"FOO BAR", 500, "5.5.2"),
        (b"MAIL FROM:<alice@good.example>", 503, "5.5.1"),  # before EHLO
        (b"EHLO", 501, None),  # the EHLO reply carries no enhanced code (RFC 2034)
        (b"EHLO client.good.example", 250, None),
        (b"MAIL alice@good.example", 501, "5.5.4"),
        (b"MAIL FROM:<alice>", 501, "5.1.7"),
        (b"RCPT TO:<bob@qq.example>", 503, "5.5.1"),
        (b"MAIL FROM:<alice@good.example> BODY=NONSENSE", 501, "5.5.4"),
        (b"MAIL FROM:<alice@good.example> FOO=bar", 555, "5.5.4"),
        (b"DATA", 503, "5.5.1"),
        (b"\xff\xfe\x80", 500, "5.5.2"),
        (b"", 500, "5.5.2"),
        (b"MAIL FROM:<alice@good.example>", 250, "2.1.0"),
        (b"MAIL FROM:<alice@good.example>", 503, "5.5.1"),  # nested MAIL
        (b"RCPT TO:<bob>", 501, "5.1.3"),
        (b"RSET", 250, "2.0.0"),
        (b"NOOP", 250, "2.0.0"),
    ]

    async def scenario() -> None:
        raw, _ = await Raw.open(lab)
        for line, expected_code, expected_enhanced in cases:
            reply = await raw.command(line)
            assert code(reply) == expected_code, (line, reply)
            if expected_enhanced is not None:
                assert enhanced(reply) == expected_enhanced, (line, reply)
        assert code(await raw.command(b"QUIT")) == 221
        await raw.close()

    run(lab, scenario())


def test_a_one_megabyte_line(lab: Lab) -> None:
    async def scenario() -> None:
        raw, _ = await Raw.open(lab)
        reply = await raw.command(b"NOOP " + b"x" * 1_000_000)
        assert code(reply) == 500
        assert enhanced(reply) == "5.5.2"
        assert b"line too long" in reply[-1]
        assert code(await raw.command(b"NOOP")) == 250  # same connection, still serving
        # Inside DATA too: read to the end, then refused, nothing kept.
        await start_transaction(raw)
        assert code(await raw.command(b"DATA")) == 354
        await raw.send(b"Subject: long\r\n\r\n" + b"y" * 1_000_000 + b"\r\n.\r\n")
        reply = await raw.reply()
        assert (code(reply), enhanced(reply)) == (500, "5.5.2")
        assert code(await raw.command(b"NOOP")) == 250
        await raw.close()

    before = len(stored(lab))
    run(lab, scenario())
    assert len(stored(lab)) == before


def test_a_message_over_the_size_limit(lab: Lab) -> None:
    async def scenario() -> None:
        raw, _ = await Raw.open(lab)
        assert code(await raw.command(b"EHLO client.good.example")) == 250
        # Declared too big (RFC 1870): refused at MAIL.
        reply = await raw.command(b"MAIL FROM:<alice@good.example> SIZE=99999999")
        assert (code(reply), enhanced(reply)) == (552, "5.3.4")
        # Not declared, but too big: read to the end, then refused.
        await start_transaction(raw)
        assert code(await raw.command(b"DATA")) == 354
        body = b"".join(b"line %05d of filler text\r\n" % i for i in range(MAX_SIZE // 20))
        await raw.send(b"Subject: big\r\n\r\n" + body + b".\r\n")
        reply = await raw.reply()
        assert (code(reply), enhanced(reply)) == (552, "5.3.4")
        assert code(await raw.command(b"NOOP")) == 250
        await raw.close()

    before = len(stored(lab))
    run(lab, scenario())
    assert len(stored(lab)) == before


def test_bare_lf_cannot_smuggle_a_second_message(lab: Lab) -> None:
    # Commands ending in a bare LF are accepted (aiosmtpd, like Postfix's
    # "normalize"); in DATA only CRLF.CRLF ends the message (RFC 5321 §4.1.1.4).
    smuggled = (
        b"Subject: smuggle\r\n\r\nfirst part\n.\n"
        b"MAIL FROM:<mallory@evil.example>\nRCPT TO:<bob@qq.example>\nDATA\n"
        b"Subject: smuggled\n\nsecond message\n.\r\n"
    )

    async def scenario() -> list[list[bytes]]:
        raw, _ = await Raw.open(lab)
        replies = []
        for line in (
            b"EHLO client.good.example\n",
            b"MAIL FROM:<alice@good.example>\n",
            b"RCPT TO:<bob@qq.example>\n",
            b"DATA\n",
        ):
            await raw.send(line)
            replies.append(await raw.reply())
        await raw.send(smuggled + b"\r\n.\r\n")
        replies.append(await raw.reply())
        replies.append(await raw.command(b"NOOP"))
        await raw.close()
        return replies

    before = stored(lab)
    replies = run(lab, scenario())
    assert [code(r) for r in replies] == [250, 250, 250, 354, 250, 250]
    after = stored(lab)
    assert len(after) == len(before) + 1
    new = after[-1]
    assert b"MAIL FROM:<mallory@evil.example>" in new  # kept as text, never executed
    assert b"Subject: smuggle\r\n" in new


def test_nul_bytes(lab: Lab) -> None:
    async def scenario() -> tuple[list[bytes], list[bytes]]:
        raw, _ = await Raw.open(lab)
        assert code(await raw.command(b"EHLO client\x00.good.example")) == 250
        assert code(await raw.command(b"MAIL FROM:<alice@good.example>")) == 250
        helo = await raw.command(b"RCPT TO:<bob@qq.example>")
        assert code(await raw.command(b"RSET")) == 250
        sender = await raw.command(b"MAIL FROM:<al\x00ice@good.example>")
        # A clean session: NUL bytes inside the message are stored as they came.
        assert code(await raw.command(b"RSET")) == 250
        await start_transaction(raw)
        assert code(await raw.command(b"DATA")) == 354
        await raw.send(b"Subject: nul\r\n\r\nbefore\x00after\r\n.\r\n")
        assert code(await raw.reply()) == 250
        await raw.close()
        return helo, sender

    helo, sender = run(lab, scenario())
    assert (code(helo), enhanced(helo)) == (501, "5.5.2")
    assert helo[-1].endswith(b"<client?.good.example>: Helo command rejected: Invalid name")
    assert b"\x00" not in helo[-1]
    assert code(sender) == 501
    assert b"before\x00after" in stored(lab)[-1]


def test_pipelining_everything_at_once(lab: Lab) -> None:
    batch = (
        b"EHLO client.good.example\r\nMAIL FROM:<alice@good.example>\r\n"
        b"RCPT TO:<bob@qq.example>\r\nDATA\r\nSubject: pipelined\r\n\r\nhi\r\n.\r\nQUIT\r\n"
    )

    async def scenario() -> list[list[bytes]]:
        raw, _ = await Raw.open(lab)
        await raw.send(batch)
        replies = [await raw.reply() for _ in range(6)]
        await raw.close()
        return replies

    before = len(stored(lab))
    replies = run(lab, scenario())
    assert [code(r) for r in replies] == [250, 250, 250, 354, 250, 221]
    assert len(stored(lab)) == before + 1


def test_pipelining_abuse_after_a_refused_recipient(lab: Lab) -> None:
    # The client does not wait: its message lines arrive as commands after
    # DATA was refused. They are answered as junk commands; nothing is stored.
    batch = (
        b"EHLO client.good.example\r\nMAIL FROM:<alice@good.example>\r\n"
        b"RCPT TO:<nobody@qq.example>\r\nDATA\r\nSubject: abuse\r\n\r\nhello\r\n.\r\n"
    )

    async def scenario() -> list[list[bytes]]:
        raw, _ = await Raw.open(lab)
        await raw.send(batch)
        replies = []
        try:
            for _ in range(8):
                replies.append(await raw.reply())
        except Closed:
            pass
        await raw.close()
        return replies

    before = len(stored(lab))
    replies = run(lab, scenario())
    codes = [code(r) for r in replies]
    assert codes[:4] == [250, 250, 550, 503]
    assert 354 not in codes
    assert all(c >= 500 for c in codes[4:])
    assert len(stored(lab)) == before
    test_pipelining_everything_at_once(lab)  # and the server still serves


def test_disconnect_in_the_middle_of_data(lab: Lab) -> None:
    async def scenario() -> None:
        raw, _ = await Raw.open(lab)
        await start_transaction(raw)
        assert code(await raw.command(b"DATA")) == 354
        await raw.send(b"Subject: cut\r\n\r\nhalf a mess")
        raw.writer.transport.abort()
        await asyncio.sleep(0.2)
        # Still serving, and a whole message afterwards is stored once.
        again, _ = await Raw.open(lab)
        await start_transaction(again)
        assert code(await again.command(b"DATA")) == 354
        await again.send(b"Subject: whole\r\n\r\nall of it\r\n.\r\n")
        assert code(await again.reply()) == 250
        await again.close()

    before = len(stored(lab))
    run(lab, scenario())
    after = stored(lab)
    assert len(after) == before + 1
    assert b"Subject: whole" in after[-1]
    assert not any(b"Subject: cut" in m for m in after)


# --- random sessions ------------------------------------------------------------------

FIXED = [
    b"EHLO client.good.example",
    b"HELO client.good.example",
    b"EHLO localhost",
    b"EHLO",
    b"HELO",
    b"NOOP",
    b"NOOP ignored",
    b"RSET",
    b"RSET now",
    b"QUIT",
    b"VRFY bob",
    b"EXPN staff",
    b"HELP",
    b"HELP MAIL",
    b"AUTH PLAIN AGFsaWNlAHNlY3JldA==",
    b"MAIL FROM:<alice@good.example>",
    b"MAIL FROM:<>",
    b"MAIL FROM:<bad>",
    b"MAIL FROM:<alice@good.example> SIZE=100",
    b"MAIL FROM:<alice@good.example> SIZE=x",
    b"MAIL FROM:<alice@good.example> SIZE=99999999",
    b"MAIL FROM:",
    b"MAIL TO:<x@y>",
    b"RCPT TO:<bob@qq.example>",
    b"RCPT TO:<nobody@qq.example>",
    b"RCPT TO:<postmaster>",
    b"RCPT TO:<x@elsewhere.example>",
    b"RCPT TO:",
    b"RCPT TO:<bob@qq.example> NOTIFY=NEVER",
    b"DATA",
    b"DATA now",
    b"BDAT 10 LAST",
]

commands = st.one_of(
    st.sampled_from(FIXED),
    st.binary(max_size=60).filter(lambda b: b"\n" not in b),
    st.integers(min_value=400, max_value=4000).map(lambda n: b"NOOP " + b"x" * n),
)
#: A whole transaction up to DATA, so random sessions often reach the message.
TRANSACTION = [
    b"EHLO client.good.example",
    b"MAIL FROM:<alice@good.example>",
    b"RCPT TO:<bob@qq.example>",
    b"DATA",
]
steps = st.one_of(commands.map(lambda line: [line]), st.just(TRANSACTION))
bodies = st.sampled_from(
    [
        b"Subject: r\r\n\r\nhello\r\n",
        b"no headers at all\r\n",
        b"Subject: dots\r\n\r\n..leading dot\r\n",
        b"\x00\x01\x02 binary\r\n",
        b"Subject: lf\n\nbare lf\n.\n",
        b"",
    ]
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(session=st.lists(st.tuples(steps, bodies), min_size=1, max_size=8))
def test_random_sessions_get_well_formed_replies(
    lab: Lab, session: list[tuple[list[bytes], bytes]]
) -> None:
    lines = [(line, body) for step, body in session for line in step]

    async def scenario() -> None:
        raw, _ = await Raw.open(lab)
        try:
            for line, body in lines:
                try:
                    reply = await raw.command(line)
                except Closed:
                    raw, _ = await Raw.open(lab)  # QUIT, or too many bad commands
                    continue
                verb = line.split(b" ")[0].upper()
                if verb not in (b"EHLO", b"HELO") and code(reply) != 354:
                    enhanced(reply)
                if code(reply) == 354:
                    await raw.send(body + b"\r\n.\r\n")
                    try:
                        enhanced(await raw.reply())
                    except Closed:
                        raw, _ = await Raw.open(lab)
            try:
                reply = await raw.command(b"NOOP")
            except Closed:
                raw, _ = await Raw.open(lab)
                reply = await raw.command(b"NOOP")
            assert code(reply) == 250
        finally:
            await raw.close()

    run(lab, scenario())


def test_the_quick_path_reader_agrees_with_aiosmtpds_parser() -> None:
    # MxSMTP reads the plain <local@domain> form itself (speed); whatever it
    # reads must come out as aiosmtpd's RFC 5322 parser reads it.
    import random
    import string

    from aiosmtpd.smtp import SMTP

    from sim.services.mx import MxSMTP

    server = MxSMTP.__new__(MxSMTP)
    server.local_part_limit = 0
    rng = random.Random(2026)
    alphabet = string.ascii_letters + string.digits + ".-+_@<> ()\"'\\[]\t"
    args = [
        "<alice@home.example>",
        "<alice@home.example> SIZE=100 BODY=8BITMIME",
        "<alice@home.example>(comment) SIZE=1",
        "<a.b@c.d>\t X",
        "<>",
        '<"quoted local"@example.test>',
        "<user@[192.0.2.1]>",
        " <alice@home.example>",
        "alice@home.example",
    ]
    args += [
        "<" + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 16))) + ">" + tail
        for tail in ("", " SIZE=1", "  x", "(c)", " ")
        for _ in range(400)
    ]
    for arg in args:
        try:
            expected = SMTP._getaddr(server, arg)
        except Exception:  # aiosmtpd's parser trips on some garbage (not ours to fix)
            continue
        assert server._getaddr(arg) == expected, arg
    server.local_part_limit = 3
    assert server._getaddr("<abcd@x.example>") == (None, None)
    assert server._getaddr("<abc@x.example>") == ("abc@x.example", "")
