"""sim.services.maildir: delivery into a Maildir, durable before it returns.

A delivered message is one complete file in ``new/`` (nothing left in
``tmp/``), read back by the stdlib's Maildir and by :meth:`Maildir.messages`;
the file (and ``new/``, unless the file system makes the move durable with
the file) is fsync'd before :meth:`Maildir.deliver` returns (RFC 5321 §6.1:
what is acknowledged must survive a crash); a write that fails leaves
nothing behind.
"""

from __future__ import annotations

import mailbox
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sim.services import maildir
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


@pytest.mark.parametrize(
    ("fs", "dir_synced"), [("ext4", False), ("xfs", False), ("nfs", True), (None, True)]
)
def test_synced_before_deliver_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fs: str | None, dir_synced: bool
) -> None:
    """The file, by the name it has after the move, is fsync'd; new/ as well
    unless the file system makes the move durable with the file's fsync."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name what was synced")
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(maildir, "fs_type", lambda path: fs)
    box = Maildir(tmp_path)
    box.create("bob")
    monkeypatch.setattr(os, "fsync", fsync)
    key = box.deliver("bob", MESSAGE)
    new = tmp_path / "bob" / "new"
    assert synced == [str(new / key), str(new)] if dir_synced else [str(new / key)]


MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
23 22 0:21 / /proc rw,nosuid shared:2 - proc proc rw
30 22 0:26 / /tmp rw,nosuid shared:9 - tmpfs tmpfs rw,size=1g
31 22 0:27 / /mnt/my\\040disk rw shared:10 master:3 - xfs /dev/vdb rw
32 30 0:28 / /tmp/state rw - btrfs /dev/vdc rw
"""


@pytest.mark.parametrize(
    ("path", "fs"),
    [
        ("/home/student/lab", "ext4"),
        ("/", "ext4"),
        ("/tmp", "tmpfs"),
        ("/tmp/x/mail", "tmpfs"),
        ("/tmpfoo/mail", "ext4"),  # a prefix of the name is not a mount
        ("/tmp/state/mx-qq/mail", "btrfs"),  # the deepest mount holds it
        ("/mnt/my disk/lab", "xfs"),  # mountinfo escapes the space as \040
    ],
)
def test_the_file_system_of_a_path(path: str, fs: str) -> None:
    assert maildir.mount_fs_type(MOUNTINFO, path) == fs


def test_fs_type_agrees_with_findmnt(tmp_path: Path) -> None:
    findmnt = shutil.which("findmnt")
    if findmnt is None or not Path("/proc/self/mountinfo").exists():
        pytest.skip("needs Linux's /proc/self/mountinfo and findmnt (util-linux)")
    out = subprocess.run(
        [findmnt, "-n", "-o", "FSTYPE", "--target", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert maildir.fs_type(tmp_path) == out.stdout.strip()


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


def test_a_failed_fsync_after_the_move_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The name is in new/ before the fsync: an error there must take it away
    # again (the client gets no 250 and will send the message again).
    box = Maildir(tmp_path)
    box.create("bob")

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="Input/output"):
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
