"""An in-process cluster of real raftcron replicas over a fault-injecting network.

Each member is the real :class:`raftcron.raft.node._Replica` (pysyncobj's ``SyncObj``
with raftcron's durable journal, snapshot store and message hooks) applying real
:mod:`raftcron.core.commands` to a real :class:`~raftcron.core.state.State`. What is
replaced, and only inside this harness:

* the transport: :class:`FuzzTransport` hands messages to :class:`Network`, which drops,
  delays, duplicates and reorders them, partitions members (links go down, and after a
  detection delay both ends are told the connection is gone, as TCP's user timeout
  does) and loses what is in flight to a crashed member;
* the ticks: pysyncobj runs with ``autoTick=False`` and the harness calls ``doTick(0)``
  on every live member once per step, in a fixed order;
* time and randomness: :func:`harness_time` points pysyncobj's ``monotonicTime`` and
  ``random`` (election timeouts) at a :class:`FakeClock` and at per-member seeded RNGs;
* disks: every member writes through its own :class:`CrashableFileOps` (no real fsync),
  so a crash drops exactly what was never fsynced;
* snapshots: written on raftcron's snapshot thread as in production, but the harness
  waits for that thread after each tick, so its outcome is seen at the next tick.

With all of that, one seed replays the same run exactly: the workload, the faults and
the interleaving (a run prints a trace digest to compare). Per-link RNGs make the
network's choices independent of the order in which pysyncobj walks its sets of peers
(which follows Python's salted string hashes).

Time and randomness reach pysyncobj through the seam (:func:`raftcron.raft.seam.harness_time`):
the only patch of pysyncobj this harness makes.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import pickle
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raftcron.core.commands import Command, decode
from raftcron.core.state import Result, State
from raftcron.raft import seam
from raftcron.raft.journal import CrashableFileOps
from raftcron.raft.node import Machine, RaftSettings, _leaves_before_sync, _Replica

T0_MS = 1_800_000_000_000  # the wall clock at fake time 0


class FakeClock:
    """Seconds since the run started; only the harness moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def advance(self, seconds: float) -> None:
        self.now = round(self.now + seconds, 6)

    def monotonic(self) -> float:
        return 1000.0 + self.now

    def wall_ms(self) -> int:
        return T0_MS + round(self.now * 1000)


class _RandomSwitch:
    """Stands in for the ``random`` module inside pysyncobj: draws from the RNG of the
    member the harness is running at the moment."""

    def __init__(self) -> None:
        self.current = random.Random(0)

    def random(self) -> float:
        return self.current.random()


@contextlib.contextmanager
def harness_time(clock: FakeClock, switch: _RandomSwitch) -> Iterator[None]:
    """pysyncobj's time and election randomness come from the harness during a run."""
    with seam.harness_time(clock.monotonic, switch):
        yield


# --------------------------------------------------------------------------------------
# The network


@dataclass
class Faults:
    """Per-message fault rates (the run's "weather"; the driver changes them)."""

    drop: float = 0.0
    duplicate: float = 0.0
    delay_min: float = 0.001
    delay_max: float = 0.004
    slow: float = 0.0  # chance of a long delay (reorders behind later messages)
    slow_max: float = 0.3
    # As TCP: a link delivers in order and never twice, and a lost message breaks the
    # connection (both ends are told; what was in flight is gone; it reconnects later).
    tcp: bool = False


@dataclass(order=True)
class _Flight:
    # Ties in time go by link and by send order on the link, never by the order sends
    # to different peers happened in (that follows pysyncobj's set iteration).
    at: float
    src: str
    dst: str
    seq: int
    payload: bytes = field(compare=False)


