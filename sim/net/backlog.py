"""The listen backlog of every lab TCP service.

``listen(2)``'s backlog is how many connections the kernel completes for a
server that has not accepted them yet. asyncio's default is 100: 300 clients
connecting at once overflow it, and the kernel then drops their handshakes,
which the clients see as a greeting that never comes (SYN retries take
seconds each). Postfix asks for a large backlog for the same reason. Linux
caps any backlog at ``net.core.somaxconn``, so asking for exactly that is
asking for all the machine allows.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

__all__ = ["DEFAULT_BACKLOG", "listen_backlog"]

#: Used where the kernel setting cannot be read (not Linux): Linux's default
#: since 5.4, and what macOS's ``kern.ipc.somaxconn`` would cap anyway.
DEFAULT_BACKLOG = 4096
SOMAXCONN = Path("/proc/sys/net/core/somaxconn")


@cache
def listen_backlog(path: Path = SOMAXCONN) -> int:
    """The largest listen backlog this machine allows."""
    try:
        value = int(path.read_text().strip())
    except (OSError, ValueError):
        return DEFAULT_BACKLOG
    return value if value > 0 else DEFAULT_BACKLOG
