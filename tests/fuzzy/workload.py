"""A seeded workload of real commands, proposed the way raftcron's own code proposes them.

* The **scheduler** runs on whichever member leads: the real planner
  (:func:`raftcron.core.planner.plan`, as ``scheduler/leader.py`` calls it) on that
  member's committed state, one plan in flight at a time; the leader also expires leases
  and locks that were not renewed in time (``Expire``, ``ExpireLock``, with the renewal
  count it saw, as ``LeaseTracker`` does).
* An **executor** on every member acts on the grants its own replica has applied: a
  fenced ``Start``, ``Renew``s, then ``Complete`` (or it "hangs" and stops renewing, so
  the leader expires the run); a stop request on its lease ends the run as ``killed``.
  A crash forgets everything it ran.
* **API clients** put, pause, resume and delete jobs, kill runs, drain and undrain
  members, take, renew, release and cancel locks, and commit barriers, each through a
  random member (a follower forwards to the leader).
* Every proposal has a deadline; on failure or timeout it is retried with the *same
  bytes* through another member (raftcron's idempotent keys make that safe), and now and
  then a client repeats a command that was acknowledged (its ack was "lost").

Everything random comes from one ``random.Random`` seeded by the run's seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raftcron.core import commands as c
from raftcron.core.model import DRAIN_OPERATOR, FAILED, KILLED, SUCCEEDED, JobSpec
from raftcron.core.planner import NodeInfo, plan
from raftcron.core.state import LockGrant, Ok, Result, State
from raftcron.raft.seam import FAIL_REASON
from tests.fuzzy.cluster import Cluster, Member

PROPOSE_TIMEOUT = 3.0
MAX_ATTEMPTS = 6
JOBS = ("j0", "j1", "j2", "j3")
LOCKS = ("L0", "L1")
OVERLAPS = ("allow", "skip", "buffer_one", "buffer_all", "cancel_other", "terminate_other")


@dataclass
class Proposal:
    data: bytes
    kind: str
    on_ok: Callable[[Result], None] | None = None
    attempts: int = 0
    deadline: float = 0.0
    via: str = ""
    token: int = 0  # which attempt the pending callback belongs to
    done: bool = False


@dataclass
class _Exec:
    """A run this member's executor works on."""

    fence: int
    lease_ms: int
    token: str
    finish_at: float
    hang: bool
    started: bool = False
    renew_at: float = 0.0
    completed: bool = False


@dataclass
class _HeldLock:
    name: str
    fence: int
    ttl_ms: int
    release_at: float
    renew_at: float
    hang: bool


