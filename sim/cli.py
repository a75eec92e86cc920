"""The ``maillab`` command line.

Exit codes (DESIGN.md): 0 success; 1 a check failed, or ``send`` did not
deliver (as swaks does); 2 bad input or usage. Errors are one line on stderr,
never a traceback (set MAILLAB_DEBUG=1 to see one for a bug report).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sim.errors import InputError, SimError
from sim.experiments import Connect, ConnectResult, Dig, DigResult
from sim.experiments.params import add_arguments, cli_args, from_args
from sim.experiments.send import Send, SendResult

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(SimError):
    """Bad arguments (exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse prints usage plus the error; keep it to one clear line.
        raise UsageError(f"{self.prog}: {message}")


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False), flush=True)


# -- validate -----------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from sim.validation import validate_path

    problems = []
    for path in args.paths:
        problems.extend(validate_path(Path(path)))
    if not args.json:
        for problem in problems:
            print(problem)
    if args.json:
        _print_json({"valid": not problems, "problems": [p.__dict__ for p in problems]})
    elif not problems:
        print(f"{len(args.paths)} file(s) valid", file=sys.stderr)
    return EXIT_USAGE if problems else EXIT_OK


# -- dig ----------------------------------------------------------------------


def cmd_dig(args: argparse.Namespace) -> int:
    import sim

    # Bad options are found before anything starts.
    experiment = from_args(Dig, cli_args(Dig, args))
    topology = sim.load_topology(args.topology)
    with sim.start(topology, backend=args.backend) as lab:
        result = lab.run(args.node, experiment)
    assert isinstance(result, DigResult)
    if args.json:
        _print_json(result.to_json())
    else:
        from sim.render import render_dig

        print(render_dig(result))
    return EXIT_OK if result.ok else EXIT_FAILED


# -- connect ------------------------------------------------------------------


def cmd_connect(args: argparse.Namespace) -> int:
    import sim

    experiment = from_args(Connect, cli_args(Connect, args))
    topology = sim.load_topology(args.topology)
    with sim.start(topology, backend=args.backend) as lab:
        result = lab.run(args.node, experiment)
    assert isinstance(result, ConnectResult)
    if args.json:
        _print_json(result.to_json())
    else:
        from sim.render import render_connect

        print(render_connect(result))
    return EXIT_OK if result.ok else EXIT_FAILED


# -- send ---------------------------------------------------------------------


def cmd_send(args: argparse.Namespace) -> int:
    import sim

    topology = sim.load_topology(args.topology)
    if (args.user is None) != (args.password is None):
        raise UsageError("maillab send: --user and --password go together")
    experiment = from_args(Send, cli_args(Send, args))
    with sim.start(topology, backend=args.backend, state_dir=args.state_dir) as lab:
        result = lab.run(args.node, experiment)
    assert isinstance(result, SendResult)
    if args.json:
        _print_json(result.to_json())
    else:
        from sim.render import render_send

        print(render_send(result))
    # Like swaks: a message that was not delivered is a failure (exit 1).
    return EXIT_OK if result.outcome == "delivered" else EXIT_FAILED


# -- mailbox ------------------------------------------------------------------


def cmd_mailbox(args: argparse.Namespace) -> int:
    import sim
    from sim.experiments.send import mailbox_of

    topology = sim.load_topology(args.topology)
    state = Path(args.state_dir)
    if not state.is_dir():
        raise UsageError(
            f"maillab mailbox: {state}: no such state directory "
            "(start the lab with `maillab up --state-dir DIR`)"
        )
    messages = mailbox_of(topology, state, args.address, args.folder)
    if args.json:
        _print_json(
            {
                "address": args.address,
                "folder": args.folder,
                "messages": [
                    {
                        "key": m.key,
                        "subject": m.subject,
                        "from": m.header("From"),
                        "headers": [[k, str(v)] for k, v in m.message().items()],
                    }
                    for m in messages
                ],
            }
        )
        return EXIT_OK
    if not messages:
        print(f"{args.address} {args.folder}: empty")
    for m in messages:
        print(f"--- {m.key}")
        print(m.data.decode("utf-8", "replace"))
    return EXIT_OK


