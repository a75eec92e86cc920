"""The ``dkim_publish`` task action: put a signer's public DKIM key in a zone.

A relay provider (or the ISP's mail server) generates a DKIM key pair, keeps
the private half and shows its customer the public half: "publish this TXT
record at ``rc1._domainkey.startup.example``". The customer copies it into
their zone. In the lab the key pair is generated when the lab starts
(:mod:`sim.services.dkimkeys`), so a lab file cannot spell out the value;
this action asks the signer's relay for it (its ``dkim_key`` control
command, as a customer reads a provider's setup page) and adds the record,
while the student still decides *where* it goes and *which* key it is::

    dkim_publish: {node: ns, zone: startup.example, name: rc1._domainkey,
                   signer: relayco, selector: rc1}

``name`` is the owner name the record is published at. It is not derived
from the selector on purpose: a verifier looks for the key at
``<s>._domainkey.<d>`` from the signature's ``s=`` and ``d=`` tags
(RFC 6376 §3.6.2.1), and a key published anywhere else is simply not found
(``permerror``, no key for signature, RFC 6376 §6.1.2). That is a mistake
worth being able to make.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sim.services.dkimkeys import dkim_entries
from sim.topology.model import Topology
from sim.topology.zones import ZoneSyntaxError, fqdn, parse_zone

__all__ = ["dkim_choice", "dkim_problems", "dkim_record", "owner_name", "signer_keys"]


def signer_keys(topology: Topology, signer: str) -> list[tuple[str, str]]:
    """The (domain, selector) pairs ``signer``'s relay signs with."""
    return [(d, s) for node, d, s in dkim_entries(topology) if node.name == signer]


def owner_name(zone: str, name: str) -> str:
    """``name`` as an absolute owner name (relative names are under ``zone``)."""
    name = name.strip()
    if name in ("", "@"):
        return fqdn(zone)
    if name.endswith("."):
        return name.lower()
    return fqdn(f"{name}.{zone}")


def _choose(args: Mapping[str, Any], topology: Topology) -> tuple[tuple[str, str] | None, str]:
    """The (domain, selector) the action means, or None and why not."""
    signer = str(args["signer"])
    try:
        node = topology.node(signer)
    except KeyError:
        hosts = ", ".join(n.name for n in topology.hosts() if n.services.relay is not None)
        return None, f"no node {signer!r} in topology {topology.name} (signers: {hosts or 'none'})"
    try:
        pairs = signer_keys(topology, signer)
    except ValueError as err:
        return None, str(err)
    if node.services.relay is None or not pairs:
        return None, f"{signer} signs nothing: it has no relay with dkim keys"
    domain = str(args.get("domain") or args["zone"]).strip().lower().rstrip(".")
    selector = str(args.get("selector") or "").strip().lower()
    mine = [(d, s) for d, s in pairs if d == domain]
    known = ", ".join(f"{d} (selector {s})" for d, s in pairs)
    if not mine:
        return None, f"{signer} does not sign for {domain}; it signs for {known}"
    if selector:
        if (domain, selector) not in mine:
            return None, (
                f"{signer} has no key for {domain} with selector {selector}; it signs with {known}"
            )
        return (domain, selector), ""
    if len(mine) > 1:
        return None, f"{signer} has several keys for {domain} ({known}): name the selector"
    return mine[0], ""


def dkim_problems(args: Mapping[str, Any], topology: Topology) -> list[tuple[tuple[str, ...], str]]:
    """What is wrong with a ``dkim_publish`` action on ``topology``."""
    problems: list[tuple[tuple[str, ...], str]] = []
    chosen, why = _choose(args, topology)
    if chosen is None:
        problems.append((("signer",), why))
    try:
        # A placeholder TXT proves the owner name is a valid name in the zone.
        parse_zone(fqdn(str(args["zone"])), f'{args["name"]} TXT "v=DKIM1; p="')
    except ZoneSyntaxError as err:
        problems.append((("name",), f"not a usable owner name: {err}"))
    return problems


def dkim_choice(args: Mapping[str, Any], topology: Topology) -> tuple[str, str]:
    """The (domain, selector) whose key the action publishes. Raises
    ``ValueError`` when the action cannot be met."""
    chosen, why = _choose(args, topology)
    if chosen is None:
        raise ValueError(why)
    return chosen


def dkim_record(args: Mapping[str, Any], txt: str) -> str:
    """The zone-file line that publishes the key value ``txt`` at ``args["name"]``."""
    from sim.auth.dkim import key_txt_rdata  # dkimpy: only when a key is published

    return f"{str(args['name']).strip()} TXT {key_txt_rdata(txt)}"
