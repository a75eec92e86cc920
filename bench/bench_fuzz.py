"""Hostile sessions against a running lab: memory and tracebacks (issue 19).

Starts ``maillab up TOPOLOGY --json`` (local backend) with its stderr in a
file, then opens many sessions against the lab's loopback endpoints only
(127.0.0.1, the ports ``up`` printed), each a random misbehaviour a real
attacker or broken client shows: garbage, half commands, a line without end,
STARTTLS then plain text, an old TLS version, a handshake cut off, STARTTLS
inside TLS, a reset in the middle of DATA, junk DNS over UDP and TCP, IMAP and
POP3 nonsense. It reports the lab process's RSS before and after, and what
the lab wrote to stderr: tracebacks and other lines. A client's misbehaviour
is the client's problem: the lab must answer it, stay bounded, and print no
traceback (``tests/test_fuzz.py`` runs a short round of this in CI).

    python -m bench.bench_fuzz [--sessions 10000] [--topology FILE] [--json]

Figures taken on a machine shared with other work are distorted by it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.services.memtrim import TRIM_DELAY

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TOPOLOGY = ROOT / "topologies" / "internet.yaml"
LOOPBACK = "127.0.0.1"
#: Real seconds one session may take before the fuzzer gives up on it.
SESSION_TIMEOUT = 3.0


@dataclass(frozen=True)
class Target:
    """One endpoint of the lab, as ``maillab up --json`` printed it."""

    node: str
    service: str
    proto: str
    lab_port: int
    port: int  # on 127.0.0.1

    @property
    def kind(self) -> str:
        if self.proto == "udp":
            return "dns-udp"
        if self.lab_port == 53:
            return "dns-tcp"
        if self.lab_port in (465,):
            return "smtps"
        if self.lab_port in (993, 995):
            return "tls-line"
        if self.lab_port in (143, 110):
            return "imap" if self.lab_port == 143 else "pop3"
        return "smtp"


@dataclass
class Lab:
    """A ``maillab up`` process."""

    proc: subprocess.Popen[str]
    stderr: Path
    targets: list[Target]
    state_dir: Path

    def rss(self) -> int:
        return rss_of(self.proc.pid)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        return self.proc.returncode


def rss_of(pid: int) -> int:
    """Resident memory of a process, in bytes (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def start_lab(topology: Path, stderr: Path, *extra: str, root: Path = ROOT) -> Lab:
    """``maillab up`` of the checkout at ``root`` (another one compares)."""
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sim.cli", "up", str(topology), "--json", *extra],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=root,
        )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=30)
        raise RuntimeError(f"maillab up failed: {stderr.read_text()[-2000:]}")
    ready = json.loads(line)
    targets = []
    for endpoint in ready["endpoints"]:
        local = endpoint.get("local")
        if not local:
            continue
        host, _, port = local.rpartition(":")
        if host != LOOPBACK:  # never anything but the lab's loopback endpoints
            continue
        targets.append(
            Target(
                endpoint["node"],
                endpoint["service"],
                endpoint["proto"],
                int(endpoint["lab"].rpartition(":")[2]),
                int(port),
            )
        )
    return Lab(proc, stderr, targets, Path(ready["state_dir"]))


# --- what a hostile client does ------------------------------------------------------

Session = Callable[[Target, random.Random], Awaitable[None]]


def _junk(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)


def _line(rng: random.Random) -> bytes:
    words = [
        b"EHLO",
        b"HELO",
        b"MAIL FROM:",
        b"RCPT TO:",
        b"DATA",
        b"RSET",
        b"NOOP",
        b"VRFY",
        b"AUTH PLAIN",
        b"AUTH LOGIN",
        b"BDAT 10",
        b"STARTTLS",
        b"<>",
        b"<a@b>",
        b"<postmaster>",
        b"\x00",
        b"\xff\xfe",
        b"%s" % (b"x" * rng.randrange(1, 2000)),
    ]
    return b" ".join(rng.choice(words) for _ in range(rng.randrange(1, 4)))


async def _open(target: Target) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(LOOPBACK, target.port, limit=1 << 20)