class Network:
    """Every message between members passes through here (pickled: no sharing)."""

    DETECT_S = 1.0  # a link that carries nothing is reported down after this
    RECONNECT_S = 0.5  # pysyncobj's connectionRetryTime in raftcron

    def __init__(self, clock: FakeClock, seed: int, names: list[str]) -> None:
        self.clock = clock
        self.seed = seed
        self.names = names
        self.faults = Faults()
        self._queue: list[_Flight] = []
        self._seq = 0
        self._links: dict[tuple[str, str], random.Random] = {}
        self.blocked: set[tuple[str, str]] = set()  # directed links that drop everything
        self.blocked_since: dict[tuple[str, str], float] = {}
        # Whether each end sees its connection to the other (symmetric, as TCP).
        self.connected: set[frozenset[str]] = set()
        self.down_since: dict[frozenset[str], float] = {}
        self.transports: dict[str, FuzzTransport] = {}
        self.reset: set[frozenset[str]] = set()  # connections a lost message broke (tcp)
        self._last_at: dict[tuple[str, str], float] = {}
        self.alive: set[str] = set()
        self.sent = 0
        self.dropped = 0
        self.duplicated = 0
        self.delivered = 0
        self.trace = hashlib.sha256()

    def _rng(self, src: str, dst: str) -> random.Random:
        rng = self._links.get((src, dst))
        if rng is None:
            rng = random.Random(f"{self.seed}/{src}->{dst}")
            self._links[(src, dst)] = rng
        return rng

    # -- sending (called from pysyncobj through FuzzTransport.send)

    def send(self, src: str, dst: str, message: Any) -> bool:
        if frozenset((src, dst)) not in self.connected:
            return False
        self.sent += 1
        rng = self._rng(src, dst)
        f = self.faults
        # (draw every number whatever the outcome: a link's stream stays aligned)
        drop, dup, slow = rng.random(), rng.random(), rng.random()
        delay = rng.uniform(f.delay_min, f.delay_max)
        late = rng.uniform(0.0, f.slow_max)
        if (src, dst) in self.blocked:
            self.dropped += 1
            return True  # TCP would have taken it into its buffer
        if drop < f.drop:
            self.dropped += 1
            if f.tcp:
                self.reset.add(frozenset((src, dst)))
            return True
        if slow < f.slow:
            delay += late
        at = self.clock.now + delay
        if f.tcp:
            at = max(at, self._last_at.get((src, dst), 0.0))
            self._last_at[(src, dst)] = at
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._push(at, src, dst, payload)
        if dup < f.duplicate and not f.tcp:
            self.duplicated += 1
            self._push(self.clock.now + delay + rng.uniform(0.0, 0.05), src, dst, payload)
        return True

    def _push(self, at: float, src: str, dst: str, payload: bytes) -> None:
        self._seq += 1
        heapq.heappush(self._queue, _Flight(round(at, 6), src, dst, self._seq, payload))

    # -- the harness side

    def deliver_due(self, before: Callable[[str], None]) -> None:
        """Hand every message due by now to its destination, in (time, send order)."""
        now = self.clock.now
        while self._queue and self._queue[0].at <= now:
            flight = heapq.heappop(self._queue)
            if flight.dst not in self.alive or frozenset((flight.src, flight.dst)) not in (
                self.connected
            ):
                continue  # the connection broke while it was in flight
            transport = self.transports.get(flight.dst)
            if transport is None:
                continue
            self.delivered += 1
            self.trace.update(b"%s>%s:" % (flight.src.encode(), flight.dst.encode()))
            self.trace.update(hashlib.sha1(flight.payload).digest())
            before(flight.dst)
            transport.receive(flight.src, pickle.loads(flight.payload))

    def update_links(self, before: Callable[[str], None]) -> None:
        """Connect and disconnect members as a TCP transport would notice."""
        now = self.clock.now
        for i, a in enumerate(self.names):
            for b in self.names[i + 1 :]:
                pair = frozenset((a, b))
                up = a in self.alive and b in self.alive
                cut = (a, b) in self.blocked or (b, a) in self.blocked
                if pair in self.connected:
                    since = max(
                        self.blocked_since.get((a, b), -1.0), self.blocked_since.get((b, a), -1.0)
                    )
                    if not up or (cut and now - since >= self.DETECT_S) or pair in self.reset:
                        self._disconnect(a, b, before)
                elif up and not cut and now - self.down_since.get(pair, -9.0) >= self.RECONNECT_S:
                    self._connect(a, b, before)

    def _connect(self, a: str, b: str, before: Callable[[str], None]) -> None:
        self.connected.add(frozenset((a, b)))
        for x, y in ((a, b), (b, a)):
            before(x)
            self.transports[x].peer_connected(y)

    def _disconnect(self, a: str, b: str, before: Callable[[str], None]) -> None:
        pair = frozenset((a, b))
        self.connected.discard(pair)
        self.reset.discard(pair)
        self.down_since[pair] = self.clock.now
        for x, y in ((a, b), (b, a)):
            if x in self.alive and x in self.transports:
                before(x)
                self.transports[x].peer_disconnected(y)

    def block(self, src: str, dst: str) -> None:
        if (src, dst) not in self.blocked:
            self.blocked.add((src, dst))
            self.blocked_since[(src, dst)] = self.clock.now

    def heal(self) -> None:
        self.blocked.clear()
        self.blocked_since.clear()

    def pending(self) -> int:
        return len(self._queue)


