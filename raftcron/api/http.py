"""What every API module shares: the app key of the node, JSON responses, and the one
error format ``{"error": {"code", "message"}}`` (raise :class:`ApiProblem`; the error
middleware in ``app.py`` answers it).

It imports no other API module, so any of them can import it at the top.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

import orjson
from aiohttp import web

if TYPE_CHECKING:
    from raftcron.node import Node
    from raftcron.raft.node import ProposalError

NODE_KEY: web.AppKey[Node] = web.AppKey("node")


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
    node: Node, exc: ProposalError, headers: dict[str, str] | None = None
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


async def read_body(request: web.Request, allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The request's JSON object (``{}`` for an empty body); 400 for anything else."""
    data = await request.read()
    if not data.strip():
        return {}
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        invalid(f"request body is not JSON: {exc}")
    if not isinstance(raw, dict):
        invalid(f"request body must be a JSON object, got {type(raw).__name__}")
    if allowed is not None:
        unknown = sorted(set(raw) - set(allowed))
        if unknown:
            keys = ", ".join(allowed) or "none"
            invalid(f"request body: unknown key(s) {', '.join(unknown)} (allowed: {keys})")
    return raw
