"""The same mistake reads the same in a topology file and in a lab file: both
formats take their words from sim.spec (values, paths, unknown keys) and read
files through one function."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.errors import Problem
from sim.spec.words import path_text
from sim.validation import validate_path

ROOT = Path(__file__).resolve().parent.parent
#: A valid topology: the mistakes below are made in a copy of it.
TOPOLOGY = """\
name: t
settings: {resolver: 192.0.2.53}
nodes:
  internet: {kind: router}
  ns:
    kind: host
    ip: 192.0.2.53/24
    gateway: internet
    services: {dns: {zones: [t.example]}}
zones:
  t.example: |
    @ A 192.0.2.53
"""

LAB = """\
id: l
title: A lab
topology: TOPOLOGY_PATH
estimated_time: 5m
goals: [Read]
steps:
  - id: read
    kind: explain
    title: One page
    text: Nothing to do but read.
"""


def problems(tmp_path: Path, name: str, text: str) -> list[Problem]:
    path = tmp_path / name
    topology = ROOT / "topologies" / "receive-only.yaml"
    path.write_text(text.replace("TOPOLOGY_PATH", str(topology)))
    return validate_path(path)


def messages(tmp_path: Path, topology: str, lab: str) -> tuple[str, str]:
    """The one problem of each file, without its path prefix."""
    (topo_problem,) = problems(tmp_path, "t.yaml", topology)
    (lab_problem,) = problems(tmp_path, "l.yaml", lab)
    return topo_problem.message, lab_problem.message


def test_the_files_without_mistakes_are_valid(tmp_path: Path) -> None:
    assert problems(tmp_path, "t.yaml", TOPOLOGY) == []
    assert problems(tmp_path, "l.yaml", LAB) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("true", "expected text, got true (a boolean) (quote it to make it text)"),
        ("42", "expected text, got the number 42 (quote it to make it text)"),
        ("[a, b]", "expected text, got a list"),
    ],
)
def test_a_title_that_is_not_text(tmp_path: Path, value: str, message: str) -> None:
    topo, lab = messages(
        tmp_path,
        TOPOLOGY.replace("name: t\n", f"name: t\ntitle: {value}\n"),
        LAB.replace("title: A lab", f"title: {value}"),
    )
    assert topo == lab == f"title: {message}"


def test_a_misspelt_key_at_the_top_level(tmp_path: Path) -> None:
    topo, lab = messages(
        tmp_path,
        TOPOLOGY.replace("name: t\n", "name: t\ntitel: x\n"),
        LAB.replace("title: A lab\n", "title: A lab\ntitel: x\n"),
    )
    said = "unknown key 'titel' in the top level (did you mean 'title'?); allowed keys: "
    assert topo.startswith(said) and lab.startswith(said)


def test_a_key_with_dots_is_quoted_in_the_path(tmp_path: Path) -> None:
    """A zone name and a header name are keys, not nesting."""
    (topo_problem,) = problems(
        tmp_path,
        "t.yaml",
        TOPOLOGY.replace("  t.example: |\n    @ A 192.0.2.53\n", "  t.example: [1]\n"),
    )
    topo = topo_problem.message
    lab_text = LAB.replace(
        "    kind: explain\n    title: One page\n    text: Nothing to do but read.\n",
        "    kind: experiment\n    title: Send\n"
        "    run: {send: {from: mx-qq, to: a@b.example, headers: {X-Lab.a: [1]}}}\n",
    )
    lab_problem = next(p for p in problems(tmp_path, "l.yaml", lab_text) if "headers" in p.message)
    assert topo.startswith('zones["t.example"]: expected ')
    assert lab_problem.message.startswith('steps[0].run.send.headers["X-Lab.a"]: expected text')


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "is a directory, not a YAML file"),
        (b"\x00\x01", "a binary file (it contains NUL bytes), not a YAML file"),
        (b"name: caf\xe9\n", "not UTF-8 text: byte 0xe9 cannot be decoded; save the file as UTF-8"),
    ],
)
def test_a_file_that_cannot_be_read(tmp_path: Path, content: bytes | None, message: str) -> None:
    said = []
    for name in ("t.yaml", "l.yaml"):
        path = tmp_path / name
        if content is None:
            path.mkdir()
        else:
            path.write_bytes(content)
        (problem,) = validate_path(path)
        said.append(problem.message)
    assert said == [message, message]


# -- the same mistake in both formats: one engine, one message -----------------------


def one(problems: list[Problem], where: str) -> str:
    """The message of the one problem about ``where``, without the key path."""
    (found,) = [p for p in problems if p.message.startswith(f"{where}: ")]
    return found.message[len(where) + 2 :]


EXPERIMENT = LAB.replace(
    "    kind: explain\n    title: One page\n    text: Nothing to do but read.\n",
    "    kind: experiment\n    title: Read\n"
    "    run: {read: {from: mta, via: mx-qq, user: bob, password: x, READ}}\n",
)
MX = TOPOLOGY.replace(
    "services: {dns: {zones: [t.example]}}",
    "services: {dns: {zones: [t.example]}, mx: {domains: [t.example], MX}}",
)


def both(tmp_path: Path, topology: str, lab: str) -> tuple[list[Problem], list[Problem]]:
    return problems(tmp_path, "t.yaml", topology), problems(tmp_path, "l.yaml", lab)


def test_a_word_where_a_boolean_is_expected(tmp_path: Path) -> None:
    """``tls: yes`` was a boolean in YAML 1.1; YAML 1.2 reads it as text."""
    topo, lab = both(tmp_path, MX.replace("MX", "tls: yes"), EXPERIMENT.replace("READ", "tls: yes"))
    said = "expected true or false, got text 'yes' (YAML 1.2 reads only true and false as booleans)"
    assert one(topo, "nodes.ns.services.mx.tls") == said
    assert one(lab, "steps[0].run.read.tls") == said


def test_a_misspelt_key_in_a_nested_mapping(tmp_path: Path) -> None:
    topo, lab = both(
        tmp_path, MX.replace("MX", "tsl: true"), EXPERIMENT.replace("READ", "tsl: true")
    )
    topo_said = one(topo, "nodes.ns.services.mx")
    lab_said = one(lab, "steps[0].run.read")
    assert topo_said.startswith("unknown key 'tsl' in a mx (did you mean 'tls'?); allowed keys: ")
    assert lab_said.startswith("unknown key 'tsl' in a Read (did you mean 'tls'?); allowed keys: ")


def test_a_missing_required_key(tmp_path: Path) -> None:
    """The key, and what it should hold."""
    topo, lab = both(
        tmp_path,
        MX.replace("mx: {domains: [t.example], MX}", "mx: {tls: true}"),
        LAB.replace("goals: [Read]\n", ""),
    )
    assert one(topo, "nodes.ns.services.mx") == "missing key 'domains' (a list)"
    (lab_problem,) = lab
    assert lab_problem.message == "missing key 'goals' (a list)"


def test_a_word_that_is_not_one_of_the_choices(tmp_path: Path) -> None:
    topo, lab = both(
        tmp_path,
        MX.replace("MX", "dmarc_discovery: treewalks"),
        LAB.replace("goals: [Read]\n", "goals: [Read]\ndns_cache: flsh\n"),
    )
    assert one(topo, "nodes.ns.services.mx.dmarc_discovery") == (
        "'treewalks' is not one of: treewalk, psl (did you mean 'treewalk'?)"
    )
    assert one(lab, "dns_cache") == "'flsh' is not one of: flush, ttl (did you mean 'flush'?)"


def test_a_key_with_no_value(tmp_path: Path) -> None:
    topo, lab = both(
        tmp_path,
        TOPOLOGY.replace("name: t\n", "name: t\ntitle:\n"),
        LAB.replace("title: A lab\n", "title: A lab\ndescription:\n"),
    )
    assert one(topo, "title") == one(lab, "description") == "no value: expected text"


def test_an_item_under_a_quoted_key_is_indexed_after_the_quotes(tmp_path: Path) -> None:
    """One rendering of a place: ``zones["qq.example"][2]``, never ``zones.qq.example[2]``."""
    assert path_text(("zones", "qq.example", 2)) == 'zones["qq.example"][2]'
    topo, lab = both(
        tmp_path,
        MX.replace("MX", "forward: {a.b: 5}"),
        EXPERIMENT.replace(
            "read: {from: mta, via: mx-qq, user: bob, password: x, READ}",
            "send: {from: mta, to: [a@b.example, 5]}",
        ),
    )
    assert one(topo, 'nodes.ns.services.mx.forward["a.b"]').startswith("expected a mail address")
    assert one(lab, "steps[0].run.send.to[1]").startswith("expected text, got the number 5")


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("# nothing yet\n", "the file is empty (nothing but comments or blank lines): "),
        ("- a\n- b\n", "the top level must be a mapping of keys ("),
    ],
)
def test_a_file_that_is_not_a_mapping(tmp_path: Path, text: str, said: str) -> None:
    (topo,), (lab,) = both(tmp_path, text, text)
    assert topo.message.startswith(said) and lab.message.startswith(said)
    assert topo.message.endswith("not a list") == lab.message.endswith("not a list")


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("name: x\nname: y\n", "duplicate key 'name' (first on line 1); the first value is used"),
        ("name: [a, b\n", "not valid YAML: expected ',' or ']'"),
    ],
)
def test_yaml_mistakes_read_the_same(tmp_path: Path, text: str, said: str) -> None:
    """Both formats read YAML through sim.spec.yamlpos.parse_yaml."""
    topo, lab = both(tmp_path, text, text)
    assert any(p.message.startswith(said) for p in topo), topo
    assert any(p.message.startswith(said) for p in lab), lab
