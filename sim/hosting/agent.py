"""The node agent: one process per node on the mininet backend.

``python -m sim.hosting.agent STATE_DIR NODE`` runs inside the node's network
namespace. It starts the node's services on :class:`~sim.net.real.RealNodeNet`
(plain sockets on the node's lab address), prints one JSON line
``{"ready": true, "endpoints": [...]}``, then serves requests from the driver
on a unix socket (``STATE/run/agents/NODE.sock``): run an experiment from this
node, send a control command to a service, hear that every agent of the lab
is up (``started``: :meth:`~sim.services.base.Service.lab_started`), stop.

The driver and the agents are the same program on the same machine and the
state directory is private to the user who started the lab (mode 0700), so
requests and results travel as pickles.

Starting many agents fast: importing maillab (services, dnslib, aiosmtpd,
cryptography, networkx) costs a Python process about 0.45 s of CPU, so on a
2-core machine seven agents started as seven programs take 1.5 s. The
**fork server** (``python -m sim.hosting.agent --fork-server STATE_DIR --run
RUN``) pays that once: it imports everything, lays out the network and loads
the lab CA, then forks one agent per node on request; each child enters its
node's network and mount namespaces (``setns(2)``, as ``mnexec -a`` does) and
runs the same :class:`Agent`. Children die with the fork server
(``PR_SET_PDEATHSIG``), and the fork server stops them and exits when its
standard input closes: if the driver is killed, the agents go too.

Fork-server protocol, one JSON object per line. Driver → server:
``{"op": "spawn", "node": N, "ns_pid": P}`` (P: a process in N's
namespaces), ``{"op": "stop"}``. Server → driver: ``{"event": "ready"}``,
``{"event": "spawned", "node": N, "pid": CHILD}``, ``{"event": "exited",
"node": N, "pid": CHILD, "status": S}``, and each agent's own ready line.
Lines are shorter than ``PIPE_BUF`` (4096 bytes), so writes from several
processes to the one pipe never interleave.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import pickle
import select
import signal
import socket
import struct
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from sim.errors import BackendError, LabError, NetworkError, ServiceError, SimError
from sim.experiments import Experiment
from sim.hosting.nodehost import NodeHost, make_context
from sim.net.real import RealNodeNet
from sim.net.shared import ConnTags, FileTraceHub, SharedClock, run_dir
from sim.resolve import generation_path
from sim.services.registry import service_class
from sim.tls import LabCA
from sim.topology.graph import LabNetwork, layout
from sim.topology.model import Topology
from sim.trace import Trace

__all__ = [
    "TOPOLOGY_FILE",
    "Agent",
    "AgentClient",
    "ForkServer",
    "agent_socket",
    "call",
    "load_topology",
    "main",
    "read_frame",
    "write_frame",
]

#: Agent ready lines longer than this go to a file (see the module docstring).
LINE_MAX = 3800


#: The topology the driver prepared (DKIM keys published), in the run directory.
TOPOLOGY_FILE = "topology.pickle"


def load_topology(state_dir: Path, timeout: float = 60.0) -> Topology:
    """The topology the driver wrote for this run, waiting for it: the fork
    server starts (and imports maillab) while the driver still makes the
    relays' keys and builds the network."""
    path = run_dir(state_dir) / TOPOLOGY_FILE
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise BackendError(f"{path}: the driver did not write the topology")
        time.sleep(0.01)
    topology: Topology = pickle.loads(path.read_bytes())
    return topology


def agent_socket(state_dir: Path, node: str) -> Path:
    return run_dir(state_dir) / "agents" / f"{node}.sock"


async def read_frame(reader: asyncio.StreamReader) -> Any:
    size = struct.unpack("!I", await reader.readexactly(4))[0]
    return pickle.loads(await reader.readexactly(size))


def write_frame(writer: asyncio.StreamWriter, obj: Any) -> None:
    data = pickle.dumps(obj)
    writer.write(struct.pack("!I", len(data)) + data)


def portable_error(err: BaseException, node: str) -> Exception:
    """``err`` if it survives a pickle round trip unchanged, else a
    :class:`SimError` of the nearest kind carrying its one-line message
    (exceptions with their own ``__init__`` signature do not unpickle)."""
    try:
        copy = pickle.loads(pickle.dumps(err))
        if type(copy) is type(err) and str(copy) == str(err) and isinstance(copy, Exception):
            return copy
    except Exception:
        pass
    for kind in (NetworkError, ServiceError, LabError, BackendError, SimError):
        if isinstance(err, kind):
            return kind(str(err))
    return ServiceError(f"{node}: {type(err).__name__}: {err}")


