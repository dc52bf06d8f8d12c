"""The lock API: fenced, leased, FIFO-fair named locks under ``/v1/locks``.

* ``POST /v1/locks/{name}`` ``{"ttl", "wait", "holder", "request"}`` takes the lock:
  200 ``{"lock", "fence", "holder", "ttl_ms", "request"}``, or 409 ``locked`` when it was
  not acquired within ``wait`` (``ttl`` and ``wait`` are seconds or duration strings;
  defaults 30s and 0). ``request`` is an optional idempotency key: repeating a request
  whose answer was lost (503, a timeout) with the same key returns the same grant.
* ``POST /v1/locks/{name}/renew`` ``{"fence"}``: 200 ``{"lock", "fence", "holder",
  "ttl_ms"}`` or 409 ``stale_fence``.
* ``DELETE /v1/locks/{name}?fence=N``: 200 ``{"lock", "released": true}`` or 409
  ``stale_fence``.
* ``GET /v1/locks``: every held lock with its holder, fence, TTL and queue.

Invariants:

* Nothing here blocks the loop. A queued acquire awaits a future resolved from the apply
  stream (``ClusterPort.commit_listeners``) and re-reads the committed state every
  ``RECHECK_S`` (a snapshot install can skip the entry that granted it).
* Every proposal has a deadline. A timeout is an unknown outcome and is retried with the
  same command (an acquire by its request id, a renewal or release by its fence), which
  ``apply`` makes idempotent, so a retry never takes the lock twice.
* When a wait runs out this node commits ``CancelLockWait``. If the lock was granted to the
  request first, the cancel reports the grant and the caller gets the lock instead of a
  409; a grant is never silently dropped by the node that asked for it.
* Errors are ``{"error": {"code", "message"}}``: 400 invalid input, 409 ``locked``,
  ``queue_full`` or ``stale_fence``, 503 when no leader commits in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from raftcron.api.http import (
    INT64_MAX,
    NODE_KEY,
    WRITE_TIMEOUT,
    ApiProblem,
    commit,
    error,
    printable,
    rejected,
)
from raftcron.api.http import json_response as _json
from raftcron.api.http import read_body as _body
from raftcron.clock import monotonic
from raftcron.config import ConfigError, parse_duration
from raftcron.core import commands as c
from raftcron.core.model import DEFAULT_LOCK_TTL_MS, Lock, lock_problem
from raftcron.core.results import Reject
from raftcron.core.state import (
    LockCancelled,
    LockEnded,
    LockGrant,
    LockQueued,
    Ok,
    Rejected,
    Result,
    State,
)
from raftcron.timefmt import rfc3339

if TYPE_CHECKING:
    from raftcron.api.port import ClusterPort

__all__ = ["LockWaits", "register"]

logger = logging.getLogger(__name__)

RECHECK_S: Final = 1.0  # a waiting acquire re-reads the committed state this often


def _error(exc: ApiProblem) -> web.Response:
    headers = {"Retry-After": "1"} if exc.status == 503 else exc.headers
    return error(exc.status, exc.code, exc.message, headers)


# --------------------------------------------------------------------------- waiting


class LockWaits:
    """Futures of queued acquires on this node, settled from the apply stream.

    A future gets the :class:`LockGrant` when the lock is handed to its request, or
    ``None`` when the request left the queue without it (cancelled by the leader).
    """

    def __init__(self) -> None:
        self._futures: dict[tuple[str, str], list[asyncio.Future[LockGrant | None]]] = {}

    def add(self, name: str, request: str) -> asyncio.Future[LockGrant | None]:
        fut: asyncio.Future[LockGrant | None] = asyncio.get_running_loop().create_future()
        self._futures.setdefault((name, request), []).append(fut)
        return fut

    def discard(self, name: str, request: str, fut: asyncio.Future[LockGrant | None]) -> None:
        futs = self._futures.get((name, request))
        if futs is not None and fut in futs:
            futs.remove(fut)
            if not futs:
                del self._futures[(name, request)]

    def waiting(self) -> int:
        return sum(len(v) for v in self._futures.values())

    def on_commit(self, cmd: c.Command | None, res: Result) -> None:
        if not isinstance(res, Ok):
            return
        value = res.value
        if isinstance(value, LockEnded) and value.granted is not None:
            self._settle(value.granted.name, value.granted.request, value.granted)
        elif isinstance(value, LockCancelled):
            self._settle(value.name, value.request, None)

    def _settle(self, name: str, request: str, value: LockGrant | None) -> None:
        for fut in self._futures.get((name, request), ()):
            if not fut.done():
                fut.set_result(value)


LOCK_WAITS_KEY: Final[web.AppKey[LockWaits]] = web.AppKey("lock_waits")
_TASKS_KEY: Final[web.AppKey[set[asyncio.Task[None]]]] = web.AppKey("lock_tasks")


# --------------------------------------------------------------------------- helpers


def _node(request: web.Request) -> ClusterPort:
    return request.app[NODE_KEY]


def _duration_ms(body: dict[str, Any], key: str, default: int) -> int:
    value = body.get(key)
    if value is None:
        return default
    try:
        return parse_duration(value, key)
    except ConfigError as exc:
        raise ApiProblem(400, "invalid", str(exc)) from None


def _fence(value: object, where: str) -> int:
    fence: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        fence = value
    elif isinstance(value, str) and re.fullmatch(r"[0-9]{1,30}", value.strip()):
        fence = int(value)  # (ASCII digits: str.isdigit() also takes "¹")
    if fence is None or not 1 <= fence <= INT64_MAX:
        shown = printable(repr(value), 60)
        raise ApiProblem(
            400,
            "invalid",
            f"{where} must be a fence (an integer 1..{INT64_MAX}), got {shown}",
        )
    return fence


async def _commit(node: ClusterPort, cmd: c.Command, budget: float) -> Result:
    """Propose ``cmd`` until it commits or ``budget`` seconds pass (then 503)."""
    return await commit(node, cmd, budget, retry=True)


def _grant_json(g: LockGrant, **extra: Any) -> dict[str, Any]:
    return {"lock": g.name, "fence": g.fence, "holder": g.holder, "ttl_ms": g.ttl_ms} | extra


def _where(state: State, name: str, request: str) -> LockGrant | str:
    """Where ``request`` stands now: its grant, ``"queued"`` or ``"gone"``."""
    lock = state.lock(name)
    if lock is not None:
        if lock.request == request:
            return LockGrant(
                lock.name, lock.request, lock.fence, lock.holder, lock.ttl_ms, lock.renewals
            )
        if any(w.request == request for w in lock.waiters):
            return "queued"
    return "gone"


def _busy(node: ClusterPort, name: str) -> str:
    lock = node.read(lambda s: s.lock(name))
    if lock is None:
        return f"lock {name!r} was not acquired"
    return f"lock {name!r} is held by {lock.holder!r} (fence {lock.fence})"


# --------------------------------------------------------------------------- handlers


async def acquire(request: web.Request) -> web.Response:
    node = _node(request)
    name = request.match_info["name"]
    try:
        body = await _body(request)
        ttl_ms = _duration_ms(body, "ttl", DEFAULT_LOCK_TTL_MS)
        wait_ms = _duration_ms(body, "wait", 0)
        holder = body.get("holder")
        if holder is None:
            holder = request.remote or ""
        given = body.get("request")
        req_id = given or f"{node.name}-{secrets.token_hex(8)}"
        if not isinstance(holder, str) or not isinstance(req_id, str):
            raise ApiProblem(400, "invalid", "holder and request must be strings")
        problem = lock_problem(
            name=name, holder=holder, ttl_ms=ttl_ms, wait_ms=wait_ms, request=req_id
        )
        if problem is not None:
            raise ApiProblem(400, "invalid", problem)
        t0 = node.clock.monotonic()
        grant = await _acquire(request.app, node, name, req_id, holder, ttl_ms, wait_ms)
    except ApiProblem as exc:
        if exc.status == 503 and not given:
            # Outcome unknown and the caller cannot repeat this request id: do not leave a
            # grant or a queue place behind that nobody will use.
            _background(request.app, _cancel_quietly(node, name, req_id))
        return _error(exc)
    waited = node.clock.monotonic() - t0
    node.metrics.lock_acquire_seconds.observe(max(0.0, waited))
    logger.info(
        "lock %s fence=%d granted to %r (request %s, waited %.3fs)",
        name,
        grant.fence,
        grant.holder,
        req_id,
        waited,
    )
    return _json(_grant_json(grant, request=req_id))


async def _acquire(
    app: web.Application,
    node: ClusterPort,
    name: str,
    req_id: str,
    holder: str,
    ttl_ms: int,
    wait_ms: int,
) -> LockGrant:
    deadline = monotonic() + wait_ms / 1000
    waits = app[LOCK_WAITS_KEY]
    fut = waits.add(name, req_id)  # before proposing: the grant may come at any time after
    try:
        cmd = c.AcquireLock(
            at_ms=node.clock.wall_ms(),
            name=name,
            request=req_id,
            holder=holder,
            ttl_ms=ttl_ms,
            wait_ms=wait_ms,
        )
        res = await _commit(node, cmd, max(WRITE_TIMEOUT, wait_ms / 1000))
        if isinstance(res, Rejected):
            if res.code == Reject.REQUEST_DONE:
                raise ApiProblem(409, "locked", f"{_busy(node, name)}: {res.message}")
            raise rejected(res)
        if isinstance(res.value, LockGrant):
            return res.value
        if not isinstance(res.value, LockQueued):
            raise ApiProblem(409, "locked", f"unexpected result {res.value!r}")
        while (left := deadline - monotonic()) > 0:
            await asyncio.wait([fut], timeout=min(left, RECHECK_S))
            now = fut.result() if fut.done() else node.read(lambda s: _where(s, name, req_id))
            if isinstance(now, LockGrant):
                return now
            if now is None or now == "gone":
                raise ApiProblem(409, "locked", f"{_busy(node, name)}; the wait was cancelled")
        # The wait ran out: leave the queue, unless the lock came to us first.
        busy = _busy(node, name)
        got = await _cancel(node, name, req_id, "the wait ran out", WRITE_TIMEOUT)
        if got is not None:
            return got
        raise ApiProblem(409, "locked", f"{busy}; not acquired within {wait_ms / 1000:g}s")
    except asyncio.CancelledError:
        # The server is stopping (or the client went away) with the outcome unknown: leave
        # the queue, and give back a grant nobody will use.
        _background(app, _cancel_quietly(node, name, req_id))
        raise
    finally:
        waits.discard(name, req_id, fut)


def _background(app: web.Application, coro: Coroutine[Any, Any, None]) -> None:
    tasks: set[asyncio.Task[None]] = app[_TASKS_KEY]
    task = asyncio.get_running_loop().create_task(coro)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def _cancel(
    node: ClusterPort, name: str, req_id: str, reason: str, budget: float
) -> LockGrant | None:
    """Leave ``name``'s queue; the grant if the lock was handed to ``req_id`` first."""
    cmd = c.CancelLockWait(at_ms=node.clock.wall_ms(), name=name, request=req_id, reason=reason)
    res = await _commit(node, cmd, budget)
    if isinstance(res, Ok) and isinstance(res.value, LockGrant):
        return res.value
    return None


