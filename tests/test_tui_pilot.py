"""The TUI driven with the keyboard (``app.run_test()`` + ``pilot.press()``).

The main test plays the first lab of the curriculum from the home screen to
its end on the real local backend, as a student would: read, run each
experiment, answer each question (a wrong answer first, to see its
feedback), check each task before and after making its change through the
task form, pass the checkpoint. The others cover what students meet on the
way: resuming, resetting, a slow step's progress line, errors as
notifications rather than tracebacks, the help screen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.widgets import Input, Static
from tuikit import LABS, CannedStarter, lab_screen, play_lab, settle

from sim.errors import BackendUnavailable, Problem, TopologyError
from sim.lab.catalog import find_lab, labs_dir
from sim.lab.loader import load_lab
from sim.lab.progress import FileProgressStore, MemoryProgressStore
from sim.tui.activity import Activity
from sim.tui.app import MaillabApp
from sim.tui.help import HelpScreen
from sim.tui.home import HomeScreen
from sim.tui.lab import LabScreen
from sim.tui.task_form import TaskForm
from sim.tui.topo_map import TopoMap
from sim.tui.trace_view import TraceView

SIZE = (80, 24)


async def test_a_whole_lab_from_the_home_screen_to_its_end(tmp_path: Path) -> None:
    # The TUI runs the student's own variant of the lab (issue 16).
    lab = load_lab(find_lab("receive-only", labs_dir()), student="student")
    store = FileProgressStore(tmp_path / "progress.json", "student")
    app = MaillabApp(store=store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        home = app.screen
        assert isinstance(home, HomeScreen)
        # The lab list: lab 1 is first; Enter starts it.
        assert home.entries[0].id == lab.id
        assert home.entries[0].state == "new"
        await pilot.press("enter")
        await settle(pilot)
        screen = lab_screen(app)
        assert screen.started and screen.session.lab is not None

        log = await play_lab(pilot, lab)

        assert [line.split(":")[0] for line in log] == [s.id for s in lab.steps]
        assert screen.session.complete
        # The end of the lab, then back to the list, which shows it done.
        assert screen.viewed is None
        await pilot.press("escape", "y")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert app.screen.entries[0].state == "done"
        assert screen.session.lab is None, "leaving the lab stops its topology"
    saved = FileProgressStore(tmp_path / "progress.json", "student").load(lab.id)
    assert saved.completed is not None
    assert all(saved.done(s.id) for s in lab.steps)


async def test_experiments_fill_the_trace_and_the_map() -> None:
    lab = load_lab(LABS / "02-home-direct.yaml")
    app = MaillabApp(store=MemoryProgressStore(), starter=CannedStarter(), start_lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = lab_screen(app)
        await pilot.press("r")
        await settle(pilot)
        trace = screen.query_one("#trace", TraceView)
        assert trace.data is not None and trace.data["outcome"] == "blocked"
        topo = screen.query_one("#map", TopoMap)
        (walk,) = topo.shown
        # The ISP router dropped port 25; the rest of the way is known.
        assert walk.nodes == ("laptop", "isp")
        assert walk.stopped_at == "isp"
        assert walk.onward == ("isp", "internet", "mx-qq")
        await pilot.press("3")
        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert topo.selected == 1 and topo.shown == [topo.walks[0]]
        await pilot.press("2")
        await pilot.pause()
        assert screen.query_one("#tabs").active == "tab-trace"


async def test_resuming_a_lab_continues_where_the_student_left(tmp_path: Path) -> None:
    lab = load_lab(LABS / "02-home-direct.yaml")
    path = tmp_path / "progress.json"
    app = MaillabApp(store=FileProgressStore(path, "s"), starter=CannedStarter(), labs=LABS)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("down", "enter")  # the second lab of the list
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        assert lab_screen(app).viewing == 1
        await pilot.press("ctrl+q")
    starter = CannedStarter()
    again = MaillabApp(store=FileProgressStore(path, "s"), starter=starter, labs=LABS)
    async with again.run_test(size=SIZE) as pilot:
        await settle(pilot)
        home = again.screen
        assert isinstance(home, HomeScreen)
        assert [e.state for e in home.entries] == ["new", "1/5"]
        await pilot.press("down", "enter")
        await settle(pilot)
        screen = lab_screen(again)
        assert screen.lab.id == lab.id
        assert screen.viewing == 1, "resumes at the first step not done"


async def test_reset_asks_first_then_forgets_the_progress(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    store = FileProgressStore(path, "s")
    lab = load_lab(LABS / "02-home-direct.yaml")
    progress = store.load(lab.id)
    progress.step("direct").done = True
    store.save(progress)
    app = MaillabApp(store=store, starter=CannedStarter(), labs=LABS)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("down", "r")
        await settle(pilot)
        await pilot.press("n")  # no: nothing happens
        await settle(pilot)
        assert store.exists(lab.id)
        await pilot.press("r", "y")
        await settle(pilot)
        assert not store.exists(lab.id)
        home = app.screen
        assert isinstance(home, HomeScreen)
        assert home.entries[1].state == "new"


async def test_a_slow_step_shows_its_progress_and_blocks_no_keys() -> None:
    lab = load_lab(LABS / "02-home-direct.yaml")
    app = MaillabApp(store=MemoryProgressStore(), starter=CannedStarter(delay=0.6), start_lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = lab_screen(app)
        activity = screen.query_one("#activity", Activity)
        assert not activity.running
        await pilot.press("r")
        await pilot.pause(0.3)
        assert activity.running
        text = str(activity.query_one("#activity-text", Static).render())
        assert "Running: send from laptop to bob@qq.example" in text
        # The screen still answers while the experiment runs.
        await pilot.press("3")
        await pilot.pause()
        assert screen.query_one("#tabs").active == "tab-map"
        await pilot.press("1", "r")  # a second run while busy is refused, politely
        await settle(pilot)
        assert not activity.running
        assert screen.session.progress.done("direct")


async def test_a_missing_backend_is_a_notification_not_a_traceback() -> None:
    def starter(topology: Any, backend: str) -> Any:
        raise BackendUnavailable("the mininet backend needs root (run maillab with sudo)")

    lab = load_lab(LABS / "02-home-direct.yaml")
    app = MaillabApp(store=MemoryProgressStore(), starter=starter, backend="mininet", labs=LABS)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen), "a lab that cannot start goes back home"
        messages = [n.message for n in app._notifications]
        assert any("needs root" in m for m in messages), messages
    assert app.return_code in (None, 0)
    assert lab.id


async def test_a_bad_topology_and_a_bug_are_readable_lines() -> None:
    problem = Problem("topologies/home-isp.yaml", 7, 3, "nodes.isp.firewall[0].dport: bad port")

    def bad_topology(topology: Any, backend: str) -> Any:
        raise TopologyError([problem])

    lab = load_lab(LABS / "02-home-direct.yaml")
    app = MaillabApp(store=MemoryProgressStore(), starter=bad_topology, start_lab=lab)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert any(str(problem) in n.message for n in app._notifications)

    class Buggy(CannedStarter):
        def __call__(self, topology: Any, backend: str) -> Any:
            lab = super().__call__(topology, backend)
            lab.send = lambda *a, **k: 1 / 0  # type: ignore[method-assign]
            return lab

    app = MaillabApp(store=MemoryProgressStore(), starter=Buggy(), start_lab=lab)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, LabScreen), "a bug in one call leaves the lab running"
        assert any("internal error: ZeroDivisionError" in n.message for n in app._notifications)


async def test_a_task_form_shows_errors_inline_and_applies_valid_input() -> None:
    lab = load_lab(LABS / "02-home-direct.yaml")
    starter = CannedStarter()
    app = MaillabApp(store=MemoryProgressStore(), starter=starter, start_lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = lab_screen(app)
        screen.session.progress.step("direct").done = True
        screen.session.progress.step("who").done = True
        screen.session.progress.step("relay").done = True
        screen.view(3)
        await settle(pilot)
        form = screen.query_one("#task-form", TaskForm)
        assert form.mode == "add"
        record = form.query_one("#record", Input)
        record.focus()
        await pilot.press(*"mail A 203.0.113")
        await pilot.pause()
        error = form.query_one("#error-add", Static)
        assert "A data is an IPv4 address" in str(error.render())
        assert form.query_one("#apply").disabled
        await pilot.press(*".25", "enter")
        await settle(pilot)
        assert str(error.render()) == ""
        # Applied on the lab's DNS, recorded for resuming, the field emptied.
        assert "mail.qq.example." in starter.labs[0].stores["ns"].zone_text("qq.example")
        assert screen.session.progress.actions[-1]["action"] == {
            "dns_add": {"node": "ns", "zone": "qq.example", "record": "mail A 203.0.113.25"}
        }
        assert record.value == ""


async def test_help_opens_anywhere_and_closes_with_escape() -> None:
    app = MaillabApp(store=MemoryProgressStore(), labs=LABS)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen | HelpScreen)
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
