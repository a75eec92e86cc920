"""The ``maillab`` command line.

Exit codes (DESIGN.md): 0 success; 1 a check failed, or ``send`` did not
deliver (as swaks does); 2 bad input or usage. Errors are one line on stderr,
never a traceback (set MAILLAB_DEBUG=1 to see one for a bug report).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sim import argcheck
from sim.clireport import NO_TERMINAL as NO_TERMINAL
from sim.clireport import UsageError
from sim.experiments import Connect, ConnectResult, Dig, DigResult
from sim.experiments.params import add_arguments, cli_args, from_args
from sim.experiments.send import Send, SendResult

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


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
        problems.extend(validate_path(Path(path), args.backend))
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

    argcheck.dns_name(args.name, what="NAME")
    argcheck.dns_type(args.type, what="TYPE")
    # Bad options are found before anything starts (sim/argcheck.py, the parameters).
    experiment = from_args(Dig, cli_args(Dig, args))
    topology = sim.load_topology(args.topology)
    argcheck.node(topology, args.node, what="--from", hosts_only=True)
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

    argcheck.host(args.host, what="HOST")
    argcheck.port(args.port, what="PORT")
    experiment = from_args(Connect, cli_args(Connect, args))
    topology = sim.load_topology(args.topology)
    argcheck.node(topology, args.node, what="--from", hosts_only=True)
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
    from sim.passwords import password_from

    if args.diagram:
        from sim.present.seqrender import diagram_format

        diagram_format(args.diagram)  # a wrong suffix is bad input: say so before sending
    password = password_from(args, user=args.user, prog="send")
    topology = sim.load_topology(args.topology)
    for rcpt in args.to:
        argcheck.mail_address(rcpt, what="--to")
    if args.mail_from is not None:
        argcheck.mail_address(args.mail_from, what="--mail-from")
    if args.port is not None:
        argcheck.port(args.port, what="--port")
    argcheck.node(topology, args.node, what="--from", hosts_only=True)
    if args.via not in (None, "direct"):  # (None: the parameter's default, direct)
        argcheck.host(args.via, what="--via")
        if not argcheck.is_ipv4(args.via):
            argcheck.node(topology, args.via, what="--via")
    if args.server is not None:
        if args.via not in (None, "direct"):
            from sim.errors import ArgumentError

            raise ArgumentError("--server chooses the MX of a direct send: leave out --via")
        argcheck.host(args.server, what="--server")
        if not argcheck.is_ipv4(args.server):
            argcheck.node(topology, args.server, what="--server", hosts_only=True)
    # The password may come from --password-file, MAILLAB_PASSWORD or a prompt.
    args.password = password
    experiment = from_args(Send, cli_args(Send, args))
    wire = None
    if args.pcap:
        from sim.present.wire import Wire

        wire = Wire(args.pcap, args.backend)
    with (
        sim.start(topology, backend=args.backend, state_dir=args.state_dir) as lab,
        wire.capturing(lab) if wire else contextlib.nullcontext(),
    ):
        result = lab.run(args.node, experiment)
    assert isinstance(result, SendResult)
    if args.diagram:
        from sim.present.sequence import sequence_of

        sequence_of(result, topology).save(args.diagram)
    if wire is not None:
        wire.write(result, topology)
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
    argcheck.mail_domain(topology, args.address, what="ADDR")
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
    wire = None
    if args.pcap:
        from sim.present.wire import Wire

        Path(args.pcap).mkdir(parents=True, exist_ok=True)
        wire = Wire(Path(args.pcap) / f"{topology.name}.pcapng", args.backend)
    try:
        with (
            sim.start(
                topology, backend=args.backend, as_node=args.as_node, state_dir=args.state_dir
            ) as lab,
            wire.capturing(lab) if wire else contextlib.nullcontext(),
        ):
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
            trace = lab.trace()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if wire is not None:
        print(f"wrote {wire.write(trace, topology)}", file=sys.stderr)
    if not args.json:
        print("stopped", file=sys.stderr)
    return EXIT_OK


# -- the TUI -------------------------------------------------------------------


def run_home() -> int:
    """``maillab`` alone: the TUI's home screen, given a terminal.

    In a pipe, a CI job or a notebook cell the TUI would write escape codes
    into the output and wait for keys forever: one line, exit 2 instead."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print(NO_TERMINAL, file=sys.stderr)
        return EXIT_USAGE
    try:
        from sim.tui.app import run_tui  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError:
        build_parser().print_help()
        return EXIT_USAGE
    code: int = run_tui()
    return code


