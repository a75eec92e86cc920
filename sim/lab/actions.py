"""Task actions: the changes a student makes to a running lab, as data.

A task's reference solution and a student's own edits are the same kind of
thing: one-key mappings such as::

    dns_add: {node: ns, zone: shop.example, record: "@ MX 0 ."}
    dnsbl_delist: {node: dnsbl, net: 203.0.113.10/32}
    firewall_set: {router: isp, rule: 1, action: reject, reject_with: tcp-reset}
    advance: 2h
    settle: 1d                      # let time pass while the queues retry
    dkim_publish: {node: ns, zone: startup.example, name: rc1._domainkey, signer: relayco}
    postfix_set: {node: homesrv, key: relayhost, value: "[192.0.2.25]:587"}
    dovecot_set: {node: mx-qq, key: disable_plaintext_auth, value: "yes"}

Each entry of :data:`ACTIONS` gives an action's shape (checked when a lab
file loads and published in the JSON Schema), the service it drives and how
its arguments map onto that service's control command
(``lab.control(node, service, command, **args)``). :func:`action_problems`
checks an action against the topology (the node exists and runs the service,
the zone is one it serves, a record parses); :func:`apply_action` performs
it and reports the result, or the error, as data.

DNS caching. A real resolver keeps an answer for its TTL (RFC 1035 §7.3) and
the absence of one for the SOA minimum (RFC 2308 §5), so a fix published in
DNS shows up elsewhere only after the old answer expires. A lab's
``dns_cache`` chooses: ``flush`` (default) empties the lab resolver's cache
after every DNS edit, and the result says so; ``ttl`` keeps cached answers,
and the result says how long they may live.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Network
from typing import TYPE_CHECKING, Any, Protocol, get_args

from sim.clock import format_duration, parse_duration
from sim.errors import LabFileError, SimError
from sim.lab.dkimpublish import dkim_choice, dkim_record
from sim.lab.model import Action
from sim.lab.zonenames import relative_name_warnings
from sim.resolve import qtype_code
from sim.services import checks as checks_registry
from sim.spec.kinds import (
    Anything,
    Bool,
    Checker,
    Duration,
    Field,
    Int,
    MapOf,
    OneKey,
    Record,
    Spec,
    Str,
    suggest,
)
from sim.spec.yamlpos import plain as _plain
from sim.topology.model import CheckAction, RejectWith, Topology
from sim.topology.validate import dovecot_setting_problem
from sim.topology.zones import DEFAULT_TTL, ZoneSyntaxError, fqdn, parse_zone

if TYPE_CHECKING:
    from sim.topology.model import FirewallRule

__all__ = [
    "ACTIONS",
    "ACTION_SPEC",
    "ActionDef",
    "ActionResult",
    "ControlLab",
    "action_from_data",
    "action_problems",
    "apply_action",
    "resolver_node",
]

CHECKS: tuple[str, ...] = checks_registry.names()
CHECK_ACTIONS: tuple[str, ...] = get_args(CheckAction)
#: What a router's firewall rule may do (sim.topology.model.FirewallRule).
FIREWALL_ACTIONS = ("accept", "drop", "reject")
REJECT_WITH: tuple[str, ...] = get_args(RejectWith)


class ControlLab(Protocol):
    """What actions need from a running lab (``sim.Lab`` fits)."""

    def control(self, node: str, service: str, command: str, **args: Any) -> dict[str, Any]: ...

    def advance(self, duration: str | float) -> None: ...


@dataclass(frozen=True)
class ActionDef:
    name: str
    spec: Spec
    #: The service the action's node must run (None: the action needs no node).
    service: str | None
    command: str
    description: str
    #: Keyword arguments of the control command, from the action's arguments.
    control_args: Callable[[Mapping[str, Any]], dict[str, Any]]
    #: What the action does, in words (for results and the TUI).
    summary: Callable[[Any], str]


@dataclass(frozen=True)
class ActionResult:
    """What became of one action: ``ok``, a sentence, and the service's reply."""

    ok: bool
    action: dict[str, Any]
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "action": self.action, "message": self.message, "data": self.data}


