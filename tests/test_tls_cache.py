"""sim.tls: the lab CA and the service certificates come from the user's
cache, made once, copied into each state directory, made again before they
expire, and still make working TLS."""

from __future__ import annotations

import contextlib
import ssl
import stat
from pathlib import Path

import pytest

from sim import tls
from sim.tls import LabCA


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MAILLAB_TLS_CACHE", raising=False)
    return tmp_path / "cache" / "maillab" / "tls"


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, name: str) -> str:
    """A TLS handshake in memory; the version agreed."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname=name)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (c, s):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    c.do_handshake()
    return str(c.version())


def test_two_state_directories_share_the_cached_ca_and_certificates(
    cache: Path, tmp_path: Path
) -> None:
    one, two = LabCA(tmp_path / "one"), LabCA(tmp_path / "two")
    assert one.cert_path.read_bytes() == two.cert_path.read_bytes()
    cert_one, key_one = one.issue(["mx.qq.example", "qq.example"])
    cert_two, key_two = two.issue(["mx.qq.example", "qq.example"])
    assert cert_one.read_bytes() == cert_two.read_bytes()
    assert cert_one.parent == tmp_path / "one" and cert_two.parent == tmp_path / "two"
    # other host names: another certificate
    other, _ = two.issue(["smtp.home.example"])
    assert other.read_bytes() != cert_two.read_bytes()
    for key in (key_one, key_two, tmp_path / "one" / "ca.key", *cache.glob("*.key")):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    # the copies work: a client of one lab trusts a server of the other
    version = _handshake(two.server_context(["mx.qq.example"]), one.client_context(), "qq.example")
    assert version.startswith("TLS")


def test_a_ca_near_its_end_is_made_again(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = LabCA(tmp_path / "one").cert_path.read_bytes()
    monkeypatch.setattr(tls, "CA_MARGIN", tls.dt.timedelta(days=400))  # a year is not enough
    second = LabCA(tmp_path / "two").cert_path.read_bytes()
    assert second != first
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache.parent.parent))
    assert LabCA(tmp_path / "three").cert_path.read_bytes() == second  # the new one is kept


def test_a_damaged_cache_entry_is_replaced(cache: Path, tmp_path: Path) -> None:
    first = LabCA(tmp_path / "one").cert_path.read_bytes()
    for path in cache.glob("ca-*.pem"):
        path.write_bytes(b"-----BEGIN CERTIFICATE-----\nbroken\n")
    second = LabCA(tmp_path / "two")
    assert second.cert_path.read_bytes() != first
    cert, _ = second.issue(["mx.qq.example"])
    _handshake(second.server_context(["mx.qq.example"]), second.client_context(), "mx.qq.example")
    assert cert.exists()


def test_a_restarted_lab_keeps_its_own_ca(cache: Path, tmp_path: Path) -> None:
    ca = LabCA(tmp_path / "one").cert_path.read_bytes()
    for path in cache.iterdir():
        path.unlink()
    assert LabCA(tmp_path / "one").cert_path.read_bytes() == ca


def test_the_cache_can_be_turned_off(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILLAB_TLS_CACHE", "0")
    one, two = LabCA(tmp_path / "one"), LabCA(tmp_path / "two")
    assert one.cert_path.read_bytes() != two.cert_path.read_bytes()
    assert not cache.exists()
