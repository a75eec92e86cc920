"""The fault catalogue and the troubleshooting labs (issue 16 §3).

Every fault of labs 11 and 12 is checked on the local backend (the reference
path: the task's check fails under the fault and passes after its fix), and
on mininet by one test over every variant of both labs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from mininet_support import needs_mininet

from sim.cli import main
from sim.errors import LabError
from sim.lab.draw import draw_choice, draw_index
from sim.lab.engine import LabSession, run_reference
from sim.lab.faults import CATALOGUE, FaultMismatch, bind, drawn
from sim.lab.loader import load_lab
from sim.lab.model import FaultDraw, TaskStep
from sim.topology import load_topology

ROOT = Path(__file__).resolve().parent.parent
TROUBLESHOOTING = [ROOT / "labs" / "11-what-is-wrong.yaml", ROOT / "labs" / "12-an-incident.yaml"]
#: Faults no curriculum lab draws (their topology needs a smarthost): a small lab.
SMARTHOST_LAB = ROOT / "tests" / "fixtures" / "faults" / "smarthost-lab.yaml"
#: The fault whose symptom is forged mail getting through, on lab 11's topology.
DMARC_LAB = ROOT / "tests" / "fixtures" / "faults" / "dmarc-lab.yaml"
SMALL_LABS = [SMARTHOST_LAB, DMARC_LAB]
VARIANTS = [
    (path, name)
    for path in [*TROUBLESHOOTING, *SMALL_LABS]
    for name in (load_lab(path).faults or FaultDraw(1, ())).choices
]
IDS = [f"{p.stem[:2]}-{n}" for p, n in VARIANTS]


# -- draws ---------------------------------------------------------------------


def test_a_draw_is_stable_and_differs_between_students() -> None:
    assert draw_index("ann", "lab", "x", 7) == draw_index("ann", "lab", "x", 7)
    picks = {draw_choice(f"student{i}", "what-is-wrong", "fault", "abcdef") for i in range(60)}
    assert len(picks) >= 5, "sixty students should meet almost every variant"
    # The lab id takes part: one student gets different draws in two labs.
    assert len({draw_index("ann", f"lab{i}", "x", 1000) for i in range(10)}) > 1


def test_a_lab_draws_its_faults_without_repeats() -> None:
    declared = FaultDraw(2, ("ptr-missing", "ptr-wrong", "dnsbl-listed"))
    for i in range(30):
        names = drawn(declared, f"s{i}", "lab")
        assert len(names) == 2 and len(set(names)) == 2
        assert set(names) <= set(declared.choices)
        assert drawn(declared, f"s{i}", "lab") == names


def test_the_session_draws_from_its_student_and_can_be_forced() -> None:
    lab = load_lab(TROUBLESHOOTING[0])
    assert lab.faults is not None
    seen = set()
    for i in range(40):
        session = LabSession(lab, student=f"student{i}")
        assert session.student == f"student{i}"
        (bound,) = session.faults
        assert bound.name in lab.faults.choices
        seen.add(bound.name)
    assert len(seen) >= 4
    forced = LabSession(lab, student="student0", fault="dnsbl-listed")
    assert [f.name for f in forced.faults] == ["dnsbl-listed"]


def test_forcing_a_fault_the_lab_does_not_draw_is_refused() -> None:
    lab = load_lab(TROUBLESHOOTING[0])
    with pytest.raises(LabError, match="does not draw the fault 'greylisting'"):
        _ = LabSession(lab, student="x", fault="greylisting").faults
    with pytest.raises(LabError, match="did you mean 'ptr-missing'"):
        _ = LabSession(lab, student="x", fault="ptr-mising").faults
    plain = load_lab(ROOT / "labs" / "01-receive-only.yaml")
    assert LabSession(plain, student="x").faults == ()
    with pytest.raises(LabError, match="has no faults"):
        _ = LabSession(plain, student="x", fault="ptr-missing").faults


# -- the catalogue -------------------------------------------------------------------


def test_every_fault_is_documented_and_applies_somewhere() -> None:
    topologies = [
        load_topology(ROOT / "topologies" / f"{n}.yaml") for n in ("troubleshoot", "incident")
    ]
    roles = {
        "dns": "ns",
        "domain": "shop.example",
        "sender": "mail-shop",
        "receiver": "mx-qq",
        "dnsbl": "bl",
    }
    assert len(CATALOGUE) >= 10
    for name, fault in CATALOGUE.items():
        assert fault.summary and fault.doc and fault.breaks and fault.solution, name
        assert "RFC" in fault.doc, f"{name}: the doc cites no RFC"
        applies = []
        for topology in [*topologies, load_topology(SMARTHOST_LAB.parent / "smarthost.yaml")]:
            try:
                bound = bind(fault, topology, roles)
            except FaultMismatch:
                continue
            applies.append(topology.name)
            filled = json.dumps([a.to_json() for a in bound.breaks + bound.solution])
            assert not re.search(r"\{[a-z_]+\}", filled), f"{name}: {filled}"
        assert applies, f"{name} applies to no troubleshooting topology"


def test_every_fault_of_the_catalogue_is_checked_by_some_lab() -> None:
    drawn_somewhere = {name for _, name in VARIANTS}
    assert drawn_somewhere == set(CATALOGUE)


def test_the_authoring_guide_lists_the_catalogue() -> None:
    guide = (ROOT / "docs" / "authoring.md").read_text(encoding="utf-8")
    for name, fault in CATALOGUE.items():
        assert f"| `{name}` | {fault.summary} |" in guide, f"{name} is not in docs/authoring.md"


def test_a_fault_that_does_not_apply_says_what_is_missing() -> None:
    topology = load_topology(ROOT / "topologies" / "troubleshoot.yaml")
    roles = {"dns": "ns", "domain": "shop.example", "sender": "mail-shop", "receiver": "mx-qq"}
    with pytest.raises(FaultMismatch, match=r"needs the role\(s\) dnsbl"):
        bind(CATALOGUE["dnsbl-listed"], topology, roles)
    with pytest.raises(FaultMismatch, match=r"mail-shop does not ask zen\.dnsbl\.example"):
        bind(CATALOGUE["dnsbl-listed"], topology, {**roles, "receiver": "mail-shop", "dnsbl": "bl"})
    with pytest.raises(FaultMismatch, match="the receiver office runs no mx"):
        bind(CATALOGUE["ptr-missing"], topology, {**roles, "receiver": "office"})
    # Lab 4's VPS sends by itself: no relay to break.
    reputation = load_topology(ROOT / "topologies" / "ip-reputation.yaml")
    with pytest.raises(FaultMismatch, match="the sender vps runs no relay"):
        bind(CATALOGUE["stale-spf-include"], reputation, {**roles, "sender": "vps"})
    # Lab 12's receiver only notes DKIM in a header: a broken key would go unnoticed.
    incident = load_topology(ROOT / "topologies" / "incident.yaml")
    with pytest.raises(FaultMismatch, match="does not act on the dkim check"):
        bind(CATALOGUE["dkim-key-stale"], incident, roles)


def test_the_lab_texts_do_not_name_the_fault() -> None:
    for path in TROUBLESHOOTING:
        lab = load_lab(path)
        assert lab.faults is not None
        shown = " ".join(
            [
                lab.description,
                *(s.text for s in lab.steps),
                *(h for s in lab.steps if isinstance(s, TaskStep) for h in s.hints),
            ]
        ).lower()
        for name in lab.faults.choices:
            assert name not in shown, f"{lab.id} names the fault {name}"
            assert CATALOGUE[name].summary.lower() not in shown


# -- every variant, on both backends ----------------------------------------------------


@pytest.mark.parametrize(("path", "fault"), VARIANTS, ids=IDS)
def test_every_variant_passes_its_reference_locally(path: Path, fault: str) -> None:
    report = run_reference(load_lab(path), "local", student="anyone", fault=fault)
    failed = [f"{s.id}: {s.detail}" for s in report.steps if not s.passed]
    assert report.passed, f"{fault}: {failed}"
    assert report.faults == (fault,)


MISTAKEN = [
    (path, name)
    for path, name in VARIANTS
    if any(isinstance(s, TaskStep) and s.fault and s.mistakes for s in load_lab(path).steps)
]


@pytest.mark.parametrize(
    ("path", "fault"), MISTAKEN, ids=[f"{p.stem[:2]}-{n}" for p, n in MISTAKEN]
)
def test_a_listed_mistake_fails_under_every_fault(path: Path, fault: str) -> None:
    """A fault task's mistakes (a flush before the cause is fixed) must fail
    whichever fault the student drew, not only under the tester's."""
    from sim.lab.engine import _reference_step

    lab = load_lab(path)
    task = next(s for s in lab.steps if isinstance(s, TaskStep) and s.fault)
    with LabSession(lab, student="x", fault=fault) as session:
        for step in lab.steps[: lab.index(task.id)]:
            _reference_step(session, step)
        for mistake in task.mistakes:
            for action in mistake:
                assert session.apply(task, action).ok
            assert not session.check(task).passed, f"{fault}: {mistake} passes"


