"""The pysyncobj seam: the only module of raftcron that imports pysyncobj or touches its
internals (docs/design.md, "pysyncobj integration"; ``tests/unit/test_seam_boundary.py``
fails if any other module does).

pysyncobj is pinned to exactly :data:`PINNED_VERSION` (pyproject.toml and the lock files):
raftcron overrides name-mangled methods of its ``SyncObj``, reads private attributes and
replaces module globals, none of which is an interface pysyncobj keeps stable. Every such
name is listed once, in :data:`TOUCHED`, with the shape it must have; :func:`check` verifies
them all and the version, and the agent refuses to start when anything is off
(:class:`SeamError`, a message naming what is missing, the installed version and the fix).

What lives here:

* :class:`ReplicaBase`, pysyncobj's ``SyncObj`` with the fixes of its Raft bugs and its
  restricted apply path; raftcron's replica (:mod:`raftcron.raft.node`) subclasses it and
  gets told through ``hook_*`` methods, never touching ``SyncObj`` internals itself.
* :class:`TransportBase`, pysyncobj's ``TCPTransport`` with its handshake kept and its
  connections built by raftcron (:mod:`raftcron.raft.wire` subclasses it).
* :class:`JournalBase`, pysyncobj's journal interface; :func:`install_journal_factory`
  (its ``createJournal``) and :func:`install_unpickler` (its ``pickle.loads``/``load``).
* The few public pysyncobj names the rest of raftcron uses, re-exported.
* :func:`harness_time`, how an in-process test harness gives pysyncobj its time and
  randomness (pysyncobj reads them as module globals).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import inspect
import logging
import os
import textwrap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import pysyncobj.journal as _pjournal
import pysyncobj.pickle as _ppickle
import pysyncobj.serializer as _pserializer
import pysyncobj.syncobj as _psyncobj
import pysyncobj.tcp_connection as _ptcp
import pysyncobj.version as _pversion
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.dns_resolver import globalDnsResolver
from pysyncobj.encryptor import getEncryptor
from pysyncobj.node import TCPNode
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.syncobj import _RAFT_STATE
from pysyncobj.transport import TCPTransport, Transport

from raftcron.core.results import Reject
from raftcron.core.state import Rejected
from raftcron.raft import unpickle

logger = logging.getLogger(__name__)

PINNED_VERSION: Final = "0.3.17"

__all__ = [
    "CONNECTION_STATE",
    "FAIL_REASON",
    "NO_OP_ENTRY",
    "PINNED_VERSION",
    "POLL_EVENT_TYPE",
    "SERIALIZER_STATE",
    "TOUCHED",
    "BadEntry",
    "JournalBase",
    "MemoryJournal",
    "ReplicaBase",
    "SeamError",
    "SyncObjConf",
    "TCPNode",
    "Transport",
    "TransportBase",
    "addr_family",
    "check",
    "getEncryptor",
    "harness_time",
    "install_journal_factory",
    "install_unpickler",
    "regular_call",
    "replicated",
    "resolve_host",
    "unpickler_installed",
]

CONNECTION_STATE: Final = _ptcp.CONNECTION_STATE
MemoryJournal: Final = _pjournal.MemoryJournal
SESSION_KEY_BYTES: Final = 32  # pysyncobj's session keys (os.urandom(32) in its transport)


def addr_family(host: str) -> int:
    """The socket family of a host address, as pysyncobj picks it."""
    family: int = _ptcp._getAddrType(host)
    return family


def resolve_host(host: str) -> str:
    """A host name resolved by pysyncobj's (caching) resolver."""
    resolved: str = globalDnsResolver().resolve(host)
    return resolved


# --------------------------------------------------------------------------------------------
# What the seam touches, and the start-up check


@dataclass(frozen=True, slots=True)
class Need:
    """One pysyncobj name raftcron relies on, and the shape it must have.

    ``kind``: ``method`` (a callable on the class; ``params`` its parameter names after
    ``self`` when given), ``field`` (an attribute the class's own methods assign on
    ``self``: an instance attribute, found in its source), ``global`` (a module-level
    name; ``params`` as for a method when it is a function).
    """

    owner: str
    name: str
    kind: Literal["method", "field", "global"]
    params: tuple[str, ...] | None = None

    def label(self) -> str:
        return f"{self.owner}.{self.name}"


def _m(owner: str, name: str, *params: str) -> Need:
    return Need(owner, name, "method", params or None)


def _f(owner: str, name: str) -> Need:
    return Need(owner, name, "field")


def _g(owner: str, name: str, *params: str) -> Need:
    return Need(owner, name, "global", params or None)


# Every private (or patched) pysyncobj name this module overrides, calls, reads or
# replaces. docs/design.md, "pysyncobj integration", says why each is touched.
TOUCHED: Final[tuple[Need, ...]] = (
    # SyncObj: the replica
    _m("SyncObj", "_onTick", "timeToWait"),
    _m("SyncObj", "_checkCommandsToApply"),
    _m("SyncObj", "transferLeadership", "node", "callback"),
    _m("SyncObj", "_isLeader"),
    _m("SyncObj", "_SyncObj__onMessageReceived", "node", "message"),
    _m("SyncObj", "_SyncObj__doApplyCommand", "command"),
    _m("SyncObj", "_SyncObj__parseChangeClusterRequest", "command"),
    _m("SyncObj", "_SyncObj__doChangeCluster", "request", "reverse"),
    _m("SyncObj", "_SyncObj__getEntries", "fromIDx", "count", "maxSizeBytes"),
    _m("SyncObj", "_SyncObj__applyLogEntries"),
    _m("SyncObj", "_SyncObj__sendAppendEntries"),
    _f("SyncObj", "_SyncObj__raftLog"),
    _f("SyncObj", "_SyncObj__raftNextIndex"),
    _f("SyncObj", "_SyncObj__raftCurrentTerm"),
    _f("SyncObj", "_SyncObj__recvTransmission"),
    _f("SyncObj", "_SyncObj__lastResponseTime"),
    _f("SyncObj", "_SyncObj__conf"),
    _m("SyncObj", "_SyncObj__sendNextNodeIdx", "node", "reset", "nextNodeIdx", "success"),
    _m("SyncObj", "_SyncObj__loadDumpFile", "clearJournal"),
    _f("SyncObj", "_SyncObj__serializer"),
    _f("Serializer", "_Serializer__fileName"),
    _f("Serializer", "_Serializer__incomingTransmissionFile"),
    _m("SyncObj", "_SyncObj__getCurrentLogIndex"),
    _f("SyncObj", "_SyncObj__raftCommitIndex"),
    _f("SyncObj", "_SyncObj__raftLastApplied"),
    _f("SyncObj", "_SyncObj__leaderCommitIndex"),
    _f("SyncObj", "_SyncObj__transport"),
    # run-time membership changes (docs/design.md, "Membership")
    _f("SyncObj", "_SyncObj__otherNodes"),
    _m("SyncObj", "addNodeToCluster", "node", "callback"),
    _m("SyncObj", "removeNodeFromCluster", "node", "callback"),
    _f("SyncObj", "_idToMethod"),
    _f("SyncObj", "_poller"),
    # pre-vote and leader stickiness (the election path)
    _f("SyncObj", "_SyncObj__raftState"),
    _f("SyncObj", "_SyncObj__raftElectionDeadline"),
    _f("SyncObj", "_SyncObj__transferInProgress"),
    _f("SyncObj", "_SyncObj__raftLeader"),
    _f("SyncObj", "_SyncObj__selfNode"),
    _m("SyncObj", "_SyncObj__connectedToAnyone"),
    _m("SyncObj", "_SyncObj__generateRaftTimeout"),
    _m("SyncObj", "_SyncObj__getCurrentLogTerm"),
    _m("SyncObj", "_SyncObj__setCurrentTerm", "term", "votedForNodeId"),
    _m("SyncObj", "_SyncObj__setState", "newState"),
    _m("SyncObj", "_SyncObj__onLeaderChanged"),
    _g("pysyncobj.syncobj", "_RAFT_STATE"),
    # TCPTransport: the raft port
    _m("TCPTransport", "_createServer"),
    _m("TCPTransport", "_onTick"),
    _m("TCPTransport", "_onNewIncomingConnection", "conn"),
    _m("TCPTransport", "_onIncomingMessageReceived", "conn", "message"),
    _m("TCPTransport", "_onUtilityMessage", "conn", "message"),
    _m("TCPTransport", "_onOutgoingConnected", "conn"),
    _m("TCPTransport", "_onOutgoingMessageReceived", "conn", "message"),
    _m("TCPTransport", "_onMessageReceived", "node", "message"),
    _m("TCPTransport", "_onNodeConnected", "node"),
    _m("TCPTransport", "_onDisconnected", "conn"),
    _m("TCPTransport", "_connToNode", "conn"),
    _m("TCPTransport", "_shouldConnect", "node"),
    _m("TCPTransport", "addNode", "node"),
    _m("TCPTransport", "send", "node", "message"),
    _m("TCPTransport", "setOnUtilityMessageCallback", "message", "callback"),
    _f("TCPTransport", "_syncObj"),
    _f("TCPTransport", "_selfNode"),
    _f("TCPTransport", "_server"),
    _f("TCPTransport", "_nodes"),
    _f("TCPTransport", "_nodeAddrToNode"),
    _f("TCPTransport", "_connections"),
    _f("TCPTransport", "_unknownConnections"),
    # the journal interface (pysyncobj calls _destroy when the SyncObj is destroyed)
    _m("Journal", "_destroy"),
    # module globals replaced or read
    _g("pysyncobj.syncobj", "createJournal", "journalFile"),
    _g("pysyncobj.syncobj", "monotonicTime"),
    _g("pysyncobj.syncobj", "random"),
    _g("pysyncobj.pickle", "loads"),
    _g("pysyncobj.pickle", "load"),
    _g("pysyncobj.tcp_connection", "_getAddrType", "addr"),
)


