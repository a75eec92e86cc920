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
from sim.spec.source import read_text

if TYPE_CHECKING:
    from ruamel.yaml.error import MarkedYAMLError

__all__ = ["Key", "Pos", "is_map", "is_seq", "key_pos", "load_yaml", "locate", "value_pos"]

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


def load_yaml(path: Path, text: str | None = None) -> tuple[Any, list[Problem]]:
    """Parse ``path`` (or ``text``, reported as ``path``) with positions kept.

    Returns the document (None when it cannot be read) and the problems found
    while reading: an unreadable file, a YAML syntax error, a duplicate key.
    """
    where = str(path)
    if text is None:
        text, problem = read_text(path)
        if text is None:
            assert problem is not None
            return None, [problem]
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="rt")
    try:
        doc = yaml.load(text)
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        return None, [Problem(where, line, col, _yaml_message(err))]
    except YAMLError as err:
        return None, [Problem(where, 1, 1, f"not valid YAML: {err}")]
    return doc, []


def _yaml_message(err: MarkedYAMLError) -> str:
    problem = (err.problem or "").strip()
    if problem.startswith("found duplicate key"):
        # ruamel: 'found duplicate key "a" with value "2" (original value: "1")'
        key = problem.split('"')[1] if '"' in problem else "?"
        return f'duplicate key "{key}": a key may appear only once in a mapping'
    context = (err.context or "").strip()
    text = f"{problem} {context}".strip() if context else problem
    start, mark = err.context_mark, err.problem_mark
    if start is not None and mark is not None and start.line != mark.line:
        # The parser notices the problem where it gives up; say where the
        # construct it was reading began (often the real mistake).
        text += f" that began on line {start.line + 1}"
    return f"not valid YAML: {text or 'syntax error'}"