class FuzzTransport(seam.Transport):  # type: ignore[misc]
    """pysyncobj's transport for a member of the fuzz cluster (built by SyncObj itself:
    the network is found through the address of the member being built)."""

    registry: dict[str, tuple[Network, str]] = {}  # raft address -> (network, name)

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:
        super().__init__(syncObj, selfNode, otherNodes)
        self._syncObj = syncObj
        self.network, self.name = self.registry[selfNode.id]
        self.by_name = {self.registry[n.id][1]: n for n in otherNodes}
        self.network.transports[self.name] = self

    def send(self, node: Any, message: Any) -> bool:
        # As _DurableTransport: nothing but the leader's appends leaves before an fsync.
        if not _leaves_before_sync(message):
            self._syncObj.sync_journal()
        return self.network.send(self.name, self.registry[node.id][1], message)

    def receive(self, src: str, message: Any) -> None:
        self._onMessageReceived(self.by_name[src], message)

    def peer_connected(self, name: str) -> None:
        self._onNodeConnected(self.by_name[name])

    def peer_disconnected(self, name: str) -> None:
        self._onNodeDisconnected(self.by_name[name])

    def destroy(self) -> None:
        if self.network.transports.get(self.name) is self:
            del self.network.transports[self.name]


# --------------------------------------------------------------------------------------
# Members


class RecordingMachine(Machine):
    """The real Machine, telling the cluster every entry it applies (and at which index)."""

    def __init__(self, member: Member) -> None:
        super().__init__()
        self.member = member

    def apply(self, data: bytes) -> Result:
        member = self.member
        replica = member.replica
        index = 0 if replica is None else replica.raftLastApplied + 1
        before = self.read(member.cluster.effect)
        res = self._apply_once(data)
        after = self.read(member.cluster.effect)
        member.cluster.on_apply(member, index, data, res, before, after)
        return res

    def _apply_once(self, data: bytes) -> Result:
        """What the replica does with a committed entry (the tests break it here)."""
        return super().apply(data)


@dataclass
class Member:
    name: str
    addr: str
    data_dir: Path
    cluster: Cluster
    rng: random.Random
    fs: CrashableFileOps = field(default_factory=CrashableFileOps)
    replica: _Replica | None = None
    machine: RecordingMachine | None = None
    incarnation: int = 0

    @property
    def alive(self) -> bool:
        return self.replica is not None

    def state(self) -> State:
        assert self.machine is not None
        return self.machine.read(lambda s: s)


MachineFactory = Callable[[Member], RecordingMachine]


