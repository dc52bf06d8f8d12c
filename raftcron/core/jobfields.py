"""A job's shape, declared once: :data:`JOB_FIELDS`, one row per ``JobSpec`` attribute.

Each row says what the attribute is called in a ``[[jobs]]`` table (and a ``PUT`` body), its
kind of value, default, bounds and allowed values, its key and position in the wire map,
whether and how the job views of the API show it, its JSON schema, its documentation and the
feature level that introduced it (``since``). From the rows come:

* the TOML keys a job may have and the generic checks of their values
  (``raftcron.config.job_spec_from_mapping``; what a key *means* for other keys, e.g.
  ``after`` against ``schedule``, stays written out there);
* the wire codec of a spec (:func:`spec_to_wire`, :func:`spec_from_wire`), used by commands
  and snapshots;
* the API's views (``raftcron.api.app.spec_table`` and ``job_json``) and the OpenAPI schemas
  of a job (``raftcron.api.openapi``);
* the job reference (``python -m raftcron.docs_gen`` writes the key tables of docs/jobs.md;
  a unit test fails when they drift).

Adding a key: one row here (``since`` = the next feature level, the next free
``wire_rank``, a default that leaves every existing spec's bytes alone), the attribute on
``JobSpec``, and the key's meaning where it is used.

Wire compatibility: the keys of the first release (``wire_always``) are written for every
spec, the others only when they differ from their default, each at its ``wire_rank``; so a
spec that does not use a newer key encodes byte for byte as before, and nodes of an older
feature level decode it. :func:`spec_level` says which level a spec needs.

Pure data and pure functions: no clock, no randomness, no I/O.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from raftcron.core.model import (
    CATCHUP_MODES,
    COUNT_ALL,
    DEFAULT_CATCHUP_MS,
    DEFAULT_LEASE_MS,
    DEFAULT_RETRY_BACKOFF_MAX_MS,
    DEFAULT_RETRY_BACKOFF_MS,
    DEPENDENCY_ON,
    HTTP_METHODS,
    MAX_COUNT,
    MAX_PARALLEL_LIMIT,
    OVERLAP_POLICIES,
    HttpSpec,
    JobSpec,
    NotifyTarget,
)

_T = TypeVar("_T")

# Bounds of job keys (the parser checks them; the OpenAPI schema and the docs show them).
MAX_AFTER: Final = 64  # parents of one job
MAX_RETRIES: Final = 100
MAX_STDIN_CHARS: Final = 65_536  # the API's limit on any string in a body
MIN_MEMORY_LIMIT: Final = 1 << 20  # 1 MiB: nothing runs in less
MAX_MEMORY_LIMIT: Final = 1 << 50  # 1 PiB
MAX_CPU_LIMIT_S: Final = 1_000_000_000
MAX_NOFILE_LIMIT: Final = 1 << 20  # Linux's default fs.nr_open
MAX_PASSTHROUGH: Final = 64
# The newest feature level this code knows: the highest ``since`` of any row.
FEATURE_LEVEL: Final = 1

# Kinds of value. Each fixes the Python type on JobSpec, the wire form, the API forms.
STR: Final = "str"  # str
OPT_STR: Final = "opt_str"  # str | None
ENUM: Final = "enum"  # str, one of ``choices``
INT: Final = "int"  # int
OPT_INT: Final = "opt_int"  # int | None
BOOL: Final = "bool"
DURATION: Final = "duration"  # int ms; a duration string in a table
OPT_DURATION: Final = "opt_duration"  # int ms | None
STRS: Final = "strs"  # tuple[str, ...]; a list
PAIRS: Final = "pairs"  # sorted tuple[tuple[str, str], ...]; a table of strings
COUNT: Final = "count"  # int, COUNT_ALL for "all"
HTTP: Final = "http"  # HttpSpec | None
NOTIFY: Final = "notify"  # tuple[NotifyTarget, ...] | None
LIMITS: Final = "limits"  # sorted tuple[tuple[str, int], ...]

# When ``spec_table`` (the job as a [[jobs]] table) shows a key.
ALWAYS: Final = "always"
IF_SET: Final = "set"  # only when it differs from its default
COMMAND_JOB: Final = "command_job"  # unless the job is an HTTP job
SCHEDULED: Final = "scheduled"  # unless the job runs after others
DEPENDENT: Final = "dependent"  # only for a job that runs after others
NEVER: Final = "never"

_DURATION_SCHEMA: Final[dict[str, Any]] = {
    "oneOf": [{"type": "string", "examples": ["30s", "5m", "1h30m"]}, {"type": "number"}],
}
_STR_MAP: Final[dict[str, Any]] = {"type": "object", "additionalProperties": {"type": "string"}}
_URI: Final[dict[str, Any]] = {"type": "string", "format": "uri"}


@dataclass(frozen=True, slots=True, kw_only=True)
class JobField:
    """One key of a job. ``attr``: the ``JobSpec`` attribute (and wire key)."""

    attr: str
    key: str | None  # in a [[jobs]] table; None: not written by users (``call``)
    kind: str
    default: Any
    doc_default: str  # the default as the job reference shows it
    doc: str  # markdown; links to sections of docs/jobs.md as (#anchor)
    wire_rank: int  # position in the wire map: frozen once released
    wire_always: bool = False  # written even at its default (the first release's keys)
    since: int = 0  # the feature level that introduced the key
    choices: tuple[str, ...] = ()  # ENUM
    choice_hint: str = ""  # ENUM: what the choices mean, appended to the message
    minimum: int | None = None  # INT, durations (ms)
    maximum: int | None = None  # INT (a message names it), STR (characters)
    max_hint: str = ""  # INT: appended to the "at most" message
    share: bool = True  # wire decode interns the strings (many jobs share them)
    command_only: bool = False  # refused for an HTTP job (it runs no process)
    table: str = IF_SET
    table_zero: str = ""  # a DURATION shown as this when 0 (else "0ms")
    api: str | None = None  # key in the job view; None: only in its ``spec`` table
    api_null_unless: str = ""  # the job view shows null unless this attribute is truthy
    schema: Mapping[str, Any] = field(default_factory=dict)  # of the table key (OpenAPI)
    api_note: str = ""  # appended to ``doc`` in the OpenAPI schema: what the API adds
    # ``raftcron jobs show``: the line's place among the key lines (0: no line of its own),
    # whether its value is printed as JSON, and an attribute that must be set for it.
    show: int = 0
    show_json: bool = False
    show_if: str = ""
    api_schema: Mapping[str, Any] | None = None  # of the job view key (OpenAPI)

    @property
    def nullable(self) -> bool:
        return self.kind in (OPT_STR, OPT_INT, OPT_DURATION, HTTP, NOTIFY)


F = JobField

# fmt: off
JOB_FIELDS: Final[tuple[JobField, ...]] = (
    F(attr="name", key="name", kind=STR, default=None, doc_default="required", wire_rank=0,
      wire_always=True, table=ALWAYS, api="name", api_schema={"type": "string"},
      schema={"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
      doc="`[A-Za-z0-9][A-Za-z0-9._-]{0,63}`"),
    F(attr="description", key="description", kind=STR, default="", maximum=1_000,
      doc_default='`""`', wire_rank=33, since=1, share=False, show=5, api="description",
      api_schema={"type": "string"}, schema={"type": "string", "maxLength": 1_000},
      doc="what the job is for, in words (at most 1,000 characters): shown by `GET "
      "/v1/jobs/{name}` and `raftcron jobs show`, never interpreted"),
    F(attr="schedule", key="schedule", kind=STR, default=None,
      doc_default="required, unless `after`", wire_rank=1, wire_always=True, table=SCHEDULED,
      api="schedule", api_schema={"type": "string"},
      schema={"type": "string", "examples": ["0 3 * * *", "* * * * * */10", "0 0 L * *",
                                             "0 9 * * 1#2", "@every 90s"]},
      doc="5 fields (`min hour dom month dow`) or 6 with **seconds last** (`* * * * * */10` = "
      "every 10 s); names (`MON`, `JAN`), ranges, steps, lists, `@daily` etc.; `L` (last day "
      "of the month), `L5` or `5L` (last Friday), `1#2` (second Monday); or `@every 90s` "
      "(counted from the job's creation). See [Schedules](#schedules)"),
    F(attr="command", key="command", kind=STRS, default=None,
      doc_default="required, unless `http`", wire_rank=2, wire_always=True, table=COMMAND_JOB,
      api="command", api_schema={"type": "array", "items": {"type": "string"}},
      schema={"type": "array", "items": {"type": "string"}, "minItems": 1},
      doc="an argv list; never a shell string unless you write `[\"sh\", \"-c\", \"...\"]`. A "
      "job has exactly one of `command` and `http`"),
    F(attr="timezone", key="timezone", kind=STR, default="UTC", doc_default='`"UTC"`',
      wire_rank=3, wire_always=True, table=ALWAYS, api="timezone",
      api_schema={"type": "string"}, schema={"type": "string", "default": "UTC"},
      doc="an IANA zone; the fields are matched on that zone's wall clock"),
    F(attr="timeout_ms", key="timeout", show=10, kind=OPT_DURATION, default=None, minimum=1,
      doc_default='none (`"30s"` for an `http` job)', wire_rank=4, wire_always=True,
      api="timeout_ms", api_schema={"type": ["integer", "null"]}, schema=_DURATION_SCHEMA,
      doc='e.g. `"10m"`; the job\'s process group gets SIGTERM, then SIGKILL after 5 s; an '
      "HTTP request is aborted"),
    F(attr="overlap", key="overlap", kind=ENUM, default="allow", choices=OVERLAP_POLICIES,
      doc_default='`"allow"`', wire_rank=5, wire_always=True, table=ALWAYS, api="overlap",
      api_schema={"enum": list(OVERLAP_POLICIES)},
      schema={"enum": list(OVERLAP_POLICIES), "default": "allow"},
      doc="what a fire does while a run of the job is still live (manual triggers included): "
      '`"allow"` runs it beside it; `"skip"` records it as `skipped`; `"buffer_one"` keeps it '
      "(status `buffered`) and runs it right after the live run ends, and records further "
      'fires as `skipped` while one waits; `"buffer_all"` keeps every such fire and runs them '
      "one after another in the order they fell due, at most 100 waiting (more are "
      "`skipped`, with the reason). A buffered run keeps its own `scheduled_at` and run id, "
      "gets `trigger` `buffered` and a reason naming the run it waited for; it is late on "
      "purpose. Pausing the job records its buffered runs as `paused`, deleting it as "
      '`skipped`; changing `overlap` leaves them to run. `"cancel_other"` stops the live run '
      '(SIGTERM to its process group, SIGKILL 5 s later) and `"terminate_other"` kills it at '
      "once (SIGKILL); either way the new fire waits as `buffered` and is granted only once "
      "the old run's end has committed (or its lease expired), so two runs never overlap. "
      "The stopped run is recorded as `killed` with a reason naming the fire that replaced "
      "it, and is not retried. The newest fire wins: a fire that was still waiting "
      '(buffered, or a pending retry) when a newer one came is recorded as `skipped` '
      '("superseded"); so several late fires claimed in one batch after an outage stop each '
      "other in turn (the ledger says so): pair these policies with "
      '`catchup_mode = "latest"`.'),
    F(attr="catchup_ms", key="catchup", show=20, kind=DURATION, default=DEFAULT_CATCHUP_MS,
      doc_default='`"1m"`', wire_rank=6, wire_always=True, table=SCHEDULED, api="catchup_ms",
      api_schema={"type": "integer"}, schema=_DURATION_SCHEMA,
      doc="fires that fell in a gap (election, full outage) and are at most this old are run "
      "late, oldest first; older ones are recorded as `missed` with the count and reason. A "
      "fire is never `missed` for being under 1 s late."),
    F(attr="catchup_mode", key="catchup_mode",
      show=30, kind=ENUM, default="all", choices=CATCHUP_MODES,
      choice_hint="run every fire within catchup, only the latest, or none that is late",
      doc_default='`"all"`', wire_rank=12, table=SCHEDULED, api="catchup_mode",
      api_schema={"enum": list(CATCHUP_MODES)},
      schema={"enum": list(CATCHUP_MODES), "default": "all"},
      doc='which late fires run: `"all"` every one within `catchup` (above); `"latest"` only '
      'the newest one within `catchup`, the others recorded as `missed` ("superseded"); '
      '`"none"` none that is more than 1 s late (`catchup` is ignored): they are `missed` and '
      "the schedule goes on from now. Missed fires are one ledger record per job and batch, "
      "with the count and each reason."),
    F(attr="jitter_ms", key="jitter", show=40, kind=DURATION, default=0, doc_default='`"0s"`',
      wire_rank=13, api="jitter_ms", api_schema={"type": "integer"}, schema=_DURATION_SCHEMA,
      doc='delay every fire of the job by a fixed offset in `[0, jitter)` (at most `1d`), a '
      'hash (SHA-256) of the job name: the same on every node and across restarts, '
      'different between jobs, so jobs that share a schedule do not all start at once. The '
      'fire keeps its cron time as `scheduled_at` (its identity, `RAFTCRON_SCHEDULED_AT`); '
      'it is claimed at `scheduled_at + offset`, and lateness (catch-up, `trigger`, the '
      'lateness metric) counts from there. `GET /v1/jobs/{name}` shows `jitter_offset_ms`.'),
    F(attr="dst_gap", key="dst_gap", kind=ENUM, default="shift", choices=("shift", "skip"),
      choice_hint="a fire in a spring-forward gap runs when the gap ends, or not",
      doc_default='`"shift"`', wire_rank=14,
      schema={"enum": ["shift", "skip"], "default": "shift"},
      doc="a fire whose local wall time does not exist (spring forward): `\"shift\"` runs it "
      'at the first instant after the gap, `"skip"` does not run it (see Daylight saving '
      "time)"),
    F(attr="dst_repeat", key="dst_repeat", kind=ENUM, default="once", choices=("once", "twice"),
      choice_hint="a fire in a fall-back hour runs once, or at both times",
      doc_default='`"once"`', wire_rank=15,
      schema={"enum": ["once", "twice"], "default": "once"},
      doc="a fire whose local wall time happens twice (fall back): `\"once\"` runs it at the "
      'first occurrence, `"twice"` at both'),
    F(attr="retries", key="retries", show=60, kind=INT, default=0, minimum=0, maximum=MAX_RETRIES,
      doc_default="`0`", wire_rank=7, wire_always=True, table=ALWAYS, api="retries",
      api_schema={"type": "integer"},
      schema={"type": "integer", "minimum": 0, "maximum": MAX_RETRIES},
      doc='how many more attempts (0-100) a fire gets after one ends `failed`, `timed_out` or '
      '`lost` (the executor died or lost its lease); never after `succeeded` or `killed`. '
      "Attempt N+1 is decided in the replicated state when attempt N's end (or lease "
      'expiry) commits: it is a run `job@ms.N+1` (`job@ms~manual.N+1` for a manual fire) '
      "with status `pending`, `trigger` `retry`, the fire's `scheduled_at`, and a reason "
      'naming the attempt it retries and how it ended; the job sees `RAFTCRON_ATTEMPT=N+1`.'
      ' It is due `retry_backoff` after attempt N ended (cluster time), is claimed like a '
      'fire, and (unless `overlap = "allow"`) waits while another run of the job is live. '
      'Pausing the job records pending retries as `paused`, deleting it as `skipped`; a run'
      ' that ends while the job is paused is not retried (its reason says so).'),
    F(attr="retry_backoff_ms", key="retry_backoff", show=110, show_if="retries", kind=DURATION,
      default=DEFAULT_RETRY_BACKOFF_MS, doc_default='`"10s"`', wire_rank=20, table=ALWAYS,
      table_zero="0s", schema=_DURATION_SCHEMA,
      doc="wait before the first retry; doubled for each further one (`10s`, `20s`, `40s`, "
      '...). `"0s"` retries at once'),
    F(attr="retry_backoff_max_ms", key="retry_backoff_max",
      show=120, show_if="retries", kind=DURATION,
      default=DEFAULT_RETRY_BACKOFF_MAX_MS, doc_default='`"10m"`', wire_rank=21,
      table=ALWAYS, table_zero="0s", schema=_DURATION_SCHEMA,
      doc="cap of the doubling backoff (at least `retry_backoff`; if only `retry_backoff` is "
      "given and it is longer, it is the cap too)"),
    F(attr="retry_other_node", key="retry_other_node",
      show=130, show_if="retries", kind=BOOL, default=False,
      doc_default="`false`", wire_rank=22, table=ALWAYS,
      schema={"type": "boolean", "default": False},
      doc="run a retry on a node other than the one where the attempt before it failed, when "
      "another live node matches `tags` (otherwise on that node again)"),
    F(attr="tags", key="tags",
      show=70, show_json=True, kind=PAIRS, default=(), doc_default="`{}`", wire_rank=8,
      wire_always=True, table=ALWAYS, api="tags", api_schema=_STR_MAP, schema=_STR_MAP,
      doc="run only on nodes whose `tags` include all of these; if none is up the fire is "
      "recorded as skipped (`unschedulable`). See [Where a job runs](#where-a-job-runs)"),
    F(attr="count", key="count", show=80, kind=COUNT, default=1, doc_default="`1`", wire_rank=26,
      schema={"oneOf": [{"type": "integer", "minimum": 1, "maximum": MAX_COUNT},
                        {"const": "all"}], "default": 1},
      doc='instances of each fire, each on a different matching live node (1-100), or `"all"`: '
      'one on every matching live node. Each instance is its own run with its own lease and'
      ' fence: run id `job@ms` for instance 1, `job@ms~K` for instance K; the job sees '
      '`RAFTCRON_INSTANCE` (K) and `RAFTCRON_COUNT`. Too few nodes: the others run, the '
      'missing ones are one `skipped` record (`unschedulable: ...`). See [Where a job '
      'runs](#where-a-job-runs)'),
    F(attr="max_parallel", key="max_parallel", show=90, kind=OPT_INT, default=None, minimum=1,
      maximum=MAX_PARALLEL_LIMIT, max_hint="; leave it out for no limit", doc_default="none",
      wire_rank=27,
      schema={"type": "integer", "minimum": 1, "maximum": MAX_PARALLEL_LIMIT},
      doc="at most this many live runs of the job on one node (1-10000); the scheduler puts a "
      "fire on a node with room; if no matching node has room the fire is `skipped` "
      "(`unschedulable: ... max_parallel=K ...`)"),
    F(attr="lease_ms", key="lease", show=50, kind=DURATION, default=DEFAULT_LEASE_MS, minimum=1_000,
      doc_default='`cluster.lease` (`"30s"`)', wire_rank=9, wire_always=True, table=ALWAYS,
      api="lease_ms", api_schema={"type": "integer"}, schema=_DURATION_SCHEMA,
      doc="lease duration D; renewed every D/3"),
    F(attr="env", key="env", show=100, show_json=True, command_only=True,
      kind=PAIRS, default=(), doc_default="`{}`", wire_rank=10,
      wire_always=True, table=COMMAND_JOB, schema=_STR_MAP,
      doc="environment variables of the job (see [Job isolation](#job-isolation) for the "
      "rest of its environment)"),
    F(attr="cwd", key="cwd",
      api_note='Through the API: an absolute path.',
      show=140, command_only=True,
      kind=OPT_STR, default=None, doc_default="the account's home",
      wire_rank=11, wire_always=True, schema={"type": "string"},
      doc='working directory; without it the home directory of the account the job runs as (`/`'
      ' when it has none, or when it lies inside the data dir)'),
    F(attr="http", key="http",
      api_note=('The request carries X-Raftcron-Fence, -Run-Id, -Job, -Scheduled-At, -Attempt and'
                " -Node headers; timeout is the job's (default 30s)."),
      kind=HTTP, default=None, doc_default="none", wire_rank=16,
      share=False,
      schema={
          "type": "object", "required": ["url"], "additionalProperties": False,
          "properties": {
              "url": _URI,
              "method": {"enum": list(HTTP_METHODS), "default": "GET"},
              "headers": _STR_MAP,
              "body": {"type": "string"},
              "expect": {
                  "description": "status code(s) that mean success (default any 2xx)",
                  "oneOf": [
                      {"type": "integer", "minimum": 100, "maximum": 599},
                      {"type": "array", "minItems": 1,
                       "items": {"type": "integer", "minimum": 100, "maximum": 599}},
                  ],
              },
          },
      },
      doc="an HTTP job instead of a command: a table with `url` (required, http or https), "
      '`method` (`"GET"`), `headers` (`{}`; not `X-Raftcron-*`), `body` (`""`), `expect` (a '
      "status or a list; default any 2xx). `env`, `cwd`, `user`, `group`, `limits`, "
      "`env_passthrough` and `stdin` do not apply. See [HTTP jobs](#http-jobs)"),
    F(attr="notify", key="notify", show=220, show_json=True, kind=NOTIFY, default=None,
      doc_default="`[notify] webhooks`", wire_rank=17, share=False,
      schema={"oneOf": [
          _URI,
          {"$ref": "#/components/schemas/NotifyTarget"},
          {"type": "array", "items": {"oneOf": [
              _URI, {"$ref": "#/components/schemas/NotifyTarget"}]}},
      ]},
      doc="webhooks told about the job's runs: a URL, a list of URLs and `{ url, on }` tables, "
      'or one such table; `on` is a list of `"failure"`, `"missed"`, `"late"`, `"recovered"` '
      "(default all four). `[]`: none, not even the cluster default. See "
      "[Notifications and pings](#notifications-and-pings)"),
    F(attr="late_after_ms", key="late_after",
      show=150, kind=OPT_DURATION, default=None, minimum=1_000,
      doc_default='`[notify] late_after` (`"1m"`)', wire_rank=18, schema=_DURATION_SCHEMA,
      doc="a run that starts more than this after it was due is `late` (at least `1s`)"),
    F(attr="ping_url", key="ping_url", show=160, kind=OPT_STR, default=None, doc_default="none",
      wire_rank=19, share=False, schema=_URI,
      doc="dead-man's-switch pings in the healthchecks.io convention: `ping_url/start` at the "
      "start, `ping_url` on success, `ping_url/<exit code>` or `ping_url/fail` on failure"),
    F(attr="after", key="after",
      api_note='A cycle is refused (400 dependency_cycle).',
      kind=STRS, default=(), doc_default="none", wire_rank=24,
      api="after",
      api_schema={"type": "array", "items": {"type": "string"},
                  "description": "the jobs this one runs after (empty: it has a schedule)"},
      schema={"type": "array", "items": {"type": "string"}, "minItems": 1,
              "maxItems": MAX_AFTER, "uniqueItems": True},
      doc="run after other jobs instead of on a schedule: a list of job names (1-64; a single "
      "name may be a string). The job then has no `schedule` (nor `catchup`, "
      "`catchup_mode`, `jitter`) and runs once per fire of its parents, when that fire has "
      "settled. See [Dependencies](#dependencies)"),
    F(attr="on", key="on", kind=ENUM, default="success", choices=DEPENDENCY_ON,
      choice_hint="run when every parent succeeded, when at least one did not, or whenever "
      "they have all finished",
      doc_default='`"success"`', wire_rank=25, table=DEPENDENT, api="on",
      api_null_unless="after",
      api_schema={"type": ["string", "null"],
                  "description": "with after: success, failure or always"},
      schema={"enum": list(DEPENDENCY_ON), "default": "success"},
      doc='with `after`: `"success"` runs it when every parent succeeded, `"failure"` when '
      "every parent has settled and at least one did not succeed, `\"always\"` whenever they "
      "have all settled. A fire it does not run is recorded as `skipped`, naming the parents' "
      "runs and outcomes"),
    F(attr="user", key="user",
      api_note=('Checked on the node that takes the request (400); a node without the account '
                'fails the run.'),
      show=170, command_only=True,
      kind=OPT_STR, default=None, doc_default="the agent's account",
      wire_rank=28, schema={"type": "string"},
      doc="run the job as this account (an agent running as root only; an agent that is not "
      "root accepts only its own account). See [Job isolation](#job-isolation)"),
    F(attr="group", key="group", show=180, command_only=True,
      kind=OPT_STR, default=None,
      doc_default="the user's primary group", wire_rank=29, schema={"type": "string"},
      doc="run the job with this group (an agent that is not root accepts only its own)"),
    F(attr="limits", key="limits", show=190, show_json=True, command_only=True,
      kind=LIMITS, default=(), doc_default="none", wire_rank=30,
      schema={
          "type": "object", "additionalProperties": False,
          "properties": {
              "nofile": {"type": "integer", "minimum": 1, "maximum": MAX_NOFILE_LIMIT,
                         "description": "open files (RLIMIT_NOFILE)"},
              "memory": {
                  "description": "address space in bytes (RLIMIT_AS), or a size such as "
                  '"512M" (K, M, G, T: powers of 1024)',
                  "oneOf": [{"type": "integer", "minimum": MIN_MEMORY_LIMIT,
                             "maximum": MAX_MEMORY_LIMIT}, {"type": "string"}],
              },
              "cpu": {
                  "description": "CPU seconds (RLIMIT_CPU): SIGXCPU then, SIGKILL 5 s later; "
                  'or a duration such as "10m"',
                  "oneOf": [{"type": "integer", "minimum": 1, "maximum": MAX_CPU_LIMIT_S},
                            {"type": "string"}],
              },
          },
      },
      doc="resource limits of the job's process, set with setrlimit: `{ nofile = 1024, memory "
      '= "512M", cpu = 600 }`: open files (`RLIMIT_NOFILE`), address space in bytes or a size '
      "with K, M, G, T (powers of 1024; `RLIMIT_AS`, at least 1M), CPU seconds or a duration "
      "(`RLIMIT_CPU`: SIGXCPU then, SIGKILL 5 s of CPU later)"),
    F(attr="env_passthrough", key="env_passthrough", show=200, show_json=True, command_only=True,
      kind=STRS, default=(),
      doc_default="`[]`", wire_rank=31,
      schema={"type": "array",
              "items": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,127}$"},
              "maxItems": MAX_PASSTHROUGH, "uniqueItems": True},
      doc='names of the agent\'s environment variables the job gets (e.g. `["HTTPS_PROXY"]`; '
      '`["PATH"]` replaces the default `PATH` with the agent\'s). Never `RAFTCRON_TOKEN`, '
      '`RAFTCRON_TOKEN_FILE`, a variable raftcron sets per run, or one set in `env`; a '
      'variable whose value is the cluster secret or an API token stops `check-config` and '
      'the agent (exit 2), is refused by a `PUT` (400), and fails a run on a node where it '
      'holds one'),
    F(attr="stdin", key="stdin", show=210, show_json=True, command_only=True,
      kind=STR, default="",
      maximum=MAX_STDIN_CHARS, max_hint="; for more, let the command read a file",
      doc_default="none (`/dev/null`)", wire_rank=32, share=False,
      schema={"type": "string", "maxLength": MAX_STDIN_CHARS},
      doc="text the job's process reads on its standard input (at most 65,536 characters), "
      "e.g. a mail body or the answers to a prompt; what a crontab line's `%` gives (see "
      "[docs/migrating.md](docs/migrating.md)). A read token sees the redaction marker "
      "instead"),
    F(attr="call", key=None, kind=STR, default="", doc_default='`""`', wire_rank=23,
      table=NEVER, api="call", api_null_unless="call",
      api_schema={"type": ["string", "null"],
                  "description": "an embedded Python job's callable (module:qualname); null "
                  "for a command job"},
      doc="an embedded Python job's callable, `module:qualname` (set by `raftcron.embed`, "
      "not a table key)"),
)
# fmt: on

FIELDS_BY_ATTR: Final = {f.attr: f for f in JOB_FIELDS}
FIELDS_BY_KEY: Final = {f.key: f for f in JOB_FIELDS if f.key is not None}
# The keys a [[jobs]] table may have, in the order the reference lists them.
JOB_KEYS: Final = tuple(f.key for f in JOB_FIELDS if f.key is not None)
WIRE_FIELDS: Final = tuple(sorted(JOB_FIELDS, key=lambda f: f.wire_rank))
_WIRE_KEYS: Final = frozenset(f.attr for f in JOB_FIELDS)


def spec_level(spec: JobSpec) -> int:
    """The lowest feature level whose nodes decode ``spec``: the highest ``since`` among
    the keys its wire form carries."""
    return max(
        (f.since for f in JOB_FIELDS if f.wire_always or getattr(spec, f.attr) != f.default),
        default=0,
    )


# ---------------------------------------------------------------------------- interning


def istr(value: object) -> str:
    """``str(value)``, interned: thousands of jobs share their commands, zones, tags and
    policies, and every run repeats its job's name; one copy of each is kept instead of
    one per decoded entry (only object identity changes, never a value)."""
    return sys.intern(str(value))


# Decoded ints above 256 and tuples of interned strings (a command, the tags), shared the
# same way: with 100,000 jobs that differ only by name, one copy instead of 100,000 (about
# 280 bytes a job). Bounded: once a table is full new values are simply not shared (a
# deleted job's values may stay in it; at most _SHARED_MAX of each).
_SHARED_MAX: Final = 4096
_shared_ints: dict[int, int] = {}
_shared_strs: dict[Any, Any] = {}


def iint(value: Any) -> int:
    """``int(value)``, shared."""
    n: int = int(value)
    if -5 <= n <= 256:  # CPython's own small ints
        return n
    got = _shared_ints.get(n)
    if got is not None:
        return got
    if len(_shared_ints) < _SHARED_MAX:
        _shared_ints[n] = n
    return n


def share(value: _T) -> _T:
    got: _T | None = _shared_strs.get(value)
    if got is not None:
        return got
    if len(_shared_strs) < _SHARED_MAX:
        _shared_strs[value] = value
    return value


def istrs(items: Any) -> tuple[str, ...]:
    """``tuple(istr(x) for x in items)``, shared."""
    return share(tuple(istr(x) for x in items))


# ---------------------------------------------------------------------------- wire codec


def _pairs_to_wire(v: Any) -> Any:
    return [list(kv) for kv in v]


def _http_to_wire(h: HttpSpec) -> dict[str, Any]:
    return {
        "url": h.url,
        "method": h.method,
        "headers": [list(kv) for kv in h.headers],
        "body": h.body,
        "expect": list(h.expect),
    }


def _http_from_wire(raw: Mapping[str, Any]) -> HttpSpec:
    return HttpSpec(
        url=str(raw["url"]),
        method=str(raw["method"]),
        headers=tuple((str(k), str(v)) for k, v in raw["headers"]),
        body=str(raw["body"]),
        expect=tuple(int(c) for c in raw["expect"]),
    )


_TO_WIRE: Final[dict[str, Callable[[Any], Any]]] = {
    STRS: list,
    PAIRS: _pairs_to_wire,
    LIMITS: _pairs_to_wire,
    HTTP: _http_to_wire,
    NOTIFY: lambda v: [[t.url, list(t.on)] for t in v],
}
_FROM_WIRE: Final[dict[str, Callable[[Any, bool], Any]]] = {
    STR: lambda v, s: istr(v) if s else str(v),
    OPT_STR: lambda v, s: istr(v) if s else str(v),
    ENUM: lambda v, s: istr(v),
    INT: lambda v, s: iint(v),
    OPT_INT: lambda v, s: iint(v),
    COUNT: lambda v, s: iint(v),
    DURATION: lambda v, s: iint(v),
    OPT_DURATION: lambda v, s: iint(v),
    BOOL: lambda v, s: bool(v),
    STRS: lambda v, s: istrs(v),
    PAIRS: lambda v, s: share(tuple(share((istr(k), istr(x))) for k, x in v)),
    LIMITS: lambda v, s: share(tuple((istr(k), iint(x)) for k, x in v)),
    HTTP: lambda v, s: _http_from_wire(v),
    NOTIFY: lambda v, s: tuple(
        NotifyTarget(url=str(u), on=tuple(str(e) for e in on)) for u, on in v
    ),
}


def spec_to_wire(spec: JobSpec) -> dict[str, Any]:
    """The spec as a msgpack map: every ``wire_always`` key, then each other key that
    differs from its default, in ``wire_rank`` order (so a spec that does not use a newer
    key encodes exactly as before: older nodes decode it, snapshot digests do not change)."""
    out: dict[str, Any] = {}
    for f in WIRE_FIELDS:
        value = getattr(spec, f.attr)
        if not f.wire_always and value == f.default:
            continue
        out[f.attr] = value if value is None else _TO_WIRE.get(f.kind, _same)(value)
    return out


def _same(value: Any) -> Any:
    return value


def spec_from_wire(raw: Mapping[str, Any]) -> JobSpec:
    """Inverse of :func:`spec_to_wire`. Raises on malformed input (callers catch): a missing
    ``wire_always`` key or a key this feature level does not know."""
    unknown = set(raw) - _WIRE_KEYS
    if unknown:
        raise ValueError(f"unknown job fields {sorted(unknown)}")
    values: dict[str, Any] = {}
    for f in WIRE_FIELDS:
        if f.wire_always or f.attr in raw:
            value = raw[f.attr]
        else:
            continue
        if value is None and f.nullable:
            values[f.attr] = None
        else:
            values[f.attr] = _FROM_WIRE[f.kind](value, f.share)
    return JobSpec(**values)


# ---------------------------------------------------------------------------- API views


def duration_text(ms: int) -> str:
    """``ms`` as the shortest exact duration string the config accepts ("90s", "5m")."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _http_table(h: HttpSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"url": h.url, "method": h.method, "headers": dict(h.headers)}
    if h.body:
        out["body"] = h.body
    if h.expect:
        out["expect"] = list(h.expect)
    return out


