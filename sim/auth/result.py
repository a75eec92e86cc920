"""The result of one receiving check, the unit every policy decision uses.

A check (PTR, FCrDNS, HELO, DNSBL, SPF, DKIM, DMARC, TLS) records what it
looked at (``inputs``), what it found (``result``, in the vocabulary of
RFC 8601 Authentication-Results where one exists) and one sentence a student
can read (``explanation``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field
from typing import Any

from sim.fastclass import dataclass
from sim.resolve import DnsAnswer

__all__ = ["CheckResult", "Lookup"]

#: A synchronous DNS lookup into the lab DNS: ``lookup(name, rtype)``. The
#: libraries (pyspf, dkimpy) are synchronous; the MX runs them on its event
#: loop over awaited lookups (:func:`sim.auth.replay.replay`).
Lookup = Callable[[str, str], DnsAnswer]


@dataclass(frozen=True)
class CheckResult:
    """``result`` values: pass, fail, softfail, neutral, none, temperror,
    permerror, policy (RFC 8601 §2.7), plus ``listed`` / ``notlisted`` for DNSBLs."""

    check: str
    result: str
    explanation: str
    inputs: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.result in {"fail", "softfail", "permerror", "listed", "temperror"}

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "result": self.result,
            "explanation": self.explanation,
            "inputs": self.inputs,
            "details": self.details,
        }