# -- the parser -----------------------------------------------------------------


class _Version(argparse.Action):
    """``--version``: the installed distribution's version, looked up only
    when asked (importlib.metadata costs every other command start-up)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("help", "print maillab's version and exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(f"maillab {version()}")
        parser.exit(EXIT_OK)


def version() -> str:
    """maillab's version, from the installed distribution's metadata."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("maillab")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"


def _json_arg(p: argparse.ArgumentParser, what: str = "the result") -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} as one JSON object")


def _backend_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        choices=["local", "mininet"],
        default="local",
        help="local (default: one process, no root) or mininet (root, Linux)",
    )


def _topology_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("topology", metavar="TOPOLOGY", help="a topology file (topologies/*.yaml)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="maillab",
        description="A teaching lab for email architecture. Without a command: the labs "
        "in the terminal UI (needs a terminal).",
    )
    parser.add_argument("--version", action=_Version)
    parser.add_argument(
        "--course",
        metavar="DIR",
        help="use the labs of this course directory (with a course.yaml; "
        "default: $MAILLAB_COURSE, else the shipped labs)",
    )
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    p = sub.add_parser(
        "validate",
        help="check topology and lab files",
        description="Check topology and lab files: each problem as PATH:LINE:COL: message; "
        "exit 2 on any problem.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="topology or lab files (YAML)")
    p.add_argument(
        "--backend",
        choices=("local", "mininet"),
        default=None,
        help="also check that this backend can host every service (Postfix and "
        "Dovecot nodes run only on mininet)",
    )
    _json_arg(p, "the problems")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "dig",
        help="ask the lab DNS from a node",
        description="Start the topology, ask its DNS a question from a node, print the "
        "answer and the trace, stop.",
    )
    _topology_arg(p)
    add_arguments(p, Dig)
    _json_arg(p)
    _backend_arg(p)
    p.set_defaults(func=cmd_dig)

    p = sub.add_parser(
        "connect",
        help="open a TCP connection from a node",
        description="Start the topology, open a TCP connection from a node to a host and "
        "port, say what happened on the way (firewalls included), stop.",
    )
    _topology_arg(p)
    add_arguments(p, Connect)
    _json_arg(p)
    _backend_arg(p)
    p.set_defaults(func=cmd_connect)

    p = sub.add_parser(
        "send",
        help="send one message from a node and follow it",
        description="Start the topology, send one message from a node, report the outcome "
        "(delivered, junk, rejected, deferred, bounced, blocked) and the trace, stop. "
        "Exit 1 when the message was not delivered, as swaks does.",
    )
    _topology_arg(p)
    # The options are the experiment's parameters (sim.experiments.send.Send);
    # the password has more sources than one option (sim.passwords).
    add_arguments(p, Send, skip=("password",))
    from sim.passwords import add_password_arguments

    add_password_arguments(p, what="the password for --user")
    p.add_argument(
        "--state-dir", metavar="DIR", help="keep queues and mailboxes here (see `mailbox`)"
    )
    p.add_argument(
        "--diagram",
        metavar="FILE.svg|FILE.mmd",
        help="write the sequence diagram of the trace (SVG, Mermaid or .txt)",
    )
    p.add_argument(
        "--pcap",
        metavar="FILE",
        help="write the packets as pcapng for Wireshark (mininet: captured, with a TLS "
        "key log beside it; local: synthesised from the trace)",
    )
    _json_arg(p)
    _backend_arg(p)
    p.set_defaults(func=cmd_send)

    p = sub.add_parser(
        "mailbox",
        help="read a mailbox of a lab started with --state-dir",
        description="Print the messages a `send` or `up` with that state directory "
        "delivered to an address.",
    )
    _topology_arg(p)
    p.add_argument("address", metavar="ADDR", help="the mailbox's address, e.g. bob@qq.example")
    p.add_argument(
        "--state-dir", required=True, metavar="DIR", help="the state directory of that run"
    )
    p.add_argument(
        "--folder", default="INBOX", choices=["INBOX", "Junk"], help="INBOX (default) or Junk"
    )
    _json_arg(p, "the messages")
    p.set_defaults(func=cmd_mailbox)

    p = sub.add_parser(
        "up",
        help="start a topology and keep it running",
        description="Start a topology and keep it running until Ctrl-C or SIGTERM; print "
        "every service endpoint (on local: the loopback host:port a real client such as "
        "swaks or dig can use).",
    )
    _topology_arg(p)
    p.add_argument(
        "--as",
        dest="as_node",
        metavar="NODE",
        help="the node real clients on this machine speak for (default: outside)",
    )
    p.add_argument("--state-dir", metavar="DIR", help="keep queues and mailboxes here")
    p.add_argument(
        "--pcap",
        metavar="DIR",
        help="at stop, write DIR/TOPOLOGY.pcapng: the packets of the whole run",
    )
    _json_arg(p, "the endpoints, once ready,")
    _backend_arg(p)
    p.set_defaults(func=cmd_up)

    # Commands that live with their subsystem register themselves here; each
    # module imports its machinery inside its commands, so that building the
    # parser (every command, `--help` too) stays cheap.
    import importlib

    for module in (
        "sim.lab.commands",
        "sim.lab.gradecmd",
        "sim.graphcmd",
        "sim.net.mnclean",
        "sim.tui.command",
        "sim.readcmd",
        "sim.realcmd",
        "sim.scaffold",
        "sim.completion",
        "sim.serve",
    ):
        try:
            registrar = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            continue
        registrar.register(sub)
    from sim.clihelp import finish

    finish(parser)
    return parser


