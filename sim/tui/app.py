"""The maillab TUI: the Textual application and ``run_tui``.

``maillab`` alone opens the home screen (:mod:`sim.tui.home`); ``maillab run
LAB`` opens a lab at once (:mod:`sim.tui.lab`). The app holds what every
screen shares: where the labs are, the progress store, the backend, and the
lab sessions that are running (stopped when their screen closes, and again,
to be sure, when the app exits).

Styles live in ``.tcss`` files beside each module; colours come from the
theme, which follows the terminal's light or dark background
(:mod:`sim.tui.theme`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding

from sim.lab.catalog import find_lab, labs_dir, refuse_backend
from sim.lab.engine import Starter
from sim.lab.loader import load_lab
from sim.lab.model import LabDef
from sim.lab.progress import FileProgressStore, ProgressStore
from sim.tui.help import HelpScreen
from sim.tui.home import HomeScreen
from sim.tui.lab import LabScreen
from sim.tui.labrun import Catalog, TracingSession
from sim.tui.theme import choose_theme

__all__ = ["MaillabApp", "run_tui"]

_HERE = Path(__file__).parent


class MaillabApp(App[int]):
    """The labs, one at a time, on running topologies."""

    TITLE = "maillab"
    SUB_TITLE = "a lab for email architecture"
    CSS_PATH = [
        _HERE / name
        for name in (
            "app.tcss",
            "home.tcss",
            "lab.tcss",
            "help.tcss",
            "confirm.tcss",
            "activity.tcss",
            "trace_view.tcss",
            "topo_map.tcss",
            "question.tcss",
            "task_form.tcss",
            "mail_view.tcss",
            "experiment_box.tcss",
            "student.tcss",
            "notice.tcss",
        )
    ]

    BINDINGS = [
        Binding("f1,question_mark", "help", "Help"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        *,
        labs: str | Path | None = None,
        store: ProgressStore | None = None,
        backend: str = "local",
        start_lab: LabDef | None = None,
        starter: Starter | None = None,
        theme: str | None = None,
        ask_student: bool = False,
    ) -> None:
        super().__init__()
        #: Ask the student id first (its first start: run_tui decides).
        self.ask_student = ask_student
        self.labs_override = labs
        self.store: ProgressStore = store if store is not None else FileProgressStore()
        self.backend = backend
        self.start_lab = start_lab
        self.starter = starter
        self.sessions: list[TracingSession] = []
        #: The id of a lab the student just finished (the home list moves on).
        self.just_finished: str | None = None
        self.catalog = Catalog()
        if theme is not None:
            self.theme = theme

    def labs_directory(self) -> Path:
        return labs_dir(self.labs_override)

    def on_mount(self) -> None:
        self.push_screen(HomeScreen())
        if self.ask_student:
            from sim.tui.student import StudentScreen

            path = self.store.path if isinstance(self.store, FileProgressStore) else None
            self.push_screen(StudentScreen(self.store.student, path), self._student_given)
        elif self.start_lab is not None:
            self.open_lab(self.start_lab)

    def _student_given(self, student: str | None) -> None:
        if student:
            self.store.student = student
            self.notify(f"Student id: {student}", timeout=4)
        if self.start_lab is not None:
            self.open_lab(self.start_lab)

    @property
    def student(self) -> str | None:
        """Whose variant the labs run as: the progress file's student (a
        store kept in memory, as tests use, runs the labs as loaded)."""
        return self.store.student if isinstance(self.store, FileProgressStore) else None

    # -- labs ----------------------------------------------------------------------

    def open_lab(self, lab: LabDef) -> None:
        """Open the lab screen (the lab starts there, in a worker); a lab
        this backend does not run (``backends:``) opens a notice saying how
        to run it instead."""
        if not lab.runs_on(self.backend):
            from sim.tui.notice import BackendNotice

            self.push_screen(BackendNotice(lab, self.backend))
            return
        session = TracingSession(
            lab, self.backend, store=self.store, starter=self.starter, student=self.student
        )
        self.push_screen(LabScreen(session.definition, session))

    def session_started(self, session: TracingSession) -> None:
        if session not in self.sessions:
            self.sessions.append(session)

    def stop_session(self, session: TracingSession) -> None:
        """Stop a lab's topology in a worker thread (a mininet lab takes
        seconds to stop); problems stopping it are shown, not raised."""
        if session.lab is None:
            if session in self.sessions:
                self.sessions.remove(session)
            return
        self._stop_in_thread(session)

    @work(thread=True, group="stop", exit_on_error=False)
    def _stop_in_thread(self, session: TracingSession) -> None:
        try:
            session.stop()
            # Listed until stopped, so that stop_all() at exit catches a
            # stop still under way.
            if session in self.sessions:
                self.sessions.remove(session)
        except Exception as err:  # a backend that fails to stop must not crash the UI
            with contextlib.suppress(RuntimeError):
                self.call_from_thread(
                    self.notify, f"stopping the lab: {err}", severity="error", timeout=10
                )

    def stop_all(self) -> None:
        for session in list(self.sessions):
            with contextlib.suppress(Exception):
                session.stop()
        self.sessions.clear()

    # -- actions --------------------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        self.stop_all()
        self.exit(0)


def run_tui(
    lab_id: str | None = None,
    backend: str = "local",
    *,
    labs: str | Path | None = None,
    lab: LabDef | None = None,
) -> int:
    """Run the TUI in this terminal: the home screen, or ``lab_id`` at once
    (``lab``: that lab, loaded already).

    An unknown lab, a lab file with problems or a lab that does not run on
    ``backend`` raises :class:`~sim.errors.SimError` before the screen is
    taken over (the CLI prints it as one line).
    """
    start = lab
    if start is None and lab_id is not None:
        start = load_lab(find_lab(lab_id, labs_dir(labs)))
    if start is not None:
        refuse_backend(start.id, start.backends, backend, "run")
    from sim.tui.student import needs_student

    app = MaillabApp(
        labs=labs,
        backend=backend,
        start_lab=start,
        theme=choose_theme(),
        ask_student=needs_student(),
    )
    try:
        code = app.run()
    finally:
        app.stop_all()
    if app.return_code not in (None, 0):
        return int(app.return_code)
    return int(code or 0)
