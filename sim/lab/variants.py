"""Per-student variants of a lab (issue 16 §1): variables drawn from the
student id and the lab id, substituted into the lab file and its topology.

A lab declares its variables at the top level::

    variables:
      shop:
        choice: [shop.example, store.example, bakery.example]
        default: shop.example
        description: the domain the student looks after
      web_ip: {address: 203.0.113.64/27, default: 203.0.113.80}
      n: {number: 10-99}
      site: {value: "shop${n}.example"}
      password: {password: 10}

and writes ``${name}`` anywhere in the rest of the file: texts, questions,
accepted answers, checks, hints, solutions, setup (``$${`` is a literal
``${``). The file is substituted as text before it is read as YAML, so
every place takes a variable the same way, and a problem in a student's
variant points at the line of the file.

The topology is written with the variables' ``default`` values (so it loads
and draws on its own); a student's variant replaces each default, wherever
it stands as a whole name or address, by the student's value
(``mail.shop.example`` becomes ``mail.store.example``; ``myshop.example`` is
left alone).

Each value is drawn by :mod:`sim.lab.draw` from the student id, the lab id
and the variable's name: the same student gets the same lab on every run and
machine, and two students usually get different ones. Without a student (a
lab file read for validation or listing) each variable takes its
``default``, or the draw for the empty student id when it has none.
"""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sim.errors import Problem
from sim.fastclass import dataclass
from sim.lab.draw import draw_choice, draw_index
from sim.spec.kinds import Field, Int, ListOf, MapOf, Record, Str, path_text, suggest
from sim.spec.yamlpos import is_map, locate

__all__ = [
    "KINDS",
    "VARIABLES_SPEC",
    "Variable",
    "default_problems",
    "describe_values",
    "draw_values",
    "parse_variables",
    "substitute",
    "topology_text",
]

#: The kinds of variable, each a key of the variable's mapping.
KINDS = ("choice", "address", "number", "password", "value")
NAME = r"^[a-z][a-z0-9_]*$"
#: ``${name}`` (a variable) or ``$${`` (a literal ``${``).
_REF = re.compile(r"\$\$\{|\$\{([^}\n]*)\}")
#: Passwords are drawn from letters and digits only: they stay plain YAML
#: scalars and plain SMTP AUTH PLAIN arguments wherever they are written.
_ALPHABET = string.ascii_letters + string.digits
#: What may not touch a default for it to be replaced in the topology (a
#: name or address continues with these characters).
_WORD = r"A-Za-z0-9_-"

VARIABLE_SPEC = Record(
    {
        "choice": Field(
            ListOf(Str(), min_items=2),
            description="one of these values (domains, selectors, user names, faults...)",
        ),
        "address": Field(
            Str(), description="an IPv4 or IPv6 host address drawn in this range (CIDR)"
        ),
        "number": Field(
            Str(pattern=r"^\d+-\d+$", pattern_hint="two whole numbers such as 10-99"),
            description="a whole number in this range, such as `10-99`",
        ),
        "password": Field(
            Int(minimum=6, maximum=64),
            description="a password of this many letters and digits",
        ),
        "value": Field(
            Str(),
            description="text built from earlier variables, such as `shop${n}.example`",
        ),
        "default": Field(
            Str(),
            description="the value without a student (validation, listing); the topology "
            "is written with it, and each student's value replaces it there",
        ),
        "description": Field(
            Str(), description="what the variable is (shown by `maillab grade --explain`)"
        ),
    },
    name="Variable",
    description="One per-student variable: exactly one of `choice`, `address`, `number`, "
    "`password` or `value`; the lab writes it as `${name}`.",
)

VARIABLES_SPEC = MapOf(
    VARIABLE_SPEC,
    key=Str(pattern=NAME, pattern_hint="lower-case letters, digits and _ (a letter first)"),
    description="per-student variables, drawn from the student id and the lab id",
    min_items=1,
)


