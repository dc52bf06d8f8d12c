"""The executor: runs the fires the leader granted to this node.

Safety rules it keeps (docs/design.md, "Leases and fencing"):

* It acts only on committed grants (fed in by the node from the apply stream), and only
  on live ones: grants applied while the node replays its log at start-up (before it has
  caught up with what the leader had committed, :meth:`Executor.caught_up`) are ignored;
  once caught up, :meth:`Executor.resume` picks up every run the state still gives this
  node. A restart therefore proposes nothing for fires that ended long ago (they would
  only be refused as stale).
* At most ``max_starting`` granted runs are in their start phase at once (the fenced
  ``Start`` in flight, the watchdog coming up). The others wait in grant order and their
  leases are renewed meanwhile (:meth:`FencedRun.keep_queued`): such a renewal only keeps
  the fire reserved for this node; nothing runs before its own fenced start commits, with
  its own timer. A queued run whose renewal is refused (the leader expired it: this node
  was cut off) never starts. A burst of thousands of grants therefore starts at the rate
  the machine can spawn, instead of all at once until the starts miss their leases.
* Before the job starts, a fenced ``Start`` must commit. The timer starts BEFORE the
  proposal is sent: the local deadline is ``t_send + D*(1-rho)/(1+rho) - margin`` on the
  monotonic clock, while the leader expires the lease at ``t_commit + D`` on its own.
  While the ``Start`` commits, a process run's watchdog comes up *held* (its account,
  environment, run directory, fork, spec and socket; :meth:`Executor._prepare`): it starts
  the job only on the go the executor writes to its stdin once the ``Start`` has
  committed, with the lease deadline. A ``Start`` that is refused or does not commit, or
  a stop request, dismisses it (a cancel, then EOF: it exits without starting the job); an
  agent that stops closes the pipe, which does the same.
* An armed fire (docs/design.md, "Armed fires"): the leader reserved the fire for this
  node ahead of its time (``Arm``). The executor prepares the held watchdog and commits
  the fenced ``Start`` naming the reservation's fence in the lead
  (:meth:`Executor._run_armed`), then waits for the plan at the due time: a grant to this
  node under that fence (running at once: the start committed ahead) sends the go; the
  reservation dropped or the fire decided otherwise (claimed elsewhere, paused, missed,
  deleted, changed) dismisses the held watchdog. Nothing starts before that grant, so
  never before the fire is due, and only the fence's one start can count. The go of an
  armed fire leaves from the Raft thread that applied the grant (:meth:`Executor.go_armed`:
  the same checks, one write to the held watchdog's stdin) instead of waiting for the
  event loop to hear of the commit; the loop then carries on as if it had sent it.
* It renews every D/3 the same way; each committed renewal moves the watchdog's deadline.
* A process run lives under its own watchdog process (watchdog.py), in a run directory
  under the data dir (rundir.py). The watchdog kills the job at the deadline even if this
  process is frozen, dead or restarting. A run stopped that way is reported as ``lost``,
  never as success, and any completion carries the fence, so a late one is rejected by
  ``apply`` as stale. Watchdogs are forked by a per-agent fork server (spawner.py, started
  on the first process run) instead of a new interpreter per run; if it fails a request,
  that run's watchdog is spawned directly and the server is replaced.
* The agent talks to a watchdog over the socket in its run directory: the first attach
  and a re-attach are the same versioned hello (:func:`rundir.attach`); a hello never
  starts a held job. The watchdog starts the job on the go (a quick job may end before
  the agent attaches: its result is then read from disk). When the job ends the watchdog
  persists the result before it tells anyone, so the outcome survives the agent:
  :meth:`Executor.stop` detaches (records nothing for a process run, kills nothing) and a
  restarted agent re-attaches to its live watchdogs, or reads the result of one that
  finished meanwhile, renews under the SAME fence and records the outcome once (the
  completion it proposes is written to the run directory first, so a repeat is the same
  idempotent command). If the lease has passed
  meanwhile (the agent was away longer than the lease), the watchdog has stopped the job
  at its deadline, the leader's ``lost`` stands and a result found later is dropped with
  one INFO line, never recorded. HTTP and embedded Python runs live in the agent and end
  with it: a restarted agent records them as ``lost`` at once.
* A committed stop request on the run's lease (the kill endpoint, or a newer fire of an
  overlap = cancel_other/terminate_other job) is passed to the watchdog: SIGTERM, grace,
  SIGKILL (``hard``: SIGKILL at once). The run completes as ``killed``. A request that
  committed before the start never starts the process.

Every log line about a run names the job, the run id, the fence and the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from operator import methodcaller
from pathlib import Path
from typing import Any, Final

from raftcron import config, hardening
from raftcron.accounts import Account, AccountError
from raftcron.accounts import resolve as resolve_account
from raftcron.clock import Clock, wall_s
from raftcron.config import passthrough_leaks
from raftcron.core.model import (
    CLAIMED,
    FAILED,
    KILLED,
    LOST,
    OUTPUT_TAIL_BYTES,
    RUNNING,
    SUCCEEDED,
    TIMED_OUT,
    JobSpec,
    Run,
)
from raftcron.core.state import State
from raftcron.executor import rundir
from raftcron.executor import watchdog as wdproto
from raftcron.executor.batch import LifecycleBatcher
from raftcron.executor.http import execute_http
from raftcron.executor.inproc import InProcess
from raftcron.executor.lease import GRACE_S, FencedRun, complete, lease_grace, run_ctx
from raftcron.executor.rundir import RunDirs
from raftcron.executor.spawning import WATCHDOG_ENV, WatchdogSpawner
from raftcron.logs import LogCtx
from raftcron.raft.node import RaftNode
from raftcron.timefmt import rfc3339

logger = logging.getLogger(__name__)

# How many granted runs of this node may be in their start phase at once (the fenced
# Start in flight, the watchdog process coming up); the others wait in grant order with
# their leases renewed (FencedRun.keep_queued). A node's ``max_starting`` (config) sets it,
# ``RAFTCRON_MAX_STARTING`` overrides that (raftcron.node.max_starting).
DEFAULT_MAX_STARTING: Final = config.DEFAULT_MAX_STARTING
# Renewals of queued runs in flight at once (a burst queues thousands, granted together,
# whose renewals fall due together; 16 drained too slowly for 3,333 per node: bench/).
QUEUED_RENEWALS_IN_FLIGHT: Final = 64
QUEUE_CHECK_S: Final = 5.0  # how often a queued run checks its place (_check_place)
# The watchdog is standard library only: run its file isolated and without `site` (no .pth
# processing), which starts it about a quarter faster than `-m` on every run (bench/).
WATCHDOG_ARGV: Final = (sys.executable, "-I", "-S", str(Path(__file__).with_name("watchdog.py")))
# How long a new watchdog may take to come up and listen (a loaded machine can take
# seconds to start an interpreter). One that comes up after its deadline starts nothing
# unless an agent attaches with a later one.
LAUNCH_TIMEOUT_S: Final = 30.0
DISMISS_TIMEOUT_S: Final = 5.0  # a dismissed held watchdog exits within this
# Watchdogs are forked by a per-agent fork server (raftcron/executor/spawner.py) instead of
# a fresh interpreter per run; ``RAFTCRON_WATCHDOG_SPAWNER=0`` turns it off.
SPAWNER_ENV: Final = "RAFTCRON_WATCHDOG_SPAWNER"
# A job's PATH (docs/jobs.md, "Job isolation"); env_passthrough = ["PATH"] gives it the agent's.
DEFAULT_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# A running job's output file never grows past this: the watchdog keeps its last
# OUTPUT_TAIL_BYTES (what the ledger keeps) whenever it would.
OUTPUT_FILE_MAX: Final = 1024 * 1024
# ``RAFTCRON_TRACE_RUNS=1``: every process run logs its start timeline when it is recorded
# (one INFO line, ms after its scheduled time; its watchdog adds its own steps), for
# bench/run_timeline.py. Off, it costs one ``is None`` test per step.
TRACE_ENV: Final = "RAFTCRON_TRACE_RUNS"


@dataclass(slots=True, eq=False)  # identity: the queue removes this very entry
class _Active:
    run: Run
    spec: JobSpec
    seen: float  # when this node saw the grant (monotonic; -inf: unknown, after a restart)
    task: asyncio.Task[None] | None = None
    conn: asyncio.StreamWriter | None = None  # to the run's watchdog, while attached
    kill: tuple[str, bool] | None = None  # the stop request sent to the watchdog
    slot: bool = False  # holds one of the executor's start slots
    queued: bool = True  # has not been admitted to start yet
    in_queue: bool = False  # in Executor._waiting
    go: asyncio.Event = field(default_factory=asyncio.Event)  # admitted (or skips the queue)
    marks: dict[str, float] | None = None  # the start timeline (wall seconds), when traced
    # An armed fire waiting for the plan at its due time: set on every commit that may
    # have decided it (a grant, a plan, a change of its job), and once its watchdog is up.
    armed: asyncio.Event | None = None
    ready: _ReadyGo | None = None  # its go, ready to leave from the Raft thread


@dataclass(slots=True, eq=False)
class _ReadyGo:
    """An armed run whose start has committed and whose watchdog holds the job: what the
    Raft thread needs to send its go the moment the plan granting it applies
    (:meth:`Executor.go_armed`). ``lock`` orders that write before the loop closes the
    watchdog's pipes (``closed``); ``run`` is the record the grant made, once sent."""

    fence: int
    wd: _Watchdog
    lease: FencedRun
    marks: dict[str, float] | None  # the run's start timeline, when traced
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False
    run: Run | None = None


