"""Per-student progress, saved so that a crash loses nothing.

One JSON file (``$MAILLAB_HOME/progress.json``, else
``~/.local/share/maillab/progress.json``) holds every student's progress in
every lab::

    {"version": 1, "student": "alice",
     "students": {"alice": {"labs": {"receive-only": {
         "started": ..., "updated": ..., "completed": null,
         "steps": {"dig-mx": {"done": true, "attempts": 0, "hints": 0, "answers": []}},
         "actions": [{"step": "null-mx", "action": {"dns_add": {...}}}]}}}}}

``actions`` are the student's own edits to the running lab, in order: the
lab's state is not saved (the services restart clean), so resuming replays
them onto the fresh lab.

Writes are atomic: the new content goes to a temporary file in the same
directory, is flushed to disk (fsync), then renamed over the old file
(``os.replace`` is atomic on POSIX and Windows), and the directory is synced.
A crash at any moment leaves either the old file or the new one, never half
of one. A lock file serialises read-modify-write between front ends (a TUI
and a notebook at the same time) where the OS offers ``fcntl``.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, field
from pathlib import Path
from typing import Any

from sim.errors import ArgumentError, LabError
from sim.fastclass import dataclass

__all__ = [
    "FileProgressStore",
    "LabProgress",
    "MemoryProgressStore",
    "ProgressStore",
    "StepProgress",
    "check_student_id",
    "default_progress_path",
    "default_student",
    "remember_student",
    "stored_student",
]

VERSION = 1


def default_progress_path() -> Path:
    """``$MAILLAB_HOME/progress.json``, else ``~/.local/share/maillab/progress.json``
    (``$XDG_DATA_HOME`` is honoured when set)."""
    home = os.environ.get("MAILLAB_HOME")
    if home:
        return Path(home) / "progress.json"
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "maillab" / "progress.json"


def default_student() -> str:
    """``$MAILLAB_STUDENT``, else the student id stored with the progress
    (asked once by the TUI or a notebook), else the login name."""
    name = os.environ.get("MAILLAB_STUDENT")
    if name:
        return name
    stored = stored_student()
    if stored:
        return stored
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "student"


#: A student id: what a course's roster would use (a login, a number, an
#: e-mail address); it names the student's variants and submissions.
STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")


def check_student_id(text: str) -> str:
    """``text`` as a student id, or :class:`~sim.errors.ArgumentError` saying why not."""
    value = text.strip()
    if not STUDENT_ID.fullmatch(value):
        raise ArgumentError(
            f"{text!r} is not a student id: 1 to 64 letters, digits and . _ @ + -, "
            "starting with a letter or digit"
        )
    return value


def stored_student(path: Path | None = None) -> str | None:
    """The student id stored with the progress (None when none is)."""
    try:
        data = json.loads((path or default_progress_path()).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = data.get("student") if isinstance(data, dict) else None
    return name if isinstance(name, str) and STUDENT_ID.fullmatch(name) else None


def remember_student(name: str, path: Path | None = None) -> str:
    """Store ``name`` as this machine's student id (checked first); the
    progress file keeps it beside every student's progress."""
    student = check_student_id(name)
    store = FileProgressStore(path, student=student)
    try:
        with store._locked():
            data = store._read()
            data["version"] = VERSION
            data["student"] = student
            store._write(data)
    except OSError as err:
        raise LabError(f"cannot save the student id to {store.path}: {err.strerror}") from None
    return student


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class StepProgress:
    """What a student did in one step."""

    done: bool = False
    attempts: int = 0
    hints: int = 0
    answers: list[str] = field(default_factory=list)
    done_at: str | None = None

    @classmethod
    def from_json(cls, raw: Any) -> StepProgress:
        if not isinstance(raw, dict):
            return cls()
        return cls(
            done=bool(raw.get("done", False)),
            attempts=int(raw.get("attempts", 0)),
            hints=int(raw.get("hints", 0)),
            answers=[str(a) for a in raw.get("answers", [])],
            done_at=raw.get("done_at"),
        )


def _seconds(value: Any) -> float:
    try:
        return max(0.0, float(value or 0.0))
    except (TypeError, ValueError):
        return 0.0


@dataclass
class LabProgress:
    """A student's progress in one lab."""

    lab_id: str
    steps: dict[str, StepProgress] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)
    started: str = field(default_factory=_now)
    updated: str = field(default_factory=_now)
    completed: str | None = None
    #: Seconds the student spent with the lab open (the TUI counts them).
    seconds: float = 0.0

    def step(self, step_id: str) -> StepProgress:
        return self.steps.setdefault(step_id, StepProgress())

    def done(self, step_id: str) -> bool:
        found = self.steps.get(step_id)
        return found is not None and found.done

    def to_json(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "updated": self.updated,
            "completed": self.completed,
            "seconds": round(self.seconds, 1),
            "steps": {k: asdict(v) for k, v in self.steps.items()},
            "actions": self.actions,
        }

    @classmethod
    def from_json(cls, lab_id: str, raw: Any) -> LabProgress:
        if not isinstance(raw, dict):
            return cls(lab_id)
        steps = raw.get("steps") if isinstance(raw.get("steps"), dict) else {}
        actions = raw.get("actions") if isinstance(raw.get("actions"), list) else []
        return cls(
            lab_id=lab_id,
            steps={str(k): StepProgress.from_json(v) for k, v in (steps or {}).items()},
            actions=[a for a in actions or [] if isinstance(a, dict)],
            started=str(raw.get("started") or _now()),
            updated=str(raw.get("updated") or _now()),
            completed=raw.get("completed"),
            seconds=_seconds(raw.get("seconds")),
        )

    def summary(self, total: int) -> dict[str, Any]:
        done = sum(1 for s in self.steps.values() if s.done)
        return {
            "done": done,
            "total": total,
            "completed": self.completed is not None,
            "updated": self.updated,
        }


