"""``dkim``: the message's DKIM signatures (RFC 6376), verified by dkimpy.

One result per signature (``none`` without one); one verifying signature is
enough (§6.1), the others are only noted. A failure alone only annotates by
default (§6.3: a verifier should not reject for it); a rejection is
``550 5.7.20`` (RFC 7372 X.7.20 "no passing DKIM signature found").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sim.services.checks.base import ArClause, Check, Fields
from sim.services.replies import Reply, Template

if TYPE_CHECKING:
    from sim.auth.result import CheckResult, Lookup

REPLIES = {
    "dkim_fail": Template(
        550,
        "5.7.20",
        "Message rejected: no passing DKIM signature found",
        "RFC 7372 X.7.20 (no passing DKIM signature found)",
    ),
    "dkim_temperror": Template(
        451,
        "4.4.3",
        "Temporary failure looking up a DKIM key; try again later",
        "RFC 3463 X.4.3 (directory server failure: DNS)",
    ),
}


def evaluate(content: bytes, lookup: Lookup) -> list[CheckResult]:
    """Every signature of ``content``, verified (sim.auth.dkim)."""
    from sim.auth.dkim import verify_dkim

    return verify_dkim(content, lookup)


def ar_clause(r: CheckResult) -> ArClause:
    """``dkim=RESULT header.d=... header.s=...`` (RFC 8601 §2.7.1)."""
    reason = r.details.get("reason") if r.result != "pass" else None
    d = r.details.get("d") or r.inputs.get("d")
    s = r.details.get("s") or r.inputs.get("s")
    props = (("reason", reason), ("header_d", d), ("header_s", s))
    return "dkim", r.result, tuple((k, str(v) if v else None) for k, v in props)


def fail_reply(result: CheckResult, fields: Fields) -> Reply:
    return REPLIES["dkim_fail"].fill()


def temp_reply(result: CheckResult, fields: Fields) -> Reply:
    return REPLIES["dkim_temperror"].fill()


CHECK = Check(
    name="dkim",
    order=60,
    stage="data",
    scope="message",
    doc="DKIM signatures of the message (RFC 6376).",
    results={
        "none": "the message is not signed",
        "pass": "the signature verifies",
        "fail": "the signature does not verify (the message changed, or a wrong key)",
        "neutral": "the signature cannot be judged (an unusable algorithm, such as rsa-sha1)",
        "policy": "the signature verifies but the verifier does not accept it",
        "temperror": "the key lookup got no answer",
        "permerror": "the signature or key cannot be read, or no key",
    },
    default="header",
    replies=REPLIES,
    fail_reply=fail_reply,
    temp_reply=temp_reply,
    authentication=True,
    ar_method="dkim",
    ar_clause=ar_clause,
)