class SeamError(RuntimeError):
    """The installed pysyncobj is not the one raftcron's seam was written against."""


def _targets() -> dict[str, Any]:
    return {
        "SyncObj": SyncObj,
        "TCPTransport": TCPTransport,
        "Journal": _pjournal.Journal,
        "Serializer": _pserializer.Serializer,
        "pysyncobj.syncobj": _psyncobj,
        "pysyncobj.pickle": _ppickle,
        "pysyncobj.tcp_connection": _ptcp,
    }


def _assigned_fields(cls: type) -> set[str]:
    """The attributes the methods of ``cls`` (and its bases) assign on ``self``, mangled
    as Python does (``self.__x`` in class ``C`` is ``_C__x``)."""
    found: set[str] = set()
    for klass in inspect.getmro(cls):
        if klass is object:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        for node in ast.walk(ast.parse(source)):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = list(node.targets)
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                ):
                    name = target.attr
                    if name.startswith("__") and not name.endswith("__"):
                        name = f"_{klass.__name__.lstrip('_')}{name}"
                    found.add(name)
    return found


def _params(fn: Any) -> tuple[str, ...] | None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    names = tuple(sig.parameters)
    return names[1:] if names[:1] == ("self",) else names


def problems(targets: Mapping[str, Any] | None = None, installed: str | None = None) -> list[str]:
    """What is wrong with the pysyncobj in use (``targets``/``installed`` replace the
    real ones in tests): one line per name that is missing or has another shape, and one
    for a version other than :data:`PINNED_VERSION`. Empty when all is well."""
    targets = _targets() if targets is None else targets
    installed = _pversion.VERSION if installed is None else installed
    out: list[str] = []
    fields: dict[str, set[str]] = {}
    for need in TOUCHED:
        owner = targets.get(need.owner)
        if owner is None:
            out.append(f"{need.label()} (its owner {need.owner} is missing)")
            continue
        if need.kind == "field":
            if not isinstance(owner, type):
                out.append(f"{need.label()} ({need.owner} is not a class)")
                continue
            if need.owner not in fields:
                fields[need.owner] = _assigned_fields(owner)
            if need.name not in fields[need.owner]:
                out.append(f"{need.label()} (instance attribute never assigned)")
            continue
        if not hasattr(owner, need.name):
            out.append(f"{need.label()} (missing)")
            continue
        value = getattr(owner, need.name)
        if need.kind == "method" and not callable(value):
            out.append(f"{need.label()} (not callable)")
            continue
        if need.params is not None:
            got = _params(value)
            if got is None or got[: len(need.params)] != need.params:
                want = ", ".join(need.params)
                out.append(f"{need.label()} (parameters {got!r}, expected ({want}, ...))")
    if installed != PINNED_VERSION:
        out.append(f"version {installed} installed, raftcron is pinned to {PINNED_VERSION}")
    return out


def check(targets: Mapping[str, Any] | None = None, installed: str | None = None) -> None:
    """Raise :class:`SeamError` unless the pysyncobj in use has every name in
    :data:`TOUCHED`, in the expected shape, and is :data:`PINNED_VERSION` exactly."""
    found = problems(targets, installed)
    if not found:
        return
    version = _pversion.VERSION if installed is None else installed
    raise SeamError(
        f"pysyncobj {version} does not match what raftcron touches inside it "
        f"(raftcron/raft/seam.py): {'; '.join(found)}. raftcron needs pysyncobj=="
        f"{PINNED_VERSION} exactly: reinstall raftcron from its lock file, or run "
        f"pip install 'pysyncobj=={PINNED_VERSION}' in its environment"
    )


# --------------------------------------------------------------------------------------------
# Module patches


def install_journal_factory(factory: Callable[[str | None], Any]) -> None:
    """Make every ``SyncObj`` built from now on get its journal from ``factory`` (called
    with the configured ``journalFile``, None for none). pysyncobj's own ``FileJournal``
    writes through mmap and never fsyncs (docs/design.md, "Durability")."""
    _psyncobj.createJournal = factory


def install_unpickler(loads: Callable[..., Any], load: Callable[..., Any]) -> None:
    """Route every unpickling pysyncobj does (log entries, membership requests, its
    pickle wire) through ``loads``/``load``; pysyncobj's modules all call through
    ``pysyncobj.pickle``. Idempotent."""
    _ppickle.loads = loads
    _ppickle.load = load


def unpickler_installed(loads: Callable[..., Any], load: Callable[..., Any]) -> bool:
    return _ppickle.loads is loads and _ppickle.load is load


