"""The topology file format, described once.

One table, :data:`TOPOLOGY`, names every key of a topology file with its type,
default, allowed values and a one-sentence description. Everything else is
derived from it, so nothing can drift apart:

* the structural loader (:mod:`sim.topology.loader`) walks a YAML document
  along the table: unknown keys, wrong types, missing keys, bad values;
* :func:`json_schema` renders JSON Schema (draft 2020-12) for editors:
  ``docs/topology.schema.json``;
* :func:`render_reference` renders the Markdown reference of every key:
  ``docs/topology-reference.md``.

``python -m sim.topology.schema`` rewrites both files (``--check`` only
compares). The table is made of a few spec kinds: :class:`Scalar` (a value
format from :data:`FORMATS`), :class:`Choice`, :class:`ListOf`,
:class:`MapOf`, :class:`Record` (a mapping with fixed keys, usually built into
a :mod:`sim.topology.model` class) and :class:`Either`; records carry
:class:`OnlyWhen`, :class:`RequiredWhen` and :class:`Together` rules that tie
one key to another.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any, get_args

import sim.topology.model as model
from sim.clock import parse_duration
from sim.spec.words import describe_value, expected
from sim.topology.model import CheckPolicy


def _checks() -> Any:
    """The receiving checks (:mod:`sim.services.checks`): plugins of the
    services layer whose names, results and actions this format lists. The
    topology layer sits below the services (docs/architecture.md), so the
    registry is found by name when the schema is built, not imported."""
    return importlib.import_module("sim.services.checks")


__all__ = [
    "FORMATS",
    "TOPOLOGY",
    "Choice",
    "Either",
    "Field",
    "ListOf",
    "MapOf",
    "OnlyWhen",
    "Record",
    "RequiredWhen",
    "Scalar",
    "Spec",
    "Together",
    "ValueFormat",
    "describe_value",
    "json_schema",
    "main",
    "records",
    "render_reference",
    "render_schema",
]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


# -- value formats ----------------------------------------------------------------


@dataclass(frozen=True)
class ValueFormat:
    """One kind of scalar value: how it is written, checked and converted.

    ``parse`` receives a plain YAML scalar (str, int, float, bool) and returns
    the converted value or raises :class:`ValueError` with a sentence that
    says what was expected. ``schema`` is the JSON Schema of the same format.
    """

    name: str
    written: str
    example: str
    schema: dict[str, Any]
    parse: Callable[[object], object]
    #: Lower-case and drop a trailing dot (DNS names compare case-insensitively,
    #: RFC 4343); applied after parsing, so that ``QQ.example.`` is ``qq.example``.
    normalise: bool = False


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


def _duration(value: object) -> float:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise _expect("a duration such as 30s, 5m, 2h or 5d", value)
    seconds = parse_duration(value)
    if not math.isfinite(seconds):
        raise ValueError(f"expected a duration such as 30s, 5m, 2h or 5d, got {value!r}")
    return seconds


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


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        hint = "YAML 1.2 reads only true and false as booleans" if isinstance(value, str) else ""
        raise _expect("true or false", value, hint)
    return value


_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_DOMAIN = rf"(?=[^/]{{1,254}}$){_LABEL}(?:\.{_LABEL})*\.?"
_LOCAL_PART = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_NAME = r"[A-Za-z][A-Za-z0-9_-]*"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"


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
        ),
        ValueFormat(
            "zone text",
            "DNS records in zone-file syntax (RFC 1035 §5), usually a `|` block; names "
            "without a final dot are relative to the zone's origin, `@` is the origin",
            "|\n  @   MX 10 mx\n  mx  A  203.0.113.25",
            {"type": "string"},
            _text("zone text"),
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
            _duration,
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
            _boolean,
        ),
    )
}


# -- spec kinds ---------------------------------------------------------------------


@dataclass(frozen=True)
class Scalar:
    """A scalar value in one of :data:`FORMATS`."""

    format: str


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of words."""

    values: tuple[str, ...]


@dataclass(frozen=True)
class ListOf:
    """A YAML sequence; built into a tuple."""

    item: Spec
    min_items: int = 0
    max_items: int | None = None
    unique: bool = False


@dataclass(frozen=True)
class MapOf:
    """A mapping with keys chosen by the author; built into a tuple of
    ``(key, value)`` pairs, or, with ``name_field``, a tuple of records whose
    ``name_field`` is the key (nodes)."""

    key: Scalar
    value: Spec
    min_items: int = 0
    name_field: str | None = None


