"""Writes tests/unit/data/v0.1.0/: a Raft data directory as raftcron v0.1.0 leaves it.

Run with v0.1.0's code (the files are committed; this records how they were made):

    git archive v0.1.0 | tar -x -C /tmp/v010 && make -C /tmp/v010 install
    /tmp/v010/.venv/bin/python tests/unit/data/make_v0_1_0.py tests/unit/data/v0.1.0

A single node applies 40 lock acquisitions (l0..l39): a snapshot after the first 30, the
last 10 only in the journal, so loading it takes both a snapshot restore and a replay of
pickled pysyncobj entries.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from raftcron.core.commands import AcquireLock, encode
from raftcron.raft.node import Machine, RaftSettings, _Replica


def wait(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def main(out: Path) -> None:
    work = out.with_name(out.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    settings = RaftSettings(
        self_addr="127.0.0.1:7999",
        peers=[],
        password="test-secret-0123456789abcdef",
        data_dir=work,
        compaction_min_entries=10**9,
        compaction_min_time=10**9,
    )
    replica = _Replica(settings, Machine(), lambda r: None)
    wait(lambda: replica._isLeader() and replica.isReady(), "leadership")
    for i in range(40):
        cmd = AcquireLock(
            at_ms=1_000 + i, name=f"l{i}", request=f"r{i}", holder="v010", ttl_ms=600_000, wait_ms=0
        )
        replica.apply_command(encode(cmd), sync=True, timeout=10)
        if i == 29:
            replica.forceLogCompaction()
            wait(lambda: replica._rc_store.snapshots_written >= 1, "the snapshot")
    replica.destroy_synchronous()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for name in ("raft.journal", "raft.journal.meta", "snapshot.bin"):
        shutil.copy(work / name, out / name)
    shutil.rmtree(work)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
