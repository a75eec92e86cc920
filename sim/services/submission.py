"""Message submission (RFC 6409): where a mail client hands over outgoing mail.

A submission server (MSA) is not an MX: it accepts mail for *any* destination,
but only from its own users, so it insists on who they are:

* **Credentials only under encryption.** Port 587 offers STARTTLS (RFC 3207)
  and advertises AUTH only after it; an AUTH sent in the clear is answered
  ``538 5.7.11 Encryption required for requested authentication mechanism``
  (RFC 4954 §6). Port 465 speaks TLS from the first byte (RFC 8314 §3.3, which
  now prefers it to STARTTLS).
* **AUTH PLAIN and LOGIN** (RFC 4616; LOGIN is the old de-facto mechanism)
  against the topology's users; wrong credentials get
  ``535 5.7.8 Authentication credentials invalid``.
* **No mail without AUTH**: ``530 5.7.0 Authentication required``.
* **Users send only as themselves**: a MAIL FROM that is not the
  authenticated address gets Postfix's
  ``553 5.7.1 <addr>: Sender address rejected: not owned by user USER``
  (``reject_sender_login_mismatch``). Otherwise anybody with an account could
  forge anybody's address through a trusted relay.

An accepted message gets a ``Received:`` header naming the client, the TLS
session and the authenticated user, ``with ESMTPSA`` (RFC 3848), and a
``Message-ID`` and ``Date`` if it lacks them (RFC 6409 §8.2, §8.3); then it is
queued at the relay on the same node, and only once the queue entry is on
disk does the client get ``250 2.0.0 Ok: queued as QUEUEID`` (RFC 5321 §6.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hmac
import logging
import re
import secrets
import ssl
from collections.abc import Callable
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import TYPE_CHECKING, Any, ClassVar

from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from sim.errors import ServiceError
from sim.events import SmtpServerAnswer
from sim.net.api import Endpoint
from sim.resolve import reverse_name
from sim.services.base import NodeContext, Service
from sim.services.smtpbase import LabSMTP, fault_sink, idle_timeout, session_trace_id
from sim.topology.model import SubmissionService

if TYPE_CHECKING:
    from sim.services.relay import RelayServer

__all__ = ["IMPLICIT_TLS_PORTS", "MAX_MESSAGE_SIZE", "SubmissionServer"]

#: Ports that speak TLS from the first byte (RFC 8314 §3.3: "submissions", 465).
IMPLICIT_TLS_PORTS = (465,)
#: Postfix's default message_size_limit (10 240 000 bytes), rounded.
MAX_MESSAGE_SIZE = 10 * 1024 * 1024
#: How long (real seconds) a client may take to finish the TLS handshake.
HANDSHAKE_TIMEOUT = 30.0


class _QuietLoginData(logging.Filter):
    """aiosmtpd sets its own deprecated ``Session.login_data`` after every
    successful AUTH and then warns about it; nothing here uses it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


_aiosmtpd_log = logging.getLogger("mail.log")
if not any(isinstance(f, _QuietLoginData) for f in _aiosmtpd_log.filters):
    _aiosmtpd_log.addFilter(_QuietLoginData())

_HEADER_LINE = re.compile(rb"^[!-9;-~]+:")
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")


def _printable(text: str) -> str:
    """A client's text made fit to echo in a reply (RFC 5321 §4.2: printable
    US-ASCII; a reply line is at most 512 octets)."""
    clean = "".join(c if " " <= c <= "~" else "?" for c in text)
    return clean if len(clean) <= 200 else clean[:197] + "..."


