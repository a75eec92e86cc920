"""The ``read`` experiment: open a mailbox as a mail client would (lab 10).

The last hop of a message is not SMTP: the MX (the MTA) has stored it in the
recipient's Maildir, and the recipient's client fetches it from the MDA over
IMAP (RFC 3501) or POP3 (RFC 1939)::

    client → MSA (587/465) → relay → MX (25) → Maildir → IMAP/POP3 → client

From a node, this experiment connects to a mailbox host, secures the
connection (STARTTLS on 143 / STLS on 110, checking the server's certificate
against the lab CA; or TLS from the first byte on 993 / 995, RFC 8314),
logs in, lists and fetches the messages of a folder, and logs out. The
clients are the standard library's :mod:`imaplib` and :mod:`poplib`, run in a
worker thread on a socket the lab network connected; every command and
reply goes into the trace (``imap`` / ``pop3`` events, passwords masked).

Fetching a message the way a client opens it (``BODY[]``, ``RETR``) marks
it read: the file moves from ``new/`` to ``cur/`` and gets the ``S`` flag.
``peek=True`` looks without touching (``EXAMINE`` + ``BODY.PEEK[]``, ``TOP``).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import functools
import imaplib
import poplib
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any, ClassVar

from sim.errors import NetworkError, SimError
from sim.experiments import Experiment, ExperimentResult, resolve_host
from sim.experiments.params import param
from sim.net.api import LabConnectError
from sim.services.mailstore import IMPLICIT_TLS_PORTS, mailbox_hostname
from sim.spec.kinds import Bool, Int, Str
from sim.trace import Trace

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

    from sim.services.base import NodeContext

__all__ = ["PORTS", "PROTOCOLS", "Read", "ReadResult"]

PROTOCOLS = ("imap", "pop3")
#: Default ports: (with STARTTLS or plain, with implicit TLS).
PORTS = {"imap": (143, 993), "pop3": (110, 995)}
#: Real seconds the client waits for any one reply.
REAL_TIMEOUT = 15.0
#: At most this many reply lines of one command go into its trace event.
TRACE_LINES = 40
MASK = "********"


@dataclass(repr=False)
class ReadResult(ExperimentResult):
    """What the client saw. ``error`` is None when it read the folder;
    otherwise ``stage`` says where it stopped (connect, tls, greeting,
    starttls, login, select, list, fetch) and ``reply`` holds the server's
    answer there (``status`` OK/NO/BAD or +OK/-ERR, the response ``code``
    such as AUTHENTICATIONFAILED or AUTH, and the ``text``)."""

    protocol: str = "imap"
    folder: str = "INBOX"
    server: str = ""
    hostname: str = ""
    user: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    stage: str | None = None
    reply: dict[str, Any] | None = None
    tls: dict[str, Any] | None = None
    verdict: dict[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "folder": self.folder,
            "server": self.server,
            "hostname": self.hostname,
            "user": self.user,
            "messages": self.messages,
            "error": self.error,
            "stage": self.stage,
            "reply": self.reply,
            "tls": self.tls,
            "verdict": self.verdict,
        }

    @property
    def ok(self) -> bool:
        return self.error is None


# --- recording the dialogue ------------------------------------------------------

_IMAP_REPLY = re.compile(
    r"^\S+ (?P<status>OK|NO|BAD|BYE|PREAUTH)(?: \[(?P<code>[^\]]*)\])? ?(?P<text>.*)$", re.I
)
_POP3_REPLY = re.compile(r"^(?P<status>[+]OK|-ERR)(?: \[(?P<code>[^\]]*)\])? ?(?P<text>.*)$", re.I)


def parse_reply(protocol: str, line: str) -> dict[str, Any]:
    """A status line as data: ``a1 NO [AUTHENTICATIONFAILED] Authentication
    failed.`` → status NO, code AUTHENTICATIONFAILED, text."""
    match = (_IMAP_REPLY if protocol == "imap" else _POP3_REPLY).match(line)
    if match:
        code = match.group("code")
        return {
            "status": match.group("status").upper(),
            "code": code.split()[0].upper() if code else None,
            "text": match.group("text"),
        }
    return {"status": None, "code": None, "text": line}


Emit = Callable[..., None]


class Dialogue:
    """The client's side of the conversation, one trace event per command.

    The stdlib clients hand every line they send and read to :meth:`sent` and
    :meth:`received`; a command and the lines that answer it become one
    event when the next command goes out (or at :meth:`flush`).
    """

    def __init__(self, protocol: str, peer: str, emit: Emit) -> None:
        self.protocol = protocol
        self.peer = peer
        self.emit = emit
        self.command: str | None = None
        self.lines: list[str] = []
        self.last: dict[str, Any] | None = None
        self._multiline = False

    def mask(self, line: str) -> str:
        if self.protocol == "pop3":
            return re.sub(r"^(PASS) .*$", rf"\1 {MASK}", line, flags=re.I)
        return re.sub(r"^(\S+ LOGIN \S+) .*$", rf"\1 {MASK}", line, flags=re.I)

    def sent(self, data: bytes) -> None:
        self.flush()
        self.command = self.mask(data.decode("utf-8", "replace").rstrip("\r\n"))
        words = self.command.split()
        # RFC 1939: these answer +OK with lines up to a lone "." (LIST and
        # UIDL only without an argument).
        self._multiline = bool(words) and (
            words[0].upper() in ("CAPA", "RETR", "TOP")
            or (words[0].upper() in ("LIST", "UIDL") and len(words) == 1)
        )

    def received(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        self.lines.append(text)
        # One event per command, as soon as its answer is complete.
        if self.command is None:
            done = True  # the greeting
        elif self.protocol == "imap":
            done = text.startswith(self.command.split(" ", 1)[0] + " ")
        elif self._multiline and self.lines[0].startswith("+OK"):
            done = text == "."
        else:
            done = True
        if done:
            self.flush()

    def flush(self) -> None:
        if self.command is None and not self.lines:
            return
        command, lines = self.command, self.lines
        self.command, self.lines = None, []
        if self.protocol == "imap":
            tag = command.split(" ", 1)[0] if command else None
            status = next((x for x in lines if tag and x.startswith(tag + " ")), None)
            if status is None:
                status = lines[-1] if lines else ""
            others = [x for x in lines if x is not status]
        else:
            status = lines[0] if lines else ""
            others = lines[1:-1] if lines[-1:] == ["."] and len(lines) > 1 else lines[1:]
        reply = parse_reply(self.protocol, status)
        self.last = {"command": command, "response": status, **reply}
        summary = (f"→ {command}  " if command else "") + f"← {status or '(no answer)'}"
        self.emit(
            self.protocol,
            summary,
            role="client",
            peer=self.peer,
            command=command,
            response=status,
            status=reply["status"],
            code=reply["code"],
            text=reply["text"],
            lines=others[:TRACE_LINES],
            more_lines=max(0, len(others) - TRACE_LINES),
        )


class _LabIMAP(imaplib.IMAP4):
    """:class:`imaplib.IMAP4` on a socket the lab network connected."""

    def __init__(
        self,
        sock: socket.socket,
        host: str,
        dialogue: Dialogue,
        implicit: ssl.SSLContext | None,
        on_tls: Callable[[Any], None],
    ) -> None:
        self._lab_sock = sock
        self._dialogue = dialogue
        self._implicit = implicit
        self._on_tls = on_tls
        # ``host`` is only the name TLS checks the certificate against.
        super().__init__(host, 0)

    def _get_capabilities(self) -> None:
        # imaplib asks CAPABILITY again right after the STARTTLS handshake
        # (RFC 3501 §6.2.1): note the TLS session before that exchange.
        if self._tls_established:
            self._on_tls(self.sock)
        super()._get_capabilities()  # type: ignore[misc]

    def _create_socket(self, timeout: float | None) -> socket.socket:
        if self._implicit is not None:
            return self._implicit.wrap_socket(self._lab_sock, server_hostname=self.host)
        return self._lab_sock

    def send(self, data: ReadableBuffer) -> None:
        self._dialogue.sent(bytes(data))
        super().send(data)

    def _get_line(self) -> bytes:
        line: bytes = super()._get_line()  # type: ignore[misc]
        self._dialogue.received(line)
        return line


class _LabPOP3(poplib.POP3):
    """:class:`poplib.POP3` on a socket the lab network connected."""

    def __init__(
        self, sock: socket.socket, host: str, dialogue: Dialogue, implicit: ssl.SSLContext | None
    ) -> None:
        self._lab_sock = sock
        self._dialogue = dialogue
        self._implicit = implicit
        super().__init__(host, 0)

    def _create_socket(self, timeout: float) -> socket.socket:
        if self._implicit is not None:
            return self._implicit.wrap_socket(self._lab_sock, server_hostname=self.host)
        return self._lab_sock

    def _putline(self, line: bytes) -> None:
        self._dialogue.sent(line)
        super()._putline(line)  # type: ignore[misc]

    def _getline(self) -> tuple[bytes, int]:
        line, octets = super()._getline()  # type: ignore[misc]
        self._dialogue.received(line)
        return line, octets


class _Stop(Exception):
    """The server said no: the reader stops at this stage."""


# --- the client sessions (run in a worker thread) ---------------------------------------


def _message(data: bytes) -> dict[str, Any]:
    """What a mail client shows of a message."""
    msg: Message
    try:
        msg = email.message_from_bytes(data, policy=email.policy.default)
        headers = [[k, str(v)] for k, v in msg.items()]
    except Exception:  # a malformed header: show the raw values rather than nothing
        msg = email.message_from_bytes(data, policy=email.policy.compat32)
        headers = [[k, str(v)] for k, v in msg.items()]
    values = dict((k.lower(), v) for k, v in reversed(headers))
    body = None
    if isinstance(msg, EmailMessage):
        try:
            part = msg.get_body(("plain",))
            body = part.get_content() if part is not None else None
        except (LookupError, ValueError, KeyError):
            body = None
    return {
        "subject": values.get("subject", ""),
        "from": values.get("from", ""),
        "headers": headers,
        "body": body,
    }


class _Reader:
    """One read: connect has happened; log in, list, fetch, log out."""

    def __init__(
        self,
        spec: Read,
        sock: socket.socket,
        hostname: str,
        port: int,
        context: ssl.SSLContext,
        dialogue: Dialogue,
        emit: Emit,
    ) -> None:
        self.spec = spec
        self.sock = sock
        self.hostname = hostname
        self.port = port
        self.context = context
        self.dialogue = dialogue
        self.emit = emit
        self.stage = "greeting"
        self.tls: dict[str, Any] | None = None
        self.messages: list[dict[str, Any]] = []
        self.reply: dict[str, Any] | None = None
        self.client: Any = None

    @property
    def implicit(self) -> bool:
        return self.port in IMPLICIT_TLS_PORTS

    def note_tls(self, sock: Any) -> None:
        self.dialogue.flush()
        if not isinstance(sock, ssl.SSLSocket) or self.tls is not None:
            return
        cipher = sock.cipher()
        self.tls = {
            "version": sock.version(),
            "cipher": cipher[0] if cipher else None,
            "verified": True,
        }
        self.emit(
            "tls",
            f"TLS with {self.dialogue.peer}: {self.tls['version']} {self.tls['cipher']} "
            f"(certificate for {self.hostname} checked against the lab CA)",
            peer=self.dialogue.peer,
            server_name=self.hostname,
            **self.tls,
        )

    def freeze(self) -> None:
        """Keep the reply the read failed on (a polite LOGOUT/QUIT follows)."""
        self.dialogue.flush()
        if self.reply is None:
            self.reply = self.dialogue.last

    def fail(self, error: str, with_reply: bool = True) -> tuple[str, str, dict[str, Any] | None]:
        self.freeze()
        return error, self.stage, self.reply if with_reply else None

    def run(self) -> tuple[str, str, dict[str, Any] | None] | None:
        """None on success, else (error, stage, reply)."""
        self.sock.setblocking(True)
        self.sock.settimeout(REAL_TIMEOUT)
        try:
            if self.spec.protocol == "imap":
                self.imap()
            else:
                self.pop3()
        except _Stop as stop:
            return self.fail(str(stop))
        except ssl.SSLError as err:
            reason = getattr(err, "verify_message", None) or err
            return self.fail(f"TLS handshake failed: {reason}", with_reply=False)
        except (imaplib.IMAP4.error, poplib.error_proto) as err:
            text = err.args[0] if err.args else err
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            return self.fail(f"{self.stage}: {text}")
        except TimeoutError:
            return self.fail(
                f"{self.stage}: no answer from the server in {REAL_TIMEOUT:.0f} s", with_reply=False
            )
        except OSError as err:
            return self.fail(f"{self.stage}: connection lost ({err.strerror or err})", False)
        finally:
            self.dialogue.flush()
            self.close()
        return None

    def close(self) -> None:
        # After STARTTLS the client holds a TLS socket and a file over it,
        # not the socket it was given: close what it holds.
        for name in ("file", "sock"):
            with contextlib.suppress(Exception):
                getattr(self.client, name).close()
        self.sock.close()

    # -- IMAP (RFC 3501) ----------------------------------------------------------

    def imap(self) -> None:
        spec = self.spec
        if self.implicit:
            self.stage = "tls"
        client = _LabIMAP(
            self.sock,
            self.hostname,
            self.dialogue,
            self.context if self.implicit else None,
            self.note_tls,
        )
        self.client = client
        if self.implicit:
            self.note_tls(client.sock)
        try:
            self.stage = "greeting"
            if spec.tls and not self.implicit:
                self.stage = "starttls"
                client.starttls(self.context)  # RFC 3501 §6.2.1, then CAPABILITY again
            self.stage = "login"
            try:
                client.login(spec.user, spec.password)
            except imaplib.IMAP4.error:
                raise _Stop(self._refused()) from None
            self.stage = "select"
            # EXAMINE opens read-only: nothing moves, no flag changes (§6.3.2).
            typ, data = client.select(_imap_quote(spec.folder), readonly=spec.peek)
            if typ != "OK":
                raise _Stop(f"cannot open {spec.folder}: {self._last_text()}")
            count = int(data[0] or b"0") if data and data[0] else 0
            if count:
                self.stage = "fetch"
                body = "BODY.PEEK[]" if spec.peek else "BODY[]"
                typ, data = client.uid("FETCH", "1:*", f"(UID FLAGS RFC822.SIZE {body})")
                if typ != "OK":
                    raise _Stop(f"fetch failed: {self._last_text()}")
                self.messages = _imap_messages(data)
            self.stage = "logout"
            client.logout()
        except BaseException:
            self.freeze()
            with contextlib.suppress(Exception):
                if self.stage in ("login", "select", "fetch"):
                    client.logout()  # a polite client says goodbye even after a NO
            raise

    def _last_text(self) -> str:
        self.dialogue.flush()
        last = self.dialogue.last or {}
        return str(last.get("response") or "")

    def _refused(self) -> str:
        reply = self.dialogue.last or {}
        self.dialogue.flush()
        reply = self.dialogue.last or reply
        return f"login refused: {reply.get('response') or ''}".strip()

    # -- POP3 (RFC 1939) ----------------------------------------------------------

    def pop3(self) -> None:
        spec = self.spec
        if self.implicit:
            self.stage = "tls"
        client = _LabPOP3(
            self.sock, self.hostname, self.dialogue, self.context if self.implicit else None
        )
        self.client = client
        if self.implicit:
            self.note_tls(client.sock)
        try:
            self.stage = "greeting"
            if spec.tls and not self.implicit:
                self.stage = "starttls"
                client.stls(self.context)  # RFC 2595 §4 (poplib asks CAPA first)
                self.note_tls(client.sock)
            self.stage = "login"
            try:
                client.user(spec.user)
                client.pass_(spec.password)
            except poplib.error_proto:
                raise _Stop(self._refused()) from None
            self.stage = "list"
            _, lines, _ = client.uidl()
            uids = dict(line.decode("utf-8", "replace").split(" ", 1) for line in lines)
            _, lines, _ = client.list()
            sizes = dict(line.decode("ascii", "replace").split(" ", 1) for line in lines)
            self.stage = "fetch"
            for number in sorted(sizes, key=int):
                _, body, _ = client.top(int(number), 0) if spec.peek else client.retr(int(number))
                shown = _message(b"\r\n".join(body) + b"\r\n")
                self.messages.append(
                    {
                        "uid": uids.get(number),
                        "number": int(number),
                        "size": int(sizes[number]),
                        "flags": [],
                        **shown,
                    }
                )
            # QUIT enters the UPDATE state: only now does the server mark what
            # was retrieved as read (RFC 1939 §6).
            self.stage = "quit"
            client.quit()
        except BaseException:
            self.freeze()
            with contextlib.suppress(Exception):
                if self.stage in ("login", "list", "fetch"):
                    client.quit()
            raise


def _imap_quote(name: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9._-]+", name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _imap_messages(data: list[Any]) -> list[dict[str, Any]]:
    """imaplib's FETCH answer, ``[(b'1 (UID 1 FLAGS (\\Seen) ... BODY[] {n}', body), b')']``,
    as one dict per message."""
    out = []
    for i, item in enumerate(data):
        if not isinstance(item, tuple):
            continue
        meta = item[0].decode("utf-8", "replace")
        after = data[i + 1] if i + 1 < len(data) and isinstance(data[i + 1], bytes) else b""
        meta += " " + after.decode("utf-8", "replace")
        uid = re.search(r"\bUID (\d+)", meta)
        size = re.search(r"\bRFC822\.SIZE (\d+)", meta)
        flags = re.search(r"\bFLAGS \(([^)]*)\)", meta)
        seq = re.match(r"\s*(\d+) ", meta)
        out.append(
            {
                "uid": int(uid.group(1)) if uid else None,
                "number": int(seq.group(1)) if seq else None,
                "size": int(size.group(1)) if size else len(item[1]),
                "flags": flags.group(1).split() if flags else [],
                **_message(item[1]),
            }
        )
    return out


# --- the experiment ------------------------------------------------------------------


@dataclass(frozen=True)
class Read(Experiment):
    """Read a mailbox as a mail client would (IMAP or POP3).

    ``folder`` of ``user`` on the mailbox host ``via`` (a node, an address,
    or a host name looked up in the lab DNS)."""

    kind: ClassVar[str] = "read"
    noun: ClassVar[str] = "a mailbox read over IMAP or POP3"
    via: str = field(
        metadata=param(
            Str(), "the mailbox host: a node running `mailbox`, or its name", metavar="NODE"
        )
    )
    user: str = field(metadata=param(Str(), "the mailbox owner", metavar="U"))
    password: str = field(metadata=param(Str(), metavar="P"))
    protocol: str = field(default="imap", metadata=param(Str(enum=PROTOCOLS), "imap or pop3"))
    folder: str = field(default="INBOX", metadata=param(Str(), "the folder (IMAP): INBOX, Junk"))
    tls: bool = field(
        default=True,
        metadata=param(
            Bool(),
            "STARTTLS/STLS before logging in; false shows the "
            "server refusing a clear-text password",
        ),
    )
    port: int | None = field(
        default=None,
        metadata=param(
            Int(minimum=1, maximum=65535),
            "override the port: 143/110 (STARTTLS, the default) or 993/995 (implicit TLS)",
        ),
    )
    peek: bool = field(default=False, metadata=param(Bool(), "look without marking messages read"))

    def describe(self, node: str) -> str:
        return f"read {self.user}'s {self.folder} from {node} via {self.via} ({self.protocol})"

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise SimError(f"read: protocol {self.protocol!r}: choose imap or pop3")
        if self.protocol == "pop3" and self.folder.upper() != "INBOX":
            raise SimError("read: POP3 has no folders: it reads the INBOX only (use IMAP)")
        if not self.tls and self.port in IMPLICIT_TLS_PORTS:
            raise SimError(f"read: port {self.port} speaks TLS from the first byte: drop --no-tls")

    @property
    def server_port(self) -> int:
        if self.port is not None:
            return self.port
        return PORTS[self.protocol][0]

    async def target(self, ctx: NodeContext, trace: Trace) -> tuple[IPv4Address, str]:
        """The address to connect to and the name its certificate must carry."""
        try:
            address = ctx.network.address_of(self.via)
        except NetworkError:
            address = None
        if address is None:
            address = await resolve_host(ctx, self.via, trace)
            if not _is_ip(self.via):
                return address, self.via  # a host name: the client checks that name
        owner = ctx.network.owner(address)
        node = ctx.network.node(owner) if owner is not None else None
        if node is None or node.kind != "host":
            return address, str(address)
        return address, mailbox_hostname(node)

    async def run(self, ctx: NodeContext, trace: Trace) -> ReadResult:
        port = self.server_port
        address, hostname = await self.target(ctx, trace)
        result = ReadResult(
            protocol=self.protocol,
            folder=self.folder,
            user=self.user,
            server=f"{address}:{port}",
            hostname=hostname,
        )
        try:
            sock = await ctx.net.connect(address, port, trace_id=trace.id)
        except LabConnectError as err:
            result.error, result.stage = f"blocked: {err.strerror or err}", "connect"
            result.verdict = err.verdict.to_json() if err.verdict else None
            return result
        loop = asyncio.get_running_loop()

        def emit(kind: str, summary: str, **data: Any) -> None:
            # Trace events are emitted on the lab's event loop only.
            loop.call_soon_threadsafe(functools.partial(ctx.emit, trace.id, kind, summary, **data))

        dialogue = Dialogue(self.protocol, result.server, emit)
        reader = _Reader(self, sock, hostname, port, ctx.ca.client_context(), dialogue, emit)
        failure = await loop.run_in_executor(None, reader.run)
        result.tls, result.messages = reader.tls, reader.messages
        if failure is not None:
            result.error, result.stage, result.reply = failure
            if result.reply is not None:
                result.reply = {k: result.reply[k] for k in ("status", "code", "text", "command")}
        return result


def _is_ip(text: str) -> bool:
    try:
        IPv4Address(text)
    except ValueError:
        return False
    return True
