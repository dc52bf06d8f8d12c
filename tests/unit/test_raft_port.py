"""The Raft port (raftcron/raft/wire.py, unpickle.py): frames, codec, secrets, strangers,
and pickled code from a peer that holds the secret.

The codec and frame tests drive the pieces directly; the others run real in-process
replicas on 127.0.0.1 and attack them over TCP. "Nothing runs" is checked with a payload
that would create a marker file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import random
import socket
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj import pickle as ppickle
from pysyncobj.encryptor import getEncryptor
from pysyncobj.utility import TcpUtility, UtilityException

from raftcron.core.commands import AcquireLock, encode
from raftcron.raft import unpickle, wire
from raftcron.raft.journal import DurableJournal
from raftcron.raft.node import Machine, RaftSettings, _Replica
from raftcron.raft.seam import BadEntry, regular_call
from raftcron.raft.wire import (
    MAX_FRAME,
    PREAUTH_MAX_FRAME,
    FrameReader,
    Keyring,
    RefusalLog,
    WireError,
    decode_message,
    encode_message,
    frame,
    pack_body,
    token_time,
    unpack_body,
)
from tests.helpers import free_port

SECRET = "test-secret-0123456789abcdef"
OLD_SECRET = "the-old-secret-0123456789abcdef"


# --------------------------------------------------------------------------------------------
# Payloads


class Evil:
    """Unpickling this runs ``touch <path>`` (pickle records ``posix.system``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.path}",))


def evil(path: Path, protocol: int = 2) -> bytes:
    return pickle.dumps(Evil(path), protocol=protocol)


def call_entry(data: bytes) -> bytes:
    """A regular pysyncobj entry calling method 0 (apply_command) with ``data``: what
    raftcron writes, and what v0.1.0 journals hold."""
    return b"\x00" + ppickle.dumps((0, (data,)))


def lock_command(i: int, name: str = "") -> bytes:
    return encode(
        AcquireLock(
            at_ms=1_000 + i,
            name=name or f"l{i}",
            request=f"r{i}",
            holder="t",
            ttl_ms=600_000,
            wait_ms=0,
        )
    )


# --------------------------------------------------------------------------------------------
# Frames


def test_a_length_over_the_limit_is_refused_as_soon_as_it_arrives() -> None:
    reader = FrameReader(PREAUTH_MAX_FRAME)
    reader.feed(struct.pack("<I", 2**31 - 1)[:3])
    assert reader.next_frame() is None  # not even a length yet
    reader.feed(struct.pack("<I", 2**31 - 1)[3:])
    with pytest.raises(WireError) as info:
        reader.next_frame()
    assert info.value.code == "oversize"
    assert "2147483647" in info.value.reason


@pytest.mark.parametrize("n", [PREAUTH_MAX_FRAME, PREAUTH_MAX_FRAME + 1])
def test_the_limit_is_inclusive(n: int) -> None:
    reader = FrameReader(PREAUTH_MAX_FRAME)
    reader.feed(frame(b"x" * n))
    if n <= PREAUTH_MAX_FRAME:
        assert reader.next_frame() == b"x" * n
    else:
        with pytest.raises(WireError):
            reader.next_frame()


def test_an_empty_frame_is_refused() -> None:
    reader = FrameReader(MAX_FRAME)
    reader.feed(frame(b""))
    with pytest.raises(WireError):
        reader.next_frame()


@pytest.mark.parametrize("seed", range(5))
def test_frames_split_anywhere_come_out_whole(seed: int) -> None:
    rng = random.Random(seed)
    payloads = [rng.randbytes(rng.choice([1, 7, 300, 70_000])) for _ in range(30)]
    stream = b"".join(frame(p) for p in payloads)
    reader = FrameReader(MAX_FRAME)
    out: list[bytes] = []
    pos = 0
    while pos < len(stream):
        step = rng.choice([1, 2, 3, 5, 4096, 65_536])
        reader.feed(stream[pos : pos + step])
        pos += step
        while (f := reader.next_frame()) is not None:
            out.append(f)
    assert out == payloads
    assert reader.buffered == 0


def test_a_slow_sender_buffers_only_what_it_sent() -> None:
    """Slowloris: a byte at a time never makes the reader hold more than it received."""
    reader = FrameReader(PREAUTH_MAX_FRAME)
    data = frame(b"y" * 1000)
    for i, byte in enumerate(data[:-1]):
        reader.feed(bytes([byte]))
        assert reader.next_frame() is None
        assert reader.buffered == i + 1
    reader.feed(data[-1:])
    assert reader.next_frame() == b"y" * 1000


@pytest.mark.parametrize("seed", range(20))
def test_garbage_is_refused_never_decoded(seed: int) -> None:
    rng = random.Random(seed)
    keyring = Keyring([SECRET])
    reader = FrameReader(PREAUTH_MAX_FRAME)
    reader.feed(rng.randbytes(rng.randint(4, 10_000)))
    with pytest.raises(WireError):
        while (payload := reader.next_frame()) is not None:
            keyring.open(payload)
        raise WireError("short", "garbage shorter than its length prefix")


