"""A short round of hostile sessions against a ``maillab up`` process
(``bench/bench_fuzz.py``): garbage, STARTTLS then plain text, TLS 1.0,
handshakes cut off, STARTTLS inside TLS, resets in DATA, junk DNS. The lab
must stay up, stop cleanly, and write no traceback (nor any other line) to
its stderr: a client's misbehaviour is a trace event, not a crash report."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# `bench` is a directory of the repository, not part of the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_fuzz import run

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.parametrize("topology", ["internet.yaml", "mta-mda.yaml"])
def test_hostile_sessions_leave_no_traceback(topology: str) -> None:
    out = run(ROOT / "topologies" / topology, 800, seed=19, settle=0.5)
    assert out["sessions"] == 800
    assert out["alive"], "the lab died under fuzzing"
    assert out["exit"] == 0
    err = out["stderr"]
    assert err["tracebacks"] == 0, "\n".join(err["sample"])
    assert err["lines"] == 0, "\n".join(err["sample"])
    # Every kind of hostile session ran.
    kinds = {name.split(":")[1] for name in out["by_kind"]}
    assert {"starttls_then_plain", "starttls_old_tls", "handshake_cut", "garbage"} <= kinds
