"""The DMARC alignment panel: three identities, the records, aligned or not.

DMARC (RFC 9989) judges the domain a person reads, the ``From:`` domain, by
two other identities a receiver can authenticate:

* the ``MAIL FROM`` domain, authenticated by SPF (RFC 7208), and
* the ``d=`` domain of each DKIM signature (RFC 6376).

Either counts only if it passed *and* is aligned with the ``From:`` domain
(§4.4: identical in strict mode; the same organizational domain in relaxed
mode). The organizational domain and the policy record are found by the DNS
tree walk of §4.10 (no public suffix list). The panel shows all of it, read
from the ``check`` events of the receiver's SPF, DKIM and DMARC checks (the
inputs and details they recorded); it decides nothing itself.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import field
from typing import TYPE_CHECKING, Any

from sim.events import Check
from sim.fastclass import dataclass
from sim.trace import Trace, TraceEvent

if TYPE_CHECKING:
    from sim.experiments import ExperimentResult

__all__ = ["AlignmentPanel", "Identity", "alignment_json", "alignment_of"]


@dataclass(frozen=True)
class Identity:
    """One authenticated identifier: ``spf`` (the MAIL FROM domain) or a DKIM
    ``d=``. ``aligned`` is None when DMARC was not evaluated."""

    identifier: str
    domain: str
    result: str
    aligned: bool | None = None
    how: str = ""
    record: str = ""
    record_name: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "identifier": self.identifier,
            "domain": self.domain,
            "result": self.result,
            "aligned": self.aligned,
            "how": self.how,
            "record": self.record,
            "record_name": self.record_name,
        }


@dataclass(frozen=True)
class AlignmentPanel:
    """What DMARC weighed for one message (see the module docstring).

    ``dmarc`` is the DMARC verdict (``pass``, ``fail``, ``none``...) or None
    when the receiver did not check DMARC; ``action`` what the receiver did
    about it (reject, junk, header, none).
    """

    from_domain: str
    mail_from_domain: str
    identities: tuple[Identity, ...]
    dmarc: str | None
    record: str = ""
    record_domain: str = ""
    org_domain: str = ""
    org_domain_reason: str = ""
    queries: tuple[str, ...] = ()
    policy: str = ""
    policy_tag: str = ""
    testing: bool = False
    disposition: str = ""
    action: str = ""
    modes: dict[str, str] = field(default_factory=dict)
    explanation: str = ""

    @property
    def spf(self) -> Identity | None:
        return next((i for i in self.identities if i.identifier == "spf"), None)

    @property
    def dkim(self) -> list[Identity]:
        return [i for i in self.identities if i.identifier == "dkim"]

    def to_json(self) -> dict[str, Any]:
        return {
            "from_domain": self.from_domain,
            "mail_from_domain": self.mail_from_domain,
            "identities": [i.to_json() for i in self.identities],
            "dmarc": self.dmarc,
            "record": self.record,
            "record_domain": self.record_domain,
            "org_domain": self.org_domain,
            "org_domain_reason": self.org_domain_reason,
            "queries": list(self.queries),
            "policy": self.policy,
            "policy_tag": self.policy_tag,
            "testing": self.testing,
            "disposition": self.disposition,
            "action": self.action,
            "modes": dict(self.modes),
            "explanation": self.explanation,
        }

    # -- text ----------------------------------------------------------------------------

    def to_text(self, width: int = 80) -> str:
        def cut(text: str, w: int) -> str:
            return text if len(text) <= w else text[: w - 1] + "…"

        verdict = (self.dmarc or "not checked").upper()
        head = f"DMARC for From: {self.from_domain or '?'}: {verdict}"
        if self.dmarc is not None and self.policy:
            head += f", policy {self.policy_tag or 'p'}={self.policy}"
            if self.testing:
                head += " (t=y: one level lower)"
        if self.action and self.action != "none":
            head += f" → {self.action}"
        lines = [cut(head, width)]
        lines.append(f"  {'identity':<18} {'domain':<22} {'result':<9} aligned with From:")
        for ident in self.identities:
            label = "MAIL FROM (SPF)" if ident.identifier == "spf" else "DKIM d="
            mark = "—" if ident.aligned is None else "yes" if ident.aligned else "no"
            row = f"  {label:<18} {cut(ident.domain or '—', 22):<22} {ident.result:<9} {mark}"
            lines.append(cut(row, width))
            if ident.how:
                lines.append(cut(f"  {'':<18} ↳ {ident.how}", width))
        if not self.dkim:
            lines.append(f"  {'DKIM d=':<18} {'(no signature)':<22} {'none':<9} —")
        lines.append(f"  {'From:':<18} {self.from_domain or '?'}")
        lines.append("  records consulted:")
        for ident in self.identities:
            if ident.record:
                name = ident.record_name or ident.domain
                lines.append(
                    cut(f"    {ident.identifier.upper():<5} {name}: {ident.record}", width)
                )
        if self.record:
            lines.append(cut(f"    DMARC _dmarc.{self.record_domain}: {self.record}", width))
        elif self.dmarc is not None:
            lines.append("    DMARC (no record found)")
        if self.queries:
            lines.append("  tree walk (RFC 9989 §4.10):")
            lines.extend(cut(f"    {query}", width) for query in self.queries)
        if self.org_domain:
            lines.append(f"  organizational domain: {self.org_domain}")
            if self.org_domain_reason:
                lines.append(f"    ({self.org_domain_reason})")
        return "\n".join(cut(line, width) for line in lines) + "\n"

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        aligned = [i.identifier for i in self.identities if i.aligned]
        return (
            f"<AlignmentPanel From: {self.from_domain} dmarc={self.dmarc} "
            f"aligned={'+'.join(aligned) or 'none'} policy={self.policy or '-'}>"
        )

    # -- HTML ----------------------------------------------------------------------------

    def _repr_html_(self) -> str:
        e = html.escape
        tones = {"pass": "#e6f4ea", "fail": "#fde2e1", "softfail": "#fff4d6", "none": "#f4f4f4"}

        def box(title: str, domain: str, result: str, extra: str = "") -> str:
            bg = tones.get(result, "#f4f4f4")
            return (
                f'<div style="border:1px solid #999;border-radius:4px;padding:4px 8px;'
                f'margin:3px 0;background:{bg}"><div style="font-size:85%;color:#555">'
                f'{e(title)}</div><div style="font-family:monospace;font-weight:bold">'
                f"{e(domain or '—')}</div><div>{e(result)}{extra}</div></div>"
            )

        left = []
        for ident in self.identities:
            title = "MAIL FROM → SPF" if ident.identifier == "spf" else "DKIM signature d="
            record = (
                f'<div style="font-family:monospace;font-size:80%;color:#333">'
                f"{e(ident.record_name or ident.domain)}: {e(ident.record[:90])}</div>"
                if ident.record
                else ""
            )
            left.append(f'<div class="identity" data-id="{e(ident.identifier)}">')
            left.append(box(title, ident.domain, ident.result, record))
            left.append("</div>")
        if not self.dkim:
            left.append(box("DKIM signature d=", "(none)", "none"))
        arrows = []
        for ident in self.identities:
            if ident.aligned is None:
                sign, colour, words = "?", "#777", "not evaluated"
            elif ident.aligned:
                sign, colour, words = "✓", "#2e7d32", "aligned"
            else:
                sign, colour, words = "✗", "#c62828", "not aligned"
            arrows.append(
                f'<div class="arrow" data-aligned="{ident.aligned}" style="color:{colour};'
                f'margin:10px 0">── {sign} {e(words)} ──▶<div style="font-size:80%">'
                f"{e(ident.how)}</div></div>"
            )
        verdict = self.dmarc or "not checked"
        right = box("From: (what the reader sees)", self.from_domain, f"DMARC {verdict}")
        facts = []
        if self.record:
            facts.append(("DMARC record", f"_dmarc.{self.record_domain}: {self.record}"))
        if self.queries:
            facts.append(("tree walk (RFC 9989 §4.10)", " → ".join(self.queries)))
        if self.org_domain:
            facts.append(("organizational domain", f"{self.org_domain} ({self.org_domain_reason})"))
        if self.policy:
            testing = " (t=y: applied one level lower)" if self.testing else ""
            facts.append(("policy", f"{self.policy_tag or 'p'}={self.policy}{testing}"))
        if self.action:
            facts.append(("the receiver did", self.action))
        rows = "".join(
            f'<tr><th style="text-align:left;padding:1px 8px">{e(k)}</th>'
            f'<td style="font-family:monospace;padding:1px 8px">{e(v)}</td></tr>'
            for k, v in facts
        )
        return (
            '<div class="maillab-alignment" style="border:1px solid #ccc;padding:6px;'
            'max-width:900px">'
            f'<div style="font-weight:bold">DMARC alignment: {e(verdict)}</div>'
            '<div style="display:flex;gap:12px;align-items:center">'
            f'<div style="flex:2">{"".join(left)}</div>'
            f'<div style="flex:1;text-align:center">{"".join(arrows)}</div>'
            f'<div style="flex:2">{right}</div></div>'
            f'<table style="border-collapse:collapse;font-size:90%">{rows}</table>'
            f'<div style="font-size:85%;color:#444">{e(self.explanation)}</div></div>'
        )


def _checks(events: Iterable[TraceEvent]) -> dict[str, list[Check]]:
    out: dict[str, list[Check]] = {}
    for event in events:
        data = event.data
        if isinstance(data, Check):
            out.setdefault(data.check, []).append(data)
    return out


def _unpassed(result: str, dmarc_event: Check | None) -> str:
    """Why an identifier DMARC did not weigh has no alignment to show."""
    if dmarc_event is None or result == "pass":
        return ""
    return f"{result}, so it cannot count for DMARC (RFC 9989 §4.4: only a pass aligns)"


def alignment_of(source: Trace | ExperimentResult | Iterable[TraceEvent]) -> AlignmentPanel | None:
    """The panel for the last message the receiver judged in ``source``
    (a result, a trace or events); None when no SPF, DKIM or DMARC check ran."""
    from sim.experiments import ExperimentResult

    if isinstance(source, ExperimentResult):
        events: list[TraceEvent] = list(source.trace)
    elif isinstance(source, Trace):
        events = list(source)
    else:
        events = sorted(source, key=lambda e: e.t)
    checks = _checks(events)
    if not any(name in checks for name in ("spf", "dkim", "dmarc")):
        return None
    # The last judged message: the last DMARC check, or the last SPF/DKIM.
    dmarc_event = checks["dmarc"][-1] if "dmarc" in checks else None
    spf_event = checks["spf"][-1] if "spf" in checks else None
    dkim_events = checks.get("dkim", [])
    if dmarc_event is not None:
        client = dmarc_event.client
        dkim_events = [e for e in dkim_events if e.client == client] or dkim_events
    d_inputs: dict[str, Any] = dict(dmarc_event.inputs) if dmarc_event else {}
    details: dict[str, Any] = dict(dmarc_event.details) if dmarc_event else {}
    alignment = {
        (str(a.get("identifier")), str(a.get("domain"))): a
        for a in details.get("alignment") or []
        if isinstance(a, dict)
    }
    identities: list[Identity] = []
    mail_from_domain = ""
    if spf_event is not None or d_inputs.get("spf_domain"):
        s_inputs = dict(spf_event.inputs) if spf_event else {}
        domain = str(s_inputs.get("domain") or d_inputs.get("spf_domain") or "")
        mail_from_domain = domain
        result = str((spf_event.result if spf_event else None) or d_inputs.get("spf_result"))
        found = alignment.get(("spf", domain), {})
        identities.append(
            Identity(
                "spf",
                domain,
                result,
                aligned=found.get("aligned") if dmarc_event else None,
                how=str(found.get("how") or _unpassed(result, dmarc_event)),
                record=str(s_inputs.get("record") or ""),
                record_name=domain,
            )
        )
    for event in dkim_events:
        inputs = dict(event.inputs)
        det = dict(event.details)
        domain = str(inputs.get("d") or det.get("d") or "")
        if not domain:
            continue  # no signature at all: the panel says "(none)"
        found = alignment.get(("dkim", domain), {})
        identities.append(
            Identity(
                "dkim",
                domain,
                event.result,
                aligned=found.get("aligned") if dmarc_event else None,
                how=str(found.get("how") or _unpassed(event.result, dmarc_event)),
                record=str(det.get("key_record") or "")[:60],
                record_name=str(inputs.get("key_name") or ""),
            )
        )
    from_domain = str(d_inputs.get("from_domain") or "")
    return AlignmentPanel(
        from_domain=from_domain,
        mail_from_domain=mail_from_domain,
        identities=tuple(identities),
        dmarc=dmarc_event.result if dmarc_event else None,
        record=str(details.get("record") or ""),
        record_domain=str(details.get("record_domain") or ""),
        org_domain=str(details.get("org_domain") or ""),
        org_domain_reason=str(details.get("org_domain_reason") or ""),
        queries=tuple(str(q) for q in details.get("queries") or []),
        policy=str(details.get("policy") or ""),
        policy_tag=str(details.get("policy_tag") or ""),
        testing=bool(details.get("testing")),
        disposition=str(details.get("disposition") or ""),
        action=dmarc_event.action if dmarc_event else "",
        modes={k: str(details[k]) for k in ("adkim", "aspf") if details.get(k)},
        explanation=dmarc_event.explanation if dmarc_event else "",
    )


def alignment_json(trace: Trace) -> dict[str, Any] | None:
    """The panel as JSON for ``send --json`` (None: no authentication checks ran)."""
    panel = alignment_of(trace)
    return panel.to_json() if panel is not None else None