# --------------------------------------------------------------------------------------------
# Messages

MESSAGES: list[Any] = [
    bytes(range(32)),  # a handshake nonce (fixed: xdist workers must collect the same ids)
    "127.0.0.1:7101",
    {"type": "request_vote", "term": 3, "last_log_index": 10, "last_log_term": 2},
    {"type": "response_vote", "term": 3},
    {"type": "timeout_now", "term": 3},
    {
        "type": "append_entries",
        "term": 3,
        "commit_index": 9,
        "entries": [(b"\x00cmd", 10, 3), (b"\x01", 11, 3)],
        "prevLogIdx": 9,
        "prevLogTerm": 2,
    },
    {
        "type": "append_entries",
        "term": 3,
        "commit_index": 9,
        "entries": [],
        "prevLogIdx": None,
        "prevLogTerm": None,
    },
    {
        "type": "append_entries",
        "transmission": "finish",
        "data": b"chunk",
        "term": 3,
        "commit_index": 9,
        "prevLogIdx": 9,
        "prevLogTerm": 2,
    },
    {"type": "append_entries", "term": 3, "commit_index": 9, "serialized": (b"snap", True, False)},
    {"type": "append_entries", "term": 3, "commit_index": 9, "serialized": None},
    {"type": "apply_command", "command": b"\x00cmd", "request_id": 7},
    {"type": "apply_command", "command": b"\x00cmd"},
    {"type": "apply_command_response", "request_id": 7, "log_idx": 12, "log_term": 3},
    {"type": "apply_command_response", "request_id": 7, "error": 3},
    {"type": "next_node_idx", "next_node_idx": 13, "reset": False, "success": True},
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: str(m)[:40])
def test_every_message_pysyncobj_sends_round_trips(message: Any) -> None:
    echo = os.urandom(32)
    assert unpack_body(pack_body(echo, message)) == (echo, message)


def test_a_large_message_is_compressed_and_round_trips() -> None:
    message = {"type": "apply_command", "command": b"a" * 200_000, "request_id": 1}
    plain = pack_body(None, message)
    assert plain[0] == 1 and len(plain) < 10_000
    assert unpack_body(plain) == (None, message)


def test_a_compressed_body_may_not_inflate_past_the_limit() -> None:
    bomb = bytes((1,)) + zlib.compress(b"\x00" * (MAX_FRAME + 1), 9)
    with pytest.raises(WireError) as info:
        unpack_body(bomb)
    assert info.value.code == "oversize"


BAD_BODIES: list[tuple[str, list[Any]]] = [
    ("unknown kind", [99, 1]),
    ("term as text", [wire.K_RESPONSE_VOTE, "3"]),
    ("negative term", [wire.K_RESPONSE_VOTE, -1]),
    ("bool as int", [wire.K_RESPONSE_VOTE, True]),
    ("huge int", [wire.K_RESPONSE_VOTE, 2**64 - 1]),
    ("extra field", [wire.K_RESPONSE_VOTE, 3, 4]),
    ("missing field", [wire.K_REQUEST_VOTE, 3, 4]),
    ("entry not a triple", [wire.K_APPEND, 3, 9, 9, 2, [[b"c", 10]]]),
    ("entry command as text", [wire.K_APPEND, 3, 9, 9, 2, [["c", 10, 3]]]),
    ("entries not a list", [wire.K_APPEND, 3, 9, 9, 2, b"x"]),
    ("bad transmission", [wire.K_CHUNK, 3, 9, 9, 2, 7, b"x"]),
    ("snapshot piece", [wire.K_SNAPSHOT, 3, 9, [b"x", 1, 0]]),
    ("command as text", [wire.K_APPLY, "cmd", 1]),
    ("reset not bool", [wire.K_NEXT_INDEX, 3, 0, 1]),
    ("short session key", [wire.K_SESSION_KEY, b"k" * 8]),
    ("member as bytes", [wire.K_MEMBER, b"127.0.0.1:1"]),
    ("utility message", [wire.K_MEMBER, ["status"]]),
]


@pytest.mark.parametrize(("why", "body"), BAD_BODIES, ids=[w for w, _ in BAD_BODIES])
def test_a_field_of_the_wrong_type_is_refused(why: str, body: list[Any]) -> None:
    with pytest.raises(WireError):
        decode_message(body)
    with pytest.raises(WireError):
        unpack_body(b"\x00" + msgpack.packb([None, *body]))