async def _cancel_quietly(node: ClusterPort, name: str, req_id: str) -> None:
    with contextlib.suppress(ApiProblem):
        got = await _cancel(node, name, req_id, "the request was abandoned", WRITE_TIMEOUT)
        if got is not None:  # nobody will use it: give it back
            await _commit(
                node, c.ReleaseLock(at_ms=node.clock.wall_ms(), name=name, fence=got.fence), 5.0
            )


async def renew(request: web.Request) -> web.Response:
    node = _node(request)
    name = request.match_info["name"]
    try:
        body = await _body(request)
        if "fence" not in body:
            raise ApiProblem(400, "invalid", 'renew needs {"fence": N}')
        fence = _fence(body["fence"], "fence")
        cmd = c.RenewLock(at_ms=node.clock.wall_ms(), name=name, fence=fence)
        res = await _commit(node, cmd, WRITE_TIMEOUT)
        if isinstance(res, Rejected):
            raise rejected(res)
    except ApiProblem as exc:
        return _error(exc)
    node.metrics.lease_renewals.labels(kind="lock").inc()
    grant = res.value
    if not isinstance(grant, LockGrant):
        return _json({"lock": name, "fence": fence})
    return _json(_grant_json(grant))


async def release(request: web.Request) -> web.Response:
    node = _node(request)
    name = request.match_info["name"]
    try:
        raw = request.query.get("fence")
        if raw is None:
            raise ApiProblem(400, "invalid", "release needs ?fence=N (the fence of the grant)")
        fence = _fence(raw, "fence")
        cmd = c.ReleaseLock(at_ms=node.clock.wall_ms(), name=name, fence=fence)
        res = await _commit(node, cmd, WRITE_TIMEOUT)
        if isinstance(res, Rejected):
            raise rejected(res)
    except ApiProblem as exc:
        return _error(exc)
    ended = res.value
    if isinstance(ended, LockEnded) and not ended.retry:
        nxt = ended.granted
        logger.info(
            "lock %s fence=%d released; %s",
            name,
            fence,
            "free" if nxt is None else f"granted to {nxt.holder!r} fence={nxt.fence}",
        )
    return _json({"lock": name, "released": True, "fence": fence})


