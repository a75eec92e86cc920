"""Messages per second accepted by the lab MX with every check on (issue 3).

One client (``smtplib``, in a process of its own) sends the same small,
DKIM-signed message from alice@home.example to bob@qq.example, first ``--one`` messages
over one connection, then ``--each`` messages with a connection (EHLO, MAIL,
RCPT, DATA, QUIT) each, to three servers in the same run, on 127.0.0.1 only:

1. **the lab MX** of ``topologies/home-isp.yaml`` with every receiving check
   on (ptr, fcrdns, helo, dnsbl, spf, dkim, dmarc; the bench adds those the
   topology leaves out). The lab runs ``as_node="smtp-isp"``: a program on this
   machine speaks as the ISP's mail server (192.0.2.25, PTR smtp.home.example,
   named by home.example's SPF, key mail2026 for DKIM), so every message
   passes every check and is stored. The bench counts the stored messages and
   the ``check`` events of the lab trace, so a run that skipped a check shows;
2. **a plain aiosmtpd sink** that answers 250 and discards, on its own event
   loop thread: what aiosmtpd itself costs;
3. **Postfix**, when ``/usr/sbin/postfix`` exists and we are root: a private
   instance (its own configuration, queue and log in a temporary directory,
   ``default_transport = discard``), stopped at the end. The bench installs
   nothing: without Postfix it says so and goes on.

Every server is measured ``--rounds`` times (default 5); within a round the
three servers of one mode run back to back, so that a slow spell of the
machine (a shared VM's rates move by a third from one minute to the next)
hits all three rather than one. It prints, per server and mode, the run with
the median rate and every round's rate beside it, the ratios of the medians
MX/sink and MX/Postfix, MX/Postfix of each round and their median (the
target: the all-checks MX at least half of Postfix, judged on that median)
and the machine. It asserts nothing about speed.

The client runs in a process of its own (``bench.mxclient``), as swaks or a
sending MTA would: each server measured has its process (the lab MX and the
sink: the bench's, with its GIL) or processes (Postfix) to itself, and the
server CPU is that process's, the client's left out. Each measurement starts
after ``WARMUP`` messages on a first connection, so that Postfix has started
its smtpd and cleanup processes and Python has warmed its caches.

Run: ``python -m bench bench_mx`` or ``python -m bench.bench_mx --one 2000 --each 500
--rounds 5``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import sim
from sim.auth.dkim import sign
from sim.events import Check
from sim.services import checks as checks_registry
from sim.services.dkimkeys import ensure_keys
from sim.topology.model import CheckName, CheckPolicy, Topology
from sim.trace import TraceEvent

__all__ = [
    "ALL_CHECKS",
    "PrivatePostfix",
    "Run",
    "Sink",
    "all_checks",
    "bench_message",
    "main",
    "measure_mx",
    "measure_postfix",
    "measure_sink",
    "send_from_client",
    "send_messages",
]

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGY = ROOT / "topologies" / "home-isp.yaml"

#: The receiving checks the brief asks for (``tls`` is left out: the client
#: sends in clear, as Postfix's default smtpd lets it).
ALL_CHECKS: tuple[CheckName, ...] = ("ptr", "fcrdns", "helo", "dnsbl", "spf", "dkim", "dmarc")

MX_NODE = "mx-qq"
SENDER_NODE = "smtp-isp"  # who a real client on this machine speaks as
HELO = "smtp.home.example"
MAIL_FROM = "alice@home.example"
RCPT = "bob@qq.example"
DKIM_DOMAIN, DKIM_SELECTOR = "home.example", "mail2026"

ONE, EACH = 2000, 500
ROUNDS = 5
WARMUP = 20
POSTFIX = Path("/usr/sbin/postfix")
LOOPBACK = "127.0.0.1"

Mode = Literal["one", "each"]
MODES: dict[Mode, str] = {"one": "one connection", "each": "connection per message"}


@dataclass(frozen=True)
class Run:
    """One measurement: ``sent`` messages to ``server`` in ``mode``.

    ``kept`` is what the server shows it took: messages stored in the INBOX
    (lab MX; one filed as junk would be missing), counted by the handler
    (sink), discarded according to its log (Postfix). ``server_cpu``: CPU
    seconds the server used meanwhile (all its threads or processes; for the
    lab, the lab's DNS too), a figure a busy machine disturbs less than the
    rate; ``client_cpu`` the client process's. ``checks`` counts the MX's
    check events by (check, result).
    """

    server: str
    mode: Mode
    sent: int
    accepted: int
    seconds: float
    server_cpu: float | None = None
    kept: int | None = None
    checks: dict[tuple[str, str], int] = field(default_factory=dict)
    auth_results: str | None = None
    client_cpu: float | None = None
    #: Which round of the bench measured it.
    round: int = 0

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_ms(self) -> float | None:
        """Server CPU milliseconds per accepted message."""
        if self.server_cpu is None or not self.accepted:
            return None
        return 1000 * self.server_cpu / self.accepted

    @property
    def client_ms(self) -> float | None:
        """Client CPU milliseconds per accepted message."""
        if self.client_cpu is None or not self.accepted:
            return None
        return 1000 * self.client_cpu / self.accepted


@dataclass(frozen=True)
class Sent:
    """What a client saw: accepted messages and wall seconds; the CPU seconds
    the client used, and those of the bench's own process meanwhile (the
    server, when it runs here: the lab MX, the sink)."""

    accepted: int
    seconds: float
    client_cpu: float
    process_cpu: float


# --- the client -----------------------------------------------------------------------


def bench_message(private_pem: bytes | None = None) -> bytes:
    """A small message from alice to bob, DKIM-signed for home.example when a
    key is given (relaxed/relaxed over From, To, Subject, Date, Message-ID)."""
    text = (
        f"From: Alice <{MAIL_FROM}>\r\n"
        f"To: Bob <{RCPT}>\r\n"
        "Subject: maillab throughput bench\r\n"
        "Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n"
        "Message-ID: <bench@home.example>\r\n"
        "\r\n" + "A line of text to make the body look like mail.\r\n" * 8
    ).encode("ascii")
    if private_pem is None:
        return text
    return sign(text, DKIM_DOMAIN, DKIM_SELECTOR, private_pem)


def _numbered(template: bytes, i: int) -> bytes:
    # An unsigned header before the signature: each message differs, the
    # signature still verifies (RFC 6376 §5.4: only the fields in h= count).
    return b"X-Bench-Seq: %d\r\n" % i + template


def _send_one(client: smtplib.SMTP, message: bytes) -> int:
    try:
        refused = client.sendmail(MAIL_FROM, [RCPT], message)
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError):
        client.rset()
        return 0
    return 0 if refused else 1


def send_messages(
    host: str, port: int, count: int, mode: Mode, template: bytes, *, first: int = 0
) -> Sent:
    """Send ``count`` messages from this thread. ``mode`` "one": one
    connection for all; "each": connect, EHLO, send, QUIT per message."""
    accepted = 0
    cpu, thread_cpu = time.process_time(), time.thread_time()
    start = time.perf_counter()
    if mode == "one":
        # local_hostname: smtplib would otherwise ask the host's resolver (getfqdn).
        with smtplib.SMTP(host, port, local_hostname=HELO, timeout=60) as client:
            for i in range(first, first + count):
                accepted += _send_one(client, _numbered(template, i))
    else:
        for i in range(first, first + count):
            with smtplib.SMTP(host, port, local_hostname=HELO, timeout=60) as client:
                accepted += _send_one(client, _numbered(template, i))
    seconds = time.perf_counter() - start
    return Sent(accepted, seconds, time.thread_time() - thread_cpu, time.process_time() - cpu)


def send_from_client(
    host: str, port: int, count: int, mode: Mode, template: bytes, *, first: int = 0
) -> Sent:
    """:func:`send_messages` in a client process of its own (``python -m
    bench.mxclient``), as a real client is: every server measured here then
    has its process, or processes, to itself. ``process_cpu`` is this
    process's CPU while the client ran: the lab MX's or the sink's."""
    with tempfile.TemporaryDirectory(prefix="mxbench-client-") as tmp:
        message = Path(tmp) / "message.eml"
        message.write_bytes(template)
        command = [sys.executable, "-m", "bench.mxclient", host, str(port), str(count), mode]
        command += [str(message), str(first)]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        cpu = time.process_time()
        out = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
        )
        here = time.process_time() - cpu
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the bench client failed: {last}")
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return Sent(int(got["accepted"]), float(got["seconds"]), float(got["client_cpu"]), here)


