"""The receiving MX's judgements of the connecting client, one small function each.

Before a receiver reads a message it judges *who is sending*: the client's IP
address and the name it gave in HELO/EHLO. Each function here looks at its
inputs (asking the lab DNS through a :data:`~sim.auth.result.Lookup`) and
returns a :class:`~sim.auth.result.CheckResult` with what it found and one
sentence a student can read. Whether a failure rejects, defers or only marks
the mail is not decided here but by the MX's policy (:mod:`sim.services.policy`).

* ``ptr``: does the address have a PTR record at all? Whoever holds the
  address block sets it (the reverse zone is delegated with the block), so a
  residential or fresh VPS address often has none or a generic one.
* ``fcrdns``: forward-confirmed reverse DNS, RFC 8601 §3 ``iprev``: one of the
  PTR names must resolve back to the same address; anyone can put any name in
  a PTR, only the owner of that name can make it point back.
* ``helo``: the HELO/EHLO name must be a fully-qualified domain name or an
  address literal in brackets (RFC 5321 §4.1.1.1, §2.3.5) and, when it
  resolves, resolve to the client.
* ``dnsbl``: is the address on a DNS blocklist? (RFC 5782: reversed octets
  under the list's zone; an A record in 127.0.0.0/8 means listed, the TXT
  record says why.)
* ``tls``: did the client use STARTTLS (RFC 3207)?

All functions are synchronous, over a synchronous ``Lookup`` (pyspf and
dkimpy look up synchronously too). The MX runs them on its event loop through
their async twins (``reverse_dns_async``, ``check_helo_async``,
``check_dnsbl_async``), which :func:`~sim.auth.replay.replay` them over
awaited lookups: the same code, the same questions in the same order, no
worker thread.
"""

from __future__ import annotations

import functools
import re
from dataclasses import field
from functools import partial
from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_address

from sim.auth.replay import AsyncLookup, Memo, Peek, replay
from sim.auth.result import CheckResult, Lookup
from sim.fastclass import dataclass
from sim.resolve import DnsAnswer

__all__ = [
    "AsyncLookup",
    "ReverseDns",
    "ask",
    "check_dnsbl",
    "check_dnsbl_async",
    "check_fcrdns",
    "check_helo",
    "check_helo_async",
    "check_ptr",
    "check_tls",
    "dnsbl_name",
    "fcrdns_result",
    "helo_problem",
    "ptr_result",
    "reverse_dns",
    "reverse_dns_async",
]

#: DNS rcodes that mean "no answer now", not "no such data" (RFC 8601 §2.7.3,
#: RFC 7208 §5: only NOERROR and NXDOMAIN are answers).
TEMPORARY = frozenset({"TIMEOUT", "SERVFAIL", "REFUSED"})

#: How many PTR names are followed forward (RFC 7208 §5.5 stops at 10 too).
MAX_PTR_NAMES = 10

#: Spamhaus answers 127.255.255.x for errors (a refused or malformed query),
#: not listings; RFC 5782 §2.1 reserves nothing else in 127.0.0.0/8.
DNSBL_ERRORS = IPv4Network("127.255.255.0/24")
LOOPBACK = IPv4Network("127.0.0.0/8")

#: Names that are not a host's own name (Postfix's reject_non_fqdn_helo_hostname
#: catches the dotless ones; "localhost.localdomain" is the classic default).
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "localdomain"})

_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_IPV4 = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")


def ask(lookup: Lookup, name: str, rtype: str) -> DnsAnswer:
    """``lookup(name, rtype)`` that never raises: a name that cannot be asked
    is FORMERR, a lookup that fails is TIMEOUT."""
    try:
        return lookup(name, rtype)
    except ValueError:
        return DnsAnswer(name=name, type=rtype, rcode="FORMERR")
    except Exception:  # a resolver that broke down gives no answer, not a crash
        return DnsAnswer(name=name, type=rtype, rcode="TIMEOUT")