class Executor:
    def __init__(
        self,
        *,
        node: str,
        raft: RaftNode,
        clock: Clock,
        data_dir: Path,
        tell: Callable[[str, str, dict[str, Any]], None] | None = None,
        max_starting: int = DEFAULT_MAX_STARTING,
        spawner: bool | None = None,
        secret_values: Mapping[str, str] | None = None,
        lifecycle_batches: Callable[[], bool] | None = None,
    ) -> None:
        if max_starting < 1:
            raise ValueError(f"max_starting must be at least 1, not {max_starting}")
        self.node = node
        self.raft = raft
        self.clock = clock
        self.data_dir = data_dir
        self.rundirs = RunDirs(data_dir)
        self._active: dict[str, _Active] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        # Grants are acted on only once the node has caught up with the log (caught_up).
        self._caught_up = False
        self._tell = tell  # optional hook for metrics/tests: (event, run id, fields)
        self.max_starting = max_starting
        self._starting = 0  # slots in use
        self._waiting: deque[_Active] = deque()  # queued runs, in grant order
        self._armed = 0  # armed runs prepared or running (at most max_starting prepared)
        self._ready_go: dict[str, _ReadyGo] = {}  # run id -> its go (go_armed), thread-safe
        self._queued_renewals = asyncio.Semaphore(QUEUED_RENEWALS_IN_FLIGHT)
        self._reapers: set[asyncio.Task[int]] = set()  # directly spawned watchdogs
        # Every Start, renewal and Complete of this node goes through the batcher: one
        # entry per commit round trip while busy (batch.py). ``lifecycle_batches`` is the
        # feature gate (every member at level 4); without it each goes alone, as before.
        self.lifecycle = LifecycleBatcher(raft.propose, lifecycle_batches or (lambda: False))
        # Embedded Python jobs (spec.call set) run in this process: raftcron.embed
        # registers their callables here; a plain agent has none and fails such runs.
        self.inproc = InProcess(node=node, raft=raft, clock=clock, tell=tell)
        # Jobs see none of the agent's environment but what they name (env_passthrough),
        # and never a variable holding the cluster secret or an API token (secret_values:
        # value -> what it is).
        self.agent_env = dict(os.environ)
        self.secret_values = dict(secret_values or {})
        self._own: tuple[Account, str, str] | None = None  # see _account_of
        if spawner is None:
            spawner = os.environ.get(SPAWNER_ENV, "1") != "0"
        # The watchdog fork server; started on the first process run.
        self.spawner = WatchdogSpawner(node) if spawner else None
        self.trace = os.environ.get(TRACE_ENV) == "1"

    # -- inputs

    def on_granted(self, rid: str, fence: int, node: str) -> None:
        """Called on the loop for every committed grant (any node)."""
        active = self._active.get(rid)
        if active is not None and active.armed is not None:
            active.armed.set()  # its plan: decided (here or elsewhere)
            return
        if node != self.node or rid in self._active or self._stopping or not self._caught_up:
            return  # before catching up: a replayed grant, or resume() will find it
        found = self.raft.machine.read(lambda s: s.run_and_spec(rid))
        if found is None:
            return
        run, spec = found
        if run.fence != fence or run.status != CLAIMED:
            return
        self._spawn(run, spec, self.clock.monotonic())

    def on_armed(self, rid: str, fence: int, node: str) -> None:
        """Called on the loop for every fire committed as armed (any node): this node's
        prepares its run and commits its start ahead (:meth:`_run_armed`)."""
        if node != self.node or rid in self._active or self._stopping or not self._caught_up:
            return  # (a replayed one: its plan grants it as any claim, resume() finds it)
        if self._armed >= self.max_starting:  # (a burst: the grant starts it as any claim)
            return
        found = self.raft.machine.read(lambda s: s.armed_with_spec(rid))
        if found is None or found[0].fence != fence or found[0].token:
            return
        armed, spec = found
        run = Run(
            id=rid,
            job=armed.job,
            scheduled_at_ms=armed.scheduled_at_ms,
            status=CLAIMED,
            fence=fence,
            node=self.node,
            claimed_ms=armed.armed_ms,
        )
        active = _Active(run=run, spec=spec, seen=self.clock.monotonic(), queued=False)
        active.armed = asyncio.Event()
        if self.trace:
            active.marks = {"armed": wall_s()}
        self._armed += 1
        self._track(active, self._run_armed(active))

    def go_armed(self, granted: Sequence[tuple[str, int, str]], stopping: Sequence[str]) -> None:
        """On the Raft thread, just after a plan applied (before the loop hears of it): the
        go of each armed run it granted to this node under the reservation's fence, with
        the checks the loop makes (:meth:`_armed_plan`, :meth:`_execute`): running here
        under that fence, no stop request, the lease's deadline ahead. What is not sent
        here the loop decides as before."""
        for rid, fence, node in granted:
            if node != self.node:
                continue
            ready = self._ready_go.pop(rid, None)
            if ready is None:
                continue
            with ready.lock:
                if ready.closed or ready.fence != fence or rid in stopping:
                    continue
                run = self.raft.machine.read(methodcaller("run", rid))
                if (
                    run is None
                    or not self._armed_grant(run, fence)
                    or self._kill_request(rid, fence) is not None
                    or ready.lease.deadline <= self.clock.monotonic()
                ):
                    continue
                if ready.wd.go_from_thread(ready.lease.deadline):
                    ready.run = run
                    if ready.marks is not None:
                        ready.marks["go_sent"] = wall_s()

    def check_armed(self) -> None:
        """A commit that may have decided armed fires (a plan, a job changed, paused or
        deleted): each armed run waiting for its plan looks again."""
        for active in self._active.values():
            if active.armed is not None:
                active.armed.set()

    def caught_up(self) -> None:
        """The node has applied its log as far as the leader had committed when this node
        first heard from it: grants from now on are live. Resume this node's runs, and
        clear out run directories of runs that are no longer this node's (once)."""
        if self._caught_up or self._stopping:
            return
        self._caught_up = True
        self.resume()
        self._sweep()

    def resume(self) -> None:
        """Pick up the runs the state gives this node that nobody here is working on (after
        a restart or a snapshot): start the granted ones, re-attach to the running ones."""
        if not self._caught_up or self._stopping:
            return
        mine = self.raft.machine.read(lambda s: _live_for(s, self.node))
        for run, spec in mine:
            if run.id in self._active:
                continue
            if run.status == CLAIMED:
                self._spawn(run, spec, -math.inf)  # granted a while ago: renew at once
            else:
                active = _Active(run=run, spec=spec, seen=-math.inf, queued=False)
                self._track(active, self._reattach(active))

    def on_kill(self, rid: str) -> None:
        """Called on the loop for every committed stop request (any node)."""
        active = self._active.get(rid)
        if active is None:
            return
        if active.queued and not active.spec.call and self._kill_request(rid, active.run.fence):
            # Waiting for a start slot: it needs none, it only commits its start to
            # record the stop (it never spawns; see _execute). Embedded jobs have no
            # stop path before they start, so they keep their place.
            active.go.set()
        self._send_kill(active)

    def _kill_request(self, rid: str, fence: int) -> tuple[str, bool] | None:
        def read(s: State) -> tuple[str, bool] | None:
            lease = s.lease(rid)
            if lease is None or lease.fence != fence or not lease.kill:
                return None
            return lease.kill, lease.kill_hard

        return self.raft.machine.read(read)

    def _send_kill(self, active: _Active) -> None:
        """Pass the run's committed stop request (if any, and new) to its watchdog."""
        req = self._kill_request(active.run.id, active.run.fence)
        conn = active.conn
        if req is None or req == active.kill or conn is None:
            return
        if active.kill is not None and active.kill[1] == req[1]:
            return
        active.kill = req
        logger.warning(
            "%s: stopping the job (%s): %s",
            self._ctx(active.run),
            "SIGKILL" if req[1] else f"SIGTERM, SIGKILL after {GRACE_S:g}s",
            req[0],
        )
        with contextlib.suppress(OSError, RuntimeError):
            conn.write(json.dumps({"kill": req[0], "hard": req[1]}).encode() + b"\n")

    def active_count(self) -> int:
        return len(self._active)

    def queued_count(self) -> int:
        """Granted runs waiting for a start slot."""
        return sum(1 for a in self._active.values() if a.queued)

    async def stop(self) -> None:
        """Stop accepting work and detach: nothing is recorded for a process run and no
        job or watchdog is killed (the watchdog keeps the deadline; a restarted agent
        re-attaches). HTTP and embedded runs end here (their tasks are cancelled)."""
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for reap in list(self._reapers):  # the watchdogs live on; init reaps them
            reap.cancel()
        if self.spawner is not None:  # its watchdogs live on, like the ones above
            await self.spawner.close()
        await self.lifecycle.close()
        await asyncio.to_thread(self.rundirs.settle)  # recorded runs' directories go

    # -- one run

    def _spawn(self, run: Run, spec: JobSpec, seen: float) -> None:
        active = _Active(run=run, spec=spec, seen=seen)
        if self.trace:
            active.marks = {"granted": wall_s()}
        self._track(active, self._run(active))

    @staticmethod
    def _mark(active: _Active, step: str) -> None:
        if active.marks is not None:
            active.marks[step] = wall_s()

    def _track(self, active: _Active, coro: Coroutine[Any, Any, None]) -> None:
        self._active[active.run.id] = active
        task = asyncio.get_running_loop().create_task(coro, name=f"run {active.run.id}")
        active.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ctx(self, run: Run) -> LogCtx:
        return run_ctx(run, self.node)

    def _lease(self, run: Run, spec: JobSpec) -> FencedRun:
        """The fenced lease this node holds ``run`` under (its commands go batched)."""
        return FencedRun(
            raft=self.raft,
            clock=self.clock,
            node=self.node,
            run=run,
            lease_ms=spec.lease_ms,
            tell=self._tell,
            propose=self.lifecycle.propose,
        )

    async def _run(self, active: _Active) -> None:
        run, spec = active.run, active.spec
        lease = self._lease(run, spec)
        held: asyncio.Task[_Held] | None = None
        try:
            if not await self._admit(active, lease):
                return
            if (
                not spec.call
                and spec.http is None
                and self._kill_request(run.id, run.fence) is None
            ):
                # The watchdog comes up while the fenced start commits, and holds the job
                # until the go that only a committed start sends (_execute).
                held = asyncio.get_running_loop().create_task(self._prepare(active, lease))
            # 1. The fenced start: nothing runs until it commits.
            self._mark(active, "start_proposed")
            if not await lease.start():
                if held is not None:
                    await self._dismiss(active, held, "the start did not commit")
                return
            self._mark(active, "start_committed")
            if spec.call:
                self._release(active)  # nothing to spawn
                await self.inproc.execute(run, spec, lease)
            else:
                await self._execute(active, lease, held)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s: executor failed", self._ctx(run))
        finally:
            if held is not None:  # the agent stops: EOF on its stdin, it never starts the job
                _drop_held(held)
            self._dequeue(active)  # stopped while it waited
            self._release(active)
            self._active.pop(run.id, None)

    async def _run_armed(self, active: _Active) -> None:
        """An armed fire: prepare and start ahead, then act on the plan at its due time."""
        run, spec = active.run, active.spec
        ctx = self._ctx(run)
        lease = self._lease(run, spec)
        held = asyncio.get_running_loop().create_task(self._prepare(active, lease))
        try:
            self._mark(active, "start_proposed")
            if not await lease.start():  # the reservation's fence: refused once it is gone
                await self._dismiss(active, held, "its start ahead did not commit")
                return
            self._mark(active, "start_committed")
            try:
                why = await self._armed_plan(active, lease, held)
            finally:
                went = self._unready(active)
            if went is not None:  # the Raft thread sent the go: the job is starting
                active.run, why = went, ""
            if why:
                logger.info("%s: armed fire not run here: %s", ctx, why)
                await self._dismiss(active, held, why)
                return
            self._mark(active, "granted")
            if went is None and lease.deadline <= self.clock.monotonic():  # (a late plan)
                logger.warning("%s: granted after its start's trust window; not run", ctx)
                await self._dismiss(active, held, "granted after its trust window")
                return  # (running under this fence: its lease expires, recorded lost)
            lease.started_ms = active.run.started_ms or lease.started_ms
            await self._execute(active, lease, held, went=went is not None)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s: executor failed", ctx)
        finally:
            _drop_held(held)  # (the agent stops: EOF on its stdin, it never starts the job)
            self._active.pop(run.id, None)
            self._armed -= 1

    async def _armed_plan(
        self, active: _Active, lease: FencedRun, held: asyncio.Task[_Held]
    ) -> str:
        """Wait for the plan of armed run ``active``: "" once it is granted to this node
        under the reservation's fence (``active.run`` is then its record), else why not.
        Gives up a lease window after the fire's time (the plan takes a reservation only
        ``ARM_GRACE_MS`` after it: later, the fire is granted afresh). Once the watchdog
        holds the job, its go is left ready for the Raft thread (:meth:`go_armed`)."""
        armed_ev = active.armed
        assert armed_ev is not None
        rid, fence = active.run.id, active.run.fence
        late_s = max(0.0, (active.run.scheduled_at_ms - self.clock.wall_ms()) / 1000)
        give_up = self.clock.monotonic() + late_s + lease.window
        held.add_done_callback(lambda _: armed_ev.set())
        while True:
            armed_ev.clear()
            if active.ready is None and held.done() and not held.cancelled():
                wd = held.result().wd if held.exception() is None else None
                if wd is not None:  # before the read below: a plan applied after it finds it
                    active.ready = self._ready_go[rid] = _ReadyGo(fence, wd, lease, active.marks)
            run, armed = self.raft.machine.read(lambda s: (s.run(rid), s.armed_fire(rid)))
            if run is not None:
                if self._armed_grant(run, fence):
                    active.run = run
                    return ""
                return f"the plan decided otherwise ({run.status}, {run.node or 'no node'})"
            if armed is None or armed.fence != fence:
                return "its reservation was dropped (the job changed, was paused or deleted)"
            wait = give_up - self.clock.monotonic()
            if wait <= 0:
                return "no plan claimed it in time"
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await armed_ev.wait()

    def _armed_grant(self, run: Run, fence: int) -> bool:
        """``run`` is an armed fire's grant to this node under its reservation's fence
        (running at once: its start committed ahead)."""
        return run.fence == fence and run.node == self.node and run.status == RUNNING

    def _unready(self, active: _Active) -> Run | None:
        """Take back an armed run's ready go before its pipes may close: the run record if
        the Raft thread sent it (the job is starting), else None."""
        ready = active.ready
        if ready is None:
            return None
        self._ready_go.pop(active.run.id, None)
        with ready.lock:  # (waits out a go being written right now)
            ready.closed = True
        return ready.run

    async def _admit(self, active: _Active, lease: FencedRun) -> bool:
        """Wait for a start slot (grant order) while keeping the queued run's lease alive.

        False if the lease was lost meanwhile (the run must never start). A run with a
        committed stop request skips the queue (it only records the stop)."""
        self._enqueue(active)
        self._admit_next()
        if not active.go.is_set():
            loop = asyncio.get_running_loop()
            go = loop.create_task(active.go.wait())
            keeper = loop.create_task(lease.keep_queued(active.seen, self._queued_renewals))
            try:
                while not (go.done() or keeper.done()):
                    await asyncio.wait(
                        {go, keeper}, timeout=QUEUE_CHECK_S, return_when=asyncio.FIRST_COMPLETED
                    )
                    self._check_place(active)
            finally:
                go.cancel()
                keeper.cancel()
                await asyncio.gather(go, keeper, return_exceptions=True)
        active.queued = False
        if not active.slot:
            self._dequeue(active)
        if lease.lost.is_set():
            return False
        if not active.slot:
            logger.info("%s: asked to stop while queued; recording it", self._ctx(active.run))
        return True

    def _check_place(self, active: _Active) -> None:
        """Liveness net: a waiting run must be in the queue, and a free slot must not stay
        free while runs wait. (The run that stayed waiting in 10,000-run bursts, renewed and
        never started, had in fact been admitted: its renewal loop lost the cancellation in
        asyncio.wait_for and kept ``_admit`` waiting for it; fixed in RaftNode.propose.)"""
        if not active.go.is_set() and not active.in_queue:
            logger.error(
                "%s: queued run had lost its place in the queue; re-queued", self._ctx(active.run)
            )
            self._enqueue(active)
        self._admit_next()

    def _enqueue(self, active: _Active) -> None:
        active.in_queue = True
        self._waiting.append(active)

    def _dequeue(self, active: _Active) -> None:
        if active.in_queue:
            active.in_queue = False
            with contextlib.suppress(ValueError):
                self._waiting.remove(active)

    def _admit_next(self) -> None:
        """Hand free start slots to the queued runs, first granted first."""
        while self._starting < self.max_starting and self._waiting:
            nxt = self._waiting.popleft()
            nxt.in_queue = False
            nxt.slot = True
            self._starting += 1
            nxt.go.set()

    def _release(self, active: _Active) -> None:
        """Give the start slot back (once): the run is past its start phase."""
        if active.slot:
            active.slot = False
            self._starting -= 1
            self._admit_next()

    async def _execute(
        self,
        active: _Active,
        lease: FencedRun,
        held: asyncio.Task[_Held] | None,
        *,
        went: bool = False,
    ) -> None:
        """A process or HTTP run whose fenced start has committed (a process run's watchdog
        is ``held``, coming up or waiting for the go; ``went``: its go has left already,
        and a stop request reaches it when it is attached)."""
        run, spec = active.run, active.spec
        ctx = self._ctx(run)
        window = lease.window
        stop = None if went else self._kill_request(run.id, run.fence)
        if stop is not None:  # asked to stop before it started: it never runs
            logger.warning("%s: not started, asked to stop: %s", ctx, stop[0])
            self._release(active)
            if held is not None:
                await self._dismiss(active, held, "asked to stop")
            await lease.complete(KILLED, None, self.clock.wall_ms(), "", stop[0])
            return
        lease.tell_started(spec)
        if spec.http is not None:  # an HTTP job: same lease, fence and completion
            self._release(active)  # nothing to spawn
            done = await execute_http(
                spec=spec,
                run=run,
                node=self.node,
                scheduled_at=rfc3339(run.scheduled_at_ms),
                lease=lease,
                lease_grace=lease_grace(window),
            )
            logger.info(
                "%s: finished %s exit_code=%s %s",
                ctx,
                done.status,
                done.exit_code,
                done.reason,
                extra={"event": "run_finished"},
            )
            await lease.complete(
                done.status, done.exit_code, self.clock.wall_ms(), done.output, done.reason
            )
            return
        assert held is not None  # a process run
        # Renewals from here on (paced from the lease's start): a watchdog slow to come up
        # must not cost the lease. Until attached, the hello carries the latest deadline.
        renew = self._renewals(active, lease, at_once=False)
        try:
            try:
                ready = await held
            except _NotRunnable as exc:  # never run as another account, never with a secret
                await _end_renewals(renew, ctx)
                logger.error("%s: not started: %s", ctx, exc)
                self._release(active)
                await lease.complete(FAILED, None, self.clock.wall_ms(), "", str(exc))
                return
            if ready.wd is None:
                await _end_renewals(renew, ctx)
                logger.error("%s: the watchdog did not come up: %s", ctx, ready.why)
                self._release(active)
                failed = {"outcome": "spawn_failed", "detail": ready.why, "exit_code": None}
                await self._record(active, lease, ready.run_dir, failed, reattach=False)
                return
            if not went:
                self._mark(active, "go_sent")
            await ready.wd.go(lease.deadline)
        except BaseException:
            await _end_renewals(renew, ctx)
            raise
        await self._follow(active, lease, ready.run_dir, renew)

    async def _prepare(self, active: _Active, lease: FencedRun) -> _Held:
        """Everything of a process run's start that needs no committed start: its account
        and environment, its run directory, and its watchdog, up, listening and holding the
        job until the go (``_Watchdog.go``). :class:`_NotRunnable` if it must not run."""
        run, spec = active.run, active.spec
        ctx = self._ctx(run)
        account, process = await self._process_of(run, spec)
        self._mark(active, "prepared")
        run_dir = self.rundirs.path(run)
        if run_dir.is_dir():  # a held watchdog of this agent's previous life, never started
            with contextlib.suppress(rundir.AttachError):
                await self._end_watchdog(run_dir, "its agent restarted before the go")
            self.rundirs.remove(run_dir)
        run_dir = self.rundirs.create(run)
        self._mark(active, "rundir")
        wd_spec = {
            "version": wdproto.PROTOCOL,
            "run_dir": str(run_dir),
            "run": run.id,
            "fence": run.fence,
            "job": run.job,
            "node": self.node,
            "argv": list(spec.command),
            "env": process.pop("env"),
            "cwd": process.pop("cwd"),
            "out_max": OUTPUT_FILE_MAX,
            "out_keep": OUTPUT_TAIL_BYTES,
            # The go brings the lease deadline; until then none (a watchdog of version 1,
            # which knows no hold, starts nothing until a hello brings one).
            "deadline": 0.0,
            # No go by then (the start gives up after a lease window; this is a second
            # one): the job never starts.
            "hold": self.clock.monotonic() + 2 * lease.window,
            "timeout": None if spec.timeout_ms is None else spec.timeout_ms / 1000,
            "grace": GRACE_S,
            "lease_grace": lease_grace(lease.window),
            **process,
        }
        if spec.stdin:
            wd_spec["stdin"] = spec.stdin
        if active.marks is not None:
            wd_spec["trace"] = True
        if account.switch:
            logger.info("%s: runs as %s (uid %d)", ctx, account.name, account.uid)
        wd, why = await self._launch(active, wd_spec)
        return _Held(run_dir=run_dir, wd=wd, why=why)

    async def _dismiss(self, active: _Active, held: asyncio.Task[_Held], why: str) -> None:
        """The job must not start (its start did not commit, or it was asked to stop): the
        held watchdog exits without starting it, and its run directory goes."""
        ctx = self._ctx(active.run)
        try:
            ready = await held
        except _NotRunnable:
            return
        if ready.wd is None:
            self.rundirs.remove(ready.run_dir)
            return
        if await ready.wd.cancel(why):
            self.rundirs.discard(ready.run_dir)
            logger.info("%s: held watchdog dismissed: %s", ctx, why)
        else:  # the next start's sweep removes it
            logger.warning("%s: held watchdog dismissed (%s) but not seen exiting", ctx, why)

    async def _launch(
        self, active: _Active, wd_spec: dict[str, Any]
    ) -> tuple[_Watchdog | None, str]:
        """Start the run's watchdog, hand it its (held) spec and wait until it listens: the
        watchdog, its pipes still open for the go; or None and why not."""
        self._mark(active, "fork_asked")
        wd = await self._start_watchdog(self._ctx(active.run))
        self._mark(active, "forked")
        ok = False
        try:
            wd.stdin.write(json.dumps(wd_spec).encode() + b"\n")
            await wd.stdin.drain()
            self._mark(active, "spec_sent")
            try:
                async with asyncio.timeout(LAUNCH_TIMEOUT_S):
                    line = await wd.stdout.readline()
                self._mark(active, "listening_seen")
            except TimeoutError:
                return None, f"it did not listen within {LAUNCH_TIMEOUT_S:g}s"
            try:
                msg = json.loads(line)
            except ValueError:
                msg = {}
            if isinstance(msg, dict) and msg.get("event") == "listening":
                ok = True
                return wd, ""
            detail = msg.get("detail") if isinstance(msg, dict) else None
            return None, str(detail or "it exited before it listened")
        except (BrokenPipeError, ConnectionResetError) as exc:
            return None, f"it exited before it read its spec ({exc})"
        finally:
            if not ok:  # EOF on its stdin: a held watchdog never starts the job
                wd.close()

    async def _process_of(self, run: Run, spec: JobSpec) -> tuple[Account, dict[str, Any]]:
        """How the job's process is started: its account, and the watchdog spec's ``env``,
        ``cwd``, ids, umask and limits. :class:`_NotRunnable` (the run fails, saying why)
        when its account cannot be used on this node or it would be given a secret."""
        leaks = passthrough_leaks(spec.env_passthrough, self.agent_env, self.secret_values)
        if leaks:
            name, what = leaks[0]
            raise _NotRunnable(
                f"env_passthrough: {name} holds {what} on node {self.node}; the job was not "
                "started (remove it from env_passthrough)"
            )
        try:
            account, home, cwd = await self._account_of(spec)
        except AccountError as exc:
            raise _NotRunnable(f"{exc} on node {self.node} ({exc.fix})") from None
        if spec.cwd is not None:
            cwd = spec.cwd
        env = job_environment(run, spec, self.node, account.name, home, self.agent_env)
        process: dict[str, Any] = {"env": env, "cwd": cwd}
        if account.switch:
            process |= {"uid": account.uid, "gid": account.gid, "groups": account.groups}
        if hardening.job_defaults.umask is not None:
            process["umask"] = hardening.job_defaults.umask
        if hardening.job_defaults.nofile_soft is not None:
            process["nofile_soft"] = hardening.job_defaults.nofile_soft
        if spec.limits:
            process["limits"] = dict(spec.limits)
        return account, process

    async def _account_of(self, spec: JobSpec) -> tuple[Account, str, str]:
        """The job's account, its HOME and its default working directory. Looked up in a
        thread (NSS may ask a directory service, a home may be on a slow mount); the
        agent's own account once, not on every run."""
        if spec.user is not None or spec.group is not None:
            return await asyncio.to_thread(self._lookup, spec.user, spec.group)
        if self._own is None:
            self._own = await asyncio.to_thread(self._lookup, None, None)
        return self._own

    def _lookup(self, user: str | None, group: str | None) -> tuple[Account, str, str]:
        """HOME is the account's home unless that lies inside the data dir (then ``/``);
        the working directory the same, or ``/`` when the home does not exist (cron's
        rule, and never the agent's own working directory)."""
        account = resolve_account(user, group)
        home = account.home if not self._in_data_dir(account.home) else "/"
        return account, home, home if home != "/" and os.path.isdir(home) else "/"

    def _in_data_dir(self, path: str) -> bool:
        data = os.path.realpath(self.data_dir)
        real = os.path.realpath(path)
        return real == data or real.startswith(data.rstrip("/") + "/")

    async def _start_watchdog(self, ctx: str) -> _Watchdog:
        """The run's watchdog process: forked by the spawner, or (it is off, or failed
        this request) a fresh interpreter as before. Nothing runs until its spec is sent."""
        if self.spawner is not None:
            got = await self.spawner.spawn(ctx)
            if got is not None:
                pid, in_w, out_r = got
                return await _Watchdog.over_pipes(pid, in_w, out_r)
        proc = await asyncio.create_subprocess_exec(
            *WATCHDOG_ARGV,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
            env=WATCHDOG_ENV,  # none of the agent's: the job's comes in its spec
        )
        assert proc.stdin is not None and proc.stdout is not None
        # Our child: reaped when it exits (the run may end long after the launch).
        reap = asyncio.get_running_loop().create_task(proc.wait(), name=f"reap {proc.pid}")
        self._reapers.add(reap)
        reap.add_done_callback(self._reapers.discard)
        return _Watchdog(pid=proc.pid, stdin=proc.stdin, stdout=proc.stdout)

    def _renewals(self, active: _Active, lease: FencedRun, *, at_once: bool) -> asyncio.Task[None]:
        """The run's renewal loop: each committed renewal moves the watchdog's deadline; a
        refused one stops the job."""
        ctx = self._ctx(active.run)

        async def stop_job(message: str) -> None:
            await self._to_watchdog(active, {"kill": "lease lost: " + message}, ctx)

        async def move_deadline(deadline: float) -> None:
            await self._to_watchdog(active, {"deadline": deadline}, ctx)
            self._send_kill(active)  # belt and braces: a stop request this node missed

        return asyncio.get_running_loop().create_task(
            lease.renew_loop("stopping the job", stop_job, move_deadline, at_once=at_once)
        )

    async def _to_watchdog(self, active: _Active, msg: dict[str, Any], ctx: str) -> None:
        conn = active.conn
        if conn is not None:  # not attached yet: the hello carries the deadline
            await tell_watchdog(conn, msg, ctx)

    async def _follow(
        self,
        active: _Active,
        lease: FencedRun,
        run_dir: Path,
        renew: asyncio.Task[None] | None = None,
    ) -> None:
        """Attach to the run's watchdog, pass renewals and stops until the job has ended,
        and record the outcome. The same for the first attach (``renew`` running) and for a
        re-attach after a restart (``renew`` None: renewals start at once, from the
        watchdog's deadline)."""
        run, spec = active.run, active.spec
        ctx = self._ctx(run)
        reattach = renew is None
        hello: dict[str, Any] = {"run": run.id, "fence": run.fence}
        result: dict[str, Any] | None = None
        channel: rundir.Channel | None = None
        try:
            if not reattach:
                hello["deadline"] = lease.deadline
            req = self._kill_request(run.id, run.fence)
            if req is not None:  # committed while it was starting, or while we were away
                hello.update(kill=req[0], hard=req[1])
                active.kill = req
                logger.warning(
                    "%s: stopping the job (%s): %s",
                    ctx,
                    "SIGKILL" if req[1] else f"SIGTERM, SIGKILL after {GRACE_S:g}s",
                    req[0],
                )
            try:
                channel = await rundir.attach(run_dir, hello)
            except rundir.AttachError as exc:
                logger.error(
                    "%s: cannot attach to the run's watchdog (%s); not recording it: its "
                    "lease deadline stops the job and the leader expires the run",
                    ctx,
                    exc,
                )
                return
            if channel is not None:
                self._mark(active, "attached")
                active.conn = channel.writer
                self._release(active)  # the job's process is up (or failed to start)
                reply = channel.reply
                if reattach:
                    lease.deadline = float(reply.get("deadline") or 0.0)
                    renew = self._renewals(active, lease, at_once=True)
                    logger.info(
                        "%s: re-attached to its watchdog pid %s (job pid %s, %s, deadline "
                        "in %.1fs)",
                        ctx,
                        reply.get("pid"),
                        reply.get("job_pid"),
                        reply.get("state"),
                        lease.deadline - self.clock.monotonic(),
                    )
                else:
                    logger.info(
                        "%s: started %s (lease %.1fs, watchdog pid %s, job pid %s)",
                        ctx,
                        spec.command[0] if spec.command else "?",
                        lease.window,
                        reply.get("pid"),
                        reply.get("job_pid"),
                        extra={"event": "run_started"},
                    )
                self._send_kill(active)  # a request that committed meanwhile
                result = await channel.wait_exit()
        finally:
            active.conn = None
            if channel is not None:
                channel.close()
            if renew is not None:
                # The renewals' end must never keep the run's outcome from being recorded:
                # the watchdog held the deadline all along, and a completion after the
                # lease has passed is refused as stale anyway.
                await _end_renewals(renew, ctx)
        self._release(active)
        if result is None:  # it ended before we attached, or as the connection ended
            result = rundir.read_result(run_dir)
        await self._record(active, lease, run_dir, result, reattach=reattach)

    async def _record(
        self,
        active: _Active,
        lease: FencedRun,
        run_dir: Path,
        result: dict[str, Any] | None,
        *,
        reattach: bool,
    ) -> None:
        """Record the run's end once, then remove its run directory. The completion is
        written to the directory before it is proposed: a restarted agent proposes the
        very same command (an idempotent retry) instead of a new one."""
        run = active.run
        ctx = self._ctx(run)
        rec = rundir.read_record(run_dir)
        if rec is None:
            status, code, reason = _outcome(result, active.kill)
            finished_ms = self.clock.wall_ms()
            if reattach and result is not None and "finished_wall_ms" in result:
                finished_ms = int(result["finished_wall_ms"])  # it ended while we were away
            rec = {
                "status": status,
                "exit_code": code,
                "reason": reason,
                "started_ms": lease.started_ms,
                "finished_ms": finished_ms,
            }
            rundir.write_record(run_dir, rec)
        if active.marks is not None:
            self._log_timeline(active, result)
        if reattach:
            why = self.raft.machine.read(lambda s: _not_ours(s, run, rec))
            if why is not None:
                if why:
                    logger.info(
                        "%s: %s outcome found; dropped, not recorded: %s", ctx, rec["status"], why
                    )
                self.rundirs.remove(run_dir)
                return
        logger.info(
            "%s: finished %s exit_code=%s %s",
            ctx,
            rec["status"],
            rec["exit_code"],
            rec["reason"],
            extra={"event": "run_finished"},
        )
        ok = await complete(
            self.lifecycle.propose,
            self.node,
            run,
            str(rec["status"]),
            rec["exit_code"],
            int(rec["started_ms"]),
            int(rec["finished_ms"]),
            rundir.output_tail(run_dir),
            str(rec["reason"]),
            self._tell,
        )
        if ok:
            self.rundirs.discard(run_dir)

    def _log_timeline(self, active: _Active, result: dict[str, Any] | None) -> None:
        """The run's start timeline: each step's time in ms after its scheduled time, the
        agent's and (from its result) the watchdog's, in the order they happened."""
        marks = dict(active.marks or {})
        trace = (result or {}).get("trace")
        if isinstance(trace, dict):
            marks.update({f"wd_{k}": float(v) for k, v in trace.items()})
        at = active.run.scheduled_at_ms / 1000
        steps = {k: round((v - at) * 1000, 2) for k, v in sorted(marks.items(), key=lambda i: i[1])}
        logger.info("%s: timeline %s", self._ctx(active.run), json.dumps(steps))

    async def _reattach(self, active: _Active) -> None:
        """A run the state says this node is running, found when the agent (re)started."""
        run, spec = active.run, active.spec
        ctx = self._ctx(run)
        lease = self._lease(run, spec)
        lease.started_ms = run.started_ms or 0
        run_dir = self.rundirs.path(run)
        try:
            if run_dir.is_dir():
                await self._follow(active, lease, run_dir)
                return
            if spec.call:
                why = "an embedded job ends with its agent"
            elif spec.http is not None:
                why = "an HTTP job ends with its agent"
            else:
                why = "the agent stopped before the job's watchdog started"
            logger.warning(
                "%s: running when this agent stopped; %s: recording it as lost", ctx, why
            )
            await lease.complete(LOST, None, self.clock.wall_ms(), "", f"agent restarted: {why}")
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s: re-attaching failed", ctx)
        finally:
            self._active.pop(run.id, None)

    def _sweep(self) -> None:
        """Run directories of runs that are no longer this node's (final, expired, or
        gone from the ledger): stop a watchdog still there, drop its result, remove them."""
        live = {rundir.dir_name(a.run) for a in self._active.values()}
        for path in self.rundirs.entries():
            if path.name in live or rundir.fence_of(path.name) is None:
                continue
            task = asyncio.get_running_loop().create_task(self._drop_stale(path))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _end_watchdog(path: Path, why: str) -> dict[str, Any] | None:
        """Stop the watchdog in run directory ``path`` at once (SIGKILL; one that has not
        started its job never will), wait for it to exit: its result, if it left one."""
        result: dict[str, Any] | None = None
        channel = await rundir.attach(
            path, {"fence": rundir.fence_of(path.name), "kill": why, "hard": True}
        )
        if channel is not None:
            try:
                result = await channel.wait_exit()
            finally:
                channel.close()
        return result or rundir.read_result(path)

    async def _drop_stale(self, path: Path) -> None:
        fence = rundir.fence_of(path.name)
        ctx = LogCtx(f"run dir {path.name} fence={fence} node={self.node}", fence=fence)
        try:
            # Its lease is not this node's any more: the job must not run (its deadline
            # has passed or is about to); a watchdog that never started it never will.
            result = await self._end_watchdog(path, "its lease is no longer held")
        except rundir.AttachError as exc:
            logger.warning("%s: a stale watchdog does not answer (%s); left alone", ctx, exc)
            return
        rec = rundir.read_record(path)
        if result is not None:
            run = self.raft.machine.read(lambda s: s.run(str(result.get("run"))))
            recorded = (
                run is not None
                and run.fence == fence
                and rec is not None
                and run.status == rec.get("status")
            )
            if not recorded:
                logger.info(
                    "job=%s run=%s fence=%s node=%s: %s outcome found after its lease had "
                    "passed (%s); dropped, not recorded",
                    result.get("job"),
                    result.get("run"),
                    fence,
                    self.node,
                    result.get("outcome"),
                    f"the ledger says {run.status}" if run else "no longer in the ledger",
                )
        self.rundirs.remove(path)


