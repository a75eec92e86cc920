"""The receiving MTA (sim.services.mx) in a running lab, over real sockets.

One lab for the module (it starts in well under a second)::

    ns      198.51.100.53   DNS for every zone below
    bl      198.51.100.60   DNSBL zen.dnsbl.example (lists 192.0.2.66)
    mx      203.0.113.25    MX of qq.example: bob, carol
    good    192.0.2.10      PTR mail.good.example, forward-confirmed
    noptr   192.0.2.20      no PTR
    badfc   192.0.2.30      PTR fake.good.example, which points elsewhere
    listed  192.0.2.66      PTR and FCrDNS fine, but on the blocklist
    spoofer 198.51.100.99   PTR spoofer.evil.example, SPF for evil.example

Senders speak SMTP with the lab's client (aiosmtplib over the node's
``ctx.net.connect``), so the MX sees each one's lab address. Tests assert the
structured outcome: reply code, enhanced code, stage, check events, stored
headers.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import gc
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, replace
from email.message import EmailMessage
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

import aiosmtplib
import pytest

import sim
from sim.auth.dkim import generate_key, key_txt_rdata, sign
from sim.auth.headers import parse_authentication_results
from sim.errors import ServiceError
from sim.hosting.runtime import Lab
from sim.services.mx import MxServer, _header_section, _read_headers
from sim.services.smtpclient import SmtpClient, TlsMode, Transcript
from sim.topology.model import (
    CheckPolicy,
    DnsblListing,
    DnsblService,
    DnsService,
    MxService,
    Node,
    Services,
    Settings,
    Topology,
)
from sim.trace import Trace, TraceEvent

MX = IPv4Address("203.0.113.25")
PRIVATE_KEY, PUBLIC_TXT = generate_key(1024)

ZONES = {
    "qq.example": (
        '@ MX 10 mx\nmx A 203.0.113.25\n@ TXT "v=spf1 mx -all"\n_dmarc TXT "v=DMARC1; p=reject"\n'
    ),
    "good.example": (
        "mail A 192.0.2.10\nfake A 192.0.2.99\nlisted A 192.0.2.66\n"
        '@ TXT "v=spf1 ip4:192.0.2.0/25 -all"\n'
        '_dmarc TXT "v=DMARC1; p=reject"\n'
        f"s1._domainkey TXT {key_txt_rdata(PUBLIC_TXT)}\n"
    ),
    "soft.example": '@ TXT "v=spf1 ip4:192.0.2.10 ~all"\n',
    "evil.example": 'spoofer A 198.51.100.99\n@ TXT "v=spf1 ip4:198.51.100.99 -all"\n',
    "bank.example": '_dmarc TXT "v=DMARC1; p=reject"\n',
    "shop.example": '_dmarc TXT "v=DMARC1; p=quarantine"\n',
    "news.example": '_dmarc TXT "v=DMARC1; p=none"\n',
    "trial.example": '_dmarc TXT "v=DMARC1; p=reject; t=y"\n',
    "2.0.192.in-addr.arpa": (
        "10 PTR mail.good.example.\n30 PTR fake.good.example.\n66 PTR listed.good.example.\n"
    ),
    "100.51.198.in-addr.arpa": "99 PTR spoofer.evil.example.\n",
    "113.0.203.in-addr.arpa": "25 PTR mx.qq.example.\n",
}

CHECKS = (
    CheckPolicy("ptr", "reject"),
    CheckPolicy("fcrdns", "defer"),
    CheckPolicy("helo", "reject"),
    CheckPolicy("dnsbl", "reject"),
    CheckPolicy("spf", "reject"),
    CheckPolicy("dkim", "header"),
    CheckPolicy("dmarc", "policy"),
    CheckPolicy("tls", "header"),
)

MX_SERVICE = MxService(
    domains=("qq.example",),
    mailboxes=("bob", "carol"),
    checks=CHECKS,
    dnsbl=("zen.dnsbl.example",),
    max_size=64 * 1024,
)


def build_topology(mx: MxService = MX_SERVICE) -> Topology:
    def host(name: str, ip: str, services: Services | None = None) -> Node:
        return Node(
            name=name,
            kind="host",
            ip=IPv4Interface(ip),
            gateway="internet",
            services=services or Services(),
        )

    listing = DnsblListing(
        net=IPv4Network("192.0.2.66/32"),
        code=IPv4Address("127.0.0.2"),
        reason="spam source $",
    )
    return Topology(
        name="mx-test",
        settings=Settings(resolver=IPv4Address("198.51.100.53"), time_scale=1.0),
        nodes=(
            Node(name="internet", kind="router"),
            host("ns", "198.51.100.53/24", Services(dns=DnsService(zones=tuple(ZONES)))),
            host(
                "bl",
                "198.51.100.60/24",
                Services(dnsbl=DnsblService(zone="zen.dnsbl.example", listed=(listing,))),
            ),
            host("mx", "203.0.113.25/24", Services(mx=mx)),
            host("good", "192.0.2.10/24"),
            host("noptr", "192.0.2.20/24"),
            host("badfc", "192.0.2.30/24"),
            host("listed", "192.0.2.66/24"),
            host("spoofer", "198.51.100.99/24"),
        ),
        zones=tuple(ZONES.items()),
    )


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with sim.start(build_topology()) as running:
        yield running


@pytest.fixture(autouse=True)
def restore_mx(lab: Lab) -> Iterator[MxServer]:
    """Each test starts from the topology's MX configuration."""
    service = lab.backend.service("mx", "mx")  # type: ignore[attr-defined]
    assert isinstance(service, MxServer)
    yield service
    service.checks = list(CHECKS)
    service.greylist = None
    if service.down:
        lab.control("mx", "mx", "up")


