"""The replicated state machine: ``State.apply(command) -> Result``.

Invariants:

* ``apply`` is deterministic. Given the same sequence of command bytes every replica ends
  in the same state (``digest()`` equal), whatever order snapshots are taken and restored in.
* ``apply`` never raises on input: malformed or out-of-date commands return ``Rejected``
  with a code. A rejection may still count something (``stale_rejections``), deterministically.
* Cluster time ``now_ms`` only moves forward: ``now_ms = max(now_ms, command.at_ms)``.
* Fences rise strictly: every grant takes ``++counters.fence``. A lease operation must name
  the lease's current fence; anything else is stale.
* A scheduled fire ``(job, scheduled_at)`` is claimed at most once: a claim at or below the
  job's watermark, or for a run id already in the ledger, is rejected.
* Overlap: ``skip`` records a fire that falls due while the job has a live run as skipped;
  ``buffer_one``/``buffer_all`` record it as a ``buffered`` run (its run id is taken, so it
  cannot be claimed twice) queued on the job, or as skipped when the buffer is full (one
  fire for ``buffer_one``, ``BUFFER_ALL_LIMIT`` for ``buffer_all``). A job with buffered
  runs counts as busy even between runs, so fires keep their order. A ``buffered`` claim
  grants the head of the queue, and only while the job has no live run. Pausing or deleting
  the job records its buffered runs as paused or skipped: none is dropped silently.
* ``cancel_other``/``terminate_other``: a new fire while the job has a live run puts a stop
  request on that run's lease (``Lease.kill``; hard for terminate) and waits as the job's
  only buffered run (a newer fire supersedes it, and any pending retry, as skipped). The
  buffered claim is granted only once no run of the job is live, i.e. after the stopped
  run's completion or lease expiry has been applied.
* Retries: when a run ends ``failed``/``timed_out``/``lost`` (completion or expiry) and its
  job has attempts left, is not paused and the run was not asked to stop, attempt N+1 is
  recorded as ``pending`` (run id ``retry_run_id``) and listed on ``Job.retry`` with its due
  time, ``now_ms`` of that command plus the backoff. A ``retry`` claim grants it once due,
  and (unless overlap is ``allow``) only while the job has no live run.
* Instances (``count``): instance K > 1 of a fire (run id ``...~K``) is claimed only in
  the plan that claims its instance 1 (so the watermark that instance 1 moves never refuses
  it, and no instance is ever added to a fire later), never twice, never on a node that
  runs another live instance of the same fire, and never on a node that already runs
  ``max_parallel`` live runs of the job (such a claim is recorded skipped, "unschedulable").
  Overlap is per fire: a fire's own instances and their retries never count as the live
  run that ``skip``, ``buffer_*`` or ``cancel_other`` react to. Instances that found no
  node are one skipped record whose ``count`` is how many; every skipped "unschedulable:"
  record adds its count to the replicated ``unschedulable/<job>`` counter.
* ``Kill`` puts a stop request on a live run's lease (the executor acts on it; the lease
  expiry still ends a run whose executor is gone) or records a waiting (buffered, pending)
  run as ``killed`` at once. A run that was asked to stop is never retried.
* A fire of a paused job is recorded with status ``paused``; consecutive ones (nothing else
  recorded for the job in between, and no change to the job since the record was made) are
  one record whose ``count`` grows, so a long pause does not flood the ledger.
* The ledger is bounded: every live run, plus the newest ``history`` final runs per job;
  output tails only on the newest ``OUTPUT_KEEP`` of those.
* Records are immutable; containers are replaced entry by entry, so ``capture()`` can copy
  the containers shallowly on the tick thread and encode them elsewhere.
* Locks share the fence counter with runs. A lock is stored only while held; when its
  holder releases it (or the leader expires it) the head of its FIFO queue is granted in
  the same ``apply``, with a new fence. An acquire is keyed by its request id: while the
  request holds or waits, a retry returns the same grant or queue place; after it ended
  (``lock_done``, the last ``LOCK_DONE_KEEP``) a retry is refused, so a late or repeated
  proposal never takes the lock twice. A held lock is never taken from its holder except
  by its own fence (release) or the leader's expiry naming that fence.
* Dependencies: a job with ``after`` (and no schedule) gets one fire per fire of its
  parents, once that fire has *settled*: the parent's run for it is final and no retry of
  it is pending (a record covering several fires, missed or paused, counts once, at its
  first fire). A fire is ``(scheduled_at, variant)`` (``fire_variant``: scheduled,
  ``~manual`` or ``~backfill-ID``); a fan-in job waits (``Job.waiting``, bounded) until
  every parent has settled the same fire. Then ``on`` decides: ``success`` runs it when
  every parent succeeded, ``failure`` when at least one did not, ``always`` always; when
  it does not run, the fire is recorded as ``skipped`` naming the parents' outcomes. A
  fire that runs is recorded as a ``pending`` run ``dependency_run_id`` (trigger
  ``dependency``, ``parents`` = the parents' last run ids) queued on ``Job.deps``; the
  planner claims it with a node (``dependency`` claim) and it then goes through the
  job's overlap policy like any fire. A paused child records it as paused, a deleted one
  has nothing to fire. This runs at the end of ``apply``, after retries were decided,
  as a worklist: a settled dependency fire settles its own children in the same apply.
  A dependency run id is created at most once per apply and never when it is in the
  ledger, so even a cycle (refused by ``PutJob``) cannot loop.
* Drain: ``drained`` names the members that get no new grants (``Drain``), with who
  drained them: ``operator`` (until an operator's undrain) or ``shutdown`` (the member's
  own SIGTERM drain, which it clears when it starts again; it never replaces or clears an
  operator's mark). A plan that gives any instance of a fire (or a retry, a buffered head,
  a dependency or backfill fire) to a drained member is refused for that whole fire with
  ``drained`` before anything of it is recorded: the leader re-plans it from the committed
  state, so a plan made before the drain committed never grants to the drained member and
  loses nothing. Runs the member already holds go on under their leases. ``drained`` is in
  the snapshot only when it is not empty, so snapshots of states without it are as before.
* Configuration (``raftcron/reload.py``): ``config_hash`` is the ``config_hash`` of the
  cluster file last reconciled (the last entry of a ``SyncConfig`` carries it);
  ``member_hashes`` is the hash each member last reported of its own file
  (``ReportConfig``). Both are in the snapshot (key ``config``, last) only when set.
  ``member_versions`` is the raftcron version and feature level each member last
  advertised in its ``ReportConfig`` (``raftcron/core/features.py``; a member absent from
  it is level 0): the third item of ``config``, written only when one advertised, which
  nodes from before levels ignore when they load the snapshot. Those nodes apply the
  report without its version, so their replica lacks it: each member advertises again
  when it sees another member's advertisement change (``raftcron/reload.py``), and a
  replica rebuilt from their snapshot learns it back.
* Job stats (``Job.stats``): the final record of a run that held a lease (a completion,
  an expiry) sets its job's last outcome and end, the duration when it had started, and
  the last success time (the latest end of a succeeded run: never moves back). Nothing
  else changes them; a deleted job's go with it. They are the last field of a job's
  snapshot row, written only once set: a state without any encodes as before they
  existed, and an older snapshot loads with none.
"""

from __future__ import annotations

import hashlib
import io
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Final

import msgpack

from raftcron.core import commands as c
from raftcron.core import features
from raftcron.core.model import (
    BACKFILL_MAX_FIRES,
    BACKFILL_MAX_RATE,
    BUFFER_ALL_LIMIT,
    BUFFER_POLICIES,
    BUFFERED,
    CANCEL_POLICIES,
    CLAIMED,
    COMPLETION_STATUSES,
    DEFAULT_HISTORY,
    DEPENDENCY_WAIT_LIMIT,
    DRAIN_KINDS,
    DRAIN_OPERATOR,
    DRAIN_SHUTDOWN,
    KILLED,
    LIVE_STATUSES,
    LOCK_CANCELLED,
    LOCK_DONE_KEEP,
    LOCK_EXPIRED,
    LOCK_MAX_WAITERS,
    LOCK_REFUSED,
    LOCK_RELEASED,
    LOST,
    MAX_NODE_NAME,
    MISSED,
    OUTPUT_KEEP,
    OUTPUT_TAIL_BYTES,
    PAUSED,
    PENDING,
    RETRY_STATUSES,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    TRIGGER_BACKFILL,
    TRIGGER_BUFFERED,
    TRIGGER_DEPENDENCY,
    TRIGGER_MANUAL,
    TRIGGER_RETRY,
    Backfill,
    Counters,
    DependencyWait,
    DrainMark,
    Job,
    JobSpec,
    JobStats,
    Lease,
    Lock,
    LockEnd,
    LockWaiter,
    PendingRetry,
    Run,
    backfill_ready_ms,
    backfill_run_id,
    dependency_run_id,
    fire_of,
    fire_variant,
    instance_run_id,
    lock_problem,
    retry_backoff_ms,
    retry_run_id,
    run_id,
)
from raftcron.core.planner import schedule_of

SNAPSHOT_VERSION: Final = 1
MAX_LEVEL: Final = features.MAX_LEVEL
MAX_CONFIG_HASH: Final = 64  # characters of a config hash kept (raftcron/confighash.py: 16)


@dataclass(frozen=True, slots=True)
class Ok:
    value: Any = None


@dataclass(frozen=True, slots=True)
class Rejected:
    code: str
    message: str = ""


Result = Ok | Rejected


@dataclass(frozen=True, slots=True)
class PlanOutcome:
    granted: tuple[tuple[str, int, str], ...]  # (run id, fence, node)
    skipped: tuple[tuple[str, str], ...]  # (run id, reason)
    rejected: tuple[tuple[str, int, str], ...]  # (job, scheduled_at_ms, code)
    missed: tuple[str, ...]  # run ids of the missed records
    buffered: tuple[tuple[str, str], ...] = ()  # (run id, reason)
    paused: tuple[str, ...] = ()  # run ids of the paused records (new or grown)
    # live runs a new fire asked to stop (overlap = cancel_other/terminate_other)
    stopping: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LockGrant:
    """``request`` holds lock ``name`` with ``fence`` (an acquire, a renewal, a hand-over)."""

    name: str
    request: str
    fence: int
    holder: str
    ttl_ms: int
    renewals: int = 0


@dataclass(frozen=True, slots=True)
class LockQueued:
    """``request`` waits for ``name`` at ``position`` (1 = next); ``holder``/``fence`` hold it."""

    name: str
    request: str
    position: int
    holder: str
    fence: int


@dataclass(frozen=True, slots=True)
class LockEnded:
    """The holder with ``fence`` released the lock or lost it to expiry; ``granted`` is the
    head waiter that got it in the same apply. ``retry``: a repeat of a committed release."""

    name: str
    fence: int
    outcome: str
    granted: LockGrant | None
    retry: bool = False


@dataclass(frozen=True, slots=True)
class LockCancelled:
    name: str
    request: str
    was_waiting: bool


