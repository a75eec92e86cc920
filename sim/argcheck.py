"""Checking the values a person passes to a command or a Python call.

A value that can never work (a port outside 1-65535, a DNS name with an empty
label, an unknown record type, a node the topology does not have, an address
that is not ``local@domain``) is refused *before* a lab starts, with an
:class:`~sim.errors.ArgumentError` whose message names the value and says
what would be acceptable. What a well-formed value then meets in the lab (a
firewall, an NXDOMAIN, a 550) is the experiment's outcome, not an error.

The command line calls them before it loads a topology or starts a lab; the
Python API (:class:`sim.hosting.runtime.Lab`) calls them before an experiment runs.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from sim.errors import ArgumentError

if TYPE_CHECKING:
    from sim.topology.model import Topology

__all__ = [
    "dns_name",
    "dns_type",
    "host",
    "is_ipv4",
    "mail_address",
    "mail_domain",
    "node",
    "not_a_router",
    "port",
]

#: The synthetic outside host every topology has (sim.topology.graph.OUTSIDE).
_OUTSIDE = "outside"


def port(value: int | str, *, what: str = "port") -> int:
    """A TCP/UDP port: 1-65535 (port 0 is not a destination, RFC 6335 §6)."""
    try:
        number = int(str(value).strip(), 10)
    except ValueError:
        raise ArgumentError(f"{what} {value!r}: not a number (a port is 1-65535)") from None
    if not 1 <= number <= 65535:
        raise ArgumentError(f"{what} {number}: out of range (a port is 1-65535)")
    return number


def dns_name(name: str, *, what: str = "name") -> str:
    """A DNS name: labels of 1-63 octets, at most 255 octets in all (RFC 1035
    §2.3.4, §3.1). A trailing dot (absolute name) is allowed."""
    text = name.strip()
    if not text or text == ".":
        raise ArgumentError(f"{what} {name!r}: empty (a DNS name such as qq.example)")
    labels = text[:-1].split(".") if text.endswith(".") else text.split(".")
    if any(label == "" for label in labels):
        raise ArgumentError(
            f"{what} {name!r}: an empty label (two dots in a row, or a leading dot)"
        )
    for label in labels:
        try:
            size = len(label.encode("idna") if not label.isascii() else label.encode())
        except UnicodeError:
            raise ArgumentError(f"{what} {name!r}: {label!r} is not a valid label") from None
        if size > 63:
            raise ArgumentError(
                f"{what} {name!r}: the label {label[:20]}... has {size} octets, more than 63"
            )
    # On the wire: a length octet per label, the labels, the root's zero octet.
    total = (
        sum(1 + len(label.encode("idna") if not label.isascii() else label) for label in labels) + 1
    )
    if total > 255:
        raise ArgumentError(f"{what} {name[:40]}...: {total} octets, more than 255 in all")
    return name


def dns_type(rtype: str, *, what: str = "type") -> str:
    """A record type by name (``MX``) or number (``TYPE99``, RFC 3597 §5),
    returned in upper case."""
    import dnslib

    name = rtype.strip().upper()
    number = name[4:] if name.startswith("TYPE") else ""
    known = name in dnslib.QTYPE.reverse
    if not known and not (number.isdigit() and int(number) <= 0xFFFF):
        raise ArgumentError(
            f"{what} {rtype!r}: not a DNS record type (A, AAAA, MX, TXT, PTR, CNAME, NS, SOA, "
            "or TYPE0-TYPE65535)"
        )
    return rtype.strip().upper()


def host(text: str, *, what: str = "host") -> str:
    """A lab address (IPv4) or a host name."""
    try:
        IPv4Address(text)
    except ValueError:
        dns_name(text, what=what)
    return text


_SPECIALS = set('<>()[]\\,;: "')


def mail_address(address: str, *, what: str = "address") -> str:
    """An address ``local@domain`` as in RFC 5321 §4.1.2 (a dot-atom local
    part, or a quoted string; a domain name or an address literal)."""
    text = address.strip()
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise ArgumentError(f"{what} {address!r}: not an address like user@example.org")
    if not (local.startswith('"') and local.endswith('"') and len(local) >= 2):
        bad = sorted({ch for ch in local if ch in _SPECIALS or ch == "@" or ord(ch) < 33})
        if bad or local.startswith(".") or local.endswith(".") or ".." in local:
            shown = "".join(bad) or "."
            raise ArgumentError(
                f"{what} {address!r}: the local part {local!r} may not contain {shown!r} "
                "unquoted (RFC 5321 §4.1.2)"
            )
    if domain.startswith("[") and domain.endswith("]"):
        return text
    dns_name(domain, what=f"{what} {address!r}: domain")
    return text


def node(topology: Topology, name: str, *, what: str = "node", hosts_only: bool = False) -> str:
    """A node of ``topology`` (or the synthetic ``outside`` host); with
    ``hosts_only``, a host: experiments run from hosts, as on the mininet
    backend, where a router has no place to run them."""
    names = [n.name for n in (topology.hosts() if hosts_only else topology.nodes)]
    if name in names or name == _OUTSIDE:
        return name
    if hosts_only:
        not_a_router(topology, name, what=what)
    import difflib

    close = difflib.get_close_matches(name, names, n=1)
    hint = (
        f"; did you mean {close[0]!r}?" if close else f"; nodes: {', '.join(names)}, or {_OUTSIDE}"
    )
    raise ArgumentError(f"{what} {name}: no such node in {topology.name}{hint}")


def not_a_router(topology: Topology, name: str, *, what: str = "node") -> str:
    """Refuse a router as the node an experiment runs from (an unknown name is
    left to the backend, which names it)."""
    if any(n.name == name for n in topology.routers()):
        hosts = ", ".join(n.name for n in topology.hosts())
        raise ArgumentError(
            f"{what} {name}: a router; experiments run from hosts ({hosts}, or {_OUTSIDE})"
        )
    return name


def is_ipv4(text: str) -> bool:
    try:
        IPv4Address(text)
    except ValueError:
        return False
    return True


def mail_domain(topology: Topology, address: str, *, what: str = "address") -> str:
    """An address whose domain an MX of ``topology`` receives mail for."""
    mail_address(address, what=what)
    domain = address.rpartition("@")[2].rstrip(".").lower()
    served = sorted(
        {d.lower() for n in topology.hosts() if n.services.mx for d in n.services.mx.domains}
    )
    if domain not in served:
        raise ArgumentError(
            f"{what} {address}: no MX in {topology.name} receives mail for {domain} "
            f"(it serves {', '.join(served) or 'no domain'})"
        )
    return address
