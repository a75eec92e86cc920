"""DMARC per RFC 9989: tree walk, Organizational Domain, alignment, policy.

Section numbers follow draft-ietf-dmarc-dmarcbis-41 (published as RFC 9989);
the examples quote its §4.4 Table 1, §4.10, §4.10.2, §5.1.8 and Appendix B.
"""

from __future__ import annotations

import pytest
from fakedns import FakeDns

from sim.auth.dmarc import (
    check_dmarc,
    organizational_domain,
    parse_record,
    tree_walk_names,
)
from sim.auth.result import CheckResult


def spf_result(result: str, domain: str) -> CheckResult:
    return CheckResult("spf", result, "", inputs={"domain": domain})


def dkim_result(result: str, d: str, s: str = "sel") -> CheckResult:
    return CheckResult("dkim", result, "", inputs={"d": d, "s": s}, details={"d": d, "s": s})


def dmarc_queries(dns: FakeDns) -> list[str]:
    return [n for n in dns.queried("TXT") if n.startswith("_dmarc.")]


# --- §4.10: which names a tree walk asks ---------------------------------------


@pytest.mark.parametrize(
    ("domain", "names"),
    [
        # §4.10: "for a message with the arbitrary Author Domain of
        # a.b.c.d.e.f.g.h.i.j.mail.example.com, a full DNS Tree Walk would
        # require the following eight queries"
        (
            "a.b.c.d.e.f.g.h.i.j.mail.example.com",
            [
                "a.b.c.d.e.f.g.h.i.j.mail.example.com",
                "g.h.i.j.mail.example.com",
                "h.i.j.mail.example.com",
                "i.j.mail.example.com",
                "j.mail.example.com",
                "mail.example.com",
                "example.com",
                "com",
            ],
        ),
        # §5.1.8: "A Mail Receiver performing a Tree Walk would only perform
        # queries for these names" (the psd=n record at b.c.d.e.f.g.example.com
        # is never seen).
        (
            "mail.a.b.c.d.e.f.g.example.com",
            [
                "mail.a.b.c.d.e.f.g.example.com",
                "c.d.e.f.g.example.com",
                "d.e.f.g.example.com",
                "e.f.g.example.com",
                "f.g.example.com",
                "g.example.com",
                "example.com",
                "com",
            ],
        ),
        # §4.10.2: "starting with _dmarc.a.mail.example.com and finishing with _dmarc.com"
        ("a.mail.example.com", ["a.mail.example.com", "mail.example.com", "example.com", "com"]),
        ("example", ["example"]),
        ("A.Mail.Example.COM.", ["a.mail.example.com", "mail.example.com", "example.com", "com"]),
    ],
)
def test_tree_walk_names(domain: str, names: list[str]) -> None:
    assert tree_walk_names(domain) == names
    assert len(tree_walk_names(domain)) <= 8


def test_eight_labels_walks_one_by_one() -> None:
    names = tree_walk_names("a.b.c.d.e.f.example.com")  # 8 labels
    assert names[1] == "b.c.d.e.f.example.com"
    assert len(names) == 8


# --- §4.10.2: the Organizational Domain ----------------------------------------


@pytest.mark.parametrize(
    ("zone", "org"),
    [
        # "If there are DMARC Policy Records published at _dmarc.mail.example.com
        # and _dmarc.example.com, but not at _dmarc.a.mail.example.com or
        # _dmarc.com, then the Organizational Domain ... would be example.com."
        (
            {"example.com": '_dmarc TXT "v=DMARC1; p=none"\n_dmarc.mail TXT "v=DMARC1; p=none"'},
            "example.com",
        ),
        # "if a search ... yields a DMARC Policy Record at _dmarc.mail.example.com
        # with the psd tag set to n, then the Organizational Domain ... would be
        # mail.example.com."
        (
            {
                "example.com": (
                    '_dmarc TXT "v=DMARC1; p=none"\n_dmarc.mail TXT "v=DMARC1; p=none; psd=n"'
                )
            },
            "mail.example.com",
        ),
        # "if a search ... only yields a DMARC Policy Record at _dmarc.com and
        # that record contains the tag psd=y, then the Organizational Domain ...
        # would be example.com."
        ({"com": '_dmarc TXT "v=DMARC1; p=none; psd=y"'}, "example.com"),
        # "If this process does not determine the Organizational Domain, then
        # the initial target domain is the Organizational Domain."
        ({"example.com": "www A 192.0.2.1"}, "a.mail.example.com"),
    ],
)
def test_organizational_domain_examples(zone: dict[str, str], org: str) -> None:
    dns = FakeDns.from_zones(zone)
    assert organizational_domain("a.mail.example.com", dns) == org