@dataclass(frozen=True)
class Either:
    """One of several shapes, told apart by the YAML node (a list or a mapping)."""

    options: tuple[Spec, ...]
    build: Callable[[Any], Any] | None = None
    #: What a message says is expected (``a list of check names or ...``).
    noun: str = ""


@dataclass(frozen=True)
class Field:
    """One key of a record. ``default`` is what an absent key means, written as
    in YAML (``"30s"``, ``[587, 465]``); ``None`` means no default."""

    key: str
    spec: Spec
    doc: str
    required: bool = False
    default: Any = None


@dataclass(frozen=True)
class OnlyWhen:
    """``key`` may appear only when ``other`` is one of ``values``."""

    key: str
    other: str
    values: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class RequiredWhen:
    """``key`` must appear when ``other`` is one of ``values``."""

    key: str
    other: str
    values: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class Together:
    """``keys`` appear all together or not at all."""

    keys: tuple[str, ...]
    why: str


Rule = OnlyWhen | RequiredWhen | Together


@dataclass(frozen=True)
class Record:
    """A mapping with a fixed set of keys; ``model`` builds the result."""

    name: str
    doc: str
    fields: tuple[Field, ...]
    rules: tuple[Rule, ...] = ()
    model: Callable[..., Any] | None = None

    def field(self, key: str) -> Field | None:
        for candidate in self.fields:
            if candidate.key == key:
                return candidate
        return None

    def keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.fields)


Spec = Scalar | Choice | ListOf | MapOf | Record | Either


# -- the table ----------------------------------------------------------------------

_TEXT = Scalar("text")
_DOMAIN_NAME = Scalar("domain name")
_NODE = Scalar("node name")
_DURATION_SPEC = Scalar("duration")
_PASSWORD = Scalar("password")

FIREWALL_RULE = Record(
    "firewall-rule",
    "One rule of a router's forwarding firewall. Rules are tried in order and the "
    "first that matches decides; a packet no rule matches is accepted. Only the "
    "first packet of a connection is judged, so replies always pass.",
    (
        Field(
            "action",
            Choice(("accept", "drop", "reject")),
            "What happens to a matching "
            "packet: `drop` makes the client wait for a time-out, `reject` refuses at once.",
            required=True,
        ),
        Field(
            "proto",
            Choice(("tcp", "udp", "icmp", "any")),
            "Protocol the rule matches.",
            default="any",
        ),
        Field("src", Scalar("IPv4 network"), "Source network the rule matches (any if absent)."),
        Field(
            "dst", Scalar("IPv4 network"), "Destination network the rule matches (any if absent)."
        ),
        Field(
            "dport",
            Scalar("port range"),
            "Destination port or range the rule matches (any if absent).",
        ),
        Field(
            "direction",
            Choice(("in", "out", "any")),
            "`out`: from the router's own LANs towards its links; `in`: the reverse; "
            "`any`: both, and transit.",
            default="any",
        ),
        Field(
            "reject_with",
            Choice(("tcp-reset", "icmp-port-unreachable", "icmp-admin-prohibited")),
            "How a `reject` answers: a TCP reset or port-unreachable show as "
            '"connection refused", admin-prohibited as "no route to host".',
            default="tcp-reset",
        ),
        Field("note", _TEXT, "Why the rule exists; shown in traces when the rule decides."),
    ),
    rules=(
        OnlyWhen("dport", "proto", ("tcp", "udp"), "only TCP and UDP have ports"),
        OnlyWhen("reject_with", "action", ("reject",), "only a reject sends an answer"),
    ),
    model=model.FirewallRule,
)

DNS_SILENCE = Record(
    "dns-silence",
    "A question the server never answers: the asker times out (a broken or "
    "overloaded authoritative server; SPF and DMARC turn it into temperror).",
    (
        Field("name", _DOMAIN_NAME, "The name asked about.", required=True),
        Field(
            "type",
            Choice(("ANY", "A", "AAAA", "MX", "TXT", "SPF", "PTR", "CNAME", "NS", "SOA", "SRV")),
            "The record type asked for; ANY: every type.",
            default="ANY",
        ),
    ),
    model=model.DnsSilence,
)