async def _drain(reader: asyncio.StreamReader, seconds: float = 0.05) -> bytes:
    with contextlib.suppress(TimeoutError, OSError, asyncio.IncompleteReadError):
        return await asyncio.wait_for(reader.read(65536), seconds)
    return b""


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a crashed client does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _tls(old: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if old:  # what `openssl s_client -tls1` offers (RFC 8996 deprecated it)
        with contextlib.suppress(ValueError, ssl.SSLError), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1
        with contextlib.suppress(ssl.SSLError):
            context.set_ciphers("ALL:@SECLEVEL=0")
    return context


async def garbage(target: Target, rng: random.Random) -> None:
    reader, writer = await _open(target)
    writer.write(_junk(rng, rng.randrange(1, 4096)))
    await _drain(reader)
    (_reset if rng.random() < 0.5 else lambda w: w.close())(writer)


async def commands(target: Target, rng: random.Random) -> None:
    reader, writer = await _open(target)
    await _drain(reader)
    for _ in range(rng.randrange(1, 12)):
        writer.write(_line(rng) + rng.choice([b"\r\n", b"\n", b"\r", b""]))
        await writer.drain()
        await _drain(reader, 0.02)
    (_reset if rng.random() < 0.3 else lambda w: w.close())(writer)


async def starttls_then_plain(target: Target, rng: random.Random) -> None:
    reader, writer = await _open(target)
    await _drain(reader)
    writer.write(b"EHLO x\r\nSTARTTLS\r\n")
    await writer.drain()
    await _drain(reader, 0.2)
    writer.write(b"MAIL FROM:<a@b.example>\r\n" + _junk(rng, rng.randrange(0, 300)))
    await _drain(reader, 0.2)
    writer.close()


async def starttls_old_tls(target: Target, rng: random.Random) -> None:
    reader, writer = await _open(target)
    await _drain(reader)
    writer.write(b"EHLO x\r\nSTARTTLS\r\n")
    await writer.drain()
    await _drain(reader, 0.2)
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError, ValueError):
        await asyncio.wait_for(writer.start_tls(_tls(old=rng.random() < 0.7)), 1.0)
        writer.write(rng.choice([b"EHLO y\r\nSTARTTLS\r\n", b"EHLO y\r\n", b"QUIT\r\n"]))
        await _drain(reader, 0.2)
    (_reset if rng.random() < 0.5 else lambda w: w.close())(writer)


async def handshake_cut(target: Target, rng: random.Random) -> None:
    """A ClientHello cut off, or a real handshake and then a reset."""
    reader, writer = await _open(target)
    if target.kind in ("smtp", "imap", "pop3"):
        await _drain(reader)
        go = {"smtp": b"EHLO x\r\nSTARTTLS\r\n", "imap": b"a STARTTLS\r\n", "pop3": b"STLS\r\n"}
        writer.write(go[target.kind])
        await _drain(reader, 0.2)
    # A TLS record header for a handshake, then a piece of one.
    writer.write(
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + _junk(rng, rng.randrange(0, 200))
    )
    await _drain(reader, 0.1)
    _reset(writer)


async def implicit_tls(target: Target, rng: random.Random) -> None:
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(LOOPBACK, target.port, ssl=_tls(old=rng.random() < 0.3)), 1.5
        )
        await _drain(reader, 0.2)
        for _ in range(rng.randrange(0, 5)):
            writer.write(_line(rng) + b"\r\n")
            await _drain(reader, 0.02)
        (_reset if rng.random() < 0.5 else lambda w: w.close())(writer)


async def data_then_reset(target: Target, rng: random.Random) -> None:
    reader, writer = await _open(target)
    await _drain(reader)
    writer.write(b"EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster>\r\nDATA\r\n")
    await writer.drain()
    await _drain(reader, 0.1)
    body = rng.choice([b"x" * rng.randrange(1, 200_000), _junk(rng, 5000), b"a\r\n" * 500])
    writer.write(body)
    await _drain(reader, 0.02)
    if rng.random() < 0.5:
        writer.write(b"\r\n.\r\nQUIT\r\n")
        await _drain(reader, 0.1)
        writer.close()
    else:
        _reset(writer)


async def dns_udp(target: Target, rng: random.Random) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=(LOOPBACK, target.port)
    )
    try:
        for _ in range(rng.randrange(1, 8)):
            if rng.random() < 0.5:
                packet = _junk(rng, rng.randrange(0, 600))
            else:  # a query header, a mangled question
                packet = struct.pack(">HHHHHH", rng.randrange(65536), 0x0100, 1, 0, 0, 0)
                packet += _junk(rng, rng.randrange(0, 80))
            transport.sendto(packet)
        await asyncio.sleep(0.01)
    finally:
        transport.close()


async def dns_tcp(target: Target, rng: random.Random) -> None:
    reader, writer = await _open(target)
    for _ in range(rng.randrange(1, 5)):
        size = rng.randrange(0, 700)
        claimed = size if rng.random() < 0.6 else rng.randrange(65536)
        writer.write(struct.pack(">H", claimed) + _junk(rng, size))
    await _drain(reader, 0.05)
    (_reset if rng.random() < 0.5 else lambda w: w.close())(writer)


