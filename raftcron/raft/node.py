"""The Raft adapter: raftcron's replica on pysyncobj, reached only through the seam
(:mod:`raftcron.raft.seam`, which holds every pysyncobj import, private access and patch).

What it guarantees:

* ONE ``@replicated`` entry point, ``apply_command(data: bytes)``; the bytes are a
  :mod:`raftcron.core.commands` envelope. Snapshots are msgpack (``State.capture``), never
  pickle, and are written off the tick thread (``SnapshotStore``).
* The Raft port is :mod:`raftcron.raft.wire` (no pickle, bounded frames, strangers
  bounded). pysyncobj still pickles its log entries around our command bytes; they are
  read back only by :mod:`raftcron.raft.unpickle` and must be a call of a replicated method
  with bytes (:func:`regular_call`), or they are refused, logged and skipped.
* Durability (docs/design.md, "Durability"): the journal is a :class:`DurableJournal`. Every message
  a node sends except the leader's AppendEntries (an ack to the leader, a vote, a forwarded
  command) goes through :class:`_DurableTransport`, which fsyncs pending journal bytes
  first. The leader replicates before its own fsync and syncs while the followers write
  theirs; it syncs again at the top of every tick, before pysyncobj counts it in the
  commit majority. The apply path syncs before any result is handed out. So nothing is
  acknowledged or counted in a majority before it is on disk
  (``tests/unit/test_raft_durability.py`` checks both at the moment they happen).
* The asyncio bridge: :meth:`RaftNode.propose` never waits without a timeout. A timeout
  means "unknown outcome"; callers retry with the same idempotent command.
* State is read under the machine's lock (short critical sections) and Raft status is
  copied out on the tick thread once per tick, so the asyncio thread never reads
  pysyncobj internals while they change.
* Storage failures stop the replica at once (docs/operations.md, "Health"): a journal or snapshot
  write that fails (ENOSPC, EIO, ...) marks it failed (:meth:`_Replica.fatal`); from then
  on its tick does nothing (no ack, vote or append leaves it, no traceback per tick) and
  the node stops. The status carries what the health checks need: when it was copied,
  since when this replica is behind the leader's commit (:class:`ApplyLag`) and, on a
  leader, when it last heard from a majority (:func:`quorum_heard_at`).
* Leadership transfer (Raft's TimeoutNow, pysyncobj's ``transferLeadership``) is asked
  for from asyncio (:meth:`RaftNode.transfer_leadership`) and carried out on the tick
  thread, never through pysyncobj's utility messages on the raft port.

The SyncObj must be built in the main thread: its tick thread exits with the thread that
built it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from raftcron import hooks
from raftcron.clock import monotonic, wall_s
from raftcron.core.commands import Command, encode
from raftcron.core.results import Reject
from raftcron.core.state import Ok, PlanOutcome, Rejected, Result, State
from raftcron.raft import seam, unpickle
from raftcron.raft.health import (
    STORAGE_ERRNOS,
    ApplyLag,
    ReplicationLag,
    quorum_heard_at,
    storage_failure,
)
from raftcron.raft.journal import (
    DurableJournal,
    FileOps,
    SnapshotStore,
    install_journal_factory,
    snapshot_file_problem,
    snapshot_last_entry,
)
from raftcron.raft.seam import (
    FAIL_REASON,
    ReplicaBase,
    SyncObjConf,
    replicated,
)
from raftcron.raft.wire import GuardedTransport, Keyring

logger = logging.getLogger(__name__)

T = TypeVar("T")

LOG_SETTLE_S: Final = 2.0  # see RaftSettings.compaction_max_bytes
# A status not copied for this long means the tick thread is stalled (it runs every 50 ms).
TICK_STALL_S: Final = 1.0
FORCED_COMPACTION_EVERY_S: Final = 10.0  # at most one snapshot forced by size this often
# ``RAFTCRON_TRACE_RUNS=1`` (as raftcron/executor/runner.py): each replica logs, for every
# applied ``Plan`` entry that granted runs, when it appended, made durable and applied the
# entry (:class:`_EntryTrace`), for bench/run_timeline.py.
TRACE_ENV: Final = "RAFTCRON_TRACE_RUNS"

_FAIL_NAMES: Final = {
    FAIL_REASON.QUEUE_FULL: "queue_full",
    FAIL_REASON.MISSING_LEADER: "no_leader",
    FAIL_REASON.DISCARDED: "discarded",
    FAIL_REASON.NOT_LEADER: "not_leader",
    FAIL_REASON.LEADER_CHANGED: "leader_changed",
    FAIL_REASON.REQUEST_DENIED: "denied",
    FAIL_REASON.UNKNOWN_OUTCOME: "unknown_outcome",
}


class ProposalError(Exception):
    """A proposal did not commit (or we cannot tell). Retry with the same command."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ProposalTimeout(ProposalError):
    def __init__(self, seconds: float) -> None:
        super().__init__("timeout", f"proposal not committed within {seconds:g}s (outcome unknown)")


