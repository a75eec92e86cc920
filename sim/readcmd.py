"""``maillab read``: read a mailbox from a node over IMAP or POP3.

The experiment itself is :class:`sim.read.Read`; this module is only its
command line, kept apart so that building the ``maillab`` parser does not
import the IMAP/POP3 client and the lab runtime.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.read import ReadResult

__all__ = ["cmd_read", "register", "render_read"]

#: sim.read.PROTOCOLS, spelled out for the parser (a test keeps them equal).
PROTOCOLS = ("imap", "pop3")


def render_read(result: ReadResult) -> str:
    """The text ``maillab read`` prints (a rendering of the JSON)."""
    from sim.render import render_trace

    who = f"{result.user} at {result.server} ({result.protocol.upper()}, {result.folder})"
    if result.error is None:
        lines = [f"{who}: {len(result.messages)} message(s)"]
        for m in result.messages:
            flags = " ".join(m.get("flags") or []) or "-"
            lines.append(
                f"  {m.get('uid')!s:<10} {flags:<16} {m.get('size'):>7}  "
                f"{m.get('from')}  {m.get('subject')}"
            )
    else:
        lines = [f"{who}: failed at {result.stage}: {result.error}"]
    if result.tls:
        lines.append(f"TLS: {result.tls.get('version')} {result.tls.get('cipher')}")
    lines += ["", ";; TRACE:", render_trace(result.trace)]
    return "\n".join(lines)


def cmd_read(args: argparse.Namespace) -> int:
    import json

    import sim
    from sim import argcheck
    from sim.passwords import password_from

    password = password_from(args, user=args.user, prog="read")
    assert password is not None  # --user is required
    topology = sim.load_topology(args.topology)
    # Refused before a lab starts (sim/argcheck.py).
    argcheck.node(topology, args.node, what="--from", hosts_only=True)
    argcheck.host(args.via, what="--via")
    if args.port is not None:
        argcheck.port(args.port, what="--port")
    with sim.start(topology, backend=args.backend, state_dir=args.state_dir) as lab:
        result = lab.read(
            args.node,
            args.user,
            password,
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
    p.add_argument("topology", metavar="TOPOLOGY", help="a topology file (topologies/*.yaml)")
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
    p.add_argument("--user", required=True, metavar="U", help="the mailbox user to log in as")
    from sim.passwords import add_password_arguments

    add_password_arguments(p, what="the mailbox user's password")
    p.add_argument("--protocol", choices=PROTOCOLS, default="imap", help="imap (default) or pop3")
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
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument(
        "--backend",
        choices=["local", "mininet"],
        default="local",
        help="local (default: one process, no root) or mininet (root, Linux)",
    )
    p.set_defaults(func=cmd_read)
