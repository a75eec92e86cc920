"""sim.services.smtpbase.LabSMTP: a multiline reply leaves in one write
(RFC 5321 §4.2.1 lines ``250-...`` up to ``250 ...``), single-line replies
each in their own, in order, and nothing is held back after a final line."""

from __future__ import annotations

from typing import Any

from aiosmtpd.smtp import Session

from sim.services.smtpbase import LabSMTP


class _Writer:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    async def drain(self) -> None:
        return None


class _Handler:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


def _server() -> tuple[LabSMTP, _Writer]:
    server = LabSMTP(_Handler(), net=None, hostname="mx.test")  # type: ignore[arg-type]
    writer = _Writer()
    server._writer = writer  # type: ignore[assignment]
    server.session = Session(server.loop)
    return server, writer


async def test_a_multiline_reply_is_one_write() -> None:
    server, writer = _server()
    for line in ("250-mx.test", "250-SIZE 1024", "250-8BITMIME", "250 ENHANCEDSTATUSCODES"):
        await server.push(line)
    reply = b"250-mx.test\r\n250-SIZE 1024\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"
    assert writer.writes == [reply]


async def test_single_line_replies_are_written_at_once_in_order() -> None:
    server, writer = _server()
    await server.push("220 mx.test ESMTP")
    assert writer.writes == [b"220 mx.test ESMTP\r\n"]  # not held back
    await server.push("250 2.1.0 Ok")
    await server.push(b"354 End data with <CR><LF>.<CR><LF>")
    assert writer.writes[1:] == [b"250 2.1.0 Ok\r\n", b"354 End data with <CR><LF>.<CR><LF>\r\n"]


async def test_after_a_multiline_reply_nothing_is_held() -> None:
    server, writer = _server()
    await server.push("250-first")
    assert writer.writes == []  # the reply is not complete yet
    await server.push("250 last")
    await server.push("221 2.0.0 Bye")
    assert writer.writes == [b"250-first\r\n250 last\r\n", b"221 2.0.0 Bye\r\n"]
