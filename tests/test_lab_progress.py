"""Saved progress: per student, atomic, surviving a crash in the middle of a write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sim.lab.progress import (
    FileProgressStore,
    LabProgress,
    MemoryProgressStore,
    default_progress_path,
)

ROOT = Path(__file__).resolve().parents[1]


def progress_with(step: str) -> LabProgress:
    progress = LabProgress("receive-only")
    progress.step(step).done = True
    progress.step(step).answers.append("c")
    progress.actions.append({"step": step, "action": {"advance": "5m"}})
    return progress


def test_where_progress_lives(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MAILLAB_HOME", str(tmp_path / "home"))
    assert default_progress_path() == tmp_path / "home" / "progress.json"
    monkeypatch.delenv("MAILLAB_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_progress_path() == tmp_path / "data" / "maillab" / "progress.json"
    monkeypatch.setenv("MAILLAB_STUDENT", "carol")
    assert FileProgressStore().student == "carol"


def test_save_load_per_student(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "progress.json"
    alice = FileProgressStore(path, "alice")
    bob = FileProgressStore(path, "bob")
    assert not alice.exists("receive-only")
    alice.save(progress_with("dig-mx"))
    bob.save(progress_with("mx-target"))
    loaded = alice.load("receive-only")
    assert loaded.done("dig-mx")
    assert not loaded.done("mx-target")
    assert loaded.step("dig-mx").answers == ["c"]
    assert loaded.actions == [{"step": "dig-mx", "action": {"advance": "5m"}}]
    assert bob.load("receive-only").done("mx-target")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert set(data["students"]) == {"alice", "bob"}
    assert data["version"] == 1
    alice.reset("receive-only")
    assert not alice.exists("receive-only")
    assert bob.exists("receive-only")
    assert list(alice.all_labs()) == []
    assert list(bob.all_labs()) == ["receive-only"]


def test_memory_store_copies(tmp_path: Path) -> None:
    store = MemoryProgressStore()
    progress = progress_with("dig-mx")
    store.save(progress)
    progress.step("dig-mx").answers.append("later change")
    assert store.load("receive-only").step("dig-mx").answers == ["c"]


def test_a_failed_write_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "progress.json"
    store = FileProgressStore(path, "alice")
    store.save(progress_with("dig-mx"))
    before = path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(Exception, match="cannot save progress"):
        store.save(progress_with("mx-target"))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_killed_between_writing_and_renaming(tmp_path: Path) -> None:
    """A process killed (SIGKILL) after writing the new content but before the
    rename leaves the previous progress intact and readable."""
    path = tmp_path / "progress.json"
    FileProgressStore(path, "alice").save(progress_with("dig-mx"))
    before = path.read_bytes()
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from sim.lab.progress import FileProgressStore, LabProgress
        def die(src, dst):
            os.kill(os.getpid(), signal.SIGKILL)
        os.replace = die
        progress = LabProgress("receive-only")
        progress.step("mx-target").done = True
        FileProgressStore(Path({str(path)!r}), "alice").save(progress)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert path.read_bytes() == before
    leftovers = [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]
    assert leftovers, "the killed writer left its temporary file behind"
    # The next run reads the old progress and saves over it normally.
    store = FileProgressStore(path, "alice")
    progress = store.load("receive-only")
    assert progress.done("dig-mx")
    assert not progress.done("mx-target")
    progress.step("mx-target").done = True
    store.save(progress)
    assert store.load("receive-only").done("mx-target")
    assert store.warning is None
    assert [p for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []  # swept


def test_a_damaged_file_is_kept_aside(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    path.write_text('{"students": {"alice": ', encoding="utf-8")
    store = FileProgressStore(path, "alice")
    assert store.load("receive-only").steps == {}
    assert store.warning is not None
    assert "damaged" in store.warning
    kept = [p for p in tmp_path.iterdir() if ".damaged-" in p.name]
    assert len(kept) == 1
    assert kept[0].read_text(encoding="utf-8") == '{"students": {"alice": '
    store.save(progress_with("dig-mx"))
    assert FileProgressStore(path, "alice").load("receive-only").done("dig-mx")


def test_odd_content_is_read_defensively(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "students": {
                    "alice": {
                        "labs": {
                            "receive-only": {
                                "steps": {"a": "nonsense", "b": {"done": True}},
                                "actions": [1, {}],
                            },
                        }
                    }
                },
            }
        ),
        encoding="utf-8",
    )
    progress = FileProgressStore(path, "alice").load("receive-only")
    assert not progress.done("a")
    assert progress.done("b")
    assert progress.actions == [{}]
