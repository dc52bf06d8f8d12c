"""Embedded Python jobs: a granted run of a job with ``spec.call`` set runs a callable in
this process (registered through :mod:`raftcron.embed`) instead of a command.

The lease path is the shell executor's (docs/design.md, "Leases and fencing"), step by step:

* Nothing runs before a fenced ``Start`` commits; the timer starts before it is sent, and
  the local deadline is ``t_send + D*(1-rho)/(1+rho) - margin`` on the monotonic clock.
* Renewals every D/3, each timed the same way; a committed one moves the deadline on, a
  rejected one (stale fence) means the lease is gone.
* The completion carries the fence: a late one is rejected by ``apply`` as stale.

What differs is self-fencing. A watchdog process can kill a command; nothing can kill a
Python callable running in this process. So the node fences itself:

* async callables run as a task on the agent's loop. ``lease_grace`` before the lease
  deadline (or at once when a renewal is refused) the task is cancelled and the run is
  recorded as ``lost``; at ``timeout`` it is cancelled and recorded as ``timed_out``.
  Cancellation lands at the task's next ``await``: a task that blocks the loop blocks the
  renewals too, and one that swallows ``CancelledError`` keeps running unfenced.
* sync callables run in a thread of their own (a stuck one never holds a pool slot). A
  thread cannot be stopped: at the deadline or the timeout the run is marked cancelled
  (``run.cancelled``, ``run.still_valid()`` turns false) and recorded, and the thread is
  left to finish on its own. It must check ``run.still_valid()`` before each side effect,
  or hand ``run.fence`` to a resource that refuses stale fences (the only protection
  that needs no clock).
* If the whole process is frozen (SIGSTOP) no in-process check runs until it thaws; on
  thawing ``still_valid()`` is false at once (it reads the monotonic clock, not a flag).

Outcomes: a return is ``succeeded`` (exit code 0; a returned string becomes the output),
an exception ``failed`` (exit code 1, the traceback's tail as output), a job that ran past
the lease ``lost``. A node that was granted a run of a job it has no callable for (not
registered in this process, e.g. a plain ``raftcron agent``) records it as ``failed``,
saying so. Lines the job writes with ``run.log()`` are the run's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import math
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from raftcron.clock import Clock
from raftcron.core.model import (
    FAILED,
    LOST,
    OUTPUT_TAIL_BYTES,
    SUCCEEDED,
    TIMED_OUT,
    JobSpec,
    Run,
)
from raftcron.executor.lease import GRACE_S, FencedRun, Tell, lease_grace, run_ctx
from raftcron.logs import LogCtx
from raftcron.raft.node import RaftNode

logger = logging.getLogger(__name__)


JobFunc = Callable[..., Any]


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark the job's exception as seen: it is recorded in the ledger, or the job was
    abandoned (lease lost) and finished later; either way asyncio need not warn."""
    if not fut.cancelled():
        fut.exception()


def call_id(fn: JobFunc) -> str:
    """``module:qualname`` of a callable: how the replicated job names it."""
    target: Any = fn
    while isinstance(target, functools.partial):
        target = target.func
    # a callable object is named by its class (never by its repr: that has an address)
    module = getattr(target, "__module__", None) or type(target).__module__
    qual = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}:{qual}"


@dataclass(slots=True)
class RunContext:
    """What an embedded job gets: the run's identity, its fence, and its lease.

    ``scheduled_at`` is the fire's cron time (UTC); ``fence`` rises strictly across every
    grant the cluster ever made: pass it to what the job writes so a late writer can be
    refused. Thread-safe (sync jobs call it from their own thread).
    """

    job: str
    run_id: str
    fence: int
    scheduled_at: datetime
    attempt: int
    node: str
    trigger: str
    instance: int  # which instance of its fire (1..count; the job's ``count``)
    count: int  # instances of its fire (RAFTCRON_INSTANCE / RAFTCRON_COUNT for a command)
    _clock: Clock = field(repr=False)
    _lease: FencedRun = field(repr=False)
    # a dependency run: the parents' run ids, in the order of the job's ``after``
    parents: tuple[str, ...] = ()
    _cancelled: threading.Event = field(default_factory=threading.Event, repr=False)
    _lines: list[str] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def scheduled_at_ms(self) -> int:
        return int(self.scheduled_at.timestamp() * 1000)

    @property
    def cancelled(self) -> bool:
        """True once the node gave up on this run (timeout, lease lost, agent stopping)."""
        return self._cancelled.is_set()

    def lease_remaining(self) -> float:
        """Seconds until this node stops trusting the lease (0 once cancelled)."""
        if self._cancelled.is_set():
            return 0.0
        return max(0.0, self._lease.deadline - self._clock.monotonic())

    def still_valid(self) -> bool:
        """Whether this node still holds the run's lease: check it before every side
        effect. False from the moment the run is cancelled or the lease deadline passes
        (even if the process was frozen and the node has not noticed yet)."""
        return self.lease_remaining() > 0

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """For sync jobs: sleep up to ``timeout`` seconds, waking early (True) if the run
        is cancelled. ``while not run.wait_cancelled(1.0): ...`` is an interruptible loop."""
        return self._cancelled.wait(timeout)

    def log(self, message: str) -> None:
        """Add a line to the run's output (its tail is kept in the ledger)."""
        with self._lock:
            self._lines.append(message.rstrip("\n"))

    def _cancel(self) -> None:
        self._cancelled.set()

    def _output(self) -> str:
        with self._lock:
            text = "\n".join(self._lines)
        return text[-OUTPUT_TAIL_BYTES:]


