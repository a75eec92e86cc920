"""The command line follows the conventions (issue 14 §3): ``--version``,
help on every argument, examples on every subcommand (each one parses),
``docs/cli.md`` generated from the parser, shell completion from the parser
with lab ids and node names, one line without a terminal, and passwords
from a file, the environment or a prompt."""

from __future__ import annotations

import argparse
import json
import os
import pty
import select
import shlex
import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from sim import graphcmd
from sim.cli import NO_TERMINAL, build_parser, main
from sim.clidoc import DOC, render
from sim.clihelp import EXAMPLES, walk
from sim.completion import script
from sim.passwords import ENV, PasswordError, password_from

ROOT = Path(__file__).resolve().parent.parent
HOME_ISP = "topologies/home-isp.yaml"


def maillab_argv() -> list[str]:
    return [sys.executable, "-m", "sim.cli"]


def run(
    args: list[str], *, env: dict[str, str] | None = None, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*maillab_argv(), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )


# -- --version ---------------------------------------------------------------------


def test_version_prints_the_distributions_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.split() == ["maillab", version("maillab")]


# -- help and examples --------------------------------------------------------------


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
    ]


def test_every_argument_and_option_has_help() -> None:
    missing = [
        f"maillab {' '.join(path)} {a.option_strings or a.metavar or a.dest}"
        for path, parser in walk(build_parser())
        for a in _actions(parser)
        if not a.help or a.help == argparse.SUPPRESS
    ]
    assert not missing, f"arguments without help text: {missing}"


