"""DMARC aggregate reports (RFC 9990): the receiver mails the domain owner
who sent in its name, and the owner finds the spoofer in the report."""

from __future__ import annotations

import gzip
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
import xmlschema
from mininet_support import needs_mininet

import sim
from sim.errors import ServiceError
from sim.services.dmarcreport import NAMESPACE
from sim.topology import loads_topology
from sim.topology.model import DmarcReporting

ROOT = Path(__file__).resolve().parents[1]
XSD = Path(__file__).parent / "fixtures" / "auth" / "dmarc-aggregate-rfc9990.xsd"
NS = {"d": NAMESPACE}


def reporting_topology() -> str:
    """Lab 7's topology: bob's MX sends reports through a relay of its own."""
    text = (ROOT / "topologies" / "dmarc.yaml").read_text(encoding="utf-8")
    assert "dmarc_reports: {interval: 1d, org_name: qq.example}" in text
    return text


@pytest.fixture(
    scope="module",
    params=["local", pytest.param("mininet", marks=needs_mininet)],
)
def lab(request: pytest.FixtureRequest) -> Iterator[sim.Lab]:
    """The same lab on both backends: the reports must be the same."""
    with sim.start(loads_topology(reporting_topology()), backend=request.param) as running:
        yield running


def _report(message: EmailMessage) -> tuple[str, bytes]:
    (part,) = [p for p in message.iter_attachments() if p.get_content_type() == "application/gzip"]
    name = part.get_filename()
    assert name is not None
    return name, gzip.decompress(part.get_payload(decode=True))


def test_the_owner_finds_the_spoofer_in_the_report(lab: sim.Lab) -> None:
    good = lab.send(
        "mail-bank",
        "bob@qq.example",
        mail_from="ceo@bank.example",
        via="mail-bank",
        user="ceo@bank.example",
        password="vault",
        subject="statement",
    )
    assert good.outcome == "delivered"
    for _ in range(2):
        spoof = lab.send(
            "spoofer", "bob@qq.example", mail_from="x@evil.example", from_header="ceo@bank.example"
        )
        assert spoof.outcome == "rejected"

    sent = lab.control("mx-qq", "mx", "dmarc_reports")["sent"]
    assert [(s["policy_domain"], s["messages"], s["to"]) for s in sent] == [
        ("bank.example", 3, ["dmarc-reports@bank.example"])
    ]
    lab.settle()
    (stored,) = lab.mailbox("dmarc-reports@bank.example")
    message = message_from_bytes(stored.data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    # RFC 9990: the Subject and the file name have a prescribed form.
    assert message["Subject"].startswith("Report Domain: bank.example Submitter: mx.qq.example ")
    name, xml = _report(message)
    receiver, domain, begin, end = name.removesuffix(".xml.gz").split("!")
    assert (receiver, domain) == ("mx.qq.example", "bank.example") and int(begin) < int(end)

    xmlschema.XMLSchema(XSD).validate(xml)  # RFC 9990's schema
    root = ET.fromstring(xml)
    assert root.findtext("d:policy_published/d:domain", namespaces=NS) == "bank.example"
    assert root.findtext("d:policy_published/d:p", namespaces=NS) == "reject"
    rows = {r.findtext("d:row/d:source_ip", namespaces=NS): r for r in root.findall("d:record", NS)}
    spoofer = rows["192.0.2.150"]
    assert spoofer.findtext("d:row/d:count", namespaces=NS) == "2"
    assert spoofer.findtext("d:row/d:policy_evaluated/d:disposition", namespaces=NS) == "reject"
    assert spoofer.findtext("d:identifiers/d:envelope_from", namespaces=NS) == "evil.example"
    assert spoofer.findtext("d:auth_results/d:spf/d:result", namespaces=NS) == "pass"
    assert spoofer.findtext("d:row/d:policy_evaluated/d:spf", namespaces=NS) == "fail"  # unaligned
    legit = rows["192.0.2.132"]
    assert legit.findtext("d:row/d:policy_evaluated/d:disposition", namespaces=NS) == "pass"
    assert legit.findtext("d:row/d:policy_evaluated/d:dkim", namespaces=NS) == "pass"


def test_a_period_is_sent_once_and_lab_time_sends_the_next(lab: sim.Lab) -> None:
    assert lab.control("mx-qq", "mx", "dmarc_reports")["sent"] == []  # nothing new
    lab.send(
        "spoofer", "bob@qq.example", mail_from="x@evil.example", from_header="ceo@bank.example"
    )
    before = len(lab.mailbox("dmarc-reports@bank.example"))
    lab.advance("1d")  # the reporting period ends on its own
    deadline = time.monotonic() + 20
    while len(lab.mailbox("dmarc-reports@bank.example")) == before:
        assert time.monotonic() < deadline, "no report after a day of lab time"
        lab.settle()
        time.sleep(0.05)
    assert len(lab.mailbox("dmarc-reports@bank.example")) == before + 1


def test_an_mx_without_reporting_refuses_the_command(lab: sim.Lab) -> None:
    with pytest.raises(ServiceError, match="sends no DMARC reports"):
        lab.control("mx-old", "mx", "dmarc_reports")


def test_reporting_needs_a_relay() -> None:
    text = reporting_topology().replace("      relay: {hostname: mx.qq.example}\n", "")
    problems = sim.topology.validate_topology_text(text)
    assert any("has no relay to mail them" in p.message for p in problems)
    assert DmarcReporting().interval == 86400.0


def test_rows_with_the_same_count_make_one_report() -> None:
    """Two sources seen once each: the report orders them (a regression: the
    rows themselves cannot be compared)."""
    from sim.auth.result import CheckResult
    from sim.services.dmarcreport import AggregateCollector

    collector = AggregateCollector("mx.qq.example", "qq.example", "r@qq.example", 0.0)
    for ip, result in (("192.0.2.150", "fail"), ("203.0.113.70", "pass")):
        dmarc = CheckResult(
            "dmarc",
            result,
            "",
            {"from_domain": "bank.example"},
            {"rua": ["mailto:r@bank.example"], "record_domain": "bank.example", "policy": "reject"},
        )
        assert collector.record(
            dmarc,
            source_ip=ip,
            envelope_from="x@a.example",
            envelope_to="b@qq.example",
            spf=None,
            dkim=[],
            applied="reject" if result == "fail" else "none",
        )
    (report,) = collector.take(3600.0)
    root = ET.fromstring(report.xml)
    ips = [e.text for e in root.iter(f"{{{NAMESPACE}}}source_ip")]
    assert ips == ["192.0.2.150", "203.0.113.70"]
