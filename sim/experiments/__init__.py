"""Experiments: what a student does from a node, and what comes back.

An experiment is a small frozen spec (``Dig``, ``Connect``, ``Send``,
``Read``) with an ``async run(ctx, trace)`` that uses only the node's
context, so the very same code runs inside the local backend's event loop and
inside a mininet namespace. Results are data with a ``to_json()`` in the
shapes DESIGN.md fixes for ``--json``; the trace is attached by the backend.

Each experiment is defined once, here or in a module of its own
(:mod:`sim.experiments.send`, :mod:`sim.experiments.read`), and listed in
:data:`KINDS`. The fields a person sets carry their description
(:func:`sim.experiments.params.param`): the lab file's form of the
experiment, the command line's options and the Python API all come from it.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from abc import ABC, abstractmethod
from dataclasses import field
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any, ClassVar

from sim.errors import NetworkError
from sim.experiments.params import param
from sim.fastclass import dataclass
from sim.net.api import LabConnectError
from sim.spec.kinds import Int, Str

if TYPE_CHECKING:
    from sim.events import DnsRecordJson
    from sim.services.base import NodeContext
    from sim.trace import Trace

__all__ = [
    "KINDS",
    "OUTCOMES",
    "Connect",
    "ConnectResult",
    "Dig",
    "DigResult",
    "Experiment",
    "ExperimentResult",
    "experiment_class",
    "experiment_from_json",
]


#: Every outcome an experiment reports, with its meaning: the one vocabulary
#: of the results (``send``, ``connect``), of lab files' ``outcome:``
#: checks (sim.lab.checks) and of the docs (docs/concepts.md is checked
#: against it by tests/test_outcome_vocabulary.py).
OUTCOMES: dict[str, str] = {
    "delivered": "accepted and stored in the inbox",
    "junk": "accepted, filed as spam",
    "forwarded": "accepted by a forwarder (an alias, a backup MX) and sent on, but its "
    "next hop could not be followed to the end (too many hops, or no word yet)",
    "rejected": "a 5yz reply, with the stage: dns, connect, helo, mail, rcpt or data",
    "deferred": "a 4yz reply (or no reply): queued for a retry",
    "bounced": "a relay gave up or got a 5yz, and sent a DSN to the envelope sender",
    "blocked": "the network stopped it before an SMTP greeting: time-out, refused or "
    "unreachable, with the router and rule",
    "connected": "a `connect` reached the server and read its greeting",
}


def _new_trace() -> Trace:
    # The trace vocabulary (sim.trace, sim.events) is imported when a result
    # is made, not when the command line is built (issue 14 §3).
    from sim.trace import Trace

    return Trace()


@dataclass(repr=False)
class ExperimentResult(ABC):
    """What an experiment found; ``trace`` is filled in by the backend."""

    trace: Trace = field(default_factory=_new_trace, kw_only=True)
    seconds: float = field(default=0.0, kw_only=True)

    @abstractmethod
    def body(self) -> dict[str, Any]:
        """The result's own keys (without the trace)."""

    @property
    def ok(self) -> bool:
        return True

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "trace": self.trace.to_json()}

    def __repr__(self) -> str:
        from sim.trace import presented

        return str(presented("result_repr")(self))

    def _repr_html_(self) -> str:
        from sim.trace import presented

        return str(presented("result_html")(self))


class Experiment(ABC):
    kind: ClassVar[str]
    #: What it is, as a lab file's reference names it ("a DNS question").
    noun: ClassVar[str] = ""

    def describe(self, node: str) -> str:
        """What it does, in words (results, the TUI)."""
        return f"{self.kind} from {node}"

    @abstractmethod
    async def run(self, ctx: NodeContext, trace: Trace) -> ExperimentResult:
        """Run on the node of ``ctx``; events go into ``trace`` via ``trace.id``."""

    def to_json(self) -> dict[str, Any]:
        out = {k: (str(v) if isinstance(v, IPv4Address) else v) for k, v in self.__dict__.items()}
        return {"kind": self.kind, **out}


# -- dig -------------------------------------------------------------------


@dataclass(repr=False)
class DigResult(ExperimentResult):
    name: str = ""
    type: str = "A"
    rcode: str = "NOERROR"
    answers: list[DnsRecordJson] = field(default_factory=list)
    server: str = ""

    def body(self) -> dict[str, Any]:
        return {
            "question": {"name": self.name, "type": self.type},
            "rcode": self.rcode,
            "answers": self.answers,
            "server": self.server,
        }

    @property
    def ok(self) -> bool:
        return self.rcode == "NOERROR"


