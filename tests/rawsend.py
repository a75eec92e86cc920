"""A message sent as it is, from a lab node straight to an MX, with the
check events it met: how the conformance suites (DKIM, ARC) put each case
through the MX's real path and the lab DNS."""

from __future__ import annotations

from typing import Any

import sim
from sim.services.smtpclient import SmtpClient

__all__ = ["send_raw"]


def send_raw(
    lab: sim.Lab,
    data: bytes,
    *,
    mx_ip: str,
    mail_from: str,
    helo: str,
    check: str,
    node: str = "sender",
) -> list[dict[str, Any]]:
    """Send ``data`` from ``node`` to ``mx_ip``:25 (no TLS), assert it was
    accepted, and return the data of its ``check`` events named ``check``."""
    backend: Any = lab.backend
    ctx = backend.context(node)
    trace = backend.hub.open()
    transcript = backend.call(
        SmtpClient.for_node(ctx).send(
            mx_ip,
            25,
            mail_from=mail_from,
            rcpts=["bob@mx.example"],
            data=data,
            helo=helo,
            tls="none",
            trace_id=trace.id,
        )
    )
    assert transcript.delivered, transcript
    return [e.data for e in trace.of_kind("check") if e.data.get("check") == check]
