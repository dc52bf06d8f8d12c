"""Dependencies between jobs (see "Dependencies" in :mod:`raftcron.core.state`).

A job with ``after`` gets one fire per settled fire of its parents: the ``children``
index, the fan-in waits (``Job.waiting``), the ``on`` decision, the pending dependency
runs the planner claims (``Job.deps``), and the worklist that settles them at the end of
an apply. Pure: no clock, no randomness, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from raftcron.core.ledger import (
    Ledger,
)
from raftcron.core.model import (
    DEPENDENCY_WAIT_LIMIT,
    PENDING,
    SKIPPED,
    SUCCEEDED,
    TRIGGER_DEPENDENCY,
    TRIGGER_RETRY,
    DependencyWait,
    Job,
    JobSpec,
    Run,
    dependency_run_id,
    fire_of,
    fire_variant,
    instance_run_id,
    retry_run_id,
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


class Dependencies(Ledger):
    __slots__ = ()

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
        self._transition(rid, None)  # recorded again under the same id by the plan
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
        self._transition(rid, base)
        self.jobs[child] = replace(job, deps=(*job.deps, (rid, t)))
