"""DKIM (RFC 6376): keys, signing and verification with dkimpy, keys from the lab DNS.

A signer hashes the body and chosen header fields, signs them with a private
key and adds a ``DKIM-Signature`` naming its domain (``d=``) and a selector
(``s=``); the verifier fetches the public key from the TXT record at
``<s>._domainkey.<d>`` (RFC 6376 §3.6.2.1) and checks both hashes. Any change
to the body or to a signed header field after signing breaks the signature.

``dkim.DKIM(msg).verify(idx=i, dnsfunc=...)`` raises with the reason for
most failures (body hash mismatch, malformed signature); a missing or broken
key makes it log and return ``False``, so our ``dnsfunc`` records what the key
lookup found, which turns every outcome into an RFC 8601 §2.7.1 result with a
reason a student can read.

dkimpy's RSA arithmetic (pure Python) is replaced by OpenSSL's, and its key
parsing remembered, when this module is imported (:mod:`sim.auth.dkimfast`):
the same results in a fraction of the time.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Sequence
from dataclasses import field

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dkim.canonicalization import CanonicalizationPolicy
from dkim.util import InvalidTagValueList, parse_tag_value

import sim.auth.dkimfast as dkimfast
from sim.auth.result import CheckResult, Lookup
from sim.fastclass import dataclass

__all__ = ["generate_ed25519_key", "generate_key", "key_txt_rdata", "sign", "verify_dkim"]

_TEMPORARY = {"TIMEOUT", "SERVFAIL", "REFUSED"}

dkimfast.install()


def generate_key(bits: int = 2048) -> tuple[bytes, str]:
    """A new RSA key pair: (private key PEM, TXT value for the selector record).

    The TXT value is ``v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>``
    (RFC 6376 §3.6.1), the form opendkim-genkey publishes.
    """
    if bits not in (1024, 2048):
        raise ValueError(f"DKIM keys here are 1024 or 2048 bits, not {bits}")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    # PKCS#1 ("BEGIN RSA PRIVATE KEY"), which dkimpy's PEM reader expects.
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, f"v=DKIM1; k=rsa; p={base64.b64encode(public_der).decode('ascii')}"


def generate_ed25519_key() -> tuple[bytes, str]:
    """A new Ed25519 key pair (RFC 8463): (private key, TXT value).

    RFC 8463 §4 publishes the bare 32-octet public key in base64 with
    ``k=ed25519``; the private key is kept as the base64 of its 32-octet seed,
    the form dkimpy signs with. Such keys are short enough for one TXT string.
    """
    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return base64.b64encode(seed), f"v=DKIM1; k=ed25519; p={base64.b64encode(public).decode()}"


def key_txt_rdata(value: str) -> str:
    """Zone-file RDATA for a long TXT value: quoted character-strings of at
    most 255 octets (RFC 1035 §3.3.14); readers join them (RFC 6376 §3.6.2.2).
    A 2048-bit key does not fit in one string."""
    chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join(f'"{chunk}"' for chunk in chunks)


def sign(
    message: bytes,
    domain: str,
    selector: str,
    private_key: bytes | str,
    headers: Sequence[str] | None = None,
    algorithm: str = "rsa-sha256",
) -> bytes:
    """``message`` with a ``DKIM-Signature`` prepended (relaxed/relaxed).

    ``algorithm`` is ``rsa-sha256`` (RFC 6376; ``private_key`` a PEM) or
    ``ed25519-sha256`` (RFC 8463; ``private_key`` from
    :func:`generate_ed25519_key`). ``rsa-sha1`` is refused: RFC 8301 §3.1
    forbids signers to use it.

    ``headers`` names the header fields to sign (From is required, RFC 6376
    §5.4); by default those present among dkimpy's recommended set, with From
    signed once more than it occurs so that a second From cannot be added.
    """
    if algorithm not in ("rsa-sha256", "ed25519-sha256"):
        raise ValueError(f"cannot DKIM-sign with {algorithm}: use rsa-sha256 or ed25519-sha256")
    pem = private_key.encode("ascii") if isinstance(private_key, str) else private_key
    pem = pem.replace(b"\r\n", b"\n")
    linesep = b"\r\n" if b"\r\n" in message else b"\n"
    include = [h.encode("ascii") for h in headers] if headers is not None else None
    try:
        signature = dkim.sign(
            message,
            selector.encode("ascii"),
            domain.encode("ascii"),
            pem,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=include,
            linesep=linesep,
            signature_algorithm=algorithm.encode("ascii"),
        )
    except dkim.DKIMException as err:
        raise ValueError(f"cannot DKIM-sign for {domain}: {err}") from None
    return bytes(signature) + message


@dataclass
class _KeyLookup:
    """What the dnsfunc saw for one signature's key query."""

    name: str = ""
    rcode: str = ""
    record: str | None = None
    key_error: str | None = None
    temporary: bool = False


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            self.messages.append(record.getMessage())


