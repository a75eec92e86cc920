"""The local backend on home-isp: DNS from a node, the ISP's port-25 block,
submission that gets through, nothing outside the lab, real tools via ``up``."""

from __future__ import annotations

import asyncio
import gc
import json
import shutil
import signal
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import pytest

import sim
from sim.errors import BackendError


@pytest.fixture(scope="module")
def lab(home_isp_path: Path):  # type: ignore[no-untyped-def]
    with sim.start(sim.load_topology(home_isp_path)) as running:
        yield running


def test_dig_mx_from_the_laptop_answers_from_the_lab_dns(lab: sim.Lab) -> None:
    result = lab.dig("laptop", "qq.example", "MX")
    assert result.rcode == "NOERROR"
    assert [a["data"] for a in result.answers] == ["10 mx.qq.example."]
    dns_events = result.trace.of_kind("dns")
    assert dns_events, "the query must be in the trace"
    assert dns_events[0].data["client"] == "198.51.100.200"
    assert dns_events[0].node == "ns"


def test_port_25_from_the_laptop_is_dropped_at_the_isp(lab: sim.Lab) -> None:
    result = lab.connect("laptop", "mx.qq.example", 25)
    assert result.outcome == "blocked"
    assert result.error == "timeout"
    assert result.verdict is not None
    assert result.verdict["router"] == "isp"
    assert result.verdict["rule"] == 0
    net = [e for e in result.trace.of_kind("net") if e.data.get("verdict") == "drop"]
    assert net and net[0].node == "isp"
    assert "residential customers may not send on port 25" in net[0].summary


def test_submission_port_gets_through_the_same_router(lab: sim.Lab) -> None:
    result = lab.connect("laptop", "smtp.home.example", 587)
    assert result.outcome == "connected"
    assert result.banner is not None and result.banner.startswith("220")
    # The MX host has no submission service: the ISP lets the SYN through and
    # the host itself answers with a reset.
    other = lab.connect("laptop", "mx.qq.example", 587)
    assert other.outcome == "blocked" and other.error == "refused"
    verdicts = [e.data.get("verdict") for e in other.trace.of_kind("net")]
    assert "accept" in verdicts


def test_a_server_outside_the_residential_range_may_use_port_25(lab: sim.Lab) -> None:
    result = lab.connect("smtp-isp", "mx.qq.example", 25)
    assert result.outcome == "connected"
    assert result.banner is not None and result.banner.startswith("220")


def test_an_address_outside_the_lab_is_unreachable(lab: sim.Lab) -> None:
    result = lab.connect("laptop", "192.0.2.200", 25)
    assert result.outcome == "blocked"
    assert result.error == "unreachable"
    assert result.verdict is not None and result.verdict["verdict"] == "unreachable"


def test_an_unknown_node_is_a_clear_error(lab: sim.Lab) -> None:
    with pytest.raises(BackendError, match="no node named 'nobody'"):
        lab.dig("nobody", "qq.example", "MX")


def test_nxdomain_and_nodata_differ(lab: sim.Lab) -> None:
    assert lab.dig("laptop", "nothing.qq.example", "A").rcode == "NXDOMAIN"
    nodata = lab.dig("laptop", "mx.qq.example", "MX")
    assert nodata.rcode == "NOERROR" and nodata.answers == []


def test_the_clock_advances_at_scale_and_on_demand(lab: sim.Lab) -> None:
    before = lab.now()
    lab.advance("2h")
    assert lab.now() - before >= 7200


def test_works_inside_a_running_event_loop(home_isp_path: Path) -> None:
    # Jupyter runs an event loop already: the lab's own loop lives in a thread.
    async def notebook_cell() -> str:
        with sim.start(home_isp_path) as lab:
            return lab.dig("laptop", "qq.example", "MX").rcode

    assert asyncio.run(notebook_cell()) == "NOERROR"


def test_stop_leaves_no_thread_and_no_state(home_isp_path: Path) -> None:
    before = {t.name for t in threading.enumerate()}
    lab = sim.start(home_isp_path)
    state = lab.state_dir
    lab.stop()
    lab.stop()  # twice is fine
    after = {t.name for t in threading.enumerate()}
    assert not [n for n in after - before if n.startswith("maillab-")]
    assert not state.exists()


def test_a_stopped_lab_leaves_nothing_in_memory(home_isp_path: Path) -> None:
    # Notebooks, the TUI and the bench start lab after lab in one process.
    with sim.start(home_isp_path) as lab:
        lab.dig("laptop", "qq.example", "MX")
        lab.send(
            "laptop", "bob@qq.example", via="smtp-isp", user="alice@home.example", password="secret"
        )
        backend = weakref.ref(lab.backend)
        contexts = [weakref.ref(lab.backend.context(n.name)) for n in lab.topology.nodes]
    del lab
    gc.collect()
    assert backend() is None
    assert [c for c in contexts if c() is not None] == []


def test_endpoints_seen_from_the_laptop_mark_port_25_blocked(home_isp_path: Path) -> None:
    with sim.start(home_isp_path, as_node="laptop") as lab:
        by_service = {(e.node, e.service, e.proto): e for e in lab.endpoints()}
    mx = by_service[("mx-qq", "mx", "tcp")]
    assert mx.local is None and mx.blocked is not None and "isp" in mx.blocked
    dns = by_service[("ns", "dns", "udp")]
    assert dns.local is not None and dns.blocked is None


def _up(topology: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sim.cli", "up", str(topology), "--json", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig is missing (apt-get install dnsutils)")
def test_real_dig_against_up_matches_the_api(home_isp_path: Path) -> None:
    proc = _up(home_isp_path)
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["ready"] is True and ready["backend"] == "local"
        dns = next(
            e
            for e in ready["endpoints"]
            if e["node"] == "ns" and e["service"] == "dns" and e["proto"] == "udp"
        )
        assert dns["lab"] == "198.51.100.53:53"
        host, port = dns["local"].split(":")
        assert host == "127.0.0.1"
        for name, rtype in [
            ("qq.example", "MX"),
            ("qq.example", "TXT"),
            ("25.113.0.203.in-addr.arpa", "PTR"),
        ]:
            out = subprocess.run(
                ["dig", f"@{host}", "-p", port, name, rtype, "+short"],
                capture_output=True,
                text=True,
                timeout=20,
                check=True,
            )
            real = sorted(out.stdout.split("\n")[:-1])
            with sim.start(home_isp_path) as lab:
                api = sorted(a["data"] for a in lab.dig("laptop", name, rtype).answers)
            assert real == api, (name, rtype)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0


def test_up_stops_cleanly_on_sigterm(home_isp_path: Path) -> None:
    proc = _up(home_isp_path)
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline())
    state = Path(ready["state_dir"])
    assert state.exists()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode == 0
    assert not state.exists(), "a temporary state directory is removed at stop"
