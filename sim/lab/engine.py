"""The lab runner: one student working through one lab on a running topology.

The engine knows nothing of any user interface: the TUI, notebooks and
``maillab check`` drive the same :class:`LabSession`::

    lab = load_lab("labs/01-receive-only.yaml")
    with LabSession(lab) as session:          # starts the topology
        step = session.current                  # the first step not done
        session.run_experiment("dig-mx")        # → ExperimentOutcome (result, trace)
        session.answer("mx-target", "c")        # → Feedback(correct, text)
        session.check("null-mx")                # → CheckOutcome(passed, detail, hint)
        session.hint("null-mx")                 # the next hint
        session.apply("null-mx", {"dns_add": {...}})   # a student's edit → ActionResult
        session.solve("null-mx")                # the reference solution

A troubleshooting lab (``faults:``, :mod:`sim.lab.faults`) breaks the lab
when it starts, with the fault(s) drawn from the session's ``student`` id
(:mod:`sim.lab.draw`), or the one forced by ``fault=`` (``maillab check
--fault``); its ``fault: true`` task checks and applies that fault's fix.

Everything a student does is saved at once (:mod:`sim.lab.progress`);
starting a session again resumes: finished steps stay finished, revealed
hints stay revealed, and the student's edits to the lab are replayed onto
the freshly started topology (its services keep no state between runs).

:func:`run_reference` walks a lab's reference path headless, as
``maillab check`` does: every experiment, the right answer to every question,
each task's check before (it must fail) and after its solution, every
checkpoint.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from sim.errors import BackendUnavailable, LabError, LabFileError, SimError
from sim.events import QueueAttempt
from sim.experiments import Experiment
from sim.fastclass import dataclass
from sim.lab.actions import ActionResult, action_from_data, apply_action
from sim.lab.checks import PredicateOutcome, evaluate, summarise
from sim.lab.facts import STATE, Fact, RunFacts, last_queue_events, render, state_trace
from sim.lab.faults import BoundFault
from sim.lab.loader import lab_topology, load_lab, normalise_answer
from sim.lab.model import (
    Action,
    Check,
    CheckpointStep,
    Choice,
    ExperimentRun,
    ExperimentStep,
    ExplainStep,
    LabDef,
    Predicate,
    QuestionStep,
    Step,
    TaskStep,
)
from sim.lab.progress import (
    LabProgress,
    MemoryProgressStore,
    ProgressStore,
    StepProgress,
    default_student,
)
from sim.lab.seal import answer_digest, answer_key, unseal
from sim.topology.model import Topology

__all__ = [
    "CheckOutcome",
    "ExperimentOutcome",
    "Feedback",
    "LabReport",
    "LabSession",
    "RunningLab",
    "StepReport",
    "lab_faults",
    "run_reference",
    "variant_for",
]


class RunningLab(Protocol):
    """What the engine needs from a running topology (``sim.Lab`` fits)."""

    def run(self, node: str, experiment: Experiment) -> Any: ...

    def mailbox(self, address: str, folder: str = "INBOX") -> Sequence[Any]: ...

    def control(self, node: str, service: str, command: str, **args: Any) -> dict[str, Any]: ...

    def advance(self, duration: str | float) -> None: ...

    def stop(self) -> None: ...


Starter = Callable[[Topology, str], RunningLab]


def _default_starter(topology: Topology, backend: str) -> RunningLab:
    from sim.hosting.runtime import start

    lab: RunningLab = start(topology, backend=backend)
    return lab


# -- results ------------------------------------------------------------------


@dataclass(frozen=True)
class Feedback:
    """What a student is told after answering a question."""

    correct: bool
    text: str
    #: The choice the answer was read as (multiple choice), else None.
    choice: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"correct": self.correct, "text": self.text, "choice": self.choice}


@dataclass(frozen=True)
class CheckOutcome:
    """Whether a task or checkpoint passed, why, and (when not) a hint."""

    passed: bool
    detail: str
    hint: str | None = None
    results: tuple[PredicateOutcome, ...] = ()
    #: A task's explanation, once it passes (what the student just learned).
    explanation: str = ""
    #: The facts of this run that the hint or explanation quotes (sim.lab.facts).
    quoted: dict[str, Fact] = field(default_factory=dict, compare=False)
    #: The trace of the runs the check made (state checks: the lab's, since
    #: the step began): what the quoted facts must be found in.
    trace: tuple[Mapping[str, Any], ...] = field(default=(), compare=False, repr=False)
    #: Each check with its predicates' outcomes, in file order (``check --explain``).
    by_check: tuple[tuple[Check, tuple[PredicateOutcome, ...]], ...] = field(
        default=(), compare=False, repr=False
    )
    #: Every fact of the runs the check made, quoted or not (``check --explain``).
    facts: RunFacts | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "detail": self.detail,
            "hint": self.hint,
            "explanation": self.explanation,
            "facts": {name: fact.value for name, fact in self.quoted.items()},
            "results": [r.to_json() for r in self.results],
        }


@dataclass(frozen=True)
class ExperimentOutcome:
    """An experiment that ran: its result (with ``.trace``), the result as
    JSON, or the error that stopped it; and what its ``expect`` found."""

    step: str | None
    experiment: ExperimentRun
    result: Any = None
    data: dict[str, Any] | None = None
    error: str | None = None
    expectations: tuple[PredicateOutcome, ...] = ()
    #: The step's question (``hide_expect_until``) is not answered yet: a
    #: front end must not show the verdicts (``detail`` and ``to_json`` do not).
    hidden_until: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(e.passed for e in self.expectations)

    @property
    def detail(self) -> str:
        if self.error is not None:
            return f"{self.experiment.describe()} failed: {self.error}"
        if self.expectations and self.hidden_until is None:
            return summarise(self.expectations)
        return describe_result(self.experiment.kind, self.data or {})

    @property
    def shown_expectations(self) -> tuple[PredicateOutcome, ...]:
        """The verdicts a student may see now."""
        return () if self.hidden_until is not None else self.expectations

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "experiment": self.experiment.describe(),
            "passed": self.passed if self.hidden_until is None else None,
            "detail": self.detail,
            "error": self.error,
            "result": self.data,
            "expectations": [e.to_json() for e in self.shown_expectations],
            "hidden_until": self.hidden_until,
        }


@dataclass(frozen=True)
class StepReport:
    id: str
    kind: str
    passed: bool
    detail: str
    #: ``check --explain``: a task's check before and after its solution
    #: (:class:`sim.lab.explain.TaskExplanation`), else None.
    explain: Any = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        data = {"id": self.id, "kind": self.kind, "passed": self.passed, "detail": self.detail}
        if self.explain is not None:
            data["explain"] = self.explain.to_json()
        return data


@dataclass(frozen=True)
class LabReport:
    """One lab's reference run (the ``labs[]`` items of ``maillab check --json``)."""

    id: str
    title: str
    passed: bool
    seconds: float
    steps: tuple[StepReport, ...] = field(default_factory=tuple)
    #: The faults the lab ran with (troubleshooting labs; sim.lab.faults).
    faults: tuple[str, ...] = ()
    #: Whose variant ran, and its values (a lab with variables only).
    student: str | None = None
    values: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "passed": self.passed,
            "seconds": self.seconds,
            "steps": [s.to_json() for s in self.steps],
        }
        if self.faults:
            out["faults"] = list(self.faults)
        if self.values:
            out["student"] = self.student
            out["variables"] = dict(self.values)
        return out


