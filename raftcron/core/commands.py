"""Commands: every change to the replicated state, and their msgpack envelope.

Wire format: a msgpack map ``{"v": 1, "t": <type>, "at": <ms>, ...fields}``. ``at`` is the
proposer's wall-clock stamp; ``apply`` folds it into cluster time with ``max`` so cluster
time never goes backwards. Decoding never raises: malformed bytes decode to ``None`` and
``apply`` turns that into a rejection, so a bad entry cannot wedge a replica.

Every command is idempotent under retry: fires are keyed by ``(job, scheduled_at)``
(retry claims by ``(job, scheduled_at, attempt)``), lease operations by ``(run id,
fence)``, kills by the run they name, barriers by their nonce, lock acquisitions by their
request id, lock renewals and releases by ``(lock, fence)``, drains by ``(member, drain,
kind)`` (repeating one changes nothing).
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import msgpack

from raftcron.core.model import (
    DEFAULT_RETRY_BACKOFF_MAX_MS,
    DEFAULT_RETRY_BACKOFF_MS,
    DRAIN_OPERATOR,
    MISSED,
    HttpSpec,
    JobSpec,
    NotifyTarget,
)

ENVELOPE_VERSION: Final = 1

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, kw_only=True)
class PutJob:
    at_ms: int
    spec: JobSpec
    source: str = "api"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteJob:
    at_ms: int
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SetPaused:
    at_ms: int
    name: str
    paused: bool
    note: str = ""  # why it was paused (shown with the job; cleared on resume)


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncConfig:
    """The leader's reconciliation of the TOML file: config jobs and cluster settings.

    ``specs`` holds the file's jobs and the embedded Python jobs of the application that
    embeds the node (``spec.call`` set; they get ``source == "embedded"``). Jobs with
    ``source`` "config" or "embedded" that are not in ``specs`` are deleted; jobs created
    through the API are left alone.

    A *partial* sync puts only ``specs`` and deletes only the config jobs named in
    ``delete``: the leader sends what differs from the state, in entries of bounded size
    (a file of 100,000 jobs as one entry never committed within the proposal timeout).

    ``config_hash`` (the last entry of a sync only) is the ``config_hash`` of the file now
    reconciled (``raftcron/confighash.py``); ``State.config_hash`` keeps it.
    """

    at_ms: int
    specs: tuple[JobSpec, ...]
    history: int
    partial: bool = False
    delete: tuple[str, ...] = ()
    config_hash: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportConfig:
    """Member ``node`` reads a cluster file whose ``config_hash`` is ``hash``
    (``State.member_hashes``; it says so at start and after a reload). Idempotent.

    ``version`` and ``level`` (``raftcron/core/features.py``): the member's raftcron
    version and feature level (``State.member_versions``); ``""`` advertises nothing
    (a member of a release from before levels: level 0). Both are encoded only when
    ``version`` is set, and members of those releases decode the command as before
    (they ignore the two fields)."""

    at_ms: int
    node: str
    hash: str
    version: str = ""
    level: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Fire:
    """One fire to claim: a job at a scheduled time, granted to ``node``.

    ``node == ""`` means no live node matches the job; it is recorded as skipped.
    ``trigger == "buffered"`` claims the head of the job's buffer instead of a new fire;
    ``scheduled_at_ms`` must then be that buffered run's. ``trigger == "dependency"``
    claims the head of the job's dependency fires (``Job.deps``) the same way.

    ``instance`` of ``instances`` (the job's ``count``): instance 1 is the fire itself,
    instance K > 1 (run id ``...~K``) is accepted only after instance 1 of the same fire
    in the same plan. With ``node == ""`` and ``instance == K``, instances K..``instances``
    found no node: one skipped record covers them.
    """

    job: str
    scheduled_at_ms: int
    node: str
    trigger: str
    attempt: int = 1
    instance: int = 1
    instances: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Missed:
    """Fires ``first_ms..last_ms`` (``count`` of them) that will not run, and why.

    ``status`` is ``"missed"`` (too late, or dropped by the catch-up mode) or ``"paused"``
    (they fell due while the job was paused: ``apply`` refuses it if the job is not paused
    any more, and adds it to the job's current paused record when there is one).
    """

    job: str
    first_ms: int
    last_ms: int
    count: int
    reason: str
    status: str = MISSED


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """A batch from the leader's scheduler: missed records first, then claims, in order."""

    at_ms: int
    fires: tuple[Fire, ...] = ()
    missed: tuple[Missed, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Start:
    """The executor is about to start the run; doubles as the first renewal.

    ``token`` is unique per executor attempt: a retry with the same token is idempotent,
    a second start with another token (a restarted agent re-reading a stale local view)
    is refused, so a run can never be started twice.
    """

    at_ms: int
    run_id: str
    fence: int
    node: str
    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Renew:
    at_ms: int
    run_id: str
    fence: int
    node: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Complete:
    at_ms: int
    run_id: str
    fence: int
    node: str
    status: str
    exit_code: int | None
    started_ms: int | None
    finished_ms: int
    output: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Expire:
    """The leader saw no renewal for a lease's duration on its own monotonic clock.

    ``renewals`` is the lease's renewal count the leader decided on: a renewal that
    commits between that decision and this command makes it moot (refused), so an
    executor whose renewal was accepted is never expired behind its back.
    """

    at_ms: int
    run_id: str
    fence: int
    reason: str
    renewals: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Kill:
    """Stop run ``run_id``: an operator's request, or (inside ``apply``) a new fire of an
    overlap = cancel_other/terminate_other job. A live run keeps its lease and gets the
    request on it: the executor holding the lease stops the process group (``hard``:
    SIGKILL at once, else SIGTERM, grace, SIGKILL) and completes the run as ``killed``; if
    that executor is gone, the lease expiry ends it. A buffered or pending run has no
    process: it is recorded as killed at once. Idempotent: repeating it changes nothing
    (except that ``hard`` upgrades a soft request)."""

    at_ms: int
    run_id: str
    reason: str
    hard: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Barrier:
    """A no-op a new leader commits before acting: everything before it is applied."""

    at_ms: int
    node: str
    nonce: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AcquireLock:
    """Take lock ``name`` for ``ttl_ms``, or queue for it (FIFO) when ``wait_ms > 0``.

    ``request`` is the idempotency key, unique per acquire attempt: a retried proposal
    returns the first outcome instead of taking the lock (or a queue place) again.
    """

    at_ms: int
    name: str
    request: str
    holder: str
    ttl_ms: int
    wait_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewLock:
    at_ms: int
    name: str
    fence: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseLock:
    at_ms: int
    name: str
    fence: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpireLock:
    """The leader saw no renewal of a lock for its TTL on its own monotonic clock.

    ``renewals`` is the grant's renewal count the leader decided on: a renewal that
    commits between that decision and this command makes it moot (refused), so a holder
    whose renewal was accepted is never expired behind its back.
    """

    at_ms: int
    name: str
    fence: int
    renewals: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelLockWait:
    """Take ``request`` out of ``name``'s queue: its wait ran out (sent by the API node that
    serves it) or it was abandoned (sent by the leader). Never releases a held lock."""

    at_ms: int
    name: str
    request: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StartBackfill:
    """Run ``job``'s fires in ``[from_ms, to_ms]`` again, one at a time, at most ``rate``
    per second, each recorded with trigger ``backfill``. ``id`` is the idempotency key:
    repeating the request returns the backfill it started."""

    at_ms: int
    job: str
    id: str
    from_ms: int
    to_ms: int
    rate: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelBackfill:
    at_ms: int
    job: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Drain:
    """Mark member ``node`` drained (``drain``) or not (``drain=False``): a drained member
    gets no new grants; what it runs goes on under its leases.

    ``kind`` is who asks: ``operator`` (``raftcron drain``/``undrain``) or ``shutdown`` (the
    member itself, on SIGTERM and when it starts again). An operator's mark is never
    replaced or cleared by a ``shutdown`` command: a member shutting down does not lift an
    operator's drain when it comes back. Idempotent: repeating it changes nothing.
    """

    at_ms: int
    node: str
    drain: bool
    kind: str = DRAIN_OPERATOR


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkBroken:
    """The leader could not compute ``job``'s fires (an exception in its scheduler):
    flag the job broken with ``reason``. ``updated_ms`` is the job's ``updated_ms`` the
    leader computed with: a job changed since (a PUT, a pause, a resume) is not marked
    (``stale``), so a fix is never flagged by a late mark. Idempotent: marking a broken
    job again changes nothing."""

    at_ms: int
    job: str
    updated_ms: int
    reason: str


LockCommand = AcquireLock | RenewLock | ReleaseLock | ExpireLock | CancelLockWait

Command = (
    PutJob
    | DeleteJob
    | SetPaused
    | SyncConfig
    | Plan
    | Start
    | Renew
    | Complete
    | Expire
    | StartBackfill
    | CancelBackfill
    | Kill
    | Drain
    | Barrier
    | AcquireLock
    | RenewLock
    | ReleaseLock
    | ExpireLock
    | CancelLockWait
    | MarkBroken
    | ReportConfig
)

_SPEC_FIELDS: Final = (
    "name",
    "schedule",
    "command",
    "timezone",
    "timeout_ms",
    "overlap",
    "catchup_ms",
    "retries",
    "tags",
    "lease_ms",
    "env",
    "cwd",
    "catchup_mode",
    "jitter_ms",
    "dst_gap",
    "dst_repeat",
    "http",
    "notify",
    "late_after_ms",
    "ping_url",
    "retry_backoff_ms",
    "retry_backoff_max_ms",
    "retry_other_node",
    "call",
    "after",
    "on",
    "count",
    "max_parallel",
    "user",
    "group",
    "limits",
    "env_passthrough",
    "stdin",
)


def spec_to_wire(spec: JobSpec) -> dict[str, Any]:
    """The spec as a msgpack map. Keys added after the first release are written only when
    they differ from their default, so a spec that does not use them encodes exactly as
    before (older nodes decode it, and snapshot digests do not change)."""
    out: dict[str, Any] = {
        "name": spec.name,
        "schedule": spec.schedule,
        "command": list(spec.command),
        "timezone": spec.timezone,
        "timeout_ms": spec.timeout_ms,
        "overlap": spec.overlap,
        "catchup_ms": spec.catchup_ms,
        "retries": spec.retries,
        "tags": [list(kv) for kv in spec.tags],
        "lease_ms": spec.lease_ms,
        "env": [list(kv) for kv in spec.env],
        "cwd": spec.cwd,
    }
    if spec.catchup_mode != "all":
        out["catchup_mode"] = spec.catchup_mode
    if spec.jitter_ms:
        out["jitter_ms"] = spec.jitter_ms
    if spec.dst_gap != "shift":
        out["dst_gap"] = spec.dst_gap
    if spec.dst_repeat != "once":
        out["dst_repeat"] = spec.dst_repeat
    if spec.http is not None:
        h = spec.http
        out["http"] = {
            "url": h.url,
            "method": h.method,
            "headers": [list(kv) for kv in h.headers],
            "body": h.body,
            "expect": list(h.expect),
        }
    if spec.notify is not None:
        out["notify"] = [[t.url, list(t.on)] for t in spec.notify]
    if spec.late_after_ms is not None:
        out["late_after_ms"] = spec.late_after_ms
    if spec.ping_url is not None:
        out["ping_url"] = spec.ping_url
    if spec.retry_backoff_ms != DEFAULT_RETRY_BACKOFF_MS:
        out["retry_backoff_ms"] = spec.retry_backoff_ms
    if spec.retry_backoff_max_ms != DEFAULT_RETRY_BACKOFF_MAX_MS:
        out["retry_backoff_max_ms"] = spec.retry_backoff_max_ms
    if spec.retry_other_node:
        out["retry_other_node"] = True
    if spec.call:
        out["call"] = spec.call
    if spec.after:
        out["after"] = list(spec.after)
    if spec.on != "success":
        out["on"] = spec.on
    if spec.count != 1:
        out["count"] = spec.count  # COUNT_ALL (0) for "all"
    if spec.max_parallel is not None:
        out["max_parallel"] = spec.max_parallel
    if spec.user is not None:
        out["user"] = spec.user
    if spec.group is not None:
        out["group"] = spec.group
    if spec.limits:
        out["limits"] = [list(kv) for kv in spec.limits]
    if spec.env_passthrough:
        out["env_passthrough"] = list(spec.env_passthrough)
    if spec.stdin:
        out["stdin"] = spec.stdin
    return out


def _str(value: object) -> str:
    """``str(value)``, interned: thousands of jobs share their commands, zones, tags and
    policies, and every run repeats its job's name; one copy of each is kept instead of
    one per decoded entry (only object identity changes, never a value)."""
    return sys.intern(str(value))


# Decoded ints above 256 and tuples of interned strings (a command, the tags), shared the
# same way: with 100,000 jobs that differ only by name, one copy instead of 100,000 (about
# 280 bytes a job). Bounded: once a table is full new values are simply not shared (a
# deleted job's values may stay in it; at most _SHARED_MAX of each).
_SHARED_MAX: Final = 4096
_shared_ints: dict[int, int] = {}
_shared_strs: dict[Any, Any] = {}


def _int(value: Any) -> int:
    n: int = int(value)
    if -5 <= n <= 256:  # CPython's own small ints
        return n
    got = _shared_ints.get(n)
    if got is not None:
        return got
    if len(_shared_ints) < _SHARED_MAX:
        _shared_ints[n] = n
    return n


def _strs(items: Any) -> tuple[str, ...]:
    """``tuple(_str(x) for x in items)``, shared."""
    return _share(tuple(_str(x) for x in items))


def _pairs(items: Any) -> tuple[tuple[str, str], ...]:
    """Key/value pairs (tags, env) of interned strings, shared."""
    return _share(tuple(_share((_str(k), _str(v))) for k, v in items))


def _share(value: _T) -> _T:
    got: _T | None = _shared_strs.get(value)
    if got is not None:
        return got
    if len(_shared_strs) < _SHARED_MAX:
        _shared_strs[value] = value
    return value


def _http_from_wire(raw: Mapping[str, Any] | None) -> HttpSpec | None:
    if raw is None:
        return None
    return HttpSpec(
        url=str(raw["url"]),
        method=str(raw["method"]),
        headers=tuple((str(k), str(v)) for k, v in raw["headers"]),
        body=str(raw["body"]),
        expect=tuple(int(c) for c in raw["expect"]),
    )


def _notify_from_wire(raw: list[Any] | None) -> tuple[NotifyTarget, ...] | None:
    if raw is None:
        return None
    return tuple(NotifyTarget(url=str(u), on=tuple(str(e) for e in on)) for u, on in raw)


def spec_from_wire(raw: Mapping[str, Any]) -> JobSpec:
    """Inverse of :func:`spec_to_wire`. Raises on malformed input (callers catch)."""
    unknown = set(raw) - set(_SPEC_FIELDS)
    if unknown:
        raise ValueError(f"unknown job fields {sorted(unknown)}")
    timeout = raw["timeout_ms"]
    cwd = raw["cwd"]
    return JobSpec(
        name=_str(raw["name"]),
        schedule=_str(raw["schedule"]),
        command=_strs(raw["command"]),
        timezone=_str(raw["timezone"]),
        timeout_ms=None if timeout is None else _int(timeout),
        overlap=_str(raw["overlap"]),
        catchup_ms=_int(raw["catchup_ms"]),
        retries=int(raw["retries"]),
        tags=_pairs(raw["tags"]),
        lease_ms=_int(raw["lease_ms"]),
        env=_pairs(raw["env"]),
        cwd=None if cwd is None else _str(cwd),
        catchup_mode=_str(raw.get("catchup_mode", "all")),
        jitter_ms=int(raw.get("jitter_ms", 0)),
        dst_gap=_str(raw.get("dst_gap", "shift")),
        dst_repeat=_str(raw.get("dst_repeat", "once")),
        http=_http_from_wire(raw.get("http")),
        notify=_notify_from_wire(raw.get("notify")),
        late_after_ms=None if raw.get("late_after_ms") is None else int(raw["late_after_ms"]),
        ping_url=None if raw.get("ping_url") is None else str(raw["ping_url"]),
        retry_backoff_ms=int(raw.get("retry_backoff_ms", DEFAULT_RETRY_BACKOFF_MS)),
        retry_backoff_max_ms=int(raw.get("retry_backoff_max_ms", DEFAULT_RETRY_BACKOFF_MAX_MS)),
        retry_other_node=bool(raw.get("retry_other_node", False)),
        call=_str(raw.get("call", "")),
        after=tuple(_str(p) for p in raw.get("after", ())),
        on=_str(raw.get("on", "success")),
        count=int(raw.get("count", 1)),
        max_parallel=None if raw.get("max_parallel") is None else int(raw["max_parallel"]),
        user=None if raw.get("user") is None else _str(raw["user"]),
        group=None if raw.get("group") is None else _str(raw["group"]),
        limits=_share(tuple((_str(k), _int(v)) for k, v in raw.get("limits", ()))),
        env_passthrough=_strs(raw.get("env_passthrough", ())),
        stdin=str(raw.get("stdin", "")),
    )


@dataclass(frozen=True, slots=True)
class PackedSpecs:
    """Job specs held compactly: their wire maps (:func:`spec_to_wire`), msgpack-packed
    one after the other and deflated.

    A node keeps its cluster file's jobs this way (``Node.config_jobs``): only a leader
    needs them, once per term, to reconcile the file (``SyncConfig``), and the replicated
    state holds the jobs themselves. 100,000 parsed specs take about 200 MB as objects and
    a few hundred kB packed. :meth:`unpack` gives specs equal to the packed ones (the wire
    form round-trips; the leader compares against specs decoded from the same form)."""

    blob: bytes = zlib.compress(b"")
    count: int = 0

    @classmethod
    def pack(cls, specs: Iterable[JobSpec]) -> PackedSpecs:
        deflate = zlib.compressobj(6)
        packer = msgpack.Packer(use_bin_type=True)
        parts: list[bytes] = []
        count = 0
        for spec in specs:
            parts.append(deflate.compress(packer.pack(spec_to_wire(spec))))
            count += 1
        parts.append(deflate.flush())
        return cls(blob=b"".join(parts), count=count)

    def unpack(self) -> tuple[JobSpec, ...]:
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=0)
        unpacker.feed(zlib.decompress(self.blob))
        specs = tuple(spec_from_wire(raw) for raw in unpacker)
        if len(specs) != self.count:  # cannot happen short of memory corruption
            raise ValueError(f"packed specs: {len(specs)} decoded, {self.count} packed")
        return specs

    def __len__(self) -> int:
        return self.count


def _fire_to_wire(f: Fire) -> list[Any]:
    row: list[Any] = [f.job, f.scheduled_at_ms, f.node, f.trigger, f.attempt]
    if (f.instance, f.instances) != (1, 1):
        row += [f.instance, f.instances]  # older entries have five elements
    return row


def _fire_from_wire(row: list[Any]) -> Fire:
    j, s, n, t, a = row[:5]
    return Fire(
        job=_str(j),
        scheduled_at_ms=int(s),
        node=_str(n),
        trigger=_str(t),
        attempt=int(a),
        instance=int(row[5]) if len(row) > 5 else 1,
        instances=int(row[6]) if len(row) > 6 else 1,
    )


def _missed_to_wire(m: Missed) -> list[Any]:
    row: list[Any] = [m.job, m.first_ms, m.last_ms, m.count, m.reason]
    if m.status != MISSED:
        row.append(m.status)  # older entries have five elements
    return row


def _missed_from_wire(row: list[Any]) -> Missed:
    j, f, la, c, r = row[:5]
    return Missed(
        job=str(j),
        first_ms=int(f),
        last_ms=int(la),
        count=int(c),
        reason=str(r),
        status=str(row[5]) if len(row) > 5 else MISSED,
    )


def encode(cmd: Command) -> bytes:
    """Encode a command in the versioned envelope."""
    body: dict[str, Any] = {"v": ENVELOPE_VERSION, "at": cmd.at_ms}
    match cmd:
        case PutJob():
            body |= {"t": "put_job", "spec": spec_to_wire(cmd.spec), "source": cmd.source}
        case DeleteJob():
            body |= {"t": "delete_job", "name": cmd.name}
        case SetPaused():
            body |= {"t": "set_paused", "name": cmd.name, "paused": cmd.paused}
            if cmd.note:
                body["note"] = cmd.note
        case SyncConfig():
            body |= {
                "t": "sync_config",
                "specs": [spec_to_wire(s) for s in cmd.specs],
                "history": cmd.history,
            }
            if cmd.partial:  # full syncs encode as before partial ones existed
                body |= {"partial": True, "delete": list(cmd.delete)}
            if cmd.config_hash:  # (older nodes ignore it)
                body["hash"] = cmd.config_hash
        case StartBackfill():
            body |= {
                "t": "backfill",
                "job": cmd.job,
                "id": cmd.id,
                "from": cmd.from_ms,
                "to": cmd.to_ms,
                "rate": cmd.rate,
            }
        case CancelBackfill():
            body |= {"t": "backfill_cancel", "job": cmd.job}
        case MarkBroken():
            body |= {
                "t": "mark_broken",
                "job": cmd.job,
                "updated": cmd.updated_ms,
                "reason": cmd.reason,
            }
        case Plan():
            body |= {
                "t": "plan",
                "fires": [_fire_to_wire(f) for f in cmd.fires],
                "missed": [_missed_to_wire(m) for m in cmd.missed],
            }
        case Start():
            body |= {
                "t": "start",
                "run": cmd.run_id,
                "fence": cmd.fence,
                "node": cmd.node,
                "token": cmd.token,
            }
        case Renew():
            body |= {"t": "renew", "run": cmd.run_id, "fence": cmd.fence, "node": cmd.node}
        case Complete():
            body |= {
                "t": "complete",
                "run": cmd.run_id,
                "fence": cmd.fence,
                "node": cmd.node,
                "status": cmd.status,
                "exit": cmd.exit_code,
                "started": cmd.started_ms,
                "finished": cmd.finished_ms,
                "output": cmd.output,
                "reason": cmd.reason,
            }
        case Expire():
            body |= {
                "t": "expire",
                "run": cmd.run_id,
                "fence": cmd.fence,
                "reason": cmd.reason,
                "renewals": cmd.renewals,
            }
        case Kill():
            body |= {"t": "kill", "run": cmd.run_id, "reason": cmd.reason}
            if cmd.hard:
                body["hard"] = True
        case Barrier():
            body |= {"t": "barrier", "node": cmd.node, "nonce": cmd.nonce}
        case AcquireLock():
            body |= {
                "t": "lock_acquire",
                "name": cmd.name,
                "request": cmd.request,
                "holder": cmd.holder,
                "ttl": cmd.ttl_ms,
                "wait": cmd.wait_ms,
            }
        case RenewLock():
            body |= {"t": "lock_renew", "name": cmd.name, "fence": cmd.fence}
        case ReleaseLock():
            body |= {"t": "lock_release", "name": cmd.name, "fence": cmd.fence}
        case ExpireLock():
            body |= {
                "t": "lock_expire",
                "name": cmd.name,
                "fence": cmd.fence,
                "renewals": cmd.renewals,
                "reason": cmd.reason,
            }
        case CancelLockWait():
            body |= {
                "t": "lock_cancel",
                "name": cmd.name,
                "request": cmd.request,
                "reason": cmd.reason,
            }
        case Drain():
            body |= {"t": "drain", "node": cmd.node, "drain": cmd.drain, "kind": cmd.kind}
        case ReportConfig():
            body |= {"t": "config_report", "node": cmd.node, "hash": cmd.hash}
            if cmd.version:  # (members from before levels ignore both)
                body |= {"version": cmd.version, "level": cmd.level}
    out: bytes = msgpack.packb(body, use_bin_type=True)
    return out


def _decode_body(b: Mapping[str, Any]) -> Command | None:
    at = int(b["at"])
    match b["t"]:
        case "put_job":
            return PutJob(at_ms=at, spec=spec_from_wire(b["spec"]), source=_str(b["source"]))
        case "delete_job":
            return DeleteJob(at_ms=at, name=str(b["name"]))
        case "set_paused":
            return SetPaused(
                at_ms=at,
                name=str(b["name"]),
                paused=bool(b["paused"]),
                note=str(b.get("note", "")),
            )
        case "sync_config":
            return SyncConfig(
                at_ms=at,
                specs=tuple(spec_from_wire(s) for s in b["specs"]),
                history=int(b["history"]),
                partial=bool(b.get("partial", False)),
                delete=tuple(_str(n) for n in b.get("delete", ())),
                config_hash=str(b.get("hash", "")),
            )
        case "backfill":
            return StartBackfill(
                at_ms=at,
                job=_str(b["job"]),
                id=str(b["id"]),
                from_ms=int(b["from"]),
                to_ms=int(b["to"]),
                rate=float(b["rate"]),
            )
        case "backfill_cancel":
            return CancelBackfill(at_ms=at, job=_str(b["job"]))
        case "mark_broken":
            return MarkBroken(
                at_ms=at, job=_str(b["job"]), updated_ms=int(b["updated"]), reason=str(b["reason"])
            )
        case "plan":
            return Plan(
                at_ms=at,
                fires=tuple(_fire_from_wire(row) for row in b["fires"]),
                missed=tuple(_missed_from_wire(row) for row in b["missed"]),
            )
        case "start":
            return Start(
                at_ms=at,
                run_id=str(b["run"]),
                fence=int(b["fence"]),
                node=str(b["node"]),
                token=str(b["token"]),
            )
        case "renew":
            return Renew(at_ms=at, run_id=str(b["run"]), fence=int(b["fence"]), node=str(b["node"]))
        case "complete":
            return Complete(
                at_ms=at,
                run_id=str(b["run"]),
                fence=int(b["fence"]),
                node=str(b["node"]),
                status=str(b["status"]),
                exit_code=None if b["exit"] is None else int(b["exit"]),
                started_ms=None if b["started"] is None else int(b["started"]),
                finished_ms=int(b["finished"]),
                output=str(b["output"]),
                reason=str(b["reason"]),
            )
        case "expire":
            return Expire(
                at_ms=at,
                run_id=str(b["run"]),
                fence=int(b["fence"]),
                reason=str(b["reason"]),
                renewals=int(b.get("renewals", 0)),
            )
        case "kill":
            return Kill(
                at_ms=at,
                run_id=str(b["run"]),
                reason=str(b["reason"]),
                hard=bool(b.get("hard", False)),
            )
        case "barrier":
            return Barrier(at_ms=at, node=str(b["node"]), nonce=str(b["nonce"]))
        case "lock_acquire":
            return AcquireLock(
                at_ms=at,
                name=str(b["name"]),
                request=str(b["request"]),
                holder=str(b["holder"]),
                ttl_ms=int(b["ttl"]),
                wait_ms=int(b["wait"]),
            )
        case "lock_renew":
            return RenewLock(at_ms=at, name=str(b["name"]), fence=int(b["fence"]))
        case "lock_release":
            return ReleaseLock(at_ms=at, name=str(b["name"]), fence=int(b["fence"]))
        case "lock_expire":
            return ExpireLock(
                at_ms=at,
                name=str(b["name"]),
                fence=int(b["fence"]),
                renewals=int(b["renewals"]),
                reason=str(b["reason"]),
            )
        case "lock_cancel":
            return CancelLockWait(
                at_ms=at, name=str(b["name"]), request=str(b["request"]), reason=str(b["reason"])
            )
        case "drain":
            return Drain(at_ms=at, node=str(b["node"]), drain=bool(b["drain"]), kind=str(b["kind"]))
        case "config_report":
            return ReportConfig(
                at_ms=at,
                node=str(b["node"]),
                hash=str(b["hash"]),
                version=str(b.get("version", "")),
                level=int(b.get("level", 0)),
            )
    return None


def decode(data: bytes) -> Command | None:
    """Decode an envelope; ``None`` for anything malformed or of an unknown version/type."""
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=True)
        if not isinstance(body, dict) or body.get("v") != ENVELOPE_VERSION:
            return None
        return _decode_body(body)
    except Exception:
        return None
