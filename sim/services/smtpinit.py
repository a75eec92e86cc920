"""aiosmtpd's per-connection set-up, with its introspection done once per class.

asyncio makes a new protocol object for every connection, and aiosmtpd's
``SMTP.__init__`` then looks through the object and its handler to find the
command methods (``smtp_*``), the hooks (``handle_*``) and the AUTH mechanisms
(``auth_*``): ``inspect.getmembers`` on both, which reads every attribute, and
``dir`` twice. For the lab MX that is about a third of a millisecond per
connection on a 2-core VM, the cost of a whole SMTP command; the answer is the
same for every object of a class.

:func:`init_smtp` sets up the same instance state, with the names found once
per class (and the handler's own attributes, which can hold hooks too, looked
at every time). It covers the arguments the lab's servers pass; anything else
goes to aiosmtpd's own ``__init__``. ``tests/test_smtpinit.py`` compares the
state it makes with aiosmtpd's, so that a new aiosmtpd that sets up something
else fails a test instead of a session; a version this module was not written
against gets aiosmtpd's ``__init__`` unchanged (:data:`SUPPORTED`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
from functools import cache
from typing import Any, NamedTuple

import aiosmtpd
from aiosmtpd.smtp import DATA_SIZE_DEFAULT, SMTP

__all__ = ["SUPPORTED", "init_smtp"]

#: The aiosmtpd versions whose ``SMTP.__init__`` this module mirrors.
SUPPORTED = aiosmtpd.__version__.startswith("1.4.")

# The arguments init_smtp handles; any other makes it defer to aiosmtpd.
_HANDLED = frozenset(
    {
        "data_size_limit",
        "hostname",
        "ident",
        "tls_context",
        "require_starttls",
        "timeout",
        "auth_required",
        "auth_require_tls",
        "authenticator",
    }
)

_log = logging.getLogger("mail.log")  # aiosmtpd's logger


class AuthMechAttr(NamedTuple):
    """One entry of ``SMTP._auth_methods``, the shape of aiosmtpd's private
    ``_AuthMechAttr`` (copied, not imported: aiosmtpd does not export it;
    ``tests/test_upstream_shape.py`` checks the shape still matches)."""

    method: Any
    is_builtin: bool


@cache
def _class_names(cls: type, prefix: str) -> tuple[str, ...]:
    """The attribute names of ``cls`` (and its bases) that start with
    ``prefix``, sorted as ``dir`` sorts them."""
    return tuple(name for name in dir(cls) if name.startswith(prefix))


def _names(obj: Any, prefix: str) -> tuple[str, ...] | list[str]:
    cls: Any = type(obj)
    names = _class_names(cls, prefix)
    own = [n for n in getattr(obj, "__dict__", ()) if n.startswith(prefix)]
    return sorted({*names, *own}) if own else names


_EHLO_PARAMS: dict[Any, int] = {}


def _ehlo_params(hook: Any) -> int:
    """How many parameters the handle_EHLO hook takes (aiosmtpd tells its
    old four-argument form from the current five-argument one)."""
    function = getattr(hook, "__func__", None)
    if function is None:
        return len(inspect.signature(hook).parameters)
    count = _EHLO_PARAMS.get(function)
    if count is None:
        count = _EHLO_PARAMS[function] = len(inspect.signature(hook).parameters)
    return count


def _plain(obj: Any) -> bool:
    """Whether ``dir`` of ``obj`` is the usual one (its class's names and
    its own), which is what the per-class names assume."""
    cls: Any = type(obj)
    return bool(cls.__dir__ is object.__dir__)


def _mirrors(smtp: SMTP, handler: Any, kwargs: dict[str, Any]) -> bool:
    """Whether :func:`init_smtp` sets up this call as aiosmtpd would. Not for
    another aiosmtpd, other arguments, a class with its own ``__dir__``, nor
    where aiosmtpd warns (a TLS context that verifies clients, AUTH required
    without TLS, the deprecated four-argument handle_EHLO), asks the host's
    name (no hostname) or raises (a handle_EHLO of another form)."""
    if not SUPPORTED or not _HANDLED.issuperset(kwargs):
        return False
    if not (_plain(smtp) and _plain(handler)):
        return False
    tls_context: ssl.SSLContext | None = kwargs.get("tls_context")
    if tls_context is not None and (
        tls_context.verify_mode not in {ssl.CERT_NONE, ssl.CERT_OPTIONAL}
        or tls_context.check_hostname
    ):
        return False
    if not kwargs.get("hostname"):
        return False
    if kwargs.get("auth_required", False) and not kwargs.get("auth_require_tls", True):
        return False
    ehlo_hook = getattr(handler, "handle_EHLO", None)
    return ehlo_hook is None or _ehlo_params(ehlo_hook) == 5


def init_smtp(smtp: SMTP, handler: Any, **kwargs: Any) -> None:
    """Set up ``smtp`` as ``SMTP.__init__(smtp, handler, **kwargs)`` would."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # aiosmtpd finds or makes one
        loop = None
    if loop is None or not _mirrors(smtp, handler, kwargs):
        SMTP.__init__(smtp, handler, **kwargs)
        return
    tls_context: ssl.SSLContext | None = kwargs.get("tls_context")
    auth_require_tls = bool(kwargs.get("auth_require_tls", True))
    s: Any = smtp
    s.__ident__ = kwargs.get("ident") or aiosmtpd.smtp.__ident__
    s.loop = loop
    asyncio.StreamReaderProtocol.__init__(
        smtp,
        asyncio.StreamReader(loop=s.loop, limit=smtp.line_length_limit),
        client_connected_cb=s._cb_client_connected,
        loop=s.loop,
    )
    s.event_handler = handler
    s.data_size_limit = kwargs.get("data_size_limit", DATA_SIZE_DEFAULT)
    s.enable_SMTPUTF8 = False
    s._decode_data = False
    smtp.command_size_limits.clear()
    s.hostname = kwargs["hostname"]
    s.tls_context = tls_context
    s.require_starttls = tls_context and bool(kwargs.get("require_starttls", False))
    s._timeout_duration = kwargs.get("timeout", 300)
    s._timeout_handle = None
    s._tls_handshake_okay = True
    s._tls_protocol = None
    s._original_transport = None
    s.session = None
    s.envelope = None
    s.transport = None
    s._handler_coroutine = None
    s._auth_require_tls = auth_require_tls
    s._proxy_timeout = None
    authenticator = kwargs.get("authenticator")
    if authenticator is not None:
        s._authenticator = authenticator
        s._auth_callback = None
    else:
        s._auth_callback = aiosmtpd.smtp.login_always_fail
        s._authenticator = None
    s._auth_required = bool(kwargs.get("auth_required", False))
    auth_methods: dict[str, AuthMechAttr] = {}
    for obj in (smtp, handler):
        for name in _names(obj, "auth_"):
            method = getattr(obj, name)
            mechanism = getattr(
                method, "__auth_mechanism_name__", name.replace("auth_", "").replace("__", "-")
            )
            auth_methods[mechanism] = AuthMechAttr(method, obj is smtp)
    s._auth_methods = auth_methods
    if _log.isEnabledFor(logging.INFO):
        _log.info(
            "Available AUTH mechanisms: "
            + " ".join(
                m + "(builtin)" if impl.is_builtin else m
                for m, impl in sorted(auth_methods.items())
            )
        )
    s._handle_hooks = {
        name.replace("handle_", ""): getattr(handler, name) for name in _names(handler, "handle_")
    }
    # (A handle_EHLO of the current, five-argument form: see _mirrors.)
    s._ehlo_hook_ver = None if s._handle_hooks.get("EHLO") is None else "new"
    s._smtp_methods = {
        name.replace("smtp_", ""): getattr(smtp, name) for name in _names(smtp, "smtp_")
    }
    s._enforce_call_limit = False