def _timed(host: str, port: int, count: int, mode: Mode, template: bytes, warmup: int) -> Sent:
    if warmup:
        send_from_client(host, port, warmup, "one", template, first=-warmup)
    return send_from_client(host, port, count, mode, template)


# --- 1. the lab MX ----------------------------------------------------------------------


def all_checks(topology: Topology, node: str = MX_NODE) -> Topology:
    """``topology`` with every check of :data:`ALL_CHECKS` on at ``node``'s MX:
    the actions the topology gives, the usual ones for checks it lacks."""
    mx = topology.node(node).services.mx
    if mx is None:
        raise ValueError(f"{node} runs no mx service")
    given = {p.check: p.action for p in mx.checks}
    defaults = checks_registry.default_actions()
    checks = tuple(CheckPolicy(c, given.get(c, defaults[c])) for c in ALL_CHECKS)  # type: ignore[arg-type]
    extra = tuple(p for p in mx.checks if p.check not in ALL_CHECKS)
    nodes = tuple(
        replace(n, services=replace(n.services, mx=replace(mx, checks=checks + extra)))
        if n.name == node
        else n
        for n in topology.nodes
    )
    return replace(topology, nodes=nodes)


def _mx_endpoint(lab: sim.Lab) -> tuple[str, int]:
    for ep in lab.endpoints():
        if ep.node == MX_NODE and ep.service == "mx" and ep.proto == "tcp" and ep.local:
            host, _, port = ep.local.rpartition(":")
            return host, int(port)
    raise RuntimeError(f"{MX_NODE}'s MX is not reachable from {SENDER_NODE}")


