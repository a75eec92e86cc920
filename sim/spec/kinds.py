"""A small, position-aware structural schema for YAML files.

One description of a file's shape serves three purposes:

* :meth:`Spec.check` walks a ruamel.yaml document and reports every
  structural problem (unknown key, missing key, wrong type, value out of
  range) at its line and column, with a message a person can act on;
* :meth:`Spec.json_schema` emits the same shape as JSON Schema (draft
  2020-12) for editors;
* :meth:`Spec.markdown` and :func:`reference_sections` produce the Markdown
  reference an instructor reads.

The building blocks: :class:`Str`, :class:`Int`, :class:`Bool`,
:class:`Duration`, :class:`ListOf`, :class:`MapOf`, :class:`Record` (a
mapping with known keys, every other key an error), :class:`Tagged` (a
record chosen by its ``kind`` key), :class:`OneKey` (a mapping with exactly
one key out of a set, such as ``{dig: {...}}``), :class:`Either` (chosen by
the YAML type of the value).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sim.clock import parse_duration
from sim.errors import Problem
from sim.spec.words import a_an, describe_value, expected, path_text, suggest, unknown_key
from sim.spec.yamlpos import Pos, is_map, is_seq, key_pos, node_pos, value_pos

__all__ = [
    "Anything",
    "Bool",
    "Checker",
    "Duration",
    "Either",
    "Field",
    "Int",
    "ListOf",
    "MapOf",
    "OneKey",
    "Record",
    "Spec",
    "Str",
    "Tagged",
    "describe_value",
    "path_text",
    "reference_sections",
    "suggest",
]

SLUG = r"^[a-z0-9][a-z0-9_-]*$"
SLUG_HINT = "lower-case letters, digits, '-' and '_', starting with a letter or digit"


@dataclass
class Checker:
    """Collects problems for one file while a spec walks its document."""

    path: str
    problems: list[Problem] = field(default_factory=list)

    def add(self, pos: Pos, where: tuple[str | int, ...], message: str) -> None:
        prefix = f"{path_text(where)}: " if where else ""
        self.problems.append(Problem(self.path, pos[0], pos[1], prefix + message))


class Spec(ABC):
    """The shape of one YAML value."""

    description: str = ""
    #: A name for the JSON Schema ``$defs`` and a section of the reference.
    name: str | None = None

    @abstractmethod
    def check(self, value: Any, pos: Pos, where: tuple[str | int, ...], out: Checker) -> None:
        """Report every problem of ``value``, which starts at ``pos``."""

    @abstractmethod
    def schema(self) -> dict[str, Any]:
        """The JSON Schema of this shape (inline, without ``$defs``)."""

    @abstractmethod
    def type_text(self) -> str:
        """A short type for the Markdown reference (``text``, ``list of Step``)."""

    def accepts(self, value: Any) -> bool:
        """Whether the YAML type of ``value`` is this spec's (for :class:`Either`)."""
        return True

    def json_schema(self) -> dict[str, Any]:
        """Reference to ``$defs`` for named specs, the inline schema otherwise."""
        if self.name:
            return {"$ref": f"#/$defs/{self.name}"}
        return self.schema()

    def children(self) -> Iterator[Spec]:
        return iter(())

    def expect(
        self, value: Any, pos: Pos, where: tuple[str | int, ...], out: Checker, wanted: str
    ) -> None:
        out.add(pos, where, expected(wanted, value))


# -- scalars ---------------------------------------------------------------


@dataclass
class Str(Spec):
    description: str = ""
    enum: tuple[str, ...] = ()
    pattern: str | None = None
    pattern_hint: str = ""
    min_length: int = 1
    markdown: bool = False

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str)

    def check(self, value: Any, pos: Pos, where: tuple[str | int, ...], out: Checker) -> None:
        if not isinstance(value, str):
            self.expect(
                value, pos, where, out, "one of " + ", ".join(self.enum) if self.enum else "text"
            )
            return
        if self.enum and value not in self.enum:
            out.add(
                pos,
                where,
                f"{value!r} is not one of: {', '.join(self.enum)}{suggest(value, self.enum)}",
            )
        elif len(value.strip()) < self.min_length:
            out.add(pos, where, "must not be empty")
        elif self.pattern and not re.match(self.pattern, value):
            out.add(pos, where, f"{value!r} is not valid: {self.pattern_hint or self.pattern}")

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string"}
        if self.enum:
            out["enum"] = list(self.enum)
        else:
            if self.min_length:
                out["minLength"] = self.min_length
            if self.pattern:
                out["pattern"] = self.pattern
        if self.description:
            out["description"] = self.description
        return out

    def type_text(self) -> str:
        if self.enum:
            return " \\| ".join(f"`{v}`" for v in self.enum)
        return "Markdown text" if self.markdown else "text"


