"""The lab shell of ``maillab up TOPOLOGY --backend mininet``.

One line, one command, run *inside a node*::

    maillab> laptop swaks --to bob@qq.example
    maillab> laptop dig MX qq.example
    maillab> isp iptables -L -v
    maillab> mx-qq tcpdump -i any port 25
    maillab> laptop              (an interactive shell on laptop; exit to come back)

``NODE COMMAND...`` runs ``COMMAND...`` with ``bash -c`` in the node's network
and mount namespaces (``mnexec -a``), on the terminal, so Ctrl-C stops the
command and not the lab. The node's mount namespace has the lab's resolver
configuration bind-mounted over ``/etc/resolv.conf`` (see
:mod:`sim.net.mininet`), so ``dig``, ``swaks`` and anything else that reads it
ask the lab DNS, never the machine's. Each command also gets a UTS namespace
of its own named after the node (``unshare --uts``), so ``hostname`` says
``laptop`` and swaks greets with ``EHLO laptop``. ``MAILLAB_CA`` names the
lab CA's certificate (``swaks --tls-ca-path "$MAILLAB_CA"``, ``openssl
s_client -CAfile "$MAILLAB_CA"``).

Built-in commands: ``nodes``, ``endpoints``, ``help``, ``exit`` (or Ctrl-D).
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Protocol

from sim.net.api import Endpoint
from sim.topology.graph import LabNetwork

__all__ = ["LabShell", "ShellBackend", "interactive_shell"]

PROMPT = "maillab> "

HELP = """\
NODE COMMAND...   run COMMAND in NODE (its network, the lab DNS), e.g.
                    laptop swaks --to bob@qq.example
                    laptop dig MX qq.example
                    isp iptables -L -v
                    mx-qq tcpdump -i any port 25
