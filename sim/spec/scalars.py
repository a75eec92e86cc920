"""Kinds of scalar values: :class:`Str` (text, or one of a set of words:
:func:`Choice`), :class:`Int`, :class:`Bool`, :class:`Duration`,
:class:`Scalar` (a value written in a :class:`ValueFormat`: an address, a
domain name, a port...) and :class:`Anything`."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from sim.clock import parse_duration
from sim.fastclass import dataclass
from sim.spec.base import BAD, Checker, Spec, Where, plain, slug
from sim.spec.words import a_an, expected, suggest
from sim.spec.yamlpos import Pos, is_map, is_seq

__all__ = [
    "BOOLEAN_HINT",
    "DURATION_PATTERN",
    "Anything",
    "Bool",
    "Choice",
    "Duration",
    "Int",
    "Scalar",
    "Str",
    "ValueFormat",
    "parse_boolean",
    "parse_seconds",
]


# -- scalars ---------------------------------------------------------------


@dataclass
class Str(Spec):
    """Text; with ``enum``, one of a set of words."""

    description: str = ""
    enum: tuple[str, ...] = ()
    pattern: str | None = None
    pattern_hint: str = ""
    min_length: int = 1
    markdown: bool = False

    @property
    def values(self) -> tuple[str, ...]:
        """The words of a :func:`Choice`."""
        return self.enum

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str)

    def check(self, value: Any, pos: Pos, where: Where, out: Checker) -> Any:
        out.positions[where] = pos
        if not isinstance(value, str):
            return self.wrong(value, pos, where, out)
        value = str(value)
        if self.enum:
            if value not in self.enum:
                allowed = ", ".join(self.enum)
                out.add(
                    pos, where, f"{value!r} is not one of: {allowed}{suggest(value, self.enum)}"
                )
                return BAD
        elif len(value.strip()) < self.min_length:
            out.add(pos, where, "must not be empty")
            return BAD
        elif self.pattern and not re.match(self.pattern, value):
            out.add(pos, where, f"{value!r} is not valid: {self.pattern_hint or self.pattern}")
            return BAD
        return value

    def expected_text(self) -> str:
        return "one of " + ", ".join(self.enum) if self.enum else "text"

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
            return " | ".join(f"`{v}`" for v in self.enum)
        return "Markdown text" if self.markdown else "text"

    def key_name(self) -> str:
        return "name"


def Choice(*values: str | Iterable[str], description: str = "") -> Str:
    """One of a fixed set of words: ``Choice("tcp", "udp")``, or
    ``Choice(get_args(NodeKind))`` for words listed elsewhere."""
    if len(values) == 1 and not isinstance(values[0], str):
        return Str(description=description, enum=tuple(values[0]))
    return Str(description=description, enum=tuple(str(v) for v in values))


@dataclass
class Int(Spec):
    description: str = ""
    minimum: int | None = None
    maximum: int | None = None

    def accepts(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def check(self, value: Any, pos: Pos, where: Where, out: Checker) -> Any:
        out.positions[where] = pos
        if not self.accepts(value):
            return self.wrong(value, pos, where, out)
        if self.minimum is not None and value < self.minimum:
            out.add(pos, where, f"{value} is less than {self.minimum}")
            return BAD
        if self.maximum is not None and value > self.maximum:
            out.add(pos, where, f"{value} is more than {self.maximum}")
            return BAD
        return int(value)

    def expected_text(self) -> str:
        return "a whole number"

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


#: YAML 1.1 read yes/no/on/off as booleans; YAML 1.2 (what maillab reads) does not.
BOOLEAN_HINT = "YAML 1.2 reads only true and false as booleans"


def parse_boolean(value: object) -> bool:
    """``true`` or ``false``, or :class:`ValueError` saying what was expected."""
    if not isinstance(value, bool):
        raise ValueError(
            expected("true or false", value, BOOLEAN_HINT if isinstance(value, str) else "")
        )
    return value


@dataclass
class Bool(Spec):
    description: str = ""

    def accepts(self, value: Any) -> bool:
        return isinstance(plain(value), bool)

    def check(self, value: Any, pos: Pos, where: Where, out: Checker) -> Any:
        out.positions[where] = pos
        try:
            return parse_boolean(plain(value))
        except ValueError as err:
            out.add(pos, where, str(err))
            return BAD

    def expected_text(self) -> str:
        return "true or false"

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "boolean"}
        if self.description:
            out["description"] = self.description
        return out

    def type_text(self) -> str:
        return "`true` | `false`"


#: A duration in the syntax :func:`sim.clock.parse_duration` reads.
DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*[smhdw]?\s*$"
DURATION_WORDS = "a duration such as 30s, 5m, 2h or 5d"


def parse_seconds(value: object) -> float:
    """A duration in seconds, or :class:`ValueError` saying what was expected."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(expected(DURATION_WORDS, value))
    seconds = parse_duration(value)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError(f"expected {DURATION_WORDS}, got {value!r}")
    return seconds


