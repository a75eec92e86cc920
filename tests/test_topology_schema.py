"""The description table, the JSON Schema and the reference agree with each
other, with the model and with the loader, and the committed files are current."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from sim import load_topology
from sim.clock import parse_duration
from sim.errors import TopologyError
from sim.spec.kinds import BAD as UNBUILT
from sim.spec.kinds import Checker, Either, ListOf, MapOf, Record, Scalar, Str
from sim.topology import model
from sim.topology.loader import structure_problems
from sim.topology.schema import (
    EXAMPLE,
    FORMATS,
    TOPOLOGY,
    json_schema,
    main,
    records,
    render_reference,
    render_schema,
)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FIXTURES = ROOT / "tests" / "fixtures" / "topologies"
GOOD = sorted((FIXTURES / "good").glob("*.yaml")) + sorted((ROOT / "topologies").glob("*.yaml"))
BAD = sorted((FIXTURES / "bad").glob("*.yaml"))

#: Structure the JSON Schema cannot express; the loader checks it.
LOADER_ONLY = {
    "host-bits-set.yaml": "a network written with host bits set (100.64.10.20/10)",
    "duplicate-key.yaml": "duplicate keys vanish when YAML becomes JSON data",
}

VALIDATOR = jsonschema.Draft202012Validator(json_schema())


def plain(text: str) -> Any:
    """YAML → the JSON data model (what an editor's schema check sees)."""
    return YAML(typ="safe").load(text)


def schema_ok(data: Any) -> bool:
    return VALIDATOR.is_valid(data)


def test_committed_schema_is_current() -> None:
    assert (DOCS / "topology.schema.json").read_text(encoding="utf-8") == render_schema(), (
        "run: python -m sim.topology.schema"
    )


def test_committed_reference_is_current() -> None:
    assert (DOCS / "topology-reference.md").read_text(encoding="utf-8") == render_reference(), (
        "run: python -m sim.topology.schema"
    )


def test_main_check_and_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check", "--docs", str(DOCS)]) == 0
    assert main(["--check", "--docs", str(tmp_path)]) == 1
    assert main(["--docs", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "topology.schema.json").read_text()) == json_schema()
    assert main(["--check", "--docs", str(tmp_path)]) == 0
    assert "stale" in capsys.readouterr().err


def test_schema_is_valid_draft_2020_12() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    for name, definition in schema["$defs"].items():
        assert definition["additionalProperties"] is False, name


def test_reference_documents_every_key_and_check() -> None:
    from sim.topology.validate import CHECKS

    text = render_reference()
    for record, _ in records():
        assert f"## {record.name}\n" in text
        for key in record.fields:
            assert f"| `{key}` |" in text
    for name in CHECKS:
        assert f"`{name}`" in text
    assert EXAMPLE in text


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_good_files_satisfy_the_schema(path: Path) -> None:
    errors = list(VALIDATOR.iter_errors(plain(path.read_text(encoding="utf-8"))))
    assert not errors, [e.message for e in errors]


def test_design_example_satisfies_the_schema() -> None:
    assert schema_ok(plain(EXAMPLE))


def _top_mapping(path: Path) -> dict[str, Any] | None:
    """The fixture's top-level mapping, or None when it is not YAML text holding one."""
    try:
        data = plain(path.read_bytes().decode("utf-8"))
    except Exception:
        return None
    return data if isinstance(data, dict) else None


# A schema only has something to say about a mapping; the other bad fixtures
# (not UTF-8, not YAML, a list at the top) are the loader's alone.
SCHEMA_CASES = [p for p in BAD if _top_mapping(p) is not None]
LOADER_CASES = [p for p in BAD if _top_mapping(p) is None]


@pytest.mark.parametrize("path", LOADER_CASES, ids=lambda p: p.stem)
def test_the_loader_refuses_what_no_schema_can_read(path: Path) -> None:
    with pytest.raises(TopologyError):
        load_topology(path)


@pytest.mark.parametrize("path", SCHEMA_CASES, ids=lambda p: p.stem)
def test_schema_and_loader_agree_on_structure(path: Path) -> None:
    """A bad fixture fails the schema exactly when it has a structural problem."""
    text = path.read_bytes().decode("utf-8")
    data = _top_mapping(path)
    assert data is not None
    structural = bool(structure_problems(text))
    if path.name in LOADER_ONLY:
        assert structural, LOADER_ONLY[path.name]
        assert schema_ok(data), LOADER_ONLY[path.name]
    else:
        assert schema_ok(data) == (not structural), structure_problems(text)


# -- the table and the model --------------------------------------------------------


def model_records() -> list[Record]:
    return [rec for rec, _ in records() if rec.model is not None]


@pytest.mark.parametrize("record", model_records(), ids=lambda r: r.name)
def test_every_model_field_is_in_the_table(record: Record) -> None:
    assert dataclasses.is_dataclass(record.model)
    fields = {f.name for f in dataclasses.fields(record.model)}
    # Filled in by the loader, not written in a file: a node's name is its
    # key, a topology's source is its path.
    fields -= {"name"} if record is not TOPOLOGY and record.name == "node" else set()
    fields -= {"source"}
    assert set(record.keys()) == fields


def build_default(spec: Any, value: Any) -> Any:
    out = Checker("<default>")
    built = spec.check(copy.deepcopy(value), (1, 1), ("default",), out)
    assert not out.problems and built is not UNBUILT, out.problems
    return built


@pytest.mark.parametrize("record", model_records(), ids=lambda r: r.name)
def test_table_defaults_are_the_model_defaults(record: Record) -> None:
    assert record.model is not None
    defaults = {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        for f in dataclasses.fields(record.model)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    }
    for key, field in record.fields.items():
        if field.required:
            assert key not in defaults, f"{key} is required but has a model default"
            continue
        if field.default is None:
            # No default written: absent means "none" in the model.
            assert defaults.get(key, "missing") in (None, "", (), "missing"), key
            continue
        assert build_default(field.spec, field.default) == defaults[key], key


def test_check_defaults_come_from_the_check_modules() -> None:
    from sim.services import checks as registry

    mx = next(rec for rec, _ in records() if rec.name == "mx")
    checks = mx.field("checks")
    assert checks is not None
    assert isinstance(checks.spec, Either)
    defaults = registry.default_actions()
    assert defaults["fcrdns"] == "defer" and defaults["dmarc"] == "policy"
    built = build_default(checks.spec, list(defaults))
    assert built == tuple(model.CheckPolicy(n, a) for n, a in defaults.items())  # type: ignore[arg-type]


# -- each value format: the JSON Schema pattern and the parser agree ---------------

SAMPLES: dict[str, list[Any]] = {
    "identifier": ["a", "home-isp", "x_1", "1a", "-a", "a b", "", "é"],
    "node name": ["mx-qq", "R1", "a.b", "a/b"],
    "domain name": [
        "qq.example",
        "QQ.example.",
        "_dmarc.x",
        "a..b",
        ".a",
        "a-.b",
        "-a.b",
        "x" * 64,
        "113.0.203.in-addr.arpa",
        "a b",
        "",
    ],
    "selector": ["mail2026", "s1.sub", "bad selector"],
    "mail address": ["alice@home.example", "a.b+c@x.y", "alice", "@x.y", "a@", "a@b..c", "a b@c.d"],
    "local part": ["bob", "carol.smith", "bob smith", ".bob", "bob.", "a..b", ""],
    "password": ["x", "s3cret", "", 1234],
    "IPv4 address": [
        "192.0.2.1",
        "0.0.0.0",
        "255.255.255.255",
        "256.1.1.1",
        "1.2.3",
        "01.2.3.4",
        "1.2.3.4/32",
        "a.b.c.d",
        12,
    ],
    "IPv4 network": [
        "100.64.0.0/10",
        "192.0.2.25",
        "0.0.0.0/0",
        "1.2.3.4/33",
        "1.2.3.0/24x",
        "10.0.0.0/08",
        "10.0.0.0/255.0.0.0",
        " 10.0.0.0/8",
    ],
    "interface address": [
        "100.64.10.20/24",
        "100.64.10.20",
        "1.2.3.4/33",
        "1.2.3.4/0",
        "1.2.3.4/024",
        "1.2.3.4/255.255.255.0",
    ],
    "DNSBL code": [
        "127.0.0.2",
        "127.0.0.11",
        "127.255.255.255",
        "127.0.0.1",
        "128.0.0.2",
        "10.0.0.2",
    ],
    "duration": [
        "30s",
        "5m",
        "2h",
        "5d",
        "1w",
        "1.5h",
        " 5 m ",
        0,
        30,
        2.5,
        "5 days",
        "-5m",
        "m",
        "",
        True,
        -1,
    ],
    "positive number": [60, 0.5, 0, -1, "60", True],
    "score": [4, -1.5, 0, "4", True],
    "return code": ["127.0.0.2", "127.0.0.10", "127.0.0.1", "10.0.0.1", 2],
    "port": [1, 587, 65535, 0, 65536, "587", True, 2.5],
    "port range": [
        25,
        "25",
        "1024-65535",
        "20:30",
        " 20 - 30 ",
        "30-20x",
        "a-b",
        0,
        70000,
        "1-70000",
        True,
        "25-",
    ],
    "size": [0, 1048576, "10M", "512K", "1g", "10 M", "10MB", "-1", -1, "M", True],
    "boolean": [True, False, "true", "yes", 1, 0],
    "text": ["", "x", 1, True, None],
    "zone text": ["@ A 1.2.3.4", 5],
    "client": ["mx2", "192.0.2.25", "192.0.2.0/24", "192.0.2.0/33", "-x", "", 5],
}

#: Where a format's JSON Schema is looser than its parser, on purpose.
LOOSER = {
    ("port range", "30-20x"): False,  # neither accepts; listed for clarity
}


def parses(fmt: str, value: Any) -> bool:
    try:
        FORMATS[fmt].parse(value)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_format_has_samples(fmt: str) -> None:
    assert len(SAMPLES[fmt]) >= 2


@pytest.mark.parametrize(
    ("fmt", "value"), [(fmt, value) for fmt, values in SAMPLES.items() for value in values]
)
def test_format_schema_agrees_with_parser(fmt: str, value: Any) -> None:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **FORMATS[fmt].schema}
    in_schema = jsonschema.Draft202012Validator(schema).is_valid(value)
    assert in_schema == parses(fmt, value), (fmt, value, in_schema)


