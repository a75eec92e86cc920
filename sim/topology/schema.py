"""The topology file format: its table of kinds, described once.

One table, :data:`TOPOLOGY`, names every key of a topology file with its type,
default, allowed values and a one-sentence description, written in the kinds
of the spec engine (:mod:`sim.spec.kinds`; value formats such as addresses
and domain names in :mod:`sim.topology.formats`). Everything else is derived
from it, so nothing can drift apart:

* the loader (:mod:`sim.topology.loader`) checks a YAML document against the
  table and builds the :mod:`sim.topology.model` objects it names;
* :func:`json_schema` renders JSON Schema (draft 2020-12) for editors:
  ``docs/topology.schema.json``;
* :func:`render_reference` renders the Markdown reference of every key:
  ``docs/topology-reference.md``.

``python -m sim.topology.schema`` rewrites both files (``--check`` only
compares). A key is one line of its kind's ``fields``::

    "greylist": Field(fmt("duration"), "Defer a new triplet ...", default="5m"),

and a rule tying keys together (:class:`OnlyWhen`, :class:`RequiredWhen`,
:class:`Together`) one line of its ``rules``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any, get_args

import sim.topology.model as model
from sim.spec.document import document_schema, markdown_sections, named_specs
from sim.spec.kinds import (
    Choice,
    Either,
    Field,
    ListOf,
    MapOf,
    OnlyWhen,
    Record,
    RequiredWhen,
    Scalar,
    Together,
    iter_specs,
)
from sim.topology.formats import FORMATS, fmt
from sim.topology.model import CheckPolicy


def _checks() -> Any:
    """The receiving checks (:mod:`sim.services.checks`): plugins of the
    services layer whose names, results and actions this format lists. The
    topology layer sits below the services (docs/architecture.md), so the
    registry is found by name when the schema is built, not imported."""
    return importlib.import_module("sim.services.checks")


__all__ = [
    "EXAMPLE",
    "FORMATS",
    "TOPOLOGY",
    "json_schema",
    "main",
    "records",
    "render_reference",
    "render_schema",
]


# -- the table ----------------------------------------------------------------------

_TEXT = fmt("text")


_DOMAIN_NAME = fmt("domain name")


_NODE = fmt("node name")


_DURATION_SPEC = fmt("duration")


_PASSWORD = fmt("password")


FIREWALL_RULE = Record(
    name="firewall-rule",
    description=(
        "One rule of a router's forwarding firewall. Rules are tried in order and the "
        "first that matches decides; a packet no rule matches is accepted. Only the "
        "first packet of a connection is judged, so replies always pass."
    ),
    fields={
        "action": Field(
            Choice("accept", "drop", "reject"),
            (
                "What happens to a matching packet: `drop` makes the client wait for a time-out, "
                "`reject` refuses at once."
            ),
            required=True,
        ),
        "proto": Field(
            Choice("tcp", "udp", "icmp", "any"), "Protocol the rule matches.", default="any"
        ),
        "src": Field(fmt("IPv4 network"), "Source network the rule matches (any if absent)."),
        "dst": Field(fmt("IPv4 network"), "Destination network the rule matches (any if absent)."),
        "dport": Field(
            fmt("port range"), "Destination port or range the rule matches (any if absent)."
        ),
        "direction": Field(
            Choice("in", "out", "any"),
            (
                "`out`: from the router's own LANs towards its links; `in`: the reverse; `any`: "
                "both, and transit."
            ),
            default="any",
        ),
        "reject_with": Field(
            Choice("tcp-reset", "icmp-port-unreachable", "icmp-admin-prohibited"),
            (
                'How a `reject` answers: a TCP reset or port-unreachable show as "connection '
                'refused", admin-prohibited as "no route to host".'
            ),
            default="tcp-reset",
        ),
        "note": Field(_TEXT, "Why the rule exists; shown in traces when the rule decides."),
    },
    rules=(
        OnlyWhen("dport", "proto", ("tcp", "udp"), "only TCP and UDP have ports"),
        OnlyWhen("reject_with", "action", ("reject",), "only a reject sends an answer"),
    ),
    model=model.FirewallRule,
)


DNS_SILENCE = Record(
    name="dns-silence",
    description=(
        "A question the server never answers: the asker times out (a broken or "
        "overloaded authoritative server; SPF and DMARC turn it into temperror)."
    ),
    fields={
        "name": Field(_DOMAIN_NAME, "The name asked about.", required=True),
        "type": Field(
            Choice("ANY", "A", "AAAA", "MX", "TXT", "SPF", "PTR", "CNAME", "NS", "SOA", "SRV"),
            "The record type asked for; ANY: every type.",
            default="ANY",
        ),
    },
    model=model.DnsSilence,
)


DNS = Record(
    name="dns",
    description=(
        "Authoritative DNS for the named zones; the host named by `settings.resolver` "
        "also answers every lab zone for the other nodes."
    ),
    fields={
        "zones": Field(
            ListOf(_DOMAIN_NAME, unique=True),
            "Zones this server is authoritative for; each must be defined under `zones`.",
            default=[],
        ),
        "unanswered": Field(
            ListOf(DNS_SILENCE),
            (
                "Questions this server never answers (names in its zones), e.g. `[{name: "
                "slow.example, type: TXT}]`: a DNS time-out on demand."
            ),
            default=[],
        ),
    },
    model=model.DnsService,
)


DNSBL_LISTING = Record(
    name="dnsbl-listing",
    description="A range of addresses a blocklist lists.",
    fields={
        "net": Field(fmt("IPv4 network"), "The listed addresses.", required=True),
        "code": Field(
            fmt("DNSBL code"),
            "The A record answered for a listed address (what kind of listing it is).",
            default="127.0.0.2",
        ),
        "reason": Field(_TEXT, "The TXT record answered for a listed address."),
    },
    model=model.DnsblListing,
)


DNSBL = Record(
    name="dnsbl",
    description=(
        "A DNS blocklist (RFC 5782): answers queries for reversed-octet names under its zone."
    ),
    fields={
        "zone": Field(
            _DOMAIN_NAME, "The blocklist's zone, such as zen.dnsbl.example.", required=True
        ),
        "listed": Field(ListOf(DNSBL_LISTING), "The listed ranges.", default=[]),
    },
    model=model.DnsblService,
)


def _mx_checks() -> Record:
    """``mx.checks`` in mapping form: one key per registered check
    (sim.services.checks), with the actions its module allows."""
    return Record(
        name="mx-checks",
        description=(
            "Which checks an mx runs and what a failure costs: `reject` (5xx), `defer` "
            "(4xx, try later), `junk` (accept into the junk folder), `header` (only "
            "note it in Authentication-Results) or, for dmarc, `policy` (what the "
            "domain publishes)."
        ),
        fields={
            check.name: Field(
                Choice(check.actions), f"{check.doc} In list form it costs `{check.default}`."
            )
            for check in _checks().listed()
        },
    )


MX_CHECKS = _mx_checks()


def _check_policies(value: Any) -> tuple[CheckPolicy, ...]:
    """``[ptr, spf]`` → default actions; ``{ptr: defer}`` → as written."""
    if isinstance(value, dict):
        return tuple((CheckPolicy(name, action) for name, action in value.items()))
    defaults = _checks().default_actions()
    return tuple(CheckPolicy(name, defaults[name]) for name in value)


def _score_weights() -> Record:
    """``mx.scoring.weights``: per check, a weight per result (and for the
    DNSBL per return code), from the checks' own vocabularies."""

    def per_check(check: Any) -> Record:
        fields = {
            result: Field(_SCORE, f"Added when {check.name} gives {result}: {meaning}.")
            for result, meaning in check.results.items()
        }
        if check.score_keys:
            fields["codes"] = Field(
                MapOf(_SCORE, key=fmt("return code")),
                (
                    f"A weight per return code of the list, instead of `listed`'s "
                    f"({check.score_keys})."
                ),
            )
        return Record(
            name=f"mx-score-{check.name}",
            description=f"Weights of {check.name}'s results.",
            fields=fields,
        )

    return Record(
        name="mx-score-weights",
        description="What each check result adds to the score (a negative weight subtracts).",
        fields={check.name: Field(per_check(check), check.doc) for check in _checks().listed()},
    )