def outcome_key(job: str, status: str) -> str:
    """Key of the replicated per-job outcome counter in ``Counters.extra``."""
    return f"outcome/{job}/{status}"


def outcome_counts(extra: dict[str, int]) -> list[tuple[str, str, int]]:
    """``(job, status, count)`` for every outcome counter (a cluster fact, not a node's)."""
    out = []
    for key, n in extra.items():
        if key.startswith("outcome/"):
            job, _, status = key[len("outcome/") :].rpartition("/")
            out.append((job, status, n))
    return out


UNSCHEDULABLE: Final = "unschedulable:"  # the reason of a run no live node could take


def unschedulable_key(job: str) -> str:
    """Key of the replicated per-job counter of instances recorded as unschedulable."""
    return f"unschedulable/{job}"


def job_errors_key(job: str) -> str:
    """Key of the replicated per-job counter of times the job was marked broken."""
    return f"job_errors/{job}"


def job_errors_counts(extra: dict[str, int]) -> list[tuple[str, int]]:
    """``(job, count)`` of times each job was marked broken (a cluster fact)."""
    n = len("job_errors/")
    return [(k[n:], v) for k, v in extra.items() if k.startswith("job_errors/")]


def unschedulable_counts(extra: dict[str, int]) -> list[tuple[str, int]]:
    """``(job, count)`` of instances skipped as unschedulable (a cluster fact)."""
    n = len("unschedulable/")
    return [(k[n:], v) for k, v in extra.items() if k.startswith("unschedulable/")]


def unschedulable_reason(spec: JobSpec, instance: int, instances: int, single: bool = False) -> str:
    """Why instances ``instance..instances`` of a fire (only ``instance`` if ``single``)
    found no node. A job with one instance keeps the text it always had."""
    tags = ", ".join(f"{k}={v}" for k, v in spec.tags)
    cap = spec.max_parallel
    room = "" if cap is None else f" with fewer than max_parallel={cap} live run(s) of the job"
    if instances == 1:
        # the same text for every fire of every job with these tags: one copy
        return sys.intern(f"{UNSCHEDULABLE} no live node matches tags {{{tags}}}{room}")
    if single:  # a retry or buffered instance: its fire's other instances hold their nodes
        return sys.intern(
            f"{UNSCHEDULABLE} instance {instance} of {instances}: no live node matches tags "
            f"{{{tags}}}{room} and runs no other instance of the fire"
        )
    which = (
        f"instance {instance} of {instances}"
        if instance == instances
        else f"instances {instance}-{instances} of {instances}"
    )
    return sys.intern(
        f"{UNSCHEDULABLE} {which} not placed: {instance - 1} distinct live node(s) match "
        f"tags {{{tags}}}{room}"
    )


SYNCED_SOURCES: Final = ("config", "embedded")


def synced_source(spec: JobSpec) -> str:
    """The source of a job the leader reconciles: ``embedded`` for a Python callable."""
    return "embedded" if spec.call else "config"


def manual_run_id(job: str, at_ms: int) -> str:
    return f"{job}@{at_ms}~manual"


def tail(text: str, limit: int = OUTPUT_TAIL_BYTES) -> str:
    """The last ``limit`` bytes of ``text`` (UTF-8), cut on a character boundary."""
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= limit:
        return text
    return raw[-limit:].decode("utf-8", errors="ignore")


