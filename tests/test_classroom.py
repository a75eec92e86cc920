"""A class on a real JupyterHub, on this machine (issue 17 §2).

JupyterHub (PyPI) with configurable-http-proxy (npm, installed by ``make
setup`` into ``.venv/node``) loads ``deploy/jupyterhub/jupyterhub_config.py``
and replaces only what a test machine cannot have: containers become local
processes (``SimpleLocalProcessSpawner``, a home directory per student, no
isolation: the deploy configs' containers or pods give that) and the login
is JupyterHub's shared-password test authenticator. Everything listens on
127.0.0.1, on free ports.

Two students log in through the REST API, start their servers, and each runs
a notebook cell through the Jupyter server's kernel API (a websocket speaking
the Jupyter messaging protocol) that starts lab 1 and sends mail. Each must
get their own progress file and their own lab: their mail in their mailbox,
never the other's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_CONFIG = ROOT / "deploy" / "jupyterhub" / "jupyterhub_config.py"
VENV_BIN = Path(sys.executable).parent
STUDENTS = ("alice", "bob")
PASSWORD = "class-" + secrets.token_hex(4)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _proxy_command() -> str | None:
    local = ROOT / ".venv" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"
    if local.exists():
        return str(local)
    return shutil.which("configurable-http-proxy")


def _missing() -> str | None:
    for module in ("jupyterhub", "jupyter_server", "ipykernel", "aiohttp"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is missing: pip install -e '.[classroom,notebooks,serve]'"
    if shutil.which("jupyterhub-singleuser", path=str(VENV_BIN)) is None:
        return "jupyterhub-singleuser is not in this venv"
    if _proxy_command() is None:
        return "configurable-http-proxy is missing: make setup installs it (needs npm)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        with contextlib.suppress(OSError):
            kids = {
                int(k) for k in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
            }
            todo.extend(kids - found)
            found |= kids
    return found


@dataclass
class Hub:
    url: str
    homes: Path
    proc: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    reason = _missing()
    if reason is not None:
        pytest.skip(reason)
    public, api, proxy_api = _free_port(), _free_port(), _free_port()
    homes = tmp_path / "homes"
    config = tmp_path / "jupyterhub_config.py"
    # The deploy config first, then what this machine replaces.
    config.write_text(
        textwrap.dedent(
            f"""\
            c = get_config()  # noqa: F821
            load_subconfig({str(DEPLOY_CONFIG)!r})  # noqa: F821

            c.JupyterHub.bind_url = "http://127.0.0.1:{public}"
            c.JupyterHub.hub_ip = "127.0.0.1"
            c.JupyterHub.hub_port = {api}
            c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"
            c.ConfigurableHTTPProxy.command = [{_proxy_command()!r}]
            c.JupyterHub.db_url = "sqlite:///{tmp_path / "hub.sqlite"}"
            c.JupyterHub.cookie_secret_file = {str(tmp_path / "cookie_secret")!r}
            c.JupyterHub.pid_file = {str(tmp_path / "hub.pid")!r}
            c.JupyterHub.services = []
            c.JupyterHub.load_roles = []

            # One shared password: JupyterHub's test authenticator (the
            # successor of the dummy one's password, since 5.3).
            c.JupyterHub.authenticator_class = "shared-password"
            c.SharedPasswordAuthenticator.user_password = {PASSWORD!r}
            c.Authenticator.allowed_users = {set(STUDENTS)!r}
            c.Authenticator.admin_users = set()

            c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
            c.SimpleLocalProcessSpawner.home_dir_template = {str(homes / "{username}")!r}
            c.Spawner.cmd = [{str(VENV_BIN / "jupyterhub-singleuser")!r}]
            c.Spawner.args = ["--allow-root"]  # the test machine runs as root
            c.Spawner.mem_limit = None
            c.Spawner.cpu_limit = None
            c.Spawner.mem_guarantee = None
            c.Spawner.cpu_guarantee = None
            """
        )
    )
    log = tmp_path / "hub.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILLAB_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "jupyterhub"), "-f", str(config)],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    started: set[int] = set()
    try:
        yield Hub(f"http://127.0.0.1:{public}", homes, proc, log)
    finally:
        started = _descendants(proc.pid)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the hub stops the servers and proxy it started
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        deadline = time.monotonic() + 20
        while (alive := {p for p in started if Path(f"/proc/{p}").exists()}) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.2)
        for pid in alive:  # anything the hub left behind, by its pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# The notebook cell each student runs: lab 1 with progress in their own file,
# the step that sends mail, and a message of their own.
CELL = """
import json, os
from pathlib import Path
from sim.lab.catalog import find_lab, labs_dir
from sim.lab.engine import LabSession
from sim.lab.loader import load_lab
from sim.lab.progress import default_progress_path

