"""DMARC (RFC 9989, May 2026) evaluated against the lab DNS.

DMARC ties SPF and DKIM to the domain a person reads, the RFC5322.From
"Author Domain": a message passes when SPF passed for an aligned MAIL FROM
domain or a DKIM signature passed for an aligned ``d=`` (§4.4, §5.3.5).
Alignment is strict (identical domains) or relaxed (same Organizational
Domain, §3.2.10). When it fails, the Domain Owner's policy (p, sp or np, §4.7)
suggests what to do, one step weaker when the record says ``t=y``.

RFC 9989 finds both the policy record and the Organizational Domain by the DNS
Tree Walk (§4.10): query ``_dmarc.<name>`` for the domain and then its parents,
at most eight queries, stopping at a record with a ``psd`` tag. RFC 7489 used a
public suffix list instead; ``discovery="psl"`` reproduces that (RFC 7489 §3.2
and §6.6.3, with the ``publicsuffixlist`` package, offline) so a lab can show
where the two disagree. Only discovery differs between the modes: record
syntax and the tags t and np follow RFC 9989 in both.

Source: section numbers are those of draft-ietf-dmarc-dmarcbis-41, the text
the IESG approved and the RFC Editor published as RFC 9989 (the AUTH48 diff of
RFC 9989 keeps that numbering); the final RFC text itself was not available
offline when this was written.
"""

from __future__ import annotations

import email.utils
import re
import threading
from collections.abc import Sequence
from dataclasses import field
from typing import Any, Literal

from sim.auth.result import CheckResult, Lookup
from sim.fastclass import dataclass
from sim.resolve import DnsAnswer

__all__ = [
    "DmarcRecord",
    "author_domains",
    "check_dmarc",
    "check_dmarc_authors",
    "organizational_domain",
    "parse_record",
    "tree_walk_names",
]

Discovery = Literal["treewalk", "psl"]

_POLICIES = ("none", "quarantine", "reject")
_TEMPORARY = {"TIMEOUT", "SERVFAIL", "REFUSED"}
# §4.10: no more than eight queries however many labels the name has.
_MAX_WALK_LABELS = 8
# Appendix C.5.2: removed tags, ignored (with a note for the student).
_REMOVED = {
    "pct": "pct= is ignored: RFC 9989 removed it (Appendix A.6; t=y replaces pct=0)",
    "rf": "rf= is ignored: RFC 9989 removed it (Appendix C.5.2)",
    "ri": "ri= is ignored: RFC 9989 removed it (Appendix C.5.2)",
}
_KNOWN = {"v", "p", "sp", "np", "t", "adkim", "aspf", "psd", "rua", "ruf", "fo"}
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
_DOMAIN = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")
# §4.7 "t": a test-mode policy is applied one level below the one published.
_SOFTER = {"reject": "quarantine", "quarantine": "none", "none": "none"}
_DISPOSITION_WORDS = {
    "none": "delivered as usual (no action requested)",
    "quarantine": "treated as suspicious (quarantine: the junk folder)",
    "reject": "rejected",
}


def _norm(domain: str) -> str:
    domain = domain.strip().rstrip(".").lower()
    if "@" in domain:
        domain = domain.rsplit("@", 1)[1].strip(">").rstrip(".")
    try:
        # §5.3.1: a U-label Author Domain is converted to an A-label.
        return domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        return domain


# --- the record (§4.7, §4.8) -------------------------------------------------


@dataclass(frozen=True)
class DmarcRecord:
    """A DMARC Policy Record as found at ``_dmarc.<domain>``.

    ``p``, ``sp`` and ``np`` are None when absent; ``policy_valid`` is False
    when p is absent or not a valid policy, or sp/np are present but invalid
    (§4.10.1 then decides what happens).
    """

    domain: str
    text: str
    p: str | None = None
    sp: str | None = None
    np: str | None = None
    adkim: str = "r"
    aspf: str = "r"
    t: bool = False
    psd: str = "u"
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()
    fo: str = "0"
    policy_valid: bool = True
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "text": self.text,
            "p": self.p,
            "sp": self.sp,
            "np": self.np,
            "adkim": self.adkim,
            "aspf": self.aspf,
            "t": "y" if self.t else "n",
            "psd": self.psd,
            "rua": list(self.rua),
            "ruf": list(self.ruf),
        }


