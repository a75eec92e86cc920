"""The topology model: plain, typed, frozen data.

Describe, then realise: nothing here knows about sockets, namespaces or event
loops. :mod:`sim.topology.loader` builds these objects from a YAML file;
backends (:mod:`sim.net`) take them and run them.

Addresses are :mod:`ipaddress` objects. Durations are lab seconds (floats).
"""

from __future__ import annotations

from dataclasses import field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Literal

from sim.fastclass import dataclass

__all__ = [
    "CheckAction",
    "CheckName",
    "CheckPolicy",
    "DnsService",
    "DnsblListing",
    "DnsblService",
    "FirewallRule",
    "MailboxService",
    "MxService",
    "Node",
    "NodeKind",
    "RelayService",
    "Scoring",
    "Services",
    "Settings",
    "Smarthost",
    "SubmissionService",
    "Topology",
]

NodeKind = Literal["host", "router"]
Action = Literal["accept", "drop", "reject"]
Proto = Literal["tcp", "udp", "icmp", "any"]
Direction = Literal["in", "out", "any"]
RejectWith = Literal["tcp-reset", "icmp-port-unreachable", "icmp-admin-prohibited"]
#: A receiving check's name: one of the modules of sim.services.checks (the
#: topology schema lists them; this layer does not know them).
CheckName = str
CheckAction = Literal["reject", "defer", "junk", "header", "policy"]
DmarcDiscovery = Literal["treewalk", "psl"]


@dataclass(frozen=True)
class FirewallRule:
    """One rule of a router's forwarding firewall.

    Rules are evaluated in order, first match wins; a packet no rule matches is
    accepted. Only the first packet of a connection is judged (the router is
    stateful, like iptables with a conntrack ESTABLISHED rule first), so
    replies always pass. ``direction`` is seen from the router: ``out`` is
    traffic from a network the router serves (its hosts' LANs) towards its
    uplinks (links to other routers), ``in`` the reverse, ``any`` both.
    """

    action: Action
    proto: Proto = "any"
    src: IPv4Network | None = None
    dst: IPv4Network | None = None
    dport: tuple[int, int] | None = None
    direction: Direction = "any"
    reject_with: RejectWith = "tcp-reset"
    note: str = ""


@dataclass(frozen=True)
class DnsSilence:
    """Questions about ``name`` (of ``type``, or of any type) that the server
    never answers: the asker times out, as with a broken authoritative server."""

    name: str
    type: str = "ANY"


@dataclass(frozen=True)
class DnsService:
    """Authoritative DNS for the named zones; the node named in
    ``settings.resolver`` also resolves every other lab zone for its clients."""

    zones: tuple[str, ...] = ()
    unanswered: tuple[DnsSilence, ...] = ()


@dataclass(frozen=True)
class DnsblListing:
    """Addresses in ``net`` are listed with answer ``code`` (127.0.0.x) and a reason."""

    net: IPv4Network
    code: IPv4Address = field(default_factory=lambda: IPv4Address("127.0.0.2"))
    reason: str = ""


@dataclass(frozen=True)
class DnsblService:
    """A DNS blocklist zone answered in reversed-octet form (RFC 5782)."""

    zone: str
    listed: tuple[DnsblListing, ...] = ()


@dataclass(frozen=True)
class CheckPolicy:
    """What a failing check costs: reject (5xx), defer (4xx), junk, header only.

    ``policy`` is for DMARC: follow the domain owner's published policy.
    """

    check: CheckName
    action: CheckAction


@dataclass(frozen=True)
class DmarcReporting:
    """Aggregate reports (RFC 9990) to the ``rua=`` addresses of the domains
    whose mail this MX judged: one report per policy domain every ``interval``
    lab seconds, mailed by the node's relay from ``sender``."""

    interval: float = 86400.0
    org_name: str | None = None
    sender: str | None = None


@dataclass(frozen=True)
class ArcTrust:
    """Whose ARC seals an MX believes (RFC 8617 §7.2): the sealing domains
    (``d=`` of the newest ARC-Seal) whose chain may override a DMARC failure."""

    trusted_sealers: tuple[str, ...] = ()


@dataclass(frozen=True)
class MailingList:
    """A mailing list at an MX (as Mailman beside Postfix): mail to the list
    address goes to every member, changed as lists change it, from the
    list's own envelope sender ``<list>-bounces@domain`` (RFC 5321 §3.9.2)."""

    members: tuple[str, ...]
    subject_tag: str | None = None
    footer: str | None = None
    #: The DMARC mitigation: From: becomes the list's address, the author
    #: moves to Reply-To (Mailman's ``dmarc_mitigate_action: munge_from``).
    rewrite_from: bool = False
    #: Seal each copy with ARC (RFC 8617), with the node relay's DKIM key for
    #: the list's domain.
    arc_seal: bool = False


@dataclass(frozen=True)
class Scoring:
    """A scoring receiver (rspamd, SpamAssassin): each check result adds its
    weight; at ``junk`` or more the message goes to Junk, at ``reject`` or more
    it is refused. ``weights`` are (check, result or DNSBL return code, weight)."""

    junk: float | None = None
    reject: float | None = None
    weights: tuple[tuple[str, str, float], ...] = ()


