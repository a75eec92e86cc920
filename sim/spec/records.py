"""Kinds of containers: :class:`ListOf`, :class:`MapOf`, :class:`Record` (a
mapping with known keys, each a :class:`Field`; every other key an error;
:class:`OnlyWhen`, :class:`RequiredWhen` and :class:`Together` rules tie
keys to each other), :class:`Tagged` (a record chosen by its ``kind`` key),
:class:`OneKey` (exactly one key out of a set, such as ``{dig: {...}}``) and
:class:`Either` (one of several shapes, chosen by the YAML type)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import KW_ONLY, field
from typing import Any

from sim.fastclass import dataclass
from sim.spec.base import BAD, Checker, Spec, Where, plain, slug
from sim.spec.scalars import Str
from sim.spec.words import a_an, describe_value, suggest, unknown_key
from sim.spec.yamlpos import Pos, is_map, is_seq, key_pos, node_pos, value_pos

__all__ = [
    "Either",
    "Field",
    "ListOf",
    "MapOf",
    "OneKey",
    "OnlyWhen",
    "Record",
    "RequiredWhen",
    "Tagged",
    "Together",
    "field_schema",
    "iter_specs",
]


# -- containers ------------------------------------------------------------


@dataclass
class ListOf(Spec):
    """A YAML sequence; built into a tuple."""

    item: Spec
    description: str = ""
    min_items: int = 0
    max_items: int | None = None
    unique: bool = False

    def accepts(self, value: Any) -> bool:
        return is_seq(value)

    def check(self, value: Any, pos: Pos, where: Where, out: Checker) -> Any:
        if not is_seq(value):
            return self.wrong(value, pos, where, out)
        count, ok = len(value), True
        if self.max_items is not None and self.max_items == self.min_items != count:
            out.add(pos, where, f"expected {self.min_items} items, got {count}")
            return BAD
        if count < self.min_items:
            many = "one item" if self.min_items == 1 else f"{self.min_items} items"
            out.add(pos, where, f"needs at least {many}")
            ok = False
        if self.max_items is not None and count > self.max_items:
            out.add(pos, where, f"has {count} items, at most {self.max_items} allowed")
            ok = False
        built: list[Any] = []
        seen: dict[Any, int] = {}
        for i, item in enumerate(value):
            child = (*where, i)
            item_pos = node_pos(item, key_pos(value, i))
            out.positions[child] = item_pos
            if item is None:
                out.add(item_pos, child, f"empty item: expected {self.item.expected_text()}")
                continue
            one = self.item.check(item, item_pos, child, out)
            if one is BAD:
                continue
            if self.unique:
                try:
                    first = seen.setdefault(one, i)
                except TypeError:
                    first = i
                if first != i:
                    out.add(item_pos, child, f"{item!s} is already listed as item {first}")
                    continue
            built.append(one)
        return tuple(built) if ok else BAD

    def expected_text(self) -> str:
        return "a list"

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "array", "items": self.item.json_schema()}
        if self.min_items:
            out["minItems"] = self.min_items
        if self.max_items is not None:
            out["maxItems"] = self.max_items
        if self.unique:
            out["uniqueItems"] = True
        if self.description:
            out["description"] = self.description
        return out

    def type_text(self) -> str:
        if self.min_items == self.max_items == 2:
            return f"pair of {self.item.type_text()}"
        size = f" (at least {self.min_items})" if self.min_items else ""
        return f"list{size} of {self.item.type_text()}"

    def children(self) -> Iterator[Spec]:
        yield self.item


@dataclass
class MapOf(Spec):
    """A mapping from free keys (each checked by ``key``) to values of one
    shape; built into a tuple of ``(key, value)`` pairs or, with
    ``name_field``, a tuple of the records, each with its key as that field
    (the nodes of a topology)."""

    value: Spec
    # Keyword-only: ``MapOf(value, key=...)``, so that the older order
    # (key first) cannot be written by mistake and pass unnoticed.
    _: KW_ONLY
    key: Spec = field(default_factory=Str)
    description: str = ""
    min_items: int = 0
    name_field: str | None = None

    def accepts(self, value: Any) -> bool:
        return is_map(value)

    def check(self, value: Any, pos: Pos, where: Where, out: Checker) -> Any:
        if not is_map(value):
            return self.wrong(value, pos, where, out)
        if len(value) < self.min_items:
            out.add(pos, where, "needs at least one entry")
            return BAD
        built: list[Any] = []
        first_at: dict[Any, Pos] = {}
        for key, item in value.items():
            at = key_pos(value, key)
            name = self._key(key, at, where, out)
            if name is BAD:
                continue
            child = (*where, name)
            if name in first_at:
                out.add(at, child, f"{key!s} is the same as the key on line {first_at[name][0]}")
                continue
            first_at[name] = at
            out.positions[child] = at
            if item is None:
                out.add(at, child, f"no value: expected {self.value.expected_text()}")
                continue
            item_pos = value_pos(value, key)
            if self.name_field is not None and isinstance(self.value, Record):
                fields = self.value.fields_of(item, item_pos, child, out)
                if fields is not None:
                    built.append(self.value.build({**fields, self.name_field: name}))
                continue
            one = self.value.check(item, item_pos, child, out)
            if one is not BAD:
                built.append((name, one))
        return tuple(built)

    def _key(self, key: Any, at: Pos, where: Where, out: Checker) -> Any:
        """The key as its spec builds it; its problem reads ``KEY: message``."""
        quiet = Checker(out.path)
        name = self.key.check(plain(key), at, (), quiet)
        for problem in quiet.problems:
            out.add(at, where, f"key {key!s}: {problem.message}", [(*where, str(key))])
        return name

    def expected_text(self) -> str:
        return "a mapping"

    def schema(self) -> dict[str, Any]:
        key = self.key.schema()
        key.pop("description", None)
        out: dict[str, Any] = {
            "type": "object",
            "propertyNames": key,
            "additionalProperties": self.value.json_schema(),
        }
        if self.min_items:
            out["minProperties"] = self.min_items
        if self.description:
            out["description"] = self.description
        return out

    def type_text(self) -> str:
        return f"mapping {self.key.type_text()} → {self.value.type_text()}"

    def children(self) -> Iterator[Spec]:
        yield self.value


@dataclass
class Field:
    """One key of a :class:`Record`. ``default`` is what an absent key means,
    written as in YAML (``"30s"``, ``[587, 465]``); None: no default."""

    spec: Spec
    description: str = ""
    required: bool = False
    default: Any = None


@dataclass(frozen=True)
class OnlyWhen:
    """``key`` may appear only when ``other`` is one of ``values``."""

    key: str
    other: str
    values: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class RequiredWhen:
    """``key`` must appear when ``other`` is one of ``values``."""

    key: str
    other: str
    values: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class Together:
    """``keys`` appear all together or not at all."""

    keys: tuple[str, ...]
    why: str


Rule = OnlyWhen | RequiredWhen | Together


@dataclass
class Record(Spec):
    """A mapping with known keys; any other key is an error. Built by
    ``model(**fields)`` (a :mod:`sim.topology.model` class), or into a dict."""

    fields: dict[str, Field]
    name: str | None = None
    description: str = ""
    rules: tuple[Rule, ...] = ()
    model: Callable[..., Any] | None = None
    #: Set by :class:`Tagged`: the tag key and the value that selects this record.
    tagged_as: tuple[str, str] | None = None

    def field(self, key: str) -> Field | None:
        return self.fields.get(key)

    def keys(self) -> tuple[str, ...]:
        return tuple(self.fields)

    def accepts(self, value: Any) -> bool:
        return is_map(value)

    def check(self, value: Any, pos: Pos, where: Where, out: Checker) -> Any:
        fields = self.fields_of(value, pos, where, out)
        return BAD if fields is None else self.build(fields)

    def build(self, fields: dict[str, Any]) -> Any:
        return fields if self.model is None else self.model(**fields)

    def fields_of(
        self, value: Any, pos: Pos, where: Where, out: Checker, skip: tuple[str, ...] = ()
    ) -> dict[str, Any] | None:
        """The record's built fields, or None when it cannot be built (not a
        mapping, or a required key missing or wrong)."""
        if not is_map(value):
            self.wrong(value, pos, where, out)
            return None
        out.positions.setdefault(where, node_pos(value, pos))
        # What is missing from a record is reported where it is named (`r1:`).
        here = out.positions[where]
        fields: dict[str, Any] = {}
        for key in value:
            if key in skip:
                continue
            f = self.fields.get(key) if isinstance(key, str) else None
            at = key_pos(value, key)
            if f is None:
                place = "the top level" if not where else a_an(self.name or "mapping")
                # A misspelt key stands for one that is absent: the meaning
                # checks must not judge the record as if that one were missing.
                absent = [(*where, k) for k in self.fields if k not in value]
                out.add(at, where, unknown_key(key, self.fields, place), absent)
                continue
            child = (*where, key)
            out.positions[child] = at
            item = value[key]
            if item is None:
                out.add(at, child, f"no value: expected {f.spec.expected_text()}")
                continue
            built = f.spec.check(item, value_pos(value, key), child, out)
            if built is not BAD:
                fields[key] = built
        for key, f in self.fields.items():
            if f.required and key not in value and key not in skip:
                out.add(
                    here, where, f"missing key {key!r} ({f.spec.expected_text()})", [(*where, key)]
                )
        self._rules(value, fields, where, here, out)
        # A required key with a bad value (already reported) leaves the record
        # incomplete too: it cannot be built.
        if all(k in fields for k, f in self.fields.items() if f.required and k not in skip):
            return fields
        out.taint.add(where)
        return None

    def _rules(
        self, value: Any, fields: dict[str, Any], where: Where, here: Pos, out: Checker
    ) -> None:
        def current(key: str) -> Any:
            # An invalid value (already reported) is unknown: no rule fires on it.
            if key in value:
                return fields.get(key, BAD)
            f = self.fields.get(key)
            return None if f is None else f.default

        for rule in self.rules:
            match rule:
                case OnlyWhen():
                    other = current(rule.other)
                    known = other is not BAD and other is not None
                    if rule.key in value and known and other not in rule.values:
                        allowed = " or ".join(rule.values)
                        out.add(
                            key_pos(value, rule.key),
                            (*where, rule.key),
                            f"only allowed when {rule.other} is {allowed} ({rule.why}); "
                            f"here {rule.other} is {other}",
                            [(*where, rule.key), (*where, rule.other)],
                        )
                        fields.pop(rule.key, None)
                case RequiredWhen():
                    other = current(rule.other)
                    if rule.key not in value and other in rule.values:
                        out.add(
                            here,
                            where,
                            f"missing {rule.key!r}: {rule.why} ({rule.other} is {other})",
                            [(*where, rule.key)],
                        )
                case Together():
                    present = [k for k in rule.keys if k in value]
                    if present and len(present) < len(rule.keys):
                        missing = [k for k in rule.keys if k not in value]
                        out.add(
                            key_pos(value, present[0]),
                            (*where, present[0]),
                            f"{' and '.join(rule.keys)} go together ({rule.why}): "
                            f"{', '.join(missing)} is missing",
                            [(*where, k) for k in rule.keys],
                        )
                        for k in present:
                            fields.pop(k, None)

    def top_level_problem(self, doc: Any, what: str, needs: tuple[str, ...] = ()) -> str | None:
        """What is wrong with a whole file that should be this record, before
        its keys can be looked at: nothing in it, or not a mapping. ``what``
        names the file (``topology``, ``lab``); ``needs`` the keys to start
        with (the required ones if not given)."""
        if doc is None:
            keys = [f"`{k}`" for k in needs or [k for k, f in self.fields.items() if f.required]]
            listed = ", ".join(keys[:-1]) + " and " + keys[-1] if len(keys) > 1 else keys[0]
            return (
                "the file is empty (nothing but comments or blank lines): "
                f"{a_an(what)} needs at least {listed}"
            )
        if not is_map(doc):
            return (
                f"the top level must be a mapping of keys ({', '.join(self.fields)}), "
                f"not {describe_value(doc)}"
            )
        return None

    def expected_text(self) -> str:
        if self.name:
            return f"a mapping of {self.name} keys ({', '.join(self.fields)})"
        return "a mapping"

    def schema(self) -> dict[str, Any]:
        properties = {key: field_schema(f) for key, f in self.fields.items()}
        required = [key for key, f in self.fields.items() if f.required]
        if self.tagged_as is not None:
            tag, value = self.tagged_as
            properties = {tag: {"const": value}, **properties}
            required = [tag, *required]
        out: dict[str, Any] = {"type": "object"}
        if self.description:
            out["description"] = self.description
        out["properties"] = properties
        out["additionalProperties"] = False
        if required:
            out["required"] = required
        conditions = [self._rule_schema(r) for r in self.rules if not isinstance(r, Together)]
        if conditions:
            out["allOf"] = conditions
        together = [r for r in self.rules if isinstance(r, Together)]
        if together:
            out["dependentRequired"] = {
                key: [k for k in rule.keys if k != key] for rule in together for key in rule.keys
            }
        return out

    def _is_present(self, key: str, values: tuple[str, ...]) -> dict[str, Any]:
        """JSON Schema of "``key`` is one of ``values``" (an absent key has its default)."""
        out: dict[str, Any] = {"properties": {key: {"enum": list(values)}}}
        other = self.fields.get(key)
        if (other.default if other else None) not in values:
            out["required"] = [key]
        return out

    def _rule_schema(self, rule: OnlyWhen | RequiredWhen) -> dict[str, Any]:
        if isinstance(rule, OnlyWhen):
            return {
                "if": {"required": [rule.key]},
                "then": self._is_present(rule.other, rule.values),
            }
        return {"if": self._is_present(rule.other, rule.values), "then": {"required": [rule.key]}}

    def type_text(self) -> str:
        return f"[{self.name}](#{slug(self.name)})" if self.name else "mapping"

    def children(self) -> Iterator[Spec]:
        for f in self.fields.values():
            yield f.spec


def field_schema(f: Field) -> dict[str, Any]:
    """A record key's JSON Schema: its spec's, with the key's description and default."""
    out = f.spec.json_schema()
    if f.description:
        out["description"] = f.description
    default = _as_written(f.spec, f.default)
    if default is not None:
        out["default"] = default
    return out


