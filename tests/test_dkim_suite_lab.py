"""DKIM (RFC 6376, RFC 8301, RFC 8463) case by case, through a lab: keys
published in a lab zone, each message sent over SMTP from a lab node to the
lab MX, and the MX's verdicts read from its ``check`` events.

Each case says how the message is signed, what changes in transit, and what
the receiver must conclude for each signature (top to bottom).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dkim
import pytest
from rawsend import send_raw

import sim
from sim.auth.dkim import generate_ed25519_key, generate_key, key_txt_rdata
from sim.topology import loads_topology

MX_IP = "203.0.113.25"

MESSAGE = (
    b"From: Alice <alice@signer.example>\r\n"
    b"To: bob@mx.example\r\n"
    b"Subject: lunch at noon\r\n"
    b"Date: Sat, 05 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <case@signer.example>\r\n"
    b"\r\n"
    b"See you at noon.\r\n"
    b"Bring the report.\r\n"
)

RSA = generate_key(1024)
RSA_OTHER = generate_key(1024)
ED = generate_ed25519_key()


def _zone() -> str:
    return (
        f"s1._domainkey TXT {key_txt_rdata(RSA[1])}\n"
        f"ed._domainkey TXT {key_txt_rdata(ED[1])}\n"
        f"wrong._domainkey TXT {key_txt_rdata(RSA_OTHER[1])}\n"
        'old._domainkey TXT "v=DKIM1; k=rsa; p="\n'
        # What DKIM providers hand out: a CNAME to the key they publish.
        "prov._domainkey CNAME s1._domainkey.provider.example.\n"
    )


TOPOLOGY = f"""
name: dkim-cases
settings: {{resolver: 198.51.100.53, time_scale: 60}}
nodes:
  internet: {{kind: router}}
  ns:
    kind: host
    ip: 198.51.100.53/24
    gateway: internet
    services: {{dns: {{zones: [signer.example, provider.example, mx.example]}}}}
  mx:
    kind: host
    ip: {MX_IP}/24
    gateway: internet
    services: {{mx: {{domains: [mx.example], mailboxes: [bob], checks: {{dkim: header}}}}}}
  sender: {{kind: host, ip: 192.0.2.10/24, gateway: internet}}
zones:
  signer.example: |
{"".join("    " + line + chr(10) for line in _zone().splitlines())}
  provider.example: |
    s1._domainkey TXT {key_txt_rdata(RSA[1])}
  mx.example: |
    @ MX 10 mx
    mx A {MX_IP}
