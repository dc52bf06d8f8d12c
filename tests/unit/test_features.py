"""Feature levels and the gate (raftcron/core/features.py): what each member advertises
(``ReportConfig``'s version and level, ``State.member_versions``), which commands and job
keys need which level, and a leader that reconciles nothing of a file some member cannot
decode yet (raftcron/scheduler/leader.py), then all of it once the member is upgraded."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest
from prometheus_client import CollectorRegistry

from raftcron.core import commands as c
from raftcron.core import features
from raftcron.core.model import JobSpec
from raftcron.core.state import Ok, Rejected, State
from raftcron.reload import ConfigControl
from raftcron.scheduler.leader import FeatureNotEnabled
from tests.unit.test_config_reload import T0, _leader, _Raft, _syncs, spec


def described(name: str) -> JobSpec:
    """A job using ``description`` (level 1, raftcron/core/jobfields.py)."""
    return JobSpec(name=name, schedule="* * * * *", command=("true",), description="why")


# --------------------------------------------------------------------------- the levels


def test_a_job_key_needs_its_level_on_every_member_and_the_refusal_names_them() -> None:
    assert max(features.JOB_KEYS.values()) <= features.FEATURE_LEVEL
    assert features.JOB_KEYS == {"description": 1}  # (from the job field table's since)
    assert features.spec_features(spec("plain")) == []  # a key left at its default: nothing
    stdin = JobSpec(name="s", schedule="* * * * *", command=("cat",), stdin="hello\n")
    assert features.spec_features(stdin) == []  # level 0: every member decodes it
    [used] = features.spec_features(described("cat"))
    assert used.level == features.JOB_KEYS["description"] == 1
    put = c.PutJob(at_ms=T0, spec=described("cat"), source="api")
    assert features.command_features(put) == [used]
    assert features.refusal([used], {"a": 1, "b": 1, "c": 1}) is None
    refused = features.refusal([used], {"a": 1, "b": 0, "c": 0})
    assert refused is not None and dict(refused.behind) == {"b": 0, "c": 0}
    message = refused.message()
    assert "'description'" in message and "job 'cat'" in message and "level 1" in message
    assert "b (level 0), c (level 0)" in message and "upgrade" in message


def test_a_command_kind_is_gated_by_its_wire_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    drain = c.Drain(at_ms=T0, node="b", drain=True)
    assert features.kind_of(drain) == "drain"
    assert features.command_features(drain) == []  # level 0: every member decodes it
    monkeypatch.setattr(features, "COMMAND_KINDS", {"drain": 2})
    [used] = features.command_features(drain)
    assert used.level == 2 and "'drain'" in used.name
    refused = features.refusal([used], {"a": 2, "b": 1})
    assert refused is not None and dict(refused.behind) == {"b": 1}


# --------------------------------------------------------------------------- the wire, the state


def test_a_report_carries_version_and_level_and_older_reports_decode() -> None:
    cmd = c.ReportConfig(at_ms=T0, node="a", hash="h", version="0.2.0", level=1)
    assert c.decode(c.encode(cmd)) == cmd
    plain = c.ReportConfig(at_ms=T0, node="a", hash="h")
    body = msgpack.unpackb(c.encode(plain), raw=False)
    assert "version" not in body and "level" not in body  # as a release before levels wrote it
    old = {"v": 1, "t": "config_report", "at": T0, "node": "a", "hash": "h"}
    got = c.decode(msgpack.packb(old, use_bin_type=True))
    assert got == plain and isinstance(got, c.ReportConfig) and got.level == 0


def test_the_state_keeps_what_each_member_advertised() -> None:
    s = State()
    assert s.apply(c.ReportConfig(at_ms=T0, node="a", hash="h", version="0.2.0", level=1)) == Ok(
        True
    )
    assert s.apply(c.ReportConfig(at_ms=T0, node="a", hash="h", version="0.2.0", level=1)) == Ok(
        False
    )
    assert s.apply(c.ReportConfig(at_ms=T0, node="a", hash="h")) == Ok(False)  # (kept)
    assert s.apply(c.ReportConfig(at_ms=T0, node="b", hash="h")) == Ok(True)
    assert s.member_versions == {"a": ("0.2.0", 1)}
    for bad in (
        c.ReportConfig(at_ms=T0, node="a", hash="h", version="0.3.0", level=-1),
        c.ReportConfig(at_ms=T0, node="a", hash="h", version="v" * 65, level=1),
    ):
        assert isinstance(s.apply(bad), Rejected)
    assert s.member_versions == {"a": ("0.2.0", 1)}
    back = State.restore(s.snapshot())
    assert back.member_versions == {"a": ("0.2.0", 1)} and back.digest() == s.digest()
    # what a node from before levels reads of the snapshot: the first two items
    config = msgpack.unpackb(s.snapshot(), raw=False, strict_map_key=False)["config"]
    assert config[:2] == ["", [["a", "h"], ["b", "h"]]] and config[2] == [["a", "0.2.0", 1]]


# --------------------------------------------------------------------------- the leader


def test_a_leader_reconciles_nothing_of_a_gated_file_then_all_of_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    raft = _Raft(State())
    asyncio.run(_leader(raft, "a", (spec("keep"), spec("gone")), "h0")._sync_config_if_agreed())
    levels = {"a": 1, "b": 1, "c": 0}
    leader = _leader(raft, "a", (spec("keep"), spec("new"), described("cat")), "h1")
    leader.levels = lambda: levels
    before = len(raft.proposed)
    caplog.set_level(logging.WARNING, "raftcron.scheduler.leader")
    with pytest.raises(FeatureNotEnabled):
        asyncio.run(leader.reconcile(leader.config_jobs, "h1", 10))
    assert len(raft.proposed) == before  # not half-applied: no put, no delete, no hash
    assert raft.machine.read(lambda s: (sorted(s.jobs), s.config_hash)) == (
        ["gone", "keep"],
        "h0",
    )
    [warning] = [r.getMessage() for r in caplog.records]
    assert "NOT reconciled" in warning and "'description'" in warning and "c (level 0)" in warning
    assert leader.gated is not None

    levels["c"] = 1  # c upgraded
    changed = asyncio.run(leader.reconcile(leader.config_jobs, "h1", 10))
    assert sorted(changed) == ["cat", "gone", "new"] and leader.gated is None
    assert raft.machine.read(lambda s: (sorted(s.jobs), s.config_hash)) == (
        ["cat", "keep", "new"],
        "h1",
    )
    assert _syncs(raft)[-1].config_hash == "h1"


def test_the_gated_loop_reconciles_once_the_last_member_advertises() -> None:
    raft = _Raft(State())
    levels = {"a": 1, "b": 0}
    leader = _leader(raft, "a", (described("cat"),), "h1")
    leader.levels = lambda: levels

    async def scenario() -> list[str]:
        with pytest.raises(FeatureNotEnabled):
            await leader._sync_config_if_agreed()
        task = asyncio.create_task(leader._gated_loop())
        try:
            await asyncio.sleep(1.5)
            assert raft.machine.read(lambda s: sorted(s.jobs)) == []  # b still level 0
            levels["b"] = 1
            for _ in range(200):  # 10 s at most
                if leader.gated is None:
                    break
                await asyncio.sleep(0.05)
            return raft.machine.read(lambda s: sorted(s.jobs))
        finally:
            task.cancel()

    assert asyncio.run(scenario()) == ["cat"]


# --------------------------------------------------------------------------- advertising


class _Status:
    ready = True
    is_leader = True
    leader = "127.0.0.1:1"
    connected: tuple[str, ...] = ()


def _control(name: str, raft: _Raft, version: str) -> ConfigControl:
    """A ConfigControl over a fake node whose proposals commit at once into ``raft``."""
    nodes = [SimpleNamespace(name=n) for n in ("a", "b", "c")]
    node: Any = SimpleNamespace(
        name=name,
        metrics=SimpleNamespace(registry=CollectorRegistry(), version=version),
        config=SimpleNamespace(cluster=SimpleNamespace(nodes=nodes), jobs=()),
        machine=raft.machine,
        raft=raft,
        clock=SimpleNamespace(wall_ms=lambda: T0),
        status=_Status,
    )
    return ConfigControl(node, node.config)


def test_a_member_advertises_again_when_another_members_advertisement_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """b's replica was rebuilt from a snapshot written while it ran a release from before
    levels: it lacks a's advertisement. a says it again when it sees b's change."""
    monkeypatch.setattr("raftcron.reload.config_hash", lambda cfg, jobs=None: "h")
    shared, b_view = _Raft(State()), _Raft(State())
    a = _control("a", shared, "0.2.0")
    asyncio.run(a._report())
    assert shared.machine.read(lambda s: s.member_versions) == {
        "a": ("0.2.0", features.FEATURE_LEVEL)
    }
    asyncio.run(a._report())
    assert len(shared.proposed) == 1  # nothing changed: nothing said
    # b (upgraded) reports; its report reaches a's replica too
    report_b = c.ReportConfig(at_ms=T0, node="b", hash="h", version="0.2.0", level=1)
    shared.machine.apply(c.encode(report_b))
    b_view.machine.apply(c.encode(report_b))
    a.node.raft = a_and_b = _Both(shared, b_view)
    asyncio.run(a._report())
    assert len(a_and_b.proposed) == 1  # said again, once
    assert b_view.machine.read(lambda s: s.member_versions) == {
        "a": ("0.2.0", features.FEATURE_LEVEL),
        "b": ("0.2.0", 1),
    }
    asyncio.run(a._report())
    assert len(a_and_b.proposed) == 1
    assert a.levels() == {"a": features.FEATURE_LEVEL, "b": 1, "c": 0}


class _Both(_Raft):
    """Commits into two replicas (a's and b's)."""

    def __init__(self, one: _Raft, two: _Raft) -> None:
        self.machine = one.machine
        self.other = two.machine
        self.proposed = []

    async def propose(self, cmd: c.Command, timeout: float) -> Any:  # noqa: ASYNC109
        self.proposed.append(cmd)
        self.other.apply(c.encode(cmd))
        return self.machine.apply(c.encode(cmd))