def describe_result(kind: str, data: Mapping[str, Any]) -> str:
    """One sentence for a result without expectations."""
    if kind == "dig":
        q = data.get("question") or {}
        answers = data.get("answers") or []
        shown = "; ".join(f"{a.get('type')} {a.get('data')}" for a in answers) or "no records"
        return f"{q.get('name')} {q.get('type')}: {data.get('rcode')}, {shown}"
    if kind == "read":
        if data.get("error"):
            return f"could not read: {data.get('error')}"
        count = len(data.get("messages") or [])
        return (
            f"{count} message{'' if count == 1 else 's'} in {data.get('folder')} "
            f"over {str(data.get('protocol')).upper()} from {data.get('hostname')}"
        )
    reply = data.get("reply") or {}
    said = " ".join(str(reply[k]) for k in ("code", "enhanced", "text") if reply.get(k))
    if kind == "connect":
        banner = data.get("banner")
        return f"{data.get('outcome')}" + (f": {banner}" if banner else "")
    return f"{data.get('outcome')}" + (f": {said}" if said else "")


# -- the session --------------------------------------------------------------


class LabSession:
    """One student in one lab: the running topology and the progress.

    ``store`` keeps the progress: in memory by default (tests, ``maillab
    check``); :meth:`for_student` saves it in the student's progress file.
    ``starter`` starts the topology (``sim.start`` by default; tests pass a
    stand-in). ``student`` (default :func:`~sim.lab.progress.default_student`)
    is who works: given, a lab with variables runs as that student's variant
    (:mod:`sim.lab.variants`). Methods take a step or its id; each returns
    data (feedback, outcomes, action results) for the front end to render.
    """

    def __init__(
        self,
        lab: LabDef,
        backend: str = "local",
        *,
        store: ProgressStore | None = None,
        starter: Starter | None = None,
        topology: Topology | None = None,
        student: str | None = None,
        fault: str | None = None,
    ) -> None:
        self.definition = lab
        self.backend = backend
        self.student: str = student if student is not None else default_student()
        # Given a student, a lab with variables runs as that student's variant
        # (sim.lab.variants); without one, as it was loaded (the defaults when
        # loaded without a student): the TUI, notebooks and grading name theirs.
        if student is not None:
            self.definition = variant_for(lab, student)
        #: A fault forced by name (``maillab check --fault``), else drawn.
        self._forced_fault = fault
        self._faults: tuple[BoundFault, ...] | None = None
        self.store: ProgressStore = store if store is not None else MemoryProgressStore()
        self.progress: LabProgress = self.store.load(lab.id)
        self._starter = starter or _default_starter
        self._topology = topology
        self.lab: RunningLab | None = None
        self.results: dict[str, ExperimentOutcome] = {}
        #: What replaying the saved edits did when the session resumed.
        self.replayed: list[ActionResult] = []
        #: The facts of each task's last check run, for hints read later.
        self.facts: dict[str, RunFacts] = {}
        #: Lab time when the last step was done: where a state check's run begins.
        self._since = 0.0

    @classmethod
    def for_student(
        cls, lab: LabDef, backend: str = "local", *, student: str | None = None
    ) -> LabSession:
        """A session whose progress is saved in the student's progress file
        (what the TUI and notebooks use; the default store keeps it in memory)."""
        from sim.lab.progress import FileProgressStore

        store = FileProgressStore(student=student)
        return cls(lab, backend, store=store, student=store.student)

    # -- the topology ----------------------------------------------------------

    @property
    def topology(self) -> Topology:
        if self._topology is None:
            self._topology = lab_topology(self.definition)
        return self._topology

    @property
    def faults(self) -> tuple[BoundFault, ...]:
        """The faults this student's lab has (sim.lab.faults): the one forced
        by name, else those drawn from the student id; none in most labs."""
        if self._faults is None:
            self._faults = lab_faults(
                self.definition, self.topology, self.student, self._forced_fault
            )
        return self._faults

    def task_checks(self, step: TaskStep | CheckpointStep) -> tuple[Check, ...]:
        """A step's checks; a ``fault: true`` task's first ``send`` check also
        expects what the fixed fault must show."""
        if not isinstance(step, TaskStep) or not step.fault:
            return step.checks
        extra = tuple(p for f in self.faults for p in f.expect)
        checks = list(step.checks)
        for i, check in enumerate(checks):
            if check.run is not None and check.run.kind == "send":
                checks[i] = replace(check, expect=check.expect + extra)
                break
        return tuple(checks)

    def task_solution(self, step: TaskStep) -> tuple[Action, ...]:
        """A task's reference solution; for a ``fault: true`` task, each drawn
        fault's fix first."""
        if not step.fault:
            return step.solution
        return tuple(a for f in self.faults for a in f.solution) + step.solution

    def start(self, *, resume: bool = True) -> None:
        """Start the topology; replay the student's saved edits (``resume``)
        or begin the lab afresh."""
        if self.lab is not None:
            return
        if not resume:
            self.store.reset(self.definition.id)
            self.progress = LabProgress(self.definition.id)
        self.lab = self._starter(self.topology, self.backend)
        for action in self.definition.setup:
            done = apply_action(self.lab, action, self.topology, self.definition.dns_cache)
            if not done.ok:
                self.stop()
                raise LabError(f"the lab's setup could not {action.name}: {done.message}")
        for bound in self.faults:
            for action in bound.breaks:
                done = apply_action(self.lab, action, self.topology, self.definition.dns_cache)
                if not done.ok:
                    self.stop()
                    raise LabError(
                        f"the fault {bound.name} could not {action.name}: {done.message}"
                    )
        self.replayed = self._rebuild()

    def stop(self) -> None:
        lab, self.lab = self.lab, None
        if lab is not None:
            lab.stop()

    def reset(self) -> None:
        """Forget this lab's progress and restart the topology clean."""
        running = self.lab is not None
        self.stop()
        self.store.reset(self.definition.id)
        self.progress = LabProgress(self.definition.id)
        self.results.clear()
        self.replayed = []
        if running:
            self.start(resume=False)

    def __enter__(self) -> LabSession:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _running(self) -> RunningLab:
        if self.lab is None:
            raise LabError(f"the lab {self.definition.id} is not running: start() it first")
        return self.lab

    # -- steps and progress ------------------------------------------------------

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.definition.steps

    @property
    def current(self) -> Step | None:
        """The first step not done yet (None when the lab is complete)."""
        return next((s for s in self.steps if not self.progress.done(s.id)), None)

    @property
    def complete(self) -> bool:
        return self.current is None

    def step(self, ref: Step | str) -> Step:
        if not isinstance(ref, str):
            return ref
        try:
            return self.definition.step(ref)
        except KeyError:
            ids = ", ".join(s.id for s in self.steps)
            raise LabError(
                f"the lab {self.definition.id} has no step {ref!r} (steps: {ids})"
            ) from None

    def state(self, step: Step | str) -> StepProgress:
        return self.progress.step(self.step(step).id)

    def hints_shown(self, step: Step | str) -> list[str]:
        found = self.step(step)
        if not isinstance(found, TaskStep):
            return []
        facts = self.facts.get(found.id)
        return [render(h, facts).text for h in found.hints[: self.state(found).hints]]

    def _done(self, step: Step) -> None:
        state = self.progress.step(step.id)
        if not state.done:
            state.done = True
            state.done_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.complete and self.progress.completed is None:
            self.progress.completed = state.done_at
        self._since = self._lab_now()
        self.save()

    def _lab_now(self) -> float:
        now = getattr(self.lab, "now", None)
        return float(now()) if callable(now) else 0.0

    def save(self) -> None:
        self.store.save(self.progress)

    def mark_read(self, step: Step | str) -> None:
        """An explain step has been read (other kinds finish by doing them)."""
        found = self.step(step)
        if not isinstance(found, ExplainStep):
            raise LabError(
                f"step {found.id} is a {found.kind} step: it is done by doing it, not by reading it"
            )
        self._done(found)

    # -- experiments ---------------------------------------------------------------

    def run_experiment(self, step: Step | str) -> ExperimentOutcome:
        """Run an experiment step; the step is done once it has run."""
        found = self.step(step)
        if not isinstance(found, ExperimentStep) or found.run is None:
            raise LabError(f"step {found.id} is a {found.kind} step, not an experiment")
        outcome = self._execute(found.run, found.id)
        if outcome.error is None:
            outcome = self._judge_experiment(found, outcome)
            self.results[found.id] = outcome
            self._done(found)
        return outcome

    def _judge_experiment(self, step: ExperimentStep, ran: ExperimentOutcome) -> ExperimentOutcome:
        expect = self._expect_of(step)
        expectations = tuple(self._predicates(expect or (), ran.data))
        hidden = self.verdicts_hidden(step)
        return ExperimentOutcome(
            step.id, ran.experiment, ran.result, ran.data, None, expectations, hidden
        )

    def verdicts_hidden(self, step: Step | str) -> str | None:
        """The question whose answer an experiment step's verdicts wait for
        (``hide_expect_until``), while it is not answered; else None."""
        found = self.step(step)
        if not isinstance(found, ExperimentStep) or found.hide_expect_until is None:
            return None
        return None if self.progress.done(found.hide_expect_until) else found.hide_expect_until

    def _expect_of(self, step: ExperimentStep) -> tuple[Predicate, ...] | None:
        """The step's ``expect``; a student pack's sealed one once its question
        is answered (None before: nothing to judge yet)."""
        if not step.sealed_expect or step.hide_expect_until is None:
            return step.expect
        key = self._unlock_key(step.hide_expect_until)
        text = unseal(key, step.sealed_expect) if key is not None else None
        if text is None:
            return None
        return tuple(
            Predicate(str(name), value) for item in json.loads(text) for name, value in item.items()
        )

    def outcome_of(self, step: Step | str) -> ExperimentOutcome | None:
        """An experiment step's last outcome in this session, its verdicts
        judged or hidden as the student's progress stands now (a question
        answered since reveals them)."""
        found = self.step(step)
        outcome = self.results.get(found.id)
        if outcome is None or outcome.error is not None or not isinstance(found, ExperimentStep):
            return outcome
        if outcome.hidden_until is not None and self.verdicts_hidden(found) is None:
            outcome = self._judge_experiment(found, outcome)
            self.results[found.id] = outcome
        return outcome

    def _execute(self, run: ExperimentRun, step_id: str | None = None) -> ExperimentOutcome:
        lab = self._running()
        try:
            result = lab.run(run.node, run.experiment())
        except SimError as err:
            return ExperimentOutcome(step_id, run, error=str(err))
        data = result.to_json() if hasattr(result, "to_json") else dict(result)
        return ExperimentOutcome(step_id, run, result, data)

    def _predicates(
        self, predicates: Sequence[Any], data: Mapping[str, Any] | None
    ) -> list[PredicateOutcome]:
        return [evaluate(p.name, p.value, data, self.lab) for p in predicates]

    # -- questions -----------------------------------------------------------------

    def _unlock_key(self, question: str) -> bytes | None:
        """A student pack's question's unlock key, from the right answer the
        student gave (the progress keeps the answers, never the key)."""
        found = self.step(question)
        if not isinstance(found, QuestionStep) or found.sealed is None:
            return None
        for given in reversed(self.progress.step(found.id).answers):
            key = _opened(found, given)
            if key is not None:
                return key
        return None

    def answer(self, step: Step | str, given: str | int) -> Feedback:
        """Judge an answer: a choice id, a 0-based choice index or the choice's
        text (multiple choice), or the text of a short answer."""
        found = self.step(step)
        if not isinstance(found, QuestionStep):
            raise LabError(f"step {found.id} is a {found.kind} step, not a question")
        feedback = _judge(found, given) if found.sealed is None else _judge_sealed(found, given)
        if feedback is None:
            ids = ", ".join(c.id for c in found.choices)
            return Feedback(False, f"There is no choice {given!r}: answer one of {ids}.")
        state = self.progress.step(found.id)
        state.attempts += 1
        state.answers.append(feedback.choice if feedback.choice is not None else str(given))
        if feedback.correct:
            self._done(found)
        else:
            self.save()
        return feedback

    # -- tasks and checkpoints -------------------------------------------------------

    def hint(self, step: Step | str) -> str | None:
        """Reveal the next hint of a task; None when every hint is shown."""
        found = self.step(step)
        if not isinstance(found, TaskStep):
            raise LabError(f"step {found.id} is a {found.kind} step: only tasks have hints")
        state = self.progress.step(found.id)
        if state.hints >= len(found.hints):
            return None
        state.hints += 1
        self.save()
        return render(found.hints[state.hints - 1], self.facts.get(found.id)).text

    def check(self, step: Step | str) -> CheckOutcome:
        """Run a task's or checkpoint's checks against the lab as it is now.

        A failing task shows a hint: the first one, revealed now, if none was
        shown yet; else the last one shown (more come from :meth:`hint`).
        """
        found = self.step(step)
        if not isinstance(found, TaskStep | CheckpointStep):
            raise LabError(f"step {found.id} is a {found.kind} step: it has no checks")
        results: list[PredicateOutcome] = []
        facts = RunFacts()
        trace: list[Mapping[str, Any]] = []
        by_check = []
        for check in self.task_checks(found):
            outcomes = self._check(check, facts, trace)
            by_check.append((check, tuple(outcomes)))
            results.extend(outcomes)
        self.facts[found.id] = facts
        passed = all(r.passed for r in results)
        state = self.progress.step(found.id)
        state.attempts += 1
        hint = None
        explanation = ""
        quoted: dict[str, Fact] = {}
        if passed:
            if isinstance(found, TaskStep):
                filled = render(found.explanation.strip(), facts)
                explanation, quoted = filled.text, filled.quoted
            self._done(found)
        else:
            if isinstance(found, TaskStep) and found.hints:
                if state.hints == 0:
                    state.hints = 1
                filled = render(found.hints[state.hints - 1], facts)
                hint, quoted = filled.text, filled.quoted
            self.save()
        return CheckOutcome(
            passed,
            summarise(results),
            hint,
            tuple(results),
            explanation,
            quoted,
            tuple(trace),
            tuple(by_check),
            facts,
        )

    def _check(
        self, check: Check, facts: RunFacts, trace: list[Mapping[str, Any]]
    ) -> list[PredicateOutcome]:
        """Evaluate one check; the facts and trace of its run are added to
        ``facts`` and ``trace``."""
        data: Mapping[str, Any] | None = None
        if check.run is not None:
            outcome = self._execute(check.run)
            if outcome.error is not None:
                return [PredicateOutcome(False, outcome.detail)]
            data = outcome.data
            subject = check.run.kind
        elif check.of is not None:
            earlier = self.results.get(check.of)
            if earlier is None:
                # Not run in this session (a resumed lab): run it now.
                earlier = self.run_experiment(check.of)
            if earlier.error is not None:
                return [PredicateOutcome(False, earlier.detail)]
            data = earlier.data
            subject = earlier.experiment.kind
        if data is not None:
            events = list(data.get("trace") or ())
            facts.add_run(subject, data, events)
            trace.extend(events)
        else:
            events = self._lab_trace()
            facts.add_run(STATE, {}, events)
            trace.extend(events)
        return self._predicates(check.expect, data)

    def _lab_trace(self) -> list[Mapping[str, Any]]:
        """The lab's trace since the last step was done (with the earlier
        queue events of the messages that moved since), as JSON events."""
        read = getattr(self.lab, "trace", None)
        if not callable(read):
            return []
        deadline = time.monotonic() + ATTEMPT_SETTLE
        while True:
            events = [e.to_json() if hasattr(e, "to_json") else dict(e) for e in read()]
            # A relay records a delivery durably (the queue empties) a moment
            # before it reports it: wait for every attempt's outcome, so the
            # feedback does not miss an event that did happen.
            if not _attempts_in_flight(events) or time.monotonic() > deadline:
                return state_trace(events, self._since)
            time.sleep(0.05)

    def apply(self, step: Step | str | None, action: Mapping[str, Any] | Action) -> ActionResult:
        """A student's edit to the running lab, such as
        ``{"dns_add": {"node": "ns", "zone": "shop.example", "record": "@ MX 0 ."}}``.

        Checked like a lab file's action and against the topology; problems
        and the service's refusals come back as an ``ok=False`` result.
        Successful edits are saved, to be replayed when the lab resumes.
        """
        found = None if step is None else self.step(step)
        try:
            parsed = action if isinstance(action, Action) else action_from_data(action)
        except LabFileError as err:
            text = "; ".join(_strip_where(p.message) for p in err.problems)
            raw = dict(action) if isinstance(action, Mapping) else {}
            return ActionResult(False, raw, f"not a valid action: {text}")
        result = apply_action(self._running(), parsed, self.topology, self.definition.dns_cache)
        if result.ok:
            self.progress.actions.append(
                {"step": found.id if found else None, "action": parsed.to_json()}
            )
            self.save()
        return result

    def solve(self, step: Step | str) -> list[ActionResult]:
        """Apply a task's reference solution (recorded like a student's edits)."""
        found = self.step(step)
        if not isinstance(found, TaskStep):
            raise LabError(f"step {found.id} is a {found.kind} step: only tasks have solutions")
        results = []
        for action in self.task_solution(found):
            result = self.apply(found, action)
            results.append(result)
            if not result.ok:
                break
        return results

    def _rebuild(self) -> list[ActionResult]:
        """Bring the freshly started topology back to where the student left
        it, and say what replaying each saved edit did.

        The services keep no state between runs (mailboxes, queues, logs),
        so the saved edits alone would leave a resumed lab without the mail
        its finished steps delivered: lab 10's IMAP read of the message an
        earlier step sent, lab 13's reads after the smarthost task. So the
        steps are walked in order: a finished experiment step runs again (its
        result is kept, so its views show it), a task's saved edits are
        replayed and, if it was finished, its checks' runs (what they sent)
        run again; edits saved under no step, or a step the lab no longer
        has, come last, in the order they were made."""
        by_step: dict[Any, list[Mapping[str, Any]]] = {}
        for record in self.progress.actions:
            by_step.setdefault(record.get("step"), []).append(record)
        replayed: list[ActionResult] = []
        for step in self.steps:
            finished = self.progress.done(step.id)
            if isinstance(step, ExperimentStep) and step.run is not None and finished:
                ran = self._execute(step.run, step.id)
                if ran.error is None:
                    self.results[step.id] = self._judge_experiment(step, ran)
            replayed.extend(self._replay(record) for record in by_step.pop(step.id, ()))
            if isinstance(step, TaskStep | CheckpointStep) and finished:
                for check in self.task_checks(step):
                    if check.run is not None:
                        self._execute(check.run)
        for records in by_step.values():
            replayed.extend(self._replay(record) for record in records)
        return replayed

    def _replay(self, record: Mapping[str, Any]) -> ActionResult:
        raw = record.get("action")
        try:
            action = action_from_data(raw)
        except LabFileError as err:
            return ActionResult(
                False, raw if isinstance(raw, dict) else {}, f"saved edit not replayed: {err}"
            )
        return apply_action(self._running(), action, self.topology, self.definition.dns_cache)


