"""``arc``: the message's ARC chain (RFC 8617), verified by dkimpy.

A mailing list or forwarder that changes a message (a subject tag, a footer)
breaks the author's DKIM signature, and its own server is not in the
author's SPF record: DMARC fails at the next hop even though the mail is
genuine. ARC lets each intermediary *seal* what it saw on arrival: an
``ARC-Authentication-Results`` (AAR, its own verdicts), an
``ARC-Message-Signature`` (AMS, a DKIM-like signature of the message as it
forwards it) and an ``ARC-Seal`` (AS, a signature over the whole chain, with
``cv=`` saying whether the chain it received validated), numbered ``i=1``,
``i=2``... (§4.1). A receiver validates the chain (§5.2) and gets ``cv``:

* ``none``: no ARC header fields at all;
* ``pass``: every seal verifies, the newest AMS verifies, the first seal says
  ``cv=none`` and every later one ``cv=pass``;
* ``fail``: anything else: a broken AMS or AS, a missing or duplicated
  instance, more than 50 instances (§4.2.1), or a seal that itself says
  ``cv=fail`` (the chain was sealed after it failed: it ends there, §5.1.2).

ARC proves only *who* handled the message and what they saw; it never
makes a message pass DMARC by itself (§7.2). A receiver chooses whom it
trusts: ``mx.arc.trusted_sealers`` names the sealing domains (the ``d=`` of
the newest ARC-Seal) this MX believes. When DMARC failed, the chain passes,
the newest sealer is trusted and its AAR says the message passed there
(``dmarc=pass``, or ``dkim=pass`` without a DMARC verdict), the MX applies a
*local policy override* (RFC 9989 §7.4 lets receivers deviate from the
published policy; RFC 9990 names the reason ``trusted_forwarder``): the
DMARC result stays ``fail`` in Authentication-Results, with a reason saying
who saved it, and the domain's ``p=reject`` is not applied. A trusted list
that itself saw ``dmarc=fail`` (a spoof sent through it) saves nothing.

The check only notes its result by default (``header``): an ARC failure is
no reason to refuse mail that passes DKIM, SPF or DMARC on its own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from sim.fastclass import dataclass
from sim.services.checks.base import ArClause, Check, CheckInput

if TYPE_CHECKING:
    from sim.auth.result import CheckResult, Lookup
    from sim.services.policy import Judgement

__all__ = ["CHECK", "MAX_INSTANCE", "evaluate", "override", "verify_arc"]

#: RFC 8617 §4.2.1: "The maximum value for i= is 50".
MAX_INSTANCE = 50

_TEMPORARY = {"TIMEOUT", "SERVFAIL", "REFUSED"}
_INSTANCE = re.compile(rb"(?:^|[\s;])i\s*=\s*(\d+)", re.IGNORECASE)
_ARC_FIELDS = (b"arc-seal", b"arc-message-signature", b"arc-authentication-results")


@dataclass
class _Dns:
    """What the key lookups of one verification met."""

    temporary: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


def _dnsfunc(lookup: Lookup, state: _Dns) -> Any:
    """dkimpy's key lookup, answered by the MX's DNS (as the dkim check does):
    a key query that gets no answer is a temporary failure, not a bad seal."""
    import dkim

    def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
        qname = (name.decode("ascii", "replace") if isinstance(name, bytes) else name).rstrip(".")
        state.names.append(qname)
        try:
            answer = lookup(qname, "TXT")
        except Exception as err:
            state.temporary.append(qname)
            raise dkim.DnsTimeoutError(f"lookup of {qname} failed: {err}") from None
        if answer.rcode in _TEMPORARY:
            state.temporary.append(qname)
            raise dkim.DnsTimeoutError(f"{answer.rcode} for {qname} TXT")
        texts = answer.texts()
        return texts[0].encode("utf-8") if texts else None

    return dnsfunc


def _instances(content: bytes) -> list[int]:
    """The i= of every ARC header field (unfolded), top to bottom."""
    from email.parser import BytesHeaderParser

    found: list[int] = []
    parsed = BytesHeaderParser().parsebytes(content)
    for name, value in parsed.items():
        if name.lower().encode() in _ARC_FIELDS:
            m = _INSTANCE.search(str(value).encode("utf-8", "replace"))
            if m is not None:
                found.append(int(m.group(1)))
    return found


def _aar_results(aar: bytes | str | None) -> dict[str, str]:
    """method → result of an ARC-Authentication-Results value (``i=N;
    authserv-id; spf=pass ...; dkim=pass ...``): what the sealer saw."""
    if not aar:
        return {}
    text = aar.decode("utf-8", "replace") if isinstance(aar, bytes) else aar
    seen: dict[str, str] = {}
    # Skip "i=N" and the authserv-id; then one method=result per clause.
    for clause in text.split(";")[2:]:
        m = re.match(r"\s*([A-Za-z0-9_-]+)\s*=\s*([A-Za-z]+)", clause)
        if m is not None:
            seen.setdefault(m.group(1).lower(), m.group(2).lower())
    return seen


def verify_arc(content: bytes, lookup: Lookup, ip: str = "") -> CheckResult:
    """Validate the ARC chain of ``content`` (RFC 8617 §5.2) over ``lookup``."""
    import dkim

    from sim.auth.result import CheckResult

    instances = _instances(content)
    inputs: dict[str, Any] = {"ip": ip, "instances": len(set(instances))}
    details: dict[str, Any] = {
        "cv": "none",
        "i": max(instances, default=0),
        "reason": None,
        "sealers": [],
        "sealer": None,
        "ams_d": None,
        "sealer_saw": {},
        "oldest_pass": None,
    }

    def result(res: str, sentence: str, reason: str | None = None) -> CheckResult:
        details["reason"] = reason
        return CheckResult("arc", res, sentence, inputs, dict(details))

    if not instances:
        return result(
            "none",
            "The message has no ARC header fields: no intermediary sealed it (RFC 8617).",
        )
    top = max(instances)
    if top > MAX_INSTANCE:
        details["cv"] = "fail"
        return result(
            "fail",
            f"The ARC chain claims i={top}, more than the {MAX_INSTANCE} instances RFC 8617 "
            "§4.2.1 allows: a chain that long is a loop or an attack, so it fails.",
            "instance limit exceeded",
        )
    state = _Dns()
    log = logging.getLogger("sim.arc.dkimpy")
    log.disabled = True  # dkimpy logs every failed seal as an error; the result says it
    cv, found, comment = dkim.arc_verify(content, logger=log, dnsfunc=_dnsfunc(lookup, state))
    sets = sorted(found, key=lambda r: int(r.get("instance", 0)))
    sealers = [_text(r.get("as-domain")) for r in sets]
    details["sealers"] = sealers
    newest = next((r for r in found if int(r.get("instance", 0)) == top), None)
    if newest is not None:
        details["sealer"] = _text(newest.get("as-domain"))
        details["ams_d"] = _text(newest.get("ams-domain"))
        details["sealer_saw"] = _aar_results(newest.get("aar-value"))
    comment = str(comment)
    if state.temporary:
        details["cv"] = "fail"
        return result(
            "temperror",
            f"The ARC keys could not be looked up ({', '.join(state.temporary)} got no "
            "answer): the chain cannot be judged now.",
            "key lookup failed",
        )
    if cv == dkim.CV_Pass:
        details["cv"] = "pass"
        # header.oldest-pass (RFC 8617 §5.2, IANA): the instance of the
        # oldest AMS that still validates, or 0 when they all do.
        oldest = top
        for r in reversed(sets):  # newest first: the AMS that still verify
            if not r.get("ams-valid"):
                break
            oldest = int(r["instance"])
        details["oldest_pass"] = 0 if oldest == 1 else oldest
        chain = " → ".join(f"i={i + 1} {d}" for i, d in enumerate(sealers))
        return result(
            "pass",
            f"The ARC chain validates (cv=pass): {chain}; the newest sealer, "
            f"{details['sealer']}, says what it saw on arrival: "
            f"{_saw(details['sealer_saw'])}. Whether to believe it is this receiver's "
            "choice (RFC 8617 §7.2).",
        )
    details["cv"] = "fail"
    reason, sentence = _why(comment, cv)
    return result("fail", f"The ARC chain does not validate (cv=fail): {sentence}", reason)


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").lower()
    return None if value is None else str(value).lower()


def _saw(seen: dict[str, str]) -> str:
    shown = [f"{m}={r}" for m, r in seen.items() if m in ("spf", "dkim", "dmarc", "arc")]
    return ", ".join(shown) or "no authentication results"


def _why(comment: str, cv: Any) -> tuple[str, str]:
    """A short reason and a sentence from dkimpy's comment."""
    if cv is None or "reported failure" in comment:
        return (
            "sealed after failure",
            "an intermediary sealed the chain with cv=fail, which ends it: no later seal "
            "can make it pass (RFC 8617 §5.1.2).",
        )
    if "Most recent ARC-Message-Signature" in comment:
        return (
            "ams invalid",
            "the newest ARC-Message-Signature does not verify: the message was changed "
            "after the last intermediary sealed it (RFC 8617 §5.2 step 5).",
        )
    if "Incomplete ARC set" in comment or "Duplicate" in comment:
        return (
            "incomplete or duplicate set",
            f"an ARC set is missing or given twice ({comment}): instances must run "
            "1, 2, ... with exactly one AAR, AMS and AS each (RFC 8617 §4.2.1, §5.2 step 3).",
        )
    if "did not validate" in comment and "ARC-Seal" in comment:
        return (
            "seal invalid",
            f"{comment}: an ARC-Seal does not verify, so the chain was altered "
            "(RFC 8617 §5.2 step 6).",
        )
    if "invalid status" in comment:
        return (
            "invalid cv",
            f"{comment}: the first seal must say cv=none and every later one cv=pass "
            "(RFC 8617 §4.1.3).",
        )
    return ("invalid chain", f"{comment} (RFC 8617 §5.2).")


