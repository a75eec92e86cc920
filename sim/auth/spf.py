"""SPF (RFC 7208) evaluated by pyspf against the lab DNS.

pyspf 2.0.14 has no resolver argument: every query goes through the
module-level function ``spf.DNSLookup(name, qtype, strict, timeout)``. We
replace it once, at import, with :func:`_lab_dns_lookup`, which forwards to the
:data:`~sim.auth.result.Lookup` of the evaluation running in the current
context (a :class:`contextvars.ContextVar`), so several labs and worker threads
can check SPF at the same time and pyspf never reaches the host's resolver.

What ``DNSLookup`` must return (pyspf's ``query.dns``): a list of
``((owner, type), value)`` pairs, owner without the final dot; the value is an
address string for A/AAAA, ``(preference, exchange)`` for MX, a name for PTR and
CNAME, and a tuple of ``bytes`` character-strings for TXT (pyspf joins them,
RFC 7208 §3.3). An empty list means NXDOMAIN or no data; a DNS error must raise
``spf.TempError`` (RFC 7208 §5: SERVFAIL or a time-out ends the check with
temperror).
"""

from __future__ import annotations

import contextvars
import ipaddress
import re
from typing import Any

import spf

from sim.auth.result import CheckResult, Lookup
from sim.resolve import DnsAnswer, DnsRecord
from sim.topology.zones import name_labels, name_text

__all__ = ["check_spf", "describe_record"]

_current_lookup: contextvars.ContextVar[Lookup | None] = contextvars.ContextVar(
    "maillab_spf_lookup", default=None
)

# RFC 7208 §5: only NOERROR (0) and NXDOMAIN (3) are answers; anything else
# (SERVFAIL, REFUSED) or no answer at all is a temporary error.
_ANSWERED = {"NOERROR", "NXDOMAIN"}


def _bare(name: str) -> str:
    return name.rstrip(".").lower()


def _txt_strings(record: DnsRecord) -> tuple[str, ...]:
    """The character-strings of a TXT record; falls back to parsing the
    presentation form when the resolver gave none."""
    if record.strings:
        return record.strings
    return tuple(_parse_quoted(record.data))


def _parse_quoted(data: str) -> list[str]:
    # Zone-file TXT presentation: "a" "b\"c" "\065" (RFC 1035 §5.1).
    out: list[str] = []
    for match in re.finditer(r'"((?:[^"\\]|\\.)*)"|(\S+)', data):
        raw = match.group(1) if match.group(1) is not None else match.group(2)
        text = re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1))), raw)
        out.append(re.sub(r"\\(.)", r"\1", text))
    return out


# pyspf works on names as plain text (a macro may expand to "a b.example"),
# the lab's DNS on names in presentation form (RFC 1035 §5.1: "a\\032b.example").
# Both directions are converted here, at the border, so that pyspf compares
# the answers' owner names with the name it asked for.


def _presentation(raw: str) -> str:
    if all(0x21 <= ord(c) <= 0x7E and c not in '\\"();' for c in raw):
        return raw
    labels = [label.encode("utf-8", "surrogateescape") for label in raw.rstrip(".").split(".")]
    return name_text(labels).rstrip(".")


def _raw(name: str) -> str:
    if "\\" not in name:
        return _bare(name)
    return ".".join(label.decode("utf-8", "surrogateescape") for label in name_labels(_bare(name)))


def _to_pyspf(answer: DnsAnswer, qtype: str) -> list[tuple[tuple[str, str], Any]]:
    """A lab :class:`DnsAnswer` in the shape pyspf's ``DNSLookup`` returns."""
    out: list[tuple[tuple[str, str], Any]] = []
    for rec in answer.records:
        owner = _raw(rec.name)
        if rec.type not in (qtype, "CNAME"):
            continue
        if rec.type in ("TXT", "SPF"):
            # pyspf wants bytes (it checks that SPF text is 7-bit ASCII itself,
            # RFC 7208 §3); surrogateescape gives back octets a resolver could
            # not decode.
            value: Any = tuple(s.encode("utf-8", "surrogateescape") for s in _txt_strings(rec))
        elif rec.type == "MX":
            pref, _, exchange = rec.data.strip().partition(" ")
            value = (int(pref), _raw(exchange.strip()))
        elif rec.type in ("PTR", "CNAME"):
            value = _raw(rec.data.strip())
        else:
            value = rec.data.strip()
        out.append(((owner, rec.type), value))
    return out


