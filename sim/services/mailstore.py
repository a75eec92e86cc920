"""The mailbox store and the line connection the IMAP and POP3 sessions share.

What :mod:`sim.services.mailbox` serves: each user's Maildir folders
(:class:`MailStore`, :class:`MailFolder`: messages, flags as Maildir info
letters, UIDs kept in a ``maillab-uidlist`` file beside ``cur/``) and the
line-based connection with STARTTLS/implicit TLS that
:mod:`sim.services.imap` and :mod:`sim.services.pop3` read commands from.
Kept apart from the server so that the sessions and the server that starts
them do not import each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from sim.fastclass import dataclass
from sim.net.api import Peer
from sim.net.wirelog import WireConnection
from sim.services.maildir import FOLDERS, Maildir
from sim.services.memtrim import session_ended
from sim.topology.model import Node

__all__ = [
    "IMAP_PORTS",
    "IMPLICIT_TLS_PORTS",
    "POP3_PORTS",
    "Change",
    "LineConnection",
    "LineTooLong",
    "Mail",
    "MailFolder",
    "MailStore",
    "imap_flags",
    "mailbox_hostname",
    "maildir_letters",
]

log = logging.getLogger(__name__)

IMAP_PORTS = (143, 993)
POP3_PORTS = (110, 995)
#: RFC 8314 §3.3: "imaps" and "pop3s" speak TLS from the first byte.
IMPLICIT_TLS_PORTS = (993, 995)
#: Real seconds a TLS handshake may take.
HANDSHAKE_TIMEOUT = 10.0
#: Real seconds a client may stay silent (RFC 1939 §3 asks for at least ten
#: minutes of POP3 autologout; RFC 3501 §5.4 thirty for IMAP: ten is plenty here).
IDLE_TIMEOUT = 600.0

#: IMAP system flags and the Maildir info letters that store them
#: (the mapping Dovecot uses; ``P`` "passed" has no IMAP flag).
_FLAG_LETTER = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}
_LETTER_FLAG = {v: k for k, v in _FLAG_LETTER.items()}
#: Flags an IMAP client may set (the answer to SELECT's PERMANENTFLAGS).
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


def imap_flags(letters: str) -> list[str]:
    """Maildir info letters → IMAP flags (``"RS"`` → ``[\\Answered, \\Seen]``)."""
    return [flag for flag in SYSTEM_FLAGS if _FLAG_LETTER[flag] in letters]


def maildir_letters(flags: list[str] | tuple[str, ...] | set[str]) -> str:
    """IMAP flags → Maildir letters, in ASCII order as the Maildir spec asks;
    flags Maildir cannot store (keywords, ``\\Recent``) are left out."""
    wanted = {f.lower() for f in flags}
    return "".join(sorted(v for k, v in _FLAG_LETTER.items() if k.lower() in wanted))


def mailbox_hostname(node: Node) -> str:
    """The name the mailbox host's certificate is checked against: the MX's
    host name (the mail is on that host; Dovecot usually shares Postfix's
    certificate)."""
    mx = node.services.mx
    if mx is None:
        return node.name
    return mx.hostname or f"mx.{mx.domains[0]}"


# --- the Maildir as a client sees it -------------------------------------------------


@dataclass(frozen=True)
class Mail:
    """One message of a folder at the moment it was looked at."""

    uid: int
    key: str
    path: Path
    letters: str
    size: int
    in_new: bool
    mtime: float

    @property
    def flags(self) -> list[str]:
        return imap_flags(self.letters)


@dataclass(frozen=True)
class Change:
    """A file the MDA moved, renamed or deleted (for the trace)."""

    old: Path
    new: Path | None


@dataclass
class FolderState:
    uidvalidity: int
    uidnext: int
    mails: list[Mail]
    moved: list[Change] = field(default_factory=list)


def _split(name: str) -> tuple[str, str]:
    """``KEY:2,FLAGS`` → (KEY, FLAGS); a name in new/ has no info part."""
    key, _, info = name.partition(":")
    return key, info[2:] if info.startswith("2,") else ""


def crlf(data: bytes) -> bytes:
    """The message as it goes on the wire: every line ends in CRLF
    (RFC 5322 §2.3; RFC 3501 sizes count those octets)."""
    return re.sub(rb"\r?\n", b"\r\n", data)


class MailFolder:
    """One folder (a Maildir: ``cur/ new/ tmp/``) of one user.

    Every method does file work and runs in a worker thread; a lock makes the
    sessions of one server (IMAP and POP3 alike) take turns on a folder.
    """

    UIDLIST = "maillab-uidlist"

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self._lock = threading.Lock()
        self._sizes: dict[str, int] = {}

    # -- looking ----------------------------------------------------------

    def _entries(self) -> list[tuple[str, str, Path]]:
        """(key, letters, path) of every message file in new/ and cur/."""
        out = []
        for sub in ("new", "cur"):
            directory = self.path / sub
            try:
                names = os.listdir(directory)
            except FileNotFoundError:
                continue
            for name in names:
                if name.startswith("."):
                    continue
                key, letters = _split(name)
                out.append((key, letters if sub == "cur" else "", directory / name))
        return out

    def _find(self, key: str) -> Path | None:
        for found, _, path in self._entries():
            if found == key:
                return path
        return None

    def _load_uids(self) -> tuple[int, int, dict[str, int]]:
        try:
            raw = json.loads((self.path / self.UIDLIST).read_text())
            uids = {str(k): int(v) for k, v in raw["uids"].items()}
            return int(raw["uidvalidity"]), int(raw["uidnext"]), uids
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            # No list yet (or a damaged one): start afresh with a new
            # UIDVALIDITY, which tells clients to forget their cached UIDs
            # (RFC 3501 §2.3.1.1).
            return int(time.time()), 1, {}

    def _save_uids(self, uidvalidity: int, uidnext: int, uids: dict[str, int]) -> None:
        tmp = self.path / f".{self.UIDLIST}.tmp"
        tmp.write_text(
            json.dumps({"uidvalidity": uidvalidity, "uidnext": uidnext, "uids": uids}, indent=1)
        )
        os.replace(tmp, self.path / self.UIDLIST)

    def _size(self, key: str, path: Path) -> int:
        # A Maildir message never changes once in new/ (only its name does):
        # its size can be remembered.
        size = self._sizes.get(key)
        if size is None:
            size = len(crlf(path.read_bytes()))
            self._sizes[key] = size
        return size

    def scan(self, move_new: bool = False) -> FolderState:
        """Every message, oldest UID first. ``move_new``: what a client that
        opens the folder read-write does (Maildir spec: a reader moves what it
        has seen from ``new/`` to ``cur/``, adding the empty info ``:2,``)."""
        with self._lock:
            if not (self.path / "cur").is_dir():
                return FolderState(int(time.time()), 1, [])
            moved: list[Change] = []
            if move_new:
                for key, _, path in self._entries():
                    if path.parent.name == "new":
                        target = self.path / "cur" / f"{key}:2,"
                        with contextlib.suppress(FileNotFoundError):
                            os.rename(path, target)
                            moved.append(Change(path, target))
            uidvalidity, uidnext, uids = self._load_uids()
            before = dict(uids)
            entries = []
            for key, letters, path in self._entries():
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue  # moved by someone else while we looked
                entries.append((stat.st_mtime, key, letters, path))
            # New messages get UIDs in arrival order (the key starts with
            # the delivery time; the mtime settles ties within a second).
            for _, key, _, _ in sorted(entries):
                if key not in uids:
                    uids[key] = uidnext
                    uidnext += 1
            present = {key for _, key, _, _ in entries}
            uids = {k: v for k, v in uids.items() if k in present}
            if uids != before or not (self.path / self.UIDLIST).exists():
                self._save_uids(uidvalidity, uidnext, uids)
            mails = []
            for mtime, key, letters, path in entries:
                try:
                    size = self._size(key, path)
                except FileNotFoundError:
                    continue
                mails.append(
                    Mail(uids[key], key, path, letters, size, path.parent.name == "new", mtime)
                )
            return FolderState(uidvalidity, uidnext, sorted(mails, key=lambda m: m.uid), moved)

    def read(self, key: str) -> bytes | None:
        """The message with CRLF line ends, or None if it is gone."""
        with self._lock:
            path = self._find(key)
            if path is None:
                return None
            try:
                return crlf(path.read_bytes())
            except FileNotFoundError:
                return None

    # -- changing -----------------------------------------------------------

    def set_letters(self, key: str, letters: str) -> tuple[Change | None, str | None]:
        """Give the message exactly these flags: rename it to
        ``cur/KEY:2,LETTERS``. Returns the change (None when nothing moved)
        and the letters now in force (None when the message is gone)."""
        letters = "".join(sorted(set(letters)))
        with self._lock:
            path = self._find(key)
            if path is None:
                return None, None
            target = self.path / "cur" / f"{key}:2,{letters}"
            if path == target:
                return None, letters
            try:
                os.rename(path, target)
            except FileNotFoundError:
                return None, None
            return Change(path, target), letters

    def remove(self, key: str) -> Change | None:
        """Delete the message's file (POP3 DELE + QUIT, IMAP EXPUNGE)."""
        with self._lock:
            path = self._find(key)
            if path is None:
                return None
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            self._sizes.pop(key, None)
            return Change(path, None)