class Agent:
    def __init__(
        self,
        state_dir: Path,
        node: str,
        *,
        topology: Topology | None = None,
        network: LabNetwork | None = None,
        ca: LabCA | None = None,
    ) -> None:
        # topology, network and ca: already built by the fork server, shared by its children.
        run = run_dir(state_dir)
        if topology is None:
            topology = load_topology(state_dir)
        self.state_dir = state_dir
        self.network = network if network is not None else layout(topology)
        self.clock = SharedClock(run / "clock.json")
        self.hub = FileTraceHub(run / "traces")
        self.net = RealNodeNet(self.network, node, self.clock, self.hub, ConnTags(run / "conns"))
        self.host = NodeHost(
            make_context(
                topology,
                self.network,
                node,
                self.net,
                clock=self.clock,
                hub=self.hub,
                state_dir=state_dir,
                ca=ca if ca is not None else LabCA(state_dir / "tls"),
                # Each node's stub cache lives in this process; DNS edits in
                # other nodes' processes reach it through the generation file.
                generation_file=generation_path(state_dir),
            )
        )
        self.ctx = self.host.ctx
        self.stopping = asyncio.Event()

    async def start(self) -> list[dict[str, Any]]:
        self.clock.bind(asyncio.get_running_loop())
        return [e.to_json() for e in await self.host.start()]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    request = await read_frame(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                try:
                    reply: Any = {"ok": True, "value": await self.dispatch(request)}
                except Exception as err:  # sent back to the driver, which raises it
                    reply = {"ok": False, "error": portable_error(err, self.ctx.node.name)}
                try:
                    write_frame(writer, reply)
                except (pickle.PicklingError, TypeError, AttributeError):
                    write_frame(writer, {"ok": False, "error": RuntimeError(repr(reply))})
                await writer.drain()
        finally:
            writer.close()

    async def dispatch(self, request: dict[str, Any]) -> Any:
        op = request["op"]
        if op == "ping":
            return "pong"
        if op == "run":
            experiment: Experiment = request["experiment"]
            trace = self.hub.open(request.get("trace_id"))
            result = await self.host.run(experiment, trace)
            result.trace = Trace(id=trace.id, events=self.hub.read(trace.id))
            return result
        if op == "control":
            return await self.host.control(
                request["service"], request["command"], **request.get("args", {})
            )
        if op == "firewall":
            # A router's rules changed (a lab task): the kernel already has the
            # new iptables rules; update the copy that explains verdicts.
            self.network = layout(request["topology"])
            self.net.network = self.network
            self.host.retarget(self.network)
            return "ok"
        if op == "started":
            # Every agent of the lab is ready (the driver says so).
            await self.host.lab_started()
            return "ok"
        if op == "stop":
            self.stopping.set()
            return "stopping"
        raise ValueError(f"unknown request {op!r}")

    async def stop(self) -> None:
        await self.host.stop()
        await self.net.close()


def write_line(text: str) -> None:
    """One line to standard output in a single write(2): lines shorter than
    PIPE_BUF from several processes sharing a pipe then never interleave
    (``print`` may write the text and the newline separately, as it does
    under PYTHONUNBUFFERED)."""
    data = (text + "\n").encode()
    while data:
        data = data[os.write(1, data) :]


def _ready_line(state_dir: Path, data: dict[str, Any]) -> str:
    line = json.dumps(data)
    if len(line.encode()) < LINE_MAX:
        return line
    # Too long for one atomic write to a shared pipe: the endpoints go to a file.
    path = run_dir(state_dir) / "agents" / f"{data['node']}.json"
    path.write_text(json.dumps(data["endpoints"]))
    return json.dumps(
        {**{k: v for k, v in data.items() if k != "endpoints"}, "endpoints_file": str(path)}
    )


async def _amain(
    state_dir: Path, node: str, *, shared: dict[str, Any] | None = None, watch_stdin: bool = False
) -> int:
    # Built on the running loop: the resolver (and services) bind to it.
    agent = Agent(state_dir, node, **(shared or {}))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stopping.set)
    if watch_stdin:
        # The driver holds the other end: end of file means it is gone.
        def on_stdin() -> None:
            try:
                data = os.read(0, 4096)
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(0)
                agent.stopping.set()

        loop.add_reader(0, on_stdin)
    path = agent_socket(state_dir, node)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    server = await asyncio.start_unix_server(agent.handle, path=str(path))
    try:
        endpoints = await agent.start()
    except Exception as err:
        write_line(
            json.dumps(
                {
                    "ready": False,
                    "node": node,
                    "pid": os.getpid(),
                    "error": f"{type(err).__name__}: {err}"[: LINE_MAX - 200],
                }
            )
        )
        traceback.print_exc()
        with contextlib.suppress(Exception):
            await agent.stop()
        return 1
    write_line(
        _ready_line(
            state_dir, {"ready": True, "node": node, "pid": os.getpid(), "endpoints": endpoints}
        )
    )
    await agent.stopping.wait()
    server.close()
    await agent.stop()
    path.unlink(missing_ok=True)
    return 0


