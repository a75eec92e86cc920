"""ARC sealing (RFC 8617 §5.1), by dkimpy: what a list or forwarder adds.

An intermediary that changes a message seals what it saw before changing
it: it writes its own ``Authentication-Results`` (its authserv-id, its SPF,
DKIM and DMARC verdicts and ``arc=`` for the chain it received), then
dkimpy's :func:`dkim.arc_sign` turns that into the next ARC set, numbered one
above the newest on the message:

* ``ARC-Authentication-Results: i=N; <the verdicts>`` (§4.1.1);
* ``ARC-Message-Signature: i=N; ...`` over the message as it leaves (§4.1.2);
* ``ARC-Seal: i=N; cv=...`` over every ARC header field so far (§4.1.3):
  ``none`` for the first seal, else the ``arc=`` verdict it received; a
  sealer that found the chain broken seals ``cv=fail``, which ends it.

Validation is the receiving check's (:mod:`sim.services.checks.arc`).
"""

from __future__ import annotations

import dkim

__all__ = ["ArcSealError", "seal"]


class ArcSealError(ValueError):
    """The message cannot be sealed (a bad key, a chain at its limit)."""


def seal(
    message: bytes,
    domain: str,
    selector: str,
    private_pem: bytes,
    authserv_id: str,
    verdicts: str,
    cv: str,
    *,
    timestamp: int | None = None,
) -> bytes:
    """``message`` with an ``Authentication-Results`` field of
    ``authserv_id`` (``verdicts`` and ``arc=cv``) and the next ARC set on
    top. ``cv`` is the chain validation the sealer found: ``none`` (no chain
    yet), ``pass`` or ``fail`` (RFC 8617 §4.1.3)."""
    if cv not in ("none", "pass", "fail"):
        raise ArcSealError(f"cv must be none, pass or fail, not {cv!r}")
    linesep = b"\r\n" if b"\r\n" in message else b"\n"
    clauses = "; ".join(c for c in (verdicts.strip().strip(";"), f"arc={cv}") if c)
    if cv == "none":
        # dkimpy reads the chain status from the arc= clause; the first
        # sealer has none to give (RFC 8617 §5.1.1 step 2).
        clauses = verdicts.strip().strip(";") or "none"
    ar = f"Authentication-Results: {authserv_id}; {clauses}".encode() + linesep
    stamped = ar + message
    try:
        arc_set = dkim.arc_sign(
            stamped,
            selector.encode("ascii"),
            domain.encode("ascii"),
            private_pem.replace(b"\r\n", b"\n"),
            authserv_id.encode("ascii"),
            timestamp=timestamp,
            linesep=linesep,
        )
    except dkim.DKIMException as err:
        raise ArcSealError(f"cannot ARC-seal for {domain}: {err}") from None
    if not arc_set:
        raise ArcSealError(f"cannot ARC-seal for {domain}: the chain is terminated")
    return b"".join(bytes(h) for h in arc_set) + stamped
