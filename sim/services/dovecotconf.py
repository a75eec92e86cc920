"""Dovecot's configuration, generated from a node's topology fields.

A node with ``dovecot: {}`` keeps its ``mailbox`` (IMAP/POP3 users) and
``submission`` (SASL users) fields; Dovecot serves IMAP on 143/993 and POP3
on 110/995 from the same Maildirs maillab's mail viewer reads
(``STATE/NODE/mail/USER``, Maildir++ with ``.Junk``), takes mail from the
node's Postfix by LMTP (RFC 2033) on the node's loopback, and checks the
submission service's passwords for Postfix (its SASL server).

Pure, like :mod:`sim.services.postfixconf`: /etc/dovecot, /var/lib/dovecot
and /var/mail are the node's own directories, bind-mounted in its private
mount namespace.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from sim.services.postfixconf import PostfixConfig, Setting
from sim.topology.model import Node

__all__ = ["DOVECOT_LOG", "dovecot_config"]

#: Dovecot's log (its master opens it as root).
DOVECOT_LOG = "/var/lib/dovecot/dovecot.log"


def dovecot_config(
    node: Node, address: IPv4Address, *, cert_file: str, key_file: str
) -> PostfixConfig:
    """dovecot.conf and its users file (see the module docstring); the same
    container as Postfix's: settings with the topology field behind each."""
    services = node.services
    conf = PostfixConfig()

    def line(text: str, source: str) -> None:
        conf.main.append(Setting("dovecot.conf", text, source))

    line("protocols = imap pop3 lmtp", "mailbox (IMAP, POP3); postfix delivers by LMTP")
    line(f"listen = {address}, 127.0.0.1", f"nodes.{node.name}.ip")
    line("base_dir = /var/lib/dovecot/run", "(the node's own run directory)")
    line("state_dir = /var/lib/dovecot", "(the node's own state)")
    line(f"log_path = {DOVECOT_LOG}", "(maillab reads the log into trace events)")
    line("auth_verbose = yes", "(failed logins in the log)")
    line(
        "login_log_format_elements = user=<%u> method=%m rip=%r rport=%{rport} lip=%l mpid=%e %c",
        "(the client's port: maillab knows the experiment by it)",
    )
    line("ssl = yes", "mailbox: 993/995 and STARTTLS (the lab CA)")
    line(f"ssl_cert = <{cert_file}", "(the lab CA)")
    line(f"ssl_key = <{key_file}", "(the lab CA)")
    line("disable_plaintext_auth = yes", "(passwords only over TLS, as maillab's mailbox)")
    line("auth_mechanisms = plain login", "submission.users / mailbox.users")
    line("first_valid_uid = 8", "(mail processes run as user mail)")
    line("mail_location = maildir:/var/mail/%n", "(the Maildirs maillab's mail viewer reads)")
    line("mail_uid = mail", "(owner of the Maildirs)")
    line("mail_gid = mail", "(owner of the Maildirs)")
    line(
        "passdb {\n  driver = passwd-file\n"
        "  args = scheme=PLAIN username_format=%u /etc/dovecot/users\n}",
        "mailbox.users, submission.users",
    )
    line(
        "userdb {\n  driver = static\n"
        "  args = uid=mail gid=mail home=/var/mail/%n allow_all_users=yes\n}",
        "(every mailbox under /var/mail)",
    )
    line(
        "service lmtp {\n  inet_listener lmtp {\n    address = 127.0.0.1\n    port = 24\n  }\n}",
        "postfix: virtual_transport = lmtp:inet:127.0.0.1:24",
    )
    line(
        "service auth {\n  inet_listener {\n    address = 127.0.0.1\n    port = 12345\n  }\n}",
        "postfix: smtpd_sasl_path = inet:127.0.0.1:12345",
    )
    line("lmtp_save_to_detail_mailbox = no", "(as maillab's MX)")
    for key, value in services.dovecot.conf if services.dovecot is not None else ():
        # Written last: for a top-level setting given twice, Dovecot keeps
        # the last value (doveconf -h shows which).
        line(f"{key} = {value}", f"dovecot.conf.{key}")
    users: list[str] = []
    if services.mailbox is not None:
        domains = services.mx.domains if services.mx is not None else ()
        for user, password in services.mailbox.users:
            users.append(f"{user}:{password}")
            users += [f"{user}@{domain}:{password}" for domain in domains]
    if services.submission is not None:
        users += [f"{user}:{password}" for user, password in services.submission.users]
    conf.tables["users"] = "".join(f"{u}\n" for u in dict.fromkeys(users))
    return conf