DNS = Record(
    "dns",
    "Authoritative DNS for the named zones; the host named by `settings.resolver` "
    "also answers every lab zone for the other nodes.",
    (
        Field(
            "zones",
            ListOf(_DOMAIN_NAME, unique=True),
            "Zones this server is authoritative for; each must be defined under `zones`.",
            default=[],
        ),
        Field(
            "unanswered",
            ListOf(DNS_SILENCE),
            "Questions this server never answers (names in its zones), e.g. "
            "`[{name: slow.example, type: TXT}]`: a DNS time-out on demand.",
            default=[],
        ),
    ),
    model=model.DnsService,
)

DNSBL_LISTING = Record(
    "dnsbl-listing",
    "A range of addresses a blocklist lists.",
    (
        Field("net", Scalar("IPv4 network"), "The listed addresses.", required=True),
        Field(
            "code",
            Scalar("DNSBL code"),
            "The A record answered for a listed address (what kind of listing it is).",
            default="127.0.0.2",
        ),
        Field("reason", _TEXT, "The TXT record answered for a listed address."),
    ),
    model=model.DnsblListing,
)

DNSBL = Record(
    "dnsbl",
    "A DNS blocklist (RFC 5782): answers queries for reversed-octet names under its zone.",
    (
        Field(
            "zone", _DOMAIN_NAME, "The blocklist's zone, such as zen.dnsbl.example.", required=True
        ),
        Field("listed", ListOf(DNSBL_LISTING), "The listed ranges.", default=[]),
    ),
    model=model.DnsblService,
)


def _mx_checks() -> Record:
    """``mx.checks`` in mapping form: one key per registered check
    (sim.services.checks), with the actions its module allows."""
    return Record(
        "mx-checks",
        "Which checks an mx runs and what a failure costs: `reject` (5xx), `defer` "
        "(4xx, try later), `junk` (accept into the junk folder), `header` (only note it "
        "in Authentication-Results) or, for dmarc, `policy` (what the domain publishes).",
        tuple(
            Field(
                check.name,
                Choice(check.actions),
                f"{check.doc} In list form it costs `{check.default}`.",
            )
            for check in _checks().listed()
        ),
    )


MX_CHECKS = _mx_checks()


def _check_policies(value: Any) -> tuple[CheckPolicy, ...]:
    """``[ptr, spf]`` → default actions; ``{ptr: defer}`` → as written."""
    if isinstance(value, dict):
        return tuple(CheckPolicy(name, action) for name, action in value.items())
    defaults = _checks().default_actions()
    return tuple(CheckPolicy(name, defaults[name]) for name in value)


def _score_weights() -> Record:
    """``mx.scoring.weights``: per check, a weight per result (and for the
    DNSBL per return code), from the checks' own vocabularies."""

    def per_check(check: Any) -> Record:
        fields = [
            Field(result, _SCORE, f"Added when {check.name} gives {result}: {meaning}.")
            for result, meaning in check.results.items()
        ]
        if check.score_keys:
            fields.append(
                Field(
                    "codes",
                    MapOf(Scalar("return code"), _SCORE),
                    f"A weight per return code of the list, instead of `listed`'s "
                    f"({check.score_keys}).",
                )
            )
        return Record(
            f"mx-score-{check.name}", f"Weights of {check.name}'s results.", tuple(fields)
        )

    return Record(
        "mx-score-weights",
        "What each check result adds to the score (a negative weight subtracts).",
        tuple(Field(check.name, per_check(check), check.doc) for check in _checks().listed()),
    )


def _flat_weights(weights: dict[str, dict[str, Any]]) -> tuple[tuple[str, str, float], ...]:
    """``{spf: {fail: 4}, dnsbl: {codes: {127.0.0.2: 6}}}`` → (check, key, weight)..."""
    flat: list[tuple[str, str, float]] = []
    for check, table in weights.items():
        for key, weight in table.items():
            if key == "codes":
                flat += [(check, str(code), float(w)) for code, w in weight]
            else:
                flat.append((check, key, float(weight)))
    return tuple(flat)


_SCORE = Scalar("score")

MX_SCORING = Record(
    "mx-scoring",
    "A scoring receiver (as rspamd or SpamAssassin in iRedMail and Mailu): every check "
    "result adds its weight to the message's score; at `junk` or more the message is filed "
    "as junk, at `reject` or more it is refused at DATA (554 5.7.1). The checks' own actions "
    "still apply; give them `header` to let the score alone decide.",
    (
        Field("junk", _SCORE, "File as junk from this score on (never, if absent)."),
        Field("reject", _SCORE, "Refuse from this score on (never, if absent)."),
        Field(
            "weights",
            Either(
                (_score_weights(),),
                build=_flat_weights,
                noun="a mapping check → {result: weight}",
            ),
            "The weights, per check and result.",
            default={},
        ),
    ),
    model=model.Scoring,
)


