"""sim.services.smtpinit: the lab's SMTP objects are set up as aiosmtpd's own
``SMTP.__init__`` sets them up, attribute for attribute, only faster.

If a new aiosmtpd sets up something else, the comparison below fails: then
either :mod:`sim.services.smtpinit` learns it or its ``SUPPORTED`` excludes
that version."""

from __future__ import annotations

import asyncio
import ssl
import types
import weakref
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, auth_mechanism

from sim.services import smtpinit
from sim.services.mx import MxHandler, MxSMTP
from sim.services.smtpbase import LabSMTP
from sim.services.submission import _Handler as SubmissionHandler


def _normal(value: Any, owner: object) -> Any:
    """A comparable picture of one attribute value of ``owner``."""
    if isinstance(value, types.MethodType):
        who = "owner" if value.__self__ is owner else value.__self__
        return ("method", value.__func__, who)
    if isinstance(value, dict):
        return {k: _normal(v, owner) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_normal(v, owner) for v in value)
    if isinstance(value, list):
        return [_normal(v, owner) for v in value]
    if isinstance(value, asyncio.StreamReader):
        return ("reader", value._limit, value._loop)  # type: ignore[attr-defined]
    if isinstance(value, weakref.ref):
        return ("weakref", _normal(value(), owner))
    if isinstance(value, asyncio.Future):
        return ("future", value.done())
    return value


def _state(obj: object) -> dict[str, Any]:
    return {k: _normal(v, obj) for k, v in vars(obj).items()}


def _upstream(cls: type[SMTP], handler: Any, **kwargs: Any) -> SMTP:
    """An object of ``cls`` set up by aiosmtpd's own ``__init__``."""
    obj = cls.__new__(cls)
    SMTP.__init__(obj, handler, **kwargs)
    return obj


def _fast(cls: type[SMTP], handler: Any, **kwargs: Any) -> SMTP:
    obj = cls.__new__(cls)
    smtpinit.init_smtp(obj, handler, **kwargs)
    return obj


class _AuthHandler:
    """A handler with hooks on its class, one on the instance, and AUTH
    mechanisms of its own (named and decorated)."""

    def __init__(self) -> None:
        self.handle_NOOP = self._noop

    async def _noop(self, server: Any, session: Any, envelope: Any, arg: str) -> str:
        return "250 OK"

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        return responses

    async def auth_CRAM__MD5(self, server: Any, args: list[str]) -> AuthResult:
        return AuthResult(success=False)

    @auth_mechanism("X-TOKEN")
    async def auth_token(self, server: Any, args: list[str]) -> AuthResult:
        return AuthResult(success=False)


def _tls() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.verify_mode = ssl.CERT_NONE
    return context


def _cases() -> list[tuple[str, type[SMTP], Any, dict[str, Any]]]:
    mx = MxHandler.__new__(MxHandler)  # the hooks do not need the service here
    submission = SubmissionHandler.__new__(SubmissionHandler)

    def authenticate(*args: Any) -> AuthResult:
        return AuthResult(success=False, handled=False)

    return [
        (
            "the MX",
            MxSMTP,
            mx,
            {"hostname": "mx.qq.example", "data_size_limit": 10_000, "timeout": 300},
        ),
        (
            "the MX with STARTTLS",
            MxSMTP,
            mx,
            {"hostname": "mx.qq.example", "tls_context": _tls(), "ident": "ESMTP maillab"},
        ),
        (
            "submission on 587",
            LabSMTP,
            submission,
            {
                "hostname": "smtp.home.example",
                "ident": "maillab submission",
                "tls_context": _tls(),
                "auth_require_tls": True,
                "authenticator": authenticate,
            },
        ),
        (
            "a handler with hooks and AUTH mechanisms of its own",
            LabSMTP,
            _AuthHandler(),
            {"hostname": "x.test", "require_starttls": True, "tls_context": _tls()},
        ),
    ]


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
async def test_the_state_is_aiosmtpds(case: tuple[str, type[SMTP], Any, dict[str, Any]]) -> None:
    assert smtpinit.SUPPORTED, "this aiosmtpd is not one smtpinit mirrors"
    _, cls, handler, kwargs = case
    ours, theirs = _fast(cls, handler, **kwargs), _upstream(cls, handler, **kwargs)
    assert sorted(vars(ours)) == sorted(vars(theirs))
    assert _state(ours) == _state(theirs)


async def test_instance_hooks_and_named_mechanisms_are_found() -> None:
    handler = _AuthHandler()
    server = _fast(LabSMTP, handler, hostname="x.test")
    hooks: dict[str, Any] = server._handle_hooks
    assert hooks["NOOP"] == handler.handle_NOOP  # set on the instance
    assert set(hooks) == {"EHLO", "NOOP"}
    methods: dict[str, Any] = server._auth_methods
    assert {"LOGIN", "PLAIN", "CRAM-MD5", "X-TOKEN"} <= set(methods)
    assert methods["PLAIN"].is_builtin and not methods["X-TOKEN"].is_builtin


async def test_what_it_does_not_cover_goes_to_aiosmtpd(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    upstream = SMTP.__init__

    def counting(self: SMTP, handler: Any, **kwargs: Any) -> None:
        calls.append(kwargs)
        upstream(self, handler, **kwargs)

    monkeypatch.setattr(SMTP, "__init__", counting)
    handler = _AuthHandler()
    _fast(LabSMTP, handler, hostname="x.test")
    assert calls == []
    _fast(LabSMTP, handler, hostname="x.test", enable_SMTPUTF8=True)  # not mirrored
    _fast(LabSMTP, handler)  # no hostname: aiosmtpd asks getfqdn()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.verify_mode = ssl.CERT_REQUIRED  # aiosmtpd warns about it
    _fast(LabSMTP, handler, hostname="x.test", tls_context=context)
    assert len(calls) == 3

    class OldEhlo:  # the deprecated four-argument hook: aiosmtpd warns
        async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str) -> str:
            return "250 x.test"

    with pytest.warns(DeprecationWarning, match="handle_EHLO"):
        _fast(LabSMTP, OldEhlo(), hostname="x.test")
    assert len(calls) == 4
    monkeypatch.setattr(smtpinit, "SUPPORTED", False)
    _fast(LabSMTP, handler, hostname="x.test")
    assert len(calls) == 5


def test_without_a_running_loop_aiosmtpd_sets_up() -> None:
    # Outside an event loop aiosmtpd finds or makes a loop itself.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        server = LabSMTP(_AuthHandler(), net=None, hostname="x.test")  # type: ignore[arg-type]
        assert server.loop is loop
    finally:
        asyncio.set_event_loop(None)
        loop.close()
