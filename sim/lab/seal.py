"""Answers a student's copy of a lab can check but not show.

``maillab pack --student`` writes labs without their answer keys: a
question keeps, instead of ``answer``/``accept``, the *digests* of its
normalised right answers (PBKDF2-HMAC-SHA256 with a salt of the question,
so that equal answers of two questions do not look equal and a table of
common answers does not apply). What a right answer unlocks (the
explanation, the verdicts of an experiment hidden until the question is
answered) is encrypted (Fernet: AES-128-CBC with HMAC-SHA256, from
``cryptography``) with a key of the question, the *unlock key*, which is
itself stored once per right answer, encrypted with a key derived from that
answer. A wrong choice's feedback is encrypted with a key derived from that
choice, and every sealed text is padded to a multiple of :data:`BLOCK`
bytes, so that neither a missing feedback nor a length gives the right
choice away.

What this protects: reading the file. A student who runs code can still
try every choice of a multiple-choice question, exactly as they can in the
TUI; a short answer is as hard to find as it is to guess.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

from cryptography.fernet import Fernet, InvalidToken

__all__ = [
    "BLOCK",
    "answer_digest",
    "answer_key",
    "new_salt",
    "new_unlock_key",
    "seal",
    "unseal",
]

#: Sealed texts are padded to a multiple of this many bytes.
BLOCK = 256
#: PBKDF2 rounds: a few milliseconds per answer on a laptop, to slow down
#: guessing a short answer from the file (the TUI judges one answer at a time).
ROUNDS = 20_000


def new_salt() -> str:
    return secrets.token_hex(16)


def new_unlock_key() -> bytes:
    return Fernet.generate_key()


def _normalise(answer: str) -> bytes:
    # The same comparison as the source lab's (sim.lab.loader.normalise_answer).
    return " ".join(str(answer).split()).casefold().encode("utf-8")


def _derive(salt: str, answer: str) -> bytes:
    return hashlib.pbkdf2_hmac(
        "sha256", _normalise(answer), b"maillab-answer:" + bytes.fromhex(salt), ROUNDS, 64
    )


def answer_digest(salt: str, answer: str) -> str:
    """What the file keeps of a right answer (hex)."""
    return hashlib.sha256(b"digest:" + _derive(salt, answer)[:32]).hexdigest()


def answer_key(salt: str, answer: str) -> bytes:
    """The Fernet key an answer opens (independent of its digest)."""
    return base64.urlsafe_b64encode(_derive(salt, answer)[32:])


def seal(key: bytes, text: str, *, size: int = 0) -> str:
    """``text`` encrypted with ``key``, padded so its length says little: to
    a multiple of :data:`BLOCK` bytes, and to at least ``size`` (the texts
    of one question's choices are sealed to one size)."""
    data = text.encode("utf-8")
    length = len(data).to_bytes(4, "big")
    padded = length + data
    padded += b"\0" * (max(size - len(padded), 0))
    padded += b"\0" * (-len(padded) % BLOCK)
    return Fernet(key).encrypt(padded).decode("ascii")


def unseal(key: bytes, token: str) -> str | None:
    """The text ``token`` holds, or None when ``key`` does not open it."""
    try:
        padded = Fernet(key).decrypt(token.encode("ascii"))
    except (InvalidToken, ValueError):
        return None
    length = int.from_bytes(padded[:4], "big")
    return padded[4 : 4 + length].decode("utf-8")