def lock_json(lock: Lock) -> dict[str, Any]:
    return {
        "name": lock.name,
        "fence": lock.fence,
        "holder": lock.holder,
        "ttl_ms": lock.ttl_ms,
        "acquired_at": rfc3339(lock.acquired_ms),
        "renewed_at": rfc3339(lock.renewed_ms),
        "waiters": [
            {"holder": w.holder, "wait_ms": w.wait_ms, "queued_at": rfc3339(w.queued_ms)}
            for w in lock.waiters
        ],
    }


async def list_locks(request: web.Request) -> web.Response:
    node = _node(request)
    locks = node.read(lambda s: sorted(s.lock_list(), key=lambda lk: lk.name))
    return _json({"locks": [lock_json(lk) for lk in locks]})


# --------------------------------------------------------------------------- wiring


def register(app: web.Application) -> None:
    """Add the lock routes; on startup, subscribe to the node's apply stream."""
    app[LOCK_WAITS_KEY] = LockWaits()
    app[_TASKS_KEY] = set()

    async def subscribe(app: web.Application) -> None:
        app[NODE_KEY].commit_listeners.append(app[LOCK_WAITS_KEY].on_commit)

    async def unsubscribe(app: web.Application) -> None:
        listeners = app[NODE_KEY].commit_listeners
        with contextlib.suppress(ValueError):
            listeners.remove(app[LOCK_WAITS_KEY].on_commit)
        pending: set[asyncio.Task[None]] = app[_TASKS_KEY]
        for task in list(pending):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), 2.0)

    app.on_startup.append(subscribe)
    app.on_cleanup.append(unsubscribe)
    app.router.add_get("/v1/locks", list_locks)
    app.router.add_post("/v1/locks/{name}", acquire)
    app.router.add_post("/v1/locks/{name}/renew", renew)
    app.router.add_delete("/v1/locks/{name}", release)
