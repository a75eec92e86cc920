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

import functools
from dataclasses import field
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any, ClassVar

from sim.errors import NetworkError, SimError
from sim.experiments import Experiment, ExperimentResult, resolve_host
from sim.experiments.params import param
from sim.fastclass import dataclass
from sim.net.api import LabConnectError
from sim.spec.kinds import Bool, Int, Str

if TYPE_CHECKING:
    from sim.events import EventData
    from sim.services.base import NodeContext
    from sim.trace import Trace

__all__ = ["PORTS", "PROTOCOLS", "Read", "ReadResult"]

PROTOCOLS = ("imap", "pop3")
#: Default ports: (with STARTTLS or plain, with implicit TLS).
PORTS = {"imap": (143, 993), "pop3": (110, 995)}


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
        # Whether the password crosses the wire in the clear is the point of
        # a read with tls: false (RFC 8314 §3): say so where the step shows it.
        how = self.protocol if self.tls else f"{self.protocol}, no TLS: password in the clear"
        return f"read {self.user}'s {self.folder} from {node} via {self.via} ({how})"

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise SimError(f"read: protocol {self.protocol!r}: choose imap or pop3")
        if self.protocol == "pop3" and self.folder.upper() != "INBOX":
            raise SimError("read: POP3 has no folders: it reads the INBOX only (use IMAP)")
        from sim.services.mailstore import IMPLICIT_TLS_PORTS

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
        from sim.services.mailstore import mailbox_hostname

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
        import asyncio

        from sim.experiments.mailclient import Dialogue, Reader

        loop = asyncio.get_running_loop()

        def emit(data: EventData, summary: str) -> None:
            # Trace events are emitted on the lab's event loop only.
            loop.call_soon_threadsafe(functools.partial(ctx.record, trace.id, data, summary))

        dialogue = Dialogue(self.protocol, result.server, emit)
        reader = Reader(self, sock, hostname, port, ctx.ca.client_context(), dialogue, emit)
        failure = await loop.run_in_executor(None, reader.run)
        result.tls, result.messages = reader.tls, reader.messages
        if failure is not None:
            result.error, result.stage, result.reply = failure
            if result.reply is not None:
                result.reply = {k: result.reply[k] for k in ("status", "code", "text", "command")}
        from sim.experiments.reallogs import settle_real_logs

        await settle_real_logs(ctx.topology)  # Dovecot's login line, from its log
        return result


def _is_ip(text: str) -> bool:
    try:
        IPv4Address(text)
    except ValueError:
        return False
    return True
