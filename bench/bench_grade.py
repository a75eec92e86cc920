"""Grading a class by replay (issue 16 §2): 100 submissions × 10 labs on the
local backend, by default; ``--students`` and ``--labs`` make it smaller.

Run by hand (``python -m bench.bench_grade --students 10``); it prints the
time to grade the class and what the replays found, and asserts nothing.

The class is made without running anything: each student's submission is
what their session would have recorded had they followed the reference path
of their own variant (the right answer to each question, each task's
solution as their edits), except that a few students, chosen by the same
per-student draw as the variants, skip a task or answer a question wrong
first, so that the grades are not all full marks.

How it is made fast: every replay starts its own lab, as the student's
variant (its topology differs per student: names, addresses, selectors),
and services keep state (mailboxes, queues, caches) that a second replay
would inherit; so no topology is shared between students. The replays run
in ``--jobs`` worker processes instead (default: one per core).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from sim.lab.catalog import lab_files, labs_dir
from sim.lab.draw import draw_index
from sim.lab.gradecmd import grade_files
from sim.lab.loader import load_lab
from sim.lab.model import LabDef, QuestionStep, TaskStep
from sim.lab.progress import LabProgress, StepProgress
from sim.lab.submission import build_submission


def reference_progress(lab: LabDef, student: str) -> LabProgress:
    """What ``student``'s session records following the reference path of
    their variant ``lab``; about one student in five skips a task, and one
    in four answers a question wrong before the right answer."""
    progress = LabProgress(lab.id)
    skip = draw_index(student, lab.id, "bench-skip", 5) == 0
    tasks = [s for s in lab.steps if isinstance(s, TaskStep)]
    skipped = tasks[-1].id if skip and tasks else None
    for step in lab.steps:
        state = progress.steps.setdefault(step.id, StepProgress())
        state.done_at = progress.started
        if isinstance(step, QuestionStep):
            wrong = draw_index(student, lab.id, f"bench-wrong-{step.id}", 4) == 0
            if wrong and step.choices:
                other = next(c.id for c in step.choices if c.id != step.answer)
                state.answers.append(other)
            elif wrong:
                state.answers.append("no idea")
            state.answers.append(step.reference_answer())
            state.attempts = len(state.answers)
        if isinstance(step, TaskStep):
            state.attempts = 2
            state.hints = draw_index(student, lab.id, f"bench-hints-{step.id}", 3)
            if step.id == skipped:
                continue
            for action in step.solution:
                progress.actions.append({"step": step.id, "action": action.to_json()})
        state.done = True
    progress.seconds = 60.0 * len(lab.steps)
    return progress


def make_class(students: int, lab_ids: list[str] | None, directory: Path) -> list[Path]:
    """One submission file per student in ``directory``."""
    paths = [p for p in lab_files(labs_dir())]
    if lab_ids:
        paths = [p for p in paths if load_lab(p).id in lab_ids]
    out = []
    for i in range(1, students + 1):
        student = f"s{i:03d}"
        labs = [load_lab(p, student=student) for p in paths]
        progress = {lab.id: reference_progress(lab, student) for lab in labs}
        data = build_submission(student, labs, progress)
        path = directory / f"{student}.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        out.append(path)
    return out


def measure(
    students: int, lab_ids: list[str] | None, jobs: int, backend: str = "local"
) -> dict[str, Any]:
    """Make a class, grade it; the figures."""
    catalog = {load_lab(p).id: p for p in lab_files(labs_dir())}
    with tempfile.TemporaryDirectory(prefix="maillab-bench-grade-") as tmp:
        began = time.perf_counter()
        paths = make_class(students, lab_ids, Path(tmp))
        made = time.perf_counter() - began
        load_before = os.getloadavg()[0]
        began = time.perf_counter()
        rows, warnings = grade_files([str(p) for p in paths], catalog, backend, jobs)
        graded = time.perf_counter() - began
    replays = len({(r["student"], r["lab"]) for r in rows})
    assessed = [r for r in rows if r["assessed"]]
    return {
        "students": students,
        "replays": replays,
        "rows": len(rows),
        "passed": sum(r["passed"] for r in assessed),
        "assessed": len(assessed),
        "claimed": sum(r["claimed"] for r in assessed),
        "make_seconds": made,
        "grade_seconds": graded,
        "jobs": jobs,
        "load": (load_before, os.getloadavg()[0]),
        "warnings": warnings,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=100, help="class size (default 100)")
    parser.add_argument(
        "--labs", nargs="*", metavar="ID", help="lab ids to grade (default: every lab)"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: one per core)",
    )
    args = parser.parse_args(argv)
    print(
        f"# grading by replay ({platform.node()}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}, local backend)"
    )
    figures = measure(args.students, args.labs, args.jobs)
    per = figures["grade_seconds"] / max(1, figures["replays"])
    print(
        f"{figures['students']} submissions, {figures['replays']} lab replays, "
        f"{figures['rows']} rows: graded in {figures['grade_seconds']:.1f} s "
        f"with {figures['jobs']} job(s) ({per:.2f} s per lab replay; class made in "
        f"{figures['make_seconds']:.1f} s)"
    )
    print(
        f"steps passed on replay {figures['passed']}/{figures['assessed']} "
        f"(claimed done {figures['claimed']}); load average "
        f"{figures['load'][0]:.1f} before, {figures['load'][1]:.1f} after"
    )
    for warning in figures["warnings"]:
        print(f"warning: {warning}")


if __name__ == "__main__":
    main()