# --- sending -------------------------------------------------------------------------


@dataclass
class Sent:
    transcript: Transcript
    trace: Trace

    @property
    def checks(self) -> dict[str, dict[str, Any]]:
        """The check events by check name (the last one of each)."""
        return {e.data["check"]: e.data for e in self.trace.of_kind("check")}

    @property
    def deliveries(self) -> list[TraceEvent]:
        return self.trace.of_kind("delivery")

    def rcpt(self, address: str) -> tuple[int, str | None, str]:
        reply = self.transcript.rcpt_replies[address]
        return reply.code, reply.enhanced, reply.text


def message(
    from_header: str = "Alice <alice@good.example>",
    subject: str = "hello",
    body: str = "Hello Bob.\r\n",
    *,
    signed_by: str | None = None,
) -> bytes:
    data = (
        f"From: {from_header}\r\nTo: bob@qq.example\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@test>\r\n\r\n{body}"
    ).encode()
    if signed_by is not None:
        data = sign(data, signed_by, "s1", PRIVATE_KEY)
    return data


def send(
    lab: Lab,
    node: str,
    *,
    mail_from: str = "alice@good.example",
    rcpts: tuple[str, ...] = ("bob@qq.example",),
    helo: str = "mail.good.example",
    data: bytes | None = None,
    tls: TlsMode = "opportunistic",
) -> Sent:
    backend: Any = lab.backend
    ctx = backend.context(node)
    trace = backend.hub.open()
    transcript = backend.call(
        SmtpClient.for_node(ctx).send(
            MX,
            25,
            mail_from=mail_from,
            rcpts=list(rcpts),
            data=message() if data is None else data,
            helo=helo,
            tls=tls,
            trace_id=trace.id,
        )
    )
    return Sent(transcript, trace)