@dataclass(frozen=True, slots=True)
class Registered:
    name: str
    call: str  # call_id(fn)
    fn: JobFunc
    is_async: bool
    takes_run: bool


def registered(name: str, fn: JobFunc) -> Registered:
    """Describe ``fn`` for the executor; :class:`TypeError` if it is not a fit."""
    if not callable(fn):
        raise TypeError(f"job {name!r}: {fn!r} is not callable")
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
    except (TypeError, ValueError):
        params = []
    required = [p for p in params if p.default is p.empty and p.kind != p.VAR_POSITIONAL]
    if len(required) > 1:
        raise TypeError(
            f"job {name!r}: {call_id(fn)} takes {len(required)} arguments; an embedded job "
            "takes one (the RunContext) or none"
        )
    return Registered(
        name=name,
        call=call_id(fn),
        fn=fn,
        # an object whose __call__ is async counts as async too
        is_async=inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__),
        takes_run=bool(params),
    )


class InProcess:
    """Runs granted fires of embedded jobs in this process. One per executor."""

    def __init__(
        self,
        *,
        node: str,
        raft: RaftNode,
        clock: Clock,
        tell: Tell | None = None,
    ) -> None:
        self.node = node
        self.raft = raft
        self.clock = clock
        self._tell = tell
        self.jobs: dict[str, Registered] = {}

    def register(self, entry: Registered) -> None:
        self.jobs[entry.name] = entry

    def _ctx(self, run: Run) -> LogCtx:
        return run_ctx(run, self.node)

    async def execute(self, run: Run, spec: JobSpec, lease: FencedRun) -> None:
        """Run the job; its fenced start has committed (``lease.start()``)."""
        ctx = self._ctx(run)
        window = lease.window
        lease.tell_started(spec)
        entry = self.jobs.get(run.job)
        if entry is None:
            reason = (
                f"node {self.node} has no Python callable for embedded job {run.job!r} "
                f"({spec.call}): every process of the application must register the same "
                "jobs (restrict the job with tags to the nodes that do)"
            )
            logger.error("%s: %s", ctx, reason)
            await lease.complete(FAILED, None, self.clock.wall_ms(), "", reason)
            return
        if entry.call != spec.call:
            logger.warning(
                "%s: this process registered %s, the cluster's job names %s (a deploy in "
                "progress?); running this process's",
                ctx,
                entry.call,
                spec.call,
            )
        rc = RunContext(
            job=run.job,
            run_id=run.id,
            fence=run.fence,
            scheduled_at=datetime.fromtimestamp(run.scheduled_at_ms / 1000, tz=UTC),
            attempt=run.attempt,
            node=self.node,
            trigger=run.trigger,
            instance=run.instance,
            count=run.instances,
            _clock=self.clock,
            _lease=lease,
            parents=run.parents,
        )
        loop = asyncio.get_running_loop()
        job = self._launch(entry, rc, loop)
        renew = loop.create_task(lease.renew_loop("cancelling the job"))
        logger.info(
            "%s: started %s (lease %.1fs)", ctx, entry.call, window, extra={"event": "run_started"}
        )
        try:
            status, code, reason = await self._supervise(spec, entry, rc, lease, job, window)
        except asyncio.CancelledError:  # the agent is stopping: the lease decides
            rc._cancel()
            job.cancel()
            raise
        finally:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renew
        output = rc._output()
        if job.done() and not job.cancelled():
            exc = job.exception()
            if exc is not None and status == FAILED:
                tb = "".join(traceback.format_exception(exc))
                output = (output + "\n" + tb if output else tb)[-OUTPUT_TAIL_BYTES:]
            elif exc is None and isinstance(job.result(), str) and job.result():
                output = (output + "\n" + job.result() if output else job.result())[
                    -OUTPUT_TAIL_BYTES:
                ]
        finished_ms = self.clock.wall_ms()
        logger.info(
            "%s: finished %s exit_code=%s %s",
            ctx,
            status,
            code,
            reason,
            extra={"event": "run_finished"},
        )
        await lease.complete(status, code, finished_ms, output, reason)

    # -- the pieces

    def _launch(
        self, entry: Registered, rc: RunContext, loop: asyncio.AbstractEventLoop
    ) -> asyncio.Future[Any]:
        args = (rc,) if entry.takes_run else ()
        if entry.is_async:
            task: asyncio.Future[Any] = loop.create_task(
                entry.fn(*args), name=f"embedded {rc.run_id}"
            )
            task.add_done_callback(_retrieve)
            return task
        fut: asyncio.Future[Any] = loop.create_future()
        fut.add_done_callback(_retrieve)

        def deliver(ok: bool, value: Any) -> None:
            if fut.done():
                return
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

        def target() -> None:
            try:
                value = entry.fn(*args)
            except BaseException as exc:
                outcome: tuple[bool, Any] = (False, exc)
            else:
                outcome = (True, value)
            with contextlib.suppress(RuntimeError):  # the loop is gone (agent stopped)
                loop.call_soon_threadsafe(deliver, *outcome)

        threading.Thread(target=target, name=f"raftcron {rc.run_id}", daemon=True).start()
        return fut

    async def _supervise(
        self,
        spec: JobSpec,
        entry: Registered,
        rc: RunContext,
        lease: FencedRun,
        job: asyncio.Future[Any],
        window: float,
    ) -> tuple[str, int | None, str]:
        """Wait for the job, its timeout or the end of its lease: (status, code, reason)."""
        stop_before = lease_grace(window)
        timeout_at = (
            math.inf if spec.timeout_ms is None else self.clock.monotonic() + spec.timeout_ms / 1000
        )
        lost = asyncio.ensure_future(lease.lost.wait())
        try:
            while not job.done():
                now = self.clock.monotonic()
                if lease.lost.is_set():
                    return await self._abandon(
                        entry, rc, job, lease, f"lease lost ({lease.lost_reason})"
                    )
                if now >= lease.deadline - stop_before:
                    return await self._abandon(
                        entry, rc, job, lease, "the lease ran out (no committed renewal)"
                    )
                if now >= timeout_at:
                    return await self._time_out(spec, entry, rc, job, lease)
                limit = min(lease.deadline - stop_before, timeout_at)
                await asyncio.wait(
                    {job, lost}, timeout=max(0.0, limit - now), return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            lost.cancel()
        if self.clock.monotonic() > lease.deadline:
            rc._cancel()
            return LOST, None, "the job finished after its lease had run out"
        if job.cancelled():
            return FAILED, 1, "the job's task was cancelled"
        if job.exception() is not None:
            exc = job.exception()
            return FAILED, 1, f"{type(exc).__name__}: {exc}"[:500]
        return SUCCEEDED, 0, ""

    async def _abandon(
        self,
        entry: Registered,
        rc: RunContext,
        job: asyncio.Future[Any],
        lease: FencedRun,
        why: str,
    ) -> tuple[str, int | None, str]:
        """Self-fencing: the lease is gone or about to be. Cancel and record ``lost``."""
        ctx = LogCtx(
            f"job={rc.job} run={rc.run_id} fence={rc.fence} node={self.node}",
            job=rc.job,
            run_id=rc.run_id,
            fence=rc.fence,
            node=self.node,
        )
        rc._cancel()
        if not entry.is_async:
            logger.error(
                "%s: %s; the thread cannot be stopped and keeps running: its "
                "run.still_valid() is now false",
                ctx,
                why,
            )
            return LOST, None, f"{why}; the sync job's thread could not be stopped"
        job.cancel()
        # Let it unwind until the deadline at the latest; the lease is not ours after that.
        await asyncio.wait({job}, timeout=max(0.0, lease.deadline - self.clock.monotonic()))
        if not job.done():
            logger.error("%s: %s; the task ignored its cancellation and keeps running", ctx, why)
            return LOST, None, f"{why}; the task ignored its cancellation"
        logger.error("%s: %s; the task was cancelled", ctx, why)
        return LOST, None, f"{why}; the task was cancelled"

    async def _time_out(
        self,
        spec: JobSpec,
        entry: Registered,
        rc: RunContext,
        job: asyncio.Future[Any],
        lease: FencedRun,
    ) -> tuple[str, int | None, str]:
        """The job's own timeout: cancel, give it ``GRACE_S`` to wind down (the lease is
        still renewed meanwhile, but never waited on past it), record ``timed_out``."""
        limit = f"timeout after {(spec.timeout_ms or 0) / 1000:g}s"
        rc._cancel()
        if entry.is_async:
            job.cancel()
        grace = min(GRACE_S, max(0.0, lease.deadline - self.clock.monotonic()))
        await asyncio.wait({job}, timeout=grace)
        if job.done():
            how = "the task was cancelled" if entry.is_async else "the thread stopped"
        elif entry.is_async:
            how = "the task ignored its cancellation and keeps running"
        else:
            how = "the sync job's thread could not be stopped and keeps running"
        return TIMED_OUT, None, f"{limit}: {how}"
