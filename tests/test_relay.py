"""The relay: MX routing with fallback, retries in lab time, DSNs, smarthost
mode, DKIM signing and keys, control commands; with stand-in sinks and with
the lab's real MX service."""

from __future__ import annotations

import email
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from mailrig import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    mailbox,
    message,
    queue,
    relay_of,
    smarthost_topology,
    start_sink,
    topology,
    wait_until,
)

import sim
from sim.auth.dkim import verify_dkim
from sim.errors import ServiceError
from sim.hosting.runtime import Lab
from sim.services.dkimkeys import ensure_keys, publish
from sim.services.dsn import parse_dsn
from sim.services.smtpclient import SmtpClient
from sim.topology.model import RelayService, Topology
from sim.topology.zones import parse_zone
from sim.trace import Trace

HOUR = 3600.0


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[Callable[..., Lab]]:
    labs: list[Lab] = []

    def make(topo: Topology | None = None, **kwargs: Any) -> Lab:
        state = tmp_path / f"state{len(labs)}"
        topo = topo or topology(**kwargs)
        topo = publish(topo, ensure_keys(topo, state))
        lab = sim.start(topo, state_dir=state)
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.stop()


def enqueue(
    lab: Lab, rcpts: tuple[str, ...] = (BOB,), *, mail_from: str = ALICE, **kwargs: Any
) -> tuple[str, Trace]:
    trace = lab.backend.hub.open()  # type: ignore[attr-defined]
    data = kwargs.pop("data", None) or message()
    queue_id = lab.backend.call(  # type: ignore[attr-defined]
        relay_of(lab).enqueue(mail_from, list(rcpts), data, trace_id=trace.id, **kwargs)
    )
    return queue_id, trace


def submit(lab: Lab, rcpts: tuple[str, ...] = (BOB,), subject: str = "Hello") -> Trace:
    """What a mail client on the laptop does: 587, STARTTLS (verified), AUTH."""
    ctx = lab.backend.context("laptop")  # type: ignore[attr-defined]
    trace = lab.backend.hub.open()  # type: ignore[attr-defined]
    transcript = lab.backend.call(  # type: ignore[attr-defined]
        SmtpClient.for_node(ctx).send(
            ctx.network.address_of("smtp"),
            587,
            mail_from=ALICE,
            rcpts=list(rcpts),
            data=message(subject, to=rcpts[0]),
            helo="laptop.home.example",
            tls="required",
            verify=True,
            server_name="smtp.relay.example",
            auth=(ALICE, ALICE_PASSWORD),
            trace_id=trace.id,
        )
    )
    assert transcript.delivered, transcript.to_json()
    return trace


def queue_events(trace: Trace, event: str | None = None) -> list[Any]:
    return [
        e for e in trace.events if e.kind == "queue" and (event is None or e.data["event"] == event)
    ]


def wait_event(trace: Trace, event: str, count: int = 1, timeout: float = 10.0) -> list[Any]:
    wait_until(lambda: len(queue_events(trace, event)) >= count, timeout)
    return queue_events(trace, event)


# --- routing -------------------------------------------------------------------------


