"""What a mininet run created, recorded before it is created, and removed exactly.

Every run of the mininet backend has a short random id and a record,
``/run/maillab/<run id>.json`` (``MAILLAB_RUN_DIR`` overrides the directory),
written *before* the run creates anything and updated as it goes:

* the driver (the process that owns the run): its pid and start time;
* every process the run starts (mininet's node shells, the agent fork
  server, the agents): pid, start time (``/proc/PID/stat`` field 22, so a
  reused pid is never mistaken for ours) and command line;
* every interface and bridge, with the namespace it lives in. The backend
  creates each veth pair inside a node's namespace with the peer placed
  straight into the other node's, and each bridge inside a namespace of its
  own, so none of them ever exists in the root namespace: they vanish with
  their namespaces. Interfaces recorded in the root namespace (none today)
  are deleted by name.

A namespace lives as long as a process is in it (the backend never pins one
with ``ip netns add``), so removing a run's processes removes its namespaces,
their interfaces, bridges and iptables rules (which live only in the
routers' namespaces: the root namespace's iptables is never touched).

:func:`clean` removes the leftovers of runs whose driver is gone (killed,
crashed): the recorded processes that are still the ones we started (same
start time and command line), any process whose command line carries the
run's marker (covers the instant between a start and its record), and any
process living in one of the run's namespaces (a command a person started
from the lab shell). Nothing else: never ``mn -c`` (which deletes
``/tmp/*.log``), never a kill by program name.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, field
from pathlib import Path
from typing import Any

from sim.errors import BackendUnavailable
from sim.fastclass import dataclass

__all__ = [
    "CleanReport",
    "ProcessEntry",
    "RunRecord",
    "clean",
    "clean_run",
    "cmd_clean",
    "leftover_notice",
    "leftovers",
    "new_run_id",
    "process_argv",
    "process_netns",
    "process_start",
    "records",
    "register",
    "run_marker",
    "run_root",
]

RECORD_VERSION = 1
#: The environment variable that marks every process a run starts in its nodes.
ENV_MARKER = "MAILLAB_RUN"
#: How long (s) a process is given to exit on SIGTERM before SIGKILL.
GRACE = 2.0


def run_root() -> Path:
    """Where run records live (``/run``: a tmpfs, emptied at boot like the
    namespaces it describes)."""
    return Path(os.environ.get("MAILLAB_RUN_DIR", "/run/maillab"))


def run_marker(run: str) -> str:
    """The prefix of every mininet node name of a run (``mininet:ml-<run>-…``
    in the shells' command lines)."""
    return f"ml-{run}-"


def new_run_id() -> str:
    """Six hex digits, not used by any record on this machine."""
    while True:
        run = secrets.token_hex(3)
        if not (run_root() / f"{run}.json").exists():
            return run


# -- /proc ---------------------------------------------------------------------


def process_start(pid: int) -> int | None:
    """The start time of ``pid`` (clock ticks since boot), None if it is gone
    or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after it.
    rest = raw[raw.rfind(b")") + 2 :].split()
    if not rest or rest[0] == b"Z":
        return None
    return int(rest[19])


def process_argv(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0")[:-1]]


def process_netns(pid: int) -> int | None:
    """The inode of the network namespace ``pid`` lives in."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def _pids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


# -- the record ----------------------------------------------------------------


@dataclass
class ProcessEntry:
    """A process a run started."""

    pid: int
    start: int
    kind: str  # shell | forkserver | agent | helper
    node: str | None
    argv: list[str]

    @classmethod
    def of(cls, pid: int, kind: str, node: str | None) -> ProcessEntry | None:
        """Describe a running process (None if it is already gone)."""
        start, argv = process_start(pid), process_argv(pid)
        if start is None or argv is None:
            return None
        return cls(pid, start, kind, node, argv)

    def alive(self) -> bool:
        """Still running and still the process we started."""
        return process_start(self.pid) == self.start and process_argv(self.pid) == self.argv


@dataclass
class RunRecord:
    """Everything one run creates; saved at ``run_root()/<run>.json``."""

    run: str
    driver_pid: int
    driver_start: int
    topology: str
    state_dir: str
    created: float = field(default_factory=time.time)
    nodes: dict[str, str] = field(default_factory=dict)
    interfaces: list[dict[str, str]] = field(default_factory=list)
    bridges: list[dict[str, str]] = field(default_factory=list)
    processes: list[ProcessEntry] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return run_root() / f"{self.run}.json"

    @classmethod
    def create(cls, run: str, topology: str, state_dir: Path) -> RunRecord:
        pid = os.getpid()
        start = process_start(pid)
        assert start is not None
        record = cls(run, pid, start, topology, str(state_dir))
        record.save()
        return record

    def save(self) -> None:
        root = run_root()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = {"version": RECORD_VERSION, **asdict(self)}
        with tempfile.NamedTemporaryFile("w", dir=root, prefix=".tmp-", delete=False) as tmp:
            json.dump(data, tmp, indent=1)
        Path(tmp.name).replace(self.path)

    @classmethod
    def load(cls, path: Path) -> RunRecord:
        raw = json.loads(path.read_text())
        raw.pop("version", None)
        raw["processes"] = [ProcessEntry(**p) for p in raw.get("processes", [])]
        return cls(**raw)

    def add_process(self, pid: int, kind: str, node: str | None) -> ProcessEntry | None:
        entry = ProcessEntry.of(pid, kind, node)
        if entry is not None:
            self.processes.append(entry)
            self.save()
        return entry

    def driver_alive(self) -> bool:
        return process_start(self.driver_pid) == self.driver_start

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def describe(self) -> str:
        return f"{self.run} ({self.topology}, driver pid {self.driver_pid})"


def records() -> list[RunRecord]:
    """Every run record on this machine, oldest first; unreadable ones skipped."""
    root = run_root()
    if not root.is_dir():
        return []
    out = []
    for path in root.glob("*.json"):
        try:
            out.append(RunRecord.load(path))
        except (OSError, ValueError, TypeError, KeyError):
            continue
    return sorted(out, key=lambda r: r.created)


def leftovers() -> list[RunRecord]:
    """Records of runs whose driver is gone: what ``maillab clean`` removes."""
    return [r for r in records() if not r.driver_alive()]


def leftover_notice() -> str | None:
    """One line for a start that finds leftovers, or None."""
    found = leftovers()
    if not found:
        return None
    runs = ", ".join(r.run for r in found)
    plural = "s" if len(found) > 1 else ""
    return (
        f"maillab: leftovers of {len(found)} earlier mininet run{plural} ({runs}) "
        "are still on this machine; remove them with `maillab clean`"
    )


# -- cleaning --------------------------------------------------------------------


@dataclass
class CleanReport:
    run: str
    killed: list[int] = field(default_factory=list)
    interfaces: list[str] = field(default_factory=list)
    remaining: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _marked(run: str, argv: list[str]) -> bool:
    """Whether a command line is one a run started: a node shell
    (``mininet:ml-<run>-NODE``) or an agent/fork server (``--run <run>``)."""
    shell = f"mininet:{run_marker(run)}"
    if any(arg.startswith(shell) for arg in argv):
        return True
    tagged = any(a == "--run" and b == run for a, b in itertools.pairwise(argv))
    # sim.net.agent: where the agent lived before 2026-12 (a crashed older run).
    agents = ("sim.hosting.agent", "sim.net.agent")
    return tagged and any(name in arg for arg in argv for name in agents)


def _env_marked(run: str, pid: int) -> bool:
    """Whether ``pid`` carries ``MAILLAB_RUN=<run>`` in its environment: what
    the run starts inside its nodes (the shells pass it on to every command,
    the lab shell to what a person types)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{ENV_MARKER}={run}".encode() in raw.split(b"\0")


def _protected() -> set[int]:
    """This process and its ancestors: never ours to kill."""
    out = {1}
    pid = os.getpid()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
            pid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out


def _root_namespaces() -> set[int]:
    """Network namespaces that are never a run's: this process's and init's."""
    return {ns for ns in (process_netns(os.getpid()), process_netns(1)) if ns is not None}


def run_processes(record: RunRecord) -> dict[int, int]:
    """The processes of a run that are still alive: pid → start time.

    Recorded processes that are still ours, processes carrying the run's
    marker (command line or environment), and every process in the network
    namespace of one of the run's live node shells (the shells own the
    namespaces: ``mnexec -n`` made them). While that shell is alive its
    namespace cannot have been freed and its inode reused. The namespace
    this process lives in, and init's, are never a run's.
    """
    protected = _protected()
    found: dict[int, int] = {}
    for entry in record.processes:
        if entry.alive():
            found[entry.pid] = entry.start
    shell = f"mininet:{run_marker(record.run)}"
    shells: set[int] = set()
    all_pids = list(_pids())
    for pid in all_pids:
        argv = process_argv(pid)
        start = process_start(pid)
        if argv is None or start is None:
            continue
        # A node shell once mnexec has made its namespaces and exec'd bash
        # (before that, the same command line is still in the parent's).
        if argv[:1] == ["bash"] and any(arg.startswith(shell) for arg in argv):
            shells.add(pid)
        if pid not in found and (_marked(record.run, argv) or _env_marked(record.run, pid)):
            found[pid] = start
    namespaces = {process_netns(pid) for pid in shells} - {None} - _root_namespaces()
    if namespaces:
        for pid in all_pids:
            if pid not in found and process_netns(pid) in namespaces:
                start = process_start(pid)
                if start is not None:
                    found[pid] = start
    for pid in protected:
        found.pop(pid, None)
    return found


def _signal_all(victims: dict[int, int], sig: int) -> None:
    for pid, start in victims.items():
        if process_start(pid) == start:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


def _wait_gone(victims: dict[int, int], timeout: float) -> dict[int, int]:
    deadline = time.monotonic() + timeout
    while True:
        alive = {p: s for p, s in victims.items() if process_start(p) == s}
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.02)


