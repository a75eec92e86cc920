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

And it holds up against clients that misbehave, where aiosmtpd 1.4.6 does not:

* **The client's identity is looked up once.** After STARTTLS aiosmtpd calls
  ``connection_made`` again (RFC 3207 §4.2 resets the session, not the
  client): the identity found at the start is kept, never asked again.
* **A message line is capped** (RFC 5321 §4.5.3.1.6: 1000 octets with CRLF).
  aiosmtpd discards an over-long line's data but keeps its pieces until the
  line ends, so a client that never sends CRLF grew the server without bound.
  Here the rest of such a line is counted and dropped; the answer after the
  final dot is ``500 5.5.2`` (line too long) or ``552 5.3.4`` (too much data).
* **An idle client is told before it is dropped**: ``421 4.4.2 HOST Error:
  timeout exceeded`` (RFC 5321 §4.5.3.2), as Postfix says it.
* **A client's fault is a trace event and one log line, never a traceback**: a
  failed TLS handshake after STARTTLS, STARTTLS inside TLS (refused, as
  Postfix does: nesting TLS trips CPython 3.11's ``SSLProtocol._abort``), a
  connection lost twice (aiosmtpd calls ``connection_lost`` itself after a
  failed handshake, and asyncio calls it again: its assertions fired), an
  end of stream before the session began (port 465, right after the
  handshake).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, AnyStr

from aiosmtpd.smtp import MISSING, SMTP, TLSSetupException, syntax

from sim.clock import LabClock
from sim.events import SmtpFault
from sim.net.api import NodeNet, Peer
from sim.net.wirelog import WireConnection
from sim.services.memtrim import session_ended
from sim.services.replies import reply
from sim.services.smtpinit import init_smtp

if TYPE_CHECKING:
    from sim.services.base import NodeContext

__all__ = ["IDLE_TIMEOUT", "FaultSink", "LabSMTP", "fault_sink", "idle_timeout", "session_trace_id"]

log = logging.getLogger(__name__)

#: Where a session reports a client's fault: (trace id, fault, summary).
FaultSink = Callable[[str | None, str, str], None]

#: RFC 5321 §4.5.3.2.7: a server waits at least 5 minutes (lab time) for a command.
IDLE_TIMEOUT = 300.0

#: But never shorter than this, in real seconds: at a lab clock of 60 lab
#: seconds per second, 300 lab seconds would leave a student typing SMTP into
#: telnet 5 real seconds per command. (Tests lower it to try the time-out.)
MIN_IDLE_REAL = 300.0


def idle_timeout(clock: LabClock) -> float:
    """The real seconds a session may idle before ``421 4.4.2`` (RFC 5321
    §4.5.3.2.7): 5 lab minutes, and at least :data:`MIN_IDLE_REAL`."""
    return max(clock.real_seconds(IDLE_TIMEOUT), MIN_IDLE_REAL)


#: What a client can cause at the transport: its faults, not the server's.
CLIENT_ERRORS = (ConnectionError, ssl.SSLError, TimeoutError, OSError, EOFError)


class _ClientWarnings(logging.Filter):
    """aiosmtpd logs a warning for each unrecognised command, a client over
    its bogus-command budget (then once more per line still buffered), an
    AUTH aborted, a bad PROXY header: what a client did, printed as one
    stderr line each (some 25,000 lines in a fuzz run), and each already
    answered with an SMTP reply. Those are dropped; aiosmtpd's warnings about
    its configuration, and its errors, still pass."""

    CLIENT = frozenset(
        {
            "%r unrecognised: %s",
            "%r too many bogus commands",
            "%r over limit for %s",
            "%r aborted AUTH with '*'",
            "%r invalid PROXY handshake",
        }
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in self.CLIENT


_aiosmtpd_log = logging.getLogger("mail.log")
if not any(isinstance(f, _ClientWarnings) for f in _aiosmtpd_log.filters):
    _aiosmtpd_log.addFilter(_ClientWarnings())


class LabSMTP(SMTP):
    def __init__(
        self, handler: Any, *, net: NodeNet, faults: FaultSink | None = None, **kwargs: Any
    ) -> None:
        # aiosmtpd's SMTP.__init__, with its introspection done once per class.
        init_smtp(self, handler, **kwargs)
        self.lab_net = net
        self.faults = faults
        self._held = b""  # the lines of a multiline reply so far
        #: Who the client is, found once at connection (see connection_made).
        self.lab_peer: Peer | None = None
        #: connection_lost has run (aiosmtpd may call it itself first).
        self.lab_lost = False
        #: The bytes both sides send, kept while a capture runs and the
        #: client is a real program outside the lab (sim.net.wirelog).
        self.lab_wire: WireConnection | None = None

    def client_fault(self, fault: str, summary: str) -> None:
        """A client misbehaved: one trace event, one log line, no traceback."""
        trace_id = self.lab_peer.trace_id if self.lab_peer is not None else None
        who = f"{self.lab_peer.address}" if self.lab_peer is not None else "a client"
        log.info("%s: %s: %s", self.hostname, who, summary)
        if self.faults is not None:
            self.faults(trace_id, fault, summary)

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
        transport = self.transport
        if self.lab_lost or (transport is not None and transport.is_closing()):
            # The client has gone: writing would only make asyncio warn
            # ("SSL connection is closed") once per reply.
            return
        if self.lab_wire is not None:
            self.lab_wire.server_sent(line + b"\r\n")
        await super().push(line)

    def data_received(self, data: bytes) -> None:
        # Called with the plain text both before STARTTLS and after it (the
        # TLS layer hands this protocol what it decrypted).
        if self.lab_wire is not None:
            self.lab_wire.client_sent(data)
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lab_lost:
            # aiosmtpd calls this itself after a failed STARTTLS handshake,
            # and asyncio calls it again when the socket closes.
            return
        self.lab_lost = True
        if self.lab_wire is not None:
            self.lab_wire.close()
        if self.session is None or self._handler_coroutine is None:
            # Never served: the TLS handshake of port 465 ended (or the
            # socket closed) before connection_made.
            self.transport = None
            return
        super().connection_lost(exc)
        session_ended()
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
        # fresh session (RFC 3207 §4.2): the session is new, the client is
        # not. Its identity is the one found when it connected; asking again
        # could only go wrong (a registry entry reused or gone by now).
        peer = self.lab_peer
        if peer is None:
            peer = self.lab_peer = self.lab_net.peer(transport)
            self.lab_wire = self.lab_net.record(transport, peer)
            if self.lab_wire is not None and transport.get_extra_info("ssl_object") is not None:
                self.lab_wire.secured()  # port 465: TLS from the first byte (RFC 8314)
        elif self.lab_wire is not None:
            self.lab_wire.secured()  # the TLS transport: RFC 3207 §4.2
        session: Any = self.session
        session.peer = (str(peer.address), peer.port)
        session.trace_id = peer.trace_id

    def eof_received(self) -> bool | None:
        if self.session is None or self._handler_coroutine is None:
            # The client ended right after the TLS handshake of port 465,
            # before the session began (aiosmtpd asserts a session): close.
            return False
        keep_open: bool | None = super().eof_received()
        return keep_open

    def _timeout_cb(self) -> None:
        # RFC 5321 §4.5.3.2: a server that times out a client "SHOULD" say so
        # with a 421 before closing; Postfix's words.
        transport: Any = self.transport
        if transport is None or transport.is_closing():
            return
        self.client_fault("timeout", f"idle for {self._timeout_duration:g} s: closed with 421")
        line = reply("timeout", host=self.hostname).line
        if self.lab_wire is not None:
            self.lab_wire.server_sent(line.encode("ascii") + b"\r\n")
        transport.write(line.encode("ascii") + b"\r\n")
        transport.close()

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            # The client said STARTTLS and then did not complete a handshake
            # (plain text, an old protocol version, a dropped connection).
            # aiosmtpd closes the connection after this; nothing is sent.
            cause = error.__cause__ or error
            self.client_fault("tls", f"TLS handshake after STARTTLS failed: {_describe(cause)}")
            return reply("tls_failed").line
        if isinstance(error, CLIENT_ERRORS):
            self.client_fault("connection", f"connection failed: {_describe(error)}")
            return reply("internal").line
        status: str = await super().handle_exception(error)
        return status

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        if self._tls_protocol is not None:
            # RFC 3207 §4.2: no STARTTLS inside TLS; Postfix's reply. (asyncio
            # would nest a second TLS layer, which CPython 3.11 cannot tear
            # down: SSLProtocol._abort raises TypeError.)
            await self.push(reply("tls_active").line)
            return
        await super().smtp_STARTTLS(arg)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, with the line cap made to hold (see the module
        docstring); the rest as aiosmtpd does it."""
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        content, fault = await self._read_data()
        if content is None:
            return  # the connection is gone
        if fault is not None:
            self.client_fault(fault, reply(fault).text)
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push(reply(fault).line)
            return
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA") if "DATA" in self._handle_hooks else MISSING
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)

    async def _read_data(self) -> tuple[bytes | None, str | None]:
        """The message up to the lone dot (RFC 5321 §4.5.2 dot-stuffing
        undone), or the fault that made it void ("data_line_too_long",
        "size"). None if the connection was lost first. What is kept is
        bounded by the size limit, and the reader buffers at most twice the
        line limit."""
        reader = self._reader
        limit = self.data_size_limit
        lines: list[bytes] = []
        size = 0
        fault: str | None = None
        in_long_line = False  # the rest of an over-long line is being skipped
        last_reset = self.loop.time()
        while self.transport is not None:
            try:
                line = await reader.readuntil(b"\r\n")
            except asyncio.CancelledError:
                self._writer.close()
                raise
            except asyncio.LimitOverrunError as overrun:
                # No CRLF within the limit (the reader leaves a possible
                # CR at the end in its buffer): drop what it has.
                size += len(await reader.read(overrun.consumed))
                in_long_line = True
                if fault is None:
                    fault = "data_line_too_long"
                    lines.clear()
                continue
            except asyncio.IncompleteReadError:
                return None, None
            now = self.loop.time()
            if now - last_reset >= 1.0:
                # RFC 5321 §4.5.3.2.6: the time-out runs per data block, not
                # for the whole message (reset at most once a second: a
                # timer per line would cost more than the line).
                self._reset_timeout()
                last_reset = now
            if in_long_line:
                in_long_line = False  # this CRLF ends the over-long line
                size += len(line)
                continue
            if line == b".\r\n":
                break
            size += len(line)
            if fault is not None:
                continue
            if limit and size > limit:
                fault = "size"
                lines.clear()
                continue
            lines.append(line[1:] if line.startswith(b".") else line)
        else:
            return None, None
        return b"".join(lines), fault


def fault_sink(ctx: NodeContext, service: str) -> FaultSink:
    """Client faults of ``service`` as ``smtp`` trace events of ``ctx``'s node."""

    def sink(trace_id: str | None, fault: str, summary: str) -> None:
        ctx.record(trace_id, SmtpFault(fault=fault), f"{service}: {summary}")

    return sink


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def session_trace_id(session: Any) -> str | None:
    """The trace id of the experiment a session belongs to, if any."""
    trace_id = getattr(session, "trace_id", None)
    return trace_id if isinstance(trace_id, str) else None
