"""Helpers for the TUI tests: a lab that replays recorded results, and a
driver that plays a lab through the keyboard as a student would.

``CannedLab`` answers experiments with results recorded from real runs of
the local backend (``tests/fixtures/tui/canned.json``), so that snapshots do
not depend on timing, queue ids or message ids. DNS edits go to a real
:class:`~sim.services.zonestore.ZoneStore` built from the topology, as in
the DNS service. Behaviour tests use the real local backend instead.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labfake import run_by_kind
from textual.pilot import Pilot
from textual.widgets import OptionList, Select

from sim.errors import ServiceError
from sim.lab.model import (
    CheckpointStep,
    ExperimentStep,
    ExplainStep,
    LabDef,
    QuestionStep,
    Step,
    TaskStep,
)
from sim.services.zonestore import ZoneStore
from sim.topology.model import Topology
from sim.tui.app import MaillabApp
from sim.tui.task_form import TaskForm

FIXTURES = Path(__file__).parent / "fixtures" / "tui"
LABS = FIXTURES / "labs"
CANNED = json.loads((FIXTURES / "canned.json").read_text(encoding="utf-8"))
MAIL = Path(__file__).parent / "fixtures" / "mail"


@dataclass(frozen=True)
class CannedMessage:
    """A stored message as ``Lab.mailbox`` returns it (key and bytes)."""

    user: str
    folder: str
    key: str
    data: bytes


def canned_mail() -> dict[tuple[str, str], list[CannedMessage]]:
    """bob's signed newsletter; alice's bounce and delay notice (recorded
    from real runs of labs 6 and 9 on the local backend)."""

    def read(name: str) -> bytes:
        return (MAIL / name).read_bytes()

    return {
        ("bob@qq.example", "INBOX"): [CannedMessage("bob", "INBOX", "1.M1", read("signed.eml"))],
        ("alice@home.example", "INBOX"): [
            CannedMessage("alice", "INBOX", "1.M1", read("bounce.eml")),
            CannedMessage("alice", "INBOX", "2.M2", read("delay.eml")),
        ],
    }


@dataclass
class Canned:
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return self.data


class CannedLab:
    """A running lab whose experiments replay recorded results."""

    def __init__(
        self,
        topology: Topology,
        delay: float = 0.0,
        mail: dict[tuple[str, str], list[CannedMessage]] | None = None,
    ) -> None:
        self.topology = topology
        self.delay = delay
        self.mail = mail or {}
        #: Events of the lab-wide log (``Lab.trace()``) a test wants seen.
        self.log: list[Any] = []
        self.stopped = False
        self.clock = 0.0
        self.stores = {
            n.name: ZoneStore({z: topology.zone_text(z) for z in n.services.dns.zones})
            for n in topology.hosts()
            if n.services.dns is not None
        }

    def _replay(self, key: str) -> Canned:
        if self.delay:
            threading.Event().wait(self.delay)
        if key not in CANNED:
            raise ServiceError(f"no recorded result for {key!r}")
        return Canned(json.loads(json.dumps(CANNED[key])))

    def run(self, node: str, experiment: Any) -> Any:
        return run_by_kind(self, node, experiment)

    def dig(self, node: str, name: str, rtype: str = "A") -> Canned:
        return self._replay(f"dig {node} {name} {rtype}")

    def connect(self, node: str, host: str, port: int) -> Canned:
        return self._replay(f"connect {node} {host} {port}")

    def send(self, node: str, to: str | list[str], **kwargs: Any) -> Canned:
        rcpt = to if isinstance(to, str) else to[0]
        return self._replay(f"send {node} {rcpt} {kwargs.get('via', 'direct')}")

    def mailbox(self, address: str, folder: str = "INBOX") -> list[Any]:
        return list(self.mail.get((address, folder), []))

    def trace(self) -> list[Any]:
        return list(self.log)

    def control(self, node: str, service: str, command: str, **args: Any) -> dict[str, Any]:
        store = self.stores.get(node)
        if service != "dns" or store is None:
            raise ServiceError(f"{node} has no {service} service")
        if command == "records":
            return {"text": store.zone_text(args["zone"])}
        if command == "add":
            return {"added": store.add(args["zone"], args["text"])}
        if command == "remove":
            removed = store.remove(args["zone"], args["name"], args.get("rtype"), args.get("data"))
            return {"removed": removed}
        if command == "flush":
            return {"flushed": 0}
        raise ServiceError(f"dns has no command {command!r}")

    def advance(self, duration: str | float) -> None:
        self.clock += 1

    def now(self) -> float:
        return self.clock

    def stop(self) -> None:
        self.stopped = True


class CannedStarter:
    def __init__(
        self, delay: float = 0.0, mail: dict[tuple[str, str], list[CannedMessage]] | None = None
    ) -> None:
        self.delay = delay
        self.mail = mail
        self.labs: list[CannedLab] = []

    def __call__(self, topology: Topology, backend: str) -> CannedLab:
        lab = CannedLab(topology, self.delay, self.mail)
        self.labs.append(lab)
        return lab


# -- playing a lab with the keyboard ------------------------------------------------


async def settle(pilot: Pilot[Any]) -> None:
    """Wait until the engine's workers are done and the screen has caught up."""
    for _ in range(2):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def lab_screen(app: MaillabApp) -> Any:
    from sim.tui.lab import LabScreen

    screen = app.screen
    assert isinstance(screen, LabScreen), f"expected the lab screen, got {screen!r}"
    return screen


