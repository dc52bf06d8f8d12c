"""docs/design.md, "Durability", on a real (in-process) pysyncobj cluster of raftcron replicas.

Every node's journal goes through its own :class:`CrashableFileOps`, which knows exactly
which bytes an fsync has made durable. Two invariants are checked at the moment they
matter, on the tick threads:

* a follower's successful ack (``next_node_idx``) leaves only once every entry it
  acknowledges is durable on that follower;
* whenever a node sets a commit index, the entry at that index is durable on a majority
  of the cluster. Two of three nodes run, so the leader's own copy is needed for every
  commit: a leader that counted itself before its fsync would be caught here.

The leader sends AppendEntries before its own fsync (the fsync runs while the followers
write theirs); the control tests break each guarantee on purpose and check that the
harness notices.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pysyncobj import SyncObj
from pysyncobj.transport import TCPTransport

from raftcron.core.commands import AcquireLock, encode
from raftcron.raft.journal import _HEADER, _RECORD, CrashableFileOps
from raftcron.raft.node import Machine, RaftSettings, _Replica
from tests.helpers import free_port


def durable_entries(fs: CrashableFileOps, path: str) -> dict[int, int]:
    """{index: term} of the journal records a power cut would leave in ``path``."""
    data = fs.durable_content(path) or b""
    out: dict[int, int] = {}
    pos = _HEADER.size
    while pos + _RECORD.size <= len(data):
        length, _crc, idx, term = _RECORD.unpack_from(data, pos)
        end = pos + _RECORD.size + length
        if end > len(data):
            break
        out[idx] = term
        pos = end
    return out


@dataclass
class Checker:
    """The two invariants, checked from the tick threads; violations are collected."""

    cluster_size: int
    nodes: dict[int, tuple[CrashableFileOps, str]] = field(default_factory=dict)  # id(replica)
    violations: list[str] = field(default_factory=list)
    acks_checked: int = 0
    commits_checked: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def durable_copies(self, idx: int, term: int) -> int:
        return sum(
            1 for fs, path in self.nodes.values() if durable_entries(fs, path).get(idx) == term
        )

    def on_ack(self, replica: Any, message: dict[str, Any]) -> None:
        fs, path = self.nodes[id(replica)]
        acked = int(message["next_node_idx"]) - 1
        durable = durable_entries(fs, path)
        journal = replica.journal()
        with self.lock:
            self.acks_checked += 1
            for entry in journal[:]:
                idx, term = entry[1], entry[2]
                if 1 < idx <= acked and durable.get(idx) != term:
                    self.violations.append(f"ack of {acked} sent before entry {idx} was durable")
                    break

    def on_commit(self, replica: Any, idx: int) -> None:
        journal = replica.journal()
        term = next((e[2] for e in journal[:] if e[1] == idx), None)
        if term is None or idx <= 1:
            return  # entry 1 is every node's own initial no-op, never replicated
        copies = self.durable_copies(idx, term)
        with self.lock:
            self.commits_checked += 1
            if copies <= self.cluster_size // 2:
                self.violations.append(
                    f"commit index {idx} set with the entry durable on {copies} node(s) only"
                )


@pytest.fixture
def checked_transport(monkeypatch: pytest.MonkeyPatch) -> Iterator[Checker]:
    checker = Checker(cluster_size=3)
    plain_send = TCPTransport.send

    def send(self: Any, node: Any, message: Any) -> bool:
        # Runs after _DurableTransport.send made its decision: what leaves now is final.
        if (
            isinstance(message, dict)
            and message.get("type") == "next_node_idx"
            and message.get("success")
            and id(self._syncObj) in checker.nodes
        ):
            checker.on_ack(self._syncObj, message)
        ok: bool = plain_send(self, node, message)
        return ok

    monkeypatch.setattr(TCPTransport, "send", send)
    yield checker


def _start(
    tmp_path: Path,
    checker: Checker,
    replica_cls: type[_Replica] = _Replica,
) -> list[_Replica]:
    """Two running members of a three-node cluster (the third never starts)."""
    addrs = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    replicas: list[_Replica] = []
    for i, addr in enumerate(addrs[:2]):
        settings = RaftSettings(
            self_addr=addr,
            peers=[a for a in addrs if a != addr],
            password="test-password",
            data_dir=tmp_path / f"n{i}",
        )
        fs = CrashableFileOps()
        replica = replica_cls(settings, Machine(), lambda r: None, fs=fs)
        journal = replica.journal()
        checker.nodes[id(replica)] = (fs, journal.path)
        set_commit: Callable[[int], None] = journal.setRaftCommitIndex

        def on_commit(idx: int, replica: Any = replica, set_commit: Any = set_commit) -> None:
            checker.on_commit(replica, int(idx))
            set_commit(idx)

        journal.setRaftCommitIndex = on_commit
        replicas.append(replica)
    return replicas


@pytest.fixture
def replicas() -> Iterator[list[_Replica]]:
    built: list[_Replica] = []
    yield built
    for r in built:
        r.destroy_synchronous()


def _leader(replicas: list[_Replica], timeout: float = 10.0) -> _Replica:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for r in replicas:
            if r._isLeader() and r.isReady():
                return r
        time.sleep(0.02)
    raise AssertionError("no leader elected")


def _propose(replica: _Replica, n: int, first: int = 0) -> None:
    for i in range(first, first + n):
        cmd = AcquireLock(
            at_ms=1_000 + i, name=f"l{i}", request=f"r{i}", holder="t", ttl_ms=60_000, wait_ms=0
        )
        replica.apply_command(encode(cmd), sync=True, timeout=5)


def _run(tmp_path: Path, checker: Checker, built: list[_Replica], cls: type[_Replica]) -> None:
    built.extend(_start(tmp_path, checker, cls))
    leader = _leader(built)
    _propose(leader, 40)
    # Commands a follower forwards: the leader answers with the entry's log position
    # before its fsync (_leaves_before_sync), which must not let anything commit early.
    follower = next(r for r in built if r is not leader)
    _propose(follower, 20, first=40)


def test_nothing_acked_or_counted_before_it_is_durable(
    tmp_path: Path, checked_transport: Checker, replicas: list[_Replica]
) -> None:
    _run(tmp_path, checked_transport, replicas, _Replica)
    assert checked_transport.violations == []
    assert checked_transport.acks_checked >= 60
    assert checked_transport.commits_checked >= 60


class _LeaderCountsBeforeFsync(_Replica):
    """Control: no sync before the commit computation nor after sending (the leader's
    entries become durable only when applied, after they were counted)."""

    def _onTick(self, timeToWait: float = 0.0) -> None:
        SyncObj._onTick(self, timeToWait)

    def _checkCommandsToApply(self) -> None:
        SyncObj._checkCommandsToApply(self)


class _FollowerAcksBeforeFsync(_Replica):
    """Control: a follower's sends do not wait for its fsync."""

    def sync_journal(self) -> None:
        if self._isLeader():
            super().sync_journal()


@pytest.mark.parametrize(
    ("cls", "expected"),
    [(_LeaderCountsBeforeFsync, "commit index"), (_FollowerAcksBeforeFsync, "ack of")],
)
def test_the_checks_catch_a_broken_replica(
    tmp_path: Path,
    checked_transport: Checker,
    replicas: list[_Replica],
    cls: type[_Replica],
    expected: str,
) -> None:
    _run(tmp_path, checked_transport, replicas, cls)
    assert any(v.startswith(expected) for v in checked_transport.violations), (
        checked_transport.violations[:5]
    )
