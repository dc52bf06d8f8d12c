"""The snapshot codec of the state machine: one canonical msgpack map, rows sorted by key.

The bytes are a format: a snapshot written by an older release is read by this one, and
the same state encodes to the same bytes (``State.digest`` compares replicas with them;
tests/unit/test_snapshot_fixture.py holds a snapshot written before this module existed).
Optional trailing fields of a row are written only up to the last one that is set, and
optional keys of the map only when not empty, so a state that does not use a feature
encodes exactly as before the feature existed. Pure: no clock, no I/O.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, Final

import msgpack

from raftcron.core import commands as c
from raftcron.core.ledger import (
    Ledger,
)
from raftcron.core.model import (
    Armed,
    Backfill,
    Counters,
    DependencyWait,
    DrainMark,
    Job,
    JobStats,
    Lease,
    Lock,
    LockEnd,
    LockWaiter,
    MemberChange,
    PendingRetry,
    Run,
)

SNAPSHOT_VERSION: Final = 1


_RUN_FIELDS: Final = (
    "id",
    "job",
    "scheduled_at_ms",
    "status",
    "trigger",
    "attempt",
    "fence",
    "node",
    "claimed_ms",
    "started_ms",
    "finished_ms",
    "exit_code",
    "output",
    "reason",
    "count",
    "start_token",
    "last_scheduled_ms",
    "parents",
    "instance",
    "instances",
)


# Trailing run fields written only up to the last one that is not its default (``count``
# and earlier are always written), so runs without them encode as before they existed.
_RUN_OPTIONAL: Final = (
    ("last_scheduled_ms", None),
    ("parents", ()),
    ("instance", 1),
    ("instances", 1),
)


_BACKFILL_FIELDS: Final = (
    "id",
    "from_ms",
    "to_ms",
    "cursor_ms",
    "total",
    "done",
    "rate",
    "last_ms",
    "requested_ms",
)


_LEASE_FIELDS: Final = (
    "key",
    "fence",
    "holder",
    "lease_ms",
    "granted_ms",
    "renewals",
    "kill",
    "kill_hard",
)


_LEASE_DEFAULTS: Final = ("", False)  # of the trailing fields, written only when set


_RETRY_FIELDS: Final = ("run", "scheduled_at_ms", "attempt", "due_ms", "avoid", "instance")


_LOCK_FIELDS: Final = (
    "name",
    "fence",
    "holder",
    "request",
    "ttl_ms",
    "acquired_ms",
    "renewed_ms",
    "renewals",
)


_WAITER_FIELDS: Final = ("request", "holder", "ttl_ms", "wait_ms", "queued_ms")


def _run_row(run: Run) -> list[Any]:
    row = [getattr(run, f) for f in _RUN_FIELDS]
    row[_RUN_FIELDS.index("parents")] = list(run.parents)
    for name, default in reversed(_RUN_OPTIONAL):
        if getattr(run, name) != default:
            break
        row.pop()
    return row


def _retry_row(p: PendingRetry) -> list[Any]:
    row = [getattr(p, f) for f in _RETRY_FIELDS]
    if p.instance == 1:
        row.pop()  # rows of a job without count encode as before it existed
    return row


def _lease_row(lz: Lease) -> list[Any]:
    row = [getattr(lz, f) for f in _LEASE_FIELDS]
    if (lz.kill, lz.kill_hard) == _LEASE_DEFAULTS:
        del row[-2:]  # rows without a stop request encode as before it existed
    return row


def _job_row(j: Job) -> list[Any]:
    row: list[Any] = [
        c.spec_to_wire(j.spec),
        j.source,
        j.paused,
        j.watermark_ms,
        j.created_ms,
        j.updated_ms,
    ]
    # optional trailing fields: written up to the last one that is set
    tail: list[Any] = [
        j.pause_note,
        [list(b) for b in j.buffered],
        [_retry_row(p) for p in j.retry],
        None if j.backfill is None else [getattr(j.backfill, f) for f in _BACKFILL_FIELDS],
        [list(d) for d in j.deps],
        [[w.scheduled_at_ms, w.variant, [list(x) for x in w.settled]] for w in j.waiting],
        j.broken,
        j.broken_ms,
        _stats_row(j.stats),
    ]
    while tail and not tail[-1]:
        tail.pop()
    return row + tail


def _stats_row(st: JobStats) -> list[Any]:
    """``[]`` (not written: the row's last field) until the job has stats."""
    if st == JobStats():
        return []
    return [st.outcome, st.finished_ms, st.duration_ms, st.success_ms]


def _stats_of_row(row: list[Any]) -> JobStats:
    outcome, finished, duration, success = row[:4]
    return JobStats(
        outcome=str(outcome),
        finished_ms=int(finished),
        duration_ms=None if duration is None else int(duration),
        success_ms=int(success),
    )


def _encode_snapshot(
    scalars: tuple[int, int],
    jobs: Iterable[Job],
    runs: Iterable[Run],
    history: dict[str, tuple[str, ...]],
    leases: Iterable[Lease],
    counters: tuple[int, int, int, dict[str, int]],
    locks: Iterable[Lock] = (),
    lock_done: Iterable[tuple[tuple[str, str], LockEnd]] = (),
    drained: Iterable[tuple[str, DrainMark]] = (),
    config: tuple[str, dict[str, str], dict[str, tuple[str, int]]] = ("", {}, {}),
    cluster_id: str = "",
    membership: list[Any] | None = None,
    armed: Iterable[Armed] = (),
) -> bytes:
    """The canonical encoding of the state: one msgpack map, rows sorted by key.

    Packed row by row into one buffer: the bytes are those of ``msgpack.packb`` on the
    whole map, but no second copy of the state is built as Python lists first (with
    100,000 jobs that copy was 2.4 times the state at its peak).
    """
    out = io.BytesIO()
    packer = msgpack.Packer(use_bin_type=True)

    def array(rows: Iterable[Any], n: int) -> None:
        out.write(packer.pack_array_header(n))
        for row in rows:
            out.write(packer.pack(row))

    job_list = sorted(jobs, key=lambda j: j.spec.name)
    run_list = sorted(runs, key=lambda r: r.id)
    lease_list = sorted(leases, key=lambda lz: lz.key)
    lock_list = sorted(locks, key=lambda lk: lk.name)
    done_list = list(lock_done)  # insertion order (oldest first) is state: it decides
    drain_list = sorted(drained)
    armed_list = sorted(armed, key=lambda a: a.run_id)
    # "drained" is the last key, written only when a member is drained: a state without
    # one encodes exactly as before drains existed (older nodes read it; digests agree)
    # "config" likewise, after it: written only once a hash was reconciled or reported
    # (its third item, the members' versions and levels, only once one advertised: nodes
    # from before levels read the first two)
    has_config = bool(config[0] or config[1] or config[2])
    # "cluster_id" likewise, last: written only once the cluster has an id (a restore)
    # "members" likewise: written only once the membership is seeded
    # "armed" likewise, last: written only while a fire is armed (feature level 5)
    out.write(
        packer.pack_map_header(
            10
            + bool(drain_list)
            + has_config
            + bool(cluster_id)
            + bool(membership)
            + bool(armed_list)
        )
    )
    for key, value in (("v", SNAPSHOT_VERSION), ("now", scalars[0])):
        out.write(packer.pack(key) + packer.pack(value))
    out.write(packer.pack("history_limit") + packer.pack(scalars[1]))
    out.write(packer.pack("jobs"))
    array(map(_job_row, job_list), len(job_list))
    out.write(packer.pack("runs"))
    array(map(_run_row, run_list), len(run_list))
    out.write(packer.pack("history"))
    out.write(packer.pack_map_header(len(history)))
    for k in sorted(history):
        out.write(packer.pack(k) + packer.pack(list(history[k])))
    out.write(packer.pack("leases"))
    array(map(_lease_row, lease_list), len(lease_list))
    out.write(packer.pack("counters"))
    out.write(
        packer.pack([counters[0], counters[1], counters[2], dict(sorted(counters[3].items()))])
    )
    out.write(packer.pack("locks"))
    lock_rows = (
        [
            *(getattr(lk, f) for f in _LOCK_FIELDS),
            [[getattr(w, f) for f in _WAITER_FIELDS] for w in lk.waiters],
        ]
        for lk in lock_list
    )
    array(lock_rows, len(lock_list))
    out.write(packer.pack("lock_done"))
    array(([k[0], k[1], e.fence, e.outcome] for k, e in done_list), len(done_list))
    if drain_list:
        out.write(packer.pack("drained"))
        array(([n, m.kind, m.since_ms] for n, m in drain_list), len(drain_list))
    if has_config:
        out.write(packer.pack("config"))
        row: list[Any] = [config[0], [[n, config[1][n]] for n in sorted(config[1])]]
        if config[2]:
            row.append([[n, *config[2][n]] for n in sorted(config[2])])
        out.write(packer.pack(row))
    if cluster_id:
        out.write(packer.pack("cluster_id") + packer.pack(cluster_id))
    if membership:
        out.write(packer.pack("members") + packer.pack(membership))
    if armed_list:
        out.write(packer.pack("armed"))
        array(([getattr(a, f) for f in _ARMED_FIELDS] for a in armed_list), len(armed_list))
    return out.getvalue()


_ARMED_FIELDS: Final = ("run_id", "job", "scheduled_at_ms", "node", "fence", "armed_ms", "token")
_CHANGE_FIELDS: Final = ("op", "name", "raft", "request", "since_ms", "done")


def membership_row(st: Ledger) -> list[Any] | None:
    """``[members, removed, change or nil, serial]`` (members and removed as
    :func:`raftcron.core.commands.member_to_wire` rows, by name), None before the seed."""
    if not st.members:
        return None
    change = st.member_change
    return [
        [c.member_to_wire(st.members[n]) for n in sorted(st.members)],
        [c.member_to_wire(st.removed[n]) for n in sorted(st.removed)],
        None if change is None else [getattr(change, f) for f in _CHANGE_FIELDS],
        st.member_serial,
    ]


def _restore_membership(st: Ledger, value: list[Any]) -> None:
    members, removed, change, serial = value[:4]
    st.members = {m.name: m for m in map(c.member_from_wire, members)}
    st.removed = {m.name: m for m in map(c.member_from_wire, removed)}
    st.member_change = (
        None if change is None else MemberChange(**dict(zip(_CHANGE_FIELDS, change, strict=True)))
    )
    st.member_serial = int(serial)


def capture(st: Ledger) -> Callable[[], bytes]:
    """Copy the containers (cheap, O(n) pointer copies) and return the encoder.

    Call on the thread that applies commands; run the returned closure anywhere.
    """
    scalars = (st.now_ms, st.history_limit)
    jobs = list(st.jobs.values())
    runs = list(st.runs.values())
    history = dict(st.history)
    leases = list(st.leases.values())
    locks = list(st.locks.values())
    lock_done = list(st.lock_done.items())
    drained = list(st.drained.items())
    config = (st.config_hash, dict(st.member_hashes), dict(st.member_versions))
    cluster_id = st.cluster_id
    membership = membership_row(st)
    armed = list(st.armed.values())
    counters = (
        st.counters.fence,
        st.counters.stale_rejections,
        st.counters.runs_recorded,
        dict(st.counters.extra),
    )

    def encode() -> bytes:
        return _encode_snapshot(
            scalars,
            jobs,
            runs,
            history,
            leases,
            counters,
            locks,
            lock_done,
            drained,
            config,
            cluster_id,
            membership,
            armed,
        )

    return encode


def restore_into(st: Ledger, data: bytes) -> None:
    """Decode a snapshot. Job and run rows are unpacked one at a time, so no second
    copy of the whole state exists as Python lists while it is restored."""
    unpacker = msgpack.Unpacker(
        io.BytesIO(data), raw=False, strict_map_key=False, max_buffer_size=len(data) + 1
    )
    version = None
    for _ in range(unpacker.read_map_header()):
        key = unpacker.unpack()
        if key in ("jobs", "runs"):
            rows = (unpacker.unpack() for _ in range(unpacker.read_array_header()))
            for row in rows:
                if key == "jobs":
                    _restore_job(st, row)
                else:
                    run = Run(**dict(zip(_RUN_FIELDS, row, strict=False)))  # old: 16
                    if not isinstance(run.parents, tuple):  # (a list when written)
                        run = replace(run, parents=tuple(run.parents))
                    st.runs[run.id] = run
            continue
        value = unpacker.unpack()
        match key:
            case "v":
                version = value
                if version != SNAPSHOT_VERSION:
                    raise ValueError(f"unsupported snapshot version {version!r}")
            case "now":
                st.now_ms = int(value)
            case "history_limit":
                st.history_limit = int(value)
            case "history":
                st.history = {k: tuple(v) for k, v in value.items()}
            case "leases":
                for lz in value:
                    lease = Lease(**dict(zip(_LEASE_FIELDS, lz, strict=False)))  # old: 5
                    st.leases[lease.key] = lease
            case "counters":
                fence, stale, recorded, extra = value
                st.counters = Counters(
                    fence=fence, stale_rejections=stale, runs_recorded=recorded, extra=extra
                )
            case "locks":
                for row in value:
                    waiters = tuple(
                        LockWaiter(**dict(zip(_WAITER_FIELDS, w, strict=True))) for w in row[-1]
                    )
                    lock = Lock(**dict(zip(_LOCK_FIELDS, row[:-1], strict=True)), waiters=waiters)
                    st.locks[lock.name] = lock
            case "lock_done":
                for name, request, lock_fence, outcome in value:
                    st.lock_done[(name, request)] = LockEnd(fence=lock_fence, outcome=outcome)
            case "drained":
                for name, kind, since in value:
                    st.drained[str(name)] = DrainMark(kind=str(kind), since_ms=int(since))
            case "config":
                st.config_hash = str(value[0])
                if len(value) > 1:
                    st.member_hashes = {str(n): str(h) for n, h in value[1]}
                if len(value) > 2:
                    st.member_versions = {str(n): (str(v), int(lv)) for n, v, lv in value[2]}
            case "cluster_id":
                st.cluster_id = str(value)
            case "members":
                _restore_membership(st, value)
            case "armed":
                for row in value:
                    a = Armed(**dict(zip(_ARMED_FIELDS, row, strict=True)))
                    st.armed[a.run_id] = a
    if version != SNAPSHOT_VERSION:
        raise ValueError(f"unsupported snapshot version {version!r}")


def _restore_job(st: Ledger, j: list[Any]) -> None:
    spec = c.spec_from_wire(j[0])
    st.jobs[spec.name] = Job(
        spec=spec,
        source=j[1],
        paused=j[2],
        watermark_ms=j[3],
        created_ms=j[4],
        updated_ms=j[5],
        pause_note=str(j[6]) if len(j) > 6 else "",
        buffered=tuple((str(r), int(t)) for r, t in j[7]) if len(j) > 7 else (),
        retry=tuple(PendingRetry(**dict(zip(_RETRY_FIELDS, p, strict=False))) for p in j[8])
        if len(j) > 8
        else (),
        backfill=Backfill(**dict(zip(_BACKFILL_FIELDS, j[9], strict=True)))
        if len(j) > 9 and j[9] is not None
        else None,
        deps=tuple((str(r), int(t)) for r, t in j[10]) if len(j) > 10 else (),
        waiting=tuple(
            DependencyWait(
                scheduled_at_ms=int(t),
                variant=str(v),
                settled=tuple((str(p), str(r), str(s)) for p, r, s in got),
            )
            for t, v, got in j[11]
        )
        if len(j) > 11
        else (),
        broken=str(j[12]) if len(j) > 12 else "",
        broken_ms=int(j[13]) if len(j) > 13 else 0,
        stats=_stats_of_row(j[14]) if len(j) > 14 and j[14] else JobStats(),
    )
