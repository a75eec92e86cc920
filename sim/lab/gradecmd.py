"""The ``maillab export`` and ``maillab grade`` subcommands (issue 16 §2).

``export`` writes the current student's submission (:mod:`sim.lab.submission`);
``grade`` replays submissions (:mod:`sim.lab.grading`), one lab of one
student per job, in ``--jobs`` processes: each job starts its own lab, so no
state is shared between students. Exit codes: 0 graded (whatever the grades),
2 bad input.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sim.errors import ArgumentError, LabFileError

__all__ = ["add_export_parser", "add_grade_parser", "cmd_export", "cmd_grade", "register"]

EXIT_OK = 0


def _labs_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--labs-dir",
        metavar="DIR",
        help="where the lab files are (default: the repository's or the package's)",
    )


def _write(target: str, text: str) -> None:
    """Write ``text`` to the file ``target`` (``-``: standard output)."""
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(target)
    if path.is_dir():
        raise ArgumentError(f"{target} is a directory: give a file name")
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise ArgumentError(f"cannot write {target}: {err.strerror or err}") from None


# -- export ------------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    from sim.lab.catalog import find_lab, lab_files, labs_dir
    from sim.lab.loader import load_lab
    from sim.lab.progress import FileProgressStore, check_student_id
    from sim.lab.submission import build_submission

    student = check_student_id(args.student) if args.student else None
    store = FileProgressStore(student=student)
    progress = store.all_labs()
    directory = labs_dir(args.labs_dir)
    if args.labs:
        paths = [find_lab(ref, directory) for ref in args.labs]
    else:
        paths = [p for p in lab_files(directory) if _file_id(p) in progress]
    labs = []
    for path in paths:
        try:
            labs.append(load_lab(path, student=store.student))
        except LabFileError as err:
            raise err from None
    data = build_submission(store.student, labs, progress)
    _write(args.output, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    if args.output != "-":
        done = sum(1 for lab in data["labs"] if lab["completed"])
        print(
            f"{args.output}: {store.student}'s submission, {len(labs)} lab(s), {done} completed",
            file=sys.stderr,
        )
    return EXIT_OK


def _file_id(path: Path) -> str | None:
    from sim.lab.catalog import _declared_id

    return _declared_id(path)


def add_export_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "export",
        help="write your submission: your answers, edits, attempts, hints and time per lab",
    )
    p.add_argument(
        "labs",
        nargs="*",
        metavar="LAB",
        help="lab ids, numbers or files (default: every lab you started)",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="the submission file to write (JSON; - for standard output)",
    )
    p.add_argument(
        "--student",
        metavar="ID",
        help="whose progress to export (default: $MAILLAB_STUDENT, else the id stored "
        "with the progress, else the login name)",
    )
    _labs_dir_arg(p)
    p.set_defaults(func=cmd_export)
    return p


# -- grade -------------------------------------------------------------------------------


def _catalog(labs_dir_arg: str | None) -> dict[str, Path]:
    from sim.lab.catalog import lab_files, labs_dir

    out: dict[str, Path] = {}
    for path in lab_files(labs_dir(labs_dir_arg)):
        found = _file_id(path)
        if found is not None:
            out.setdefault(found, path)
    return out


def _job(job: tuple[str, str, str, str]) -> list[dict[str, Any]]:
    """One student's lab, replayed (run in a worker process)."""
    submission_path, lab_id, lab_path, backend = job
    from sim.lab.grading import grade_submission
    from sim.lab.loader import load_lab
    from sim.lab.submission import read_submission

    submission = read_submission(submission_path)
    # A worker grades many students' labs: each lab file is read once per
    # process (a student's variant is read again from it, once).
    path = Path(lab_path)
    key = (str(path), path.stat().st_mtime_ns)
    lab = _LABS.get(key)
    if lab is None:
        lab = _LABS[key] = load_lab(path)
    rows = grade_submission(submission, {lab_id: lab}, backend, only=[lab_id])
    return [r.to_json() for r in rows]


_LABS: dict[tuple[str, int], Any] = {}


