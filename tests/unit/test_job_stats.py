"""Job stats in the replicated state (``Job.stats``): the last outcome, end, duration and
success time of a job's runs, kept on the job (the ledger forgets old runs), for
``raftcron_job_last_*`` on /metrics (issue 16 item 6).

Only the final record of a run that held a lease changes them; a success time never
moves back; they survive a PutJob, go with a DeleteJob, are in the snapshot as the job
row's last field, and a snapshot written before they existed still loads.
"""

from __future__ import annotations

import base64

from raftcron.core import commands as c
from raftcron.core.model import JobStats
from raftcron.core.state import Ok, Rejected, State
from tests.helpers import spec

T0 = 1_800_000_000_000


def fire(job: str, at: int, node: str) -> c.Fire:
    return c.Fire(job=job, scheduled_at_ms=at, node=node, trigger="schedule")


def complete(rid: str, fence: int, status: str, started: int | None, finished: int) -> c.Complete:
    return c.Complete(
        at_ms=finished,
        run_id=rid,
        fence=fence,
        node="a",
        status=status,
        exit_code=0 if status == "succeeded" else 1,
        started_ms=started,
        finished_ms=finished,
    )


# A snapshot written by the code before job stats existed (main at cffd420), of the
# state OLD_COMMANDS leave: "ok" succeeded once, "bad" failed once, "idle" never ran.
OLD_SNAPSHOT = base64.b64decode(
    "iqF2AaNub3fPAAABoxhcVqStaGlzdG9yeV9saW1pdGSkam9ic5OWjKRuYW1lo2JhZKhzY2hlZHVsZasqICogKiAq"
    "ICogKqdjb21tYW5kkaVmYWxzZah0aW1lem9uZaNVVEOqdGltZW91dF9tc8Cnb3ZlcmxhcKVhbGxvd6pjYXRjaHVw"
    "X21zzepgp3JldHJpZXMApHRhZ3OQqGxlYXNlX21zzXUwo2VudpCjY3dkwKNhcGnCzwAAAaMYXFPozwAAAaMYXFAA"
    "zwAAAaMYXFAAloykbmFtZaRpZGxlqHNjaGVkdWxlqTAgMyAqICogKqdjb21tYW5kkaR0cnVlqHRpbWV6b25lo1VU"
    "Q6p0aW1lb3V0X21zwKdvdmVybGFwpWFsbG93qmNhdGNodXBfbXPN6mCncmV0cmllcwCkdGFnc5CobGVhc2VfbXPN"
    "dTCjZW52kKNjd2TAo2FwacLPAAABoxhcUADPAAABoxhcUADPAAABoxhcUACWjKRuYW1lom9rqHNjaGVkdWxlqyog"
    "KiAqICogKiAqp2NvbW1hbmSRpHRydWWodGltZXpvbmWjVVRDqnRpbWVvdXRfbXPAp292ZXJsYXClYWxsb3eqY2F0"
    "Y2h1cF9tc83qYKdyZXRyaWVzAKR0YWdzkKhsZWFzZV9tc811MKNlbnaQo2N3ZMCjYXBpws8AAAGjGFxT6M8AAAGj"
    "GFxQAM8AAAGjGFxQAKRydW5zktwAELFiYWRAMTgwMDAwMDAwMTAwMKNiYWTPAAABoxhcU+imZmFpbGVkqHNjaGVk"
    "dWxlAQKhYs8AAAGjGFxT6M8AAAGjGFxT6s8AAAGjGFxWpAGgoAGidDLcABCwb2tAMTgwMDAwMDAwMTAwMKJva88A"
    "AAGjGFxT6KlzdWNjZWVkZWSoc2NoZWR1bGUBAaFhzwAAAaMYXFPozwAAAaMYXFPpzwAAAaMYXFXcAKCgAaJ0Mado"
    "aXN0b3J5gqNiYWSRsWJhZEAxODAwMDAwMDAxMDAwom9rkbBva0AxODAwMDAwMDAxMDAwpmxlYXNlc5CoY291bnRl"
    "cnOUAgACgrJvdXRjb21lL2JhZC9mYWlsZWQBtG91dGNvbWUvb2svc3VjY2VlZGVkAaVsb2Nrc5CpbG9ja19kb25l"
    "kA=="
)
OLD_COMMANDS: list[c.Command] = [
    c.PutJob(at_ms=T0, spec=spec("ok")),
    c.PutJob(at_ms=T0, spec=spec("bad", command=("false",))),
    c.PutJob(at_ms=T0, spec=spec("idle", schedule="0 3 * * *")),
    c.Plan(at_ms=T0 + 1000, fires=(fire("ok", T0 + 1000, "a"), fire("bad", T0 + 1000, "b"))),
    c.Start(at_ms=T0 + 1001, run_id=f"ok@{T0 + 1000}", fence=1, node="a", token="t1"),
    c.Start(at_ms=T0 + 1002, run_id=f"bad@{T0 + 1000}", fence=2, node="b", token="t2"),
    complete(f"ok@{T0 + 1000}", 1, "succeeded", T0 + 1001, T0 + 1500),
    complete(f"bad@{T0 + 1000}", 2, "failed", T0 + 1002, T0 + 1700),
]


def _applied(cmds: list[c.Command], s: State | None = None) -> State:
    s = s if s is not None else State()
    for cmd in cmds:
        res = s.apply(cmd)
        assert isinstance(res, Ok), (cmd, res)
    return s


