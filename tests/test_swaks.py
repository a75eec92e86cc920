"""Real clients against the endpoints ``maillab up`` prints (issue 3):
swaks delivers to the MX; swaks with --tls --auth submits on 587; AUTH before
STARTTLS is refused; an unauthenticated relay attempt is refused."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(
    shutil.which("swaks") is None, reason="swaks is missing (apt-get install swaks)"
)

TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "home-isp.yaml"


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("state")
    proc = subprocess.Popen(
        # swaks speaks as the ISP's mail server: a host with a PTR record and
        # no port-25 block, whose address home.example's SPF names.
        [
            sys.executable,
            "-m",
            "sim.cli",
            "up",
            str(TOPOLOGY),
            "--json",
            "--as",
            "smtp-isp",
            "--state-dir",
            str(state),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline())
    try:
        yield ready
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def endpoint(ready: dict[str, Any], node: str, service: str, port: int) -> tuple[str, str]:
    for e in ready["endpoints"]:
        if (e["node"], e["service"], e["proto"]) == (node, service, "tcp") and e["lab"].endswith(
            f":{port}"
        ):
            host, local_port = e["local"].split(":")
            return host, local_port
    raise AssertionError(f"no endpoint {node}/{service}:{port} in {ready['endpoints']}")


def swaks(
    where: tuple[str, str], *args: str, to: str = "bob@qq.example", sender: str
) -> subprocess.CompletedProcess[str]:
    host, port = where
    argv = ["swaks", "--timeout", "20", "--server", host, "--port", port, "--to", to]
    return subprocess.run(
        [*argv, "--from", sender, *args], capture_output=True, text=True, timeout=60
    )


#: alice's credentials at the ISP's submission service (home-isp.yaml).
ALICE_AUTH = ("--auth", "PLAIN", "--auth-user", "alice@home.example", "--auth-password", "secret")


def mailbox(state: str, address: str) -> list[Any]:
    from sim import load_topology
    from sim.experiments.send import mailbox_of

    return mailbox_of(load_topology(TOPOLOGY), Path(state), address)


def test_swaks_delivers_to_the_mx(up: dict[str, Any]) -> None:
    out = swaks(
        endpoint(up, "mx-qq", "mx", 25),
        *("--helo", "smtp.home.example", "--header", "Subject: from swaks"),
        sender="alice@home.example",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "250 2.0.0 Ok: queued as" in out.stdout
    assert [m.subject for m in mailbox(up["state_dir"], "bob@qq.example")].count("from swaks") == 1


def test_swaks_submits_with_starttls_and_auth(up: dict[str, Any]) -> None:
    ca = str(Path(up["state_dir"]) / "tls" / "ca.pem")
    out = swaks(
        endpoint(up, "smtp-isp", "submission", 587),
        *("--tls", "--tls-verify", "--tls-ca-path", ca, "--tls-sni", "smtp.home.example"),
        *ALICE_AUTH,
        *("--header", "Subject: submitted by swaks"),
        sender="alice@home.example",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "235 2.7.0" in out.stdout


def test_auth_before_starttls_is_refused(up: dict[str, Any]) -> None:
    out = swaks(
        endpoint(up, "smtp-isp", "submission", 587), *ALICE_AUTH, sender="alice@home.example"
    )
    assert out.returncode != 0
    # AUTH is not even offered before TLS (RFC 4954 §4, auth_require_tls).
    assert (
        "Host did not advertise authentication" in out.stdout + out.stderr
        or "538 5.7.11" in out.stdout
    )


def test_an_unauthenticated_relay_attempt_is_refused(up: dict[str, Any]) -> None:
    out = swaks(
        endpoint(up, "smtp-isp", "mx", 25),
        "--helo",
        "outside.test",
        sender="someone@outside.test",
    )
    assert out.returncode != 0
    assert "554 5.7.1" in out.stdout and "Relay access denied" in out.stdout
