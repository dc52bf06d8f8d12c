"""The fenced lease of one granted run: the one start/renew/complete path every executor
kind uses (process runs with a watchdog, HTTP requests, embedded Python callables).

The rules (docs/design.md, "Leases and fencing"), kept here once:

* Nothing runs before a fenced ``Start`` commits. The timer starts BEFORE the proposal is
  sent: the local deadline is ``t_send + D*(1-rho)/(1+rho) - m`` on the monotonic clock,
  while the leader expires the lease at ``t_commit + D`` on its own. A start that has not
  committed within that window is given up (the run never starts; the leader expires it).
* Renewals go out every D/3, paced from the lease's own start (not from when the job came
  up, which can take a while on a loaded machine), each timed the same way; a committed
  one moves the deadline on, a refused one (stale fence) means the lease is gone and the
  caller stops the job at once. A renewal that did not commit changes nothing: the
  deadline stays where the last committed one put it.
* The completion carries the fence, so a late one is rejected by ``apply`` as stale; it is
  retried (same command: idempotent) until it commits or is refused.

How a kind fences itself at the deadline differs and stays with the kind: the watchdog
process kills a command, the HTTP executor aborts its request, an embedded job is
cancelled (async) or told (sync). They read :attr:`FencedRun.deadline` and
:attr:`FencedRun.lost_reason` and pass their own reaction to :meth:`FencedRun.renew_loop`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Final

from raftcron.clock import Clock
from raftcron.core.commands import Complete, Renew, Start
from raftcron.core.lease import margin_for, safe_deadline
from raftcron.core.model import JobSpec, Run, due_ms
from raftcron.core.state import Ok, Rejected
from raftcron.logs import LogCtx
from raftcron.proposals import Propose, propose_with_retry
from raftcron.raft.node import ProposalError, RaftNode

logger = logging.getLogger(__name__)

Tell = Callable[[str, str, dict[str, Any]], None]

START_RETRY_S: Final = 0.2  # pause before re-proposing a start that did not commit
QUEUED_RETRY_S: Final = 1.0  # pause before re-proposing a queued run's renewal
COMPLETE_TIMEOUT_S: Final = 5.0
COMPLETE_RETRY_S: Final = 1.0
COMPLETE_ATTEMPTS: Final = 600
# A stopped job's grace: after SIGTERM (a command) or a cancel (an embedded job), this long
# before SIGKILL, or before the run is recorded anyway.
GRACE_S: Final = 5.0
# The stop before the lease deadline is at most GRACE_S, at most a quarter of the lease
# window (a short lease keeps most of its time), and at least this.
MIN_LEASE_GRACE_S: Final = 0.05


def lease_grace(window: float) -> float:
    """How long before the lease deadline (``window`` seconds after the start) a job that
    is still running is stopped, so that its end is recorded while the lease is live."""
    return max(MIN_LEASE_GRACE_S, min(GRACE_S, window / 4))


def run_ctx(run: Run, node: str) -> LogCtx:
    """How every log line about a run names it: as text, and as the ``job``, ``run_id``,
    ``fence`` and ``node`` fields of ``--log-json`` (:class:`raftcron.logs.LogCtx`)."""
    return LogCtx(
        f"job={run.job} run={run.id} fence={run.fence} node={node}",
        job=run.job,
        run_id=run.id,
        fence=run.fence,
        node=node,
    )


class FencedRun:
    """One granted run's lease as this node trusts it.

    ``deadline`` (monotonic seconds) is set by :meth:`start` and moved on by committed
    renewals; ``lost`` is set (with ``lost_reason``) when a renewal is refused.
    """

    def __init__(
        self,
        *,
        raft: RaftNode,
        clock: Clock,
        node: str,
        run: Run,
        lease_ms: int,
        tell: Tell | None = None,
        propose: Propose | None = None,
    ) -> None:
        self.raft = raft
        # how its Start, renewals and Complete are proposed: the node's batcher
        # (raftcron/executor/batch.py), or one proposal each
        self.propose: Propose = propose if propose is not None else raft.propose
        self.clock = clock
        self.node = node
        self.run = run
        self.tell = tell
        self.window = safe_deadline(lease_ms, margin_for(lease_ms))
        self.op_timeout = max(0.5, min(5.0, self.window / 3))
        self.period = max(0.2, self.window / 3)
        self.deadline = 0.0
        self.started_ms = 0
        self.lost_reason = ""
        self.lost = asyncio.Event()
        self.ctx = run_ctx(run, node)

    # -- waiting for a start slot

    async def keep_queued(self, since: float, limiter: asyncio.Semaphore) -> None:
        """Keep the lease of a run that waits for a start slot alive; return when it is lost.

        Nothing runs while the run is queued and no local deadline is trusted (the fenced
        start below starts its own timer), so these renewals only keep the fire reserved
        for this node: a committed one moves the leader's expiry on (``t_commit + D``), a
        refused one means the lease is gone (expired, completed or killed) and the run
        must never start. Paced every D/3 from ``since`` (when this node saw the grant);
        ``limiter`` bounds how many queued renewals of this node are in flight at once.
        """
        run = self.run
        last = since
        while True:
            await asyncio.sleep(max(0.0, last + self.period - self.clock.monotonic()))
            last = self.clock.monotonic()
            try:
                async with limiter:
                    res = await self.propose(
                        Renew(
                            at_ms=self.clock.wall_ms(),
                            run_id=run.id,
                            fence=run.fence,
                            node=self.node,
                        ),
                        self.op_timeout,
                    )
            except ProposalError as exc:
                logger.warning("%s: renewal while queued not committed (%s)", self.ctx, exc.code)
                # try again soon, not a whole period later: nothing runs, only the
                # reservation of the fire is at stake
                last = min(last, self.clock.monotonic() + QUEUED_RETRY_S - self.period)
                continue
            if isinstance(res, Rejected):
                logger.warning(
                    "%s: lease lost while queued for a start slot (%s); not running",
                    self.ctx,
                    res.message,
                )
                self.lost_reason = res.message
                self.lost.set()
                return

    # -- the fenced start

    async def start(self) -> bool:
        """Propose the fenced ``Start`` until it commits: True (``deadline`` and
        ``started_ms`` set), or False if it was refused or did not commit within the
        lease window (then nothing may run)."""
        run = self.run
        token = f"{self.node}:{os.getpid()}:{secrets.token_hex(6)}"
        give_up = self.clock.monotonic() + self.window
        while True:
            t_send = self.clock.monotonic()
            if t_send >= give_up:
                logger.warning("%s: start not committed within the lease; not running", self.ctx)
                return False
            self.started_ms = self.clock.wall_ms()
            try:
                res = await self.propose(
                    Start(
                        at_ms=self.started_ms,
                        run_id=run.id,
                        fence=run.fence,
                        node=self.node,
                        token=token,
                    ),
                    self.op_timeout,
                )
            except ProposalError as exc:
                logger.info("%s: start not committed (%s); retrying", self.ctx, exc.code)
                await asyncio.sleep(START_RETRY_S)
                continue
            if isinstance(res, Rejected):
                logger.warning(
                    "%s: start rejected (%s: %s)",
                    self.ctx,
                    res.code,
                    res.message,
                    extra={"event": "start_rejected"},
                )
                return False
            self.deadline = t_send + self.window
            return True

    def tell_started(self, spec: JobSpec) -> None:
        """Tell the hook (metrics, notifications) that the job is about to run."""
        if self.tell is not None:
            run = self.run
            self.tell(
                "started",
                run.id,
                {
                    "scheduled_at_ms": run.scheduled_at_ms,
                    # when it was due (lateness counts from there): its jitter offset
                    # after scheduled_at, or its claim for a dependency run
                    "due_ms": due_ms(run, spec),
                    "trigger": run.trigger,
                    "started_ms": self.started_ms,
                },
            )

    # -- renewals

    async def renew_loop(
        self,
        stopping: str,
        on_lost: Callable[[str], Awaitable[None]] | None = None,
        on_renewed: Callable[[float], Awaitable[None]] | None = None,
        *,
        at_once: bool = False,
    ) -> None:
        """Renew every D/3 from the lease's start until cancelled or refused (``at_once``:
        the first renewal now, e.g. for a run re-attached after the agent restarted).

        A refused renewal logs ``lease lost (...); <stopping>``, sets ``lost`` and calls
        ``on_lost(message)``, and the loop ends; a committed one moves ``deadline`` on,
        tells ``renewed`` and calls ``on_renewed(deadline)``.
        """
        run = self.run
        last_send = -math.inf if at_once else self.deadline - self.window
        while True:
            await asyncio.sleep(max(0.0, last_send + self.period - self.clock.monotonic()))
            t_send = last_send = self.clock.monotonic()
            try:
                res = await self.propose(
                    Renew(
                        at_ms=self.clock.wall_ms(), run_id=run.id, fence=run.fence, node=self.node
                    ),
                    self.op_timeout,
                )
            except ProposalError as exc:
                logger.warning("%s: renewal not committed (%s)", self.ctx, exc.code)
                continue
            if isinstance(res, Rejected):
                logger.error(
                    "%s: lease lost (%s); %s",
                    self.ctx,
                    res.message,
                    stopping,
                    extra={"event": "lease_lost"},
                )
                self.lost_reason = res.message
                self.lost.set()
                if on_lost is not None:
                    await on_lost(res.message)
                return
            self.deadline = max(self.deadline, t_send + self.window)
            if self.tell is not None:
                self.tell("renewed", run.id, {"fence": run.fence})
            if on_renewed is not None:
                await on_renewed(self.deadline)

    # -- the fenced completion

    async def complete(
        self, status: str, code: int | None, finished_ms: int, output: str, reason: str
    ) -> bool:
        return await complete(
            self.propose,
            self.node,
            self.run,
            status,
            code,
            self.started_ms,
            finished_ms,
            output,
            reason,
            self.tell,
        )


async def complete(
    propose: Propose,
    node: str,
    run: Run,
    status: str,
    code: int | None,
    started_ms: int,
    finished_ms: int,
    output: str,
    reason: str,
    tell: Tell | None = None,
) -> bool:
    """Record the run's end with its fence, retrying the same command until it commits or
    is refused (a refusal means the lease had passed: the leader's expiry decided). False
    only if it never committed either way."""
    ctx = run_ctx(run, node)
    cmd = Complete(
        at_ms=finished_ms,
        run_id=run.id,
        fence=run.fence,
        node=node,
        status=status,
        exit_code=code,
        started_ms=started_ms,
        finished_ms=finished_ms,
        output=output,
        reason=reason,
    )

    def retrying(exc: ProposalError, attempt: int) -> None:
        logger.info("%s: completion not committed (%s); retry %d", ctx, exc.code, attempt)

    try:
        res = await propose_with_retry(
            propose,
            cmd,
            attempt_timeout=COMPLETE_TIMEOUT_S,
            pause=COMPLETE_RETRY_S,
            attempts=COMPLETE_ATTEMPTS,
            on_retry=retrying,
        )
    except ProposalError as exc:
        logger.error(
            "%s: completion never committed (%s); the leader's lease expiry decides", ctx, exc.code
        )
        return False
    if isinstance(res, Ok):
        logger.info("%s: recorded %s", ctx, status, extra={"event": "run_recorded"})
    else:
        logger.warning(
            "%s: completion rejected as %s: %s (the lease had passed)",
            ctx,
            res.code,
            res.message,
        )
    if tell is not None:
        tell("completed", run.id, {"status": status, "accepted": isinstance(res, Ok)})
    return True
