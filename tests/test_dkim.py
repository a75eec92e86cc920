"""DKIM (RFC 6376): keys, signing at the relay, verification at the receiver."""

from __future__ import annotations

import base64

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fakedns import FakeDns

from sim.auth.dkim import generate_ed25519_key, generate_key, key_txt_rdata, sign, verify_dkim
from sim.resolve import DnsAnswer

MESSAGE = (
    b"From: Alice <alice@relay.example>\r\n"
    b"To: bob@qq.example\r\n"
    b"Subject: lunch\r\n"
    b"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <1@relay.example>\r\n"
    b"\r\n"
    b"See you at noon.\r\n"
)


@pytest.fixture(scope="module")
def keys() -> dict[str, tuple[bytes, str]]:
    return {"s1": generate_key(1024), "other": generate_key(1024)}


@pytest.fixture
def dns(keys: dict[str, tuple[bytes, str]]) -> FakeDns:
    return FakeDns.from_zones(
        {
            "relay.example": (
                f"s1._domainkey TXT {key_txt_rdata(keys['s1'][1])}\n"
                f"s2._domainkey TXT {key_txt_rdata(keys['other'][1])}\n"
                'old._domainkey TXT "v=DKIM1; k=rsa; p="\n'
            )
        }
    )


def test_generate_key_shapes() -> None:
    pem, txt = generate_key(1024)
    assert pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert txt.startswith("v=DKIM1; k=rsa; p=")
    public = serialization.load_der_public_key(base64.b64decode(txt.split("p=", 1)[1]))
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == 1024
    private = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.public_key().public_numbers() == public.public_numbers()
    with pytest.raises(ValueError, match="1024 or 2048"):
        generate_key(512)


def test_key_txt_rdata_splits_long_values() -> None:
    _pem, txt = generate_key(2048)
    rdata = key_txt_rdata(txt)
    strings = rdata.split('" "')
    assert len(strings) == 2  # a 2048-bit key is about 400 characters
    assert all(len(s.strip('"')) <= 255 for s in strings)
    assert "".join(s.strip('"') for s in strings) == txt


def test_sign_prepends_relaxed_signature(keys: dict[str, tuple[bytes, str]]) -> None:
    signed = sign(MESSAGE, "relay.example", "s1", keys["s1"][0])
    assert signed.startswith(b"DKIM-Signature: ")
    assert signed.endswith(MESSAGE)
    header = signed[: -len(MESSAGE)].decode()
    assert "c=relaxed/relaxed" in header
    assert "d=relay.example" in header
    assert "s=s1" in header


def test_sign_and_verify_pass(keys: dict[str, tuple[bytes, str]], dns: FakeDns) -> None:
    signed = sign(MESSAGE, "relay.example", "s1", keys["s1"][0])
    (r,) = verify_dkim(signed, dns)
    assert r.check == "dkim"
    assert r.result == "pass"
    assert r.details["d"] == "relay.example"
    assert r.details["s"] == "s1"
    assert r.details["key_bits"] == 1024
    assert "subject" in r.details["h"]
    assert dns.queried("TXT") == ["s1._domainkey.relay.example"]


def test_sign_with_chosen_headers_and_str_key(
    keys: dict[str, tuple[bytes, str]], dns: FakeDns
) -> None:
    signed = sign(
        MESSAGE, "relay.example", "s1", keys["s1"][0].decode(), headers=["From", "Subject"]
    )
    (r,) = verify_dkim(signed, dns)
    assert r.result == "pass"
    assert r.details["h"] == ["from", "subject"]
    # An unsigned header may change without breaking the signature.
    (r,) = verify_dkim(signed.replace(b"To: bob@qq.example", b"To: carol@qq.example"), dns)
    assert r.result == "pass"


def test_sign_without_from_is_refused(keys: dict[str, tuple[bytes, str]]) -> None:
    with pytest.raises(ValueError, match="From"):
        sign(MESSAGE, "relay.example", "s1", keys["s1"][0], headers=["Subject"])


def test_lf_line_endings(keys: dict[str, tuple[bytes, str]], dns: FakeDns) -> None:
    message = MESSAGE.replace(b"\r\n", b"\n")
    signed = sign(message, "relay.example", "s1", keys["s1"][0])
    assert b"\r\n" not in signed
    assert verify_dkim(signed, dns)[0].result == "pass"


