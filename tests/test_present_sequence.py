"""Sequence diagrams of real traces: the model, Mermaid, 80-column text, SVG, the CLI."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from presentkit import SvgSnapshot, TextSnapshot, mermaid_problems, recorded

from sim.present.sequence import sequence_of
from sim.topology import load_topology
from sim.trace import Trace, TraceEvent

ROOT = Path(__file__).resolve().parent.parent
CASES = ["blocked", "submitted", "dmarc-reject", "bounced"]


def test_a_dropped_connection_ends_at_the_router_and_is_the_failing_step() -> None:
    seq = sequence_of(recorded("blocked"))
    assert seq.lane_names() == ["laptop", "isp", "ns"]  # DNS-only lanes on the right
    failing = seq.steps[seq.failing] if seq.failing is not None else None
    assert failing is not None and failing.style == "block"
    assert (failing.src, failing.dst) == ("laptop", "isp")
    assert "dropped (rule 1)" in failing.text
    # The client's wait for its time-out follows, in lab seconds.
    wait = seq.steps[seq.failing + 1]  # type: ignore[operator]
    assert wait.style == "note" and wait.text.startswith("waited 30.")


def test_a_submission_shows_every_hop_tls_and_the_checks_in_order() -> None:
    result = recorded("submitted")
    seq = sequence_of(result, load_topology(ROOT / "topologies" / "home-isp.yaml"))
    assert seq.failing is None  # delivered: nothing to highlight
    names = seq.lane_names()
    assert names[0] == "laptop"
    assert {"smtp-isp", "mx-qq", "ns"} <= set(names)
    texts = [s.text for s in seq.steps]
    assert "STARTTLS" in texts and "AUTH PLAIN ********" in texts
    tls = [s for s in seq.steps if s.kind == "tls"]
    assert [(s.src, s.dst) for s in tls] == [("laptop", "smtp-isp"), ("smtp-isp", "mx-qq")]
    checks = [s.text.split(":")[0] for s in seq.steps if s.kind == "check"]
    assert checks == ["ptr", "dnsbl", "spf", "dkim", "dmarc"]  # the order the MX ran them
    queue = [s.text for s in seq.steps if s.kind == "queue"]
    assert queue[0].endswith("queued") and "delivered" in queue[-1]
    # The lab address beside each lane name, from the topology.
    assert dict((lane.name, lane.address) for lane in seq.lanes)["mx-qq"] == "203.0.113.25"


def test_a_dmarc_rejection_highlights_the_receivers_550() -> None:
    seq = sequence_of(recorded("dmarc-reject"))
    step = seq.steps[seq.failing]  # type: ignore[index]
    assert step.style == "reply" and step.src == "mx-qq"
    assert step.text.startswith("550 5.7.26")


@pytest.mark.parametrize("case", CASES)
def test_the_mermaid_text_parses(case: str) -> None:
    text = sequence_of(recorded(case)).to_mermaid()
    assert mermaid_problems(text) == []
    assert "#60;" in text or case == "blocked"  # <addresses> escaped, never raw


def test_the_mermaid_check_catches_bad_lines() -> None:
    bad = "\n".join(
        [
            "sequenceDiagram",
            "    participant a",
            "    a->>b: hi",
            "    a->>a: x;y",
            "    rect rgb(1, 2, 3)",
        ]
    )
    problems = mermaid_problems(bad)
    assert any("b is not a declared" in p for p in problems)
    assert any("not a statement" in p for p in problems)
    assert "a rect block is not closed" in problems


@pytest.mark.parametrize("case", CASES)
def test_the_text_fits_80_columns(case: str, snapshot: Any) -> None:
    text = sequence_of(recorded(case)).to_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert sequence_of(recorded(case)).to_text(ascii_only=True).isascii()
    if case != "bounced":  # 300 lines of retries: the model tests cover it
        assert text == snapshot.use_extension(TextSnapshot)


@pytest.mark.parametrize("case", ["blocked", "dmarc-reject"])
def test_the_svg_is_well_formed_and_marks_the_failing_step(case: str, snapshot: Any) -> None:
    svg = sequence_of(recorded(case)).to_svg()
    root = ET.fromstring(svg)
    ids = {el.get("id") for el in root.iter()}
    assert "failing" in ids
    assert {"lane-laptop", "lane-spoofer"} & ids
    assert svg == snapshot.use_extension(SvgSnapshot)


def test_a_bare_trace_without_result_still_finds_its_failure() -> None:
    events = list(recorded("blocked").trace)
    assert sequence_of(Trace(events=events)).failing is not None
    ok = [TraceEvent(1.0, "delivery", "mx-qq", "stored", {"mailbox": "bob@qq.example"})]
    assert sequence_of(Trace(events=ok)).failing is None


def _maillab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sim.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


def test_send_writes_the_diagram_as_mermaid_and_svg(tmp_path: Path) -> None:
    mmd, svg = tmp_path / "blocked.mmd", tmp_path / "blocked.svg"
    for out in (mmd, svg):
        run = _maillab(
            "send", "topologies/home-isp.yaml", "--from", "laptop", "--to", "bob@qq.example",
            "--diagram", str(out),
        )  # fmt: skip
        assert run.returncode == 1, run.stderr  # blocked: not delivered
    assert mermaid_problems(mmd.read_text()) == []
    assert "participant isp" in mmd.read_text()
    assert ET.fromstring(svg.read_text()).get("class") == "maillab-sequence"


def test_send_refuses_an_unknown_diagram_suffix_before_sending(tmp_path: Path) -> None:
    run = _maillab(
        "send", "topologies/home-isp.yaml", "--from", "laptop", "--to", "bob@qq.example",
        "--diagram", str(tmp_path / "x.png"),
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and ".svg, .mmd or .txt" in run.stderr


@pytest.mark.mininet
def test_both_backends_draw_the_same_failing_step() -> None:
    """The picture comes from the trace, which both backends write alike."""
    import sim

    pictures = {}
    for backend in ("local", "mininet"):
        with sim.start("home-isp", backend=backend) as lab:
            result = lab.send("laptop", "bob@qq.example", mail_from="alice@home.example")
            pictures[backend] = sequence_of(result, lab.topology)
    local, mininet = pictures["local"], pictures["mininet"]
    assert local.failing is not None and mininet.failing is not None
    fail_l, fail_m = local.steps[local.failing], mininet.steps[mininet.failing]
    assert (fail_l.style, fail_l.src, fail_l.dst) == (fail_m.style, fail_m.src, fail_m.dst)
    assert set(local.lane_names()) == set(mininet.lane_names())


def test_a_long_log_shows_its_latest_steps() -> None:
    seq = sequence_of(recorded("blocked"))
    tail = seq.tail(3)
    assert len(tail.steps) == 3 and tail.steps == seq.steps[-3:]
    assert tail.failing == seq.failing - 5  # type: ignore[operator]
    assert tail.title == "the last 3 of 8 steps"
    assert seq.tail(100) is seq
