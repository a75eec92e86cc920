"""The wire: what an experiment sent, as a pcapng file Wireshark opens.

On the local backend nothing crosses a real lab network (the services talk
over loopback), so the packets are *synthesised* from the trace:

* every DNS question and answer as the UDP datagrams the lab DNS server
  received and sent (the exact bytes, which the ``dns`` events carry in
  ``wire``), between the lab addresses of client and server;
* every SMTP dialogue as a TCP connection between the lab addresses: the
  three-way handshake, each command and each reply as its own segment
  (``250-`` continuation lines as RFC 5321 §4.2.1 writes them), the message
  itself after ``DATA`` as the client sent it (dot-stuffed, with the final
  dot), and FIN at the end;
* a connection the network dropped as a SYN without an answer, one it
  refused as SYN and RST;
* a mailbox read (IMAP or POP3) the same way: the greeting, each command,
  the response lines the client recorded (long ones are cut in the trace,
  and so in the file).

After STARTTLS the real connection carried TLS records; the synthesised one
carries the decrypted dialogue, so that Wireshark's SMTP dissector reads it.
The file's comment says so, and so does each such packet's. AUTH is shown
as the trace records it (``AUTH PLAIN ********``): no password is written.

On the mininet backend the packets are real: :func:`merge_captures` joins the
files ``tcpdump`` wrote inside each node into one pcapng file with one
interface per node (see :mod:`sim.present.wirecapture`).
"""

from __future__ import annotations

import base64
import functools
import itertools
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim.events import Dns, ImapExchange, Net, Pop3Exchange, SmtpClientExchange
from sim.fastclass import dataclass
from sim.net.wirelog import WireConnection, WireSegment
from sim.present.pcapng import (
    TCP_ACK,
    TCP_FIN,
    TCP_PSH,
    TCP_RST,
    TCP_SYN,
    Capture,
    ipv4_tcp,
    ipv4_udp,
    read_pcap,
)
from sim.present.sequence import AddressBook
from sim.trace import Trace, TraceEvent

if TYPE_CHECKING:
    from sim.experiments import ExperimentResult
    from sim.topology.model import Topology

__all__ = ["EPOCH", "LOCAL_COMMENT", "merge_captures", "synthesise", "write_pcap"]

#: Lab time 0 in the file: 2026-01-01T00:00:00Z (the local backend has no
#: wall-clock start to give; a fixed one keeps files reproducible).
EPOCH = 1_767_225_600.0

LOCAL_COMMENT = (
    "maillab, local backend: packets synthesised from the experiment's trace between lab "
    "addresses. DNS messages are the bytes the lab DNS server received and sent. SMTP "
    "after STARTTLS was encrypted on the real connection; this file carries the decrypted "
    "dialogue instead. Passwords are masked as the trace records them."
)


def _address(text: Any) -> IPv4Address | None:
    try:
        return IPv4Address(str(text).rsplit(":", 1)[0])
    except ValueError:
        return None


@dataclass
class _Connection:
    client: IPv4Address
    sport: int
    server: IPv4Address
    dport: int
    seq: int = 1000
    ack: int = 5000
    encrypted: bool = False


