"""dkimpy where it is slow: RSA by OpenSSL, parsed keys remembered.

dkimpy 1.1 canonicalises, hashes and parses DKIM well, but computes RSA
itself, in Python: ``pow()`` on big integers and byte-by-byte conversions.
Measured on this project's 2-core machine (Python 3.11, RSA-2048): verifying
a signature cost about 0.5 ms of the 0.85 ms a whole ``DKIM.verify`` took,
and signing (private-key ``pow()`` without blinding, so also not constant
time) about 9 ms per message. An MX verifies, and a relay signs, every
message.

:func:`install` makes two changes to dkimpy's namespace.

**RSA.** It replaces the two primitives,
``RSASSA_PKCS1_v1_5_verify(hash, signature, public_key)`` and
``RSASSA_PKCS1_v1_5_sign(hash, private_key)`` (RFC 8017 §8.2), with versions
that hand the same numbers to OpenSSL. PKCS #1 v1.5 signatures are
deterministic, so the signatures are byte for byte the ones dkimpy makes
(``tests/test_dkimfast.py`` compares both on valid, tampered and malformed
input). Anything unusual (another hash, a key too small for the digest,
numbers OpenSSL refuses) goes to dkimpy's own code, so its errors stay the
same.

**Keys.** dkimpy parses the key record (tag list, base64, ASN.1 in Python)
for every signature it verifies. ``evaluate_pk(name, record)`` is a pure
function of its arguments, so its results are remembered for the key records
seen last (a changed record is a new argument, parsed afresh; a record that
does not parse raises every time, as before).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import dkim
import dkim.crypto
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

__all__ = ["evaluate_pk", "install", "rsa_sign", "rsa_verify"]

#: dkimpy's own primitives, kept for what OpenSSL is not asked to do.
_dkimpy_verify: Callable[[Any, bytes, dict[str, int]], bool] = dkim.crypto.RSASSA_PKCS1_v1_5_verify
_dkimpy_sign: Callable[[Any, dict[str, int]], bytes] = dkim.crypto.RSASSA_PKCS1_v1_5_sign

#: The hashes DKIM uses (RFC 6376 §3.3; rsa-sha1 is obsolete, RFC 8301, but
#: still verified by dkimpy).
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha1": hashes.SHA1,
}

#: Below this, dkimpy's own code decides (DigestTooLargeError and friends).
_MIN_BITS = 1024


@functools.lru_cache(maxsize=64)
def _public_key(n: int, e: int) -> rsa.RSAPublicKey:
    return rsa.RSAPublicNumbers(e, n).public_key()


@functools.lru_cache(maxsize=16)
def _private_key(
    n: int, e: int, d: int, p: int, q: int, dmp1: int, dmq1: int, iqmp: int
) -> rsa.RSAPrivateKey:
    # Built once per key. OpenSSL's check of the numbers (a tenth of a second
    # on a small machine, paid by every `maillab send` that signs) is skipped:
    # signing keys are the lab's own, made by maillab (sim.services.dkimkeys),
    # and a key whose numbers did not match would sign mail that fails DKIM,
    # which the receiving side shows.
    public = rsa.RSAPublicNumbers(e, n)
    numbers = rsa.RSAPrivateNumbers(p, q, d, dmp1, dmq1, iqmp, public)
    return numbers.private_key(unsafe_skip_rsa_key_validation=True)


def _algorithm(hash_object: Any) -> hashes.HashAlgorithm | None:
    make = _HASHES.get(str(getattr(hash_object, "name", "")).lower())
    return make() if make is not None else None


def rsa_verify(hash_object: Any, signature: bytes, public_key: dict[str, int]) -> bool:
    """``RSASSA_PKCS1_v1_5_verify`` with OpenSSL: True when ``signature`` is
    the RSASSA-PKCS1-v1_5 signature of the digest in ``hash_object``."""
    algorithm = _algorithm(hash_object)
    n, e = public_key["modulus"], public_key["publicExponent"]
    if algorithm is None or n.bit_length() < _MIN_BITS:
        return _dkimpy_verify(hash_object, signature, public_key)
    if len(signature) != (n.bit_length() + 7) // 8 or int.from_bytes(signature, "big") >= n:
        # RFC 8017 §8.2.2 wants exactly k octets below the modulus, and
        # OpenSSL says invalid otherwise; dkimpy reads the octets as a number
        # (a signer that dropped a leading zero octet still verifies). Keep
        # dkimpy's verdict for such signatures.
        return _dkimpy_verify(hash_object, signature, public_key)
    try:
        key = _public_key(n, e)
    except ValueError:  # numbers OpenSSL will not take: let dkimpy judge them
        return _dkimpy_verify(hash_object, signature, public_key)
    try:
        key.verify(bytes(signature), hash_object.digest(), padding.PKCS1v15(), Prehashed(algorithm))
    except InvalidSignature:
        return False
    return True


def rsa_sign(hash_object: Any, private_key: dict[str, int]) -> bytes:
    """``RSASSA_PKCS1_v1_5_sign`` with OpenSSL: the signature of the digest
    in ``hash_object`` (the same bytes dkimpy computes)."""
    algorithm = _algorithm(hash_object)
    k = private_key
    if algorithm is None or k["modulus"].bit_length() < _MIN_BITS:
        return _dkimpy_sign(hash_object, private_key)
    try:
        key = _private_key(
            k["modulus"],
            k["publicExponent"],
            k["privateExponent"],
            k["prime1"],
            k["prime2"],
            k["exponent1"],
            k["exponent2"],
            k["coefficient"],
        )
    except ValueError:
        return _dkimpy_sign(hash_object, private_key)
    return key.sign(hash_object.digest(), padding.PKCS1v15(), Prehashed(algorithm))


#: dkimpy's own key parser.
_dkimpy_evaluate_pk: Callable[[bytes, bytes], Any] = dkim.evaluate_pk


@functools.lru_cache(maxsize=256)
def _remembered(name: bytes, record: bytes) -> Any:
    return _dkimpy_evaluate_pk(name, record)


def evaluate_pk(name: Any, record: Any) -> Any:
    """dkimpy's ``evaluate_pk``, remembered: (key, bits, key type, tlsrpt)."""
    if isinstance(name, bytes) and isinstance(record, bytes):
        return _remembered(name, record)
    return _dkimpy_evaluate_pk(name, record)


def install() -> None:
    """Make dkimpy use :func:`rsa_verify`, :func:`rsa_sign` and
    :func:`evaluate_pk` (idempotent)."""
    # dkim/__init__.py imported the names from dkim.crypto: replace them there.
    dkim.RSASSA_PKCS1_v1_5_verify = rsa_verify
    dkim.RSASSA_PKCS1_v1_5_sign = rsa_sign
    # load_pk_from_dns calls evaluate_pk through the module's globals.
    dkim.evaluate_pk = evaluate_pk