def kill_processes(victims: dict[int, int], grace: float = GRACE) -> list[int]:
    """SIGTERM, then SIGKILL after ``grace`` seconds; returns those still alive."""
    if not victims:
        return []
    _signal_all(victims, signal.SIGTERM)
    alive = _wait_gone(victims, grace)
    if alive:
        _signal_all(alive, signal.SIGKILL)
        alive = _wait_gone(alive, 2.0)
    return sorted(alive)


def root_interfaces() -> set[str]:
    """Interface names in the root network namespace (this process's)."""
    out = subprocess.run(
        ["ip", "-o", "link", "show"], capture_output=True, text=True, check=False
    ).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.add(parts[1].strip().split("@")[0])
    return names


def clean_run(record: RunRecord, *, grace: float = GRACE, dry_run: bool = False) -> CleanReport:
    """Remove what one run left: its processes (hence its namespaces), the
    interfaces it recorded in the root namespace, then its record."""
    report = CleanReport(record.run)
    victims = run_processes(record)
    report.killed = sorted(victims)
    root_owned = [i["name"] for i in record.interfaces if i.get("namespace") == "root"]
    if dry_run:
        present = root_interfaces() if root_owned else set()
        report.interfaces = [n for n in root_owned if n in present]
        return report
    report.remaining = kill_processes(victims, grace)
    if root_owned:
        present = root_interfaces()
        for name in root_owned:
            if name in present:
                subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)
                report.interfaces.append(name)
    if not report.remaining:
        record.remove()
    return report