class _NotRunnable(Exception):
    """The run cannot start on this node; ``str()`` is the reason recorded with it."""


def job_environment(
    run: Run, spec: JobSpec, node: str, user: str, home: str, agent_env: Mapping[str, str]
) -> dict[str, str]:
    """A command job's whole environment: a fixed minimal set (``PATH``, ``HOME``,
    ``USER``/``LOGNAME``, and ``LANG``/``TZ`` when the agent has them), the agent's
    variables the job names in ``env_passthrough``, its own ``env``, and the RAFTCRON_*
    variables of the run. Nothing else of the agent's environment (its token, above all)."""
    env = {"PATH": DEFAULT_PATH, "HOME": home, "USER": user, "LOGNAME": user}
    for name in ("LANG", "TZ"):
        if name in agent_env:
            env[name] = agent_env[name]
    for name in spec.env_passthrough:
        if name in agent_env:
            env[name] = agent_env[name]
    env.update(spec.env)
    env.update(
        {
            "RAFTCRON_JOB": run.job,
            "RAFTCRON_RUN_ID": run.id,
            "RAFTCRON_SCHEDULED_AT": rfc3339(run.scheduled_at_ms),
            "RAFTCRON_FENCE": str(run.fence),
            "RAFTCRON_NODE": node,
            "RAFTCRON_ATTEMPT": str(run.attempt),
            "RAFTCRON_INSTANCE": str(run.instance),  # 1..RAFTCRON_COUNT (count)
            "RAFTCRON_COUNT": str(run.instances),
        }
    )
    if run.parents:  # a dependency run: the parents' run ids (fan-in: comma-separated)
        env["RAFTCRON_PARENT_RUN_ID"] = ",".join(run.parents)
    return env


