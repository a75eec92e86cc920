"""The maillab TUI (Textual): ``maillab`` and ``maillab run LAB``.

Screens, one module each, with their ``.tcss`` beside them:
:mod:`~sim.tui.home` (the labs and progress), :mod:`~sim.tui.lab` (one lab,
step by step), :mod:`~sim.tui.help`, :mod:`~sim.tui.confirm`. Widgets:
:mod:`~sim.tui.trace_view`, :mod:`~sim.tui.topo_map`, :mod:`~sim.tui.question`,
:mod:`~sim.tui.task_form`, :mod:`~sim.tui.activity`. Pure renderings, tested
without a terminal: :mod:`~sim.tui.tracefmt` (trace panes),
:mod:`~sim.tui.mapdraw` (the map and the walks), :mod:`~sim.tui.inline`.
The app and :func:`~sim.tui.app.run_tui` are in :mod:`~sim.tui.app`; the
``run`` subcommand in :mod:`~sim.tui.command`.

Nothing is imported here, so that ``maillab list`` does not load Textual.
"""
