"""The ledger of runs that every aggregate of the state machine writes through.

``Ledger`` holds the replicated containers of :class:`raftcron.core.state.State` (the
invariants are written there) and the primitives the aggregates share: recording a run
final (outcome counters, job stats, the history bound, the dependency worklist), granting
a run its lease, stopping or ending a run that waits. The aggregates (``runs``,
``dependencies``, ``backfill``, ``locks``, ``queries``) are mixins over it; ``State``
puts them together with the command dispatch. Pure: no clock, no randomness, no I/O.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from typing import Final

from raftcron.core import commands as c
from raftcron.core.model import (
    ARM_GRACE_MS,
    BUFFERED,
    CLAIMED,
    COMPLETION_STATUSES,
    DEFAULT_HISTORY,
    LIVE_STATUSES,
    OUTPUT_KEEP,
    OUTPUT_TAIL_BYTES,
    PAUSED,
    PENDING,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    TRIGGER_BUFFERED,
    Armed,
    Counters,
    DrainMark,
    Job,
    JobSpec,
    JobStats,
    Lease,
    Lock,
    LockEnd,
    Member,
    MemberChange,
    Run,
    armed_due_ms,
    fire_of,
)
from raftcron.core.results import Rejected
from raftcron.core.runkey import MANUAL, RunKey
from raftcron.core.transitions import NONE, TRIM, check_transition


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


def manual_run_id(job: str, at_ms: int) -> str:
    return RunKey(job, at_ms, variant=MANUAL).format()


def tail(text: str, limit: int = OUTPUT_TAIL_BYTES) -> str:
    """The last ``limit`` bytes of ``text`` (UTF-8), cut on a character boundary."""
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= limit:
        return text
    return raw[-limit:].decode("utf-8", errors="ignore")


def fire_key(fire: c.Fire) -> tuple[str, str, int, int]:
    """What makes claims one fire (its instances, a buffered head's group): refused whole."""
    return (fire.job, fire.trigger, fire.scheduled_at_ms, fire.attempt)


def pause_reason(job: Job) -> str:
    return "job is paused" + (f": {job.pause_note}" if job.pause_note else "")


@dataclass(slots=True)
class Ledger:
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
    # Fires reserved ahead of their due time, by the run id their claim will have (see
    # "Armed fires" in runs.py); insertion order is replicated state.
    armed: dict[str, Armed] = field(default_factory=dict)
    # Members that get no new grants (see "Drain"), by name.
    drained: dict[str, DrainMark] = field(default_factory=dict)
    # The config_hash of the file last reconciled ("" before any sync said one), and the
    # hash of its own file each member last reported (see "Configuration").
    config_hash: str = ""
    member_hashes: dict[str, str] = field(default_factory=dict)
    # Each member's advertised (raftcron version, feature level) (see "Configuration").
    member_versions: dict[str, tuple[str, int]] = field(default_factory=dict)
    # The cluster's id ("" for a cluster that never had one; a restored cluster gets a new
    # one: raftcron/core/restore.py). Nodes of different clusters refuse each other.
    cluster_id: str = ""
    # The replicated membership (see "Membership"): empty until the first leader seeds it
    # from its cluster file; then the truth (placement, status, drain, the gate read it).
    members: dict[str, Member] = field(default_factory=dict)
    # Removed members, by name: never members again (their names are not reused).
    removed: dict[str, Member] = field(default_factory=dict)
    # The last membership change (pending until done), and the last incarnation given.
    member_change: MemberChange | None = None
    member_serial: int = 0
    # Derived index (rebuilt on restore, never serialized): job -> live run ids.
    live: dict[str, frozenset[str]] = field(default_factory=dict)
    # Derived index (rebuilt on restore, never serialized): job -> the jobs whose
    # ``after`` names it, sorted.
    children: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Transient, empty between applies: final runs recorded by the current apply whose job
    # has children (settled at its end, see "Dependencies").
    settled: list[Run] = field(default_factory=list, repr=False, compare=False)
    # Transient: what the current apply's run transitions are caused by (the command's
    # name, or SETTLE while dependencies settle; see raftcron.core.transitions).
    cause: str = field(default="", repr=False, compare=False)

    def _transition(self, rid: str, run: Run | None, cause: str = "") -> None:
        """Store ``run`` as run ``rid``'s record (None: the record leaves the ledger).

        Every write of a run record goes through here: a change of status must be one
        ``RUN_TRANSITIONS`` allows for the cause (``cause``, else the current command's),
        or :class:`~raftcron.core.transitions.IllegalTransition` is raised."""
        old = self.runs.get(rid)
        frm = NONE if old is None else old.status
        to = NONE if run is None else run.status
        if frm != to:
            check_transition(rid, frm, to, cause or self.cause)
        if run is None:
            self.runs.pop(rid, None)
        else:
            self.runs[rid] = run

    def _grant(self, job: Job, run: Run, node: str) -> tuple[str, int, str]:
        """Claim ``run`` for ``node`` under a new lease. A fire armed for ``node`` (and
        claimed within ``ARM_GRACE_MS`` of its time) gets the fence of its reservation,
        and when the node's ``Start`` already committed for it, is running at once: that
        start is the lease's first renewal, as a ``Start`` after the grant would be."""
        armed = self.armed.pop(run.id, None)
        if (
            armed is not None
            and armed.node == node
            and self.now_ms <= armed_due_ms(armed, job.spec) + ARM_GRACE_MS
        ):
            fence = armed.fence
        else:
            armed = None
            self.counters.fence += 1
            fence = self.counters.fence
        claimed = replace(run, status=CLAIMED, fence=fence, node=node, claimed_ms=self.now_ms)
        self._transition(run.id, claimed)
        lease = Lease(
            key=run.id,
            fence=fence,
            holder=node,
            lease_ms=job.spec.lease_ms,
            granted_ms=self.now_ms,
        )
        if armed is not None and armed.token:
            self._transition(
                run.id,
                replace(claimed, status=RUNNING, started_ms=self.now_ms, start_token=armed.token),
            )
            lease = replace(lease, renewals=1)
        self.leases[run.id] = lease
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

    def _end_buffered(self, rid: str, status: str, reason: str) -> None:
        """Record a waiting (buffered or pending) run as final: it never got a lease."""
        run = self.runs.get(rid)
        if run is not None and run.status in (BUFFERED, PENDING):
            self._record_final(replace(run, status=status, reason=f"{reason}; {run.reason}"))

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

    def _record_paused(self, job: Job, rid: str, first_ms: int, last_ms: int, count: int) -> str:
        """Record ``count`` fires of paused ``job`` (``first_ms..last_ms``): added to the
        job's newest record if that is a paused record made during this pause, else a new
        record ``rid``. Returns the record's run id."""
        name = job.spec.name
        reason = pause_reason(job)
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
            self._transition(
                newest.id, replace(newest, count=newest.count + count, last_scheduled_ms=last)
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

    def _stale(self, rejection: Rejected) -> Rejected:
        self.counters.stale_rejections += 1
        return rejection

    def _record_final(self, run: Run) -> None:
        self._transition(run.id, run)
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
                if rid in self.runs:
                    self._transition(rid, None, TRIM)
            ids = ids[len(ids) - self.history_limit :]
            self.history[job] = ids
        if len(ids) > OUTPUT_KEEP:
            old = self.runs.get(ids[-OUTPUT_KEEP - 1])
            if old is not None and old.output:
                self._transition(old.id, replace(old, output=""))

    def _rebuild_live(self) -> None:
        live: dict[str, set[str]] = {}
        for rid in self.leases:
            run = self.runs.get(rid)
            if run is not None and run.status in LIVE_STATUSES:
                live.setdefault(run.job, set()).add(rid)
        self.live = {k: frozenset(v) for k, v in live.items()}
