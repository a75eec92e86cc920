"""The evidence views and the keyboard, at 80x24 (issue 12 §2 and §4).

Pilot tests (``app.run_test(size=(80, 24))`` + ``pilot.press()``) on the
fixture labs, whose experiments replay recorded results
(:class:`tuikit.CannedLab`) and whose mailboxes hold messages recorded from
real runs (``tests/fixtures/mail``): one key per view of the trace, F1, Esc
that asks, focus after an answer, scrolling without Tab, hints only on
request, one attempt per repeated choice, the zone selector, the home list,
the free experiment box, the Mail view and the relay attempts a change to
the lab causes. The last test plays lab 9's greylisting steps on the real
local backend.
"""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from textual.containers import VerticalScroll
from textual.widgets import Button, DataTable, Input, OptionList, Static, TabbedContent
from tuikit import LABS, CannedStarter, canned_mail, lab_screen, settle

from sim.events import QueueAttempt, QueueDeferred
from sim.lab.catalog import find_lab, labs_dir
from sim.lab.loader import load_lab
from sim.lab.model import TaskStep
from sim.lab.progress import MemoryProgressStore
from sim.trace import TraceEvent, event
from sim.tui.app import MaillabApp
from sim.tui.confirm import ConfirmScreen
from sim.tui.experiment_box import ExperimentBox
from sim.tui.help import HELP_TEXT, HelpScreen
from sim.tui.home import HomeScreen
from sim.tui.mail_view import MailView
from sim.tui.task_form import TaskForm
from sim.tui.topo_map import TopoMap
from sim.tui.trace_view import VIEWS, TraceView
from sim.tui.tracefmt import entries_text, events_from, lab_time, pane_entries

SIZE = (80, 24)
RECEIVE = load_lab(LABS / "01-receive-only.yaml")
HOME = load_lab(LABS / "02-home-direct.yaml")

#: The key of each view of the trace, as the help lists them.
VIEW_KEYS = {
    "story": "s",
    "dns": "d",
    "net": "w",
    "smtp": "e",
    "checks": "k",
    "queue": "q",
    "mail": "b",
}


def plain(widget: Static) -> str:
    """What a Static shows, as plain text."""
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(widget.content)
    return console.export_text()


def make_app(
    lab: Any = None, done: tuple[str, ...] = (), starter: CannedStarter | None = None
) -> MaillabApp:
    store = MemoryProgressStore("student")
    if lab is not None and done:
        progress = store.load(lab.id)
        for step in done:
            progress.step(step).done = True
        store.save(progress)
    return MaillabApp(store=store, labs=LABS, starter=starter or CannedStarter(), start_lab=lab)


async def test_every_view_of_the_trace_has_its_key_and_f1_lists_them() -> None:
    app = make_app(HOME)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = lab_screen(app)
        await pilot.press("r")
        await settle(pilot)
        trace = screen.query_one("#trace", TraceView)
        # The drop's wait, on the map too.
        (wait,) = screen.query_one("#map", TopoMap).waits
        assert "no answer from 203.0.113.25:25 for 30 s" in wait.summary
        assert {v for v, _ in VIEWS} == set(VIEW_KEYS)
        for view, key in VIEW_KEYS.items():
            await pilot.press(key)
            await pilot.pause()
            assert screen.query_one("#tabs", TabbedContent).active == "tab-trace"
            assert trace.active_pane == view, f"{key} should open {view}"
        # The receivers' policy, below the map.
        await pilot.press("y")
        await pilot.pause()
        assert screen.query_one("#tabs", TabbedContent).active == "tab-map"
        policy = plain(screen.query_one("#policy", Static))
        assert "spf" in policy and "550 5.7.23" in policy
        # F1 lists every key.
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        for view, key in VIEW_KEYS.items():
            title = dict(VIEWS)[view]
            assert f"| `{key}` | {title} |" in HELP_TEXT
        assert "`y` | Policy" in HELP_TEXT
        await pilot.press("escape")
        await pilot.pause()
        assert lab_screen(app) is screen


async def test_escape_in_a_lab_asks_before_leaving() -> None:
    app = make_app(HOME)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = lab_screen(app)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert app.screen is screen, "No keeps the student in the lab"
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)