@contextlib.contextmanager
def harness_time(monotonic: Callable[[], float], rng: Any) -> Iterator[None]:
    """For in-process test harnesses only: pysyncobj reads ``monotonicTime()`` and
    ``random.random()`` (election timeouts) as module globals of ``pysyncobj.syncobj``;
    point them at the harness's clock and random source while the block runs."""
    saved = (_psyncobj.monotonicTime, _psyncobj.random)
    _psyncobj.monotonicTime = monotonic
    _psyncobj.random = rng
    try:
        yield
    finally:
        _psyncobj.monotonicTime, _psyncobj.random = saved


# --------------------------------------------------------------------------------------------
# Log entries

# pysyncobj's entry kinds (the first byte of every log entry; pysyncobj.syncobj._COMMAND_TYPE)
_REGULAR: Final = b"\x00"
NO_OP_ENTRY: Final = b"\x01"  # a leader's no-op (raft/seed.py seeds a snapshot after one)
_MEMBERSHIP: Final = b"\x02"
_VERSION: Final = b"\x03"


class BadEntry(Exception):
    """A log entry or forwarded command that is not a call of a replicated method with
    command bytes (``reason`` says what it is instead). Nothing in it was run."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def regular_call(command: bytes) -> tuple[int, tuple[bytes, ...]]:
    """(method id, arguments) of a regular pysyncobj entry: ``pickle((id, (bytes, ...)))``
    (``(id, args, {})`` with ``sync=True``) after its kind byte, read by
    :func:`raftcron.raft.unpickle.safe_loads`. This is all raftcron writes (and all v0.1.0
    journals hold); anything else is :class:`BadEntry`."""
    if command[:1] != _REGULAR:
        raise BadEntry(f"entry kind {command[:1]!r} is not a regular command")
    try:
        call = unpickle.safe_loads(memoryview(command)[1:])
    except Exception as exc:
        raise BadEntry(f"{type(exc).__name__}: {exc}") from None
    # (id, args), or (id, args, {}) from a call with sync=True (pysyncobj pickles its
    # kwargs after popping them)
    if (
        type(call) is tuple
        and (len(call) == 2 or (len(call) == 3 and call[2] == {}))
        and type(call[0]) is int
        and type(call[1]) is tuple
        and all(type(a) is bytes for a in call[1])
    ):
        return call[0], call[1]
    raise BadEntry(f"not a call with command bytes: {_shape(call)}")


def _shape(value: Any) -> str:
    if type(value) is tuple:
        return "(" + ", ".join(type(v).__name__ for v in value[:4]) + ")"
    return type(value).__name__


# --------------------------------------------------------------------------------------------
# The replica


class ReplicaBase(SyncObj):  # type: ignore[misc]
    """pysyncobj's ``SyncObj`` with its Raft bugs fixed and its apply path restricted.

    Subclasses are told through hooks (and must not override pysyncobj's own names):

    * :meth:`hook_tick`: runs instead of pysyncobj's tick; call :meth:`pysyncobj_tick`
      from it to run pysyncobj's.
    * :meth:`hook_appended`: after pysyncobj appended new commands to the leader's log and
      sent them (``_checkCommandsToApply``).
    """

    _SyncObj__recvTransmission: Any  # pysyncobj's buffer of a chunked entry
    _SyncObj__raftCurrentTerm: int
    _SyncObj__raftCommitIndex: int
    _SyncObj__leaderCommitIndex: int | None
    _SyncObj__raftElectionDeadline: float
    _SyncObj__raftLeader: Any

    # The seam's own state (docs/design.md, "pysyncobj integration", bugs 4 to 8): who
    # voted for this candidate in which term; from which index a tail must survive
    # pysyncobj's append handler; a snapshot transmission being dropped as stale; whether
    # a snapshot was loaded.
    _seam_vote_term: int = -1
    _seam_voters: frozenset[Any] = frozenset()
    _seam_keep_after: int | None = None
    _seam_skip_snapshot: bool = False
    _seam_skip_to: int = 0  # the last entry of the snapshot being skipped
    _seam_dump_loaded: bool = False
    _seam_install_failed: int | None = None  # a snapshot failed to load: re-ask from here

    # Pre-vote and leader stickiness (docs/design.md, "Elections: pre-vote and
    # stickiness"): when this replica last heard an AppendEntries of a current leader
    # (pysyncobj's monotonic seconds); the term the pre-vote round in progress asks for
    # and who said yes; a won round whose election runs at the next tick; whether the
    # election pysyncobj starts this tick was asked for by TimeoutNow. Counters for tests
    # and the log.
    _seam_leader_heard: float = float("-inf")
    _seam_prevote_term: int | None = None
    _seam_prevoters: frozenset[Any] = frozenset()
    _seam_elect: bool = False
    _seam_prevote_rounds: int = 0
    _seam_votes_ignored: int = 0
    # A leadership transfer's TimeoutNow went out: this leader appends nothing new until
    # then (pysyncobj's monotonic seconds; :meth:`transferLeadership`), once per term.
    _seam_transfer_until: float = float("-inf")
    _seam_transfer_term: int = -1

    # -- reads of pysyncobj's state (tick thread)

    def journal(self) -> Any:
        """The Raft log object (the journal ``createJournal`` built)."""
        return self._SyncObj__raftLog

    def is_leader(self) -> bool:
        return bool(self._isLeader())

    def transport(self) -> Any:
        """The transport this replica sends through (its ``transportClass``)."""
        return self._SyncObj__transport

    def last_response_times(self) -> dict[Any, float]:
        """A leader's last-response time per peer node (pysyncobj's monotonic seconds)."""
        return dict(self._SyncObj__lastResponseTime)

    def log_index(self) -> int:
        """The index of the last entry in this replica's log."""
        return int(self._SyncObj__getCurrentLogIndex())

    def applying_index(self) -> int:
        """Inside an apply (``@replicated``): the index of the entry being applied
        (pysyncobj counts it applied only once its method returned)."""
        return int(self._SyncObj__raftLastApplied) + 1

    def config_addresses(self) -> frozenset[str]:
        """The Raft addresses of the other members in pysyncobj's configuration (tick
        thread: pysyncobj changes it there). With ``dynamicMembershipChange`` a membership
        entry takes effect when it is appended (Raft's single-server change), on a leader
        and on a follower alike, and at start from the snapshot and the replayed log."""
        return frozenset(str(node.id) for node in self._SyncObj__otherNodes)

    def change_membership(self, op: str, address: str, callback: Callable[[bool], None]) -> None:
        """Append pysyncobj's membership entry adding (``op == "add"``) or removing
        (``"remove"``) the member at Raft ``address``; ``callback(committed)`` runs on the
        tick thread once the entry committed (True) or was not appended or lost (False:
        pysyncobj appends one change at a time, and only on a leader whose no-op has
        committed). Any thread: pysyncobj queues it for its tick. Only raftcron's own
        membership control calls it, after the change committed in raftcron's log."""

        def done(_res: Any, err: Any) -> None:
            callback(err == FAIL_REASON.SUCCESS)

        if op == "add":
            self.addNodeToCluster(address, callback=done)
        elif op == "remove":
            self.removeNodeFromCluster(address, callback=done)
        else:
            raise ValueError(f"unknown membership change {op!r}")

    # -- hooks

    def hook_tick(self, time_to_wait: float) -> None:
        self.pysyncobj_tick(time_to_wait)

    def pysyncobj_tick(self, time_to_wait: float) -> None:
        transfer = self._seam_before_election()
        term = self._SyncObj__raftCurrentTerm
        SyncObj._onTick(self, time_to_wait)
        if (
            transfer
            and self._SyncObj__raftState == _RAFT_STATE.CANDIDATE
            and self._SyncObj__raftCurrentTerm == term + 1
            and self._seam_prevote_on()
        ):
            self._seam_transfer_votes()

    def hook_appended(self) -> None:
        """Nothing by default."""

    def hook_snapshot_entry(self, first_piece: bytes) -> tuple[int, int] | None:
        """(index, term) of the last entry of the snapshot a transmission starts with
        (its first piece), or None when that cannot be read from it."""
        return None

    def hook_snapshot_problem(self, path: str, last_piece: bytes) -> str | None:
        """Why the snapshot received so far (the file ``path``, then ``last_piece``) is not
        one whole snapshot, or None when it is (or cannot be checked): asked before
        pysyncobj replaces the local snapshot with it and loads it."""
        return None

    def hook_snapshot_loaded(self) -> bool:
        """Whether the snapshot pysyncobj just loaded was loaded (pysyncobj logs and
        swallows the deserializer's exception)."""
        return True

    def hook_prevote(self) -> bool:
        """Whether this replica runs pre-vote and leader stickiness now (raftcron: every
        member advertises feature level 3 or later). Asked when an election timer fires
        and when a vote request arrives. No by default: pysyncobj's plain election."""
        return False

    # -- pysyncobj's names

    def _onTick(self, timeToWait: float = 0.0) -> None:
        self.hook_tick(timeToWait)

    def transferLeadership(self, node: Any = None, callback: Any = None) -> None:
        """pysyncobj's TimeoutNow, after which this leader appends no new entry for up to
        one maximum election timeout, or until it steps down (Raft thesis 3.10: the leader
        stops accepting requests during a transfer). pysyncobj went on appending: an entry
        appended after the target was found caught up, and sent to the others but not yet
        to it, made them refuse the target's vote (its log is shorter), and a third member
        won the election after the timeouts; the transfer went elsewhere. The commands
        queued meanwhile wait in pysyncobj's queue: appended here if the transfer did not
        take, forwarded to the new leader if it did. Once per term: a transfer retried in
        the same term (the first did not take: the target cannot win, e.g. its requests do
        not get through) does not stop the writes again."""
        sent: list[bool] = []

        def done(res: Any, err: int) -> None:
            sent.append(err == FAIL_REASON.SUCCESS)
            if callback is not None:
                callback(res, err)

        super().transferLeadership(node, done)
        term = self._SyncObj__raftCurrentTerm
        if any(sent) and self._seam_transfer_term != term:
            now = _psyncobj.monotonicTime()
            self._seam_transfer_until = now + self._SyncObj__conf.raftMaxTimeout
            self._seam_transfer_term = term

    def _checkCommandsToApply(self) -> None:
        if (
            self._SyncObj__raftState == _RAFT_STATE.LEADER
            and _psyncobj.monotonicTime() < self._seam_transfer_until
        ):
            return  # a transfer in flight (transferLeadership): nothing new is appended
        super()._checkCommandsToApply()
        self.hook_appended()

    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:
        # pysyncobj 0.3.17 sets a follower's nextIndex back to the acked index on every
        # successful ack that raises its matchIndex, even when entries after it are already
        # on their way (sent before this ack arrived). The next AppendEntries then repeats
        # them, and the follower truncates its journal and appends them again (a full fsync
        # and a "truncating already-applied log entries" CRITICAL line). A success ack never
        # moves nextIndex backwards in Raft: keep the further one. A failure (reset) still
        # sets it back, and the follower rejects entries it cannot attach, so nothing lost
        # in flight goes unnoticed.
        mtype = message.get("type")
        if mtype == "pre_vote":
            self._seam_answer_prevote(node, message)
            return
        if mtype == "pre_vote_response":
            self._seam_count_prevote(node, message)
            return
        if mtype == "request_vote" and self._seam_ignores_vote(node, message):
            return
        if mtype == "append_entries":
            if message["term"] >= self._SyncObj__raftCurrentTerm:
                self._seam_heard_leader()
            else:
                self._seam_stale_leader(node)
        if mtype == "append_entries" and "transmission" in message:
            checked = self._seam_check_chunk(node, message)
            if checked is None:
                return
            message = checked
        elif mtype == "apply_command" and not self._seam_command_ok(node, message["command"]):
            return
        current = self._SyncObj__raftCurrentTerm
        if mtype == "append_entries" and message["term"] >= current:
            if "prevLogIdx" in message:
                self._seam_append(node, message)
                return
            if "serialized" in message:
                self._seam_snapshot(node, message)
                return
        if mtype == "response_vote" and message["term"] == current and not self._seam_vote(node):
            return  # a duplicate vote (bug 5): counted once
        if mtype == "next_node_idx" and message.get("term", current) > current:
            self._seam_newer_term(node, message["term"])
            return
        if mtype == "next_node_idx" and message.get("term", current) != current:
            return  # an ack sent in another term (bug 6)
        keep: int | None = None
        if mtype == "next_node_idx" and message.get("success") and not message.get("reset"):
            keep = self._SyncObj__raftNextIndex.get(node)
        super()._SyncObj__onMessageReceived(node, message)
        if keep is not None:
            next_index = self._SyncObj__raftNextIndex
            if node in next_index and next_index[node] < keep:
                next_index[node] = keep

    # -- pre-vote (Raft thesis 9.6) and leader stickiness (4.2.3)

    def _seam_prevote_on(self) -> bool:
        try:
            return bool(self.hook_prevote())
        except Exception:
            logger.exception("raft: the pre-vote gate failed; plain elections meanwhile")
            return False

    def _seam_majority(self, count: int) -> bool:
        return count > (len(self._SyncObj__otherNodes) + 1) / 2

    def _seam_log_ok(self, message: Mapping[str, Any]) -> bool:
        """Raft's election restriction: the sender's log is at least as up to date."""
        mine = self._SyncObj__getCurrentLogTerm()
        theirs = message["last_log_term"]
        if theirs != mine:
            return bool(theirs > mine)
        return bool(message["last_log_index"] >= self._SyncObj__getCurrentLogIndex())

    def _seam_leader_recent(self) -> bool:
        """This replica leads, or heard an AppendEntries of a current leader within the
        minimum election timeout."""
        if self._isLeader():
            return True
        since = _psyncobj.monotonicTime() - self._seam_leader_heard
        return bool(since < self._SyncObj__conf.raftMinTimeout)

    def _seam_heard_leader(self) -> None:
        self._seam_leader_heard = _psyncobj.monotonicTime()
        self._seam_prevote_term, self._seam_elect = None, False

    def _seam_before_election(self) -> bool:
        """Before pysyncobj's tick: if this follower's (or candidate's) election timer has
        fired, run a pre-vote round instead of the election, unless a round was just won
        or the election is a leadership transfer's (TimeoutNow: pysyncobj runs it; True is
        returned so that its vote requests go out again marked as a transfer's)."""
        if self._SyncObj__raftState == _RAFT_STATE.LEADER or self._SyncObj__selfNode is None:
            self._seam_prevote_term, self._seam_elect = None, False
            return False
        now = _psyncobj.monotonicTime()
        if self._SyncObj__raftElectionDeadline >= now or not self._SyncObj__connectedToAnyone():
            return False
        if self._SyncObj__transferInProgress:
            self._seam_prevote_term, self._seam_elect = None, False
            return True
        if self._seam_elect:
            self._seam_elect = False  # a won round: pysyncobj runs the election now
            return False
        if not self._seam_prevote_on() or self._seam_majority(1):
            return False
        term = self._SyncObj__raftCurrentTerm + 1
        self._SyncObj__raftElectionDeadline = now + self._SyncObj__generateRaftTimeout()
        if self._SyncObj__raftLeader is not None:
            # The leader is presumed gone, as when pysyncobj starts an election: commands
            # forwarded to it fail now (leader_changed), and the status shows no leader.
            self._SyncObj__raftLeader = None
            self._SyncObj__onLeaderChanged()
        self._seam_prevote_term, self._seam_prevoters = term, frozenset()
        self._seam_prevote_rounds += 1
        request = {
            "type": "pre_vote",
            "term": term,
            "last_log_index": self._SyncObj__getCurrentLogIndex(),
            "last_log_term": self._SyncObj__getCurrentLogTerm(),
        }
        logger.debug("raft: pre-vote for term %d", term)
        for peer in list(self._SyncObj__otherNodes):
            self._SyncObj__transport.send(peer, request)
        return False

    def _seam_answer_prevote(self, node: Any, message: Mapping[str, Any]) -> None:
        """Would this replica vote for ``node`` in the term it names? Yes when that term
        is later than this replica's, the sender's log is up to date, and no current
        leader was heard from within the minimum election timeout. Nothing here changes
        (no term, no vote, no election timer)."""
        term = message["term"]
        granted = (
            term > self._SyncObj__raftCurrentTerm
            and self._seam_log_ok(message)
            and not self._seam_leader_recent()
        )
        self._SyncObj__transport.send(
            node, {"type": "pre_vote_response", "term": term, "granted": granted}
        )

    def _seam_count_prevote(self, node: Any, message: Mapping[str, Any]) -> None:
        term = self._seam_prevote_term
        if term is None or message["term"] != term or not message["granted"]:
            return
        if term != self._SyncObj__raftCurrentTerm + 1:  # this replica's term moved on
            self._seam_prevote_term = None
            return
        self._seam_prevoters = self._seam_prevoters | {node}
        if self._seam_majority(len(self._seam_prevoters) + 1):
            logger.info("raft: pre-vote for term %d won: starting the election", term)
            self._seam_prevote_term, self._seam_elect = None, True
            self._SyncObj__raftElectionDeadline = 0.0

    def _seam_ignores_vote(self, node: Any, message: Mapping[str, Any]) -> bool:
        """Leader stickiness: with pre-vote on, a vote request is ignored (no term update,
        no vote) by the leader and by a replica that heard from a current leader within
        the minimum election timeout, unless it is a leadership transfer's."""
        if message.get("transfer") or not self._seam_leader_recent():
            return False
        if not self._seam_prevote_on():
            return False
        self._seam_votes_ignored += 1
        logger.debug(
            "raft: ignored a vote request of %s for term %d (a current leader is alive)",
            node,
            message["term"],
        )
        return True

    def _seam_transfer_votes(self) -> None:
        """The vote requests of an election TimeoutNow started, sent again marked as a
        transfer's: stickiness must not hold them up (the outgoing leader is still
        heard). A receiver that already voted ignores the copy (one vote per term)."""
        request = {
            "type": "request_vote",
            "term": self._SyncObj__raftCurrentTerm,
            "last_log_index": self._SyncObj__getCurrentLogIndex(),
            "last_log_term": self._SyncObj__getCurrentLogTerm(),
            "transfer": True,
        }
        for peer in list(self._SyncObj__otherNodes):
            self._SyncObj__transport.send(peer, request)

    def _seam_stale_leader(self, node: Any) -> None:
        """An AppendEntries of an older term: answer with this replica's term (Raft's
        reply to a stale leader; pysyncobj sent none). A replica whose term rose while it
        was cut off (an election before pre-vote was on, or a transfer's that failed)
        could otherwise never rejoin: stickiness ignores its vote requests and it ignores
        the leader. The leader steps down (:meth:`_seam_newer_term`)."""
        self._SyncObj__sendNextNodeIdx(node, reset=False, success=False)

    def _seam_newer_term(self, node: Any, term: int) -> None:
        """A reply in a later term than this replica's: adopt it and follow (Raft)."""
        if self._isLeader():
            logger.warning(
                "raft: %s answered in term %d, later than this leader's %d: stepping down",
                node,
                term,
                self._SyncObj__raftCurrentTerm,
            )
        self._SyncObj__setCurrentTerm(term, None)
        self._SyncObj__setState(_RAFT_STATE.FOLLOWER)
        self._SyncObj__raftLeader = None
        self._seam_prevote_term, self._seam_elect = None, False

    def _seam_entry_term(self, index: int) -> int | None:
        """The term of this replica's log entry at ``index``, None if it holds none."""
        log = self._SyncObj__raftLog
        if len(log) == 0:
            return None
        first = log[0][1]
        if not first <= index < first + len(log):
            return None
        term: int = log[index - first][2]
        return term

    def _seam_append(self, node: Any, message: dict[str, Any]) -> None:
        """An AppendEntries of the current term or later, handed to pysyncobj so that
        nothing in this replica's log is deleted unless it conflicts (bug 4).

        pysyncobj deletes every entry after ``prevLogIdx`` whenever there is one, even
        when the message's entries are all already there: a stale (delayed or duplicated)
        AppendEntries took committed, acknowledged, applied entries out of the log, and a
        replica lacking them could then win an election and commit something else at their
        index. Raft deletes only from the first entry that conflicts (same index, another
        term). So the entries this log already holds (same index and term) are taken off
        the message (its ``prevLogIdx`` moves up to the last of them); what is left starts
        at the first conflict, which pysyncobj deletes from, or after the end of the log.
        When nothing is left, the tail after the new ``prevLogIdx`` is kept (see
        ``_SyncObj__getEntries``). The commit index the message may raise this replica's
        to is capped at the message's last entry (Raft's rule: with the tail kept,
        pysyncobj's "last index of the log" could be an unverified entry of an old term).
        """
        prev_idx, prev_term = message["prevLogIdx"], message["prevLogTerm"]
        if self._seam_entry_term(prev_idx) != prev_term:
            super()._SyncObj__onMessageReceived(node, message)  # pysyncobj answers a reset
            return
        entries = list(message.get("entries") or ())
        last_new = entries[-1][1] if entries else prev_idx
        held = 0
        for _, index, term in entries:
            if self._seam_entry_term(index) != term:
                break
            held += 1
        if held:
            prev_idx, prev_term = entries[held - 1][1], entries[held - 1][2]
        rest = entries[held:]
        leader_commit = message["commit_index"]
        plain = {
            **message,
            "prevLogIdx": prev_idx,
            "prevLogTerm": prev_term,
            "entries": rest,
            "commit_index": min(leader_commit, last_new),
        }
        self._seam_keep_after = None if rest else prev_idx
        try:
            super()._SyncObj__onMessageReceived(node, plain)
        finally:
            self._seam_keep_after = None
        self._SyncObj__leaderCommitIndex = leader_commit

    def _seam_snapshot(self, node: Any, message: dict[str, Any]) -> None:
        """A piece of a snapshot (InstallSnapshot) of the current term or later.

        * A stale one (bug 7: delayed or duplicated, it would roll this replica back): a
          transmission whose snapshot ends at or below this replica's commit index, or at
          an entry its log holds, is not installed (Raft keeps the log then). pysyncobj
          still sees the message as a heartbeat (term, leader, election timer), and the
          leader is told, with the last piece, to go on from after the snapshot's last
          entry or this replica's commit index, whichever is later. A snapshot holds only
          committed entries, so one ending at an entry this log holds with the same term
          commits this log up to it (Raft, section 7: the log matches up to there).
          Answering "after my commit index" there instead (a restarted follower's
          commit index lags its log) sent a leader whose log starts after the snapshot
          the same snapshot again, forever: the follower never caught up (seen in a
          chaos kill-leader run, 2026-12-07).
        * Any piece that does not complete a snapshot pysyncobj loads raises no commit
          index (bug 8: pysyncobj raised it up to the end of this replica's log, entries
          no leader had vouched for).
        """
        data = message["serialized"]
        heartbeat = {k: v for k, v in message.items() if k not in ("serialized", "commit_index")}
        commit = self._SyncObj__raftCommitIndex
        heartbeat["commit_index"] = commit
        if data is not None:
            piece, first, last = data
            if first:
                entry = self.hook_snapshot_entry(bytes(piece))
                self._seam_skip_snapshot = entry is not None and (
                    entry[0] <= commit or self._seam_entry_term(entry[0]) == entry[1]
                )
                self._seam_skip_to = entry[0] if entry is not None else 0
            if self._seam_skip_snapshot:
                super()._SyncObj__onMessageReceived(node, heartbeat)
                self._SyncObj__leaderCommitIndex = message["commit_index"]
                if last:
                    self._seam_skip_snapshot = False
                    upto = max(commit, self._seam_skip_to)
                    if upto > commit:  # the snapshot vouches for this log up to its end
                        self._SyncObj__raftCommitIndex = upto
                        self._SyncObj__raftLog.setRaftCommitIndex(upto)
                    logger.info(
                        "raft: a snapshot from %s ending at an entry this log holds was not "
                        "installed; committed up to %d",
                        node,
                        upto,
                    )
                    self._SyncObj__sendNextNodeIdx(
                        node, reset=True, nextNodeIdx=upto + 1, success=True
                    )
                return
            if last:
                problem = self._seam_incoming_problem(bytes(piece))
                if problem is not None:
                    super()._SyncObj__onMessageReceived(node, heartbeat)
                    self._SyncObj__leaderCommitIndex = message["commit_index"]
                    logger.warning(
                        "raft: refused a snapshot from %s: %s (not installed; the local "
                        "snapshot and log are kept; asked for it again)",
                        node,
                        problem,
                    )
                    self._seam_ask_snapshot_again(node, commit)
                    return
        self._seam_dump_loaded = False
        self._seam_install_failed = commit
        try:
            super()._SyncObj__onMessageReceived(node, message)
        finally:
            self._seam_install_failed = None
        if not self._seam_dump_loaded and self._SyncObj__raftCommitIndex > commit:
            self._SyncObj__raftCommitIndex = commit
            self._SyncObj__raftLog.setRaftCommitIndex(commit)

    def _seam_incoming_problem(self, last_piece: bytes) -> str | None:
        """Why the snapshot whose last piece just arrived is not whole (bug 10), or None.
        A refused one is dropped here: pysyncobj never replaces the local snapshot with it."""
        serializer = self._SyncObj__serializer
        incoming = serializer._Serializer__incomingTransmissionFile
        name = serializer._Serializer__fileName
        if incoming is None or name is None:
            return None  # no transmission under way (pysyncobj ignores the piece)
        tmp = name + ".1.tmp"
        try:
            incoming.flush()
        except OSError as exc:
            problem: str | None = f"unwritable: {exc}"
        else:
            problem = self.hook_snapshot_problem(tmp, last_piece)
        if problem is not None:
            with contextlib.suppress(OSError):
                incoming.close()
            serializer._Serializer__incomingTransmissionFile = None
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return problem

    def _seam_ask_snapshot_again(self, node: Any, commit: int) -> None:
        """Tell the leader that no snapshot was installed: it goes on from after this
        replica's commit index (and sends a snapshot again when its log starts later)."""
        self._SyncObj__sendNextNodeIdx(node, reset=True, nextNodeIdx=commit + 1, success=False)

    def _SyncObj__loadDumpFile(self, clearJournal: bool) -> None:
        super()._SyncObj__loadDumpFile(clearJournal)
        # (pysyncobj swallows a failed load: only a loaded snapshot counts as one)
        self._seam_dump_loaded = bool(self.hook_snapshot_loaded())

    def _seam_vote(self, node: Any) -> bool:
        """Count ``node``'s vote for this candidate in the current term once (bug 5:
        pysyncobj counted every ``response_vote`` of the term, so a duplicated one made a
        candidate leader without a majority, and two leaders could share a term)."""
        term = self._SyncObj__raftCurrentTerm
        if self._seam_vote_term != term:
            self._seam_vote_term, self._seam_voters = term, frozenset()
        if node in self._seam_voters:
            return False
        self._seam_voters = self._seam_voters | {node}
        return True

    def _SyncObj__sendNextNodeIdx(
        self,
        node: Any,
        reset: bool = False,
        nextNodeIdx: int | None = None,
        success: bool = False,
    ) -> None:
        """pysyncobj's AppendEntries reply, with the term it is sent in (bug 6: a leader
        counted an ack sent to an earlier leader, or to itself in an earlier term, whose
        entries may since have been replaced, toward a commit)."""
        failed = self._seam_install_failed
        if failed is not None and success and not self._seam_dump_loaded:
            # pysyncobj acks a snapshot it failed to load (bug 10) as installed, at the end
            # of this replica's unchanged log: the leader would count entries it never
            # checked here toward a commit. Ask for the snapshot again instead.
            logger.warning(
                "raft: a snapshot from %s failed to load: not acknowledged, asked for again",
                node,
            )
            reset, success, nextNodeIdx = True, False, failed + 1
        if nextNodeIdx is None:
            nextNodeIdx = self._SyncObj__getCurrentLogIndex() + 1
        self._SyncObj__transport.send(
            node,
            {
                "type": "next_node_idx",
                "next_node_idx": nextNodeIdx,
                "reset": reset,
                "success": success,
                "term": self._SyncObj__raftCurrentTerm,
            },
        )

    def _seam_check_chunk(self, node: Any, message: dict[str, Any]) -> dict[str, Any] | None:
        """A chunk of a large entry as pysyncobj should see it, or None to drop it.

        Only chunks of the current term or later are looked at (pysyncobj ignores the
        others; decoding a deposed leader's 'finish' here broke the current transmission).

        * 'start': its data becomes a ``bytearray``, so pysyncobj's ``+=`` of the later
          chunks appends in place (with ``bytes`` every chunk copied all before it).
        * 'process' or 'finish' with no 'start' before: dropped (pysyncobj's ``+=`` on its
          initial ``''`` raised in the tick thread).
        * 'finish': the entry is decoded here, by the restricted unpickler, and handed to
          pysyncobj as a plain one-entry append. pysyncobj 0.3.17 labels a chunk 'finish'
          once ``pos + batch`` reaches the length of the entry's *command*, not of the
          pickled entry (57 bytes longer): when the command's length falls in those last 57
          bytes before a chunk boundary, a full-size chunk arrives as 'finish' before the
          real last one. Such a chunk does not complete the pickle and is relabelled
          'process' (unpickling the truncated buffer raised in the tick thread,
          ``failed _onTick``, losing the other messages of that read). An entry that is
          not ``(command bytes, index, term)``, or names any global, is refused and logged.
        """
        if message["term"] < self._SyncObj__raftCurrentTerm:
            return message  # a deposed leader's: pysyncobj ignores it, and so must we
        transmission = message["transmission"]
        if transmission == "start":
            return {**message, "data": bytearray(message["data"])}
        received: Any = self._SyncObj__recvTransmission
        if not isinstance(received, bytearray | bytes):
            logger.warning("raft: dropped a %r chunk from %s with no start", transmission, node)
            return None
        if transmission != "finish":
            return message
        data = message["data"]
        try:
            entry = unpickle.safe_loads(received + data)
        except unpickle.UnsafePickle as exc:
            self._seam_refuse_chunked(node, str(exc))
            return None
        except Exception:
            if len(data) >= self._SyncObj__conf.appendEntriesBatchSizeBytes:
                return {**message, "transmission": "process"}
            self._seam_refuse_chunked(node, "it does not decode")
            return None
        if not (
            type(entry) is tuple
            and len(entry) == 3
            and type(entry[0]) is bytes
            and type(entry[1]) is int
            and type(entry[2]) is int
        ):
            self._seam_refuse_chunked(node, f"it is a {type(entry).__name__}, not an entry")
            return None
        self._SyncObj__recvTransmission = ""
        plain = {k: v for k, v in message.items() if k not in ("transmission", "data")}
        plain["entries"] = [entry]
        return plain

    def _seam_refuse_chunked(self, node: Any, reason: str) -> None:
        self._SyncObj__recvTransmission = ""
        logger.error("raft: refused a chunked log entry from %s: %s (nothing ran)", node, reason)

    def _seam_command_ok(self, node: Any, command: bytes) -> bool:
        """A command forwarded to this node (to append if it leads) must be a call of a
        replicated method; anything else never enters the log."""
        try:
            method_id, _ = regular_call(command)
        except BadEntry as exc:
            logger.error("raft: refused a command forwarded by %s: %s", node, exc.reason)
            return False
        if method_id not in self._idToMethod:
            logger.error("raft: refused a command forwarded by %s: no method %d", node, method_id)
            return False
        return True

    def _SyncObj__applyLogEntries(self) -> bool:
        """A leader tells the followers a new commit index before it applies the entries,
        not after: pysyncobj applied them (and ran their callbacks, which wake the asyncio
        loop, which then competed with this thread for the GIL) and only then sent the
        AppendEntries that let the followers apply them too. The commit index sent is the
        one this tick computed (after the leader's own sync): nothing else changes."""
        early = (
            self._SyncObj__raftState == _RAFT_STATE.LEADER
            and self._SyncObj__raftCommitIndex > self._SyncObj__raftLastApplied
            and not self._SyncObj__conf.appendEntriesUseBatch
        )
        if early:
            self._SyncObj__sendAppendEntries()
        need_send: bool = SyncObj._SyncObj__applyLogEntries(self)
        return need_send and not early

    def _SyncObj__doApplyCommand(self, command: bytes) -> Any:
        """Apply one committed entry (pysyncobj's, restricted).

        A regular entry must be :func:`regular_call`; one that is not (a pickle naming a
        global, another shape) is logged and skipped, the same on every replica, and its
        caller gets ``Rejected("bad_entry")``. pysyncobj's membership entries are applied
        only with ``dynamicMembershipChange`` (pysyncobj applied them even without), and
        its code-version entries never (raftcron does not use them; pysyncobj retried an
        unsupported one on every tick).
        """
        kind = command[:1]
        if kind == _REGULAR:
            try:
                method_id, args = regular_call(command)
                method = self._idToMethod.get(method_id)
                if method is None:
                    raise BadEntry(f"no replicated method {method_id}")
            except BadEntry as exc:
                logger.error(
                    "raft: refused a committed log entry: %s (nothing was run; every replica "
                    "skips it)",
                    exc.reason,
                )
                return Rejected(Reject.BAD_ENTRY, f"log entry refused: {exc.reason}")
            return method(*args, _doApply=True)
        if kind == _MEMBERSHIP:
            if not self._SyncObj__conf.dynamicMembershipChange:
                logger.error("raft: refused a committed membership entry (membership is fixed)")
                return None
            request = self._SyncObj__parseChangeClusterRequest(command)
            if request is not None:
                self._SyncObj__doChangeCluster(request)
            return None
        if kind == _VERSION:
            logger.error("raft: refused a committed pysyncobj code-version entry (not used)")
        return None

    def _SyncObj__parseChangeClusterRequest(self, command: bytes) -> list[Any] | None:
        """pysyncobj's membership entry ``['add'|'rem', address, TCPNode]``, read by the
        restricted unpickler (TCPNode allowed), or None."""
        if command[:1] != _MEMBERSHIP:
            return None
        try:
            request = unpickle.safe_loads_membership(memoryview(command)[1:])
        except Exception as exc:
            logger.error("raft: refused a membership entry: %s", exc)
            return None
        if (
            type(request) is list
            and len(request) == 3
            and request[0] in ("add", "rem")
            and type(request[1]) is str
            and type(request[2]) is TCPNode
            and request[2].id == request[1]
        ):
            return request
        logger.error("raft: refused a membership entry that is a %s", type(request).__name__)
        return None

    def _SyncObj__getEntries(
        self, fromIDx: int | None, count: int | None = None, maxSizeBytes: int | None = None
    ) -> list[Any]:
        # A batch for AppendEntries (maxSizeBytes set) ends before an entry of
        # maxSizeBytes or more that is not its first: pysyncobj sent such an entry whole
        # inside the batch (a frame as large as the entry), while as the first of the next
        # batch it goes in chunks of appendEntriesBatchSizeBytes.
        #
        # An empty log has no entries (pysyncobj indexed its first one and raised).
        #
        # During _seam_append, the entry at ``_seam_keep_after`` alone when asked for it
        # and all after it (pysyncobj's append handler: it deletes whatever follows).
        if len(self._SyncObj__raftLog) == 0:
            return []
        entries: list[Any] = super()._SyncObj__getEntries(fromIDx, count, maxSizeBytes)
        if (
            fromIDx is not None
            and fromIDx == self._seam_keep_after
            and count is None
            and maxSizeBytes is None
        ):
            return entries[:1]
        if maxSizeBytes is not None and len(entries) > 1 and len(entries[-1][0]) >= maxSizeBytes:
            return entries[:-1]
        return entries