def _as_written(spec: Spec, default: Any) -> Any:
    """A default as its YAML value: some tables give ``"false"`` or ``"1"`` as
    text (how the reference shows it); the JSON Schema wants the value, and
    none at all rather than one of the wrong type."""
    if default is None or not isinstance(default, str) or spec.accepts(default):
        return default
    value: Any = {"true": True, "false": False}.get(default)
    if value is None and default.lstrip("-").isdigit():
        value = int(default)
    return value if value is not None and spec.accepts(value) else None


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

    def check(self, value: Any, pos: Pos, where: Where, out: Checker) -> Any:
        if not is_map(value):
            return self.wrong(value, pos, where, out)
        kinds = ", ".join(self.variants)
        if self.tag not in value:
            out.add(pos, where, f"missing key {self.tag!r} (one of {kinds})")
            return BAD
        kind = value[self.tag]
        variant = self.variants.get(kind) if isinstance(kind, str) else None
        if variant is None:
            out.add(
                value_pos(value, self.tag),
                (*where, self.tag),
                f"{kind!r} is not one of: {kinds}{suggest(kind, list(self.variants))}",
            )
            return BAD
        fields = variant.fields_of(value, pos, where, out, skip=(self.tag,))
        return BAD if fields is None else variant.build(fields)

    def expected_text(self) -> str:
        return f"a mapping with a {self.tag!r} key"

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
        return f"[{self.name}](#{slug(self.name)})" if self.name else "mapping"

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

    def check(self, value: Any, pos: Pos, where: Where, out: Checker) -> Any:
        names = ", ".join(self.options)
        if not is_map(value):
            return self.wrong(value, pos, where, out)
        if len(value) != 1:
            given = ", ".join(str(k) for k in value) or "none"
            out.add(pos, where, f"needs exactly one key out of: {names} (given: {given})")
            return BAD
        key = next(iter(value))
        option = self.options.get(key) if isinstance(key, str) else None
        if option is None:
            hint = suggest(key, list(self.options)) or f" (one of: {names})"
            out.add(key_pos(value, key), where, f"unknown key {key!r}{hint}")
            return BAD
        out.positions[(*where, key)] = key_pos(value, key)
        built = option.spec.check(value[key], value_pos(value, key), (*where, key), out)
        return BAD if built is BAD else {key: built}

    def expected_text(self) -> str:
        return f"a mapping with one key ({', '.join(self.options)})"

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "properties": {k: field_schema(f) for k, f in self.options.items()},
            "additionalProperties": False,
        }
        if self.description:
            out["description"] = self.description
        return out

    def type_text(self) -> str:
        return f"[{self.name}](#{slug(self.name)})" if self.name else "mapping"

    def children(self) -> Iterator[Spec]:
        for f in self.options.values():
            yield f.spec


