"""The shape of a lab file, and the documents generated from it.

:data:`LAB_SPEC` is the single description of a lab file's structure: the
loader checks files against it (with line and column), and this module
renders it as a JSON Schema for editors (``docs/lab.schema.json``) and as a
Markdown reference for instructors (``docs/lab-reference.md``). Regenerate
both with ``python -m sim.lab.schema``; a test fails when they are stale.

Meaning checks (the topology loads, nodes exist, answers name a choice...)
live in :mod:`sim.lab.loader`: a JSON Schema cannot see other files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sim.experiments import KINDS, experiment_class
from sim.experiments.params import lab_record
from sim.lab.actions import ACTION_SPEC
from sim.lab.checks import PREDICATES
from sim.lab.model import LAB_BACKENDS, SHOW_VIEWS
from sim.lab.variants import VARIABLES_SPEC
from sim.spec.document import document_schema, markdown_sections
from sim.spec.kinds import (
    SLUG,
    SLUG_HINT,
    Bool,
    Duration,
    Either,
    Field,
    Int,
    ListOf,
    MapOf,
    OneKey,
    Record,
    Str,
    Tagged,
)

__all__ = ["LAB_SPEC", "json_schema", "main", "markdown_reference"]

DOCS = Path(__file__).resolve().parents[2] / "docs"
SCHEMA_PATH = DOCS / "lab.schema.json"
REFERENCE_PATH = DOCS / "lab-reference.md"


def _slug(description: str) -> Str:
    return Str(pattern=SLUG, pattern_hint=SLUG_HINT, description=description)


#: Every experiment as a lab file writes it (``run: {dig: {from: ..., name: ...}}``),
#: from the experiment's own declaration (sim.experiments.params).
EXPERIMENT_SPEC = OneKey(
    {kind: lab_record(experiment_class(kind), noun=experiment_class(kind).noun) for kind in KINDS},
    name="Experiment",
    description="What a student runs from a node: one key naming the experiment.",
)


def _predicate_field(name: str) -> Field:
    definition = PREDICATES[name]
    subjects = (
        "lab state"
        if definition.subjects is None
        else "result of " + ", ".join(sorted(definition.subjects))
    )
    return Field(definition.spec, description=f"{definition.description} ({subjects})")


PREDICATE_SPEC = OneKey(
    {name: _predicate_field(name) for name in PREDICATES},
    name="Predicate",
    description="One test: one key naming what is tested.",
)

CHECK_SPEC = Record(
    {
        "run": Field(EXPERIMENT_SPEC, description="an experiment the check runs to test"),
        "of": Field(_slug(""), description="the id of an earlier experiment step to test"),
        "expect": Field(
            ListOf(PREDICATE_SPEC, min_items=1),
            required=True,
            description="what must hold, all of it",
        ),
    },
    name="Check",
    description=(
        "Predicates over one subject: the result of `run`, of the experiment step `of`, "
        "or (with neither) the lab's state only."
    ),
)

CHOICE_SPEC = Record(
    {
        "id": Field(_slug(""), required=True, description="short id (`a`, `b`...)"),
        "text": Field(Str(markdown=True), required=True),
        "feedback": Field(
            Str(markdown=True), description="why this is wrong (required for every wrong choice)"
        ),
        "sealed": Field(
            Str(), description="(student packs) the feedback, sealed; written by `maillab pack`"
        ),
    },
    name="Choice",
    description="One answer of a multiple-choice question.",
)

WRONG_SPEC = Record(
    {
        "answers": Field(
            Either((Str(), ListOf(Str(), min_items=1))),
            required=True,
            description="short answers (compared ignoring case and spaces)",
        ),
        "feedback": Field(Str(markdown=True), required=True),
    },
    name="WrongAnswer",
    description="Short answers that deserve their own feedback (a known misconception).",
)


SHOW_SPEC = Record(
    {
        "view": Field(
            Str(enum=SHOW_VIEWS),
            description="the view to open (default: `mail` when `mailbox` is given)",
        ),
        "mailbox": Field(
            Str(pattern=r"^[^@\s]+@[^@\s]+$", pattern_hint="a mail address user@domain"),
            description="the mailbox whose newest message opens (`view: mail`)",
        ),
        "folder": Field(Str(enum=("INBOX", "Junk")), description="only this folder"),
    },
    name="Show",
    description=(
        "What the step talks about, opened for the student when its experiment or "
        "check has run (and with `o`): a view of the trace, the newest message of a "
        "mailbox, or the receivers' policy."
    ),
)


# -- what `maillab pack --student` writes instead of answers (sim.lab.seal) --

SEALED_SPEC = Record(
    {
        "salt": Field(Str(pattern=r"^[0-9a-f]{32}$", pattern_hint="32 hex digits"), required=True),
        "answers": Field(
            ListOf(
                Record(
                    {
                        "digest": Field(
                            Str(pattern=r"^[0-9a-f]{64}$", pattern_hint="64 hex digits"),
                            required=True,
                        ),
                        "unlock": Field(Str(), required=True),
                    },
                    name="SealedAnswer",
                    description="A right answer's digest and the question's unlock key, "
                    "sealed with that answer.",
                ),
                min_items=1,
            ),
            required=True,
        ),
        "explanation": Field(Str(), description="the explanation, sealed"),
    },
    name="SealedAnswers",
    description=(
        "A student pack's answer key (written by `maillab pack --student`): digests of the "
        "right answers, never the answers."
    ),
)


def _step(name: str, description: str, text_required: bool, **more: Field) -> Record:
    fields = {
        "id": Field(_slug(""), required=True, description="unique within the lab"),
        "title": Field(Str(), required=True),
        "text": Field(
            Str(markdown=True),
            required=text_required,
            description="Markdown; diagrams in fenced code blocks",
        ),
        "show": Field(SHOW_SPEC, description="what the step talks about, opened for the student"),
        **more,
    }
    return Record(fields, name=name, description=description)


STEP_SPEC = Tagged(
    {
        "explain": _step("ExplainStep", "Text to read.", True),
        "experiment": _step(
            "ExperimentStep",
            "An experiment the student runs, then reads its trace.",
            False,
            run=Field(EXPERIMENT_SPEC, required=True),
            expect=Field(
                ListOf(PREDICATE_SPEC, min_items=1),
                description="what the result must show (`maillab check` tests it)",
            ),
            hide_expect_until=Field(
                _slug(""),
                description="the id of a later question: the `expect` verdicts are not shown "
                "to the student before it is answered (when they would give the answer away)",
            ),
            sealed_expect=Field(
                Str(),
                description="(student packs) `expect`, sealed until the question "
                "`hide_expect_until` is answered; written by `maillab pack`",
            ),
        ),
        "question": _step(
            "QuestionStep",
            "Multiple choice (`choices` + `answer`) or short answer (`accept` and/or "
            "`pattern`, with `feedback`).",
            True,
            choices=Field(ListOf(CHOICE_SPEC, min_items=2)),
            answer=Field(_slug(""), description="the id of the right choice"),
            accept=Field(ListOf(Str(), min_items=1), description="right short answers"),
            pattern=Field(Str(), description="a regular expression a right answer matches"),
            wrong=Field(ListOf(WRONG_SPEC, min_items=1)),
            feedback=Field(Str(markdown=True), description="for any other wrong short answer"),
            explanation=Field(Str(markdown=True), description="shown after the right answer"),
            sealed=Field(
                SEALED_SPEC,
                description="(student packs) the answer key, sealed: instead of `answer`, "
                "`accept`, `pattern` and `explanation`",
            ),
        ),
        "task": _step(
            "TaskStep",
            "A change the student makes to the running lab.",
            True,
            checks=Field(
                ListOf(CHECK_SPEC, min_items=1),
                required=True,
                description="all must pass for the task to be done",
            ),
            hints=Field(
                ListOf(Str(markdown=True), min_items=1),
                required=True,
                description="revealed one at a time",
            ),
            solution=Field(
                ListOf(ACTION_SPEC, min_items=1),
                description="the reference solution (`maillab check` applies it); required "
                "unless `fault: true`, where the drawn fault's fix comes first; a student "
                "pack (`pack: student`) has none",
            ),
            fault=Field(
                Bool(),
                default="false",
                description="this task fixes the lab's drawn fault(s) (`faults:`): their "
                "checks join the task's first `send` check, their fix its solution",
            ),
            mistakes=Field(
                ListOf(ListOf(ACTION_SPEC, min_items=1), min_items=1),
                description="wrong solutions a student is likely to try, each a list of "
                "actions: the check must fail after each (the feedback tests run them)",
            ),
            explanation=Field(
                Str(markdown=True),
                description="shown when the task is done; hints and explanation may quote "
                "facts of the check's run, such as `{reply.code}` (sim.lab.facts)",
            ),
        ),
        "checkpoint": _step(
            "CheckpointStep",
            "Checks over the lab's state.",
            False,
            checks=Field(ListOf(CHECK_SPEC, min_items=1), required=True),
        ),
    },
    name="Step",
    description="One step of a lab; `kind` says which.",
)

FAULTS_SPEC = Record(
    {
        "draw": Field(Int(minimum=1), default="1", description="how many faults each student gets"),
        "from": Field(
            ListOf(Str(), min_items=1),
            required=True,
            description="the fault names to draw from (`maillab check --all-faults` "
            "checks every one)",
        ),
        "roles": Field(
            MapOf(Str()),
            required=True,
            description="which node or name plays each part the faults need: `dns`, "
            "`domain`, `sender`, `receiver`, `dnsbl`",
        ),
    },
    name="Faults",
    description="The faults a troubleshooting lab draws per student (issue 16).",
)

LAB_SPEC = Record(
    {
        "id": Field(_slug(""), required=True, description="unique among the labs"),
        "title": Field(Str(), required=True),
        "description": Field(Str(markdown=True), description="an introduction"),
        "topology": Field(
            Str(),
            required=True,
            description=(
                "a topology name (`receive-only` → `topologies/receive-only.yaml` beside the "
                "labs directory) or a path relative to the lab file"
            ),
        ),
        "estimated_time": Field(Duration(), required=True, description="how long a student needs"),
        "goals": Field(
            ListOf(Str(), min_items=1),
            required=True,
            description="what the student will understand",
        ),
        "dns_cache": Field(
            Str(enum=("flush", "ttl")),
            default="flush",
            description=(
                "after a DNS edit: flush the lab resolver's cache, or keep answers for their TTL"
            ),
        ),
        "backends": Field(
            ListOf(Str(enum=LAB_BACKENDS), min_items=1, unique=True),
            description=(
                "the backends the lab runs on (default: both); a lab whose topology runs "
                "real Postfix or Dovecot (`postfix`/`dovecot` services) says `[mininet]`, "
                "and `maillab list`, `check`, `run` and the TUI say how to run it"
            ),
        ),
        "steps": Field(ListOf(STEP_SPEC, min_items=1), required=True),
        "faults": Field(
            FAULTS_SPEC,
            description="a troubleshooting lab: the faults drawn per student from the "
            "catalogue (sim/lab/faults.py), applied when the lab starts",
        ),
        "pack": Field(
            Str(enum=("student",)),
            description="`student`: written by `maillab pack --student`, without solutions "
            "and with sealed answers (`maillab check` needs the instructor's copy)",
        ),
        "variables": Field(
            VARIABLES_SPEC,
            description=(
                "per-student values written `${name}` in the rest of the file; the "
                "topology is written with each `default` (see docs/authoring.md)"
            ),
        ),
        "setup": Field(
            ListOf(ACTION_SPEC, min_items=1),
            description=(
                "changes made to the lab when it starts, before the first step: what "
                "others have done already (a provider that published a key in its own "
                "zone), for values only the running lab knows"
            ),
        ),
    },
    name="Lab",
    description="A lab file: one concept, taught in steps on one topology.",
)


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a lab file."""
    head = {
        "$id": "https://maillab.example/schemas/lab.schema.json",
        "title": "maillab lab file",
        "description": (
            "Generated by `python -m sim.lab.schema` from sim/lab/schema.py; do not edit. "
            "The loader also checks meaning (see docs/lab-reference.md)."
        ),
    }
    return document_schema(LAB_SPEC, head, inline_root=False)


