"""One reader of paths: the TUI's map and the notebook's journey read the way
a message went from the same function (sim.present.walks), so they agree on
every trace."""

from __future__ import annotations

from typing import Any

import pytest
from tuikit import CANNED, FIXTURES

from sim.notebook import journey
from sim.present.walks import Walk, message_walks, read_walks, walks_from_trace
from sim.topology import load_topology
from sim.topology.graph import LabNetwork, build_network
from sim.trace import TraceEvent
from sim.tui.tracefmt import events_from

HOME = build_network(load_topology(FIXTURES / "topologies" / "home-isp.yaml"))
RECEIVE = build_network(load_topology(FIXTURES / "topologies" / "receive-only.yaml"))


def network_of(key: str) -> LabNetwork:
    return HOME if " laptop " in key else RECEIVE


def whole(walk: Walk) -> tuple[str, ...]:
    """The way a walk went, and on from where it stopped (the map's dashes)."""
    if len(walk.onward) > 1 and walk.onward[0] in walk.nodes:
        return walk.nodes[: walk.nodes.index(walk.onward[0])] + walk.onward
    return walk.nodes


@pytest.mark.parametrize("key", sorted(CANNED))
def test_the_map_and_the_journey_read_the_same_way(key: str) -> None:
    data: dict[str, Any] = CANNED[key]
    network = network_of(key)
    events = events_from(data)
    way = journey(network, events)
    shown = [w for w in message_walks(read_walks(events, network))]
    assert way.legs == tuple(whole(w) for w in shown), key
    stops = [w.stopped_at for w in shown if w.stopped_at and not w.refused]
    assert way.stopped_at == (stops[-1] if stops and shown[-1].stopped_at else None)


def test_a_drop_is_the_same_stop_in_both_views() -> None:
    data = CANNED["send laptop bob@qq.example direct"]
    events = events_from(data)
    (walk,) = message_walks(walks_from_trace(events, HOME, data, "laptop"))
    way = journey(HOME, events)
    assert walk.stopped_at == way.stopped_at == "isp"
    assert way.path == whole(walk) == ("laptop", "isp", "internet", "mx-qq")


def test_a_relay_is_two_legs_joined_at_the_relay_in_both_views() -> None:
    data = CANNED["send laptop bob@qq.example smtp-isp"]
    events = events_from(data)
    walks = message_walks(walks_from_trace(events, HOME, data, "laptop"))
    way = journey(HOME, events)
    assert way.legs == tuple(w.nodes for w in walks)
    assert way.path == ("laptop", "isp", "smtp-isp", "isp", "internet", "mx-qq")


def _net(t: float, path: list[str], dst: str, verdict: str = "accept") -> TraceEvent:
    data = {"src": "192.0.2.25", "dst": dst, "proto": "tcp", "port": 25, "verdict": verdict}
    if verdict != "closed":
        data["path"] = path
    return TraceEvent(t, "net", path[0], f"tcp to {dst}:25 {verdict}", data)


def _reply(t: float, code: int, dst: str) -> TraceEvent:
    data = {"role": "client", "peer": f"{dst}:25", "command": "RCPT TO:<b@qq.example>"}
    return TraceEvent(t, "smtp", "mta", f"{code}", {**data, "code": code, "text": "later"})


def test_a_deferral_then_a_delivery_and_a_retry_elsewhere() -> None:
    """Greylisted first (450), then delivered: the map marks the deferred
    connection; the journey's way ends delivered, one leg for the repeat. A
    closed MX then another: the journey keeps the closed one as failed."""
    mx = ["mta", "internet", "mx-qq"]
    events = [
        _net(1.0, mx, "203.0.113.25"),
        _reply(1.1, 450, "203.0.113.25"),
        _net(2.0, mx, "203.0.113.25"),
        _reply(2.1, 250, "203.0.113.25"),
    ]
    walks = read_walks(events, RECEIVE)
    assert [w.nodes for w in walks] == [tuple(mx)]
    assert walks[0].refused and walks[0].stopped_at == "mx-qq"
    way = journey(RECEIVE, events)
    assert way.legs == (tuple(mx),) and way.stopped_at is None

    closed = [
        _net(1.0, mx, "203.0.113.25"),
        _net(1.0, mx, "203.0.113.25", "closed"),
        _net(2.0, ["mta", "internet", "web-shop"], "203.0.113.80"),
    ]
    walks = read_walks(closed, RECEIVE)
    assert [(w.nodes[-1], w.stopped_at) for w in walks] == [("mx-qq", "mx-qq"), ("web-shop", None)]
    way = journey(RECEIVE, closed)
    assert way.failed == (tuple(mx),)
    assert way.legs == tuple(w.nodes for w in walks)


def test_a_retry_after_other_packets_is_its_own_walk_and_the_same_way() -> None:
    """Greylisted (450), a DNS question, then the retry delivered: the map
    steps through both attempts (the first deferred); the journey's way is
    the one path, not stopped, as the retry went the same way."""
    mx = ["mta", "internet", "mx-qq"]
    dns = TraceEvent(
        1.5,
        "net",
        "mta",
        "udp to ns",
        {
            "src": "192.0.2.10",
            "dst": "198.51.100.53",
            "proto": "udp",
            "port": 53,
            "verdict": "accept",
            "path": ["mta", "internet", "ns"],
        },
    )
    events = [
        _net(1.0, mx, "203.0.113.25"),
        _reply(1.1, 450, "203.0.113.25"),
        dns,
        _net(2.0, mx, "203.0.113.25"),
        _reply(2.1, 250, "203.0.113.25"),
    ]
    tcp = message_walks(read_walks(events, RECEIVE))
    assert [(w.nodes[-1], w.stopped_at, w.refused) for w in tcp] == [
        ("mx-qq", "mx-qq", True),
        ("mx-qq", None, False),
    ]
    way = journey(RECEIVE, events)
    assert way.path == tuple(mx) and way.stopped_at is None
