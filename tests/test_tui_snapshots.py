"""SVG snapshots of the TUI's screens, at 80x24 and at a larger size.

The labs are the fixture copies in ``tests/fixtures/tui/labs`` and the
experiments replay recorded results (``tuikit.CannedLab``), so a snapshot
changes only when the screen does. After a deliberate change of a screen:
``pytest tests/test_tui_snapshots.py --snapshot-update``, look at the SVGs in
``tests/__snapshots__/test_tui_snapshots/``, and commit them.
"""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input
from tuikit import LABS, CannedStarter, canned_mail, settle

from sim.lab.loader import load_lab
from sim.lab.progress import MemoryProgressStore
from sim.tui.app import MaillabApp

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 36), id="120x36")]

RECEIVE = load_lab(LABS / "01-receive-only.yaml")
HOME = load_lab(LABS / "02-home-direct.yaml")


def make_app(lab: Any = None, done: tuple[str, ...] = ()) -> MaillabApp:
    store = MemoryProgressStore("student")
    if lab is not None and done:
        progress = store.load(lab.id)
        for step in done:
            progress.step(step).done = True
        store.save(progress)
    return MaillabApp(
        store=store,
        labs=LABS,
        starter=CannedStarter(mail=canned_mail()),
        start_lab=lab,
        theme="textual-dark",
    )


async def ready(pilot: Pilot[Any]) -> None:
    await settle(pilot)
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False  # a blinking cursor would make the snapshot flicker


async def still(pilot: Pilot[Any]) -> None:
    """Settle, without the toasts: they time out, so whether one is still
    on screen depends on how fast the machine is."""
    await settle(pilot)
    pilot.app.clear_notifications()
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
def test_home(snap_compare: Any, size: tuple[int, int]) -> None:
    """The labs, the first one described."""

    async def run(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        await still(pilot)

    assert snap_compare(make_app(), terminal_size=size, run_before=run)


@pytest.mark.parametrize("size", SIZES)
def test_lab_step_with_its_trace(snap_compare: Any, size: tuple[int, int]) -> None:
    """A direct send from home, dropped by the ISP: the Network pane of its trace."""

    async def run(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        await pilot.press("r")
        await settle(pilot)
        await pilot.press("w")
        await still(pilot)

    assert snap_compare(make_app(HOME), terminal_size=size, run_before=run)


@pytest.mark.parametrize("size", SIZES)
def test_map_with_the_point_where_it_stopped(snap_compare: Any, size: tuple[int, int]) -> None:
    """The topology map: the laptop's path, the ISP router marked ✗, the way onward dimmed."""

    async def run(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        await pilot.press("r")
        await settle(pilot)
        await pilot.press("3")
        await still(pilot)

    assert snap_compare(make_app(HOME), terminal_size=size, run_before=run)


@pytest.mark.parametrize("size", SIZES)
def test_question_with_feedback(snap_compare: Any, size: tuple[int, int]) -> None:
    """A multiple-choice question answered wrong: the choice marked ✗ and why."""

    async def run(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        await pilot.press("down", "enter")
        await still(pilot)

    done = ("finding-the-server", "dig-mx", "send-to-bob")
    assert snap_compare(make_app(RECEIVE, done), terminal_size=size, run_before=run)


@pytest.mark.parametrize("size", SIZES)
def test_task_form_with_an_error(snap_compare: Any, size: tuple[int, int]) -> None:
    """The zone record editor: an incomplete MX record, the problem under the field."""

    async def run(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        field = pilot.app.screen.query_one("#task-form #record", Input)
        field.focus()
        await pilot.press(*"@ MX 0")
        await still(pilot)
        field.cursor_blink = False

    done = tuple(s.id for s in RECEIVE.steps[:7])
    assert snap_compare(make_app(RECEIVE, done), terminal_size=size, run_before=run)


@pytest.mark.parametrize("size", SIZES)
def test_help(snap_compare: Any, size: tuple[int, int]) -> None:
    """The help screen over the lab list."""

    async def run(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        await pilot.press("f1")
        await still(pilot)

    assert snap_compare(make_app(), terminal_size=size, run_before=run)


@pytest.mark.parametrize("size", SIZES)
def test_mail_view_of_the_steps_message(snap_compare: Any, size: tuple[int, int]) -> None:
    """The Mail view: bob's copy opened by the step that talks about it, its
    header block and the Received: chain hop by hop."""

    async def run(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        await pilot.press("r")
        await settle(pilot)
        await still(pilot)

    assert snap_compare(make_app(HOME, ("direct", "who")), terminal_size=size, run_before=run)


@pytest.mark.parametrize("size", SIZES)
def test_mail_view_of_a_bounce(snap_compare: Any, size: tuple[int, int]) -> None:
    """A bounce: its delivery status per recipient (RFC 3464)."""

    async def run(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        await pilot.press("b")
        await settle(pilot)
        mail = pilot.app.screen.query_one("#mail")
        mail.open(1, 0)  # alice's INBOX, the bounce
        await pilot.pause()
        mail.query_one("#mail-read").scroll_to(y=7, animate=False)
        await still(pilot)

    assert snap_compare(make_app(HOME), terminal_size=size, run_before=run)


@pytest.mark.parametrize("size", SIZES)
def test_policy_view(snap_compare: Any, size: tuple[int, int]) -> None:
    """What qq.example's MX checks and what each verdict does (y)."""

    async def run(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        await pilot.press("y")
        await still(pilot)

    assert snap_compare(make_app(HOME), terminal_size=size, run_before=run)


@pytest.mark.parametrize("size", SIZES)
def test_dropped_connection_story(snap_compare: Any, size: tuple[int, int]) -> None:
    """The story of a dropped connection: the drop, then 30 s of waiting."""

    async def run(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        await pilot.press("r")
        await settle(pilot)
        await pilot.press("s", "end")
        await still(pilot)

    assert snap_compare(make_app(HOME), terminal_size=size, run_before=run)
