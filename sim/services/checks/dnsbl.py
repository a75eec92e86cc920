"""``dnsbl``: is the client's address on a DNS blocklist (RFC 5782)?

The list is asked for the reversed octets under its zone; an A record in
127.0.0.0/8 (but 127.255.255.x, error codes) means listed, the TXT record
says why (§2.1). Postfix's ``reject_rbl_client`` answers ``554 5.7.1``. A
list that does not answer never stops mail (lists go down), and an answer
that is not a listing is ignored. A scoring MX may weigh each return code
(Spamhaus ZEN: 127.0.0.2 SBL, 127.0.0.10 PBL...), as rspamd's RBL module does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sim.services.checks.base import Check, Fields
from sim.services.replies import Reply, Template

if TYPE_CHECKING:
    from sim.auth.replay import AsyncLookup, Memo, Peek
    from sim.auth.result import CheckResult

REPLIES = {
    "dnsbl": Template(
        554,
        "5.7.1",
        "Service unavailable; Client host [{ip}] blocked using {zone}{reason}",
        "Postfix reject_rbl_client; the reason is the list's TXT record (RFC 5782 §2.1)",
    ),
}


async def evaluate(
    ip: str, zone: str, lookup: AsyncLookup, peek: Peek | None = None, memo: Memo | None = None
) -> CheckResult:
    """The dnsbl result of ``ip`` in one list (sim.services.mxchecks), on the event loop."""
    from sim.services.mxchecks import check_dnsbl_async

    return await check_dnsbl_async(ip, zone, lookup, peek, memo)


def fail_reply(result: CheckResult, fields: Fields) -> Reply:
    why = str(result.details.get("reason") or "")
    return REPLIES["dnsbl"].fill(
        ip=fields.get("ip", ""),
        zone=str(result.inputs.get("zone", "")),
        reason=f"; {why}" if why else "",
    )


CHECK = Check(
    name="dnsbl",
    order=40,
    stage="rcpt",
    scope="client",
    doc="The client's address is listed by none of the mx's `dnsbl` zones (RFC 5782).",
    results={
        "notlisted": "the list has no entry for the address",
        "listed": "the list answers an address in 127.0.0.0/8 (a listing)",
        "temperror": "the list did not answer: only noted",
        "permerror": "the list answered something that is not a listing: ignored",
    },
    default="reject",
    replies=REPLIES,
    fail_reply=fail_reply,
    temperror_defers=False,
    permerror_fails=False,
    score_keys="the list's return codes (such as `127.0.0.2`)",
)