def _bare(name: str) -> str:
    return name.rstrip(".").lower()


def _addresses(answer: DnsAnswer) -> tuple[str, ...]:
    return tuple(r.data.strip() for r in answer.of_type("A") + answer.of_type("AAAA"))


@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> IPv4Address | IPv6Address | None:
    """``text`` as an address, or None (memoised: the same few addresses
    come with every message, and parsing one costs microseconds)."""
    try:
        return ip_address(text)
    except ValueError:
        return None


def _forward_type(ip: str) -> str:
    return "AAAA" if isinstance(_parsed(ip), IPv6Address) else "A"


def _same_address(a: str, b: str) -> bool:
    parsed = _parsed(a)
    return parsed is not None and parsed == _parsed(b)


# --- reverse DNS: ptr and fcrdns ---------------------------------------------


@dataclass(frozen=True)
class ReverseDns:
    """What the reverse and forward lookups of one address found."""

    ip: str
    ptr_name: str
    ptr_rcode: str
    names: tuple[str, ...] = ()
    forward: dict[str, tuple[str, ...]] = field(default_factory=dict)
    forward_rcodes: dict[str, str] = field(default_factory=dict)

    @functools.cached_property
    def confirmed(self) -> str | None:
        """The first PTR name that resolves back to the address (RFC 8601 §3)."""
        for name in self.names:
            if any(_same_address(a, self.ip) for a in self.forward.get(name, ())):
                return name
        return None

    @property
    def ptr_temporary(self) -> bool:
        return self.ptr_rcode in TEMPORARY

    @property
    def forward_temporary(self) -> bool:
        return any(rcode in TEMPORARY for rcode in self.forward_rcodes.values())

    def inputs(self) -> dict[str, object]:
        return {"ip": self.ip, "ptr_query": f"{self.ptr_name} PTR"}

    def details(self) -> dict[str, object]:
        return {
            "ptr_rcode": self.ptr_rcode,
            "names": list(self.names),
            "forward": {n: list(a) for n, a in self.forward.items()},
            "forward_rcodes": dict(self.forward_rcodes),
            "confirmed": self.confirmed,
        }


def reverse_dns(ip: str, lookup: Lookup) -> ReverseDns:
    """PTR of ``ip`` (RFC 1035 §3.5), then the address records of each name."""
    ptr_name = ip_address(ip).reverse_pointer + "."
    answer = ask(lookup, ptr_name, "PTR")
    names = tuple(dict.fromkeys(_bare(r.data) for r in answer.of_type("PTR")))
    forward: dict[str, tuple[str, ...]] = {}
    rcodes: dict[str, str] = {}
    rtype = _forward_type(ip)
    for name in names[:MAX_PTR_NAMES]:
        fwd = ask(lookup, name, rtype)
        forward[name] = _addresses(fwd)
        rcodes[name] = fwd.rcode
        if any(_same_address(a, ip) for a in forward[name]):
            break  # confirmed: no need to look further
    return ReverseDns(ip, ptr_name, answer.rcode, names, forward, rcodes)


def ptr_result(rdns: ReverseDns) -> CheckResult:
    """``ptr``: pass when the address has a PTR record."""
    ip, query = rdns.ip, rdns.ptr_name
    if rdns.names:
        result = "pass"
        sentence = f"{ip} has a PTR record: {query} points to {', '.join(rdns.names)}."
    elif rdns.ptr_temporary:
        result = "temperror"
        sentence = (
            f"The PTR lookup for {ip} got no answer ({rdns.ptr_rcode}), so whether it "
            "has a name cannot be told now."
        )
    else:
        result = "fail"
        how = "does not exist (NXDOMAIN)" if rdns.ptr_rcode == "NXDOMAIN" else "has no PTR record"
        sentence = (
            f"{ip} has no PTR record ({query} {how}): whoever holds this address block "
            "has not given the address a name, which is typical of residential and fresh "
            "VPS addresses."
        )
    return CheckResult("ptr", result, sentence, rdns.inputs(), rdns.details())


