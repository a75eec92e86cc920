"""State directories: checked when given, marked with their owner when temporary.

A running lab keeps its queues, mailboxes, DKIM keys and the lab CA's private
key in a state directory.

* **Given** (``--state-dir DIR``, ``state_dir=``): :func:`prepare` creates it
  if needed and refuses, with one :class:`~sim.errors.ArgumentError`, a path
  that is a file, lies under a file, or cannot be written, before anything
  starts.
* **Temporary** (none given): :func:`create_temp` makes
  ``$TMPDIR/maillab-XXXXXXXX`` (mode 0700) and, before anything else goes in,
  writes :data:`MARKER`: the owner's pid and its start time (``/proc/PID/stat``
  field 22, so that a reused pid is never taken for the owner). The lab
  removes the directory when it stops; a lab killed with SIGKILL cannot, and
  :func:`orphans` finds it: a ``maillab-*`` directory whose marker names a
  process that is gone. ``maillab clean`` removes those (both backends; no
  root needed for one's own) and nothing else: a directory without a
  readable marker, or whose owner still runs, is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from sim.errors import ArgumentError
from sim.fastclass import dataclass
from sim.inputfile import InputFileError, read_input_bytes

__all__ = [
    "MARKER",
    "PREFIX",
    "Orphan",
    "clean_orphans",
    "create_temp",
    "orphans",
    "prepare",
    "temp_root",
]

PREFIX = "maillab-"
MARKER = ".maillab-owner.json"


def prepare(path: str | os.PathLike[str]) -> Path:
    """A state directory someone named: created if missing, refused in one
    line if it is a file, sits under a file, or cannot be written."""
    if not str(path).strip():
        # Path("") is the current directory: never fill it with a lab's state.
        raise ArgumentError("state directory '': empty (name a directory, or leave it out)")
    p = Path(path)
    where = f"state directory {p}"
    if p.exists() and not p.is_dir():
        raise ArgumentError(f"{where}: is a file, not a directory")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ArgumentError(f"{where}: {parent} is a file, not a directory")
            break
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ArgumentError(f"{where}: cannot create it: {err.strerror or err}") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise ArgumentError(f"{where}: not writable by this user")
    return p


# -- the owner -------------------------------------------------------------------


def _start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), None if it is gone; -1
    where there is no /proc (the pid alone is then compared)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return -1
        return -1
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after it.
    rest = raw[raw.rfind(b")") + 2 :].split()
    if not rest or rest[0] == b"Z":
        return None
    return int(rest[19])


def temp_root() -> Path:
    return Path(tempfile.gettempdir())


def create_temp() -> Path:
    """A new temporary state directory, marked with this process as its owner."""
    path = Path(tempfile.mkdtemp(prefix=PREFIX))
    pid = os.getpid()
    marker = {"pid": pid, "start": _start_time(pid), "created": time.time(), "version": 1}
    tmp = path / (MARKER + ".tmp")
    tmp.write_text(json.dumps(marker))
    tmp.replace(path / MARKER)  # whole or absent: a torn marker is never read
    return path


# -- orphans ---------------------------------------------------------------------


@dataclass(frozen=True)
class Orphan:
    """A temporary state directory whose owner is gone."""

    path: Path
    pid: int
    created: float


def _owner(path: Path) -> tuple[int, int | None, float] | None:
    try:
        # Bounded, regular file only: in a directory another user made (root
        # cleans everyone's), a FIFO marker must not hang `maillab clean`.
        raw = json.loads(read_input_bytes(path / MARKER, limit=4096))
        return int(raw["pid"]), raw.get("start"), float(raw.get("created", 0.0))
    except (InputFileError, ValueError, TypeError, KeyError):
        return None


def orphans(root: Path | None = None, *, exclude: Iterable[str] = ()) -> list[Orphan]:
    """Marked temporary state directories in ``root`` (default: the temporary
    directory) whose owner process is gone, oldest first. Only directories
    this user may remove (root: all of them); never a symlink; never one in
    ``exclude`` (a mininet run's state that is still in use)."""
    base = root if root is not None else temp_root()
    skip = {os.path.realpath(p) for p in exclude}
    euid = os.geteuid() if hasattr(os, "geteuid") else None
    found: list[Orphan] = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return []
    for entry in entries:
        if not entry.name.startswith(PREFIX):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or os.path.realpath(entry.path) in skip:
            continue
        if euid not in (None, 0) and info.st_uid != euid:
            continue
        owner = _owner(Path(entry.path))
        if owner is None:
            continue  # not ours, or not marked yet: never touched
        pid, start, created = owner
        alive = _start_time(pid)
        if alive is not None and (start is None or alive in (start, -1)):
            continue
        found.append(Orphan(Path(entry.path), pid, created))
    return sorted(found, key=lambda o: o.created)


def clean_orphans(
    root: Path | None = None, *, dry_run: bool = False, exclude: Iterable[str] = ()
) -> list[Orphan]:
    """Remove every orphaned temporary state directory; returns them."""
    found = orphans(root, exclude=exclude)
    if not dry_run:
        for orphan in found:
            # Look again: the marker must still name a process that is gone.
            owner = _owner(orphan.path)
            if owner is not None and owner[0] == orphan.pid:
                shutil.rmtree(orphan.path, ignore_errors=True)
    return found
