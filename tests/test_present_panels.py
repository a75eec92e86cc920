"""The DMARC alignment panel, the retry timeline and the rich results, on real traces."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from presentkit import SvgSnapshot, TextSnapshot, recorded

import sim
from sim.present import alignment_of, timeline_of
from sim.trace import Trace

ROOT = Path(__file__).resolve().parent.parent


# -- the alignment panel --------------------------------------------------------------


def test_a_legitimate_message_is_aligned_twice_at_its_own_org_domain(snapshot: Any) -> None:
    panel = alignment_of(recorded("submitted"))
    assert panel is not None
    assert (panel.from_domain, panel.mail_from_domain, panel.dmarc) == (
        "home.example",
        "home.example",
        "pass",
    )
    assert panel.spf is not None and panel.spf.aligned and panel.spf.result == "pass"
    assert [(i.domain, i.result, i.aligned) for i in panel.dkim] == [("home.example", "pass", True)]
    assert panel.spf.record == "v=spf1 a:smtp.home.example -all"
    assert panel.dkim[0].record_name == "mail2026._domainkey.home.example"
    # RFC 9989 tree walk: the record at the domain, then one label up.
    assert panel.queries == ("_dmarc.home.example TXT", "_dmarc.example TXT")
    assert panel.org_domain == "home.example" and panel.policy == "reject"
    text = panel.to_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert text == snapshot.use_extension(TextSnapshot)


def test_a_forged_from_is_not_aligned_and_the_policy_rejects(snapshot: Any) -> None:
    panel = alignment_of(recorded("dmarc-reject"))
    assert panel is not None
    assert (panel.from_domain, panel.mail_from_domain) == ("bank.example", "evil.example")
    assert panel.spf is not None and panel.spf.result == "pass" and panel.spf.aligned is False
    assert panel.dkim == []  # the spoofer does not sign
    assert (panel.dmarc, panel.policy, panel.action) == ("fail", "reject", "reject")
    assert panel.record == "v=DMARC1; p=reject" and panel.record_domain == "bank.example"
    html = panel._repr_html_()
    assert 'data-aligned="False"' in html and "not aligned" in html
    assert "(none)" in html  # no DKIM signature, said so
    assert panel.to_text() == snapshot.use_extension(TextSnapshot)


def test_no_authentication_checks_no_panel() -> None:
    assert alignment_of(recorded("blocked")) is None
    assert alignment_of(Trace()) is None


def test_send_json_carries_the_panel_and_keeps_its_keys() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "sim.cli", "send", "topologies/home-isp.yaml", "--from", "laptop",
         "--to", "bob@qq.example", "--via", "smtp-isp", "--user", "alice@home.example",
         "--password", "secret", "--mail-from", "alice@home.example", "--json"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert {"outcome", "stage", "reply", "checks", "trace"} <= set(data)
    alignment = data["alignment"]
    assert alignment["from_domain"] == "home.example" and alignment["dmarc"] == "pass"
    assert {i["identifier"]: i["aligned"] for i in alignment["identities"]} == {
        "spf": True,
        "dkim": True,
    }


# -- the retry timeline ------------------------------------------------------------------


def test_a_long_outage_shows_24_attempts_a_warning_and_the_bounce(snapshot: Any) -> None:
    result = recorded("bounced")
    timeline = timeline_of(result)
    assert timeline is not None and timeline.queue_id == result.queue_id
    assert len(timeline.attempts) == 24 and timeline.end == "bounced"
    assert all(m.result == "deferred" for m in timeline.attempts[:-1])
    assert timeline.attempts[-1].result == "bounced"
    kinds = [m.kind for m in timeline.marks]
    assert kinds.count("warning") == 1 and "bounced" in kinds
    warning = next(m for m in timeline.marks if m.kind == "warning")
    assert 4 * 3600 <= warning.dt <= 9 * 3600  # warn_after 4h, at the next retry
    assert 5 * 86400 <= timeline.span < 6 * 86400
    # Days pass: a log axis, on which the first retry (5 min) is far from 0.
    assert timeline.log_scale and timeline.x(300) > 0.2
    xs = [timeline.x(m.dt) for m in timeline.marks]
    assert xs == sorted(xs) and xs[-1] == pytest.approx(1.0)
    text = timeline.to_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "attempts 6-23" in text  # identical deferrals folded into one line
    assert text == snapshot.use_extension(TextSnapshot)
    svg = timeline.to_svg()
    root = ET.fromstring(svg)
    assert sum(1 for el in root.iter() if "attempt" in (el.get("class") or "")) == 24
    assert svg == snapshot.use_extension(SvgSnapshot)


def test_a_direct_send_has_no_queue_and_no_timeline() -> None:
    assert timeline_of(recorded("dmarc-reject")) is None


def test_a_first_time_delivery_is_one_attempt_on_a_linear_axis() -> None:
    timeline = timeline_of(recorded("submitted"))
    assert timeline is not None
    assert [m.result for m in timeline.attempts] == ["delivered"]
    assert timeline.end == "delivered" and not timeline.log_scale


# -- rich results ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["blocked", "submitted", "dmarc-reject", "bounced"])
def test_results_have_a_short_repr_and_an_html_card(case: str) -> None:
    result = recorded(case)
    text = repr(result)
    assert text.startswith("<SendResult ") and len(text) < 300 and "\n" not in text
    html = result._repr_html_()
    assert 'class="maillab-result"' in html and "maillab-sequence" in html
    assert repr(result.trace).startswith("<Trace ") and len(repr(result.trace)) < 300
    assert "maillab-sequence" in result.trace._repr_html_()


def test_the_card_says_whose_reply_it_shows_and_lists_checks_in_order() -> None:
    from sim.notebook import show_result

    card = show_result(recorded("submitted"))
    assert card.row("final reply, mx-qq") == card.row("reply")
    assert (card.row("reply") or "").startswith("250 2.0.0")
    assert [name for name, _ in card.checks] == ["ptr", "dnsbl", "spf", "dkim", "dmarc"]
    rejected = show_result(recorded("dmarc-reject"))
    assert ("reply, mx-qq", rejected.row("reply")) in rejected.rows
    html = recorded("submitted")._repr_html_()
    assert "final reply, mx-qq" in html and "maillab-alignment" in html


def test_the_running_lab_shows_a_node_map() -> None:
    with sim.start(ROOT / "topologies" / "home-isp.yaml") as lab:
        text = repr(lab)
        assert text.startswith("<Lab home-isp on local, running") and "0x" not in text
        html = lab._repr_html_()
        dig = lab.dig("laptop", "qq.example", "MX")
        connect = lab.connect("laptop", "mx.qq.example", 25)
    for node in ("laptop", "isp", "mx-qq", "smtp-isp"):
        assert f">{node}<" in html
    assert "203.0.113.25" in html and "mx 203.0.113.25:25/tcp" in html
    assert "the map</summary>" in html and "<svg" in html  # the drawing, folded
    assert repr(dig).startswith("<DigResult qq.example. MX NOERROR: 10 mx.qq.example.")
    assert repr(connect).startswith("<ConnectResult 203.0.113.25:25 blocked (timeout)")
    assert "maillab-result" in dig._repr_html_() and "maillab-result" in connect._repr_html_()
    assert "stopped" in repr(lab)


def test_the_tui_gets_text_of_any_width() -> None:
    from sim.present import alignment_text, sequence_text, timeline_text

    for width in (60, 80):
        for text in (
            sequence_text(recorded("submitted"), width, ascii_only=True),
            alignment_text(recorded("dmarc-reject"), width),
            timeline_text(recorded("bounced"), width, ascii_only=True),
        ):
            assert text is not None
            assert all(len(line) <= width for line in text.splitlines())
    assert (timeline_text(recorded("bounced"), ascii_only=True) or "").isascii()
    assert alignment_text(recorded("blocked")) is None
    assert timeline_text(recorded("blocked")) is None


def test_a_mailbox_read_has_a_card_a_repr_and_a_diagram() -> None:
    from mdarig import BOB, BOB_PW, MAIL, start_lab

    from sim.present import sequence_of

    lab = start_lab()
    try:
        good = lab.read("client", BOB, BOB_PW, via=MAIL)
        bad = lab.read("client", BOB, "wrong", via=MAIL)
    finally:
        lab.stop()
    assert repr(good).startswith("<ReadResult imap bob INBOX: 0 messages")
    assert "failed at login: AUTHENTICATIONFAILED" in repr(bad)
    assert sequence_of(good).failing is None
    diagram = sequence_of(bad)
    step = diagram.steps[diagram.failing]  # type: ignore[index]
    assert (step.src, step.dst, step.text) == ("mail", "client", "NO Authentication failed.")
    html = bad._repr_html_()
    assert "read: failed" in html and "reply, mail" in html and "maillab-sequence" in html


def test_send_text_output_shows_the_panel() -> None:
    from sim.render import render_send

    text = render_send(recorded("dmarc-reject"))
    assert "DMARC for From: bank.example: FAIL, policy p=reject → reject" in text
    assert text.index("DMARC for From:") < text.index(";; TRACE:")
    assert "DMARC for" not in render_send(recorded("blocked"))
