"""The receivers' policy: what each MX checks and what each verdict does.

A question such as "what would this MX do with a message whose SPF check
softfails?" is answered by the topology, not by the trace: each MX lists its
checks with an action (:class:`~sim.topology.model.CheckPolicy`), and
:func:`sim.services.policy.judge` turns a check's result and that action into
what happens (reject with which reply, defer, junk, only a header line).
This module asks ``judge`` itself for every result a check can give, so the
table shows exactly what the running MX does, e.g.::

    spf (action reject)
      fail       → reject 550 5.7.23 ...
      softfail   → junk
      permerror  → only noted in the header

Pure functions from a topology to rows and to Rich text.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.text import Text

from sim.auth.result import CheckResult
from sim.services.policy import judge
from sim.topology.model import MxService, Node, Topology

__all__ = ["PolicyRow", "mx_policy", "policy_rows", "render_policy"]

#: The failing results each check can give (RFC 8601's vocabulary; listed
#: for DNSBLs). Passing results never cost anything (policy.PASSING).
FAILING_RESULTS: dict[str, tuple[str, ...]] = {
    "ptr": ("fail", "temperror"),
    "fcrdns": ("fail", "temperror"),
    "helo": ("fail", "temperror"),
    "dnsbl": ("listed", "temperror"),
    "spf": ("fail", "softfail", "permerror", "temperror"),
    "dkim": ("fail", "permerror", "temperror"),
    "dmarc": ("fail", "temperror"),
    "tls": ("fail",),
}

_STAGE = {
    "ptr": "connect",
    "fcrdns": "connect",
    "dnsbl": "connect",
    "helo": "helo",
    "spf": "mail",
    "tls": "mail",
    "dkim": "data",
    "dmarc": "data",
}

_WORDS = {
    "reject": "reject",
    "defer": "defer (try again later)",
    "junk": "junk (accepted, filed as spam)",
    "header": "only noted in the header",
    "none": "nothing",
}


@dataclass(frozen=True)
class PolicyRow:
    """One check's result and what the MX makes of it."""

    check: str
    configured: str
    result: str
    taken: str
    reply: str = ""
    #: For DMARC with ``policy``: the domain owner's published p= (reject...).
    published: str = ""

    @property
    def text(self) -> str:
        """``spf fail → reject 550 5.7.23``."""
        where = f" (p={self.published})" if self.published else ""
        reply = f" {self.reply}" if self.reply else ""
        return f"{self.check} {self.result}{where} → {self.taken}{reply}"


def _reply(result: CheckResult, configured: str, stage: str) -> tuple[str, str]:
    judgement = judge(result, configured, stage, ip="IP", helo="HELO", domain="DOMAIN")  # type: ignore[arg-type]
    reply = judgement.reply
    said = f"{reply.code} {reply.enhanced}".strip() if reply is not None else ""
    return judgement.taken, said


def mx_policy(mx: MxService) -> list[PolicyRow]:
    """Every failing result of every check ``mx`` runs, with what it does."""
    rows: list[PolicyRow] = []
    for policy in mx.checks:
        check, configured = policy.check, policy.action
        stage = _STAGE.get(check, "data")
        for outcome in FAILING_RESULTS.get(check, ("fail",)):
            if check == "dmarc" and configured == "policy" and outcome == "fail":
                for published in ("reject", "quarantine", "none"):
                    result = CheckResult(check, outcome, "", details={"disposition": published})
                    taken, said = _reply(result, configured, stage)
                    rows.append(PolicyRow(check, configured, outcome, taken, said, published))
                continue
            taken, said = _reply(CheckResult(check, outcome, ""), configured, stage)
            rows.append(PolicyRow(check, configured, outcome, taken, said))
    return rows


def policy_rows(topology: Topology) -> list[tuple[Node, list[PolicyRow]]]:
    """Each MX node of the topology with its rows."""
    return [
        (node, mx_policy(node.services.mx))
        for node in topology.hosts()
        if node.services.mx is not None
    ]


_TAKEN_STYLE = {
    "reject": "red",
    "defer": "yellow",
    "junk": "yellow",
    "header": "dim",
    "none": "dim",
}


def render_policy(topology: Topology) -> RenderableType:
    """Every MX: what it checks, what each verdict does, greylisting, DNSBLs."""
    parts: list[RenderableType] = []
    found = policy_rows(topology)
    if not found:
        return Text("No MX in this topology.", style="dim")
    for node, rows in found:
        mx = node.services.mx
        assert mx is not None
        head = Text(f"{node.name}", style="bold")
        head.append(f"  {mx.hostname or ''} for {', '.join(mx.domains)}", style="dim")
        if mx.down:
            head.append("  (down: nothing listens on port 25)", style="red")
        parts.append(head)
        extras = []
        if mx.greylist:
            extras.append(f"greylists new senders for {mx.greylist:.0f} s (450 4.7.1)")
        if mx.dnsbl:
            extras.append(f"asks the DNSBL {', '.join(mx.dnsbl)}")
        extras.append("offers STARTTLS" if mx.tls else "no STARTTLS")
        parts.append(Text("  " + "; ".join(extras), style="dim"))
        if not rows:
            parts.append(Text("  no receiving checks: accepts what it is offered", style="dim"))
        current = ""
        for row in rows:
            if row.check != current:
                current = row.check
                parts.append(Text(f"  {row.check} (action {row.configured})", style="bold"))
            line = Text(f"    {row.result:<10}", style="yellow")
            if row.published:
                line.append(f"p={row.published:<11}", style="dim")
            line.append("→ ")
            line.append(_WORDS.get(row.taken, row.taken), style=_TAKEN_STYLE.get(row.taken, ""))
            if row.reply:
                line.append(f"  {row.reply}", style="bold")
            parts.append(line)
        parts.append(Text(""))
    parts.append(
        Text(
            "A passing result (pass, none, neutral, notlisted) costs nothing. "
            "When several fail, the first rejecting check decides.",
            style="dim",
        )
    )
    return Group(*parts)
