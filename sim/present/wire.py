"""``--pcap``: record what an experiment (or a running lab) put on the wire.

* local backend: after the experiment, the packets are synthesised from its
  trace (:mod:`sim.present.pcap`): nothing crossed a real lab network. While
  a running lab is captured (``maillab up --pcap``), its servers also keep
  what real programs on this machine said to them (:mod:`sim.net.wirelog`),
  since no lab client recorded those conversations.
* mininet backend: ``tcpdump`` runs inside every host's namespace while the
  experiment runs (``-i any``, loopback left out); the per-node captures are
  merged into one pcapng file with an interface per node. Real TLS records
  are in it: the lab's TLS contexts write their session secrets to a key log
  beside the file (``SSLContext.keylog_filename``, NSS key log format), and
  Wireshark decrypts with it (Preferences → Protocols → TLS → (Pre)-Master-
  Secret log filename, or ``tshark -o tls.keylog_file:FILE``).

::

    wire = Wire("run.pcapng", backend)   # before sim.start: sets up the key log
    with sim.start(topology, backend) as lab, wire.capturing(lab):
        result = lab.send(...)
    wire.write(result, topology)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim.errors import SimError
from sim.net.wirelog import WireLog
from sim.present.pcap import merge_captures, write_pcap
from sim.tls import KEYLOG_ENV

if TYPE_CHECKING:
    from sim.hosting.runtime import Lab
    from sim.topology.model import Topology
    from sim.trace import Trace

__all__ = ["Wire", "keylog_path"]


def keylog_path(pcap: Path) -> Path:
    """Where the TLS key log of ``pcap`` goes: beside it, ``NAME.keylog``."""
    return pcap.with_name(pcap.name + ".keylog")


class Wire:
    """One capture to ``path`` from a lab on ``backend`` (see the module doc)."""

    def __init__(self, path: str | Path, backend: str) -> None:
        self.path = Path(path)
        self.backend = backend
        parent = self.path.parent if str(self.path.parent) else Path(".")
        if not parent.is_dir():
            raise SimError(f"{self.path}: no such directory {parent}")
        self._dir: Path | None = None
        self._files: dict[str, Path] = {}
        self._procs: list[subprocess.Popen[Any]] = []
        self._log: WireLog | None = None
        if backend == "mininet":
            # The lab's processes read the environment when they start.
            keys = keylog_path(self.path.resolve())
            keys.unlink(missing_ok=True)
            os.environ[KEYLOG_ENV] = str(keys)

    @contextlib.contextmanager
    def capturing(self, lab: Lab) -> Iterator[Wire]:
        if self.backend != "mininet":
            # The lab's clients record their side in the trace; its servers
            # keep what real programs (swaks, a mail client) say to them.
            backend: Any = lab.backend
            self._log = backend.wire_log = WireLog(backend.clock.now)
            try:
                yield self
            finally:
                backend.wire_log = None
            return
        self._dir = Path(tempfile.mkdtemp(prefix="maillab-pcap-"))
        try:
            self._start(lab)
            yield self
        finally:
            self._stop()
            os.environ.pop(KEYLOG_ENV, None)

    def _start(self, lab: Lab) -> None:
        backend: Any = lab.backend
        assert self._dir is not None
        for node in lab.topology.hosts():
            out = self._dir / f"{node.name}.pcap"
            argv = [
                "tcpdump",
                "-i",
                "any",
                "--immediate-mode",
                "-U",
                "-n",
                "-s",
                "0",
                "-Z",
                "root",
                "-w",
                str(out),
            ]
            argv += ["not", "net", "127.0.0.0/8"]
            proc = backend.popen(
                node.name, argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            self._procs.append(proc)
            self._files[node.name] = out
        # tcpdump writes the file header once it listens: wait for all of them.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if all(f.exists() and f.stat().st_size >= 24 for f in self._files.values()):
                break
            if any(p.poll() is not None for p in self._procs):
                raise SimError("tcpdump did not start in the lab's nodes (is it installed?)")
            time.sleep(0.05)
        time.sleep(0.2)  # the capture is armed a moment after the header is out

    def _stop(self) -> None:
        time.sleep(0.2)  # let the last packets reach the files (-U flushes each)
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self._procs.clear()

    def write(self, source: Trace | Any, topology: Topology | None = None) -> Path:
        """Write the file: synthesised from ``source`` (a result or trace) on
        local, merged from the nodes' captures on mininet."""
        if self.backend != "mininet":
            wire = self._log.connections() if self._log is not None else ()
            return write_pcap(source, self.path, topology, wire=wire)
        keys = keylog_path(self.path.resolve())
        comment = (
            "maillab, mininet backend: captured with tcpdump inside each host's namespace "
            f"(one interface per node). TLS secrets for Wireshark: {keys.name} beside this file."
        )
        out = merge_captures(self._files, self.path, comment)
        if self._dir is not None:
            for file in self._files.values():
                file.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self._dir.rmdir()
        return out
