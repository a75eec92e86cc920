"""``maillab serve``: the TUI in a web browser, through textual-serve.

textual-serve (a Textualize package) is a small aiohttp server: its page runs
xterm.js, and each browser tab that opens the page gets a websocket and *its
own process* of the app, started with ``TEXTUAL_DRIVER`` set to Textual's web
driver (the app speaks framed packets on stdin/stdout instead of a terminal).
Closing the tab closes the websocket; the server then asks the process to
quit, and the app stops the labs it started (``MaillabApp.stop_all``).

There is **no login**: whoever reaches the port gets a lab session running as
the user who started the server. So the default is loopback, a non-loopback
``--host`` earns a warning, and a class uses JupyterHub instead (a login and
a server per student; see ``docs/classroom.md``).

``sim.cli`` wires the command in with :func:`register`.
"""

from __future__ import annotations

import argparse
import ipaddress
import shlex
import socket
import sys
import textwrap
from typing import Any

__all__ = ["NO_LOGIN", "app_command", "register", "serve"]

NO_LOGIN = (
    "There is no login of its own: anyone who can reach this address "
    "gets a lab session running as this user. Keep it on loopback (127.0.0.1); "
    "for a class, use JupyterHub (docs/classroom.md)."
)

DEFAULT_PORT = 8000

EPILOG = """\
There is no login: each browser tab that opens the page gets its own maillab
process running as the user who started the server. Keep it on loopback; for a
class use JupyterHub (docs/classroom.md)."""


def app_command(labs_dir: str | None = None) -> str:
    """The shell command textual-serve runs for each browser tab.

    Not ``maillab`` itself: with no terminal, the CLI prints one line and
    exits (DESIGN.md), while here the web driver is the terminal. So the
    served process enters the TUI directly (``python -m sim.serve``), with
    the same interpreter as this server.
    """
    argv = [sys.executable, "-m", "sim.serve"]
    if labs_dir is not None:
        argv += ["--labs-dir", labs_dir]
    return shlex.join(argv)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port(host: str) -> int:
    """A port free on ``host`` now (textual-serve needs the number before it
    binds, to write the page's websocket address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    public_url: str | None = None,
    labs_dir: str | None = None,
) -> int:
    """Serve the TUI on ``http://host:port/`` until Ctrl-C or SIGTERM."""
    from sim.errors import SimError

    try:
        from textual_serve.server import Server
    except ModuleNotFoundError:
        raise SimError("maillab serve needs textual-serve: pip install 'maillab[serve]'") from None

    if not 0 <= port <= 65535:
        raise SimError(f"serve: --port {port}: not a port number (0-65535)")
    try:
        if port == 0:
            port = free_port(host)
    except OSError as err:
        raise SimError(f"serve: cannot listen on {host}: {err.strerror or err}") from None
    shown = f"[{host}]" if ":" in host else host
    url = public_url or f"http://{shown}:{port}"
    print(f"maillab serve: {url}/  (a maillab process per browser tab)", flush=True)
    print(f"maillab serve: {NO_LOGIN}", flush=True)
    if not is_loopback(host):
        print(
            f"maillab serve: WARNING: listening on {host}, not loopback: "
            "every machine that can reach it gets a session, without a password.",
            file=sys.stderr,
            flush=True,
        )

    class _Server(Server):
        async def on_startup(self, app: Any) -> None:
            """textual-serve prints its logo and the per-tab command here; the
            lines above already say what a user needs."""

    server = _Server(
        app_command(labs_dir), host=host, port=port, title="maillab", public_url=public_url
    )
    try:
        server.serve()
    except OSError as err:  # the port is taken, the address is not this machine's
        raise SimError(f"serve: cannot listen on {host}:{port}: {err.strerror or err}") from None
    return 0


# -- the command line -----------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    return serve(args.host, args.port, public_url=args.public_url, labs_dir=args.labs_dir)


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``serve`` to the ``maillab`` subcommands."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="serve the TUI to a web browser (no login: loopback by default)",
        description=textwrap.fill(
            "Serve the maillab TUI to a web browser with textual-serve: each browser "
            "tab gets its own maillab process. " + NO_LOGIN,
            width=78,
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; anything else is reachable "
        "by others, without a login)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        metavar="N",
        help=f"port (default {DEFAULT_PORT}; 0: any free port)",
    )
    p.add_argument(
        "--public-url",
        metavar="URL",
        help="the address browsers use, when a proxy sits in front "
        "(e.g. behind jupyter-server-proxy)",
    )
    p.add_argument(
        "--labs-dir",
        metavar="DIR",
        help="where the lab files are (default: the repository's or the package's)",
    )
    p.set_defaults(func=cmd_serve)
    return p


# -- the process each browser tab gets ------------------------------------------------


def _served_app(argv: list[str] | None = None) -> int:
    """The TUI's home screen, in the process textual-serve started for one tab
    (``TEXTUAL_DRIVER`` in the environment makes Textual talk to the page)."""
    parser = argparse.ArgumentParser(prog="python -m sim.serve")
    parser.add_argument("--labs-dir")
    args = parser.parse_args(argv)
    from sim.tui.app import run_tui

    return run_tui(labs=args.labs_dir)


if __name__ == "__main__":
    sys.exit(_served_app())
