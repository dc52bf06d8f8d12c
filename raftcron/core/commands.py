"""Commands: every change to the replicated state, and their msgpack envelope.

Wire format: a msgpack map ``{"v": 1, "t": <type>, "at": <ms>, ...fields}``. ``at`` is the
proposer's wall-clock stamp; ``apply`` folds it into cluster time with ``max`` so cluster
time never goes backwards. Decoding never raises: malformed bytes decode to ``None`` and
``apply`` turns that into a rejection, so a bad entry cannot wedge a replica.

Every command is idempotent under retry: fires are keyed by ``(job, scheduled_at)``
(retry claims by ``(job, scheduled_at, attempt)``), lease operations by ``(run id,
fence)``, kills by the run they name, barriers by their nonce, lock acquisitions by their
request id, lock renewals and releases by ``(lock, fence)``, drains by ``(member, drain,
kind)`` (repeating one changes nothing). A ``Lifecycle`` batch is idempotent item by item:
each of its ``Start``, ``Renew`` and ``Complete`` keeps its own key.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, Final

import msgpack

# The spec codec is the job field table's (re-exported: snapshots and tests use it here).
from raftcron.core.jobfields import istr
from raftcron.core.jobfields import spec_from_wire as spec_from_wire
from raftcron.core.jobfields import spec_to_wire as spec_to_wire
from raftcron.core.model import DRAIN_OPERATOR, MISSED, JobSpec, Member

ENVELOPE_VERSION: Final = 1


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
class Arm:
    """Scheduled fires reserved ahead of their due time, each for its ``node`` (feature
    level 5; docs/design.md, "Armed fires"). Only a reservation: the plan at the due time
    still decides whether, and where, each fire runs. ``apply`` refuses a fire that is
    due already, more than ``ARM_MAX_LEAD_MS`` ahead, considered already, armed already,
    of a paused, broken or unknown job, not a single-instance process job, or for a
    drained member; each fire's outcome is in :class:`~raftcron.core.runs.ArmOutcome`."""

    at_ms: int
    fires: tuple[Fire, ...]


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


LifecycleItem = Start | Renew | Complete


@dataclass(frozen=True, slots=True, kw_only=True)
class Lifecycle:
    """Many runs' ``Start``, ``Renew`` and ``Complete`` of one executor node in one entry
    (feature level 4: ``raftcron/core/features.py``).

    ``apply`` applies each item exactly as the single command (its own ``at``, fence check,
    idempotency key, transitions, retries, rejections), in order, and answers
    ``Ok(tuple of the items' results)``: one item's rejection never rejects another.
    ``at_ms`` is the newest of the items' (cluster time moves on to it after the items),
    so a batch changes the state exactly as its items proposed one by one would.
    Proposed by the executor's batcher (``raftcron/executor/batch.py``) once every
    member advertises level 4; before that it proposes the items one by one.
    """

    at_ms: int
    items: tuple[LifecycleItem, ...]


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


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedMembers:
    """The first leader's seed of the replicated membership from its cluster file
    (``State.members``), once every member advertises the level of membership changes.
    Accepted once; repeating the same seed changes nothing."""

    at_ms: int
    members: tuple[Member, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AddMember:
    """Add ``member`` (its incarnation is given by ``apply``). ``request`` is the
    idempotency key: a retry returns the first outcome. One change at a time: refused
    while another is not done (``MemberChanged``)."""

    at_ms: int
    member: Member
    request: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveMember:
    """Remove member ``name`` for good (it never votes or runs anything again; its name
    is not reused). ``request`` as for :class:`AddMember`."""

    at_ms: int
    name: str
    request: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberChanged:
    """The leader carried change ``request`` into Raft's configuration: the change is
    done and the next one may start. Idempotent."""

    at_ms: int
    request: str


LockCommand = AcquireLock | RenewLock | ReleaseLock | ExpireLock | CancelLockWait

Command = (
    PutJob
    | DeleteJob
    | SetPaused
    | SyncConfig
    | Plan
    | Arm
    | Start
    | Renew
    | Complete
    | Lifecycle
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
    | SeedMembers
    | AddMember
    | RemoveMember
    | MemberChanged
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
        job=istr(j),
        scheduled_at_ms=int(s),
        node=istr(n),
        trigger=istr(t),
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


def member_to_wire(m: Member) -> list[Any]:
    """A member as a row: ``[name, raft, api, [[tag, value], ...], incarnation, added]``
    (``added`` written only when set)."""
    row: list[Any] = [m.name, m.raft, m.api, [list(t) for t in m.tags], m.incarnation]
    if m.added:
        row.append(True)
    return row


def member_from_wire(row: list[Any]) -> Member:
    name, raft, api, tags, incarnation = row[:5]
    return Member(
        name=str(name),
        raft=str(raft),
        api=str(api),
        tags=tuple((str(k), str(v)) for k, v in tags),
        incarnation=int(incarnation),
        added=bool(row[5]) if len(row) > 5 else False,
    )


# ---------------------------------------------------------------------------- kinds


@dataclass(frozen=True, slots=True)
class Arg:
    """One field of a command on the wire: the dataclass attribute, its wire key and codec
    (:data:`_CODECS`). ``optional``: a decoder takes the dataclass default when the key is
    absent (it was added after the kind, or is left out at its default); ``omit``: the
    encoder leaves it out at its default; ``with_``: the encoder writes it only when that
    other attribute is truthy."""

    attr: str
    wire: str
    codec: str = "str"
    optional: bool = False
    omit: bool = False
    with_: str = ""


@dataclass(frozen=True, slots=True)
class Kind:
    """One command kind: its wire tag ``t``, class, fields in wire order, and the feature
    level that introduced it (a node of a lower level decodes it to ``None``)."""

    tag: str
    cls: type[Any]
    args: tuple[Arg, ...]
    since: int = 0


def _keep(value: Any) -> Any:
    return value


# name -> (encode, decode); decoding raises on malformed values (``decode`` catches)
_CODECS: Final[dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]]] = {
    "str": (_keep, str),
    "istr": (_keep, istr),
    "int": (_keep, int),
    "opt_int": (_keep, lambda v: None if v is None else int(v)),
    "float": (_keep, float),
    "bool": (_keep, bool),
    "istrs": (list, lambda v: tuple(istr(n) for n in v)),
    "spec": (spec_to_wire, spec_from_wire),
    "specs": (
        lambda v: [spec_to_wire(s) for s in v],
        lambda v: tuple(spec_from_wire(s) for s in v),
    ),
    "fires": (
        lambda v: [_fire_to_wire(f) for f in v],
        lambda v: tuple(_fire_from_wire(r) for r in v),
    ),
    "missed": (
        lambda v: [_missed_to_wire(m) for m in v],
        lambda v: tuple(_missed_from_wire(r) for r in v),
    ),
    "items": (
        lambda v: [_item_to_wire(i) for i in v],
        lambda v: tuple(_item_from_wire(r) for r in v),
    ),
    "member": (lambda v: member_to_wire(v), lambda v: member_from_wire(v)),
    "members": (
        lambda v: [member_to_wire(m) for m in v],
        lambda v: tuple(member_from_wire(r) for r in v),
    ),
}

