"""``dmarc``: does the From: domain's DMARC policy accept the message?

DMARC (RFC 9989) needs SPF's and DKIM's results and an aligned identifier;
:mod:`sim.auth.dmarc` walks the DNS tree for the policy. ``policy`` (the
default) follows what the domain owner publishes: reject → ``550 5.7.26``
(Gmail's reply; RFC 7372 X.7.26), quarantine → junk, none → only noted. A
message without a From: address or with several From: fields is refused as
Gmail does (RFC 5322 §3.6: exactly one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sim.services.checks.base import ArClause, Check, Fields, Taken
from sim.services.replies import Reply, Template

if TYPE_CHECKING:
    from sim.auth.result import CheckResult, Lookup

REPLIES = {
    "dmarc_reject": Template(
        550,
        "5.7.26",
        "Unauthenticated email from {domain} is not accepted due to domain's DMARC policy",
        "Gmail; RFC 7372 X.7.26",
    ),
    "from_missing": Template(
        550,
        "5.7.1",
        "Messages missing a valid address in From: header, or having no From: header, "
        "are not accepted",
        "Gmail; RFC 5322 §3.6 (exactly one From: field)",
    ),
    "from_multiple": Template(
        550,
        "5.7.1",
        "This message is not RFC 5322 compliant. There are multiple From: headers",
        "Gmail; RFC 5322 §3.6 (exactly one From: field)",
    ),
    "dmarc_temperror": Template(
        451,
        "4.4.3",
        "Temporary failure looking up the DMARC policy of {domain}; try again later",
        "RFC 3463 X.4.3 (directory server failure: DNS)",
    ),
}


def evaluate(
    from_fields: Sequence[str],
    spf: CheckResult | None,
    dkim: list[CheckResult],
    discovery: Any,
    lookup: Lookup,
) -> CheckResult:
    """DMARC of the From: fields; never raises (garbage from the client is a
    permerror, not a crash of the session)."""
    from sim.auth.dmarc import check_dmarc_authors
    from sim.auth.result import CheckResult

    try:
        return check_dmarc_authors(from_fields, spf, dkim, lookup, discovery=discovery)
    except Exception as err:
        return CheckResult(
            "dmarc",
            "permerror",
            f"DMARC could not be evaluated for From: {', '.join(from_fields)!r}: {err}.",
            {"from_fields": len(from_fields)},
        )


def disposition(result: CheckResult) -> str:
    """The disposition the domain asks for (after sp/np and t=y, if the DMARC
    evaluation applied them): reject, quarantine or none."""
    for key in ("disposition", "policy", "p"):
        value = result.details.get(key)
        if isinstance(value, str) and value.lower() in ("reject", "quarantine", "none"):
            return value.lower()
    return "none"


def policy(result: CheckResult) -> Taken:
    """What ``policy`` makes of a result that is not passing."""
    if result.result == "fail":
        return {"reject": "reject", "quarantine": "junk"}.get(  # type: ignore[return-value]
            disposition(result), "header"
        )
    return "defer" if result.result == "temperror" else "header"


def ar_clause(r: CheckResult) -> ArClause:
    """``dmarc=RESULT header.from=... policy.dmarc=...`` (RFC 9989 §9.1)."""
    disposition = r.details.get("disposition") if r.result in ("pass", "fail") else None
    from_domain = r.inputs.get("from_domain")
    # A local policy override (RFC 9989 §7.4; an ARC sealer this receiver
    # trusts, RFC 8617 §7.2) keeps the result and says why it was not applied.
    override = r.details.get("override_reason")
    props = (
        ("reason", f"local policy override: {override}" if override else None),
        ("header_from", from_domain),
        ("policy", disposition),
    )
    return "dmarc", r.result, tuple((k, str(v) if v else None) for k, v in props)


def fail_reply(result: CheckResult, fields: Fields) -> Reply:
    reason = result.details.get("reason")
    if reason == "several From fields":
        return REPLIES["from_multiple"].fill()
    if reason == "no From address":
        return REPLIES["from_missing"].fill()
    # The author domain whose policy failed (with several authors, the
    # strictest one's: not necessarily the first address of From:).
    domain = str(result.inputs.get("domain") or fields.get("domain") or "")
    author = str(result.inputs.get("from_domain") or domain or "this domain")
    return REPLIES["dmarc_reject"].fill(domain=author)


def temp_reply(result: CheckResult, fields: Fields) -> Reply:
    domain = str(result.inputs.get("domain") or fields.get("domain") or "")
    return REPLIES["dmarc_temperror"].fill(domain=domain or "the From: domain")


CHECK = Check(
    name="dmarc",
    order=70,
    stage="data",
    scope="message",
    doc="DMARC of the From: domain (RFC 9989); `policy` follows the domain's published policy.",
    results={
        "none": "the From: domain publishes no DMARC policy",
        "pass": "SPF or DKIM passed for a domain aligned with From:",
        "fail": "no aligned pass: the domain's policy applies",
        "temperror": "a DNS lookup on the needed path got no answer",
        "permerror": "the policy cannot be read, or the From: field is not usable",
    },
    default="policy",
    actions=("reject", "defer", "junk", "header", "policy"),
    replies=REPLIES,
    fail_reply=fail_reply,
    temp_reply=temp_reply,
    authentication=True,
    permerror_fails=False,
    policy=policy,
    ar_method="dmarc",
    ar_clause=ar_clause,
)
