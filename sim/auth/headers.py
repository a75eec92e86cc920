"""The ``Authentication-Results`` header field (RFC 8601), built with authres.

A receiver records what it checked in one header field: its own name (the
authserv-id), then one ``method=result`` clause per check with the identity
it checked as a property, e.g.::

    mx.qq.example; spf=pass smtp.mailfrom=alice@relay.example;
     dkim=pass header.d=relay.example header.s=s1; dmarc=pass
     policy.dmarc=none header.from=relay.example

Each check's module (:mod:`sim.services.checks`) names its method and writes
its clause: spf (smtp.mailfrom, or smtp.helo for a bounce, RFC 8601 §2.7.2),
dkim (header.d, header.s, §2.7.1), dmarc (header.from and policy.dmarc, RFC
9989 §9.1) and iprev (policy.iprev, §2.7.3) from "fcrdns" or "ptr". Checks
without a registered method (DNSBL, HELO, TLS) are left out; a method
authres has no class for is written from its ptype.property pairs.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Sequence
from typing import Any

import authres
import authres.arc
import authres.dmarc

from sim.auth.result import CheckResult

__all__ = ["authentication_results", "parse_authentication_results"]

#: One clause as plain data: (method, result, (property, value)...), the
#: properties in the order authres writes them.
_Clause = tuple[str, str, tuple[tuple[str, str | None], ...]]


_CLASSES: dict[str, Any] = {
    "spf": authres.SPFAuthenticationResult,
    "dkim": authres.DKIMAuthenticationResult,
    "dmarc": authres.dmarc.DMARCAuthenticationResult,
    "iprev": authres.IPRevAuthenticationResult,
    "arc": authres.arc.ARCAuthenticationResult,
}


#: Methods given once per header, whichever checks found them (RFC 8601
#: §2.7.3: iprev is one verdict on the client's name).
_SINGLE = frozenset({"iprev"})


@functools.lru_cache(maxsize=512)
def _render(authserv_id: str, clauses: tuple[_Clause, ...]) -> str:
    """The header value for these clauses, by authres (remembered: an MX
    writes the same few combinations for message after message)."""
    objects = []
    for method, result, props in clauses:
        made = dict(props)
        comment = made.pop("policy_iprev_comment", None)
        kind = _CLASSES.get(method)
        obj = kind(result=result, **made) if kind else _generic(method, result, made)
        if comment is not None:
            obj.policy_iprev_comment = comment
        objects.append(obj)
    header = authres.AuthenticationResultsHeader(authserv_id=authserv_id, results=objects)
    return str(header.header_value())


def _generic(method: str, result: str, props: dict[str, str | None]) -> Any:
    """A clause of a method authres has no class for: ``reason`` and each
    ``ptype_property`` as RFC 8601 §2.3 writes it (``smtp.mailfrom``)."""
    reason = props.pop("reason", None)
    properties = [
        authres.core.AuthenticationResultProperty(*key.split("_", 1), value)
        for key, value in props.items()
        if value is not None
    ]
    return authres.AuthenticationResult(
        method=method, result=result, reason=reason, properties=properties
    )


def authentication_results(authserv_id: str, results: Sequence[CheckResult]) -> str:
    """The value of an ``Authentication-Results`` field (without the name),
    unfolded; ``none`` when no result has a method (RFC 8601 §2.2). Each
    check's module names its method and writes its clause
    (sim.services.checks); checks that share a method (ptr and fcrdns:
    iprev) give one clause, their best-ranked result's, where the first of
    them came."""
    # The check modules live in the services layer, above this one: the
    # registry is found by name at call time (docs/architecture.md).
    checks = importlib.import_module("sim.services.checks")

    clauses: list[_Clause | str] = []
    shared: dict[str, tuple[int, CheckResult]] = {}
    for r in results:
        spec = checks.get(r.check)
        if spec is None or spec.ar_method is None or spec.ar_clause is None:
            continue  # no registered method (DNSBL, HELO, TLS)
        if spec.ar_method in _SINGLE:
            best = shared.get(spec.ar_method)
            if best is None:
                clauses.append(spec.ar_method)  # its place, filled in below
            if best is None or spec.ar_rank < best[0]:
                shared[spec.ar_method] = (spec.ar_rank, r)
            continue
        clauses.append(spec.ar_clause(r))
    made: list[_Clause] = []
    for clause in clauses:
        if isinstance(clause, str):
            rank_result = shared[clause][1]
            spec = checks.get(rank_result.check)
            assert spec is not None and spec.ar_clause is not None
            made.append(spec.ar_clause(rank_result))
        else:
            made.append(clause)
    return _render(authserv_id, tuple(made))


def parse_authentication_results(value: str) -> Any:
    """Parse a header value back with authres (all its method modules)."""
    return authres.core.AuthenticationResultsHeader.parse_value(authres.all_features(), value)