@pytest.mark.parametrize(
    "plain",
    [
        b"\x00" + msgpack.packb({"type": "request_vote"}),  # a map
        b"\x00" + msgpack.packb([None, msgpack.ExtType(5, b"x")]),  # an ext type
        b"\x00" + msgpack.packb([1, wire.K_RESPONSE_VOTE, 3]),  # echo not binary
        b"\x00\xc1",  # not msgpack
        b"\x07" + msgpack.packb([None, wire.K_RESPONSE_VOTE, 3]),  # unknown flag
        b"",
    ],
)
def test_a_body_that_is_not_the_layout_is_refused(plain: bytes) -> None:
    with pytest.raises(WireError):
        unpack_body(plain)


def test_the_pickle_wire_is_refused_by_name(tmp_path: Path) -> None:
    """raftcron 0.1 and pysyncobj's tools send zlib(pickle): refused before unpickling."""
    marker = tmp_path / "pwned"
    with pytest.raises(WireError) as info:
        unpack_body(zlib.compress(evil(marker), 3))
    assert info.value.code == "pickle_wire"
    assert "CHANGELOG" in info.value.reason
    assert not marker.exists()


def test_no_wire_form_for_anything_else() -> None:
    for message in (["status"], {"type": "status"}, 5, None):
        with pytest.raises(WireError):
            encode_message(message)


# --------------------------------------------------------------------------------------------
# Secrets


def test_the_keyring_accepts_each_of_its_secrets_and_says_which() -> None:
    ring = Keyring([SECRET, OLD_SECRET])
    new_only, old_only = Keyring([SECRET]), Keyring([OLD_SECRET])
    assert ring.open(new_only.seal(0, b"a")) == (0, b"a")
    assert ring.open(old_only.seal(0, b"b")) == (1, b"b")
    assert ring.open(old_only.seal(0, b"b"), prefer=1) == (1, b"b")
    with pytest.raises(WireError) as info:
        new_only.open(ring.seal(1, b"c"))
    assert info.value.code == "secret"
    with pytest.raises(WireError):
        ring.open(Keyring(["a-third-secret-0123456789"]).seal(0, b"d"))


def test_the_keyring_derives_pysyncobj_keys_and_reads_their_timestamps() -> None:
    ring = Keyring([SECRET])
    token = getEncryptor(SECRET).encrypt_at_time(b"x", 123_456)
    assert ring.open(token) == (0, b"x")
    assert token_time(token) == 123_456 == getEncryptor(SECRET).extract_timestamp(token)


def test_a_keyring_needs_a_secret() -> None:
    with pytest.raises(ValueError):
        Keyring([])
    with pytest.raises(ValueError):
        Keyring([SECRET, ""])


# --------------------------------------------------------------------------------------------
# The restricted unpickler


def test_entries_raftcron_writes_still_load() -> None:
    data = lock_command(1)
    assert unpickle.safe_loads(call_entry(data)[1:]) == (0, (data,))
    assert regular_call(call_entry(data)) == (0, (data,))
    with_kwargs = b"\x00" + ppickle.dumps((0, (data,), {}))  # pysyncobj with sync=True
    assert regular_call(with_kwargs) == (0, (data,))
    chunked = ppickle.dumps((call_entry(data), 12, 3))  # a chunked entry, pickled whole
    assert unpickle.safe_loads(chunked) == (call_entry(data), 12, 3)


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_a_pickle_naming_a_global_runs_nothing(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(unpickle.UnsafePickle, match=r"posix\.system"):
        unpickle.safe_loads(evil(marker, protocol))
    with pytest.raises(BadEntry):
        regular_call(b"\x00" + evil(marker, protocol))
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        b"cbuiltins\neval\n(S'1'\ntR.",  # protocol 0 GLOBAL + REDUCE
        b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x06\x00\x00\x00rot_13\x86R.",
        b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x03\x00\x00\x00hex\x86R.",
        b"\x80\x02cpysyncobj.node\nTCPNode\n)\x81.",  # a class, outside membership entries
        b"\x80\x02ccopyreg\n_reconstructor\n.",
        b"\x80\x02\x82\x01.",  # EXT1: the copyreg extension registry
    ],
)
def test_only_latin1_bytes_are_rebuilt(payload: bytes) -> None:
    with pytest.raises((pickle.UnpicklingError, ValueError)):
        unpickle.safe_loads(payload)


def test_membership_entries_may_hold_tcp_nodes() -> None:
    from pysyncobj.node import TCPNode

    raw = ppickle.dumps(["add", "127.0.0.1:9", TCPNode("127.0.0.1:9")])
    loaded = unpickle.safe_loads_membership(raw)
    assert loaded[0] == "add" and loaded[2] == TCPNode("127.0.0.1:9")


def test_install_routes_pysyncobj_unpickling_through_the_restricted_one(tmp_path: Path) -> None:
    unpickle.install()
    assert unpickle.installed()
    marker = tmp_path / "pwned"
    with pytest.raises(pickle.UnpicklingError):
        ppickle.loads(evil(marker))
    assert ppickle.loads(ppickle.dumps((1, b"x"))) == (1, b"x")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (b"\x00" + ppickle.dumps((0, ("text",))), "not a call with command bytes"),
        (b"\x00" + ppickle.dumps((0, (b"x",), {"_doApply": False})), "not a call"),
        (b"\x00" + ppickle.dumps(0), "not a call"),
        (b"\x00garbage", "UnpicklingError"),
        (b"\x01", "not a regular command"),
    ],
)
def test_regular_call_accepts_one_shape(entry: bytes, reason: str) -> None:
    with pytest.raises(BadEntry, match=reason):
        regular_call(entry)


