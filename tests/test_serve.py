"""``maillab serve``: the TUI in a real (headless) browser.

The server runs as ``maillab serve`` would (a subprocess, loopback, a free
port); Debian's chromium opens the page; the test reads the terminal the page
received and types real key events into it (see ``tests/browser.py``). A
screenshot of each stage is kept under ``tests/artifacts/`` (gitignored; the
path is printed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sim.serve import NO_LOGIN, app_command, is_loopback

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("MAILLAB_TEST_ARTIFACTS", ROOT / "tests" / "artifacts"))


def _maillab(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sim.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
        **kw,  # type: ignore[arg-type]
    )


def test_help_says_there_is_no_login() -> None:
    result = _maillab("serve", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "no login" in text
    assert "127.0.0.1" in text
    assert "examples:" in result.stdout


def test_bad_port_is_one_line_and_exit_2() -> None:
    result = _maillab("serve", "--port", "70000")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "70000" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_in_use_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _maillab("serve", "--port", str(port))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "in use" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_loopback_is_recognised() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")


def test_a_non_loopback_host_is_warned_about(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import textual_serve.server

    import sim.serve

    made: list[dict[str, object]] = []

    class Recorder:  # stands in for textual-serve's server: nothing listens
        def __init__(self, command: str, **kw: object) -> None:
            made.append({"command": command, **kw})

        def serve(self) -> None:
            pass

    monkeypatch.setattr(textual_serve.server, "Server", Recorder)
    assert sim.serve.serve("192.0.2.1", 8123) == 0
    out, err = capsys.readouterr()
    assert "http://192.0.2.1:8123/" in out and NO_LOGIN in out
    assert "WARNING" in err and "without a password" in err
    assert made[0]["host"] == "192.0.2.1" and made[0]["port"] == 8123

    assert sim.serve.serve("127.0.0.1", 8124) == 0
    out, err = capsys.readouterr()
    assert NO_LOGIN in out and err == ""


def test_each_tab_runs_the_tui_not_the_cli() -> None:
    # The CLI refuses to take over a non-terminal; the served process is the TUI.
    assert app_command().endswith("-m sim.serve")


# -- the server and a real browser ---------------------------------------------------


def _children(pid: int) -> set[int]:
    """Every descendant of ``pid`` (from /proc), to check nothing outlives the server."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        path = Path(f"/proc/{parent}/task/{parent}/children")
        with contextlib.suppress(OSError):
            kids = {int(k) for k in path.read_text().split()}
            todo.extend(kids - found)
            found |= kids
    return found


def _tab_processes(server: int) -> set[int]:
    """The server's descendants that run the TUI for a tab (``python -m sim.serve``)."""
    found = set()
    for pid in _children(server):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"sim.serve" in argv:
                found.add(pid)
    return found


async def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"never happened in {timeout:.0f}s: {what}"
        await asyncio.sleep(0.2)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``maillab serve --port 0`` with progress kept in a temporary home."""
    # A student id given: the first start would ask for one (sim/tui/student.py).
    env = dict(
        os.environ,
        MAILLAB_HOME=str(tmp_path / "home"),
        MAILLAB_THEME="dark",
        MAILLAB_STUDENT="student-1",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim.cli", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        second = proc.stdout.readline()
        assert first.startswith("maillab serve: http://127.0.0.1:"), first
        assert NO_LOGIN in second, second
        url = first.split()[2]
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[object]:
    from browser import Chromium, chromium_path

    if chromium_path() is None:
        pytest.skip("no chromium: apt-get install chromium (scripts/system-setup.sh does)")
    browser = Chromium(tmp_path / "profile")
    try:
        yield browser
    finally:
        browser.stop()


def _ready_to_connect(url: str, timeout: float = 30) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                assert reply.status == 200
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_browser_shows_the_labs_and_keys_reach_the_app(
    served: tuple[str, subprocess.Popen[str]], chromium: object, tmp_path: Path
) -> None:
    from browser import Chromium, open_page

    assert isinstance(chromium, Chromium)
    url, server = served
    _ready_to_connect(url)
    listing = _maillab("list", "--json")
    titles = [lab["title"] for lab in json.loads(listing.stdout)["labs"]]
    assert len(titles) == len(list((ROOT / "labs").glob("*.yaml")))

    await asyncio.to_thread(ARTIFACTS.mkdir, parents=True, exist_ok=True)
    shots: list[Path] = []
    async with open_page(chromium, url) as page:
        # The home screen: every lab's title (its start, as a narrow column
        # may cut a long title with an ellipsis).
        await page.wait_for(lambda text: all(t[:24] in text for t in titles), 90, "the ten labs")
        assert len(_tab_processes(server.pid)) == 1, "the tab has no maillab process of its own"
        shots.append(await page.screenshot(ARTIFACTS / "serve-home.png"))

        # A second tab gets a process of its own, which goes when the tab closes.
        async with open_page(chromium, url) as other:
            await other.wait_for(lambda text: titles[0][:24] in text, 90, "the labs, again")
            assert len(_tab_processes(server.pid)) == 2
        await _until(
            lambda: len(_tab_processes(server.pid)) == 1, 30, "the closed tab's process ends"
        )

        # Keys: Enter on the first row starts lab 1; n moves to its second step.
        await page.focus_terminal()
        await page.press("enter")
        await page.wait_for(
            lambda text: "Step 1/" in text and "Starting the lab" not in text,
            120,
            "lab 1 started, at its first step",
        )
        assert titles[0][:24] in page.terminal.text()
        await page.press("n")
        await page.wait_for(
            lambda text: "Step 2/" in text and "Step 2 of" in text, 60, "lab 1's second step"
        )
        shots.append(await page.screenshot(ARTIFACTS / "serve-lab1-step2.png"))
    for shot in shots:
        assert shot.stat().st_size > 1000
        print(f"screenshot: {shot}")

    await asyncio.to_thread(_stops_with_its_tabs, server)


def _stops_with_its_tabs(server: subprocess.Popen[str]) -> None:
    """The server stops on SIGTERM, and with it each tab's process and its lab."""
    tab_processes = _children(server.pid)
    server.send_signal(signal.SIGTERM)
    assert server.wait(30) == 0
    deadline = time.monotonic() + 15
    while any(Path(f"/proc/{pid}").exists() for pid in tab_processes):
        assert time.monotonic() < deadline, f"left running: {tab_processes}"
        time.sleep(0.2)
