"""``maillab new topology`` and ``maillab new lab``: files that work as written.

A new topology validates; a new lab (with the topology it scaffolds, or on
an existing one) validates and passes ``maillab check`` with no edits.
Nothing is overwritten; bad names and unsuitable topologies are one line on
stderr and exit status 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sim
from sim.cli import main
from sim.lab.loader import load_lab
from sim.scaffold import ScaffoldError, find_roles, new_lab, new_topology
from sim.validation import validate_path

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """An instructor's repository: labs/ and topologies/ side by side."""
    (tmp_path / "labs").mkdir()
    (tmp_path / "topologies").mkdir()
    return tmp_path


def check_json(lab: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    code = main(["check", str(lab), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    return dict(report)


def test_new_topology_validates_and_describes_a_working_cast(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["new", "topology", "demo", "--dir", str(tree / "topologies")])
    assert code == 0
    path = tree / "topologies" / "demo.yaml"
    assert f"wrote {path}" in capsys.readouterr().out
    assert validate_path(path) == []
    topology = sim.load_topology(path)
    assert topology.name == "demo"
    roles = find_roles(topology)
    assert (roles.sender, roles.mx_node, roles.dns_node) == ("mta", "mx", "ns")
    assert roles.rcpt == "bob@qq.example" and roles.sender_domain == "example.net"
    assert main(["validate", str(path)]) == 0


def test_new_lab_scaffolds_its_topology_and_passes_check(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["new", "lab", "11-first-steps", "--dir", str(tree / "labs")])
    assert code == 0
    lab_path = tree / "labs" / "11-first-steps.yaml"
    topo_path = tree / "topologies" / "first-steps.yaml"
    assert lab_path.is_file() and topo_path.is_file()
    # The curriculum's strict rules apply in a directory named labs.
    assert validate_path(lab_path) == [] and validate_path(topo_path) == []
    lab = load_lab(lab_path)
    assert lab.id == "first-steps" and lab.topology == "first-steps"
    kinds = [step.kind for step in lab.steps]
    assert {"explain", "experiment", "question", "task"} <= set(kinds)
    task = next(step for step in lab.steps if step.kind == "task")
    assert task.hints and task.solution and task.checks  # type: ignore[attr-defined]
    report = check_json(lab_path, capsys)
    assert report["passed"] is True
    (entry,) = report["labs"]  # type: ignore[misc]
    assert all(step["passed"] for step in entry["steps"])


def test_new_lab_on_an_existing_scaffolded_topology(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new_topology("shared", tree / "topologies")
    before = (tree / "topologies" / "shared.yaml").read_text()
    written = new_lab("spf-again", tree / "labs", topology="shared")
    assert written == [tree / "labs" / "spf-again.yaml"]
    assert (tree / "topologies" / "shared.yaml").read_text() == before
    assert check_json(written[0], capsys)["passed"] is True


HAND_WRITTEN = """\
name: handmade
settings: {time_scale: 60, resolver: 198.51.100.9, outside: core}
nodes:
  core: {kind: router}
  dns1:
    kind: host
    ip: 198.51.100.9/24
    gateway: core
    services: {dns: {zones: [a.test, b.test]}}
  inbound:
    kind: host
    ip: 203.0.113.7/24
    gateway: core
    services:
      mx: {domains: [b.test], mailboxes: [carol], hostname: in.b.test, checks: {spf: reject}}
  sender1: {kind: host, ip: 192.0.2.77/24, gateway: core}
zones:
  a.test: |
    out      A    192.0.2.77
  b.test: |
    @        MX   5 in
    in       A    203.0.113.7
"""


def test_new_lab_reads_roles_from_a_hand_written_topology(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tree / "topologies" / "handmade.yaml").write_text(HAND_WRITTEN)
    roles = find_roles(sim.load_topology(tree / "topologies" / "handmade.yaml"))
    assert (roles.sender, roles.dns_node, roles.mx_node) == ("sender1", "dns1", "inbound")
    assert (roles.sender_domain, roles.rcpt, roles.mx_host) == (
        "a.test",
        "carol@b.test",
        "in.b.test",
    )
    (lab_path,) = new_lab("handmade-spf", tree / "labs", topology="handmade")
    assert validate_path(lab_path) == []
    assert check_json(lab_path, capsys)["passed"] is True


def test_refuses_to_overwrite(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    topo = tree / "topologies" / "mine.yaml"
    topo.write_text("# my own work\n")
    assert main(["new", "topology", "mine", "--dir", str(tree / "topologies")]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "Traceback" not in err
    assert topo.read_text() == "# my own work\n"

    lab = tree / "labs" / "mine.yaml"
    lab.write_text("# my lab\n")
    (tree / "topologies" / "mine.yaml").unlink()
    assert main(["new", "lab", "mine", "--dir", str(tree / "labs")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert lab.read_text() == "# my lab\n"
    # Refused before anything was written: no topology either.
    assert not (tree / "topologies" / "mine.yaml").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["new", "topology", "Demo"],
        ["new", "topology", "9lives"],
        ["new", "topology", "../escape"],
        ["new", "topology", "a b"],
        ["new", "topology", ""],
        ["new", "topology", "x" * 64],
        ["new", "lab", "Intro"],
        ["new", "lab", "labs/intro"],
        ["new", "lab", "intro", "--topology", "Not-A-Name"],
        ["new", "lab", "12-"],
        ["new"],
        ["new", "lab"],
        ["new", "widget", "x"],
    ],
)
def test_bad_names_exit_2_with_one_line(
    argv: list[str], tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = ["--dir", str(tree / ("labs" if "lab" in argv else "topologies"))]
    code = main(argv + (where if len(argv) > 2 else []))
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert list(tree.rglob("*.yaml")) == []


def test_an_unsuitable_topology_is_refused_with_the_reason(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # receive-only's MX runs no SPF check: the lab's task could never pass.
    source = ROOT / "topologies" / "receive-only.yaml"
    (tree / "topologies" / "receive-only.yaml").write_text(source.read_text())
    code = main(["new", "lab", "x", "--topology", "receive-only", "--dir", str(tree / "labs")])
    err = capsys.readouterr().err
    assert code == 2 and "spf" in err
    assert not (tree / "labs" / "x.yaml").exists()
    # home-isp's one plain host, the laptop, is behind the port-25 block.
    with pytest.raises(ScaffoldError, match="no host that can be the lab's sender"):
        find_roles(sim.load_topology(ROOT / "topologies" / "home-isp.yaml"))
