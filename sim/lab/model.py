"""The lab model: plain, typed, frozen data read from a lab file.

A lab (``labs/*.yaml``) walks a student through one concept on one topology
in steps of five kinds:

* ``explain``    Markdown text (with diagrams in code blocks);
* ``experiment`` a ``dig``, ``connect`` or ``send`` from a node, whose result
  and trace the student reads; ``expect`` says what it must show;
* ``question``   multiple choice (feedback for each wrong choice) or a short
  answer;
* ``task``       a change the student makes to the running lab, with checks,
  hints revealed one at a time, and a reference solution;
* ``checkpoint`` checks over the lab state.

Describe, then run: nothing here knows about a running lab. The loader
(:mod:`sim.lab.loader`) builds these objects; the engine
(:mod:`sim.lab.engine`) runs them.

Every object keeps ``path``, its place in the file (``("steps", 3, "run")``),
so that semantic problems found later can point at a line.
"""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Any, Literal

from sim.errors import SimError
from sim.experiments import Experiment, experiment_class
from sim.experiments.params import from_args, params
from sim.fastclass import dataclass
from sim.lab.variants import Variable

__all__ = [
    "LAB_BACKENDS",
    "Action",
    "Check",
    "CheckpointStep",
    "Choice",
    "ExperimentRun",
    "ExperimentStep",
    "ExplainStep",
    "FaultDraw",
    "LabDef",
    "Predicate",
    "QuestionStep",
    "SealedAnswer",
    "SealedAnswers",
    "Show",
    "Step",
    "StepKind",
    "TaskStep",
    "WrongAnswer",
    "needs_backend",
]

StepKind = Literal["explain", "experiment", "question", "task", "checkpoint"]
FilePath = tuple[str | int, ...]

#: The backends a lab can name in ``backends:`` (sim.hosting.backend.BACKENDS),
#: and the default: a lab runs on both unless its topology needs one.
LAB_BACKENDS: tuple[str, ...] = ("local", "mininet")


# -- experiments -----------------------------------------------------------


@dataclass(frozen=True)
class ExperimentRun:
    """An experiment a lab file runs: its ``kind`` (a key of
    :data:`sim.experiments.KINDS`), the ``node`` it runs from, and the
    values the file gives; the rest take the experiment's defaults. The
    parameters are the experiment's own (:mod:`sim.experiments.params`):
    ``run.to``, ``run.via``... read them by name."""

    kind: str
    node: str
    args: tuple[tuple[str, Any], ...] = ()
    path: FilePath = field(default=(), compare=False)

    def experiment(self) -> Experiment:
        """The experiment to run (raises :class:`~sim.errors.SimError` when
        its values do not go together, e.g. POP3 with a folder)."""
        return from_args(experiment_class(self.kind), dict(self.args))

    def describe(self) -> str:
        try:
            return self.experiment().describe(self.node)
        except SimError:
            return f"{self.kind} from {self.node}"

    def __getattr__(self, name: str) -> Any:
        # Only parameters: dunder and private lookups (copy, pickle) must fail.
        if name.startswith("_"):
            raise AttributeError(name)
        given = dict(self.args)
        for p in params(experiment_class(self.kind)):
            if p.name == name:
                return given.get(name, p.default)
        raise AttributeError(f"a {self.kind} experiment has no parameter {name!r}")


# -- checks and actions ----------------------------------------------------


@dataclass(frozen=True)
class Predicate:
    """One test over an experiment's result or the lab's state, such as
    ``outcome: delivered`` or ``mailbox: {address: bob@qq.example}``.

    ``name`` is a key of :data:`sim.lab.checks.PREDICATES`; ``value`` is the
    plain data written in the file (already checked against its shape).
    """

    name: str
    value: Any
    path: FilePath = field(default=(), compare=False)


@dataclass(frozen=True)
class Check:
    """Predicates over one subject: the result of ``run`` (an experiment the
    check runs itself), of the experiment step ``of``, or none (lab state)."""

    expect: tuple[Predicate, ...]
    run: ExperimentRun | None = None
    of: str | None = None
    path: FilePath = field(default=(), compare=False)


