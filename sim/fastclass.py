"""``dataclass``: the standard library's, with its methods compiled on first use.

The standard decorator writes a class's ``__init__``, ``__repr__``,
``__eq__``, ``__hash__`` (and a frozen class's ``__setattr__`` and
``__delattr__``) as source text and compiles each when the class is defined:
about 0.5 ms a class. ``maillab send`` defines some 170 of them before it
sends anything, and a command uses few of their methods: compiling them all
was a tenth of a second of every command's start (issue 14 §3).

Here the standard decorator does the cheap part, as it always does: it
collects the fields (defaults, ``field()``, ``KW_ONLY``, ``ClassVar``,
inherited fields, ``__match_args__``, ``__slots__``); each generated method
is compiled the first time it is called, from the same source text the
standard library writes. The class behaves the same: the same ``__init__``
(signature, defaults, factories, ``__post_init__``, errors), equality, hash,
repr, immutability, ``dataclasses.fields``/``replace``/``asdict``, pickling
(tests/test_fastclass.py compares them option by option).

For mypy this *is* ``dataclasses.dataclass``. Options it does not handle
(``order``, ``unsafe_hash``, ``weakref_slot``, ``InitVar`` fields, a frozen
class with its own ``__setattr__``) go to the
standard decorator unchanged.
"""

from __future__ import annotations

import _thread
import dataclasses
import inspect
import sys
from collections.abc import Callable
from dataclasses import MISSING, Field, FrozenInstanceError
from typing import TYPE_CHECKING, Any

__all__ = ["dataclass"]


class _HasDefaultFactory:
    """The default a field with a ``default_factory`` shows in ``__init__``."""

    def __repr__(self) -> str:
        return "<factory>"


_HAS_DEFAULT_FACTORY = _HasDefaultFactory()


def _create_fn(
    cls: type,
    name: str,
    args: list[str],
    body: list[str],
    local_vars: dict[str, Any],
    return_none: bool = False,
) -> Callable[..., Any]:
    """Compile one method as ``dataclasses._create_fn`` does (the same text,
    the same globals: the module that defines the class)."""
    annotation = ""
    if return_none:
        local_vars["_return_type"] = None
        annotation = "->_return_type"
    inner = "\n".join(f"  {line}" for line in body)
    text = (
        f"def __create_fn__({', '.join(local_vars)}):\n"
        f" def {name}({','.join(args)}){annotation}:\n{inner}\n"
        f" return {name}"
    )
    module = sys.modules.get(cls.__module__)
    namespace: dict[str, Any] = {}
    # Compiled without this module's ``from __future__ import annotations``:
    # the annotations are the field types themselves, as dataclasses makes them.
    code = compile(text, "<string>", "exec", dont_inherit=True)
    exec(code, module.__dict__ if module is not None else {}, namespace)
    fn: Callable[..., Any] = namespace["__create_fn__"](**local_vars)
    fn.__qualname__ = f"{cls.__qualname__}.{fn.__name__}"
    return fn


def _tuple_str(obj: str, fields: list[Field[Any]]) -> str:
    if not fields:
        return "()"
    return f"({','.join(f'{obj}.{f.name}' for f in fields)},)"


def _make_init(cls: type, frozen: bool, slots: bool) -> Callable[..., Any]:
    fields = dataclasses.fields(cls)
    self_name = "__dataclass_self__" if "self" in {f.name for f in fields} else "self"
    local_vars: dict[str, Any] = {f"__dataclass_type_{f.name}__": f.type for f in fields}
    local_vars.update(
        {
            "MISSING": MISSING,
            "_HAS_DEFAULT_FACTORY": _HAS_DEFAULT_FACTORY,
            "__dataclass_builtins_object__": object,
        }
    )
    body = []
    for f in fields:
        default_name = f"__dataclass_dflt_{f.name}__"
        if f.default_factory is not MISSING:
            local_vars[default_name] = f.default_factory
            value = (
                f"{default_name}() if {f.name} is _HAS_DEFAULT_FACTORY else {f.name}"
                if f.init
                else f"{default_name}()"
            )
        elif f.init:
            if f.default is not MISSING:
                local_vars[default_name] = f.default
            value = f.name
        elif slots and f.default is not MISSING:
            # No class attribute holds the default of a slotted class.
            local_vars[default_name] = f.default
            value = default_name
        else:
            continue  # the class attribute is the default
        if frozen:
            body.append(
                f"__dataclass_builtins_object__.__setattr__({self_name},{f.name!r},{value})"
            )
        else:
            body.append(f"{self_name}.{f.name}={value}")
    if hasattr(cls, "__post_init__"):
        body.append(f"{self_name}.__post_init__()")

    def param(f: Field[Any]) -> str:
        if f.default is not MISSING:
            default = f"=__dataclass_dflt_{f.name}__"
        elif f.default_factory is not MISSING:
            default = "=_HAS_DEFAULT_FACTORY"
        else:
            default = ""
        return f"{f.name}:__dataclass_type_{f.name}__{default}"

    params = [param(f) for f in fields if f.init and not f.kw_only]
    keywords = [param(f) for f in fields if f.init and f.kw_only]
    if keywords:
        params += ["*", *keywords]
    return _create_fn(
        cls, "__init__", [self_name, *params], body or ["pass"], local_vars, return_none=True
    )


