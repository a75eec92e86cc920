"""The lab's stub resolver: how services and experiments ask DNS questions.

Every query goes to the topology's resolver address over the node's
:class:`~sim.net.api.NodeNet` (never the host's resolver) and is recorded in
the trace. Answers come back as plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["DnsAnswer", "DnsRecord", "Resolver"]


@dataclass(frozen=True)
class DnsRecord:
    """One resource record; ``data`` is its presentation form (zone-file text
    of the RDATA, e.g. ``10 mx.qq.example.``); for TXT, ``strings`` holds the
    character-strings as text."""

    name: str
    type: str
    ttl: int
    data: str
    strings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "ttl": self.ttl, "data": self.data}


@dataclass(frozen=True)
class DnsAnswer:
    """The answer to one question. ``rcode`` is NOERROR, NXDOMAIN, SERVFAIL,
    REFUSED or TIMEOUT (no answer at all)."""

    name: str
    type: str
    rcode: str
    records: tuple[DnsRecord, ...] = ()
    server: str = ""
    trace: list[Any] = field(default_factory=list, compare=False)

    def of_type(self, rtype: str) -> tuple[DnsRecord, ...]:
        return tuple(r for r in self.records if r.type == rtype)

    def texts(self) -> list[str]:
        """TXT records, each with its strings joined (RFC 7208 §3.3)."""
        return ["".join(r.strings) for r in self.of_type("TXT")]
