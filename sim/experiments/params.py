"""An experiment's parameters, declared once, on the experiment's own fields.

Each field of an experiment dataclass (:class:`~sim.experiments.Dig`,
:class:`~sim.experiments.send.Send`...) that a person may set carries a
:func:`param` in its metadata: the kind of value it takes in a lab file (a
:mod:`sim.spec.kinds` spec), what it means, and how the command line spells
it. From that one declaration come:

* the lab file's form of the experiment (``run: {send: {from: ..., to: ...}}``):
  :func:`lab_record`, its JSON Schema and reference docs, and the values a
  lab file gives, converted by :meth:`Param.convert`;
* the options of ``maillab dig|connect|send|read``: :func:`add_arguments` and
  :func:`cli_args`;
* the keyword arguments of :meth:`sim.Lab.run` (the dataclass itself).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any, TypeVar

from sim.fastclass import dataclass
from sim.spec.kinds import Field, Int, Record, Spec, Str

__all__ = [
    "NODE_FIELD",
    "Param",
    "add_arguments",
    "cli_args",
    "from_args",
    "lab_record",
    "param",
    "params",
]

T = TypeVar("T")

#: The node an experiment runs on: ``from`` in a lab file, ``--from`` on the command line.
NODE_FIELD = Field(Str(), required=True, description="the node it runs on (a host of the topology)")


@dataclass(frozen=True)
class Param:
    """How a person sets one parameter of an experiment."""

    name: str
    spec: Spec
    description: str = ""
    required: bool = False
    #: The Python default (shown in the reference when it reads well).
    default: Any = None
    #: A lab file's value → the field's value (``"x"`` → ``("x",)`` for a list).
    convert: Callable[[Any], Any] | None = None
    #: The command line: a positional argument, or an option (``--mail-from``).
    positional: bool = False
    metavar: str | None = None
    #: Not offered on the command line (a lab file only).
    cli: bool = True
    #: The option's name when it is not the field's (``--header`` for ``headers``).
    cli_name: str | None = None
    #: The option may be given several times (``--to a --to b``).
    repeat: bool = False
    #: The command line's value → a lab file's value (``--header 'N: v'``).
    from_cli: Callable[[Any], Any] | None = None

    @property
    def flag(self) -> str:
        return "--" + (self.cli_name or self.name).replace("_", "-")

    def value(self, raw: Any) -> Any:
        return self.convert(raw) if self.convert is not None else raw

    def default_text(self) -> str | None:
        """The default as a lab file would write it, for the reference."""
        value = self.default
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | str) and value != "" and "\n" not in str(value):
            return str(value)
        return None


def param(
    spec: Spec,
    description: str = "",
    *,
    convert: Callable[[Any], Any] | None = None,
    positional: bool = False,
    metavar: str | None = None,
    cli: bool = True,
    cli_name: str | None = None,
    repeat: bool = False,
    from_cli: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
    """Metadata for a dataclass field: ``field(default=..., metadata=param(...))``."""
    return {
        "param": {
            "spec": spec,
            "description": description,
            "convert": convert,
            "positional": positional,
            "metavar": metavar,
            "cli": cli,
            "cli_name": cli_name,
            "repeat": repeat,
            "from_cli": from_cli,
        }
    }


def params(cls: type) -> Iterator[Param]:
    """The parameters of experiment class ``cls``, in field order."""
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("param")
        if meta is None:
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if f.default is dataclasses.MISSING else f.default
        yield Param(name=f.name, required=required, default=default, **meta)


def from_args(cls: type[T], args: Mapping[str, Any]) -> T:
    """An experiment of class ``cls`` from a lab file's (already checked)
    values; keys left out take the experiment's defaults."""
    given = {p.name: p.value(args[p.name]) for p in params(cls) if args.get(p.name) is not None}
    return cls(**given)


def lab_record(cls: type, *, noun: str) -> Field:
    """The lab file's form of experiment ``cls``: ``from`` and its parameters."""
    fields = {"from": NODE_FIELD}
    for p in params(cls):
        fields[p.name] = Field(
            p.spec, required=p.required, description=p.description, default=p.default_text()
        )
    summary = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    return Field(Record(fields, name=cls.__name__, description=summary), description=noun)


def add_arguments(
    parser: argparse.ArgumentParser, cls: type, *, skip: Collection[str] = ()
) -> None:
    """The command line's options for experiment ``cls`` (``--from`` included);
    the parameters named in ``skip`` are left to the caller (the password has
    more sources than one option: sim.passwords)."""
    parser.add_argument(
        "--from", dest="node", required=True, metavar="NODE", help=NODE_FIELD.description
    )
    for p in params(cls):
        if not p.cli or p.name in skip:
            continue
        if p.positional:
            parser.add_argument(
                p.name,
                metavar=p.metavar or p.name.upper(),
                nargs=None if p.required else "?",
                default=p.default,
                type=int if isinstance(p.spec, Int) else str,
                help=p.description or None,
            )
        elif isinstance(p.default, bool):
            flag = p.flag if not p.default else "--no-" + p.name.replace("_", "-")
            parser.add_argument(
                flag,
                dest=p.name,
                action="store_false" if p.default else "store_true",
                help=p.description or None,
            )
        else:
            choices = _choices(p.spec)
            parser.add_argument(
                p.flag,
                dest=p.name,
                required=p.required,
                # argparse shows the choices when there is no metavar.
                metavar=p.metavar or (None if choices else p.name.upper()),
                action="append" if p.repeat else "store",
                type=int if isinstance(p.spec, Int) else str,
                choices=choices,
                help=p.description or None,
            )


def cli_args(cls: type, namespace: argparse.Namespace) -> dict[str, Any]:
    """A parsed command line as a lab file's values for experiment ``cls``."""
    out: dict[str, Any] = {}
    for p in params(cls):
        if not p.cli:
            continue
        value = getattr(namespace, p.name, None)
        if value is None:
            continue
        out[p.name] = p.from_cli(value) if p.from_cli is not None else value
    return out


def _choices(spec: Spec) -> tuple[str, ...] | None:
    return spec.enum if isinstance(spec, Str) and spec.enum else None
