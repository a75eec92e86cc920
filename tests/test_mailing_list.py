"""Mailing lists that change mail, and ARC (RFC 8617) at a receiver that
trusts the list: the case of lab 7 (topologies/dmarc.yaml), on both backends.

bank.example publishes p=reject and signs DKIM; news@list.example adds a tag
and a footer and resends from news-bounces@list.example; bob's MX (mx-qq)
judges DMARC by the domain's policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mininet_support import needs_mininet

import sim
from sim.services.mailinglist import rewrite
from sim.topology.model import MailingList

TOPOLOGY = Path(__file__).parent.parent / "topologies" / "dmarc.yaml"


@pytest.fixture(
    scope="module",
    params=["local", pytest.param("mininet", marks=needs_mininet)],
)
def lab(request: pytest.FixtureRequest) -> Iterator[sim.Lab]:
    """The same lab on both backends: every outcome below must be the same."""
    with sim.start(sim.load_topology(TOPOLOGY), backend=request.param) as running:
        yield running


def _post(lab: sim.Lab, subject: str, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "mail_from": "ceo@bank.example",
        "via": "mail-bank",
        "user": "ceo@bank.example",
        "password": "vault",
    }
    args.update(kw)
    return lab.send(
        str(args.pop("node", "mail-bank")),
        "news@list.example",
        subject=subject,
        settle=True,
        **args,
    )


def _dmarc(result: Any) -> dict[str, Any]:
    # mx-qq's, the list's last hop (a settled send also holds what came
    # after: the bounce the list's relay received, checked in its turn).
    events = [
        e.data
        for e in result.trace.of_kind("check")
        if e.data.get("check") == "dmarc" and e.node == "mx-qq"
    ]
    return events[-1]


def _reset(lab: sim.Lab) -> None:
    for sealer in ("list.example", "fwd.example"):
        lab.control("mx-qq", "mx", "arc_trust", sealer=sealer, off=True)
    lab.control("lists", "mx", "list_set", list="news", rewrite_from=False, arc_seal=False)


def test_the_footer_breaks_dkim_and_p_reject_bites(lab: sim.Lab) -> None:
    _reset(lab)
    r = _post(lab, "plain list")
    assert r.outcome == "bounced"
    assert r.reply is not None and r.reply["enhanced"] == "5.7.26"
    # At the last hop SPF passes for the list's own domain (the envelope was
    # rewritten), DKIM fails for the author (the footer), DMARC fails.
    assert r.checks["spf"] == "pass"
    assert r.checks["dmarc"] == "fail"
    assert r.checks["arc"] == "none"
    delivery = [e for e in r.trace.of_kind("delivery") if e.data.get("folder") == "list"]
    assert delivery and "news-bounces@list.example" in delivery[0].summary


def test_a_trusted_sealer_saves_it_and_says_so(lab: sim.Lab) -> None:
    _reset(lab)
    lab.control("lists", "mx", "list_set", list="news", arc_seal=True)
    lab.control("mx-qq", "mx", "arc_trust", sealer="fwd.example")
    untrusted = _post(lab, "sealed, not yet trusted")
    assert untrusted.outcome == "bounced"
    assert untrusted.checks["arc"] == "pass"
    assert "not one this MX trusts" in _dmarc(untrusted)["details"]["arc_override"]
    lab.control("mx-qq", "mx", "arc_trust", sealer="list.example")
    r = _post(lab, "sealed and trusted")
    assert r.outcome == "delivered"
    assert r.checks["dmarc"] == "fail"  # still a failure: only its policy was overridden
    dmarc = _dmarc(r)
    assert dmarc["details"]["override"] == "trusted_forwarder"
    assert dmarc["details"]["override_by"] == "list.example"
    assert dmarc["action"] == "header"
    stored = lab.mailbox("bob@qq.example")[-1].data.decode()
    assert 'dmarc=fail reason="local policy override: ARC pass, trusted sealer list.example"' in (
        stored.replace("\r\n\t", " ")
    )
    assert "arc=pass" in stored and "ARC-Seal: i=1; cv=none" in stored
    assert "Subject: [news] sealed and trusted" in stored


def test_a_spoof_through_a_trusted_list_is_not_laundered(lab: sim.Lab) -> None:
    _reset(lab)
    lab.control("lists", "mx", "list_set", list="news", arc_seal=True)
    lab.control("mx-qq", "mx", "arc_trust", sealer="list.example")
    r = lab.send(
        "spoofer",
        "news@list.example",
        mail_from="x@evil.example",
        from_header="ceo@bank.example",
        subject="forged through the list",
        settle=True,
    )
    assert r.outcome == "bounced"
    assert r.checks["arc"] == "pass"
    assert "itself saw" in _dmarc(r)["details"]["arc_override"]


def test_from_rewriting_moves_dmarc_to_the_list(lab: sim.Lab) -> None:
    _reset(lab)
    lab.control("lists", "mx", "list_set", list="news", rewrite_from=True)
    r = _post(lab, "rewritten")
    assert r.outcome == "delivered"
    assert r.checks["dmarc"] in ("pass", "none")
    assert _dmarc(r)["inputs"]["from_domain"] == "list.example"
    stored = lab.mailbox("bob@qq.example")[-1].data.decode()
    assert 'From: "ceo@bank.example via news" <news@list.example>' in stored
    assert "Reply-To: ceo@bank.example" in stored


def test_rewrite_keeps_what_a_list_keeps() -> None:
    message = (
        b"From: Alice <alice@bank.example>\r\nSubject: [news] hi\r\nList-Id: <old.up.example>\r\n"
        b"\r\nbody"
    )
    spec = MailingList(("b@q.example",), "[news]", "-- \nfooter", rewrite_from=True)
    copy = rewrite(message, "news", "list.example", spec)
    text = copy.data.decode()
    assert copy.mail_from == "news-bounces@list.example"
    assert "Subject: [news] hi\r\n" in text  # tagged once only
    assert "From: Alice via news <news@list.example>" in text
    assert "Reply-To: Alice <alice@bank.example>" in text
    assert text.count("List-Id:") == 1 and "List-Id: <news.list.example>" in text
    assert text.endswith("body\r\n-- \r\nfooter\r\n")


BAD = """
name: x
settings: {resolver: 10.0.0.53}
nodes:
  r: {kind: router}
  ns: {kind: host, ip: 10.0.0.53/24, gateway: r, services: {dns: {zones: [list.example]}}}
  a:
    kind: host
    ip: 10.0.1.2/24
    gateway: r
    services:
      mx:
        domains: [list.example]
        checks: [dmarc]
        arc: {trusted_sealers: [fwd.example]}
        lists: {news: {members: [b@list.example], arc_seal: true}}
      RELAY
