"""What the lab MX answers, with the codes' sources.

The replies that belong to no one check are in :data:`GENERAL`; each check's
own are declared in its module (:mod:`sim.services.checks`); :data:`REPLIES`
is all of them, by name.

Every reply has a basic code (RFC 5321 §4.2: 2xx done, 4xx try again later,
5xx do not retry this) and, since the MX advertises ENHANCEDSTATUSCODES
(RFC 2034), an enhanced status code ``class.subject.detail`` (RFC 3463; the
authentication details X.7.20-X.7.27 come from RFC 7372). The texts follow what
real receivers send (Postfix, Gmail), so a student who meets one of them in a
real bounce recognises it.

Choices worth knowing:

* SPF fail is ``550 5.7.23`` with the wording of DESIGN.md ("Message rejected
  due to: SPF fail - not authorized"): RFC 7372 §3.2 defines X.7.23 "SPF
  validation failed", which says more than the generic X.7.1 many servers use.
  A temporary SPF error is ``451 4.7.24`` (X.7.24 "SPF validation error").
* A missing PTR is Gmail's ``550 5.7.25`` (RFC 7372 X.7.25 "Reverse DNS
  validation failed"); a deferred FCrDNS failure is current Postfix's
  ``450 4.7.25 Client host rejected: cannot find your hostname`` (X.7.25 too:
  RFC 7372 §3 assigns it to any reverse DNS validation failure).
* A DMARC rejection is Gmail's ``550 5.7.26``; when several authentication
  checks failed at DATA the code is X.7.26 too ("Multiple authentication
  checks failed", RFC 7372 §3.2).
* A command line that is too long is ``500 5.5.2``: RFC 5321 §4.2.2 files
  "command line too long" under 500, and RFC 3463 X.5.2 is "syntax error".
  X.5.6 exists (RFC 4954 §6) but only for an over-long AUTH exchange line.

aiosmtpd answers many protocol errors itself, without enhanced codes;
:func:`enhance` adds the matching code to those (RFC 2034 §3 asks for one on
every reply except the greeting and the EHLO/HELO reply).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Mapping

from sim.events import ReplyJson
from sim.fastclass import dataclass

__all__ = ["GENERAL", "REPLIES", "Reply", "Template", "enhance", "reply", "temporary"]

#: RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets including CRLF.
MAX_REPLY_LINE = 510

_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}(?:\s|$)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Reply:
    """One reply the server sends: ``550 5.7.25 text``."""

    code: int
    enhanced: str
    text: str

    @property
    def line(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"[:MAX_REPLY_LINE]

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    def __str__(self) -> str:
        return self.line

    def to_json(self) -> ReplyJson:
        return {"code": self.code, "enhanced": self.enhanced, "text": self.text}


@dataclass(frozen=True)
class Template:
    """A reply with ``{field}`` placeholders, and where it comes from."""

    code: int
    enhanced: str
    text: str
    source: str

    def fill(self, **fields: object) -> Reply:
        """This reply with its fields filled in."""
        text = self.text.format(**{k: _clean(v) for k, v in fields.items()})
        return Reply(self.code, self.enhanced, text)


#: The replies that belong to no one check, by name (each check's own are
#: in its module, sim.services.checks).
GENERAL: dict[str, Template] = {
    # -- the transaction goes on ------------------------------------------------
    "ok": Template(250, "2.0.0", "Ok", "RFC 3463 X.0.0"),
    "mail_ok": Template(250, "2.1.0", "Ok", "RFC 3463 X.1.0 (sender address status)"),
    "rcpt_ok": Template(250, "2.1.5", "Ok", "RFC 3463 X.1.5 (destination address valid)"),
    "queued": Template(250, "2.0.0", "Ok: queued as {queue_id}", "Postfix; RFC 5321 §4.1.1.4"),
    "bye": Template(221, "2.0.0", "Bye", "Postfix; RFC 5321 §4.1.1.10"),
    # -- addresses -------------------------------------------------------------
    "user_unknown": Template(
        550,
        "5.1.1",
        "<{address}>: Recipient address rejected: User unknown in virtual mailbox table",
        "Postfix virtual_mailbox_maps; RFC 3463 X.1.1 (bad destination mailbox address)",
    ),
    "relay_denied": Template(
        554,
        "5.7.1",
        "<{address}>: Relay access denied",
        "Postfix reject_unauth_destination; RFC 3463 X.7.1 (delivery not authorized)",
    ),
    "rcpt_syntax": Template(
        501,
        "5.1.3",
        "<{address}>: Bad recipient address syntax",
        "Postfix; RFC 3463 X.1.3 (bad destination mailbox address syntax)",
    ),
    "sender_syntax": Template(
        501,
        "5.1.7",
        "<{address}>: Bad sender address syntax",
        "Postfix; RFC 3463 X.1.7 (bad sender's mailbox address syntax)",
    ),
    # -- several checks (after DATA) ---------------------------------------------
    "auth_multiple": Template(
        550,
        "5.7.26",
        "Multiple authentication checks failed: {failed}",
        "RFC 7372 §3.2 X.7.26 (multiple authentication checks failed)",
    ),
    "spam_reject": Template(
        554,
        "5.7.1",
        "Spam message rejected (score {score}, reject from {threshold})",
        "rspamd's reject action; RFC 3463 X.7.1 (delivery not authorized)",
    ),
    # -- protocol and resources --------------------------------------------------
    "size": Template(
        552,
        "5.3.4",
        "Message size exceeds fixed maximum message size",
        "Postfix; RFC 5321 §4.5.3.1.10; RFC 3463 X.3.4 (message too big for system)",
    ),
    "line_too_long": Template(
        500,
        "5.5.2",
        "Error: line too long",
        "RFC 5321 §4.2.2 and §4.5.3.1.4 (512-octet command lines); RFC 3463 X.5.2",
    ),
    "data_line_too_long": Template(
        500,
        "5.5.2",
        "Error: message line too long (the limit is 1000 octets, RFC 5321 section 4.5.3.1.6)",
        "aiosmtpd; RFC 5321 §4.5.3.1.6",
    ),
    "timeout": Template(
        421,
        "4.4.2",
        "{host} Error: timeout exceeded",
        "Postfix; RFC 5321 §4.5.3.2 (a time-out is announced with 421); RFC 3463 X.4.2",
    ),
    "tls_active": Template(
        554,
        "5.5.1",
        "Error: TLS already active",
        "Postfix; RFC 3207 §4.2 (no STARTTLS inside TLS); RFC 3463 X.5.1",
    ),
    "tls_failed": Template(
        421,
        "4.7.0",
        "Error: TLS handshake failed",
        "never sent (the connection is closed); RFC 3207 §4.1",
    ),
    "internal": Template(
        451,
        "4.3.0",
        "Error: internal error; try again later",
        "RFC 3463 X.3.0 (other mail system status)",
    ),
    "store_failed": Template(
        451,
        "4.3.0",
        "Error: could not store the message; try again later",
        "RFC 3463 X.3.0; RFC 5321 §6.1 (never acknowledge what was not stored)",
    ),
    "too_many_hops": Template(
        554,
        "5.4.6",
        "Error: too many hops ({hops} Received header fields): a mail loop",
        "RFC 5321 §6.3 (count Received fields to find loops); RFC 3463 X.4.6 routing loop detected",
    ),
}


def _clean(value: object) -> str:
    # Fields often echo what the client sent (its HELO name, an address):
    # control characters must not reach the reply (RFC 5321 §4.2: text is
    # printable US-ASCII), and one field must not fill the whole line.
    text = _CONTROL.sub("?", str(value))
    text = text.encode("ascii", "replace").decode("ascii")
    return text if len(text) <= 200 else text[:197] + "..."


class _Replies(Mapping[str, Template]):
    """Every reply the MX composes itself, by name: :data:`GENERAL` and the
    checks' own (read from the registry when first asked: the checks'
    modules import this one)."""

    def _all(self) -> dict[str, Template]:
        # The checks' modules import this one: the registry is found by name.
        checks = importlib.import_module("sim.services.checks")

        merged = dict(GENERAL)
        for check in checks.all_checks():
            merged.update(check.replies)
        return merged

    def __getitem__(self, name: str) -> Template:
        found = GENERAL.get(name)
        return found if found is not None else self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


#: Every reply the MX composes itself, by name.
REPLIES: Mapping[str, Template] = _Replies()


def reply(name: str, **fields: object) -> Reply:
    """The reply ``name`` from :data:`REPLIES` with its fields filled in."""
    return REPLIES[name].fill(**fields)


def temporary(permanent: Reply) -> Reply:
    """The deferring form of a rejection (a check whose action is ``defer``):
    450 and the same enhanced code in class 4 (RFC 3463 §3.1: the class says
    only whether the failure is permanent), same text."""
    if not permanent.permanent:
        return permanent
    return Reply(450, "4" + permanent.enhanced[1:], permanent.text)


#: aiosmtpd's own replies (text prefix → enhanced code), most specific first.
_AIOSMTPD: tuple[tuple[str, str], ...] = (
    ("220 Ready to start TLS", "2.0.0"),
    ("221", "2.0.0"),
    ("250", "2.0.0"),
    ("252", "2.0.0"),
    ("421", "4.7.0"),
    ("454", "4.7.0"),  # TLS not available
    ("500 Command line too long", "5.5.2"),
    ("500 Line too long", "5.5.2"),
    ("500", "5.5.2"),  # bad syntax, command not recognized, strict ASCII
    ("501", "5.5.4"),  # syntax of the arguments (RFC 3463 X.5.4)
    ("502", "5.5.1"),  # not implemented (RFC 3463 X.5.1)
    ("503", "5.5.1"),  # bad sequence of commands (RFC 3463 X.5.1)
    ("504", "5.5.4"),
    ("530", "5.7.0"),
    ("552", "5.3.4"),
    ("553", "5.1.3"),
    ("554", "5.7.0"),  # "Command refused due to lack of security"
    ("555", "5.5.4"),  # MAIL/RCPT parameters not recognized
)

#: aiosmtpd texts that have a better wording in the table above.
_REWORDED: dict[str, str] = {
    "500 Command line too long": GENERAL["line_too_long"].text,
    "500 Line too long (see RFC5321 4.5.3.1.6)": GENERAL["data_line_too_long"].text,
    "552 Error: message size exceeds fixed maximum message size": GENERAL["size"].text,
    "552 Error: Too much mail data": GENERAL["size"].text,
}


def enhance(status: str) -> str:
    """Add an enhanced status code to one of aiosmtpd's own replies.

    Replies that already carry one, multi-line continuations and 354 (an
    intermediate reply, outside RFC 2034's classes 2, 4 and 5) are returned
    unchanged. The caller leaves out the greeting and the EHLO/HELO replies.
    """
    if len(status) < 3 or not status[:3].isdigit() or status[:1] not in "245":
        return status
    if len(status) > 3 and status[3] == "-":
        return status
    code, text = status[:3], status[4:]
    if _ENHANCED.match(text):
        return status
    text = _REWORDED.get(status, text)
    for prefix, enhanced in _AIOSMTPD:
        if status.startswith(prefix):
            return f"{code} {enhanced} {text}".rstrip()
    return f"{code} {status[0]}.0.0 {text}".rstrip()