@dataclass(slots=True, eq=False)
class _Watchdog:
    """The agent's handles on a new watchdog process while it is launched: its stdin
    (the spec) and stdout (the one line saying it listens). Everything after goes over
    the socket in the run directory (rundir.attach)."""

    pid: int
    stdin: asyncio.StreamWriter
    stdout: asyncio.StreamReader
    read: asyncio.BaseTransport | None = None  # pipe transports we own (forked)
    went: bool = False  # the go left from the Raft thread (go_from_thread)

    @classmethod
    async def over_pipes(cls, pid: int, in_w: int, out_r: int) -> _Watchdog:
        """Streams over a forked watchdog's pipes (our ends; they are closed on failure)."""
        loop = asyncio.get_running_loop()
        try:
            rfile = os.fdopen(out_r, "rb", buffering=0)
        except BaseException:
            os.close(out_r)
            os.close(in_w)
            raise
        try:
            wfile = os.fdopen(in_w, "wb", buffering=0)
        except BaseException:
            rfile.close()
            os.close(in_w)
            raise
        reader = asyncio.StreamReader(loop=loop)
        read = write = None
        try:
            read, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader, loop=loop), rfile
            )
            write, proto = await loop.connect_write_pipe(
                lambda: asyncio.streams.FlowControlMixin(loop=loop),
                wfile,
            )
        except BaseException:
            if read is not None:
                read.close()
            else:
                rfile.close()
            wfile.close()
            raise
        writer = asyncio.StreamWriter(write, proto, None, loop)
        return cls(pid=pid, stdin=writer, stdout=reader, read=read)

    def go_from_thread(self, deadline: float) -> bool:
        """The go from another thread than the loop's (Executor.go_armed): one write of a
        line shorter than PIPE_BUF to our end of the stdin pipe, which holds nothing else
        (the spec was read before the watchdog said it listens), so it goes whole or not
        at all. False if it did not go (the loop's :meth:`go` then writes it)."""
        pipe = self.stdin.transport.get_extra_info("pipe")
        if pipe is None or self.stdin.transport.is_closing():
            return False
        line = _go_line(deadline)
        try:
            self.went = os.write(pipe.fileno(), line) == len(line)
        except OSError:  # (BlockingIOError, BrokenPipeError: it has gone)
            return False
        return self.went

    async def go(self, deadline: float) -> None:
        """Start the held job: one line on its stdin, with the committed lease's deadline
        (unless it went from the Raft thread); then our pipe ends close. One that has
        exited meanwhile (its hold ended) started nothing and left its result; one of
        version 1 (no hold) reads no more than its spec, and starts the job when the
        first hello brings the deadline."""
        try:
            if not self.went:
                self.stdin.write(_go_line(deadline))
                await self.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            self.close()

    async def cancel(self, why: str) -> bool:
        """The held job must never start: tell the watchdog, close our pipe ends and wait
        (a few seconds at most) for it to exit. True once it has."""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.stdin.write(json.dumps({"cancel": why}).encode() + b"\n")
            await self.stdin.drain()
        self.stdin.close()
        try:
            async with asyncio.timeout(DISMISS_TIMEOUT_S):
                while await self.stdout.read(4096):
                    pass
            return True
        except (TimeoutError, ConnectionError, OSError):
            return False
        finally:
            self.close()

    def close(self) -> None:
        """Close our pipe ends: a held watchdog sees EOF and never starts the job."""
        self.stdin.close()
        if self.read is not None:
            self.read.close()


