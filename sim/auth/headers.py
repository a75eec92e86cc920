"""The ``Authentication-Results`` header field (RFC 8601), built with authres.

A receiver records what it checked in one header field: its own name (the
authserv-id), then one ``method=result`` clause per check with the identity
it checked as a property, e.g.::

    mx.qq.example; spf=pass smtp.mailfrom=alice@relay.example;
     dkim=pass header.d=relay.example header.s=s1; dmarc=pass
     policy.dmarc=none header.from=relay.example

Clauses made here: spf (smtp.mailfrom, or smtp.helo for a bounce, RFC 8601
§2.7.2), dkim (header.d, header.s, §2.7.1), dmarc (header.from and
policy.dmarc, RFC 9989 §9.1) and iprev (policy.iprev, §2.7.3) from a check
named "fcrdns" or "ptr". Other checks (DNSBL, HELO, TLS) have no registered
method and are left out.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import authres
import authres.dmarc

from sim.auth.result import CheckResult

__all__ = ["authentication_results", "parse_authentication_results"]

# RFC 8601 §2.7.3: iprev knows pass, fail, temperror, permerror; a missing
# PTR ("none" in our checks) is its permerror.
_IPREV = {
    "pass": "pass",
    "fail": "fail",
    "temperror": "temperror",
    "permerror": "permerror",
    "none": "permerror",
}


#: One clause as plain data: (method, result, (property, value)...), the
#: properties in the order authres writes them.
_Clause = tuple[str, str, tuple[tuple[str, str | None], ...]]


def _spf(r: CheckResult) -> _Clause:
    mail_from = str(r.inputs.get("mail_from") or "")
    helo = str(r.inputs.get("helo") or "")
    if mail_from:
        return "spf", r.result, (("smtp_mailfrom", mail_from),)
    return "spf", r.result, (("smtp_helo", helo or None),)


def _dkim(r: CheckResult) -> _Clause:
    reason = r.details.get("reason") if r.result != "pass" else None
    d = r.details.get("d") or r.inputs.get("d")
    s = r.details.get("s") or r.inputs.get("s")
    props = (("reason", reason), ("header_d", d), ("header_s", s))
    return "dkim", r.result, tuple((k, str(v) if v else None) for k, v in props)


def _dmarc(r: CheckResult) -> _Clause:
    disposition = r.details.get("disposition") if r.result in ("pass", "fail") else None
    from_domain = r.inputs.get("from_domain")
    props = (("header_from", from_domain), ("policy", disposition))
    return "dmarc", r.result, tuple((k, str(v) if v else None) for k, v in props)


def _iprev(r: CheckResult) -> _Clause:
    ip = r.inputs.get("ip") or r.inputs.get("client_ip") or r.inputs.get("address")
    name = r.details.get("ptr") or r.details.get("hostname") or r.details.get("name")
    props: tuple[tuple[str, str | None], ...] = (("policy_iprev", str(ip) if ip else None),)
    if ip and name:
        # RFC 8601 §3: the checked name may follow as a comment.
        props += (("policy_iprev_comment", str(name).rstrip(".")),)
    return "iprev", _IPREV.get(r.result, "fail"), props


_CLASSES: dict[str, Any] = {
    "spf": authres.SPFAuthenticationResult,
    "dkim": authres.DKIMAuthenticationResult,
    "dmarc": authres.dmarc.DMARCAuthenticationResult,
    "iprev": authres.IPRevAuthenticationResult,
}


@functools.lru_cache(maxsize=512)
def _render(authserv_id: str, clauses: tuple[_Clause, ...]) -> str:
    """The header value for these clauses, by authres (remembered: an MX
    writes the same few combinations for message after message)."""
    objects = []
    for method, result, props in clauses:
        made = dict(props)
        comment = made.pop("policy_iprev_comment", None)
        obj = _CLASSES[method](result=result, **made)
        if comment is not None:
            obj.policy_iprev_comment = comment
        objects.append(obj)
    header = authres.AuthenticationResultsHeader(authserv_id=authserv_id, results=objects)
    return str(header.header_value())


def authentication_results(authserv_id: str, results: Sequence[CheckResult]) -> str:
    """The value of an ``Authentication-Results`` field (without the name),
    unfolded; ``none`` when no result has a method (RFC 8601 §2.2)."""
    clauses: list[_Clause] = []
    iprev = [r for r in results if r.check in ("fcrdns", "ptr")]
    if iprev:
        # One iprev clause: forward-confirmed reverse DNS is what iprev means.
        best = next((r for r in iprev if r.check == "fcrdns"), iprev[0])
        clauses.append(_iprev(best))
    for r in results:
        if r.check == "spf":
            clauses.append(_spf(r))
        elif r.check == "dkim":
            clauses.append(_dkim(r))
        elif r.check == "dmarc":
            clauses.append(_dmarc(r))
    return _render(authserv_id, tuple(clauses))


def parse_authentication_results(value: str) -> Any:
    """Parse a header value back with authres (all its method modules)."""
    return authres.core.AuthenticationResultsHeader.parse_value(authres.all_features(), value)