@dataclass(slots=True)
class State:
    now_ms: int = 0
    history_limit: int = DEFAULT_HISTORY
    jobs: dict[str, Job] = field(default_factory=dict)
    runs: dict[str, Run] = field(default_factory=dict)
    history: dict[str, tuple[str, ...]] = field(default_factory=dict)
    leases: dict[str, Lease] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)
    locks: dict[str, Lock] = field(default_factory=dict)
    # Finished lock requests, oldest first (insertion order is replicated state).
    lock_done: dict[tuple[str, str], LockEnd] = field(default_factory=dict)
    # Members that get no new grants (see "Drain"), by name.
    drained: dict[str, DrainMark] = field(default_factory=dict)
    # The config_hash of the file last reconciled ("" before any sync said one), and the
    # hash of its own file each member last reported (see "Configuration").
    config_hash: str = ""
    member_hashes: dict[str, str] = field(default_factory=dict)
    # Each member's advertised (raftcron version, feature level) (see "Configuration").
    member_versions: dict[str, tuple[str, int]] = field(default_factory=dict)
    # Derived index (rebuilt on restore, never serialized): job -> live run ids.
    live: dict[str, frozenset[str]] = field(default_factory=dict)
    # Derived index (rebuilt on restore, never serialized): job -> the jobs whose
    # ``after`` names it, sorted.
    children: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Transient, empty between applies: final runs recorded by the current apply whose job
    # has children (settled at its end, see "Dependencies").
    settled: list[Run] = field(default_factory=list, repr=False, compare=False)

    # ------------------------------------------------------------------ apply

    def apply_bytes(self, data: bytes) -> tuple[c.Command | None, Result]:
        cmd = c.decode(data)
        if cmd is None:
            return None, Rejected("bad_command", "undecodable command envelope")
        return cmd, self.apply(cmd)

    def apply(self, cmd: c.Command) -> Result:
        self.now_ms = max(self.now_ms, cmd.at_ms)
        try:
            res = self._apply(cmd)
            if self.settled:
                self._settle_dependencies()
        except Exception as exc:
            # A bug here must not stop a replica (or every replica: they all apply the same
            # entry, the same way). What was changed before the exception stays changed,
            # identically on every replica; the entry is answered as rejected.
            self.settled.clear()
            return Rejected("apply_failed", f"{type(exc).__name__}: {exc}")
        return res

    def _apply(self, cmd: c.Command) -> Result:
        match cmd:
            case c.PutJob():
                cycle = dependency_cycle(self.jobs, cmd.spec)
                if cycle:
                    return Rejected(
                        "dependency_cycle",
                        f"after: {' -> '.join(cycle)} is a cycle (a job cannot run after "
                        "itself, directly or through other jobs; remove one of these after "
                        "entries)",
                    )
                return self._put_job(cmd.spec, cmd.source, clear_broken=True)
            case c.DeleteJob():
                return self._delete_job(cmd.name)
            case c.SetPaused():
                return self._set_paused(cmd.name, cmd.paused, cmd.note)
            case c.SyncConfig():
                return self._sync_config(cmd)
            case c.Plan():
                return self._plan(cmd)
            case c.Start():
                return self._start(cmd)
            case c.Renew():
                return self._renew(cmd)
            case c.Complete():
                return self._complete(cmd)
            case c.Expire():
                return self._expire(cmd)
            case c.StartBackfill():
                return self._start_backfill(cmd)
            case c.CancelBackfill():
                return self._cancel_backfill(cmd.job)
            case c.MarkBroken():
                return self._mark_broken(cmd)
            case c.Kill():
                return self._kill(cmd)
            case c.Barrier():
                return Ok(cmd.nonce)
            case c.AcquireLock():
                return self._acquire_lock(cmd)
            case c.RenewLock():
                return self._renew_lock(cmd)
            case c.ReleaseLock():
                return self._release_lock(cmd)
            case c.ExpireLock():
                return self._expire_lock(cmd)
            case c.CancelLockWait():
                return self._cancel_lock_wait(cmd)
            case c.Drain():
                return self._drain(cmd)
            case c.ReportConfig():
                return self._report_config(cmd)
        return Rejected("bad_command", f"unknown command {type(cmd).__name__}")

    # ------------------------------------------------------------------ jobs

    def _put_job(self, spec: JobSpec, source: str, clear_broken: bool = False) -> Result:
        """``clear_broken``: a ``PutJob`` (the API) clears a broken flag even when the spec
        is unchanged; a config sync puts only what differs (and a change clears it too)."""
        old = self.jobs.get(spec.name)
        if old is None:
            self.jobs[spec.name] = Job(
                spec=spec,
                source=source,
                watermark_ms=self.now_ms,
                created_ms=self.now_ms,
                updated_ms=self.now_ms,
            )
            self._link_parents(spec.name, (), spec.after)
            return Ok("created")
        if old.spec == spec and old.source == source:
            if not (old.broken and clear_broken):
                return Ok("unchanged")
            self.jobs[spec.name] = replace(old, broken="", broken_ms=0, updated_ms=self.now_ms)
            return Ok("updated")
        if old.spec.after != spec.after:
            self._link_parents(spec.name, old.spec.after, spec.after)
            old = self._drop_waiting(old, "the job's after changed while this fire waited")
        # A schedule change restarts the watermark at now: old fires are not back-filled.
        # (created_ms stays: an @every schedule keeps counting from the job's creation.)
        watermark = old.watermark_ms
        if _when(old.spec) != _when(spec):
            watermark = max(watermark, self.now_ms)
        self.jobs[spec.name] = replace(
            old,
            spec=spec,
            source=source,
            watermark_ms=watermark,
            updated_ms=self.now_ms,
            broken="",
            broken_ms=0,
        )
        return Ok("updated")

    def _delete_job(self, name: str) -> Result:
        if name not in self.jobs:
            return Rejected("unknown_job", f"no job named {name!r}")
        # The job's run history stays in the ledger (still bounded by ``history``): what
        # ran, where and when must outlive the job's definition.
        job = self.jobs.pop(name)
        self._link_parents(name, job.spec.after, ())
        for rid, _ in job.buffered:
            self._end_buffered(rid, SKIPPED, "job deleted while this fire was buffered")
        for rid, _ in job.deps:
            self._end_buffered(rid, SKIPPED, "job deleted while this dependency fire waited")
        for pr in job.retry:
            self._end_buffered(pr.run, SKIPPED, "job deleted while this retry was pending")
        # A granted run that has not started must not start after the delete (its node may
        # still be waiting for a start slot): it ends here, its lease with it, so its Start
        # and renewals are refused as stale. A started run goes on under its lease.
        for rid in sorted(self.live.get(name, ())):  # sorted: the same order on every replica
            run = self.runs[rid]
            if run.status == CLAIMED:
                why = "job deleted before this run started"
                self._record_final(
                    replace(run, status=SKIPPED, finished_ms=self.now_ms, reason=why)
                )
        return Ok("deleted")

    def _set_paused(self, name: str, paused: bool, note: str = "") -> Result:
        job = self.jobs.get(name)
        if job is None:
            return Rejected("unknown_job", f"no job named {name!r}")
        note = note if paused else ""
        if not paused and job.broken:  # a resume clears the broken flag (paused or not)
            job = replace(job, broken="", broken_ms=0, updated_ms=self.now_ms)
            self.jobs[name] = job
        if job.paused != paused or job.pause_note != note:
            job = replace(job, paused=paused, pause_note=note, updated_ms=self.now_ms)
            if paused and job.buffered:
                for rid, _ in job.buffered:
                    self._end_buffered(rid, PAUSED, f"{_pause_reason(job)} (it was buffered)")
                job = replace(job, buffered=())
            if paused and job.retry:
                for pr in job.retry:
                    why = f"{_pause_reason(job)} (this retry was pending)"
                    self._end_buffered(pr.run, PAUSED, why)
                job = replace(job, retry=())
            if paused and job.deps:
                for rid, _ in job.deps:
                    why = f"{_pause_reason(job)} (this dependency fire waited for a node)"
                    self._end_buffered(rid, PAUSED, why)
                job = replace(job, deps=())
            self.jobs[name] = job
        return Ok(paused)

    def _sync_config(self, cmd: c.SyncConfig) -> Result:
        if cmd.history >= 1 and cmd.history != self.history_limit:
            self.history_limit = cmd.history  # (every other append trims as it goes)
            for name in list(self.history):
                self._trim_history(name)
        synced = self._synced_names()
        if cmd.partial:
            gone = [n for n in cmd.delete if n in synced]
        else:
            wanted = {s.name for s in cmd.specs}
            gone = [n for n in synced if n not in wanted]
        changed: list[str] = []
        for name in gone:
            self._delete_job(name)
            changed.append(name)
        for spec in cmd.specs:
            res = self._put_job(spec, synced_source(spec))
            if isinstance(res, Ok) and res.value != "unchanged":
                changed.append(spec.name)
        if cmd.config_hash:
            self.config_hash = cmd.config_hash[:MAX_CONFIG_HASH]
        return Ok(tuple(changed))

    def _synced_names(self) -> list[str]:
        """The jobs the leader reconciles from its own process: the config file's and the
        embedded application's (``raftcron.embed``)."""
        return [n for n, j in self.jobs.items() if j.source in SYNCED_SOURCES]

    def config_changes(self, specs: Iterable[JobSpec]) -> tuple[list[JobSpec], list[str]]:
        """What a sync of ``specs`` would change: the specs to put (new, different, or
        now owned by the file) and the synced jobs the file no longer has, by name."""
        wanted: set[str] = set()
        puts: list[JobSpec] = []
        for spec in specs:
            wanted.add(spec.name)
            job = self.jobs.get(spec.name)
            if job is None or job.spec != spec or job.source != synced_source(spec):
                puts.append(spec)
        return puts, sorted(n for n in self._synced_names() if n not in wanted)

    # ------------------------------------------------------------------ fires

    def _plan(self, cmd: c.Plan) -> Result:
        granted: list[tuple[str, int, str]] = []
        skipped: list[tuple[str, str]] = []
        rejected: list[tuple[str, int, str]] = []
        missed: list[str] = []
        buffered: list[tuple[str, str]] = []
        paused: list[str] = []
        stopping: list[str] = []
        for m in cmd.missed:
            job = self.jobs.get(m.job)
            if job is None:
                rejected.append((m.job, m.first_ms, "unknown_job"))
                continue
            if m.last_ms <= job.watermark_ms:
                rejected.append((m.job, m.first_ms, "already_considered"))
                continue
            if m.status == PAUSED:
                if not job.paused:  # resumed after the plan was made: re-planned normally
                    rejected.append((m.job, m.first_ms, "not_paused"))
                    continue
                self.jobs[m.job] = job = replace(job, watermark_ms=m.last_ms)
                rid = run_id(m.job, m.first_ms)
                paused.append(self._record_paused(job, rid, m.first_ms, m.last_ms, m.count))
                continue
            if m.status != MISSED:
                rejected.append((m.job, m.first_ms, "bad_status"))
                continue
            rid = run_id(m.job, m.first_ms)
            self.jobs[m.job] = replace(job, watermark_ms=m.last_ms)
            self._record_final(
                Run(
                    id=rid,
                    job=m.job,
                    scheduled_at_ms=m.first_ms,
                    status=MISSED,
                    claimed_ms=self.now_ms,
                    reason=m.reason,
                    count=m.count,
                )
            )
            missed.append(rid)
        # Fires with any instance for a drained member: refused whole (see "Drain").
        blocked = self._drained_fires(cmd.fires) if self.drained else frozenset()
        # Instance 1 of each fire accepted by this plan: (job, kind, scheduled_at) -> its run
        # id. Instance K > 1 of a fire is accepted only behind its instance 1 in the same
        # plan (never added to a fire later, and never refused by the watermark that
        # instance 1 has just moved).
        firsts: dict[tuple[str, str, int], str] = {}
        for fire in cmd.fires:
            if blocked and _fire_key(fire) in blocked:
                rejected.append((fire.job, fire.scheduled_at_ms, "drained"))
                continue
            job = self.jobs.get(fire.job)
            if job is None:
                rejected.append((fire.job, fire.scheduled_at_ms, "unknown_job"))
                continue
            if fire.trigger != TRIGGER_RETRY and not 1 <= fire.instance <= fire.instances:
                # (a retry names its instance; how many its fire has is on its run)
                rejected.append((fire.job, fire.scheduled_at_ms, "bad_instance"))
                continue
            if fire.trigger in (TRIGGER_BUFFERED, TRIGGER_BACKFILL):
                if fire.trigger == TRIGGER_BUFFERED:
                    code = self._claim_buffered(job, fire, granted, skipped)
                else:
                    code = self._claim_backfill(job, fire, granted, skipped, firsts)
                if code:
                    rejected.append((fire.job, fire.scheduled_at_ms, code))
                continue
            if fire.trigger == TRIGGER_RETRY:
                code = self._claim_retry(job, fire, granted, skipped)
                if code:
                    rejected.append((fire.job, fire.scheduled_at_ms, code))
                continue
            dep: Run | None = None
            if fire.trigger == TRIGGER_DEPENDENCY and fire.instance > 1:
                # (instance K of a dependency fire follows its instance 1, taken just now)
                head = firsts.get((fire.job, TRIGGER_DEPENDENCY, fire.scheduled_at_ms))
                dep = None if head is None else self.runs.get(head)
                if dep is None:
                    rejected.append((fire.job, fire.scheduled_at_ms, "no_first_instance"))
                    continue
            elif fire.trigger == TRIGGER_DEPENDENCY:
                dep = self._take_dependency(job, fire.scheduled_at_ms)
                if dep is None:
                    rejected.append((fire.job, fire.scheduled_at_ms, "not_pending"))
                    continue
                job = self.jobs[fire.job]
            manual = fire.trigger == TRIGGER_MANUAL
            first = (
                manual_run_id(fire.job, fire.scheduled_at_ms)
                if manual
                else run_id(fire.job, fire.scheduled_at_ms, fire.attempt)
            )
            if dep is not None:  # from here on, a fire like any other (overlap, pause)
                first = fire_of(dep.id)
            rid = instance_run_id(first, fire.instance)
            if rid in self.runs:
                rejected.append((fire.job, fire.scheduled_at_ms, "duplicate"))
                continue
            kind = TRIGGER_MANUAL if manual else TRIGGER_DEPENDENCY if dep is not None else ""
            key = (fire.job, kind, fire.scheduled_at_ms)
            if fire.instance > 1:
                if firsts.get(key) != first:
                    rejected.append((fire.job, fire.scheduled_at_ms, "no_first_instance"))
                    continue
            elif not manual and dep is None:
                if fire.attempt == 1 and fire.scheduled_at_ms <= job.watermark_ms:
                    rejected.append((fire.job, fire.scheduled_at_ms, "already_considered"))
                    continue
                self.jobs[fire.job] = job = replace(
                    job, watermark_ms=max(job.watermark_ms, fire.scheduled_at_ms)
                )
            firsts[key] = first
            if job.paused and not manual:
                if fire.instance == 1:  # one paused record covers every instance
                    t = fire.scheduled_at_ms
                    paused.append(self._record_paused(job, rid, t, t, 1))
                continue
            base = Run(
                id=rid,
                job=fire.job,
                scheduled_at_ms=fire.scheduled_at_ms,
                status=CLAIMED,
                trigger=fire.trigger,
                attempt=fire.attempt,
                claimed_ms=self.now_ms,
                instance=fire.instance,
                instances=fire.instances,
            )
            if dep is not None:
                base = replace(base, parents=dep.parents, reason=dep.reason)
            reason = self._skip_reason(job, fire, first)
            if reason:
                # no node: this record covers the instances that found none
                n = 1 if fire.node else fire.instances - fire.instance + 1
                self._record_final(replace(base, status=SKIPPED, reason=reason, count=n))
                skipped.append((rid, reason))
                continue
            if job.spec.overlap in CANCEL_POLICIES:
                job = self._supersede(job, rid)
                live = self._live_other(fire.job, first)
                if live:
                    policy = job.spec.overlap
                    for other in live:
                        why = f"overlap={policy}: stopped for the newer {fire.trigger} fire {rid}"
                        hard = policy == "terminate_other"
                        if self._request_kill(other, why, hard) and other not in stopping:
                            stopping.append(other)
                    why = (
                        f"{fire.trigger} fire buffered: waiting for {', '.join(live)} to stop "
                        f"(overlap={policy})"
                    )
                    self.runs[rid] = replace(
                        base, status=BUFFERED, trigger=TRIGGER_BUFFERED, reason=why
                    )
                    # (what still waits is this fire's other instances: see _supersede)
                    entry = (rid, fire.scheduled_at_ms)
                    self.jobs[fire.job] = replace(job, buffered=(*job.buffered, entry))
                    buffered.append((rid, why))
                    continue
                granted.append(self._grant(job, base, fire.node))
                continue
            behind = self._buffer_behind(job, first)
            if behind:
                why = (
                    f"{fire.trigger} fire buffered: due while {behind} (overlap={job.spec.overlap})"
                )
                self.runs[rid] = replace(
                    base, status=BUFFERED, trigger=TRIGGER_BUFFERED, reason=why
                )
                self.jobs[fire.job] = replace(
                    job, buffered=(*job.buffered, (rid, fire.scheduled_at_ms))
                )
                buffered.append((rid, why))
                continue
            granted.append(self._grant(job, base, fire.node))
        return Ok(
            PlanOutcome(
                tuple(granted),
                tuple(skipped),
                tuple(rejected),
                tuple(missed),
                tuple(buffered),
                tuple(paused),
                tuple(stopping),
            )
        )

    def _drained_fires(self, fires: Iterable[c.Fire]) -> frozenset[tuple[str, str, int, int]]:
        return frozenset(_fire_key(f) for f in fires if f.node and f.node in self.drained)

    def _grant(self, job: Job, run: Run, node: str) -> tuple[str, int, str]:
        self.counters.fence += 1
        fence = self.counters.fence
        self.runs[run.id] = replace(
            run, status=CLAIMED, fence=fence, node=node, claimed_ms=self.now_ms
        )
        self.leases[run.id] = Lease(
            key=run.id,
            fence=fence,
            holder=node,
            lease_ms=job.spec.lease_ms,
            granted_ms=self.now_ms,
        )
        self.live[run.job] = self.live.get(run.job, frozenset()) | {run.id}
        return (run.id, fence, node)

    def _live_other(self, name: str, fire: str) -> list[str]:
        """The live runs of job ``name`` that belong to another fire than ``fire`` (the
        instances of one fire, and their retries, never count as overlapping)."""
        return sorted(r for r in self.live.get(name, ()) if fire_of(r) != fire)

    def _placement_problem(self, job: Job, node: str, fire: str) -> str:
        """Why run of ``fire`` may not go to ``node`` now ("" if it may): the node runs
        another instance of the same fire, or ``max_parallel`` runs of the job. The
        planner never asks for either; this is the deterministic re-check of a plan made
        from a stale view."""
        name = job.spec.name
        here = sorted(
            r for r in self.live.get(name, ()) if (run := self.runs.get(r)) and run.node == node
        )
        same = [r for r in here if fire_of(r) == fire]
        if same:
            return f"unschedulable: {node} already runs {same[0]}, an instance of the same fire"
        cap = job.spec.max_parallel
        if cap is not None and len(here) >= cap:
            return (
                f"unschedulable: {node} already runs max_parallel={cap} live run(s) of "
                f"{name} ({', '.join(here[:3])}{', ...' if len(here) > 3 else ''})"
            )
        return ""

    def _skip_reason(self, job: Job, fire: c.Fire, first: str) -> str:
        """Why a new fire (instance ``fire.instance``; ``first`` is its instance 1's run
        id) is skipped, or "". Overlap is per fire: the other instances of the same fire
        are not "another run" (``skip`` never skips instance 2 because instance 1 runs)."""
        if not fire.node:
            return unschedulable_reason(job.spec, fire.instance, fire.instances)
        problem = self._placement_problem(job, fire.node, first)
        if problem:
            return problem
        policy = job.spec.overlap
        live = self._live_other(job.spec.name, first)
        if policy == "skip" and live:
            return f"overlap=skip: {live[0]} is still running"
        others = [b for b in job.buffered if fire_of(b[0]) != first]
        if policy == "buffer_one" and others:
            return f"overlap=buffer_one: {others[0][0]} is already buffered" + (
                f" behind {live[0]}" if live else ""
            )
        if policy == "buffer_all" and len(job.buffered) >= BUFFER_ALL_LIMIT:
            return (
                f"overlap=buffer_all: the buffer is full ({BUFFER_ALL_LIMIT} fires wait, "
                f"the oldest {job.buffered[0][0]})"
            )
        return ""

    def _buffer_behind(self, job: Job, first: str) -> str:
        """What a new fire of ``job`` would have to wait for ("" if it may run now)."""
        if job.spec.overlap not in BUFFER_POLICIES:
            return ""
        live = self._live_other(job.spec.name, first)
        if live:
            return f"{live[0]} was running"
        if job.buffered:
            return f"{job.buffered[-1][0]} was buffered"
        return ""

    def _claim_buffered(
        self,
        job: Job,
        fire: c.Fire,
        granted: list[tuple[str, int, str]],
        skipped: list[tuple[str, str]],
    ) -> str:
        """Grant (or, with no node, skip) the head of ``job``'s buffer; a rejection code."""
        if not job.buffered or job.buffered[0][1] != fire.scheduled_at_ms:
            return "not_buffered"
        rid = job.buffered[0][0]
        if self._live_other(job.spec.name, fire_of(rid)):
            return "busy"  # (the head fire's other instances may be live: they go together)
        self.jobs[job.spec.name] = job = replace(job, buffered=job.buffered[1:])
        run = self.runs.get(rid)
        if run is None or run.status != BUFFERED:
            return "not_buffered"  # cannot happen; the entry is dropped so it cannot wedge
        reason = (
            self._placement_problem(job, fire.node, fire_of(rid))
            if fire.node
            else unschedulable_reason(job.spec, run.instance, run.instances, single=True)
        )
        if reason:
            self._end_buffered(rid, SKIPPED, reason)
            skipped.append((rid, reason))
            return ""
        granted.append(self._grant(job, run, fire.node))
        return ""

    def _claim_backfill(
        self,
        job: Job,
        fire: c.Fire,
        granted: list[tuple[str, int, str]],
        skipped: list[tuple[str, str]],
        firsts: dict[tuple[str, str, int], str],
    ) -> str:
        """Grant (or, with no node, skip) the next fire of ``job``'s backfill; a rejection
        code. The backfill ends with its last fire. Instance K > 1 of that fire follows
        its instance 1 in the same plan (``firsts``)."""
        bf = job.backfill
        t = fire.scheduled_at_ms
        key = (job.spec.name, TRIGGER_BACKFILL, t)
        if fire.instance > 1:
            first = firsts.get(key)
            if first is None:
                return "no_first_instance"
            rid = instance_run_id(first, fire.instance)
            head = self.runs.get(first)
            if rid in self.runs or head is None:
                return "duplicate"
            run = replace(
                head,
                id=rid,
                status=CLAIMED,
                fence=0,
                node="",
                instance=fire.instance,
                instances=fire.instances,
                count=1,
                claimed_ms=self.now_ms,
            )
            why = (
                self._placement_problem(job, fire.node, first)
                if fire.node
                else unschedulable_reason(job.spec, fire.instance, fire.instances)
            )
            if why:
                n = 1 if fire.node else fire.instances - fire.instance + 1
                self._record_final(
                    replace(run, status=SKIPPED, reason=f"{why}; {head.reason}", count=n)
                )
                skipped.append((rid, why))
                return ""
            granted.append(self._grant(job, run, fire.node))
            return ""
        if bf is None or job.paused:
            return "no_backfill"
        sched = schedule_of(job.spec, job.created_ms)
        if t > bf.to_ms or t != sched.next_after(bf.cursor_ms):
            return "not_next"
        if self.live.get(job.spec.name) or (job.buffered and job.spec.overlap != "allow"):
            return "busy"
        if self.now_ms < backfill_ready_ms(bf):
            return "too_soon"
        done = bf.done + 1
        reason = f"backfill {bf.id}: fire {done} of {bf.total}"
        try:
            last = sched.next_after(t) > bf.to_ms
        except ValueError:  # no fire after t before year 9999
            last = True
        nxt = None if last else replace(bf, cursor_ms=t, done=done, last_ms=self.now_ms)
        self.jobs[job.spec.name] = job = replace(job, backfill=nxt)
        run = Run(
            id=backfill_run_id(job.spec.name, t, bf.id),
            job=job.spec.name,
            scheduled_at_ms=t,
            status=CLAIMED,
            trigger=TRIGGER_BACKFILL,
            claimed_ms=self.now_ms,
            reason=reason,
            instances=fire.instances,
        )
        if run.id in self.runs:
            return "duplicate"
        firsts[key] = run.id
        if not fire.node:
            why = unschedulable_reason(job.spec, 1, fire.instances)
            n = fire.instances
            self._record_final(replace(run, status=SKIPPED, reason=f"{why}; {reason}", count=n))
            skipped.append((run.id, why))
            return ""
        granted.append(self._grant(job, run, fire.node))
        return ""

    def _start_backfill(self, cmd: c.StartBackfill) -> Result:
        job = self.jobs.get(cmd.job)
        if job is None:
            return Rejected("unknown_job", f"no job named {cmd.job!r}")
        if not job.spec.schedule:
            return Rejected(
                "bad_backfill",
                f"{cmd.job} runs after {', '.join(job.spec.after)} and has no schedule of its "
                "own: backfill its parents (their fires run it)",
            )
        bf = job.backfill
        if bf is not None:
            if bf.id == cmd.id:
                return Ok(bf)  # the same request again
            return Rejected("backfill_running", f"{cmd.job} already has backfill {bf.id} running")
        if not 0 < cmd.rate <= BACKFILL_MAX_RATE:
            return Rejected(
                "bad_backfill", f"rate must be above 0 and at most {BACKFILL_MAX_RATE:g}"
            )
        if cmd.to_ms > self.now_ms or cmd.from_ms > cmd.to_ms:
            return Rejected("bad_backfill", "the range must be in the past, from <= to")
        try:
            fires = schedule_of(job.spec, job.created_ms).fires_between(
                cmd.from_ms - 1, cmd.to_ms, BACKFILL_MAX_FIRES + 1
            )
        except ValueError as exc:
            return Rejected("bad_backfill", str(exc))
        if not fires:
            return Rejected("bad_backfill", f"{cmd.job} has no fire in that range")
        if len(fires) > BACKFILL_MAX_FIRES:
            return Rejected(
                "bad_backfill", f"the range has more than {BACKFILL_MAX_FIRES} fires; split it"
            )
        bf = Backfill(
            id=cmd.id,
            from_ms=cmd.from_ms,
            to_ms=cmd.to_ms,
            cursor_ms=cmd.from_ms - 1,
            total=len(fires),
            rate=cmd.rate,
            requested_ms=self.now_ms,
        )
        self.jobs[cmd.job] = replace(job, backfill=bf)
        return Ok(bf)

    def _mark_broken(self, cmd: c.MarkBroken) -> Result:
        job = self.jobs.get(cmd.job)
        if job is None:
            return Rejected("unknown_job", f"no job named {cmd.job!r}")
        if job.broken:
            return Ok(False)  # already broken: the first reason stays
        if job.updated_ms != cmd.updated_ms:
            return Rejected("stale", f"{cmd.job} changed since the leader evaluated it")
        self.jobs[cmd.job] = replace(job, broken=cmd.reason or "error", broken_ms=self.now_ms)
        key = job_errors_key(cmd.job)
        self.counters.extra[key] = self.counters.extra.get(key, 0) + 1
        return Ok(True)

    def _cancel_backfill(self, name: str) -> Result:
        job = self.jobs.get(name)
        if job is None:
            return Rejected("unknown_job", f"no job named {name!r}")
        if job.backfill is None:
            return Rejected("no_backfill", f"{name} has no backfill running")
        self.jobs[name] = replace(job, backfill=None)
        return Ok(job.backfill)

    def _end_buffered(self, rid: str, status: str, reason: str) -> None:
        """Record a waiting (buffered or pending) run as final: it never got a lease."""
        run = self.runs.get(rid)
        if run is not None and run.status in (BUFFERED, PENDING):
            self._record_final(replace(run, status=status, reason=f"{reason}; {run.reason}"))

    def _supersede(self, job: Job, rid: str) -> Job:
        """overlap = cancel_other/terminate_other: the newest fire ``rid`` wins; what waited
        (a buffered fire, pending retries) is recorded as skipped."""
        if not job.buffered and not job.retry:
            return job
        policy = job.spec.overlap
        fire = fire_of(rid)
        keep = tuple(b for b in job.buffered if fire_of(b[0]) == fire)  # its own instances
        for old, _ in job.buffered:
            if fire_of(old) != fire:
                self._end_buffered(
                    old, SKIPPED, f"overlap={policy}: superseded by the newer fire {rid}"
                )
        for pr in job.retry:
            self._end_buffered(pr.run, SKIPPED, f"overlap={policy}: superseded by the fire {rid}")
        job = replace(job, buffered=keep, retry=())
        self.jobs[job.spec.name] = job
        return job

    def _request_kill(self, rid: str, reason: str, hard: bool) -> bool:
        """Put a stop request on live run ``rid``'s lease; False if it has none (any more)."""
        lease = self.leases.get(rid)
        if lease is None:
            return False
        if not lease.kill:
            self.leases[rid] = replace(lease, kill=reason, kill_hard=hard)
        elif hard and not lease.kill_hard:
            self.leases[rid] = replace(lease, kill_hard=True)
        return True

    def _claim_retry(
        self,
        job: Job,
        fire: c.Fire,
        granted: list[tuple[str, int, str]],
        skipped: list[tuple[str, str]],
    ) -> str:
        """Grant (or, with no node, skip) the pending retry ``fire`` names; a rejection code."""
        name = job.spec.name
        i = next(
            (
                k
                for k, p in enumerate(job.retry)
                if p.scheduled_at_ms == fire.scheduled_at_ms
                and p.attempt == fire.attempt
                and p.instance == fire.instance
            ),
            -1,
        )
        if i < 0:
            return "not_pending"
        pr = job.retry[i]
        if pr.due_ms > self.now_ms:
            return "not_due"
        if job.spec.overlap != "allow" and self._live_other(name, fire_of(pr.run)):
            return "busy"  # never beside another fire's run of a job that forbids it
        self.jobs[name] = job = replace(job, retry=job.retry[:i] + job.retry[i + 1 :])
        run = self.runs.get(pr.run)
        if run is None or run.status != PENDING:
            return "not_pending"  # cannot happen; the entry is dropped so it cannot wedge
        reason = (
            self._placement_problem(job, fire.node, fire_of(pr.run))
            if fire.node
            else unschedulable_reason(job.spec, run.instance, run.instances, single=True)
        )
        if reason:
            self._end_buffered(pr.run, SKIPPED, reason)
            skipped.append((pr.run, reason))
            return ""
        granted.append(self._grant(job, run, fire.node))
        return ""

    def _schedule_retry(self, run: Run, kill: str) -> None:
        """After ``run`` ended as failed/timed_out/lost: attempt N+1 as a pending run, due
        the job's backoff after now (cluster time, from the command), while the job has
        retries left. A kill request, a pause or a deleted job means no retry (the ended
        run's reason says so)."""
        if run.status not in RETRY_STATUSES:
            return
        job = self.jobs.get(run.job)
        if job is None or run.attempt > job.spec.retries:
            return
        spec = job.spec
        note = ""
        if kill:
            note = "no retry: it was asked to stop"
        elif job.paused:
            note = f"no retry: {_pause_reason(job)}"
        if note:
            self.runs[run.id] = replace(run, reason="; ".join(r for r in (run.reason, note) if r))
            return
        attempt = run.attempt + 1
        rid = retry_run_id(run.id, run.attempt)
        if rid in self.runs:
            return  # cannot happen: each attempt ends once
        delay = retry_backoff_ms(spec, run.attempt)
        code = "" if run.exit_code is None else f" (exit code {run.exit_code})"
        reason = (
            f"retry {attempt - 1} of {spec.retries}: {run.id} {run.status}{code}; "
            f"due {delay / 1000:g}s after it ended"
        )
        if spec.retry_other_node and run.node:
            reason += f", preferably not on {run.node}"
        self.runs[rid] = Run(
            id=rid,
            job=run.job,
            scheduled_at_ms=run.scheduled_at_ms,
            status=PENDING,
            trigger=TRIGGER_RETRY,
            attempt=attempt,
            claimed_ms=self.now_ms,
            reason=reason,
            parents=run.parents,
            instance=run.instance,
            instances=run.instances,
        )
        pending = PendingRetry(
            run=rid,
            scheduled_at_ms=run.scheduled_at_ms,
            attempt=attempt,
            due_ms=self.now_ms + delay,
            avoid=run.node if spec.retry_other_node else "",
            instance=run.instance,
        )
        self.jobs[run.job] = replace(job, retry=(*job.retry, pending))

    def _record_paused(self, job: Job, rid: str, first_ms: int, last_ms: int, count: int) -> str:
        """Record ``count`` fires of paused ``job`` (``first_ms..last_ms``): added to the
        job's newest record if that is a paused record made during this pause, else a new
        record ``rid``. Returns the record's run id."""
        name = job.spec.name
        reason = _pause_reason(job)
        ids = self.history.get(name, ())
        newest = self.runs.get(ids[-1]) if ids else None
        if (
            newest is not None
            and newest.status == PAUSED
            and newest.reason == reason
            and newest.claimed_ms >= job.updated_ms
            and newest.trigger != TRIGGER_BUFFERED
        ):
            last = max(last_ms, newest.last_scheduled_ms or newest.scheduled_at_ms)
            self.runs[newest.id] = replace(
                newest, count=newest.count + count, last_scheduled_ms=last
            )
            key = outcome_key(name, PAUSED)
            self.counters.extra[key] = self.counters.extra.get(key, 0) + count
            return newest.id
        self._record_final(
            Run(
                id=rid,
                job=name,
                scheduled_at_ms=first_ms,
                status=PAUSED,
                claimed_ms=self.now_ms,
                reason=reason,
                count=count,
                last_scheduled_ms=last_ms,
            )
        )
        return rid

    # ------------------------------------------------------------------ dependencies

    def _link_parents(self, name: str, old: Iterable[str], new: Iterable[str]) -> None:
        """Keep the ``children`` index in step with job ``name``'s ``after``."""
        for parent in set(old) - set(new):
            kids = tuple(k for k in self.children.get(parent, ()) if k != name)
            if kids:
                self.children[parent] = kids
            else:
                self.children.pop(parent, None)
        for parent in set(new) - set(old):
            self.children[parent] = tuple(sorted({*self.children.get(parent, ()), name}))

    def _rebuild_children(self) -> None:
        self.children = {}
        for name in sorted(self.jobs):
            self._link_parents(name, (), self.jobs[name].spec.after)

    def descendants(self, names: Iterable[str]) -> set[str]:
        """Every job that runs after one of ``names``, directly or through others."""
        out: set[str] = set()
        todo = [k for n in names for k in self.children.get(n, ())]
        while todo:
            name = todo.pop()
            if name not in out:
                out.add(name)
                todo.extend(self.children.get(name, ()))
        return out

    def _drop_waiting(self, job: Job, why: str) -> Job:
        """Record the fan-in fires ``job`` waits for as skipped (with what had settled)."""
        for w in job.waiting:
            self._record_dependency_skip(job, w, why)
        job = replace(job, waiting=())
        self.jobs[job.spec.name] = job
        return job

    def _record_dependency_skip(self, job: Job, w: DependencyWait, why: str) -> None:
        rid = dependency_run_id(job.spec.name, w.scheduled_at_ms, w.variant)
        if rid in self.runs:
            return
        got = ", ".join(f"{r} {st}" for _, r, st in w.settled) or "none"
        missing = [p for p in job.spec.after if p not in {p for p, _, _ in w.settled}]
        self._record_final(
            Run(
                id=rid,
                job=job.spec.name,
                scheduled_at_ms=w.scheduled_at_ms,
                status=SKIPPED,
                trigger=TRIGGER_DEPENDENCY,
                claimed_ms=self.now_ms,
                parents=tuple(r for _, r, _ in w.settled),
                reason=f"{why}: settled {got}; still waiting for {', '.join(missing) or 'none'}",
            )
        )

    def _take_dependency(self, job: Job, scheduled_at_ms: int) -> Run | None:
        """Take the head of ``job``'s dependency fires (it must be at ``scheduled_at_ms``)
        off the queue and out of the ledger, to be claimed as a fire; None if it is not."""
        if not job.deps or job.deps[0][1] != scheduled_at_ms:
            return None
        rid = job.deps[0][0]
        self.jobs[job.spec.name] = replace(job, deps=job.deps[1:])
        run = self.runs.get(rid)
        if run is None or run.status != PENDING:
            return None  # cannot happen; the entry is dropped so it cannot wedge
        del self.runs[rid]
        return run

    def _settle_dependencies(self) -> None:
        """Give the children of every fire settled by this apply their fire (see the module
        docstring). A worklist: what it records may settle further children."""
        created: set[str] = set()
        i = 0
        while i < len(self.settled):
            run = self.runs.get(self.settled[i].id, self.settled[i])
            i += 1
            nxt = self.runs.get(retry_run_id(run.id, run.attempt))
            if nxt is not None and nxt.status == PENDING and nxt.trigger == TRIGGER_RETRY:
                continue  # not settled: its retry decides
            for child in self.children.get(run.job, ()):
                self._parent_settled(child, run, created)
        self.settled.clear()

    def _fire_outcome(self, run: Run) -> tuple[str, str] | None:
        """The outcome of the fire ``run`` is an instance of (``count`` > 1): its first
        instance's run id, and ``succeeded`` only if every instance's last attempt
        succeeded (else the first other final status); None while any is not settled."""
        base = fire_of(run.id)
        status = SUCCEEDED
        covered = 0  # instances up to here covered by a skipped shortfall record
        for k in range(1, run.instances + 1):
            rid = instance_run_id(base, k)
            last = self.runs.get(rid)
            if last is None and k <= covered:
                continue
            if last is None:
                return None
            if last.status == SKIPPED and last.count > 1:
                covered = k + last.count - 1
            while (nxt := self.runs.get(retry_run_id(last.id, last.attempt))) is not None:
                last = nxt
            if not last.final:
                return None
            if status == SUCCEEDED and last.status != SUCCEEDED:
                status = last.status
        return base, status

    def _parent_settled(self, child: str, run: Run, created: set[str]) -> None:
        job = self.jobs.get(child)
        if job is None or run.job not in job.spec.after:
            return
        t, variant = run.scheduled_at_ms, fire_variant(run)
        outcome = (run.job, run.id, run.status)
        if run.instances > 1:  # a fire of a job with count: settled once every instance is
            whole = self._fire_outcome(run)
            if whole is None:
                return
            outcome = (run.job, *whole)
        after = job.spec.after
        if len(after) > 1:
            i = next(
                (
                    k
                    for k, w in enumerate(job.waiting)
                    if (w.scheduled_at_ms, w.variant) == (t, variant)
                ),
                -1,
            )
            w = (
                job.waiting[i]
                if i >= 0
                else DependencyWait(scheduled_at_ms=t, variant=variant, settled=())
            )
            if all(p != run.job for p, _, _ in w.settled):
                w = replace(w, settled=(*w.settled, outcome))
            rest = job.waiting[:i] + job.waiting[i + 1 :] if i >= 0 else job.waiting
            have = {p for p, _, _ in w.settled}
            if not all(p in have for p in after):
                waiting = (*rest, w) if i < 0 else (*rest[:i], w, *rest[i:])
                over = waiting[: max(0, len(waiting) - DEPENDENCY_WAIT_LIMIT)]
                self.jobs[child] = job = replace(job, waiting=waiting[len(over) :])
                for old in over:
                    why = f"more than {DEPENDENCY_WAIT_LIMIT} fires of the parents waited"
                    self._record_dependency_skip(job, old, why)
                return
            self.jobs[child] = job = replace(job, waiting=rest)
            by_parent = {p: (p, r, st) for p, r, st in w.settled}
            settled = tuple(by_parent[p] for p in after)
        else:
            settled = (outcome,)
        rid = dependency_run_id(child, t, variant)
        if rid in self.runs or rid in created:
            return
        created.add(rid)
        runs, why = dependency_decision(job.spec.on, settled)
        parents = tuple(r for _, r, _ in settled)
        if job.paused:
            self._record_paused(job, rid, t, t, 1)
            return
        base = Run(
            id=rid,
            job=child,
            scheduled_at_ms=t,
            status=PENDING,
            trigger=TRIGGER_DEPENDENCY,
            claimed_ms=self.now_ms,
            parents=parents,
            reason=why,
        )
        if not runs:
            self._record_final(replace(base, status=SKIPPED))
            return
        self.runs[rid] = base
        self.jobs[child] = replace(job, deps=(*job.deps, (rid, t)))

    # ------------------------------------------------------------------ leases

    def _check_lease(self, rid: str, fence: int) -> Rejected | None:
        lease = self.leases.get(rid)
        if lease is None or lease.fence != fence:
            current = "none" if lease is None else str(lease.fence)
            return Rejected("stale_fence", f"{rid}: fence {fence} is not current ({current})")
        return None

    def _stale(self, rejection: Rejected) -> Rejected:
        self.counters.stale_rejections += 1
        return rejection

    def _start(self, cmd: c.Start) -> Result:
        bad = self._check_lease(cmd.run_id, cmd.fence)
        if bad is not None:
            return self._stale(bad)
        run = self.runs[cmd.run_id]
        if run.node != cmd.node:
            return self._stale(Rejected("stale_fence", f"{cmd.run_id} is held by {run.node}"))
        if run.status == CLAIMED:
            self.runs[cmd.run_id] = replace(
                run, status=RUNNING, started_ms=self.now_ms, start_token=cmd.token
            )
            self._renewed(cmd.run_id)
            return Ok(cmd.fence)
        if run.start_token == cmd.token:
            self._renewed(cmd.run_id)
            return Ok(cmd.fence)  # a retry of the start that committed
        return Rejected("already_started", f"{cmd.run_id} was started by another attempt")

    def _renew(self, cmd: c.Renew) -> Result:
        bad = self._check_lease(cmd.run_id, cmd.fence)
        if bad is not None:
            return self._stale(bad)
        self._renewed(cmd.run_id)
        return Ok(cmd.fence)

    def _renewed(self, rid: str) -> None:
        lease = self.leases[rid]
        self.leases[rid] = replace(lease, renewals=lease.renewals + 1)

    def _complete(self, cmd: c.Complete) -> Result:
        bad = self._check_lease(cmd.run_id, cmd.fence)
        if bad is not None:
            done = self.runs.get(cmd.run_id)
            if (
                done is not None
                and done.fence == cmd.fence
                and done.status == cmd.status
                and done.finished_ms == cmd.finished_ms
            ):
                return Ok(cmd.status)  # a retry of a completion that already committed
            return self._stale(bad)
        if cmd.status not in COMPLETION_STATUSES:
            return Rejected("bad_status", f"{cmd.status!r} is not a completion status")
        run = self.runs[cmd.run_id]
        kill = self.leases[cmd.run_id].kill
        self._record_final(
            replace(
                run,
                status=cmd.status,
                exit_code=cmd.exit_code,
                started_ms=cmd.started_ms if cmd.started_ms is not None else run.started_ms,
                finished_ms=cmd.finished_ms,
                output=tail(cmd.output),
                # a buffered run keeps the note that says so
                reason="; ".join(r for r in (run.reason, cmd.reason) if r),
            )
        )
        self._schedule_retry(self.runs[cmd.run_id], kill)
        return Ok(cmd.status)

    def _expire(self, cmd: c.Expire) -> Result:
        bad = self._check_lease(cmd.run_id, cmd.fence)
        if bad is not None:
            return bad  # the leader's own retry or a race with completion: not a stale writer
        if self.leases[cmd.run_id].renewals != cmd.renewals:
            return Rejected("renewed", f"{cmd.run_id} was renewed after the expiry decision")
        run = self.runs[cmd.run_id]
        kill = self.leases[cmd.run_id].kill
        reason = cmd.reason + (f" (it had been asked to stop: {kill})" if kill else "")
        reason = "; ".join(r for r in (run.reason, reason) if r)
        self._record_final(replace(run, status=LOST, finished_ms=self.now_ms, reason=reason))
        self._schedule_retry(self.runs[cmd.run_id], kill)
        return Ok(LOST)

    def _kill(self, cmd: c.Kill) -> Result:
        run = self.runs.get(cmd.run_id)
        if run is None:
            return Rejected("unknown_run", f"no run {cmd.run_id!r} in the ledger")
        why = cmd.reason or "killed on request"
        if run.status in (BUFFERED, PENDING):
            job = self.jobs.get(run.job)
            if job is not None:
                self.jobs[run.job] = replace(
                    job,
                    buffered=tuple(b for b in job.buffered if b[0] != run.id),
                    retry=tuple(p for p in job.retry if p.run != run.id),
                    deps=tuple(d for d in job.deps if d[0] != run.id),
                )
            self._end_buffered(run.id, KILLED, f"{why} (before it started)")
            return Ok(KILLED)
        if self._request_kill(run.id, why, cmd.hard):
            return Ok("killing")
        if run.status == KILLED:
            return Ok(KILLED)  # a repeat of a kill that has finished
        return Rejected("not_running", f"{run.id} is not running (it is {run.status})")

    # ------------------------------------------------------------------ locks

    def _acquire_lock(self, cmd: c.AcquireLock) -> Result:
        problem = lock_problem(
            name=cmd.name,
            holder=cmd.holder,
            ttl_ms=cmd.ttl_ms,
            wait_ms=cmd.wait_ms,
            request=cmd.request,
        )
        if problem is not None:
            return Rejected("invalid", problem)
        lock = self.locks.get(cmd.name)
        if lock is not None:
            if lock.request == cmd.request:
                return Ok(_grant_of(lock))  # a retry of the acquire that took it
            for i, w in enumerate(lock.waiters):
                if w.request == cmd.request:
                    return Ok(LockQueued(cmd.name, cmd.request, i + 1, lock.holder, lock.fence))
        done = self.lock_done.get((cmd.name, cmd.request))
        if done is not None:
            return Rejected(
                "request_done",
                f"lock request {cmd.request!r} already ended ({done.outcome}"
                + (f", fence {done.fence})" if done.fence else ")"),
            )
        if lock is None:
            return Ok(self._grant_lock(cmd.name, cmd.request, cmd.holder, cmd.ttl_ms, ()))
        busy = f"lock {cmd.name!r} is held by {lock.holder!r} (fence {lock.fence})"
        if cmd.wait_ms == 0:
            self._lock_request_ended(cmd.request, cmd.name, 0, LOCK_REFUSED)
            return Rejected("locked", busy)
        if len(lock.waiters) >= LOCK_MAX_WAITERS:
            self._lock_request_ended(cmd.request, cmd.name, 0, LOCK_REFUSED)
            return Rejected("queue_full", f"{busy} and {LOCK_MAX_WAITERS} requests wait for it")
        waiter = LockWaiter(
            request=cmd.request,
            holder=cmd.holder,
            ttl_ms=cmd.ttl_ms,
            wait_ms=cmd.wait_ms,
            queued_ms=self.now_ms,
        )
        self.locks[cmd.name] = replace(lock, waiters=(*lock.waiters, waiter))
        return Ok(LockQueued(cmd.name, cmd.request, len(lock.waiters) + 1, lock.holder, lock.fence))

    def _grant_lock(
        self, name: str, request: str, holder: str, ttl_ms: int, waiters: tuple[LockWaiter, ...]
    ) -> LockGrant:
        self.counters.fence += 1
        lock = Lock(
            name=name,
            fence=self.counters.fence,
            holder=holder,
            request=request,
            ttl_ms=ttl_ms,
            acquired_ms=self.now_ms,
            renewed_ms=self.now_ms,
            waiters=waiters,
        )
        self.locks[name] = lock
        return _grant_of(lock)

    def _lock_request_ended(self, request: str, name: str, fence: int, outcome: str) -> None:
        key = (name, request)
        if key in self.lock_done:
            return
        self.lock_done[key] = LockEnd(fence=fence, outcome=outcome)
        while len(self.lock_done) > LOCK_DONE_KEEP:
            del self.lock_done[next(iter(self.lock_done))]

    def _end_lock(self, lock: Lock, outcome: str) -> LockEnded:
        """The holder is gone: hand the lock to the head waiter, or free it."""
        self._lock_request_ended(lock.request, lock.name, lock.fence, outcome)
        del self.locks[lock.name]
        granted = None
        if lock.waiters:
            head, rest = lock.waiters[0], lock.waiters[1:]
            granted = self._grant_lock(lock.name, head.request, head.holder, head.ttl_ms, rest)
        return LockEnded(lock.name, lock.fence, outcome, granted)

    def _renew_lock(self, cmd: c.RenewLock) -> Result:
        lock = self.locks.get(cmd.name)
        if lock is None or lock.fence != cmd.fence:
            return self._stale(_stale_lock(cmd.name, cmd.fence, lock))
        lock = replace(lock, renewed_ms=self.now_ms, renewals=lock.renewals + 1)
        self.locks[cmd.name] = lock
        return Ok(_grant_of(lock))

    def _release_lock(self, cmd: c.ReleaseLock) -> Result:
        lock = self.locks.get(cmd.name)
        if lock is not None and lock.fence == cmd.fence:
            return Ok(self._end_lock(lock, LOCK_RELEASED))
        if cmd.fence > 0 and any(
            e.fence == cmd.fence and name == cmd.name and e.outcome == LOCK_RELEASED
            for (name, _), e in self.lock_done.items()
        ):
            return Ok(LockEnded(cmd.name, cmd.fence, LOCK_RELEASED, None, retry=True))
        return self._stale(_stale_lock(cmd.name, cmd.fence, lock))

    def _expire_lock(self, cmd: c.ExpireLock) -> Result:
        lock = self.locks.get(cmd.name)
        if lock is None or lock.fence != cmd.fence:
            # the leader's own retry, or the holder released first: not a stale writer
            return _stale_lock(cmd.name, cmd.fence, lock)
        if lock.renewals != cmd.renewals:
            return Rejected(
                "renewed", f"lock {cmd.name!r} fence {cmd.fence} was renewed after the expiry"
            )
        return Ok(self._end_lock(lock, LOCK_EXPIRED))

    def _cancel_lock_wait(self, cmd: c.CancelLockWait) -> Result:
        lock = self.locks.get(cmd.name)
        if lock is not None:
            if lock.request == cmd.request:
                return Ok(_grant_of(lock))  # granted before the cancel: it holds the lock
            rest = tuple(w for w in lock.waiters if w.request != cmd.request)
            if len(rest) != len(lock.waiters):
                self.locks[cmd.name] = replace(lock, waiters=rest)
                self._lock_request_ended(cmd.request, cmd.name, 0, LOCK_CANCELLED)
                return Ok(LockCancelled(cmd.name, cmd.request, True))
        # Not queued (yet, or any more): remember it, so a late acquire cannot queue it.
        self._lock_request_ended(cmd.request, cmd.name, 0, LOCK_CANCELLED)
        return Ok(LockCancelled(cmd.name, cmd.request, False))

    # ------------------------------------------------------------------ ledger

    def _record_final(self, run: Run) -> None:
        self.runs[run.id] = run
        if run.job in self.children:
            self.settled.append(run)
        self.counters.runs_recorded += 1
        key = outcome_key(run.job, run.status)
        self.counters.extra[key] = self.counters.extra.get(key, 0) + run.count
        if run.status == SKIPPED and run.reason.startswith(UNSCHEDULABLE):
            key = unschedulable_key(run.job)
            self.counters.extra[key] = self.counters.extra.get(key, 0) + run.count
        if self.leases.pop(run.id, None) is not None:
            live = self.live.get(run.job, frozenset()) - {run.id}
            if live:
                self.live[run.job] = live
            else:
                self.live.pop(run.job, None)
            self._run_ended(run)
        # A run of a deleted job is kept too (see _delete_job).
        self.history[run.job] = (*self.history.get(run.job, ()), run.id)
        self._trim_history(run.job)

    def _run_ended(self, run: Run) -> None:
        """A run that held a lease got its final record: its job's stats follow."""
        job = self.jobs.get(run.job)
        if job is None or run.finished_ms is None or run.status not in COMPLETION_STATUSES:
            return
        old = job.stats
        duration = old.duration_ms
        if run.started_ms is not None:
            duration = max(0, run.finished_ms - run.started_ms)
        success = old.success_ms
        if run.status == SUCCEEDED:
            success = max(success, run.finished_ms)
        stats = JobStats(
            outcome=run.status,
            finished_ms=run.finished_ms,
            duration_ms=duration,
            success_ms=success,
        )
        self.jobs[run.job] = replace(job, stats=stats)

    def _trim_history(self, job: str) -> None:
        ids = self.history.get(job, ())
        if len(ids) > self.history_limit:
            for rid in ids[: len(ids) - self.history_limit]:
                self.runs.pop(rid, None)
            ids = ids[len(ids) - self.history_limit :]
            self.history[job] = ids
        if len(ids) > OUTPUT_KEEP:
            old = self.runs.get(ids[-OUTPUT_KEEP - 1])
            if old is not None and old.output:
                self.runs[old.id] = replace(old, output="")

    # ------------------------------------------------------------------ drain

    def _report_config(self, cmd: c.ReportConfig) -> Result:
        if not cmd.node or len(cmd.node) > MAX_NODE_NAME:
            return Rejected("bad_report", f"a member name is 1 to {MAX_NODE_NAME} characters")
        if not cmd.hash or len(cmd.hash) > MAX_CONFIG_HASH:
            return Rejected("bad_report", f"a config hash is 1 to {MAX_CONFIG_HASH} characters")
        if len(cmd.version) > MAX_CONFIG_HASH or not 0 <= cmd.level <= MAX_LEVEL:
            return Rejected(
                "bad_report",
                f"a version is at most {MAX_CONFIG_HASH} characters and a feature level "
                f"0 to {MAX_LEVEL}",
            )
        changed = self.member_hashes.get(cmd.node) != cmd.hash
        self.member_hashes[cmd.node] = cmd.hash
        if cmd.version:  # (a report without one leaves what the member advertised)
            advertised = (cmd.version, cmd.level)
            changed |= self.member_versions.get(cmd.node) != advertised
            self.member_versions[cmd.node] = advertised
        return Ok(changed)

    def _drain(self, cmd: c.Drain) -> Result:
        if cmd.kind not in DRAIN_KINDS:
            return Rejected(
                "bad_drain", f"unknown drain kind {cmd.kind!r} (use {', '.join(DRAIN_KINDS)})"
            )
        if not cmd.node or len(cmd.node) > MAX_NODE_NAME:
            return Rejected("bad_drain", f"a member name is 1 to {MAX_NODE_NAME} characters")
        mark = self.drained.get(cmd.node)
        if cmd.drain:
            if mark is None or (mark.kind != cmd.kind and cmd.kind == DRAIN_OPERATOR):
                # (an operator's drain of a member shutting down outlives the shutdown)
                self.drained[cmd.node] = DrainMark(kind=cmd.kind, since_ms=self.now_ms)
        elif mark is not None and (cmd.kind == DRAIN_OPERATOR or mark.kind == DRAIN_SHUTDOWN):
            del self.drained[cmd.node]
        return Ok(self.drained.get(cmd.node))

    # ------------------------------------------------------------------ queries

    def live_runs(self, node: str | None = None) -> list[Run]:
        out = [self.runs[rid] for rid in self.leases if rid in self.runs]
        if node is not None:
            out = [r for r in out if r.node == node]
        return out

    def job_of(self, rid: str) -> str:
        run = self.runs.get(rid)
        return "" if run is None else run.job

    def buffer_ready(self, rid: str) -> str:
        """The job of run ``rid`` if it has buffered runs or a backfill and no live run,
        else ``""`` (the scheduler looks at it again when it is)."""
        run = self.runs.get(rid)
        job = None if run is None else self.jobs.get(run.job)
        if job is None or not (job.buffered or job.backfill) or job.spec.name in self.live:
            return ""
        return job.spec.name

    def live_by_job(self) -> dict[str, list[tuple[str, str]]]:
        """Each job's live runs as ``(run id, node)`` (the planner's ``live``)."""
        return {
            job: [(rid, self.runs[rid].node) for rid in sorted(rids) if rid in self.runs]
            for job, rids in self.live.items()
        }

    def load_by_node(self) -> dict[str, int]:
        load: dict[str, int] = {}
        for lease in self.leases.values():
            load[lease.holder] = load.get(lease.holder, 0) + 1
        return load

    # ------------------------------------------------------------------ snapshots

    def capture(self) -> Callable[[], bytes]:
        """Copy the containers (cheap, O(n) pointer copies) and return the encoder.

        Call on the thread that applies commands; run the returned closure anywhere.
        """
        scalars = (self.now_ms, self.history_limit)
        jobs = list(self.jobs.values())
        runs = list(self.runs.values())
        history = dict(self.history)
        leases = list(self.leases.values())
        locks = list(self.locks.values())
        lock_done = list(self.lock_done.items())
        drained = list(self.drained.items())
        config = (self.config_hash, dict(self.member_hashes), dict(self.member_versions))
        counters = (
            self.counters.fence,
            self.counters.stale_rejections,
            self.counters.runs_recorded,
            dict(self.counters.extra),
        )

        def encode() -> bytes:
            return _encode_snapshot(
                scalars, jobs, runs, history, leases, counters, locks, lock_done, drained, config
            )

        return encode

    def snapshot(self) -> bytes:
        return self.capture()()

    @classmethod
    def restore(cls, data: bytes) -> State:
        """Decode a snapshot. Job and run rows are unpacked one at a time, so no second
        copy of the whole state exists as Python lists while it is restored."""
        unpacker = msgpack.Unpacker(
            io.BytesIO(data), raw=False, strict_map_key=False, max_buffer_size=len(data) + 1
        )
        st = cls()
        version = None
        for _ in range(unpacker.read_map_header()):
            key = unpacker.unpack()
            if key in ("jobs", "runs"):
                rows = (unpacker.unpack() for _ in range(unpacker.read_array_header()))
                for row in rows:
                    if key == "jobs":
                        st._restore_job(row)
                    else:
                        run = Run(**dict(zip(_RUN_FIELDS, row, strict=False)))  # old: 16
                        if not isinstance(run.parents, tuple):  # (a list when written)
                            run = replace(run, parents=tuple(run.parents))
                        st.runs[run.id] = run
                continue
            value = unpacker.unpack()
            match key:
                case "v":
                    version = value
                    if version != SNAPSHOT_VERSION:
                        raise ValueError(f"unsupported snapshot version {version!r}")
                case "now":
                    st.now_ms = int(value)
                case "history_limit":
                    st.history_limit = int(value)
                case "history":
                    st.history = {k: tuple(v) for k, v in value.items()}
                case "leases":
                    for lz in value:
                        lease = Lease(**dict(zip(_LEASE_FIELDS, lz, strict=False)))  # old: 5
                        st.leases[lease.key] = lease
                case "counters":
                    fence, stale, recorded, extra = value
                    st.counters = Counters(
                        fence=fence, stale_rejections=stale, runs_recorded=recorded, extra=extra
                    )
                case "locks":
                    for row in value:
                        waiters = tuple(
                            LockWaiter(**dict(zip(_WAITER_FIELDS, w, strict=True))) for w in row[-1]
                        )
                        lock = Lock(
                            **dict(zip(_LOCK_FIELDS, row[:-1], strict=True)), waiters=waiters
                        )
                        st.locks[lock.name] = lock
                case "lock_done":
                    for name, request, lock_fence, outcome in value:
                        st.lock_done[(name, request)] = LockEnd(fence=lock_fence, outcome=outcome)
                case "drained":
                    for name, kind, since in value:
                        st.drained[str(name)] = DrainMark(kind=str(kind), since_ms=int(since))
                case "config":
                    st.config_hash = str(value[0])
                    if len(value) > 1:
                        st.member_hashes = {str(n): str(h) for n, h in value[1]}
                    if len(value) > 2:
                        st.member_versions = {str(n): (str(v), int(lv)) for n, v, lv in value[2]}
        if version != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported snapshot version {version!r}")
        st._rebuild_live()
        st._rebuild_children()
        return st

    def _restore_job(self, j: list[Any]) -> None:
        spec = c.spec_from_wire(j[0])
        self.jobs[spec.name] = Job(
            spec=spec,
            source=j[1],
            paused=j[2],
            watermark_ms=j[3],
            created_ms=j[4],
            updated_ms=j[5],
            pause_note=str(j[6]) if len(j) > 6 else "",
            buffered=tuple((str(r), int(t)) for r, t in j[7]) if len(j) > 7 else (),
            retry=tuple(PendingRetry(**dict(zip(_RETRY_FIELDS, p, strict=False))) for p in j[8])
            if len(j) > 8
            else (),
            backfill=Backfill(**dict(zip(_BACKFILL_FIELDS, j[9], strict=True)))
            if len(j) > 9 and j[9] is not None
            else None,
            deps=tuple((str(r), int(t)) for r, t in j[10]) if len(j) > 10 else (),
            waiting=tuple(
                DependencyWait(
                    scheduled_at_ms=int(t),
                    variant=str(v),
                    settled=tuple((str(p), str(r), str(st)) for p, r, st in got),
                )
                for t, v, got in j[11]
            )
            if len(j) > 11
            else (),
            broken=str(j[12]) if len(j) > 12 else "",
            broken_ms=int(j[13]) if len(j) > 13 else 0,
            stats=_stats_of_row(j[14]) if len(j) > 14 and j[14] else JobStats(),
        )

    def _rebuild_live(self) -> None:
        live: dict[str, set[str]] = {}
        for rid in self.leases:
            run = self.runs.get(rid)
            if run is not None and run.status in LIVE_STATUSES:
                live.setdefault(run.job, set()).add(rid)
        self.live = {k: frozenset(v) for k, v in live.items()}

    def digest(self) -> str:
        """A hash of the whole replicated state (canonical encoding)."""
        return hashlib.sha256(self.snapshot()).hexdigest()


