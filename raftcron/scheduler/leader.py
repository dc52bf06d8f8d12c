"""Leader-only work: establish leadership, schedule fires, expire dead leases.

Lifecycle (Dkron's establishLeadership, done with Raft's guarantees):

1. A node that sees itself leader of term T commits a ``Barrier``; only after it has
   applied the barrier does it know the whole committed log (every earlier claim,
   watermark and lease) and act.
2. It reconciles the TOML jobs (``SyncConfig``) if its file is the one last reconciled
   (its ``config_hash`` is the replicated one, or none was recorded yet; else it leaves
   the jobs as they are and says so until an operator's ``reload`` on it:
   ``raftcron/reload.py``), lifts a ``shutdown`` drain of its own
   (it is running again: ``raftcron/drain.py``) unless it is stopping, then runs the
   scheduler and the lease monitor until the scope is cancelled: the node cancels it the
   instant it sees it is no longer leader of T.

The feature gate (``raftcron/core/features.py``): a reconciliation whose jobs to put use a
job key that some member does not support yet puts and deletes nothing at all (a WARNING
names the key, the job and the members still to upgrade); the leader tries it again each
second and reconciles the file as soon as the last of them has advertised the level.

Nothing here acts on ``isLeader()`` alone: every decision is a proposal, and only what
commits counts. A deposed leader's proposals simply never commit.

Lease expiry (docs/design.md, "Leases and fencing"): every node, leader or not, notes in its
:class:`LeaseTracker` the moment ``t_R`` on its own monotonic clock at which it applied a
lease's grant or its last committed renewal (a replay at start-up, or an installed
snapshot, counts as applied then). As leader it commits an ``Expire`` once its clock
passes ``t_R + D + P``: ``P = 0`` for a lease whose last renewal it applied while leading,
``P = D*rho + max election timeout`` (:func:`~raftcron.core.lease.takeover_patience`) for
one it inherited. A takeover adds the patience but never moves ``t_R``: before, every
takeover re-anchored every inherited lease at the takeover, so a run of leaderships
shorter than ``D + P`` deferred the expiry of an orphaned lease without bound.

The bound: an orphaned run is recorded ``lost`` at most ``D + P`` after the current leader
applied its last renewal (or, for a leader that started after that renewal, after its own
start), plus the time to commit the ``Expire`` (this loop looks every 0.1 s). Every
replica applies a committed renewal within a round trip, so with a leader that stays up
that is ``D + P`` (plus one election when the leader changes) after the last renewal.

Why it is safe: an ``Expire`` names the renewal count this node last applied, and
``apply`` refuses it when a later renewal committed first. So a committed ``Expire`` means
the last renewal is the one anchored at ``t_R``, which is after it committed, which is
after the holder started its timer (``t_send``); the holder stopped trusting the lease at
``t_send + D*(1-rho)/(1+rho) - m`` on its own clock, before ``t_R + D`` on ours (clock
rates differ by at most ``rho``). A replica that applied a renewal late (a lagging
follower, a restart) only has a later ``t_R``: it expires later, never earlier. No time
carried inside an entry is used, so wall-clock jumps change nothing here.

Named locks get the same treatment (``ExpireLock`` naming the fence and the renewal
count). Their waiters are cancelled by the API node that serves them when their wait runs
out; one whose API node died is cancelled here ``wait + LOCK_WAIT_GRACE_MS`` after this
node saw it queued (its first sight survives takeovers too), so no waiter lives forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from raftcron import logs, memory
from raftcron.clock import Clock, wall_s
from raftcron.core import features
from raftcron.core.commands import (
    Arm,
    Barrier,
    CancelLockWait,
    Drain,
    Expire,
    ExpireLock,
    MarkBroken,
    PackedSpecs,
    Plan,
    SyncConfig,
)
from raftcron.core.lease import takeover_patience
from raftcron.core.model import (
    ARM_LEAD_MS,
    DRAIN_SHUTDOWN,
    LOCK_WAIT_GRACE_MS,
    Job,
    JobSpec,
    arm_problem,
)
from raftcron.core.planner import NEVER_MS, NodeInfo, arm_fires, error_text, next_due_ms, plan
from raftcron.core.results import Reject
from raftcron.core.runkey import RunKey
from raftcron.core.state import (
    UNSCHEDULABLE,
    ArmOutcome,
    LockEnded,
    Ok,
    PlanOutcome,
    Rejected,
    State,
)
from raftcron.proposals import propose_with_retry
from raftcron.raft.node import TRACE_ENV, ProposalError, RaftNode

logger = logging.getLogger(__name__)


class FeatureNotEnabled(Exception):
    """The file's jobs use a feature some member does not support yet: nothing of the file
    was reconciled (``refusal`` says what and who)."""

    def __init__(self, refusal: features.Refusal) -> None:
        self.refusal = refusal
        super().__init__(refusal.message())


PROPOSE_TIMEOUT: Final = 3.0
# Specs per config sync entry (about 300 bytes each encoded); deletions go 10 times as many.
CONFIG_SYNC_BATCH: Final = 500
IDLE_WAKE_S: Final = 1.0  # re-read the wall clock at least this often (clock jumps)
# The loop's timer sleeps whole ms, rounded up (epoll), from a now rounded down to the ms:
# it woke 1-1.5 ms after the due ms (p50; docs/notes/2026-12-08-grant-path.md). So it
# sleeps until EARLY_S before, then yields to the loop until the due ms, at most
# SPIN_YIELDS times per due ms (a yield takes 10-50 us; a wall clock that does not move,
# in tests, is not spun on for long), then sleeps as before.
EARLY_S: Final = 0.001
SPIN_YIELDS: Final = 200
MAX_FIRES_PER_PLAN: Final = 20_000
# ``RAFTCRON_ARMED_FIRES=0`` in the agent's environment: the leader arms no fire (for
# before/after measurements; docs/design.md, "Armed fires").
ARMED_FIRES_ENV: Final = "RAFTCRON_ARMED_FIRES"
# Fires armed at most per pass of the loop: arming is for the few fires whose lateness
# matters; the rest of a burst due at one instant is granted as ever (and each node
# prepares at most ``max_starting`` armed runs at once: raftcron/executor/runner.py).
ARM_MAX_FIRES: Final = 64
REBUILD_CHUNK: Final = 2_000  # jobs scheduled between two yields to the loop (_rebuild_heap)
# Files with more jobs than this are unpacked off the loop, and the memory their sync
# used is handed back to the OS afterwards (raftcron.memory.trim).
LARGE_CONFIG: Final = 5_000

K = TypeVar("K")


@dataclass(frozen=True, slots=True)
class _Seen:
    fence: int  # 0 for a lock waiter
    mono: float
    lease_ms: int
    patience: float  # extra seconds on top of the lease (takeover)
    renewals: int = 0  # the lease's committed renewal count when last seen


class LeaseTracker:
    """When this node applied each live lease's grant or last renewal (monotonic seconds).

    Fed on every node from the apply stream (``touch``), so a new leader has the times it
    applied them itself; :meth:`takeover` keeps them (see the module docstring).
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.seen: dict[str, _Seen] = {}
        self.locks: dict[str, _Seen] = {}  # lock name -> its holder's lease
        self.waiters: dict[tuple[str, str], _Seen] = {}  # (lock, request) -> its wait

    def touch(self, rid: str, fence: int, lease_ms: int, renewals: int = 0) -> None:
        self.seen[rid] = _Seen(fence, self.clock.monotonic(), lease_ms, 0.0, renewals)

    def forget(self, rid: str) -> None:
        self.seen.pop(rid, None)

    def touch_lock(self, name: str, fence: int, ttl_ms: int, renewals: int) -> None:
        self.locks[name] = _Seen(fence, self.clock.monotonic(), ttl_ms, 0.0, renewals)

    def forget_lock(self, name: str, fence: int) -> None:
        seen = self.locks.get(name)
        if seen is not None and seen.fence == fence:
            del self.locks[name]

    def forget_lock_entry(self, name: str, seen: _Seen) -> None:
        """Forget ``seen`` unless the lock was touched again since (a renewal, a grant)."""
        if self.locks.get(name) is seen:
            del self.locks[name]

    def touch_waiter(self, name: str, request: str, wait_ms: int) -> None:
        """A queued acquire; a retry that finds it queued keeps the first time."""
        self.waiters.setdefault(
            (name, request), _Seen(0, self.clock.monotonic(), wait_ms, LOCK_WAIT_GRACE_MS / 1000)
        )

    def forget_waiter(self, name: str, request: str) -> None:
        self.waiters.pop((name, request), None)

    def takeover(self, state: State, election_timeout: float) -> None:
        """Inherit the live leases, locks and waiters of ``state`` (just after this node's
        barrier applied): each keeps the time this node applied its grant or last renewal,
        and gets the takeover patience on top. One this node has not seen at that renewal
        count (its apply is still on the way to the loop) is anchored now, which is later:
        safe. Entries of leases that ended are dropped."""
        now = self.clock.monotonic()

        def inherit(old: _Seen | None, fence: int, ms: int, renewals: int) -> _Seen:
            patience = takeover_patience(ms, election_timeout)
            if old is None or (old.fence, old.renewals) != (fence, renewals):
                return _Seen(fence, now, ms, patience, renewals)
            return _Seen(fence, old.mono, ms, max(old.patience, patience), renewals)

        self.seen = {
            rid: inherit(self.seen.get(rid), lz.fence, lz.lease_ms, lz.renewals)
            for rid, lz in ((lz.key, lz) for lz in state.lease_list())
        }
        self.locks = {
            name: inherit(self.locks.get(name), lk.fence, lk.ttl_ms, lk.renewals)
            for name, lk in ((lk.name, lk) for lk in state.lock_list())
        }
        grace = LOCK_WAIT_GRACE_MS / 1000
        self.waiters = {
            (name, w.request): self.waiters.get((name, w.request))
            or _Seen(0, now, w.wait_ms, grace)
            for name, lk in ((lk.name, lk) for lk in state.lock_list())
            for w in lk.waiters
        }

    def expired(self) -> list[tuple[str, _Seen]]:
        return self._due(self.seen)

    def expired_locks(self) -> list[tuple[str, _Seen]]:
        return self._due(self.locks)

    def expired_waiters(self) -> list[tuple[tuple[str, str], _Seen]]:
        return self._due(self.waiters)

    def _due(self, seen: dict[K, _Seen]) -> list[tuple[K, _Seen]]:
        now = self.clock.monotonic()
        return [(k, s) for k, s in seen.items() if now > s.mono + s.lease_ms / 1000 + s.patience]