def _uris(value: str) -> tuple[str, ...]:
    # obs-dmarc-report-size ("!10m") is obsolete syntax to ignore (§4.8).
    uris = [u.strip().split("!", 1)[0] for u in value.split(",")]
    return tuple(u for u in uris if _URI.match(u))


def parse_record(text: str, domain: str) -> DmarcRecord | None:
    """Parse one TXT string; None if it is not a DMARC record at all.

    §4.7: v=DMARC1 must be the first tag (value case-sensitive) or the record
    is ignored; unknown tags are ignored; a tag value with a syntax error
    falls back to the default (§4.8).
    """
    parts = [p.strip() for p in text.split(";")]
    first = parts[0] if parts else ""
    name, eq, value = first.partition("=")
    if not eq or name.strip().lower() != "v" or value.strip() != "DMARC1":
        return None
    tags: dict[str, str] = {}
    notes: list[str] = []
    for part in parts[1:]:
        if not part:
            continue
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if not eq or not key.isalpha():
            notes.append(f"'{part}' is not a tag=value pair and is ignored (§4.8)")
            continue
        if key in _REMOVED:
            notes.append(_REMOVED[key])
            continue
        if key not in _KNOWN:
            notes.append(f"unknown tag {key}= is ignored (§4.7)")
            continue
        tags.setdefault(key, value.strip())

    def choice(key: str, allowed: Sequence[str], default: str) -> str:
        raw = tags.get(key)
        if raw is None:
            return default
        if raw.lower() in allowed:
            return raw.lower()
        notes.append(f"{key}={raw} is not valid, so the default {key}={default} is used (§4.8)")
        return default

    policy_valid = True

    def policy(key: str) -> str | None:
        nonlocal policy_valid
        raw = tags.get(key)
        if raw is None:
            return None
        if raw.lower() in _POLICIES:
            return raw.lower()
        policy_valid = False
        notes.append(f"{key}={raw} is not a valid policy (none, quarantine or reject)")
        return None

    p, sp, np = policy("p"), policy("sp"), policy("np")
    if p is None:
        policy_valid = False
    return DmarcRecord(
        domain=domain,
        text=text,
        p=p,
        sp=sp,
        np=np,
        adkim=choice("adkim", ("r", "s"), "r"),
        aspf=choice("aspf", ("r", "s"), "r"),
        t=choice("t", ("y", "n"), "n") == "y",
        psd=choice("psd", ("y", "n", "u"), "u"),
        rua=_uris(tags.get("rua", "")),
        ruf=_uris(tags.get("ruf", "")),
        fo=tags.get("fo", "0"),
        policy_valid=policy_valid,
        notes=tuple(notes),
    )


# --- DNS with a per-check cache ---------------------------------------------


class _DnsError(Exception):
    def __init__(self, name: str, rtype: str, rcode: str) -> None:
        super().__init__(f"{rcode} for {name} {rtype}")
        self.name, self.rtype, self.rcode = name, rtype, rcode


@dataclass
class _Found:
    """What ``_dmarc.<domain>`` held."""

    domain: str
    record: DmarcRecord | None
    note: str | None = None
    # The query got no answer (SERVFAIL, time-out): whether that matters
    # depends on where in the walk it happened (see :func:`_walk`).
    error: _DnsError | None = None


class _Dns:
    """One DMARC evaluation's view of DNS: cached, every question recorded."""

    def __init__(self, lookup: Lookup) -> None:
        self.lookup = lookup
        self.cache: dict[tuple[str, str], DnsAnswer] = {}
        self.asked: list[str] = []

    def query(self, name: str, rtype: str) -> DnsAnswer:
        key = (name, rtype)
        if key not in self.cache:
            self.asked.append(f"{name} {rtype}")
            try:
                answer = self.lookup(name, rtype)
            except Exception:  # a lookup that cannot answer is a DNS error
                answer = DnsAnswer(name=name, type=rtype, rcode="SERVFAIL")
            self.cache[key] = answer
        answer = self.cache[key]
        if answer.rcode in _TEMPORARY:
            raise _DnsError(name, rtype, answer.rcode)
        return answer

    def dmarc(self, domain: str) -> _Found:
        answer = self.query(f"_dmarc.{domain}", "TXT")
        records = [r for r in (parse_record(t, domain) for t in answer.texts()) if r]
        if len(records) > 1:
            # §4.10 step 2: several DMARC records at one name are all discarded.
            return _Found(domain, None, f"_dmarc.{domain} has {len(records)} DMARC records")
        return _Found(domain, records[0] if records else None)