#: How long a state check waits for a relay attempt's outcome to be reported.
ATTEMPT_SETTLE = 3.0


def _attempts_in_flight(events: Sequence[Mapping[str, Any]]) -> bool:
    """Whether some queue entry's last event is an attempt with no outcome yet."""
    return any(isinstance(d, QueueAttempt) for d in last_queue_events(events).values())


def _strip_where(message: str) -> str:
    # "dns_add.zone: must not be empty" reads fine; drop the (top level) marker.
    return message.removeprefix("(top level): ")


def _choice_of(q: QuestionStep, given: str | int) -> Choice | None:
    if isinstance(given, int) and not isinstance(given, bool):
        return q.choices[given] if 0 <= given < len(q.choices) else None
    text = str(given).strip()
    return (
        q.choice(text)
        or q.choice(text.lower())
        or next(
            (c for c in q.choices if normalise_answer(c.text) == normalise_answer(text)),
            None,
        )
    )


def _opened(q: QuestionStep, answer: str) -> bytes | None:
    """The question's unlock key when ``answer`` is right (a student pack)."""
    sealed = q.sealed
    if sealed is None:
        return None
    digest = answer_digest(sealed.salt, answer)
    for right in sealed.answers:
        if right.digest == digest:
            key = unseal(answer_key(sealed.salt, answer), right.unlock)
            return key.encode("ascii") if key is not None else None
    return None


