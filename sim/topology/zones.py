"""Zone text (RFC 1035 §5 master-file syntax) parsed with dnslib, with line numbers.

dnslib's ``ZoneParser`` parses a whole zone but its errors do not say where.
Instructors need ``file:line: problem``, so the text is cut into logical
records first (a record in parentheses may span lines, RFC 1035 §5.1) and each
is parsed on its own, keeping ``$ORIGIN`` and ``$TTL`` state between them.
"""

from __future__ import annotations

from dataclasses import dataclass

import dnslib

__all__ = ["ZoneSyntaxError", "fqdn", "parse_zone", "parse_zone_lines", "split_comment"]

DEFAULT_TTL = 300


def fqdn(name: str) -> str:
    """``qq.example`` → ``qq.example.`` (lower case)."""
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


@dataclass
class ZoneSyntaxError(ValueError):
    """A record that does not parse; ``line`` is 1-based within the zone text."""

    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def split_comment(line: str) -> tuple[str, str]:
    """``(record, comment)``: a ';' starts a comment (RFC 1035 §5.1) unless it
    is inside a quoted string (TXT records such as "v=DMARC1; p=reject" are
    full of semicolons)."""
    quoted = escaped = False
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            return line[:i], line[i:]
    return line, ""


def _strip_comment(line: str) -> str:
    return split_comment(line)[0]


def _unquoted(line: str) -> list[tuple[str, bool]]:
    """Each character with whether it stands outside a quoted string."""
    out = []
    quoted = escaped = False
    for ch in line:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        out.append((ch, not quoted or ch == '"'))
    return out


def _paren_depth(line: str) -> int:
    # Parentheses group a record over lines (RFC 1035 §5.1), but inside a
    # quoted TXT string they are just text.
    return sum((ch == "(") - (ch == ")") for ch, free in _unquoted(line) if free)


def _drop_parens(line: str) -> str:
    return "".join(" " if free and ch in "()" else ch for ch, free in _unquoted(line))


def _logical_records(text: str) -> list[tuple[int, str]]:
    """(first line number, record text) for each record, parentheses joined."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    depth = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _strip_comment(raw)
        if not pending and not line.strip():
            continue
        if not pending:
            start = number
        pending.append(line)
        depth += _paren_depth(line)
        if depth <= 0:
            joined = _drop_parens(" ".join(pending))
            # Keep a leading blank: in zone files it means "same owner as before".
            out.append((start, joined))
            pending, depth = [], 0
    if pending:
        raise ZoneSyntaxError(start, 1, "unbalanced parenthesis: '(' is never closed")
    return out


def parse_zone(origin: str, text: str, default_ttl: int = DEFAULT_TTL) -> list[dnslib.RR]:
    """Every record of a zone, owner names absolute. Raises :class:`ZoneSyntaxError`."""
    return [rr for _, rr in parse_zone_lines(origin, text, default_ttl)]


def parse_zone_lines(
    origin: str, text: str, default_ttl: int = DEFAULT_TTL
) -> list[tuple[int, dnslib.RR]]:
    """Like :func:`parse_zone`, each record with the (1-based) line it starts on,
    so that a check about a record can point at it."""
    current_origin = fqdn(origin)
    ttl = default_ttl
    last_owner = current_origin
    records: list[tuple[int, dnslib.RR]] = []
    for line_no, record in _logical_records(text):
        stripped = record.strip()
        if stripped.startswith("$"):
            directive, _, value = stripped.partition(" ")
            value = value.strip()
            if directive.upper() == "$ORIGIN" and value:
                current_origin = (
                    fqdn(value) if value.endswith(".") else fqdn(f"{value}.{current_origin}")
                )
                continue
            if directive.upper() == "$TTL" and value.isdigit():
                ttl = int(value)
                continue
            raise ZoneSyntaxError(line_no, 1, f"unsupported or malformed directive {stripped!r}")
        if record[:1].isspace():
            # RFC 1035 §5.1: a blank owner repeats the previous owner.
            record = f"{last_owner} {stripped}"
        try:
            parsed = list(dnslib.ZoneParser(record, origin=current_origin, ttl=ttl))
        except Exception as err:  # dnslib raises many kinds; each is a syntax problem
            raise ZoneSyntaxError(line_no, 1, _describe(stripped, err)) from None
        if not parsed:
            raise ZoneSyntaxError(line_no, 1, f"cannot read a record from {stripped!r}")
        for rr in parsed:
            last_owner = str(rr.rname)
            _qualify_srv_target(rr, stripped, current_origin)
            records.append((line_no, rr))
    return records


def _qualify_srv_target(rr: dnslib.RR, text: str, origin: str) -> None:
    # dnslib's SRV.fromZone ignores the origin, so a relative target such as
    # "smtp" would come out as "smtp." (RFC 1035 §5.1: a name without a final
    # dot is relative to the origin, as for MX and CNAME targets).
    if rr.rtype != dnslib.QTYPE.SRV:
        return
    target = text.split()[-1]
    if not target.endswith("."):
        rr.rdata.target = dnslib.DNSLabel(f"{target}.{origin}")


#: What the data of each record type looks like (RFC 1035 §3.3, RFC 3596),
#: so an instructor reads "expects an IPv4 address" instead of dnslib's
#: internals.
_EXPECTS = {
    "A": "an IPv4 address, e.g. 203.0.113.25",
    "AAAA": "an IPv6 address, e.g. 2001:db8::25",
    "MX": "a preference and a host name, e.g. 10 mx.example.",
    "NS": "a host name, e.g. ns.example.",
    "CNAME": "a host name, e.g. www.example.",
    "PTR": "a host name, e.g. mx.example.",
    "TXT": 'one or more quoted strings, e.g. "v=spf1 mx -all"',
    "SOA": "mname rname serial refresh retry expire minimum",
}


def _describe(record: str, err: Exception) -> str:
    words = record.split()
    known = set(dnslib.QTYPE.forward.values())
    rtype = next((w.upper() for w in words[1:] if w.upper() in known), None)
    if rtype is None:
        return f"no known record type in {record!r} (A, AAAA, MX, TXT, PTR, CNAME, NS, SOA...)"
    expects = _EXPECTS.get(rtype)
    if expects is not None:
        return f"bad {rtype} record {record!r}: {rtype} data is {expects}"
    detail = str(err).strip() or type(err).__name__
    return f"bad {rtype} record {record!r}: {detail}"
