"""YAML with positions: load a file keeping line/column of every key and value.

ruamel.yaml's round-trip loader remembers where each key and value stood
(``CommentedMap.lc``); this module turns that into 1-based ``(line, col)``
pairs and turns YAML syntax errors (including duplicate keys, which YAML 1.2
§3.2.1.1 forbids) into :class:`~sim.errors.Problem` values instead of
exceptions, so an instructor sees ``PATH:LINE:COL: message``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim.errors import Problem
from sim.fastclass import dataclass
from sim.spec.source import read_text
from sim.spec.words import path_text

if TYPE_CHECKING:
    from ruamel.yaml import YAML
    from ruamel.yaml.nodes import Node

__all__ = ["Key", "Pos", "is_map", "is_seq", "key_pos", "load_yaml", "locate", "plain", "value_pos"]

Pos = tuple[int, int]
Key = str | int


def _loaded_map(node: Any) -> bool:
    """A mapping ruamel.yaml loaded (a ``CommentedMap``, which knows where it
    stood); tested by its ``lc`` so that checking a value never imports ruamel."""
    return isinstance(node, dict) and hasattr(node, "lc")


def _loaded_seq(node: Any) -> bool:
    return isinstance(node, list) and hasattr(node, "lc")


def is_map(node: Any) -> bool:
    """A YAML mapping, or a plain dict (actions built in Python are checked too)."""
    return isinstance(node, dict)


def is_seq(node: Any) -> bool:
    return isinstance(node, list | tuple)


def node_pos(node: Any, default: Pos = (1, 1)) -> Pos:
    """Where a mapping or a sequence starts (1-based); ``default`` for scalars."""
    if _loaded_map(node) or _loaded_seq(node):
        return node.lc.line + 1, node.lc.col + 1
    return default


def key_pos(parent: Any, key: Key) -> Pos:
    """Where ``key`` of a mapping (or item ``key`` of a sequence) is written."""
    try:
        if _loaded_map(parent) and key in parent:
            line, col = parent.lc.key(key)
            return line + 1, col + 1
        if _loaded_seq(parent) and isinstance(key, int) and 0 <= key < len(parent):
            line, col = parent.lc.item(key)
            return line + 1, col + 1
    except (KeyError, IndexError, TypeError):
        pass  # a key merged in with `<<` (YAML merge keys) has no place of its own
    return node_pos(parent)


def value_pos(parent: Any, key: Key) -> Pos:
    """Where the value of ``key`` starts; the key's position when the value is
    empty (ruamel places an empty value on the next line) or a block scalar."""
    if _loaded_map(parent) and key in parent:
        value = parent[key]
        if value is None:
            return key_pos(parent, key)
        if _loaded_map(value) or _loaded_seq(value):
            return node_pos(value)
        try:
            line, col = parent.lc.value(key)
        except (KeyError, IndexError, TypeError):
            return key_pos(parent, key)  # merged in with `<<`
        return line + 1, col + 1
    return key_pos(parent, key)


def locate(doc: Any, path: Sequence[Key], *, at_key: bool = False) -> Pos:
    """The position of the node at ``path`` (keys and indexes) in ``doc``.

    Stops at the deepest part of the path that exists, so a problem about a
    missing key points at the mapping that lacks it. ``at_key`` points at the
    last key instead of its value (for "unknown key" style problems).
    """
    node = doc
    pos = node_pos(doc)
    for i, key in enumerate(path):
        last = i == len(path) - 1
        if _loaded_map(node) and key in node:
            pos = key_pos(node, key) if last and at_key else value_pos(node, key)
            node = node[key]
        elif _loaded_seq(node) and isinstance(key, int) and 0 <= key < len(node):
            pos = (
                key_pos(node, key)
                if isinstance(node[key], str | int | float | bool)
                else (node_pos(node[key], key_pos(node, key)))
            )
            node = node[key]
        else:
            break
    return pos


@dataclass
class Parsed:
    """A YAML text read with positions: the document, and what was wrong.

    ``ok`` is False when there is no document to look at (a syntax error);
    duplicate keys (an error in YAML 1.2 §3.2.1.3) are all found, each with
    the path of the mapping it is in, and the first value of each is kept.
    """

    doc: Any
    problems: list[Problem]
    duplicates: list[tuple[Problem, tuple[Key, ...]]]
    ok: bool


def _yaml(allow_duplicates: bool = False) -> YAML:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = allow_duplicates
    return yaml


def parse_yaml(text: str, source: str) -> Parsed:
    """Parse ``text`` (reported as ``source``) with positions kept."""
    from ruamel.yaml.constructor import DuplicateKeyError

    duplicates: list[tuple[Problem, tuple[Key, ...]]] = []
    try:
        doc = _yaml().load(text)
    except DuplicateKeyError:
        duplicates = _duplicate_keys(text, source)
        try:
            doc = _yaml(allow_duplicates=True).load(text)
        except Exception as err:
            problems = [p for p, _ in duplicates] + [_yaml_problem(err, source, text)]
            return Parsed(None, problems, duplicates, ok=False)
    except Exception as err:  # ruamel's errors, and RecursionError on absurd nesting
        return Parsed(None, [_yaml_problem(err, source, text)], [], ok=False)
    return Parsed(doc, [p for p, _ in duplicates], duplicates, ok=True)


def load_yaml(path: Path, text: str | None = None) -> tuple[Any, list[Problem]]:
    """Parse ``path`` (or ``text``, reported as ``path``) with positions kept.

    Returns the document (None when it cannot be read) and the problems found
    while reading: an unreadable file, a YAML syntax error, a duplicate key.
    """
    if text is None:
        text, problem = read_text(path)
        if text is None:
            assert problem is not None
            return None, [problem]
    parsed = parse_yaml(text, str(path))
    return parsed.doc, parsed.problems


def _duplicate_keys(text: str, source: str) -> list[tuple[Problem, tuple[Key, ...]]]:
    """Every repeated key of every mapping (ruamel stops at the first), with
    the path of the mapping it is in."""
    problems: list[tuple[Problem, tuple[Key, ...]]] = []
    seen_nodes: set[int] = set()

    from ruamel.yaml.nodes import MappingNode, SequenceNode

    def visit(node: Node, path: tuple[Key, ...]) -> None:
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
                        prefix = f"{path_text(path)}: " if path else ""
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


def plain(value: Any) -> Any:
    """ruamel's commented containers and strings → plain dicts, lists and
    str (for JSON, comparison, or writing back out without positions)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value
