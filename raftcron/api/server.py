"""The API's HTTP server: aiohttp's, with what a server on a network needs added.

* **Every error is JSON**, including the ones aiohttp answers before any handler or
  middleware runs: a malformed request, a request line longer than ``MAX_LINE`` bytes
  (a 10,000-character job name in the URL), too many or too long header fields (431).
  They get ``{"error": {"code", "message"}}`` and one log line (rate limited), never a
  traceback: a client's garbage is not a server error.
* **Slow clients are not held.** A connection must deliver a complete request head within
  ``HEADER_TIMEOUT_S`` of connecting, and of its previous response (aiohttp's keep-alive
  timer, set to the same value); a body must arrive within ``http.BODY_TIMEOUT_S`` once a
  handler reads it (408), and an unread one is drained for at most ``LINGER_S``.
* **At most ``MAX_CONNECTIONS`` connections** per node; more are closed at once (and
  logged, rate limited), so slow or idle clients cannot use up the agent's file
  descriptors, which its jobs need.

:class:`ApiRunner` is an ``AppRunner`` that serves with these rules.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Final

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from raftcron.api.http import error, printable
from raftcron.clock import monotonic

__all__ = ["HEADER_TIMEOUT_S", "MAX_CONNECTIONS", "ApiRunner"]

logger = logging.getLogger(__name__)

# Longer than an HTTP client's idle keep-alive (aiohttp's client: 15 s), so a client never
# reuses a connection the server is closing as idle.
HEADER_TIMEOUT_S: Final = 20.0
LINGER_S: Final = 5.0
MAX_CONNECTIONS: Final = 512
MAX_LINE: Final = 8190  # request line and each header field, bytes (aiohttp's default)
MAX_HEADERS: Final = 128
LOG_EVERY_S: Final = 10.0
_REQUEST_LINE: Final = re.compile(r"b'(?:/|[A-Za-z][\w+.-]*://)|status line|request line", re.I)


class _Quiet:
    """One log line per ``LOG_EVERY_S`` for a kind of client error, with the count of the
    ones not logged (a flood of garbage must not flood the log)."""

    def __init__(self) -> None:
        self.last = -LOG_EVERY_S
        self.dropped = 0

    def log(self, msg: str, *args: Any) -> None:
        now = monotonic()
        if now - self.last < LOG_EVERY_S:
            self.dropped += 1
            return
        more = f" (and {self.dropped} more since)" if self.dropped else ""
        self.last, self.dropped = now, 0
        logger.info("%s%s", msg % args, more)


_BAD_REQUESTS = _Quiet()
_REFUSED = _Quiet()
_SLOW = _Quiet()


def _client_error(exc: BaseException | None, message: str | None) -> tuple[int, str, str]:
    """The status, code and message for a request aiohttp could not parse."""
    text = str(message or exc or "malformed request").strip()
    if "too many headers" in text.lower():
        return 431, "request_header_fields_too_large", f"{text} (at most {MAX_HEADERS})"
    if isinstance(exc, LineTooLong):
        # aiohttp says what it was reading: the request target (origin or absolute form)
        # or the status line, else a header field
        if _REQUEST_LINE.search(text):
            why = f"the request line is longer than {MAX_LINE} bytes"
            fix = "a name in the URL is at most 64 characters, a lock name 128"
            return 400, "bad_request", f"{why} ({fix}): {text}"
        why = f"a header field is longer than {MAX_LINE} bytes"
        return 431, "request_header_fields_too_large", f"{why}: {text}"
    return 400, "bad_request", f"malformed HTTP request: {text}"


class _Handler(RequestHandler):
    """aiohttp's connection handler with JSON errors, a header deadline and a cap."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        manager = self._manager
        if manager is not None and len(manager.connections) > MAX_CONNECTIONS:
            _REFUSED.log(
                "API: more than %d connections open; closed a new one from %s",
                MAX_CONNECTIONS,
                printable(str(self.peername)),
            )
            self.force_close()
            return
        loop = asyncio.get_running_loop()
        self._head_timer = loop.call_later(HEADER_TIMEOUT_S, self._head_deadline)

    def _head_deadline(self) -> None:
        self._head_timer = None
        if self._request_count == 0 and self.transport is not None:  # no request head yet
            _SLOW.log(
                "API: closed a connection from %s that sent no complete request in %gs",
                printable(str(self.peername)),
                HEADER_TIMEOUT_S,
            )
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # (as aiohttp: too late for a response)
            raise ConnectionError("response already sent, cannot send the error")
        if status >= 500:
            # a handler raised past the error middleware: a bug here, logged as one
            self.log_exception("API: error handling a request", exc_info=exc)
            code, text = (
                ("timeout", "the request took too long")
                if status == 504
                else (
                    "internal",
                    "internal error (see the node's log)",
                )
            )
        else:
            status, code, text = _client_error(exc, message)
            _BAD_REQUESTS.log(
                "API: %d for a malformed request from %s: %s",
                status,
                printable(str(request.remote)),
                printable(text, 160),
            )
        resp = error(status, code, printable(text, 500))
        resp.force_close()
        return resp


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, **self._kwargs)


class ApiRunner(web.AppRunner):
    """``web.AppRunner(app)`` serving with the rules above (no access log)."""

    def __init__(self, app: web.Application) -> None:
        super().__init__(
            app,
            access_log=None,
            keepalive_timeout=HEADER_TIMEOUT_S,
            lingering_time=LINGER_S,
            max_line_size=MAX_LINE,
            max_field_size=MAX_LINE,
            max_headers=MAX_HEADERS,
        )

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # the same server, making _Handler connections
        return server
