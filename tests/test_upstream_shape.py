"""The parts of aiosmtpd and aiosmtplib maillab leans on beyond their
documented API still have the shape maillab was written against.

pyproject.toml bounds both libraries to the versions tested. When a new
release changes one of these, a test here fails and says what moved, instead
of a lab session failing with an AttributeError."""

from __future__ import annotations

import inspect

import aiosmtpd
import aiosmtpd.smtp
import aiosmtplib
import aiosmtplib.protocol
import pytest

from sim.services import smtpinit
from sim.services.smtpclient import dot_stuff


def test_aiosmtpd_version_is_one_smtpinit_mirrors() -> None:
    assert smtpinit.SUPPORTED, (
        f"aiosmtpd {aiosmtpd.__version__}: sim/services/smtpinit.py mirrors SMTP.__init__ "
        "of 1.4.x only; check tests/test_smtpinit.py against the new version, then widen "
        "SUPPORTED and the bound in pyproject.toml"
    )


def test_auth_mechanism_entries_have_aiosmtpds_shape() -> None:
    upstream = getattr(aiosmtpd.smtp, "_AuthMechAttr", None)
    if upstream is None:
        pytest.fail(
            "aiosmtpd.smtp._AuthMechAttr is gone: check what SMTP._auth_methods holds now "
            "and update sim.services.smtpinit.AuthMechAttr"
        )
    assert upstream._fields == smtpinit.AuthMechAttr._fields, (
        f"aiosmtpd's _AuthMechAttr fields are {upstream._fields}, "
        f"sim.services.smtpinit.AuthMechAttr has {smtpinit.AuthMechAttr._fields}"
    )


@pytest.mark.parametrize(
    "name",
    [
        "_handle_hooks",
        "_smtp_methods",
        "_auth_methods",
        "_ehlo_hook_ver",
        "_enforce_call_limit",
        "_authenticator",
        "_auth_callback",
        "_auth_require_tls",
        "_timeout_duration",
        "_tls_handshake_okay",
        "_original_transport",
        "_decode_data",
        "_proxy_timeout",
    ],
)
def test_smtp_init_still_sets_the_private_attributes_smtpinit_sets(name: str) -> None:
    source = inspect.getsource(aiosmtpd.smtp.SMTP.__init__)
    assert f"self.{name}" in source, (
        f"aiosmtpd {aiosmtpd.__version__}: SMTP.__init__ no longer sets {name}; "
        "sim/services/smtpinit.py sets it: update it (tests/test_smtpinit.py compares states)"
    )


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"one line",
        b"a\nb\r\nc\rd\r\n",
        b".\n..x\r\n.\r\nend",
        b"Subject: x\r\n\r\n.leading\n\r\r\n",
    ],
)
def test_dot_stuffing_matches_aiosmtplib(message: bytes) -> None:
    regex = getattr(aiosmtplib.protocol, "PERIOD_REGEX", None)
    normalize = getattr(aiosmtplib.protocol, "normalize_message_line_endings", None)
    if regex is None or normalize is None:
        pytest.skip("aiosmtplib no longer has the helpers sim.services.smtpclient copied")
    assert dot_stuff(message) == regex.sub(b"..", normalize(message)) + b".\r\n"


def test_aiosmtplib_has_what_smtpclient_calls() -> None:
    missing = [
        name
        for name in ("connect", "ehlo", "starttls", "execute_command", "quit", "close")
        if not callable(getattr(aiosmtplib.SMTP, name, None))
    ]
    protocol = aiosmtplib.protocol.SMTPProtocol
    missing += [
        f"SMTPProtocol.{name}"
        for name in ("write", "read_response")
        if not callable(getattr(protocol, name, None))
    ]
    assert not missing, (
        f"aiosmtplib {aiosmtplib.__version__} lacks {', '.join(missing)}, which "
        "sim/services/smtpclient.py uses"
    )
    assert "timeout" in inspect.signature(protocol.read_response).parameters
    assert hasattr(aiosmtplib.SMTP(), "protocol"), "aiosmtplib.SMTP has no .protocol"
