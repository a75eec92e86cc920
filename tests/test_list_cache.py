"""``maillab list`` remembers lab summaries (sim.lab.listcache) and reloads
whenever a lab file, its topology or maillab's code changed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sim.lab import catalog, listcache

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def course(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MAILLAB_LIST_CACHE", raising=False)
    labs = tmp_path / "course" / "labs"
    labs.mkdir(parents=True)
    for name in ("01-receive-only.yaml", "02-direct-from-home.yaml"):
        shutil.copy(ROOT / "labs" / name, labs / name)
    shutil.copytree(ROOT / "topologies", tmp_path / "course" / "topologies")
    return labs


def _no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(directory: Path) -> None:
        raise AssertionError("the labs were loaded although nothing changed")

    monkeypatch.setattr(catalog, "load_catalog", refuse)


def test_a_second_listing_comes_from_the_cache(
    course: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, problems = listcache.lab_summaries(course)
    assert [r["id"] for r in first] == ["receive-only", "direct-from-home"] and not problems
    _no_loading(monkeypatch)
    assert listcache.lab_summaries(course) == (first, [])


def test_an_edited_lab_is_loaded_again(course: Path) -> None:
    listcache.lab_summaries(course)
    lab = course / "01-receive-only.yaml"
    text = lab.read_text()
    lab.write_text(text.replace('\ntitle: "', '\ntitle: "Edited ', 1))
    rows, _ = listcache.lab_summaries(course)
    assert rows[0]["title"].startswith("Edited ")


def test_an_edited_topology_is_validated_again(course: Path) -> None:
    listcache.lab_summaries(course)
    topo = course.parent / "topologies" / "receive-only.yaml"
    topo.write_text(topo.read_text() + "\nunknown_key: 1\n")
    rows, problems = listcache.lab_summaries(course)
    assert [r["id"] for r in rows] == ["direct-from-home"]
    assert problems and "receive-only" in str(problems[0])


def test_a_broken_lab_is_reported_every_time(course: Path) -> None:
    (course / "03-broken.yaml").write_text("id: broken\ntitle: [\n")
    for _ in range(2):
        rows, problems = listcache.lab_summaries(course)
        assert len(rows) == 2 and problems
        assert "03-broken.yaml" in str(problems[0])


def test_changed_code_invalidates_the_cache(course: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listcache.lab_summaries(course)
    monkeypatch.setattr(listcache, "code_key", lambda: "another maillab")
    loaded = []
    real = catalog.load_catalog
    monkeypatch.setattr(catalog, "load_catalog", lambda d: loaded.append(d) or real(d))
    rows, _ = listcache.lab_summaries(course)
    assert loaded == [course] and len(rows) == 2


def test_two_course_directories_are_both_remembered(
    course: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other" / "labs"
    shutil.copytree(course.parent, other.parent)
    listcache.lab_summaries(course)
    listcache.lab_summaries(other)
    _no_loading(monkeypatch)
    assert len(listcache.lab_summaries(course)[0]) == 2
    assert len(listcache.lab_summaries(other)[0]) == 2