def _go_line(deadline: float) -> bytes:
    """The go a held watchdog reads on its stdin, with the lease's deadline."""
    return json.dumps({"go": True, "deadline": deadline}).encode() + b"\n"


@dataclass(slots=True, eq=False)
class _Held:
    """A process run prepared while its start commits: its run directory, and its
    watchdog holding the job (None: it did not come up, ``why``)."""

    run_dir: Path
    wd: _Watchdog | None
    why: str = ""


def _drop_held(held: asyncio.Task[_Held]) -> None:
    """Let go of a held watchdog (the agent stops; after the go it is a no-op): EOF on its
    stdin, so it never starts the job; its run directory stays for the next start."""
    if not held.done():
        held.cancel()  # _launch closes the pipes
    elif not held.cancelled() and held.exception() is None and held.result().wd is not None:
        held.result().wd.close()  # type: ignore[union-attr]


async def tell_watchdog(conn: asyncio.StreamWriter, msg: dict[str, Any], ctx: str) -> None:
    """One line to a run's watchdog. A watchdog that has exited (its job ended just as a
    renewal committed) has closed its socket: nothing is left to tell it, and its exit
    report (or its result on disk) is what the run records. (Before, the broken pipe ended
    the run's task before its completion was proposed: a run that succeeded was expired
    as lost; the chaos suite found it.)"""
    try:
        conn.write(json.dumps(msg).encode() + b"\n")
        await conn.drain()
    except (BrokenPipeError, ConnectionResetError):
        logger.info("%s: watchdog already gone; not sent: %s", ctx, msg)