# --- the tree walk (§4.10) ----------------------------------------------------


def tree_walk_names(domain: str) -> list[str]:
    """The names a DNS Tree Walk queries (with ``_dmarc.`` in front), in order.

    §4.10 steps 3-7: start at the domain; then drop the left-most label, but
    from a name of eight or more labels jump straight to its last seven; go on
    to the single-label top. So never more than eight queries.
    """
    labels = _norm(domain).split(".")
    names = [".".join(labels)]
    rest = labels[-(_MAX_WALK_LABELS - 1) :] if len(labels) >= _MAX_WALK_LABELS else labels[1:]
    while rest:
        names.append(".".join(rest))
        rest = rest[1:]
    return names


def _walk(domain: str, dns: _Dns) -> list[_Found]:
    """Query down the tree; stop at a record carrying psd=y or psd=n (§4.10 step 6).

    A query that gets no answer does not end the walk: it is kept as an
    error in its place, and the caller decides whether the answer was
    needed. A failure above the record that decides (``_dmarc.com`` failing
    when ``_dmarc.example.com`` holds the policy) changes nothing, so it must
    not turn a pass or a reject into a temperror (§4.10, §5.3.6).
    """
    out: list[_Found] = []
    for name in tree_walk_names(domain):
        try:
            found = dns.dmarc(name)
        except _DnsError as err:
            found = _Found(name, None, error=err)
        out.append(found)
        if found.record is not None and found.record.psd in ("y", "n"):
            break
    return out


def _needed_error(walk: list[_Found], upto: int | None) -> _DnsError | None:
    """The first failed query at a name more specific than ``walk[upto]``
    (every failure when ``upto`` is None): a record there could have decided."""
    stop = len(walk) if upto is None else upto
    return next((f.error for f in walk[:stop] if f.error is not None), None)


def _org_from_walk(domain: str, walk: list[_Found]) -> tuple[str, str]:
    """(Organizational Domain, why) from a walk's records (§4.10.2).

    Raises :class:`_DnsError` when a query that could change the answer
    failed: one below the first record that has a psd tag, or any when no
    record was found. Failed names above the records found count as having
    none (the Organizational Domain is the highest name with a record).
    """
    decisive = next(
        (i for i, f in enumerate(walk) if f.record is not None and f.record.psd in ("y", "n")),
        None,
    )
    if not any(f.record is not None for f in walk):
        decisive = None
    elif decisive is None:
        decisive = next(i for i, f in enumerate(walk) if f.record is not None)
    err = _needed_error(walk, decisive)
    if err is not None:
        raise err
    records = [f for f in walk if f.record is not None]
    for found in records:  # longest name first
        assert found.record is not None
        if found.record.psd == "n":
            return found.domain, f"_dmarc.{found.domain} says psd=n"
        if found.record.psd == "y" and found.domain != domain:
            below = ".".join(domain.split(".")[-(found.domain.count(".") + 2) :])
            return below, f"{found.domain} is a public suffix domain (psd=y), one label below it"
    if records:
        top = min(records, key=lambda f: f.domain.count("."))
        return top.domain, f"the highest name with a DMARC record is {top.domain}"
    return domain, "no DMARC record above it, so the domain is its own"


_psl_lock = threading.Lock()
_psl: Any = None


def _public_suffix_list() -> Any:
    global _psl
    with _psl_lock:
        if _psl is None:
            from publicsuffixlist import PublicSuffixList

            _psl = PublicSuffixList()  # the list bundled with the package: offline
        return _psl


def _org_psl(domain: str) -> str:
    # RFC 7489 §3.2: the public suffix plus one label.
    private = _public_suffix_list().privatesuffix(domain)
    return str(private) if private else domain


