"""What ``lab.control(node, service, command, **args)`` can do, as data.

Each running service takes a few control commands (a lab task changes the
world through them: a DNS record, a check's action, an outage). This is the
list a person reads before guessing: each command with its arguments and
one sentence, and an example call. ``lab.commands(node, service)`` shows it;
``lab.control`` checks a command name against it and suggests the closest
one when it is mistyped. ``tests/test_labapi.py`` keeps the list equal to
what each service accepts.
"""

from __future__ import annotations

import html
from typing import Any

from sim.fastclass import dataclass

__all__ = ["COMMANDS", "Arg", "Command", "CommandList", "commands_of"]


@dataclass(frozen=True)
class Arg:
    name: str
    help: str
    required: bool = True

    def __str__(self) -> str:
        return self.name if self.required else f"[{self.name}]"


@dataclass(frozen=True)
class Command:
    service: str
    name: str
    args: tuple[Arg, ...]
    help: str
    example: str

    def signature(self) -> str:
        return " ".join([self.name, *(str(a) for a in self.args)])


def _c(service: str, name: str, help: str, example: str, *args: Arg) -> Command:
    return Command(service, name, tuple(args), help, example)


_ZONE = Arg("zone", "the zone, e.g. 'home.example'")

#: Every control command of every service kind, in the order a lab uses them.
COMMANDS: tuple[Command, ...] = (
    _c("dns", "records", "the zone's records, as zone-file text",
       'lab.control("ns", "dns", "records", zone="home.example")', _ZONE),
    _c("dns", "add", "add records, written in zone-file syntax (names relative to the zone)",
       'lab.control("ns", "dns", "add", zone="home.example", text="vps A 192.0.2.131")',
       _ZONE, Arg("text", "one or more lines of zone-file text")),
    _c("dns", "remove", "remove the records of a name (of one type, with one data)",
       'lab.control("ns", "dns", "remove", zone="home.example", name="@", rtype="TXT")',
       _ZONE, Arg("name", "the owner name ('@' for the zone itself)"),
       Arg("rtype", "only records of this type", False),
       Arg("data", "only the record with this data", False)),
    _c("dns", "replace_zone", "replace the whole zone with new zone-file text",
       'lab.control("ns", "dns", "replace_zone", zone="home.example", text="@ MX 10 smtp")',
       _ZONE, Arg("text", "the zone's new records")),
    _c("dns", "flush", "empty the resolver's cache (of one name)",
       'lab.control("ns", "dns", "flush")', Arg("name", "only this name", False)),
    _c("dnsbl", "list", "add a listing: addresses in net are on the blocklist",
       'lab.control("dnsbl", "dnsbl", "list", net="192.0.2.150/32", reason="spam trap")',
       Arg("net", "an address or network"), Arg("code", "the answer, 127.0.0.x", False),
       Arg("reason", "the TXT answer", False)),
    _c("dnsbl", "delist", "remove the listings that cover net",
       'lab.control("dnsbl", "dnsbl", "delist", net="100.64.0.0/10")',
       Arg("net", "an address or network")),
    _c("dnsbl", "listings", "what is listed now", 'lab.control("dnsbl", "dnsbl", "listings")'),
    _c("mx", "down", "stop listening on 25: connections are refused (an outage)",
       'lab.control("mx-qq", "mx", "down")'),
    _c("mx", "up", "listen on 25 again", 'lab.control("mx-qq", "mx", "up")'),
    _c("mx", "set_check", "change (or add) a receiving check's action; 'off' removes it",
       'lab.control("mx-qq", "mx", "set_check", check="spf", action="header")',
       Arg("check", "ptr, fcrdns, helo, dnsbl, spf, dkim, arc, dmarc, tls"),
       Arg("action", "reject, defer, junk, header, policy (dmarc only) or off")),
    _c("mx", "greylist", "greylist first-time senders for delay (0 or 'off': stop)",
       'lab.control("mx-qq", "mx", "greylist", delay="5m")',
       Arg("delay", "lab time, e.g. '5m', or 0")),
    _c("mx", "greylist_clear", "forget every greylisting triplet",
       'lab.control("mx-qq", "mx", "greylist_clear")'),
    _c("mx", "arc_trust", "trust a sealing domain's ARC chains (RFC 8617 §7.2); off: stop",
       'lab.control("mx-qq", "mx", "arc_trust", sealer="list.example")',
       Arg("sealer", "the sealing domain (d= of the ARC-Seal)"),
       Arg("off", "true: stop trusting it", False)),
    _c("mx", "list_set", "change a mailing list's settings",
       'lab.control("lists", "mx", "list_set", list="news", rewrite_from=True)',
       Arg("list", "the list's local part"),
       Arg("subject_tag", "the tag put in front of Subject:", False),
       Arg("footer", "the text appended to the body", False),
       Arg("rewrite_from", "true: From: becomes the list's address", False),
       Arg("arc_seal", "true: seal each copy with ARC", False)),
    _c("mx", "mailbox", "the stored messages of a user, as data",
       'lab.control("mx-qq", "mx", "mailbox", user="bob")',
       Arg("user", "the mailbox (local part)"), Arg("folder", "INBOX or Junk", False)),
    _c("mx", "status", "the MX's configuration now (checks, greylisting, down)",
       'lab.control("mx-qq", "mx", "status")'),
    _c("mx", "trusted_clients", "replace the clients whose mail skips every check ([]: none)",
       'lab.control("mx1", "mx", "trusted_clients", clients=[])',
       Arg("clients", "nodes, addresses or networks (a list, or separated by commas)", False)),
    _c("relay", "queue", "the queue's entries, oldest first",
       'lab.control("smtp-isp", "relay", "queue")'),
    _c("relay", "flush", "try every entry now (not held ones)",
       'lab.control("smtp-isp", "relay", "flush")'),
    _c("relay", "hold", "keep entries (one, or all) from being tried",
       'lab.control("smtp-isp", "relay", "hold")', Arg("queue_id", "one entry", False)),
    _c("relay", "release", "let held entries be tried again",
       'lab.control("smtp-isp", "relay", "release")', Arg("queue_id", "one entry", False)),
    _c("relay", "footer", "append text to each message after DKIM signing (None: stop)",
       'lab.control("smtp-isp", "relay", "footer", text="-- scanned")',
       Arg("text", "the footer, or None", False)),
    _c("relay", "dkim_key", "the public key the relay signs with, as a TXT value to publish",
       'lab.control("smtp-isp", "relay", "dkim_key", domain="home.example", selector="s1")',
       Arg("domain", "the signing domain (d=)", True), Arg("selector", "the selector (s=)", True)),
    _c("relay", "smarthost_password", "the password the relay logs in to its smarthost with",
       'lab.control("smtp-shop", "relay", "smarthost_password", password="n3w")',
       Arg("password", "the new password")),
    _c("submission", "certificate", "serve a new certificate for these host names",
       'lab.control("relayco", "submission", "certificate", names=["smtp.relayco.example"])',
       Arg("names", "the host names the certificate is for")),
    _c("submission", "password", "set a user's password (as a provider's account page does)",
       'lab.control("relayco", "submission", "password", user="shop@relayco.example", '
       'password="n3w")',
       Arg("user", "the user's address"), Arg("password", "the new password")),
    _c("mx", "dmarc_reports", "end the DMARC reporting period now: mail the aggregate reports",
       'lab.control("mx-qq", "mx", "dmarc_reports")'),
    _c("mailbox", "status", "users, message counts per folder, open sessions",
       'lab.control("imap-host", "mailbox", "status")'),
    _c("postfix", "config", "main.cf, master.cf as generated; each line's topology field",
       'lab.control("mx-qq", "postfix", "config")'),
    _c("postfix", "queue", "Postfix's queue (postqueue -j), each entry's next attempt in lab time",
       'lab.control("smtp-isp", "postfix", "queue")'),
    _c("postfix", "postconf", "a main.cf parameter, as `postconf -h KEY` prints it",
       'lab.control("mx-qq", "postfix", "postconf", key="relayhost")',
       Arg("key", "the parameter", True)),
    _c("postfix", "set", "set a main.cf parameter (`postconf -e`) and reload Postfix",
       'lab.control("smtp-isp", "postfix", "set", key="relayhost", value="[192.0.2.25]:587")',
       Arg("key", "the parameter", True), Arg("value", "its value", True)),
    _c("dovecot", "config", "dovecot.conf as running; each setting's topology field",
       'lab.control("mx-qq", "dovecot", "config")'),
    _c("dovecot", "doveconf", "a dovecot.conf setting, as `doveconf -h KEY` prints it",
       'lab.control("mx-qq", "dovecot", "doveconf", key="disable_plaintext_auth")',
       Arg("key", "the setting", True)),
    _c("dovecot", "set", "set a top-level dovecot.conf setting (checked by doveconf) and "
       "reload Dovecot",
       'lab.control("mx-qq", "dovecot", "set", key="disable_plaintext_auth", value="yes")',
       Arg("key", "the setting (no `section { }`)", True), Arg("value", "its value", True)),
)  # fmt: skip


