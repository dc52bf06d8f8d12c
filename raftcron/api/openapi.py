"""The OpenAPI 3.1 document served at ``GET /v1/openapi.json``.

:data:`OPERATIONS` describes every operation any API module can register, keyed by
``(METHOD, path template)``. :func:`document` lists exactly the routes registered on the
application it is given (HEAD is implied by GET and not listed), so the document never
names an endpoint the node does not serve. A route registered without an entry here is
left out and logged; ``tests/cluster/test_api.py`` checks that both sets are equal. The
component schemas are in ``raftcron.api.schemas``.

Pure data and one function: no I/O.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Final

from aiohttp import web

from raftcron.api.schemas import (
    _READ_ERRORS,
    _WRITE_ERRORS,
    _body,
    _errors,
    _ok,
    _query,
    _ref,
)
from raftcron.api.schemas import RESPONSES as RESPONSES
from raftcron.api.schemas import SCHEMAS as SCHEMAS

logger = logging.getLogger(__name__)

__all__ = ["OPERATIONS", "RESPONSES", "SCHEMAS", "document", "registered_operations"]

_RUN_STATUS_LIST: Final = (
    "buffered, pending, claimed, running, succeeded, failed, timed_out, lost, killed, missed, "
    "skipped, paused"
)

OPERATIONS: Final[dict[tuple[str, str], dict[str, Any]]] = {
    ("GET", "/v1/status"): {
        "summary": "this node, the leader, term, commit index, members with health and lag",
        "responses": _ok("status", _ref("Status")) | _errors(*_READ_ERRORS),
    },
    ("GET", "/v1/jobs"): {
        "summary": "every job with its next fire and last outcome",
        "responses": _ok(
            "jobs",
            {
                "type": "object",
                "required": ["jobs"],
                "properties": {"jobs": {"type": "array", "items": _ref("Job")}},
            },
        )
        | _errors(*_READ_ERRORS),
    },
    ("GET", "/v1/jobs/{name}"): {
        "summary": "one job: definition, paused, watermark, last run, next 5 fires",
        "responses": _ok("the job", _ref("Job")) | _errors(401, 404),
    },
    ("PUT", "/v1/jobs/{name}"): {
        "summary": "create or replace a job (the same validation as the config file)",
        "requestBody": _body(_ref("JobTable")),
        "responses": _ok("updated or unchanged", _ref("PutResult"))
        | _ok("created", _ref("PutResult"), "201")
        | _errors(400, 401, 403, 409, 503),
    },
    ("DELETE", "/v1/jobs/{name}"): {
        "summary": "delete a job (409 for a job of the config file)",
        "responses": _ok("deleted", _ref("PutResult")) | _errors(401, 403, 404, 409, 503),
    },
    ("GET", "/v1/jobs/{name}/next"): {
        "summary": "preview fire times in the job's time zone, DST transitions included",
        "parameters": [
            _query(
                "from",
                "RFC 3339 time (with Z or an offset) or epoch ms; fires strictly after it "
                "(default now)",
                {"type": "string"},
            ),
            _query(
                "count",
                "how many fires (default 5)",
                {"type": "integer", "minimum": 1, "maximum": 1000, "default": 5},
            ),
        ],
        "responses": _ok("fire times", _ref("NextFires")) | _errors(400, 401, 404),
    },
    ("POST", "/v1/jobs/{name}/trigger"): {
        "summary": "fire the job now; obeys overlap (skip: recorded and answered as skipped; "
        "buffer_one/buffer_all: buffered, run when the live run ends, or skipped if full)",
        "requestBody": _body(_ref("TriggerRequest"), required=False),
        "responses": _ok("claimed, buffered or skipped", _ref("TriggerResult"), "202")
        | _ok("a repeat of an earlier trigger with the same scheduled_at", _ref("TriggerResult"))
        | _errors(*_WRITE_ERRORS),
    },
    ("POST", "/v1/jobs/{name}/pause"): {
        "summary": "pause a job (its fires, and any it had buffered, are recorded as paused; "
        "consecutive ones as one record with a count); optional note",
        "requestBody": _body(_ref("PauseRequest"), required=False),
        "responses": _ok("the job", _ref("Job")) | _errors(400, 401, 403, 404, 503),
    },
    ("POST", "/v1/jobs/{name}/resume"): {
        "summary": "resume a paused job (fires missed while paused are not back-filled)",
        "responses": _ok("the job", _ref("Job")) | _errors(400, 401, 403, 404, 503),
    },
    ("POST", "/v1/jobs/{name}/backfill"): {
        "summary": "run the job's fires in [from, to] again, one at a time, never beside "
        "another run of the job, at most rate per second; each run has trigger backfill "
        "(one backfill per job at a time; at most 10,000 fires)",
        "requestBody": _body(_ref("BackfillRequest")),
        "responses": _ok("the backfill", _ref("BackfillResult"), "202")
        | _errors(400, 401, 403, 404, 409, 503),
    },
    ("DELETE", "/v1/jobs/{name}/backfill"): {
        "summary": "stop the job's backfill (runs already claimed go on)",
        "responses": _ok("the backfill as it was", _ref("BackfillResult"))
        | _errors(401, 403, 404, 503),
    },
    ("GET", "/v1/runs"): {
        "summary": "the run ledger, newest first, filtered and paginated",
        "parameters": [
            _query("job", "only this job", {"type": "string"}),
            _query("node", "only runs granted to this node", {"type": "string"}),
            _query("status", f"comma list of {_RUN_STATUS_LIST}", {"type": "string"}),
            _query(
                "limit",
                "page size (default 100)",
                {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
            ),
            _query(
                "before",
                "cursor: a run id (the previous page's next) or a scheduled_at in epoch ms",
                {"type": "string"},
            ),
            _query("output", "1 to include output tails", {"enum": ["0", "1", "true", "false"]}),
        ],
        "responses": _ok("a page of runs", _ref("RunPage")) | _errors(400, 401),
    },
    ("GET", "/v1/runs/{run_id}"): {
        "summary": "one run with its output tail",
        "responses": _ok("the run", _ref("Run")) | _errors(401, 404),
    },
    ("POST", "/v1/runs/{run_id}/kill"): {
        "summary": "stop a run: the node running it sends SIGTERM to its process group, then "
        "SIGKILL after the grace (hard: SIGKILL at once), and records it as killed (never "
        "retried); a buffered or pending run is recorded as killed at once. If that node is "
        "gone, the lease expiry ends the run (lost). 409 not_running for a finished run",
        "requestBody": _body(_ref("KillRequest"), required=False),
        "responses": _ok(
            "the stop request committed; the run is stopping", _ref("KillResult"), "202"
        )
        | _ok("the run is killed (it had not started, or a repeat)", _ref("KillResult"))
        | _errors(*_WRITE_ERRORS),
    },
    ("GET", "/v1/whoami"): {
        "summary": "the role this request acts with and its token's name (never the token): "
        "what a client such as the dashboard may offer to do",
        "responses": _ok("the caller", _ref("Caller")) | _errors(401),
    },
    ("GET", "/v1/openapi.json"): {
        "summary": "this document",
        "responses": _ok("OpenAPI 3.1", {"type": "object"}) | _errors(401),
    },
    ("GET", "/v1/locks"): {
        "summary": "the named locks currently held",
        "responses": _ok("locks", _ref("LockList")) | _errors(401),
    },
    ("POST", "/v1/locks/{name}"): {
        "summary": "acquire a lock with a TTL, waiting up to wait (FIFO); returns a fence",
        "requestBody": _body(_ref("LockAcquire")),
        "responses": _ok("acquired", _ref("LockGrant"))
        | _errors(400, 401, 403, 503)
        | {
            "409": {
                "$ref": "#/components/responses/Conflict",
                "description": "locked (not acquired within wait), queue_full or request_done",
            }
        },
    },
    ("POST", "/v1/locks/{name}/renew"): {
        "summary": "extend the lock held with this fence (409 stale_fence if it was lost)",
        "requestBody": _body(_ref("LockRenew")),
        "responses": _ok("renewed", _ref("LockGrant")) | _errors(400, 401, 403, 409, 503),
    },
    ("DELETE", "/v1/locks/{name}"): {
        "summary": "release the lock held with this fence (409 stale_fence if it was lost)",
        "parameters": [
            {"name": "fence", "in": "query", "required": True, "schema": {"type": "integer"}}
        ],
        "responses": _ok("released", _ref("LockReleased")) | _errors(400, 401, 403, 409, 503),
    },
    ("GET", "/v1/members"): {
        "summary": "the members (the replicated membership once seeded, else this node's "
        "cluster file's), whether each answers and is in Raft's configuration, the change in "
        "progress, the removed members, and how this node's file disagrees",
        "responses": _ok("the members", _ref("Members")) | _errors(*_READ_ERRORS),
    },
    ("POST", "/v1/members"): {
        "summary": "add a member (admin, on the leader: 409 not_leader elsewhere). One change "
        "at a time (409 change_in_progress); a name or address that clashes is 409 "
        "member_clash; a removed member's name is never reused. Answers once the member is in "
        "Raft's configuration (change.done) or after 8 s; start it with an empty data dir "
        "(the start line, with --cluster-id when the cluster has an id)",
        "requestBody": _body(_ref("MemberAdd")),
        "responses": _ok("added", _ref("MemberAdded"), "201") | _errors(400, 401, 403, 409, 503),
    },
    ("DELETE", "/v1/members/{name}"): {
        "summary": "remove a member for good (admin, on the leader: 409 not_leader elsewhere): "
        "it never votes or runs anything again. 409 no_majority when the members left that "
        "answer are no majority, last_member, change_in_progress; a leader removed hands "
        "leadership off first and stops",
        "parameters": [
            _query(
                "request",
                "idempotency key: a retry with the same key returns the first outcome",
                {"type": "string", "maxLength": 128},
            )
        ],
        "responses": _ok("removed", _ref("MemberRemoved")) | _errors(400, 401, 403, 404, 409, 503),
    },
    ("GET", "/v1/membership/standing"): {
        "summary": "whether member `name` was removed, for that member itself: no token, the "
        "question is sealed with the cluster secret (403 otherwise) and so is the answer "
        "(proof); a member that was down during its removal asks at start and stops",
        "parameters": [
            _query("name", "the member asking", {"type": "string"}),
            _query("nonce", "a fresh random string", {"type": "string"}),
            _query("mac", "HMAC-SHA256 of ask, nonce, name under the secret", {"type": "string"}),
        ],
        "responses": _ok(
            "the member's standing",
            {
                "type": "object",
                "required": ["name", "removed"],
                "properties": {
                    "name": {"type": "string"},
                    "removed": {"type": "boolean"},
                    "member": {
                        "type": "boolean",
                        "description": "a member (or the membership is not seeded yet)",
                    },
                    "proof": {"type": "string"},
                },
            },
        )
        | _errors(403),
    },
    ("GET", "/v1/members/{name}/drain"): {
        "summary": "whether the member is drained, and how far its drain is",
        "responses": _ok("the member's drain", _ref("MemberDrain")) | _errors(401, 404),
    },
    ("POST", "/v1/members/{name}/drain"): {
        "summary": "drain a member: it gets no new runs, its running jobs finish, and if it "
        "leads it hands leadership to another member; stays across its restarts until "
        "undrained (admin)",
        "responses": _ok("drained (see drain.state)", _ref("MemberDrain"))
        | _errors(400, 401, 403, 404, 503),
    },
    ("DELETE", "/v1/members/{name}/drain"): {
        "summary": "undrain a member: it gets new runs again (admin)",
        "responses": _ok("undrained", _ref("MemberDrain")) | _errors(400, 401, 403, 404, 503),
    },
    ("POST", "/v1/members/{name}/reload"): {
        "summary": "re-read the cluster file of this member (it must be the member named): "
        "jobs, tokens, notify settings; on the leader its jobs are reconciled at once. An "
        "invalid file is refused (400 invalid_config, every problem) and the running "
        "configuration stays; another member answers 409 wrong_member (admin)",
        "responses": _ok("reloaded", _ref("Reloaded")) | _errors(400, 401, 403, 404, 409, 503),
    },
    ("POST", "/v1/leader/transfer"): {
        "summary": "hand leadership to another member (Raft TimeoutNow); only on the leader: "
        "409 not_leader elsewhere, naming the leader (admin)",
        "requestBody": _body(_ref("LeaderTransfer"), required=False),
        "responses": _ok("leadership moved", _ref("LeaderTransferred"))
        | _errors(400, 401, 403, 404, 409, 503),
    },
    ("GET", "/v1/snapshot"): {
        "summary": "a backup of the replicated state (jobs, runs, locks, counters) taken at one "
        "applied entry, from the established leader: a file of magic RAFTCRON-BACKUP, one JSON "
        "header line (format, raftcron_version, cluster_id, created_at, leader, counts, "
        "body_bytes, body_sha256) and a msgpack body (docs/operations.md: Back up and "
        "restore). Admin only (it holds secrets); another member answers 409 not_leader "
        "naming the leader",
        "responses": {
            "200": {
                "description": "the backup file (`raftcron snapshot save` writes it as is)",
                "content": {
                    "application/vnd.raftcron.backup": {
                        "schema": {"type": "string", "format": "binary"}
                    }
                },
            }
        }
        | _errors(401, 403, 409),
    },
    ("GET", "/health"): {
        "summary": "200 on a member that sees a leader (a leader: one that has heard from a "
        "majority within an election timeout), whose storage works and whose applied state "
        "is less than cluster.max_apply_lag behind the leader's commit; else 503 with why",
        "security": [{}],
        "responses": _ok("healthy", _ref("Health"))
        | _ok("no leader, failed storage or lagging", _ref("Health"), "503"),
    },
    ("GET", "/health/leader"): {
        "summary": "200 only on the established leader that has heard from a majority within "
        "an election timeout (for load balancers)",
        "security": [{}],
        "responses": _ok("this node leads", _ref("Health"))
        | _ok("not the leader", _ref("Health"), "503"),
    },
    ("GET", "/metrics"): {
        "summary": "Prometheus text exposition",
        "security": [{}],
        "responses": {
            "200": {
                "description": "metrics",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    },
    ("GET", "/"): {
        "summary": "the dashboard (one HTML page)",
        "security": [{}],
        "responses": {
            "200": {
                "description": "the page",
                "content": {"text/html": {"schema": {"type": "string"}}},
            }
        },
    },
}

_PATH_PARAMS: Final = {
    "name": "a job, lock or member name",
    "run_id": "a run id, e.g. backup@1767225600000",
}


_JOB = {"name": "$request.path.name"}
# Links between operations (OpenAPI 3.1 "links"; schemathesis' stateful phase follows
# them): (operation, statuses) -> (link name, target operation, parameters, request body)
LINKS: Final[
    dict[tuple[str, str], tuple[tuple[str, ...], tuple[tuple[str, tuple[str, str], dict[str, str],
                                                             Any], ...]]]
] = {
    ("PUT", "/v1/jobs/{name}"): (
        ("200", "201"),
        (
            ("GetJob", ("GET", "/v1/jobs/{name}"), _JOB, None),
            ("NextFires", ("GET", "/v1/jobs/{name}/next"), _JOB, None),
            ("Trigger", ("POST", "/v1/jobs/{name}/trigger"), _JOB, None),
            ("Pause", ("POST", "/v1/jobs/{name}/pause"), _JOB, None),
            ("Resume", ("POST", "/v1/jobs/{name}/resume"), _JOB, None),
            ("Backfill", ("POST", "/v1/jobs/{name}/backfill"), _JOB, None),
            ("CancelBackfill", ("DELETE", "/v1/jobs/{name}/backfill"), _JOB, None),
            ("DeleteJob", ("DELETE", "/v1/jobs/{name}"), _JOB, None),
        ),
    ),
    ("POST", "/v1/jobs/{name}/trigger"): (
        ("200", "202"),
        (
            ("GetRun", ("GET", "/v1/runs/{run_id}"), {"run_id": "$response.body#/run"}, None),
            ("KillRun", ("POST", "/v1/runs/{run_id}/kill"), {"run_id": "$response.body#/run"},
             None),
        ),
    ),
    ("GET", "/v1/jobs"): (
        ("200",),
        (("GetJob", ("GET", "/v1/jobs/{name}"), {"name": "$response.body#/jobs/0/name"}, None),),
    ),
    ("GET", "/v1/runs"): (
        ("200",),
        (("GetRun", ("GET", "/v1/runs/{run_id}"), {"run_id": "$response.body#/runs/0/id"}, None),),
    ),
    ("POST", "/v1/locks/{name}"): (
        ("200",),
        (
            ("Renew", ("POST", "/v1/locks/{name}/renew"), _JOB,
             {"fence": "$response.body#/fence"}),
            ("Release", ("DELETE", "/v1/locks/{name}"),
             {**_JOB, "fence": "$response.body#/fence"}, None),
        ),
    ),
}  # fmt: skip


def operation_id(method: str, path: str) -> str:
    return (method.lower() + re.sub(r"[^A-Za-z0-9]+", "_", path)).rstrip("_")


def _with_links(
    method: str, path: str, responses: dict[str, Any], present: set[tuple[str, str]]
) -> dict[str, Any]:
    """``responses`` with the links of LINKS to operations in ``present`` added (copies)."""
    statuses, links = LINKS.get((method, path), ((), ()))
    out = dict(responses)
    for status in statuses:
        if status not in out:
            continue
        found: dict[str, Any] = {}
        for name, target, params, body in links:
            if target not in present:
                continue
            link: dict[str, Any] = {"operationId": operation_id(*target), "parameters": params}
            if body is not None:
                link["requestBody"] = body
            found[name] = link
        if found:
            out[status] = {**out[status], "links": found}
    return out


def registered_operations(app: web.Application) -> list[tuple[str, str]]:
    """``(METHOD, path template)`` of every route of ``app`` (HEAD left out)."""
    out = []
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        out.append((route.method, route.resource.canonical))
    return out


def _operation(method: str, path: str, op: dict[str, Any]) -> dict[str, Any]:
    params = [
        {
            "name": p,
            "in": "path",
            "required": True,
            "description": _PATH_PARAMS.get(p, p),
            "schema": {"type": "string"},
        }
        for p in re.findall(r"{(\w+)}", path)
    ]
    out = dict(op)
    out["operationId"] = operation_id(method, path)
    if params or "parameters" in op:
        out["parameters"] = params + list(op.get("parameters", ()))
    return out


def document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document of exactly the routes registered on ``app``."""
    paths: dict[str, dict[str, Any]] = {}
    present = set(registered_operations(app))
    for method, path in sorted(present):
        op = OPERATIONS.get((method, path))
        if op is None:
            logger.warning("openapi: route %s %s has no description; left out", method, path)
            continue
        described = _operation(method, path, op)
        # any other status (408, 413, 431, ...) is an error in the one JSON format
        responses = {**described["responses"], "default": {"$ref": "#/components/responses/Error"}}
        described["responses"] = _with_links(method, path, responses, present)
        paths.setdefault(path, {})[method.lower()] = described
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "raftcron",
            "version": "1",
            "description": "Highly available cron on its own Raft cluster. Every node serves "
            "the whole API; writes sent to a follower are carried out through the leader. "
            'Errors are {"error": {"code", "message"}}.',
        },
        "security": [{"bearer": []}, {}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": SCHEMAS,
            "responses": RESPONSES,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token of [[api.tokens]]: read for GET, admin for writes; "
                    "not needed when the cluster configures no tokens",
                }
            },
        },
    }
