"""The mininet backend on topologies/home-isp.yaml: real namespaces, real tools.

One lab for the whole module (a start costs about a second); every test only
reads it or starts and stops its own processes inside it.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, ip_interface
from pathlib import Path

import pytest
from mininet_support import needs_mininet

import sim
from sim.errors import BackendError
from sim.experiments import Connect, ConnectResult, Dig, DigResult
from sim.hosting.mininet import MininetBackend
from sim.net.iptables import compile_router
from sim.net.shell import LabShell

pytestmark = needs_mininet

ROOT = Path(__file__).resolve().parent.parent
HOME_ISP = ROOT / "topologies" / "home-isp.yaml"


@pytest.fixture(scope="module")
def lab() -> Iterator[sim.Lab]:
    topology = sim.load_topology(HOME_ISP)
    with sim.start(topology, backend="mininet") as running:
        yield running


@pytest.fixture(scope="module")
def backend(lab: sim.Lab) -> MininetBackend:
    assert isinstance(lab.backend, MininetBackend)
    return lab.backend


@pytest.fixture(scope="module")
def shell(backend: MininetBackend) -> LabShell:
    return LabShell(backend)


def test_every_host_has_an_agent_and_services_answer(backend: MininetBackend) -> None:
    endpoints = {(e.node, e.service, e.proto, e.lab) for e in backend.endpoints()}
    assert ("ns", "dns", "udp", "198.51.100.53:53") in endpoints
    assert ("mx-qq", "mx", "tcp", "203.0.113.25:25") in endpoints
    assert ("smtp-isp", "submission", "tcp", "192.0.2.25:587") in endpoints
    assert all(e.local is None for e in backend.endpoints())  # reach nodes from their shells


def test_dig_mx_from_laptop_answers_from_lab_dns(lab: sim.Lab) -> None:
    result = lab.dig("laptop", "qq.example", "MX")
    assert result.rcode == "NOERROR"
    assert [a["data"] for a in result.answers] == ["10 mx.qq.example."]
    assert result.server == "198.51.100.53"
    assert any(e.kind == "dns" and e.node == "ns" for e in result.trace)


def test_port_25_times_out_at_the_isp_rule(lab: sim.Lab) -> None:
    topology = lab.topology
    start = time.monotonic()
    result = lab.run("laptop", Connect(host="mx.qq.example", port=25))
    elapsed = time.monotonic() - start
    assert isinstance(result, ConnectResult)
    assert (result.outcome, result.error) == ("blocked", "timeout")
    assert result.verdict is not None
    assert (result.verdict["router"], result.verdict["rule"]) == ("isp", 0)
    # The SYN really vanished: the client waited the lab's connect time-out.
    expected = topology.settings.connect_timeout / topology.settings.time_scale
    assert expected * 0.9 <= elapsed < expected + 2.0
    observed = [e.data.get("observed") for e in result.trace if e.kind == "net"]
    assert "timeout" in observed


def test_port_587_on_the_mx_connects_past_the_isp(backend: MininetBackend) -> None:
    # Nothing listens on mx-qq:587: put a listener there (inside its namespace).
    code = (
        "import socket,sys;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,"
        "socket.SO_REUSEADDR,1);s.bind(('203.0.113.25',587));s.listen();"
        "print('up',flush=True);c,_=s.accept();c.sendall(b'220 test listener\\r\\n');"
        "c.close()"
    )
    listener = backend.popen(
        "mx-qq", [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
    )
    try:
        assert listener.stdout is not None
        assert listener.stdout.readline().strip() == "up"
        result = backend.run("laptop", Connect(host="203.0.113.25", port=587))
        assert isinstance(result, ConnectResult)
        assert result.outcome == "connected"
        assert result.banner == "220 test listener"
    finally:
        listener.kill()
        listener.wait()


def test_real_dig_inside_laptop_uses_the_lab_resolver(shell: LabShell) -> None:
    out = shell.run("laptop", "dig +short +time=2 +tries=1 MX qq.example", capture=True)
    assert out.stdout.split() == ["10", "mx.qq.example."]
    conf = shell.run("laptop", "cat /etc/resolv.conf", capture=True).stdout
    assert "nameserver 198.51.100.53" in conf
    # The machine's own resolver configuration is untouched.
    assert "198.51.100.53" not in Path("/etc/resolv.conf").read_text()


def test_iptables_on_the_isp_router_shows_the_compiled_rules(
    backend: MininetBackend, shell: LabShell
) -> None:
    listing = shell.run("isp", "iptables -w -S", capture=True).stdout.splitlines()
    compiled = [shlex.join(argv) for argv in compile_router(backend.network, "isp")]
    normalised = [shlex.join(shlex.split(line)) for line in listing]
    for rule in compiled:
        if rule.startswith("-A"):
            assert rule in normalised
    assert any("maillab:home-isp:rule1" in line and "-j DROP" in line for line in listing)
    # Hosts and the other router have no maillab rules; the root namespace neither.
    assert "maillab:" not in shell.run("laptop", "iptables -w -S", capture=True).stdout
    root = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True).stdout
    assert "maillab:home-isp" not in root


def test_swaks_from_the_shell(lab: sim.Lab, shell: LabShell) -> None:
    blocked = shell.run(
        "laptop",
        "swaks --to bob@qq.example --from alice@home.example "
        "--server mx.qq.example --port 25 --timeout 1",
        capture=True,
    )
    assert blocked.returncode != 0
    assert "timeout" in blocked.stdout + blocked.stderr
    before = len(lab.mailbox("bob@qq.example"))
    sent = shell.run(
        "laptop",
        "swaks --to bob@qq.example --from alice@home.example "
        "--server smtp.home.example --port 587 --tls --tls-verify "
        '--tls-ca-path "$MAILLAB_CA" --auth LOGIN --auth-user alice@home.example '
        "--auth-password secret --timeout 5",
        capture=True,
    )
    assert sent.returncode == 0, sent.stdout[-500:]
    assert "EHLO laptop" in sent.stdout  # the command's own hostname
    deadline = time.monotonic() + 15
    while len(lab.mailbox("bob@qq.example")) <= before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(lab.mailbox("bob@qq.example")) == before + 1


def _probe(shell: LabShell, node: str, targets: list[tuple[str, int]]) -> dict[str, str]:
    """Connect from inside ``node`` with plain sockets (not the lab's NodeNet,
    which refuses non-lab addresses before sending anything)."""
    code = f"""
