"""Each experiment's parameters are declared once, on the experiment, and the
lab file format, the command line and the Python API all follow from it."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

import pytest

from sim.errors import SimError
from sim.experiments import KINDS, Dig, experiment_class
from sim.experiments.params import add_arguments, cli_args, from_args, params
from sim.experiments.read import Read
from sim.experiments.send import Send
from sim.hosting.runtime import Lab
from sim.lab.schema import EXPERIMENT_SPEC
from sim.spec.kinds import Record


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_lab_file_form_has_exactly_the_experiment_parameters(kind: str) -> None:
    record = EXPERIMENT_SPEC.options[kind].spec
    assert isinstance(record, Record)
    assert list(record.fields) == ["from", *(p.name for p in params(experiment_class(kind)))]


def _parse(cls: type, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser, cls)
    return parser.parse_args(argv)


def test_a_command_line_and_a_lab_file_make_the_same_send() -> None:
    argv = "--from laptop --to a@x.example --to b@x.example --via smtp --user u --password p"
    args = _parse(Send, [*argv.split(), "--header", "X-Lab: 1", "--settle", "--tls", "required"])
    from_cli = from_args(Send, cli_args(Send, args))
    from_file = from_args(
        Send,
        {
            "to": ["a@x.example", "b@x.example"],
            "via": "smtp",
            "user": "u",
            "password": "p",
            "headers": {"X-Lab": "1"},
            "settle": True,
            "tls": "required",
        },
    )
    assert from_cli == from_file
    assert from_cli.subject == "Hello from maillab"  # the experiment's default, once


def test_positional_parameters_keep_the_dig_and_connect_command_lines() -> None:
    assert from_args(Dig, cli_args(Dig, _parse(Dig, ["--from", "n", "qq.example", "mx"]))) == Dig(
        "qq.example", "MX"
    )
    connect = experiment_class("connect")
    args = _parse(connect, ["--from", "n", "mx.qq.example", "25"])
    assert from_args(connect, cli_args(connect, args)) == connect("mx.qq.example", 25)


def test_a_default_true_switch_is_turned_off_with_no() -> None:
    args = _parse(Read, ["--from", "n", "--via", "m", "--user", "u", "--password", "p", "--no-tls"])
    assert from_args(Read, cli_args(Read, args)).tls is False


def test_a_header_option_must_have_a_name_and_a_colon() -> None:
    args = _parse(Send, ["--from", "n", "--to", "a@x.example", "--header", "no colon"])
    with pytest.raises(SimError, match="write it as 'Name: value'"):
        cli_args(Send, args)


@pytest.mark.parametrize(("method", "cls"), [(Lab.send, Send), (Lab.read, Read)])
def test_the_python_api_takes_the_experiment_parameters(method: object, cls: type) -> None:
    names = [p for p in inspect.signature(method).parameters if p not in ("self", "node")]
    assert sorted(names) == sorted(p.name for p in params(cls))


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["send", "--from", "laptop", "--to", "bob@qq.example", "--header", "bad"], "Name: value"),
        (
            [
                "read",
                "--from",
                "laptop",
                "--via",
                "mx-qq",
                "--user",
                "bob",
                "--password",
                "p",
                "--protocol",
                "pop3",
                "--folder",
                "Junk",
            ],
            "POP3 has no folders",
        ),
    ],
)
def test_bad_options_are_one_line_and_exit_2_before_a_lab_starts(
    argv: list[str],
    said: str,
    home_isp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sim
    from sim.cli import main

    def no_lab(*args: object, **kwargs: object) -> None:
        raise AssertionError("a lab started")

    monkeypatch.setattr(sim, "start", no_lab)
    assert main([argv[0], str(home_isp_path), *argv[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert said in err and "\n" not in err


def test_tls_modes_spelled_out_match_the_smtp_client() -> None:
    from typing import get_args

    from sim.experiments.send import TLS_MODES
    from sim.services.smtpclient import TlsMode

    assert get_args(TlsMode) == TLS_MODES