def test_walk_stops_at_psd_tag() -> None:
    dns = FakeDns.from_zones(
        {"example.com": '_dmarc.mail TXT "v=DMARC1; p=none; psd=n"\n_dmarc TXT "v=DMARC1; p=none"'}
    )
    organizational_domain("a.mail.example.com", dns)
    assert dmarc_queries(dns) == ["_dmarc.a.mail.example.com", "_dmarc.mail.example.com"]


# --- §4.4 Table 1 and Appendix B.1: alignment -----------------------------------

EXAMPLE_COM = {
    "example.com": '_dmarc TXT "v=DMARC1; p=reject"\nchild A 192.0.2.10\nnews A 192.0.2.11',
    "example.net": "@ A 192.0.2.20",
}


@pytest.mark.parametrize(
    ("identifier", "author", "aligned"),
    [
        # Table 1: "foo.example.com / news.example.com: relaxed; the two have the
        # same Organizational Domain, example.com"
        ("foo.example.com", "news.example.com", True),
        # "news.example.com / news.example.com: strict; the two are identical"
        ("news.example.com", "news.example.com", True),
        # "foo.example.net / news.example.com: none; the two do not share a
        # common Organizational Domain"
        ("foo.example.net", "news.example.com", False),
    ],
)
@pytest.mark.parametrize("kind", ["spf", "dkim"])
def test_alignment_table_1(identifier: str, author: str, aligned: bool, kind: str) -> None:
    dns = FakeDns.from_zones(EXAMPLE_COM)
    spf = spf_result("pass" if kind == "spf" else "none", identifier)
    dkim = [dkim_result("pass", identifier)] if kind == "dkim" else []
    r = check_dmarc(author, spf, identifier, dkim, dns)
    assert r.result == ("pass" if aligned else "fail")
    assert r.details["aligned"] == (kind if aligned else None)
    entry = next(a for a in r.details["alignment"] if a["identifier"] == kind)
    assert entry["aligned"] is aligned


@pytest.mark.parametrize(
    ("mail_from", "author", "aspf", "result"),
    [
        # B.1.1 Example 1: "the RFC5321.MailFrom domain and the Author Domain are
        # identical. Thus, the identifiers are in Strict Alignment."
        ("example.com", "example.com", "s", "pass"),
        # Example 2: child.example.com vs example.com: relaxed alignment...
        ("child.example.com", "example.com", "r", "pass"),
        # ...which strict alignment does not accept.
        ("child.example.com", "example.com", "s", "fail"),
        # Example 3: "example.net ... neither the same as, a parent of, nor a
        # child of the Author Domain. Thus, the identifiers are not in alignment."
        ("example.net", "child.example.com", "r", "fail"),
    ],
)
def test_spf_alignment_examples_b11(mail_from: str, author: str, aspf: str, result: str) -> None:
    dns = FakeDns.from_zones(
        {
            "example.com": f'_dmarc TXT "v=DMARC1; p=reject; aspf={aspf}"\nchild A 192.0.2.10',
            "example.net": "@ A 192.0.2.20",
        }
    )
    r = check_dmarc(author, spf_result("pass", mail_from), mail_from, [], dns)
    assert r.result == result


