"""sim.fastclass.dataclass behaves as dataclasses.dataclass.

Each shape of class maillab declares (plain, frozen, slotted, keyword-only,
inherited, with factories, ``KW_ONLY``, ``ClassVar``, ``field(init=False)``,
``__post_init__``) is declared twice, once with each decorator, and the two
are compared: the ``__init__`` signature (once compiled), what construction
gives and which errors it raises, equality, hash, repr, immutability,
``fields``/``replace``/``asdict``, copying (the way pickling goes).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import KW_ONLY, FrozenInstanceError, field
from typing import Any, ClassVar

import pytest

from sim import fastclass

Decorator = Callable[..., Any]


def _declare(dataclass: Decorator) -> dict[str, type]:
    """The shapes of class, declared with ``dataclass``."""

    @dataclass
    class Plain:
        """A plain one."""

        a: int
        b: str = "x"
        c: list[int] = field(default_factory=list)
        d: int = field(default=3, repr=False, compare=False)
        kind: ClassVar[str] = "plain"

    @dataclass(frozen=True)
    class Frozen:
        """A frozen one."""

        a: int
        b: tuple[str, ...] = ()
        c: dict[str, int] = field(default_factory=dict, hash=False)

    @dataclass(frozen=True, slots=True, kw_only=True)
    class Event:
        """Frozen, slotted, keyword-only."""

        client: str = field(metadata={"doc": "who"})
        rcode: str | None = field(default=None, metadata={"doc": "what", "omit": True})
        role: str = field(default="client", metadata={"doc": "tag"})

    @dataclass(frozen=True)
    class Child(Frozen):
        """Inherits a frozen one's fields."""

        e: int = 5

        def __post_init__(self) -> None:
            if self.e < 0:
                raise ValueError("e < 0")

    @dataclass
    class Marked:
        """``KW_ONLY`` and a field left out of ``__init__``."""

        a: int
        _: KW_ONLY
        b: int = 2
        c: list[str] = field(default_factory=list, init=False)
        d: int = field(default=4, init=False)

    @dataclass(repr=False)
    class Result(Plain):
        """Inherits a plain one's fields, keeps its own repr."""

        outcome: str = "ok"

        def __repr__(self) -> str:
            return f"<{self.outcome}>"

    @dataclass(eq=False)
    class Identity:
        """Compared by identity."""

        a: int = 1

    @dataclass(frozen=True, slots=True)
    class Slotted:
        """Frozen and slotted, positional."""

        a: int
        b: str = "b"

    return {c.__name__: c for c in (Plain, Frozen, Event, Child, Marked, Result, Identity, Slotted)}


STANDARD = _declare(dataclasses.dataclass)
FAST = _declare(fastclass.dataclass)

#: Arguments each class is built with (all must work), and calls that must fail.
GOOD: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = {
    "Plain": [((1,), {}), ((1, "y", [2]), {"d": 9})],
    "Frozen": [((1,), {}), ((2, ("a",)), {"c": {"k": 1}})],
    "Event": [((), {"client": "1.2.3.4"}), ((), {"client": "c", "rcode": "NOERROR"})],
    "Child": [((1,), {}), ((1, (), {}, 7), {})],
    "Marked": [((1,), {}), ((1,), {"b": 3})],
    "Result": [((1,), {"outcome": "bad"})],
    "Identity": [((), {}), ((3,), {})],
    "Slotted": [((1,), {}), ((1, "z"), {})],
}
BAD: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = {
    "Plain": [((), {}), ((1,), {"zz": 1}), ((1, 2, 3, 4, 5), {})],
    "Event": [(("pos",), {}), ((), {})],
    "Child": [((1, (), {}, -1), {})],
    "Marked": [((1, 2), {}), ((1,), {"c": []})],
}


