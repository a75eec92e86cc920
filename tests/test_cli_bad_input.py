"""Every kind of bad invocation ends with one clear line and exit 2.

Issue 19 ("Command line and files"): missing and unknown files, unknown nodes,
bad addresses, ports and record types, conflicting flags, directories given as
files, FIFOs and devices, unreadable, empty, binary and huge files, for every
subcommand. For each: exit code 2, exactly one line of output (the error on
stderr; ``validate`` prints its problem on stdout, its interface), no
traceback, no "internal error". With ``--json``: exactly one JSON object on
stdout, ``{"error": {"kind", "message", ...}}`` (``validate --json``: its
``{"valid": false, "problems": [...]}``), nothing on stderr.

Cases run in this process through :func:`sim.cli.main` (fast); a case that
needs a file root could read anyway runs as ``nobody`` in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sim.cli import build_parser, main
from sim.inputfile import MAX_YAML_BYTES
from sim.topology import load_topology

ROOT = Path(__file__).resolve().parent.parent
T = str(ROOT / "topologies" / "home-isp.yaml")
LAB = str(ROOT / "labs" / "01-receive-only.yaml")
LONG_LABEL = "a" * 64 + ".example"
LONG_NAME = ".".join(["a" * 60] * 5) + ".example"  # 313 octets


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    #: whether the command takes --json (the JSON variant is checked too)
    json: bool = True
    #: runs as an unprivileged user (a file root could read anyway)
    unprivileged: bool = False
    #: a word the one line must contain (what the person has to fix)
    says: str = ""


def c(id: str, *argv: str, json: bool = True, unprivileged: bool = False, says: str = "") -> Case:
    return Case(id, tuple(argv), json, unprivileged, says)


SEND = ("send", "{T}", "--from", "laptop", "--to", "bob@qq.example")
READ = (
    "read",
    "{T}",
    "--from",
    "laptop",
    "--via",
    "smtp-isp",
    "--user",
    "alice",
    "--password",
    "x",
)

CASES = [
    # -- the command line itself
    c("unknown-command", "frobnicate", says="invalid choice"),
    c("unknown-option", "list", "--frobnicate", says="unrecognized"),
    c("json-alone", "--json", json=False, says="--json"),
    # -- validate: every kind of file that is not a good one
    c("validate-no-path", "validate", says="PATH"),
    c("validate-missing", "validate", "{tmp}/nope.yaml", says="no such file"),
    c("validate-missing-dir", "validate", "{tmp}/nodir/nope.yaml", says="no such file"),
    c("validate-directory", "validate", "{tmp}", says="directory"),
    c("validate-fifo", "validate", "{fifo}", says="FIFO"),
    c("validate-dev-zero", "validate", "/dev/zero", says="device"),
    c("validate-dev-null", "validate", "/dev/null", says="device"),
    c("validate-socket", "validate", "{socket}", says="socket"),
    c("validate-huge", "validate", "{huge}", says="too large"),
    c("validate-empty", "validate", "{empty}", says="empty"),
    c("validate-binary", "validate", "{binary}", says="binary"),
    c("validate-latin1", "validate", "{latin1}", says="UTF-8"),
    c("validate-unreadable", "validate", "{unreadable}", unprivileged=True, says="permission"),
    c("validate-lab-missing-topology", "validate", "{badlab}", says="topology"),
    # -- dig
    c("dig-missing-topology", "dig", "{tmp}/nope.yaml", "--from", "laptop", "qq.example"),
    c("dig-topology-is-dir", "dig", "{tmp}", "--from", "laptop", "qq.example", says="directory"),
    c("dig-topology-fifo", "dig", "{fifo}", "--from", "laptop", "qq.example", says="FIFO"),
    c("dig-topology-empty", "dig", "{empty}", "--from", "laptop", "qq.example", says="empty"),
    c("dig-no-from", "dig", "{T}", "qq.example", says="--from"),
    c("dig-from-router", "dig", "{T}", "--from", "isp", "qq.example", says="router"),
    c("dig-unknown-node", "dig", "{T}", "--from", "nosuchnode", "qq.example", says="nosuchnode"),
    c("dig-bad-type", "dig", "{T}", "--from", "laptop", "qq.example", "BADTYPE", says="BADTYPE"),
    c("dig-type-out-of-range", "dig", "{T}", "--from", "laptop", "qq.example", "TYPE70000"),
    c("dig-empty-label", "dig", "{T}", "--from", "laptop", "a..b", says="a..b"),
    c("dig-long-label", "dig", "{T}", "--from", "laptop", LONG_LABEL, says="63"),
    c("dig-long-name", "dig", "{T}", "--from", "laptop", LONG_NAME, says="255"),
    c("dig-empty-name", "dig", "{T}", "--from", "laptop", "", says="empty"),
    c("dig-bad-backend", "dig", "{T}", "--from", "laptop", "qq.example", "--backend", "vm"),
    # -- connect
    c("connect-port-too-big", "connect", "{T}", "--from", "laptop", "mx.qq.example", "99999"),
    c("connect-port-zero", "connect", "{T}", "--from", "laptop", "mx.qq.example", "0"),
    c("connect-port-word", "connect", "{T}", "--from", "laptop", "mx.qq.example", "smtp"),
    c("connect-unknown-node", "connect", "{T}", "--from", "nosuch", "mx.qq.example", "25"),
    c("connect-bad-host", "connect", "{T}", "--from", "laptop", "a..b", "25", says="a..b"),
    # -- send
    c("send-port-99999", *SEND, "--via", "smtp-isp", "--port", "99999", says="99999"),
    c("send-port-0", *SEND, "--via", "smtp-isp", "--port", "0", says="port"),
    c("send-port-negative", *SEND, "--via", "smtp-isp", "--port=-1", says="-1"),
    c("send-port-word", *SEND, "--via", "smtp-isp", "--port", "submission", says="port"),
    c("send-user-without-password", *SEND, "--via", "smtp-isp", "--user", "alice"),
    c("send-bad-recipient", "send", "{T}", "--from", "laptop", "--to", "not an address"),
    c("send-bad-mail-from", *SEND, "--mail-from", "a@b@c", says="a@b@c"),
    c("send-unknown-node", "send", "{T}", "--from", "nosuch", "--to", "bob@qq.example"),
    c("send-unknown-server", *SEND, "--server", "mx-qqq", says="mx-qq"),
    c("send-bad-server", *SEND, "--server", "not a host", says="--server"),
    c("send-server-and-via", *SEND, "--server", "mx-qq", "--via", "smtp-isp", says="--via"),
    c("send-unknown-via", *SEND, "--via", "nosuchnode", says="nosuchnode"),
    c("send-bad-via-host", *SEND, "--via", "a..b", says="a..b"),
    c("send-empty-recipient", "send", "{T}", "--from", "laptop", "--to", ""),
    c("send-state-dir-is-file", *SEND, "--state-dir", "{empty}", says="directory"),
    c(
        "send-password-file-fifo",
        *SEND,
        "--user",
        "alice",
        "--password-file",
        "{fifo}",
        says="FIFO",
    ),
    c("send-password-file-dir", *SEND, "--user", "alice", "--password-file", "{tmp}"),
    c("send-password-file-huge", *SEND, "--user", "alice", "--password-file", "{huge}"),
    c("send-password-file-empty", *SEND, "--user", "alice", "--password-file", "{empty}"),
    c("send-missing-topology", "send", "{tmp}/nope.yaml", "--from", "a", "--to", "b@c.example"),
    c("send-topology-binary", "send", "{binary}", "--from", "a", "--to", "b@c.example"),
    c("send-topology-huge", "send", "{huge}", "--from", "a", "--to", "b@c.example"),
    # -- mailbox
    c("mailbox-no-state-dir", "mailbox", "{T}", "bob@qq.example", "--state-dir", "{tmp}/none"),
    c("mailbox-state-dir-file", "mailbox", "{T}", "bob@qq.example", "--state-dir", "{empty}"),
    c("mailbox-bad-address", "mailbox", "{T}", "bob", "--state-dir", "{tmp}", says="bob"),
    c("mailbox-unknown-domain", "mailbox", "{T}", "x@nowhere.example", "--state-dir", "{tmp}"),
    c(
        "mailbox-bad-folder",
        "mailbox",
        "{T}",
        "bob@qq.example",
        "--state-dir",
        "{tmp}",
        "--folder",
        "Spam",
    ),
    # -- up (fails before anything starts)
    c("up-as-unknown-node", "up", "{T}", "--as", "nosuchnode", says="nosuchnode"),
    c("up-state-dir-is-file", "up", "{T}", "--state-dir", "/etc/hostname", says="/etc/hostname"),
    c("up-state-dir-under-file", "up", "{T}", "--state-dir", "{empty}/sub", says="directory"),
    c(
        "up-state-dir-not-writable",
        "up",
        "{T}",
        "--state-dir",
        "{readonly}",
        unprivileged=True,
        says="writ",
    ),
    c("up-state-dir-empty", "up", "{T}", "--state-dir", "", says="empty"),
    c("up-state-dir-device", "up", "{T}", "--state-dir", "/dev/null", says="/dev/null"),
    c("up-missing-topology", "up", "{tmp}/nope.yaml"),
    c("up-lab-file-as-topology", "up", "{LAB}"),
    # -- read
    c("read-port-too-big", *READ, "--port", "70000", says="70000"),
    c("read-bad-protocol", *READ, "--protocol", "smtp"),
    c(
        "read-bad-via",
        *("read", "{T}", "--from", "laptop", "--via", "a..b", "--user", "a", "--password", "b"),
        says="a..b",
    ),
    c(
        "read-unknown-node",
        "read",
        "{T}",
        "--from",
        "nosuch",
        "--via",
        "smtp-isp",
        "--user",
        "a",
        "--password",
        "b",
    ),
    # -- graph
    c("graph-missing", "graph", "{tmp}/nope.yaml", json=False),
    c("graph-fifo", "graph", "{fifo}", json=False, says="FIFO"),
    c("graph-bad-format", "graph", "{T}", "--format", "gif", json=False),
    c("graph-output-under-file", "graph", "{T}", "-o", "{empty}/x.svg", json=False),
    c("graph-topology-dev-zero", "graph", "/dev/zero", json=False, says="device"),
    c("graph-output-in-missing-dir", "graph", "{T}", "-o", "{tmp}/nodir/x.svg", json=False),
    c("graph-unknown-highlight", "graph", "{T}", "--highlight", "laptop,nosuch", json=False),
    c("graph-json-flag", "graph", "{T}", "--json", json=False),  # JSON: the flag is unknown here
    # -- labs
    c("check-unknown-lab", "check", "nosuchlab", says="nosuchlab"),
    c("check-lab-is-fifo", "check", "{fifo}"),
    c("check-lab-empty", "check", "{empty}", says="empty"),
    c("check-lab-binary", "check", "{binary}", says="binary"),
    c("check-lab-huge", "check", "{huge}", says="too large"),
    c("check-labs-dir-missing", "check", "--labs-dir", "{tmp}/nodir"),
    c("list-labs-dir-is-file", "list", "--labs-dir", "{empty}"),
    c("run-unknown-lab", "run", "nosuchlab", json=False),
    c("run-lab-dev-zero", "run", "/dev/zero", json=False),
    c(
        "mailbox-topology-dev-zero",
        "mailbox",
        "/dev/zero",
        "bob@qq.example",
        "--state-dir",
        "{tmp}",
    ),
    # -- new
    c("new-bad-name", "new", "topology", "Bad Name!", json=False),
    c("new-existing", "new", "topology", "home-isp", "--dir", "{topodir}", json=False),
    # -- clean
    c("clean-unknown-run", "clean", "zzzzzz", says="zzzzzz"),
]

# Mininet is not needed by any case: each must fail before a lab starts.


@pytest.fixture(scope="module")
def files() -> Iterator[dict[str, str]]:
    # Not under pytest's tmp_path: that is private to root, and some cases
    # run as nobody.
    tmp = Path(tempfile.mkdtemp(prefix="bad-input-"))
    try:
        yield _make_files(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _make_files(tmp: Path) -> dict[str, str]:
    os.chmod(tmp, 0o755)
    fifo = tmp / "fifo.yaml"
    os.mkfifo(fifo)
    huge = tmp / "huge.yaml"
    with huge.open("wb") as out:  # sparse: no disk, no time
        out.truncate(MAX_YAML_BYTES * 80)
    (tmp / "empty.yaml").write_text("")
    (tmp / "binary.yaml").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    (tmp / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    unreadable = tmp / "unreadable.yaml"
    unreadable.write_text(Path(T).read_text())
    unreadable.chmod(0o000)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(tmp / "socket.yaml"))
    sock.close()  # the socket file stays
    (tmp / "topologies").mkdir()
    (tmp / "topologies" / "home-isp.yaml").write_text(Path(T).read_text())
    readonly = tmp / "readonly"
    readonly.mkdir(mode=0o555)
    lab = Path(LAB).read_text().replace("topology: ", "topology: nope/", 1)
    (tmp / "badlab.yaml").write_text(lab)
    return {
        "T": T,
        "LAB": LAB,
        "tmp": str(tmp),
        "fifo": str(fifo),
        "huge": str(huge),
        "empty": str(tmp / "empty.yaml"),
        "binary": str(tmp / "binary.yaml"),
        "latin1": str(tmp / "latin1.yaml"),
        "unreadable": str(unreadable),
        "readonly": str(readonly),
        "badlab": str(tmp / "badlab.yaml"),
        "socket": str(tmp / "socket.yaml"),
        "topodir": str(tmp / "topologies"),
    }


def _run(
    argv: list[str], unprivileged: bool, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    if unprivileged and os.geteuid() == 0:
        return _run_as_nobody(argv)
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _run_as_nobody(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` in a forked child that gave up root (uid/gid 65534).

    Forked rather than executed: the interpreter may live where nobody cannot
    read (pyenv under /root). The modules a case needs are imported first.
    """
    import getpass  # tempfile.gettempdir() asks for the user name

    import sim.hosting.runtime
    import sim.lab.loader
    import sim.statedir
    import sim.validation

    getpass.getuser()
    build_parser()  # imports every command's module
    sim.hosting.runtime.start  # noqa: B018
    load_topology(T)

    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            code = main(argv)
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
        os._exit(code)
    os.close(out_w)
    os.close(err_w)
    with open(out_r, "rb") as out_file, open(err_r, "rb") as err_file:
        out, err = out_file.read(), err_file.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(), err.decode()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("case", "as_json"),
    [
        pytest.param(case, j, id=case.id + ("-json" if j else ""))
        for case in CASES
        for j in ((False, True) if case.json else (False,))
    ],
)
def test_bad_invocation_is_one_clear_line_and_exit_2(
    case: Case,
    as_json: bool,
    files: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MAILLAB_DEBUG", raising=False)
    # A clean run must not look at other engineers' runs: its own run records.
    monkeypatch.setenv("MAILLAB_RUN_DIR", str(Path(files["tmp"]) / "run"))
    argv = [a.format(**files) for a in case.argv]
    if as_json and "--json" not in argv:
        argv.append("--json")
    code, out, err = _run(argv, case.unprivileged, capsys)
    # --json anywhere on the command line, even where it is unknown: JSON.
    as_json = "--json" in argv
    everything = out + err
    assert "Traceback" not in everything
    assert "internal error" not in everything
    assert code == 2, f"exit {code}: {everything!r}"
    if as_json:
        assert err == "", f"stderr with --json: {err!r}"
        lines = out.splitlines()
        assert len(lines) == 1, f"not one JSON line: {out!r}"
        doc = json.loads(lines[0])
        if argv[0] == "validate" and "valid" in doc:
            assert doc["valid"] is False and len(doc["problems"]) == 1
            message = json.dumps(doc["problems"][0])
        else:
            assert set(doc) == {"error"}
            assert {"kind", "message"} <= set(doc["error"])
            assert doc["error"]["kind"] != "internal"
            message = doc["error"]["message"]
    else:
        lines = everything.splitlines()
        assert len(lines) == 1, f"not one line: {everything!r}"
        if argv[0] != "validate":
            assert out == "", f"error on stdout: {out!r}"
        message = lines[0]
    assert case.says.lower() in message.lower(), message


BACKEND_CASES = [
    case
    for case in CASES
    if case.argv[0] in ("dig", "connect", "send", "up", "read") and "--backend" not in case.argv
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", BACKEND_CASES, ids=[case.id for case in BACKEND_CASES])
def test_the_mininet_backend_refuses_alike(
    case: Case,
    files: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bad values are refused before a backend is chosen: the same line on
    both backends (and no root or mininet needed to be told so)."""
    monkeypatch.delenv("MAILLAB_DEBUG", raising=False)
    monkeypatch.setenv("MAILLAB_RUN_DIR", str(Path(files["tmp"]) / "run"))
    argv = [a.format(**files) for a in case.argv]
    local = _run(argv, case.unprivileged, capsys)
    mininet = _run([*argv, "--backend", "mininet"], case.unprivileged, capsys)
    assert mininet == local
