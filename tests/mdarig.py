"""A lab for the mailbox tests (IMAP, POP3, the read experiment).

``tests/fixtures/topologies/good/mda.yaml``: ``mail`` (203.0.113.25) runs
the MX for qq.example and the mailbox service (bob, carol); ``client`` and
``spoofer`` send and read. Real clients on this machine (imaplib, poplib,
raw sockets) reach the servers through the loopback endpoints of
``lab.endpoints()``.
"""

from __future__ import annotations

import email.utils
import socket
import ssl
from pathlib import Path

import sim
from sim.hosting.runtime import Lab
from sim.services.maildir import Maildir, mail_root

TOPOLOGY = Path(__file__).parent / "fixtures" / "topologies" / "good" / "mda.yaml"
MAIL = "mail"
BOB, BOB_PW = "bob", "bob-secret"
CAROL, CAROL_PW = "carol", "carol-secret"
#: A name the mailbox certificate carries.
SERVER_NAME = "imap.qq.example"


def start_lab() -> Lab:
    return sim.start(sim.load_topology(TOPOLOGY))


def local(lab: Lab, port: int) -> tuple[str, int]:
    """The loopback host:port of the mailbox service's lab port ``port``."""
    for ep in lab.endpoints():
        if ep.node == MAIL and ep.service == "mailbox" and ep.lab.endswith(f":{port}"):
            assert ep.local is not None
            host, _, local_port = ep.local.rpartition(":")
            return host, int(local_port)
    raise AssertionError(f"no mailbox endpoint on port {port}")


def ca_context(lab: Lab, check_hostname: bool = False) -> ssl.SSLContext:
    """Trust the lab CA only. imaplib and poplib check the certificate against
    the host they connected to, here 127.0.0.1, which is not on it: they get
    ``check_hostname=False`` (the chain is still verified)."""
    context = ssl.create_default_context(cafile=str(lab.state_dir / "tls" / "ca.pem"))
    context.check_hostname = check_hostname
    return context


def maildir(lab: Lab) -> Maildir:
    return Maildir(mail_root(lab.state_dir, MAIL))


def message(subject: str, body: str = "Hello Bob.\n", sender: str = "alice@good.example") -> bytes:
    return (
        f"From: Alice <{sender}>\nTo: bob@qq.example\nSubject: {subject}\n"
        f"Date: {email.utils.formatdate()}\nMessage-ID: {email.utils.make_msgid()}\n\n{body}"
    ).encode()


def deliver(lab: Lab, subject: str, user: str = BOB, folder: str = "INBOX", **kw: str) -> str:
    """Store a message the way the MX does (the MX's own Maildir code)."""
    return maildir(lab).deliver(user, message(subject, **kw), folder)


def folder_path(lab: Lab, user: str = BOB, folder: str = "INBOX") -> Path:
    path = mail_root(lab.state_dir, MAIL) / user
    return path if folder == "INBOX" else path / f".{folder}"


def files(lab: Lab, user: str = BOB, folder: str = "INBOX") -> dict[str, list[str]]:
    """The message file names in new/ and cur/, as ``ls`` shows them."""
    base = folder_path(lab, user, folder)
    return {sub: sorted(p.name for p in (base / sub).iterdir()) for sub in ("new", "cur")}


def clear(lab: Lab, user: str = BOB) -> None:
    """Empty every folder of ``user`` (files and UID list)."""
    for folder in ("INBOX", "Junk"):
        base = folder_path(lab, user, folder)
        for sub in ("new", "cur"):
            for path in (base / sub).iterdir():
                path.unlink()
        (base / "maillab-uidlist").unlink(missing_ok=True)


class Raw:
    """A line-level client for malformed input, STARTTLS and disconnects."""

    def __init__(self, address: tuple[str, int], timeout: float = 5.0) -> None:
        self.sock: socket.socket = socket.create_connection(address, timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> str:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line.decode("utf-8", "replace")

    def until(self, prefix: str) -> list[str]:
        """Lines up to and including the first that starts with ``prefix``."""
        lines = []
        while True:
            lines.append(self.line())
            if lines[-1].startswith(prefix):
                return lines

    def starttls(self, context: ssl.SSLContext) -> None:
        assert not self.buf, f"plain-text bytes left before TLS: {self.buf!r}"
        self.sock = context.wrap_socket(self.sock, server_hostname=SERVER_NAME)

    def closed_by_server(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except OSError:
            return True

    def close(self) -> None:
        self.sock.close()