@dataclass(frozen=True)
class Dig(Experiment):
    """Ask the lab resolver, as `dig NAME TYPE` on the node."""

    kind: ClassVar[str] = "dig"
    noun: ClassVar[str] = "a DNS question"
    name: str = field(metadata=param(Str(), "the name to look up", positional=True))
    type: str = field(
        default="A",
        metadata=param(
            Str(), "record type: A, MX, TXT, PTR...", convert=str.upper, positional=True
        ),
    )

    def describe(self, node: str) -> str:
        return f"dig {self.name} {self.type} from {node}"

    async def run(self, ctx: NodeContext, trace: Trace) -> DigResult:
        answer = await ctx.resolver.query(self.name, self.type.upper(), trace_id=trace.id)
        return DigResult(
            name=answer.name,
            type=answer.type,
            rcode=answer.rcode,
            answers=[r.to_json() for r in answer.records],
            server=answer.server,
        )


# -- connect ---------------------------------------------------------------


@dataclass(repr=False)
class ConnectResult(ExperimentResult):
    """``outcome`` is ``connected``, or ``blocked`` with ``error`` one of
    timeout, refused, unreachable; ``verdict`` names router and rule."""

    dst: str = ""
    port: int = 0
    outcome: str = "connected"
    error: str | None = None
    banner: str | None = None
    verdict: dict[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        return {
            "dst": self.dst,
            "port": self.port,
            "outcome": self.outcome,
            "error": self.error,
            "banner": self.banner,
            "verdict": self.verdict,
        }

    @property
    def ok(self) -> bool:
        return self.outcome == "connected"


def connect_error_kind(err: OSError) -> str:
    if isinstance(err, TimeoutError):
        return "timeout"
    if isinstance(err, ConnectionRefusedError):
        return "refused"
    return "unreachable"


@dataclass(frozen=True)
class Connect(Experiment):
    """Open a TCP connection and read the greeting.

    As ``nc -v HOST PORT`` on the node."""

    kind: ClassVar[str] = "connect"
    noun: ClassVar[str] = "a TCP connection"
    host: str = field(metadata=param(Str(), "a lab address or a name", positional=True))
    port: int = field(
        metadata=param(Int(minimum=1, maximum=65535), "a TCP port, e.g. 25", positional=True)
    )
    read_banner: bool = True

    def describe(self, node: str) -> str:
        return f"connect from {node} to {self.host}:{self.port}"

    async def run(self, ctx: NodeContext, trace: Trace) -> ConnectResult:
        dst = await resolve_host(ctx, self.host, trace)
        try:
            reader, writer = await ctx.net.open_connection(dst, self.port, trace_id=trace.id)
        except LabConnectError as err:
            return ConnectResult(
                dst=str(dst),
                port=self.port,
                outcome="blocked",
                error=connect_error_kind(err),
                verdict=err.verdict.to_json() if err.verdict else None,
            )
        banner = None
        try:
            if self.read_banner:
                import asyncio  # (not at import: building the command line needs none)

                # Real-time wait: a greeting comes at once or not at all (RFC 5321 §4.3.1).
                line = await asyncio.wait_for(reader.readline(), timeout=5)
                banner = line.decode("utf-8", "replace").rstrip("\r\n") or None
        except TimeoutError:
            banner = None
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return ConnectResult(dst=str(dst), port=self.port, banner=banner)


async def resolve_host(ctx: NodeContext, host: str, trace: Trace) -> IPv4Address:
    """A lab address or a name resolved through the lab DNS (A record)."""
    try:
        return IPv4Address(host)
    except ValueError:
        pass
    answer = await ctx.resolver.query(host, "A", trace_id=trace.id)
    for record in answer.of_type("A"):
        return IPv4Address(record.data)
    raise NetworkError(f"{host}: no A record in the lab DNS ({answer.rcode})")


#: Experiment kind → where its class is defined (imported on first use:
#: ``send`` and ``read`` bring an SMTP and an IMAP/POP3 client).
KINDS: dict[str, str] = {
    "dig": "sim.experiments:Dig",
    "connect": "sim.experiments:Connect",
    "send": "sim.experiments.send:Send",
    "read": "sim.experiments.read:Read",
}


def experiment_class(kind: str) -> type[Experiment]:
    module_name, _, class_name = KINDS[kind].partition(":")
    cls: type[Experiment] = getattr(importlib.import_module(module_name), class_name)
    return cls


def experiment_from_json(raw: dict[str, Any]) -> Experiment:
    args = dict(raw)
    kind = args.pop("kind")
    return experiment_class(kind)(**args)


def elapsed(start: float) -> float:
    return round(time.monotonic() - start, 4)
