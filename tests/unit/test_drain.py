"""Drain in the pure core: the command's codec and apply, the snapshot, and placement.

A drained member gets no new grants: the planner leaves it out of placement for tags,
``count`` (``"all"`` included) and ``max_parallel``, and ``apply`` refuses a plan made
before the drain committed that would still give it a fire (the leader re-plans it).
"""

from __future__ import annotations

import base64

import msgpack
import pytest

from raftcron.core import commands as c
from raftcron.core.model import (
    COUNT_ALL,
    DRAIN_OPERATOR,
    DRAIN_SHUTDOWN,
    FAILED,
    SKIPPED,
    DrainMark,
    Job,
    run_id,
)
from raftcron.core.planner import NodeInfo, placeable, plan
from raftcron.core.state import Ok, PlanOutcome, Rejected, State
from tests.helpers import spec

T0 = 1_800_000_000_000
NODES = [NodeInfo(name="a"), NodeInfo(name="b"), NodeInfo(name="c")]


def drain(node: str, on: bool = True, kind: str = DRAIN_OPERATOR, at: int = T0) -> c.Drain:
    return c.Drain(at_ms=at, node=node, drain=on, kind=kind)


# --------------------------------------------------------------------------- codec


@pytest.mark.parametrize(
    "cmd",
    [
        drain("a"),
        drain("a", on=False),
        drain("node-2", kind=DRAIN_SHUTDOWN),
        drain("node-2", on=False, kind=DRAIN_SHUTDOWN),
    ],
)
def test_drain_round_trips_through_the_envelope(cmd: c.Drain) -> None:
    data = c.encode(cmd)
    assert c.decode(data) == cmd
    body = msgpack.unpackb(data, raw=False)
    assert body["t"] == "drain" and body["node"] == cmd.node


def test_a_malformed_drain_decodes_to_nothing() -> None:
    data = msgpack.packb({"v": 1, "t": "drain", "at": T0, "node": "a"})  # no "drain"
    assert c.decode(data) is None


# --------------------------------------------------------------------------- apply

# (commands in order, then the mark left on "a": None or its kind)
CASES = [
    ([drain("a")], DRAIN_OPERATOR),
    ([drain("a"), drain("a", on=False)], None),
    ([drain("a", kind=DRAIN_SHUTDOWN)], DRAIN_SHUTDOWN),
    ([drain("a", kind=DRAIN_SHUTDOWN), drain("a", on=False, kind=DRAIN_SHUTDOWN)], None),
    # a member shutting down never replaces or lifts an operator's drain
    ([drain("a"), drain("a", kind=DRAIN_SHUTDOWN)], DRAIN_OPERATOR),
    ([drain("a"), drain("a", on=False, kind=DRAIN_SHUTDOWN)], DRAIN_OPERATOR),
    # an operator's drain of a member that is shutting down outlives its restart
    ([drain("a", kind=DRAIN_SHUTDOWN), drain("a")], DRAIN_OPERATOR),
    ([drain("a", kind=DRAIN_SHUTDOWN), drain("a"), drain("a", False, DRAIN_SHUTDOWN)], "operator"),
    # an operator's undrain lifts any drain
    ([drain("a", kind=DRAIN_SHUTDOWN), drain("a", on=False)], None),
    # undraining a member that is not drained changes nothing
    ([drain("a", on=False)], None),
    ([drain("b")], None),
]


@pytest.mark.parametrize(("cmds", "kind"), CASES)
def test_drain_marks(cmds: list[c.Drain], kind: str | None) -> None:
    s = State()
    for cmd in cmds:
        res = s.apply(cmd)
        assert isinstance(res, Ok)
        assert res.value == s.drained.get(cmd.node)
    mark = s.drained.get("a")
    assert (None if mark is None else mark.kind) == kind


def test_repeating_a_drain_keeps_its_first_time() -> None:
    s = State()
    s.apply(drain("a", at=T0))
    s.apply(drain("a", at=T0 + 5000))
    assert s.drained["a"] == DrainMark(kind=DRAIN_OPERATOR, since_ms=T0)


@pytest.mark.parametrize(
    ("cmd", "why"),
    [(drain("a", kind="whim"), "unknown drain kind"), (drain(""), "member name"),
     (drain("x" * 300), "member name")],
)  # fmt: skip
def test_a_bad_drain_is_refused_not_raised(cmd: c.Drain, why: str) -> None:
    s = State()
    res = s.apply(cmd)
    assert isinstance(res, Rejected) and res.code == "bad_drain" and why in res.message
    assert s.drained == {}


