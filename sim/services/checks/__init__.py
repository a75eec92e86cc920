"""The receiving checks of the lab MX: one module each, collected here.

Every module of this package (but ``base``) defines ``CHECK``, a
:class:`~sim.services.checks.base.Check` (see there for what it declares).
The registry finds them by listing the package, so a new check is one new
module; :func:`register` adds one from elsewhere (a test, a course's own
check). Everything that names checks reads them here: the topology schema
(``mx.checks`` and ``mx.scoring``), the lab's ``checks`` expectations, the
policy, the reply table and the Authentication-Results writer.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from sim.services.checks.base import Check

__all__ = [
    "Check",
    "all_checks",
    "authentication",
    "default_actions",
    "get",
    "listed",
    "names",
    "register",
    "unregister",
    "with_clause",
]

_EXTRA: dict[str, Check] = {}
_GENERATION = [0]


@cache
def _builtin() -> dict[str, Check]:
    found: dict[str, Check] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        check = getattr(module, "CHECK", None)
        if isinstance(check, Check):
            found[check.name] = check
    return found


@cache
def _ordered(generation: int) -> tuple[Check, ...]:
    merged = {**_builtin(), **_EXTRA}
    return tuple(sorted(merged.values(), key=lambda c: (c.order, c.name)))


def all_checks() -> tuple[Check, ...]:
    """Every check, in their declared order."""
    return _ordered(_GENERATION[0])


def with_clause() -> frozenset[str]:
    """The checks with an Authentication-Results clause of their own (not
    iprev: the MX makes that one once, from the connection's reverse DNS)."""
    return _with_clause(_GENERATION[0])


@cache
def _with_clause(generation: int) -> frozenset[str]:
    return frozenset(c.name for c in _ordered(generation) if c.ar_method not in (None, "iprev"))


def authentication() -> tuple[str, ...]:
    """The domain-authentication checks (RFC 7372 §3.2 counts them for X.7.26)."""
    return _authentication(_GENERATION[0])


@cache
def _authentication(generation: int) -> tuple[str, ...]:
    return tuple(c.name for c in _ordered(generation) if c.authentication)


def listed() -> tuple[Check, ...]:
    """The checks a topology may list in ``mx.checks``."""
    return tuple(c for c in all_checks() if c.listed)


def names() -> tuple[str, ...]:
    """The names a topology may list in ``mx.checks``, in order."""
    return tuple(c.name for c in listed())


def get(name: str) -> Check | None:
    return _EXTRA.get(name) or _builtin().get(name)


def default_actions() -> dict[str, str]:
    """What a check listed by name only costs (``checks: [ptr, spf]``)."""
    return {c.name: c.default for c in listed()}


def register(check: Check) -> None:
    """Add (or replace) a check from outside this package."""
    _EXTRA[check.name] = check
    _GENERATION[0] += 1


def unregister(name: str) -> None:
    if _EXTRA.pop(name, None) is not None:
        _GENERATION[0] += 1
