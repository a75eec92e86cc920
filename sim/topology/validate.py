"""Meaning checks of a topology: the second layer of validation.

The loader has already checked the structure (every key, type and value, see
:mod:`sim.topology.schema`). What is left needs the whole topology at once,
as containerlab's ``verifyDuplicateAddresses`` and friends do: two nodes with
one address, a gateway that is not a router, an MX record pointing at an IP
address, a zone nobody serves, a firewall rule that can never match.

Each check is a small named function that yields :class:`Finding` objects: a
key path (``("nodes", "laptop", "gateway")``), a sentence, and the parts of
the topology the conclusion depends on. The loader turns a finding into a
:class:`~sim.errors.Problem` at the line of that key, and drops findings that
depend on a part which already has a structural problem (a misspelt
``gatway`` must not also be reported as "laptop is on no link").

:func:`check_topology` runs every check on a :class:`Topology` built in
Python as well as on one loaded from a file.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import field
from ipaddress import IPv4Address, IPv4Network

import dnslib

from sim.fastclass import dataclass
from sim.spec.words import path_text
from sim.topology.model import FirewallRule, Node, Topology
from sim.topology.model import MxService as model_MxService
from sim.topology.zones import ZoneSyntaxError, fqdn, parse_zone_lines

__all__ = [
    "CHECKS",
    "Finding",
    "KeyPath",
    "check_topology",
    "dovecot_setting_problem",
    "render_path",
]

KeyPath = tuple[str | int, ...]

#: The node name the network layout gives to its synthetic outside client
#: (:data:`sim.topology.graph.OUTSIDE`); kept here so that validation does not
#: depend on the layout code.
RESERVED_NODE_NAMES = ("outside",)

#: How many CNAMEs a lookup follows before giving up (loops, long chains).
_MAX_CNAME_CHAIN = 8


@dataclass(frozen=True)
class Finding:
    """One meaning problem.

    ``path`` is the key it is about; ``depends`` lists other key paths whose
    content the conclusion relies on (``"*"`` matches any one key). ``text_line``
    is a 1-based line inside the value at ``path`` (zone text). A ``{ref}`` in
    the message is replaced by where ``refers`` is (its line, in a file).
    """

    check: str
    path: KeyPath
    message: str
    depends: tuple[KeyPath, ...] = ()
    text_line: int | None = None
    refers: KeyPath | None = None


#: Paths read the same in every format (sim.spec.words.path_text).
render_path = path_text


# -- what the checks look at -------------------------------------------------------


@dataclass
class _Record:
    zone: str  # the origin, without the final dot
    line: int  # 1-based line in the zone text
    rr: dnslib.RR

    @property
    def owner(self) -> str:
        return str(self.rr.rname).lower()

    @property
    def rtype(self) -> str:
        return str(dnslib.QTYPE.get(self.rr.rtype))

    @property
    def target(self) -> str:
        return str(self.rr.rdata.label).lower()


@dataclass
class _Lab:
    """A topology with the indexes the checks share."""

    topology: Topology
    nodes: dict[str, Node]
    #: Zones whose text does not parse: what they hold is unknown, so no
    #: check concludes that a name in them lacks a record.
    zone_errors: dict[str, ZoneSyntaxError] = field(default_factory=dict)
    records: list[_Record] = field(default_factory=list)
    by_name: dict[str, list[_Record]] = field(default_factory=dict)

    @classmethod
    def of(cls, topology: Topology) -> _Lab:
        nodes: dict[str, Node] = {}
        for node in topology.nodes:
            nodes.setdefault(node.name, node)
        lab = cls(topology, nodes)
        for origin, text in topology.zones:
            try:
                parsed = parse_zone_lines(origin, text)
            except ZoneSyntaxError as err:
                lab.zone_errors[origin] = err
                continue
            for line, rr in parsed:
                record = _Record(origin, line, rr)
                lab.records.append(record)
                if _within(record.owner, origin):
                    lab.by_name.setdefault(record.owner, []).append(record)
        return lab

    def hosts(self) -> Iterator[Node]:
        return (n for n in self.nodes.values() if n.kind == "host")

    def routers(self) -> Iterator[Node]:
        return (n for n in self.nodes.values() if n.kind == "router")

    def lookup(self, name: str, rtype: str) -> list[_Record]:
        return [r for r in self.by_name.get(fqdn(name), []) if r.rtype == rtype]

    def unknown(self, name: str) -> bool:
        """Is ``name`` in a zone whose text does not parse?"""
        return any(_within(fqdn(name), origin) for origin in self.zone_errors)

    def in_lab(self, name: str) -> bool:
        """Is ``name`` inside one of the lab's zones?"""
        return any(_within(fqdn(name), origin) for origin, _ in self.topology.zones)

    def resolves(self, name: str) -> bool:
        """Does ``name`` have an A record in the lab, CNAMEs followed?"""
        for _ in range(_MAX_CNAME_CHAIN):
            if self.lookup(name, "A"):
                return True
            aliases = self.lookup(name, "CNAME")
            if not aliases:
                return False
            name = aliases[0].target
        return False


