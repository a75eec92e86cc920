"""The receiving policy: what a check result costs the message.

A check (:mod:`sim.services.mxchecks`, :mod:`sim.auth`) only says what it
found. The MX's topology gives each check an *action*
(:class:`~sim.topology.model.CheckPolicy`); :func:`judge` applies it to one
result, and :func:`decide` turns the judgements of one SMTP stage into what
happens to the mail:

* ``reject``: a 5xx reply; the sender must not retry (RFC 5321 §4.2.1);
* ``defer``: a 4xx reply; a real MTA keeps the message and retries later;
* ``junk``: accepted, filed in the recipient's Junk folder;
* ``header``: accepted; the result is only written into the headers.

How a result meets an action (the reasons are in the RFCs cited):

==================  ===========================================================
pass, none,         nothing to do
neutral, notlisted
fail, listed        the action, as configured
softfail (SPF)      at most junk: the domain asks not to reject (RFC 7208 §8.5)
temperror           defer when the action would reject or defer, else only
                    noted (RFC 7208 §8.6; RFC 8601 §2.7.3); a DNSBL that does
                    not answer never stops mail (lists go down; Postfix ignores it)
permerror           like fail for ptr/fcrdns/helo/dkim; only noted for SPF and
                    DMARC (a broken record is not the sender's wrongdoing: DMARC
                    then decides, RFC 7208 §8.7, RFC 9989) and for a DNSBL
                    answer that is not a listing
``policy`` (DMARC)  the domain owner's published disposition: reject → reject,
                    quarantine → junk, none → header (RFC 9989)
==================  ===========================================================

``policy`` on any other check means: SPF → ``reject`` (its qualifiers already
are the owner's policy: ``-all`` fails, ``~all`` softfails), others → ``header``.

Several results at one stage (:func:`decide`): checks are judged in the order
the topology lists them, and **the first rejecting one decides**; if none
rejects, the first deferring one; then junk if any said junk; else the inbox.
A rejection beats an earlier deferral on purpose: a retry cannot change a
permanent verdict, so making the sender retry only delays the bounce. At DATA,
when more than one authentication check (SPF, DKIM, DMARC) failed, the
rejection carries X.7.26 "multiple authentication checks failed" (RFC 7372
§3.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from sim.auth.result import CheckResult
from sim.events import Check
from sim.fastclass import dataclass
from sim.services import checks
from sim.services.checks.base import Stage, Taken
from sim.services.replies import Reply, reply
from sim.topology.model import CheckAction

__all__ = [
    "AUTH_CHECKS",
    "Decision",
    "Judgement",
    "Stage",
    "Taken",
    "decide",
    "effect",
    "judge",
]

Verdict = Literal["inbox", "junk", "reject", "defer"]

#: Results that say nothing against the message.
PASSING = frozenset({"pass", "none", "neutral", "notlisted", "policy"})
#: The domain-authentication checks (RFC 7372 §3.2 counts these for X.7.26):
#: those whose module says so (sim.services.checks).
AUTH_CHECKS = tuple(c.name for c in checks.all_checks() if c.authentication)
AUTH_FAILURES = frozenset({"fail", "softfail", "permerror"})


def effect(result: CheckResult, action: CheckAction | None) -> Taken:
    """What ``action`` makes of ``result`` (see the table in the module
    docstring; what differs from check to check is declared in the check's
    module: what ``policy`` means, whether a temperror may defer, whether a
    permerror counts)."""
    if action is None:
        return "none"
    outcome = result.result
    if outcome in PASSING:
        return "none"
    spec = checks.get(result.check)
    if action == "policy":
        if spec is not None and spec.policy is not None:
            return spec.policy(result)
        action = spec.policy_action if spec is not None else "header"  # type: ignore[assignment]
    if outcome == "temperror":
        if spec is not None and not spec.temperror_defers:
            return "header"
        return "defer" if action in ("reject", "defer") else "header"
    if outcome == "softfail":
        return "junk" if action in ("reject", "defer", "junk") else "header"
    if outcome == "permerror" and spec is not None and not spec.permerror_fails:
        return "header"
    return action  # type: ignore[return-value]


def _failure_reply(result: CheckResult, taken: Taken, fields: dict[str, str]) -> Reply | None:
    """The reply a rejecting or deferring judgement sends: the check's module
    says which (sim.services.checks)."""
    if taken not in ("reject", "defer"):
        return None
    spec = checks.get(result.check)
    if spec is None:
        return reply("internal")
    return spec.failure_reply(result, taken, fields)


_TAKEN_WORDS: dict[str, str] = {
    "reject": "rejected",
    "defer": "deferred (try again later)",
    "junk": "filed as junk",
    "header": "only noted in the header",
    "none": "nothing to do",
}


@dataclass(frozen=True)
class Judgement:
    """One check result and what the MX's policy made of it."""

    result: CheckResult
    configured: CheckAction | None
    taken: Taken
    stage: Stage
    reply: Reply | None = None
    #: Why a local policy changed what the action would take (an ARC
    #: override of DMARC), shown in the summary.
    note: str | None = None

    @property
    def check(self) -> str:
        return self.result.check

    @property
    def summary(self) -> str:
        head = f"{self.check} {self.result.result}"
        if self.note is not None:
            return f"{head} → {_TAKEN_WORDS[self.taken]} ({self.note})"
        if self.configured is None:
            return f"{head} (evaluated for DMARC, no action of its own)"
        if self.taken == "none":
            return head
        if self.taken == self.configured:
            return f"{head} → {_TAKEN_WORDS[self.taken]} (action {self.configured})"
        # The configured action is for a definite failure; say so, or
        # "permerror → only noted (action reject)" reads as a contradiction.
        return (
            f"{head} → {_TAKEN_WORDS[self.taken]} (this MX's `{self.check}: "
            f"{self.configured}` is for {self.check}=fail, not {self.check}={self.result.result})"
        )

    def check_event(self, client: str) -> Check:
        """The ``check`` trace event's data (sim.events) for ``client``."""
        return Check(
            client=client,
            check=self.check,
            result=self.result.result,
            action=self.taken,
            configured=self.configured,
            stage=self.stage,
            explanation=self.result.explanation,
            inputs=self.result.inputs,
            details=self.result.details,
            reply=self.reply.to_json() if self.reply is not None else None,
        )


