"""A stand-in for a running lab, for the lab engine's unit tests.

It answers DNS from the real :class:`~sim.services.zonestore.ZoneStore`
(built from the topology's zones, edited by the same control commands as
the DNS service) and models delivery just far enough for the engine: MX
lookup, implicit MX, null MX (RFC 7505), an MX that is up or down. Every call
is logged, so tests can see what the engine did (replays, restarts).
End-to-end behaviour is tested against the real local backend elsewhere.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sim.errors import LabError, ServiceError
from sim.resolve import record_from_rr
from sim.services.zonestore import ZoneEditError, ZoneStore
from sim.topology.model import Topology
from sim.topology.zones import ZoneSyntaxError, fqdn


def run_by_kind(lab: Any, node: str, experiment: Any) -> Any:
    """Like ``sim.Lab.run`` for a test double with ``dig``, ``connect`` and
    ``send`` methods: the experiment's kind picks the method; its parameters
    other than their defaults are the keyword arguments."""
    given = {
        f.name: getattr(experiment, f.name)
        for f in dataclasses.fields(experiment)
        if getattr(experiment, f.name) != f.default
    }
    if experiment.kind == "dig":
        return lab.dig(node, experiment.name, experiment.type)
    if experiment.kind == "connect":
        return lab.connect(node, experiment.host, experiment.port)
    if experiment.kind == "send":
        to = list(given.pop("to"))
        if "headers" in given:
            given["headers"] = dict(given["headers"])
        return lab.send(node, to, **given)
    raise LabError(f"this lab cannot run a {experiment.kind} experiment")


@dataclass
class FakeResult:
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {**self.data, "trace": self.data.get("trace", [])}


@dataclass
class FakeMessage:
    subject: str
    headers: dict[str, list[str]] = field(default_factory=dict)

    def header(self, name: str) -> list[str]:
        return self.headers.get(name.lower(), [])


class FakeLab:
    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.calls: list[tuple[str, Any]] = []
        self.stopped = False
        self.down: set[str] = set()
        self.boxes: dict[tuple[str, str], list[FakeMessage]] = {}
        self.clock = 0.0
        self.stores: dict[str, ZoneStore] = {}
        for node in topology.hosts():
            if node.services.dns is not None:
                zones = {z: topology.zone_text(z) for z in node.services.dns.zones}
                self.stores[node.name] = ZoneStore(zones, server_name=node.name)

    # -- DNS ---------------------------------------------------------------

    def _lookup(self, name: str, rtype: str) -> tuple[str, list[dict[str, Any]]]:
        for store in self.stores.values():
            if store.zone_for(name) is not None:
                answer = store.lookup(name, rtype)
                records = [record_from_rr(rr).to_json() for rr in answer.answers]
                return answer.rcode, records
        return "NXDOMAIN", []

    def run(self, node: str, experiment: Any) -> Any:
        return run_by_kind(self, node, experiment)

    def dig(self, node: str, name: str, rtype: str = "A") -> FakeResult:
        self.calls.append(("dig", (node, name, rtype)))
        rcode, answers = self._lookup(name, rtype)
        trace = [
            {
                "t": self.clock,
                "kind": "dns",
                "node": "ns",
                "summary": f"{node} asked {rtype} {fqdn(name)} → {rcode}",
                "data": {},
            }
        ]
        return FakeResult(
            {
                "question": {"name": fqdn(name), "type": rtype},
                "rcode": rcode,
                "answers": answers,
                "server": "ns",
                "trace": trace,
            }
        )

    def connect(self, node: str, host: str, port: int) -> FakeResult:
        self.calls.append(("connect", (node, host, port)))
        up = any(
            n.ip is not None
            and str(n.ip.ip) == host
            and n.services.mx is not None
            and n.name not in self.down
            for n in self.topology.hosts()
        )
        return FakeResult(
            {
                "outcome": "connected" if up else "blocked",
                "error": None if up else "refused",
                "banner": "220 mx ESMTP" if up else None,
            }
        )

    # -- mail --------------------------------------------------------------

    def _mx_node(self, address: str) -> str | None:
        for node in self.topology.hosts():
            if node.ip is not None and str(node.ip.ip) == address and node.services.mx:
                return node.name
        return None

    def send(self, node: str, to: str | list[str], **kwargs: Any) -> FakeResult:
        self.calls.append(("send", (node, to, kwargs)))
        rcpt = to if isinstance(to, str) else to[0]
        _user, _, domain = rcpt.partition("@")
        rcode, mx = self._lookup(domain, "MX")
        trace: list[dict[str, Any]] = [
            {
                "t": self.clock,
                "kind": "dns",
                "node": "ns",
                "summary": f"{node} asked MX {domain} → {rcode}",
                "data": {},
            }
        ]
        if any(r["data"] == "0 ." for r in mx):
            reply = {"code": 556, "enhanced": "5.1.10", "text": f"{domain} has a null MX"}
            return FakeResult(
                {
                    "outcome": "rejected",
                    "stage": "dns",
                    "reply": reply,
                    "checks": {},
                    "trace": trace,
                }
            )
        host = mx[0]["data"].split()[1] if mx else domain
        _, addresses = self._lookup(host, "A")
        target = self._mx_node(addresses[0]["data"]) if addresses else None
        if addresses:
            trace.append(
                {
                    "t": self.clock,
                    "kind": "net",
                    "node": node,
                    "summary": f"tcp → {addresses[0]['data']}:25",
                    "data": {},
                }
            )
        if target is None or target in self.down:
            return FakeResult(
                {
                    "outcome": "blocked",
                    "stage": "connect",
                    "reply": None,
                    "checks": {},
                    "trace": trace,
                }
            )
        message = FakeMessage(kwargs.get("subject", "Hello from maillab"))
        self.boxes.setdefault((rcpt.lower(), "INBOX"), []).append(message)
        reply = {"code": 250, "enhanced": "2.0.0", "text": "Ok"}
        return FakeResult(
            {"outcome": "delivered", "stage": None, "reply": reply, "checks": {}, "trace": trace}
        )

    def mailbox(self, address: str, folder: str = "INBOX") -> list[FakeMessage]:
        return list(self.boxes.get((address.lower(), folder), []))

    # -- control -----------------------------------------------------------

    def control(self, node: str, service: str, command: str, **args: Any) -> dict[str, Any]:
        self.calls.append(("control", (node, service, command, args)))
        if service == "dns" and node in self.stores:
            store = self.stores[node]
            try:
                if command == "add":
                    return {"added": store.add(args["zone"], args["text"])}
                if command == "remove":
                    return {
                        "removed": store.remove(
                            args["zone"], args["name"], args.get("rtype"), args.get("data")
                        )
                    }
                if command == "replace_zone":
                    store.replace_zone(args["origin"], args["text"])
                    return {"replaced": True}
                if command == "flush":
                    return {"flushed": 0}
            except (ZoneEditError, ZoneSyntaxError) as err:
                raise ServiceError(f"{node} dns {command}: {err}") from err
        if service == "mx" and command in ("down", "up"):
            (self.down.add if command == "down" else self.down.discard)(node)
            return {"down": node in self.down}
        raise ServiceError(f"{node} has no {service} command {command!r}")

    def advance(self, duration: str | float) -> None:
        self.calls.append(("advance", duration))
        self.clock += float(duration) if not isinstance(duration, str) else 0.0

    def stop(self) -> None:
        self.stopped = True


class FakeStarter:
    """A ``starter`` for :class:`~sim.lab.engine.LabSession` that remembers its labs."""

    def __init__(self) -> None:
        self.labs: list[FakeLab] = []

    def __call__(self, topology: Topology, backend: str) -> FakeLab:
        lab = FakeLab(topology)
        self.labs.append(lab)
        return lab
