"""What a receiving check declares, in one place (issue 13 §1).

A check of the lab MX is one module of :mod:`sim.services.checks` that
defines ``CHECK``, a :class:`Check`: its name (the word of the topology's
``mx.checks`` and of the ``check`` trace events), the SMTP stage it is judged
at, the results it can give (RFC 8601 §2.7 for the authentication methods),
its default action and the actions a topology may give it, its reply
templates and which reply a failure sends (RFC 5321 §4.2, RFC 3463, RFC
7372), its Authentication-Results clause (RFC 8601 §2.7: method, ptype and
property), the sentences that explain its results, and its evaluation
function over the libraries' glue in :mod:`sim.auth` and
:mod:`sim.services.mxchecks`. The registry (:mod:`sim.services.checks`)
collects them; the topology schema, the lab's ``checks`` vocabulary, the
policy (:mod:`sim.services.policy`), the replies
(:mod:`sim.services.replies`) and the header writer
(:mod:`sim.auth.headers`) read them from there, as rspamd reads a module's
symbols and Haraka a plugin's hooks: a new check is a new module.

The imports of the glue are inside the evaluation functions: the schema
reads the declarations when a topology is loaded, and needs neither pyspf
nor dkimpy for that.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import field
from typing import TYPE_CHECKING, Any, Literal

from sim.fastclass import dataclass
from sim.services.replies import Reply, Template, reply

if TYPE_CHECKING:
    from sim.auth.result import CheckResult
    from sim.services.policy import Judgement

__all__ = [
    "ALL_ACTIONS",
    "ArClause",
    "Check",
    "CheckInput",
    "Fields",
    "Scope",
    "Stage",
    "Taken",
]

Stage = Literal["connect", "helo", "mail", "rcpt", "data"]
Taken = Literal["reject", "defer", "junk", "header", "none"]
#: Which part of the MX computes a built-in check's result (the MX starts
#: their lookups ahead, see sim.services.mx.handler); ``generic`` checks are
#: evaluated by the MX at their stage through :attr:`Check.evaluate`.
Scope = Literal["client", "helo", "session", "envelope", "message", "recipient", "generic"]
#: Every action a topology may give a check (``policy``: only where allowed).
ALL_ACTIONS: tuple[str, ...] = ("reject", "defer", "junk", "header", "policy")
#: The reply fields a judgement fills in: ip, helo, domain.
Fields = Mapping[str, str]
#: One Authentication-Results clause as plain data: (method, result,
#: (property, value)...), properties named ``ptype_property`` as authres
#: spells them (``smtp_mailfrom`` is ``smtp.mailfrom``, RFC 8601 §2.3).
ArClause = tuple[str, str, tuple[tuple[str, str | None], ...]]


@dataclass(frozen=True)
class CheckInput:
    """What a generic check may read when the MX evaluates it: the client,
    the HELO name, the envelope and (at DATA) the message, and the MX host's
    caching DNS (``lookup.run(fn)`` runs a synchronous check over it)."""

    ip: str
    helo: str
    mail_from: str
    rcpts: tuple[str, ...]
    content: bytes | None
    lookup: Any
    #: The MX's configuration (its topology service): a check's own settings
    #: (``mx.arc``) are read from it.
    settings: Any = None


@dataclass(frozen=True)
class Check:
    """The declaration of one receiving check (see the module docstring)."""

    name: str
    #: Where it comes in the reference and in a list of all checks.
    order: int
    #: The SMTP stage whose reply it decides (RFC 5321 §3.3; smtpd_delay_reject:
    #: the client checks are judged at the first RCPT).
    stage: Stage
    #: One line for the topology reference.
    doc: str
    #: Result → what it means (the vocabulary, in order).
    results: Mapping[str, str]
    default: str
    actions: tuple[str, ...] = ("reject", "defer", "junk", "header")
    scope: Scope = "generic"
    #: Its reply templates (merged into sim.services.replies.REPLIES).
    replies: Mapping[str, Template] = field(default_factory=dict)
    #: The reply of a failure it is judged to reject (the deferring form is
    #: derived, RFC 3463 §3.1, unless ``defer_reply`` gives one).
    fail_reply: Callable[[CheckResult, Fields], Reply] | None = None
    #: The reply of a temperror that defers.
    temp_reply: Callable[[CheckResult, Fields], Reply] | None = None
    defer_reply: Callable[[CheckResult, Fields], Reply] | None = None
    #: Counted for X.7.26 "multiple authentication checks failed" (RFC 7372 §3.2).
    authentication: bool = False
    #: Whether a temperror may defer (a DNSBL that is down never stops mail).
    temperror_defers: bool = True
    #: Whether a permerror counts as a failure (for SPF, DMARC, DNSBL it is
    #: only noted: a broken record is not the sender's wrongdoing).
    permerror_fails: bool = True
    #: What ``policy`` means for it, given the result (DMARC: the domain's
    #: published disposition); None: the action ``policy_action`` stands for.
    policy: Callable[[CheckResult], Taken] | None = None
    #: The action ``policy`` stands for without a ``policy`` function (SPF:
    #: reject, its qualifiers already are the owner's policy).
    policy_action: str = "header"
    #: The Authentication-Results method (RFC 8601 §2.7) and its clause;
    #: checks sharing a method give one clause, the lowest ``ar_rank``'s.
    ar_method: str | None = None
    ar_clause: Callable[[CheckResult], ArClause] | None = None
    ar_rank: int = 0
    #: Weight keys besides the results a scoring MX may use (the DNSBL's
    #: return codes), as a description for the reference.
    score_keys: str = ""
    #: Generic evaluation (scope ``generic``): the results at its stage.
    evaluate: Callable[[CheckInput], Awaitable[list[CheckResult]]] | None = None
    #: A local policy that changes other checks' judgements at its stage once
    #: its own result is known (ARC: a trusted sealer overrides a DMARC
    #: failure, RFC 8617 §7.2): given the stage's judgements and the MX's
    #: settings, the judgements to decide with (same length, same order).
    amend: Callable[[Sequence[Judgement], Any], list[Judgement]] | None = None
    #: False for what the MX does but a topology does not list in ``checks``
    #: (greylisting has its own ``mx.greylist`` setting).
    listed: bool = True

    def failure_reply(self, result: CheckResult, taken: Taken, fields: Fields) -> Reply:
        """The reply of a judgement that rejects or defers."""
        from sim.services.replies import temporary

        if result.result == "temperror":
            return self.temp_reply(result, fields) if self.temp_reply else reply("internal")
        if taken == "defer" and self.defer_reply is not None:
            return self.defer_reply(result, fields)
        base = self.fail_reply(result, fields) if self.fail_reply else reply("internal")
        return temporary(base) if taken == "defer" else base