# --------------------------------------------------------------------------- snapshots

# A snapshot written by the code before drains existed (main at ef5e0de), of the state
# that OLD_COMMANDS leave: two jobs, three live runs, a held lock.
OLD_SNAPSHOT = base64.b64decode(
    "iqF2AaNub3fPAAABoxhcU+qtaGlzdG9yeV9saW1pdGSkam9ic5KWjaRuYW1loWqoc2NoZWR1bGWrKiAqICogKiAq"
    "ICqnY29tbWFuZJGkdHJ1Zah0aW1lem9uZaNVVEOqdGltZW91dF9tc8Cnb3ZlcmxhcKVhbGxvd6pjYXRjaHVwX21z"
    "zepgp3JldHJpZXMApHRhZ3OQqGxlYXNlX21zzXUwo2VudpCjY3dkwKVjb3VudAKjYXBpws8AAAGjGFxT6M8AAAGj"
    "GFxQAM8AAAGjGFxQAJaMpG5hbWWha6hzY2hlZHVsZa0qLzUgKiAqICogKiAqp2NvbW1hbmSSpGVjaG+iaGmodGlt"
    "ZXpvbmWjVVRDqnRpbWVvdXRfbXPAp292ZXJsYXCkc2tpcKpjYXRjaHVwX21zzepgp3JldHJpZXMApHRhZ3OQqGxl"
    "YXNlX21zzXUwo2VudpCjY3dkwKNhcGnCzwAAAaMYXGOIzwAAAaMYXFAAzwAAAaMYXFAApHJ1bnOT3AAUr2pAMTgw"
    "MDAwMDAwMTAwMKFqzwAAAaMYXFPop3J1bm5pbmeoc2NoZWR1bGUBAaFhzwAAAaMYXFPozwAAAaMYXFPpwMCgoAGh"
    "dMCQAQLcABSxakAxODAwMDAwMDAxMDAwfjKhas8AAAGjGFxT6KdjbGFpbWVkqHNjaGVkdWxlAQKhYs8AAAGjGFxT"
    "6MDAwKCgAaDAkAIC3AAQr2tAMTgwMDAwMDAwNTAwMKFrzwAAAaMYXGOIp2NsYWltZWSoc2NoZWR1bGUBA6FjzwAA"
    "AaMYXFPowMDAoKABoKdoaXN0b3J5gKZsZWFzZXOTlq9qQDE4MDAwMDAwMDEwMDABoWHNdTDPAAABoxhcU+gBlrFq"
    "QDE4MDAwMDAwMDEwMDB+MgKhYs11MM8AAAGjGFxT6ACWr2tAMTgwMDAwMDAwNTAwMAOhY811MM8AAAGjGFxT6ACo"
    "Y291bnRlcnOUBAAAgKVsb2Nrc5GZoUwEoWiicjHNE4jPAAABoxhcU+rPAAABoxhcU+oAkKlsb2NrX2RvbmWQ"
)
OLD_COMMANDS: list[c.Command] = [
    c.PutJob(at_ms=T0, spec=spec("j", count=2)),
    c.PutJob(at_ms=T0, spec=spec("k", schedule="*/5 * * * * *", command=("echo", "hi"),
                                 overlap="skip")),
    c.Plan(at_ms=T0 + 1000, fires=(
        c.Fire(job="j", scheduled_at_ms=T0 + 1000, node="a", trigger="schedule", instance=1,
               instances=2),
        c.Fire(job="j", scheduled_at_ms=T0 + 1000, node="b", trigger="schedule", instance=2,
               instances=2),
        c.Fire(job="k", scheduled_at_ms=T0 + 5000, node="c", trigger="schedule"),
    )),
    c.Start(at_ms=T0 + 1001, run_id=f"j@{T0 + 1000}", fence=1, node="a", token="t"),
    c.AcquireLock(at_ms=T0 + 1002, name="L", request="r1", holder="h", ttl_ms=5000, wait_ms=0),
]  # fmt: skip


def _old_state() -> State:
    s = State()
    for cmd in OLD_COMMANDS:
        assert isinstance(s.apply(cmd), Ok)
    return s


