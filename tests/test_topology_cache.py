"""sim.topology.filecache: a topology that loaded is read back from the
user's cache by the same code, and only then; problems are found afresh."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sim.errors import TopologyError
from sim.topology import filecache, load_topology, loader

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MAILLAB_TOPOLOGIES_CACHE", raising=False)
    return tmp_path / "cache" / "maillab" / "topologies"


@pytest.fixture
def topo(tmp_path: Path) -> Path:
    path = tmp_path / "home-isp.yaml"
    shutil.copy(ROOT / "topologies" / "home-isp.yaml", path)
    return path


def _no_loading(text: str, source: str = "") -> None:
    raise AssertionError("the topology was loaded again instead of read from the cache")


def test_a_loaded_topology_is_read_back(
    cache: Path, topo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_topology is filecache.load_topology  # what sim.topology exports
    first = load_topology(topo)
    assert [p.suffix for p in cache.iterdir()] == [".pickle"]
    monkeypatch.setattr(loader, "loads_topology", _no_loading)
    again = load_topology(topo)
    assert again == first and again is not first
    assert again.source == str(topo)


def test_an_edited_file_is_loaded_again(
    cache: Path, topo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_topology(topo)
    topo.write_text(topo.read_text().replace("time_scale: 60", "time_scale: 30"))
    assert load_topology(topo).settings.time_scale == 30
    assert len(list(cache.iterdir())) == 2


def test_other_code_does_not_read_it(
    cache: Path, topo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_topology(topo)
    filecache.code_key.cache_clear()
    monkeypatch.setattr(filecache, "code_key", lambda: "edited code")
    calls = []
    real = loader.loads_topology
    monkeypatch.setattr(loader, "loads_topology", lambda *a: calls.append(a) or real(*a))
    load_topology(topo)
    assert len(calls) == 1


def test_a_topology_with_a_problem_is_never_kept(cache: Path, topo: Path) -> None:
    topo.write_text(topo.read_text().replace("time_scale: 60", "time_scale: -1"))
    for _ in range(2):
        with pytest.raises(TopologyError) as err:
            load_topology(topo)
        assert "time_scale" in str(err.value)
    assert not cache.exists() or not list(cache.iterdir())


def test_a_damaged_or_foreign_entry_is_ignored(
    cache: Path, topo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_topology(topo)
    (entry,) = cache.iterdir()
    entry.write_bytes(b"not a pickle")
    assert load_topology(topo) == first  # loaded again, and kept again
    os.chmod(entry, 0o666)  # anyone could have written it: not read
    monkeypatch.setattr(loader, "loads_topology", lambda *a: first)
    assert load_topology(topo) is first


def test_the_oldest_entries_go_first(
    cache: Path, topo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(filecache, "MAX_ENTRIES", 4)
    text = topo.read_text()
    for n in range(5):
        topo.write_text(f"{text}\n# edit {n}\n")
        load_topology(topo)
        entries = sorted(cache.iterdir(), key=lambda p: p.stat().st_mtime_ns)
        os.utime(entries[-1], ns=(n * 10**9, n * 10**9))  # in the order they were made
    kept = list(cache.iterdir())
    assert len(kept) == 3  # five made: over four, down to three, the newest
    monkeypatch.setattr(loader, "loads_topology", _no_loading)
    load_topology(topo)  # the last one is among them


def test_the_cache_can_be_turned_off(
    cache: Path, topo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILLAB_TOPOLOGIES_CACHE", "0")
    load_topology(topo)
    assert not cache.exists()


def test_a_missing_file_is_one_problem(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(TopologyError) as err:
        load_topology(tmp_path / "nothing.yaml")
    assert "nothing.yaml" in str(err.value)