def _judge_sealed(q: QuestionStep, given: str | int) -> Feedback | None:
    """A student pack's question: the answer checked against digests, the
    feedback and explanation opened by the answer (sim.lab.seal)."""
    assert q.sealed is not None
    if q.choices:
        choice = _choice_of(q, given)
        if choice is None:
            return None
        answer, choice_id = choice.id, choice.id
    else:
        answer, choice_id = str(given), None
    unlock = _opened(q, answer)
    if unlock is not None:
        text = unseal(unlock, q.sealed.explanation) if q.sealed.explanation else ""
        return Feedback(True, (text or "").strip() or "Right.", choice_id)
    if choice_id is not None:
        sealed = q.choice(choice_id)
        text = unseal(answer_key(q.sealed.salt, choice_id), sealed.sealed) if sealed else None
        return Feedback(False, (text or "").strip(), choice_id)
    normalised = normalise_answer(answer)
    for wrong in q.wrong:
        if normalised in {normalise_answer(a) for a in wrong.answers}:
            return Feedback(False, wrong.feedback.strip())
    return Feedback(False, q.feedback.strip())


def _judge(q: QuestionStep, given: str | int) -> Feedback | None:
    """Feedback for an answer; None when a multiple-choice answer names no choice."""
    if q.choices:
        choice = _choice_of(q, given)
        if choice is None:
            return None
        if choice.id == q.answer:
            return Feedback(True, q.explanation.strip() or "Right.", choice.id)
        return Feedback(False, choice.feedback.strip(), choice.id)
    text = str(given)
    answer = normalise_answer(text)
    right = answer in {normalise_answer(a) for a in q.accept} or (
        q.pattern is not None and re.fullmatch(q.pattern, text.strip(), re.IGNORECASE) is not None
    )
    if right:
        return Feedback(True, q.explanation.strip() or "Right.")
    for wrong in q.wrong:
        if answer in {normalise_answer(a) for a in wrong.answers}:
            return Feedback(False, wrong.feedback.strip())
    return Feedback(False, q.feedback.strip())


