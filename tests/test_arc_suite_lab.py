"""ARC (RFC 8617) chain validation, case by case, through a lab.

The cases are data (tests/fixtures/auth/arc-rfc8617-cases.yaml): how the
message is sealed and changed on its way, and what the receiver must find.
The sealers' keys are published in the lab's zones, each message goes over
SMTP from a lab node to the lab MX, and the verdict is read from the MX's
``arc`` check event, as tests/test_dkim_suite_lab.py does for DKIM.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from rawsend import send_raw

import sim
from sim.auth.arc import seal
from sim.auth.dkim import generate_key, key_txt_rdata
from sim.topology import loads_topology

CASES_FILE = Path(__file__).parent / "fixtures" / "auth" / "arc-rfc8617-cases.yaml"
CASES: list[dict[str, Any]] = yaml.safe_load(CASES_FILE.read_text())["cases"]

MX_IP = "203.0.113.25"
KEY = generate_key(1024)
SEALERS = ("list.example", "fwd.example", "relay.example")

MESSAGE = (
    b"From: Alice <alice@bank.example>\r\n"
    b"To: news@list.example\r\n"
    b"Subject: quarterly figures\r\n"
    b"Date: Sat, 05 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <arc-case@bank.example>\r\n"
    b"\r\n"
    b"The figures are attached.\r\n"
)


def _zones() -> str:
    out = ""
    for domain in SEALERS:
        out += f"  {domain}: |\n    s1._domainkey TXT {key_txt_rdata(KEY[1])}\n"
    return out


TOPOLOGY = f"""
name: arc-cases
settings: {{resolver: 198.51.100.53, time_scale: 60}}
nodes:
  internet: {{kind: router}}
  ns:
    kind: host
    ip: 198.51.100.53/24
    gateway: internet
    services: {{dns: {{zones: [{", ".join(SEALERS)}, mx.example]}}}}
  mx:
    kind: host
    ip: {MX_IP}/24
    gateway: internet
    services: {{mx: {{domains: [mx.example], mailboxes: [bob], checks: {{arc: header}}}}}}
  sender: {{kind: host, ip: 192.0.2.10/24, gateway: internet}}
zones:
{_zones()}  mx.example: |
    @ MX 10 mx
    mx A {MX_IP}
