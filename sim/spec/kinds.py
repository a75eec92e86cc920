"""Kinds of values: the one engine every YAML format of maillab is described in.

A format (a topology file, a lab file, an experiment's parameters) is a
table of these kinds; one description serves three purposes:

* :meth:`Spec.check` walks a ruamel.yaml document, reports every structural
  problem (unknown key, missing key, wrong type, value out of range) at its
  line and column with a message a person can act on, and returns the value
  built (a model object for a :class:`Record` with a ``model``), or
  :data:`BAD` when it cannot be built;
* the :class:`Checker` keeps where every key path is (for problems found
  later, by meaning checks) and which paths had a problem (so that those
  checks do not judge a part that is already wrong);
* :meth:`Spec.json_schema` emits the same shape as JSON Schema (draft
  2020-12) for editors, and :meth:`Spec.type_text` the type column of the
  Markdown reference an instructor reads (both documents are put together
  by :mod:`sim.spec.document`).

The kinds live in :mod:`sim.spec.scalars` and :mod:`sim.spec.records`
(what they share in :mod:`sim.spec.base`); import them from here.

The building blocks: :class:`Str` (text, or one of a set of words),
:class:`Int`, :class:`Bool`, :class:`Duration`, :class:`Scalar` (a value
written in a :class:`ValueFormat`: an address, a domain name, a port...),
:class:`ListOf`, :class:`MapOf`, :class:`Record` (a mapping with known keys,
every other key an error, with :class:`OnlyWhen`, :class:`RequiredWhen` and
:class:`Together` rules tying keys to each other), :class:`Tagged` (a record
chosen by its ``kind`` key), :class:`OneKey` (a mapping with exactly one key
out of a set, such as ``{dig: {...}}``), :class:`Either` (chosen by the YAML
type of the value) and :class:`Anything`. Their words come from
:mod:`sim.spec.words`, so the same mistake reads the same in every format.
"""

from __future__ import annotations

from sim.spec.base import BAD, SLUG, SLUG_HINT, Checker, Spec, Where, plain, slug
from sim.spec.records import (
    Either,
    Field,
    ListOf,
    MapOf,
    OneKey,
    OnlyWhen,
    Record,
    RequiredWhen,
    Tagged,
    Together,
    field_schema,
    iter_specs,
)
from sim.spec.scalars import (
    Anything,
    Bool,
    Choice,
    Duration,
    Int,
    Scalar,
    Str,
    ValueFormat,
    parse_boolean,
    parse_seconds,
)
from sim.spec.words import describe_value, path_text, suggest

__all__ = [
    "BAD",
    "SLUG",
    "SLUG_HINT",
    "Anything",
    "Bool",
    "Checker",
    "Choice",
    "Duration",
    "Either",
    "Field",
    "Int",
    "ListOf",
    "MapOf",
    "OneKey",
    "OnlyWhen",
    "Record",
    "RequiredWhen",
    "Scalar",
    "Spec",
    "Str",
    "Tagged",
    "Together",
    "ValueFormat",
    "Where",
    "describe_value",
    "field_schema",
    "iter_specs",
    "parse_boolean",
    "parse_seconds",
    "path_text",
    "plain",
    "slug",
    "suggest",
]
