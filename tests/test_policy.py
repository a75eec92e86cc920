"""The receiving policy (sim.services.policy) and the reply table (sim.services.replies)."""

from __future__ import annotations

import re

import pytest

from sim.auth.result import CheckResult
from sim.services.policy import Judgement, decide, effect, judge
from sim.services.replies import REPLIES, Reply, enhance, reply, temporary

IP = "192.0.2.20"


def result(check: str, outcome: str, **details: object) -> CheckResult:
    inputs: dict[str, object] = {"ip": IP}
    if check == "dnsbl":
        inputs["zone"] = "zen.dnsbl.example"
    if check in ("spf", "dmarc"):
        inputs["domain"] = "bank.example"
    return CheckResult(check, outcome, f"{check} said {outcome}", inputs, dict(details))


# --- what an action makes of a result ---------------------------------------------


@pytest.mark.parametrize(
    ("check", "outcome", "action", "taken"),
    [
        ("ptr", "pass", "reject", "none"),
        ("ptr", "fail", "reject", "reject"),
        ("ptr", "fail", "junk", "junk"),
        ("ptr", "fail", "header", "header"),
        ("fcrdns", "permerror", "defer", "defer"),
        ("fcrdns", "temperror", "reject", "defer"),
        ("fcrdns", "temperror", "junk", "header"),
        ("helo", "neutral", "reject", "none"),
        ("dnsbl", "listed", "reject", "reject"),
        ("dnsbl", "notlisted", "reject", "none"),
        ("dnsbl", "temperror", "reject", "header"),  # a list that is down never blocks mail
        ("dnsbl", "permerror", "reject", "header"),
        ("spf", "fail", "reject", "reject"),
        ("spf", "softfail", "reject", "junk"),  # RFC 7208 §8.5
        ("spf", "softfail", "header", "header"),
        ("spf", "neutral", "reject", "none"),
        ("spf", "none", "reject", "none"),
        ("spf", "temperror", "reject", "defer"),  # RFC 7208 §8.6
        ("spf", "permerror", "reject", "header"),  # DMARC decides
        ("spf", "fail", "policy", "reject"),
        ("dkim", "fail", "header", "header"),
        ("dkim", "permerror", "reject", "reject"),
        ("dkim", "none", "reject", "none"),  # unsigned is not a failure (RFC 6376 §6.1)
        ("tls", "fail", "reject", "reject"),
        ("tls", "pass", "reject", "none"),
        ("ptr", "fail", None, "none"),
    ],
)
def test_effect(check: str, outcome: str, action: str | None, taken: str) -> None:
    assert effect(result(check, outcome), action) == taken  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("disposition", "taken"),
    [("reject", "reject"), ("quarantine", "junk"), ("none", "header")],
)
def test_dmarc_policy_follows_the_published_disposition(disposition: str, taken: str) -> None:
    failed = result("dmarc", "fail", disposition=disposition)
    assert effect(failed, "policy") == taken
    assert effect(result("dmarc", "pass", disposition="none"), "policy") == "none"
    assert effect(result("dmarc", "temperror"), "policy") == "defer"
    assert effect(result("dmarc", "permerror"), "policy") == "header"
    # A fixed action overrides what the domain publishes.
    assert effect(failed, "reject") == "reject"
    assert effect(failed, "header") == "header"


# --- the replies judgements carry ----------------------------------------------------


def test_ptr_rejection_is_gmails_reply() -> None:
    j = judge(result("ptr", "fail"), "reject", "rcpt", ip=IP)
    assert j.reply is not None
    assert (j.reply.code, j.reply.enhanced) == (550, "5.7.25")
    assert "does not have a PTR record" in j.reply.text


def test_fcrdns_defer_and_reject() -> None:
    deferred = judge(result("fcrdns", "fail"), "defer", "rcpt", ip=IP).reply
    assert deferred is not None
    assert deferred.line == f"450 4.7.25 Client host rejected: cannot find your hostname, [{IP}]"
    rejected = judge(result("fcrdns", "fail"), "reject", "rcpt", ip=IP).reply
    assert rejected is not None
    assert (rejected.code, rejected.enhanced) == (550, "5.7.25")


