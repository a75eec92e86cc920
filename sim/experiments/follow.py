"""Following a sent message to its end: the machinery of ``send``.

What :class:`~sim.experiments.send.Send` does once the first server has
answered: read the outcome of each recipient from the SMTP transcript and
the trace (:func:`_direct_outcome`), follow a relay's queue events until
each recipient is delivered, bounced or deferred (:func:`follow_queue`),
follow forwarders (:func:`chase_forwards`) and, with ``settle``, whatever
the message caused (:func:`settle_consequences`), then sum it up
(:func:`_summarise`). Imported when a message is sent, not when the command
line is built (issue 14 §3: the trace vocabulary and this machinery cost
every command's start).
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from sim.errors import NetworkError
from sim.events import (
    Delivered,
    Forwarded,
    ListResent,
    QueueAttempt,
    QueueBounced,
    QueueBounceDropped,
    QueueDeferred,
    QueueDelivered,
    QueueDsn,
    QueueInternalError,
    QueueQueued,
    QueueRecovered,
    QueueWarning,
    ServerChosen,
)
from sim.trace import Trace, TraceEvent

if TYPE_CHECKING:
    from sim.experiments.send import SendResult
    from sim.services.base import NodeContext
    from sim.services.smtpclient import Reply, Transcript

#: How long (real seconds) to wait for a relay's next queue event.
QUEUE_WAIT = 60.0
#: How much lab time ``settle`` may advance in all (RFC 5321 §4.5.4.1
#: suggests giving up after 4-5 days; relays here are configured likewise).
SETTLE_LIMIT = 8 * 86400.0


def fresh(ctx: NodeContext, trace: Trace) -> Trace:
    """Every event of ``trace`` so far, including those other processes wrote
    (on mininet the services run in other namespaces and write to files)."""
    return ctx.hub.get(trace.id) or trace


def chosen_server(
    ctx: NodeContext, trace: Trace, server: str, domain: str
) -> tuple[str, IPv4Address]:
    """The (name, address) of the server a send was told to use instead of
    the MX records: a node (its mx host name, for TLS and the trace) or a
    lab address. Noted in the trace, so that nobody reads the missing MX
    lookup as the receiver's DNS being wrong."""
    address: IPv4Address | None
    try:
        address = ctx.network.address_of(server)
    except NetworkError:
        address = IPv4Address(server) if _is_ip(server) else None
    if address is None:
        raise NetworkError(f"server {server!r}: no such node or lab address")
    owner = ctx.network.owner(address)
    node = ctx.network.node(owner) if owner is not None else None
    mx = node.services.mx if node is not None and node.kind == "host" else None
    host = (mx.hostname if mx is not None else None) or (
        f"mx.{mx.domains[0]}" if mx is not None else (owner or str(address))
    )
    ctx.record(
        trace.id,
        ServerChosen(
            domain=domain,
            server=server,
            host=host,
            address=str(address),
            node=owner,
            mx_lookup=False,
        ),
        f"mail for {domain} sent straight to {host} [{address}] as told (server: "
        f"{server}), without looking up {domain}'s MX records",
    )
    return host, address


def _is_ip(text: str) -> bool:
    try:
        IPv4Address(text)
    except ValueError:
        return False
    return True


async def mx_hosts(
    ctx: NodeContext, domain: str, trace: Trace
) -> tuple[list[tuple[str, IPv4Address]], Reply | None]:
    """The hosts to try for ``domain``, best first, with their addresses, or
    the reply that stops the mail: the relay's rules and replies
    (:mod:`sim.services.mxroute`), so that a direct send and a queued one
    report the same thing (a SERVFAIL is 451 4.4.3, try again)."""
    from sim.services.mxroute import find_mx, host_addresses, no_address, unroutable
    from sim.services.smtpclient import Reply

    route = await find_mx(ctx.resolver, domain, trace.id)
    if route.reply is not None:
        return [], route.reply
    hosts: list[tuple[str, IPv4Address]] = []
    last: Reply | None = None
    for name in route.hosts:
        addresses, rcode = await host_addresses(ctx.resolver, name, trace.id)
        if not addresses:
            stop = unroutable(route, domain, rcode)
            if stop is not None:
                return [], stop
            last = no_address(name, rcode)
        hosts += [(name, address) for address in addresses]
    if not hosts:
        return [], last or Reply(451, "4.4.3", f"no usable MX host for {domain}")
    return hosts, None


