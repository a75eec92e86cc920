"""A trace as text a student can read: one rendering per pane of the trace view.

The trace of an experiment (:mod:`sim.trace`) mixes everything that happened
on every node. Students read it best split by layer, the way an
administrator reads ``dig`` output, a firewall log, an SMTP transcript, a
receiver's ``Authentication-Results`` and a queue log:

* **Story**   every event in lab-time order, one line each;
* **DNS**     each query with its answer (RFC 1035 §4.1: question, rcode, answers);
* **Network** each firewall verdict with the path and, for a drop or a
  reject, the router, the rule and its note;
* **SMTP**    the dialogue as in RFC 5321's examples (``C:`` and ``S:`` lines,
  multi-line replies with ``250-``), one block per connection;
* **Checks**  each receiving check (PTR, DNSBL, SPF, DKIM, DMARC...) with its
  verdict, what a failure costs and the sentence that explains it;
* **Queue**   what a relay did with the message (queued, attempts, deferrals,
  delivery, bounces) and where it was stored.

Everything here is a pure function from events to :class:`rich.text.Text`,
so the rendering is tested without a terminal. Colours are the terminal's
standard ones (green, red...), which Textual maps through the theme.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from sim.events import (
    Check,
    Delivered,
    Dns,
    Forwarded,
    ImapExchange,
    LabAction,
    ListResent,
    Net,
    Pop3Exchange,
    QueueBounced,
    QueueBounceDropped,
    QueueDeferred,
    QueueDsn,
    QueueInternalError,
    QueueWarning,
    SmtpClientExchange,
    SmtpServerAnswer,
    Tls,
    Wait,
)
from sim.trace import TraceEvent, event

__all__ = [
    "PANES",
    "AddressNames",
    "Entry",
    "Pane",
    "add_waits",
    "entries_text",
    "events_from",
    "headline",
    "lab_action_event",
    "lab_time",
    "layout",
    "pane_entries",
    "relay_failure",
    "render_pane",
]

#: Maps a lab address to the node that has it (None when unknown).
AddressNames = Callable[[str], str | None]


#: One line of a pane: the lab time (or ""), an indent and the text. Text
#: that wraps stays inside its column, indented, so a long explanation reads
#: as one block.
Entry = tuple[str, int, Text]

#: A pane's renderer: events, address names, the time the experiment began.
Renderer = Callable[[Sequence[TraceEvent], AddressNames | None, float | None], list[Entry]]


@dataclass(frozen=True)
class Pane:
    id: str
    title: str
    #: The event kinds the pane shows (empty: every kind).
    kinds: frozenset[str]


PANES: tuple[Pane, ...] = (
    Pane("story", "Story", frozenset()),
    # A send told which server to use skips the MX lookup: said here.
    Pane("dns", "DNS", frozenset({"dns", "route"})),
    Pane("net", "Network", frozenset({"net", "wait"})),
    # The mail protocols' dialogues: SMTP, and IMAP/POP3 where a client reads.
    Pane("smtp", "SMTP", frozenset({"smtp", "tls", "imap", "pop3"})),
    Pane("checks", "Checks", frozenset({"check"})),
    Pane("queue", "Queue", frozenset({"queue", "delivery", "lab"})),
)

GOOD = "green"
BAD = "red"
WARN = "yellow"
DIM = "dim"

_KIND_STYLE = {
    "dns": "cyan",
    "route": "cyan",
    "net": "blue",
    "smtp": "magenta",
    "tls": "magenta",
    "check": "yellow",
    "queue": "green",
    "delivery": "green",
    "outcome": "bold",
    "wait": "yellow",
    "lab": "bold cyan",
}

_OUTCOME_STYLE = {
    "delivered": GOOD,
    "junk": WARN,
    "forwarded": WARN,
    "deferred": WARN,
    "rejected": BAD,
    "bounced": BAD,
    "blocked": BAD,
    "connected": GOOD,
}


def events_from(data: Mapping[str, Any] | None) -> list[TraceEvent]:
    """The events of a result's JSON (``result.to_json()["trace"]``), in time order."""
    raw = (data or {}).get("trace") or []
    events = []
    for item in raw:
        if isinstance(item, TraceEvent):
            events.append(item)
        elif isinstance(item, Mapping):
            try:
                events.append(TraceEvent.from_json(dict(item)))
            except (KeyError, TypeError, ValueError):
                continue  # a malformed event is left out, not a crash
    return sorted(events, key=lambda e: e.t)


