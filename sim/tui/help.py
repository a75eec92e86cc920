"""The help screen: keys, what the panes show, and the words the labs use."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Markdown

__all__ = ["HELP_TEXT", "HelpScreen"]

HELP_TEXT = """\
# maillab help

maillab runs a small network of mail servers, DNS servers and routers on
your machine. Each lab walks you through one idea of how email travels:
read, run an experiment, look at what happened, answer, fix something,
check.

## Keys

| Where | Key | What it does |
|---|---|---|
| everywhere | `F1` or `?` | this help |
| everywhere | `Ctrl+Q` | quit (your progress is saved) |
| everywhere | `Tab` / `Shift+Tab` | move between fields and buttons |
| labs | `Enter` | start the lab, or resume where you were |
| labs | `r` | reset a lab's progress and start over |
| lab | `n` / `p` | next / previous step |
| lab | `r` | run the step's experiment |
| lab | `c` | check a task or a checkpoint |
| lab | `h` | show the next hint |
| lab | `1` `2` `3` | the step, the trace, the map |
| lab | `Esc` | leave a text field; again: back to the labs |
| map | `[` `]` | step through every packet of the last experiment |

The mouse works too: click tabs, buttons, choices and fields.

## The trace

Every experiment returns a *trace*: what each node did, in lab time.

* **Story**: everything, in order.
* **DNS**: each question, who asked whom, and the answer.
* **Network**: each packet the routers judged; a *drop* or *reject*
  names the router and the firewall rule.
* **SMTP**: the dialogue, `C:` for the client and `S:` for the server,
  as in RFC 5321's examples.
* **Checks**: what the receiving server checked (PTR, DNSBL, SPF, DKIM,
  DMARC...), the verdict, what a failure costs, and why.
* **Queue**: what a relay did: queued, tried, deferred, delivered, bounced.

## The map

Routers are `[in brackets]`, hosts hang below the router that is their
gateway. The message's way is highlighted; the node that stopped it is
marked ✗ (a router that dropped port 25, a server that refused the mail);
the way it would have gone on is dimmed.

## Outcomes

`delivered` (in the inbox) · `junk` (accepted, filed as spam) ·
`rejected` (a 5xx reply) · `deferred` (a 4xx reply: try again later) ·
`bounced` (the relay gave up and told the sender) · `blocked` (the network
stopped it before any SMTP: a time-out, a refusal, no route).

Lab time runs faster than real time, so a relay's retries over hours take
seconds.
"""


class HelpScreen(ModalScreen[None]):
    """Keys and concepts; Esc closes it."""

    BINDINGS = [
        Binding("escape,q,f1,question_mark", "close", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Markdown(HELP_TEXT, id="help-text")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#help-body").focus()

    def action_close(self) -> None:
        self.dismiss(None)
