"""The HTTP API (aiohttp): the ``/v1`` contract on every node (docs/design.md, "The
outside contract"; docs/api.md, generated from it).

Invariants:

* Reads come from this node's committed state (``Machine.read``, under the machine's
  lock) and the Raft status copied on the tick thread; no handler blocks the loop.
* Writes are proposals with a deadline (``http.WRITE_TIMEOUT``). pysyncobj forwards a proposal
  made on a follower to the leader and calls back once this node has applied the entry,
  so a write sent to any member is carried out, and a read on the same member right after
  it sees it. A write that needs a job this member does not know yet commits a barrier
  first (:func:`_read_for_write`): a job or run created through another member is never
  a 404 there.
  No leader, or no commit within the deadline: 503 (``no_leader``,
  ``timeout``: the outcome is then unknown; every write here is safe to repeat).
* Every error is JSON ``{"error": {"code", "message"}}``: 400 invalid input, 401/403 from
  the auth middleware, 404 unknown job/run/route, 405 wrong method, 409 conflict, 503 no
  leader. Anything a client sends maps to a 4xx; a 500 means a bug here, and is logged.
  What aiohttp answers before any handler runs (unparsable requests, lines too long) is
  JSON too (``server.py``); request bodies are size-checked (``http.read_body``).
* A read token sees job secrets redacted (``redact.py``); a ``PUT`` carrying the marker
  is refused.
* ``GET /v1/openapi.json`` is built from the routes actually registered, so the document
  always matches what the node serves (``raftcron/api/openapi.py`` holds the operations).

Other modules add their routes through ``register(app)`` (locks, metrics, dashboard) and
auth puts its middleware first; :func:`build_app` calls them. They answer errors in the
same JSON shape themselves (:func:`error`); this module's middleware covers the rest.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar
from zoneinfo import ZoneInfo

from aiohttp import web
from aiohttp.typedefs import Handler

from raftcron.accounts import AccountError
from raftcron.accounts import resolve as resolve_account
from raftcron.api import audit, auth, dashboard, locks, metrics, openapi
from raftcron.api import members as members_api
from raftcron.api import membership as membership_api
from raftcron.api import snapshot as snapshot_api
from raftcron.api.http import (
    NODE_KEY,
    ApiProblem,
    commit,
    error,
    invalid,
    printable,
    refuse_redacted,
    rejected,
    wire_int,
)
from raftcron.api.http import json_response as _json
from raftcron.api.http import read_body as _body
from raftcron.api.redact import redact_table, scrub, secrets_of
from raftcron.config import ConfigError, job_spec_from_mapping, job_warnings
from raftcron.core import commands as c
from raftcron.core.jobfields import duration_text as duration_text
from raftcron.core.jobfields import spec_table as spec_table
from raftcron.core.jobfields import spec_view
from raftcron.core.model import (
    BACKFILL_MAX_RATE,
    BACKFILL_MIN_RATE,
    BUFFERED,
    FINAL_STATUSES,
    KILLED,
    LIVE_STATUSES,
    PENDING,
    TRIGGER_MANUAL,
    Backfill,
    Job,
    JobSpec,
    Run,
    jitter_offset_ms,
)
from raftcron.core.planner import (
    backfill_next,
    next_fire_ms,
    place,
    placeable,
    placement_fires,
    schedule_of,
)
from raftcron.core.results import Reject
from raftcron.core.runkey import RunKey
from raftcron.core.state import UNSCHEDULABLE, Ok, PlanOutcome, Rejected, manual_run_id
from raftcron.durations import quoted
from raftcron.membership import count_problem
from raftcron.raft.node import RaftStatus
from raftcron.timefmt import rfc3339

if TYPE_CHECKING:
    from raftcron.api.port import ClusterPort
    from raftcron.core.state import State

logger = logging.getLogger(__name__)

MAX_LIMIT: Final = 1000
DEFAULT_RUNS_LIMIT: Final = 100
DEFAULT_NEXT_COUNT: Final = 5
_T = TypeVar("_T")
MANUAL_WINDOW_MS: Final = 86_400_000  # a trigger's scheduled_at may be this far from now
RUN_STATUSES: Final = (BUFFERED, PENDING, *sorted(LIVE_STATUSES), *sorted(FINAL_STATUSES))
MAX_NOTE: Final = 500
_LAST_MS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
# Instants the API takes (backfill ranges, previews): 1970-01-01 .. 9999-12-31 (UTC).
_FIRST_MS: Final = 0
_BACKFILL_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")


# --------------------------------------------------------------------------- responses


def _ts(ms: int | None) -> str | None:
    return None if ms is None else rfc3339(ms)


# --------------------------------------------------------------------------- JSON views


def run_json(
    run: Run, *, output: bool = False, kill: str = "", secrets: list[str] | None = None
) -> dict[str, Any]:
    """``secrets``: values of the job's definition a read token must not see, replaced
    in the reason and the output (``raftcron.api.redact``)."""
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
    if run.instances != 1:
        body["instance"] = run.instance
        body["instances"] = run.instances
    if run.last_scheduled_ms is not None:
        body["last_scheduled_at"] = rfc3339(run.last_scheduled_ms)
    if run.parents:  # a dependency run: the parents' run ids (their last attempts)
        body["parents"] = list(run.parents)
    if kill:
        body["kill"] = kill
    if output:
        body["output"] = run.output
    if secrets:
        body["reason"] = scrub(run.reason, secrets)
        if output:
            body["output"] = scrub(run.output, secrets)
    return body


def fire_json(ms: int, zone: ZoneInfo) -> dict[str, Any]:
    local = datetime.fromtimestamp(ms / 1000, zone)
    return {"utc": rfc3339(ms), "local": local.isoformat(timespec="seconds"), "at_ms": ms}


def next_fires(job: Job, after_ms: int, count: int) -> list[int]:
    if not job.spec.schedule:  # runs after other jobs: no fires of its own
        return []
    return schedule_of(job.spec, job.created_ms).fires_between(after_ms, _LAST_MS, count)


def job_json(
    job: Job, now_ms: int, last: Run | None, live: list[str], *, redact: bool = False
) -> dict[str, Any]:
    """The job view; ``redact`` (a read token): its secrets replaced by the marker."""
    spec = job.spec
    secrets = secrets_of(spec) if redact else None
    offset = jitter_offset_ms(spec.name, spec.jitter_ms)
    upcoming = next_fire_ms(job, now_ms)
    return {
        **spec_view(spec),  # the spec's keys (the field table's ``api`` column)
        "jitter_offset_ms": offset,
        "paused": job.paused,
        "pause_note": job.pause_note,
        "source": job.source,
        "watermark": _ts(job.watermark_ms) if job.watermark_ms else None,
        "created_at": _ts(job.created_ms),
        "updated_at": _ts(job.updated_ms),
        "next_fire": rfc3339(upcoming) if upcoming is not None else None,
        "last_run": None if last is None else run_json(last, secrets=secrets),
        "running": sorted(live),
        "buffered": [rid for rid, _ in job.buffered],
        "backfill": backfill_json(job),
        "pending_retries": [
            {"run": p.run, "attempt": p.attempt, "due_at": rfc3339(p.due_ms)} for p in job.retry
        ],
        # dependency fires waiting for a node, and fan-in fires waiting for more parents
        "dependency_fires": [rid for rid, _ in job.deps],
        "waiting_parents": [
            {
                "scheduled_at": rfc3339(w.scheduled_at_ms),
                "settled": {p: {"run": r, "status": st} for p, r, st in w.settled},
                "waiting_for": [p for p in spec.after if p not in {x[0] for x in w.settled}],
            }
            for w in job.waiting
        ],
        "spec": redact_table(spec_table(spec)) if redact else spec_table(spec),
        # why the leader could not compute its fires (they are recorded missed until a
        # PUT or a resume clears it), or None
        "broken": job.broken or None,
        "broken_at": _ts(job.broken_ms) if job.broken else None,
    }


def backfill_json(job: Job, bf: Backfill | None = None) -> dict[str, Any] | None:
    """``job``'s backfill in progress (or ``bf``, e.g. one just cancelled)."""
    bf = bf or job.backfill
    if bf is None:
        return None
    nxt = backfill_next(replace(job, backfill=bf))
    return {
        "id": bf.id,
        "from": rfc3339(bf.from_ms),
        "to": rfc3339(bf.to_ms),
        "rate": bf.rate,
        "total": bf.total,
        "done": bf.done,
        "next": None if nxt is None else rfc3339(nxt),
        "requested_at": rfc3339(bf.requested_ms),
    }


