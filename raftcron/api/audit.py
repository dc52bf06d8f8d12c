"""The audit trail: every API write (anything but GET, HEAD and OPTIONS) is logged once,
when its answer is known, by the node that received it:

    audit: POST /v1/jobs/backup/pause by ci (admin) -> 200

with ``event="audit"`` and the fields ``token`` (the token's name from ``[[api.tokens]]``,
``open-api`` on an API without tokens, ``unauthenticated`` without a known token),
``role``, ``method``, ``path``, ``status`` and, when the path names them, ``job``
(``/v1/jobs/{name}...``) and ``run_id`` (``--log-json``). Refused writes (401, 403) are
logged too: the middleware runs outside the auth middleware. While the request is
handled, the job and run id are bound to every other line it logs
(``raftcron.logs.bound``).

Lock operations (``/v1/locks...``) are logged at DEBUG, not INFO: an acquire, its renewals
and its release are a client's own coordination, not a change to the cluster's jobs, and
they are the API's hot path (hundreds per second under contention); one INFO line each
would flood the log and cost every lock a synchronous write to stderr.

The token itself, the request body and the query string are never logged: only the path
(capped, control characters escaped) and the token's name.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from raftcron import logs
from raftcron.api.auth import READ_METHODS, caller_of
from raftcron.api.http import printable

logger = logging.getLogger(__name__)

__all__ = ["QUIET_PREFIXES", "middleware", "register"]

QUIET_PREFIXES: Final = ("/v1/locks",)
"""Paths whose writes are audited at DEBUG (see the module docstring)."""
MAX_PATH_CHARS: Final = 200


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in READ_METHODS:
        return await handler(request)
    quiet = request.path.startswith(QUIET_PREFIXES)
    info = request.match_info
    job = info.get("name") if request.path.startswith("/v1/jobs/") else None
    run_id = info.get("run_id")
    status: int | str = "aborted"
    try:
        with logs.bound(job=job, run_id=run_id):
            response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:  # the client went away; the write may still commit
        raise
    except Exception:
        status = 500
        raise
    finally:
        level = logging.DEBUG if quiet else logging.INFO
        if logger.isEnabledFor(level):  # (at the default INFO a lock call skips the lookup)
            _log(request, level, status, job, run_id)


def _log(
    request: web.Request, level: int, status: int | str, job: str | None, run_id: str | None
) -> None:
    caller = caller_of(request)
    path = printable(request.path, MAX_PATH_CHARS)
    logger.log(
        level,
        "audit: %s %s by %s (%s) -> %s",
        request.method,
        path,
        caller.label,
        caller.role or "no role",
        status,
        extra={
            "event": "audit",
            "token": caller.label,
            "role": caller.role,
            "method": request.method,
            "path": path,
            "status": status,
            "job": job,
            "run_id": run_id,
        },
    )


def register(app: web.Application) -> None:
    """Put the audit middleware first in ``app``: call after ``auth.register(app)``, so it
    sees refused writes as well."""
    app.middlewares.insert(0, middleware)