def test_a_snapshot_written_before_drains_existed_still_loads() -> None:
    old = State.restore(OLD_SNAPSHOT)
    assert old.drained == {}
    assert old.digest() == _old_state().digest()
    # and a state without a drain encodes exactly as it did then (digests agree across
    # versions in a rolling upgrade)
    assert _old_state().snapshot() == OLD_SNAPSHOT
    # the restored state takes drains like any other
    assert old.apply(drain("b")) == Ok(DrainMark(kind=DRAIN_OPERATOR, since_ms=old.now_ms))


def test_drained_members_are_in_the_snapshot() -> None:
    s = _old_state()
    s.apply(drain("c", at=T0 + 2000))
    s.apply(drain("a", kind=DRAIN_SHUTDOWN, at=T0 + 3000))
    snap = s.snapshot()
    body = msgpack.unpackb(snap, raw=False, strict_map_key=False)
    assert list(body)[-1] == "drained"
    assert body["drained"] == [["a", DRAIN_SHUTDOWN, T0 + 3000], ["c", DRAIN_OPERATOR, T0 + 2000]]
    assert msgpack.packb(body, use_bin_type=True) == snap  # canonical, like the rest
    back = State.restore(snap)
    assert back.drained == s.drained
    assert back.digest() == s.digest()
    # undrained again: the snapshot has no "drained" key at all
    s.apply(drain("c", on=False))
    s.apply(drain("a", on=False))
    assert "drained" not in msgpack.unpackb(s.snapshot(), raw=False, strict_map_key=False)


# --------------------------------------------------------------------------- apply: plans


def fire(job: str, t: int, node: str, **kw: object) -> c.Fire:
    return c.Fire(job=job, scheduled_at_ms=t, node=node, trigger="schedule", **kw)  # type: ignore[arg-type]


def outcome(s: State, *fires: c.Fire, at: int = T0 + 1000) -> PlanOutcome:
    res = s.apply(c.Plan(at_ms=at, fires=fires))
    assert isinstance(res, Ok) and isinstance(res.value, PlanOutcome)
    return res.value


def test_a_plan_made_before_the_drain_committed_grants_nothing_to_it() -> None:
    s = State()
    s.apply(c.PutJob(at_ms=T0, spec=spec("j")))
    s.apply(drain("a"))
    out = outcome(s, fire("j", T0 + 1000, "a"))
    assert out.granted == () and out.rejected == (("j", T0 + 1000, "drained"),)
    assert s.jobs["j"].watermark_ms == T0  # not considered: re-planned from here
    assert run_id("j", T0 + 1000) not in s.runs
    out = outcome(s, fire("j", T0 + 1000, "b"))
    assert [(g[0], g[2]) for g in out.granted] == [(run_id("j", T0 + 1000), "b")]


def test_a_fire_with_one_instance_for_a_drained_member_is_refused_whole() -> None:
    s = State()
    s.apply(c.PutJob(at_ms=T0, spec=spec("j", count=2)))
    s.apply(drain("b"))
    t = T0 + 1000
    out = outcome(
        s, fire("j", t, "a", instance=1, instances=2), fire("j", t, "b", instance=2, instances=2)
    )
    assert out.granted == () and [r[2] for r in out.rejected] == ["drained", "drained"]
    assert s.runs == {} and s.jobs["j"].watermark_ms == T0
    # the re-plan places both instances elsewhere
    out = outcome(
        s, fire("j", t, "a", instance=1, instances=2), fire("j", t, "c", instance=2, instances=2)
    )
    assert sorted(g[2] for g in out.granted) == ["a", "c"]


def test_a_retry_for_a_drained_member_stays_pending() -> None:
    s = State()
    s.apply(c.PutJob(at_ms=T0, spec=spec("j", retries=1, retry_backoff_ms=0)))
    t = T0 + 1000
    (rid, fence, _), = outcome(s, fire("j", t, "a")).granted  # fmt: skip
    s.apply(c.Start(at_ms=t, run_id=rid, fence=fence, node="a", token="x"))
    s.apply(
        c.Complete(
            at_ms=t + 10, run_id=rid, fence=fence, node="a", status=FAILED, exit_code=1,
            started_ms=t, finished_ms=t + 10,
        )
    )  # fmt: skip
    (pending,) = s.jobs["j"].retry
    s.apply(drain("b"))
    retry = c.Fire(job="j", scheduled_at_ms=t, node="b", trigger="retry", attempt=2)
    out = outcome(s, retry, at=t + 20)
    assert out.granted == () and out.rejected == (("j", t, "drained"),)
    assert s.jobs["j"].retry == (pending,)
    out = outcome(s, c.Fire(job="j", scheduled_at_ms=t, node="c", trigger="retry", attempt=2))
    assert [g[2] for g in out.granted] == ["c"]


