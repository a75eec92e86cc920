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
