"""Router firewalls compiled to iptables, for the mininet backend.

:func:`compile_router` turns one router's rules into ``iptables`` argument
lists (without the leading ``iptables``) that give the semantics of
:mod:`sim.topology.firewall` in that router's network namespace:

* Rules live in a chain of their own, ``MAILLAB-FWD``, jumped to from
  FORWARD, so that cleanup removes one chain. A router forwards a packet
  through FORWARD only, never through INPUT or OUTPUT: packets to and from
  the router itself are not judged, as in the model.
* The chain starts with ``-m conntrack --ctstate RELATED,ESTABLISHED -j
  ACCEPT`` (ESTABLISHED,RELATED in the order ``iptables -S`` prints): only
  the first packet of a connection reaches the rules (the model's
  "stateful" clause). Rules follow in order, each ending in ACCEPT,
  DROP or REJECT, so the first match wins; a packet that falls off the end
  returns to FORWARD, whose policy in a fresh namespace is ACCEPT.
* ``direction`` becomes interface matches: ``out`` is ``-i`` one of the
  router's LAN interfaces and ``-o`` one of its link interfaces; ``in`` the
  reverse. iptables takes one interface per match, so a rule is emitted once
  per (LAN, link) pair; a router without LANs or without links gets none,
  as no packet can travel that way.
* iptables needs ``-p tcp`` or ``-p udp`` before ``--dport``, and REJECT's
  ``tcp-reset`` only exists with ``-p tcp``. So a ``proto: any`` rule with a
  port becomes a tcp rule and a udp rule; a ``proto: any`` REJECT with
  ``tcp-reset`` becomes a tcp rule answering with a reset followed by a rule
  for everything else answering ICMP port unreachable (tcp never reaches
  it); a udp or icmp REJECT with ``tcp-reset`` answers port unreachable
  (:func:`sim.topology.firewall.effective_reject_with`). An icmp rule with a port
  can match nothing and emits nothing.
* Every rule carries ``-m comment --comment "maillab:<topology>:<tag>"``
  (``jump``, ``established``, ``rule1``, ``rule2``… numbered from 1 as in
  verdict explanations) so that :func:`cleanup_commands` finds exactly
  maillab's rules.

The argument order is the one ``iptables -S`` prints (``-s -d -i -o -p -m
tcp --dport``), so a listing reads back equal to what was applied.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable

from sim.errors import NetworkError
from sim.topology.firewall import effective_reject_with
from sim.topology.graph import Interface, LabNetwork
from sim.topology.model import FirewallRule

__all__ = [
    "CHAIN",
    "COMMENT_PREFIX",
    "chain_name",
    "cleanup_commands",
    "compile_router",
    "rule_comment",
]

CHAIN = "MAILLAB-FWD"
COMMENT_PREFIX = "maillab:"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

InterfaceName = Callable[[Interface], str]


def chain_name() -> str:
    """The chain holding maillab's forwarding rules, jumped to from FORWARD."""
    return CHAIN


def rule_comment(topology: str, tag: str) -> str:
    """``maillab:<topology>:<tag>``; the topology name is reduced to safe
    characters (the comment match allows 256 bytes)."""
    return f"{COMMENT_PREFIX}{_UNSAFE.sub('_', topology)[:200]}:{tag}"


def _comment(topology: str, tag: str) -> list[str]:
    return ["-m", "comment", "--comment", rule_comment(topology, tag)]


def _interface_pairs(
    network: LabNetwork, router: str, rule: FirewallRule, ifname: InterfaceName
) -> list[tuple[str | None, str | None]]:
    if rule.direction == "any":
        return [(None, None)]
    lans: list[str] = []
    links: list[str] = []
    for iface in network.interfaces(router):
        kind = network.segment(iface.segment).kind
        (lans if kind == "lan" else links).append(ifname(iface))
    if rule.direction == "out":
        return [(lan, link) for lan in lans for link in links]
    return [(link, lan) for link in links for lan in lans]


def _protos(rule: FirewallRule) -> list[str | None]:
    """The ``-p`` values one model rule needs (``None``: no ``-p``)."""
    if rule.proto != "any":
        if rule.proto == "icmp" and rule.dport is not None:
            return []
        return [rule.proto]
    if rule.dport is not None:
        return ["tcp", "udp"]
    if rule.action == "reject" and rule.reject_with == "tcp-reset":
        return ["tcp", None]  # None: the rest, after tcp has matched
    return [None]


def _target(rule: FirewallRule, proto: str | None) -> list[str]:
    if rule.action == "accept":
        return ["-j", "ACCEPT"]
    if rule.action == "drop":
        return ["-j", "DROP"]
    answer = effective_reject_with(rule, proto or "any")
    return ["-j", "REJECT", "--reject-with", answer]


def compile_router(
    network: LabNetwork, router: str, *, ifname: InterfaceName | None = None
) -> list[list[str]]:
    """The iptables argument lists that realise ``router``'s firewall, in order.

    Run each as ``iptables ARGS...`` inside the router's namespace. The first
    two create the chain and the jump from FORWARD. A router without rules
    needs nothing: the result is empty. ``ifname`` maps an interface to the
    name it has in the namespace (default: its ``name``, ``eth0``…).
    """
    node = network.node(router)
    if node.kind != "router":
        raise NetworkError(f"{router} is not a router: only routers have a firewall")
    if not node.firewall:
        return []
    name = ifname if ifname is not None else (lambda iface: iface.name)
    topo = network.topology.name
    out: list[list[str]] = [
        ["-N", CHAIN],
        ["-A", "FORWARD", *_comment(topo, "jump"), "-j", CHAIN],
        [
            "-A",
            CHAIN,
            *["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"],
            *_comment(topo, "established"),
            "-j",
            "ACCEPT",
        ],
    ]
    for index, rule in enumerate(node.firewall):
        for proto in _protos(rule):
            for in_if, out_if in _interface_pairs(network, router, rule, name):
                argv = ["-A", CHAIN]
                if rule.src is not None:
                    argv += ["-s", str(rule.src)]
                if rule.dst is not None:
                    argv += ["-d", str(rule.dst)]
                if in_if is not None:
                    argv += ["-i", in_if]
                if out_if is not None:
                    argv += ["-o", out_if]
                if proto is not None:
                    argv += ["-p", proto]
                if rule.dport is not None:
                    low, high = rule.dport
                    ports = str(low) if low == high else f"{low}:{high}"
                    argv += ["-m", str(proto), "--dport", ports]
                argv += _comment(topo, f"rule{index + 1}")
                argv += _target(rule, proto)
                out.append(argv)
    return out


def _is_maillab(argv: list[str]) -> bool:
    for i, arg in enumerate(argv[:-1]):
        if arg == "--comment" and argv[i + 1].startswith(COMMENT_PREFIX):
            return True
    return False


def cleanup_commands(listing: str) -> list[list[str]]:
    """Given ``iptables -S`` output, the argument lists that remove maillab's
    rules and chain and nothing else: every rule in a built-in chain whose
    comment starts with ``maillab:`` (the jump), then the chain itself."""
    out: list[list[str]] = []
    has_chain = False
    for line in listing.splitlines():
        argv = shlex.split(line)
        if argv[:2] == ["-N", CHAIN]:
            has_chain = True
        elif len(argv) > 2 and argv[0] == "-A" and argv[1] != CHAIN and _is_maillab(argv):
            out.append(["-D", *argv[1:]])
    if has_chain:
        out += [["-F", CHAIN], ["-X", CHAIN]]
    return out
