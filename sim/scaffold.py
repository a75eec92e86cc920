"""``maillab new topology NAME`` and ``maillab new lab NAME``: starting points.

An instructor starts a topology or a lab from a file that already works: it
validates, it runs, and the lab passes ``maillab check`` as written. The
comments in the files say what to change.

* ``maillab new topology NAME [--dir topologies]`` writes ``DIR/NAME.yaml``:
  a small internet with a DNS server, a receiving MX (for qq.example, with
  bob's mailbox, checking PTR and SPF), a mail server elsewhere that sends
  to it (``mta``, at example.net) and a laptop behind a residential ISP
  that drops outbound port 25.
* ``maillab new lab NAME [--topology T] [--dir labs]`` writes
  ``DIR/NAME.yaml``: an explanation, two experiments, a question, a task
  (publish an SPF record) with its check, hints and reference solution, and
  a checkpoint. The topology ``T`` (by default the lab's name without a
  leading number) is looked up where the lab will look for it,
  ``DIR/../topologies/T.yaml``; when it does not exist it is scaffolded too.
  An existing topology is read for the nodes, domains and addresses the lab
  needs (a host that sends, an MX with a mailbox that checks SPF, the DNS
  zone of the sender's domain); a lab on a hand-written topology validates,
  and ``maillab check`` says whether it passes.

Nothing is ever overwritten. Bad names and unsuitable topologies are one
clear line and exit status 2 (a :class:`ScaffoldError`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim.errors import InputError, SimError
from sim.fastclass import dataclass

if TYPE_CHECKING:
    from sim.topology.model import MxService, Node, Topology

__all__ = [
    "Roles",
    "ScaffoldError",
    "find_roles",
    "lab_text",
    "new_lab",
    "new_topology",
    "register",
    "topology_text",
]

#: A topology name: an identifier the topology schema accepts and a file name.
TOPOLOGY_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
#: A lab name: an optional number that orders the file (``11-``), then an id.
LAB_NAME = re.compile(r"^(?:(\d{1,3})-)?([a-z][a-z0-9_-]{0,62})$")


class ScaffoldError(SimError):
    """A name or a target the scaffolder cannot use; the message says why."""


# -- topology -----------------------------------------------------------------------

_TOPOLOGY = """\
# {name}: a topology written by `maillab new topology`.
#
# It validates and runs as it is: try `maillab validate {path}` and
# `maillab graph {path}`. Every key is described in docs/topology-reference.md.
#
# The cast: `mta`, a mail server of example.net on the internet, sends to
# bob@qq.example, whose MX (`mx`) checks the sender's PTR record and SPF.
# `laptop` sits behind `isp`, a residential ISP that drops outbound port 25.
# `ns` answers every DNS question (resolver and authoritative server).
#
# Make it yours: rename the domains, add hosts and services (submission,
# relay, dnsbl, mailbox), more routers and links, firewall rules. Use
# reserved names and addresses (.example, .test; 192.0.2.0/24,
# 198.51.100.0/24, 203.0.113.0/24; home lines in 198.51.100.192/26, not
# 100.64.0.0/10, which is carrier-grade NAT's inside, RFC 6598).
name: {name}
title: "{name}: a starting point"
settings:
  time_scale: 60          # lab seconds per real second: retries of hours take seconds
  resolver: 198.51.100.53 # the DNS server every node asks (ns, below)
  connect_timeout: 30s    # how long (lab time) a client waits when packets are dropped
  outside: internet       # where the neutral `outside` host (maillab up) attaches

nodes:
  internet:
    kind: router
    title: the internet
  isp:
    kind: router
    title: a residential ISP's edge router
    firewall:
      # Rules are checked in order; the first that matches decides.
      - action: drop
        proto: tcp
        dport: 25
        src: 198.51.100.192/26
        direction: out
        note: residential customers may not send on port 25
  laptop:
    kind: host
    title: a laptop on a residential line
    ip: 198.51.100.200/27
    gateway: isp
  ns:
    kind: host
    title: the DNS every node asks (resolver and authoritative)
    ip: 198.51.100.53/25
    gateway: internet
    services:
      dns:
        zones: [qq.example, example.net, 2.0.192.in-addr.arpa, 113.0.203.in-addr.arpa]
  mx:
    kind: host
    title: qq.example's mail exchanger (mx.qq.example)
    ip: 203.0.113.25/24
    gateway: internet
    services:
      mx:
        domains: [qq.example]
        mailboxes: [bob]
        hostname: mx.qq.example
        # What a failing check costs: reject (5xx), defer (4xx), junk, header.
        checks: {{ptr: reject, spf: reject}}
  mta:
    kind: host
    title: a mail server of example.net, elsewhere on the internet
    ip: 192.0.2.10/24
    gateway: internet

