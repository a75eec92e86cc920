"""``python -m bench``: every benchmark that can run here, one after another."""

from __future__ import annotations

import importlib
import sys


def main() -> int:
    names = sys.argv[1:] or [
        "bench_cli",
        "bench_local",
        "bench_mx",
        "bench_mininet",
        "bench_realmail",
        "bench_postscreen",
        "bench_labs",
        "bench_capacity",
        "bench_pictures",
    ]
    for name in names:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"bench.{name}":
                continue
            raise
        module.main()
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
