"""The documents generated from a format's table of kinds: its JSON Schema
(draft 2020-12, for editors) and the tables of its Markdown reference.

Each format adds its own introduction (an example, its value formats, its
meaning checks); the sections for its kinds, one per named kind in the order
a reader meets them, come from here, so every format's reference reads alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sim.spec.kinds import (
    Field,
    ListOf,
    MapOf,
    OneKey,
    OnlyWhen,
    Record,
    RequiredWhen,
    Spec,
    Tagged,
    Together,
)

__all__ = ["JSON_SCHEMA_DIALECT", "document_schema", "markdown_sections", "named_specs"]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def named_specs(root: Spec) -> list[tuple[Spec, str]]:
    """Every named spec reachable from ``root``, in first-seen order (depth
    first), with the key path where it first appears (``nodes.<node name>``)."""
    found: dict[str, tuple[Spec, str]] = {}

    def key(where: str, name: str) -> str:
        return f"{where}.{name}" if where else name

    def walk(spec: Spec, where: str) -> None:
        if spec.name:
            if spec.name in found:
                return
            found[spec.name] = (spec, where)
        match spec:
            case Record():
                for name, f in spec.fields.items():
                    walk(f.spec, key(where, name))
            case OneKey():
                for name, f in spec.options.items():
                    walk(f.spec, key(where, name))
            case ListOf():
                walk(spec.item, f"{where}[]")
            case MapOf():
                walk(spec.value, f"{where}.<{spec.key.key_name()}>")
            case _:
                for child in spec.children():
                    walk(child, where)

    walk(root, "")
    return list(found.values())


def document_schema(root: Spec, head: dict[str, Any], *, inline_root: bool) -> dict[str, Any]:
    """The JSON Schema of a file whose top level is ``root``: ``head`` (title,
    description...) first, then the root inline (``inline_root``) or as a
    reference, and every other named kind under ``$defs``."""
    defs = {
        spec.name: spec.schema()
        for spec, _ in named_specs(root)
        if spec.name and not (inline_root and spec is root)
    }
    body = root.schema() if inline_root else {"$ref": f"#/$defs/{root.name}"}
    return {"$schema": JSON_SCHEMA_DIALECT, **head, **body, "$defs": defs}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _flow(value: Any) -> str:
    """A default as YAML flow text: ``[5m, 30m]``, ``true``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    return str(value)


def _default(f: Field) -> str:
    if f.required:
        return "**required**"
    if f.default is None or (f.default == {} and isinstance(f.spec, Record)):
        return "—"
    return f"`{_flow(f.default)}`"


def _rule(rule: OnlyWhen | RequiredWhen | Together) -> str:
    if isinstance(rule, OnlyWhen | RequiredWhen):
        values = " or ".join(f"`{v}`" for v in rule.values)
        verb = "only when" if isinstance(rule, OnlyWhen) else "is required when"
        return f"`{rule.key}` {verb} `{rule.other}` is {values}: {rule.why}."
    keys = " and ".join(f"`{k}`" for k in rule.keys)
    return f"{keys} go together: {rule.why}."


def _rows(spec: Spec) -> Iterator[tuple[str, ...]]:
    match spec:
        case Record():
            yield ("Key", "Type", "Default", "Description")
            for key, f in spec.fields.items():
                yield (f"`{key}`", f.spec.type_text(), _default(f), f.description)
        case OneKey():
            yield ("Key", "Type", "Default", "Description")
            for key, f in spec.options.items():
                yield (f"`{key}`", f.spec.type_text(), "one key of these", f.description)
        case Tagged():
            yield (f"`{spec.tag}`", "Keys", "Written", "Description")
            for kind, variant in spec.variants.items():
                yield (
                    f"`{kind}`",
                    variant.type_text(),
                    f"`{spec.tag}: {kind}`",
                    variant.description,
                )
        case _:
            return


def markdown_sections(root: Spec) -> list[str]:
    """One section per named kind: its description, where it appears, a table
    of its keys (type, default, description) and the rules between them."""
    out: list[str] = []
    for spec, where in named_specs(root):
        out += [f"## {spec.name}", ""]
        if spec.description:
            out += [spec.description, ""]
        if where:
            out += [f"Appears at `{where}`.", ""]
        rows = list(_rows(spec))
        if len(rows) > 1:
            header, *body = rows
            out += ["| " + " | ".join(header) + " |", "|---|---|---|---|"]
            out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in body]
            out.append("")
        rules = getattr(spec, "rules", ())
        if rules:
            out += [f"* {_rule(rule)}" for rule in rules]
            out.append("")
    return out
