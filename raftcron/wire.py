"""The HTTP API's wire rules shared by :mod:`raftcron.client` and ``raftcron lock``.

Errors, URL handling, JSON and response decoding, plus :class:`PlainHttp`: one HTTP/1.1
request over a plain TCP socket. ``raftcron lock`` uses it for ``http://`` APIs because a
one-shot process should start fast: :mod:`http.client` alone costs about 20 ms to import
here (it loads ``ssl`` and the ``email`` parser), longer than the lock round trip itself.
:mod:`raftcron.client` (on ``http.client``) stays the general client; the error classes
and helpers defined here are the ones it uses.

This module imports only modules built into the interpreter (``_socket``, ``_json``):
not :mod:`socket`, :mod:`json`, :mod:`re` or :mod:`urllib.parse`, each of which imports
:mod:`enum` or :mod:`re` (together 10-15 ms of a ``raftcron lock`` call on this machine).
What it does by hand is checked against the standard modules in ``tests/unit``: ``seg``
and ``query`` quote as :func:`urllib.parse.quote` / ``urlencode``, :func:`dumps` writes
what :func:`json.dumps` writes, :func:`loads` is :func:`json.loads` (the same C scanner;
anything it does not take goes to :mod:`json`), :func:`split_base` parses plain
``scheme://host[:port][/path]`` itself and hands anything else to :mod:`urllib.parse`.
"""

from __future__ import annotations

import _socket
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

try:
    import _json
except ImportError:  # not CPython: json's pure-Python scanner does the same
    _json = None  # type: ignore[assignment]


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


_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def _quote(text: str, plus: bool) -> str:
    """``urllib.parse.quote(text, safe="")`` (``quote_plus`` when ``plus``), UTF-8."""
    if all(c in _UNRESERVED for c in text):
        return text
    out = []
    for c in text:
        if c in _UNRESERVED:
            out.append(c)
        elif plus and c == " ":
            out.append("+")
        else:
            out.append("".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass")))
    return "".join(out)


def seg(name: str) -> str:
    """``name`` as one URL path segment."""
    return _quote(name, plus=False)


def query(**params: Any) -> str:
    items = [
        f"{_quote(k, True)}={_quote(str(v), True)}" for k, v in params.items() if v is not None
    ]
    return "?" + "&".join(items) if items else ""


_PLAIN_HOST = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")


def split_base(base_url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path prefix)`` of a base URL; ValueError if it is not one."""
    url = base_url if "://" in base_url else "http://" + base_url
    scheme, _, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    host, colon, port_text = netloc.rpartition(":") if ":" in netloc else (netloc, "", "")
    if (
        scheme in ("http", "https")
        and host
        and all(c in _PLAIN_HOST for c in host)
        and (not colon or (port_text.isascii() and port_text.isdigit()))
        and all(c not in path for c in "?#;%\\\t\r\n ")
        and path.isascii()
    ):
        port = int(port_text) if port_text else 0
        if port <= 65535:  # port 0 means the default, as urllib's `parts.port or ...`
            return (
                scheme,
                host,
                port or (443 if scheme == "https" else 80),
                (slash + path).rstrip("/"),
            )
    return _split_base_general(base_url)


def _split_base_general(base_url: str) -> tuple[str, str, int, str]:
    import urllib.parse  # anything but a plain scheme://host:port/path

    url = base_url if "://" in base_url else "http://" + base_url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{base_url!r} is not an http(s) URL (e.g. http://127.0.0.1:8101)")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"{base_url!r} has an invalid port") from None
    return parts.scheme, parts.hostname, port, parts.path.rstrip("/")


def _json_module() -> Any:
    import json

    return json


def _encode(value: Any, out: list[str]) -> bool:
    """Append ``value`` as :func:`json.dumps` writes it; False for what it leaves to json."""
    if isinstance(value, str):
        out.append(_json.encode_basestring_ascii(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif type(value) is int:
        out.append(int.__repr__(value))
    elif type(value) is float and value - value == 0.0:  # finite
        out.append(float.__repr__(value))
    elif type(value) is dict and all(type(k) is str for k in value):
        out.append("{")
        for i, (k, v) in enumerate(value.items()):
            if i:
                out.append(", ")
            out.append(_json.encode_basestring_ascii(k))
            out.append(": ")
            if not _encode(v, out):
                return False
        out.append("}")
    else:
        return False
    return True


def dumps(value: Any) -> str:
    """``json.dumps(value)``, the same text (for the JSON the API and ``raftcron lock``
    send: strings, numbers, booleans, None, dicts of them), without importing json."""
    out: list[str] = []
    if _json is not None and _encode(value, out):
        return "".join(out)
    text: str = _json_module().dumps(value)
    return text


class _ScanContext:
    """What ``json.JSONDecoder()`` gives its C scanner: json.loads' defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


# The C scanner reads these attributes off any object (typeshed names its own type).
_scan = _json.make_scanner(_ScanContext()) if _json is not None else None  # type: ignore[arg-type]


def loads(data: bytes | str) -> Any:
    """``json.loads(data)``: the same values and the same errors. The common case goes
    straight to the C scanner json.loads uses; anything else (or an error) goes through
    json itself, which then raises its own :class:`json.JSONDecodeError`."""
    if _scan is not None:
        try:
            text = data.decode("utf-8") if isinstance(data, bytes) else data
            text = text.strip(" \t\n\r")
            if text[:1] in ("{", "["):
                value, end = _scan(text, 0)
                if end == len(text):
                    return value
        except (ValueError, StopIteration):
            pass
    return _json_module().loads(data)


def decode(status: int, data: bytes, reason: str = "") -> Any:
    """The JSON body of a 2xx response, or raise :class:`ApiError`."""
    if 200 <= status < 300:
        if not data:
            return None
        try:
            return loads(data)
        except ValueError:
            raise ApiError(
                status, "bad_response", "the server sent a body that is not JSON"
            ) from None
    try:
        err = loads(data)["error"]
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


def _connect(host: str | bytes, port: int, timeout: float) -> _socket.socket:
    """:func:`socket.create_connection` on ``_socket``: each address in turn."""
    error: OSError | None = None
    for family, kind, proto, _, addr in _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(addr)
            return sock
        except OSError as exc:
            error = exc
            sock.close()
    raise error if error is not None else OSError("getaddrinfo returns an empty list")


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
        return self.receive(self.send(method, path, body, headers, timeout))

    def send(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        timeout: float,
    ) -> _socket.socket:
        """The first half of :meth:`request`: connect and send; the socket to
        :meth:`receive` the answer from (it then closes it)."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host_header}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append("Connection: close")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        # An ASCII host as bytes: a str makes getaddrinfo import the idna codec (~1 ms).
        host: str | bytes = self.host.encode() if self.host.isascii() else self.host
        sock = _connect(host, self.port, timeout)
        try:
            sock.sendall(head + (body or b""))
        except BaseException:
            sock.close()
            raise
        return sock

    def receive(self, sock: _socket.socket) -> tuple[int, str, bytes]:
        """The second half of :meth:`request`: ``(status, reason, body)``."""
        try:
            return self._read(sock)
        finally:
            sock.close()

    def _read(self, sock: _socket.socket) -> tuple[int, str, bytes]:
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
