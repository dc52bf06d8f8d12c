"""The membership control's pure parts: the gate counts only members that advertised (an
added member not yet started holds nothing back), a file that disagrees is named, the
count check reads the members, and the standing check's seal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from raftcron.config import HostPort, NodeConfig
from raftcron.core import commands as c
from raftcron.core import features
from raftcron.core.model import JobSpec, Member
from raftcron.core.state import State
from raftcron.membership import (
    MemberInfo,
    count_problem,
    file_disagreement,
    seal,
    sealed_by,
)
from tests.unit.test_config_reload import T0, _Raft
from tests.unit.test_features import _control


def _node(name: str, n: int, **tags: str) -> NodeConfig:
    return NodeConfig(
        name=name,
        raft=HostPort(host=f"127.0.0.{n}", port=4321),
        api=HostPort(host=f"127.0.0.{n}", port=8080),
        tags=tuple(sorted(tags.items())),
        data_dir=Path("/nonexistent"),
    )


def _member(n: NodeConfig, **kw: Any) -> Member:
    return Member(name=n.name, raft=str(n.raft), api=str(n.api), tags=n.tags, **kw)


def test_the_gate_does_not_count_an_added_member_before_it_advertises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("raftcron.reload.config_hash", lambda cfg, jobs=None: "h")
    raft = _Raft(State())
    s_apply = raft.machine.apply
    seed = tuple(_member(_node(x, i)) for i, x in enumerate("abc", 1))
    s_apply(c.encode(c.SeedMembers(at_ms=T0, members=seed)))
    for name in "bc":
        s_apply(c.encode(c.ReportConfig(at_ms=T0, node=name, hash="h", version="x",
                                        level=features.FEATURE_LEVEL)))  # fmt: skip
    ctl = _control("a", raft, "x")
    new = Member(name="d", raft="127.0.0.4:4321", api="127.0.0.4:8080")
    s_apply(c.encode(c.AddMember(at_ms=T0, member=new, request="r")))
    levels = ctl.levels()
    assert "d" not in levels and set(levels) == {"a", "b", "c"}
    remove_d = c.RemoveMember(at_ms=T0, name="d", request="r2")
    assert ctl.refusal(remove_d) is None
    # once it advertises, it counts with its level
    s_apply(c.encode(c.ReportConfig(at_ms=T0, node="d", hash="h", version="old", level=1)))
    refused = ctl.refusal(remove_d)
    assert refused is not None and refused.behind == {"d": 1}


def test_a_seed_member_that_never_advertised_is_level_0(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("raftcron.reload.config_hash", lambda cfg, jobs=None: "h")
    raft = _Raft(State())
    seed = tuple(_member(_node(x, i)) for i, x in enumerate("abc", 1))
    raft.machine.apply(c.encode(c.SeedMembers(at_ms=T0, members=seed)))
    assert _control("a", raft, "x").levels()["b"] == 0


def test_a_file_that_disagrees_is_named() -> None:
    a, b, c_ = _node("a", 1), _node("b", 2), _node("c", 3)
    d = _node("d", 4)
    members = [_member(a), _member(b, incarnation=2), _member(d)]
    lines = file_disagreement((a, b, c_), members)
    assert lines == ["c is in the file but not a member", "d is a member but not in the file"]
    moved = _node("b", 9)
    assert "b: the file says raft 127.0.0.9:4321" in file_disagreement((a, moved), members)[0]
    assert file_disagreement((a, b, d), members) == []


def test_count_is_checked_against_the_members() -> None:
    ms = tuple(MemberInfo.of_node(_node(x, i, zone="z1" if x != "c" else "z2"))
               for i, x in enumerate("abc", 1))  # fmt: skip
    spec = JobSpec(name="j", schedule="* * * * *", command=("true",), count=3)
    assert count_problem(spec, ms) is None
    zoned = JobSpec(name="j", schedule="* * * * *", command=("true",), count=3,
                    tags=(("zone", "z1"),))  # fmt: skip
    problem = count_problem(zoned, ms)
    assert problem is not None and "only 2 member(s)" in problem and "a, b" in problem


def test_the_standing_seal() -> None:
    mac = seal("s1", "ask", "n", "c")
    assert sealed_by(["s1"], mac, "ask", "n", "c")
    assert sealed_by(["s0", "s1"], mac, "ask", "n", "c")  # (a secret rotation)
    assert not sealed_by(["s2", ""], mac, "ask", "n", "c")
    assert not sealed_by(["s1"], mac, "ask", "n", "d")
    assert not sealed_by(["s1"], mac, "removed", "n", "c")
    # a made-up mac that is not ASCII (schemathesis sent one: it was a 500)
    assert not sealed_by(["s1"], "\U0009a0d6.", "ask", "n", "c")