@dataclass
class _Signature:
    index: int
    tags: dict[str, str] = field(default_factory=dict)
    syntax_error: str | None = None


def _signatures(headers: Sequence[tuple[bytes, bytes]]) -> list[_Signature]:
    """The DKIM-Signature fields among ``headers`` (dkimpy's parse of the
    message), top to bottom, parsed."""
    found: list[_Signature] = []
    for name, value in headers:
        if name.lower() != b"dkim-signature":
            continue
        sig = _Signature(index=len(found))
        try:
            tags = parse_tag_value(value)
            sig.tags = {
                k.decode("ascii", "replace"): v.decode("ascii", "replace") for k, v in tags.items()
            }
        except InvalidTagValueList as err:
            sig.syntax_error = str(err)
        found.append(sig)
    return found


def _dnsfunc(lookup: Lookup, state: _KeyLookup) -> object:
    def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
        qname = (name.decode("ascii", "replace") if isinstance(name, bytes) else name).rstrip(".")
        state.name = qname
        try:
            answer = lookup(qname, "TXT")
        except Exception as err:  # a lookup that cannot answer is a DNS error
            state.temporary = True
            raise dkim.DnsTimeoutError(f"lookup of {qname} failed: {err}") from None
        state.rcode = answer.rcode
        if answer.rcode in _TEMPORARY:
            state.temporary = True
            raise dkim.DnsTimeoutError(f"{answer.rcode} for {qname} TXT")
        texts = answer.texts()
        if not texts:
            return None
        state.record = texts[0]
        return texts[0].encode("utf-8")

    return dnsfunc


def _key_error(state: _KeyLookup) -> str | None:
    """Why the key record found cannot be used, or None. Asked only after a
    signature failed: dkimpy parses the key itself, and logs rather than
    raises when it cannot."""
    if state.record is None:
        return None
    try:
        dkim.evaluate_pk(state.name.encode("ascii", "replace"), state.record.encode("utf-8"))
    except dkim.DKIMException as err:
        return str(err)
    except Exception as err:  # malformed base64 and the like
        return f"{type(err).__name__}: {err}"
    return None


def _plain(text: str) -> str:
    """dkimpy formats bytes with repr(): ``missing b'b'=`` → ``missing b=``."""
    return re.sub(r"b'([^']*)'", r"\1", text)


def _key_problem(state: _KeyLookup) -> tuple[str, str]:
    """(reason, sentence) for a key that exists but cannot be used."""
    p_tag = re.search(r"(?:^|;)\s*p\s*=\s*([^;]*)", state.record or "")
    if p_tag is not None and not p_tag.group(1).strip():
        return (
            "key revoked",
            f"the key record at {state.name} has an empty p=, which means the key was "
            "revoked (RFC 6376 §3.6.1)",
        )
    return (
        "unusable key record",
        f"the key record at {state.name} cannot be used ({_plain(state.key_error or '')})",
    )