async def evaluate(given: CheckInput) -> list[CheckResult]:
    """The chain of the message (at DATA), over the MX's caching DNS."""
    if given.content is None:
        return []
    check = partial(verify_arc, given.content, ip=given.ip)
    return [await given.lookup.run(lambda lookup: check(lookup))]


def trusted(settings: Any) -> frozenset[str]:
    """The sealing domains an MX trusts (``mx.arc.trusted_sealers``)."""
    policy = getattr(settings, "arc", None)
    names = getattr(policy, "trusted_sealers", ()) or ()
    return frozenset(n.lower().rstrip(".") for n in names)


def _saved(arc: CheckResult) -> bool:
    """Whether the newest sealer's own verdict was a pass (§7.2: the AAR is
    what a trusted sealer vouches for)."""
    seen = arc.details.get("sealer_saw") or {}
    if "dmarc" in seen:
        return bool(seen["dmarc"] == "pass")
    return seen.get("dkim") == "pass"


def override(judgements: Sequence[Judgement], settings: Any) -> list[Judgement]:
    """DMARC's judgement, overridden by a trusted sealer's chain (see the
    module docstring); every other judgement unchanged."""

    arc = next((j.result for j in judgements if j.check == "arc"), None)
    sealers = trusted(settings)
    if arc is None or not sealers:
        return list(judgements)
    sealer = str(arc.details.get("sealer") or "")
    out: list[Judgement] = []
    for j in judgements:
        if (
            j.check != "dmarc"
            or j.result.result != "fail"
            or j.taken not in ("reject", "junk", "defer")
        ):
            out.append(j)
            continue
        if arc.result != "pass" or sealer not in sealers:
            why = (
                f"ARC {arc.result}"
                if arc.result != "pass"
                else f"the chain's newest sealer {sealer} is not one this MX trusts "
                f"({', '.join(sorted(sealers))})"
            )
            out.append(_noted(j, f"no ARC override: {why}"))
            continue
        if not _saved(arc):
            saw = _saw(arc.details.get("sealer_saw") or {})
            out.append(_noted(j, f"no ARC override: trusted sealer {sealer} itself saw {saw}"))
            continue
        domain = j.result.inputs.get("from_domain") or j.result.inputs.get("domain") or "?"
        sentence = (
            f" But the message carries a valid ARC chain whose newest sealer, {sealer}, is "
            f"one this receiver trusts, and {sealer} saw "
            f"{_saw(arc.details.get('sealer_saw') or {})} before changing it: the local "
            f"policy overrides {domain}'s DMARC policy (RFC 8617 §7.2, RFC 9989 §7.4; "
            "reported as trusted_forwarder, RFC 9990), so the message is accepted."
        )
        result = replace(
            j.result,
            explanation=j.result.explanation + sentence,
            details={
                **j.result.details,
                "override": "trusted_forwarder",
                "override_by": sealer,
                "override_reason": f"ARC pass, trusted sealer {sealer}",
            },
        )
        # Only noted, as the action would for a passing message: no reply.
        out.append(
            replace(
                j,
                result=result,
                taken="header",
                reply=None,
                note=f"policy overridden: ARC sealed by trusted {sealer}",
            )
        )
    return out


