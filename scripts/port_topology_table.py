"""Merge aid: the topology table of an older ``sim/topology/schema.py``
(``Record("name", "doc", (Field("key", Scalar("fmt"), "doc", ...), ...))``)
rewritten in the spec engine's form (``Record(name=..., description=...,
fields={"key": Field(fmt("fmt"), "doc", ...)})``), printed to stdout.

Branches that added keys to the table before it moved onto ``sim/spec``
are ported by porting both their ``schema.py`` and the one they started
from, and diffing the two: what is left is the branch's additions, in the
form the current table is written in (a new ``ValueFormat`` goes to
``sim/topology/formats.py``, unchanged)::

    P=scripts/port_topology_table.py
    git show $(git merge-base main s5-BRANCH):sim/topology/schema.py > /tmp/base.py
    git show s5-BRANCH:sim/topology/schema.py > /tmp/branch.py
    .venv/bin/python $P /tmp/base.py > /tmp/base-new.py
    .venv/bin/python $P /tmp/branch.py > /tmp/branch-new.py
    git diff --no-index /tmp/base-new.py /tmp/branch-new.py

Comments inside the table are not kept; records built in loops (the check
registry's ``mx-checks`` and ``mx-score-*``) are printed as they were and
need porting by hand. Delete this script once every branch is merged.
"""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import tokenize
from pathlib import Path


class _Port(ast.NodeTransformer):
    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name == "Scalar":
            node.func = ast.Name("fmt", ast.Load())
        elif name == "Choice" and len(node.args) == 1 and isinstance(node.args[0], ast.Tuple):
            node.args = list(node.args[0].elts)
        elif name == "MapOf" and len(node.args) >= 2:
            key, value = node.args[:2]
            node.args = [value]
            node.keywords = [ast.keyword("key", key), *node.keywords]
        elif name == "Record" and len(node.args) >= 3 and isinstance(node.args[2], ast.Tuple):
            record, doc, fields = node.args[:3]
            keys: list[ast.expr | None] = []
            values: list[ast.expr] = []
            for f in fields.elts:
                if not (isinstance(f, ast.Call) and len(f.args) >= 3):
                    return node  # not a literal table: port by hand
                keys.append(f.args[0])
                values.append(ast.Call(ast.Name("Field", ast.Load()), f.args[1:3], f.keywords))
            node.args = []
            node.keywords = [
                ast.keyword("name", record),
                ast.keyword("description", doc),
                ast.keyword("fields", ast.Dict(keys, values)),
                *node.keywords,
            ]
        return node


def _wrap_strings(source: str, width: int = 100) -> str:
    """Long one-line strings as implicit concatenations at word boundaries."""
    lines = source.splitlines(keepends=True)
    edits = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.STRING or tok.start[0] != tok.end[0]:
            continue
        if len(lines[tok.start[0] - 1].rstrip("\n")) <= width:
            continue
        text, prefix = tok.string, ""
        while text[0] in "fFrRbB":
            prefix, text = prefix + text[0], text[1:]
        quote = text[0]
        if text.startswith(quote * 3):
            continue
        room = width - tok.start[1] - len(prefix) - 6
        parts, current = [], ""
        for word in text[1:-1].split(" "):
            if current and len(current) + len(word) + 2 > room:
                parts.append(current + " ")
                current = word
            else:
                current = f"{current} {word}" if current else word
        parts.append(current)
        if len(parts) > 1:
            pad = " " * (tok.start[1] + 4)
            body = "".join(f"{pad}{prefix}{quote}{p}{quote}\n" for p in parts)
            edits.append((tok.start, tok.end, "(\n" + body + " " * tok.start[1] + ")"))
    for (line, col), (_, end), new in reversed(edits):
        text = lines[line - 1]
        lines[line - 1] = text[:col] + new + text[end:]
    return "".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    ported = ast.fix_missing_locations(_Port().visit(tree))
    # Formatted, long strings wrapped, formatted again: as the table is written.
    print(_format(_wrap_strings(_format(ast.unparse(ported)))), end="")
    return 0


def _format(source: str) -> str:
    ruff = Path(sys.executable).with_name("ruff")
    done = subprocess.run(
        [str(ruff), "format", "-"], input=source, capture_output=True, text=True, check=True
    )
    return done.stdout


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
