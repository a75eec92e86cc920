"""The value formats of a topology file: addresses, networks, names, ports,
durations, sizes... each with how it is written, its JSON Schema and the
function that reads it (a :class:`~sim.spec.kinds.ValueFormat`).

The table of the format (:mod:`sim.topology.schema`) uses them as
``fmt("IPv4 address")``; a parser raises :class:`ValueError` with a sentence
in the words of :mod:`sim.spec.words`, which the spec engine reports at the
value's line and column.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from sim.spec.kinds import Scalar, ValueFormat, parse_boolean, parse_seconds
from sim.spec.words import expected

__all__ = ["FORMATS", "fmt"]


def _expect(what: str, value: object, hint: str = "") -> ValueError:
    return ValueError(expected(what, value, hint))


def _text(what: str, pattern: str | None = None, nonempty: bool = False) -> Callable[[object], str]:
    compiled = re.compile(pattern) if pattern else None

    def parse(value: object) -> str:
        if not isinstance(value, str):
            # YAML reads 1234, 1.5, true and 2024-01-01 as other types; quoting keeps text.
            quotable = isinstance(value, int | float) or hasattr(value, "isoformat")
            raise _expect(what, value, "quote it to make it text" if quotable else "")
        if nonempty and not value.strip():
            raise ValueError(f"expected {what}, got empty text")
        if compiled is not None and not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return parse


def _why(err: ValueError) -> str:
    """ipaddress says precisely what is wrong (``Octet 300 (> 255) not permitted``)."""
    detail = str(err).strip()
    return f": {detail[0].lower()}{detail[1:]}" if detail else ""


def _ipv4(value: object) -> IPv4Address:
    if not isinstance(value, str):
        raise _expect("an IPv4 address such as 192.0.2.25", value)
    try:
        return IPv4Address(value)
    except ValueError as err:
        raise ValueError(
            f"{value!r} is not an IPv4 address such as 192.0.2.25{_why(err)}"
        ) from None


def _dnsbl_code(value: object) -> IPv4Address:
    address = _ipv4(value)
    # RFC 5782 §2.1: answers are in 127.0.0.0/8 so that they can never be
    # mistaken for a real host; 127.0.0.1 is reserved as an error indicator.
    if address not in IPv4Network("127.0.0.0/8") or address == IPv4Address("127.0.0.1"):
        raise ValueError(
            f"{value!r} is not a DNSBL answer code: use 127.0.0.2 to 127.255.255.255 "
            "(RFC 5782 §2.1; 127.0.0.1 is reserved)"
        )
    return address


_PREFIX = re.compile(r"[^/]*/(?:3[0-2]|[12]?[0-9])")


def _check_prefix(value: str) -> None:
    # ipaddress also takes /08 and netmasks (/255.0.0.0); a topology uses the
    # one spelling students see everywhere, and the JSON Schema checks the same.
    if "/" in value and not _PREFIX.fullmatch(value):
        raise ValueError(
            f"{value!r}: write the prefix length as a number from 0 to 32, such as /24"
        )


def _ipv4_network(value: object) -> IPv4Network:
    if not isinstance(value, str):
        raise _expect("an IPv4 network such as 100.64.0.0/10 or an address", value)
    text = value
    _check_prefix(text)
    try:
        return IPv4Network(text)
    except ValueError as err:
        if "host bits set" in str(err):
            wider = IPv4Network(text, strict=False)
            raise ValueError(f"{value!r} has host bits set: did you mean {wider}?") from None
        raise ValueError(
            f"{value!r} is not an IPv4 network such as 100.64.0.0/10 or an address{_why(err)}"
        ) from None


def _ipv4_interface(value: object) -> IPv4Interface:
    if not isinstance(value, str):
        raise _expect("an address with its prefix length such as 100.64.10.20/24", value)
    text = value
    if "/" not in text:
        raise ValueError(
            f"{value!r} has no prefix length: write the host's network too, such as {text}/24"
        )
    _check_prefix(text)
    try:
        return IPv4Interface(text)
    except ValueError as err:
        raise ValueError(
            f"{value!r} is not an address with its prefix length such as 100.64.10.20/24{_why(err)}"
        ) from None


def _positive_number(value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _expect("a positive number", value)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"expected a positive number, got {value!r}")
    return float(value)


def _score(value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise _expect("a number", value)
    return float(value)


def _port(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _expect("a port number (1-65535)", value)
    if not 1 <= value <= 65535:
        raise ValueError(f"{value} is not a port number (1-65535)")
    return value


# 1 to 65535 without leading zeros, written so that JSON Schema can use it too.
_PORT_NUMBER = (
    r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
)
_PORT_RANGE_TEXT = rf"\s*({_PORT_NUMBER})\s*(?:[-:]\s*({_PORT_NUMBER})\s*)?"
_PORT_RANGE = re.compile(_PORT_RANGE_TEXT, re.ASCII)
_LOOSE_RANGE = re.compile(r"\s*([0-9]+)\s*(?:[-:]\s*([0-9]+)\s*)?")


def _port_range(value: object) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        port = _port(value)
        return (port, port)
    if not isinstance(value, str):
        raise _expect("a port such as 25 or a range such as 1024-65535", value)
    match = _PORT_RANGE.fullmatch(value)
    if not match:
        loose = _LOOSE_RANGE.fullmatch(value)
        for number in loose.groups() if loose else ():
            if number is not None and not re.fullmatch(_PORT_NUMBER, number):
                raise ValueError(f"{number} in {value!r} is not a port number (1-65535)")
        raise ValueError(f"{value!r} is not a port such as 25 or a range such as 1024-65535")
    low = int(match.group(1))
    high = int(match.group(2) or low)
    if low > high:
        raise ValueError(f"{value!r} is an empty range: write the lower port first")
    return (low, high)


_SIZE = re.compile(r"\s*([0-9]+)\s*([KMG]?)\s*", re.IGNORECASE | re.ASCII)
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def _size(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"a size cannot be negative: {value}")
        return value
    if not isinstance(value, str):
        raise _expect("a size in bytes such as 10485760, 512K or 10M", value)
    match = _SIZE.fullmatch(value)
    if not match:
        raise ValueError(f"{value!r} is not a size such as 10485760, 512K or 10M")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]


_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_DOMAIN = rf"(?=[^/]{{1,254}}$){_LABEL}(?:\.{_LABEL})*\.?"
_LOCAL_PART = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_NAME = r"[A-Za-z][A-Za-z0-9_-]*"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_CLIENT = rf"(?:{_NAME}|{_IPV4}(?:/(?:3[0-2]|[12]?[0-9]))?)"


def _anchored(pattern: str) -> str:
    return f"^{pattern}$"


#: Every scalar value format a topology file uses, by name.
FORMATS: dict[str, ValueFormat] = {
    fmt.name: fmt
    for fmt in (
        ValueFormat(
            "text",
            "any text; quote it if it contains `: ` or starts with a YAML indicator",
            '"residential customers may not send on port 25"',
            {"type": "string"},
            _text("text"),
            expected="text",
        ),
        ValueFormat(
            "zone text",
            "DNS records in zone-file syntax (RFC 1035 §5), usually a `|` block; names "
            "without a final dot are relative to the zone's origin, `@` is the origin",
            "|\n  @   MX 10 mx\n  mx  A  203.0.113.25",
            {"type": "string"},
            _text("zone text"),
            expected="zone text",
        ),
        ValueFormat(
            "identifier",
            "a letter, then letters, digits, `-` or `_`",
            "home-isp",
            {"type": "string", "pattern": _anchored(_NAME)},
            _text("an identifier (a letter, then letters, digits, - or _)", _NAME),
        ),
        ValueFormat(
            "node name",
            "the name of a node under `nodes` (a letter, then letters, digits, `-` or `_`)",
            "mx-qq",
            {"type": "string", "pattern": _anchored(_NAME)},
            _text("a node name (a letter, then letters, digits, - or _)", _NAME),
        ),
        ValueFormat(
            "domain name",
            "a DNS name; a final dot is optional and case does not matter",
            "qq.example",
            {"type": "string", "pattern": _anchored(_DOMAIN)},
            _text("a domain name such as qq.example", _DOMAIN),
            normalise=True,
        ),
        ValueFormat(
            "selector",
            "a DKIM selector (RFC 6376 §3.1): one or more DNS labels",
            "mail2026",
            {"type": "string", "pattern": _anchored(_DOMAIN)},
            _text("a DKIM selector such as mail2026", _DOMAIN),
        ),
        ValueFormat(
            "mail address",
            "`local-part@domain`",
            "alice@home.example",
            {"type": "string", "pattern": _anchored(f"{_LOCAL_PART}@{_DOMAIN}")},
            _text("a mail address such as alice@home.example", f"{_LOCAL_PART}@{_DOMAIN}"),
        ),
        ValueFormat(
            "local part",
            "the part of a mail address before the `@`",
            "bob",
            {"type": "string", "pattern": _anchored(_LOCAL_PART)},
            _text("a local part (the name before @) such as bob", _LOCAL_PART),
        ),
        ValueFormat(
            "client",
            "a node name, or an IPv4 address or network (CIDR) a client connects from",
            "mx2",
            {"type": "string", "pattern": _anchored(_CLIENT)},
            _text("a node name or an IPv4 address or network such as 192.0.2.0/24", _CLIENT),
        ),
        ValueFormat(
            "password",
            "non-empty text; quote it if it looks like a number",
            '"s3cret"',
            {"type": "string", "minLength": 1},
            _text("a password (non-empty text)", nonempty=True),
        ),
        ValueFormat(
            "IPv4 address",
            "dotted quad, no prefix length",
            "198.51.100.53",
            {"type": "string", "pattern": _anchored(_IPV4)},
            _ipv4,
        ),
        ValueFormat(
            "IPv4 network",
            "CIDR (the address part must be the network's first address) or one address",
            "100.64.0.0/10",
            {"type": "string", "pattern": _anchored(rf"{_IPV4}(?:/(?:3[0-2]|[12]?[0-9]))?")},
            _ipv4_network,
        ),
        ValueFormat(
            "interface address",
            "the host's address and its network's prefix length",
            "100.64.10.20/24",
            {"type": "string", "pattern": _anchored(rf"{_IPV4}/(?:3[0-2]|[12]?[0-9])")},
            _ipv4_interface,
        ),
        ValueFormat(
            "DNSBL code",
            "an IPv4 address in 127.0.0.0/8 other than 127.0.0.1 (RFC 5782 §2.1)",
            "127.0.0.11",
            {
                "type": "string",
                "pattern": _anchored(rf"127(?:\.{_OCTET}){{3}}"),
                "not": {"const": "127.0.0.1"},
            },
            _dnsbl_code,
        ),
        ValueFormat(
            "return code",
            "a DNSBL's answer for a listed address, 127.0.0.x other than 127.0.0.1 "
            "(RFC 5782 §2.1), as a key",
            "127.0.0.10",
            {
                "type": "string",
                "pattern": _anchored(rf"127(?:\.{_OCTET}){{3}}"),
                "not": {"const": "127.0.0.1"},
            },
            lambda value: str(_dnsbl_code(value)),
        ),
        ValueFormat(
            "duration",
            "seconds, or a number with a unit `s`, `m`, `h`, `d` or `w` (lab time)",
            "5m",
            {
                "anyOf": [
                    {"type": "number", "minimum": 0},
                    {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[smhdw]?\s*$"},
                ]
            },
            parse_seconds,
        ),
        ValueFormat(
            "positive number",
            "a number greater than 0",
            "60",
            {"type": "number", "exclusiveMinimum": 0},
            _positive_number,
        ),
        ValueFormat(
            "score",
            "a number, negative to subtract (a check result's weight, a threshold)",
            "2.5",
            {"type": "number"},
            _score,
        ),
        ValueFormat(
            "port",
            "a TCP or UDP port number, 1 to 65535",
            "587",
            {"type": "integer", "minimum": 1, "maximum": 65535},
            _port,
        ),
        ValueFormat(
            "port range",
            "one port, or a range `low-high` (or `low:high`, as iptables writes it)",
            "1024-65535",
            {
                "anyOf": [
                    {"type": "integer", "minimum": 1, "maximum": 65535},
                    {"type": "string", "pattern": _anchored(_PORT_RANGE_TEXT)},
                ]
            },
            _port_range,
        ),
        ValueFormat(
            "size",
            "bytes, or a number with `K`, `M` or `G` (powers of 1024)",
            "10M",
            {
                "anyOf": [
                    {"type": "integer", "minimum": 0},
                    {"type": "string", "pattern": r"^\s*\d+\s*[KMGkmg]?\s*$"},
                ]
            },
            _size,
        ),
        ValueFormat(
            "boolean",
            "`true` or `false`",
            "true",
            {"type": "boolean"},
            parse_boolean,
        ),
    )
}


def fmt(name: str) -> Scalar:
    """A value written in the format ``name`` (a key of :data:`FORMATS`)."""
    return Scalar(FORMATS[name])
