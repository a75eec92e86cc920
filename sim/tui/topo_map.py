"""The topology map: routers, hosts and links, with the last experiment's path.

The map (drawn by :mod:`sim.tui.mapdraw`) highlights *the message*: the TCP
connections the experiment made (or, for a ``dig``, its queries), the node
where it stopped marked ✗ (the ISP router that dropped port 25, the MX that
refused it, the web server where nothing listens), and the way it would have
gone on, dimmed. ``[`` and ``]`` step through every packet of the trace one
at a time (DNS queries included), so the student can see each hop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text
from textual.binding import Binding
from textual.reactive import reactive
from textual.widget import Widget

from sim.topology.graph import LabNetwork
from sim.trace import TraceEvent
from sim.tui.mapdraw import (
    MapStyles,
    Walk,
    describe_walk,
    draw_map,
    message_walks,
    walks_from_trace,
    walks_heading,
)

__all__ = ["TopoMap"]


class TopoMap(Widget, can_focus=True):
    """A compact map of a lab network with walks drawn on it."""

    COMPONENT_CLASSES = {
        "topo-map--router",
        "topo-map--host",
        "topo-map--path",
        "topo-map--stop",
        "topo-map--onward",
        "topo-map--dim",
    }

    BINDINGS = [
        Binding("right_square_bracket,right", "next_walk", "Next packet", show=False),
        Binding("left_square_bracket,left", "previous_walk", "Previous packet", show=False),
    ]

    #: 0: the message (every connection it made); 1..n: one packet each.
    selected: reactive[int] = reactive(0)

    def __init__(
        self,
        network: LabNetwork | None = None,
        *,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.network = network
        self.walks: list[Walk] = []
        self.waits: list[TraceEvent] = []
        self._main: list[Walk] = []

    def show(
        self,
        events: Sequence[TraceEvent],
        result: Mapping[str, Any] | None = None,
        source: str | None = None,
    ) -> None:
        """Draw the walks of a trace (an empty trace: just the map)."""
        self.walks = walks_from_trace(events, self.network, result, source)
        # A dropped connection's wait (sim.tui.tracefmt.add_waits): the map
        # shows where it stopped, and this says how long nothing came back.
        self.waits = [e for e in events if e.kind == "wait"]
        self._main = message_walks(self.walks)
        self.selected = 0
        self.refresh(layout=True)

    @property
    def shown(self) -> list[Walk]:
        """The walks drawn now."""
        if self.selected == 0 or not self.walks:
            return self._main
        return [self.walks[self.selected - 1]]

    def watch_selected(self) -> None:
        self.refresh(layout=True)

    def action_next_walk(self) -> None:
        if self.walks:
            self.selected = (self.selected + 1) % (len(self.walks) + 1)

    def action_previous_walk(self) -> None:
        if self.walks:
            self.selected = (self.selected - 1) % (len(self.walks) + 1)

    def _styles(self) -> MapStyles:
        def style(name: str) -> Any:
            return self.get_component_rich_style(f"topo-map--{name}", partial=True)

        return MapStyles(
            router=style("router"),
            host=style("host"),
            path=style("path"),
            stop=style("stop"),
            onward=style("onward"),
            dim=style("dim"),
        )

    def render(self) -> RenderableType:
        if self.network is None:
            return Text("No map: the topology did not load.", style="dim")
        styles = self._styles()
        width = max(20, self.content_size.width or self.size.width or 80)
        parts: list[RenderableType] = [draw_map(self.network, width, self.shown, styles), Text()]
        if not self.walks:
            parts.append(
                Text("No experiment yet: the path of the next one is drawn here.", style="dim")
            )
            return Group(*parts)
        heading = Text()
        if self.selected == 0:
            heading.append(walks_heading(self._main), style="bold")
        else:
            heading.append(f"Packet {self.selected} of {len(self.walks)}", style="bold")
        heading.append("   [ ] step through every packet", style="dim")
        parts.append(heading)
        parts.extend(describe_walk(walk, styles) for walk in self.shown)
        for wait in self.waits:
            parts.append(Text(f"{wait.node}: {wait.summary}", style="yellow"))
        return Group(*parts)
