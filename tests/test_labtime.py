"""Real daemons on lab time (sim.services.labtime): a program started with
the environment LabTime gives reads the lab clock, whenever it started, and
sees an advance at once; its timeouts are divided by the scale. No root
needed: the shared start time lives under unique names in /dev/shm and is
removed afterwards (a node mounts a private /dev/shm instead)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.clock import LabClock, faketime_spec
from sim.errors import ServiceError
from sim.net.shared import SharedClock
from sim.services.labtime import LabTime, libfaketime


def _missing() -> str | None:
    try:
        libfaketime()
    except ServiceError as err:
        return str(err)
    return None


needs_faketime = pytest.mark.skipif(_missing() is not None, reason=f"{_missing()}")


def test_the_clock_file_says_offset_and_scale(tmp_path: Path) -> None:
    clock = SharedClock(tmp_path / "run" / "clock.json", 60.0)
    assert clock.faketime_file == tmp_path / "run" / "time" / "faketime"
    assert clock.faketime_file.read_text() == faketime_spec(0.0, 60.0) == "+0.000000 x60.000000\n"
    # Daemons read it after dropping their privileges.
    assert clock.faketime_file.stat().st_mode & 0o777 == 0o644
    assert clock.faketime_file.parent.stat().st_mode & 0o777 == 0o755
    clock.advance(1800)
    assert clock.faketime_file.read_text() == "+1800.000000 x60.000000\n"
    # Another process's view of the same clock sees the offset.
    assert SharedClock(tmp_path / "run" / "clock.json").offset == 1800
    # No unit letter libfaketime would read (m, h, d, y) in the value.
    assert not set(faketime_spec(691200.5, 0.5)) & set("mhdy")


def test_a_clock_of_one_process_has_no_clock_file() -> None:
    with pytest.raises(ServiceError, match="mininet"):
        LabTime(LabClock(60.0))


def test_postfix_needs_a_lab_at_least_as_fast_as_real_time(tmp_path: Path) -> None:
    clock = SharedClock(tmp_path / "clock.json", 0.5)
    with pytest.raises(ServiceError, match=r"time_scale is 0\.5"):
        LabTime(clock)


@pytest.fixture
def faked(tmp_path: Path) -> Iterator[tuple[SharedClock, dict[str, str], LabTime]]:
    clock = SharedClock(tmp_path / "run" / "clock.json", 60.0)
    labtime = LabTime(clock, name=f"maillab-test-{os.getpid()}")
    assert clock.faketime_file is not None
    env = labtime.create(str(clock.faketime_file))
    try:
        yield clock, env, labtime
    finally:
        labtime.remove()
    assert not any(p.exists() for p in labtime.files)


def _faked_now(env: dict[str, str], program: str = "date") -> float:
    argv = ["date", "+%s.%N"] if program == "date" else ["perl", "-e", "print time"]
    done = subprocess.run(
        argv, env={**os.environ, **env}, capture_output=True, text=True, check=True, timeout=30
    )
    return float(done.stdout)


@needs_faketime
def test_a_program_reads_the_lab_clock_and_sees_an_advance(
    faked: tuple[SharedClock, dict[str, str], LabTime],
) -> None:
    clock, env, labtime = faked
    labtime.check(env)  # does not raise
    time.sleep(0.2)  # a program started later reads the same clock
    lab = clock.now()
    assert abs(_faked_now(env) - (clock.epoch + lab)) < 2.0
    clock.advance(3600)
    assert abs(_faked_now(env) - (clock.epoch + clock.now())) < 2.0
    assert _faked_now(env) - clock.epoch >= lab + 3600
    # Perl (postgrey) too.
    assert abs(_faked_now(env, "perl") - (clock.epoch + clock.now())) < 2.0


@needs_faketime
def test_a_running_program_sees_the_advance_and_its_sleeps_are_scaled(
    faked: tuple[SharedClock, dict[str, str], LabTime],
) -> None:
    clock, env, _ = faked
    # Perl prints its time, sleeps 30 lab seconds (half a real second at
    # 60x), three times; the lab advances an hour in between.
    script = "$|=1; for (1..3) { print time, qq(\\n); select(undef,undef,undef,30) }"
    started = time.monotonic()
    proc = subprocess.Popen(
        ["perl", "-e", script], env={**os.environ, **env}, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    first = float(proc.stdout.readline())
    clock.advance(3600)
    rest = [float(line) for line in proc.stdout]
    proc.wait()
    took = time.monotonic() - started
    assert took < 10  # 90 lab seconds of sleep: 1.5 real seconds, not 90
    assert rest[-1] - first >= 3600 + 30
    assert abs(rest[-1] - (clock.epoch + clock.now())) < 60


@needs_faketime
def test_a_wrong_environment_is_one_line(
    faked: tuple[SharedClock, dict[str, str], LabTime],
) -> None:
    clock, env, labtime = faked
    clock.advance(3600)  # an hour ahead of real time
    with pytest.raises(ServiceError, match="does not give the lab's time"):
        labtime.check({**env, "LD_PRELOAD": ""})
