"""Loading topology files into the model: values, defaults, positions, bad input."""

from __future__ import annotations

import os
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from sim.errors import Problem, TopologyError
from sim.topology import (
    load_topology,
    loads_topology,
    validate_topology_file,
    validate_topology_text,
)
from sim.topology.model import CheckPolicy, Node, Smarthost, Topology
from sim.topology.schema import EXAMPLE

ROOT = Path(__file__).resolve().parents[1]
GOOD = ROOT / "tests" / "fixtures" / "topologies" / "good"
SHIPPED = sorted((ROOT / "topologies").glob("*.yaml"))


def test_design_example_is_verbatim_and_loads() -> None:
    path = GOOD / "design-example.yaml"
    assert path.read_text(encoding="utf-8") == EXAMPLE
    topo = load_topology(path)
    assert topo.name == "home-isp"
    assert topo.source == str(path)
    assert [n.name for n in topo.nodes] == ["laptop", "isp", "internet", "ns", "mx-qq", "smtp-isp"]
    laptop = topo.node("laptop")
    assert laptop == Node("laptop", "host", ip=IPv4Interface("100.64.10.20/24"), gateway="isp")
    (rule,) = topo.node("isp").firewall
    assert (rule.action, rule.proto, rule.dport, rule.src) == (
        "drop",
        "tcp",
        (25, 25),
        IPv4Network("100.64.0.0/10"),
    )
    assert rule.note == "residential customers may not send on port 25"
    assert (rule.direction, rule.reject_with) == ("any", "tcp-reset")  # the defaults
    mx = topo.node("mx-qq").services.mx
    assert mx is not None
    assert mx.domains == ("qq.example",)
    assert mx.mailboxes == ("bob",)
    assert [c.check for c in mx.checks] == ["ptr", "dnsbl", "spf", "dkim", "dmarc"]
    assert mx.checks[0] == CheckPolicy("ptr", "reject")
    assert mx.checks[3].action == "header"
    relay = topo.node("smtp-isp").services.relay
    assert relay is not None
    assert relay.retry == (300.0, 1800.0, 7200.0)
    assert relay.give_up == 5 * 86400.0
    sub = topo.node("smtp-isp").services.submission
    assert sub is not None
    assert sub.users == (("alice@home.example", "secret"),)
    assert sub.ports == (587, 465)
    assert topo.links == (("isp", "internet"),)
    assert [z for z, _ in topo.zones] == ["qq.example", "113.0.203.in-addr.arpa"]
    assert topo.zone_text("qq.example").startswith("@      MX  10 mx\n")
    assert topo.settings.time_scale == 60.0
    assert topo.settings.connect_timeout == 30.0
    assert topo.settings.resolver == IPv4Address("198.51.100.53")


def test_rich_topology_values() -> None:
    topo = load_topology(GOOD / "rich.yaml")
    assert topo.name == "rich_lab-2"
    assert topo.title.startswith("Everything at once")
    s = topo.settings
    assert (s.time_scale, s.connect_timeout, s.outside) == (120.5, 45.0, "core")
    rules = topo.node("home").firewall
    assert rules[0].reject_with == "icmp-admin-prohibited"
    assert rules[0].direction == "out"
    assert rules[1].dport == (587, 587)  # "587:587", the iptables way
    assert rules[2].dport == (1024, 65535)
    assert rules[2].dst == IPv4Network("203.0.113.0/24")
    assert rules[3].proto == "icmp"
    assert rules[3].dport is None
    # Domain names compare case-insensitively and without the final dot.
    ns = topo.node("ns").services.dns
    assert ns is not None
    assert "home.example" in ns.zones
    mx = topo.node("mx-qq").services.mx
    assert mx is not None
    assert (mx.greylist, mx.tls, mx.max_size, mx.dmarc_discovery) == (
        300.0,
        False,
        512 * 1024,
        "psl",
    )
    assert dict((c.check, c.action) for c in mx.checks)["helo"] == "junk"
    backup = topo.node("backup-mx").services.mx
    assert backup is not None
    assert backup.down
    assert backup.max_size == 1048576
    assert [c.action for c in backup.checks] == ["reject", "reject"]
    mailbox = topo.node("mx-qq").services.mailbox
    assert mailbox is not None
    assert mailbox.users == (("bob", "1234"), ("carol.smith", "hunter2"))
    dnsbl = topo.node("bl").services.dnsbl
    assert dnsbl is not None
    assert dnsbl.zone == "zen.dnsbl.example"
    assert dnsbl.listed[0].code == IPv4Address("127.0.0.11")
    assert dnsbl.listed[1].net == IPv4Network("203.0.113.66/32")
    assert dnsbl.listed[1].code == IPv4Address("127.0.0.2")
    relay = topo.node("vps").services.relay
    assert relay is not None
    assert relay.retry == (60.0, 600.0, 3600.0)
    assert relay.warn_after == 5400.0
    assert relay.dkim == (("vps.test", "s1"),)
    assert relay.dkim_publish is False
    assert relay.smarthost == Smarthost("provider", 465, "vps@provider.example", "pw")
    sub = topo.node("provider").services.submission
    assert sub is not None
    assert sub.ports == (587, 465, 2525)
    assert topo.node("printer").gateway is None


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_topologies_load(path: Path) -> None:
    assert validate_topology_file(path) == []
    assert isinstance(load_topology(path), Topology)


