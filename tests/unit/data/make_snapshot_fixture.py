"""Writes tests/unit/data/snapshot/: a fixed command sequence and the state it leaves.

Run with the code whose snapshot format is to be frozen (the files are committed; this
records how they were made; it was run on main at 56ea8e1, before State was split):

    .venv/bin/python tests/unit/data/make_snapshot_fixture.py tests/unit/data/snapshot

``commands.bin`` is a msgpack array of encoded commands (``raftcron.core.commands``);
``state.snapshot`` is ``State.snapshot()`` after applying them in order to a fresh State.
The sequence leaves a rich state: runs in every status (claimed with a stop request,
running, succeeded, failed, timed_out, lost, missed, skipped, paused with a count,
buffered, pending retry and dependency runs, killed), instances of a fire, a fan-in
dependency wait, a backfill in progress, job stats, a broken and a paused job, locks with
waiters and ended requests, drained members, a reconciled and per-member config hash.
tests/unit/test_snapshot_fixture.py checks that the code today reads those bytes back to
the same bytes and that replaying the commands gives them again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import msgpack

from raftcron.core import commands as c
from raftcron.core.model import (
    BUFFERED,
    CLAIMED,
    FAILED,
    KILLED,
    LOST,
    MISSED,
    PAUSED,
    PENDING,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    TIMED_OUT,
    JobSpec,
)
from raftcron.core.state import Ok, State

T0 = 1_800_000_000_000  # a minute boundary
M = 60_000


def spec(name: str, **kw: object) -> JobSpec:
    base: dict[str, object] = {"name": name, "schedule": "* * * * *", "command": ("true",)}
    base.update(kw)
    return JobSpec(**base)  # type: ignore[arg-type]


def fire(job: str, t: int, node: str = "n1", trigger: str = "schedule", **kw: int) -> c.Fire:
    return c.Fire(job=job, scheduled_at_ms=t, node=node, trigger=trigger, **kw)


def commands() -> list[c.Command]:
    """The fixed sequence (cluster time in ``at_ms`` only moves forward)."""
    t = T0
    seq: list[c.Command] = [
        c.PutJob(at_ms=t, spec=spec("a", retries=1, retry_backoff_ms=5_000, retry_other_node=True)),
        c.PutJob(at_ms=t, spec=spec("q", overlap="buffer_all")),
        c.PutJob(at_ms=t, spec=spec("s", tags=(("zone", "x"),))),
        c.PutJob(at_ms=t, spec=spec("tm", timeout_ms=1_000)),
        c.PutJob(at_ms=t, spec=spec("k", count=2, overlap="skip", max_parallel=1)),
        c.PutJob(at_ms=t, spec=spec("p")),
        c.PutJob(at_ms=t, spec=spec("child", schedule="", after=("s",))),
        c.PutJob(at_ms=t, spec=spec("fan", schedule="", after=("q", "s"), on="always")),
        c.SetPaused(at_ms=t + 1, name="p", paused=True, note="maintenance"),
        c.SyncConfig(
            at_ms=t + 2, specs=(), history=50, partial=True, delete=(), config_hash="cafe0123"
        ),
        c.ReportConfig(at_ms=t + 3, node="n1", hash="cafe0123"),
        c.ReportConfig(at_ms=t + 3, node="n2", hash="beef4567"),
    ]
    t = T0 + 2 * M
    seq.append(
        c.Plan(
            at_ms=t,
            fires=(
                fire("a", T0 + M),
                fire("q", T0 + M),
                fire("s", T0 + M, node="n2"),
                fire("tm", T0 + M),
                fire("k", T0 + M, instance=1, instances=2),
                fire("k", T0 + M, node="n2", instance=2, instances=2),
                fire("p", T0 + M),
                fire("p", T0 + 2 * M),
                fire("q", T0 + 2 * M),
                fire("s", T0 + 2 * M, node=""),  # no node: skipped, unschedulable
            ),
            missed=(
                c.Missed(job="tm", first_ms=T0 + M // 2, last_ms=T0 + M // 2, count=1, reason="x"),
            ),
        )
    )
    seq += [
        c.Start(at_ms=t + 10, run_id=f"a@{T0 + M}", fence=1, node="n1", token="ta"),
        c.Start(at_ms=t + 10, run_id=f"q@{T0 + M}", fence=2, node="n1", token="tq"),
        c.Start(at_ms=t + 10, run_id=f"s@{T0 + M}", fence=3, node="n2", token="ts"),
        c.Start(at_ms=t + 10, run_id=f"tm@{T0 + M}", fence=4, node="n1", token="tt"),
        c.Renew(at_ms=t + 20, run_id=f"q@{T0 + M}", fence=2, node="n1"),
        c.Complete(
            at_ms=t + 30,
            run_id=f"a@{T0 + M}",
            fence=1,
            node="n1",
            status=FAILED,
            exit_code=3,
            started_ms=t + 10,
            finished_ms=t + 30,
            output="boom\n",
        ),
        c.Complete(
            at_ms=t + 40,
            run_id=f"s@{T0 + M}",
            fence=3,
            node="n2",
            status=SUCCEEDED,
            exit_code=0,
            started_ms=t + 10,
            finished_ms=t + 40,
            output="ok\n" * 3,
        ),
        c.Complete(
            at_ms=t + 50,
            run_id=f"tm@{T0 + M}",
            fence=4,
            node="n1",
            status=TIMED_OUT,
            exit_code=None,
            started_ms=t + 10,
            finished_ms=t + 50,
            reason="timed out after 1s",
        ),
        c.Expire(at_ms=t + 60, run_id=f"k@{T0 + M}", fence=5, reason="lease expired"),
        c.Kill(at_ms=t + 70, run_id=f"k@{T0 + M}~2", reason="operator", hard=True),
    ]
    t = T0 + 3 * M
    seq += [
        c.Plan(at_ms=t, fires=(fire("q", T0 + 3 * M), fire("p", T0 + 3 * M))),
        c.Kill(at_ms=t + 1, run_id=f"q@{T0 + 3 * M}", reason="not needed"),
        c.StartBackfill(
            at_ms=t + 2, job="s", id="bf1", from_ms=T0 - 10 * M, to_ms=T0 - M, rate=0.5
        ),
        c.Plan(at_ms=t + 3, fires=(fire("s", T0 - 10 * M, trigger="backfill"),)),
        c.MarkBroken(at_ms=t + 4, job="tm", updated_ms=T0, reason="bad schedule"),
        c.AcquireLock(at_ms=t + 5, name="db", request="r1", holder="h1", ttl_ms=30_000, wait_ms=0),
        c.AcquireLock(
            at_ms=t + 6, name="db", request="r2", holder="h2", ttl_ms=20_000, wait_ms=60_000
        ),
        c.AcquireLock(at_ms=t + 7, name="db", request="r3", holder="h3", ttl_ms=20_000, wait_ms=0),
        c.AcquireLock(at_ms=t + 8, name="tmp", request="r4", holder="h4", ttl_ms=10_000, wait_ms=0),
        c.ReleaseLock(at_ms=t + 9, name="tmp", fence=9),
        c.RenewLock(at_ms=t + 10, name="db", fence=8),
        c.Drain(at_ms=t + 11, node="n3", drain=True),
        c.Drain(at_ms=t + 12, node="n4", drain=True, kind="shutdown"),
        c.Barrier(at_ms=t + 13, node="n1", nonce="x"),
    ]
    return seq


def build() -> tuple[list[bytes], State]:
    st = State()
    encoded = [c.encode(cmd) for cmd in commands()]
    for data in encoded:
        cmd, res = st.apply_bytes(data)
        # one refusal on purpose: r3 asks for the held lock "db" without waiting
        assert isinstance(res, Ok) or getattr(cmd, "request", "") == "r3", (cmd, res)
    return encoded, st


def main(out: Path) -> None:
    encoded, st = build()
    statuses = {r.status for r in st.runs.values()}
    every = {
        CLAIMED,
        RUNNING,
        SUCCEEDED,
        FAILED,
        TIMED_OUT,
        LOST,
        MISSED,
        SKIPPED,
        PAUSED,
        BUFFERED,
        PENDING,
        KILLED,
    }
    assert statuses == every, sorted(every - statuses)
    assert any(lz.kill_hard for lz in st.leases.values())
    assert any(j.waiting for j in st.jobs.values()) and any(j.deps for j in st.jobs.values())
    assert any(j.retry for j in st.jobs.values()) and any(j.buffered for j in st.jobs.values())
    assert st.jobs["s"].backfill is not None and st.jobs["s"].backfill.done == 1
    assert st.jobs["tm"].broken and st.jobs["p"].paused
    assert any(r.count > 1 for r in st.runs.values() if r.status == PAUSED)
    assert st.locks["db"].waiters and st.lock_done and st.drained and st.member_hashes
    out.mkdir(parents=True, exist_ok=True)
    (out / "commands.bin").write_bytes(msgpack.packb(encoded, use_bin_type=True))
    (out / "state.snapshot").write_bytes(st.snapshot())
    print(st.digest())


if __name__ == "__main__":
    main(Path(sys.argv[1]))