lab = load_lab(find_lab("receive-only", labs_dir()))
session = LabSession.for_student(lab)
session.start()
step = session.run_experiment("send-to-bob")
mine = session.lab.send("mta", "bob@qq.example", mail_from="news@example.net",
                        subject="from {student}")
inbox = [m.subject for m in session.lab.mailbox("bob@qq.example")]
def rss_mib(pid, field="VmRSS"):
    for line in Path(f"/proc/{{pid}}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
peak_kernel = rss_mib(os.getpid(), "VmHWM")
session.stop()
print(json.dumps({{
    "kernel_peak_rss_mib": peak_kernel,
    "server_rss_mib": rss_mib(os.getppid()),
    "user": os.environ.get("JUPYTERHUB_USER"),
    "pid": os.getpid(),
    "progress_path": str(default_progress_path()),
    "step_outcome": step.data.get("outcome"),
    "step_error": step.error,
    "mine": mine.outcome,
    "inbox": inbox,
    "state_dir": str(getattr(session, "state_dir", "")),
}}))
"""


async def _api(
    http: Any, method: str, url: str, *, token: str | None = None, body: Any = None
) -> Any:
    headers = {"Authorization": f"token {token}"} if token else {}
    async with http.request(method, url, json=body, headers=headers) as reply:
        text = await reply.text()
        if reply.status >= 400:
            raise AssertionError(f"{method} {url}: {reply.status} {text[:500]}")
        return json.loads(text) if text else None


async def _wait_ready(http: Any, hub: Hub, name: str, token: str) -> None:
    deadline = time.monotonic() + 240
    while True:
        model = await _api(http, "GET", f"{hub.url}/hub/api/users/{name}", token=token)
        server = model.get("servers", {}).get("")
        if server and server.get("ready"):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}'s server never became ready: {model}")
        await asyncio.sleep(0.5)


async def _run_cell(http: Any, hub: Hub, name: str, token: str, code: str) -> str:
    """Execute ``code`` in a new kernel of ``name``'s server; its stdout."""
    base = f"{hub.url}/user/{name}/api"
    kernel = await _api(http, "POST", f"{base}/kernels", token=token, body={"name": "python3"})
    try:
        ws_url = base.replace("http://", "ws://") + f"/kernels/{kernel['id']}/channels"
        msg_id = uuid.uuid4().hex
        request = {
            "header": {
                "msg_id": msg_id,
                "msg_type": "execute_request",
                "username": name,
                "session": uuid.uuid4().hex,
                "version": "5.3",
                "date": "",
            },
            "parent_header": {},
            "metadata": {},
            "content": {"code": code, "silent": False, "store_history": False},
            "channel": "shell",
            "buffers": [],
        }
        output: list[str] = []
        headers = {"Authorization": f"token {token}"}
        async with http.ws_connect(ws_url, headers=headers, max_msg_size=0) as ws:
            await ws.send_str(json.dumps(request))
            async with asyncio.timeout(240):
                async for message in ws:
                    data = json.loads(message.data)
                    if data.get("parent_header", {}).get("msg_id") != msg_id:
                        continue
                    kind = data["msg_type"]
                    if kind == "stream" and data["content"]["name"] == "stdout":
                        output.append(data["content"]["text"])
                    elif kind == "error":
                        raise AssertionError(
                            f"{name}'s cell failed: {data['content']['ename']}: "
                            f"{data['content']['evalue']}"
                        )
                    elif kind == "status" and data["content"]["execution_state"] == "idle":
                        break
        return "".join(output)
    finally:
        await _api(http, "DELETE", f"{base}/kernels/{kernel['id']}", token=token)


async def _student(http: Any, hub: Hub, name: str) -> dict[str, Any]:
    # Log in through the REST API: the authenticator checks the password and
    # the hub hands out a token for this student only.
    reply = await _api(
        http,
        "POST",
        f"{hub.url}/hub/api/users/{name}/tokens",
        body={"auth": {"username": name, "password": PASSWORD}, "note": "test login"},
    )
    token = reply["token"]
    await _api(http, "POST", f"{hub.url}/hub/api/users/{name}/server", token=token)
    await _wait_ready(http, hub, name, token)
    out = await _run_cell(http, hub, name, token, CELL.format(student=name))
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["token"] = token
    return result


async def _wait_hub(http: Any, hub: Hub) -> None:
    deadline = time.monotonic() + 120
    while True:
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            async with http.get(f"{hub.url}/hub/api/") as reply:
                if reply.status == 200:
                    return
        if hub.proc.poll() is not None or time.monotonic() > deadline:
            tail = hub.log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"the hub did not come up; its log ends:\n{tail}")
        await asyncio.sleep(0.5)