class _ImplicitTLS(asyncio.Protocol):
    """RFC 8314 §3.3: a TLS handshake first, then SMTP inside it.

    ``NodeNet.serve_tcp`` serves plain TCP on both backends; this protocol
    upgrades each connection (the same ``loop.start_tls`` aiosmtpd uses for
    STARTTLS) and only then gives the TLS transport to the SMTP protocol.
    """

    def __init__(self, inner: asyncio.Protocol, context: ssl.SSLContext) -> None:
        self.inner = inner
        self.context = context
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        # Nothing may be read before the TLS layer takes the socket over:
        # the client's ClientHello must reach it, not this protocol.
        transport.pause_reading()
        self._task = asyncio.get_running_loop().create_task(self._handshake(transport))

    async def _handshake(self, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(
                transport,
                self.inner,
                self.context,
                server_side=True,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError):
            # A client that does not speak TLS (or gives up): nothing to serve.
            transport.close()
            return
        if tls is None:
            transport.close()
            return
        self.inner.connection_made(tls)

    def data_received(self, data: bytes) -> None:  # pragma: no cover - reading is paused
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        # Only reached when the handshake never completed (afterwards the TLS
        # layer owns the transport and reports to the SMTP protocol).
        if self._task is not None and not self._task.done():
            self._task.cancel()


class _Handler:
    """aiosmtpd hooks of one submission server."""

    def __init__(self, service: SubmissionServer) -> None:
        self.service = service

    async def handle_EHLO(
        self, server: LabSMTP, session: Session, envelope: Envelope, hostname: str, lines: list[str]
    ) -> list[str]:
        # RFC 2034: the replies carry enhanced codes (5.7.0, 5.7.8...), so say so.
        session.host_name = hostname  # this (new-style) hook must set it itself
        return [*lines[:-1], "250-ENHANCEDSTATUSCODES", lines[-1]]

    async def handle_MAIL(
        self,
        server: LabSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        trace_id = session_trace_id(session)
        if not session.authenticated:
            # RFC 6409 §4.3 / RFC 4954 §6: submission requires authentication.
            return self.service.answer(
                trace_id,
                "MAIL",
                "530 5.7.0 Authentication required",
                "MAIL FROM before AUTH: a submission server relays only for its users",
            )
        # (aiosmtpd gives the null reverse-path as "<>": valid syntax.)
        if address not in ("", "<>") and not _ADDRESS.match(address.strip()):
            # Syntax before policy (RFC 5321 §4.1.2; Postfix parses the path
            # before any restriction): a non-address is nobody's to own.
            return self.service.answer(
                trace_id,
                "MAIL",
                f"501 5.1.7 <{_printable(address)}>: Bad sender address syntax",
                "MAIL FROM is not an address (local-part@domain)",
            )
        user = str(session.auth_data)
        if address.strip().lower() != user.lower():
            return self.service.answer(
                trace_id,
                "MAIL",
                f"553 5.7.1 <{address}>: Sender address rejected: not owned by user {user}",
                f"{user} may send only as {user}, not as <{address}>",
            )
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self,
        server: LabSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        if not _ADDRESS.match(address):
            return (
                f"501 5.1.3 <{address}>: Recipient address rejected: need fully-qualified address"
            )
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: LabSMTP, session: Session, envelope: Envelope) -> str:
        return await self.service.accept(server, session, envelope)


class SubmissionServer(Service):
    """The MSA of a node: 587 (STARTTLS) and 465 (implicit TLS) by default."""

    kind: ClassVar[str] = "submission"

    def __init__(self, ctx: NodeContext) -> None:
        super().__init__(ctx)
        config = ctx.node.services.submission
        if config is None:
            raise ServiceError(f"{ctx.node.name} has no submission service")
        self.config: SubmissionService = config
        self.users = {address.strip().lower(): password for address, password in config.users}
        self.handler = _Handler(self)
        self._context: ssl.SSLContext | None = None

    @property
    def hostname(self) -> str:
        if self.config.hostname:
            return self.config.hostname
        relay = self.ctx.node.services.relay
        if relay is not None and relay.hostname:
            return relay.hostname
        return self.ctx.node.name

    async def start(self) -> list[Endpoint]:
        loop = asyncio.get_running_loop()
        names = list(dict.fromkeys([self.hostname, self.ctx.node.name]))
        self._context = await loop.run_in_executor(None, self.ctx.ca.server_context, names)
        endpoints = []
        for port in self.config.ports:
            factory = self._factory(port)
            endpoints.append(await self.ctx.net.serve_tcp(self.kind, port, factory))
        return endpoints

    async def stop(self) -> None:
        # The node's NodeNet closes the listeners.
        return None

    def _factory(self, port: int) -> Callable[[], asyncio.Protocol]:
        # Each connection takes the certificate of the moment (``certificate``
        # may replace it while the lab runs).
        implicit = port in IMPLICIT_TLS_PORTS
        faults = fault_sink(self.ctx, f"submission {port}")

        def smtp() -> LabSMTP:
            return LabSMTP(
                self.handler,
                net=self.ctx.net,
                faults=faults,
                hostname=self.hostname,
                ident="maillab submission",
                data_size_limit=MAX_MESSAGE_SIZE,
                timeout=idle_timeout(self.ctx.clock),
                # 587: STARTTLS offered, AUTH hidden until it (RFC 3207, RFC 4954 §4).
                # 465: the whole session is TLS already, so AUTH is offered at once.
                tls_context=None if implicit else self._context,
                auth_require_tls=not implicit,
                authenticator=self._authenticate,
            )

        if implicit:
            return lambda: _ImplicitTLS(smtp(), self._tls())
        return smtp

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            raise ServiceError(f"{self.ctx.node.name} submission has not started")
        return self._context

    # -- control --------------------------------------------------------------

    async def control(self, command: str, **args: Any) -> dict[str, Any]:
        """``password`` user password: set a user's password, as a provider's
        account page does (a troubleshooting lab's rotated password);
        ``certificate`` names: serve a new certificate for these host names
        from the next connection on (one that does not match is a lab fault)."""
        if command == "certificate":
            names = args.get("names")
            if isinstance(names, str):
                names = [names]
            if (
                not isinstance(names, list)
                or not names
                or not all(isinstance(n, str) and n for n in names)
            ):
                raise ServiceError("certificate: give names, the host names it is for")
            loop = asyncio.get_running_loop()
            self._context = await loop.run_in_executor(None, self.ctx.ca.server_context, names)
            return {"names": names}
        if command != "password":
            raise ServiceError(
                f"submission has no control command {command!r} (certificate, password)"
            )
        user = str(args.get("user", "")).strip().lower()
        password = args.get("password")
        if user not in self.users:
            known = ", ".join(sorted(self.users)) or "none"
            raise ServiceError(f"{self.ctx.node.name} submission has no user {user!r} ({known})")
        if not isinstance(password, str) or not password:
            raise ServiceError("password: give the new password (text)")
        self.users[user] = password
        return {"user": user, "changed": True}

    # -- AUTH -----------------------------------------------------------------

    def _authenticate(
        self,
        server: LabSMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        trace_id = session_trace_id(session)
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace").strip()
        password = auth_data.password.decode("utf-8", "replace")
        expected = self.users.get(login.lower())
        # compare_digest: no timing difference between a wrong user and a wrong password.
        ok = expected is not None and hmac.compare_digest(
            expected.encode("utf-8"), password.encode("utf-8")
        )
        if not ok:
            self.answer(
                trace_id,
                f"AUTH {mechanism}",
                "535 5.7.8 Authentication credentials invalid",
                f"AUTH {mechanism} as {login!r} failed: "
                + ("no such user" if expected is None else "wrong password"),
            )
            # handled=False makes aiosmtpd send the 535 itself; with the
            # default (True) it sends nothing and the client hangs.
            return AuthResult(success=False, handled=False)
        self.answer(
            trace_id,
            f"AUTH {mechanism}",
            "235 2.7.0 Authentication successful",
            f"{login} authenticated with AUTH {mechanism}",
        )
        return AuthResult(success=True, auth_data=login.lower())

    # -- trace ----------------------------------------------------------------

    def answer(self, trace_id: str | None, command: str, reply: str, explanation: str) -> str:
        """Record a decision of this server in the trace and return the reply."""
        code, _, rest = reply.partition(" ")
        enhanced, _, text = rest.partition(" ")
        self.ctx.record(
            trace_id,
            SmtpServerAnswer(
                command=command,
                code=int(code),
                enhanced=enhanced,
                text=text,
                explanation=explanation,
            ),
            f"submission {command}: {reply} ({explanation})",
        )
        return reply

    # -- accepting a message --------------------------------------------------

    async def accept(self, server: LabSMTP, session: Session, envelope: Envelope) -> str:
        trace_id = session_trace_id(session)
        relay: RelayServer | None = self.ctx.services.get("relay")  # type: ignore[assignment]
        if relay is None or not hasattr(relay, "enqueue"):
            return self.answer(
                trace_id,
                "DATA",
                "451 4.3.0 Error: no relay on this node",
                "the submission service has no relay to hand the message to",
            )
        raw = envelope.original_content
        if not isinstance(raw, bytes):
            content = envelope.content or b""
            raw = (
                content.encode("utf-8", "surrogateescape") if isinstance(content, str) else content
            )
        queue_id = relay.new_queue_id()
        data = await self._prepare(server, session, envelope, raw, queue_id)
        try:
            await relay.enqueue(
                envelope.mail_from or "",
                list(envelope.rcpt_tos),
                data,
                trace_id=trace_id,
                authenticated_user=str(session.auth_data),
                queue_id=queue_id,
            )
        except (OSError, ValueError) as err:
            return self.answer(
                trace_id,
                "DATA",
                "451 4.3.0 Error: queue file write error",
                f"the relay could not store the message: {err}",
            )
        return self.answer(
            trace_id,
            "DATA",
            f"250 2.0.0 Ok: queued as {queue_id}",
            f"message from <{envelope.mail_from}> queued at the relay as {queue_id}",
        )

    async def _client_name(self, address: str, trace_id: str | None) -> str:
        """The client's PTR name, or ``unknown`` (as Postfix writes it)."""
        with contextlib.suppress(ValueError):
            answer = await self.ctx.resolver.query(reverse_name(address), "PTR", trace_id=trace_id)
            for record in answer.of_type("PTR"):
                return record.data.rstrip(".")
        return "unknown"

    async def _prepare(
        self,
        server: LabSMTP,
        session: Session,
        envelope: Envelope,
        raw: bytes,
        queue_id: str,
    ) -> bytes:
        trace_id = session_trace_id(session)
        peer = session.peer
        address = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        name = await self._client_name(address, trace_id)
        helo = session.host_name or address
        sslobj = server.transport.get_extra_info("ssl_object") if server.transport else None
        # RFC 3848: ESMTP + S (TLS) + A (AUTH).
        protocol = "ESMTP" if session.extended_smtp else "SMTP"
        if sslobj is not None:
            protocol += "S"
        if session.authenticated:
            protocol += "A"
        lines = [f"Received: from {helo} ({name} [{address}])"]
        if sslobj is not None:
            cipher = sslobj.cipher()
            lines.append(
                f"\t(using {sslobj.version()} with cipher {cipher[0] if cipher else 'unknown'})"
            )
        if session.authenticated:
            lines.append(f"\t(Authenticated sender: {session.auth_data})")
        by = f"\tby {self.hostname} (maillab) with {protocol} id {queue_id}"
        rcpts = list(envelope.rcpt_tos)
        # Like Postfix, name the recipient only when there is one (others
        # would learn who else got a copy).
        if len(rcpts) == 1:
            lines.append(by)
            lines.append(f"\tfor <{rcpts[0]}>; {email.utils.formatdate(usegmt=True)}")
        else:
            lines.append(f"{by}; {email.utils.formatdate(usegmt=True)}")
        added = ["\r\n".join(lines)]
        has_header = bool(_HEADER_LINE.match(raw))
        headers = BytesHeaderParser(policy=compat32).parsebytes(raw) if has_header else None
        # RFC 6409 §8.3 and §8.2: an MSA may add what the client left out.
        if headers is None or headers.get("Message-ID") is None:
            added.append(f"Message-ID: <{queue_id}.{secrets.token_hex(6)}@{self.hostname}>")
        if headers is None or headers.get("Date") is None:
            added.append(f"Date: {email.utils.formatdate(usegmt=True)}")
        prefix = ("\r\n".join(added) + "\r\n").encode("utf-8")
        if not has_header and not raw.startswith((b"\r\n", b"\n")):
            # A message without a header section: ours become its header.
            prefix += b"\r\n"
        return prefix + raw
