"""Scoring receivers (issue 13 §4): the check results added up, with junk
and reject thresholds and per-DNSBL-return-code weights, on both backends."""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from test_mx import MX_SERVICE, build_topology

import sim
from sim.auth.result import CheckResult
from sim.errors import TopologyError
from sim.hosting.runtime import Lab
from sim.services.mxscore import Weights, apply, score
from sim.services.policy import Decision, judge
from sim.topology.loader import load_topology
from sim.topology.model import CheckPolicy, Scoring

WEIGHTS = (
    ("spf", "fail", 4.0),
    ("spf", "softfail", 2.0),
    ("spf", "pass", -1.0),
    ("dmarc", "fail", 3.0),
    ("dnsbl", "127.0.0.2", 6.0),
    ("dnsbl", "127.0.0.10", 3.0),
    ("ptr", "fail", 2.0),
)
SCORING = Scoring(junk=5.0, reject=10.0, weights=WEIGHTS)
# Every check only noted: the score alone decides (an rspamd-only setup).
HEADER_ONLY = tuple(CheckPolicy(p.check, "header") for p in MX_SERVICE.checks)


def listed(*codes: str, zone: str = "zen.dnsbl.example") -> CheckResult:
    return CheckResult("dnsbl", "listed", "listed", {"zone": zone}, {"codes": list(codes)})


def test_weights_per_result_and_per_return_code() -> None:
    weights = Weights(SCORING)
    judged = [
        judge(listed("127.0.0.2", "127.0.0.10"), "header", "rcpt"),
        judge(CheckResult("spf", "fail", "no"), "header", "rcpt"),
        judge(CheckResult("dkim", "pass", "ok"), "header", "data"),  # no weight
    ]
    scored = score(weights, judged)
    assert [(c.label, c.weight) for c in scored.contributions] == [
        ("dnsbl:127.0.0.2", 6.0),
        ("dnsbl:127.0.0.10", 3.0),
        ("spf:fail", 4.0),
    ]
    assert scored.total == 13.0 and scored.verdict == "spam"
    assert scored.reply is not None and (scored.reply.code, scored.reply.enhanced) == (554, "5.7.1")


def test_a_code_without_weight_counts_as_listed_and_results_count_once() -> None:
    weights = Weights(replace(SCORING, weights=(("dnsbl", "listed", 2.5), ("dkim", "fail", 1.0))))
    judged = [
        judge(listed("127.0.0.4"), "header", "rcpt"),
        judge(listed("127.0.0.4", zone="other.example"), "header", "rcpt"),
        judge(CheckResult("dkim", "fail", "a"), "header", "data"),
        judge(CheckResult("dkim", "fail", "b"), "header", "data"),
    ]
    scored = score(weights, judged)
    assert scored.total == 6.0  # two lists, one DKIM failure
    assert scored.verdict == "junk"


def test_the_score_decides_only_what_the_actions_accepted() -> None:
    weights = Weights(SCORING)
    both = [
        judge(listed("127.0.0.2", "127.0.0.10"), "header", "rcpt"),
        judge(CheckResult("ptr", "fail", "no PTR"), "header", "rcpt"),
    ]
    spam = score(weights, both)
    assert spam.total == 11.0
    assert apply(Decision("inbox", "data"), spam).verdict == "reject"
    deferred = Decision("defer", "data", None, "dmarc")
    assert apply(deferred, spam) is deferred
    junk = score(weights, [judge(listed("127.0.0.2"), "header", "rcpt")])
    after = apply(Decision("inbox", "data"), junk)
    assert (after.verdict, after.junk_by) == ("junk", ("score",))


# --- the topology ------------------------------------------------------------------------

TOPOLOGY = """\
name: scoring
settings: {{resolver: 198.51.100.53}}
nodes:
  internet: {{kind: router}}
  ns:
    kind: host
    ip: 198.51.100.53/24
    gateway: internet
    services: {{dns: {{zones: [qq.example]}}}}
  mx:
    kind: host
    ip: 203.0.113.25/24
    gateway: internet
    services:
      mx:
        domains: [qq.example]
        mailboxes: [bob]
        checks: {{spf: header, dnsbl: header}}
        scoring:
{scoring}
zones:
  qq.example: |
    @ MX 10 mx
    mx A 203.0.113.25
"""


def load(scoring: str, tmp_path: Path) -> object:
    path = tmp_path / "t.yaml"
    indented = "\n".join("          " + line for line in scoring.splitlines())
    path.write_text(TOPOLOGY.format(scoring=indented))
    return load_topology(path)


