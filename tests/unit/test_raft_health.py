"""Health that tells the truth, in the Raft adapter (issue 12 item 4, issue 13 item 1).

The pure helpers (apply lag in time, when a leader last heard from a majority, the one
line a storage failure becomes) are tables; then a real in-process cluster of three
:class:`RaftNode` s shows: a leader whose tick thread stalls stops being a fresh leader
although pysyncobj's flag still says leader; leadership transfer hands it to the member
named; and a follower whose journal cannot be written fails at once, with no traceback
per tick, while the others go on.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from raftcron.core.commands import AcquireLock
from raftcron.raft.health import (
    _REPLICATION_POINTS,
    ApplyLag,
    ReplicationLag,
    quorum_heard_at,
    storage_failure,
)
from raftcron.raft.journal import DurableJournal, FileOps
from raftcron.raft.node import Machine, ProposalError, RaftNode, RaftSettings
from tests.helpers import free_port

# --------------------------------------------------------------------------- pure


def test_apply_lag_is_measured_in_time_not_entries() -> None:
    lag = ApplyLag()
    assert lag.observe(10.0, None, 0) is None  # no leader heard of yet
    assert lag.observe(10.0, 5, 5) is None  # caught up
    assert lag.observe(11.0, 8, 5) == 11.0  # behind since the leader's 8 was heard of
    assert lag.observe(12.0, 1000, 6) == 11.0  # many entries more: still since 11.0
    assert lag.observe(13.0, 1000, 8) == 12.0  # 8 applied: behind since 1000 was heard of
    assert lag.observe(14.0, 1000, 1000) is None
    assert lag.observe(20.0, 1001, 1000) == 20.0


def test_apply_lag_ignores_a_leader_commit_that_goes_back() -> None:
    lag = ApplyLag()
    assert lag.observe(1.0, 10, 4) == 1.0
    assert lag.observe(2.0, 7, 4) == 1.0  # a new leader's first heartbeat: nothing new
    assert lag.observe(3.0, 7, 10) is None


def test_replication_lag_is_the_age_of_the_oldest_unacknowledged_commit() -> None:
    lag = ReplicationLag()
    # takeover in term 3 at commit 10: b has it all, c has 4 (behind since the takeover)
    assert lag.observe(100.0, 3, 10, [("b", 10), ("c", 4)]) == (("c", 100.0),)
    assert lag.observe(101.0, 3, 12, [("b", 12), ("c", 4)]) == (("c", 100.0),)
    # b misses 13 and 14 (committed by c): behind since 13 was first seen committed
    assert lag.observe(102.0, 3, 13, [("b", 12), ("c", 13)]) == (("b", 102.0),)
    assert lag.observe(103.0, 3, 14, [("b", 12), ("c", 14)]) == (("b", 102.0),)
    # b acknowledged 13: the oldest it lacks is 14, committed at 103
    assert lag.observe(104.0, 3, 14, [("b", 13), ("c", 14)]) == (("b", 103.0),)
    # a match above the commit index (uncommitted entries) is not behind
    assert lag.observe(105.0, 3, 14, [("b", 15), ("c", 15)]) == ()
    # a new term knows no older commit times: counted from its first tick
    assert lag.observe(200.0, 4, 20, [("b", 0), ("c", 20)]) == (("b", 200.0),)
    lag.reset()  # stepped down
    assert lag.observe(300.0, 4, 21, [("b", 3)]) == (("b", 300.0),)


def test_replication_lag_stays_bounded_with_a_dead_follower() -> None:
    lag = ReplicationLag()
    now = 0.0
    for commit in range(1, 5 * _REPLICATION_POINTS):
        now += 0.01
        got = dict(lag.observe(now, 1, commit, [("dead", 0), ("live", commit - 1)]))
        assert got["dead"] == 0.01  # exact: the oldest point is never dropped
        assert got["live"] == pytest.approx(now)  # exact: the newest neither
    assert len(lag._points) <= _REPLICATION_POINTS + 1


@pytest.mark.parametrize(
    ("answered", "size", "want"),
    [
        ([], 1, 100.0),  # a single node is its own majority
        ([], 3, None),  # nobody answered this term yet
        ([99.5], 3, 99.5),
        ([99.5, 98.0], 3, 99.5),  # one follower is enough in a cluster of three
        ([99.5], 5, None),
        ([99.5, 97.0, 98.0], 5, 98.0),  # two followers needed: the second most recent
        ([90.0, 99.0, 95.0, 80.0], 5, 95.0),
    ],
)
def test_quorum_heard_at(answered: list[float], size: int, want: float | None) -> None:
    assert quorum_heard_at(100.0, answered, size) == want


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        (errno.ENOSPC, "free space on the filesystem of /d/raft"),
        (errno.EROFS, "remount it read-write"),
        (errno.EIO, "reports I/O errors"),
        (errno.EACCES, "let the agent's user write /d/raft"),
    ],
)
def test_a_storage_failure_is_one_line_with_the_file_and_the_fix(code: int, fix: str) -> None:
    line = storage_failure("journal", "/d/raft/raft.journal", OSError(code, "boom"))
    assert line.startswith("journal /d/raft/raft.journal: boom (")
    assert fix in line and line.endswith("then start the agent again")
    assert "\n" not in line


# --------------------------------------------------------------------------- in-process cluster


async def _until(what: str, cond: Callable[[], Any], within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@asynccontextmanager
async def cluster(tmp_path: Path) -> AsyncIterator[list[RaftNode]]:
    addrs = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    nodes = [
        RaftNode(
            RaftSettings(
                self_addr=addr,
                peers=[a for a in addrs if a != addr],
                password="test-password-0123456789",
                data_dir=tmp_path / f"n{i}",
            ),
            Machine(),
        )
        for i, addr in enumerate(addrs)
    ]
    for n in nodes:
        n.start()
    try:
        yield nodes
    finally:
        for n in nodes:
            n.stop()


def _leader(nodes: list[RaftNode]) -> RaftNode | None:
    found = [n for n in nodes if n.status.is_leader and n.status.ready]
    return found[0] if len(found) == 1 else None


def _lock(k: int) -> AcquireLock:
    return AcquireLock(at_ms=k, name=f"l{k}", request=f"r{k}", holder="t", ttl_ms=60_000, wait_ms=0)


def test_a_stalled_leader_is_not_a_fresh_leader(tmp_path: Path) -> None:
    """pysyncobj's leader flag is only updated on its tick thread: with that thread stuck
    (the raft-port attack of issue 13 did it), the flag stays set while the others elect
    a new leader. Freshness (a majority heard within an election timeout) does not."""

    async def go() -> None:
        async with cluster(tmp_path) as nodes:
            leader = await _until("a leader", lambda: _leader(nodes))
            await _until("a fresh leader", leader.leader_fresh)
            assert not any(n.leader_fresh() for n in nodes if n is not leader)
            replica: Any = leader._replica
            release = threading.Event()
            real = replica._onTick

            def stuck(timeToWait: float = 0.0) -> None:
                release.wait(30)
                real(timeToWait)

            replica._onTick = stuck
            try:
                await _until("the stalled leader to be stale", lambda: not leader.leader_fresh())
                assert leader.status.is_leader  # the flag alone would still say leader
                others = [n for n in nodes if n is not leader]
                await _until("a new leader among the others", lambda: _leader(others))
            finally:
                release.set()
            await _until("the old leader to step down", lambda: not leader.status.is_leader)

    asyncio.run(go())


def test_leadership_moves_to_the_member_named(tmp_path: Path) -> None:
    async def go() -> None:
        async with cluster(tmp_path) as nodes:
            leader = await _until("a leader", lambda: _leader(nodes))
            for k in range(5):
                await leader.propose(_lock(k), 5.0)
            target = next(n for n in nodes if n is not leader)
            new = await leader.transfer_leadership(target.settings.self_addr, 10.0)
            assert new == target.settings.self_addr
            await _until("the target to lead", lambda: _leader(nodes) is target)
            # a follower cannot hand over what it does not have
            with pytest.raises(ProposalError) as info:
                await leader.transfer_leadership(None, 2.0)
            assert info.value.code == "not_leader"
            # nor can leadership go to a stranger
            with pytest.raises(ProposalError) as info:
                await target.transfer_leadership("127.0.0.1:1", 2.0)
            assert info.value.code == "denied"

    asyncio.run(go())


def test_a_transfer_under_load_lands_on_the_member_named(tmp_path: Path) -> None:
    """Proposals keep coming while leadership is handed over: the leader appends nothing
    after its TimeoutNow (until it steps down), so the target's log is as long as every
    voter's and it wins. (pysyncobj appended on: a third member could win instead.)
    What was proposed meanwhile commits under the new leader."""

    async def go() -> None:
        async with cluster(tmp_path) as nodes:
            await _until("a leader", lambda: _leader(nodes))
            stop = asyncio.Event()
            done: list[int] = []

            async def load() -> None:
                k = 0
                while not stop.is_set():
                    leader = _leader(nodes)
                    if leader is None:
                        await asyncio.sleep(0.005)
                        continue
                    k += 1
                    try:
                        await leader.propose(_lock(k), 10.0)
                        done.append(k)
                    except ProposalError:
                        await asyncio.sleep(0.005)

            loads = [asyncio.create_task(load()) for _ in range(4)]
            try:
                for turn in range(6):
                    leader = await _until("a leader", lambda: _leader(nodes))
                    others = [n for n in nodes if n is not leader]
                    target = others[turn % 2]
                    before = len(done)
                    await _until("load on the leader", lambda b=before: len(done) > b + 20)
                    new = await leader.transfer_leadership(target.settings.self_addr, 10.0)
                    assert new == target.settings.self_addr, f"turn {turn}: went to {new}"
                    await _until("the target to lead", lambda t=target: _leader(nodes) is t)
            finally:
                stop.set()
                await asyncio.gather(*loads)
            assert len(done) > 100

    asyncio.run(go())


class _FullDisk(FileOps):
    """Every write fails the way a full filesystem makes it fail."""

    def write(self, fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_follower_that_cannot_write_its_journal_fails_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def go() -> None:
        async with cluster(tmp_path) as nodes:
            leader = await _until("a leader", lambda: _leader(nodes))
            follower = next(n for n in nodes if n is not leader)
            replica: Any = follower._replica
            journal = replica.journal()
            assert isinstance(journal, DurableJournal)
            journal._fs = _FullDisk()
            for k in range(20):
                await leader.propose(_lock(k), 5.0)  # the other two still commit
            reason = await _until("the follower to fail", follower.fatal)
            assert reason.startswith(f"journal {journal.path}: No space left on device (ENOSPC)")
            assert "free space on the filesystem of" in reason
            applied = follower.status.last_applied
            for k in range(20, 40):
                await leader.propose(_lock(k), 5.0)
            other = next(n for n in nodes if n is not leader and n is not follower)
            target = leader.status.commit_index
            await _until("the healthy follower to apply them",
                         lambda: other.status.last_applied >= target)  # fmt: skip
            assert follower.status.last_applied == applied  # it takes no further part

    asyncio.run(go())
    storm = [r for r in caplog.records if "failed _onTick" in r.getMessage() or r.exc_info]
    assert storm == []


def test_a_follower_that_cannot_apply_reports_its_lag_in_time(tmp_path: Path) -> None:
    async def go() -> None:
        async with cluster(tmp_path) as nodes:
            leader = await _until("a leader", lambda: _leader(nodes))
            follower = next(n for n in nodes if n is not leader)
            await leader.propose(_lock(0), 5.0)
            await _until("the follower to catch up", lambda: follower.apply_lag() == 0.0)
            release = threading.Event()
            real = follower.machine.apply

            def slow(data: bytes) -> Any:
                release.wait(30)
                return real(data)

            follower.machine.apply = slow  # type: ignore[method-assign]
            try:
                await leader.propose(_lock(1), 5.0)  # commits with the third node
                await _until("a lag of 1.5 s", lambda: follower.apply_lag() > 1.5)
                assert leader.apply_lag() == 0.0
            finally:
                release.set()
            await _until("the lag to end", lambda: follower.apply_lag() == 0.0)

    asyncio.run(go())
