"""What the mininet backend needs from the machine, diagnosed in one line.

The mininet backend realises a topology on real network namespaces, so it
needs Linux, root (namespaces, veth pairs and iptables are privileged), and
a few programs: Debian's ``mininet`` package (for ``mnexec``, which starts a
shell in a new namespace, and the ``ifconfig`` that mininet checks for),
``iproute2`` (``ip``) and ``iptables``; and mininet's Python package
(``pip install maillab[mininet]``). :func:`missing` names the first thing
that is not there and how to get it; :func:`check` raises it as
:class:`~sim.errors.BackendUnavailable`, which every front end prints as one
line.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Callable

from sim.errors import BackendUnavailable
from sim.fastclass import dataclass

__all__ = ["Requirement", "check", "missing", "requirements"]


@dataclass(frozen=True)
class Requirement:
    """One thing the backend needs; ``present()`` says whether it is here."""

    name: str
    present: Callable[[], bool]
    remedy: str

    def message(self) -> str:
        return f"the mininet backend needs {self.name}: {self.remedy}"


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _program(name: str) -> Callable[[], bool]:
    # sbin is not on every user's PATH (sudo adds it); mininet looks there too.
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return lambda: shutil.which(name, path=path) is not None


def _module(name: str) -> Callable[[], bool]:
    return lambda: importlib.util.find_spec(name) is not None


def requirements() -> list[Requirement]:
    """Everything checked, in the order a person would fix it."""
    return [
        Requirement(
            "Linux (network namespaces)",
            lambda: sys.platform.startswith("linux"),
            "use the local backend (--backend local) on this system",
        ),
        Requirement(
            "network namespaces in the kernel",
            lambda: os.path.exists("/proc/self/ns/net"),
            "use a kernel with CONFIG_NET_NS, or the local backend",
        ),
        Requirement("root", _is_root, "run it as root, e.g. with sudo"),
        Requirement("mnexec", _program("mnexec"), "apt-get install mininet"),
        Requirement(
            "ifconfig (mininet checks for it)", _program("ifconfig"), "apt-get install net-tools"
        ),
        Requirement("ip", _program("ip"), "apt-get install iproute2"),
        Requirement("iptables", _program("iptables"), "apt-get install iptables"),
        Requirement(
            "the mininet Python package", _module("mininet"), "pip install maillab[mininet]"
        ),
    ]


def missing() -> str | None:
    """One line naming the first missing requirement, or None when all are here."""
    for requirement in requirements():
        if not requirement.present():
            return requirement.message()
    return None


def check() -> None:
    """Raise :class:`BackendUnavailable` (one line) unless everything is here."""
    problem = missing()
    if problem is not None:
        raise BackendUnavailable(problem)
