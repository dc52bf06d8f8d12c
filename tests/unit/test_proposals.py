"""The one propose-until-committed loop (raftcron/proposals.py) and the API's use of it:
one WRITE_TIMEOUT, one rejection-to-status map."""

from __future__ import annotations

import asyncio

import pytest

from raftcron.api.http import REJECTION_STATUS, rejected
from raftcron.core import commands as c
from raftcron.core.results import Ok, Reject, Rejected, Result
from raftcron.proposals import MIN_ATTEMPT_S, propose_with_retry
from raftcron.raft.node import ProposalError

CMD = c.Barrier(at_ms=1, node="a", nonce="n")
DONE = Ok("done")


class Flaky:
    """Fails the first ``fails`` proposals, then answers ``answer``; a fake clock that
    each failed proposal moves on by the deadline it was given."""

    def __init__(self, fails: int, answer: Result = DONE) -> None:
        self.fails = fails
        self.answer = answer
        self.timeouts: list[float] = []
        self.now = 0.0

    async def propose(self, cmd: c.Command, timeout: float) -> Result:  # noqa: ASYNC109
        assert cmd is CMD  # the same command every time
        self.timeouts.append(timeout)
        if len(self.timeouts) <= self.fails:
            self.now += timeout
            raise ProposalError("timeout", f"not within {timeout}")
        return self.answer

    def monotonic(self) -> float:
        return self.now


def test_retries_until_committed_and_reports_each_retry() -> None:
    f = Flaky(3)
    seen: list[tuple[str, int]] = []
    res = asyncio.run(
        propose_with_retry(
            f.propose,
            CMD,
            attempt_timeout=2.0,
            pause=0.0,
            on_retry=lambda e, n: seen.append((e.code, n)),
        )
    )
    assert res == Ok("done")
    assert f.timeouts == [2.0] * 4
    assert seen == [("timeout", 0), ("timeout", 1), ("timeout", 2)]


def test_a_rejection_is_an_answer_not_a_retry() -> None:
    f = Flaky(0, Rejected(Reject.STALE_FENCE, "old"))
    res = asyncio.run(propose_with_retry(f.propose, CMD, attempt_timeout=1.0, pause=0.0))
    assert res == Rejected(Reject.STALE_FENCE, "old")
    assert len(f.timeouts) == 1


def test_attempts_bound_the_retries() -> None:
    f = Flaky(10)
    with pytest.raises(ProposalError):
        asyncio.run(propose_with_retry(f.propose, CMD, attempt_timeout=1.0, pause=0.0, attempts=3))
    assert len(f.timeouts) == 3


def test_a_budget_shortens_the_last_attempts_and_ends_the_retries() -> None:
    f = Flaky(10)
    with pytest.raises(ProposalError):
        asyncio.run(
            propose_with_retry(
                f.propose,
                CMD,
                attempt_timeout=5.0,
                pause=0.0,
                monotonic=f.monotonic,
                budget=12.0,
            )
        )
    # 5 + 5, then the 2 s left; the budget is then spent
    assert f.timeouts == [5.0, 5.0, 2.0]
    g = Flaky(10)
    with pytest.raises(ProposalError):
        asyncio.run(
            propose_with_retry(
                g.propose, CMD, attempt_timeout=5.0, pause=0.0, monotonic=g.monotonic, budget=0.05
            )
        )
    assert g.timeouts == [MIN_ATTEMPT_S]


def test_a_budget_needs_a_clock() -> None:
    with pytest.raises(ValueError, match="monotonic"):
        asyncio.run(
            propose_with_retry(Flaky(0).propose, CMD, attempt_timeout=1.0, pause=0.0, budget=1.0)
        )


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (Reject.UNKNOWN_JOB, 404),
        (Reject.BAD_BACKFILL, 400),
        (Reject.BAD_DRAIN, 400),
        (Reject.INVALID, 400),
        (Reject.LOCKED, 409),
        (Reject.STALE_FENCE, 409),
        (Reject.NOT_RUNNING, 409),  # not in the map: a conflict
    ],
)
def test_one_rejection_to_status_map(code: Reject, status: int) -> None:
    problem = rejected(Rejected(code, "why"))
    assert (problem.status, problem.code, problem.message) == (status, code.value, "why")
    assert all(isinstance(k, Reject) for k in REJECTION_STATUS)