links:
  - [isp, internet]

zones:
  qq.example: |
    @        MX   10 mx
    mx       A    203.0.113.25
  example.net: |
    mta      A    192.0.2.10
  # Reverse zones map addresses back to names (PTR); the holder of the
  # address block, not the domain's owner, writes them.
  2.0.192.in-addr.arpa: |
    10       PTR  mta.example.net.
  113.0.203.in-addr.arpa: |
    25       PTR  mx.qq.example.
"""


def topology_text(name: str, path: str = "topologies/NAME.yaml") -> str:
    """The text of a new topology called ``name``."""
    return _TOPOLOGY.format(name=name, path=path)


def _check_topology_name(name: str) -> None:
    if not TOPOLOGY_NAME.match(name):
        raise ScaffoldError(
            f"{name!r} is not a topology name: use lower-case letters, digits, '-' and '_', "
            "starting with a letter (at most 63 characters)"
        )


def _refuse_existing(*paths: Path) -> None:
    for path in paths:
        if path.exists():
            raise ScaffoldError(f"{path} already exists: not overwritten (choose another name)")


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as out:  # "x": never overwrite
            out.write(text)
    except FileExistsError:
        raise ScaffoldError(f"{path} already exists: not overwritten") from None
    except OSError as err:
        raise ScaffoldError(f"cannot write {path}: {err.strerror or err}") from None


def _validate_written(path: Path) -> None:
    """A scaffold that does not validate is a bug of ours, not the user's:
    say so in one line rather than leave a broken file unexplained."""
    from sim.validation import validate_path

    problems = validate_path(path)
    if problems:
        raise ScaffoldError(f"{path} was written but does not validate: {problems[0]}")


def new_topology(name: str, directory: str | Path = "topologies") -> Path:
    """Write ``directory/name.yaml``; returns its path."""
    _check_topology_name(name)
    path = Path(directory) / f"{name}.yaml"
    _refuse_existing(path)
    _write(path, topology_text(name, str(path)))
    _validate_written(path)
    return path


# -- what a lab needs from its topology ---------------------------------------------------


@dataclass(frozen=True)
class Roles:
    """The nodes, names and addresses a scaffolded lab uses."""

    sender: str
    sender_ip: str
    sender_domain: str
    dns_node: str
    mx_node: str
    rcpt: str
    mx_host: str | None  # the MX record's target, when the domain has one

    @property
    def rcpt_domain(self) -> str:
        return self.rcpt.partition("@")[2]


def _fqdn(name: str) -> str:
    return name.lower().rstrip(".") + "."


def _zone_records(origin: str, text: str) -> list[tuple[str, str, str]]:
    """(owner, type, data) of a zone's records; [] when it does not parse
    (validation reports that, with its line)."""
    from sim.topology.zones import ZoneSyntaxError, parse_zone

    try:
        records = parse_zone(_fqdn(origin), text)
    except (ZoneSyntaxError, ValueError):
        return []
    import dnslib

    return [
        (str(rr.rname).lower(), dnslib.QTYPE.get(rr.rtype), str(rr.rdata).strip()) for rr in records
    ]


class _Zones:
    """The topology's zone records, for the questions the scaffolder asks."""

    def __init__(self, topology: Topology) -> None:
        self.text = {_fqdn(origin): text for origin, text in topology.zones}
        self.records = {origin: _zone_records(origin, text) for origin, text in self.text.items()}

    def lookup(self, name: str, rtype: str) -> list[str]:
        owner = _fqdn(name)
        return [
            d for recs in self.records.values() for o, t, d in recs if o == owner and t == rtype
        ]

    def forward_zones_with(self, address: str) -> list[str]:
        """Forward zones that hold an A record for ``address``."""
        return [
            origin
            for origin, recs in self.records.items()
            if not origin.endswith(".arpa.") and any(t == "A" and d == address for _, t, d in recs)
        ]


def _checks_of(node: Node) -> set[str]:
    mx = node.services.mx
    return {c.check for c in mx.checks} if mx is not None else set()


def _ptr_name(address: str) -> str:
    return ".".join(reversed(address.split("."))) + ".in-addr.arpa"


