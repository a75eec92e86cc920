"""Load a lab file: YAML → structure → model → meaning.

1. **YAML** with positions (:mod:`sim.spec.yamlpos`): syntax errors and
   duplicate keys are problems at their line.
2. **Structure**: the document is checked against :data:`sim.lab.schema.LAB_SPEC`;
   every unknown key, missing key or wrong value is a problem at its line.
   A file with structural problems stops here (its meaning cannot be read).
3. **Model**: the document becomes a :class:`~sim.lab.model.LabDef`.
4. **Meaning** (two-layer validation, as containerlab does): the topology
   loads; experiments, checks and actions name hosts that exist and run the
   services they need; ``of:`` names an earlier experiment; predicates fit
   their subject; questions are answerable; curriculum labs (files in a
   directory named ``labs``) have 4–10 steps with a question and a task.

Every problem is a :class:`~sim.errors.Problem`: ``PATH:LINE:COL: message``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from sim.clock import parse_duration
from sim.errors import LabFileError, Problem, TopologyError
from sim.events import keys_of
from sim.experiments import experiment_class
from sim.experiments.params import params
from sim.lab.actions import action_problems
from sim.lab.checks import PREDICATES, pattern_ok
from sim.lab.facts import STATE, known_facts, unknown_facts
from sim.lab.model import (
    LAB_BACKENDS,
    Action,
    Check,
    CheckpointStep,
    Choice,
    ExperimentRun,
    ExperimentStep,
    ExplainStep,
    FaultDraw,
    LabDef,
    Predicate,
    QuestionStep,
    SealedAnswer,
    SealedAnswers,
    Show,
    Step,
    TaskStep,
    WrongAnswer,
)
from sim.lab.schema import LAB_SPEC
from sim.lab.variants import (
    VARIABLES_SPEC,
    Variable,
    default_problems,
    draw_values,
    parse_variables,
    substitute,
    topology_text,
)
from sim.resolve import qtype_code
from sim.spec.kinds import Checker, path_text, suggest
from sim.spec.source import read_text
from sim.spec.yamlpos import Key, load_yaml, locate, value_pos
from sim.spec.yamlpos import plain as _plain
from sim.topology.model import Topology

__all__ = [
    "MAX_STEPS",
    "MIN_STEPS",
    "is_curriculum_file",
    "lab_topology",
    "load_lab",
    "normalise_answer",
    "topology_path",
    "validate_lab_file",
]

#: Curriculum labs are short: one concept (DESIGN.md), 4 to 10 steps.
MIN_STEPS, MAX_STEPS = 4, 10
#: The synthetic host outside every ISP that the network adds (sim.topology.graph).
OUTSIDE = "outside"
#: RFC 5321 §4.5.1: every domain that receives mail has a postmaster.
ALWAYS_MAILBOXES = ("postmaster",)

FilePath = tuple[Key, ...]


def topology_path(lab_file: Path, value: str) -> Path:
    """Where a lab's ``topology:`` points: a bare name is looked up in the
    ``topologies`` directory beside the labs directory; anything with a slash
    or a YAML suffix is a path relative to the lab file."""
    if "/" in value or "\\" in value or value.endswith((".yaml", ".yml")):
        return lab_file.parent / value
    return lab_file.parent.parent / "topologies" / f"{value}.yaml"


def is_curriculum_file(path: Path) -> bool:
    """Labs in a directory named ``labs`` are the curriculum's (strict rules)."""
    return path.resolve().parent.name == "labs"


def lab_topology(lab: LabDef) -> Topology:
    """The topology of ``lab``'s variant: the file as written, or with each
    variable's default replaced by the variant's value (sim.lab.variants)."""
    from sim.topology import load_topology, loads_topology

    if not lab.variables:
        return load_topology(lab.topology_path)
    text, _ = read_text(lab.topology_path)
    if text is None:
        return load_topology(lab.topology_path)  # raises the same problem
    return loads_topology(
        topology_text(text, lab.variables, dict(lab.values)), str(lab.topology_path)
    )


def normalise_answer(text: str) -> str:
    """How short answers are compared: case and runs of spaces do not matter."""
    return " ".join(str(text).split()).casefold()


