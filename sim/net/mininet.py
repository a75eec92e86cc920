"""The mininet backend's network: a topology on real network namespaces.

The backend itself (agents, start, stop: :mod:`sim.hosting.mininet`) asks
this module for the namespaces, links, addresses and routes.

Each node of the topology (and the synthetic ``outside`` host) is a mininet
:class:`~mininet.node.Host`: a shell in a network and mount namespace of its
own. No controller and no Open vSwitch:

* **Segments.** A segment of two nodes (a router link, or a LAN with one
  host) is a direct veth pair. A LAN of three or more is a Linux bridge
  inside a namespace of its own, so that bridged frames never meet the root
  namespace's iptables (``net.bridge.bridge-nf-call-iptables=1`` on Debian)
  nor a router's FORWARD chain: two hosts on one LAN talk without a router,
  as in :mod:`sim.topology.firewall`. Veth pairs are created inside the first
  node's namespace with the peer put straight into the other's (mininet's
  "fast" links): no interface of the lab ever exists in the root namespace,
  so interfaces keep the names the topology implies (``eth0``, ``eth1``…,
  from :func:`sim.topology.graph.build_network`), which is what
  ``iptables -S`` on a router and ``ip addr`` on a host show.
* **Addresses and routes** come from :class:`~sim.topology.graph.LabNetwork`;
  routers forward (``ip_forward=1``), with ``rp_filter`` off (paths may be
  asymmetric) and no ICMP rate limit (every blocked connection gets its
  answer). Routers have routes to lab segments only and no interface leads
  out of the lab: there is no NAT and no route to the machine's networks.
* **Firewalls**: :func:`sim.net.iptables.compile_router` (the semantics of
  :mod:`sim.topology.firewall`) applied with ``iptables`` inside each router's
  namespace. The root namespace's iptables is never touched.
* **DNS for real tools**: each node's mount namespace has
  ``STATE/run/resolv/NODE.conf`` bind-mounted over ``/etc/resolv.conf``
  (mininet's ``mnexec -n`` makes the namespace's mounts private, so the
  machine's file is untouched). Everything run in the node — ``dig``,
  ``swaks``, a command typed in the lab shell — asks the lab resolver.
Node shells start all at once and every node is configured by one script
run in all shells concurrently, so a lab of a hundred nodes builds faster
than mininet's own sequential ``addHost``/``addLink``/``start``.
"""

from __future__ import annotations

import os
import pty
import select
import shlex
import sys
import time
import warnings
from dataclasses import field
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sim.errors import BackendError
from sim.fastclass import dataclass
from sim.net import mnclean
from sim.net.iptables import compile_router
from sim.net.shell import interactive_shell
from sim.topology.graph import LabNetwork, Segment

if TYPE_CHECKING:
    pass

__all__ = [
    "BRIDGE",
    "Plan",
    "bridge_script",
    "import_mininet",
    "interactive_shell",
    "mininet_classes",
    "node_script",
    "resolv_conf",
]

#: The bridge inside each bridge namespace.
BRIDGE = "br0"
#: The sentinel mininet's shells print as their prompt.
PROMPT = chr(127)


# -- mininet, imported fast ---------------------------------------------------------


def import_mininet() -> Any:
    """Import ``mininet.net`` (returns the module).

    ``mininet.node`` imports ``distutils.version`` (for Open vSwitch version
    checks this backend never makes). In a virtualenv, setuptools' shim (a
    meta path finder its ``distutils-precedence.pth`` installs at start-up)
    serves ``distutils`` from setuptools, which imports ``pkg_resources``:
    0.27 s, more than building a whole home-isp network. Python 3.11 still
    ships the standard library's ``distutils`` (a few ms): take that one while
    mininet imports, when nothing else has imported distutils yet.
    """
    if "mininet.net" in sys.modules:
        return sys.modules["mininet.net"]
    shims = [f for f in sys.meta_path if type(f).__name__ == "DistutilsMetaFinder"]
    if "distutils" in sys.modules:
        shims = []
    for finder in shims:
        sys.meta_path.remove(finder)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                import mininet.net
            except ModuleNotFoundError as err:
                if err.name != "distutils" or not shims:
                    raise
                sys.meta_path[0:0] = shims  # Python 3.12+: only setuptools has it
                shims = []
                import mininet.net
    finally:
        sys.meta_path[0:0] = shims
    return mininet.net