def commands_of(service: str) -> list[Command]:
    return [c for c in COMMANDS if c.service == service]


@dataclass(frozen=True)
class CommandList:
    """The commands of the services of one node (or of service kinds)."""

    node: str
    commands: tuple[Command, ...]

    def names(self) -> list[str]:
        return [f"{c.service} {c.name}" for c in self.commands]

    def __str__(self) -> str:
        lines = []
        for c in self.commands:
            lines.append(f"{c.service:<8} {c.signature():<34} {c.help}")
            lines.append(f"{'':<8} e.g. {c.example}")
        return "\n".join(lines) if lines else f"{self.node}: no control commands"

    def __repr__(self) -> str:
        return f"<CommandList {self.node}: {', '.join(self.names()) or 'none'}>"

    def __iter__(self) -> Any:
        return iter(self.commands)

    def __len__(self) -> int:
        return len(self.commands)

    def _repr_html_(self) -> str:
        e = html.escape
        cell = "padding:2px 8px;text-align:left;vertical-align:top;border-bottom:1px solid #ddd"
        rows = []
        for c in self.commands:
            args = "<br>".join(
                f"<code>{e(a.name)}</code>{'' if a.required else ' (optional)'}: {e(a.help)}"
                for a in c.args
            )
            rows.append(
                f'<tr><td style="{cell}">{e(c.service)}</td>'
                f'<td style="{cell}"><code>{e(c.name)}</code></td>'
                f'<td style="{cell}">{args}</td><td style="{cell}">{e(c.help)}<br>'
                f"<code>{e(c.example)}</code></td></tr>"
            )
        head = "".join(
            f'<th style="{cell}">{h}</th>' for h in ("service", "command", "arguments", "")
        )
        return (
            f"<b>control commands on {e(self.node)}</b>"
            f'<table style="border-collapse:collapse;font-size:90%"><thead><tr>{head}</tr>'
            f"</thead><tbody>{''.join(rows)}</tbody></table>"
        )