def use_course(directory: str) -> None:
    """``--course DIR``: check the manifest now (a bad one is exit 2), then
    let every part of this process, and the processes it starts (``serve``
    runs a TUI per tab), find the course where ``$MAILLAB_COURSE`` says."""
    from sim.lab.course import ENV, load_course

    course = load_course(directory)
    os.environ[ENV] = str(course.root.resolve())


def _freeze_loaded() -> None:
    """The ``maillab`` process (not a caller of :func:`main`): what is loaded
    to parse the command line (modules, the parser) lives until the process
    exits, so it is moved out of the garbage collector's sight
    (:func:`gc.freeze`). Without that, the allocations of a command (a
    ``send`` starting a lab) set off a full collection walking every one of
    those ~45,000 objects for nothing: ~20 ms of every send, a collection a
    bare Python importing the same modules never makes (issue 14 §3).
    Objects made afterwards are collected as usual."""
    import gc

    gc.freeze()


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    if words[:1] == ["__complete"]:  # the shell completion scripts' helper (hidden)
        from sim.completion import complete_values

        return complete_values(words[1:])
    from sim import clireport

    # Errors are one line on stderr, or one JSON object on stdout when --json
    # is anywhere on the command line (even a wrong one): sim/clireport.py.
    json_mode = clireport.wants_json(words)
    try:
        parser = build_parser()
        args = parser.parse_args(words)
        args.parser = parser  # `completion` prints the completion of this very parser
        if argv is None:
            _freeze_loaded()
        if args.course:
            use_course(args.course)
        if not getattr(args, "command", None):
            return run_home()
        code: int = args.func(args)
        return code
    except BrokenPipeError:  # the reader went away (`maillab ... | head`)
        clireport.silence_stdout()
        return EXIT_FAILED
    except (Exception, KeyboardInterrupt) as err:
        if os.environ.get("MAILLAB_DEBUG") and clireport.kind_of(err) == "internal":
            raise  # a bug: the traceback only on request
        return clireport.report(err, json_mode=json_mode)


if __name__ == "__main__":
    sys.exit(main())