def _verify_one(
    verifier: dkim.DKIM, capture: _Capture, sig: _Signature, lookup: Lookup
) -> CheckResult:
    d = sig.tags.get("d", "").strip()
    s = sig.tags.get("s", "").strip()
    signed = [h.strip().lower() for h in sig.tags.get("h", "").split(":") if h.strip()]
    who = f"The DKIM signature by {d or '?'} (selector {s or '?'})"
    inputs = {"signature": sig.index, "d": d, "s": s, "key_name": f"{s}._domainkey.{d}"}
    details: dict[str, object] = {
        "d": d,
        "s": s,
        "a": sig.tags.get("a", "").strip(),
        "c": sig.tags.get("c", "simple/simple").strip(),
        "h": signed,
        "reason": None,
        "key_record": None,
        "key_bits": None,
    }

    def result(res: str, sentence: str, reason: str | None = None) -> CheckResult:
        details["reason"] = reason
        return CheckResult("dkim", res, sentence, inputs, dict(details))

    if sig.syntax_error is not None:
        # RFC 8601 §2.7.1: a signature with syntax errors is "neutral".
        return result(
            "neutral",
            f"The DKIM-Signature header cannot be parsed ({sig.syntax_error}), so it is ignored "
            "(neutral).",
            "signature syntax error",
        )
    if details["a"] == "rsa-sha1":
        # RFC 8301 §3.1: "Verifiers MUST NOT consider signatures using RSA-SHA1
        # to be valid"; SHA-1 collisions are practical, so such a signature
        # proves nothing whether or not its arithmetic checks out.
        return result(
            "fail",
            f"{who} uses rsa-sha1, which verifiers must not accept since RFC 8301 §3.1 "
            "(SHA-1 is broken), so it counts as a failed signature.",
            "rsa-sha1 not acceptable",
        )
    state = _KeyLookup()
    capture.messages.clear()
    try:
        ok = verifier.verify(idx=sig.index, dnsfunc=_dnsfunc(lookup, state))
    except dkim.ValidationError as err:
        text = _plain(str(err))
        if text.startswith("body hash mismatch"):
            return result(
                "fail",
                f"{who} does not verify: the body was changed after signing (body hash "
                "mismatch, RFC 6376 §3.7), for example a footer added on the way.",
                "body hash mismatch",
            )
        if text.startswith("x= value is past"):
            return result(
                "fail",
                f"{who} has expired (its x= time is past, RFC 6376 §3.5).",
                "signature expired",
            )
        return result(
            "neutral",
            f"{who} is malformed and cannot be checked: {text} (neutral).",
            text,
        )
    except dkim.KeyFormatError as err:
        return result(
            "permerror",
            f"{who} uses a key that is not acceptable: {err} (permerror).",
            str(err),
        )
    except dkim.DKIMException as err:
        return result(
            "neutral",
            f"{who} cannot be processed: {err} (neutral).",
            str(err),
        )
    except Exception as err:  # garbage from the network must not crash the MX
        return result(
            "permerror",
            f"{who} cannot be processed: {type(err).__name__}: {err} (permerror).",
            str(err),
        )
    details["key_record"] = state.record
    details["key_bits"] = verifier.keysize or None
    if ok:
        fields = ", ".join(dict.fromkeys(signed)) if signed else "no header fields"
        unsigned = _unsigned_tail(verifier, sig)
        details["unsigned_body_octets"] = unsigned
        if unsigned:
            # RFC 6376 §8.2: with l= only the first l octets are covered;
            # anything after them may have been added by anyone.
            return result(
                "pass",
                f"{who} verifies with the key at {state.name}, but it covers only the first "
                f"{sig.tags['l'].strip()} octets of the body (l=): {unsigned} more octets follow "
                "that the signature does not cover and anyone could have added (RFC 6376 §8.2). "
                f"The signed header fields ({fields}) are unchanged, so DKIM passes for {d}.",
                "body partly unsigned (l=)",
            )
        return result(
            "pass",
            f"{who} verifies with the key at {state.name}: the body and the signed header "
            f"fields ({fields}) are unchanged since signing, so DKIM passes for {d}.",
        )
    if state.temporary:
        return result(
            "temperror",
            f"{who} cannot be checked now: the key lookup for {state.name or inputs['key_name']} "
            "got no answer (temperror, RFC 6376 §6.1.2).",
            "key lookup failed",
        )
    if state.record is None:
        return result(
            "permerror",
            f"{who} cannot be checked: there is no key at {state.name} "
            f"({state.rcode or 'no answer'}), so DKIM gives permerror (no key for signature, "
            "RFC 6376 §6.1.2).",
            "no key for signature",
        )
    state.key_error = _key_error(state)
    if state.key_error is not None:
        reason, why = _key_problem(state)
        return result("permerror", f"{who} cannot be checked: {why} (permerror).", reason)
    too_small = [m for m in capture.messages if "too small" in m]
    if too_small:
        return result(
            "permerror", f"{who} uses a key that is too small ({too_small[0]}).", too_small[0]
        )
    return result(
        "fail",
        f"{who} does not verify although the body is intact (its body hash matches): a "
        "signed header field was changed after signing, or the key published at "
        f"{state.name} is not the one the signer used (signature did not verify).",
        "signature did not verify",
    )


def _unsigned_tail(verifier: dkim.DKIM, sig: _Signature) -> int:
    """How many octets of the canonicalized body follow the signed length
    ``l=`` (0 without ``l=``)."""
    length = sig.tags.get("l", "").strip()
    if not length.isdigit():
        return 0
    try:
        policy = CanonicalizationPolicy.from_c_value(
            sig.tags.get("c", "simple/simple").strip().encode("ascii")
        )
        body = policy.canonicalize_body(verifier.body)
    except Exception:  # the verification already judged the tags; this only explains
        return 0
    return max(0, len(body) - int(length))


def verify_dkim(message: bytes, lookup: Lookup) -> list[CheckResult]:
    """One :class:`CheckResult` per DKIM-Signature (top to bottom); a single
    ``none`` result when the message is not signed (RFC 8601 §2.7.1)."""
    capture = _Capture()
    # A private logger (not registered with logging's manager, so nothing
    # accumulates): dkimpy reports key problems only through it.
    logger = logging.Logger("maillab.dkim", level=logging.ERROR)
    logger.addHandler(capture)
    try:
        # One parse of the message for every signature (dkimpy verifies the
        # one at idx each time; what a verification sets, the next resets).
        verifier = dkim.DKIM(message, logger=logger, minkey=1024)
        signatures = _signatures(verifier.headers)
    except Exception as err:  # unparseable header section
        return [
            CheckResult(
                "dkim",
                "permerror",
                "The message header cannot be parsed, so no DKIM signature can be checked "
                f"({err}).",
            )
        ]
    if not signatures:
        return [
            CheckResult(
                "dkim",
                "none",
                "The message carries no DKIM-Signature header, so there is nothing to verify "
                "(none).",
            )
        ]
    return [_verify_one(verifier, capture, sig, lookup) for sig in signatures]
