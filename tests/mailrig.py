"""A small mail lab for the submission, relay and queue tests.

Nodes (all on the local backend, built in Python, no YAML)::

    laptop 100.64.10.20 ── isp ── internet ── ns      198.51.100.53  (DNS for every zone)
                                          ├── smtp    192.0.2.25     submission + relay
                                          ├── mx1     203.0.113.25   MX 10 of qq.example
                                          ├── mx2     203.0.113.26   MX 20 of qq.example
                                          ├── mxhome  198.51.100.25  MX of home.example
                                          └── smarthost 192.0.2.80   submission + relay

The MX nodes run :class:`Sink`, a programmable aiosmtpd receiver started on the
node's :class:`NodeNet` inside the running lab (the real MX service is
another module's concern): it stores what it accepts in a Maildir under the
node's state directory and can greylist, defer or reject on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

from sim.hosting.runtime import Lab
from sim.services.maildir import Maildir, mail_root
from sim.services.smtpbase import LabSMTP, session_trace_id
from sim.topology.model import (
    DnsService,
    MxService,
    Node,
    RelayService,
    Services,
    Settings,
    Smarthost,
    SubmissionService,
    Topology,
)

ALICE = "alice@home.example"
ALICE_PASSWORD = "secret"
BOB = "bob@qq.example"

ZONES = {
    "home.example": (
        "@       MX 10 mxhome\n"
        "mxhome  A 198.51.100.25\n"
        "smtp    A 192.0.2.25\n"
        '@       TXT "v=spf1 ip4:192.0.2.25 -all"\n'
    ),
    "qq.example": ("@   MX 10 mx1\n@   MX 20 mx2\nmx1 A 203.0.113.25\nmx2 A 203.0.113.26\n"),
    "relay.example": ("smtp A 192.0.2.25\nsmarthost A 192.0.2.80\n"),
    # A domain without MX: its A record is the implicit MX (RFC 5321 §5.1).
    "plain.example": "@ A 203.0.113.25\n",
    # RFC 7505: a domain that accepts no mail at all.
    "nomail.example": "@ MX 0 .\n",
    "2.0.192.in-addr.arpa": "25 PTR smtp.relay.example.\n80 PTR smarthost.relay.example.\n",
}


def _host(name: str, ip: str, gateway: str, services: Services | None = None) -> Node:
    return Node(
        name=name,
        kind="host",
        ip=IPv4Interface(ip),
        gateway=gateway,
        services=services or Services(),
    )


def topology(
    relay: RelayService | None = None,
    *,
    users: Sequence[tuple[str, str]] = ((ALICE, ALICE_PASSWORD),),
    ports: tuple[int, ...] = (587, 465),
    smarthost_relay: RelayService | None = None,
    smarthost_users: Sequence[tuple[str, str]] = (),
    real_mx: bool = False,
    greylist: float | None = None,
    down: Sequence[str] = (),
) -> Topology:
    """``real_mx``: the MX nodes run the lab's MX service (no receiving
    checks, ``greylist`` on mx1, the nodes in ``down`` not listening);
    otherwise they run nothing and tests start a :class:`Sink` on them."""
    relay = relay or RelayService(retry=(300.0,), give_up=86400.0, warn_after=None)

    def mx(node: str, domain: str, user: str, grey: float | None = None) -> Services:
        if not real_mx:
            return Services()
        return Services(
            mx=MxService(
                domains=(domain,),
                mailboxes=(user,),
                hostname=f"{node}.{domain}",
                greylist=grey,
                down=node in down,
            )
        )

    nodes = [
        Node(name="isp", kind="router"),
        Node(name="internet", kind="router"),
        _host("laptop", "100.64.10.20/24", "isp"),
        _host(
            "ns",
            "198.51.100.53/24",
            "internet",
            Services(dns=DnsService(zones=tuple(ZONES))),
        ),
        _host(
            "smtp",
            "192.0.2.25/24",
            "internet",
            Services(
                submission=SubmissionService(
                    users=tuple(users), ports=ports, hostname="smtp.relay.example"
                ),
                relay=replace(relay, hostname=relay.hostname or "smtp.relay.example"),
            ),
        ),
        _host("mx1", "203.0.113.25/24", "internet", mx("mx1", "qq.example", "bob", greylist)),
        _host("mx2", "203.0.113.26/24", "internet", mx("mx2", "qq.example", "bob")),
        _host("mxhome", "198.51.100.25/24", "internet", mx("mxhome", "home.example", "alice")),
    ]
    if smarthost_relay is not None:
        nodes.append(
            _host(
                "smarthost",
                "192.0.2.80/24",
                "internet",
                Services(
                    submission=SubmissionService(
                        users=tuple(smarthost_users),
                        ports=(587,),
                        hostname="smarthost.relay.example",
                    ),
                    relay=replace(smarthost_relay, hostname="smarthost.relay.example"),
                ),
            )
        )
    return Topology(
        name="relaylab",
        settings=Settings(
            time_scale=60.0, resolver=IPv4Address("198.51.100.53"), connect_timeout=30.0
        ),
        nodes=tuple(nodes),
        links=(("isp", "internet"),),
        zones=tuple(ZONES.items()),
    )


def smarthost_topology(user: str = "relayuser", password: str = "relaypw") -> Topology:
    return topology(
        RelayService(
            retry=(300.0,),
            give_up=86400.0,
            warn_after=None,
            smarthost=Smarthost(host="smarthost", port=587, user=user, password=password),
        ),
        smarthost_relay=RelayService(retry=(300.0,), give_up=86400.0, warn_after=None),
        smarthost_users=((user, password),),
    )


# --- the sink ------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpts: list[str]
    data: bytes
    peer: str
    helo: str | None
    tls: bool
    trace_id: str | None


@dataclass
class Sink:
    """An MX stand-in. ``behaviour(rcpt, n)`` (n: how many times this
    recipient was offered before) returns an SMTP reply for RCPT or None
    for ``250``; ``data_reply`` likewise for the end of DATA."""

    node: str
    lab: Lab
    behaviour: Callable[[str, int], str | None] = lambda rcpt, n: None
    data_reply: Callable[[int], str | None] = lambda n: None
    received: list[Received] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)
    deliveries: int = 0

    @property
    def maildir(self) -> Maildir:
        return Maildir(mail_root(self.lab.state_dir, self.node))

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        count = self.seen.get(address, 0)
        self.seen[address] = count + 1
        reply = self.behaviour(address, count)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = self.data_reply(self.deliveries)
        if reply is not None:
            self.deliveries += 1
            return reply
        self.deliveries += 1
        data = envelope.original_content
        self.received.append(
            Received(
                mail_from=envelope.mail_from,
                rcpts=list(envelope.rcpt_tos),
                data=data,
                peer=str(session.peer[0]),
                helo=session.host_name,
                tls=server.transport.get_extra_info("ssl_object") is not None,
                trace_id=session_trace_id(session),
            )
        )
        for rcpt in envelope.rcpt_tos:
            await asyncio.get_running_loop().run_in_executor(
                None, self.maildir.deliver, rcpt.partition("@")[0], data
            )
        return "250 2.0.0 Ok: stored"


def start_sink(lab: Lab, node: str, **kwargs: Any) -> Sink:
    """Listen on ``node``:25 with a :class:`Sink` (STARTTLS offered)."""
    sink = Sink(node=node, lab=lab, **kwargs)
    ctx = lab.backend.context(node)  # type: ignore[attr-defined]

    async def serve() -> None:
        context = ctx.ca.server_context([f"{node}.example"])
        await ctx.net.serve_tcp(
            "sink",
            25,
            lambda: LabSMTP(
                sink,
                net=ctx.net,
                hostname=f"{node}.example",
                tls_context=context,
                auth_require_tls=False,
            ),
        )

    lab.backend.call(serve())  # type: ignore[attr-defined]
    return sink


def mailbox(lab: Lab, node: str, user: str) -> list[bytes]:
    """The messages in ``user``'s INBOX on ``node`` (oldest first)."""
    return [m.data for m in Maildir(mail_root(lab.state_dir, node)).messages(user)]