@dataclass
class Int(Spec):
    description: str = ""
    minimum: int | None = None
    maximum: int | None = None

    def accepts(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def check(self, value: Any, pos: Pos, where: tuple[str | int, ...], out: Checker) -> None:
        if not self.accepts(value):
            self.expect(value, pos, where, out, "a whole number")
        elif self.minimum is not None and value < self.minimum:
            out.add(pos, where, f"{value} is less than {self.minimum}")
        elif self.maximum is not None and value > self.maximum:
            out.add(pos, where, f"{value} is more than {self.maximum}")

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "integer"}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.description:
            out["description"] = self.description
        return out

    def type_text(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f"number {self.minimum}–{self.maximum}"
        if self.minimum is not None:
            return f"number ≥ {self.minimum}"
        return "number"


@dataclass
class Bool(Spec):
    description: str = ""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)

    def check(self, value: Any, pos: Pos, where: tuple[str | int, ...], out: Checker) -> None:
        if not isinstance(value, bool):
            self.expect(value, pos, where, out, "true or false")

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "boolean"}
        if self.description:
            out["description"] = self.description
        return out

    def type_text(self) -> str:
        return "`true` \\| `false`"


#: A duration in the syntax :func:`sim.clock.parse_duration` reads.
DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*[smhdw]?\s*$"


@dataclass
class Duration(Spec):
    description: str = ""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str | int | float) and not isinstance(value, bool)

    def check(self, value: Any, pos: Pos, where: tuple[str | int, ...], out: Checker) -> None:
        if not self.accepts(value):
            self.expect(value, pos, where, out, "a duration such as 30s, 5m, 2h, 1d")
            return
        try:
            parse_duration(value)
        except ValueError as err:
            out.add(pos, where, str(err))

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": ["string", "number"],
            "pattern": DURATION_PATTERN,
            "minimum": 0,
        }
        if self.description:
            out["description"] = self.description
        return out

    def type_text(self) -> str:
        return "duration (`30s`, `5m`, `2h`, `1d`)"


# -- containers ------------------------------------------------------------


@dataclass
class ListOf(Spec):
    item: Spec
    description: str = ""
    min_items: int = 0
    max_items: int | None = None

    def accepts(self, value: Any) -> bool:
        return is_seq(value)

    def check(self, value: Any, pos: Pos, where: tuple[str | int, ...], out: Checker) -> None:
        if not is_seq(value):
            self.expect(value, pos, where, out, f"a list of {self.item.type_text()}")
            return
        if len(value) < self.min_items:
            need = (
                "at least one item" if self.min_items == 1 else f"at least {self.min_items} items"
            )
            out.add(pos, where, f"needs {need}")
        if self.max_items is not None and len(value) > self.max_items:
            out.add(pos, where, f"has {len(value)} items, at most {self.max_items} allowed")
        for i, item in enumerate(value):
            item_pos = node_pos(item, key_pos(value, i))
            self.item.check(item, item_pos, (*where, i), out)

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "array", "items": self.item.json_schema()}
        if self.min_items:
            out["minItems"] = self.min_items
        if self.max_items is not None:
            out["maxItems"] = self.max_items
        if self.description:
            out["description"] = self.description
        return out

    def type_text(self) -> str:
        return f"list of {self.item.type_text()}"

    def children(self) -> Iterator[Spec]:
        yield self.item


@dataclass
class MapOf(Spec):
    """A mapping from free keys (matching ``key``) to values of one shape."""

    value: Spec
    key: Str = field(default_factory=Str)
    description: str = ""
    min_items: int = 0

    def accepts(self, value: Any) -> bool:
        return is_map(value)

    def check(self, value: Any, pos: Pos, where: tuple[str | int, ...], out: Checker) -> None:
        if not is_map(value):
            self.expect(value, pos, where, out, "a mapping")
            return
        if len(value) < self.min_items:
            out.add(pos, where, "needs at least one entry")
        for key in value:
            if isinstance(key, str):
                self.key.check(key, key_pos(value, key), (*where, key), out)
            else:
                out.add(key_pos(value, key), where, f"key {key!r} must be text")
            self.value.check(value[key], value_pos(value, key), (*where, str(key)), out)

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "object",
            "additionalProperties": self.value.json_schema(),
        }
        key = self.key.schema()
        key.pop("description", None)
        if key != {"type": "string", "minLength": 1}:
            out["propertyNames"] = key
        if self.min_items:
            out["minProperties"] = self.min_items
        if self.description:
            out["description"] = self.description
        return out

    def type_text(self) -> str:
        return f"mapping of {self.key.type_text()} → {self.value.type_text()}"

    def children(self) -> Iterator[Spec]:
        yield self.value