@pytest.mark.parametrize(
    ("reason", "code", "enhanced", "words"),
    [
        ("not_fqdn", 504, "5.5.2", "need fully-qualified hostname"),
        ("invalid", 501, "5.5.2", "Invalid name"),
        ("mismatch", 550, "5.7.1", "does not point to your address"),
    ],
)
def test_helo_replies(reason: str, code: int, enhanced: str, words: str) -> None:
    j = judge(result("helo", "fail", reason=reason), "reject", "rcpt", ip=IP, helo="localhost")
    assert j.reply is not None
    assert (j.reply.code, j.reply.enhanced) == (code, enhanced)
    assert j.reply.text.startswith("<localhost>: Helo command rejected")
    assert words in j.reply.text


def test_dnsbl_reply_names_the_zone_and_reason() -> None:
    j = judge(result("dnsbl", "listed", reason="spam source"), "reject", "rcpt", ip=IP)
    assert j.reply is not None
    assert j.reply.line == (
        f"554 5.7.1 Service unavailable; Client host [{IP}] blocked using "
        "zen.dnsbl.example; spam source"
    )
    bare = judge(result("dnsbl", "listed", reason=None), "reject", "rcpt", ip=IP).reply
    assert bare is not None
    assert bare.text.endswith("blocked using zen.dnsbl.example")


def test_spf_replies() -> None:
    fail = judge(result("spf", "fail"), "reject", "rcpt", ip=IP).reply
    assert fail is not None
    assert fail.line == "550 5.7.23 Message rejected due to: SPF fail - not authorized"
    temp = judge(result("spf", "temperror"), "reject", "rcpt", ip=IP).reply
    assert temp is not None
    assert (temp.code, temp.enhanced) == (451, "4.7.24")
    assert "bank.example" in temp.text
    assert judge(result("spf", "softfail"), "reject", "rcpt").reply is None


def test_dmarc_reject_reply_names_the_domain() -> None:
    j = judge(
        result("dmarc", "fail", disposition="reject"), "policy", "data", domain="bank.example"
    )
    assert j.reply is not None
    assert j.reply.line == (
        "550 5.7.26 Unauthenticated email from bank.example is not accepted due to "
        "domain's DMARC policy"
    )


def test_tls_rejection() -> None:
    j = judge(result("tls", "fail"), "reject", "mail")
    assert j.reply is not None
    assert j.reply.line == "530 5.7.0 Must issue a STARTTLS command first"


def test_defer_turns_a_rejection_temporary() -> None:
    j = judge(result("dnsbl", "listed"), "defer", "rcpt", ip=IP)
    assert j.reply is not None
    assert (j.reply.code, j.reply.enhanced) == (450, "4.7.1")
    assert "blocked using" in j.reply.text


def test_judgement_check_event() -> None:
    j = judge(result("ptr", "fail"), "reject", "rcpt", ip=IP)
    data = j.check_event(IP)
    assert data["check"] == "ptr"
    assert data["result"] == "fail"
    assert data["action"] == "reject"
    assert data["configured"] == "reject"
    assert data["inputs"] == {"ip": IP}
    assert data["explanation"] == "ptr said fail"
    assert data["reply"]["enhanced"] == "5.7.25"


# --- deciding a stage ---------------------------------------------------------------


def js(*items: tuple[str, str, str | None], stage: str = "rcpt") -> list[Judgement]:
    return [
        judge(result(c, o, disposition="reject"), a, stage, ip=IP)  # type: ignore[arg-type]
        for c, o, a in items
    ]


def test_nothing_against_it_goes_to_the_inbox() -> None:
    decision = decide(js(("ptr", "pass", "reject"), ("spf", "pass", "reject")), "rcpt")
    assert decision.verdict == "inbox"
    assert decision.folder == "INBOX"
    assert decision.accepted


def test_the_first_rejection_decides() -> None:
    decision = decide(
        js(("ptr", "fail", "reject"), ("dnsbl", "listed", "reject"), ("spf", "fail", "reject")),
        "rcpt",
    )
    assert decision.verdict == "reject"
    assert decision.decided_by == "ptr"
    assert decision.reply is not None
    assert decision.reply.enhanced == "5.7.25"


def test_a_rejection_beats_an_earlier_deferral() -> None:
    decision = decide(js(("fcrdns", "fail", "defer"), ("dnsbl", "listed", "reject")), "rcpt")
    assert decision.verdict == "reject"
    assert decision.decided_by == "dnsbl"