_EXAMPLE = """\
id: receive-only
title: "Receiving mail: an MX record and a listener on port 25"
topology: receive-only            # topologies/receive-only.yaml
estimated_time: 25m
goals: [A sender finds a domain's mail server by an MX lookup.]
steps:
  - id: dig-mx
    kind: experiment
    title: Ask DNS for qq.example's mail exchanger
    run: {dig: {from: mta, name: qq.example, type: MX}}
    expect: [{answer_contains: mx.qq.example}]
  - id: which-port
    kind: question
    title: The receiving port
    text: On which TCP port must the MX listen?
    accept: ["25"]
    wrong: [{answers: ["587"], feedback: "587 is submission (RFC 6409)."}]
    feedback: Look at the connection in the trace.
  - id: null-mx
    kind: task
    title: Say that shop.example accepts no mail
    text: Publish a null MX (RFC 7505).
    checks:
      - run: {send: {from: mta, to: info@shop.example}}
        expect: [{enhanced: 5.1.10}]
    hints: [A null MX is `@ MX 0 .`]
    solution:
      - dns_add: {node: ns, zone: shop.example, record: "@ MX 0 ."}
"""

_MEANING = """\
## Checks beyond the shape

`maillab validate` also checks what a JSON Schema cannot see:

* the topology file exists and loads;
* every node an experiment, a check or an action names is a host of the topology
  (or `outside`), and runs the service the action drives (`dns_add` needs `dns`...);
  a DNS zone is one the node serves and a record parses as zone-file text;
* `send.via` is `direct` or a node with a `submission` service; a `read.via`
  that names a node names one with a `mailbox` service;
* `dkim_publish` names a `signer` whose relay signs for the domain (and the
  selector, if given) and an owner `name` that is valid in the zone;
* step ids are unique; `of:` names an earlier experiment step;
* each predicate fits its subject (`answer_contains` tests a `dig`, `outcome` a
  `send` or `connect`; `mailbox` and `queue` test the lab's state);
* a multiple-choice question has an `answer` naming one of its choices and
  `feedback` on every other choice; a short-answer question has `accept` or
  `pattern` and a `feedback`; a pattern is a valid regular expression;
* a mailbox address belongs to a domain and a mailbox some `mx` serves;
* labs under `labs/` (the curriculum) have 4 to 10 steps, at least one
  question and at least one task.
"""


