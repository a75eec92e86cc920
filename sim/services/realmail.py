"""Postfix and Dovecot as a node's services (the mininet backend only).

The services run inside the node's agent, which lives in the node's network
and mount namespaces. Each starts a private instance of the real daemon:

* its files live under the lab's state directory
  (``STATE/NODE/postfix/{etc,spool,lib}``, ``STATE/NODE/dovecot/{etc,lib}``,
  the Maildirs in ``STATE/NODE/mail``) and are **bind-mounted** over
  Debian's paths (/etc/postfix, /var/spool/postfix, /var/lib/postfix,
  /etc/dovecot, /var/lib/dovecot, /var/mail) in the node's *private* mount
  namespace, as the node's /etc/resolv.conf already is. So the daemons
  (which drop privileges to users ``postfix``, ``mail``, ``dovenull`` and
  could not enter the state directory, mode 0700) find their files where
  they always do, read the lab resolver from /etc/resolv.conf, and
  ``postconf`` typed in the lab shell shows the node's configuration. The
  machine's own /etc/postfix and /etc/dovecot are neither read nor changed:
  the mounts exist only in the node's namespace and end with it.
* the daemon is started in the foreground (``master -d``, ``dovecot -F``)
  as a child of the agent, stopped by its pid (SIGTERM, then SIGKILL);
  whatever survives a crash lies in the lab's namespaces, which
  ``maillab clean`` empties.
* its log (``maillog_file``, ``log_path``) is read as it grows and turned
  into trace events (:mod:`sim.services.maillog`).
* Postfix and postgrey run on lab time (libfaketime, :mod:`sim.services.labtime`):
  their durations are the topology's, in lab seconds, and after the lab
  clock jumps (``lab.advance``) qmgr is told to look at its deferred queue
  at once (``postkick public qmgr D``), as maillab's relay wakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, ClassVar

from sim.errors import ServiceError
from sim.events import Check, Delivered, QueueDeferred
from sim.net.api import Endpoint
from sim.services.base import NodeContext, Service
from sim.services.dovecotconf import DOVECOT_LOG, dovecot_config
from sim.services.labtime import TIME_DIR, LabTime
from sim.services.maildir import mail_root
from sim.services.maillog import LogEvent, MailLogReader, header_verdicts
from sim.services.postfixconf import (
    MAILLOG,
    POSTGREY,
    PostfixConfig,
    Setting,
    greylist_delay,
    postfix_config,
)
from sim.topology.validate import dovecot_setting_problem

__all__ = ["DovecotNode", "PostfixNode", "private_namespace"]

#: Real seconds a daemon may take to listen.
START_TIMEOUT = 30.0
#: How often (real seconds) the log is read again.
LOG_POLL = 0.02
#: The source shown beside a main.cf line postfix_set changed.
POSTFIX_SET_SOURCE = "postfix_set (changed while the lab runs)"
#: Real seconds to wait for a deferred message's queue file (its mtime is
#: when Postfix tries again) after the deferral is logged.
DEFERRED_WAIT = 1.0
#: The source name of the node's private /dev/shm (labtime's shared start).
_SHM_SOURCE = "maillab-shm"


def private_namespace() -> bool:
    """True when this process has a mount namespace of its own (not the
    machine's): bind mounts made here then stay in the node."""
    try:
        mine = os.readlink("/proc/self/ns/mnt")
        # The agent's parent (the fork server, or the driver) is in the
        # machine's namespace.
        if mine == os.readlink(f"/proc/{os.getppid()}/ns/mnt"):
            return False
    except OSError:
        return False
    with contextlib.suppress(OSError):  # pid 1's may be unreadable in a container
        if mine == os.readlink("/proc/1/ns/mnt"):
            return False
    return True


def _run(argv: list[str], what: str) -> str:
    need(argv[0])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        text = " ".join((done.stderr or done.stdout).split())
        raise ServiceError(f"{what}: {' '.join(argv)} failed: {text[-300:]}")
    return done.stdout


def _mounted(target: str) -> bool:
    with open("/proc/self/mountinfo") as info:
        return any(line.split()[4] == target for line in info)


def bind(source: Path, target: str) -> None:
    """``source`` over ``target`` in this node's mount namespace only."""
    if not private_namespace():
        raise ServiceError(
            f"refusing to mount {source} over {target}: not in a node's private mount namespace"
        )
    if not _mounted(target):
        _run(["mount", "--bind", str(source), target], "mount")


def _tmpfs_mounted(target: str, source: str) -> bool:
    with open("/proc/self/mountinfo") as info:
        for line in info:
            fields = line.split()
            tail = fields[fields.index("-") + 1 :]
            if fields[4] == target and tail[:2] == ["tmpfs", source]:
                return True
    return False


def private_tmpfs(target: str, source: str = _SHM_SOURCE) -> None:
    """A small tmpfs over ``target`` in this node's mount namespace only
    (gone with the namespace: nothing of it is left on the machine)."""
    if not private_namespace():
        raise ServiceError(
            f"refusing to mount a tmpfs over {target}: not in a node's private mount namespace"
        )
    if not _tmpfs_mounted(target, source):
        _run(
            ["mount", "-t", "tmpfs", "-o", "mode=1777,size=1m,nosuid,nodev", source, target],
            "mount",
        )


def _wait_listening(address: str, port: int, deadline: float) -> None:
    while True:
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise ServiceError(f"nothing listens on {address}:{port}") from None
            time.sleep(0.05)


#: Program → the Debian package that brings it (scripts/system-setup.sh).
PACKAGES = {
    "postfix": "postfix",
    "postconf": "postfix",
    "postkick": "postfix",
    "postqueue": "postfix",
    "dovecot": "dovecot-core",
    "doveconf": "dovecot-core",
    "doveadm": "dovecot-core",
    "opendkim": "opendkim",
    "opendmarc": "opendmarc",
    "postgrey": "postgrey",
    "policyd-spf": "postfix-policyd-spf-python",
}


def need(program: str) -> None:
    """One line naming the Debian package when ``program`` is missing."""
    if os.path.isabs(program):
        found = os.access(program, os.X_OK)
    else:
        found = shutil.which(program, path="/usr/sbin:/usr/bin:/sbin:/bin") is not None
    if not found:
        package = PACKAGES.get(os.path.basename(program), "its Debian package")
        raise ServiceError(
            f"{program} is not installed (Debian package {package}: `make system` installs it)"
        )


def _read_from(path: Path, offset: int) -> tuple[str, int]:
    with open(path, errors="replace") as log:
        log.seek(offset)
        return log.read(), log.tell()


def _set(key: str, value: str) -> None:
    """``postconf -e KEY = VALUE`` in the node's main.cf, checked by Postfix
    itself: a name ``postconf -d`` does not know is refused, and the value
    read back must be the one given; then ``postfix reload``."""
    if not re.fullmatch(r"[a-z0-9_]+", key):
        raise ServiceError(f"{key!r} is not a main.cf parameter name")
    known = subprocess.run(
        ["postconf", "-d", key], capture_output=True, text=True, timeout=30, check=False
    )
    if known.returncode != 0 or "unknown parameter" in known.stderr or not known.stdout:
        raise ServiceError(f"{key}: Postfix has no such parameter (postconf -d {key})")
    if "\n" in value:
        raise ServiceError(f"{key}: a main.cf value is one line")
    _run(["postconf", "-e", f"{key} = {value}"], "postconf -e")
    now = _run(["postconf", "-h", key], "postconf -h").strip()
    if now != value.strip():
        raise ServiceError(f"{key}: postconf reads back {now!r}, not {value!r}")
    _run(["postfix", "reload"], "postfix reload")


def _deferred_mtime(queue_id: str) -> float | None:
    """The mtime of a message's file in Postfix's deferred queue (hashed
    one level deep, or not): when qmgr tries it again, on Postfix's clock."""
    spool = "/var/spool/postfix/deferred"
    for path in [*glob.glob(f"{spool}/*/{queue_id}"), f"{spool}/{queue_id}"]:
        with contextlib.suppress(OSError):
            return os.stat(path).st_mtime
    return None


def _chown(path: Path, user: str) -> None:
    shutil.chown(path, user, user)


class _Daemon(Service):
    """A real daemon's process and log, shared by Postfix and Dovecot."""

    log_file: ClassVar[str]
    #: Where the daemon reads its configuration (in the node's namespace).
    etc_dir: ClassVar[str]

    def __init__(self, ctx: NodeContext) -> None:
        super().__init__(ctx)
        self.address = ctx.network.address_of(ctx.node.name)
        self.proc: subprocess.Popen[bytes] | None = None
        #: Helpers started beside the daemon (OpenDKIM, OpenDMARC).
        self.helpers: list[subprocess.Popen[bytes]] = []
        self.config: PostfixConfig | None = None
        self._tail: asyncio.Task[None] | None = None
        #: PostfixNode's watch on the lab clock (kicks qmgr after an advance).
        self._clock_task: asyncio.Task[None] | None = None
        self.reader = MailLogReader(ctx.net.trace_of, ctx.net.trace_of_message, ctx.clock.now)

    @property
    def base(self) -> Path:
        return self.ctx.state_dir / self.ctx.node.name / self.kind

    def mail_dir(self) -> Path:
        root = mail_root(self.ctx.state_dir, self.ctx.node.name)
        root.mkdir(parents=True, exist_ok=True)
        _chown(root, "mail")
        for user in root.iterdir():
            if user.is_dir():
                for path in (user, *user.rglob("*")):
                    _chown(path, "mail")
        return root

    def certificate(self) -> tuple[str, str]:
        services = self.ctx.node.services
        names = [
            name
            for name in (
                services.mx.hostname if services.mx else None,
                services.submission.hostname if services.submission else None,
                services.relay.hostname if services.relay else None,
            )
            if name
        ] or [f"{self.ctx.node.name}.lab.test"]
        cert, key = self.ctx.ca.issue(list(dict.fromkeys(names)))
        return str(cert), str(key)

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """``argv`` as a child of the agent; ``env``: variables added to the
        agent's (libfaketime's, for the daemons on lab time)."""
        need(argv[0])
        out = open(self.base / "daemon.out", "ab")  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd="/",
                env={**os.environ, **env} if env else None,
            )
        finally:
            out.close()
        return proc

    def follow_log(self, path: Path) -> None:
        path.touch(exist_ok=True)
        self._tail = asyncio.get_running_loop().create_task(self._follow(path))

    async def _follow(self, path: Path) -> None:
        loop = asyncio.get_running_loop()
        offset = path.stat().st_size  # noqa: ASYNC240  (once, at start)
        pending = ""
        while True:
            await asyncio.sleep(LOG_POLL)
            try:
                chunk, offset = await loop.run_in_executor(None, _read_from, path, offset)
            except OSError:
                continue
            pending += chunk
            *lines, pending = pending.split("\n")
            for line in lines:
                for event in self.reader.feed(line):
                    if isinstance(event.data, QueueDeferred):
                        event = await loop.run_in_executor(None, self.when_retried, event)
                    self.ctx.record(event.trace_id, event.data, event.summary)
                    self.after_event(event)

    async def stop(self) -> None:
        for task in (self._tail, self._clock_task):
            if task is None:
                continue
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for proc in (self.proc, *self.helpers):
            if proc is None or proc.poll() is not None:
                continue
            # Ours, by its pid: the master stops its children itself.
            proc.send_signal(signal.SIGTERM)
            loop = asyncio.get_running_loop()
            try:
                await asyncio.wait_for(loop.run_in_executor(None, proc.wait), 10)
            except TimeoutError:
                proc.kill()
                await loop.run_in_executor(None, proc.wait)

    def after_event(self, event: LogEvent) -> None:
        """Follow-up of one event (PostfixNode reads a stored message's verdicts)."""
        return None

    def when_retried(self, event: LogEvent) -> LogEvent:
        """A deferral with the time of the next attempt (PostfixNode)."""
        return event

    def shown(self) -> dict[str, Any]:
        """The generated files and, per line, the topology field behind it."""
        conf = self.config
        if conf is None:
            return {"files": {}, "settings": []}
        # The same shape as `maillab realconfig` (sim/realcmd.py).
        return {
            "node": self.ctx.node.name,
            "files": {f"{self.etc_dir}/{name}": text for name, text in self.files(conf).items()},
            "settings": [s.to_json() for s in (*conf.main, *conf.master)],
        }

    def files(self, conf: PostfixConfig) -> dict[str, str]:
        return conf.files()