# -- the reference path ---------------------------------------------------------


def lab_faults(
    lab: LabDef, topology: Topology, student: str, forced: str | None = None
) -> tuple[BoundFault, ...]:
    """The faults of ``lab`` for ``student`` (or the one ``forced`` by name),
    bound to the topology; raises LabError for a fault the lab cannot have."""
    from sim.lab.faults import FaultMismatch, bind, drawn, fault

    declared = lab.faults
    if declared is None:
        if forced is not None:
            raise LabError(f"the lab {lab.id} has no faults to force {forced!r}")
        return ()
    if forced is not None and forced not in declared.choices:
        try:
            fault(forced)
        except KeyError as err:
            raise LabError(str(err.args[0])) from None
        raise LabError(
            f"the lab {lab.id} does not draw the fault {forced!r} "
            f"(it draws from: {', '.join(declared.choices)})"
        )
    names = (forced,) if forced is not None else drawn(declared, student, lab.id)
    try:
        return tuple(bind(fault(n), topology, declared.roles_dict()) for n in names)
    except FaultMismatch as err:
        raise LabError(f"the lab {lab.id}: {err}") from None


def variant_for(lab: LabDef, student: str) -> LabDef:
    """``lab`` as ``student``'s variant: itself when it has no variables or
    is that student's already; else read again from its file for them."""
    if not lab.variables or lab.student == student or lab.source is None:
        return lab
    return _variant_cache(lab.source, student)


