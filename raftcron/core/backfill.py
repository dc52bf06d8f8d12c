"""Backfill (see ``StartBackfill`` in :mod:`raftcron.core.commands`): a job's past fires in
a range, claimed one plan at a time at the requested rate, each recorded as a run with
trigger ``backfill``. Pure: no clock, no randomness, no I/O.
"""

from __future__ import annotations

from dataclasses import replace

from raftcron.core import commands as c
from raftcron.core.ledger import (
    Ledger,
    unschedulable_reason,
)
from raftcron.core.model import (
    BACKFILL_MAX_FIRES,
    BACKFILL_MAX_RATE,
    CLAIMED,
    SKIPPED,
    TRIGGER_BACKFILL,
    Backfill,
    Job,
    Run,
    backfill_ready_ms,
    backfill_run_id,
    instance_run_id,
)
from raftcron.core.planner import schedule_of
from raftcron.core.results import Ok, Reject, Rejected, Result


class Backfills(Ledger):
    __slots__ = ()

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
                return Reject.NO_FIRST_INSTANCE
            rid = instance_run_id(first, fire.instance)
            head = self.runs.get(first)
            if rid in self.runs or head is None:
                return Reject.DUPLICATE
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
            return Reject.NO_BACKFILL
        sched = schedule_of(job.spec, job.created_ms)
        if t > bf.to_ms or t != sched.next_after(bf.cursor_ms):
            return Reject.NOT_NEXT
        if self.live.get(job.spec.name) or (job.buffered and job.spec.overlap != "allow"):
            return Reject.BUSY
        if self.now_ms < backfill_ready_ms(bf):
            return Reject.TOO_SOON
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
            return Reject.DUPLICATE
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
            return Rejected(Reject.UNKNOWN_JOB, f"no job named {cmd.job!r}")
        if not job.spec.schedule:
            return Rejected(
                Reject.BAD_BACKFILL,
                f"{cmd.job} runs after {', '.join(job.spec.after)} and has no schedule of its "
                "own: backfill its parents (their fires run it)",
            )
        bf = job.backfill
        if bf is not None:
            if bf.id == cmd.id:
                return Ok(bf)  # the same request again
            return Rejected(
                Reject.BACKFILL_RUNNING, f"{cmd.job} already has backfill {bf.id} running"
            )
        if not 0 < cmd.rate <= BACKFILL_MAX_RATE:
            return Rejected(
                Reject.BAD_BACKFILL, f"rate must be above 0 and at most {BACKFILL_MAX_RATE:g}"
            )
        if cmd.to_ms > self.now_ms or cmd.from_ms > cmd.to_ms:
            return Rejected(Reject.BAD_BACKFILL, "the range must be in the past, from <= to")
        try:
            fires = schedule_of(job.spec, job.created_ms).fires_between(
                cmd.from_ms - 1, cmd.to_ms, BACKFILL_MAX_FIRES + 1
            )
        except ValueError as exc:
            return Rejected(Reject.BAD_BACKFILL, str(exc))
        if not fires:
            return Rejected(Reject.BAD_BACKFILL, f"{cmd.job} has no fire in that range")
        if len(fires) > BACKFILL_MAX_FIRES:
            return Rejected(
                Reject.BAD_BACKFILL, f"the range has more than {BACKFILL_MAX_FIRES} fires; split it"
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

    def _cancel_backfill(self, name: str) -> Result:
        job = self.jobs.get(name)
        if job is None:
            return Rejected(Reject.UNKNOWN_JOB, f"no job named {name!r}")
        if job.backfill is None:
            return Rejected(Reject.NO_BACKFILL, f"{name} has no backfill running")
        self.jobs[name] = replace(job, backfill=None)
        return Ok(job.backfill)
