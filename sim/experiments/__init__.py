"""Experiments: what a student does from a node, and what comes back.

An experiment is a small frozen spec (``Dig``, ``Connect``, ``Send``) with an
``async run(ctx, trace)`` that uses only the node's context, so the very same
code runs inside the local backend's event loop and inside a mininet
namespace. Results are data with a ``to_json()`` in the shapes DESIGN.md
fixes for ``--json``; the trace is attached by the backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any, ClassVar

from sim.errors import NetworkError
from sim.net.api import LabConnectError
from sim.trace import Trace

if TYPE_CHECKING:
    from sim.services.base import NodeContext

__all__ = [
    "Connect",
    "ConnectResult",
    "Dig",
    "DigResult",
    "Experiment",
    "ExperimentResult",
    "experiment_from_json",
]


@dataclass
class ExperimentResult(ABC):
    """What an experiment found; ``trace`` is filled in by the backend."""

    trace: Trace = field(default_factory=Trace, kw_only=True)
    seconds: float = field(default=0.0, kw_only=True)

    @abstractmethod
    def body(self) -> dict[str, Any]:
        """The result's own keys (without the trace)."""

    @property
    def ok(self) -> bool:
        return True

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "trace": self.trace.to_json()}


class Experiment(ABC):
    kind: ClassVar[str]

    @abstractmethod
    async def run(self, ctx: NodeContext, trace: Trace) -> ExperimentResult:
        """Run on the node of ``ctx``; events go into ``trace`` via ``trace.id``."""

    def to_json(self) -> dict[str, Any]:
        out = {k: (str(v) if isinstance(v, IPv4Address) else v) for k, v in self.__dict__.items()}
        return {"kind": self.kind, **out}


# -- dig -------------------------------------------------------------------


@dataclass
class DigResult(ExperimentResult):
    name: str = ""
    type: str = "A"
    rcode: str = "NOERROR"
    answers: list[dict[str, Any]] = field(default_factory=list)
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
    """Ask the lab resolver a question, as ``dig`` on the node would."""

    kind: ClassVar[str] = "dig"
    name: str
    type: str = "A"

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


@dataclass
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
    """Open a TCP connection from the node (``nc -v HOST PORT``) and read a banner."""

    kind: ClassVar[str] = "connect"
    host: str
    port: int
    read_banner: bool = True

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


EXPERIMENTS: dict[str, type[Experiment]] = {"dig": Dig, "connect": Connect}


def register(cls: type[Experiment]) -> type[Experiment]:
    EXPERIMENTS[cls.kind] = cls
    return cls


def experiment_from_json(raw: dict[str, Any]) -> Experiment:
    args = dict(raw)
    kind = args.pop("kind")
    return EXPERIMENTS[kind](**args)


def elapsed(start: float) -> float:
    return round(time.monotonic() - start, 4)