DMARC_REPORTS = Record(
    "dmarc-reports",
    "DMARC aggregate reports (RFC 9990) this MX mails to the `rua=` addresses of the "
    "domains whose mail it judged; needs a relay on the same host.",
    (
        Field(
            "interval",
            _DURATION_SPEC,
            "One report per policy domain this often (lab time; receivers send daily).",
            default="1d",
        ),
        Field("org_name", _TEXT, "Who reports (`org_name`); the MX's first domain if absent."),
        Field(
            "sender",
            Scalar("mail address"),
            "The reports' From: and envelope sender; `dmarc-reports@` the first domain if absent.",
        ),
    ),
    model=model.DmarcReporting,
)

MX = Record(
    "mx",
    "A receiving MTA on port 25 for `domains` (RFC 5321); never an open relay.",
    (
        Field(
            "domains",
            ListOf(_DOMAIN_NAME, min_items=1, unique=True),
            "Domains it accepts mail for; each needs an MX or A record in the lab's zones.",
            required=True,
        ),
        Field(
            "mailboxes",
            ListOf(Scalar("local part"), unique=True),
            "Local parts that exist at every one of `domains`; other recipients are "
            "refused (550 5.1.1).",
            default=[],
        ),
        Field(
            "checks",
            Either(
                (ListOf(Choice(_checks().names()), unique=True), MX_CHECKS),
                build=_check_policies,
                noun="a list of check names (such as [ptr, spf]) or a mapping check → action "
                "(such as {spf: junk})",
            ),
            "The receiving checks in order: a list of check names (each costs its "
            "default) or a mapping check → action.",
            default=[],
        ),
        Field(
            "dnsbl",
            ListOf(_DOMAIN_NAME, unique=True),
            "Blocklist zones to query; each must be served by a `dnsbl` service.",
            default=[],
        ),
        Field(
            "hostname",
            _DOMAIN_NAME,
            "The name in its greeting and Received: headers (the node's name if absent).",
        ),
        Field(
            "greylist",
            _DURATION_SPEC,
            "Defer a new (client, sender, recipient) with 450 4.7.1 until this much time "
            "has passed (no greylisting if absent).",
        ),
        Field("tls", Scalar("boolean"), "Offer STARTTLS (RFC 3207).", default=True),
        Field(
            "max_size",
            Scalar("size"),
            "Largest message accepted, announced with SIZE (RFC 1870).",
            default="10M",
        ),
        Field(
            "dmarc_discovery",
            Choice(get_args(model.DmarcDiscovery)),
            "How DMARC finds the organisational domain: RFC 9989's DNS tree walk or the "
            "older public suffix list.",
            default="treewalk",
        ),
        Field(
            "down",
            Scalar("boolean"),
            "Start with the service stopped (connections are refused), for outage labs.",
            default=False,
        ),
        Field(
            "scoring",
            MX_SCORING,
            "Combine the check results into a score with junk and reject thresholds.",
        ),
        Field(
            "forward",
            MapOf(Scalar("local part"), Scalar("mail address")),
            "Aliases whose mail the node's relay sends on, envelope sender unchanged "
            "(RFC 5321 §3.9.1): local part → address.",
            default={},
        ),
        Field("dmarc_reports", DMARC_REPORTS, "Send DMARC aggregate reports (RFC 9990)."),
    ),
    model=model.MxService,
)

SUBMISSION = Record(
    "submission",
    "A message submission agent (RFC 6409): 587 with STARTTLS, 465 with implicit TLS "
    "(RFC 8314); authenticated users' mail goes to the node's relay.",
    (
        Field(
            "users",
            MapOf(Scalar("mail address"), _PASSWORD, min_items=1),
            "Who may submit: address → password.",
            required=True,
        ),
        Field(
            "ports",
            ListOf(Scalar("port"), min_items=1, unique=True),
            "Ports to listen on; 465 speaks implicit TLS, the others STARTTLS.",
            default=[587, 465],
        ),
        Field("hostname", _DOMAIN_NAME, "The name in its greeting (the node's name if absent)."),
    ),
    model=model.SubmissionService,
)

