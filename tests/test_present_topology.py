"""Readable topology drawings: Mermaid and DOT text, pictures cropped to the
path and sized to the page, failed legs marked, ``maillab graph --format``."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import sim
from sim.events import Net
from sim.present.topotext import render_dot, render_mermaid
from sim.trace import Trace, TraceEvent, event

ROOT = Path(__file__).resolve().parent.parent
PATH = ["laptop", "isp", "internet", "mx-qq"]

_ID = r"[A-Za-z_][A-Za-z0-9_]*"
_LABEL = r'"[^"]*"'
_FLOWCHART = [
    re.compile(rf"^    {_ID}(?:\[{_LABEL}\]|\(\({_LABEL}\)\)|\[/{_LABEL}/\]|>{_LABEL}\])$"),
    re.compile(rf"^    {_ID} (?:---|-\.-|---\|{_LABEL}\|) {_ID}$"),
    re.compile(r"^    linkStyle \d+ [a-z-]+:[^;\s]+(?:,[a-z-]+:[^,;]+)*$"),
    re.compile(rf"^    style {_ID} [a-z-]+:[^;\s]+(?:,[a-z-]+:[^,;\s]+)*$"),
]


def flowchart_problems(text: str) -> list[str]:
    lines = text.rstrip("\n").split("\n")
    problems = [] if lines[0] == "flowchart LR" else ["line 1: not 'flowchart LR'"]
    declared: set[str] = set()
    edges = 0
    for number, line in enumerate(lines[1:], start=2):
        if not any(rule.match(line) for rule in _FLOWCHART):
            problems.append(f"line {number}: {line!r}")
            continue
        decl = re.match(rf"^    ({_ID})[\[\(>]", line)
        if decl:
            declared.add(decl.group(1))
        edge = re.match(rf"^    ({_ID}) \S+ ({_ID})$", line)
        if edge:
            edges += 1
            problems += [
                f"line {number}: {n} undeclared" for n in edge.groups() if n not in declared
            ]
        style = re.match(r"^    linkStyle (\d+) ", line)
        if style and int(style.group(1)) >= edges:
            problems.append(f"line {number}: linkStyle of a link not drawn yet")
    return problems


@pytest.fixture(scope="module")
def home() -> object:
    return sim.load_topology("home-isp")


def test_mermaid_has_every_node_and_the_stopped_path(home: object) -> None:
    text = render_mermaid(home, highlight=PATH, stopped_at="isp")  # type: ignore[arg-type]
    assert flowchart_problems(text) == []
    for node in ("laptop", "isp", "internet", "ns", "mx_qq", "smtp_isp"):
        assert re.search(rf"^    {node}[\[\(]", text, re.M), node
    assert "drop tcp dport 25 from 198.51.100.192/26" in text  # the rule, as a note
    assert "style isp fill:#fde2e1" in text
    assert "stroke-dasharray" in text and "stroke-width:4px" in text  # missed and reached


def test_dot_is_balanced_and_marks_the_path(home: object) -> None:
    text = render_dot(home, highlight=PATH, stopped_at="isp")  # type: ignore[arg-type]
    assert text.startswith('graph "home-isp" {') and text.rstrip().endswith("}")
    body = text.strip().split("\n")[1:-1]
    assert all(line.rstrip().endswith(";") for line in body)
    assert text.count('"isp" -- "internet"') == 1 and "style=dashed" in text
    assert '"laptop" -- "lan:' in text and "penwidth=4" in text


@pytest.mark.parametrize(("fmt", "marker"), [("mermaid", "flowchart LR"), ("dot", "graph ")])
def test_graph_command_prints_mermaid_and_dot(fmt: str, marker: str, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "sim.cli", "graph", "home-isp", "--format", fmt],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(marker)
    out = tmp_path / f"x.{'mmd' if fmt == 'mermaid' else 'dot'}"
    run = subprocess.run(
        [sys.executable, "-m", "sim.cli", "graph", "home-isp", "-o", str(out)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )  # fmt: skip
    assert run.returncode == 0 and out.read_text().startswith(marker)


def _net(path: list[str], dst: str, verdict: str = "accept", t: float = 1.0) -> TraceEvent:
    data = Net(src="x", dst=dst, proto="tcp", port=25, verdict=verdict, path=path)  # type: ignore[arg-type]
    return event(t, path[0], "net", data)


def test_a_refused_first_mx_is_a_failed_leg_drawn_in_red() -> None:
    from sim.notebook import draw_path, journey

    internet = sim.load_topology("internet")
    relay = ["smtp-isp", "isp", "internet"]
    trace = Trace(
        events=[
            _net(["laptop", "isp", "smtp-isp"], "192.0.2.25", t=1.0),
            _net([*relay, "mx1-backup"], "203.0.113.50", t=2.0),
            TraceEvent(
                2.0,
                "net",
                "smtp-isp",
                "closed",
                {
                    "src": "x",
                    "dst": "203.0.113.50",
                    "proto": "tcp",
                    "port": 25,
                    "verdict": "closed",
                },
            ),
            _net([*relay, "mx2-backup"], "203.0.113.51", t=3.0),
        ]
    )
    way = journey(internet, trace)
    assert way.failed == (("smtp-isp", "isp", "internet", "mx1-backup"),)
    assert way.path[-1] == "mx2-backup" and way.stopped_at is None
    picture = draw_path(internet, trace)
    svg = ET.fromstring(picture.svg())
    ids = {el.get("id") for el in svg.iter()}
    assert "failed-0" in ids and "hop-6" in ids
    html = picture._repr_html_()
    assert 'width="100%"' in html and "max-width:" in html and "<?xml" not in html


def test_a_path_picture_is_cropped_and_its_hop_numbers_stay_large() -> None:
    from sim.notebook import draw_path, draw_topology

    internet = sim.load_topology("internet")
    trace = Trace(events=[_net(["laptop", "isp", "internet", "mx-qq"], "203.0.113.25", "accept")])
    whole = draw_topology(internet).figure.get_size_inches()
    cropped = draw_path(internet, trace).figure.get_size_inches()
    assert cropped[0] < whole[0] * 0.8  # the unused part of the lab is left out
    full = draw_path(internet, trace, crop=False).figure.get_size_inches()
    assert tuple(full) == tuple(whole)
    hop = next(
        t
        for ax in draw_path(internet, trace).figure.axes
        for t in ax.texts
        if t.get_gid() == "hop-1"
    )
    assert hop.get_fontsize() >= 10
