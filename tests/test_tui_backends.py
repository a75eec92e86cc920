"""The TUI and a lab for the mininet backend only (``backends: [mininet]``).

On the local backend the home list marks it "mininet only", its details say
how to run it, and choosing it opens a notice with the exact command: no
lab starts, nothing hangs, Enter goes back to the list. On the mininet
backend the same choice starts the lab.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.widgets import DataTable, Input, RadioButton, Select, Static
from tuikit import settle

from sim.errors import BackendUnavailable
from sim.lab.catalog import find_lab, labs_dir
from sim.lab.loader import lab_topology, load_lab
from sim.lab.model import TaskStep
from sim.lab.progress import MemoryProgressStore
from sim.topology.model import Topology
from sim.tui import task_form
from sim.tui.app import MaillabApp
from sim.tui.home import HomeScreen, details_markdown
from sim.tui.notice import BackendNotice
from sim.tui.task_form import MODE_OF_ACTION, TaskForm

SIZE = (80, 24)
COMMAND = "maillab run real-thing --backend mininet"


class Refuse:
    """A starter that records a start (none must happen on local)."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def __call__(self, topology: Any, backend: str) -> Any:
        self.started.append(backend)
        raise BackendUnavailable("the mininet backend needs root (run maillab with sudo)")


def _text(widget: Static) -> str:
    return str(widget.content)


async def _to_last_lab(pilot: Any, app: MaillabApp) -> HomeScreen:
    home = app.screen
    assert isinstance(home, HomeScreen)
    table = home.query_one("#labs", DataTable)
    await pilot.press(*["down"] * (len(home.entries) - 1))
    await settle(pilot)
    assert table.cursor_row == len(home.entries) - 1
    return home


async def test_on_local_the_list_marks_it_and_choosing_it_explains() -> None:
    starter = Refuse()
    app = MaillabApp(store=MemoryProgressStore(), starter=starter, labs=labs_dir())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        home = await _to_last_lab(pilot, app)
        entry = home.selected
        assert entry is not None and entry.id == "real-thing"
        table = home.query_one("#labs", DataTable)
        title = str(table.get_cell_at((table.cursor_row, 1)))
        assert title.endswith("[mininet only]")
        assert "[mininet only]" not in str(table.get_cell_at((0, 1)))
        details = details_markdown(entry)
        assert "Mininet only" in details and COMMAND in details
        await pilot.press("enter")
        await settle(pilot)
        notice = app.screen
        assert isinstance(notice, BackendNotice)
        said = _text(notice.query_one("#notice-text", Static))
        assert COMMAND in said and "local backend" in said and "root" in said
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert starter.started == [] and app.sessions == []
    assert app.return_code in (None, 0)


async def test_opened_by_name_on_local_it_is_the_notice_not_a_start() -> None:
    lab = load_lab(find_lab("real-thing", labs_dir()))
    starter = Refuse()
    app = MaillabApp(store=MemoryProgressStore(), starter=starter, start_lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, BackendNotice)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
    assert starter.started == []


async def test_on_mininet_choosing_it_starts_the_lab(tmp_path: Path) -> None:
    starter = Refuse()
    app = MaillabApp(
        store=MemoryProgressStore(), starter=starter, backend="mininet", labs=labs_dir()
    )
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        await _to_last_lab(pilot, app)
        await pilot.press("enter")
        await settle(pilot)
        assert not isinstance(app.screen, BackendNotice)
    assert starter.started == ["mininet"]


class FormApp(App[None]):
    """A task form alone, on the real-thing topology, as lab 13's task shows it."""

    CSS_PATH = [Path(task_form.__file__).with_name("task_form.tcss")]

    def __init__(self, topology: Topology, **kwargs: Any) -> None:
        super().__init__()
        self.topology = topology
        self.kwargs = kwargs
        self.submitted: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield TaskForm(self.topology, id="task-form", **self.kwargs)

    def on_task_form_submitted(self, event: TaskForm.Submitted) -> None:
        self.submitted.append(event.action)


async def test_the_task_form_sets_a_postfix_key_from_the_keyboard() -> None:
    lab = load_lab(find_lab("real-thing", labs_dir()))
    step = lab.step("smarthost")
    assert isinstance(step, TaskStep)
    first = step.solution[0]
    # The lab screen starts the form in the mode of the task's solution.
    assert MODE_OF_ACTION[first.name] == "key"
    app = FormApp(lab_topology(lab), mode="key", node=first.args["node"])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        form = app.query_one(TaskForm)
        assert form.mode == "key"
        assert form.query_one("#key-node", Select).value == "postfix_set:homesrv"
        labels = [str(r.label) for r in form.query(RadioButton)]
        assert labels[-1] == "Set a key"
        form.query_one("#mode").focus()
        await pilot.press("tab", "tab", *"relay host")
        await settle(pilot)
        assert form.validate() is None  # not a parameter name: Apply stays off
        assert "not a parameter name" in str(form.query_one("#error-key", Static).content)
        name = form.query_one("#key-name", Input)
        name.value = ""
        await pilot.press(*"relayhost", "tab", *"[192.0.2.25]:587", "enter")
        await settle(pilot)
    assert app.submitted == [
        {"postfix_set": {"node": "homesrv", "key": "relayhost", "value": "[192.0.2.25]:587"}}
    ]


async def test_a_topology_without_postfix_has_no_key_mode() -> None:
    lab = load_lab(find_lab("receive-only", labs_dir()))
    app = FormApp(lab_topology(lab))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        form = app.query_one(TaskForm)
        labels = [str(r.label) for r in form.query(RadioButton)]
        assert labels == ["Add a record", "Remove records", "Edit the zone", "Other"]


async def test_the_dovecot_task_starts_the_form_on_dovecot_not_postfix() -> None:
    """mx-qq runs Postfix and Dovecot: the form starts on the software the
    task's solution sets (dovecot_set), so a student typing the Dovecot
    setting is not sent to postconf; the change applied is a dovecot_set."""
    lab = load_lab(find_lab("real-thing", labs_dir()))
    step = lab.step("refuse-clear-text")
    assert isinstance(step, TaskStep)
    first = step.solution[0]
    assert first.name == "dovecot_set"
    app = FormApp(lab_topology(lab), mode="key", node=first.args["node"], action=first.name)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        form = app.query_one(TaskForm)
        assert form.query_one("#key-node", Select).value == "dovecot_set:mx-qq"
        form.query_one("#key-name", Input).focus()
        await pilot.press(*"disable_plaintext_auth", "tab", *"yes", "enter")
        await settle(pilot)
    assert app.submitted == [
        {"dovecot_set": {"node": "mx-qq", "key": "disable_plaintext_auth", "value": "yes"}}
    ]


async def test_the_key_boxes_show_an_example_of_the_software_chosen() -> None:
    lab = load_lab(find_lab("real-thing", labs_dir()))
    app = FormApp(lab_topology(lab), mode="key", node="mx-qq", action="dovecot_set")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        form = app.query_one(TaskForm)
        name = form.query_one("#key-name", Input)
        assert name.placeholder == "name, e.g. auth_mechanisms"
        form.query_one("#key-node", Select).value = "postfix_set:homesrv"
        await settle(pilot)
        assert name.placeholder == "name, e.g. myhostname"
