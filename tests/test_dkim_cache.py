"""The per-user DKIM key cache (sim.services.dkimkeys): a lab key is made
once per user and what it is for, then reused by every state directory."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sim import load_topology
from sim.services.dkimkeys import cache_dir, cached_pem, ensure_keys

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MAILLAB_DKIM_CACHE", raising=False)
    directory = cache_dir()
    assert directory == tmp_path / "cache" / "maillab" / "dkim"
    return directory


def test_two_state_dirs_share_the_cached_key(cache: Path, tmp_path: Path) -> None:
    topo = load_topology(ROOT / "topologies" / "dkim.yaml")
    first = ensure_keys(topo, tmp_path / "a")
    second = ensure_keys(topo, tmp_path / "b")
    assert first and first == second
    cached = list(cache.glob("*.pem"))
    assert len(cached) == len(first) == 2  # two relays, two (domain, selector)
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in cached)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    # Each state directory still has its own copy (a restarted lab reads it).
    for pair in first.values():
        name = f"{pair.selector}._domainkey.{pair.domain}.pem"
        assert (tmp_path / "a" / "dkim" / name).read_bytes() == pair.private_pem
        assert stat.S_IMODE((tmp_path / "b" / "dkim" / name).stat().st_mode) == 0o600


def test_the_key_is_keyed_by_what_it_is_for(cache: Path) -> None:
    one = cached_pem("example.test", "s1", 1024)
    assert cached_pem("example.test", "s1", 1024) == one
    assert cached_pem("example.test", "s2", 1024) != one
    assert cached_pem("other.test", "s1", 1024) != one
    assert len(list(cache.glob("*.pem"))) == 3
    assert not list(cache.glob(".tmp-*"))


def test_a_damaged_cache_file_is_replaced(cache: Path) -> None:
    one = cached_pem("example.test", "s1", 1024)
    (path,) = cache.glob("*.pem")
    path.write_bytes(b"-----BEGIN RSA PRIVATE KEY-----\ngarbage\n")
    two = cached_pem("example.test", "s1", 1024)
    assert two != one and path.read_bytes() == two
    assert b"BEGIN RSA PRIVATE KEY" in two


def test_an_unwritable_cache_still_gives_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert b"BEGIN RSA PRIVATE KEY" in cached_pem("example.test", "s1", 1024)


def test_the_cache_can_be_turned_off(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILLAB_DKIM_CACHE", "0")
    assert cache_dir() is None
    assert cached_pem("example.test", "s1", 1024) != cached_pem("example.test", "s1", 1024)
    assert not cache.exists()


def test_concurrent_first_runs_end_with_one_key(cache: Path) -> None:
    code = (
        "import sys\n"
        "from sim.services.dkimkeys import cached_pem\n"
        "sys.stdout.write(cached_pem('race.test', 's1', 1024).decode())\n"
    )
    env = dict(os.environ)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    (path,) = cache.glob("*.pem")
    # Every run returned the key that is on disk, whoever made it.
    assert set(outputs) == {path.read_text()}
    assert not list(cache.glob(".tmp-*"))
