"""A scoring receiver: the check results added up (rspamd, SpamAssassin).

Large receivers rarely let one check decide alone. rspamd (Mailu, iRedMail
since 1.0) and SpamAssassin (iRedMail's Amavis) give every result a weight,
add the weights of a message and compare the sum with thresholds: from
``junk`` on, the message is filed as spam (rspamd's "add header" action,
SpamAssassin's ``required_score``, 5 by default in both); from ``reject``
on, it is refused (rspamd's "reject" action, 15 by default). A DNS
blocklist weighs by its return code: Spamhaus ZEN answers 127.0.0.2 for a
known spam source (SBL) and 127.0.0.10 for an address that should not send
mail directly (PBL), and rspamd scores them differently.

How the lab MX does it (:class:`~sim.topology.model.Scoring`):

* the weights are per check and result (``spf: {fail: 4, softfail: 2}``),
  for the DNSBL also per return code (``dnsbl: {codes: {127.0.0.2: 6}}``;
  a code without a weight counts as ``listed``); a (check, result) counts
  once per message and per DNSBL zone, even with several DKIM signatures;
* the score is made at DATA, when every result is known, and decides only
  if the checks' own actions accepted the message (an action that rejects
  still rejects at its stage: give the checks ``header`` to let the score
  alone decide, as an rspamd-only setup does);
* the trace gets one ``check`` event named ``score`` with every
  contribution, the total and the thresholds; a stored message gets
  ``X-Spam-Score`` and ``X-Spam-Status`` (SpamAssassin's fields), the
  refusal is ``554 5.7.1`` (rspamd's "Spam message rejected").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from sim.events import Check
from sim.fastclass import dataclass
from sim.services.policy import Decision, Judgement
from sim.services.replies import Reply, reply
from sim.topology.model import Scoring

__all__ = ["Contribution", "Score", "Weights", "apply", "score"]

ScoreVerdict = Literal["ham", "junk", "spam"]


@dataclass(frozen=True)
class Contribution:
    """What one result added: ``check`` gave ``key`` (a result or a DNSBL
    return code), worth ``weight``; ``zone`` names the DNSBL."""

    check: str
    key: str
    weight: float
    zone: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "key": self.key, "weight": self.weight, "zone": self.zone}

    @property
    def label(self) -> str:
        return f"{self.check}:{self.key}"


class Weights:
    """A scoring configuration, read once into a lookup table."""

    def __init__(self, config: Scoring) -> None:
        self.config = config
        self.table: dict[tuple[str, str], float] = {(c, k): w for c, k, w in config.weights}

    def contributions(self, judgements: Sequence[Judgement]) -> list[Contribution]:
        out: list[Contribution] = []
        seen: set[tuple[str, str, str | None]] = set()
        for j in judgements:
            result = j.result
            zone = str(result.inputs.get("zone")) if result.check == "dnsbl" else None
            keys = [result.result]
            if result.check == "dnsbl" and result.result == "listed":
                codes = [str(c) for c in result.details.get("codes") or ()]
                weighed = [c for c in codes if (result.check, c) in self.table]
                keys = weighed or keys
            for key in keys:
                weight = self.table.get((result.check, key))
                mark = (result.check, key, zone)
                if weight is None or mark in seen:
                    continue
                seen.add(mark)
                out.append(Contribution(result.check, key, weight, zone))
        return out


@dataclass(frozen=True)
class Score:
    """The score of one message and what it means."""

    total: float
    contributions: tuple[Contribution, ...]
    junk: float | None
    reject: float | None

    @property
    def verdict(self) -> ScoreVerdict:
        if self.reject is not None and self.total >= self.reject:
            return "spam"
        if self.junk is not None and self.total >= self.junk:
            return "junk"
        return "ham"

    @property
    def reply(self) -> Reply | None:
        if self.verdict != "spam":
            return None
        return reply("spam_reject", score=_number(self.total), threshold=_number(self.reject))

    def explanation(self) -> str:
        parts = ", ".join(f"{c.label} {c.weight:+g}" for c in self.contributions) or "nothing"
        limits = []
        if self.junk is not None:
            limits.append(f"junk from {_number(self.junk)}")
        if self.reject is not None:
            limits.append(f"reject from {_number(self.reject)}")
        meaning = {
            "ham": "below every threshold: the checks' own actions decide",
            "junk": "filed as junk",
            "spam": "refused",
        }[self.verdict]
        return (
            f"Score {_number(self.total)} ({parts}; {', '.join(limits) or 'no thresholds'}): "
            f"{meaning}."
        )

    def check_event(self, client: str) -> Check:
        """The ``check`` event named ``score`` (sim.events) for ``client``."""
        action = {"ham": "none", "junk": "junk", "spam": "reject"}[self.verdict]
        reply_ = self.reply
        return Check(
            client=client,
            check="score",
            result=self.verdict,
            action=action,
            configured=None,
            stage="data",
            explanation=self.explanation(),
            inputs={"junk": self.junk, "reject": self.reject},
            details={
                "score": self.total,
                "contributions": [c.to_json() for c in self.contributions],
            },
            reply=reply_.to_json() if reply_ is not None else None,
        )

    def headers(self) -> list[str]:
        """SpamAssassin's fields: ``X-Spam-Score`` and ``X-Spam-Status``."""
        flag = "Yes" if self.verdict != "ham" else "No"
        tests = ",".join(f"{c.label}={c.weight:g}" for c in self.contributions) or "none"
        limits = "".join(
            f" {name}={_number(value)}"
            for name, value in (("junk", self.junk), ("reject", self.reject))
            if value is not None
        )
        return [
            f"X-Spam-Score: {_number(self.total)}",
            f"X-Spam-Status: {flag}, score={_number(self.total)}{limits} tests={tests}",
        ]


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def score(weights: Weights, judgements: Sequence[Judgement]) -> Score:
    found = weights.contributions(judgements)
    total = round(sum(c.weight for c in found), 3)
    config = weights.config
    return Score(total, tuple(found), config.junk, config.reject)


def apply(decision: Decision, scored: Score) -> Decision:
    """The decision after the score: only a message the checks' actions
    accepted can be filed as junk or refused by it."""
    if not decision.accepted:
        return decision
    verdict = scored.verdict
    if verdict == "spam":
        return Decision("reject", decision.stage, scored.reply, "score")
    if verdict == "junk":
        junk_by = (*decision.junk_by, "score")
        return Decision("junk", decision.stage, None, junk_by[0], junk_by)
    return decision