class ProgressStore:
    """Where progress lives. :class:`FileProgressStore` for students,
    :class:`MemoryProgressStore` for headless runs (``maillab check``)."""

    student: str = "student"

    def load(self, lab_id: str) -> LabProgress:
        raise NotImplementedError

    def save(self, progress: LabProgress) -> None:
        raise NotImplementedError

    def reset(self, lab_id: str) -> None:
        raise NotImplementedError

    def exists(self, lab_id: str) -> bool:
        raise NotImplementedError


class MemoryProgressStore(ProgressStore):
    """Progress kept in memory only."""

    def __init__(self, student: str = "check") -> None:
        self.student = student
        self._labs: dict[str, dict[str, Any]] = {}

    def load(self, lab_id: str) -> LabProgress:
        return LabProgress.from_json(lab_id, self._labs.get(lab_id))

    def save(self, progress: LabProgress) -> None:
        progress.updated = _now()
        self._labs[progress.lab_id] = json.loads(json.dumps(progress.to_json()))

    def reset(self, lab_id: str) -> None:
        self._labs.pop(lab_id, None)

    def exists(self, lab_id: str) -> bool:
        return lab_id in self._labs


class FileProgressStore(ProgressStore):
    """Progress in one JSON file shared by every student of the machine."""

    def __init__(self, path: Path | None = None, student: str | None = None) -> None:
        self.path = path if path is not None else default_progress_path()
        self.student = student if student is not None else default_student()
        #: Set when a damaged file was moved aside (the front end may say so).
        self.warning: str | None = None

    # -- the file ------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"version": VERSION, "students": {}}
        except OSError as err:
            raise LabError(f"cannot read progress file {self.path}: {err.strerror}") from None
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or not isinstance(data.get("students"), dict):
                raise ValueError("not a maillab progress file")
        except ValueError as err:
            # Our writes are atomic, so this file was damaged by something
            # else. Keep it for the curious and start afresh rather than
            # refusing to run a lab.
            aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            self.warning = (
                f"the progress file {self.path} was damaged ({err}); "
                f"it was moved to {aside.name} and progress starts afresh"
            )
            return {"version": VERSION, "students": {}}
        checked: dict[str, Any] = data
        return checked

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(self.path.parent)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[bool]:
        """Hold the lock file; yields whether the lock is exclusive."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; last writer wins
            yield False
            return
        with open(self.path.with_name(self.path.name + ".lock"), "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield True
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _sweep(self) -> None:
        """Remove temporary files left by writers that died before renaming
        (safe only under the exclusive lock: no other writer is running)."""
        for stray in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                stray.unlink()

    def _labs(self, data: dict[str, Any]) -> dict[str, Any]:
        student = data["students"].setdefault(self.student, {})
        if not isinstance(student, dict):
            student = data["students"][self.student] = {}
        labs = student.setdefault("labs", {})
        if not isinstance(labs, dict):
            labs = student["labs"] = {}
        checked: dict[str, Any] = labs
        return checked

    # -- the store -----------------------------------------------------------

    def load(self, lab_id: str) -> LabProgress:
        data = self._read()
        raw = self._labs(data).get(lab_id)
        return LabProgress.from_json(lab_id, raw)

    def exists(self, lab_id: str) -> bool:
        return lab_id in self._labs(self._read())

    def save(self, progress: LabProgress) -> None:
        progress.updated = _now()
        try:
            with self._locked() as exclusive:
                if exclusive:
                    self._sweep()
                data = self._read()
                data["version"] = VERSION
                self._labs(data)[progress.lab_id] = progress.to_json()
                self._write(data)
        except OSError as err:
            raise LabError(f"cannot save progress to {self.path}: {err.strerror or err}") from None

    def reset(self, lab_id: str) -> None:
        try:
            with self._locked():
                data = self._read()
                if self._labs(data).pop(lab_id, None) is not None:
                    self._write(data)
        except OSError as err:
            raise LabError(f"cannot reset progress in {self.path}: {err.strerror or err}") from None

    def all_labs(self) -> dict[str, LabProgress]:
        """This student's progress in every lab started."""
        labs = self._labs(self._read())
        return {lab_id: LabProgress.from_json(lab_id, raw) for lab_id, raw in labs.items()}


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # Windows cannot open directories; its rename is already durable
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
