"""The finishing touches of the ``maillab`` parser: examples, layout, completion.

:func:`finish` runs once the subcommands are registered (whichever module
defines them): each subcommand's help ends with two or three examples
(:data:`EXAMPLES`; ``tests/test_cli_conventions.py`` parses every one of them
with the real parser), help text keeps its examples as written, and arguments
that take a lab id, a node name or a file say so to shell completion
(:mod:`sim.completion`).
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Iterator

__all__ = ["EXAMPLES", "HelpFormatter", "finish", "subparsers_of", "walk"]

_T = "topologies/home-isp.yaml"

#: Two or three examples per subcommand (``new lab`` is the subcommand
#: ``lab`` of ``new``), in the order a newcomer would try them.
EXAMPLES: dict[str, tuple[str, ...]] = {
    "": ("maillab list", "maillab run receive-only", "maillab --course my-course check"),
    "validate": (
        f"maillab validate {_T}",
        "maillab validate topologies/*.yaml labs/*.yaml",
        "maillab validate labs/05-spf.yaml --json",
    ),
    "dig": (
        f"maillab dig {_T} --from laptop qq.example MX",
        f"maillab dig {_T} --from mx-qq 25.2.0.192.in-addr.arpa PTR",
        f"maillab dig {_T} --from laptop home.example TXT --json",
    ),
    "connect": (
        f"maillab connect {_T} --from laptop 203.0.113.25 25",
        f"maillab connect {_T} --from laptop 192.0.2.25 587",
    ),
    "send": (
        f"maillab send {_T} --from laptop --to bob@qq.example",
        f"maillab send {_T} --from laptop --to bob@qq.example --via smtp-isp "
        "--user alice@home.example --password-file alice.pw",
        f"maillab send {_T} --from laptop --to bob@qq.example --via smtp-isp "
        "--user alice@home.example --settle --json",
    ),
    "mailbox": (
        f"maillab mailbox {_T} bob@qq.example --state-dir run1",
        f"maillab mailbox {_T} bob@qq.example --state-dir run1 --folder Junk --json",
    ),
    "up": (
        f"maillab up {_T}",
        f"maillab up {_T} --as laptop --state-dir run1",
        f"maillab up {_T} --backend mininet",
    ),
    "list": ("maillab list", "maillab list --json"),
    "check": (
        "maillab check spf --explain",
        "maillab check receive-only dkim --variants 3",
        "maillab check what-is-wrong --all-faults --backend mininet",
    ),
    "export": ("maillab export -o alice.json", "maillab export dkim spf -o alice-dkim.json"),
    "grade": (
        "maillab grade --explain",
        "maillab grade submissions/*.json --csv grades.csv",
        "maillab grade alice.json --backend mininet --json grades.json",
    ),
    "graph": (
        f"maillab graph {_T}",
        f"maillab graph {_T} -o home-isp.svg",
        f"maillab graph {_T} --highlight laptop,isp,internet,mx-qq --stopped-at isp",
    ),
    "pack": (
        "maillab pack --student -o course-students",
        "maillab pack receive-only spf --instructor -o course-staff",
        "maillab --course course-students list",
    ),
    "clean": ("maillab clean --dry-run", "maillab clean"),
    "run": ("maillab run receive-only", "maillab run 5 --backend mininet"),
    "read": (
        "maillab read topologies/mta-mda.yaml --from bob-pc --via mx-qq --user bob",
        "maillab read topologies/mta-mda.yaml --from bob-pc --via mx-qq --user bob "
        "--password-file bob.pw --protocol pop3 --json",
    ),
    "realconfig": (
        "maillab realconfig topologies/real-thing.yaml mx-qq",
        "maillab realconfig topologies/real-thing.yaml homesrv --json",
    ),
    "new": ("maillab new topology my-net", "maillab new lab my-lab --topology home-isp"),
    "new topology": (
        "maillab new topology my-net",
        "maillab new topology my-net --dir course/topologies",
    ),
    "new lab": ("maillab new lab my-lab", "maillab new lab 11-greylisting --topology reliability"),
    "serve": (
        "maillab serve",
        "maillab serve --port 0",
        "maillab serve --host 127.0.0.1 --port 8000 --labs-dir my-course/labs",
    ),
    "completion": (
        "maillab completion bash > ~/.local/share/bash-completion/completions/maillab",
        'maillab completion zsh > "${fpath[1]}/_maillab"',
        "maillab completion fish > ~/.config/fish/completions/maillab.fish",
    ),
}

# What an argument takes, by its destination, for shell completion.
_NODE_DESTS = {"node", "as_node", "stopped_at", "via"}
_LAB_DESTS = {"labs", "lab"}
_YAML_DESTS = {"topology", "paths"}
_FILE_METAVARS = {"FILE"}
_DIR_METAVARS = {"DIR"}


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that an indented paragraph (the
    examples) is kept as written instead of being re-wrapped."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out = []
        for paragraph in text.split("\n\n"):
            lines = paragraph.splitlines()
            if lines and all(line.startswith("  ") or line.endswith(":") for line in lines):
                out.append("\n".join(indent + line for line in lines))
            else:
                out.append(super()._fill_text(paragraph, width, indent))
        return "\n\n".join(out)


def subparsers_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands of ``parser`` by name (aliases left out)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: dict[int, str] = {}
            out = {}
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen[id(sub)] = name
                    out[name] = sub
            return out
    return {}


def walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (sub)command of ``parser``: (its words after ``maillab``, parser)."""
    yield path, parser
    for name, sub in subparsers_of(parser).items():
        yield from walk(sub, (*path, name))


def _examples(lines: tuple[str, ...]) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _completion_for(action: argparse.Action) -> object | None:
    from sim import completion

    if action.option_strings and action.nargs == 0:
        return None
    if action.dest in _NODE_DESTS and action.metavar != "LAB":
        return completion.NODES
    if action.dest in _LAB_DESTS:
        return completion.LABS
    if action.dest in _YAML_DESTS and not action.option_strings:
        return completion.TOPOLOGY_FILES
    if action.metavar in _FILE_METAVARS or action.dest == "output":
        return {"bash": "_shtab_compgen_files", "zsh": "_files", "fish": "(__fish_complete_path)"}
    if action.metavar in _DIR_METAVARS:
        return {
            "bash": "_shtab_compgen_dirs",
            "zsh": "_files -/",
            "fish": "(__fish_complete_directories)",
        }
    return None


def finish(parser: argparse.ArgumentParser) -> None:
    """Examples, the help layout and completion hints on every subcommand."""
    for path, sub in walk(parser):
        sub.formatter_class = HelpFormatter
        examples = EXAMPLES.get(" ".join(path))
        if examples:
            epilog = _examples(examples)
            sub.epilog = (
                f"{textwrap.dedent(sub.epilog).strip()}\n\n{epilog}" if sub.epilog else epilog
            )
        for action in sub._actions:
            hint = _completion_for(action)
            if hint is not None:
                action.complete = hint  # type: ignore[attr-defined]
