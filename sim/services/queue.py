"""The relay's durable queue: what a 250 promised survives a crash.

RFC 5321 §6.1: once an MTA answers 250 to the final dot, the message is its
responsibility; it "MUST NOT lose the message for frivolous reasons, such as
because the host later crashes". Postfix keeps a queue file per message and
fsyncs it before answering; so does this spool.

Layout, one pair of files per message in ``STATE/NODE/queue/``::

    QUEUEID.eml    the message, exactly as it will be sent
    QUEUEID.json   the envelope: sender, recipients with their state, the
                   trace id, attempts, next attempt (lab time), timestamps

Every file is written under a temporary name, fsynced, renamed into place,
and the directory fsynced (rename is atomic, but only a synced directory
makes the new name durable). The message goes first, the envelope second:
the envelope's rename is the commit point. A message file without an
envelope is an enqueue that never finished (never acknowledged) and is
removed on load; removing an entry unlinks the envelope first for the same
reason.

The spool also keeps a **journal** (``STATE/NODE/queue/journal``), one JSON
line per delivery transaction: ``start`` before the relay connects,
``recorded`` once a remote 250 to the final dot is durably in the envelope,
``end`` when the transaction is over. It is evidence, not a commit point:
appended and flushed, not fsynced (it survives the process being killed, which
is what it documents). After a crash, :func:`in_flight` names the entries
whose delivery was under way: only those may arrive twice (RFC 5321 §6.1
prefers a duplicate to a loss). It is rotated to ``journal.1`` past
:data:`JOURNAL_LIMIT` octets.

Lab time restarts at zero with every lab, so entries also record the lab time
at which they were saved; :meth:`Spool.load` shifts their timestamps so that a
message keeps its age across a restart (time the relay was down does not
count, as if the machine had been off).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

from sim.fastclass import dataclass
from sim.services.smtpclient import Reply

__all__ = ["EntryKind", "QueueEntry", "RcptState", "Recipient", "Spool", "in_flight"]

RcptState = Literal["pending", "deferred", "delivered", "bounced"]
EntryKind = Literal["message", "dsn"]

#: The journal is rotated (one old file kept) past this size, in octets.
JOURNAL_LIMIT = 4 * 1024 * 1024

#: Recipients in these states still wait for delivery.
OPEN_STATES: tuple[RcptState, ...] = ("pending", "deferred")


@dataclass
class Recipient:
    """One envelope recipient and where its delivery stands."""

    address: str
    state: RcptState = "pending"
    reply: Reply | None = None
    remote_mta: str | None = None
    #: The address of the remote MTA, and the SMTP stage its reply came at.
    remote_address: str | None = None
    stage: str | None = None
    attempts: int = 0
    #: The sender has been told (a failure DSN was queued or dropped).
    reported: bool = False

    @property
    def open(self) -> bool:
        return self.state in OPEN_STATES

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "state": self.state,
            "reply": self.reply.to_json() if self.reply else None,
            "remote_mta": self.remote_mta,
            "remote_address": self.remote_address,
            "stage": self.stage,
            "attempts": self.attempts,
            "reported": self.reported,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Recipient:
        state = str(raw.get("state", "pending"))
        if state not in ("pending", "deferred", "delivered", "bounced"):
            raise ValueError(f"unknown recipient state {state!r}")
        reply = raw.get("reply")
        return cls(
            address=str(raw["address"]),
            state=state,  # type: ignore[arg-type]
            reply=Reply.from_json(reply) if reply else None,
            remote_mta=raw.get("remote_mta"),
            remote_address=raw.get("remote_address"),
            stage=raw.get("stage"),
            attempts=int(raw.get("attempts", 0)),
            reported=bool(raw.get("reported", False)),
        )


@dataclass
class QueueEntry:
    """A queued message's envelope and delivery state (times in lab seconds)."""

    id: str
    mail_from: str
    rcpts: list[Recipient]
    created: float
    next_attempt: float
    #: RFC 5322 date of arrival (wall clock), for the DSN's Arrival-Date.
    arrival: str
    size: int = 0
    trace_id: str | None = None
    attempts: int = 0
    warned: bool = False
    held: bool = False
    kind: EntryKind = "message"
    authenticated_user: str | None = None
    saved_at: float = 0.0
    notes: list[str] = field(default_factory=list)

    def open_rcpts(self) -> list[Recipient]:
        return [r for r in self.rcpts if r.open]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "mail_from": self.mail_from,
            "rcpts": [r.to_json() for r in self.rcpts],
            "created": self.created,
            "next_attempt": self.next_attempt,
            "arrival": self.arrival,
            "size": self.size,
            "trace_id": self.trace_id,
            "attempts": self.attempts,
            "warned": self.warned,
            "held": self.held,
            "authenticated_user": self.authenticated_user,
            "saved_at": self.saved_at,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> QueueEntry:
        kind = str(raw.get("kind", "message"))
        if kind not in ("message", "dsn"):
            raise ValueError(f"unknown entry kind {kind!r}")
        return cls(
            id=str(raw["id"]),
            kind=kind,  # type: ignore[arg-type]
            mail_from=str(raw["mail_from"]),
            rcpts=[Recipient.from_json(r) for r in raw["rcpts"]],
            created=float(raw["created"]),
            next_attempt=float(raw["next_attempt"]),
            arrival=str(raw.get("arrival", "")),
            size=int(raw.get("size", 0)),
            trace_id=raw.get("trace_id"),
            attempts=int(raw.get("attempts", 0)),
            warned=bool(raw.get("warned", False)),
            held=bool(raw.get("held", False)),
            authenticated_user=raw.get("authenticated_user"),
            saved_at=float(raw.get("saved_at", 0.0)),
        )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