class MailStore:
    """The Maildirs of one host, as the IMAP and POP3 servers use them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.maildir = Maildir(root)
        self._folders: dict[tuple[str, str], MailFolder] = {}
        self._lock = threading.Lock()

    @staticmethod
    def folder_name(name: str) -> str | None:
        """The folder a client means (``INBOX`` in any case, RFC 3501 §5.1),
        or None if there is no such folder."""
        if name.upper() == "INBOX":
            return "INBOX"
        return name if name in FOLDERS else None

    def folder(self, user: str, name: str) -> MailFolder:
        canonical = self.folder_name(name)
        if canonical is None:
            raise KeyError(name)
        with self._lock:
            found = self._folders.get((user, canonical))
            if found is None:
                path = self.root / user
                if canonical != "INBOX":
                    path = path / f".{canonical}"  # Maildir++, as maildir.py writes it
                found = MailFolder(path, canonical)
                self._folders[(user, canonical)] = found
            return found

    def ensure(self, user: str) -> None:
        """Make ``user``'s Maildir and folders if they are not there yet.

        The MX may be making the same directories at this moment (both
        services start together, and it creates on delivery); the stdlib's
        ``mkdir`` then fails with EEXIST for one of the two: try again.
        """
        for attempt in range(5):
            try:
                self.maildir.create(user)
                return
            except (FileExistsError, FileNotFoundError):
                if attempt == 4:
                    raise
                time.sleep(0.01 * (attempt + 1))

    def relative(self, path: Path) -> str:
        """A path as a student finds it under the host's mail directory."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


