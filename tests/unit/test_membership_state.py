"""The replicated membership (issue 15 item 1): seed, add, remove, one change at a time,
idempotent retries, the snapshot round trip and older snapshots unchanged."""

from __future__ import annotations

from raftcron.core import commands as c
from raftcron.core.model import Member
from raftcron.core.results import Reject
from raftcron.core.state import Ok, Rejected, State


def _m(name: str, n: int, **kw: object) -> Member:
    return Member(name=name, raft=f"127.0.0.{n}:4321", api=f"127.0.0.{n}:8080", **kw)  # type: ignore[arg-type]


def _seeded() -> State:
    s = State()
    res = s.apply(c.SeedMembers(at_ms=1, members=(_m("c", 3), _m("a", 1), _m("b", 2))))
    assert res == Ok("seeded")
    return s


def _code(res: object) -> Reject:
    assert isinstance(res, Rejected), res
    return res.code


def test_seed_gives_incarnations_by_name_once() -> None:
    s = _seeded()
    assert [(m.name, m.incarnation, m.added) for m in s.members.values()] == [
        ("a", 1, False),
        ("b", 2, False),
        ("c", 3, False),
    ]
    assert s.apply(c.SeedMembers(at_ms=2, members=(_m("a", 1), _m("b", 2), _m("c", 3)))) == Ok(
        "unchanged"
    )
    assert _code(s.apply(c.SeedMembers(at_ms=2, members=(_m("x", 9),)))) == Reject.MEMBER_CLASH
    dup = State().apply(c.SeedMembers(at_ms=1, members=(_m("a", 1), _m("b", 1))))
    assert _code(dup) == Reject.MEMBER_CLASH


def test_changes_need_a_seed() -> None:
    s = State()
    assert _code(s.apply(c.AddMember(at_ms=1, member=_m("d", 4), request="r"))) == (
        Reject.MEMBERS_NOT_SEEDED
    )
    assert _code(s.apply(c.RemoveMember(at_ms=1, name="a", request="r"))) == (
        Reject.MEMBERS_NOT_SEEDED
    )


def test_add_then_one_change_at_a_time_then_done() -> None:
    s = _seeded()
    res = s.apply(c.AddMember(at_ms=5, member=_m("d", 4), request="r1"))
    assert isinstance(res, Ok) and s.member_change is not None and not s.member_change.done
    assert s.members["d"].incarnation == 4 and s.members["d"].added
    # the same request again: its first outcome, nothing changes
    assert s.apply(c.AddMember(at_ms=6, member=_m("d", 4), request="r1")) == res
    # another change while this one is pending
    other = s.apply(c.RemoveMember(at_ms=6, name="a", request="r2"))
    assert _code(other) == Reject.CHANGE_IN_PROGRESS
    assert "one change at a time" in str(other)
    assert s.apply(c.MemberChanged(at_ms=7, request="r1")) == Ok(True)
    assert s.apply(c.MemberChanged(at_ms=7, request="r1")) == Ok(False)
    assert s.member_change is not None and s.member_change.done
    assert isinstance(s.apply(c.RemoveMember(at_ms=8, name="a", request="r2")), Ok)


def test_clashes_are_refused_and_change_nothing() -> None:
    s = _seeded()
    before = s.digest()
    for member, why in (
        (_m("a", 9), "already a member"),
        (Member(name="d", raft="127.0.0.1:4321", api="127.0.0.9:1"), "already member a's"),
        (Member(name="d", raft="127.0.0.9:1", api="127.0.0.2:8080"), "already member b's"),
    ):
        res = s.apply(c.AddMember(at_ms=1, member=member, request="x"))
        assert _code(res) == Reject.MEMBER_CLASH and why in str(res)
    nope = Member(name="d", raft="nope", api="x:1")
    bad = s.apply(c.AddMember(at_ms=1, member=nope, request="x"))
    assert _code(bad) == Reject.BAD_MEMBER
    assert s.digest() == before


def test_remove_moves_to_removed_and_the_name_is_never_reused() -> None:
    s = _seeded()
    s.apply(c.ReportConfig(at_ms=2, node="c", hash="h", version="1", level=2))
    assert isinstance(s.apply(c.RemoveMember(at_ms=3, name="c", request="r")), Ok)
    assert "c" not in s.members and s.removed["c"].incarnation == 3
    assert "c" not in s.member_versions
    s.apply(c.MemberChanged(at_ms=4, request="r"))
    again = s.apply(c.AddMember(at_ms=5, member=_m("c", 3), request="r3"))
    assert _code(again) == Reject.MEMBER_CLASH and "never used again" in str(again)
    # its address may be reused by a new member
    assert isinstance(s.apply(c.AddMember(at_ms=5, member=_m("d", 3), request="r4")), Ok)
    assert s.members["d"].incarnation == 4


def test_unknown_and_last_member() -> None:
    s = State()
    s.apply(c.SeedMembers(at_ms=1, members=(_m("a", 1),)))
    assert _code(s.apply(c.RemoveMember(at_ms=2, name="zz", request="r"))) == Reject.UNKNOWN_MEMBER
    last = s.apply(c.RemoveMember(at_ms=2, name="a", request="r"))
    assert _code(last) == Reject.LAST_MEMBER and "last member" in str(last)
    assert list(s.members) == ["a"]


def test_snapshot_round_trip_and_unseeded_states_encode_as_before() -> None:
    plain = State()
    assert b"members" not in plain.snapshot()
    s = _seeded()
    s.apply(c.AddMember(at_ms=5, member=_m("d", 4, tags=(("az", "x"),)), request="r1"))
    back = State.restore(s.snapshot())
    assert back.members == s.members and back.member_change == s.member_change
    assert back.member_serial == 4 and back.digest() == s.digest()
    s.apply(c.MemberChanged(at_ms=6, request="r1"))
    s.apply(c.RemoveMember(at_ms=7, name="a", request="r2"))
    back = State.restore(s.snapshot())
    assert back.removed == s.removed and back.digest() == s.digest()


def test_commands_round_trip_on_the_wire() -> None:
    for cmd in (
        c.SeedMembers(at_ms=1, members=(_m("a", 1, tags=(("k", "v"),)),)),
        c.AddMember(at_ms=2, member=_m("d", 4, added=True), request="r"),
        c.RemoveMember(at_ms=3, name="d", request="r"),
        c.MemberChanged(at_ms=4, request="r"),
    ):
        assert c.decode(c.encode(cmd)) == cmd
