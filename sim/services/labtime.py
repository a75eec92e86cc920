"""Real daemons on lab time: libfaketime under Postfix and postgrey.

maillab's own services read the lab clock (:class:`sim.clock.LabClock`):
``time_scale`` lab seconds pass per real second and ``lab.advance("30m")``
jumps ahead at once. Postfix and postgrey read the system clock; run with
libfaketime (Debian package ``faketime``) preloaded, every ``time()``,
``gettimeofday()`` and ``clock_gettime()`` they make answers the lab's time
instead, and every ``poll()``/``select()``/``sleep()`` timeout they ask for
is divided by the scale. So a relay's ``minimal_backoff_time = 300s`` or
postgrey's ``--delay=300`` are lab seconds, as ``retry: [5m]`` and
``greylist: 5m`` are for maillab's relay and MX.

How the clock is told to libfaketime:

* ``FAKETIME_TIMESTAMP_FILE`` names the clock file the lab writes with every
  advance (``+OFFSET xSCALE``, :func:`sim.clock.faketime_spec`; the file is
  bind-mounted into the node at :data:`TIME_DIR`, readable after the
  daemons drop privileges). ``FAKETIME_NO_CACHE=1``: read at every call, so
  an advance is seen at once.
* libfaketime scales time from each process's *start*; Postfix's master
  starts a process per job, which would each see a different time. A start
  time shared by all (``FAKETIME_SHARED``: a POSIX semaphore and a small
  shared memory segment) set to the lab's epoch E makes every process
  compute ``E + OFFSET + (now - E) × SCALE``: E plus the lab time. They live
  in a tmpfs mounted over /dev/shm in the node's private mount namespace,
  gone with the node.
* ``NO_FAKE_STAT=1``: a queue file's mtime is the time its retry is due,
  which qmgr set with ``utime()`` from the faked clock (qmgr_active.c); with
  libfaketime's stat faking on, that value would be faked a second time.
  Files the kernel stamps (real time) are then in the lab's past, as long
  as the lab runs at least as fast as real time (``time_scale >= 1``).
* Postfix's master keeps only the variables ``import_environment`` names
  (main.cf), and the dynamic linker ignores ``LD_PRELOAD`` for set-gid
  programs (postdrop, postqueue): the lab never needs those on lab time.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import struct
import subprocess
import time
from pathlib import Path

from sim.clock import LabClock
from sim.errors import ServiceError

__all__ = ["FAKETIME_VARIABLES", "TIME_DIR", "LabTime", "libfaketime"]

#: Where a node sees the lab's clock file (bind mount of ``STATE/run/time``).
TIME_DIR = "/var/lib/postfix/time"
#: The variables Postfix's master must pass on to its children.
FAKETIME_VARIABLES = (
    "LD_PRELOAD",
    "FAKETIME_TIMESTAMP_FILE",
    "FAKETIME_NO_CACHE",
    "FAKETIME_SHARED",
    "FAKETIME_DONT_RESET",
    "NO_FAKE_STAT",
)
#: Where POSIX semaphores and shared memory live (glibc's sem_open, shm_open).
SHM_DIR = Path("/dev/shm")
#: How far (lab seconds) a faked process's clock may be from the lab's at
#: start: a process needs a few real milliseconds to start.
_TOLERANCE = 2.0


def libfaketime() -> str:
    """The path of libfaketime.so.1, or one line naming the package."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    found += [p for p in ("/usr/lib/faketime/libfaketime.so.1",) if os.path.exists(p)]
    if not found:
        raise ServiceError(
            "libfaketime is not installed (Debian package faketime: `make system` installs it)"
        )
    return found[0]


def _timespec(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("<qq", whole, int((seconds - whole) * 1e9))


def shared_start(epoch: float) -> bytes:
    """libfaketime's ``struct ft_shared_s`` (faketime_common.h) with every
    clock's start at ``epoch``: ticks, file index, then the start on
    CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_MONOTONIC_RAW, CLOCK_BOOTTIME."""
    ago = time.time() - epoch
    starts = [
        time.clock_gettime(clock) - ago
        for clock in (
            time.CLOCK_REALTIME,
            time.CLOCK_MONOTONIC,
            time.CLOCK_MONOTONIC_RAW,
            time.CLOCK_BOOTTIME,
        )
    ]
    return struct.pack("<QQ", 0, 0) + b"".join(_timespec(s) for s in starts)


def _sem_create(name: str) -> None:
    """A POSIX named semaphore with value 1 (libfaketime locks with it)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.sem_open.restype = ctypes.c_void_p
    libc.sem_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_uint]
    libc.sem_close.argtypes = [ctypes.c_void_p]
    sem = libc.sem_open(name.encode(), os.O_CREAT | os.O_EXCL, 0o600, 1)
    if sem is None or sem == ctypes.c_void_p(-1).value:  # SEM_FAILED
        raise ServiceError(f"sem_open {name}: {os.strerror(ctypes.get_errno())}")
    libc.sem_close(sem)


class LabTime:
    """The environment that puts a node's daemons on the lab clock."""

    def __init__(self, clock: LabClock, name: str = "maillab-labtime") -> None:
        if clock.faketime_file is None:
            raise ServiceError("real daemons follow lab time only on the mininet backend")
        if clock.time_scale < 1:
            # Files the kernel stamps in real time would lie in the lab's
            # future, and qmgr leaves such a queue file alone ("cool down").
            raise ServiceError(
                f"Postfix follows lab time only when it runs at least as fast as real "
                f"time: time_scale is {clock.time_scale:g}, use 1 or more"
            )
        self.clock = clock
        self.lib = libfaketime()
        #: The shared start time: a semaphore and a shared memory segment.
        self.sem, self.shm = f"/{name}-sem", f"/{name}-shm"
        self.files = (SHM_DIR / f"sem.{name}-sem", SHM_DIR / f"{name}-shm")

    def create(self, time_file: str) -> dict[str, str]:
        """The shared start time (in /dev/shm) and the variables a daemon
        needs; ``time_file`` is where the daemons read the clock."""
        self.remove()  # a stopped instance's
        _sem_create(self.sem)
        fd = os.open(self.files[1], os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.write(fd, shared_start(self.clock.epoch))
        finally:
            os.close(fd)
        return {
            "LD_PRELOAD": self.lib,
            "FAKETIME_TIMESTAMP_FILE": time_file,
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_SHARED": f"{self.sem} {self.shm}",
            "FAKETIME_DONT_RESET": "1",
            "NO_FAKE_STAT": "1",
        }

    def check(self, env: dict[str, str]) -> None:
        """A program run with ``env`` must read the lab's time: else one line."""
        before = self.clock.epoch + self.clock.now()
        done = subprocess.run(
            ["date", "+%s.%N"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        after = self.clock.epoch + self.clock.now()
        try:
            seen = float(done.stdout.strip())
        except ValueError:
            seen = float("nan")
        if not before - _TOLERANCE <= seen <= after + _TOLERANCE:
            text = " ".join((done.stderr or done.stdout).split())[-200:]
            raise ServiceError(
                f"libfaketime does not give the lab's time: date says {seen}, the lab "
                f"{before:.1f}..{after:.1f} {text}".rstrip()
            )

    def remove(self) -> None:
        for path in self.files:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
