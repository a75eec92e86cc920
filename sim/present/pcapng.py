"""Writing pcapng files (and reading classic pcap), the format Wireshark opens.

pcapng (draft-ietf-opsawg-pcapng) is a sequence of blocks, each
``type, total length, body, total length``, 32-bit aligned:

* a Section Header Block (``0x0A0D0D0A``) with the byte-order magic, and
  options such as a comment (``opt_comment``, code 1) and the writing
  application (``shb_userappl``, code 4);
* one Interface Description Block (type 1) per capture point, with its link
  type: 101 (``LINKTYPE_RAW``, bare IPv4) for packets maillab writes itself,
  or what tcpdump recorded (e.g. 113 ``LINUX_SLL`` for ``-i any``);
* one Enhanced Packet Block (type 6) per packet: interface, timestamp in
  microseconds, lengths, the bytes, and an optional comment.

Also here: IPv4/UDP/TCP headers with correct checksums (RFC 791, 768, 793),
so that dissectors accept the packets as they are, and a reader for the
classic pcap files tcpdump writes (``-w``), to merge captures from several
nodes into one pcapng file with an interface per node.
"""

from __future__ import annotations

import struct
from dataclasses import field
from ipaddress import IPv4Address
from pathlib import Path

from sim.fastclass import dataclass

__all__ = [
    "LINKTYPE_RAW",
    "Capture",
    "Packet",
    "ipv4_tcp",
    "ipv4_udp",
    "read_pcap",
]

LINKTYPE_RAW = 101
TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): one's complement of the one's
    complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def _ipv4(src: IPv4Address, dst: IPv4Address, proto: int, payload: bytes, ident: int) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,  # version 4, header of 5 words
        0,
        20 + len(payload),
        ident & 0xFFFF,
        0x4000,  # don't fragment
        64,  # TTL
        proto,
        0,
        src.packed,
        dst.packed,
    )
    checksum = _checksum(header)
    return header[:10] + struct.pack("!H", checksum) + header[12:] + payload


def _pseudo(src: IPv4Address, dst: IPv4Address, proto: int, length: int) -> bytes:
    return src.packed + dst.packed + struct.pack("!BBH", 0, proto, length)


def ipv4_udp(
    src: IPv4Address, sport: int, dst: IPv4Address, dport: int, payload: bytes, ident: int = 0
) -> bytes:
    """An IPv4 packet carrying one UDP datagram (RFC 768)."""
    length = 8 + len(payload)
    header = struct.pack("!HHHH", sport, dport, length, 0)
    checksum = _checksum(_pseudo(src, dst, 17, length) + header + payload) or 0xFFFF
    return _ipv4(src, dst, 17, header[:6] + struct.pack("!H", checksum) + payload, ident)


def ipv4_tcp(
    src: IPv4Address,
    sport: int,
    dst: IPv4Address,
    dport: int,
    *,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
    ident: int = 0,
) -> bytes:
    """An IPv4 packet carrying one TCP segment (RFC 793), window 64 KiB."""
    header = struct.pack(
        "!HHIIBBHHH",
        sport,
        dport,
        seq & 0xFFFFFFFF,
        ack & 0xFFFFFFFF if flags & TCP_ACK else 0,
        5 << 4,  # data offset: 5 words, no options
        flags,
        65535,
        0,
        0,
    )
    checksum = _checksum(_pseudo(src, dst, 6, len(header) + len(payload)) + header + payload)
    segment = header[:16] + struct.pack("!H", checksum) + header[18:] + payload
    return _ipv4(src, dst, 6, segment, ident)


@dataclass(frozen=True)
class Packet:
    """One packet: interface index, time (seconds since the epoch), the bytes."""

    interface: int
    time: float
    data: bytes
    comment: str = ""


def _option(code: int, value: bytes) -> bytes:
    pad = (-len(value)) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\0" * pad


def _options(pairs: list[tuple[int, bytes]]) -> bytes:
    if not pairs:
        return b""
    return b"".join(_option(c, v) for c, v in pairs) + struct.pack("<HH", 0, 0)


def _block(kind: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


@dataclass
class Capture:
    """A pcapng file being assembled: interfaces, packets, a comment."""

    comment: str = ""
    interfaces: list[tuple[str, int]] = field(default_factory=list)
    packets: list[Packet] = field(default_factory=list)

    def interface(self, name: str, linktype: int = LINKTYPE_RAW) -> int:
        """The index of interface ``name`` (added on first use)."""
        for index, (known, kind) in enumerate(self.interfaces):
            if known == name and kind == linktype:
                return index
        self.interfaces.append((name, linktype))
        return len(self.interfaces) - 1

    def add(self, interface: int, time: float, data: bytes, comment: str = "") -> None:
        self.packets.append(Packet(interface, time, data, comment))

    def to_bytes(self) -> bytes:
        shb_options = [(4, b"maillab")]
        if self.comment:
            shb_options.insert(0, (1, self.comment.encode()))
        out = [
            _block(
                0x0A0D0D0A,
                struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _options(shb_options),
            )
        ]
        for name, linktype in self.interfaces:
            options = _options([(2, name.encode()), (9, bytes([6]))])  # if_tsresol: µs
            out.append(_block(1, struct.pack("<HHI", linktype, 0, 0) + options))
        for packet in sorted(self.packets, key=lambda p: p.time):
            micros = round(packet.time * 1_000_000)
            body = struct.pack(
                "<IIIII",
                packet.interface,
                micros >> 32,
                micros & 0xFFFFFFFF,
                len(packet.data),
                len(packet.data),
            )
            body += packet.data + b"\0" * ((-len(packet.data)) % 4)
            if packet.comment:
                body += _options([(1, packet.comment.encode())])
            out.append(_block(6, body))
        return b"".join(out)

    def write(self, path: str | Path) -> Path:
        out = Path(path)
        out.write_bytes(self.to_bytes())
        return out


def read_pcap(path: str | Path) -> tuple[int, list[tuple[float, bytes]]]:
    """The link type and the packets (time, bytes) of a classic pcap file
    (what ``tcpdump -w`` writes); microsecond or nanosecond resolution."""
    raw = Path(path).read_bytes()
    if len(raw) < 24:
        return LINKTYPE_RAW, []
    magic = raw[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(f"{endian}I", raw[20:24])[0] & 0x0FFFFFFF
    packets = []
    offset = 24
    while offset + 16 <= len(raw):
        sec, frac, caplen, _ = struct.unpack(f"{endian}IIII", raw[offset : offset + 16])
        offset += 16
        data = raw[offset : offset + caplen]
        offset += caplen
        if len(data) < caplen:
            break  # a capture cut short while being written
        packets.append((sec + frac / (1e9 if nano else 1e6), data))
    return linktype, packets
