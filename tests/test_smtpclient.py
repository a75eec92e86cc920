"""The traced SMTP client: stages, replies, TLS, the network's verdicts, time-outs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from mailrig import ALICE, BOB, Sink, message, start_sink, topology

import sim
from sim.hosting.runtime import Lab
from sim.services.smtpbase import LabSMTP
from sim.services.smtpclient import Reply, SmtpClient, Transcript
from sim.topology.model import FirewallRule

MX1 = IPv4Address("203.0.113.25")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    topo = topology()
    # The ISP drops its customers' outbound port 25 and rejects 2525.
    isp = replace(
        topo.node("isp"),
        firewall=(
            FirewallRule(
                action="drop", proto="tcp", src=IPv4Network("100.64.0.0/10"), dport=(25, 25)
            ),
            FirewallRule(
                action="reject",
                proto="tcp",
                src=IPv4Network("100.64.0.0/10"),
                dport=(2525, 2525),
                reject_with="icmp-admin-prohibited",
            ),
        ),
    )
    topo = replace(topo, nodes=tuple(isp if n.name == "isp" else n for n in topo.nodes))
    running = sim.start(topo, state_dir=tmp_path / "state")
    try:
        yield running
    finally:
        running.stop()


def send(lab: Lab, node: str, address: IPv4Address, port: int = 25, **kwargs: Any) -> Transcript:
    ctx = lab.backend.context(node)  # type: ignore[attr-defined]
    options: dict[str, Any] = {
        "mail_from": ALICE,
        "rcpts": [BOB],
        "data": message(),
        "helo": f"{node}.example",
    }
    options.update(kwargs)
    return lab.backend.call(  # type: ignore[attr-defined]
        SmtpClient.for_node(ctx).send(address, port, **options)
    )


def serve_raw(lab: Lab, node: str, port: int, script: bytes | None) -> None:
    """A server that sends ``script`` on connect and then ignores the client."""
    ctx = lab.backend.context(node)  # type: ignore[attr-defined]

    class Raw(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            if script is not None:
                transport.write(script)

    lab.backend.call(ctx.net.serve_tcp("raw", port, Raw))  # type: ignore[attr-defined]


def test_reply_parsing() -> None:
    reply = Reply.parse(550, "5.1.1 <bob@qq.example>: Recipient address rejected")
    assert (reply.code, reply.enhanced, reply.text) == (
        550,
        "5.1.1",
        "<bob@qq.example>: Recipient address rejected",
    )
    assert reply.permanent
    assert not reply.transient
    multi = Reply.parse(451, "4.7.1 Greylisted\n4.7.1 try again in 5 minutes")
    assert (multi.enhanced, multi.text) == ("4.7.1", "Greylisted\ntry again in 5 minutes")
    bare = Reply.parse(250, "mx1.example Hello")
    assert (bare.enhanced, bare.text) == (None, "mx1.example Hello")
    assert str(reply) == "550 5.1.1 <bob@qq.example>: Recipient address rejected"
    assert Reply.from_json(reply.to_json()) == reply


def test_a_full_transaction_with_opportunistic_starttls(lab: Lab) -> None:
    sink = start_sink(lab, "mx1")
    trace = lab.backend.hub.open()  # type: ignore[attr-defined]
    transcript = send(lab, "smtp", MX1, trace_id=trace.id, server_name="mx1.qq.example")
    assert transcript.delivered
    assert transcript.failed_stage is None
    assert transcript.tls is not None
    assert transcript.tls["version"].startswith("TLS")
    assert transcript.tls["verified"] is False  # MTA to MTA: opportunistic (RFC 7435)
    stages = [e.stage for e in transcript.exchanges]
    assert stages == ["connect", "helo", "starttls", "helo", "mail", "rcpt", "data", "data"]
    assert sink.received[0].tls
    assert sink.received[0].helo == "smtp.example"
    smtp_events = trace.of_kind("smtp")
    assert [e.data["stage"] for e in smtp_events] == stages
    assert all(e.data["role"] == "client" and e.data["peer"] == "203.0.113.25:25"
               for e in smtp_events)  # fmt: skip
    assert trace.of_kind("tls")[0].data["peer"] == "203.0.113.25:25"


def test_per_recipient_replies(lab: Lab) -> None:
    sink = start_sink(
        lab,
        "mx1",
        behaviour=lambda rcpt, n: (
            "550 5.1.1 <nobody@qq.example>: Recipient address rejected"
            if rcpt.startswith("nobody")
            else None
        ),
    )
    transcript = send(lab, "smtp", MX1, rcpts=[BOB, "nobody@qq.example"])
    assert transcript.delivered
    assert transcript.accepted == [BOB]
    rejected = transcript.rcpt_replies["nobody@qq.example"]
    assert (rejected.code, rejected.enhanced) == (550, "5.1.1")
    assert sink.received[0].rcpts == [BOB]


def test_all_recipients_refused_stops_before_data(lab: Lab) -> None:
    sink = start_sink(lab, "mx1", behaviour=lambda rcpt, n: "450 4.7.1 Greylisted, try later")
    transcript = send(lab, "smtp", MX1)
    assert transcript.failed_stage == "rcpt"
    assert not transcript.delivered
    assert "data" not in [e.stage for e in transcript.exchanges]
    assert transcript.rcpt_replies[BOB].transient
    assert sink.received == []


def test_data_refused_at_the_final_dot(lab: Lab) -> None:
    start_sink(lab, "mx1", data_reply=lambda n: "554 5.7.1 Message rejected: spam")
    transcript = send(lab, "smtp", MX1)
    assert transcript.failed_stage == "data"
    assert transcript.final is not None
    assert (transcript.final.code, transcript.final.enhanced) == (554, "5.7.1")


def test_probe_without_data(lab: Lab) -> None:
    sink = start_sink(lab, "mx1")
    transcript = send(lab, "smtp", MX1, data=None)
    assert transcript.failed_stage is None
    assert transcript.accepted == [BOB]
    assert not transcript.delivered
    assert sink.received == []


def test_dropped_connection_is_blocked_with_the_routers_verdict(lab: Lab) -> None:
    start_sink(lab, "mx1")
    start = time.monotonic()
    transcript = send(lab, "laptop", MX1, connect_timeout=30.0)
    assert transcript.blocked
    assert transcript.failed_stage == "connect"
    assert transcript.verdict is not None
    assert transcript.verdict["router"] == "isp"
    assert transcript.error is not None
    assert "timed out" in transcript.error
    # 30 lab seconds at time_scale 60: about half a real second, not 30.
    assert time.monotonic() - start < 5


def test_rejected_connection_is_unreachable_at_once(lab: Lab) -> None:
    transcript = send(lab, "laptop", MX1, port=2525)
    assert transcript.blocked
    assert transcript.error is not None
    assert "unreachable" in transcript.error


def test_nothing_listening_is_refused(lab: Lab) -> None:
    transcript = send(lab, "smtp", IPv4Address("203.0.113.26"))
    assert transcript.blocked
    assert transcript.error is not None
    assert "refused" in transcript.error


def test_a_554_greeting_is_a_reply_at_connect(lab: Lab) -> None:
    serve_raw(lab, "mx1", 25, b"554 5.7.1 No SMTP service here\r\n")
    transcript = send(lab, "smtp", MX1)
    assert transcript.failed_stage == "connect"
    assert not transcript.blocked
    reply = transcript.reply_at("connect")
    assert reply is not None
    assert (reply.code, reply.enhanced) == (554, "5.7.1")


def test_a_silent_server_times_out_instead_of_hanging(lab: Lab) -> None:
    serve_raw(lab, "mx1", 25, None)
    start = time.monotonic()
    transcript = send(lab, "smtp", MX1, timeout=1.0)
    assert transcript.failed_stage == "connect"
    assert transcript.connected
    assert not transcript.blocked  # the network let it through; the server is mute
    assert transcript.error is not None
    assert "greeting" in transcript.error
    assert time.monotonic() - start < 10


def test_starttls_required_but_not_offered(lab: Lab) -> None:
    ctx = lab.backend.context("mx1")  # type: ignore[attr-defined]
    plain = Sink(node="mx1", lab=lab)
    lab.backend.call(  # type: ignore[attr-defined]
        ctx.net.serve_tcp("plain", 25, lambda: LabSMTP(plain, net=ctx.net, hostname="mx1"))
    )
    transcript = send(lab, "smtp", MX1, tls="required")
    assert transcript.failed_stage == "starttls"
    assert transcript.error is not None
    assert "STARTTLS" in transcript.error
    assert plain.received == []
    # Opportunistic TLS goes on in the clear.
    assert send(lab, "smtp", MX1, tls="opportunistic").delivered


def test_on_accepted_runs_after_the_250_and_before_quit(lab: Lab) -> None:
    start_sink(lab, "mx1")
    seen: list[list[str]] = []

    async def accepted(transcript: Transcript) -> None:
        seen.append([e.command.split()[0] for e in transcript.exchanges])

    transcript = send(lab, "smtp", MX1, on_accepted=accepted)
    assert transcript.delivered
    assert len(seen) == 1
    assert seen[0][-1] == "(message,"  # the final dot was the last exchange; no QUIT yet


def test_transcript_json_has_stages_and_replies(lab: Lab) -> None:
    start_sink(lab, "mx1")
    data = send(lab, "smtp", MX1).to_json()
    assert data["delivered"] is True
    assert data["peer"] == "203.0.113.25:25"
    assert data["final"]["code"] == 250
    assert data["exchanges"][0]["stage"] == "connect"


def test_implicit_tls_submission_with_verified_certificate(lab: Lab) -> None:
    start_sink(lab, "mx1")
    transcript = send(
        lab,
        "laptop",
        IPv4Address("192.0.2.25"),
        port=465,
        tls="implicit",
        verify=True,
        server_name="smtp.relay.example",
        auth=(ALICE, "secret"),
    )
    assert transcript.delivered, transcript.to_json()
    assert transcript.authenticated
    assert transcript.tls is not None
    assert transcript.tls["verified"] is True
    assert transcript.final is not None
    assert transcript.final.text.startswith("Ok: queued as ")
    # No STARTTLS on 465: the whole session was already encrypted.
    assert "starttls" not in [e.stage for e in transcript.exchanges]


def test_implicit_tls_to_a_plain_server_fails_at_the_handshake(lab: Lab) -> None:
    start_sink(lab, "mx1")
    transcript = send(lab, "smtp", MX1, tls="implicit", timeout=1.0)
    assert transcript.failed_stage == "connect"
    assert transcript.connected
    assert not transcript.blocked
    assert transcript.error is not None


def test_a_wrong_name_fails_verification(lab: Lab) -> None:
    transcript = send(
        lab,
        "laptop",
        IPv4Address("192.0.2.25"),
        port=587,
        tls="required",
        verify=True,
        server_name="impostor.example",
        auth=(ALICE, "secret"),
    )
    assert transcript.failed_stage == "starttls"
    assert not transcript.authenticated
    assert transcript.error is not None
    assert "TLS handshake failed" in transcript.error
