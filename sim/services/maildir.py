"""Mail storage: one Maildir per user, with INBOX and Junk (the MDA's job).

Maildir (https://cr.yp.to/proto/maildir.html) is what Postfix's local
delivery and Dovecot use: each message is a file, written under ``tmp/`` and
renamed into ``new/`` when complete, so a reader never sees half a message
and a crash never loses an accepted one. Folders follow the Maildir++ layout
Dovecot uses: ``.Junk/`` beside ``cur/ new/ tmp/``.

The standard library's :class:`mailbox.Maildir` reads and makes the folders;
delivery is written here (:func:`_write`: one journal commit per message
instead of the stdlib's two, with fsync for durability), with the lab layout
(``STATE/NODE/mail/USER``) and plain-data views for the API.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import functools
import itertools
import mailbox
import os
import re
import secrets
import socket
import time
from email.message import EmailMessage
from pathlib import Path

from sim.fastclass import dataclass

__all__ = [
    "FOLDERS",
    "RENAME_SYNCED_WITH_FILE",
    "Maildir",
    "StoredMessage",
    "fs_type",
    "mail_root",
    "mount_fs_type",
]

#: The folders every mailbox has; "Junk" is where spam-filed mail goes.
FOLDERS = ("INBOX", "Junk")


def mail_root(state_dir: Path, node: str) -> Path:
    """Where ``node`` keeps its users' mailboxes (shared by both backends)."""
    return state_dir / node / "mail"


@dataclass(frozen=True)
class StoredMessage:
    user: str
    folder: str
    key: str
    path: Path
    data: bytes

    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def subject(self) -> str:
        return str(self.message().get("Subject", ""))

    def header(self, name: str) -> list[str]:
        return [str(v) for v in self.message().get_all(name, [])]


def _message_path(box: mailbox.Maildir, key: str) -> Path:
    # The stdlib has no public way to get a message's file: its private
    # helpers are stable across 3.x and documented in mailbox.py itself.
    sub: str = box._lookup(key)  # type: ignore[attr-defined]
    return Path(box._path) / sub


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_count = itertools.count(1)
# The host part of a Maildir name may hold neither "/" nor ":" (the spec's
# escapes, as the stdlib writes them).
_HOST = socket.gethostname().replace("/", r"\057").replace(":", r"\072")


def _unique() -> str:
    """A Maildir file name: seconds, then M(microseconds) P(pid) Q(count)
    R(random) and the host, as the Maildir spec and Dovecot write it. The
    random part keeps it apart from names the stdlib makes in this process."""
    now = time.time()
    usec = int(now % 1 * 1_000_000)
    return f"{int(now)}.M{usec}P{os.getpid()}Q{next(_count)}R{secrets.token_hex(4)}.{_HOST}"


#: File systems on which a file's fsync also makes durable a rename of that
#: file done before it: the rename changed the file's inode (its ctime), so
#: the journal transaction the fsync commits (ext4's i_sync_tid, XFS's log
#: force up to the inode's last change) or the log it writes (btrfs: the new
#: name) holds the new directory entry too. This is what Postfix relies on:
#: its queue files are fsync'd, their directories never.
RENAME_SYNCED_WITH_FILE = frozenset({"ext4", "ext3", "xfs", "btrfs"})


def _unescape_mount(field: str) -> str:
    # /proc/self/mountinfo writes space, tab, newline and backslash as \ooo.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


