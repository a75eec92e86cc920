"""State directories: refused when unusable, temporary ones marked with their
owner, and ``maillab clean`` removing exactly those whose owner is gone."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import sim
from sim import statedir
from sim.cli import main
from sim.errors import ArgumentError
from sim.hosting.runtime import Lab

ROOT = Path(__file__).resolve().parent.parent
T = ROOT / "topologies" / "home-isp.yaml"


@pytest.fixture
def tmpdir_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Temporary directories (and run records) of this test only: a clean run
    must never look at other labs on the machine. A short path under /tmp:
    the mininet agents' sockets live inside, and AF_UNIX paths are short."""
    base = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    root = base / "t"
    root.mkdir()
    monkeypatch.setenv("TMPDIR", str(root))
    monkeypatch.setenv("MAILLAB_RUN_DIR", str(base / "run"))
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    yield root
    shutil.rmtree(base, ignore_errors=True)


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _marked(root: Path, name: str, pid: int, start: int | None) -> Path:
    path = root / f"maillab-{name}"
    (path / "tls").mkdir(parents=True)
    (path / "tls" / "ca-key.pem").write_text("secret")
    (path / statedir.MARKER).write_text(json.dumps({"pid": pid, "start": start, "created": 1.0}))
    return path


# -- a state directory someone names ----------------------------------------------


def test_a_file_as_state_directory_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(ArgumentError, match="is a file, not a directory"):
        statedir.prepare(f)
    with pytest.raises(ArgumentError, match="is a file, not a directory"):
        statedir.prepare(f / "sub")


def test_a_missing_state_directory_is_created(tmp_path: Path) -> None:
    assert statedir.prepare(tmp_path / "a" / "b").is_dir()


# -- temporary ones ----------------------------------------------------------------


def test_a_temporary_state_directory_names_its_owner(tmpdir_env: Path) -> None:
    path = statedir.create_temp()
    marker = json.loads((path / statedir.MARKER).read_text())
    assert path.parent == tmpdir_env and marker["pid"] == os.getpid()
    assert statedir.orphans() == []  # its owner (this process) runs


def test_orphans_are_those_whose_owner_is_gone_and_nothing_else(tmpdir_env: Path) -> None:
    me = statedir._start_time(os.getpid())
    gone = _marked(tmpdir_env, "gone", _dead_pid(), 12345)
    reused = _marked(tmpdir_env, "reused", os.getpid(), (me or 0) + 1)  # same pid, other process
    alive = _marked(tmpdir_env, "alive", os.getpid(), me)
    unmarked = tmpdir_env / "maillab-unmarked"
    unmarked.mkdir()
    other = tmpdir_env / "other-dir"
    other.mkdir()
    (other / statedir.MARKER).write_text(json.dumps({"pid": _dead_pid(), "start": 1}))
    link = tmpdir_env / "maillab-link"
    link.symlink_to(gone)
    found = statedir.clean_orphans()
    assert sorted(o.path.name for o in found) == ["maillab-gone", "maillab-reused"]
    assert not gone.exists() and not reused.exists()
    assert alive.is_dir() and unmarked.is_dir() and other.is_dir() and link.is_symlink()


def test_a_state_directory_in_use_by_a_mininet_run_is_kept(tmpdir_env: Path) -> None:
    kept = _marked(tmpdir_env, "inuse", _dead_pid(), 1)
    assert statedir.clean_orphans(exclude=[str(kept)]) == []
    assert kept.is_dir()


def test_an_unknown_as_node_creates_nothing(tmpdir_env: Path) -> None:
    with pytest.raises(ArgumentError, match="nosuchnode"):
        sim.start(T, as_node="nosuchnode")
    assert list(tmpdir_env.iterdir()) == []


def test_an_unknown_backend_creates_nothing(tmpdir_env: Path) -> None:
    with pytest.raises(sim.BackendError, match="unknown backend"):
        sim.start(T, backend="vm")
    assert list(tmpdir_env.iterdir()) == []


