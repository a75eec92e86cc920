"""An MX alias that forwards (RFC 5321 §3.9.1): the envelope sender stays,
so SPF fails at the next hop while the untouched DKIM signature carries
DMARC (RFC 9989 §7.4). Followed end to end on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import sim

TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "dmarc.yaml"


@pytest.fixture(
    scope="module",
    params=["local", pytest.param("mininet", marks=pytest.mark.mininet)],
)
def lab(request: pytest.FixtureRequest) -> Iterator[sim.Lab]:
    with sim.start(TOPOLOGY, backend=request.param) as running:
        yield running


def test_forwarded_mail_fails_spf_and_passes_dmarc_on_dkim(lab: sim.Lab) -> None:
    result = lab.send(
        "mail-bank",
        "bob@uni.example",
        mail_from="ceo@bank.example",
        via="mail-bank",
        user="ceo@bank.example",
        password="vault",
        subject="forwarded statement",
        # Two relays carry it: on a loaded machine a first attempt may time
        # out and be retried, as a real queue would (lab time is advanced).
        settle=True,
    )
    assert result.outcome == "delivered", result.recipients
    assert result.recipients[0]["forwarded"] == ["bob@qq.example"]
    assert result.checks["spf"] == "fail"
    assert result.checks["dkim"] == "pass"
    assert result.checks["dmarc"] == "pass"
    forwarded = [e for e in result.trace.of_kind("delivery") if e.data["folder"] == "forwarded"]
    assert forwarded and forwarded[0].node == "mx-uni"
    stored = [m for m in lab.mailbox("bob@qq.example") if m.subject == "forwarded statement"]
    assert len(stored) == 1
    received = stored[0].header("Received")
    assert any("mail.uni.example" in r for r in received), received
    # The envelope sender is unchanged by the alias.
    assert stored[0].header("Return-Path") == ["<ceo@bank.example>"]


def test_a_forward_without_a_relay_is_a_topology_error() -> None:
    from sim.topology import validate_topology_text

    text = TOPOLOGY.read_text().replace("      relay:\n        hostname: mail.uni.example\n", "")
    problems = validate_topology_text(text, "dmarc.yaml")
    assert any("forward" in p.message and "relay" in p.message for p in problems)