def relay_of(lab: Lab, node: str = "smtp") -> Any:
    return lab.backend.service(node, "relay")  # type: ignore[attr-defined]


def queue(lab: Lab, node: str = "smtp") -> list[dict[str, Any]]:
    return list(lab.control(node, "relay", "queue")["entries"])


def events(lab: Lab, kind: str = "queue", **match: Any) -> list[Any]:
    return [
        e
        for e in lab.trace().events
        if e.kind == kind and all(e.data.get(k) == v for k, v in match.items())
    ]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` (real seconds) and fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout} s")


def flush_until(lab: Lab, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Like :func:`wait_until`, flushing the relay's queue now and then: for a
    receiver the test starts after the lab (the relay's first attempt may come
    before it listens; the lab's own receivers are up before it tries)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        lab.control("smtp", "relay", "flush")
        with contextlib.suppress(AssertionError):
            wait_until(predicate, 0.3)
            return
    raise AssertionError(f"condition not met within {timeout} s")


def message(
    subject: str = "Hello",
    *,
    sender: str = ALICE,
    to: str = BOB,
    extra: str = "",
    body: str = "Hi Bob,\r\nthis is a test.\r\n",
) -> bytes:
    return (
        f"From: Alice <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n{extra}\r\n{body}"
    ).encode()


def submission_endpoint(lab: Lab, port: int = 587, node: str = "smtp") -> tuple[str, int]:
    for ep in lab.endpoints():
        if ep.node == node and ep.service == "submission" and ep.lab.endswith(f":{port}"):
            assert ep.local is not None
            host, _, local_port = ep.local.partition(":")
            return host, int(local_port)
    raise AssertionError(f"no submission endpoint on {node}:{port}")


def ca_path(lab: Lab) -> Path:
    return lab.state_dir / "tls" / "ca.pem"