@dataclass
class Either(Spec):
    """One of several shapes, chosen by the YAML type of the value; ``build``
    turns what the chosen one built into the value."""

    choices: tuple[Spec, ...]
    description: str = ""
    build: Callable[[Any], Any] | None = None
    #: What a message says is expected (``a list of check names or ...``).
    noun: str = ""

    def accepts(self, value: Any) -> bool:
        return any(c.accepts(value) for c in self.choices)

    def check(self, value: Any, pos: Pos, where: Where, out: Checker) -> Any:
        for choice in self.choices:
            if choice.accepts(value):
                built = choice.check(value, pos, where, out)
                if built is BAD or self.build is None:
                    return built
                return self.build(built)
        return self.wrong(value, pos, where, out)

    def expected_text(self) -> str:
        return self.noun or " or ".join(c.expected_text() for c in self.choices)

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"anyOf": [c.json_schema() for c in self.choices]}
        if self.description:
            out["description"] = self.description
        return out

    def type_text(self) -> str:
        return " or ".join(c.type_text() for c in self.choices)

    def children(self) -> Iterator[Spec]:
        yield from self.choices


def iter_specs(root: Spec) -> Iterator[Spec]:
    """Every spec reachable from ``root`` (map keys included), depth first, once."""
    seen: set[int] = set()

    def walk(spec: Spec) -> Iterator[Spec]:
        if id(spec) in seen:
            return
        seen.add(id(spec))
        yield spec
        if isinstance(spec, MapOf):
            yield from walk(spec.key)
        for child in spec.children():
            yield from walk(child)

    yield from walk(root)