@dataclass(frozen=True, slots=True, kw_only=True)
class RaftSettings:
    """How this node joins the cluster (docs/design.md, "Raft settings and timing")."""

    self_addr: str
    peers: Sequence[str]  # the other members' raft addresses
    password: str  # the cluster secret: frames are sealed with it
    data_dir: Path
    min_timeout: float = 0.3
    max_timeout: float = 0.9
    append_period: float = 0.05
    compaction_min_entries: int = 5000
    compaction_min_time: float = 300.0
    # The log's commands are held in memory until a snapshot: once they add up to this
    # many bytes and the log has stopped growing for ``LOG_SETTLE_S`` (a config sync of a
    # large file is over), or to four times as many in any case, a snapshot is taken then
    # instead of after ``compaction_min_entries`` entries or ``compaction_min_time``.
    compaction_max_bytes: int = 4 * 2**20
    # During a secret rotation: the secret being replaced, still accepted from peers
    # (raftcron.raft.wire.Keyring); None outside a rotation.
    previous_password: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RaftStatus:
    """Copied out on the tick thread; the asyncio side reads the latest reference."""

    self_addr: str
    is_leader: bool = False
    leader: str | None = None
    term: int = 0
    commit_index: int = 0
    last_applied: int = 0
    has_quorum: bool = False
    ready: bool = False
    log_len: int = 0
    connected: frozenset[str] = field(default_factory=frozenset)
    # On the leader: peers that answered an append recently. A frozen (SIGSTOP) or
    # partitioned peer can keep its TCP connection open for a long time, so "connected"
    # alone is not "alive" and must not get new work.
    responsive: frozenset[str] = field(default_factory=frozenset)
    match_index: tuple[tuple[str, int], ...] = ()
    at: float = 0.0  # when this was copied (monotonic seconds; time.monotonic)
    leader_commit: int = 0  # the leader's commit index as last heard (a leader: its own)
    behind_since: float | None = None  # since when last_applied < a known leader commit
    quorum_at: float | None = None  # a leader: when it last heard from a majority
    # A leader: (peer raft address, since when) for each peer that lacks a committed entry
    # (monotonic seconds; see health.ReplicationLag). Empty on a follower.
    peer_behind_since: tuple[tuple[str, float], ...] = ()
    # The other members' raft addresses in Raft's configuration as this node has it
    # (changes at run time: raftcron/membership.py).
    config: frozenset[str] = field(default_factory=frozenset)


class Machine:
    """Owns the :class:`State`; applies command bytes under a lock; tells an observer."""

    def __init__(self, state: State | None = None) -> None:
        self._state = state if state is not None else State()
        self._lock = threading.Lock()
        self.observer: Callable[[Command | None, Result], None] | None = None
        self.on_restore: Callable[[], None] | None = None

    def apply(self, data: bytes) -> Result:
        with self._lock:
            cmd, result = self._state.apply_bytes(data)
        observer = self.observer
        if observer is not None:
            try:
                observer(cmd, result)
            except Exception:
                logger.exception("apply observer failed")
        return result

    def read(self, fn: Callable[[State], T]) -> T:
        with self._lock:
            return fn(self._state)

    def capture(self) -> Callable[[], bytes]:
        with self._lock:
            return self._state.capture()

    def restore(self, data: bytes) -> None:
        state = State.restore(data)
        with self._lock:
            self._state = state
        hook = self.on_restore
        if hook is not None:
            hook()