@dataclass
class Duration(Spec):
    """A duration (lab time); the value is kept as written."""

    description: str = ""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str | int | float) and not isinstance(value, bool)

    def check(self, value: Any, pos: Pos, where: Where, out: Checker) -> Any:
        out.positions[where] = pos
        try:
            parse_seconds(plain(value))
        except ValueError as err:
            out.add(pos, where, str(err))
            return BAD
        return plain(value)

    def expected_text(self) -> str:
        return DURATION_WORDS

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


@dataclass(frozen=True)
class ValueFormat:
    """One kind of scalar value: how it is written, checked and converted.

    ``parse`` receives a plain YAML scalar (str, int, float, bool) and returns
    the converted value or raises :class:`ValueError` with a sentence that
    says what was expected (:func:`sim.spec.words.expected`). ``schema`` is
    the JSON Schema of the same format; ``written`` and ``example`` describe
    it in the reference.
    """

    name: str
    written: str
    example: str
    schema: dict[str, Any]
    parse: Callable[[object], object]
    #: Lower-case and drop a trailing dot (DNS names compare case-insensitively,
    #: RFC 4343); applied after parsing, so that ``QQ.example.`` is ``qq.example``.
    normalise: bool = False
    #: What a message says was expected, if not "a NAME such as EXAMPLE".
    expected: str = ""


@dataclass
class Scalar(Spec):
    """A scalar written in a :class:`ValueFormat`, built into what it parses to."""

    format: ValueFormat
    description: str = ""

    def accepts(self, value: Any) -> bool:
        return not (is_map(value) or is_seq(value))

    def check(self, value: Any, pos: Pos, where: Where, out: Checker) -> Any:
        if type(value).__name__ == "LiteralScalarString":
            # A block of text (a zone) is pointed at by its key; its lines
            # are found from the line of the `|`.
            out.blocks[where] = pos[0]
            out.positions.setdefault(where, pos)
        else:
            out.positions[where] = pos
        try:
            parsed = self.format.parse(plain(value))
        except ValueError as err:
            out.add(pos, where, str(err))
            return BAD
        if self.format.normalise and isinstance(parsed, str):
            parsed = parsed.lower().rstrip(".") or parsed
        return parsed

    def expected_text(self) -> str:
        if self.format.expected:
            return self.format.expected
        example = self.format.example.splitlines()[0]
        return f"{a_an(self.format.name)} such as {example}"

    def schema(self) -> dict[str, Any]:
        out = dict(self.format.schema)
        if self.description:
            out["description"] = self.description
        return out

    def type_text(self) -> str:
        return f"[{self.format.name}](#{slug(self.format.name)})"

    def key_name(self) -> str:
        return self.format.name


@dataclass
class Anything(Spec):
    """Any YAML value (for free-form arguments passed through unchanged)."""

    description: str = ""

    def check(self, value: Any, pos: Pos, where: Where, out: Checker) -> Any:
        out.positions[where] = pos
        if value is None:
            out.add(pos, where, "no value: expected a value")
            return BAD
        return value

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.description:
            out["description"] = self.description
        return out

    def type_text(self) -> str:
        return "any value"