def organizational_domain(domain: str, lookup: Lookup, discovery: Discovery = "treewalk") -> str:
    """The Organizational Domain of ``domain`` (RFC 9989 §4.10.2, or RFC 7489
    §3.2 with ``discovery="psl"``). Raises ``LookupError`` on a DNS error."""
    domain = _norm(domain)
    if discovery == "psl":
        return _org_psl(domain)
    try:
        return _org_from_walk(domain, _walk(domain, _Dns(lookup)))[0]
    except _DnsError as err:
        raise LookupError(str(err)) from None


# --- evaluation ---------------------------------------------------------------


@dataclass
class _Identifier:
    kind: str  # "spf" or "dkim"
    domain: str
    result: str
    selector: str = ""
    aligned: bool = False
    how: str = ""
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "identifier": self.kind,
            "domain": self.domain,
            "result": self.result,
            "aligned": self.aligned,
            "how": self.how,
        }
        if self.kind == "dkim":
            out["selector"] = self.selector
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class _Evaluation:
    author: str
    discovery: Discovery
    dns: _Dns
    orgs: dict[str, tuple[str, str]] = field(default_factory=dict)

    def org(self, domain: str) -> tuple[str, str]:
        if domain not in self.orgs:
            if self.discovery == "psl":
                self.orgs[domain] = (_org_psl(domain), "public suffix list (RFC 7489)")
            else:
                self.orgs[domain] = _org_from_walk(domain, _walk(domain, self.dns))
        return self.orgs[domain]

    def align(self, ident: _Identifier, mode: str) -> None:
        author = self.author
        if ident.domain == author:
            ident.aligned = True
            ident.how = f"{'strict' if mode == 's' else 'relaxed'}: identical to {author}"
            return
        if mode == "s":
            ident.how = f"strict: {ident.domain} is not identical to {author}"
            return
        try:
            org_id, _ = self.org(ident.domain)
            org_author, _ = self.org(author)
        except _DnsError as err:
            ident.error = str(err)
            ident.how = f"relaxed: the Organizational Domain of {ident.domain} is unknown ({err})"
            return
        if org_id == org_author:
            ident.aligned = True
            ident.how = (
                f"relaxed: {ident.domain} and {author} share the Organizational Domain {org_id}"
            )
        else:
            ident.how = (
                f"relaxed: {ident.domain} belongs to {org_id}, {author} to {org_author}, "
                "different Organizational Domains"
            )


def _dkim_identifiers(dkim: Sequence[CheckResult]) -> list[_Identifier]:
    out = []
    for res in dkim:
        d = str(res.details.get("d") or res.inputs.get("d") or "")
        if not d:
            continue
        out.append(
            _Identifier(
                "dkim", _norm(d), res.result, str(res.details.get("s") or res.inputs.get("s") or "")
            )
        )
    return out


def _describe_identifiers(
    spf_id: _Identifier | None, dkim_ids: list[_Identifier], raw_dkim: Sequence[CheckResult]
) -> str:
    parts: list[str] = []
    if spf_id is None:
        parts.append("there is no SPF result for a MAIL FROM domain")
    elif spf_id.result != "pass":
        parts.append(f"SPF did not pass for {spf_id.domain} ({spf_id.result})")
    elif not spf_id.aligned:
        parts.append(f"SPF passed for {spf_id.domain} but it is not aligned ({spf_id.how})")
    passing = [d for d in dkim_ids if d.result == "pass"]
    if not dkim_ids:
        unsigned = all(r.result == "none" for r in raw_dkim)
        parts.append(
            "the message has no DKIM signature"
            if unsigned
            else "no DKIM signature could be checked"
        )
    elif not passing:
        results = ", ".join(f"{d.domain} {d.result}" for d in dkim_ids)
        parts.append(f"no DKIM signature passed ({results})")
    else:
        for d in passing:
            if not d.aligned:
                parts.append(f"DKIM passed for {d.domain} but it is not aligned ({d.how})")
    return "; ".join(parts)


