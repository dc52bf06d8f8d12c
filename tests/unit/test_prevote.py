"""Pre-vote (Raft thesis 9.6) and leader stickiness (4.2.3) in the seam
(raftcron/raft/seam.py; docs/design.md, "Elections: pre-vote and stickiness").

A real replica (raftcron's _Replica on pysyncobj) with a transport that records what it
sends is handed the messages of each case, on a fake clock. The cluster-level proof (a
healed minority deposes no leader) is in tests/fuzzy (``isolate``) and
tests/cluster/test_prevote.py."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raftcron.core import features
from raftcron.raft import seam, wire
from raftcron.raft.node import Machine, RaftSettings, _Replica
from tests.unit.seam_fakes import Clock, Recorder

NOOP = b"\x01"
ADDRS = [f"127.0.0.1:{17200 + i}" for i in range(5)]
MIN_TIMEOUT = 0.3  # RaftSettings.min_timeout

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


class Gate:
    """The replica's pre-vote gate (in an agent: every member at feature level 3)."""

    on = True

    def __call__(self) -> bool:
        return self.on


@pytest.fixture
def clock() -> Iterator[Clock]:
    c = Clock()
    with seam.harness_time(c, random.Random(7)):
        yield c


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def node(tmp_path: Path, clock: Clock, gate: Gate) -> Iterator[tuple[_Replica, Recorder]]:
    """A follower of ADDRS[1] (term 1) holding entries 1..3, connected to its peers."""
    settings = RaftSettings(
        self_addr=ADDRS[0],
        peers=ADDRS[1:3],
        password="prevote-test-secret-01",
        data_dir=tmp_path / "raft",
        min_timeout=MIN_TIMEOUT,
    )
    r = _Replica(
        settings, Machine(), lambda _: None, transport_class=Recorder, auto_tick=False, prevote=gate
    )
    t: Recorder = r._SyncObj__transport
    for n in t.nodes.values():
        t._onNodeConnected(n)
    t.deliver(ADDRS[1], append(term=1, prev=1, last=3))
    t.sent.clear()
    yield r, t
    r.destroy()


def append(term: int, prev: int, last: int) -> dict[str, Any]:
    return {
        "type": "append_entries",
        "term": term,
        "commit_index": 1,
        "prevLogIdx": prev,
        "prevLogTerm": 0 if prev == 1 else term,
        "entries": [(NOOP, i, term) for i in range(prev + 1, last + 1)],
    }


def term_of(r: _Replica) -> int:
    return int(r.getStatus()["raft_term"])


def timeout(r: _Replica, clock: Clock) -> None:
    """Past any election timeout since the leader was last heard, then a tick."""
    clock.now += 10
    r.doTick(0)


def ask(term: int, last_idx: int = 3, last_term: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "type": "request_vote",
        "term": term,
        "last_log_index": last_idx,
        "last_log_term": last_term,
        **extra,
    }


def prevote(term: int, last_idx: int = 3, last_term: int = 1) -> dict[str, Any]:
    return {**ask(term, last_idx, last_term), "type": "pre_vote"}


# -- the candidate's side


def test_a_timed_out_follower_asks_for_pre_votes_and_keeps_its_term(
    node: tuple[_Replica, Recorder], clock: Clock
) -> None:
    r, t = node
    timeout(r, clock)
    assert t.replies("request_vote") == []
    asked = t.replies("pre_vote")
    assert {dst for dst, m in t.sent if m["type"] == "pre_vote"} == set(ADDRS[1:3])
    assert asked[0] == {"type": "pre_vote", "term": 2, "last_log_index": 3, "last_log_term": 1}
    assert term_of(r) == 1 and not r.is_leader()
    assert r.getStatus()["leader"] is None  # presumed gone, as at pysyncobj's election
    # no answer: the next timeout asks again, still at term 1
    timeout(r, clock)
    assert len(t.replies("pre_vote")) == 4 and term_of(r) == 1


def test_a_majority_of_pre_votes_starts_the_real_election(
    node: tuple[_Replica, Recorder], clock: Clock
) -> None:
    r, t = node
    timeout(r, clock)
    t.deliver(ADDRS[1], {"type": "pre_vote_response", "term": 3, "granted": True})  # other round
    t.deliver(ADDRS[2], {"type": "pre_vote_response", "term": 2, "granted": False})
    r.doTick(0)
    assert t.replies("request_vote") == []
    t.deliver(ADDRS[1], {"type": "pre_vote_response", "term": 2, "granted": True})
    assert term_of(r) == 1  # (the election runs at the next tick)
    r.doTick(0)
    (vote, _) = t.replies("request_vote")
    assert vote["term"] == 2 and term_of(r) == 2 and "transfer" not in vote
    t.deliver(ADDRS[1], {"type": "response_vote", "term": 2})
    assert r.is_leader()