def test_every_subcommand_has_a_line_in_its_parents_help() -> None:
    for path, parser in walk(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                listed = {a.dest: a.help for a in action._choices_actions}
                assert set(listed) == set(action.choices), path
                assert all(listed.values()), f"maillab {' '.join(path)}: {listed}"


def test_every_subcommand_help_ends_with_two_or_three_examples() -> None:
    for path, parser in walk(build_parser()):
        help_text = parser.format_help().rstrip()
        examples = EXAMPLES.get(" ".join(path))
        assert examples and 2 <= len(examples) <= 3, f"maillab {' '.join(path)}: no examples"
        tail = help_text.splitlines()[-len(examples) - 1 :]
        assert tail[0] == "examples:", f"maillab {' '.join(path)}: {tail}"
        assert [line.strip() for line in tail[1:]] == list(examples)


@pytest.mark.parametrize("example", sorted({e for examples in EXAMPLES.values() for e in examples}))
def test_every_example_parses(example: str) -> None:
    words = shlex.split(example)
    if ">" in words:
        words = words[: words.index(">")]
    assert words[0] == "maillab"
    args = build_parser().parse_args(words[1:])
    assert callable(getattr(args, "func", None)) or words == ["maillab"]


def test_docs_cli_md_is_generated_from_the_parser() -> None:
    text = DOC.read_text(encoding="utf-8")
    generated_by = text.split("argparse of Python ", 1)[1].split(")", 1)[0]
    here = ".".join(map(str, sys.version_info[:2]))
    if generated_by != here:
        pytest.skip(f"docs/cli.md has Python {generated_by}'s argparse layout; this is {here}")
    assert text == render(), "docs/cli.md is stale: run `python -m sim.clidoc`"


def test_spelled_out_choices_match_their_modules() -> None:
    from sim import graphdraw

    assert graphcmd.FORMATS == graphdraw.FORMATS


def test_building_the_parser_loads_no_lab_machinery() -> None:
    code = (
        "import sys\n"
        "from sim.cli import build_parser\n"
        "build_parser().format_help()\n"
        "heavy = ['sim.hosting.runtime', 'sim.lab.loader', 'networkx', 'dkim', 'aiosmtpd', "
        "'sim.tui.app', 'asyncio', 'shtab', "
        # what a send runs (sim.experiments.follow), the trace vocabulary (39
        # classes), the topology model and the YAML reader: imported when a
        # command runs, not when the command line is built (issue 14 §3)
        "'sim.experiments.follow', 'sim.events', 'sim.trace', 'sim.experiments.alignment', "
        "'sim.topology.model', 'sim.services.maildir', 'ruamel.yaml', 'email.policy']\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == ""


def test_the_maillab_process_freezes_what_parsing_loaded() -> None:
    # The process (argv from sys.argv) spares the collector what lives until
    # exit; a caller of main(ARGS) (a test, a script) keeps its collector as is.
    code = (
        "import gc, sys\n"
        "from sim import cli\n"
        "cli.main(['validate', 'topologies/home-isp.yaml'])\n"
        "print(gc.get_freeze_count())\n"
        "sys.argv = ['maillab', 'validate', 'topologies/home-isp.yaml']\n"
        "cli.main()\n"
        "print(gc.get_freeze_count())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    called, process = map(int, done.stdout.split())
    assert called == 0 and process > 10_000


# -- no terminal ----------------------------------------------------------------------


@pytest.mark.parametrize("args", [[], ["run", "receive-only"]])
def test_without_a_terminal_the_tui_does_not_start(args: list[str]) -> None:
    done = run(args, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip() == NO_TERMINAL and "\n" not in done.stderr.strip()


def test_a_terminal_on_stdout_alone_is_not_enough() -> None:
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            maillab_argv(),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 2 and done.stderr.strip() == NO_TERMINAL


# -- shell completion ----------------------------------------------------------------


@pytest.fixture(scope="module")
def on_path(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment whose PATH has a ``maillab`` that is this checkout's."""
    bin_dir = tmp_path_factory.mktemp("bin")
    wrapper = bin_dir / "maillab"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m sim.cli "$@"\n')
    wrapper.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    env["PYTHONPATH"] = str(ROOT)
    return env


def bash_candidates(bash_script: Path, words: list[str], env: dict[str, str]) -> list[str]:
    """What TAB offers in bash for the last of ``words``."""
    line = " ".join(shlex.quote(w) if w else '""' for w in words)
    code = (
        f"source {shlex.quote(str(bash_script))}\n"
        f"COMP_WORDS=({line})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_shtab_maillab\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    path = tmp_path_factory.mktemp("completion") / "maillab.bash"
    path.write_text(script("bash", build_parser()))
    return path


def test_bash_completes_subcommands_and_options(bash_script: Path, on_path: dict[str, str]) -> None:
    assert {"send", "semd"} & set(bash_candidates(bash_script, ["maillab", "se"], on_path)) == {
        "send"
    }
    options = bash_candidates(bash_script, ["maillab", "send", HOME_ISP, "--pass"], on_path)
    assert set(options) == {"--password", "--password-file"}


def test_bash_completes_lab_ids(bash_script: Path, on_path: dict[str, str]) -> None:
    # In the course's order; lab 13 (mininet only) completes too: it is
    # checked and run with --backend mininet.
    assert bash_candidates(bash_script, ["maillab", "check", "re"], on_path) == [
        "receive-only",
        "reliability",
        "real-thing",
    ]
    assert "spf" in bash_candidates(bash_script, ["maillab", "run", ""], on_path)


def test_bash_completes_node_names_of_the_topology_on_the_line(
    bash_script: Path, on_path: dict[str, str]
) -> None:
    words = ["maillab", "send", HOME_ISP, "--from", "l"]
    assert bash_candidates(bash_script, words, on_path) == ["laptop"]
    via = bash_candidates(bash_script, ["maillab", "send", HOME_ISP, "--via", ""], on_path)
    assert {"direct", "smtp-isp", "mx-qq"} <= set(via)
    dig = bash_candidates(bash_script, ["maillab", "dig", HOME_ISP, "--from", "mx"], on_path)
    assert dig == ["mx-qq"]


def test_bash_completes_topology_files(bash_script: Path, on_path: dict[str, str]) -> None:
    found = bash_candidates(bash_script, ["maillab", "send", "topologies/home"], on_path)
    assert found == [HOME_ISP]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_complete_labs_and_nodes(shell: str) -> None:
    text = script(shell, build_parser())
    assert "__complete labs" in text and "__complete nodes" in text
    assert "completion" in text and "--password-file" in text
    program = shutil.which(shell)
    if program is not None:  # a syntax check where the shell is installed
        done = subprocess.run([program, "-n"], input=text, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def _in_shell(shell: str, path: Path, code: str, env: dict[str, str]) -> list[str]:
    program = shutil.which(shell)
    if program is None:
        pytest.skip(f"{shell} is not installed")
    done = subprocess.run(
        [program, "-c", f"source {shlex.quote(str(path))}\n{code}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [line.split("\t")[0] for line in done.stdout.splitlines() if line]


def test_fish_completes_lab_ids_and_node_names(tmp_path: Path, on_path: dict[str, str]) -> None:
    path = tmp_path / "maillab.fish"
    path.write_text(script("fish", build_parser()))
    assert _in_shell("fish", path, "complete -C 'maillab check re'", on_path) == [
        "receive-only",
        "reliability",
        "real-thing",
    ]
    line = f"complete -C 'maillab send {HOME_ISP} --from l'"
    assert _in_shell("fish", path, line, on_path) == ["laptop"]


def test_zsh_lab_and_node_functions(tmp_path: Path, on_path: dict[str, str]) -> None:
    path = tmp_path / "_maillab"
    text = script("zsh", build_parser())
    path.write_text(text)
    # shtab wires the functions into _arguments; zsh's own completion needs a
    # terminal, so the functions run here with compadd printing its array.
    assert ":_maillab_labs" in text and ":_maillab_nodes" in text
    fake = 'compadd() { [[ $1 == -a ]] && print -l -- "${(@P)2}"; }\n'
    labs = _in_shell("zsh", path, fake + "words=(maillab check re)\n_maillab_labs", on_path)
    assert {"receive-only", "spf"} <= set(labs)
    nodes = f"words=(maillab send {HOME_ISP} --from l)\n_maillab_nodes"
    assert "laptop" in _in_shell("zsh", path, fake + nodes, on_path)


def test_completion_helper_is_quiet_on_nonsense(on_path: dict[str, str]) -> None:
    done = run(["__complete", "nodes", "maillab", "send", "no-such.yaml"], env=on_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    done = run(["__complete", "frobnicate"], env=on_path)
    assert (done.returncode, done.stdout) == (0, "")


# -- passwords -------------------------------------------------------------------------


def _args(**kwargs: object) -> argparse.Namespace:
    return argparse.Namespace(**{"password": None, "password_file": None, **kwargs})


@pytest.fixture
def no_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)


@pytest.mark.usefixtures("no_tty")
def test_password_sources_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pw = tmp_path / "pw"
    pw.write_text("from-file\nsecond line is ignored\n")
    monkeypatch.setenv(ENV, "from-env")
    assert password_from(_args(password="given"), user="u", prog="send") == "given"
    assert password_from(_args(password_file=str(pw)), user="u", prog="send") == "from-file"
    assert password_from(_args(), user="u", prog="send") == "from-env"
    # Without a user there is nothing to log in as; the variable is ignored.
    assert password_from(_args(), user=None, prog="send") is None


@pytest.mark.usefixtures("no_tty")
def test_no_password_and_no_terminal_is_one_clear_line() -> None:
    with pytest.raises(PasswordError) as err:
        password_from(_args(), user="alice", prog="send")
    message = str(err.value)
    assert "\n" not in message and "--password-file" in message and ENV in message


@pytest.mark.usefixtures("no_tty")
@pytest.mark.parametrize("problem", ["missing", "directory", "empty", "huge"])
def test_bad_password_files(tmp_path: Path, problem: str) -> None:
    path = tmp_path / "pw"
    if problem == "directory":
        path.mkdir()
    elif problem == "empty":
        path.write_text("\n")
    elif problem == "huge":
        path.write_text("x" * 10_000)
    with pytest.raises(PasswordError) as err:
        password_from(_args(password_file=str(path)), user="u", prog="send")
    assert str(err.value).startswith(f"send: --password-file {path}: ")


@pytest.mark.usefixtures("no_tty")
def test_a_password_without_a_user_is_a_usage_error() -> None:
    with pytest.raises(PasswordError):
        password_from(_args(password="x"), user=None, prog="send")


def test_password_and_password_file_exclude_each_other() -> None:
    code = main(["send", HOME_ISP, "--from", "laptop", "--to", "b@q", "--password", "a",
                 "--password-file", "f"])  # fmt: skip
    assert code == 2


SEND = [
    "send",
    HOME_ISP,
    "--from",
    "laptop",
    "--to",
    "bob@qq.example",
    "--via",
    "smtp-isp",
    "--user",
    "alice@home.example",
    "--json",
]


def test_send_takes_the_password_from_the_environment() -> None:
    env = dict(os.environ, **{ENV: "secret"})
    done = run(SEND, env=env, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outcome"] == "delivered"


def test_send_without_a_password_source_says_so() -> None:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    done = run(SEND, env=env, stdin=subprocess.DEVNULL)
    # With --json the error is one JSON object on stdout (sim/clireport.py).
    assert done.returncode == 2 and done.stderr == ""
    (line,) = done.stdout.splitlines()
    assert "--password-file" in json.loads(line)["error"]["message"]


def _run_in_pty(args: list[str], typed: bytes, env: dict[str, str]) -> tuple[int, str]:
    """Run maillab with a terminal as stdin/stdout/stderr, type ``typed`` at
    the first prompt, and return (exit code, everything it wrote)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [*maillab_argv(), *args],
        cwd=ROOT,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        start_new_session=True,
    )
    os.close(follower)
    output = b""
    sent = False
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
                if not sent and b"Password for alice@home.example:" in output:
                    os.write(leader, typed)
                    sent = True
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    return code, output.decode("utf-8", "replace")


@pytest.mark.parametrize(
    ("typed", "outcome"), [(b"secret\n", "delivered"), (b"hunter2-typo\n", "")]
)
def test_send_prompts_for_the_password_on_a_terminal(typed: bytes, outcome: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    code, output = _run_in_pty(SEND, typed, env)
    assert "Password for alice@home.example:" in output
    assert typed.strip().decode() not in output  # not echoed
    result = json.loads(output[output.index("{") :])
    if outcome:
        assert code == 0 and result["outcome"] == outcome
    else:
        assert code == 1 and result["outcome"] == "rejected" and result["stage"] == "auth"
