"""Snapshot bytes are a format: a snapshot written by the code before State was split
(tests/unit/data/snapshot, made by tests/unit/data/make_snapshot_fixture.py on main at
56ea8e1) is read by today's code, which writes the same bytes back; and the fixed command
sequence stored beside it still leaves exactly that state (the digest below).
"""

from __future__ import annotations

from pathlib import Path

import msgpack

from raftcron.core.model import FINAL_STATUSES, LIVE_STATUSES, WAITING_STATUSES
from raftcron.core.state import Rejected, State

DATA = Path(__file__).parent / "data" / "snapshot"
# State.digest() after the sequence, as written by the code the fixture was made with.
DIGEST = "f5ba0d44b20498d571c094033892fe347021be75be6e88f03d51bfe88c9cea2c"


def fixture() -> bytes:
    return (DATA / "state.snapshot").read_bytes()


def replay() -> State:
    st = State()
    encoded = msgpack.unpackb((DATA / "commands.bin").read_bytes(), raw=False)
    assert len(encoded) == 37
    for data in encoded:
        cmd, res = st.apply_bytes(data)
        assert cmd is not None
        assert not (isinstance(res, Rejected) and res.code in ("apply_failed", "bad_command"))
    return st


def test_an_old_snapshot_is_read_and_written_back_to_the_same_bytes() -> None:
    old = fixture()
    st = State.restore(old)
    # the fixture is rich: a regression in any part of the codec shows here
    assert {r.status for r in st.runs.values()} == FINAL_STATUSES | LIVE_STATUSES | WAITING_STATUSES
    assert st.locks and st.lock_done and st.drained and st.member_hashes and st.config_hash
    assert st.jobs["s"].backfill is not None and st.jobs["fan"].waiting
    assert st.snapshot() == old
    assert State.restore(st.snapshot()).digest() == DIGEST


def test_replaying_the_fixed_sequence_gives_the_same_state() -> None:
    st = replay()
    assert st.digest() == DIGEST
    assert st.snapshot() == fixture()
    # the derived indexes a restore rebuilds agree with the ones apply kept
    back = State.restore(st.snapshot())
    assert back.live == st.live and back.children == st.children
