"""The HTTP API's wire rules shared by :mod:`raftcron.client` and ``raftcron lock``.

Errors, URL handling and response decoding, plus :class:`PlainHttp`: one HTTP/1.1 request
over a plain TCP socket. ``raftcron lock`` uses it for ``http://`` APIs because a one-shot
process should start fast: :mod:`http.client` alone costs about 20 ms to import here (it
loads ``ssl`` and the ``email`` parser), longer than the lock round trip itself.
:mod:`raftcron.client` (on ``http.client``) stays the general client; the error classes
defined here are the ones it raises.

This module imports only ``json``, ``socket`` and ``urllib.parse``: no dataclasses, no
typing at run time.
"""

from __future__ import annotations

import json
import socket
import sys
import urllib.parse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class ClientError(Exception):
    """Base of every error this module raises."""


class ApiError(ClientError):
    """The API refused the request: an HTTP error status with the server's code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ApiUnavailable(ClientError):
    """The API did not answer (connection refused or reset, timeout, TLS failure)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the raftcron API at {url} ({reason})")
        self.url = url
        self.reason = reason


def seg(name: str) -> str:
    """``name`` as one URL path segment."""
    return urllib.parse.quote(name, safe="")


def query(**params: Any) -> str:
    items = [(k, str(v)) for k, v in params.items() if v is not None]
    return "?" + urllib.parse.urlencode(items) if items else ""


def split_base(base_url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path prefix)`` of a base URL; ValueError if it is not one."""
    url = base_url if "://" in base_url else "http://" + base_url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{base_url!r} is not an http(s) URL (e.g. http://127.0.0.1:8101)")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"{base_url!r} has an invalid port") from None
    return parts.scheme, parts.hostname, port, parts.path.rstrip("/")


def decode(status: int, data: bytes, reason: str = "") -> Any:
    """The JSON body of a 2xx response, or raise :class:`ApiError`."""
    if 200 <= status < 300:
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise ApiError(
                status, "bad_response", "the server sent a body that is not JSON"
            ) from None
    try:
        err = json.loads(data)["error"]
        code, message = str(err["code"]), str(err["message"])
    except (ValueError, KeyError, TypeError):
        code = "http"
        message = data.decode("utf-8", "replace").strip()[:200] or reason or f"HTTP {status}"
    raise ApiError(status, code, message)


def reason_of(exc: BaseException) -> str:
    """Why a request got no answer, for :class:`ApiUnavailable`."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    ssl = sys.modules.get("ssl")  # a TLS error implies ssl was imported
    if ssl is not None and isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class BadResponse(OSError):
    """The server's answer is not an HTTP/1.x response this module understands."""


_MAX_HEAD = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024


def _dechunk(data: bytes) -> tuple[bytes, bool]:
    """(body so far, complete) of a ``Transfer-Encoding: chunked`` payload."""
    out: list[bytes] = []
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return b"".join(out), False
        try:
            size = int(data[pos:eol].split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BadResponse("bad chunk size") from None
        if size == 0:
            # The last chunk, then optional trailers and an empty line.
            return b"".join(out), data.find(b"\r\n\r\n", eol) >= 0
        start, end = eol + 2, eol + 2 + size
        if len(data) < end + 2:
            return b"".join(out), False
        out.append(data[start:end])
        pos = end + 2


class PlainHttp:
    """One request per connection (``Connection: close``) to a plain-HTTP API.

    ``request`` returns ``(status, reason, body)``; an unreachable server, a timeout (per
    socket operation, as :mod:`http.client` does) or a malformed answer raises
    :class:`OSError` (:class:`BadResponse` for the latter). Content-Length, chunked and
    read-until-close bodies are understood; nothing else of HTTP is needed by the API.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.host_header = f"[{host}]" if ":" in host else host
        if port != 80:
            self.host_header += f":{port}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        timeout: float,
    ) -> tuple[int, str, bytes]:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host_header}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append("Connection: close")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        # An ASCII host as bytes: a str makes getaddrinfo import the idna codec (~1 ms).
        # getaddrinfo takes bytes; typeshed's create_connection signature says str only.
        host: str | bytes = self.host.encode() if self.host.isascii() else self.host
        address = (host, self.port)
        with socket.create_connection(address, timeout=timeout) as sock:  # type: ignore[arg-type]
            sock.sendall(head + (body or b""))
            return self._read(sock)

    def _read(self, sock: socket.socket) -> tuple[int, str, bytes]:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise BadResponse("the server closed the connection without a response")
            buf += chunk
            if len(buf) > _MAX_HEAD and b"\r\n\r\n" not in buf:
                raise BadResponse("response header too long")
        raw_head, _, rest = buf.partition(b"\r\n\r\n")
        status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise BadResponse(f"bad status line {status_line[:80]!r}")
        status, reason = int(parts[1]), parts[2] if len(parts) > 2 else ""
        fields: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                fields[name.strip().lower()] = value.strip()
        chunked = "chunked" in fields.get("transfer-encoding", "").lower()
        length: int | None = None
        if not chunked and "content-length" in fields:
            try:
                length = int(fields["content-length"])
            except ValueError:
                raise BadResponse("bad Content-Length") from None
        if status in (204, 304):
            return status, reason, b""  # never a body
        while True:
            if chunked:
                body, done = _dechunk(rest)
                if done:
                    return status, reason, body
            elif length is not None and len(rest) >= length:
                return status, reason, rest[:length]
            if len(rest) > _MAX_BODY:
                raise BadResponse("response body too long")
            chunk = sock.recv(65536)
            if not chunk:
                if chunked or length is not None:
                    raise BadResponse("the server closed the connection mid-response")
                return status, reason, rest  # no length given: the body ends with the stream
            rest += chunk
