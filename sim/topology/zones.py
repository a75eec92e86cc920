"""Zone text (RFC 1035 §5 master-file syntax) parsed with dnslib, with line numbers.

dnslib's ``ZoneParser`` parses a whole zone but its errors do not say where.
Instructors need ``file:line: problem``, so the text is cut into logical
records first (a record in parentheses may span lines, RFC 1035 §5.1) and each
is parsed on its own, keeping ``$ORIGIN`` and ``$TTL`` state between them.
"""

from __future__ import annotations

from collections.abc import Sequence

import dnslib

from sim.fastclass import dataclass

__all__ = [
    "ZoneSyntaxError",
    "fqdn",
    "name_labels",
    "name_text",
    "parse_zone",
    "parse_zone_lines",
    "split_comment",
]

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
        tokens = _tokens(record)
        txt_at = _txt_type_index(tokens)
        if txt_at is not None:
            # dnslib reads TXT escapes as octal: it parses the record without
            # its data, which _decode_txt reads by RFC 1035's rules.
            record = " ".join(t.raw for t in tokens[: txt_at + 1]) + ' ""'
        try:
            parsed = list(dnslib.ZoneParser(record, origin=current_origin, ttl=ttl))
        except Exception as err:  # dnslib raises many kinds; each is a syntax problem
            raise ZoneSyntaxError(line_no, 1, _describe(stripped, err)) from None
        if not parsed:
            raise ZoneSyntaxError(line_no, 1, f"cannot read a record from {stripped!r}")
        for rr in parsed:
            _decode_owner(rr, tokens, current_origin)
            last_owner = _owner_text(rr.rname)
            _qualify_srv_target(rr, stripped, current_origin)
            if rr.rtype == dnslib.QTYPE.TXT and txt_at is not None:
                _decode_txt(rr, tokens[txt_at + 1 :], line_no, stripped)
            records.append((line_no, rr))
    return records


# --- RFC 1035 §5.1 escapes ---------------------------------------------------------
#
# "\X" stands for X itself and "\DDD" for the octet whose value is the
# *decimal* number DDD. dnslib reads \DDD in TXT data as octal ("\065" came
# out as "5" instead of "A") and keeps escapes in owner names as text, so a
# name with "\032" (a space) never matched the query for it. The text is
# tokenised here and both are decoded by the RFC's rules.


@dataclass(frozen=True)
class _Token:
    raw: str  # as written, quotes and escapes included
    quoted: bool


def _tokens(record: str) -> list[_Token]:
    """The record's words: quoted strings and bare words, escapes kept."""
    out: list[_Token] = []
    i, n = 0, len(record)
    while i < n:
        if record[i].isspace():
            i += 1
            continue
        start, quoted = i, record[i] == '"'
        i += 1 if quoted else 0
        while i < n:
            ch = record[i]
            if ch == "\\":
                i += 2
                continue
            if (quoted and ch == '"') or (not quoted and ch.isspace()):
                break
            i += 1
        if quoted:
            i += 1  # the closing quote
        out.append(_Token(record[start:i], quoted))
    return out


def _unescape(text: str) -> bytes:
    """RFC 1035 §5.1: ``\\DDD`` is a decimal octet, ``\\X`` is X."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            digits = text[i + 1 : i + 4]
            if len(digits) == 3 and digits.isdigit() and int(digits) <= 255:
                out.append(int(digits))
                i += 4
                continue
            out += text[i + 1].encode("utf-8")
            i += 2
            continue
        out += ch.encode("utf-8")
        i += 1
    return bytes(out)


def name_labels(text: str) -> list[bytes]:
    """A domain name as written (escapes allowed) → its labels; a final dot
    means the root. Dots escaped as ``\\.`` stay inside a label."""
    labels: list[bytes] = []
    current = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current += text[i : i + 2]
            i += 2
            continue
        if ch == ".":
            labels.append(_unescape(current))
            current = ""
        else:
            current += ch
        i += 1
    if current:
        labels.append(_unescape(current))
    return labels


def name_text(labels: Sequence[bytes]) -> str:
    """Labels → the name as the lab writes names everywhere (dnslib's form,
    with a final dot): octets outside printable ASCII, the space included,
    as \\DDD in decimal (RFC 1035 §5.1)."""
    return str(dnslib.DNSLabel(list(labels)))


def _owner_text(label: dnslib.DNSLabel) -> str:
    """A name as zone text that reads back as exactly these labels (a blank
    owner on the next line repeats it): every special octet escaped."""
    parts = []
    for raw in label.label:
        parts.append(
            "".join(
                chr(b) if 0x21 <= b <= 0x7E and chr(b) not in '.\\";()@$' else f"\\{b:03d}"
                for b in raw
            )
        )
    return ".".join(parts) + "."


def _decode_owner(rr: dnslib.RR, tokens: list[_Token], origin: str) -> None:
    owner = tokens[0].raw if tokens else ""
    if "\\" not in owner or owner == "@":
        return
    labels = name_labels(owner)
    if not owner.endswith(".") or owner.endswith("\\."):
        labels += [lab for lab in dnslib.DNSLabel(origin).label]
    rr.rname = dnslib.DNSLabel(labels)


def _txt_type_index(tokens: list[_Token]) -> int | None:
    """Where the type TXT stands (after the owner and an optional TTL and
    class), or None for another type."""
    for i, token in enumerate(tokens[1:4], start=1):
        word = token.raw.upper()
        if token.quoted:
            return None
        if word == "TXT":
            return i
        if not (word.isdigit() or word in ("IN", "CH", "HS", "CS")):
            return None
    return None


def _decode_txt(rr: dnslib.RR, data: list[_Token], line_no: int, record: str) -> None:
    """The TXT data words (after the type) decoded as RFC 1035 §5.1 says."""
    strings = [_unescape(t.raw[1:-1] if t.quoted else t.raw) for t in data]
    if not strings:
        # RFC 1035 §3.3.14: TXT-DATA is one or more <character-string>s.
        raise ZoneSyntaxError(
            line_no, 1, f"bad TXT record {record!r}: TXT data is {_EXPECTS['TXT']}"
        )
    # RFC 1035 §3.3: a character-string holds at most 255 octets; a longer
    # one is cut into several, which readers join (RFC 7208 §3.3, RFC 6376
    # §3.6.2.2), as the zone store does with text it is given.
    rr.rdata.data = [s[i : i + 255] for s in strings for i in range(0, max(len(s), 1), 255)]


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