SMARTHOST = Record(
    "smarthost",
    "Hand every message to another relay's submission service instead of delivering "
    "it to the recipient's MX.",
    (
        Field("host", _NODE, "The node that runs the submission service.", required=True),
        Field("port", Scalar("port"), "Its submission port.", default=587),
        Field("user", _TEXT, "User name for AUTH."),
        Field("password", _PASSWORD, "Password for AUTH."),
    ),
    rules=(Together(("user", "password"), "AUTH needs both"),),
    model=model.Smarthost,
)

RELAY = Record(
    "relay",
    "An outbound MTA with a queue: looks up the recipient's MX and delivers, "
    "retrying temporary failures (RFC 5321 §4.5.4.1) and bouncing the rest.",
    (
        Field(
            "retry",
            ListOf(_DURATION_SPEC, min_items=1),
            "Waits between attempts; the last repeats until `give_up`.",
            default=["5m", "30m", "2h"],
        ),
        Field(
            "give_up",
            _DURATION_SPEC,
            "Bounce a message still undelivered this long after it was queued.",
            default="5d",
        ),
        Field(
            "warn_after",
            _DURATION_SPEC,
            "Send the sender a delay notice (DSN) after this long.",
            default="4h",
        ),
        Field(
            "dkim",
            MapOf(_DOMAIN_NAME, Scalar("selector")),
            "Sign mail from these domains (RFC 6376): domain → selector; the key is "
            "published at `selector._domainkey.domain`.",
            default={},
        ),
        Field("smarthost", SMARTHOST, "Send everything through this relay instead."),
        Field(
            "hostname",
            _DOMAIN_NAME,
            "The name it gives in HELO and Received: (the node's name if absent).",
        ),
        Field(
            "dkim_publish",
            Scalar("boolean"),
            "Publish each `dkim` key in the lab DNS at start; false when a lab task asks "
            "the student to publish it.",
            default=True,
        ),
    ),
    model=model.RelayService,
)

MAILBOX = Record(
    "mailbox",
    "Mailboxes read by their owners (the MDA's side: IMAP on 143).",
    (
        Field(
            "users",
            MapOf(Scalar("local part"), _PASSWORD),
            "Mailbox owners: local part → password.",
            default={},
        ),
    ),
    model=model.MailboxService,
)

POSTFIX = Record(
    "postfix",
    "Run this host's `mx`, `submission` and `relay` with a private Postfix instance "
    "configured from their fields (mininet backend only; see docs/postfix.md).",
    (
        Field(
            "main_cf",
            MapOf(_TEXT, _TEXT),
            "main.cf settings written after the generated ones.",
            default={},
        ),
    ),
    model=model.PostfixService,
)

DOVECOT = Record(
    "dovecot",
    "Run this host's `mailbox` (IMAP, POP3), local delivery (LMTP) and the "
    "submission service's SASL with a private Dovecot (mininet backend only).",
    (),
    model=model.DovecotService,
)

SERVICES = Record(
    "services",
    "What runs on a host. Each service is a mapping of its settings (`{}` for the defaults).",
    (
        Field("dns", DNS, "An authoritative DNS server (and the lab's resolver)."),
        Field("dnsbl", DNSBL, "A DNS blocklist."),
        Field("mx", MX, "A receiving MTA on port 25."),
        Field("submission", SUBMISSION, "A submission server (587, 465)."),
        Field("relay", RELAY, "An outbound MTA with a queue."),
        Field("mailbox", MAILBOX, "Mailboxes (IMAP)."),
        Field("postfix", POSTFIX, "Postfix in place of mx, submission and relay (mininet)."),
        Field("dovecot", DOVECOT, "Dovecot in place of mailbox (mininet)."),
    ),
    model=model.Services,
)

NODE = Record(
    "node",
    "A host (one address, a gateway router, services) or a router (links, firewall).",
    (
        Field("kind", Choice(get_args(model.NodeKind)), "What the node is.", required=True),
        Field("ip", Scalar("interface address"), "The host's address on its LAN."),
        Field(
            "gateway", _NODE, "The router the host sends everything off its LAN to (hosts only)."
        ),
        Field(
            "firewall",
            ListOf(FIREWALL_RULE),
            "The router's forwarding rules, first match wins.",
            default=[],
        ),
        Field("services", SERVICES, "Services the host runs.", default={}),
        Field("title", _TEXT, "One line saying what the node stands for."),
    ),
    rules=(
        RequiredWhen("ip", "kind", ("host",), "a host needs an address"),
        OnlyWhen("ip", "kind", ("host",), "routers get their addresses from the layout"),
        OnlyWhen("gateway", "kind", ("host",), "routers reach each other through `links`"),
        OnlyWhen(
            "services", "kind", ("host",), "routers only forward packets; run services on a host"
        ),
        OnlyWhen("firewall", "kind", ("router",), "only routers forward packets"),
    ),
    model=model.Node,
)

