"""Build step: the top-level ``labs/`` and ``topologies/`` go inside the package.

The repository keeps labs and topologies at the top, where instructors edit
them. A wheel must carry them too, or ``pip install maillab`` gives a maillab
with no labs (issue 14). So building the package copies them into
``sim/data/labs`` and ``sim/data/topologies`` of the build (with the
course manifest ``course.yaml`` as ``sim/data/course.yaml``), where
:mod:`sim.lab.catalog` and :mod:`sim.notebook` look when there is no checkout
around the package. Nothing is copied in the source tree (no second copy in
git); ``MANIFEST.in`` puts the folders in the sdist, so a wheel built from the
sdist gets them the same way. An editable install needs no copy: it runs from
the checkout, which has the folders.

All metadata is in pyproject.toml; this file only adds the step.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
#: Source folder (from the repository root) → where it goes in the package.
SHIPPED = {"labs": "sim/data/labs", "topologies": "sim/data/topologies"}
PATTERNS = ("*.yaml", "*.yml")


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for source, target in SHIPPED.items():
            folder = ROOT / source
            files = sorted(f for pattern in PATTERNS for f in folder.glob(pattern))
            if not files:
                raise SystemExit(f"maillab build: no {source}/*.yaml in {ROOT}: cannot ship labs")
            destination = Path(self.build_lib) / target
            destination.mkdir(parents=True, exist_ok=True)
            for path in files:
                self.copy_file(str(path), str(destination / path.name))
        # The manifest that makes sim/data a course (sim/lab/course.py).
        self.copy_file(str(ROOT / "course.yaml"), str(Path(self.build_lib) / "sim/data/course.yaml"))


setup(cmdclass={"build_py": BuildPyWithData})
