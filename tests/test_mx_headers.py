"""What the MX reads from a message's header section (the RFC5322.From
domain DMARC judges, the Message-ID, the client's queue id): the same as the
email package's compat32 parser gives, on ordinary and odd header sections.

The MX splits the header section itself (the email package's parser took a
twentieth of the MX's time per message); the reference below is what it did
before, with the email package."""

from __future__ import annotations

import email.utils
from email.parser import BytesHeaderParser
from email.policy import compat32

from hypothesis import given, settings
from hypothesis import strategies as st

from sim.services.mx import _RECEIVED_ID, _header_fields, _header_section, _Headers, _read_headers


def _reference(content: bytes) -> _Headers:
    headers = BytesHeaderParser(policy=compat32).parsebytes(_header_section(content))
    domain = ""
    try:
        pairs = email.utils.getaddresses([str(v) for v in headers.get_all("From", [])])
    except Exception:
        pairs = []
    for _, address in pairs:
        if "@" in address:
            domain = address.rpartition("@")[2].strip().lower().rstrip(".")
            break
    message_id = headers.get("Message-ID")
    top = headers.get("Received")
    match = _RECEIVED_ID.search(str(top)) if top else None
    return _Headers(
        domain,
        str(message_id).strip() if message_id else None,
        match.group(1) if match else None,
        tuple(str(v) for v in headers.get_all("From", [])),
    )


def test_fields_are_unfolded_as_rfc5322_says() -> None:
    section = (
        b"From: Alice\r\n <alice@home.example>\r\n"
        b"Subject: two\r\n\tlines\r\n"
        b"X-Empty:\r\n"
        b"\r\n"
        b"Body: not a field\r\n"
    )
    assert _header_fields(section) == [
        ("From", "Alice\r\n <alice@home.example>"),
        ("Subject", "two\r\n\tlines"),
        ("X-Empty", ""),
    ]


def test_the_section_ends_at_a_line_that_is_not_a_field() -> None:
    # compat32 takes such a line as the start of the body (a defect).
    section = b"From: a@x.example\r\nthis is not a field\r\nTo: b@y.example\r\n"
    assert _header_fields(section) == [("From", "a@x.example")]
    assert _read_headers(b"From a@mbox Sat Nov 28\r\nFrom: c@z.example\r\n\r\n").from_domain == (
        "z.example"
    )


_NAMES = st.sampled_from(
    ["From", "from", "FROM", "Message-ID", "Received", "Subject", "To", "X-Odd_Name!", ""]
)
_VALUES = st.sampled_from(
    [
        "Alice <alice@home.example>",
        '"Bob, Jr." <bob@qq.example>',
        "carol@EXAMPLE.ORG.",
        "(comment) dave@sub.example (more)",
        "undisclosed-recipients:;",
        "<bench@home.example>",
        "from mx (h [1.2.3.4]) by r with ESMTP id Q1234AB; Sat, 28 Nov 2026",
        "by r id x.y-z; date",
        "no address at all",
        "=?utf-8?q?Caf=C3=A9?= <cafe@fr.example>",
        "",
        "a@b, c@d",
    ]
)
_LINE = st.one_of(
    st.tuples(_NAMES, st.sampled_from([":", ": ", ":\t", " : "]), _VALUES).map("".join),
    st.tuples(st.sampled_from([" ", "\t"]), _VALUES).map("".join),  # a continuation
    st.sampled_from(
        ["not a field", "From mbox-line", "From : x", "From: ", "Bad Name: x", ":", ": v", "X:y:z"]
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(_LINE, max_size=8),
    ending=st.sampled_from(["\r\n", "\n"]),
    body=st.sampled_from(["", "From: body@evil.example\r\n", "text\r\n"]),
)
def test_the_same_as_the_email_package(lines: list[str], ending: str, body: str) -> None:
    content = (ending.join(lines) + ending + ending + body).encode("ascii")
    assert _read_headers(content) == _reference(content)
