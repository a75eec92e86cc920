"""The narrow interface between lab code and a network backend.

A service or an experiment runs *on a node*; everything it does with the
network goes through that node's :class:`NodeNet`:

* ``connect`` / ``open_connection``: a TCP connection from this node to a lab
  address. Routing and router firewalls apply. A dropped SYN ends in
  :class:`Dropped` (a ``TimeoutError``) after the lab's connect time-out, a
  REJECT in :class:`Refused` or :class:`Unreachable`; each carries the
  :class:`~sim.topology.firewall.Verdict` that names the router and the rule.
* ``udp_exchange``: one datagram out, one back (DNS).
* ``serve_tcp`` / ``serve_udp``: listen on this node's lab address.
* ``peer``: who is on the other end of a server-side transport: the client's
  lab address (what PTR, DNSBL and SPF checks look at) and the trace id the
  client's experiment travels with.

The local backend realises this on 127.0.0.1 with a registry of lab
addresses; the mininet backend with plain sockets inside a namespace.
"""

from __future__ import annotations

import errno
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any, Literal

from sim.fastclass import dataclass

if TYPE_CHECKING:
    import asyncio

    from sim.net.wirelog import WireConnection
    from sim.topology.firewall import Verdict

__all__ = [
    "Dropped",
    "Endpoint",
    "LabConnectError",
    "NodeNet",
    "Peer",
    "Refused",
    "Unreachable",
]


@dataclass(frozen=True)
class Endpoint:
    """A service listening on a node: its lab address and, on the local
    backend, the loopback address a real client on this machine can use."""

    node: str
    service: str
    proto: Literal["tcp", "udp"]
    lab: str
    local: str | None = None
    blocked: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "node": self.node,
            "service": self.service,
            "proto": self.proto,
            "lab": self.lab,
        }
        if self.local is not None:
            out["local"] = self.local
        if self.blocked is not None:
            out["blocked"] = self.blocked
        return out


@dataclass(frozen=True)
class Peer:
    """The other end of a connection as the lab sees it."""

    address: IPv4Address
    port: int
    trace_id: str | None = None
    #: A real program on this machine (swaks, a mail client), not a lab
    #: client: nothing in the lab records its side of the conversation.
    outside: bool = False


class LabConnectError(OSError):
    """A connection the lab network did not let through; ``verdict`` says why."""

    def __init__(self, err: int, message: str, verdict: Verdict | None = None) -> None:
        super().__init__(err, message)
        self.verdict = verdict


class Dropped(LabConnectError, TimeoutError):
    """No answer: a router dropped the packets; the client timed out."""

    def __init__(self, message: str, verdict: Verdict | None = None) -> None:
        super().__init__(errno.ETIMEDOUT, message, verdict)


class Refused(LabConnectError, ConnectionRefusedError):
    """Refused: a REJECT rule answered with a TCP reset, or no one listens."""

    def __init__(self, message: str, verdict: Verdict | None = None) -> None:
        super().__init__(errno.ECONNREFUSED, message, verdict)


class Unreachable(LabConnectError):
    """No route, or a REJECT rule answered with an ICMP unreachable."""

    def __init__(self, message: str, verdict: Verdict | None = None) -> None:
        super().__init__(errno.EHOSTUNREACH, message, verdict)


ProtocolFactory = Callable[[], "asyncio.BaseProtocol"]


class NodeNet(ABC):
    """The network as seen from one node of a running lab."""

    node: str
    address: IPv4Address

    @abstractmethod
    async def connect(
        self,
        dst: IPv4Address,
        port: int,
        *,
        trace_id: str | None = None,
        timeout: float | None = None,
    ) -> socket.socket:
        """A connected non-blocking TCP socket to ``dst:port`` (lab address).

        ``timeout`` is in lab seconds (default: the topology's connect
        time-out). Raises :class:`LabConnectError` subclasses.
        """

    async def open_connection(
        self,
        dst: IPv4Address,
        port: int,
        *,
        trace_id: str | None = None,
        timeout: float | None = None,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sock = await self.connect(dst, port, trace_id=trace_id, timeout=timeout)
        import asyncio  # (here: the command line imports this module, and needs no loop)

        return await asyncio.open_connection(sock=sock)

    @abstractmethod
    async def udp_exchange(
        self,
        dst: IPv4Address,
        port: int,
        payload: bytes,
        *,
        trace_id: str | None = None,
        timeout: float = 5.0,
    ) -> bytes:
        """Send one datagram and return the first reply (``timeout`` in lab seconds)."""

    @abstractmethod
    async def serve_tcp(self, service: str, port: int, factory: ProtocolFactory) -> Endpoint:
        """Listen on this node's lab address; returns where it listens."""

    @abstractmethod
    async def serve_udp(self, service: str, port: int, factory: ProtocolFactory) -> Endpoint:
        """Listen for datagrams on this node's lab address."""

    async def unserve(self, endpoint: Endpoint) -> None:
        """Stop listening at ``endpoint`` (as returned by ``serve_tcp`` or
        ``serve_udp``): new connections are refused, established ones go on,
        as when a daemon stops on a running host (an MX that is down)."""
        raise NotImplementedError(f"{type(self).__name__} cannot stop a single listener")

    def trace_of(self, address: str, port: int) -> str | None:
        """The trace id of the experiment whose TCP client is ``address:port``
        (a real daemon's log names its client so: Postfix, Dovecot); None
        when this network cannot tell."""
        return None

    def tag_message(self, message_id: str, trace_id: str) -> None:
        """Say that the message ``message_id`` belongs to ``trace_id``: a real
        MTA on another node logs it when a relay hands the message on."""
        return None

    def trace_of_message(self, message_id: str) -> str | None:
        """The trace id a message was tagged with (:meth:`tag_message`)."""
        return None

    @abstractmethod
    def peer(self, transport: asyncio.BaseTransport, addr: Any = None) -> Peer:
        """The lab identity of the client behind a server-side transport
        (for UDP, pass the datagram's source ``addr``)."""

    def record(self, transport: asyncio.BaseTransport, peer: Peer) -> WireConnection | None:
        """Where a server keeps the bytes of this connection while a capture
        runs, when no lab client records them (:mod:`sim.net.wirelog`); None
        when nothing is to be kept. The default: nothing (on mininet,
        tcpdump sees the real packets)."""
        return None