def stored(lab: Lab, user: str = "bob", folder: str = "INBOX") -> list[EmailMessage]:
    out = []
    for item in lab.mailbox(f"{user}@qq.example", folder):
        parsed = email.message_from_bytes(item.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        out.append(parsed)
    return out


def by_subject(lab: Lab, subject: str, user: str = "bob", folder: str = "INBOX") -> EmailMessage:
    found = [m for m in stored(lab, user, folder) if m["Subject"] == subject]
    assert len(found) == 1, f"{len(found)} messages with subject {subject!r} in {folder}"
    return found[0]


def auth_results(msg: EmailMessage) -> dict[str, str]:
    parsed = parse_authentication_results(str(msg["Authentication-Results"]))
    return {r.method: r.result for r in parsed.results}


# --- a good sender --------------------------------------------------------------------


def test_a_good_sender_is_delivered_with_headers(lab: Lab) -> None:
    sent = send(lab, "good", data=message(subject="good one"))
    t = sent.transcript
    assert t.delivered
    assert sent.rcpt("bob@qq.example") == (250, "2.1.5", "Ok")
    assert t.final is not None
    assert (t.final.code, t.final.enhanced) == (250, "2.0.0")
    queue_id = t.final.text.removeprefix("Ok: queued as ")

    checks = sent.checks
    for name in ("ptr", "fcrdns", "helo", "dnsbl", "spf", "dkim", "dmarc", "tls"):
        assert checks[name]["action"] == "none", name
        assert checks[name]["explanation"]
    assert checks["ptr"]["result"] == "pass"
    assert checks["spf"]["inputs"]["mail_from"] == "alice@good.example"
    assert checks["dnsbl"]["inputs"]["zone"] == "zen.dnsbl.example"
    assert checks["tls"]["result"] == "pass"

    [delivery] = sent.deliveries
    assert delivery.data["mailbox"] == "bob@qq.example"
    assert delivery.data["folder"] == "inbox"
    assert delivery.data["mx_queue_id"] == queue_id
    assert delivery.data["message_id"] == "<good-one@test>"

    msg = by_subject(lab, "good one")
    assert msg["Return-Path"] == "<alice@good.example>"
    assert msg["Delivered-To"] == "bob@qq.example"
    received = " ".join(str(msg["Received"]).split())
    assert received.startswith("from mail.good.example (mail.good.example [192.0.2.10])")
    assert f"by mx.qq.example (maillab) with ESMTPS id {queue_id} for <bob@qq.example>;" in (
        received
    )
    results = auth_results(msg)
    assert results == {"iprev": "pass", "spf": "pass", "dkim": "none", "dmarc": "pass"}
    assert "folder=INBOX" in str(msg["X-Maillab-Checks"])
    # The headers were prepended: the sender's own come after them, intact.
    assert list(msg.keys())[:5] == [
        "Return-Path",
        "Delivered-To",
        "Received",
        "Authentication-Results",
        "X-Maillab-Checks",
    ]
    assert msg["Subject"] == "good one"


def test_greeting_and_ehlo(lab: Lab) -> None:
    async def dialogue() -> tuple[str, dict[str, str], dict[str, str], str]:
        ctx = lab.backend.context("good")  # type: ignore[attr-defined]
        sock = await ctx.net.connect(MX, 25)
        smtp = aiosmtplib.SMTP(hostname="mx.qq.example", sock=sock, start_tls=False)
        greeting = await smtp.connect()
        await smtp.ehlo(hostname="mail.good.example")
        before = dict(smtp.esmtp_extensions)
        # The certificate comes from the lab CA and names the MX: it verifies.
        await smtp.starttls(tls_context=ctx.ca.client_context(verify=True))
        await smtp.ehlo(hostname="mail.good.example")
        after = dict(smtp.esmtp_extensions)
        noop = await smtp.noop()
        await smtp.quit()
        return greeting.message, before, after, f"{noop.code} {noop.message}"

    greeting, before, after, noop = lab.backend.call(dialogue())  # type: ignore[attr-defined]
    assert greeting.startswith("mx.qq.example ESMTP")
    assert before["size"] == str(64 * 1024)
    for ext in ("8bitmime", "pipelining", "starttls", "enhancedstatuscodes"):
        assert ext in before
    assert "starttls" not in after  # RFC 3207 §4.2: not offered again
    assert "auth" not in after  # an MX does not take AUTH
    assert noop == "250 2.0.0 OK"


# --- the client's address and name ----------------------------------------------------


def test_no_ptr_is_rejected_at_rcpt(lab: Lab) -> None:
    before = len(stored(lab))
    sent = send(lab, "noptr", helo="[192.0.2.20]")
    assert sent.transcript.failed_stage == "rcpt"
    code, enhanced, text = sent.rcpt("bob@qq.example")
    assert (code, enhanced) == (550, "5.7.25")
    assert text.startswith("The IP address sending this message does not have a PTR record")
    ptr = sent.checks["ptr"]
    assert (ptr["result"], ptr["action"], ptr["stage"]) == ("fail", "reject", "rcpt")
    assert ptr["inputs"]["ip"] == "192.0.2.20"
    assert sent.deliveries == []
    assert len(stored(lab)) == before


def test_fcrdns_failure_is_deferred_or_rejected(lab: Lab) -> None:
    sent = send(lab, "badfc", helo="[192.0.2.30]")
    assert sent.rcpt("bob@qq.example") == (
        450,
        "4.7.25",
        "Client host rejected: cannot find your hostname, [192.0.2.30]",
    )
    assert sent.checks["fcrdns"]["result"] == "fail"
    assert sent.checks["ptr"]["result"] == "pass"
    assert sent.checks["helo"]["result"] == "pass"  # its own address literal
    lab.control("mx", "mx", "set_check", check="fcrdns", action="reject")
    again = send(lab, "badfc", helo="[192.0.2.30]")
    assert again.rcpt("bob@qq.example")[:2] == (550, "5.7.25")


@pytest.mark.parametrize(
    ("helo", "code", "enhanced"),
    [
        ("localhost", 504, "5.5.2"),
        ("192.0.2.10", 504, "5.5.2"),
        ("bad_name.example", 501, "5.5.2"),
        ("mail.qq.example.invalid", 550, "5.7.1"),  # does not resolve: Host not found
        ("mx.qq.example", 550, "5.7.1"),  # someone else's name
    ],
)
def test_helo_names(lab: Lab, helo: str, code: int, enhanced: str) -> None:
    sent = send(lab, "good", helo=helo, data=message(subject=f"helo {helo}"))
    reply_code, reply_enhanced, text = sent.rcpt("bob@qq.example")
    assert (reply_code, reply_enhanced) == (code, enhanced)
    assert text.startswith(f"<{helo}>: Helo command rejected")
    assert sent.checks["helo"]["action"] == "reject"


def test_a_listed_address_is_blocked(lab: Lab) -> None:
    sent = send(lab, "listed", helo="listed.good.example")
    assert sent.rcpt("bob@qq.example") == (
        554,
        "5.7.1",
        "Service unavailable; Client host [192.0.2.66] blocked using zen.dnsbl.example; "
        "spam source 192.0.2.66",
    )
    dnsbl = sent.checks["dnsbl"]
    assert dnsbl["result"] == "listed"
    assert dnsbl["details"]["codes"] == ["127.0.0.2"]
    # The lookups went to the lab DNS and show in the same trace (RFC 5782 form).
    asked = [e.data["name"] for e in sent.trace.of_kind("dns")]
    assert "66.2.0.192.zen.dnsbl.example." in asked


def test_junk_action_files_the_message_in_junk(lab: Lab) -> None:
    lab.control("mx", "mx", "set_check", check="dnsbl", action="junk")
    sent = send(lab, "listed", helo="listed.good.example", data=message(subject="listed junk"))
    assert sent.transcript.delivered
    [delivery] = sent.deliveries
    assert delivery.data["folder"] == "junk"
    assert delivery.data["junk_by"] == ["dnsbl"]
    msg = by_subject(lab, "listed junk", folder="Junk")
    assert "dnsbl=listed (zen.dnsbl.example, action=junk)" in " ".join(
        str(msg["X-Maillab-Checks"]).split()
    )


def test_header_action_only_notes(lab: Lab) -> None:
    lab.control("mx", "mx", "set_check", check="ptr", action="header")
    lab.control("mx", "mx", "set_check", check="fcrdns", action="header")
    sent = send(lab, "noptr", helo="[192.0.2.20]", data=message(subject="noted"))
    assert sent.transcript.delivered
    assert sent.checks["ptr"]["action"] == "header"
    msg = by_subject(lab, "noted")
    assert auth_results(msg)["iprev"] == "permerror"  # RFC 8601 §2.7.3: no PTR
    assert "ptr=fail (action=header)" in str(msg["X-Maillab-Checks"])


# --- the sender's domain ---------------------------------------------------------------


def test_spf_fail_is_rejected(lab: Lab) -> None:
    sent = send(lab, "spoofer", helo="spoofer.evil.example", mail_from="ceo@good.example")
    assert sent.transcript.failed_stage == "rcpt"
    assert sent.rcpt("bob@qq.example") == (
        550,
        "5.7.23",
        "Message rejected due to: SPF fail - not authorized",
    )
    spf = sent.checks["spf"]
    assert (spf["result"], spf["action"]) == ("fail", "reject")
    assert spf["inputs"]["domain"] == "good.example"


def test_spf_softfail_goes_to_junk(lab: Lab) -> None:
    sent = send(
        lab,
        "spoofer",
        helo="spoofer.evil.example",
        mail_from="news@soft.example",
        data=message("news@soft.example", subject="softfail"),
    )
    assert sent.transcript.delivered
    assert sent.checks["spf"]["result"] == "softfail"
    assert sent.checks["spf"]["action"] == "junk"
    assert sent.deliveries[0].data["folder"] == "junk"
    msg = by_subject(lab, "softfail", folder="Junk")
    assert auth_results(msg)["spf"] == "softfail"


def test_dmarc_reject_of_a_forged_from(lab: Lab) -> None:
    # The spoofer's own domain passes SPF, but From: says bank.example.
    sent = send(
        lab,
        "spoofer",
        helo="spoofer.evil.example",
        mail_from="x@evil.example",
        data=message("Your Bank <security@bank.example>", subject="forged"),
    )
    t = sent.transcript
    assert t.failed_stage == "data"
    assert t.final is not None
    assert (t.final.code, t.final.enhanced) == (550, "5.7.26")
    assert t.final.text == (
        "Unauthenticated email from bank.example is not accepted due to domain's DMARC policy"
    )
    assert sent.checks["spf"]["result"] == "pass"
    dmarc = sent.checks["dmarc"]
    assert (dmarc["result"], dmarc["action"], dmarc["stage"]) == ("fail", "reject", "data")
    assert sent.deliveries == []


def _forged(lab: Lab, header_lines: str, subject: str) -> Sent:
    data = (
        f"{header_lines}To: bob@qq.example\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@test>\r\n\r\nPay now.\r\n"
    ).encode()
    return send(lab, "spoofer", helo="spoofer.evil.example", mail_from="x@evil.example", data=data)


def test_dmarc_judges_every_author_of_a_from_field(lab: Lab) -> None:
    """One From: with a harmless address first and the bank's second: the
    strictest policy of all author domains applies (it was delivered)."""
    sent = _forged(lab, "From: x@evil.example, ceo@bank.example\r\n", "two-authors")
    t = sent.transcript
    assert t.final is not None and (t.final.code, t.final.enhanced) == (550, "5.7.26")
    assert "bank.example" in t.final.text
    assert sent.checks["dmarc"]["result"] == "fail"
    assert sent.deliveries == []


def test_several_from_fields_are_refused(lab: Lab) -> None:
    sent = _forged(lab, "From: x@evil.example\r\nFrom: ceo@bank.example\r\n", "two-froms")
    t = sent.transcript
    assert t.final is not None and (t.final.code, t.final.enhanced) == (550, "5.7.1")
    assert "multiple From" in t.final.text
    assert sent.deliveries == []


def test_a_message_without_from_is_refused(lab: Lab) -> None:
    sent = _forged(lab, "", "no-from")
    t = sent.transcript
    assert t.final is not None and (t.final.code, t.final.enhanced) == (550, "5.7.1")
    assert "From: header" in t.final.text
    assert sent.checks["dmarc"]["result"] == "fail"
    assert sent.deliveries == []


@pytest.mark.parametrize(
    ("domain", "folder", "verdict"),
    [
        ("shop.example", "junk", "quarantine"),
        ("news.example", "inbox", "none"),
        ("trial.example", "junk", "quarantine"),
    ],  # t=y: reject softened to quarantine
)
def test_dmarc_published_policies(lab: Lab, domain: str, folder: str, verdict: str) -> None:
    subject = f"dmarc {domain}"
    sent = send(
        lab,
        "spoofer",
        helo="spoofer.evil.example",
        mail_from="x@evil.example",
        data=message(f"x@{domain}", subject=subject),
    )
    assert sent.transcript.delivered
    assert sent.checks["dmarc"]["details"]["disposition"] == verdict
    assert sent.deliveries[0].data["folder"] == folder
    msg = by_subject(lab, subject, folder="Junk" if folder == "junk" else "INBOX")
    assert auth_results(msg)["dmarc"] == "fail"


def test_aligned_dkim_passes_dmarc_when_spf_does_not_align(lab: Lab) -> None:
    # A forwarder: the envelope is the forwarder's, the signature the author's.
    sent = send(
        lab,
        "spoofer",
        helo="spoofer.evil.example",
        mail_from="fwd@evil.example",
        data=message(subject="forwarded", signed_by="good.example"),
    )
    assert sent.transcript.delivered
    assert sent.checks["dkim"]["result"] == "pass"
    assert sent.checks["dmarc"]["result"] == "pass"
    results = auth_results(by_subject(lab, "forwarded"))
    assert results["dkim"] == "pass"
    assert results["dmarc"] == "pass"


def test_several_authentication_failures_use_x_7_26(lab: Lab) -> None:
    lab.control("mx", "mx", "set_check", check="dkim", action="reject")
    signed = message("x@news.example", subject="tampered", signed_by="good.example")
    tampered = signed.replace(b"Hello Bob.", b"Hello Bob, click here.")
    sent = send(
        lab, "spoofer", helo="spoofer.evil.example", mail_from="x@evil.example", data=tampered
    )
    final = sent.transcript.final
    assert final is not None
    assert (final.code, final.enhanced) == (550, "5.7.26")
    assert final.text == "Multiple authentication checks failed: dkim=fail, dmarc=fail"
    assert sent.checks["dkim"]["details"]["reason"] == "body hash mismatch"


def test_dmarc_runs_spf_and_dkim_even_without_their_own_actions(lab: Lab) -> None:
    lab.control("mx", "mx", "set_check", check="spf", action="off")
    lab.control("mx", "mx", "set_check", check="dkim", action="off")
    sent = send(
        lab,
        "spoofer",
        helo="spoofer.evil.example",
        mail_from="x@evil.example",
        data=message("x@bank.example", subject="no spf action"),
    )
    final = sent.transcript.final
    assert final is not None
    assert final.enhanced == "5.7.26"
    assert sent.checks["spf"]["configured"] is None
    assert sent.checks["spf"]["result"] == "pass"
    assert sent.checks["dkim"]["result"] == "none"


def test_tls_required(lab: Lab) -> None:
    lab.control("mx", "mx", "set_check", check="tls", action="reject")
    plain = send(lab, "good", tls="none")
    assert plain.transcript.failed_stage == "mail"
    mail = plain.transcript.reply_at("mail")
    assert mail is not None
    assert (mail.code, mail.enhanced, mail.text) == (
        530,
        "5.7.0",
        "Must issue a STARTTLS command first",
    )
    encrypted = send(lab, "good", data=message(subject="over tls"))
    assert encrypted.transcript.delivered
    received = str(by_subject(lab, "over tls")["Received"])
    assert "using TLSv1" in received
    assert "with ESMTPS" in received


def test_plain_session_is_noted(lab: Lab) -> None:
    sent = send(lab, "good", tls="none", data=message(subject="plain"))
    assert sent.transcript.delivered
    assert (sent.checks["tls"]["result"], sent.checks["tls"]["action"]) == ("fail", "header")
    msg = by_subject(lab, "plain")
    assert "with ESMTP id" in " ".join(str(msg["Received"]).split())
    assert "tls=fail (action=header)" in str(msg["X-Maillab-Checks"])


# --- recipients ----------------------------------------------------------------------


def test_recipients_relay_unknown_and_postmaster(lab: Lab) -> None:
    sent = send(
        lab,
        "good",
        rcpts=("eve@elsewhere.example", "nobody@qq.example", "Carol@QQ.example", "Postmaster"),
        data=message(subject="recipients"),
    )
    assert sent.rcpt("eve@elsewhere.example") == (
        554,
        "5.7.1",
        "<eve@elsewhere.example>: Relay access denied",
    )
    assert sent.rcpt("nobody@qq.example") == (
        550,
        "5.1.1",
        "<nobody@qq.example>: Recipient address rejected: User unknown in virtual mailbox table",
    )
    assert sent.rcpt("Carol@QQ.example")[0] == 250
    assert sent.rcpt("Postmaster")[0] == 250
    assert sent.transcript.delivered
    assert {d.data["mailbox"] for d in sent.deliveries} == {"Carol@QQ.example", "Postmaster"}
    # Postmaster mail reaches a person: the first mailbox (RFC 5321 §4.5.1).
    to_bob = by_subject(lab, "recipients", user="bob")
    assert to_bob["Delivered-To"] == "Postmaster"
    assert by_subject(lab, "recipients", user="carol")["Delivered-To"] == "Carol@QQ.example"


def test_postmaster_is_reachable_from_a_rejected_client(lab: Lab) -> None:
    sent = send(
        lab,
        "noptr",
        helo="[192.0.2.20]",
        rcpts=("bob@qq.example", "postmaster@qq.example"),
        data=message(subject="to postmaster"),
    )
    assert sent.rcpt("bob@qq.example")[:2] == (550, "5.7.25")
    assert sent.rcpt("postmaster@qq.example")[0] == 250
    assert sent.transcript.delivered
    assert sent.checks["postmaster"]["result"] == "exempt"
    assert by_subject(lab, "to postmaster")["Delivered-To"] == "postmaster@qq.example"


def test_null_sender_is_accepted(lab: Lab) -> None:
    sent = send(
        lab, "good", mail_from="", data=message("MAILER-DAEMON@soft.example", subject="bounce")
    )
    assert sent.transcript.delivered
    mail = sent.transcript.reply_at("mail")
    assert mail is not None
    assert (mail.code, mail.enhanced) == (250, "2.1.0")
    assert sent.checks["spf"]["inputs"]["helo"] == "mail.good.example"
    assert by_subject(lab, "bounce")["Return-Path"] == "<>"


# --- greylisting, outages, controls ----------------------------------------------------


def test_greylisting_in_lab_time(lab: Lab) -> None:
    lab.control("mx", "mx", "greylist", delay="5m")
    first = send(lab, "good", data=message(subject="grey"))
    code, enhanced, text = first.rcpt("bob@qq.example")
    assert (code, enhanced) == (450, "4.7.1")
    assert text.startswith("<bob@qq.example>: Recipient address rejected: Greylisted, see RFC 6647")
    assert first.checks["greylist"]["result"] == "greylisted"
    early = send(lab, "good", data=message(subject="grey"))
    assert early.rcpt("bob@qq.example")[0] == 450
    waited = int(early.rcpt("bob@qq.example")[2].split("try again in ")[1].split()[0])
    assert 0 < waited <= 300
    lab.advance("5m")
    retry = send(lab, "good", data=message(subject="grey"))
    assert retry.transcript.delivered
    assert retry.checks["greylist"]["result"] == "pass"
    # Remembered: the next message passes at once.
    assert send(lab, "good", data=message(subject="grey 2")).transcript.delivered
    assert lab.control("mx", "mx", "greylist_clear") == {"cleared": 1}
    assert send(lab, "good").rcpt("bob@qq.example")[0] == 450


def test_down_refuses_connections_and_up_restores(lab: Lab) -> None:
    assert lab.control("mx", "mx", "down") == {"down": True}
    refused = send(lab, "good")
    assert refused.transcript.blocked
    assert "refused" in (refused.transcript.error or "")
    up = lab.control("mx", "mx", "up")
    assert up["down"] is False
    assert send(lab, "good", data=message(subject="after up")).transcript.delivered


def test_mx_down_from_the_topology(tmp_path: Any) -> None:
    topology = build_topology(replace(MX_SERVICE, down=True))
    with sim.start(topology, state_dir=tmp_path) as down_lab:
        assert not any(e.service == "mx" for e in down_lab.endpoints())
        assert send(down_lab, "good").transcript.blocked
        # Mailboxes exist even while the MX is down.
        assert (tmp_path / "mx" / "mail" / "bob" / "new").is_dir()
        down_lab.control("mx", "mx", "up")
        assert send(down_lab, "good").transcript.delivered


def test_mailbox_control_lists_messages(lab: Lab) -> None:
    send(lab, "good", rcpts=("carol@qq.example",), data=message(subject="for carol"))
    listing = lab.control("mx", "mx", "mailbox", user="carol@qq.example")
    assert listing["user"] == "carol"
    mine = [m for m in listing["messages"] if m["subject"] == "for carol"]
    assert len(mine) == 1
    assert mine[0]["folder"] == "INBOX"
    assert mine[0]["delivered_to"] == "carol@qq.example"
    assert mine[0]["authentication_results"][0].startswith("mx.qq.example;")


@pytest.mark.parametrize(
    ("command", "args", "words"),
    [
        ("set_check", {"check": "bogus", "action": "reject"}, "unknown check"),
        ("set_check", {"check": "ptr", "action": "explode"}, "unknown action"),
        ("set_check", {"check": "ptr", "action": "policy"}, "dmarc only"),
        ("greylist", {"delay": "soon"}, "not a duration"),
        ("mailbox", {"user": "mallory"}, "no mailbox"),
        ("frobnicate", {}, "no control command"),
    ],
)
def test_bad_control_commands_say_why(
    lab: Lab, command: str, args: dict[str, Any], words: str
) -> None:
    with pytest.raises(ServiceError, match=words):
        lab.control("mx", "mx", command, **args)


def test_set_check_edits_the_list(lab: Lab) -> None:
    out = lab.control("mx", "mx", "set_check", check="ptr", action="off")
    assert "ptr" not in [c["check"] for c in out["checks"]]
    out = lab.control("mx", "mx", "set_check", check="ptr", action="junk")
    assert out["checks"][-1] == {"check": "ptr", "action": "junk"}
    assert lab.control("mx", "mx", "status")["checks"] == out["checks"]


async def test_down_on_a_backend_that_cannot_unserve_resets_connections(tmp_path: Any) -> None:
    # tests/netdouble.py's NodeNet has no unserve(): the MX falls back to
    # answering each new connection with a TCP reset.
    from netdouble import DoubleLab

    mx_host = Node(
        name="mx",
        kind="host",
        ip=IPv4Interface("203.0.113.25/24"),
        services=Services(mx=MxService(domains=("qq.example",), mailboxes=("bob",), tls=False)),
    )
    client = Node(name="client", kind="host", ip=IPv4Interface("192.0.2.10/24"))
    topology = Topology(
        name="double",
        settings=Settings(resolver=IPv4Address("198.51.100.53")),
        nodes=(mx_host, client),
    )
    double = DoubleLab(topology, tmp_path)
    server = MxServer(double.context("mx"))
    await server.start()
    net = double.context("client").net

    async def greeting() -> bytes:
        reader, writer = await net.open_connection(MX, 25)
        try:
            return await reader.readline()
        except ConnectionResetError:
            return b""
        finally:
            writer.close()

    try:
        assert (await greeting()).startswith(b"220 mx.qq.example ESMTP")
        await server.control("down")
        assert await greeting() == b""
        await server.control("up")
        assert (await greeting()).startswith(b"220 ")
    finally:
        await server.stop()
        await double.close()


def test_the_header_section_ends_at_the_first_empty_line() -> None:
    crlf = b"From: a@x.example\r\nSubject: s\r\n\r\nFrom: body@evil.example\r\n"
    assert _header_section(crlf) == b"From: a@x.example\r\nSubject: s\r\n\r\n"
    lf = b"From: a@x.example\n\nbody\n\nmore\n"
    assert _header_section(lf) == b"From: a@x.example\n\n"
    assert _header_section(b"From: a@x.example\r\n") == b"From: a@x.example\r\n"  # no body
    # What the MX reads is what the whole message gives (the body is not a header).
    assert _read_headers(crlf).from_domain == "x.example"
    assert _read_headers(b"Subject: no from\r\n\r\nFrom: b@evil.example\r\n").from_domain == ""


# --- checks started ahead, judged at RCPT ----------------------------------------------


def _dns_names(trace: Trace) -> list[str]:
    return [e.data["name"] for e in trace.of_kind("dns") if e.node == "mx"]


async def _session_from(
    backend: Any, node: str, helo: str, trace_id: str | None = None
) -> aiosmtplib.SMTP:
    """A session of ``node`` with the MX, greeted (EHLO ``helo``)."""
    sock = await backend.context(node).net.connect(MX, 25, trace_id=trace_id)
    smtp = aiosmtplib.SMTP(hostname="mx.qq.example", sock=sock, start_tls=False)
    await smtp.connect()
    await smtp.ehlo(hostname=helo)
    return smtp


def test_lookups_start_ahead_and_checks_are_judged_at_rcpt(lab: Lab, restore_mx: MxServer) -> None:
    """The MX looks up the client at connect, the HELO name at EHLO and SPF at
    MAIL, while the client goes on; every check is judged (and reported) at
    RCPT, and nothing is left running when the client goes."""
    backend: Any = lab.backend
    trace = backend.hub.open()

    async def until(names: set[str]) -> None:
        for _ in range(200):
            if names <= set(_dns_names(trace)):
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"never looked up: {names - set(_dns_names(trace))}")

    async def dialogue() -> tuple[list[str], list[str], int]:
        smtp = await _session_from(backend, "good", "mail.good.example", trace.id)
        await until({"10.2.0.192.in-addr.arpa.", "10.2.0.192.zen.dnsbl.example."})
        await until({"mail.good.example."})
        await smtp.mail("alice@good.example")
        await until({"good.example."})  # the SPF record
        before_rcpt = [e.data["check"] for e in trace.of_kind("check")]
        await smtp.rcpt("bob@qq.example")
        at_rcpt = [e.data["check"] for e in trace.of_kind("check")]
        open_now = restore_mx.open_sessions
        await smtp.quit()
        return before_rcpt, at_rcpt, open_now

    before_rcpt, at_rcpt, open_now = backend.call(dialogue())
    assert before_rcpt == ["tls"]  # judged at MAIL, where it rejects
    assert at_rcpt == ["tls", "ptr", "fcrdns", "helo", "dnsbl", "spf"]
    stages = {e.data["check"]: e.data["stage"] for e in trace.of_kind("check")}
    assert {stages[c] for c in ("ptr", "fcrdns", "helo", "dnsbl", "spf")} == {"rcpt"}
    assert open_now == 1
    for _ in range(100):  # the MX sees the connection close a moment later
        if restore_mx.open_sessions == 0:
            break
        time.sleep(0.01)
    assert restore_mx.open_sessions == 0


