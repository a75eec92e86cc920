"""Values a fault reads from a lab's topology (sim.lab.faults).

A fault is written against roles (the lab's ``faults.roles``: ``sender``,
``receiver``...); what else it needs, it reads here: the sender's address
and its PTR, the records its domain publishes, its DKIM selector, the
blocklist the receiver asks, the smarthost it logs in to. Each function
returns the values a fault's templates may name (``{sender_ip}``...), or
raises :class:`FaultMismatch` saying which node or record the lab lacks, so
that ``maillab validate`` can tell an instructor why a fault does not apply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from sim.topology.model import Node, Topology
from sim.topology.zones import ZoneSyntaxError, fqdn, parse_zone

__all__ = [
    "Facts",
    "FaultMismatch",
    "dkim_facts",
    "dmarc_facts",
    "dnsbl_facts",
    "ptr_facts",
    "receiver_facts",
    "sender_facts",
    "smarthost_facts",
    "spf_facts",
    "zone_firewall_facts",
]


class FaultMismatch(Exception):
    """A fault does not apply to a lab: the message says what is missing."""


Facts = Callable[[Topology, Mapping[str, str]], dict[str, Any]]


def _node(topology: Topology, roles: Mapping[str, str], role: str) -> Node:
    name = roles[role]
    try:
        return topology.node(name)
    except KeyError:
        raise FaultMismatch(f"the {role} {name!r} is not a node of {topology.name}") from None


def _zone_records(topology: Topology, zone: str) -> list[Any]:
    try:
        text = topology.zone_text(zone)
    except KeyError:
        raise FaultMismatch(f"the topology {topology.name} has no zone {zone}") from None
    try:
        return parse_zone(zone, text)
    except ZoneSyntaxError as err:
        raise FaultMismatch(f"the zone {zone} does not parse: {err}") from None


def _txt(topology: Topology, zone: str, owner: str, prefix: str) -> str | None:
    """The TXT record at ``owner`` in ``zone`` whose text starts with ``prefix``."""
    for rr in _zone_records(topology, zone):
        if str(rr.rname).lower() == fqdn(owner) and rr.rtype == 16:
            text = b"".join(rr.rdata.data).decode()
            if text.lower().startswith(prefix.lower()):
                return text
    return None


def sender_facts(topology: Topology, roles: Mapping[str, str]) -> dict[str, Any]:
    """``sender_ip`` and ``sender_host`` (its relay's host name) of the ``sender``."""
    node = _node(topology, roles, "sender")
    if node.ip is None:
        raise FaultMismatch(f"the sender {node.name} has no address")
    relay = node.services.relay
    if relay is None:
        raise FaultMismatch(f"the sender {node.name} runs no relay")
    return {"sender_ip": str(node.ip.ip), "sender_host": fqdn(relay.hostname or node.name)}


def ptr_facts(topology: Topology, roles: Mapping[str, str]) -> dict[str, Any]:
    """The reverse zone holding the sender's PTR (RFC 1035 §3.5), and its record."""
    ip = IPv4Address(sender_facts(topology, roles)["sender_ip"])
    octets = str(ip).split(".")
    for zone, _ in topology.zones:
        labels = zone.lower().rstrip(".").removesuffix(".in-addr.arpa").split(".")
        if not zone.lower().rstrip(".").endswith("in-addr.arpa"):
            continue
        net = ".".join(reversed(labels))
        width = len(labels)
        if octets[:width] != net.split("."):
            continue
        label = ".".join(reversed(octets[width:]))
        owner = fqdn(f"{label}.{zone}")
        names = [
            str(rr.rdata.label)
            for rr in _zone_records(topology, zone)
            if rr.rtype == 12 and str(rr.rname).lower() == owner
        ]
        if not names:
            raise FaultMismatch(f"the zone {zone} has no PTR record for {ip}")
        first, _, rest = names[0].partition(".")
        return {
            "ptr_zone": zone,
            "ptr_label": label,
            "ptr_target": names[0],
            # The host the address had before: its name no longer resolves.
            "ptr_old": f"old-{first}.{rest}",
        }
    raise FaultMismatch(f"the topology {topology.name} has no reverse zone for {ip}")


def spf_facts(topology: Topology, roles: Mapping[str, str]) -> dict[str, Any]:
    """``spf``: the SPF record ``domain`` publishes at its apex (RFC 7208 §3)."""
    domain = roles["domain"]
    record = _txt(topology, domain, domain, "v=spf1")
    if record is None:
        raise FaultMismatch(f"the zone {domain} publishes no SPF record at its apex")
    return {"spf": record}


def dmarc_facts(topology: Topology, roles: Mapping[str, str]) -> dict[str, Any]:
    """``dmarc``: the record at ``_dmarc.<domain>``; ``dmarc_broken``: the same
    with a `p:` where `p=` belongs (RFC 7489 §6.3)."""
    domain = roles["domain"]
    record = _txt(topology, domain, f"_dmarc.{domain}", "v=DMARC1")
    if record is None:
        raise FaultMismatch(f"the zone {domain} publishes no DMARC record at _dmarc.{domain}")
    return {"dmarc": record, "dmarc_broken": record.replace("p=", "p:", 1)}


def dkim_facts(topology: Topology, roles: Mapping[str, str]) -> dict[str, Any]:
    """``selector`` the ``sender`` signs ``domain`` with, and ``dkim_name``,
    the key's owner name relative to the zone (RFC 6376 §3.6.2.1)."""
    node = _node(topology, roles, "sender")
    relay = node.services.relay
    domain = roles["domain"].lower().rstrip(".")
    selector = dict(relay.dkim).get(domain) if relay is not None else None
    if relay is None or selector is None:
        raise FaultMismatch(f"the sender {node.name} does not DKIM-sign {domain}")
    if not relay.dkim_publish:
        raise FaultMismatch(
            f"{node.name}'s key for {domain} is not published when the lab starts "
            "(dkim_publish: false)"
        )
    return {"selector": selector, "dkim_name": f"{selector}._domainkey"}


def receiver_facts(topology: Topology, roles: Mapping[str, str]) -> dict[str, Any]:
    """``receiver_domain``: the first domain the ``receiver`` takes mail for."""
    node = _node(topology, roles, "receiver")
    if node.services.mx is None or not node.services.mx.domains:
        raise FaultMismatch(f"the receiver {node.name} runs no mx")
    return {"receiver_domain": node.services.mx.domains[0]}


def dnsbl_facts(topology: Topology, roles: Mapping[str, str]) -> dict[str, Any]:
    """``dnsbl_zone``: the zone of the ``dnsbl`` node's list, which the
    ``receiver`` must ask (RFC 5782 §2.1), or a listing would go unnoticed."""
    node = _node(topology, roles, "dnsbl")
    if node.services.dnsbl is None:
        raise FaultMismatch(f"the dnsbl {node.name} runs no dnsbl service")
    zone = node.services.dnsbl.zone
    receiver = _node(topology, roles, "receiver")
    asked = receiver.services.mx.dnsbl if receiver.services.mx is not None else ()
    if fqdn(zone) not in {fqdn(z) for z in asked}:
        raise FaultMismatch(
            f"the receiver {receiver.name} does not ask {zone} "
            f"(it asks: {', '.join(asked) or 'no blocklist'})"
        )
    return {"dnsbl_zone": zone}


def smarthost_facts(topology: Topology, roles: Mapping[str, str]) -> dict[str, Any]:
    """``smarthost`` (the node the ``sender``'s relay hands every message to),
    ``smarthost_user`` (the account it logs in with, RFC 4954),
    ``smarthost_name`` (the host name its certificate must carry) and
    ``smarthost_other`` (a name of the same domain that is not it)."""
    node = _node(topology, roles, "sender")
    relay = node.services.relay
    smarthost = relay.smarthost if relay is not None else None
    if smarthost is None or smarthost.user is None:
        raise FaultMismatch(f"the sender {node.name} logs in to no smarthost")
    try:
        provider = topology.node(smarthost.host)
    except KeyError:
        raise FaultMismatch(f"the smarthost {smarthost.host} is not a node") from None
    users = dict(provider.services.submission.users) if provider.services.submission else {}
    if smarthost.user not in users:
        raise FaultMismatch(f"the smarthost {provider.name} has no user {smarthost.user}")
    submission = provider.services.submission
    # The name the relay checks the certificate against (sim.services.relay).
    name = (submission.hostname if submission else None) or provider.name
    return {
        "smarthost": provider.name,
        "smarthost_user": smarthost.user,
        "smarthost_name": name,
        "smarthost_other": "www." + (name.partition(".")[2] or name),
    }


def zone_firewall_facts(topology: Topology, roles: Mapping[str, str]) -> dict[str, Any]:
    """The authoritative server of the receiver's domain, and the rule of its
    router that lets DNS reach it: dropping that rule makes every lookup in
    the zone time out, which the resolver answers as SERVFAIL (RFC 2308 §7.1)."""
    domain = fqdn(receiver_facts(topology, roles)["receiver_domain"])
    servers = [
        n
        for n in topology.hosts()
        if n.services.dns is not None and domain in {fqdn(z) for z in n.services.dns.zones}
    ]
    resolver = topology.resolver_address()
    remote = [n for n in servers if n.ip is not None and n.ip.ip != resolver]
    if not remote:
        raise FaultMismatch(
            f"no DNS node but the resolver serves {domain.rstrip('.')}: the zone needs "
            "an authoritative server of its own"
        )
    server = remote[0]
    assert server.ip is not None
    if server.gateway is None:
        raise FaultMismatch(f"{server.name} has no gateway router")
    router = topology.node(server.gateway)
    for number, rule in enumerate(router.firewall, start=1):
        covers = rule.dport is not None and rule.dport[0] <= 53 <= rule.dport[1]
        towards = rule.dst is None or server.ip.ip in IPv4Network(rule.dst)
        if rule.action == "accept" and covers and towards:
            return {"zone_server": server.name, "zone_router": router.name, "zone_rule": number}
    raise FaultMismatch(
        f"the router {router.name} has no firewall rule accepting DNS (port 53) to {server.name}"
    )
