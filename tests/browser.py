"""A real headless browser for tests: Debian's ``chromium``, driven through the
Chrome DevTools Protocol (CDP).

CDP is JSON over a websocket (https://chromedevtools.github.io/devtools-protocol/):
``{"id": 1, "method": "Page.navigate", "params": {...}}`` gets a reply with the
same id; events arrive as ``{"method": ..., "params": ...}``. aiohttp (which
textual-serve brings) is the websocket client.

For a textual-serve page the browser's view of the terminal is read the way
the page itself builds it: every binary websocket frame the page *received*
(``Network.webSocketFrameReceived``) is fed to a terminal emulator (pyte), so
the test sees the screen the page's xterm.js drew, without scraping a canvas.
Keys go in as real key events (``Input.dispatchKeyEvent``) to the focused
xterm.js, which turns them into the bytes it sends to the app.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import aiohttp
import pyte

__all__ = ["Chromium", "Page", "TerminalView", "chromium_path", "open_page"]

# Names of the browser in Debian (chromium) and elsewhere.
_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str | None:
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Chromium:
    """One headless browser process with its own profile; stopped by its pid
    (its process group: the renderer and GPU helpers are its children)."""

    def __init__(self, profile: Path, *, width: int = 1400, height: int = 900) -> None:
        exe = chromium_path()
        if exe is None:
            raise RuntimeError("no chromium on PATH")
        self.profile = profile
        argv = [
            exe,
            "--headless=new",
            # Root in a container: the namespace sandbox cannot start.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def devtools_port(self, timeout: float = 30.0) -> int:
        """Chromium writes the port it chose to ``DevToolsActivePort``."""
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}")
            with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
                return int(marker.read_text().splitlines()[0])
            time.sleep(0.1)
        raise RuntimeError("chromium did not open its DevTools port")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


class TerminalView:
    """The terminal a textual-serve page shows, rebuilt from the frames it got."""

    def __init__(self) -> None:
        self.screen = pyte.Screen(80, 24)
        self.stream = pyte.ByteStream(self.screen)
        self.frames = 0

    def created(self, url: str) -> None:
        query = parse_qs(urlparse(url).query)
        width = int(query.get("width", ["80"])[0])
        height = int(query.get("height", ["24"])[0])
        self.screen.resize(height, width)

    def sent(self, payload: str) -> None:
        # The page tells the app its size: ["resize", {"width": W, "height": H}].
        with contextlib.suppress(ValueError, TypeError, KeyError, IndexError):
            message = json.loads(payload)
            if message[0] == "resize":
                self.screen.resize(int(message[1]["height"]), int(message[1]["width"]))

    def received(self, data: bytes) -> None:
        self.frames += 1
        self.stream.feed(data)

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)


class Page:
    """One browser tab, spoken to over CDP."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._next = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.terminal = TerminalView()
        self.console: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is not None and not future.done():
                    if "error" in data:
                        future.set_exception(RuntimeError(f"CDP error: {data['error']}"))
                    else:
                        future.set_result(data.get("result", {}))
            else:
                self._event(data.get("method", ""), data.get("params", {}))

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Network.webSocketCreated":
            self.terminal.created(params["url"])
        elif method == "Network.webSocketFrameSent":
            self.terminal.sent(params["response"]["payloadData"])
        elif method == "Network.webSocketFrameReceived":
            response = params["response"]
            if response["opcode"] == 2:  # binary: terminal output for xterm.js
                self.terminal.received(base64.b64decode(response["payloadData"]))
        elif method == "Runtime.consoleAPICalled":
            self.console.append(" ".join(str(a.get("value", "")) for a in params["args"]))

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._next] = future
        await self.ws.send_str(json.dumps({"id": self._next, "method": method, "params": params}))
        return await asyncio.wait_for(future, 60)

    async def wait_for(self, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
        """Wait until the terminal's text satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.terminal.text()
            if predicate(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the page never showed {what} in {timeout:.0f}s "
                    f"({self.terminal.frames} frames); its screen:\n{text}"
                )
            await asyncio.sleep(0.2)

    async def focus_terminal(self) -> None:
        # xterm.js takes keys through a hidden textarea; a person clicks the
        # terminal, which focuses it.
        await self.call(
            "Runtime.evaluate",
            expression="document.querySelector('.xterm-helper-textarea').focus()",
        )

    async def press(self, key: str) -> None:
        """One key, as a person types it: keyDown (with its text) and keyUp."""
        named = {
            "enter": ("Enter", "Enter", 13, "\r"),
            "escape": ("Escape", "Escape", 27, ""),
            "down": ("ArrowDown", "ArrowDown", 40, ""),
            "up": ("ArrowUp", "ArrowUp", 38, ""),
        }
        if key in named:
            name, code, vk, text = named[key]
        else:
            name, code, vk, text = key, f"Key{key.upper()}", ord(key.upper()), key
        down: dict[str, Any] = {
            "type": "keyDown" if text else "rawKeyDown",
            "key": name,
            "code": code,
            "windowsVirtualKeyCode": vk,
        }
        if text:
            down["text"] = text
        await self.call("Input.dispatchKeyEvent", **down)
        await self.call(
            "Input.dispatchKeyEvent", type="keyUp", key=name, code=code, windowsVirtualKeyCode=vk
        )

    async def screenshot(self, path: Path) -> Path:
        shot = await self.call("Page.captureScreenshot", format="png")
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))
        return path

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.ws.close()


@contextlib.asynccontextmanager
async def open_page(browser: Chromium, url: str) -> AsyncIterator[Page]:
    """A new tab in ``browser``, with network and console events on, at
    ``url``; the tab is closed on leaving (as a person closes it)."""
    port = browser.devtools_port()
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/json/version") as reply:
            browser_ws = (await reply.json())["webSocketDebuggerUrl"]

        async def browser_call(
            ws: aiohttp.ClientWebSocketResponse, method: str, **params: Any
        ) -> Any:
            await ws.send_str(json.dumps({"id": 1, "method": method, "params": params}))
            async for message in ws:
                data = json.loads(message.data)
                if data.get("id") == 1:
                    return data.get("result", {})
            raise RuntimeError(f"the browser closed its DevTools socket during {method}")

        async with http.ws_connect(browser_ws, max_msg_size=0) as bws:
            target = (await browser_call(bws, "Target.createTarget", url="about:blank"))["targetId"]
            ws = await http.ws_connect(
                f"ws://127.0.0.1:{port}/devtools/page/{target}", max_msg_size=0
            )
            page = Page(ws)
            try:
                await page.call("Network.enable")
                await page.call("Runtime.enable")
                await page.call("Page.enable")
                await page.call("Page.navigate", url=url)
                yield page
            finally:
                await page.close()
                await browser_call(bws, "Target.closeTarget", targetId=target)
