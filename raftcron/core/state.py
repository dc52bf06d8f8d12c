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
  (``ReportConfig``), and ``member_versions`` the raftcron version and feature level it
  last advertised in the same report (``raftcron/core/features.py``; a member absent from
  it is level 0). Nodes from before levels apply the report without its version, so
  their replica lacks it: each member advertises again when it sees another member's
  advertisement change (``raftcron/reload.py``). They are in the snapshot (key
  ``config``) only when set; the versions are its third item, which nodes from
  before levels ignore.
* Cluster id: ``cluster_id`` is "" until a restore (``raftcron/core/restore.py``) gives the
  restored state a new one; it is in the snapshot (key ``cluster_id``, after ``config``)
  only when set, so a state without one encodes as before. The Raft port refuses a peer
  whose cluster id differs (``raftcron/raft/wire.py``).
* Membership (``raftcron/membership.py``, docs/design.md "Membership"): ``members`` is
  empty until the first leader seeds it from its cluster file (``members_seed``, once
  every member advertises feature level 2); from then on it is the truth. ``member_add``
  and ``member_remove`` change it one at a time: each sets ``member_change``, which stays
  pending until the leader has carried it into Raft's configuration (``member_changed``);
  meanwhile every other change is refused (``change_in_progress``). A removed member goes
  to ``removed`` for good: its name is never given again. Each member gets the next
  ``member_serial`` as its incarnation. All of it is in the snapshot (key ``members``,
  last) only once seeded, so a state without it encodes as before.
* Job stats (``Job.stats``): the final record of a run that held a lease (a completion,
  an expiry) sets its job's last outcome and end, the duration when it had started, and
  the last success time (the latest end of a succeeded run: never moves back). Nothing
  else changes them; a deleted job's go with it. They are the last field of a job's
  snapshot row, written only once set: a state without any encodes as before they
  existed, and an older snapshot loads with none.
* Run statuses change only as ``RUN_TRANSITIONS`` (``raftcron/core/transitions.py``)
  allows, through the one function that writes run records (``Ledger._transition``);
  anything else is a bug, answered ``apply_failed``.

Layout: ``State`` (here: the dispatch, the job commands, drains, config hashes) is put
together from one mixin per aggregate over ``Ledger`` (``ledger.py``: the containers and
the shared run primitives): ``runs.py``, ``dependencies.py``, ``backfill.py``,
``locks.py``, and ``queries.py`` (the named reads other layers use). ``snapshot.py`` is
the snapshot codec; ``results.py`` has ``Ok``, ``Rejected`` and the ``Reject`` codes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Final

from raftcron.core import commands as c
from raftcron.core import features
from raftcron.core.dependencies import (
    dependency_cycle,
    dependency_decision,
)
from raftcron.core.ledger import (
    UNSCHEDULABLE,
    job_errors_counts,
    job_errors_key,
    manual_run_id,
    outcome_counts,
    outcome_key,
    pause_reason,
    tail,
    unschedulable_counts,
    unschedulable_key,
    unschedulable_reason,
)
from raftcron.core.locks import (
    LockCancelled,
    LockEnded,
    LockGrant,
    LockQueued,
    Locks,
)
from raftcron.core.model import (
    CLAIMED,
    DRAIN_KINDS,
    DRAIN_OPERATOR,
    DRAIN_SHUTDOWN,
    MAX_NODE_NAME,
    MEMBER_ADD,
    MEMBER_REMOVE,
    PAUSED,
    SKIPPED,
    DrainMark,
    Job,
    JobSpec,
    Member,
    MemberChange,
)
from raftcron.core.queries import Queries
from raftcron.core.results import Ok, Reject, Rejected, Result
from raftcron.core.runs import (
    ArmOutcome,
    PlanOutcome,
    Runs,
)
from raftcron.core.snapshot import (
    SNAPSHOT_VERSION,
    _run_row,
    capture,
    restore_into,
)
from raftcron.core.transitions import SETTLE

MAX_CONFIG_HASH: Final = 64  # characters of a config hash kept (raftcron/confighash.py: 16)


SYNCED_SOURCES: Final = ("config", "embedded")


def synced_source(spec: JobSpec) -> str:
    """The source of a job the leader reconciles: ``embedded`` for a Python callable."""
    return "embedded" if spec.call else "config"