"""


def _sign(
    message: bytes,
    selector: str = "s1",
    *,
    key: bytes = RSA[0],
    canon: tuple[bytes, bytes] = (b"relaxed", b"relaxed"),
    algorithm: bytes = b"rsa-sha256",
    length: bool = False,
    expires: int | None = None,
) -> bytes:
    """``message`` signed by dkimpy (which has no x= of its own: it is added
    to the tags before the signature is computed, so it is signed too)."""
    original = dkim.DKIM.gen_header

    def with_x(self: Any, fields: list[tuple[bytes, bytes]], *args: Any, **kw: Any) -> Any:
        if expires is not None:
            at = next(i for i, (k, _) in enumerate(fields) if k == b"h")
            fields.insert(at, (b"x", str(expires).encode()))
            if expires < time.time():  # signed two hours before it expired
                fields[[k for k, _ in fields].index(b"t")] = (b"t", str(expires - 7200).encode())
        return original(self, fields, *args, **kw)

    dkim.DKIM.gen_header = with_x  # type: ignore[method-assign]
    try:
        sig = dkim.sign(
            message,
            selector.encode(),
            b"signer.example",
            key,
            canonicalize=canon,
            signature_algorithm=algorithm,
            length=length,
        )
    finally:
        dkim.DKIM.gen_header = original  # type: ignore[method-assign]
    return bytes(sig) + message


Transit = Callable[[bytes], bytes]


def _unchanged(m: bytes) -> bytes:
    return m


@dataclass
class Case:
    id: str
    rule: str
    make: Callable[[], bytes]
    expect: list[tuple[str, str | None]]  # (result, reason) per signature
    transit: Transit = _unchanged
    extra: dict[str, Any] = field(default_factory=dict)


def _subject_spaces(m: bytes) -> bytes:
    return m.replace(b"Subject: lunch at noon", b"Subject:  lunch   at noon")


def _trailing_space(m: bytes) -> bytes:
    return m.replace(b"See you at noon.\r\n", b"See you at noon.  \r\n")


def _footer(m: bytes) -> bytes:
    return m + b"-- \r\nSent through the list\r\n"


def _body_changed(m: bytes) -> bytes:
    return m.replace(b"noon.\r\nBring", b"one.\r\nBring")


CASES = [
    Case(
        "relaxed-intact",
        "§3.7: an untouched message verifies",
        lambda: _sign(MESSAGE),
        [("pass", None)],
    ),
    Case(
        "simple-intact",
        "§3.4.1/§3.4.3 simple/simple",
        lambda: _sign(MESSAGE, canon=(b"simple", b"simple")),
        [("pass", None)],
    ),
    Case(
        "relaxed-header-tolerates-whitespace",
        "§3.4.2: relaxed headers fold runs of WSP",
        lambda: _sign(MESSAGE),
        [("pass", None)],
        _subject_spaces,
    ),
    Case(
        "simple-header-breaks-on-whitespace",
        "§3.4.1: simple headers change nothing",
        lambda: _sign(MESSAGE, canon=(b"simple", b"simple")),
        [("fail", "signature did not verify")],
        _subject_spaces,
    ),
    Case(
        "relaxed-body-tolerates-trailing-space",
        "§3.4.4: relaxed body drops trailing WSP",
        lambda: _sign(MESSAGE),
        [("pass", None)],
        _trailing_space,
    ),
    Case(
        "simple-body-breaks-on-trailing-space",
        "§3.4.3: simple body keeps it",
        lambda: _sign(MESSAGE, canon=(b"relaxed", b"simple")),
        [("fail", "body hash mismatch")],
        _trailing_space,
    ),
    Case(
        "body-changed",
        "§3.7: a changed body fails the body hash",
        lambda: _sign(MESSAGE),
        [("fail", "body hash mismatch")],
        _body_changed,
    ),
    Case(
        "footer-breaks-without-l",
        "§3.7: text added to the body breaks it",
        lambda: _sign(MESSAGE),
        [("fail", "body hash mismatch")],
        _footer,
    ),
    Case(
        "footer-with-l-is-not-covered",
        "§8.2: with l= the added text is simply not signed",
        lambda: _sign(MESSAGE, length=True),
        [("pass", "body partly unsigned (l=)")],
        _footer,
    ),
    # dkimpy allows 10 hours for clocks that are off: two days past is past.
    Case(
        "expired",
        "§3.5 x=: a signature past its expiry fails",
        lambda: _sign(MESSAGE, expires=int(time.time()) - 2 * 86400),
        [("fail", "signature expired")],
    ),
    Case(
        "not-yet-expired",
        "§3.5 x= in the future: verifies",
        lambda: _sign(MESSAGE, expires=int(time.time()) + 86400),
        [("pass", None)],
    ),
    Case(
        "revoked-key",
        "§3.6.1: an empty p= is a revoked key",
        lambda: _sign(MESSAGE, "old"),
        [("permerror", "key revoked")],
    ),
    Case(
        "no-key",
        "§6.1.2: no key record for the selector",
        lambda: _sign(MESSAGE, "missing"),
        [("permerror", "no key for signature")],
    ),
    Case(
        "wrong-key",
        "§6.1.3: the published key is not the signer's",
        lambda: _sign(MESSAGE, "wrong"),
        [("fail", "signature did not verify")],
    ),
    Case(
        "rsa-sha1-never-valid",
        "RFC 8301 §3.1: rsa-sha1 must not be considered valid",
        lambda: _sign(MESSAGE, algorithm=b"rsa-sha1"),
        [("fail", "rsa-sha1 not acceptable")],
    ),
    Case(
        "ed25519",
        "RFC 8463: ed25519-sha256 verifies",
        lambda: _sign(MESSAGE, "ed", key=ED[0], algorithm=b"ed25519-sha256"),
        [("pass", None)],
    ),
    Case(
        "ed25519-tampered",
        "RFC 8463: and fails like RSA when changed",
        lambda: _sign(MESSAGE, "ed", key=ED[0], algorithm=b"ed25519-sha256"),
        [("fail", "body hash mismatch")],
        _body_changed,
    ),
    Case(
        "provider-cname",
        "§3.6.2.2: the key record may be reached through a CNAME",
        lambda: _sign(MESSAGE, "prov"),
        [("pass", None)],
    ),
    Case(
        "two-signatures",
        "§6.1: every signature gets its own result",
        lambda: _sign(_sign(MESSAGE, "wrong")),
        [("pass", None), ("fail", "signature did not verify")],
    ),
]


@pytest.fixture(scope="module")
def lab() -> Iterator[sim.Lab]:
    with sim.start(loads_topology(TOPOLOGY)) as running:
        yield running


def send(lab: sim.Lab, data: bytes) -> list[dict[str, Any]]:
    return send_raw(
        lab,
        data,
        mx_ip=MX_IP,
        mail_from="alice@signer.example",
        helo="sender.signer.example",
        check="dkim",
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(lab: sim.Lab, case: Case) -> None:
    verdicts = send(lab, case.transit(case.make()))
    got = [(v["result"], v.get("details", {}).get("reason")) for v in verdicts]
    assert got == case.expect, [v["explanation"] for v in verdicts]