def _within(name: str, origin: str) -> bool:
    name, origin = fqdn(name), fqdn(origin)
    return name == origin or name.endswith("." + origin)


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _names(nodes: Iterable[Node]) -> str:
    return ", ".join(sorted(n.name for n in nodes)) or "none"


# -- the checks ---------------------------------------------------------------------

_Check = Callable[[_Lab], Iterator[Finding]]
_REGISTRY: list[tuple[str, str, _Check]] = []


def _check(fn: _Check) -> _Check:
    doc = (fn.__doc__ or "").strip().split("\n\n")[0]
    _REGISTRY.append((fn.__name__, " ".join(doc.split()), fn))
    return fn


ANY_IP = ("nodes", "*", "ip")
ANY_GATEWAY = ("nodes", "*", "gateway")
ANY_KIND = ("nodes", "*", "kind")
ANY_DNS = ("nodes", "*", "services", "dns")
ZONES: KeyPath = ("zones",)


@_check
def verify_node_names(lab: _Lab) -> Iterator[Finding]:
    """Node names the lab reserves for itself (the synthetic `outside` client)."""
    for name in lab.nodes:
        if name in RESERVED_NODE_NAMES:
            yield Finding(
                "verify_node_names",
                ("nodes", name),
                f"the name {name!r} is reserved for the neutral client that `maillab up` "
                "adds to every lab; choose another name",
            )


@_check
def verify_duplicate_addresses(lab: _Lab) -> Iterator[Finding]:
    """Two hosts with one address."""
    owners: dict[IPv4Address, str] = {}
    for node in lab.hosts():
        if node.ip is None:
            continue
        first = owners.setdefault(node.ip.ip, node.name)
        if first != node.name:
            yield Finding(
                "verify_duplicate_addresses",
                ("nodes", node.name, "ip"),
                f"{node.ip.ip} is already the address of {first} ({{ref}}); "
                "every host needs its own",
                depends=(("nodes", first, "ip"),),
                refers=("nodes", first, "ip"),
            )


@_check
def verify_host_addresses(lab: _Lab) -> Iterator[Finding]:
    """A host address that is its network's own or broadcast address, or a LAN
    with no address left for its gateway router."""
    taken = {n.ip.ip for n in lab.hosts() if n.ip is not None}
    lans: dict[tuple[str, IPv4Network], str] = {}
    for node in lab.hosts():
        if node.ip is None:
            continue
        net = node.ip.network
        # RFC 919 / RFC 1122 §3.2.1.3: the all-zeros and all-ones host parts
        # name the network and its broadcast; /31 (RFC 3021) and /32 have none.
        if net.prefixlen <= 30 and node.ip.ip in (net.network_address, net.broadcast_address):
            which = "network" if node.ip.ip == net.network_address else "broadcast"
            yield Finding(
                "verify_host_addresses",
                ("nodes", node.name, "ip"),
                f"{node.ip.ip} is the {which} address of {net}; give the host an address "
                f"between {net.network_address + 1} and {net.broadcast_address - 1}",
            )
        if node.gateway is not None:
            lans.setdefault((node.gateway, net), node.name)
    for (gateway, net), first in lans.items():
        if not any(address not in taken for address in net.hosts()):
            yield Finding(
                "verify_host_addresses",
                ("nodes", first, "ip"),
                f"{net} has no address left for its gateway {gateway}: use a shorter prefix",
                depends=(ANY_IP, ANY_GATEWAY),
            )


@_check
def verify_gateways(lab: _Lab) -> Iterator[Finding]:
    """A host whose gateway is not a node, or not a router."""
    routers = list(lab.routers())
    for node in lab.hosts():
        gateway = node.gateway
        if gateway is None:
            continue
        path = ("nodes", node.name, "gateway")
        target = lab.nodes.get(gateway)
        if target is None:
            yield Finding(
                "verify_gateways",
                path,
                f"gateway {gateway!r} is not a node of this topology"
                f"{_suggest(gateway, (r.name for r in routers))}; routers: {_names(routers)}",
                depends=(("nodes", gateway),),
            )
        elif target.kind != "router":
            yield Finding(
                "verify_gateways",
                path,
                f"gateway {gateway!r} is a host, not a router; routers: {_names(routers)}",
                depends=(("nodes", gateway, "kind"),),
            )