def test_delivers_to_the_best_mx_and_empties_the_spool(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab()
    mx1, mx2 = start_sink(lab, "mx1"), start_sink(lab, "mx2")
    queue_id, trace = enqueue(lab)
    (delivered,) = wait_event(trace, "delivered")
    assert delivered.data["queue_id"] == queue_id
    assert delivered.data["mx"] == "mx1.qq.example"
    assert delivered.data["reply"]["code"] == 250
    assert [e.data["event"] for e in queue_events(trace)] == ["queued", "attempt", "delivered"]
    assert len(mx1.received) == 1
    assert mx2.received == []
    assert mx1.received[0].helo == "smtp.relay.example"
    assert mx1.received[0].tls  # opportunistic STARTTLS
    wait_until(lambda: queue(lab) == [])
    assert not list((lab.state_dir / "smtp" / "queue").glob("*.json"))


def test_falls_back_to_the_next_mx_when_the_first_is_down(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab()
    mx2 = start_sink(lab, "mx2")  # mx1 (preference 10) listens on nothing
    _, trace = enqueue(lab)
    wait_event(trace, "delivered")
    attempts = [(e.data["mx"], e.data["address"]) for e in queue_events(trace, "attempt")]
    assert attempts == [("mx1.qq.example", "203.0.113.25"), ("mx2.qq.example", "203.0.113.26")]
    assert len(mx2.received) == 1


def test_no_mx_means_the_domains_own_address(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab()
    sink = start_sink(lab, "mx1")  # plain.example A 203.0.113.25
    _, trace = enqueue(lab, ("carol@plain.example",))
    (attempt,) = wait_event(trace, "attempt")
    assert attempt.data["mx"] == "plain.example"
    wait_event(trace, "delivered")
    assert sink.received[0].rcpts == ["carol@plain.example"]


def test_null_mx_bounces_at_once_with_556(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab()
    home = start_sink(lab, "mxhome")
    queue_id, trace = enqueue(lab, ("dave@nomail.example",))
    bounced = wait_event(trace, "bounced")[0]
    assert bounced.data["reply"]["code"] == 556
    assert bounced.data["reply"]["enhanced"] == "5.1.10"
    # No connection was even tried for the message (only for the DSN after it).
    assert [e for e in queue_events(trace, "attempt") if e.data["queue_id"] == queue_id] == []
    wait_until(lambda: len(home.received) == 1)
    report = parse_dsn(home.received[0].data)
    assert report is not None
    assert report.status("dave@nomail.example") == "5.1.10"


def test_unknown_domain_bounces_with_5_1_2(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab()
    start_sink(lab, "mxhome")
    _, trace = enqueue(lab, ("x@nowhere.example",))
    bounced = wait_event(trace, "bounced")[0]
    assert bounced.data["reply"]["enhanced"] == "5.1.2"


# --- failures, retries and DSNs ------------------------------------------------------


def test_a_5xx_at_the_mx_bounces_to_the_senders_mailbox(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab()
    start_sink(
        lab,
        "mx1",
        behaviour=lambda rcpt, n: (
            "550 5.1.1 <bob@qq.example>: Recipient address rejected: "
            "User unknown in virtual mailbox table"
        ),
    )
    home = start_sink(lab, "mxhome")
    trace = submit(lab, subject="Lost letter")
    bounced = wait_event(trace, "bounced")
    assert bounced[0].data["rcpt"] == BOB
    assert bounced[0].data["stage"] == "rcpt"
    wait_until(lambda: len(home.received) == 1)
    dsn = home.received[0]
    # RFC 5321 §4.5.5: the DSN goes out with the null reverse-path (aiosmtpd
    # reports it as "<>").
    assert dsn.mail_from == "<>"
    assert dsn.rcpts == [ALICE]
    report = parse_dsn(dsn.data)
    assert report is not None
    assert report.action == "failed"
    (rcpt,) = report.recipients
    assert rcpt["final-recipient"] == f"rfc822; {BOB}"
    assert rcpt["status"] == "5.1.1"
    assert rcpt["remote-mta"] == "dns; mx1.qq.example"
    assert rcpt["diagnostic-code"].startswith("smtp; 550 5.1.1 <bob@qq.example>")
    assert "Subject: Lost letter" in report.original_headers
    assert "in reply to RCPT TO command" in report.explanation
    # The DSN shares the message's trace: the whole story in one place.
    assert any(e.data.get("entry_kind") == "dsn" for e in queue_events(trace, "queued"))
    wait_until(lambda: queue(lab) == [])


def test_partial_failure_reports_only_the_failed_recipient(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab()
    mx1 = start_sink(
        lab,
        "mx1",
        behaviour=lambda rcpt, n: "550 5.1.1 no such user" if rcpt.startswith("nobody") else None,
    )
    home = start_sink(lab, "mxhome")
    _, trace = enqueue(lab, (BOB, "nobody@qq.example"))
    wait_event(trace, "delivered")
    wait_until(lambda: len(home.received) == 1)
    assert mx1.received[0].rcpts == [BOB]
    report = parse_dsn(home.received[0].data)
    assert report is not None
    assert [r["final-recipient"] for r in report.recipients] == ["rfc822; nobody@qq.example"]


def test_greylisting_defers_then_delivers_after_advance(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab()
    sink = start_sink(
        lab,
        "mx1",
        behaviour=lambda rcpt, n: (
            "450 4.7.1 <bob@qq.example>: Recipient address rejected: "
            "Greylisted, see https://postgrey.schweikert.ch/help/qq.example.html"
            if n == 0
            else None
        ),
    )
    _, trace = enqueue(lab)
    (deferred,) = wait_event(trace, "deferred")
    assert deferred.data["reply"]["code"] == 450
    assert deferred.data["reply"]["enhanced"] == "4.7.1"
    assert deferred.data["next_attempt"] >= deferred.t + 299
    (entry,) = queue(lab)
    assert entry["rcpts"][0]["state"] == "deferred"
    assert sink.received == []
    lab.advance("5m")
    wait_event(trace, "delivered")
    assert len(sink.received) == 1
    assert [e.data["attempt"] for e in queue_events(trace, "attempt")] == [1, 2]


def advance_until(lab: Lab, trace: Trace, event: str, step: float, limit: int = 10) -> None:
    """Advance lab time one retry interval at a time until ``event`` appears."""
    for _ in range(limit):
        if queue_events(trace, event):
            return
        attempts = len(queue_events(trace, "attempt"))
        lab.advance(step)
        wait_until(lambda a=attempts: len(queue_events(trace, "attempt")) > a)  # type: ignore[misc]
        wait_until(
            lambda: (
                len(queue_events(trace, "deferred")) + len(queue_events(trace, "bounced"))
                >= len({e.data["attempt"] for e in queue_events(trace, "attempt")})
            )
        )
    assert queue_events(trace, event), f"no {event} event after {limit} steps"


def test_gives_up_after_give_up_with_a_final_dsn(make_lab: Callable[..., Lab]) -> None:
    relay = RelayService(retry=(HOUR,), give_up=3 * HOUR, warn_after=None)
    lab = make_lab(relay=relay)
    home = start_sink(lab, "mxhome")  # both MX of qq.example are down
    _, trace = enqueue(lab)
    wait_event(trace, "deferred")
    advance_until(lab, trace, "bounced", HOUR)
    bounced = queue_events(trace, "bounced")[0]
    assert bounced.data["reason"] == "give_up"
    assert len(queue_events(trace, "deferred")) == 3  # after attempts at 0h, 1h, 2h
    wait_until(lambda: len(home.received) == 1)
    report = parse_dsn(home.received[0].data)
    assert report is not None
    assert report.action == "failed"
    (rcpt,) = report.recipients
    # A temporary status with a final action: retried until the time ran out.
    assert rcpt["status"] == "4.4.1"
    assert "connect to mx2.qq.example[203.0.113.26]:25" in rcpt["diagnostic-code"]
    wait_until(lambda: queue(lab) == [])


def test_one_delay_warning_after_warn_after(make_lab: Callable[..., Lab]) -> None:
    relay = RelayService(retry=(HOUR,), give_up=24 * HOUR, warn_after=2 * HOUR)
    lab = make_lab(relay=relay)
    home = start_sink(lab, "mxhome")
    _, trace = enqueue(lab)
    wait_event(trace, "deferred")
    advance_until(lab, trace, "warning", HOUR)
    wait_until(lambda: len(home.received) == 1)
    report = parse_dsn(home.received[0].data)
    assert report is not None
    assert report.action == "delayed"
    assert "will-retry-until" in report.recipients[0]
    assert "THIS IS A WARNING ONLY" in report.explanation
    # Two more attempts: no second warning, and the message is still queued.
    for _ in range(2):
        attempts = len(queue_events(trace, "attempt"))
        lab.advance(HOUR)
        wait_until(lambda a=attempts: len(queue_events(trace, "attempt")) > a)  # type: ignore[misc]
    wait_until(lambda: len(queue_events(trace, "deferred")) == 5)
    assert len(queue_events(trace, "warning")) == 1
    assert len(home.received) == 1
    (entry,) = [e for e in queue(lab) if e["kind"] == "message"]
    assert entry["warned"] is True


def test_a_bounce_is_never_bounced(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab()
    start_sink(lab, "mx1", behaviour=lambda rcpt, n: "550 5.1.1 unknown")
    _, trace = enqueue(lab, mail_from="", kind="dsn")
    dropped = wait_event(trace, "bounced", 2)
    assert any(e.data.get("dropped") for e in dropped)
    wait_until(lambda: queue(lab) == [])
    assert [e.data["entry_kind"] for e in queue_events(trace, "queued")] == ["dsn"]


# --- control -------------------------------------------------------------------------


def test_hold_flush_release(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab()
    queue_id, trace = enqueue(lab)
    wait_event(trace, "deferred")
    (entry,) = queue(lab)
    assert entry["id"] == queue_id
    assert entry["rcpts"][0]["reply"]["enhanced"] == "4.4.1"
    assert lab.control("smtp", "relay", "hold") == {"held": [queue_id]}
    sink = start_sink(lab, "mx1")
    assert lab.control("smtp", "relay", "flush") == {"flushed": []}
    assert lab.control("smtp", "relay", "release", queue_id=queue_id) == {"released": [queue_id]}
    assert lab.control("smtp", "relay", "flush") == {"flushed": [queue_id]}
    wait_event(trace, "delivered")
    assert len(sink.received) == 1
    assert len(queue_events(trace, "attempt")) == 3  # mx1, mx2, then mx1 after the flush
    with pytest.raises(ServiceError):
        lab.control("smtp", "relay", "hold", queue_id="NOSUCHID")
    with pytest.raises(ServiceError):
        lab.control("smtp", "relay", "explode")


# --- smarthost -----------------------------------------------------------------------


def test_smarthost_mode_submits_with_starttls_and_auth(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(smarthost_topology(user=ALICE, password="relay-secret"))
    mx1 = start_sink(lab, "mx1")
    _, trace = enqueue(lab)
    wait_until(lambda: len(mx1.received) == 1)
    (attempt,) = [e for e in queue_events(trace, "attempt") if e.node == "smtp"]
    assert (attempt.data["mx"], attempt.data["port"]) == ("smarthost.relay.example", 587)
    commands = [e.data["command"] for e in trace.of_kind("smtp") if e.node == "smtp"]
    assert "STARTTLS" in commands
    assert "AUTH PLAIN ********" in commands
    # The relay never looked up qq.example's MX itself: the smarthost did.
    assert not [
        e for e in trace.of_kind("dns") if e.data.get("client") == "192.0.2.25"
        and e.data.get("type") == "MX"
    ]  # fmt: skip
    got = email.message_from_bytes(mx1.received[0].data)
    received = got["Received"]
    assert "by smarthost.relay.example" in received
    assert "with ESMTPSA" in received
    assert mx1.received[0].peer == "192.0.2.80"


def test_smarthost_refusing_auth_keeps_the_message(make_lab: Callable[..., Lab]) -> None:
    topo = smarthost_topology(user=ALICE, password="relay-secret")
    smtp = topo.node("smtp")
    relay = smtp.services.relay
    assert relay is not None
    assert relay.smarthost is not None
    wrong = replace(relay, smarthost=replace(relay.smarthost, password="wrong"))
    smtp = replace(smtp, services=replace(smtp.services, relay=wrong))
    topo = replace(topo, nodes=tuple(smtp if n.name == "smtp" else n for n in topo.nodes))
    lab = make_lab(topo)
    _, trace = enqueue(lab)
    (deferred,) = wait_event(trace, "deferred")
    assert deferred.data["reply"]["code"] == 454
    assert "535" in deferred.data["reply"]["text"]
    assert queue_events(trace, "bounced") == []


# --- DKIM ----------------------------------------------------------------------------


def dkim_relay(publish_key: bool = True) -> RelayService:
    return RelayService(
        retry=(300.0,),
        give_up=86400.0,
        warn_after=None,
        dkim=(("home.example", "s2026"),),
        dkim_publish=publish_key,
    )


def lab_lookup(lab: Lab) -> Any:
    ctx = lab.backend.context("mx1")  # type: ignore[attr-defined]
    return lambda name, rtype: ctx.resolver.query_sync(name, rtype)


def test_signed_mail_verifies_against_the_lab_dns(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(relay=dkim_relay())
    sink = start_sink(lab, "mx1")
    _, trace = enqueue(lab)
    wait_until(lambda: len(sink.received) == 1)
    (queued,) = queue_events(trace, "queued")
    assert queued.data["dkim"] == ["home.example s=s2026"]
    data = sink.received[0].data
    assert data.startswith(b"DKIM-Signature:")
    (result,) = verify_dkim(data, lab_lookup(lab))
    assert result.result == "pass", result.explanation
    # Any change to the body after signing breaks it (RFC 6376 §3.7).
    (tampered,) = verify_dkim(data + b"-- \r\nfooter added in transit\r\n", lab_lookup(lab))
    assert tampered.result == "fail"


def test_unpublished_key_does_not_verify(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(relay=dkim_relay(publish_key=False))
    sink = start_sink(lab, "mx1")
    enqueue(lab)
    wait_until(lambda: len(sink.received) == 1)
    data = sink.received[0].data
    assert b"s=s2026" in data
    (result,) = verify_dkim(data, lab_lookup(lab))
    assert result.result in ("permerror", "fail")
    answer = lab_lookup(lab)("s2026._domainkey.home.example", "TXT")
    assert answer.rcode == "NXDOMAIN"


def test_keys_are_made_once_per_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the per-user key cache (tests/test_dkim_cache.py), each state
    # directory gets its own key.
    monkeypatch.setenv("MAILLAB_DKIM_CACHE", "0")
    topo = topology(dkim_relay())
    first = ensure_keys(topo, tmp_path)
    again = ensure_keys(topo, tmp_path)
    assert first == again
    other = ensure_keys(topo, tmp_path / "other")
    assert other[("home.example", "s2026")].txt != first[("home.example", "s2026")].txt
    pair = first[("home.example", "s2026")]
    assert pair.record_name == "s2026._domainkey.home.example."
    assert pair.txt.startswith("v=DKIM1; k=rsa; p=")
    assert (tmp_path / "dkim" / "s2026._domainkey.home.example.pem").exists()


def test_publish_adds_the_selector_record_to_the_right_zone(tmp_path: Path) -> None:
    topo = topology(dkim_relay())
    keys = ensure_keys(topo, tmp_path)
    published = publish(topo, keys)
    text = published.zone_text("home.example")
    records = [rr for rr in parse_zone("home.example", text) if str(rr.rname).startswith("s2026.")]
    (record,) = records
    # A 2048-bit key needs more than one 255-octet character-string.
    strings = [bytes(s).decode() for s in record.rdata.data]
    assert len(strings) > 1
    assert "".join(strings) == keys[("home.example", "s2026")].txt
    assert published.zone_text("qq.example") == topo.zone_text("qq.example")
    # Publishing twice changes nothing; an instructor's own record is kept.
    assert publish(published, keys) == published
    own = replace(
        topo,
        zones=tuple(
            (z, t + 's2026._domainkey TXT "v=DKIM1; p=broken"\n' if z == "home.example" else t)
            for z, t in topo.zones
        ),
    )
    assert publish(own, keys) == own
    assert publish(topology(dkim_relay(publish_key=False)), keys).zones == topo.zones


# --- with the lab's real MX ----------------------------------------------------------


def test_received_chain_through_the_real_mx(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(real_mx=True)
    trace = submit(lab, subject="Chain")
    wait_event(trace, "delivered")
    wait_until(lambda: len(mailbox(lab, "mx1", "bob")) == 1)
    got = email.message_from_bytes(mailbox(lab, "mx1", "bob")[0])
    chain = got.get_all("Received")
    assert len(chain) == 2
    newest, oldest = chain
    # Read bottom-up: the laptop submitted to the MSA, the relay handed it to the MX.
    assert "by smtp.relay.example" in oldest
    assert "with ESMTPSA" in oldest
    assert "[100.64.10.20]" in oldest
    assert "by mx1.qq.example" in newest
    assert "[192.0.2.25]" in newest
    assert got["Subject"] == "Chain"
    deliveries = [e for e in trace.of_kind("delivery") if e.node == "mx1"]
    assert len(deliveries) == 1


def test_unknown_user_at_the_real_mx_bounces_into_alices_inbox(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(real_mx=True)
    trace = submit(lab, ("nobody@qq.example",), subject="Typo")
    bounced = wait_event(trace, "bounced")[0]
    assert bounced.data["reply"]["code"] == 550
    wait_until(lambda: len(mailbox(lab, "mxhome", "alice")) == 1)
    data = mailbox(lab, "mxhome", "alice")[0]
    got = email.message_from_bytes(data)
    assert got["Return-Path"] == "<>"
    report = parse_dsn(data)
    assert report is not None
    assert report.status("nobody@qq.example") == "5.1.1"
    assert "Subject: Typo" in report.original_headers


def test_greylisting_real_mx_defers_then_delivers(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(real_mx=True, greylist=300.0)
    _, trace = enqueue(lab)
    (deferred,) = wait_event(trace, "deferred")
    assert deferred.data["reply"]["code"] // 100 == 4
    assert mailbox(lab, "mx1", "bob") == []
    lab.advance("6m")
    wait_event(trace, "delivered")
    assert len(mailbox(lab, "mx1", "bob")) == 1