def _noted(j: Judgement, note: str) -> Judgement:
    details = {**j.result.details, "arc_override": note}
    return replace(j, result=replace(j.result, details=details), note=note)


def ar_clause(r: CheckResult) -> ArClause:
    """``arc=RESULT header.oldest-pass=N smtp.remote-ip=IP`` (RFC 8617 §10.1:
    the two properties registered for the method)."""
    oldest = r.details.get("oldest_pass")
    props = (
        ("reason", r.details.get("reason") if r.result != "pass" else None),
        ("header_oldest_pass", str(oldest) if r.result == "pass" and oldest is not None else None),
        ("smtp_remote_ip", r.inputs.get("ip") or None),
    )
    return "arc", r.result, tuple((k, str(v) if v else None) for k, v in props)


CHECK = Check(
    name="arc",
    order=65,
    stage="data",
    doc="The ARC chain of sealing intermediaries (RFC 8617); with `mx.arc.trusted_sealers` "
    "a trusted list's chain overrides a DMARC failure its changes caused.",
    results={
        "none": "no ARC header fields: no intermediary sealed the message",
        "pass": "every seal and the newest message signature verify (cv=pass)",
        "fail": "a seal or the newest message signature does not verify, an instance is "
        "missing or over 50, or the chain was sealed after it failed (cv=fail)",
        "temperror": "a sealer's key lookup got no answer",
    },
    default="header",
    evaluate=evaluate,
    amend=override,
    ar_method="arc",
    ar_clause=ar_clause,
)