def _flat_weights(weights: dict[str, dict[str, Any]]) -> tuple[tuple[str, str, float], ...]:
    """``{spf: {fail: 4}, dnsbl: {codes: {127.0.0.2: 6}}}`` → (check, key, weight)..."""
    flat: list[tuple[str, str, float]] = []
    for check, table in weights.items():
        for key, weight in table.items():
            if key == "codes":
                flat += [(check, str(code), float(w)) for code, w in weight]
            else:
                flat.append((check, key, float(weight)))
    return tuple(flat)


_SCORE = fmt("score")


MX_SCORING = Record(
    name="mx-scoring",
    description=(
        "A scoring receiver (as rspamd or SpamAssassin in iRedMail and Mailu): every "
        "check result adds its weight to the message's score; at `junk` or more the "
        "message is filed as junk, at `reject` or more it is refused at DATA (554 "
        "5.7.1). The checks' own actions still apply; give them `header` to let the "
        "score alone decide."
    ),
    fields={
        "junk": Field(_SCORE, "File as junk from this score on (never, if absent)."),
        "reject": Field(_SCORE, "Refuse from this score on (never, if absent)."),
        "weights": Field(
            Either(
                (_score_weights(),), build=_flat_weights, noun="a mapping check → {result: weight}"
            ),
            "The weights, per check and result.",
            default={},
        ),
    },
    model=model.Scoring,
)


