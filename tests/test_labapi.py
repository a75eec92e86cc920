"""The discoverable lab API: docstrings with examples, the command list, the
common edits, "did you mean" for names, topologies by name."""

from __future__ import annotations

import inspect
import os
import re
from pathlib import Path

import pytest

import sim
from sim.controls import COMMANDS, commands_of
from sim.errors import NetworkError, ServiceError, TopologyError
from sim.hosting.runtime import Lab

ROOT = Path(__file__).resolve().parent.parent


def test_every_public_method_of_the_lab_has_a_docstring_with_an_example() -> None:
    missing = []
    for name, member in inspect.getmembers(Lab):
        if name.startswith("_"):
            continue
        doc = inspect.getdoc(member) or ""
        if ">>>" not in doc:
            missing.append(name)
    assert missing == []


@pytest.fixture(scope="module")
def internet() -> object:
    with sim.start("internet") as lab:
        yield lab


def test_the_command_list_matches_what_each_service_accepts(internet: Lab) -> None:
    """Each service names its commands when it refuses an unknown one: the
    catalog must list exactly those (the test that keeps it honest)."""
    owners = {"dns": "ns", "dnsbl": "dnsbl", "mx": "mx-qq", "relay": "smtp-isp"}
    for service, node in owners.items():
        with pytest.raises(ServiceError) as err:
            internet.backend.control(node, service, "no-such-command")
        said = re.search(r"\(([^)]*)\)\s*$", str(err.value))
        assert said is not None, str(err.value)
        accepted = {c.strip() for c in said.group(1).split(",")}
        assert accepted == {c.name for c in commands_of(service)}, service
    for command in COMMANDS:
        assert (
            command.example.startswith('lab.control("') and f'"{command.name}"' in command.example
        )


def test_commands_lists_a_nodes_services_with_arguments(internet: Lab) -> None:
    listed = internet.commands("smtp-isp")
    assert {c.service for c in listed} == {"mx", "relay", "submission"}
    assert "relay hold" in listed.names()
    text = str(internet.commands("ns", "dns"))
    assert "remove zone name [rtype] [data]" in text
    assert "<table" in internet.commands("mx-qq")._repr_html_()


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda lab: lab.send("laptop", "bob@qq.example", via="smtp_isp"), NetworkError,
         "via: no node named 'smtp_isp'; did you mean 'smtp-isp'?"),
        (lambda lab: lab.dig("laptp", "qq.example"), NetworkError,
         "node: no node named 'laptp'; did you mean 'laptop'?"),
        (lambda lab: lab.control("mx-qq", "mxx", "down"), ServiceError,
         "mx-qq runs no 'mxx' service; did you mean 'mx'?"),
        (lambda lab: lab.control("mx-qq", "mx", "dwn"), ServiceError,
         "no control command 'dwn'; did you mean 'down'?"),
        (lambda lab: lab.set_check("mx-qq", "spff", "header"), ServiceError,
         "no check 'spff'; did you mean 'spf'?"),
        (lambda lab: lab.set_record("www.qq.exmple", "A", "192.0.2.1"), ServiceError,
         "did you mean 'qq.example'"),
        (lambda lab: lab.set_firewall("ips", []), NetworkError,
         "router: no node named 'ips'; did you mean 'isp'?"),
    ],
)  # fmt: skip
def test_wrong_names_get_suggestions_in_python_words(
    internet: Lab, call: object, error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as err:
        call(internet)  # type: ignore[operator]
    assert words in str(err.value)
    assert "--" not in str(err.value)  # no command-line flag in a Python error


def test_set_record_set_policy_and_set_check_change_the_running_lab(internet: Lab) -> None:
    before = internet.dig("laptop", "_dmarc.shop.example", "TXT").answers
    try:
        internet.set_policy("shop.example", "reject", adkim="s")
        after = internet.dig("laptop", "_dmarc.shop.example", "TXT").answers
        assert [a["data"] for a in after] == ['"v=DMARC1; p=reject; adkim=s"']
        internet.set_record("vps7", "A", "192.0.2.77", zone="hosting.example")
        assert internet.dig("laptop", "vps7.hosting.example").answers[0]["data"] == "192.0.2.77"
        internet.set_record("vps7.hosting.example", "A", None)
        assert internet.dig("laptop", "vps7.hosting.example").rcode == "NXDOMAIN"
        gone = r"no A record 'vps7\.hosting\.example'; did you mean"
        with pytest.raises(ServiceError, match=gone):
            internet.set_record("vps7.hosting.example", "A", None)  # gone already
        checks = internet.set_check("mx-qq", "spf", "header")["checks"]
        assert {"check": "spf", "action": "header"} in checks
    finally:
        internet.set_check("mx-qq", "spf", "reject")
        internet.set_record("_dmarc.shop.example", "TXT", before[0]["data"])


def test_a_topology_by_name_and_a_missing_one_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sim.load_topology("home-isp").name == "home-isp"
    # A notebook runs in notebooks/: the relative path of the repository works there too.
    monkeypatch.chdir(ROOT / "notebooks")
    assert sim.load_topology("topologies/home-isp.yaml").name == "home-isp"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TopologyError) as err:
        sim.load_topology("home-ips")
    message = str(err.value)
    assert "did you mean 'home-isp'?" in message
    assert str(tmp_path / "topologies" / "home-ips.yaml") in message
    assert str(ROOT / "topologies" / "home-ips.yaml") in message
    assert os.getcwd() == str(tmp_path)


def test_a_wrong_as_node_is_named_as_the_python_argument() -> None:
    with pytest.raises(NetworkError) as err:
        sim.start("home-isp", as_node="laptp")
    assert str(err.value) == "as_node: no node named 'laptp'; did you mean 'laptop'?"