def _live_for(state: State, node: str) -> list[tuple[Run, JobSpec]]:
    """The runs granted to ``node`` whose lease is live (claimed or running). A started run
    of a job deleted since goes on under its lease: it gets a stand-in spec with the
    lease's duration (a command job's; only a process run has anything to re-attach to)."""
    out = []
    for run in state.live_runs(node):
        job = state.job(run.job)
        lease = state.lease(run.id)
        if run.status == CLAIMED and job is not None:
            out.append((run, job.spec))
        elif run.status == RUNNING and lease is not None:
            spec = (
                job.spec
                if job is not None
                else JobSpec(name=run.job, schedule="", command=("",), lease_ms=lease.lease_ms)
            )
            out.append((run, spec))
    return out


def _outcome(
    result: dict[str, Any] | None, kill: tuple[str, bool] | None
) -> tuple[str, int | None, str]:
    """(status, exit code, reason) of a watchdog's result; None: it died without one."""
    if result is None:
        return LOST, None, "killed: the watchdog exited without a result"
    outcome = str(result.get("outcome", "killed"))
    code = result.get("exit_code")
    detail = str(result.get("detail", ""))
    if outcome == "exited":
        return (SUCCEEDED if code == 0 else FAILED), code, ""
    if outcome == "timeout":
        return TIMED_OUT, code, detail
    if outcome == "killed" and kill is not None:
        return KILLED, code, kill[0]
    if outcome == "not_started":  # a held watchdog whose go never came (its agent went away)
        return LOST, None, f"never started: {detail}"
    return LOST, code, f"{outcome}: {detail}"


def _not_ours(state: State, run: Run, rec: dict[str, Any]) -> str | None:
    """Why a re-attached run's outcome must not be proposed: "" when it is already
    recorded as ``rec``, a reason when the lease has passed; None when it is still ours."""
    lease = state.lease(run.id)
    if lease is not None and lease.fence == run.fence:
        return None
    now = state.run(run.id)
    if now is None:
        return "the run is no longer in the ledger"
    if (
        now.fence == run.fence
        and now.status == rec.get("status")
        and now.finished_ms == rec.get("finished_ms")
    ):
        return ""
    return f"the lease had passed; the ledger says {now.status} {now.reason}".rstrip()


async def _end_renewals(renew: asyncio.Task[None], ctx: str) -> None:
    renew.cancel()
    (ended,) = await asyncio.gather(renew, return_exceptions=True)
    if isinstance(ended, Exception):
        logger.error("%s: renewals failed: %r", ctx, ended, exc_info=ended)
