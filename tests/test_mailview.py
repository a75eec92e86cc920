"""Messages taken apart (sim.mailview), and the renderings built on the
trace and the topology that the evidence views show: the Mail view's text,
the notebook's card, the receivers' policy, the wait after a drop, the
relay's own record of a connection it could not open, the header lines sent
at DATA, and the free experiment box's line.

The messages are recorded from real runs of the local backend (labs 6 and
9): a DKIM-signed newsletter, a bounce, a delay notice.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

import sim
from sim.events import ImapExchange, Net, QueueDeferred, SmtpClientExchange
from sim.lab.model import ExperimentRun
from sim.mailview import describe_delta, parse_mail, parse_received
from sim.notebook import show_mail
from sim.services.smtpclient import header_lines
from sim.trace import TraceEvent, event
from sim.tui.experiment_box import parse_experiment
from sim.tui.mailfmt import render_message
from sim.tui.policyfmt import mx_policy, policy_rows
from sim.tui.task_form import _start
from sim.tui.tracefmt import (
    add_waits,
    entries_text,
    events_from,
    headline,
    pane_entries,
    relay_failure,
    with_waits,
)

MAIL = Path(__file__).parent / "fixtures" / "mail"
ROOT = Path(__file__).parent.parent


def text_of(renderable: object) -> str:
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


# -- messages ----------------------------------------------------------------------


def test_received_chain_reads_in_travel_order_with_times() -> None:
    parts = parse_mail((MAIL / "signed.eml").read_bytes())
    assert [(h.by, h.with_) for h in parts.hops] == [
        ("news.home.example", "ESMTPSA"),
        ("mx.qq.example", "ESMTPS"),
    ]
    first, second = parts.hops
    # A clause word inside a comment ("using TLSv1.3 with cipher") is no clause.
    assert first.from_.startswith("100-64-10-20.dyn.home.example")
    assert "[100.64.10.20]" in first.from_
    assert "Authenticated sender: alice@home.example" in first.notes
    assert first.for_ == "<bob@qq.example>"
    assert first.date is not None and second.date is not None
    assert (second.date - first.date).total_seconds() >= 0


def test_authentication_results_and_dkim_signature() -> None:
    parts = parse_mail((MAIL / "signed.eml").read_bytes())
    (auth,) = parts.authentication_results
    assert "dkim=fail" in auth and "spf=pass" in auth
    (signature,) = parts.dkim_signatures
    assert "d=home.example" in signature and "s=news2024" in signature
    assert parts.arc == []
    shown = text_of(render_message(parts))
    assert "dkim=fail" in shown
    assert "d=home.example" in shown and "s=news2024" in shown
    assert "2 hops" in shown


def test_arc_headers_are_collected() -> None:
    data = (
        b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=list.example; s=arc; b=abc\r\n"
        b"ARC-Authentication-Results: i=1; list.example; spf=pass\r\n"
        b"From: a@b.example\r\nSubject: hi\r\n\r\nbody\r\n"
    )
    parts = parse_mail(data)
    assert [name for name, _ in parts.arc] == ["ARC-Seal", "ARC-Authentication-Results"]
    assert "ARC (RFC 8617)" in text_of(render_message(parts))


def test_a_bounce_shows_its_delivery_status() -> None:
    parts = parse_mail((MAIL / "bounce.eml").read_bytes())
    assert parts.dsn is not None
    (rcpt,) = parts.dsn.recipients
    assert rcpt.recipient == "nobody@qq.example"
    assert (rcpt.action, rcpt.status) == ("failed", "5.1.1")
    assert rcpt.diagnostic.startswith("smtp; 550 5.1.1")
    assert "Reporting-MTA" in dict(parts.dsn.message_fields)
    assert "Subject: Hello nobody" in parts.dsn.returned_headers
    assert parts.body.startswith("This is the mail system")


def test_a_delay_notice_says_until_when_it_retries() -> None:
    parts = parse_mail((MAIL / "delay.eml").read_bytes())
    assert parts.dsn is not None
    (rcpt,) = parts.dsn.recipients
    assert rcpt.action == "delayed" and rcpt.status == "4.4.1"
    assert rcpt.will_retry_until
    shown = text_of(render_message(parts))
    assert "Will-Retry-Until" in shown and "delayed" in shown


def test_a_malformed_message_does_not_raise() -> None:
    parts = parse_mail(b"Received: nonsense without clauses\r\nnot a header\r\n\r\n\xff")
    assert parts.hops[0].raw.startswith("nonsense")
    assert parts.hops[0].date is None
    assert parse_received("from a by b; not a date").date is None


def test_describe_delta() -> None:
    assert [describe_delta(s) for s in (0, 42, 302, 7500, 90000)] == [
        "+0s",
        "+42s",
        "+5m02s",
        "+2h05m",
        "+1d01h",
    ]


def test_notebooks_show_a_message_too() -> None:
    card = show_mail((MAIL / "bounce.eml").read_bytes(), "alice@home.example")
    assert "DSN nobody@qq.example: Action failed, Status 5.1.1" in str(card)
    html = card._repr_html_()
    assert "Delivery status (RFC 3464)" in html and "Diagnostic-Code" in html

    class Lab:
        def mailbox(self, address: str, folder: str = "INBOX") -> list[object]:
            class Stored:
                data = (MAIL / "signed.eml").read_bytes()

            return [Stored()] if address == "bob@qq.example" else []

    card = show_mail(Lab(), "bob@qq.example")
    assert card.parts.subject == "The home.example newsletter"
    with pytest.raises(ValueError, match="no message"):
        show_mail(Lab(), "carol@qq.example")


# -- the receivers' policy -------------------------------------------------------


def test_policy_rows_are_what_the_mx_does() -> None:
    topology = sim.load_topology(ROOT / "topologies" / "spf.yaml")
    rows = {r.text for _, found in policy_rows(topology) for r in found}
    assert "spf fail → reject 550 5.7.23" in rows
    assert "spf softfail → junk" in rows
    assert "spf permerror → header" in rows


def test_dmarc_policy_follows_the_published_disposition() -> None:
    topology = sim.load_topology(ROOT / "topologies" / "dmarc.yaml")
    mx = topology.node("mx-qq").services.mx
    assert mx is not None
    rows = {(r.check, r.result, r.published): r.taken for r in mx_policy(mx)}
    assert rows[("dmarc", "fail", "reject")] == "reject"
    assert rows[("dmarc", "fail", "quarantine")] == "junk"
    assert rows[("dmarc", "fail", "none")] == "header"
    assert rows[("spf", "fail", "")] == "header"


# -- the trace: waits, the relay's own record, the header lines ----------------------


def _drop(t: float, verdict: str = "drop", observed: str | None = None) -> TraceEvent:
    data = Net(
        src="100.64.10.20",
        dst="203.0.113.25",
        proto="tcp",
        port=25,
        verdict=verdict,  # type: ignore[arg-type]
        path=["laptop", "isp"],
        router="isp",
        observed=observed,
    )
    return event(t, "isp", "isp dropped tcp ...", data)


def test_a_drop_is_followed_by_the_clients_wait() -> None:
    names = {"100.64.10.20": "laptop"}.get
    events = add_waits([_drop(10.0)], 30.0, names)
    wait = events[-1]
    assert wait.kind == "wait" and wait.node == "laptop"
    assert wait.t == pytest.approx(40.0, abs=0.01)
    assert "no answer from 203.0.113.25:25 for 30 s" in wait.summary
    story = entries_text(pane_entries("story", events))
    assert "+30s wait" in story


def test_the_wait_ends_at_the_smtp_clients_own_failure() -> None:
    failure = event(
        38.0,
        "laptop",
        "→ connect ...",
        SmtpClientExchange(
            peer="203.0.113.25:25",
            stage="connect",
            command="connect 203.0.113.25:25",
            code=None,
            enhanced=None,
            text="timed out",
        ),
    )
    events = add_waits([_drop(8.0), failure], 30.0)
    (wait,) = [e for e in events if e.kind == "wait"]
    assert wait.data["waited"] == pytest.approx(30.0)
    assert events.index(wait) < events.index(failure)
    smtp = entries_text(pane_entries("smtp", events))
    assert "no reply: timed out" in smtp, "the client's failure is not a server's reply"


def test_on_mininet_the_drop_is_seen_at_the_timeout() -> None:
    dns = TraceEvent(10.0, "dns", "ns", "asked A mx.qq.example.", {})
    events = add_waits([dns, _drop(40.0, observed="timeout")], 30.0)
    (wait,) = [e for e in events if e.kind == "wait"]
    assert wait.t == pytest.approx(40.0, abs=0.01) and wait.data["waited"] == 30.0
    assert [e.kind for e in events] == ["dns", "net", "wait"], "the wait follows the drop"
    story = entries_text(pane_entries("story", events))
    assert "⋮ 30 s of lab time pass" in story


def test_a_reject_has_no_wait() -> None:
    rejected = _drop(10.0, verdict="reject")
    assert add_waits([rejected], 30.0) == [rejected]


def test_the_headline_of_a_drop_says_how_long_the_client_waited() -> None:
    data = json.loads((Path(__file__).parent / "fixtures" / "tui" / "canned.json").read_text())
    blocked = data["send laptop bob@qq.example direct"]
    shown = headline(with_waits(blocked, 30.0)).plain
    assert "no answer for 30 s, giving up (dropped, not rejected)" in shown


def test_a_connection_the_relay_could_not_open_is_its_own_record() -> None:
    deferred = QueueDeferred(
        queue_id="01",
        rcpt="erin@far.example",
        remote_mta=None,
        reply={
            "code": 451,
            "enhanced": "4.4.1",
            "text": "connect to mx.far.example[203.0.113.60]:25: connection refused",
        },
        next_attempt=301.1,
        stage="connect",
    )
    assert relay_failure(deferred) == "connection refused"
    answered = replace(
        deferred,
        remote_mta="mx.far.example",
        reply={"code": 450, "enhanced": None, "text": "x"},
    )
    assert relay_failure(answered) is None
    queued = event(0.06, "smtp-isp", "01 <erin@far.example> deferred: 451 ...", deferred)
    result = {"outcome": "deferred", "reply": deferred.reply, "trace": [queued.to_json()]}
    shown = headline(result).plain
    assert "deferred: connection refused" in shown
    assert "the relay records 4.4.1 itself" in shown
    queue = entries_text(pane_entries("queue", events_from(result)))
    assert "connection refused: no server answered; the relay records 451 4.4.1" in queue
    assert "next attempt at +5m01s" in queue


def test_the_smtp_view_shows_the_header_lines_sent() -> None:
    lines = header_lines((MAIL / "signed.eml").read_bytes())
    assert "Subject: The home.example newsletter" in lines
    assert any(line.startswith("DKIM-Signature: v=1;") for line in lines)
    sent = event(
        1.0,
        "news",
        "→ (message) .",
        SmtpClientExchange(
            peer="203.0.113.25:25",
            stage="data",
            command="(message, 1941 bytes) .",
            code=250,
            enhanced=None,
            text="Ok",
            headers=lines,
        ),
    )
    smtp = entries_text(pane_entries("smtp", [sent]))
    assert "From: alice@home.example" in smtp
    assert "Subject: The home.example newsletter" in smtp
    assert "DKIM-Signature: v=1;" in smtp
    assert "X-Maillab-Checks" not in smtp, "only the lines a step asks about"


# -- the free experiment box, the zone selector -----------------------------------


def test_the_experiment_line() -> None:
    topology = sim.load_topology(ROOT / "topologies" / "reliability.yaml")
    assert parse_experiment("dig laptop qq.example mx", topology) == (
        ExperimentRun("dig", "laptop", (("name", "qq.example"), ("type", "MX"))),
        None,
    )
    assert parse_experiment("connect laptop mx.qq.example 587", topology)[0] == ExperimentRun(
        "connect", "laptop", (("host", "mx.qq.example"), ("port", 587))
    )
    run, problem = parse_experiment(
        "send laptop bob@qq.example via=smtp-isp user=alice@home.example password=secret "
        "subject='Hello there'",
        topology,
    )
    assert problem is None and run is not None and run.kind == "send"
    assert (run.via, run.user, run.subject) == ("smtp-isp", "alice@home.example", "Hello there")
    for bad, says in (
        ("", "Type an experiment"),
        ("ping laptop", "not an experiment"),
        ("dig nowhere qq.example", "no node 'nowhere'"),
        ("connect laptop mx.qq.example http", "connect NODE HOST PORT"),
        ("send laptop bob", "send NODE ADDRESS"),
        ("send laptop bob@qq.example colour=red", "options are key=value"),
        ("send laptop bob@qq.example via=nowhere", "no node 'nowhere'"),
        ("dig laptop 'unclosed", "cannot read the line"),
    ):
        run, problem = parse_experiment(bad, topology)
        assert run is None and problem is not None and says in problem, (bad, problem)


def test_the_zone_selector_starts_on_the_named_zone() -> None:
    servers = {"ns": ("qq.example", "shop.example"), "ns2": ("other.example",)}
    assert _start(servers, "ns", "shop.example") == ("ns", "shop.example")
    assert _start(servers, None, "other.example") == ("ns2", "other.example")
    assert _start(servers, "ns", "missing.example") == ("ns", "qq.example")
    assert _start({}, None, None) == (None, None)


def test_the_smtp_view_shows_an_imap_dialogue_too() -> None:
    greeting = event(
        1.0,
        "bob-pc",
        "← * OK ...",
        ImapExchange(
            peer="203.0.113.25:143",
            command=None,
            response="* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready.",
            status="OK",
            code="CAPABILITY",
            text="ready.",
            lines=[],
            more_lines=0,
        ),
    )
    login = event(
        1.1,
        "bob-pc",
        "→ A1 LOGIN bob ********  ← A1 OK",
        ImapExchange(
            peer="203.0.113.25:143",
            command="A1 LOGIN bob ********",
            response="A1 OK LOGIN completed",
            status="OK",
            code=None,
            text="LOGIN completed",
            lines=["* CAPABILITY IMAP4rev1"],
            more_lines=0,
        ),
    )
    smtp = entries_text(pane_entries("smtp", [greeting, login]))
    assert "bob-pc → 203.0.113.25:143  IMAP" in smtp
    assert "C: A1 LOGIN bob ********" in smtp
    assert "S: * CAPABILITY IMAP4rev1" in smtp and "S: A1 OK LOGIN completed" in smtp


def test_a_dmarc_report_attachment_is_shown_uncompressed() -> None:
    """RFC 9990 reports travel as gzip: the mail view shows the XML."""
    import gzip
    from email.message import EmailMessage

    message = EmailMessage()
    message["Subject"] = "Report Domain: bank.example Submitter: qq.example Report-ID: <1>"
    message.set_content("see the attachment")
    xml = b"<feedback><record><row><source_ip>192.0.2.150</source_ip></row></record></feedback>"
    message.add_attachment(
        gzip.compress(xml), maintype="application", subtype="gzip", filename="r.xml.gz"
    )
    parts = parse_mail(message.as_bytes())
    assert "<source_ip>192.0.2.150</source_ip>" in parts.body
    assert parts.attachments == ("application/gzip",)
