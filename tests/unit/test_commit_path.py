"""The commit path (docs/design.md, "The commit path"): a follower acknowledges what one
poll brought after one fsync, never before it.

The ack part drives :class:`_DurableTransport`'s holding directly, and then a real
two-of-three cluster with concurrent proposals under the durability checker of
``test_raft_durability.py`` (every ack leaves only once what it acknowledges is durable;
every commit index is durable on a majority).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from raftcron.core.commands import AcquireLock, encode
from raftcron.raft.journal import DurableJournal, JournalError
from raftcron.raft.node import (
    _DurableTransport,
    _Replica,
)
from raftcron.raft.wire import GuardedTransport
from tests.unit.test_raft_durability import (  # noqa: F401 - fixtures
    Checker,
    _leader,
    _start,
    checked_transport,
    replicas,
)

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _command(i: int) -> bytes:
    return encode(
        AcquireLock(
            at_ms=1_000 + i, name=f"l{i}", request=f"r{i}", holder="t", ttl_ms=60_000, wait_ms=0
        )
    )


class _Syncs:
    """A replica as the transport sees it: records fsyncs (or fails them)."""

    def __init__(self, events: list[Any], fail: bool = False) -> None:
        self.events = events
        self.fail = fail

    def sync_journal(self) -> None:
        if self.fail:
            raise JournalError("disk gone")
        self.events.append("sync")


def _transport(monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> tuple[Any, list[Any]]:
    events: list[Any] = []

    def send(self: Any, node: Any, message: Any) -> bool:
        events.append((node, message["type"], message.get("next_node_idx")))
        return True

    monkeypatch.setattr(GuardedTransport, "send", send)
    t = _DurableTransport.__new__(_DurableTransport)
    t._syncObj = _Syncs(events, fail)
    return t, events


def _ack(n: int) -> dict[str, Any]:
    return {"type": "next_node_idx", "next_node_idx": n, "reset": False, "success": True}


def test_held_acks_leave_after_one_fsync_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    t, events = _transport(monkeypatch)
    t.send("a", _ack(3))  # not holding: fsync, then the ack
    assert events == ["sync", ("a", "next_node_idx", 3)]
    events.clear()
    t.hold_acks()
    t.send("a", _ack(4))
    t.send("a", _ack(6))
    assert events == []  # nothing left, nothing synced yet
    t.release_acks()
    assert events == ["sync", ("a", "next_node_idx", 4), ("a", "next_node_idx", 6)]
    events.clear()
    t.release_acks()  # nothing held: no fsync
    assert events == []


def test_anything_else_waits_for_the_held_acks(monkeypatch: pytest.MonkeyPatch) -> None:
    t, events = _transport(monkeypatch)
    t.hold_acks()
    t.send("a", _ack(4))
    t.send("a", {"type": "request_vote", "term": 3})
    t.send("a", {"type": "append_entries", "term": 3})  # a leader's: leaves before a sync
    assert events == [
        "sync",
        ("a", "next_node_idx", 4),
        "sync",
        ("a", "request_vote", None),
        ("a", "append_entries", None),
    ]


def test_held_acks_never_leave_when_the_fsync_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    t, events = _transport(monkeypatch, fail=True)
    t.hold_acks()
    t.send("a", _ack(4))
    with pytest.raises(JournalError):
        t.release_acks()
    assert events == []


def test_concurrent_proposals_are_durable_before_acked_or_counted(
    tmp_path: Path,
    checked_transport: Checker,  # noqa: F811 - the fixture imported above
    replicas: list[_Replica],  # noqa: F811
) -> None:
    """Many proposals in flight at once (the group-commit case) on a real cluster: the
    durability checker sees every ack and every commit index; all commit; and the
    followers synced fewer times than they appended entries."""
    replicas.extend(_start(tmp_path, checked_transport))
    leader = _leader(replicas)
    follower = next(r for r in replicas if r is not leader)
    journal = follower.journal()
    assert isinstance(journal, DurableJournal)
    syncs_before = journal.fsync_count
    n = 200
    done = threading.Semaphore(0)
    errors: list[int] = []

    def callback(res: Any, err: int) -> None:
        if err != 0:
            errors.append(err)
        done.release()

    for i in range(n):
        leader.apply_command(_command(i), callback=callback)
    for _ in range(n):
        assert done.acquire(timeout=30)
    assert errors == []
    assert checked_transport.violations == []
    assert checked_transport.acks_checked >= 1
    assert checked_transport.commits_checked >= 1
    assert journal.fsync_count - syncs_before < n // 2