#: The kinds made here, not by a service: a client's wait for an answer that
#: never comes, and a change the student made to the lab (a flush, lab time
#: passing) that caused what follows it.
SYNTHETIC_KINDS = frozenset({"wait", "lab"})


def _seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else lab_time(seconds, 0.0).lstrip("+")


def add_waits(
    events: Sequence[TraceEvent],
    connect_timeout: float | None,
    names: AddressNames | None = None,
) -> list[TraceEvent]:
    """The events, with a ``wait`` event where a client gave up on a dropped
    connection: a DROP rule answers nothing, so the client only learns when
    its own timer fires (``connect_timeout`` lab seconds later), whereas a
    REJECT answers at once. Showing the wait as time is what tells them apart.

    The time-out is where the client's own failure is in the trace (an SMTP
    client's ``connect`` with no reply), else ``connect_timeout`` after the
    drop; on the mininet backend the drop is observed at the time-out
    (``observed: timeout``), so the wait ends there.
    """
    out = list(events)
    for i, e in enumerate(events):
        d = e.as_(Net)
        if d is None or d.verdict != "drop" or d.proto != "tcp":
            continue
        peer = f"{d.dst}:{d.port}"
        ended: TraceEvent | None = None
        for later in events[i + 1 :]:
            ld = later.as_(SmtpClientExchange)
            if ld is not None and ld.code is None and ld.command == f"connect {peer}":
                ended = later
                break
        if d.observed == "timeout":
            start, end = e.t - (connect_timeout or 0.0), e.t
        elif ended is not None:
            start, end = e.t, ended.t
        elif connect_timeout is not None:
            start, end = e.t, e.t + connect_timeout
        else:
            continue
        waited = max(0.0, end - start)
        summary = (
            f"no answer from {peer} for {_seconds(waited)}, giving up "
            "(a drop answers nothing; a reject would have answered at once)"
        )
        client = names(d.src) if names is not None else None
        node = ended.node if ended is not None else client or d.src
        # Just before the client's own failure line, so that it reads first;
        # after the drop where the drop was only seen at the time-out.
        at = end + 0.0005 if d.observed == "timeout" else end - 0.0005
        out.append(
            event(
                round(at, 4),
                node,
                summary,
                Wait(peer=peer, waited=waited, src=d.src, dst=d.dst),
            )
        )
    return sorted(out, key=lambda ev: ev.t)


def with_waits(
    data: Mapping[str, Any] | None,
    connect_timeout: float | None,
    names: AddressNames | None = None,
) -> Mapping[str, Any] | None:
    """A result's JSON with :func:`add_waits` applied to its trace (once)."""
    if not data or not data.get("trace"):
        return data
    events = events_from(data)
    if any(e.kind == "wait" for e in events):
        return data
    waited = add_waits(events, connect_timeout, names)
    if len(waited) == len(events):
        return data
    return {**data, "trace": [e.to_json() for e in waited]}


def lab_action_event(t: float, what: str, yours: bool = True) -> TraceEvent:
    """A marker for a change the student made (``settle: 1h``, a flush): what
    follows it in the trace happened because of it. ``yours=False``: lab
    time ran on by itself (a retry fell due while the student read)."""
    if yours:
        return event(t, "you", f"{what} (your change to the lab)", LabAction(action=what))
    return event(t, "lab", what, LabAction(action=None))


