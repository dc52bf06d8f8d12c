"""What every API module shares: the app key of the node, JSON responses, and the one
error format ``{"error": {"code", "message"}}`` (raise :class:`ApiProblem`; the error
middleware in ``app.py`` answers it).

It imports no other API module, so any of them can import it at the top.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final, NoReturn

import orjson
from aiohttp import web

from raftcron.clock import monotonic
from raftcron.core.results import Reject, Rejected, Result
from raftcron.proposals import propose_with_retry
from raftcron.raft.node import ProposalError

if TYPE_CHECKING:
    from raftcron.api.port import ClusterPort
    from raftcron.core.commands import Command

NODE_KEY: web.AppKey[ClusterPort] = web.AppKey("node")

# A write's deadline: one proposal, or the budget of a write that retries (locks).
WRITE_TIMEOUT: Final = 5.0
# The pause between two proposals of a write that retries within its budget.
RETRY_PAUSE_S: Final = 0.1
# The HTTP status of each rejection a write can get; any other is 409 (a conflict).
REJECTION_STATUS: Final[dict[Reject, int]] = {
    Reject.UNKNOWN_JOB: 404,
    Reject.UNKNOWN_RUN: 404,
    Reject.NO_BACKFILL: 404,
    Reject.BAD_BACKFILL: 400,
    Reject.DEPENDENCY_CYCLE: 400,
    Reject.BAD_DRAIN: 400,
    Reject.INVALID: 400,
    Reject.STALE_FENCE: 409,
    Reject.BACKFILL_RUNNING: 409,
    Reject.LOCKED: 409,
    Reject.REQUEST_DONE: 409,
    Reject.QUEUE_FULL: 409,
    Reject.UNKNOWN_MEMBER: 404,
    Reject.BAD_MEMBER: 400,
}

# What a read token sees in place of a secret (job env values, HTTP headers, notify and
# ping URLs, URLs with credentials). A PUT carrying it is refused: a read view can never
# be written back over the real values by mistake.
REDACTED: Final = "<redacted>"
# The integers the replicated log can carry (msgpack): int64 and uint64.
WIRE_INT_MIN: Final = -(2**63)
WIRE_INT_MAX: Final = 2**64 - 1
INT64_MAX: Final = 2**63 - 1
# Request bodies: at most this long to arrive once the handler reads them, this many
# characters per object key and per string, and this deep.
BODY_TIMEOUT_S: Final = 30.0
MAX_KEY_CHARS: Final = 256
MAX_STRING_CHARS: Final = 65_536
MAX_DEPTH: Final = 16
_ASCII_INT: Final = re.compile(r"-?[0-9]{1,40}")


class ApiProblem(Exception):
    """Raised by a handler; the error middleware answers ``{"error": {code, message}}``."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def not_committed(
    node: ClusterPort, exc: ProposalError, headers: dict[str, str] | None = None
) -> ApiProblem:
    """The 503 for a proposal that did not commit (or whose outcome is unknown)."""
    leader = node.node_name(node.status().leader)
    seen = f"leader {leader}" if leader else "no leader"
    return ApiProblem(
        503,
        exc.code if exc.code in ("timeout", "no_leader") else "unavailable",
        f"{exc} ({node.name} sees {seen}; retry, the request is safe to repeat)",
        headers,
    )


def rejected(res: Rejected) -> ApiProblem:
    """The answer to a committed rejection (``REJECTION_STATUS``)."""
    return ApiProblem(REJECTION_STATUS.get(res.code, 409), res.code, res.message)


async def commit(
    node: ClusterPort,
    cmd: Command,
    budget: float = WRITE_TIMEOUT,
    *,
    retry: bool = False,
    headers: dict[str, str] | None = None,
) -> Result:
    """``cmd``'s committed result (a rejection included); 503 (:func:`not_committed`,
    with ``headers``) when it did not commit within ``budget`` seconds. ``retry``: propose
    it again after a pause until the budget runs out; else one proposal with that
    deadline. A command that uses a feature some member does not support yet is not
    proposed: 409 ``feature_not_enabled`` naming it and the members still to upgrade
    (raftcron/core/features.py)."""
    refused = node.feature_refusal(cmd)
    if refused is not None:
        raise ApiProblem(409, "feature_not_enabled", refused.message())
    try:
        return await propose_with_retry(
            node.propose,
            cmd,
            attempt_timeout=min(WRITE_TIMEOUT, budget) if retry else budget,
            pause=RETRY_PAUSE_S,
            monotonic=monotonic,
            budget=budget if retry else None,
            attempts=None if retry else 1,
        )
    except ProposalError as exc:
        raise not_committed(node, exc, headers) from None


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """An error response in the API's one format."""
    return json_response({"error": {"code": code, "message": message}}, status, headers)


