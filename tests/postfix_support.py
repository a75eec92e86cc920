"""Shared by the Postfix/Dovecot node tests: the parity topology with real
software in place of maillab's services, and when the packages are missing."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import sim
from sim.topology.model import DovecotService, PostfixService, Topology

__all__ = ["PARITY", "REAL_NODES", "mail_software_missing", "parity_topology", "with_real"]

PARITY = Path(__file__).resolve().parent / "data" / "postfix-parity.yaml"
#: The nodes whose mx/submission/relay/mailbox Postfix and Dovecot take over.
REAL_NODES = ("mx-qq", "smtp-isp", "mx-grey")

_PROGRAMS = {
    "postfix": "postfix",
    "dovecot": "dovecot (dovecot-core)",
    "doveconf": "dovecot (dovecot-core)",
    "policyd-spf": "postfix-policyd-spf-python",
    "opendkim": "opendkim",
    "opendmarc": "opendmarc",
    "postgrey": "postgrey",
}


def mail_software_missing() -> str | None:
    """None, or the first program the real-software nodes need that is not
    installed (``make system`` installs them)."""
    for program, package in _PROGRAMS.items():
        if shutil.which(program, path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
            return f"{program} not installed (Debian package {package}; `make system`)"
    for binary in ("imap", "pop3", "lmtp"):
        if not Path("/usr/lib/dovecot", binary).exists():
            return f"/usr/lib/dovecot/{binary} missing (Debian package dovecot-{binary}d)"
    if not any(Path("/usr/lib").glob("*/faketime/libfaketime.so.1")):
        return "libfaketime.so.1 missing (Debian package faketime; `make system`)"
    return None


def with_real(topology: Topology, nodes: tuple[str, ...] = REAL_NODES) -> Topology:
    """``topology`` with Postfix and Dovecot on ``nodes``, every field kept."""
    out = []
    for node in topology.nodes:
        if node.name in nodes:
            services = dataclasses.replace(
                node.services, postfix=PostfixService(), dovecot=DovecotService()
            )
            node = dataclasses.replace(node, services=services)
        out.append(node)
    return dataclasses.replace(topology, nodes=tuple(out))


def parity_topology() -> Topology:
    return sim.load_topology(PARITY)
