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
from sim.services.labtime import FAKETIME_VARIABLES
from sim.services.maillog import MailLogReader
from sim.services.postfixconf import greylist_delay, postfix_config
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
    # mx.checks.dnsbl: reject → postscreen's DNSBL test, not smtpd's.
    assert "reject_rbl_client" not in rules
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


def test_the_dnsbl_check_goes_through_postscreen() -> None:
    main = _config(with_real(parity_topology()), "mx-qq")
    assert main["postscreen_dnsbl_sites"] == "zen.dnsbl.example*1"
    assert main["postscreen_dnsbl_threshold"] == "1"
    assert main["postscreen_dnsbl_action"] == "enforce"
    assert main["postscreen_access_list"] == "permit_mynetworks"
    # A change of listing counts from the next connection (1 s cache).
    assert main["postscreen_dnsbl_min_ttl"] == main["postscreen_dnsbl_max_ttl"] == "1s"
    # Only the DNSBL test: the deep protocol tests would make each new
    # client disconnect and come back.
    for test in ("pipelining", "non_smtp_command", "bare_newline"):
        assert main[f"postscreen_{test}_enable"] == "no"
    services = {line.split()[0]: line.split() for line in main["#master"].splitlines()[1:]}
    assert services["203.0.113.25:25"][1:] == ["inet", "n", "-", "n", "-", "1", "postscreen"]
    assert services["smtpd"][1] == "pass"
    assert services["dnsblog"][-1] == "dnsblog" and services["tlsproxy"][-1] == "tlsproxy"
    # Each line beside the topology field it came from.
    assert (
        "postscreen_dnsbl_sites = zen.dnsbl.example*1 <- mx.checks.dnsbl: reject, mx.dnsbl"
        in (main["#sources"])
    )


def test_a_dnsbl_check_that_only_warns_stays_in_smtpd(tmp_path: Path) -> None:
    text = (Path(__file__).parent / "data" / "postfix-parity.yaml").read_text()
    path = tmp_path / "warn.yaml"
    path.write_text(text.replace("dnsbl: reject", "dnsbl: header"))
    main = _config(with_real(sim.load_topology(path)), "mx-qq")
    assert (
        "warn_if_reject reject_rbl_client zen.dnsbl.example"
        in (main["smtpd_recipient_restrictions"])
    )
    assert "postscreen_dnsbl_sites" not in main
    assert "postscreen" not in main["#master"]


POSTSCREEN_LOG = """\
Dec 06 14:02:28 mx postfix/postscreen[70]: CONNECT from [203.0.113.77]:46333 to \
[203.0.113.25]:25
Dec 06 14:02:28 mx postfix/dnsblog[71]: addr 203.0.113.77 listed by domain zen.dnsbl.example as \
127.0.0.2
Dec 06 14:02:28 mx postfix/postscreen[70]: DNSBL rank 1 for [203.0.113.77]:46333
Dec 06 14:02:28 mx postfix/tlsproxy[77]: CONNECT from [203.0.113.77]:46333
Dec 06 14:02:28 mx postfix/postscreen[70]: NOQUEUE: reject: RCPT from [203.0.113.77]:46333: \
550 5.7.1 Service unavailable; client [203.0.113.77] blocked using zen.dnsbl.example; \
from=<spoofer@evil.example>, to=<bob@qq.example>, proto=ESMTP, helo=<spoofer.home.example>
Dec 06 14:02:28 mx postfix/postscreen[70]: DISCONNECT [203.0.113.77]:46333
Dec 06 14:02:29 mx postfix/postscreen[70]: CONNECT from [203.0.113.99]:42317 to \
[203.0.113.25]:25
Dec 06 14:02:30 mx postfix/postscreen[70]: PASS NEW [203.0.113.99]:42317
Dec 06 14:02:30 mx postfix/smtpd[72]: connect from spammer.home.example[203.0.113.99]:42317
"""


