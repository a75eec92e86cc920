"""Greylisting (RFC 6647): answer an unknown sender "try again later".

A real MTA keeps its queue and retries a 4xx after some minutes (RFC 5321
§4.5.4.1); many spam scripts send once and never come back. So the first
delivery attempt of a new *triplet* (client network, envelope sender,
recipient; RFC 6647 §2.2) is deferred, a retry after ``delay`` passes, and the
triplet is remembered so later mail of the same kind is not delayed again.

Details as postgrey does them (RFC 6647 §4 leaves them to the operator):

* the client is taken as its /24 network, because a big sender may retry from
  another address of the same pool (RFC 6647 §4.1 discusses this);
* sender and recipient compare case-insensitively; a bounce has the empty
  sender ``""``;
* a triplet that is not retried within ``retry_window`` starts over;
* a remembered triplet is forgotten after ``lifetime`` without mail.

Times are lab seconds (``LabClock.now()``), passed in by the caller, so a lab
can advance its clock and see the retry succeed.
"""

from __future__ import annotations

import math
from ipaddress import IPv4Address, IPv4Network, ip_address

from sim.fastclass import dataclass

__all__ = ["Greylist", "GreylistVerdict", "Triplet", "triplet"]

#: postgrey's defaults: retries count for 2 days, known triplets last 35 days.
RETRY_WINDOW = 2 * 86400.0
LIFETIME = 35 * 86400.0

Triplet = tuple[str, str, str]


def _secs(value: float) -> str:
    return f"{round(value, 1):g} s"


def triplet(client_ip: str, sender: str, rcpt: str) -> Triplet:
    """(client /24, sender, recipient), normalised."""
    address = ip_address(client_ip)
    if isinstance(address, IPv4Address):
        network = str(IPv4Network(f"{address}/24", strict=False))
    else:  # IPv6: the /64 a site is given (RFC 6647 §4.1 leaves it open)
        network = str(ip_address(client_ip)) + "/128"
    return (network, sender.strip().strip("<>").lower(), rcpt.strip().strip("<>").lower())


@dataclass(frozen=True)
class GreylistVerdict:
    """``passed``: let the recipient through; otherwise wait ``wait`` seconds."""

    passed: bool
    triplet: Triplet
    wait: float
    first_seen: float
    explanation: str

    @property
    def wait_seconds(self) -> int:
        return max(1, math.ceil(self.wait))


@dataclass
class _Entry:
    first_seen: float
    last_seen: float
    passed: bool = False


class Greylist:
    """The triplets an MX has seen, and what it thinks of them."""

    def __init__(
        self,
        delay: float,
        *,
        retry_window: float = RETRY_WINDOW,
        lifetime: float = LIFETIME,
    ) -> None:
        if delay < 0:
            raise ValueError("a greylisting delay cannot be negative")
        self.delay = delay
        self.retry_window = max(retry_window, delay)
        self.lifetime = lifetime
        self._entries: dict[Triplet, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, client_ip: str, sender: str, rcpt: str, now: float) -> GreylistVerdict:
        """Record this attempt and say whether it may pass."""
        key = triplet(client_ip, sender, rcpt)
        who = f"({key[0]}, <{key[1]}>, <{key[2]}>)"
        entry = self._entries.get(key)
        if entry is not None:
            if entry.passed and now - entry.last_seen > self.lifetime:
                entry = None  # not seen for too long: forgotten
            elif not entry.passed and now - entry.first_seen > self.retry_window:
                entry = None  # the retry came too late: start over
        if entry is None:
            self._entries[key] = _Entry(first_seen=now, last_seen=now)
            return GreylistVerdict(
                False,
                key,
                self.delay,
                now,
                f"The triplet {who} is new, so it is greylisted: a real mail server "
                f"retries after a 4xx, and this one may pass after {_secs(self.delay)} "
                "(RFC 6647 §2.1).",
            )
        entry.last_seen = now
        if entry.passed:
            return GreylistVerdict(
                True,
                key,
                0.0,
                entry.first_seen,
                f"The triplet {who} is known: it passed greylisting before.",
            )
        elapsed = now - entry.first_seen
        if elapsed >= self.delay:
            entry.passed = True
            return GreylistVerdict(
                True,
                key,
                0.0,
                entry.first_seen,
                f"The triplet {who} was first seen {_secs(elapsed)} ago and came back after "
                f"the greylisting delay of {_secs(self.delay)}, so it passes and is remembered.",
            )
        remaining = self.delay - elapsed
        return GreylistVerdict(
            False,
            key,
            remaining,
            entry.first_seen,
            f"The triplet {who} retried too early ({_secs(elapsed)} after the first attempt; "
            f"the delay is {_secs(self.delay)}), so it is deferred again.",
        )

    def clear(self) -> int:
        """Forget every triplet; returns how many there were."""
        count = len(self._entries)
        self._entries.clear()
        return count

    def known(self) -> list[dict[str, object]]:
        """The triplets as plain data."""
        return [
            {
                "client": key[0],
                "sender": key[1],
                "rcpt": key[2],
                "first_seen": entry.first_seen,
                "last_seen": entry.last_seen,
                "passed": entry.passed,
            }
            for key, entry in self._entries.items()
        ]