def measure_mx(count: int, mode: Mode, *, path: Path = TOPOLOGY, warmup: int = WARMUP) -> Run:
    """The lab MX with every check on: start a lab, send, count what it stored."""
    topology = all_checks(sim.load_topology(path))
    with tempfile.TemporaryDirectory(prefix="mxbench-lab-") as state:
        # The relay's key, made now in the lab's state directory (the lab
        # publishes it at start): the bench signs as smtp-isp's relay would.
        pair = ensure_keys(topology, Path(state))[(DKIM_DOMAIN, DKIM_SELECTOR)]
        template = bench_message(pair.private_pem)
        with sim.start(topology, state_dir=state, as_node=SENDER_NODE) as lab:
            host, port = _mx_endpoint(lab)
            if warmup:
                send_from_client(host, port, warmup, "one", template, first=-warmup)
            checks: Counter[tuple[str, str]] = Counter()

            def tally(trace_id: str | None, event: TraceEvent) -> None:
                check = event.as_(Check)
                if check is not None and event.node == MX_NODE:
                    checks[(check.check, check.result)] += 1

            # The lab-wide log keeps only the latest events: count as they come.
            hub = lab.backend.hub  # type: ignore[attr-defined]
            hub.subscribe(tally)
            try:
                sent = send_from_client(host, port, count, mode, template)
            finally:
                hub.unsubscribe(tally)
            inbox = lab.mailbox(RCPT)
    a_r = inbox[-1].header("Authentication-Results") if inbox else []
    return Run(
        server="lab MX, all checks",
        mode=mode,
        sent=count,
        accepted=sent.accepted,
        seconds=sent.seconds,
        server_cpu=sent.process_cpu,
        client_cpu=sent.client_cpu,
        kept=len(inbox) - warmup,
        checks=dict(checks),
        auth_results=" ".join(" ".join(a_r).split()) or None,
    )


# --- 2. a plain aiosmtpd sink -------------------------------------------------------------


class _Discard:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        return "250 OK"


