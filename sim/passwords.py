"""Where a command line password comes from (``maillab send``, ``read``).

A password on the command line is visible to every user of the machine
(``ps``) and stays in the shell history, so, like ``mysql``, ``swaks`` or
``git``'s credential helpers, maillab takes it from, in this order:

1. ``--password P`` (convenient in a lab, where passwords are the lab's);
2. ``--password-file FILE``: the first line of FILE;
3. the ``MAILLAB_PASSWORD`` environment variable;
4. a prompt without echo (:func:`getpass.getpass`) when a terminal is
   attached.

No source and no terminal: one line saying which ways there are (exit 2).
"""

from __future__ import annotations

import argparse
import os
import sys

from sim.errors import SimError

__all__ = ["ENV", "PasswordError", "add_password_arguments", "password_from"]

#: The environment variable that holds the password.
ENV = "MAILLAB_PASSWORD"

#: A password file longer than this is not a password file.
MAX_FILE_BYTES = 4096


class PasswordError(SimError):
    """No usable password (exit 2: bad usage)."""


def add_password_arguments(parser: argparse.ArgumentParser, *, what: str) -> None:
    """``--password`` and ``--password-file`` (one or the other)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--password",
        metavar="P",
        help=f"{what} (visible to other users in `ps`: prefer --password-file, "
        f"${ENV} or the prompt)",
    )
    group.add_argument(
        "--password-file",
        metavar="FILE",
        help="read the password from the first line of FILE",
    )


def _read_file(name: str, prog: str) -> str:
    # Regular files only, bounded (sim/inputfile.py): a FIFO must not hang.
    from sim.inputfile import InputFileError, read_input_bytes

    try:
        data = read_input_bytes(name, what="password file", limit=MAX_FILE_BYTES)
    except InputFileError as err:
        raise PasswordError(f"{prog}: --password-file {name}: {err.problem.message}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PasswordError(f"{prog}: --password-file {name}: not UTF-8 text") from None
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise PasswordError(f"{prog}: --password-file {name}: the first line is empty")
    return lines[0]


def password_from(args: argparse.Namespace, *, user: str | None, prog: str) -> str | None:
    """The password for ``user`` from the sources above; None when there is
    no user (nothing to log in as). Raises :class:`PasswordError`."""
    given: str | None = getattr(args, "password", None)
    path: str | None = getattr(args, "password_file", None)
    if user is None:
        if given is not None or path is not None:
            raise PasswordError(f"{prog}: a password needs --user")
        return None
    if given is not None:
        return given
    if path is not None:
        return _read_file(path, prog)
    from_env = os.environ.get(ENV)
    if from_env:
        return from_env
    if sys.stdin.isatty():
        import getpass

        try:
            return getpass.getpass(f"Password for {user}: ")
        except EOFError:
            raise PasswordError(f"{prog}: no password given") from None
    raise PasswordError(
        f"{prog}: --user {user} needs a password: --password-file FILE, ${ENV}, "
        "--password P, or a terminal to ask on"
    )