def test_a_deferral_without_rejection() -> None:
    decision = decide(js(("fcrdns", "fail", "defer"), ("spf", "softfail", "reject")), "rcpt")
    assert decision.verdict == "defer"
    assert decision.reply is not None
    assert decision.reply.transient


def test_junk_collects_from_earlier_stages() -> None:
    earlier = js(("ptr", "fail", "junk"), ("spf", "softfail", "reject"))
    decision = decide(js(("dkim", "pass", "header"), stage="data"), "data", earlier)
    assert decision.verdict == "junk"
    assert decision.folder == "Junk"
    assert decision.junk_by == ("ptr", "spf")


def test_earlier_rejections_do_not_reject_again_at_data() -> None:
    # postmaster was accepted at RCPT despite a failing ptr check
    earlier = js(("ptr", "fail", "reject"))
    assert decide([], "data", earlier).verdict == "inbox"


def test_several_failed_authentication_checks_use_x_7_26() -> None:
    earlier = js(("spf", "fail", "header"))
    current = js(("dkim", "fail", "reject"), stage="data")
    decision = decide(current, "data", earlier)
    assert decision.reply is not None
    assert decision.reply.line == (
        "550 5.7.26 Multiple authentication checks failed: spf=fail, dkim=fail"
    )
    # One failure alone keeps its own code.
    alone = decide(current, "data")
    assert alone.reply is not None
    assert alone.reply.enhanced == "5.7.20"


def test_dmarc_rejection_keeps_its_text_with_other_failures() -> None:
    earlier = js(("spf", "fail", "header"))
    current = [
        judge(
            result("dmarc", "fail", disposition="reject"),
            "policy",
            "data",
            domain="bank.example",
        )
    ]
    decision = decide(current, "data", earlier)
    assert decision.reply is not None
    assert decision.reply.enhanced == "5.7.26"
    assert "DMARC policy" in decision.reply.text


# --- the reply table ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_every_reply_is_consistent(name: str) -> None:
    template = REPLIES[name]
    # RFC 3463 §3.1: the class of the enhanced code matches the reply's first digit.
    assert str(template.code)[0] == template.enhanced[0]
    assert re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", template.enhanced)
    assert template.source
    # RFC 5321 §4.2: reply text is US-ASCII (aiosmtpd refuses to send anything else).
    assert template.text.isascii()


def test_reply_fields_cannot_inject_control_characters() -> None:
    r = reply("helo_fqdn", helo="evil\r\n250 ok\x00")
    assert "\r" not in r.line
    assert "\n" not in r.line
    assert "\x00" not in r.line
    long = reply("user_unknown", address="x" * 2000 + "@qq.example")
    assert len(long.line) <= 510


def test_temporary() -> None:
    assert temporary(Reply(554, "5.7.1", "no")) == Reply(450, "4.7.1", "no")
    already = Reply(451, "4.7.24", "later")
    assert temporary(already) is already


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("500 Command line too long", "500 5.5.2 Error: line too long"),
        ("500 Error: bad syntax", "500 5.5.2 Error: bad syntax"),
        ("501 Syntax: MAIL FROM: <address>", "501 5.5.4 Syntax: MAIL FROM: <address>"),
        ("503 Error: need RCPT command", "503 5.5.1 Error: need RCPT command"),
        (
            "552 Error: Too much mail data",
            "552 5.3.4 Message size exceeds fixed maximum message size",
        ),
        ("250 OK", "250 2.0.0 OK"),
        ("221 Bye", "221 2.0.0 Bye"),
        ("220 Ready to start TLS", "220 2.0.0 Ready to start TLS"),
        (
            "530 Must issue a STARTTLS command first",
            "530 5.7.0 Must issue a STARTTLS command first",
        ),
        ("550 5.1.1 already coded", "550 5.1.1 already coded"),
        ("354 End data with <CR><LF>.<CR><LF>", "354 End data with <CR><LF>.<CR><LF>"),
        ("250-SIZE 1000", "250-SIZE 1000"),
        ("599 Odd", "599 5.0.0 Odd"),
    ],
)
def test_enhance_aiosmtpd_replies(raw: str, expected: str) -> None:
    assert enhance(raw) == expected
