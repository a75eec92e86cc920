"""The documents generated from a format's table (sim.spec.document): the
JSON Schemas and references of the topology and lab formats are made the
same way, and what they say about defaults holds."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from sim.lab import schema as lab_schema
from sim.topology import schema as topology_schema

SCHEMAS = {"topology": topology_schema.json_schema(), "lab": lab_schema.json_schema()}


def defaults(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every property schema that names a default, with where it is."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        if "default" in node:
            found.append((path, node))
        for key, value in node.items():
            found += defaults(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += defaults(value, f"{path}[{i}]")
    return found


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_default_is_a_valid_value(name: str) -> None:
    schema = SCHEMAS[name]
    found = defaults(schema)
    assert found, "the table gives defaults"
    for path, prop in found:
        check = {**{k: v for k, v in prop.items() if k != "default"}, "$defs": schema["$defs"]}
        errors = [
            e.message for e in jsonschema.Draft202012Validator(check).iter_errors(prop["default"])
        ]
        assert not errors, (path, errors)


def test_both_references_use_the_same_tables() -> None:
    header = "| Key | Type | Default | Description |"
    topology = topology_schema.render_reference()
    lab = lab_schema.markdown_reference()
    assert header in topology and header in lab
    assert "| `estimated_time` | duration (`30s`, `5m`, `2h`, `1d`) | **required** |" in lab
    assert "Appears at `steps[]`." in lab
    assert "Appears at `nodes.<node name>.services.mx`." in topology
