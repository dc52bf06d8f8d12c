"""Runs and their lifecycle: the plan that claims fires (overlap, instances, placement,
buffered heads, retries, dependency fires), the lease commands (``Start``, ``Renew``,
``Complete``, ``Expire``), ``Kill``, and the retry that follows a failed attempt.

Armed fires (``Arm``, feature level 5; docs/design.md, "Armed fires"): the leader
reserves a single-instance process job's next scheduled fire for a node up to
``ARM_LEAD_MS`` before it is due (``State.armed``: no run record, nothing in the ledger).
The node prepares the run and commits its ``Start`` naming the reservation's fence ahead
(the reservation keeps the start's token). Nothing else changes: the plan at the due time
claims the fire as ever (pause, delete, overlap, drain, placement are decided then), and
only a claim for the armed node within ``ARM_GRACE_MS`` of the fire's time takes the
reservation's fence (``Ledger._grant``): running at once if the start committed ahead,
else claimed, and the executor's start then commits as any. A claim elsewhere or later
gets a new fence, so the armed node's start can never count for it. A reservation goes
when the plan takes it, once the fire is considered (the job's watermark passed it), the
job is changed, paused or deleted (:meth:`Runs._disarm`), or its time is more than
``ARM_GRACE_MS`` past (:meth:`Runs._sweep_armed`).

The invariants are written in :mod:`raftcron.core.state`; the statuses a run moves
through, and the command that moves it, are the table in :mod:`raftcron.core.transitions`.
Pure: no clock, no randomness, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from raftcron.core import commands as c
from raftcron.core.backfill import (
    Backfills,
)
from raftcron.core.dependencies import (
    Dependencies,
)
from raftcron.core.ledger import (
    fire_key,
    manual_run_id,
    pause_reason,
    tail,
    unschedulable_reason,
)
from raftcron.core.model import (
    ARM_GRACE_MS,
    ARM_MAX_LEAD_MS,
    BUFFER_ALL_LIMIT,
    BUFFER_POLICIES,
    BUFFERED,
    CANCEL_POLICIES,
    CLAIMED,
    COMPLETION_STATUSES,
    KILLED,
    LOST,
    MISSED,
    PAUSED,
    PENDING,
    RETRY_STATUSES,
    RUNNING,
    SKIPPED,
    TRIGGER_BACKFILL,
    TRIGGER_BUFFERED,
    TRIGGER_DEPENDENCY,
    TRIGGER_MANUAL,
    TRIGGER_RETRY,
    TRIGGER_SCHEDULE,
    Armed,
    Job,
    PendingRetry,
    Run,
    arm_problem,
    armed_due_ms,
    fire_of,
    instance_run_id,
    jitter_offset_ms,
    retry_backoff_ms,
    retry_run_id,
    run_id,
)
from raftcron.core.results import Ok, Reject, Rejected, Result


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
class ArmOutcome:
    armed: tuple[tuple[str, int, str], ...]  # (run id, fence, node)
    rejected: tuple[tuple[str, int, str], ...]  # (job, scheduled_at_ms, code)


class Runs(Dependencies, Backfills):
    __slots__ = ()

    def _arm(self, cmd: c.Arm) -> Result:
        armed: list[tuple[str, int, str]] = []
        rejected: list[tuple[str, int, str]] = []
        for fire in cmd.fires:
            code = self._arm_refusal(fire)
            if code:
                rejected.append((fire.job, fire.scheduled_at_ms, code))
                continue
            rid = run_id(fire.job, fire.scheduled_at_ms)
            self.counters.fence += 1
            self.armed[rid] = Armed(
                run_id=rid,
                job=fire.job,
                scheduled_at_ms=fire.scheduled_at_ms,
                node=fire.node,
                fence=self.counters.fence,
                armed_ms=self.now_ms,
            )
            armed.append((rid, self.counters.fence, fire.node))
        return Ok(ArmOutcome(tuple(armed), tuple(rejected)))

    def _arm_refusal(self, fire: c.Fire) -> Reject | None:
        job = self.jobs.get(fire.job)
        if job is None:
            return Reject.UNKNOWN_JOB
        if (
            arm_problem(job)
            or fire.trigger != TRIGGER_SCHEDULE
            or (fire.attempt, fire.instance, fire.instances) != (1, 1, 1)
            or not fire.node
        ):
            return Reject.NOT_ARMABLE
        if fire.node in self.drained or (self.members and fire.node not in self.members):
            return Reject.DRAINED
        t = fire.scheduled_at_ms
        if t <= job.watermark_ms:
            return Reject.ALREADY_CONSIDERED
        due = t + jitter_offset_ms(job.spec.name, job.spec.jitter_ms)
        if not self.now_ms < due <= self.now_ms + ARM_MAX_LEAD_MS:
            return Reject.NOT_AHEAD
        rid = run_id(fire.job, t)
        if rid in self.armed or rid in self.runs:
            return Reject.DUPLICATE
        return None

    def _disarm(self, job: str) -> None:
        """Drop ``job``'s reservations: it was changed, paused or deleted inside the lead."""
        if self.armed:
            for rid in [rid for rid, a in self.armed.items() if a.job == job]:
                del self.armed[rid]

    def _sweep_armed(self) -> None:
        """Drop the reservations whose fire is decided (the job's watermark passed it),
        whose job is gone, or whose time is more than ``ARM_GRACE_MS`` past."""
        gone = [
            rid
            for rid, a in self.armed.items()
            if (job := self.jobs.get(a.job)) is None
            or a.scheduled_at_ms <= job.watermark_ms
            or self.now_ms > armed_due_ms(a, job.spec) + ARM_GRACE_MS
        ]
        for rid in gone:
            del self.armed[rid]

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
                rejected.append((m.job, m.first_ms, Reject.UNKNOWN_JOB))
                continue
            if m.last_ms <= job.watermark_ms:
                rejected.append((m.job, m.first_ms, Reject.ALREADY_CONSIDERED))
                continue
            if m.status == PAUSED:
                if not job.paused:  # resumed after the plan was made: re-planned normally
                    rejected.append((m.job, m.first_ms, Reject.NOT_PAUSED))
                    continue
                self.jobs[m.job] = job = replace(job, watermark_ms=m.last_ms)
                rid = run_id(m.job, m.first_ms)
                paused.append(self._record_paused(job, rid, m.first_ms, m.last_ms, m.count))
                continue
            if m.status != MISSED:
                rejected.append((m.job, m.first_ms, Reject.BAD_STATUS))
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
            if blocked and fire_key(fire) in blocked:
                rejected.append((fire.job, fire.scheduled_at_ms, Reject.DRAINED))
                continue
            job = self.jobs.get(fire.job)
            if job is None:
                rejected.append((fire.job, fire.scheduled_at_ms, Reject.UNKNOWN_JOB))
                continue
            if fire.trigger != TRIGGER_RETRY and not 1 <= fire.instance <= fire.instances:
                # (a retry names its instance; how many its fire has is on its run)
                rejected.append((fire.job, fire.scheduled_at_ms, Reject.BAD_INSTANCE))
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
                    rejected.append((fire.job, fire.scheduled_at_ms, Reject.NO_FIRST_INSTANCE))
                    continue
            elif fire.trigger == TRIGGER_DEPENDENCY:
                dep = self._take_dependency(job, fire.scheduled_at_ms)
                if dep is None:
                    rejected.append((fire.job, fire.scheduled_at_ms, Reject.NOT_PENDING))
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
                rejected.append((fire.job, fire.scheduled_at_ms, Reject.DUPLICATE))
                continue
            kind = TRIGGER_MANUAL if manual else TRIGGER_DEPENDENCY if dep is not None else ""
            key = (fire.job, kind, fire.scheduled_at_ms)
            if fire.instance > 1:
                if firsts.get(key) != first:
                    rejected.append((fire.job, fire.scheduled_at_ms, Reject.NO_FIRST_INSTANCE))
                    continue
            elif not manual and dep is None:
                if fire.attempt == 1 and fire.scheduled_at_ms <= job.watermark_ms:
                    rejected.append((fire.job, fire.scheduled_at_ms, Reject.ALREADY_CONSIDERED))
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
                    self._transition(
                        rid, replace(base, status=BUFFERED, trigger=TRIGGER_BUFFERED, reason=why)
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
                self._transition(
                    rid, replace(base, status=BUFFERED, trigger=TRIGGER_BUFFERED, reason=why)
                )
                self.jobs[fire.job] = replace(
                    job, buffered=(*job.buffered, (rid, fire.scheduled_at_ms))
                )
                buffered.append((rid, why))
                continue
            granted.append(self._grant(job, base, fire.node))
        if self.armed:
            self._sweep_armed()
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
        return frozenset(fire_key(f) for f in fires if f.node and f.node in self.drained)

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
            return Reject.NOT_BUFFERED
        rid = job.buffered[0][0]
        if self._live_other(job.spec.name, fire_of(rid)):
            return Reject.BUSY  # (the head fire's other instances may be live: they go together)
        self.jobs[job.spec.name] = job = replace(job, buffered=job.buffered[1:])
        run = self.runs.get(rid)
        if run is None or run.status != BUFFERED:
            return Reject.NOT_BUFFERED  # cannot happen; the entry is dropped so it cannot wedge
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
            return Reject.NOT_PENDING
        pr = job.retry[i]
        if pr.due_ms > self.now_ms:
            return Reject.NOT_DUE
        if job.spec.overlap != "allow" and self._live_other(name, fire_of(pr.run)):
            return Reject.BUSY  # never beside another fire's run of a job that forbids it
        self.jobs[name] = job = replace(job, retry=job.retry[:i] + job.retry[i + 1 :])
        run = self.runs.get(pr.run)
        if run is None or run.status != PENDING:
            return Reject.NOT_PENDING  # cannot happen; the entry is dropped so it cannot wedge
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
            note = f"no retry: {pause_reason(job)}"
        if note:
            self._transition(
                run.id, replace(run, reason="; ".join(r for r in (run.reason, note) if r))
            )
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
        self._transition(
            rid,
            Run(
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
            ),
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

    def _check_lease(self, rid: str, fence: int) -> Rejected | None:
        lease = self.leases.get(rid)
        if lease is None or lease.fence != fence:
            current = "none" if lease is None else str(lease.fence)
            return Rejected(Reject.STALE_FENCE, f"{rid}: fence {fence} is not current ({current})")
        return None

    def _start(self, cmd: c.Start) -> Result:
        armed = self.armed.get(cmd.run_id)
        if armed is not None:
            return self._start_armed(armed, cmd)
        bad = self._check_lease(cmd.run_id, cmd.fence)
        if bad is not None:
            return self._stale(bad)
        run = self.runs[cmd.run_id]
        if run.node != cmd.node:
            return self._stale(Rejected(Reject.STALE_FENCE, f"{cmd.run_id} is held by {run.node}"))
        if run.status == CLAIMED:
            self._transition(
                cmd.run_id,
                replace(run, status=RUNNING, started_ms=self.now_ms, start_token=cmd.token),
            )
            self._renewed(cmd.run_id)
            return Ok(cmd.fence)
        if run.start_token == cmd.token:
            self._renewed(cmd.run_id)
            return Ok(cmd.fence)  # a retry of the start that committed
        return Rejected(Reject.ALREADY_STARTED, f"{cmd.run_id} was started by another attempt")

    def _start_armed(self, armed: Armed, cmd: c.Start) -> Result:
        """A start ahead of the plan, for an armed fire: kept as the reservation's token."""
        rid = cmd.run_id
        if armed.fence != cmd.fence or armed.node != cmd.node:
            return self._stale(
                Rejected(
                    Reject.STALE_FENCE,
                    f"{rid}: fence {cmd.fence} of {cmd.node} is not the armed fire's "
                    f"({armed.fence} of {armed.node})",
                )
            )
        if not armed.token:
            self.armed[rid] = replace(armed, token=cmd.token)
            return Ok(cmd.fence)
        if armed.token == cmd.token:
            return Ok(cmd.fence)  # a retry of the start that committed
        return Rejected(Reject.ALREADY_STARTED, f"{rid} was started by another attempt")

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
            return Rejected(Reject.BAD_STATUS, f"{cmd.status!r} is not a completion status")
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
            return Rejected(Reject.RENEWED, f"{cmd.run_id} was renewed after the expiry decision")
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
            return Rejected(Reject.UNKNOWN_RUN, f"no run {cmd.run_id!r} in the ledger")
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
        return Rejected(Reject.NOT_RUNNING, f"{run.id} is not running (it is {run.status})")
