"""A small IMAP4rev1 server (a subset of RFC 3501) over a user's Maildir.

IMAP, unlike POP3, leaves the mail on the server and lets every client see
the same folders and flags. This server implements what a mail client needs
to *read* mail, and no more:

* Connection: ``CAPABILITY NOOP LOGOUT``; ``STARTTLS`` on 143 (RFC 3501
  §6.2.1); 993 is TLS from the first byte (RFC 8314 §3.3).
* Login: ``LOGIN`` and ``AUTHENTICATE PLAIN`` only inside TLS. Before TLS the
  server advertises ``LOGINDISABLED`` (RFC 3501 §6.2.3) and a client that
  sends its password anyway gets ``NO [PRIVACYREQUIRED]`` (RFC 5530 §3); a
  wrong password gets ``NO [AUTHENTICATIONFAILED]`` (RFC 5530 §3).
* Folders: ``LIST LSUB STATUS SELECT EXAMINE`` over ``INBOX`` and ``Junk``
  (marked ``\\Junk``, RFC 6154).
* Messages: ``FETCH`` (FLAGS, UID, RFC822.SIZE, INTERNALDATE, ENVELOPE,
  RFC822[.HEADER|.TEXT], BODY[...] and BODY.PEEK[...] with HEADER,
  HEADER.FIELDS[.NOT], TEXT and partial ranges), ``SEARCH``, ``STORE``,
  ``EXPUNGE``, ``CLOSE``, ``UNSELECT`` (RFC 3691), ``CHECK`` and their
  ``UID`` forms.

The Maildir is the truth (see :mod:`sim.services.mailbox`): SELECT moves new
mail from ``new/`` to ``cur/`` (it is no longer \\Recent for anyone else);
reading a body without PEEK sets \\Seen, which renames the file to
``...:2,S``; \\Deleted is the letter ``T``; EXPUNGE deletes the file.
Message sequence numbers belong to the session and change only when the
server tells the client (EXISTS, EXPUNGE responses, RFC 3501 §7.4.1).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, ClassVar

from sim.events import MailboxLogin, MailboxLoginFailed, MailboxTls
from sim.fastclass import dataclass
from sim.services.maildir import FOLDERS
from sim.services.mailstore import (
    SYSTEM_FLAGS,
    LineConnection,
    LineTooLong,
    Mail,
    MailFolder,
    MailStore,
    maildir_letters,
)

if TYPE_CHECKING:
    from sim.services.mailbox import MailboxServer

__all__ = ["Atom", "ImapSession", "Str", "parse_sequence_set", "tokenize"]

#: The hierarchy delimiter (Maildir++ folders are ``.Name``).
DELIMITER = "."
#: Literals (``{n}``) larger than this are refused: this server takes no APPEND.
MAX_LITERAL = 64 * 1024
MAX_LITERALS = 16
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TAG = re.compile(r"[\x21-\x7e]+")
_TAG_SPECIALS = set('(){%*"\\+')
_SPECIAL_USE = {"Junk": "\\Junk"}
#: Commands of RFC 3501 (and common extensions) this small server does not do.
_UNSUPPORTED = {
    "APPEND",
    "COPY",
    "MOVE",
    "CREATE",
    "DELETE",
    "RENAME",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "IDLE",
    "ID",
    "ENABLE",
    "NAMESPACE",
    "GETQUOTA",
    "GETQUOTAROOT",
    "COMPRESS",
}


class Atom(str):
    """An atom of a command (``FLAGS``, ``1:*``, ``BODY.PEEK[HEADER]``)."""


class Str(str):
    """A quoted string or a literal."""


Token = str | list["Token"]


class Reply(Exception):
    """Ends a command with a tagged ``NO`` or ``BAD``."""

    def __init__(self, status: str, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def bad(text: str) -> Reply:
    return Reply("BAD", text)


def no(text: str) -> Reply:
    return Reply("NO", text)


class _Gone(Exception):
    """The client went away in the middle of a command."""


class _Answered(Exception):
    """The command has sent its tagged response already (STARTTLS answers
    before the handshake)."""


# --- parsing ----------------------------------------------------------------------


def tokenize(parts: list[str | bytes]) -> list[Token]:
    """Command text into atoms, strings and parenthesised lists.

    ``parts`` alternate text and literal octets (RFC 3501 §4.3). An atom
    keeps a bracketed part whole, spaces and all, so that
    ``BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]<0.100>`` is one token.
    """
    stack: list[list[Token]] = [[]]
    for part in parts:
        if isinstance(part, bytes):
            try:
                stack[-1].append(Str(part.decode("utf-8")))
            except UnicodeDecodeError:
                raise bad("Literal is not valid UTF-8.") from None
            continue
        i, n = 0, len(part)
        while i < n:
            c = part[i]
            if c == " ":
                i += 1
            elif c == "(":
                inner: list[Token] = []
                stack[-1].append(inner)
                stack.append(inner)
                i += 1
            elif c == ")":
                if len(stack) == 1:
                    raise bad("Unbalanced parenthesis.")
                stack.pop()
                i += 1
            elif c == '"':
                out, j = [], i + 1
                while j < n and part[j] != '"':
                    if part[j] == "\\" and j + 1 < n:
                        j += 1
                    out.append(part[j])
                    j += 1
                if j >= n:
                    raise bad("Unterminated quoted string.")
                stack[-1].append(Str("".join(out)))
                i = j + 1
            elif ord(c) < 0x20 or c == "\x7f":
                raise bad("Control character in command.")
            else:
                j, depth = i, 0
                while j < n:
                    ch = part[j]
                    if ch == "[":
                        depth += 1
                    elif ch == "]":
                        depth = max(0, depth - 1)
                    elif depth == 0 and ch in ' ()"':
                        break
                    j += 1
                stack[-1].append(Atom(part[i:j]))
                i = j
    if len(stack) != 1:
        raise bad("Unbalanced parenthesis.")
    return stack[0]


Range = tuple[int | None, int | None]  # None is "*"


def parse_sequence_set(text: str) -> list[Range]:
    """``1,3:5,7:*`` → [(1, 1), (3, 5), (7, None)] (RFC 3501 §9 sequence-set)."""
    ranges: list[Range] = []
    for item in text.split(","):
        ends = item.split(":")
        if len(ends) > 2 or not all(e == "*" or (e.isdigit() and int(e) > 0) for e in ends):
            raise bad(f"Invalid message set: {text}")
        values = [None if e == "*" else int(e) for e in ends]
        ranges.append((values[0], values[-1]))
    return ranges


def astring(token: Token, what: str) -> str:
    if isinstance(token, list):
        raise bad(f"{what}: a string was expected, not a list.")
    return str(token)


def quoted(text: str) -> bytes:
    """A string as the server sends it: quoted when it can be, else a literal."""
    raw = text.encode("utf-8")
    if len(raw) < 1000 and all(0x20 <= b < 0x7F for b in raw):
        return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(raw) + raw


def nstring(text: str | None) -> bytes:
    return b"NIL" if text is None else quoted(text)


def mailbox_out(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9._-]+", name) else quoted(name).decode()


def internal_date(t: float) -> str:
    """RFC 3501 date-time, in UTC, with English month names whatever the locale."""
    tm = time.gmtime(t)
    return (
        f"{tm.tm_mday:02d}-{_MONTHS[tm.tm_mon - 1]}-{tm.tm_year:04d} "
        f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} +0000"
    )


# --- message parts ----------------------------------------------------------------


def split_message(data: bytes) -> tuple[bytes, bytes]:
    """(header with its terminating blank line, text) of a CRLF message."""
    head, sep, text = data.partition(b"\r\n\r\n")
    if sep:
        return head + b"\r\n\r\n", text
    if head.startswith(b"\r\n"):
        return b"\r\n", head[2:]
    return (head if head.endswith(b"\r\n") else head + b"\r\n") + b"\r\n", b""


def header_fields(header: bytes) -> list[tuple[str, bytes]]:
    """(lower-case name, the whole field with its folded lines and CRLFs)."""
    fields: list[tuple[str, bytes]] = []
    for line in header.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and fields:
            name, raw = fields[-1]
            fields[-1] = (name, raw + line + b"\r\n")
        else:
            name = line.partition(b":")[0].strip().decode("ascii", "replace").lower()
            fields.append((name, line + b"\r\n"))
    return fields


def field_value(header: bytes, name: str) -> str | None:
    """The unfolded value of the first ``name`` field."""
    for found, raw in header_fields(header):
        if found == name:
            value = raw.partition(b":")[2].decode("utf-8", "replace")
            return re.sub(r"\r\n([ \t])", r"\1", value).strip()
    return None


def envelope(header: bytes) -> bytes:
    """The ENVELOPE structure of RFC 3501 §7.4.2."""

    def addresses(name: str, default: str | None = None) -> bytes:
        value = field_value(header, name)
        if value is None and default is not None:
            value = field_value(header, default)
        if not value:
            return b"NIL"
        out = []
        for display, addr in email.utils.getaddresses([value]):
            if not addr:
                continue
            local, at, domain = addr.rpartition("@")
            if not at:
                local, domain = addr, ""
            out.append(
                b"("
                + b" ".join(
                    [nstring(display or None), b"NIL", nstring(local), nstring(domain or None)]
                )
                + b")"
            )
        return b"(" + b"".join(out) + b")" if out else b"NIL"

    def text(name: str) -> bytes:
        return nstring(field_value(header, name))

    # RFC 3501 §7.4.2: sender and reply-to default to from.
    return (
        b"("
        + b" ".join(
            [
                text("date"),
                text("subject"),
                addresses("from"),
                addresses("sender", "from"),
                addresses("reply-to", "from"),
                addresses("to"),
                addresses("cc"),
                addresses("bcc"),
                text("in-reply-to"),
                text("message-id"),
            ]
        )
        + b")"
    )


_SECTION = re.compile(r"(BODY(?:\.PEEK)?)\[([^\]]*)\](?:<(\d+)(?:\.(\d+))?>)?", re.IGNORECASE)
_FIELDS = re.compile(r"(HEADER\.FIELDS(?:\.NOT)?)\s*\(([^)]*)\)", re.IGNORECASE)


@dataclass(frozen=True)
class FetchItem:
    """One data item of a FETCH (RFC 3501 §6.4.5)."""

    name: str  # UID, FLAGS, RFC822.SIZE, INTERNALDATE, ENVELOPE, RFC822, RFC822.HEADER,
    #            RFC822.TEXT or BODY (with ``section``)
    section: str = ""  # "", HEADER, TEXT, HEADER.FIELDS (A B), HEADER.FIELDS.NOT (A B)
    fields: tuple[str, ...] = ()
    start: int | None = None
    count: int | None = None
    peek: bool = False

    @property
    def sets_seen(self) -> bool:
        # Reading a body part without PEEK sets \Seen (RFC 3501 §6.4.5).
        return (self.name == "BODY" and not self.peek) or self.name in ("RFC822", "RFC822.TEXT")

    @property
    def needs_data(self) -> bool:
        return self.name in ("BODY", "RFC822", "RFC822.HEADER", "RFC822.TEXT", "ENVELOPE")

    @classmethod
    def parse(cls, token: Token) -> FetchItem:
        if isinstance(token, list):
            raise bad("Invalid FETCH item.")
        word = str(token)
        upper = word.upper()
        if upper in (
            "UID",
            "FLAGS",
            "RFC822.SIZE",
            "INTERNALDATE",
            "ENVELOPE",
            "RFC822",
            "RFC822.HEADER",
            "RFC822.TEXT",
        ):
            return cls(upper)
        match = _SECTION.fullmatch(word)
        if match is None:
            raise bad(f"FETCH item not supported by this server: {word}")
        section = " ".join(match.group(2).split()).upper()
        fields: tuple[str, ...] = ()
        if section not in ("", "HEADER", "TEXT"):
            sub = _FIELDS.fullmatch(section)
            if sub is None:
                raise bad(f"Body section not supported by this server: [{section}]")
            fields = tuple(f.strip('"').upper() for f in sub.group(2).split())
            if not fields:
                raise bad("HEADER.FIELDS needs at least one field name.")
            section = f"{sub.group(1).upper()} ({' '.join(fields)})"
        start = int(match.group(3)) if match.group(3) is not None else None
        count = int(match.group(4)) if match.group(4) is not None else None
        return cls("BODY", section, fields, start, count, match.group(1).upper() == "BODY.PEEK")

    def body(self, data: bytes) -> tuple[bytes, bytes]:
        """(response name, octets) for the body items."""
        header, text = split_message(data)
        if self.name == "RFC822":
            return b"RFC822", data
        if self.name == "RFC822.HEADER":
            return b"RFC822.HEADER", header
        if self.name == "RFC822.TEXT":
            return b"RFC822.TEXT", text
        if self.section == "":
            part = data
        elif self.section == "HEADER":
            part = header
        elif self.section == "TEXT":
            part = text
        else:
            wanted = {f.lower() for f in self.fields}
            keep = self.section.startswith("HEADER.FIELDS (")
            part = (
                b"".join(raw for name, raw in header_fields(header) if (name in wanted) == keep)
                + b"\r\n"
            )
        name = f"BODY[{self.section}]"
        if self.start is not None:
            end = None if self.count is None else self.start + self.count
            part = part[self.start : end]
            name += f"<{self.start}>"
        return name.encode(), part


def literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


# --- the session --------------------------------------------------------------------

Handler = Callable[["ImapSession", str, list[Token]], Awaitable[str]]


class ImapSession:
    """One IMAP client connection."""

    #: Longest command line: RFC 7162 §4 asks servers to take at least 8192 octets.
    MAX_LINE: ClassVar[int] = 64 * 1024

    def __init__(self, server: MailboxServer, conn: LineConnection) -> None:
        self.server = server
        self.conn = conn
        self.trace_id = conn.peer.trace_id
        self.mailstore: MailStore = server.store
        self.state = "nonauth"  # nonauth, auth, logout
        self.user: str | None = None
        self.folder: MailFolder | None = None
        self.readonly = False
        self.view: list[Mail] = []
        self.recent: set[int] = set()
        self.uidvalidity = 0
        self.uidnext = 1

    # -- I/O ---------------------------------------------------------------------

    def send(self, line: str | bytes) -> None:
        data = line.encode("utf-8") if isinstance(line, str) else line
        self.conn.write(data + b"\r\n")

    def capabilities(self) -> str:
        caps = ["IMAP4rev1", "UNSELECT"]
        if self.conn.secure:
            caps.append("AUTH=PLAIN")  # RFC 3501 §6.2.2: the one mechanism every server has
        elif self.state == "nonauth":
            caps += ["STARTTLS", "LOGINDISABLED"]  # RFC 3501 §6.2.3
        return " ".join(caps)

    async def read_command(self) -> tuple[list[str | bytes], str | None] | None:
        """The parts of one command (text and literals); None when the client
        has gone; a message instead when the command cannot be read."""
        parts: list[str | bytes] = []
        line = await self.conn.readline()
        while True:
            if line is None:
                return None
            raw = line.rstrip(b"\r\n")
            if b"\0" in raw:
                return [raw.decode("utf-8", "replace")], "NUL in command."
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                return [raw.decode("utf-8", "replace")], "Command is not valid UTF-8."
            match = re.search(r"\{(\d+)(\+?)\}$", text)
            if match is None:
                parts.append(text)
                return parts, None
            parts.append(text[: match.start()])
            size = int(match.group(1))
            if size > MAX_LITERAL or len(parts) > 2 * MAX_LITERALS:
                return parts, "Literal too large for this server."
            if not match.group(2):
                # RFC 3501 §7.5: the go-ahead for a synchronising literal.
                self.send("+ Ready for literal data")
                await self.conn.drain()
            data = await self.conn.read_exactly(size)
            if data is None:
                return None
            parts.append(data)
            line = await self.conn.readline()

    async def run(self) -> None:
        self.send(f"* OK [CAPABILITY {self.capabilities()}] maillab IMAP4rev1 server ready.")
        while self.state != "logout" and not self.conn.closed:
            try:
                command = await self.read_command()
            except LineTooLong:
                self.send("* BAD Line too long.")
                continue
            except TimeoutError:
                self.send("* BYE Autologout; idle for too long.")
                return
            if command is None:
                return
            try:
                await self.dispatch(*command)
            except _Gone:
                return
            await self.conn.drain()

    async def dispatch(self, parts: list[str | bytes], problem: str | None) -> None:
        first = parts[0] if parts and isinstance(parts[0], str) else ""
        tag, _, rest = first.partition(" ")
        if not _TAG.fullmatch(tag) or set(tag) & _TAG_SPECIALS:
            self.send("* BAD Error in IMAP command received by server: no valid tag.")
            return
        if problem is not None:
            self.send(f"{tag} BAD {problem}")
            return
        try:
            tokens = tokenize([rest, *parts[1:]])
            if not tokens or not isinstance(tokens[0], Atom):
                raise bad("Missing command.")
            name = tokens[0].upper()
            args = tokens[1:]
            if name == "UID":
                if not args or not isinstance(args[0], Atom):
                    raise bad("UID needs a command.")
                name, args = f"UID {args[0].upper()}", args[1:]
            text = await self.call(name, tag, args)
        except Reply as reply:
            self.send(f"{tag} {reply.status} {reply.text}")
            return
        except _Answered:
            return
        self.send(f"{tag} OK {text}")

    async def call(self, name: str, tag: str, args: list[Token]) -> str:
        handler = _COMMANDS.get(name)
        if handler is None:
            if name in _UNSUPPORTED or name.startswith("UID "):
                raise bad(f"{name} is not supported by this server.")
            raise bad(f"Unknown command {name}.")
        need = _STATES[name]
        if need == "nonauth" and self.state != "nonauth":
            raise bad(f"{name}: already logged in.")
        if need in ("auth", "selected") and self.state != "auth":
            raise bad(f"{name}: log in first.")
        if need == "selected" and self.folder is None:
            raise bad(f"{name}: no mailbox selected.")
        return await handler(self, tag, args)

    # -- any state ---------------------------------------------------------------------

    async def capability(self, tag: str, args: list[Token]) -> str:
        self.send(f"* CAPABILITY {self.capabilities()}")
        return "Capability completed."

    async def noop(self, tag: str, args: list[Token]) -> str:
        if self.folder is not None:
            await self.refresh()
        return "NOOP completed."

    async def logout(self, tag: str, args: list[Token]) -> str:
        self.send("* BYE Logging out.")
        self.state = "logout"
        return "Logout completed."

    # -- not authenticated ---------------------------------------------------------------

    async def starttls(self, tag: str, args: list[Token]) -> str:
        if self.conn.secure:
            raise bad("TLS is already active.")
        if self.server.tls is None:
            raise no("TLS is not available.")
        go_ahead = f"{tag} OK Begin TLS negotiation now.\r\n".encode()
        if not await self.conn.start_tls(self.server.tls, go_ahead):
            raise _Gone
        self.server.note(
            self.trace_id,
            MailboxTls(protocol="imap", **self.conn.tls_info()),
            "IMAP session now in TLS",
        )
        raise _Answered

    async def login(self, tag: str, args: list[Token]) -> str:
        if len(args) != 2:
            raise bad("LOGIN needs a user name and a password.")
        login, password = astring(args[0], "user name"), astring(args[1], "password")
        self._require_tls(login)
        return await self._log_in(login, password)

    async def authenticate(self, tag: str, args: list[Token]) -> str:
        if not args or len(args) > 2:
            raise bad("AUTHENTICATE needs a mechanism.")
        if astring(args[0], "mechanism").upper() != "PLAIN":
            raise no("Unsupported authentication mechanism (this server does PLAIN).")
        self._require_tls(None)
        if len(args) == 2:
            response = astring(args[1], "initial response")  # RFC 4959 (SASL-IR)
        else:
            self.send("+ ")
            await self.conn.drain()
            line = await self.conn.readline()
            if line is None:
                raise _Gone
            response = line.decode("utf-8", "replace").strip()
        if response == "*":
            raise bad("Authentication canceled.")  # RFC 3501 §6.2.2
        try:
            decoded = base64.b64decode(response if response != "=" else "", validate=True)
            authzid, authcid, password = decoded.decode("utf-8").split("\0")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise bad(
                "Invalid PLAIN response (RFC 4616: base64 of authzid NUL user NUL password)."
            ) from None
        if authzid and authzid != authcid:
            raise no("[AUTHORIZATIONFAILED] Cannot log in as another user.")
        return await self._log_in(authcid, password)

    def _require_tls(self, login: str | None) -> None:
        if self.conn.secure:
            return
        # What Dovecot says (disable_plaintext_auth): the password has
        # already crossed the network in clear text by now.
        self.send(
            "* BAD [ALERT] Plaintext authentication not allowed without SSL/TLS, but your "
            "client did it anyway. If anyone was listening, the password was exposed."
        )
        self.server.note(
            self.trace_id,
            MailboxLoginFailed(protocol="imap", user=login, reason="privacy"),
            "IMAP login before STARTTLS refused: the password went in clear text",
        )
        raise no(
            "[PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure "
            "(SSL/TLS) connections."
        )

    async def _log_in(self, login: str, password: str) -> str:
        user = self.server.authenticate(login, password)
        if user is None:
            self.server.note(
                self.trace_id,
                MailboxLoginFailed(protocol="imap", user=login, reason="credentials"),
                f"IMAP login as {login!r} refused: wrong user name or password",
            )
            raise no("[AUTHENTICATIONFAILED] Authentication failed.")
        await self.server.in_thread(self.mailstore.ensure, user)
        self.user = user
        self.state = "auth"
        self.server.note(
            self.trace_id, MailboxLogin(protocol="imap", user=user), f"{user} logged in over IMAP"
        )
        return f"[CAPABILITY {self.capabilities()}] Logged in."

    # -- authenticated -------------------------------------------------------------------

    def _folder_arg(self, token: Token) -> MailFolder:
        name = astring(token, "mailbox name")
        assert self.user is not None
        try:
            return self.mailstore.folder(self.user, name)
        except KeyError:
            raise no(f"[NONEXISTENT] Mailbox doesn't exist: {name}") from None

    async def select(self, tag: str, args: list[Token], readonly: bool = False) -> str:
        if len(args) != 1:
            raise bad("SELECT needs one mailbox name.")
        # RFC 3501 §6.3.1: a failed SELECT leaves no mailbox selected.
        self.folder, self.view, self.recent = None, [], set()
        folder = self._folder_arg(args[0])
        state = await self.server.in_thread(folder.scan, not readonly)
        self.folder, self.readonly = folder, readonly
        self.uidvalidity, self.uidnext, self.view = state.uidvalidity, state.uidnext, state.mails
        moved = {c.new.name.partition(":")[0] for c in state.moved if c.new is not None}
        self.recent = {m.uid for m in self.view if m.key in moved or m.in_new}
        assert self.user is not None
        self.server.note_changes(
            self.trace_id, "imap", self.user, state.moved, f"SELECT {folder.name}: no longer new"
        )
        flags = " ".join(SYSTEM_FLAGS)
        self.send(f"* FLAGS ({flags})")
        self.send(f"* {len(self.view)} EXISTS")
        self.send(f"* {len(self.recent)} RECENT")
        unseen = next((i for i, m in enumerate(self.view, 1) if "S" not in m.letters), None)
        if unseen is not None:
            self.send(f"* OK [UNSEEN {unseen}] First unseen.")
        permanent = "" if readonly else flags
        self.send(f"* OK [PERMANENTFLAGS ({permanent})] Flags permitted.")
        self.send(f"* OK [UIDVALIDITY {self.uidvalidity}] UIDs valid.")
        self.send(f"* OK [UIDNEXT {self.uidnext}] Predicted next UID.")
        mode = "READ-ONLY" if readonly else "READ-WRITE"
        return f"[{mode}] {'EXAMINE' if readonly else 'SELECT'} completed."

    async def examine(self, tag: str, args: list[Token]) -> str:
        return await self.select(tag, args, readonly=True)

    async def list_(self, tag: str, args: list[Token], verb: str = "LIST") -> str:
        if len(args) != 2:
            raise bad(f"{verb} needs a reference and a mailbox pattern.")
        reference, pattern = astring(args[0], "reference"), astring(args[1], "pattern")
        if pattern == "":
            # RFC 3501 §6.3.8: the hierarchy delimiter and root.
            self.send(f'* {verb} (\\Noselect) "{DELIMITER}" ""')
            return f"{verb} completed."
        regex = "".join(
            ".*" if c == "*" else "[^.]*" if c == "%" else re.escape(c) for c in reference + pattern
        )
        for name in FOLDERS:
            flags = re.IGNORECASE if name == "INBOX" else 0
            if re.fullmatch(regex, name, flags):
                attrs = " ".join(filter(None, ["\\HasNoChildren", _SPECIAL_USE.get(name)]))
                self.send(f'* {verb} ({attrs}) "{DELIMITER}" {mailbox_out(name)}')
        return f"{verb} completed."

    async def lsub(self, tag: str, args: list[Token]) -> str:
        return await self.list_(tag, args, "LSUB")

    async def status(self, tag: str, args: list[Token]) -> str:
        if len(args) != 2 or not isinstance(args[1], list) or not args[1]:
            raise bad("STATUS needs a mailbox name and a list of items.")
        folder = self._folder_arg(args[0])
        state = await self.server.in_thread(folder.scan)
        values = {
            "MESSAGES": len(state.mails),
            "RECENT": sum(1 for m in state.mails if m.in_new),
            "UIDNEXT": state.uidnext,
            "UIDVALIDITY": state.uidvalidity,
            "UNSEEN": sum(1 for m in state.mails if "S" not in m.letters),
        }
        out = []
        for item in args[1]:
            key = astring(item, "status item").upper()
            if key not in values:
                raise bad(f"Unknown STATUS item {key}.")
            out.append(f"{key} {values[key]}")
        self.send(f"* STATUS {mailbox_out(folder.name)} ({' '.join(out)})")
        return "STATUS completed."

    # -- selected ------------------------------------------------------------------------

    def flags_of(self, mail: Mail) -> str:
        flags = mail.flags + (["\\Recent"] if mail.uid in self.recent else [])
        return f"FLAGS ({' '.join(flags)})"

    async def refresh(self) -> None:
        """Tell the client what changed since it last looked (RFC 3501 §7.4.1,
        §5.2): messages gone, flags changed by another session, new mail."""
        folder = self.folder
        assert folder is not None and self.user is not None
        state = await self.server.in_thread(folder.scan, not self.readonly)
        self.server.note_changes(
            self.trace_id, "imap", self.user, state.moved, f"{folder.name}: no longer new"
        )
        moved = {c.new.name.partition(":")[0] for c in state.moved if c.new is not None}
        now = {m.uid: m for m in state.mails}
        for seq in range(len(self.view), 0, -1):
            if self.view[seq - 1].uid not in now:
                del self.view[seq - 1]
                self.send(f"* {seq} EXPUNGE")
        for seq, mail in enumerate(self.view, 1):
            fresh = now[mail.uid]
            if fresh.letters != mail.letters:
                self.send(f"* {seq} FETCH ({self.flags_of(fresh)})")
            self.view[seq - 1] = fresh
        known = {m.uid for m in self.view}
        added = [m for m in state.mails if m.uid not in known]
        if added:
            self.view += added
            self.recent |= {m.uid for m in added if m.key in moved or m.in_new}
            self.send(f"* {len(self.view)} EXISTS")
            self.send(f"* {len(self.recent)} RECENT")
        self.uidnext = state.uidnext

    def resolve(self, text: Token, uid: bool) -> list[tuple[int, Mail]]:
        """(sequence number, message) for a sequence set or a UID set."""
        if not isinstance(text, Atom):
            raise bad("A message set was expected.")
        ranges = parse_sequence_set(text)
        out: dict[int, Mail] = {}
        if uid:
            if not self.view:
                return []
            top = self.view[-1].uid
            for lo, hi in ranges:
                a, b = sorted((top if lo is None else lo, top if hi is None else hi))
                for seq, mail in enumerate(self.view, 1):
                    if a <= mail.uid <= b:
                        out[seq] = mail
        else:
            count = len(self.view)
            for lo, hi in ranges:
                a, b = sorted((count if lo is None else lo, count if hi is None else hi))
                if a < 1 or b > count:
                    # RFC 3501 §9 (seq-number): BAD for a number past the last
                    # message, "*" in an empty mailbox included.
                    raise bad("Invalid message sequence number.")
                for seq in range(a, b + 1):
                    out[seq] = self.view[seq - 1]
        return sorted(out.items())

    async def _set_letters(self, seq: int, mail: Mail, letters: str, why: str) -> Mail | None:
        assert self.folder is not None and self.user is not None
        change, now = await self.server.in_thread(self.folder.set_letters, mail.key, letters)
        if now is None:
            return None
        if change is not None:
            self.server.note_changes(self.trace_id, "imap", self.user, [change], why)
            assert change.new is not None
            mail = Mail(mail.uid, mail.key, change.new, now, mail.size, False, mail.mtime)
            self.view[seq - 1] = mail
        return mail

    async def fetch(self, tag: str, args: list[Token], uid: bool = False) -> str:
        if len(args) != 2:
            raise bad("FETCH needs a message set and data items.")
        raw = args[1] if isinstance(args[1], list) else [args[1]]
        words = [str(t).upper() for t in raw if not isinstance(t, list)]
        if len(raw) == 1 and words and words[0] in _MACROS:
            raw = list(_MACROS[words[0]])
        items = [FetchItem.parse(t) for t in raw]
        if uid and not any(i.name == "UID" for i in items):
            items.insert(0, FetchItem("UID"))  # RFC 3501 §6.4.8: UID FETCH always says the UID
        assert self.folder is not None
        folder = self.folder
        sets_seen = not self.readonly and any(i.sets_seen for i in items)
        missing = 0
        for seq, mail in self.resolve(args[0], uid):
            flags_changed = False
            if sets_seen and "S" not in mail.letters:
                updated = await self._set_letters(
                    seq, mail, mail.letters + "S", "FETCH of the body: \\Seen"
                )
                if updated is None:
                    missing += 1
                    continue
                mail, flags_changed = updated, True
            data = b""
            if any(i.needs_data for i in items):
                content = await self.server.in_thread(folder.read, mail.key)
                if content is None:
                    missing += 1
                    continue
                data = content
            parts = [self._item(item, mail, data) for item in items]
            if flags_changed and not any(i.name == "FLAGS" for i in items):
                # §6.4.5: an implicit \Seen is reported with the data.
                parts.append(self.flags_of(mail).encode())
            self.send(b"* %d FETCH (" % seq + b" ".join(parts) + b")")
            await self.conn.drain()
        if missing:
            # RFC 2180 §4.1.2: another session expunged some of them.
            raise no("Some of the requested messages no longer exist.")
        return f"{'UID ' if uid else ''}FETCH completed."

    def _item(self, item: FetchItem, mail: Mail, data: bytes) -> bytes:
        if item.name == "UID":
            return b"UID %d" % mail.uid
        if item.name == "FLAGS":
            return self.flags_of(mail).encode()
        if item.name == "RFC822.SIZE":
            return b"RFC822.SIZE %d" % mail.size
        if item.name == "INTERNALDATE":
            return f'INTERNALDATE "{internal_date(mail.mtime)}"'.encode()
        if item.name == "ENVELOPE":
            return b"ENVELOPE " + envelope(split_message(data)[0])
        name, part = item.body(data)
        return name + b" " + literal(part)

    async def store(self, tag: str, args: list[Token], uid: bool = False) -> str:
        if len(args) < 3:
            raise bad("STORE needs a message set, an item and flags.")
        if self.readonly:
            raise no("Mailbox is read-only (opened with EXAMINE).")
        mode = astring(args[1], "store item").upper()
        silent = mode.endswith(".SILENT")
        mode = mode.removesuffix(".SILENT")
        if mode not in ("FLAGS", "+FLAGS", "-FLAGS"):
            raise bad(f"Invalid STORE item {mode}.")
        # A parenthesised flag list, or the flags one after the other (§6.4.6).
        raw = args[2] if len(args) == 3 and isinstance(args[2], list) else args[2:]
        flags = [astring(f, "flag") for f in raw]
        letters = set(maildir_letters(flags))
        known = set(maildir_letters(list(SYSTEM_FLAGS)))
        for seq, mail in self.resolve(args[0], uid):
            old = set(mail.letters)
            if mode == "FLAGS":
                new = (old - known) | letters
            elif mode == "+FLAGS":
                new = old | letters
            else:
                new = old - letters
            if new != old or mail.in_new:
                what = " ".join(flags) or "no flags"
                updated = await self._set_letters(seq, mail, "".join(new), f"STORE {mode} {what}")
                if updated is None:
                    continue
                mail = updated
            if not silent:
                uid_part = f"UID {mail.uid} " if uid else ""
                self.send(f"* {seq} FETCH ({uid_part}{self.flags_of(mail)})")
        return f"{'UID ' if uid else ''}STORE completed."

    async def _expunge(self, announce: bool) -> int:
        assert self.folder is not None and self.user is not None
        folder = self.folder
        count = 0
        for seq in range(len(self.view), 0, -1):
            mail = self.view[seq - 1]
            if "T" not in mail.letters:
                continue
            change = await self.server.in_thread(folder.remove, mail.key)
            if change is not None:
                self.server.note_changes(
                    self.trace_id, "imap", self.user, [change], "EXPUNGE of a \\Deleted message"
                )
            del self.view[seq - 1]
            self.recent.discard(mail.uid)
            count += 1
            if announce:
                # Descending order keeps every number right (RFC 3501 §7.4.1).
                self.send(f"* {seq} EXPUNGE")
        return count

    async def expunge(self, tag: str, args: list[Token]) -> str:
        if self.readonly:
            raise no("Mailbox is read-only (opened with EXAMINE).")
        await self._expunge(announce=True)
        return "EXPUNGE completed."

    async def close(self, tag: str, args: list[Token]) -> str:
        # RFC 3501 §6.4.2: CLOSE expunges silently, unless read-only.
        if not self.readonly:
            await self._expunge(announce=False)
        self.folder, self.view, self.recent = None, [], set()
        return "CLOSE completed."

    async def unselect(self, tag: str, args: list[Token]) -> str:
        self.folder, self.view, self.recent = None, [], set()
        return "UNSELECT completed."

    async def check(self, tag: str, args: list[Token]) -> str:
        await self.refresh()
        return "CHECK completed."

    async def search(self, tag: str, args: list[Token], uid: bool = False) -> str:
        keys = list(args)
        if keys and isinstance(keys[0], Atom) and keys[0].upper() == "CHARSET":
            if len(keys) < 2 or astring(keys[1], "charset").upper() not in ("UTF-8", "US-ASCII"):
                raise no("[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset.")
            keys = keys[2:]
        if not keys:
            raise bad("SEARCH needs a search key.")
        matcher = _Search(self)
        test = matcher.parse_all(keys)
        headers: dict[int, bytes] = {}
        if matcher.needs_headers:
            folder = self.folder
            assert folder is not None

            def load() -> dict[int, bytes]:
                out = {}
                for mail in self.view:
                    data = folder.read(mail.key)
                    out[mail.uid] = split_message(data)[0] if data is not None else b""
                return out

            headers = await self.server.in_thread(load)
        found = [
            mail.uid if uid else seq
            for seq, mail in enumerate(self.view, 1)
            if test(seq, mail, headers.get(mail.uid, b""))
        ]
        self.send("* SEARCH" + "".join(f" {n}" for n in found))
        return f"{'UID ' if uid else ''}SEARCH completed."

    async def uid_fetch(self, tag: str, args: list[Token]) -> str:
        return await self.fetch(tag, args, uid=True)

    async def uid_store(self, tag: str, args: list[Token]) -> str:
        return await self.store(tag, args, uid=True)

    async def uid_search(self, tag: str, args: list[Token]) -> str:
        return await self.search(tag, args, uid=True)


Test = Callable[[int, Mail, bytes], bool]


class _Search:
    """SEARCH keys (RFC 3501 §6.4.4) into a test of one message."""

    _FLAG_KEYS: ClassVar[dict[str, tuple[str, bool]]] = {
        "ANSWERED": ("R", True),
        "UNANSWERED": ("R", False),
        "DELETED": ("T", True),
        "UNDELETED": ("T", False),
        "DRAFT": ("D", True),
        "UNDRAFT": ("D", False),
        "FLAGGED": ("F", True),
        "UNFLAGGED": ("F", False),
        "SEEN": ("S", True),
        "UNSEEN": ("S", False),
    }
    _HEADER_KEYS: ClassVar[tuple[str, ...]] = ("FROM", "TO", "CC", "BCC", "SUBJECT")

    def __init__(self, session: ImapSession) -> None:
        self.session = session
        self.needs_headers = False

    def parse_all(self, tokens: list[Token]) -> Test:
        tests = []
        i = 0
        while i < len(tokens):
            test, i = self.parse(tokens, i)
            tests.append(test)
        return lambda seq, mail, head: all(t(seq, mail, head) for t in tests)

    def parse(self, tokens: list[Token], i: int) -> tuple[Test, int]:
        token = tokens[i]
        if isinstance(token, list):
            return self.parse_all(token), i + 1
        key = str(token).upper()
        recent = self.session.recent

        def arg(n: int = 1) -> str:
            if i + n >= len(tokens):
                raise bad(f"SEARCH {key} needs an argument.")
            return astring(tokens[i + n], key)

        if key == "ALL":
            return (lambda s, m, h: True), i + 1
        if key in self._FLAG_KEYS:
            letter, wanted = self._FLAG_KEYS[key]
            return (lambda s, m, h: (letter in m.letters) == wanted), i + 1
        if key == "RECENT":
            return (lambda s, m, h: m.uid in recent), i + 1
        if key == "OLD":
            return (lambda s, m, h: m.uid not in recent), i + 1
        if key == "NEW":
            return (lambda s, m, h: m.uid in recent and "S" not in m.letters), i + 1
        if key == "NOT":
            inner, j = self.parse(tokens, i + 1) if i + 1 < len(tokens) else (None, 0)
            if inner is None:
                raise bad("SEARCH NOT needs a key.")
            return (lambda s, m, h: not inner(s, m, h)), j
        if key == "OR":
            if i + 2 >= len(tokens):
                raise bad("SEARCH OR needs two keys.")
            left, j = self.parse(tokens, i + 1)
            if j >= len(tokens):
                raise bad("SEARCH OR needs two keys.")
            right, k = self.parse(tokens, j)
            return (lambda s, m, h: left(s, m, h) or right(s, m, h)), k
        if key in ("LARGER", "SMALLER"):
            size = arg()
            if not size.isdigit():
                raise bad(f"SEARCH {key} needs a number.")
            n = int(size)
            if key == "LARGER":
                return (lambda s, m, h: m.size > n), i + 2
            return (lambda s, m, h: m.size < n), i + 2
        if key in self._HEADER_KEYS or key == "HEADER":
            if key == "HEADER":
                name, needle, used = arg(1).lower(), arg(2).lower(), 3
            else:
                name, needle, used = key.lower(), arg(1).lower(), 2
            self.needs_headers = True

            def has(s: int, m: Mail, h: bytes) -> bool:
                value = field_value(h, name)
                return value is not None and needle in value.lower()

            return has, i + used
        if key == "UID":
            chosen = {
                m.uid
                for _, m in self._resolve(tokens[i + 1] if i + 1 < len(tokens) else Atom(""), True)
            }
            return (lambda s, m, h: m.uid in chosen), i + 2
        if isinstance(token, Atom) and re.fullmatch(r"[0-9*:,]+", token):
            seqs = {seq for seq, _ in self._resolve(token, False)}
            return (lambda s, m, h: s in seqs), i + 1
        raise bad(f"Unknown or unsupported SEARCH key {key}.")

    def _resolve(self, token: Token, uid: bool) -> list[tuple[int, Mail]]:
        if uid:
            return self.session.resolve(token, True)
        # In SEARCH a number past the end simply matches nothing.
        view = self.session.view
        if not isinstance(token, Atom):
            raise bad("A message set was expected.")
        out = []
        for lo, hi in parse_sequence_set(token):
            a, b = sorted((len(view) if lo is None else lo, len(view) if hi is None else hi))
            out += [(s, view[s - 1]) for s in range(max(a, 1), min(b, len(view)) + 1)]
        return out


_MACROS: dict[str, tuple[str, ...]] = {
    # RFC 3501 §6.4.5 (FULL would need BODY, which this server does not build).
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
}

#: Where each command may be used (RFC 3501 §6): in any state, only before
#: login, once logged in, or with a mailbox selected.
_STATES: dict[str, str] = {
    **dict.fromkeys(("CAPABILITY", "NOOP", "LOGOUT"), "any"),
    **dict.fromkeys(("STARTTLS", "LOGIN", "AUTHENTICATE"), "nonauth"),
    **dict.fromkeys(("SELECT", "EXAMINE", "LIST", "LSUB", "STATUS"), "auth"),
    **dict.fromkeys(
        (
            "FETCH",
            "STORE",
            "SEARCH",
            "EXPUNGE",
            "CLOSE",
            "UNSELECT",
            "CHECK",
            "UID FETCH",
            "UID STORE",
            "UID SEARCH",
        ),
        "selected",
    ),
}

_COMMANDS: dict[str, Handler] = {
    "CAPABILITY": ImapSession.capability,
    "NOOP": ImapSession.noop,
    "LOGOUT": ImapSession.logout,
    "STARTTLS": ImapSession.starttls,
    "LOGIN": ImapSession.login,
    "AUTHENTICATE": ImapSession.authenticate,
    "SELECT": ImapSession.select,
    "EXAMINE": ImapSession.examine,
    "LIST": ImapSession.list_,
    "LSUB": ImapSession.lsub,
    "STATUS": ImapSession.status,
    "FETCH": ImapSession.fetch,
    "STORE": ImapSession.store,
    "SEARCH": ImapSession.search,
    "EXPUNGE": ImapSession.expunge,
    "CLOSE": ImapSession.close,
    "UNSELECT": ImapSession.unselect,
    "CHECK": ImapSession.check,
    "UID FETCH": ImapSession.uid_fetch,
    "UID STORE": ImapSession.uid_store,
    "UID SEARCH": ImapSession.uid_search,
}
