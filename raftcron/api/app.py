"""The HTTP API (aiohttp): status, runs, jobs, health.

Every handler reads committed state through the machine's lock and Raft status from the
copy made on the tick thread; none blocks the loop. Errors are JSON
``{"error": {"code", "message"}}`` with a 4xx status for anything a client sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from raftcron.config import ConfigError, job_spec_from_mapping
from raftcron.core import commands as c
from raftcron.core.model import Run
from raftcron.core.schedule import parse
from raftcron.core.state import Ok, Rejected
from raftcron.executor.runner import rfc3339
from raftcron.raft.node import ProposalError

if TYPE_CHECKING:
    from raftcron.node import Node

NODE_KEY: web.AppKey[Node] = web.AppKey("node")
MAX_LIMIT = 1000


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def error(status: int, code: str, message: str) -> web.Response:
    return _json({"error": {"code": code, "message": message}}, status)


def _ts(ms: int | None) -> str | None:
    return None if ms is None else rfc3339(ms)


def run_json(run: Run, *, output: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": run.id,
        "job": run.job,
        "scheduled_at": rfc3339(run.scheduled_at_ms),
        "scheduled_at_ms": run.scheduled_at_ms,
        "fence": run.fence,
        "node": run.node or None,
        "status": run.status,
        "trigger": run.trigger,
        "attempt": run.attempt,
        "claimed_at": _ts(run.claimed_ms),
        "started_at": _ts(run.started_ms),
        "finished_at": _ts(run.finished_ms),
        "exit_code": run.exit_code,
        "reason": run.reason,
    }
    if run.count != 1:
        body["count"] = run.count
    if output:
        body["output"] = run.output
    return body


def status_json(node: Node) -> dict[str, Any]:
    st = node.status()
    leader = node.node_name(st.leader)
    match = dict(st.match_index)
    members = []
    for n in node.config.cluster.nodes:
        addr = str(n.raft)
        is_self = n.name == node.name
        healthy = (is_self and leader is not None) or addr in st.connected
        member: dict[str, Any] = {
            "name": n.name,
            "raft": addr,
            "api": f"http://{n.api}",
            "role": "leader" if leader == n.name else "follower",
            "healthy": healthy,
            "self": is_self,
        }
        if st.is_leader and not is_self and addr in match:
            member["match_index"] = match[addr]
            member["lag"] = max(0, st.commit_index - match[addr])
        members.append(member)
    counts = node.machine.read(
        lambda s: (
            len(s.jobs),
            len(s.runs),
            len(s.leases),
            s.counters.fence,
            s.counters.stale_rejections,
        )
    )
    return {
        "node": node.name,
        "role": "leader" if st.is_leader else "follower",
        "leader": leader,
        "leader_established": node.is_established_leader(),
        "term": st.term,
        "commit_index": st.commit_index,
        "last_applied": st.last_applied,
        "has_quorum": st.has_quorum,
        "members": members,
        "jobs": counts[0],
        "runs": counts[1],
        "live_leases": counts[2],
        "fence": counts[3],
        "stale_rejections": counts[4],
        "executing": node.executor.active_count(),
        "fsyncs": node.raft.fsync_count(),
        "leader_changes": node.leader_changes,
    }


async def get_status(request: web.Request) -> web.Response:
    return _json(status_json(request.app[NODE_KEY]))


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(
            body=orjson.dumps(
                {"error": {"code": "invalid", "message": f"{name} must be an integer, got {raw!r}"}}
            ),
            content_type="application/json",
        ) from None
    if not lo <= value <= hi:
        raise web.HTTPBadRequest(
            body=orjson.dumps(
                {"error": {"code": "invalid", "message": f"{name} must be {lo}..{hi}, got {value}"}}
            ),
            content_type="application/json",
        )
    return value


async def get_runs(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    limit = _int_param(request, "limit", 100, 1, MAX_LIMIT)
    job = request.query.get("job") or None
    on = request.query.get("node") or None
    status = request.query.get("status") or None
    with_output = request.query.get("output") in ("1", "true")

    def pick(s: Any) -> list[Run]:
        runs: list[Run] = list(s.runs.values())
        return runs

    runs = node.machine.read(pick)
    if job is not None:
        runs = [r for r in runs if r.job == job]
    if on is not None:
        runs = [r for r in runs if r.node == on]
    if status is not None:
        runs = [r for r in runs if r.status == status]
    runs.sort(key=lambda r: (r.scheduled_at_ms, r.id), reverse=True)
    return _json(
        {"runs": [run_json(r, output=with_output) for r in runs[:limit]], "total": len(runs)}
    )


async def get_run(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    rid = request.match_info["run_id"]
    run = node.machine.read(lambda s: s.runs.get(rid))
    if run is None:
        return error(404, "not_found", f"no run {rid!r} in the ledger")
    return _json(run_json(run, output=True))


async def get_jobs(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    jobs = node.machine.read(lambda s: list(s.jobs.values()))
    out = []
    for job in sorted(jobs, key=lambda j: j.spec.name):
        spec = job.spec
        nxt = parse(spec.schedule, spec.timezone).next_after(
            max(job.watermark_ms, node.clock.wall_ms())
        )
        out.append(
            {
                "name": spec.name,
                "schedule": spec.schedule,
                "timezone": spec.timezone,
                "command": list(spec.command),
                "overlap": spec.overlap,
                "catchup_ms": spec.catchup_ms,
                "lease_ms": spec.lease_ms,
                "timeout_ms": spec.timeout_ms,
                "tags": dict(spec.tags),
                "paused": job.paused,
                "source": job.source,
                "watermark": _ts(job.watermark_ms),
                "next_fire": rfc3339(nxt),
            }
        )
    return _json({"jobs": out})


WRITE_TIMEOUT = 5.0
_REJECTION_STATUS = {"unknown_job": 404, "stale_fence": 409}


async def _propose(node: Node, cmd: c.Command) -> Ok | web.Response:
    try:
        res = await node.raft.propose(cmd, WRITE_TIMEOUT)
    except ProposalError as exc:
        return error(503, exc.code, f"{exc} (no leader reachable from {node.name}?)")
    if isinstance(res, Rejected):
        return error(_REJECTION_STATUS.get(res.code, 409), res.code, res.message)
    return res


async def put_job(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    name = request.match_info["name"]
    try:
        raw = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        return error(400, "invalid", f"request body is not JSON: {exc}")
    if not isinstance(raw, dict):
        return error(
            400, "invalid", "request body must be a JSON object with the keys of a [[jobs]] table"
        )
    raw.setdefault("name", name)
    if raw["name"] != name:
        return error(400, "invalid", f"body name {raw['name']!r} does not match the URL ({name!r})")
    try:
        spec = job_spec_from_mapping(
            raw, "request body", default_lease_ms=node.config.cluster.lease_ms
        )
    except ConfigError as exc:
        return error(400, "invalid", str(exc))
    res = await _propose(node, c.PutJob(at_ms=node.clock.wall_ms(), spec=spec, source="api"))
    if isinstance(res, web.Response):
        return res
    return _json({"job": name, "result": res.value}, 201 if res.value == "created" else 200)


async def delete_job(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    name = request.match_info["name"]
    res = await _propose(node, c.DeleteJob(at_ms=node.clock.wall_ms(), name=name))
    if isinstance(res, web.Response):
        return res
    return _json({"job": name, "result": "deleted"})


async def _set_paused(request: web.Request, paused: bool) -> web.Response:
    node = request.app[NODE_KEY]
    name = request.match_info["name"]
    res = await _propose(node, c.SetPaused(at_ms=node.clock.wall_ms(), name=name, paused=paused))
    if isinstance(res, web.Response):
        return res
    return _json({"job": name, "paused": paused})


async def pause_job(request: web.Request) -> web.Response:
    return await _set_paused(request, True)


async def resume_job(request: web.Request) -> web.Response:
    return await _set_paused(request, False)


async def health(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    st = node.status()
    if st.leader is not None and (st.is_leader or st.leader in st.connected):
        return _json({"status": "ok", "leader": node.node_name(st.leader)})
    return _json({"status": "no_leader", "leader": None}, 503)


async def health_leader(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    if node.is_established_leader():
        return _json({"status": "leader", "node": node.name})
    return _json({"status": "not_leader", "leader": node.node_name(node.status().leader)}, 503)


@web.middleware
async def errors_as_json(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        resp: web.StreamResponse = await handler(request)
        return resp
    except web.HTTPException as exc:
        if exc.content_type == "application/json":
            raise
        return error(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or exc.reason)


def build_app(node: Node) -> web.Application:
    app = web.Application(middlewares=[errors_as_json])
    app[NODE_KEY] = node
    app.router.add_get("/v1/status", get_status)
    app.router.add_get("/v1/runs", get_runs)
    app.router.add_get("/v1/runs/{run_id}", get_run)
    app.router.add_get("/v1/jobs", get_jobs)
    app.router.add_put("/v1/jobs/{name}", put_job)
    app.router.add_delete("/v1/jobs/{name}", delete_job)
    app.router.add_post("/v1/jobs/{name}/pause", pause_job)
    app.router.add_post("/v1/jobs/{name}/resume", resume_job)
    app.router.add_get("/health", health)
    app.router.add_get("/health/leader", health_leader)
    return app
