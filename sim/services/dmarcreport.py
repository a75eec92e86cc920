"""DMARC aggregate reports (RFC 9990): what a receiver tells a domain owner.

A domain asks for reports with ``rua=mailto:...`` in its DMARC record
(RFC 9989 §4.7). A receiver that honours it counts, per reporting period, the
messages that claimed the domain in From:, grouped by the sending address
and what authentication found, and mails the owner one report per policy
domain: an XML document (RFC 9990's schema, namespace
``urn:ietf:params:xml:ns:dmarc-2.0``), gzip-compressed, attached to a message
whose Subject and file name follow RFC 9990's ABNF. Reading one is how an owner
finds out who sends in its name, spoofers included, before moving from
``p=none`` to ``p=reject``.

:class:`AggregateCollector` keeps the rows of the current period;
:func:`report_message` builds the mail. The MX decides when a period ends
(:class:`~sim.topology.model.DmarcReporting`) and hands the mail to its relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import secrets
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from sim.auth.result import CheckResult
from sim.events import DmarcReportJson, DmarcReportSent, ServiceFailure
from sim.fastclass import dataclass
from sim.topology.model import DmarcReporting

__all__ = [
    "NAMESPACE",
    "AggregateCollector",
    "AggregateReport",
    "DmarcReporter",
    "report_message",
]

NAMESPACE = "urn:ietf:params:xml:ns:dmarc-2.0"
GENERATOR = "maillab"


@dataclass(frozen=True)
class _Row:
    """What makes two messages one row of a report (RFC 9990 "record")."""

    source_ip: str
    header_from: str
    envelope_from: str
    envelope_to: str
    disposition: str
    dkim: str  # the DMARC-aligned DKIM result: pass or fail
    spf: str  # the DMARC-aligned SPF result: pass or fail
    reasons: tuple[str, ...]
    dkim_results: tuple[tuple[str, str, str], ...]  # (domain, selector, result)
    spf_result: tuple[str, str] | None  # (domain, result)


@dataclass
class _Period:
    """One policy domain's rows for the current period."""

    policy: dict[str, str]
    rua: tuple[str, ...]
    rows: Counter[_Row] = field(default_factory=Counter)


@dataclass(frozen=True)
class AggregateReport:
    """One report: its XML, and what its mail needs."""

    policy_domain: str
    receiver: str
    report_id: str
    begin: int
    end: int
    rua: tuple[str, ...]
    xml: bytes
    messages: int

    @property
    def filename(self) -> str:
        # RFC 9990: receiver "!" policy-domain "!" begin "!" end ["!" unique-id] ".xml.gz"
        return f"{self.receiver}!{self.policy_domain}!{self.begin}!{self.end}.xml.gz"

    @property
    def recipients(self) -> list[str]:
        """The mailto: addresses of ``rua`` (other URI schemes are ignored)."""
        out = []
        for uri in self.rua:
            if uri.lower().startswith("mailto:"):
                address = uri[len("mailto:") :].split("!", 1)[0].split("?", 1)[0]
                if "@" in address:
                    out.append(address)
        return out


def _aligned(details: dict[str, Any], kind: str) -> str:
    aligned = str(details.get("aligned") or "")
    return "pass" if kind in aligned.split("+") else "fail"


