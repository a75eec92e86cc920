"""Courses (issue 21): a directory with course.yaml, labs/, topologies/ and
notebooks/; `maillab --course DIR` and $MAILLAB_COURSE for list, check and
the TUI; the shipped labs are one; a student pack plays in the TUI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tuikit import lab_screen, play_lab, settle

from sim.cli import main
from sim.lab.catalog import lab_files, labs_dir
from sim.lab.course import load_course, validate_course
from sim.lab.loader import load_lab
from sim.lab.progress import FileProgressStore
from sim.tui.app import MaillabApp
from sim.tui.home import HomeScreen

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_labs_are_a_course() -> None:
    course = load_course(ROOT)
    assert course.labs == tuple(sorted((ROOT / "labs").glob("*.yaml")))
    assert course.title and course.version
    assert lab_files(ROOT / "labs") == list(course.labs)


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """Two shipped labs as a course, in the reverse of their file order."""
    root = tmp_path / "course"
    (root / "labs").mkdir(parents=True)
    shutil.copytree(ROOT / "topologies", root / "topologies")
    for name in ("01-receive-only.yaml", "05-spf.yaml"):
        shutil.copy(ROOT / "labs" / name, root / "labs" / name)
    (root / "course.yaml").write_text(
        'title: Two labs\nversion: "2026.1"\norder: [05-spf, 01-receive-only.yaml]\n'
    )
    return root


def test_course_lists_its_labs_in_the_manifest_order(
    course: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAILLAB_LABS", raising=False)
    monkeypatch.delenv("MAILLAB_COURSE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(course.parent / "cache"))
    assert main(["--course", str(course), "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [lab["id"] for lab in listed["labs"]] == ["spf", "receive-only"]
    assert listed["course"]["title"] == "Two labs" and listed["course"]["version"] == "2026.1"
    # The environment variable says the same.
    monkeypatch.setenv("MAILLAB_COURSE", str(course))
    assert labs_dir() == course / "labs"
    assert main(["check", "1", "--json"]) == 0
    checked = json.loads(capsys.readouterr().out)
    assert [lab["id"] for lab in checked["labs"]] == ["receive-only"]
    assert checked["labs"][0]["steps"][0]["passed"]


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        (
            'title: Two labs\nversion: "1"\norder: [05-spf, 01-recieve-only]\n',
            "course.yaml:3:17: order[1]: no lab file '01-recieve-only' in",
        ),
        (
            'title: Two labs\nversion: "1"\norder: [05-spf]\n',
            "course.yaml:3:8: order: labs/01-receive-only.yaml is not in `order`",
        ),
        (
            'version: "1"\norder: [05-spf, 01-receive-only, 05-spf]\n',
            "course.yaml:1:1: missing key 'title'",
        ),
        (
            'title: T\nversion: "1"\norder: [05-spf, 01-receive-only, 05-spf]\n',
            "course.yaml:3:34: order[2]: '05-spf' is listed twice",
        ),
        (
            'title: T\nversoin: "1"\norder: [05-spf, 01-receive-only]\n',
            "did you mean 'version'?",
        ),
    ],
)
def test_a_bad_manifest_is_one_precise_line_per_problem(
    course: Path, manifest: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (course / "course.yaml").write_text(manifest)
    problems = [str(p) for p in validate_course(course)]
    assert any(expected in p for p in problems), problems
    if "recieve" in manifest:
        assert problems[0].endswith("(did you mean '01-receive-only'?)")
    # --course with a bad manifest: exit 2, the problems, no traceback.
    assert main(["--course", str(course), "list"]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert main(["validate", str(course)]) == 2


def test_course_needs_a_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--course", str(tmp_path), "check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a course needs a manifest course.yaml" in err[0]


async def test_the_tui_plays_a_student_pack_of_the_course(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packed = tmp_path / "students"
    assert (
        main(["pack", "1", "--student", "-o", str(packed), "--labs-dir", str(ROOT / "labs")]) == 0
    )
    monkeypatch.delenv("MAILLAB_LABS", raising=False)
    monkeypatch.setenv("MAILLAB_COURSE", str(packed))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    source = load_lab(ROOT / "labs" / "01-receive-only.yaml")
    app = MaillabApp(store=FileProgressStore(tmp_path / "progress.json", "s"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        home = app.screen
        assert isinstance(home, HomeScreen)
        assert [e.id for e in home.entries] == ["receive-only"]
        await pilot.press("enter")
        await settle(pilot)
        screen = lab_screen(app)
        assert screen.session.definition.pack == "student"
        assert not any(getattr(s, "solution", ()) for s in screen.session.steps)
        # A student types the answers and makes the edits (the source's, here).
        log = await play_lab(pilot, source)
        assert [line.split(":")[0] for line in log] == [s.id for s in source.steps]
        assert screen.session.complete
        await pilot.press("escape", "y")
        await settle(pilot)


def test_a_packed_course_s_notebooks_find_its_topologies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sim.notebook import find_topology

    packed = tmp_path / "students"
    assert (
        main(["pack", "1", "--student", "-o", str(packed), "--labs-dir", str(ROOT / "labs")]) == 0
    )
    notebooks = sorted((packed / "notebooks").glob("*.ipynb"))
    assert [p.name for p in notebooks] == sorted(
        p.name for p in (ROOT / "notebooks").glob("*.ipynb")
    )
    # Run from the course's notebooks/, as Jupyter does.
    monkeypatch.chdir(packed / "notebooks")
    assert find_topology("home-isp") == (packed / "topologies" / "home-isp.yaml").resolve()
    # From anywhere else, with the course named.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("MAILLAB_COURSE", str(packed))
    assert find_topology("home-isp") == (packed / "topologies" / "home-isp.yaml").resolve()