def status_json(node: ClusterPort) -> dict[str, Any]:
    st = node.status()
    # pysyncobj keeps naming the last leader it knew; a cut-off node must not report a
    # leader it cannot reach (the same rule as /health).
    leader = node.node_name(st.leader) if leader_reachable(st) else None
    match = dict(st.match_index)
    members = []
    for n in node.members():  # (the replicated ones once seeded: raftcron/membership.py)
        addr = str(n.raft)
        is_self = n.name == node.name
        healthy = is_self or addr in st.connected  # reachable from this node
        member: dict[str, Any] = {
            "name": n.name,
            "raft": addr,
            "api": f"{node.api_scheme}://{n.api}",
            "role": "leader" if leader == n.name else "follower",
            "healthy": healthy,
            "self": is_self,
        }
        if st.is_leader and not is_self and addr in match:
            member["match_index"] = match[addr]
            member["lag"] = max(0, st.commit_index - match[addr])
        elif st.is_leader and is_self:
            member["lag"] = 0
        members.append(member)
    members_api.add_drains(node, members)
    config = members_api.add_config(node, members)
    config["membership_file_disagrees"] = node.membership.view()["file_disagrees"]
    tot = node.read(lambda s: s.totals(paused=False))
    counts = (tot.jobs, tot.runs, tot.leases, tot.fence, tot.stale_rejections)
    return {
        "node": node.name,
        "version": node.metrics.version,  # this node's raftcron (`raftcron version` asks each)
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
        "executing": node.executing(),
        "fsyncs": node.fsync_count(),
        "leader_changes": node.leader_changes,
        **config,
    }


