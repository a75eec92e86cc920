"""Clean start, clean stop: a run removes exactly what it created, and
``maillab clean`` removes what a killed run left, and nothing else.

Counted on the machine before and after (:mod:`mininet_support`): network
namespaces, root-namespace interfaces and iptables rules, processes carrying a
maillab marker, run records.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mininet_support import Footprint, footprint, needs_mininet

import sim
from sim.hosting.mininet import MininetBackend
from sim.net import mnclean

pytestmark = needs_mininet

ROOT = Path(__file__).resolve().parent.parent

#: Small but complete: a router with a firewall rule, a bridged LAN of three
#: (router, dns host, client), a second LAN, the synthetic outside host.
SMALL = """\
name: small
settings: {time_scale: 60, resolver: 198.51.100.53, connect_timeout: 30s}
nodes:
  r1:
    kind: router
    firewall:
      - {action: reject, proto: tcp, dport: 25, src: 100.64.0.0/10}
  ns:
    kind: host
    ip: 198.51.100.53/24
    gateway: r1
    services: {dns: {zones: [small.example]}}
  client: {kind: host, ip: 198.51.100.20/24, gateway: r1}
  home: {kind: host, ip: 100.64.1.2/24, gateway: r1}
zones:
  small.example: |
    @  A  198.51.100.20
"""

DRIVER = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, {root!r})
    import sim
    from sim.hosting.mininet import MininetBackend
    from pathlib import Path
    backend = MininetBackend(sim.load_topology(sys.argv[1]), Path(sys.argv[2]))
    backend.start()
    print(json.dumps({{"run": backend.run_id, "ready": True}}), flush=True)
    time.sleep(600)
""")


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return path


def _assert_nothing_left(before: Footprint, runs: list[str]) -> None:
    after = footprint()
    assert after.extra_namespaces(before) == set()
    assert after.links == before.links
    assert after.iptables == before.iptables
    assert set(after.records) <= set(before.records)
    for run in runs:
        assert not (mnclean.run_root() / f"{run}.json").exists()
        for pid in after.processes:
            argv = " ".join(mnclean.process_argv(pid) or [])
            assert run not in argv, f"process {pid} of run {run} left: {argv}"


def test_stop_removes_everything_it_created(small: Path, tmp_path: Path) -> None:
    before = footprint()
    with sim.start(
        sim.load_topology(small), backend="mininet", state_dir=tmp_path / "state"
    ) as lab:
        backend = lab.backend
        assert isinstance(backend, MininetBackend)
        run = backend.run_id
        assert run is not None
        during = footprint()
        # r1, ns, client, home, outside, and one bridge (the LAN of three);
        # the two-member segments are direct veth pairs.
        assert len(during.extra_namespaces(before)) == 6
        assert during.links == before.links  # nothing in the root namespace
        assert (mnclean.run_root() / f"{run}.json").exists()
        # A process a person started in a node goes with the lab.
        backend.popen("home", ["sleep", "300"])
        assert lab.connect("home", "198.51.100.20", 25).error == "refused"
        assert lab.dig("client", "small.example").answers[0]["data"] == "198.51.100.20"
    _assert_nothing_left(before, [run])
    assert backend.notices == []


def _start_driver(small: Path, state: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER.format(root=str(ROOT)), str(small), str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _ready(driver: subprocess.Popen[str]) -> str:
    assert driver.stdout is not None
    line = driver.stdout.readline()
    if not line:
        driver.wait()
        assert driver.stderr is not None
        raise AssertionError(f"driver failed: {driver.stderr.read()[-1000:]}")
    run: str = json.loads(line)["run"]
    return run


def test_sigkill_then_clean_leaves_nothing_twenty_times(small: Path, tmp_path: Path) -> None:
    before = footprint()
    runs: list[str] = []
    for cycle in range(20):
        driver = _start_driver(small, tmp_path / f"state{cycle}")
        runs.append(_ready(driver))
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        if cycle == 0:
            # A start that finds the leftovers says so, in one line.
            second = _start_driver(small, tmp_path / "second")
            runs.append(_ready(second))
            os.kill(second.pid, signal.SIGKILL)
            second.wait()
            assert second.stderr is not None
            lines = second.stderr.read().splitlines()
            notices = [line for line in lines if "leftovers" in line]
            assert len(notices) == 1
            assert runs[0] in notices[0] and "maillab clean" in notices[0]
        reports = mnclean.clean(runs[-2:] if cycle == 0 else runs[-1:])
        assert {r.run for r in reports} == set(runs[-2:] if cycle == 0 else runs[-1:])
        assert all(not r.remaining for r in reports)
    _assert_nothing_left(before, runs)


def test_clean_leaves_a_running_lab_alone(small: Path, tmp_path: Path) -> None:
    with sim.start(
        sim.load_topology(small), backend="mininet", state_dir=tmp_path / "state"
    ) as lab:
        backend = lab.backend
        assert isinstance(backend, MininetBackend)
        assert backend.run_id not in {r.run for r in mnclean.clean()}
        assert backend.run_id not in {r.run for r in mnclean.leftovers()}
        assert lab.dig("client", "small.example").rcode == "NOERROR"


def test_clean_command_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = (
        "import sys, argparse; from sim.net import mnclean; p = argparse.ArgumentParser();"
        "s = p.add_subparsers(); mnclean.register(s); a = p.parse_args(sys.argv[1:]);"
        "sys.exit(a.func(a))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "clean", "--json", "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["dry_run"] is True and isinstance(data["cleaned"], list)
