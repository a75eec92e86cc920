"""Deterministic per-student draws (issue 16): the same student and lab get
the same value on every run and machine; two students usually differ."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def draw_index(student: str, lab_id: str, name: str, n: int) -> int:
    """An index in range(n) drawn from the student id, the lab id and the variable's name."""
    digest = hashlib.sha256(f"{student}\0{lab_id}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


def draw_choice(student: str, lab_id: str, name: str, choices: Sequence[T]) -> T:
    """One of ``choices``, drawn as :func:`draw_index` does."""
    return choices[draw_index(student, lab_id, name, len(choices))]