# --------------------------------------------------------------------------- input


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    return wire_int(raw, f"query parameter {name}", lo, hi)


def parse_instant(value: object, what: str) -> int:
    """Epoch ms from RFC 3339 text (with ``Z`` or an offset) or an integer of epoch ms
    (ASCII digits), within 1970-01-01..9999-12-31 UTC; 400 otherwise."""
    ms = _instant(value, what)
    if not _FIRST_MS <= ms <= _LAST_MS:
        invalid(
            f"{what} must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z "
            f"(epoch ms 0..{_LAST_MS}), got {printable(str(value), 60)}"
        )
    return ms


def _instant(value: object, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]{1,30}\s*", value):
        return int(value)
    if not isinstance(value, str):
        invalid(f"{what} must be an RFC 3339 time, got {type(value).__name__}")
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        shown = printable(repr(value), 80)
        invalid(f"{what}: {shown} is not an RFC 3339 time (e.g. 2026-03-29T00:00:00Z)")
    if dt.tzinfo is None:
        invalid(f"{what}: {printable(repr(value), 80)} has no UTC offset (append Z or e.g. +02:00)")
    try:
        return int(dt.timestamp() * 1000)
    except (OverflowError, ValueError):  # an offset that moves it past year 1 or 9999
        invalid(f"{what}: {printable(repr(value), 80)} is outside the years 1970-9999")


def _job_or_404(node: ClusterPort, name: str) -> tuple[Job, Run | None, list[str]]:
    view = node.read(lambda s: s.job_view(name))
    if view is None:
        raise ApiProblem(404, "unknown_job", f"no job named {name!r}")
    return view


async def _read_for_write(node: ClusterPort, read: Callable[[State], _T | None]) -> _T | None:
    """``read`` of the state a write acts on (a job, a run). What this member does not
    know yet may only lag (created through another member a moment ago, not yet applied
    here): it then commits a barrier, after which it has applied everything committed
    before this request, and reads again. The barrier costs a commit on this path only."""
    got = node.read(read)
    if got is None:
        barrier = c.Barrier(at_ms=node.clock.wall_ms(), node=node.name, nonce=secrets.token_hex(8))
        await _propose(node, barrier)
        got = node.read(read)
    return got


