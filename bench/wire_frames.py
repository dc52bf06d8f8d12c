"""The largest Raft frames raftcron really sends (what ``raftcron.raft.wire.MAX_FRAME`` must
stay well above), through the real wire, on 3 in-process replicas:

* a 100,000-job config sync: the leader's ``SyncConfig`` entries of 500 specs (the specs
  of ``bench.rss``);
* a 20,000-fire ``Plan`` proposed on a follower, so it is forwarded whole to the leader;
* a snapshot installed on a follower whose data directory was wiped.

Prints each entry kind's size, the snapshot's, and every replica's largest frame in and
out over the whole run (bytes on the wire: compressed when over 4 KiB, then sealed). Each
phase looks the leader up again and says if the plan was not forwarded (the proposer led
by then) or the follower caught up without a snapshot.

    .venv/bin/python -m bench.wire_frames
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from pysyncobj import FAIL_REASON

from bench.rss import BASE
from raftcron.config import job_spec_from_mapping
from raftcron.core.commands import Fire, Plan, SyncConfig, encode
from raftcron.raft.node import _Replica
from tests.unit.test_raft_port import Replicas, _addresses, _wait, transport

AT_MS = 1_767_000_000_000
_REASONS = {v: k for k, v in vars(FAIL_REASON).items() if k.isupper()}


def main() -> None:
    specs = [
        job_spec_from_mapping({"name": f"m{i:06d}", **BASE}, f"jobs[{i}]") for i in range(100_000)
    ]
    syncs = [
        encode(SyncConfig(at_ms=AT_MS, specs=tuple(specs[i : i + 500]), history=100, partial=True))
        for i in range(0, len(specs), 500)
    ]
    fires = tuple(
        Fire(job=f"m{i:06d}", scheduled_at_ms=AT_MS, node="b", trigger="schedule")
        for i in range(20_000)
    )
    plan = encode(Plan(at_ms=AT_MS, fires=fires))
    print(f"largest SyncConfig entry {max(map(len, syncs))} bytes; 20,000-fire plan {len(plan)}")
    root = Path(tempfile.mkdtemp(prefix="raftcron-frames-"))
    cluster = Replicas(root, _addresses())
    largest: dict[str, int] = {}  # "node N in/out" -> bytes, kept across the restart

    def record(i: int) -> None:
        stats = transport(cluster.live[i]).stats
        for way, size in (("in", stats.largest_in), ("out", stats.largest_out)):
            largest[f"node {i} {way}"] = max(largest.get(f"node {i} {way}", 0), size)

    def index_of(replica: _Replica) -> int:
        return next(i for i, r in cluster.live.items() if r is replica)

    try:
        for i in range(3):
            cluster.start(i)
        leader = cluster.leader()
        started = time.monotonic()
        done = threading.Semaphore(0)
        errors: Counter[str] = Counter()

        def committed(res: object, err: int) -> None:
            if err != FAIL_REASON.SUCCESS:
                errors[_REASONS.get(err, str(err))] += 1
            done.release()

        for cmd in syncs:
            leader.apply_command(cmd, callback=committed)
        for _ in syncs:
            done.acquire(timeout=120)
        print(
            f"config sync of {len(syncs)} entries on node {index_of(leader)} in "
            f"{time.monotonic() - started:.1f}s (failed: {dict(errors) or 'none'})"
        )

        leader = cluster.leader()  # it may have changed under that load
        follower = next(i for i, r in cluster.live.items() if r is not leader)
        before = transport(cluster.live[follower]).stats.largest_out
        cluster.live[follower].apply_command(plan, sync=True, timeout=60)
        sent = transport(cluster.live[follower]).stats.largest_out
        forwarded = "forwarded" if cluster.live[follower] is not cluster.leader() else "proposed"
        print(f"node {follower} {forwarded} the plan: its largest frame out {before} -> {sent}")
        last = leader.raftLastApplied
        try:
            _wait(lambda: all(r.raftLastApplied >= last for r in cluster.live.values()), "", 120)
        except AssertionError:
            for i, r in sorted(cluster.live.items()):
                st = r.getStatus()
                print(
                    f"node {i}: applied {r.raftLastApplied} of {last}, state {st['state']}, "
                    f"term {st['raft_term']}, commit {st['commit_idx']}, leader {st['leader']}"
                )
            raise

        leader = cluster.leader()
        leader.forceLogCompaction()
        _wait(
            lambda: leader._rc_store.snapshots_written >= 1 and len(leader.journal()) < 10,
            "a snapshot",
            120,
        )
        snapshot = (root / f"n{index_of(leader)}" / "snapshot.bin").stat().st_size
        first_kept = leader.journal()[0][1]
        print(f"node {index_of(leader)}'s snapshot: {snapshot} bytes, its log from {first_kept}")
        wiped = next(i for i, r in cluster.live.items() if r is not leader)
        record(wiped)
        cluster.stop(wiped)
        shutil.rmtree(root / f"n{wiped}")
        back = cluster.start(wiped)
        _wait(lambda: back.raftLastApplied >= last, "the wiped follower to catch up", 180)
        how = "a snapshot" if back.journal()[0][1] > 1 else "the whole log (no snapshot)"
        print(f"node {wiped} restarted empty and caught up from {how}")
        for i in sorted(cluster.live):
            record(i)
        leader = cluster.leader()
        for i in sorted(cluster.live):
            role = "leader" if cluster.live[i] is leader else "follower"
            print(
                f"node {i} ({role} now): largest frame in {largest[f'node {i} in']}, "
                f"out {largest[f'node {i} out']}"
            )
    finally:
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
