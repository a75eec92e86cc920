"""The one exception tree of maillab.

Every error a front end may show derives from :class:`SimError`; the CLI, the
TUI and notebooks turn it into one readable line (``str(err)``), never a
traceback::

    SimError
     ├── ArgumentError         a value given to a command or an API call is wrong
     ├── InputError            a file an instructor wrote is wrong
     │    ├── TopologyError    topology file: structure or meaning
     │    └── LabFileError     lab file: structure or meaning
     ├── BackendError          a backend cannot start, run or stop
     │    └── BackendUnavailable   missing root, Linux, mnexec, ...
     ├── NetworkError          the lab network refused an operation
     │    └── OutsideLabError  a destination that is not in the topology
     ├── ServiceError          a lab service failed to start or answer
     └── LabError             the lab engine (progress, checks, tasks)

An :class:`InputError` carries every :class:`Problem` found in the file, each
rendered as ``PATH:LINE:COL: message``.
"""

from __future__ import annotations

from sim.fastclass import dataclass

__all__ = [
    "ArgumentError",
    "BackendError",
    "BackendUnavailable",
    "InputError",
    "LabError",
    "LabFileError",
    "NetworkError",
    "OutsideLabError",
    "Problem",
    "ServiceError",
    "SimError",
    "TopologyError",
]


@dataclass(frozen=True, order=True)
class Problem:
    """One problem in an input file, at a 1-based line and column."""

    path: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.message}"


class SimError(Exception):
    """Base of every error maillab reports to a person."""


class ArgumentError(SimError):
    """A value given to a command or a Python call is not acceptable: a port
    out of range, a DNS name with an empty label, a node the topology does not
    have, a state directory that is a file. The message names the value."""


class InputError(SimError):
    """A file written by an instructor has one or more problems."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class TopologyError(InputError):
    """A topology file has problems."""


class LabFileError(InputError):
    """A lab file has problems."""


class BackendError(SimError):
    """A backend could not start, run or stop a lab."""


class BackendUnavailable(BackendError):
    """The backend cannot run on this machine; the message says what is missing."""


class NetworkError(SimError):
    """The lab network refused an operation."""


class OutsideLabError(NetworkError):
    """A destination that is not part of the topology: nothing leaves the lab."""


class ServiceError(SimError):
    """A lab service failed."""


class LabError(SimError):
    """The lab engine failed (progress, checks, tasks)."""
