"""The authoritative data of one lab DNS server, and how it answers.

A :class:`ZoneStore` holds the zones one node serves, built from zone-file
text (``{origin: text}``). It answers a question the way RFC 1034 §4.3.2 says
an authoritative server does:

* the name exists and has records of the type → those records;
* the name exists (perhaps only as a parent of other names, an "empty
  non-terminal") but has no record of that type → NOERROR with no answer
  ("NODATA") and the zone's SOA in the authority section, whose minimum field
  tells resolvers how long to remember the absence (RFC 2308 §3);
* the name does not exist → NXDOMAIN, SOA in authority;
* the name owns a CNAME → the CNAME, and the chase continues at its target
  while the target is in this store (RFC 1034 §3.6.2, §4.3.2 step 3a); the
  rcode is that of the last name of the chain (RFC 6604 §2);
* no name matches but a wildcard ``*.<closest encloser>`` exists → its records
  under the asked name (RFC 4592 §3.3).

Every zone has an SOA and NS records. When a zone's text has none they are
made up: the name server is called after the node that serves the zone, as a
name in the zone (node ``ns`` serving ``qq.example`` → ``ns.qq.example.``),
with an A record for the node's address when that name has none; the SOA's
contact is ``hostmaster.<zone>``. Instructors may write their own SOA and NS.

Lab tasks edit zones at run time (:meth:`ZoneStore.add`,
:meth:`ZoneStore.remove`, :meth:`ZoneStore.replace_zone`); each edit is
checked like a zone file and increases the SOA serial, as a zone editor
would (RFC 1982 serial arithmetic).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import field
from ipaddress import IPv4Address

import dnslib

from sim.fastclass import dataclass
from sim.resolve import qtype_code, rdata_text
from sim.topology.zones import (
    DEFAULT_TTL,
    ZoneSyntaxError,
    fqdn,
    name_labels,
    name_text,
    parse_zone_lines,
    split_comment,
)

__all__ = ["ZoneAnswer", "ZoneEditError", "ZoneStore", "split_long_strings", "split_txt"]

QTYPE = dnslib.QTYPE
_ANY = QTYPE.ANY
_CNAME = QTYPE.CNAME
_SOA = QTYPE.SOA
_NS = QTYPE.NS

#: How many CNAMEs a chase follows before giving up (BIND stops at 16 too).
MAX_CHAIN = 16

# SOA timers for a made-up SOA (RFC 1912 §2.2 ranges): refresh, retry, expire,
# and the minimum, which RFC 2308 §4 made the TTL of negative answers.
_SOA_TIMERS = (3600, 600, 604800, DEFAULT_TTL)

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class ZoneEditError(ValueError):
    """An edit that cannot apply: an unknown zone, a record that is not there,
    removing what every zone must have. The message is one readable line."""


@dataclass(frozen=True)
class ZoneAnswer:
    """What an authoritative server answers: an rcode name (NOERROR,
    NXDOMAIN, REFUSED), the answer and authority sections, whether this
    server is authoritative for the name, and a sentence for the trace."""

    rcode: str
    answers: tuple[dnslib.RR, ...] = ()
    authority: tuple[dnslib.RR, ...] = ()
    authoritative: bool = True
    explanation: str = ""


def split_txt(strings: Iterable[bytes]) -> list[bytes]:
    """Character-strings of at most 255 bytes (RFC 1035 §3.3.14); longer text
    is cut into several strings, which readers join (RFC 7208 §3.3)."""
    out: list[bytes] = []
    for raw in strings:
        if not raw:
            out.append(raw)
        out.extend(raw[i : i + 255] for i in range(0, len(raw), 255))
    return out


_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_TOKEN = re.compile(r"\\\d{3}|\\.|[^\\]", re.DOTALL)


def split_long_strings(text: str) -> str:
    """Zone text with every quoted string longer than 255 bytes cut into
    several adjacent quoted strings (``"aaa…" "aaa…"``).

    A DKIM key is longer than one character-string may be (RFC 1035
    §3.3.14); hosting providers' editors split it for their users, and so do
    we, rather than refuse a record a student pasted whole (RFC 6376 §3.6.2.2
    says the strings are joined again). Comments are left alone.
    """
    out = []
    for line in text.split("\n"):
        code, comment = split_comment(line)
        out.append(_QUOTED.sub(_split_quoted, code) + comment)
    return "\n".join(out)


def _split_quoted(match: re.Match[str]) -> str:
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for token in _TOKEN.findall(match.group(1)):
        # An escape (\" or \DDD) is one byte; other characters their UTF-8 length.
        length = 1 if token.startswith("\\") else len(token.encode())
        if size + length > 255:
            chunks.append("".join(current))
            current, size = [], 0
        current.append(token)
        size += length
    if not chunks:
        return match.group(0)
    chunks.append("".join(current))
    return " ".join(f'"{chunk}"' for chunk in chunks)


def _copy(rr: dnslib.RR, *, owner: str | None = None, ttl: int | None = None) -> dnslib.RR:
    return dnslib.RR(
        rname=owner if owner is not None else rr.rname,
        rtype=rr.rtype,
        rclass=rr.rclass,
        ttl=rr.ttl if ttl is None else ttl,
        rdata=rr.rdata,
    )


def _owner(rr: dnslib.RR) -> str:
    return fqdn(str(rr.rname))


def _within(name: str, origin: str) -> bool:
    return origin == "." or name == origin or name.endswith("." + origin)


def _same(a: dnslib.RR, b: dnslib.RR) -> bool:
    return bool(a.rtype == b.rtype and _owner(a) == _owner(b) and a.rdata == b.rdata)


def _negative_ttl(soa: dnslib.RR) -> int:
    # RFC 2308 §3: the SOA in a negative answer carries min(SOA TTL, minimum).
    return int(min(soa.ttl, soa.rdata.times[4]))


@dataclass
class _Zone:
    origin: str
    records: dict[str, list[dnslib.RR]] = field(default_factory=dict)
    # Every name that exists: owners and their ancestors down to the origin
    # (empty non-terminals exist too, RFC 8020).
    names: set[str] = field(default_factory=set)

    def all(self) -> list[dnslib.RR]:
        return [rr for rrs in self.records.values() for rr in rrs]

    @property
    def soa(self) -> dnslib.RR:
        return next(rr for rr in self.records[self.origin] if rr.rtype == _SOA)

    def serial(self) -> int:
        return int(self.soa.rdata.times[0])

    def set_serial(self, serial: int) -> None:
        soa = self.soa
        times = (serial % (1 << 32), *soa.rdata.times[1:])
        new = dnslib.RR(
            soa.rname,
            _SOA,
            soa.rclass,
            soa.ttl,
            dnslib.SOA(soa.rdata.mname, soa.rdata.rname, times),
        )
        apex = self.records[self.origin]
        apex[apex.index(soa)] = new

    def insert(self, rr: dnslib.RR) -> bool:
        owner = _owner(rr)
        rrs = self.records.setdefault(owner, [])
        if rr.rtype == _SOA:
            # One SOA per zone: a new one replaces the old.
            rrs[:] = [r for r in rrs if r.rtype != _SOA]
        elif any(_same(rr, r) for r in rrs):
            return False  # an RRset is a set (RFC 2181 §5)
        rrs.append(_copy(rr, owner=owner))
        return True

    def reindex(self) -> None:
        self.records = {owner: rrs for owner, rrs in self.records.items() if rrs}
        names: set[str] = set()
        for owner in self.records:
            name = owner
            while name not in names:
                names.add(name)
                if name == self.origin or name == ".":
                    break
                name = name.split(".", 1)[1] or "."
        self.names = names


class ZoneStore:
    """The zones one DNS server is authoritative for.

    ``server_name`` is the label the made-up NS records use (the node's name);
    ``server_address`` gets an A record under that name when the zone has none.
    Raises :class:`ZoneSyntaxError` (with the line) for text that does not
    parse or breaks a rule of zone data.
    """

    def __init__(
        self,
        zones: Mapping[str, str],
        *,
        server_name: str = "ns",
        server_address: IPv4Address | None = None,
        default_ttl: int = DEFAULT_TTL,
    ) -> None:
        label = server_name.lower()
        self.server_label = label if _LABEL.match(label) else "ns"
        self.server_address = server_address
        self.default_ttl = default_ttl
        self._zones: dict[str, _Zone] = {}
        for origin, text in zones.items():
            self._zones[fqdn(origin)] = self._build(fqdn(origin), text)

    # --- reading ----------------------------------------------------------

    @property
    def origins(self) -> tuple[str, ...]:
        return tuple(self._zones)

    def zone_for(self, name: str) -> str | None:
        """The longest origin of this store that ``name`` is at or under."""
        name = fqdn(name)
        best: str | None = None
        for origin in self._zones:
            if _within(name, origin) and (best is None or len(origin) > len(best)):
                best = origin
        return best

    def records(self, zone: str) -> list[dnslib.RR]:
        """Every record of ``zone``, SOA first."""
        z = self._zone(zone)
        rrs = z.all()
        return sorted(rrs, key=lambda rr: (rr.rtype != _SOA, rr.rtype != _NS))

    def zone_text(self, zone: str) -> str:
        """The zone as zone-file lines (absolute names)."""
        return "".join(
            f"{_owner(rr)} {rr.ttl} IN {QTYPE.get(rr.rtype)} {rdata_text(rr)}\n"
            for rr in self.records(zone)
        )

    def serial(self, zone: str) -> int:
        return self._zone(zone).serial()

    def negative_soa(self, zone: str) -> dnslib.RR:
        """The SOA a negative answer carries in its authority section, its TTL
        lowered to the SOA minimum (RFC 2308 §3)."""
        return self._negative_soa(self._zone(zone))

    def lookup(self, qname: str, qtype: str | int) -> ZoneAnswer:
        """Answer one question from this store (RFC 1034 §4.3.2)."""
        code = qtype_code(qtype)
        name = fqdn(qname)
        if "\\" in name:
            # Escapes (RFC 1035 §5.1) written otherwise than the store keeps them.
            name = name_text(name_labels(name))
        if self.zone_for(name) is None:
            return ZoneAnswer(
                "REFUSED",
                authoritative=False,
                explanation=f"{name} is in none of this server's zones",
            )
        answers: list[dnslib.RR] = []
        seen: set[str] = set()
        while True:
            origin = self.zone_for(name)
            if origin is None:
                # The chain left this server's zones: the CNAME is the answer,
                # a resolver continues at its target (RFC 1034 §4.3.2 step 3a).
                return ZoneAnswer("NOERROR", tuple(answers))
            zone = self._zones[origin]
            found = self._find(zone, name)
            if found is None:
                return ZoneAnswer(
                    "NXDOMAIN",
                    tuple(answers),
                    (self._negative_soa(zone),),
                    explanation=f"{name} does not exist in zone {origin}",
                )
            rrs, wildcard = found
            cname = next((rr for rr in rrs if rr.rtype == _CNAME), None)
            if cname is not None and code not in (_CNAME, _ANY):
                answers.append(cname)
                seen.add(name)
                name = fqdn(str(cname.rdata.label))
                if name in seen or len(answers) >= MAX_CHAIN:
                    return ZoneAnswer(
                        "NOERROR", tuple(answers), explanation="the CNAME chain loops"
                    )
                continue
            matching = [rr for rr in rrs if code == _ANY or rr.rtype == code]
            if not matching:
                return ZoneAnswer(
                    "NOERROR",
                    tuple(answers),
                    (self._negative_soa(zone),),
                    explanation=f"{name} exists but has no {QTYPE.get(code)} record (NODATA)",
                )
            note = f"synthesised from the wildcard {wildcard}" if wildcard else ""
            return ZoneAnswer("NOERROR", tuple(answers + matching), explanation=note)

    def _find(self, zone: _Zone, name: str) -> tuple[list[dnslib.RR], str] | None:
        """Records at ``name`` (an empty list for an empty non-terminal) and
        the wildcard they came from, or None when the name does not exist."""
        if name in zone.names:
            return zone.records.get(name, []), ""
        # RFC 4592 §3.3.1: the closest encloser is the longest existing
        # ancestor; only a wildcard directly below it may answer.
        encloser = name
        while encloser != zone.origin:
            encloser = encloser.split(".", 1)[1] or "."
            if encloser in zone.names:
                break
        wildcard = "*." + encloser
        if wildcard in zone.records:
            return [_copy(rr, owner=name) for rr in zone.records[wildcard]], wildcard
        return None

    def _negative_soa(self, zone: _Zone) -> dnslib.RR:
        return _copy(zone.soa, ttl=_negative_ttl(zone.soa))

    # --- editing ----------------------------------------------------------

    def add(self, zone: str, text: str) -> int:
        """Add the records in ``text`` (zone-file syntax, names relative to
        ``zone``); returns how many were new. An SOA replaces the zone's."""
        z = self._zone(zone)
        text = split_long_strings(text)
        new = self._parse(z.origin, text)
        trial = _Zone(z.origin, {o: list(rrs) for o, rrs in z.records.items()})
        added = sum(trial.insert(rr) for _, rr in new)
        self._check(trial, new)
        self._commit(z, trial)
        return added

    def remove(
        self, zone: str, name: str, rtype: str | int | None = None, data: str | None = None
    ) -> int:
        """Remove the records of ``name`` (``@``, relative or absolute), only
        those of ``rtype`` if given, only the one whose data reads ``data``
        if given (TXT: the text, strings joined). Returns how many went.

        ``remove(zone, "@")`` leaves the apex SOA and NS alone; the SOA cannot
        be removed and the last NS neither (use :meth:`replace_zone`).
        """
        z = self._zone(zone)
        owner = self._absolute(z.origin, name)
        code = None if rtype is None else qtype_code(rtype)
        if code == _SOA:
            raise ZoneEditError(f"zone {z.origin} must keep its SOA record; use replace_zone")

        def doomed(rr: dnslib.RR) -> bool:
            if code is None and owner == z.origin and rr.rtype in (_SOA, _NS):
                return False
            if code is not None and rr.rtype != code:
                return False
            return data is None or _matches(rr, data)

        rrs = z.records.get(owner, [])
        gone = [rr for rr in rrs if doomed(rr)]
        if not gone:
            what = "record" if code is None else f"{QTYPE.get(code)} record"
            detail = "" if data is None else f" reading {data!r}"
            raise ZoneEditError(f"no {what}{detail} at {owner} in zone {z.origin}")
        left = [rr for rr in rrs if not any(rr is g for g in gone)]
        if owner == z.origin and not any(rr.rtype == _NS for rr in left):
            raise ZoneEditError(f"zone {z.origin} must keep at least one NS record")
        trial = _Zone(z.origin, {o: list(r) for o, r in z.records.items()})
        trial.records[owner] = left
        self._commit(z, trial)
        return len(gone)

    def replace_zone(self, origin: str, text: str) -> None:
        """Replace a whole zone with ``text``; the serial still increases."""
        z = self._zone(origin)
        trial = self._build(z.origin, text)
        self._commit(z, trial)

    # --- internals --------------------------------------------------------

    def _zone(self, zone: str) -> _Zone:
        z = self._zones.get(fqdn(zone))
        if z is None:
            served = ", ".join(self._zones) or "none"
            raise ZoneEditError(f"this server has no zone {fqdn(zone)} (it serves: {served})")
        return z

    @staticmethod
    def _absolute(origin: str, name: str) -> str:
        name = name.strip()
        if name in ("", "@"):
            return origin
        if name.endswith("."):
            return fqdn(name)
        return fqdn(f"{name}.{origin}")

    def _parse(self, origin: str, text: str) -> list[tuple[int, dnslib.RR]]:
        """(line, record) for each record of ``text``, checked to belong in the zone."""
        rrs = parse_zone_lines(origin, text, self.default_ttl)
        for line, rr in rrs:
            owner = _owner(rr)
            if not _within(owner, origin):
                raise ZoneSyntaxError(
                    line,
                    1,
                    f"{owner} is outside the zone {origin} (a zone holds only names ending in it)",
                )
            if rr.rtype == _SOA and owner != origin:
                raise ZoneSyntaxError(
                    line, 1, f"an SOA record belongs at the zone's apex {origin}, not at {owner}"
                )
            if rr.rtype == QTYPE.TXT:
                # RFC 1035 §3.3.14: no character-string is longer than 255 bytes.
                rr.rdata = dnslib.TXT(split_txt(bytes(s) for s in rr.rdata.data))
        return rrs

    def _build(self, origin: str, text: str) -> _Zone:
        text = split_long_strings(text)
        rrs = self._parse(origin, text)
        zone = _Zone(origin)
        for _, rr in rrs:
            zone.insert(rr)
        self._check(zone, rrs)
        self._synthesise(zone)
        zone.reindex()
        return zone

    def _check(self, zone: _Zone, new: list[tuple[int, dnslib.RR]]) -> None:
        def line(owner: str) -> int:
            # The first new record at that name is what broke the rule.
            return next((n for n, rr in new if _owner(rr) == owner), 1)

        if any(rr.rtype == _CNAME for rr in zone.records.get(zone.origin, [])):
            raise ZoneSyntaxError(
                line(zone.origin),
                1,
                f"the zone's apex {zone.origin} cannot be a CNAME (it holds the SOA and NS)",
            )
        # RFC 1034 §3.6.2 / RFC 2181 §10.1: a name with a CNAME has no other
        # data, and only one CNAME.
        for owner, rrs in zone.records.items():
            cnames = [rr for rr in rrs if rr.rtype == _CNAME]
            if not cnames or len(rrs) == 1:
                continue
            others = sorted({str(QTYPE.get(rr.rtype)) for rr in rrs if rr.rtype != _CNAME})
            problem = (
                f"{owner} has a CNAME and other data ({', '.join(others)}): "
                "a name with a CNAME can have no other records"
                if others
                else f"{owner} has more than one CNAME"
            )
            raise ZoneSyntaxError(line(owner), 1, problem)

    def _synthesise(self, zone: _Zone) -> None:
        origin = zone.origin
        apex = zone.records.setdefault(origin, [])
        ns_name = fqdn(f"{self.server_label}.{origin}")
        if not any(rr.rtype == _NS for rr in apex):
            apex.append(dnslib.RR(origin, _NS, ttl=self.default_ttl, rdata=dnslib.NS(ns_name)))
            glue = zone.records.get(ns_name, [])
            if self.server_address is not None and not glue:
                zone.records[ns_name] = [
                    dnslib.RR(
                        ns_name,
                        QTYPE.A,
                        ttl=self.default_ttl,
                        rdata=dnslib.A(str(self.server_address)),
                    )
                ]
        if not any(rr.rtype == _SOA for rr in apex):
            primary = next(str(rr.rdata.label) for rr in apex if rr.rtype == _NS)
            soa = dnslib.SOA(primary, fqdn(f"hostmaster.{origin}"), (1, *_SOA_TIMERS))
            apex.insert(0, dnslib.RR(origin, _SOA, ttl=self.default_ttl, rdata=soa))

    def _commit(self, old: _Zone, new: _Zone) -> None:
        """Install ``new`` in place of ``old`` with a larger serial."""
        before = old.serial()
        self._synthesise(new)
        new.reindex()
        after = new.serial()
        # RFC 1982 §3.2: after > before in serial arithmetic, else bump.
        if not 0 < (after - before) % (1 << 32) < (1 << 31):
            new.set_serial(before + 1)
        self._zones[old.origin] = new


def _matches(rr: dnslib.RR, data: str) -> bool:
    wanted = data.strip()
    if rr.rtype == QTYPE.TXT:
        joined = b"".join(bytes(s) for s in rr.rdata.data).decode("utf-8", "replace")
        if wanted.strip('"') == joined:
            return True
    text = rdata_text(rr)
    return text.lower().rstrip(".") == wanted.lower().rstrip(".")