def test_footer_appended_breaks_body_hash(keys: dict[str, tuple[bytes, str]], dns: FakeDns) -> None:
    signed = sign(MESSAGE, "relay.example", "s1", keys["s1"][0])
    (r,) = verify_dkim(signed + b"--\r\nSent through the list\r\n", dns)
    assert r.result == "fail"
    assert r.details["reason"] == "body hash mismatch"
    assert "body was changed after signing (body hash mismatch" in r.explanation


def test_changed_signed_header_fails(keys: dict[str, tuple[bytes, str]], dns: FakeDns) -> None:
    signed = sign(MESSAGE, "relay.example", "s1", keys["s1"][0])
    (r,) = verify_dkim(signed.replace(b"Subject: lunch", b"Subject: dinner"), dns)
    assert r.result == "fail"
    assert r.details["reason"] == "signature did not verify"
    assert "body is intact" in r.explanation


def test_missing_key_is_permerror(keys: dict[str, tuple[bytes, str]], dns: FakeDns) -> None:
    # RFC 6376 §6.1.2: no key record → PERMFAIL "no key for signature";
    # dkimpy itself logs "missing public key" and returns False.
    signed = sign(MESSAGE, "relay.example", "gone", keys["s1"][0])
    (r,) = verify_dkim(signed, dns)
    assert r.result == "permerror"
    assert r.details["reason"] == "no key for signature"
    assert "gone._domainkey.relay.example" in r.explanation


def test_revoked_key_is_permerror(keys: dict[str, tuple[bytes, str]], dns: FakeDns) -> None:
    signed = sign(MESSAGE, "relay.example", "old", keys["s1"][0])
    (r,) = verify_dkim(signed, dns)
    assert r.result == "permerror"
    assert r.details["reason"] == "key revoked"


def test_wrong_key_fails(keys: dict[str, tuple[bytes, str]], dns: FakeDns) -> None:
    # Selector s2 publishes a different key than the one that signed.
    signed = sign(MESSAGE, "relay.example", "s2", keys["s1"][0])
    (r,) = verify_dkim(signed, dns)
    assert r.result == "fail"
    assert r.details["reason"] == "signature did not verify"


def test_key_lookup_timeout_is_temperror(keys: dict[str, tuple[bytes, str]], dns: FakeDns) -> None:
    dns.timeout("slow._domainkey.relay.example")
    (r,) = verify_dkim(sign(MESSAGE, "relay.example", "slow", keys["s1"][0]), dns)
    assert r.result == "temperror"


def test_lookup_that_raises_is_temperror(keys: dict[str, tuple[bytes, str]]) -> None:
    def boom(name: str, rtype: str) -> DnsAnswer:
        raise OSError("lab resolver unreachable")

    (r,) = verify_dkim(sign(MESSAGE, "relay.example", "s1", keys["s1"][0]), boom)
    assert r.result == "temperror"


def test_unsigned_is_none(dns: FakeDns) -> None:
    (r,) = verify_dkim(MESSAGE, dns)
    assert r.result == "none"
    assert not r.failed
    assert dns.queries == []


def test_two_signatures_each_get_a_result(keys: dict[str, tuple[bytes, str]], dns: FakeDns) -> None:
    # The author's domain signs, then a list re-signs as its own domain after
    # adding a footer: the first (inner) signature breaks, the outer passes.
    list_dns = FakeDns.from_zones(
        {"list.example": f"l1._domainkey TXT {key_txt_rdata(keys['other'][1])}"}
    )
    inner = sign(MESSAGE, "relay.example", "s1", keys["s1"][0])
    modified = inner + b"-- \r\nlist footer\r\n"
    outer = sign(modified, "list.example", "l1", keys["other"][0])

    def both(name: str, rtype: str) -> DnsAnswer:
        answer = list_dns(name, rtype)
        return answer if answer.records else dns(name, rtype)

    results = verify_dkim(outer, both)
    assert [(r.details["d"], r.result) for r in results] == [
        ("list.example", "pass"),
        ("relay.example", "fail"),
    ]
    assert results[1].details["reason"] == "body hash mismatch"
    assert [r.inputs["signature"] for r in results] == [0, 1]