def markdown_reference() -> str:
    """The Markdown reference of a lab file."""
    lines = [
        "# Lab file reference",
        "",
        "<!-- Generated by `python -m sim.lab.schema` from sim/lab/schema.py; do not edit. -->",
        "",
        "A lab is a YAML file in `labs/`. Its text fields are Markdown. Every key not",
        "listed here is an error, reported as `PATH:LINE:COL: message` by",
        "`maillab validate`. Editors can use the JSON Schema `docs/lab.schema.json`.",
        "`maillab check LAB` runs a lab's reference path headless.",
        "",
        "```yaml",
        _EXAMPLE.rstrip(),
        "```",
        "",
    ]
    lines += markdown_sections(LAB_SPEC)
    lines.append(_MEANING)
    return "\n".join(lines).rstrip() + "\n"


def rendered() -> dict[Path, str]:
    """The generated documents, by path."""
    return {
        SCHEMA_PATH: json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n",
        REFERENCE_PATH: markdown_reference(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sim.lab.schema",
        description="write docs/lab.schema.json and docs/lab-reference.md",
    )
    parser.add_argument("--check", action="store_true", help="only report stale files (exit 1)")
    args = parser.parse_args(argv)
    stale = []
    for path, text in rendered().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if args.check and stale:
        print("stale: " + ", ".join(str(p) for p in stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
