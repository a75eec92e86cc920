"""sim.services.maildir: delivery into a Maildir, durable before it returns.

A delivered message is one complete file in ``new/`` (nothing left in
``tmp/``), read back by the stdlib's Maildir and by :meth:`Maildir.messages`;
the file and ``new/`` are fsync'd before :meth:`Maildir.deliver` returns
(RFC 5321 §6.1: what is acknowledged must survive a crash); a write that
fails leaves nothing behind.
"""

from __future__ import annotations

import mailbox
import os
from pathlib import Path

import pytest

from sim.services.maildir import Maildir

MESSAGE = b"From: a@home.example\r\nSubject: hello\r\n\r\nbody\r\n"


def test_a_delivery_is_one_complete_file_in_new(tmp_path: Path) -> None:
    box = Maildir(tmp_path)
    key = box.deliver("bob", MESSAGE)
    user = tmp_path / "bob"
    assert [p.name for p in (user / "new").iterdir()] == [key]
    assert (user / "new" / key).read_bytes() == MESSAGE
    assert list((user / "tmp").iterdir()) == []
    # The stdlib reads it (Dovecot-style readers list new/ the same way).
    stdlib = mailbox.Maildir(user, factory=None)
    assert stdlib.keys() == [key]
    assert stdlib.get_bytes(key) == MESSAGE
    [stored] = box.messages("bob")
    assert (stored.key, stored.data, stored.subject) == (key, MESSAGE, "hello")


def test_keys_are_unique_and_folders_kept_apart(tmp_path: Path) -> None:
    box = Maildir(tmp_path)
    keys = [box.deliver("bob", MESSAGE + b"%d\r\n" % i) for i in range(50)]
    junk = box.deliver("bob", MESSAGE, "Junk")
    assert len({*keys, junk}) == 51
    assert all("/" not in k and ":" not in k for k in keys)
    assert len(box.messages("bob")) == 50
    assert [m.key for m in box.messages("bob", "Junk")] == [junk]
    assert (tmp_path / "bob" / ".Junk" / "new" / junk).exists()


def test_file_and_new_are_synced_before_deliver_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name what was synced")
    monkeypatch.setattr(os, "fsync", fsync)
    box = Maildir(tmp_path)
    box.create("bob")
    key = box.deliver("bob", MESSAGE)
    new = tmp_path / "bob" / "new"
    # The file (by the name it has after the move) and then the directory
    # that holds its name.
    assert synced == [str(new / key), str(new)]


def test_a_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box = Maildir(tmp_path)
    box.create("bob")

    def full(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError, match="No space"):
        box.deliver("bob", MESSAGE)
    user = tmp_path / "bob"
    assert list((user / "tmp").iterdir()) == [] and list((user / "new").iterdir()) == []


def test_a_removed_mailbox_is_made_again(tmp_path: Path) -> None:
    box = Maildir(tmp_path)
    box.deliver("bob", MESSAGE)
    for sub in ("new", "cur", "tmp"):
        for f in (tmp_path / "bob" / sub).iterdir():
            f.unlink()
        (tmp_path / "bob" / sub).rmdir()
    key = box.deliver("bob", MESSAGE)
    assert [m.key for m in box.messages("bob")] == [key]
