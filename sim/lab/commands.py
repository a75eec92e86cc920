"""The ``maillab list`` and ``maillab check`` subcommands.

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

from sim.errors import InputError, LabFileError

if TYPE_CHECKING:
    from sim.lab.engine import LabReport

# The lab machinery is imported inside each command: building the parser
# (every `maillab` command, `--help` too) must not load it.

__all__ = ["add_check_parser", "add_list_parser", "cmd_check", "cmd_list", "register"]

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
            }
        )
    for problem in problems:
        print(problem, file=sys.stderr)
    if store.warning:
        print(f"maillab: {store.warning}", file=sys.stderr)
    if args.json:
        _print_json({"labs": rows})
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
        lines.append(f"{r['id']:<{width}}  {state:>5}  {minutes:>3} min  {r['title']}")
    return "\n".join(lines)


# -- check -------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    from sim.lab.catalog import find_lab, labs_dir, load_catalog
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
    else:
        entries = load_catalog(directory)
        problems = [p for e in entries for p in e.problems]
        if problems:
            raise InputError(problems)
        labs = [e.lab for e in entries if e.lab is not None]
    reports: list[LabReport] = []
    for lab in labs:
        for student in _check_students(lab, args.variants):
            report = run_reference(lab, args.backend, student=student)
            reports.append(report)
            if not args.json:
                print(_report_text(report), flush=True)
    passed = all(r.passed for r in reports)
    if args.json:
        _print_json(
            {"passed": passed, "backend": args.backend, "labs": [r.to_json() for r in reports]}
        )
    elif not reports:
        print("no labs to check", file=sys.stderr)
    return EXIT_OK if passed else EXIT_FAILED


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
    who = ""
    if report.student is not None:
        values = ", ".join(f"{k}={v}" for k, v in report.values)
        who = f" [{report.student}: {values}]"
    lines = [
        f"{mark}  {report.id}{who}: {report.title} "
        f"({len(report.steps)} steps, {report.seconds:.1f} s)"
    ]
    for step in report.steps:
        if not step.passed:
            lines.append(f"      {step.id} ({step.kind}): {step.detail}")
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
    p.add_argument("--json", action="store_true", help="print the reports as one JSON object")
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


def register(subparsers: Any) -> None:
    """Add ``list`` and ``check`` to the ``maillab`` subcommands."""
    add_list_parser(subparsers)
    add_check_parser(subparsers)
