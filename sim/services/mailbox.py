"""The MDA's reading side: stored mailboxes served to their owners.

The MX (Postfix's role) has stored each accepted message as a file in the
recipient's Maildir (:mod:`sim.services.maildir`). This service plays
Dovecot's other role: it lets the owner read that Maildir from a mail client,
over IMAP (RFC 3501, :mod:`sim.services.imap`) and POP3 (RFC 1939,
:mod:`sim.services.pop3`), on the same host as the MX, since the mail lives
on that host's disk::

    143  IMAP, STARTTLS before LOGIN (RFC 3501 §6.2.1, RFC 2595)
    993  IMAP in TLS from the first byte (RFC 8314 §3.3)
    110  POP3, STLS before USER/PASS (RFC 2595 §4)
    995  POP3 in TLS from the first byte (RFC 8314 §3.3)

Maildir keeps the state a client sees in the file names
(https://cr.yp.to/proto/maildir.html): a message arrives in ``new/``; once a
client has seen it, it moves to ``cur/`` and gets an info suffix
``:2,FLAGS`` whose letters are the flags (``S`` seen, ``R`` replied, ``F``
flagged, ``T`` trashed (IMAP ``\\Deleted``), ``D`` draft). Deleting a message
deletes its file. IMAP also needs numbers that stay fixed for a message
(UIDs, RFC 3501 §2.3.1.1): like Dovecot's ``dovecot-uidlist``, each folder
keeps a small ``maillab-uidlist`` file (JSON, readable) beside ``cur/``.

Control commands (``lab.control(node, "mailbox", ...)``):

    status                      users, folders and their message counts
"""

from __future__ import annotations

import asyncio
import hmac
import ssl
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from sim.errors import ServiceError
from sim.events import EventData, MailboxDeleted, MailboxMoved
from sim.net.api import Endpoint
from sim.services.base import NodeContext, Service
from sim.services.imap import ImapSession
from sim.services.maildir import FOLDERS, mail_root
from sim.services.mailstore import (
    IMAP_PORTS,
    IMPLICIT_TLS_PORTS,
    POP3_PORTS,
    Change,
    LineConnection,
    MailStore,
    mailbox_hostname,
)
from sim.services.pop3 import Pop3Session
from sim.topology.model import MailboxService

__all__ = ["IMAP_PORTS", "IMPLICIT_TLS_PORTS", "POP3_PORTS", "MailboxServer", "mailbox_hostname"]

T = TypeVar("T")


class MailboxServer(Service):
    """IMAP (143, 993) and POP3 (110, 995) for the mailboxes of one host."""

    kind: ClassVar[str] = "mailbox"

    def __init__(self, ctx: NodeContext) -> None:
        super().__init__(ctx)
        config = ctx.node.services.mailbox
        if config is None:
            raise ServiceError(f"{ctx.node.name} has no mailbox service")
        mx = ctx.node.services.mx
        if mx is None:
            raise ServiceError(
                f"{ctx.node.name}: a mailbox service serves what the host's mx stored, "
                "and this host has no mx"
            )
        self.config: MailboxService = config
        self.domains = tuple(d.lower().rstrip(".") for d in mx.domains)
        self.users: dict[str, str] = {name.lower(): pw for name, pw in config.users}
        self.hostname = mailbox_hostname(ctx.node)
        self.store = MailStore(mail_root(ctx.state_dir, ctx.node.name))
        self.tls: ssl.SSLContext | None = None
        #: Users with a POP3 session in TRANSACTION state (RFC 1939 §8: the
        #: maildrop is locked while a POP3 session has it).
        self.pop3_locked: set[str] = set()
        self._connections: set[LineConnection] = set()

    # -- what sessions use ---------------------------------------------------------

    def authenticate(self, login: str, password: str) -> str | None:
        """The mailbox ``login`` may open with ``password``, or None.

        ``bob`` and ``bob@qq.example`` (a domain of this host's MX) both name
        the mailbox ``bob``, as with Dovecot's usual ``%n`` user names.
        """
        local, at, domain = login.strip().lower().rpartition("@")
        if not at:
            local = domain
        elif domain.rstrip(".") not in self.domains:
            local = ""
        expected = self.users.get(local)
        # compare_digest: no timing difference between a wrong user and a wrong password.
        ok = hmac.compare_digest(
            (expected if expected is not None else "\0no user").encode("utf-8"),
            password.encode("utf-8"),
        )
        return local if ok and expected is not None else None

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def note(self, trace_id: str | None, data: EventData, summary: str) -> None:
        """A ``mailbox`` trace event: what the MDA did for a client."""
        self.ctx.record(trace_id, data, summary)

    def note_changes(
        self, trace_id: str | None, protocol: str, user: str, changes: list[Change], why: str
    ) -> None:
        """Trace each file the MDA moved or deleted, as a student would see it
        with ``ls`` in the Maildir."""
        for change in changes:
            old = self.store.relative(change.old)
            if change.new is None:
                data: EventData = MailboxDeleted(protocol=protocol, user=user, path=old)
                summary = f"{why}: deleted {old}"
            else:
                new = self.store.relative(change.new)
                data = MailboxMoved(protocol=protocol, user=user, path=old, to=new)
                summary = f"{why}: {old} → {new}"
            self.note(trace_id, data, summary)

    # -- lifecycle ---------------------------------------------------------------

    def _factory(self, port: int) -> Callable[[], asyncio.Protocol]:
        imap = port in IMAP_PORTS
        implicit = self.tls if port in IMPLICIT_TLS_PORTS else None

        async def run(conn: LineConnection) -> None:
            if imap:
                await ImapSession(self, conn).run()
            else:
                await Pop3Session(self, conn).run()

        def make() -> LineConnection:
            conn = LineConnection(
                run,
                self.ctx.net.peer,
                limit=ImapSession.MAX_LINE if imap else Pop3Session.MAX_LINE,
                implicit_tls=implicit,
                on_close=self._connections.discard,
                record=self.ctx.net.record,
            )
            self._connections.add(conn)
            return conn

        return make

    async def start(self) -> list[Endpoint]:
        loop = asyncio.get_running_loop()
        domain = self.domains[0]
        # Its own certificate (the file name comes from the first name, so the
        # MX starting at the same moment never writes the same files), valid
        # for the MX's host name too: clients may use either.
        names = list(dict.fromkeys([f"imap.{domain}", f"pop.{domain}", self.hostname]))
        self.tls = await loop.run_in_executor(None, self.ctx.ca.server_context, names)
        # The Maildirs are the MX's: it makes them as it starts (beside us).
        # A user the MX has no mailbox for gets an empty one at first login.
        endpoints = []
        for port in (*IMAP_PORTS, *POP3_PORTS):
            endpoints.append(await self.ctx.net.serve_tcp(self.kind, port, self._factory(port)))
        return endpoints

    async def stop(self) -> None:
        # The node's NodeNet closes the listeners; end the sessions.
        for conn in list(self._connections):
            conn.abort()
            if conn.task is not None:
                conn.task.cancel()
        self._connections.clear()

    async def control(self, command: str, **args: Any) -> dict[str, Any]:
        if command != "status":
            raise ServiceError(f"mailbox has no control command {command!r} (status)")

        def status() -> dict[str, Any]:
            users = {}
            for user in sorted(self.users):
                users[user] = {
                    name: len(self.store.folder(user, name).scan().mails) for name in FOLDERS
                }
            return {"hostname": self.hostname, "users": users, "sessions": len(self._connections)}

        return await self.in_thread(status)
