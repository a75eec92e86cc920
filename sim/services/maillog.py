"""Postfix's and Dovecot's logs read as maillab trace events.

A real MTA tells what it did only in its log. Each line is matched here to
the events maillab's own services emit, so that ``maillab send`` reports the
same structured outcome whoever served the mail:

* ``smtp`` (role ``server``): a connection (smtpd's ``connect from``, or
  postscreen's ``CONNECT from`` when postscreen answers port 25), a refused
  command, with the reply (``NOQUEUE: reject: RCPT from ...: 550 5.7.25
  ...``, also postscreen's, after its ``DNSBL rank N for [ip]:port``);
* ``check``: the receiving check a refusal or a warning came from (which
  restriction said it: ``cannot find your reverse hostname`` is ``ptr``,
  ``blocked using ZONE`` is ``dnsbl``, policyd-spf's text is ``spf``);
* ``queue``: ``status=sent/deferred/bounced`` of a queue file, per
  recipient, with the remote reply and the SMTP stage it came at, and the
  DSN a bounce sent back (``sender non-delivery notification``);
* ``delivery``: a message stored in a local Maildir (Postfix's ``virtual``
  or Dovecot's LMTP);
* ``imap``/``pop3``: Dovecot logins.

Which experiment a line belongs to: smtpd logs the client's address and port
(``smtpd_client_port_logging = yes``), which the experiment's client tagged
with its trace id before it connected (:class:`sim.net.shared.ConnTags`);
the queue id then carries that id to every later line of the message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from sim.events import (
    Check,
    Delivered,
    EventData,
    ImapLoginLogged,
    Pop3LoginLogged,
    QueueBounced,
    QueueBounceSent,
    QueueDeferred,
    QueueDelivered,
    QueueWarning,
    ReplyJson,
    SmtpConnectLogged,
    SmtpRefusalLogged,
)
from sim.fastclass import dataclass

__all__ = ["LogEvent", "MailLogReader", "header_verdicts", "parse_reply"]

#: ``Mon DD HH:MM:SS host program[pid]: text`` (maillog_file and Dovecot's
#: log_path share the time stamp; Dovecot has no host name nor pid there).
_POSTFIX = re.compile(
    r"^\w{3} +\d+ [\d:]+ \S+ (?P<prog>postfix[\w/.-]*)/(?P<daemon>[\w-]+)"
    r"\[(?P<pid>\d+)\]: (?P<msg>.*)$"
)
_DOVECOT = re.compile(
    r"^\w{3} +\d+ [\d:]+ (?P<prog>[\w-]+(?:\([^)]*\))?)(?:<[^>]*>)*: \w+: (?P<msg>.*)$"
)
_CLIENT = re.compile(r"(?P<name>[^\s\[]*)\[(?P<ip>[\d.]+)\]:(?P<port>\d+)")
_QID = r"(?P<qid>[0-9A-F]{6,}|[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10,})"
_REJECT = re.compile(
    r"^(?:NOQUEUE|" + _QID + r"): (?P<what>reject|reject_warning|milter-reject): "
    r"(?P<cmd>[A-Z-]+) from (?P<client>\S+): (?:(?P<code>\d{3}) )?"
    r"(?:(?P<enh>\d\.\d{1,3}\.\d{1,3}) )?(?P<text>.*?); "
    r"(?P<rest>from=<[^>]*>.*)$"
)
_STATUS = re.compile(
    r"^" + _QID + r": to=<(?P<to>[^>]*)>,(?: orig_to=<[^>]*>,)? relay=(?P<relay>[^,]+), .*"
    r"dsn=(?P<dsn>[\d.]+), status=(?P<status>sent|deferred|bounced) \((?P<why>.*)\)$"
)
_CLIENT_LINE = re.compile(r"^" + _QID + r": client=(?P<client>\S+?)(?:,|$)")
_MESSAGE_ID = re.compile(r"^" + _QID + r": message-id=<?(?P<mid>[^>\s]*)>?$")
_NDR = re.compile(
    r"^" + _QID + r": sender (?P<kind>non-delivery|delay) notification: (?P<new>\S+)$"
)
#: qmgr gives up on a message older than maximal_queue_lifetime (no recipient named).
_EXPIRED = re.compile(r"^" + _QID + r": from=<[^>]*>, status=expired, returned to sender$")
_REPLY = re.compile(r"(?P<code>[2-5]\d\d)[ -](?:(?P<enh>[2-5]\.\d{1,3}\.\d{1,3}) )?(?P<text>.*)")
_IN_REPLY = re.compile(r"\(in reply to (?P<cmd>[A-Z ]+?) command\)")
#: postscreen(8), which answers port 25 before smtpd: the connection, the
#: DNSBL score that reached the threshold, the end of a session it kept.
_SCREEN_CONNECT = re.compile(r"^CONNECT from \[(?P<ip>[\d.]+)\]:(?P<port>\d+) to ")
_SCREEN_RANK = re.compile(r"^DNSBL rank (?P<rank>\d+) for \[(?P<ip>[\d.]+)\]:(?P<port>\d+)")
_SCREEN_END = re.compile(r"^DISCONNECT \[(?P<ip>[\d.]+)\]:(?P<port>\d+)")
_LOGIN = re.compile(r"^Login: user=<(?P<user>[^>]*)>.*rip=(?P<ip>[\d.]+).*rport=(?P<port>\d+)")

#: The SMTP stage of the command a remote reply answered (Postfix's "in reply
#: to X command"), as maillab's client names stages.
_STAGES = {
    "MAIL FROM": "mail",
    "RCPT TO": "rcpt",
    "DATA": "data",
    "end of DATA": "data",
    "EHLO": "helo",
    "HELO": "helo",
    "RCPT": "rcpt",
    "MAIL": "mail",
    "AUTH": "auth",
    "END-OF-MESSAGE": "data",
}

#: Which receiving check a reply text comes from (the restriction's words).
_CHECK_TEXTS = (
    ("cannot find your reverse hostname", "ptr", "fail"),
    ("cannot find your hostname", "fcrdns", "fail"),
    ("Helo command rejected", "helo", "fail"),
    ("blocked using", "dnsbl", "listed"),
    ("SPF fail", "spf", "fail"),
    ("Received-SPF: Fail", "spf", "fail"),
    ("rejected by DMARC policy", "dmarc", "fail"),
    ("Greylisted", "greylist", "deferred"),
    ("Relay access denied", "relay", "refused"),
    ("User unknown", "rcpt", "unknown"),
)


@dataclass(frozen=True)
class LogEvent:
    """What one log line means: a trace event to record (its data one of
    the classes of :mod:`sim.events`, as maillab's own services record)."""

    trace_id: str | None
    summary: str
    data: EventData

    @property
    def kind(self) -> str:
        return self.data.KIND


def parse_reply(text: str) -> ReplyJson | None:
    """``550 5.1.1 <x>: Recipient address rejected`` → maillab's reply dict."""
    match = _REPLY.search(text)
    if match is None:
        return None
    return {"code": int(match["code"]), "enhanced": match["enh"], "text": match["text"]}


def _host(relay: str) -> tuple[str, str]:
    """``mx.qq.example[203.0.113.25]:25`` → (name, address); ``none`` → ("none", "")."""
    match = _CLIENT.search(relay) or re.search(r"(?P<name>[^\s\[]*)\[(?P<ip>[\d.]+)\]", relay)
    if match is None:
        return relay, ""
    return match["name"], match["ip"]


Lookup = Callable[[str, int], "str | None"]


class MailLogReader:
    """Turns log lines into :class:`LogEvent` (state: which smtpd process and
    which queue id belong to which experiment)."""

    def __init__(
        self,
        lookup: Lookup,
        lookup_message: Callable[[str], str | None] | None = None,
        now: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.lookup = lookup
        self.now = now  # lab time, for what a log line does not say
        self.lookup_message = lookup_message or (lambda _: None)
        self.sessions: dict[str, str | None] = {}  # smtpd pid → trace id
        self.queue: dict[str, str | None] = {}  # queue id → trace id
        self.dsn: set[str] = set()  # queue ids of bounces (DSNs) Postfix sent
        #: Clients postscreen logged (address, port) → the DNSBL rank it
        #: found (0: none yet), until smtpd takes the client or it leaves.
        self.screened: dict[tuple[str, int], int] = {}
        #: queue id → recipient → its last deferral (reply, stage, remote MTA):
        #: what an expiry gives up on.
        self.deferred: dict[str, dict[str, tuple[ReplyJson, str | None, str | None]]] = {}

    def _client_trace(self, client: str) -> str | None:
        match = _CLIENT.search(client)
        if match is None:
            return None
        return self.lookup(match["ip"], int(match["port"]))

    def feed(self, line: str) -> Iterator[LogEvent]:
        line = line.rstrip("\n")
        match = _POSTFIX.match(line)
        if match is not None:
            yield from self._postfix(match["daemon"], match["pid"], match["msg"])
            return
        match = _DOVECOT.match(line)
        if match is not None:
            yield from self._dovecot(match["prog"], match["msg"])

    def _postscreen(self, msg: str) -> Iterator[LogEvent]:
        m = _SCREEN_CONNECT.match(msg)
        if m is not None:
            ip, port = m["ip"], int(m["port"])
            self.screened[ip, port] = 0
            client = f"[{ip}]:{port}"
            yield LogEvent(
                self.lookup(ip, port),
                f"postfix/postscreen: connection from {client}",
                SmtpConnectLogged(client=client, software="postfix"),
            )
            return
        m = _SCREEN_RANK.match(msg)
        if m is not None:
            self.screened[m["ip"], int(m["port"])] = int(m["rank"])
            return
        m = _SCREEN_END.match(msg)
        if m is not None:
            self.screened.pop((m["ip"], int(m["port"])), None)

    def _postfix(self, daemon: str, pid: str, msg: str) -> Iterator[LogEvent]:
        if daemon == "postscreen" and not msg.startswith("NOQUEUE"):
            yield from self._postscreen(msg)
            return
        if daemon == "smtpd" and msg.startswith("connect from "):
            trace = self.sessions[pid] = self._client_trace(msg)
            client = msg.removeprefix("connect from ")
            peer = _CLIENT.search(client)
            if (
                peer is not None
                and self.screened.pop((peer["ip"], int(peer["port"])), None) is not None
            ):
                return  # postscreen passed it on: its connection is logged already
            yield LogEvent(
                trace,
                f"postfix/{daemon}: connection from {client}",
                SmtpConnectLogged(client=client, software="postfix"),
            )
            return
        if daemon == "smtpd" and msg.startswith("disconnect from "):
            self.sessions.pop(pid, None)
            return
        m = _CLIENT_LINE.match(msg)
        if m is not None:
            trace = self.sessions.get(pid) or self._client_trace(m["client"])
            self.queue[m["qid"]] = trace
            return
        m = _MESSAGE_ID.match(msg)
        if m is not None:
            # A message another node's relay handed on: known by its Message-ID.
            if self.queue.get(m["qid"]) is None:
                self.queue[m["qid"]] = self.lookup_message(m["mid"])
            return
        m = _REJECT.match(msg)
        if m is not None:
            yield from self._reject(pid, m)
            return
        m = _EXPIRED.match(msg)
        if m is not None:
            yield from self._expired(m["qid"])
            return
        m = _NDR.match(msg)
        if m is not None:
            self.queue[m["new"]] = self.queue.get(m["qid"])
            self.dsn.add(m["new"])
            if m["kind"] == "delay":
                # delay_warning_time has passed (maillab: relay.warn_after):
                # a warning (RFC 3464 Action: delayed), not a bounce.
                yield LogEvent(
                    self.queue.get(m["qid"]),
                    f"postfix: {m['qid']}: delay warning sent to the sender as {m['new']}",
                    QueueWarning(
                        queue_id=m["qid"],
                        rcpts=list(self.deferred.get(m["qid"], {})),
                        dsn=m["new"],
                    ),
                )
                return
            yield LogEvent(
                self.queue.get(m["qid"]),
                f"postfix: {m['qid']}: bounce (DSN) sent to the sender as {m['new']}",
                QueueBounceSent(queue_id=m["qid"], dsn_queue_id=m["new"], software="postfix"),
            )
            return
        m = _STATUS.match(msg)
        if m is not None:
            yield from self._status(daemon, m)

    def _reject(self, pid: str, m: re.Match[str]) -> Iterator[LogEvent]:
        trace = self.sessions.get(pid)
        if trace is None:
            trace = self._client_trace(m["client"])
        if trace is None and m["qid"]:
            trace = self.queue.get(m["qid"])  # a milter's refusal, logged by cleanup
        enhanced = m["enh"]
        code = int(m["code"]) if m["code"] else (550 if (enhanced or "5").startswith("5") else 451)
        reply: ReplyJson = {"code": code, "enhanced": enhanced, "text": m["text"]}
        stage = _STAGES.get(m["cmd"], m["cmd"].lower())
        warn = m["what"] == "reject_warning"
        client = _CLIENT.search(m["client"])
        details: dict[str, object] = {}
        if client is not None and self.screened.get((client["ip"], int(client["port"]))):
            # postscreen's combined score (postscreen_dnsbl_sites weights).
            details["rank"] = self.screened[client["ip"], int(client["port"])]
        for text, check, result in _CHECK_TEXTS:
            if text in m["text"]:
                yield LogEvent(
                    trace,
                    f"postfix: {check} {result}: {m['text']}",
                    Check(
                        client=client["ip"] if client else m["client"],
                        check=check,
                        result=result,
                        action="warn" if warn else "reject",
                        configured=None,
                        stage=stage,
                        explanation=m["text"],
                        inputs={},
                        details=details,
                        reply=None if warn else reply,
                        software="postfix",
                    ),
                )
                break
        if not warn:
            yield LogEvent(
                trace,
                f"postfix: {m['cmd']} refused: {code} {enhanced or ''} {m['text']}",
                SmtpRefusalLogged(
                    stage=stage, code=code, enhanced=enhanced, text=m["text"], software="postfix"
                ),
            )

    def _status(self, daemon: str, m: re.Match[str]) -> Iterator[LogEvent]:
        qid, rcpt, status, why = m["qid"], m["to"], m["status"], m["why"]
        trace = self.queue.get(qid)
        said = why.partition(" said: ")[2] if " said: " in why else why
        reply = parse_reply(said)
        if reply is None and status == "sent":
            reply = {"code": 250, "enhanced": m["dsn"], "text": why}
        elif reply is None:
            code = 554 if m["dsn"].startswith("5") else 451
            reply = {"code": code, "enhanced": m["dsn"], "text": why}
        cmd = _IN_REPLY.search(why)
        reply["text"] = _IN_REPLY.sub("", reply["text"]).strip()
        # No "in reply to": no server reply to a command (connection refused,
        # timed out before the greeting): no SMTP stage, as maillab's relay
        # reports a failure without a remote reply.
        stage = _STAGES.get(cmd["cmd"], "data") if cmd else None
        local = daemon in ("virtual", "lmtp", "local")
        bounce = True if qid in self.dsn else None
        summary = f"postfix/{daemon}: {qid} to <{rcpt}>: status={status} ({why})"
        name, address = _host(m["relay"])
        open_rcpts = self.deferred.setdefault(qid, {})
        if status == "deferred":
            open_rcpts[rcpt] = (reply, stage, name if address else None)
        else:
            open_rcpts.pop(rcpt, None)
        if not open_rcpts:
            del self.deferred[qid]
        data: EventData
        if status == "sent":
            data = QueueDelivered(
                queue_id=qid,
                rcpt=rcpt,
                reply=reply,
                mx=name,
                address=address,
                software="postfix",
                bounce=bounce,
            )
        elif status == "deferred":
            data = QueueDeferred(
                queue_id=qid,
                rcpt=rcpt,
                reply=reply,
                # Postfix does not log when it tries again: "now" at the
                # earliest; the node reads the queue file's retry time
                # (sim.services.realmail: PostfixNode.when_retried).
                next_attempt=self.now(),
                remote_mta=name if address else None,
                stage=stage,
                software="postfix",
                bounce=bounce,
            )
        else:
            data = QueueBounced(
                queue_id=qid,
                rcpt=rcpt,
                reply=reply,
                reason="permanent",
                stage=stage,
                remote_mta=name if address else None,
                software="postfix",
                bounce=bounce,
            )
        yield LogEvent(trace, summary, data)
        if local and status == "sent":
            yield LogEvent(
                trace,
                f"postfix/{daemon}: stored for {rcpt} in INBOX, queued as {qid}",
                Delivered(
                    mailbox=rcpt,
                    user=rcpt.partition("@")[0],
                    folder="inbox",
                    message_id=None,
                    queue_id=None,
                    mx_queue_id=qid,
                    key="",
                    junk_by=[],
                    software="postfix",
                    bounce=bounce,
                ),
            )

    def _expired(self, qid: str) -> Iterator[LogEvent]:
        """The give-up time (maximal_queue_lifetime, RFC 5321 §4.5.4.1) has
        passed: each recipient still deferred is bounced, as maillab's
        relay reports ``give_up`` (Postfix logs the message, not them)."""
        for rcpt, (reply, stage, remote) in self.deferred.pop(qid, {}).items():
            yield LogEvent(
                self.queue.get(qid),
                f"postfix/qmgr: {qid} to <{rcpt}>: status=expired, returned to sender",
                QueueBounced(
                    queue_id=qid,
                    rcpt=rcpt,
                    reply=reply,
                    reason="give_up",
                    stage=stage,
                    remote_mta=remote,
                    software="postfix",
                    bounce=True if qid in self.dsn else None,
                ),
            )

    def _dovecot(self, prog: str, msg: str) -> Iterator[LogEvent]:
        m = _LOGIN.match(msg)
        if m is None:
            return
        login = Pop3LoginLogged if prog.startswith("pop3") else ImapLoginLogged
        yield LogEvent(
            self.lookup(m["ip"], int(m["port"])),
            f"dovecot {prog}: login as {m['user']}",
            login(user=m["user"], software="dovecot"),
        )


_AR_METHOD = re.compile(r"\b(?P<method>spf|dkim|dmarc)=(?P<result>[a-z]+)(?P<rest>[^;]*)")


def header_verdicts(head: str) -> list[tuple[str, str, str]]:
    """(check, result, text) from a stored message's header section: the
    Authentication-Results fields (RFC 8601) OpenDKIM and OpenDMARC add and
    the Received-SPF field (RFC 7208 §9.1) policyd-spf prepends. The first
    (topmost: added here) verdict of each method counts."""
    import email
    import email.policy

    message = email.message_from_string(head + "\n\n", policy=email.policy.compat32)
    found: dict[str, tuple[str, str]] = {}
    for value in message.get_all("Received-SPF", []):
        text = " ".join(str(value).split())
        found.setdefault("spf", (text.split(" ", 1)[0].lower(), text[:120]))
    for value in message.get_all("Authentication-Results", []):
        text = " ".join(str(value).split())
        for match in _AR_METHOD.finditer(text):
            found.setdefault(match["method"], (match["result"], f"{match.group(0).strip()}"[:120]))
    return [(check, result, text) for check, (result, text) in found.items()]
