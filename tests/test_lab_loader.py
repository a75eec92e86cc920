"""Loading lab files: the model, and every problem at its line and column.

Bad fixtures in ``tests/fixtures/labs/bad`` say what they expect in
comments at their end, ``# expect: LINE:COL: text``: each expectation must
match a problem at that position whose message contains the text, and each
problem must be expected. ``# mode: curriculum`` applies the curriculum's rules.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from sim.errors import LabFileError, Problem
from sim.experiments import Connect, Dig
from sim.experiments.send import Send
from sim.lab.loader import load_lab, topology_path, validate_lab_file
from sim.lab.model import (
    CheckpointStep,
    ExperimentStep,
    ExplainStep,
    QuestionStep,
    TaskStep,
)
from sim.validation import validate_path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "labs"
BAD = sorted((FIXTURES / "bad").glob("*.yaml"))
GOOD = sorted((FIXTURES / "good").glob("*.yaml"))
LABS = sorted((ROOT / "labs").glob("*.yaml"))

_EXPECT = re.compile(r"^# expect: (\d+):(\d+): (.+)$")


def expectations(path: Path) -> list[tuple[int, int, str]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _EXPECT.match(line)
        if match:
            out.append((int(match.group(1)), int(match.group(2)), match.group(3)))
    return out


def curriculum_mode(path: Path) -> bool | None:
    return True if "# mode: curriculum" in path.read_text(encoding="utf-8") else None


def test_there_are_enough_bad_fixtures() -> None:
    assert len(BAD) >= 10
    assert all(expectations(p) for p in BAD), "every bad fixture says what it expects"


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_fixture_gives_its_expected_problems(path: Path) -> None:
    problems = validate_lab_file(path, curriculum=curriculum_mode(path))
    expected = expectations(path)
    assert problems, "a bad fixture must have problems"
    for line, col, text in expected:
        assert any((p.line, p.col) == (line, col) and text in p.message for p in problems), (
            f"expected {line}:{col}: {text!r}; got:\n" + "\n".join(map(str, problems))
        )
    for problem in problems:
        assert problem.path == str(path)
        assert any(
            (problem.line, problem.col) == (line, col) and text in problem.message
            for line, col, text in expected
        ), f"unexpected problem: {problem}"


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_fixture_raises_on_load(path: Path) -> None:
    with pytest.raises(LabFileError) as caught:
        load_lab(path, curriculum=curriculum_mode(path))
    assert caught.value.problems
    # One line per problem, PATH:LINE:COL: message, never a traceback.
    for line in str(caught.value).splitlines():
        assert re.match(rf"^{re.escape(str(path))}:\d+:\d+: .+", line)


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
def test_good_fixture_is_valid(path: Path) -> None:
    assert validate_lab_file(path) == []


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.stem)
def test_shipped_lab_is_valid_under_the_curriculum_rules(path: Path) -> None:
    assert validate_lab_file(path, curriculum=True) == []


def test_maillab_validate_routes_lab_files_here() -> None:
    path = FIXTURES / "bad" / "nodes.yaml"
    problems = validate_path(path)
    assert problems == validate_lab_file(path)
    assert validate_path(LABS[0]) == []


def test_the_model_of_a_lab() -> None:
    lab = load_lab(FIXTURES / "good" / "every-kind.yaml")
    assert lab.id == "every-kind"
    assert lab.estimated_time == 3600.0
    assert lab.dns_cache == "ttl"
    assert lab.topology_path == FIXTURES / "good" / "../topologies/mini.yaml"
    assert [s.kind for s in lab.steps] == [
        "explain",
        "experiment",
        "experiment",
        "experiment",
        "experiment",
        "question",
        "question",
        "task",
        "checkpoint",
    ]
    intro, look, knock, send, submit, pick, short, fix, end = lab.steps
    assert isinstance(intro, ExplainStep)
    assert "client ──► mx" in intro.text
    assert isinstance(look, ExperimentStep)
    assert look.run.experiment() == Dig("example.test", "MX")  # type upper-cased
    assert look.run.node == "client"
    assert [p.name for p in look.expect] == [
        "rcode",
        "answer_contains",
        "answer_count",
        "trace_contains",
    ]
    assert look.expect[3].value == {"kind": "dns", "text": "MX"}
    assert isinstance(knock, ExperimentStep)
    assert (knock.run.node, knock.run.experiment()) == ("outside", Connect("mx.example.test", 25))
    assert isinstance(send, ExperimentStep)
    assert send.run is not None and send.run.kind == "send"
    assert send.run.to == ("bob@example.test",)
    assert send.run.headers == (("X-Lab", "1"),)
    assert send.run.experiment() == Send(
        to=("bob@example.test",),
        via="direct",
        settle=True,
        mail_from="carol@other.test",
        from_header="Carol <carol@other.test>",
        subject="Hello",
        body="",
        headers=(("X-Lab", "1"),),
    )
    assert isinstance(submit, ExperimentStep)
    assert submit.run is not None and submit.run.kind == "send"
    assert submit.run.user == "alice@other.test"
    assert isinstance(pick, QuestionStep)
    assert pick.multiple_choice
    assert pick.answer == "a"
    assert pick.choice("b") is not None
    assert isinstance(short, QuestionStep)
    assert not short.multiple_choice
    assert short.accept == ("25", "smtp")
    assert short.wrong[0].answers == ("587",)
    assert isinstance(fix, TaskStep)
    assert [c.of for c in fix.checks] == [None, "look", None]
    assert [a.name for a in fix.solution][:3] == ["dns_add", "dns_remove", "dns_replace_zone"]
    assert fix.solution[-2].args == "30m"
    assert fix.hints == ("First hint.", "Second hint.")
    assert isinstance(end, CheckpointStep)
    assert end.checks[0].run is not None


def test_topology_by_name_or_path(tmp_path: Path) -> None:
    lab = tmp_path / "labs" / "x.yaml"
    assert topology_path(lab, "home-isp") == tmp_path / "topologies" / "home-isp.yaml"
    assert topology_path(lab, "../elsewhere/t.yaml") == tmp_path / "labs" / "../elsewhere/t.yaml"


def test_files_in_a_labs_directory_follow_the_curriculum(tmp_path: Path) -> None:
    labs = tmp_path / "labs"
    labs.mkdir()
    (tmp_path / "topologies").mkdir()
    shutil.copy(FIXTURES / "topologies" / "mini.yaml", tmp_path / "topologies" / "mini.yaml")
    shutil.copy(FIXTURES / "good" / "minimal.yaml", labs / "minimal.yaml")
    problems = validate_lab_file(labs / "minimal.yaml")
    assert [p.message for p in problems] == [
        "steps: a curriculum lab has 4 to 10 steps, this one has 1",
        "steps: a curriculum lab needs at least one question step",
        "steps: a curriculum lab needs at least one task step",
    ]
    assert validate_lab_file(labs / "minimal.yaml", curriculum=False) == []


def test_unreadable_and_empty_files(tmp_path: Path) -> None:
    assert validate_lab_file(tmp_path / "nope.yaml") == [
        Problem(str(tmp_path / "nope.yaml"), 1, 1, "no such file")
    ]
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n", encoding="utf-8")
    (problem,) = validate_lab_file(empty)
    assert "the file is empty" in problem.message
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"id: \xff\xfe\n")
    (problem,) = validate_lab_file(binary)
    assert "not UTF-8" in problem.message


def test_backends_default_to_both_and_a_postfix_lab_names_mininet() -> None:
    from sim.lab.model import needs_backend

    plain = load_lab(FIXTURES / "good" / "minimal.yaml")
    assert plain.backends == ("local", "mininet")
    assert plain.runs_on("local") and plain.runs_on("mininet")
    only = load_lab(FIXTURES / "good" / "mininet-only.yaml")
    assert only.backends == ("mininet",)
    assert not only.runs_on("local") and only.runs_on("mininet")
    assert needs_backend(only.id, only.backends) == (
        "needs the mininet backend (root): maillab check mininet-only --backend mininet"
    )
    assert needs_backend(only.id, only.backends, "run").endswith(
        "maillab run mininet-only --backend mininet"
    )
