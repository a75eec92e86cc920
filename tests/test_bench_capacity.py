"""The capacity bench's measuring functions (issue 17 §3) measure what they
claim: a simulated student starts its lab, runs experiments that succeed and
reports its memory; a check reports pass and a peak. Behaviour only; the
figures are the bench's business, not a test's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# `bench` is a directory of the repository, not part of the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_capacity import measure_check, measure_class

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_a_class_of_two_runs_experiments_without_errors() -> None:
    figures = measure_class(2, "receive-only", think=0.5, seconds=2.0)
    assert figures.students == 2
    assert figures.experiments >= 2 and figures.errors == 0
    assert 0 < figures.p50 <= figures.p95 <= figures.worst
    # Each student is a process with a running lab: tens of MiB, not bytes.
    assert figures.rss_each > 20 and figures.pss_total > 20


def test_check_reports_a_pass_and_its_peak(tmp_path: Path) -> None:
    figures = measure_check(["receive-only"], tmp_path)
    assert figures.passed
    assert figures.peak_rss > 20 and figures.cpu_seconds > 0