DMARC_REPORTS = Record(
    name="dmarc-reports",
    description=(
        "DMARC aggregate reports (RFC 9990) this MX mails to the `rua=` addresses of "
        "the domains whose mail it judged; needs a relay on the same host."
    ),
    fields={
        "interval": Field(
            _DURATION_SPEC,
            "One report per policy domain this often (lab time; receivers send daily).",
            default="1d",
        ),
        "org_name": Field(_TEXT, "Who reports (`org_name`); the MX's first domain if absent."),
        "sender": Field(
            fmt("mail address"),
            "The reports' From: and envelope sender; `dmarc-reports@` the first domain if absent.",
        ),
    },
    model=model.DmarcReporting,
)


MX_ARC = Record(
    name="mx-arc",
    description="Whose ARC seals this MX believes (RFC 8617 §7.2); needs `arc` in `checks`.",
    fields={
        "trusted_sealers": Field(
            ListOf(_DOMAIN_NAME, unique=True),
            (
                "Sealing domains (the `d=` of the newest ARC-Seal) whose passing chain may "
                "override a DMARC failure, when the sealer itself saw the message pass (a local "
                "policy override, reported as `trusted_forwarder`)."
            ),
            default=[],
        )
    },
    model=model.ArcTrust,
)
MAILING_LIST = Record(
    name="mailing-list",
    description=(
        "A mailing list (as Mailman beside the MTA): mail to `<name>@` the MX's first "
        "domain goes to every member through the node's relay, from the envelope "
        "sender `<name>-bounces@` that domain (RFC 5321 §3.9.2), so SPF is judged on "
        "the list's domain. Its changes (tag, footer) break the author's DKIM "
        "signature."
    ),
    fields={
        "members": Field(
            ListOf(fmt("mail address"), min_items=1, unique=True),
            "Who receives the list's mail.",
            required=True,
        ),
        "subject_tag": Field(_TEXT, "Put in front of the Subject:, such as `[news]`."),
        "footer": Field(_TEXT, "Text appended to the body (breaks DKIM body hashes)."),
        "rewrite_from": Field(
            fmt("boolean"),
            (
                "The DMARC mitigation: From: becomes `Author via <name> <<name>@domain>` and the "
                "author moves to Reply-To:, so DMARC is judged on the list's domain."
            ),
            default=False,
        ),
        "arc_seal": Field(
            fmt("boolean"),
            (
                "Seal each copy with ARC (RFC 8617) using the node relay's `dkim` key for the "
                "list's domain, recording what the list's MX saw on arrival."
            ),
            default=False,
        ),
    },
    model=model.MailingList,
)
MX = Record(
    name="mx",
    description="A receiving MTA on port 25 for `domains` (RFC 5321); never an open relay.",
    fields={
        "domains": Field(
            ListOf(_DOMAIN_NAME, min_items=1, unique=True),
            "Domains it accepts mail for; each needs an MX or A record in the lab's zones.",
            required=True,
        ),
        "mailboxes": Field(
            ListOf(fmt("local part"), unique=True),
            (
                "Local parts that exist at every one of `domains`; other recipients are refused "
                "(550 5.1.1)."
            ),
            default=[],
        ),
        "checks": Field(
            Either(
                (ListOf(Choice(_checks().names()), unique=True), MX_CHECKS),
                build=_check_policies,
                noun=(
                    "a list of check names (such as [ptr, spf]) or a mapping check → action "
                    "(such as {spf: junk})"
                ),
            ),
            (
                "The receiving checks in order: a list of check names (each costs its default) or "
                "a mapping check → action."
            ),
            default=[],
        ),
        "dnsbl": Field(
            ListOf(_DOMAIN_NAME, unique=True),
            "Blocklist zones to query; each must be served by a `dnsbl` service.",
            default=[],
        ),
        "hostname": Field(
            _DOMAIN_NAME,
            "The name in its greeting and Received: headers (the node's name if absent).",
        ),
        "greylist": Field(
            _DURATION_SPEC,
            (
                "Defer a new (client, sender, recipient) with 450 4.7.1 until this much time has "
                "passed (no greylisting if absent)."
            ),
        ),
        "tls": Field(fmt("boolean"), "Offer STARTTLS (RFC 3207).", default=True),
        "max_size": Field(
            fmt("size"), "Largest message accepted, announced with SIZE (RFC 1870).", default="10M"
        ),
        "dmarc_discovery": Field(
            Choice(get_args(model.DmarcDiscovery)),
            (
                "How DMARC finds the organisational domain: RFC 9989's DNS tree walk or the older "
                "public suffix list."
            ),
            default="treewalk",
        ),
        "down": Field(
            fmt("boolean"),
            "Start with the service stopped (connections are refused), for outage labs.",
            default=False,
        ),
        "scoring": Field(
            MX_SCORING, "Combine the check results into a score with junk and reject thresholds."
        ),
        "forward": Field(
            MapOf(fmt("mail address"), key=fmt("local part")),
            (
                'Aliases (RFC 5321 §3.9.1): local part → address. The key `"*"` is a catch-all: '
                "every local part that is neither a mailbox nor another alias goes there. A target "
                "that is a mailbox of this mx is stored here at once; any other target is sent on "
                "by the node's relay, envelope sender unchanged."
            ),
            default={},
        ),
        "dmarc_reports": Field(DMARC_REPORTS, "Send DMARC aggregate reports (RFC 9990)."),
        "backup": Field(
            fmt("boolean"),
            (
                "A backup (secondary) MX for `domains`: it knows no mailboxes, accepts mail for "
                "any address at them, queues it and its relay delivers it to a more preferred MX "
                "of the domain (RFC 5321 §5.1: a host never sends to itself or a less preferred "
                "MX). Its checks still run; without checks it accepts whatever anyone sends."
            ),
            default=False,
        ),
        "trusted_clients": Field(
            ListOf(fmt("client"), unique=True),
            (
                "Clients (nodes, or addresses such as 192.0.2.25 or 192.0.2.0/24) whose mail skips "
                "every receiving check, as a primary MX trusts its own backup MX (Postfix's "
                "`mynetworks`): what the backup let in is let in here."
            ),
            default=[],
        ),
        "arc": Field(MX_ARC, "Trust ARC seals from named intermediaries (RFC 8617 §7.2)."),
        "lists": Field(
            MapOf(MAILING_LIST, key=fmt("local part")),
            "Mailing lists hosted here: local part → list (needs a relay on the node).",
            default={},
        ),
    },
    model=model.MxService,
)


