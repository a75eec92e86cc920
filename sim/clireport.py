"""How the ``maillab`` command line reports an error: one line, or one JSON object.

Every command ends an error the same way (DESIGN.md: exit 2 for bad input or
usage, never a traceback):

* without ``--json``: one line on stderr (an input file with several problems:
  one ``PATH:LINE:COL: message`` line per problem, as ``maillab validate``
  prints them);
* with ``--json`` anywhere on the command line (even when the command line is
  otherwise wrong, so that a script always gets JSON): one object on stdout,
  nothing on stderr::

      {"error": {"kind": "argument", "message": "...", "exit": 2}}

  ``kind`` is one of :data:`KINDS`; an input file's error also has
  ``"problems": [{"path", "line", "col", "message"}, ...]``.

Exit codes: 2 for anything the person can fix (usage, arguments, input
files, a file named on the command line, the machine lacking something), 1
for a bug in maillab (``internal``; ``MAILLAB_DEBUG=1`` shows the traceback),
130 after Ctrl-C.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from sim.errors import (
    ArgumentError,
    BackendError,
    BackendUnavailable,
    InputError,
    LabError,
    LabFileError,
    NetworkError,
    OutsideLabError,
    ServiceError,
    SimError,
    TopologyError,
)

#: What ``maillab`` (or ``maillab run``) says without a terminal (DESIGN.md:
#: one line, exit 2): the TUI would write escape codes into a pipe.
NO_TERMINAL = (
    "maillab: no terminal for the lab screens; use the command line, "
    "e.g. `maillab list`, `maillab check LAB`, `maillab send ...` (`maillab --help`)"
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "KINDS",
    "UsageError",
    "report",
    "wants_json",
]

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class UsageError(ArgumentError):
    """The command line itself is wrong (argparse's errors, flags that go together)."""


#: Error classes and their ``kind`` in JSON, most specific first.
_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (UsageError, "usage"),
    (ArgumentError, "argument"),
    (TopologyError, "topology"),
    (LabFileError, "lab-file"),
    (InputError, "input"),
    (BackendUnavailable, "backend-unavailable"),
    (BackendError, "backend"),
    (OutsideLabError, "outside-lab"),
    (NetworkError, "network"),
    (ServiceError, "service"),
    (LabError, "lab"),
    (SimError, "error"),
    (OSError, "file"),
)
KINDS = (*(kind for _, kind in _KINDS), "interrupted", "internal")


def wants_json(argv: Sequence[str]) -> bool:
    """Whether ``--json`` is on the command line (before a ``--``)."""
    for arg in argv:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


def kind_of(err: BaseException) -> str:
    for cls, kind in _KINDS:
        if isinstance(err, cls):
            return kind
    return "interrupted" if isinstance(err, KeyboardInterrupt) else "internal"


def _one_line(text: str) -> str:
    """A message on one line: a multi-line text (a library's, a backend's
    explanation) joined with "; "."""
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


def _os_message(err: OSError) -> str:
    # An OSError that reached main names a file the person gave (an output
    # path in a missing directory, a state directory on a read-only disk).
    where = err.filename if err.filename is not None else ""
    what = err.strerror or str(err)
    return f"maillab: {where}: {what}" if where else f"maillab: {what}"


def _lines(err: BaseException) -> list[str]:
    """The plain-text report: what goes to stderr, one item per line."""
    if isinstance(err, InputError) and err.problems:
        return [_one_line(str(p)) for p in err.problems]
    if isinstance(err, UsageError):
        return [_one_line(str(err))]
    if isinstance(err, SimError):
        return [f"maillab: {_one_line(str(err)) or type(err).__name__}"]
    if isinstance(err, OSError):
        return [_one_line(_os_message(err))]
    text = _one_line(str(err))
    return [
        f"maillab: internal error: {type(err).__name__}"
        + (f": {text}" if text else "")
        + " (run with MAILLAB_DEBUG=1 for details)"
    ]


def exit_code(err: BaseException) -> int:
    if isinstance(err, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(err, SimError | OSError):
        return EXIT_USAGE
    return EXIT_FAILED


def to_json(err: BaseException) -> dict[str, Any]:
    lines = _lines(err)
    body: dict[str, Any] = {"kind": kind_of(err), "message": lines[0], "exit": exit_code(err)}
    if isinstance(err, InputError):
        body["problems"] = [
            {"path": p.path, "line": p.line, "col": p.col, "message": p.message}
            for p in err.problems
        ]
    return {"error": body}


def report(err: BaseException, *, json_mode: bool) -> int:
    """Print ``err`` the way the command line reports errors; return the exit code."""
    code = exit_code(err)
    if isinstance(err, KeyboardInterrupt) and not json_mode:
        return code
    try:
        if json_mode:
            sys.stdout.write(json.dumps(to_json(err), ensure_ascii=False) + "\n")
            sys.stdout.flush()
        else:
            for line in _lines(err):
                print(line, file=sys.stderr)
    except BrokenPipeError:
        silence_stdout()
    return code


def silence_stdout() -> None:
    """After the reader of stdout went away (``maillab ... | head``): send
    what is left to /dev/null so that Python's exit flush cannot fail
    (the recipe of the ``signal`` module's documentation)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