class PostfixNode(_Daemon):
    """The node's mx, submission and relay, run by a private Postfix."""

    kind = "postfix"
    log_file = MAILLOG
    etc_dir = "/etc/postfix"
    #: Lab time for the master and postgrey (set as Postfix starts).
    labtime: LabTime | None = None
    env: dict[str, str] | None = None

    async def start(self) -> list[Endpoint]:
        return await asyncio.get_running_loop().run_in_executor(None, self._start)

    def _start(self) -> list[Endpoint]:
        node = self.ctx.node
        services = node.services
        need("postfix")  # before anything is mounted over its directories
        cert, key = self.certificate()
        addresses = {n.name: n.ip.ip for n in self.ctx.topology.hosts() if n.ip is not None}
        conf = self.config = postfix_config(
            self.ctx.topology,
            node,
            self.address,
            dovecot=services.dovecot is not None,
            ca_file=str(self.ctx.ca.cert_path),
            cert_file=cert,
            key_file=key,
            node_addresses=addresses,
        )
        if services.submission is not None and services.dovecot is None:
            raise ServiceError(
                f"{node.name}: Postfix's submission service checks passwords through "
                "Dovecot: add `dovecot: {}` to the node"
            )
        etc, spool, lib = (self.base / d for d in ("etc", "spool", "lib"))
        for directory in (etc, spool, lib, lib / "time"):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o755)
        _chown(lib, "postfix")
        # Lab time before anything starts (one line if libfaketime is missing).
        self.labtime = LabTime(self.ctx.clock)
        for name, text in conf.files().items():
            (etc / name).parent.mkdir(parents=True, exist_ok=True)
            (etc / name).write_text(text)
        # What post-install needs beside main.cf and master.cf (Debian's files).
        for extra in ("postfix-files", "postfix-script", "post-install", "dynamicmaps.cf"):
            if not (etc / extra).exists() and Path("/etc/postfix", extra).exists():
                shutil.copy2(Path("/etc/postfix", extra), etc / extra)
        (etc / "postfix-files.d").mkdir(exist_ok=True)
        (etc / "dynamicmaps.cf.d").mkdir(exist_ok=True)
        mail = self.mail_dir()
        bind(etc, "/etc/postfix")
        bind(spool, "/var/spool/postfix")
        bind(lib, "/var/lib/postfix")
        bind(mail, "/var/mail")
        self.env = self.lab_time()
        Path(MAILLOG).touch()
        _chown(Path(MAILLOG), "postfix")
        _run(["postfix", "check"], f"{node.name}: postfix")
        daemon_dir = _run(["postconf", "-h", "daemon_directory"], "postconf").strip()
        self.start_milters(conf, etc)
        # On lab time; main.cf's import_environment passes libfaketime's
        # variables from the master to every daemon it starts.
        self.proc = self.spawn([f"{daemon_dir}/master", "-d"], self.env)
        deadline = time.monotonic() + START_TIMEOUT
        endpoints: list[Endpoint] = []
        ports: list[tuple[str, int]] = []
        if services.mx is not None:
            ports.append(("mx", 25))
        if services.submission is not None:
            ports += [("submission", p) for p in services.submission.ports]
        for label, port in ports:
            try:
                _wait_listening(str(self.address), port, deadline)
            except ServiceError:
                tail = self._tail_text(Path(MAILLOG))
                raise ServiceError(
                    f"{node.name}: Postfix does not listen on {port}: {tail}"
                ) from None
            endpoints.append(Endpoint(node.name, label, "tcp", f"{self.address}:{port}"))
        return endpoints

    def lab_time(self) -> dict[str, str]:
        """The variables that put a daemon on the lab clock: the lab's clock
        file (``STATE/run/time``) bind-mounted at :data:`TIME_DIR`, the
        shared start time in a private /dev/shm (:mod:`sim.services.labtime`)."""
        clock_file = self.ctx.clock.faketime_file
        # LabTime() refused a clock without a file.
        assert clock_file is not None and self.labtime is not None
        bind(clock_file.parent, TIME_DIR)
        private_tmpfs("/dev/shm")
        env = self.labtime.create(f"{TIME_DIR}/{clock_file.name}")
        self.labtime.check(env)
        return env

    def start_milters(self, conf: PostfixConfig, etc: Path) -> None:
        """OpenDKIM and OpenDMARC, when the topology asks for them, listening
        before Postfix starts (a milter that is down lets mail through)."""
        deadline = time.monotonic() + START_TIMEOUT
        if "dkim/keytable" in conf.tables:
            keys = etc / "dkim"
            for source in (self.ctx.state_dir / "dkim").glob("*._domainkey.*.pem"):
                target = keys / source.name
                shutil.copyfile(source, target)
                target.chmod(0o600)
                _chown(target, "opendkim")
        if "opendkim.conf" in conf.tables:
            self.helpers.append(self.spawn(["opendkim", "-f", "-x", "/etc/postfix/opendkim.conf"]))
            _wait_listening("127.0.0.1", 8891, deadline)
        delay = greylist_delay(self.ctx.topology, self.ctx.node)
        if delay is not None:
            db = Path("/var/lib/postfix/postgrey")
            db.mkdir(exist_ok=True)
            _chown(db, "postgrey")
            self.helpers.append(
                self.spawn(
                    [
                        "postgrey",
                        f"--inet={POSTGREY.removeprefix('inet:')}",
                        f"--dbdir={db}",
                        f"--delay={delay}",
                        "--user=postgrey",
                        "--group=postgrey",
                    ],
                    self.env,  # on lab time: --delay is in lab seconds
                )
            )
            _wait_listening("127.0.0.1", int(POSTGREY.rpartition(":")[2]), deadline)
        if "opendmarc.conf" in conf.tables:
            self.helpers.append(
                self.spawn(["opendmarc", "-f", "-c", "/etc/postfix/opendmarc.conf"])
            )
            _wait_listening("127.0.0.1", 8893, deadline)

    def after_event(self, event: LogEvent) -> None:
        """A message stored here: the verdicts the milters and the SPF policy
        service wrote into its header (Authentication-Results, RFC 8601;
        Received-SPF, RFC 7208 §9.1) become check events, as maillab's MX
        emits them."""
        if not isinstance(event.data, Delivered) or event.data.bounce:
            return
        user = event.data.user
        new = mail_root(self.ctx.state_dir, self.ctx.node.name) / user / "new"
        try:
            newest = max(new.iterdir(), key=lambda p: p.stat().st_mtime_ns)
            head = newest.read_bytes().split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        except (OSError, ValueError):
            return
        for check, result, text in header_verdicts(head.decode("utf-8", "replace")):
            self.ctx.record(
                event.trace_id,
                Check(
                    client="",
                    check=check,
                    result=result,
                    action="header",
                    configured=None,
                    stage="data",
                    explanation=text,
                    inputs={},
                    details={},
                    reply=None,
                    software="postfix",
                ),
                f"postfix: {check} {result} ({text})",
            )

    def _tail_text(self, path: Path) -> str:
        try:
            lines = path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return lines[-1] if lines else "(empty log)"

    def when_retried(self, event: LogEvent) -> LogEvent:
        """Postfix does not log when it tries a deferred message again; qmgr
        writes it as the queue file's mtime (qmgr_active.c: ``utime`` to
        now + the backoff, on the lab clock) when it moves the file to the
        deferred queue, a moment after the deferral is logged. Lab time is
        that mtime minus the lab's epoch. ``send(settle=True)`` advances the
        lab to it, as it does to maillab's relay's next attempt."""
        data = event.data
        assert isinstance(data, QueueDeferred)
        deadline = time.monotonic() + DEFERRED_WAIT
        while True:
            mtime = _deferred_mtime(data.queue_id)
            if mtime is not None:
                due = mtime - self.ctx.clock.epoch
                return dataclasses.replace(
                    event, data=dataclasses.replace(data, next_attempt=round(due, 3))
                )
            if time.monotonic() > deadline:
                # Still active (another recipient under way): the earliest.
                relay = self.ctx.node.services.relay
                soonest = self.ctx.clock.now() + (relay.retry[0] if relay else 0.0)
                return dataclasses.replace(
                    event, data=dataclasses.replace(data, next_attempt=round(soonest, 3))
                )
            time.sleep(LOG_POLL)

    def queue(self) -> dict[str, Any]:
        """Postfix's queue as maillab's relay lists its own (``relay queue``),
        for ``lab.queues()`` and ``lab.settle()``: ``postqueue -j`` (one
        JSON object per message), and when each is due, in lab time: a
        deferred file's mtime (qmgr's retry time), else now (active,
        incoming: under way)."""
        out = _run(["postqueue", "-j"], "postqueue -j")
        now = self.ctx.clock.now()
        epoch = self.ctx.clock.epoch
        entries: list[dict[str, Any]] = []
        for line in out.splitlines():
            try:
                message = json.loads(line)
                queue, qid = str(message["queue_name"]), str(message["queue_id"])
            except (ValueError, KeyError, TypeError):
                continue
            due = (_deferred_mtime(qid) if queue == "deferred" else None) or epoch + now
            rcpts = [
                {"address": str(r.get("address", "")), "state": "deferred"}
                if r.get("delay_reason")
                else {"address": str(r.get("address", "")), "state": "pending"}
                for r in message.get("recipients", [])
            ]
            entries.append(
                {
                    "id": qid,
                    "kind": "dsn" if qid in self.reader.dsn else "message",
                    "queue": queue,
                    "mail_from": str(message.get("sender", "")),
                    "rcpts": rcpts,
                    "created": round(float(message.get("arrival_time", 0)) - epoch, 3),
                    "next_attempt": round(due - epoch, 3),
                    "size": int(message.get("message_size", 0)),
                    "held": queue == "hold",
                    "software": "postfix",
                }
            )
        entries.sort(key=lambda e: float(e["created"]))
        return {"entries": entries, "now": round(now, 3)}

    async def lab_started(self) -> None:
        self.follow_log(self.base / "lib" / "maillog")
        self._clock_task = asyncio.get_running_loop().create_task(self._follow_clock())

    async def _follow_clock(self) -> None:
        """After the lab clock jumps, qmgr looks at its deferred queue at once
        (``postkick public qmgr D``: a scan that respects each file's retry
        time, unlike ``postqueue -f``, which sends everything now) instead of
        at its next ``queue_run_delay`` timer."""
        loop = asyncio.get_running_loop()
        offset = self.ctx.clock.offset
        while True:
            await asyncio.sleep(LOG_POLL)
            now = self.ctx.clock.offset
            if now == offset:
                continue
            offset = now
            with contextlib.suppress(ServiceError, subprocess.SubprocessError):
                await loop.run_in_executor(
                    None, _run, ["postkick", "public", "qmgr", "D"], "postkick"
                )

    async def stop(self) -> None:
        await super().stop()
        if self.labtime is not None:
            self.labtime.remove()

    async def control(self, command: str, **args: Any) -> dict[str, Any]:
        if command == "config":
            return self.shown()
        if command == "postconf":
            key = str(args.get("key", ""))
            loop = asyncio.get_running_loop()
            value = await loop.run_in_executor(None, _run, ["postconf", "-h", key], "postconf")
            return {"key": key, "value": value.strip()}
        if command == "queue":
            return await asyncio.get_running_loop().run_in_executor(None, self.queue)
        if command == "set":
            key, value = str(args["key"]), str(args["value"])
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, _set, key, value)
            if self.config is not None:
                # As postconf -e edits main.cf: the line in place, or appended.
                line = Setting("main.cf", f"{key} = {value}", POSTFIX_SET_SOURCE)
                main = self.config.main
                at = [i for i, s in enumerate(main) if s.text.startswith(f"{key} = ")]
                for i in reversed(at[1:]):
                    del main[i]
                if at:
                    main[at[0]] = line
                else:
                    main.append(line)
            return {"key": key, "value": value}
        return await super().control(command, **args)