@dataclass
class Field:
    spec: Spec
    required: bool = False
    description: str = ""
    default: str | None = None


@dataclass
class Record(Spec):
    """A mapping with known keys; any other key is an error."""

    fields: dict[str, Field]
    name: str | None = None
    description: str = ""
    #: Set by :class:`Tagged`: the tag key and the value that selects this record.
    tagged_as: tuple[str, str] | None = None

    def accepts(self, value: Any) -> bool:
        return is_map(value)

    def check(self, value: Any, pos: Pos, where: tuple[str | int, ...], out: Checker) -> None:
        if not is_map(value):
            self.expect(value, pos, where, out, f"a mapping ({self.name or 'keys'})")
            return
        self.check_keys(value, pos, where, out, skip=())

    def check_keys(
        self,
        value: Any,
        pos: Pos,
        where: tuple[str | int, ...],
        out: Checker,
        skip: tuple[str, ...],
    ) -> None:
        for key in value:
            if key in skip:
                continue
            spec = self.fields.get(key) if isinstance(key, str) else None
            if spec is None:
                place = "the top level" if not where else a_an(self.name or "mapping")
                out.add(key_pos(value, key), where, unknown_key(key, self.fields, place))
                continue
            child = value[key]
            if child is None and not spec.required:
                out.add(key_pos(value, key), (*where, key), "has no value")
                continue
            spec.spec.check(child, value_pos(value, key), (*where, key), out)
        for name, spec in self.fields.items():
            if spec.required and name not in value and name not in skip:
                out.add(pos, where, f"missing key {name!r}")

    def schema(self) -> dict[str, Any]:
        properties = {name: self._field_schema(f) for name, f in self.fields.items()}
        required = [name for name, f in self.fields.items() if f.required]
        if self.tagged_as is not None:
            tag, value = self.tagged_as
            properties = {tag: {"const": value}, **properties}
            required = [tag, *required]
        out: dict[str, Any] = {
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }
        if required:
            out["required"] = required
        if self.description:
            out["description"] = self.description
        return out

    @staticmethod
    def _field_schema(f: Field) -> dict[str, Any]:
        inner = f.spec.json_schema()
        if f.description and "$ref" not in inner:
            inner = {**inner, "description": f.description}
        elif f.description:
            inner = {"allOf": [inner], "description": f.description}
        return inner

    def type_text(self) -> str:
        return self.name or "mapping"

    def children(self) -> Iterator[Spec]:
        for f in self.fields.values():
            yield f.spec


@dataclass
class Tagged(Spec):
    """A mapping whose ``tag`` key chooses which :class:`Record` it is."""

    variants: dict[str, Record]
    tag: str = "kind"
    name: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        for kind, variant in self.variants.items():
            variant.tagged_as = (self.tag, kind)

    def accepts(self, value: Any) -> bool:
        return is_map(value)

    def check(self, value: Any, pos: Pos, where: tuple[str | int, ...], out: Checker) -> None:
        if not is_map(value):
            self.expect(value, pos, where, out, f"a mapping with a {self.tag!r} key")
            return
        kinds = ", ".join(self.variants)
        if self.tag not in value:
            out.add(pos, where, f"missing key {self.tag!r} (one of: {kinds})")
            return
        kind = value[self.tag]
        variant = self.variants.get(kind) if isinstance(kind, str) else None
        if variant is None:
            out.add(
                value_pos(value, self.tag),
                (*where, self.tag),
                f"{kind!r} is not one of: {kinds}{suggest(kind, list(self.variants))}",
            )
            return
        variant.check_keys(value, pos, where, out, skip=(self.tag,))

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "object",
            "required": [self.tag],
            "properties": {self.tag: {"enum": list(self.variants)}},
            "allOf": [
                {
                    "if": {"properties": {self.tag: {"const": kind}}, "required": [self.tag]},
                    "then": variant.json_schema(),
                }
                for kind, variant in self.variants.items()
            ],
        }
        if self.description:
            out["description"] = self.description
        return out

    def type_text(self) -> str:
        return self.name or "mapping"

    def children(self) -> Iterator[Spec]:
        yield from self.variants.values()