_RUN_FIELDS: Final = (
    "id",
    "job",
    "scheduled_at_ms",
    "status",
    "trigger",
    "attempt",
    "fence",
    "node",
    "claimed_ms",
    "started_ms",
    "finished_ms",
    "exit_code",
    "output",
    "reason",
    "count",
    "start_token",
    "last_scheduled_ms",
    "parents",
    "instance",
    "instances",
)
# Trailing run fields written only up to the last one that is not its default (``count``
# and earlier are always written), so runs without them encode as before they existed.
_RUN_OPTIONAL: Final = (
    ("last_scheduled_ms", None),
    ("parents", ()),
    ("instance", 1),
    ("instances", 1),
)
_BACKFILL_FIELDS: Final = (
    "id",
    "from_ms",
    "to_ms",
    "cursor_ms",
    "total",
    "done",
    "rate",
    "last_ms",
    "requested_ms",
)
_LEASE_FIELDS: Final = (
    "key",
    "fence",
    "holder",
    "lease_ms",
    "granted_ms",
    "renewals",
    "kill",
    "kill_hard",
)
_LEASE_DEFAULTS: Final = ("", False)  # of the trailing fields, written only when set
_RETRY_FIELDS: Final = ("run", "scheduled_at_ms", "attempt", "due_ms", "avoid", "instance")
_LOCK_FIELDS: Final = (
    "name",
    "fence",
    "holder",
    "request",
    "ttl_ms",
    "acquired_ms",
    "renewed_ms",
    "renewals",
)
_WAITER_FIELDS: Final = ("request", "holder", "ttl_ms", "wait_ms", "queued_ms")


