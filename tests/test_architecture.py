"""docs/architecture.md matches the code: every module of ``sim/`` is named
there, and every file it names exists. (The import rules themselves are
import-linter contracts in pyproject.toml, run by ``make lint``.)"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
NAMED = re.compile(r"`(sim/[\w/]*?(?:\.py|/))`")


def named_paths() -> set[str]:
    return set(NAMED.findall(DOC.read_text()))


def test_every_module_of_sim_is_named_in_the_architecture_page() -> None:
    named = named_paths()
    modules = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "sim").rglob("*.py")
        # A package's __init__ is named only where it holds code of its own.
        if p.name != "__init__.py" or p.parent.name == "experiments"
    }
    missing = sorted(modules - named)
    assert not missing, f"not in docs/architecture.md: {missing}"


def test_every_file_the_architecture_page_names_exists() -> None:
    gone = sorted(p for p in named_paths() if not (ROOT / p).exists())
    assert not gone, f"docs/architecture.md names files that do not exist: {gone}"