@dataclass
class OneKey(Spec):
    """A mapping with exactly one key, which says what it is: ``{dig: {...}}``."""

    options: dict[str, Field]
    name: str | None = None
    description: str = ""

    def accepts(self, value: Any) -> bool:
        return is_map(value)

    def check(self, value: Any, pos: Pos, where: tuple[str | int, ...], out: Checker) -> None:
        names = ", ".join(self.options)
        if not is_map(value):
            self.expect(value, pos, where, out, f"a mapping with one key ({names})")
            return
        if len(value) != 1:
            given = ", ".join(str(k) for k in value) or "none"
            out.add(pos, where, f"needs exactly one key out of: {names} (given: {given})")
            return
        key = next(iter(value))
        option = self.options.get(key) if isinstance(key, str) else None
        if option is None:
            hint = suggest(key, list(self.options)) or f" (one of: {names})"
            out.add(key_pos(value, key), where, f"unknown key {key!r}{hint}")
            return
        option.spec.check(value[key], value_pos(value, key), (*where, key), out)

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "properties": {k: Record._field_schema(f) for k, f in self.options.items()},
            "additionalProperties": False,
        }
        if self.description:
            out["description"] = self.description
        return out

    def type_text(self) -> str:
        return self.name or "mapping"

    def children(self) -> Iterator[Spec]:
        for f in self.options.values():
            yield f.spec


@dataclass
class Either(Spec):
    """One of several shapes, chosen by the YAML type of the value."""

    choices: tuple[Spec, ...]
    description: str = ""

    def accepts(self, value: Any) -> bool:
        return any(c.accepts(value) for c in self.choices)

    def check(self, value: Any, pos: Pos, where: tuple[str | int, ...], out: Checker) -> None:
        for choice in self.choices:
            if choice.accepts(value):
                choice.check(value, pos, where, out)
                return
        self.expect(value, pos, where, out, self.type_text().replace("\\|", "or"))

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"anyOf": [c.json_schema() for c in self.choices]}
        if self.description:
            out["description"] = self.description
        return out

    def type_text(self) -> str:
        return " \\| ".join(c.type_text() for c in self.choices)

    def children(self) -> Iterator[Spec]:
        yield from self.choices


# -- the reference ---------------------------------------------------------


def named_specs(root: Spec) -> list[Spec]:
    """Every named spec reachable from ``root``, in first-seen order."""
    seen: dict[str, Spec] = {}

    def walk(spec: Spec) -> None:
        if spec.name:
            if spec.name in seen:
                return
            seen[spec.name] = spec
        for child in spec.children():
            walk(child)

    walk(root)
    return list(seen.values())


Row = tuple[str, str, str, str]


def reference_sections(root: Spec) -> Iterator[tuple[str, str, Row, list[Row]]]:
    """(name, description, column titles, rows) for every named spec: the
    Markdown reference is a rendering of these."""
    for spec in named_specs(root):
        rows: list[Row] = []
        header: Row = ("key", "type", "required", "meaning")
        if isinstance(spec, Record):
            for key, f in spec.fields.items():
                req = (
                    "yes" if f.required else (f"no (default `{f.default}`)" if f.default else "no")
                )
                rows.append((key, f.spec.type_text(), req, f.description))
        elif isinstance(spec, OneKey):
            for key, f in spec.options.items():
                rows.append((key, f.spec.type_text(), "one of", f.description))
        elif isinstance(spec, Tagged):
            header = (spec.tag, "keys", "written", "meaning")
            for kind, variant in spec.variants.items():
                rows.append(
                    (kind, variant.type_text(), f"`{spec.tag}: {kind}`", variant.description)
                )
        yield spec.name or "", spec.description, header, rows


@dataclass
class Anything(Spec):
    """Any YAML value (for free-form arguments passed through unchanged)."""

    description: str = ""

    def check(self, value: Any, pos: Pos, where: tuple[str | int, ...], out: Checker) -> None:
        if value is None:
            out.add(pos, where, "has no value")

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.description:
            out["description"] = self.description
        return out

    def type_text(self) -> str:
        return "any value"
