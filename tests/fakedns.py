"""A dict-backed :data:`~sim.auth.result.Lookup` for tests of the auth checks.

Zones are written as ordinary zone text and parsed with
:func:`sim.topology.zones.parse_zone` (the parser the lab DNS uses), turned
into :class:`DnsRecord` by :func:`sim.resolve.record_from_rr` (as the lab
resolver does), then answered the way an authoritative server answers (RFC 1034 §4.3.2):

* records of the asked type → NOERROR with them;
* a CNAME at the name → the CNAME plus the answer for its target;
* a name that exists with other types only, or an empty non-terminal
  (an ancestor of a name that exists) → NOERROR with no records (NODATA,
  RFC 2308; RFC 8020 says only NXDOMAIN means "nothing below");
* anything else → NXDOMAIN.

``timeout(name)`` makes a name answer nothing for the types it lacks, like the
RFC 7208 test suite's ``TIMEOUT`` marker; ``fail(name, rcode)`` forces an rcode.
Every question is recorded in ``queries`` so tests can assert what was asked.
"""

from __future__ import annotations

from collections import defaultdict

from sim.resolve import DnsAnswer, DnsRecord, record_from_rr
from sim.topology.zones import fqdn, parse_zone

__all__ = ["FakeDns"]


class FakeDns:
    """Callable ``(name, rtype) -> DnsAnswer`` over records held in a dict."""

    def __init__(self) -> None:
        self.records: dict[str, list[DnsRecord]] = defaultdict(list)
        self.timeouts: set[str] = set()
        self.forced: dict[str, str] = {}
        self.queries: list[tuple[str, str]] = []

    @classmethod
    def from_zones(cls, zones: dict[str, str]) -> FakeDns:
        dns = cls()
        for origin, text in zones.items():
            dns.add_zone(origin, text)
        return dns

    def add_zone(self, origin: str, text: str) -> None:
        for rr in parse_zone(origin, text):
            self.add(record_from_rr(rr))

    def add(self, record: DnsRecord) -> None:
        self.records[fqdn(record.name)].append(record)

    def timeout(self, name: str) -> None:
        """Queries for ``name`` get no answer (TIMEOUT) unless it has records
        of the asked type."""
        self.timeouts.add(fqdn(name))

    def fail(self, name: str, rcode: str) -> None:
        """Every query for ``name`` answers ``rcode`` (SERVFAIL, TIMEOUT, ...)."""
        self.forced[fqdn(name)] = rcode

    def queried(self, rtype: str | None = None) -> list[str]:
        """Names asked so far (without the final dot), optionally of one type."""
        return [n for n, t in self.queries if rtype is None or t == rtype]

    def _exists(self, name: str) -> bool:
        if self.records.get(name):
            return True
        suffix = "." + name
        return any(other.endswith(suffix) and recs for other, recs in self.records.items())

    def __call__(self, name: str, rtype: str) -> DnsAnswer:
        rtype = rtype.upper()
        self.queries.append((name.rstrip(".").lower(), rtype))
        return self._answer(fqdn(name), rtype, depth=0)

    def _answer(self, name: str, rtype: str, depth: int) -> DnsAnswer:
        if name in self.forced:
            return DnsAnswer(name=name, type=rtype, rcode=self.forced[name])
        found = tuple(r for r in self.records.get(name, ()) if r.type == rtype)
        if found:
            return DnsAnswer(name=name, type=rtype, rcode="NOERROR", records=found)
        if name in self.timeouts:
            return DnsAnswer(name=name, type=rtype, rcode="TIMEOUT")
        cnames = [r for r in self.records.get(name, ()) if r.type == "CNAME"]
        if cnames and rtype != "CNAME" and depth < 8:
            target = fqdn(cnames[0].data)
            rest = self._answer(target, rtype, depth + 1)
            return DnsAnswer(
                name=name, type=rtype, rcode=rest.rcode, records=(cnames[0], *rest.records)
            )
        rcode = "NOERROR" if self._exists(name) else "NXDOMAIN"
        return DnsAnswer(name=name, type=rtype, rcode=rcode)