def test_a_check_turned_off_after_connect_is_not_judged(lab: Lab) -> None:
    """The blocklist lookups started at connect are not used when a lab task
    turns the DNSBL check off before RCPT: the MX judges what is configured
    when it judges."""
    backend: Any = lab.backend

    async def dialogue() -> tuple[int, int]:
        smtp = await _session_from(backend, "listed", "listed.good.example")
        await smtp.mail("alice@good.example")
        await backend.context("mx").services["mx"].control("set_check", check="dnsbl", action="off")
        try:
            reply = await smtp.rcpt("bob@qq.example")
        except aiosmtplib.SMTPRecipientRefused as refused:
            return refused.code, 0
        await smtp.quit()
        return reply.code, 1

    assert backend.call(dialogue()) == (250, 1)
    # With the check on, the same client is refused (the blocklist lists it).
    lab.control("mx", "mx", "set_check", check="dnsbl", action="reject")
    assert send(lab, "listed", helo="listed.good.example").rcpt("bob@qq.example")[0] == 554


def test_storing_runs_here_for_one_session_and_in_a_thread_for_more(
    lab: Lab, restore_mx: MxServer
) -> None:
    backend: Any = lab.backend

    async def where() -> tuple[bool, bool]:
        here = threading.get_ident()
        ran: list[bool] = []
        for sessions in (1, 2):
            restore_mx.open_sessions += sessions
            try:
                await restore_mx.blocking(lambda: ran.append(threading.get_ident() == here))
            finally:
                restore_mx.open_sessions -= sessions
        return ran[0], ran[1]

    assert backend.call(where()) == (True, False)


@pytest.mark.parametrize("ending", ["quit", "drop"])
def test_a_finished_session_is_freed_without_the_cyclic_collector(
    lab: Lab, restore_mx: MxServer, ending: str
) -> None:
    """Each session's objects go when the session ends (reference counting),
    not at the cyclic garbage collector's next run: a busy MX would
    otherwise leave every connection's objects for it to find."""
    backend: Any = lab.backend

    async def session() -> weakref.ref[Any]:
        smtp = await _session_from(backend, "good", "mail.good.example")
        await smtp.mail("alice@good.example")
        [server] = list(restore_mx._sessions)
        ref = weakref.ref(server)
        del server
        if ending == "quit":
            await smtp.quit()
        else:
            smtp.close()  # the client goes away mid-transaction
        for _ in range(200):  # the session ends, its handler task too, then it lets go
            if ref() is None:
                break
            await asyncio.sleep(0.005)
        return ref

    gc.collect()
    gc.disable()
    try:
        ref = backend.call(session())
        assert ref() is None
    finally:
        gc.enable()