def validate_lab_file(
    path: str | os.PathLike[str],
    *,
    curriculum: bool | None = None,
    student: str | None = None,
    values: Mapping[str, str] | None = None,
) -> list[Problem]:
    """Every problem of a lab file, sorted; never raises for bad input.

    ``curriculum``: apply the curriculum's rules (4–10 steps, a question, a
    task); by default, when the file is in a directory named ``labs``.
    ``student`` or ``values``: the variant to read (sim.lab.variants).
    """
    return _analyse(Path(path), curriculum, student, values)[1]


def load_lab(
    path: str | os.PathLike[str],
    *,
    curriculum: bool | None = None,
    student: str | None = None,
    values: Mapping[str, str] | None = None,
) -> LabDef:
    """Load and validate a lab file; raises :class:`LabFileError` with every problem.

    A lab with ``variables`` is read as ``student``'s variant (its values
    drawn from the student id), as the given ``values``, or, with neither,
    with its defaults (sim.lab.variants)."""
    lab, problems = _analyse(Path(path), curriculum, student, values)
    if problems or lab is None:
        raise LabFileError(problems)
    return lab


def _analyse(
    path: Path,
    curriculum: bool | None,
    student: str | None = None,
    chosen: Mapping[str, str] | None = None,
) -> tuple[LabDef | None, list[Problem]]:
    source = str(path)
    text, unreadable = read_text(path)
    if text is None:
        assert unreadable is not None
        return None, [unreadable]
    # `${name}` may stand where YAML would read `{` as a flow mapping: the
    # first reading, which finds the variables, sees each as a plain word.
    doc, problems = load_yaml(path, _PLACEHOLDER.sub(_placeholder, text) if "${" in text else text)
    if problems:
        return None, problems
    variables: tuple[Variable, ...] = ()
    values: dict[str, str] = {}
    if isinstance(doc, dict) and ("variables" in doc or "${" in text):
        doc, variables, values, problems = _variant(doc, text, path, student, chosen)
        if problems:
            return None, problems
    wrong = LAB_SPEC.top_level_problem(doc, "lab")
    if wrong is not None:
        return None, [Problem(source, 1, 1, wrong)]
    checker = Checker(source)
    LAB_SPEC.check(doc, (1, 1), (), checker)
    if doc.get("pack") == "student":
        # `maillab pack --student` leaves the reference solutions out.
        checker.problems = [
            p for p in checker.problems if not p.message.endswith("missing key 'solution'")
        ]
    if checker.problems:
        return None, sorted(checker.problems)
    lab = _build(doc, path)
    if variables:
        lab = replace(lab, variables=variables, values=tuple(values.items()), student=student)
    if curriculum is None:
        curriculum = is_curriculum_file(path)
    meaning = _Meaning(doc, lab, source)
    meaning.run(curriculum)
    return lab, sorted(set(meaning.problems))


_PLACEHOLDER = re.compile(r"\$\{([a-z][a-z0-9_]*)\}")
_UNPLACE = re.compile(r"__maillab_var_([a-z][a-z0-9_]*)__")


def _placeholder(match: re.Match[str]) -> str:
    return f"__maillab_var_{match.group(1)}__"


def _variant(
    doc: Any,
    text: str,
    path: Path,
    student: str | None,
    chosen: Mapping[str, str] | None,
) -> tuple[Any, tuple[Variable, ...], dict[str, str], list[Problem]]:
    """The document of one variant: the variables read, their values drawn
    (or ``chosen``), the file's text filled in and read again."""
    source = str(path)
    checker = Checker(source)
    if "variables" in doc:
        VARIABLES_SPEC.check(doc["variables"], value_pos(doc, "variables"), ("variables",), checker)
    if checker.problems:
        return doc, (), {}, sorted(checker.problems)
    variables, problems = parse_variables(doc, source, lambda t: _UNPLACE.sub(r"${\1}", t))
    if problems:
        return doc, (), {}, sorted(problems)
    values = draw_values(variables, student, str(doc.get("id") or path.stem), chosen)
    filled, problems = substitute(text, values, source)
    if student is None and chosen is None:
        problems += default_problems(text, variables, source)
    if problems:
        return doc, variables, values, sorted(problems)
    doc, problems = load_yaml(path, filled)
    return doc, variables, values, problems


# -- the model -------------------------------------------------------------


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def _experiment(raw: Any, path: FilePath) -> ExperimentRun:
    ((kind, args),) = raw.items()
    values = tuple(
        (p.name, p.value(_plain(args[p.name])))
        for p in params(experiment_class(str(kind)))
        if args.get(p.name) is not None
    )
    return ExperimentRun(str(kind), str(args["from"]), values, path=(*path, kind))


