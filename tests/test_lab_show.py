"""A step's ``show:`` (what it talks about, opened for the student): read
from the lab file, checked like every other field, and used by the labs."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.errors import LabFileError
from sim.lab.catalog import labs_dir
from sim.lab.loader import load_lab
from sim.lab.model import Show

FIXTURE = Path(__file__).parent / "fixtures" / "tui" / "labs" / "02-home-direct.yaml"


def lab_with(tmp_path: Path, show: str) -> Path:
    text = FIXTURE.read_text(encoding="utf-8")
    topology = (FIXTURE.parent.parent / "topologies" / "home-isp.yaml").resolve()
    text = text.replace("topology: home-isp", f"topology: {topology}")
    text = text.replace("    show: {mailbox: bob@qq.example}", f"    show: {show}")
    path = tmp_path / "lab.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_show_is_read_from_the_step(tmp_path: Path) -> None:
    lab = load_lab(lab_with(tmp_path, "{mailbox: bob@qq.example, folder: Junk}"))
    show = lab.step("relay").show
    assert show == Show("mail", "bob@qq.example", "Junk")
    assert show is not None and show.describe() == "the newest message of bob@qq.example in Junk"
    lab = load_lab(lab_with(tmp_path, "{view: queue}"))
    assert lab.step("relay").show == Show("queue")
    assert lab.step("direct").show is None


@pytest.mark.parametrize(
    ("show", "problem"),
    [
        ("{view: inbox}", "'inbox' is not one of: story, dns, net"),
        ("{mailbox: bob}", "a mail address user@domain"),
        (
            "{mailbox: bob@nowhere.example}",
            "no MX of the topology keeps mail for 'nowhere.example'",
        ),
        ("{mailbox: bob@qq.example, folder: Spam}", "'Spam' is not one of: INBOX, Junk"),
    ],
)
def test_a_wrong_show_is_one_clear_problem(tmp_path: Path, show: str, problem: str) -> None:
    with pytest.raises(LabFileError) as raised:
        load_lab(lab_with(tmp_path, show))
    messages = [str(p) for p in raised.value.problems]
    assert any(problem in m and "show" in m for m in messages), messages


def test_the_labs_that_talk_about_a_message_open_it() -> None:
    found = {
        (path.stem, step.id): step.show
        for path in sorted(labs_dir().glob("*.yaml"))
        for step in load_lab(path).steps
        if step.show is not None
    }
    assert found[("09-reliability", "a-day-later")] == Show("mail", "alice@home.example")
    assert found[("10-mta-mda", "the-headers")] == Show("mail", "bob@qq.example")
    assert found[("09-reliability", "greylisted")] == Show("queue")