class Cluster:
    """N members, their network and the verifiers' raw records."""

    def __init__(
        self,
        root: Path,
        size: int,
        seed: int,
        clock: FakeClock,
        machine_factory: MachineFactory = RecordingMachine,
        compaction_min_entries: int = 400,
        prevote: bool = True,
    ) -> None:
        self.clock = clock
        # Pre-vote and leader stickiness (the replicas' gate; in production: every member
        # at feature level 3). Tests turn it off to run the plain election.
        self.prevote = prevote
        self.seed = seed
        self.switch = _RandomSwitch()
        self.machine_factory = machine_factory
        self.compaction_min_entries = compaction_min_entries
        names = [f"n{i}" for i in range(size)]
        self.network = Network(clock, seed, names)
        self.members: dict[str, Member] = {}
        for i, name in enumerate(names):
            # (no socket is ever opened: the address only names the member to pysyncobj)
            addr = f"fuzz-{name}:{7000 + i}"
            self.members[name] = Member(
                name=name,
                addr=addr,
                data_dir=root / name,
                cluster=self,
                rng=random.Random(f"{seed}/raft/{name}"),
            )
            FuzzTransport.registry[addr] = (self.network, name)
        # Raw records for the verifiers (tests/fuzzy/verify.py)
        self.log: dict[int, bytes] = {}  # committed index -> command bytes (first applier)
        self.first_effect: dict[bytes, int] = {}  # command bytes -> lowest index it acted at
        # a Plan's bytes -> index applied at -> the run ids that copy acted on
        self.plan_acted: dict[bytes, dict[int, set[str]]] = {}
        self.applied: dict[str, list[int]] = {n: [] for n in names}  # per incarnation
        self.grants: dict[str, tuple[int, str]] = {}  # run id -> (fence, node), first grant
        self.violations: list[str] = []
        self.applies = 0

    # -- lifecycle

    def start(self, name: str) -> None:
        m = self.members[name]
        assert m.replica is None
        m.incarnation += 1
        m.machine = self.machine_factory(m)
        settings = RaftSettings(
            self_addr=m.addr,
            peers=[o.addr for o in self.members.values() if o.name != name],
            password="fuzz-secret-0123456789",
            data_dir=m.data_dir,
            compaction_min_entries=self.compaction_min_entries,
        )
        self.switch.current = m.rng
        self.applied[name] = []
        m.replica = _Replica(
            settings,
            m.machine,
            lambda r: None,
            fs=m.fs,
            transport_class=FuzzTransport,
            auto_tick=False,
            prevote=lambda: self.prevote,
        )
        self.network.alive.add(name)

    def crash(self, name: str, torn: random.Random | None = None) -> None:
        """Power cut: the process is gone, and so is every byte it never fsynced."""
        m = self.members[name]
        replica, m.replica = m.replica, None
        if replica is None:
            return
        self.network.alive.discard(name)
        self._wait_snapshot(replica)
        with contextlib.suppress(Exception):
            replica.destroy()  # autoTick=False: closes the journal and the transport now
        m.fs.crash(torn)

    def stop(self) -> None:
        for m in self.members.values():
            replica, m.replica = m.replica, None
            if replica is not None:
                self._wait_snapshot(replica)
                with contextlib.suppress(Exception):
                    replica.destroy()
        for m in self.members.values():
            FuzzTransport.registry.pop(m.addr, None)

    # -- one step of the world

    def _enter(self, name: str) -> None:
        self.switch.current = self.members[name].rng

    def step(self, dt: float) -> None:
        self.clock.advance(dt)
        self.network.update_links(self._enter)
        self.network.deliver_due(self._enter)
        for m in self.members.values():
            replica = m.replica
            if replica is None:
                continue
            self._enter(m.name)
            replica.doTick(0.0)
            self._wait_snapshot(replica)

    @staticmethod
    def _wait_snapshot(replica: _Replica) -> None:
        thread = replica._rc_store._last_thread
        if thread is not None:
            thread.join()

    # -- records

    @staticmethod
    def effect(state: State) -> tuple[int, int]:
        """What a duplicate application must never move: fences handed out (runs and
        locks) and runs recorded in the ledger."""
        return state.counters.fence, state.counters.runs_recorded

    def on_apply(
        self,
        member: Member,
        index: int,
        data: bytes,
        res: Result,
        before: tuple[int, int],
        after: tuple[int, int],
    ) -> None:
        from tests.fuzzy import verify  # (the checks live there; this only records)

        self.applies += 1
        self.network.trace.update(b"%s@%d:" % (member.name.encode(), index))
        verify.on_apply(self, member, index, data, res, before, after)

    def leader(self) -> Member | None:
        """The live member that leads in the highest term (None if none does)."""
        best: tuple[int, Member] | None = None
        for m in self.members.values():
            r = m.replica
            if r is not None and r._isLeader() and (best is None or r.raftCurrentTerm > best[0]):
                best = (r.raftCurrentTerm, m)
        return None if best is None else best[1]

    def live(self) -> list[Member]:
        return [m for m in self.members.values() if m.replica is not None]


def command_of(data: bytes) -> Command | None:
    return decode(data)
