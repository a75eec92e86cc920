"""``helo``: the HELO/EHLO name (RFC 5321 §4.1.1.1, §2.3.5).

It must be a fully qualified domain name that resolves to the client, or
the client's own address literal in brackets. The replies are Postfix's
``reject_non_fqdn_helo_hostname``, ``reject_invalid_helo_hostname`` and
``reject_unknown_helo_hostname``. No Authentication-Results method: RFC 8601
records the HELO identity only as SPF's ``smtp.helo``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sim.services.checks.base import Check, Fields
from sim.services.replies import Reply, Template

if TYPE_CHECKING:
    from sim.auth.replay import AsyncLookup, Memo, Peek
    from sim.auth.result import CheckResult

REPLIES = {
    "helo_fqdn": Template(
        504,
        "5.5.2",
        "<{helo}>: Helo command rejected: need fully-qualified hostname",
        "Postfix reject_non_fqdn_helo_hostname",
    ),
    "helo_invalid": Template(
        501,
        "5.5.2",
        "<{helo}>: Helo command rejected: Invalid name",
        "Postfix reject_invalid_helo_hostname",
    ),
    "helo_unknown": Template(
        550,
        "5.7.1",
        "<{helo}>: Helo command rejected: Host not found",
        "Postfix reject_unknown_helo_hostname (unknown_hostname_reject_code as 550)",
    ),
    "helo_mismatch": Template(
        550,
        "5.7.1",
        "<{helo}>: Helo command rejected: Host name does not point to your address [{ip}]",
        "maillab wording in Postfix style; RFC 3463 X.7.1",
    ),
    "helo_tempfail": Template(
        450,
        "4.7.1",
        "<{helo}>: Helo command rejected: Host not found",
        "Postfix reject_unknown_helo_hostname on a temporary DNS failure",
    ),
}

#: The reason in a failure's details → its reply.
_BY_REASON = {"not_fqdn": "helo_fqdn", "mismatch": "helo_mismatch", "unknown": "helo_unknown"}


async def evaluate(
    helo: str, ip: str, lookup: AsyncLookup, peek: Peek | None = None, memo: Memo | None = None
) -> CheckResult:
    """The helo result for ``helo`` from ``ip`` (sim.services.mxchecks), on the event loop."""
    from sim.services.mxchecks import check_helo_async

    return await check_helo_async(helo, ip, lookup, peek, memo)


def fail_reply(result: CheckResult, fields: Fields) -> Reply:
    name = _BY_REASON.get(str(result.details.get("reason")), "helo_invalid")
    return REPLIES[name].fill(helo=fields.get("helo", ""), ip=fields.get("ip", ""))


def temp_reply(result: CheckResult, fields: Fields) -> Reply:
    return REPLIES["helo_tempfail"].fill(helo=fields.get("helo", ""))


CHECK = Check(
    name="helo",
    order=30,
    stage="rcpt",
    scope="helo",
    doc="The HELO/EHLO name is a fully qualified host name that resolves to the client's "
    "address (or the client's own address literal).",
    results={
        "pass": "a name that resolves to the client, or its own address literal",
        "fail": "not a fully qualified name, invalid, unknown, or not the client's",
        "temperror": "the name's lookup got no answer",
    },
    default="reject",
    replies=REPLIES,
    fail_reply=fail_reply,
    temp_reply=temp_reply,
)
