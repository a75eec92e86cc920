"""``maillab read``: the ``read`` experiment (:mod:`sim.experiments.read`)
from the command line; its options come from the experiment's parameters,
the password from any of its sources (:mod:`sim.passwords`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sim.experiments.params import add_arguments, cli_args, from_args
from sim.experiments.read import Read, ReadResult

__all__ = ["cmd_read", "register"]


def cmd_read(args: argparse.Namespace) -> int:
    import sim
    from sim import argcheck
    from sim.passwords import password_from
    from sim.render import render_read

    password = password_from(args, user=args.user, prog="read")
    assert password is not None  # --user is required
    args.password = password
    # Bad options (POP3 with a folder...) are found before anything starts.
    experiment = from_args(Read, cli_args(Read, args))
    topology = sim.load_topology(args.topology)
    # Refused before a lab starts (sim/argcheck.py).
    argcheck.node(topology, args.node, what="--from", hosts_only=True)
    argcheck.host(args.via, what="--via")
    if args.port is not None:
        argcheck.port(args.port, what="--port")
    with sim.start(topology, backend=args.backend, state_dir=args.state_dir) as lab:
        result = lab.run(args.node, experiment)
    assert isinstance(result, ReadResult)
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False), flush=True)
    else:
        print(render_read(result))
    return 0 if result.ok else 1


def register(sub: Any) -> None:
    """Add ``maillab read`` to the CLI (called by :func:`sim.cli.build_parser`)."""
    from sim.passwords import add_password_arguments

    p = sub.add_parser("read", help="read a mailbox from a node over IMAP or POP3")
    p.add_argument("topology", metavar="TOPOLOGY", help="a topology file (topologies/*.yaml)")
    add_arguments(p, Read, skip=("password",))
    add_password_arguments(p, what="the mailbox user's password")
    p.add_argument(
        "--state-dir", metavar="DIR", help="the lab's state directory (mailboxes of an earlier run)"
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument(
        "--backend",
        choices=["local", "mininet"],
        default="local",
        help="local (default: one process, no root) or mininet (root, Linux)",
    )
    p.set_defaults(func=cmd_read)
