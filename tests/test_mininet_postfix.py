"""Postfix and Dovecot as nodes on mininet (issue 18): the outcome table
with maillab's services and with the real software in their place, the
configuration shown to the student, the host's own mail system untouched,
and nothing left after a SIGKILL and ``maillab clean``."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from mininet_support import Footprint, footprint, needs_mininet
from postfix_support import (
    PARITY,
    REAL_NODES,
    mail_software_missing,
    parity_topology,
    with_real,
)

import sim
from sim.errors import ServiceError
from sim.hosting.mininet import MininetBackend
from sim.net import mnclean

_MISSING = mail_software_missing()
pytestmark = [
    *needs_mininet,
    pytest.mark.skipif(_MISSING is not None, reason=f"real mail software: {_MISSING}"),
]

ROOT = Path(__file__).resolve().parent.parent
ALICE = {"user": "alice@home.example", "password": "secret", "mail_from": "alice@home.example"}

#: The outcome table of issue 18: (row, node, send arguments, outcome, stage).
TABLE: list[tuple[str, str, dict[str, Any], str, str | None]] = [
    ("blocked at the ISP", "laptop", {"to": "bob@qq.example"}, "blocked", "connect"),
    (
        "delivered via submission, SPF/DKIM/DMARC pass",
        "laptop",
        {"to": "bob@qq.example", "via": "smtp-isp", **ALICE},
        "delivered",
        None,
    ),
    (
        "no PTR",
        "noptr",
        {"to": "bob@qq.example", "mail_from": "x@home.example"},
        "rejected",
        "rcpt",
    ),
    (
        "PTR not forward-confirmed",
        "liar",
        {"to": "bob@qq.example", "mail_from": "x@home.example"},
        "rejected",
        "rcpt",
    ),
    (
        "HELO name that does not resolve",
        "spoofer",
        {
            "to": "bob@qq.example",
            "mail_from": "spoofer@evil.example",
            "helo": "nowhere.home.example",
        },
        "rejected",
        "rcpt",
    ),
    (
        "DNSBL listed",
        "spammer",
        {"to": "bob@qq.example", "mail_from": "spammer@home.example"},
        "rejected",
        "rcpt",
    ),
    (
        "SPF fail",
        "spoofer",
        {"to": "bob@qq.example", "mail_from": "alice@home.example"},
        "rejected",
        "rcpt",
    ),
    (
        "unknown user bounced with a DSN",
        "laptop",
        {"to": "nobody@qq.example", "via": "smtp-isp", **ALICE},
        "bounced",
        "rcpt",
    ),
    (
        "AUTH before STARTTLS refused",
        "laptop",
        {"to": "bob@qq.example", "via": "smtp-isp", "tls": "none", **ALICE},
        "rejected",
        "auth",
    ),
    (
        "DMARC p=reject spoof",
        "spoofer",
        {
            "to": "bob@qq.example",
            "mail_from": "x@evil.example",
            "from_header": "alice@home.example",
        },
        "rejected",
        "data",
    ),
    (
        "greylisting deferred then delivered",
        "laptop",
        {"to": "carol@grey.example", "via": "smtp-isp", "settle": True, **ALICE},
        "delivered",
        None,
    ),
    (
        "open relay refused",
        "spoofer",
        {"to": "x@relay.example", "mail_from": "spoofer@home.example"},
        "rejected",
        "rcpt",
    ),
]

#: Where the real software answers differently, and why (docs/postfix.md).
#: row → (maillab's reply code/enhanced, Postfix's).
DIFFERENCES = {
    # RFC 7372 §3 gives 5.7.25 for "no PTR"; Postfix 3.7's restriction
    # answers with the generic 5.7.1.
    "no PTR": ("550 5.7.25", "550 5.7.1"),
    # RFC 4954 §4 / RFC 5248: 538 5.7.11 "encryption required"; Postfix does
    # not offer AUTH before STARTTLS at all (smtpd_tls_auth_only) and says
    # 530 5.7.0 "Must issue a STARTTLS command first".
    "AUTH before STARTTLS refused": ("538 5.7.11", "530 5.7.0"),
    # RFC 7372 §3.2: 5.7.26 "multiple authentication checks failed" for a
    # DMARC failure; OpenDMARC 1.4 answers with the generic 5.7.1.
    "DMARC p=reject spoof": ("550 5.7.26", "550 5.7.1"),
    # RFC 5782 gives no code; maillab answers as smtpd's reject_rbl_client
    # did (554, "Client host [ip] blocked using ZONE; REASON"); postscreen's
    # enforce action says "550 5.7.1 Service unavailable; client [ip]
    # blocked using ZONE", without the list's TXT reason.
    "DNSBL listed": ("554 5.7.1", "550 5.7.1"),
}


def _host_mail_state() -> dict[str, str]:
    """Checksums of the machine's own Postfix and Dovecot configuration."""
    out: dict[str, str] = {}
    for root in (Path("/etc/postfix"), Path("/etc/dovecot")):
        if not root.exists():
            out[str(root)] = "absent"
            continue
        for path in sorted(root.rglob("*")):
            if path.is_file():
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _host_listens(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _host_mail_processes() -> list[int]:
    """Mail daemons in the machine's own network namespace that are the
    system's (a Postfix master reading /etc/postfix) or a lab's (carrying a
    run's marker). Another program's private Postfix (the benchmarks run
    ``postfix -c DIR`` on loopback, MAIL_CONFIG=DIR) is neither."""
    mine = os.readlink("/proc/self/ns/net")
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            comm = Path(f"/proc/{entry.name}/comm").read_text().strip()
            netns = os.readlink(f"/proc/{entry.name}/ns/net")
            env = Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if netns != mine:
            continue
        lab = any(e.startswith(b"MAILLAB_RUN=") for e in env)
        config = next((e[12:] for e in env if e.startswith(b"MAIL_CONFIG=")), b"/etc/postfix")
        system_postfix = comm == "master" and (lab or config.rstrip(b"/") == b"/etc/postfix")
        if system_postfix or comm in ("dovecot", "opendkim", "opendmarc", "postgrey"):
            out.append(int(entry.name))
    return out


def _code(reply: dict[str, Any] | None) -> str:
    return f"{reply['code']} {reply['enhanced']}" if reply else "-"


#: The checks whose verdicts both report for the delivered message (maillab's
#: MX also reports ptr and dnsbl passes; Postfix logs only refusals).
AUTH_CHECKS = ("spf", "dkim", "dmarc")


#: mx-grey's greylisting delay and smtp-isp's first retry (the topology's
#: 5m), and the lab's time_scale.
GREYLIST, RETRY, SCALE = 300.0, 300.0, 60.0


def _table(lab: sim.Lab) -> dict[str, tuple[str, str | None, str, dict[str, str]]]:
    out = {}
    for row, node, args, _, _ in TABLE:
        started = time.monotonic()
        result = lab.send(node, **args)
        took = time.monotonic() - started
        checks = {k: v for k, v in result.checks.items() if k in AUTH_CHECKS}
        if row.startswith("greylisting"):
            # Deferred first: the relay's queue saw a 4xx before the 250.
            queue = result.trace.of_kind("queue")
            events = [e.data.get("event") for e in queue]
            assert "deferred" in events and "delivered" in events, (row, events)
            # On lab time: the retry came after the greylisting delay of lab
            # time, which `settle` advanced at once (the relay and postgrey
            # both moved): far less real time than 5m at time_scale 60.
            deferred = next(e.t for e in queue if e.data.get("event") == "deferred")
            delivered = next(e.t for e in queue if e.data.get("event") == "delivered")
            assert delivered - deferred >= GREYLIST, (row, deferred, delivered)
            assert took < GREYLIST / SCALE, (row, took)
        out[row] = (result.outcome, result.stage, _code(result.reply), checks)
    return out


def _relay_retry(lab: sim.Lab) -> dict[str, Any]:
    """A message deferred because the destination MX is down (mx-later,
    maillab's MX in both runs), the MX back up, lab time advanced: not
    delivered before the relay's retry interval (5m), delivered at once
    after it, whether maillab's relay or Postfix holds the message."""
    lab.control("mx-later", "mx", "down")
    first = lab.send("laptop", to="dave@later.example", via="smtp-isp", subject="retry", **ALICE)
    lab.control("mx-later", "mx", "up")
    lab.advance("1m")  # not yet due: the retry waits for 5m of lab time
    time.sleep(0.5)
    early = [m.subject for m in lab.mailbox("dave@later.example")]
    # The relay's queue (maillab's, or Postfix's through postqueue -j) says
    # when it tries again, in lab time: about 5m after the deferral.
    entries = lab.queues()["smtp-isp"]
    due_in = float(entries[0]["next_attempt"]) - lab.now() if entries else 0.0
    assert 0 < due_in <= RETRY - 60, entries
    lab.advance("5m")
    advanced = time.monotonic()
    stored: list[str | None] = []
    while not stored and time.monotonic() - advanced < 30:
        time.sleep(0.05)
        stored = [m.subject for m in lab.mailbox("dave@later.example")]
    # Delivered because lab time moved, not because 5m passed at 60x.
    took = time.monotonic() - advanced
    assert took < 0.6 * RETRY / SCALE, took
    # lab.settle() finds nothing left to wait for (Postfix's queue empties a
    # moment after the delivery).
    lab.settle("1m")
    return {
        "first": (first.outcome, first.stage, _code(first.reply)),
        "early": early,
        "queued": [(e["mail_from"], [r["address"] for r in e["rcpts"]]) for e in entries],
        "stored": stored,
        "left": lab.queues()["smtp-isp"],
    }


def _log_in_lab_time(lab: sim.Lab, state: Path) -> None:
    """Postfix's own log line and the trace event made of it tell the same
    lab time (the log's clock is the lab's: the retry row advanced it 6m
    past real time), as maillab's services' events do."""
    backend = lab.backend
    assert isinstance(backend, MininetBackend) and backend.clock is not None
    deadline = time.monotonic() + 10
    while True:
        sent = [
            e
            for e in lab.trace().of_kind("queue")
            if e.node == "smtp-isp"
            and e.data.get("event") == "delivered"
            and e.data.get("rcpt") == "dave@later.example"
        ]
        if sent or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert sent, "no trace event of the retried delivery"
    log = (state / "smtp-isp" / "postfix" / "lib" / "maillog").read_text().splitlines()
    line = next(x for x in log if "to=<dave@later.example>" in x and "status=sent" in x)
    expected = datetime.fromtimestamp(backend.clock.epoch + sent[0].t)
    stamp = datetime.strptime(line[:15], "%b %d %H:%M:%S").replace(year=expected.year)
    # Read within a few hundredths of a real second: seconds of lab time.
    assert abs((stamp - expected).total_seconds()) < 60, (line, expected)


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with sim.start(
        parity_topology(), backend="mininet", state_dir=tmp_path_factory.mktemp("own")
    ) as lab:
        table = _table(lab)
        yield {
            "table": table,
            "dsn": len(lab.mailbox("alice@home.example")),
            "retry": _relay_retry(lab),
        }


def test_the_outcome_table_is_the_same_with_postfix_and_dovecot(
    own: dict[str, Any], tmp_path: Path
) -> None:
    before = _host_mail_state()
    namespaces = footprint()
    assert _host_mail_processes() == []
    with sim.start(with_real(parity_topology()), backend="mininet", state_dir=tmp_path) as lab:
        real = _table(lab)
        retry = _relay_retry(lab)
        _log_in_lab_time(lab, tmp_path)
        # The DSN of the unknown user reached alice's Maildir (LMTP into Dovecot).
        dsn = lab.mailbox("alice@home.example")
        assert any(
            m.header("Content-Type") and "report" in m.header("Content-Type")[0] for m in dsn
        )
        # Dovecot serves the delivered mail over IMAP, from the same Maildir.
        read = lab.read("laptop", "bob", "bobpw", via="mx-qq")
        assert read.ok, read
        assert read.messages
        # Dovecot's login line, read from its log, is in the reader's trace.
        logins = [e for e in read.trace.of_kind("imap") if e.data.get("software") == "dovecot"]
        assert logins and logins[0].data["user"] == "bob"
        # The generated configuration, each line with the field it came from.
        shown = lab.control("mx-qq", "postfix", "config")
        assert (
            "postscreen_dnsbl_sites = zen.dnsbl.example*1"
            in (shown["files"]["/etc/postfix/main.cf"])
        )
        sources = {s["text"].split(" = ")[0]: s["source"] for s in shown["settings"]}
        assert "mx.checks.ptr: reject" in sources["smtpd_recipient_restrictions"]
        assert lab.control("mx-qq", "postfix", "postconf", key="myhostname")["value"] == (
            "mx.qq.example"
        )
        # POP3 from the same Maildir.
        pop = lab.read("laptop", "bob", "bobpw", via="mx-qq", protocol="pop3", peek=True)
        assert pop.ok and pop.messages, pop
        # The lab shell's view: postconf in the node reads the node's main.cf
        # (bind-mounted in its mount namespace), the machine's is untouched.
        backend = lab.backend
        assert isinstance(backend, MininetBackend)
        shell = backend.exec("mx-qq", ["postconf", "-h", "myhostname", "inet_interfaces"])
        assert shell.stdout.split() == ["mx.qq.example", "203.0.113.25"], shell
        # Postfix itself validates a key: a name postconf does not know is refused.
        with pytest.raises(ServiceError, match="no such parameter"):
            lab.control("mx-qq", "postfix", "set", key="no_such_parameter", value="1")
        # A set key shows in the running configuration, in its place.
        lab.control("mx-qq", "postfix", "set", key="smtpd_banner", value="$myhostname ESMTP lab")
        shown = lab.control("mx-qq", "postfix", "config")
        [banner] = [s for s in shown["settings"] if s["text"].startswith("smtpd_banner = ")]
        assert "postfix_set" in banner["source"]
        dovecot = lab.control("mx-qq", "dovecot", "config")
        assert (
            "mail_location = maildir:/var/mail/%n" in dovecot["files"]["/etc/dovecot/dovecot.conf"]
        )
        _dovecot_set_takes_effect(lab)
        _delisting_counts_at_postscreen(lab)
        # The machine's own mail system, while the lab runs.
        assert _host_mail_processes() == []
        assert not _host_listens(25) and not _host_listens(143)
    for row, expected_outcome, expected_stage in ((r, o, s) for r, _, _, o, s in TABLE):
        mine, theirs = own["table"][row], real[row]
        assert mine[:2] == (expected_outcome, expected_stage), (row, mine)
        assert theirs[:2] == mine[:2], (row, mine, theirs)
        if row == "delivered via submission, SPF/DKIM/DMARC pass":
            # SPF, DKIM (OpenDKIM signed at the ISP, verified at the MX) and
            # DMARC pass on both.
            assert mine[3] == theirs[3] == {"spf": "pass", "dkim": "pass", "dmarc": "pass"}
        if row in DIFFERENCES:
            assert (mine[2], theirs[2]) == DIFFERENCES[row], (row, mine, theirs)
        elif mine[2] != "-" and not row.startswith(("delivered", "greylisting")):
            assert mine[2] == theirs[2], (row, mine, theirs)
    assert own["dsn"] >= 1
    # The relay-retry row: the same with maillab's relay and with Postfix.
    assert (
        own["retry"]
        == retry
        == {
            "first": ("deferred", None, "451 4.4.1"),
            "early": [],
            "queued": [("alice@home.example", ["dave@later.example"])],
            "stored": ["retry"],
            "left": [],
        }
    ), (own["retry"], retry)
    # A clean stop: every process of the run gone (the backend checks and
    # would say so), every namespace with it.
    assert not [n for n in backend.notices if "did not stop cleanly" in n], backend.notices
    assert footprint().extra_namespaces(namespaces) == set()
    # After the lab: nothing of the host's mail system touched or running.
    assert _host_mail_state() == before
    assert _host_mail_processes() == []
    assert not _host_listens(25) and not _host_listens(143)


def _delisting_counts_at_postscreen(lab: sim.Lab) -> None:
    """postscreen remembers a DNSBL verdict at most 1 s: a delisting lets the
    next connection through to smtpd, a listing refuses the next one."""
    spam = {"to": "bob@qq.example", "mail_from": "spammer@home.example"}
    lab.control("dnsbl", "dnsbl", "delist", net="203.0.113.99/32")
    lab.control("ns", "dns", "flush")  # what the dnsbl_delist action does
    after = lab.send("spammer", **spam)
    # Past postscreen: smtpd's next check (SPF: home.example does not
    # authorise the spammer's address) says no, not the DNSBL.
    assert "dnsbl" not in after.checks and after.checks.get("spf") == "fail", after
    lab.control("dnsbl", "dnsbl", "list", net="203.0.113.99/32", reason="again")
    lab.control("ns", "dns", "flush")
    time.sleep(1.2)  # postscreen_dnsbl_max_ttl: the pass above expires
    again = lab.send("spammer", **spam)
    assert (again.outcome, again.stage, again.checks.get("dnsbl")) == (
        "rejected",
        "rcpt",
        "listed",
    ), again


def _dovecot_set_takes_effect(lab: sim.Lab) -> None:
    """dovecot_set's control command: doveconf checks, doveadm reload applies,
    the next login meets the new value; a refused key changes nothing."""
    clear = {"via": "mx-qq", "tls": False, "peek": True}
    refused = lab.read("laptop", "bob", "bobpw", **clear)
    assert (refused.stage, (refused.reply or {}).get("code")) == ("login", "PRIVACYREQUIRED")
    done = lab.control("mx-qq", "dovecot", "set", key="disable_plaintext_auth", value="no")
    assert done["value"] == "no"
    read = lab.read("laptop", "bob", "bobpw", **clear)
    assert read.ok and read.messages, read
    # Dovecot's own parser refuses an unknown name and a bad value, in one line.
    for key, value, said in (
        ("no_such_setting", "1", "Unknown setting: no_such_setting"),
        ("disable_plaintext_auth", "perhaps", "Invalid boolean value: perhaps"),
    ):
        with pytest.raises(ServiceError) as err:
            lab.control("mx-qq", "dovecot", "set", key=key, value=value)
        assert said in str(err.value) and "\n" not in str(err.value), err.value
    with pytest.raises(ServiceError, match="nested sections"):
        lab.control("mx-qq", "dovecot", "set", key="service imap-login {", value="")
    # ...and the running instance keeps the last accepted value.
    assert lab.control("mx-qq", "dovecot", "doveconf", key="disable_plaintext_auth") == {
        "key": "disable_plaintext_auth",
        "value": "no",
    }
    again = lab.read("laptop", "bob", "bobpw", **clear)
    assert again.ok, again
    # The config the student sees shows the running value and where it came from.
    shown = lab.control("mx-qq", "dovecot", "config")
    last = [s for s in shown["settings"] if s["text"].startswith("disable_plaintext_auth")][-1]
    assert last["text"] == "disable_plaintext_auth = no" and "dovecot_set" in last["source"]
    assert shown["files"]["/etc/dovecot/dovecot.conf"].endswith("disable_plaintext_auth = no\n")


DRIVER = textwrap.dedent("""
    import json, sys, time
    sys.path[:0] = [{root!r}, {tests!r}]
    import sim
    from postfix_support import parity_topology, with_real
    from sim.hosting.mininet import MininetBackend
    from pathlib import Path
    backend = MininetBackend(with_real(parity_topology()), Path(sys.argv[1]))
    backend.start()
    print(json.dumps({{"run": backend.run_id}}), flush=True)
    time.sleep(600)
""")


def test_sigkill_then_clean_leaves_no_postfix_nor_dovecot(tmp_path: Path) -> None:
    before = footprint()
    host_before = _host_mail_state()
    state = tmp_path / "state"
    driver = subprocess.Popen(
        [
            sys.executable,
            "-c",
            DRIVER.format(root=str(ROOT), tests=str(ROOT / "tests")),
            str(state),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert driver.stdout is not None
    line = driver.stdout.readline()
    if not line:
        driver.wait()
        assert driver.stderr is not None
        raise AssertionError(f"driver failed: {driver.stderr.read()[-1000:]}")
    run = json.loads(line)["run"]
    try:
        _kill_and_clean(driver, state, run, before, host_before)
    finally:
        # Whatever failed above, leave no run behind (the driver is ours, by pid).
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        mnclean.clean([run])


def _kill_and_clean(
    driver: subprocess.Popen[str],
    state: Path,
    run: str,
    before: Footprint,
    host_before: dict[str, str],
) -> None:
    masters = [
        int(p.read_text()) for p in state.glob("*/postfix/spool/pid/master.pid") if p.exists()
    ]
    assert len(masters) == len(REAL_NODES)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    mnclean.clean([run])
    # SIGKILL is delivered at once, but a namespace is freed when its last
    # process has been reaped: Postfix's and Dovecot's orphaned children
    # (reparented to init) are, a moment later.
    deadline = time.monotonic() + 10
    while footprint().extra_namespaces(before) and time.monotonic() < deadline:
        time.sleep(0.2)
    after = footprint()
    assert after.extra_namespaces(before) == set()
    for pid in masters:
        assert not Path(f"/proc/{pid}").exists(), f"Postfix master {pid} left"
    assert _host_mail_processes() == []
    assert _host_mail_state() == host_before
    assert not (mnclean.run_root() / f"{run}.json").exists()


def test_parity_topology_exists() -> None:
    assert PARITY.exists()


def test_the_real_thing_lab_passes_maillab_check_on_mininet() -> None:
    """`maillab check real-thing --backend mininet` (the CLI path a teacher
    runs): every step of labs/13-real-thing.yaml passes, and --explain shows
    the dovecot_set task's check failing before its solution (a clear-text
    LOGIN accepted) and passing after (refused, while STARTTLS works). Its
    events are validated in tests/test_trace_vocabulary_labs.py's mininet
    half; on local the lab is left out of every lab-iterating test."""
    from tests.labsets import lab_params

    assert [p.id for p in lab_params("mininet") if p.id == "13-real-thing"], "in the mininet half"
    assert not [p.id for p in lab_params("local") if p.id == "13-real-thing"], "not on local"
    argv = [sys.executable, "-m", "sim.cli", "check", "real-thing", "--backend", "mininet"]
    done = subprocess.run(
        [*argv, "--json", "--explain"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
    )
    report = json.loads(done.stdout)
    assert report["passed"], json.dumps(report, indent=1)[:3000]
    assert [s["id"] for s in report["labs"][0]["steps"]] == [
        "postfix-config",
        "blocked-at-home",
        "where-is-it",
        "smarthost",
        "read-it",
        "clear-text",
        "refuse-clear-text",
    ]
    explain = report["labs"][0]["steps"][-1]["explain"]
    before = {p["predicate"]: p["passed"] for p in explain["before"]["predicates"]}
    after = {p["predicate"]: p["passed"] for p in explain["after"]["predicates"]}
    assert before["reply_contains"] is False and after == {"reply_contains": True, "messages": True}