def judge(
    result: CheckResult,
    action: CheckAction | None,
    stage: Stage,
    *,
    ip: str = "",
    helo: str = "",
    domain: str = "",
) -> Judgement:
    """Apply ``action`` to ``result``; ``ip``, ``helo`` and ``domain`` fill the
    reply text. ``action=None`` records a result evaluated only because
    another check needs it (DMARC needs SPF and DKIM)."""
    taken = effect(result, action)
    fields = {"ip": ip, "helo": helo, "domain": domain}
    return Judgement(result, action, taken, stage, _failure_reply(result, taken, fields))


@dataclass(frozen=True)
class Decision:
    """What happens to the mail after one stage's checks."""

    verdict: Verdict
    stage: Stage
    reply: Reply | None = None
    decided_by: str | None = None
    junk_by: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.verdict in ("inbox", "junk")

    @property
    def folder(self) -> str:
        return "Junk" if self.verdict == "junk" else "INBOX"

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "stage": self.stage,
            "reply": self.reply.to_json() if self.reply is not None else None,
            "decided_by": self.decided_by,
            "junk_by": list(self.junk_by),
        }


def _auth_failures(judgements: Sequence[Judgement]) -> list[Judgement]:
    names = checks.authentication()  # registered ones included
    seen: dict[str, Judgement] = {}
    for j in judgements:
        if j.check in names and j.result.result in AUTH_FAILURES and j.check not in seen:
            seen[j.check] = j
    return [seen[c] for c in names if c in seen]


def decide(
    current: Sequence[Judgement], stage: Stage, earlier: Sequence[Judgement] = ()
) -> Decision:
    """The outcome of ``stage``: only ``current`` judgements may reject or
    defer here (an earlier stage already answered for its own); junk and the
    count of failed authentication checks take ``earlier`` ones into account."""
    for j in current:
        if j.taken == "reject" and j.reply is not None:
            chosen = j.reply
            if stage == "data":
                failed = _auth_failures([*earlier, *current])
                if len(failed) > 1 and not chosen.enhanced.endswith(".7.26"):
                    # RFC 7372 §3.2: X.7.26 when several authentication checks failed.
                    listed = ", ".join(f"{f.check}={f.result.result}" for f in failed)
                    chosen = reply("auth_multiple", failed=listed)
            return Decision("reject", stage, chosen, j.check)
    for j in current:
        if j.taken == "defer" and j.reply is not None:
            return Decision("defer", stage, j.reply, j.check)
    junk = tuple(dict.fromkeys(j.check for j in [*earlier, *current] if j.taken == "junk"))
    if junk:
        return Decision("junk", stage, None, junk[0], junk)
    return Decision("inbox", stage)