@dataclass(frozen=True)
class Variable:
    """One declared variable: its ``kind`` (a key of :data:`KINDS`) and the
    kind's ``spec`` (choices, a range, a length or a template)."""

    name: str
    kind: str
    spec: Any
    default: str | None = None
    description: str = ""

    def draw(self, student: str, lab_id: str, known: Mapping[str, str]) -> str:
        """This variable's value for ``student`` (``known``: the earlier ones)."""
        if self.kind == "choice":
            return str(draw_choice(student, lab_id, self.name, self.spec))
        if self.kind == "number":
            low, high = self.spec
            return str(low + draw_index(student, lab_id, self.name, high - low + 1))
        if self.kind == "address":
            network = ipaddress.ip_network(self.spec, strict=False)
            first, count = _host_span(network)
            return str(network[first + draw_index(student, lab_id, self.name, count)])
        if self.kind == "password":
            return "".join(
                draw_choice(student, lab_id, f"{self.name}[{i}]", _ALPHABET)
                for i in range(int(self.spec))
            )
        text, _ = _fill(str(self.spec), known)
        return text

    def values(self) -> list[str] | None:
        """Every value this variable can take, when there are few (≤ 64)."""
        if self.kind == "choice":
            return [str(c) for c in self.spec]
        if self.kind == "number":
            low, high = self.spec
            return [str(n) for n in range(low, high + 1)] if high - low < 64 else None
        if self.kind == "address":
            network = ipaddress.ip_network(self.spec, strict=False)
            first, count = _host_span(network)
            return [str(network[first + i]) for i in range(count)] if count <= 64 else None
        return None  # a password has too many values; a value follows the others

    def describe(self) -> str:
        """What a student may get, in words."""
        if self.kind == "choice":
            return "one of " + ", ".join(str(c) for c in self.spec)
        if self.kind == "number":
            return f"a number from {self.spec[0]} to {self.spec[1]}"
        if self.kind == "address":
            return f"an address in {self.spec}"
        if self.kind == "password":
            return f"a password of {self.spec} letters and digits"
        return f"{self.spec}"