def mininet_classes() -> tuple[Any, Any, Any, Any]:
    """LabHost, QuietIntf, VethLink and Mininet, defined once mininet is imported."""
    global _CLASSES
    if _CLASSES is not None:
        return _CLASSES
    mnet = import_mininet()
    from mininet.link import Intf, Link
    from mininet.node import Host

    class LabHost(Host):  # type: ignore[misc]
        """A mininet host whose shell starts without waiting for its prompt,
        so that every node's shell starts at once (:meth:`finish_start`)."""

        env: ClassVar[dict[str, str] | None] = None

        def __init__(self, name: str, **params: Any) -> None:
            self.pending: list[str] = []
            super().__init__(name, **params)

        def startShell(self, mnopts: str | None = None) -> None:
            # mininet's Node.startShell, minus the wait; plus our environment
            # (MAILLAB_RUN marks every process started in the node).
            if getattr(self, "shell", None):
                return
            opts = "-cd" if mnopts is None else mnopts
            if self.inNamespace:
                opts += "n"
            cmd = [
                "mnexec",
                opts,
                "env",
                "PS1=" + PROMPT,
                "bash",
                "--norc",
                "--noediting",
                "-is",
                "mininet:" + self.name,
            ]
            self.master, self.slave = pty.openpty()
            self.shell = self._popen(
                cmd,
                stdin=self.slave,
                stdout=self.slave,
                stderr=self.slave,
                close_fds=False,
                env=self.env,
            )
            self.stdin = os.fdopen(self.master, "r")
            self.stdout = self.stdin
            self.pid = self.shell.pid
            self.pollOut = select.poll()
            self.pollOut.register(self.stdout)
            self.outToNode[self.stdout.fileno()] = self
            self.inToNode[self.stdin.fileno()] = self
            self.execed = False
            self.lastCmd = None
            self.lastPid = None
            self.readbuf = ""
            self.waiting = True

        def wait_prompt(self, deadline: float) -> None:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.pollOut.poll(int(remaining * 1000)):
                    raise BackendError(f"{self.name}: its shell did not start")
                data = self.read(1024)
                if data and data[-1] == PROMPT:
                    break
            self.waiting = False

    class QuietIntf(Intf):  # type: ignore[misc]
        """An interface the backend configures itself (one script per node)
        rather than with an ``ifconfig`` per setting."""

        def config(self, **params: Any) -> dict[str, Any]:
            return {}

    class VethLink(Link):  # type: ignore[misc]
        """A veth pair whose creation is queued in the first node's batch (run
        in every node at once); it disappears with its namespaces."""

        def makeIntfPair(
            self,
            intfname1: str,
            intfname2: str,
            addr1: Any = None,
            addr2: Any = None,
            node1: Any = None,
            node2: Any = None,
            deleteIntfs: bool = True,
        ) -> None:
            node1.pending.append(
                f"link add name {intfname1} type veth peer name {intfname2} netns {node2.pid}"
            )

        def stop(self) -> None:
            pass  # the pair goes with the namespaces; an `ip link del` each is slow

        def delete(self) -> None:
            pass

    _CLASSES = (LabHost, QuietIntf, VethLink, mnet.Mininet)
    return _CLASSES


_CLASSES: tuple[Any, Any, Any, Any] | None = None


# -- the plan: what to create ---------------------------------------------------------