@dataclass(frozen=True)
class Action:
    """A change to the running lab, such as ``dns_add``; ``name`` is a key of
    :data:`sim.lab.actions.ACTIONS`, ``args`` its arguments."""

    name: str
    args: Any
    path: FilePath = field(default=(), compare=False)

    def to_json(self) -> dict[str, Any]:
        return {self.name: self.args}


# -- steps -----------------------------------------------------------------

#: The views a step can point at (``show: {view: ...}``): the panes of the
#: trace, the lab's mail, the receivers' policy.
SHOW_VIEWS = ("story", "dns", "net", "smtp", "checks", "queue", "mail", "policy")


@dataclass(frozen=True)
class Show:
    """What a step talks about, for a front end to open: a view of the trace
    (``smtp``...), the newest message of a ``mailbox`` (``view: mail``), or
    the receivers' ``policy``. Nothing here is judged."""

    view: str = "mail"
    mailbox: str | None = None
    folder: str | None = None
    path: FilePath = field(default=(), compare=False)

    def describe(self) -> str:
        if self.view == "mail" and self.mailbox:
            where = f" in {self.folder}" if self.folder else ""
            return f"the newest message of {self.mailbox}{where}"
        titles = {"net": "Network", "dns": "DNS", "smtp": "SMTP"}
        return {"policy": "the receivers' policy", "mail": "the lab's mail"}.get(
            self.view, f"the {titles.get(self.view, self.view.title())} view of the trace"
        )


@dataclass(frozen=True)
class _StepBase:
    id: str
    title: str
    text: str = ""
    path: FilePath = field(default=(), compare=False)
    show: Show | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class ExplainStep(_StepBase):
    kind: Literal["explain"] = "explain"


@dataclass(frozen=True)
class ExperimentStep(_StepBase):
    run: ExperimentRun | None = None
    expect: tuple[Predicate, ...] = ()
    kind: Literal["experiment"] = "experiment"
    # -- answers students cannot read (issue 21; sim.lab.seal) --
    #: A later question's id: the ``expect`` verdicts are not shown to the
    #: student before that question is answered (they would answer it).
    hide_expect_until: str | None = None
    #: A student pack's ``expect``, sealed with that question's unlock key.
    sealed_expect: str = ""


@dataclass(frozen=True)
class Choice:
    id: str
    text: str
    feedback: str = ""
    #: A student pack's feedback (or nothing, for the right choice), sealed
    #: with a key derived from this choice's id.
    sealed: str = ""


@dataclass(frozen=True)
class SealedAnswer:
    """A right answer of a student pack: its digest, and the question's
    unlock key sealed with a key derived from the answer (sim.lab.seal)."""

    digest: str
    unlock: str


@dataclass(frozen=True)
class SealedAnswers:
    """A student pack's answer key: no answer, only what checks one."""

    salt: str
    answers: tuple[SealedAnswer, ...]
    #: The explanation, sealed with the unlock key.
    explanation: str = ""


@dataclass(frozen=True)
class WrongAnswer:
    """Short answers that deserve their own feedback (a known misconception)."""

    answers: tuple[str, ...]
    feedback: str


@dataclass(frozen=True)
class QuestionStep(_StepBase):
    """Multiple choice (``choices`` and ``answer``) or short answer
    (``accept`` and/or ``pattern``, ``wrong``, ``feedback``)."""

    choices: tuple[Choice, ...] = ()
    answer: str | None = None
    accept: tuple[str, ...] = ()
    pattern: str | None = None
    wrong: tuple[WrongAnswer, ...] = ()
    feedback: str = ""
    explanation: str = ""
    kind: Literal["question"] = "question"
    #: A student pack's answer key, instead of answer/accept/pattern.
    sealed: SealedAnswers | None = None

    @property
    def multiple_choice(self) -> bool:
        return bool(self.choices)

    def choice(self, choice_id: str) -> Choice | None:
        return next((c for c in self.choices if c.id == choice_id), None)

    def reference_answer(self) -> str:
        """The right answer, as a student would give it."""
        if self.answer is not None:
            return self.answer
        return self.accept[0] if self.accept else ""


@dataclass(frozen=True)
class TaskStep(_StepBase):
    checks: tuple[Check, ...] = ()
    hints: tuple[str, ...] = ()
    solution: tuple[Action, ...] = ()
    #: Wrong solutions a student is likely to try; the check must fail after
    #: each, and its feedback quote only facts of that run (tested).
    mistakes: tuple[tuple[Action, ...], ...] = ()
    explanation: str = ""
    #: The task that fixes the lab's drawn fault(s) (sim.lab.faults): their
    #: predicates join the first check that sends, their fix the solution.
    fault: bool = False
    kind: Literal["task"] = "task"


@dataclass(frozen=True)
class CheckpointStep(_StepBase):
    checks: tuple[Check, ...] = ()
    kind: Literal["checkpoint"] = "checkpoint"


Step = ExplainStep | ExperimentStep | QuestionStep | TaskStep | CheckpointStep


# -- the lab ---------------------------------------------------------------


@dataclass(frozen=True)
class FaultDraw:
    """A lab's ``faults:``: ``draw`` faults drawn per student from ``choices``
    (names in :data:`sim.lab.faults.CATALOGUE`), with the lab's nodes and
    names for the catalogue's ``roles``."""

    draw: int
    choices: tuple[str, ...]
    roles: tuple[tuple[str, str], ...] = ()
    path: FilePath = field(default=(), compare=False)

    def roles_dict(self) -> dict[str, str]:
        return dict(self.roles)


@dataclass(frozen=True)
class LabDef:
    """A lab file, loaded and validated."""

    id: str
    title: str
    topology: str
    topology_path: Path
    estimated_time: float
    goals: tuple[str, ...]
    steps: tuple[Step, ...]
    description: str = ""
    #: After a DNS edit: ``flush`` the lab resolver's cache so the change shows
    #: at once (and say so), or ``ttl``: keep cached answers until they expire,
    #: as a real resolver would (RFC 1035 §7.3, RFC 2308 for negative answers).
    dns_cache: Literal["flush", "ttl"] = "flush"
    #: Actions applied when the lab starts, before the first step (and
    #: before a resumed student's edits are replayed): the world as the lab
    #: finds it, for values only the running lab knows (a generated DKIM key).
    setup: tuple[Action, ...] = ()
    #: The faults a troubleshooting lab draws per student (None: no faults).
    faults: FaultDraw | None = None
    source: Path | None = None
    #: ``student``: written by ``maillab pack --student`` (no solutions,
    #: sealed answers); empty for a lab as its author wrote it.
    pack: str = ""
    #: Per-student variables (sim.lab.variants), the values this variant
    #: drew, and whose variant it is (None: the defaults, no student's).
    variables: tuple[Variable, ...] = ()
    values: tuple[tuple[str, str], ...] = ()
    student: str | None = None
    #: The backends the lab runs on (``backends:``): a lab whose topology runs
    #: real Postfix or Dovecot says ``[mininet]`` (they live in namespaces).
    backends: tuple[str, ...] = LAB_BACKENDS

    def runs_on(self, backend: str) -> bool:
        return backend in self.backends

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def index(self, step_id: str) -> int:
        for i, step in enumerate(self.steps):
            if step.id == step_id:
                return i
        raise KeyError(step_id)


def needs_backend(
    lab_id: str, backends: tuple[str, ...], command: str = "check", args: str | None = None
) -> str:
    """Why a lab is not run on a backend it does not list, and how to run it:
    ``needs the mininet backend (root): maillab check real-thing --backend mininet``
    (``args``: what follows the command, the lab's id by default)."""
    other = backends[0] if backends else "mininet"
    root = " (root)" if other == "mininet" else ""
    given = lab_id if args is None else args
    return f"needs the {other} backend{root}: maillab {command} {given} --backend {other}"
