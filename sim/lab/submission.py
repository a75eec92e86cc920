"""A student's submission (issue 16 §2): what ``maillab export`` writes and
``maillab grade`` reads.

One JSON file per student::

    {"format": "maillab-submission", "version": 1,
     "student": "alice", "exported": "2026-12-06T11:30:00Z",
     "labs": [{"id": "dkim", "version": "sha256:1f2e...", "title": "...",
               "variables": {"selector": "k2026"},
               "started": ..., "updated": ..., "completed": ..., "seconds": 1260.0,
               "steps": {"publish-key": {"done": true, "attempts": 2, "hints": 1,
                                         "answers": [], "done_at": ..., "seconds": 310.0}},
               "actions": [{"step": "publish-key", "action": {"dkim_publish": {...}}}]}]}

It is the progress store's record (:mod:`sim.lab.progress`) of each lab, with
the lab's version (a digest of the lab file and its topology, so that a
grader sees a submission made against another version of the lab) and the
student's variant. A step's ``seconds`` is the time from the previous step
done (or the lab's start) to this one's: the store keeps when each step was
done, not how long the student looked at it.

Nothing in the file is trusted by the grader: ``done`` is what the student's
session said, and :mod:`sim.lab.grading` replays the edits and answers to
decide for itself.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sim.errors import ArgumentError, Problem
from sim.fastclass import dataclass
from sim.lab.model import LabDef
from sim.lab.progress import LabProgress, check_student_id

__all__ = [
    "FORMAT",
    "LabSubmission",
    "Submission",
    "build_submission",
    "lab_version",
    "read_submission",
]

FORMAT = "maillab-submission"
VERSION = 1
#: A submission is a small file; anything bigger is not one (checked before reading).
MAX_BYTES = 8 * 1024 * 1024


def lab_version(lab: LabDef) -> str:
    """A digest of the lab file and its topology file: equal when neither changed."""
    digest = hashlib.sha256()
    for path in (lab.source, lab.topology_path):
        if path is not None:
            try:
                digest.update(Path(path).read_bytes())
            except OSError:
                digest.update(b"?")
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()[:16]


def _epoch(stamp: Any) -> float | None:
    try:
        return float(calendar.timegm(time.strptime(str(stamp), "%Y-%m-%dT%H:%M:%SZ")))
    except (TypeError, ValueError):
        return None


def _step_seconds(lab: LabDef, progress: LabProgress) -> dict[str, float]:
    """Each step's time: from the previous step done (or the start) to its own."""
    out: dict[str, float] = {}
    last = _epoch(progress.started)
    for step in lab.steps:
        state = progress.steps.get(step.id)
        when = _epoch(state.done_at) if state is not None and state.done else None
        if when is not None and last is not None:
            out[step.id] = max(0.0, when - last)
            last = when
    return out


def _lab_record(lab: LabDef, progress: LabProgress | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": lab.id,
        "title": lab.title,
        "version": lab_version(lab),
        "variables": dict(lab.values),
    }
    if progress is None:
        record.update(started=None, updated=None, completed=None, seconds=0.0)
        record.update(steps={}, actions=[])
        return record
    data = progress.to_json()
    seconds = _step_seconds(lab, progress)
    for step_id, step in data["steps"].items():
        step["seconds"] = round(seconds.get(step_id, 0.0), 1)
    record.update(data)
    return record


def build_submission(
    student: str, labs: Sequence[LabDef], progress: Mapping[str, LabProgress]
) -> dict[str, Any]:
    """The submission of ``student`` for ``labs`` (each the student's
    variant), from their progress by lab id."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "student": student,
        "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "labs": [_lab_record(lab, progress.get(lab.id)) for lab in labs],
    }


# -- reading -------------------------------------------------------------------------


@dataclass(frozen=True)
class LabSubmission:
    """One lab of a submission, as the student's session recorded it."""

    id: str
    version: str
    progress: LabProgress
    #: Per step, the seconds the export computed (0 when unknown).
    step_seconds: Mapping[str, float]


@dataclass(frozen=True)
class Submission:
    student: str
    labs: tuple[LabSubmission, ...]
    source: str


def read_submission(path: str | Path) -> Submission:
    """A submission file, checked; :class:`~sim.errors.InputError` (one line
    naming the file) when it is not one."""
    from sim.errors import InputError
    from sim.inputfile import InputFileError, read_input_text

    source = str(path)

    def bad(message: str) -> InputError:
        return InputError([Problem(source, 1, 1, message)])

    try:
        text = read_input_text(path, what="submission file", limit=MAX_BYTES)
    except InputFileError:
        raise
    try:
        data = json.loads(text)
    except ValueError as err:
        line, col = getattr(err, "lineno", 1), getattr(err, "colno", 1)
        raise InputError([Problem(source, line, col, f"not JSON: {err}")]) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise bad(f'not a maillab submission (no "format": "{FORMAT}")')
    if data.get("version") != VERSION:
        raise bad(f"submission version {data.get('version')!r}; this maillab reads {VERSION}")
    try:
        student = check_student_id(str(data.get("student") or ""))
    except ArgumentError as err:
        raise bad(f"student: {err}") from None
    labs = data.get("labs")
    if not isinstance(labs, list):
        raise bad('"labs" must be a list')
    out = []
    for i, raw in enumerate(labs):
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            raise bad(f'labs[{i}] must be an object with an "id"')
        try:
            progress = LabProgress.from_json(raw["id"], raw)
        except (TypeError, ValueError) as err:
            raise bad(f"labs[{i}] ({raw['id']}): {err}") from None
        steps = raw.get("steps") if isinstance(raw.get("steps"), dict) else {}
        seconds = {
            str(k): _number(v.get("seconds"))
            for k, v in (steps or {}).items()
            if isinstance(v, dict)
        }
        out.append(LabSubmission(raw["id"], str(raw.get("version") or ""), progress, seconds))
    return Submission(student, tuple(out), source)


def _number(value: Any) -> float:
    try:
        return max(0.0, float(value or 0.0))
    except (TypeError, ValueError):
        return 0.0
