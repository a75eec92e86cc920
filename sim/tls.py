"""The certificate authority of a running lab.

STARTTLS (RFC 3207) and implicit TLS (RFC 8314) need certificates. At start
the lab has its own CA (made with ``cryptography``) and issues each service a
certificate for its host names; lab clients trust only that CA. The CA's
certificate is written to the state directory so that real tools (swaks,
openssl s_client) can be pointed at it.

Making the CA and the certificates was ~10 ms of every ``maillab send``, which
runs on a fresh state directory, so, like the DKIM keys
(sim.services.dkimkeys), they come from a per-user cache,
``$XDG_CACHE_HOME/maillab/tls/`` (sim.usercache): the CA made once per user
(again a month before it expires), each service certificate once per CA and
host names (again a week before it expires), then copied into the state
directory. Lab certificates are trusted by lab clients only;
``MAILLAB_TLS_CACHE=0`` turns the cache off (a fresh CA per state directory).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
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

#: A cached CA is made again when it has less than this left (it lasts a year).
CA_MARGIN = dt.timedelta(days=30)
#: A cached service certificate likewise (it lasts 90 days).
CERT_MARGIN = dt.timedelta(days=7)


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
        cache = _cache_dir()
        cached = cache / f"ca-{_digest(name.encode())}" if cache is not None else None
        found = _cached_pair(cached, CA_MARGIN) if cached is not None else None
        if found is not None:
            key_pem, cert_pem = found
        else:
            key_pem, cert_pem = _new_ca(name)
            if cached is not None:
                _store_pair(cached, key_pem, cert_pem)
        _write(key_path, key_pem, private=True)
        _write(self.cert_path, cert_pem)
        self._key = serialization.load_pem_private_key(key_pem, None)
        self._cert = x509.load_pem_x509_certificate(cert_pem)

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
        cache = _cache_dir()
        cached = None
        if cache is not None:
            names = "\0".join(hostnames).encode()
            what = self._cert.public_bytes(serialization.Encoding.DER) + b"\0" + names
            cached = cache / f"cert-{_digest(what)}"
        found = _cached_pair(cached, CERT_MARGIN) if cached is not None else None
        if found is not None:
            key_pem, cert_pem = found
        else:
            key_pem, cert_pem = self._new_cert(hostnames)
            if cached is not None:
                _store_pair(cached, key_pem, cert_pem)
        # Key first: a certificate on disk always has its key beside it.
        _write(key_path, key_pem, private=True)
        _write(cert_path, cert_pem)
        return cert_path, key_path

    def _new_cert(self, hostnames: list[str]) -> tuple[bytes, bytes]:
        """A fresh key and a certificate for it signed by this CA (PEM)."""
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
        return _key_pem(key), cert.public_bytes(serialization.Encoding.PEM)

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


def _new_ca(name: str) -> tuple[bytes, bytes]:
    """A fresh CA key and its self-signed certificate (PEM)."""
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
    return _key_pem(key), cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _digest(data: bytes) -> str:
    return hashlib.sha256(b"maillab-tls-v1\0" + data).hexdigest()[:32]


def _cache_dir() -> Path | None:
    from sim.usercache import cache_dir

    return cache_dir("tls")


def _cached_pair(stem: Path, margin: dt.timedelta) -> tuple[bytes, bytes] | None:
    """(key, certificate) PEM kept under ``stem``, if they are there, match
    and are valid for ``margin`` more; else None (made again)."""
    try:
        key_pem = stem.with_suffix(".key").read_bytes()
        cert_pem = stem.with_suffix(".pem").read_bytes()
        key = serialization.load_pem_private_key(key_pem, None)
        cert = x509.load_pem_x509_certificate(cert_pem)
    except (OSError, ValueError, TypeError):
        return None
    if cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        return None
    if cert.not_valid_after_utc < dt.datetime.now(dt.UTC) + margin:
        return None
    return key_pem, cert_pem


def _store_pair(stem: Path, key_pem: bytes, cert_pem: bytes) -> None:
    """Keep a pair in the user's cache (best effort: losing it costs a new one)."""
    with contextlib.suppress(OSError):
        stem.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write(stem.with_suffix(".key"), key_pem, private=True)
        _write(stem.with_suffix(".pem"), cert_pem)


def _write(path: Path, data: bytes, private: bool = False) -> None:
    """Write under a temporary name first, so a crash never leaves half a key."""
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
        if not private:
            os.chmod(tmp.name, 0o644)  # a certificate: real tools may read it
        tmp.write(data)
    Path(tmp.name).replace(path)