def fcrdns_result(rdns: ReverseDns) -> CheckResult:
    """``fcrdns`` (RFC 8601 §3 ``iprev``): a PTR name must resolve back to the address."""
    ip = rdns.ip
    confirmed = rdns.confirmed
    if confirmed is not None:
        result = "pass"
        sentence = (
            f"{ip} is forward-confirmed: its PTR name {confirmed} resolves back to {ip} "
            "(iprev pass)."
        )
    elif rdns.ptr_temporary or (rdns.names and rdns.forward_temporary):
        result = "temperror"
        sentence = (
            f"The reverse or forward lookup for {ip} got no answer, so its name cannot be "
            "confirmed now (iprev temperror)."
        )
    elif not rdns.names:
        # RFC 8601 §2.7.3: no PTR data at all is iprev "permerror".
        result = "permerror"
        sentence = f"{ip} has no PTR record, so there is no name to confirm (iprev permerror)."
    else:
        result = "fail"
        found = "; ".join(
            f"{name} → {', '.join(addrs) if addrs else 'no address'}"
            for name, addrs in rdns.forward.items()
        )
        sentence = (
            f"The PTR name of {ip} does not resolve back to it ({found}): anyone can write "
            "any name into a PTR record, only the owner of the name can make it point "
            "back (iprev fail)."
        )
    return CheckResult("fcrdns", result, sentence, rdns.inputs(), rdns.details())


def check_ptr(ip: str, lookup: Lookup) -> CheckResult:
    return ptr_result(reverse_dns(ip, lookup))


def check_fcrdns(ip: str, lookup: Lookup) -> CheckResult:
    return fcrdns_result(reverse_dns(ip, lookup))


# --- HELO ---------------------------------------------------------------------


def helo_problem(name: str) -> tuple[str, str] | None:
    """(reason, sentence) when ``name`` is not acceptable as a HELO name by
    its form alone; None when it is a syntactically valid FQDN.

    Reasons: ``not_fqdn`` (no dot, a bare address, localhost) and ``invalid``
    (characters or labels a host name cannot have, RFC 1123 §2.1).
    """
    shown = name if len(name) <= 80 else name[:77] + "..."
    if not name:
        return "invalid", "The client gave an empty HELO name."
    if _IPV4.match(name):
        return (
            "not_fqdn",
            f"The HELO name {shown} is a bare IP address; RFC 5321 §4.1.3 requires an "
            "address to be written as a literal in brackets, e.g. [192.0.2.1].",
        )
    bare = name[:-1] if name.endswith(".") else name
    labels = bare.split(".")
    if len(bare) > 253 or not all(_LABEL.match(label) for label in labels):
        return (
            "invalid",
            f"The HELO name {shown!r} is not a valid host name (letters, digits and hyphens "
            "in dot-separated labels, RFC 1123 §2.1).",
        )
    if bare.lower() in LOCAL_NAMES or labels[0].lower() == "localhost":
        return (
            "not_fqdn",
            f"The HELO name {shown} is what a machine calls itself, not a name in the "
            "DNS: a mail server must greet with its fully-qualified domain name "
            "(RFC 5321 §4.1.1.1).",
        )
    if len(labels) < 2:
        return (
            "not_fqdn",
            f"The HELO name {shown} has no dot, so it is not a fully-qualified domain "
            "name (RFC 5321 §4.1.1.1).",
        )
    if labels[-1].isdigit():
        return (
            "invalid",
            f"The HELO name {shown} ends in a numeric label, which no top-level domain is.",
        )
    return None


def _literal(name: str) -> str | None:
    """The address inside an address literal ``[192.0.2.1]`` / ``[IPv6:...]``."""
    if not (name.startswith("[") and name.endswith("]")):
        return None
    inner = name[1:-1]
    if inner.lower().startswith("ipv6:"):
        inner = inner[5:]
    try:
        return str(ip_address(inner))
    except ValueError:
        return None