SUBMISSION = Record(
    name="submission",
    description=(
        "A message submission agent (RFC 6409): 587 with STARTTLS, 465 with implicit "
        "TLS (RFC 8314); authenticated users' mail goes to the node's relay."
    ),
    fields={
        "users": Field(
            MapOf(_PASSWORD, key=fmt("mail address"), min_items=1),
            "Who may submit: address → password.",
            required=True,
        ),
        "ports": Field(
            ListOf(fmt("port"), min_items=1, unique=True),
            "Ports to listen on; 465 speaks implicit TLS, the others STARTTLS.",
            default=[587, 465],
        ),
        "hostname": Field(_DOMAIN_NAME, "The name in its greeting (the node's name if absent)."),
    },
    model=model.SubmissionService,
)


SMARTHOST = Record(
    name="smarthost",
    description=(
        "Hand every message to another relay's submission service instead of "
        "delivering it to the recipient's MX."
    ),
    fields={
        "host": Field(_NODE, "The node that runs the submission service.", required=True),
        "port": Field(fmt("port"), "Its submission port.", default=587),
        "user": Field(_TEXT, "User name for AUTH."),
        "password": Field(_PASSWORD, "Password for AUTH."),
    },
    rules=(Together(("user", "password"), "AUTH needs both"),),
    model=model.Smarthost,
)


