"""The Python API: start a topology and experiment with it.

::

    import sim
    topo = sim.load_topology("topologies/home-isp.yaml")
    with sim.start(topo) as lab:
        print(lab.dig("laptop", "qq.example", "MX").answers)
        print(lab.connect("laptop", "mx.qq.example", 25).outcome)   # blocked

Works from plain scripts and from Jupyter: the lab's event loop runs in its
own thread, so these calls block only until the experiment is done.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from sim.clock import parse_duration
from sim.errors import BackendError
from sim.experiments import Connect, ConnectResult, Dig, DigResult, Experiment, ExperimentResult
from sim.net.api import Endpoint
from sim.net.backend import Backend
from sim.topology.model import Topology
from sim.trace import Trace

__all__ = ["BACKENDS", "Lab", "start"]

BACKENDS = ("local", "mininet")


class Lab:
    """A running topology. Use as a context manager, or call :meth:`stop`."""

    def __init__(self, topology: Topology, backend: Backend, *, owns_state: bool) -> None:
        self.topology = topology
        self.backend = backend
        self._owns_state = owns_state
        self._stopped = False

    # -- experiments --------------------------------------------------------

    def run(self, node: str, experiment: Experiment) -> ExperimentResult:
        return self.backend.run(node, experiment)

    def dig(self, node: str, name: str, rtype: str = "A") -> DigResult:
        """Ask the lab resolver from ``node``, like ``dig NAME TYPE`` there."""
        result = self.run(node, Dig(name=name, type=rtype.upper()))
        assert isinstance(result, DigResult)
        return result

    def connect(self, node: str, host: str, port: int) -> ConnectResult:
        """Open a TCP connection from ``node`` to ``host:port`` and read the banner."""
        result = self.run(node, Connect(host=host, port=port))
        assert isinstance(result, ConnectResult)
        return result

    # -- the lab ------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        return self.backend.state_dir

    def endpoints(self) -> list[Endpoint]:
        return self.backend.endpoints()

    def control(self, node: str, service: str, command: str, **args: Any) -> dict[str, Any]:
        return self.backend.control(node, service, command, **args)

    def now(self) -> float:
        """Lab time (seconds since start)."""
        return self.backend.now()

    def advance(self, duration: str | float) -> None:
        """Jump lab time forward (``"30m"``, ``"2h"`` or seconds)."""
        self.backend.advance(parse_duration(duration))

    def trace(self) -> Trace:
        """Every event since the lab started."""
        return self.backend.log()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self.backend.stop()
        finally:
            if self._owns_state:
                shutil.rmtree(self.backend.state_dir, ignore_errors=True)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __del__(self) -> None:
        # A notebook that forgets stop() must not leave a thread serving.
        if not getattr(self, "_stopped", True):
            try:
                self.stop()
            except Exception:
                pass


def start(
    topology: Topology | str | Path,
    backend: str = "local",
    *,
    state_dir: str | Path | None = None,
    as_node: str | None = None,
    time_scale: float | None = None,
) -> Lab:
    """Realise ``topology`` on a backend and start every service.

    ``state_dir`` keeps queues and mailboxes (a temporary directory, removed
    at stop, when not given). ``as_node``: which node real programs on this
    machine speak for (local backend). ``time_scale`` overrides the topology's.
    """
    if not isinstance(topology, Topology):
        from sim.topology import load_topology

        topology = load_topology(topology)
    owns_state = state_dir is None
    path = Path(tempfile.mkdtemp(prefix="maillab-")) if state_dir is None else Path(state_dir)
    impl: Backend
    if backend == "local":
        from sim.net.local import LocalBackend

        impl = LocalBackend(topology, path, as_node=as_node, time_scale=time_scale)
    elif backend == "mininet":
        from sim.net.mininet import MininetBackend  # type: ignore[import-not-found,unused-ignore]

        impl = MininetBackend(topology, path, as_node=as_node, time_scale=time_scale)
    else:
        raise BackendError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    lab = Lab(topology, impl, owns_state=owns_state)
    try:
        impl.start()
    except BaseException:
        lab.stop()
        raise
    return lab