def _predicates(raw: Any, path: FilePath) -> tuple[Predicate, ...]:
    out = []
    for i, item in enumerate(raw or ()):
        ((name, value),) = item.items()
        out.append(Predicate(str(name), _plain(value), path=(*path, i, name)))
    return tuple(out)


def _checks(raw: Any, path: FilePath) -> tuple[Check, ...]:
    out = []
    for i, item in enumerate(raw or ()):
        at = (*path, i)
        run = _experiment(item["run"], (*at, "run")) if "run" in item else None
        out.append(
            Check(
                _predicates(item["expect"], (*at, "expect")),
                run=run,
                of=_opt(item.get("of")),
                path=at,
            )
        )
    return tuple(out)


def _show(raw: Any, path: FilePath) -> Show | None:
    if not isinstance(raw, dict):
        return None
    mailbox = _opt(raw.get("mailbox"))
    view = str(raw.get("view") or ("mail" if mailbox else "story"))
    return Show(view, mailbox, _opt(raw.get("folder")), path=path)


def _step(raw: Any, path: FilePath) -> Step:
    kind = raw["kind"]
    common: dict[str, Any] = {
        "id": str(raw["id"]),
        "title": str(raw["title"]),
        "text": _text(raw.get("text")),
        "path": path,
        "show": _show(raw.get("show"), (*path, "show")),
    }
    if kind == "explain":
        return ExplainStep(**common)
    if kind == "experiment":
        return ExperimentStep(
            **common,
            run=_experiment(raw["run"], (*path, "run")),
            expect=_predicates(raw.get("expect"), (*path, "expect")),
            hide_expect_until=_opt(raw.get("hide_expect_until")),
            sealed_expect=_text(raw.get("sealed_expect")),
        )
    if kind == "question":
        wrong = []
        for item in raw.get("wrong") or ():
            answers = item["answers"]
            answers = [answers] if isinstance(answers, str) else answers
            wrong.append(WrongAnswer(tuple(str(a) for a in answers), str(item["feedback"])))
        return QuestionStep(
            **common,
            choices=tuple(
                Choice(
                    str(c["id"]), str(c["text"]), _text(c.get("feedback")), _text(c.get("sealed"))
                )
                for c in raw.get("choices") or ()
            ),
            sealed=_sealed(raw.get("sealed")),
            answer=_opt(raw.get("answer")),
            accept=tuple(str(a) for a in raw.get("accept") or ()),
            pattern=_opt(raw.get("pattern")),
            wrong=tuple(wrong),
            feedback=_text(raw.get("feedback")),
            explanation=_text(raw.get("explanation")),
        )
    if kind == "task":
        return TaskStep(
            **common,
            checks=_checks(raw["checks"], (*path, "checks")),
            hints=tuple(str(h) for h in raw["hints"]),
            solution=tuple(
                Action(str(name), _plain(args), path=(*path, "solution", i, name))
                for i, item in enumerate(raw.get("solution") or ())
                for name, args in item.items()
            ),
            mistakes=tuple(
                tuple(
                    Action(str(name), _plain(args), path=(*path, "mistakes", m, i, name))
                    for i, item in enumerate(mistake)
                    for name, args in item.items()
                )
                for m, mistake in enumerate(raw.get("mistakes") or ())
            ),
            explanation=_text(raw.get("explanation")),
            fault=bool(raw.get("fault", False)),
        )
    return CheckpointStep(**common, checks=_checks(raw["checks"], (*path, "checks")))


def _sealed(raw: Any) -> SealedAnswers | None:
    if not isinstance(raw, dict):
        return None
    return SealedAnswers(
        str(raw["salt"]),
        tuple(SealedAnswer(str(a["digest"]), str(a["unlock"])) for a in raw["answers"]),
        _text(raw.get("explanation")),
    )


def _build(doc: Any, path: Path) -> LabDef:
    topology = str(doc["topology"])
    return LabDef(
        id=str(doc["id"]),
        title=str(doc["title"]),
        topology=topology,
        topology_path=topology_path(path, topology),
        estimated_time=parse_duration(doc["estimated_time"]),
        goals=tuple(str(g) for g in doc["goals"]),
        steps=tuple(_step(s, ("steps", i)) for i, s in enumerate(doc["steps"])),
        description=_text(doc.get("description")),
        dns_cache=str(doc.get("dns_cache", "flush")),  # type: ignore[arg-type]
        setup=tuple(
            Action(str(name), _plain(args), path=("setup", i, name))
            for i, item in enumerate(doc.get("setup") or ())
            for name, args in item.items()
        ),
        faults=_faults(doc.get("faults")),
        source=path,
        pack=_text(doc.get("pack")),
        backends=tuple(str(b) for b in doc.get("backends") or LAB_BACKENDS),
    )


