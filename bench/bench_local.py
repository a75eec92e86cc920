"""Start+stop of topologies on the local backend (issue: Foundation).

Targets on a 2-core machine: home-isp ready in under 0.3 s; a generated
200-node topology under 3 s. Prints medians; asserts nothing.
"""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path

import sim
from bench.topogen import generate
from sim.topology.model import Topology

ROOT = Path(__file__).resolve().parent.parent


def measure(topology: Topology, runs: int) -> tuple[float, float]:
    starts, stops = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        lab = sim.start(topology)
        t1 = time.perf_counter()
        lab.stop()
        t2 = time.perf_counter()
        starts.append(t1 - t0)
        stops.append(t2 - t1)
    return statistics.median(starts), statistics.median(stops)


def main() -> None:
    print(
        f"# local backend start/stop ({platform.node()}, {platform.processor() or 'cpu'}, "
        f"python {platform.python_version()})"
    )
    home = sim.load_topology(ROOT / "topologies" / "home-isp.yaml")
    start, stop = measure(home, 7)
    print(
        f"home-isp        ready {start:.3f} s   stop {stop:.3f} s"
        "   (median of 7; target ready < 0.3 s)"
    )
    big = generate(200)
    start, stop = measure(big, 3)
    print(
        f"generated-200   ready {start:.3f} s   stop {stop:.3f} s"
        "   (median of 3; target ready < 3 s)"
    )


if __name__ == "__main__":
    main()