class _Synth:
    def __init__(self, capture: Capture, addresses: AddressBook, topology: Topology | None) -> None:
        self.capture = capture
        self.iface = capture.interface("lab (synthesised)")
        self.addr = addresses
        self.node_ip: dict[str, IPv4Address] = {}
        for ip, name in addresses.names.items():
            parsed = _address(ip)
            if parsed is not None:
                self.node_ip.setdefault(name, parsed)
        self.ports = itertools.count(40001)
        self.ident = itertools.count(1)
        self.open: dict[tuple[str, str], _Connection] = {}
        self.last = 0.0  # packets keep the order they were made in
        self.dropped: dict[str, tuple[float, IPv4Address, int]] = {}  # dst:port → first SYN

    def emit(self, t: float, data: bytes, comment: str = "") -> None:
        # A command is stamped just before its reply; events recorded at the
        # same moment must not put it before the previous reply.
        self.last = max(EPOCH + t, self.last)
        self.capture.add(self.iface, self.last, data, comment)

    # -- DNS ------------------------------------------------------------------

    def dns(self, e: TraceEvent) -> None:
        d = e.as_(Dns)
        if d is None or d.wire is None or d.cached:
            return
        client, server = _address(d.client), _address(d.server)
        if client is None or server is None:
            return
        query = base64.b64decode(d.wire["query"])
        reply = base64.b64decode(d.wire["reply"])
        sport = next(self.ports)
        if d.transport == "tcp":
            conn = _Connection(client, sport, server, 53)
            self.handshake(e.t - 0.002, conn)
            self.segment(e.t - 0.001, conn, len(query).to_bytes(2, "big") + query, True)
            self.segment(e.t, conn, len(reply).to_bytes(2, "big") + reply, False)
            self.close(e.t, conn)
            return
        self.emit(e.t - 0.001, ipv4_udp(client, sport, server, 53, query, next(self.ident)))
        self.emit(e.t, ipv4_udp(server, 53, client, sport, reply, next(self.ident)))

    # -- TCP ------------------------------------------------------------------

    def handshake(self, t: float, c: _Connection) -> None:
        i = self.ident
        self.emit(
            t,
            ipv4_tcp(
                c.client,
                c.sport,
                c.server,
                c.dport,
                seq=c.seq - 1,
                ack=0,
                flags=TCP_SYN,
                ident=next(i),
            ),
        )
        self.emit(
            t,
            ipv4_tcp(
                c.server,
                c.dport,
                c.client,
                c.sport,
                seq=c.ack - 1,
                ack=c.seq,
                flags=TCP_SYN | TCP_ACK,
                ident=next(i),
            ),
        )
        self.emit(
            t,
            ipv4_tcp(
                c.client,
                c.sport,
                c.server,
                c.dport,
                seq=c.seq,
                ack=c.ack,
                flags=TCP_ACK,
                ident=next(i),
            ),
        )

    def segment(self, t: float, c: _Connection, payload: bytes, from_client: bool) -> None:
        comment = "decrypted: TLS on the real connection (after STARTTLS)" if c.encrypted else ""
        # The client's bytes advance its sequence number, the server's the ack.
        src, sport, dst, dport = (
            (c.client, c.sport, c.server, c.dport)
            if from_client
            else (c.server, c.dport, c.client, c.sport)
        )
        seq, ack = (c.seq, c.ack) if from_client else (c.ack, c.seq)
        packet = ipv4_tcp(
            src,
            sport,
            dst,
            dport,
            seq=seq,
            ack=ack,
            flags=TCP_PSH | TCP_ACK,
            payload=payload,
            ident=next(self.ident),
        )
        if from_client:
            c.seq += len(payload)
        else:
            c.ack += len(payload)
        self.emit(t, packet, comment)

    def close(self, t: float, c: _Connection) -> None:
        self.emit(
            t,
            ipv4_tcp(
                c.client,
                c.sport,
                c.server,
                c.dport,
                seq=c.seq,
                ack=c.ack,
                flags=TCP_FIN | TCP_ACK,
                ident=next(self.ident),
            ),
        )
        self.emit(
            t,
            ipv4_tcp(
                c.server,
                c.dport,
                c.client,
                c.sport,
                seq=c.ack,
                ack=c.seq + 1,
                flags=TCP_FIN | TCP_ACK,
                ident=next(self.ident),
            ),
        )
        self.emit(
            t,
            ipv4_tcp(
                c.client,
                c.sport,
                c.server,
                c.dport,
                seq=c.seq + 1,
                ack=c.ack + 1,
                flags=TCP_ACK,
                ident=next(self.ident),
            ),
        )

    def net(self, e: TraceEvent) -> None:
        """A connection the network stopped: a SYN that got no answer, or
        one answered by a reset (RFC 793 §3.4) when the router refused it."""
        d = e.as_(Net)
        if d is None or d.proto != "tcp" or d.verdict == "accept":
            return
        src, dst = _address(d.src), _address(d.dst)
        if src is None or dst is None or d.port is None:
            return
        sport, dport = next(self.ports), d.port
        why = d.explanation or d.verdict
        self.emit(
            e.t,
            ipv4_tcp(src, sport, dst, dport, seq=999, ack=0, flags=TCP_SYN, ident=next(self.ident)),
            why,
        )
        self.dropped[f"{dst}:{dport}"] = (e.t, src, sport)
        if d.verdict == "reject":
            self.emit(
                e.t,
                ipv4_tcp(
                    dst,
                    dport,
                    src,
                    sport,
                    seq=0,
                    ack=1000,
                    flags=TCP_RST | TCP_ACK,
                    ident=next(self.ident),
                ),
            )

    def retransmit(self, until: float, peer: str) -> None:
        """The SYNs a client sends again while it waits for an answer that a
        dropping firewall never lets come: after 1, 3, 7, 15… seconds (Linux
        doubles the interval, RFC 6298 §5.5), until it gives up."""
        first = self.dropped.pop(peer, None)
        dst = _address(peer)
        if first is None or dst is None:
            return
        t0, src, sport = first
        delay = 1.0
        while t0 + delay < until:
            self.emit(
                t0 + delay,
                ipv4_tcp(
                    src,
                    sport,
                    dst,
                    int(peer.rsplit(":", 1)[1]),
                    seq=999,
                    ack=0,
                    flags=TCP_SYN,
                    ident=next(self.ident),
                ),
                "retransmission: no answer yet",
            )
            delay = delay * 2 + 1

    # -- SMTP -----------------------------------------------------------------

    def smtp(self, e: TraceEvent) -> None:
        d = e.as_(SmtpClientExchange)
        if d is None:
            return
        client = self.node_ip.get(e.node)
        server = _address(d.peer)
        if client is None or server is None:
            return
        key = (e.node, d.peer)
        command = d.command
        code = d.code
        if command.startswith("connect "):
            if code is None:
                self.retransmit(e.t, d.peer)
                return  # never connected: the net event drew the first SYN
            port = int(d.peer.rsplit(":", 1)[1])
            conn = _Connection(client, next(self.ports), server, port)
            self.open[key] = conn
            self.handshake(e.t - 0.001, conn)
            self.segment(e.t, conn, _reply_bytes(code, d), False)
            return
        conn_or_none = self.open.get(key)
        if conn_or_none is None:
            return
        conn = conn_or_none
        if d.stage == "data" and d.payload is not None:
            sent = d.payload.encode("latin-1")
        elif d.stage == "data" and command.startswith("(message"):
            # Too big to keep in the trace: say so where the content would be.
            what = command[1:].split(")")[0]
            sent = f"X-Maillab: {what}, not kept in the trace\r\n\r\n.\r\n".encode()
        else:
            sent = command.encode("utf-8", "replace") + b"\r\n"
        self.segment(e.t - 0.0005, conn, sent, True)
        if code is None:
            self.close(e.t, conn)  # the dialogue broke: no reply came
            del self.open[key]
            return
        self.segment(e.t, conn, _reply_bytes(code, d), False)
        if command == "STARTTLS" and code == 220:
            conn.encrypted = True  # RFC 3207: TLS from here on, on the real wire

    # -- IMAP and POP3 (a mailbox read) -----------------------------------------

    def mailbox_dialogue(self, e: TraceEvent) -> None:
        """A read: the greeting opens the connection (RFC 9051 §7.1.1,
        RFC 1939 §4), then each command and its response lines."""
        d = e.data
        if not isinstance(d, ImapExchange | Pop3Exchange):
            return
        client = self.node_ip.get(e.node)
        server = _address(d.peer)
        if client is None or server is None:
            return
        key = (e.node, d.peer)
        lines = d.lines
        status_line = f"{d.response or ''}\r\n"
        # IMAP: untagged data first, the tagged status last (RFC 9051 §2.2.2)
        if isinstance(d, ImapExchange):
            answer = "".join(f"{line}\r\n" for line in lines) + status_line
        else:  # POP3: the status line, then a multi-line body ended by "." (RFC 1939 §3)
            body = "".join(f"{line}\r\n" for line in lines)
            answer = status_line + (body + ".\r\n" if lines and lines[-1] != "." else body)
        command = d.command
        if not command:  # the greeting: a new connection
            port = int(d.peer.rsplit(":", 1)[1])
            conn = _Connection(client, next(self.ports), server, port)
            self.open[key] = conn
            self.handshake(e.t - 0.001, conn)
            self.segment(e.t, conn, answer.encode("utf-8", "replace"), False)
            return
        conn_or_none = self.open.get(key)
        if conn_or_none is None:
            return
        self.segment(e.t - 0.0005, conn_or_none, f"{command}\r\n".encode("utf-8", "replace"), True)
        self.segment(e.t, conn_or_none, answer.encode("utf-8", "replace"), False)
        verb = command.split()[1:2] if isinstance(d, ImapExchange) else command.split()[:1]
        if [v.upper() for v in verb] in (["STARTTLS"], ["STLS"]) and d.status in ("OK", "+OK"):
            conn_or_none.encrypted = True
        if d.status == "BYE" or command.upper().endswith(("LOGOUT", "QUIT")):
            self.close(e.t, conn_or_none)
            del self.open[key]

    def imap(self, e: TraceEvent) -> None:
        self.mailbox_dialogue(e)

    def pop3(self, e: TraceEvent) -> None:
        self.mailbox_dialogue(e)

    # -- real programs' connections (``up --pcap``) ------------------------------

    def recorded(self, wire: WireConnection) -> list[tuple[float, Callable[[], None]]]:
        """The packets of a connection a real program made to a lab server,
        as (lab time, action) to run in time order with the trace's."""
        conn = _Connection(wire.client, wire.client_port, wire.server, wire.server_port)
        actions: list[tuple[float, Callable[[], None]]] = [
            (wire.opened, lambda: self.handshake(wire.opened, conn))
        ]

        def send(segment: WireSegment) -> Callable[[], None]:
            def act() -> None:
                conn.encrypted = segment.tls
                self.segment(segment.t, conn, segment.data, segment.from_client)

            return act

        actions += [(segment.t, send(segment)) for segment in wire.segments]
        end = wire.closed
        if end is not None:
            actions.append((end, lambda: self.close(end, conn)))
        return actions

    def finish(self, t: float) -> None:
        for conn in self.open.values():
            self.segment(t, conn, b"QUIT\r\n", True)
            self.close(t, conn)
        self.open.clear()