@pytest.mark.parametrize(
    ("d", "author", "adkim", "result"),
    [
        # B.1.2 Example 1: d=example.com, From example.com: strict alignment.
        ("example.com", "example.com", "s", "pass"),
        # Example 2: d=example.com, From child.example.com: relaxed alignment.
        ("example.com", "child.example.com", "r", "pass"),
        ("example.com", "child.example.com", "s", "fail"),
        # Example 3: d=example.net, From child.example.com: not aligned.
        ("example.net", "child.example.com", "r", "fail"),
    ],
)
def test_dkim_alignment_examples_b12(d: str, author: str, adkim: str, result: str) -> None:
    dns = FakeDns.from_zones(
        {
            "example.com": f'_dmarc TXT "v=DMARC1; p=reject; adkim={adkim}"\nchild A 192.0.2.10',
            "example.net": "@ A 192.0.2.20",
        }
    )
    r = check_dmarc(
        author, spf_result("fail", "other.example"), None, [dkim_result("pass", d)], dns
    )
    assert r.result == result


def test_mail_receiver_example_b31() -> None:
    # B.3.1: Author example.com, SPF-authenticated mail.example.com, DKIM
    # example.com, record "v=DMARC1; p=reject; aspf=r; rua=...": "both align".
    dns = FakeDns.from_zones(
        {
            "example.com": (
                '_dmarc TXT "v=DMARC1; p=reject; aspf=r; rua=mailto:dmarc-feedback@example.com"'
            )
        }
    )
    r = check_dmarc(
        "example.com",
        spf_result("pass", "mail.example.com"),
        None,
        [dkim_result("pass", "example.com")],
        dns,
    )
    assert r.result == "pass"
    assert r.details["aligned"] == "dkim+spf"
    assert r.details["disposition"] == "none"
    assert r.details["policy"] == "reject"


# --- Appendix B.4: tree walk examples ------------------------------------------


def test_b41_simple_organizational_and_policy() -> None:
    dns = FakeDns.from_zones(
        {"example.com": '_dmarc TXT "v=DMARC1; p=reject"\n_dmarc.signing TXT "v=DMARC1; p=none"'}
    )
    r = check_dmarc(
        "example.com",
        spf_result("pass", "example.com"),
        None,
        [dkim_result("pass", "signing.example.com")],
        dns,
    )
    # "example.com is the Organizational Domain" for the Author Domain and the
    # DKIM identifier; both are aligned, and the From domain is the policy domain.
    assert r.details["org_domain"] == "example.com"
    assert r.details["record_domain"] == "example.com"
    assert r.details["aligned"] == "dkim+spf"
    assert "_dmarc.signing.example.com" in dmarc_queries(dns)
    assert "_dmarc.com" in dmarc_queries(dns)


def test_b42_deep_tree_walk() -> None:
    dns = FakeDns.from_zones(
        {"example.com": '_dmarc TXT "v=DMARC1; p=reject"\n_dmarc.signing TXT "v=DMARC1; p=none"'}
    )
    author = "a.b.c.d.e.f.g.h.i.j.k.example.com"
    # SPF and DKIM fail here so that the policy is looked at too.
    r = check_dmarc(
        author,
        spf_result("fail", "example.com"),
        None,
        [dkim_result("fail", "signing.example.com")],
        dns,
    )
    # "query _dmarc.a.b.c.d.e.f.g.h.i.j.k.example.com, then query
    # _dmarc.g.h.i.j.k.example.com (skipping the intermediate names), then ...
    # _dmarc.example.com, and _dmarc.com"
    assert dmarc_queries(dns) == [
        "_dmarc.a.b.c.d.e.f.g.h.i.j.k.example.com",
        "_dmarc.g.h.i.j.k.example.com",
        "_dmarc.h.i.j.k.example.com",
        "_dmarc.i.j.k.example.com",
        "_dmarc.j.k.example.com",
        "_dmarc.k.example.com",
        "_dmarc.example.com",
        "_dmarc.com",
    ]
    # "the policy domain is the highest element in the DNS tree with a DMARC
    # Policy Record, example.com."
    assert r.details["org_domain"] == "example.com"
    assert r.details["record_domain"] == "example.com"
    assert r.result == "fail"
    # The deep name exists? No records at all there: NXDOMAIN, but there is no
    # np=, so sp (absent) falls back to p.
    assert r.details["policy_tag"] == "p"
    assert r.details["disposition"] == "reject"


