"""Load a topology file: bytes → YAML → structure → model → meaning.

1. **Read.** A missing file, a directory, a binary file or text that is not
   UTF-8 is one problem, never an exception.
2. **YAML.** ruamel.yaml's round-trip loader keeps the line and column of
   every key, value and list item. Syntax errors keep the parser's position;
   duplicate keys (an error in YAML 1.2 §3.2.1.3) are all found and reported
   at the second occurrence.
3. **Structure.** The document is walked along the table of
   :mod:`sim.topology.schema`: unknown keys (with a suggestion), wrong types,
   missing keys, bad values, keys that need or exclude another. Each record
   becomes its :mod:`sim.topology.model` object.
4. **Meaning.** :func:`sim.topology.validate.check_topology` looks at the
   whole model. A finding about a part that already has a structural problem
   is dropped: fix the structure and it will be checked.
5. **Layout.** A clean topology is laid out as a network
   (:func:`sim.topology.graph.build_network`), so that anything the layout
   cannot do is reported here, with a line, rather than when a lab starts.

Every problem is a :class:`~sim.errors.Problem` ``PATH:LINE:COL: key.path: message``.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode
from ruamel.yaml.scalarbool import ScalarBoolean
from ruamel.yaml.scalarstring import LiteralScalarString

from sim.errors import Problem, TopologyError
from sim.spec.source import read_text
from sim.spec.words import a_an, unknown_key
from sim.topology.model import Topology
from sim.topology.schema import (
    FORMATS,
    TOPOLOGY,
    Choice,
    Either,
    ListOf,
    MapOf,
    OnlyWhen,
    Record,
    RequiredWhen,
    Scalar,
    Spec,
    Together,
    describe_value,
)
from sim.topology.validate import Finding, KeyPath, check_topology, render_path

__all__ = [
    "Locator",
    "load_topology",
    "loads_topology",
    "structure_problems",
    "validate_topology_file",
    "validate_topology_text",
]

Pos = tuple[int, int]  # 0-based line and column, as ruamel keeps them


class _Bad:
    """The value of something that did not pass (already reported)."""


_BAD = _Bad()


# -- positions -----------------------------------------------------------------------


def _own_pos(value: Any, fallback: Pos) -> Pos:
    lc = getattr(value, "lc", None)
    if lc is None or getattr(lc, "line", None) is None:
        return fallback
    return (lc.line, lc.col)


def _key_pos(mapping: Any, key: Any, fallback: Pos) -> Pos:
    try:
        line, col = mapping.lc.key(key)
    except (AttributeError, KeyError, TypeError):
        return fallback  # a plain dict, or a key merged in with <<
    return (line, col)


def _value_pos(mapping: Any, key: Any, fallback: Pos) -> Pos:
    try:
        line, col = mapping.lc.value(key)
    except (AttributeError, KeyError, TypeError):
        return fallback
    return (line, col)


def _item_pos(seq: Any, index: int, fallback: Pos) -> Pos:
    try:
        line, col = seq.lc.item(index)
    except (AttributeError, KeyError, TypeError, IndexError):
        return fallback
    return (line, col)


@dataclass
class Locator:
    """Where each key path of a loaded file is, for problems found later."""

    positions: dict[KeyPath, Pos] = field(default_factory=dict)
    #: Literal block scalars (``|``): the 0-based line of the indicator.
    blocks: dict[KeyPath, int] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def at(self, path: KeyPath) -> Pos:
        """The 1-based position of ``path``, or of its nearest known ancestor."""
        while path and path not in self.positions:
            path = path[:-1]
        line, col = self.positions.get(path, (0, 0))
        return (line + 1, col + 1)

    def in_text(self, path: KeyPath, text_line: int) -> Pos:
        """The 1-based file position of line ``text_line`` of the text at ``path``.

        A literal block keeps the text's lines one to one, starting on the line
        after the ``|``; any other style of scalar is pointed at as a whole.
        """
        indicator = self.blocks.get(path)
        if indicator is None:
            return self.at(path)
        index = indicator + text_line  # 0-based line in the file
        text = self.lines[index] if 0 <= index < len(self.lines) else ""
        indent = len(text) - len(text.lstrip(" "))
        return (index + 1, indent + 1)


# -- the structural walk -------------------------------------------------------------


def _plain(value: Any) -> Any:
    """ruamel's scalar subclasses → plain Python values."""
    if isinstance(value, ScalarBoolean):
        return bool(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


def _expected(spec: Spec) -> str:
    match spec:
        case Scalar():
            fmt = FORMATS[spec.format]
            article = "an" if fmt.name[0] in "aeiouAEIOU" else "a"
            return f"{article} {fmt.name} such as {fmt.example.splitlines()[0]}"
        case Choice():
            return "one of " + ", ".join(spec.values)
        case ListOf():
            return "a list"
        case MapOf():
            return "a mapping"
        case Record():
            return f"a mapping of {spec.name} keys ({', '.join(spec.keys())})"
        case Either():
            return spec.noun or " or ".join(_expected(option) for option in spec.options)


def _default_of(record: Record, key: str) -> Any:
    f = record.field(key)
    return None if f is None else f.default


class _Walker:
    """Walks YAML along the schema table, collecting problems and positions."""

    def __init__(self, source: str, locator: Locator) -> None:
        self.source = source
        self.locator = locator
        self.problems: list[Problem] = []
        #: Key paths with a structural problem; meaning checks that depend on
        #: them are skipped.
        self.taint: set[KeyPath] = set()

    def report(
        self, path: KeyPath, pos: Pos, message: str, taint: list[KeyPath] | None = None
    ) -> None:
        """A problem at ``pos`` about ``path``; ``taint`` (default: ``path``)
        names what the meaning checks can no longer trust."""
        prefix = f"{render_path(path)}: " if path else ""
        self.problems.append(Problem(self.source, pos[0] + 1, pos[1] + 1, prefix + message))
        self.taint.update([path] if taint is None else taint)

    # One entry point per spec kind; each returns the built value or _BAD.

    def walk(self, spec: Spec, value: Any, path: KeyPath, pos: Pos) -> Any:
        match spec:
            case Scalar():
                return self.scalar(spec, value, path, pos)
            case Choice():
                return self.choice(spec, value, path, pos)
            case ListOf():
                return self.list_of(spec, value, path, pos)
            case MapOf():
                return self.map_of(spec, value, path, pos)
            case Record():
                fields = self.record_fields(spec, value, path, pos)
                if fields is None:
                    self.taint.add(path)
                    return _BAD
                return self.build(spec, fields)
            case Either():
                return self.either(spec, value, path, pos)

    def scalar(self, spec: Scalar, value: Any, path: KeyPath, pos: Pos) -> Any:
        fmt = FORMATS[spec.format]
        if isinstance(value, LiteralScalarString):
            # A block of text (a zone) is pointed at by its key; its lines
            # are found from the line of the `|`.
            self.locator.blocks[path] = pos[0]
            self.locator.positions.setdefault(path, pos)
        else:
            self.locator.positions[path] = pos
        try:
            parsed = fmt.parse(_plain(value))
        except ValueError as err:
            self.report(path, pos, str(err))
            return _BAD
        if fmt.normalise and isinstance(parsed, str):
            parsed = _normalise(parsed)
        return parsed

    def choice(self, spec: Choice, value: Any, path: KeyPath, pos: Pos) -> Any:
        self.locator.positions[path] = pos
        value = _plain(value)
        if isinstance(value, str) and value in spec.values:
            return value
        allowed = ", ".join(spec.values)
        if isinstance(value, str):
            close = difflib.get_close_matches(value, spec.values, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.report(path, pos, f"{value!r} is not one of: {allowed}{hint}")
        else:
            self.report(path, pos, f"expected one of {allowed}, got {describe_value(value)}")
        return _BAD

    def list_of(self, spec: ListOf, value: Any, path: KeyPath, pos: Pos) -> Any:
        if not isinstance(value, list):
            self.report(path, pos, f"expected a list, got {describe_value(value)}")
            return _BAD
        count = len(value)
        if spec.max_items is not None and spec.max_items == spec.min_items != count:
            self.report(path, pos, f"expected {spec.min_items} items, got {count}")
            return _BAD
        if count < spec.min_items:
            self.report(path, pos, f"expected at least {spec.min_items} item(s), got {count}")
            return _BAD
        if spec.max_items is not None and count > spec.max_items:
            self.report(path, pos, f"expected at most {spec.max_items} items, got {count}")
            return _BAD
        out: list[Any] = []
        seen: dict[Any, int] = {}
        for index, item in enumerate(value):
            child = (*path, index)
            item_pos = _item_pos(value, index, pos)
            self.locator.positions[child] = item_pos
            if item is None:
                self.report(child, item_pos, f"empty item: expected {_expected(spec.item)}")
                continue
            built = self.walk(spec.item, item, child, item_pos)
            if built is _BAD:
                continue
            if spec.unique:
                try:
                    first = seen.setdefault(built, index)
                except TypeError:
                    first = index
                if first != index:
                    self.report(child, item_pos, f"{item!s} is already listed as item {first}")
                    continue
            out.append(built)
        return tuple(out)

    def map_of(self, spec: MapOf, value: Any, path: KeyPath, pos: Pos) -> Any:
        if not isinstance(value, dict):
            self.report(path, pos, f"expected a mapping, got {describe_value(value)}")
            return _BAD
        if len(value) < spec.min_items:
            self.report(path, pos, f"expected at least {spec.min_items} entry, got none")
            return _BAD
        key_format = FORMATS[spec.key.format]
        out: list[Any] = []
        first_at: dict[str, Pos] = {}
        for key, item in value.items():
            key_pos = _key_pos(value, key, pos)
            try:
                name = key_format.parse(_plain(key))
            except ValueError as err:
                self.report(path, key_pos, f"key {key!s}: {err}", [(*path, str(key))])
                continue
            assert isinstance(name, str)
            if key_format.normalise:
                name = _normalise(name)
            child = (*path, name)
            if name in first_at:
                self.report(
                    child,
                    key_pos,
                    f"{key!s} is the same as the key on line {first_at[name][0] + 1}",
                )
                continue
            first_at[name] = key_pos
            self.locator.positions[child] = key_pos
            if item is None:
                self.report(child, key_pos, f"no value: expected {_expected(spec.value)}")
                continue
            item_pos = _value_pos(value, key, key_pos)
            if spec.name_field is not None and isinstance(spec.value, Record):
                fields = self.record_fields(spec.value, item, child, item_pos)
                if fields is None:
                    self.taint.add(child)
                    continue
                fields[spec.name_field] = name
                built = self.build(spec.value, fields)
                if built is not _BAD:
                    out.append(built)
                continue
            built = self.walk(spec.value, item, child, item_pos)
            if built is not _BAD:
                out.append((name, built))
        return tuple(out)

    def either(self, spec: Either, value: Any, path: KeyPath, pos: Pos) -> Any:
        for option in spec.options:
            fits_list = isinstance(option, ListOf) and isinstance(value, list)
            fits_map = isinstance(option, Record | MapOf) and isinstance(value, dict)
            if fits_list or fits_map:
                built = self.walk(option, value, path, pos)
                if built is _BAD or spec.build is None:
                    return built
                return spec.build(built)
        self.report(path, pos, f"expected {_expected(spec)}, got {describe_value(value)}")
        return _BAD

    def record_fields(
        self, spec: Record, value: Any, path: KeyPath, pos: Pos
    ) -> dict[str, Any] | None:
        """The record's built fields, or None if a required key is missing."""
        if not isinstance(value, dict):
            self.report(path, pos, f"expected {_expected(spec)}, got {describe_value(value)}")
            return None
        pos = _own_pos(value, pos)
        self.locator.positions.setdefault(path, pos)
        # What is missing from a record is reported at its key (`r1:`), if any.
        here = self.locator.positions[path]
        fields: dict[str, Any] = {}
        for key, item in value.items():
            key_pos = _key_pos(value, key, pos)
            f = spec.field(key) if isinstance(key, str) else None
            if f is None:
                # A misspelt key stands for one that is absent: the meaning
                # checks must not judge the record as if that one were missing.
                absent = [(*path, f.key) for f in spec.fields if f.key not in value]
                self.report(path, key_pos, _unknown_key(spec, key), absent)
                continue
            child = (*path, key)
            self.locator.positions[child] = key_pos
            if item is None:
                self.report(child, key_pos, f"no value: expected {_expected(f.spec)}")
                continue
            built = self.walk(f.spec, item, child, _value_pos(value, key, key_pos))
            if built is not _BAD:
                fields[key] = built
        # A required key with a bad value (already reported) leaves the record
        # incomplete too: it cannot be built.
        complete = all(f.key in fields for f in spec.fields if f.required)
        for f in spec.fields:
            if f.required and f.key not in value:
                self.report(
                    path,
                    here,
                    f"missing required key {f.key!r} ({_expected(f.spec)})",
                    [(*path, f.key)],
                )
        self._rules(spec, value, fields, path, here)
        return fields if complete else None

    def _rules(
        self, spec: Record, value: dict[Any, Any], fields: dict[str, Any], path: KeyPath, pos: Pos
    ) -> None:
        def current(key: str) -> Any:
            # An invalid value (already reported) is unknown: no rule fires on it.
            if key in value:
                return fields.get(key, _BAD)
            return _default_of(spec, key)

        for rule in spec.rules:
            match rule:
                case OnlyWhen():
                    other = current(rule.other)
                    known = other is not _BAD and other is not None
                    if rule.key in value and known and other not in rule.values:
                        allowed = " or ".join(rule.values)
                        self.report(
                            (*path, rule.key),
                            _key_pos(value, rule.key, pos),
                            f"only allowed when {rule.other} is {allowed} ({rule.why}); "
                            f"here {rule.other} is {other}",
                            [(*path, rule.key), (*path, rule.other)],
                        )
                        fields.pop(rule.key, None)
                case RequiredWhen():
                    other = current(rule.other)
                    if rule.key not in value and other in rule.values:
                        self.report(
                            path,
                            pos,
                            f"missing {rule.key!r}: {rule.why} ({rule.other} is {other})",
                            [(*path, rule.key)],
                        )
                case Together():
                    present = [k for k in rule.keys if k in value]
                    if present and len(present) < len(rule.keys):
                        missing = [k for k in rule.keys if k not in value]
                        self.report(
                            (*path, present[0]),
                            _key_pos(value, present[0], pos),
                            f"{' and '.join(rule.keys)} go together ({rule.why}): "
                            f"{', '.join(missing)} is missing",
                            [(*path, k) for k in rule.keys],
                        )
                        for k in present:
                            fields.pop(k, None)

    def build(self, spec: Record, fields: dict[str, Any]) -> Any:
        if spec.model is None:
            return fields
        return spec.model(**fields)


def _unknown_key(spec: Record, key: Any) -> str:
    where = a_an(spec.name) if spec.name != "topology" else "the top level"
    return unknown_key(key, spec.keys(), where)


def _normalise(name: str) -> str:
    return name.lower().rstrip(".") or name


# -- YAML ------------------------------------------------------------------------------


def _yaml(allow_duplicates: bool = False) -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = allow_duplicates
    return yaml


def _duplicate_keys(text: str, source: str) -> list[tuple[Problem, KeyPath]]:
    """Every repeated key of every mapping (ruamel stops at the first), with
    the path of the mapping it is in."""
    problems: list[tuple[Problem, KeyPath]] = []
    seen_nodes: set[int] = set()

    def visit(node: Node, path: KeyPath) -> None:
        if id(node) in seen_nodes:
            return
        seen_nodes.add(id(node))
        if isinstance(node, MappingNode):
            first: dict[str, int] = {}
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node.value, str) else None
                if key is not None and key != "<<":
                    if key in first:
                        mark = key_node.start_mark
                        prefix = f"{render_path(path)}: " if path else ""
                        message = (
                            f"{prefix}duplicate key {key!r} (first on line {first[key]}); "
                            "the first value is used"
                        )
                        problems.append(
                            (Problem(source, mark.line + 1, mark.column + 1, message), path)
                        )
                    else:
                        first[key] = key_node.start_mark.line + 1
                visit(value_node, (*path, key if key is not None else "?"))
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                visit(item, (*path, index))

    try:
        root = _yaml().compose(text)
    except Exception:  # the document was already parsed once; be safe anyway
        return problems
    if root is not None:
        visit(root, ())
    return problems


def _yaml_problem(err: Exception, source: str, text: str) -> Problem:
    """A parser error as one problem at the parser's position."""
    if isinstance(err, RecursionError):
        return Problem(source, 1, 1, "not valid YAML: the document is nested too deeply to read")
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    if mark is not None:
        line, col = mark.line + 1, mark.column + 1
    elif isinstance(getattr(err, "position", None), int):
        offset: int = getattr(err, "position")  # noqa: B009 (ReaderError has no stubs)
        line = text.count("\n", 0, offset) + 1
        col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    else:
        line, col = 1, 1
    problem = getattr(err, "problem", None)
    context = getattr(err, "context", None)
    context_mark = getattr(err, "context_mark", None)
    if problem:
        message = str(problem)
        if context:
            where = f" started on line {context_mark.line + 1}" if context_mark else ""
            message += f" ({context}{where})"
    else:
        message = _first_line(str(err)) or type(err).__name__
    return Problem(source, line, col, f"not valid YAML: {message}")


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


# -- reading --------------------------------------------------------------------------


# -- putting it together ------------------------------------------------------------


_ADDRESSING_KEY = re.compile(r"[^.\[\]]+|\[(\d+)\]")


def _key_to_path(key: str) -> KeyPath:
    """``nodes.laptop.ip`` / ``links[0]`` (graph's AddressingError keys) → a key path."""
    return tuple(
        int(m.group(1)) if m.group(1) is not None else m.group(0)
        for m in _ADDRESSING_KEY.finditer(key)
    )


def _problems_from_findings(
    findings: list[Finding], source: str, locator: Locator, taint: set[KeyPath]
) -> list[Problem]:
    out: list[Problem] = []
    for finding in findings:
        if any(_overlaps(dep, t) for dep in (finding.path, *finding.depends) for t in taint):
            continue
        if finding.text_line is not None:
            line, col = locator.in_text(finding.path, finding.text_line)
        else:
            line, col = locator.at(finding.path)
        message = finding.message
        if finding.refers is not None:
            message = message.replace("{ref}", f"line {locator.at(finding.refers)[0]}")
        prefix = render_path(finding.path)
        out.append(Problem(source, line, col, f"{prefix}: {message}" if prefix else message))
    return out


def _overlaps(a: KeyPath, b: KeyPath) -> bool:
    """Is one path inside the other? ``"*"`` matches any one key."""
    return all(x == y or x == "*" or y == "*" for x, y in zip(a, b, strict=False))


def _default_resolver(topology: Topology) -> Topology:
    """``settings.resolver`` absent and exactly one host runs dns: that host."""
    if topology.settings.resolver is not None:
        return topology
    dns_hosts = [n for n in topology.hosts() if n.services.dns is not None and n.ip is not None]
    if len(dns_hosts) != 1:
        return topology
    address = dns_hosts[0].ip
    assert address is not None
    return replace(topology, settings=replace(topology.settings, resolver=address.ip))


def _layout_problems(topology: Topology, source: str, locator: Locator) -> list[Problem]:
    # Imported here: the layout is a consumer of this module's output, and
    # loading must not fail to import if the layout code has a problem.
    from sim.topology.graph import AddressingError, layout

    try:
        layout(topology)
    except AddressingError as err:
        out = []
        for problem, key in zip(err.problems, err.keys, strict=False):
            line, col = locator.at(_key_to_path(key))
            out.append(replace(problem, path=source, line=line, col=col))
        return out
    except TopologyError as err:
        return [replace(p, path=source) for p in err.problems]
    except Exception as err:  # a layout bug must still not become a traceback
        return [Problem(source, 1, 1, f"the network cannot be laid out: {err!r}")]
    return []


@dataclass
class _Structure:
    """The first layer's outcome: the walker (problems, taint, positions) and
    the top-level fields, or ``None`` when there is no mapping to walk."""

    walker: _Walker
    fields: dict[str, Any] | None


def _structure(text: str, source: str) -> _Structure:
    walker = _Walker(source, Locator(lines=text.splitlines()))
    duplicates: list[tuple[Problem, KeyPath]] = []
    try:
        data = _yaml().load(text)
    except DuplicateKeyError:
        duplicates = _duplicate_keys(text, source)
        try:
            data = _yaml(allow_duplicates=True).load(text)
        except Exception as err:
            walker.problems += [p for p, _ in duplicates] + [_yaml_problem(err, source, text)]
            return _Structure(walker, None)
    except Exception as err:  # ruamel's errors, and RecursionError on absurd nesting
        walker.problems.append(_yaml_problem(err, source, text))
        return _Structure(walker, None)
    if data is None:
        walker.problems.append(
            Problem(
                source,
                1,
                1,
                "the file is empty (nothing but comments or blank lines): "
                "a topology needs at least `name` and `nodes`",
            )
        )
        return _Structure(walker, None)
    if not isinstance(data, dict):
        line, col = _own_pos(data, (0, 0))
        walker.problems.append(
            Problem(
                source,
                line + 1,
                col + 1,
                "the top level must be a mapping of keys (name, title, settings, nodes, "
                f"links, zones), not {describe_value(data)}",
            )
        )
        return _Structure(walker, None)
    for problem, path in duplicates:
        # The first of the values is used; the author may have meant the other.
        walker.problems.append(problem)
        walker.taint.add(path)
    fields = walker.record_fields(TOPOLOGY, data, (), (0, 0)) or {}
    return _Structure(walker, fields)


def _analyse(text: str, source: str) -> tuple[Topology | None, list[Problem]]:
    """The topology (when its structure allows building one) and every problem."""
    structure = _structure(text, source)
    walker, fields = structure.walker, structure.fields
    if fields is None:
        return None, sorted(walker.problems)
    fields.setdefault("name", "")
    topology = _default_resolver(Topology(**fields, source=source))
    findings = check_topology(topology)
    problems = walker.problems + _problems_from_findings(
        findings, source, walker.locator, walker.taint
    )
    if not problems:
        problems = _layout_problems(topology, source, walker.locator)
    return topology, sorted(problems)


def structure_problems(text: str, source: str = "<string>") -> list[Problem]:
    """The first layer only: what :mod:`sim.topology.schema`'s table (and so
    the JSON Schema) says about the text, without the meaning checks."""
    return sorted(_structure(text, source).walker.problems)


def validate_topology_text(text: str, source: str = "<string>") -> list[Problem]:
    """Every problem of a topology given as text (sorted); never raises."""
    return _analyse(text, source)[1]


def validate_topology_file(path: str | os.PathLike[str]) -> list[Problem]:
    """Every problem of a topology file (sorted); never raises for bad input."""
    text, problem = read_text(path)
    if text is None:
        assert problem is not None
        return [problem]
    return _analyse(text, str(path))[1]


def loads_topology(text: str, source: str = "<string>") -> Topology:
    """A topology from YAML text; raises :class:`TopologyError` with every problem."""
    topology, problems = _analyse(text, source)
    if problems or topology is None:
        raise TopologyError(problems)
    return topology


def load_topology(path: str | os.PathLike[str]) -> Topology:
    """A topology from a file; raises :class:`TopologyError` with every problem."""
    text, problem = read_text(path)
    if text is None:
        assert problem is not None
        raise TopologyError([problem])
    return loads_topology(text, str(path))