class AgentClient:
    """The driver's side: one request at a time to one node's agent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def request(self, **request: Any) -> Any:
        async with self._lock:
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_unix_connection(str(self.path))
            assert self._reader is not None
            write_frame(self._writer, request)
            await self._writer.drain()
            reply = await read_frame(self._reader)
        if not reply["ok"]:
            raise reply["error"]
        return reply["value"]

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
            self._writer = None


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise ConnectionError("the agent closed the connection")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def call(path: Path, timeout: float | None = None, **request: Any) -> Any:
    """One request to an agent, blocking (the driver's side, from any thread):
    a connection per request, so concurrent callers never share one."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        data = pickle.dumps(request)
        sock.sendall(struct.pack("!I", len(data)) + data)
        size = struct.unpack("!I", _recv_exact(sock, 4))[0]
        reply = pickle.loads(_recv_exact(sock, size))
    if not reply["ok"]:
        raise reply["error"]
    return reply["value"]


# -- the fork server -------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def enter_namespaces(pid: int, kinds: tuple[str, ...] = ("net", "mnt")) -> None:
    """Move this (single-threaded) process into ``pid``'s namespaces, as
    ``mnexec -a`` does. ``os.setns`` arrives in Python 3.12; 3.11 needs libc."""
    libc = _libc()
    for kind in kinds:
        fd = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY)
        try:
            if libc.setns(fd, 0) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns({kind} of pid {pid}): {os.strerror(err)}")
        finally:
            os.close(fd)


class ForkServer:
    """Imports once, forks one agent per node (see the module docstring)."""

    def __init__(self, state_dir: Path, run: str) -> None:
        self.state_dir = state_dir
        self.run = run
        run_path = run_dir(state_dir)
        # The topology as the driver prepared it (DKIM keys published).
        self.topology = load_topology(state_dir)
        self.network = layout(self.topology)
        self.ca = LabCA(state_dir / "tls")
        # Import every service the topology uses, and what experiments need, now.
        for node in self.topology.hosts():
            for kind in node.services.names():
                service_class(kind)
        with contextlib.suppress(ImportError):
            import sim.experiments.send  # noqa: F401  (unpickling a Send experiment imports it)
        self.children: dict[int, str] = {}
        # Everything imported so far is shared with the children copy-on-write:
        # keep the collector from touching (and so copying) it in each child.
        import gc

        gc.collect()
        gc.freeze()
        self.logs = run_path / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def emit(self, data: dict[str, Any]) -> None:
        write_line(json.dumps(data))

    def serve(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        self.emit({"event": "ready", "pid": os.getpid()})
        buffer = b""
        try:
            while True:
                readable, _, _ = select.select([0], [], [], 0.2)
                self.reap()
                if not readable:
                    continue
                data = os.read(0, 65536)
                if not data:
                    return 0  # the driver is gone, or done
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip() and not self.handle(json.loads(line)):
                        return 0
        finally:
            self.stop_children()

    def handle(self, request: dict[str, Any]) -> bool:
        if request.get("op") == "stop":
            return False
        if request.get("op") == "spawn":
            node, ns_pid = str(request["node"]), int(request["ns_pid"])
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # the child: never returns
                code = 1
                try:
                    code = self.child(node, ns_pid)
                except BaseException:
                    traceback.print_exc()
                finally:
                    with contextlib.suppress(Exception):
                        sys.stdout.flush()
                        sys.stderr.flush()
                    os._exit(code)
            self.children[pid] = node
            self.emit({"event": "spawned", "node": node, "pid": pid})
        return True

    def child(self, node: str, ns_pid: int) -> int:
        server = os.getppid()
        os.setsid()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        libc = _libc()
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != server:  # the server died before prctl took effect
            return 1
        libc.prctl(_PR_SET_NAME, f"ml:{node}"[:15].encode(), 0, 0, 0)
        log = os.open(self.logs / f"{node}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.closerange(3, 4096)
        import faulthandler

        # A stuck agent tells where it is stuck: kill -USR1 PID writes every
        # thread's stack to its log.
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
        enter_namespaces(ns_pid)
        shared = {"topology": self.topology, "network": self.network, "ca": self.ca}
        return asyncio.run(_amain(self.state_dir, node, shared=shared))

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            node = self.children.pop(pid, None)
            self.emit(
                {
                    "event": "exited",
                    "node": node,
                    "pid": pid,
                    "status": os.waitstatus_to_exitcode(status),
                }
            )

    def stop_children(self, grace: float = 3.0) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.children and time.monotonic() < deadline:
            with contextlib.suppress(BrokenPipeError, OSError):
                self.reap()
            time.sleep(0.02)
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.children.clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.hosting.agent")
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("node", nargs="?", help="the node to serve (not with --fork-server)")
    parser.add_argument("--run", help="the run id (a marker for `maillab clean`)")
    parser.add_argument(
        "--fork-server",
        action="store_true",
        help="fork agents on request instead of serving one node",
    )
    parser.add_argument(
        "--watch-stdin",
        action="store_true",
        help="stop when standard input closes (the driver is gone)",
    )
    args = parser.parse_args(argv)
    if args.fork_server:
        return ForkServer(args.state_dir, args.run or "").serve()
    if args.node is None:
        parser.error("a NODE is needed (or --fork-server)")
    return asyncio.run(_amain(args.state_dir, args.node, watch_stdin=args.watch_stdin))


if __name__ == "__main__":
    sys.exit(main())
