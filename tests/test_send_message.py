"""``send --message FILE`` / ``lab.send(message=...)``: a whole RFC 5322
message sent as it is, the envelope from the other options, on both backends."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mininet_support import needs_mininet

import sim

ROOT = Path(__file__).resolve().parents[1]

SPOOF = (
    "From: Your Bank <ceo@bank.example>\n"
    "To: bob@qq.example\n"
    "Subject: urgent\n"
    "Message-ID: <raw-1@evil.example>\n"
    "\n"
    "Pay this invoice.\n"
)

OWN = (
    "From: Alice <alice@home.example>\n"
    "To: bob@qq.example\n"
    "Subject: written by hand\n"
    "Message-ID: <raw-2@home.example>\n"
    "X-Written-By: a student\n"
    "\n"
    "Every header of this message is mine.\n"
)


@pytest.fixture(scope="module", params=["local", pytest.param("mininet", marks=needs_mininet)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_raw_message_keeps_its_own_from_and_is_judged_by_it(backend: str) -> None:
    """The spoofed From: of the file is what DMARC judges (p=reject)."""
    with sim.start("dmarc", backend=backend) as lab:
        result = lab.send("spoofer", "bob@qq.example", mail_from="x@evil.example", message=SPOOF)
    assert (result.outcome, result.reply["enhanced"]) == ("rejected", "5.7.26")
    assert result.checks["dmarc"] == "fail" and result.checks["spf"] == "pass"


def test_a_raw_message_arrives_with_every_header_as_written(backend: str) -> None:
    with sim.start("home-isp", backend=backend) as lab:
        result = lab.send(
            "laptop",
            "bob@qq.example",
            via="smtp-isp",
            user="alice@home.example",
            password="secret",
            message=OWN,
            settle=True,
        )
        assert result.outcome == "delivered", result.reply
        (stored,) = [m for m in lab.mailbox("bob@qq.example") if m.subject == "written by hand"]
    assert b"X-Written-By: a student" in stored.data
    assert b"<raw-2@home.example>" in stored.data


def test_message_and_composing_options_do_not_go_together() -> None:
    with sim.start("home-isp") as lab, pytest.raises(sim.SimError, match="leave out subject"):
        lab.send("laptop", "bob@qq.example", subject="x", message=OWN)


def _maillab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sim.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_line_sends_a_file(tmp_path: Path) -> None:
    path = tmp_path / "mail.eml"
    path.write_text(OWN)
    done = _maillab(
        "send", "topologies/home-isp.yaml", "--from", "laptop", "--to", "bob@qq.example",
        "--via", "smtp-isp", "--user", "alice@home.example", "--password", "secret",
        "--message", str(path), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["outcome"] == "delivered"


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--message", "/nonexistent/mail.eml"], "--message /nonexistent/mail.eml"),
        (["--message", "/dev/zero"], "--message /dev/zero"),
        (["--message", "{path}", "--subject", "x"], "leave out subject"),
    ],
)
def test_a_bad_message_is_one_line_and_exit_2(tmp_path: Path, extra: list[str], says: str) -> None:
    path = tmp_path / "mail.eml"
    path.write_text(OWN)
    args = [a.replace("{path}", str(path)) for a in extra]
    done = _maillab(
        "send", "topologies/home-isp.yaml", "--from", "laptop", "--to", "bob@qq.example", *args
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], done.stderr
    assert "Traceback" not in done.stderr
