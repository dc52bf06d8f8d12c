"""The replicated data model: jobs, runs, leases.

Invariants this module guarantees:

* Every record is a frozen, slotted, keyword-only dataclass. Records are never mutated;
  ``apply`` replaces them. That lets a snapshot copy the containers shallowly while the
  tick thread keeps applying.
* Times are integers: milliseconds since the Unix epoch, UTC (``*_ms``). No ``datetime``
  in the replicated state, so encodings are stable byte for byte.
* A run id is derived from the fire: ``run_id(job, scheduled_at_ms)``; it is never random.
  Its grammar is parsed and formatted in one place: ``RunKey`` (``runkey.py``).

This module must never read a clock, draw a random number or do I/O.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field, replace
from typing import Final

from raftcron.core.runkey import BACKFILL_PREFIX, RunKey

# Temporal's set.
OVERLAP_POLICIES: Final = (
    "allow",
    "skip",
    "buffer_one",
    "buffer_all",
    "cancel_other",
    "terminate_other",
)
BUFFER_POLICIES: Final = frozenset({"buffer_one", "buffer_all"})
# A new fire stops the live run (SIGTERM, grace, SIGKILL / SIGKILL at once) and waits in
# the job's buffer (one place: a newer fire supersedes it) until that run's end commits.
CANCEL_POLICIES: Final = frozenset({"cancel_other", "terminate_other"})
# overlap = "buffer_all" keeps at most this many fires waiting per job; more are skipped.
BUFFER_ALL_LIMIT: Final = 100
CATCHUP_MODES: Final = ("all", "latest", "none")
MAX_JITTER_MS: Final = 86_400_000  # a day
DEFAULT_LEASE_MS: Final = 30_000
DEFAULT_HISTORY: Final = 100
DEFAULT_CATCHUP_MS: Final = 60_000
DEFAULT_RETRY_BACKOFF_MS: Final = 10_000
DEFAULT_RETRY_BACKOFF_MAX_MS: Final = 600_000
# A fire is never "missed" for being late by less than this, whatever catchup says.
CATCHUP_FLOOR_MS: Final = 1_000
# Output tails are kept on the newest OUTPUT_KEEP final runs of each job only.
OUTPUT_KEEP: Final = 5
OUTPUT_TAIL_BYTES: Final = 64 * 1024
# Events a job's notify webhooks can ask for (see raftcron/notify.py).
NOTIFY_EVENTS: Final = ("failure", "missed", "late", "recovered")
HTTP_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# Resource limits a command job may set (``limits``), applied with setrlimit in the job's
# process: open files (RLIMIT_NOFILE), address space in bytes (RLIMIT_AS), CPU seconds
# (RLIMIT_CPU).
LIMIT_KEYS: Final = ("nofile", "memory", "cpu")

# Run statuses (docs/design.md, "The run lifecycle"). Final statuses never change again.
CLAIMED: Final = "claimed"
RUNNING: Final = "running"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
TIMED_OUT: Final = "timed_out"
LOST: Final = "lost"
MISSED: Final = "missed"
SKIPPED: Final = "skipped"
PAUSED: Final = "paused"  # fell due while the job was paused (aggregated per pause)
# Waiting for the job's live run to end (overlap = "buffer_one"/"buffer_all"): holds its
# run id, has no lease and no fence yet; becomes "claimed" when it is granted.
BUFFERED: Final = "buffered"
# A retry waiting for its backoff (or for the job's live run to end): holds its run id
# (``job@ms.N``), has no lease and no fence yet; becomes "claimed" when it is granted.
PENDING: Final = "pending"
# Stopped on request: ``POST /v1/runs/{id}/kill`` or overlap = "cancel_other" /
# "terminate_other". Final, and never retried.
KILLED: Final = "killed"
LIVE_STATUSES: Final = frozenset({CLAIMED, RUNNING})
WAITING_STATUSES: Final = frozenset({BUFFERED, PENDING})  # no lease yet
FINAL_STATUSES: Final = frozenset(
    {SUCCEEDED, FAILED, TIMED_OUT, LOST, KILLED, MISSED, SKIPPED, PAUSED}
)
COMPLETION_STATUSES: Final = frozenset({SUCCEEDED, FAILED, TIMED_OUT, LOST, KILLED})
# Outcomes that schedule the next attempt while the job has retries left.
RETRY_STATUSES: Final = frozenset({FAILED, TIMED_OUT, LOST})

# Why a run exists.
TRIGGER_SCHEDULE: Final = "schedule"
TRIGGER_CATCHUP: Final = "catchup"
TRIGGER_MANUAL: Final = "manual"
# A fire that waited in the job's buffer (overlap = "buffer_*"), claimed once the run before
# it ended. In a Plan it asks ``apply`` to grant the head of the job's buffer.
TRIGGER_BUFFERED: Final = "buffered"
# A past fire re-run on request (``POST /v1/jobs/{name}/backfill``), one at a time, at
# most ``rate`` per second.
TRIGGER_BACKFILL: Final = "backfill"
BACKFILL_MAX_FIRES: Final = 10_000  # per backfill request
BACKFILL_MAX_RATE: Final = 100.0  # fires per second
BACKFILL_MIN_RATE: Final = 1 / 86_400  # one fire a day (the API refuses less)
# The last instant any schedule, preview or backfill deals in: 9999-12-31T23:59:59.999Z.
LAST_MS: Final = 253_402_300_799_999
# ``count = "all"`` in a job: one instance of each fire on every matching live node.
COUNT_ALL: Final = 0
MAX_COUNT: Final = 100  # instances per fire (``count = N``)
MAX_PARALLEL_LIMIT: Final = 10_000  # the largest ``max_parallel`` accepted


def backfill_run_id(job: str, scheduled_at_ms: int, backfill: str) -> str:
    """``job@scheduled_at_ms~backfill-ID``: a range may be backfilled more than once."""
    return RunKey(job, scheduled_at_ms, variant=f"{BACKFILL_PREFIX}{backfill}").format()


def instance_run_id(base: str, instance: int) -> str:
    """The run id of instance ``instance`` of a fire whose first instance is ``base``:
    ``base`` itself for instance 1 (so a job with ``count = 1`` keeps its ids), else
    ``base~K`` (``j@ms~2``, ``j@ms~manual~2``, ``j@ms~backfill-ID~2``). ``~`` is safe in a
    URL path and a query, unlike ``#``; a job name never contains it."""
    return replace(_key(base), instance=instance).format()