def invalid(message: str) -> NoReturn:
    raise ApiProblem(400, "invalid", message)


def printable(text: str, limit: int = 200) -> str:
    """User text made safe for one log line: control characters (newlines included)
    escaped, at most ``limit`` characters (a note cannot forge a log line)."""
    out = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return out if len(out) <= limit else out[: limit - 3] + "..."


def wire_int(value: object, what: str, lo: int = WIRE_INT_MIN, hi: int = INT64_MAX) -> int:
    """An integer from JSON or a query string (ASCII digits only: ``str.isdigit()`` also
    accepts "¹"), within ``lo..hi`` (by default what the replicated log can carry); 400
    otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _ASCII_INT.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        shown = value if isinstance(value, int | float | str) else type(value).__name__
        invalid(f"{what} must be an integer, got {printable(repr(shown), 60)}")
    if not lo <= number <= hi:
        invalid(f"{what} must be {lo}..{hi}, got {printable(str(number), 60)}")
    return number


def _key_path(path: str, key: str) -> str:
    shown = key if len(key) <= 40 else key[:40] + "..."
    return f"{path}.{printable(shown, 60)}" if path else printable(shown, 60)


def _walk(value: Any, path: str, depth: int = 0) -> Iterator[tuple[str, str, bool]]:
    """Every string of a decoded JSON value: ``(key path, text, is an object key)``."""
    if depth > MAX_DEPTH:
        invalid(f"request body: {path or 'the body'} is nested more than {MAX_DEPTH} deep")
    if isinstance(value, str):
        yield path, value, False
    elif isinstance(value, dict):
        for k, v in value.items():
            sub = _key_path(path, k)
            yield sub, k, True
            yield from _walk(v, sub, depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]", depth + 1)


def check_sizes(raw: Any) -> None:
    """400 naming the key for an object key longer than MAX_KEY_CHARS, a string longer
    than MAX_STRING_CHARS, or nesting deeper than MAX_DEPTH, anywhere in a request body."""
    for path, text, is_key in _walk(raw, ""):
        limit = MAX_KEY_CHARS if is_key else MAX_STRING_CHARS
        if len(text) > limit:
            what = "key" if is_key else "value"
            invalid(
                f"request body: {path}: the {what} is {len(text)} characters long (at most {limit})"
            )


def refuse_redacted(raw: Any) -> None:
    """400 naming the key when a request body carries the redaction marker anywhere (it
    was copied from a read token's view: the real value is not known)."""
    for path, text, _ in _walk(raw, ""):
        if REDACTED in text:
            invalid(
                f"request body: {path}: {REDACTED} is what a read token sees in place of a "
                "secret, not a value; give the real value (read the job with an admin "
                "token, or keep the job's definition in a file)"
            )


async def read_body(request: web.Request, allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The request's JSON object (``{}`` for an empty body); 400 for anything else, 408
    when it does not arrive within ``BODY_TIMEOUT_S`` (a slow client is not held), 413
    above the app's ``client_max_size``."""
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            data = await request.read()
    except TimeoutError:
        raise ApiProblem(
            408,
            "request_timeout",
            f"the request body did not arrive within {BODY_TIMEOUT_S:g}s",
            {"Connection": "close"},
        ) from None
    if not data.strip():
        return {}
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        invalid(f"request body is not JSON: {exc}")
    if not isinstance(raw, dict):
        invalid(f"request body must be a JSON object, got {type(raw).__name__}")
    check_sizes(raw)
    if allowed is not None:
        unknown = sorted(set(raw) - set(allowed))
        if unknown:
            keys = ", ".join(allowed) or "none"
            invalid(f"request body: unknown key(s) {', '.join(unknown)} (allowed: {keys})")
    return raw


def not_leader(node: ClusterPort, why: str) -> ApiProblem:
    """409 ``not_leader``: ``why`` (after this node's name) says what needs the leader; the
    message names the leader to ask and its API address, when one is seen."""
    st = node.status()
    leader = None if st.is_leader else node.node_name(st.leader)
    api = member_api(node, leader)
    ask = f"; ask the leader {leader} at {api}" if api else " (no leader now; retry)"
    return ApiProblem(409, "not_leader", f"{node.name} {why}{ask}")


def member_api(node: ClusterPort, name: str | None) -> str | None:
    """The API URL of the member ``name`` as this node's cluster file gives it (None: not
    a member, or no name): what a 409 ``not_leader`` tells a client to ask instead."""
    return next(
        (f"{node.api_scheme}://{n.api}" for n in node.members() if n.name == name),
        None,
    )