def grade_files(
    paths: Sequence[str],
    catalog: dict[str, Path],
    backend: str = "local",
    jobs: int = 1,
    only: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every submission's labs replayed; the rows, and warnings (a lab the
    catalog does not have). Submissions are read (and refused) first."""
    from sim.lab.catalog import declared_backends
    from sim.lab.model import needs_backend
    from sim.lab.submission import read_submission

    work: list[tuple[str, str, str, str]] = []
    warnings = []
    for path in paths:
        submission = read_submission(path)
        for lab in submission.labs:
            if only and lab.id not in only:
                continue
            if lab.id not in catalog:
                warnings.append(f"{path}: lab {lab.id!r} is not in the labs directory: not graded")
                continue
            backends = declared_backends(catalog[lab.id])
            if backend not in backends:
                # Replaying needs the backend the lab runs on (real Postfix:
                # mininet); graded there, not here.
                warnings.append(
                    f"{path}: lab {lab.id!r} not graded on the {backend} backend: it "
                    f"{needs_backend(lab.id, backends, 'grade', f'{path} --lab {lab.id}')}"
                )
                continue
            work.append((str(path), lab.id, str(catalog[lab.id]), backend))
    rows: list[dict[str, Any]] = []
    if jobs <= 1 or len(work) <= 1:
        for job in work:
            rows.extend(_job(job))
        return rows, warnings
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork: the workers start at once with the parser's modules loaded; no lab
    # is running in this process yet, so nothing of one is inherited.
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        for found in pool.map(_job, work):
            rows.extend(found)
    return rows, warnings


def _summary(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        entry = out.setdefault(
            (r["student"], r["lab"]),
            {
                "student": r["student"],
                "lab": r["lab"],
                "assessed": 0,
                "passed": 0,
                "claimed": 0,
                "hints": 0,
                "seconds": 0.0,
                "version_ok": r["version_ok"],
            },
        )
        if r["assessed"]:
            entry["assessed"] += 1
            entry["passed"] += int(r["passed"])
            entry["claimed"] += int(r["claimed"])
        entry["hints"] += r["hints"]
        entry["seconds"] = round(entry["seconds"] + r["seconds"], 1)
    return list(out.values())


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    from sim.lab.grading import COLUMNS

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r[k] for k in COLUMNS})
    return buffer.getvalue()


def _explain(args: argparse.Namespace) -> int:
    from sim.lab.catalog import find_lab, lab_files, labs_dir
    from sim.lab.grading import explain_lab
    from sim.lab.loader import load_lab

    directory = labs_dir(args.labs_dir)
    paths = [find_lab(ref, directory) for ref in args.paths] if args.paths else lab_files(directory)
    out: list[dict[str, Any]] = []
    for path in paths:
        lab = load_lab(path)
        steps = [{"step": s, "kind": k, "assessed": a} for s, k, a in explain_lab(lab)]
        variables = [
            {"name": v.name, "is": v.description, "values": v.describe()} for v in lab.variables
        ]
        out.append({"lab": lab.id, "title": lab.title, "variables": variables, "steps": steps})
    if args.json == "-" or args.json:
        _write(args.json, json.dumps({"labs": out}, ensure_ascii=False, indent=1) + "\n")
        if args.json == "-":
            return EXIT_OK
    for lab_out in out:
        print(f"{lab_out['lab']}: {lab_out['title']}")
        for v in lab_out["variables"]:
            print(f"  per student: {v['name']} ({v['is'] or 'a variable'}): {v['values']}")
        for s in lab_out["steps"]:
            print(f"  {s['step']} ({s['kind']}): {s['assessed']}")
    return EXIT_OK


def cmd_grade(args: argparse.Namespace) -> int:
    if args.explain:
        return _explain(args)
    if not args.paths:
        raise ArgumentError("give one or more submission files (or --explain)")
    catalog = _catalog(args.labs_dir)
    only: list[str] = []
    if args.lab:
        from sim.lab.catalog import find_lab, labs_dir

        for ref in args.lab:
            found = _file_id(find_lab(ref, labs_dir(args.labs_dir)))
            if found:
                only.append(found)
    rows, warnings = grade_files(args.paths, catalog, args.backend, args.jobs, only)
    for warning in warnings:
        print(f"maillab grade: {warning}", file=sys.stderr)
    summary = _summary(rows)
    if args.csv:
        _write(args.csv, _csv(rows))
    if args.json:
        _write(
            args.json,
            json.dumps(
                {"backend": args.backend, "rows": rows, "summary": summary}, ensure_ascii=False
            )
            + "\n",
        )
    if "-" not in (args.csv, args.json):
        for entry in summary:
            stale = "" if entry["version_ok"] else "  (made against another version of the lab)"
            print(
                f"{entry['student']}  {entry['lab']}: {entry['passed']}/{entry['assessed']} "
                f"steps pass on replay (claimed {entry['claimed']}), {entry['hints']} hint(s), "
                f"{round(entry['seconds'] / 60)} min{stale}"
            )
    return EXIT_OK


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and 64")
    return value


def add_grade_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "grade",
        help="grade submissions by replaying them: every check runs again, nothing is "
        "taken on trust",
    )
    p.add_argument(
        "paths",
        nargs="*",
        metavar="SUBMISSION",
        help="submission files written by `maillab export` (with --explain: labs)",
    )
    p.add_argument(
        "--backend",
        choices=["local", "mininet"],
        default="local",
        help="local (default: one process, no root) or mininet (root, Linux)",
    )
    p.add_argument(
        "--csv", metavar="FILE", help="write one row per student × lab × step (- for stdout)"
    )
    p.add_argument(
        "--json",
        metavar="FILE",
        help="write the rows and a summary per student × lab as JSON (- for stdout)",
    )
    p.add_argument(
        "--lab",
        action="append",
        metavar="LAB",
        help="grade only this lab (id, number or file; repeat for more)",
    )
    p.add_argument(
        "--jobs",
        type=_jobs,
        default=1,
        metavar="N",
        help="replay in N processes at once (each replay starts its own lab; default 1)",
    )
    p.add_argument(
        "--explain",
        action="store_true",
        help="say what is assessed in each step of each lab, and what varies per student",
    )
    _labs_dir_arg(p)
    p.set_defaults(func=cmd_grade)
    return p


def register(subparsers: Any) -> None:
    """Add ``export`` and ``grade`` to the ``maillab`` subcommands."""
    add_export_parser(subparsers)
    add_grade_parser(subparsers)
