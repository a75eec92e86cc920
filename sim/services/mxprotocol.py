"""The MX's SMTP protocol object: aiosmtpd's ``SMTP`` subclass.

Enhanced status codes on aiosmtpd's own replies (RFC 2034 §3), a faster
reading of plain MAIL/RCPT paths, the connection's state kept across
STARTTLS (RFC 3207 §4.2), and the reset answer of a "down" MX on a backend
that cannot stop one listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
from typing import Any, AnyStr

from sim.services.mxhandler import Connection, MxHandler, _new_connection
from sim.services.replies import enhance
from sim.services.smtpbase import LabSMTP

__all__ = ["MxSMTP"]

# The usual path of MAIL and RCPT, <dot-atom@domain> (RFC 5321 §4.1.2).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(rf"<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>")


# --- the SMTP protocol object ------------------------------------------------------


class MxSMTP(LabSMTP):
    """aiosmtpd's SMTP for the MX: enhanced status codes on aiosmtpd's own
    replies, and the connection's state."""

    def __init__(self, handler: Any, *, net: Any, **kwargs: Any) -> None:
        super().__init__(handler, net=net, ident="ESMTP maillab", **kwargs)
        self.mx_conn: Connection | None = None
        self._greeted = False
        self._verbatim = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.mx_conn is None:  # not again after STARTTLS (RFC 3207 §4.2)
            self.mx_conn = _new_connection(self)
            handler = self.event_handler
            if isinstance(handler, MxHandler):
                handler.connected(self.mx_conn)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        handler = self.event_handler
        if self.mx_conn is not None and isinstance(handler, MxHandler):
            handler.disconnected(self.mx_conn)

    async def push(self, status: AnyStr) -> None:
        # RFC 2034 §3: an enhanced code on every reply but the greeting and
        # the EHLO/HELO reply.
        if isinstance(status, str) and not self._verbatim:
            greeted, self._greeted = self._greeted, True
            if greeted:
                await super().push(enhance(status))
                return
        await super().push(status)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd reads every MAIL and RCPT path with the email package's
        # RFC 5322 parser, a tenth of the MX's time; the plain form is read
        # here to the same result, anything else (quotes, comments, address
        # literals, null path) still goes to that parser.
        match = _PLAIN_PATH.match(arg)
        if match is not None:
            rest = arg[match.end() :]
            if "(" not in rest and "\r" not in rest and "\n" not in rest:
                address = match.group(1)
                local = address.rpartition("@")[0]
                if self.local_part_limit and len(local) > self.local_part_limit:
                    return None, None
                return address, rest.lstrip(" \t")
        found: tuple[str | None, str | None] = super()._getaddr(arg)
        return found

    async def smtp_EHLO(self, hostname: str) -> None:
        self._verbatim = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._verbatim = False

    async def smtp_HELO(self, hostname: str) -> None:
        self._verbatim = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._verbatim = False


class _Reset(asyncio.Protocol):
    """Answers a connection with a TCP reset: the "down" MX on a backend
    that cannot stop one listener (see :meth:`MxServer._go_down`)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER on, 0 seconds: close() sends a reset, not a FIN.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()  # type: ignore[attr-defined]