def _make_repr(cls: type) -> Callable[..., Any]:
    shown = [f for f in dataclasses.fields(cls) if f.repr]
    fn = _create_fn(
        cls,
        "__repr__",
        ["self"],
        [
            'return self.__class__.__qualname__ + f"('
            + ", ".join(f"{f.name}={{self.{f.name}!r}}" for f in shown)
            + ')"'
        ],
        {},
    )
    running: set[tuple[int, int]] = set()

    def __repr__(self: Any) -> str:  # as dataclasses._recursive_repr
        key = id(self), _thread.get_ident()
        if key in running:
            return "..."
        running.add(key)
        try:
            return str(fn(self))
        finally:
            running.discard(key)

    __repr__.__qualname__ = fn.__qualname__
    return __repr__


def _make_eq(cls: type) -> Callable[..., Any]:
    compared = [f for f in dataclasses.fields(cls) if f.compare]
    return _create_fn(
        cls,
        "__eq__",
        ["self", "other"],
        [
            "if other.__class__ is self.__class__:",
            f" return {_tuple_str('self', compared)}=={_tuple_str('other', compared)}",
            "return NotImplemented",
        ],
        {},
    )


def _make_hash(cls: type) -> Callable[..., Any]:
    hashed = [f for f in dataclasses.fields(cls) if (f.compare if f.hash is None else f.hash)]
    return _create_fn(cls, "__hash__", ["self"], [f"return hash({_tuple_str('self', hashed)})"], {})


def _check_order(cls: type) -> None:
    """The error the standard decorator raises when the class is declared (here
    ``__init__`` is compiled later): a positional field without a default after
    one with a default."""
    seen_default = False
    for f in dataclasses.fields(cls):
        if not f.init or f.kw_only:
            continue
        if f.default is not MISSING or f.default_factory is not MISSING:
            seen_default = True
        elif seen_default:
            raise TypeError(f"non-default argument {f.name!r} follows default argument")


def _on_first_call(cls: type, name: str, make: Callable[[type], Callable[..., Any]]) -> None:
    """Give ``cls`` a ``name`` method that compiles the real one when first
    called, puts it in its place, and calls it."""

    def stub(self: Any, *args: Any, **kwargs: Any) -> Any:
        return _compiled(cls, name)(self, *args, **kwargs)

    stub.__name__ = name
    stub.__qualname__ = f"{cls.__qualname__}.{name}"
    _MAKERS[stub] = make
    setattr(cls, name, stub)


#: Each stub (a method not compiled yet) → what compiles the method.
_MAKERS: dict[Callable[..., Any], Callable[[type], Callable[..., Any]]] = {}


def _compiled(cls: type, name: str) -> Callable[..., Any]:
    """``cls``'s own method ``name``, compiled now if it was not yet."""
    method: Callable[..., Any] = cls.__dict__[name]
    make = _MAKERS.get(method)
    if make is not None:
        method = make(cls)
        setattr(cls, name, method)
    return method


class _SignatureDoc:
    """The docstring of a class declared without one: as dataclasses writes
    it (its name and ``__init__``'s signature), written when first read."""

    def __get__(self, obj: Any, owner: type) -> str:
        if "__init__" in owner.__dict__:
            _compiled(owner, "__init__")
        return owner.__name__ + str(inspect.signature(owner)).replace(" -> None", "")


