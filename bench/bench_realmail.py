"""Ready time of a lab with Postfix and Dovecot nodes, against the same lab
with maillab's own services (issue 18).

Run as root, with the real software installed (``make system``)::

    python bench/bench_realmail.py             # 3 runs each, medians
    python bench/bench_realmail.py --runs 5 --json

The topology is the parity lab of the tests (tests/data/postfix-parity.yaml:
12 nodes); the "real" variant runs Postfix and Dovecot on its three mail
hosts, with OpenDKIM and OpenDMARC on the receiving MX, OpenDKIM on the
ISP's relay and postgrey on the greylisting MX. Measured: ``sim.start``
until every agent said ready (every daemon answering on its ports). The
machine's load is printed beside the figures: on a shared 2-core machine
it moves them by a factor of two.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import sim  # noqa: E402
from bench import rootbench  # noqa: E402


def measure(runs: int) -> dict[str, Any]:
    from postfix_support import mail_software_missing, parity_topology, with_real

    missing = mail_software_missing()
    if missing is not None:
        return {"skipped": missing}
    out: dict[str, Any] = {"load_before": os.getloadavg()[0]}
    for name, topology in (("own", parity_topology()), ("real", with_real(parity_topology()))):
        times = []
        for _ in range(runs):
            with tempfile.TemporaryDirectory(prefix="maillab-bench-") as state:
                begin = time.monotonic()
                lab = sim.start(topology, backend="mininet", state_dir=state)
                times.append(round(time.monotonic() - begin, 3))
                lab.stop()
        out[name] = {"runs": times, "median": statistics.median(times)}
    out["load_after"] = os.getloadavg()[0]
    out["ratio"] = round(out["real"]["median"] / out["own"]["median"], 2)
    return out


def _sentence(result: dict[str, Any], runs: int) -> str:
    return (
        f"lab start, median of {runs}: maillab's services "
        f"{result['own']['median']:.2f} s, "
        f"Postfix+Dovecot {result['real']['median']:.2f} s (x{result['ratio']}); "
        f"load {result['load_before']:.1f} → {result['load_after']:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:] if __name__ == "__main__" else []
    return rootbench.run("bench_realmail", __doc__, measure, _sentence, args, rounds="runs")


if __name__ == "__main__":
    raise SystemExit(main())
