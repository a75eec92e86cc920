"""Where mail for a domain goes: the sending side's MX lookup, in one place.

Both senders of the lab use it: the relay's queue runner
(:mod:`sim.services.relay`) and a direct ``maillab send``
(:mod:`sim.experiments.send`), so a given DNS state gives the same answer, with the
same reply, whoever sends:

1. ``MX`` of the domain (RFC 5321 §5.1), lowest preference first (RFC 5321
   asks senders to shuffle equal preferences; the lab sorts them by name so
   that every run is the same);
2. no MX record → the domain itself is the one host, an *implicit MX* of
   preference 0 (RFC 5321 §5.1);
3. a null MX ``0 .`` → the domain takes no mail: ``556 5.1.10`` at once, no
   address looked up (RFC 7505 §3-4);
4. NXDOMAIN → ``550 5.1.2`` (the domain does not exist; permanent);
   any other failure (SERVFAIL, REFUSED, a time-out) → ``451 4.4.3``
   (RFC 3463 X.4.3 "directory server failure": temporary, the sender tries
   again later, as Postfix does: "Name service error ... try again");
5. an MX record that cannot be read (a preference that is not a number) is
   skipped, as Postfix skips it: the other records still route the mail;
6. each host's ``A`` records give the addresses to try; an implicit MX
   without any address → ``550 5.4.4`` (RFC 3463 X.4.4 "unable to route").
"""

from __future__ import annotations

import contextlib
from ipaddress import IPv4Address

from sim.fastclass import dataclass
from sim.resolve import Resolver
from sim.services.smtpclient import Reply

__all__ = ["MxRoute", "find_mx", "host_addresses", "no_address", "unroutable"]


@dataclass(frozen=True)
class MxRoute:
    """Where mail for a domain goes: hosts in order, or a failure that
    applies to every recipient of the domain (``reply``)."""

    hosts: tuple[str, ...] = ()
    implicit: bool = False
    reply: Reply | None = None
    #: The preference of each of ``hosts`` (RFC 5321 §5.1), in the same order.
    preferences: tuple[int, ...] = ()

    def below(self, names: set[str]) -> MxRoute:
        """This route as a host named in ``names`` sees it: only the hosts
        more preferred than the best of its own entries (RFC 5321 §5.1: "if
        the SMTP client finds itself in the list, it MUST discard itself and
        any less preferred hosts"). A route that does not name it is kept."""
        own = [p for h, p in zip(self.hosts, self.preferences, strict=True) if h in names]
        if not own:
            return self
        keep = [(h, p) for h, p in zip(self.hosts, self.preferences, strict=True) if p < min(own)]
        return MxRoute(
            hosts=tuple(h for h, _ in keep),
            implicit=self.implicit,
            reply=self.reply,
            preferences=tuple(p for _, p in keep),
        )


def _name_error(domain: str, rtype: str, what: str) -> str:
    # Postfix's wording: "Host or domain name not found. Name service error
    # for name=example.org type=MX: Host not found, try again".
    return (
        f"Host or domain name not found. Name service error for name={domain} type={rtype}: {what}"
    )


async def find_mx(resolver: Resolver, domain: str, trace_id: str | None) -> MxRoute:
    """The MX hosts of ``domain`` in order, or why there are none (see the
    module docstring for the rules)."""
    answer = await resolver.query(domain, "MX", trace_id=trace_id)
    if answer.rcode == "NXDOMAIN":
        return MxRoute(reply=Reply(550, "5.1.2", _name_error(domain, "MX", "Host not found")))
    if answer.rcode != "NOERROR":
        # SERVFAIL, REFUSED, TIMEOUT: the answer may come later.
        return MxRoute(
            reply=Reply(451, "4.4.3", _name_error(domain, "MX", f"{answer.rcode}, try again"))
        )
    mxes: list[tuple[int, str]] = []
    for record in answer.of_type("MX"):
        pref, _, host = record.data.strip().partition(" ")
        try:
            mxes.append((int(pref), host.strip().lower()))
        except ValueError:
            continue  # unreadable: skipped, the others still route
    if any(host.rstrip(".") == "" for _, host in mxes):
        # RFC 7505 §3: "0 ." says the domain accepts no mail; do not try its
        # address records or anything else.
        return MxRoute(
            reply=Reply(
                556,
                "5.1.10",
                f"Recipient address rejected: Domain {domain} has a null MX "
                "(not sent: no server was contacted)",
            )
        )
    if not mxes:
        # RFC 5321 §5.1: no MX records → the domain itself is the one host.
        return MxRoute(hosts=(domain,), implicit=True, preferences=(0,))
    ordered = sorted(mxes)
    return MxRoute(
        hosts=tuple(host.rstrip(".") for _, host in ordered),
        preferences=tuple(pref for pref, _ in ordered),
    )


async def host_addresses(
    resolver: Resolver, host: str, trace_id: str | None
) -> tuple[list[IPv4Address], str]:
    """The IPv4 addresses of one MX host, and the rcode of the question."""
    answer = await resolver.query(host, "A", trace_id=trace_id)
    out = []
    for record in answer.of_type("A"):
        with contextlib.suppress(ValueError):
            out.append(IPv4Address(record.data))
    return out, answer.rcode


def unroutable(route: MxRoute, domain: str, rcode: str) -> Reply | None:
    """The permanent failure of an implicit MX without an address (no MX and
    no address record: nowhere to deliver), or None when another host may
    still serve (or the failure may pass: then see :func:`no_address`)."""
    if route.implicit and rcode in ("NXDOMAIN", "NOERROR"):
        return Reply(550, "5.4.4", _name_error(domain, "A", "no MX and no address record"))
    return None


def no_address(host: str, rcode: str) -> Reply:
    """The temporary failure of one MX host without a usable address."""
    what = rcode if rcode != "NOERROR" else "no address record"
    return Reply(451, "4.4.3", _name_error(host, "A", what))
