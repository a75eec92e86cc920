"""What every kind of value shares: :class:`Spec` (check, JSON Schema,
reference type), the :class:`Checker` that collects problems and positions
while a document is walked, and :data:`BAD`, the value of what did not pass.
The kinds themselves are in :mod:`sim.spec.scalars` and
:mod:`sim.spec.records`, listed together in :mod:`sim.spec.kinds`."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import field
from typing import Any

from sim.errors import Problem
from sim.fastclass import dataclass
from sim.spec.words import expected, path_text
from sim.spec.yamlpos import Pos

__all__ = ["BAD", "SLUG", "SLUG_HINT", "Checker", "Spec", "Where", "plain", "slug"]

SLUG = r"^[a-z0-9][a-z0-9_-]*$"
SLUG_HINT = "lower-case letters, digits, '-' and '_', starting with a letter or digit"

#: A key path: ``("nodes", "mx", "ip")``, ``("steps", 2, "run")``.
Where = tuple[str | int, ...]


class _Bad:
    """The value of something that did not pass (its problem is reported)."""

    def __repr__(self) -> str:
        return "BAD"


BAD: Any = _Bad()


@dataclass
class Checker:
    """Collects the problems of one file while a spec walks its document, and
    where each key path is (1-based), for problems found after the walk."""

    path: str
    problems: list[Problem] = field(default_factory=list)
    #: Where each key path is: a scalar's value, a container's key.
    positions: dict[Where, Pos] = field(default_factory=dict)
    #: Literal block scalars (``|``): the line of the indicator.
    blocks: dict[Where, int] = field(default_factory=dict)
    #: Key paths with a structural problem: checks of meaning that depend on
    #: them are skipped (fix the structure and they run).
    taint: set[Where] = field(default_factory=set)

    def add(
        self, pos: Pos, where: Where, message: str, taint: Iterable[Where] | None = None
    ) -> None:
        """A problem at ``pos`` about ``where``; ``taint`` (default: ``where``)
        names what the meaning checks can no longer trust."""
        prefix = f"{path_text(where)}: " if where else ""
        self.problems.append(Problem(self.path, pos[0], pos[1], prefix + message))
        self.taint.update([where] if taint is None else taint)


def plain(value: Any) -> Any:
    """ruamel's scalar subclasses → plain Python values (without importing ruamel)."""
    if isinstance(value, bool) or value is None:
        return value
    if type(value).__name__ == "ScalarBoolean":
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


def slug(name: str) -> str:
    """The Markdown anchor of a heading (GitHub's rule for simple names)."""
    return re.sub(r"[^a-z0-9-]", "", name.lower().replace(" ", "-"))


class Spec(ABC):
    """The shape of one YAML value."""

    description: str = ""
    #: A name for the JSON Schema ``$defs`` and a section of the reference.
    name: str | None = None

    @abstractmethod
    def check(self, value: Any, pos: Pos, where: Where, out: Checker) -> Any:
        """Report every problem of ``value`` (which starts at ``pos``); return
        the value built, or :data:`BAD`."""

    @abstractmethod
    def schema(self) -> dict[str, Any]:
        """The JSON Schema of this shape (inline, without ``$defs``)."""

    @abstractmethod
    def type_text(self) -> str:
        """A short type for the Markdown reference (``text``, ``list of [Step](#step)``)."""

    def expected_text(self) -> str:
        """What a message says was expected (``a list``, ``an IPv4 address such as ...``)."""
        return self.type_text()

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

    def key_name(self) -> str:
        """How a key of this kind is shown in "appears at" paths (``<node name>``)."""
        return "key"

    def wrong(self, value: Any, pos: Pos, where: Where, out: Checker, hint: str = "") -> Any:
        """``expected X, got Y``; returns :data:`BAD`."""
        out.add(pos, where, expected(self.expected_text(), value, hint))
        return BAD