async def choose(pilot: Pilot[Any], select: Select[str], value: str) -> None:
    """Pick ``value`` in a Select with the keyboard."""
    if select.value == value:
        return
    values = [v for _, v in select._options if isinstance(v, str)]
    current = values.index(str(select.value)) if select.value in values else 0
    select.focus()
    await pilot.press("enter")
    await pilot.pause()
    moves = values.index(value) - current
    await pilot.press(*(["down"] * moves if moves > 0 else ["up"] * -moves), "enter")
    await settle(pilot)
    assert select.value == value


async def type_into(pilot: Pilot[Any], widget: Any, text: str) -> None:
    widget.focus()
    await pilot.pause()
    await pilot.press(*text if text else [])


async def apply_with_form(pilot: Pilot[Any], form: TaskForm, action: dict[str, Any]) -> None:
    """Make a task's change through its form, key by key."""
    from textual.widgets import Input, RadioSet

    name, args = next(iter(action.items()))
    mode = {"dns_add": "add", "dns_remove": "remove"}.get(name, "other")
    modes = ["add", "remove", "edit", "other"]
    radios = form.query_one("#mode", RadioSet)
    radios.focus()
    await pilot.pause()
    moves = (modes.index(mode) - modes.index(form.mode)) % len(modes)
    # RadioSet: arrows move the highlight from the pressed button; Enter picks.
    await pilot.press(*["right"] * moves, "enter")
    await settle(pilot)
    assert form.mode == mode
    if mode == "other":
        text = f"{name}: {json.dumps(args)}"
        await type_into(pilot, form.query_one("#other", Input), text)
    else:
        await choose(pilot, form.query_one("#node", Select), args["node"])
        await choose(pilot, form.query_one("#zone", Select), args["zone"])
        if mode == "add":
            await type_into(pilot, form.query_one("#record", Input), args["record"])
        else:
            await type_into(pilot, form.query_one("#rm-name", Input), args["name"])
            if args.get("type"):
                await type_into(pilot, form.query_one("#rm-type", Input), args["type"])
    await pilot.press("enter")
    await settle(pilot)


async def answer(pilot: Pilot[Any], step: QuestionStep, given: str) -> None:
    """Answer a question with the keyboard: a choice id, or text."""
    from textual.widgets import Input

    screen = lab_screen(pilot.app)  # type: ignore[arg-type]
    if step.multiple_choice:
        options = screen.query_one("#question #choices", OptionList)
        options.focus()
        await pilot.pause()
        index = [c.id for c in step.choices].index(given)
        start = options.highlighted or 0
        moves = index - start
        await pilot.press(*(["down"] * moves if moves > 0 else ["up"] * -moves), "enter")
    else:
        field = screen.query_one("#question #answer", Input)
        field.value = ""
        await type_into(pilot, field, given)
        await pilot.press("enter")
    await settle(pilot)


def wrong_answer(step: QuestionStep) -> str:
    if step.multiple_choice:
        return next(c.id for c in step.choices if c.id != step.answer)
    for wrong in step.wrong:
        return wrong.answers[0]
    return "certainly not this"


async def leave_field(pilot: Pilot[Any]) -> None:
    """Esc out of a text field (Esc elsewhere goes back to the labs)."""
    from textual.widgets import Input, TextArea

    if isinstance(pilot.app.focused, Input | TextArea):
        await pilot.press("escape")
        await pilot.pause()


async def play_step(pilot: Pilot[Any], step: Step, log: list[str]) -> None:
    """Do one step the way a student would, ending with it done."""
    screen = lab_screen(pilot.app)  # type: ignore[arg-type]
    session = screen.session
    if isinstance(step, ExplainStep):
        log.append(f"{step.id}: read")
    elif isinstance(step, ExperimentStep):
        await pilot.press("r")
        await settle(pilot)
        outcome = session.results[step.id]
        assert outcome.passed, outcome.detail
        log.append(f"{step.id}: ran, {outcome.detail}")
    elif isinstance(step, QuestionStep):
        await answer(pilot, step, wrong_answer(step))
        assert not session.progress.done(step.id)
        await answer(pilot, step, step.reference_answer())
        assert session.progress.done(step.id), f"{step.id}: the right answer was not accepted"
        log.append(f"{step.id}: answered")
    elif isinstance(step, TaskStep):
        await leave_field(pilot)
        await pilot.press("c")
        await settle(pilot)
        assert not session.progress.done(step.id), f"{step.id} passed before any change"
        await pilot.press("h")
        await pilot.pause()
        for action in step.solution:
            form = screen.query_one("#task-form", TaskForm)
            await apply_with_form(pilot, form, action.to_json())
        await leave_field(pilot)
        await pilot.press("c")
        await settle(pilot)
        assert session.progress.done(step.id), f"{step.id}: the check still fails"
        log.append(f"{step.id}: fixed and checked")
    elif isinstance(step, CheckpointStep):
        await pilot.press("c")
        await settle(pilot)
        assert session.progress.done(step.id), f"{step.id}: the checkpoint fails"
        log.append(f"{step.id}: checked")
    await leave_field(pilot)
    await pilot.press("n")
    await settle(pilot)


async def play_lab(pilot: Pilot[Any], lab: LabDef) -> list[str]:
    log: list[str] = []
    for i, step in enumerate(lab.steps):
        screen = lab_screen(pilot.app)  # type: ignore[arg-type]
        assert screen.viewing == i, f"expected step {i + 1}, the screen shows {screen.viewing + 1}"
        await play_step(pilot, step, log)
    return log
