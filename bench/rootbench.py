"""The command line of a benchmark that needs the mininet backend (root):
``--ROUNDS N`` and ``--json``, a line saying it was skipped where it cannot
run, else the figures as JSON or as the benchmark's one sentence."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any


def run(
    name: str,
    doc: str,
    measure: Callable[[int], dict[str, Any]],
    sentence: Callable[[dict[str, Any], int], str],
    argv: list[str],
    *,
    rounds: str = "rounds",
    default: int = 3,
) -> int:
    """Parse ``argv`` (the script's arguments; none when ``python -m bench``
    runs every benchmark), measure, print."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument(f"--{rounds}", type=int, default=default)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    count = int(getattr(args, rounds))
    if os.geteuid() != 0:
        print(f"{name}: skipped (needs root for the mininet backend)")
        return 0
    result = measure(count)
    if args.json:
        print(json.dumps(result))
    elif "skipped" in result:
        print(f"{name}: skipped ({result['skipped']})")
    else:
        print(sentence(result, count))
    return 0