def test_each_lab_has_six_variants_or_more() -> None:
    for path in TROUBLESHOOTING:
        faults = load_lab(path).faults
        assert faults is not None and len(faults.choices) >= 6


@pytest.mark.parametrize("path", TROUBLESHOOTING, ids=lambda p: p.stem)
def test_the_symptom_is_the_same_under_every_fault(path: Path) -> None:
    """The experiment that reproduces the problem shows it under each fault
    (bounced in lab 11, deferred in lab 12), and the fix task's check fails
    with the fault's own evidence in it."""
    lab = load_lab(path)
    assert lab.faults is not None
    experiment = next(s for s in lab.steps if s.kind == "experiment")
    task = next(s for s in lab.steps if isinstance(s, TaskStep) and s.fault)
    for name in lab.faults.choices:
        with LabSession(lab, student="x", fault=name) as session:
            outcome = session.run_experiment(experiment.id)
            assert outcome.passed, f"{name}: {outcome.detail}"
            code = int(outcome.data["reply"]["code"]) if outcome.data else 0
            assert code // 100 == (5 if lab.id == "what-is-wrong" else 4), f"{name}: {code}"
            before = session.check(task.id)
            assert not before.passed
            assert before.hint and name not in before.hint


def test_check_cli_forces_a_fault_and_reports_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "11", "--fault", "ptr-wrong", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["labs"][0]["faults"] == ["ptr-wrong"]
    assert main(["check", "11", "--fault", "ptr-wrnog"]) == 2
    assert "did you mean 'ptr-wrong'" in capsys.readouterr().err
    assert main(["check", "11", "--fault", "greylisting"]) == 2
    assert "does not draw the fault greylisting" in capsys.readouterr().err


