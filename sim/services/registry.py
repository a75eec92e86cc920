"""Which class runs which service kind, and in which order they start.

Imported lazily so that a backend only loads the services a topology uses.
"""

from __future__ import annotations

import importlib

from sim.services.base import Service

__all__ = ["REPLACES", "SERVICE_ORDER", "hosted_kinds", "hosted_only_by", "service_class"]

#: Start waves: DNS first (everyone else looks things up), then the
#: receivers, then the relays (a relay that finds mail in its spool after a
#: restart sends it at once: the receivers must listen by then, or it goes to
#: a backup MX only because of the start order), then submission.
SERVICE_ORDER: tuple[tuple[str, ...], ...] = (
    ("dns", "dnsbl"),
    ("mailbox", "mx", "dovecot", "postfix"),
    ("relay",),
    ("submission",),
)

#: Service kind → the class that runs it.
_CLASSES: dict[str, str] = {
    "dns": "sim.services.dns:DnsServer",
    "dnsbl": "sim.services.dnsbl:DnsblServer",
    "mx": "sim.services.mx:MxServer",
    "relay": "sim.services.relay:RelayServer",
    "submission": "sim.services.submission:SubmissionServer",
    "mailbox": "sim.services.mailbox:MailboxServer",
    "postfix": "sim.services.realmail:PostfixNode",
    "dovecot": "sim.services.realmail:DovecotNode",
}

#: Kinds realised by real software in place of maillab's own: a node with
#: ``postfix`` runs no maillab mx, submission or relay (Postfix is all three,
#: configured from their fields).
REPLACES: dict[str, tuple[str, ...]] = {
    "postfix": ("mx", "submission", "relay"),
    "dovecot": ("mailbox",),
}


def hosted_kinds(kinds: tuple[str, ...]) -> tuple[str, ...]:
    """The service objects a node with ``kinds`` runs: the ones real software
    replaces are left out."""
    replaced = {r for kind in kinds for r in REPLACES.get(kind, ())}
    return tuple(kind for kind in kinds if kind not in replaced)


def service_class(kind: str) -> type[Service]:
    module_name, _, class_name = _CLASSES[kind].partition(":")
    cls: type[Service] = getattr(importlib.import_module(module_name), class_name)
    assert issubclass(cls, Service)
    return cls


#: Service kinds that not every backend can host, with the backends that can
#: (a real Postfix or Dovecot runs in a mininet namespace, never on loopback).
#: A kind not listed runs on every backend.
_HOSTED_ONLY_BY: dict[str, frozenset[str]] = {
    "postfix": frozenset({"mininet"}),
    "dovecot": frozenset({"mininet"}),
}


def hosted_only_by(kind: str) -> frozenset[str] | None:
    """The only backends that can host service ``kind``; None: any backend."""
    return _HOSTED_ONLY_BY.get(kind)