def test_postscreen_log_lines_become_the_dnsbl_events() -> None:
    tags = {("203.0.113.77", 46333): "t-listed", ("203.0.113.99", 42317): "t-clean"}
    reader = MailLogReader(lambda ip, port: tags.get((ip, port)))
    events = [e for line in POSTSCREEN_LOG.splitlines() for e in reader.feed(line)]
    by_kind = [(e.trace_id, e.kind, e.data.get("event") or e.data.get("check")) for e in events]
    # The same events smtpd's reject_rbl_client gave; one connect per client
    # (smtpd's, after postscreen passed it on, is not a second one).
    assert by_kind == [
        ("t-listed", "smtp", "connect"),
        ("t-listed", "check", "dnsbl"),
        ("t-listed", "smtp", None),
        ("t-clean", "smtp", "connect"),
    ]
    check, refusal = events[1].data, events[2].data
    assert (check["result"], check["action"], check["stage"]) == ("listed", "reject", "rcpt")
    assert check["details"] == {"rank": 1}
    assert (refusal["stage"], refusal["code"], refusal["enhanced"]) == ("rcpt", 550, "5.7.1")
    assert refusal["text"] == (
        "Service unavailable; client [203.0.113.77] blocked using zen.dnsbl.example"
    )
    assert reader.screened == {}


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
    # Postfix runs on lab time (libfaketime): relay.retry [5m, 30m, 2h] and
    # give_up 5d in lab seconds, as maillab's relay reads them.
    assert main["minimal_backoff_time"] == "300s"
    assert main["maximal_backoff_time"] == "7200s"
    assert main["queue_run_delay"] == "300s"
    assert main["maximal_queue_lifetime"] == main["bounce_queue_lifetime"] == "432000s"
    # connect_timeout: 30s, a lab duration too.
    assert main["smtp_connect_timeout"] == "30s"


def test_postfix_and_postgrey_are_configured_in_lab_seconds() -> None:
    """On lab time the durations are the topology's; Postfix's own I/O time
    limits keep their real length (× time_scale 60); the master passes
    libfaketime's variables on to its children."""
    topology = with_real(parity_topology())
    grey = next(n for n in topology.nodes if n.name == "mx-grey")
    assert greylist_delay(topology, grey) == 300  # greylist: 5m
    main = _config(topology, "mx-grey")
    assert "check_policy_service inet:127.0.0.1:10023" in main["smtpd_recipient_restrictions"]
    assert main["smtpd_timeout"] == f"{300 * 60}s"
    assert main["milter_command_timeout"] == f"{30 * 60}s"
    assert main["smtpd_policy_service_timeout"] == f"{100 * 60}s"
    imported = main["import_environment"].split()
    for name in FAKETIME_VARIABLES:
        assert name in imported
    # Postfix's own defaults stay (LANG=C, MAIL_CONFIG...).
    assert {"MAIL_CONFIG", "TZ", "LANG=C"} <= set(imported)


def test_at_time_scale_1_postfix_keeps_its_own_io_limits(tmp_path: Path) -> None:
    text = (Path(__file__).parent / "data" / "postfix-parity.yaml").read_text()
    path = tmp_path / "scale1.yaml"
    path.write_text(text.replace("time_scale: 60", "time_scale: 1"))
    main = _config(with_real(sim.load_topology(path)), "smtp-isp")
    assert "smtpd_timeout" not in main
    assert main["minimal_backoff_time"] == "300s"


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


def test_an_expired_message_bounces_each_recipient_still_deferred() -> None:
    """qmgr logs the give-up (maximal_queue_lifetime) for the message, not per
    recipient: the recipients still deferred are bounced with reason
    give_up, their last reply and stage, as maillab's relay reports them."""
    reader = MailLogReader(lambda ip, port: None)
    reader.queue["4FE1B23213A"] = "t-1"
    relay = "relay=none, delay=432000, delays=432000/0/0/0"
    lines = [
        f"Dec 06 14:10:01 smtp postfix/smtp[7]: 4FE1B23213A: to=<dave@later.example>, {relay}, "
        "dsn=4.4.1, status=deferred (connect to mx.later.example[203.0.113.40]:25: "
        "Connection refused)",
        f"Dec 06 14:10:01 smtp postfix/smtp[7]: 4FE1B23213A: to=<carol@later.example>, {relay}, "
        "dsn=4.4.1, status=deferred (connect to mx.later.example[203.0.113.40]:25: "
        "Connection refused)",
        "Dec 06 14:10:02 smtp postfix/lmtp[8]: 4FE1B23213A: to=<carol@later.example>, "
        "relay=127.0.0.1[127.0.0.1]:24, delay=1, delays=0/0/0/0, dsn=2.0.0, status=sent (250 Ok)",
        "Dec 06 18:10:03 smtp postfix/bounce[10]: 4FE1B23213A: sender delay notification: "
        "3DDB0235534",
        "Dec 11 15:09:01 smtp postfix/qmgr[9]: 4FE1B23213A: from=<alice@home.example>, "
        "status=expired, returned to sender",
        "Dec 11 15:09:02 smtp postfix/bounce[10]: 4FE1B23213A: sender non-delivery "
        "notification: D77B42355A3",
    ]
    events = [e for line in lines for e in reader.feed(line)]
    bounced = [e for e in events if e.kind == "queue" and e.data["event"] == "bounced"]
    given_up = [e for e in bounced if e.data.get("reason") == "give_up"]
    assert [(e.trace_id, e.data["rcpt"]) for e in given_up] == [("t-1", "dave@later.example")]
    assert given_up[0].data["reply"]["code"] == 451 and given_up[0].data["stage"] is None
    assert reader.deferred == {}  # nothing left to give up on
    # The delay warning (delay_warning_time, maillab's warn_after) is a
    # warning, the non-delivery report a DSN, as maillab's relay reports them.
    kinds = [(e.data["event"], e.summary.split(": ", 2)[-1]) for e in events if e.kind == "queue"]
    assert ("warning", "delay warning sent to the sender as 3DDB0235534") in kinds
    assert ("dsn", "bounce (DSN) sent to the sender as D77B42355A3") in kinds
    warning = next(e for e in events if e.kind == "queue" and e.data["event"] == "warning")
    assert warning.data["rcpts"] == ["dave@later.example"] and warning.trace_id == "t-1"


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
    mail = ("dovecot", "opendkim", "opendmarc", "policyd-spf", "postgrey", "postfix", "faketime")
    complaints = [line for line in done.stdout.splitlines() if any(word in line for word in mail)]
    assert complaints == []


