"""``maillab graph TOPOLOGY``: draw a topology, for instructors and handouts.

::

    maillab graph topologies/home-isp.yaml                  # a text tree on stdout
    maillab graph topologies/home-isp.yaml --format svg     # writes ./home-isp.svg
    maillab graph topologies/home-isp.yaml -o slide.png     # the format from the suffix
    maillab graph topologies/home-isp.yaml --format mermaid # flowchart text for Markdown
    maillab graph topologies/home-isp.yaml --format dot | dot -Tsvg > home-isp.svg
    maillab graph topologies/home-isp.yaml --format svg \\
        --highlight laptop,isp,internet,mx-qq --stopped-at isp

Exit codes as everywhere (DESIGN.md): 0 drawn, 2 bad input (a topology with
problems, an unknown format, a file that cannot be written, matplotlib
missing for a picture); every error is one line, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["cmd_graph", "register"]

# sim.graphdraw.FORMATS, spelled out so that building the parser (every
# `maillab` command) does not import networkx with it; a test keeps them equal.
FORMATS = ("svg", "png")
#: Formats written as text (stdout by default); the others are pictures.
TEXT_FORMATS = ("text", "mermaid", "dot")
CHOICES = (*TEXT_FORMATS, *FORMATS)
_SUFFIXES = {
    "txt": "text",
    "text": "text",
    "mmd": "mermaid",
    "mermaid": "mermaid",
    "dot": "dot",
    "gv": "dot",
}


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``graph`` to the ``maillab`` sub-commands (``subparsers`` is what
    ``ArgumentParser.add_subparsers()`` returned)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "graph",
        help="draw a topology (text tree, mermaid, dot, svg or png)",
        description="Draw a topology: routers, links, LANs, hosts with their addresses and "
        "services, and firewall rules. Text goes to stdout; svg and png go to --output, "
        "or to TOPOLOGY-NAME.svg/.png in the current directory.",
    )
    p.add_argument("topology", metavar="TOPOLOGY", help="a topology file")
    p.add_argument(
        "--format",
        choices=CHOICES,
        default=None,
        help="text (default), mermaid, dot, svg or png; without it, --output's suffix decides",
    )
    p.add_argument(
        "--output",
        "-o",
        metavar="FILE",
        help="write here instead of stdout (text, mermaid, dot) or ./NAME.svg|png (pictures)",
    )
    p.add_argument(
        "--highlight",
        metavar="NODE,NODE,...",
        help="mark a path through the lab, e.g. laptop,isp,internet,mx-qq",
    )
    p.add_argument("--stopped-at", metavar="NODE", help="mark where that path stopped")
    p.add_argument(
        "--ascii", action="store_true", help="text: draw the tree with plain ASCII characters"
    )
    p.set_defaults(func=cmd_graph)
    return p


def _format(requested: str | None, output: str | None) -> str:
    from sim.graphdraw import DrawError

    suffix = Path(output).suffix.lower().lstrip(".") if output else ""
    if requested is None:
        if suffix in FORMATS:
            return suffix
        if suffix == "":
            return "text"
        if suffix in _SUFFIXES:
            return _SUFFIXES[suffix]
        raise DrawError(
            f"cannot tell a format from {output!r}: use --format text, mermaid, dot, svg or png"
        )
    if requested in FORMATS and suffix in FORMATS and suffix != requested:
        raise DrawError(f"--format {requested} does not match the file name {output!r}")
    return requested


def _stdout_takes_unicode() -> bool:
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "├──│└«»→·".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def cmd_graph(args: argparse.Namespace) -> int:
    import sim
    from sim.graphdraw import DrawError, render_image, render_text

    fmt = _format(args.format, args.output)
    topology = sim.load_topology(args.topology)
    highlight = (
        [n.strip() for n in args.highlight.split(",") if n.strip()] if args.highlight else None
    )
    if fmt in TEXT_FORMATS:
        if fmt == "text":
            ascii_only = args.ascii or (args.output is None and not _stdout_takes_unicode())
            text = render_text(
                topology, highlight=highlight, stopped_at=args.stopped_at, ascii_only=ascii_only
            )
        else:
            from sim.present.topotext import render_dot, render_mermaid

            render = render_mermaid if fmt == "mermaid" else render_dot
            text = render(topology, highlight=highlight, stopped_at=args.stopped_at)
        if args.output is None:
            sys.stdout.write(text)
            return 0
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as err:
            raise DrawError(f"cannot write {args.output}: {err.strerror or err}") from None
        print(f"wrote {args.output}", file=sys.stderr)
        return 0
    out = Path(args.output) if args.output else Path(f"{topology.name}.{fmt}")
    render_image(topology, out, fmt, highlight=highlight, stopped_at=args.stopped_at)
    print(f"wrote {out}", file=sys.stderr)
    return 0