async def test_a_right_answer_takes_the_focus_out_of_the_field() -> None:
    app = make_app(HOME, done=("direct",))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = lab_screen(app)
        assert screen.viewing == 1
        field = screen.query_one("#question #answer", Input)
        assert app.focused is field
        await pilot.press(*"mx-qq", "enter")
        await settle(pilot)
        assert app.focused is field, "a wrong answer keeps the field, to try again"
        field.value = ""
        await pilot.press(*"isp", "enter")
        await settle(pilot)
        focused = app.focused
        assert isinstance(focused, Button) and focused.id == "next"
        await pilot.press("n")
        await settle(pilot)
        assert screen.viewing == 2, "n moves on instead of typing into the field"


async def test_escape_leaves_a_field_for_something_visible() -> None:
    app = make_app(HOME, done=("direct", "who", "relay"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = lab_screen(app)
        screen.query_one("#task-form #record", Input).focus()
        await pilot.press("escape")
        await pilot.pause()
        focused = app.focused
        assert isinstance(focused, Button) and focused.id == "check"
        assert lab_screen(app) is screen
        # The free experiment box: out of its field, onto its results.
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.focused, VerticalScroll)
        assert app.focused.id == "try-scroll"


async def test_the_same_choice_twice_is_one_attempt() -> None:
    app = make_app(RECEIVE, done=("finding-the-server", "dig-mx", "send-to-bob"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = lab_screen(app)
        step = screen.viewed
        assert step is not None and step.id == "mx-target"
        choices = screen.query_one("#question #choices", OptionList)
        assert app.focused is choices
        await pilot.press("enter")  # choice a, wrong
        await settle(pilot)
        await pilot.press("enter")  # a again
        await settle(pilot)
        assert screen.session.state(step).attempts == 1
        await pilot.press("down", "down", "enter")  # c, right
        await settle(pilot)
        assert screen.session.state(step).attempts == 2
        assert screen.session.progress.done(step.id)


async def test_enter_on_check_runs_it_and_a_hint_comes_only_when_asked() -> None:
    app = make_app(HOME, done=("direct", "who", "relay"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = lab_screen(app)
        step = screen.viewed
        assert isinstance(step, TaskStep)
        check = screen.query_one("#check", Button)
        check.focus()
        await pilot.press("enter")
        await settle(pilot)
        result = plain(screen.query_one("#check-result", Static))
        assert "Not yet" in result
        assert "Hint" not in result
        assert screen.session.hints_shown(step) == []
        assert screen.session.state(step).attempts == 1
        await pilot.press("h")
        await pilot.pause()
        assert len(screen.session.hints_shown(step)) == 1
        assert "Hint 1" in plain(screen.query_one("#hints", Static))


async def test_the_zone_selector_starts_on_the_zone_the_task_names() -> None:
    done = tuple(s.id for s in RECEIVE.steps[: RECEIVE.index("null-mx")])
    app = make_app(RECEIVE, done=done)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = lab_screen(app)
        assert screen.viewed is not None and screen.viewed.id == "null-mx"
        form = screen.query_one("#task-form", TaskForm)
        # ns serves qq.example first; the task is about shop.example.
        assert form.servers["ns"][0] == "qq.example"
        assert (form.node, form.zone) == ("ns", "shop.example")


async def test_page_keys_and_arrows_scroll_without_tab() -> None:
    app = make_app(HOME, done=("direct", "who"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = lab_screen(app)
        await pilot.press("r")  # the submission: a long story
        await settle(pilot)
        await pilot.press("s")
        await pilot.pause()
        # The focus elsewhere (the tab bar), as after a click on a tab.
        screen.query_one("#trace Tabs").focus()
        await pilot.pause()
        scroller = screen.query_one("#pane-story .trace-scroll", VerticalScroll)
        assert scroller.max_scroll_y > 0
        await pilot.press("pagedown")
        await pilot.pause()
        assert scroller.scroll_y > 0
        down = scroller.scroll_y
        await pilot.press("up")
        await pilot.pause()
        assert scroller.scroll_y == down - 1
        await pilot.press("end")
        await pilot.pause()
        assert scroller.scroll_y == scroller.max_scroll_y
        await pilot.press("pageup", "home")
        await pilot.pause()
        assert scroller.scroll_y == 0


async def test_a_step_opens_the_message_it_talks_about() -> None:
    app = make_app(HOME, done=("direct", "who"), starter=CannedStarter(mail=canned_mail()))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = lab_screen(app)
        assert screen.viewed is not None and screen.viewed.id == "relay"
        await pilot.press("r")
        await settle(pilot)
        trace = screen.query_one("#trace", TraceView)
        mail = trace.query_one("#mail", MailView)
        assert trace.active_pane == "mail" and mail.reading
        assert mail.parts is not None
        assert mail.parts.subject == "The home.example newsletter"
        shown = plain(mail.query_one("#mail-text", Static))
        assert "Received:" in shown and "DKIM-Signature" in shown
        assert "dkim=" in shown
        # v: the raw source; Esc: back to the list, not out of the lab.
        await pilot.press("v")
        await pilot.pause()
        assert mail.raw
        assert "Return-Path: <alice@home.example>" in plain(mail.query_one("#mail-text", Static))
        await pilot.press("escape")
        await pilot.pause()
        assert not mail.reading and lab_screen(app) is screen
        # The list has every mailbox: alice's bounce can be opened too.
        options = mail.query_one("#mail-list", OptionList)
        assert app.focused is options
        titles = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert any("alice@home.example · INBOX" in t for t in titles)
        bounce = next(i for i, t in enumerate(titles) if "Undelivered Mail" in t)
        options.highlighted = bounce
        await pilot.press("enter")
        await pilot.pause()
        assert mail.parts is not None and mail.parts.dsn is not None
        text = plain(mail.query_one("#mail-text", Static))
        assert "Action" in text and "failed" in text and "5.1.1" in text
        # o opens the step's message again from anywhere.
        await pilot.press("1", "o")
        await settle(pilot)
        assert mail.parts.subject == "The home.example newsletter"
        # n from the Mail view shows the next step, on the Step tab.
        await pilot.press("n")
        await settle(pilot)
        assert screen.viewing == 3
        assert screen.query_one("#tabs", TabbedContent).active == "tab-step"


async def test_the_free_experiment_box_runs_an_idea_into_the_trace() -> None:
    app = make_app(HOME)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = lab_screen(app)
        await pilot.press("x")
        await pilot.pause()
        box = screen.query_one("#try", ExperimentBox)
        field = box.query_one("#try-input", Input)
        assert app.focused is field
        await pilot.press(*"ping laptop", "enter")
        await pilot.pause()
        assert "not an experiment" in plain(box.query_one("#try-result", Static))
        field.value = ""
        await pilot.press(*"send laptop bob@qq.example", "enter")
        await settle(pilot)
        assert box.last is not None and box.last.data is not None
        trace = screen.query_one("#trace", TraceView)
        assert trace.data is not None and trace.data["outcome"] == "blocked"
        assert not screen.session.progress.done("direct"), "a free experiment is not judged"
        # The same views: the wait after the drop is in the Network view.
        net = entries_text(pane_entries("net", events_from(trace.data)))
        assert "no answer from 203.0.113.25:25 for 30 s" in net


def _attempt(queue_id: str, attempt: int) -> QueueAttempt:
    return QueueAttempt(
        queue_id=queue_id,
        rcpt="bob@qq.example",
        rcpts=["bob@qq.example"],
        mx="mx.qq.example",
        address="203.0.113.25",
        port=25,
        attempt=attempt,
    )


async def test_relay_attempts_a_change_causes_join_the_queue_view() -> None:
    starter = CannedStarter()
    app = make_app(HOME, done=("direct", "who", "relay"), starter=starter)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = lab_screen(app)
        lab = starter.labs[0]
        lab.log = [
            event(
                301.0,
                "smtp-isp",
                "01AB attempt 2: MX mx.qq.example [203.0.113.25]:25 for <bob@qq.example>",
                _attempt("01AB", 2),
            ),
            event(
                301.1,
                "smtp-isp",
                "01AB <bob@qq.example> deferred",
                QueueDeferred(
                    rcpt="bob@qq.example",
                    queue_id="01AB",
                    remote_mta=None,
                    stage="connect",
                    next_attempt=2102.0,
                    reply={
                        "code": 451,
                        "enhanced": "4.4.1",
                        "text": "connect to mx.qq.example[203.0.113.25]:25: connection refused",
                    },
                ),
            ),
        ]
        form = screen.query_one("#task-form", TaskForm)
        form.query_one("#mode").focus()
        await pilot.press("right", "right", "right", "enter")
        await settle(pilot)
        await pilot.press("tab", *"advance: 10m", "enter")
        await settle(pilot)
        queue = entries_text(pane_entries("queue", events_from(screen.query_one("#trace").data)))
        assert "advance 10m" in queue or "10m" in queue
        assert "attempt 2" in queue
        # The relay's own record of a connection it could not open.
        assert "connection refused: no server answered; the relay records 451 4.4.1" in queue
        assert "next attempt at" in queue


async def test_home_lists_tries_hints_time_and_moves_on_after_a_lab() -> None:
    done = tuple(s.id for s in RECEIVE.steps[:-1])
    store = MemoryProgressStore("student")
    progress = store.load(RECEIVE.id)
    for step_id in done:
        progress.step(step_id).done = True
    progress.step("null-mx").attempts = 3
    progress.step("null-mx").hints = 1
    progress.seconds = 600.0
    store.save(progress)
    mail = canned_mail()
    mail[("bob@qq.example", "INBOX")] *= 2
    app = MaillabApp(store=store, labs=LABS, starter=CannedStarter(mail=mail))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        home = app.screen
        assert isinstance(home, HomeScreen)
        table = home.query_one("#labs", DataTable)
        labels = [str(c.label) for c in table.columns.values()]
        assert labels == ["#", "Lab", "Status", "Tries", "Hints", "Spent"]
        row = [str(c) for c in table.get_row_at(0)]
        assert row[3:6] == ["3", "1", "10m"]
        # A title longer than its column wraps onto a second line.
        assert all(len(str(c)) <= 80 for c in row)
        assert table.cursor_row == 0
        await pilot.press("enter")
        await settle(pilot)
        screen = lab_screen(app)
        await pilot.press("c")  # the last step, a checkpoint
        await settle(pilot)
        assert screen.session.complete
        await pilot.press("n")
        await settle(pilot)
        await pilot.press("escape", "y")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert table.cursor_row == 1, "after a lab is finished the cursor is on the next"
        # The time the lab was open is counted on top.
        assert store.load(RECEIVE.id).seconds > 600.0


async def test_lab_nine_retries_after_a_settle_are_in_the_queue_view(tmp_path: Any) -> None:
    """The real local backend: greylisted, then an hour of lab time; the
    second attempt is in the Queue view with its lab time."""
    lab = load_lab(find_lab("reliability", labs_dir()))
    app = MaillabApp(store=MemoryProgressStore("s"), start_lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = lab_screen(app)
        await pilot.press("n")
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        assert screen.session.progress.done("greylisted")
        await pilot.press("n")
        await settle(pilot)
        form = screen.query_one("#task-form", TaskForm)
        assert form.mode == "other"
        form.query_one("#other", Input).focus()
        await pilot.press(*"settle: 1h", "enter")
        await settle(pilot)
        trace = screen.query_one("#trace", TraceView)
        queue = entries_text(pane_entries("queue", events_from(trace.data)))
        assert "settle 1h" in queue or "settle: 1h" in queue or "1h" in queue
        assert "attempt 2" in queue
        assert "delivered" in queue
        await pilot.press("escape", "c")
        await settle(pilot)
        assert screen.session.progress.done("wait-for-retry")


async def test_attempts_made_while_the_student_reads_join_the_queue_view() -> None:
    """Lab time runs on after an experiment: a retry that falls due while
    the student reads is added when a view of the trace is opened."""
    starter = CannedStarter()
    app = make_app(HOME, done=("direct", "who"), starter=starter)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = lab_screen(app)
        await pilot.press("r")
        await settle(pilot)
        lab = starter.labs[0]
        lab.log = [
            TraceEvent(40.0, "queue", "smtp-isp", "before the trace: not added", {}),
            event(
                351.9,
                "smtp-isp",
                "93F9B0285C attempt 2: MX mx.qq.example",
                _attempt("93F9B0285C", 2),
            ),
            event(
                352.0,
                "smtp-isp",
                "0000000000 another message's attempt: not added",
                _attempt("0000000000", 1),
            ),
        ]
        await pilot.press("q")
        await pilot.pause()
        trace = screen.query_one("#trace", TraceView)
        queue = entries_text(pane_entries("queue", events_from(trace.data)))
        assert "meanwhile, as lab time ran on by itself" in queue
        assert "your change" not in queue
        first = min(e.t for e in events_from(trace.data))
        assert f"{lab_time(351.9, first)} attempt   smtp-isp: 93F9B0285C attempt 2" in queue
        assert "not added" not in queue
        # Opening it again adds nothing twice.
        await pilot.press("s", "q")
        await pilot.pause()
        again = entries_text(pane_entries("queue", events_from(trace.data)))
        assert again.count("attempt 2") == 1
