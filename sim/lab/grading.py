"""Grading by replay (issue 16 §2): a submission's labs are started fresh,
as the student's variant, the student's edits and answers are replayed, and
every check runs again. The grade comes from that replay, never from what
the file says: a submission that claims "done" without the edits that make a
task pass gets no credit for it.

What each kind of step is assessed on (:func:`assessed`, also what
``maillab grade --explain`` and the TUI's lab intro say):

* ``explain``: nothing (reading cannot be checked); reported as read or not.
* ``experiment``: run again, if the student ran it; its ``expect`` must hold.
* ``question``: each answer the student gave, in order, judged again; passed
  when one is right. Attempts are the answers given up to the right one.
* ``task``: the student's edits of this step applied, in the order they
  were made; then the task's checks run once and must pass.
* ``checkpoint``: its checks run once on the lab as the replay left it.

Steps are replayed in the lab's order, each step's edits just before it (an
edit recorded without a step goes with the step before it): the state a
later check sees is the one the student's own session built. Attempts, hints
and time come from the submission (they are the student's record, reported,
not graded).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from sim.errors import BackendUnavailable, LabFileError, SimError
from sim.fastclass import dataclass
from sim.lab.checks import PREDICATES
from sim.lab.engine import LabSession, Starter
from sim.lab.model import (
    Check,
    CheckpointStep,
    ExperimentStep,
    ExplainStep,
    LabDef,
    Predicate,
    QuestionStep,
    Step,
    TaskStep,
)
from sim.lab.progress import MemoryProgressStore
from sim.lab.submission import LabSubmission, Submission, lab_version

__all__ = [
    "GradeRow",
    "assessed",
    "assessed_briefly",
    "explain_lab",
    "grade_lab",
    "grade_submission",
]

#: The columns of ``maillab grade --csv``, in order.
COLUMNS = (
    "student",
    "lab",
    "step",
    "kind",
    "assessed",
    "passed",
    "claimed",
    "attempts",
    "hints",
    "seconds",
    "version_ok",
    "detail",
)


@dataclass(frozen=True)
class GradeRow:
    """One student × lab × step: whether it passed on replay."""

    student: str
    lab: str
    step: str
    kind: str
    #: False for what cannot be checked (reading an explanation).
    assessed: bool
    passed: bool
    #: Whether the submission said the step was done (reported, not trusted).
    claimed: bool
    attempts: int
    hints: int
    seconds: float
    #: Whether the submission was made against this version of the lab.
    version_ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# -- what is assessed ------------------------------------------------------------------


def _predicate_text(p: Predicate) -> str:
    value = p.value
    if isinstance(value, Mapping):
        shown = ", ".join(f"{k}={v}" for k, v in value.items())
    elif isinstance(value, list | tuple):
        shown = ", ".join(str(v) for v in value)
    else:
        shown = str(value)
    return f"{p.name} {shown}" if p.name in PREDICATES else shown


def _check_text(check: Check) -> str:
    what = " and ".join(_predicate_text(p) for p in check.expect)
    if check.run is not None:
        return f"{check.run.describe()}: {what}"
    if check.of is not None:
        return f"the result of {check.of}: {what}"
    return f"the lab's state: {what}"


def assessed(step: Step) -> str:
    """What the grader assesses in ``step``, in one sentence."""
    if isinstance(step, ExplainStep):
        return "not assessed (reading is reported, not graded)"
    if isinstance(step, ExperimentStep):
        expect = "; ".join(_predicate_text(p) for p in step.expect) or "it runs"
        return f"you ran it, and run again it shows: {expect}"
    if isinstance(step, QuestionStep):
        kind = "choice" if step.multiple_choice else "answer"
        return f"your {kind}s are judged again: one must be right (attempts are counted)"
    if isinstance(step, TaskStep):
        checks = "; ".join(_check_text(c) for c in step.checks)
        return f"your edits are replayed, then the check must pass: {checks}"
    assert isinstance(step, CheckpointStep)
    return "the check must pass on the replayed lab: " + "; ".join(
        _check_text(c) for c in step.checks
    )


def assessed_briefly(step: Step) -> str:
    """What is assessed in ``step``, without giving its answer away (the
    TUI's lab intro; :func:`assessed` names the exact checks)."""
    if isinstance(step, ExplainStep):
        return "to read, not graded"
    if isinstance(step, ExperimentStep):
        return "run it; its result must show what the step expects"
    if isinstance(step, QuestionStep):
        return "a right answer (your attempts are counted)"
    if isinstance(step, TaskStep):
        return "after your changes, the step's check must pass (hints used are counted)"
    return "the lab as you left it must pass the step's check"


def explain_lab(lab: LabDef) -> list[tuple[str, str, str]]:
    """(step id, kind, what is assessed) for every step of ``lab``."""
    return [(s.id, s.kind, assessed(s)) for s in lab.steps]


# -- the replay ------------------------------------------------------------------------


def _edits_by_step(lab: LabDef, actions: Iterable[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The recorded edits grouped by step, in the order made; an edit
    without a known step goes with the previous edit's step (else the first)."""
    ids = [s.id for s in lab.steps]
    out: dict[str, list[Any]] = {i: [] for i in ids}
    current = ids[0] if ids else ""
    for record in actions:
        step = record.get("step")
        if isinstance(step, str) and step in out:
            current = step
        if current:
            out[current].append(record.get("action"))
    return out


def grade_lab(
    student: str,
    lab: LabDef,
    submitted: LabSubmission | None,
    backend: str = "local",
    *,
    starter: Starter | None = None,
) -> list[GradeRow]:
    """Replay one lab of a submission; one row per step of the lab."""
    try:
        session = LabSession(
            lab, backend, store=MemoryProgressStore(student), starter=starter, student=student
        )
    except LabFileError as err:
        # This student's variant does not load: a problem of the lab, which
        # `maillab validate` reports; the student is not blamed for it silently.
        first = err.problems[0] if err.problems else err
        return [
            GradeRow(
                student,
                lab.id,
                s.id,
                s.kind,
                s.kind != "explain",
                False,
                False,
                0,
                0,
                0.0,
                False,
                f"the student's variant does not load: {first}",
            )
            for s in lab.steps
        ]
    lab = session.definition
    version_ok = submitted is not None and submitted.version == lab_version(lab)
    progress = submitted.progress if submitted is not None else None
    edits = _edits_by_step(lab, progress.actions if progress is not None else [])

    def row(
        step: Step, assessed_: bool, passed: bool, detail: str, attempts: int | None = None
    ) -> GradeRow:
        claim = progress.steps.get(step.id) if progress is not None else None
        return GradeRow(
            student=student,
            lab=lab.id,
            step=step.id,
            kind=step.kind,
            assessed=assessed_,
            passed=passed,
            claimed=bool(claim and claim.done),
            attempts=attempts if attempts is not None else (claim.attempts if claim else 0),
            hints=claim.hints if claim else 0,
            seconds=(submitted.step_seconds.get(step.id, 0.0) if submitted else 0.0),
            version_ok=version_ok,
            detail=detail,
        )

    if progress is None:
        return [row(s, s.kind != "explain", False, "not submitted") for s in lab.steps]
    try:
        session.start(resume=False)
    except BackendUnavailable:
        raise
    except SimError as err:
        why = f"the lab did not start: {err}"
        return [row(s, s.kind != "explain", False, why) for s in lab.steps]
    rows = []
    try:
        for step in lab.steps:
            try:
                rows.append(_replay_step(session, step, edits[step.id], progress, row))
            except SimError as err:
                rows.append(row(step, step.kind != "explain", False, f"error on replay: {err}"))
    finally:
        session.stop()
    return rows


def _replay_step(
    session: LabSession,
    step: Step,
    edits: Sequence[Any],
    progress: Any,
    row: Callable[..., GradeRow],
) -> GradeRow:
    refused = []
    for action in edits:
        if not isinstance(action, Mapping):
            refused.append("an edit that is not an action")
            continue
        result = session.apply(step, action)
        if not result.ok:
            refused.append(result.message)
    note = f" ({len(refused)} edit(s) refused on replay: {refused[0]})" if refused else ""
    claim = progress.steps.get(step.id)
    if isinstance(step, ExplainStep):
        read = bool(claim and claim.done)
        return row(step, False, read, "read" if read else "not read")
    if isinstance(step, ExperimentStep):
        if not (claim and claim.done):
            return row(step, True, False, "not run")
        outcome = session.run_experiment(step)
        return row(step, True, outcome.passed, outcome.detail + note)
    if isinstance(step, QuestionStep):
        answers = list(claim.answers) if claim else []
        for count, given in enumerate(answers, 1):
            feedback = session.answer(step, given)
            if feedback.correct:
                return row(step, True, True, f"right answer {given!r}", count)
        detail = f"no right answer among {len(answers)} given" if answers else "not answered"
        return row(step, True, False, detail, len(answers))
    assert isinstance(step, TaskStep | CheckpointStep)
    checked = session.check(step)
    return row(step, True, checked.passed, checked.detail + note)


def grade_submission(
    submission: Submission,
    labs: Mapping[str, LabDef],
    backend: str = "local",
    *,
    only: Sequence[str] = (),
    starter: Starter | None = None,
) -> list[GradeRow]:
    """Every lab of a submission (or the ``only`` lab ids), replayed in turn."""
    rows: list[GradeRow] = []
    submitted = {lab.id: lab for lab in submission.labs}
    for lab_id in only or list(submitted):
        lab = labs.get(lab_id)
        if lab is None:
            continue
        found = submitted.get(lab_id)
        rows.extend(grade_lab(submission.student, lab, found, backend, starter=starter))
    return rows
