"""The free experiment box: the student's own idea, tried on the running lab.

One line, the way the command line says it, run from a node of the lab::

    dig laptop qq.example MX
    connect laptop mx.qq.example 587
    send laptop bob@qq.example via=smtp-isp user=alice@home.example password=secret

The result's trace goes to the same views as a step's experiment (Trace,
Map). Nothing is judged or saved: it is the student's notebook margin.
:func:`parse_experiment` reads the line (pure, tested on its own).
"""

from __future__ import annotations

import shlex

from rich.console import Group, RenderableType
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Static

from sim.lab.engine import ExperimentOutcome
from sim.lab.model import ExperimentRun
from sim.topology.graph import OUTSIDE
from sim.topology.model import Topology
from sim.tui.tracefmt import headline

__all__ = ["ExperimentBox", "parse_experiment"]

USAGE = (
    "dig NODE NAME [TYPE] · connect NODE HOST PORT · "
    "send NODE ADDRESS [via=NODE server=MX user=U password=P mail_from=A from_header=A "
    "subject=S]"
)

_SEND_KEYS = (
    "via",
    "server",
    "user",
    "password",
    "mail_from",
    "from_header",
    "subject",
    "body",
    "port",
)


def parse_experiment(line: str, topology: Topology) -> tuple[ExperimentRun | None, str | None]:
    """(the experiment, None) or (None, what is wrong with the line)."""
    try:
        words = shlex.split(line)
    except ValueError as err:
        return None, f"cannot read the line: {err}"
    if not words:
        return None, f"Type an experiment: {USAGE}"
    verb, args = words[0].lower(), words[1:]
    nodes = [n.name for n in topology.hosts()]
    if verb not in ("dig", "connect", "send"):
        return None, f"{verb!r} is not an experiment: {USAGE}"
    if not args:
        return None, f"{verb}: from which node? ({', '.join(nodes)})"
    node = args[0]
    if node not in nodes and node != OUTSIDE:
        return None, f"no node {node!r} in this lab (nodes: {', '.join([*nodes, OUTSIDE])})"
    if verb == "dig":
        if len(args) not in (2, 3):
            return None, "dig NODE NAME [TYPE], e.g. dig laptop qq.example MX"
        rtype = (args[2] if len(args) == 3 else "A").upper()
        return ExperimentRun("dig", node, (("name", args[1]), ("type", rtype))), None
    if verb == "connect":
        if len(args) != 3 or not args[2].isdigit() or not 0 < int(args[2]) < 65536:
            return None, "connect NODE HOST PORT, e.g. connect laptop mx.qq.example 587"
        return ExperimentRun("connect", node, (("host", args[1]), ("port", int(args[2])))), None
    if len(args) < 2 or "@" not in args[1]:
        return None, "send NODE ADDRESS [key=value...], e.g. send outside bob@qq.example"
    options: dict[str, str] = {}
    for word in args[2:]:
        key, sep, value = word.partition("=")
        if not sep or key not in _SEND_KEYS:
            return None, f"{word!r}: options are key=value with key one of {', '.join(_SEND_KEYS)}"
        options[key] = value
    port = options.pop("port", None)
    if port is not None and not port.isdigit():
        return None, f"port={port}: a number"
    via = options.pop("via", "direct")
    if via != "direct" and via not in nodes:
        return None, f"via={via}: no node {via!r} in this lab"
    server = options.get("server")
    if server is not None:
        # A direct send to this MX instead of the MX records (a backup MX).
        mx_nodes = [n.name for n in topology.hosts() if n.services.mx is not None]
        if via != "direct":
            return None, "server= chooses the MX of a direct send: leave out via="
        if server not in mx_nodes and not _is_address(server):
            return None, f"server={server}: not an mx node (mx nodes: {', '.join(mx_nodes)})"
    values: dict[str, object] = {
        "to": [args[1]],
        "via": via,
        "subject": options.pop("subject", None) or "Trying something",
        **options,
    }
    if port is not None:
        values["port"] = int(port)
    return ExperimentRun("send", node, tuple(values.items())), None


class ExperimentBox(Vertical):
    """A line to type an experiment, and what became of it."""

    class Wanted(Message):
        """Run this experiment (the lab screen runs it and shows the trace)."""

        def __init__(self, box: ExperimentBox, run: ExperimentRun) -> None:
            super().__init__()
            self.box = box
            self.run = run

        @property
        def control(self) -> ExperimentBox:
            return self.box

    def __init__(
        self, topology: Topology, *, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.topology = topology
        self.last: ExperimentOutcome | None = None

    def compose(self) -> ComposeResult:
        nodes = ", ".join([*(n.name for n in self.topology.hosts()), OUTSIDE])
        yield Static(
            Text("Try your own idea on this lab (nothing is judged or saved).\n", style="bold")
            + Text(USAGE + f"\nNodes: {nodes}", style="dim"),
            id="try-help",
        )
        # The example names a node of this lab: a client (a host that runs
        # no service) if there is one, as a student would start from it.
        hosts = self.topology.hosts()
        client = next(
            (n.name for n in hosts if not any(vars(n.services).values())),
            hosts[0].name if hosts else "laptop",
        )
        yield Input(placeholder=f"e.g.  dig {client} qq.example MX   (Enter runs)", id="try-input")
        with VerticalScroll(id="try-scroll"):
            yield Static("", id="try-result")

    def focus_input(self) -> None:
        self.query_one("#try-input", Input).focus()

    def scroller(self) -> VerticalScroll:
        return self.query_one("#try-scroll", VerticalScroll)

    @on(Input.Submitted, "#try-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        run, problem = parse_experiment(event.value, self.topology)
        result = self.query_one("#try-result", Static)
        if run is None:
            result.update(Text(f"✗ {problem}", style="bold red"))
            return
        result.update(Text(f"Running: {run.describe()}…", style="dim"))
        self.post_message(self.Wanted(self, run))

    def show_outcome(self, outcome: ExperimentOutcome) -> None:
        self.last = outcome
        result = self.query_one("#try-result", Static)
        parts: list[RenderableType] = [Text(outcome.experiment.describe(), style="bold")]
        if outcome.error is not None:
            parts.append(Text(f"✗ {outcome.error}", style="red"))
        else:
            parts.append(headline(outcome.data))
            parts.append(
                Text(
                    "Its trace is in 2 (s d w e k q b for each view), its path on the map in 3.",
                    style="dim",
                )
            )
        result.update(Group(*parts))


def _is_address(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)