# --------------------------------------------------------------------------------------------
# Refusals are logged, rate limited


def test_refusals_are_logged_then_summarised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="raftcron.raft.wire")
    now = [0.0]
    log = RefusalLog(clock=lambda: now[0])
    for i in range(25):
        log.refuse(f"10.0.0.{i % 2}:{5000 + i}", "handshake_deadline", "no frame within 2s")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == RefusalLog.BURST
    assert lines[0] == "raft port: refused 10.0.0.0:5000: no frame within 2s"
    now[0] = RefusalLog.WINDOW_S + 1
    log.flush()
    summary = caplog.records[-1].getMessage()
    assert summary.startswith("raft port: refused 15 more connections in the last 11s")
    assert summary.endswith("(by reason: handshake_deadline 15; from: 10.0.0.0 8, 10.0.0.1 7)")
    log.refuse("10.0.0.9:1", "oversize", "too big")  # a new window logs again
    assert caplog.records[-1].getMessage() == "raft port: refused 10.0.0.9:1: too big"


# --------------------------------------------------------------------------------------------
# Real replicas


def _addresses(n: int = 3) -> list[str]:
    """Sorted: pysyncobj's greater address dials; the last one dials everyone."""
    return sorted(f"127.0.0.1:{free_port()}" for _ in range(n))


def _wait(cond: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Replicas:
    def __init__(self, root: Path, addrs: list[str]) -> None:
        self.root = root
        self.addrs = addrs
        self.live: dict[int, _Replica] = {}
        # Election timeouts of replicas started from now on. A test where a fake leader
        # feeds a lone follower raises them, so that on a loaded machine the follower does
        # not stand for election between two of the test's messages.
        self.timeouts = (0.3, 0.9)

    def start(self, i: int, secret: str = SECRET, previous: str | None = None) -> _Replica:
        settings = RaftSettings(
            self_addr=self.addrs[i],
            peers=[a for a in self.addrs if a != self.addrs[i]],
            password=secret,
            previous_password=previous,
            data_dir=self.root / f"n{i}",
            min_timeout=self.timeouts[0],
            max_timeout=self.timeouts[1],
        )
        replica = _Replica(settings, Machine(), lambda r: None)
        self.live[i] = replica
        return replica

    def stop(self, i: int) -> None:
        self.live.pop(i).destroy_synchronous()

    def leader(self) -> _Replica:
        def find() -> _Replica | None:
            leaders = [r for r in self.live.values() if r._isLeader() and r.isReady()]
            return leaders[0] if len(leaders) == 1 else None

        found: _Replica = _wait(find, "one leader")
        return found

    def commit_everywhere(self, i: int) -> None:
        """Commit a command through the leader and wait until every live replica applied it."""
        leader = self.leader()
        leader.apply_command(lock_command(i), sync=True, timeout=10)
        last = leader.raftLastApplied
        _wait(lambda: all(r.raftLastApplied >= last for r in self.live.values()), "replication")

    def destroy(self) -> None:
        for i in list(self.live):
            self.stop(i)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Replicas]:
    made = Replicas(tmp_path, _addresses())
    yield made
    made.destroy()


def transport(replica: _Replica) -> wire.GuardedTransport:
    t: wire.GuardedTransport = replica._SyncObj__transport
    return t


