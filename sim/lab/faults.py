"""The fault catalogue: named breakages a troubleshooting lab draws per student.

A troubleshooting lab (labs 11 and 12) starts from a symptom ("mail from
shop.example to qq.example bounces since Monday"); what causes it differs
from student to student. Each cause is a :class:`Fault` here: a documented
change applied to the running lab when it starts (``breaks``), the receiver
check it trips (``trips``), what the fixed lab must show (``expect``,
predicates added to the task's probe message) and the reference fix
(``solution``), so that ``maillab check`` proves every variant solvable.

Faults are written against *roles*, not node names: a lab says which of its
nodes plays each part in its ``faults:`` declaration::

    faults:
      draw: 1
      from: [stale-spf-include, ptr-missing, dnsbl-listed]
      roles: {dns: ns, domain: shop.example, sender: mail-shop, receiver: mx-qq, dnsbl: bl}

``dns`` is the DNS node holding the sender's zones, ``domain`` the sending
domain, ``sender`` the node whose relay hands the mail to ``receiver``, the
receiving MX; ``dnsbl`` the blocklist ``receiver`` asks. Everything else a
fault needs (the sender's address, its reverse zone, the published SPF and
DMARC records, the DKIM selector) is read from the topology
(:mod:`sim.lab.faultfacts`), and a fault that cannot find it does not
apply: :func:`bind` says which node or record is missing. Action and
predicate templates are plain lab-file data in which ``{name}`` is
replaced by a role or one of those values.

Adding a fault is adding one :class:`Fault` to :data:`CATALOGUE`
(docs/authoring.md, "Adding a fault").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import Any

from sim.fastclass import dataclass
from sim.lab.draw import draw_index
from sim.lab.faultfacts import (
    Facts,
    FaultMismatch,
    dkim_facts,
    dmarc_facts,
    dnsbl_facts,
    ptr_facts,
    receiver_facts,
    sender_facts,
    smarthost_facts,
    spf_facts,
    zone_firewall_facts,
)
from sim.lab.model import Action, FaultDraw, Predicate
from sim.spec.words import suggest
from sim.topology.model import Topology

__all__ = [
    "CATALOGUE",
    "ROLES",
    "BoundFault",
    "Fault",
    "FaultMismatch",
    "bind",
    "declaration_problems",
    "dkim_facts",
    "dmarc_facts",
    "dnsbl_facts",
    "drawn",
    "fault",
    "ptr_facts",
    "receiver_facts",
    "sender_facts",
    "smarthost_facts",
    "spf_facts",
    "zone_firewall_facts",
]

#: The roles a lab's ``faults.roles`` may give, and what each is.
ROLES: dict[str, str] = {
    "dns": "the DNS node that serves the sending domain's zones",
    "domain": "the sending domain, such as shop.example",
    "sender": "the node whose relay hands the mail to the receiver",
    "receiver": "the receiving MX node",
    "dnsbl": "the blocklist node the receiver asks",
}


@dataclass(frozen=True)
class Fault:
    """One entry of the catalogue (see the module docstring)."""

    name: str
    #: One line for instructors; never shown to students (the lab text
    #: describes the symptom, not the cause).
    summary: str
    #: What it changes and why mail breaks, with the RFC.
    doc: str
    roles: tuple[str, ...]
    breaks: tuple[Mapping[str, Any], ...]
    solution: tuple[Mapping[str, Any], ...]
    expect: tuple[Mapping[str, Any], ...] = ()
    #: The receiver check this fault trips: the receiver must run it, and
    #: do more than note it in a header, or the fault goes unnoticed.
    trips: str | None = None
    #: Values read from the topology for the templates (raises FaultMismatch).
    facts: Sequence[Facts] = field(default=())


@dataclass(frozen=True)
class BoundFault:
    """A fault bound to one lab: concrete actions and predicates."""

    name: str
    summary: str
    breaks: tuple[Action, ...]
    solution: tuple[Action, ...]
    expect: tuple[Predicate, ...]


# -- the catalogue ---------------------------------------------------------------

_REPLACE_SPF = {"dns_remove": {"node": "{dns}", "zone": "{domain}", "name": "@", "type": "TXT"}}
# The other edits several faults (or their fixes) make: templates, filled per lab.
_REMOVE_DKIM_KEY = {
    "dns_remove": {"node": "{dns}", "zone": "{domain}", "name": "{dkim_name}", "type": "TXT"}
}
_REMOVE_PTR = {
    "dns_remove": {"node": "{dns}", "zone": "{ptr_zone}", "name": "{ptr_label}", "type": "PTR"}
}
#: The reference fix of both PTR faults: the sender's address names its host again.
_ADD_PTR = {
    "dns_add": {"node": "{dns}", "zone": "{ptr_zone}", "record": "{ptr_label} PTR {ptr_target}"}
}
_REMOVE_DMARC = {
    "dns_remove": {"node": "{dns}", "zone": "{domain}", "name": "_dmarc", "type": "TXT"}
}
_PUBLISH_DKIM_KEY = {
    "dkim_publish": {
        "node": "{dns}",
        "zone": "{domain}",
        "name": "{dkim_name}",
        "signer": "{sender}",
        "selector": "{selector}",
    }
}

CATALOGUE: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault(
            "stale-spf-include",
            "The SPF record still includes the old provider instead of the server's address.",
            "The domain moved its mail to its own server, but its SPF record still "
            "says `include:` the previous provider, `-all`: the sending address "
            "matches no mechanism, so SPF fails (RFC 7208 §5.2, §2.6.4).",
            ("dns", "domain", "sender", "receiver"),
            breaks=(
                _REPLACE_SPF,
                {
                    "dns_add": {
                        "node": "{dns}",
                        "zone": "{domain}",
                        "record": '@ TXT "v=spf1 include:_spf.{domain} -all"\n'
                        '_spf TXT "v=spf1 ip4:198.18.0.0/24 -all"',
                    }
                },
            ),
            solution=(
                _REPLACE_SPF,
                {"dns_add": {"node": "{dns}", "zone": "{domain}", "record": '@ TXT "{spf}"'}},
            ),
            expect=({"checks": {"spf": "pass"}},),
            trips="spf",
            facts=(sender_facts, spf_facts, receiver_facts),
        ),
        Fault(
            "dkim-key-stale",
            "The signer's key was regenerated; DNS still publishes the old public key.",
            "The sending server got a new key pair under the same selector, and the "
            "TXT record at `<selector>._domainkey` was never updated: every "
            "signature fails to verify with the old key (RFC 6376 §6.1.3).",
            ("dns", "domain", "sender", "receiver"),
            breaks=(
                _REMOVE_DKIM_KEY,
                {
                    "dns_add": {
                        "node": "{dns}",
                        "zone": "{domain}",
                        "record": '{dkim_name} TXT "{stale_key}"',
                    }
                },
            ),
            solution=(
                _REMOVE_DKIM_KEY,
                _PUBLISH_DKIM_KEY,
            ),
            expect=({"checks": {"dkim": "pass"}},),
            trips="dkim",
            facts=(sender_facts, dkim_facts, receiver_facts),
        ),
        Fault(
            "dkim-key-withdrawn",
            "DNS moved to a new selector's key; the signer still signs with the old one.",
            "Someone rotated the key in DNS only: a new key was published under a "
            "new selector and the old selector's record removed, while the signer "
            "still signs with the old selector. The verifier finds no key for "
            "`s=`: permerror (RFC 6376 §6.1.2).",
            ("dns", "domain", "sender", "receiver"),
            breaks=(
                _REMOVE_DKIM_KEY,
                {
                    "dns_add": {
                        "node": "{dns}",
                        "zone": "{domain}",
                        "record": 'next{selector}._domainkey TXT "{stale_key}"',
                    }
                },
            ),
            solution=(_PUBLISH_DKIM_KEY,),
            expect=({"checks": {"dkim": "pass"}},),
            trips="dkim",
            facts=(sender_facts, dkim_facts, receiver_facts),
        ),
        Fault(
            "ptr-missing",
            "The sending address lost its PTR record.",
            "After a renumbering nobody recreated the reverse record: a PTR lookup "
            "of the sending address gets NXDOMAIN, and receivers that require "
            "reverse DNS refuse the client (RFC 1912 §2.1; iprev, RFC 8601 §3).",
            ("dns", "sender", "receiver"),
            breaks=(_REMOVE_PTR,),
            solution=(_ADD_PTR,),
            expect=({"checks": {"ptr": "pass"}},),
            trips="ptr",
            facts=(sender_facts, ptr_facts, receiver_facts),
        ),
        Fault(
            "ptr-wrong",
            "The PTR record names a host whose name does not resolve back to the address.",
            "The reverse record points at a name the forward zone does not have "
            "(a typo), so forward-confirmed reverse DNS fails: the name does not "
            "resolve back to the address (iprev fail, RFC 8601 §3).",
            ("dns", "sender", "receiver"),
            breaks=(
                _REMOVE_PTR,
                {
                    "dns_add": {
                        "node": "{dns}",
                        "zone": "{ptr_zone}",
                        "record": "{ptr_label} PTR {ptr_old}",
                    }
                },
            ),
            solution=(
                _REMOVE_PTR,
                _ADD_PTR,
            ),
            expect=({"checks": {"fcrdns": "pass"}},),
            trips="fcrdns",
            facts=(sender_facts, ptr_facts, receiver_facts),
        ),
        Fault(
            "dnsbl-listed",
            "The sending address was newly listed on the DNS blocklist the receiver uses.",
            "A blocklist listed the sender's address (a compromised account sent "
            "spam, say); the receiver looks the address up under the list's zone "
            "and refuses listed clients (RFC 5782 §2.1). The fix, once the cause is "
            "gone, is to ask the list operator to delist it.",
            ("sender", "receiver", "dnsbl"),
            breaks=(
                {
                    "dnsbl_list": {
                        "node": "{dnsbl}",
                        "net": "{sender_ip}/32",
                        "reason": "spam sent from this address",
                    }
                },
            ),
            solution=({"dnsbl_delist": {"node": "{dnsbl}", "net": "{sender_ip}/32"}},),
            expect=({"checks": {"dnsbl": "notlisted"}},),
            trips="dnsbl",
            facts=(sender_facts, receiver_facts, dnsbl_facts),
        ),
        Fault(
            "primary-mx-down",
            "The receiving domain's primary MX is down.",
            "The server behind the domain's best MX stopped answering: senders "
            "get connection refused, keep the message queued and retry "
            "(RFC 5321 §4.5.4.1). Bring the server back, then let the queue retry.",
            ("sender", "receiver"),
            breaks=({"mx_down": {"node": "{receiver}"}},),
            solution=({"mx_up": {"node": "{receiver}"}}, {"relay_flush": {"node": "{sender}"}}),
            facts=(sender_facts, receiver_facts),
        ),
        Fault(
            "zone-servfail",
            "The receiving domain's DNS answers SERVFAIL (its server is unreachable).",
            "A firewall change cut the receiving domain's authoritative server off: "
            "the resolver's questions time out and it answers SERVFAIL, so senders "
            "cannot find the MX and keep the mail queued (RFC 2308 §7.1, RFC 5321 "
            "§5.1).",
            ("sender", "receiver"),
            breaks=(
                {
                    "firewall_set": {
                        "router": "{zone_router}",
                        "rule": "{zone_rule}",
                        "action": "drop",
                    }
                },
            ),
            solution=(
                {
                    "firewall_set": {
                        "router": "{zone_router}",
                        "rule": "{zone_rule}",
                        "action": "accept",
                    }
                },
                {"relay_flush": {"node": "{sender}"}},
            ),
            facts=(sender_facts, zone_firewall_facts),
        ),
        Fault(
            "relay-password-changed",
            "The smarthost's password was changed; the relay still logs in with the old one.",
            "The provider that relays the domain's mail changed the account's "
            "password, and the relay's configuration still has the old one: AUTH "
            "fails with 535 5.7.8 (RFC 4954 §6), and the relay keeps the mail "
            "queued, since a configuration can be fixed (RFC 5321 §4.5.4.1). Reset "
            "the password at the provider and give the relay the same one.",
            ("sender",),
            breaks=(
                {
                    "control": {
                        "node": "{smarthost}",
                        "service": "submission",
                        "command": "password",
                        "args": {"user": "{smarthost_user}", "password": "rotated-by-provider"},
                    }
                },
            ),
            solution=(
                {
                    "control": {
                        "node": "{smarthost}",
                        "service": "submission",
                        "command": "password",
                        "args": {"user": "{smarthost_user}", "password": "reset-by-admin"},
                    }
                },
                {
                    "control": {
                        "node": "{sender}",
                        "service": "relay",
                        "command": "smarthost_password",
                        "args": {"password": "reset-by-admin"},
                    }
                },
                {"relay_flush": {"node": "{sender}"}},
            ),
            facts=(sender_facts, smarthost_facts),
        ),
        Fault(
            "tls-name-mismatch",
            "The smarthost's new certificate is for another host name.",
            "The provider renewed its certificate for the wrong name (its web "
            "server's). A relay that hands mail to a smarthost verifies the "
            "certificate against the name it connects to (RFC 8314 §4.1, RFC 6125 "
            "§6), so the TLS handshake fails and the mail stays queued. The fix is "
            "a certificate for the right name, then a retry.",
            ("sender",),
            breaks=(
                {
                    "control": {
                        "node": "{smarthost}",
                        "service": "submission",
                        "command": "certificate",
                        "args": {"names": ["{smarthost_other}"]},
                    }
                },
            ),
            solution=(
                {
                    "control": {
                        "node": "{smarthost}",
                        "service": "submission",
                        "command": "certificate",
                        "args": {"names": ["{smarthost_name}"]},
                    }
                },
                {"relay_flush": {"node": "{sender}"}},
            ),
            facts=(sender_facts, smarthost_facts),
        ),
        Fault(
            "greylisting",
            "The receiver started greylisting new senders.",
            "The receiver answers a new (client, sender, recipient) triplet with "
            "450 and accepts it once a delay has passed (RFC 6647). Nothing is "
            "broken: a real MTA retries, and the fix is to let it. The delay is "
            "half an hour, longer than the sender's first retry (5 minutes), so "
            "the mail waits for the second (RFC 6647 §2.2 leaves the delay to "
            "the receiver), and a check right after lab start still sees it.",
            ("sender", "receiver"),
            breaks=(
                {
                    "control": {
                        "node": "{receiver}",
                        "service": "mx",
                        "command": "greylist",
                        "args": {"delay": 1800},
                    }
                },
            ),
            solution=({"settle": "1h"},),
            facts=(sender_facts, receiver_facts),
        ),
        Fault(
            "dmarc-syntax-error",
            "The DMARC record has a syntax error, so receivers ignore it.",
            "An edit broke the record's `p=` tag: a record without a valid policy "
            "is no DMARC record at all, and receivers apply none (RFC 7489 §6.6.3), "
            "so mail forged in the domain's name gets through.",
            ("dns", "domain", "receiver"),
            breaks=(
                _REMOVE_DMARC,
                {
                    "dns_add": {
                        "node": "{dns}",
                        "zone": "{domain}",
                        "record": '_dmarc TXT "{dmarc_broken}"',
                    }
                },
            ),
            solution=(
                _REMOVE_DMARC,
                {
                    "dns_add": {
                        "node": "{dns}",
                        "zone": "{domain}",
                        "record": '_dmarc TXT "{dmarc}"',
                    }
                },
            ),
            expect=({"checks": {"dmarc": "pass"}},),
            trips="dmarc",
            facts=(dmarc_facts, receiver_facts),
        ),
    )
}

#: A public key of a pair no signer in the lab holds (what an outdated
#: record publishes after the signer's key was regenerated).
STALE_KEY = (
    "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEArhHDL1IHo6+su1nipRVf9lua9gnRyf4"
    "ghdnz80zksajLT+e4C1pkxgHDGmOvyKWWgeJVYsRQiA0708qBsIjRhri7lWAIpW0lOOGVuf/aiY4irE0tpvJlFfZr"
    "rcMDt8uo5+WJlgK1ZVt20Q44odn100SEIp4PadRyyy78CyfpxYZqjh8oLWipBN9OOmtiXox3iycTReI6bChLbikx"
    "locQD8TWoACBqrDx7fIMdCjWngvV9faK4gH1Oq4ao9rGyau7ieifSihSR7wTVxtHN0BYTY8lWMPc6UeyJQ7CBTZt"
    "tMPthSolL7pMZAO0ApQrmGBuvsCT9ZPjg2m2UusnFOWP4wIDAQAB"
)


def fault(name: str) -> Fault:
    """The catalogue entry ``name`` (KeyError with a did-you-mean otherwise)."""
    found = CATALOGUE.get(name)
    if found is None:
        raise KeyError(
            f"no fault {name!r}{suggest(name, CATALOGUE)} (faults: {', '.join(CATALOGUE)})"
        )
    return found


# -- binding a fault to a lab ------------------------------------------------------


def _fill(template: Any, values: Mapping[str, Any]) -> Any:
    """``template`` with ``{name}`` replaced; a string that is one whole
    placeholder becomes the value itself (a rule number stays a number)."""
    if isinstance(template, str):
        if template.startswith("{") and template.endswith("}") and template[1:-1] in values:
            return values[template[1:-1]]
        return template.format_map(values)
    if isinstance(template, Mapping):
        return {k: _fill(v, values) for k, v in template.items()}
    if isinstance(template, list | tuple):
        return [_fill(v, values) for v in template]
    return template


def _actions(
    templates: Sequence[Mapping[str, Any]], values: Mapping[str, Any], where: str
) -> tuple[Action, ...]:
    out = []
    for i, template in enumerate(templates):
        ((name, args),) = _fill(template, values).items()
        out.append(Action(str(name), args, path=("faults", where, i, name)))
    return tuple(out)


def bind(found: Fault, topology: Topology, roles: Mapping[str, str]) -> BoundFault:
    """``found`` on ``topology`` with the lab's ``roles``; raises
    :class:`FaultMismatch` naming what the lab lacks."""
    missing = [r for r in found.roles if r not in roles]
    if missing:
        raise FaultMismatch(
            "needs the role(s) "
            + ", ".join(f"{r} ({ROLES[r]})" for r in missing)
            + " in faults.roles"
        )
    values: dict[str, Any] = {**roles, "stale_key": STALE_KEY}
    for read in found.facts:
        values.update(read(topology, roles))
    if found.trips is not None:
        receiver = topology.node(roles["receiver"])
        assert receiver.services.mx is not None  # _receiver_domain checked it
        policy = {p.check: p.action for p in receiver.services.mx.checks}
        action = policy.get(found.trips)
        if action is None or action == "header":
            runs = ", ".join(f"{c}: {a}" for c, a in policy.items()) or "none"
            raise FaultMismatch(
                f"the receiver {receiver.name} does not act on the {found.trips} check "
                f"(its checks: {runs}), so the fault would go unnoticed"
            )
    try:
        expect = tuple(
            Predicate(str(n), v, path=("faults", "expect", i, n))
            for i, item in enumerate(found.expect)
            for n, v in _fill(item, values).items()
        )
        return BoundFault(
            found.name,
            found.summary,
            _actions(found.breaks, values, "breaks"),
            _actions(found.solution, values, "solution"),
            expect,
        )
    except KeyError as err:  # a template names a value no fact gives: a catalogue bug
        raise FaultMismatch(
            f"its templates use {{{err.args[0]}}}, which nothing provides"
        ) from None


def declaration_problems(
    draw: FaultDraw, topology: Topology
) -> list[tuple[tuple[str | int, ...], str]]:
    """What is wrong with a lab's ``faults:`` declaration, at its place in the file."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for role in draw.roles_dict():
        if role not in ROLES:
            problems.append(
                (
                    ("faults", "roles", role),
                    f"no role {role!r}{suggest(role, ROLES)} (roles: {', '.join(ROLES)})",
                )
            )
    if draw.draw > len(draw.choices):
        problems.append(
            (("faults", "draw"), f"draws {draw.draw} of only {len(draw.choices)} fault(s)")
        )
    seen: set[str] = set()
    for i, name in enumerate(draw.choices):
        where: tuple[str | int, ...] = ("faults", "from", i)
        if name in seen:
            problems.append((where, f"fault {name!r} is listed twice"))
            continue
        seen.add(name)
        if name not in CATALOGUE:
            problems.append(
                (
                    where,
                    f"no fault {name!r} in the catalogue{suggest(name, CATALOGUE)} "
                    f"(faults: {', '.join(CATALOGUE)})",
                )
            )
            continue
        try:
            bind(CATALOGUE[name], topology, draw.roles_dict())
        except FaultMismatch as err:
            problems.append(
                (where, f"the fault {name} does not apply to the topology {topology.name}: {err}")
            )
    return problems


def drawn(draw: FaultDraw, student: str, lab_id: str) -> tuple[str, ...]:
    """The faults ``student`` gets in the lab ``lab_id``: ``draw.draw`` of
    ``draw.choices``, without repeats, the same on every run and machine."""
    left = list(draw.choices)
    out = []
    for i in range(min(draw.draw, len(left))):
        out.append(left.pop(draw_index(student, lab_id, f"fault{i}" if i else "fault", len(left))))
    return tuple(out)