SETTINGS = Record(
    "settings",
    "Lab-wide settings.",
    (
        Field(
            "time_scale",
            Scalar("positive number"),
            "Lab seconds per real second: 60 makes a lab minute pass in a second.",
            default=60,
        ),
        Field(
            "resolver",
            Scalar("IPv4 address"),
            "Address of the host (running `dns`) every node asks; if absent and exactly "
            "one host runs `dns`, that one.",
        ),
        Field(
            "connect_timeout",
            _DURATION_SPEC,
            "How long a client waits for a connection whose packets are dropped.",
            default="30s",
        ),
        Field(
            "outside",
            _NODE,
            "Router where the neutral outside client attaches (a real tool on the "
            "machine under `maillab up`).",
        ),
        Field(
            "skip_checks",
            ListOf(Scalar("identifier"), unique=True),
            "Meaning checks (by name, listed in this reference) this topology is exempt "
            "from: for zones broken on purpose, e.g. an MX target without an address in a "
            "troubleshooting lab or a conformance suite's data.",
            default=[],
        ),
    ),
    model=model.Settings,
)

TOPOLOGY = Record(
    "topology",
    "The top level of a topology file.",
    (
        Field(
            "name",
            Scalar("identifier"),
            "Short name used in commands and file names.",
            required=True,
        ),
        Field("title", _TEXT, "One line shown to students."),
        Field("settings", SETTINGS, "Lab-wide settings.", default={}),
        Field(
            "nodes",
            MapOf(_NODE, NODE, name_field="name"),
            "Every host and router, by name.",
            default={},
        ),
        Field(
            "links",
            ListOf(ListOf(_NODE, min_items=2, max_items=2)),
            "Router-to-router links, each a pair of router names.",
            default=[],
        ),
        Field(
            "zones",
            MapOf(_DOMAIN_NAME, Scalar("zone text")),
            "DNS zones by origin, in zone-file syntax; each must be served by a `dns` service.",
            default={},
        ),
    ),
    model=model.Topology,
)


def records(root: Record = TOPOLOGY) -> list[tuple[Record, str]]:
    """Every record of the table with the key path where it appears, depth first."""
    found: list[tuple[Record, str]] = []
    seen: set[str] = set()

    def visit(spec: Spec, where: str) -> None:
        match spec:
            case Record():
                if spec.name in seen:
                    return
                seen.add(spec.name)
                found.append((spec, where))
                for f in spec.fields:
                    visit(f.spec, f"{where}.{f.key}" if where else f.key)
            case ListOf():
                visit(spec.item, f"{where}[]")
            case MapOf():
                visit(spec.value, f"{where}.<{FORMATS[spec.key.format].name}>")
            case Either():
                for option in spec.options:
                    visit(option, where)
            case _:
                pass

    visit(root, "")
    return found


def _iter_specs(spec: Spec) -> Iterator[Spec]:
    yield spec
    match spec:
        case Record():
            for f in spec.fields:
                yield from _iter_specs(f.spec)
        case ListOf():
            yield from _iter_specs(spec.item)
        case MapOf():
            yield spec.key
            yield from _iter_specs(spec.value)
        case Either():
            for option in spec.options:
                yield from _iter_specs(option)
        case _:
            pass


# -- JSON Schema ----------------------------------------------------------------------


def _spec_schema(spec: Spec) -> dict[str, Any]:
    match spec:
        case Scalar():
            return dict(FORMATS[spec.format].schema)
        case Choice():
            return {"type": "string", "enum": list(spec.values)}
        case ListOf():
            out: dict[str, Any] = {"type": "array", "items": _spec_schema(spec.item)}
            if spec.min_items:
                out["minItems"] = spec.min_items
            if spec.max_items is not None:
                out["maxItems"] = spec.max_items
            if spec.unique:
                out["uniqueItems"] = True
            return out
        case MapOf():
            out = {
                "type": "object",
                "propertyNames": _spec_schema(spec.key),
                "additionalProperties": _spec_schema(spec.value),
            }
            if spec.min_items:
                out["minProperties"] = spec.min_items
            return out
        case Record():
            return {"$ref": f"#/$defs/{spec.name}"}
        case Either():
            return {"anyOf": [_spec_schema(option) for option in spec.options]}


