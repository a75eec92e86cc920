"""``maillab read``: the ``read`` experiment (:mod:`sim.experiments.read`)
from the command line."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sim.experiments.read import PROTOCOLS

__all__ = ["cmd_read", "register"]


def cmd_read(args: argparse.Namespace) -> int:
    import sim
    from sim.render import render_read

    topology = sim.load_topology(args.topology)
    with sim.start(topology, backend=args.backend, state_dir=args.state_dir) as lab:
        result = lab.read(
            args.node,
            args.user,
            args.password,
            via=args.via,
            protocol=args.protocol,
            folder=args.folder,
            tls=not args.no_tls,
            port=args.port,
            peek=args.peek,
        )
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False), flush=True)
    else:
        print(render_read(result))
    return 0 if result.ok else 1


def register(sub: Any) -> None:
    """Add ``maillab read`` to the CLI (called by :func:`sim.cli.build_parser`)."""
    p = sub.add_parser("read", help="read a mailbox from a node over IMAP or POP3")
    p.add_argument("topology", metavar="TOPOLOGY")
    p.add_argument(
        "--from",
        dest="node",
        required=True,
        metavar="NODE",
        help="the node the mail client runs on",
    )
    p.add_argument(
        "--via",
        required=True,
        metavar="NODE",
        help="the mailbox host: a node, an address or a host name",
    )
    p.add_argument("--user", required=True, metavar="U")
    p.add_argument("--password", required=True, metavar="P")
    p.add_argument("--protocol", choices=PROTOCOLS, default="imap")
    p.add_argument("--folder", default="INBOX", help="INBOX (default) or Junk (IMAP only)")
    p.add_argument(
        "--port",
        type=int,
        metavar="PORT",
        help="143/110 (STARTTLS, the default) or 993/995 (implicit TLS)",
    )
    p.add_argument(
        "--no-tls",
        action="store_true",
        help="skip STARTTLS: see the server refuse a clear-text password",
    )
    p.add_argument(
        "--peek",
        action="store_true",
        help="look without marking anything read (EXAMINE/BODY.PEEK, TOP)",
    )
    p.add_argument(
        "--state-dir", metavar="DIR", help="the lab's state directory (mailboxes of an earlier run)"
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--backend", choices=["local", "mininet"], default="local")
    p.set_defaults(func=cmd_read)