async def _job_for_write(node: ClusterPort, name: str) -> tuple[Job, Run | None, list[str]]:
    """The job a write acts on, or 404 (never only because this member lags)."""
    view = await _read_for_write(node, lambda s: s.job_view(name))
    if view is None:
        raise ApiProblem(404, "unknown_job", f"no job named {name!r}")
    return view


def leader_reachable(st: RaftStatus) -> bool:
    """The status names a leader this node can reach (itself, or a connected peer)."""
    return st.leader is not None and (st.is_leader or st.leader in st.connected)


def sees_leader(node: ClusterPort) -> bool:
    return leader_reachable(node.status())


async def _propose(node: ClusterPort, cmd: c.Command) -> Ok:
    retry = {"Retry-After": "1"}
    if not sees_leader(node):  # fail fast: a forwarded proposal would only wait for the deadline
        raise ApiProblem(
            503,
            "no_leader",
            f"{node.name} sees no reachable leader (an election, or no quorum); retry later",
            retry,
        )
    res = await commit(node, cmd, headers=retry)
    if isinstance(res, Rejected):
        raise rejected(res)
    return res


def _refuse_config_job(node: ClusterPort, name: str, verb: str) -> None:
    job = node.read(lambda s: s.job(name))
    source = None if job is None else job.source
    if source == "embedded":
        raise ApiProblem(
            409,
            "embedded_job",
            f"job {name!r} is an embedded Python job registered by the application; {verb} "
            "it in the application's code, or pause it through the API",
        )
    if source == "config":
        raise ApiProblem(
            409,
            "config_job",
            f"job {name!r} is defined in the cluster config file; {verb} it there and run "
            "`raftcron reload` on the leader, or pause it through the API",
        )


# --------------------------------------------------------------------------- handlers


async def get_status(request: web.Request) -> web.Response:
    return _json(status_json(request.app[NODE_KEY]))


def _cursor(before: str, run_of: Callable[[str], Run | None]) -> tuple[int, str]:
    """The sort key runs must be below: ``before`` is a run id or a scheduled_at in ms."""
    if re.fullmatch(r"[0-9]{1,30}", before):  # (not isdigit(): it takes "¹" too)
        return int(before), ""
    run = run_of(before)
    if run is not None:
        return run.scheduled_at_ms, run.id
    key = RunKey.parse(before)
    if key is None:
        invalid(f"query parameter before: {before!r} is neither a run id nor a time in ms")
    return key.scheduled_at_ms, before


