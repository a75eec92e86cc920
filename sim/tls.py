"""A certificate authority made fresh for each running lab.

STARTTLS (RFC 3207) and implicit TLS (RFC 8314) need certificates. At start
the lab creates its own CA (with ``cryptography``) and issues each service a
certificate for its host names; lab clients trust only that CA. The CA's
certificate is written to the state directory so that real tools (swaks,
openssl s_client) can be pointed at it.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import tempfile
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["LabCA"]


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "maillab"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


class LabCA:
    """Issues server certificates; builds server and client SSL contexts."""

    def __init__(self, directory: Path, name: str = "maillab lab CA") -> None:
        self.directory = directory
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        self.cert_path = directory / "ca.pem"
        key_path = directory / "ca.key"
        if self.cert_path.exists() and key_path.exists():
            # The same lab restarted on its state directory keeps its CA, so a
            # client that trusted it before still does.
            self._key = serialization.load_pem_private_key(key_path.read_bytes(), None)
            self._cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
            return
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._key, self._cert = key, cert

    def issue(self, hostnames: list[str]) -> tuple[Path, Path]:
        """A certificate for ``hostnames``; returns (cert path, key path)."""
        # Services of one node start concurrently (executor threads): one at a
        # time, so a key and its certificate are always written as a pair.
        with self._lock:
            return self._issue(hostnames)

    def _issue(self, hostnames: list[str]) -> tuple[Path, Path]:
        safe = hostnames[0].replace("/", "_")
        cert_path = self.directory / f"{safe}.pem"
        key_path = self.directory / f"{safe}.key"
        if cert_path.exists() and key_path.exists():
            return cert_path, key_path
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        ca_key = self._key
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(hostnames[0]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=90))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(h) for h in hostnames]),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        # Write to a temporary name first so a crash never leaves half a key.
        for path, data in (
            (
                key_path,
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            ),
            (cert_path, cert.public_bytes(serialization.Encoding.PEM)),
        ):
            with tempfile.NamedTemporaryFile(dir=self.directory, delete=False) as tmp:
                tmp.write(data)
            Path(tmp.name).replace(path)
        return cert_path, key_path

    def server_context(self, hostnames: list[str]) -> ssl.SSLContext:
        cert, key = self.issue(hostnames)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        return _keylog(context)

    def client_context(self, verify: bool = True) -> ssl.SSLContext:
        """Lab clients trust the lab CA only. MTA-to-MTA STARTTLS is
        opportunistic (RFC 3207 §4.1 allows going on without verification),
        so relays pass ``verify=False``."""
        context = ssl.create_default_context(cafile=str(self.cert_path))
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return _keylog(context)


#: When set, every lab TLS session writes its secrets to this file (NSS key
#: log format), so Wireshark can decrypt a capture (``maillab send --pcap``
#: on mininet sets it; see sim.present.wire).
KEYLOG_ENV = "MAILLAB_TLS_KEYLOG"


def _keylog(context: ssl.SSLContext) -> ssl.SSLContext:
    path = os.environ.get(KEYLOG_ENV)
    if path:
        context.keylog_filename = path
    return context
