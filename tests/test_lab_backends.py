"""A lab's ``backends:`` honoured where labs are listed or run (issue 18 §3).

The lab with real Postfix and Dovecot says ``backends: [mininet]``. On the
local backend: ``maillab list`` marks it, ``maillab check`` of every lab
reports it as not run (neither pass nor failure), asking for it by name is
one line and exit 2, ``maillab run`` says how to run it, ``maillab grade``
says why a submission for it is not graded. The shipped course ends with it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sim.cli import main
from sim.lab.catalog import declared_backends, find_lab, labs_dir, load_catalog
from sim.lab.course import load_course

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "labs"
NOT_RUN = "not run: needs the mininet backend (root): maillab check mininet-only --backend mininet"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MAILLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MAILLAB_STUDENT", "alice")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MAILLAB_LABS", raising=False)
    return tmp_path / "home"


@pytest.fixture
def two_labs(tmp_path: Path) -> Path:
    """A labs directory (not a curriculum's) with a lab for both backends and
    one for mininet only (its topology runs Postfix)."""
    labs, topologies = tmp_path / "some-labs", tmp_path / "topologies"
    labs.mkdir()
    topologies.mkdir()
    shutil.copy(FIXTURES / "good" / "minimal.yaml", labs / "01-minimal.yaml")
    shutil.copy(FIXTURES / "good" / "mininet-only.yaml", labs / "02-mininet-only.yaml")
    for name in ("mini.yaml", "mini-postfix.yaml"):
        shutil.copy(FIXTURES / "topologies" / name, topologies)
    return labs


def test_the_course_ends_with_the_real_thing_for_mininet_only() -> None:
    course = load_course(ROOT)
    assert course.labs[-1].name == "13-real-thing.yaml"
    assert "Postfix and Dovecot" in course.description
    assert (ROOT / "topologies" / "real-thing.yaml").is_file()
    assert not (ROOT / "labs-real").exists()
    by_id = {e.id: e for e in load_catalog(labs_dir())}
    lab = by_id["real-thing"].lab
    assert lab is not None and lab.backends == ("mininet",)
    assert declared_backends(find_lab("13", labs_dir())) == ("mininet",)
    # Every other shipped lab runs on both.
    others = [e.lab.backends for e in by_id.values() if e.lab is not None and e.id != "real-thing"]
    assert others and all(b == ("local", "mininet") for b in others)


def test_list_marks_a_mininet_only_lab(two_labs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--json", "--labs-dir", str(two_labs)]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)["labs"]}
    assert rows["minimal"]["backends"] == ["local", "mininet"]
    assert rows["mininet-only"]["backends"] == ["mininet"]
    assert main(["list", "--labs-dir", str(two_labs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    [mininet] = [line for line in lines if line.startswith("mininet-only")]
    [both] = [line for line in lines if line.startswith("minimal")]
    assert mininet.endswith("(mininet only)") and "only" not in both
    # From the cache, the same.
    assert main(["list", "--json", "--labs-dir", str(two_labs)]) == 0
    again = {r["id"]: r["backends"] for r in json.loads(capsys.readouterr().out)["labs"]}
    assert again == {"minimal": ["local", "mininet"], "mininet-only": ["mininet"]}


def test_check_of_every_lab_on_local_does_not_run_the_mininet_one(
    two_labs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--labs-dir", str(two_labs)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"SKIP  mininet-only: {NOT_RUN}" in out
    assert any(line.startswith("PASS  minimal") for line in out)
    assert not any(line.startswith(("PASS  mininet-only", "FAIL")) for line in out)
    assert main(["check", "--json", "--labs-dir", str(two_labs)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is True
    assert [lab["id"] for lab in report["labs"]] == ["minimal"]
    assert report["not_run"] == [{"id": "mininet-only", "backends": ["mininet"], "reason": NOT_RUN}]


def test_check_asked_for_the_mininet_lab_on_local_is_one_line_exit_2(
    two_labs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "mininet-only", "--labs-dir", str(two_labs)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "maillab: the lab mininet-only does not run on the local backend; it needs the "
        "mininet backend (root): maillab check mininet-only --backend mininet"
    ]


def test_run_on_local_says_how_to_run_it(
    two_labs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "2", "--labs-dir", str(two_labs)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "maillab: the lab mininet-only does not run on the local backend; it needs the "
        "mininet backend (root): maillab run mininet-only --backend mininet"
    ]


def test_grade_on_local_says_why_a_submission_is_not_graded(
    two_labs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sim.lab.loader import load_lab
    from sim.lab.progress import LabProgress
    from sim.lab.submission import build_submission

    progress = LabProgress("mininet-only")
    progress.step("read").done = True
    lab = load_lab(two_labs / "02-mininet-only.yaml")
    submission = tmp_path / "alice.json"
    submission.write_text(
        json.dumps(build_submission("alice", [lab], {lab.id: progress})), encoding="utf-8"
    )
    assert main(["grade", str(submission), "--labs-dir", str(two_labs)]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"maillab grade: {submission}: lab 'mininet-only' not graded on the local backend: it "
        f"needs the mininet backend (root): maillab grade {submission} --lab mininet-only "
        "--backend mininet"
    ]
    assert "mininet-only" not in captured.out