def test_stats_follow_the_final_records_of_runs() -> None:
    s = _applied(OLD_COMMANDS)
    assert s.jobs["ok"].stats == JobStats(
        outcome="succeeded", finished_ms=T0 + 1500, duration_ms=499, success_ms=T0 + 1500
    )
    assert s.jobs["bad"].stats == JobStats(
        outcome="failed", finished_ms=T0 + 1700, duration_ms=698, success_ms=0
    )
    assert s.jobs["idle"].stats == JobStats()
    # ok fails next: the outcome and duration move, the success time stays
    _applied(
        [
            c.Plan(at_ms=T0 + 2000, fires=(fire("ok", T0 + 2000, "a"),)),
            c.Start(at_ms=T0 + 2001, run_id=f"ok@{T0 + 2000}", fence=3, node="a", token="t3"),
            complete(f"ok@{T0 + 2000}", 3, "timed_out", T0 + 2001, T0 + 9001),
        ],
        s,
    )
    assert s.jobs["ok"].stats == JobStats(
        outcome="timed_out", finished_ms=T0 + 9001, duration_ms=7000, success_ms=T0 + 1500
    )
    # a run that never started and is lost: the outcome moves, the duration of the last
    # run that started stays
    _applied(
        [
            c.Plan(at_ms=T0 + 10_000, fires=(fire("ok", T0 + 10_000, "a"),)),
            c.Expire(at_ms=T0 + 20_000, run_id=f"ok@{T0 + 10_000}", fence=4, reason="gone"),
        ],
        s,
    )
    assert s.jobs["ok"].stats == JobStats(
        outcome="lost", finished_ms=T0 + 20_000, duration_ms=7000, success_ms=T0 + 1500
    )


def test_a_success_time_never_moves_back() -> None:
    s = _applied(OLD_COMMANDS[:3])
    _applied(
        [
            c.PutJob(at_ms=T0, spec=spec("ok", overlap="allow")),
            c.Plan(at_ms=T0 + 1000, fires=(fire("ok", T0 + 1000, "a"),)),
            c.Plan(at_ms=T0 + 2000, fires=(fire("ok", T0 + 2000, "b"),)),
            complete(f"ok@{T0 + 2000}", 2, "succeeded", T0 + 2000, T0 + 2500),
            # the older run ends later, with an executor clock that says earlier
            complete(f"ok@{T0 + 1000}", 1, "succeeded", T0 + 1000, T0 + 2400),
        ],
        s,
    )
    assert s.jobs["ok"].stats == JobStats(
        outcome="succeeded", finished_ms=T0 + 2400, duration_ms=1400, success_ms=T0 + 2500
    )


def test_records_of_runs_that_never_ran_leave_stats_alone() -> None:
    s = _applied(OLD_COMMANDS)
    before = s.jobs["bad"].stats
    s.apply(c.SetPaused(at_ms=T0 + 3000, name="bad", paused=True))
    s.apply(c.SetPaused(at_ms=T0 + 3000, name="bad", paused=False))
    missed = c.Missed(job="bad", first_ms=T0 + 2000, last_ms=T0 + 5000, count=4, reason="late")
    res = s.apply(c.Plan(at_ms=T0 + 6000, fires=(), missed=(missed,)))
    assert isinstance(res, Ok)
    assert s.runs[f"bad@{T0 + 2000}"].status == "missed"
    assert s.jobs["bad"].stats == before
    # a stale completion is refused and changes nothing
    stale = complete(f"bad@{T0 + 1000}", 2, "succeeded", T0 + 1002, T0 + 9000)
    assert isinstance(s.apply(stale), Rejected)
    assert s.jobs["bad"].stats == before


def test_stats_survive_an_update_and_go_with_the_job() -> None:
    s = _applied(OLD_COMMANDS)
    stats = s.jobs["ok"].stats
    assert s.apply(c.PutJob(at_ms=T0 + 5000, spec=spec("ok", schedule="@hourly"))) == Ok("updated")
    assert s.jobs["ok"].stats == stats
    assert isinstance(s.apply(c.DeleteJob(at_ms=T0 + 6000, name="ok")), Ok)
    assert s.apply(c.PutJob(at_ms=T0 + 7000, spec=spec("ok"))) == Ok("created")
    assert s.jobs["ok"].stats == JobStats()


def test_stats_are_in_the_snapshot() -> None:
    s = _applied(OLD_COMMANDS)
    back = State.restore(s.snapshot())
    assert back.digest() == s.digest()
    assert {n: j.stats for n, j in back.jobs.items()} == {n: j.stats for n, j in s.jobs.items()}
    assert back.jobs["ok"].stats.success_ms == T0 + 1500


def test_a_snapshot_written_before_job_stats_existed_still_loads() -> None:
    old = State.restore(OLD_SNAPSHOT)
    assert sorted(old.jobs) == ["bad", "idle", "ok"]
    assert all(j.stats == JobStats() for j in old.jobs.values())  # not known then
    assert old.runs[f"ok@{T0 + 1000}"].status == "succeeded"
    # a state without stats encodes exactly as before they existed
    assert old.snapshot() == OLD_SNAPSHOT
    # and the restored state keeps them from its next run on
    _applied(
        [
            c.Plan(at_ms=T0 + 2000, fires=(fire("bad", T0 + 2000, "b"),)),
            complete(f"bad@{T0 + 2000}", 3, "succeeded", T0 + 2001, T0 + 2101),
        ],
        old,
    )
    assert old.jobs["bad"].stats == JobStats(
        outcome="succeeded", finished_ms=T0 + 2101, duration_ms=100, success_ms=T0 + 2101
    )
