"""Shared fixtures. Tests that need root and Linux namespaces carry the
``mininet`` mark and skip elsewhere with the reason; CI runs them as root."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = ROOT / "topologies"
LABS = ROOT / "labs"

sys.path.insert(0, str(Path(__file__).resolve().parent))


def mininet_missing() -> str | None:
    """Why the mininet backend cannot run here, or None."""
    if not sys.platform.startswith("linux"):
        return "the mininet backend needs Linux network namespaces"
    if os.geteuid() != 0:
        return "the mininet backend needs root (CI runs these tests as root)"
    if shutil.which("mnexec") is None:
        return "mnexec is missing: apt-get install mininet"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = mininet_missing()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "mininet" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def root_dir() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def home_isp_path() -> Path:
    return TOPOLOGIES / "home-isp.yaml"


@pytest.fixture(autouse=True)
def _course_unchanged() -> Iterator[None]:
    """``maillab --course DIR`` (sim.cli.use_course) points the whole process
    at a course through ``$MAILLAB_COURSE``, as it should for a real run; a
    test calling ``main`` in-process must not leave it for the next test."""
    before = os.environ.get("MAILLAB_COURSE")
    yield
    if before is None:
        os.environ.pop("MAILLAB_COURSE", None)
    else:
        os.environ["MAILLAB_COURSE"] = before
