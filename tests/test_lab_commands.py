"""``maillab list`` and ``maillab check``: the JSON shapes of DESIGN.md and
the exit codes (0 all passed, 1 a check failed, 2 bad input)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from sim.errors import InputError, LabError
from sim.lab.catalog import find_lab, labs_dir, load_catalog
from sim.lab.commands import register
from sim.lab.progress import FileProgressStore, LabProgress

ROOT = Path(__file__).resolve().parents[1]
LABS = ROOT / "labs"
FIXTURES = ROOT / "tests" / "fixtures" / "labs"


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="maillab")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MAILLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MAILLAB_STUDENT", "alice")
    monkeypatch.delenv("MAILLAB_LABS", raising=False)
    return tmp_path / "home"


@pytest.fixture
def lab_copy(tmp_path: Path) -> Path:
    """A labs directory of our own with the receive-only lab and its topology."""
    (tmp_path / "labs").mkdir()
    (tmp_path / "topologies").mkdir()
    shutil.copy(LABS / "01-receive-only.yaml", tmp_path / "labs")
    shutil.copy(ROOT / "topologies" / "receive-only.yaml", tmp_path / "topologies")
    return tmp_path / "labs"


def test_list_json(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    assert run(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (entry,) = [lab for lab in data["labs"] if lab["id"] == "receive-only"]
    assert entry["title"].startswith("Receiving mail")
    assert entry["topology"] == "receive-only"
    assert entry["steps"] == 9
    assert entry["progress"] is None
    progress = LabProgress("receive-only")
    progress.step("finding-the-server").done = True
    FileProgressStore(home / "progress.json", "alice").save(progress)
    assert run(["list", "--json", "--labs-dir", str(LABS)]) == 0
    data = json.loads(capsys.readouterr().out)
    (entry,) = [lab for lab in data["labs"] if lab["id"] == "receive-only"]
    assert entry["progress"]["done"] == 1
    assert entry["progress"]["total"] == 9
    assert run(["list"]) == 0
    assert "receive-only" in capsys.readouterr().out


def test_list_reports_bad_lab_files(lab_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(FIXTURES / "bad" / "duplicate-ids.yaml", lab_copy / "02-broken.yaml")
    assert run(["list", "--json", "--labs-dir", str(lab_copy)]) == 2
    captured = capsys.readouterr()
    assert [lab["id"] for lab in json.loads(captured.out)["labs"]] == ["receive-only"]
    assert "02-broken.yaml:11:9: steps[1].id: duplicate step id" in captured.err


def test_check_json_passes(lab_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["check", "--json", "--labs-dir", str(lab_copy)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["passed"] is True
    assert data["backend"] == "local"
    (report,) = data["labs"]
    assert report["id"] == "receive-only"
    assert report["passed"] is True
    assert isinstance(report["seconds"], float)
    assert [s["id"] for s in report["steps"]][:2] == ["finding-the-server", "dig-mx"]
    assert all(set(s) >= {"id", "passed", "detail"} and s["passed"] for s in report["steps"])


def test_check_fails_with_exit_1(lab_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A lab whose experiment claims the wrong thing: the message is delivered.
    path = lab_copy / "01-receive-only.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace(
            "      - outcome: delivered\n      - trace_contains",
            "      - outcome: rejected\n      - trace_contains",
        ),
        encoding="utf-8",
    )
    assert run(["check", "1", "--labs-dir", str(lab_copy)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL  receive-only")
    assert "send-to-bob (experiment): the outcome was delivered" in out


def test_check_refuses_bad_labs_and_unknown_names(lab_copy: Path) -> None:
    shutil.copy(FIXTURES / "bad" / "nodes.yaml", lab_copy / "02-nodes.yaml")
    shutil.copy(FIXTURES / "topologies" / "mini.yaml", lab_copy.parent / "topologies")
    with pytest.raises(InputError) as caught:
        run(["check", "--labs-dir", str(lab_copy)])
    assert any("no host 'clinet'" in p.message for p in caught.value.problems)
    with pytest.raises(LabError, match="no lab 'dkim'"):
        run(["check", "dkim", "--labs-dir", str(lab_copy)])


def test_finding_labs(lab_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = lab_copy / "01-receive-only.yaml"
    for ref in ("receive-only", "01-receive-only", "01-receive-only.yaml", "1", "01", str(path)):
        assert find_lab(ref, lab_copy) == path, ref
    assert labs_dir(lab_copy) == lab_copy
    monkeypatch.setenv("MAILLAB_LABS", str(lab_copy))
    assert labs_dir() == lab_copy
    with pytest.raises(LabError, match="not a directory"):
        labs_dir(lab_copy / "nope")
    monkeypatch.delenv("MAILLAB_LABS")
    assert labs_dir() == LABS


def test_two_labs_with_one_id(lab_copy: Path) -> None:
    shutil.copy(lab_copy / "01-receive-only.yaml", lab_copy / "02-again.yaml")
    entries = load_catalog(lab_copy)
    assert entries[0].lab is not None
    assert entries[1].lab is None
    (problem,) = entries[1].problems
    assert (problem.line, problem.col) == (1, 5)
    assert "'receive-only' is also the id of 01-receive-only.yaml" in problem.message