def fire_of(rid: str) -> str:
    """The fire a run id belongs to: its first instance's first attempt, i.e. ``rid``
    without the retry suffix ``.N`` and the instance suffix ``~K`` (``j@ms~2.3`` ->
    ``j@ms``). Runs of one fire never overlap each other (see ``State``). Text that is
    not a run id (``raftcron/core/runkey.py``) is its own fire."""
    key = RunKey.parse(rid)
    return rid if key is None else key.fire.format()


def _key(rid: str) -> RunKey:
    key = RunKey.parse(rid)
    if key is None:
        raise ValueError(f"not a run id: {rid!r}")
    return key


# Attempt N > 1 of a fire whose attempt N-1 failed, timed out or was lost.
TRIGGER_RETRY: Final = "retry"
# A job with ``after`` (no schedule of its own) run because its parents' fire settled.
TRIGGER_DEPENDENCY: Final = "dependency"
# ``on`` of a job with ``after``: which settled outcome of the parents runs it.
DEPENDENCY_ON: Final = ("success", "failure", "always")
# A fan-in child keeps at most this many scheduled times waiting for the rest of its
# parents; beyond that the oldest is recorded as skipped (with the outcomes it had).
DEPENDENCY_WAIT_LIMIT: Final = 100


def fire_variant(run: Run) -> str:
    """What tells a fire of ``run.job`` at ``run.scheduled_at_ms`` apart from another at the
    same time: ``""`` (schedule, catch-up), ``"~manual"`` or ``"~backfill-ID"``. Retries
    (``.N``) and instances (``~K``) keep their fire's variant; a dependency run's
    ``~after`` is dropped, so a chain keeps the variant of the fire that started it."""
    key = RunKey.parse(run.id)
    if key is None or key.job != run.job or key.scheduled_at_ms != run.scheduled_at_ms:
        return ""
    return key.variant