def _host_port(addr: str) -> tuple[str, int]:
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def closed_by_peer(sock: socket.socket, timeout: float = 10.0) -> bool:
    """True once the other end closed ``sock`` (EOF or reset) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


class FakePeer:
    """A client that holds the secret and speaks this wire (a stolen secret, a rogue node)."""

    def __init__(self, addr: str, secret: str = SECRET) -> None:
        self.keyring = Keyring([secret])
        self.sock = socket.create_connection(_host_port(addr), timeout=10)
        self.reader = FrameReader(MAX_FRAME)
        self.mine: bytes | None = None
        self.theirs: bytes | None = None

    def send(self, message: Any) -> None:
        self.send_plain(pack_body(self.theirs, message))

    def send_plain(self, plain: bytes) -> None:
        self.sock.sendall(frame(self.keyring.seal(0, plain)))

    def recv(self) -> Any:
        while (payload := self.reader.next_frame()) is None:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the node")
            self.reader.feed(data)
        echo, message = unpack_body(self.keyring.open(payload)[1])
        assert echo == self.mine
        return message

    def recv_reply(self) -> Any:
        """The next message that is not a vote request (a lone replica stands for
        election whenever it has heard from no leader for an election timeout)."""
        while isinstance(message := self.recv(), dict) and message["type"] == "request_vote":
            pass
        return message

    def handshake(self, member: str) -> None:
        self.mine = os.urandom(32)
        self.send(self.mine)
        self.theirs = self.recv()
        self.send(member)

    def close(self) -> None:
        self.sock.close()


def test_a_huge_length_prefix_is_refused_at_once_and_leadership_stays(
    cluster: Replicas, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="raftcron.raft.wire")
    for i in range(3):
        cluster.start(i)
    leader = cluster.leader()
    term = leader.raftCurrentTerm
    for _ in range(20):
        s = socket.create_connection(_host_port(leader.selfNode.address))
        s.sendall(struct.pack("<i", 2**31 - 1) + b"\x00" * 65536)
        assert closed_by_peer(s)
        s.close()
    assert transport(leader).stats.refused["oversize"] == 20
    assert "frame of 2147483647 bytes announced" in caplog.text
    cluster.commit_everywhere(1)
    assert cluster.leader() is leader and leader.raftCurrentTerm == term


def test_silent_and_trickling_connections_are_closed_after_the_deadline(
    cluster: Replicas,
) -> None:
    for i in range(3):
        cluster.start(i)
    leader = cluster.leader()
    term = leader.raftCurrentTerm
    addr = _host_port(leader.selfNode.address)
    socks = [socket.create_connection(addr) for _ in range(20)]
    started = time.monotonic()
    for s in socks[:10]:  # a byte at a time: still no frame
        s.sendall(b"\x10")
    assert all(closed_by_peer(s) for s in socks)
    waited = time.monotonic() - started
    assert waited >= wire.HANDSHAKE_DEADLINE_S - 0.1
    assert transport(leader).stats.refused["handshake_deadline"] == 20
    assert not transport(leader)._handshaking and not transport(leader)._unauthenticated
    for s in socks:
        s.close()
    cluster.commit_everywhere(2)
    assert leader._isLeader() and leader.raftCurrentTerm == term


def test_strangers_beyond_the_cap_close_the_oldest_of_the_busiest_source(
    cluster: Replicas,
) -> None:
    replica = cluster.start(0)
    t = transport(replica)
    addr = _host_port(replica.selfNode.address)
    socks = [socket.create_connection(addr) for _ in range(80)]
    _wait(lambda: t.stats.refused["too_many_unauthenticated"] >= 80 - 32, "evictions")
    assert len(t._unauthenticated) <= wire.MAX_UNAUTHENTICATED_PER_SOURCE
    assert closed_by_peer(socks[0], 5.0)  # the oldest went first
    for s in socks:
        s.close()


def test_a_rogue_peer_cannot_be_read_only_or_unknown_or_the_wrong_direction(
    cluster: Replicas,
) -> None:
    low = cluster.start(0)  # dials nobody: everyone dials it
    t = transport(low)
    for claim, code in [
        ("readonly", "readonly"),
        ("10.9.9.9:1", "unknown_node"),
        (cluster.addrs[0], "unknown_node"),  # itself
    ]:
        peer = FakePeer(low.selfNode.address)
        peer.handshake(claim)
        assert closed_by_peer(peer.sock)
        peer.close()
        assert t.stats.refused[code] >= 1, code
    high = cluster.start(2)  # dials everyone: nobody may claim to dial it
    peer = FakePeer(high.selfNode.address)
    peer.handshake(cluster.addrs[0])
    assert closed_by_peer(peer.sock)
    peer.close()
    assert transport(high).stats.refused["wrong_direction"] == 1


def test_pysyncobj_utility_commands_are_refused(
    cluster: Replicas, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """syncobj_admin with the secret: status, transfer, add, set_version get nothing."""
    caplog.set_level(logging.WARNING, logger="raftcron.raft.wire")
    for i in range(3):
        cluster.start(i)
    leader = cluster.leader()
    term = leader.raftCurrentTerm
    for command in (["status"], ["transfer", ""], ["add", "127.0.0.1:1"], ["set_version", 9]):
        with pytest.raises(UtilityException):
            TcpUtility(SECRET, timeout=5).executeCommand(leader.selfNode.address, command)
    assert transport(leader).stats.refused["pickle_wire"] == 4
    assert "speaks the pickle wire" in caplog.text
    # and the transport refuses them even if they arrive on this wire
    t = transport(leader)
    assert t._onUtilityMessageCallbacks == {}
    cluster.commit_everywhere(3)
    assert leader._isLeader() and leader.raftCurrentTerm == term


def test_pickled_code_from_a_peer_with_the_secret_runs_nothing(
    cluster: Replicas, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every way into an unpickler: an old-wire frame, a pickle in this wire's body, a
    forwarded command, a committed entry (regular, membership, version) and a chunked
    entry from a rogue leader. Refused, logged, nothing runs; the replica goes on."""
    caplog.set_level(logging.WARNING)
    marker = tmp_path / "pwned"
    payload = evil(marker)
    for i in range(2):
        cluster.start(i)
    leader = cluster.leader()
    rogue_addr = cluster.addrs[2]  # the member that is not running: it dials the others

    # 1. the pickle wire, as the first frame: refused before unpickling
    s = socket.create_connection(_host_port(leader.selfNode.address))
    token = getEncryptor(SECRET).encrypt_at_time(zlib.compress(payload), int(time.monotonic()))
    s.sendall(struct.pack("<i", len(token)) + token)
    assert closed_by_peer(s)
    s.close()
    # 2. a pickle where this wire's msgpack body goes
    peer = FakePeer(leader.selfNode.address)
    peer.send_plain(b"\x00" + payload)
    assert closed_by_peer(peer.sock)
    peer.close()
    assert transport(leader).stats.refused["pickle_wire"] == 1
    assert transport(leader).stats.refused["malformed"] == 1

    # 3. a forwarded command carrying a pickle: never enters the log
    log_before = len(leader.journal())
    peer = FakePeer(leader.selfNode.address)
    peer.handshake(rogue_addr)
    for bad in (b"\x00" + payload, b"\x02" + payload, b"\x03" + payload):
        peer.send({"type": "apply_command", "command": bad, "request_id": 1})
    _wait(lambda: caplog.text.count("refused a command forwarded") == 3, "the refusals")
    cluster.commit_everywhere(4)  # the leader went on
    peer.close()
    assert len(leader.journal()) == log_before + 1

    # 4./5. a rogue leader (the non-running member, at a higher term) makes a follower
    # commit entries that pickle code, then sends one in chunks
    cluster.destroy()
    cluster.timeouts = (5.0, 10.0)
    follower = cluster.start(0)  # alone: it cannot elect itself
    _wait(lambda: follower.journal()[-1][1] >= 1, "the follower's journal")
    last_idx, last_term = follower.journal()[-1][1], follower.journal()[-1][2]
    term = follower.raftCurrentTerm + 1000  # far above its own candidacies
    peer = FakePeer(follower.selfNode.address)
    peer.handshake(rogue_addr)
    entries = [
        (b"\x00" + payload, last_idx + 1, term),
        (b"\x02" + ppickle.dumps(["add", "x:1", Evil(marker)]), last_idx + 2, term),
        (b"\x03" + payload, last_idx + 3, term),
        (call_entry(lock_command(5)), last_idx + 4, term),  # a real command after them
    ]
    peer.send(
        {
            "type": "append_entries",
            "term": term,
            "commit_index": last_idx + 4,
            "entries": entries,
            "prevLogIdx": last_idx,
            "prevLogTerm": last_term,
        }
    )
    _wait(lambda: follower.raftLastApplied >= last_idx + 4, "the rogue entries applied")
    assert follower._rc_machine.read(lambda s: "l5" in s.locks)  # the replica went on
    chunked = payload
    half = len(chunked) // 2
    base = {"type": "append_entries", "term": term, "commit_index": last_idx + 4}
    base |= {"prevLogIdx": last_idx + 4, "prevLogTerm": term}
    peer.send(base | {"transmission": "start", "data": chunked[:half]})
    peer.send(base | {"transmission": "finish", "data": chunked[half:]})
    _wait(lambda: "refused a chunked log entry" in caplog.text, "the chunk refused")
    peer.close()

    text = caplog.text
    assert "refused a committed log entry" in text
    # (membership changes are on: the entry is read by the restricted unpickler, refused)
    assert "refused a membership entry: refused global" in text
    assert "refused a committed pysyncobj code-version entry" in text
    assert "failed _onTick" not in text
    time.sleep(0.2)  # os.system would have run synchronously; give a stray shell no excuse
    assert not marker.exists()