async def get_runs(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    limit = _int_param(request, "limit", DEFAULT_RUNS_LIMIT, 1, MAX_LIMIT)
    job = request.query.get("job") or None
    on = request.query.get("node") or None
    statuses: set[str] | None = None
    if request.query.get("status"):
        statuses = {s.strip() for s in request.query["status"].split(",") if s.strip()}
        bad = sorted(statuses - set(RUN_STATUSES))
        if bad:
            invalid(
                f"query parameter status: unknown {', '.join(bad)} (use {', '.join(RUN_STATUSES)})"
            )
    before = request.query.get("before") or None
    with_output = request.query.get("output") in ("1", "true")
    redact = not auth.sees_secrets(request)

    def pick(s: State) -> tuple[list[Run], tuple[int, str] | None, dict[str, list[str]]]:
        bound = None if before is None else _cursor(before, s.run)
        hidden = {j.spec.name: secrets_of(j.spec) for j in s.job_list()} if redact else {}
        return s.run_list(), bound, hidden

    runs, bound, hidden = node.read(pick)
    runs = [
        r
        for r in runs
        if (job is None or r.job == job)
        and (on is None or r.node == on)
        and (statuses is None or r.status in statuses)
    ]
    total = len(runs)
    if bound is not None:
        runs = [r for r in runs if (r.scheduled_at_ms, r.id) < bound]
    runs.sort(key=lambda r: (r.scheduled_at_ms, r.id), reverse=True)
    page = runs[:limit]
    return _json(
        {
            "runs": [run_json(r, output=with_output, secrets=hidden.get(r.job)) for r in page],
            "total": total,
            "next": page[-1].id if len(runs) > limit else None,
        }
    )


async def get_run(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    rid = request.match_info["run_id"]
    redact = not auth.sees_secrets(request)

    def pick(s: State) -> tuple[Run | None, str, list[str] | None]:
        run = s.run(rid)
        job = s.job(run.job) if run is not None and redact else None
        return run, _kill_of(s, rid), None if job is None else secrets_of(job.spec)

    run, kill, secrets = node.read(pick)
    if run is None:
        raise ApiProblem(404, "unknown_run", f"no run {printable(repr(rid), 80)} in the ledger")
    return _json(run_json(run, output=True, kill=kill, secrets=secrets))


def _kill_of(s: State, rid: str) -> str:
    lease = s.lease(rid)
    return "" if lease is None else lease.kill


async def kill_run(request: web.Request) -> web.Response:
    """Stop a run (committed on the run's lease; the executor holding it stops the process
    group). 202 while it stops, 200 once it is killed; 409 ``not_running`` if it ended."""
    node = request.app[NODE_KEY]
    rid = request.match_info["run_id"]
    raw = await _body(request, ("reason", "hard"))
    reason = raw.get("reason") or ""
    hard = raw.get("hard", False)
    if not isinstance(reason, str) or len(reason) > MAX_NOTE:
        invalid(f"request body: reason must be a string of at most {MAX_NOTE} characters")
    if not isinstance(hard, bool):
        invalid("request body: hard must be true or false")
    if await _read_for_write(node, lambda s: s.run(rid)) is None:
        raise ApiProblem(404, "unknown_run", f"no run {printable(repr(rid), 80)} in the ledger")
    why = "killed through the API" + (f": {reason}" if reason else "")
    res = await _propose(
        node, c.Kill(at_ms=node.clock.wall_ms(), run_id=rid, reason=why, hard=hard)
    )
    run = node.read(lambda s: s.run(rid))
    logger.info(
        "kill of %s through the API on %s: %s (%s)", rid, node.name, res.value, printable(why)
    )
    body = {
        "run": rid,
        "job": run.job if run is not None else "",
        "status": run.status if run is not None else KILLED,
        "result": "killed" if res.value == KILLED else "killing",
        "reason": why,
    }
    return _json(body, 200 if res.value == KILLED else 202)


async def get_jobs(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]

    def views(s: State) -> list[tuple[Job, Run | None, list[str]]]:
        out = [s.job_view(name) for name in s.job_names()]
        return [v for v in out if v is not None]

    now = node.clock.wall_ms()
    redact = not auth.sees_secrets(request)
    views_ = node.read(views)
    return _json({"jobs": [job_json(v[0], now, v[1], v[2], redact=redact) for v in views_]})


async def get_job(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    job, last, live = _job_or_404(node, request.match_info["name"])
    now = node.clock.wall_ms()
    body = job_json(job, now, last, live, redact=not auth.sees_secrets(request))
    zone = ZoneInfo(job.spec.timezone)
    offset = jitter_offset_ms(job.spec.name, job.spec.jitter_ms)
    fires = next_fires(job, max(job.watermark_ms, now - offset), DEFAULT_NEXT_COUNT)
    body["next_fires"] = [fire_json(t, zone) for t in fires]
    return _json(body)


async def get_next(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    job, _, _ = _job_or_404(node, request.match_info["name"])
    count = _int_param(request, "count", DEFAULT_NEXT_COUNT, 1, MAX_LIMIT)
    raw_from = request.query.get("from")
    start = node.clock.wall_ms() if not raw_from else parse_instant(raw_from, "from")
    zone = ZoneInfo(job.spec.timezone)
    return _json(
        {
            "job": job.spec.name,
            "schedule": job.spec.schedule,
            "timezone": job.spec.timezone,
            "from": rfc3339(start),
            "fires": [fire_json(t, zone) for t in next_fires(job, start, count)],
        }
    )


async def put_job(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    name = request.match_info["name"]
    raw = await _body(request)
    if not raw:
        invalid("request body must be a JSON object with the keys of a [[jobs]] table")
    refuse_redacted(raw)
    raw.setdefault("name", name)
    if raw["name"] != name:
        invalid(
            f"request body: name {printable(repr(raw['name']), 80)} does not match the URL "
            f"({printable(repr(name), 80)})"
        )
    try:
        spec = job_spec_from_mapping(
            raw, "request body", default_lease_ms=node.config.cluster.lease_ms
        )
    except ConfigError as exc:
        invalid(str(exc))
    await _check_process(node, spec)
    _refuse_config_job(node, name, "change")
    res = await _propose(node, c.PutJob(at_ms=node.clock.wall_ms(), spec=spec, source="api"))
    warnings = job_warnings(spec)
    short = count_problem(spec, node.members())  # (the replicated members once seeded)
    if short is not None:
        warnings = [*warnings, short]
    body = {"job": name, "result": res.value, "warnings": warnings}
    return _json(body, 201 if res.value == "created" else 200)


async def _check_process(node: ClusterPort, spec: JobSpec) -> None:
    """400 for a job this node could never start: its ``user``/``group`` is unknown here
    or the agent cannot switch to it, or an ``env_passthrough`` variable holds the cluster
    secret or an API token here. (Checked where the PUT lands; a node that runs the job
    checks again, and fails the run saying why.)"""
    if spec.user is not None or spec.group is not None:
        try:
            await asyncio.to_thread(resolve_account, spec.user, spec.group)
        except AccountError as exc:
            invalid(f"request body: {exc.key}: {exc} on node {node.name} ({exc.fix})")
    for var, what in node.passthrough_leaks(spec.env_passthrough):
        invalid(
            f"request body: env_passthrough: {quoted(var)} holds {what} on node {node.name} (a job "
            "must never see it: remove it from env_passthrough)"
        )


async def delete_job(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    name = request.match_info["name"]
    _refuse_config_job(node, name, "delete")
    await _propose(node, c.DeleteJob(at_ms=node.clock.wall_ms(), name=name))
    return _json({"job": name, "result": "deleted"})


async def _set_paused(request: web.Request, paused: bool) -> web.Response:
    node = request.app[NODE_KEY]
    name = request.match_info["name"]
    raw = await _body(request, ("note",) if paused else ())
    note = raw.get("note", "")
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        invalid(f"request body: note must be a string of at most {MAX_NOTE} characters")
    await _propose(
        node, c.SetPaused(at_ms=node.clock.wall_ms(), name=name, paused=paused, note=note)
    )
    if paused:
        logger.info(
            "job %s paused through the API on %s: %s", name, node.name, printable(note) or "-"
        )
    job, last, live = _job_or_404(node, name)
    redact = not auth.sees_secrets(request)
    return _json(job_json(job, node.clock.wall_ms(), last, live, redact=redact))


async def pause_job(request: web.Request) -> web.Response:
    return await _set_paused(request, True)


async def resume_job(request: web.Request) -> web.Response:
    return await _set_paused(request, False)


async def trigger_job(request: web.Request) -> web.Response:
    """A manual fire: claimed now on the least-loaded matching node, unless the job's
    overlap policy (or its tags) says no: then it is buffered (``buffer_one``/``buffer_all``,
    it runs when the live run ends) or recorded as skipped."""
    node = request.app[NODE_KEY]
    name = request.match_info["name"]
    raw = await _body(request, ("scheduled_at",))
    now = node.clock.wall_ms()
    at = now
    if raw.get("scheduled_at") is not None:
        at = parse_instant(raw["scheduled_at"], "scheduled_at")
        if abs(at - now) > MANUAL_WINDOW_MS:
            invalid("scheduled_at must be within a day of now (it labels a manual fire)")
    job, _, _ = await _job_for_write(node, name)
    rid = manual_run_id(name, at)
    done = node.read(lambda s: s.run(rid))
    if done is None:
        # every instance of the fire (count), placed like a scheduled fire's
        load, live, drained = node.read(
            lambda s: (s.load_by_node(), s.live_by_job(), s.drained_members())
        )
        per_node: dict[str, int] = {}
        for _, on in live.get(name, ()):
            per_node[on] = per_node.get(on, 0) + 1
        nodes = placeable(node.live_nodes(), drained)
        chosen, n = place(job.spec, rid, nodes, load, per_node)
        fires = placement_fires(job.spec, at, TRIGGER_MANUAL, chosen, n)
        res = await _propose(node, c.Plan(at_ms=now, fires=tuple(fires)))
        outcome = res.value
        assert isinstance(outcome, PlanOutcome)
        each: dict[str, dict[str, Any]] = {}
        for rid_, fence, on in outcome.granted:
            logger.info("manual fire of %s: %s fence=%d on %s", name, rid_, fence, on)
            each[rid_] = {"status": "claimed", "reason": "", "node": on, "fence": fence}
        for rid_, reason in outcome.buffered:
            logger.info("manual fire of %s: %s buffered: %s", name, rid_, reason)
            each[rid_] = {"status": BUFFERED, "reason": reason, "node": None, "fence": None}
        for rid_, reason in outcome.skipped:
            log = logger.warning if reason.startswith(UNSCHEDULABLE) else logger.info
            log("manual fire of %s: %s skipped: %s", name, rid_, reason)
            each[rid_] = {"status": "skipped", "reason": reason, "node": None, "fence": None}
        if rid in each:
            body = _trigger_body(name, rid, at, **each[rid])
            if n > 1:
                body["instances"] = [{"run": r, **v} for r, v in sorted(each.items(), key=_inst)]
            return _json(body, 202)
        for _, _, code in outcome.rejected:
            if code == Reject.UNKNOWN_JOB:
                raise ApiProblem(404, "unknown_job", f"no job named {name!r}")
        done = node.read(lambda s: s.run(rid))
        if done is None:  # e.g. a duplicate whose record was since trimmed
            raise ApiProblem(409, "duplicate", f"{rid} was already triggered")
    return _trigger_json(
        name, done.id, done.status, done.reason, done.node or None, done.fence or None, at, 200
    )


async def start_backfill(request: web.Request) -> web.Response:
    """Run the job's fires in ``[from, to]`` again, one at a time, at most ``rate`` per
    second (default 1), each recorded with trigger ``backfill``; 202 with the backfill.
    ``id`` (optional) makes the request idempotent: repeating it returns that backfill."""
    node = request.app[NODE_KEY]
    name = request.match_info["name"]
    raw = await _body(request, ("from", "to", "rate", "id"))
    for key in ("from", "to"):
        if raw.get(key) is None:
            invalid(f"request body: {key} is required (RFC 3339, e.g. 2026-11-27T00:00:00Z)")
    frm = parse_instant(raw["from"], "request body: from")
    to = parse_instant(raw["to"], "request body: to")
    rate = raw.get("rate", 1)
    if not isinstance(rate, int | float) or isinstance(rate, bool):
        invalid("request body: rate must be a number of fires per second, e.g. 0.5")
    if not BACKFILL_MIN_RATE <= rate <= BACKFILL_MAX_RATE:  # (NaN fails too)
        invalid(
            f"request body: rate must be between {BACKFILL_MIN_RATE:.3g} (one fire a day) and "
            f"{BACKFILL_MAX_RATE:g} fires per second, got {printable(repr(rate), 40)}"
        )
    bid = raw.get("id") or secrets.token_hex(4)
    if not isinstance(bid, str) or not _BACKFILL_ID.fullmatch(bid):
        invalid("request body: id must be 1 to 32 letters, digits, '_' or '-'")
    await _job_for_write(node, name)
    cmd = c.StartBackfill(
        at_ms=node.clock.wall_ms(), job=name, id=bid, from_ms=frm, to_ms=to, rate=float(rate)
    )
    res = await _propose(node, cmd)
    assert isinstance(res.value, Backfill)
    logger.info(
        "backfill %s of %s through the API on %s: %d fire(s) %s..%s at %g/s",
        bid, name, node.name, res.value.total, rfc3339(frm), rfc3339(to), rate,
    )  # fmt: skip
    job, _, _ = _job_or_404(node, name)
    return _json({"job": name, "backfill": backfill_json(job, res.value)}, 202)


async def cancel_backfill(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    name = request.match_info["name"]
    res = await _propose(node, c.CancelBackfill(at_ms=node.clock.wall_ms(), job=name))
    assert isinstance(res.value, Backfill)
    logger.info("backfill %s of %s cancelled through the API on %s", res.value.id, name, node.name)
    job, _, _ = _job_or_404(node, name)
    return _json({"job": name, "backfill": backfill_json(job, res.value), "cancelled": True})


def _inst(item: tuple[str, Any]) -> int:
    """Sort key of a run id by its instance (``...~K``; 1 without the suffix)."""
    key = RunKey.parse(item[0])
    return 1 if key is None else key.instance


def _trigger_body(
    job: str, rid: str, at: int, *, status: str, reason: str, node: str | None, fence: int | None
) -> dict[str, Any]:
    return {
        "run": rid,
        "job": job,
        "status": status,
        "reason": reason,
        "node": node,
        "fence": fence,
        "scheduled_at": rfc3339(at),
        "duplicate": False,
    }


def _trigger_json(
    job: str,
    rid: str,
    status: str,
    reason: str,
    on: str | None,
    fence: int | None,
    at: int,
    http_status: int,
) -> web.Response:
    return _json(
        {
            "run": rid,
            "job": job,
            "status": status,
            "reason": reason,
            "node": on,
            "fence": fence,
            "scheduled_at": rfc3339(at),
            "duplicate": http_status == 200,
        },
        http_status,
    )


async def get_openapi(request: web.Request) -> web.Response:
    return _json(openapi.document(request.app))


# --------------------------------------------------------------------------- errors


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return error(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed on {request.path} (allowed: {allowed})",
            headers,
        )
    if isinstance(exc, web.HTTPNotFound):
        return error(404, "not_found", f"no such endpoint: {request.method} {request.path}")
    code = re.sub(r"[^a-z0-9]+", "_", (exc.reason or "error").lower()).strip("_")
    text = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    return error(exc.status, code, text or exc.reason, headers)


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiProblem as exc:
        return error(exc.status, exc.code, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        return _http_error(request, exc)
    except asyncio.CancelledError:
        raise
    except Exception:
        node = request.app[NODE_KEY]
        logger.exception(
            "node %s: %s %s failed", node.name, request.method, printable(request.path)
        )
        return error(500, "internal", f"internal error on node {node.name} (see its log)")


# --------------------------------------------------------------------------- app


def build_app(node: ClusterPort) -> web.Application:
    app = web.Application(middlewares=[errors_as_json])
    app[NODE_KEY] = node
    r = app.router
    r.add_get("/v1/status", get_status)
    r.add_get("/v1/jobs", get_jobs)
    r.add_get("/v1/jobs/{name}", get_job)
    r.add_put("/v1/jobs/{name}", put_job)
    r.add_delete("/v1/jobs/{name}", delete_job)
    r.add_get("/v1/jobs/{name}/next", get_next)
    r.add_post("/v1/jobs/{name}/trigger", trigger_job)
    r.add_post("/v1/jobs/{name}/pause", pause_job)
    r.add_post("/v1/jobs/{name}/resume", resume_job)
    r.add_post("/v1/jobs/{name}/backfill", start_backfill)
    r.add_delete("/v1/jobs/{name}/backfill", cancel_backfill)
    r.add_get("/v1/runs", get_runs)
    r.add_get("/v1/runs/{run_id}", get_run)
    r.add_post("/v1/runs/{run_id}/kill", kill_run)
    r.add_get("/v1/openapi.json", get_openapi)
    r.add_get("/health", members_api.health)
    r.add_get("/health/leader", members_api.health_leader)
    members_api.register(app)
    membership_api.register(app)
    snapshot_api.register(app)
    locks.register(app)
    dashboard.register(app)
    metrics.register(app)
    auth.register(app)  # it puts its middleware first
    audit.register(app)  # last: outside auth, so refused writes are audited too
    return app