def check_dmarc(
    from_domain: str,
    spf: CheckResult | None,
    spf_domain: str | None,
    dkim: Sequence[CheckResult],
    lookup: Lookup,
    discovery: Discovery = "treewalk",
) -> CheckResult:
    """Evaluate DMARC for a message whose RFC5322.From domain is ``from_domain``.

    ``spf`` is the SPF result for the MAIL FROM identity and ``spf_domain`` its
    domain (for an empty MAIL FROM, the HELO domain: §3.2.4); when None it is
    taken from ``spf.inputs["domain"]``. ``dkim`` holds one result per
    signature with ``details["d"]``. The result is pass, fail, none (no policy
    record), temperror or permerror; ``details`` say which record applied,
    which identifier aligned and how, and the disposition after ``t=``.
    """
    if discovery not in ("treewalk", "psl"):
        raise ValueError(f"discovery must be 'treewalk' or 'psl', not {discovery!r}")
    author = _norm(from_domain)
    dns = _Dns(lookup)
    ev = _Evaluation(author, discovery, dns)
    if spf_domain is None and spf is not None:
        spf_domain = str(spf.inputs.get("domain") or "")
    spf_id = (
        _Identifier("spf", _norm(spf_domain), spf.result)
        if spf is not None and spf_domain
        else None
    )
    dkim_ids = _dkim_identifiers(dkim)
    inputs: dict[str, Any] = {
        "from_domain": author,
        "spf_result": spf.result if spf is not None else None,
        "spf_domain": spf_id.domain if spf_id else None,
        "dkim": [{"d": d.domain, "s": d.selector, "result": d.result} for d in dkim_ids],
        "discovery": discovery,
    }
    details: dict[str, Any] = {
        "discovery": discovery,
        "record": None,
        "record_domain": None,
        "org_domain": None,
        "policy": None,
        "policy_tag": None,
        "testing": False,
        "disposition": "none",
        "aligned": None,
        "alignment": [],
        "author_exists": None,
        "queries": dns.asked,
        "notes": [],
    }

    def finish(result: str, sentence: str) -> CheckResult:
        return CheckResult("dmarc", result, sentence, inputs, details)

    if not _DOMAIN.match(author):
        return finish(
            "permerror",
            "The message has no usable From: domain, so DMARC cannot be evaluated "
            "(RFC 9989 §5.3.1).",
        )

    # 1. Policy discovery (§4.10.1) and the Organizational Domain (§4.10.2).
    try:
        policy_record, org, org_why, psd_record = _discover(ev)
    except _DnsError as err:
        details["disposition"] = None
        return finish(
            "temperror",
            f"A DNS query for the DMARC policy of {author} failed ({err}), so DMARC can neither "
            "pass nor fail (temperror, RFC 9989 §5.3.6).",
        )
    details["org_domain"] = org
    details["org_domain_reason"] = org_why
    if policy_record is None:
        asked = ", ".join(q.split()[0] for q in dns.asked)
        return finish(
            "none",
            f"No DMARC record applies to {author} (asked {asked}), so DMARC does not apply to "
            "this message (none, RFC 9989 §4.10.1).",
        )
    record = policy_record
    details["record"] = record.text
    details["record_domain"] = record.domain
    # What an aggregate report (RFC 9990) publishes: the record's own tags.
    details["published"] = {"p": record.p, "sp": record.sp, "np": record.np}
    details["rua"] = list(record.rua)
    details["adkim"], details["aspf"] = record.adkim, record.aspf
    details["testing"] = record.t
    details["notes"] = list(record.notes)
    if psd_record is not None and psd_record is record:
        details["notes"].append(
            f"the policy comes from the public suffix domain {record.domain} (psd=y)"
        )
    if not record.policy_valid:
        if not record.rua:
            details["disposition"] = "none"
            return finish(
                "permerror",
                f"The DMARC record at _dmarc.{record.domain} ({record.text}) has no valid p= "
                "(or an invalid sp=/np=) and no valid rua=, so DMARC is not applied "
                "(permerror, RFC 9989 §4.10.1).",
            )
        details["notes"].append("no valid p=, but rua= is valid: treated as p=none (§4.10.1)")
        record = DmarcRecord(
            record.domain,
            record.text,
            p="none",
            adkim=record.adkim,
            aspf=record.aspf,
            t=record.t,
            psd=record.psd,
            rua=record.rua,
            notes=record.notes,
        )

    # 2. Alignment of each authenticated identifier (§4.4, §5.3.4).
    errors: list[str] = []
    if spf_id is not None and spf_id.result == "pass":
        ev.align(spf_id, record.aspf)
        if spf_id.error:
            errors.append(spf_id.error)
    for d in dkim_ids:
        if d.result == "pass":
            ev.align(d, record.adkim)
            if d.error:
                errors.append(d.error)
    details["alignment"] = [i.to_json() for i in ([spf_id] if spf_id else []) + dkim_ids]
    aligned = [i for i in ([spf_id] if spf_id else []) + dkim_ids if i.aligned]
    kinds = sorted({i.kind for i in aligned})
    details["aligned"] = "+".join(kinds) if kinds else None

    # 3. The policy that applies (§4.10.1): p at the Author Domain, otherwise
    # sp for an existing subdomain or np for a non-existent one.
    tag, requested = "p", record.p or "none"
    if record.domain != author:
        exists: bool | None = None
        if record.np is not None and not aligned:
            # Only np depends on existence, and only a failing message needs it.
            try:
                exists = _author_exists(author, dns)
            except _DnsError as err:
                errors.append(str(err))
        details["author_exists"] = exists
        if exists is False and record.np is not None:
            tag, requested = "np", record.np
        elif record.sp is not None:
            tag, requested = "sp", record.sp
    details["policy"] = requested
    details["policy_tag"] = tag
    disposition = _SOFTER[requested] if record.t else requested
    where = f"_dmarc.{record.domain}"
    policy_words = f"{tag}={requested}" + (
        f" with t=y, softened to {disposition}" if record.t and requested != "none" else ""
    )

    if aligned:
        details["disposition"] = "none"
        first = aligned[0]
        what = "SPF" if first.kind == "spf" else f"DKIM (selector {first.selector})"
        return finish(
            "pass",
            f"DMARC passes for {author}: {what} passed for {first.domain}, which is aligned with "
            f"the From: domain ({first.how}); the policy at {where} ({policy_words}) is not "
            "needed.",
        )
    if errors:
        details["disposition"] = None
        return finish(
            "temperror",
            f"DMARC for {author} cannot be decided: a DNS query failed ({errors[0]}), so the "
            "policy cannot be applied (temperror, RFC 9989 §5.3.6).",
        )
    details["disposition"] = disposition
    why = _describe_identifiers(spf_id, dkim_ids, dkim)
    return finish(
        "fail",
        f"DMARC fails for {author}: {why}; so the policy at {where} applies ({policy_words}) "
        f"and the message should be {_DISPOSITION_WORDS[disposition]}.",
    )


