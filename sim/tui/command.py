"""``maillab run LAB``: the TUI, opened at one lab.

``sim.cli`` wires it in with :func:`register`::

    from sim.tui.command import register
    register(sub)
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["cmd_run", "register"]


def cmd_run(args: argparse.Namespace) -> int:
    import sys

    from sim.lab.catalog import find_lab, labs_dir, refuse_backend
    from sim.lab.loader import load_lab

    # The lab first: an unknown lab, a file with problems, or a lab that does
    # not run on this backend (real Postfix on local) is one line and exit 2,
    # with or without a terminal.
    lab = load_lab(find_lab(args.lab, labs_dir(args.labs_dir)))
    refuse_backend(lab.id, lab.backends, args.backend, "run")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        # No terminal: the TUI would write escape codes into a pipe and wait
        # for keys forever (DESIGN.md: one line, exit 2).
        from sim.clireport import NO_TERMINAL

        print(NO_TERMINAL, file=sys.stderr)
        return 2
    from sim.tui.app import run_tui

    return run_tui(args.lab, args.backend, labs=args.labs_dir, lab=lab)


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``run`` to the ``maillab`` subcommands."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "run", help="open a lab in the TUI (maillab alone: the list of labs)"
    )
    p.add_argument("lab", metavar="LAB", help="a lab id, number or file (see maillab list)")
    p.add_argument(
        "--backend",
        choices=["local", "mininet"],
        default="local",
        help="local (default: one process, no root) or mininet (root, Linux)",
    )
    p.add_argument(
        "--labs-dir",
        metavar="DIR",
        help="where the lab files are (default: the repository's or the package's)",
    )
    p.set_defaults(func=cmd_run)
    return p