def _host_span(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[int, int]:
    """The first host's index and the number of hosts (not the network's
    own address nor, in IPv4, its broadcast address; RFC 919)."""
    if network.num_addresses <= 2:
        return 0, network.num_addresses
    return 1, network.num_addresses - 2


def _fill(text: str, values: Mapping[str, str]) -> tuple[str, list[tuple[int, str]]]:
    """``text`` with each ``${name}`` replaced; the offsets and names of the
    unknown ones."""
    unknown: list[tuple[int, str]] = []

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name = match.group(1).strip()
        if name in values:
            return values[name]
        unknown.append((match.start(), name))
        return match.group(0)

    return _REF.sub(one, text), unknown


# -- reading the declarations -------------------------------------------------------


def parse_variables(
    doc: Any, source: str, restore: Callable[[str], str] = str
) -> tuple[tuple[Variable, ...], list[Problem]]:
    """The ``variables`` of a lab document (already checked against
    :data:`VARIABLES_SPEC`) and the problems of their meaning. ``restore``
    gives a ``value`` template back its ``${name}`` (the loader reads the
    file once with each replaced by a plain word)."""
    raw: Any = doc.get("variables") if is_map(doc) else None
    if raw is None or not is_map(raw):
        return (), []
    problems: list[Problem] = []

    def add(path: tuple[str | int, ...], message: str) -> None:
        line, col = locate(doc, path)
        problems.append(Problem(source, line, col, f"{path_text(path)}: {message}"))

    out: list[Variable] = []
    for name, item in raw.items():
        where: tuple[str | int, ...] = ("variables", str(name))
        kinds = [k for k in KINDS if k in item]
        if len(kinds) != 1:
            given = ", ".join(kinds) or "none"
            add(where, f"needs exactly one of {', '.join(KINDS)} (given: {given})")
            continue
        kind = kinds[0]
        value: Any = item[kind]
        if kind == "choice":
            value = tuple(str(v) for v in value)
            if len(set(value)) != len(value):
                add((*where, kind), "a value is listed twice")
        elif kind == "number":
            low, high = (int(n) for n in str(value).split("-"))
            if low > high:
                add((*where, kind), f"{low} is more than {high}")
            value = (low, high)
        elif kind == "address":
            try:
                network = ipaddress.ip_network(str(value), strict=False)
            except ValueError as err:
                add((*where, kind), f"not an address range: {err}")
                continue
            if network.num_addresses < 2 and network.prefixlen != network.max_prefixlen:
                add((*where, kind), "the range has no host address")
            value = str(network)
        elif kind == "value":
            value = restore(str(value))
            _, unknown = _fill(value, {v.name: "" for v in out})
            for _, ref in unknown:
                hint = suggest(ref, [v.name for v in out])
                add(
                    (*where, kind),
                    f"${{{ref}}} is not an earlier variable{hint} "
                    "(a value is built from the variables declared above it)",
                )
        default = item.get("default")
        out.append(
            Variable(
                str(name),
                kind,
                value,
                None if default is None else str(default),
                str(item.get("description") or ""),
            )
        )
    return tuple(out), problems


def draw_values(
    variables: Iterable[Variable],
    student: str | None,
    lab_id: str,
    chosen: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Every variable's value for ``student``; without a student, the
    defaults (or the draw for the empty student id where none is given).
    ``chosen`` values stand instead of the draw (a ``value`` built from
    them follows)."""
    values: dict[str, str] = {}
    for variable in variables:
        if chosen is not None and variable.name in chosen:
            values[variable.name] = str(chosen[variable.name])
        elif student is None and variable.default is not None:
            values[variable.name] = variable.default
        else:
            values[variable.name] = variable.draw(student or "", lab_id, values)
    return values


def describe_values(values: Mapping[str, str]) -> str:
    """``shop=store.example, selector=k1``: a variant in one line."""
    return ", ".join(f"{k}={v}" for k, v in values.items())


# -- substitution ------------------------------------------------------------------


def substitute(text: str, values: Mapping[str, str], source: str) -> tuple[str, list[Problem]]:
    """A lab file's text with its variables filled in; an unknown
    ``${name}`` is a problem at its line and column."""
    filled, unknown = _fill(text, values)
    problems = []
    for offset, name in unknown:
        line = text.count("\n", 0, offset) + 1
        col = offset - (text.rfind("\n", 0, offset) + 1) + 1
        if values:
            hint = suggest(name, list(values)) or f" (variables: {', '.join(values)})"
            why = f"${{{name}}} is not a variable of this lab{hint}"
        else:
            why = f"${{{name}}}: the lab declares no `variables` (write $${{ for a literal ${{)"
        problems.append(Problem(source, line, col, why))
    return filled, problems


def topology_text(text: str, variables: Iterable[Variable], values: Mapping[str, str]) -> str:
    """The topology's text for a variant: each variable's default replaced,
    where it stands as a whole name or address, by its value."""
    swaps = {
        v.default: values[v.name]
        for v in variables
        if v.default and v.name in values and values[v.name] != v.default
    }
    if not swaps:
        return text
    # One pass, longest default first: a value is never replaced again, and
    # "shop.example" wins over a shorter default inside it.
    alternatives = "|".join(re.escape(d) for d in sorted(swaps, key=len, reverse=True))
    pattern = re.compile(rf"(?<![{_WORD}])(?:{alternatives})(?![{_WORD}])")
    return pattern.sub(lambda m: swaps[m.group(0)], text)


def default_problems(text: str, variables: Iterable[Variable], source: str) -> list[Problem]:
    """Places where the lab's text names a variable's default literally
    (outside ``variables``): every student would read the default there,
    not their own value."""
    lines = text.splitlines()
    # Skip the variables block: from its key to the next top-level key.
    skip: set[int] = set()
    inside = False
    for number, line in enumerate(lines):
        if line.startswith("variables:"):
            inside = True
        elif inside and line[:1] not in ("", " ", "#", "\t"):
            inside = False
        if inside:
            skip.add(number)
    problems = []
    for variable in variables:
        if not variable.default:
            continue
        pattern = re.compile(rf"(?<![{_WORD}]){re.escape(variable.default)}(?![{_WORD}])")
        for number, line in enumerate(lines):
            if number in skip:
                continue
            for found in pattern.finditer(line):
                problems.append(
                    Problem(
                        source,
                        number + 1,
                        found.start() + 1,
                        f"{variable.default!r} is the default of the variable "
                        f"{variable.name}: write ${{{variable.name}}} so that each "
                        "student reads their own value",
                    )
                )
    return problems
