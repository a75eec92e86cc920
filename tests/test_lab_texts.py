"""Lab texts say what the run shows and what the RFCs say (issue 12 §5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sim.lab import engine
from sim.lab.checks import evaluate, registered_by
from sim.lab.engine import LabSession
from sim.lab.loader import load_lab
from sim.lab.model import ExperimentStep, LabDef, QuestionStep
from sim.lab.progress import MemoryProgressStore

ROOT = Path(__file__).resolve().parent.parent
LABS = sorted((ROOT / "labs").glob("*.yaml"))


def _lab(stem: str) -> LabDef:
    return load_lab(ROOT / "labs" / f"{stem}.yaml")


def _choice_questions() -> list[tuple[str, QuestionStep]]:
    return [
        (path.stem, step)
        for path in LABS
        for step in load_lab(path).steps
        if isinstance(step, QuestionStep) and step.choices
    ]


def test_the_right_answer_is_not_the_one_to_spot_by_its_length() -> None:
    questions = _choice_questions()
    assert len(questions) >= 10
    longest = []
    for where, q in questions:
        assert q.answer is not None
        chosen = q.choice(q.answer)
        assert chosen is not None
        right = len(chosen.text)
        wrong = max(len(c.text) for c in q.choices if c.id != q.answer)
        # Never the obvious one: at most half again as long as the longest wrong one.
        assert right <= 1.5 * wrong, (
            f"{where}/{q.id}: the right answer is {right / wrong:.1f}x longer"
        )
        if right > wrong:
            longest.append(f"{where}/{q.id}")
    # ... and the longest choice is right in at most half of the questions.
    assert len(longest) <= len(questions) // 2, longest


@pytest.mark.parametrize(
    ("code", "rfc"),
    [
        ("5.7.25", "RFC 7372"),
        ("5.7.26", "RFC 7372"),
        ("5.7.23", "RFC 7372"),
        ("5.1.10", "RFC 7505"),
        ("5.7.8", "RFC 4954"),
        ("5.7.1", "RFC 3463"),
        ("4.7.1", "RFC 3463"),
    ],
)
def test_an_enhanced_code_cites_the_rfc_that_registered_it(code: str, rfc: str) -> None:
    assert registered_by(code) == rfc
    outcome = evaluate("enhanced", code, {"reply": {"code": 550, "enhanced": code}}, None)
    assert outcome.passed and f"({rfc})" in outcome.detail


def test_no_lab_says_rfc_3463_registered_the_authentication_codes() -> None:
    for path in LABS:
        text = path.read_text(encoding="utf-8")
        for code in ("7.25", "7.26"):
            for line in text.splitlines():
                if code in line:
                    assert "3463" not in line, f"{path.name}: {line.strip()}"


def test_lab_10_names_the_rfcs_it_relies_on() -> None:
    text = (ROOT / "labs" / "10-mta-mda.yaml").read_text(encoding="utf-8")
    assert "RFC 9228" in text and "no RFC" not in text
    assert "IMAP4rev1" in text and "RFC 9051" in text
    assert "message store" in text


def test_lab_10_reads_the_mailbox_over_pop3_and_checks_it() -> None:
    lab = _lab("10-mta-mda")
    pop3 = [
        s
        for s in lab.steps
        if isinstance(s, ExperimentStep)
        and s.run.kind == "read"
        and dict(s.run.args).get("protocol") == "pop3"
    ]
    assert pop3 and pop3[0].expect


def _walk(lab: LabDef, until: str) -> LabSession:
    session = LabSession(lab, "local", store=MemoryProgressStore())
    session.start(resume=False)
    for step in lab.steps:
        if step.id == until:
            break
        engine._reference_step(session, step)
    return session


def _events(data: dict[str, Any] | None, kind: str) -> list[dict[str, Any]]:
    return [e for e in (data or {}).get("trace") or [] if e.get("kind") == kind]


def test_the_submission_server_advertises_enhanced_status_codes() -> None:
    lab = _lab("03-submission")
    step = next(s for s in lab.steps if isinstance(s, ExperimentStep) and s.run is not None)
    session = _walk(lab, step.id)
    try:
        outcome = session.run_experiment(step)
        ehlo = [
            e
            for e in _events(outcome.data, "smtp")
            if e["data"].get("stage") == "helo" and ":587" in str(e["data"].get("peer"))
        ]
        assert ehlo, "no EHLO to the submission port in the trace"
        # RFC 2034: the server uses enhanced codes, so it says so in EHLO.
        assert all("ENHANCEDSTATUSCODES" in str(e["data"].get("text")) for e in ehlo)
    finally:
        session.stop()


def test_a_permerror_under_a_reject_policy_says_why_it_is_only_noted() -> None:
    lab = _lab("05-spf")
    session = _walk(lab, "too-many-lookups")
    try:
        outcome = session.run_experiment("too-many-lookups")
        (spf,) = [e for e in _events(outcome.data, "check") if e["data"]["check"] == "spf"]
        assert spf["data"]["result"] == "permerror"
        assert "(action reject)" not in spf["summary"]
        assert "spf=fail, not spf=permerror" in spf["summary"]
    finally:
        session.stop()


def test_a_null_mx_verdict_says_no_server_was_contacted() -> None:
    lab = _lab("01-receive-only")
    session = _walk(lab, "null-mx")
    try:
        assert all(r.ok for r in session.solve("null-mx"))
        outcome = session.check("null-mx")
        assert outcome.passed
        assert "no server was contacted" in outcome.detail
        assert "556 5.1.10" in outcome.explanation
    finally:
        session.stop()


def test_lab_8s_dkim_key_is_found_through_the_providers_cname() -> None:
    lab = _lab("08-borrowed-reputation")
    assert [a.name for a in lab.setup] == ["dkim_publish"]
    session = _walk(lab, "authorise-relayco")
    try:
        assert all(r.ok for r in session.solve("authorise-relayco"))
        outcome = session.check("authorise-relayco")
        assert outcome.passed, outcome.detail
        lookups = [
            e
            for e in outcome.trace
            if e.get("kind") == "dns"
            and e["data"].get("name") == "rc1._domainkey.startup.example."
            and e["data"].get("type") == "TXT"
        ]
        assert lookups, "the verifier did not ask for the key at the customer's name"
        answers = lookups[0]["data"]["answers"]
        # The customer's name is a CNAME; the key is in relayco's own zone.
        assert answers[0]["type"] == "CNAME"
        assert answers[0]["data"] == "rc1.startup-example.dkim.relayco.example."
        assert any(a["type"] == "TXT" and "v=DKIM1" in a["data"] for a in answers)
        assert "DKIM pass" in outcome.explanation
    finally:
        session.stop()


def _topologies() -> list[Any]:
    from sim.topology import load_topology

    return [load_topology(p) for p in sorted((ROOT / "topologies").glob("*.yaml"))]


def test_home_lines_are_public_documentation_addresses_with_one_ptr_everywhere() -> None:
    from ipaddress import IPv4Network

    from sim.topology.zones import parse_zone

    cgnat = IPv4Network("100.64.0.0/10")
    laptops = 0
    for topology in _topologies():
        for node in topology.hosts():
            # RFC 6598 space is a NAT's inside: a receiver never sees it.
            assert node.ip is None or node.ip.ip not in cgnat, f"{topology.name}/{node.name}"
        try:
            laptop = topology.node("laptop")
        except KeyError:
            continue
        laptops += 1
        assert str(laptop.ip) == "198.51.100.200/27", topology.name
        records = [
            (str(rr.rname), str(dnslib_type(rr.rtype)), str(rr.rdata))
            for name, text in topology.zones
            for rr in parse_zone(name, text)
        ]
        name = "198-51-100-200.dyn.home.example."
        assert ("200.100.51.198.in-addr.arpa.", "PTR", name) in records, topology.name
        assert (name, "A", "198.51.100.200") in records, topology.name
    assert laptops >= 5


def dnslib_type(code: int) -> str:
    import dnslib

    return str(dnslib.QTYPE.get(code))


def test_the_hosting_reverse_zone_names_the_providers_own_server() -> None:
    from sim.topology.zones import parse_zone

    (topology,) = [t for t in _topologies() if t.name == "ip-reputation"]
    zone = dict(topology.zones)["2.0.192.in-addr.arpa"]
    ns = [str(rr.rdata) for rr in parse_zone("2.0.192.in-addr.arpa", zone) if rr.rtype == 2]
    assert ns == ["ns.hosting.example."]


def test_every_code_block_in_the_labs_fits_76_columns() -> None:
    # An 80-column terminal keeps a border and a scroll bar: 76 are left.
    wide = []
    for path in LABS:
        lab = load_lab(path)
        texts = [lab.description]
        for step in lab.steps:
            texts += [step.text, getattr(step, "explanation", "")]
            texts += [c.feedback for c in getattr(step, "choices", ())]
        for text in texts:
            inside = False
            for line in text.splitlines():
                if line.strip().startswith("```"):
                    inside = not inside
                elif inside and len(line) > 76:
                    wide.append(f"{path.name}: {line}")
    assert not wide, "\n".join(wide)