class Leader:
    """One leadership term of this node. ``run()`` until cancelled."""

    def __init__(
        self,
        *,
        node: str,
        term: int,
        raft: RaftNode,
        clock: Clock,
        leases: LeaseTracker,
        config_jobs: PackedSpecs | Sequence[JobSpec],
        history: int,
        live_nodes: Callable[[], list[NodeInfo]],
        election_timeout: float,
        stopping: Callable[[], bool] = lambda: False,
        config_hash: str = "",
        levels: Callable[[], Mapping[str, int]] = dict,
    ) -> None:
        self.node = node
        self.term = term
        self.raft = raft
        self.clock = clock
        self.leases = leases
        # Packed: a leader needs the file's specs only for the sync at the start of its
        # term; it unpacks them then and lets them go after.
        self.config_jobs = (
            config_jobs if isinstance(config_jobs, PackedSpecs) else PackedSpecs.pack(config_jobs)
        )
        self.history = history
        self.config_hash = config_hash  # of the file config_jobs come from ("": not known)
        # Its file is not the one last reconciled, so its jobs were left alone (the
        # replicated hash when it looked; None: it reconciled, or has not looked yet).
        self.unreconciled: str | None = None
        # Each member's feature level (raftcron/reload.py: ConfigControl.levels), and why
        # the file's jobs were last refused by the gate (None: they were not).
        self.levels = levels
        self.gated: features.Refusal | None = None
        self._sync_lock = asyncio.Lock()
        self.live_nodes = live_nodes
        self.election_timeout = election_timeout
        self.stopping = stopping  # this node's SIGTERM drain has begun
        self.established = asyncio.Event()
        self._dirty = asyncio.Event()
        self._heap: list[tuple[int, str]] = []
        self._next: dict[str, int] = {}
        # The entries of ``_heap`` (the same tuples) of the jobs whose fires may be armed,
        # each looked at ARM_LEAD_MS before its time.
        self._arm_heap: list[tuple[int, str]] = []
        self._arming: set[asyncio.Task[None]] = set()
        self._armed_for: dict[str, int] = {}  # job -> the due ms last handed to _arm
        self.arm_enabled = os.environ.get(ARMED_FIRES_ENV, "1") != "0"
        self._changed: set[str] = set()
        self._rebuild = True
        # jobs whose computation raised, to be marked broken: name -> (updated_ms, reason)
        self._breaking: dict[str, tuple[int, str]] = {}
        # ``RAFTCRON_TRACE_RUNS=1``: each plan that granted runs logs its timeline (wall
        # seconds: the loop woke, refreshed, read, planned, proposed, committed), which
        # bench/run_timeline.py joins with the replicas' and the executor's by run id.
        self._trace = os.environ.get(TRACE_ENV) == "1"
        # _unschedulable's spec by name, for the job list it was last given
        self._spec_index: tuple[Sequence[Job], dict[str, JobSpec]] | None = None

    # -- notifications from the apply stream (on the loop)

    def jobs_changed(self, names: Sequence[str] | None) -> None:
        """``None`` means everything (e.g. a snapshot was installed)."""
        if names is None:
            self._rebuild = True
        else:
            self._changed.update(names)
        self._dirty.set()

    # -- the term

    async def run(self) -> None:
        with logs.bound(term=self.term):  # every line of this leadership names its term
            await self._commit(
                Barrier(
                    at_ms=self.clock.wall_ms(), node=self.node, nonce=f"{self.node}:{self.term}"
                )
            )
            self.raft.machine.read(lambda s: self.leases.takeover(s, self.election_timeout))
            with contextlib.suppress(FeatureNotEnabled):  # (logged; tried again each second)
                await self._sync_config_if_agreed()
            await self._lift_own_shutdown_drain()
            self.established.set()
            logger.info(
                "leader %s: term %d established",
                self.node,
                self.term,
                extra={"event": "leader_established"},
            )
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._schedule_loop())
                tg.create_task(self._expiry_loop())
                tg.create_task(self._gated_loop())

    async def _sync_config_if_agreed(self) -> None:
        """At the start of the term: reconcile this node's file only if it is the file last
        reconciled (or none was recorded: a new cluster, or one from before hashes). Else
        nothing a file says is put or deleted, so an election never silently brings back
        or drops a job; the operator decides with ``raftcron reload`` on this node."""
        async with self._sync_lock:
            reconciled = self.raft.machine.read(lambda s: s.reconciled_config_hash())
            if reconciled and self.config_hash and reconciled != self.config_hash:
                self.unreconciled = reconciled
                logger.warning(
                    "leader %s: its cluster file (config_hash %s) is not the configuration "
                    "last reconciled (config_hash %s): its jobs are NOT reconciled, the "
                    "cluster keeps the jobs it has (make this node's file the same as the "
                    "other members', or run `raftcron reload %s` to make its file the "
                    "cluster's)",
                    self.node, self.config_hash, reconciled, self.node,
                )  # fmt: skip
                return
            await self._sync_config()

    async def reconcile(
        self, config_jobs: PackedSpecs, config_hash: str, history: int
    ) -> list[str]:
        """An operator's reload on this node: its (new) file becomes the cluster's,
        whatever was reconciled before. The names of the jobs that changed."""
        async with self._sync_lock:
            self.config_jobs, self.config_hash, self.history = config_jobs, config_hash, history
            return await self._sync_config()

    async def _sync_config(self) -> list[str]:
        """Reconcile the file's jobs: only what differs from the replicated state, in
        entries of at most ``CONFIG_SYNC_BATCH`` specs (each one commits well within the
        proposal timeout, whatever the size of the file); the last one records the file's
        ``config_hash``."""
        large = len(self.config_jobs) > LARGE_CONFIG
        specs = (
            await asyncio.to_thread(self.config_jobs.unpack) if large else self.config_jobs.unpack()
        )
        puts, gone = self._config_changes(specs)
        del specs  # only the specs to put outlive the comparison
        used = [f for spec in puts for f in features.spec_features(spec)]
        refused = features.refusal(used, self.levels()) if used else None
        if refused is not None:
            if refused != self.gated:
                logger.warning(
                    "leader %s: its cluster file (config_hash %s) is NOT reconciled, no job "
                    "of it is put or deleted: %s (the leader reconciles it once they are)",
                    self.node, self.config_hash, refused.message(),
                )  # fmt: skip
            self.gated = refused
            raise FeatureNotEnabled(refused)
        if self.gated is not None:
            logger.info(
                "leader %s: every member supports its cluster file's jobs now: reconciling "
                "it (config_hash %s)",
                self.node, self.config_hash,
            )  # fmt: skip
        self.gated = None
        changed = await self._put_config(puts, gone)
        self.unreconciled = None
        if large:  # the specs and their entries' encodings are garbage now
            await asyncio.to_thread(memory.trim)
        return changed

    async def _gated_loop(self) -> None:
        """Reconcile a file the gate refused once every member supports it."""
        while True:
            await asyncio.sleep(1.0)
            if self.gated is None:
                continue
            levels = self.levels()
            need = self.gated.feature.level
            if any(levels.get(n, lv) < need for n, lv in self.gated.behind.items()):
                continue  # (still behind: the WARNING was said)
            async with self._sync_lock:
                with contextlib.suppress(FeatureNotEnabled):
                    await self._sync_config()

    async def _lift_own_shutdown_drain(self) -> None:
        """This node leads, so it runs again: a shutdown drain of its own (its last life's
        SIGTERM) ends now, before anything is placed (after every member was stopped at
        once, every one of them is marked)."""
        name = self.node
        mark = self.raft.machine.read(lambda s: s.drain_mark(name))
        if mark is None or mark.kind != DRAIN_SHUTDOWN or self.stopping():
            return
        await self._commit(
            Drain(at_ms=self.clock.wall_ms(), node=name, drain=False, kind=DRAIN_SHUTDOWN)
        )
        logger.info("leader %s: its shutdown drain is lifted (it runs again)", name)

    def _config_changes(self, specs: Sequence[JobSpec]) -> tuple[list[JobSpec], list[str]]:
        return self.raft.machine.read(lambda s: s.config_changes(specs))

    async def _put_config(self, puts: list[JobSpec], gone: list[str]) -> list[str]:
        """Commit ``puts`` and ``delete`` ``gone`` in batches (both lists are emptied);
        the names of the jobs that changed."""
        total = len(puts)
        changed: list[str] = []
        first = True
        while first or puts or gone:
            # taken out of the lists in place: a spec is freed once its entry is proposed
            batch, delete = puts[:CONFIG_SYNC_BATCH], gone[: CONFIG_SYNC_BATCH * 10]
            del puts[:CONFIG_SYNC_BATCH], gone[: CONFIG_SYNC_BATCH * 10]
            cmd = SyncConfig(
                at_ms=self.clock.wall_ms(),
                specs=tuple(batch),
                history=self.history,
                partial=True,
                delete=tuple(delete),
                # the last entry: the file is reconciled once it commits
                config_hash="" if puts or gone else self.config_hash,
            )
            res = await self._commit(cmd)
            if isinstance(res, Ok) and res.value:
                changed.extend(res.value)
            done = total - len(puts)
            if total > CONFIG_SYNC_BATCH and (done == total or not done % (CONFIG_SYNC_BATCH * 10)):
                logger.info("leader %s: config sync: %d/%d jobs put", self.node, done, total)
            first = False
        if 0 < len(changed) <= 20:
            logger.info("leader %s: config jobs reconciled: %s", self.node, ", ".join(changed))
        elif changed:
            logger.info("leader %s: %d config jobs reconciled", self.node, len(changed))
        return changed

    async def _commit(self, cmd: Barrier | SyncConfig | Drain) -> Ok | Rejected:
        """Propose until committed (retrying the same idempotent command)."""

        def retrying(exc: ProposalError, _: int) -> None:
            logger.info(
                "leader %s: %s not committed (%s); retrying",
                self.node,
                type(cmd).__name__,
                exc.code,
            )

        return await propose_with_retry(
            self.raft.propose, cmd, attempt_timeout=PROPOSE_TIMEOUT, pause=0.1, on_retry=retrying
        )

    # -- scheduling

    async def _refresh(self) -> None:
        while self._rebuild:  # (set again if a snapshot was installed while it yielded)
            await self._rebuild_heap()
        if self._changed:
            names = list(self._changed)
            self._changed.clear()

            def read(s: State) -> dict[str, tuple[Job | None, frozenset[str]]]:
                # a change of a job (a run of it ended, it was paused, ...) may have given
                # the jobs that run after it a dependency fire to claim
                wanted = [*names, *sorted(s.descendants(names))]
                return {n: (s.job(n), s.live_fires(n)) for n in wanted}

            jobs_by_name = self.raft.machine.read(read)
            for name, (maybe, fires) in jobs_by_name.items():
                self._next.pop(name, None)
                self._armed_for.pop(name, None)  # (a change drops its reservation: again)
                if maybe is not None:
                    self._push(maybe, fires)

    async def _rebuild_heap(self) -> None:
        """Look at every job again (a new term, an installed snapshot). The state's lock is
        held only to copy the job list and the live fires of the jobs that have live runs;
        the next fire of each job is computed off the lock, yielding to the loop every
        ``REBUILD_CHUNK`` jobs: with 100,000 jobs this took 2-8 s in one piece, during
        which the loop served nothing (API, executor, renewals) and the lock was held for
        0.5-1.7 s of it, stalling the Raft tick thread's applies (bench/analysis.md,
        2026-12-08). A change applied while it yields is noted in ``_changed`` and read
        again after it (it is cleared before the read, so the newest read wins); a snapshot
        installed meanwhile sets ``_rebuild`` again and the next pass starts over."""
        self._rebuild = False
        self._changed.clear()
        started = self.clock.monotonic()

        def read(s: State) -> tuple[list[Job], dict[str, frozenset[str]]]:
            return s.job_list(), {name: s.live_fires(name) for name in s.busy_jobs()}

        jobs, fires = self.raft.machine.read(read)
        self._next.clear()
        self._heap.clear()
        self._arm_heap.clear()
        self._armed_for.clear()
        idle: frozenset[str] = frozenset()
        for i, job in enumerate(jobs):
            if i and not i % REBUILD_CHUNK:
                await asyncio.sleep(0)
            self._push(job, fires.get(job.spec.name, idle))
        if len(jobs) >= REBUILD_CHUNK:
            logger.info(
                "leader %s: %d jobs scheduled in %.2fs",
                self.node,
                len(jobs),
                self.clock.monotonic() - started,
            )

    def _push(self, job: Job, live_fires: frozenset[str]) -> None:
        """Schedule a look at ``job`` when its next fire is due (its jitter offset
        included), or now if a buffered run of it can go. ``live_fires``: the fires of its
        live runs (a retry of an instance may go beside its own fire's other instances)."""
        try:
            t = next_due_ms(job, bool(live_fires), live_fires)
        except Exception as exc:  # this job only: every other job keeps its place
            if not job.broken:
                self._broke(job, f"next fire: {error_text(exc)}")
            return  # (a broken job whose schedule fails: nothing to record until it changes)
        if t >= NEVER_MS:  # runs after other jobs, none of its fires waits: a change of
            return  # its parents (jobs_changed, _refresh) brings it back
        self._next[job.spec.name] = t
        entry = (t, job.spec.name)
        heapq.heappush(self._heap, entry)
        if self.arm_enabled and not arm_problem(job):
            heapq.heappush(self._arm_heap, entry)

    def _pop_due(self, now_ms: int) -> list[str]:
        names: list[str] = []
        while self._heap and self._heap[0][0] <= now_ms and len(names) < MAX_FIRES_PER_PLAN:
            t, name = heapq.heappop(self._heap)
            if self._next.get(name) == t:
                del self._next[name]
                self._armed_for.pop(name, None)
                names.append(name)
        return names

    def _pop_arm(self, now_ms: int) -> list[str]:
        """The jobs whose next fire is due within ``ARM_LEAD_MS`` (and still ahead), at
        most ``ARM_MAX_FIRES``: the others of this pass are not armed."""
        names: list[str] = []
        while self._arm_heap and self._arm_heap[0][0] - ARM_LEAD_MS <= now_ms:
            t, name = heapq.heappop(self._arm_heap)
            if (
                len(names) < ARM_MAX_FIRES
                and self._next.get(name) == t
                and t > now_ms
                and self._armed_for.get(name) != t
            ):
                self._armed_for[name] = t
                names.append(name)
        return names

    async def _schedule_loop(self) -> None:
        try:
            await self._schedule()
        finally:
            for task in self._arming:
                task.cancel()

    async def _schedule(self) -> None:
        marks: dict[str, float] | None = None
        wait: dict[str, float] = {}  # traced: the last wait (began, delay, ended by timer)
        spin_due, spins = -1, 0  # the due ms yielded for, and how many times
        while True:
            if self._trace:
                marks = {"woke": wall_s(), **wait}
            await self._refresh()
            if marks is not None:
                marks["refreshed"] = wall_s()
            if self._breaking:
                await self._mark_broken()
            now_ms = self.clock.wall_ms()
            names = self._pop_due(now_ms)
            if names:
                await self._fire(names, now_ms, marks)
                continue
            armable = self._pop_arm(now_ms)
            if armable:  # proposed beside the loop: a fire due meanwhile does not wait
                task = asyncio.get_running_loop().create_task(self._arm(armable, now_ms))
                self._arming.add(task)
                task.add_done_callback(self._arming.discard)
            delay = IDLE_WAKE_S
            if self._heap:
                due = self._heap[0][0]
                delay = min(delay, max(0.0, (due - now_ms) / 1000))
                if delay > EARLY_S:
                    delay -= EARLY_S
                else:
                    if spin_due != due:
                        spin_due, spins = due, 0
                    if spins < SPIN_YIELDS:
                        spins += 1
                        await asyncio.sleep(0)
                        continue
            if self._arm_heap:
                arm_at = self._arm_heap[0][0] - ARM_LEAD_MS
                delay = min(delay, max(0.0, (arm_at - now_ms) / 1000))
            self._dirty.clear()
            if self._trace:
                wait = {"wait_began": wall_s(), "wait_delay_s": delay, "wait_timer": 1.0}
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):  # not wait_for: it can lose a cancel (3.11)
                    await self._dirty.wait()
                    wait["wait_timer"] = 0.0

    async def _arm(self, names: list[str], now_ms: int) -> None:
        """Reserve the next fire of ``names`` (due within ``ARM_LEAD_MS``) for the node
        placement chooses now, so that it prepares the run and commits its start ahead
        (docs/design.md, "Armed fires"). Best effort: a fire not armed runs as ever."""
        if features.refusal(features.command_features(Arm(at_ms=0, fires=())), self.levels()):
            return  # a member below level 5 would skip the command
        jobs, busy, drained, load = self.raft.machine.read(
            lambda s: (s.jobs_named(names), s.busy_jobs(), s.drained_members(), s.load_by_node())
        )
        fires = arm_fires(jobs, now_ms, ARM_LEAD_MS, self.live_nodes(), load, busy, drained)
        if not fires:
            return
        try:
            res = await self.raft.propose(Arm(at_ms=now_ms, fires=tuple(fires)), PROPOSE_TIMEOUT)
        except ProposalError as exc:
            logger.info("leader %s: %d fire(s) not armed (%s)", self.node, len(fires), exc.code)
            return
        if isinstance(res, Ok) and isinstance(res.value, ArmOutcome):
            for rid, fence, node in res.value.armed:
                logger.debug(
                    "armed run=%s fence=%d node=%s",
                    rid,
                    fence,
                    node,
                    extra={"event": "run_armed", "run_id": rid, "fence": fence},
                )

    async def _fire(
        self, names: list[str], now_ms: int, marks: dict[str, float] | None = None
    ) -> None:
        jobs, busy, live, drained, armed = self.raft.machine.read(
            lambda s: (
                s.jobs_named(names),
                s.busy_jobs(),
                s.live_by_job(),
                s.drained_members(),
                s.armed_nodes(),
            )
        )
        nodes = self.live_nodes()
        load = self.raft.machine.read(lambda s: s.load_by_node())
        errors: list[tuple[Job, str]] = []
        if marks is not None:
            marks["read"] = wall_s()
        batch: Plan = plan(
            jobs, now_ms, nodes, load, busy, live, errors, drained=drained, armed=armed
        )
        if marks is not None:
            marks["planned"] = wall_s()
        for job, why in errors:  # planned without them; marked broken next
            self._broke(job, f"plan: {why}")
        if batch.fires or batch.missed:
            if marks is not None:
                marks["proposed"] = wall_s()
            try:
                res = await self.raft.propose(batch, PROPOSE_TIMEOUT)
            except ProposalError as exc:
                logger.warning(
                    "leader %s: plan of %d fire(s) not committed (%s); re-planning",
                    self.node,
                    len(batch.fires),
                    exc.code,
                )
                res = None
                await asyncio.sleep(0.2)
            if isinstance(res, Ok) and isinstance(res.value, PlanOutcome):
                out = res.value
                if marks is not None and out.granted:
                    marks["committed"] = wall_s()
                    logger.info(
                        "plan trace: now_ms=%d %s",
                        now_ms,
                        json.dumps({"granted": [rid for rid, _, _ in out.granted], **marks}),
                    )
                for rid, fence, node in out.granted:
                    logger.info(
                        "granted run=%s fence=%d node=%s",
                        rid,
                        fence,
                        node,
                        extra={"event": "run_granted", "run_id": rid, "fence": fence},
                    )
                for rid, why in out.skipped:
                    if why.startswith(UNSCHEDULABLE):
                        self._unschedulable(rid, why, jobs)
                    else:
                        logger.warning("skipped run=%s: %s", rid, why)
                for rid, why in out.buffered:
                    logger.info("buffered run=%s: %s", rid, why)
                for rid in out.paused:
                    logger.info("paused run=%s (the job is paused; see the ledger)", rid)
                for rid in out.missed:
                    logger.warning("missed run=%s (see ledger for the count and reason)", rid)
        # Re-read the committed watermarks whatever happened: a failed plan is re-planned
        # from them, a committed one moves them on.
        self._changed.update(names)

    # -- jobs whose computation fails

    def _broke(self, job: Job, why: str) -> None:
        """An exception while computing ``job``: it is marked broken (a replicated flag,
        committed by :meth:`_mark_broken`) instead of stopping the scheduler."""
        name = job.spec.name
        if name not in self._breaking:
            logger.warning(
                "job=%s is broken: %s (its fires are recorded as missed until a PUT or a "
                "resume of the job clears it)",
                name,
                why,
            )
        self._breaking[name] = (job.updated_ms, why)

    async def _mark_broken(self) -> None:
        for name, (updated_ms, why) in list(self._breaking.items()):
            cmd = MarkBroken(
                at_ms=self.clock.wall_ms(), job=name, updated_ms=updated_ms, reason=why
            )
            try:
                res = await self.raft.propose(cmd, PROPOSE_TIMEOUT)
            except ProposalError as exc:
                logger.warning(
                    "leader %s: broken mark of job=%s not committed (%s); retrying",
                    self.node,
                    name,
                    exc.code,
                )
                await asyncio.sleep(0.2)
                return
            if isinstance(res, Ok) and res.value:
                logger.info("leader %s: job=%s marked broken: %s", self.node, name, why)
            if self._breaking.get(name) == (updated_ms, why):
                del self._breaking[name]
            # committed, or refused (the job changed or went): look at it again either way
            self._changed.add(name)

    def _unschedulable(self, rid: str, why: str, jobs: Sequence[Job]) -> None:
        """Loudly: no live node could take a run (tags, max_parallel, too few nodes for
        ``count``). The ledger has it as skipped and ``raftcron_unschedulable_total``
        counts it; this line names the job, the run, the tags and the nodes seen live."""
        key = RunKey.parse(rid)
        name = key.job if key is not None else rid
        # One index per plan's job list: a scan of the list per run made a plan of 20,000
        # unschedulable fires cost 20,000 x 10,000 comparisons (6-10 s of the loop, after a
        # 100,000-job claim-only burst; bench/analysis.md, 2026-12-08).
        index = self._spec_index
        if index is None or index[0] is not jobs:
            index = self._spec_index = (jobs, {j.spec.name: j.spec for j in jobs})
        spec = index[1].get(name)
        tags = ", ".join(f"{k}={v}" for k, v in spec.tags) if spec is not None else "?"
        live = ", ".join(n.name for n in self.live_nodes())
        drained = ", ".join(sorted(self.raft.machine.read(lambda s: s.drained_members())))
        logger.warning(
            "unschedulable job=%s run=%s tags={%s} live_nodes=[%s] drained=[%s]: %s",
            name, rid, tags, live, drained, why,
        )  # fmt: skip

    # -- lease expiry

    async def _expiry_loop(self) -> None:
        while True:
            await self._expire_runs()
            await self._expire_locks()
            await asyncio.sleep(0.1)

    async def _expire_runs(self) -> None:
        for rid, seen in self.leases.expired():
            cmd = Expire(
                at_ms=self.clock.wall_ms(),
                run_id=rid,
                fence=seen.fence,
                renewals=seen.renewals,
                reason=(
                    f"lease expired: no renewal for {seen.lease_ms / 1000:g}s "
                    "(executor dead, frozen or cut off)"
                ),
            )
            try:
                res = await self.raft.propose(cmd, PROPOSE_TIMEOUT)
            except ProposalError as exc:
                logger.warning(
                    "leader %s: expire of %s not committed (%s)", self.node, rid, exc.code
                )
                continue
            if isinstance(res, Ok):
                logger.warning(
                    "lost run=%s fence=%d: %s",
                    rid,
                    seen.fence,
                    cmd.reason,
                    extra={"event": "run_lost", "run_id": rid, "fence": seen.fence},
                )
            elif res.code != Reject.RENEWED:
                # The lease is gone (completed or expired). "renewed": the renewal's commit
                # was applied before this rejection and has already re-touched the lease.
                self.leases.forget(rid)

    async def _expire_locks(self) -> None:
        for name, seen in self.leases.expired_locks():
            expire = ExpireLock(
                at_ms=self.clock.wall_ms(),
                name=name,
                fence=seen.fence,
                renewals=seen.renewals,
                reason=f"no renewal for {seen.lease_ms / 1000:g}s (holder dead, frozen or cut off)",
            )
            try:
                res = await self.raft.propose(expire, PROPOSE_TIMEOUT)
            except ProposalError as exc:
                logger.warning(
                    "leader %s: expiry of lock %s not committed (%s)", self.node, name, exc.code
                )
                continue
            if isinstance(res, Ok) and isinstance(res.value, LockEnded):
                nxt = res.value.granted
                logger.warning(
                    "lock %s fence=%d expired: %s; %s",
                    name,
                    seen.fence,
                    expire.reason,
                    "free" if nxt is None else f"granted to {nxt.holder!r} fence={nxt.fence}",
                )
            else:  # released, or renewed just in time (then it was touched again)
                self.leases.forget_lock_entry(name, seen)
        for (name, request), _seen in self.leases.expired_waiters():
            cancel = CancelLockWait(
                at_ms=self.clock.wall_ms(),
                name=name,
                request=request,
                reason="abandoned: its wait ran out and its API node never cancelled it",
            )
            try:
                await self.raft.propose(cancel, PROPOSE_TIMEOUT)
            except ProposalError as exc:
                logger.warning(
                    "leader %s: cancel of lock %s waiter %s not committed (%s)",
                    self.node,
                    name,
                    request,
                    exc.code,
                )
                continue
            logger.info("lock %s: dropped abandoned waiter %s", name, request)
            self.leases.forget_waiter(name, request)
