"""Synchronous checks on the event loop: :func:`replay`.

pyspf and dkimpy look names up synchronously, and so do our own checks
(:mod:`sim.services.mxchecks`, the DMARC tree walk), which keeps each of them
a plain function of its DNS answers that a reader can follow top to bottom.
The lab's resolver, though, lives on the event loop. Running such a check in
a worker thread works, but every message then pays a thread hand-off and a
fight for the GIL, and an MX that checks hundreds of messages a second
notices.

:func:`replay` runs the check on the event loop instead. The check runs from
the start until it asks a question that has no answer yet; that question is
awaited, and the check runs again with the answers so far. Answers the node
already holds (its stub cache, see :class:`sim.resolve.Resolver`) come at
once through ``peek``, so a check whose answers are all cached runs exactly
once, with no await and no thread.

Why this gives the same result and the same trace as one synchronous run:
the checks are pure functions of their answers, so each run asks the same
questions in the same order up to the first unanswered one. A library may
swallow the exception that stops a run (pyspf's ``exp=`` handling has a bare
``except:``); therefore, once a run has met an unanswered question, every
later question of that run is refused as well, and only that first question
is asked. Nothing a run does after it is trusted.

**Remembered results** (:class:`Memo`). A check is a pure function of its
arguments and of the answers it got, so when it is asked again with the same
arguments, and every question its last run asked gets the same answer again
(TTLs aside), the result is the same: :func:`replay` then returns the
remembered result without running the check. The questions are still asked
(through ``peek``), in the same order, so the trace shows the same lookups;
when an answer differs or is not at hand, the check runs as usual with the
answers gathered so far (which a run would have asked first anyway).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from sim.auth.result import Lookup
from sim.fastclass import dataclass
from sim.resolve import DnsAnswer

__all__ = ["AsyncLookup", "Memo", "Peek", "replay"]

T = TypeVar("T")

#: ``await lookup(name, rtype)``: a :data:`~sim.auth.result.Lookup` on the event loop.
AsyncLookup = Callable[[str, str], Awaitable[DnsAnswer]]

#: ``peek(name, rtype)``: an answer at hand (recorded in the trace as it is
#: given), or None when the question must go out.
Peek = Callable[[str, str], DnsAnswer | None]

_Key = tuple[str, str]

#: What of an answer a check can see: the rcode and the records without
#: their TTLs (no check here reads a TTL).
_Fingerprint = tuple[str, tuple[tuple[str, str, str, tuple[str, ...]], ...]]


def _fingerprint(answer: DnsAnswer) -> _Fingerprint:
    return answer.rcode, tuple((r.name, r.type, r.data, r.strings) for r in answer.records)


@dataclass(frozen=True)
class _Remembered:
    result: Any
    #: The questions of the run that made ``result``, in order, with what
    #: their answers looked like.
    asked: tuple[tuple[_Key, _Fingerprint], ...]


class Memo:
    """The last results of checks, by a key the caller chooses (the check and
    its arguments), at most ``size`` of them (least recently used go first)."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, _Remembered] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> _Remembered | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: Hashable, remembered: _Remembered) -> None:
        self._entries[key] = remembered
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


class _Unanswered(BaseException):
    """A question :func:`replay` has no answer for yet. A BaseException, so
    that the checks' ``except Exception`` (a lookup that fails is a DNS error
    to them) lets it through to :func:`replay`."""


class _Run:
    """One run of a check: the lookup it is given answers from what is known
    and stops at the first question that is not."""

    def __init__(self, answers: dict[_Key, DnsAnswer | Exception], peek: Peek | None) -> None:
        self.answers = answers
        self.peek = peek
        #: The first unanswered question of this run.
        self.need: _Key | None = None
        #: The questions answered in this run, in the order they were asked.
        self.asked: list[_Key] = []

    def __call__(self, name: str, rtype: str) -> DnsAnswer:
        if self.need is not None:  # after an unanswered question nothing is trusted
            raise _Unanswered(self.need)
        key = (name, rtype)
        answers = self.answers
        if key not in answers and self.peek is not None:
            try:
                at_hand = self.peek(name, rtype)
            except Exception as err:  # e.g. a type that cannot be asked
                answers[key] = err
            else:
                if at_hand is not None:
                    answers[key] = at_hand
        if key not in answers:
            self.need = key
            raise _Unanswered(key)
        self.asked.append(key)
        got = answers[key]
        if isinstance(got, Exception):
            raise got
        return got


def _recall(
    remembered: _Remembered, peek: Peek, answers: dict[_Key, DnsAnswer | Exception]
) -> bool | _Key:
    """Ask the remembered run's questions again through ``peek``, in order,
    keeping the answers in ``answers``. True when each answer is at hand and
    looks as it did: the remembered result holds. Otherwise it stops at the
    first that is not, which a run with these answers asks next: False when
    its answer differs, the question itself when its answer is not at hand."""
    for key, fingerprint in remembered.asked:
        try:
            got = peek(*key)
        except Exception as err:
            answers[key] = err
            return False
        if got is None:
            return key
        answers[key] = got
        if _fingerprint(got) != fingerprint:
            return False
    return True


async def replay(
    check: Callable[[Lookup], T],
    lookup: AsyncLookup,
    peek: Peek | None = None,
    *,
    memo: Memo | None = None,
    key: Hashable = None,
) -> T:
    """Run the synchronous ``check(lookup)`` on the event loop, asking DNS
    with ``peek(name, rtype)`` first and ``await lookup(name, rtype)`` when
    that has no answer. An exception a lookup raises is raised again inside
    ``check`` at the same question, as a synchronous lookup would; what
    ``check`` raises itself propagates.

    With ``memo`` and ``key`` (which must name the check and all its
    arguments), a result remembered under ``key`` is returned when the
    answers it depended on are unchanged (see the module's docstring)."""
    answers: dict[_Key, DnsAnswer | Exception] = {}
    remember = memo is not None and key is not None and peek is not None
    if remember:
        assert memo is not None and peek is not None
        remembered = memo.get(key)
        recalled = _recall(remembered, peek, answers) if remembered is not None else False
        if recalled is True:
            return remembered.result  # type: ignore[union-attr, no-any-return]
        if isinstance(recalled, tuple):  # what the first run would stop at
            try:
                answers[recalled] = await lookup(*recalled)
            except Exception as err:
                answers[recalled] = err
    while True:
        run = _Run(answers, peek)
        try:
            result = check(run)
        except (_Unanswered, Exception):
            if run.need is None:
                raise  # the check's own error, from a run with every answer
        else:
            if run.need is None:
                if remember and memo is not None:
                    _remember(memo, key, result, run, answers)
                return result
        try:
            answers[run.need] = await lookup(*run.need)
        except Exception as err:
            answers[run.need] = err


def _remember(
    memo: Memo,
    key: Hashable,
    result: Any,
    run: _Run,
    answers: dict[_Key, DnsAnswer | Exception],
) -> None:
    asked = []
    for question in dict.fromkeys(run.asked):
        got = answers[question]
        if not isinstance(got, DnsAnswer):
            return  # a lookup that failed: not worth remembering
        asked.append((question, _fingerprint(got)))
    memo.put(key, _Remembered(result, tuple(asked)))
