"""aiosmtpd as the lab's SMTP server: the client's lab identity in every hook.

aiosmtpd puts the socket's peer address in ``session.peer``. On the local
backend that is 127.0.0.1, so :class:`LabSMTP` asks the node's
:class:`~sim.net.api.NodeNet` who the client really is and replaces it: every
handler hook then sees ``session.peer == (lab address, port)`` on both
backends, and ``session.trace_id`` names the experiment the connection
belongs to (None for a real program such as swaks).

It also sends the lines of a multiline reply (``250-...`` up to ``250 ...``,
RFC 5321 §4.2.1) in one write: aiosmtpd writes each line on its own, which
costs a system call and a TCP segment per EHLO keyword. And it is set up
without aiosmtpd's per-connection introspection (:mod:`sim.services.smtpinit`).
"""

from __future__ import annotations

import asyncio
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP

from sim.net.api import NodeNet
from sim.services.smtpinit import init_smtp

__all__ = ["LabSMTP", "session_trace_id"]


class LabSMTP(SMTP):
    def __init__(self, handler: Any, *, net: NodeNet, **kwargs: Any) -> None:
        # aiosmtpd's SMTP.__init__, with its introspection done once per class.
        init_smtp(self, handler, **kwargs)
        self.lab_net = net
        self._held = b""  # the lines of a multiline reply so far

    async def push(self, status: AnyStr) -> None:
        line = (
            status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii")
            if isinstance(status, str)
            else status
        )
        if line[3:4] == b"-":  # "250-SIZE": more lines of this reply follow
            self._held += line + b"\r\n"
            return
        if self._held:
            line, self._held = self._held + line, b""
        await super().push(line)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        task = self._handler_coroutine
        if task is not None:
            task.add_done_callback(self._release)

    def _release(self, task: asyncio.Task[None]) -> None:
        """The session is over: let go of what ties this object into
        reference cycles, so that it is freed as soon as nothing uses it
        rather than by the cyclic garbage collector (which ran every few
        connections, finding some 70 objects per connection). aiosmtpd keeps
        bound methods of the object in the object, its StreamWriter (which
        points back), and the handler task, whose CancelledError (QUIT
        cancels it) holds the task's frames, which hold the object; asyncio's
        StreamReaderProtocol keeps the connection callback, a bound method."""
        s: Any = self
        s._smtp_methods = {}
        s._auth_methods = {}
        s._writer = None
        s._handler_coroutine = None
        s._client_connected_cb = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # After STARTTLS aiosmtpd calls this again with the TLS transport and a
        # fresh session (RFC 3207 §4.2): map the peer again each time.
        peer = self.lab_net.peer(transport)
        session: Any = self.session
        session.peer = (str(peer.address), peer.port)
        session.trace_id = peer.trace_id


def session_trace_id(session: Any) -> str | None:
    """The trace id of the experiment a session belongs to, if any."""
    trace_id = getattr(session, "trace_id", None)
    return trace_id if isinstance(trace_id, str) else None
