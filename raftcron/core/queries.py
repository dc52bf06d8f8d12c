"""Named queries on the state: what the rest of raftcron reads, without reaching into
State's containers.

Callers run them inside ``Machine.read`` (under the lock that orders them with
``apply``), e.g. ``machine.read(lambda s: s.run(rid))``. They return immutable records
or fresh containers, never State's own dicts, so what a query returns may be used after
the lock is released. Pure: no clock, no randomness, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from raftcron.core.ledger import Ledger
from raftcron.core.model import Armed, DrainMark, Job, JobSpec, Lease, Lock, Run, fire_of


@dataclass(frozen=True, slots=True)
class Totals:
    """Sizes and counters of the replicated state (``/v1/status``, metrics)."""

    jobs: int
    runs: int
    leases: int
    paused_jobs: int
    fence: int
    stale_rejections: int
    runs_recorded: int


class Queries(Ledger):
    __slots__ = ()

    # ------------------------------------------------------------------ jobs

    def job(self, name: str) -> Job | None:
        return self.jobs.get(name)

    def job_list(self) -> list[Job]:
        """Every job, in insertion order."""
        return list(self.jobs.values())

    def job_names(self) -> list[str]:
        return sorted(self.jobs)

    def jobs_named(self, names: Iterable[str]) -> list[Job]:
        """The jobs of ``names`` that exist, in that order."""
        return [self.jobs[n] for n in names if n in self.jobs]

    def job_view(self, name: str) -> tuple[Job, Run | None, list[str]] | None:
        """Job ``name``, its newest record still in the ledger and its live run ids."""
        job = self.jobs.get(name)
        if job is None:
            return None
        last = None
        for rid in reversed(self.history.get(name, ())):
            last = self.runs.get(rid)
            if last is not None:
                break
        return job, last, list(self.live.get(name, ()))

    def counter_extra(self) -> dict[str, int]:
        """A copy of the replicated per-job counters (``outcome/...``, ...)."""
        return dict(self.counters.extra)

    def totals(self, *, paused: bool = True) -> Totals:
        """``paused=False``: ``paused_jobs`` is left at 0 instead of counted, which walks
        every job under the state's lock (5-20 ms with 100,000 jobs): ``/v1/status``, which
        monitors and the bench poll many times a second, does not report it."""
        return Totals(
            jobs=len(self.jobs),
            runs=len(self.runs),
            leases=len(self.leases),
            paused_jobs=sum(1 for j in self.jobs.values() if j.paused) if paused else 0,
            fence=self.counters.fence,
            stale_rejections=self.counters.stale_rejections,
            runs_recorded=self.counters.runs_recorded,
        )

    # ------------------------------------------------------------------ runs

    def run(self, rid: str) -> Run | None:
        return self.runs.get(rid)

    def run_list(self) -> list[Run]:
        """Every run record in the ledger (insertion order)."""
        return list(self.runs.values())

    def newest_record(
        self, job: str, statuses: Iterable[str], before: str | None = None
    ) -> Run | None:
        """``job``'s newest record still in the ledger with one of ``statuses``; with
        ``before``, recorded before that run (when it is in the job's history)."""
        wanted = frozenset(statuses)
        ids = self.history.get(job, ())
        if before is not None and before in ids:
            ids = ids[: ids.index(before)]
        for rid in reversed(ids):
            run = self.runs.get(rid)
            if run is not None and run.status in wanted:
                return run
        return None

    def run_and_spec(self, rid: str) -> tuple[Run, JobSpec] | None:
        """Run ``rid`` and its job's spec; None if either is gone."""
        run = self.runs.get(rid)
        job = None if run is None else self.jobs.get(run.job)
        if run is None or job is None:
            return None
        return run, job.spec

    def lease_list(self) -> list[Lease]:
        """Every live run's lease (in the order they were granted)."""
        return list(self.leases.values())

    def lease(self, rid: str) -> Lease | None:
        """The lease of live run ``rid`` (None once it ended, or before it was granted)."""
        return self.leases.get(rid)

    def live_runs(self, node: str | None = None) -> list[Run]:
        out = [self.runs[rid] for rid in self.leases if rid in self.runs]
        if node is not None:
            out = [r for r in out if r.node == node]
        return out

    def leases_held_by(self, node: str) -> list[str]:
        """The run ids member ``node`` holds a lease of, sorted."""
        return sorted(rid for rid, lz in self.leases.items() if lz.holder == node)

    def job_of(self, rid: str) -> str:
        run = self.runs.get(rid)
        return "" if run is None else run.job

    def busy_jobs(self) -> frozenset[str]:
        """The jobs with a live run."""
        return frozenset(self.live)

    def live_fires(self, job: str) -> frozenset[str]:
        """The fires (``fire_of``) of ``job``'s live runs."""
        return frozenset(fire_of(rid) for rid in self.live.get(job, ()))

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

    # ------------------------------------------------------------------ armed fires

    def armed_nodes(self) -> dict[str, str]:
        """The node each armed fire is reserved for, by run id."""
        return {rid: a.node for rid, a in self.armed.items()}

    def armed_fire(self, rid: str) -> Armed | None:
        return self.armed.get(rid)

    def armed_with_spec(self, rid: str) -> tuple[Armed, JobSpec] | None:
        """Armed fire ``rid`` and its job's spec (None if either is gone)."""
        a = self.armed.get(rid)
        job = None if a is None else self.jobs.get(a.job)
        return None if a is None or job is None else (a, job.spec)

    # ------------------------------------------------------------------ locks

    def lock(self, name: str) -> Lock | None:
        return self.locks.get(name)

    def lock_list(self) -> list[Lock]:
        """Every held lock (in the order they were taken)."""
        return list(self.locks.values())

    # ------------------------------------------------------------------ members

    def drain_mark(self, node: str) -> DrainMark | None:
        return self.drained.get(node)

    def drained_members(self) -> frozenset[str]:
        return frozenset(self.drained)

    def reconciled_config_hash(self) -> str:
        """The ``config_hash`` of the cluster file last reconciled ("" before any)."""
        return self.config_hash

    def member_hash(self, node: str) -> str | None:
        """The config hash member ``node`` last reported of its own file."""
        return self.member_hashes.get(node)

    def member_version(self, node: str) -> tuple[str, int] | None:
        """The (raftcron version, feature level) member ``node`` last advertised (None:
        nothing, a release from before levels: level 0)."""
        return self.member_versions.get(node)

    def removed_reason(self, raft: str) -> str | None:
        """Why the member at Raft address ``raft`` may not take part any more (it was
        removed and no current member has its address), or None."""
        if not self.removed or any(m.raft == raft for m in self.members.values()):
            return None
        for m in self.removed.values():
            if m.raft == raft:
                return (
                    f"{m.name} (incarnation {m.incarnation}) was removed from the cluster: "
                    "it never takes part again (to bring that server back, empty its data "
                    "dir and add it under a new name: raftcron members add)"
                )
        return None

    def member_version_map(self) -> dict[str, tuple[str, int]]:
        """Every member's advertised (version, feature level) (a copy)."""
        return dict(self.member_versions)