def _discover(ev: _Evaluation) -> tuple[DmarcRecord | None, str, str, DmarcRecord | None]:
    """(policy record, Organizational Domain, why, PSD record if any)."""
    author, dns = ev.author, ev.dns
    if ev.discovery == "psl":
        # RFC 7489 §6.6.3: the Author Domain's record, else the Organizational
        # Domain's (public suffix list).
        org = _org_psl(author)
        ev.orgs[author] = (org, "public suffix list (RFC 7489)")
        own = dns.dmarc(author).record
        if own is not None:
            return own, org, "public suffix list (RFC 7489 §3.2)", None
        if org != author:
            return dns.dmarc(org).record, org, "public suffix list (RFC 7489 §3.2)", None
        return None, org, "public suffix list (RFC 7489 §3.2)", None
    walk = _walk(author, dns)
    # §4.10.1: the first record from the Author Domain up decides; a failed
    # query before it (more specific) could have held the policy.
    first = next((i for i, f in enumerate(walk) if f.record is not None), None)
    err = _needed_error(walk, first)
    if err is not None:
        raise err
    org, why = _org_from_walk(author, walk)
    ev.orgs[author] = (org, why)
    ignored = [f.domain for f in walk if f.error is not None]
    if ignored:
        why += (
            f" (no answer for _dmarc.{', _dmarc.'.join(ignored)}, a name above the record "
            "that decides, so it was not needed)"
        )
        ev.orgs[author] = (org, why)
    by_domain = {f.domain: f.record for f in walk if f.record is not None}
    psd = next((r for r in by_domain.values() if r.psd == "y" and r.domain != author), None)
    # §4.10.1: the Author Domain's record, else the Organizational Domain's,
    # else the Public Suffix Domain's.
    if author in by_domain:
        return by_domain[author], org, why, psd
    if org in by_domain:
        return by_domain[org], org, why, psd
    return psd, org, why, psd