def test_the_dovecot_set_action_needs_a_dovecot_node_and_a_top_level_key() -> None:
    from sim.lab.actions import action_from_data, action_problems

    topology = with_real(parity_topology())

    def problems(node: str, key: str) -> list[tuple[tuple[str, ...], str]]:
        action = {"dovecot_set": {"node": node, "key": key, "value": "yes"}}
        return action_problems(action_from_data(action), topology)

    assert problems("mx-qq", "disable_plaintext_auth") == []
    [(where, message)] = problems("ns", "disable_plaintext_auth")
    assert where == ("node",) and "runs no dovecot service" in message
    [(where, message)] = problems("mx-qq", "service imap-login {")
    assert where == ("key",) and "nested sections" in message
    [(where, message)] = problems("mx-qq", "ssl = yes")
    assert where == ("key",) and "not a dovecot.conf setting name" in message


def test_a_topology_sets_dovecot_conf_keys_beside_the_generated_ones(tmp_path: Path) -> None:
    from sim.validation import validate_path

    root = Path(__file__).resolve().parent.parent
    topology = sim.load_topology(root / "topologies" / "real-thing.yaml")
    node = topology.node("mx-qq")
    assert node.ip is not None
    conf = dovecot_config(node, node.ip.ip, cert_file="/c.pem", key_file="/c.key")
    lines = [(s.text, s.source) for s in conf.main if s.text.startswith("disable_plaintext")]
    # The topology's value comes last: Dovecot keeps the last one.
    assert lines[-1] == ("disable_plaintext_auth = no", "dovecot.conf.disable_plaintext_auth")
    text = (root / "topologies" / "real-thing.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace('conf: {disable_plaintext_auth: "no"}', 'conf: {"ssl {": "no"}'))
    [problem] = validate_path(bad)
    assert "nested sections" in problem.message
    assert problem.message.startswith("nodes.mx-qq.services.dovecot.conf")


def test_a_lab_file_with_a_wrong_dovecot_set_is_refused_at_its_line(tmp_path: Path) -> None:
    import shutil

    from sim.validation import validate_path

    root = Path(__file__).resolve().parent.parent
    (tmp_path / "topologies").mkdir()
    shutil.copy(root / "topologies" / "real-thing.yaml", tmp_path / "topologies")
    text = (root / "labs" / "13-real-thing.yaml").read_text()
    good = "dovecot_set: {node: mx-qq, key: disable_plaintext_auth"
    mistake = 'dovecot_set: {node: mx-qq, key: ssl, value: "yes"}'
    assert good in text and mistake in text
    text = text.replace(good, "dovecot_set: {node: ns, key: disable_plaintext_auth")
    text = text.replace(mistake, 'dovecot_set: {node: mx-qq, key: "ssl {", value: "yes"}')
    (tmp_path / "labs").mkdir()
    lab = tmp_path / "labs" / "lab.yaml"
    lab.write_text(text)
    lines = text.splitlines()
    found = [(p.line, p.message) for p in validate_path(lab)]
    assert [(lines[n - 1].strip()[:16], m.split(": ", 1)[0]) for n, m in found] == [
        ("- dovecot_set: {", "steps[6].solution[0].dovecot_set.node"),
        ("- - dovecot_set:", "steps[6].mistakes[0][0].dovecot_set.key"),
    ]
    assert "ns runs no dovecot service" in found[0][1]
    assert "nested sections" in found[1][1]