def _unsuitable_sender(
    topology: Topology, zones: _Zones, sender: Node, mx_node: Node, mx: MxService
) -> str | None:
    """Why ``sender`` would not get a message into ``mx`` as the lab
    expects (delivered), judged from the topology alone; None when it would."""
    from sim.topology.firewall import Packet, evaluate
    from sim.topology.graph import build_network

    assert sender.ip is not None and mx_node.ip is not None
    address = sender.ip.ip
    verdict = evaluate(
        build_network(topology), sender.name, Packet(address, mx_node.ip.ip, "tcp", 25)
    )
    if not verdict.passed:
        return f"its port-25 traffic is stopped ({verdict.explain()})"
    checks = {c.check for c in mx.checks}
    ptr = zones.lookup(_ptr_name(str(address)), "PTR")
    if checks & {"ptr", "fcrdns", "helo"} and not ptr:
        return "its address has no PTR record"
    if checks & {"fcrdns", "helo"} and str(address) not in zones.lookup(ptr[0], "A"):
        return "its PTR name does not resolve back to it"
    if "dnsbl" in checks:
        lists = {z.lower().rstrip(".") for z in mx.dnsbl}
        for node in topology.hosts():
            bl = node.services.dnsbl
            if bl is None or bl.zone.lower().rstrip(".") not in lists:
                continue
            if any(address in listing.net for listing in bl.listed):
                return f"its address is listed on {bl.zone}"
    return None


def find_roles(topology: Topology) -> Roles:
    """The sender, its domain and DNS server, and the receiving MX of
    ``topology``; raises :class:`ScaffoldError` naming what is missing.

    The lab's experiments expect a plain delivery with SPF ``none`` before
    the task and ``pass`` after it, so the sender must get through the
    receiver's other checks: its port 25 open, a PTR that resolves back,
    no blocklist listing.
    """
    hosts = {n.name: n for n in topology.hosts()}
    what = f"topology {topology.name}"

    def prefer(name: str, candidates: list[str]) -> list[str]:
        return [c for c in candidates if c == name] + [c for c in candidates if c != name]

    receivers = [
        n.name
        for n in hosts.values()
        if n.services.mx is not None
        and n.services.mx.mailboxes
        and not n.services.mx.down
        and n.ip is not None
    ]
    if not receivers:
        raise ScaffoldError(f"{what} has no host running an mx service with a mailbox to send to")
    checking = [r for r in receivers if "spf" in _checks_of(hosts[r])]
    if not checking:
        raise ScaffoldError(
            f"{what}: no mx runs the spf check, which the lab's task tests "
            f"(add `spf: reject` to the checks of the mx on {receivers[0]})"
        )
    mx_node = prefer("mx", checking)[0]
    mx = hosts[mx_node].services.mx
    assert mx is not None
    rcpt_domain = mx.domains[0].lower().rstrip(".")
    zones = _Zones(topology)
    mx_hosts = [d.split()[-1].rstrip(".") for d in zones.lookup(rcpt_domain, "MX")]

    reasons: list[str] = []
    senders = [n.name for n in hosts.values() if not n.services.names() and n.ip is not None]
    for sender in prefer("mta", senders):
        node = hosts[sender]
        assert node.ip is not None
        address = str(node.ip.ip)
        domains = [
            origin
            for origin in zones.forward_zones_with(address)
            if origin != _fqdn(rcpt_domain)
            and not any("v=spf1" in d for d in zones.lookup(origin, "TXT"))
        ]
        served = [
            (origin, n.name)
            for origin in domains
            for n in hosts.values()
            if n.services.dns is not None and origin in {_fqdn(z) for z in n.services.dns.zones}
        ]
        if not served:
            reasons.append(f"{sender}: no served zone without SPF has an A record for {address}")
            continue
        problem = _unsuitable_sender(topology, zones, node, hosts[mx_node], mx)
        if problem is not None:
            reasons.append(f"{sender}: {problem}")
            continue
        origin, dns_node = sorted(served, key=lambda s: s[1] != "ns")[0]
        return Roles(
            sender=sender,
            sender_ip=address,
            sender_domain=origin.rstrip("."),
            dns_node=dns_node,
            mx_node=mx_node,
            rcpt=f"{mx.mailboxes[0]}@{rcpt_domain}",
            mx_host=mx_hosts[0] if mx_hosts else None,
        )
    why = (
        "; ".join(reasons[:3]) + (" ..." if len(reasons) > 3 else "")
        if reasons
        else ("no host without services")
    )
    raise ScaffoldError(
        f"{what} has no host that can be the lab's sender to {mx_node} ({why}); "
        "`maillab new topology` writes a topology that has one"
    )