def _author_exists(author: str, dns: _Dns) -> bool:
    """§3.2.13 and Appendix A.4: a domain does not exist when a query for it
    answers NXDOMAIN (RFC 8020); any record type, or none (NODATA), means it
    exists. The query type does not matter; A is asked."""
    return dns.query(author, "A").rcode != "NXDOMAIN"


# --- the Author Domains of a message (RFC 5322 §3.6, RFC 9989 §5.3.1) ---------


def author_domains(from_fields: Sequence[str]) -> list[str]:
    """The distinct domains of every address in the From: fields, in order."""
    try:
        addresses = email.utils.getaddresses(list(from_fields))
    except Exception:  # a field email.utils cannot read names no author
        return []
    out: list[str] = []
    for _, address in addresses:
        if "@" in address:
            domain = _norm(address.rpartition("@")[2])
            if domain and domain not in out:
                out.append(domain)
    return out


# Worst first: the result a message with several authors gets.
_SEVERITY = ("fail", "temperror", "permerror", "none", "pass")
_STRICTNESS = ("reject", "quarantine", "none")


def _not_compliant(reason: str, sentence: str, count: int) -> CheckResult:
    # RFC 5322 §3.6: exactly one From: field, holding at least one address.
    # DMARC cannot name the author of such a message, and receivers reject it
    # (RFC 9989 §5.3.1 leaves it to them; Gmail answers 550 5.7.1), so it is
    # judged as a failure that asks for rejection.
    return CheckResult(
        "dmarc",
        "fail",
        sentence,
        {"from_fields": count},
        {"disposition": "reject", "reason": reason, "policy": None, "authors": []},
    )


def check_dmarc_authors(
    from_fields: Sequence[str],
    spf: CheckResult | None,
    dkim: Sequence[CheckResult],
    lookup: Lookup,
    discovery: Discovery = "treewalk",
) -> CheckResult:
    """DMARC for a message's From: fields as they are (the values, in order).

    * No From: field, or one without an address: fail, asking for rejection.
    * Several From: fields (RFC 5322 §3.6 allows one): the same.
    * One field with addresses in several domains: each Author Domain is
      evaluated and the strictest outcome applies (RFC 9989's security
      considerations: otherwise ``From: a@clean.example, ceo@bank.example``
      would pass on the harmless domain's record).
    """
    if len(from_fields) > 1:
        return _not_compliant(
            "several From fields",
            f"The message has {len(from_fields)} From: fields; RFC 5322 §3.6 allows exactly "
            "one, and with several there is no single author DMARC could check, so the "
            "message is refused (RFC 9989 §5.3.1).",
            len(from_fields),
        )
    domains = author_domains(from_fields)
    if not domains:
        return _not_compliant(
            "no From address",
            "The message has no From: field with an address; RFC 5322 §3.6 requires one, "
            "and without an author domain DMARC cannot protect anyone, so the message is "
            "refused (RFC 9989 §5.3.1).",
            len(from_fields),
        )
    results = [check_dmarc(d, spf, None, dkim, lookup, discovery=discovery) for d in domains]
    if len(results) == 1:
        return results[0]

    def rank(r: CheckResult) -> tuple[int, int]:
        disposition = str(r.details.get("disposition") or "none")
        strict = _STRICTNESS.index(disposition) if disposition in _STRICTNESS else 2
        return (_SEVERITY.index(r.result) if r.result in _SEVERITY else 0, strict)

    worst = min(results, key=rank)
    authors = [
        {"domain": d, "result": r.result, "disposition": r.details.get("disposition")}
        for d, r in zip(domains, results, strict=True)
    ]
    listed = ", ".join(f"{a['domain']} {a['result']}" for a in authors)
    sentence = (
        f"The From: field names {len(domains)} author domains ({listed}); the strictest "
        f"outcome applies (RFC 9989, security considerations): {worst.explanation}"
    )
    return CheckResult(
        "dmarc", worst.result, sentence, worst.inputs, {**worst.details, "authors": authors}
    )