def test_the_topology_shape(tmp_path: Path) -> None:
    topo = load(
        "junk: 5\nreject: 10\nweights:\n  spf: {fail: 4, softfail: 2}\n"
        "  dnsbl: {listed: 1, codes: {127.0.0.2: 6, 127.0.0.10: 3}}\n",
        tmp_path,
    )
    mx = topo.node("mx").services.mx  # type: ignore[attr-defined]
    assert mx.scoring == Scoring(
        5.0,
        10.0,
        (
            ("spf", "fail", 4.0),
            ("spf", "softfail", 2.0),
            ("dnsbl", "listed", 1.0),
            ("dnsbl", "127.0.0.2", 6.0),
            ("dnsbl", "127.0.0.10", 3.0),
        ),
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("junk: five\n", "expected a number"),
        ("weights:\n  spf: {fial: 4}\n", "did you mean 'fail'"),
        ("weights:\n  sfp: {fail: 4}\n", "did you mean 'spf'"),
        ("weights:\n  dnsbl: {codes: {127.0.0.1: 6}}\n", "127.0.0.1"),
        ("weights:\n  spf: {codes: {127.0.0.2: 6}}\n", "codes"),
    ],
)
def test_bad_scoring_is_one_clear_line(text: str, problem: str, tmp_path: Path) -> None:
    with pytest.raises(TopologyError) as caught:
        load(text, tmp_path)
    assert problem in str(caught.value)
    assert "t.yaml:" in str(caught.value)


# --- on both backends ----------------------------------------------------------------------


@pytest.fixture(
    scope="module",
    params=["local", pytest.param("mininet", marks=pytest.mark.mininet)],
)
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    mx = replace(MX_SERVICE, checks=HEADER_ONLY, scoring=SCORING)
    with sim.start(build_topology(mx), backend=request.param) as running:
        yield running


@pytest.mark.parametrize(
    ("node", "mail_from", "from_header", "outcome", "total", "verdict"),
    [
        # All pass: SPF pass subtracts.
        ("good", "alice@good.example", "alice@good.example", "delivered", -1.0, "ham"),
        # Listed with 127.0.0.2 (6) and SPF pass (-1): junk from 5.
        ("listed", "alice@good.example", "alice@good.example", "junk", 5.0, "junk"),
        # Listed, SPF fail for evil.example, DMARC fail for good.example: 13.
        ("listed", "x@evil.example", "x@good.example", "rejected", 13.0, "spam"),
    ],
)
def test_score_and_outcome(
    lab: Lab,
    node: str,
    mail_from: str,
    from_header: str,
    outcome: str,
    total: float,
    verdict: str,
) -> None:
    subject = f"score {node} {mail_from}"
    result = lab.send(
        node, "bob@qq.example", mail_from=mail_from, from_header=from_header, subject=subject
    )
    assert result.outcome == outcome, result.reply
    event = next(e for e in result.trace.of_kind("check") if e.data["check"] == "score")
    assert event.data["result"] == verdict
    assert event.data["details"]["score"] == total
    contributions = {(c["check"], c["key"]) for c in event.data["details"]["contributions"]}
    if node == "listed":
        assert ("dnsbl", "127.0.0.2") in contributions
    if outcome == "rejected":
        assert (result.code, result.enhanced) == (554, "5.7.1")
        assert "score 13.0" in str(result.reply)
        return
    folder = "Junk" if outcome == "junk" else "INBOX"
    stored = [m for m in lab.mailbox("bob@qq.example", folder) if m.subject == subject]
    assert len(stored) == 1
    message = email.message_from_bytes(stored[0].data, policy=email.policy.default)
    assert message["X-Spam-Score"] == f"{total:.1f}"
    assert str(message["X-Spam-Status"]).startswith("Yes" if verdict != "ham" else "No")


def test_a_lab_check_can_name_the_score(lab: Lab) -> None:
    """``score`` in a step's expectations (sim.lab.checks): the total, bounds
    and the verdict, read from the run; ``checks: {score: ...}`` the verdict."""
    from sim.lab.checks import evaluate
    from sim.lab.schema import json_schema

    result = lab.send(
        "listed",
        "bob@qq.example",
        mail_from="alice@good.example",
        from_header="alice@good.example",
        subject="score for a lab check",
    ).to_json()
    assert evaluate("score", 5, result, None).passed
    assert evaluate("score", {"at_least": 5, "below": 10, "verdict": "junk"}, result, None).passed
    assert evaluate("checks", {"score": "junk"}, result, None).passed
    wrong = evaluate("score", {"at_least": 10}, result, None)
    assert not wrong.passed and "the score is 5, expected at least 10" in wrong.detail
    assert not evaluate("score", {"verdict": "spam"}, result, None).passed
    unscored = {"trace": [], "checks": {}}
    assert "no scoring receiver" in evaluate("score", 5, unscored, None).detail
    assert '"score"' in json.dumps(json_schema())
