"""Reading a file a format is written in: the one place every loader reads
bytes from disk, so that an unreadable file reads the same in every format
and the safety rules for input files (:mod:`sim.inputfile`: regular files
only, a size cap checked before reading) apply to all of them at once.
"""

from __future__ import annotations

import os

from sim.errors import Problem
from sim.inputfile import MAX_YAML_BYTES, InputFileError, read_input_text

__all__ = ["read_text"]


def read_text(
    path: str | os.PathLike[str], what: str = "YAML file"
) -> tuple[str | None, Problem | None]:
    """The text of ``path`` (UTF-8, a byte-order mark dropped), or None and the
    problem as ``PATH:LINE:COL`` (an undecodable byte at its line and column).
    ``what`` names the file in messages ("topology file", "lab file")."""
    try:
        return read_input_text(path, what=what, limit=MAX_YAML_BYTES), None
    except InputFileError as err:
        return None, err.problem
