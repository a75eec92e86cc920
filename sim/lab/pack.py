"""``maillab pack``: a course directory for students, or for instructors.

``--instructor`` copies the labs as their author wrote them. ``--student``
writes each lab without what gives its answers away, and still valid and
playable (``pack: student``):

* a task loses its ``solution`` and ``mistakes`` (the TUI checks a
  student's work with the task's checks, never with the solution); its
  hints stay, since a student asks for them one at a time;
* a question loses ``answer``, ``accept``, ``pattern`` and
  ``explanation``: it keeps ``sealed``, digests of the right answers and
  the explanation encrypted with a key only a right answer opens
  (:mod:`sim.lab.seal`); each choice's feedback is sealed with that
  choice, so that the right choice is not the one without feedback;
* an experiment whose verdicts wait for a question (``hide_expect_until``)
  keeps its ``expect`` sealed with that question's key;
* comments are dropped (an author's comment may name the answer).

A ``pattern`` cannot be kept without showing the answer: a student pack
accepts the ``accept`` answers only, and the packer says so (``notes``).

Both kinds are written as a course (:mod:`sim.lab.course`): ``labs/``,
``topologies/`` (every topology of the source, notebooks use them too),
``notebooks/`` when the source course has some, and ``course.yaml``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import field
from io import StringIO
from pathlib import Path
from typing import Any

from sim.errors import LabError, LabFileError, Problem
from sim.fastclass import dataclass
from sim.lab.loader import load_lab, normalise_answer
from sim.lab.model import ExperimentStep, LabDef, QuestionStep
from sim.lab.seal import answer_digest, answer_key, new_salt, new_unlock_key, seal
from sim.spec.yamlpos import plain as _plain

__all__ = ["PackResult", "pack_course", "student_lab"]

AUDIENCES = ("student", "instructor")


@dataclass
class PackResult:
    root: Path
    audience: str
    labs: list[Path] = field(default_factory=list)
    topologies: list[Path] = field(default_factory=list)
    notebooks: list[Path] = field(default_factory=list)
    #: What a student pack could not keep (a question's pattern).
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "course": str(self.root),
            "audience": self.audience,
            "labs": [str(p) for p in self.labs],
            "topologies": [str(p) for p in self.topologies],
            "notebooks": [str(p) for p in self.notebooks],
            "notes": list(self.notes),
        }


def _read(path: Path, lab: LabDef) -> dict[str, Any]:
    """A lab file as plain data (it loaded already: no positions needed).

    A lab with per-student variables (sim.lab.variants) is written as the
    variant it was loaded as, its ``variables`` left out: a student pack
    seals answers, and a sealed answer is one text, so the pack holds one
    variant (the defaults), which is also what its topology file says."""
    from ruamel.yaml import YAML

    text = path.read_text(encoding="utf-8")
    if lab.variables:
        from sim.lab.variants import substitute

        text, problems = substitute(text, dict(lab.values), str(path))
        if problems:
            raise LabFileError(problems)
    doc = YAML(typ="safe").load(text)
    if not isinstance(doc, dict):
        raise LabFileError([Problem(str(path), 1, 1, "not a lab file")])
    doc.pop("variables", None)
    return doc


def student_lab(doc: dict[str, Any], lab: LabDef, notes: list[str] | None = None) -> dict[str, Any]:
    """A lab document (plain data) without its solutions, answers sealed."""
    out: dict[str, Any] = _plain(doc)
    out["pack"] = "student"
    unlock: dict[str, bytes] = {}
    where = lab.source.name if lab.source is not None else lab.id
    for raw, step in zip(out["steps"], lab.steps, strict=True):
        if step.kind == "task":
            raw.pop("solution", None)
            raw.pop("mistakes", None)
        elif isinstance(step, QuestionStep):
            unlock[step.id] = _seal_question(raw, step)
            if step.pattern is not None and notes is not None:
                notes.append(
                    f"{where}: question {step.id}: its pattern is left out (it would show "
                    "the answer); the student pack accepts its `accept` answers only"
                )
    for raw, step in zip(out["steps"], lab.steps, strict=True):
        if isinstance(step, ExperimentStep) and step.hide_expect_until and "expect" in raw:
            key = unlock[step.hide_expect_until]
            raw["sealed_expect"] = seal(key, json.dumps(raw.pop("expect"), ensure_ascii=False))
    return out


def _seal_question(raw: dict[str, Any], step: QuestionStep) -> bytes:
    salt = new_salt()
    key = new_unlock_key()
    if step.choices:
        rights = [step.answer] if step.answer is not None else []
        texts = {
            str(c["id"]): "" if c["id"] == step.answer else str(c.get("feedback") or "")
            for c in raw["choices"]
        }
        # One size for all: the right choice must not be the one whose text is short.
        size = max(len(t.encode("utf-8")) for t in texts.values()) + 4
        for choice in raw["choices"]:
            choice.pop("feedback", None)
            choice["sealed"] = seal(
                answer_key(salt, str(choice["id"])), texts[str(choice["id"])], size=size
            )
    else:
        # Distinct after the comparison the judge makes (sim.lab.loader.normalise_answer).
        rights = list(dict.fromkeys(normalise_answer(a) for a in step.accept))
    raw["sealed"] = {
        "salt": salt,
        "answers": [
            {
                "digest": answer_digest(salt, answer),
                "unlock": seal(answer_key(salt, answer), key.decode("ascii")),
            }
            for answer in rights
        ],
        "explanation": seal(key, step.explanation),
    }
    for gone in ("answer", "accept", "pattern", "explanation"):
        raw.pop(gone, None)
    return key


def _dump(doc: Any, header: str, *, as_read: bool = False) -> str:
    """YAML text; ``as_read``: a document as ruamel read it, comments kept."""
    from ruamel.yaml import YAML
    from ruamel.yaml.scalarstring import LiteralScalarString

    def literal(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: literal(v) for k, v in value.items()}
        if isinstance(value, list):
            return [literal(v) for v in value]
        if isinstance(value, str) and "\n" in value:
            return LiteralScalarString(value)
        return value

    yaml = YAML(typ="rt")
    yaml.width = 100
    yaml.indent(mapping=2, sequence=4, offset=2)
    text = StringIO()
    yaml.dump(doc if as_read else literal(doc), text)
    return header + text.getvalue()


def _manifest(title: str, version: str, audience: str, labs: Sequence[Path]) -> dict[str, Any]:
    return {
        "title": title,
        "version": version,
        "audience": audience,
        "order": [p.stem for p in labs],
    }


def pack_course(
    lab_files: Sequence[Path],
    out: Path,
    audience: str,
    *,
    title: str,
    version: str,
    source_root: Path | None = None,
) -> PackResult:
    """Write a course of ``lab_files`` for ``audience`` into ``out`` (a new
    or empty directory). Every lab must load; the written course is checked
    like any other before this returns (LabFileError / InputError)."""
    from sim.lab.course import MANIFEST, load_course

    if audience not in AUDIENCES:
        raise LabError(f"no audience {audience!r}: student or instructor")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LabError(f"{out} exists and is not an empty directory: pack writes a new course")
    labs = [load_lab(path) for path in lab_files]
    result = PackResult(out, audience)
    (out / "labs").mkdir(parents=True, exist_ok=True)
    (out / "topologies").mkdir(exist_ok=True)
    # Every topology of the source (notebooks use them by name), and each lab's own.
    sources: dict[str, Path] = {}
    if source_root is not None and (source_root / "topologies").is_dir():
        for path in sorted((source_root / "topologies").glob("*.yaml")):
            sources[path.name] = path
    for lab in labs:
        sources.setdefault(f"{lab.topology_path.stem}.yaml", lab.topology_path)
    for name, path in sorted(sources.items()):
        target = out / "topologies" / name
        shutil.copyfile(path, target)
        result.topologies.append(target)
    header = {
        "student": "# Packed for students by `maillab pack --student`: no solutions, answers\n"
        "# sealed (sim/lab/seal.py). The instructor's pack has the source.\n",
        "instructor": "",
    }[audience]
    for path, lab in zip(lab_files, labs, strict=True):
        target = out / "labs" / f"{path.stem}.yaml"
        if audience == "student":
            doc = _read(path, lab)
            doc["topology"] = lab.topology_path.stem
            target.write_text(_dump(student_lab(doc, lab, result.notes), header), encoding="utf-8")
        elif lab.topology == lab.topology_path.stem:
            shutil.copyfile(path, target)  # as its author wrote it
        else:
            # A topology given as a path: the course keeps it in topologies/.
            from sim.spec.yamlpos import load_yaml

            doc, _ = load_yaml(path)
            doc["topology"] = lab.topology_path.stem
            target.write_text(_dump(doc, "", as_read=True), encoding="utf-8")
        result.labs.append(target)
    if source_root is not None and (source_root / "notebooks").is_dir():
        shutil.copytree(
            source_root / "notebooks",
            out / "notebooks",
            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"),
        )
        result.notebooks = sorted(p for p in (out / "notebooks").rglob("*") if p.is_file())
    manifest = _manifest(title, version, audience, result.labs)
    (out / MANIFEST).write_text(_dump(manifest, ""), encoding="utf-8")
    # What was written must be a valid course of valid labs.
    course = load_course(out)
    for written in course.labs:
        load_lab(written)
    return result
