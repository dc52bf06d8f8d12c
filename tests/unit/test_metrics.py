"""NodeMetrics: cluster facts read from the replicated state, node facts from hooks."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from raftcron.api import metrics as metrics_api
from raftcron.api.app import NODE_KEY, job_json
from raftcron.clock import FakeClock
from raftcron.core import commands as c
from raftcron.core.model import JobSpec
from raftcron.core.state import State, outcome_key
from raftcron.metrics import NodeMetrics, job_series_order
from raftcron.raft.node import Machine, RaftStatus
from raftcron.timefmt import rfc3339

T0 = 1_700_000_000_000


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _state() -> State:
    s = State()
    for name in ("backup", "report"):
        spec = JobSpec(name=name, schedule="0 3 * * *", command=("/bin/true",))
        s.apply(c.PutJob(at_ms=T0, spec=spec))
    s.apply(c.SetPaused(at_ms=T0, name="report", paused=True))
    s.counters.extra[outcome_key("backup", "succeeded")] = 3
    s.counters.extra[outcome_key("backup", "failed")] = 1
    s.counters.extra[outcome_key("report", "missed")] = 2
    s.counters.extra["something/else"] = 99
    s.counters.stale_rejections = 4
    s.counters.fence = 7
    return s


class Fixture:
    def __init__(self) -> None:
        self.clock = FakeClock(mono=100.0)
        self.status = RaftStatus(self_addr="127.0.0.1:7101")
        self.active = 0
        self.machine = Machine(_state())
        self.m = NodeMetrics(
            node="a",
            clock=self.clock,
            machine=self.machine,
            raft_status=lambda: self.status,
            executor_active=lambda: self.active,
            version="1.2.3",
        )

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return samples(self.m.exposition().decode())


def test_cluster_facts_come_from_the_replicated_state() -> None:
    f = Fixture()
    got = f.scrape()
    fires = {k: v for k, v in got.items() if k[0] == "raftcron_fires_total"}
    assert fires == {
        ("raftcron_fires_total", (("job", "backup"), ("outcome", "failed"))): 1,
        ("raftcron_fires_total", (("job", "backup"), ("outcome", "succeeded"))): 3,
        ("raftcron_fires_total", (("job", "report"), ("outcome", "missed"))): 2,
    }
    assert got[("raftcron_stale_fence_rejections_total", ())] == 4
    assert got[("raftcron_fence", ())] == 7
    assert got[("raftcron_ledger_jobs", ())] == 2
    assert got[("raftcron_ledger_jobs_paused", ())] == 1
    assert got[("raftcron_ledger_runs", ())] == 0
    assert got[("raftcron_ledger_leases", ())] == 0
    assert got[("raftcron_node_info", (("node", "a"), ("version", "1.2.3")))] == 1
    # The numbers move with the state, and only with it.
    f.machine.read(lambda s: s.counters.extra.update({outcome_key("backup", "succeeded"): 5}))
    assert f.scrape()[("raftcron_fires_total", (("job", "backup"), ("outcome", "succeeded")))] == 5


def test_leadership_as_this_node_saw_it() -> None:
    f = Fixture()
    assert f.scrape()[("raftcron_has_leader", ())] == 0
    f.clock.advance(2.0)
    assert f.m.leaderless_seconds() == 2.0  # the open interval counts while it lasts
    lead = RaftStatus(self_addr="x", leader="127.0.0.1:7102", term=3, commit_index=9)
    f.m.on_status(lead)
    f.status = lead
    f.clock.advance(10.0)
    f.m.on_status(lead)  # the same leader again is no change
    got = f.scrape()
    assert got[("raftcron_leader_changes_total", ())] == 1
    assert got[("raftcron_leaderless_seconds_total", ())] == 2.0
    assert got[("raftcron_has_leader", ())] == 1
    assert got[("raftcron_raft_term", ())] == 3
    assert got[("raftcron_raft_commit_index", ())] == 9
    f.m.on_status(RaftStatus(self_addr="x", leader=None, term=4))
    f.clock.advance(1.5)
    f.m.on_status(RaftStatus(self_addr="x", leader="127.0.0.1:7101", term=4, is_leader=True))
    f.clock.advance(5.0)
    assert f.m.leader_changes() == 2
    assert f.m.leaderless_seconds() == 3.5


def test_node_hooks() -> None:
    f = Fixture()
    f.active = 3
    f.m.executor_event("started", "backup@1", {"scheduled_at_ms": T0, "started_ms": T0 + 120})
    f.m.executor_event("started", "backup@2", {"scheduled_at_ms": T0, "started_ms": T0 - 50})
    # jitter: due 30 s after its time, started 80 ms after that; buffered, retry: not lateness
    jit = {"scheduled_at_ms": T0, "due_ms": T0 + 30_000, "started_ms": T0 + 30_080}
    f.m.executor_event("started", "backup@3", jit)
    waited = {"scheduled_at_ms": T0, "started_ms": T0 + 600_000, "trigger": "buffered"}
    f.m.executor_event("started", "backup@4", waited)
    f.m.executor_event("started", "backup@4.2", {**waited, "trigger": "retry"})
    f.m.executor_event("renewed", "backup@1", {"fence": 1})
    f.m.executor_event("renewed", "backup@1", {"fence": 1})
    f.m.executor_event("completed", "backup@1", {"status": "succeeded", "accepted": True})
    f.m.on_proposal(c.Barrier(at_ms=T0, node="a", nonce="n"), 0.004)
    f.m.lock_acquire_seconds.observe(0.02)
    f.m.lease_renewals.labels(kind="lock").inc()
    got = f.scrape()
    assert got[("raftcron_executor_slots_in_use", ())] == 3
    assert got[("raftcron_fire_lateness_seconds_count", ())] == 3
    assert got[("raftcron_fire_lateness_seconds_sum", ())] == pytest.approx(0.2)  # early: 0
    assert got[("raftcron_fire_lateness_seconds_bucket", (("le", "0.1"),))] == 2
    assert got[("raftcron_lease_renewals_total", (("kind", "run"),))] == 2
    assert got[("raftcron_lease_renewals_total", (("kind", "lock"),))] == 1
    assert got[("raftcron_commit_latency_seconds_count", (("command", "Barrier"),))] == 1
    assert (
        got[("raftcron_commit_latency_seconds_bucket", (("command", "Barrier"), ("le", "0.005")))]
        == 1
    )
    assert got[("raftcron_lock_acquire_seconds_count", ())] == 1


def test_registries_are_per_node_and_not_global() -> None:
    a, b = Fixture(), Fixture()
    a.m.on_proposal(c.Barrier(at_ms=T0, node="a", nonce="n"), 0.01)
    assert ("raftcron_commit_latency_seconds_count", (("command", "Barrier"),)) not in b.scrape()
    assert REGISTRY.get_sample_value("raftcron_fence") is None


def test_metrics_endpoint() -> None:
    f = Fixture()
    app = web.Application()
    app[NODE_KEY] = SimpleNamespace(metrics=f.m)  # type: ignore[assignment]
    metrics_api.register(app)

    async def get() -> tuple[int, str, str]:
        async with TestClient(TestServer(app)) as client, client.get("/metrics") as resp:
            return resp.status, resp.headers["Content-Type"], await resp.text()

    status, ctype, text = asyncio.run(get())
    assert status == 200
    assert ctype.startswith("text/plain; version=0.0.4")
    assert samples(text)[("raftcron_fence", ())] == 7


def test_drain_state_of_every_member() -> None:
    f = Fixture()
    f.m.members = ("a", "b", "c")
    key = "raftcron_node_draining"

    def drains() -> dict[tuple[str, str], float]:
        got = f.scrape()
        return {
            (dict(labels)["node"], dict(labels)["state"]): v
            for (name, labels), v in got.items()
            if name == key
        }

    assert drains() == {(n, s): 0 for n in "abc" for s in ("draining", "drained")}
    spec = JobSpec(name="long", schedule="* * * * * *", command=("sleep", "9"))
    fire = c.Fire(job="long", scheduled_at_ms=T0 + 1000, node="b", trigger="schedule")

    def apply(cmd: c.Command) -> None:
        f.machine.read(lambda s: s.apply(cmd))

    apply(c.PutJob(at_ms=T0, spec=spec))
    apply(c.Plan(at_ms=T0 + 1000, fires=(fire,)))
    apply(c.Drain(at_ms=T0 + 1001, node="b", drain=True))
    apply(c.Drain(at_ms=T0 + 1001, node="c", drain=True, kind="shutdown"))
    got = drains()
    assert got[("b", "draining")] == 1 and got[("b", "drained")] == 0  # it still runs one
    assert got[("c", "draining")] == 0 and got[("c", "drained")] == 1
    assert got[("a", "draining")] == got[("a", "drained")] == 0
    rid = f"long@{T0 + 1000}"
    apply(c.Expire(at_ms=T0 + 9000, run_id=rid, fence=8, reason="gone"))
    assert drains()[("b", "drained")] == 1


def test_no_created_series() -> None:
    f = Fixture()
    f.m.on_proposal(c.Barrier(at_ms=T0, node="a", nonce="n"), 0.01)
    f.m.notification("webhook", "sent")
    f.m.lock_acquire_seconds.observe(0.02)
    # prometheus_client writes them for every counter and histogram child...
    assert b"raftcron_commit_latency_seconds_created{" in generate_latest(f.m.registry)
    # ...the exposition has none, and keeps everything else of those families
    text = f.m.exposition().decode()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    assert not [n for n in names if n.endswith("_created")]
    got = samples(text)
    assert got[("raftcron_commit_latency_seconds_count", (("command", "Barrier"),))] == 1
    assert got[("raftcron_notifications_total", (("kind", "webhook"), ("result", "sent")))] == 1
    assert got[("raftcron_lock_acquire_seconds_count", ())] == 1


def _per_job(got: dict[tuple[str, tuple[tuple[str, str], ...]], float], metric: str) -> dict:
    return {dict(labels)["job"]: v for (name, labels), v in got.items() if name == metric}


def test_next_fire_and_paused_per_job() -> None:
    f = Fixture()
    spec = JobSpec(name="chain", schedule="", after=("backup",), command=("/bin/true",))
    f.machine.read(lambda s: s.apply(c.PutJob(at_ms=T0, spec=spec)))
    f.clock.jump_wall(3 * 86_400 + 0.5)
    got = f.scrape()
    nxt = _per_job(got, "raftcron_job_next_fire_timestamp_seconds")
    # 03:00 UTC daily: the first one after now; a job that runs after others has none
    now_ms = f.clock.wall_ms()
    want = (now_ms // 86_400_000 + (1 if now_ms % 86_400_000 >= 3 * 3_600_000 else 0)) * 86_400
    assert nxt == {"backup": want + 3 * 3600, "report": want + 3 * 3600}
    # exactly what the API shows as the job's next_fire
    job = f.machine.read(lambda s: s.jobs["backup"])
    view = job_json(job, now_ms, None, [])
    assert view["next_fire"] == rfc3339(int(nxt["backup"] * 1000))
    assert _per_job(got, "raftcron_job_paused") == {"backup": 0, "chain": 0, "report": 1}


def test_peer_series_come_from_the_leader_only() -> None:
    f = Fixture()
    f.m.peers = lambda: {"127.0.0.1:7102": "b", "127.0.0.1:7103": "c"}
    f.status = RaftStatus(self_addr="127.0.0.1:7101", leader="127.0.0.1:7102", term=2)
    got = f.scrape()
    assert not [k for k in got if k[0].startswith("raftcron_peer_")]  # a follower: none
    f.status = RaftStatus(
        self_addr="127.0.0.1:7101",
        is_leader=True,
        leader="127.0.0.1:7101",
        term=3,
        commit_index=50,
        responsive=frozenset({"127.0.0.1:7102"}),
        match_index=(("127.0.0.1:7102", 50), ("127.0.0.1:7103", 20)),
        peer_behind_since=(("127.0.0.1:7103", f.clock.monotonic() - 7.5),),
    )
    got = f.scrape()
    assert _peer(got, "raftcron_peer_up") == {"b": 1, "c": 0}
    assert _peer(got, "raftcron_peer_replication_lag_entries") == {"b": 0, "c": 30}
    assert _peer(got, "raftcron_peer_replication_lag_seconds") == {"b": 0, "c": 7.5}
    f.clock.advance(2.0)  # the lag grows while nothing new is heard
    assert _peer(f.scrape(), "raftcron_peer_replication_lag_seconds")["c"] == 9.5


def _peer(got: dict[tuple[str, tuple[tuple[str, str], ...]], float], metric: str) -> dict:
    return {dict(labels)["peer"]: v for (name, labels), v in got.items() if name == metric}


def test_per_job_series_are_capped(caplog: pytest.LogCaptureFixture) -> None:
    f = Fixture()
    cap = [1]
    f.m.max_job_series = lambda: cap[0]
    # a deleted job that still has counters comes after every defined job
    f.machine.read(lambda s: s.counters.extra.update({outcome_key("gone", "failed"): 1}))
    caplog.set_level(logging.WARNING, logger="raftcron.metrics")
    got = f.scrape()
    assert got[("raftcron_metrics_jobs_omitted", ())] == 2
    jobs_seen = {dict(labels).get("job") for (_, labels) in got} - {None}
    assert jobs_seen == {"backup"}
    f.scrape()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # once, not at every scrape
    assert "(from 'report' on" in warnings[0] and "max_job_series = 1" in warnings[0]
    cap[0] = 3
    got = f.scrape()
    assert got[("raftcron_metrics_jobs_omitted", ())] == 0
    jobs_seen = {dict(labels).get("job") for (_, labels) in got} - {None}
    assert jobs_seen == {"backup", "report", "gone"}
    cap[0] = 0  # crossing again is said again
    got = f.scrape()
    assert not {dict(labels).get("job") for (_, labels) in got} - {None}
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


def test_job_series_order() -> None:
    assert job_series_order(["b", "a"], ["z", "a", "c"]) == ["a", "b", "c", "z"]


def test_last_run_series_come_from_the_replicated_job_stats() -> None:
    f = Fixture()

    def apply(cmd: c.Command) -> None:
        f.machine.read(lambda s: s.apply(cmd))

    got = f.scrape()
    for metric in (
        "raftcron_job_last_success_timestamp_seconds",
        "raftcron_job_last_duration_seconds",
        "raftcron_job_last_outcome",
    ):
        assert not _per_job(got, metric), metric  # nothing ran yet: no series
    at = T0 + 17_200_000  # 2023-11-15T03:00:00Z: the job's next fire
    rid = f"backup@{at}"
    fire = c.Fire(job="backup", scheduled_at_ms=at, node="a", trigger="schedule")
    apply(c.Plan(at_ms=at, fires=(fire,)))
    apply(c.Start(at_ms=at + 5, run_id=rid, fence=8, node="a", token="t"))
    done = c.Complete(at_ms=at + 2_505, run_id=rid, fence=8, node="a", status="succeeded",
                      exit_code=0, started_ms=at + 5, finished_ms=at + 2_505)  # fmt: skip
    apply(done)
    # the ledger forgets the run: the series do not
    f.machine.read(lambda s: s.runs.clear())
    got = f.scrape()
    assert _per_job(got, "raftcron_job_last_success_timestamp_seconds") == {
        "backup": (at + 2_505) / 1000
    }
    assert _per_job(got, "raftcron_job_last_duration_seconds") == {"backup": 2.5}
    outcomes = {
        dict(labels)["outcome"]: v
        for (name, labels), v in got.items()
        if name == "raftcron_job_last_outcome" and dict(labels)["job"] == "backup"
    }
    assert outcomes == {"succeeded": 1, "failed": 0, "timed_out": 0, "lost": 0, "killed": 0}
    assert not [k for k in got if k[0] == "raftcron_job_last_outcome" and "report" in str(k)]
