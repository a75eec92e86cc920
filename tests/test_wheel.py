"""``pip install maillab`` gives a working maillab, labs included (issue 14 §2).

Builds the sdist and the wheel with ``python -m build``, installs the wheel
into a fresh virtual environment (dependencies from the package index, through
pip's cache) and runs the installed ``maillab`` from a directory outside the
checkout, where no ``labs/`` or ``topologies/`` folder can help it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LABS = sorted(p.name for p in (ROOT / "labs").glob("*.yaml"))
TOPOLOGIES = sorted(p.name for p in (ROOT / "topologies").glob("*.yaml"))

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("build", reason="the dev extra's `build` is not installed")
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], ROOT, dict(os.environ))
    return out


def test_the_sdist_carries_labs_and_topologies(dist: Path) -> None:
    (sdist,) = dist.glob("maillab-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {Path(*Path(n).parts[1:]).as_posix() for n in tar.getnames()}
    assert {f"labs/{n}" for n in LABS} <= names
    assert {f"topologies/{n}" for n in TOPOLOGIES} <= names
    assert "course.yaml" in names


def test_the_wheel_carries_them_inside_the_package(dist: Path) -> None:
    (wheel,) = dist.glob("maillab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"sim/data/labs/{n}" for n in LABS} <= names
    assert {f"sim/data/topologies/{n}" for n in TOPOLOGIES} <= names
    assert {"sim/data/labs/13-real-thing.yaml", "sim/data/topologies/real-thing.yaml"} <= names
    assert "sim/data/course.yaml" in names  # the shipped labs are a course
    # The build copies into the build directory, never into the source tree.
    assert not (ROOT / "sim" / "data").exists()


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("venv")
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    _run([sys.executable, "-m", "venv", str(venv)], venv, env)
    (wheel,) = dist.glob("maillab-*.whl")
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], venv, env)
    return venv / "bin" / "maillab"


@pytest.fixture
def outside(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILLAB_", "PYTHON"))}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    return work, env


def test_installed_maillab_lists_the_ten_labs(
    installed: Path, outside: tuple[Path, dict[str, str]]
) -> None:
    work, env = outside
    labs = json.loads(_run([str(installed), "list", "--json"], work, env))["labs"]
    assert len(labs) == len(LABS) >= 10
    assert labs[0]["id"] == "receive-only"
    # The course ends with the lab for real Postfix and Dovecot (mininet only).
    assert (labs[-1]["id"], labs[-1]["backends"]) == ("real-thing", ["mininet"])
    assert all("site-packages" in lab["file"] for lab in labs)


def test_installed_maillab_checks_a_lab(
    installed: Path, outside: tuple[Path, dict[str, str]]
) -> None:
    work, env = outside
    result = json.loads(_run([str(installed), "check", "receive-only", "--json"], work, env))
    assert result["passed"] and [lab["id"] for lab in result["labs"]] == ["receive-only"]


def test_installed_maillab_scaffolds_a_lab_outside_a_checkout(
    installed: Path, outside: tuple[Path, dict[str, str]]
) -> None:
    work, env = outside
    _run([str(installed), "new", "lab", "my-lab"], work, env)
    lab, topology = work / "labs" / "my-lab.yaml", work / "topologies" / "my-lab.yaml"
    assert lab.is_file() and topology.is_file()
    _run([str(installed), "validate", str(topology), str(lab)], work, env)
    result = json.loads(_run([str(installed), "check", str(lab), "--json"], work, env))
    assert result["passed"]


def test_installed_maillab_reports_its_version(
    installed: Path, outside: tuple[Path, dict[str, str]]
) -> None:
    work, env = outside
    from importlib.metadata import version

    assert _run([str(installed), "--version"], work, env).split() == ["maillab", version("maillab")]


def test_installed_notebook_helpers_find_the_packaged_topologies(
    installed: Path, outside: tuple[Path, dict[str, str]]
) -> None:
    work, env = outside
    python = str(installed.with_name("python"))
    code = "from sim.notebook import find_topology; print(find_topology('home-isp'))"
    found = Path(_run([python, "-c", code], work, env).strip())
    assert found.name == "home-isp.yaml" and "site-packages" in found.parts


def test_installed_maillab_prints_completion_scripts(
    installed: Path, outside: tuple[Path, dict[str, str]]
) -> None:
    work, env = outside
    for shell in ("bash", "zsh", "fish"):
        assert "__complete labs" in _run([str(installed), "completion", shell], work, env)


def test_installed_maillab_packs_its_labs_as_a_course(
    installed: Path, outside: tuple[Path, dict[str, str]]
) -> None:
    work, env = outside
    _run([str(installed), "pack", "1", "--student", "-o", "students"], work, env)
    _run([str(installed), "validate", "students"], work, env)
    listed = json.loads(_run([str(installed), "--course", "students", "list", "--json"], work, env))
    assert [lab["id"] for lab in listed["labs"]] == ["receive-only"]
    assert listed["course"]["title"] and listed["course"]["audience"] == "student"