zones:
  list.example: |
    @ MX 10 mx
    mx A 10.0.1.2
"""


@pytest.mark.parametrize(
    ("relay", "problems"),
    [
        ("relay: {}", ["add `arc` to its checks", "add `dkim: {list.example: s1}`"]),
        ("{}", ["add `arc` to its checks", "add `relay: {}` beside the mx"]),
    ],
)
def test_lists_and_trust_that_cannot_work_are_one_line_each(
    relay: str, problems: list[str]
) -> None:
    from sim.errors import TopologyError
    from sim.topology import loads_topology

    text = BAD.replace("RELAY", relay) if relay != "{}" else BAD.replace("      RELAY\n", "")
    with pytest.raises(TopologyError) as caught:
        loads_topology(text)
    lines = str(caught.value).splitlines()
    assert len(lines) == len(problems)
    for line, wanted in zip(lines, problems, strict=True):
        assert wanted in line and line.startswith("<string>:")


def test_a_list_send_follows_every_member() -> None:
    """``lab.send`` to a list reports the first member's fate as the
    message's, and every member's in ``members`` (sim.experiments.send)."""
    from sim.topology import loads_topology

    text = TOPOLOGY.read_text(encoding="utf-8").replace(
        "members: [bob@qq.example]", "members: [bob@old.example, bob@qq.example]"
    )
    assert "bob@old.example, bob@qq.example" in text
    with sim.start(loads_topology(text)) as running:
        r = _post(running, "to two members")
    # mx-old (RFC 7489 receiver) and mx-qq both apply bank.example's p=reject.
    assert r.outcome == "bounced"
    (entry,) = r.recipients
    assert entry["rcpt"] == "news@list.example"
    assert [m["rcpt"] for m in entry["members"]] == ["bob@old.example", "bob@qq.example"]
    assert {m["outcome"] for m in entry["members"]} == {"bounced"}
