"""Per-student variants (issue 16 §1): draws, substitution in the lab and its
topology, validation of every variant, ``maillab check --variants``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from mininet_support import needs_mininet

from sim.cli import main
from sim.lab.draw import draw_choice, draw_index
from sim.lab.engine import LabSession, run_reference
from sim.lab.loader import lab_topology, load_lab, validate_lab_file
from sim.lab.model import QuestionStep, TaskStep
from sim.lab.variants import Variable, draw_values, substitute, topology_text
from sim.lab.variants_check import variant_problems, variant_students, variants

ROOT = Path(__file__).resolve().parents[1]
LABS = ROOT / "labs"
DKIM = LABS / "06-dkim.yaml"
RECEIVE = LABS / "01-receive-only.yaml"


def _students_with_different(path: Path, name: str) -> tuple[str, str, str, str]:
    """Two students whose values of ``name`` differ, and the values."""
    seen: dict[str, str] = {}
    for i in range(50):
        student = f"s{i}"
        value = dict(load_lab(path, student=student).values)[name]
        for other, theirs in seen.items():
            if theirs != value:
                return other, theirs, student, value
        seen[student] = value
    raise AssertionError("every student drew the same value")


# -- draws ---------------------------------------------------------------------------


def test_a_draw_depends_on_student_lab_and_name_only() -> None:
    assert draw_index("alice", "dkim", "selector", 8) == draw_index("alice", "dkim", "selector", 8)
    drawn = {draw_choice(f"student-{i}", "dkim", "selector", "abcdefgh") for i in range(40)}
    assert len(drawn) >= 5  # students differ
    by_lab = {draw_index("alice", lab, "selector", 1000) for lab in ("dkim", "spf", "dmarc")}
    assert len(by_lab) == 3


def test_values_of_every_kind_are_drawn_in_their_range() -> None:
    variables = (
        Variable("n", "number", (10, 12)),
        Variable("ip", "address", "203.0.113.64/30"),
        Variable("pw", "password", 12),
        Variable("site", "value", "shop${n}.example"),
    )
    values = draw_values(variables, "alice", "lab")
    assert values["n"] in {"10", "11", "12"}
    assert values["ip"] in {"203.0.113.65", "203.0.113.66"}  # not the network nor broadcast
    assert len(values["pw"]) == 12 and values["pw"].isalnum()
    assert values["site"] == f"shop{values['n']}.example"
    assert draw_values(variables, "alice", "lab") == values


# -- substitution ------------------------------------------------------------------------


def test_a_student_variant_changes_text_answers_checks_solution_and_topology() -> None:
    a, a_sel, b, b_sel = _students_with_different(DKIM, "selector")
    for student, selector in ((a, a_sel), (b, b_sel)):
        lab = load_lab(DKIM, student=student)
        question = lab.step("where-is-the-key")
        assert isinstance(question, QuestionStep)
        assert question.accept[0] == f"{selector}._domainkey.home.example"
        task = lab.step("publish-key")
        assert isinstance(task, TaskStep)
        assert task.solution[0].args["selector"] == selector
        assert f"s={selector}" in lab.step("how-dkim-works").text
        relay = lab_topology(lab).node("smtp-isp").services.relay
        assert relay is not None and dict(relay.dkim)["home.example"] == selector


def test_the_default_variant_is_the_file_as_written() -> None:
    lab = load_lab(DKIM)
    assert dict(lab.values) == {"selector": "mail2026"} and lab.student is None


def test_a_session_runs_its_students_variant() -> None:
    _, _, b, b_sel = _students_with_different(DKIM, "selector")
    session = LabSession(load_lab(DKIM), student=b)
    assert session.student == b
    assert dict(session.definition.values)["selector"] == b_sel
    relay = session.topology.node("smtp-isp").services.relay
    assert relay is not None and dict(relay.dkim)["home.example"] == b_sel


def test_the_topology_replaces_whole_names_only() -> None:
    variables = (Variable("shop", "choice", ("a", "b"), default="shop.example"),)
    text = "zones: [shop.example, myshop.example]\nmx: mail.shop.example\n"
    out = topology_text(text, variables, {"shop": "cafe.example"})
    assert out == "zones: [cafe.example, myshop.example]\nmx: mail.cafe.example\n"


def test_an_unknown_variable_is_a_problem_at_its_line() -> None:
    _text, problems = substitute("a: 1\nb: x${selectr}y\n", {"selector": "k"}, "lab.yaml")
    (problem,) = problems
    assert (problem.line, problem.col) == (2, 5)
    assert "selectr" in problem.message and "selector" in problem.message
    assert substitute("c: $${x}", {}, "f")[0] == "c: ${x}"


def _lab_copy(tmp_path: Path, edit: tuple[str, str] | None = None) -> Path:
    (tmp_path / "labs").mkdir()
    (tmp_path / "topologies").mkdir()
    shutil.copy(ROOT / "topologies" / "receive-only.yaml", tmp_path / "topologies")
    text = RECEIVE.read_text(encoding="utf-8")
    if edit is not None:
        assert edit[0] in text
        text = text.replace(edit[0], edit[1], 1)
    path = tmp_path / "labs" / RECEIVE.name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_default_written_literally_in_the_text_is_a_problem(tmp_path: Path) -> None:
    path = _lab_copy(
        tmp_path, ("Send a message to\n      info@${shop}", "Send to info@shop.example")
    )
    (problem,) = validate_lab_file(path)
    assert "'shop.example' is the default of the variable shop" in problem.message
    assert "${shop}" in problem.message


def test_a_variable_needs_exactly_one_kind(tmp_path: Path) -> None:
    path = _lab_copy(
        tmp_path,
        ("    address: 203.0.113.64/27\n", "    number: 1-3\n    address: 203.0.113.64/27\n"),
    )
    (problem,) = validate_lab_file(path)
    assert "variables.web_ip: needs exactly one of" in problem.message


# -- every variant -------------------------------------------------------------------------


def test_a_failing_variant_names_the_student_and_values(tmp_path: Path) -> None:
    # One choice is not a domain name: the default loads, that variant does not.
    path = _lab_copy(tmp_path, ("cafe.example", '"cafe example"'))
    assert validate_lab_file(path) == []
    problems = variant_problems(path)
    assert problems, "the broken variant was not found"
    message = problems[0].message
    assert message.startswith("variant of student-")
    assert "shop=cafe example" in message and "is not a domain name" in message


def test_validate_reads_every_variant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _lab_copy(tmp_path, ("cafe.example", '"cafe example"'))
    assert main(["validate", str(path)]) == 2
    out = capsys.readouterr()
    assert "variant of student-" in out.out + out.err
    assert "shop=cafe example" in out.out + out.err


def test_few_values_are_all_read_many_are_sampled() -> None:
    dkim = list(variants(load_lab(DKIM)))
    assert [values["selector"] for _, values in dkim] == list(load_lab(DKIM).variables[0].spec)
    receive = list(variants(load_lab(RECEIVE)))  # 8 domains × 30 addresses: sampled
    assert [student for student, _ in receive] == variant_students(16)


def test_every_shipped_variant_is_valid() -> None:
    for path in sorted(LABS.glob("*.yaml")):
        assert variant_problems(path, sample=4) == [], path.name


def test_the_reference_solution_passes_for_several_students() -> None:
    # CI's variant check on the local backend: every lab with variables,
    # two students each (small N: each run starts a lab).
    for path in sorted(LABS.glob("*.yaml")):
        lab = load_lab(path)
        if not lab.variables:
            continue
        for student in variant_students(2):
            report = run_reference(lab, student=student)
            assert report.passed, (path.name, student, [s for s in report.steps if not s.passed])
            assert report.student == student


def test_check_variants_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "dkim", "--variants", "2", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["passed"]
    assert [lab["student"] for lab in data["labs"]] == ["student-1", "student-2"]
    assert all("selector" in lab["variables"] for lab in data["labs"])


def test_check_variants_refuses_a_bad_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "dkim", "--variants", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["maillab check: argument --variants: 0 is not between 1 and 1000"]


@pytest.mark.mininet
@pytest.mark.parametrize("backend", [pytest.param("mininet", marks=needs_mininet)])
def test_a_variant_on_mininet(backend: str) -> None:
    report = run_reference(load_lab(DKIM), backend, student="student-1")
    assert report.passed, [s for s in report.steps if not s.passed]
