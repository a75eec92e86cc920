"""Warn about host names in record data written without their final dot.

In a zone file a name without a final dot is relative to the zone's origin
(RFC 1035 §5.1): in the zone ``2.0.192.in-addr.arpa``, the record
``10 PTR mail.startup.example`` names ``mail.startup.example.2.0.192.in-addr.arpa.``,
a classic mistake that still parses. A name with a dot inside it was almost
certainly meant as a full name, so the zone editor (and the lab engine, after
a ``dns_add``) says what the name will become. Single labels such as the
``mx`` of ``@ MX 10 mx`` are the usual relative names and get no warning;
an owner name gets one when it ends with the zone's own name
(``mail.startup.example A ...`` in the zone startup.example).
"""

from __future__ import annotations

from sim.topology.zones import ZoneSyntaxError, fqdn, parse_zone_lines, split_comment

__all__ = ["relative_name_warnings"]

#: Where the host name is in the data of each record type (RFC 1035 §3.3,
#: RFC 2782 for SRV, RFC 6672 for DNAME): the index of the data field.
_NAME_FIELD = {"PTR": 0, "CNAME": 0, "NS": 0, "DNAME": 0, "MX": 1, "SRV": 3}


def relative_name_warnings(zone: str, text: str) -> list[str]:
    """One sentence per dotted name in record data that lacks its final dot:
    the name as written and the name it becomes. Text that does not parse
    gets none (its syntax error is reported elsewhere)."""
    try:
        parsed = parse_zone_lines(zone, text)
    except ZoneSyntaxError:
        return []
    lines = text.splitlines()
    warnings: list[str] = []
    origin = fqdn(zone).rstrip(".")
    for line in lines:
        # An owner name that repeats the zone's own name without the final
        # dot (`mail.startup.example A ...` in startup.example) was meant as
        # a full name too; a relative owner such as `_dmarc` is the norm.
        record = split_comment(line)[0]
        if not record.strip() or record[:1].isspace() or record.startswith("$"):
            continue
        owner = record.split()[0]
        if not owner.endswith(".") and owner.lower().endswith("." + origin.lower()):
            warnings.append(_warning(owner, zone))
    for line_no, rr in parsed:
        rtype = str(_type_name(rr.rtype))
        index = _NAME_FIELD.get(rtype)
        if index is None or not 1 <= line_no <= len(lines):
            continue
        words = split_comment(lines[line_no - 1])[0].split()
        upper = [w.upper() for w in words]
        if rtype not in upper:
            continue
        data = words[upper.index(rtype) + 1 :]
        if index >= len(data):
            continue
        written = data[index]
        if written.endswith(".") or written == "@" or "." not in written:
            continue
        warnings.append(_warning(written, zone))
    return warnings


def _warning(written: str, zone: str) -> str:
    becomes = fqdn(f"{written}.{fqdn(zone)}")
    return (
        f"`{written}` has no final dot, so it is read relative to the zone and "
        f"becomes {becomes} (RFC 1035 §5.1); write `{written}.` for the name itself"
    )


def _type_name(rtype: int) -> str:
    import dnslib

    return str(dnslib.QTYPE.get(rtype))
