"""How replicas talk: pysyncobj 0.3.17 quirks we correct, on a real in-process cluster.

Large entries travel in chunks; pysyncobj 0.3.17 mislabels some (see
``_Replica._rc_true_finish``). On a real in-process cluster, entries whose command length
falls just before a chunk boundary must reach every replica without a failed tick."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pysyncobj import FAIL_REASON
from pysyncobj.tcp_connection import CONNECTION_STATE

from raftcron.core.commands import AcquireLock, Renew, encode
from raftcron.core.state import Ok
from raftcron.raft.node import Machine, RaftNode, RaftSettings, _Replica
from raftcron.raft.wire import PEER_USER_TIMEOUT_MS
from tests.helpers import free_port


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[_Replica]]:
    addrs = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    built = [
        _Replica(
            RaftSettings(
                self_addr=addr,
                peers=[a for a in addrs if a != addr],
                password="test-password",
                data_dir=tmp_path / f"n{i}",
            ),
            Machine(),
            lambda r: None,
        )
        for i, addr in enumerate(addrs)
    ]
    yield built
    for r in built:
        r.destroy_synchronous()


def _wait(cond: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(cond) and cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_entries_near_a_chunk_boundary_replicate_without_a_failed_tick(
    replicas: list[_Replica], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="pysyncobj")
    leaders: list[_Replica] = []

    def elected() -> bool:
        leaders[:] = [r for r in replicas if r._isLeader() and r.isReady()]
        return bool(leaders)

    _wait(elected, "a leader")
    leader = leaders[0]
    # The pickled entry is 57 bytes longer than its command: sweep command lengths across
    # the 128 KiB boundary (the first chunk is always "start", so the first boundary where
    # it can happen is the second) so several fall in the window the bug needs (16 failed
    # ticks for this sweep before the fix).
    for k, n in enumerate(range(130_850, 131_080, 10)):
        cmd = AcquireLock(
            at_ms=1_000 + k, name="x" * n, request=f"r{k}", holder="t", ttl_ms=60_000, wait_ms=0
        )
        leader.apply_command(encode(cmd), sync=True, timeout=10)
    last = leader.raftLastApplied
    _wait(lambda: all(r.raftLastApplied >= last for r in replicas), "every replica to apply")
    failed = [r.getMessage() for r in caplog.records if "failed _onTick" in r.getMessage()]
    assert failed == []


def test_peer_connections_have_a_user_timeout(replicas: list[_Replica]) -> None:
    """Every Raft connection, opened or accepted, gives up on data the peer's kernel never
    acknowledged after PEER_USER_TIMEOUT_MS, so a healed partition is noticed at once."""

    def sockets() -> list[socket.socket]:
        out = []
        for r in replicas:
            for conn in r._SyncObj__transport._connections.values():
                sock = conn.raw_socket
                if sock is not None and conn.state == CONNECTION_STATE.CONNECTED:
                    out.append(sock)
        return out

    # each of the 3 nodes holds a connection to each of its 2 peers
    _wait(lambda: len(sockets()) == 6, "every peer connection")
    timeouts = {s.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) for s in sockets()}
    assert timeouts == {PEER_USER_TIMEOUT_MS}


class _CommitsAtOnce:
    """A replica whose every proposal commits as soon as the loop runs the callback."""

    def apply_command(self, data: bytes, callback: Any) -> None:
        callback(Ok("done"), FAIL_REASON.SUCCESS)


def test_a_proposal_cancelled_as_it_commits_is_cancelled() -> None:
    """Cancelling a proposal must cancel it even when its commit arrives in the same loop
    iteration. With asyncio.wait_for (Python 3.11) the result was returned instead, and a
    queued run's renewal loop, cancelled when the run was admitted, kept renewing forever:
    the run never started (a 10,000-job burst, and the chaos soak)."""

    async def go() -> None:
        node = RaftNode.__new__(RaftNode)
        node._replica = _CommitsAtOnce()  # type: ignore[assignment]
        node.on_committed = None
        cmd = Renew(at_ms=1, run_id="j@1", fence=1, node="a")
        task = asyncio.create_task(node.propose(cmd, 5.0))
        await asyncio.sleep(0)  # proposed; the commit's settle() is now scheduled
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