@dataclass
class Stats:
    proposed: int = 0
    attempts: int = 0
    acked: int = 0
    gave_up: int = 0
    repeats: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class Workload:
    def __init__(self, cluster: Cluster, rng: random.Random) -> None:
        self.cluster = cluster
        self.clock = cluster.clock
        self.rng = rng
        self.active = True
        self.inflight: list[Proposal] = []
        self.acks: list[tuple[str, int, bytes]] = []  # (member, index, bytes)
        self.acked_data: list[bytes] = []
        self.stats = Stats()
        self._plan_inflight: Proposal | None = None
        self._next_plan = 0.0
        self._execs: dict[str, dict[str, _Exec]] = {n: {} for n in cluster.members}
        self._incarnation: dict[str, int] = {}
        self._seen_leases: dict[str, tuple[int, int, float]] = {}  # rid -> fence, renewals, t
        self._seen_locks: dict[str, tuple[int, int, float]] = {}
        self._leader_term = -1
        self._requests = 0
        self._my_requests: dict[str, tuple[str, str]] = {}  # request -> (lock, holder)
        self._held: dict[str, _HeldLock] = {}  # request -> held lock
        self._next_api = 0.0

    # ------------------------------------------------------------------ proposals

    def propose(
        self,
        cmd: c.Command | bytes,
        kind: str,
        on_ok: Callable[[Result], None] | None = None,
    ) -> Proposal:
        data = cmd if isinstance(cmd, bytes) else c.encode(cmd)
        p = Proposal(data=data, kind=kind, on_ok=on_ok)
        self.stats.proposed += 1
        self.stats.by_kind[kind] = self.stats.by_kind.get(kind, 0) + 1
        self._submit(p, None)
        self.inflight.append(p)
        return p

    def _submit(self, p: Proposal, prefer: Member | None) -> None:
        live = self.cluster.live()
        if not live:
            p.deadline = self.clock.now + 0.2
            p.via = ""
            return
        member = prefer if prefer is not None else self.rng.choice(live)
        p.attempts += 1
        p.token += 1
        p.via = member.name
        p.deadline = self.clock.now + PROPOSE_TIMEOUT
        self.stats.attempts += 1
        token = p.token
        replica = member.replica
        assert replica is not None

        def callback(res: Any, err: int) -> None:
            if err == FAIL_REASON.SUCCESS:
                # pysyncobj calls back before it counts the entry as applied
                index = replica.raftLastApplied + 1
                self.acks.append((member.name, index, p.data))
                if not p.done:
                    p.done = True
                    self.stats.acked += 1
                    self.acked_data.append(p.data)
                    if p.on_ok is not None and isinstance(res, Ok):
                        p.on_ok(res)
            elif token == p.token and not p.done:
                p.deadline = min(p.deadline, self.clock.now + 0.05)  # retry soon

        replica.apply_command(p.data, callback=callback)

    def _retry_expired(self) -> None:
        now = self.clock.now
        keep: list[Proposal] = []
        for p in self.inflight:
            if p.done:
                continue
            if now < p.deadline:
                keep.append(p)
                continue
            if p.attempts >= MAX_ATTEMPTS or not self.active:
                self.stats.gave_up += 1
                p.done = True  # (a late ack still counts as an ack)
                continue
            others = [m for m in self.cluster.live() if m.name != p.via] or self.cluster.live()
            self._submit(p, self.rng.choice(others) if others else None)
            keep.append(p)
        self.inflight = keep

    # ------------------------------------------------------------------ the actors

    def tick(self) -> None:
        self._retry_expired()
        if not self.active:
            return
        self._scheduler()
        for m in self.cluster.live():
            self._executor(m)
        self._locks()
        if self.clock.now >= self._next_api:
            self._next_api = self.clock.now + self.rng.uniform(0.05, 0.6)
            self._api()

    # -- the leader's work

    def _scheduler(self) -> None:
        leader = self.cluster.leader()
        if leader is None or leader.replica is None:
            return
        term = leader.replica.raftCurrentTerm
        if term != self._leader_term:  # a new leader: inherited leases start over
            self._leader_term = term
            self._seen_leases.clear()
            self._seen_locks.clear()
        state = leader.state()
        now = self.clock.now
        self._expire(leader, state, now)
        if self._plan_inflight is not None and not self._plan_inflight.done:
            return
        if now < self._next_plan:
            return
        self._next_plan = now + 0.25
        connected = self.cluster.network.connected
        nodes = [NodeInfo(name=leader.name)] + [
            NodeInfo(name=m.name)
            for m in self.cluster.live()
            if m is not leader and frozenset((m.name, leader.name)) in connected
        ]
        names = sorted(state.jobs)
        jobs = [state.jobs[n] for n in names]
        errors: list[Any] = []
        batch = plan(
            jobs,
            self.clock.wall_ms(),
            nodes,
            state.load_by_node(),
            frozenset(state.live),
            state.live_by_job(),
            errors,
            drained=frozenset(state.drained),
        )
        if batch.fires or batch.missed:
            self._plan_inflight = self.propose(batch, "Plan")

    def _expire(self, leader: Member, state: State, now: float) -> None:
        for rid, lz in list(state.leases.items()):
            seen = self._seen_leases.get(rid)
            if seen is None or seen[:2] != (lz.fence, lz.renewals):
                self._seen_leases[rid] = (lz.fence, lz.renewals, now)
            elif now - seen[2] >= lz.lease_ms / 1000:
                self._seen_leases[rid] = (lz.fence, lz.renewals, now)  # once per period
                self.propose(
                    c.Expire(
                        at_ms=self.clock.wall_ms(),
                        run_id=rid,
                        fence=lz.fence,
                        renewals=lz.renewals,
                        reason="lease expired (fuzz)",
                    ),
                    "Expire",
                )
        for name, lk in list(state.locks.items()):
            seen = self._seen_locks.get(name)
            if seen is None or seen[:2] != (lk.fence, lk.renewals):
                self._seen_locks[name] = (lk.fence, lk.renewals, now)
            elif now - seen[2] >= lk.ttl_ms / 1000:
                self._seen_locks[name] = (lk.fence, lk.renewals, now)
                self.propose(
                    c.ExpireLock(
                        at_ms=self.clock.wall_ms(),
                        name=name,
                        fence=lk.fence,
                        renewals=lk.renewals,
                        reason="no renewal (fuzz)",
                    ),
                    "ExpireLock",
                )

    # -- an executor per member

    def _executor(self, m: Member) -> None:
        if self._incarnation.get(m.name) != m.incarnation:  # restarted: forgot its runs
            self._incarnation[m.name] = m.incarnation
            self._execs[m.name] = {}
        mine = self._execs[m.name]
        state = m.state()
        now = self.clock.now
        for rid, lz in list(state.leases.items()):
            if lz.holder != m.name:
                continue
            ex = mine.get(rid)
            if ex is None or ex.fence != lz.fence:
                ex = _Exec(
                    fence=lz.fence,
                    lease_ms=lz.lease_ms,
                    token=f"{m.name}-{m.incarnation}-{lz.fence}",
                    finish_at=now + self.rng.uniform(0.2, 4.0),
                    hang=self.rng.random() < 0.08,
                )
                mine[rid] = ex
            if ex.completed or ex.hang:
                continue
            if not ex.started:
                ex.started = True
                ex.renew_at = now + ex.lease_ms / 3000
                self.propose(
                    c.Start(
                        at_ms=self.clock.wall_ms(),
                        run_id=rid,
                        fence=ex.fence,
                        node=m.name,
                        token=ex.token,
                    ),
                    "Start",
                )
                continue
            if lz.kill or now >= ex.finish_at:
                ex.completed = True
                r = self.rng.random()
                status = KILLED if lz.kill else SUCCEEDED if r < 0.7 else FAILED
                finished = self.clock.wall_ms()
                self.propose(
                    c.Complete(
                        at_ms=finished,
                        run_id=rid,
                        fence=ex.fence,
                        node=m.name,
                        status=status,
                        exit_code=None if status == KILLED else (0 if status == SUCCEEDED else 1),
                        started_ms=None,
                        finished_ms=finished,
                        output=f"out {rid} {ex.fence}",
                    ),
                    "Complete",
                )
                continue
            if now >= ex.renew_at:
                ex.renew_at = now + ex.lease_ms / 3000
                self.propose(
                    c.Renew(at_ms=self.clock.wall_ms(), run_id=rid, fence=ex.fence, node=m.name),
                    "Renew",
                )
        for rid in [r for r in mine if r not in state.leases]:
            del mine[rid]

    # -- lock holders

    def _locks(self) -> None:
        now = self.clock.now
        for request, held in list(self._held.items()):
            if held.hang:
                continue
            if now >= held.release_at:
                del self._held[request]
                self.propose(
                    c.ReleaseLock(at_ms=self.clock.wall_ms(), name=held.name, fence=held.fence),
                    "ReleaseLock",
                )
            elif now >= held.renew_at:
                held.renew_at = now + held.ttl_ms / 3000
                self.propose(
                    c.RenewLock(at_ms=self.clock.wall_ms(), name=held.name, fence=held.fence),
                    "RenewLock",
                )
        # a queued request learns of its grant from the state of the member it talks to
        live = self.cluster.live()
        if not live or not self._my_requests:
            return
        state = self.rng.choice(live).state()
        for name, lk in state.locks.items():
            if lk.request in self._my_requests and lk.request not in self._held:
                self._hold(
                    LockGrant(
                        name=name,
                        request=lk.request,
                        fence=lk.fence,
                        holder=lk.holder,
                        ttl_ms=lk.ttl_ms,
                        renewals=lk.renewals,
                    ),
                    lk.request,
                )

    def _hold(self, grant: LockGrant, request: str) -> None:
        if request in self._held or request not in self._my_requests:
            return
        now = self.clock.now
        self._held[request] = _HeldLock(
            name=grant.name,
            fence=grant.fence,
            ttl_ms=grant.ttl_ms,
            release_at=now + self.rng.uniform(0.1, 3.0),
            renew_at=now + grant.ttl_ms / 3000,
            hang=self.rng.random() < 0.1,
        )
        del self._my_requests[request]

    # -- API clients

    def _api(self) -> None:
        rng = self.rng
        live = self.cluster.live()
        if not live:
            return
        state = rng.choice(live).state()
        at = self.clock.wall_ms()
        r = rng.random()
        if r < 0.12:
            name = rng.choice(JOBS)
            spec = JobSpec(
                name=name,
                schedule=rng.choice(("* * * * * *", "@every 2s", "@every 3s")),
                command=("true",),
                overlap=rng.choice(OVERLAPS),
                retries=rng.choice((0, 0, 1, 2)),
                retry_backoff_ms=rng.choice((0, 500, 2000)),
                lease_ms=rng.choice((2000, 4000, 8000)),
                count=rng.choice((1, 1, 1, 2)),
                catchup_mode=rng.choice(("all", "latest", "none")),
            )
            self.propose(c.PutJob(at_ms=at, spec=spec), "PutJob")
        elif r < 0.2:
            name = rng.choice(JOBS)
            paused = rng.random() < 0.5
            self.propose(c.SetPaused(at_ms=at, name=name, paused=paused, note="fuzz"), "SetPaused")
        elif r < 0.22:
            self.propose(c.DeleteJob(at_ms=at, name=rng.choice(JOBS)), "DeleteJob")
        elif r < 0.3:
            runs = sorted(rid for rid, run in state.runs.items() if run.fence or run.status)
            if runs:
                rid = rng.choice(runs[-20:])
                hard = rng.random() < 0.3
                self.propose(c.Kill(at_ms=at, run_id=rid, reason="fuzz", hard=hard), "Kill")
        elif r < 0.33:
            node = rng.choice(sorted(self.cluster.members))
            drain = rng.random() < 0.4 and not state.drained
            self.propose(c.Drain(at_ms=at, node=node, drain=drain, kind=DRAIN_OPERATOR), "Drain")
        elif r < 0.36:
            self.propose(c.Barrier(at_ms=at, node=live[0].name, nonce=f"b{at}"), "Barrier")
        elif r < 0.62:
            self._requests += 1
            request = f"rq{self._requests}"
            holder = f"h{self._requests % 7}"
            name = rng.choice(LOCKS)
            self._my_requests[request] = (name, holder)

            def got(res: Result, request: str = request) -> None:
                if isinstance(res, Ok) and isinstance(res.value, LockGrant):
                    self._hold(res.value, request)

            self.propose(
                c.AcquireLock(
                    at_ms=at,
                    name=name,
                    request=request,
                    holder=holder,
                    ttl_ms=rng.choice((1000, 2000, 5000)),
                    wait_ms=rng.choice((0, 0, 3000)),
                ),
                "AcquireLock",
                on_ok=got,
            )
        elif r < 0.68:
            waiting = [
                (lk.name, w.request)
                for lk in state.locks.values()
                for w in lk.waiters
                if w.request in self._my_requests
            ]
            if waiting:
                name, request = rng.choice(waiting)
                self._my_requests.pop(request, None)
                self.propose(
                    c.CancelLockWait(at_ms=at, name=name, request=request, reason="fuzz"),
                    "CancelLockWait",
                )
        elif r < 0.8 and self.acked_data:
            # a client whose ack was lost sends the same command again
            data = rng.choice(self.acked_data[-50:])
            self.stats.repeats += 1
            self.propose(data, "repeat:" + type(c.decode(data)).__name__)
