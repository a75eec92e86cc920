"""The lab's SMTP client: one traced SMTP transaction from a node.

The relay uses it to hand mail to the next hop, and the ``Send`` experiment to
play a mail client or a spammer's script. It connects through the node's
:class:`~sim.net.api.NodeNet` (so routing and router firewalls apply), then
speaks SMTP with aiosmtplib, one command at a time, and records every command
and reply in a :class:`Transcript`:

* ``connect`` — the TCP connection and the server's greeting (RFC 5321 §3.1);
* ``helo`` — EHLO, falling back to HELO on 500/502 (RFC 5321 §3.2);
* ``starttls`` — RFC 3207; ``opportunistic`` (what MTAs do between each
  other: use it when offered, without verifying the certificate, RFC 7435),
  ``required`` (what a mail client does before AUTH, RFC 8314 §3.3), ``none``,
  or ``implicit`` (TLS from the first byte, port 465, RFC 8314 §3.3);
* ``auth`` — AUTH PLAIN or LOGIN (RFC 4954, RFC 4616). The command is sent even
  when the server does not advertise AUTH, so that a student sees the
  server's own answer (``538 5.7.11`` before STARTTLS);
* ``mail``, ``rcpt`` (one reply per recipient), ``data`` (the ``DATA`` command
  and the reply after the final dot, RFC 5321 §4.1.1.4).

A transaction stops at the first stage that fails; ``Transcript.failed_stage``
names it. Every exchange also becomes an ``smtp`` trace event (role
``client``), and a TLS handshake a ``tls`` event. Credentials never appear in
the trace.

Time-outs are given in lab seconds (RFC 5321 §4.5.3.2 suggests minutes) and
scaled by the lab clock, but never below :data:`MIN_REAL_TIMEOUT` real seconds.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import field
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any, Literal

import aiosmtplib

from sim.clock import LabClock
from sim.errors import NetworkError
from sim.events import ReplyJson, SmtpClientExchange, Tls
from sim.fastclass import dataclass
from sim.net.api import Dropped, LabConnectError, NodeNet, Refused, Unreachable

if TYPE_CHECKING:
    from sim.resolve import Emit
    from sim.services.base import NodeContext
    from sim.tls import LabCA

__all__ = [
    "MIN_REAL_TIMEOUT",
    "Exchange",
    "Reply",
    "SmtpClient",
    "Stage",
    "TlsMode",
    "Transcript",
    "dot_stuff",
]

# RFC 5321 §2.3.8: a message travels as lines ending in CRLF. Lone CR or LF
# become CRLF, as aiosmtplib does before DATA (its helpers are private, so
# they are copied here rather than imported; tests/test_upstream_shape.py
# compares the two while aiosmtplib still has them).
_LINE_ENDINGS = re.compile(rb"(?:\r\n|\n|\r(?!\n))")
# RFC 5321 §4.5.2: a line that starts with "." gets another one.
_LEADING_PERIOD = re.compile(rb"(?m)^\.")


def dot_stuff(message: bytes) -> bytes:
    """``message`` as it goes after DATA: CRLF line endings, the last line
    ended, leading dots doubled, then the final ``.`` line (RFC 5321
    §4.1.1.4, §4.5.2)."""
    lines = _LINE_ENDINGS.sub(b"\r\n", message)
    if not lines.endswith(b"\r\n"):
        lines += b"\r\n"
    return _LEADING_PERIOD.sub(b"..", lines) + b".\r\n"


#: The largest message (bytes) a trace keeps whole in its DATA event (for pcap).
PAYLOAD_LIMIT = 64 * 1024

Stage = Literal["connect", "helo", "starttls", "auth", "mail", "rcpt", "data"]
TlsMode = Literal["none", "opportunistic", "required", "implicit"]
AuthMechanism = Literal["PLAIN", "LOGIN"]

#: No time-out is shorter than this many real seconds, however fast the lab
#: clock runs: a loopback round trip on a busy machine must still fit.
MIN_REAL_TIMEOUT = 2.0

#: RFC 5321 §4.5.3.2: the client waits minutes, not seconds, for each reply.
DEFAULT_TIMEOUT = 300.0

#: Header lines longer than this are cut in the trace (a DKIM-Signature's b=).
HEADER_LINE_LIMIT = 400


def header_lines(data: bytes) -> list[str]:
    """The message's header section as sent, one unfolded line per field
    (RFC 5322 §2.2: the header ends at the first empty line)."""
    head = data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("utf-8", "replace")
    lines: list[str] = []
    for line in head.split("\n"):
        if line[:1] in (" ", "\t") and lines:
            lines[-1] += " " + line.strip()  # a folded continuation (RFC 5322 §2.2.3)
        elif line:
            lines.append(line)
    return [
        line if len(line) <= HEADER_LINE_LIMIT else line[: HEADER_LINE_LIMIT - 1] + "…"
        for line in lines
    ]


# RFC 3463 §2: class.subject.detail at the start of the reply text (RFC 2034).
_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})(?:\s+|$)")


@dataclass(frozen=True)
class Reply:
    """One SMTP reply: the code, the enhanced status code (RFC 3463) if the
    server sent one, and the text without it."""

    code: int
    enhanced: str | None
    text: str

    @classmethod
    def parse(cls, code: int, message: str) -> Reply:
        """Split ``5.7.1 Relay access denied`` into its enhanced code and text;
        a multi-line reply repeats the code on each line (RFC 2034 §4)."""
        lines = message.splitlines() or [""]
        enhanced: str | None = None
        texts = []
        for line in lines:
            match = _ENHANCED.match(line)
            if match:
                enhanced = enhanced or match.group(1)
                line = line[match.end() :]
            texts.append(line)
        return cls(code, enhanced, "\n".join(texts).strip())

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def transient(self) -> bool:
        """4xx: try again later (RFC 5321 §4.2.1)."""
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        """5xx: do not repeat the same request (RFC 5321 §4.2.1)."""
        return 500 <= self.code < 600

    def __str__(self) -> str:
        parts = [str(self.code)]
        if self.enhanced:
            parts.append(self.enhanced)
        if self.text:
            parts.append(self.text)
        return " ".join(parts)

    def to_json(self) -> ReplyJson:
        return {"code": self.code, "enhanced": self.enhanced, "text": self.text}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Reply:
        enhanced = raw.get("enhanced")
        return cls(int(raw["code"]), str(enhanced) if enhanced else None, str(raw.get("text", "")))


@dataclass(frozen=True)
class Exchange:
    """One command and what came back: a reply, or an error without one
    (time-out, connection lost, TLS handshake failure)."""

    stage: Stage
    command: str
    reply: Reply | None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "command": self.command,
            "reply": self.reply.to_json() if self.reply else None,
            "error": self.error,
        }


@dataclass
class Transcript:
    """Everything one SMTP transaction did, as data.

    ``failed_stage`` is None when the dialogue went as far as asked;
    ``delivered`` is True only when the server answered 2xx after the final
    dot (RFC 5321 §6.1: from then on the message is the server's
    responsibility). ``blocked`` is True when the TCP connection itself
    failed (the network dropped, refused or could not route it; ``verdict``
    then carries the network's decision); a server that accepted the
    connection but never greeted is not blocked, only failed at ``connect``.
    """

    address: str
    port: int
    server_name: str | None = None
    exchanges: list[Exchange] = field(default_factory=list)
    failed_stage: Stage | None = None
    error: str | None = None
    verdict: dict[str, Any] | None = None
    tls: dict[str, Any] | None = None
    authenticated: bool = False
    extensions: dict[str, str] = field(default_factory=dict)
    rcpt_replies: dict[str, Reply] = field(default_factory=dict)
    final: Reply | None = None
    #: The TCP connection was established (whatever SMTP then said).
    connected: bool = False

    @property
    def peer(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def accepted(self) -> list[str]:
        """Recipients the server accepted at RCPT."""
        return [r for r, reply in self.rcpt_replies.items() if reply.positive]

    @property
    def delivered(self) -> bool:
        return self.final is not None and self.final.positive

    @property
    def blocked(self) -> bool:
        return self.failed_stage == "connect" and not self.connected

    @property
    def last_reply(self) -> Reply | None:
        for exchange in reversed(self.exchanges):
            if exchange.reply is not None:
                return exchange.reply
        return None

    def reply_at(self, stage: Stage) -> Reply | None:
        """The last reply received at ``stage``."""
        for exchange in reversed(self.exchanges):
            if exchange.stage == stage and exchange.reply is not None:
                return exchange.reply
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "peer": self.peer,
            "server_name": self.server_name,
            "failed_stage": self.failed_stage,
            "error": self.error,
            "verdict": self.verdict,
            "tls": self.tls,
            "connected": self.connected,
            "authenticated": self.authenticated,
            "delivered": self.delivered,
            "rcpt_replies": {r: reply.to_json() for r, reply in self.rcpt_replies.items()},
            "final": self.final.to_json() if self.final else None,
            "exchanges": [e.to_json() for e in self.exchanges],
        }


class _Failed(Exception):
    """Ends the transaction at a stage (internal control flow)."""


class SmtpClient:
    """Sends mail from one node. ``emit`` records trace events
    (``NodeContext.record`` fits); ``ca`` provides the lab's TLS trust."""

    def __init__(
        self,
        net: NodeNet,
        clock: LabClock,
        *,
        emit: Emit | None = None,
        ca: LabCA | None = None,
    ) -> None:
        self.net = net
        self.clock = clock
        self.emit = emit
        self.ca = ca

    @classmethod
    def for_node(cls, ctx: NodeContext) -> SmtpClient:
        return cls(ctx.net, ctx.clock, emit=ctx.record, ca=ctx.ca)

    def _real(self, lab_seconds: float) -> float:
        return max(self.clock.real_seconds(lab_seconds), MIN_REAL_TIMEOUT)

    def _context(self, verify: bool, tls_context: ssl.SSLContext | None) -> ssl.SSLContext:
        if tls_context is not None:
            return tls_context
        if self.ca is not None:
            return self.ca.client_context(verify=verify)
        context = ssl.create_default_context()
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def send(
        self,
        address: IPv4Address,
        port: int,
        *,
        mail_from: str,
        rcpts: Sequence[str],
        data: bytes | None,
        helo: str,
        tls: TlsMode = "opportunistic",
        verify: bool = False,
        server_name: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        auth: tuple[str, str] | None = None,
        auth_mechanism: AuthMechanism | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float | None = None,
        trace_id: str | None = None,
        on_accepted: Callable[[Transcript], Awaitable[None]] | None = None,
    ) -> Transcript:
        """One transaction to ``address:port``; never raises for anything the
        network or the server does (it is all in the transcript).

        ``data=None`` stops after RCPT (a probe: which recipients would be
        accepted). ``server_name`` is the name TLS verifies and sends as SNI.
        ``on_accepted`` runs right after the 2xx to the final dot and before
        QUIT: the relay records the delivery durably there, so the window in
        which a crash could deliver the message twice stays as small as it can.
        ``timeout`` (each reply) and ``connect_timeout`` are in lab seconds.
        """
        transcript = Transcript(str(address), port, server_name=server_name)
        session = _Session(self, transcript, trace_id)
        smtp: aiosmtplib.SMTP | None = None
        try:
            smtp = await session.connect(tls, verify, tls_context, timeout, connect_timeout)
            await session.hello(smtp, helo)
            if tls in ("opportunistic", "required"):
                starttls = "starttls" in smtp.esmtp_extensions
                if starttls:
                    await session.starttls(smtp, self._context(verify, tls_context), helo)
                elif tls == "required":
                    session.fail(
                        "starttls",
                        "the server does not offer STARTTLS; "
                        "refusing to continue without encryption",
                    )
            if auth is not None:
                await session.authenticate(smtp, auth, auth_mechanism)
            await session.mail(smtp, mail_from)
            for rcpt in rcpts:
                await session.rcpt(smtp, rcpt)
            if not transcript.accepted:
                transcript.failed_stage = "rcpt"
                raise _Failed
            if data is not None:
                await session.data(smtp, data, on_accepted)
        except _Failed:
            pass
        finally:
            if smtp is not None:
                await session.quit(smtp)
        return transcript


class _Session:
    """The state of one transaction while it runs."""

    def __init__(self, client: SmtpClient, transcript: Transcript, trace_id: str | None) -> None:
        self.client = client
        self.t = transcript
        self.trace_id = trace_id
        self.timeout = MIN_REAL_TIMEOUT

    # -- recording ----------------------------------------------------------

    def record(
        self,
        stage: Stage,
        command: str,
        reply: Reply | None,
        error: str | None = None,
        payload: bytes | None = None,
        headers: list[str] | None = None,
    ) -> None:
        self.t.exchanges.append(Exchange(stage, command, reply, error))
        self.emit_exchange(stage, command, reply, error, payload, headers)

    def emit_exchange(
        self,
        stage: Stage,
        command: str,
        reply: Reply | None,
        error: str | None = None,
        payload: bytes | None = None,
        headers: list[str] | None = None,
    ) -> None:
        emit = self.client.emit
        if emit is None:
            return
        summary = f"→ {command}  ← {reply}" if reply is not None else f"→ {command}  ✗ {error}"
        # The message as it went on the wire (dot-stuffed, with the final
        # dot), for ``--pcap``; latin-1 so that any byte round-trips via JSON.
        # Not for big messages: a lab's log keeps thousands of events.
        keep = payload is not None and len(payload) <= PAYLOAD_LIMIT
        emit(
            self.trace_id,
            SmtpClientExchange(
                peer=self.t.peer,
                stage=stage,
                command=command,
                code=reply.code if reply else None,
                enhanced=reply.enhanced if reply else None,
                text=reply.text if reply else (error or ""),
                payload=payload.decode("latin-1") if keep and payload is not None else None,
                headers=headers,
            ),
            summary,
        )

    def fail(self, stage: Stage, error: str, command: str | None = None) -> None:
        """Record a failure without a reply and end the transaction."""
        if command is not None:
            self.record(stage, command, None, error)
        self.t.failed_stage = stage
        self.t.error = error
        raise _Failed

    def check(
        self, stage: Stage, command: str, response: aiosmtplib.SMTPResponse, ok: tuple[int, ...]
    ) -> Reply:
        reply = Reply.parse(response.code, response.message)
        self.record(stage, command, reply)
        if reply.code not in ok:
            self.t.failed_stage = stage
            raise _Failed
        return reply

    async def command(
        self, smtp: aiosmtplib.SMTP, stage: Stage, shown: str, *args: bytes
    ) -> aiosmtplib.SMTPResponse:
        try:
            return await smtp.execute_command(*args, timeout=self.timeout)
        except aiosmtplib.SMTPTimeoutError:
            self.fail(stage, "timed out waiting for the reply", shown)
        except aiosmtplib.SMTPServerDisconnected:
            self.fail(stage, "the server closed the connection", shown)
        except aiosmtplib.SMTPResponseException as err:
            # A reply aiosmtplib could not read (e.g. longer than it accepts).
            self.fail(stage, f"unreadable reply: {err.message}", shown)
        except ValueError as err:  # a control character in an argument
            self.fail(stage, f"not sent: {err}", shown)
        raise AssertionError("unreachable")  # fail() always raises

    # -- the stages ---------------------------------------------------------

    async def connect(
        self,
        tls: TlsMode,
        verify: bool,
        tls_context: ssl.SSLContext | None,
        timeout: float,
        connect_timeout: float | None,
    ) -> aiosmtplib.SMTP:
        client, t = self.client, self.t
        self.timeout = client._real(timeout)
        shown = f"connect {t.peer}" + (" (TLS)" if tls == "implicit" else "")
        address = IPv4Address(t.address)
        try:
            sock = await client.net.connect(
                address, t.port, trace_id=self.trace_id, timeout=connect_timeout
            )
        except LabConnectError as err:
            t.verdict = err.verdict.to_json() if err.verdict is not None else None
            kind = (
                "timed out (dropped)"
                if isinstance(err, Dropped)
                else "refused"
                if isinstance(err, Refused)
                else "unreachable"
                if isinstance(err, Unreachable)
                else "failed"
            )
            self.fail("connect", f"connection {kind}: {err.strerror or err}", shown)
        except (OSError, NetworkError) as err:
            self.fail("connect", f"connection failed: {err}", shown)
        t.connected = True
        use_tls = tls == "implicit"
        smtp = aiosmtplib.SMTP(
            hostname=t.server_name or t.address,
            sock=sock,
            timeout=self.timeout,
            use_tls=use_tls,
            start_tls=False,
            tls_context=client._context(verify, tls_context) if use_tls else None,
            local_hostname="localhost",  # unused: EHLO is sent explicitly below
        )
        try:
            greeting = await smtp.connect()
        except aiosmtplib.SMTPConnectResponseError as err:
            # A greeting other than 220, e.g. 554 (RFC 5321 §3.1: the server
            # may refuse the connection but must still answer SMTP commands).
            self.record("connect", shown, Reply.parse(err.code, err.message))
            t.failed_stage = "connect"
            smtp.close()
            raise _Failed from None
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as err:
            sock.close()
            cause = err.__cause__ if isinstance(err.__cause__, ssl.SSLError) else err
            if use_tls and isinstance(cause, ssl.SSLError):
                self.fail("connect", f"TLS handshake failed: {cause}", shown)
            self.fail("connect", f"no SMTP greeting: {err}", shown)
        if use_tls:
            self.note_tls(smtp, verify)
        self.record("connect", shown, Reply.parse(greeting.code, greeting.message))
        return smtp

    async def hello(self, smtp: aiosmtplib.SMTP, helo: str) -> None:
        shown = f"EHLO {helo}"
        try:
            response = await smtp.ehlo(hostname=helo, timeout=self.timeout)
        except aiosmtplib.SMTPHeloError as err:
            self.record("helo", shown, Reply.parse(err.code, err.message))
            if err.code not in (500, 502) or not smtp.is_connected:
                self.t.failed_stage = "helo"
                raise _Failed from None
            # RFC 5321 §3.2: an old server without ESMTP; say HELO instead.
            response = await self.command(smtp, "helo", f"HELO {helo}", b"HELO", helo.encode())
            self.check("helo", f"HELO {helo}", response, (250,))
            return
        except ValueError as err:
            self.fail("helo", f"not a usable HELO name: {err}", shown)
        except aiosmtplib.SMTPTimeoutError:
            self.fail("helo", "timed out waiting for the reply", shown)
        except aiosmtplib.SMTPServerDisconnected:
            self.fail("helo", "the server closed the connection", shown)
        self.record("helo", shown, Reply.parse(response.code, response.message))
        self.t.extensions = dict(smtp.esmtp_extensions)

    async def starttls(self, smtp: aiosmtplib.SMTP, context: ssl.SSLContext, helo: str) -> None:
        try:
            response = await smtp.starttls(
                tls_context=context,
                server_hostname=self.t.server_name or self.t.address,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPResponseException as err:
            self.record("starttls", "STARTTLS", Reply.parse(err.code, err.message))
            self.t.failed_stage = "starttls"
            raise _Failed from None
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as err:
            self.fail("starttls", f"TLS handshake failed: {err}", "STARTTLS")
        self.record("starttls", "STARTTLS", Reply.parse(response.code, response.message))
        self.note_tls(smtp, context.verify_mode != ssl.CERT_NONE)
        # RFC 3207 §4.2: forget what the server said before TLS; greet again.
        await self.hello(smtp, helo)

    def note_tls(self, smtp: aiosmtplib.SMTP, verified: bool) -> None:
        sslobj = smtp.get_transport_info("ssl_object")
        if sslobj is None:
            return
        cipher = sslobj.cipher()
        self.t.tls = {
            "version": sslobj.version(),
            "cipher": cipher[0] if cipher else None,
            "verified": verified,
        }
        emit = self.client.emit
        if emit is not None:
            emit(
                self.trace_id,
                Tls(
                    peer=self.t.peer,
                    version=self.t.tls["version"],
                    cipher=self.t.tls["cipher"],
                    verified=verified,
                ),
                f"TLS with {self.t.peer}: {self.t.tls['version']} {self.t.tls['cipher']}"
                + ("" if verified else " (certificate not verified)"),
            )

    async def authenticate(
        self, smtp: aiosmtplib.SMTP, auth: tuple[str, str], mechanism: AuthMechanism | None
    ) -> None:
        user, password = auth
        offered = smtp.esmtp_extensions.get("auth", "").upper().split()
        if mechanism is None:
            mechanism = "LOGIN" if "LOGIN" in offered and "PLAIN" not in offered else "PLAIN"
        if mechanism == "PLAIN":
            # RFC 4616: authzid NUL authcid NUL password, in one base64 string.
            token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
            shown = "AUTH PLAIN ********"
            response = await self.command(smtp, "auth", shown, b"AUTH", b"PLAIN", token)
        else:
            shown = f"AUTH LOGIN {base64.b64encode(user.encode()).decode()}"
            response = await self.command(
                smtp, "auth", shown, b"AUTH", b"LOGIN", base64.b64encode(user.encode())
            )
            if response.code == 334:
                self.record("auth", shown, Reply.parse(response.code, response.message))
                shown = "********"
                response = await self.command(
                    smtp, "auth", shown, base64.b64encode(password.encode())
                )
        self.check("auth", shown, response, (235,))
        self.t.authenticated = True

    async def mail(self, smtp: aiosmtplib.SMTP, mail_from: str) -> None:
        # An empty reverse-path <> is how bounces are sent (RFC 5321 §4.5.5).
        shown = f"MAIL FROM:<{mail_from}>"
        response = await self.command(smtp, "mail", shown, b"MAIL", shown[5:].encode())
        self.check("mail", shown, response, (250,))

    async def rcpt(self, smtp: aiosmtplib.SMTP, rcpt: str) -> None:
        shown = f"RCPT TO:<{rcpt}>"
        response = await self.command(smtp, "rcpt", shown, b"RCPT", shown[5:].encode())
        reply = Reply.parse(response.code, response.message)
        self.record("rcpt", shown, reply)
        self.t.rcpt_replies[rcpt] = reply

    async def data(
        self,
        smtp: aiosmtplib.SMTP,
        data: bytes,
        on_accepted: Callable[[Transcript], Awaitable[None]] | None = None,
    ) -> None:
        response = await self.command(smtp, "data", "DATA", b"DATA")
        self.check("data", "DATA", response, (354,))
        protocol = smtp.protocol
        if protocol is None:
            self.fail("data", "the server closed the connection", "(message)")
        assert protocol is not None
        # RFC 5321 §4.5.2: lines that start with "." get another one; the
        # message ends with CRLF "." CRLF.
        body = dot_stuff(data)
        shown = f"(message, {len(data)} bytes) ."
        try:
            protocol.write(body)
            response = await protocol.read_response(timeout=self.timeout)
        except aiosmtplib.SMTPTimeoutError:
            smtp.close()
            self.fail("data", "timed out waiting for the reply to the final dot", shown)
        except aiosmtplib.SMTPServerDisconnected:
            smtp.close()
            self.fail("data", "the server closed the connection during DATA", shown)
        reply = Reply.parse(response.code, response.message)
        self.t.exchanges.append(Exchange("data", shown, reply))
        self.t.final = reply
        if reply.positive and on_accepted is not None:
            # The caller records the hand-over first (RFC 5321 §6.1: the
            # message is the server's now); the trace event can wait.
            await on_accepted(self.t)
        # The header lines as sent (From:, Subject:, DKIM-Signature:...), so
        # that the trace shows what the receiver's checks read.
        self.emit_exchange("data", shown, reply, payload=body, headers=header_lines(data))
        if not reply.positive:
            self.t.failed_stage = "data"
            raise _Failed

    async def quit(self, smtp: aiosmtplib.SMTP) -> None:
        task = asyncio.current_task()
        if not smtp.is_connected or (task is not None and task.cancelling()):
            # Being cancelled (the relay is stopping): drop the connection at
            # once rather than wait for a polite QUIT (RFC 5321 §4.1.1.10 lets
            # the server cope with a client that just goes away).
            smtp.close()
            return
        try:
            await asyncio.wait_for(smtp.quit(), self.timeout)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass
        finally:
            smtp.close()
