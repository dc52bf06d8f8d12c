"""The pysyncobj Raft bugs the seam fixes (raftcron/raft/seam.py; docs/design.md,
"pysyncobj integration"), one test each: a real replica (raftcron's _Replica on
pysyncobj) is handed the messages that show the bug, through a transport that records what
it sends. The fuzzer found them (tests/fuzzy: e.g.
``python -m tests.fuzzy.run --seed 101 --steps 10000 --nodes 5``)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raftcron.raft import seam, wire
from raftcron.raft.journal import encode_snapshot
from raftcron.raft.node import Machine, RaftSettings, _Replica
from tests.unit.seam_fakes import Clock, Recorder

NOOP = b"\x01"  # pysyncobj's no-op entry kind: never run when applied
ADDRS = [f"127.0.0.1:{17100 + i}" for i in range(5)]

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture
def clock() -> Iterator[Clock]:
    c = Clock()
    with seam.harness_time(c, random.Random(7)):
        yield c


def replica(tmp_path: Path, members: int = 3) -> tuple[_Replica, Recorder]:
    settings = RaftSettings(
        self_addr=ADDRS[0],
        peers=ADDRS[1:members],
        password="seam-test-secret-0123",
        data_dir=tmp_path / "raft",
    )
    r = _Replica(settings, Machine(), lambda _: None, transport_class=Recorder, auto_tick=False)
    transport: Recorder = r._SyncObj__transport
    return r, transport


@pytest.fixture
def follower(tmp_path: Path, clock: Clock) -> Iterator[tuple[_Replica, Recorder]]:
    """A follower of ADDRS[1] (term 1) holding entries 1..5; 5 acknowledged, 1 committed."""
    r, t = replica(tmp_path)
    t.deliver(ADDRS[1], append(prev=1, first=2, last=5, commit=1))
    assert indices(r) == [1, 2, 3, 4, 5]
    t.sent.clear()
    yield r, t
    r.destroy()


def append(
    prev: int, first: int, last: int, commit: int, term: int = 1, prev_term: int | None = None
) -> dict[str, Any]:
    return {
        "type": "append_entries",
        "term": term,
        "commit_index": commit,
        "prevLogIdx": prev,
        "prevLogTerm": (0 if prev == 1 else term) if prev_term is None else prev_term,
        "entries": [(NOOP, i, term) for i in range(first, last + 1)],
    }


def indices(r: _Replica) -> list[int]:
    log = r.journal()
    return [log[i][1] for i in range(len(log))]


def terms(r: _Replica) -> list[int]:
    log = r.journal()
    return [log[i][2] for i in range(len(log))]


def commit(r: _Replica) -> int:
    return int(r.getStatus()["commit_idx"])


# -- 1. a stale AppendEntries truncated acknowledged entries


def test_a_stale_append_keeps_the_entries_after_it(follower: tuple[_Replica, Recorder]) -> None:
    r, t = follower
    t.deliver(ADDRS[1], append(prev=2, first=3, last=3, commit=5))  # delayed, from before
    assert indices(r) == [1, 2, 3, 4, 5]  # pysyncobj deleted 4 and 5 here
    (ack,) = t.replies("next_node_idx")
    assert (ack["success"], ack["next_node_idx"]) == (True, 4)  # what the message vouches for
    # Raft's commit rule: up to the message's last entry, not to the end of the log
    assert commit(r) == 3


def test_a_conflicting_append_still_replaces_the_tail(
    follower: tuple[_Replica, Recorder],
) -> None:
    r, t = follower
    t.deliver(ADDRS[2], append(prev=3, first=4, last=4, commit=1, term=2, prev_term=1))
    assert indices(r) == [1, 2, 3, 4]
    assert terms(r) == [0, 1, 1, 2]


def test_a_heartbeat_behind_the_log_keeps_it(follower: tuple[_Replica, Recorder]) -> None:
    r, t = follower
    t.deliver(ADDRS[1], append(prev=3, first=4, last=3, commit=1))  # no entries
    assert indices(r) == [1, 2, 3, 4, 5]
    (ack,) = t.replies("next_node_idx")
    assert (ack["success"], ack["next_node_idx"]) == (True, 4)


# -- 2. acks carry their term; a leader counts only those of its own term


def test_acks_carry_the_term_they_were_sent_in(follower: tuple[_Replica, Recorder]) -> None:
    _, t = follower
    t.deliver(ADDRS[1], append(prev=5, first=6, last=6, commit=1))
    (ack,) = t.replies("next_node_idx")
    assert ack["term"] == 1
    # and the wire carries it (a build without it sent three fields: still read)
    body = wire.encode_message(ack)
    assert wire.decode_message(body) == ack
    old = {k: v for k, v in ack.items() if k != "term"}
    assert wire.decode_message(body[:4]) == old


def leader_of(r: _Replica, t: Recorder, clock: Clock, votes: list[str]) -> None:
    for node in t.nodes.values():
        t._onNodeConnected(node)
    r.doTick(0)
    clock.now += 10  # past any election timeout
    r.doTick(0)
    (ask, *_) = t.replies("request_vote")
    for voter in votes:
        t.deliver(voter, {"type": "response_vote", "term": ask["term"]})


def test_a_leader_ignores_an_ack_of_another_term(tmp_path: Path, clock: Clock) -> None:
    r, t = replica(tmp_path)
    try:
        leader_of(r, t, clock, [ADDRS[1]])
        assert r.is_leader()
        term = r.getStatus()["raft_term"]
        match = f"match_idx_server_{ADDRS[1]}"
        ack = {"type": "next_node_idx", "next_node_idx": 2, "reset": False, "success": True}
        t.deliver(ADDRS[1], {**ack, "term": term - 1})  # sent to an earlier leader
        assert r.getStatus()[match] == 0
        t.deliver(ADDRS[1], {**ack, "term": term})
        assert r.getStatus()[match] == 1
    finally:
        r.destroy()


# -- 3. a duplicated vote was counted twice


def test_a_duplicated_vote_counts_once(tmp_path: Path, clock: Clock) -> None:
    r, t = replica(tmp_path, members=5)  # a majority is 3: itself and two others
    try:
        leader_of(r, t, clock, [ADDRS[1], ADDRS[1]])
        assert not r.is_leader()  # pysyncobj became leader on one voter's two copies
        (ask, *_) = t.replies("request_vote")
        t.deliver(ADDRS[2], {"type": "response_vote", "term": ask["term"]})
        assert r.is_leader()
    finally:
        r.destroy()


# -- 4. a stale snapshot rolled a replica back; 5. a snapshot piece raised the commit


def snapshot_message(data: tuple[bytes, bool, bool], commit: int) -> dict[str, Any]:
    return {"type": "append_entries", "term": 1, "commit_index": commit, "serialized": data}


def test_a_stale_snapshot_is_not_installed(follower: tuple[_Replica, Recorder]) -> None:
    r, t = follower
    t.deliver(ADDRS[1], append(prev=5, first=6, last=6, commit=5))
    assert commit(r) == 5
    t.sent.clear()
    old = encode_snapshot((NOOP, 3, 1), (NOOP, 2, 1), ADDRS[:3], b"not read")
    t.deliver(ADDRS[1], snapshot_message((old, True, True), commit=5))
    assert indices(r) == [1, 2, 3, 4, 5, 6]  # pysyncobj cleared the log for the old one
    assert commit(r) == 5
    (ack,) = t.replies("next_node_idx")
    assert (ack["reset"], ack["success"], ack["next_node_idx"]) == (True, True, 6)


def test_a_snapshot_ending_at_an_entry_the_log_holds_commits_up_to_it(
    follower: tuple[_Replica, Recorder],
) -> None:
    """A restarted follower's commit index lags its log. A leader whose log starts after
    its snapshot sends that snapshot; the follower holds the snapshot's last entry (same
    index and term), so it keeps its log, commits up to that entry and asks for what
    follows it. Answering "after my commit index" made the leader send the snapshot again,
    forever."""
    r, t = follower
    assert commit(r) == 1
    snap = encode_snapshot((NOOP, 4, 1), (NOOP, 3, 1), ADDRS[:3], b"not read")
    t.deliver(ADDRS[1], snapshot_message((snap, True, True), commit=4))
    assert indices(r) == [1, 2, 3, 4, 5]
    assert commit(r) == 4
    (ack,) = t.replies("next_node_idx")
    assert (ack["reset"], ack["success"], ack["next_node_idx"]) == (True, True, 5)


def test_a_snapshot_piece_commits_nothing(follower: tuple[_Replica, Recorder]) -> None:
    r, t = follower
    assert commit(r) == 1
    t.deliver(ADDRS[1], snapshot_message((b"first piece of a large one", True, False), 5))
    # pysyncobj raised the commit index to the end of this log, which no leader vouched for
    assert commit(r) == 1
    assert indices(r) == [1, 2, 3, 4, 5]
    # pysyncobj keeps the incoming snapshot's file open until its last piece: close it
    r._SyncObj__serializer._Serializer__incomingTransmissionFile.close()


# -- 6. an empty log


def test_an_empty_log_has_no_entries(follower: tuple[_Replica, Recorder]) -> None:
    r, _ = follower
    r.journal().clear()
    assert r._SyncObj__getEntries(1) == []  # pysyncobj raised IndexError


# -- 9. a snapshot that was not whole, or did not load, was acknowledged as installed


def pieces_of(blob: bytes, keep: list[int], size: int = 64) -> list[tuple[bytes, bool, bool]]:
    """The pieces (as a leader's serializer sends them, an empty one last) of ``blob``
    that arrive: those numbered in ``keep``, then the last."""
    parts = [blob[i : i + size] for i in range(0, len(blob), size)]
    sent = [(parts[i], i == 0, False) for i in keep]
    return [*sent, (b"", False, True)]


def install(t: Recorder, pieces: list[tuple[bytes, bool, bool]], commit: int) -> None:
    for data in pieces:
        t.deliver(
            ADDRS[2],
            {"type": "append_entries", "term": 2, "commit_index": commit, "serialized": data},
        )


def test_a_snapshot_missing_a_piece_is_refused_and_asked_for_again(
    follower: tuple[_Replica, Recorder], tmp_path: Path
) -> None:
    """Entries 2..5 of term 1 are not committed here; the leader of term 2 holds others
    and sends a snapshot up to 8 whose middle piece is lost. pysyncobj replaced the local
    snapshot with the pieces it got, failed to load them, raised the commit index to the
    end of this log (applying entries no leader vouched for) and acked the log as matching."""
    r, t = follower
    snap = encode_snapshot((NOOP, 8, 2), (NOOP, 7, 2), ADDRS[:3], b"x" * 500)
    install(t, pieces_of(snap, keep=[0, 2, 3]), commit=8)
    assert indices(r) == [1, 2, 3, 4, 5]
    assert commit(r) == 1
    assert not (tmp_path / "raft" / "snapshot.bin").exists()  # nothing replaced
    assert not (tmp_path / "raft" / "snapshot.bin.1.tmp").exists()
    acks = t.replies("next_node_idx")
    assert not any(a["success"] for a in acks)
    assert (acks[-1]["reset"], acks[-1]["next_node_idx"]) == (True, 2)  # send it again


def test_a_whole_snapshot_that_fails_to_load_is_not_acknowledged(
    follower: tuple[_Replica, Recorder],
) -> None:
    r, t = follower
    snap = encode_snapshot((NOOP, 8, 2), (NOOP, 7, 2), ADDRS[:3], b"not a state")
    install(t, pieces_of(snap, keep=list(range(len(snap) // 64 + 1))), commit=8)
    assert r._rc_store.load_error is not None  # the state does not decode
    assert indices(r) == [1, 2, 3, 4, 5]
    assert commit(r) == 1
    acks = t.replies("next_node_idx")
    assert not any(a["success"] for a in acks)
    assert (acks[-1]["reset"], acks[-1]["next_node_idx"]) == (True, 2)


def test_a_snapshot_in_pieces_is_installed(follower: tuple[_Replica, Recorder]) -> None:
    r, t = follower
    state = Machine().capture()()
    snap = encode_snapshot((NOOP, 8, 2), (NOOP, 7, 2), ADDRS[:3], state)
    install(t, pieces_of(snap, keep=list(range(len(snap) // 64 + 1))), commit=8)
    assert indices(r) == [7, 8]
    (ack,) = [a for a in t.replies("next_node_idx") if a["success"]]
    assert ack["next_node_idx"] == 9


# -- the commit path: followers hear of a new commit index in the tick it advances


def test_the_leader_tells_the_followers_a_new_commit_index_in_the_tick_it_commits(
    tmp_path: Path, clock: Clock
) -> None:
    """With ``appendEntriesUseBatch`` off (raftcron's setting), the leader sends an
    AppendEntries carrying the new commit index in the tick it commits, before it applies
    the entries (the seam's ``_SyncObj__applyLogEntries``: pysyncobj sent it after, once
    the callbacks had woken the asyncio loop): a follower does not wait for the next
    heartbeat, nor for the leader's apply (docs/design.md, "The commit path"; measured by
    ``bench.follower_commit`` and ``bench.grant_ab``). Once per follower, and nothing more
    until the heartbeat is due (the fake clock does not move here)."""
    from raftcron.core.commands import AcquireLock, encode

    r, t = replica(tmp_path)
    try:
        leader_of(r, t, clock, [ADDRS[1]])
        assert r.is_leader()
        term = r.getStatus()["raft_term"]

        def ack(src: str, upto: int) -> None:
            message = {"type": "next_node_idx", "next_node_idx": upto + 1, "reset": False}
            t.deliver(src, {**message, "success": True, "term": term})

        ack(ADDRS[1], 2)  # the new leader's no-op
        r.doTick(0)
        assert commit(r) == 2
        lock = AcquireLock(at_ms=1, name="n", request="q", holder="h", ttl_ms=1000, wait_ms=0)
        done: list[Any] = []

        def applied(res: Any, err: int) -> None:  # what had been sent when it was applied
            done.append((err, [(n, m["commit_index"]) for n, m in pushes()]))

        def pushes() -> list[tuple[str, dict[str, Any]]]:
            return [(n, m) for n, m in t.sent if m["type"] == "append_entries"]

        r.apply_command(encode(lock), callback=applied)
        r.doTick(0)  # appended at 3 and sent
        assert commit(r) == 2
        t.sent.clear()
        ack(ADDRS[1], 3)
        r.doTick(0)  # commits 3, tells the followers, then applies
        assert commit(r) == 3
        # the followers were told before the entry was applied (and its caller woken)
        assert [(err, sorted(sent)) for err, sent in done] == [
            (seam.FAIL_REASON.SUCCESS, [(ADDRS[1], 3), (ADDRS[2], 3)])
        ]
        assert sorted((n, m["commit_index"]) for n, m in pushes()) == [
            (ADDRS[1], 3),
            (ADDRS[2], 3),
        ]  # once each
        r.doTick(0)  # nothing new: nothing sent until the heartbeat is due
        assert len(t.sent) == 2
    finally:
        r.destroy()
