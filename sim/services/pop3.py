"""A POP3 server (RFC 1939) over a user's Maildir INBOX.

POP3 is the older, simpler way to read mail: log in, list the messages of
the maildrop (only the INBOX: POP3 has no folders), download them, and
usually delete them from the server. A session goes through three states
(RFC 1939 §3):

* AUTHORIZATION — ``USER`` and ``PASS``. A password is only taken over TLS:
  on 110 after ``STLS`` (RFC 2595 §4), on 995 from the start (RFC 8314 §3.3).
  Refusals carry response codes (RFC 2449 §8) such as ``[AUTH]`` (RFC 3206)
  and ``[IN-USE]`` (RFC 2449 §8.1.2), so a client can tell a wrong
  password from a locked maildrop.
* TRANSACTION — ``STAT LIST UIDL RETR TOP DELE RSET NOOP``. The maildrop is
  locked for this session (RFC 1939 §8) and the message numbers stay fixed.
  ``DELE`` only marks.
* UPDATE — entered by ``QUIT``: marked messages are deleted (their files
  removed) and retrieved ones become read: moved from ``new/`` to ``cur/``
  with the Maildir ``S`` flag. A session that ends without ``QUIT`` changes
  nothing (RFC 1939 §6), which is why a dropped connection never loses mail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from sim.events import MailboxLogin, MailboxLoginFailed, MailboxTls
from sim.services.mailstore import (
    Change,
    LineConnection,
    LineTooLong,
    Mail,
    MailFolder,
)

if TYPE_CHECKING:
    from sim.services.mailbox import MailboxServer

__all__ = ["Pop3Session"]

_PLAINTEXT = "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."


class Pop3Session:
    """One POP3 client connection."""

    #: RFC 2449 §4: a command line is at most 255 octets with its CRLF.
    MAX_LINE: ClassVar[int] = 255

    def __init__(self, server: MailboxServer, conn: LineConnection) -> None:
        self.server = server
        self.conn = conn
        self.trace_id = conn.peer.trace_id
        self.state = "authorization"
        self.login: str | None = None
        self.user: str | None = None
        self.folder: MailFolder | None = None
        self.mails: list[Mail] = []
        self.deleted: set[int] = set()
        self.retrieved: set[int] = set()

    # -- I/O -------------------------------------------------------------------

    def send(self, line: str) -> None:
        self.conn.write(line.encode("utf-8") + b"\r\n")

    async def send_multiline(self, first: str, body: bytes) -> None:
        """A multi-line response (RFC 1939 §3): lines that start with "."
        get one more (byte-stuffing), and a line with a single "." ends it."""
        lines = body.split(b"\r\n")
        if lines and lines[-1] == b"":
            lines.pop()
        out = [first.encode("utf-8")]
        out += [b"." + line if line.startswith(b".") else line for line in lines]
        out.append(b".")
        self.conn.write(b"\r\n".join(out) + b"\r\n")
        await self.conn.drain()

    # -- the session -------------------------------------------------------------

    async def run(self) -> None:
        try:
            self.send("+OK maillab POP3 server ready.")
            while not self.conn.closed:
                try:
                    raw = await self.conn.readline()
                except LineTooLong:
                    self.send(f"-ERR Line too long (at most {self.MAX_LINE} octets, RFC 2449 §4).")
                    continue
                except TimeoutError:
                    self.send("-ERR Disconnected for inactivity.")
                    return
                if raw is None:
                    return  # the client went away: no UPDATE state, nothing changes
                if await self.handle(raw) is False:
                    return
                await self.conn.drain()
        finally:
            self._unlock()

    def _unlock(self) -> None:
        if self.user is not None and self.state == "transaction":
            self.server.pop3_locked.discard(self.user)
            self.state = "closed"

    async def handle(self, raw: bytes) -> bool:
        """Answer one command line; False ends the session."""
        line = raw.rstrip(b"\r\n")
        if b"\0" in line:
            self.send("-ERR NUL in command.")
            return True
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self.send("-ERR Command is not valid UTF-8.")
            return True
        keyword, _, arg = text.partition(" ")
        keyword = keyword.upper()
        if not keyword:
            self.send("-ERR Empty command.")
            return True
        if keyword == "QUIT":
            await self.quit()
            return False
        if keyword == "CAPA":
            await self.capa()
        elif keyword == "NOOP" and self.state == "transaction":
            self.send("+OK")
        elif self.state == "authorization":
            await self.authorization(keyword, arg)
        elif keyword in _TRANSACTION:
            await _TRANSACTION[keyword](self, arg)
        elif keyword in ("USER", "PASS", "STLS", "APOP", "AUTH"):
            self.send("-ERR Already logged in.")
        else:
            self.send("-ERR Unknown command.")
        return True

    async def capa(self) -> None:
        # RFC 2449 §5: what this server does, so clients need not guess.
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE"]
        if self.conn.secure:
            caps.append("USER")  # USER/PASS only where the password is safe
        elif self.state == "authorization":
            caps.append("STLS")
        caps.append("IMPLEMENTATION maillab")
        await self.send_multiline("+OK Capability list follows", "\r\n".join(caps).encode())

    # -- AUTHORIZATION state -----------------------------------------------------

    async def authorization(self, keyword: str, arg: str) -> None:
        if keyword == "STLS":
            await self.stls()
        elif keyword == "USER":
            if not self.conn.secure:
                self.send(_PLAINTEXT)
            elif not arg.strip():
                self.send("-ERR USER needs a name.")
            else:
                self.login = arg.strip()
                self.send("+OK")
        elif keyword == "PASS":
            await self.password(arg)
        elif keyword in ("APOP", "AUTH"):
            # RFC 1939 §7 APOP needs the plain password stored on the server;
            # SASL (RFC 5034) is not offered here: CAPA lists no SASL.
            self.send(f"-ERR {keyword} is not supported by this server; use USER and PASS.")
        elif keyword in _TRANSACTION or keyword == "NOOP":
            self.send("-ERR Log in first (USER and PASS).")
        else:
            self.send("-ERR Unknown command.")

    async def stls(self) -> None:
        tls = self.server.tls
        if self.conn.secure:
            self.send("-ERR TLS is already active.")
            return
        if tls is None:
            self.send("-ERR TLS is not available.")
            return
        if await self.conn.start_tls(tls, b"+OK Begin TLS negotiation now.\r\n"):
            # RFC 2595 §4: the client starts over (CAPA again), and so do we.
            self.login = None
            self.server.note(
                self.trace_id,
                MailboxTls(protocol="pop3", **self.conn.tls_info()),
                "POP3 session now in TLS",
            )

    async def password(self, arg: str) -> None:
        if not self.conn.secure:
            self.send(_PLAINTEXT)
            return
        if self.login is None:
            self.send("-ERR No user name given: USER first.")
            return
        login, self.login = self.login, None
        user = self.server.authenticate(login, arg)
        if user is None:
            self.server.note(
                self.trace_id,
                MailboxLoginFailed(protocol="pop3", user=login),
                f"POP3 login as {login!r} refused: wrong user name or password",
            )
            self.send("-ERR [AUTH] Authentication failed.")
            return
        if user in self.server.pop3_locked:
            self.send("-ERR [IN-USE] Mailbox is locked by another POP3 session.")
            return
        self.server.pop3_locked.add(user)
        self.user = user
        self.state = "transaction"
        self.folder = self.server.store.folder(user, "INBOX")
        await self.server.in_thread(self.server.store.ensure, user)
        state = await self.server.in_thread(self.folder.scan)
        self.mails = state.mails
        octets = sum(m.size for m in self.mails)
        self.server.note(
            self.trace_id,
            MailboxLogin(protocol="pop3", user=user, messages=len(self.mails)),
            f"{user} logged in over POP3: {len(self.mails)} message(s) in INBOX",
        )
        self.send(f"+OK Logged in: {len(self.mails)} messages ({octets} octets).")

    # -- TRANSACTION state ---------------------------------------------------------

    def _number(self, arg: str) -> int | None:
        """The message number in ``arg`` (1-based), or None after an -ERR."""
        word = arg.strip()
        if not word.isdigit() or " " in word:
            self.send("-ERR Invalid message number.")
            return None
        number = int(word)
        if not 1 <= number <= len(self.mails):
            self.send("-ERR There is no such message.")
            return None
        if number in self.deleted:
            self.send(f"-ERR Message {number} is deleted.")
            return None
        return number

    def _live(self) -> list[tuple[int, Mail]]:
        return [(n, m) for n, m in enumerate(self.mails, 1) if n not in self.deleted]

    def _uidl(self, mail: Mail) -> str:
        # RFC 1939 §7: a unique-id is 1-70 printable characters that never
        # changes; the Maildir key is exactly that (the file name without flags).
        key = mail.key
        if 0 < len(key) <= 70 and all(0x21 <= ord(c) <= 0x7E for c in key):
            return key
        return f"{mail.uid:08X}"  # a key too long for POP3: the IMAP UID in hex

    async def stat(self, arg: str) -> None:
        live = self._live()
        self.send(f"+OK {len(live)} {sum(m.size for _, m in live)}")

    async def list_(self, arg: str) -> None:
        if arg.strip():
            number = self._number(arg)
            if number is not None:
                self.send(f"+OK {number} {self.mails[number - 1].size}")
            return
        live = self._live()
        body = "\r\n".join(f"{n} {m.size}" for n, m in live)
        await self.send_multiline(f"+OK {len(live)} messages", body.encode())

    async def uidl(self, arg: str) -> None:
        if arg.strip():
            number = self._number(arg)
            if number is not None:
                self.send(f"+OK {number} {self._uidl(self.mails[number - 1])}")
            return
        body = "\r\n".join(f"{n} {self._uidl(m)}" for n, m in self._live())
        await self.send_multiline("+OK", body.encode())

    async def _content(self, number: int) -> bytes | None:
        assert self.folder is not None
        data = await self.server.in_thread(self.folder.read, self.mails[number - 1].key)
        if data is None:
            self.send(f"-ERR Message {number} was removed by another session.")
        return data

    async def retr(self, arg: str) -> None:
        number = self._number(arg)
        if number is None:
            return
        data = await self._content(number)
        if data is None:
            return
        self.retrieved.add(number)
        await self.send_multiline(f"+OK {len(data)} octets", data)

    async def top(self, arg: str) -> None:
        # RFC 1939 §7: TOP msg n: the headers, the blank line, n body lines.
        words = arg.split()
        if len(words) != 2 or not words[1].isdigit():
            self.send("-ERR Usage: TOP message lines")
            return
        number = self._number(words[0])
        if number is None:
            return
        data = await self._content(number)
        if data is None:
            return
        head, sep, body = data.partition(b"\r\n\r\n")
        lines = body.split(b"\r\n")[: int(words[1])] if sep else []
        out = head + b"\r\n" + (b"\r\n" + b"\r\n".join(lines) + b"\r\n" if sep else b"")
        await self.send_multiline("+OK", out)

    async def dele(self, arg: str) -> None:
        number = self._number(arg)
        if number is not None:
            self.deleted.add(number)
            self.send(f"+OK Marked to be deleted: message {number}.")

    async def rset(self, arg: str) -> None:
        self.deleted.clear()
        self.send(f"+OK {len(self.mails)} messages.")

    async def noop(self, arg: str) -> None:
        self.send("+OK")

    # -- UPDATE state -------------------------------------------------------------

    async def quit(self) -> None:
        if self.state != "transaction" or self.folder is None or self.user is None:
            self.send("+OK Logging out.")
            return
        folder, user = self.folder, self.user
        deleted = [self.mails[n - 1] for n in sorted(self.deleted)]
        read = [
            self.mails[n - 1]
            for n in sorted(self.retrieved - self.deleted)
            if "S" not in self.mails[n - 1].letters or self.mails[n - 1].in_new
        ]

        def update() -> tuple[list[Change], list[Change], int]:
            gone, seen, failed = [], [], 0
            for mail in deleted:
                change = folder.remove(mail.key)
                if change is None:
                    failed += 1
                else:
                    gone.append(change)
            for mail in read:
                change, _ = folder.set_letters(mail.key, mail.letters + "S")
                if change is not None:
                    seen.append(change)
            return gone, seen, failed

        gone, seen, failed = await self.server.in_thread(update)
        self.server.note_changes(self.trace_id, "pop3", user, seen, "RETR then QUIT: read")
        self.server.note_changes(self.trace_id, "pop3", user, gone, "DELE then QUIT")
        self._unlock()
        if failed:
            # RFC 2449 §8 / RFC 3206: the maildrop changed under us.
            self.send(f"-ERR [SYS/TEMP] {failed} message(s) could not be deleted.")
        else:
            self.send(f"+OK Logging out, {len(gone)} message(s) deleted.")


_TRANSACTION = {
    "STAT": Pop3Session.stat,
    "LIST": Pop3Session.list_,
    "UIDL": Pop3Session.uidl,
    "RETR": Pop3Session.retr,
    "TOP": Pop3Session.top,
    "DELE": Pop3Session.dele,
    "RSET": Pop3Session.rset,
    "NOOP": Pop3Session.noop,
}
