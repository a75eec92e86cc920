"""Experiments in a topology with real daemons (Postfix, Dovecot) wait a
moment for their logs.

maillab's own services emit trace events as they act; Postfix and Dovecot
write a log that the node's agent reads every few hundredths of a second
(:mod:`sim.services.realmail`). An experiment that ends right after a
server's reply waits :data:`REAL_LOG_WAIT` before its trace is collected,
so that the refusal's check, the IMAP login or the queue line is in it.
"""

from __future__ import annotations

import asyncio

from sim.topology.model import Topology

__all__ = ["REAL_LOG_WAIT", "real_software", "settle_real_logs"]

#: Real seconds to wait (the log is read every 0.02 s).
REAL_LOG_WAIT = 0.2


def real_software(topology: Topology) -> bool:
    """Does any node run Postfix or Dovecot (whose events come from logs)?"""
    return any(
        n.services.postfix is not None or n.services.dovecot is not None for n in topology.hosts()
    )


async def settle_real_logs(topology: Topology) -> bool:
    """Wait for real daemons' logs to be read; whether there were any."""
    if not real_software(topology):
        return False
    await asyncio.sleep(REAL_LOG_WAIT)
    return True