@dataclass
class Plan:
    """The mininet nodes and veth pairs that realise a :class:`LabNetwork`."""

    run: str
    names: dict[str, str] = field(default_factory=dict)  # lab node → mininet name
    bridges: dict[str, list[str]] = field(default_factory=dict)  # bridge name → ports
    links: list[tuple[str, str, str, str]] = field(default_factory=list)
    dummies: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, network: LabNetwork, run: str) -> Plan:
        plan = cls(run)
        marker = mnclean.run_marker(run)
        for node in network.nodes():
            plan.names[node] = f"{marker}{node}"
        for seg in network.segments:
            ends = [(m, _ifname(network, m, seg)) for m in seg.members]
            if len(ends) == 1:
                plan.dummies.append((plan.names[ends[0][0]], ends[0][1]))
            elif len(ends) == 2:
                (a, ia), (b, ib) = ends
                plan.links.append((plan.names[a], ia, plan.names[b], ib))
            else:
                bridge = f"{marker}{seg.id}"
                plan.bridges[bridge] = []
                for index, (member, iface) in enumerate(ends):
                    port = f"p{index}"
                    plan.bridges[bridge].append(port)
                    plan.links.append((plan.names[member], iface, bridge, port))
        return plan

    def interfaces(self) -> list[dict[str, str]]:
        out = []
        for a, ia, b, ib in self.links:
            out.append({"node": a, "name": ia, "namespace": a})
            out.append({"node": b, "name": ib, "namespace": b})
        out += [{"node": n, "name": i, "namespace": n} for n, i in self.dummies]
        return out


def _ifname(network: LabNetwork, node: str, seg: Segment) -> str:
    return next(i.name for i in network.interfaces(node) if i.segment == seg.id)


# -- per-node configuration scripts ------------------------------------------------


def _sysctl(path: str, value: str) -> str:
    return f"echo {value} > /proc/sys/{path}"


def node_script(network: LabNetwork, node: str, resolv: Path | None) -> str:
    """The shell script that configures ``node`` inside its namespaces."""
    spec = network.node(node)
    router = spec.kind == "router"
    ip: list[str] = ["link set lo up"]
    for iface in network.interfaces(node):
        ip.append(f"addr add {iface.address} dev {iface.name}")
        ip.append(f"link set {iface.name} up")
    ip += [f"route add {route}" for route in network.routes(node)]
    lines = [
        "# maillab: configure " + node,
        _sysctl("net/ipv6/conf/all/disable_ipv6", "1"),  # the lab is IPv4 only
        _sysctl("net/ipv6/conf/default/disable_ipv6", "1"),
        _sysctl("net/ipv4/ip_forward", "1" if router else "0"),
        # Shortest paths are chosen per router, so a reply may come back by
        # another way: strict reverse-path filtering would drop it.
        "for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > $f; done",
    ]
    if router:
        # Every blocked or unroutable connection gets its ICMP answer at once.
        lines.append(_sysctl("net/ipv4/icmp_ratelimit", "0"))
    lines.append("ip -batch - <<'EOF'\n" + "\n".join(ip) + "\nEOF")
    if router:
        lines += [shlex.join(["iptables", "-w", *argv]) for argv in compile_router(network, node)]
    if resolv is not None:
        lines.append(shlex.join(["mount", "--bind", str(resolv), "/etc/resolv.conf"]))
    return "\n".join(lines) + "\n"


def bridge_script(ports: list[str]) -> str:
    ip = [f"link add {BRIDGE} type bridge"]
    for port in ports:
        ip += [f"link set {port} master {BRIDGE}", f"link set {port} up"]
    ip.append(f"link set {BRIDGE} up")
    return (
        "\n".join(
            [
                "# maillab: a LAN's bridge, in a namespace of its own",
                _sysctl("net/ipv6/conf/all/disable_ipv6", "1"),
                _sysctl("net/ipv6/conf/default/disable_ipv6", "1"),
                "ip -batch - <<'EOF'\n" + "\n".join(ip) + "\nEOF",
            ]
        )
        + "\n"
    )


def resolv_conf(node: str, resolver: IPv4Address | None) -> str:
    head = (
        f"# maillab: {node} asks the lab resolver (this file is bind-mounted over\n"
        "# /etc/resolv.conf in the node's mount namespace only)\n"
    )
    if resolver is None:
        return head + "# this topology has no resolver\nnameserver 127.0.0.1\n"
    return head + f"nameserver {resolver}\noptions timeout:2 attempts:2\n"