@_check
def verify_shared_subnets(lab: _Lab) -> Iterator[Finding]:
    """Hosts on one network behind different gateways, and overlapping networks
    of different LANs: one network is one LAN, behind one router."""
    first_on: dict[IPv4Network, Node] = {}
    routed: dict[tuple[str, IPv4Network], Node] = {}
    deps = (ANY_IP, ANY_GATEWAY)
    for node in lab.hosts():
        if node.ip is None:
            continue
        net = node.ip.network
        first = first_on.setdefault(net, node)
        if first is not node and first.gateway != node.gateway:
            theirs = f"gateway {first.gateway}" if first.gateway else "no gateway"
            mine = f"gateway {node.gateway}" if node.gateway else "no gateway"
            yield Finding(
                "verify_shared_subnets",
                ("nodes", node.name, "gateway" if node.gateway else "ip"),
                f"{node.name} is on {net} like {first.name} ({{ref}}), but has {mine} where "
                f"{first.name} has {theirs}: hosts on one network share their gateway",
                depends=deps,
                refers=("nodes", first.name, "ip"),
            )
            continue
        if node.gateway is None:
            continue
        key = (node.gateway, net)
        if key in routed:
            continue
        for (other_gw, other_net), other in routed.items():
            if other_net != net and other_net.overlaps(net):
                yield Finding(
                    "verify_shared_subnets",
                    ("nodes", node.name, "ip"),
                    f"{net} (behind {node.gateway}) overlaps {other_net} of {other.name} "
                    f"(behind {other_gw}, {{ref}}): one network cannot be on two LANs",
                    depends=deps,
                    refers=("nodes", other.name, "ip"),
                )
                break
        routed[key] = node


@_check
def verify_isolated_nodes(lab: _Lab) -> Iterator[Finding]:
    """A node on no link: a router with no link and no host behind it, a host
    without gateway whose network no other host shares."""
    linked = {end for link in lab.topology.links for end in link}
    served = {n.gateway for n in lab.hosts() if n.gateway is not None}
    deps = (("links",), ANY_GATEWAY, ANY_IP, ANY_KIND)
    for router in lab.routers():
        if router.name not in linked and router.name not in served:
            yield Finding(
                "verify_isolated_nodes",
                ("nodes", router.name),
                f"router {router.name} is on no link and no host has it as gateway: "
                "it is connected to nothing",
                depends=deps,
            )
    networks: dict[IPv4Network, int] = {}
    for host in lab.hosts():
        if host.ip is not None:
            networks[host.ip.network] = networks.get(host.ip.network, 0) + 1
    for host in lab.hosts():
        if host.gateway is None and host.ip is not None and networks[host.ip.network] == 1:
            yield Finding(
                "verify_isolated_nodes",
                ("nodes", host.name),
                f"host {host.name} has no gateway and no other host is on "
                f"{host.ip.network}: it can reach nothing (give it a gateway)",
                depends=deps,
            )


@_check
def verify_links(lab: _Lab) -> Iterator[Finding]:
    """Links that name unknown nodes or hosts, join a router to itself, or
    repeat an earlier link."""
    routers = [n.name for n in lab.routers()]
    seen: dict[frozenset[str], int] = {}
    for index, (a, b) in enumerate(lab.topology.links):
        bad = False
        for end_index, end in enumerate((a, b)):
            target = lab.nodes.get(end)
            path = ("links", index, end_index)
            if target is None:
                bad = True
                yield Finding(
                    "verify_links",
                    path,
                    f"{end!r} is not a node of this topology{_suggest(end, routers)}; "
                    f"routers: {', '.join(sorted(routers)) or 'none'}",
                    depends=(("nodes", end),),
                )
            elif target.kind != "router":
                bad = True
                yield Finding(
                    "verify_links",
                    path,
                    f"{end!r} is a host: links join routers; a host reaches its router "
                    "through its `gateway`",
                    depends=(("nodes", end, "kind"),),
                )
        if bad:
            continue
        pair = frozenset((a, b))
        if a == b:
            yield Finding("verify_links", ("links", index), f"a link from {a} to itself")
        elif pair in seen:
            yield Finding(
                "verify_links",
                ("links", index),
                f"{a} and {b} are already linked ({{ref}})",
                refers=("links", seen[pair]),
            )
        else:
            seen[pair] = index


@_check
def verify_zone_text(lab: _Lab) -> Iterator[Finding]:
    """Zone text that does not parse, records outside their zone, and CNAMEs
    beside other records (RFC 1034 §3.6.2, RFC 2181 §10.1)."""
    for origin, err in lab.zone_errors.items():
        yield Finding("verify_zone_text", ("zones", origin), err.message, text_line=err.line)
    types_at: dict[str, set[str]] = {}
    for record in lab.records:
        if not _within(record.owner, record.zone):
            yield Finding(
                "verify_zone_text",
                ("zones", record.zone),
                f"{record.owner.rstrip('.')} is outside the zone {record.zone}: a zone holds only "
                f"names ending in {record.zone} (write a relative name, or put the record "
                "in its own zone)",
                text_line=record.line,
            )
            continue
        types_at.setdefault(record.owner, set()).add(record.rtype)
    for record in lab.records:
        others = types_at.get(record.owner, set()) - {"CNAME", "RRSIG", "NSEC"}
        if record.rtype == "CNAME" and others:
            yield Finding(
                "verify_zone_text",
                ("zones", record.zone),
                f"{record.owner.rstrip('.')} has a CNAME and also "
                f"{', '.join(sorted(others))} records: an alias can have no other data "
                "(RFC 1034 §3.6.2)",
                text_line=record.line,
            )


@_check
def verify_service_zones(lab: _Lab) -> Iterator[Finding]:
    """Zones a dns service serves but that are not defined under `zones`, and
    defined zones that no dns service serves."""
    defined = {origin for origin, _ in lab.topology.zones}
    served: set[str] = set()
    for node in lab.nodes.values():
        dns = node.services.dns
        if dns is None:
            continue
        for index, zone in enumerate(dns.zones):
            served.add(zone)
            if zone not in defined:
                yield Finding(
                    "verify_service_zones",
                    ("nodes", node.name, "services", "dns", "zones", index),
                    f"zone {zone} is not defined under `zones`{_suggest(zone, defined)}",
                    depends=(ZONES,),
                )
    dns_hosts = [n.name for n in lab.nodes.values() if n.services.dns is not None]
    for origin in defined - served:
        where = (
            f"add it to services.dns.zones of {' or '.join(dns_hosts)}"
            if dns_hosts
            else ("no host runs a dns service")
        )
        yield Finding(
            "verify_service_zones",
            ("zones", origin),
            f"no dns service serves the zone {origin}: {where}",
            depends=(ANY_DNS,),
        )


def _ip_like(target: str, zone: str) -> str | None:
    """The IPv4 address an MX/NS target was written as, if it was one.

    Written without a final dot, ``203.0.113.25`` became
    ``203.0.113.25.qq.example.``; with one, ``203.0.113.25.``.
    """
    name = target.rstrip(".")
    suffix = "." + zone.rstrip(".")
    if name.endswith(suffix):
        name = name[: -len(suffix)]
    labels = name.split(".")
    if len(labels) == 4 and all(x.isdigit() and int(x) <= 255 for x in labels):
        return name
    return None


def _target_findings(lab: _Lab, record: _Record, what: str) -> Iterator[Finding]:
    check = "verify_mx_ns_targets"
    path = ("zones", record.zone)
    target = record.target
    address = _ip_like(target, record.zone)
    shown = target.rstrip(".")
    if address is not None:
        rfc = "RFC 5321 §5.1" if what == "MX" else "RFC 1035 §3.3.11"
        yield Finding(
            check,
            path,
            f"{what} target {address} is an IP address: an {what} names a host, which "
            f"then has an A record ({rfc}); add e.g. `mx A {address}` and point the "
            f"{what} at that name",
            text_line=record.line,
        )
    elif lab.unknown(target):
        return
    elif lab.lookup(target, "CNAME"):
        yield Finding(
            check,
            path,
            f"{what} target {shown} is an alias (CNAME): an {what} must name the host "
            "itself (RFC 2181 §10.3); point it at the name that has the A record",
            text_line=record.line,
        )
    elif not lab.in_lab(target):
        yield Finding(
            check,
            path,
            f"{what} target {shown} is outside the lab's zones: nothing leaves the lab, "
            "so no lab node can find its address",
            text_line=record.line,
        )
    elif not lab.lookup(target, "A"):
        yield Finding(
            check,
            path,
            f"{what} target {shown} has no A record in the lab's zones"
            + _missing_dot(target, record.zone),
            text_line=record.line,
        )


def _missing_dot(target: str, zone: str) -> str:
    """A hint when ``target`` looks like a full name written without the
    final dot: in zone-file text a name without one is relative to the zone
    (RFC 1035 §5.1), so ``mx2.backupco.example`` in corp.example became
    ``mx2.backupco.example.corp.example``."""
    name, suffix = target.rstrip("."), "." + zone.rstrip(".")
    if not name.endswith(suffix):
        return ""
    written = name[: -len(suffix)]
    if "." not in written:
        return ""  # a plain relative name such as `mx`: the usual way to write it
    return (
        f"; the final dot is missing: `{written}` without a final dot is relative to "
        f"{zone.rstrip('.')} (RFC 1035 §5.1), so it became {name}; write `{written}.`"
    )


@_check
def verify_mx_ns_targets(lab: _Lab) -> Iterator[Finding]:
    """MX and NS records whose target is an IP address, an alias (CNAME) or a
    name with no A record in the lab's zones; malformed null MX (RFC 7505)."""
    for record in lab.records:
        if record.rtype not in ("MX", "NS") or not _within(record.owner, record.zone):
            continue
        if record.rtype == "MX" and record.target == ".":
            # RFC 7505 §3: "0 ." says the domain accepts no mail, and is the
            # domain's only MX.
            others = [
                r for r in lab.lookup(record.owner, "MX") if r is not record and r.target != "."
            ]
            if record.rr.rdata.preference != 0:
                yield Finding(
                    "verify_mx_ns_targets",
                    ("zones", record.zone),
                    "a null MX has preference 0: write `MX 0 .` (RFC 7505 §3)",
                    text_line=record.line,
                )
            if others:
                yield Finding(
                    "verify_mx_ns_targets",
                    ("zones", record.zone),
                    f"{record.owner.rstrip('.')} has a null MX and other MX records: a domain that "
                    "receives no mail publishes only `MX 0 .` (RFC 7505 §3)",
                    text_line=record.line,
                )
            continue
        yield from _target_findings(lab, record, record.rtype)


