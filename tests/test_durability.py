"""A message acknowledged with 250 survives a crash of the relay and is
delivered exactly once after the restart (RFC 5321 §6.1).

The first lab runs in a separate process (``python -c``) with both MX hosts
of qq.example down, so the submitted message stays in the relay's queue. The
test submits over the real loopback endpoint of port 587 (STARTTLS, AUTH),
gets the 250, and SIGKILLs that process by its pid: no clean shutdown, no
chance to flush anything. Then it starts the same topology on the same state
directory in this process, with the MX up, and counts the files in bob's
Maildir.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from mailrig import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    mailbox,
    message,
    queue,
    topology,
    wait_until,
)
from mininet_support import needs_mininet

import sim

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

CHILD = """
import json, sys, time
sys.path.insert(0, {tests!r})
import sim
from mailrig import topology
lab = sim.start(topology(real_mx=True, down=("mx1", "mx2")), state_dir={state!r})
print(json.dumps({{"ready": True, "endpoints": [e.to_json() for e in lab.endpoints()]}}),
      flush=True)
while True:
    time.sleep(1)
"""


def read_ready(proc: subprocess.Popen[str], timeout: float = 60.0) -> dict[str, Any]:
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"the lab process exited: {proc.stderr.read() if proc.stderr else ''}"
            )
        if selector.select(0.2):
            line = proc.stdout.readline()
            if line.startswith("{"):
                ready: dict[str, Any] = json.loads(line)
                return ready
    raise AssertionError("the lab process did not become ready")


async def submit(host: str, port: int, cafile: Path) -> str:
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
    await smtp.connect()
    try:
        await smtp.starttls()
        await smtp.login(ALICE, ALICE_PASSWORD)
        errors, reply = await smtp.sendmail(ALICE, [BOB], message("Survives a crash"))
        assert errors == {}
        return reply
    finally:
        smtp.close()


def test_an_acknowledged_message_survives_sigkill_and_is_delivered_once(tmp_path: Path) -> None:
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
        reply = asyncio.run(submit(host, int(port), state / "tls" / "ca.pem"))
        assert reply.startswith("2.0.0 Ok: queued as ")
        queue_id = reply.rsplit(" ", 1)[1]
        # The 250 came only after the spool entry was on disk.
        spool = state / "smtp" / "queue"
        assert (spool / f"{queue_id}.json").exists()
        assert (spool / f"{queue_id}.eml").exists()
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    # Nothing was delivered before the crash: both MX hosts were down.
    assert mailbox_files(state) == 0

    with sim.start(topology(real_mx=True), state_dir=state) as lab:
        recovered = [
            e
            for e in lab.trace().events
            if e.kind == "queue" and e.data.get("recovered") and e.data["queue_id"] == queue_id
        ]
        assert len(recovered) == 1
        # No flush: the relay runs its recovered queue once the lab is up.
        wait_until(lambda: len(mailbox(lab, "mx1", "bob")) >= 1)
        wait_until(lambda: queue(lab) == [])
        # More lab time and another flush: nothing is delivered a second time.
        lab.advance("1h")
        lab.control("smtp", "relay", "flush")
        time.sleep(0.3)
        (stored,) = mailbox(lab, "mx1", "bob")
        assert b"Subject: Survives a crash" in stored
        assert f"id {queue_id}".encode() in stored  # the submission's Received header
        assert not list((state / "smtp" / "queue").glob("*.json"))
    assert mailbox_files(state) == 1


def mailbox_files(state: Path) -> int:
    root = state / "mx1" / "mail" / "bob"
    return sum(1 for sub in ("new", "cur") for p in (root / sub).glob("*") if p.is_file())


def _queued_while_the_mx_were_down(state: Path) -> str:
    """A message submitted while both MX hosts of qq.example were down: still
    in the relay's queue when that lab stops. Returns its queue id."""
    with sim.start(topology(real_mx=True, down=("mx1", "mx2")), state_dir=state) as lab:
        sent = lab.send(
            "laptop",
            BOB,
            mail_from=ALICE,
            via="smtp",
            user=ALICE,
            password=ALICE_PASSWORD,
            subject="Queued across a restart",
        )
        assert sent.outcome == "deferred", sent.outcome
        [entry] = queue(lab)
    assert mailbox_files(state) == 0
    return str(entry["id"])


@pytest.mark.parametrize("backend", ["local", pytest.param("mininet", marks=needs_mininet)])
def test_a_restarted_lab_sends_its_queue_to_the_primary_mx(tmp_path: Path, backend: str) -> None:
    """After a restart the relay runs its recovered queue by itself, once, to
    the primary MX, on both backends (the state directory is the same)."""
    state = tmp_path / "state"
    queue_id = _queued_while_the_mx_were_down(state)
    with sim.start(topology(real_mx=True), state_dir=state, backend=backend) as lab:
        # No flush: the relay attempts the recovered entry by itself.
        wait_until(lambda: len(mailbox(lab, "mx1", "bob")) == 1, timeout=30)
        wait_until(lambda: queue(lab) == [])
        attempts = [
            e
            for e in lab.trace().events
            if e.kind == "queue"
            and e.data.get("queue_id") == queue_id
            and e.data.get("event") in ("attempt", "deferred")
        ]
        assert [(e.data["event"], e.data["mx"]) for e in attempts] == [
            ("attempt", "mx1.qq.example")
        ]
        assert mailbox(lab, "mx2", "bob") == []


def test_a_recovered_queue_waits_until_the_whole_lab_is_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No attempt before Service.lab_started: services start in waves (and on
    mininet in a process per node, in parallel), and a relay that ran its
    queue meanwhile could find the primary MX not yet listening."""
    from sim.services.relay import RelayServer

    state = tmp_path / "state"
    queue_id = _queued_while_the_mx_were_down(state)
    seen: list[tuple[str, str]] = []
    lab_started, attempt = RelayServer.lab_started, RelayServer._attempt

    async def started(self: RelayServer) -> None:
        seen.append(("lab started", self.ctx.node.name))
        await lab_started(self)

    async def attempted(self: RelayServer, entry: Any) -> None:
        seen.append(("attempt", entry.id))
        await attempt(self, entry)

    monkeypatch.setattr(RelayServer, "lab_started", started)
    monkeypatch.setattr(RelayServer, "_attempt", attempted)
    with sim.start(topology(real_mx=True), state_dir=state) as lab:
        wait_until(lambda: len(mailbox(lab, "mx1", "bob")) == 1, timeout=30)
    assert seen[:2] == [("lab started", "smtp"), ("attempt", queue_id)]
