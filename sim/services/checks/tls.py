"""``tls``: did the client use STARTTLS (RFC 3207)?

Judged at MAIL, so that "Must issue a STARTTLS command first" comes where
Postfix sends it (``smtpd_tls_security_level = encrypt``). Encryption between
MTAs is opportunistic (RFC 3207), so the default only notes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sim.services.checks.base import Check, Fields
from sim.services.replies import Reply, Template

if TYPE_CHECKING:
    from sim.auth.result import CheckResult

REPLIES = {
    "tls_required": Template(
        530,
        "5.7.0",
        "Must issue a STARTTLS command first",
        "Postfix smtpd_tls_security_level=encrypt; RFC 3207 §4",
    ),
}


def evaluate(used: bool, version: str | None, cipher: str | None) -> CheckResult:
    """The tls result of a session (sim.services.mxchecks)."""
    from sim.services.mxchecks import check_tls

    return check_tls(used, version, cipher)


def fail_reply(result: CheckResult, fields: Fields) -> Reply:
    return REPLIES["tls_required"].fill()


CHECK = Check(
    name="tls",
    order=80,
    stage="mail",
    scope="session",
    doc="The message arrived over TLS.",
    results={"pass": "the session used STARTTLS", "fail": "the session was in clear text"},
    default="header",
    replies=REPLIES,
    fail_reply=fail_reply,
)
