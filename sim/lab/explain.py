"""``maillab check --explain``: why a task's check fails before its solution.

A task teaches something only when its check fails *for the intended
reason* before the reference solution and passes after it. ``maillab check``
already refuses a task whose check passes before the solution; an author
also wants to see *why* it failed: which predicate, on which run, with which
facts of the trace (the reply code, the check verdicts...). A check that
failed because its experiment could not run at all, or because a predicate
the solution does not touch was false, is failing by accident.

:func:`explain_task` turns the two :class:`~sim.lab.engine.CheckOutcome` of
a task (before and after the solution) into a :class:`TaskExplanation`:
plain data with ``to_json`` and :func:`explanation_lines` for the text
report. ``flags`` name what looks accidental:

* ``passes-before``: the check passes before the solution (nothing to do);
* ``error-before``: a check's experiment could not run before the solution,
  so the check fails whatever the predicates say;
* ``fails-after``: the check still fails after the reference solution (or
  the solution could not be applied);
* ``same-failure-after``: a predicate that failed before still fails after,
  so the solution does not fix what failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sim.fastclass import dataclass

if TYPE_CHECKING:
    from sim.lab.engine import CheckOutcome
    from sim.lab.model import Check, TaskStep

__all__ = ["PredicateReport", "TaskExplanation", "explain_task", "explanation_lines"]


@dataclass(frozen=True)
class PredicateReport:
    """One predicate of one check, as it came out on one run."""

    check: int
    subject: str
    predicate: str
    value: Any
    passed: bool
    detail: str
    #: The check's experiment could not run (``predicate`` is then ``run``).
    error: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "subject": self.subject,
            "predicate": self.predicate,
            "value": self.value,
            "passed": self.passed,
            "detail": self.detail,
            "error": self.error,
        }


@dataclass(frozen=True)
class StateReport:
    """A task's check on one state of the lab (before or after the solution)."""

    passed: bool
    predicates: tuple[PredicateReport, ...]
    #: The facts of the runs the check made (sim.lab.facts), by name.
    facts: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "predicates": [p.to_json() for p in self.predicates],
            "facts": dict(self.facts),
        }


@dataclass(frozen=True)
class TaskExplanation:
    step: str
    before: StateReport
    #: None when the reference path stopped before the solution was checked.
    after: StateReport | None
    flags: tuple[str, ...]

    @property
    def failing_before(self) -> tuple[PredicateReport, ...]:
        return tuple(p for p in self.before.predicates if not p.passed)

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "before": self.before.to_json(),
            "after": self.after.to_json() if self.after is not None else None,
            "flags": list(self.flags),
        }


def _subject(check: Check) -> str:
    if check.run is not None:
        return check.run.describe()
    if check.of is not None:
        return f"the result of step {check.of}"
    return "the lab's state"


def _state(outcome: CheckOutcome) -> StateReport:
    reports: list[PredicateReport] = []
    for index, (check, results) in enumerate(outcome.by_check):
        subject = _subject(check)
        if len(results) != len(check.expect):
            # _check returns one failed outcome when the experiment did not run.
            for result in results:
                reports.append(
                    PredicateReport(index, subject, "run", None, result.passed, result.detail, True)
                )
            continue
        for predicate, result in zip(check.expect, results, strict=True):
            reports.append(
                PredicateReport(
                    index, subject, predicate.name, predicate.value, result.passed, result.detail
                )
            )
    facts = outcome.facts.facts if outcome.facts is not None else {}
    return StateReport(
        outcome.passed, tuple(reports), {name: fact.value for name, fact in facts.items()}
    )


def _key(p: PredicateReport) -> tuple[int, str, str]:
    return (p.check, p.predicate, repr(p.value))


def explain_task(
    step: TaskStep, before: CheckOutcome, after: CheckOutcome | None
) -> TaskExplanation:
    """Why ``step``'s check failed before its solution and passed after it."""
    first = _state(before)
    second = _state(after) if after is not None else None
    flags: list[str] = []
    if first.passed:
        flags.append("passes-before")
    if any(p.error for p in first.predicates):
        flags.append("error-before")
    if not first.passed and (second is None or not second.passed):
        flags.append("fails-after")
    if second is not None and not second.passed:
        failed_before = {_key(p) for p in first.predicates if not p.passed}
        if any(_key(p) in failed_before for p in second.predicates if not p.passed):
            flags.append("same-failure-after")
    return TaskExplanation(step.id, first, second, tuple(flags))


_FLAG_TEXT = {
    "passes-before": "the check already passes before the solution: the task teaches nothing",
    "error-before": "before the solution, a check's experiment could not run: "
    "the check fails by accident, not on its predicates",
    "fails-after": "the check does not pass after the reference solution",
    "same-failure-after": "a predicate that failed before still fails after the solution: "
    "the solution does not fix what failed",
}


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)


def _state_lines(title: str, state: StateReport) -> list[str]:
    lines = [f"{title}: {'passes' if state.passed else 'fails'}"]
    for p in state.predicates:
        mark = "ok  " if p.passed else "FAIL"
        what = "run" if p.error else f"{p.predicate}: {_value(p.value)}"
        lines.append(f"  {mark} [{p.check + 1}] {what}  ({p.subject}) — {p.detail}")
    if state.facts:
        shown = ", ".join(f"{name}={value}" for name, value in sorted(state.facts.items()))
        lines.append(f"  facts: {shown}")
    return lines


def explanation_lines(explanation: TaskExplanation) -> Sequence[str]:
    """The text report of one task (indented by the caller)."""
    lines = _state_lines("before the solution", explanation.before)
    if explanation.after is not None:
        lines += _state_lines("after the solution", explanation.after)
    for flag in explanation.flags:
        lines.append(f"  ! {flag}: {_FLAG_TEXT[flag]}")
    return lines