def test_b42_alignment_with_passing_identifiers() -> None:
    dns = FakeDns.from_zones(
        {"example.com": '_dmarc TXT "v=DMARC1; p=reject"\n_dmarc.signing TXT "v=DMARC1; p=none"'}
    )
    r = check_dmarc(
        "a.b.c.d.e.f.g.h.i.j.k.example.com",
        spf_result("pass", "example.com"),
        None,
        [dkim_result("pass", "signing.example.com")],
        dns,
    )
    # "SPF is aligned" and "DKIM is aligned for relaxed alignment".
    assert r.result == "pass"
    assert r.details["aligned"] == "dkim+spf"


def test_b43_psd_policy_record() -> None:
    dns = FakeDns.from_zones(
        {
            "bank.example": (
                '_dmarc TXT "v=DMARC1; p=reject; psd=y"\n'
                '_dmarc.giant TXT "v=DMARC1; p=quarantine"\n'
                "mail.giant A 192.0.2.30\nmail.mega A 192.0.2.31"
            )
        }
    )
    r = check_dmarc(
        "giant.bank.example",
        spf_result("pass", "mail.giant.bank.example"),
        None,
        [dkim_result("pass", "mail.mega.bank.example")],
        dns,
    )
    # "The Organizational Domain is giant.bank.example because it is the domain
    # directly below the one with psd=y ... it is also the policy domain."
    assert r.details["org_domain"] == "giant.bank.example"
    assert r.details["record_domain"] == "giant.bank.example"
    spf_entry, dkim_entry = r.details["alignment"]
    # "SPF is aligned" ... "The Organizational Domain is mega.bank.example, so
    # DKIM is not aligned."
    assert spf_entry["aligned"] is True
    assert dkim_entry["aligned"] is False
    assert "mega.bank.example" in dkim_entry["how"]
    assert r.result == "pass"
    assert r.details["aligned"] == "spf"
    assert organizational_domain("mail.mega.bank.example", dns) == "mega.bank.example"


# --- policies and dispositions -------------------------------------------------

BANK = """
@       A    192.0.2.80
@       MX   10 mx
mx      A    192.0.2.25
news    A    192.0.2.81
_dmarc  TXT  "v=DMARC1; p=reject; sp=quarantine; np=reject; rua=mailto:dmarc@bank.example"
"""


def test_unaligned_spoof_fails_with_reject() -> None:
    # The spoofer's own domain passes SPF, but From: says bank.example.
    dns = FakeDns.from_zones({"bank.example": BANK})
    r = check_dmarc(
        "bank.example", spf_result("pass", "spoofer.example"), "spoofer.example", [], dns
    )
    assert r.result == "fail"
    assert r.failed
    assert r.details["policy"] == "reject"
    assert r.details["policy_tag"] == "p"
    assert r.details["disposition"] == "reject"
    assert r.details["aligned"] is None
    assert "spoofer.example" in r.explanation
    assert "not aligned" in r.explanation
    assert "rejected" in r.explanation


@pytest.mark.parametrize(
    ("record", "policy", "disposition"),
    [
        ("v=DMARC1; p=quarantine", "quarantine", "quarantine"),
        ("v=DMARC1; p=none", "none", "none"),
        # §4.7 t=y: "if the policy is reject and the value of the t tag is y, a
        # policy of quarantine will be applied"; "if the policy is quarantine
        # and ... t is y, a policy of none will be applied"
        ("v=DMARC1; p=reject; t=y", "reject", "quarantine"),
        ("v=DMARC1; p=quarantine; t=y", "quarantine", "none"),
        ("v=DMARC1; p=none; t=y", "none", "none"),
        ("v=DMARC1; p=reject; t=n", "reject", "reject"),
    ],
)
def test_policy_and_testing_mode(record: str, policy: str, disposition: str) -> None:
    dns = FakeDns.from_zones({"shop.example": f'_dmarc TXT "{record}"'})
    r = check_dmarc("shop.example", spf_result("pass", "spoofer.example"), None, [], dns)
    assert r.result == "fail"
    assert r.details["policy"] == policy
    assert r.details["disposition"] == disposition
    assert r.details["testing"] == ("t=y" in record)


