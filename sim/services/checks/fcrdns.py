"""``fcrdns``: forward-confirmed reverse DNS (RFC 8601 §3 ``iprev``).

One of the client's PTR names must resolve back to its address: anyone can
write any name into a PTR record, only the owner of the name can make it
point back. Current Postfix (``reject_unknown_client_hostname``) defers a
failure with ``450 4.7.25`` (RFC 7372 §3 X.7.25); a rejection is Gmail's
``550 5.7.25``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sim.services.checks.base import Check, Fields
from sim.services.checks.ptr import REPLIES as PTR_REPLIES
from sim.services.checks.ptr import iprev_clause
from sim.services.replies import Reply, Template

if TYPE_CHECKING:
    from sim.auth.result import CheckResult
    from sim.services.mxchecks import ReverseDns

REPLIES = {
    "fcrdns_defer": Template(
        450,
        "4.7.25",
        "Client host rejected: cannot find your hostname, [{ip}]",
        "Postfix reject_unknown_client_hostname; RFC 7372 §3 X.7.25 (reverse DNS failed)",
    ),
}


def evaluate(rdns: ReverseDns) -> CheckResult:
    """The fcrdns (iprev) result of the client's reverse DNS."""
    from sim.services.mxchecks import fcrdns_result

    return fcrdns_result(rdns)


def fail_reply(result: CheckResult, fields: Fields) -> Reply:
    return PTR_REPLIES["ptr"].fill()


def defer_reply(result: CheckResult, fields: Fields) -> Reply:
    return REPLIES["fcrdns_defer"].fill(ip=fields.get("ip", ""))


def temp_reply(result: CheckResult, fields: Fields) -> Reply:
    return PTR_REPLIES["rdns_tempfail"].fill(ip=fields.get("ip", ""))


CHECK = Check(
    name="fcrdns",
    order=20,
    stage="rcpt",
    scope="client",
    doc="The PTR name resolves back to the client's address (forward-confirmed reverse DNS).",
    results={
        "pass": "a PTR name resolves back to the address (iprev pass)",
        "fail": "no PTR name resolves back to the address (iprev fail)",
        "permerror": "no PTR record, so no name to confirm (iprev permerror)",
        "temperror": "a reverse or forward lookup got no answer (iprev temperror)",
    },
    default="defer",
    replies=REPLIES,
    fail_reply=fail_reply,
    defer_reply=defer_reply,
    temp_reply=temp_reply,
    ar_method="iprev",
    ar_clause=iprev_clause,
    ar_rank=0,
)