# --------------------------------------------------------------------------------------------
# The journal


class JournalBase(_pjournal.Journal):  # type: ignore[misc]
    """pysyncobj's journal interface; subclasses implement :meth:`close` (pysyncobj calls
    its ``_destroy`` when the ``SyncObj`` is destroyed) and the public methods."""

    def close(self) -> None:
        """Nothing by default."""

    def _destroy(self) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# The transport


class TransportBase(TCPTransport):  # type: ignore[misc]
    """pysyncobj's ``TCPTransport`` whose connections and server raftcron builds
    (:class:`raftcron.raft.wire.GuardedTransport`), with pysyncobj's handshake kept:
    the dialling member sends a session key, the accepting member answers with its own,
    the dialling member sends its address. Utility messages (pysyncobj's admin tool) and
    read-only nodes are refused.

    Subclasses implement :meth:`make_server`, :meth:`new_connection`, :meth:`refuse`
    (close a connection, saying why), :meth:`forget` (a connection's handshake is over or
    it is gone), :meth:`peer_connected` (a member's connection is established) and may
    extend :meth:`before_tick`, :meth:`member_hello` and :meth:`admit_member`.
    :meth:`adopt_incoming` hands pysyncobj an accepted connection, :meth:`drop_incoming`
    takes it back.
    """

    # -- for subclasses

    @property
    def syncobj(self) -> Any:
        return self._syncObj

    @property
    def poller(self) -> Any:
        return self._syncObj._poller

    @property
    def self_address(self) -> str:
        address: str = self._selfNode.address
        return address

    def connection_of(self, node: Any) -> Any:
        return self._connections.get(node)

    def make_server(self, host: str, port: int) -> Any:
        raise NotImplementedError

    def new_connection(self, peer: str) -> Any:
        raise NotImplementedError

    def refuse(self, conn: Any, code: str, reason: str) -> None:
        raise NotImplementedError

    def forget(self, conn: Any) -> None:
        """Nothing by default."""

    def peer_connected(self, conn: Any) -> None:
        """Nothing by default."""

    def describe(self, message: Any) -> str:
        return type(message).__name__

    def before_tick(self) -> None:
        """Nothing by default."""

    def member_hello(self) -> Any:
        """The member message this member sends once its dialled connection has the
        peer's session key (by default its address, as pysyncobj sends it)."""
        return self._selfNode.address

    def admit_member(self, conn: Any, message: Any) -> bool:
        """Whether the member message ``message`` (of a configured member that dials this
        one) is admitted; a subclass that says no has refused ``conn`` itself."""
        return True

    def adopt_incoming(self, conn: Any) -> None:
        self._unknownConnections.add(conn)
        conn.setOnMessageReceivedCallback(functools.partial(self._onIncomingMessageReceived, conn))
        conn.setOnDisconnectedCallback(functools.partial(self._onDisconnected, conn))

    def drop_incoming(self, conn: Any) -> None:
        self._unknownConnections.discard(conn)

    # -- pysyncobj's names

    def _createServer(self) -> None:
        conf = self._syncObj.conf
        bind = conf.bindAddress
        if bind is not None:
            host, port = bind.rsplit(":", 1)
        else:
            host, port = self._selfNode.address.rsplit(":", 1)
            host = "::" if ":" in host else "0.0.0.0"
        if host not in ("0.0.0.0", "::"):
            host = resolve_host(host)
        self._server = self.make_server(host, int(port))

    def addNode(self, node: Any) -> None:
        self._nodes.add(node)
        self._nodeAddrToNode[node.address] = node
        if self._shouldConnect(node):
            conn = self.new_connection(node.address)
            conn.setOnConnectedCallback(functools.partial(self._onOutgoingConnected, conn))
            conn.setOnMessageReceivedCallback(functools.partial(self._onMessageReceived, node))
            conn.setOnDisconnectedCallback(functools.partial(self._onDisconnected, conn))
            self._connections[node] = conn

    def setOnUtilityMessageCallback(self, message: str, callback: Any) -> None:
        """Ignored: pysyncobj's utility messages are refused on this port."""

    def _onNewIncomingConnection(self, conn: Any) -> None:
        raise NotImplementedError("connections are accepted by adopt_incoming")

    def _onUtilityMessage(self, conn: Any, message: Any) -> bool:
        self.refuse(conn, "utility", "pysyncobj utility messages are refused on the raft port")
        return True

    def _onIncomingMessageReceived(self, conn: Any, message: Any) -> None:
        if conn.sendRandKey is None:
            if not isinstance(message, bytes):
                self.refuse(
                    conn, "handshake", f"expected a session key, got {self.describe(message)}"
                )
                return
            conn.sendRandKey = message
            conn.recvRandKey = os.urandom(SESSION_KEY_BYTES)
            conn.send(conn.recvRandKey)
            return
        if isinstance(message, list):
            self._onUtilityMessage(conn, message)
            return
        if message == "readonly":
            self.refuse(conn, "readonly", "read-only connections are refused on the raft port")
            return
        node = self._nodeAddrToNode.get(message) if isinstance(message, str) else None
        if node is None:
            self.refuse(conn, "unknown_node", f"not a cluster member: {self.describe(message)}")
            return
        if self._shouldConnect(node):
            # Of two members, the one with the greater address dials (pysyncobj), and every
            # member has the same file: this one dials that address itself.
            self.refuse(conn, "wrong_direction", f"claims to be {message}, which this node dials")
            return
        if not self.admit_member(conn, message):
            return
        self.forget(conn)
        self._unknownConnections.discard(conn)
        old = self._connections.get(node)
        self._connections[node] = conn
        if old is not None and old is not conn:
            old.disconnect()  # the member reconnected: its old connection is dead
        self.peer_connected(conn)
        conn.setOnMessageReceivedCallback(functools.partial(self._onMessageReceived, node))
        self._onNodeConnected(node)

    def _onOutgoingConnected(self, conn: Any) -> None:
        conn.setOnMessageReceivedCallback(functools.partial(self._onOutgoingMessageReceived, conn))
        conn.recvRandKey = os.urandom(SESSION_KEY_BYTES)
        conn.send(conn.recvRandKey)

    def _onOutgoingMessageReceived(self, conn: Any, message: Any) -> None:
        if not isinstance(message, bytes):
            self.refuse(conn, "handshake", f"expected a session key, got {self.describe(message)}")
            return
        conn.sendRandKey = message
        conn.send(self.member_hello())
        node = self._connToNode(conn)
        conn.setOnMessageReceivedCallback(functools.partial(self._onMessageReceived, node))
        self._onNodeConnected(node)

    def send(self, node: Any, message: Any) -> bool:
        # Not before the handshake is done: pysyncobj marks a dialled connection connected
        # as soon as TCP is, and sent a vote request there without the session key (the
        # peer dropped the connection).
        conn = self._connections.get(node)
        if conn is None or conn.sendRandKey is None:
            return False
        ok: bool = super().send(node, message)
        return ok

    def _onMessageReceived(self, node: Any, message: Any) -> None:
        if type(message) is not dict:
            conn = self._connections.get(node)
            if conn is not None:
                self.refuse(conn, "malformed", f"unexpected {self.describe(message)} from {node}")
            return
        super()._onMessageReceived(node, message)

    def _onDisconnected(self, conn: Any) -> None:
        self.forget(conn)
        super()._onDisconnected(conn)

    def _onTick(self) -> None:
        self.before_tick()
        super()._onTick()