RELAY = Record(
    name="relay",
    description=(
        "An outbound MTA with a queue: looks up the recipient's MX and delivers, "
        "retrying temporary failures (RFC 5321 §4.5.4.1) and bouncing the rest."
    ),
    fields={
        "retry": Field(
            ListOf(_DURATION_SPEC, min_items=1),
            "Waits between attempts; the last repeats until `give_up`.",
            default=["5m", "30m", "2h"],
        ),
        "give_up": Field(
            _DURATION_SPEC,
            "Bounce a message still undelivered this long after it was queued.",
            default="5d",
        ),
        "warn_after": Field(
            _DURATION_SPEC, "Send the sender a delay notice (DSN) after this long.", default="4h"
        ),
        "dkim": Field(
            MapOf(fmt("selector"), key=_DOMAIN_NAME),
            (
                "Sign mail from these domains (RFC 6376): domain → selector; the key is published "
                "at `selector._domainkey.domain`."
            ),
            default={},
        ),
        "smarthost": Field(SMARTHOST, "Send everything through this relay instead."),
        "hostname": Field(
            _DOMAIN_NAME, "The name it gives in HELO and Received: (the node's name if absent)."
        ),
        "dkim_publish": Field(
            fmt("boolean"),
            (
                "Publish each `dkim` key in the lab DNS at start; false when a lab task asks the "
                "student to publish it."
            ),
            default=True,
        ),
    },
    model=model.RelayService,
)


MAILBOX = Record(
    name="mailbox",
    description="Mailboxes read by their owners (the MDA's side: IMAP on 143).",
    fields={
        "users": Field(
            MapOf(_PASSWORD, key=fmt("local part")),
            "Mailbox owners: local part → password.",
            default={},
        )
    },
    model=model.MailboxService,
)


POSTFIX = Record(
    name="postfix",
    description=(
        "Run this host's `mx`, `submission` and `relay` with a private Postfix "
        "instance configured from their fields (mininet backend only; see "
        "docs/postfix.md)."
    ),
    fields={
        "main_cf": Field(
            MapOf(_TEXT, key=_TEXT),
            "main.cf settings written after the generated ones.",
            default={},
        )
    },
    model=model.PostfixService,
)
DOVECOT = Record(
    name="dovecot",
    description=(
        "Run this host's `mailbox` (IMAP, POP3), local delivery (LMTP) and the "
        "submission service's SASL with a private Dovecot (mininet backend only)."
    ),
    fields={
        "conf": Field(
            MapOf(_TEXT, key=_TEXT),
            "dovecot.conf settings written after the generated ones (top-level "
            "names such as `disable_plaintext_auth`; no `section { }` blocks).",
            default={},
        )
    },
    model=model.DovecotService,
)
SERVICES = Record(
    name="services",
    description=(
        "What runs on a host. Each service is a mapping of its settings (`{}` for the defaults)."
    ),
    fields={
        "dns": Field(DNS, "An authoritative DNS server (and the lab's resolver)."),
        "dnsbl": Field(DNSBL, "A DNS blocklist."),
        "mx": Field(MX, "A receiving MTA on port 25."),
        "submission": Field(SUBMISSION, "A submission server (587, 465)."),
        "relay": Field(RELAY, "An outbound MTA with a queue."),
        "mailbox": Field(MAILBOX, "Mailboxes (IMAP)."),
        "postfix": Field(POSTFIX, "Postfix in place of mx, submission and relay (mininet)."),
        "dovecot": Field(DOVECOT, "Dovecot in place of mailbox (mininet)."),
    },
    model=model.Services,
)