@_check
def verify_mail_domains(lab: _Lab) -> Iterator[Finding]:
    """Domains an mx receives for that have neither MX nor A records in the
    lab's zones (RFC 5321 §5.1: no MX means the A record is the mail host)."""
    for node in lab.nodes.values():
        mx = node.services.mx
        if mx is None:
            continue
        for index, domain in enumerate(mx.domains):
            if lab.lookup(domain, "MX") or lab.resolves(domain) or lab.unknown(domain):
                continue
            where = (
                "its zone has no MX and no A record for it"
                if lab.in_lab(domain)
                else "no lab zone holds it; define its zone under `zones` with an MX record"
            )
            yield Finding(
                "verify_mail_domains",
                ("nodes", node.name, "services", "mx", "domains", index),
                f"no sender can find where mail for {domain} goes: {where} (RFC 5321 §5.1)",
                depends=(ZONES,),
            )


@_check
def verify_resolver(lab: _Lab) -> Iterator[Finding]:
    """`settings.resolver` that is not the address of a host running dns, or
    missing while several hosts run dns."""
    dns_hosts = [n for n in lab.hosts() if n.services.dns is not None]
    resolver = lab.topology.settings.resolver
    deps = (ANY_IP, ANY_DNS, ANY_KIND)
    if resolver is None:
        if len(dns_hosts) > 1:
            yield Finding(
                "verify_resolver",
                ("settings",),
                f"several hosts run dns ({_names(dns_hosts)}): set settings.resolver to "
                "the address of the one every node asks",
                depends=deps,
            )
        return
    owner = next((n for n in lab.hosts() if n.ip is not None and n.ip.ip == resolver), None)
    hint = (
        f"hosts running dns: {', '.join(f'{n.name} ({n.ip.ip})' for n in dns_hosts if n.ip)}"
        if dns_hosts
        else "no host runs dns"
    )
    if owner is None:
        yield Finding(
            "verify_resolver",
            ("settings", "resolver"),
            f"no host has the address {resolver}; {hint}",
            depends=deps,
        )
    elif owner.services.dns is None:
        yield Finding(
            "verify_resolver",
            ("settings", "resolver"),
            f"{resolver} is the address of {owner.name}, which runs no dns service; {hint}",
            depends=deps,
        )


@_check
def verify_outside(lab: _Lab) -> Iterator[Finding]:
    """`settings.outside` that is not a router."""
    outside = lab.topology.settings.outside
    if outside is None:
        return
    routers = [n.name for n in lab.routers()]
    target = lab.nodes.get(outside)
    if target is None or target.kind != "router":
        what = "not a node of this topology" if target is None else "a host, not a router"
        yield Finding(
            "verify_outside",
            ("settings", "outside"),
            f"{outside!r} is {what}{_suggest(outside, routers) if target is None else ''}; "
            f"the outside client attaches to a router: {', '.join(sorted(routers)) or 'none'}",
            depends=(("nodes", outside),),
        )


@_check
def verify_submission(lab: _Lab) -> Iterator[Finding]:
    """A submission service without a relay on the same host to hand mail to."""
    for node in lab.nodes.values():
        if node.services.submission is not None and node.services.relay is None:
            yield Finding(
                "verify_submission",
                ("nodes", node.name, "services", "submission"),
                "submitted mail is handed to the host's relay, and this host has none: "
                "add `relay: {}` beside it",
            )


@_check
def verify_mailbox(lab: _Lab) -> Iterator[Finding]:
    """A mailbox service on a host without an mx: it serves the Maildirs the
    host's mx stores into, so there would be nothing to read."""
    for node in lab.nodes.values():
        if node.services.mailbox is not None and node.services.mx is None:
            yield Finding(
                "verify_mailbox",
                ("nodes", node.name, "services", "mailbox"),
                "a mailbox service serves the mail this host's mx stored (the MDA reads the "
                "MTA's Maildirs), and this host has no mx: add `mx: {domains: [...]}` beside it",
            )


@_check
def verify_dmarc_reports(lab: _Lab) -> Iterator[Finding]:
    """An mx that sends DMARC aggregate reports needs a relay on its host to mail them."""
    for node in lab.nodes.values():
        mx = node.services.mx
        if mx is not None and mx.dmarc_reports is not None and node.services.relay is None:
            yield Finding(
                "verify_dmarc_reports",
                ("nodes", node.name, "services", "mx", "dmarc_reports"),
                f"{node.name} sends DMARC reports but has no relay to mail them: add "
                "`relay: {}` to its services",
            )


def _stored_here(mx: model_MxService, target: str) -> bool:
    """An alias target that is a mailbox of the same mx (stored at once)."""
    local, _, domain = target.rpartition("@")
    domains = {d.lower().rstrip(".") for d in mx.domains}
    return domain.lower().rstrip(".") in domains and local.lower() in (
        m.lower() for m in mx.mailboxes
    )