_TO_TABLE: Final[dict[str, Callable[[Any], Any]]] = {
    STRS: list,
    PAIRS: dict,
    LIMITS: dict,  # memory in bytes, cpu in seconds
    DURATION: duration_text,
    OPT_DURATION: duration_text,
    COUNT: lambda v: "all" if v == COUNT_ALL else v,
    HTTP: _http_table,
    NOTIFY: lambda v: [{"url": t.url, "on": list(t.on)} for t in v],
}


def _shown(f: JobField, spec: JobSpec) -> bool:
    if f.table == ALWAYS:
        return True
    if f.table == COMMAND_JOB:  # an HTTP job has no command (and no env)
        return spec.http is None
    if f.table == SCHEDULED:  # a dependent job: no schedule (nor catch-up) of its own
        return not spec.after
    if f.table == DEPENDENT:
        return bool(spec.after)
    if f.table == IF_SET:
        return bool(getattr(spec, f.attr) != f.default)
    return False


def spec_table(spec: JobSpec) -> dict[str, Any]:
    """A job as the keys of a ``[[jobs]]`` table: ``PUT`` it back and nothing changes."""
    table: dict[str, Any] = {}
    for f in JOB_FIELDS:
        if f.key is None or not _shown(f, spec):
            continue
        value = getattr(spec, f.attr)
        if value is None:
            table[f.key] = None
        elif f.table_zero and value == 0:
            table[f.key] = f.table_zero
        else:
            table[f.key] = _TO_TABLE.get(f.kind, _same)(value)
    return table


def spec_view(spec: JobSpec) -> dict[str, Any]:
    """The spec's keys in the job view (``GET /v1/jobs/{name}``): ``api`` rows, raw values
    (durations in ms)."""
    out: dict[str, Any] = {}
    for f in JOB_FIELDS:
        if f.api is None:
            continue
        value = getattr(spec, f.attr)
        if f.api_null_unless and not getattr(spec, f.api_null_unless):
            out[f.api] = None
        elif f.kind in (PAIRS, LIMITS):
            out[f.api] = dict(value)
        elif f.kind == STRS:
            out[f.api] = list(value)
        else:
            out[f.api] = value
    return out