def test_a_drained_member_keeps_what_it_runs() -> None:
    s = State()
    s.apply(c.PutJob(at_ms=T0, spec=spec("j")))
    (rid, fence, _), = outcome(s, fire("j", T0 + 1000, "a")).granted  # fmt: skip
    s.apply(drain("a"))
    assert s.apply(c.Start(at_ms=T0 + 1001, run_id=rid, fence=fence, node="a", token="x")) == Ok(
        fence
    )
    assert s.apply(c.Renew(at_ms=T0 + 1002, run_id=rid, fence=fence, node="a")) == Ok(fence)


# --------------------------------------------------------------------------- the planner


def job(**kw: object) -> Job:
    return Job(spec=spec(**kw), watermark_ms=T0)


def nodes_of(p: c.Plan) -> list[str]:
    return [f.node for f in p.fires]


def test_placeable_leaves_drained_members_out() -> None:
    assert [n.name for n in placeable(NODES, {"b"})] == ["a", "c"]
    assert placeable(NODES, ()) == NODES


@pytest.mark.parametrize("drained", [{"a"}, {"b"}, {"c"}, {"a", "b"}])
def test_a_fire_never_goes_to_a_drained_member(drained: set[str]) -> None:
    for t in range(1, 30):  # spread over many run ids (ties are broken by a hash)
        p = plan([job()], T0 + t * 1000, NODES, {}, drained=drained)
        assert p.fires and not set(nodes_of(p)) & drained


def test_tags_count_only_members_that_are_not_drained() -> None:
    tagged = [NodeInfo(name="a", tags=(("gpu", "1"),)), NodeInfo(name="b", tags=(("gpu", "1"),))]
    p = plan([job(tags=(("gpu", "1"),))], T0 + 1000, [*tagged, NodeInfo(name="c")], {},
             drained={"a"})  # fmt: skip
    assert nodes_of(p) == ["b"]
    p = plan([job(tags=(("gpu", "1"),))], T0 + 1000, tagged, {}, drained={"a", "b"})
    assert nodes_of(p) == [""]  # unschedulable, recorded as such by apply


def test_count_all_counts_members_that_are_not_drained() -> None:
    p = plan([job(count=COUNT_ALL)], T0 + 1000, NODES, {}, drained={"c"})
    assert sorted(nodes_of(p)) == ["a", "b"]
    assert {f.instances for f in p.fires} == {2}


def test_count_places_the_instances_elsewhere_or_records_the_rest() -> None:
    p = plan([job(count=3)], T0 + 1000, NODES, {}, drained={"a"})
    assert nodes_of(p)[:2] and set(nodes_of(p)[:2]) == {"b", "c"} and nodes_of(p)[2] == ""


def test_max_parallel_room_on_a_drained_member_is_not_used() -> None:
    # b runs the job once already (max_parallel = 1): only a could take it, and a is drained
    live = {"j": [(run_id("j", T0), "b")]}
    p = plan([job(max_parallel=1, overlap="allow")], T0 + 1000, NODES[:2], {}, live=live,
             drained={"a"})  # fmt: skip
    assert nodes_of(p) == [""]
    p = plan([job(max_parallel=1, overlap="allow")], T0 + 1000, NODES[:2], {}, live=live)
    assert nodes_of(p) == ["a"]


def test_end_to_end_a_drained_member_gets_nothing_until_undrained() -> None:
    s = State()
    s.apply(c.PutJob(at_ms=T0, spec=spec("j", count=COUNT_ALL, overlap="allow")))
    s.apply(drain("b"))
    for t in range(1, 6):
        now = T0 + t * 1000
        p = plan(list(s.jobs.values()), now, NODES, s.load_by_node(), drained=s.drained)
        out = outcome(s, *p.fires, at=now)
        assert out.rejected == () and {g[2] for g in out.granted} == {"a", "c"}
    s.apply(drain("b", on=False))
    now = T0 + 6000
    p = plan(list(s.jobs.values()), now, NODES, s.load_by_node(), drained=s.drained)
    out = outcome(s, *p.fires, at=now)
    assert {g[2] for g in out.granted} == {"a", "b", "c"}
    assert not any(r.status == SKIPPED for r in s.runs.values())