def check_helo(helo: str, ip: str, lookup: Lookup) -> CheckResult:
    """``helo``: a FQDN (or the client's own address literal) that, when it
    resolves, resolves to the client."""
    inputs: dict[str, object] = {"helo": helo, "ip": ip}
    shown = helo if len(helo) <= 80 else helo[:77] + "..."
    literal = _literal(helo)
    if helo.startswith("["):
        if literal is None:
            return CheckResult(
                "helo",
                "fail",
                f"The HELO name {shown!r} is not a valid address literal (RFC 5321 §4.1.3).",
                inputs,
                {"reason": "invalid"},
            )
        if _same_address(literal, ip):
            return CheckResult(
                "helo",
                "pass",
                f"The client greeted with its own address as a literal ({helo}), which "
                "RFC 5321 §4.1.1.1 allows for a host without a name.",
                inputs,
                {"reason": None, "literal": literal},
            )
        return CheckResult(
            "helo",
            "fail",
            f"The client at {ip} greeted with the address literal {helo}, which is "
            "another address.",
            inputs,
            {"reason": "mismatch", "literal": literal},
        )
    problem = helo_problem(helo)
    if problem is not None:
        reason, sentence = problem
        return CheckResult("helo", "fail", sentence, inputs, {"reason": reason})
    name = _bare(helo)
    rtype = _forward_type(ip)
    answer = ask(lookup, name, rtype)
    addresses = _addresses(answer)
    details: dict[str, object] = {
        "reason": None,
        "rcode": answer.rcode,
        "addresses": list(addresses),
    }
    inputs["query"] = f"{name} {rtype}"
    if any(_same_address(a, ip) for a in addresses):
        return CheckResult(
            "helo",
            "pass",
            f"The HELO name {name} is fully qualified and resolves to the client {ip}.",
            inputs,
            details,
        )
    if answer.rcode in TEMPORARY:
        details["reason"] = "tempfail"
        return CheckResult(
            "helo",
            "temperror",
            f"The lookup of the HELO name {name} got no answer ({answer.rcode}).",
            inputs,
            details,
        )
    if addresses:
        details["reason"] = "mismatch"
        return CheckResult(
            "helo",
            "fail",
            f"The HELO name {name} resolves to {', '.join(addresses)}, not to the client "
            f"{ip}: the client claims a name that is not its own.",
            inputs,
            details,
        )
    # Postfix's reject_unknown_helo_hostname: a name with no address is not a
    # host the client can be (RFC 5321 §4.1.1.1 asks for the client's FQDN).
    details["reason"] = "unknown"
    return CheckResult(
        "helo",
        "fail",
        f"The HELO name {name} is fully qualified but does not resolve ({answer.rcode}): no "
        f"host of that name exists, so the client at {ip} cannot be it.",
        inputs,
        details,
    )


# --- DNSBL ----------------------------------------------------------------------


def dnsbl_name(ip: str, zone: str) -> str:
    """``203.0.113.10`` in ``zen.dnsbl.example`` → ``10.113.0.203.zen.dnsbl.example.``
    (RFC 5782 §2.1; an IPv6 address is written as reversed nibbles, §2.4)."""
    reverse = ip_address(ip).reverse_pointer  # "10.113.0.203.in-addr.arpa"
    prefix = reverse.rsplit(".", 2)[0]
    return f"{prefix}.{_bare(zone)}."


