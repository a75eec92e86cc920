"""sim.auth.dkimfast: dkimpy's RSA primitives done by OpenSSL give exactly
what dkimpy's own code gives: the same signature bytes, the same verdicts on
valid, tampered and malformed signatures; and DKIM as a whole still signs
and verifies through them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import dkim
import dkim.crypto
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.auth import dkimfast
from sim.auth.dkim import generate_key, sign, verify_dkim
from sim.auth.result import Lookup
from sim.resolve import DnsAnswer, DnsRecord


def _keys(bits: int) -> tuple[dict[str, int], dict[str, int]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    private = dkim.crypto.parse_pem_private_key(pem)
    public = {"modulus": private["modulus"], "publicExponent": private["publicExponent"]}
    return private, public


KEYS = {bits: _keys(bits) for bits in (1024, 2048)}
HASHES: dict[str, Callable[[bytes], Any]] = {"sha256": hashlib.sha256, "sha1": hashlib.sha1}


def test_install_points_dkimpy_at_openssl() -> None:
    dkimfast.install()
    assert dkim.RSASSA_PKCS1_v1_5_verify is dkimfast.rsa_verify
    assert dkim.RSASSA_PKCS1_v1_5_sign is dkimfast.rsa_sign
    assert dkim.evaluate_pk is dkimfast.evaluate_pk


def test_a_key_record_is_parsed_once_and_a_changed_one_again() -> None:
    _, txt = generate_key(1024)
    _, other = generate_key(1024)
    name = b"s1._domainkey.home.example."
    first = dkimfast.evaluate_pk(name, txt.encode())
    assert dkimfast.evaluate_pk(name, txt.encode()) is first  # remembered
    again = dkimfast.evaluate_pk(name, other.encode())
    assert again is not first
    assert again[0]["modulus"] != first[0]["modulus"]
    assert first[1] == 1024  # key size


def test_a_record_that_does_not_parse_raises_every_time() -> None:
    for _ in range(2):
        with pytest.raises(dkim.KeyFormatError):
            dkimfast.evaluate_pk(b"s1._domainkey.home.example.", b"v=DKIM1; k=rsa; p=AAAA")


@settings(max_examples=40, deadline=None)
@given(
    data=st.binary(max_size=200),
    bits=st.sampled_from(sorted(KEYS)),
    algorithm=st.sampled_from(sorted(HASHES)),
)
def test_signatures_are_byte_for_byte_dkimpys(data: bytes, bits: int, algorithm: str) -> None:
    private, public = KEYS[bits]
    ours = dkimfast.rsa_sign(HASHES[algorithm](data), private)
    theirs = dkim.crypto.RSASSA_PKCS1_v1_5_sign(HASHES[algorithm](data), private)
    assert bytes(ours) == bytes(theirs)
    assert dkimfast.rsa_verify(HASHES[algorithm](data), ours, public)
    assert dkim.crypto.RSASSA_PKCS1_v1_5_verify(HASHES[algorithm](data), ours, public)


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=100),
    flip=st.integers(min_value=0, max_value=255),
    bits=st.sampled_from(sorted(KEYS)),
)
def test_tampered_signatures_and_digests_fail_alike(data: bytes, flip: int, bits: int) -> None:
    private, public = KEYS[bits]
    good = bytes(dkim.crypto.RSASSA_PKCS1_v1_5_sign(hashlib.sha256(data), private))
    bad = bytearray(good)
    bad[flip % len(bad)] ^= 0x01
    cases: list[tuple[Any, bytes]] = [
        (hashlib.sha256(data), bytes(bad)),  # a changed signature
        (hashlib.sha256(data + b"x"), good),  # a changed message
        (hashlib.sha256(data), good[1:]),  # too short
        (hashlib.sha256(data), good + b"\x00"),  # too long
        (hashlib.sha256(data), b""),  # empty
        (hashlib.sha256(data), b"\xff" * len(good)),  # larger than the modulus
    ]
    for digest, signature in cases:
        theirs = dkim.crypto.RSASSA_PKCS1_v1_5_verify(digest.copy(), signature, public)
        assert dkimfast.rsa_verify(digest.copy(), signature, public) is theirs


def test_signatures_that_are_numbers_rather_than_k_octets_keep_dkimpys_verdict() -> None:
    # RFC 8017 §8.2.2 wants exactly k octets below the modulus; dkimpy reads
    # the octets as a number, so a signer that dropped a leading zero octet
    # (or added one) still verifies there. The same verdict here.
    private, public = KEYS[1024]
    n, k = public["modulus"], 128
    for i in range(5000):  # about one signature in 256 starts with a zero octet
        digest = hashlib.sha256(b"%d" % i)
        good = bytes(dkimfast.rsa_sign(digest.copy(), private))
        if good[0] == 0:
            break
    else:
        pytest.fail("no signature with a leading zero octet")
    plus_n = int.from_bytes(good, "big") + n
    cases = [good[1:], b"\x00" + good]
    if plus_n < 1 << (8 * k):
        cases.append(plus_n.to_bytes(k, "big"))  # the same value modulo n
    for signature in cases:
        theirs = dkim.crypto.RSASSA_PKCS1_v1_5_verify(digest.copy(), signature, public)
        assert theirs is True
        assert dkimfast.rsa_verify(digest.copy(), signature, public) is True


def test_another_hash_is_left_to_dkimpy() -> None:
    _private, public = KEYS[1024]
    with pytest.raises(KeyError):  # dkimpy knows no sha512 OID: its own error
        dkimfast.rsa_verify(hashlib.sha512(b"x"), b"\x00" * 128, public)


def test_keys_under_1024_bits_are_left_to_dkimpy() -> None:
    # dkimpy then refuses the key as too small (its minkey), with its message.
    # (OpenSSL will not make such a key: any odd 512-bit modulus shows the path.)
    public = {"modulus": (1 << 511) | 0x1F3, "publicExponent": 65537}
    signature = b"\x01" * 64
    theirs = dkim.crypto.RSASSA_PKCS1_v1_5_verify(hashlib.sha256(b"x"), signature, public)
    assert dkimfast.rsa_verify(hashlib.sha256(b"x"), signature, public) is theirs


def test_dkim_signs_and_verifies_through_openssl() -> None:
    private_pem, txt = generate_key()
    message = (
        b"From: Alice <alice@home.example>\r\nTo: bob@qq.example\r\nSubject: hi\r\n"
        b"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@home.example>\r\n\r\nHello\r\n"
    )
    signed = sign(message, "home.example", "s1", private_pem)

    def lookup(name: str, rtype: str) -> DnsAnswer:
        name = name.rstrip(".")
        if (name, rtype) != ("s1._domainkey.home.example", "TXT"):
            return DnsAnswer(name, rtype, "NXDOMAIN")
        return DnsAnswer(name, rtype, "NOERROR", (DnsRecord(name, "TXT", 300, txt, (txt,)),))

    check: Lookup = lookup
    assert [r.result for r in verify_dkim(signed, check)] == ["pass"]
    tampered = signed.replace(b"Subject: hi", b"Subject: HI")
    assert [r.result for r in verify_dkim(tampered, check)] == ["fail"]