A = Arg
_RUN = A("run_id", "run")
# fmt: off
KINDS: Final[tuple[Kind, ...]] = (
    Kind("put_job", PutJob, (A("spec", "spec", "spec"), A("source", "source", "istr"))),
    Kind("delete_job", DeleteJob, (A("name", "name"),)),
    Kind("set_paused", SetPaused, (A("name", "name"), A("paused", "paused", "bool"),
                                   A("note", "note", optional=True, omit=True))),
    # full syncs encode as before partial ones existed; older nodes ignore "hash"
    Kind("sync_config", SyncConfig, (
        A("specs", "specs", "specs"), A("history", "history", "int"),
        A("partial", "partial", "bool", optional=True, omit=True),
        A("delete", "delete", "istrs", optional=True, with_="partial"),
        A("config_hash", "hash", optional=True, omit=True))),
    Kind("backfill", StartBackfill, (A("job", "job", "istr"), A("id", "id"),
                                     A("from_ms", "from", "int"), A("to_ms", "to", "int"),
                                     A("rate", "rate", "float"))),
    Kind("backfill_cancel", CancelBackfill, (A("job", "job", "istr"),)),
    Kind("mark_broken", MarkBroken, (A("job", "job", "istr"), A("updated_ms", "updated", "int"),
                                     A("reason", "reason"))),
    Kind("plan", Plan, (A("fires", "fires", "fires"), A("missed", "missed", "missed"))),
    # armed fires (level 5): each fire as in a plan
    Kind("arm", Arm, (A("fires", "fires", "fires"),), since=5),
    Kind("start", Start, (_RUN, A("fence", "fence", "int"), A("node", "node"),
                          A("token", "token"))),
    Kind("renew", Renew, (_RUN, A("fence", "fence", "int"), A("node", "node"))),
    Kind("complete", Complete, (
        _RUN, A("fence", "fence", "int"), A("node", "node"), A("status", "status"),
        A("exit_code", "exit", "opt_int"), A("started_ms", "started", "opt_int"),
        A("finished_ms", "finished", "int"), A("output", "output"), A("reason", "reason"))),
    # batched lifecycle (level 4): each item is a start, renew or complete map as above
    Kind("lifecycle", Lifecycle, (A("items", "items", "items"),), since=4),
    Kind("expire", Expire, (_RUN, A("fence", "fence", "int"), A("reason", "reason"),
                            A("renewals", "renewals", "int", optional=True))),
    Kind("kill", Kill, (_RUN, A("reason", "reason"),
                        A("hard", "hard", "bool", optional=True, omit=True))),
    Kind("barrier", Barrier, (A("node", "node"), A("nonce", "nonce"))),
    Kind("lock_acquire", AcquireLock, (A("name", "name"), A("request", "request"),
                                       A("holder", "holder"), A("ttl_ms", "ttl", "int"),
                                       A("wait_ms", "wait", "int"))),
    Kind("lock_renew", RenewLock, (A("name", "name"), A("fence", "fence", "int"))),
    Kind("lock_release", ReleaseLock, (A("name", "name"), A("fence", "fence", "int"))),
    Kind("lock_expire", ExpireLock, (A("name", "name"), A("fence", "fence", "int"),
                                     A("renewals", "renewals", "int"), A("reason", "reason"))),
    Kind("lock_cancel", CancelLockWait, (A("name", "name"), A("request", "request"),
                                         A("reason", "reason"))),
    Kind("drain", Drain, (A("node", "node"), A("drain", "drain", "bool"), A("kind", "kind"))),
    # (members from before levels ignore "version" and "level")
    Kind("config_report", ReportConfig, (A("node", "node"), A("hash", "hash"),
                                         A("version", "version", optional=True, omit=True),
                                         A("level", "level", "int", optional=True,
                                           with_="version"))),
    # membership changes at run time (level 2: raftcron/core/features.py)
    Kind("members_seed", SeedMembers, (A("members", "members", "members"),), since=2),
    Kind("member_add", AddMember, (A("member", "member", "member"), A("request", "request")),
         since=2),
    Kind("member_remove", RemoveMember, (A("name", "name"), A("request", "request")), since=2),
    Kind("member_changed", MemberChanged, (A("request", "request"),), since=2),
)
# fmt: on
_BY_CLASS: Final[dict[type[Any], Kind]] = {k.cls: k for k in KINDS}
_BY_TAG: Final[dict[str, Kind]] = {k.tag: k for k in KINDS}
_DEFAULTS: Final[dict[type[Any], dict[str, Any]]] = {
    k.cls: {f.name: f.default for f in fields(k.cls) if f.default is not MISSING} for k in KINDS
}


