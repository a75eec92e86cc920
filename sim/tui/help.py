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
| lab | `h` | show the next hint (hints appear only when you ask) |
| lab | `o` | open what the step talks about (a message, a view) |
| lab | `1` `2` `3` `4` | the step, the trace, the map, your own experiment |
| lab | `t` `m` `x` | the trace, the map, your own experiment |
| lab | `PgUp` `PgDn` `↑` `↓` `Home` `End` | scroll what is on screen |
| lab | `Esc` | leave a text field; elsewhere: leave the lab (it asks first) |
| map | `[` `]` | step through every packet of the last experiment |

### The views of the trace, one key each

| Key | View | What it shows |
|---|---|---|
| `s` | Story | every event in lab time, and the pauses between them |
| `d` | DNS | each question and its answer |
| `w` | Network | each packet the routers judged; a time-out as time |
| `e` | SMTP | the dialogue, the EHLO extensions, the header lines sent (and IMAP/POP3) |
| `k` | Checks | the receiver's checks and what each verdict did |
| `q` | Queue | every relay attempt with its lab time |
| `b` | Mail | the lab's mailboxes; `Enter` opens a message, `v` its raw source, `Esc` back |
| `y` | Policy | what each receiver checks and what each verdict does (below the map) |

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
* **Queue**: what a relay did: queued, tried, deferred, delivered, bounced,
  with the lab time of each attempt, including the attempts your own
  changes caused (a flush, lab time passing), after a line that names the
  change. A connection the relay could not open is shown as the relay's
  own record ("connection refused: the relay records 451 4.4.1"): no
  server said it.
* **Mail**: every mailbox of the lab. A message shows its headers, the
  `Received:` chain hop by hop with times, `Authentication-Results`,
  `DKIM-Signature`, ARC, and for a bounce the delivery status (RFC 3464:
  Action, Status, Diagnostic-Code, Will-Retry-Until).

A dropped packet answers nothing: the client waits for its time-out (30 s
of lab time in these labs) and the trace shows that wait. A rejected one
answers at once.

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