def due_ms(run: Run, spec: JobSpec) -> int:
    """When ``run`` was due, for lateness (metrics, ``late`` webhooks): its scheduled time
    plus the job's jitter offset; a dependency run (which carries its parents' scheduled
    time) when it was claimed, right after its parents' fire settled."""
    if run.trigger == TRIGGER_DEPENDENCY:
        return run.claimed_ms
    return run.scheduled_at_ms + jitter_offset_ms(spec.name, spec.jitter_ms)


def dependency_run_id(job: str, scheduled_at_ms: int, variant: str = "") -> str:
    """``job@ms~after`` (``variant`` inserted before ``~after``): never a scheduled,
    manual or backfill run id, so a dependency fire never collides with one."""
    return RunKey(job, scheduled_at_ms, variant=variant, after=True).format()


def jitter_offset_ms(name: str, jitter_ms: int) -> int:
    """The job's fixed jitter offset in ``[0, jitter_ms)``: a hash of its name.

    The same on every node and every Python process (SHA-256, not the salted ``hash()``),
    so every leader claims the job's fires at ``scheduled_at + offset``.
    """
    if jitter_ms <= 0:
        return 0
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % jitter_ms


def run_id(job: str, scheduled_at_ms: int, attempt: int = 1) -> str:
    """The run id of a fire: ``job@scheduled_at_ms`` (``.N`` appended for retry N > 1)."""
    return RunKey(job, scheduled_at_ms, attempt=attempt).format()


def retry_run_id(prev_id: str, prev_attempt: int) -> str:
    """The run id of the attempt after ``prev_id``: the first attempt's id (a scheduled or
    a manual one) with ``.N`` appended, e.g. ``j@ms`` -> ``j@ms.2`` -> ``j@ms.3``."""
    return replace(_key(prev_id), attempt=prev_attempt + 1).format()


