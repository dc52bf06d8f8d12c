"""The component schemas and shared responses of the OpenAPI document
(``raftcron.api.openapi`` holds the operations and builds the document).

The job schemas come from the job field table (``raftcron.core.jobfields``): the
``JobTable`` properties are its [[jobs]] keys, the spec part of ``Job`` its ``api`` column.

Pure data: no I/O.
"""

from __future__ import annotations

import re
from typing import Any, Final

from raftcron.core.jobfields import DURATION, JOB_FIELDS, OPT_DURATION
from raftcron.core.model import BACKFILL_MAX_RATE, BACKFILL_MIN_RATE, NOTIFY_EVENTS

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


_LINK: Final = re.compile(r"\[([^\]]+)\]\([^)]*\)")


def _plain(doc: str) -> str:
    """A job field's doc text without its markdown links (they point into docs/jobs.md)."""
    return _LINK.sub(r"\1", doc)


def job_table_properties() -> dict[str, Any]:
    """``JobTable``'s properties: every [[jobs]] key of the job field table."""
    out: dict[str, Any] = {}
    for f in JOB_FIELDS:
        if f.key is None:
            continue
        doc = _plain(f.doc) + (f" {f.api_note}" if f.api_note else "")
        if f.kind in (DURATION, OPT_DURATION):
            doc += f" (a duration string or a number of seconds; default {_plain(f.doc_default)})"
        out[f.key] = {**f.schema, "description": doc}
    return out


def job_view_properties() -> dict[str, Any]:
    """``Job``'s properties that show the spec (the field table's ``api`` column)."""
    return {f.api: dict(f.api_schema or {}) for f in JOB_FIELDS if f.api is not None}


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
    "ClusterMember": {
        "type": "object",
        "required": ["name", "raft", "api", "tags", "incarnation"],
        "properties": {
            "name": {"type": "string"},
            "raft": {"type": "string", "examples": ["10.0.0.4:4321"]},
            "api": {"type": "string", "examples": ["10.0.0.4:8080"]},
            "tags": {"type": "object", "additionalProperties": {"type": "string"}},
            "incarnation": {
                "type": ["integer", "null"],
                "description": "given once per member; 0 before the membership is seeded",
            },
            "leader": {"type": "boolean"},
            "in_raft_config": {"type": "boolean"},
            "answering": {"type": "boolean"},
        },
    },
    "MemberChange": {
        "type": ["object", "null"],
        "properties": {
            "op": {"enum": ["add", "remove"]},
            "name": {"type": "string"},
            "raft": {"type": "string"},
            "request": {"type": "string"},
            "done": {"type": "boolean"},
        },
    },
    "Members": {
        "type": "object",
        "required": ["seeded", "members", "change", "removed", "file_disagrees"],
        "properties": {
            "seeded": {
                "type": "boolean",
                "description": "the replicated membership exists (the leader seeds it from "
                "its file once every member runs feature level 2); before, the file's",
            },
            "cluster_id": _NULL_STR,
            "members": {"type": "array", "items": _ref("ClusterMember")},
            "change": _ref("MemberChange"),
            "removed": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "raft": {"type": "string"},
                        "incarnation": {"type": "integer"},
                    },
                },
            },
            "file_disagrees": {
                "type": "array",
                "items": {"type": "string"},
                "description": "how this node's cluster file differs from the membership",
            },
        },
    },
    "MemberAdd": {
        "type": "object",
        "required": ["name", "raft", "api"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
            "raft": {"type": "string", "examples": ["10.0.0.4:4321"]},
            "api": {"type": "string", "examples": ["10.0.0.4:8080"]},
            "tags": {"type": "object", "additionalProperties": {"type": "string"}},
            "request": {"type": "string", "maxLength": 128, "description": "idempotency key"},
        },
    },
    "MemberAdded": {
        "type": "object",
        "required": ["member", "change", "cluster_id", "start"],
        "properties": {
            "member": _ref("ClusterMember"),
            "change": _ref("MemberChange"),
            "cluster_id": _NULL_STR,
            "start": {"type": "string", "description": "how to start the new member"},
        },
    },
    "MemberRemoved": {
        "type": "object",
        "required": ["removed", "change"],
        "properties": {"removed": {"type": "string"}, "change": _ref("MemberChange")},
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
            "membership_file_disagrees": {
                "type": "array",
                "items": {"type": "string"},
                "description": "how this node's cluster file differs from the replicated "
                "membership (empty: it agrees, or the membership is not seeded yet)",
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
        "properties": job_table_properties(),
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
            **job_view_properties(),
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
            "paused": {"type": "boolean"},
            "pause_note": {"type": "string"},
            "source": {"enum": ["config", "embedded", "api"]},
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