# --- one client connection, line by line ------------------------------------------


class LineTooLong(Exception):
    """A command line longer than the protocol allows (it has been skipped)."""


class LineConnection(asyncio.Protocol):
    """A server-side connection read line by line, with STARTTLS.

    Written on :class:`asyncio.Protocol` rather than streams because of one
    rule of RFC 2595 §3.1 / RFC 3501 §6.2.1: after STLS/STARTTLS the server
    must throw away whatever the client sent in plain text after the command
    (else an attacker on the path could inject commands that look as if they
    came through TLS); here the buffer is ours to clear.
    """

    def __init__(
        self,
        run: Callable[[LineConnection], Awaitable[None]],
        peer_of: Callable[[asyncio.BaseTransport], Peer],
        *,
        limit: int,
        implicit_tls: ssl.SSLContext | None = None,
        on_close: Callable[[LineConnection], None] | None = None,
        record: Callable[[asyncio.BaseTransport, Peer], WireConnection | None] | None = None,
    ) -> None:
        self._run = run
        self._peer_of = peer_of
        self.limit = limit
        self._implicit = implicit_tls
        self._on_close = on_close
        self._record = record
        #: Both sides' bytes while a capture runs (a real client, sim.net.wirelog).
        self.wire: WireConnection | None = None
        self.transport: asyncio.Transport | None = None
        self.peer = Peer(IPv4Address(0), 0)  # the client's lab identity, from connection_made
        self.secure = False
        self._buf = bytearray()
        self._eof = False
        self._skipping = False
        self._waiter: asyncio.Future[None] | None = None
        self._paused_reading = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = self._peer_of(transport)
        if self._record is not None:
            self.wire = self._record(transport, self.peer)
            if self.wire is not None and self._implicit is not None:
                self.wire.secured()  # ports 993/995: TLS from the first byte (RFC 8314)
        if self._implicit is not None:
            # Nothing may be read before TLS takes over the socket: the
            # client's ClientHello belongs to the TLS layer.
            transport.pause_reading()
        self.task = asyncio.get_running_loop().create_task(self._main())

    def data_received(self, data: bytes) -> None:
        if self.wire is not None:
            self.wire.client_sent(data)  # plain text: after TLS, what it decrypted
        self._buf += data
        if len(self._buf) > 4 * self.limit and self.transport is not None:
            # A client that sends faster than we answer: stop reading until
            # the lines already here have been dealt with.
            self.transport.pause_reading()
            self._paused_reading = True
        self._wake()

    def eof_received(self) -> bool | None:
        self._eof = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        if self.wire is not None:
            self.wire.close()
        session_ended()  # (see sim.services.memtrim)
        self._wake()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- the session's side -------------------------------------------------

    async def _main(self) -> None:
        try:
            if self._implicit is not None and not await self._handshake(self._implicit):
                return
            await self._run(self)
        except (ConnectionError, TimeoutError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must end one session, never the server
            log.exception("mailbox: session with %s failed", self.peer)
        finally:
            self.close()
            if self._on_close is not None:
                self._on_close(self)

    async def _wait(self) -> None:
        if self._paused_reading and self.transport is not None:
            self._paused_reading = False
            self.transport.resume_reading()
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def readline(self, timeout: float = IDLE_TIMEOUT) -> bytes | None:
        """The next line with its line end; None when the client has gone.
        Raises :class:`LineTooLong` after skipping an over-long line."""
        async with asyncio.timeout(timeout):
            while True:
                index = self._buf.find(b"\n")
                if index >= 0:
                    line = bytes(self._buf[: index + 1])
                    del self._buf[: index + 1]
                    if self._skipping or len(line) > self.limit:
                        self._skipping = False
                        raise LineTooLong
                    return line
                if len(self._buf) > self.limit:
                    # Keep memory bounded: drop what we have and skip to the
                    # end of this line.
                    self._skipping = True
                    self._buf.clear()
                if self._eof:
                    return None
                await self._wait()

    async def read_exactly(self, size: int, timeout: float = IDLE_TIMEOUT) -> bytes | None:
        """``size`` octets (an IMAP literal); None when the client has gone."""
        async with asyncio.timeout(timeout):
            while len(self._buf) < size:
                if self._eof:
                    return None
                await self._wait()
            data = bytes(self._buf[:size])
            del self._buf[:size]
            return data

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if self.wire is not None:
                self.wire.server_sent(data)
            self.transport.write(data)

    async def drain(self) -> None:
        if self._write_paused and not self._eof:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    @property
    def closed(self) -> bool:
        return self._eof or self.transport is None or self.transport.is_closing()

    async def start_tls(self, context: ssl.SSLContext, go_ahead: bytes) -> bool:
        """Send ``go_ahead`` (the positive answer to STARTTLS/STLS), then
        upgrade to TLS. False if the handshake failed (the connection is closed)."""
        await self.drain()
        # RFC 2595 §3.1, RFC 3501 §6.2.1: plain-text bytes pipelined after
        # the command are not to be trusted: discard them. No await from here
        # to the handshake, so the client's ClientHello (sent only after it
        # reads go_ahead) reaches the TLS layer, never this buffer.
        self._buf.clear()
        self._skipping = False
        self.write(go_ahead)
        return await self._handshake(context)

    async def _handshake(self, context: ssl.SSLContext) -> bool:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(
                self.transport,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError):
            # A client that does not speak TLS, or rejected our certificate.
            self.transport.close()
            return False
        if tls is None:
            self.transport.close()
            return False
        self.transport = tls
        self.secure = True
        if self.wire is not None:
            self.wire.secured()
        return True

    def tls_info(self) -> dict[str, Any]:
        sslobj = self.transport.get_extra_info("ssl_object") if self.transport else None
        if sslobj is None:
            return {}
        cipher = sslobj.cipher()
        return {"version": sslobj.version(), "cipher": cipher[0] if cipher else None}

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection at once (no TLS close_notify): the server is stopping."""
        if self.transport is not None:
            self.transport.abort()


# --- the service ----------------------------------------------------------------------
