"""What real programs said to the lab's servers, for ``maillab up --pcap`` on
the local backend.

The local backend has no lab network to capture: its pcap is synthesised
from the trace (:mod:`sim.present.pcap`). An experiment's own clients record
every command and reply they exchange (``smtp`` events with role
``client``), but a real program on this machine (swaks, Thunderbird, a
script using :mod:`smtplib`) talking to a running lab records nothing, and
the servers' trace events say what they decided, not the bytes. So while a
capture runs, each server connection *from outside the lab* keeps the bytes
each side sent, in order, with the lab time, the lab addresses and the lab
port (25, 587, 143...), here. Inside the lab the client side already
records, so those connections are left out (a connection is never written
twice).

After STARTTLS (RFC 3207, RFC 2595) the real connection carried TLS records;
what is kept is the dialogue as each side read and wrote it, marked
``tls`` so the file can say it was decrypted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import field
from ipaddress import IPv4Address

from sim.fastclass import dataclass

__all__ = ["WireConnection", "WireLog", "WireSegment"]

#: The most a connection keeps (octets, both ways): a big message is cut,
#: as the trace cuts its DATA event, so a long capture stays in memory.
CONNECTION_LIMIT = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class WireSegment:
    """Octets one side wrote at lab time ``t``."""

    t: float
    from_client: bool
    data: bytes
    #: Sent inside TLS on the real connection (after STARTTLS).
    tls: bool


@dataclass
class WireConnection:
    """One TCP connection from a real client to a lab server."""

    client: IPv4Address
    client_port: int
    server: IPv4Address
    server_port: int
    opened: float
    now: Callable[[], float]
    segments: list[WireSegment] = field(default_factory=list)
    closed: float | None = None
    tls: bool = False
    size: int = 0

    def client_sent(self, data: bytes) -> None:
        self._add(True, data)

    def server_sent(self, data: bytes) -> None:
        self._add(False, data)

    def secured(self) -> None:
        """TLS took over the connection: what follows was encrypted."""
        self.tls = True

    def close(self) -> None:
        if self.closed is None:
            self.closed = self.now()

    def _add(self, from_client: bool, data: bytes) -> None:
        if not data or self.size >= CONNECTION_LIMIT:
            return
        data = data[: CONNECTION_LIMIT - self.size]
        self.size += len(data)
        last = self.segments[-1] if self.segments else None
        t = self.now()
        if last is not None and last.from_client == from_client and last.tls == self.tls:
            # One side writing on (a command arriving in pieces, a multiline
            # reply): one segment, as the peer read it.
            self.segments[-1] = WireSegment(last.t, from_client, last.data + data, self.tls)
            return
        self.segments.append(WireSegment(t, from_client, data, self.tls))


class WireLog:
    """The connections recorded while a capture runs (thread-safe: a lab's
    services may run on another thread than the one that writes the file)."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._connections: list[WireConnection] = []

    def open(
        self, client: IPv4Address, client_port: int, server: IPv4Address, server_port: int
    ) -> WireConnection:
        conn = WireConnection(
            client, client_port, server, server_port, opened=self._now(), now=self._now
        )
        with self._lock:
            self._connections.append(conn)
        return conn

    def connections(self) -> list[WireConnection]:
        with self._lock:
            return list(self._connections)