def retry_backoff_ms(spec: JobSpec, failed_attempt: int) -> int:
    """How long after attempt ``failed_attempt`` ended the next one is due: the initial
    backoff doubled per earlier failure, capped by ``retry_backoff_max_ms``."""
    if spec.retry_backoff_ms <= 0:
        return 0
    exp = min(failed_attempt - 1, 40)  # 2**40 * 1 ms is past any cap
    return min(spec.retry_backoff_ms << exp, max(spec.retry_backoff_max_ms, 0))


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpSpec:
    """The request of an HTTP job (instead of a command). ``expect`` empty means any 2xx."""

    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""
    expect: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifyTarget:
    """One webhook of a job: POSTed a JSON body on each event in ``on``."""

    url: str
    on: tuple[str, ...] = NOTIFY_EVENTS


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """A job definition as the user wrote it (one ``[[jobs]]`` table), validated."""

    name: str
    schedule: str
    command: tuple[str, ...]
    timezone: str = "UTC"
    timeout_ms: int | None = None
    overlap: str = "allow"
    catchup_ms: int = DEFAULT_CATCHUP_MS
    catchup_mode: str = "all"  # CATCHUP_MODES
    jitter_ms: int = 0
    # Daylight saving time (the docstring of raftcron.core.schedule): a fire whose wall time falls
    # in a spring-forward gap runs at the first instant after it ("shift") or not at all
    # ("skip"); one in a fall-back repeated hour runs "once" (first occurrence) or "twice".
    dst_gap: str = "shift"
    dst_repeat: str = "once"
    retries: int = 0  # attempts after the first (failed, timed_out, lost: RETRY_STATUSES)
    retry_backoff_ms: int = DEFAULT_RETRY_BACKOFF_MS  # before attempt 2; doubles after
    retry_backoff_max_ms: int = DEFAULT_RETRY_BACKOFF_MAX_MS  # the cap
    retry_other_node: bool = False  # prefer a node other than the failed attempt's
    tags: tuple[tuple[str, str], ...] = ()
    lease_ms: int = DEFAULT_LEASE_MS
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None
    # An HTTP job: ``command`` is then empty (exactly one of the two is set).
    http: HttpSpec | None = None
    # Webhooks; None: the cluster's [notify] default (node config), () none at all.
    notify: tuple[NotifyTarget, ...] | None = None
    late_after_ms: int | None = None  # None: the cluster's [notify] late_after
    ping_url: str | None = None  # dead-man's-switch pings (healthchecks.io convention)
    # Where it runs: ``count`` instances of each fire on distinct matching live nodes
    # (COUNT_ALL: one on every matching live node); at most ``max_parallel`` live runs of
    # the job per node (None: no limit).
    count: int = 1
    max_parallel: int | None = None
    # An embedded Python job (raftcron.embed): ``"module:qualname"`` of the callable the
    # application registered under the job's name; ``command`` is then empty. Only the
    # application's own processes register it; "" for a command job.
    call: str = ""
    # Dependencies: the job runs when a fire of these jobs has settled (``schedule`` is
    # then ""): ``on`` = "success" (all parents succeeded), "failure" (at least one did not)
    # or "always". See state.py, "Dependencies".
    after: tuple[str, ...] = ()
    on: str = "success"
    # Isolation of a command job's process (raftcron/executor/runner.py): the account it
    # runs as (None: the agent's own), resource limits as sorted ``(LIMIT_KEYS name,
    # value)`` pairs, and the names of the agent's environment variables it is given (its
    # environment is otherwise a fixed minimal set, ``env`` and the RAFTCRON_* variables).
    user: str | None = None
    group: str | None = None
    limits: tuple[tuple[str, int], ...] = ()
    env_passthrough: tuple[str, ...] = ()
    # What a command job's process reads on its standard input ("": nothing, /dev/null);
    # a crontab line's text after its first unescaped ``%`` (raftcron/importers/crontab.py).
    stdin: str = ""
    description: str = ""  # what the job is for, in words (shown, never interpreted)


@dataclass(frozen=True, slots=True, kw_only=True)
class Backfill:
    """A job's backfill in progress: its fires in ``(cursor_ms, to_ms]`` are still to run.

    Fires are claimed one at a time, never beside another run of the job, and at most
    ``rate`` per second (``last_ms``: cluster time of the last claim).
    """

    id: str  # the request's idempotency key
    from_ms: int
    to_ms: int
    cursor_ms: int  # the last fire claimed (from_ms - 1 before the first)
    total: int  # fires in [from_ms, to_ms] when it was requested
    done: int = 0  # fires claimed so far
    rate: float = 1.0
    last_ms: int = 0
    requested_ms: int = 0