def _node(desc: str = "the node that runs the service") -> Field:
    return Field(Str(), required=True, description=desc)


def _zone() -> Field:
    return Field(Str(), required=True, description="the zone's origin, e.g. `qq.example`")


def _word(value: Any) -> str:
    """A value as a lab file writes it (``true``, not ``True``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _settings(args: Mapping[str, Any], skip: tuple[str, ...]) -> str:
    return ", ".join(f"{k}={_word(v)}" for k, v in args.items() if k not in skip)


def _record(fields: dict[str, Field], name: str, description: str) -> Record:
    return Record(fields, name=name, description=description)


def _dns_add_args(a: Mapping[str, Any]) -> dict[str, Any]:
    return {"zone": a["zone"], "text": a["record"]}


def _dns_remove_args(a: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"zone": a["zone"], "name": a["name"]}
    if a.get("type"):
        out["rtype"] = a["type"]
    if a.get("data"):
        out["data"] = a["data"]
    return out


def _remove_summary(a: Mapping[str, Any]) -> str:
    what = f"the {a['type']} records" if a.get("type") else "the records"
    if a.get("data"):
        what = f"the {a.get('type', '')} record {a['data']!r}".replace("  ", " ")
    return f"remove {what} of {a['name']} in {a['zone']} on {a['node']}"


ACTIONS: dict[str, ActionDef] = {
    d.name: d
    for d in (
        ActionDef(
            "dns_add",
            _record(
                {
                    "node": _node("the DNS server node that holds the zone"),
                    "zone": _zone(),
                    "record": Field(
                        Str(),
                        required=True,
                        description=(
                            "zone-file line(s), names relative to the zone: `@ MX 0 .`, "
                            '`_dmarc TXT "v=DMARC1; p=reject"`'
                        ),
                    ),
                },
                "DnsAdd",
                "Add records to a zone (the serial increases).",
            ),
            "dns",
            "add",
            "Add records to a zone the node serves.",
            _dns_add_args,
            lambda a: f"add {a['record'].strip()!r} to {a['zone']} on {a['node']}",
        ),
        ActionDef(
            "dns_remove",
            _record(
                {
                    "node": _node("the DNS server node that holds the zone"),
                    "zone": _zone(),
                    "name": Field(
                        Str(), required=True, description="owner name: `@`, relative or absolute"
                    ),
                    "type": Field(Str(), description="only records of this type (MX, TXT...)"),
                    "data": Field(Str(), description="only the record whose data reads this"),
                },
                "DnsRemove",
                "Remove records from a zone.",
            ),
            "dns",
            "remove",
            "Remove records of a name from a zone.",
            _dns_remove_args,
            _remove_summary,
        ),
        ActionDef(
            "dns_replace_zone",
            _record(
                {
                    "node": _node("the DNS server node that holds the zone"),
                    "zone": _zone(),
                    "text": Field(
                        Str(markdown=False),
                        required=True,
                        description="the whole zone in zone-file syntax",
                    ),
                },
                "DnsReplaceZone",
                "Replace a whole zone.",
            ),
            "dns",
            "replace_zone",
            "Replace a whole zone with new text.",
            lambda a: {"origin": a["zone"], "text": a["text"]},
            lambda a: f"replace the zone {a['zone']} on {a['node']}",
        ),
        ActionDef(
            "dnsbl_list",
            _record(
                {
                    "node": _node("the node running the dnsbl service"),
                    "net": Field(Str(), required=True, description="an address or network, CIDR"),
                    "reason": Field(Str(), description="the TXT reason the list gives (RFC 5782)"),
                },
                "DnsblList",
                "List an address range on a DNS blocklist.",
            ),
            "dnsbl",
            "list",
            "List a network on a DNS blocklist.",
            lambda a: {"net": a["net"], "reason": a.get("reason", "")},
            lambda a: f"list {a['net']} on {a['node']}",
        ),
        ActionDef(
            "dnsbl_delist",
            _record(
                {
                    "node": _node("the node running the dnsbl service"),
                    "net": Field(Str(), required=True, description="the listed address or network"),
                },
                "DnsblDelist",
                "Remove a listing from a DNS blocklist.",
            ),
            "dnsbl",
            "delist",
            "Remove a network from a DNS blocklist.",
            lambda a: {"net": a["net"]},
            lambda a: f"delist {a['net']} from {a['node']}",
        ),
        ActionDef(
            "mx_down",
            _record(
                {"node": _node("the node running the mx service")},
                "MxDown",
                "Stop an MX answering (an outage).",
            ),
            "mx",
            "down",
            "Take an MX down (connections are refused).",
            lambda a: {},
            lambda a: f"take the MX on {a['node']} down",
        ),
        ActionDef(
            "mx_up",
            _record(
                {"node": _node("the node running the mx service")}, "MxUp", "Bring an MX back."
            ),
            "mx",
            "up",
            "Bring an MX back up.",
            lambda a: {},
            lambda a: f"bring the MX on {a['node']} back up",
        ),
        ActionDef(
            "mx_set_check",
            _record(
                {
                    "node": _node("the node running the mx service"),
                    "check": Field(Str(enum=CHECKS), required=True, description="which check"),
                    "action": Field(
                        Str(enum=CHECK_ACTIONS),
                        required=True,
                        description="what a failure costs from now on",
                    ),
                },
                "MxSetCheck",
                "Change what a failing receiving check costs.",
            ),
            "mx",
            "set_check",
            "Change an MX's policy for one check.",
            lambda a: {"check": a["check"], "action": a["action"]},
            lambda a: f"set the {a['check']} check of {a['node']} to {a['action']}",
        ),
        ActionDef(
            "mx_trust_sealer",
            _record(
                {
                    "node": _node("the node running the receiving mx service"),
                    "sealer": Field(
                        Str(),
                        required=True,
                        description="the sealing domain (d= of the ARC-Seal), e.g. `list.example`",
                    ),
                },
                "MxTrustSealer",
                "Trust an intermediary's ARC seals (RFC 8617 §7.2).",
            ),
            "mx",
            "arc_trust",
            "Make an MX trust a sealer's ARC chains: a DMARC failure its changes "
            "caused is then overridden.",
            lambda a: {"sealer": a["sealer"]},
            lambda a: f"make the MX on {a['node']} trust ARC seals by {a['sealer']}",
        ),
        ActionDef(
            "list_set",
            _record(
                {
                    "node": _node("the node whose mx hosts the list"),
                    "list": Field(Str(), required=True, description="the list's local part"),
                    "rewrite_from": Field(
                        Bool(), description="From: becomes the list's address (DMARC mitigation)"
                    ),
                    "arc_seal": Field(Bool(), description="seal each copy with ARC (RFC 8617)"),
                    "subject_tag": Field(Str(), description="the tag put in front of Subject:"),
                    "footer": Field(Str(), description="the text appended to the body"),
                },
                "ListSet",
                "Change a mailing list's settings.",
            ),
            "mx",
            "list_set",
            "Change how a mailing list changes mail.",
            lambda a: {k: v for k, v in a.items() if k != "node"},
            lambda a: (
                f"set {_settings(a, ('node', 'list'))} on the list {a['list']} at {a['node']}"
            ),
        ),
        ActionDef(
            "relay_flush",
            _record(
                {"node": _node("the node running the relay service")},
                "RelayFlush",
                "Retry every queued message now.",
            ),
            "relay",
            "flush",
            "Make a relay retry its queue now.",
            lambda a: {},
            lambda a: f"flush the queue of {a['node']}",
        ),
        ActionDef(
            "advance",
            Duration(description="lab time to let pass, e.g. `30m`"),
            None,
            "advance",
            "Let lab time pass (queues retry, greylisting expires, caches age).",
            lambda a: {},
            lambda a: f"let {a} of lab time pass",
        ),
        ActionDef(
            "firewall_set",
            _record(
                {
                    "router": Field(
                        Str(), required=True, description="the router whose rule changes"
                    ),
                    "rule": Field(
                        Int(minimum=1),
                        required=True,
                        description="the rule's number, 1 for the first (as the trace names it)",
                    ),
                    "action": Field(
                        Str(enum=FIREWALL_ACTIONS),
                        required=True,
                        description="what the rule does from the next connection on",
                    ),
                    "reject_with": Field(
                        Str(enum=REJECT_WITH),
                        description=(
                            "how a `reject` answers: `tcp-reset` (connection refused, the "
                            "default), `icmp-port-unreachable`, `icmp-admin-prohibited` "
                            "(no route to host)"
                        ),
                    ),
                },
                "FirewallSet",
                "Change what one rule of a router's firewall does; its match stays the same.",
            ),
            None,
            "firewall_set",
            "Change one rule of a router's firewall (drop, reject or accept).",
            lambda a: {},
            lambda a: (
                f"make rule {a['rule']} of {a['router']} {a['action']}"
                + (f" with {a['reject_with']}" if a.get("reject_with") else "")
            ),
        ),
        ActionDef(
            "settle",
            Duration(description="the most lab time to let pass, e.g. `1d`"),
            None,
            "settle",
            "Let lab time pass until the relays' queues are done (at most this long): "
            "every retry that falls due runs, and its outcome arrives, before the clock "
            "moves on.",
            lambda a: {},
            lambda a: f"let up to {a} of lab time pass while the queues work",
        ),
        ActionDef(
            "dkim_publish",
            _record(
                {
                    "node": _node("the DNS server node that holds the zone"),
                    "zone": _zone(),
                    "name": Field(
                        Str(),
                        required=True,
                        description=(
                            "where to publish: the owner name, relative to the zone, "
                            "such as `rc1._domainkey`"
                        ),
                    ),
                    "signer": Field(
                        Str(), required=True, description="the node whose relay signs with the key"
                    ),
                    "selector": Field(
                        Str(),
                        description="which of its keys (the `s=` of its signatures); "
                        "needed only when it has several for the domain",
                    ),
                    "domain": Field(
                        Str(), description="the signing domain `d=` (default: the zone)"
                    ),
                },
                "DkimPublish",
                "Publish a signer's public DKIM key as a TXT record, as a relay provider "
                "asks its customer to (RFC 6376 §3.6.2.1).",
            ),
            "dns",
            "add",
            "Publish a signer's public DKIM key in a zone.",
            lambda a: {},
            lambda a: (
                f"publish {a['signer']}'s DKIM key"
                + (f" (selector {a['selector']})" if a.get("selector") else "")
                + f" at {a['name']} in {a['zone']} on {a['node']}"
            ),
        ),
        ActionDef(
            "control",
            _record(
                {
                    "node": _node(),
                    "service": Field(
                        Str(enum=("dns", "dnsbl", "mx", "submission", "relay", "mailbox")),
                        required=True,
                    ),
                    "command": Field(Str(), required=True, description="the control command"),
                    "args": Field(MapOf(Anything()), description="its keyword arguments"),
                },
                "Control",
                "Any control command of a service (for commands without a shorthand above).",
            ),
            None,
            "control",
            "Send a control command to a service.",
            lambda a: dict(a.get("args") or {}),
            lambda a: f"{a['service']} {a['command']} on {a['node']}",
        ),
        ActionDef(
            "postfix_set",
            _record(
                {
                    "node": _node("the node whose Postfix to configure"),
                    "key": Field(
                        Str(), required=True, description="a main.cf parameter: `relayhost`"
                    ),
                    "value": Field(
                        Str(min_length=0),
                        required=True,
                        description="its value: `[192.0.2.25]:587`",
                    ),
                },
                "PostfixSet",
                "Set a main.cf parameter of a Postfix node (`postconf -e`, checked "
                "by Postfix, then `postfix reload`; mininet only).",
            ),
            "postfix",
            "set",
            "Set a Postfix configuration key (main.cf) on a node.",
            lambda a: {"key": a["key"], "value": a["value"]},
            lambda a: f"set {a['key']} = {a['value']} in {a['node']}'s main.cf",
        ),
        ActionDef(
            "dovecot_set",
            _record(
                {
                    "node": _node("the node whose Dovecot to configure"),
                    "key": Field(
                        Str(),
                        required=True,
                        description="a top-level dovecot.conf setting: `disable_plaintext_auth`, "
                        "`ssl`, `auth_mechanisms`, `protocols` (sections such as "
                        "`service imap-login { ... }` cannot be set)",
                    ),
                    "value": Field(
                        Str(min_length=0), required=True, description="its value: `yes`"
                    ),
                },
                "DovecotSet",
                "Set a top-level dovecot.conf setting of a Dovecot node (checked by "
                "`doveconf`, which refuses an unknown name or a bad value and leaves the "
                "running configuration as it was; then `doveadm reload`; mininet only). "
                "Nested sections (`service imap-login { ... }`) are not supported.",
            ),
            "dovecot",
            "set",
            "Set a Dovecot configuration key (dovecot.conf) on a node.",
            lambda a: {"key": a["key"], "value": a["value"]},
            lambda a: f"set {a['key']} = {a['value']} in {a['node']}'s dovecot.conf",
        ),
    )
}

#: The shape of one action in a lab file.
ACTION_SPEC = OneKey(
    {name: Field(d.spec, description=d.description) for name, d in ACTIONS.items()},
    name="Action",
    description="A change to the running lab: one key naming the action.",
)


def _service_of(action: Action) -> str | None:
    if action.name == "control":
        return str(action.args["service"])
    return ACTIONS[action.name].service


def action_problems(action: Action, topology: Topology) -> list[tuple[tuple[str, ...], str]]:
    """What is wrong with ``action`` on ``topology``: (key path within the
    action's arguments, message) pairs; empty when it can run."""
    if action.name == "firewall_set":
        return _firewall_problems(action.args, topology)
    service = _service_of(action)
    if service is None:
        return []
    args = action.args
    node_name = str(args["node"])
    try:
        node = topology.node(node_name)
    except KeyError:
        names = ", ".join(n.name for n in topology.hosts())
        return [(("node",), f"no node {node_name!r} in topology {topology.name} (hosts: {names})")]
    if getattr(node.services, service, None) is None:
        runs = ", ".join(node.services.names()) or "no services"
        return [(("node",), f"{node_name} runs no {service} service (it runs {runs})")]
    problems: list[tuple[tuple[str, ...], str]] = []
    if service == "dns" and "zone" in args:
        zone = fqdn(str(args["zone"]))
        dns = node.services.dns
        served = [fqdn(z) for z in (dns.zones if dns is not None else ())]
        if zone not in served:
            problems.append(
                (
                    ("zone",),
                    f"{node_name} does not serve the zone {zone} "
                    f"(it serves: {', '.join(served) or 'none'})",
                )
            )
        for key in ("record", "text"):
            if key in args:
                try:
                    parse_zone(zone, str(args[key]), DEFAULT_TTL)
                except ZoneSyntaxError as err:
                    problems.append(((key,), f"not a valid zone record: {err}"))
        if args.get("type"):
            try:
                qtype_code(str(args["type"]))
            except ValueError as err:
                problems.append((("type",), str(err)))
    if action.name == "dkim_publish":
        # Imported here: it brings in dkimpy and cryptography, which loading
        # a lab file (`maillab list`, `validate`) does not otherwise need.
        from sim.lab.dkimpublish import dkim_problems

        problems.extend(dkim_problems(args, topology))
    if action.name == "dovecot_set":
        problem = dovecot_setting_problem(str(args["key"]), str(args["value"]))
        if problem is not None:
            problems.append((("key",), problem))
    if service == "dnsbl" and "net" in args:
        try:
            IPv4Network(str(args["net"]), strict=False)
        except ValueError:
            problems.append((("net",), f"{args['net']!r} is not an IPv4 address or network"))
    return problems


def _firewall_problems(args: Any, topology: Topology) -> list[tuple[tuple[str, ...], str]]:
    """The router exists, is a router, and has the rule the action names."""
    name = str(args["router"])
    routers = [n.name for n in topology.routers()]
    listed = ", ".join(routers) or "none"
    try:
        node = topology.node(name)
    except KeyError:
        hint = suggest(name, routers) or f" (routers: {listed})"
        return [(("router",), f"no router {name!r} in topology {topology.name}{hint}")]
    if node.kind != "router":
        return [(("router",), f"{name} is a host, not a router (routers: {listed})")]
    count, number = len(node.firewall), int(args["rule"])
    problems: list[tuple[tuple[str, ...], str]] = []
    if count == 0:
        problems.append((("rule",), f"{name} has no firewall rules"))
    elif number > count:
        problems.append(
            (("rule",), f"{name} has {count} firewall rule(s): give a number from 1 to {count}")
        )
    if args.get("reject_with") and args["action"] != "reject":
        problems.append(
            (
                ("reject_with",),
                f"only a reject answers the sender; with action {args['action']} "
                "leave reject_with out",
            )
        )
    return problems


def action_from_data(raw: Any) -> Action:
    """Build an :class:`Action` from plain data (a front end's edit), checked
    like a lab file's; raises :class:`LabFileError` with every problem."""
    checker = Checker("action")
    ACTION_SPEC.check(raw, (1, 1), (), checker)
    if checker.problems:
        raise LabFileError(checker.problems)
    name, args = next(iter(raw.items()))
    return Action(str(name), _plain(args))


def resolver_node(topology: Topology) -> str | None:
    """The node whose DNS service answers every node's queries."""
    if topology.settings.resolver is not None:
        node = topology.host_by_address(topology.settings.resolver)
        if node is not None and node.services.dns is not None:
            return node.name
    hosts = [n.name for n in topology.hosts() if n.services.dns is not None]
    return hosts[0] if len(hosts) == 1 else None


def apply_action(
    lab: ControlLab, action: Action, topology: Topology, dns_cache: str = "flush"
) -> ActionResult:
    """Perform ``action`` on the running ``lab``; errors come back as data."""
    definition = ACTIONS[action.name]
    as_json = action.to_json()
    problems = action_problems(action, topology)
    if problems:
        return ActionResult(False, as_json, "; ".join(m for _, m in problems))
    summary = definition.summary(action.args)
    try:
        if action.name == "advance":
            seconds = parse_duration(action.args)
            lab.advance(seconds)
            return ActionResult(
                True,
                as_json,
                f"{format_duration(seconds)} of lab time passed",
                {"advanced": seconds},
            )
        if action.name == "firewall_set":
            return _set_firewall(lab, action, as_json)
        if action.name == "settle":
            return _settle(lab, parse_duration(action.args), as_json)
        service = _service_of(action)
        command = action.args["command"] if action.name == "control" else definition.command
        assert service is not None
        control_args = definition.control_args(action.args)
        published: dict[str, Any] = {}
        if action.name == "dkim_publish":
            domain, selector = dkim_choice(action.args, topology)
            # The signer's relay shows the key, as a provider's setup page does.
            key = lab.control(
                str(action.args["signer"]), "relay", "dkim_key", domain=domain, selector=selector
            )
            record = dkim_record(action.args, str(key["txt"]))
            control_args = {"zone": action.args["zone"], "text": record}
            summary += f': "{str(key["txt"])[:40]}…"'
            published = {"record": record, "txt": key["txt"], "key_name": key["record_name"]}
        data = lab.control(str(action.args["node"]), service, str(command), **control_args)
        data = {**dict(data or {}), **published}
    except (SimError, ValueError, LookupError, NotImplementedError) as err:
        # The service refused the edit (a record that is not there, a zone
        # rule broken): the student sees why, the lab keeps running.
        return ActionResult(False, as_json, f"could not {summary}: {_reason(err)}")
    message = f"done: {summary}"
    if action.name == "dns_add":
        # Parses, but probably not what was meant: say what the name became.
        warnings = relative_name_warnings(str(action.args["zone"]), str(action.args["record"]))
        if warnings:
            message += ". Warning: " + "; ".join(warnings)
            published["warnings"] = warnings
    if service in ("dns", "dnsbl") and action.name != "control":
        # A listing or delisting is a DNS change too: receivers see it through
        # their resolver, which may hold the old answer for its TTL.
        message += ". " + _after_dns_edit(lab, topology, dns_cache)
    return ActionResult(True, as_json, message, {**dict(data or {}), **published})


def _set_firewall(lab: ControlLab, action: Action, as_json: dict[str, Any]) -> ActionResult:
    """Change one rule of a running router (``sim.Lab.set_firewall``): only
    what it does (and how a reject answers), never what it matches."""
    from sim.topology.firewall import describe_rule

    args = action.args
    router, number = str(args["router"]), int(args["rule"])
    read: Callable[[str], tuple[FirewallRule, ...]] | None = getattr(lab, "firewall", None)
    write: Callable[[str, tuple[FirewallRule, ...]], None] | None = getattr(
        lab, "set_firewall", None
    )
    if read is None or write is None:
        return ActionResult(False, as_json, "this lab cannot change firewall rules")
    rules = list(read(router))
    if not 1 <= number <= len(rules):
        return ActionResult(
            False, as_json, f"{router} has {len(rules)} firewall rule(s), not a rule {number}"
        )
    old = rules[number - 1]
    # Like a rule written in a topology file: tcp-reset unless told otherwise.
    new = replace(old, action=args["action"], reject_with=args.get("reject_with") or "tcp-reset")
    rules[number - 1] = new
    write(router, tuple(rules))
    before, after = describe_rule(old), describe_rule(new)
    return ActionResult(
        True,
        as_json,
        f"done: rule {number} of {router} was `{before}`, now `{after}`; "
        "the next connection meets it (the router is stateful: connections "
        "already open are not judged again)",
        {"router": router, "rule": number, "before": before, "after": after},
    )


def _settle(lab: ControlLab, limit: float, as_json: dict[str, Any]) -> ActionResult:
    """Let lab time pass while the queues work (``sim.Lab.settle``); a lab
    without queues to wait for just advances its clock."""
    settle = getattr(lab, "settle", None)
    if settle is None:
        lab.advance(limit)
        passed = limit
    else:
        passed = float(settle(limit))
    queues = getattr(lab, "queues", None)
    waiting = sum(len(q) for q in queues().values()) if queues is not None else 0
    if waiting and passed < limit:
        # The next attempt falls due after the limit: the time asked for
        # still passes (a student who lets 10 minutes pass sees them pass).
        lab.advance(limit - passed)
        passed = limit
    left = (
        "every queue is empty"
        if waiting == 0
        else f"{waiting} message{'' if waiting == 1 else 's'} still queued"
    )
    return ActionResult(
        True,
        as_json,
        f"{format_duration(round(passed))} of lab time passed (at most "
        f"{format_duration(limit)}); {left}",
        {"advanced": passed, "queued": waiting},
    )


def _reason(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.strip("'\"") if isinstance(err, KeyError) else text


def _after_dns_edit(lab: ControlLab, topology: Topology, dns_cache: str) -> str:
    resolver = resolver_node(topology)
    if dns_cache == "ttl" or resolver is None:
        return (
            f"Resolvers that cached the old answer keep it until its TTL runs out "
            f"({DEFAULT_TTL} s unless the zone says otherwise; a cached absence lasts "
            "the SOA minimum, RFC 2308): wait, or advance lab time"
        )
    try:
        lab.control(resolver, "dns", "flush")
    except (SimError, ValueError, LookupError, NotImplementedError) as err:
        return (
            f"The resolver on {resolver} could not flush its cache ({_reason(err)}): "
            "old answers live until their TTL runs out"
        )
    return (
        f"The lab flushed the resolver cache on {resolver} so you see the change now; "
        "a real resolver would keep a cached answer until its TTL runs out "
        "(RFC 1035 §7.3)"
    )
