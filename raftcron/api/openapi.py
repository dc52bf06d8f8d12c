"""The OpenAPI 3.1 document served at ``GET /v1/openapi.json``.

:data:`OPERATIONS` describes every operation any API module can register, keyed by
``(METHOD, path template)``. :func:`document` lists exactly the routes registered on the
application it is given (HEAD is implied by GET and not listed), so the document never
names an endpoint the node does not serve. A route registered without an entry here is
left out and logged; ``tests/cluster/test_api.py`` checks that both sets are equal.

Pure data and one function: no I/O.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Final

from aiohttp import web

from raftcron.config import (
    MAX_CPU_LIMIT_S,
    MAX_MEMORY_LIMIT,
    MAX_NOFILE_LIMIT,
    MAX_PASSTHROUGH,
    MAX_STDIN_CHARS,
    MIN_MEMORY_LIMIT,
)
from raftcron.core.model import (
    BACKFILL_MAX_RATE,
    BACKFILL_MIN_RATE,
    CATCHUP_MODES,
    HTTP_METHODS,
    MAX_COUNT,
    MAX_PARALLEL_LIMIT,
    NOTIFY_EVENTS,
    OVERLAP_POLICIES,
)

logger = logging.getLogger(__name__)

__all__ = ["OPERATIONS", "document", "registered_operations"]

_J: Final = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(description: str, schema: dict[str, Any], status: str = "200") -> dict[str, Any]:
    return {status: {"description": description, "content": {_J: {"schema": schema}}}}


def _errors(*statuses: int) -> dict[str, Any]:
    names = {
        400: "BadRequest",
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        409: "Conflict",
        503: "Unavailable",
    }
    out: dict[str, Any] = {str(s): {"$ref": f"#/components/responses/{names[s]}"} for s in statuses}
    return out


_READ_ERRORS: Final = (401,)
_WRITE_ERRORS: Final = (400, 401, 403, 404, 409, 503)
_NULL_STR: Final = {"type": ["string", "null"]}
_NULL_INT: Final = {"type": ["integer", "null"]}
_TIME: Final = {"type": "string", "format": "date-time"}  # RFC 3339, four-digit year
_NULL_TIME: Final = {"type": ["string", "null"], "format": "date-time"}
_DURATION: Final = {
    "oneOf": [{"type": "string", "examples": ["30s", "5m", "1h30m"]}, {"type": "number"}],
    "description": "a duration string or a number of seconds",
}


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {_J: {"schema": schema}}}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


SCHEMAS: Final[dict[str, Any]] = {
    "Caller": {
        "type": "object",
        "required": ["role", "token"],
        "properties": {
            "role": {
                "enum": ["admin", "read"],
                "description": "admin on an API without tokens",
            },
            "token": {
                "type": ["string", "null"],
                "description": "the token's name ([[api.tokens]] name, else token-N by its "
                "position); null on an API without tokens",
            },
        },
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "Member": {
        "type": "object",
        "required": ["name", "raft", "api", "role", "healthy", "self"],
        "properties": {
            "name": {"type": "string"},
            "raft": {"type": "string"},
            "api": {"type": "string"},
            "role": {"enum": ["leader", "follower"]},
            "healthy": {"type": "boolean"},
            "self": {"type": "boolean"},
            "match_index": {"type": "integer", "description": "only on the leader's view"},
            "lag": {"type": "integer", "description": "entries behind the commit index"},
            "drain": {
                "oneOf": [_ref("Drain"), {"type": "null"}],
                "description": "null unless the member is drained (it gets no new runs)",
            },
            "config_hash": {
                **_NULL_STR,
                "description": "the config_hash of the cluster file the member reads (null: "
                "not reported yet)",
            },
            "version": {
                **_NULL_STR,
                "description": "the raftcron version the member advertised in the replicated "
                "state (null: none, a release from before feature levels)",
            },
            "feature_level": {
                "type": "integer",
                "description": "the feature level the member advertised (0: none); a gated "
                "command or job key needs it on every member (409 feature_not_enabled)",
            },
        },
    },
    "Drain": {
        "type": "object",
        "required": ["state", "kind", "since", "live_runs"],
        "properties": {
            "state": {
                "enum": ["draining", "drained"],
                "description": "draining while it still holds live runs, then drained",
            },
            "kind": {
                "enum": ["operator", "shutdown"],
                "description": "operator: until undrained; shutdown: its own SIGTERM drain, "
                "lifted when it starts again",
            },
            "since": {"type": "string", "format": "date-time"},
            "live_runs": {"type": "integer"},
        },
    },
    "MemberDrain": {
        "type": "object",
        "required": ["node", "drained", "drain", "leader"],
        "properties": {
            "node": {"type": "string"},
            "drained": {"type": "boolean"},
            "drain": {"oneOf": [_ref("Drain"), {"type": "null"}]},
            "leader": {"type": "boolean", "description": "the member leads now"},
        },
    },
    "LeaderTransfer": {
        "type": "object",
        "properties": {
            "to": {
                "type": "string",
                "description": "the member to hand leadership to (default: the most caught-up "
                "responsive member that is not drained)",
            }
        },
    },
    "LeaderTransferred": {
        "type": "object",
        "required": ["from", "to", "term", "moved"],
        "properties": {
            "from": {"type": "string"},
            "to": {"type": "string"},
            "term": {"type": "integer"},
            "moved": {"type": "boolean"},
        },
    },
    "Status": {
        "type": "object",
        "required": ["node", "role", "leader", "term", "commit_index", "members"],
        "properties": {
            "node": {"type": "string"},
            "version": {"type": "string", "examples": ["0.2.0"]},
            "role": {"enum": ["leader", "follower"]},
            "leader": _NULL_STR,
            "leader_established": {"type": "boolean"},
            "term": {"type": "integer"},
            "commit_index": {"type": "integer"},
            "last_applied": {"type": "integer"},
            "has_quorum": {"type": "boolean"},
            "members": {"type": "array", "items": _ref("Member")},
            "jobs": {"type": "integer"},
            "runs": {"type": "integer"},
            "live_leases": {"type": "integer"},
            "fence": {"type": "integer"},
            "stale_rejections": {"type": "integer"},
            "executing": {"type": "integer"},
            "fsyncs": {"type": "integer"},
            "leader_changes": {"type": "integer"},
            "config_hash": {
                "type": "string",
                "description": "hash of this node's cluster file: its jobs and settings, "
                "parsed, secrets and token values left out",
            },
            "reconciled_config_hash": {
                **_NULL_STR,
                "description": "config_hash of the file the leader last reconciled",
            },
            "config_drift": {
                "type": "array",
                "items": {"type": "string"},
                "description": "members whose config_hash differs from the leader's",
            },
            "feature_level": {"type": "integer", "description": "this node's feature level"},
            "cluster_feature_level": {
                "type": "integer",
                "description": "the lowest member's feature level: the features enabled",
            },
        },
    },
    "Reloaded": {
        "type": "object",
        "required": ["node", "file", "config_hash", "reconciled", "restart_needed"],
        "properties": {
            "node": {"type": "string"},
            "file": {"type": "string"},
            "config_hash": {"type": "string"},
            "previous_config_hash": {"type": "string"},
            "reconciled_config_hash": _NULL_STR,
            "leader": _NULL_STR,
            "reconciled": {
                "type": "boolean",
                "description": "true on the leader: its file's jobs were reconciled",
            },
            "jobs_changed": {"type": "array", "items": {"type": "string"}},
            "restart_needed": {
                "type": "array",
                "items": {"type": "string"},
                "description": "keys that changed but keep their running value until a restart",
            },
            "note": {"type": "string"},
        },
    },
    "Run": {
        "type": "object",
        "required": ["id", "job", "scheduled_at", "fence", "node", "status"],
        "properties": {
            "id": {"type": "string", "examples": ["backup@1767225600000"]},
            "job": {"type": "string"},
            "scheduled_at": {"type": "string", "format": "date-time"},
            "scheduled_at_ms": {"type": "integer"},
            "fence": {"type": "integer"},
            "node": _NULL_STR,
            "status": {
                "enum": [
                    "buffered",
                    "pending",
                    "claimed",
                    "running",
                    "succeeded",
                    "failed",
                    "timed_out",
                    "lost",
                    "killed",
                    "missed",
                    "skipped",
                    "paused",
                ]
            },
            "trigger": {
                "enum": [
                    "schedule",
                    "catchup",
                    "manual",
                    "buffered",
                    "retry",
                    "backfill",
                    "dependency",
                ],
                "description": "buffered: it waited for the run before it (overlap=buffer_*, "
                "cancel_other, terminate_other); the reason says why and whether it was a "
                "schedule or manual fire. retry: attempt N > 1, the reason names the attempt "
                "before it. dependency: a job with after, run (or skipped) because its "
                "parents' fire settled; parents names their runs",
            },
            "parents": {
                "type": "array",
                "items": {"type": "string"},
                "description": "a dependency run (and its retries): the run ids of its "
                "parents' last attempts, in the order of the job's after (the job gets them "
                "comma-separated in RAFTCRON_PARENT_RUN_ID); absent otherwise",
            },
            "kill": {
                "type": "string",
                "description": "a live run that was asked to stop: why (until it has ended)",
            },
            "attempt": {"type": "integer"},
            "claimed_at": _NULL_TIME,
            "started_at": _NULL_TIME,
            "finished_at": _NULL_TIME,
            "exit_code": _NULL_INT,
            "reason": {"type": "string"},
            "count": {
                "type": "integer",
                "description": "fires covered by an aggregated missed or paused record",
            },
            "last_scheduled_at": {
                **_NULL_TIME,
                "description": "an aggregated paused record: its newest fire",
            },
            "instance": {
                "type": "integer",
                "description": "a job with count: which instance of its fire this run is "
                "(1..instances; absent when the fire has one); RAFTCRON_INSTANCE",
            },
            "instances": {
                "type": "integer",
                "description": "a job with count: how many instances its fire has "
                "(RAFTCRON_COUNT); a skipped unschedulable record covers instances "
                "instance..instances (its count)",
            },
            "output": {"type": "string", "description": "the last 64 KiB of stdout+stderr"},
        },
    },
    "RunPage": {
        "type": "object",
        "required": ["runs", "total", "next"],
        "properties": {
            "runs": {"type": "array", "items": _ref("Run")},
            "total": {"type": "integer", "description": "runs matching the filters"},
            "next": {**_NULL_STR, "description": "pass as before= for the next page"},
        },
    },
    "JobTable": {
        "type": "object",
        "description": "the keys of a [[jobs]] table; name defaults to the URL's; exactly "
        "one of command and http; exactly one of schedule and after",
        "allOf": [
            {"oneOf": [{"required": ["command"]}, {"required": ["http"]}]},
            {"oneOf": [{"required": ["schedule"]}, {"required": ["after"]}]},
        ],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
            "schedule": {
                "type": "string",
                "examples": [
                    "0 3 * * *",
                    "* * * * * */10",
                    "0 0 L * *",
                    "0 9 * * 1#2",
                    "@every 90s",
                ],
                "description": "5 fields, or 6 with the seconds LAST; L (last day of the "
                "month), L5 or 5L (last Friday), 1#2 (second Monday); or @every <duration>, "
                "counted from the job's creation",
            },
            "after": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "maxItems": 64,
                "uniqueItems": True,
                "description": "run after these jobs (instead of a schedule): once per fire "
                "of theirs, when every one has settled that fire (its last attempt ended). "
                "A cycle is refused (400 dependency_cycle)",
            },
            "on": {
                "enum": ["success", "failure", "always"],
                "default": "success",
                "description": "with after: run when every parent succeeded, when at least "
                "one did not, or always; otherwise the fire is recorded as skipped",
            },
            "command": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "timezone": {"type": "string", "default": "UTC"},
            "timeout": _DURATION,
            "overlap": {"enum": list(OVERLAP_POLICIES), "default": "allow"},
            "catchup": _DURATION,
            "catchup_mode": {"enum": list(CATCHUP_MODES), "default": "all"},
            "jitter": {
                **_DURATION,
                "description": "delay every fire by a fixed offset in [0, jitter) derived "
                "from the job name (default 0; at most 1d)",
            },
            "dst_gap": {
                "enum": ["shift", "skip"],
                "default": "shift",
                "description": "a fire whose local time falls in a spring-forward gap runs "
                "at the first instant after it (shift) or not at all (skip)",
            },
            "dst_repeat": {
                "enum": ["once", "twice"],
                "default": "once",
                "description": "a fire whose local time falls in a fall-back repeated hour "
                "runs at its first occurrence only (once) or at both (twice)",
            },
            "retries": {
                "type": "integer",
                "minimum": 0,
                "maximum": 100,
                "description": "attempts after a failed, timed_out or lost one (default 0)",
            },
            "retry_backoff": {
                **_DURATION,
                "description": "wait before the first retry, doubled for each next one "
                "(default 10s)",
            },
            "retry_backoff_max": {
                **_DURATION,
                "description": "cap of the doubling backoff (default 10m)",
            },
            "retry_other_node": {
                "type": "boolean",
                "default": False,
                "description": "prefer a node other than the failed attempt's",
            },
            "tags": {"type": "object", "additionalProperties": {"type": "string"}},
            "count": {
                "oneOf": [
                    {"type": "integer", "minimum": 1, "maximum": MAX_COUNT},
                    {"const": "all"},
                ],
                "default": 1,
                "description": "instances of each fire, each on its own matching live node "
                '(run id ...~K for K > 1); "all": one on every matching live node',
            },
            "max_parallel": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_PARALLEL_LIMIT,
                "description": "at most this many live runs of the job per node (default: "
                "no limit); a fire no node has room for is skipped as unschedulable",
            },
            "lease": _DURATION,
            "env": {"type": "object", "additionalProperties": {"type": "string"}},
            "cwd": {
                "type": "string",
                "description": "an absolute path (default: the home directory of the account "
                "the job runs as, or / when it has none or it lies in the data dir)",
            },
            "user": {
                "type": "string",
                "description": "run the job as this account (an agent running as root only; "
                "one that is not root accepts only its own account). Checked on the node "
                "that takes the request (400); a node without the account fails the run",
            },
            "group": {
                "type": "string",
                "description": "run the job with this group (default: the user's own)",
            },
            "limits": {
                "type": "object",
                "additionalProperties": False,
                "description": "resource limits of the job's process (setrlimit)",
                "properties": {
                    "nofile": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_NOFILE_LIMIT,
                        "description": "open files (RLIMIT_NOFILE)",
                    },
                    "memory": {
                        "description": "address space in bytes (RLIMIT_AS), or a size such "
                        'as "512M" (K, M, G, T: powers of 1024)',
                        "oneOf": [
                            {
                                "type": "integer",
                                "minimum": MIN_MEMORY_LIMIT,
                                "maximum": MAX_MEMORY_LIMIT,
                            },
                            {"type": "string"},
                        ],
                    },
                    "cpu": {
                        "description": "CPU seconds (RLIMIT_CPU): SIGXCPU then, SIGKILL 5 s "
                        'later; or a duration such as "10m"',
                        "oneOf": [
                            {"type": "integer", "minimum": 1, "maximum": MAX_CPU_LIMIT_S},
                            {"type": "string"},
                        ],
                    },
                },
            },
            "env_passthrough": {
                "type": "array",
                "items": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,127}$"},
                "maxItems": MAX_PASSTHROUGH,
                "uniqueItems": True,
                "description": "variables of the agent's environment given to the job (its "
                "environment is otherwise PATH, HOME, USER, LOGNAME, LANG, TZ, env and "
                "RAFTCRON_*); never RAFTCRON_TOKEN, RAFTCRON_TOKEN_FILE or a variable holding "
                "the cluster secret or an API token",
            },
            "stdin": {
                "type": "string",
                "maxLength": MAX_STDIN_CHARS,
                "description": "what the job's process reads on its standard input (default "
                "none: /dev/null); e.g. the text after a crontab line's first %. Shown to a "
                "read token as the redaction marker",
            },
            "http": {
                "type": "object",
                "description": "an HTTP job: the request sent on every run instead of a "
                "command; it carries X-Raftcron-Fence, -Run-Id, -Job, -Scheduled-At, "
                "-Attempt and -Node headers; timeout is the job's (default 30s)",
                "required": ["url"],
                "additionalProperties": False,
                "properties": {
                    "url": {"type": "string", "format": "uri"},
                    "method": {"enum": list(HTTP_METHODS), "default": "GET"},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "body": {"type": "string"},
                    "expect": {
                        "description": "status code(s) that mean success (default any 2xx)",
                        "oneOf": [
                            {"type": "integer", "minimum": 100, "maximum": 599},
                            {
                                "type": "array",
                                "items": {"type": "integer", "minimum": 100, "maximum": 599},
                                "minItems": 1,
                            },
                        ],
                    },
                },
            },
            "notify": {
                "description": "webhooks POSTed a JSON body on failure, missed, late and "
                "recovered (default: the cluster's [notify] webhooks; [] for none)",
                "oneOf": [
                    {"type": "string", "format": "uri"},
                    _ref("NotifyTarget"),
                    {
                        "type": "array",
                        "items": {
                            "oneOf": [{"type": "string", "format": "uri"}, _ref("NotifyTarget")]
                        },
                    },
                ],
            },
            "late_after": {
                **_DURATION,
                "description": "a run starting later than this after it was due is 'late' "
                "(default: [notify] late_after, 1m)",
            },
            "ping_url": {
                "type": "string",
                "format": "uri",
                "description": "dead-man's-switch pings: /start, the URL itself on success, "
                "/<exit code> or /fail on failure (healthchecks.io convention)",
            },
        },
    },
    "NotifyTarget": {
        "type": "object",
        "required": ["url"],
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "format": "uri"},
            "on": {
                "type": "array",
                "items": {"enum": list(NOTIFY_EVENTS)},
                "minItems": 1,
                "default": list(NOTIFY_EVENTS),
            },
        },
    },
    "Job": {
        "type": "object",
        "required": [
            "name",
            "schedule",
            "timezone",
            "command",
            "paused",
            "spec",
            "source",
            "next_fire",
            "last_run",
            "running",
            "buffered",
            "backfill",
            "broken",
        ],
        "properties": {
            "name": {"type": "string"},
            "schedule": {"type": "string"},
            "timezone": {"type": "string"},
            "command": {"type": "array", "items": {"type": "string"}},
            "overlap": {"enum": list(OVERLAP_POLICIES)},
            "catchup_ms": {"type": "integer"},
            "catchup_mode": {"enum": list(CATCHUP_MODES)},
            "jitter_ms": {"type": "integer"},
            "jitter_offset_ms": {
                "type": "integer",
                "description": "this job's fires are claimed this long after their time",
            },
            "buffered": {
                "type": "array",
                "items": {"type": "string"},
                "description": "run ids waiting for the live run to end, in the order they run",
            },
            "backfill": {
                "oneOf": [{"type": "null"}, _ref("Backfill")],
                "description": "the backfill in progress, if any",
            },
            "after": {
                "type": "array",
                "items": {"type": "string"},
                "description": "the jobs this one runs after (empty: it has a schedule)",
            },
            "on": {**_NULL_STR, "description": "with after: success, failure or always"},
            "dependency_fires": {
                "type": "array",
                "items": {"type": "string"},
                "description": "dependency runs (status pending) waiting for a node",
            },
            "waiting_parents": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["scheduled_at", "settled", "waiting_for"],
                    "properties": {
                        "scheduled_at": {"type": "string", "format": "date-time"},
                        "settled": {"type": "object"},
                        "waiting_for": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "description": "fan-in: fires some parents have settled and others not yet "
                "(at most 100; older ones are recorded as skipped)",
            },
            "retries": {"type": "integer"},
            "pending_retries": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["run", "attempt", "due_at"],
                    "properties": {
                        "run": {"type": "string"},
                        "attempt": {"type": "integer"},
                        "due_at": {"type": "string", "format": "date-time"},
                    },
                },
                "description": "retries waiting for their backoff (or for the live run)",
            },
            "lease_ms": {"type": "integer"},
            "timeout_ms": _NULL_INT,
            "tags": {"type": "object", "additionalProperties": {"type": "string"}},
            "paused": {"type": "boolean"},
            "pause_note": {"type": "string"},
            "source": {"enum": ["config", "embedded", "api"]},
            "call": {
                **_NULL_STR,
                "description": "an embedded Python job's callable (module:qualname); null "
                "for a command job",
            },
            "watermark": _NULL_TIME,
            "created_at": _NULL_TIME,
            "updated_at": _NULL_TIME,
            "next_fire": _NULL_TIME,
            "last_run": {"oneOf": [_ref("Run"), {"type": "null"}]},
            "running": {"type": "array", "items": {"type": "string"}},
            "spec": {
                **_ref("JobTable"),
                "description": "the job's keys; for a read token, secrets (env values, "
                "HTTP headers, notify and ping URLs, URLs with credentials) are the marker "
                '"<redacted>", which a PUT refuses',
            },
            "broken": {
                **_NULL_STR,
                "description": "why the leader could not compute the job's fires: while "
                "set, they are recorded as missed (reason broken: ...); a PUT or a resume "
                "clears it",
            },
            "broken_at": _NULL_TIME,
            "next_fires": {
                "type": "array",
                "items": _ref("FireTime"),
                "description": "GET /v1/jobs/{name} only: the next 5 fires",
            },
        },
    },
    "FireTime": {
        "type": "object",
        "required": ["utc", "local", "at_ms"],
        "properties": {
            "utc": _TIME,
            "local": {"type": "string", "description": "ISO 8601 with the zone's offset"},
            "at_ms": {"type": "integer"},
        },
    },
    "NextFires": {
        "type": "object",
        "required": ["job", "timezone", "fires"],
        "properties": {
            "job": {"type": "string"},
            "schedule": {"type": "string"},
            "timezone": {"type": "string"},
            "from": _TIME,
            "fires": {"type": "array", "items": _ref("FireTime")},
        },
    },
    "PutResult": {
        "type": "object",
        "required": ["job", "result"],
        "properties": {
            "job": {"type": "string"},
            "result": {"enum": ["created", "updated", "unchanged", "deleted"]},
            "warnings": {
                "type": "array",
                "items": {"type": "string"},
                "description": "PUT: what is valid but probably not meant, as '<key>: <why>' "
                "(e.g. a 6-field schedule that reads like seconds-first); the job was saved",
            },
        },
    },
    "PauseRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"note": {"type": "string", "maxLength": 500}},
    },
    "TriggerRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "scheduled_at": {
                "type": "string",
                "format": "date-time",
                "description": "labels the manual fire (default now, within a day of now); "
                "repeating the same value returns the first run instead of firing again",
            }
        },
    },
    "KillRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "reason": {"type": "string", "maxLength": 500, "description": "kept in the ledger"},
            "hard": {
                "type": "boolean",
                "default": False,
                "description": "SIGKILL at once instead of SIGTERM, grace, SIGKILL",
            },
        },
    },
    "KillResult": {
        "type": "object",
        "required": ["run", "job", "status", "result"],
        "properties": {
            "run": {"type": "string"},
            "job": {"type": "string"},
            "status": {"type": "string", "description": "the run's status now"},
            "result": {"enum": ["killing", "killed"]},
            "reason": {"type": "string"},
        },
    },
    "TriggerResult": {
        "type": "object",
        "required": ["run", "job", "status", "reason"],
        "properties": {
            "run": {"type": "string"},
            "job": {"type": "string"},
            "status": {
                "type": "string",
                "description": "claimed, buffered or skipped (or, for a repeat, the run's "
                "current status)",
            },
            "reason": {"type": "string", "description": "why it was buffered or skipped"},
            "node": _NULL_STR,
            "fence": _NULL_INT,
            "scheduled_at": {"type": "string", "format": "date-time"},
            "duplicate": {"type": "boolean"},
            "instances": {
                "type": "array",
                "description": "a job with count other than 1: every instance of the fire "
                "(the fields above are instance 1's)",
                "items": {
                    "type": "object",
                    "required": ["run", "status", "reason", "node", "fence"],
                    "properties": {
                        "run": {"type": "string"},
                        "status": {"type": "string"},
                        "reason": {"type": "string"},
                        "node": _NULL_STR,
                        "fence": _NULL_INT,
                    },
                },
            },
        },
    },
    "BackfillRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["from", "to"],
        "properties": {
            "from": {"type": "string", "format": "date-time"},
            "to": {
                "type": "string",
                "format": "date-time",
                "description": "inclusive; not in the future",
            },
            "rate": {
                "type": "number",
                "minimum": BACKFILL_MIN_RATE,
                "maximum": BACKFILL_MAX_RATE,
                "default": 1,
                "description": "fires per second at most",
            },
            "id": {
                "type": "string",
                "pattern": "^[A-Za-z0-9_-]{1,32}$",
                "description": "idempotency key (default: random); repeating the request "
                "returns that backfill; part of the run ids (job@ms~backfill-ID)",
            },
        },
    },
    "Backfill": {
        "type": "object",
        "required": ["id", "from", "to", "rate", "total", "done", "next"],
        "properties": {
            "id": {"type": "string"},
            "from": {"type": "string", "format": "date-time"},
            "to": {"type": "string", "format": "date-time"},
            "rate": {"type": "number"},
            "total": {"type": "integer", "description": "fires in the range"},
            "done": {"type": "integer", "description": "fires claimed so far"},
            "next": {**_NULL_TIME, "description": "the next fire to run"},
            "requested_at": {"type": "string", "format": "date-time"},
        },
    },
    "BackfillResult": {
        "type": "object",
        "required": ["job", "backfill"],
        "properties": {
            "job": {"type": "string"},
            "backfill": _ref("Backfill"),
            "cancelled": {"type": "boolean"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"enum": ["ok", "no_leader", "leader", "not_leader", "failed", "lagging"]},
            "leader": _NULL_STR,
            "node": {"type": "string"},
            "reason": {
                "type": "string",
                "description": "why not: a storage failure (the file and the fix), how far "
                "behind the leader's commit, a leader without a majority",
            },
        },
    },
    "LockAcquire": {
        "type": "object",
        "properties": {
            "ttl": {**_DURATION, "default": "30s"},
            "wait": {**_DURATION, "default": 0, "description": "how long to queue (FIFO)"},
            "holder": {"type": "string", "description": "who holds it, for humans"},
            "request": {
                "type": "string",
                "description": "idempotency key: a repeat returns the same grant",
            },
        },
    },
    "LockGrant": {
        "type": "object",
        "required": ["lock", "fence", "ttl_ms"],
        "properties": {
            "lock": {"type": "string"},
            "fence": {"type": "integer", "description": "greater than any fence before"},
            "holder": {"type": "string"},
            "ttl_ms": {"type": "integer"},
            "request": {"type": "string"},
        },
    },
    "LockRenew": {
        "type": "object",
        "required": ["fence"],
        "properties": {"fence": {"type": "integer"}},
    },
    "LockReleased": {
        "type": "object",
        "required": ["lock", "released"],
        "properties": {"lock": {"type": "string"}, "released": {"type": "boolean"}},
    },
    "LockList": {
        "type": "object",
        "required": ["locks"],
        "properties": {"locks": {"type": "array", "items": _ref("Lock")}},
    },
    "Lock": {
        "type": "object",
        "required": ["name", "fence", "holder", "ttl_ms"],
        "properties": {
            "name": {"type": "string"},
            "fence": {"type": "integer"},
            "holder": {"type": "string"},
            "ttl_ms": {"type": "integer"},
            "acquired_at": {"type": "string", "format": "date-time"},
            "renewed_at": {"type": "string", "format": "date-time"},
            "waiters": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "holder": {"type": "string"},
                        "wait_ms": {"type": "integer"},
                        "queued_at": {"type": "string", "format": "date-time"},
                    },
                },
            },
        },
    },
}

RESPONSES: Final[dict[str, Any]] = {
    name: {"description": description, "content": {_J: {"schema": _ref("Error")}}}
    for name, description in (
        ("BadRequest", "invalid input (bad JSON, query parameter or job definition)"),
        ("Unauthorized", "no token, or an unknown one"),
        ("Forbidden", "a read-only token on a write"),
        ("NotFound", "no such job, run or lock"),
        ("Conflict", "the change conflicts with the current state"),
        ("Unavailable", "no leader, or the write did not commit in time (safe to repeat)"),
        (
            "Error",
            "any other error: 408 body too slow, 413 body too large, 431 header "
            "fields too large, 400 a request the server could not parse",
        ),
    )
}

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