@_check
def verify_forward(lab: _Lab) -> Iterator[Finding]:
    """An mx that forwards mail elsewhere needs a relay on its host to send it
    on; an alias target needs the form user@domain."""
    for node in lab.nodes.values():
        mx = node.services.mx
        if mx is None:
            continue
        path = ("nodes", node.name, "services", "mx", "forward")
        for local, target in mx.forward:
            if "@" not in target.strip("@") or target.count("@") != 1:
                yield Finding(
                    "verify_forward",
                    (*path, local),
                    f"alias {local!r} → {target!r}: a target is a mail address (user@domain)",
                )
        domains = {d.lower().rstrip(".") for d in mx.domains}
        keys = {k.lower() for k, _ in mx.forward if k != "*"}
        for local, target in mx.forward:
            t_local, _, t_domain = target.rpartition("@")
            if (
                t_domain.lower().rstrip(".") in domains
                and not _stored_here(mx, target)
                and t_local.lower() not in keys
            ):
                # Sent on, it comes back here: to the catch-all (a loop) or
                # to a 550 5.1.1 that bounces it.
                yield Finding(
                    "verify_forward",
                    (*path, local),
                    f"alias {local!r} → {target}: {t_local!r} is neither a mailbox nor an "
                    f"alias of this mx, which receives {t_domain}: the mail would come back "
                    "here and be refused or go round in circles; add it to `mailboxes`",
                )
        away = [t for _, t in mx.forward if not _stored_here(mx, t)]
        if away and node.services.relay is None:
            yield Finding(
                "verify_forward",
                path,
                f"forwarded mail (to {', '.join(away)}) is sent on by this host's relay, "
                "and this host has none: add `relay: {}` beside the mx",
            )


@_check
def verify_lists(lab: _Lab) -> Iterator[Finding]:
    """A mailing list needs a relay on its host to resend; sealing needs the
    relay's DKIM key for one of the mx's domains."""
    for node in lab.nodes.values():
        mx = node.services.mx
        if mx is None or not mx.lists:
            continue
        relay = node.services.relay
        if relay is None:
            yield Finding(
                "verify_lists",
                ("nodes", node.name, "services", "mx", "lists"),
                "a mailing list resends through this host's relay, and this host has none: "
                "add `relay: {}` beside the mx",
            )
            continue
        signed = {d.lower().rstrip(".") for d, _ in relay.dkim}
        for name, spec in mx.lists:
            if spec.arc_seal and not signed & {d.lower().rstrip(".") for d in mx.domains}:
                yield Finding(
                    "verify_lists",
                    ("nodes", node.name, "services", "mx", "lists", name, "arc_seal"),
                    f"the list {name} seals with the relay's DKIM key for its domain, and the "
                    f"relay signs for none of {', '.join(mx.domains)}: add "
                    f"`dkim: {{{mx.domains[0]}: s1}}` to the relay",
                )


@_check
def verify_arc_trust(lab: _Lab) -> Iterator[Finding]:
    """Trusted ARC sealers mean nothing unless the mx runs the ``arc`` check."""
    for node in lab.nodes.values():
        mx = node.services.mx
        if mx is None or mx.arc is None or not mx.arc.trusted_sealers:
            continue
        if not any(p.check == "arc" for p in mx.checks):
            yield Finding(
                "verify_arc_trust",
                ("nodes", node.name, "services", "mx", "arc"),
                "trusted sealers are read from the arc check's result, and this mx does not "
                "run it: add `arc` to its checks",
            )


@_check
def verify_backup_mx(lab: _Lab) -> Iterator[Finding]:
    """A backup MX needs a relay on its host (it queues for the primary);
    trusted clients are nodes, addresses or networks."""
    for node in lab.nodes.values():
        mx = node.services.mx
        if mx is None:
            continue
        path = ("nodes", node.name, "services", "mx")
        if mx.backup and node.services.relay is None:
            yield Finding(
                "verify_backup_mx",
                (*path, "backup"),
                "a backup MX queues the mail it accepts for a more preferred MX with this "
                "host's relay, and this host has none: add `relay: {}` beside the mx",
            )
        if mx.backup:
            yield from _backup_in_mx_records(lab, node.name, mx)
        for index, client in enumerate(mx.trusted_clients):
            if client in lab.nodes or _is_network(client):
                continue
            yield Finding(
                "verify_backup_mx",
                (*path, "trusted_clients", index),
                f"trusted client {client!r} is neither a node of this topology"
                f"{_suggest(client, lab.nodes)} nor an address or network (192.0.2.25, "
                "192.0.2.0/24)",
                depends=(("nodes", client),),
            )


