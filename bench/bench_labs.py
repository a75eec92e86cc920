"""``maillab check`` over the whole curriculum, on each backend (issue: Labs).

Targets on a 2-core machine: under 30 s on local, under 120 s on mininet.
The mininet run needs root and Debian's mininet; it is skipped with a line
otherwise. Prints per-lab and total seconds; asserts nothing.
"""

from __future__ import annotations

import platform
import time

from sim.lab.catalog import lab_files, labs_dir
from sim.lab.engine import run_reference
from sim.lab.loader import load_lab


def run(backend: str) -> None:
    total = time.perf_counter()
    passed = 0
    files = lab_files(labs_dir())
    for path in files:
        lab = load_lab(path)
        start = time.perf_counter()
        report = run_reference(lab, backend)
        seconds = time.perf_counter() - start
        passed += report.passed
        print(f"  {lab.id:<24} {'pass' if report.passed else 'FAIL'}  {seconds:6.2f} s")
    elapsed = time.perf_counter() - total
    print(f"{backend:<8} {passed}/{len(files)} labs passed in {elapsed:.1f} s")


def main() -> None:
    print(
        f"# maillab check, whole curriculum ({platform.node()}, python "
        f"{platform.python_version()}; targets: local < 30 s, mininet < 120 s)"
    )
    run("local")
    from sim.net.requirements import missing

    reason = missing()
    if reason is not None:
        print(f"mininet  skipped: {reason}")
        return
    run("mininet")


if __name__ == "__main__":
    main()
