"""The grading bench's class (issue 16 §2) is what it claims: a submission
following the reference path of the student's variant passes on replay
wherever it claims a step done and no task was skipped. Speed is the
bench's business, not a test's."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_grade import measure, reference_progress
from sim.lab.catalog import find_lab, labs_dir
from sim.lab.loader import load_lab


def test_a_small_class_is_graded_and_passes_where_it_should() -> None:
    figures = measure(2, ["receive-only"], jobs=1)
    assert figures["replays"] == 2 and not figures["warnings"]
    assert figures["passed"] == figures["claimed"] > 0


def test_the_reference_progress_uses_the_students_variant() -> None:
    lab = load_lab(find_lab("dkim", labs_dir()), student="s001")
    progress = reference_progress(lab, "s001")
    selector = dict(lab.values)["selector"]
    published = [a for a in progress.actions if "dkim_publish" in a["action"]]
    assert all(a["action"]["dkim_publish"]["selector"] == selector for a in published)