def _is_present(key: str, values: tuple[str, ...], default: Any) -> dict[str, Any]:
    """JSON Schema of "``key`` is one of ``values``" (an absent key has its default)."""
    out: dict[str, Any] = {"properties": {key: {"enum": list(values)}}}
    if default not in values:
        out["required"] = [key]
    return out


def _rule_schema(record: Record, rule: Rule) -> dict[str, Any]:
    match rule:
        case OnlyWhen():
            other = record.field(rule.other)
            default = other.default if other else None
            return {
                "if": {"required": [rule.key]},
                "then": _is_present(rule.other, rule.values, default),
            }
        case RequiredWhen():
            other = record.field(rule.other)
            default = other.default if other else None
            return {
                "if": _is_present(rule.other, rule.values, default),
                "then": {"required": [rule.key]},
            }
        case Together():
            raise AssertionError("rendered as dependentRequired")


def _record_schema(record: Record) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for f in record.fields:
        prop = _spec_schema(f.spec)
        prop["description"] = f.doc
        if f.default is not None:
            prop["default"] = f.default
        properties[f.key] = prop
    out: dict[str, Any] = {
        "type": "object",
        "description": record.doc,
        "properties": properties,
        "additionalProperties": False,
    }
    required = [f.key for f in record.fields if f.required]
    if required:
        out["required"] = required
    conditions = [_rule_schema(record, r) for r in record.rules if not isinstance(r, Together)]
    if conditions:
        out["allOf"] = conditions
    together = [r for r in record.rules if isinstance(r, Together)]
    if together:
        out["dependentRequired"] = {
            key: [k for k in rule.keys if k != key] for rule in together for key in rule.keys
        }
    return out


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a topology file."""
    root = _record_schema(TOPOLOGY)
    defs = {rec.name: _record_schema(rec) for rec, _ in records() if rec is not TOPOLOGY}
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": "maillab topology",
        **root,
        "$defs": defs,
    }


def render_schema() -> str:
    """``docs/topology.schema.json``, as committed."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


# -- Markdown reference -------------------------------------------------------------


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9-]", "", name.lower().replace(" ", "-"))


def _md_type(spec: Spec) -> str:
    match spec:
        case Scalar():
            name = FORMATS[spec.format].name
            return f"[{name}](#{_slug(name)})"
        case Choice():
            return " | ".join(f"`{v}`" for v in spec.values)
        case ListOf():
            if spec.min_items == spec.max_items == 2:
                return f"pair of {_md_type(spec.item)}"
            size = f" (at least {spec.min_items})" if spec.min_items else ""
            return f"list{size} of {_md_type(spec.item)}"
        case MapOf():
            return f"mapping {_md_type(spec.key)} → {_md_type(spec.value)}"
        case Record():
            return f"[{spec.name}](#{spec.name})"
        case Either():
            return " or ".join(_md_type(option) for option in spec.options)


def _md_default(f: Field) -> str:
    if f.required:
        return "**required**"
    if f.default is None:
        return "—"
    if f.default == {} and isinstance(f.spec, Record):
        return "—"
    return f"`{_yaml_flow(f.default)}`"


def _yaml_flow(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_flow(v)}" for k, v in value.items()) + "}"
    return str(value)


def _md_rule(rule: Rule) -> str:
    match rule:
        case OnlyWhen():
            values = " or ".join(f"`{v}`" for v in rule.values)
            return f"`{rule.key}` only when `{rule.other}` is {values}: {rule.why}."
        case RequiredWhen():
            values = " or ".join(f"`{v}`" for v in rule.values)
            return f"`{rule.key}` is required when `{rule.other}` is {values}: {rule.why}."
        case Together():
            keys = " and ".join(f"`{k}`" for k in rule.keys)
            return f"{keys} go together: {rule.why}."


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