# -- up -----------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    import sim

    topology = sim.load_topology(args.topology)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with sim.start(
            topology, backend=args.backend, as_node=args.as_node, state_dir=args.state_dir
        ) as lab:
            endpoints = lab.endpoints()
            if args.json:
                _print_json(
                    {
                        "ready": True,
                        "backend": args.backend,
                        "as": lab.backend.as_node or "outside",
                        "state_dir": str(lab.state_dir),
                        "endpoints": [e.to_json() for e in endpoints],
                    }
                )
            else:
                from sim.render import render_endpoints

                print(render_endpoints(lab, endpoints), flush=True)
            if args.backend == "mininet" and not args.json and sys.stdin.isatty():
                from sim.net.mininet import interactive_shell  # type: ignore[import-not-found,unused-ignore]

                interactive_shell(lab)
            else:
                while not stop.wait(0.2):
                    pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not args.json:
        print("stopped", file=sys.stderr)
    return EXIT_OK


# -- the TUI -------------------------------------------------------------------


def run_home() -> int:
    """``maillab`` alone: the TUI's home screen."""
    try:
        from sim.tui.app import run_tui  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError:
        build_parser().print_help()
        return EXIT_USAGE
    code: int = run_tui()
    return code


# -- the parser -----------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="maillab", description="A teaching lab for email architecture.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    def backend_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--backend",
            choices=["local", "mininet"],
            default="local",
            help="local (default: one process, no root) or mininet (root, Linux)",
        )

    p = sub.add_parser("validate", help="check topology and lab files")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("dig", help="ask the lab DNS from a node")
    p.add_argument("topology", metavar="TOPOLOGY")
    add_arguments(p, Dig)
    p.add_argument("--json", action="store_true")
    backend_arg(p)
    p.set_defaults(func=cmd_dig)

    p = sub.add_parser("connect", help="open a TCP connection from a node")
    p.add_argument("topology", metavar="TOPOLOGY")
    add_arguments(p, Connect)
    p.add_argument("--json", action="store_true")
    backend_arg(p)
    p.set_defaults(func=cmd_connect)

    p = sub.add_parser("send", help="send one message from a node and follow it")
    p.add_argument("topology", metavar="TOPOLOGY")
    # The options are the experiment's parameters (sim.experiments.send.Send).
    add_arguments(p, Send)
    p.add_argument("--state-dir", metavar="DIR")
    p.add_argument("--json", action="store_true")
    backend_arg(p)
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("mailbox", help="read a mailbox of a lab started with --state-dir")
    p.add_argument("topology", metavar="TOPOLOGY")
    p.add_argument("address", metavar="ADDR")
    p.add_argument("--state-dir", required=True, metavar="DIR")
    p.add_argument("--folder", default="INBOX", choices=["INBOX", "Junk"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_mailbox)

    p = sub.add_parser("up", help="start a topology and keep it running")
    p.add_argument("topology", metavar="TOPOLOGY")
    p.add_argument(
        "--as",
        dest="as_node",
        metavar="NODE",
        help="the node real clients on this machine speak for (default: outside)",
    )
    p.add_argument("--state-dir", metavar="DIR", help="keep queues and mailboxes here")
    p.add_argument("--json", action="store_true")
    backend_arg(p)
    p.set_defaults(func=cmd_up)

    # Commands that live with their subsystem register themselves here.
    import importlib

    for module in (
        "sim.lab.commands",
        "sim.graphcmd",
        "sim.net.mnclean",
        "sim.tui.command",
        "sim.readcmd",
        "sim.scaffold",
    ):
        try:
            registrar = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            continue
        registrar.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            return run_home()
        code: int = args.func(args)
        return code
    except InputError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    except UsageError as err:
        print(err, file=sys.stderr)
        return EXIT_USAGE
    except SimError as err:
        print(f"maillab: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # a bug: one line, the traceback only on request
        if os.environ.get("MAILLAB_DEBUG"):
            raise
        print(
            f"maillab: internal error: {type(err).__name__}: {err} "
            "(run with MAILLAB_DEBUG=1 for details)",
            file=sys.stderr,
        )
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
