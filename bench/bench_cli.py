"""How long each ``maillab`` command takes as a whole process (issue 14 §3).

Each command runs 5 times (after one warm-up run, which also fills the user
caches: DKIM keys, the lab CA, loaded topologies, the lab list); the median
is printed beside its *floor*: a bare Python that imports the same
non-maillab modules (standard library and third-party) the command imported,
measured in the same run, its runs taken in turns with the command's (the
load of a shared machine changes within seconds). The difference is what maillab
itself costs: its own modules and the work the command does.

Targets on a 2-core machine: ``send`` within 0.3 s of its floor;
``validate``, ``list`` and ``--help`` under 0.35 s. Prints; asserts nothing.
``python -m bench.bench_cli [RUNS]``.
"""

from __future__ import annotations

import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 5


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    #: Target: the median under this many seconds (absolute), or within this
    #: many seconds of the floor (relative).
    target: float
    relative: bool = False


CASES = (
    Case(
        "send",
        (
            "send",
            "topologies/home-isp.yaml",
            "--from",
            "laptop",
            "--to",
            "bob@qq.example",
            "--via",
            "smtp-isp",
            "--user",
            "alice@home.example",
            "--password",
            "secret",
        ),
        0.3,
        relative=True,
    ),
    Case("validate", ("validate", "topologies/home-isp.yaml"), 0.35),
    Case("list", ("list",), 0.35),
    Case("--help", ("--help",), 0.35),
    Case("check", ("check", "receive-only"), 0.0),  # reported, no target
)

_IMPORT = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| ( *)(\S+)")


def maillab_command() -> list[str]:
    """The installed ``maillab`` script beside this Python, else ``-m sim.cli``."""
    script = Path(sys.executable).with_name("maillab")
    if script.exists():
        return [str(script)]
    found = shutil.which("maillab")
    return [found] if found else [sys.executable, "-m", "sim.cli"]


def _environment(**extra: str) -> dict[str, str]:
    # As a user runs it: Python caches maillab's bytecode (a session that sets
    # PYTHONDONTWRITEBYTECODE would recompile every module on every run).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    return _timed(argv, env)[:3]


def _timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str, float]:
    """(wall seconds, exit code, stderr, CPU seconds) of one run."""
    cpu = _cpu()
    start = time.perf_counter()
    done = subprocess.run(
        argv,
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env or _environment(),
        check=False,
        timeout=120,
    )
    return time.perf_counter() - start, done.returncode, done.stderr, _cpu() - cpu


def median_seconds(argv: list[str], runs: int) -> tuple[float, int, float]:
    """Median wall seconds, the last exit code, median CPU seconds."""
    _run(argv)  # warm-up: the page cache, the .pyc files, the DKIM and list caches
    times, cpus, code = [], [], 0
    for _ in range(runs):
        seconds, code, _, cpu = _timed(argv)
        times.append(seconds)
        cpus.append(cpu)
    return statistics.median(times), code, statistics.median(cpus)


def paired_medians(
    argv: list[str], floor: list[str], runs: int
) -> tuple[tuple[float, int, float], tuple[float, int, float]]:
    """:func:`median_seconds` of a command and of its floor, their runs taken
    in turns: on a shared machine the load changes within seconds, and five
    runs of one then five of the other would compare two different loads."""
    _run(argv)  # warm-up: the page cache, the .pyc files, the user caches
    _run(floor)
    walls: list[list[float]] = [[], []]
    cpus: list[list[float]] = [[], []]
    codes = [0, 0]
    for _ in range(runs):
        for i, one in enumerate((argv, floor)):
            seconds, codes[i], _, cpu = _timed(one)
            walls[i].append(seconds)
            cpus[i].append(cpu)
    command, base = (
        (statistics.median(walls[i]), codes[i], statistics.median(cpus[i])) for i in (0, 1)
    )
    return command, base


def imported_modules(args: tuple[str, ...]) -> list[str]:
    """The modules other than maillab's that ``maillab ARGS`` imports."""
    env = _environment(PYTHONPROFILEIMPORTTIME="1")
    _, _, stderr = _run([*maillab_command(), *args], env)
    names = []
    for line in stderr.splitlines():
        match = _IMPORT.match(line)
        if match is None:
            continue
        name = match.group(2)
        if name == "sim" or name.startswith(("sim.", "__editable__", "_distutils_hack")):
            continue
        names.append(name)
    return list(dict.fromkeys(names))


def floor_argv(modules: list[str]) -> list[str]:
    # Imported one by one, each failure ignored: a module may need another
    # imported first (as the command imported it) or only load as a side
    # effect; the floor must not be inflated by errors either.
    code = (
        "import importlib\n"
        f"for m in {modules!r}:\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except Exception:\n"
        "        pass\n"
    )
    return [sys.executable, "-c", code]


def main(runs: int = RUNS) -> None:
    print(
        f"# maillab commands, whole process, median of {runs} "
        f"({platform.node()}, {os.cpu_count()} cores, python {platform.python_version()}, "
        f"load {os.getloadavg()[0]:.1f})"
    )
    # Wall time is what the targets are about; CPU time (user + system of the
    # process) is printed beside it because it hardly changes with the load
    # other processes put on the machine, which stretches wall time.
    print(
        f"{'command':<10} {'median':>8} {'floor':>8} {'over':>7}  "
        f"{'cpu':>6} {'floor':>6} {'over':>7}  target"
    )
    command = maillab_command()
    for case in CASES:
        (seconds, code, cpu), (floor, _, floor_cpu) = paired_medians(
            [*command, *case.args], floor_argv(imported_modules(case.args)), runs
        )
        over = seconds - floor
        if case.target <= 0:
            verdict = "(no target)"
        elif case.relative:
            ok = over <= case.target
            verdict = f"floor + {case.target:.2f} s: {'met' if ok else 'MISSED'}"
        else:
            ok = seconds <= case.target
            verdict = f"< {case.target:.2f} s: {'met' if ok else 'MISSED'}"
        status = "" if code in (0, 1) else f"  (exit {code})"
        print(
            f"{case.name:<10} {seconds:7.3f}s {floor:7.3f}s {over:+6.3f}s  "
            f"{cpu:5.3f}s {floor_cpu:5.3f}s {cpu - floor_cpu:+6.3f}s  {verdict}{status}",
            flush=True,
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else RUNS)