def _delivery_for(
    trace: Trace, rcpt: str, handed_to: str | None = None
) -> Delivered | Forwarded | ListResent | None:
    """The last ``delivery`` event for ``rcpt`` in ``trace``; with
    ``handed_to``, not the one that handed it to that relay queue (a backup
    MX keeps the address: the event wanted is the next hop's)."""
    found = None
    for event in trace:  # in time order, as of_kind
        data = event.data
        if not isinstance(data, Delivered | Forwarded | ListResent):
            continue
        if data.mailbox.lower() != rcpt.lower():
            continue
        if not isinstance(data, Delivered) and data.relay_queue_id == handed_to:
            continue
        found = data
    return found


#: How the final MX filed a message → the outcome. "forwarded" is not final:
#: :func:`chase_forwards` follows the forwarder's relay to the next MX.
_FOLDER_OUTCOME = {
    "inbox": "delivered",
    "junk": "junk",
    "forwarded": "forwarded",
    "list": "forwarded",
}
#: Forwarders chained in a row that a send follows (mail loops stop here).
MAX_FORWARDS = 5


async def chase_forwards(
    ctx: NodeContext, trace: Trace, per_rcpt: list[dict[str, Any]], settle: bool
) -> list[dict[str, Any]]:
    """Follow recipients an MX forwarded (an alias, RFC 5321 §3.9.1) through
    the forwarder's relay, so the outcome is that of the final mailbox."""
    out = []
    for entry in per_rcpt:
        hops = 0
        while entry.get("outcome") == "forwarded" and hops < MAX_FORWARDS:
            hops += 1
            delivery = _delivery_for(fresh(ctx, trace), str(entry["rcpt"]))
            if not isinstance(delivery, Forwarded | ListResent):
                break
            target, queue_id = delivery.forwarded_to, delivery.relay_queue_id
            if not target or not queue_id:
                break
            # A mailing list resends to every member: the first member's
            # outcome stands for the list's, each member's is kept.
            targets = [t.strip() for t in str(target).split(",") if t.strip()]
            found = await follow_queue(ctx, trace, str(queue_id), targets, settle)
            nxt = found[0]
            via = [*entry.get("forwarded", []), targets[0]]
            entry = {**nxt, "rcpt": entry["rcpt"], "forwarded": via}
            if len(found) > 1:
                entry["members"] = found
        out.append(entry)
    return out


def _direct_outcome(
    transcript: Transcript, rcpt: str, trace: Trace, final_hop: bool = True
) -> dict[str, Any]:
    """What became of ``rcpt`` in one SMTP transaction."""
    if transcript.blocked:
        return {
            "rcpt": rcpt,
            "outcome": "blocked",
            "stage": "connect",
            "reply": None,
            "verdict": transcript.verdict,
            "error": transcript.error,
        }
    reply = transcript.rcpt_replies.get(rcpt)
    stage: str | None = transcript.failed_stage
    if reply is not None and not reply.positive:
        stage = "rcpt"
    elif transcript.delivered:
        reply = transcript.final
        stage = None
    else:
        reply = transcript.last_reply
    if stage is None and reply is not None and reply.positive:
        delivery = _delivery_for(trace, rcpt) if final_hop else None
        folder = delivery.folder if delivery else "inbox"
        return {
            "rcpt": rcpt,
            "outcome": _FOLDER_OUTCOME.get(str(folder), "delivered"),
            "stage": None,
            "reply": reply.to_json(),
        }
    if reply is None:
        # The dialogue broke without a reply (time-out, lost connection): as
        # with a 4xx, a sender would try again later.
        return {
            "rcpt": rcpt,
            "outcome": "deferred",
            "stage": stage,
            "reply": None,
            "error": transcript.error,
        }
    outcome = "deferred" if reply.transient else "rejected"
    return {"rcpt": rcpt, "outcome": outcome, "stage": stage, "reply": reply.to_json()}