def _lab_dns_lookup(
    name: str, qtype: str, strict: Any = True, timeout: Any = None
) -> list[tuple[tuple[str, str], Any]]:
    """Replacement for ``spf.DNSLookup``: asks the current lab's lookup."""
    lookup = _current_lookup.get()
    if lookup is None:
        # Never fall back to the host's resolver (the lab is closed).
        raise spf.TempError("no lab DNS lookup is active for this SPF check")
    try:
        answer = lookup(_presentation(name), qtype)
    except Exception as err:  # a lookup that cannot answer is a DNS error
        raise spf.TempError(f"DNS lookup of {name} {qtype} failed: {err}") from None
    if answer.rcode not in _ANSWERED:
        raise spf.TempError(f"DNS {answer.rcode} for {name} {qtype}")
    return _to_pyspf(answer, qtype)


# Installed once, when this module is first imported.
spf.DNSLookup = _lab_dns_lookup


# --- explanations -----------------------------------------------------------

_QUALIFIER_RESULT = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}


def describe_record(record: str, domain: str) -> str:
    """Who an SPF record allows, in words: ``v=spf1 mx -all`` →
    ``its MX hosts``."""
    parts: list[str] = []
    for term in record.split()[1:]:
        qualifier = term[0] if term[0] in _QUALIFIER_RESULT else "+"
        body = term.lstrip("+-~?")
        name, _, arg = body.partition(":")
        name = name.split("/")[0].lower()
        if body.lower().startswith("redirect="):
            # RFC 7208 §6.1: another domain's record decides.
            parts.append(f"the senders {body[len('redirect=') :]} allows")
            continue
        if qualifier != "+" or "=" in name:
            continue
        if name == "mx":
            parts.append(f"the MX hosts of {arg}" if arg else "its MX hosts")
        elif name == "a":
            parts.append(f"the addresses of {arg}" if arg else f"the addresses of {domain}")
        elif name in ("ip4", "ip6"):
            parts.append(arg)
        elif name == "include":
            parts.append(f"the senders {arg} allows")
        elif name == "exists":
            parts.append(f"hosts for which {arg} exists")
        elif name == "ptr":
            parts.append(f"hosts whose verified PTR name ends in {arg or domain}")
    if not parts:
        return "no host"
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _explain(
    result: str,
    ip: str,
    domain: str,
    record: str | None,
    mechanism: str | None,
    problem: str | None,
    domain_explanation: str | None,
) -> str:
    shown = f"{domain} ({record})" if record else domain
    if result == "none":
        if not domain:
            return "There is no domain to check (empty MAIL FROM and HELO), so SPF gives none."
        return (
            f"{domain} publishes no SPF record, so SPF says nothing about {ip} "
            "(none, RFC 7208 §2.6.1)."
        )
    if result == "temperror":
        return (
            f"A DNS lookup failed while checking the SPF record of {domain} ({problem}); "
            "a receiver should try again later (temperror, RFC 7208 §2.6.6)."
        )
    if result == "permerror":
        why = problem or "the record is malformed"
        if "DNS lookups" in why:
            why += (
                ": an SPF check may cause at most 10 DNS-querying terms (include, a, mx, "
                "ptr, exists, redirect; RFC 7208 §4.6.4)"
            )
        elif "Void lookup" in why:
            why += ": at most 2 lookups may find nothing (RFC 7208 §4.6.4)"
        return f"The SPF record of {shown} cannot be used: {why} (permerror, RFC 7208 §2.6.7)."
    term = (mechanism or "").strip()
    is_all = term.lstrip("+-~?").lower() == "all"
    if result == "pass":
        how = f"matched '{term}'" if term else "allows it"
        return (
            f"{ip} is allowed to send for {domain}: its SPF record ({record}) {how}, so SPF passes."
        )
    if not term:
        # RFC 7208 §4.7: nothing matched and no redirect: the default is neutral.
        return (
            f"{ip} matches nothing in the SPF record of {shown} and the record has no 'all' "
            "term, so the result is neutral (RFC 7208 §4.7)."
        )
    senders = describe_record(record or "", domain)
    if is_all and result == "neutral":
        sentence = (
            f"{ip} is not in the SPF record of {shown}, which lists {senders} but makes no "
            f"assertion about other hosts ('{term}'), so this is neutral"
        )
        return sentence + "."
    if is_all:
        head = f"{ip} is not in the SPF record of {shown}: the domain says only {senders} may send"
    else:
        head = f"{ip} matches '{term}' in the SPF record of {shown}, a term that does not allow it"
    tail = {
        "fail": "so this is a fail",
        "softfail": "so this is a softfail (suspicious, but the domain asks not to reject on it)",
        "neutral": "and the term is neutral ('?'), so this is neutral",
    }.get(result, f"so the result is {result}")
    sentence = f"{head}, {tail}"
    if domain_explanation:
        sentence += f"; the domain explains: '{domain_explanation}'"
    return sentence + "."