def _run_row(run: Run) -> list[Any]:
    row = [getattr(run, f) for f in _RUN_FIELDS]
    row[_RUN_FIELDS.index("parents")] = list(run.parents)
    for name, default in reversed(_RUN_OPTIONAL):
        if getattr(run, name) != default:
            break
        row.pop()
    return row


def _retry_row(p: PendingRetry) -> list[Any]:
    row = [getattr(p, f) for f in _RETRY_FIELDS]
    if p.instance == 1:
        row.pop()  # rows of a job without count encode as before it existed
    return row


def _lease_row(lz: Lease) -> list[Any]:
    row = [getattr(lz, f) for f in _LEASE_FIELDS]
    if (lz.kill, lz.kill_hard) == _LEASE_DEFAULTS:
        del row[-2:]  # rows without a stop request encode as before it existed
    return row


def _job_row(j: Job) -> list[Any]:
    row: list[Any] = [
        c.spec_to_wire(j.spec),
        j.source,
        j.paused,
        j.watermark_ms,
        j.created_ms,
        j.updated_ms,
    ]
    # optional trailing fields: written up to the last one that is set
    tail: list[Any] = [
        j.pause_note,
        [list(b) for b in j.buffered],
        [_retry_row(p) for p in j.retry],
        None if j.backfill is None else [getattr(j.backfill, f) for f in _BACKFILL_FIELDS],
        [list(d) for d in j.deps],
        [[w.scheduled_at_ms, w.variant, [list(x) for x in w.settled]] for w in j.waiting],
        j.broken,
        j.broken_ms,
        _stats_row(j.stats),
    ]
    while tail and not tail[-1]:
        tail.pop()
    return row + tail