def check_dnsbl(ip: str, zone: str, lookup: Lookup) -> CheckResult:
    """``dnsbl`` for one list: A first (listed?), then TXT (why?)."""
    name = dnsbl_name(ip, zone)
    zone = _bare(zone)
    inputs: dict[str, object] = {"ip": ip, "zone": zone, "query": f"{name} A"}
    answer = ask(lookup, name, "A")
    details: dict[str, object] = {"rcode": answer.rcode, "codes": [], "reason": None}
    if answer.rcode in TEMPORARY:
        return CheckResult(
            "dnsbl",
            "temperror",
            f"The blocklist {zone} did not answer ({answer.rcode}) for {ip}; a list that "
            "is down must not stop mail, so this is only noted.",
            inputs,
            details,
        )
    codes = [a for a in _addresses(answer) if isinstance(ip_address(a), IPv4Address)]
    details["codes"] = codes
    listed = [c for c in codes if IPv4Address(c) in LOOPBACK and IPv4Address(c) not in DNSBL_ERRORS]
    if not codes:
        how = "NXDOMAIN" if answer.rcode == "NXDOMAIN" else f"{answer.rcode}, no A record"
        return CheckResult(
            "dnsbl",
            "notlisted",
            f"{ip} is not listed in {zone} ({name} A → {how}).",
            inputs,
            details,
        )
    if not listed:
        return CheckResult(
            "dnsbl",
            "permerror",
            f"The blocklist {zone} answered {', '.join(codes)} for {ip}, which is not a "
            "listing (RFC 5782 §2.1: listings are in 127.0.0.0/8; 127.255.255.x are "
            "error codes), so it is ignored.",
            inputs,
            details,
        )
    txt = ask(lookup, name, "TXT")
    texts = txt.texts()
    reason = texts[0] if texts else ""
    details["reason"] = reason or None
    inputs["query"] = f"{name} A, TXT"
    why = f": {reason}" if reason else " (the list gives no reason in TXT)"
    return CheckResult(
        "dnsbl",
        "listed",
        f"{ip} is listed in {zone} (answer {', '.join(listed)}){why}.",
        inputs,
        details,
    )


# --- TLS ------------------------------------------------------------------------


def check_tls(used: bool, version: str | None = None, cipher: str | None = None) -> CheckResult:
    """``tls``: was the session encrypted with STARTTLS (RFC 3207)?"""
    inputs: dict[str, object] = {"tls": used, "version": version, "cipher": cipher}
    if used:
        how = " ".join(p for p in (version, cipher) if p)
        return CheckResult(
            "tls",
            "pass",
            f"The client used STARTTLS ({how}), so the message crossed the network encrypted."
            if how
            else "The client used STARTTLS, so the message crossed the network encrypted.",
            inputs,
        )
    return CheckResult(
        "tls",
        "fail",
        "The client did not use STARTTLS: the message crossed the network in clear text "
        "(RFC 3207 makes encryption between MTAs opportunistic).",
        inputs,
    )


# --- on the event loop ------------------------------------------------------------


async def reverse_dns_async(
    ip: str, lookup: AsyncLookup, peek: Peek | None = None, memo: Memo | None = None
) -> ReverseDns:
    """:func:`reverse_dns` on the event loop (:func:`~sim.auth.replay.replay`;
    with ``memo``, the last result for ``ip`` while its answers hold)."""
    key = ("reverse_dns", ip)
    return await replay(partial(reverse_dns, ip), lookup, peek, memo=memo, key=key)


async def check_helo_async(
    helo: str, ip: str, lookup: AsyncLookup, peek: Peek | None = None, memo: Memo | None = None
) -> CheckResult:
    """:func:`check_helo` on the event loop."""
    key = ("helo", helo, ip)
    return await replay(partial(check_helo, helo, ip), lookup, peek, memo=memo, key=key)


async def check_dnsbl_async(
    ip: str, zone: str, lookup: AsyncLookup, peek: Peek | None = None, memo: Memo | None = None
) -> CheckResult:
    """:func:`check_dnsbl` on the event loop."""
    key = ("dnsbl", ip, zone)
    return await replay(partial(check_dnsbl, ip, zone), lookup, peek, memo=memo, key=key)
