"""Every runnable code block in the documentation runs, and succeeds.

The convention (documented in docs/index.md): a fenced code block whose info
string is ``python run`` or ``sh run`` is executed by this test; any other
block is only shown. Options follow ``run``:

* ``exit=N`` — the block must end with exit status N (default 0), e.g. a
  ``maillab validate`` of a broken file is ``sh run exit=2``;
* ``timeout=S`` — seconds the block may take (default 60; sh blocks only,
  python blocks are bounded by pytest-timeout).

Per file, blocks run in order in one scratch directory holding a copy of the
repository's ``topologies/`` and ``labs/``: python blocks share one namespace
(like cells of a notebook) and run in this process; sh blocks run in bash
with ``set -e -o pipefail``, where ``maillab`` is this checkout's command
(the virtualenv's console script, or ``python -m sim.cli``) and ``python`` is
the interpreter running the tests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
LANGUAGES = ("python", "sh")
DEFAULT_TIMEOUT = 60.0

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


class DocSyntaxError(ValueError):
    """A block is marked ``run`` but its info string cannot be understood."""


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    exit: int = 0
    timeout: float = DEFAULT_TIMEOUT

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def parse_info(info: str) -> tuple[str, bool, dict[str, str]]:
    """``"sh run exit=2"`` → ``("sh", True, {"exit": "2"})``."""
    words = info.split()
    if not words:
        return "", False, {}
    language, rest = words[0], words[1:]
    runnable = "run" in rest
    options = {}
    for word in rest:
        if word == "run":
            continue
        key, eq, value = word.partition("=")
        if eq:
            options[key] = value
    return language, runnable, options


def blocks_in(text: str, path: Path) -> list[Block]:
    """The runnable blocks of a Markdown text, in order (CommonMark fences:
    three or more backticks or tildes; the closing fence is the same
    character, at least as long, with nothing after it)."""
    found: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match or (match["fence"][0] == "`" and "`" in match["info"]):
            i += 1
            continue
        fence, indent, start = match["fence"], len(match["indent"]), i
        body: list[str] = []
        i += 1
        while i < len(lines):
            close = _FENCE.match(lines[i])
            if (
                close
                and close["fence"][0] == fence[0]
                and len(close["fence"]) >= len(fence)
                and not close["info"].strip()
            ):
                break
            line = lines[i]
            strip = min(indent, len(line) - len(line.lstrip(" ")))
            body.append(line[strip:])
            i += 1
        i += 1  # past the closing fence (or the end of the file)
        language, runnable, options = parse_info(match["info"])
        if not runnable:
            continue
        where = f"{path}:{start + 1}"
        if language not in LANGUAGES:
            raise DocSyntaxError(
                f"{where}: cannot run {language or 'a block without a language'}"
                f" (runnable blocks are {' or '.join(LANGUAGES)})"
            )
        unknown = set(options) - {"exit", "timeout"}
        if unknown:
            raise DocSyntaxError(f"{where}: unknown option(s) {', '.join(sorted(unknown))}")
        try:
            exit_code = int(options.get("exit", "0"))
            timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
        except ValueError as err:
            raise DocSyntaxError(f"{where}: {err}") from None
        found.append(Block(path, start + 1, language, "\n".join(body) + "\n", exit_code, timeout))
    return found


# -- the harness itself -----------------------------------------------------------------


def test_fences_and_info_strings_are_read_as_commonmark_does() -> None:
    text = "\n".join(
        [
            "Intro",
            "```python run",
            "x = 1",
            "```",
            "```python",
            "not run",
            "```",
            "````sh run exit=2 timeout=5",
            "```",
            "echo inner fence",
            "````",
            "  ~~~sh run",
            "  echo indented",
            "  ~~~",
            "```text run-this-not",
            "```",
        ]
    )
    blocks = blocks_in(text, ROOT / "x.md")
    assert [(b.line, b.language, b.exit, b.timeout) for b in blocks] == [
        (2, "python", 0, DEFAULT_TIMEOUT),
        (8, "sh", 2, 5.0),
        (12, "sh", 0, DEFAULT_TIMEOUT),
    ]
    assert blocks[0].code == "x = 1\n"
    assert blocks[1].code == "```\necho inner fence\n"
    assert blocks[2].code == "echo indented\n"


@pytest.mark.parametrize(
    ("info", "message"),
    [
        ("yaml run", "cannot run yaml"),
        ("sh run exit=two", "invalid literal"),
        ("sh run retries=3", "unknown option"),
    ],
)
def test_a_run_mark_that_cannot_be_honoured_is_an_error(info: str, message: str) -> None:
    with pytest.raises(DocSyntaxError, match=message):
        blocks_in(f"```{info}\ntrue\n```\n", ROOT / "x.md")


def test_every_run_mark_in_the_docs_is_valid() -> None:
    for path in DOC_FILES:
        blocks_in(path.read_text(encoding="utf-8"), path)  # raises on a bad mark


def test_the_docs_have_runnable_examples_of_both_kinds() -> None:
    blocks = [b for p in DOC_FILES for b in blocks_in(p.read_text(encoding="utf-8"), p)]
    assert {b.language for b in blocks} == set(LANGUAGES)
    assert any(b.exit == 2 for b in blocks)  # the exit-code convention is exercised


# -- running -------------------------------------------------------------------------------


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with copies of the shipped topologies and labs."""
    work = tmp_path / "work"
    work.mkdir()
    for name in ("topologies", "labs"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, work / name)
    monkeypatch.chdir(work)
    return work


