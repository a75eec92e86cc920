"""``ptr``: does the client's address have a PTR record at all?

Whoever holds an address block sets its reverse names (the reverse zone is
delegated with the block), so a residential or fresh VPS address often has
none. Gmail refuses such mail with ``550 5.7.25`` (RFC 7372 X.7.25 "reverse
DNS validation failed"). Authentication-Results has no method for "a PTR
exists": the ``iprev`` clause (RFC 8601 §3) is the forward-confirmed one,
``fcrdns``'s, which this check gives when fcrdns does not run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sim.services.checks.base import ArClause, Check, Fields
from sim.services.replies import Reply, Template

if TYPE_CHECKING:
    from sim.auth.result import CheckResult
    from sim.services.mxchecks import ReverseDns

REPLIES = {
    "ptr": Template(
        550,
        "5.7.25",
        "The IP address sending this message does not have a PTR record setup, or the "
        "corresponding forward DNS entry does not point to the sending IP",
        "Gmail; RFC 7372 X.7.25 (reverse DNS validation failed)",
    ),
    "rdns_tempfail": Template(
        450,
        "4.7.25",
        "Client host rejected: cannot find your reverse hostname, [{ip}]",
        "Postfix, when the PTR lookup fails temporarily",
    ),
}

# RFC 8601 §2.7.3: iprev knows pass, fail, temperror, permerror; a missing
# PTR ("none" in our checks) is its permerror.
IPREV = {
    "pass": "pass",
    "fail": "fail",
    "temperror": "temperror",
    "permerror": "permerror",
    "none": "permerror",
}


def iprev_clause(r: CheckResult) -> ArClause:
    """The ``iprev`` clause (RFC 8601 §2.7.3: ``policy.iprev`` is the address)."""
    ip = r.inputs.get("ip") or r.inputs.get("client_ip") or r.inputs.get("address")
    name = r.details.get("ptr") or r.details.get("hostname") or r.details.get("name")
    props: tuple[tuple[str, str | None], ...] = (("policy_iprev", str(ip) if ip else None),)
    if ip and name:
        # RFC 8601 §3: the checked name may follow as a comment.
        props += (("policy_iprev_comment", str(name).rstrip(".")),)
    return "iprev", IPREV.get(r.result, "fail"), props


def evaluate(rdns: ReverseDns) -> CheckResult:
    """The ptr result of the client's reverse DNS (looked up once per
    connection for ptr, fcrdns and the Received field: sim.services.mxchecks)."""
    from sim.services.mxchecks import ptr_result

    return ptr_result(rdns)


def fail_reply(result: CheckResult, fields: Fields) -> Reply:
    return REPLIES["ptr"].fill()


def temp_reply(result: CheckResult, fields: Fields) -> Reply:
    return REPLIES["rdns_tempfail"].fill(ip=fields.get("ip", ""))


CHECK = Check(
    name="ptr",
    order=10,
    stage="rcpt",
    scope="client",
    doc="The client's IP address has a PTR record.",
    results={
        "pass": "the address has a PTR record",
        "fail": "the address has no PTR record (NXDOMAIN or no data)",
        "temperror": "the PTR lookup got no answer",
    },
    default="reject",
    replies=REPLIES,
    fail_reply=fail_reply,
    temp_reply=temp_reply,
    ar_method="iprev",
    ar_clause=iprev_clause,
    ar_rank=1,
)