class Sink:
    """aiosmtpd answering 250 to everything, on its own event loop thread."""

    def __init__(self) -> None:
        self.handler = _Discard()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="bench-sink", daemon=True
        )
        self._server: asyncio.Server | None = None

    def __enter__(self) -> Sink:
        from aiosmtpd.smtp import SMTP

        self._thread.start()

        async def serve() -> asyncio.Server:
            # hostname given: aiosmtpd would otherwise call socket.getfqdn().
            return await self._loop.create_server(
                lambda: SMTP(self.handler, hostname="sink.bench.test"), LOOPBACK, 0
            )

        self._server = asyncio.run_coroutine_threadsafe(serve(), self._loop).result(10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._server.wait_closed(), 5)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def measure_sink(count: int, mode: Mode, template: bytes, *, warmup: int = WARMUP) -> Run:
    with Sink() as sink:
        sent = _timed(LOOPBACK, sink.port, count, mode, template, warmup)
        kept = sink.handler.count - warmup
    return Run(
        "aiosmtpd sink",
        mode,
        count,
        sent.accepted,
        sent.seconds,
        server_cpu=sent.process_cpu,
        client_cpu=sent.client_cpu,
        kept=kept,
    )


# --- 3. Postfix ------------------------------------------------------------------------------


def postfix_missing() -> str | None:
    """Why Postfix cannot be measured here, or None."""
    if not POSTFIX.exists():
        return f"{POSTFIX} is missing (apt-get install postfix)"
    if os.geteuid() != 0:
        return "a private Postfix instance needs root"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    """Running (a zombie has already exited: it only waits to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            out.append(int(entry.name))
    return out


class PrivatePostfix:
    """A Postfix instance of our own: configuration, queue, data and log in a
    temporary directory, smtpd on 127.0.0.1 at a free port, every message
    discarded after it was queued. Stopped (and checked gone) at exit."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mxbench-postfix-"))
        self.conf = self.root / "conf"
        self.log = self.root / "postfix.log"
        self.port = _free_port()
        self.master: int | None = None
        self.version = ""

    def _postconf(self, *args: str) -> None:
        subprocess.run(
            ["postconf", "-c", str(self.conf), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def __enter__(self) -> PrivatePostfix:
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        self.root.chmod(0o755)  # Postfix's daemons run as user postfix
        self.conf.mkdir()
        # Postfix's built-in defaults plus the settings below, nothing of the
        # system's own main.cf (Debian's "No configuration" install has none).
        (self.conf / "main.cf").write_text("compatibility_level = 3.6\n")
        shutil.copy(Path("/etc/postfix") / "master.cf", self.conf / "master.cf")
        (self.root / "queue").mkdir(mode=0o755)  # post-install makes the rest
        self._postconf(
            "-e",
            f"queue_directory = {self.root / 'queue'}",
            f"data_directory = {self.root / 'data'}",
            "meta_directory = /etc/postfix",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "myhostname = postfix.bench.test",
            "mydomain = bench.test",
            "mydestination =",
            "relay_domains = qq.example",
            "mynetworks = 127.0.0.0/8",
            "relayhost =",
            "default_transport = discard",
            "relay_transport = discard",
            "content_filter =",
            "smtpd_milters =",
            "non_smtpd_milters =",
            "alias_maps =",
            "alias_database =",
            "smtpd_tls_security_level = none",
            "smtpd_sasl_auth_enable = no",
            # No reverse lookup of 127.0.0.1 through the host's resolver.
            "smtpd_peername_lookup = no",
            f"maillog_file = {self.log}",
            f"maillog_file_prefixes = {self.root}",
            "syslog_name = postfix-maillab-bench",
        )
        self._postconf("-M#", "smtp/inet")
        where = f"{LOOPBACK}:{self.port}"
        self._postconf("-Me", f"{where}/inet = {where} inet n - n - - smtpd")
        self._postconf("-F", "*/*/chroot = n")  # no chroot to populate
        self.version = subprocess.run(
            ["postconf", "-c", str(self.conf), "-h", "mail_version"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        out = subprocess.run(
            ["postfix", "-c", str(self.conf), "start"], capture_output=True, text=True, timeout=60
        )
        if out.returncode != 0:
            raise RuntimeError(f"postfix start failed: {(out.stderr or out.stdout).strip()}")
        self.master = int((self.root / "queue" / "pid" / "master.pid").read_text().strip())
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=2) as s:
                    if s.recv(512).startswith(b"220"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"postfix does not answer on {LOOPBACK}:{self.port}")
            time.sleep(0.1)

    def discarded(self) -> int:
        """Messages the discard transport took, from the instance's log."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return 0
        return sum(1 for line in text.splitlines() if "/discard[" in line and "status=sent" in line)

    def wait_discarded(self, total: int, timeout: float = 10.0) -> int:
        """Wait until the log shows ``total`` messages discarded; the count."""
        deadline = time.monotonic() + timeout
        while (done := self.discarded()) < total and time.monotonic() < deadline:
            time.sleep(0.05)
        return done

    def cpu(self) -> float:
        """CPU seconds of the instance so far: the master and its living
        children, plus the children it has reaped (cutime, cstime)."""
        if self.master is None:
            return 0.0
        ticks = 0
        for pid in (self.master, *_children(self.master)):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            # proc(5): utime, stime, cutime, cstime are fields 14-17.
            ticks += sum(int(f) for f in fields[11:15])
        return ticks / os.sysconf("SC_CLK_TCK")

    def __exit__(self, *exc: object) -> None:
        leftovers: list[int] = []
        try:
            if self.master is not None:
                processes = [self.master, *_children(self.master)]
                subprocess.run(
                    ["postfix", "-c", str(self.conf), "stop"],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                deadline = time.monotonic() + 15
                while any(_alive(p) for p in processes) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if _alive(self.master):
                    # Ours, by its pid: the master takes its children with it.
                    os.kill(self.master, signal.SIGKILL)
                    time.sleep(0.5)
                leftovers = [p for p in processes if _alive(p)]
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
        if leftovers:
            print(f"warning: postfix processes still running after stop: {leftovers}")


def measure_postfix(
    postfix: PrivatePostfix, count: int, mode: Mode, template: bytes, *, warmup: int = WARMUP
) -> Run:
    if warmup:
        start = postfix.discarded()
        warm = send_from_client(LOOPBACK, postfix.port, warmup, "one", template, first=-warmup)
        postfix.wait_discarded(start + warm.accepted)
    before = postfix.discarded()
    cpu = postfix.cpu()
    sent = send_from_client(LOOPBACK, postfix.port, count, mode, template)
    # The discard transport runs after the 250: its work counts too.
    kept = postfix.wait_discarded(before + sent.accepted) - before
    return Run(
        f"Postfix {postfix.version} (discard)",
        mode,
        count,
        sent.accepted,
        sent.seconds,
        server_cpu=postfix.cpu() - cpu,
        client_cpu=sent.client_cpu,
        kept=kept,
    )


# --- the report ------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}, aiosmtpd {version('aiosmtpd')}"
    )


def _ratio(a: Run | None, b: Run | None) -> str:
    if a is None or b is None or b.rate == 0:
        return "-"
    return f"{a.rate / b.rate:.2f}"


def _key(run: Run) -> tuple[str, Mode]:
    return run.server.split(" ")[0], run.mode


def medians(runs: list[Run]) -> list[Run]:
    """Per server and mode, the run with the median rate (the lower middle
    one of an even count), in the order the servers were first measured."""
    groups: dict[tuple[str, Mode], list[Run]] = {}
    for run in runs:
        groups.setdefault(_key(run), []).append(run)
    out = []
    for group in groups.values():
        ranked = sorted(group, key=lambda r: r.rate)
        out.append(ranked[(len(ranked) - 1) // 2])
    return out


def _paired_ratios(runs: list[Run], mode: Mode) -> list[float]:
    """MX / Postfix of each round in ``mode``."""
    out = []
    for number in sorted({r.round for r in runs}):
        mx = [r for r in runs if r.round == number and _key(r) == ("lab", mode)]
        pf = [r for r in runs if r.round == number and _key(r) == ("Postfix", mode)]
        if mx and pf and pf[0].rate > 0:
            out.append(mx[0].rate / pf[0].rate)
    return out


def report(runs: list[Run]) -> None:
    """The median run of each server and mode, every round's rate beside it,
    and the ratios of the medians."""
    rounds: dict[tuple[str, Mode], list[str]] = {}
    for run in runs:
        rounds.setdefault(_key(run), []).append(f"{run.rate:.0f}")
    print(
        f"{'server':<28} {'mode':<24} {'sent':>6} {'accepted':>9} {'kept':>6} "
        f"{'msg/s':>7} {'server CPU ms/msg':>18} {'client CPU ms/msg':>18}  msg/s each round"
    )
    chosen = medians(runs)
    for r in chosen:
        kept = "-" if r.kept is None else str(r.kept)
        cpu = "-" if r.cpu_ms is None else f"{r.cpu_ms:.2f}"
        client = "-" if r.client_ms is None else f"{r.client_ms:.2f}"
        print(
            f"{r.server:<28} {MODES[r.mode]:<24} {r.sent:>6} {r.accepted:>9} {kept:>6} "
            f"{r.rate:>7.0f} {cpu:>18} {client:>18}  {' '.join(rounds[_key(r)])}"
        )
    print()
    by = {_key(r): r for r in chosen}
    print(f"{'ratio of the medians':<28} {MODES['one']:<24} {MODES['each']}")
    for name, other in (("MX / sink", "aiosmtpd"), ("MX / Postfix", "Postfix")):
        one = _ratio(by.get(("lab", "one")), by.get((other, "one")))
        each = _ratio(by.get(("lab", "each")), by.get((other, "each")))
        print(f"{name:<28} {one:<24} {each}")
    paired = {mode: _paired_ratios(runs, mode) for mode in MODES}
    if all(paired.values()):
        for mode in MODES:
            shown = " ".join(f"{x:.2f}" for x in paired[mode])
            print(f"{'MX / Postfix each round':<28} {MODES[mode]:<24} {shown}")
        medians_of = {m: statistics.median(paired[m]) for m in MODES}
        print(f"{'median of the rounds':<28} {medians_of['one']:<24.2f} {medians_of['each']:.2f}")
        met = all(value >= 0.5 for value in medians_of.values())
        print(
            "target MX / Postfix >= 0.50 in both modes (median of the rounds, each "
            f"round's servers measured back to back): {'met' if met else 'NOT met'}"
        )
    for mode in MODES:
        last = [r for r in runs if r.checks and r.mode == mode][-1:]
        for r in last:
            seen = ", ".join(f"{c}={res} x{n}" for (c, res), n in sorted(r.checks.items()))
            print(f"MX checks in the trace ({MODES[mode]}, last round): {seen}")
    mx = next((r for r in runs if r.auth_results), None)
    if mx is not None:
        print(f"Authentication-Results of a stored message: {mx.auth_results}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_mx", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument("--one", type=int, default=ONE, help="messages over one connection")
    parser.add_argument("--each", type=int, default=EACH, help="messages with a connection each")
    parser.add_argument("--no-postfix", action="store_true", help="skip Postfix")
    parser.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help="measure every server this many times, in turn; report the medians",
    )
    # `python -m bench bench_mx` calls main() with the runner's own argv: ignore it.
    args = parser.parse_args(argv if argv is not None else [])
    counts: dict[Mode, int] = {"one": args.one, "each": args.each}
    print("# MX throughput: messages/s accepted, one smtplib client process on 127.0.0.1")
    print(f"machine: {machine()}")
    print(f"load average before: {_load()}")
    with tempfile.TemporaryDirectory(prefix="mxbench-key-") as keys:
        pair = ensure_keys(all_checks(sim.load_topology(TOPOLOGY)), Path(keys))
        template = bench_message(pair[(DKIM_DOMAIN, DKIM_SELECTOR)].private_pem)
    missing = "skipped (--no-postfix)" if args.no_postfix else postfix_missing()
    if missing is not None:
        print(f"Postfix: not measured: {missing}")
    runs: list[Run] = []
    with contextlib.ExitStack() as stack:
        postfix = stack.enter_context(PrivatePostfix()) if missing is None else None
        # Rounds in turn, so that a slow spell of the machine hits every
        # server alike rather than one of them.
        for number in range(max(1, args.rounds)):
            # The three servers of one mode back to back: their ratio is
            # taken from measurements a minute apart at most.
            for mode, n in counts.items():
                measured = [measure_mx(n, mode), measure_sink(n, mode, template)]
                if postfix is not None:
                    measured.append(measure_postfix(postfix, n, mode, template))
                runs += [replace(r, round=number) for r in measured]
    report(runs)
    print(f"load average after: {_load()} (other work on the machine disturbs the rates)")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main(sys.argv[1:])
