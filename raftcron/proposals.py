"""Propose a command until it commits: the one retry loop of the API, the leader and the
executor (issue 14).

A proposal that did not commit raises ``ProposalError`` (no leader, a timeout: the
outcome is then unknown). Every command raftcron proposes is idempotent, so the answer
is to propose *the same command* again after a short pause, until it commits, the caller's
budget of time or attempts runs out (the last ``ProposalError`` is raised), or forever.
A committed rejection is an answer, not a failure: it is returned like an ``Ok``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from raftcron.core.commands import Command
from raftcron.core.results import Result
from raftcron.raft.node import ProposalError

Propose = Callable[[Command, float], Awaitable[Result]]
# Told of each attempt that did not commit: the error and the attempt's number (from 0).
OnRetry = Callable[[ProposalError, int], None]

# The shortest deadline one attempt is given when little of the budget is left.
MIN_ATTEMPT_S = 0.2


async def propose_with_retry(
    propose: Propose,
    cmd: Command,
    *,
    attempt_timeout: float,
    pause: float,
    monotonic: Callable[[], float] | None = None,
    budget: float | None = None,
    attempts: int | None = None,
    on_retry: OnRetry | None = None,
) -> Result:
    """``cmd``'s committed result. Each attempt waits at most ``attempt_timeout`` seconds
    (less when ``budget`` has less left, but at least ``MIN_ATTEMPT_S``); after one that
    did not commit, ``pause`` seconds pass before the next. ``budget`` (seconds, measured
    with ``monotonic``) and ``attempts`` bound the retries: when either runs out the last
    ``ProposalError`` is raised (a budget counts as run out when less than ``pause`` is
    left). Neither: retry until it commits."""
    if budget is not None and monotonic is None:
        raise ValueError("a budget needs a monotonic clock")
    end = None if budget is None or monotonic is None else monotonic() + budget
    attempt = 0
    while True:
        timeout = attempt_timeout
        if end is not None and monotonic is not None:
            timeout = max(MIN_ATTEMPT_S, min(attempt_timeout, end - monotonic()))
        try:
            return await propose(cmd, timeout)
        except ProposalError as exc:
            last = attempts is not None and attempt + 1 >= attempts
            if end is not None and monotonic is not None and end - monotonic() <= pause:
                last = True
            if last:
                raise
            if on_retry is not None:
                on_retry(exc, attempt)
            attempt += 1
            await asyncio.sleep(pause)
