"""DKIM keys of a lab: made once per state directory, published in the lab DNS.

A relay that signs for ``example.test`` with selector ``s1`` needs a private
key, and receivers need the public key at ``s1._domainkey.example.test`` as a
TXT record (RFC 6376 §3.6.2.1). Real operators generate the pair once
(``opendkim-genkey``), keep the private half on the signer and publish the
public half in their zone; rotating means a new selector, never overwriting
the old record while signed mail may still be verified (RFC 6376 §3.1).

Here the pair is kept in ``STATE/dkim/<selector>._domainkey.<domain>.pem``
the first time a lab runs on a state directory, so a restarted lab (and a
message still in its queue) keeps verifying. Making an RSA-2048 key costs a
tenth of a second to a second of CPU, and every ``maillab send`` runs on a
fresh state directory, so the key itself comes from a per-user cache,
``$XDG_CACHE_HOME/maillab/dkim/<hash>.pem`` (``~/.cache`` by default), keyed
by what it is for (domain, selector, size): made once per user, then copied.
Lab keys sign lab mail only, so sharing one between a user's labs is harmless;
``MAILLAB_DKIM_CACHE=0`` turns the cache off (a fresh key per state dir). :func:`publish` adds the
TXT records to the topology's zones for every relay whose ``dkim_publish`` is
true; a lab that wants students to publish the key themselves sets it false.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import tempfile
from dataclasses import replace
from pathlib import Path

from sim import usercache
from sim.fastclass import dataclass
from sim.topology.model import Node, Topology
from sim.topology.zones import ZoneSyntaxError, fqdn, parse_zone

__all__ = [
    "KEY_BITS",
    "KeyPair",
    "cache_dir",
    "cached_pem",
    "dkim_entries",
    "ensure_keys",
    "publish",
]

#: RFC 8301 §3.2: signers MUST use at least 1024 bits and SHOULD use 2048.
KEY_BITS = 2048

_LABELS = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*$")


@dataclass(frozen=True)
class KeyPair:
    """One DKIM key: the private key (PKCS#1 PEM) and the TXT value that
    publishes its public half."""

    domain: str
    selector: str
    private_pem: bytes
    txt: str

    @property
    def record_name(self) -> str:
        """``s1._domainkey.example.test.`` (RFC 6376 §3.6.2.1)."""
        return fqdn(f"{self.selector}._domainkey.{self.domain}")

    @property
    def public_key(self) -> str:
        """The base64 ``p=`` value."""
        return self.txt.rsplit("p=", 1)[1]


def _check_name(kind: str, value: str) -> str:
    value = value.strip().lower().rstrip(".")
    if not _LABELS.match(value):
        raise ValueError(f"not a usable DKIM {kind}: {value!r}")
    return value


def dkim_entries(topology: Topology) -> list[tuple[Node, str, str]]:
    """(relay node, domain, selector) for every ``dkim`` entry of every relay."""
    out = []
    for node in topology.hosts():
        relay = node.services.relay
        if relay is None:
            continue
        for domain, selector in relay.dkim:
            out.append((node, _check_name("domain", domain), _check_name("selector", selector)))
    return out


def _txt_from_pem(pem: bytes) -> str:
    # Imported here: loading a lab file imports this module for
    # dkim_entries, and cryptography is only needed once keys are made.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    # The key is one maillab generated itself (kept 0600 in the state dir or
    # the user's cache), so OpenSSL's consistency check of its numbers, about
    # a tenth of a second of CPU per load on a small machine, is skipped: a
    # damaged file fails to parse, and a wrong key would show as a DKIM fail.
    key = serialization.load_pem_private_key(
        pem, password=None, unsafe_skip_rsa_key_validation=True
    )
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA key")
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"


def _create(path: Path, pem: bytes) -> bytes:
    """Write ``pem`` to ``path`` unless it exists (mode 0600); the key on
    disk afterwards, whoever wrote it."""
    # Create-if-absent atomically: write a temporary file (mkstemp makes it
    # 0600), then hard-link it to the final name, which fails if another
    # starter won the race; either way everybody ends up with the key that
    # is on disk, and nobody ever reads a half-written one.
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, prefix=".tmp-") as tmp:
        tmp.write(pem)
        tmp.flush()
        os.fsync(tmp.fileno())
    try:
        os.chmod(tmp.name, 0o600)
        with contextlib.suppress(FileExistsError):
            os.link(tmp.name, path)
    finally:
        os.unlink(tmp.name)
    return path.read_bytes()


def _new_pem(bits: int) -> bytes:
    from sim.auth.dkim import generate_key

    pem, _ = generate_key(bits)
    return pem


def cache_dir() -> Path | None:
    """The per-user DKIM key cache, or None when it is turned off
    (``MAILLAB_DKIM_CACHE=0``)."""
    return usercache.cache_dir("dkim")


def _usable(pem: bytes) -> bool:
    try:
        _txt_from_pem(pem)
    except (ValueError, TypeError):
        return False
    return True


def cached_pem(domain: str, selector: str, bits: int) -> bytes:
    """The user's key for (domain, selector, bits), made on first use; a
    fresh key when the cache is off or cannot be written."""
    directory = cache_dir()
    if directory is None:
        return _new_pem(bits)
    what = f"maillab-dkim-v1\0{domain}\0{selector}\0{bits}".encode()
    path = directory / f"{hashlib.sha256(what).hexdigest()[:32]}.pem"
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists():
            pem = path.read_bytes()
            if _usable(pem):
                return pem
            # A damaged file (a full disk, a hand edit): replace it.
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return _create(path, _new_pem(bits))
    except OSError:
        # A read-only or full home: the lab still runs, at the old cost.
        return _new_pem(bits)


def ensure_keys(
    topology: Topology, state_dir: Path, *, bits: int = KEY_BITS
) -> dict[tuple[str, str], KeyPair]:
    """The key pair of every (domain, selector) a relay signs with, generated
    on first use and read back from ``state_dir`` afterwards."""
    directory = Path(state_dir) / "dkim"
    keys: dict[tuple[str, str], KeyPair] = {}
    for _, domain, selector in dkim_entries(topology):
        if (domain, selector) in keys:
            continue
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{selector}._domainkey.{domain}.pem"
        pem = path.read_bytes() if path.exists() else None
        if pem is None:
            pem = _create(path, cached_pem(domain, selector, bits))
        keys[(domain, selector)] = KeyPair(domain, selector, pem, _txt_from_pem(pem))
    return keys


def _zone_for(name: str, zones: list[str]) -> str | None:
    """The longest zone that contains ``name`` (the zone that must hold it)."""
    best: str | None = None
    for zone in zones:
        origin = fqdn(zone)
        if (name == origin or name.endswith("." + origin) or origin == ".") and (
            best is None or len(origin) > len(fqdn(best))
        ):
            best = zone
    return best


def _owners(zone: str, text: str) -> set[str]:
    try:
        return {fqdn(str(rr.rname)) for rr in parse_zone(zone, text)}
    except ZoneSyntaxError:
        return set()


def publish(topology: Topology, keys: dict[tuple[str, str], KeyPair]) -> Topology:
    """``topology`` with ``SELECTOR._domainkey.DOMAIN TXT "v=DKIM1; k=rsa; p=..."``
    added to the zone that holds each name, for the keys of relays whose
    ``dkim_publish`` is true.

    A name the zone already defines is left alone (an instructor may have
    written a wrong key on purpose), as is a domain no lab zone holds.
    """
    zones = dict(topology.zones)
    order = [name for name, _ in topology.zones]
    changed = False
    for node, domain, selector in dkim_entries(topology):
        relay = node.services.relay
        if relay is None or not relay.dkim_publish:
            continue
        pair = keys.get((domain, selector))
        if pair is None:
            continue
        zone = _zone_for(pair.record_name, order)
        if zone is None:
            continue
        text = zones[zone]
        if pair.record_name in _owners(zone, text):
            continue
        sep = "" if not text or text.endswith("\n") else "\n"
        from sim.auth.dkim import key_txt_rdata

        zones[zone] = f"{text}{sep}{pair.record_name} TXT {key_txt_rdata(pair.txt)}\n"
        changed = True
    if not changed:
        return topology
    return replace(topology, zones=tuple((name, zones[name]) for name in order))
