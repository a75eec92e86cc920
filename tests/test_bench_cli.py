"""bench/bench_cli.py measures what it says: a command's floor imports the
non-maillab modules that command imported, and nothing of maillab's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_cli import CASES, floor_argv, imported_modules


def test_the_floor_of_a_command_is_its_non_maillab_imports() -> None:
    modules = imported_modules(("validate", "topologies/home-isp.yaml"))
    assert "ruamel.yaml" in modules and "argparse" in modules
    assert not [m for m in modules if m == "sim" or m.startswith("sim.")]
    code = floor_argv(modules)[2] + "import sys\nprint('ruamel.yaml' in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "True"


def test_the_cases_are_the_issues_commands() -> None:
    assert [c.name for c in CASES] == ["send", "validate", "list", "--help", "check"]
    send = CASES[0]
    assert send.relative and send.target == 0.3
    assert all(c.target == 0.35 and not c.relative for c in CASES[1:4])