@dataclass(frozen=True)
class MxService:
    """A receiving MTA on port 25 for ``domains``; never an open relay."""

    domains: tuple[str, ...]
    mailboxes: tuple[str, ...] = ()
    checks: tuple[CheckPolicy, ...] = ()
    dnsbl: tuple[str, ...] = ()
    hostname: str | None = None
    greylist: float | None = None
    tls: bool = True
    max_size: int = 10 * 1024 * 1024
    dmarc_discovery: DmarcDiscovery = "treewalk"
    down: bool = False
    #: Local parts whose mail is forwarded elsewhere (an alias, RFC 5321
    #: §3.9.1): local part → address. The node's relay sends it on with the
    #: envelope sender unchanged, which is why forwarding breaks SPF.
    forward: tuple[tuple[str, str], ...] = ()
    dmarc_reports: DmarcReporting | None = None
    #: ARC seals this MX trusts (RFC 8617 §7.2), for the ``arc`` check.
    arc: ArcTrust | None = None
    #: Mailing lists hosted here: local part → list.
    lists: tuple[tuple[str, MailingList], ...] = ()
    #: A backup MX (RFC 5321 §5.1): accept any address at ``domains``, queue
    #: it and deliver it to a more preferred MX through the node's relay.
    backup: bool = False
    #: Clients (node names, addresses or networks) whose mail skips every check.
    trusted_clients: tuple[str, ...] = ()
    #: Combine the check results into a score (None: the actions alone decide).
    scoring: Scoring | None = None


@dataclass(frozen=True)
class MailboxService:
    """Mailboxes served to their owners (the MDA's role: IMAP on 143)."""

    users: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SubmissionService:
    """An MSA (RFC 6409): 587 with STARTTLS, 465 with implicit TLS (RFC 8314),
    AUTH against ``users`` (address → password); hands mail to the node's relay."""

    users: tuple[tuple[str, str], ...]
    ports: tuple[int, ...] = (587, 465)
    hostname: str | None = None


@dataclass(frozen=True)
class Smarthost:
    """Hand every message to another relay's submission port, with AUTH."""

    host: str
    port: int = 587
    user: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class RelayService:
    """An outbound MTA with a durable queue (RFC 5321 §4.5.4.1 retries)."""

    retry: tuple[float, ...] = (300.0, 1800.0, 7200.0)
    give_up: float = 5 * 86400.0
    warn_after: float | None = 4 * 3600.0
    dkim: tuple[tuple[str, str], ...] = ()
    smarthost: Smarthost | None = None
    hostname: str | None = None
    #: Publish each ``dkim`` key's TXT record in the lab DNS at start
    #: (:func:`sim.services.dkimkeys.publish`); false when a lab task asks the
    #: student to publish it.
    dkim_publish: bool = True


@dataclass(frozen=True)
class PostfixService:
    """The node's ``mx``, ``submission`` and ``relay`` realised by a private
    Postfix instance instead of maillab's own services (mininet only)."""

    #: main.cf settings written after the generated ones (a lab task's edits).
    main_cf: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class DovecotService:
    """The node's ``mailbox`` (IMAP, POP3), local delivery (LMTP) and the
    submission service's SASL realised by a private Dovecot (mininet only)."""

    #: dovecot.conf settings written after the generated ones (top-level
    #: names only, such as ``disable_plaintext_auth``).
    conf: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Services:
    dns: DnsService | None = None
    dnsbl: DnsblService | None = None
    mx: MxService | None = None
    submission: SubmissionService | None = None
    relay: RelayService | None = None
    mailbox: MailboxService | None = None
    postfix: PostfixService | None = None
    dovecot: DovecotService | None = None

    def names(self) -> tuple[str, ...]:
        return tuple(
            name
            for name in (
                "dns",
                "dnsbl",
                "mx",
                "submission",
                "relay",
                "mailbox",
                "postfix",
                "dovecot",
            )
            if getattr(self, name) is not None
        )


@dataclass(frozen=True)
class Node:
    """A host (with one address and a gateway router) or a router."""

    name: str
    kind: NodeKind
    ip: IPv4Interface | None = None
    gateway: str | None = None
    firewall: tuple[FirewallRule, ...] = ()
    services: Services = field(default_factory=Services)
    title: str = ""


@dataclass(frozen=True)
class Settings:
    """Lab-wide settings.

    ``time_scale``: lab seconds per real second. ``resolver``: the address every
    node uses as its DNS resolver. ``connect_timeout``: how long (lab time) a
    client waits for a TCP connection whose packets are dropped. ``outside``:
    the router where the neutral outside host (a real client on the machine
    using ``maillab up``) attaches.
    """

    time_scale: float = 60.0
    resolver: IPv4Address | None = None
    connect_timeout: float = 30.0
    outside: str | None = None
    #: Meaning checks (validate.CHECKS) this topology is exempt from.
    skip_checks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Topology:
    """A whole lab network: nodes, router-to-router links, DNS zones."""

    name: str
    title: str = ""
    settings: Settings = field(default_factory=Settings)
    nodes: tuple[Node, ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    zones: tuple[tuple[str, str], ...] = ()
    source: str | None = None

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def hosts(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.kind == "host")

    def routers(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.kind == "router")

    def zone_text(self, zone: str) -> str:
        for name, text in self.zones:
            if name == zone:
                return text
        raise KeyError(zone)

    def resolver_address(self) -> IPv4Address | None:
        """``settings.resolver``, else the address of the first host running
        dns: the address every node's stub resolver asks."""
        if self.settings.resolver is not None:
            return self.settings.resolver
        for node in self.hosts():
            if node.services.dns is not None and node.ip is not None:
                return node.ip.ip
        return None

    def host_by_address(self, address: IPv4Address) -> Node | None:
        for node in self.nodes:
            if node.ip is not None and node.ip.ip == address:
                return node
        return None