def _environment(bin_dir: Path) -> dict[str, str]:
    """PATH with ``maillab`` and ``python`` of this checkout first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    script = Path(sys.executable).parent / "maillab"
    bin_dir.mkdir(exist_ok=True)
    if not script.exists():
        shim = bin_dir / "maillab"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m sim.cli "$@"\n')
        shim.chmod(0o755)
    python = bin_dir / "python"
    if not python.exists():
        # A symlink to a virtualenv's python outside the venv directory starts
        # the base interpreter (no pyvenv.cfg beside it): exec it instead.
        python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        python.chmod(0o755)
    dirs = [str(bin_dir), str(Path(sys.executable).parent), env.get("PATH", "")]
    env["PATH"] = os.pathsep.join(filter(None, dirs))
    env.setdefault("COLUMNS", "100")
    env["NO_COLOR"] = "1"
    return env


def _run_sh(block: Block, cwd: Path, env: dict[str, str]) -> None:
    shell = shutil.which("bash") or "/bin/sh"
    argv = (
        [shell, "-e", "-o", "pipefail", "-c", block.code]
        if "bash" in shell
        else [shell, "-e", "-c", block.code]
    )
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=block.timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.where}: still running after {block.timeout:g} s:\n{block.code}")
    if done.returncode != block.exit:
        pytest.fail(
            f"{block.where}: exit status {done.returncode}, the block says {block.exit}\n"
            f"--- block ---\n{block.code}--- stdout ---\n{done.stdout}--- stderr ---\n{done.stderr}"
        )
    if done.returncode != 0:
        # A failure a reader is shown must be a clear message, never a traceback.
        assert "Traceback" not in done.stderr, f"{block.where}:\n{done.stderr}"


def _run_python(block: Block, namespace: dict[str, object]) -> None:
    # Padded so that a traceback's line numbers are the Markdown file's.
    code = compile("\n" * block.line + block.code, str(block.path), "exec")
    status = 0
    try:
        exec(code, namespace)
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else 1
    if status != block.exit:
        pytest.fail(f"{block.where}: exit status {status}, the block says {block.exit}")


# Only the pages that have runnable blocks (a page of prose has nothing to run;
# a skip per such page would hide a real skip in CI).
RUNNABLE = [p for p in DOC_FILES if blocks_in(p.read_text(encoding="utf-8"), p)]


def test_the_walkthrough_pages_have_runnable_blocks() -> None:
    names = {p.name for p in RUNNABLE}
    assert {"quickstart.md", "authoring.md"} <= names, names


@pytest.mark.parametrize("path", RUNNABLE, ids=[p.relative_to(ROOT).as_posix() for p in RUNNABLE])
def test_runnable_blocks_run(path: Path, scratch: Path) -> None:
    blocks = blocks_in(path.read_text(encoding="utf-8"), path)
    env = _environment(scratch.parent / "bin")
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for block in blocks:
        if block.language == "sh":
            _run_sh(block, scratch, env)
        else:
            _run_python(block, namespace)