@pytest.mark.parametrize(
    ("author", "tag", "policy", "exists"),
    [
        ("bank.example", "p", "reject", None),  # the Author Domain's own record
        ("news.bank.example", "sp", "quarantine", None),  # an existing subdomain
        ("nosuch.bank.example", "np", "reject", False),  # NXDOMAIN: non-existent
    ],
)
def test_p_sp_np(author: str, tag: str, policy: str, exists: bool | None) -> None:
    dns = FakeDns.from_zones({"bank.example": BANK})
    r = check_dmarc(author, spf_result("none", "x.example"), None, [], dns)
    assert r.result == "fail"
    assert r.details["policy_tag"] == tag
    assert r.details["policy"] == policy
    if tag != "p":
        assert r.details["record_domain"] == "bank.example"
    if tag == "np":
        assert r.details["author_exists"] is exists


def test_np_absent_falls_back_to_sp_then_p() -> None:
    # §4.7 np: "If the np tag is absent, the policy specified by the sp tag (if
    # the sp tag is present) or the policy specified by the p tag ... MUST be
    # applied for non-existent subdomains."
    dns = FakeDns.from_zones({"a.example": '_dmarc TXT "v=DMARC1; p=reject; sp=none"'})
    r = check_dmarc("ghost.a.example", spf_result("none", "x"), None, [], dns)
    assert (r.details["policy_tag"], r.details["policy"]) == ("sp", "none")
    dns = FakeDns.from_zones({"b.example": '_dmarc TXT "v=DMARC1; p=quarantine"'})
    r = check_dmarc("ghost.b.example", spf_result("none", "x"), None, [], dns)
    assert (r.details["policy_tag"], r.details["policy"]) == ("p", "quarantine")


def test_empty_non_terminal_exists() -> None:
    # RFC 8020 / Appendix A.4: only NXDOMAIN means non-existent; a name with
    # something below it answers NOERROR, so sp (not np) applies.
    dns = FakeDns.from_zones({"bank.example": BANK + "deep.inner A 192.0.2.99\n"})
    r = check_dmarc("inner.bank.example", spf_result("none", "x"), None, [], dns)
    assert r.details["author_exists"] is True
    assert r.details["policy_tag"] == "sp"


def test_strict_versus_relaxed_dkim() -> None:
    zone = '_dmarc TXT "v=DMARC1; p=reject; adkim={}"\nsub A 192.0.2.5'
    for mode, result in (("r", "pass"), ("s", "fail")):
        dns = FakeDns.from_zones({"org.example": zone.format(mode)})
        r = check_dmarc("sub.org.example", None, None, [dkim_result("pass", "org.example")], dns)
        assert r.result == result, mode
        assert r.details["alignment"][0]["how"].startswith("relaxed" if mode == "r" else "strict")


def test_forwarding_spf_fails_but_aligned_dkim_passes() -> None:
    dns = FakeDns.from_zones({"bank.example": BANK})
    r = check_dmarc(
        "bank.example",
        spf_result("fail", "bank.example"),
        None,
        [dkim_result("pass", "bank.example")],
        dns,
    )
    assert r.result == "pass"
    assert r.details["aligned"] == "dkim"
    assert "DKIM" in r.explanation


def test_failed_dkim_does_not_align() -> None:
    dns = FakeDns.from_zones({"bank.example": BANK})
    r = check_dmarc("bank.example", None, None, [dkim_result("fail", "bank.example")], dns)
    assert r.result == "fail"
    assert "no DKIM signature passed" in r.explanation


def test_no_record_is_none() -> None:
    dns = FakeDns.from_zones({"plain.example": "@ A 192.0.2.1"})
    r = check_dmarc("mail.plain.example", spf_result("pass", "plain.example"), None, [], dns)
    assert r.result == "none"
    assert r.details["record"] is None
    assert r.details["disposition"] == "none"
    assert dmarc_queries(dns) == [
        "_dmarc.mail.plain.example",
        "_dmarc.plain.example",
        "_dmarc.example",
    ]
    assert "_dmarc.plain.example" in r.explanation