def _stats_row(st: JobStats) -> list[Any]:
    """``[]`` (not written: the row's last field) until the job has stats."""
    if st == JobStats():
        return []
    return [st.outcome, st.finished_ms, st.duration_ms, st.success_ms]


def _stats_of_row(row: list[Any]) -> JobStats:
    outcome, finished, duration, success = row[:4]
    return JobStats(
        outcome=str(outcome),
        finished_ms=int(finished),
        duration_ms=None if duration is None else int(duration),
        success_ms=int(success),
    )


def dependency_decision(on: str, settled: Iterable[tuple[str, str, str]]) -> tuple[bool, str]:
    """Whether a fire whose parents settled as ``settled`` ((job, run id, status) each)
    runs its child with ``on``, and the reason recorded on the child's run."""
    outcomes = ", ".join(f"{rid} {status}" for _, rid, status in settled)
    ok = all(status == SUCCEEDED for _, _, status in settled)
    if on == "always" or (on == "success") == ok:
        return True, f"after {outcomes} (on={on})"
    need = "every parent to succeed" if on == "success" else "a parent that did not succeed"
    return False, f"on={on} needs {need}: {outcomes}"


def dependency_cycle(jobs: dict[str, Job], spec: JobSpec) -> list[str]:
    """A cycle ``[spec.name, ..., spec.name]`` that putting ``spec`` would close through
    the ``after`` of ``jobs``, or ``[]``. Only jobs with ``after`` can be on a cycle."""
    if not spec.after:
        return []

    def after(name: str) -> tuple[str, ...]:
        if name == spec.name:
            return spec.after
        job = jobs.get(name)
        return () if job is None else job.spec.after

    # iterative depth-first search: a chain may be longer than Python's recursion limit
    path = [spec.name]
    stack = [iter(after(spec.name))]
    seen = {spec.name}
    while stack:
        parent = next(stack[-1], None)
        if parent is None:
            stack.pop()
            path.pop()
        elif parent == spec.name:
            return [*path, parent]
        elif parent not in seen:
            seen.add(parent)
            path.append(parent)
            stack.append(iter(after(parent)))
    return []