class _DurableTransport(GuardedTransport):
    """Fsyncs the journal before anything but the leader's AppendEntries (and its reply
    to a forwarded command, :func:`_leaves_before_sync`) leaves this node.

    An ack (``next_node_idx``), a vote or a forwarded command waits for the fsync: a
    follower never acknowledges an entry that a power cut could take back. The leader's
    ``append_entries`` go out at once: Raft lets the leader write its own log in parallel
    with replication, as long as it counts itself toward a commit only once its entries are
    durable, which :class:`_Replica` ensures (it syncs right after sending and again before
    every commit computation). The ``commit_index`` these messages carry was computed after
    such a sync.

    What goes over the wire, and who may connect, is :class:`GuardedTransport`'s.
    """

    # Acks (``next_node_idx``) produced while the tick thread handles what one poll
    # returned are held and leave together after one fsync (:meth:`release_acks`): a
    # follower that read several AppendEntries at once synced once per message.
    _held: list[tuple[Any, Any]] | None = None

    def send(self, node: Any, message: Any) -> bool:
        trace: _EntryTrace | None = getattr(self.syncobj, "_rc_trace", None)
        if trace is not None:
            trace.sending(message)
        if _leaves_before_sync(message):
            ok: bool = super().send(node, message)
            return ok
        held = self._held
        if held is not None and _is_ack(message):
            held.append((node, message))
            return True
        self._send_held()  # whatever leaves next leaves after them (order per peer)
        self.syncobj.sync_journal()
        ok = super().send(node, message)
        return ok

    def hold_acks(self) -> None:
        """Hold acks from now on (the tick thread is about to handle a poll's events)."""
        if self._held is None:
            self._held = []

    def release_acks(self) -> None:
        """Stop holding: one fsync, then every held ack in the order it was made."""
        self._send_held()
        self._held = None

    def _send_held(self) -> None:
        held = self._held
        if not held:
            return
        self._held = []
        self.syncobj.sync_journal()  # raises on a failed journal: then nothing leaves
        for node, message in held:
            super().send(node, message)


def _leaves_before_sync(message: Any) -> bool:
    """The leader's ``append_entries``, and its ``apply_command_response``: the log
    position it gave a command a follower forwarded. That is no acknowledgment: the
    follower's caller hears of its command only once the entry has committed, and if the
    entry is lost before, the same (index, term) can never commit with another command
    (Raft's log matching), so the caller is told it was discarded. Sending it before the
    fsync matters because pysyncobj sends it right after appending, before the
    AppendEntries: waiting for the fsync there held the entry back from the followers
    (measured: a forwarded Start took 22-29 ms at p50 against 4-6 ms at the leader)."""
    return isinstance(message, dict) and message.get("type") in (
        "append_entries",
        "apply_command_response",
    )


def _is_ack(message: Any) -> bool:
    return isinstance(message, dict) and message.get("type") == "next_node_idx"


def _cluster_id_of(state: State) -> str:
    return state.cluster_id


def _seeded(state: State) -> bool:
    return bool(state.members)


class _EntryTrace:
    """When this replica appended, made durable and applied each log entry (tick thread,
    wall seconds), logged for the ``Plan`` entries that granted runs (``TRACE_ENV``).

    Steps, by index: ``picked`` (the start of the leader's tick that took the proposal
    from pysyncobj's queue: its poll had returned), ``appended`` (appended and sent to the
    followers), ``received`` (a follower: the poll that read the AppendEntries returned),
    ``durable`` (its fsync done; a follower's ack sent), ``commit_tick`` (the start of the
    tick that applied it: the leader's poll read the acks that committed it, a follower's
    the AppendEntries carrying the new commit index), ``applied`` (the apply began),
    ``apply_done`` (this entry's apply returned: the loop has been told), ``ae_sent`` (the
    leader: the first AppendEntries after it, which carries the new commit index, went
    out), ``tick_done`` (that tick's work is done, before its poll)."""

    MAX: Final = 10_000  # entries remembered (unapplied ones are dropped past this)

    def __init__(self) -> None:
        self.tick_at = 0.0
        self.seen = 0  # the last index noted
        self.entries: dict[int, dict[str, float]] = {}
        self.pending: list[tuple[int, list[list[str]], dict[str, float]]] = []

    def note(self, last: int, marks: dict[str, float]) -> None:
        if last < self.seen:  # the log was truncated (a new leader's entries follow)
            self.seen = last
        if last > self.seen:
            if len(self.entries) > self.MAX:
                self.entries.clear()
            for idx in range(max(self.seen + 1, last - 100), last + 1):
                self.entries[idx] = marks
            self.seen = last

    def applied(self, idx: int, started: float, res: Result) -> None:
        done = wall_s()
        marks = self.entries.pop(idx, None)
        if not (isinstance(res, Ok) and isinstance(res.value, PlanOutcome) and res.value.granted):
            return
        steps = {
            **(marks or {}),
            "commit_tick": self.tick_at,
            "applied": started,
            "apply_done": done,
        }
        self.pending.append((idx, [[rid, node] for rid, _, node in res.value.granted], steps))

    def sending(self, message: Any) -> None:
        if self.pending and isinstance(message, dict) and message.get("type") == "append_entries":
            for _, _, steps in self.pending:
                steps.setdefault("ae_sent", wall_s())

    def tick_done(self) -> None:
        """Log the entries applied in this tick (logged here, not in the apply: the
        tick's AppendEntries leave first)."""
        if not self.pending:
            return
        done = wall_s()
        for idx, granted, steps in self.pending:
            steps["tick_done"] = done
            logger.info(
                "raft trace: plan entry %d applied: %s",
                idx,
                json.dumps({"granted": granted, **steps}),
            )
        self.pending.clear()


