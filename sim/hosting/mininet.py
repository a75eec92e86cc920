"""The mininet backend: a topology on real network namespaces (Linux, root).

The namespaces, links, addresses, routes and firewalls come from
:mod:`sim.net.mininet`; this module starts the services inside them and
drives them:

* **Services**: one agent process per host (:mod:`sim.hosting.agent`), inside the
  host's namespaces, forked by a fork server that imported maillab once
  (seven cold Python starts cost 1.5 s of CPU on two cores; forks cost
  milliseconds). DNS hosts are forked first. The lab is ready when every
  agent has said so. ``agents="popen"`` starts them with ``node.popen``
  instead (for comparison: ``bench/bench_mininet.py``).
* **Clean stop**: agents by pid (SIGTERM, then SIGKILL), the fork server,
  then ``net.stop()``; then a check that no process of the run is left
  (:mod:`sim.net.mnclean`), whose record is written before anything is
  created, so that ``maillab clean`` can finish the job if the driver is
  killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim.errors import BackendError, ServiceError
from sim.experiments import Experiment, ExperimentResult
from sim.fastclass import dataclass
from sim.hosting import agent as agent_mod
from sim.hosting.agent import TOPOLOGY_FILE
from sim.hosting.backend import Backend
from sim.hosting.nodehost import resolver_address
from sim.net import mnclean
from sim.net.api import Endpoint
from sim.net.iptables import cleanup_commands, compile_router
from sim.net.mininet import (
    BRIDGE,
    Plan,
    bridge_script,
    mininet_classes,
    node_script,
    resolv_conf,
)
from sim.net.requirements import check as check_requirements
from sim.net.shared import FileTraceHub, SharedClock, run_dir
from sim.topology.firewall import Packet, evaluate, with_firewall
from sim.topology.graph import LabNetwork, layout
from sim.topology.model import FirewallRule, Topology
from sim.trace import Trace

if TYPE_CHECKING:
    from mininet.net import Mininet

__all__ = ["MininetBackend"]

#: Real seconds the agents get to say they are ready.
READY_TIMEOUT = 60.0
#: Real seconds an experiment may take (a relay settling days of lab time...).
CALL_TIMEOUT = 600.0


def _package_root() -> str:
    """The directory that holds the ``sim`` package (the agents' PYTHONPATH)."""
    return str(Path(__file__).resolve().parents[2])


# -- agents -----------------------------------------------------------------------------


@dataclass
class _AgentState:
    node: str
    pid: int | None = None
    ready: dict[str, Any] | None = None
    error: str | None = None


class MininetBackend(Backend):
    """A topology on network namespaces; see the module docstring."""

    name = "mininet"

    def __init__(
        self,
        topology: Topology,
        state_dir: Path,
        *,
        as_node: str | None = None,
        time_scale: float | None = None,
        agents: str = "fork",
    ) -> None:
        super().__init__(topology, state_dir, as_node=as_node, time_scale=time_scale)
        if agents not in ("fork", "popen"):
            raise BackendError(f"agents={agents!r}: choose fork or popen")
        self.network: LabNetwork = layout(self.topology)
        as_name = as_node or self.network.outside
        if as_name not in self.network.graph:
            raise BackendError(f"--as {as_name}: no such node in {topology.name}")
        self.as_name = as_name
        self.agents_mode = agents
        self.run_id: str | None = None
        self.record: mnclean.RunRecord | None = None
        self.net: Mininet | None = None
        self.hosts: dict[str, Any] = {}  # lab node → LabHost
        self.clock: SharedClock | None = None
        self.hub: FileTraceHub | None = None
        self.notices: list[str] = []
        self.timings: dict[str, float] = {}
        self._agents: dict[str, _AgentState] = {}
        self._endpoints: list[Endpoint] = []
        self._forkserver: subprocess.Popen[bytes] | None = None
        self._popens: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._threads: list[threading.Thread] = []
        self._started = False
        self._stopped = False

    # -- start ----------------------------------------------------------------------

    @property
    def run_path(self) -> Path:
        return run_dir(self.state_dir)

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        begin = self._begin = time.monotonic()
        check_requirements()
        notice = mnclean.leftover_notice()
        if notice:
            self.notices.append(notice)
            print(notice, file=sys.stderr, flush=True)
        self.run_id = mnclean.new_run_id()
        plan = Plan.of(self.network, self.run_id)
        # The record first: whatever happens next, `maillab clean` knows the run.
        self.record = mnclean.RunRecord.create(self.run_id, self.topology.name, self.state_dir)
        self.record.nodes = dict(plan.names)
        self.record.interfaces = plan.interfaces()
        self.record.bridges = [{"node": b, "name": BRIDGE, "namespace": b} for b in plan.bridges]
        self.record.save()
        self._prepare_state()
        # The relays' DKIM keys (RSA: the slowest part on a fresh state
        # directory) are made while the fork server imports and the network
        # is built; the agents read the published topology once it is written.
        with ThreadPoolExecutor(1, thread_name_prefix="maillab-keys") as pool:
            keys = pool.submit(self.publish_keys)
            if self.agents_mode == "fork":
                self._start_forkserver()
            mark = time.monotonic()
            self._build(plan)
            self.timings["network"] = time.monotonic() - mark
            keys.result()
        self._write_topology()
        mark = time.monotonic()
        self._start_agents()
        self._lab_started()
        self.timings["agents"] = time.monotonic() - mark
        self.timings["total"] = time.monotonic() - begin

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        root = _package_root()
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        assert self.run_id is not None
        env["MAILLAB_RUN"] = self.run_id
        return env

    def _prepare_state(self) -> None:
        run = self.run_path
        if run.exists():
            # A previous run on this state directory: its run files are stale.
            import shutil

            shutil.rmtree(run)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for sub in ("agents", "logs", "resolv", "setup", "conns"):
            (run / sub).mkdir(parents=True, exist_ok=True)
        self.clock = SharedClock(run / "clock.json", self.time_scale)
        self.hub = FileTraceHub(run / "traces")
        try:
            resolver: IPv4Address | None = resolver_address(self.topology)
        except BackendError:
            resolver = None
        for node in self.network.nodes():
            (run / "resolv" / f"{node}.conf").write_text(resolv_conf(node, resolver))

    def _write_topology(self) -> None:
        """The topology the agents load (:func:`sim.hosting.agent.load_topology`),
        written whole or not at all: the fork server waits for it."""
        path = self.run_path / TOPOLOGY_FILE
        partial = path.with_suffix(".part")
        partial.write_bytes(pickle.dumps(self.topology))
        os.replace(partial, path)

    def _start_forkserver(self) -> None:
        assert self.record is not None and self.run_id is not None
        log = open(self.run_path / "logs" / "forkserver.log", "ab")  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sim.hosting.agent",
                    str(self.state_dir),
                    "--fork-server",
                    "--run",
                    self.run_id,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=self._env(),
                cwd="/",
                start_new_session=True,
            )
        finally:
            log.close()
        self._forkserver = proc
        with self._lock:
            self.record.add_process(proc.pid, "forkserver", None)
        self._read_lines(proc, None)

    def _build(self, plan: Plan) -> None:
        LabHost, QuietIntf, VethLink, Mininet = mininet_classes()
        # Mininet() would call Mininet.init(), which raises machine-wide
        # sysctls (buffer sizes, ARP cache...). A lab needs none of them, and a
        # clean stop leaves the machine as it found it.
        Mininet.inited = True
        LabHost.env = self._env()
        net = Mininet(
            topo=None, controller=None, build=False, host=LabHost, link=VethLink, intf=QuietIntf
        )
        self.net = net
        deadline = time.monotonic() + READY_TIMEOUT
        nodes: dict[str, Any] = {}
        try:
            for name in [*plan.names.values(), *plan.bridges]:
                nodes[name] = net.addHost(name, ip=None)
        finally:
            assert self.record is not None
            with self._lock:
                for host in nodes.values():
                    entry = mnclean.ProcessEntry.of(host.pid, "shell", host.name)
                    if entry is not None:
                        self.record.processes.append(entry)
                self.record.save()
        for host in nodes.values():
            host.wait_prompt(deadline)
        self.hosts = {lab: nodes[mn] for lab, mn in plan.names.items()}
        self._run_everywhere(list(nodes.values()), lambda h: "unset HISTFILE; stty -echo; set +m")
        for a, ia, b, ib in plan.links:
            net.addLink(nodes[a], nodes[b], intfName1=ia, intfName2=ib, addr1=None, addr2=None)
        for name, iface in plan.dummies:
            nodes[name].pending.append(f"link add {iface} type dummy")
        setup = self.run_path / "setup"
        batch = [h for h in nodes.values() if h.pending]
        for host in batch:
            (setup / f"{host.name}.links").write_text("\n".join(host.pending) + "\n")
        self._run_everywhere(
            batch,
            lambda h: f"ip -batch {setup / (h.name + '.links')}",
            check="create its interfaces",
        )
        scripts: dict[str, str] = {}
        for lab, mn in plan.names.items():
            scripts[mn] = node_script(self.network, lab, self.run_path / "resolv" / f"{lab}.conf")
        for bridge, ports in plan.bridges.items():
            scripts[bridge] = bridge_script(ports)
        for mn, text in scripts.items():
            (setup / f"{mn}.sh").write_text(text)
        self._run_everywhere(
            list(nodes.values()),
            lambda h: f"sh -e {setup / (h.name + '.sh')}",
            check="configure itself",
        )

    def _run_everywhere(
        self, hosts: list[Any], command: Callable[[Any], str], check: str | None = None
    ) -> None:
        """Send one command to every shell, then collect: all run at once."""
        for host in hosts:
            suffix = "; echo maillab-rc=$?" if check else ""
            host.sendCmd(command(host) + suffix)
        failures = []
        for host in hosts:
            out = host.waitOutput()
            if check and "maillab-rc=0" not in out:
                lab = host.name.removeprefix(mnclean.run_marker(self.run_id or ""))
                text = " ".join(out.replace("\r", "").split())
                failures.append(f"{lab} could not {check}: {text[-300:]}")
        if failures:
            raise BackendError("; ".join(failures))

    # -- agents ------------------------------------------------------------------------

    def _agent_order(self) -> list[str]:
        """Host nodes, DNS servers first (everyone else looks things up)."""
        hosts = [n for n in self.network.nodes() if self.network.node(n).kind == "host"]

        def rank(name: str) -> int:
            services = self.network.node(name).services
            return 0 if (services.dns or services.dnsbl) else 1

        return sorted(hosts, key=rank)

    def _read_lines(self, proc: subprocess.Popen[bytes], node: str | None) -> None:
        def reader() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                try:
                    data = json.loads(raw)
                except ValueError:
                    continue
                self._on_line(data, node)
            with self._changed:
                if node is not None and node in self._agents:
                    state = self._agents[node]
                    if state.ready is None and state.error is None:
                        state.error = "exited before it was ready"
                elif node is None and self._forkserver is proc:
                    for state in self._agents.values():
                        if state.ready is None and state.error is None:
                            state.error = "the fork server exited"
                self._changed.notify_all()

        thread = threading.Thread(
            target=reader, name=f"maillab-{node or 'forkserver'}", daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def _on_line(self, data: dict[str, Any], source: str | None) -> None:
        with self._changed:
            event = data.get("event")
            node = data.get("node") or source
            if event == "ready":
                self._forkserver_ready = True
                self.timings["forkserver_ready"] = time.monotonic() - self._begin
            elif event == "spawned" and node in self._agents:
                self._agents[node].pid = int(data["pid"])
                assert self.record is not None
                self.record.add_process(int(data["pid"]), "agent", node)
            elif event == "exited" and node in self._agents:
                state = self._agents[node]
                if state.ready is None and state.error is None:
                    state.error = f"exited with status {data.get('status')}"
                state.pid = None
            elif "ready" in data and node in self._agents:
                state = self._agents[node]
                if data["ready"]:
                    if "endpoints_file" in data:
                        data["endpoints"] = json.loads(Path(data["endpoints_file"]).read_text())
                    state.ready = data
                    self.timings[f"ready:{node}"] = time.monotonic() - self._begin
                else:
                    state.error = str(data.get("error"))
            self._changed.notify_all()

    _forkserver_ready = False
    _begin = 0.0

    def _start_agents(self) -> None:
        order = self._agent_order()
        with self._lock:
            self._agents = {n: _AgentState(n) for n in order}
        if self.agents_mode == "fork":
            proc = self._forkserver
            assert proc is not None and proc.stdin is not None
            requests = "".join(
                json.dumps({"op": "spawn", "node": n, "ns_pid": self.hosts[n].pid}) + "\n"
                for n in order
            )
            proc.stdin.write(requests.encode())
            proc.stdin.flush()
        else:
            self._popen_agents(order)
        deadline = time.monotonic() + READY_TIMEOUT
        with self._changed:
            while True:
                failed = [s for s in self._agents.values() if s.error is not None]
                if failed:
                    break
                if all(s.ready is not None for s in self._agents.values()):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            states = list(self._agents.values())
        failed = [s for s in states if s.error is not None]
        waiting = [s.node for s in states if s.ready is None and s.error is None]
        if failed or waiting:
            parts = [f"{s.node}: {s.error}{self._log_tail(s.node)}" for s in failed]
            if waiting:
                parts.append(f"not ready after {READY_TIMEOUT:g} s: {', '.join(waiting)}")
            raise ServiceError("mininet: agents failed to start: " + "; ".join(parts))
        for state in states:
            assert state.ready is not None
            for raw in state.ready["endpoints"]:
                self._endpoints.append(Endpoint(**raw))

    def _lab_started(self) -> None:
        """Tell every agent that the whole lab is up (Service.lab_started):
        each node's services started in a process of their own, in parallel."""
        for node in self._agents:
            agent_mod.call(self._socket(node), CALL_TIMEOUT, op="started")

    def _popen_agents(self, order: list[str]) -> None:
        from sim.tls import LabCA

        assert self.record is not None and self.run_id is not None
        LabCA(self.state_dir / "tls")  # once, before the agents load it
        env = self._env()
        for node in order:
            log = open(self.run_path / "logs" / f"{node}.log", "ab")  # noqa: SIM115
            try:
                proc = self.hosts[node].popen(
                    [
                        sys.executable,
                        "-m",
                        "sim.hosting.agent",
                        str(self.state_dir),
                        node,
                        "--run",
                        self.run_id,
                        "--watch-stdin",
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    env=env,
                    cwd="/",
                )
            finally:
                log.close()
            self._popens.append(proc)
            with self._lock:
                self._agents[node].pid = proc.pid
                self.record.add_process(proc.pid, "agent", node)
            self._read_lines(proc, node)

    def _log_tail(self, node: str) -> str:
        try:
            lines = (self.run_path / "logs" / f"{node}.log").read_text().strip().splitlines()
        except OSError:
            return ""
        return f" (log: {lines[-1].strip()})" if lines else ""

    # -- stop ----------------------------------------------------------------------

    def stop(self) -> None:
        if self._stopped or not self._started:
            return
        self._stopped = True
        problems: list[str] = []
        # 1. The agents, and anything else running in the lab's namespaces,
        #    except the node shells themselves.
        keep = {h.pid for h in self.net.hosts} if self.net is not None else set()
        if self._forkserver is not None:
            keep.add(self._forkserver.pid)  # it stops on its own, reaping its agents
        victims = {
            pid: start for pid, start in self._namespace_processes().items() if pid not in keep
        }
        for state in self._agents.values():
            entry = self._recorded(state.pid)
            if entry is not None:
                victims[entry.pid] = entry.start
        mnclean.kill_processes(victims, grace=3.0)
        # 2. The fork server (its agents are gone), and popen'd agents' pipes.
        proc = self._forkserver
        if proc is not None:
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=3)
        for popen in self._popens:
            with contextlib.suppress(OSError):
                if popen.stdin is not None:
                    popen.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=3)
        # 3. The network: the shells end, their namespaces (interfaces,
        #    bridges, iptables rules) with them.
        if self.net is not None:
            try:
                self.net.stop()
            except Exception as err:  # keep going: the check below has the last word
                problems.append(f"net.stop(): {err}")
        for thread in self._threads:
            thread.join(timeout=2)
        # 4. Check that nothing of this run is left.
        if self.record is not None:
            left = mnclean.run_processes(self.record)
            remaining = mnclean.kill_processes(left) if left else []
            if remaining:
                problems.append(f"processes still alive: {', '.join(map(str, remaining))}")
            else:
                self.record.remove()
        if problems:
            line = (
                f"maillab: mininet run {self.run_id} did not stop cleanly "
                f"({'; '.join(problems)}); run `maillab clean`"
            )
            self.notices.append(line)
            print(line, file=sys.stderr, flush=True)

    def _recorded(self, pid: int | None) -> mnclean.ProcessEntry | None:
        if pid is None or self.record is None:
            return None
        for entry in self.record.processes:
            if entry.pid == pid and entry.alive():
                return entry
        return None

    def _namespace_processes(self) -> dict[int, int]:
        if self.record is None:
            return {}
        return mnclean.run_processes(self.record)

    # -- the Backend interface -----------------------------------------------------

    def endpoints(self) -> list[Endpoint]:
        as_address = self.network.address_of(self.as_name)
        out = []
        for ep in self._endpoints:
            address, _, port = ep.lab.rpartition(":")
            verdict = evaluate(
                self.network,
                self.as_name,
                Packet(as_address, IPv4Address(address), ep.proto, int(port)),
            )
            if verdict.action != "accept":
                out.append(
                    Endpoint(ep.node, ep.service, ep.proto, ep.lab, None, blocked=verdict.explain())
                )
            else:
                out.append(Endpoint(ep.node, ep.service, ep.proto, ep.lab))
        return out

    def _socket(self, node: str) -> Path:
        self.network.node(node)  # an unknown node: NetworkError naming it
        if node not in self._agents:
            kind = self.network.node(node).kind
            raise BackendError(f"{node} is a {kind}: experiments run on hosts")
        if self._stopped or not self._started:
            raise BackendError("the lab is not running")
        return agent_mod.agent_socket(self.state_dir, node)

    def run(self, node: str, experiment: Experiment) -> ExperimentResult:
        result: ExperimentResult = agent_mod.call(
            self._socket(node), CALL_TIMEOUT, op="run", experiment=experiment
        )
        return result

    def control(self, node: str, service: str, command: str, **args: Any) -> dict[str, Any]:
        value: dict[str, Any] = agent_mod.call(
            self._socket(node),
            CALL_TIMEOUT,
            op="control",
            service=service,
            command=command,
            args=args,
        )
        return value

    def set_firewall(self, router: str, rules: tuple[FirewallRule, ...]) -> None:
        if self._stopped or not self._started:
            raise BackendError("the lab is not running")
        topology = with_firewall(self.topology, router, rules)
        network = layout(topology)
        # Remove this router's maillab chain, then compile the new rules into
        # it: the same semantics module as at start (sim.topology.firewall).
        current = self.exec(router, ["iptables", "-w", "-S"], timeout=30)
        commands = [*cleanup_commands(current.stdout), *compile_router(network, router)]
        for argv in commands:
            done = self.exec(router, ["iptables", "-w", *argv], timeout=30)
            if done.returncode != 0:
                raise BackendError(
                    f"{router}: iptables {' '.join(argv)} failed: {done.stderr.strip()}"
                )
        self.topology, self.network = topology, network
        for node in self._agents:
            agent_mod.call(self._socket(node), CALL_TIMEOUT, op="firewall", topology=topology)

    def now(self) -> float:
        if self.clock is None:
            return 0.0
        return self.clock.now()

    def advance(self, lab_seconds: float) -> None:
        if self.clock is None:
            raise BackendError("the lab is not running")
        self.clock.advance(lab_seconds)

    def log(self) -> Trace:
        if self.hub is None:
            return Trace(id="lab")
        return self.hub.lab_log

    # -- running programs in nodes (the shell, tests) -------------------------------

    def node_pid(self, node: str) -> int:
        """The pid of ``node``'s shell: ``mnexec -a PID`` enters its namespaces."""
        self.network.node(node)
        host = self.hosts.get(node)
        if host is None or self._stopped:
            raise BackendError("the lab is not running")
        return int(host.pid)

    def command(self, node: str, argv: list[str]) -> list[str]:
        """The argv that runs ``argv`` inside ``node``'s network and mount
        namespaces (it sees the lab resolver)."""
        return ["mnexec", "-a", str(self.node_pid(node)), *argv]

    def node_env(self) -> dict[str, str]:
        """The environment of programs run in nodes (carries the run's marker)."""
        return self._env()

    def popen(self, node: str, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside ``node``; the caller stops it (``stop()`` also
        ends whatever still runs in the lab's namespaces)."""
        kwargs.setdefault("env", self._env())
        return subprocess.Popen(self.command(node, argv), **kwargs)

    def exec(
        self, node: str, argv: list[str], *, timeout: float | None = 60, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside ``node`` and return what it printed."""
        kwargs.setdefault("env", self._env())
        return subprocess.run(
            self.command(node, argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )
