"""What one machine holds: a student's lab, and a class of them (issue 17 §3).

Three measurements, on the local backend (no root; what JupyterHub students
run):

1. **One student in the TUI, idle**: ``maillab run LAB`` in a tmux pane
   (a real terminal), measured once the lab has started and again after it
   sat idle: resident memory (RSS), proportional memory (PSS: shared pages
   split between the processes sharing them, what N students really cost
   together), and CPU.
2. **One ``maillab check``**: the reference solution of labs, headless; its
   peak RSS and CPU seconds (``wait4``'s rusage of the child).
3. **A class**: N student processes (``--student``), each with its own lab
   started, all released at once, each running one of the lab's experiment
   steps every few seconds (a jittered think time); per N the experiments'
   latency (p50, p95, max) and the students' total PSS. N grows until an
   experiment's p95 passes 2 s (the bound the issue sets), memory would run
   short, or the cap is reached. Bounded in count and time.

Prints figures; asserts nothing. The machine's other load distorts them:
say so with any figure quoted.

    python -m bench bench_capacity
    python -m bench.bench_capacity --quick          # a short validating run
    python -m bench.bench_capacity --lab spf --think 5 --seconds 30 --max-students 48
    python -m bench.bench_capacity --levels 32,48 --seconds 20   # only the large classes
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LATENCY_BOUND = 2.0  # seconds: a step's experiment must answer within this

# -- /proc readings ------------------------------------------------------------------


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_mib(pid: int) -> float:
    return _status_kib(pid, "VmRSS") / 1024


def peak_rss_mib(pid: int) -> float:
    return _status_kib(pid, "VmHWM") / 1024


def pss_mib(pid: int) -> float:
    """Proportional set size: each shared page counted 1/N in each of its N users."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    # /proc/PID/stat fields 14 and 15 (utime, stime) in clock ticks; the
    # command name (field 2) may hold spaces, so split after its ')'.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def machine_line() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.node()}, {os.cpu_count()} cores, {mem:.0f} GiB, python "
        f"{platform.python_version()}, load average {load}"
    )


# -- 1. one student in the TUI ----------------------------------------------------------


@dataclass
class TuiFigures:
    started_rss: float
    started_pss: float
    idle_rss: float
    idle_pss: float
    start_seconds: float
    idle_cpu_percent: float


def _pane_text(session: str) -> str:
    out = subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout


def measure_tui(lab: str, idle: float, home: Path) -> TuiFigures | str:
    """``maillab run LAB`` in a detached tmux session of 80x24; a reason string
    when it cannot run here."""
    if shutil.which("tmux") is None:
        return "no tmux (apt-get install tmux)"
    session = f"maillab-capacity-{os.getpid()}"
    maillab = Path(sys.executable).with_name("maillab")
    # Textual draws on stderr: leave it on the pane.
    command = shlex.join(
        ["exec", "env", f"MAILLAB_HOME={home}", "MAILLAB_THEME=dark", str(maillab), "run", lab]
    )
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", command],
        check=True,
    )
    try:
        pid = int(
            subprocess.run(
                ["tmux", "display-message", "-p", "-t", session, "#{pane_pid}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        began = time.monotonic()
        while True:
            text = _pane_text(session)
            if "Step 1/" in text and "Starting the lab" not in text:
                break
            if time.monotonic() - began > 120:
                return f"the TUI did not show a started lab in 120 s:\n{text}"
            time.sleep(0.2)
        start_seconds = time.monotonic() - began
        time.sleep(1)  # the first paint's work is done
        started_rss, started_pss = rss_mib(pid), pss_mib(pid)
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(idle)
        cpu1, t1 = cpu_seconds(pid), time.monotonic()
        return TuiFigures(
            started_rss,
            started_pss,
            rss_mib(pid),
            pss_mib(pid),
            start_seconds,
            100 * (cpu1 - cpu0) / (t1 - t0),
        )
    finally:
        # Ctrl-Q quits the app, which stops its lab; then the session goes.
        subprocess.run(["tmux", "send-keys", "-t", session, "C-q"], check=False)
        time.sleep(1)
        subprocess.run(
            ["tmux", "kill-session", "-t", session], stderr=subprocess.DEVNULL, check=False
        )


# -- 2. maillab check ---------------------------------------------------------------------


@dataclass
class CheckFigures:
    labs: list[str]
    passed: bool
    seconds: float
    cpu_seconds: float
    peak_rss: float


def measure_check(labs: list[str], home: Path) -> CheckFigures:
    argv = [sys.executable, "-m", "sim.cli", "check", *labs, "--json"]
    env = dict(os.environ, MAILLAB_HOME=str(home))
    began = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - began
    passed = False
    with contextlib.suppress(ValueError):
        passed = bool(json.loads(out)["passed"])
    # ru_maxrss is in KiB on Linux.
    return CheckFigures(
        labs, passed, seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024
    )


# -- 3. a class: N students -----------------------------------------------------------------


def student(lab_ref: str, think: float, seconds: float, seed: int) -> int:
    """One simulated student (``--student``): start the lab, say ``ready``,
    wait for ``go`` on stdin, then run the lab's experiment steps in turn,
    one every ``think`` seconds (jittered), for ``seconds``; print the
    latencies and this process's memory as one JSON line."""
    from sim.lab.catalog import find_lab, labs_dir
    from sim.lab.engine import LabSession
    from sim.lab.loader import load_lab
    from sim.lab.model import ExperimentStep

    lab = load_lab(find_lab(lab_ref, labs_dir()))
    steps = [s for s in lab.steps if isinstance(s, ExperimentStep) and s.run is not None]
    rng = random.Random(seed)
    latencies: list[float] = []
    errors = 0
    with LabSession(lab) as session:
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return 1
        # Students do not act in lockstep: a random first delay.
        time.sleep(rng.uniform(0, think))
        began, cpu_began = time.monotonic(), time.process_time()
        end = began + seconds
        i = 0
        while time.monotonic() < end:
            step = steps[i % len(steps)]
            i += 1
            t0 = time.monotonic()
            outcome = session.run_experiment(step)
            latencies.append(time.monotonic() - t0)
            errors += outcome.error is not None
            time.sleep(max(0.0, think * rng.uniform(0.5, 1.5)))
        pid = os.getpid()
        print(
            json.dumps(
                {
                    "cpu": time.process_time() - cpu_began,
                    "wall": time.monotonic() - began,
                    "latencies": latencies,
                    "errors": errors,
                    "rss": rss_mib(pid),
                    "pss": pss_mib(pid),
                    "peak_rss": peak_rss_mib(pid),
                }
            ),
            flush=True,
        )
    return 0


@dataclass
class ClassFigures:
    students: int
    experiments: int
    errors: int
    p50: float
    p95: float
    worst: float
    pss_total: float
    rss_each: float
    peak_rss_each: float
    start_seconds: float
    cpu_percent: float


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure_class(n: int, lab: str, think: float, seconds: float) -> ClassFigures:
    argv = [sys.executable, "-m", "bench.bench_capacity", "--student", lab, "--think", str(think)]
    began = time.monotonic()
    procs = [
        subprocess.Popen(
            [*argv, "--seconds", str(seconds), "--seed", str(i)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        for i in range(n)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"a student did not start (said {line!r})")
        start_seconds = time.monotonic() - began
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        reports = []
        for p in procs:
            assert p.stdout is not None
            reports.append(json.loads(p.stdout.readline()))
        for p in procs:
            p.wait(60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    latencies = [x for r in reports for x in r["latencies"]]
    # CPU while working (each student's own clock, from "go" to its report),
    # as a share of one core over the measured window.
    cpu_percent = 100 * sum(r["cpu"] for r in reports) / max(r["wall"] for r in reports)
    return ClassFigures(
        n,
        len(latencies),
        sum(r["errors"] for r in reports),
        statistics.median(latencies),
        _percentile(latencies, 0.95),
        max(latencies),
        sum(r["pss"] for r in reports),
        statistics.mean(r["rss"] for r in reports),
        max(r["peak_rss"] for r in reports),
        start_seconds,
        cpu_percent,
    )


def _available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_class(
    lab: str, think: float, seconds: float, levels: list[int], budget: float
) -> list[ClassFigures]:
    results: list[ClassFigures] = []
    deadline = time.monotonic() + budget
    for n in levels:
        if time.monotonic() > deadline:
            print(f"  (time budget of {budget:.0f} s spent: stopping before {n} students)")
            break
        if results and results[-1].rss_each * n * 1.5 > _available_mib():
            print(f"  (not enough memory free for {n} students: stopping)")
            break
        figures = measure_class(n, lab, think, seconds)
        results.append(figures)
        ok = "ok" if figures.p95 <= LATENCY_BOUND else "OVER"
        print(
            f"  {n:>3} students  {figures.experiments:>4} experiments "
            f"({figures.errors} errors)  latency p50 {figures.p50:.2f} s  "
            f"p95 {figures.p95:.2f} s  max {figures.worst:.2f} s  [{ok}]   "
            f"PSS total {figures.pss_total:.0f} MiB  RSS each {figures.rss_each:.0f} MiB  "
            f"CPU {figures.cpu_percent:.0f}%  (all started in {figures.start_seconds:.1f} s; "
            f"machine load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        if figures.p95 > LATENCY_BOUND:
            break
    return results


# -- the report -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_capacity")
    parser.add_argument("--lab", default="dmarc", help="the lab students work in")
    parser.add_argument("--think", type=float, default=5.0, help="seconds between experiments")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured time per level")
    parser.add_argument("--max-students", type=int, default=64)
    parser.add_argument("--budget", type=float, default=600.0, help="seconds for the class run")
    parser.add_argument("--quick", action="store_true", help="a short validating run")
    parser.add_argument(
        "--levels",
        metavar="N,N,...",
        help="class sizes to try, in order (default 1,2,4,8,12,16,24,32,48,64 up to the max)",
    )
    parser.add_argument("--student", metavar="LAB", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    # `python -m bench` calls main() with no arguments: the defaults.
    args = parser.parse_args(argv or [])
    if args.student:
        sys.exit(student(args.student, args.think, args.seconds, args.seed))
    if args.quick:
        args.seconds, args.budget = min(args.seconds, 15.0), min(args.budget, 150.0)
        args.max_students = min(args.max_students, 8)

    print(f"# capacity of one machine ({machine_line()})")
    print("  figures taken under the machine's other load are pessimistic")
    with tempfile.TemporaryDirectory(prefix="maillab-capacity-") as tmp:
        home = Path(tmp)
        tui = measure_tui(args.lab, 5.0 if args.quick else 15.0, home)
        if isinstance(tui, str):
            print(f"TUI idle        skipped: {tui}")
        else:
            print(
                f"TUI idle        lab {args.lab} started in {tui.start_seconds:.1f} s; "
                f"RSS {tui.started_rss:.0f} -> {tui.idle_rss:.0f} MiB, "
                f"PSS {tui.started_pss:.0f} -> {tui.idle_pss:.0f} MiB, "
                f"CPU {tui.idle_cpu_percent:.1f}% of a core idle"
            )
        check_labs = [args.lab] if args.quick else []
        check = measure_check(check_labs, home)
        print(
            f"maillab check   {' '.join(check.labs) or 'every lab'}: "
            f"{'passed' if check.passed else 'FAILED'} in {check.seconds:.1f} s, "
            f"CPU {check.cpu_seconds:.1f} s, peak RSS {check.peak_rss:.0f} MiB"
        )
    sizes = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)
    if args.levels:
        try:
            sizes = tuple(int(n) for n in args.levels.split(","))
        except ValueError:
            parser.error(f"--levels {args.levels}: not a list of numbers")
    levels = [n for n in sizes if 0 < n <= args.max_students]
    print(
        f"class           lab {args.lab}, an experiment every {args.think:.0f} s "
        f"(±50%) per student, {args.seconds:.0f} s per level; bound: p95 <= {LATENCY_BOUND} s"
    )
    results = run_class(args.lab, args.think, args.seconds, levels, args.budget)
    within = [r for r in results if r.p95 <= LATENCY_BOUND]
    if within:
        best = within[-1]
        print(
            f"holds           {best.students} students within the bound here "
            f"(PSS {best.pss_total / best.students:.0f} MiB each, peak RSS "
            f"{best.peak_rss_each:.0f} MiB, CPU {best.cpu_percent / best.students:.1f}% "
            "of a core each)"
        )
    else:
        tried = ", ".join(str(r.students) for r in results) or "none"
        print(f"holds           no class size tried ({tried}) stayed within the bound here")


if __name__ == "__main__":
    main(sys.argv[1:])