class _Replica(ReplicaBase):
    def __init__(
        self,
        settings: RaftSettings,
        machine: Machine,
        on_tick: Callable[[_Replica], None],
        fs: FileOps | None = None,
        *,
        transport_class: type[Any] | None = None,
        auto_tick: bool = True,
        prevote: Callable[[], bool] | None = None,
    ) -> None:
        """``transport_class`` and ``auto_tick=False`` are for in-process test harnesses
        (``tests/fuzzy``): a transport of their own instead of TCP (it must fsync like
        :class:`_DurableTransport`), and ticks driven by the caller (``doTick``).
        ``prevote`` says whether pre-vote and leader stickiness are on now (every member
        advertises feature level 3; docs/design.md, "Elections: pre-vote and
        stickiness"); None: never."""
        self._rc_machine = machine
        self._rc_prevote = prevote
        self._rc_on_tick = on_tick
        self._rc_max_log_bytes = settings.compaction_max_bytes
        self._rc_log_bytes = 0  # the journal's command bytes when last seen changing
        self._rc_log_changed = 0.0  # and when (monotonic)
        self._rc_forced = -FORCED_COMPACTION_EVERY_S  # when a snapshot was last forced
        self._rc_failure: str | None = None  # a storage failure: this replica stopped
        self._rc_data_dir = str(settings.data_dir)
        self._rc_trace = _EntryTrace() if os.environ.get(TRACE_ENV) == "1" else None
        data = settings.data_dir
        data.mkdir(mode=0o700, parents=True, exist_ok=True)
        if fs is None:
            fs = hooks.current().raft_fs  # a test harness's (raftcron.hooks); else the OS
        store = SnapshotStore(str(data / "snapshot.bin"), machine.capture, machine.restore, fs)
        self._rc_store = store
        # With run-time membership changes on, pysyncobj takes its configuration from a
        # snapshot it loads. Until the membership is seeded (raftcron/membership.py) the
        # cluster file is the truth, as before changes existed: a snapshot written under
        # another file (a data dir moved, the old way of replacing a node) must not bring
        # back the old addresses. Once seeded, the snapshot's configuration is Raft's own.
        file_cluster = [settings.self_addr, *settings.peers]
        store.cluster_override = lambda: None if machine.read(_seeded) else list(file_cluster)
        seam.check()
        secrets = [settings.password]
        if settings.previous_password:
            secrets.append(settings.previous_password)
            logger.warning(
                "secret rotation window open: this node also accepts the previous cluster "
                "secret; remove previous_secret from the config once every node runs with "
                "the new one (docs/operations.md: Rotating the cluster secret)"
            )
        # The transport (GuardedTransport) reads it; pysyncobj gets no password, so it
        # derives no key of its own and its pickle wire is never used.
        self.wire_keyring = Keyring(secrets)
        # And the cluster id it checks peers against: the state's (a restore sets it).
        self.wire_cluster_id: Callable[[], str] = lambda: machine.read(_cluster_id_of)
        # And why a peer is refused for having been removed from the membership.
        self.wire_removed: Callable[[str], str | None] = lambda address: machine.read(
            lambda s: s.removed_reason(address)
        )
        unpickle.install()
        install_journal_factory(fs)
        conf = SyncObjConf(
            password=None,
            bindAddress=settings.self_addr,
            journalFile=str(data / "raft.journal"),
            fullDumpFile=str(data / "snapshot.bin"),
            serializer=store.serializer,
            deserializer=store.deserializer,
            serializeChecker=store.checker,
            appendEntriesUseBatch=False,
            appendEntriesPeriod=settings.append_period,
            raftMinTimeout=settings.min_timeout,
            raftMaxTimeout=settings.max_timeout,
            leaderFallbackTimeout=settings.min_timeout,
            connectionTimeout=3600.0,
            connectionRetryTime=0.5,
            tcp_keepalive=(5, 1, 3),
            logCompactionMinEntries=settings.compaction_min_entries,
            logCompactionMinTime=settings.compaction_min_time,
            # run-time membership changes (raftcron/membership.py): pysyncobj's membership
            # entries, appended only by the leader's membership control
            dynamicMembershipChange=True,
            commandsWaitLeader=True,
            autoTick=auto_tick,
        )
        super().__init__(
            settings.self_addr,
            list(settings.peers),
            conf,
            transportClass=transport_class or _DurableTransport,
        )
        self.addOnTickCallback(self._rc_tick)

    def hook_prevote(self) -> bool:
        gate = self._rc_prevote
        return gate is not None and gate()

    def sync_journal(self) -> None:
        journal = self.journal()
        if isinstance(journal, DurableJournal):
            journal.sync()

    def hook_tick(self, time_to_wait: float) -> None:
        if self._rc_failure is not None:
            # Storage failed: take no further part (no ack, vote or append leaves this
            # replica) while the node stops; pysyncobj's own destroy still runs.
            time.sleep(max(time_to_wait, 0.05))
            return
        try:
            # The leader counts itself in a majority at the top of a tick (pysyncobj's
            # commit computation counts the leader's whole log), including entries it
            # appended after the last sync (a new term's no-op, added while polling): make
            # them durable first. This sync is what keeps the leader from counting itself
            # early, now that its AppendEntries leave without one (_DurableTransport).
            trace = self._rc_trace
            if trace is not None:
                trace.tick_at = wall_s()
            self.sync_journal()
            try:
                self.pysyncobj_tick(time_to_wait)
                polled = wall_s() if trace is not None else 0.0
            finally:
                self._rc_release_acks()
            if trace is not None:  # a follower's new entries (the leader's: hook_appended)
                trace.note(self.log_index(), {"received": polled, "durable": wall_s()})
        except Exception as exc:
            if not self._rc_storage_failed(exc):
                raise

    def _rc_transport(self) -> _DurableTransport | None:
        transport = self.transport()
        return transport if isinstance(transport, _DurableTransport) else None

    def _rc_release_acks(self) -> None:
        transport = self._rc_transport()
        if transport is not None:
            transport.release_acks()

    def _rc_storage_failed(self, exc: Exception) -> bool:
        """Record ``exc`` as this replica's storage failure if it is one (the journal has
        failed, or an I/O error on a file such as an installed snapshot); True if so."""
        journal = self.journal()
        if isinstance(journal, DurableJournal) and journal.failed is not None:
            reason = storage_failure("journal", journal.path, journal.failed)
        elif isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
            path = exc.filename if isinstance(exc.filename, str) else self._rc_data_dir
            reason = storage_failure("file", path, exc)
        else:
            return False
        self._rc_fail(reason, exc)
        return True

    def _rc_fail(self, reason: str, exc: BaseException) -> None:
        if self._rc_failure is None:
            self._rc_failure = reason
        journal = self.journal()
        if isinstance(journal, DurableJournal):
            journal.refuse_writes(exc)

    def hook_snapshot_entry(self, first_piece: bytes) -> tuple[int, int] | None:
        return snapshot_last_entry(first_piece)

    def hook_snapshot_problem(self, path: str, last_piece: bytes) -> str | None:
        return snapshot_file_problem(path, last_piece)

    def hook_snapshot_loaded(self) -> bool:
        store: SnapshotStore | None = getattr(self, "_rc_store", None)
        return store is None or store.load_error is None

    def hook_appended(self) -> None:
        # The leader appends new commands and sends them to the followers (pysyncobj's
        # _checkCommandsToApply), without waiting for its own fsync; it syncs now, before
        # polling for the acks, so its fdatasync runs while the followers receive, write
        # and sync the same entries.
        trace = self._rc_trace
        if trace is None:
            self.sync_journal()
            return
        appended = wall_s()
        self.sync_journal()
        trace.note(
            self.log_index(), {"picked": trace.tick_at, "appended": appended, "durable": wall_s()}
        )

    def fatal(self) -> str | None:
        """Why this replica must not go on, if it must not (pysyncobj only logs these): one
        line naming the file and the fix."""
        if self._rc_failure is not None:
            return self._rc_failure
        journal = self.journal()
        if isinstance(journal, DurableJournal) and journal.failed is not None:
            return storage_failure("journal", journal.path, journal.failed)
        store = self._rc_store
        if store.write_error is not None:
            return storage_failure("snapshot", store.path, store.write_error)
        if store.load_error is not None:
            return f"snapshot could not be loaded: {store.load_error!r}"
        return None

    def _rc_tick(self) -> None:
        error = self._rc_store.write_error
        if error is not None:  # (written on the snapshot's own thread)
            self._rc_fail(storage_failure("snapshot", self._rc_store.path, error), error)
            return
        if self._rc_trace is not None:
            self._rc_trace.tick_done()
        self._rc_compact_if_large()
        self._rc_on_tick(self)
        # The last thing before pysyncobj polls its sockets and handles what arrived:
        # acks made while handling them are held until the tick returns (hook_tick), so
        # several AppendEntries read at once are acknowledged after one fsync.
        # (Released at the latest by the next tick's callbacks, should a subclass run
        # pysyncobj's tick without hook_tick.)
        transport = self._rc_transport()
        if transport is not None:
            transport.release_acks()
            transport.hold_acks()

    def _rc_compact_if_large(self) -> None:
        """Force a snapshot when the in-memory log holds ``compaction_max_bytes`` and has
        settled (or four times that): a 100,000-job config sync leaves ~25 MB of entries
        that would otherwise stay until ``compaction_min_time`` passed. pysyncobj takes
        the snapshot at the next tick, as it does for its own rules (nothing is deleted
        from the log before the snapshot is durable)."""
        journal = self.journal()
        if not isinstance(journal, DurableJournal):
            return
        size = journal.command_bytes
        now = monotonic()
        if size != self._rc_log_bytes:
            self._rc_log_bytes, self._rc_log_changed = size, now
        limit = self._rc_max_log_bytes
        if size < limit:
            return
        if size < 4 * limit and now - self._rc_log_changed < LOG_SETTLE_S:
            return
        if now - self._rc_forced < FORCED_COMPACTION_EVERY_S or self._rc_store.serializing:
            return
        self._rc_forced = now
        logger.info("raft log holds %.1f MB of entries: taking a snapshot", size / 1e6)
        self.forceLogCompaction()

    @replicated  # type: ignore[untyped-decorator]
    def apply_command(self, data: bytes) -> Result:
        # Single-node clusters send nothing before committing: sync here too.
        self.sync_journal()
        trace = self._rc_trace
        if trace is None:
            return self._rc_machine.apply(data)
        idx, started = self.applying_index(), wall_s()
        res = self._rc_machine.apply(data)
        trace.applied(idx, started, res)
        return res