def _outcome(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """("ok", what ``call(*args, **kwargs)`` returned), or the error it raised."""
    try:
        return ("ok", call(*args, **kwargs))
    except Exception as err:
        return (type(err), str(err))


def _built(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    return _state(cls(*copy.deepcopy(args), **copy.deepcopy(kwargs)))


def _hashes_equal(a: Any, b: Any) -> bool:
    return hash(a) == hash(b)


def _replaced(obj: Any, name: str) -> dict[str, Any]:
    return _state(dataclasses.replace(obj, **{name: 1}))


def _state(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


@pytest.mark.parametrize("name", sorted(STANDARD))
def test_construction_and_its_errors_match(name: str) -> None:
    std, fast = STANDARD[name], FAST[name]
    for args, kwargs in GOOD.get(name, []) + BAD.get(name, []):
        assert _outcome(_built, std, args, kwargs) == _outcome(_built, fast, args, kwargs), (
            name,
            args,
            kwargs,
        )
    assert str(inspect.signature(fast)) == str(inspect.signature(std))
    assert fast.__init__.__annotations__ == std.__init__.__annotations__
    assert fast.__init__.__qualname__ == std.__init__.__qualname__


@pytest.mark.parametrize("name", sorted(STANDARD))
def test_the_dataclass_introspection_matches(name: str) -> None:
    std, fast = STANDARD[name], FAST[name]
    keys = ("name", "type", "default", "init", "repr", "compare", "hash", "kw_only", "metadata")
    assert [[getattr(f, k) for k in keys] for f in dataclasses.fields(fast)] == [
        [getattr(f, k) for k in keys] for f in dataclasses.fields(std)
    ]
    assert dataclasses.is_dataclass(fast)
    assert repr(fast.__dataclass_params__) == repr(std.__dataclass_params__)
    assert fast.__match_args__ == std.__match_args__
    assert hasattr(fast, "__slots__") == hasattr(std, "__slots__")
    assert fast.__doc__ == std.__doc__
    assert (fast.__hash__ is None) == (std.__hash__ is None)


@pytest.mark.parametrize("name", sorted(STANDARD))
def test_instances_behave_alike(name: str) -> None:
    std, fast = STANDARD[name], FAST[name]
    for args, kwargs in GOOD[name]:
        s1, s2 = std(*args, **kwargs), std(*args, **kwargs)
        f1, f2 = fast(*args, **kwargs), fast(*args, **kwargs)
        assert repr(f1).replace("FAST", "") == repr(s1)
        assert (f1 == f2) == (s1 == s2)
        assert (f1 != f2) == (s1 != s2)
        assert (f1 == object()) is False and (f1 == s1) is False
        assert _outcome(_hashes_equal, f1, f2) == _outcome(_hashes_equal, s1, s2)
        assert dataclasses.asdict(f1) == dataclasses.asdict(s1)
        assert _state(copy.deepcopy(f1)) == _state(s1)
        # (pickling goes the same way as copying: __reduce_ex__, then the state set)
        assert _state(copy.copy(f1)) == _state(s1)
        first = dataclasses.fields(f1)[0].name
        assert _outcome(_replaced, f1, first) == _outcome(_replaced, s1, first)
        set_std, set_fast = _outcome(setattr, s1, first, 99), _outcome(setattr, f1, first, 99)
        assert set_std[0] == set_fast[0] and _state(f1) == _state(s1)
        assert _outcome(delattr, s1, first)[0] == _outcome(delattr, f1, first)[0]


def test_a_frozen_instance_refuses_changes() -> None:
    event = FAST["Event"](client="c")
    with pytest.raises(FrozenInstanceError, match="cannot assign to field 'client'"):
        event.client = "d"  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError, match="cannot delete field 'rcode'"):
        del event.rcode  # type: ignore[misc]


def test_the_repr_of_a_cycle_stops() -> None:
    plain = FAST["Plain"](1)
    plain.c.append(plain)
    assert repr(plain) == "_declare.<locals>.Plain(a=1, b='x', c=[...])"


def test_a_non_default_argument_after_a_default_one_is_an_error() -> None:
    def declare(dataclass: Decorator) -> Any:
        @dataclass
        class Wrong:
            """Wrong."""

            a: int = 1
            b: int  # type: ignore[misc]

        return Wrong

    with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):
        declare(dataclasses.dataclass)(b=1)
    with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):
        declare(fastclass.dataclass)  # when declared, not when first built


def test_left_to_the_standard_decorator() -> None:
    @fastclass.dataclass(order=True)
    class Ordered:
        """Ordered."""

        a: int

    assert Ordered(1) < Ordered(2)
    assert dataclasses.fields(Ordered)[0].name == "a"


def test_a_class_without_a_docstring_gets_the_standard_one() -> None:
    def declare(dataclass: Decorator) -> Any:
        @dataclass(frozen=True)
        class Undocumented:
            a: int
            b: list[int] = field(default_factory=list)

        return Undocumented

    std, fast = declare(dataclasses.dataclass), declare(fastclass.dataclass)
    assert fast.__doc__ == std.__doc__ == "Undocumented(a: 'int', b: 'list[int]' = <factory>)"
    assert fast(1).__doc__ == std.__doc__


def test_methods_are_compiled_when_first_called() -> None:
    @fastclass.dataclass(frozen=True)
    class Lazy:
        """Lazy."""

        a: int

    stub = Lazy.__dict__["__init__"]
    Lazy(1)
    assert Lazy.__dict__["__init__"] is not stub
    assert Lazy.__init__.__code__.co_varnames[:2] == ("self", "a")