"""


def _set_lines(message: bytes, instance: int) -> list[bytes]:
    """The (unfolded-as-written) header fields of ARC set ``instance``."""
    head = message.split(b"\r\n\r\n", 1)[0]
    fields = re.split(rb"\r\n(?![ \t])", head)
    return [
        f for f in fields if f.lower().startswith(b"arc-") and re.search(rb"\bi=%d;" % instance, f)
    ]


def apply(message: bytes, step: dict[str, Any]) -> bytes:
    """One step of a case (see the fixture's header)."""
    ((op, arg),) = step.items()
    if op == "seal":
        return seal(
            message,
            arg["by"],
            arg.get("selector", "s1"),
            KEY[0],
            f"mx.{arg['by']}",
            arg.get("saw", ""),
            arg["cv"],
        )
    if op == "append_body":
        return message + str(arg).encode()
    if op == "drop_instance":
        for line in _set_lines(message, int(arg)):
            message = message.replace(line + b"\r\n", b"", 1)
        return message
    if op == "renumber":
        for line in _set_lines(message, int(arg["from"])):
            message = message.replace(
                line, line.replace(b"i=%d;" % arg["from"], b"i=%d;" % arg["to"], 1), 1
            )
        return message
    if op == "tamper_aar":
        (aar,) = [f for f in _set_lines(message, int(arg)) if f.lower().startswith(b"arc-auth")]
        return message.replace(aar, aar.replace(b"=fail", b"=pass"), 1)
    if op == "duplicate":
        name = str(arg["field"]).lower().encode()
        (line,) = [
            f for f in _set_lines(message, int(arg["instance"])) if f.lower().startswith(name)
        ]
        return line + b"\r\n" + message
    raise AssertionError(f"unknown step {op}")


def build(case: dict[str, Any]) -> bytes:
    message = MESSAGE
    for step in case["steps"]:
        message = apply(message, step)
    return message


@pytest.fixture(scope="module")
def lab() -> Iterator[sim.Lab]:
    with sim.start(loads_topology(TOPOLOGY)) as running:
        yield running


def send(lab: sim.Lab, data: bytes) -> dict[str, Any]:
    (event,) = send_raw(
        lab,
        data,
        mx_ip=MX_IP,
        mail_from="news-bounces@list.example",
        helo="sender.list.example",
        check="arc",
    )
    return event


def test_the_fixture_covers_the_rfc_cases() -> None:
    ids = {c["id"] for c in CASES}
    for wanted in (
        "cv-none",
        "one-seal-passes",
        "broken-ams",
        "broken-as",
        "instance-gap",
        "instance-over-50",
        "sealed-after-failure",
    ):
        assert wanted in ids


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(lab: sim.Lab, case: dict[str, Any]) -> None:
    event = send(lab, build(case))
    assert event["result"] == case["expect"], event["explanation"]
    if "reason" in case:
        assert event["details"]["reason"] == case["reason"], event["explanation"]
    if "sealer" in case:
        assert event["details"]["sealer"] == case["sealer"]
        assert event["details"]["cv"] == "pass"
    if "oldest_pass" in case:
        assert event["details"]["oldest_pass"] == case["oldest_pass"]


# -- the receiver's local policy: a trusted sealer and DMARC (RFC 8617 §7.2) ----


def _judged(arc_result: str, sealer: str, saw: dict[str, str]) -> list[Any]:
    from sim.auth.result import CheckResult
    from sim.services.policy import judge

    dmarc = CheckResult(
        "dmarc",
        "fail",
        "DMARC fails for bank.example.",
        {"from_domain": "bank.example"},
        {"disposition": "reject", "policy": "reject"},
    )
    arc = CheckResult(
        "arc",
        arc_result,
        "",
        {"ip": "203.0.113.70"},
        {"sealer": sealer, "sealer_saw": saw, "oldest_pass": 0},
    )
    return [judge(arc, "header", "data"), judge(dmarc, "policy", "data", domain="bank.example")]


def _settings(*sealers: str) -> Any:
    from sim.topology.model import ArcTrust

    class Mx:
        arc = ArcTrust(sealers)

    return Mx()


@pytest.mark.parametrize(
    ("arc_result", "sealer", "saw", "trusted", "taken", "note"),
    [
        (
            "pass",
            "list.example",
            {"dmarc": "pass"},
            ("list.example",),
            "header",
            "policy overridden",
        ),
        (
            "pass",
            "list.example",
            {"dkim": "pass"},
            ("list.example",),
            "header",
            "policy overridden",
        ),
        ("pass", "list.example", {"dmarc": "fail"}, ("list.example",), "reject", "itself saw"),
        ("pass", "evil.example", {"dmarc": "pass"}, ("list.example",), "reject", "not one this MX"),
        ("fail", "list.example", {"dmarc": "pass"}, ("list.example",), "reject", "ARC fail"),
        ("pass", "list.example", {"dmarc": "pass"}, (), "reject", None),
    ],
)
def test_a_trusted_sealer_overrides_only_what_it_saw_pass(
    arc_result: str,
    sealer: str,
    saw: dict[str, str],
    trusted: tuple[str, ...],
    taken: str,
    note: str | None,
) -> None:
    from sim.auth.headers import authentication_results
    from sim.services.checks.arc import override

    before = _judged(arc_result, sealer, saw)
    after = override(before, _settings(*trusted))
    assert after[0] is before[0]
    dmarc = after[1]
    assert dmarc.taken == taken
    assert (dmarc.reply is None) == (taken == "header")
    if note is None:
        assert dmarc is before[1]
        return
    assert dmarc.note is not None and note in dmarc.note and note in dmarc.summary
    header = authentication_results("mx.qq.example", [j.result for j in after])
    if taken == "header":
        assert dmarc.result.details["override"] == "trusted_forwarder"
        assert 'reason="local policy override: ARC pass, trusted sealer list.example"' in header
    else:
        assert "override" not in header