async def follow_queue(
    ctx: NodeContext, trace: Trace, queue_id: str, rcpts: list[str], settle: bool
) -> list[dict[str, Any]]:
    """Wait for the relay's verdict on each recipient of ``queue_id``."""
    status: dict[str, dict[str, Any]] = {}
    seen = 0
    advanced = 0.0

    def key(event: TraceEvent) -> tuple[float, str, str]:
        # Events may be re-read from a file (mininet): compare by content.
        return (event.t, event.node, event.summary)

    known: set[tuple[float, str, str]] = set()

    def wanted(event: TraceEvent) -> bool:
        data = event.data
        return isinstance(data, _VERDICTS) and data.queue_id == queue_id and key(event) not in known

    while True:
        events = [
            e
            for e in (ctx.hub.get(trace.id) or trace).events
            if isinstance(e.data, _OF_ENTRY) and e.data.queue_id == queue_id
        ]
        for event in events[seen:]:
            data = event.data
            if isinstance(data, QueueDelivered | QueueBounced | QueueDeferred):
                targets = [data.rcpt]
            elif isinstance(data, QueueBounceDropped):
                targets = data.rcpts
            else:
                continue  # queued, an attempt, a report (DSN, warning), an internal error
            for rcpt in targets:
                if rcpt not in rcpts:
                    continue
                if isinstance(data, QueueDelivered):
                    delivery = _delivery_for(ctx.hub.get(trace.id) or trace, rcpt, queue_id)
                    folder = delivery.folder if delivery else "inbox"
                    status[rcpt] = {
                        "rcpt": rcpt,
                        "outcome": _FOLDER_OUTCOME.get(str(folder), "delivered"),
                        "stage": None,
                        "reply": data.reply,
                    }
                elif isinstance(data, QueueBounced | QueueBounceDropped):
                    status[rcpt] = {
                        "rcpt": rcpt,
                        "outcome": "bounced",
                        "stage": data.stage if isinstance(data, QueueBounced) else None,
                        "reply": data.reply if isinstance(data, QueueBounced) else None,
                    }
                elif status.get(rcpt, {}).get("outcome") in (None, "deferred"):
                    status[rcpt] = {
                        "rcpt": rcpt,
                        "outcome": "deferred",
                        "stage": data.stage,
                        "reply": data.reply,
                        "next_attempt": data.next_attempt,
                    }
        seen = len(events)
        known.update(key(e) for e in events)
        pending = [r for r in rcpts if status.get(r, {}).get("outcome") in (None, "deferred")]
        waiting_first = [r for r in rcpts if r not in status]
        if not pending:
            break
        if not waiting_first and not settle:
            break  # every recipient has had its first attempt: report deferred
        if not waiting_first and settle:
            due = min(float(status[r].get("next_attempt") or ctx.clock.now()) for r in pending)
            step = max(due - ctx.clock.now(), 0.0) + 1.0
            if advanced + step > SETTLE_LIMIT:
                break
            advanced += step
            ctx.clock.advance(step)
            for r in pending:
                status.pop(r, None)  # wait for the next attempt's verdict
        if await ctx.hub.wait_for(trace.id, wanted, QUEUE_WAIT) is None:
            break
    return [
        status.get(
            r,
            {
                "rcpt": r,
                "outcome": "deferred",
                "stage": None,
                "reply": None,
                "error": "no word from the relay",
            },
        )
        for r in rcpts
    ]


#: Rounds of :func:`settle_consequences` (each may reveal new queue entries:
#: a bounce of a forward...); a mail loop stops here.
MAX_CONSEQUENCES = 8


def _open_entries(trace: Trace) -> tuple[dict[str, list[str]], set[str]]:
    """Relay queue entries of ``trace`` with recipients that have no final
    event yet (delivered, or bounced: given up or dropped), by queue id; and
    the entries with a bounced recipient whose bounce (DSN) is not queued
    yet (the relay queues it right after the verdict, RFC 3464)."""
    queued: dict[str, list[str]] = {}
    returns: set[str] = set()  # entries that would send a DSN (not DSNs, not <>)
    done: set[tuple[str, str]] = set()
    bounced: set[str] = set()
    reported: set[str] = set()
    for event in trace.of_kind("queue"):
        queue_id = str(event.data.get("queue_id") or "")
        name = event.data.get("event")
        if not queue_id:
            continue
        if name == "queued":
            queued[queue_id] = [str(r) for r in event.data.get("rcpts", [])]
            if event.data.get("entry_kind") != "dsn" and event.data.get("mail_from"):
                returns.add(queue_id)
        elif name == "bounced" and (event.data.get("dsn") or event.data.get("dropped")):
            reported.add(queue_id)
            if event.data.get("dropped"):
                done.update((queue_id, str(r)) for r in event.data.get("rcpts", []))
        elif name in ("delivered", "bounced"):
            rcpts = event.data.get("rcpts") or [event.data.get("rcpt")]
            done.update((queue_id, str(r)) for r in rcpts if r)
            if name == "bounced":
                bounced.add(queue_id)
    pending = {
        queue_id: [r for r in rcpts if (queue_id, r) not in done]
        for queue_id, rcpts in queued.items()
        if any((queue_id, r) not in done for r in rcpts)
    }
    return pending, (bounced & returns) - reported


