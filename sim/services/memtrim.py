"""Give memory freed by finished sessions back to the system.

A fuzz run of 10,000 hostile sessions took a lab from about 65 MB resident to
about 185 MB, where it stayed. Nothing was kept alive: the Python objects
after the run were the lab log's bounded events (``sim.trace.LOG_LIMIT``), and
``malloc_trim(0)`` took the process back to about 80 MB. The rest was memory
glibc's allocator had been given back by finished sessions (TLS handshakes
allocate a lot in OpenSSL, buffers come and go) and keeps for reuse, in pieces
spread over its heap, instead of returning it to the kernel.

So a little after sessions end (never more than once per :data:`TRIM_DELAY`),
the lab asks glibc to return what it can. Elsewhere (macOS, musl) this does
nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import weakref
from collections.abc import Callable

__all__ = ["TRIM_DELAY", "session_ended"]

#: Real seconds between the end of a session and the trim it asks for.
TRIM_DELAY = 5.0


def _find_trim() -> Callable[[int], int] | None:
    try:
        # glibc's soname first: ctypes.util.find_library runs `ldconfig -p`
        # in a subprocess, a few ms of every lab start (issue 14 §3).
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        from ctypes.util import find_library

        name = find_library("c")
        if name is None:
            return None
        try:
            libc = ctypes.CDLL(name)
        except OSError:
            return None
    try:
        trim: Callable[[int], int] = libc.malloc_trim
    except AttributeError:  # not glibc (musl, macOS): nothing to trim
        return None
    return trim


_TRIM = _find_trim()
_scheduled: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def session_ended() -> None:
    """A session of a lab server ended: trim soon, once for all that end
    meanwhile. Call from the event loop."""
    if _TRIM is None:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    if loop in _scheduled:
        return
    _scheduled.add(loop)
    loop.call_later(TRIM_DELAY, _trim, loop)


def _trim(loop: asyncio.AbstractEventLoop) -> None:
    _scheduled.discard(loop)
    if _TRIM is not None:
        _TRIM(0)