NODE = Record(
    name="node",
    description="A host (one address, a gateway router, services) or a router (links, firewall).",
    fields={
        "kind": Field(Choice(get_args(model.NodeKind)), "What the node is.", required=True),
        "ip": Field(fmt("interface address"), "The host's address on its LAN."),
        "gateway": Field(
            _NODE, "The router the host sends everything off its LAN to (hosts only)."
        ),
        "firewall": Field(
            ListOf(FIREWALL_RULE), "The router's forwarding rules, first match wins.", default=[]
        ),
        "services": Field(SERVICES, "Services the host runs.", default={}),
        "title": Field(_TEXT, "One line saying what the node stands for."),
    },
    rules=(
        RequiredWhen("ip", "kind", ("host",), "a host needs an address"),
        OnlyWhen("ip", "kind", ("host",), "routers get their addresses from the layout"),
        OnlyWhen("gateway", "kind", ("host",), "routers reach each other through `links`"),
        OnlyWhen(
            "services", "kind", ("host",), "routers only forward packets; run services on a host"
        ),
        OnlyWhen("firewall", "kind", ("router",), "only routers forward packets"),
    ),
    model=model.Node,
)


SETTINGS = Record(
    name="settings",
    description="Lab-wide settings.",
    fields={
        "time_scale": Field(
            fmt("positive number"),
            "Lab seconds per real second: 60 makes a lab minute pass in a second.",
            default=60,
        ),
        "resolver": Field(
            fmt("IPv4 address"),
            (
                "Address of the host (running `dns`) every node asks; if absent and exactly one "
                "host runs `dns`, that one."
            ),
        ),
        "connect_timeout": Field(
            _DURATION_SPEC,
            "How long a client waits for a connection whose packets are dropped.",
            default="30s",
        ),
        "outside": Field(
            _NODE,
            (
                "Router where the neutral outside client attaches (a real tool on the machine "
                "under `maillab up`)."
            ),
        ),
        "skip_checks": Field(
            ListOf(fmt("identifier"), unique=True),
            (
                "Meaning checks (by name, listed in this reference) this topology is exempt from: "
                "for zones broken on purpose, e.g. an MX target without an address in a "
                "troubleshooting lab or a conformance suite's data."
            ),
            default=[],
        ),
    },
    model=model.Settings,
)


TOPOLOGY = Record(
    name="topology",
    description="The top level of a topology file.",
    fields={
        "name": Field(
            fmt("identifier"), "Short name used in commands and file names.", required=True
        ),
        "title": Field(_TEXT, "One line shown to students."),
        "settings": Field(SETTINGS, "Lab-wide settings.", default={}),
        "nodes": Field(
            MapOf(NODE, key=_NODE, name_field="name"), "Every host and router, by name.", default={}
        ),
        "links": Field(
            ListOf(ListOf(_NODE, min_items=2, max_items=2)),
            "Router-to-router links, each a pair of router names.",
            default=[],
        ),
        "zones": Field(
            MapOf(fmt("zone text"), key=_DOMAIN_NAME),
            "DNS zones by origin, in zone-file syntax; each must be served by a `dns` service.",
            default={},
        ),
    },
    model=model.Topology,
)


def records(root: Record | None = None) -> list[tuple[Record, str]]:
    """Every record of the table with the key path where it first appears."""
    return [
        (spec, where) for spec, where in named_specs(root or TOPOLOGY) if isinstance(spec, Record)
    ]


# -- JSON Schema ----------------------------------------------------------------------


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a topology file."""
    return document_schema(TOPOLOGY, {"title": "maillab topology"}, inline_root=True)


def render_schema() -> str:
    """``docs/topology.schema.json``, as committed."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


# -- Markdown reference -------------------------------------------------------------