def backfill_ready_ms(bf: Backfill) -> int:
    """Cluster time from which the backfill's next fire may be claimed (its rate bound).

    Total: a rate so small that ``1000 / rate`` is infinite (5e-324 once came through the
    API), zero or NaN gives ``LAST_MS`` (never) instead of raising in ``apply`` or on the
    leader."""
    if not bf.done:
        return 0
    gap = 1000 / bf.rate if bf.rate > 0 else math.inf
    if not gap < LAST_MS:  # (also false for NaN)
        return LAST_MS
    return min(bf.last_ms + math.ceil(gap), LAST_MS)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobStats:
    """What the cluster knows of a job's runs that were given to a node (held a lease),
    updated when such a run's final record is applied; skipped, missed, paused and
    buffered records that never ran leave it alone.

    ``outcome``: the status of the last of them to end (one of ``COMPLETION_STATUSES``;
    "" before any), ``finished_ms`` when it ended. ``duration_ms``: finished minus started
    of the last of them that started (None before any). ``success_ms``: the latest end of
    a succeeded one (0 before any). Times are the executor's (``Complete``) or the
    cluster's (an expiry).
    """

    outcome: str = ""
    finished_ms: int = 0
    duration_ms: int | None = None
    success_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """A job in the replicated state: the spec plus what the cluster knows about it.

    ``watermark_ms`` is the latest scheduled fire the leader has considered (claimed,
    skipped or recorded as missed). No scheduled fire at or below it is ever claimed.
    """

    spec: JobSpec
    # "config" (the TOML file) or "embedded" (registered by the application embedding the
    # node: ``spec.call`` is set), both reconciled by the leader; or "api"
    source: str = "api"
    paused: bool = False
    pause_note: str = ""  # the operator's note with the last pause; "" when not paused
    watermark_ms: int = 0
    created_ms: int = 0
    updated_ms: int = 0
    # This job's BUFFERED runs as (run id, scheduled_at_ms), oldest first: granted one at
    # a time, in this order, each once the job has no live run.
    buffered: tuple[tuple[str, int], ...] = ()
    backfill: Backfill | None = None
    # This job's PENDING retries, in the order they were scheduled.
    retry: tuple[PendingRetry, ...] = ()
    # A job with ``after``: its PENDING dependency fires as (run id, scheduled_at_ms),
    # oldest first, each waiting for the planner to name a node (then claimed like a fire).
    deps: tuple[tuple[str, int], ...] = ()
    # A fan-in job (several ``after``): the parents' fires that have settled while others
    # of the same fire have not, oldest first (at most DEPENDENCY_WAIT_LIMIT).
    waiting: tuple[DependencyWait, ...] = ()
    # Why the leader could not compute this job's fires ("" = it can): set by a committed
    # ``MarkBroken``, cleared by a ``PutJob`` or a resume. While set, the job's scheduled
    # fires are recorded as missed ("broken: ..."); nothing of it is claimed.
    broken: str = ""
    broken_ms: int = 0  # cluster time it was marked broken
    # The job's last runs (``raftcron_job_last_*`` on /metrics): kept on the job, not read
    # from the ledger, which forgets old runs.
    stats: JobStats = JobStats()


def armed_due_ms(armed: Armed, spec: JobSpec) -> int:
    """When armed fire ``armed`` of the job ``spec`` is due: its time plus the job's
    jitter offset."""
    return armed.scheduled_at_ms + jitter_offset_ms(spec.name, spec.jitter_ms)