class AggregateCollector:
    """The rows of the current reporting period, per policy domain."""

    def __init__(self, receiver: str, org_name: str, email: str, epoch: float) -> None:
        self.receiver = receiver
        self.org_name = org_name
        self.email = email
        #: Real time (seconds since 1970) at lab time 0: reports carry real timestamps.
        self.epoch = epoch
        self.begin = 0.0
        self.periods: dict[str, _Period] = {}

    def record(
        self,
        dmarc: CheckResult,
        *,
        source_ip: str,
        envelope_from: str,
        envelope_to: str,
        spf: CheckResult | None,
        dkim: Sequence[CheckResult],
        applied: str,
    ) -> bool:
        """Count one message DMARC judged; ``applied`` is what the receiver
        did (reject, quarantine or none). False when the domain asked for no
        report (no ``rua=``) or DMARC did not apply."""
        details = dmarc.details
        rua = tuple(details.get("rua") or ())
        domain = details.get("record_domain")
        if not rua or not domain or dmarc.result not in ("pass", "fail"):
            return False
        published = details.get("published") or {}
        policy = {
            "domain": str(domain),
            "p": str(published.get("p") or "none"),
            "sp": str(published.get("sp") or ""),
            "np": str(published.get("np") or ""),
            "adkim": str(details.get("adkim") or "r"),
            "aspf": str(details.get("aspf") or "r"),
            "discovery_method": str(details.get("discovery") or "treewalk"),
            "testing": "y" if details.get("testing") else "n",
        }
        period = self.periods.setdefault(str(domain), _Period(policy, rua))
        period.policy, period.rua = policy, rua  # RFC 9990: the last configuration seen
        disposition = applied
        reasons: list[str] = []
        if dmarc.result == "pass":
            disposition = "pass" if policy["p"] != "none" else "none"
        else:
            requested = str(details.get("policy") or "none")
            if applied != requested:
                # RFC 9990: a disposition other than the policy says why (an
                # ARC override names its reason: trusted_forwarder).
                override = details.get("override")
                if isinstance(override, str):
                    reasons.append(override)
                else:
                    reasons.append("policy_test_mode" if details.get("testing") else "local_policy")
        spf_domain = str(spf.inputs.get("domain") or "") if spf is not None else ""
        row = _Row(
            source_ip=source_ip,
            header_from=str(dmarc.inputs.get("from_domain") or ""),
            envelope_from=envelope_from.rpartition("@")[2].lower(),
            envelope_to=envelope_to.rpartition("@")[2].lower(),
            disposition=disposition,
            dkim=_aligned(details, "dkim"),
            spf=_aligned(details, "spf"),
            reasons=tuple(reasons),
            dkim_results=tuple(
                (
                    str(r.details.get("d") or r.inputs.get("d") or ""),
                    str(r.details.get("s") or r.inputs.get("s") or ""),
                    r.result,
                )
                for r in dkim
                if r.result != "none"
            ),
            spf_result=(spf_domain, spf.result) if spf is not None and spf_domain else None,
        )
        period.rows[row] += 1
        return True

    def take(self, now: float) -> list[AggregateReport]:
        """The reports of the period that ends at lab time ``now``; a new
        period begins."""
        begin, end = int(self.epoch + self.begin), int(self.epoch + now)
        reports = [
            self._report(domain, period, begin, end)
            for domain, period in sorted(self.periods.items())
            if period.rows
        ]
        self.periods.clear()
        self.begin = now
        return reports

    def _report(self, domain: str, period: _Period, begin: int, end: int) -> AggregateReport:
        report_id = f"{begin}-{domain}-{secrets.token_hex(4)}@{self.receiver}"
        root = ET.Element("feedback", xmlns=NAMESPACE)
        ET.SubElement(root, "version").text = "1.0"
        meta = ET.SubElement(root, "report_metadata")
        for tag, value in (
            ("org_name", self.org_name),
            ("email", self.email),
            ("report_id", report_id),
        ):
            ET.SubElement(meta, tag).text = value
        dates = ET.SubElement(meta, "date_range")
        ET.SubElement(dates, "begin").text = str(begin)
        ET.SubElement(dates, "end").text = str(end)
        ET.SubElement(meta, "generator").text = GENERATOR
        published = ET.SubElement(root, "policy_published")
        for tag in ("domain", "p", "sp", "np", "adkim", "aspf", "discovery_method", "testing"):
            if period.policy.get(tag):
                ET.SubElement(published, tag).text = period.policy[tag]
        # Most frequent first, then by address (rows are not orderable: two
        # rows with one count are told apart by their text).
        for row, count in sorted(
            period.rows.items(), key=lambda item: (-item[1], item[0].source_ip, repr(item[0]))
        ):
            record = ET.SubElement(root, "record")
            fields = ET.SubElement(record, "row")
            ET.SubElement(fields, "source_ip").text = row.source_ip
            ET.SubElement(fields, "count").text = str(count)
            evaluated = ET.SubElement(fields, "policy_evaluated")
            ET.SubElement(evaluated, "disposition").text = row.disposition
            ET.SubElement(evaluated, "dkim").text = row.dkim
            ET.SubElement(evaluated, "spf").text = row.spf
            for reason in row.reasons:
                ET.SubElement(ET.SubElement(evaluated, "reason"), "type").text = reason
            ids = ET.SubElement(record, "identifiers")
            ET.SubElement(ids, "header_from").text = row.header_from
            if row.envelope_from:
                ET.SubElement(ids, "envelope_from").text = row.envelope_from
            if row.envelope_to:
                ET.SubElement(ids, "envelope_to").text = row.envelope_to
            auth = ET.SubElement(record, "auth_results")
            for d, s, result in row.dkim_results:
                sig = ET.SubElement(auth, "dkim")
                ET.SubElement(sig, "domain").text = d
                ET.SubElement(sig, "selector").text = s
                ET.SubElement(sig, "result").text = result
            if row.spf_result is not None:
                spf = ET.SubElement(auth, "spf")
                ET.SubElement(spf, "domain").text = row.spf_result[0]
                ET.SubElement(spf, "scope").text = "mfrom"
                ET.SubElement(spf, "result").text = row.spf_result[1]
        ET.indent(root)
        xml = ET.tostring(root, encoding="utf-8", xml_declaration=True)
        return AggregateReport(
            domain,
            self.receiver,
            report_id,
            begin,
            end,
            period.rua,
            xml,
            sum(period.rows.values()),
        )