def _up(env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sim.cli", "up", str(T), "--json", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


@pytest.mark.timeout(120)
def test_sigkilled_up_leaves_a_directory_clean_removes(tmpdir_env: Path) -> None:
    _kill_and_clean(tmpdir_env)


@pytest.mark.mininet
@pytest.mark.timeout(300)
def test_sigkilled_mininet_up_leaves_a_directory_clean_removes(tmpdir_env: Path) -> None:
    # The run's processes (hence namespaces) go first, then its state directory.
    _kill_and_clean(tmpdir_env, "--backend", "mininet")
    assert list(Path(os.environ["MAILLAB_RUN_DIR"]).glob("*.json")) == []


def _ready(proc: subprocess.Popen[str]) -> Path:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    ready = json.loads(line) if line.startswith("{") else {}
    assert "state_dir" in ready, f"not ready: {line!r}"
    return Path(ready["state_dir"])


def _kill_and_clean(tmpdir_env: Path, *extra: str) -> None:
    env = {**os.environ, "TMPDIR": str(tmpdir_env)}  # MAILLAB_RUN_DIR: the fixture's
    # One after the other: two labs starting at once on a loaded machine
    # compete for nothing but time.
    killed = _up(env, *extra)
    running: subprocess.Popen[str] | None = None
    try:
        dead_dir = _ready(killed)
        running = _up(env, *extra)
        live_dir = _ready(running)
        assert dead_dir.parent == tmpdir_env and live_dir.parent == tmpdir_env
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(timeout=30)
        assert (dead_dir / statedir.MARKER).is_file()
        assert any(dead_dir.rglob("*key*"))  # the lab CA's private key is left behind

        main(["clean", "--dry-run"])
        assert dead_dir.is_dir()
        done = subprocess.run(
            [sys.executable, "-m", "sim.cli", "clean", "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["state_dirs"] == [str(dead_dir)]
        assert not dead_dir.exists()
        assert live_dir.is_dir()  # its lab still runs
    finally:
        for proc in (killed, running):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
    assert not live_dir.exists()  # a lab that stops removes its own


# -- the Python API refuses bad values before anything runs ----------------------------


class _NoBackend:
    """A backend that fails the test if an experiment reaches it."""

    state_dir = Path("/nonexistent")
    topology = sim.load_topology(T)

    def run(self, node: str, experiment: object) -> object:
        raise AssertionError(f"{experiment!r} reached the backend")

    def stop(self) -> None:
        pass


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda lab: lab.dig("laptop", "qq.example", "BADTYPE"), "BADTYPE"),
        (lambda lab: lab.dig("laptop", "a..b"), "empty label"),
        (lambda lab: lab.dig("laptop", "a" * 64 + ".example"), "more than 63"),
        (lambda lab: lab.dig("laptop", ".".join(["a" * 60] * 5)), "more than 255"),
        (lambda lab: lab.connect("laptop", "mx.qq.example", 99999), "1-65535"),
        (lambda lab: lab.connect("laptop", "mx.qq.example", 0), "1-65535"),
        (lambda lab: lab.send("laptop", "bob@qq.example", port=-1), "1-65535"),
        (lambda lab: lab.send("laptop", "not an address"), "not an address"),
        (lambda lab: lab.send("laptop", "bob@qq.example", mail_from="a@b@c"), "a@b@c"),
        (lambda lab: lab.dig("isp", "qq.example"), "router"),
        (lambda lab: lab.read("laptop", "u", "p", via="a..b"), "a..b"),
    ],
)
def test_the_api_raises_argument_errors(call: object, match: str) -> None:
    lab = Lab(_NoBackend(), owns_state=False)  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match=match) as info:
        call(lab)  # type: ignore[operator]
    assert isinstance(info.value, sim.SimError) and not isinstance(info.value, ValueError)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user (nobody)")
def test_clean_needs_no_root_and_removes_only_this_users_orphans(tmpdir_env: Path) -> None:
    nobody = 65534
    os.chmod(tmpdir_env.parent, 0o755)
    os.chmod(tmpdir_env, 0o1777)  # like /tmp
    mine = _marked(tmpdir_env, "nobodys", _dead_pid(), 1)
    for path in (mine, *mine.rglob("*")):
        os.chown(path, nobody, nobody)
    roots = _marked(tmpdir_env, "roots", _dead_pid(), 1)
    code, out = _as_nobody(["clean", "--json"], tmpdir_env)
    assert code == 0, out
    assert json.loads(out)["state_dirs"] == [str(mine)]
    assert not mine.exists() and roots.is_dir()


def _as_nobody(argv: list[str], tmp: Path) -> tuple[int, str]:
    """``main(argv)`` in a forked child running as nobody (forked: the
    interpreter may live where nobody cannot read)."""
    import getpass

    from sim.cli import build_parser

    getpass.getuser()
    build_parser()  # imports every command's module
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            os.dup2(write_end, 1)
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            code = main(argv)
            sys.stdout.flush()
        finally:
            os._exit(code)
    os.close(write_end)
    with open(read_end, "rb") as pipe:
        out = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out


@pytest.mark.timeout(20)
def test_a_fifo_marker_is_skipped_without_hanging(tmpdir_env: Path) -> None:
    trap = tmpdir_env / "maillab-trap"
    trap.mkdir()
    os.mkfifo(trap / statedir.MARKER)
    assert statedir.clean_orphans() == []
    assert trap.is_dir()