async def test_two_students_each_get_their_own_lab_and_progress(hub: Hub) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        await _wait_hub(http, hub)
        wrong = await http.post(
            f"{hub.url}/hub/api/users/alice/tokens",
            json={"auth": {"username": "alice", "password": "not-it"}},
        )
        assert wrong.status == 403  # the login is checked
        results = await asyncio.gather(*(_student(http, hub, name) for name in STUDENTS))

        by_name = dict(zip(STUDENTS, results, strict=True))
        for name, result in by_name.items():
            other = next(s for s in STUDENTS if s != name)
            assert result["user"] == name
            assert result["step_error"] is None and result["step_outcome"] == "delivered"
            assert result["mine"] == "delivered"
            # Their own lab: their message is there, the other student's is not.
            assert f"from {name}" in result["inbox"]
            assert f"from {other}" not in result["inbox"]
            # Their own progress file, in their own home, with the step done.
            path = Path(result["progress_path"])
            assert path.is_relative_to(hub.homes / name), path
            saved = json.loads(await asyncio.to_thread(path.read_text))
            assert set(saved["students"]) == {name}, saved  # no one else's progress
            assert "send-to-bob" in json.dumps(saved["students"][name])

        # A student's token does not open the other student's server.
        alice_token = by_name["alice"]["token"]
        async with http.get(
            f"{hub.url}/user/bob/api/kernels", headers={"Authorization": f"token {alice_token}"}
        ) as reply:
            assert reply.status in (403, 404), reply.status
        assert by_name["alice"]["pid"] != by_name["bob"]["pid"]
        for name, result in by_name.items():  # figures for docs/classroom.md
            print(
                f"{name}: kernel with a running lab peaked at {result['kernel_peak_rss_mib']} MiB,"
                f" the single-user server {result['server_rss_mib']} MiB"
            )


# -- the deploy recipes agree with each other and with the repository ---------------------


def _deploy_config() -> Any:
    from traitlets.config import Config

    config = Config()
    source = DEPLOY_CONFIG.read_text()
    exec(compile(source, str(DEPLOY_CONFIG), "exec"), {"get_config": lambda: config})
    return config


@pytest.mark.timeout(60)
def test_one_machine_and_cluster_configs_give_the_same_limits() -> None:
    pytest.importorskip("traitlets")
    from ruamel.yaml import YAML

    hub = _deploy_config()
    values = YAML(typ="safe").load((DEPLOY_CONFIG.parent / "config.yaml").read_text())
    single = values["singleuser"]
    assert hub.Spawner.mem_limit == single["memory"]["limit"]
    assert hub.Spawner.mem_guarantee == single["memory"]["guarantee"]
    assert hub.Spawner.cpu_limit == float(single["cpu"]["limit"])
    assert hub.Spawner.cpu_guarantee == float(single["cpu"]["guarantee"])
    assert hub.Spawner.default_url == single["defaultUrl"]
    # The page students land on exists.
    landing = single["defaultUrl"].removeprefix("/lab/tree/")
    assert (ROOT / landing).is_file(), landing


@pytest.mark.timeout(60)
def test_the_image_recipe_copies_what_exists() -> None:
    dockerfile = (DEPLOY_CONFIG.parent / "Dockerfile").read_text()
    sources = [
        line.split()[1]
        for line in dockerfile.splitlines()
        if line.startswith("COPY ") and not line.split()[1].startswith("dist/")
    ]
    assert sources, "no COPY in the Dockerfile"
    for source in sources:
        assert (ROOT / source).exists(), source
    assert "[notebooks,serve]" in dockerfile