def _found_record(query: Any, domain: str) -> str | None:
    """The SPF record pyspf read for ``domain`` (from its per-query cache, so
    no extra lookup)."""
    cached = query.cache.get((domain.lower().rstrip("."), "TXT"), [])
    texts = [b"".join(strings) for strings in cached if strings]
    records = [t for t in texts if spf.RE_SPF.match(t)]
    if len(records) != 1:
        return None
    return records[0].decode("ascii", "replace")


def check_spf(ip: str, mail_from: str, helo: str, lookup: Lookup) -> CheckResult:
    """Evaluate SPF for a connecting ``ip`` (RFC 7208 §4, ``check_host()``).

    The identity is the domain of ``mail_from``; for an empty MAIL FROM (a
    bounce), SPF checks ``postmaster@<helo>`` instead (RFC 7208 §2.4).
    """
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise ValueError(f"{ip!r} is not an IP address") from None
    mail_from = mail_from.strip().strip("<>")
    helo = helo.strip()
    identity = "mailfrom" if mail_from else "helo"
    if spf.DNSLookup is not _lab_dns_lookup:  # someone replaced it: put ours back
        spf.DNSLookup = _lab_dns_lookup
    token = _current_lookup.set(lookup)
    try:
        query = spf.query(i=ip, s=mail_from, h=helo, strict=True)
        result, _code, text = query.check()
    finally:
        _current_lookup.reset(token)
    result = {"unknown": "permerror", "error": "temperror"}.get(result, result)
    domain = str(query.o or "").rstrip(".").lower()
    record = _found_record(query, domain) if domain else None
    mechanism = query.mechanism if isinstance(query.mechanism, str) else None
    problem = getattr(query, "prob", None) if result in ("temperror", "permerror") else None
    domain_explanation = None
    if result in ("fail", "softfail") and text != spf.EXPLANATIONS.get(result):
        # RFC 7208 §6.2: the exp= modifier lets the domain explain a failure.
        domain_explanation = text
    explanation = _explain(result, ip, domain, record, mechanism, problem, domain_explanation)
    if identity == "helo" and helo:
        explanation = (
            f"The MAIL FROM is empty (a bounce), so SPF checks the HELO name {helo} "
            f"instead (RFC 7208 §2.4): {explanation[0].lower()}{explanation[1:]}"
        )
    return CheckResult(
        check="spf",
        result=result,
        explanation=explanation,
        inputs={
            "ip": ip,
            "mail_from": mail_from,
            "helo": helo,
            "domain": domain,
            "record": record,
        },
        details={
            "identity": identity,
            "mechanism": mechanism,
            "problem": problem,
            "domain_explanation": domain_explanation,
            "dns_lookups": int(getattr(query, "lookups", 0)),
        },
    )