def _variant_cache(source: Path, student: str) -> LabDef:
    # One read per file version and student: a class's grading reads each
    # student's variant of each lab once.
    key = (str(source), source.stat().st_mtime_ns, student)
    found = _VARIANTS.get(key)
    if found is None:
        if len(_VARIANTS) > 256:
            _VARIANTS.clear()
        found = _VARIANTS[key] = load_lab(source, student=student)
    return found


_VARIANTS: dict[tuple[str, int, str], LabDef] = {}


def run_reference(
    lab: LabDef,
    backend: str = "local",
    *,
    starter: Starter | None = None,
    student: str | None = None,
    fault: str | None = None,
    explain: bool = False,
) -> LabReport:
    """Walk ``lab``'s reference path headless and report every step, as
    ``student``'s variant (default: the current student's; whose id also
    draws the lab's faults) or under the ``fault`` forced by name.

    A task passes when its check fails before the reference solution (a task
    already done would teach nothing) and passes after it. ``explain``: each
    task's report also says why its check failed before the solution and
    passed after it, predicate by predicate with the facts of the runs
    (:mod:`sim.lab.explain`), and flags a step that passes or fails by accident.
    """
    began = time.monotonic()
    session = LabSession(
        lab, backend, store=MemoryProgressStore(), starter=starter, student=student, fault=fault
    )
    lab = session.definition
    variant: dict[str, Any] = {"student": lab.student, "values": lab.values}
    reports: list[StepReport] = []
    try:
        session.start(resume=False)
    except BackendUnavailable:
        raise  # the machine cannot run this backend: a usage problem, not a lab's
    except SimError as err:
        seconds = round(time.monotonic() - began, 2)
        return LabReport(
            lab.id,
            lab.title,
            False,
            seconds,
            (StepReport("start", "start", False, f"the lab did not start: {err}"),),
            (fault,) if fault else (),
            **variant,
        )
    try:
        for step in lab.steps:
            try:
                reports.append(_reference_step(session, step, explain))
            except SimError as err:
                reports.append(StepReport(step.id, step.kind, False, f"error: {err}"))
    finally:
        session.stop()
    seconds = round(time.monotonic() - began, 2)
    return LabReport(
        lab.id,
        lab.title,
        all(r.passed for r in reports),
        seconds,
        tuple(reports),
        tuple(f.name for f in session.faults),
        **variant,
    )