class RaftNode:
    """A cluster member as seen from asyncio."""

    def __init__(self, settings: RaftSettings, machine: Machine) -> None:
        self.settings = settings
        self.machine = machine
        self.status = RaftStatus(self_addr=settings.self_addr)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._status_listeners: list[Callable[[RaftStatus], None]] = []
        self._replica: _Replica | None = None
        # pysyncobj's last-response times as they were when this node became leader (it
        # sets every peer to "now" then): a peer counts as responsive only once it answered.
        self._response_at_takeover: dict[Any, float] | None = None
        # Metrics hook: (command, seconds from propose to committed), on the loop.
        self.on_committed: Callable[[Command, float], None] | None = None
        self._lag = ApplyLag()  # tick thread only
        self._replication = ReplicationLag()  # tick thread only
        # Leadership transfers asked for on the loop, carried out on the tick thread:
        # (target raft address or None, callback(error code or "") called on the tick).
        self._transfers: list[tuple[str | None, Callable[[str], None]]] = []
        self._transfers_lock = threading.Lock()
        # Whether pre-vote and leader stickiness are on (every member at feature level 3
        # or later: the node sets this from the replicated member levels); asked on the
        # tick thread when an election timer fires or a vote request arrives.
        self.prevote_gate: Callable[[], bool] = lambda: False

    # -- lifecycle (call start() from the main thread, inside the running loop)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._replica = _Replica(
            self.settings, self.machine, self._on_tick, prevote=lambda: self.prevote_gate()
        )

    def stop(self) -> None:
        replica, self._replica = self._replica, None
        if replica is not None:
            replica.destroy_synchronous()

    def fatal(self) -> str | None:
        replica = self._replica
        return None if replica is None else replica.fatal()

    def add_status_listener(self, fn: Callable[[RaftStatus], None]) -> None:
        """``fn`` runs on the event loop whenever role, leader, term or ``ready`` change."""
        self._status_listeners.append(fn)

    def fsync_count(self) -> int:
        replica = self._replica
        if replica is None:
            return 0
        journal = replica.journal()
        return journal.fsync_count if isinstance(journal, DurableJournal) else 0

    # -- tick thread

    def _on_tick(self, replica: _Replica) -> None:
        self._run_transfers(replica)
        raw = replica.getStatus()
        leader = raw.get("leader")
        connected = frozenset(
            k.removeprefix("partner_node_status_server_")
            for k, v in raw.items()
            if k.startswith("partner_node_status_server_") and v == 2
        )
        match = tuple(
            sorted(
                (k.removeprefix("match_idx_server_"), int(v))
                for k, v in raw.items()
                if k.startswith("match_idx_server_")
            )
        )
        responsive: frozenset[str] = frozenset()
        config = replica.config_addresses()
        is_leader = bool(replica.is_leader())
        now = monotonic()
        quorum_at: float | None = None
        if is_leader:
            limit = self.settings.max_timeout * 1.5
            last = replica.last_response_times()
            if self._response_at_takeover is None or not self.status.is_leader:
                self._response_at_takeover = last
            initial = self._response_at_takeover
            responsive = frozenset(
                node.id for node, t in last.items() if now - t < limit and t != initial.get(node)
            )
            answered = [t for node, t in last.items() if t != initial.get(node)]
            quorum_at = quorum_heard_at(now, answered, len(config) + 1)
        else:
            self._response_at_takeover = None
        last_applied = int(raw["last_applied"])
        behind: tuple[tuple[str, float], ...] = ()
        if is_leader:
            term = int(raw["raft_term"])
            behind = self._replication.observe(now, term, int(raw["commit_idx"]), match)
        else:
            self._replication.reset()
        leader_commit = raw.get("leader_commit_idx")
        leader_commit = int(leader_commit) if leader_commit is not None else None
        behind_since = self._lag.observe(now, leader_commit, last_applied)
        new = RaftStatus(
            self_addr=self.settings.self_addr,
            is_leader=is_leader,
            leader=None if leader is None else str(leader.address),
            term=int(raw["raft_term"]),
            commit_index=int(raw["commit_idx"]),
            last_applied=last_applied,
            has_quorum=bool(raw["has_quorum"]),
            ready=bool(replica.isReady()),
            log_len=int(raw["log_len"]),
            connected=connected,
            responsive=responsive,
            match_index=match,
            at=now,
            leader_commit=leader_commit or 0,
            behind_since=behind_since,
            quorum_at=quorum_at,
            peer_behind_since=behind,
            config=config,
        )
        old = self.status
        self.status = new
        # ``ready`` (pysyncobj's: this node has applied what the leader had committed when
        # it first heard from one) is told once, queued behind the apply callbacks of the
        # entries replayed before it: the loop sees every replayed command before it.
        if (old.is_leader, old.leader, old.term, old.ready) != (
            new.is_leader,
            new.leader,
            new.term,
            new.ready,
        ):
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._notify, new)

    def _notify(self, status: RaftStatus) -> None:
        for fn in self._status_listeners:
            fn(status)

    # -- health (any thread: reads the status copied on the tick thread)

    def leader_fresh(self, now: float | None = None) -> bool:
        """This node leads and has heard from a majority within an election timeout
        (leadership freshness: pysyncobj's flag alone stays set while the tick thread is
        stalled, or until its own fallback timeout runs on that thread)."""
        st = self.status
        if not st.is_leader or st.quorum_at is None:
            return False
        now = monotonic() if now is None else now
        return now - st.quorum_at <= self.settings.max_timeout

    def apply_lag(self, now: float | None = None) -> float:
        """Seconds this node has been behind the leader's commit (0 when it is not). A
        status that stopped being copied (a stalled tick thread) counts as behind since
        it was last copied."""
        st = self.status
        if st.at == 0.0:
            return 0.0  # not started yet
        now = monotonic() if now is None else now
        if st.behind_since is not None:
            return max(0.0, now - st.behind_since)
        stalled = now - st.at
        return stalled if stalled > TICK_STALL_S else 0.0

    # -- leadership transfer

    async def transfer_leadership(self, target: str | None, timeout: float) -> str:  # noqa: ASYNC109 - a deadline is the contract
        """Hand leadership to ``target`` (a raft address; None: the most caught-up
        connected follower) with Raft's TimeoutNow, and wait until another member leads.

        Returns the new leader's raft address once this node has stepped down and another
        leader is known ("" if none is known within two election timeouts of stepping
        down: the target may have died meanwhile). Raises :class:`ProposalError` with code
        ``not_leader`` when this node does not lead, ``denied`` when the target is not a
        member, and :class:`ProposalTimeout` when leadership has not moved in time (the
        target must first be fully caught up; this retries until the deadline).
        """
        loop = asyncio.get_running_loop()
        deadline = monotonic() + timeout
        if not self.status.is_leader:
            raise ProposalError("not_leader", "this node is not the leader")
        term = self.status.term
        while True:
            st = self.status
            if not st.is_leader:
                until = min(deadline, monotonic() + 2 * self.settings.max_timeout)
                return await self._await_new_leader(until)
            if st.term > term:  # leads again in a later term: the transfer did not take
                raise ProposalTimeout(timeout)
            fut: asyncio.Future[str] = loop.create_future()

            def settle(code: str, fut: asyncio.Future[str] = fut) -> None:
                if not fut.done():
                    fut.set_result(code)

            def done(code: str) -> None:
                if not loop.is_closed():
                    loop.call_soon_threadsafe(settle, code)

            if self._replica is None:
                raise ProposalError("stopped", "raft node is not running")
            with self._transfers_lock:
                self._transfers.append((target, done))
            try:
                async with asyncio.timeout(max(0.0, deadline - monotonic())):
                    code = await fut
            except TimeoutError:
                raise ProposalTimeout(timeout) from None
            if code == "not_leader":
                raise ProposalError("not_leader", "this node is not the leader")
            if code == "denied" and target is not None and target not in self.status.config:
                raise ProposalError("denied", f"{target} is not another member of the cluster")
            # sent (or the target is not caught up yet): look again shortly
            wait = 0.6 if code == "" else 0.05
            await asyncio.sleep(min(wait, max(0.0, deadline - monotonic())))
            if monotonic() >= deadline and self.status.is_leader and self.status.term == term:
                raise ProposalTimeout(timeout)

    async def _await_new_leader(self, deadline: float) -> str:
        """The leader after this node stepped down, or "" if none is known by ``deadline``."""
        while True:
            st = self.status
            if not st.is_leader and st.leader is not None and st.leader != st.self_addr:
                return st.leader
            if monotonic() >= deadline:
                return ""
            await asyncio.sleep(0.02)

    def _run_transfers(self, replica: _Replica) -> None:
        """Carry out the transfers asked for since the last tick (tick thread)."""
        if not self._transfers:
            return
        with self._transfers_lock:
            asked, self._transfers = self._transfers, []
        for target, done in asked:
            got: list[str] = []

            def callback(res: Any, err: int, got: list[str] = got) -> None:
                got.append("" if err == FAIL_REASON.SUCCESS else _FAIL_NAMES.get(err, str(err)))

            try:
                replica.transferLeadership(target, callback)
            except Exception as exc:  # a bad address: pysyncobj's node class refused it
                got.append("denied")
                logger.warning("leadership transfer to %s refused: %r", target, exc)
            done(got[0] if got else "denied")

    # -- membership

    async def change_membership(self, op: str, address: str, timeout: float) -> bool:  # noqa: ASYNC109 - a deadline is the contract
        """Append Raft's own membership entry (``op`` add or remove of the member at raft
        ``address``; a leader only) and wait until it committed: True; False when it was
        not appended (not the leader, its no-op not committed yet, another change not
        committed yet) or lost. :class:`ProposalTimeout` when the deadline passes."""
        replica = self._replica
        if replica is None:
            raise ProposalError("stopped", "raft node is not running")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()

        def settle(ok: bool) -> None:
            if not fut.done():
                fut.set_result(ok)

        def callback(ok: bool) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(settle, ok)

        replica.change_membership(op, address, callback)
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            raise ProposalTimeout(timeout) from None

    # -- proposals

    async def propose(self, cmd: Command, timeout: float) -> Result:  # noqa: ASYNC109 - a deadline per proposal is the contract
        """Propose ``cmd``; its committed result, or ProposalError/ProposalTimeout."""
        replica = self._replica
        if replica is None:
            raise ProposalError("stopped", "raft node is not running")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Result] = loop.create_future()

        def settle(res: Any, err: int) -> None:
            if fut.done():
                return
            if err == FAIL_REASON.SUCCESS:
                fut.set_result(res if res is not None else Rejected(Reject.NO_RESULT))
            else:
                code = _FAIL_NAMES.get(err, str(err))
                fut.set_exception(ProposalError(code, f"proposal failed: {code}"))

        def callback(res: Any, err: int) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(settle, res, err)

        sent = monotonic()
        replica.apply_command(encode(cmd), callback=callback)
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the result when the
        # caller is cancelled in the same loop iteration as the commit arrives, so the
        # cancellation is lost. A queued run's renewal loop, cancelled when the run was
        # admitted, then went on renewing forever and its run never started (bench bursts,
        # and the chaos soak of 2026-11-28: clock-forward-leader).
        try:
            async with asyncio.timeout(timeout):
                res = await fut
        except TimeoutError:
            raise ProposalTimeout(timeout) from None
        hook = self.on_committed
        if hook is not None:
            hook(cmd, monotonic() - sent)
        return res
