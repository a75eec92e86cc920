"""The openspf RFC 7208 test suite (as shipped in the pyspf sdist), read for
the tests: each scenario's ``zonedata`` as zone text, and its cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

SUITE = Path(__file__).parent / "fixtures" / "auth" / "rfc7208-tests.yml"

# Cases not run, with the reason: none at present.
SKIPPED: dict[str, str] = {}


def scenarios() -> list[dict[str, Any]]:
    with SUITE.open("rb") as fh:
        return list(YAML(typ="safe").load_all(fh))


def _escape(text: str, special: str) -> str:
    # RFC 1035 §5.1: printable ASCII as is, ``special`` characters as \X,
    # control characters (and spaces in names) as \DDD in decimal; other
    # Unicode raw (UTF-8 in the zone text).
    out = []
    for ch in text:
        if ch in special:
            out.append("\\" + ch)
        elif ord(ch) <= 0x20 or ord(ch) == 0x7F or not ch.isprintable():
            # Each octet of its UTF-8 form (YAML forbids raw C1 controls too).
            out.extend(f"\\{b:03d}" for b in ch.encode("utf-8", "surrogateescape"))
        else:
            out.append(ch)
    return "".join(out)


def _quote(text: str) -> str:
    # Spaces are kept inside quotes; parentheses escaped (parse_zone joins
    # multi-line records by dropping unescaped ones).
    return '"' + _escape(text, '"\\()').replace("\\032", " ") + '"'


def _absolute(name: str) -> str:
    # An owner name may hold spaces and other bytes: escaped as RFC 1035 §5.1 says.
    return (_escape(name.rstrip("."), '"\\();') + ".") if name else "."


def zone_from_zonedata(
    zonedata: dict[str, list[Any]],
) -> tuple[str, set[str], dict[str, list[str]]]:
    """Zone text, names that time out, and the
    TXT strings expected per name.

    Mirrors the suite's own driver (pyspf's testspf.py): an ``SPF`` entry also
    serves as TXT unless the name lists TXT itself (type 99 is never queried
    under RFC 7208); ``NONE`` means "no such record"; ``TIMEOUT`` makes the
    types not listed before it time out. Owner names with spaces are written
    with RFC 1035 escapes (``\\032``), as a zone file holds them.
    """
    lines: list[str] = []
    timeouts: set[str] = set()
    expected_txt: dict[str, list[str]] = {}
    for name, rrs in zonedata.items():
        owner = _absolute(name)
        has_txt = any(isinstance(rr, dict) and "TXT" in rr for rr in rrs)
        for rr in rrs:
            if rr == "TIMEOUT":
                timeouts.add(name)
                break  # the driver never returns records listed after TIMEOUT
            ((rtype, value),) = rr.items()
            if rtype == "SPF":
                if has_txt:
                    continue
                rtype = "TXT"
            if rtype == "TXT":
                strings = [value] if isinstance(value, str) else list(value)
                if strings == ["NONE"]:
                    continue
                strings = strings or [""]  # a TXT with no strings reads as nothing
                expected_txt.setdefault(name.lower(), []).append("".join(strings))
                rdata = " ".join(_quote(s) for s in strings)
            elif rtype == "MX":
                rdata = f"{value[0]} {_absolute(str(value[1]))}"
            elif rtype in ("PTR", "CNAME"):
                rdata = _absolute(str(value))
            else:
                rdata = str(value)
            lines.append(f"{owner} 300 {rtype} {rdata}")
    return "\n".join(lines) + "\n", timeouts, expected_txt


def _load_suite() -> list[Any]:
    """Every case as ``pytest.param(scenario, test, id=...)``."""
    cases = []
    for scenario in scenarios():
        for test_id, test in scenario["tests"].items():
            marks = [pytest.mark.skip(reason=SKIPPED[test_id])] if test_id in SKIPPED else []
            cases.append(pytest.param(scenario, test, id=test_id, marks=marks))
    return cases