def test_malformed_signature_is_neutral(dns: FakeDns) -> None:
    message = b"DKIM-Signature: v=1; a=rsa-sha256; d=relay.example\r\n" + MESSAGE
    (r,) = verify_dkim(message, dns)
    assert r.result == "neutral"
    assert "missing b=" in r.explanation
    message = b"DKIM-Signature: this is not a tag list\r\n" + MESSAGE
    (r,) = verify_dkim(message, dns)
    assert r.result == "neutral"


def test_2048_bit_key_split_over_two_strings(dns: FakeDns) -> None:
    pem, txt = generate_key(2048)
    lab = FakeDns.from_zones({"big.example": f"k2048._domainkey TXT {key_txt_rdata(txt)}"})
    (r,) = verify_dkim(sign(MESSAGE, "big.example", "k2048", pem), lab)
    assert r.result == "pass"
    assert r.details["key_bits"] == 2048


def test_rsa_sha1_is_never_valid(keys: dict[str, tuple[bytes, str]], dns: FakeDns) -> None:
    """RFC 8301 §3.1: verifiers MUST NOT consider rsa-sha1 signatures valid,
    even when the arithmetic checks out."""
    pem = keys["s1"][0]
    signed = dkim.sign(
        MESSAGE,
        b"s1",
        b"relay.example",
        pem,
        canonicalize=(b"relaxed", b"relaxed"),
        signature_algorithm=b"rsa-sha1",
    )
    txt = keys["s1"][1].encode()
    assert dkim.verify(signed + MESSAGE, dnsfunc=lambda name, timeout=5: txt)  # dkimpy: valid
    (result,) = verify_dkim(signed + MESSAGE, dns)
    assert result.result == "fail"
    assert result.details["reason"] == "rsa-sha1 not acceptable"
    assert "RFC 8301" in result.explanation


def test_signing_with_rsa_sha1_is_refused(keys: dict[str, tuple[bytes, str]]) -> None:
    with pytest.raises(ValueError, match="rsa-sha1"):
        sign(MESSAGE, "relay.example", "s1", keys["s1"][0], algorithm="rsa-sha1")


def test_ed25519_sha256_signs_and_verifies() -> None:
    """RFC 8463: an Ed25519 key fits one TXT string and verifies like RSA."""
    private, txt = generate_ed25519_key()
    assert txt.startswith("v=DKIM1; k=ed25519; p=") and len(txt) < 255
    dns = FakeDns.from_zones({"relay.example": f"ed._domainkey TXT {key_txt_rdata(txt)}\n"})
    signed = sign(MESSAGE, "relay.example", "ed", private, algorithm="ed25519-sha256")
    assert b"a=ed25519-sha256" in signed
    (result,) = verify_dkim(signed, dns)
    assert (result.result, result.details["a"]) == ("pass", "ed25519-sha256")
    (broken,) = verify_dkim(signed.replace(b"See you at noon.", b"See you at one."), dns)
    assert broken.result == "fail"


def test_l_tag_pass_says_what_is_not_covered(
    keys: dict[str, tuple[bytes, str]], dns: FakeDns
) -> None:
    """RFC 6376 §8.2: with l= the text after the signed length is not covered;
    the explanation must not claim the body is unchanged."""
    signature = dkim.sign(
        MESSAGE,
        b"s1",
        b"relay.example",
        keys["s1"][0],
        canonicalize=(b"relaxed", b"relaxed"),
        length=True,
    )
    (intact,) = verify_dkim(signature + MESSAGE, dns)
    assert intact.result == "pass" and intact.details["unsigned_body_octets"] == 0
    assert "the body and the signed header" in intact.explanation
    appended = signature + MESSAGE + b"Click here: http://spam.example/\r\n"
    (result,) = verify_dkim(appended, dns)
    assert result.result == "pass"
    assert result.details["unsigned_body_octets"] == len(b"Click here: http://spam.example/\r\n")
    assert "does not cover" in result.explanation
    assert "the body and the signed" not in result.explanation
