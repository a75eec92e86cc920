"""Follow the terminal: a light theme on a light background, a dark one on dark.

Textual draws its own background, so the app asks what the terminal uses:

1. ``$MAILLAB_THEME`` names a Textual theme (``textual-light``, ``nord``,
   ``ansi-dark``...) or just ``light`` / ``dark``;
2. ``$COLORFGBG`` (set by rxvt, Konsole, iTerm2 and others: ``15;0`` is light
   text on black) says which colour the background is;
3. else the terminal is asked (``OSC 11``, the xterm control sequence that
   reports the background colour as ``rgb:RRRR/GGGG/BBBB``; xterm, VTE,
   kitty, iTerm2, tmux 3.3+ answer), waiting at most a tenth of a second;
4. else dark, Textual's default.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping

__all__ = ["DARK", "LIGHT", "choose_theme", "parse_colorfgbg", "parse_osc11"]

DARK = "textual-dark"
LIGHT = "textual-light"

_OSC11 = re.compile(r"\]11;rgb:([0-9a-fA-F]{1,4})/([0-9a-fA-F]{1,4})/([0-9a-fA-F]{1,4})")


def parse_colorfgbg(value: str) -> bool | None:
    """True for a light background, False for dark, None when unknown.

    The last field is the background's ANSI colour number: 7 (white) and
    9-15 except 8 are light; 0-6 and 8 are dark.
    """
    fields = value.split(";")
    try:
        background = int(fields[-1])
    except ValueError:
        return None
    if background == 7 or 9 <= background <= 15:
        return True
    if 0 <= background <= 8:
        return False
    return None


def parse_osc11(reply: str) -> bool | None:
    """True when an ``OSC 11`` reply names a light colour (relative luminance
    above one half, ITU-R BT.709 weights)."""
    found = _OSC11.search(reply)
    if found is None:
        return None
    channels: list[float] = []
    for part in found.groups():
        channels.append(int(part, 16) / (16 ** len(part) - 1))
    r, g, b = channels
    return 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5


def _ask_terminal(timeout: float = 0.1) -> bool | None:
    """Ask the terminal for its background colour (POSIX ttys only)."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return None
    try:
        import select
        import termios
        import tty
    except ImportError:  # Windows
        return None
    fd = sys.stdin.fileno()
    try:
        saved = termios.tcgetattr(fd)
    except termios.error:
        return None
    try:
        tty.setcbreak(fd)
        os.write(sys.stdout.fileno(), b"\x1b]11;?\x1b\\")
        reply = b""
        while True:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                break
            chunk = os.read(fd, 64)
            if not chunk:
                break
            reply += chunk
            if reply.endswith((b"\x1b\\", b"\x07")):
                break
        if not reply.endswith((b"\x1b\\", b"\x07")):
            # No answer in time: drop anything half-arrived, so that a late
            # reply is not read as key presses by the app.
            termios.tcflush(fd, termios.TCIFLUSH)
    except OSError:
        return None
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    return parse_osc11(reply.decode("ascii", "replace"))


def choose_theme(env: Mapping[str, str] | None = None, *, ask: bool = True) -> str:
    """The Textual theme to use in this terminal."""
    env = os.environ if env is None else env
    named = env.get("MAILLAB_THEME", "").strip()
    if named:
        return {"light": LIGHT, "dark": DARK}.get(named, named)
    light = parse_colorfgbg(env["COLORFGBG"]) if env.get("COLORFGBG") else None
    if light is None and ask:
        light = _ask_terminal()
    return LIGHT if light else DARK