def _reply_bytes(code: Any, d: SmtpClientExchange) -> bytes:
    """A reply as the server wrote it: ``250-first`` … ``250 last`` (RFC 5321
    §4.2.1), the enhanced status code (RFC 3463) on each line."""
    lines = (d.text or "").split("\n")
    enhanced = d.enhanced
    out = []
    for i, line in enumerate(lines):
        sep = " " if i == len(lines) - 1 else "-"
        text = f"{enhanced} {line}" if enhanced else line
        out.append(f"{code}{sep}{text}".rstrip() + "\r\n")
    return "".join(out).encode("utf-8", "replace")


def synthesise(
    source: Trace | ExperimentResult | Iterable[TraceEvent],
    topology: Topology | None = None,
    *,
    comment: str = LOCAL_COMMENT,
    wire: Iterable[WireConnection] = (),
) -> Capture:
    """The packets of ``source`` (a result, a trace or events) as a capture,
    with the connections real programs made to the lab's servers (``wire``,
    recorded by the servers while ``up --pcap`` ran: :mod:`sim.net.wirelog`)."""
    from sim.experiments import ExperimentResult

    if isinstance(source, ExperimentResult):
        events = list(source.trace)
    elif isinstance(source, Trace):
        events = list(source)
    else:
        events = sorted(source, key=lambda e: e.t)
    capture = Capture(comment=comment)
    synth = _Synth(capture, AddressBook(topology, events), topology)
    actions: list[tuple[float, Callable[[], None]]] = []
    for event in events:
        handler = getattr(synth, event.kind, None)
        if event.kind in ("dns", "net", "smtp", "imap", "pop3") and handler is not None:
            actions.append((event.t, functools.partial(handler, event)))
    for connection in wire:
        actions += synth.recorded(connection)
    # In time order; at equal times, in the order they were recorded.
    for _, act in sorted(actions, key=lambda action: action[0]):
        act()
    synth.finish(max((t for t, _ in actions), default=0.0))
    return capture


def write_pcap(
    source: Trace | ExperimentResult | Iterable[TraceEvent],
    path: str | Path,
    topology: Topology | None = None,
    *,
    wire: Iterable[WireConnection] = (),
) -> Path:
    """Write ``source``'s packets, synthesised (local backend), to ``path``."""
    return synthesise(source, topology, wire=wire).write(path)


def merge_captures(files: dict[str, Path], path: str | Path, comment: str) -> Path:
    """Join classic pcap files, one per node (``{node: file}``), into one
    pcapng file with an interface named after each node."""
    capture = Capture(comment=comment)
    for node, file in sorted(files.items()):
        if not file.is_file():
            continue
        linktype, packets = read_pcap(file)
        iface = capture.interface(node, linktype)
        for time, data in packets:
            capture.add(iface, time, data)
    return capture.write(path)