def _fire_key(fire: c.Fire) -> tuple[str, str, int, int]:
    """What makes claims one fire (its instances, a buffered head's group): refused whole."""
    return (fire.job, fire.trigger, fire.scheduled_at_ms, fire.attempt)


def _when(spec: JobSpec) -> tuple[str, str, str, str]:
    """What decides a job's fire times (a change restarts its watermark at now)."""
    return (spec.schedule, spec.timezone, spec.dst_gap, spec.dst_repeat)


def _pause_reason(job: Job) -> str:
    return "job is paused" + (f": {job.pause_note}" if job.pause_note else "")


def _grant_of(lock: Lock) -> LockGrant:
    return LockGrant(lock.name, lock.request, lock.fence, lock.holder, lock.ttl_ms, lock.renewals)


def _stale_lock(name: str, fence: int, lock: Lock | None) -> Rejected:
    now = "free" if lock is None else f"held with fence {lock.fence}"
    return Rejected("stale_fence", f"lock {name!r}: fence {fence} is not current (it is {now})")


def _encode_snapshot(
    scalars: tuple[int, int],
    jobs: Iterable[Job],
    runs: Iterable[Run],
    history: dict[str, tuple[str, ...]],
    leases: Iterable[Lease],
    counters: tuple[int, int, int, dict[str, int]],
    locks: Iterable[Lock] = (),
    lock_done: Iterable[tuple[tuple[str, str], LockEnd]] = (),
    drained: Iterable[tuple[str, DrainMark]] = (),
    config: tuple[str, dict[str, str], dict[str, tuple[str, int]]] = ("", {}, {}),
) -> bytes:
    """The canonical encoding of the state: one msgpack map, rows sorted by key.

    Packed row by row into one buffer: the bytes are those of ``msgpack.packb`` on the
    whole map, but no second copy of the state is built as Python lists first (with
    100,000 jobs that copy was 2.4 times the state at its peak).
    """
    out = io.BytesIO()
    packer = msgpack.Packer(use_bin_type=True)

    def array(rows: Iterable[Any], n: int) -> None:
        out.write(packer.pack_array_header(n))
        for row in rows:
            out.write(packer.pack(row))

    job_list = sorted(jobs, key=lambda j: j.spec.name)
    run_list = sorted(runs, key=lambda r: r.id)
    lease_list = sorted(leases, key=lambda lz: lz.key)
    lock_list = sorted(locks, key=lambda lk: lk.name)
    done_list = list(lock_done)  # insertion order (oldest first) is state: it decides
    drain_list = sorted(drained)
    # "drained" is the last key, written only when a member is drained: a state without
    # one encodes exactly as before drains existed (older nodes read it; digests agree)
    # "config" likewise, after it: written only once a hash was reconciled or reported
    has_config = bool(config[0] or config[1] or config[2])
    out.write(packer.pack_map_header(10 + bool(drain_list) + has_config))
    for key, value in (("v", SNAPSHOT_VERSION), ("now", scalars[0])):
        out.write(packer.pack(key) + packer.pack(value))
    out.write(packer.pack("history_limit") + packer.pack(scalars[1]))
    out.write(packer.pack("jobs"))
    array(map(_job_row, job_list), len(job_list))
    out.write(packer.pack("runs"))
    array(map(_run_row, run_list), len(run_list))
    out.write(packer.pack("history"))
    out.write(packer.pack_map_header(len(history)))
    for k in sorted(history):
        out.write(packer.pack(k) + packer.pack(list(history[k])))
    out.write(packer.pack("leases"))
    array(map(_lease_row, lease_list), len(lease_list))
    out.write(packer.pack("counters"))
    out.write(
        packer.pack([counters[0], counters[1], counters[2], dict(sorted(counters[3].items()))])
    )
    out.write(packer.pack("locks"))
    lock_rows = (
        [
            *(getattr(lk, f) for f in _LOCK_FIELDS),
            [[getattr(w, f) for f in _WAITER_FIELDS] for w in lk.waiters],
        ]
        for lk in lock_list
    )
    array(lock_rows, len(lock_list))
    out.write(packer.pack("lock_done"))
    array(([k[0], k[1], e.fence, e.outcome] for k, e in done_list), len(done_list))
    if drain_list:
        out.write(packer.pack("drained"))
        array(([n, m.kind, m.since_ms] for n, m in drain_list), len(drain_list))
    if has_config:
        out.write(packer.pack("config"))
        row: list[Any] = [config[0], [[n, config[1][n]] for n in sorted(config[1])]]
        if config[2]:  # (a third item: older nodes read the first two)
            row.append([[n, *config[2][n]] for n in sorted(config[2])])
        out.write(packer.pack(row))
    return out.getvalue()
