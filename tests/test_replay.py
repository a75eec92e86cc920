"""sim.auth.replay: synchronous checks run on the event loop give what one
synchronous run gives, ask the same questions in the same order, and run
once when every answer is at hand."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sim.auth.replay import Memo, _Remembered, replay
from sim.auth.result import Lookup
from sim.auth.spf import check_spf
from sim.resolve import DnsAnswer, DnsRecord

ZONE: dict[tuple[str, str], tuple[str, ...]] = {
    ("a.example", "A"): ("192.0.2.1",),
    ("b.example", "A"): ("192.0.2.2",),
    ("c.example", "A"): ("192.0.2.3",),
}


def answer(name: str, rtype: str) -> DnsAnswer:
    data = ZONE.get((name, rtype), ())
    records = tuple(DnsRecord(name, rtype, 300, d) for d in data)
    return DnsAnswer(name, rtype, "NOERROR" if data else "NXDOMAIN", records)


class Asker:
    """An awaited lookup and a peek over :data:`ZONE`, counting what each saw."""

    def __init__(self, cached: set[tuple[str, str]] | None = None) -> None:
        self.cached = cached or set()
        self.awaited: list[tuple[str, str]] = []
        self.peeked: list[tuple[str, str]] = []
        self.fail: dict[tuple[str, str], Exception] = {}

    async def __call__(self, name: str, rtype: str) -> DnsAnswer:
        self.awaited.append((name, rtype))
        if (name, rtype) in self.fail:
            raise self.fail[(name, rtype)]
        return answer(name, rtype)

    def peek(self, name: str, rtype: str) -> DnsAnswer | None:
        if (name, rtype) not in self.cached:
            return None
        self.peeked.append((name, rtype))
        return answer(name, rtype)


def counting(check: Callable[[Lookup], Any]) -> tuple[Callable[[Lookup], Any], list[int]]:
    runs = [0]

    def counted(lookup: Lookup) -> Any:
        runs[0] += 1
        return check(lookup)

    return counted, runs


def chain(lookup: Lookup) -> list[str]:
    """Each question depends on the one before (like an SPF include chain)."""
    out = []
    for name in ("a.example", "b.example", "c.example"):
        got = lookup(name, "A")
        out.append(got.records[0].data if got.records else "-")
        if got.rcode != "NOERROR":
            break
    return out


async def test_every_answer_awaited_gives_the_synchronous_result_in_order() -> None:
    asker = Asker()
    check, runs = counting(chain)
    assert await replay(check, asker) == chain(answer)
    assert asker.awaited == [("a.example", "A"), ("b.example", "A"), ("c.example", "A")]
    assert runs[0] == 4  # one run per missing answer, and the last one


async def test_answers_at_hand_run_the_check_once_without_awaiting() -> None:
    asker = Asker(cached=set(ZONE))
    check, runs = counting(chain)
    assert await replay(check, asker, asker.peek) == chain(answer)
    assert asker.awaited == []
    assert asker.peeked == [("a.example", "A"), ("b.example", "A"), ("c.example", "A")]
    assert runs[0] == 1


async def test_peeked_answers_are_peeked_once_across_runs() -> None:
    # The peek records a trace event: a re-run must not record it again.
    asker = Asker(cached={("a.example", "A"), ("c.example", "A")})
    assert await replay(chain, asker, asker.peek) == chain(answer)
    assert asker.peeked == [("a.example", "A"), ("c.example", "A")]
    assert asker.awaited == [("b.example", "A")]


async def test_a_swallowed_stop_does_not_change_the_result_or_the_questions() -> None:
    # pyspf's exp= handling has a bare except: a check may swallow the
    # exception that stops a run; what it asks afterwards is not trusted.
    def swallowing(lookup: Lookup) -> tuple[str, str]:
        try:
            first = lookup("a.example", "A").rcode
        except:  # noqa: E722 - the point of the test
            first = "swallowed"
        if first == "swallowed":
            other = lookup("b.example", "A").rcode  # only a broken run asks this
        else:
            other = lookup("c.example", "A").rcode
        return first, other

    asker = Asker()
    assert await replay(swallowing, asker, asker.peek) == swallowing(answer)
    assert asker.awaited == [("a.example", "A"), ("c.example", "A")]


async def test_a_failing_lookup_raises_inside_the_check_at_its_question() -> None:
    asker = Asker()
    asker.fail[("b.example", "A")] = TimeoutError("no answer")

    def guarded(lookup: Lookup) -> list[str]:
        out = []
        for name in ("a.example", "b.example", "c.example"):
            try:
                out.append(lookup(name, "A").rcode)
            except TimeoutError:
                out.append("TIMEOUT")
        return out

    assert await replay(guarded, asker) == ["NOERROR", "TIMEOUT", "NOERROR"]
    assert asker.awaited.count(("b.example", "A")) == 1


async def test_a_peek_that_raises_raises_inside_the_check() -> None:
    def peek(name: str, rtype: str) -> DnsAnswer | None:
        raise ValueError(f"cannot ask {rtype}")

    def check(lookup: Lookup) -> str:
        try:
            return lookup("a.example", "BOGUS").rcode
        except ValueError as err:
            return str(err)

    asker = Asker()
    assert await replay(check, asker, peek) == "cannot ask BOGUS"
    assert asker.awaited == []


async def test_the_checks_own_error_propagates() -> None:
    def broken(lookup: Lookup) -> None:
        lookup("a.example", "A")
        raise KeyError("a bug in the check")

    with pytest.raises(KeyError, match="a bug in the check"):
        await replay(broken, Asker())


async def test_pyspf_replayed_equals_pyspf_synchronous() -> None:
    # A real library check: an include chain and an exp= modifier, whose
    # explanation lookup pyspf wraps in a bare except.
    zone = {
        ("home.example", "TXT"): ('"v=spf1 include:_spf.relay.example exp=why.home.example -all"',),
        ("_spf.relay.example", "TXT"): ('"v=spf1 ip4:192.0.2.0/24 -all"',),
        ("why.home.example", "TXT"): ('"%{i} may not send for %{d}"',),
    }

    def lookup(name: str, rtype: str) -> DnsAnswer:
        name = name.rstrip(".")
        data = zone.get((name, rtype), ())
        recs = tuple(DnsRecord(name, rtype, 300, d, (d.strip('"'),)) for d in data)
        return DnsAnswer(name, rtype, "NOERROR" if data else "NXDOMAIN", recs)

    asked: list[tuple[str, str]] = []

    async def awaited(name: str, rtype: str) -> DnsAnswer:
        asked.append((name, rtype))
        return lookup(name, rtype)

    for ip in ("192.0.2.25", "203.0.113.9"):

        def spf(lk: Lookup, ip: str = ip) -> tuple[str, object]:
            r = check_spf(ip, "alice@home.example", "mx.home.example", lk)
            return r.result, r.details["domain_explanation"]

        asked.clear()
        assert await replay(spf, awaited) == spf(lookup)
        assert len(asked) == len(set(asked))  # every question went out once
    assert spf(lookup)[0] == "fail"
    assert spf(lookup)[1] == "203.0.113.9 may not send for home.example"


# --- remembered results -----------------------------------------------------------


async def test_same_key_same_answers_reuses_the_result_and_asks_again_in_order() -> None:
    memo = Memo()
    asker = Asker(cached=set(ZONE))
    check, runs = counting(chain)
    first = await replay(check, asker, asker.peek, memo=memo, key=("chain",))
    asker.peeked.clear()
    second = await replay(check, asker, asker.peek, memo=memo, key=("chain",))
    assert second is first  # remembered, not recomputed
    assert runs[0] == 1
    # The lookups still happen (they are in the trace), in the same order.
    assert asker.peeked == [("a.example", "A"), ("b.example", "A"), ("c.example", "A")]


async def test_a_changed_answer_runs_the_check_again_without_asking_twice() -> None:
    memo = Memo()
    asker = Asker(cached=set(ZONE))
    check, runs = counting(chain)
    await replay(check, asker, asker.peek, memo=memo, key=("chain",))
    ZONE[("b.example", "A")] = ("192.0.2.99",)
    try:
        asker.peeked.clear()
        again = await replay(check, asker, asker.peek, memo=memo, key=("chain",))
    finally:
        ZONE[("b.example", "A")] = ("192.0.2.2",)
    assert again == ["192.0.2.1", "192.0.2.99", "192.0.2.3"]
    assert runs[0] == 2
    assert asker.peeked == [("a.example", "A"), ("b.example", "A"), ("c.example", "A")]


async def test_only_the_ttl_changed_still_reuses() -> None:
    memo = Memo()
    ttl = [300]

    def peek(name: str, rtype: str) -> DnsAnswer:
        base = answer(name, rtype)
        return DnsAnswer(
            name,
            rtype,
            base.rcode,
            tuple(DnsRecord(r.name, r.type, ttl[0], r.data) for r in base.records),
        )

    check, runs = counting(chain)
    await replay(check, Asker(), peek, memo=memo, key="k")
    ttl[0] = 120
    await replay(check, Asker(), peek, memo=memo, key="k")
    assert runs[0] == 1


async def test_an_answer_no_longer_at_hand_is_asked_for() -> None:
    memo = Memo()
    asker = Asker(cached=set(ZONE))
    check, runs = counting(chain)
    await replay(check, asker, asker.peek, memo=memo, key="k")
    asker.cached.discard(("c.example", "A"))  # expired from the cache
    assert await replay(check, asker, asker.peek, memo=memo, key="k") == chain(answer)
    assert asker.awaited == [("c.example", "A")]
    assert runs[0] == 2  # asked before the run, which then has every answer


async def test_different_keys_and_failed_lookups_are_not_shared() -> None:
    memo = Memo()
    asker = Asker(cached=set(ZONE))
    check, runs = counting(chain)
    await replay(check, asker, asker.peek, memo=memo, key="one")
    await replay(check, asker, asker.peek, memo=memo, key="two")
    assert runs[0] == 2

    failing = Asker()
    failing.fail[("b.example", "A")] = TimeoutError("no answer")

    def guarded(lookup: Lookup) -> str:
        try:
            return ",".join(lookup(n, "A").rcode for n in ("a.example", "b.example"))
        except TimeoutError:
            return "timeout"

    assert await replay(guarded, failing, failing.peek, memo=memo, key="g") == "timeout"
    assert memo.get("g") is None  # a lookup that failed is not remembered


def test_the_memo_keeps_the_most_recently_used() -> None:
    memo = Memo(size=2)
    remembered = [object(), object(), object()]
    memo.put("a", _Remembered(remembered[0], ()))
    memo.put("b", _Remembered(remembered[1], ()))
    assert memo.get("a") is not None  # a is now the most recent
    memo.put("c", _Remembered(remembered[2], ()))
    assert memo.get("b") is None
    assert memo.get("a") is not None and memo.get("c") is not None
    assert len(memo) == 2