# -- lab ------------------------------------------------------------------------------------


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(text, ensure_ascii=False)


def _sq(text: str) -> str:
    """A YAML single-quoted scalar: no escapes but a doubled quote."""
    return "'" + text.replace("'", "''") + "'"


def lab_text(lab_id: str, topology: str, roles: Roles) -> str:
    """The text of a new lab ``lab_id`` on ``topology`` with ``roles``."""
    r = roles
    sender_from = f"news@{r.sender_domain}"
    spf_record = f'@ TXT "v=spf1 ip4:{r.sender_ip} -all"'
    mx_expect = (
        f"      - answer_contains: {_q(r.mx_host)}\n" if r.mx_host else "      - answer_count: 0\n"
    )
    send = f"from: {r.sender}, to: {r.rcpt}, mail_from: {sender_from}, subject: {{subject}}"
    hint_what = (
        "An SPF record is a TXT record at the domain itself that starts with `v=spf1`, lists "
        "the allowed senders (`ip4:ADDRESS`) and ends with what to do about everyone else "
        "(`-all`)."
    )
    action = f"dns_add: {{node: {r.dns_node}, zone: {r.sender_domain}, record: {_sq(spf_record)}}}"
    hint_how = f"Add `{spf_record}` to zone {r.sender_domain} on `{r.dns_node}`: `{action}`."
    return f"""\
# {lab_id}: a lab written by `maillab new lab`.
#
# It validates and passes `maillab check` as it is. Make it yours: keep one
# concept per lab, 4 to 10 steps, at least one question and one task, and
# check it again with `maillab validate` and `maillab check`. Every key is
# described in docs/lab-reference.md.
id: {lab_id}
title: {_q(f"Publishing SPF for {r.sender_domain}")}
topology: {topology}
estimated_time: 15m
description: |
  {r.sender} sends mail for {r.sender_domain} to {r.rcpt}. The receiving
  server checks SPF, but {r.sender_domain} publishes no SPF record yet. You
  will publish one and watch the verdict change from none to pass.
goals:
  - A receiver finds a domain's mail server through its MX record (RFC 5321 §5.1).
  - SPF lets a domain list the addresses that may send with it in MAIL FROM (RFC 7208).
  - SPF is published as a TXT record at the domain itself.

steps:
  - id: introduction
    kind: explain
    title: What this lab is about
    text: |
      `{r.sender}` ({r.sender_ip}) is a mail server of **{r.sender_domain}**.
      It delivers to **{r.rcpt}** by itself, in three moves:

      1. it asks the DNS (`{r.dns_node}`) for the MX records of {r.rcpt_domain},
         then for the address of the mail host they name (RFC 5321 §5.1);
      2. it connects to that host, `{r.mx_node}`, on port 25 and speaks SMTP;
      3. `{r.mx_node}` asks the DNS for the TXT records of {r.sender_domain},
         the domain in MAIL FROM, to learn whether {r.sender_ip} may send
         its mail: that is SPF (RFC 7208).

  - id: find-the-mx
    kind: experiment
    title: Find the receiving server
    text: |
      Ask the lab DNS, from `{r.sender}`, for the MX records of
      {r.rcpt_domain}: the number is the preference, the name the mail host.
    run:
      dig: {{from: {r.sender}, name: {r.rcpt_domain}, type: MX}}
    expect:
      - rcode: NOERROR
{mx_expect}
  - id: send-before
    kind: experiment
    title: Send without SPF
    text: |
      Send {r.rcpt} a message from `{r.sender}`. Look at the `check` events
      in the trace: SPF finds no record for {r.sender_domain}, so its
      result is `none`.
    run:
      send: {{{send.format(subject="Before SPF")}}}
    expect:
      - outcome: delivered
      - checks: {{spf: none}}

  - id: which-port
    kind: question
    title: The port between mail servers
    text: |
      On which TCP port did `{r.sender}` connect to `{r.mx_node}`? (The `net`
      event of the trace names it.)
    accept: ["25"]
    wrong:
      - answers: ["587", "465"]
        feedback: |
          Those are submission ports (RFC 6409, RFC 8314), where a mail
          program hands its user's mail to that user's provider. Servers
          deliver to each other on port 25.
    feedback: Look at the `net` event in the trace of the message you sent.
    explanation: |
      Right: 25, the SMTP port (RFC 5321).

  - id: publish-spf
    kind: task
    title: Publish an SPF record for {r.sender_domain}
    text: |
      Add a TXT record at the apex of the zone {r.sender_domain} on
      `{r.dns_node}` that allows {r.sender_ip} and nobody else, then check:
      the check looks the record up and sends another message, whose SPF
      result must be `pass`.
    checks:
      - run:
          dig: {{from: {r.sender}, name: {r.sender_domain}, type: TXT}}
        expect:
          - answer_contains: "v=spf1"
      - run:
          send: {{{send.format(subject="After SPF")}}}
        expect:
          - outcome: delivered
          - checks: {{spf: pass}}
    hints:
      - {_sq(hint_what)}
      - {_sq(hint_how)}
    solution:
      - {action}
    explanation: |
      The receiver now finds the record, sees {r.sender_ip} in it, and SPF
      passes. With `-all`, mail from any other address using
      {r.sender_domain} in MAIL FROM fails SPF (RFC 7208 §4.6.2).

  - id: recap
    kind: checkpoint
    title: Both messages arrived
    checks:
      - expect:
          - mailbox: {{address: {r.rcpt}, min: 2}}
"""