# The kinds a Lifecycle batch carries, by tag.
LIFECYCLE_TAGS: Final = frozenset({"start", "renew", "complete"})


def encode(cmd: Command) -> bytes:
    """Encode a command in the versioned envelope: ``v``, ``at``, ``t``, then the kind's
    fields in :data:`KINDS` order."""
    body: dict[str, Any] = {"v": ENVELOPE_VERSION}
    body.update(_to_wire(cmd))
    out: bytes = msgpack.packb(body, use_bin_type=True)
    return out


def _to_wire(cmd: Command) -> dict[str, Any]:
    """A command's map without the envelope version: ``at``, ``t``, then its fields."""
    kind = _BY_CLASS[type(cmd)]
    body: dict[str, Any] = {"at": cmd.at_ms, "t": kind.tag}
    defaults = _DEFAULTS[kind.cls]
    for arg in kind.args:
        value = getattr(cmd, arg.attr)
        if arg.omit and value == defaults[arg.attr]:
            continue
        if arg.with_ and not getattr(cmd, arg.with_):
            continue
        body[arg.wire] = _CODECS[arg.codec][0](value)
    return body


def _item_to_wire(item: LifecycleItem) -> dict[str, Any]:
    """One item of a ``Lifecycle``: the single command's own map (``at``, ``t``, fields)."""
    if type(item) not in (Start, Renew, Complete):
        raise TypeError(f"a lifecycle batch carries start, renew and complete, not {item!r}")
    return _to_wire(item)


def _item_from_wire(raw: Mapping[str, Any]) -> LifecycleItem:
    if raw["t"] not in LIFECYCLE_TAGS:
        raise ValueError(f"a lifecycle batch cannot carry {raw['t']!r}")
    item = _decode_body(raw)
    if not isinstance(item, Start | Renew | Complete):  # (cannot be: the tags above)
        raise ValueError(f"not a lifecycle item: {item!r}")
    return item


def _decode_body(b: Mapping[str, Any]) -> Command | None:
    at = int(b["at"])
    kind = _BY_TAG.get(b["t"])
    if kind is None:
        return None
    values: dict[str, Any] = {"at_ms": at}
    for arg in kind.args:
        if arg.wire in b:
            values[arg.attr] = _CODECS[arg.codec][1](b[arg.wire])
        elif not arg.optional:
            raise KeyError(arg.wire)
    cmd: Command = kind.cls(**values)
    return cmd


def decode(data: bytes) -> Command | None:
    """Decode an envelope; ``None`` for anything malformed or of an unknown version/type."""
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=True)
        if not isinstance(body, dict) or body.get("v") != ENVELOPE_VERSION:
            return None
        return _decode_body(body)
    except Exception:
        return None