async def settle_consequences(ctx: NodeContext, trace: Trace) -> None:
    """Follow every queue entry the message caused (bounces to the sender,
    forwards, a backup MX's relaying, and the bounces of those) until each
    recipient is delivered or given up, advancing lab time as ``settle``
    does for the message itself."""
    followed: set[str] = set()
    waited: set[str] = set()
    for _ in range(MAX_CONSEQUENCES):
        open_entries, unreported = _open_entries(fresh(ctx, trace))
        unreported -= waited
        if unreported:
            waited |= unreported

            # The verdict is in the trace, the bounce it causes not yet.
            def reports(event: TraceEvent, ids: set[str] = unreported) -> bool:
                return (
                    event.kind == "queue"
                    and event.data.get("queue_id") in ids
                    and bool(event.data.get("dsn") or event.data.get("dropped"))
                )

            await ctx.hub.wait_for(trace.id, reports, QUEUE_WAIT)
            continue
        pending = {q: r for q, r in open_entries.items() if q not in followed}
        if not pending:
            return
        for queue_id, rcpts in pending.items():
            followed.add(queue_id)
            await follow_queue(ctx, trace, queue_id, rcpts, True)


#: The queue events of one entry (every one but a spool problem and a DMARC report).
_OF_ENTRY = (
    QueueQueued,
    QueueRecovered,
    QueueAttempt,
    QueueDelivered,
    QueueDeferred,
    QueueInternalError,
    QueueBounced,
    QueueDsn,
    QueueBounceDropped,
    QueueWarning,
)
#: A relay's word on a recipient (or a report of it) that a waiting send wakes up for.
_VERDICTS = (
    QueueDelivered,
    QueueDeferred,
    QueueInternalError,
    QueueBounced,
    QueueDsn,
    QueueBounceDropped,
)

_RANK = {
    "blocked": 0,
    "rejected": 1,
    "bounced": 2,
    "deferred": 3,
    "forwarded": 4,
    "junk": 5,
    "delivered": 6,
}


def _summarise(result: SendResult, per_rcpt: list[dict[str, Any]], trace: Trace) -> SendResult:
    """The first recipient's fate is the message's; all are in ``recipients``."""
    result.recipients = per_rcpt
    worst = min(per_rcpt, key=lambda p: _RANK.get(p["outcome"], 0)) if per_rcpt else None
    main = per_rcpt[0] if per_rcpt else worst
    if main is not None:
        result.outcome = main["outcome"]
        result.stage = main.get("stage")
        result.reply = main.get("reply")
        result.verdict = main.get("verdict")
    _checks(result, trace, _decided_at(per_rcpt, trace))
    return result


def _decided_at(per_rcpt: list[dict[str, Any]], trace: Trace) -> float | None:
    """Lab time of the last relay verdict on the message's recipients (and
    those it was forwarded or listed to): what a settled send saw later (a
    bounce arriving somewhere, checked in its turn) is not this message's."""
    addresses: set[str] = set()
    for entry in per_rcpt:
        addresses.add(str(entry.get("rcpt", "")).lower())
        addresses.update(str(a).lower() for a in entry.get("forwarded", []))
        addresses.update(str(m.get("rcpt", "")).lower() for m in entry.get("members", []))
    times = [
        e.t
        for e in trace
        if isinstance(e.data, QueueDelivered | QueueBounced | QueueDeferred)
        and e.data.rcpt.lower() in addresses
    ]
    return max(times, default=None)


def _checks(result: SendResult, trace: Trace, until: float | None = None) -> None:
    for event in trace.of_kind("check"):
        if until is not None and event.t > until:
            break  # in time order: what came after the message's fate
        name, value = event.data.get("check"), event.data.get("result")
        if isinstance(name, str) and isinstance(value, str):
            result.checks[name] = value


def _stored_for(rcpt: str) -> Callable[[TraceEvent], bool]:
    wanted = rcpt.lower()
    return lambda e: e.kind == "delivery" and str(e.data.get("mailbox", "")).lower() == wanted
