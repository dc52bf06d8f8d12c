"""Headless Chromium driven over the DevTools protocol (CDP), for dashboard tests that
click: navigate, evaluate JS in the page, take screenshots.

Chromium is started with ``--remote-debugging-port=0`` and a fresh profile; the port it
picked is read from ``DevToolsActivePort`` in that profile, and the page is driven over
its WebSocket with aiohttp's client (no new dependency). Every wait has a deadline; the
browser is ended by its own process group.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from tests.cluster.harness import wait_for

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
    "--hide-scrollbars",
]
T = TypeVar("T")
_profiles = count()


class BrowserError(RuntimeError):
    """The page threw or Chromium failed: in a wait, "not yet"."""


class Browser:
    """One Chromium with one page. Use as a context manager."""

    def __init__(self, tmp: Path, timeout: float = 30.0) -> None:
        self.tmp = tmp
        self.timeout = timeout
        self.profile = tmp / f"cdp-profile-{next(_profiles)}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.loop = asyncio.new_event_loop()
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.ids = count(1)
        self.shots: list[Path] = []

    # -- lifetime

    def __enter__(self) -> Browser:
        self.profile.mkdir(parents=True)
        cmd = [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={self.profile}",
            "--remote-debugging-port=0",
            "about:blank",
        ]
        with (self.tmp / "chromium-cdp.log").open("wb") as err:
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
            )
        port_file = self.profile / "DevToolsActivePort"
        port = wait_for(
            "chromium to write DevToolsActivePort",
            lambda: port_file.exists() and port_file.read_text().split("\n")[0].strip(),
            60,
        )
        self._run(self._connect(int(port)))
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self._run(self._close())
        self.loop.close()
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    async def _connect(self, port: int) -> None:
        self.session = aiohttp.ClientSession()
        deadline = time.monotonic() + 30
        while True:
            async with self.session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                break
            if time.monotonic() > deadline:
                raise BrowserError(f"chromium shows no page target: {targets}")
            await asyncio.sleep(0.1)
        self.ws = await self.session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        await self._send("Page.enable", {})
        await self._send("Runtime.enable", {})

    async def _close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()

    def _run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, self.timeout))

    async def _send(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert self.ws is not None
        ident = next(self.ids)
        await self.ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            msg = await self.ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise BrowserError(f"CDP connection ended: {msg.type}")
            data = json.loads(msg.data)
            if data.get("id") == ident:
                if "error" in data:
                    raise BrowserError(f"{method}: {data['error']}")
                result: dict[str, Any] = data.get("result", {})
                return result

    # -- what tests use

    def goto(self, url: str) -> None:
        self._run(self._send("Page.navigate", {"url": url}))
        self.wait("the page to load", "document.readyState === 'complete'")

    def js(self, expression: str) -> Any:
        """Evaluate ``expression`` in the page (promises awaited); its JSON value."""
        res = self._run(
            self._send(
                "Runtime.evaluate",
                {"expression": expression, "returnByValue": True, "awaitPromise": True},
            )
        )
        if "exceptionDetails" in res:
            raise BrowserError(f"{expression}: {res['exceptionDetails']}")
        return res.get("result", {}).get("value")

    def wait(self, what: str, expression: str, timeout: float = 30.0) -> Any:
        """Poll ``expression`` in the page until it is truthy."""
        return self.wait_for(what, lambda: self.js(expression), timeout)

    def wait_for(self, what: str, fn: Callable[[], T | None], timeout: float = 30.0) -> T:
        try:
            return wait_for(what, fn, timeout, interval=0.2)
        except AssertionError as exc:
            shot = self.screenshot(f"timeout-{len(self.shots)}")
            try:  # what the page said last: an action's error is shown in #notice
                page = self.js(
                    "JSON.stringify({state: document.body.dataset.state, lastAction:"
                    " document.body.dataset.lastAction, notice:"
                    " (document.getElementById('notice') || {}).textContent})"
                )
            except BrowserError as err:
                page = f"(page unreadable: {err})"
            raise AssertionError(f"{exc}; page: {page}; screenshot: {shot}") from None

    def click(self, selector: str) -> None:
        """Click the element ``selector`` names (a real click event, as a person's)."""
        ok = self.js(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            " if (!el || el.disabled) return false; el.click(); return true; })()"
        )
        if not ok:
            shot = self.screenshot(f"no-element-{len(self.shots)}")
            raise AssertionError(f"nothing to click at {selector}; screenshot: {shot}")

    def type(self, selector: str, text: str) -> None:
        ok = self.js(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            f" if (!el) return false; el.value = {json.dumps(text)}; return true; }})()"
        )
        assert ok, f"no input at {selector}"

    def screenshot(self, name: str) -> Path:
        path = self.tmp / f"{name}.png"
        try:
            res = self._run(self._send("Page.captureScreenshot", {"format": "png"}))
            path.write_bytes(base64.b64decode(res["data"]))
        except Exception as exc:  # a screenshot is evidence, never the failure itself
            path = path.with_suffix(".txt")
            path.write_text(f"no screenshot: {exc!r}")
        self.shots.append(path)
        return path
