"""Shared by the mininet backend's tests: when they can run, and what to count.

Every test that needs the real backend is marked ``mininet`` and skipped,
with the reason in one line, when the machine lacks root, Linux, mnexec,
iptables or the mininet package (:func:`sim.net.requirements.missing`).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from sim.net import mnclean
from sim.net.requirements import missing

__all__ = ["Footprint", "footprint", "needs_mininet"]

_REASON = missing()

#: Apply to a module: ``pytestmark = needs_mininet``.
needs_mininet = [
    pytest.mark.mininet,
    pytest.mark.skipif(_REASON is not None, reason=f"mininet backend unavailable: {_REASON}"),
]


def _net_namespaces() -> set[int]:
    out = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            ns = mnclean.process_netns(int(entry.name))
            if ns is not None:
                out.add(ns)
    return out


def _lines(argv: list[str]) -> list[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.splitlines()


def _marked_processes() -> list[int]:
    """Processes that any maillab run started (command line or environment)."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        argv = mnclean.process_argv(pid) or []
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            env = []
        if (
            any(a.startswith("mininet:ml-") for a in argv)
            or any("sim.hosting.agent" in a for a in argv)
            or any(e.startswith(b"MAILLAB_RUN=") for e in env)
        ):
            out.append(pid)
    return out


@dataclass(frozen=True)
class Footprint:
    """What a run could leave behind, counted on the machine."""

    namespaces: frozenset[int]
    links: tuple[str, ...]
    iptables: tuple[str, ...]
    processes: tuple[int, ...]
    records: tuple[str, ...]

    def extra_namespaces(self, before: Footprint) -> set[int]:
        return set(self.namespaces - before.namespaces)


def footprint() -> Footprint:
    links = tuple(
        sorted(
            line.split(":", 2)[1].strip().split("@")[0]
            for line in _lines(["ip", "-o", "link", "show"])
            if ":" in line
        )
    )
    return Footprint(
        namespaces=frozenset(_net_namespaces()),
        links=links,
        iptables=tuple(_lines(["iptables", "-w", "-S"])),
        processes=tuple(_marked_processes()),
        records=tuple(r.run for r in mnclean.records()),
    )
