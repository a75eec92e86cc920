"""A receiving check is one module (issue 13 §1).

Everything that names checks reads the registry (sim.services.checks): the
topology schema, the lab's ``checks`` vocabulary, the policy, the reply
table and the Authentication-Results writer. The second half proves it: a
check declared only in this file (``toy``, a toy ARC written before the real
``sim/services/checks/arc.py``) is registered, turned on in a running MX and
judged, replied, reported and written into Authentication-Results with no
other file changed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_mx import CHECKS, auth_results, build_topology, by_subject, message, send

import sim
from sim.auth.result import CheckResult
from sim.hosting.runtime import Lab
from sim.lab import actions as lab_actions
from sim.lab import checks as lab_checks
from sim.services import checks
from sim.services.checks.base import ArClause, Check, CheckInput, Fields
from sim.services.mx import MxServer
from sim.services.policy import AUTH_CHECKS, decide, effect, judge
from sim.services.replies import REPLIES, Reply, Template, reply
from sim.topology import schema

BUILTIN = ("ptr", "fcrdns", "helo", "dnsbl", "spf", "dkim", "arc", "dmarc", "tls")


def test_the_registry_holds_one_module_per_check() -> None:
    assert checks.names() == BUILTIN
    assert [c.name for c in checks.all_checks()] == [*BUILTIN, "greylist"]
    for check in checks.all_checks():
        assert check.default in check.actions, check.name
        assert check.results, check.name
        assert check.stage in ("connect", "helo", "mail", "rcpt", "data")


def test_everything_that_names_checks_reads_the_registry() -> None:
    assert checks.names() == lab_checks.CHECK_NAMES
    assert checks.names() == lab_actions.CHECKS
    assert schema.MX_CHECKS.keys() == checks.names()
    dmarc = schema.MX_CHECKS.field("dmarc")
    spf = schema.MX_CHECKS.field("spf")
    assert dmarc is not None and spf is not None
    assert "policy" in dmarc.spec.values  # type: ignore[union-attr]
    assert "policy" not in spf.spec.values  # type: ignore[union-attr]
    assert AUTH_CHECKS == ("spf", "dkim", "dmarc")
    # Each check's replies are in the one reply table.
    for check in checks.all_checks():
        for name, template in check.replies.items():
            assert REPLIES[name] is template


# --- a check declared in a test: a toy ARC, as a course would add its own check ----------

ARC_REPLIES = {
    "arc_fail": Template(
        550,
        "5.7.29",
        "ARC validation failure",
        "RFC 8617 X.7.29 (ARC validation failure)",
    ),
}


async def _evaluate(given: CheckInput) -> list[CheckResult]:
    # A toy: the real one would call sim.auth's ARC glue (dkimpy's arc_verify).
    assert given.content is not None
    verdict = "fail" if b"X-Toy-ARC: broken" in given.content else "pass"
    return [CheckResult("toy", verdict, f"toy ARC {verdict}", {"ip": given.ip}, {"i": "1"})]


def _clause(r: CheckResult) -> ArClause:
    return "arc", r.result, (("header_oldest_pass", None), ("smtp_remote_ip", str(r.inputs["ip"])))


def _fail(result: CheckResult, fields: Fields) -> Reply:
    return ARC_REPLIES["arc_fail"].fill()


ARC = Check(
    name="toy",
    order=75,
    stage="data",
    doc="ARC chain of the message (RFC 8617).",
    results={"none": "no ARC set", "pass": "the chain validates", "fail": "it does not"},
    default="header",
    replies=ARC_REPLIES,
    fail_reply=_fail,
    authentication=True,
    ar_method="arc",
    ar_clause=_clause,
    evaluate=_evaluate,
)


@pytest.fixture
def arc() -> Iterator[Check]:
    checks.register(ARC)
    yield ARC
    checks.unregister("toy")


def test_a_registered_check_is_known_to_policy_and_replies(arc: Check) -> None:
    assert "toy" in checks.names()
    assert checks.default_actions()["toy"] == "header"
    failed = CheckResult("toy", "fail", "broken chain")
    assert effect(failed, "reject") == "reject"
    judged = judge(failed, "reject", "data")
    assert judged.reply == Reply(550, "5.7.29", "ARC validation failure")
    assert judge(failed, "defer", "data").reply == Reply(450, "4.7.29", "ARC validation failure")
    assert reply("arc_fail").enhanced == "5.7.29"
    # An authentication check: with SPF failing too, a rejection is X.7.26.
    spf = judge(CheckResult("spf", "fail", "no"), "header", "rcpt")
    assert decide([judged], "data", [spf]).reply.enhanced == "5.7.26"  # type: ignore[union-attr]
    # The schema made from the registry now offers it (what the generator writes).
    assert schema._mx_checks().field("toy") is not None


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with sim.start(build_topology()) as running:
        yield running


def test_a_registered_check_runs_in_the_mx(lab: Lab, arc: Check) -> None:
    service = lab.backend.service("mx", "mx")  # type: ignore[attr-defined]
    assert isinstance(service, MxServer)
    try:
        lab.control("mx", "mx", "set_check", check="toy", action="reject")
        good = send(lab, "good", data=message(subject="arc good", signed_by="good.example"))
        assert good.transcript.delivered
        event = good.checks["toy"]
        assert (event["result"], event["stage"], event["action"]) == ("pass", "data", "none")
        results = auth_results(by_subject(lab, "arc good"))
        assert results["arc"] == "pass" and results["dkim"] == "pass"

        broken = message(subject="arc broken", body="X-Toy-ARC: broken\r\n")
        bad = send(lab, "good", data=broken)
        assert not bad.transcript.delivered
        final = bad.transcript.last_reply
        assert final is not None and (final.code, final.enhanced) == (550, "5.7.29")
        assert bad.checks["toy"]["action"] == "reject"
        assert bad.checks["toy"]["reply"]["enhanced"] == "5.7.29"
    finally:
        service.checks = list(CHECKS)
        service.generic = {}


MODULE = """
from sim.services.checks.base import Check

CHECK = Check(
    name="toy",
    order=75,
    stage="data",
    doc="ARC chain of the message (RFC 8617).",
    results={"none": "no ARC set", "pass": "the chain validates", "fail": "it does not"},
    default="header",
    ar_method="arc",
)
"""

PROBE = """
import json, sys
import sim.services.checks as checks
checks.__path__.append(sys.argv[1])  # as if toy.py were in sim/services/checks/
from sim.lab import checks as lab_checks
from sim.topology import schema
mx = schema.json_schema()["$defs"]["mx-checks"]["properties"]
print(json.dumps({"schema": list(mx), "lab": list(lab_checks.CHECK_NAMES),
                  "reference": "`toy`" in schema.render_reference()}))
"""


def test_a_module_file_is_all_the_schema_and_the_labs_need(tmp_path: Path) -> None:
    """A new module in the package (here on an extra package path, in a
    fresh interpreter) is in the generated schema, its reference and the
    lab vocabulary, with no other file touched."""
    (tmp_path / "toy.py").write_text(MODULE)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    found = json.loads(out.stdout)
    assert found["schema"] == [*BUILTIN[:8], "toy", "tls"]
    assert found["lab"] == found["schema"]
    assert found["reference"]
