"""The MX throughput bench's measuring functions (issue 3) still measure what
they claim: with a handful of messages, every message sent to the lab MX with
all checks on is accepted, stored and passed every check, and the sink takes
every message. Behaviour only; speed is the bench's business, not a test's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# `bench` is a directory of the repository, not part of the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_mx import (
    ALL_CHECKS,
    Mode,
    PrivatePostfix,
    all_checks,
    bench_message,
    measure_mx,
    measure_postfix,
    measure_sink,
    postfix_missing,
)
from sim import load_topology

TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "home-isp.yaml"


def test_all_checks_turns_on_every_check_and_keeps_given_actions() -> None:
    home = load_topology(TOPOLOGY)
    given = {p.check: p.action for p in home.node("mx-qq").services.mx.checks}  # type: ignore[union-attr]
    mx = all_checks(home).node("mx-qq").services.mx
    assert mx is not None
    assert [p.check for p in mx.checks] == list(ALL_CHECKS)
    for policy in mx.checks:
        if policy.check in given:
            assert policy.action == given[policy.check]


@pytest.mark.parametrize(("mode", "count"), [("one", 5), ("each", 3)])
def test_mx_accepts_and_stores_every_message_after_every_check(mode: Mode, count: int) -> None:
    run = measure_mx(count, mode, warmup=0)
    assert (run.sent, run.accepted, run.kept) == (count, count, count)
    connections = 1 if mode == "one" else count
    per_message = {"spf": "pass", "dkim": "pass", "dmarc": "pass"}
    per_connection = {"ptr": "pass", "fcrdns": "pass", "helo": "pass", "dnsbl": "notlisted"}
    for check, result in per_message.items():
        assert run.checks.get((check, result)) == count, run.checks
    for check, result in per_connection.items():
        assert run.checks.get((check, result)) == connections, run.checks
    assert run.auth_results is not None
    for clause in ("iprev=pass", "spf=pass", "dkim=pass", "dmarc=pass"):
        assert clause in run.auth_results


@pytest.mark.parametrize("mode", ["one", "each"])
def test_sink_takes_every_message(mode: Mode) -> None:
    run = measure_sink(5, mode, bench_message(), warmup=2)
    assert (run.sent, run.accepted, run.kept) == (5, 5, 5)
    assert run.seconds > 0


@pytest.mark.skipif(postfix_missing() is not None, reason=str(postfix_missing()))
def test_private_postfix_takes_every_message_and_leaves_nothing_behind() -> None:
    with PrivatePostfix() as postfix:
        master = postfix.master
        run = measure_postfix(postfix, 5, "each", bench_message(), warmup=1)
    assert (run.accepted, run.kept) == (5, 5)
    assert master is not None
    assert not Path(f"/proc/{master}").exists() or "Z" in _state(master)
    assert not postfix.root.exists()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "Z"