import json, socket, threading
targets = {targets!r}
out = {{}}
def go(host, port):
    s = socket.socket(); s.settimeout(4)
    try:
        s.connect((host, port)); out[host] = "connected"
    except OSError as err:
        out[host] = type(err).__name__ + ": " + str(err)
    finally:
        s.close()
threads = [threading.Thread(target=go, args=t) for t in targets]
[t.start() for t in threads]; [t.join() for t in threads]
print(json.dumps(out))
"""
    run = shell.run(node, f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}", capture=True)
    result: dict[str, str] = json.loads(run.stdout)
    return result


def _machine_address() -> str:
    out = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "scope", "global"], capture_output=True, text=True
    ).stdout
    for line in out.split("\n"):
        fields = line.split()
        if "inet" in fields:
            return str(ip_interface(fields[fields.index("inet") + 1]).ip)
    pytest.skip("the machine has no global IPv4 address to try")


def test_nothing_routes_out_of_the_lab(backend: MininetBackend, shell: LabShell) -> None:
    machine = _machine_address()
    outside_lab = "100.127.255.200"  # shared address space, in no lab network
    assert not backend.network.in_lab(outside_lab)
    assert not backend.network.in_lab(machine)
    results = _probe(shell, "laptop", [(outside_lab, 80), (machine, 22), ("192.0.2.200", 25)])
    for target, outcome in results.items():
        assert outcome != "connected", target
    # The lab's own experiment refuses to send at all, and says why.
    lab_result = backend.run("laptop", Connect(host=machine, port=22))
    assert isinstance(lab_result, ConnectResult)
    assert (lab_result.outcome, lab_result.error) == ("blocked", "unreachable")


def test_routers_run_no_experiments_and_unknown_nodes_are_named(backend: MininetBackend) -> None:
    with pytest.raises(BackendError, match="isp is a router"):
        backend.run("isp", Dig(name="qq.example"))
    with pytest.raises(sim.SimError, match="nope"):
        backend.run("nope", Dig(name="qq.example"))


def test_clock_and_lab_log_are_shared(lab: sim.Lab) -> None:
    before = lab.now()
    lab.advance("2h")
    assert lab.now() >= before + 7200
    result = lab.dig("outside", "home.example", "MX")
    assert isinstance(result, DigResult)
    assert result.trace.events and all(e.t >= before + 7200 for e in result.trace)
    assert any(e.kind == "dns" for e in lab.trace())


def test_control_reaches_the_service(lab: sim.Lab) -> None:
    lab.control("ns", "dns", "add", zone="qq.example", text="lab-task A 203.0.113.99")
    result = lab.dig("laptop", "lab-task.qq.example", "A")
    assert [a["data"] for a in result.answers] == ["203.0.113.99"]
    assert IPv4Address(result.answers[0]["data"]) in ip_interface("203.0.113.0/24").network
