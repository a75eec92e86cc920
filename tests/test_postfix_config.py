"""Postfix and Dovecot nodes without root: the configuration generated from
the topology, the log read as trace events, and the local backend's refusal."""

from __future__ import annotations

import json
import os
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from postfix_support import mail_software_missing, parity_topology, with_real

import sim
from sim.errors import BackendError
from sim.services.dovecotconf import dovecot_config
from sim.services.maillog import MailLogReader
from sim.services.postfixconf import postfix_config
from sim.topology.model import Topology


def _config(topology: Topology, node: str) -> dict[str, str]:
    found = next(n for n in topology.nodes if n.name == node)
    assert found.ip is not None
    conf = postfix_config(
        topology,
        found,
        found.ip.ip,
        dovecot=True,
        ca_file="/ca.pem",
        cert_file="/c.pem",
        key_file="/c.key",
    )
    main = dict(s.text.split(" = ", 1) for s in conf.main)
    main["#master"] = conf.master_cf()
    main["#sources"] = "\n".join(f"{s.text} <- {s.source}" for s in conf.main)
    return main


def test_the_receiving_checks_become_smtpd_restrictions() -> None:
    main = _config(with_real(parity_topology()), "mx-qq")
    rules = main["smtpd_recipient_restrictions"]
    # mx.checks: ptr, dnsbl, spf, all "reject", in the topology's order.
    assert rules.index("reject_unauth_destination") < rules.index(
        "reject_unknown_reverse_client_hostname"
    )
    assert "reject_rbl_client zen.dnsbl.example" in rules
    assert "check_policy_service unix:private/policyd-spf" in rules
    assert main["smtpd_relay_restrictions"].endswith("reject_unauth_destination")
    assert main["inet_interfaces"] == "203.0.113.25"
    assert main["myhostname"] == "mx.qq.example"
    assert main["virtual_mailbox_domains"] == "qq.example"
    assert main["virtual_transport"] == "lmtp:inet:127.0.0.1:24"
    assert "reject_unknown_reverse_client_hostname <- " not in main["#sources"]
    assert "mx.checks.ptr: reject" in main["#sources"]
    # No daemon chrooted (the fifth column of master.cf), and the SPF policy
    # service spawned from master.cf.
    for line in main["#master"].splitlines()[1:]:
        assert line.split()[4] == "n", line
    assert "/usr/bin/policyd-spf" in main["#master"]
    assert "203.0.113.25:25 inet" in main["#master"]


def test_a_check_that_does_not_reject_only_warns(tmp_path: Path) -> None:
    text = (Path(__file__).parent / "data" / "postfix-parity.yaml").read_text()
    path = tmp_path / "warn.yaml"
    path.write_text(text.replace("ptr: reject", "ptr: header"))
    main = _config(with_real(sim.load_topology(path)), "mx-qq")
    rules = main["smtpd_recipient_restrictions"]
    assert "warn_if_reject reject_unknown_reverse_client_hostname" in rules


def test_submission_and_relay_settings() -> None:
    main = _config(with_real(parity_topology()), "smtp-isp")
    assert "192.0.2.25:587 inet" in main["#master"]
    assert "smtpd_tls_auth_only=yes" in main["#master"]
    assert "smtpd_tls_wrappermode=yes" in main["#master"]
    assert main["smtpd_sasl_type"] == "dovecot"
    # relay.retry: [5m, 30m, 2h] at time_scale 60 → 5 s and 120 s of real time.
    assert main["minimal_backoff_time"] == "5s"
    assert main["maximal_backoff_time"] == "120s"


def test_dovecot_users_and_maildirs() -> None:
    topology = with_real(parity_topology())
    node = next(n for n in topology.nodes if n.name == "mx-qq")
    conf = dovecot_config(node, IPv4Address("203.0.113.25"), cert_file="/c", key_file="/k")
    text = "\n".join(s.text for s in conf.main)
    assert "mail_location = maildir:/var/mail/%n" in text
    assert "port = 24" in text and "port = 12345" in text
    assert conf.tables["users"].splitlines() == ["bob:bobpw", "bob@qq.example:bobpw"]