def _backup_in_mx_records(lab: _Lab, name: str, mx: model_MxService) -> Iterator[Finding]:
    """A backup MX is one of its domains' MX hosts, and not the most preferred
    one (RFC 5321 §5.1: it relays only to more preferred hosts)."""
    own = (mx.hostname or f"mx.{mx.domains[0]}").lower().rstrip(".")
    for index, domain in enumerate(mx.domains):
        records = lab.lookup(domain, "MX")
        if not records or lab.unknown(domain):
            continue  # verify_mail_domains says what is missing
        prefs = {r.target.rstrip("."): int(r.rr.rdata.preference) for r in records}
        path = ("nodes", name, "services", "mx", "domains", index)
        if own not in prefs:
            yield Finding(
                "verify_backup_mx",
                path,
                f"{name} is a backup MX for {domain}, but no MX record of {domain} names "
                f"{own}: no sender finds it, and it would relay to every MX host",
                depends=(ZONES,),
            )
        elif prefs[own] <= min(prefs.values()):
            yield Finding(
                "verify_backup_mx",
                path,
                f"{name} is a backup MX for {domain}, but {own} is its most preferred MX "
                f"(preference {prefs[own]}): there is no primary to relay to; give the "
                "primary a lower preference number (RFC 5321 §5.1)",
                depends=(ZONES,),
            )


#: A top-level dovecot.conf setting name (doveconf(1) knows which exist).
_DOVECOT_NAME = re.compile(r"[a-z][a-z0-9_]*")


def dovecot_setting_problem(key: str, value: str) -> str | None:
    """Why ``key = value`` cannot be one top-level dovecot.conf line (a
    section such as ``service imap-login { ... }`` cannot be set this way),
    or None. Whether Dovecot knows the name is doveconf's to say."""
    # Braces in a value are Dovecot's variables (%{rport}); in a name, a section.
    if "{" in key or "}" in key:
        return (
            f"{key!r}: nested sections (`service imap-login {{ ... }}`) cannot be set "
            "this way: give a top-level setting such as `disable_plaintext_auth`"
        )
    if not _DOVECOT_NAME.fullmatch(key):
        return f"{key!r} is not a dovecot.conf setting name (letters, digits, `_`)"
    if "\n" in value:
        return f"{key}: a dovecot.conf value is one line"
    return None


def _is_network(text: str) -> bool:
    try:
        IPv4Network(text, strict=False)
    except ValueError:
        return False
    return True


@_check
def verify_real_software(lab: _Lab) -> Iterator[Finding]:
    """Postfix and Dovecot nodes that lack what they are to run: Postfix with
    no mx, submission nor relay; Postfix's submission, which checks passwords
    through Dovecot, without Dovecot; Dovecot beside maillab's own mx."""
    for node in lab.nodes.values():
        services = node.services
        where = ("nodes", node.name, "services")
        if services.postfix is not None:
            if services.mx is None and services.submission is None and services.relay is None:
                yield Finding(
                    "verify_real_software",
                    (*where, "postfix"),
                    "Postfix runs this host's mx, submission and relay, and it has none of them",
                )
            if services.submission is not None and services.dovecot is None:
                yield Finding(
                    "verify_real_software",
                    (*where, "postfix"),
                    "Postfix's submission service checks passwords through Dovecot: "
                    "add `dovecot: {}` beside it",
                )
        for key, value in services.dovecot.conf if services.dovecot is not None else ():
            problem = dovecot_setting_problem(key, value)
            if problem is not None:
                yield Finding("verify_real_software", (*where, "dovecot", "conf", key), problem)
        if services.dovecot is not None and services.mx is not None and services.postfix is None:
            yield Finding(
                "verify_real_software",
                (*where, "dovecot"),
                "Dovecot serves the mail Postfix delivers: add `postfix: {}` beside the mx",
            )


_WELL_KNOWN = {
    "mx": (25,),
    "dns": (53,),
    "dnsbl": (53,),
    "mailbox": (110, 143, 993, 995),  # POP3, IMAP, and their implicit-TLS ports
}


@_check
def verify_port_conflicts(lab: _Lab) -> Iterator[Finding]:
    """Submission ports that another service on the same host already uses."""
    for node in lab.nodes.values():
        submission = node.services.submission
        if submission is None:
            continue
        for index, port in enumerate(submission.ports):
            for service in node.services.names():
                if port in _WELL_KNOWN.get(service, ()):
                    yield Finding(
                        "verify_port_conflicts",
                        ("nodes", node.name, "services", "submission", "ports", index),
                        f"port {port} is already used by the {service} service on this host",
                    )


@_check
def verify_smarthosts(lab: _Lab) -> Iterator[Finding]:
    """A relay's smarthost that is not another host with a submission service
    on the given port."""
    for node in lab.nodes.values():
        relay = node.services.relay
        if relay is None or relay.smarthost is None:
            continue
        smart = relay.smarthost
        path = ("nodes", node.name, "services", "relay", "smarthost")
        target = lab.nodes.get(smart.host)
        with_submission = [n.name for n in lab.nodes.values() if n.services.submission]
        if smart.host == node.name:
            yield Finding(
                "verify_smarthosts", (*path, "host"), "a relay cannot use its own host as smarthost"
            )
        elif target is None or target.services.submission is None:
            what = (
                f"not a node of this topology{_suggest(smart.host, lab.nodes)}"
                if target is None
                else "a node without a submission service"
            )
            yield Finding(
                "verify_smarthosts",
                (*path, "host"),
                f"smarthost {smart.host!r} is {what}; hosts with submission: "
                f"{', '.join(sorted(with_submission)) or 'none'}",
                depends=(("nodes", smart.host),),
            )
        elif smart.port not in target.services.submission.ports:
            ports = ", ".join(str(p) for p in target.services.submission.ports)
            yield Finding(
                "verify_smarthosts",
                (*path, "port"),
                f"{smart.host} does not listen for submission on {smart.port} (its ports: {ports})",
                depends=(("nodes", smart.host, "services", "submission"),),
            )


