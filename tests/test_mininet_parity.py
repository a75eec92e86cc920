"""Parity: every experiment the topologies and labs define gives the same
outcome on the local backend and on the mininet backend.

For each ``topologies/*.yaml``: a dig of every record the zones hold (from
the first host) and a connection from every host to every TCP service
(DNS, SMTP, submission, IMAP and POP3).
For each ``labs/*.yaml``: its experiment steps, in order, on its topology.
Compared: connect outcome, error and the router/rule that explains it; dig
rcode and answers; send outcome, stage and reply code; a mailbox read's
stage, the server's status and code where it stopped, and the subjects read. A DROP takes the lab's
connect time-out on both (scaled by the lab clock: real waiting on mininet).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from labsets import runs_on, topology_hostable
from mininet_support import needs_mininet

import sim
from sim.experiments import Connect, Dig, Experiment
from sim.services.mailbox import IMAP_PORTS, POP3_PORTS
from sim.topology.graph import build_network
from sim.topology.model import Topology
from sim.topology.zones import parse_zone

pytestmark = needs_mininet

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = sorted((ROOT / "topologies").glob("*.yaml"))
LABS = sorted((ROOT / "labs").glob("*.yaml"))


def topology_experiments(topology: Topology) -> list[tuple[str, Experiment]]:
    network = build_network(topology)
    hosts = [n for n in network.nodes() if network.node(n).kind == "host"]
    out: list[tuple[str, Experiment]] = []
    asker = hosts[0]
    for origin, text in topology.zones:
        seen = set()
        for rr in parse_zone(origin, text):
            key = (str(rr.rname), str(rr.rtype))
            import dnslib

            rtype = dnslib.QTYPE[rr.rtype]
            if (key[0], rtype) not in seen:
                seen.add((key[0], rtype))
                out.append((asker, Dig(name=key[0], type=rtype)))
        out.append((asker, Dig(name=f"nonexistent.{origin}", type="A")))
    ports = sorted(
        {
            (node.ip.ip, port)
            for node in topology.hosts()
            if node.ip is not None
            for port in _service_ports(node)
        }
    )
    for host in hosts:
        for address, port in ports:
            # Only 25 and 587 greet in clear (DNS over TCP waits to be asked, 465
            # starts with TLS): read a banner there only.
            out.append((host, Connect(host=str(address), port=port, read_banner=port in (25, 587))))
    return out


def _service_ports(node: Any) -> list[int]:
    services = node.services
    ports = []
    if services.dns is not None or services.dnsbl is not None:
        ports.append(53)
    if services.mx is not None:
        ports.append(25)
    if services.submission is not None:
        ports.extend(services.submission.ports)
    if services.mailbox is not None:
        ports.extend((*IMAP_PORTS, *POP3_PORTS))
    return ports


def lab_experiments(path: Path) -> tuple[Path, list[tuple[str, Experiment]]]:
    from sim.lab.loader import load_lab, topology_path
    from sim.lab.model import ExperimentStep

    lab = load_lab(path)
    out: list[tuple[str, Experiment]] = []
    for step in lab.steps:
        if isinstance(step, ExperimentStep) and step.run is not None:
            out.append((step.run.node, step.run.experiment()))
    return topology_path(path, lab.topology), out


def summary(result: Any) -> dict[str, Any]:
    data = result.to_json()
    kind = type(result).__name__
    if kind == "ConnectResult":
        verdict = data.get("verdict") or {}
        return {
            "outcome": data["outcome"],
            "error": data["error"],
            "router": verdict.get("router"),
            "rule": verdict.get("rule"),
            "greeted": bool(data.get("banner")),
        }
    if kind == "DigResult":
        return {
            "rcode": data["rcode"],
            "answers": sorted((a["name"], a["type"], str(a["data"])) for a in data["answers"]),
        }
    if kind == "ReadResult":
        reply = data.get("reply") or {}
        return {
            "stage": data.get("stage"),
            "status": reply.get("status"),
            "code": reply.get("code"),
            "subjects": sorted(str(m.get("subject")) for m in data["messages"]),
        }
    reply = data.get("reply") or {}
    return {"outcome": data.get("outcome"), "stage": data.get("stage"), "code": reply.get("code")}


def run_all(
    topology: Topology, backend: str, experiments: list[tuple[str, Experiment]]
) -> list[dict[str, Any]]:
    with sim.start(topology, backend=backend) as lab:
        return [summary(lab.run(node, experiment)) for node, experiment in experiments]


def _cases() -> Iterator[Any]:
    # Parity needs both backends: a topology with real Postfix or Dovecot (and
    # a lab that says `backends: [mininet]`) has nothing to compare on local;
    # tests/test_mininet_postfix.py compares those with maillab's services.
    # A topology or lab the local backend cannot host (real Postfix and
    # Dovecot) has no local run to compare: left out, not skipped.
    for path in TOPOLOGIES:
        if topology_hostable(path, "local"):
            yield pytest.param(path, None, id=f"topology-{path.stem}")
    for path in LABS:
        if runs_on(path, "local"):
            yield pytest.param(None, path, id=f"lab-{path.stem}")


@pytest.mark.parametrize(("topology_file", "lab_file"), list(_cases()))
def test_same_outcomes_on_both_backends(topology_file: Path | None, lab_file: Path | None) -> None:
    if lab_file is not None:
        topology_file, experiments = lab_experiments(lab_file)
        topology = sim.load_topology(topology_file)
    else:
        assert topology_file is not None
        topology = sim.load_topology(topology_file)
        experiments = topology_experiments(topology)
    assert experiments, "nothing to compare"
    local = run_all(topology, "local", experiments)
    mininet = run_all(topology, "mininet", experiments)
    differences = [
        f"{node} {experiment.to_json()}: local {a} / mininet {b}"
        for (node, experiment), a, b in zip(experiments, local, mininet, strict=True)
        if a != b
    ]
    assert not differences, "\n".join(differences)
