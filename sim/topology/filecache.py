"""``load_topology`` with the loaded topology remembered between runs.

Loading a topology means reading its YAML with line positions (ruamel.yaml,
pure Python) and checking it: 40-50 ms of every ``maillab send``, ``dig``,
``connect`` or ``up``, for a file that rarely changes. A topology that loaded
without a problem is kept in the user's cache
(``$XDG_CACHE_HOME/maillab/topologies/``, :mod:`sim.usercache`) under the
SHA-256 of its text, the path it was loaded as (problems and the model name
it) and :func:`sim.usercache.code_key`; the next load of the same text by
the same code reads it back (a pickle: a fraction of a millisecond).

A file with a problem is never kept: its problems are found afresh each
time. Anything unreadable in the cache (a cache written by someone else,
damaged, or of classes since changed) is ignored and the file loaded as
before. At most :data:`MAX_ENTRIES` are kept, the oldest removed first.
``MAILLAB_TOPOLOGIES_CACHE=0`` turns the cache off.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import stat
from pathlib import Path

from sim.errors import TopologyError
from sim.spec.source import read_text
from sim.topology.model import Topology
from sim.usercache import cache_dir, code_key

__all__ = ["load_topology"]

_VERSION = 1
#: Entries kept at most (each a few kB): every path and edit of a topology
#: (a test suite's temporary copies) makes one; the oldest go first.
MAX_ENTRIES = 256


def _entry(text: str, source: str) -> Path | None:
    directory = cache_dir("topologies")
    if directory is None:
        return None
    key = hashlib.sha256(
        f"maillab-topology-v{_VERSION}\0{code_key()}\0{source}\0{text}".encode(
            "utf-8", "surrogatepass"
        )
    ).hexdigest()
    return directory / f"{key[:40]}.pickle"


def _read(path: Path) -> Topology | None:
    try:
        with path.open("rb") as f:
            st = os.fstat(f.fileno())
            # Only what this user wrote, and nobody else could have changed.
            if st.st_uid != os.getuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                return None
            found = pickle.load(f)  # the user's own cache, checked above
    except Exception:  # missing, damaged, or made of classes since changed
        return None
    return found if isinstance(found, Topology) else None


def _write(path: Path, topology: Topology) -> None:
    import tempfile

    try:
        data = pickle.dumps(topology, protocol=pickle.HIGHEST_PROTOCOL)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
            tmp.write(data)
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        return  # not kept: the next run loads the file again
    try:
        os.replace(tmp.name, path)  # whole or not at all, for a reader at the same time
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)
        return
    _prune(path.parent)


def _prune(directory: Path) -> None:
    """Keep the newest :data:`MAX_ENTRIES` entries (a miss is the only writer)."""
    with contextlib.suppress(OSError):
        entries = [e for e in os.scandir(directory) if e.name.endswith(".pickle")]
        if len(entries) <= MAX_ENTRIES:
            return
        entries.sort(key=lambda e: e.stat().st_mtime_ns)
        for entry in entries[: len(entries) - MAX_ENTRIES * 3 // 4]:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def load_topology(path: str | os.PathLike[str]) -> Topology:
    """A topology from a file; raises :class:`TopologyError` with every problem
    (as :func:`sim.topology.loader.load_topology`, which it calls on a miss)."""
    text, problem = read_text(path)
    if text is None:
        assert problem is not None
        raise TopologyError([problem])
    source = str(path)
    entry = _entry(text, source)
    if entry is not None:
        found = _read(entry)
        if found is not None:
            return found
    from sim.topology.loader import loads_topology

    topology = loads_topology(text, source)  # a problem raises: nothing is kept
    if entry is not None:
        _write(entry, topology)
    return topology
