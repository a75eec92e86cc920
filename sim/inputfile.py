"""Reading a file a person named: bounded, regular files only, one problem on refusal.

Every loader of instructor or student input (topology files, lab files, zone
files, message files) reads through :func:`read_input_text` or
:func:`read_input_bytes`, so that no input can hang or exhaust maillab:

* **Regular files only.** The file is opened with ``O_NONBLOCK`` (opening a
  FIFO for reading would otherwise wait for a writer) and ``fstat``-ed on the
  open descriptor, so what is checked is what is read. A FIFO, a device
  (``/dev/zero`` never ends), a socket or a directory is refused.
* **A size limit, checked before reading:** :data:`MAX_INPUT_BYTES` (1 MiB)
  for any input, :data:`MAX_YAML_BYTES` (256 KiB) for topology and lab files.
  The largest shipped lab file is 16 KB. The YAML parser (ruamel.yaml, pure
  Python) is slow on dense YAML: 100 KB of ``key: value`` lines took 10 s of
  CPU to validate (measured on a loaded shared machine), so 256 KiB bounds a
  mistaken file to about half a minute while leaving 16 times the room any
  lab needs. At most ``limit + 1`` bytes are read even if the file grows.
* **Text is UTF-8** (a BOM is accepted) with no NUL byte; the first bad byte
  is reported with its line and column.

A refusal is an :class:`InputFileError`: an :class:`~sim.errors.InputError`
with exactly one :class:`~sim.errors.Problem` (``PATH:1:1: message``), so a
loader that collects problems can take ``err.problem`` and go on.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from sim.errors import InputError, Problem

__all__ = [
    "MAX_INPUT_BYTES",
    "MAX_YAML_BYTES",
    "InputFileError",
    "read_input_bytes",
    "read_input_text",
]

#: The largest input file maillab reads (documented in docs/troubleshooting.md).
MAX_INPUT_BYTES = 1024 * 1024
#: The largest topology or lab file (YAML) maillab reads.
MAX_YAML_BYTES = 256 * 1024


class InputFileError(InputError):
    """An input file that cannot be read: missing, not a regular file, too
    large, binary or not UTF-8. Carries exactly one problem."""

    def __init__(self, problem: Problem) -> None:
        super().__init__([problem])
        self.problem = problem


def _refuse(path: str, message: str, line: int = 1, col: int = 1) -> InputFileError:
    return InputFileError(Problem(path, line, col, message))


def _kind_of(mode: int) -> str | None:
    """What a non-regular file is, in words (None for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    return f"{n / 1024:.0f} KiB" if n >= 1024 else f"{n} bytes"


def read_input_bytes(
    path: str | os.PathLike[str], *, what: str = "file", limit: int = MAX_INPUT_BYTES
) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them.

    ``what`` names the file in messages ("topology file", "lab file").
    Raises :class:`InputFileError`.
    """
    source = str(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it has no
        # effect on reading a regular file. O_NOCTTY: a terminal device named
        # by mistake must not become our controlling terminal.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return _fail_missing(source)
    except PermissionError:
        raise _refuse(source, "cannot read the file: permission denied") from None
    except IsADirectoryError:
        raise _refuse(source, f"is a directory, not a {what}") from None
    except OSError as err:
        if err.errno == errno.ENXIO:  # a socket file, or a device without a driver
            raise _refuse(
                source, f"not a regular file, not a {what}: maillab reads only regular files"
            ) from None
        raise _refuse(source, f"cannot read the file: {err.strerror or err}") from None
    try:
        info = os.fstat(fd)
        kind = _kind_of(info.st_mode)
        if kind == "a directory":
            raise _refuse(source, f"is a directory, not a {what}")
        if kind is not None:
            raise _refuse(source, f"is {kind}, not a {what}: maillab reads only regular files")
        if info.st_size > limit:
            raise _refuse(source, _too_large(info.st_size, limit, what))
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 16, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:  # the file grew while we read it
            raise _refuse(source, _too_large(total, limit, what))
        return b"".join(chunks)
    except OSError as err:
        raise _refuse(source, f"cannot read the file: {err.strerror or err}") from None
    finally:
        os.close(fd)


def _fail_missing(source: str) -> bytes:
    parent = Path(source).parent
    if str(parent) not in ("", ".") and not parent.is_dir():
        raise _refuse(source, f"no such file (no directory {parent})")
    raise _refuse(source, "no such file")


def _too_large(size: int, limit: int, what: str) -> str:
    return (
        f"too large for a {what}: {_size(size)}, the limit is {_size(limit)} "
        "(see docs/troubleshooting.md)"
    )


def read_input_text(
    path: str | os.PathLike[str], *, what: str = "file", limit: int = MAX_INPUT_BYTES
) -> str:
    """The text of ``path``: :func:`read_input_bytes`, then UTF-8 (BOM allowed).

    A NUL byte means a binary file; an undecodable byte is reported at its
    line and column. Raises :class:`InputFileError`.
    """
    source = str(path)
    data = read_input_bytes(path, what=what, limit=limit)
    if not data.strip():
        # An empty file is left to the loader: "empty" is its kind of problem.
        return data.decode("utf-8-sig", "replace")
    if b"\x00" in data:  # reported at 1:1: the whole file is the problem
        raise _refuse(source, f"a binary file (it contains NUL bytes), not a {what}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line, col = _position(data, err.start)
        raise _refuse(
            source,
            f"not UTF-8 text: byte 0x{data[err.start]:02x} cannot be decoded; "
            "save the file as UTF-8",
            line,
            col,
        ) from None


def _position(data: bytes, offset: int) -> tuple[int, int]:
    line = data.count(b"\n", 0, offset) + 1
    col = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return line, col