@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", [*TROUBLESHOOTING, *SMALL_LABS], ids=lambda p: p.stem)
@needs_mininet[0]
@needs_mininet[1]
def test_every_variant_passes_its_reference_on_mininet(path: Path) -> None:
    lab = load_lab(path)
    assert lab.faults is not None
    failed = []
    for name in lab.faults.choices:
        report = run_reference(lab, "mininet", student="anyone", fault=name)
        failed += [f"{name} {s.id}: {s.detail}" for s in report.steps if not s.passed]
    assert not failed, failed


def test_the_controls_a_password_fault_needs_refuse_what_they_cannot_do() -> None:
    import sim
    from sim.errors import ServiceError

    topology = load_topology(SMARTHOST_LAB.parent / "smarthost.yaml")
    with sim.start(topology) as lab:
        with pytest.raises(ServiceError, match=r"no user 'nobody@shop\.example'"):
            lab.control(
                "relayco", "submission", "password", user="nobody@shop.example", password="x"
            )
        with pytest.raises(ServiceError, match="logs in to no smarthost"):
            lab.control("relayco", "relay", "smarthost_password", password="x")
        changed = lab.control("mail-shop", "relay", "smarthost_password", password="n3w")
        assert changed == {"smarthost": "relayco", "user": "sales@shop.example", "changed": True}