def test_a_leader_heard_during_the_round_cancels_it(
    node: tuple[_Replica, Recorder], clock: Clock
) -> None:
    r, t = node
    timeout(r, clock)
    t.deliver(ADDRS[1], append(term=1, prev=3, last=3))  # the leader is back
    t.deliver(ADDRS[2], {"type": "pre_vote_response", "term": 2, "granted": True})
    r.doTick(0)
    assert t.replies("request_vote") == [] and term_of(r) == 1


def test_with_the_gate_off_the_election_is_pysyncobjs(
    node: tuple[_Replica, Recorder], clock: Clock, gate: Gate
) -> None:
    """A member below level 3 in the cluster: no pre-vote message is ever sent (such a
    member would refuse it), the election is the plain one."""
    r, t = node
    gate.on = False
    timeout(r, clock)
    assert t.replies("pre_vote") == []
    assert t.replies("request_vote")[0]["term"] == 2 and term_of(r) == 2


# -- the voter's side


def answers(t: Recorder) -> list[bool]:
    return [m["granted"] for m in t.replies("pre_vote_response")]


def test_a_pre_vote_is_refused_while_the_leader_is_heard(
    node: tuple[_Replica, Recorder], clock: Clock
) -> None:
    r, t = node
    t.deliver(ADDRS[2], prevote(2))
    clock.now += MIN_TIMEOUT / 2
    t.deliver(ADDRS[2], prevote(2))
    clock.now += MIN_TIMEOUT  # (1.5 x) the leader not heard for the minimum election timeout
    t.deliver(ADDRS[2], prevote(2))
    assert answers(t) == [False, False, True]
    assert term_of(r) == 1 and r.getStatus()["leader"] is not None  # nothing changed
    # answered without voting: a real request of term 2 still gets this replica's vote
    t.deliver(ADDRS[2], ask(2))
    assert t.replies("response_vote") == [{"type": "response_vote", "term": 2}]


def test_a_pre_vote_is_refused_to_a_log_behind_or_a_term_not_later(
    node: tuple[_Replica, Recorder], clock: Clock
) -> None:
    _, t = node
    clock.now += 10
    t.deliver(ADDRS[2], prevote(2, last_idx=2))  # fewer entries of the same term
    t.deliver(ADDRS[2], prevote(2, last_idx=9, last_term=0))  # an older last term
    t.deliver(ADDRS[2], prevote(1))  # not a later term
    t.deliver(ADDRS[2], prevote(2, last_idx=1, last_term=2))  # a later last term: up to date
    assert answers(t) == [False, False, False, True]
    assert [m["term"] for m in t.replies("pre_vote_response")] == [2, 2, 1, 2]


def test_a_vote_request_is_ignored_while_the_leader_is_heard(
    node: tuple[_Replica, Recorder], clock: Clock
) -> None:
    """Stickiness: a disruptive request (a member that was cut off, at a later term)
    changes nothing: no term update, no vote."""
    r, t = node
    t.deliver(ADDRS[2], ask(7))
    assert term_of(r) == 1 and t.replies("response_vote") == []
    assert r.getStatus()["leader"] is not None
    clock.now += MIN_TIMEOUT + 0.01  # the leader is silent: the request counts
    t.deliver(ADDRS[2], ask(7))
    assert term_of(r) == 7 and t.replies("response_vote") == [{"type": "response_vote", "term": 7}]


def test_with_the_gate_off_a_vote_request_is_answered_as_before(
    node: tuple[_Replica, Recorder], gate: Gate
) -> None:
    r, t = node
    gate.on = False
    t.deliver(ADDRS[2], ask(7))
    assert term_of(r) == 7 and len(t.replies("response_vote")) == 1


def test_a_leader_ignores_vote_requests_but_not_a_transfers(
    node: tuple[_Replica, Recorder], clock: Clock
) -> None:
    r, t = node
    timeout(r, clock)
    t.deliver(ADDRS[1], {"type": "pre_vote_response", "term": 2, "granted": True})
    r.doTick(0)
    t.deliver(ADDRS[1], {"type": "response_vote", "term": 2})
    assert r.is_leader() and term_of(r) == 2
    clock.now += 10  # long after: a leader hears itself
    t.deliver(ADDRS[2], ask(5, last_idx=9, last_term=2))
    assert r.is_leader() and term_of(r) == 2
    t.deliver(ADDRS[2], ask(5, last_idx=9, last_term=2, transfer=True))
    assert not r.is_leader() and term_of(r) == 5