EXAMPLE = """\
name: home-isp
title: Sending from a home connection
settings: {time_scale: 60, resolver: 198.51.100.53}
nodes:
  laptop:   {kind: host, ip: 100.64.10.20/24, gateway: isp}
  isp:
    kind: router
    firewall:
      - {action: drop, proto: tcp, dport: 25, src: 100.64.0.0/10,
         note: "residential customers may not send on port 25"}
  internet: {kind: router}
  ns:       {kind: host, ip: 198.51.100.53/24, gateway: internet,
             services: {dns: {zones: [qq.example, 113.0.203.in-addr.arpa]}}}
  mx-qq:    {kind: host, ip: 203.0.113.25/24, gateway: internet,
             services: {mx: {domains: [qq.example], mailboxes: [bob],
                             checks: [ptr, dnsbl, spf, dkim, dmarc]}}}
  smtp-isp: {kind: host, ip: 192.0.2.25/24, gateway: isp,
             services: {submission: {users: {alice@home.example: secret}},
                        relay: {retry: [5m, 30m, 2h], give_up: 5d}}}
links:
  - [isp, internet]
zones:
  qq.example: |
    @      MX  10 mx
    mx     A   203.0.113.25
    @      TXT "v=spf1 mx -all"
    _dmarc TXT "v=DMARC1; p=reject"
  113.0.203.in-addr.arpa: |
    25     PTR mx.qq.example.
"""


def render_reference() -> str:
    """``docs/topology-reference.md``, as committed."""
    # Imported here: validate needs nothing from this module, but keeping the
    # import local keeps `import sim.topology.schema` light for the loader.
    from sim.topology.validate import CHECKS

    out: list[str] = [
        "# Topology file reference",
        "",
        "<!-- Generated by `python -m sim.topology.schema` from sim/topology/schema.py;"
        " do not edit. -->",
        "",
        "A topology file is YAML: nodes (hosts and routers), router-to-router links, "
        "services on hosts, firewall rules on routers and DNS zones in zone-file syntax. "
        "`maillab validate FILE` checks a file in two layers and reports every problem as "
        "`PATH:LINE:COL: key.path: message`:",
        "",
        "1. **Structure**: every key below, its type and allowed values. An unknown key is "
        "an error (with a suggestion when it looks like a typo), so is a duplicate key.",
        "2. **Meaning**: the named checks listed at the end (addresses, gateways, links, "
        "zones, MX targets, services that refer to each other, firewall rules).",
        "",
        "Editors can check files as they are typed with the JSON Schema in "
        "[topology.schema.json](topology.schema.json) (for example with the YAML language "
        "server: `# yaml-language-server: $schema=../docs/topology.schema.json`).",
        "",
        "## Example",
        "",
        "```yaml",
        EXAMPLE.rstrip("\n"),
        "```",
        "",
    ]
    out += markdown_sections(TOPOLOGY)
    out += ["## Value formats", ""]
    used = {s.format.name for s in iter_specs(TOPOLOGY) if isinstance(s, Scalar)}
    for value in FORMATS.values():
        if value.name not in used:
            continue
        example = value.example
        shown = f"\n\n```yaml\n{example}\n```" if "\n" in example else f" Example: `{example}`."
        written = f"{value.written[0].upper()}{value.written[1:]}"
        out += [f"### {value.name}", "", f"{written}.{shown}", ""]
    out += [
        "## Meaning checks",
        "",
        "Run once the structure is right (checks that depend on a part with a structural "
        "problem wait until it is fixed):",
        "",
    ]
    for name, doc in CHECKS.items():
        out.append(f"* `{name}`: {doc}")
    out.append("")
    return "\n".join(out)


# -- command line ---------------------------------------------------------------------


def _docs_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "docs"


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or, with ``--check``, compare) the schema and the reference."""
    parser = argparse.ArgumentParser(
        prog="python -m sim.topology.schema",
        description="Regenerate docs/topology.schema.json and docs/topology-reference.md.",
    )
    parser.add_argument("--check", action="store_true", help="only report stale files")
    parser.add_argument("--docs", type=Path, default=_docs_dir(), help="the docs directory")
    args = parser.parse_args(argv)
    stale = 0
    for name, text in (
        ("topology.schema.json", render_schema()),
        ("topology-reference.md", render_reference()),
    ):
        target: Path = args.docs / name
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            continue
        if args.check:
            print(f"{target}: stale; run python -m sim.topology.schema", file=sys.stderr)
            stale += 1
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target}")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
