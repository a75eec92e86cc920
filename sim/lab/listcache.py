"""What ``maillab list`` shows of each lab, remembered between runs.

Listing the labs means loading and validating every lab file and its
topology: about twenty YAML documents read with line positions (ruamel.yaml,
pure Python), over a second of CPU on a small machine, for a table that
rarely changes. So the summary of each lab that loaded without a problem is
kept in the user's cache (``$XDG_CACHE_HOME/maillab/list/labs-v2.json``) with
what it depends on: the SHA-256 of the lab file, of its topology file, and a
key of maillab's own code (its version and the size and time of every module,
so that an edited checkout revalidates). Anything changed, a lab with a
problem, two labs with one id, or no usable cache: the labs are loaded as
before. The cache is an optimisation only; losing it costs one slow listing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from sim.errors import Problem
from sim.usercache import cache_dir, code_key

__all__ = ["Summary", "lab_summaries"]

#: One lab as ``maillab list`` shows it.
Summary = dict[str, Any]

# 2: a summary has the lab's `backends`.
_VERSION = 2
_PACKAGE = Path(__file__).resolve().parents[1]


def _cache_file() -> Path | None:
    """``$XDG_CACHE_HOME/maillab/list/labs-vN.json`` (``MAILLAB_LIST_CACHE=0``: none)."""
    directory = cache_dir("list")
    return None if directory is None else directory / f"labs-v{_VERSION}.json"


def _sha(path: Path) -> str | None:
    # Regular files only, bounded (sim/inputfile.py): a FIFO named *.yaml in
    # the labs directory must not hang `maillab list`; the loader says why.
    from sim.inputfile import MAX_YAML_BYTES, InputFileError, read_input_bytes

    try:
        return hashlib.sha256(read_input_bytes(path, limit=MAX_YAML_BYTES)).hexdigest()
    except InputFileError:
        return None


def _read(path: Path, key: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("code") != key:
        return {}
    labs = data.get("labs")
    return labs if isinstance(labs, dict) else {}


def _write(path: Path, key: str, labs: dict[str, Any]) -> None:
    # Atomic replace: a concurrent `maillab list` reads the old or the new
    # file, never half of one; the last writer wins, and both are right.
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".labs-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump({"code": key, "labs": labs}, out)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _fresh(entry: Any, lab_sha: str | None) -> Summary | None:
    if not isinstance(entry, dict) or lab_sha is None or entry.get("sha") != lab_sha:
        return None
    topology = entry.get("topology_file")
    if not isinstance(topology, str) or _sha(Path(topology)) != entry.get("topology_sha"):
        return None
    summary = entry.get("summary")
    return summary if isinstance(summary, dict) else None


def lab_summaries(directory: Path) -> tuple[list[Summary], list[Problem]]:
    """The summary of every lab of ``directory`` (id, title, topology, steps,
    estimated_time, backends, file), in file order, and the problems of those that do
    not load."""
    from sim.lab.catalog import lab_files

    cache = _cache_file()
    key = code_key() if cache is not None else ""
    known = _read(cache, key) if cache is not None else {}
    files = lab_files(directory)
    shas = {str(p.resolve()): _sha(p) for p in files}
    rows: list[Summary] = []
    for path, (name, sha) in zip(files, shas.items(), strict=True):
        summary = _fresh(known.get(name), sha)
        if summary is None:
            break
        rows.append({**summary, "file": str(path)})
    ids = {row["id"] for row in rows}
    if len(rows) == len(files) and len(ids) == len(rows):
        return rows, []
    return _load_all(directory, cache, key, shas, known)


#: Labs remembered at most (other directories' labs are kept, the oldest go).
MAX_ENTRIES = 500


def _load_all(
    directory: Path,
    cache: Path | None,
    key: str,
    shas: dict[str, str | None],
    known: dict[str, Any],
) -> tuple[list[Summary], list[Problem]]:
    from sim.lab.catalog import load_catalog
    from sim.lab.loader import topology_path

    rows: list[Summary] = []
    problems: list[Problem] = []
    keep: dict[str, Any] = {}
    for entry in load_catalog(directory):
        problems.extend(entry.problems)
        lab = entry.lab
        if lab is None:
            continue
        summary: Summary = {
            "id": lab.id,
            "title": lab.title,
            "topology": lab.topology,
            "steps": len(lab.steps),
            "file": str(entry.path),
            "estimated_time": lab.estimated_time,
            "backends": list(lab.backends),
        }
        rows.append(summary)
        topology = topology_path(entry.path, lab.topology).resolve()
        name = str(entry.path.resolve())
        keep[name] = {
            "sha": shas.get(name),
            "topology_file": str(topology),
            "topology_sha": _sha(topology),
            "summary": summary,
        }
    if cache is not None:
        here = str(directory.resolve())
        others = {n: e for n, e in known.items() if str(Path(n).parent) != here}
        merged = {**others, **keep}
        _write(cache, key, dict(list(merged.items())[-MAX_ENTRIES:]))
    return rows, problems