# -- leadership transfer (TimeoutNow) bypasses both


def test_a_transfer_election_skips_pre_vote_and_is_marked(
    node: tuple[_Replica, Recorder], clock: Clock
) -> None:
    r, t = node
    t.deliver(ADDRS[1], {"type": "timeout_now", "term": 1})
    r.doTick(0)
    assert t.replies("pre_vote") == []
    plain, marked = t.replies("request_vote")[:2], t.replies("request_vote")[2:]
    assert {m["term"] for m in plain} == {2} and all("transfer" not in m for m in plain)
    assert [m["transfer"] for m in marked] == [True, True] and term_of(r) == 2
    # a sticky voter grants the marked copy
    assert wire.decode_message(wire.encode_message(marked[0])) == marked[0]


def test_a_transfer_vote_reaches_a_sticky_follower(
    node: tuple[_Replica, Recorder],
) -> None:
    r, t = node
    t.deliver(ADDRS[2], ask(2, transfer=True))
    assert term_of(r) == 2 and t.replies("response_vote") == [{"type": "response_vote", "term": 2}]


# -- a member whose term rose while cut off can rejoin


def test_a_stale_leader_is_told_the_later_term_and_steps_down(
    node: tuple[_Replica, Recorder], clock: Clock
) -> None:
    r, t = node
    clock.now += MIN_TIMEOUT + 0.01
    t.deliver(ADDRS[2], ask(4))  # this replica is now at term 4
    t.sent.clear()
    t.deliver(ADDRS[1], append(term=1, prev=3, last=3))  # the old leader, still at term 1
    (ack,) = t.replies("next_node_idx")
    assert ack["term"] == 4 and not ack["success"]
    assert term_of(r) == 4


def test_a_leader_steps_down_on_an_answer_of_a_later_term(
    node: tuple[_Replica, Recorder], clock: Clock
) -> None:
    r, t = node
    timeout(r, clock)
    t.deliver(ADDRS[1], {"type": "pre_vote_response", "term": 2, "granted": True})
    r.doTick(0)
    t.deliver(ADDRS[1], {"type": "response_vote", "term": 2})
    assert r.is_leader()
    ack = {"type": "next_node_idx", "next_node_idx": 1, "reset": False, "success": False}
    t.deliver(ADDRS[2], {**ack, "term": 6})
    assert not r.is_leader() and term_of(r) == 6


# -- the gate and the wire


def test_pre_vote_is_level_3() -> None:
    assert features.PREVOTE_LEVEL == 3 <= features.FEATURE_LEVEL
    assert features.prevote_on({"a": 3, "b": 4, "c": 3})
    assert not features.prevote_on({"a": 3, "b": 2, "c": 3})
    assert not features.prevote_on({})


@pytest.mark.parametrize(
    "message",
    [
        {"type": "pre_vote", "term": 5, "last_log_index": 9, "last_log_term": 4},
        {"type": "pre_vote_response", "term": 5, "granted": True},
        {"type": "pre_vote_response", "term": 5, "granted": False},
        {"type": "request_vote", "term": 5, "last_log_index": 9, "last_log_term": 4},
        {
            "type": "request_vote",
            "term": 5,
            "last_log_index": 9,
            "last_log_term": 4,
            "transfer": True,
        },
    ],
)
def test_the_wire_carries_pre_vote_messages(message: dict[str, Any]) -> None:
    echo, got = wire.unpack_body(wire.pack_body(None, message))
    assert echo is None and got == message


def test_a_plain_vote_request_keeps_the_old_layout() -> None:
    """Only a transfer's request has a fourth field: a plain one is what every build
    (also those below level 3) reads."""
    plain = {"type": "request_vote", "term": 5, "last_log_index": 9, "last_log_term": 4}
    assert wire.encode_message(plain) == [wire.K_REQUEST_VOTE, 5, 9, 4]
    assert wire.encode_message({**plain, "transfer": False}) == [wire.K_REQUEST_VOTE, 5, 9, 4]


def test_a_later_releases_message_kind_is_unknown_not_malformed() -> None:
    with pytest.raises(wire.WireError) as later:
        wire.decode_message([wire.K_LAST_KNOWN + 1, 1, 2])
    assert later.value.code == "unknown_kind"
    with pytest.raises(wire.WireError) as bad:
        wire.decode_message([wire.K_PRE_VOTE, 1, 2])  # a known kind, wrong fields
    assert bad.value.code == "malformed"
