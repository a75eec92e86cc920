"""What the TUI shows, tested without a terminal: trace panes, the map and
its walks, the task form's checks, the theme choice, the home screen's rows.

The traces are results recorded from real runs of the local backend
(``tests/fixtures/tui/canned.json``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from tuikit import CANNED, FIXTURES, LABS

from sim.lab.progress import MemoryProgressStore
from sim.topology import load_topology
from sim.topology.graph import build_network
from sim.tui.command import register
from sim.tui.inline import inline_markdown
from sim.tui.labrun import Catalog, describe_minutes, load_entries
from sim.tui.mapdraw import draw_map, message_walks, walks_from_trace, walks_heading
from sim.tui.task_form import other_problem, record_problem, remove_problem, zone_problem
from sim.tui.theme import DARK, LIGHT, choose_theme, parse_colorfgbg, parse_osc11
from sim.tui.tracefmt import entries_text, events_from, headline, lab_time, pane_entries

HOME = build_network(load_topology(FIXTURES / "topologies" / "home-isp.yaml"))
RECEIVE = build_network(load_topology(FIXTURES / "topologies" / "receive-only.yaml"))


def names(network):  # type: ignore[no-untyped-def]
    def owner(address: str) -> str | None:
        return network.owner(address)

    return owner


def pane(key: str, which: str, network=HOME) -> str:  # type: ignore[no-untyped-def]
    return entries_text(pane_entries(which, events_from(CANNED[key]), names(network)))


# -- trace panes --------------------------------------------------------------------


def test_the_network_pane_names_the_router_and_rule_that_dropped_port_25() -> None:
    text = pane("send laptop bob@qq.example direct", "net")
    lines = text.splitlines()
    drop = next(i for i, line in enumerate(lines) if "✗ drop" in line)
    assert "tcp 100.64.10.20 → 203.0.113.25:25" in lines[drop]
    assert "path laptop → isp" in lines[drop + 1]
    assert "at isp, rule 1: drop tcp dport 25 from 100.64.0.0/10 going out" in lines[drop + 2]
    assert "residential customers may not send on port 25" in lines[drop + 3]
    # Three identical DNS packets before it read as one line with a count.
    assert "udp 100.64.10.20 → 198.51.100.53:53  ×3" in lines[0]


def test_the_smtp_pane_is_a_dialogue_with_multiline_replies_as_on_the_wire() -> None:
    text = pane("send laptop bob@qq.example smtp-isp", "smtp")
    assert "laptop → smtp-isp (192.0.2.25:587)" in text
    assert "smtp-isp → mx-qq (203.0.113.25:25)" in text
    lines = [line.strip() for line in text.splitlines()]
    ehlo = lines.index("C: EHLO smtp.home.example")
    # RFC 5321 §4.2.1: every line but the last of a reply has a hyphen.
    assert lines[ehlo + 1] == "S: 250-mx.qq.example"
    assert lines[ehlo + 2].startswith("S: 250-SIZE")
    assert "S: 250 ENHANCEDSTATUSCODES" in lines[ehlo + 3 : ehlo + 8]
    assert "C: AUTH PLAIN ********" in lines, "credentials never shown"
    assert any(line.startswith("🔒 TLS TLSv1.3") for line in lines)


def test_the_checks_pane_gives_each_verdict_with_its_explanation() -> None:
    events = events_from(CANNED["send laptop bob@qq.example smtp-isp"])
    checks = [e for e in events if e.kind == "check"]
    text = pane("send laptop bob@qq.example smtp-isp", "checks")
    assert "mx-qq judges smtp-isp (192.0.2.25)" in text
    for event in checks:
        verdict = f"{event.data['check']:<9}{event.data['result']:<10}"
        assert verdict in text
        assert str(event.data["explanation"])[:40] in " ".join(text.split())


def test_the_queue_pane_follows_the_relay() -> None:
    text = pane("send laptop bob@qq.example smtp-isp", "queue")
    events = [line.split()[1] for line in text.splitlines()]
    assert events == ["queued", "attempt", "stored", "delivered"]


def test_empty_panes_say_why_they_are_empty() -> None:
    text = pane("send laptop bob@qq.example direct", "checks")
    assert "No receiving checks ran" in text


def test_the_dns_pane_shows_question_answer_and_who_asked() -> None:
    text = pane("dig mta qq.example MX", "dns", RECEIVE)
    assert "MX qq.example.  → NOERROR  (authoritative)" in text
    assert "qq.example.  300  MX 10 mx.qq.example." in text
    assert "asked by mta (192.0.2.10) of ns (198.51.100.53) over udp" in text


def test_headlines() -> None:
    assert headline(CANNED["send mta bob@qq.example direct"]).plain.startswith(
        "delivered  250 2.0.0"
    )
    blocked = headline(CANNED["send mta info@shop.example direct"]).plain
    assert blocked.startswith("blocked at connect")
    assert "nothing listens there" in blocked
    relay = headline(CANNED["send laptop bob@qq.example smtp-isp"]).plain
    assert "spf pass" in relay and "dmarc pass" in relay
    assert headline(CANNED["dig mta qq.example MX"]).plain == (
        "qq.example. MX  NOERROR  MX 10 mx.qq.example."
    )


def test_read_headlines_say_what_the_mailbox_held_or_where_reading_stopped() -> None:
    base = {"protocol": "imap", "user": "bob@qq.example", "folder": "INBOX", "error": None}
    read = {**base, "messages": [{"subject": f"hello {i}"} for i in range(5)]}
    assert headline(read).plain.splitlines() == [
        "IMAP bob@qq.example INBOX  5 messages",
        "  hello 0",
        "  hello 1",
        "  hello 2",
        "  and 2 more",
    ]
    assert headline({**base, "messages": [{"subject": ""}]}).plain.splitlines() == [
        "IMAP bob@qq.example INBOX  1 message",
        "  (no subject)",
    ]
    refused = {
        **base,
        "protocol": "pop3",
        "messages": [],
        "error": "login refused: -ERR [AUTH] Authentication failed",
        "stage": "login",
        "reply": {"status": "-ERR", "code": "AUTH", "text": "Authentication failed"},
    }
    assert headline(refused).plain.splitlines() == [
        "POP3 bob@qq.example INBOX  failed at login  -ERR AUTH Authentication failed",
        "login refused: -ERR [AUTH] Authentication failed",
    ]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.42, "+0.42s"), (30, "+30s"), (302, "+5m02s"), (7500, "+2h05m"), (93600, "+1d02h")],
)
def test_lab_time(seconds: float, shown: str) -> None:
    assert lab_time(100 + seconds, 100) == shown


# -- the map -------------------------------------------------------------------------


def test_a_drop_stops_the_walk_at_the_router_with_the_way_onward() -> None:
    data = CANNED["send laptop bob@qq.example direct"]
    walks = message_walks(walks_from_trace(events_from(data), HOME, data, "laptop"))
    assert len(walks) == 1
    (walk,) = walks
    assert walk.nodes == ("laptop", "isp")
    assert walk.stopped_at == "isp"
    assert "by rule 1" in walk.reason
    assert walk.onward == ("isp", "internet", "mx-qq")


def test_a_closed_port_stops_at_the_host_and_a_null_mx_at_the_sender() -> None:
    data = CANNED["send mta info@shop.example direct"]
    (walk,) = message_walks(walks_from_trace(events_from(data), RECEIVE, data, "mta"))
    assert walk.stopped_at == "web-shop"
    assert walk.reason == "nothing listens on tcp/25"
    null_mx = {
        "outcome": "rejected",
        "stage": "dns",
        "reply": {"code": 556, "enhanced": "5.1.10", "text": "null MX"},
        "trace": CANNED["dig mta qq.example MX"]["trace"],
    }
    walks = walks_from_trace(events_from(null_mx), RECEIVE, null_mx, "mta")
    stop = [w for w in walks if w.stopped_at]
    assert [w.stopped_at for w in stop] == ["mta"]
    assert "556 5.1.10" in stop[0].reason
    assert walks_heading(stop) == "The message never left mta"


def test_a_relay_journey_is_two_connections() -> None:
    data = CANNED["send laptop bob@qq.example smtp-isp"]
    walks = message_walks(walks_from_trace(events_from(data), HOME, data, "laptop"))
    assert [w.nodes for w in walks] == [
        ("laptop", "isp", "smtp-isp"),
        ("smtp-isp", "isp", "internet", "mx-qq"),
    ]
    assert walks_heading(walks) == "The message: 2 connections"


def test_an_smtp_refusal_stops_the_message_at_the_mx() -> None:
    data = CANNED["send mta bob@qq.example direct"]
    trace = [dict(e) for e in data["trace"]]
    for event in trace:
        if event["kind"] == "smtp" and event["data"].get("command", "").startswith("RCPT"):
            event["data"] = {**event["data"], "code": 550, "enhanced": "5.7.25", "text": "no PTR"}
    walks = walks_from_trace(events_from({"trace": trace}), RECEIVE)
    (refused,) = [w for w in walks if w.stopped_at]
    assert refused.stopped_at == "mx-qq"
    assert refused.reason.startswith("refused the message at RCPT: 550 5.7.25")


def test_a_refusal_at_the_final_dot_says_data() -> None:
    """Issue 21: the trace shows the final dot as ``(message, N bytes) .``;
    the map said "refused the message at (message,: 550 ..."."""
    data = CANNED["send mta bob@qq.example direct"]
    trace = [dict(e) for e in data["trace"]]
    dots = [
        e
        for e in trace
        if e["kind"] == "smtp" and str(e["data"].get("command", "")).startswith("(message")
    ]
    assert dots
    dots[-1]["data"] = {**dots[-1]["data"], "code": 550, "enhanced": "5.7.26", "text": "DMARC"}
    walks = walks_from_trace(events_from({"trace": trace}), RECEIVE)
    (refused,) = [w for w in walks if w.stopped_at]
    assert refused.reason == "refused the message at the end of DATA: 550 5.7.26 DMARC"
    assert "(message" not in refused.reason


def test_the_map_draws_routers_in_a_row_and_hosts_under_their_gateway() -> None:
    lines = draw_map(HOME, 80).plain.splitlines()
    assert lines[0].startswith("[isp]") and lines[0].rstrip().endswith("[internet]")
    assert "─" in lines[0], "isp and internet are linked"
    column = lines[0].index("[internet]")
    under_internet = [line[column:].strip() for line in lines[1:]]
    assert under_internet[0].startswith("├ ns") and under_internet[-1].startswith("└ mx-qq")
    assert all(len(line) <= 80 for line in lines)


def test_a_narrow_map_drops_addresses_then_stacks_routers() -> None:
    wide = draw_map(HOME, 80).plain
    assert "100.64.10.20" in wide
    narrow = draw_map(HOME, 36).plain
    assert "100.64.10.20" not in narrow
    assert max(len(line) for line in narrow.splitlines()) <= 36
    stacked = draw_map(HOME, 20).plain.splitlines()
    assert stacked[0].startswith("[isp] ── internet")


def test_the_stop_is_marked_on_the_map() -> None:
    data = CANNED["send laptop bob@qq.example direct"]
    walks = message_walks(walks_from_trace(events_from(data), HOME, data, "laptop"))
    first = draw_map(HOME, 80, walks).plain.splitlines()[0]
    assert first.startswith("[isp] ✗")
    assert "┄" in first, "the link it would have taken is dashed"


# -- the task form's checks ---------------------------------------------------------------


def test_record_problems_come_from_the_zone_parser() -> None:
    assert record_problem("shop.example", "@ MX 0 .") is None
    problem = record_problem("shop.example", "@ MX 0")
    assert problem is not None and "MX" in problem
    assert record_problem("shop.example", "  ") is not None
    assert zone_problem("qq.example", "@ MX 10 mx\nmx A 203.0.113.25\n") is None
    broken = zone_problem("qq.example", "@ MX 10 mx\nmx A 203.0.113\n")
    assert broken is not None and broken.startswith("line 2:")


def test_remove_problems() -> None:
    assert remove_problem("@", "MX") is None
    assert remove_problem("", "") is not None
    assert remove_problem("@ MX", "") is not None
    problem = remove_problem("@", "MAIL")
    assert problem is not None and "MAIL" in problem


def test_other_actions_are_checked_like_lab_files() -> None:
    action, problem = other_problem("advance: 30m")
    assert problem is None and action == {"advance": "30m"}
    action, problem = other_problem("mx_up: {node: mx-qq}")
    assert action == {"mx_up": {"node": "mx-qq"}}
    assert other_problem("fly: {to: moon}")[1] is not None
    assert other_problem("mx_up: {node: ")[1] is not None  # not YAML
    assert other_problem("- a\n- b")[1] is not None


# -- theme, text, entries, command --------------------------------------------------------


def test_the_theme_follows_the_terminal() -> None:
    assert parse_colorfgbg("15;0") is False
    assert parse_colorfgbg("0;15") is True
    assert parse_colorfgbg("0;default;7") is True
    assert parse_colorfgbg("x") is None
    assert parse_osc11("\x1b]11;rgb:ffff/ffff/ffff\x1b\\") is True
    assert parse_osc11("\x1b]11;rgb:1e1e/1e1e/2e2e\x07") is False
    assert parse_osc11("garbage") is None
    assert choose_theme({"COLORFGBG": "0;15"}, ask=False) == LIGHT
    assert choose_theme({"COLORFGBG": "15;0"}, ask=False) == DARK
    assert choose_theme({}, ask=False) == DARK
    assert choose_theme({"MAILLAB_THEME": "light", "COLORFGBG": "15;0"}, ask=False) == LIGHT
    assert choose_theme({"MAILLAB_THEME": "nord"}, ask=False) == "nord"


def test_inline_markdown() -> None:
    text = inline_markdown("Add `@ MX 0 .` to\nthe *apex*, **now**.\n\nThen check.")
    assert text.plain == "Add @ MX 0 . to the apex, now.\n\nThen check."
    styles = {text.plain[s.start : s.end]: str(s.style) for s in text.spans}
    assert styles == {"@ MX 0 .": "bold", "apex": "italic", "now": "bold"}


def test_home_entries_carry_progress_and_problems(tmp_path: Path) -> None:
    store = MemoryProgressStore()
    progress = store.load("home-direct")
    progress.step("direct").done = True
    store.save(progress)
    entries = {e.id: e for e in load_entries(LABS, store)}
    assert entries["receive-only"].state == "new"
    assert entries["home-direct"].state == "1/5"
    bad = tmp_path / "labs"
    bad.mkdir()
    (bad / "01-broken.yaml").write_text("id: broken\ntitle: x\n")
    (entry,) = load_entries(bad, store)
    assert entry.state == "invalid" and entry.problems
    catalog = Catalog()
    first = catalog.load(LABS)
    assert catalog.load(LABS) is first, "unchanged files are not loaded again"
    assert describe_minutes(1500) == "25 min" and describe_minutes(5400) == "1 h 30 min"


def test_run_command_parses() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["run", "1", "--backend", "mininet", "--labs-dir", "x"])
    assert (args.lab, args.backend, args.labs_dir) == ("1", "mininet", "x")
    assert args.func.__name__ == "cmd_run"
