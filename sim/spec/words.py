"""The words of every problem a file format reports, in one place, so that
the same mistake reads the same in a topology file and in a lab file.

* a value in a message: :func:`describe_value` (``true (a boolean)``,
  ``text 'a.example'``, ``the number 42``);
* where it is: :func:`path_text` (``nodes.mx.ip``, ``zones["qq.example"]``,
  ``steps[2].run``): a key that is not a plain word is quoted, so that a
  zone name's dots are not read as nesting;
* "expected X, got Y": :func:`expected`;
* an unknown key, with the likely typo: :func:`unknown_key`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

__all__ = ["a_an", "describe_value", "expected", "path_text", "suggest", "unknown_key"]


def a_an(noun: str) -> str:
    """``a node``, ``an ExplainStep``."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def describe_value(value: Any) -> str:
    """How a YAML value reads in a message: ``text 'abc'``, ``a list``..."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"text {shown!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    tag = getattr(value, "tag", None)
    if tag is not None:
        return f"a value tagged {getattr(tag, 'value', tag)}"
    return f"a {type(value).__name__}"


def expected(what: str, value: Any, hint: str = "") -> str:
    """``expected WHAT, got VALUE (HINT)``; a number or a date where text was
    expected gets the hint YAML needs (``1234``, ``1.5``, ``true`` and
    ``2024-01-01`` are not text unless quoted)."""
    if (
        not hint
        and what == "text"
        and (isinstance(value, int | float) or hasattr(value, "isoformat"))
    ):
        hint = "quote it to make it text"
    return f"expected {what}, got {describe_value(value)}" + (f" ({hint})" if hint else "")


def path_text(path: Iterable[str | int]) -> str:
    """``("nodes", "laptop", "ip")`` → ``nodes.laptop.ip``; ``zones["qq.example"]``;
    ``("steps", 2, "run")`` → ``steps[2].run``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("-", "").replace("_", "").isalnum() and not part[:1].isdigit():
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out


def suggest(word: Any, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for a close match, else empty (typos in keys)."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


#: Words people write for a key, by the key that means it (other MTAs' and
#: tools' names included): a suggestion by meaning where spelling finds
#: nothing (``relay_to`` → ``forward``). Offered only where that key is allowed.
SAME_MEANING: dict[str, tuple[str, ...]] = {
    "forward": (
        "relay_to",
        "forward_to",
        "forwards",
        "forwarding",
        "redirect",
        "redirects",
        "alias",
        "aliases",
        "virtual",
        "virtual_alias",
        "catch_all",
        "catchall",
    ),
    "trusted_clients": (
        "trusted",
        "trust",
        "mynetworks",
        "allowlist",
        "whitelist",
        "trusted_hosts",
        "trusted_networks",
        "permit",
    ),
    "backup": ("secondary", "backup_mx", "secondary_mx", "relay_for", "relay_domains"),
    "mailboxes": ("users", "accounts", "recipients", "local_recipients"),
    "smarthost": ("relayhost", "relay_host", "upstream", "smart_host"),
    "gateway": ("gw", "default_route", "route", "router"),
    "hostname": ("myhostname", "fqdn", "helo", "helo_name", "banner"),
}


def by_meaning(key: str, allowed: Iterable[str]) -> str | None:
    """The allowed key that ``key`` is another word for, if any."""
    word = key.lower().replace("-", "_")
    keys = set(allowed)
    for target, words in SAME_MEANING.items():
        if target in keys and word in words:
            return target
    return None


def unknown_key(key: Any, allowed: Iterable[str], where: str) -> str:
    """A key the format does not know, in ``where`` (``a node``, ``the top
    level``), with the likely typo (or the key that means what it says)
    and the keys that are allowed."""
    keys = list(allowed)
    if not isinstance(key, str):
        return f"a key must be a word, not {describe_value(key)}; allowed keys: {', '.join(keys)}"
    # A key that means what another says (``aliases`` for ``forward``) beats
    # a near spelling, which may be a different thing (``lists``).
    meant = by_meaning(key, keys)
    if meant is not None:
        hint = f" (did you mean {meant!r}? that is the key for it here)"
    else:
        hint = suggest(key, keys)
    return f"unknown key {key!r} in {where}{hint}; allowed keys: {', '.join(keys)}"