@functools.lru_cache(maxsize=64)
def fs_type(path: Path) -> str | None:
    """The type of the file system that holds ``path`` (from Linux's
    ``/proc/self/mountinfo``: the mount point that is the longest prefix of
    the real path), or None where that cannot be told."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return None
    return mount_fs_type(mountinfo, os.path.realpath(path))


def mount_fs_type(mountinfo: str, real: str) -> str | None:
    """The file system type of the absolute path ``real`` according to the
    text of a ``/proc/self/mountinfo`` (proc(5)): ``ID PARENT MAJ:MIN ROOT
    MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER-OPTIONS``."""
    best, found = -1, None
    for line in mountinfo.splitlines():
        fields, sep, rest = line.partition(" - ")
        parts = fields.split()
        if not sep or len(parts) < 5 or not rest:
            continue
        mount = _unescape_mount(parts[4])
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= best:  # a later mount on the same point wins
            best, found = len(mount), rest.split()[0]
    return found


def _write(box: Path, data: bytes, sync_dir: bool) -> str:
    """Deliver ``data`` into the Maildir ``box``: written in ``tmp/``, moved
    to ``new/``, then made durable before we return, hence before the 250
    (RFC 5321 §6.1): the file fsync'd, and ``new/`` too unless ``sync_dir``
    is False (:data:`RENAME_SYNCED_WITH_FILE`).

    The move comes before the fsync, where the Maildir spec syncs first: the
    file is complete when it appears (every byte written), so a reader never
    sees half a message. What this order saves is a second journal commit
    (or a second flush of the disk's cache): the file's fsync makes the
    rename durable with it, one commit per message, as Postfix's queue file
    costs. The price is a crash in the moments between the move and the
    fsync, before any 250: the message may then be in ``new/`` (possibly
    empty on a file system that writes names before data) while the client,
    which had no reply, sends it again. RFC 5321 §6.1 prefers a duplicate to
    a loss; nothing acknowledged is lost.
    """
    key = _unique()
    root = os.fspath(box)
    tmp, new = f"{root}/tmp/{key}", f"{root}/new/{key}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    moved = False
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.rename(tmp, new)
        moved = True
        os.fsync(fd)
    except BaseException:
        # Nothing half-stored stays: not acknowledged, it will come again.
        with contextlib.suppress(OSError):
            os.unlink(new if moved else tmp)
        raise
    finally:
        os.close(fd)
    if sync_dir:
        _fsync_dir(Path(root, "new"))
    return key


class Maildir:
    """The mailboxes of one node: ``root/USER`` is a Maildir per user."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # The folders deliver() has made or found, so that a delivery does not
        # check the directories again (made again if one disappears).
        self._ready: dict[tuple[str, str], Path] = {}
        # Whether a delivery must fsync new/ as well as the file (the
        # mailboxes live under root, on one file system in any lab).
        self._sync_dirs = fs_type(root) not in RENAME_SYNCED_WITH_FILE

    def _box(self, user: str, folder: str, create: bool) -> mailbox.Maildir | None:
        if not user or "/" in user or user.startswith("."):
            raise ValueError(f"not a mailbox name: {user!r}")
        path = self.root / user
        if not create and not path.exists():
            return None
        if create:
            # The MX and the mailbox service may create one mailbox at the same
            # moment; mailbox.Maildir(create=True) fails for the loser of that
            # race (FileExistsError), so make the directories tolerantly first.
            for sub in ("tmp", "new", "cur"):
                (path / sub).mkdir(parents=True, exist_ok=True)
        box = mailbox.Maildir(path, factory=None, create=create)
        if folder == "INBOX":
            return box
        if folder not in box.list_folders():
            if not create:
                return None
            try:
                return box.add_folder(folder)
            except FileExistsError:  # made by the other service meanwhile
                return box.get_folder(folder)
        return box.get_folder(folder)

    def create(self, user: str) -> None:
        """Make the mailbox with all its folders (an empty INBOX is still a mailbox)."""
        for folder in FOLDERS:
            self._box(user, folder, create=True)

    def deliver(self, user: str, data: bytes, folder: str = "INBOX") -> str:
        """Store one message durably; returns its key."""
        path = self._ready.get((user, folder))
        try:
            if path is None:
                path = self._folder(user, folder)
            key = _write(path, data, self._sync_dirs)
        except FileNotFoundError:
            # The mailbox was removed under us (a reset): make it again, once.
            path = self._folder(user, folder)
            key = _write(path, data, self._sync_dirs)
        self._ready[(user, folder)] = path
        return key

    def _folder(self, user: str, folder: str) -> Path:
        box = self._box(user, folder, create=True)
        assert box is not None
        return Path(box._path)

    def users(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "cur").is_dir())

    def messages(self, user: str, folder: str = "INBOX") -> list[StoredMessage]:
        box = self._box(user, folder, create=False)
        if box is None:
            return []
        out = []
        for key in box.iterkeys():
            path = _message_path(box, key)
            out.append(StoredMessage(user, folder, key, path, path.read_bytes()))
        # Maildir keys start with the delivery time: sort by it, oldest first.
        return sorted(out, key=lambda m: (m.path.stat().st_mtime_ns, m.key))