def test_removed_and_unknown_tags_are_ignored_with_a_note() -> None:
    dns = FakeDns.from_zones(
        {"old.example": '_dmarc TXT "v=DMARC1; p=reject; pct=0; rf=afrf; ri=3600; xyz=1"'}
    )
    r = check_dmarc("old.example", spf_result("none", "x"), None, [], dns)
    assert r.details["disposition"] == "reject"  # pct=0 no longer softens anything
    notes = " ".join(r.details["notes"])
    assert "pct=" in notes
    assert "rf=" in notes
    assert "ri=" in notes
    assert "xyz=" in notes


def test_dns_error_is_temperror() -> None:
    dns = FakeDns.from_zones({"bank.example": BANK})
    dns.fail("_dmarc.slow.example", "SERVFAIL")
    r = check_dmarc("slow.example", spf_result("pass", "slow.example"), None, [], dns)
    assert r.result == "temperror"
    assert r.details["disposition"] is None


def test_record_without_policy() -> None:
    # §4.10.1: no valid p= and no valid rua= → no DMARC processing (permerror);
    # with a valid rua= → act as p=none.
    dns = FakeDns.from_zones({"np.example": '_dmarc TXT "v=DMARC1; p=block"'})
    r = check_dmarc("np.example", spf_result("none", "x"), None, [], dns)
    assert r.result == "permerror"
    dns = FakeDns.from_zones({"np.example": '_dmarc TXT "v=DMARC1; rua=mailto:r@np.example"'})
    r = check_dmarc("np.example", spf_result("none", "x"), None, [], dns)
    assert r.result == "fail"
    assert r.details["disposition"] == "none"


def test_two_records_at_one_name_are_discarded() -> None:
    dns = FakeDns.from_zones(
        {"two.example": '_dmarc TXT "v=DMARC1; p=reject"\n_dmarc TXT "v=DMARC1; p=none"'}
    )
    assert check_dmarc("two.example", spf_result("none", "x"), None, [], dns).result == "none"


@pytest.mark.parametrize(
    ("text", "is_record"),
    [
        ("v=DMARC1; p=reject", True),
        ("v = DMARC1 ; p = reject", True),
        ("p=reject; v=DMARC1", False),  # §4.7: v must be the first tag
        ("v=dmarc1; p=reject", False),  # the value is case-sensitive
        ("v=spf1 -all", False),
    ],
)
def test_parse_record_version(text: str, is_record: bool) -> None:
    assert (parse_record(text, "x.example") is not None) is is_record


def test_parse_record_defaults_and_invalid_values() -> None:
    rec = parse_record(
        "v=DMARC1; p=Quarantine; adkim=x; t=maybe; psd=n; rua=mailto:a@x.example!10m", "x"
    )
    assert rec is not None
    assert rec.p == "quarantine"
    assert rec.adkim == "r"  # invalid value → default (§4.8)
    assert rec.aspf == "r"
    assert rec.t is False
    assert rec.psd == "n"
    assert rec.rua == ("mailto:a@x.example",)


def test_from_address_is_accepted() -> None:
    dns = FakeDns.from_zones({"bank.example": BANK})
    r = check_dmarc("Alice@Bank.Example", spf_result("pass", "bank.example"), None, [], dns)
    assert r.inputs["from_domain"] == "bank.example"
    assert r.result == "pass"


def test_bad_discovery_mode() -> None:
    with pytest.raises(ValueError, match="treewalk"):
        check_dmarc("a.example", None, None, [], FakeDns(), discovery="dns")  # type: ignore[arg-type]


# --- tree walk versus public suffix list -----------------------------------------

REGISTRY = {
    # A private registry (like a .test registry handing out names): it marks
    # itself as a public suffix domain with psd=y (§5.2). A public suffix list
    # does not know it, so RFC 7489 takes registry.test as everyone's
    # Organizational Domain.
    "registry.test": (
        '_dmarc TXT "v=DMARC1; p=none; psd=y"\n'
        '_dmarc.alice TXT "v=DMARC1; p=reject"\n'
        "alice A 192.0.2.40\nmallory A 192.0.2.66"
    ),
}


