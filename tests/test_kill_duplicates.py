"""SIGKILL of a lab in the middle of a burst: every acknowledged message is
delivered after the restart, and a message arrives twice only if its delivery
was in flight at the instant of the kill (RFC 5321 §6.1: at least once).

The lab runs in a separate process (local backend: submission, relay and both
MX in one process). Clients submit a burst over port 587 (STARTTLS, AUTH)
while the relay delivers to mx1; after some of the 250s the test kills the
process by its pid with SIGKILL. The relay's queue journal
(:mod:`sim.services.queue`) says which deliveries were under way then. The
same topology restarts on the same state directory; once its queue is empty,
each message is counted in bob's Maildir.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiosmtplib
import pytest
from mailrig import ALICE, ALICE_PASSWORD, BOB, message, queue, topology, wait_until
from mininet_support import needs_mininet
from test_durability import read_ready

import sim
from sim.services.queue import Spool, in_flight

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

CHILD = """
import json, sys, time
sys.path.insert(0, {tests!r})
import sim
from mailrig import topology
lab = sim.start(topology(real_mx=True), state_dir={state!r})
print(json.dumps({{"ready": True, "endpoints": [e.to_json() for e in lab.endpoints()]}}),
      flush=True)
while True:
    time.sleep(1)
"""

SUBJECT = re.compile(rb"^Subject: (burst \d+)\r?$", re.MULTILINE)
QUEUED = re.compile(r"queued as ([0-9A-F]+)")


async def burst(
    host: str, port: int, cafile: Path, clients: int, each: int, kill_after: int, pid: int
) -> dict[str, str]:
    """Submit ``clients * each`` messages; SIGKILL ``pid`` once
    ``kill_after`` are acknowledged. Returns subject → queue id of every 250."""
    accepted: dict[str, str] = {}

    async def client(c: int) -> None:
        sock = socket.create_connection((host, port))
        sock.setblocking(False)
        smtp = aiosmtplib.SMTP(
            hostname="smtp.relay.example",
            sock=sock,
            start_tls=False,
            tls_context=ssl.create_default_context(cafile=str(cafile)),
            local_hostname="client.outside.example",
            timeout=10,
        )
        try:
            await smtp.connect()
            await smtp.starttls()
            await smtp.login(ALICE, ALICE_PASSWORD)
            for i in range(each):
                subject = f"burst {c * each + i}"
                errors, reply = await smtp.sendmail(ALICE, [BOB], message(subject))
                if errors:
                    continue
                match = QUEUED.search(reply)
                assert match, reply
                accepted[subject] = match.group(1)
                if len(accepted) == kill_after:
                    os.kill(pid, signal.SIGKILL)
        except (aiosmtplib.SMTPException, OSError):
            return  # the lab was killed under this client: not acknowledged
        finally:
            smtp.close()

    await asyncio.gather(*(client(c) for c in range(clients)))
    return accepted


def spool_subjects(state: Path) -> dict[str, str]:
    """Subject → queue id of every message in the relay's spool."""
    found: dict[str, str] = {}
    for path in (state / "smtp" / "queue").glob("*.eml"):
        match = SUBJECT.search(path.read_bytes())
        if match:
            found[match.group(1).decode()] = path.stem
    return found


def stored_subjects(state: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    root = state / "mx1" / "mail" / "bob"
    for sub in ("new", "cur"):
        for path in (root / sub).glob("*"):
            match = SUBJECT.search(path.read_bytes())
            if match:
                counts[match.group(1).decode()] += 1
    return counts


def check_after_restart(
    state: Path, accepted: dict[str, str], at_kill: set[str], backend: str
) -> None:
    """Restart on ``state``, let the queue empty, and judge every copy."""
    with sim.start(topology(real_mx=True), state_dir=state, backend=backend) as lab:
        wait_until(lambda: queue(lab) == [], timeout=90)
        time.sleep(0.5)
    after = stored_subjects(state)
    lost = sorted(set(accepted) - set(after))
    assert not lost, f"acknowledged but never delivered: {lost}"
    twice = {subject: n for subject, n in after.items() if n > 1}
    assert all(n == 2 for n in twice.values()), twice
    not_in_flight = [s for s in twice if accepted.get(s) not in at_kill]
    # RFC 5321 §6.1: a duplicate only where the kill came between the remote
    # 250 and the relay's durable record of it.
    assert not not_in_flight, (
        f"{len(twice)} duplicate(s), {len(not_in_flight)} not in flight at the kill: "
        f"{not_in_flight}; in flight: {sorted(at_kill)}"
    )


@pytest.mark.slow
def test_after_sigkill_only_a_delivery_in_flight_may_arrive_twice(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(tests=str(TESTS), state=str(state))],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = read_ready(proc)
        (endpoint,) = [
            e
            for e in ready["endpoints"]
            if e["node"] == "smtp" and e["service"] == "submission" and e["lab"].endswith(":587")
        ]
        host, _, port = endpoint["local"].partition(":")
        accepted = asyncio.run(
            burst(host, int(port), state / "tls" / "ca.pem", 6, 25, 80, proc.pid)
        )
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert len(accepted) >= 80
    spool = Spool(state / "smtp" / "queue")
    at_kill = in_flight(spool.journal_lines())
    before = stored_subjects(state)
    assert before, "the relay was delivering during the burst"

    check_after_restart(state, accepted, at_kill, "local")


@pytest.mark.slow
@pytest.mark.parametrize("backend", [pytest.param("mininet", marks=needs_mininet)])
def test_a_relay_killed_while_it_flushes_its_queue(tmp_path: Path, backend: str) -> None:
    """The same on the mininet backend, where the relay is a process of its
    own (the ``smtp`` node's agent): messages queued while both MX were
    down, the MX brought up, the queue flushed, the agent SIGKILLed by its
    pid while it delivers."""
    state = tmp_path / "state"
    count = 40
    with sim.start(
        topology(real_mx=True, down=("mx1", "mx2")), state_dir=state, backend=backend
    ) as lab:
        for i in range(count):
            sent = lab.send(
                "laptop",
                BOB,
                mail_from=ALICE,
                via="smtp",
                user=ALICE,
                password=ALICE_PASSWORD,
                subject=f"burst {i}",
            )
            assert sent.outcome == "deferred", sent.outcome
        accepted = spool_subjects(state)
        assert len(accepted) == count
        lab.control("mx1", "mx", "up")
        lab.control("smtp", "relay", "flush")
        spool = Spool(state / "smtp" / "queue")

        def recorded() -> int:
            return sum(1 for r in spool.journal_lines() if r.get("event") == "recorded")

        # Some deliveries are on record: those must never arrive twice.
        wait_until(lambda: recorded() >= count // 4, timeout=60)
        pid = lab.backend._agents["smtp"].pid  # type: ignore[attr-defined]
        os.kill(pid, signal.SIGKILL)
    at_kill = in_flight(spool.journal_lines())
    assert len(at_kill) < count, "the deliveries on record were not in flight"
    check_after_restart(state, accepted, at_kill, backend)