LOG = """\
Dec 06 11:15:59 mx postfix/smtpd[31095]: connect from unknown[203.0.113.66]:44035
Dec 06 11:16:00 mx postfix/smtpd[31095]: NOQUEUE: reject: RCPT from unknown[203.0.113.66]:44035: \
550 5.7.1 Client host rejected: cannot find your reverse hostname, [203.0.113.66]; \
from=<x@home.example> to=<bob@qq.example> proto=ESMTP helo=<noptr.home.example>
Dec 06 11:16:00 mx postfix/smtpd[31095]: disconnect from unknown[203.0.113.66]:44035 ehlo=2
Dec 06 11:16:01 smtp postfix/submission/smtpd[7]: connect from x[198.51.100.200]:41183
Dec 06 11:16:01 smtp postfix/submission/smtpd[7]: 4A1B2C3D4E: client=x[198.51.100.200]:41183, \
sasl_method=PLAIN, sasl_username=alice@home.example
Dec 06 11:16:02 smtp postfix/smtp[9]: 4A1B2C3D4E: to=<nobody@qq.example>, \
relay=mx.qq.example[203.0.113.25]:25, delay=0.2, delays=0/0/0.1/0, dsn=5.1.1, status=bounced \
(host mx.qq.example[203.0.113.25] said: 550 5.1.1 <nobody@qq.example>: Recipient address \
rejected: User unknown in virtual mailbox table (in reply to RCPT TO command))
Dec 06 11:16:02 smtp postfix/bounce[10]: 4A1B2C3D4E: sender non-delivery notification: 5B2C3D4E5F
Dec 06 11:16:02 smtp postfix/lmtp[11]: 5B2C3D4E5F: to=<alice@home.example>, \
relay=127.0.0.1[127.0.0.1]:24, delay=0.1, delays=0/0/0/0, dsn=2.0.0, status=sent \
(250 2.0.0 <alice@home.example> abc Saved)
Dec 06 11:16:03 imap-login: Info: Login: user=<bob>, method=PLAIN, rip=198.51.100.200, \
rport=50000, lip=203.0.113.25, mpid=12, TLS
"""


def test_log_lines_become_the_events_maillab_services_emit() -> None:
    tags = {("203.0.113.66", 44035): "t-ptr", ("198.51.100.200", 41183): "t-sub"}
    tags[("198.51.100.200", 50000)] = "t-imap"
    reader = MailLogReader(lambda ip, port: tags.get((ip, port)))
    events = [e for line in LOG.splitlines() for e in reader.feed(line)]
    by_kind = [(e.trace_id, e.kind, e.data.get("event") or e.data.get("check")) for e in events]
    assert by_kind == [
        ("t-ptr", "smtp", "connect"),
        ("t-ptr", "check", "ptr"),
        ("t-ptr", "smtp", None),
        ("t-sub", "smtp", "connect"),
        ("t-sub", "queue", "bounced"),
        ("t-sub", "queue", "dsn"),
        ("t-sub", "queue", "delivered"),
        ("t-sub", "delivery", None),
        ("t-imap", "imap", "login"),
    ]
    events = [e for e in events if e.data.get("event") != "connect"]
    bounced = events[2].data
    assert bounced["stage"] == "rcpt" and bounced["rcpt"] == "nobody@qq.example"
    assert bounced["reply"]["code"] == 550 and bounced["reply"]["enhanced"] == "5.1.1"
    assert "in reply to" not in bounced["reply"]["text"]
    # The DSN's own queue events are marked, so a send does not mistake them
    # for the message's fate.
    assert events[4].data["bounce"] is True and events[5].data["mailbox"] == "alice@home.example"


