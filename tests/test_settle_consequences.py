"""``settle: true`` includes what the message causes (issue 21): a send
that bounces returns only once the bounce is stored, so a mailbox read right
after sees it, the same on both backends (it used to be 0 on local, 1 on
mininet)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

import sim

TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "reliability.yaml"


@pytest.fixture(
    scope="module",
    params=["local", pytest.param("mininet", marks=pytest.mark.mininet)],
)
def lab(request: pytest.FixtureRequest) -> Iterator[sim.Lab]:
    with sim.start(TOPOLOGY, backend=request.param) as running:
        yield running


def test_a_settled_bounce_is_in_the_senders_mailbox_when_the_send_returns(
    lab: sim.Lab,
) -> None:
    subject = "to nobody " + secrets.token_hex(3)
    before = len(lab.mailbox("alice@home.example"))
    result = lab.send(
        "laptop",
        "nosuchuser@qq.example",
        mail_from="alice@home.example",
        via="smtp-isp",
        user="alice@home.example",
        password="secret",
        subject=subject,
        settle=True,
    )
    assert result.outcome == "bounced"
    assert result.reply is not None and result.reply["enhanced"] == "5.1.1"
    # Read at once: the bounce (a DSN to alice, RFC 3464) is already stored.
    bounces = lab.mailbox("alice@home.example")
    assert len(bounces) == before + 1
    [content_type] = bounces[-1].header("Content-Type")
    assert content_type.startswith("multipart/report")
    assert "delivery-status" in content_type
    delivered = [
        e for e in result.trace.of_kind("delivery") if e.data.get("mailbox") == "alice@home.example"
    ]
    assert delivered, "the bounce's delivery is in the send's trace"
