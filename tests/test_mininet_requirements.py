"""The mininet backend's diagnosis and run records: plain logic, no root needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sim.errors import BackendUnavailable
from sim.net import mnclean, requirements


def test_everything_present_means_no_diagnosis(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = [requirements.Requirement("x", lambda: True, "do x")]
    monkeypatch.setattr(requirements, "requirements", lambda: fake)
    assert requirements.missing() is None
    requirements.check()


@pytest.mark.parametrize(
    ("absent", "remedy"),
    [
        ("root", "sudo"),
        ("mnexec", "apt-get install mininet"),
        ("iptables", "apt-get install iptables"),
        ("the mininet Python package", "pip install maillab[mininet]"),
    ],
)
def test_the_first_missing_requirement_is_named_in_one_line(
    monkeypatch: pytest.MonkeyPatch, absent: str, remedy: str
) -> None:
    real = requirements.requirements()
    names = [r.name for r in real]
    assert absent in names
    faked = [
        requirements.Requirement(r.name, (lambda r=r: r.name != absent), r.remedy) for r in real
    ]
    monkeypatch.setattr(requirements, "requirements", lambda: faked)
    with pytest.raises(BackendUnavailable) as caught:
        requirements.check()
    message = str(caught.value)
    assert "\n" not in message
    assert absent in message and remedy in message


def test_not_root_is_diagnosed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requirements.os, "geteuid", lambda: 1000)
    message = requirements.missing()
    if sys.platform.startswith("linux"):
        assert message is not None and "root" in message


@pytest.fixture
def run_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MAILLAB_RUN_DIR", str(tmp_path / "runs"))
    return tmp_path / "runs"


def test_a_record_round_trips_and_names_its_run(run_root: Path) -> None:
    run = mnclean.new_run_id()
    record = mnclean.RunRecord.create(run, "home-isp", Path("/tmp/state"))
    record.interfaces = [{"node": "ml-x-laptop", "name": "eth0", "namespace": "ml-x-laptop"}]
    record.save()
    loaded = mnclean.RunRecord.load(run_root / f"{run}.json")
    assert loaded == record
    assert loaded.driver_alive()  # this process
    assert mnclean.leftovers() == []
    assert mnclean.leftover_notice() is None


def test_a_record_whose_driver_died_is_a_leftover(run_root: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    start = mnclean.process_start(child.pid)
    assert start is not None
    record = mnclean.RunRecord("abc123", child.pid, start, "home-isp", "/tmp/s")
    record.save()
    assert mnclean.leftovers() == []
    child.kill()
    child.wait()
    assert [r.run for r in mnclean.leftovers()] == ["abc123"]
    notice = mnclean.leftover_notice()
    assert notice is not None and "\n" not in notice
    assert "abc123" in notice and "maillab clean" in notice


def test_markers_are_exact() -> None:
    assert mnclean._marked("abc123", ["bash", "--norc", "-is", "mininet:ml-abc123-laptop"])
    assert mnclean._marked(
        "abc123", ["python", "-m", "sim.hosting.agent", "/s", "--fork-server", "--run", "abc123"]
    )
    assert not mnclean._marked("abc123", ["bash", "-is", "mininet:ml-abc1234-laptop"])
    assert not mnclean._marked("abc123", ["python", "other.py", "--run", "abc123"])
    assert not mnclean._marked("abc123", ["bash", "-is", "mininet:h1"])


def test_a_process_is_ours_only_with_its_start_time() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        entry = mnclean.ProcessEntry.of(child.pid, "helper", None)
        assert entry is not None and entry.alive()
        impostor = mnclean.ProcessEntry(child.pid, entry.start + 1, "helper", None, entry.argv)
        assert not impostor.alive()
    finally:
        child.kill()
        child.wait()
    assert not entry.alive()
