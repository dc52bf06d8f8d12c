"""Locks, the state machine's second aggregate (see "Locks" in :mod:`raftcron.core.state`).

A lock is stored only while held; its FIFO queue of waiters rides on it. Grants take the
fence counter runs use. An acquire is keyed by its request id, and ended requests are
remembered (``lock_done``, the last ``LOCK_DONE_KEEP``) so a late or repeated proposal
never takes a lock twice. Pure: no clock, no randomness, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from raftcron.core import commands as c
from raftcron.core.ledger import (
    Ledger,
)
from raftcron.core.model import (
    LOCK_CANCELLED,
    LOCK_DONE_KEEP,
    LOCK_EXPIRED,
    LOCK_MAX_WAITERS,
    LOCK_REFUSED,
    LOCK_RELEASED,
    Lock,
    LockEnd,
    LockWaiter,
    lock_problem,
)
from raftcron.core.results import Ok, Reject, Rejected, Result


@dataclass(frozen=True, slots=True)
class LockGrant:
    """``request`` holds lock ``name`` with ``fence`` (an acquire, a renewal, a hand-over)."""

    name: str
    request: str
    fence: int
    holder: str
    ttl_ms: int
    renewals: int = 0


@dataclass(frozen=True, slots=True)
class LockQueued:
    """``request`` waits for ``name`` at ``position`` (1 = next); ``holder``/``fence`` hold it."""

    name: str
    request: str
    position: int
    holder: str
    fence: int


@dataclass(frozen=True, slots=True)
class LockEnded:
    """The holder with ``fence`` released the lock or lost it to expiry; ``granted`` is the
    head waiter that got it in the same apply. ``retry``: a repeat of a committed release."""

    name: str
    fence: int
    outcome: str
    granted: LockGrant | None
    retry: bool = False


@dataclass(frozen=True, slots=True)
class LockCancelled:
    name: str
    request: str
    was_waiting: bool


def _grant_of(lock: Lock) -> LockGrant:
    return LockGrant(lock.name, lock.request, lock.fence, lock.holder, lock.ttl_ms, lock.renewals)


def _stale_lock(name: str, fence: int, lock: Lock | None) -> Rejected:
    now = "free" if lock is None else f"held with fence {lock.fence}"
    return Rejected(
        Reject.STALE_FENCE, f"lock {name!r}: fence {fence} is not current (it is {now})"
    )


class Locks(Ledger):
    __slots__ = ()

    def _acquire_lock(self, cmd: c.AcquireLock) -> Result:
        problem = lock_problem(
            name=cmd.name,
            holder=cmd.holder,
            ttl_ms=cmd.ttl_ms,
            wait_ms=cmd.wait_ms,
            request=cmd.request,
        )
        if problem is not None:
            return Rejected(Reject.INVALID, problem)
        lock = self.locks.get(cmd.name)
        if lock is not None:
            if lock.request == cmd.request:
                return Ok(_grant_of(lock))  # a retry of the acquire that took it
            for i, w in enumerate(lock.waiters):
                if w.request == cmd.request:
                    return Ok(LockQueued(cmd.name, cmd.request, i + 1, lock.holder, lock.fence))
        done = self.lock_done.get((cmd.name, cmd.request))
        if done is not None:
            return Rejected(
                Reject.REQUEST_DONE,
                f"lock request {cmd.request!r} already ended ({done.outcome}"
                + (f", fence {done.fence})" if done.fence else ")"),
            )
        if lock is None:
            return Ok(self._grant_lock(cmd.name, cmd.request, cmd.holder, cmd.ttl_ms, ()))
        busy = f"lock {cmd.name!r} is held by {lock.holder!r} (fence {lock.fence})"
        if cmd.wait_ms == 0:
            self._lock_request_ended(cmd.request, cmd.name, 0, LOCK_REFUSED)
            return Rejected(Reject.LOCKED, busy)
        if len(lock.waiters) >= LOCK_MAX_WAITERS:
            self._lock_request_ended(cmd.request, cmd.name, 0, LOCK_REFUSED)
            return Rejected(
                Reject.QUEUE_FULL, f"{busy} and {LOCK_MAX_WAITERS} requests wait for it"
            )
        waiter = LockWaiter(
            request=cmd.request,
            holder=cmd.holder,
            ttl_ms=cmd.ttl_ms,
            wait_ms=cmd.wait_ms,
            queued_ms=self.now_ms,
        )
        self.locks[cmd.name] = replace(lock, waiters=(*lock.waiters, waiter))
        return Ok(LockQueued(cmd.name, cmd.request, len(lock.waiters) + 1, lock.holder, lock.fence))

    def _grant_lock(
        self, name: str, request: str, holder: str, ttl_ms: int, waiters: tuple[LockWaiter, ...]
    ) -> LockGrant:
        self.counters.fence += 1
        lock = Lock(
            name=name,
            fence=self.counters.fence,
            holder=holder,
            request=request,
            ttl_ms=ttl_ms,
            acquired_ms=self.now_ms,
            renewed_ms=self.now_ms,
            waiters=waiters,
        )
        self.locks[name] = lock
        return _grant_of(lock)

    def _lock_request_ended(self, request: str, name: str, fence: int, outcome: str) -> None:
        key = (name, request)
        if key in self.lock_done:
            return
        self.lock_done[key] = LockEnd(fence=fence, outcome=outcome)
        while len(self.lock_done) > LOCK_DONE_KEEP:
            del self.lock_done[next(iter(self.lock_done))]

    def _end_lock(self, lock: Lock, outcome: str) -> LockEnded:
        """The holder is gone: hand the lock to the head waiter, or free it."""
        self._lock_request_ended(lock.request, lock.name, lock.fence, outcome)
        del self.locks[lock.name]
        granted = None
        if lock.waiters:
            head, rest = lock.waiters[0], lock.waiters[1:]
            granted = self._grant_lock(lock.name, head.request, head.holder, head.ttl_ms, rest)
        return LockEnded(lock.name, lock.fence, outcome, granted)

    def _renew_lock(self, cmd: c.RenewLock) -> Result:
        lock = self.locks.get(cmd.name)
        if lock is None or lock.fence != cmd.fence:
            return self._stale(_stale_lock(cmd.name, cmd.fence, lock))
        lock = replace(lock, renewed_ms=self.now_ms, renewals=lock.renewals + 1)
        self.locks[cmd.name] = lock
        return Ok(_grant_of(lock))

    def _release_lock(self, cmd: c.ReleaseLock) -> Result:
        lock = self.locks.get(cmd.name)
        if lock is not None and lock.fence == cmd.fence:
            return Ok(self._end_lock(lock, LOCK_RELEASED))
        if cmd.fence > 0 and any(
            e.fence == cmd.fence and name == cmd.name and e.outcome == LOCK_RELEASED
            for (name, _), e in self.lock_done.items()
        ):
            return Ok(LockEnded(cmd.name, cmd.fence, LOCK_RELEASED, None, retry=True))
        return self._stale(_stale_lock(cmd.name, cmd.fence, lock))

    def _expire_lock(self, cmd: c.ExpireLock) -> Result:
        lock = self.locks.get(cmd.name)
        if lock is None or lock.fence != cmd.fence:
            # the leader's own retry, or the holder released first: not a stale writer
            return _stale_lock(cmd.name, cmd.fence, lock)
        if lock.renewals != cmd.renewals:
            return Rejected(
                Reject.RENEWED, f"lock {cmd.name!r} fence {cmd.fence} was renewed after the expiry"
            )
        return Ok(self._end_lock(lock, LOCK_EXPIRED))

    def _cancel_lock_wait(self, cmd: c.CancelLockWait) -> Result:
        lock = self.locks.get(cmd.name)
        if lock is not None:
            if lock.request == cmd.request:
                return Ok(_grant_of(lock))  # granted before the cancel: it holds the lock
            rest = tuple(w for w in lock.waiters if w.request != cmd.request)
            if len(rest) != len(lock.waiters):
                self.locks[cmd.name] = replace(lock, waiters=rest)
                self._lock_request_ended(cmd.request, cmd.name, 0, LOCK_CANCELLED)
                return Ok(LockCancelled(cmd.name, cmd.request, True))
        # Not queued (yet, or any more): remember it, so a late acquire cannot queue it.
        self._lock_request_ended(cmd.request, cmd.name, 0, LOCK_CANCELLED)
        return Ok(LockCancelled(cmd.name, cmd.request, False))