SESSIONS: dict[str, list[Session]] = {
    "smtp": [
        garbage,
        commands,
        commands,
        starttls_then_plain,
        starttls_old_tls,
        handshake_cut,
        data_then_reset,
    ],
    "smtps": [garbage, implicit_tls, implicit_tls, handshake_cut],
    "imap": [garbage, commands, handshake_cut],
    "pop3": [garbage, commands, handshake_cut],
    "tls-line": [garbage, implicit_tls, handshake_cut],
    "dns-udp": [dns_udp],
    "dns-tcp": [dns_tcp, garbage],
}


@dataclass
class FuzzResult:
    sessions: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    client_errors: int = 0
    seconds: float = 0.0


async def fuzz(
    targets: list[Target], sessions: int, *, seed: int = 19, concurrency: int = 32
) -> FuzzResult:
    """``sessions`` hostile sessions against ``targets``, ``concurrency`` at a time."""
    rng = random.Random(seed)
    result = FuzzResult()
    usable = [t for t in targets if t.kind in SESSIONS]
    if not usable:
        raise RuntimeError("no endpoint to fuzz")
    semaphore = asyncio.Semaphore(concurrency)
    start = time.monotonic()

    async def one(index: int) -> None:
        target = usable[index % len(usable)] if index < len(usable) else rng.choice(usable)
        session = rng.choice(SESSIONS[target.kind])
        own = random.Random(rng.random())
        async with semaphore:
            result.by_kind[f"{target.kind}:{session.__name__}"] += 1
            try:
                await asyncio.wait_for(session(target, own), SESSION_TIMEOUT)
            except (OSError, ssl.SSLError, TimeoutError, ValueError, EOFError):
                result.client_errors += 1  # the client's side: not what is measured
            result.sessions += 1

    await asyncio.gather(*(one(i) for i in range(sessions)))
    result.seconds = time.monotonic() - start
    return result


def stderr_report(text: str) -> dict[str, Any]:
    lines = text.splitlines()
    return {
        "tracebacks": sum(1 for line in lines if line.startswith("Traceback")),
        "lines": len(lines),
        "warnings": sum(1 for line in lines if "WARNING" in line or "Warning" in line),
        "sample": lines[:40],
    }


def settle_rss(lab: Lab, seconds: float = TRIM_DELAY + 2.0) -> int:
    # Finished sessions are freed, and the lab returns freed memory to the
    # system a little later (sim.services.memtrim).
    time.sleep(seconds)
    return lab.rss()


def run(
    topology: Path,
    sessions: int,
    *,
    seed: int = 19,
    concurrency: int = 32,
    settle: float = TRIM_DELAY + 2.0,
    root: Path = ROOT,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="maillab-fuzz-") as tmp:
        lab = start_lab(topology.resolve(), Path(tmp) / "stderr.txt", root=root)
        try:
            before = settle_rss(lab, 1.0)
            result = asyncio.run(fuzz(lab.targets, sessions, seed=seed, concurrency=concurrency))
            after = settle_rss(lab, settle)
            alive = lab.proc.poll() is None
        finally:
            code = lab.stop()
        report = stderr_report(lab.stderr.read_text(errors="replace"))
    return {
        "topology": topology.name,
        "sessions": result.sessions,
        "seconds": round(result.seconds, 1),
        "client_errors": result.client_errors,
        "rss_before_mb": round(before / 2**20, 1),
        "rss_after_mb": round(after / 2**20, 1),
        "alive": alive,
        "exit": code,
        "stderr": report,
        "by_kind": dict(sorted(result.by_kind.items())),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_fuzz", description=__doc__)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--lab-root", type=Path, default=ROOT, help="run the lab of this checkout (to compare)"
    )
    parser.add_argument("--json", action="store_true")
    # `python -m bench bench_fuzz` calls main() with the runner's own argv: ignore it.
    args = parser.parse_args(argv if argv is not None else [])
    out = run(
        args.topology,
        args.sessions,
        seed=args.seed,
        concurrency=args.concurrency,
        root=args.lab_root.resolve(),
    )
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(
        f"# fuzz: {out['sessions']} hostile sessions against {out['topology']} (pid {os.getpid()})"
    )
    print(f"  {out['seconds']} s, client-side errors {out['client_errors']}")
    print(f"  lab RSS {out['rss_before_mb']} MB before → {out['rss_after_mb']} MB after")
    err = out["stderr"]
    print(f"  lab stderr: {err['tracebacks']} tracebacks, {err['lines']} lines")
    for line in err["sample"][:20]:
        print(f"    {line}")


if __name__ == "__main__":
    main(sys.argv[1:])
