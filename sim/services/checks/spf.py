"""``spf``: is the client allowed to send for the envelope sender's domain?

SPF (RFC 7208) judges the MAIL FROM identity (the HELO name for a bounce,
§2.3), evaluated by pyspf over the lab DNS (:mod:`sim.auth.spf`). A fail is
``550 5.7.23`` (RFC 7372 X.7.23 "SPF validation failed"), a temperror
``451 4.7.24`` (X.7.24, RFC 7208 §8.6); a softfail is at most junk (§8.5:
the domain asks not to reject); a permerror is only noted (§8.7: DMARC then
decides). ``policy`` means reject: the qualifiers already are the owner's
policy (``-all`` fails, ``~all`` softfails).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sim.services.checks.base import ArClause, Check, Fields
from sim.services.replies import Reply, Template

if TYPE_CHECKING:
    from sim.auth.result import CheckResult, Lookup

REPLIES = {
    "spf_fail": Template(
        550,
        "5.7.23",
        "Message rejected due to: SPF fail - not authorized",
        "DESIGN.md wording; RFC 7372 X.7.23 (SPF validation failed)",
    ),
    "spf_temperror": Template(
        451,
        "4.7.24",
        "Temporary SPF validation error for {domain}; try again later",
        "RFC 7208 §8.6 (temperror: 4xx); RFC 7372 X.7.24 (SPF validation error)",
    ),
}


def evaluate(ip: str, mail_from: str, helo: str, lookup: Lookup) -> CheckResult:
    """SPF of ``mail_from`` (or ``helo``) for ``ip``; never raises: garbage
    from the client is a permerror, not a crash of the session."""
    from sim.auth.result import CheckResult
    from sim.auth.spf import check_spf

    try:
        return check_spf(ip, mail_from, helo, lookup)
    except Exception as err:
        return CheckResult(
            "spf",
            "permerror",
            f"SPF could not be evaluated for MAIL FROM {mail_from!r} / HELO {helo!r}: {err}.",
            {"ip": ip, "mail_from": mail_from, "helo": helo, "domain": ""},
        )


def ar_clause(r: CheckResult) -> ArClause:
    """``spf=RESULT smtp.mailfrom=...`` (``smtp.helo`` for a bounce, RFC 8601 §2.7.2)."""
    mail_from = str(r.inputs.get("mail_from") or "")
    helo = str(r.inputs.get("helo") or "")
    if mail_from:
        return "spf", r.result, (("smtp_mailfrom", mail_from),)
    return "spf", r.result, (("smtp_helo", helo or None),)


def _domain(result: CheckResult, fields: Fields) -> str:
    return str(result.inputs.get("domain") or fields.get("domain") or "")


def fail_reply(result: CheckResult, fields: Fields) -> Reply:
    return REPLIES["spf_fail"].fill()


def temp_reply(result: CheckResult, fields: Fields) -> Reply:
    return REPLIES["spf_temperror"].fill(domain=_domain(result, fields) or "the sender's domain")


CHECK = Check(
    name="spf",
    order=50,
    stage="rcpt",
    scope="envelope",
    doc="SPF of the envelope sender (RFC 7208).",
    results={
        "none": "no SPF record",
        "neutral": "the record says nothing about this client (?)",
        "pass": "the client is authorized",
        "fail": "the client is not authorized (-)",
        "softfail": "probably not authorized (~): at most junk",
        "temperror": "a DNS lookup got no answer",
        "permerror": "the record cannot be read: only noted",
    },
    default="reject",
    replies=REPLIES,
    fail_reply=fail_reply,
    temp_reply=temp_reply,
    authentication=True,
    permerror_fails=False,
    policy_action="reject",
    ar_method="spf",
    ar_clause=ar_clause,
)
