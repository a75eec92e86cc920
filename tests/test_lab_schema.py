"""The lab file's JSON Schema and Markdown reference: current, and in
agreement with the loader."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

from sim.lab import schema
from sim.lab.actions import ACTIONS
from sim.lab.checks import PREDICATES
from sim.lab.loader import validate_lab_file

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "labs"
VALID = sorted((FIXTURES / "good").glob("*.yaml")) + sorted((ROOT / "labs").glob("*.yaml"))
#: Bad fixtures whose problems are structural, so a JSON Schema sees them too.
STRUCTURAL = [
    "unknown-keys",
    "missing-keys",
    "wrong-types",
    "step-kinds",
    "tasks",
    "action-shapes",
    "not-a-mapping",
]
#: Bad fixtures whose problems only the loader sees (meaning, other files).
MEANING = ["nodes", "questions", "checks", "actions", "duplicate-ids", "topology-missing"]


def plain(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    document = schema.json_schema()
    jsonschema.Draft202012Validator.check_schema(document)
    return jsonschema.Draft202012Validator(document)


@pytest.mark.parametrize("path", sorted(schema.rendered()), ids=lambda p: p.name)
def test_generated_docs_are_current(path: Path) -> None:
    assert path.exists(), f"{path} is missing: run python -m sim.lab.schema"
    assert path.read_text(encoding="utf-8") == schema.rendered()[path], (
        f"{path.name} is stale: run python -m sim.lab.schema"
    )


def test_check_mode_reports_stale_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schema, "SCHEMA_PATH", tmp_path / "lab.schema.json")
    monkeypatch.setattr(schema, "REFERENCE_PATH", tmp_path / "lab-reference.md")
    assert schema.main(["--check"]) == 1
    assert schema.main([]) == 0
    assert schema.main(["--check"]) == 0


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_files_pass_the_json_schema(validator: Any, path: Path) -> None:
    errors = [e.message for e in validator.iter_errors(plain(path))]
    assert errors == []


@pytest.mark.parametrize("name", STRUCTURAL)
def test_structural_problems_fail_the_json_schema_too(validator: Any, name: str) -> None:
    assert list(validator.iter_errors(plain(FIXTURES / "bad" / f"{name}.yaml")))


@pytest.mark.parametrize("name", MEANING)
def test_meaning_problems_need_the_loader(validator: Any, name: str) -> None:
    # Well-formed, yet wrong: only the loader's semantic checks catch these.
    assert list(validator.iter_errors(plain(FIXTURES / "bad" / f"{name}.yaml"))) == []


def test_reference_documents_every_predicate_and_action() -> None:
    text = schema.markdown_reference()
    for name in [*PREDICATES, *ACTIONS, "explain", "experiment", "question", "task", "checkpoint"]:
        assert f"`{name}" in text, name


def test_the_reference_example_is_a_valid_lab(tmp_path: Path) -> None:
    (tmp_path / "labs").mkdir()
    (tmp_path / "topologies").mkdir()
    shutil.copy(ROOT / "topologies" / "receive-only.yaml", tmp_path / "topologies")
    example = tmp_path / "labs" / "example.yaml"
    example.write_text(schema._EXAMPLE, encoding="utf-8")
    assert validate_lab_file(example, curriculum=False) == []