_FAILURES = (
    ("refused", "connection refused"),
    ("timed out", "connection timed out"),
    ("unreachable", "host unreachable"),
    ("no route", "no route to the host"),
    ("no mx", "no mail server found"),
    ("nxdomain", "the domain does not exist"),
)


def relay_failure(data: object) -> str | None:
    """For a relay's ``deferred``/``bounced`` event whose reply no server sent
    (``remote_mta`` empty: the connection never opened), what happened in the
    relay's own words (``connection refused``), else None."""
    if not isinstance(data, QueueDeferred | QueueBounced):
        return None
    reply = data.reply
    if data.remote_mta or reply is None:
        return None
    text = (reply["text"] or "").lower()
    if not any(word in text for word in ("connect", "timed out", "unreachable", "route", "mx")):
        return None
    return next((label for word, label in _FAILURES if word in text), "no connection")


def lab_time(t: float, t0: float) -> str:
    """Lab time since the experiment began: ``+0.42s``, ``+30s``, ``+5m02s``, ``+2h05m``."""
    delta = max(0.0, t - t0)
    if delta < 10:
        return f"+{delta:.2f}s"
    if delta < 60:
        return f"+{delta:.0f}s"
    seconds = round(delta)
    if seconds < 3600:
        return f"+{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"+{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"+{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _t0(events: Sequence[TraceEvent]) -> float:
    return events[0].t if events else 0.0


def _code_style(code: Any) -> str:
    if not isinstance(code, int):
        return BAD
    return {2: GOOD, 3: "cyan", 4: WARN, 5: BAD}.get(code // 100, "")


def _who(address: Any, names: AddressNames | None) -> str:
    """``mta (192.0.2.10)`` when the address belongs to a node, else the address."""
    text = str(address or "?")
    host = text.partition(":")[0]
    node = names(host) if names is not None else None
    if node is None:
        return text
    return f"{node} ({text})"


# -- the headline ---------------------------------------------------------------


def headline(data: Mapping[str, Any] | None) -> Text:
    """One or two lines: what became of the experiment."""
    if not data:
        return Text("No experiment yet: run one (r) and its trace appears here.", style=DIM)
    text = Text()
    if "rcode" in data and "question" in data:  # dig
        q = data.get("question") or {}
        rcode = str(data.get("rcode"))
        text.append(f"{q.get('name')} {q.get('type')}  ", style="bold")
        text.append(rcode, style=GOOD if rcode == "NOERROR" else WARN)
        answers = data.get("answers") or []
        shown = "; ".join(f"{a.get('type')} {a.get('data')}" for a in answers)
        text.append(f"  {shown or 'no records'}")
        return text
    if "protocol" in data and "messages" in data:  # read (IMAP or POP3)
        return _read_headline(data, text)
    outcome = str(data.get("outcome") or "?")
    text.append(outcome, style=f"bold {_OUTCOME_STYLE.get(outcome, '')}".strip())
    stage = data.get("stage")
    if stage:
        text.append(f" at {stage}")
    reply = data.get("reply")
    own = _relay_own(data)
    if own is not None:
        failure, enhanced = own
        text.append(f": {failure}", style=WARN)
        text.append(
            f"\nno server answered: the relay records {enhanced} itself and will retry",
            style=DIM,
        )
    elif isinstance(reply, Mapping) and reply.get("code") is not None:
        said = " ".join(str(reply[k]) for k in ("code", "enhanced", "text") if reply.get(k))
        text.append("  ")
        text.append(said, style=_code_style(reply.get("code")))
    elif data.get("banner"):
        text.append(f"  {data['banner']}")
    verdict = data.get("verdict")
    if isinstance(verdict, Mapping) and verdict.get("verdict") not in (None, "accept"):
        text.append(f"\n{verdict.get('explanation') or verdict.get('verdict')}", style=BAD)
        wait = next((e for e in events_from(data) if e.as_(Wait) is not None), None)
        waiting = wait.as_(Wait) if wait is not None else None
        if wait is not None and waiting is not None:
            waited = waiting.waited
            text.append(f"\n{lab_time(wait.t, _t0(events_from(data)))} ", style=DIM)
            text.append(
                f"no answer for {_seconds(waited)}, giving up (dropped, not rejected)", style=WARN
            )
    elif outcome != "delivered" and _first_error(data):
        text.append(f"\n{_first_error(data)}", style=BAD)
    server = data.get("server")
    if isinstance(server, Mapping) and server.get("host"):
        text.append(
            f"\nsent straight to {server['host']} [{server.get('address')}], "
            "not where the MX records point",
            style=WARN,
        )
    checks = data.get("checks")
    if isinstance(checks, Mapping) and checks:
        text.append("\n")
        for i, (name, result) in enumerate(checks.items()):
            if i:
                text.append(" · ", style=DIM)
            text.append(f"{name} ")
            text.append(str(result), style=_result_style(str(result)))
    return text


def _relay_own(data: Mapping[str, Any]) -> tuple[str, str] | None:
    """(what failed, the enhanced code the relay recorded) when the result's
    reply was made up by the relay because no server answered."""
    if data.get("outcome") not in ("deferred", "bounced"):
        return None
    for e in events_from(data):
        d = e.data
        failure = relay_failure(d)
        if failure is not None and isinstance(d, QueueDeferred | QueueBounced) and d.reply:
            return failure, str(d.reply["enhanced"] or d.reply["code"])
    return None


def _read_headline(data: Mapping[str, Any], text: Text) -> Text:
    """``IMAP alice@qq.example INBOX  2 messages`` and their subjects, or
    where the read stopped and what the server said there."""
    protocol = str(data.get("protocol") or "").upper()
    text.append(f"{protocol} {data.get('user') or '?'} {data.get('folder') or 'INBOX'}  ")
    if data.get("error"):
        text.append("failed", style=f"bold {BAD}")
        if data.get("stage"):
            text.append(f" at {data['stage']}")
        reply = data.get("reply")
        if isinstance(reply, Mapping):
            said = " ".join(str(reply[k]) for k in ("status", "code", "text") if reply.get(k))
            if said:
                text.append(f"  {said}", style=WARN)
        text.append(f"\n{data['error']}", style=BAD)
        return text
    messages = [m for m in data.get("messages") or [] if isinstance(m, Mapping)]
    count = len(messages)
    text.append(f"{count} message{'' if count == 1 else 's'}", style=f"bold {GOOD}")
    for message in messages[:3]:
        text.append(f"\n  {message.get('subject') or '(no subject)'}", style=DIM)
    if count > 3:
        text.append(f"\n  and {count - 3} more", style=DIM)
    return text


def _first_error(data: Mapping[str, Any]) -> str | None:
    if data.get("error"):
        return str(data["error"])
    for rcpt in data.get("recipients") or []:
        if isinstance(rcpt, Mapping) and rcpt.get("error"):
            return str(rcpt["error"])
    return None


# -- the panes -------------------------------------------------------------------


def render_pane(
    pane: str, events: Sequence[TraceEvent], names: AddressNames | None = None
) -> RenderableType:
    """One pane (an id of :data:`PANES`), ready for a Rich console or a Static."""
    return layout(pane_entries(pane, events, names))


def pane_entries(
    pane: str, events: Sequence[TraceEvent], names: AddressNames | None = None
) -> list[Entry]:
    """The lines of one pane, before layout (what the tests read)."""
    renderers: dict[str, Renderer] = {
        "story": story_entries,
        "dns": dns_entries,
        "net": net_entries,
        "smtp": smtp_entries,
        "checks": check_entries,
        "queue": queue_entries,
    }
    found = next((p for p in PANES if p.id == pane), None)
    if found is None:
        raise ValueError(f"no pane {pane!r}")
    chosen = [e for e in events if not found.kinds or e.kind in found.kinds]
    if not chosen:
        return [("", 0, Text(_EMPTY.get(pane, "Nothing of this kind happened."), style=DIM))]
    # Times in every pane count from the start of the whole experiment.
    return renderers[pane](chosen, names, _t0(events))


def layout(entries: Sequence[Entry]) -> RenderableType:
    grid = Table.grid(expand=True, padding=(0, 1, 0, 0))
    grid.add_column(width=7, no_wrap=True, justify="right")
    grid.add_column(ratio=1)
    for when, indent, text in entries:
        body: RenderableType = Padding(text, (0, 0, 0, indent)) if indent else text
        grid.add_row(Text(when, style=DIM), body)
    return grid


def entries_text(entries: Sequence[Entry]) -> str:
    """The entries as plain text, one line each (for tests and logs)."""
    return "\n".join(
        f"{when:>8} {' ' * indent}{text.plain}".rstrip() for when, indent, text in entries
    )


_EMPTY = {
    "story": "No events.",
    "dns": "No DNS queries.",
    "net": "No packets: nothing left the node.",
    "smtp": "No SMTP: no connection reached a mail server.",
    "checks": "No receiving checks ran (the receiver judged nothing, or was never reached).",
    "queue": "No queue events: no relay held this message.",
}

_BLANK: Entry = ("", 0, Text(""))


def _first_line(summary: str) -> str:
    first, _, rest = summary.partition("\n")
    return first + (" …" if rest else "")


def _t(e: TraceEvent, t0: float | None) -> str:
    return lab_time(e.t, e.t if t0 is None else t0)


def story_entries(
    events: Sequence[TraceEvent], names: AddressNames | None = None, t0: float | None = None
) -> list[Entry]:
    t0 = _t0(events) if t0 is None else t0
    out: list[Entry] = []
    previous: float | None = None
    for e in events:
        if previous is not None and e.t - previous >= GAP and e.kind != "wait":
            # Lab time that passed with nothing happening: a retry's wait, a
            # time-out. Shown, so that time itself is part of the story.
            out.append(("", 0, Text(f"⋮ {_seconds(e.t - previous)} of lab time pass", style=DIM)))
        previous = e.t
        text = Text()
        text.append(f"{e.kind:<5} ", style=_KIND_STYLE.get(e.kind, ""))
        text.append(f"{e.node:<9} ", style="bold")
        text.append(_first_line(e.summary), style=_event_style(e))
        out.append((_t(e, t0), 0, text))
    return out


#: Lab seconds without an event that the Story shows as a pause.
GAP = 5.0


def _event_style(e: TraceEvent) -> str:
    d = e.data
    if isinstance(d, Wait):
        return WARN
    if isinstance(d, LabAction):
        return "bold"
    if isinstance(d, Net) and d.verdict != "accept":
        return BAD
    if isinstance(d, SmtpClientExchange | SmtpServerAnswer) and d.code is not None:
        return {4: WARN, 5: BAD}.get(d.code // 100, "")
    if isinstance(d, SmtpClientExchange):
        return BAD  # no reply came
    if isinstance(d, Check):
        return _result_style(d.result)
    if isinstance(d, QueueWarning | QueueDeferred | QueueInternalError):
        return WARN
    if isinstance(d, QueueBounced | QueueDsn | QueueBounceDropped):
        return BAD
    return ""


def dns_entries(
    events: Sequence[TraceEvent], names: AddressNames | None = None, t0: float | None = None
) -> list[Entry]:
    t0 = _t0(events) if t0 is None else t0
    out: list[Entry] = []
    for e in events:
        d = e.as_(Dns)
        if out:
            out.append(_BLANK)
        if d is None or not d.name:
            out.append((_t(e, t0), 0, Text(e.summary)))
            continue
        line = Text()
        line.append(f"{d.type} {d.name}", style="bold")
        rcode = d.rcode
        line.append("  → ")
        line.append(rcode, style=GOOD if rcode == "NOERROR" else WARN)
        flags = [
            label
            for flag, label in (
                (d.authoritative, "authoritative"),
                (d.cached, "from cache"),
                (d.truncated, "truncated"),
            )
            if flag
        ]
        if flags:
            line.append(f"  ({', '.join(flags)})", style=DIM)
        out.append((_t(e, t0), 0, line))
        for a in d.answers:
            answer = Text(f"{a['name']}  {a['ttl']}  ")
            answer.append(f"{a['type']} {a['data']}", style=GOOD)
            out.append(("", 2, answer))
        if not d.answers and rcode == "NOERROR":
            out.append(("", 2, Text(f"no {d.type} record (NODATA)", style=WARN)))
        asked = f"asked by {_who(d.client, names)} of {_who(d.server, names)}"
        if d.transport:
            asked += f" over {d.transport}"
        out.append(("", 2, Text(asked, style=DIM)))
        if d.explanation:
            out.append(("", 2, Text(d.explanation, style="italic")))
    return out


def _net_key(e: TraceEvent) -> tuple[Any, ...]:
    d = e.as_(Net)
    if d is None:
        return (e.node, e.kind, e.t)
    return (e.node, d.src, d.dst, d.proto, d.port, d.verdict)


_VERDICT_MARK = {
    "accept": ("✓", GOOD),
    "drop": ("✗", BAD),
    "reject": ("✗", BAD),
    "unreachable": ("✗", BAD),
    "closed": ("✗", WARN),
}


def net_entries(
    events: Sequence[TraceEvent], names: AddressNames | None = None, t0: float | None = None
) -> list[Entry]:
    t0 = _t0(events) if t0 is None else t0
    out: list[Entry] = []
    # Consecutive identical packets (a resolver asked three times) read as one
    # line with a count.
    groups: list[tuple[TraceEvent, int]] = []
    for e in events:
        net = e.as_(Net)
        if groups and _net_key(groups[-1][0]) == _net_key(e) and net and net.verdict == "accept":
            groups[-1] = (groups[-1][0], groups[-1][1] + 1)
        else:
            groups.append((e, 1))
    for e, count in groups:
        d = e.as_(Net)
        if d is None:  # the client's wait after a drop
            line = Text("✗ timeout ", style=f"bold {WARN}")
            line.append(e.summary)
            out.append((_t(e, t0), 0, line))
            continue
        verdict = d.verdict
        mark, style = _VERDICT_MARK.get(verdict, ("·", ""))
        line = Text()
        line.append(f"{mark} {verdict:<7}", style=f"bold {style}")
        line.append(f" {d.proto} {d.src} → {d.dst}:{d.port}")
        if count > 1:
            line.append(f"  ×{count}", style=DIM)
        out.append((_t(e, t0), 0, line))
        path = d.path or []
        if path:
            out.append(("", 2, Text("path ", style=DIM) + Text(" → ".join(path))))
        if verdict == "accept":
            continue
        if d.router:
            where = f"at {d.router}"
            if d.rule is not None:
                where += f", rule {d.rule + 1}"
            if d.rule_text:
                where += f": {d.rule_text}"
            out.append(("", 2, Text(where, style=style)))
            if d.note:
                out.append(("", 2, Text(f"“{d.note}”", style="italic")))
        else:
            out.append(("", 2, Text(e.summary, style=style)))
    return out


def _reply_lines(code: Any, enhanced: Any, reply: str) -> list[str]:
    """A reply as it crosses the wire: ``250-first``, ``250 last`` (RFC 5321 §4.2.1)."""
    lines = reply.split("\n") if reply else [""]
    out = []
    for i, line in enumerate(lines):
        sep = " " if i == len(lines) - 1 else "-"
        prefix = f"{code}{sep}" if code is not None else ""
        if i == 0 and enhanced:
            line = f"{enhanced} {line}"
        out.append(f"{prefix}{line}")
    return out


def smtp_entries(
    events: Sequence[TraceEvent], names: AddressNames | None = None, t0: float | None = None
) -> list[Entry]:
    t0 = _t0(events) if t0 is None else t0
    out: list[Entry] = []
    conversation: tuple[str, str] | None = None
    for e in events:
        d = e.data
        if isinstance(d, Tls):
            tls = Text(f"🔒 TLS {d.version} {d.cipher}", style=GOOD)
            if d.verified is False:
                tls.append(" (certificate not verified)", style=DIM)
            out.append(("", 2, tls))
            continue
        if isinstance(d, ImapExchange | Pop3Exchange):
            key = (e.node, d.peer)
            if key != conversation:
                conversation = key
                if out:
                    out.append(_BLANK)
                header = Text(f"{e.node} → {_who(d.peer, names)}", style="bold")
                header.append(f"  {e.kind.upper()}", style=DIM)
                out.append((_t(e, t0), 0, header))
            if d.command:
                out.append(("", 2, Text("C: ", style=DIM) + Text(d.command)))
            for line in d.lines[:5]:
                out.append(("", 2, Text("S: ", style=DIM) + Text(line, style=DIM)))
            status = d.status or ""
            style = GOOD if status in ("OK", "+OK") else BAD if status else ""
            response = d.response or "(no answer)"
            out.append(("", 2, Text("S: ", style=DIM) + Text(response, style=style)))
            continue
        if not isinstance(d, SmtpClientExchange):
            # A server's own note (a submission service accepting AUTH...).
            note = Text(f"· {e.node}: {_first_line(e.summary)}", style=DIM)
            out.append(("", 2, note))
            continue
        key = (e.node, d.peer)
        if key != conversation:
            conversation = key
            if out:
                out.append(_BLANK)
            header = Text(f"{e.node} → {_who(d.peer, names)}", style="bold")
            out.append((_t(e, t0), 0, header))
        command = d.command
        code = d.code
        reply = d.text
        if command.startswith("connect "):
            out.append(("", 2, Text(f"(TCP connection to {command[8:]})", style=DIM)))
        else:
            out.append(("", 2, Text("C: ", style=DIM) + Text(command)))
        for line_sent in shown_headers(d.headers or []):
            out.append(("", 5, _header_text(line_sent)))
        if code is None:
            # No server said this: the client's own account of a failure
            # (refused, timed out), never an SMTP reply.
            out.append(("", 2, Text(f"✗  no reply: {reply}", style=BAD)))
            continue
        for line in _reply_lines(code, d.enhanced, reply):
            out.append(("", 2, Text("S: ", style=DIM) + Text(line, style=_code_style(code))))
    return out


#: The header fields the SMTP pane shows of a message sent at DATA (what the
#: receiver's checks read: From: for DMARC, DKIM-Signature for DKIM...).
SHOWN_HEADERS = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "dkim-signature",
    "arc-seal",
    "arc-message-signature",
    "arc-authentication-results",
    "reply-to",
    "sender",
)


def _header_text(line: str) -> Text:
    name, _, value = line.partition(":")
    text = Text(f"{name}:", style="bold")
    if name.strip().lower() == "dkim-signature":
        # The tags a student reads (d=, s=, h=); the base64 of b= and bh= cut.
        tags = []
        for tag in value.split(";"):
            key, sep, data = tag.strip().partition("=")
            data = " ".join(data.split())
            if key in ("b", "bh") and len(data) > 12:
                data = data[:12] + "…"
            tags.append(f"{key}{sep}{data}")
        text.append(" " + "; ".join(t for t in tags if t))
        return text
    text.append(value)
    return text


def shown_headers(lines: Sequence[str]) -> list[str]:
    """The header lines the SMTP pane shows, in the message's order."""
    return [h for h in lines if h.partition(":")[0].strip().lower() in SHOWN_HEADERS]


_GOOD_RESULTS = {"pass", "notlisted", "exempt", "ok"}
_BAD_RESULTS = {"fail", "listed", "permerror", "reject", "mismatch"}
_WARN_RESULTS = {"softfail", "temperror", "greylisted", "neutral"}


def _result_style(result: str) -> str:
    if result in _GOOD_RESULTS:
        return GOOD
    if result in _BAD_RESULTS:
        return BAD
    if result in _WARN_RESULTS:
        return WARN
    return DIM


_ACTION_STYLE = {"reject": BAD, "defer": WARN, "junk": WARN}


def check_entries(
    events: Sequence[TraceEvent], names: AddressNames | None = None, t0: float | None = None
) -> list[Entry]:
    t0 = _t0(events) if t0 is None else t0
    out: list[Entry] = []
    judged: tuple[str, str] | None = None
    for e in events:
        d = e.as_(Check)
        if d is None:
            continue
        key = (e.node, d.client)
        if key != judged:
            judged = key
            if out:
                out.append(_BLANK)
            header = Text(f"{e.node} judges {_who(d.client, names)}", style="bold")
            out.append((_t(e, t0), 0, header))
        result = d.result
        action = d.action or "none"
        style = _result_style(result)
        mark = "✓" if style == GOOD else "✗" if style in (BAD, WARN) else "·"
        line = Text()
        line.append(f"{mark} ", style=style)
        line.append(f"{d.check:<9}", style="bold")
        line.append(f"{result:<10}", style=style)
        line.append(" → ", style=DIM)
        line.append(action, style=_ACTION_STYLE.get(action, DIM))
        if d.stage:
            line.append(f"  at {d.stage}", style=DIM)
        out.append(("", 2, line))
        if d.explanation:
            out.append(("", 4, Text(d.explanation)))
        reply = d.reply
        if reply is not None and reply["code"] is not None:
            said = " ".join(str(reply[k]) for k in ("code", "enhanced", "text") if reply.get(k))
            out.append(("", 4, Text(f"replies {said}", style=_code_style(reply["code"]))))
    return out


def queue_entries(
    events: Sequence[TraceEvent], names: AddressNames | None = None, t0: float | None = None
) -> list[Entry]:
    t0 = _t0(events) if t0 is None else t0
    out: list[Entry] = []
    for e in events:
        d = e.data
        line = Text()
        if isinstance(d, Delivered | Forwarded | ListResent):
            line.append(f"{'stored':<10}", style=WARN if d.folder == "junk" else GOOD)
        elif e.kind == "lab":
            line.append(_first_line(e.summary), style="bold")
            out.append((_t(e, t0), 0, line))
            continue
        else:
            event = str(getattr(d, "event", None) or "?")
            style = {"deferred": WARN, "warning": WARN, "bounced": BAD}.get(event, GOOD)
            line.append(f"{event:<10}", style=f"bold {style}")
        line.append(f"{e.node}: ", style="bold")
        failure = relay_failure(d)
        if failure is not None and isinstance(d, QueueDeferred | QueueBounced) and d.reply:
            who = f"<{d.rcpt}> " if d.rcpt else ""
            line.append(f"{who}{failure}: no server answered; ")
            line.append(
                f"the relay records {d.reply['code']} {d.reply['enhanced'] or ''}".rstrip(),
                style=WARN,
            )
        else:
            line.append(_first_line(e.summary))
        out.append((_t(e, t0), 0, line))
        nxt = d.next_attempt if isinstance(d, QueueDeferred | QueueInternalError) else None
        if nxt is not None:
            when = lab_time(float(nxt), t0)
            out.append(
                ("", 10, Text(f"next attempt at {when} (in {_seconds(nxt - e.t)})", style=DIM))
            )
    return out