EXAMPLE = """\
name: home-isp
title: Sending from a home connection
settings: {time_scale: 60, resolver: 198.51.100.53}
nodes:
  laptop:   {kind: host, ip: 100.64.10.20/24, gateway: isp}
  isp:
    kind: router
    firewall:
      - {action: drop, proto: tcp, dport: 25, src: 100.64.0.0/10,
         note: "residential customers may not send on port 25"}
  internet: {kind: router}
  ns:       {kind: host, ip: 198.51.100.53/24, gateway: internet,
             services: {dns: {zones: [qq.example, 113.0.203.in-addr.arpa]}}}
  mx-qq:    {kind: host, ip: 203.0.113.25/24, gateway: internet,
             services: {mx: {domains: [qq.example], mailboxes: [bob],
                             checks: [ptr, dnsbl, spf, dkim, dmarc]}}}
  smtp-isp: {kind: host, ip: 192.0.2.25/24, gateway: isp,
             services: {submission: {users: {alice@home.example: secret}},
                        relay: {retry: [5m, 30m, 2h], give_up: 5d}}}
links:
  - [isp, internet]
zones:
  qq.example: |
    @      MX  10 mx
    mx     A   203.0.113.25
    @      TXT "v=spf1 mx -all"
    _dmarc TXT "v=DMARC1; p=reject"
  113.0.203.in-addr.arpa: |
    25     PTR mx.qq.example.
"""


def render_reference() -> str:
    """``docs/topology-reference.md``, as committed."""
    # Imported here: validate needs nothing from this module, but keeping the
    # import local keeps `import sim.topology.schema` light for the loader.
    from sim.topology.validate import CHECKS

    out: list[str] = [
        "# Topology file reference",
        "",
        "<!-- Generated by `python -m sim.topology.schema` from sim/topology/schema.py;"
        " do not edit. -->",
        "",
        "A topology file is YAML: nodes (hosts and routers), router-to-router links, "
        "services on hosts, firewall rules on routers and DNS zones in zone-file syntax. "
        "`maillab validate FILE` checks a file in two layers and reports every problem as "
        "`PATH:LINE:COL: key.path: message`:",
        "",
        "1. **Structure**: every key below, its type and allowed values. An unknown key is "
        "an error (with a suggestion when it looks like a typo), so is a duplicate key.",
        "2. **Meaning**: the named checks listed at the end (addresses, gateways, links, "
        "zones, MX targets, services that refer to each other, firewall rules).",
        "",
        "Editors can check files as they are typed with the JSON Schema in "
        "[topology.schema.json](topology.schema.json) (for example with the YAML language "
        "server: `# yaml-language-server: $schema=../docs/topology.schema.json`).",
        "",
        "## Example",
        "",
        "```yaml",
        EXAMPLE.rstrip("\n"),
        "```",
        "",
    ]
    for record, where in records():
        out += [f"## {record.name}", ""]
        out += [record.doc, ""]
        if where:
            out += [f"Appears at `{where}`.", ""]
        out += ["| Key | Type | Default | Description |", "|---|---|---|---|"]
        for f in record.fields:
            out.append(
                f"| `{f.key}` | {_md_cell(_md_type(f.spec))} | {_md_cell(_md_default(f))} "
                f"| {_md_cell(f.doc)} |"
            )
        out.append("")
        if record.rules:
            out += [f"* {_md_rule(rule)}" for rule in record.rules]
            out.append("")
    out += ["## Value formats", ""]
    used = {s.format for s in _iter_specs(TOPOLOGY) if isinstance(s, Scalar)}
    for fmt in FORMATS.values():
        if fmt.name not in used:
            continue
        example = fmt.example
        shown = f"\n\n```yaml\n{example}\n```" if "\n" in example else f" Example: `{example}`."
        out += [f"### {fmt.name}", "", f"{fmt.written[0].upper()}{fmt.written[1:]}.{shown}", ""]
    out += [
        "## Meaning checks",
        "",
        "Run once the structure is right (checks that depend on a part with a structural "
        "problem wait until it is fixed):",
        "",
    ]
    for name, doc in CHECKS.items():
        out.append(f"* `{name}`: {doc}")
    out.append("")
    return "\n".join(out)


# -- command line ---------------------------------------------------------------------


def _docs_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "docs"


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or, with ``--check``, compare) the schema and the reference."""
    parser = argparse.ArgumentParser(
        prog="python -m sim.topology.schema",
        description="Regenerate docs/topology.schema.json and docs/topology-reference.md.",
    )
    parser.add_argument("--check", action="store_true", help="only report stale files")
    parser.add_argument("--docs", type=Path, default=_docs_dir(), help="the docs directory")
    args = parser.parse_args(argv)
    stale = 0
    for name, text in (
        ("topology.schema.json", render_schema()),
        ("topology-reference.md", render_reference()),
    ):
        target: Path = args.docs / name
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            continue
        if args.check:
            print(f"{target}: stale; run python -m sim.topology.schema", file=sys.stderr)
            stale += 1
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target}")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
