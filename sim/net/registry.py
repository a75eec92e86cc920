"""Who is who on loopback: the local backend's map of lab addresses.

On the local backend every service listens on 127.0.0.1 at a free port, and
every lab client connects from 127.0.0.1. Two tables restore the lab's view:

* listeners: (lab address, protocol, lab port) → loopback port;
* clients: (protocol, loopback host, port) of a client socket → (the client
  node's lab address, the trace id its experiment travels with). A client
  binds its socket *before* connecting and registers it, so by the time the
  server accepts, the entry is there (one event loop, no race).

The protocol is part of a client's key: TCP and UDP have separate port spaces
(RFC 793, RFC 768), so the kernel may give a DNS query's UDP socket the very
port number a live TCP client holds. Keyed by (host, port) alone, the query
overwrote the TCP client's entry and deleted it when done, and the server then
took that client for the default outside node (a wrong verdict, once in
thousands of messages under load).

A loopback client that is not in the table is a real program on the machine
(swaks, dig): it is given the identity of the node ``maillab up --as`` names.
"""

from __future__ import annotations

import socket
import weakref
from collections import OrderedDict
from ipaddress import IPv4Address
from typing import Literal

from sim.fastclass import dataclass

__all__ = ["ClientEntry", "LoopbackRegistry", "Proto"]

Proto = Literal["tcp", "udp"]

#: Ephemeral ports are reused by the kernel; old client entries are simply
#: overwritten, and the table is bounded so a long soak cannot grow it forever.
MAX_CLIENTS = 65536


@dataclass(frozen=True)
class ClientEntry:
    node: str
    address: IPv4Address
    trace_id: str | None
    #: The client's socket: once it is closed, the port number may be reused
    #: by any program on the machine, so the entry no longer speaks for it.
    sock: weakref.ref[socket.socket] | None = None

    def alive(self) -> bool:
        if self.sock is None:
            return True
        sock = self.sock()
        return sock is not None and sock.fileno() != -1


class LoopbackRegistry:
    def __init__(self) -> None:
        self._listeners: dict[tuple[IPv4Address, Proto, int], int] = {}
        self._owners: dict[tuple[IPv4Address, Proto, int], str] = {}
        self._clients: OrderedDict[tuple[Proto, str, int], ClientEntry] = OrderedDict()

    def listen(
        self, address: IPv4Address, proto: Proto, port: int, local_port: int, owner: str
    ) -> None:
        key = (address, proto, port)
        if key in self._listeners:
            raise ValueError(f"{proto}/{port} on {address} is already taken by {self._owners[key]}")
        self._listeners[key] = local_port
        self._owners[key] = owner

    def unlisten(self, address: IPv4Address, proto: Proto, port: int) -> None:
        self._listeners.pop((address, proto, port), None)
        self._owners.pop((address, proto, port), None)

    def listener(self, address: IPv4Address, proto: Proto, port: int) -> int | None:
        return self._listeners.get((address, proto, port))

    def listeners(self) -> dict[tuple[IPv4Address, Proto, int], int]:
        return dict(self._listeners)

    def register_client(self, proto: Proto, sockname: tuple[str, int], entry: ClientEntry) -> None:
        key = (proto, sockname[0], sockname[1])
        self._clients.pop(key, None)
        self._clients[key] = entry
        while len(self._clients) > MAX_CLIENTS:
            self._clients.popitem(last=False)

    def forget_client(self, proto: Proto, sockname: tuple[str, int]) -> None:
        self._clients.pop((proto, sockname[0], sockname[1]), None)

    def client(self, proto: Proto, peername: tuple[str, int] | None) -> ClientEntry | None:
        if peername is None:
            return None
        key = (proto, peername[0], peername[1])
        entry = self._clients.get(key)
        if entry is not None and not entry.alive():
            del self._clients[key]
            return None
        return entry