class Spool:
    """The queue directory. Blocking file I/O: call from a worker thread."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _envelope(self, queue_id: str) -> Path:
        return self.root / f"{queue_id}.json"

    def _message(self, queue_id: str) -> Path:
        return self.root / f"{queue_id}.eml"

    def new_id(self) -> str:
        """A fresh queue id (ten hex digits, like Postfix's short ids)."""
        while True:
            queue_id = secrets.token_hex(5).upper()
            if not self._envelope(queue_id).exists() and not self._message(queue_id).exists():
                return queue_id

    def add(self, entry: QueueEntry, data: bytes, now: float) -> None:
        """Store a new entry durably (``now``: lab time); when this returns, a
        crash cannot lose it."""
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(self._message(entry.id), data)
        self.save(entry, now)

    def save(self, entry: QueueEntry, now: float) -> None:
        """Replace the envelope of an entry (its state changed) at lab time ``now``."""
        entry.saved_at = now
        payload = json.dumps(entry.to_json(), indent=1, sort_keys=True).encode()
        _atomic_write(self._envelope(entry.id), payload)

    def remove(self, queue_id: str) -> None:
        """Forget an entry: the envelope first (the commit), then the message."""
        with contextlib.suppress(FileNotFoundError):
            self._envelope(queue_id).unlink()
            _fsync_dir(self.root)
        with contextlib.suppress(FileNotFoundError):
            self._message(queue_id).unlink()

    def data(self, queue_id: str) -> bytes:
        return self._message(queue_id).read_bytes()

    @property
    def journal_path(self) -> Path:
        return self.root / "journal"

    def journal(self, event: str, queue_id: str, txn: str, **data: Any) -> None:
        """Append one line to the journal (see the module docstring); ``txn``
        names the transaction. Cheap enough for the event loop: an append to
        the page cache."""
        line = json.dumps({"event": event, "id": queue_id, "txn": txn, **data})
        path = self.journal_path
        # Evidence only: a journal that cannot be written stops no delivery.
        with contextlib.suppress(OSError):
            self.root.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
                size = handle.tell()
            if size > JOURNAL_LIMIT:
                os.replace(path, path.with_name("journal.1"))

    def journal_lines(self) -> list[dict[str, Any]]:
        """The journal's records, oldest first (the rotated file included);
        a line a kill cut short is skipped."""
        records: list[dict[str, Any]] = []
        for path in (self.root / "journal.1", self.journal_path):
            with contextlib.suppress(FileNotFoundError):
                for line in path.read_text(encoding="utf-8").splitlines():
                    with contextlib.suppress(ValueError):
                        records.append(json.loads(line))
        return records

    def load(self, now: float) -> tuple[list[QueueEntry], list[str]]:
        """Every committed entry, timestamps shifted to lab time ``now``; and
        a sentence for each file that had to be set aside or cleaned up."""
        problems: list[str] = []
        entries: list[QueueEntry] = []
        if not self.root.exists():
            return entries, problems
        for path in sorted(self.root.iterdir()):
            if path.name.startswith(".tmp-"):
                # A write that a crash interrupted before its rename.
                path.unlink(missing_ok=True)
        for path in sorted(self.root.glob("*.json")):
            queue_id = path.stem
            try:
                entry = QueueEntry.from_json(json.loads(path.read_text()))
                if entry.id != queue_id:
                    raise ValueError(f"the file says it is {entry.id}")
                if not self._message(queue_id).exists():
                    raise ValueError("its message file is missing")
            except (OSError, ValueError, KeyError, TypeError) as err:
                problems.append(f"queue file {path.name} set aside: {err}")
                aside = self.root / "corrupt"
                aside.mkdir(exist_ok=True)
                os.replace(path, aside / path.name)
                # Keep the message beside it: it may have been acknowledged.
                if self._message(queue_id).exists():
                    os.replace(self._message(queue_id), aside / f"{queue_id}.eml")
                continue
            # Keep the message's age, in the new lab clock's terms.
            shift = now - entry.saved_at
            entry.created += shift
            entry.next_attempt += shift
            entry.saved_at = now
            entries.append(entry)
        known = {e.id for e in entries}
        for path in sorted(self.root.glob("*.eml")):
            if path.stem not in known and not self._envelope(path.stem).exists():
                problems.append(
                    f"removed {path.name}: its enqueue never completed (never acknowledged)"
                )
                path.unlink(missing_ok=True)
        entries.sort(key=lambda e: (e.created, e.id))
        return entries, problems


def in_flight(records: list[dict[str, Any]]) -> set[str]:
    """The queue ids whose delivery transaction had started and was neither
    recorded nor over at the journal's last line: what a crash there leaves
    to be sent again (and so possibly delivered twice)."""
    open_: dict[tuple[str, str], bool] = {}
    for record in records:
        key = (str(record.get("id")), str(record.get("txn")))
        if record.get("event") == "start":
            open_[key] = True
        elif record.get("event") in ("recorded", "end"):
            open_.pop(key, None)
    return {queue_id for queue_id, _ in open_}