@_check
def verify_dkim_domains(lab: _Lab) -> Iterator[Finding]:
    """A relay signs for a domain that no lab zone holds, so its DKIM key
    (`selector._domainkey.domain`) cannot be published."""
    for node in lab.nodes.values():
        relay = node.services.relay
        if relay is None:
            continue
        for domain, selector in relay.dkim:
            if not lab.in_lab(domain):
                yield Finding(
                    "verify_dkim_domains",
                    ("nodes", node.name, "services", "relay", "dkim", domain),
                    f"no lab zone holds {domain}, so receivers cannot find its key at "
                    f"{selector}._domainkey.{domain} (RFC 6376 §3.6.2.1)",
                    depends=(ZONES,),
                )


@_check
def verify_dnsbl_zones(lab: _Lab) -> Iterator[Finding]:
    """An mx that queries a blocklist zone no dnsbl service serves, or two
    dnsbl services with one zone."""
    served: dict[str, str] = {}
    for node in lab.nodes.values():
        dnsbl = node.services.dnsbl
        if dnsbl is None:
            continue
        first = served.setdefault(dnsbl.zone, node.name)
        if first != node.name:
            yield Finding(
                "verify_dnsbl_zones",
                ("nodes", node.name, "services", "dnsbl", "zone"),
                f"{first} already serves the blocklist {dnsbl.zone} ({{ref}})",
                refers=("nodes", first, "services", "dnsbl", "zone"),
            )
    for node in lab.nodes.values():
        mx = node.services.mx
        if mx is None:
            continue
        for index, zone in enumerate(mx.dnsbl):
            if zone not in served:
                known = ", ".join(sorted(served)) or "none"
                yield Finding(
                    "verify_dnsbl_zones",
                    ("nodes", node.name, "services", "mx", "dnsbl", index),
                    f"no dnsbl service serves {zone}{_suggest(zone, served)}; "
                    f"blocklists in this lab: {known}",
                    depends=(("nodes", "*", "services", "dnsbl"),),
                )


def _covers(wide: FirewallRule, narrow: FirewallRule) -> bool:
    """Does every packet ``narrow`` matches also match ``wide``?"""
    if wide.proto != "any" and wide.proto != narrow.proto:
        return False
    if wide.direction != "any" and wide.direction != narrow.direction:
        return False
    for mine, theirs in ((wide.src, narrow.src), (wide.dst, narrow.dst)):
        if mine is not None and (theirs is None or not theirs.subnet_of(mine)):
            return False
    if wide.dport is not None:
        if narrow.dport is None:
            return False
        if not (wide.dport[0] <= narrow.dport[0] and narrow.dport[1] <= wide.dport[1]):
            return False
    return True


@_check
def verify_firewall_shadowing(lab: _Lab) -> Iterator[Finding]:
    """Firewall rules that can never match: an earlier rule of the same router
    matches everything they match (first match wins)."""
    for router in lab.routers():
        for j, rule in enumerate(router.firewall):
            for i in range(j):
                earlier = router.firewall[i]
                if _covers(earlier, rule):
                    verdict = (
                        "it is redundant"
                        if earlier.action == rule.action
                        else f"it would {rule.action} what rule {i} already {earlier.action}s"
                    )
                    yield Finding(
                        "verify_firewall_shadowing",
                        ("nodes", router.name, "firewall", j),
                        f"rule {j} can never match: rule {i} ({{ref}}) comes first and "
                        f"matches everything it does, so {verdict}",
                        depends=(("nodes", router.name, "firewall"),),
                        refers=("nodes", router.name, "firewall", i),
                    )
                    break


#: Every meaning check, by name, with what it looks for.
CHECKS: dict[str, str] = {name: doc for name, doc, _ in _REGISTRY}


def check_topology(topology: Topology) -> list[Finding]:
    """Run every meaning check but those ``settings.skip_checks`` names;
    findings in check order."""
    lab = _Lab.of(topology)
    skipped = set(topology.settings.skip_checks)
    findings = [
        Finding(
            "verify_skip_checks",
            ("settings", "skip_checks", index),
            f"no meaning check is called {name!r}{_suggest(name, CHECKS)}",
        )
        for index, name in enumerate(topology.settings.skip_checks)
        if name not in CHECKS
    ]
    return findings + [
        finding for name, _, run in _REGISTRY if name not in skipped for finding in run(lab)
    ]
