"""Load a topology file: bytes → YAML → structure → model → meaning.

1. **Read.** A missing file, a directory, a binary file or text that is not
   UTF-8 is one problem, never an exception.
2. **YAML.** :func:`sim.spec.yamlpos.parse_yaml`, as for every format:
   the line and column of every key, value and list item; syntax errors at
   the parser's position; every duplicate key (an error in YAML 1.2
   §3.2.1.3) at its second occurrence.
3. **Structure.** The spec engine (:mod:`sim.spec`) checks the document
   against the table of :mod:`sim.topology.schema`: unknown keys (with a
   suggestion), wrong types, missing keys, bad values, keys that need or
   exclude another. Each record becomes its :mod:`sim.topology.model`
   object; the engine's :class:`~sim.spec.kinds.Checker` keeps where every
   key path is (the :class:`Locator` of later findings) and which parts had
   a problem.
4. **Meaning.** :func:`sim.topology.validate.check_topology` looks at the
   whole model. A finding about a part that already has a structural problem
   is dropped: fix the structure and it will be checked.
5. **Layout.** A clean topology is laid out as a network
   (:func:`sim.topology.graph.build_network`), so that anything the layout
   cannot do is reported here, with a line, rather than when a lab starts.

Every problem is a :class:`~sim.errors.Problem` ``PATH:LINE:COL: key.path: message``.
"""

from __future__ import annotations

import os
import re
from dataclasses import field, replace
from typing import Any

from sim.errors import Problem, TopologyError
from sim.fastclass import dataclass
from sim.spec.kinds import Checker
from sim.spec.source import read_text
from sim.spec.words import path_text
from sim.spec.yamlpos import node_pos, parse_yaml
from sim.topology.model import Topology
from sim.topology.schema import TOPOLOGY
from sim.topology.validate import Finding, KeyPath, check_topology

__all__ = [
    "Locator",
    "load_topology",
    "loads_topology",
    "structure_problems",
    "validate_topology_file",
    "validate_topology_text",
]

Pos = tuple[int, int]  # 1-based line and column


@dataclass
class Locator:
    """Where each key path of a loaded file is, for problems found later (the
    spec engine's :class:`~sim.spec.kinds.Checker` records them as it walks)."""

    positions: dict[KeyPath, Pos] = field(default_factory=dict)
    #: Literal block scalars (``|``): the line of the indicator.
    blocks: dict[KeyPath, int] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def at(self, path: KeyPath) -> Pos:
        """The position of ``path``, or of its nearest known ancestor."""
        while path and path not in self.positions:
            path = path[:-1]
        return self.positions.get(path, (1, 1))

    def in_text(self, path: KeyPath, text_line: int) -> Pos:
        """The file position of line ``text_line`` of the text at ``path``.

        A literal block keeps the text's lines one to one, starting on the line
        after the ``|``; any other style of scalar is pointed at as a whole.
        """
        indicator = self.blocks.get(path)
        if indicator is None:
            return self.at(path)
        index = indicator - 1 + text_line  # 0-based line in the file
        text = self.lines[index] if 0 <= index < len(self.lines) else ""
        indent = len(text) - len(text.lstrip(" "))
        return (index + 1, indent + 1)


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
        prefix = path_text(finding.path)
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
    """The first layer's outcome: the checker (problems, taint, positions) and
    the top-level fields, or ``None`` when there is no mapping to check."""

    checker: Checker
    locator: Locator
    fields: dict[str, Any] | None


def _structure(text: str, source: str) -> _Structure:
    checker = Checker(source)
    locator = Locator(checker.positions, checker.blocks, text.splitlines())
    done = _Structure(checker, locator, None)
    parsed = parse_yaml(text, source)
    if not parsed.ok:
        checker.problems += parsed.problems
        return done
    data = parsed.doc
    wrong = TOPOLOGY.top_level_problem(data, "topology", needs=("name", "nodes"))
    if wrong is not None:
        line, col = node_pos(data)
        checker.problems.append(Problem(source, line, col, wrong))
        return done
    for problem, path in parsed.duplicates:
        # The first of the values is used; the author may have meant the other.
        checker.problems.append(problem)
        checker.taint.add(path)
    done.fields = TOPOLOGY.fields_of(data, (1, 1), (), checker) or {}
    return done


def _analyse(text: str, source: str) -> tuple[Topology | None, list[Problem]]:
    """The topology (when its structure allows building one) and every problem."""
    structure = _structure(text, source)
    checker, fields = structure.checker, structure.fields
    if fields is None:
        return None, sorted(checker.problems)
    fields.setdefault("name", "")
    topology = _default_resolver(Topology(**fields, source=source))
    findings = check_topology(topology)
    problems = checker.problems + _problems_from_findings(
        findings, source, structure.locator, checker.taint
    )
    if not problems:
        problems = _layout_problems(topology, source, structure.locator)
    return topology, sorted(problems)


def structure_problems(text: str, source: str = "<string>") -> list[Problem]:
    """The first layer only: what :mod:`sim.topology.schema`'s table (and so
    the JSON Schema) says about the text, without the meaning checks."""
    return sorted(_structure(text, source).checker.problems)


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