def test_network_host_bits_are_the_one_known_difference() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **FORMATS["IPv4 network"].schema,
    }
    assert jsonschema.Draft202012Validator(schema).is_valid("100.64.10.20/10")
    assert not parses("IPv4 network", "100.64.10.20/10")


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"\A[ 0-9.smhdwx-]{0,8}\Z"))
def test_duration_pattern_matches_parse_duration(text: str) -> None:
    pattern = FORMATS["duration"].schema["anyOf"][1]
    in_schema = jsonschema.Draft202012Validator(pattern).is_valid(text)
    try:
        parse_duration(text)
        ok = True
    except ValueError:
        ok = False
    assert in_schema == ok


# -- the whole table: schema and structural loader agree on mutated files -----------

POOL: list[Any] = [
    None,
    True,
    0,
    -1,
    25,
    60,
    2.5,
    "",
    "x",
    "host",
    "router",
    "tcp",
    "icmp",
    "reject",
    "5m",
    "10M",
    "1-2",
    "192.0.2.1",
    "192.0.2.0/24",
    "a.example",
    "a@b.example",
    [],
    ["x"],
    ["r1", "r2"],
    {},
    {"x": 1},
]


def paths(data: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here]
    if isinstance(data, dict):
        for key, value in data.items():
            out += paths(value, (*here, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            out += paths(value, (*here, index))
    return out


def mutate(data: Any, path: tuple[Any, ...], action: str, value: Any) -> Any:
    data = copy.deepcopy(data)
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if action == "set":
        parent[last] = value
    elif action == "delete":
        del parent[last]
    elif action == "add" and isinstance(parent[last], dict):
        parent[last]["extra"] = value
    return data


def dump(data: Any) -> str:
    import io

    out = io.StringIO()
    YAML(typ="safe").dump(data, out)
    return out.getvalue()


BASES = [plain(EXAMPLE), plain((FIXTURES / "good" / "rich.yaml").read_text(encoding="utf-8"))]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(BASES), st.data())
def test_schema_and_loader_agree_on_mutations(base: Any, data: st.DataObject) -> None:
    candidates = [p for p in paths(base) if p]
    path = data.draw(st.sampled_from(candidates))
    action = data.draw(st.sampled_from(["set", "delete", "add"]))
    value = data.draw(st.sampled_from(POOL))
    mutated = mutate(base, path, action, value)
    text = dump(mutated)
    structural = structure_problems(text)
    assert schema_ok(mutated) == (not structural), (path, action, value, structural)


def test_record_kinds_are_all_rendered() -> None:
    kinds = {type(f.spec) for rec, _ in records() for f in rec.fields.values()}
    assert kinds >= {Scalar, Str, ListOf, MapOf, Record, Either}