def _freeze(cls: type, slots: bool) -> None:
    """A frozen class's ``__setattr__``/``__delattr__`` (as the standard
    library writes them), and for a slotted one its pickling helpers."""
    names = frozenset(f.name for f in dataclasses.fields(cls))

    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in names:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)  # type: ignore[arg-type]

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)  # type: ignore[arg-type]

    for fn in (__setattr__, __delattr__):
        fn.__qualname__ = f"{cls.__qualname__}.{fn.__name__}"
        setattr(cls, fn.__name__, fn)
    if slots:

        def __getstate__(self: Any) -> list[Any]:
            return [getattr(self, f.name) for f in dataclasses.fields(self)]

        def __setstate__(self: Any, state: list[Any]) -> None:
            for f, value in zip(dataclasses.fields(self), state, strict=False):
                object.__setattr__(self, f.name, value)

        for helper in (__getstate__, __setstate__):
            if helper.__name__ not in cls.__dict__:
                setattr(cls, helper.__name__, helper)


#: The options handled here (any other, or a misspelt one, goes to the standard decorator).
_OPTIONS = frozenset(
    {"init", "repr", "eq", "order", "unsafe_hash", "frozen", "match_args", "kw_only", "slots"}
)


def _standard_only(cls: type, options: dict[str, Any]) -> bool:
    """Whether ``cls`` with ``options`` is a case left to the standard decorator."""
    if not _OPTIONS.issuperset(options):
        return True
    if options.get("order") or options.get("unsafe_hash") or options.get("weakref_slot"):
        return True
    if options.get("frozen") and ("__setattr__" in cls.__dict__ or "__delattr__" in cls.__dict__):
        return True  # the standard one says why that is an error
    return any("InitVar" in str(a) for a in inspect.get_annotations(cls).values())


def _process(cls: type, options: dict[str, Any]) -> type:
    if _standard_only(cls, options):
        return dataclasses.dataclass(cls, **options)
    init = options.get("init", True)
    repr_ = options.get("repr", True)
    eq = options.get("eq", True)
    frozen = options.get("frozen", False)
    slots = options.get("slots", False)
    # A frozen class that inherits dataclass fields: the standard decorator
    # checks the bases agree and writes __setattr__ (a few such classes).
    inherits = any(hasattr(base, "__dataclass_fields__") for base in cls.__mro__[1:])
    standard_frozen = frozen and inherits
    undocumented = not cls.__dict__.get("__doc__")
    if undocumented:
        cls.__doc__ = "(written when first read)"  # not now by the standard decorator
    explicit_hash = "__hash__" in cls.__dict__ and not (
        cls.__dict__["__hash__"] is None and "__eq__" in cls.__dict__
    )
    cls = dataclasses.dataclass(
        cls,
        init=False,
        repr=False,
        eq=False,
        frozen=standard_frozen,
        match_args=options.get("match_args", True),
        kw_only=options.get("kw_only", False),
        slots=slots,
    )
    if init:
        _check_order(cls)
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    params.init, params.repr, params.eq, params.frozen = init, repr_, eq, frozen
    if init and "__init__" not in cls.__dict__:
        _on_first_call(cls, "__init__", lambda c: _make_init(c, frozen, slots))
    if repr_ and "__repr__" not in cls.__dict__:
        _on_first_call(cls, "__repr__", _make_repr)
    if eq and "__eq__" not in cls.__dict__:
        _on_first_call(cls, "__eq__", _make_eq)
    if eq and not explicit_hash:
        # dataclasses' table: eq and frozen → a hash of the fields; eq alone → unhashable.
        if frozen:
            _on_first_call(cls, "__hash__", _make_hash)
        else:
            cls.__hash__ = None  # type: ignore[assignment]
    if frozen and not standard_frozen:
        _freeze(cls, slots)
    if undocumented:
        cls.__doc__ = _SignatureDoc()  # type: ignore[assignment]
    return cls


if TYPE_CHECKING:
    from dataclasses import dataclass as dataclass
else:

    def dataclass(cls=None, /, **options):
        """``dataclasses.dataclass``, its methods compiled on first use."""

        def wrap(cls):
            return _process(cls, options)

        return wrap if cls is None else wrap(cls)
