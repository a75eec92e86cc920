"""The receiving MTA: port 25 of a domain's MX host (RFC 5321).

What it does, in the order a session meets it:

1. **Greeting and EHLO.** ``220 HOST ESMTP``; EHLO lists SIZE (RFC 1870),
   8BITMIME (RFC 6152), PIPELINING (RFC 2920), STARTTLS (RFC 3207, with a
   certificate from the lab CA) and ENHANCEDSTATUSCODES (RFC 2034). Every reply
   after the greeting and EHLO carries an enhanced status code (RFC 3463).
2. **MAIL.** The null reverse-path ``<>`` is accepted: bounces use it
   (RFC 5321 §4.5.5). The ``tls`` check runs here, so "Must issue a STARTTLS
   command first" comes at MAIL, as with Postfix.
3. **RCPT.** Only the MX's own domains (never an open relay: ``554 5.7.1
   Relay access denied``), then the checks of the client (ptr, fcrdns, helo,
   dnsbl: once per connection, at the first RCPT, like Postfix's
   ``smtpd_delay_reject`` so that the reply names the recipient's stage) and
   SPF (once per transaction), then unknown users (``550 5.1.1``), then
   greylisting (RFC 6647). ``postmaster`` is always accepted (RFC 5321 §4.5.1)
   and is exempt from the client checks and greylisting, so a rejected sender
   can still reach a person. The lookups of these checks start earlier, as
   soon as their inputs are known (the client's at connect, the HELO name's
   at EHLO, SPF's at MAIL), so the trace shows them there.
4. **DATA.** DKIM and DMARC need the message, so they run after the final
   dot; then the message is stored (Maildir, INBOX or Junk) **before** the
   ``250 2.0.0 Ok: queued as ID`` (RFC 5321 §6.1: what is acknowledged must
   not be lost). Each stored copy gets ``Return-Path``, ``Delivered-To``
   (what the MDA adds at final delivery, RFC 5321 §4.4), ``Received``
   (RFC 5321 §4.4) and ``Authentication-Results`` (RFC 8601).

Which checks run, and what a failure costs, is the topology's
(:class:`~sim.topology.model.MxService`); each check is one module of
:mod:`sim.services.checks` (its stage, results, actions, replies and
Authentication-Results clause); the decision rules are in
:mod:`sim.services.policy`, a scoring MX's sums in :mod:`sim.services.mxscore`.

The code follows aiosmtpd's own lines: this module is the service (the
listener, the configuration, the control commands);
:mod:`sim.services.mxprotocol` the ``SMTP`` subclass (the protocol object of
one connection); :mod:`sim.services.mxhandler` the handler whose
``handle_*`` hooks judge each stage; :mod:`sim.services.mxmessage` what is
read from and written into a message.
Every check emits a ``check`` trace event, every stored copy a ``delivery``
event, under the trace id the connection came with.

Robustness (each in ``tests/test_mx_robustness.py``): aiosmtpd answers
malformed commands with 500/501 and goes on; a line longer than the limit is
read to its end and answered ``500 5.5.2``; data beyond ``max_size`` is read
and answered ``552 5.3.4``; a client that disconnects mid-DATA leaves nothing
stored. **Bare LF**: command lines ending in a bare LF are accepted (aiosmtpd
reads commands up to LF, as Postfix's default ``smtpd_forbid_bare_newline =
normalize`` does), but inside DATA only CRLF ends a line and only
``CRLF.CRLF`` ends the message; ``LF.LF`` does not (RFC 5321 §4.1.1.4 says it
MUST NOT), which is what defeats SMTP smuggling (CVE-2023-51766 and
relatives): a message cannot hide a second one. A bare LF inside the content
is kept as it came.

Control commands (:meth:`MxServer.control`, labs use them)::

    down / up                       stop / start listening (connection refused)
    set_check  check, action        change (or add) a check's action; "off" removes it
    dmarc_reports                   end the DMARC reporting period now: mail the reports
    greylist   delay                turn greylisting on (lab seconds or "5m") or off (0)
    greylist_clear                  forget every greylisting triplet
    arc_trust  sealer[, off]        trust (or stop trusting) a sealing domain's ARC chains
    list_set   list[, subject_tag, footer, rewrite_from, arc_seal]
                                    change a mailing list's settings
    mailbox    user[, folder]       the stored messages of a user, as data
    status                          the MX's configuration now
    trusted_clients clients         replace the clients whose mail skips every check
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
import weakref
from collections.abc import Callable, Sequence
from ipaddress import IPv4Network, ip_address, ip_network
from typing import Any, ClassVar, Literal, TypeVar

from sim.auth.replay import Memo
from sim.clock import parse_duration
from sim.errors import NetworkError, ServiceError
from sim.fastclass import dataclass
from sim.net.api import Endpoint
from sim.services import checks as registry
from sim.services.base import NodeContext, Service
from sim.services.checks.base import ALL_ACTIONS, Check
from sim.services.dmarcreport import DmarcReporter
from sim.services.greylist import Greylist
from sim.services.maildir import Maildir, mail_root
from sim.services.mxhandler import CachedLookup, Connection, MxHandler, Transaction
from sim.services.mxmessage import _describe_stored
from sim.services.mxprotocol import MxSMTP, _Reset
from sim.services.mxscore import Weights
from sim.services.policy import Judgement
from sim.services.smtpbase import fault_sink, idle_timeout
from sim.topology.model import ArcTrust, CheckAction, CheckPolicy, MxService, Scoring

__all__ = ["Connection", "MxHandler", "MxSMTP", "MxServer", "Route", "Transaction"]

# Names tests import from here, from before the split (explicit re-exports).
from sim.services.mxhandler import _spf_safely as _spf_safely
from sim.services.mxmessage import _RECEIVED_ID as _RECEIVED_ID
from sim.services.mxmessage import _header_fields as _header_fields
from sim.services.mxmessage import _header_section as _header_section
from sim.services.mxmessage import _Headers as _Headers
from sim.services.mxmessage import _read_headers as _read_headers

log = logging.getLogger(__name__)
T = TypeVar("T")
ACTIONS: tuple[str, ...] = ALL_ACTIONS

RouteKind = Literal[
    "local", "postmaster", "unknown", "relay", "syntax", "forward", "list", "backup"
]

#: The key of ``forward`` that catches every other local part.
CATCH_ALL = "*"


@dataclass(frozen=True)
class Route:
    """Where a RCPT address goes: ``local`` (a mailbox), ``postmaster``,
    ``unknown`` (our domain, no such user), ``relay`` (not our domain),
    ``syntax`` (not an address), ``forward`` (an alias sent on by the relay;
    ``mailbox`` is the target address), ``backup`` (a backup MX queues it
    for a more preferred MX; ``mailbox`` is the address itself)."""

    kind: RouteKind
    mailbox: str | None = None
    #: For a ``local`` route reached through an alias: the alias's target.
    alias_of: str | None = None


# --- the service -------------------------------------------------------------------


class MxServer(Service):
    """The receiving MTA of one node."""

    kind: ClassVar[str] = "mx"

    def __init__(self, ctx: NodeContext) -> None:
        super().__init__(ctx)
        config = ctx.node.services.mx
        if config is None:
            raise ServiceError(f"{ctx.node.name} has no mx service")
        if not config.domains:
            raise ServiceError(f"{ctx.node.name}: an mx service needs at least one domain")
        self.config: MxService = config
        self.hostname = config.hostname or f"mx.{config.domains[0]}"
        self.domains = tuple(d.lower().rstrip(".") for d in config.domains)
        self.mailboxes = tuple(m.lower() for m in config.mailboxes)
        self.forwards = {local.lower(): target for local, target in config.forward}
        #: Mailing lists hosted here (sim.services.mailinglist), by local part.
        self.lists = {local.lower(): spec for local, spec in config.lists}
        #: ``trusted_clients`` as networks (a node: each of its addresses).
        self.trusted: tuple[IPv4Network, ...] = _trusted_networks(ctx, config.trusted_clients)
        self.trusted_names: tuple[str, ...] = config.trusted_clients
        #: The checks in the order they run, with their actions (``set_check`` edits it).
        self.checks: list[CheckPolicy] = list(config.checks)
        #: Checks evaluated through their module's ``evaluate``, by stage
        #: (computed when the checks change, not per message).
        self.generic: dict[str, tuple[tuple[Check, CheckAction], ...]] = _generic_by_stage(
            self.checks
        )
        #: The scoring table (None: the checks' actions alone decide).
        self.weights: Weights | None = (
            Weights(config.scoring) if config.scoring is not None else None
        )
        self.greylist: Greylist | None = (
            Greylist(config.greylist) if config.greylist is not None else None
        )
        self.maildir = Maildir(mail_root(ctx.state_dir, ctx.node.name))
        self.handler = MxHandler(self)
        self.down = config.down
        self._endpoint: Endpoint | None = None
        self._reset_mode = False
        self._sessions: weakref.WeakSet[MxSMTP] = weakref.WeakSet()
        #: Connected clients now (see blocking()).
        self.open_sessions = 0
        self._tls: ssl.SSLContext | None = None
        self._faults = fault_sink(ctx, "mx")
        #: The last results of the client checks, SPF and DMARC (functions of
        #: their arguments and DNS answers), reused while those answers hold
        #: (sim.auth.replay).
        self.memo = Memo()
        #: DMARC aggregate reports (RFC 9990), when the topology asks for them.
        self.reports = (
            DmarcReporter(ctx, config.dmarc_reports, self.hostname, self.domains[0])
            if config.dmarc_reports is not None
            else None
        )

    # -- configuration views ------------------------------------------------

    def action(self, check: str) -> CheckAction | None:
        for policy in self.checks:
            if policy.check == check:
                return policy.action
        return None

    def runs(self, check: str) -> bool:
        return self.action(check) is not None

    @property
    def postmaster_mailbox(self) -> str:
        """RFC 5321 §4.5.1: postmaster mail goes to a person: the first mailbox."""
        return self.mailboxes[0] if self.mailboxes else "postmaster"

    def route(self, address: str) -> Route:
        """Where a RCPT TO address goes (domains compare case-insensitively;
        local parts too, as Postfix's virtual mailbox lookups do)."""
        address = address.strip()
        if "@" not in address:
            # RFC 5321 §4.1.1.3: "RCPT TO:<Postmaster>" without a domain must work.
            if address.lower() == "postmaster":
                return Route("postmaster", self.postmaster_mailbox)
            return Route("syntax")
        local, _, domain = address.rpartition("@")
        if not local or not domain:
            return Route("syntax")
        if domain.lower().rstrip(".") not in self.domains:
            return Route("relay")
        local = local.lower()
        if local == "postmaster":
            return Route("postmaster", self.postmaster_mailbox)
        if local in self.mailboxes:
            return Route("local", local)
        if local in self.lists:
            # A mailing list: accepted here, resent to its members by the relay.
            return Route("list", local)
        if local.endswith("-bounces") and local[: -len("-bounces")] in self.lists:
            # The list's envelope sender: its bounces reach the list's owner.
            return Route("local", self.postmaster_mailbox)
        target = self.forwards.get(local) or self.forwards.get(CATCH_ALL)
        if target is not None:
            # An alias (RFC 5321 §3.9.1), or the catch-all for every other
            # local part: a target that is one of our own mailboxes is stored
            # here (as Postfix's virtual aliases rewrite before delivery);
            # any other is accepted here and sent on by the relay.
            t_local, _, t_domain = target.rpartition("@")
            if t_domain.lower().rstrip(".") in self.domains and t_local.lower() in self.mailboxes:
                return Route("local", t_local.lower(), alias_of=target)
            return Route("forward", target)
        if self.config.backup:
            # RFC 5321 §5.1: a backup MX cannot know the primary's users; it
            # takes the mail and its relay hands it to a more preferred MX.
            return Route("backup", address)
        return Route("unknown")

    def trusts(self, ip: str) -> bool:
        """Whether ``ip`` is one of the ``trusted_clients`` (whose mail skips
        every receiving check: its own backup MX already took it)."""
        try:
            address = ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> list[Endpoint]:
        loop = asyncio.get_running_loop()
        if self.config.tls:
            # RFC 3207: STARTTLS with a certificate for the MX's name from the lab CA.
            self._tls = await loop.run_in_executor(
                None, self.ctx.ca.server_context, [self.hostname]
            )
        mailboxes = set(self.mailboxes) | {self.postmaster_mailbox}
        try:
            for user in sorted(mailboxes):
                await loop.run_in_executor(None, self.maildir.create, user)
        except (ValueError, OSError) as err:
            raise ServiceError(f"{self.ctx.node.name}: cannot create the mailboxes: {err}") from err
        if self.down:
            return []
        return [await self._listen()]

    async def lab_started(self) -> None:
        if self.reports is not None:
            self.reports.start()

    async def stop(self) -> None:
        if self.reports is not None:
            await self.reports.stop()
        await self._unlisten()
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()

    def _factory(self) -> asyncio.BaseProtocol:
        if self._reset_mode:
            return _Reset()
        session = MxSMTP(
            self.handler,
            net=self.ctx.net,
            faults=self._faults,
            hostname=self.hostname,
            data_size_limit=self.config.max_size,
            tls_context=self._tls,
            # RFC 5321 §4.5.3.2.7: the server waits at least 5 minutes for a
            # command (lab minutes: the lab clock's scale applies).
            timeout=idle_timeout(self.ctx.clock),
        )
        self._sessions.add(session)
        return session

    async def _listen(self) -> Endpoint:
        if self._endpoint is None:
            self._endpoint = await self.ctx.net.serve_tcp("mx", 25, self._factory)
        self._reset_mode = False
        return self._endpoint

    async def _unlisten(self) -> None:
        if self._endpoint is None:
            return
        try:
            await self.ctx.net.unserve(self._endpoint)
        except NotImplementedError:
            # This backend cannot close one listener: answer every new
            # connection with a reset, which a client also sees as refused.
            self._reset_mode = True
            return
        self._endpoint = None

    # -- control ---------------------------------------------------------------

    async def control(self, command: str, **args: Any) -> dict[str, Any]:
        """Change the running MX; see the module docstring for the commands."""
        if command == "down":
            self.down = True
            await self._unlisten()
            return {"down": True}
        if command == "up":
            self.down = False
            endpoint = await self._listen()
            return {"down": False, "endpoint": endpoint.to_json()}
        if command == "dmarc_reports":
            # End the reporting period now (a lab does not wait a day).
            if self.reports is None:
                raise ServiceError(f"{self.ctx.node.name}: this mx sends no DMARC reports")
            return {"sent": await self.reports.send()}
        if command == "set_check":
            return self._set_check(args)
        if command == "greylist":
            return self._set_greylist(args)
        if command == "greylist_clear":
            cleared = self.greylist.clear() if self.greylist is not None else 0
            return {"cleared": cleared}
        if command == "arc_trust":
            return self._arc_trust(args)
        if command == "list_set":
            return self._list_set(args)
        if command == "mailbox":
            return await self._mailbox(args)
        if command == "status":
            return self.status()
        if command == "trusted_clients":
            return self._set_trusted(args.get("clients"))
        raise ServiceError(
            f"mx has no control command {command!r} (down, up, set_check, greylist, "
            "greylist_clear, arc_trust, list_set, mailbox, status, dmarc_reports, trusted_clients)"
        )

    def _set_trusted(self, clients: Any) -> dict[str, Any]:
        """Replace ``trusted_clients`` (a list, or names separated by commas;
        empty: trust nobody) — the fix "stop trusting the backup"."""
        if clients is None:
            names: list[str] = []
        elif isinstance(clients, str):
            names = [c.strip() for c in clients.split(",") if c.strip()]
        else:
            names = [str(c).strip() for c in clients]
        self.trusted = _trusted_networks(self.ctx, names)
        self.trusted_names = tuple(names)
        return {"trusted_clients": names}

    def status(self) -> dict[str, Any]:
        return {
            "hostname": self.hostname,
            "domains": list(self.domains),
            "mailboxes": list(self.mailboxes),
            "checks": [{"check": p.check, "action": p.action} for p in self.checks],
            "dnsbl": list(self.config.dnsbl),
            "greylist": self.greylist.delay if self.greylist is not None else None,
            "tls": self._tls is not None,
            "max_size": self.config.max_size,
            "down": self.down,
            "scoring": _scoring_json(self.config.scoring),
            "dmarc_reports": self.reports.status() if self.reports is not None else None,
            "trusted_sealers": list(self.config.arc.trusted_sealers if self.config.arc else ()),
            "lists": {name: dataclasses.asdict(spec) for name, spec in self.lists.items()},
            "backup": self.config.backup,
            "trusted_clients": list(self.trusted_names),
        }

    def _arc_trust(self, args: dict[str, Any]) -> dict[str, Any]:
        """Trust a sealer's ARC chains (RFC 8617 §7.2), or stop (``off``)."""
        sealer = str(args.get("sealer", "")).strip().lower().rstrip(".")
        if not sealer or "." not in sealer:
            raise ServiceError(f"mx arc_trust: {sealer!r} is not a domain name")
        current = list(self.config.arc.trusted_sealers if self.config.arc else ())
        current = [s for s in current if s.lower() != sealer]
        if not args.get("off"):
            current.append(sealer)
        self.config = dataclasses.replace(self.config, arc=ArcTrust(tuple(current)))
        return {"trusted_sealers": current}

    def _list_set(self, args: dict[str, Any]) -> dict[str, Any]:
        """Change a mailing list's settings (sim.services.mailinglist)."""
        name = str(args.get("list", "")).strip().lower()
        if name not in self.lists:
            known = ", ".join(self.lists) or "none"
            raise ServiceError(f"mx list_set: no list {name!r} here (lists: {known})")
        changes: dict[str, Any] = {}
        for key in ("subject_tag", "footer"):
            if key in args:
                changes[key] = None if args[key] in (None, "") else str(args[key])
        for key in ("rewrite_from", "arc_seal"):
            if key in args:
                value = args[key]
                if not isinstance(value, bool):
                    raise ServiceError(f"mx list_set: {key} must be true or false, not {value!r}")
                changes[key] = value
        self.lists[name] = dataclasses.replace(self.lists[name], **changes)
        return {"list": name, **dataclasses.asdict(self.lists[name])}

    def _set_check(self, args: dict[str, Any]) -> dict[str, Any]:
        check = str(args.get("check", "")).lower()
        action = str(args.get("action", "")).lower()
        names = registry.names()
        spec = registry.get(check)
        if spec is None or not spec.listed:
            raise ServiceError(f"mx set_check: unknown check {check!r} ({', '.join(names)})")
        if action not in (*ACTIONS, "off"):
            raise ServiceError(
                f"mx set_check: unknown action {action!r} ({', '.join(ACTIONS)}, off)"
            )
        if action != "off" and action not in spec.actions:
            if action == "policy":
                raise ServiceError("mx set_check: action 'policy' is for dmarc only")
            raise ServiceError(
                f"mx set_check: {check} takes {', '.join(spec.actions)}, not {action!r}"
            )
        updated: list[CheckPolicy] = []
        found = False
        for policy in self.checks:
            if policy.check == check:
                found = True
                if action != "off":
                    updated.append(CheckPolicy(policy.check, action))  # type: ignore[arg-type]
            else:
                updated.append(policy)
        if not found and action != "off":
            updated.append(CheckPolicy(check, action))  # type: ignore[arg-type]
        self.checks = updated
        self.generic = _generic_by_stage(updated)
        return {"checks": [{"check": p.check, "action": p.action} for p in self.checks]}

    def _set_greylist(self, args: dict[str, Any]) -> dict[str, Any]:
        raw = args.get("delay")
        if raw in (None, False, "off", "0", 0):
            self.greylist = None
            return {"greylist": None}
        try:
            delay = parse_duration(raw)
        except ValueError as err:
            raise ServiceError(f"mx greylist: {err}") from None
        self.greylist = Greylist(delay)
        return {"greylist": delay}

    async def _mailbox(self, args: dict[str, Any]) -> dict[str, Any]:
        user = str(args.get("user", "")).strip().lower()
        if "@" in user:
            user = user.split("@", 1)[0]
        folders = [args["folder"]] if args.get("folder") else ["INBOX", "Junk"]
        for folder in folders:
            if folder not in ("INBOX", "Junk"):
                raise ServiceError(f"mx mailbox: no folder {folder!r} (INBOX, Junk)")
        if user not in {*self.mailboxes, self.postmaster_mailbox}:
            raise ServiceError(
                f"mx mailbox: no mailbox {user!r} on {self.ctx.node.name} "
                f"({', '.join(self.mailboxes) or 'none'})"
            )
        loop = asyncio.get_running_loop()
        out: list[dict[str, Any]] = []
        for folder in folders:
            stored = await loop.run_in_executor(None, self.maildir.messages, user, folder)
            for message in stored:
                out.append(_describe_stored(message.folder, message.key, message.data))
        return {"user": user, "messages": out}

    # -- helpers for the handler ---------------------------------------------------

    def lookup_for(self, trace_id: str | None) -> CachedLookup:
        """DNS for the checks of a connection, through the MX host's own
        caching resolver."""
        return CachedLookup(self.ctx.resolver, trace_id, self.memo)

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work (storing: fsync). With other sessions open on
        this MX, in a worker thread, so that they go on while the disk syncs.
        As the MX's only session, right here: the loop would only wait, and a
        hop to a thread and back costs two thread wake-ups (about 0.2 ms on a
        small VM, a twentieth of an MX's time per message). The lab's other
        services on this loop (local backend) wait for the sync too, about a
        millisecond, as they would for any busy handler."""
        if self.open_sessions <= 1:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def emit_check(self, conn: Connection, judgement: Judgement) -> None:
        result = judgement.result
        self.ctx.record(
            conn.trace_id,
            judgement.check_event(conn.ip),
            f"{judgement.summary}: {result.explanation}",
        )


def _scoring_json(config: Scoring | None) -> dict[str, Any] | None:
    if config is None:
        return None
    weights: dict[str, dict[str, float]] = {}
    for check, key, weight in config.weights:
        weights.setdefault(check, {})[key] = weight
    return {"junk": config.junk, "reject": config.reject, "weights": weights}


def _generic_by_stage(
    policies: Sequence[CheckPolicy],
) -> dict[str, tuple[tuple[Check, CheckAction], ...]]:
    """The configured checks the MX evaluates through their module, by stage."""
    table: dict[str, list[tuple[Check, CheckAction]]] = {}
    for policy in policies:
        spec = registry.get(policy.check)
        if spec is not None and spec.scope == "generic" and spec.evaluate is not None:
            table.setdefault(spec.stage, []).append((spec, policy.action))
    return {stage: tuple(found) for stage, found in table.items()}


def _trusted_networks(ctx: NodeContext, clients: Sequence[str]) -> tuple[IPv4Network, ...]:
    """``trusted_clients`` → networks: a node's interface addresses, or an
    address or network as written."""
    out: list[IPv4Network] = []
    for client in clients:
        try:
            out += [IPv4Network(i.address.ip) for i in ctx.network.interfaces(client)]
            continue
        except NetworkError:  # not a node: an address or a network
            pass
        try:
            network = ip_network(client, strict=False)
        except ValueError as err:
            raise ServiceError(
                f"{ctx.node.name}: trusted client {client!r} is neither a node nor an address"
            ) from err
        if isinstance(network, IPv4Network):
            out.append(network)
    return tuple(out)
