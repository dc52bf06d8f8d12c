"""Batched lifecycle commits: one entry carries many runs' ``Start``, ``Renew`` and
``Complete`` of this node (``commands.Lifecycle``, feature level 4; issue 17).

:meth:`LifecycleBatcher.propose` has the shape of ``RaftNode.propose`` (a command and a
timeout in, its committed ``Result`` out, ``ProposalError`` when the outcome is unknown),
so the lease code (``lease.py``) proposes through it without knowing about batches:

* A lone command goes out at once, as the single command it is: no wait, no batch.
* While a commit of this node's is in flight, what queues meanwhile waits for it and then
  goes out as ONE ``Lifecycle`` entry (at most ``MAX_ITEMS`` items and about
  ``MAX_BYTES``; the rest in the next one). Commands queued in the same turn of the event
  loop leave together. So a busy node commits per round trip, not per run, and an idle
  one adds nothing to a commit's latency.
* Each item keeps its own fence check, idempotency key and outcome: ``apply`` applies the
  items one by one exactly as the single commands (``State._lifecycle``), and each caller
  gets its own item's result. An entry that did not commit fails every caller in it with
  that ``ProposalError``, as a single proposal would: each retries its own command, which
  is idempotent.
* The feature gate: until every member advertises level 4 (``enabled()`` false, looked at
  before each batch), the queued commands go out one by one, each its own proposal, as
  before batches existed. A whole batch answered with a rejection (only a bug could
  cause one) is retried the same way, and batching stays off on this node.
* A caller that gives up (its timeout, a cancellation) before its command went out is
  taken out of the queue: nothing is proposed for it. Once it went out, its outcome is
  unknown to it, as with a single proposal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from raftcron.core.commands import Command, Complete, Lifecycle, LifecycleItem, Renew, Start
from raftcron.core.results import Ok, Rejected, Result
from raftcron.raft.node import ProposalError, ProposalTimeout

logger = logging.getLogger(__name__)

Propose = Callable[[Command, float], Awaitable[Result]]

# At most this many items in one entry, and about this many bytes of output tails (a
# completion carries up to 64 KiB of output; a huge entry takes long to fsync and send).
MAX_ITEMS: Final = 512
MAX_BYTES: Final = 512 * 1024
# How long the gate's answer is trusted before it is read again (a member advertising a
# level is a rare event; reading it takes the state lock).
GATE_TTL_S: Final = 1.0
# The shortest and longest deadline one batch's proposal gets.
MIN_BATCH_TIMEOUT_S: Final = 0.5
MAX_BATCH_TIMEOUT_S: Final = 10.0


@dataclass(slots=True, eq=False)
class _Waiter:
    cmd: LifecycleItem
    fut: asyncio.Future[Result]
    deadline: float  # monotonic: when the caller stops waiting


class LifecycleBatcher:
    """One per executor node: coalesces this node's lifecycle proposals into entries."""

    def __init__(
        self,
        propose: Propose,
        enabled: Callable[[], bool],
        *,
        max_items: int = MAX_ITEMS,
        max_bytes: int = MAX_BYTES,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._propose = propose
        self._enabled = enabled
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._monotonic = monotonic
        self._queue: deque[_Waiter] = deque()
        self._in_flight = False  # a commit of ours is out (a batch or a lone command)
        self._flush_soon = False  # a flush is scheduled for this turn of the loop
        self._gate: tuple[float, bool] | None = None  # (read at, answer)
        self._broken = False  # a whole batch was rejected: never batch again here
        self._tasks: set[asyncio.Task[None]] = set()
        # what went out: entries with more than one item, the items in them, lone commands
        self.batches = 0
        self.batched_items = 0
        self.singles = 0

    def enabled(self) -> bool:
        """Whether this node sends batches: the gate allows it (every member advertises
        level 4) and no batch was rejected as a whole."""
        if self._broken:
            return False
        now = self._monotonic()
        if self._gate is None or now - self._gate[0] >= GATE_TTL_S:
            self._gate = (now, bool(self._enabled()))
        return self._gate[1]

    async def propose(self, cmd: Command, timeout: float) -> Result:  # noqa: ASYNC109 - a deadline per proposal is the contract
        """``cmd``'s committed result (as ``RaftNode.propose``); lifecycle commands may
        share an entry with others of this node's."""
        if not isinstance(cmd, Start | Renew | Complete):
            return await self._propose(cmd, timeout)
        loop = asyncio.get_running_loop()
        waiter = _Waiter(cmd, loop.create_future(), self._monotonic() + timeout)
        self._queue.append(waiter)
        self._schedule()
        try:
            async with asyncio.timeout(timeout):
                return await waiter.fut
        except TimeoutError:
            raise ProposalTimeout(timeout) from None
        finally:
            if not waiter.fut.done():  # gave up before an answer (timeout, cancelled)
                waiter.fut.cancel()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- sending

    def _schedule(self) -> None:
        """Flush at the end of this turn of the loop (what queues in the same turn goes
        together), unless a commit is in flight: then when it is answered."""
        if self._in_flight or self._flush_soon:
            return
        self._flush_soon = True
        asyncio.get_running_loop().call_soon(self._flush)

    def _take(self) -> list[_Waiter]:
        """The next entry's items, in queue order: at most ``max_items`` and about
        ``max_bytes`` of output (always at least one); callers that gave up are dropped."""
        out: list[_Waiter] = []
        size = 0
        while self._queue and len(out) < self.max_items:
            w = self._queue[0]
            if w.fut.done():
                self._queue.popleft()
                continue
            cost = 128 + (
                len(w.cmd.output) + len(w.cmd.reason) if isinstance(w.cmd, Complete) else 0
            )
            if out and size + cost > self.max_bytes:
                break
            self._queue.popleft()
            out.append(w)
            size += cost
        return out

    def _flush(self) -> None:
        self._flush_soon = False
        if self._in_flight:
            return
        while self._queue and self._queue[0].fut.done():
            self._queue.popleft()
        if not self._queue:
            return
        batch = len(self._queue) > 1 and self.enabled()
        items = self._take() if batch else [self._queue.popleft()]
        self._in_flight = True
        task = asyncio.get_running_loop().create_task(self._send(items), name="lifecycle commit")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, items: list[_Waiter]) -> None:
        try:
            if len(items) == 1:
                await self._one(items[0])
                self.singles += 1
            elif self.enabled():
                await self._batch(items)
            else:  # the gate closed meanwhile (cannot happen: levels only grow): one by one
                await asyncio.gather(*(self._one(w) for w in items))
        finally:
            self._in_flight = False
            if self._queue:
                self._schedule()

    def _timeout(self, items: list[_Waiter]) -> float:
        left = max(w.deadline for w in items) - self._monotonic()
        return max(MIN_BATCH_TIMEOUT_S, min(MAX_BATCH_TIMEOUT_S, left))

    async def _one(self, w: _Waiter) -> None:
        try:
            res = await self._propose(w.cmd, self._timeout([w]))
        except ProposalError as exc:
            _settle_error(w, exc)
            return
        _settle(w, res)

    async def _batch(self, items: list[_Waiter]) -> None:
        cmd = Lifecycle(at_ms=max(w.cmd.at_ms for w in items), items=tuple(w.cmd for w in items))
        try:
            res = await self._propose(cmd, self._timeout(items))
        except ProposalError as exc:
            for w in items:
                _settle_error(w, exc)
            return
        self.batches += 1
        self.batched_items += len(items)
        if isinstance(res, Ok) and isinstance(res.value, tuple) and len(res.value) == len(items):
            for w, r in zip(items, res.value, strict=True):
                _settle(w, r)
            return
        # Only a bug answers a batch as a whole: nothing of it was applied (a rejection
        # before the items) or what was is answered item by item when they are proposed
        # again (each is idempotent). Stop batching on this node.
        self._broken = True
        why = res.message if isinstance(res, Rejected) else repr(res)
        for w in items:
            logger.error(
                "job=%s run=%s fence=%s node=%s: its lifecycle batch of %d was answered as a whole "
                "(%s); proposing the %s alone, no more batches from this node",
                w.cmd.run_id.split("@", 1)[0],
                w.cmd.run_id,
                w.cmd.fence,
                w.cmd.node,
                len(items),
                why,
                type(w.cmd).__name__,
            )
        await asyncio.gather(*(self._one(w) for w in items))


def _settle(w: _Waiter, res: Result) -> None:
    if not w.fut.done():
        w.fut.set_result(res)


def _settle_error(w: _Waiter, exc: ProposalError) -> None:
    if not w.fut.done():
        w.fut.set_exception(ProposalError(exc.code, str(exc)))