#: The source shown beside a setting a lab task (or a control command) set.
SET_SOURCE = "dovecot_set (changed while the lab runs)"
#: Where a candidate dovecot.conf is checked before it replaces the running one.
_CANDIDATE = "dovecot.conf.new"
#: Dovecot's master logs this when a reload (SIGHUP) has been taken in.
_RELOADED = "reloading configuration"


def _dovecot_set(etc: Path, log: Path, text: str, key: str) -> str:
    """Put ``text`` (dovecot.conf with the new setting last) in place if
    Dovecot's own parser accepts it, then reload the running instance;
    returns the value ``doveconf -h`` reads back. A refusal leaves the
    running configuration as it was."""
    candidate = etc / _CANDIDATE
    candidate.write_text(text)
    # The daemons' view of the node's files (bind-mounted in this namespace).
    path = f"{DovecotNode.etc_dir}/{_CANDIDATE}"
    try:
        need("doveconf")
        done = subprocess.run(
            ["doveconf", "-c", path, "-n"], capture_output=True, text=True, timeout=30, check=False
        )
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines() or ["(no message)"]
            # "doveconf: Fatal: Error in configuration file F line N: Unknown
            # setting: x": the candidate's file and line mean nothing to the student.
            why = re.sub(r"^.*?Error in configuration file \S+ line \d+: ", "", lines[-1])
            raise ServiceError(
                f"{key}: doveconf refuses it: {why} (the running configuration is unchanged)"
            )
        value = _run(["doveconf", "-c", path, "-h", key], "doveconf -h").strip()
    except BaseException:
        candidate.unlink(missing_ok=True)
        raise
    start = log.stat().st_size if log.exists() else 0
    os.replace(candidate, etc / "dovecot.conf")
    _run(["doveadm", "-c", f"{DovecotNode.etc_dir}/dovecot.conf", "reload"], "doveadm reload")
    # doveadm only signals the master: wait until it says it reloaded, so the
    # next login meets the new setting.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _RELOADED in _read_from(log, start)[0]:
            break
        time.sleep(0.02)
    else:
        raise ServiceError(f"{key}: Dovecot did not log its reload within 10 s")
    return value


