"""The mail clients behind the ``read`` experiment (:mod:`sim.experiments.read`):
the standard library's :mod:`imaplib` and :mod:`poplib` on a socket the lab
network connected, with every command and reply recorded as a trace event
(passwords masked). Imported when a mailbox is read, not when the command
line is built.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import imaplib
import poplib
import re
import socket
import ssl
from collections.abc import Callable
from email.message import EmailMessage, Message
from typing import TYPE_CHECKING, Any

from sim.events import EventData, ImapExchange, Pop3Exchange, Tls
from sim.services.mailstore import IMPLICIT_TLS_PORTS

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

    from sim.experiments.read import Read

#: Real seconds the client waits for any one reply.
REAL_TIMEOUT = 15.0
#: At most this many reply lines of one command go into its trace event.
TRACE_LINES = 40
MASK = "********"


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


#: Records one event (its data, its summary) in the experiment's trace.
Emit = Callable[[EventData, str], None]


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
        exchange = ImapExchange if self.protocol == "imap" else Pop3Exchange
        self.emit(
            exchange(
                peer=self.peer,
                command=command,
                response=status,
                status=reply["status"],
                code=reply["code"],
                text=reply["text"],
                lines=others[:TRACE_LINES],
                more_lines=max(0, len(others) - TRACE_LINES),
            ),
            summary,
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


class Reader:
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
            Tls(
                peer=self.dialogue.peer,
                server_name=self.hostname,
                version=self.tls["version"],
                cipher=self.tls["cipher"],
                verified=True,
            ),
            f"TLS with {self.dialogue.peer}: {self.tls['version']} {self.tls['cipher']} "
            f"(certificate for {self.hostname} checked against the lab CA)",
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