def test_resolver_defaults_to_the_only_dns_host() -> None:
    text = EXAMPLE.replace("settings: {time_scale: 60, resolver: 198.51.100.53}\n", "")
    topo = loads_topology(text)
    assert topo.settings.resolver == IPv4Address("198.51.100.53")
    assert topo.settings.time_scale == 60.0


def test_load_raises_with_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        EXAMPLE.replace("gateway: isp}", "gateway: ips}").replace("give_up: 5d", "give_up: soon"),
        encoding="utf-8",
    )
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    problems = info.value.problems
    assert len(problems) == 2
    assert problems == validate_topology_file(path)
    assert str(info.value).splitlines() == [str(p) for p in problems]
    assert str(info.value).startswith(f"{path}:5:")
    with pytest.raises(TopologyError):
        load_topology(str(path))
    with pytest.raises(TopologyError) as from_text:
        loads_topology(path.read_text())
    assert from_text.value.problems[0].path == "<string>"


def test_accepts_str_and_pathlike(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(EXAMPLE, encoding="utf-8")
    assert load_topology(str(path)).source == str(path)
    assert load_topology(os.fspath(path)).name == "home-isp"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "the file is empty"),
        (b"\n\n   \n", "the file is empty"),
        (b"# just a comment\n", "the file is empty"),
        (b"\x00\x01\x02", "binary file"),
        (b"name: caf\xe9\n", "not UTF-8"),
        (b"just words", "the top level must be a mapping"),
        (b"42", "the top level must be a mapping"),
        (b"---\nname: a\n---\nname: b\n", "not valid YAML"),
        (b"name: [unclosed\n", "not valid YAML"),
        (b"name: x\nname: y\n", "duplicate key 'name'"),
    ],
)
def test_bad_files_are_one_problem(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_bytes(content)
    problems = validate_topology_file(path)
    assert problems, problems
    assert fragment in problems[0].message, problems
    assert problems[0].line >= 1
    assert problems[0].col >= 1
    with pytest.raises(TopologyError):
        load_topology(path)


def test_missing_path_and_directory(tmp_path: Path) -> None:
    assert validate_topology_file(tmp_path / "nope.yaml") == [
        Problem(str(tmp_path / "nope.yaml"), 1, 1, "no such file")
    ]
    (problem,) = validate_topology_file(tmp_path)
    assert "is a directory" in problem.message
    with pytest.raises(TopologyError, match="no such file"):
        load_topology(tmp_path / "nope.yaml")


def _as_nobody(work: Callable[[], str]) -> str:
    """Run ``work`` in a child that has dropped root (root reads every file)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(write, work().encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        out = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    return out


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text(EXAMPLE)
    path.chmod(0)
    tmp_path.chmod(0o755)  # the directory may be entered: only the file is closed

    def message() -> str:
        (problem,) = validate_topology_file(path)
        return problem.message

    got = _as_nobody(message) if os.geteuid() == 0 else message()
    assert "permission denied" in got


def test_byte_order_mark_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + EXAMPLE.replace("\n", "\r\n").encode())
    assert load_topology(path).name == "home-isp"
    path.write_bytes(
        EXAMPLE.replace("gateway: isp}", "gateway: ips}").replace("\n", "\r\n").encode()
    )
    (problem,) = validate_topology_file(path)
    assert (problem.line, problem.col) == (5, 56)


def test_every_duplicate_key_is_reported() -> None:
    text = "name: a\nname: b\nnodes:\n  r1: {kind: router, kind: host}\n  r1: {kind: router}\n"
    problems = validate_topology_text(text)
    dups = [(p.line, p.col, p.message.split(":")[0]) for p in problems if "duplicate" in p.message]
    assert dups == [
        (2, 1, "duplicate key 'name' (first on line 1); the first value is used"),
        (4, 22, "nodes.r1"),
        (5, 3, "nodes"),
    ]


def test_domain_keys_are_normalised_and_compared() -> None:
    text = EXAMPLE.replace("  qq.example: |", "  QQ.Example.: |")
    topo = loads_topology(text)
    assert topo.zones[0][0] == "qq.example"
    twice = EXAMPLE + "  qq.example.: |\n    @ A 203.0.113.25\n"
    (problem,) = validate_topology_text(twice)
    assert problem.line == 30
    assert "is the same as the key on line 23" in problem.message


ZONE_BASE = """\
name: t
nodes:
  r1: {kind: router}
  ns: {kind: host, ip: 192.0.2.53/24, gateway: r1, services: {dns: {zones: [a.example]}}}
zones:
  a.example: ZONE
"""


@pytest.mark.parametrize(
    ("zone", "line", "col"),
    [
        # Literal blocks map zone lines to file lines one to one.
        ("|\n    www A 192.0.2.80\n    bad A 1.2.3\n", 8, 5),
        ("|\n\n\n    bad A 1.2.3\n", 9, 5),
        ("|-\n      www A 192.0.2.80\n      bad A 1.2.3\n", 8, 7),
        ("|4\n      www A 192.0.2.80\n      bad A 1.2.3\n", 8, 7),
        ("|  # a comment after the indicator\n    bad A 1.2.3\n", 7, 5),
        # Other scalar styles are pointed at as a whole.
        ('"bad A 1.2.3"\n', 6, 14),
        (">\n    bad A 1.2.3\n", 6, 14),
    ],
)
def test_zone_errors_point_at_the_line_in_the_file(zone: str, line: int, col: int) -> None:
    (problem,) = validate_topology_text(ZONE_BASE.replace("ZONE\n", zone))
    assert "bad A record" in problem.message
    assert (problem.line, problem.col) == (line, col)


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ("name: home-isp", "name: 'home isp'", "is not an identifier"),
        ("name: home-isp", "name: 12", "quote it"),
        ("time_scale: 60", "time_scale: -1", "positive number"),
        ("time_scale: 60", "time_scale: .inf", "positive number"),
        ("time_scale: 60", "time_scale: '60'", "expected a positive number, got text"),
        ("resolver: 198.51.100.53", "resolver: 198.51.100.53/24", "is not an IPv4 address"),
        ("ip: 100.64.10.20/24", "ip: 100.64.10.20", "has no prefix length"),
        (
            "kind: host, ip: 100.64.10.20/24",
            "kind: hots, ip: 100.64.10.20/24",
            "did you mean 'host'",
        ),
        ("dport: 25", "dport: 70000", "not a port number"),
        ("dport: 25", "dport: 30-20", "empty range"),
        ("dport: 25", "dport: true", "expected a port"),
        ("give_up: 5d", "give_up: -5d", "not a duration"),
        ("give_up: 5d", "give_up: [5d]", "expected a duration"),
        ("links:\n  - [isp, internet]", "links: {isp: internet}", "expected a list, got a mapping"),
        ("links:\n  - [isp, internet]", "links:\n  -\n  - [isp, internet]", "empty item"),
        ("mailboxes: [bob]", "mailboxes: [bob, bob]", "already listed as item 0"),
        ("mailboxes: [bob]", "mailboxes: ['bob smith']", "is not a local part"),
        ("checks: [ptr, dnsbl, spf, dkim, dmarc]", "checks: [ptr, ptr]", "already listed"),
        (
            "checks: [ptr, dnsbl, spf, dkim, dmarc]",
            "checks: {dmarc: policy, x: 1}",
            "unknown key 'x'",
        ),
        ("{alice@home.example: secret}", "{}", "needs at least one entry"),
        ("{alice@home.example: secret}", "{alice@home.example: 1234}", "quote it"),
        ("retry: [5m, 30m, 2h]", "retry: []", "needs at least one item"),
        ("domains: [qq.example]", "domains: [qq..example]", "is not a domain name"),
        ("nodes:\n", "nodes: !!str x\nx:\n", "unknown key 'x'"),
        ("services: {dns:", "services: {dns: null, x:", "no value"),
        (
            "settings: {time_scale: 60, resolver: 198.51.100.53}",
            "settings: {resolver: 198.51.100.53, [a]: b}",
            "a key must be a word",
        ),
    ],
)
def test_structural_problems(old: str, new: str, fragment: str) -> None:
    assert old in EXAMPLE
    problems = validate_topology_text(EXAMPLE.replace(old, new, 1))
    assert any(fragment in p.message for p in problems), problems


def test_one_problem_per_bad_value_in_a_list() -> None:
    text = EXAMPLE.replace("retry: [5m, 30m, 2h]", "retry: [5x, 30m, 2y]")
    problems = validate_topology_text(text)
    assert [p.message.split(":")[0] for p in problems] == [
        "nodes.smtp-isp.services.relay.retry[0]",
        "nodes.smtp-isp.services.relay.retry[2]",
    ]