class DovecotNode(_Daemon):
    """The node's mailboxes (IMAP, POP3), LMTP delivery and SASL, by Dovecot."""

    kind = "dovecot"
    log_file = DOVECOT_LOG
    etc_dir = "/etc/dovecot"

    async def start(self) -> list[Endpoint]:
        return await asyncio.get_running_loop().run_in_executor(None, self._start)

    def files(self, conf: PostfixConfig) -> dict[str, str]:
        return {
            "dovecot.conf": "".join(f"{s.text}\n" for s in conf.main),
            **{k: v for k, v in conf.tables.items() if k != "users"},
        }

    def _start(self) -> list[Endpoint]:
        node = self.ctx.node
        need("dovecot")  # before anything is mounted over its directories
        if node.services.mx is not None and node.services.postfix is None:
            # maillab's MX writes the Maildirs as root; Dovecot reads them as
            # user mail, and delivery must go through its LMTP anyway.
            raise ServiceError(
                f"{node.name}: Dovecot serves the mail Postfix delivers: add `postfix: {{}}` "
                "to the node (its mx) as well"
            )
        cert, key = self.certificate()
        conf = self.config = dovecot_config(node, self.address, cert_file=cert, key_file=key)
        etc, lib = self.base / "etc", self.base / "lib"
        for directory in (etc, lib):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o755)
        (etc / "dovecot.conf").write_text(self.files(conf)["dovecot.conf"])
        users = etc / "users"
        users.write_text(conf.tables["users"])
        users.chmod(0o640)
        shutil.chown(users, "root", "dovecot")
        mail = self.mail_dir()
        bind(etc, "/etc/dovecot")
        bind(lib, "/var/lib/dovecot")
        bind(mail, "/var/mail")
        _run(["doveconf", "-n"], f"{node.name}: dovecot configuration")
        self.proc = self.spawn(["dovecot", "-F"])
        deadline = time.monotonic() + START_TIMEOUT
        endpoints: list[Endpoint] = []
        for label, host, port in (
            ("lmtp", "127.0.0.1", 24),
            ("mailbox", str(self.address), 143),
            ("mailbox", str(self.address), 110),
            ("mailbox", str(self.address), 993),
            ("mailbox", str(self.address), 995),
        ):
            _wait_listening(host, port, deadline)
            if host != "127.0.0.1":
                endpoints.append(Endpoint(node.name, label, "tcp", f"{host}:{port}"))
        return endpoints

    async def lab_started(self) -> None:
        self.follow_log(self.base / "lib" / "dovecot.log")

    async def control(self, command: str, **args: Any) -> dict[str, Any]:
        if command == "config":
            return self.shown()
        loop = asyncio.get_running_loop()
        if command == "doveconf":
            key = str(args.get("key", ""))
            if not re.fullmatch(r"[a-z][a-z0-9_]*", key):
                raise ServiceError(f"{key!r} is not a dovecot.conf setting name")
            value = await loop.run_in_executor(None, _run, ["doveconf", "-h", key], "doveconf")
            return {"key": key, "value": value.strip()}
        if command == "set":
            return await self.set(str(args["key"]), str(args["value"]))
        return await super().control(command, **args)

    async def set(self, key: str, value: str) -> dict[str, Any]:
        """``key = value`` in the node's dovecot.conf, checked by ``doveconf``
        and applied by ``doveadm reload`` (the dovecot_set lab action)."""
        problem = dovecot_setting_problem(key, value)
        if problem is not None:
            raise ServiceError(problem)
        conf = self.config
        if conf is None:
            raise ServiceError(f"{self.ctx.node.name}: Dovecot has not started")
        # A key set twice keeps one line: the last value counts anyway.
        kept = [
            s for s in conf.main if not (s.source == SET_SOURCE and s.text.startswith(f"{key} = "))
        ]
        line = Setting("dovecot.conf", f"{key} = {value}", SET_SOURCE)
        text = "".join(f"{s.text}\n" for s in (*kept, line))
        began = time.monotonic()
        now = await asyncio.get_running_loop().run_in_executor(
            None, _dovecot_set, self.base / "etc", self.base / "lib" / "dovecot.log", text, key
        )
        conf.main[:] = [*kept, line]
        return {"key": key, "value": now, "seconds": round(time.monotonic() - began, 3)}