def _faults(raw: Any) -> FaultDraw | None:
    if not isinstance(raw, dict):
        return None
    return FaultDraw(
        int(raw.get("draw", 1)),
        tuple(str(f) for f in raw["from"]),
        tuple((str(k), str(v)) for k, v in (raw.get("roles") or {}).items()),
        path=("faults",),
    )


# -- meaning ---------------------------------------------------------------


_ONLY_PACKS = (
    "sealed answers are written by `maillab pack --student` (with `pack: student`); "
    "a lab as its author writes it gives `answer` or `accept`"
)


def _domain(name: str) -> str:
    return name.strip().lower().rstrip(".")


class _Meaning:
    """The semantic checks of one lab, each problem at its line."""

    def __init__(self, doc: Any, lab: LabDef, source: str) -> None:
        self.doc = doc
        self.lab = lab
        self.source = source
        self.problems: list[Problem] = []
        self.topology: Topology | None = None

    def add(self, path: FilePath, message: str, *, at_key: bool = False) -> None:
        line, col = locate(self.doc, path, at_key=at_key)
        self.problems.append(Problem(self.source, line, col, f"{path_text(path)}: {message}"))

    def run(self, curriculum: bool) -> None:
        self.topology = self._load_topology()
        self._backends()
        self._step_ids()
        for action in self.lab.setup:
            self._action(action)
        self._faults()
        experiments: dict[str, ExperimentRun] = {}
        for step in self.lab.steps:
            self._step(step, experiments)
            if isinstance(step, ExperimentStep) and step.run is not None:
                experiments[step.id] = step.run
        self._answers_hidden()
        if curriculum:
            self._curriculum()

    # -- faults (sim.lab.faults) ----------------------------------------------

    def _faults(self) -> None:
        from sim.lab.faults import declaration_problems

        tasks = [s for s in self.lab.steps if isinstance(s, TaskStep)]
        for step in tasks:
            if not step.solution and not step.fault and self.lab.pack != "student":
                self.add(step.path, "a task needs a `solution` (or `fault: true`)")
        fixing = [s for s in tasks if s.fault]
        draw = self.lab.faults
        if draw is None:
            for step in fixing:
                self.add(
                    (*step.path, "fault"),
                    "`fault: true` fixes the lab's drawn fault, and this lab declares no `faults:`",
                )
            return
        if not fixing:
            self.add(("faults",), "a lab with faults needs a task with `fault: true`", at_key=True)
        for step in fixing:
            if not any(c.run is not None and c.run.kind == "send" for c in step.checks):
                self.add(
                    (*step.path, "checks"),
                    "a `fault: true` task needs a check that runs a `send` (the fault's "
                    "own predicates join it)",
                )
        if self.topology is not None:
            for where, message in declaration_problems(draw, self.topology):
                self.add(where, message)

    # -- the topology --------------------------------------------------------

    def _load_topology(self) -> Topology | None:
        path = self.lab.topology_path
        where: FilePath = ("topology",)
        if not path.is_file():
            self.add(where, f"no topology file {path}")
            return None
        try:
            return lab_topology(self.lab)
        except TopologyError as err:
            first = err.problems[0] if err.problems else None
            more = f" (and {len(err.problems) - 1} more)" if len(err.problems) > 1 else ""
            detail = f": {first}" if first else ""
            self.add(where, f"the topology {self.lab.topology} does not load{detail}{more}")
            return None

    def _backends(self) -> None:
        """A topology with a service some backend cannot host (real Postfix
        or Dovecot: mininet only) needs a lab that says so in ``backends:``,
        so that the catalogue, ``maillab check`` and the TUI never try it
        there. One problem per lab: the first such service names the rule."""
        from sim.services.registry import hosted_only_by

        if self.topology is None:
            return
        for node in self.topology.hosts():
            for kind in node.services.names():
                where = hosted_only_by(kind)
                wrong = [b for b in self.lab.backends if where is not None and b not in where]
                if not wrong:
                    continue
                able = sorted(b for b in self.lab.backends if b not in wrong) or sorted(where or ())
                given = "backends" in self.doc
                self.add(
                    ("backends",) if given else ("topology",),
                    f"{self.lab.topology} runs {kind} on {node.name}, which "
                    f"runs only on the {' or '.join(sorted(where or ()))} backend, "
                    f"not on {' or '.join(wrong)}: "
                    + (
                        f"write `backends: [{', '.join(able)}]`"
                        if given
                        else f"add `backends: [{', '.join(able)}]` to the lab"
                    ),
                    at_key=given,
                )
                return

    def _host(self, node: str, path: FilePath) -> bool:
        """Whether ``node`` is a host experiments can run from."""
        topology = self.topology
        if topology is None:
            return False
        names = [n.name for n in topology.hosts()]
        if node in names or node == OUTSIDE:
            return True
        if any(n.name == node for n in topology.routers()):
            self.add(
                path,
                f"{node} is a router: experiments run from hosts "
                f"({', '.join(names)}, or {OUTSIDE})",
            )
        else:
            hint = suggest(node, [*names, OUTSIDE]) or f" (hosts: {', '.join(names)}, {OUTSIDE})"
            self.add(path, f"no host {node!r} in the topology {topology.name}{hint}")
        return False

    # -- steps ---------------------------------------------------------------

    def _step_ids(self) -> None:
        seen: dict[str, Step] = {}
        for step in self.lab.steps:
            first = seen.get(step.id)
            if first is not None:
                line = locate(self.doc, (*first.path, "id"))[0]
                self.add(
                    (*step.path, "id"), f"duplicate step id {step.id!r} (first used on line {line})"
                )
            else:
                seen[step.id] = step

    def _step(self, step: Step, earlier: dict[str, ExperimentRun]) -> None:
        if step.show is not None and step.show.mailbox and self.topology is not None:
            domain = step.show.mailbox.rpartition("@")[2].lower()
            served = [
                n.name
                for n in self.topology.hosts()
                if n.services.mx is not None
                and domain in (d.lower() for d in n.services.mx.domains)
            ]
            if not served:
                self.add(
                    (*step.show.path, "mailbox"),
                    f"no MX of the topology keeps mail for {domain!r}",
                )
        if isinstance(step, ExperimentStep) and step.run is not None:
            self._experiment(step.run)
            self._predicates(step.expect, step.run.kind)
        elif isinstance(step, QuestionStep):
            self._question(step)
        elif isinstance(step, TaskStep | CheckpointStep):
            for check in step.checks:
                self._check(check, earlier)
            if isinstance(step, TaskStep):
                for action in step.solution:
                    self._action(action)
                for mistake in step.mistakes:
                    for action in mistake:
                        self._action(action)
                self._templates(step, earlier)

    def _templates(self, step: TaskStep, earlier: dict[str, ExperimentRun]) -> None:
        """Facts quoted by the hints and the explanation must be facts the
        task's checks can produce (sim.lab.facts)."""
        subjects: set[str] = set()
        for check in step.checks:
            if check.run is not None:
                subjects.add(check.run.kind)
            elif check.of is not None:
                run = earlier.get(check.of)
                if run is not None:
                    subjects.add(run.kind)
            else:
                subjects.add(STATE)
        texts: list[tuple[FilePath, str]] = [((*step.path, "explanation"), step.explanation)]
        texts += [((*step.path, "hints", i), h) for i, h in enumerate(step.hints)]
        for where, text in texts:
            for offset, name, why in unknown_facts(text, subjects):
                line, col = self._text_pos(where, text, offset)
                hint = suggest(name, known_facts(subjects))
                self.problems.append(
                    Problem(self.source, line, col, f"{path_text(where)}: {why}{hint}")
                )

    def _text_pos(self, where: FilePath, text: str, offset: int) -> tuple[int, int]:
        """The line and column of ``text[offset:]`` in the file: the same
        template found again from where the text's value begins."""
        line, col = locate(self.doc, where)
        needle = text[offset : text.index("}", offset) + 1]
        nth = text[:offset].count(needle)
        try:
            lines = Path(self.source).read_text(encoding="utf-8").splitlines()
        except OSError:
            return line, col
        seen = 0
        for number in range(line - 1, len(lines)):
            start = col - 1 if number == line - 1 else 0
            found = lines[number].find(needle, start)
            while found >= 0:
                if seen == nth:
                    return number + 1, found + 1
                seen += 1
                found = lines[number].find(needle, found + 1)
        return line, col

    def _experiment(self, run: ExperimentRun) -> None:
        self._host(run.node, (*run.path, "from"))
        if run.kind == "dig":
            try:
                qtype_code(run.type)
            except ValueError as err:
                self.add((*run.path, "type"), str(err))
        if run.kind == "send":
            for i, address in enumerate(run.to):
                if "@" not in address:
                    at: FilePath = (*run.path, "to") if len(run.to) == 1 else (*run.path, "to", i)
                    self.add(at, f"{address!r} is not a mail address (user@domain)")
            if run.server is not None:
                if run.via != "direct":
                    self.add(
                        (*run.path, "server"),
                        "`server` chooses the MX of a direct send: leave out `via` "
                        "(a submission node is the server already)",
                    )
                self._mx_server(run.server, (*run.path, "server"))
            if run.via != "direct":
                self._submission(run.via, (*run.path, "via"))
            elif run.user is not None or run.password is not None:
                key = "user" if run.user is not None else "password"
                self.add(
                    (*run.path, key),
                    "AUTH credentials need `via:` a submission node "
                    "(a direct send speaks to the MX on port 25, which does not "
                    "authenticate senders)",
                )

        if run.kind == "read":
            self._mailbox_host(run.via, (*run.path, "via"))
            if run.protocol == "pop3" and run.folder.upper() != "INBOX":
                self.add((*run.path, "folder"), "POP3 has no folders: it reads the INBOX only")

    def _mailbox_host(self, via: str, path: FilePath) -> None:
        """A node named in ``via`` must run the mailbox service (an address or
        a host name is looked up when the experiment runs)."""
        topology = self.topology
        if topology is None:
            return
        try:
            found = topology.node(via)
        except KeyError:
            return
        if found.services.mailbox is None:
            names = [n.name for n in topology.hosts() if n.services.mailbox is not None]
            self.add(
                path,
                f"{via} runs no mailbox service to read from "
                f"(mailbox hosts: {', '.join(names) or 'none'})",
            )

    def _mx_server(self, server: str, path: FilePath) -> None:
        """``send.server`` names a node with an ``mx`` service (or is a lab
        address, checked when the experiment runs)."""
        topology = self.topology
        if topology is None or _is_ipv4(server):
            return
        names = [n.name for n in topology.hosts() if n.services.mx is not None]
        try:
            found = topology.node(server)
        except KeyError:
            hint = suggest(server, names) or f" (mx nodes: {', '.join(names) or 'none'})"
            self.add(
                path,
                f"`server` is a node with an mx service or a lab address; no node {server!r}{hint}",
            )
            return
        if found.services.mx is None:
            self.add(
                path,
                f"{server} runs no mx service to send to on port 25 "
                f"(mx nodes: {', '.join(names) or 'none'})",
            )

    def _submission(self, node: str, path: FilePath) -> None:
        topology = self.topology
        if topology is None:
            return
        try:
            found = topology.node(node)
        except KeyError:
            names = [n.name for n in topology.hosts() if n.services.submission is not None]
            hint = suggest(node, names) or f" (submission nodes: {', '.join(names) or 'none'})"
            self.add(path, f"`via` is `direct` or a node; no node {node!r}{hint}")
            return
        if found.services.submission is None:
            self.add(path, f"{node} runs no submission service to send via")

    def _check(self, check: Check, earlier: dict[str, ExperimentRun]) -> None:
        subject: str | None = None
        if check.run is not None and check.of is not None:
            self.add(
                (*check.path, "of"),
                "a check tests either its own `run` or an earlier step (`of`), not both",
            )
        if check.run is not None:
            self._experiment(check.run)
            subject = check.run.kind
        elif check.of is not None:
            run = earlier.get(check.of)
            if run is None:
                ids = [s.id for s in self.lab.steps if isinstance(s, ExperimentStep)]
                later = check.of in ids
                why = (
                    "comes later in the lab"
                    if later
                    else "is not an experiment step"
                    if any(s.id == check.of for s in self.lab.steps)
                    else "does not exist"
                )
                hint = "" if later else suggest(check.of, ids)
                self.add(
                    (*check.path, "of"),
                    f"`of: {check.of}` must name an earlier "
                    f"experiment step; {check.of!r} {why}{hint}",
                )
                subject = "?"
            else:
                subject = run.kind
        self._predicates(check.expect, subject)

    def _predicates(self, predicates: tuple[Predicate, ...], subject: str | None) -> None:
        for predicate in predicates:
            definition = PREDICATES[predicate.name]
            if definition.subjects is not None and subject != "?":
                if subject is None:
                    self.add(
                        predicate.path,
                        f"{predicate.name} tests an experiment's result: "
                        "give the check a `run:` or an `of:` step",
                        at_key=True,
                    )
                elif subject not in definition.subjects:
                    kinds = " or ".join(sorted(definition.subjects))
                    self.add(
                        predicate.path,
                        f"{predicate.name} tests the result of {kinds}, not of {subject}",
                        at_key=True,
                    )
            if predicate.name == "answer_matches":
                reason = pattern_ok(str(predicate.value))
                if reason:
                    self.add(predicate.path, f"not a valid regular expression: {reason}")
            if predicate.name == "trace_contains" and isinstance(predicate.value, dict):
                self._trace_fields(predicate.value, predicate.path)
            if predicate.name == "mailbox":
                self._mailbox(str(predicate.value["address"]), (*predicate.path, "address"))
            elif predicate.name == "queue":
                self._runs(str(predicate.value["node"]), "relay", (*predicate.path, "node"))

    def _trace_fields(self, value: dict[str, Any], path: FilePath) -> None:
        """The keys of ``fields`` are data keys of ``kind`` (sim/events.py)."""
        fields = value.get("fields")
        if not isinstance(fields, dict) or not fields:
            return
        kind = value.get("kind")
        if kind is None:
            self.add((*path, "fields"), "`fields` needs a `kind`: the keys depend on it")
            return
        known = keys_of(str(kind))
        for key in fields:
            if key not in known:
                self.add(
                    (*path, "fields", key),
                    f"a {kind} event has no key {key!r}{suggest(str(key), known)}; "
                    f"its keys: {', '.join(known)} (docs/trace.md)",
                    at_key=True,
                )

    def _mailbox(self, address: str, path: FilePath) -> None:
        topology = self.topology
        if topology is None:
            return
        user, _, domain = address.rpartition("@")
        receivers = [
            n
            for n in topology.hosts()
            if n.services.mx is not None
            and _domain(domain) in (_domain(d) for d in n.services.mx.domains)
        ]
        if not receivers:
            self.add(path, f"no mx in the topology receives mail for {domain}")
            return
        mx = receivers[0].services.mx
        assert mx is not None
        boxes = [b.lower() for b in mx.mailboxes]
        local = user.lower()
        if boxes and local not in boxes and local not in ALWAYS_MAILBOXES:
            self.add(
                path,
                f"{receivers[0].name} has no mailbox {user!r} "
                f"(its mailboxes: {', '.join(mx.mailboxes)})",
            )

    def _runs(self, node: str, service: str, path: FilePath) -> None:
        topology = self.topology
        if topology is None:
            return
        try:
            found = topology.node(node)
        except KeyError:
            self.add(
                path,
                f"no node {node!r} in the topology {topology.name}"
                f"{suggest(node, [n.name for n in topology.nodes])}",
            )
            return
        if getattr(found.services, service, None) is None:
            self.add(path, f"{node} runs no {service} service")

    def _action(self, action: Action) -> None:
        if self.topology is None:
            return
        for sub, message in action_problems(action, self.topology):
            self.add((*action.path, *sub), message)

    # -- questions -------------------------------------------------------------

    def _answers_hidden(self) -> None:
        """Hidden verdicts, and what only a student pack may leave out or seal
        (issue 21: ``maillab pack --student``, sim.lab.seal)."""
        student = self.lab.pack == "student"
        steps = self.lab.steps
        for i, step in enumerate(steps):
            if isinstance(step, ExperimentStep):
                if step.hide_expect_until is not None:
                    later = [s.id for s in steps[i + 1 :] if isinstance(s, QuestionStep)]
                    if step.hide_expect_until not in later:
                        hint = suggest(step.hide_expect_until, later) or (
                            f" (later questions: {', '.join(later)})" if later else ""
                        )
                        self.add(
                            (*step.path, "hide_expect_until"),
                            f"{step.hide_expect_until!r} is not a later question step{hint}",
                        )
                    if not step.expect and not step.sealed_expect:
                        self.add(
                            (*step.path, "hide_expect_until"),
                            "the step has no `expect` to hide",
                            at_key=True,
                        )
                if step.sealed_expect and (not student or step.hide_expect_until is None):
                    self.add(
                        (*step.path, "sealed_expect"),
                        "sealed verdicts are written by `maillab pack --student`, with "
                        "`hide_expect_until` (and `pack: student`)",
                        at_key=True,
                    )
            elif isinstance(step, QuestionStep) and not student:
                for j, choice in enumerate(step.choices):
                    if choice.sealed:
                        self.add((*step.path, "choices", j, "sealed"), _ONLY_PACKS, at_key=True)
                if step.sealed is not None:
                    self.add((*step.path, "sealed"), _ONLY_PACKS, at_key=True)

    def _question(self, q: QuestionStep) -> None:
        path = q.path
        if q.sealed is not None:
            given: tuple[tuple[str, object], ...] = (
                ("answer", q.answer),
                ("accept", q.accept),
                ("pattern", q.pattern),
                ("explanation", q.explanation),
            )
            for key, present in given:
                if present:
                    self.add(
                        (*path, key),
                        f"a question with `sealed` answers has no `{key}`",
                        at_key=True,
                    )
            return
        if q.choices:
            for key, present in (
                ("accept", q.accept),
                ("pattern", q.pattern),
                ("wrong", q.wrong),
                ("feedback", q.feedback),
            ):
                if present:
                    self.add(
                        (*path, key),
                        f"`{key}` is for short-answer questions; a "
                        "multiple-choice question gives feedback on each choice",
                        at_key=True,
                    )
            ids: dict[str, int] = {}
            for i, choice in enumerate(q.choices):
                if choice.id in ids:
                    self.add((*path, "choices", i, "id"), f"duplicate choice id {choice.id!r}")
                ids.setdefault(choice.id, i)
            if q.answer is None:
                self.add(
                    path, "a multiple-choice question needs `answer`: the id of the right choice"
                )
            elif q.answer not in ids:
                self.add(
                    (*path, "answer"),
                    f"{q.answer!r} is not one of the choices "
                    f"({', '.join(ids)}){suggest(q.answer, list(ids))}",
                )
            for i, choice in enumerate(q.choices):
                if choice.id != q.answer and not choice.feedback.strip():
                    self.add(
                        (*path, "choices", i),
                        f"choice {choice.id!r} is wrong and needs "
                        "`feedback`: why a student might pick it, and why it is wrong",
                    )
            return
        if q.answer is not None:
            self.add(
                (*path, "answer"),
                "`answer` names a choice, and this question has no "
                "`choices`: use `accept` for a short answer",
                at_key=True,
            )
        if not q.accept and q.pattern is None:
            self.add(
                path,
                "a question needs `choices` and `answer`, or (short answer) "
                "`accept` and/or `pattern`",
            )
        if q.pattern is not None:
            reason = pattern_ok(q.pattern)
            if reason:
                self.add((*path, "pattern"), f"not a valid regular expression: {reason}")
        if (q.accept or q.pattern is not None) and not q.feedback.strip():
            self.add(path, "a short-answer question needs `feedback` for wrong answers")
        accepted = {normalise_answer(a) for a in q.accept}
        for i, wrong in enumerate(q.wrong):
            for answer in wrong.answers:
                if normalise_answer(answer) in accepted or (
                    q.pattern is not None
                    and pattern_ok(q.pattern) is None
                    and re.fullmatch(q.pattern, answer.strip(), re.IGNORECASE)
                ):
                    self.add(
                        (*path, "wrong", i, "answers"),
                        f"{answer!r} is listed as wrong but is also accepted",
                    )

    # -- the curriculum --------------------------------------------------------

    def _curriculum(self) -> None:
        steps = self.lab.steps
        where: FilePath = ("steps",)
        if not MIN_STEPS <= len(steps) <= MAX_STEPS:
            self.add(
                where,
                f"a curriculum lab has {MIN_STEPS} to {MAX_STEPS} steps, this one has {len(steps)}",
                at_key=True,
            )
        for kind in ("question", "task"):
            if not any(s.kind == kind for s in steps):
                self.add(where, f"a curriculum lab needs at least one {kind} step", at_key=True)


def _is_ipv4(text: str) -> bool:
    try:
        IPv4Address(text)
    except ValueError:
        return False
    return True
