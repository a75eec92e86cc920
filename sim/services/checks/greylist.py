"""``greylist``: defer a new (client, sender, recipient) triplet (RFC 6647).

Not listed in ``mx.checks``: an MX greylists when its topology sets
``mx.greylist`` (a delay). The MX judges it at RCPT, after the other checks,
and answers postgrey's ``450 4.7.1`` until the delay has passed
(:mod:`sim.services.greylist`).
"""

from __future__ import annotations

from sim.services.checks.base import Check
from sim.services.replies import Template

REPLIES = {
    "greylisted": Template(
        450,
        "4.7.1",
        "<{rcpt}>: Recipient address rejected: Greylisted, see RFC 6647; "
        "try again in {seconds} seconds",
        "postgrey wording; RFC 6647 §2.1",
    ),
}

CHECK = Check(
    name="greylist",
    order=90,
    stage="rcpt",
    scope="recipient",
    doc="Greylisting (RFC 6647): a new triplet is deferred until `mx.greylist` has passed.",
    results={
        "pass": "the triplet was seen long enough ago",
        "greylisted": "a new triplet, or one seen too recently: deferred",
    },
    default="defer",
    actions=("defer",),
    replies=REPLIES,
    listed=False,
)