def _reference_step(session: LabSession, step: Step, explain: bool = False) -> StepReport:
    if isinstance(step, ExplainStep):
        session.mark_read(step)
        return StepReport(step.id, step.kind, True, f"text: {step.title}")
    if isinstance(step, ExperimentStep):
        outcome = session.run_experiment(step)
        # The author sees the verdicts a student sees only after answering.
        detail = summarise(outcome.expectations) if outcome.expectations else outcome.detail
        return StepReport(step.id, step.kind, outcome.passed, detail)
    if isinstance(step, QuestionStep):
        answer = step.reference_answer()
        feedback = session.answer(step, answer)
        if feedback.correct:
            return StepReport(step.id, step.kind, True, f"the right answer {answer!r} is accepted")
        return StepReport(
            step.id,
            step.kind,
            False,
            f"the reference answer {answer!r} is not accepted: {feedback.text}",
        )
    if isinstance(step, TaskStep):
        return _reference_task(session, step, explain)
    assert isinstance(step, CheckpointStep)
    checked = session.check(step)
    return StepReport(step.id, step.kind, checked.passed, checked.detail)


def _reference_task(session: LabSession, step: TaskStep, explain: bool) -> StepReport:
    from sim.lab.explain import explain_task

    before = session.check(step)
    if before.passed:
        return StepReport(
            step.id,
            step.kind,
            False,
            "the check passes before the solution "
            f"is applied, so the task teaches nothing: {before.detail}",
            explain_task(step, before, None) if explain else None,
        )
    for result in session.solve(step):
        if not result.ok:
            return StepReport(
                step.id,
                step.kind,
                False,
                f"the reference solution failed: {result.message}",
                explain_task(step, before, None) if explain else None,
            )
    after = session.check(step)
    return StepReport(
        step.id,
        step.kind,
        after.passed,
        after.detail,
        explain_task(step, before, after) if explain else None,
    )