NODE              an interactive shell in NODE (exit to come back)
nodes             the nodes, their addresses and services
endpoints         every service, and whether `outside` can reach it
help              this text
exit              stop the lab (also Ctrl-D)"""


class ShellBackend(Protocol):
    """What the shell needs from a running backend."""

    network: LabNetwork
    state_dir: Path

    def command(self, node: str, argv: list[str]) -> list[str]: ...

    def node_env(self) -> dict[str, str]: ...

    def endpoints(self) -> list[Endpoint]: ...


class _Leave(Exception):
    """SIGTERM while the shell waits: leave it, so the lab stops."""


@contextlib.contextmanager
def _signals_for_child() -> Iterator[None]:
    """While a command runs, Ctrl-C is the command's (it shares the terminal's
    process group), not the shell's. A Python-level handler, unlike SIG_IGN,
    is not inherited across exec, so the command gets the default action."""
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class LabShell:
    def __init__(
        self, backend: ShellBackend, *, stdout: IO[str] | None = None, stderr: IO[str] | None = None
    ) -> None:
        self.backend = backend
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        self.uts = shutil.which("unshare") is not None and shutil.which("hostname") is not None

    # -- commands in nodes -----------------------------------------------------------

    def argv(self, node: str, command: str | None) -> list[str]:
        """The full argv that runs ``command`` (None: an interactive shell) in ``node``."""
        inner = ["bash", "--norc", "-i"] if command is None else ["bash", "-c", command]
        if self.uts:
            # A hostname of the node's own, for this command only.
            inner = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', node, *inner]
        return self.backend.command(node, inner)

    def env(self, node: str) -> dict[str, str]:
        env = self.backend.node_env()
        env.update(
            MAILLAB_NODE=node,
            PS1=f"{node}# ",
            MAILLAB_CA=str(self.backend.state_dir / "tls" / "ca.pem"),
        )
        return env

    def run(
        self, node: str, command: str | None, *, capture: bool = False, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in ``node``; with ``capture`` its output is returned."""
        argv = self.argv(node, command)
        if capture:
            return subprocess.run(
                argv,
                env=self.env(node),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        with _signals_for_child():
            proc = subprocess.Popen(
                argv, env=self.env(node), stdout=self._fd(self.stdout), stderr=self._fd(self.stderr)
            )
            while True:
                try:
                    code = proc.wait()
                    break
                except KeyboardInterrupt:  # pragma: no cover - the handler swallows it
                    continue
        return subprocess.CompletedProcess(argv, code)

    @staticmethod
    def _fd(stream: IO[str]) -> Any:
        try:
            stream.flush()
            return stream.fileno()
        except (AttributeError, OSError, ValueError):
            return None

    # -- one line ------------------------------------------------------------------

    def onecmd(self, line: str) -> bool:
        """Run one line; False when the shell should end."""
        try:
            words = shlex.split(line, comments=True)
        except ValueError as err:
            self.say(f"maillab: {err}", error=True)
            return True
        if not words:
            return True
        first = words[0]
        if first in ("exit", "quit"):
            return False
        if first in ("help", "?"):
            self.say(HELP)
        elif first == "nodes":
            self.say(self.nodes_text())
        elif first == "endpoints":
            self.say(self.endpoints_text())
        elif first in self.backend.network.graph:
            rest = line.strip()[len(first) :].strip()
            result = self.run(first, rest or None)
            if result.returncode not in (0, None) and rest:
                self.say(f"[{first}: exit status {result.returncode}]", error=True)
        else:
            self.say(
                f"maillab: {first}: not a node or a command "
                "(`nodes` lists the nodes, `help` the commands)",
                error=True,
            )
        return True

    def say(self, text: str, *, error: bool = False) -> None:
        stream = self.stderr if error else self.stdout
        print(text, file=stream, flush=True)

    def nodes_text(self) -> str:
        network = self.backend.network
        rows = []
        for name in network.nodes():
            node = network.node(name)
            addresses = " ".join(str(i.address) for i in network.interfaces(name))
            services = ",".join(node.services.names()) or "-"
            kind = node.kind + (" (synthetic)" if network.is_synthetic(name) else "")
            rows.append((name, kind, addresses, services))
        width = [max(len(r[i]) for r in rows) for i in range(3)]
        return "\n".join(
            f"{r[0]:<{width[0]}}  {r[1]:<{width[1]}}  {r[2]:<{width[2]}}  {r[3]}" for r in rows
        )

    def endpoints_text(self) -> str:
        lines = []
        for ep in self.backend.endpoints():
            state = f"blocked: {ep.blocked}" if ep.blocked else "reachable from outside"
            lines.append(f"{ep.node:<12} {ep.service:<11} {ep.proto} {ep.lab:<22} {state}")
        return "\n".join(lines) or "(no services)"

    # -- the loop ------------------------------------------------------------------

    def loop(self, stdin: IO[str] | None = None) -> None:
        """Read lines until ``exit``, end of input or SIGTERM."""
        interactive = stdin is None and sys.stdin.isatty()
        if interactive:
            with contextlib.suppress(ImportError):
                import readline  # noqa: F401  (line editing and history for input())
            self.say("lab shell: NODE COMMAND runs COMMAND in NODE; `help`, `nodes`, `exit`")

        def leave(signum: int, frame: Any) -> None:
            raise _Leave

        previous_term = signal.signal(signal.SIGTERM, leave)
        previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            while True:
                try:
                    if stdin is None:
                        line = input(PROMPT if interactive else "")
                    else:
                        line = stdin.readline()
                        if not line:
                            break
                except EOFError:
                    if interactive:
                        self.say("")
                    break
                except KeyboardInterrupt:
                    self.say("")
                    continue
                if not self.onecmd(line):
                    break
        except _Leave:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous_term)
            signal.signal(signal.SIGINT, previous_int)


def interactive_shell(lab: Any) -> None:
    """The shell for a running lab (a :class:`sim.Lab` on the mininet backend)."""
    backend = getattr(lab, "backend", lab)
    LabShell(backend).loop()
