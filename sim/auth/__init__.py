"""Receiving checks over the lab DNS: SPF, DKIM, DMARC and the header that reports them.

Every check takes a synchronous :data:`Lookup` into the lab DNS and returns a
:class:`CheckResult` (inputs, result, one sentence a student can read); none
opens a socket, so the MX runs them on its event loop over awaited lookups
(:func:`sim.auth.replay.replay`).

* :func:`check_spf` — RFC 7208, with pyspf
* :func:`generate_key`, :func:`sign`, :func:`verify_dkim` — RFC 6376, with dkimpy
* :func:`check_dmarc` — RFC 9989 (DNS tree walk; ``discovery="psl"`` for RFC 7489)
* :func:`authentication_results` — RFC 8601, with authres
* :mod:`sim.auth.dkimfast` — dkimpy's RSA by OpenSSL, its parsed keys remembered
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.auth.dkim import generate_key, key_txt_rdata, sign, verify_dkim
    from sim.auth.dmarc import DmarcRecord, check_dmarc, organizational_domain, parse_record
    from sim.auth.headers import authentication_results, parse_authentication_results
    from sim.auth.result import CheckResult, Lookup
    from sim.auth.spf import check_spf

__all__ = [
    "CheckResult",
    "DmarcRecord",
    "Lookup",
    "authentication_results",
    "check_dmarc",
    "check_spf",
    "generate_key",
    "key_txt_rdata",
    "organizational_domain",
    "parse_authentication_results",
    "parse_record",
    "sign",
    "verify_dkim",
]

# Imported on first use, so that importing one check (``sim.auth.dkim`` for a
# key) does not load every library (pyspf, dkimpy, authres) with it.
_HOMES = {
    "generate_key": "sim.auth.dkim",
    "key_txt_rdata": "sim.auth.dkim",
    "sign": "sim.auth.dkim",
    "verify_dkim": "sim.auth.dkim",
    "DmarcRecord": "sim.auth.dmarc",
    "check_dmarc": "sim.auth.dmarc",
    "organizational_domain": "sim.auth.dmarc",
    "parse_record": "sim.auth.dmarc",
    "authentication_results": "sim.auth.headers",
    "parse_authentication_results": "sim.auth.headers",
    "CheckResult": "sim.auth.result",
    "Lookup": "sim.auth.result",
    "check_spf": "sim.auth.spf",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
