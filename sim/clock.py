"""The lab clock: lab time runs ``time_scale`` times faster than real time.

A relay's retry schedule of minutes and days, greylisting delays and TCP
connect time-outs are written in lab time. With ``time_scale: 60`` a lab
minute passes in a real second; :meth:`LabClock.advance` jumps ahead at once
(what a notebook or test does to let a queue settle).

The clock lives on one asyncio event loop; :meth:`advance` may be called from
any thread.
"""

from __future__ import annotations

import contextlib
import re
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio
    from pathlib import Path

# asyncio is imported where the clock sleeps, not here: parse_duration is
# all that loading a topology or lab file needs (`maillab validate`, `list`),
# and asyncio with ssl is a good part of those commands' start-up.

__all__ = ["LabClock", "faketime_spec", "format_duration", "parse_duration"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_duration(text: str | int | float) -> float:
    """``"5m"`` → 300.0; a bare number is seconds. Raises ValueError."""
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"a duration cannot be negative: {text!r}")
        return float(text)
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 5m, 2h, 5d)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def format_duration(seconds: float) -> str:
    """300 → ``"5m"``; the largest unit that divides evenly, else seconds."""
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def faketime_spec(offset: float, scale: float) -> str:
    """A lab clock as a libfaketime ``FAKETIME`` value: ``+OFFSET xSCALE``.

    With a process's start time set to the lab's epoch E (libfaketime's
    shared start time), libfaketime computes ``E + OFFSET + (now - E) *
    SCALE``: E plus the lab time :meth:`LabClock.now` computes. Seconds
    only: libfaketime reads an ``m``, ``h``, ``d`` or ``y`` anywhere in the
    value as a unit."""
    return f"+{offset:.6f} x{scale:.6f}\n"


class LabClock:
    """Lab seconds since the lab started, scaled and advanceable."""

    #: Where the clock is kept in libfaketime's notation (:func:`faketime_spec`)
    #: for real daemons that run on lab time; only a clock shared between
    #: processes (``sim.net.shared.SharedClock``) has one.
    faketime_file: Path | None = None

    def __init__(self, time_scale: float = 1.0) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale
        self._start = time.monotonic()
        self._epoch = time.time()
        self._offset = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the event loop that sleeps on this clock."""
        import asyncio

        self._loop = loop
        self._changed = asyncio.Event()

    @property
    def epoch(self) -> float:
        """The wall time (Unix seconds) at which lab time was 0."""
        return self._epoch

    @property
    def offset(self) -> float:
        """The lab seconds :meth:`advance` has added so far."""
        return self._offset

    def now(self) -> float:
        return self._offset + (time.monotonic() - self._start) * self.time_scale

    def real_seconds(self, lab_seconds: float) -> float:
        return lab_seconds / self.time_scale

    def advance(self, lab_seconds: float) -> None:
        """Move lab time forward at once; sleepers whose time has come wake."""
        if lab_seconds < 0:
            raise ValueError("the lab clock does not run backwards")
        self._offset += lab_seconds
        loop, changed = self._loop, self._changed
        if loop is None or changed is None:
            return
        import asyncio

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            changed.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(changed.set)

    async def sleep(self, lab_seconds: float) -> None:
        """Sleep for ``lab_seconds`` of lab time (less if the clock advances)."""
        await self.sleep_until(self.now() + lab_seconds)

    async def sleep_until(self, lab_time: float) -> None:
        import asyncio

        while True:
            remaining = lab_time - self.now()
            if remaining <= 0:
                return
            changed = self._changed
            if changed is None:
                await asyncio.sleep(self.real_seconds(remaining))
                continue
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), self.real_seconds(remaining))