def arm_problem(job: Job) -> str:
    """Why ``job``'s scheduled fires are never armed ("" when they may be): only a
    single-instance process job on a schedule, neither paused nor broken, is."""
    spec = job.spec
    if not spec.schedule:
        return "it has no schedule"
    if job.paused or job.broken:
        return "it is paused or broken"
    if spec.call or spec.http is not None:
        return "it is not a process job"
    if spec.count != 1:
        return "it has more than one instance"
    if spec.lease_ms < ARM_MIN_LEASE_MS:
        return f"its lease is under {ARM_MIN_LEASE_MS // 1000}s"
    return ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DependencyWait:
    """One fire of a fan-in job's parents, partly settled: ``settled`` holds
    ``(parent job, its last run id, its status)`` for each parent settled so far."""

    scheduled_at_ms: int
    variant: str  # see fire_variant
    settled: tuple[tuple[str, str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingRetry:
    """A retry waiting in ``Job.retry``: its run (status ``pending``) is ``run``."""

    run: str
    scheduled_at_ms: int
    attempt: int
    due_ms: int  # cluster time: the failed attempt's end plus the backoff
    avoid: str = ""  # the node of the failed attempt (retry_other_node)
    instance: int = 1  # the instance of its fire it retries (``count``)


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One entry of the run ledger."""

    id: str
    job: str
    scheduled_at_ms: int
    status: str
    trigger: str = TRIGGER_SCHEDULE
    attempt: int = 1
    fence: int = 0
    node: str = ""
    claimed_ms: int = 0
    started_ms: int | None = None
    finished_ms: int | None = None
    exit_code: int | None = None
    output: str = ""
    reason: str = ""
    count: int = 1  # > 1 only for an aggregated "missed"/"paused" record covering many fires
    start_token: str = ""  # which executor attempt started it (see commands.Start)
    last_scheduled_ms: int | None = None  # an aggregated "paused" record: its newest fire
    # A dependency run (trigger "dependency") and its retries: the parents' run ids (the
    # last attempt of each), in the order of the job's ``after``.
    parents: tuple[str, ...] = ()
    # Instance ``instance`` of ``instances`` of its fire (``count``; 1 of 1 without it). A
    # skipped record of the instances that found no node covers ``count`` of them.
    instance: int = 1
    instances: int = 1

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """A fenced lease: on a run (key = run id) or, later, on a named lock.

    Leases carry no expiry time: the leader decides expiry on its own monotonic clock
    (docs/design.md, "Leases and fencing") and commits an ``expire`` command naming the fence.
    """

    key: str
    fence: int
    holder: str
    lease_ms: int
    granted_ms: int
    renewals: int = 0  # committed starts/renewals; an expiry must name the count it saw
    # A committed request to stop the run (kill endpoint, or overlap cancel/terminate):
    # its reason ("" = none), and whether it is SIGKILL at once (else SIGTERM, grace, SIGKILL).
    kill: str = ""
    kill_hard: bool = False


# Armed fires (docs/design.md, "Armed fires"): the leader reserves a scheduled fire for a
# node ARM_LEAD_MS before it is due, so that the node prepares the run and commits its
# fenced start ahead; the plan at the due time still decides. A plan more than
# ARM_GRACE_MS after the fire's time no longer takes the reservation (a fresh grant, as
# without arming; the same bound as an on-time claim, so an armed run's trigger is always
# "schedule"); apply refuses to arm a fire more than ARM_MAX_LEAD_MS ahead. A job whose
# lease is under ARM_MIN_LEASE_MS is not armed: its start ahead, whose trust window
# (docs/design.md, "Leases and fencing") must outlast the lead and the grace, would use
# up too much of it (3 s: a window of 2.7 s against 1.8 s).
ARM_LEAD_MS: Final = 800
ARM_MAX_LEAD_MS: Final = 5_000
ARM_GRACE_MS: Final = 1_000
ARM_MIN_LEASE_MS: Final = 3_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Armed:
    """A scheduled fire reserved for ``node`` ahead of its due time (``State.armed``, key
    = the run id its claim will have). ``fence`` is the fence its run gets if the plan at
    the due time grants it to ``node``; ``token`` is the executor's start token once its
    ``Start`` (naming this fence) committed ahead ("" until then): the grant then makes
    the run running at once, and the executor only sends the go."""

    run_id: str
    job: str
    scheduled_at_ms: int
    node: str
    fence: int
    armed_ms: int
    token: str = ""


@dataclass(slots=True, kw_only=True)
class Counters:
    """Cluster facts that only ever grow; part of the replicated state."""

    fence: int = 0
    stale_rejections: int = 0
    runs_recorded: int = 0
    # Named counters that are cluster facts, e.g. "outcome/<job>/<status>" (see state.py).
    extra: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------------------- locks

LOCK_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
LOCK_NAME_FIX: Final = "a letter or digit, then up to 127 letters, digits, '.', '_' or '-'"
DEFAULT_LOCK_TTL_MS: Final = 30_000
LOCK_MIN_TTL_MS: Final = 1_000
LOCK_MAX_TTL_MS: Final = 86_400_000  # a day
LOCK_MAX_WAIT_MS: Final = 3_600_000  # an hour
LOCK_MAX_WAITERS: Final = 1_000  # per lock
LOCK_MAX_HOLDER: Final = 256
LOCK_MAX_REQUEST: Final = 128
# A waiter whose wait ran out this long ago is abandoned (its API node died before it
# could cancel): the leader cancels it, and a release never grants the lock to it.
LOCK_WAIT_GRACE_MS: Final = 5_000
# How many finished lock requests are remembered (so a retried or late acquire cannot
# take the lock a second time, and a retried release is recognised as one).
LOCK_DONE_KEEP: Final = 1_024

# How a lock request ended (``State.lock_done``).
LOCK_RELEASED: Final = "released"
LOCK_EXPIRED: Final = "expired"
LOCK_CANCELLED: Final = "cancelled"
LOCK_REFUSED: Final = "refused"


def lock_problem(
    *, name: str, holder: str, ttl_ms: int, wait_ms: int, request: str = "r"
) -> str | None:
    """Why an acquire with these values is invalid, or ``None``. Shared by the API (400)
    and ``apply`` (which must refuse the same values deterministically)."""
    if not LOCK_NAME_RE.fullmatch(name):
        return f"{name!r} is not a valid lock name ({LOCK_NAME_FIX})"
    if not LOCK_MIN_TTL_MS <= ttl_ms <= LOCK_MAX_TTL_MS:
        return f"ttl must be between {LOCK_MIN_TTL_MS}ms and {LOCK_MAX_TTL_MS}ms, got {ttl_ms}ms"
    if not 0 <= wait_ms <= LOCK_MAX_WAIT_MS:
        return f"wait must be between 0 and {LOCK_MAX_WAIT_MS}ms, got {wait_ms}ms"
    if len(holder) > LOCK_MAX_HOLDER:
        return f"holder is longer than {LOCK_MAX_HOLDER} characters"
    if not request or len(request) > LOCK_MAX_REQUEST:
        return f"request id must be 1 to {LOCK_MAX_REQUEST} characters"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class LockWaiter:
    """A queued acquire. ``queued_ms`` is cluster time when it was queued."""

    request: str
    holder: str
    ttl_ms: int
    wait_ms: int
    queued_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Lock:
    """A held named lock and its FIFO queue. A lock with nobody holding it is not stored:
    when the holder ends, the head waiter is granted at once (or the entry goes)."""

    name: str
    fence: int
    holder: str
    request: str  # the acquire request that holds it (idempotency key)
    ttl_ms: int
    acquired_ms: int
    renewed_ms: int
    renewals: int = 0  # committed renewals of this grant (an expiry names the count it saw)
    waiters: tuple[LockWaiter, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class LockEnd:
    """How a lock request ended, remembered in ``State.lock_done`` (bounded), keyed by
    ``(lock name, request id)``."""

    fence: int  # 0 if it never held the lock
    outcome: str  # LOCK_RELEASED, LOCK_EXPIRED, LOCK_CANCELLED or LOCK_REFUSED


# ---------------------------------------------------------------------------- drain

# Who drained a member (``State.drained``): an operator (``raftcron drain``; it stays
# until ``raftcron undrain``, across the member's restarts), or the member itself while it
# shuts down on SIGTERM (it clears that mark when it starts again).
DRAIN_OPERATOR: Final = "operator"
DRAIN_SHUTDOWN: Final = "shutdown"
DRAIN_KINDS: Final = (DRAIN_OPERATOR, DRAIN_SHUTDOWN)
MAX_NODE_NAME: Final = 256  # a member name in a drain command (longer: refused)


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """A cluster member in the replicated membership (``State.members``): its name, Raft
    and API addresses (``host:port``), tags, and its incarnation (a number given once:
    a member seeded from the cluster file or added at run time gets the next one, and a
    removed member's name is never given again). ``added``: added at run time
    (``member_add``), not seeded from the cluster file (the feature gate does not wait
    for such a member before it has started and advertised its level)."""

    name: str
    raft: str
    api: str
    tags: tuple[tuple[str, str], ...] = ()
    incarnation: int = 0
    added: bool = False


MEMBER_ADD: Final = "add"
MEMBER_REMOVE: Final = "remove"


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberChange:
    """The last membership change (``State.member_change``): ``op`` (add, remove) of
    member ``name`` at Raft address ``raft``, asked with idempotency key ``request`` at
    cluster time ``since_ms``. ``done`` once the leader has carried it into Raft's own
    configuration (``member_changed``); until then no other change is accepted."""

    op: str
    name: str
    raft: str
    request: str
    since_ms: int
    done: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DrainMark:
    """A member that takes no new grants: drained by ``kind`` at cluster time ``since_ms``."""

    kind: str
    since_ms: int