def clean(runs: Iterable[str] | None = None, *, dry_run: bool = False) -> list[CleanReport]:
    """Clean the leftovers of every run whose driver is gone (or only ``runs``
    among them). A run whose driver is alive is never touched."""
    wanted = set(runs) if runs is not None else None
    out = []
    for record in leftovers():
        if wanted is None or record.run in wanted:
            out.append(clean_run(record, dry_run=dry_run))
    return out


# -- the CLI ---------------------------------------------------------------------------


def cmd_clean(args: argparse.Namespace) -> int:
    # Temporary state directories of labs killed without a chance to remove
    # them (either backend) need no root: sim/statedir.py. Mininet runs do.
    from sim import statedir
    from sim.errors import ArgumentError

    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if args.runs and not is_root:
        raise BackendUnavailable(
            "maillab clean RUN needs root (mininet runs belong to root): run it with sudo"
        )
    if args.runs:
        known = {r.run for r in records()}
        unknown = [run for run in args.runs if run not in known]
        if unknown:
            raise ArgumentError(
                f"no mininet run {', '.join(unknown)} on this machine "
                f"(runs: {', '.join(sorted(known)) or 'none'})"
            )
    reports = clean(args.runs or None, dry_run=args.dry_run) if is_root else []
    remaining = records() if is_root else []
    live = [r for r in remaining if r.driver_alive()]
    orphans = (
        []
        if args.runs
        else statedir.clean_orphans(dry_run=args.dry_run, exclude=[r.state_dir for r in remaining])
    )
    if args.json:
        print(
            json.dumps(
                {
                    "cleaned": [r.to_json() for r in reports],
                    "running": [r.run for r in live],
                    "state_dirs": [str(o.path) for o in orphans],
                    "dry_run": args.dry_run,
                }
            ),
            flush=True,
        )
    else:
        verb = "would remove" if args.dry_run else "removed"
        for r in reports:
            what = f"{len(r.killed)} process(es)"
            if r.interfaces:
                what += f", interfaces {', '.join(r.interfaces)}"
            line = f"run {r.run}: {verb} {what}"
            if r.remaining:
                line += f"; still alive: {', '.join(map(str, r.remaining))}"
            print(line)
        for o in orphans:
            print(f"{verb} state directory {o.path} (its lab, pid {o.pid}, is gone)")
        if not reports and not orphans:
            print("nothing to clean")
        for running in live:
            print(f"run {running.describe()} is still running: left alone", file=sys.stderr)
    return 1 if any(r.remaining for r in reports) else 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``maillab clean`` to the CLI's subcommands."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "clean",
        help="remove what crashed labs left (only maillab's own)",
        description="Remove the temporary state directories of labs that were killed "
        "(either backend; no root needed for your own), and, as root, the processes, "
        "namespaces and interfaces of mininet runs whose driver is gone. Running labs "
        "and anything not created by maillab are left alone.",
    )
    p.add_argument("runs", nargs="*", metavar="RUN", help="only these run ids")
    p.add_argument("--dry-run", action="store_true", help="say what would be removed")
    p.add_argument("--json", action="store_true", help="print what was found as one JSON object")
    p.set_defaults(func=cmd_clean)
    return p
