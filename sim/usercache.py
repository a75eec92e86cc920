"""The per-user cache directory, and a key of maillab's own code.

What maillab makes or derives once and may reuse (a loaded topology:
:mod:`sim.topology.filecache`; the lab CA and certificates: :mod:`sim.tls`)
is kept under ``$XDG_CACHE_HOME/maillab``
(``~/.cache/maillab`` by default), each entry keyed by what it was made
from, including :func:`code_key`: maillab's version and the size and time
of every one of its modules, so that an edited checkout never reads what
older code made. The caches are an optimisation only: losing one costs one
slow run. ``MAILLAB_<NAME>_CACHE=0`` turns one off.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

__all__ = ["cache_dir", "code_key"]

_PACKAGE = Path(__file__).resolve().parent


def cache_dir(name: str) -> Path | None:
    """``$XDG_CACHE_HOME/maillab/NAME``, or None when ``MAILLAB_NAME_CACHE``
    turns it off or there is no home to put it in."""
    switch = os.environ.get(f"MAILLAB_{name.upper()}_CACHE", "1").strip().lower()
    if switch in ("0", "no", "off", "false"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or ""
    if not os.path.isabs(base):  # the XDG spec: a relative path is ignored
        home = os.path.expanduser("~")
        if home == "~":
            return None
        base = os.path.join(home, ".cache")
    return Path(base) / "maillab" / name


@functools.cache
def code_key() -> str:
    """A key that changes whenever maillab's code may behave differently
    (about 2 ms: a stat of every module)."""
    digest = hashlib.sha256(str(_PACKAGE).encode())
    for root, dirs, files in os.walk(_PACKAGE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".py", ".json")):
                st = os.stat(os.path.join(root, name))
                digest.update(f"{root}/{name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()