def _lab_parts(name: str) -> tuple[str, str]:
    """(file stem, lab id) of ``name``: ``11-greylisting`` → the file
    ``11-greylisting.yaml`` with id ``greylisting``, as the curriculum's labs."""
    match = LAB_NAME.match(name)
    if not match:
        raise ScaffoldError(
            f"{name!r} is not a lab name: use lower-case letters, digits, '-' and '_', starting "
            "with a letter, optionally after a number that orders the file (`11-greylisting`)"
        )
    return name, match.group(2)


def new_lab(name: str, directory: str | Path = "labs", topology: str | None = None) -> list[Path]:
    """Write ``directory/name.yaml`` (and its topology when that does not
    exist yet); returns the paths written, the lab last."""
    from sim.lab.loader import topology_path

    stem, lab_id = _lab_parts(name)
    topo_name = topology if topology is not None else lab_id
    _check_topology_name(topo_name)
    lab_path = Path(directory) / f"{stem}.yaml"
    topo_path = topology_path(lab_path, topo_name)
    _refuse_existing(lab_path)
    written: list[Path] = []
    if not topo_path.exists():
        written.append(new_topology(topo_name, topo_path.parent))
    from sim.topology import load_topology

    try:
        loaded = load_topology(topo_path)
    except InputError as err:
        raise ScaffoldError(
            f"{topo_path} has problems; fix them first ({err.problems[0]})"
        ) from None
    roles = find_roles(loaded)
    _write(lab_path, lab_text(lab_id, topo_name, roles))
    written.append(lab_path)
    _validate_written(lab_path)
    return written


# -- the command line ----------------------------------------------------------------------


def cmd_new_topology(args: argparse.Namespace) -> int:
    path = new_topology(args.name, args.dir)
    print(f"wrote {path}")
    print(f"next: maillab validate {path}; maillab graph {path}")
    return 0


def cmd_new_lab(args: argparse.Namespace) -> int:
    paths = new_lab(args.name, args.dir, args.topology)
    for path in paths:
        print(f"wrote {path}")
    lab = paths[-1]
    print(f"next: maillab validate {' '.join(str(p) for p in paths)}; maillab check {lab}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``maillab new topology|lab`` to the ``maillab`` subcommands."""
    new: argparse.ArgumentParser = subparsers.add_parser(
        "new", help="start a topology or a lab from a working template"
    )
    kinds = new.add_subparsers(dest="what", metavar="topology|lab", parser_class=type(new))
    kinds.required = True

    topo = kinds.add_parser("topology", help="write topologies/NAME.yaml")
    topo.add_argument("name", metavar="NAME", help="the topology name: a-z, 0-9, - and _")
    topo.add_argument(
        "--dir", default="topologies", metavar="DIR", help="where to write (default: topologies)"
    )
    topo.set_defaults(func=cmd_new_topology)

    lab = kinds.add_parser("lab", help="write labs/NAME.yaml (and its topology if missing)")
    lab.add_argument(
        "name",
        metavar="NAME",
        help="the lab id (a-z, 0-9, - and _), optionally after a number: 11-my-lab",
    )
    lab.add_argument(
        "--topology",
        metavar="NAME",
        help="the topology it runs on (default: the lab's name); scaffolded when missing",
    )
    lab.add_argument("--dir", default="labs", metavar="DIR", help="where to write (default: labs)")
    lab.set_defaults(func=cmd_new_lab)


if __name__ == "__main__":  # pragma: no cover - `maillab new` is the way in
    from sim.cli import main

    sys.exit(main(["new", *sys.argv[1:]]))