class State(Runs, Locks, Queries):
    __slots__ = ()

    # ------------------------------------------------------------------ apply

    def apply_bytes(self, data: bytes) -> tuple[c.Command | None, Result]:
        cmd = c.decode(data)
        if cmd is None:
            return None, Rejected(Reject.BAD_COMMAND, "undecodable command envelope")
        return cmd, self.apply(cmd)

    def apply(self, cmd: c.Command) -> Result:
        if isinstance(cmd, c.Lifecycle):
            return self._lifecycle(cmd)
        self.now_ms = max(self.now_ms, cmd.at_ms)
        self.cause = type(cmd).__name__  # what the run transitions of this apply are by
        try:
            res = self._apply(cmd)
            if self.settled:
                self.cause = SETTLE
                self._settle_dependencies()
        except Exception as exc:
            # A bug here must not stop a replica (or every replica: they all apply the same
            # entry, the same way). What was changed before the exception stays changed,
            # identically on every replica; the entry is answered as rejected. (A run
            # transition RUN_TRANSITIONS does not allow is such a bug: IllegalTransition.)
            self.settled.clear()
            return Rejected(Reject.APPLY_FAILED, f"{type(exc).__name__}: {exc}")
        finally:
            self.cause = ""
        return res

    def _lifecycle(self, cmd: c.Lifecycle) -> Result:
        """A batch of starts, renewals and completions: each item applied exactly as the
        single command (through :meth:`apply`: its own ``at``, fence check, transitions,
        settling and rejection), so the batch changes the state as its items one by one
        would. ``Ok`` with the items' results, in order."""
        results: list[Result] = []
        for item in cmd.items:
            if isinstance(item, c.Start | c.Renew | c.Complete):
                results.append(self.apply(item))
            else:  # (the decoder never gives one: a bug of a caller)
                kind = type(item).__name__
                results.append(Rejected(Reject.BAD_COMMAND, f"{kind} in a lifecycle batch"))
        self.now_ms = max(self.now_ms, cmd.at_ms)
        return Ok(tuple(results))

    def _apply(self, cmd: c.Command) -> Result:
        match cmd:
            case c.PutJob():
                cycle = dependency_cycle(self.jobs, cmd.spec)
                if cycle:
                    return Rejected(
                        Reject.DEPENDENCY_CYCLE,
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
            case c.Arm():
                return self._arm(cmd)
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
            case c.SeedMembers():
                return self._seed_members(cmd)
            case c.AddMember():
                return self._add_member(cmd)
            case c.RemoveMember():
                return self._remove_member(cmd)
            case c.MemberChanged():
                return self._member_changed(cmd)
        return Rejected(Reject.BAD_COMMAND, f"unknown command {type(cmd).__name__}")

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
        self._disarm(spec.name)  # prepared from the old spec: the new one is decided anew
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
            return Rejected(Reject.UNKNOWN_JOB, f"no job named {name!r}")
        # The job's run history stays in the ledger (still bounded by ``history``): what
        # ran, where and when must outlive the job's definition.
        job = self.jobs.pop(name)
        self._disarm(name)
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
            return Rejected(Reject.UNKNOWN_JOB, f"no job named {name!r}")
        note = note if paused else ""
        if not paused and job.broken:  # a resume clears the broken flag (paused or not)
            job = replace(job, broken="", broken_ms=0, updated_ms=self.now_ms)
            self.jobs[name] = job
        if job.paused != paused or job.pause_note != note:
            if paused:
                self._disarm(name)
            job = replace(job, paused=paused, pause_note=note, updated_ms=self.now_ms)
            if paused and job.buffered:
                for rid, _ in job.buffered:
                    self._end_buffered(rid, PAUSED, f"{pause_reason(job)} (it was buffered)")
                job = replace(job, buffered=())
            if paused and job.retry:
                for pr in job.retry:
                    why = f"{pause_reason(job)} (this retry was pending)"
                    self._end_buffered(pr.run, PAUSED, why)
                job = replace(job, retry=())
            if paused and job.deps:
                for rid, _ in job.deps:
                    why = f"{pause_reason(job)} (this dependency fire waited for a node)"
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

    def _mark_broken(self, cmd: c.MarkBroken) -> Result:
        job = self.jobs.get(cmd.job)
        if job is None:
            return Rejected(Reject.UNKNOWN_JOB, f"no job named {cmd.job!r}")
        if job.broken:
            return Ok(False)  # already broken: the first reason stays
        if job.updated_ms != cmd.updated_ms:
            return Rejected(Reject.STALE, f"{cmd.job} changed since the leader evaluated it")
        self.jobs[cmd.job] = replace(job, broken=cmd.reason or "error", broken_ms=self.now_ms)
        key = job_errors_key(cmd.job)
        self.counters.extra[key] = self.counters.extra.get(key, 0) + 1
        return Ok(True)

    # ------------------------------------------------------------------ members

    def _report_config(self, cmd: c.ReportConfig) -> Result:
        if not cmd.node or len(cmd.node) > MAX_NODE_NAME:
            return Rejected(Reject.BAD_REPORT, f"a member name is 1 to {MAX_NODE_NAME} characters")
        if not cmd.hash or len(cmd.hash) > MAX_CONFIG_HASH:
            return Rejected(
                Reject.BAD_REPORT, f"a config hash is 1 to {MAX_CONFIG_HASH} characters"
            )
        if len(cmd.version) > MAX_CONFIG_HASH or not 0 <= cmd.level <= features.MAX_LEVEL:
            return Rejected(
                Reject.BAD_REPORT,
                f"a version is at most {MAX_CONFIG_HASH} characters and a feature level "
                f"0 to {features.MAX_LEVEL}",
            )
        changed = self.member_hashes.get(cmd.node) != cmd.hash
        self.member_hashes[cmd.node] = cmd.hash
        if cmd.version:  # (a report without one leaves what the member advertised)
            advertised = (cmd.version, cmd.level)
            changed |= self.member_versions.get(cmd.node) != advertised
            self.member_versions[cmd.node] = advertised
        return Ok(changed)

    def _member_problem(self, m: Member) -> str | None:
        """Why ``m`` cannot be a member (bad fields), or None."""
        if not m.name or len(m.name) > MAX_NODE_NAME:
            return f"a member name is 1 to {MAX_NODE_NAME} characters"
        for what, addr in (("raft", m.raft), ("api", m.api)):
            host, _, port = addr.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536 or len(addr) > 300:
                return f"member {m.name}: {what} address {addr!r} is not host:port"
        if m.raft == m.api:
            return f"member {m.name}: its raft and api addresses must differ"
        if len(m.tags) > 64 or any(len(k) + len(v) > 512 for k, v in m.tags):
            return f"member {m.name}: at most 64 tags of at most 512 characters"
        return None

    def _seed_members(self, cmd: c.SeedMembers) -> Result:
        if self.members:
            if sorted(self.members) == sorted(m.name for m in cmd.members):
                return Ok("unchanged")
            return Rejected(Reject.MEMBER_CLASH, "the membership was already seeded")
        if not cmd.members:
            return Rejected(Reject.BAD_MEMBER, "a seed names at least one member")
        seen: set[str] = set()
        for m in cmd.members:
            problem = self._member_problem(m)
            if problem is not None:
                return Rejected(Reject.BAD_MEMBER, problem)
            for key in (m.name, m.raft, m.api):
                if key in seen:
                    return Rejected(Reject.MEMBER_CLASH, f"{key} appears twice in the seed")
                seen.add(key)
        for m in sorted(cmd.members, key=lambda m: m.name):
            self.member_serial += 1
            self.members[m.name] = replace(m, incarnation=self.member_serial, added=False)
        return Ok("seeded")

    def _change_refusal(self, request: str) -> Result | None:
        """The answer to a change while membership is not seeded or another change is
        pending (the same request again: its first outcome), or None to go on."""
        change = self.member_change
        if change is not None and change.request == request and request:
            return Ok(change)
        if not self.members:
            return Rejected(
                Reject.MEMBERS_NOT_SEEDED,
                "the replicated membership is not seeded yet (the leader seeds it from its "
                "cluster file once every member runs a release of feature level 2): "
                "retry once raftcron members list shows the members",
            )
        if change is not None and not change.done:
            return Rejected(
                Reject.CHANGE_IN_PROGRESS,
                f"another membership change is in progress ({change.op} {change.name}): one "
                "change at a time; retry once raftcron members list shows no change pending",
            )
        if not request or len(request) > 128:
            return Rejected(Reject.BAD_MEMBER, "a change's request id is 1 to 128 characters")
        return None

    def _add_member(self, cmd: c.AddMember) -> Result:
        refused = self._change_refusal(cmd.request)
        if refused is not None:
            return refused
        m = cmd.member
        problem = self._member_problem(m)
        if problem is not None:
            return Rejected(Reject.BAD_MEMBER, problem)
        if m.name in self.removed:
            return Rejected(
                Reject.MEMBER_CLASH,
                f"{m.name} is a removed member, and a removed member's name is never used "
                f"again (its old data must never pass for the new member): pick another name",
            )
        for other in self.members.values():
            if other.name == m.name:
                return Rejected(Reject.MEMBER_CLASH, f"{m.name} is already a member")
            for what, addr in (("raft", m.raft), ("api", m.api)):
                if addr in (other.raft, other.api):
                    return Rejected(
                        Reject.MEMBER_CLASH,
                        f"{what} address {addr} is already member {other.name}'s: give "
                        f"{m.name} addresses of its own (remove {other.name} first if it "
                        "is being replaced)",
                    )
        self.member_serial += 1
        self.members[m.name] = replace(m, incarnation=self.member_serial, added=True)
        self.member_change = MemberChange(
            op=MEMBER_ADD, name=m.name, raft=m.raft, request=cmd.request, since_ms=self.now_ms
        )
        return Ok(self.member_change)

    def _remove_member(self, cmd: c.RemoveMember) -> Result:
        refused = self._change_refusal(cmd.request)
        if refused is not None:
            return refused
        m = self.members.get(cmd.name)
        if m is None:
            known = ", ".join(sorted(self.members))
            return Rejected(Reject.UNKNOWN_MEMBER, f"no member named {cmd.name!r} ({known})")
        if len(self.members) == 1:
            return Rejected(
                Reject.LAST_MEMBER,
                f"{cmd.name} is the last member: a cluster keeps at least one (add its "
                "replacement first)",
            )
        del self.members[cmd.name]
        self.removed[cmd.name] = m
        self.member_hashes.pop(cmd.name, None)
        self.member_versions.pop(cmd.name, None)
        self.member_change = MemberChange(
            op=MEMBER_REMOVE, name=m.name, raft=m.raft, request=cmd.request, since_ms=self.now_ms
        )
        return Ok(self.member_change)

    def _member_changed(self, cmd: c.MemberChanged) -> Result:
        change = self.member_change
        if change is None or change.request != cmd.request or change.done:
            return Ok(False)
        self.member_change = replace(change, done=True)
        return Ok(True)

    def _drain(self, cmd: c.Drain) -> Result:
        if cmd.kind not in DRAIN_KINDS:
            return Rejected(
                Reject.BAD_DRAIN, f"unknown drain kind {cmd.kind!r} (use {', '.join(DRAIN_KINDS)})"
            )
        if not cmd.node or len(cmd.node) > MAX_NODE_NAME:
            return Rejected(Reject.BAD_DRAIN, f"a member name is 1 to {MAX_NODE_NAME} characters")
        mark = self.drained.get(cmd.node)
        if cmd.drain:
            if mark is None or (mark.kind != cmd.kind and cmd.kind == DRAIN_OPERATOR):
                # (an operator's drain of a member shutting down outlives the shutdown)
                self.drained[cmd.node] = DrainMark(kind=cmd.kind, since_ms=self.now_ms)
        elif mark is not None and (cmd.kind == DRAIN_OPERATOR or mark.kind == DRAIN_SHUTDOWN):
            del self.drained[cmd.node]
        return Ok(self.drained.get(cmd.node))

    # ------------------------------------------------------------------ snapshots

    def capture(self) -> Callable[[], bytes]:
        """Copy the containers (cheap, O(n) pointer copies) and return the encoder.

        Call on the thread that applies commands; run the returned closure anywhere.
        """
        return capture(self)

    def snapshot(self) -> bytes:
        return self.capture()()

    @classmethod
    def restore(cls, data: bytes) -> State:
        """Decode a snapshot (``raftcron.core.snapshot``) and rebuild the derived indexes."""
        st = cls()
        restore_into(st, data)
        st._rebuild_live()
        st._rebuild_children()
        return st

    def digest(self) -> str:
        """A hash of the whole replicated state (canonical encoding)."""
        return hashlib.sha256(self.snapshot()).hexdigest()


def _when(spec: JobSpec) -> tuple[str, str, str, str]:
    """What decides a job's fire times (a change restarts its watermark at now)."""
    return (spec.schedule, spec.timezone, spec.dst_gap, spec.dst_repeat)


# Re-exported: the names other modules import from here.
__all__ = [
    "SNAPSHOT_VERSION",
    "UNSCHEDULABLE",
    "ArmOutcome",
    "LockCancelled",
    "LockEnded",
    "LockGrant",
    "LockQueued",
    "Ok",
    "PlanOutcome",
    "Reject",
    "Rejected",
    "Result",
    "State",
    "_run_row",
    "dependency_cycle",
    "dependency_decision",
    "job_errors_counts",
    "job_errors_key",
    "manual_run_id",
    "outcome_counts",
    "outcome_key",
    "synced_source",
    "tail",
    "unschedulable_counts",
    "unschedulable_key",
    "unschedulable_reason",
]