def test_psl_and_tree_walk_disagree_on_a_private_registry() -> None:
    # mallory.registry.test passes SPF for its own domain and writes From: alice.
    spf = spf_result("pass", "mallory.registry.test")
    walk = check_dmarc("alice.registry.test", spf, None, [], FakeDns.from_zones(REGISTRY))
    psl = check_dmarc(
        "alice.registry.test", spf, None, [], FakeDns.from_zones(REGISTRY), discovery="psl"
    )
    # Tree walk: alice and mallory are separate Organizational Domains → fail.
    assert walk.result == "fail"
    assert walk.details["org_domain"] == "alice.registry.test"
    assert walk.details["disposition"] == "reject"
    # Public suffix list: both under registry.test → "aligned" → the spoof passes.
    assert psl.result == "pass"
    assert psl.details["org_domain"] == "registry.test"
    assert psl.details["discovery"] == "psl"


def test_psl_and_tree_walk_pick_different_policy_records() -> None:
    # x.alice.registry.test has no record: the tree walk finds alice's record;
    # RFC 7489 asks the PSL Organizational Domain registry.test instead.
    spf = spf_result("none", "x")
    walk = check_dmarc("x.alice.registry.test", spf, None, [], FakeDns.from_zones(REGISTRY))
    psl = check_dmarc(
        "x.alice.registry.test", spf, None, [], FakeDns.from_zones(REGISTRY), discovery="psl"
    )
    assert walk.details["record_domain"] == "alice.registry.test"
    assert psl.details["record_domain"] == "registry.test"
    assert walk.details["disposition"] == "reject"
    assert psl.details["disposition"] == "none"


def test_psl_mode_uses_the_list_offline() -> None:
    dns = FakeDns()
    assert organizational_domain("a.b.example.co.uk", dns, discovery="psl") == "example.co.uk"
    assert dns.queries == []


# --- §4.10, §5.3.6: a DNS failure matters only where its answer was needed ----


def _com_fails() -> FakeDns:
    dns = FakeDns.from_zones({"example.com": '_dmarc TXT "v=DMARC1; p=reject"\n'})
    dns.fail("_dmarc.com", "SERVFAIL")
    return dns


def test_failure_above_the_deciding_record_still_passes() -> None:
    """`_dmarc.example.com` holds p=reject, only `_dmarc.com` fails: aligned
    mail passes (it was deferred as temperror before)."""
    dns = _com_fails()
    r = check_dmarc("example.com", spf_result("pass", "example.com"), None, [], dns)
    assert r.result == "pass"
    assert r.details["org_domain"] == "example.com"
    assert "_dmarc.com" in r.details["org_domain_reason"]


def test_failure_above_the_deciding_record_still_rejects_a_spoof() -> None:
    dns = _com_fails()
    r = check_dmarc("example.com", spf_result("pass", "spoofer.example"), None, [], dns)
    assert (r.result, r.details["policy"], r.details["disposition"]) == ("fail", "reject", "reject")


def test_failure_above_still_aligns_a_subdomain_relaxed() -> None:
    dns = _com_fails()
    r = check_dmarc("example.com", None, None, [dkim_result("pass", "mail.example.com")], dns)
    assert r.result == "pass"


def test_failure_below_the_deciding_record_is_temperror() -> None:
    """A failed query for the Author Domain itself could have held its policy."""
    dns = FakeDns.from_zones({"example.com": '_dmarc TXT "v=DMARC1; p=reject"\n'})
    dns.fail("_dmarc.shop.example.com", "SERVFAIL")
    r = check_dmarc("shop.example.com", spf_result("pass", "spoofer.example"), None, [], dns)
    assert r.result == "temperror"


def test_failure_and_no_record_found_is_temperror() -> None:
    dns = FakeDns.from_zones({"example.com": "@ A 192.0.2.1\n"})
    dns.fail("_dmarc.com", "SERVFAIL")
    r = check_dmarc("example.com", spf_result("pass", "spoofer.example"), None, [], dns)
    assert r.result == "temperror"
