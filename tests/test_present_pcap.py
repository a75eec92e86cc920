"""``--pcap``: the packets of an experiment, opened by a real dissector (tshark).

On the local backend the file is synthesised from the trace; on mininet it
is captured with tcpdump inside the nodes, with a TLS key log beside it.
Either way Wireshark's dissectors must find the SMTP commands and the DNS
answers in it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from presentkit import recorded

from sim.present.pcap import LOCAL_COMMENT, synthesise
from sim.present.pcapng import LINKTYPE_RAW, Capture, ipv4_udp, read_pcap
from sim.present.wire import keylog_path

ROOT = Path(__file__).resolve().parent.parent
TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(
    TSHARK is None, reason="tshark is missing (Debian: apt-get install tshark)"
)
SUBMIT = [
    "send", "topologies/home-isp.yaml", "--from", "laptop", "--to", "bob@qq.example",
    "--via", "smtp-isp", "--user", "alice@home.example", "--password", "secret",
    "--mail-from", "alice@home.example",
]  # fmt: skip


def fields(pcap: Path, *names: str, keylog: Path | None = None, display: str = "") -> list[str]:
    """One line per packet with the named fields, tab-separated (tshark -T fields)."""
    argv = [str(TSHARK), "-r", str(pcap), "-T", "fields"]
    for name in names:
        argv += ["-e", name]
    if keylog is not None:
        argv += ["-o", f"tls.keylog_file:{keylog}"]
    if display:
        argv += ["-Y", display]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    return [line for line in run.stdout.splitlines() if line.strip()]


def smtp_commands(pcap: Path, keylog: Path | None = None) -> list[str]:
    """The verb of each SMTP command line the dissector found, in order."""
    lines = fields(pcap, "smtp.command_line", keylog=keylog, display="smtp.req")
    # A segment with several command lines lists them comma-separated.
    # tshark prints the line ending as the two characters "\\r\\n".
    verbs = [c.replace("\\r\\n", " ").split() for line in lines for c in line.split(",")]
    return [v[0].upper() for v in verbs if v]


def dns_answers(pcap: Path) -> list[str]:
    lines = fields(
        pcap, "dns.qry.name", "dns.a", "dns.mx.mail_exchange", display="dns.flags.response == 1"
    )
    return lines


def _maillab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sim.cli", *args],
        capture_output=True, text=True, timeout=180, cwd=ROOT, check=False,
    )  # fmt: skip


# -- the file format, without a lab ------------------------------------------------------


def test_a_capture_round_trips_through_the_pcapng_layout(tmp_path: Path) -> None:
    from ipaddress import IPv4Address

    capture = Capture(comment="hello")
    iface = capture.interface("lab")
    packet = ipv4_udp(IPv4Address("192.0.2.1"), 4000, IPv4Address("192.0.2.2"), 53, b"x" * 5)
    capture.add(iface, 1.5, packet, "one")
    raw = capture.to_bytes()
    kind, length = struct.unpack("<II", raw[:8])
    assert kind == 0x0A0D0D0A and raw[8:12] == struct.pack("<I", 0x1A2B3C4D)
    assert struct.unpack("<I", raw[length - 4 : length])[0] == length  # trailer = header
    assert capture.interfaces == [("lab", LINKTYPE_RAW)] and b"hello" in raw
    # The classic pcap reader refuses what is not pcap.
    (tmp_path / "x.pcap").write_bytes(raw)
    with pytest.raises(ValueError, match="not a pcap file"):
        read_pcap(tmp_path / "x.pcap")


def test_a_recorded_trace_gives_dns_and_smtp_packets() -> None:
    capture = synthesise(recorded("submitted"))
    assert capture.comment == LOCAL_COMMENT and "decrypted" in capture.comment
    payloads = b"".join(p.data for p in capture.packets)
    assert b"MAIL FROM:<alice@home.example>\r\n" in payloads
    assert b"250-smtp.home.example\r\n" in payloads  # multi-line replies as sent
    assert b"\r\n.\r\n" in payloads  # the message with its final dot
    assert b"secret" not in payloads  # the trace masks the password; so does the file
    decrypted = [p for p in capture.packets if p.comment.startswith("decrypted")]
    assert decrypted, "segments after STARTTLS say they were encrypted on the wire"


# -- with tshark ------------------------------------------------------------------------------


@needs_tshark
def test_local_send_pcap_opens_in_tshark_with_smtp_and_dns(tmp_path: Path) -> None:
    out = tmp_path / "submit.pcapng"
    run = _maillab(*SUBMIT, "--pcap", str(out))
    assert run.returncode == 0, run.stderr
    commands = smtp_commands(out)
    assert commands[:2] == ["EHLO", "STARTTLS"]
    for verb in ("AUTH", "MAIL", "RCPT", "DATA"):
        assert verb in commands
    assert commands.count("EHLO") >= 3  # laptop twice (before and after TLS), the relay too
    answers = "\n".join(dns_answers(out))
    assert "qq.example\t\tmx.qq.example" in answers and "203.0.113.25" in answers
    comment = fields(out, "frame.comment", display="frame.comment")
    assert any("decrypted" in line for line in comment)
    assert not keylog_path(out).exists()  # nothing was encrypted in this file


@needs_tshark
def test_a_blocked_send_shows_the_unanswered_syns(tmp_path: Path) -> None:
    out = tmp_path / "blocked.pcapng"
    run = _maillab(
        "send", "topologies/home-isp.yaml", "--from", "laptop", "--to", "bob@qq.example",
        "--pcap", str(out),
    )  # fmt: skip
    assert run.returncode == 1
    syns = fields(out, "tcp.dstport", display="tcp.flags.syn == 1 && tcp.flags.ack == 0")
    assert len(syns) >= 4 and set(syns) == {"25"}  # the first SYN and its retransmissions
    assert fields(out, "tcp.srcport", display="tcp.flags.ack == 1") == []  # no answer


@needs_tshark
@pytest.mark.mininet
def test_mininet_send_pcap_is_captured_and_decrypts_with_the_key_log(tmp_path: Path) -> None:
    out = tmp_path / "submit.pcapng"
    run = _maillab(*SUBMIT, "--backend", "mininet", "--pcap", str(out))
    assert run.returncode == 0, run.stderr
    keys = keylog_path(out)
    assert keys.is_file() and "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in keys.read_text()
    # Without the keys, TLS hides everything after STARTTLS ...
    clear = smtp_commands(out)
    assert "STARTTLS" in clear and "MAIL" not in clear
    # ... with them, tshark reads the dialogue inside TLS.
    decrypted = smtp_commands(out, keylog=keys)
    for verb in ("AUTH", "MAIL", "RCPT", "DATA"):
        assert verb in decrypted
    answers = "\n".join(dns_answers(out))
    assert "mx.qq.example" in answers and "203.0.113.25" in answers


@contextlib.contextmanager
def _up_with_pcap(tmp_path: Path) -> Iterator[tuple[dict[str, Any], Path]]:
    """``maillab up home-isp --pcap DIR`` as a user runs it: yields its ready
    line (the endpoints) and the file it must have written once stopped."""
    capture_dir = tmp_path / "capture"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim.cli", "up", "home-isp", "--json", "--pcap", str(capture_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    out = capture_dir / "home-isp.pcapng"
    try:
        assert proc.stdout is not None
        yield json.loads(proc.stdout.readline()), out
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"wrote {out}" in err


def _endpoint(ready: dict[str, Any], **match: str) -> tuple[str, int]:
    found = next(e for e in ready["endpoints"] if all(e[k] == v for k, v in match.items()))
    host, port = found["local"].rsplit(":", 1)
    return host, int(port)


@needs_tshark
def test_up_pcap_writes_the_runs_packets_when_the_lab_stops(tmp_path: Path) -> None:
    import dns.message
    import dns.query

    with _up_with_pcap(tmp_path) as (ready, out):
        host, port = _endpoint(ready, node="ns", service="dns", proto="udp")
        # A real DNS client on this machine asks the lab resolver (as "outside").
        query = dns.message.make_query("qq.example", "MX")
        reply = dns.query.udp(query, host, port=port, timeout=5)
        assert reply.answer
    assert "qq.example\t\tmx.qq.example" in "\n".join(dns_answers(out))


@needs_tshark
def test_up_pcap_keeps_what_a_real_smtp_client_said(tmp_path: Path) -> None:
    """A real program (here smtplib) talks to the running lab's MX: no lab
    client records that conversation, so the MX keeps it for the file, with
    the lab addresses and port 25, decrypted after STARTTLS."""
    import smtplib
    import ssl

    with _up_with_pcap(tmp_path) as (ready, out):
        host, port = _endpoint(ready, lab="203.0.113.25:25")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP(host, port, local_hostname="real.client.example", timeout=30) as c:
            c.ehlo()
            c.starttls(context=context)
            c.ehlo()
            c.mail("someone@elsewhere.example")
            c.rcpt("bob@qq.example")
    commands = smtp_commands(out)
    assert commands[:3] == ["EHLO", "STARTTLS", "EHLO"]
    assert {"MAIL", "RCPT", "QUIT"} <= set(commands)
    servers = fields(out, "ip.src", "tcp.srcport", display="smtp.response")
    assert servers and set(servers) == {"203.0.113.25\t25"}
    greeting = fields(out, "smtp.response", display="smtp.response.code == 220")
    assert greeting  # the banner, as the MX wrote it
    comments = fields(out, "frame.comment", display="frame.comment && smtp")
    assert any("decrypted" in line for line in comments)


def test_a_recorded_connection_keeps_each_sides_turns() -> None:
    """What the servers keep: one segment per turn, the TLS switch marked."""
    import itertools
    from ipaddress import IPv4Address

    from sim.net.wirelog import WireLog

    clock = itertools.count()  # each reading one lab second later
    log = WireLog(lambda: float(next(clock)))
    conn = log.open(IPv4Address("198.51.100.7"), 40000, IPv4Address("203.0.113.25"), 25)
    conn.server_sent(b"220 mx ESMTP\r\n")
    conn.client_sent(b"EHLO a")
    conn.client_sent(b"\r\n")  # the rest of the same line: the same turn
    conn.server_sent(b"250 mx\r\n")
    conn.secured()
    conn.client_sent(b"QUIT\r\n")
    conn.close()
    turns = [(s.from_client, s.data, s.tls) for s in log.connections()[0].segments]
    assert turns == [
        (False, b"220 mx ESMTP\r\n", False),
        (True, b"EHLO a\r\n", False),
        (False, b"250 mx\r\n", False),
        (True, b"QUIT\r\n", True),
    ]
    assert [s.t for s in conn.segments] == [1.0, 2.0, 4.0, 5.0]  # a turn keeps its start
    assert conn.closed == 6.0


@needs_tshark
def test_a_mailbox_read_is_written_as_imap_and_pop3(tmp_path: Path) -> None:
    from mdarig import BOB, BOB_PW, MAIL, deliver, start_lab

    from sim.present.pcap import write_pcap

    lab = start_lab()
    try:
        deliver(lab, "on the wire")
        imap = lab.read("client", BOB, BOB_PW, via=MAIL, peek=True)
        pop3 = lab.read("client", BOB, BOB_PW, via=MAIL, protocol="pop3")
        write_pcap(imap, tmp_path / "imap.pcapng", lab.topology)
        write_pcap(pop3, tmp_path / "pop3.pcapng", lab.topology)
    finally:
        lab.stop()
    imap_commands = fields(tmp_path / "imap.pcapng", "imap.request.command", display="imap.request")
    assert [c.upper() for c in imap_commands][:3] == ["CAPABILITY", "STARTTLS", "CAPABILITY"]
    assert "LOGIN" in [c.upper() for c in imap_commands]
    pop_commands = fields(tmp_path / "pop3.pcapng", "pop.request.command", display="pop.request")
    assert {"STLS", "USER", "PASS", "RETR", "QUIT"} <= {c.upper() for c in pop_commands}