def test_the_local_backend_refuses_real_software_in_one_line(tmp_path: Path) -> None:
    topology = with_real(parity_topology())
    with pytest.raises(BackendError) as err:
        sim.start(topology, backend="local", state_dir=tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert "runs only on the mininet backend, not on local" in message


def _real_yaml(tmp_path: Path) -> Path:
    text = (Path(__file__).parent / "data" / "postfix-parity.yaml").read_text()
    marker = "          bob: bobpw\n"
    path = tmp_path / "real.yaml"
    path.write_text(text.replace(marker, marker + "      postfix: {}\n      dovecot: {}\n"))
    return path


def test_validate_with_backend_local_names_the_line(tmp_path: Path) -> None:
    from sim.validation import validate_path

    path = _real_yaml(tmp_path)
    assert validate_path(path) == []
    assert validate_path(path, "mininet") == []
    [problem] = validate_path(path, "local")
    assert problem.message.startswith("mx-qq: the postfix service runs only on the mininet")
    assert path.read_text().splitlines()[problem.line - 1].strip() == "postfix: {}"


def test_the_command_line_refuses_with_exit_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = _real_yaml(tmp_path)
    for argv in (
        ["validate", str(path), "--backend", "local"],
        ["send", str(path), "--from", "noptr", "--to", "bob@qq.example", "--backend", "local"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "sim.cli", *argv],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 2, done
        lines = (done.stdout + done.stderr).strip().splitlines()
        assert len(lines) == 1 and "runs only on the mininet backend" in lines[0], lines


def test_a_message_relayed_from_another_node_is_known_by_its_message_id() -> None:
    lines = [
        "Dec 06 11:16:01 mx postfix/smtpd[5]: connect from smtp.home.example[192.0.2.25]:57175",
        "Dec 06 11:16:01 mx postfix/smtpd[5]: DF39622CCA5: client=smtp.home.example"
        "[192.0.2.25]:57175",
        "Dec 06 11:16:01 mx postfix/cleanup[6]: DF39622CCA5: message-id=<m1@home.example>",
        "Dec 06 11:16:01 mx postfix/lmtp[8]: DF39622CCA5: to=<bob@qq.example>, "
        "relay=127.0.0.1[127.0.0.1]:24, delay=0.1, delays=0/0/0/0, dsn=2.0.0, status=sent "
        "(250 2.0.0 <bob@qq.example> abc Saved)",
    ]
    reader = MailLogReader(lambda ip, port: None, {"m1@home.example": "t-1"}.get)
    events = [e for line in lines for e in reader.feed(line)]
    assert [(e.trace_id, e.kind) for e in events] == [
        (None, "smtp"),  # the relay's connection: not tagged by any experiment
        ("t-1", "queue"),
        ("t-1", "delivery"),
    ]


def test_dkim_signing_and_dmarc_become_milters() -> None:
    topology = with_real(parity_topology())
    isp = next(n for n in topology.nodes if n.name == "smtp-isp")
    assert isp.ip is not None
    conf = postfix_config(
        topology, isp, isp.ip.ip, dovecot=True, ca_file="/ca", cert_file="/c", key_file="/k"
    )
    assert "Mode s\n" in conf.tables["opendkim.conf"]
    assert "Nameservers 198.51.100.53" in conf.tables["opendkim.conf"]
    assert conf.tables["dkim/signingtable"] == "*@home.example mail2026._domainkey.home.example\n"
    main = _config(topology, "mx-qq")
    assert main["smtpd_milters"] == "inet:127.0.0.1:8891, inet:127.0.0.1:8893"
    assert "mx.checks.dmarc: policy" in main["#sources"]


def test_verdicts_in_a_stored_header_become_checks() -> None:
    from sim.services.maillog import header_verdicts

    head = (
        "Authentication-Results: mx.qq.example; dmarc=fail (p=reject dis=none) "
        "header.from=home.example\n"
        "Authentication-Results: mx.qq.example;\n\tdkim=pass (2048-bit key) header.d=home.example\n"
        "Received-SPF: Pass (mailfrom) identity=mailfrom; client-ip=192.0.2.25\n"
        "Subject: hi"
    )
    verdicts = {check: result for check, result, _ in header_verdicts(head)}
    assert verdicts == {"spf": "pass", "dmarc": "fail", "dkim": "pass"}


def test_a_milter_refusal_is_a_data_stage_rejection() -> None:
    reader = MailLogReader(lambda ip, port: None)
    reader.queue["831ED22D012"] = "t-1"
    line = (
        "Dec 06 11:28:22 mx postfix/cleanup[27441]: 831ED22D012: milter-reject: END-OF-MESSAGE "
        "from spoofer.home.example[203.0.113.77]: 5.7.1 rejected by DMARC policy for "
        "home.example; from=<x@evil.example> to=<bob@qq.example> proto=ESMTP helo=<s>"
    )
    check, smtp = reader.feed(line)
    assert (check.trace_id, check.data["check"], check.data["result"]) == ("t-1", "dmarc", "fail")
    assert smtp.data["stage"] == "data" and smtp.data["code"] == 550


def test_the_postfix_set_action_needs_a_postfix_node() -> None:
    from sim.lab.actions import action_from_data, action_problems

    topology = with_real(parity_topology())
    ok = action_from_data({"postfix_set": {"node": "mx-qq", "key": "relayhost", "value": ""}})
    assert action_problems(ok, topology) == []
    wrong = action_from_data({"postfix_set": {"node": "ns", "key": "relayhost", "value": ""}})
    [(where, message)] = action_problems(wrong, topology)
    assert where == ("node",) and "runs no postfix service" in message


def test_realconfig_shows_each_line_beside_its_field() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    topology = root / "topologies" / "real-thing.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "sim.cli", "realconfig", str(topology), "mx-qq", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    shown = json.loads(done.stdout)
    assert set(shown["files"]) >= {"/etc/postfix/main.cf", "/etc/dovecot/dovecot.conf"}
    sources = {s["text"]: s["source"] for s in shown["settings"]}
    assert sources["inet_interfaces = 203.0.113.25"] == "nodes.mx-qq.ip"
    restrictions = next(t for t in sources if t.startswith("smtpd_recipient_restrictions"))
    assert "mx.checks.spf: reject" in sources[restrictions]
    # A node without real software: one line, exit 2.
    done = subprocess.run(
        [sys.executable, "-m", "sim.cli", "realconfig", str(topology), "ns"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "maillab realconfig: ns runs neither postfix nor dovecot "
        "(add `postfix: {}` or `dovecot: {}` to its services)"
    ]


def test_validation_says_what_a_real_software_node_lacks(tmp_path: Path) -> None:
    from sim.validation import validate_path

    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\n"
        "settings: {resolver: 10.0.0.53}\n"
        "nodes:\n"
        "  r: {kind: router}\n"
        "  ns: {kind: host, ip: 10.0.0.53/24, gateway: r, services: {dns: {zones: [x.example]}}}\n"
        "  a:\n"
        "    kind: host\n"
        "    ip: 10.0.0.2/24\n"
        "    gateway: r\n"
        "    services:\n"
        "      submission: {users: {u@x.example: p}}\n"
        "      relay: {}\n"
        "      postfix: {}\n"
        "  b: {kind: host, ip: 10.0.0.3/24, gateway: r, services: {postfix: {}}}\n"
        "zones:\n"
        "  x.example: |\n"
        "    @ A 10.0.0.2\n"
    )
    problems = validate_path(path)
    assert [(p.line, p.message.split(": ", 1)[0]) for p in problems] == [
        (13, "nodes.a.services.postfix"),
        (14, "nodes.b.services.postfix"),
    ]
    assert "add `dovecot: {}`" in problems[0].message


def test_a_missing_program_is_one_line_naming_its_package() -> None:
    from sim.errors import ServiceError
    from sim.services import realmail

    realmail.PACKAGES["maillab-no-such-daemon"] = "maillab-no-such-package"
    try:
        with pytest.raises(ServiceError) as err:
            realmail.need("maillab-no-such-daemon")
    finally:
        del realmail.PACKAGES["maillab-no-such-daemon"]
    assert str(err.value) == (
        "maillab-no-such-daemon is not installed (Debian package maillab-no-such-package: "
        "`make system` installs it)"
    )


@pytest.mark.skipif(
    mail_software_missing() is not None or os.geteuid() != 0,
    reason=f"needs root and the real mail software ({mail_software_missing() or 'not root'})",
)
def test_system_setup_check_finds_every_mail_capability() -> None:
    """scripts/system-setup.sh --check: with the packages installed, no line
    about them (a private doveconf -c FILE works, the milters and policy
    services are there), and nothing of the system's mail service runs."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        ["sh", str(root / "scripts" / "system-setup.sh"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    mail = ("dovecot", "opendkim", "opendmarc", "policyd-spf", "postgrey", "postfix")
    complaints = [line for line in done.stdout.splitlines() if any(word in line for word in mail)]
    assert complaints == []
