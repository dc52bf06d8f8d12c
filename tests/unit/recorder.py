"""A local aiohttp server on 127.0.0.1 that records every request (for unit tests of the
HTTP executor and notifications). Replies are scripted per path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    # path -> list of (status, body, delay seconds) replies, used in order (the last repeats)
    replies: dict[str, list[tuple[int, bytes, float]]] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]

    async def wait(self, what: str, cond: Callable[[], bool], within: float = 10.0) -> None:
        """Until ``cond()`` holds; TimeoutError after ``within`` seconds (``what`` names it)."""
        try:
            async with asyncio.timeout(within):
                while not cond():
                    self.arrived.clear()
                    await self.arrived.wait()
        except TimeoutError:
            raise AssertionError(f"no {what} within {within}s; seen {self.paths()}") from None


@asynccontextmanager
async def recorder() -> AsyncIterator[Recorder]:
    rec = Recorder()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        rec.seen.append(Seen(request.method, request.path_qs, dict(request.headers), body))
        rec.arrived.set()
        script = rec.replies.get(request.path, [(200, b"ok", 0.0)])
        status, text, delay = script.pop(0) if len(script) > 1 else script[0]
        if delay:
            await asyncio.sleep(delay)
        return web.Response(status=status, body=text)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}"
    try:
        yield rec
    finally:
        await runner.cleanup()
