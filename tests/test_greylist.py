"""Greylisting triplets in lab time (RFC 6647)."""

from __future__ import annotations

import pytest

from sim.services.greylist import LIFETIME, RETRY_WINDOW, Greylist, triplet

IP = "192.0.2.10"
FROM = "alice@home.example"
TO = "bob@qq.example"


def test_triplet_uses_the_client_network_and_ignores_case() -> None:
    assert triplet("192.0.2.10", "<Alice@Home.Example>", "BOB@qq.example") == (
        "192.0.2.0/24",
        "alice@home.example",
        "bob@qq.example",
    )


def test_first_attempt_is_deferred_for_the_delay() -> None:
    grey = Greylist(300)
    verdict = grey.check(IP, FROM, TO, now=1000.0)
    assert not verdict.passed
    assert verdict.wait == 300
    assert verdict.wait_seconds == 300
    assert verdict.first_seen == 1000.0
    assert "RFC 6647" in verdict.explanation


def test_an_early_retry_is_deferred_for_the_rest() -> None:
    grey = Greylist(300)
    grey.check(IP, FROM, TO, now=0.0)
    verdict = grey.check(IP, FROM, TO, now=120.5)
    assert not verdict.passed
    assert verdict.wait == pytest.approx(179.5)
    assert verdict.wait_seconds == 180
    assert verdict.first_seen == 0.0  # an early retry does not restart the clock


def test_a_retry_after_the_delay_passes_and_is_remembered() -> None:
    grey = Greylist(300)
    grey.check(IP, FROM, TO, now=0.0)
    assert grey.check(IP, FROM, TO, now=300.0).passed
    later = grey.check(IP, FROM, TO, now=86400.0)
    assert later.passed
    assert "passed greylisting before" in later.explanation


def test_the_same_network_counts_as_the_same_client() -> None:
    grey = Greylist(60)
    grey.check("192.0.2.10", FROM, TO, now=0.0)
    assert grey.check("192.0.2.77", FROM, TO, now=61.0).passed


def test_another_sender_or_recipient_is_a_new_triplet() -> None:
    grey = Greylist(60)
    grey.check(IP, FROM, TO, now=0.0)
    grey.check(IP, FROM, TO, now=61.0)
    assert not grey.check(IP, "mallory@evil.example", TO, now=62.0).passed
    assert not grey.check(IP, FROM, "carol@qq.example", now=62.0).passed
    assert not grey.check("198.51.100.7", FROM, TO, now=62.0).passed
    assert len(grey) == 4


def test_the_null_sender_is_greylisted_too() -> None:
    grey = Greylist(60)
    assert not grey.check(IP, "", TO, now=0.0).passed
    assert grey.check(IP, "", TO, now=60.0).passed


def test_a_retry_after_the_window_starts_over() -> None:
    grey = Greylist(300)
    grey.check(IP, FROM, TO, now=0.0)
    verdict = grey.check(IP, FROM, TO, now=RETRY_WINDOW + 1)
    assert not verdict.passed
    assert verdict.first_seen == RETRY_WINDOW + 1


def test_a_known_triplet_is_forgotten_after_its_lifetime() -> None:
    grey = Greylist(300)
    grey.check(IP, FROM, TO, now=0.0)
    grey.check(IP, FROM, TO, now=300.0)
    assert grey.check(IP, FROM, TO, now=300.0 + LIFETIME - 1).passed
    assert not grey.check(IP, FROM, TO, now=300.0 + 3 * LIFETIME).passed


def test_clear_forgets_everything() -> None:
    grey = Greylist(60)
    grey.check(IP, FROM, TO, now=0.0)
    grey.check(IP, FROM, TO, now=61.0)
    assert grey.clear() == 1
    assert not grey.check(IP, FROM, TO, now=62.0).passed
    assert grey.known()[0]["passed"] is False


def test_zero_delay_passes_on_the_first_retry() -> None:
    grey = Greylist(0)
    assert not grey.check(IP, FROM, TO, now=5.0).passed
    assert grey.check(IP, FROM, TO, now=5.0).passed


def test_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        Greylist(-1)