def test_journal_replay_runs_no_pickled_code(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A journal holding a committed entry that pickles code (written by a rogue leader,
    or by anyone who can write the data dir) is replayed without running it."""
    caplog.set_level(logging.ERROR)
    marker = tmp_path / "pwned"
    data = tmp_path / "n0"
    data.mkdir()
    journal = DurableJournal(str(data / "raft.journal"))
    journal.add(b"\x01", 1, 1)
    journal.add(b"\x00" + evil(marker), 2, 1)
    journal.add(call_entry(lock_command(7)), 3, 1)
    journal.setRaftCommitIndex(3)
    journal.sync()
    journal._destroy()
    replicas = Replicas(tmp_path, [f"127.0.0.1:{free_port()}"])
    try:
        replica = replicas.start(0)
        _wait(lambda: replica.raftLastApplied >= 3, "replay")
        assert replica._rc_machine.read(lambda s: "l7" in s.locks)
    finally:
        replicas.destroy()
    assert "refused a committed log entry" in caplog.text
    assert not marker.exists()


def test_a_large_entry_after_a_small_one_goes_in_chunks(cluster: Replicas) -> None:
    """A lagging follower gets [small, large]: the large entry must not travel whole in
    one frame (pysyncobj put it in the batch, a frame of its own size)."""
    for i in range(3):
        cluster.start(i)
    leader = cluster.leader()
    lagging = next(i for i, r in cluster.live.items() if r is not leader)
    cluster.stop(lagging)
    leader.apply_command(lock_command(10), sync=True, timeout=10)
    leader.apply_command(lock_command(11, name="n" * 1_500_000), sync=True, timeout=20)
    big = leader.raftLastApplied
    entries = leader._SyncObj__getEntries(big - 1, None, 2**16)
    assert len(entries) == 1 and len(entries[0][0]) < 2**16
    sent = next(e for e in leader.journal()[:] if e[1] == big)
    assert len(sent[0]) > 1_500_000
    back = cluster.start(lagging)
    _wait(lambda: back.raftLastApplied >= big, "the lagging follower", 60)
    assert next(e for e in back.journal()[:] if e[1] == big) == sent  # arrived whole
    assert transport(back).stats.largest_in < 4 * 2**16


def test_a_rolling_secret_rotation_keeps_a_majority(cluster: Replicas) -> None:
    """docs/operations.md, Rotating the cluster secret: each node in turn restarts with the new
    secret and the old one as previous_secret, then each in turn without the old one. After every
    restart the cluster commits through all three nodes."""
    for i in range(3):
        cluster.start(i, secret=OLD_SECRET)
    cluster.commit_everywhere(20)
    # Node 2 (the greatest address) dials the others: restarted first, it meets nodes that
    # know only the old secret, and falls back to it.
    for i in (2, 1, 0):
        cluster.stop(i)
        cluster.start(i, secret=SECRET, previous=OLD_SECRET)
        cluster.commit_everywhere(21 + i)
        if i == 2:
            dialled = transport(cluster.live[2])._connections.values()
            _wait(
                lambda d=dialled: sorted((c.key_index, c.state) for c in d) == [(1, 2), (1, 2)],
                "node 2 connected to both with the old secret",
            )
    for i in range(3):
        cluster.stop(i)
        cluster.start(i, secret=SECRET)
        cluster.commit_everywhere(24 + i)
    # a node that still knows only the old secret is now refused
    cluster.stop(0)
    stale = cluster.start(0, secret=OLD_SECRET)
    _wait(lambda: transport(stale).stats.refused["secret"] >= 2, "the stale node refusing")
    leader = cluster.leader()
    leader.apply_command(lock_command(30), sync=True, timeout=10)
    assert stale.raftLastApplied < leader.raftLastApplied


def test_a_data_dir_written_by_v0_1_0_still_loads(tmp_path: Path) -> None:
    """tests/unit/data/v0.1.0 (made by tests/unit/data/make_v0_1_0.py with v0.1.0's code):
    a snapshot of 30 lock acquisitions and 10 more in the journal, as pickled pysyncobj
    entries. It loads: the snapshot is restored and the journal replayed through the
    restricted unpickler, and the node goes on committing."""
    import shutil

    shutil.copytree(Path(__file__).parent / "data" / "v0.1.0", tmp_path / "n0")
    replicas = Replicas(tmp_path, [f"127.0.0.1:{free_port()}"])
    try:
        replica = replicas.start(0)
        _wait(lambda: replica.raftLastApplied >= 42 and replica._isLeader(), "the v0.1.0 log")
        holders = replica._rc_machine.read(lambda s: {n: lk.holder for n, lk in s.locks.items()})
        assert holders == {f"l{i}": "v010" for i in range(40)}  # l0-l29 from the snapshot
        assert replica._rc_store.load_error is None
        replica.apply_command(lock_command(50), sync=True, timeout=10)
        assert replica._rc_machine.read(lambda s: "l50" in s.locks)
    finally:
        replicas.destroy()


def test_a_deposed_leaders_chunk_does_not_break_the_current_transmission(
    cluster: Replicas, caplog: pytest.LogCaptureFixture
) -> None:
    """Chunks of an older term are left to pysyncobj, which ignores them: decoding a deposed
    leader's 'finish' reset the current leader's transmission, and its entry never came."""
    caplog.set_level(logging.WARNING)
    cluster.timeouts = (5.0, 10.0)
    follower = cluster.start(0)  # alone: nodes 1 and 2 (not running) dial it
    _wait(lambda: follower.journal()[-1][1] >= 1, "the follower's journal")
    last_idx, last_term = follower.journal()[-1][1], follower.journal()[-1][2]
    term = follower.raftCurrentTerm + 1000
    current, deposed = FakePeer(follower.selfNode.address), FakePeer(follower.selfNode.address)
    current.handshake(cluster.addrs[2])
    deposed.handshake(cluster.addrs[1])
    entry = ppickle.dumps((call_entry(lock_command(60)), last_idx + 1, term))
    base = {"type": "append_entries", "commit_index": last_idx + 1}
    base |= {"prevLogIdx": last_idx, "prevLogTerm": last_term}
    current.send(base | {"term": term, "transmission": "start", "data": entry[:100]})
    assert current.recv_reply()["type"] == "next_node_idx"  # the start is in
    deposed.send(base | {"term": term - 1, "transmission": "finish", "data": b"stale"})
    # a command through the deposed leader's connection: answered once all before it was read
    deposed.send(
        {"type": "apply_command", "command": call_entry(lock_command(61)), "request_id": 1}
    )
    # (the stale chunk is answered with the later term: Raft's reply to a deposed leader;
    # docs/design.md, "Elections: pre-vote and stickiness")
    stale = deposed.recv_reply()
    assert (stale["type"], stale["term"], stale["success"]) == ("next_node_idx", term, False)
    assert deposed.recv_reply()["type"] == "apply_command_response"
    current.send(base | {"term": term, "transmission": "finish", "data": entry[100:]})
    _wait(lambda: follower.raftLastApplied >= last_idx + 1, "the current leader's entry")
    assert follower._rc_machine.read(lambda s: "l60" in s.locks)
    assert "refused a chunked log entry" not in caplog.text
    current.close()
    deposed.close()


def test_a_later_releases_message_kind_is_dropped_and_the_connection_kept(
    cluster: Replicas, caplog: pytest.LogCaptureFixture
) -> None:
    """A message kind this release does not know (a later release's, from a member: it
    decrypted) is dropped with one log line; the connection stays and the next message is
    answered (docs/design.md, "Elections: pre-vote and stickiness"). A build before this
    one closed the connection (``malformed``: unknown message kind)."""
    caplog.set_level(logging.WARNING, logger="raftcron.raft.wire")
    cluster.timeouts = (5.0, 10.0)
    follower = cluster.start(0)
    _wait(lambda: follower.journal()[-1][1] >= 1, "the follower's journal")
    last_idx, last_term = follower.journal()[-1][1], follower.journal()[-1][2]
    peer = FakePeer(follower.selfNode.address)
    peer.handshake(cluster.addrs[2])
    later = wire.K_LAST_KNOWN + 1
    for _ in range(3):
        body = msgpack.packb([peer.theirs, later, 1, "a field"], use_bin_type=True)
        peer.send_plain(bytes((0,)) + body)
    ask = {"type": "pre_vote", "term": follower.raftCurrentTerm + 5}
    peer.send(ask | {"last_log_index": last_idx, "last_log_term": last_term})
    answer = peer.recv_reply()
    assert answer["type"] == "pre_vote_response" and answer["term"] == ask["term"]
    assert caplog.text.count("that this release does not know") == 1
    assert "refused" not in caplog.text
    peer.close()


def _peek(sock: socket.socket, flags: int) -> bool:
    try:
        return bool(sock.recv(1, flags))
    except BlockingIOError:
        return False


class _Ticked(SyncObj):  # type: ignore[misc]
    """A SyncObj on GuardedTransport whose ticks the test runs itself."""

    def __init__(self, addrs: list[str]) -> None:
        self.wire_keyring = Keyring([SECRET])
        conf = SyncObjConf(autoTick=False, bindAddress=addrs[0], dynamicMembershipChange=False)
        super().__init__(addrs[0], addrs[1:], conf, transportClass=wire.GuardedTransport)


def test_a_handshake_waiting_in_the_socket_beats_the_deadline() -> None:
    """When the tick thread comes late (a stall), the deadline looks at the frames already
    received before it closes a connection: a member whose last handshake frame waits in
    the socket is let in, a silent stranger is closed."""
    addrs = _addresses()
    node = _Ticked(addrs)
    try:
        t = transport(node)
        peer = FakePeer(addrs[0])
        silent = socket.create_connection(_host_port(addrs[0]))
        peer.mine = os.urandom(32)
        peer.send(peer.mine)
        _wait(lambda: node.doTick(0.01) or len(t._handshaking) == 2, "both accepted")
        peer.sock.settimeout(0.05)
        while peer.theirs is None:  # the node's answer needs ticks
            node.doTick(0.01)
            with contextlib.suppress(TimeoutError):
                peer.theirs = peer.recv()
        peer.send(addrs[2])  # the last handshake frame; no tick reads it yet
        member = next(c for c in t._handshaking if c.authenticated)
        member_sock = member.raw_socket
        assert member_sock is not None
        peek = socket.MSG_PEEK | socket.MSG_DONTWAIT
        _wait(lambda: _peek(member_sock, peek), "the frame in the node's socket")
        for conn in t._handshaking:
            t._handshaking[conn] = 0.0  # the tick thread stalled past the deadline
        t._expire_handshakes()
        assert t.stats.refused["handshake_deadline"] == 1  # only the silent one
        assert addrs[2] in {n.address for n in t._connections}
        assert closed_by_peer(silent)
        silent.close()
        peer.close()
    finally:
        node.destroy()