def report_message(report: AggregateReport, sender: str, epoch_now: float) -> bytes:
    """The report as mail (RFC 9990: RFC 5322 + MIME, the XML gzip-compressed
    as ``application/gzip`` with the prescribed file name)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(report.recipients)
    # RFC 9990: "Report Domain:" policy domain "Submitter:" receiver "Report-ID:" id
    message["Subject"] = (
        f"Report Domain: {report.policy_domain} Submitter: {report.receiver} "
        f"Report-ID: <{report.report_id}>"
    )
    message["Date"] = formatdate(epoch_now, usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(
        f"DMARC aggregate report for {report.policy_domain} from {report.receiver}: "
        f"{report.messages} message(s) between {report.begin} and {report.end} "
        "(seconds since 1970). The data is in the attached XML file (RFC 9990).\n"
    )
    message.add_attachment(
        gzip.compress(report.xml, mtime=0),
        maintype="application",
        subtype="gzip",
        filename=report.filename,
    )
    return bytes(message.as_bytes(policy=message.policy.clone(linesep="\r\n")))


class DmarcReporter:
    """An MX's reporting: collects what its DMARC checks found and, every
    interval of lab time (or when asked), mails each policy domain's report
    through the node's relay."""

    def __init__(self, ctx: Any, config: DmarcReporting, hostname: str, domain: str) -> None:
        self.ctx = ctx
        self.config = config
        self.sender = config.sender or f"dmarc-reports@{domain}"
        self.collector = AggregateCollector(
            receiver=hostname,
            org_name=config.org_name or domain,
            email=self.sender,
            epoch=time.time() - ctx.clock.now(),
        )
        self._task: asyncio.Task[None] | None = None
        #: Lab time the current period ends, and whether reports are being
        #: mailed now: ``lab.settle`` waits for both (``mx status``).
        self.due = ctx.clock.now() + config.interval
        self.busy = False

    def status(self) -> dict[str, Any]:
        return {"due": self.due, "busy": self.busy, "interval": self.config.interval}

    def start(self) -> None:
        """Begin the reporting periods (once the lab is up: the relay must be)."""
        self.collector.begin = self.ctx.clock.now()
        self.due = self.collector.begin + self.config.interval
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._periods())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _periods(self) -> None:
        while True:
            await self.ctx.clock.sleep_until(self.due)
            self.busy = True
            try:
                await self.send()
            except Exception as err:  # a report that cannot go must not stop the MX
                self.ctx.record(
                    None,
                    ServiceFailure(service="dmarc_reports", error=str(err)),
                    f"DMARC reports could not be sent: {err}",
                )
            finally:
                self.due = self.ctx.clock.now() + self.config.interval
                self.busy = False

    async def send(self) -> list[DmarcReportJson]:
        """End the period now: mail every report; what was sent."""
        relay = self.ctx.services.get("relay")
        enqueue = getattr(relay, "enqueue", None)
        now = self.ctx.clock.now()
        sent: list[DmarcReportJson] = []
        for report in self.collector.take(now):
            recipients = report.recipients
            summary: DmarcReportJson = {
                "policy_domain": report.policy_domain,
                "report_id": report.report_id,
                "messages": report.messages,
                "to": recipients,
                "filename": report.filename,
                "queue_id": None,
            }
            if enqueue is not None and recipients:
                data = report_message(report, self.sender, self.collector.epoch + now)
                summary["queue_id"] = await enqueue(self.sender, recipients, data)
            self.ctx.record(
                None,
                DmarcReportSent(dmarc_report=summary),
                f"DMARC aggregate report for {report.policy_domain} ({report.messages} "
                f"message(s)) mailed to {', '.join(recipients) or 'nobody (no mailto: rua)'}",
            )
            sent.append(summary)
        return sent
