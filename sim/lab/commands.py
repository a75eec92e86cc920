"""The ``maillab list``, ``maillab check`` and ``maillab pack`` subcommands.

``sim.cli`` wires them in with :func:`register`::

    sub = parser.add_subparsers(...)
    from sim.lab.commands import register
    register(sub)

Exit codes follow DESIGN.md: 0 success; 1 a check failed; 2 bad input (a
lab file with problems, an unknown lab, a backend this machine cannot run).
Errors are raised as :class:`~sim.errors.SimError` for the CLI to print.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from sim.errors import ArgumentError, InputError, LabFileError

if TYPE_CHECKING:
    from sim.lab.engine import LabReport
    from sim.lab.model import LabDef

# The lab machinery is imported inside each command: building the parser
# (every `maillab` command, `--help` too) must not load it.

__all__ = [
    "add_check_parser",
    "add_list_parser",
    "add_pack_parser",
    "cmd_check",
    "cmd_list",
    "cmd_pack",
    "register",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False), flush=True)


def _labs_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--labs-dir",
        metavar="DIR",
        help="where the lab files are (default: the repository's or the package's)",
    )


# -- list ------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from sim.lab.catalog import labs_dir
    from sim.lab.listcache import lab_summaries
    from sim.lab.progress import FileProgressStore

    directory = labs_dir(args.labs_dir)
    # Summaries, not loaded labs: they come from the user's cache while no
    # lab file, topology or maillab module changed (sim.lab.listcache).
    summaries, problems = lab_summaries(directory)
    store = FileProgressStore()
    progress = store.all_labs()
    rows: list[dict[str, Any]] = []
    for summary in summaries:
        done = progress.get(summary["id"])
        rows.append(
            {
                "id": summary["id"],
                "title": summary["title"],
                "topology": summary["topology"],
                "steps": summary["steps"],
                "progress": done.summary(summary["steps"]) if done is not None else None,
                "file": summary["file"],
                "estimated_time": summary["estimated_time"],
                # Where the lab runs (its `backends:`): ["mininet"] for real
                # Postfix and Dovecot, both for the others.
                "backends": summary["backends"],
            }
        )
    for problem in problems:
        print(problem, file=sys.stderr)
    if store.warning:
        print(f"maillab: {store.warning}", file=sys.stderr)
    if args.json:
        from sim.lab.course import course_from_env

        course = course_from_env() if args.labs_dir is None else None
        _print_json({"labs": rows, "course": course.to_json() if course else None})
    else:
        print(_list_table(rows))
    return EXIT_USAGE if problems else EXIT_OK


def _list_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no labs"
    width = max(len(r["id"]) for r in rows)
    lines = []
    for r in rows:
        p = r["progress"]
        state = ("done" if p["completed"] else f"{p['done']}/{p['total']}") if p else "—"
        minutes = round(r["estimated_time"] / 60)
        only = "" if len(r["backends"]) > 1 else f"  ({r['backends'][0]} only)"
        lines.append(f"{r['id']:<{width}}  {state:>5}  {minutes:>3} min  {r['title']}{only}")
    return "\n".join(lines)


# -- check -------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    from sim.lab.catalog import find_lab, labs_dir, load_catalog, refuse_backend
    from sim.lab.engine import run_reference
    from sim.lab.loader import load_lab

    directory = labs_dir(args.labs_dir)
    if args.labs:
        paths = [find_lab(ref, directory) for ref in args.labs]
        labs, problems = [], []
        for path in paths:
            try:
                labs.append(load_lab(path))
            except LabFileError as err:
                problems.extend(err.problems)
        if problems:
            raise InputError(problems)
        # Asked for by name on a backend it does not run on: one line, exit 2.
        for lab in labs:
            refuse_backend(lab.id, lab.backends, args.backend, "check")
    else:
        entries = load_catalog(directory)
        problems = [p for e in entries for p in e.problems]
        if problems:
            raise InputError(problems)
        labs = [e.lab for e in entries if e.lab is not None]
    # Every lab, on a backend some do not run on (real Postfix and Dovecot:
    # mininet only): those are reported as not run, neither pass nor fail.
    skipped = [lab for lab in labs if not lab.runs_on(args.backend)]
    labs = [lab for lab in labs if lab.runs_on(args.backend)]
    for lab in labs:
        if lab.pack == "student":
            raise ArgumentError(
                f"maillab check: {lab.source}: a student pack has no reference solutions "
                "to run; check the instructor's pack (maillab pack --instructor)"
            )
    runs = [
        (lab, fault, student)
        for lab in labs
        for fault in _fault_runs(lab, args)
        for student in _check_students(lab, args.variants)
    ]
    reports: list[LabReport] = []
    not_run = [
        {"id": lab.id, "backends": list(lab.backends), "reason": _not_run(lab)} for lab in skipped
    ]
    if not args.json:
        for lab, entry in zip(skipped, not_run, strict=True):
            print(f"SKIP  {lab.id}: {entry['reason']}", flush=True)
    for lab, fault, student in runs:
        report = run_reference(
            lab, args.backend, student=student, fault=fault, explain=args.explain
        )
        reports.append(report)
        if not args.json:
            print(_report_text(report), flush=True)
    passed = all(r.passed for r in reports)
    if args.json:
        _print_json(
            {
                "passed": passed,
                "backend": args.backend,
                "labs": [r.to_json() for r in reports],
                "not_run": not_run,
            }
        )
    elif not reports:
        print("no labs to check", file=sys.stderr)
    return EXIT_OK if passed else EXIT_FAILED


def _not_run(lab: LabDef) -> str:
    from sim.lab.model import needs_backend

    return f"not run: {needs_backend(lab.id, lab.backends)}"


def _fault_runs(lab: LabDef, args: argparse.Namespace) -> list[str | None]:
    """The faults to check ``lab`` under: the one ``--fault`` names, each it
    draws from (``--all-faults``), or the one the student id draws (None)."""
    fault: str | None = getattr(args, "fault", None)
    if fault is not None:
        from sim.lab.faults import CATALOGUE
        from sim.spec.words import suggest

        if fault not in CATALOGUE:
            raise ArgumentError(
                f"--fault: no fault {fault!r}{suggest(fault, CATALOGUE)} "
                f"(faults: {', '.join(CATALOGUE)})"
            )
        if lab.faults is None or fault not in lab.faults.choices:
            drawn = ", ".join(lab.faults.choices) if lab.faults else "none"
            raise ArgumentError(
                f"--fault: the lab {lab.id} does not draw the fault {fault} (it draws: {drawn})"
            )
        return [fault]
    if getattr(args, "all_faults", False) and lab.faults is not None:
        return list(lab.faults.choices)
    return [None]


def _check_students(lab: Any, variants: int | None) -> list[str | None]:
    """Whose variants ``check`` runs: the lab as loaded; with ``--variants
    N``, N students' (a lab without variables has one variant: run once).
    Every variant is validated first (sim.lab.variants_check)."""
    if not variants or not lab.variables:
        return [None]
    from sim.lab.variants_check import variant_problems, variant_students

    problems = variant_problems(lab.source)
    if problems:
        raise InputError(problems)
    return list(variant_students(variants))


def _report_text(report: LabReport) -> str:
    mark = "PASS" if report.passed else "FAIL"
    fault = f" [fault {', '.join(report.faults)}]" if report.faults else ""
    who = ""
    if report.student is not None:
        values = ", ".join(f"{k}={v}" for k, v in report.values)
        who = f" [{report.student}: {values}]"
    lines = [
        f"{mark}  {report.id}{fault}{who}: {report.title} "
        f"({len(report.steps)} steps, {report.seconds:.1f} s)"
    ]
    for step in report.steps:
        if not step.passed:
            lines.append(f"      {step.id} ({step.kind}): {step.detail}")
        if step.explain is not None:
            from sim.lab.explain import explanation_lines

            lines.append(f"      task {step.id}:")
            lines.extend(f"        {line}" for line in explanation_lines(step.explain))
    return "\n".join(lines)


# -- the parsers -----------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and 1000")
    return value


def add_list_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser("list", help="the labs, with your progress")
    p.add_argument("--json", action="store_true", help="print the labs as one JSON object")
    _labs_dir_arg(p)
    p.set_defaults(func=cmd_list)
    return p


def add_check_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "check", help="run the labs' reference solutions headless"
    )
    p.add_argument(
        "labs", nargs="*", metavar="LAB", help="lab ids, numbers or files (default: every lab)"
    )
    p.add_argument(
        "--backend",
        choices=["local", "mininet"],
        default="local",
        help="local (default: one process, no root) or mininet (root, Linux)",
    )
    p.add_argument(
        "--explain",
        "--verbose",
        action="store_true",
        help="for each task, show its check before and after the solution: each predicate, "
        "the facts of the runs, and flags for a step that passes or fails by accident",
    )
    p.add_argument("--json", action="store_true", help="print the reports as one JSON object")
    faults = p.add_mutually_exclusive_group()
    faults.add_argument(
        "--fault",
        metavar="NAME",
        help="check a troubleshooting lab under this fault of its `faults:` "
        "(default: the one your student id draws)",
    )
    faults.add_argument(
        "--all-faults",
        action="store_true",
        help="check each troubleshooting lab once under every fault it draws from",
    )
    p.add_argument(
        "--variants",
        type=_positive,
        metavar="N",
        help="check every variant's validity, then the reference solution as N students' "
        "variants (student-1 … student-N) of each lab with variables",
    )
    _labs_dir_arg(p)
    p.set_defaults(func=cmd_check)
    return p


# -- pack ---------------------------------------------------------------------------


def cmd_pack(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sim.lab.catalog import find_lab, lab_files, labs_dir
    from sim.lab.course import MANIFEST, load_course
    from sim.lab.pack import pack_course

    directory = labs_dir(args.labs_dir)
    files = [find_lab(ref, directory) for ref in args.labs] if args.labs else lab_files(directory)
    if not files:
        raise ArgumentError(f"maillab pack: no labs in {directory}")
    root = directory.parent
    title, version = args.title, args.version
    if (root / MANIFEST).is_file():
        source = load_course(root)
        title = title or source.title
        version = version or source.version
    audience = "student" if args.student else "instructor"
    result = pack_course(
        files,
        Path(args.output),
        audience,
        title=title or "A maillab course",
        version=version or "1",
        source_root=root,
    )
    for note in result.notes:
        print(f"maillab pack: note: {note}", file=sys.stderr)
    if args.json:
        _print_json(result.to_json())
    else:
        print(
            f"wrote {result.root}: {len(result.labs)} lab(s) for {audience}s, "
            f"{len(result.topologies)} topologies, {len(result.notebooks)} notebook file(s)"
        )
    return EXIT_OK


def add_pack_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "pack",
        help="write a course directory for students (no solutions) or instructors",
        description="Write labs, their topologies, the notebooks and a course.yaml into a new "
        "directory. --student leaves out every reference solution and seals the answers "
        "(the TUI still checks them); --instructor copies the labs as written.",
    )
    p.add_argument(
        "labs", nargs="*", metavar="LAB", help="lab ids, numbers or files (default: every lab)"
    )
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--student", action="store_true", help="for students: no solutions, answers sealed"
    )
    who.add_argument(
        "--instructor", action="store_true", help="for instructors: the labs with their solutions"
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="DIR", help="the course directory to write (new)"
    )
    p.add_argument("--title", help="the course's title (default: the source course's)")
    p.add_argument("--version", help="the course's version (default: the source course's)")
    p.add_argument("--json", action="store_true", help="print what was written as one JSON object")
    _labs_dir_arg(p)
    p.set_defaults(func=cmd_pack)
    return p


def register(subparsers: Any) -> None:
    """Add ``list``, ``check`` and ``pack`` to the ``maillab`` subcommands."""
    add_list_parser(subparsers)
    add_check_parser(subparsers)
    add_pack_parser(subparsers)
