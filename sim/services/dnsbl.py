"""A DNS blocklist (DNSBL) zone, answered the way RFC 5782 describes.

A receiver that wants to know whether 203.0.113.10 is listed in
``zen.dnsbl.example`` reverses the octets and asks for
``10.113.0.203.zen.dnsbl.example``:

* A → an address in 127.0.0.0/8 when listed; the last octet says which list
  or why (Spamhaus: .2 spam sources, .10/.11 policy lists of residential
  ranges), RFC 5782 §2.1;
* TXT → a sentence for the reject message, often a URL to look the address up
  (``$`` in the reason stands for the address, as rbldnsd does), §2.1;
* NXDOMAIN → not listed.

Every DNSBL answers two test points (§5): 127.0.0.2 is always listed and
127.0.0.1 never, so a mail server can tell a working list from a broken one.

Listings change at run time (:meth:`DnsblServer.control`): labs make a
student find out why mail is refused and get an address delisted::

    list      net[, reason][, code]     list a network (or one address)
    delist    net                       remove it (parts of larger listings too)
    listings                            what is listed now
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, ip_network
from typing import Any, ClassVar

import dnslib

from sim.errors import ServiceError
from sim.net.api import Endpoint
from sim.resolve import qtype_code
from sim.services.base import NodeContext, Service
from sim.services.dns import DnsFront
from sim.services.zonestore import ZoneAnswer, ZoneStore, split_txt
from sim.topology.model import DnsblListing
from sim.topology.zones import DEFAULT_TTL, fqdn

__all__ = ["DnsblServer", "DnsblZone"]

QTYPE = dnslib.QTYPE

#: RFC 5782 §5: the test points every DNSBL answers the same way.
TEST_LISTED = IPv4Address("127.0.0.2")
TEST_UNLISTED = IPv4Address("127.0.0.1")
_LOOPBACK = IPv4Network("127.0.0.0/8")


class DnsblZone:
    """The answers of one DNSBL zone, computed from its listings."""

    def __init__(
        self,
        zone: str,
        listed: tuple[DnsblListing, ...] | list[DnsblListing] = (),
        *,
        server_name: str = "ns",
        server_address: IPv4Address | None = None,
        ttl: int = DEFAULT_TTL,
    ) -> None:
        self.zone = fqdn(zone)
        self.ttl = ttl
        # The apex (SOA, NS) and the SOA for negative answers come from an
        # ordinary zone with no records of its own.
        self.store = ZoneStore(
            {self.zone: ""}, server_name=server_name, server_address=server_address
        )
        self.listings: list[DnsblListing] = list(listed)

    @property
    def origins(self) -> tuple[str, ...]:
        return (self.zone,)

    # -- listings -----------------------------------------------------------

    def matching(self, address: IPv4Address) -> list[DnsblListing]:
        """The listings that cover ``address`` (test points included)."""
        if address == TEST_UNLISTED:
            return []
        if address == TEST_LISTED:
            return [
                DnsblListing(
                    IPv4Network(TEST_LISTED),
                    TEST_LISTED,
                    "test point: 127.0.0.2 is always listed (RFC 5782 section 5)",
                )
            ]
        return [listing for listing in self.listings if address in listing.net]

    def add_listing(
        self, net: IPv4Network, reason: str = "", code: IPv4Address = TEST_LISTED
    ) -> None:
        """List ``net`` (replacing a listing of exactly that network)."""
        if code not in _LOOPBACK:
            raise ValueError(f"a DNSBL answer code must be in 127.0.0.0/8 (RFC 5782 §2.1): {code}")
        self.listings = [entry for entry in self.listings if entry.net != net]
        self.listings.append(DnsblListing(net, code, reason))

    def delist(self, net: IPv4Network) -> int:
        """Remove ``net`` from every listing; a larger listing keeps the rest
        of its range. Returns how many listings changed."""
        changed = 0
        kept: list[DnsblListing] = []
        for entry in self.listings:
            if not entry.net.overlaps(net):
                kept.append(entry)
                continue
            changed += 1
            if entry.net.subnet_of(net):
                continue
            # net lies inside the listed range: keep the rest of the range.
            kept.extend(replace(entry, net=rest) for rest in entry.net.address_exclude(net))
        self.listings = kept
        return changed

    # -- answering ----------------------------------------------------------

    def lookup(self, qname: str, qtype: str | int) -> ZoneAnswer:
        code = qtype_code(qtype)
        name = fqdn(qname)
        if not (name == self.zone or name.endswith("." + self.zone)):
            return ZoneAnswer("REFUSED", authoritative=False)
        labels = name[: -len(self.zone)].rstrip(".").split(".") if name != self.zone else []
        octets = _octets(labels)
        if octets is None:
            return self.store.lookup(name, code)
        if len(octets) < 4:
            # A partial address (``0.127.<zone>``) exists if some listed
            # address lies below it (an empty non-terminal, RFC 8020).
            prefix = IPv4Network(
                (bytes(reversed(octets)) + bytes(4 - len(octets)), 8 * len(octets))
            )
            if any(entry.net.overlaps(prefix) for entry in self._all_listings()):
                return self._nodata(name, code)
            return self._nxdomain(name, f"no listed address starts with {prefix}")
        address = IPv4Address(bytes(reversed(octets)))
        found = self.matching(address)
        if not found:
            return self._nxdomain(name, f"{address} is not listed in {self.zone}")
        explanation = f"{address} is listed in {self.zone}: " + "; ".join(
            f"{entry.net} → {entry.code}" + (f" ({entry.reason})" if entry.reason else "")
            for entry in found
        )
        answers: list[dnslib.RR] = []
        if code in (QTYPE.A, QTYPE.ANY):
            for value in dict.fromkeys(entry.code for entry in found):
                answers.append(dnslib.RR(name, QTYPE.A, ttl=self.ttl, rdata=dnslib.A(str(value))))
        if code in (QTYPE.TXT, QTYPE.ANY):
            for text in dict.fromkeys(self._reason(entry, address) for entry in found):
                rdata = dnslib.TXT(split_txt([text.encode()]))
                answers.append(dnslib.RR(name, QTYPE.TXT, ttl=self.ttl, rdata=rdata))
        if not answers:
            return self._nodata(name, code)
        return ZoneAnswer("NOERROR", tuple(answers), explanation=explanation)

    def _all_listings(self) -> list[DnsblListing]:
        return [*self.listings, *self.matching(TEST_LISTED)]

    def _reason(self, entry: DnsblListing, address: IPv4Address) -> str:
        reason = entry.reason or f"{address} is listed in {self.zone.rstrip('.')}"
        return reason.replace("$", str(address))

    def _nxdomain(self, name: str, why: str) -> ZoneAnswer:
        return ZoneAnswer("NXDOMAIN", (), (self.store.negative_soa(self.zone),), explanation=why)

    def _nodata(self, name: str, code: int) -> ZoneAnswer:
        return ZoneAnswer(
            "NOERROR",
            (),
            (self.store.negative_soa(self.zone),),
            explanation=f"{name} has no {QTYPE.get(code)} record (DNSBLs answer A and TXT)",
        )


def _octets(labels: list[str]) -> list[int] | None:
    """Decimal octets (as written, reversed order) or None if not an address form."""
    if not labels or len(labels) > 4:
        return None
    out = []
    for label in labels:
        if not label.isdigit() or str(int(label)) != label or int(label) > 255:
            return None
        out.append(int(label))
    return out


class DnsblServer(Service):
    """A DNSBL zone served on the node's port 53 (shared with its ``dns``)."""

    kind: ClassVar[str] = "dnsbl"

    def __init__(self, ctx: NodeContext) -> None:
        super().__init__(ctx)
        config = ctx.node.services.dnsbl
        if config is None:
            raise ServiceError(f"{ctx.node.name} has no dnsbl service")
        self.zone = DnsblZone(
            config.zone,
            config.listed,
            server_name=ctx.node.name,
            server_address=ctx.node.ip.ip if ctx.node.ip is not None else None,
        )
        self.front: DnsFront | None = None

    async def start(self) -> list[Endpoint]:
        self.front = DnsFront.of(self.ctx)
        return await self.front.attach(self.zone, self.kind)

    async def stop(self) -> None:
        if self.front is not None:
            await self.front.detach(self.zone)
            self.front = None

    async def control(self, command: str, **args: Any) -> dict[str, Any]:
        """``list``, ``delist``, ``listings`` (see the module docstring)."""
        zone = self.zone.zone
        try:
            if command == "list":
                net = _network(args.get("net"))
                code = IPv4Address(str(args.get("code") or TEST_LISTED))
                self.zone.add_listing(net, str(args.get("reason") or ""), code)
                return {"zone": zone, "listed": str(net), "code": str(code)}
            if command == "delist":
                net = _network(args.get("net"))
                return {"zone": zone, "delisted": str(net), "changed": self.zone.delist(net)}
        except ValueError as err:
            raise ServiceError(f"{self.ctx.node.name} dnsbl {command}: {err}") from err
        if command == "listings":
            return {
                "zone": zone,
                "listings": [
                    {"net": str(e.net), "code": str(e.code), "reason": e.reason}
                    for e in self.zone.listings
                ],
            }
        raise ServiceError(f"dnsbl has no control command {command!r} (list, delist, listings)")


def _network(value: Any) -> IPv4Network:
    if value is None:
        raise ValueError("missing argument 'net' (an address or a network such as 100.64.0.0/10)")
    try:
        net = ip_network(str(value), strict=False)
    except ValueError:
        raise ValueError(f"not an IPv4 address or network: {value!r}") from None
    if not isinstance(net, IPv4Network):
        raise ValueError(f"this DNSBL lists IPv4 only: {value!r}")
    return net
