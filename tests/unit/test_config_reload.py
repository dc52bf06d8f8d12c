"""Which file wins: the replicated config hash, member reports, and a leader whose file is
not the one last reconciled (raftcron/reload.py, Leader._sync_config_if_agreed)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgpack
import pytest

from raftcron.clock import FakeClock
from raftcron.config import parse_config
from raftcron.core import commands as c
from raftcron.core.model import JobSpec
from raftcron.core.planner import NodeInfo
from raftcron.core.state import Ok, Rejected, Result, State
from raftcron.raft.node import Machine
from raftcron.reload import ConfigView, restart_needed, running_config
from raftcron.scheduler.leader import Leader, LeaseTracker
from tests.unit.test_drain import OLD_SNAPSHOT, _old_state

T0 = 1_767_225_600_000


def spec(name: str) -> JobSpec:
    return JobSpec(name=name, schedule="* * * * *", command=("true",))


# --------------------------------------------------------------------------- state


def test_a_member_report_is_kept_and_idempotent() -> None:
    s = State()
    assert s.apply(c.ReportConfig(at_ms=T0, node="a", hash="aaaa")) == Ok(True)
    assert s.apply(c.ReportConfig(at_ms=T0, node="a", hash="aaaa")) == Ok(False)
    assert s.apply(c.ReportConfig(at_ms=T0, node="b", hash="bbbb")) == Ok(True)
    assert s.member_hashes == {"a": "aaaa", "b": "bbbb"}
    for bad in (
        c.ReportConfig(at_ms=T0, node="", hash="aaaa"),
        c.ReportConfig(at_ms=T0, node="a", hash=""),
        c.ReportConfig(at_ms=T0, node="a", hash="x" * 65),
    ):
        res = s.apply(bad)
        assert isinstance(res, Rejected) and res.code == "bad_report"
    assert s.member_hashes == {"a": "aaaa", "b": "bbbb"}


def test_only_the_sync_entry_that_carries_a_hash_records_it() -> None:
    s = State()
    s.apply(c.SyncConfig(at_ms=T0, specs=(spec("x"),), history=10, partial=True))
    assert s.config_hash == ""
    s.apply(c.SyncConfig(at_ms=T0, specs=(), history=10, partial=True, config_hash="h1"))
    assert s.config_hash == "h1" and "x" in s.jobs
    s.apply(c.SyncConfig(at_ms=T0, specs=(), history=10, partial=True))
    assert s.config_hash == "h1"


def test_wire_round_trip_and_entries_from_before_hashes_decode() -> None:
    for cmd in (
        c.SyncConfig(at_ms=T0, specs=(spec("x"),), history=5, partial=True, config_hash="h1"),
        c.ReportConfig(at_ms=T0, node="a", hash="h2"),
    ):
        assert c.decode(c.encode(cmd)) == cmd
    # a sync without a hash encodes exactly as before (no "hash" key): older nodes agree
    plain = c.SyncConfig(at_ms=T0, specs=(), history=5, partial=True)
    body = msgpack.unpackb(c.encode(plain), raw=False)
    assert "hash" not in body
    old = {"v": 1, "t": "sync_config", "at": T0, "specs": [], "history": 5}
    got = c.decode(msgpack.packb(old, use_bin_type=True))
    assert isinstance(got, c.SyncConfig) and got.config_hash == ""


def test_snapshots_from_before_hashes_load_and_a_state_without_them_encodes_as_before() -> None:
    old = State.restore(OLD_SNAPSHOT)
    assert old.config_hash == "" and old.member_hashes == {}
    assert _old_state().snapshot() == OLD_SNAPSHOT


def test_hashes_are_the_last_key_of_the_snapshot() -> None:
    s = _old_state()
    s.apply(c.SyncConfig(at_ms=T0, specs=(), history=10, partial=True, config_hash="h1"))
    s.apply(c.ReportConfig(at_ms=T0, node="b", hash="h2"))
    s.apply(c.ReportConfig(at_ms=T0, node="a", hash="h1"))
    snap = s.snapshot()
    body = msgpack.unpackb(snap, raw=False, strict_map_key=False)
    assert list(body)[-1] == "config"
    assert body["config"] == ["h1", [["a", "h1"], ["b", "h2"]]]
    assert msgpack.packb(body, use_bin_type=True) == snap  # canonical, like the rest
    back = State.restore(snap)
    assert (back.config_hash, back.member_hashes) == ("h1", {"a": "h1", "b": "h2"})
    assert back.digest() == s.digest()
    # a later release may append to the row: this one reads its first fields
    body["config"] = ["h1", [["a", "h1"]], [["a", "0.2.0", 1]], "something new"]
    again = State.restore(msgpack.packb(body, use_bin_type=True))
    assert again.member_hashes == {"a": "h1"}
    assert again.member_versions == {"a": ("0.2.0", 1)}


# --------------------------------------------------------------------------- the leader


class _Raft:
    """Commits every proposal at once through a real Machine."""

    def __init__(self, state: State) -> None:
        self.machine = Machine(state)
        self.proposed: list[c.Command] = []

    async def propose(self, cmd: c.Command, timeout: float) -> Result:  # noqa: ASYNC109
        self.proposed.append(cmd)
        return self.machine.apply(c.encode(cmd))


def _leader(raft: _Raft, node: str, jobs: tuple[JobSpec, ...], hash: str) -> Leader:
    clock = FakeClock(T0 / 1000)
    return Leader(
        node=node,
        term=1,
        raft=raft,  # type: ignore[arg-type]
        clock=clock,
        leases=LeaseTracker(clock),
        config_jobs=jobs,
        history=10,
        live_nodes=lambda: [NodeInfo(name=node, tags=())],
        election_timeout=0.9,
        config_hash=hash,
    )


def _syncs(raft: _Raft) -> list[c.SyncConfig]:
    return [p for p in raft.proposed if isinstance(p, c.SyncConfig)]


def test_the_first_leader_seeds_the_hash() -> None:
    raft = _Raft(State())
    asyncio.run(_leader(raft, "a", (spec("x"),), "ha")._sync_config_if_agreed())
    assert raft.machine.read(lambda s: (s.config_hash, sorted(s.jobs))) == ("ha", ["x"])


def test_a_big_sync_records_the_hash_only_with_its_last_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("raftcron.scheduler.leader.CONFIG_SYNC_BATCH", 2)
    raft = _Raft(State())
    jobs = tuple(spec(f"j{i}") for i in range(5))
    asyncio.run(_leader(raft, "a", jobs, "ha")._sync_config_if_agreed())
    syncs = _syncs(raft)
    assert [len(s.specs) for s in syncs] == [2, 2, 1]
    assert [s.config_hash for s in syncs] == ["", "", "ha"]


def test_no_election_silently_brings_back_or_drops_a_job(caplog: pytest.LogCaptureFixture) -> None:
    """Job x is added to node a's file only. a leads: x does not appear (its file is not
    the one reconciled); b leads: nothing changes; an operator's reload on a makes a's file
    the cluster's (x appears); b leads again: x stays, and b says its file is not the
    cluster's. Each time a leader leaves the jobs alone, a WARNING names it and the hashes."""
    raft = _Raft(State())
    common, with_x = (spec("keep"),), (spec("keep"), spec("x"))
    asyncio.run(_leader(raft, "b", common, "hb")._sync_config_if_agreed())  # the seed
    jobs = lambda: raft.machine.read(lambda s: sorted(s.jobs))  # noqa: E731
    assert jobs() == ["keep"]

    caplog.set_level(logging.WARNING, "raftcron.scheduler.leader")
    a = _leader(raft, "a", with_x, "ha")
    before = len(raft.proposed)
    asyncio.run(a._sync_config_if_agreed())
    assert jobs() == ["keep"] and len(raft.proposed) == before  # nothing proposed at all
    assert a.unreconciled == "hb"
    [warning] = [r.getMessage() for r in caplog.records]
    assert "leader a" in warning and "ha" in warning and "hb" in warning
    assert "NOT reconciled" in warning and "raftcron reload a" in warning

    asyncio.run(_leader(raft, "b", common, "hb")._sync_config_if_agreed())
    assert jobs() == ["keep"]

    changed = asyncio.run(a.reconcile(c.PackedSpecs.pack(with_x), "ha", 10))  # reload on a
    assert changed == ["x"] and jobs() == ["keep", "x"]
    assert raft.machine.read(lambda s: s.config_hash) == "ha" and a.unreconciled is None

    caplog.clear()
    b = _leader(raft, "b", common, "hb")
    asyncio.run(b._sync_config_if_agreed())
    assert jobs() == ["keep", "x"]  # not dropped by b's election
    assert b.unreconciled == "ha"
    assert any("leader b" in r.getMessage() and "ha" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- reload's rules


def _cfg(tmp_path: Path, extra: str = "", secret: str = "0123456789abcdef-secret") -> Any:
    text = f"""
[cluster]
secret = "{secret}"
[cluster.nodes.a]
raft = "127.0.0.1:7101"
api = "127.0.0.1:8101"
{extra}
"""
    return parse_config(text, tmp_path / "c.toml")


def test_what_only_a_restart_changes_keeps_its_running_value(tmp_path: Path) -> None:
    old = _cfg(tmp_path)
    new = _cfg(tmp_path, 'tags = { zone = "z" }', secret="fedcba9876543210-secret")
    assert restart_needed(old, old) == []
    assert restart_needed(old, new) == ["cluster.secret", "cluster.nodes"]
    run = running_config(old, replace(new, cluster=replace(new.cluster, history=7)))
    assert run.cluster.secret == old.cluster.secret and run.cluster.nodes == old.cluster.nodes
    assert run.cluster.history == 7 and run.jobs == ()


def test_drift_is_against_the_leaders_hash() -> None:
    v = ConfigView("h1", "h1", "a", "h1", {"a": "h1", "b": "h2", "c": None})
    assert v.drift() == {"b": "h2"}  # c has not reported: unknown, not drift
    assert ConfigView("h1", "", None, None, {"a": "h1", "b": "h2"}).drift() == {}
