"""Reading a file a format is written in: the one place every loader reads
bytes from disk, so that an unreadable file reads the same in every format
and a safety rule for input files (a size cap, regular files only) applies to
all of them at once.
"""

from __future__ import annotations

import os
from pathlib import Path

from sim.errors import Problem

__all__ = ["read_text"]


def read_text(path: str | os.PathLike[str]) -> tuple[str | None, Problem | None]:
    """The text of ``path`` (UTF-8, a byte-order mark dropped), or None and the
    problem as ``PATH:LINE:COL`` (an undecodable byte at its line and column)."""
    source = str(path)
    p = Path(path)
    try:
        if p.is_dir():
            return None, Problem(source, 1, 1, "is a directory, not a YAML file")
        data = p.read_bytes()
    except FileNotFoundError:
        return None, Problem(source, 1, 1, "no such file")
    except PermissionError:
        return None, Problem(source, 1, 1, "cannot read the file: permission denied")
    except OSError as err:
        return None, Problem(source, 1, 1, f"cannot read the file: {err.strerror or err}")
    if b"\x00" in data:
        return None, Problem(source, 1, 1, "a binary file (it contains NUL bytes), not YAML")
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        col = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        return None, Problem(
            source,
            line,
            col,
            f"not UTF-8 text: byte 0x{data[err.start]:02x} cannot be decoded; "
            "save the file as UTF-8",
        )
