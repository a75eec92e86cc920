"""Lab state shared between processes through the state directory.

On the mininet backend every node's services run in their own process inside
the node's namespace; all of them see the same filesystem (NOTES.md), so the
lab's shared state lives in files under ``STATE/run/``:

* :class:`SharedClock`: the lab clock. ``clock.json`` holds the epoch, the
  scale and the offset that ``advance`` adds; every process computes the
  same lab time from it. ``time/faketime`` says the same in libfaketime's
  notation (``+OFFSET xSCALE``) for the real daemons that run on lab time
  (Postfix, postgrey: :mod:`sim.services.labtime`); it is written with
  ``clock.json``, so an ``advance`` moves them at the same moment.
* :class:`FileTraceHub`: trace events, one JSON line each, appended to
  ``traces/<trace id>.jsonl`` and to ``traces/lab.jsonl``. Lines are written
  with a single ``O_APPEND`` write, so concurrent writers do not interleave.
* :class:`ConnTags`: which experiment a connection belongs to. A client
  writes ``conns/<its address>_<its port>`` (the trace id) before it
  connects; the server reads it when it accepts. A UDP client's file ends
  in ``_udp``: TCP and UDP port numbers are separate spaces.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

from sim.clock import LabClock, faketime_spec
from sim.trace import Trace, TraceEvent, TraceHub

__all__ = ["ConnTags", "FileTraceHub", "SharedClock", "run_dir"]

#: How often (real seconds) a waiting process looks at shared files again.
POLL = 0.02


def run_dir(state_dir: Path) -> Path:
    return state_dir / "run"


def _atomic_write(path: Path, data: str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as tmp:
        tmp.write(data)
        tmp.flush()
        if mode != 0o600:
            os.fchmod(tmp.fileno(), mode)
        os.fsync(tmp.fileno())
    Path(tmp.name).replace(path)


class SharedClock(LabClock):
    """A :class:`LabClock` whose epoch and offset live in a file."""

    def __init__(self, path: Path, time_scale: float | None = None) -> None:
        self.path = path
        self.faketime_file = path.parent / "time" / "faketime"
        if time_scale is not None:
            # The driver creates the clock; node processes open it.
            super().__init__(time_scale)
            self._epoch = time.time()
            self._write()
        else:
            raw = json.loads(path.read_text())
            super().__init__(float(raw["scale"]))
            self._epoch = float(raw["epoch"])
            self._offset = float(raw["offset"])
        self._mtime = self._stat()

    def _stat(self) -> int:
        try:
            return self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    @property
    def offset(self) -> float:
        self._refresh()  # another process may have advanced the clock
        return self._offset

    def _write(self) -> None:
        _atomic_write(
            self.path,
            json.dumps({"epoch": self._epoch, "scale": self.time_scale, "offset": self._offset}),
        )
        # Read by daemons that dropped their privileges (postfix, postgrey):
        # world-readable, in a directory of its own that a node bind-mounts.
        spec = self.faketime_file
        assert spec is not None
        spec.parent.mkdir(exist_ok=True)
        spec.parent.chmod(0o755)
        _atomic_write(spec, faketime_spec(self._offset, self.time_scale), 0o644)

    def _refresh(self) -> None:
        mtime = self._stat()
        if mtime != self._mtime:
            try:
                self._offset = float(json.loads(self.path.read_text())["offset"])
                self._mtime = mtime
            except (OSError, ValueError, KeyError):
                pass  # caught mid-replace: keep the last value, look again later

    def now(self) -> float:
        self._refresh()
        # Wall time, not monotonic: every process must compute the same value.
        return self._offset + (time.time() - self._epoch) * self.time_scale

    def advance(self, lab_seconds: float) -> None:
        if lab_seconds < 0:
            raise ValueError("the lab clock does not run backwards")
        self._refresh()
        self._offset += lab_seconds
        self._write()
        self._mtime = self._stat()
        super().advance(0)  # wake this process's sleepers

    async def sleep_until(self, lab_time: float) -> None:
        # Another process may advance the clock: look again at least every POLL.
        while True:
            remaining = lab_time - self.now()
            if remaining <= 0:
                return
            await asyncio.sleep(min(self.real_seconds(remaining), POLL * 5))


class FileTraceHub(TraceHub):
    """A :class:`TraceHub` whose events every process of the lab can read."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, trace_id: str) -> Path:
        safe = "".join(c for c in trace_id if c.isalnum() or c in "-_")
        return self.directory / f"{safe}.jsonl"

    def _append(self, path: Path, line: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def emit(self, trace_id: str | None, event: TraceEvent) -> None:
        line = (json.dumps(event.to_json(), ensure_ascii=False) + "\n").encode()
        self._append(self._path("lab"), line)
        if trace_id is not None:
            self._append(self._path(trace_id), line)
        for listener in list(self._listeners):
            listener(trace_id, event)

    def open(self, trace_id: str | None = None) -> Trace:
        trace = Trace(id=trace_id) if trace_id else Trace()
        self._path(trace.id).touch()
        return trace

    def read(self, trace_id: str) -> list[TraceEvent]:
        try:
            text = self._path(trace_id).read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        events = []
        for line in text.splitlines():
            try:
                events.append(TraceEvent.from_json(json.loads(line)))
            except (ValueError, KeyError):
                continue  # a line still being written
        return events

    def get(self, trace_id: str) -> Trace | None:
        if not self._path(trace_id).exists():
            return None
        return Trace(id=trace_id, events=self.read(trace_id))

    async def wait_for(
        self, trace_id: str, predicate: Callable[[TraceEvent], bool], timeout: float
    ) -> TraceEvent | None:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.read(trace_id):
                if predicate(event):
                    return event
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(POLL)

    @property
    def lab_log(self) -> Trace:
        return Trace(id="lab", events=self.read("lab"))


class ConnTags:
    """Tags connections with the trace id of the experiment that made them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, address: IPv4Address | str, port: int, proto: str) -> Path:
        # TCP and UDP have separate port spaces: a DNS query's UDP socket may
        # hold the port number of a live TCP client, and must not untag it.
        suffix = "" if proto == "tcp" else f"_{proto}"
        return self.directory / f"{address}_{port}{suffix}"

    def tag(
        self, address: IPv4Address | str, port: int, trace_id: str | None, proto: str = "tcp"
    ) -> None:
        path = self._path(address, port, proto)
        if trace_id is None:
            path.unlink(missing_ok=True)
            return
        # Not with_suffix(): "192.0.2.150_40000" would become "192.0.2.tmp",
        # one temporary file for every port of a node, raced by its sockets.
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(trace_id)
        tmp.replace(path)

    def lookup(self, address: IPv4Address | str, port: int, proto: str = "tcp") -> str | None:
        try:
            return self._path(address, port, proto).read_text() or None
        except FileNotFoundError:
            return None
