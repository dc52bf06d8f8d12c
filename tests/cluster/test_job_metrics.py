"""Metrics for alerting on a real 3-node cluster (issue 16 item 6).

A job that succeeds, one that fails and one that has not fired yet (yearly): after real
runs every member's /metrics has each job's last success, last duration, last outcome and
next fire, equal to what the same member's API says (its ledger and ``next_fire``); the
job that never ran has only its next fire. ``[metrics] max_job_series = 3`` leaves the
fourth job out (counted, and said once in a WARNING). No ``*_created`` series anywhere.
The leader exports each peer's up and replication lag (the followers none); a killed
member reads down and falls behind. Every metric docs/alerts.yml names is exported.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.harness import Cluster, wait_for

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parent.parent.parent
JOBS = [
    {"name": "good", "schedule": "*/2 * * * * *", "command": ["sh", "-c", "sleep 0.3"]},
    {"name": "bad", "schedule": "*/2 * * * * *", "command": ["false"]},
    {"name": "idle", "schedule": "0 0 1 1 *", "command": ["true"]},  # yearly: not yet
    {"name": "zz-over-the-cap", "schedule": "0 0 1 1 *", "command": ["true"]},
]
OUTCOMES = ("succeeded", "failed", "timed_out", "lost", "killed")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def new_cluster(root: Path) -> Cluster:
    return Cluster(root, JOBS, extra_toml="[metrics]\nmax_job_series = 3\n")


def scrape(cl: Cluster, name: str) -> str:
    with cl.open(cl.members[name].api + "/metrics", timeout=5) as r:
        text: str = r.read().decode()
    return text


def samples(text: str) -> Samples:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def per(got: Samples, metric: str, label: str = "job") -> dict[str, float]:
    return {dict(k)[label]: v for (n, k), v in got.items() if n == metric}


def ms(ts: str) -> int:
    return round(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def expected(cl: Cluster, member: str) -> dict[str, Any]:
    """What the member's API says about the last runs of good and bad."""
    out: dict[str, Any] = {}
    for job in ("good", "bad"):
        ran = [r for r in cl.runs(member, job) if r["status"] in OUTCOMES]
        last = max(ran, key=lambda r: ms(r["finished_at"]))
        started = [r for r in ran if r["started_at"] is not None]
        dur = max(started, key=lambda r: ms(r["finished_at"]))
        ok = [ms(r["finished_at"]) for r in ran if r["status"] == "succeeded"]
        out[job] = {
            "outcome": last["status"],
            "duration": (ms(dur["finished_at"]) - ms(dur["started_at"])) / 1000,
            "success": max(ok) / 1000 if ok else None,
        }
    return out


def test_job_series_after_real_runs(cl: Cluster) -> None:
    wait_for(
        "good to succeed and bad to fail twice",
        lambda: (
            sum(r["status"] == "succeeded" for r in cl.runs("a", "good")) >= 2
            and sum(r["status"] == "failed" for r in cl.runs("a", "bad")) >= 2
        ),
        60,
    )
    for job in ("good", "bad"):  # stop them, so the ledger and the metrics hold still
        status, body = cl.request("a", "POST", f"/v1/jobs/{job}/pause", {})
        assert status == 200, body
    wait_for(
        "no live run of good or bad",
        lambda: not any(cl.get("a", f"/v1/jobs/{j}")["running"] for j in ("good", "bad")),
        30,
    )
    for member in cl.members:
        want = expected(cl, member)

        def settled(m: str = member, w: dict[str, Any] = want) -> Samples | None:
            got = samples(scrape(cl, m))
            ok = per(got, "raftcron_job_last_success_timestamp_seconds") == {
                "good": w["good"]["success"]
            } and per(got, "raftcron_job_last_duration_seconds") == {
                j: w[j]["duration"] for j in ("good", "bad")
            }
            return got if ok else None

        got = wait_for(f"{member}'s last-run series to match its ledger", settled, 30)
        outcomes = {
            (dict(k)["job"], dict(k)["outcome"]): v
            for (n, k), v in got.items()
            if n == "raftcron_job_last_outcome"
        }
        assert want["good"]["outcome"] == "succeeded" and want["bad"]["outcome"] == "failed"
        assert outcomes == {
            (j, o): int(o == want[j]["outcome"]) for j in ("good", "bad") for o in OUTCOMES
        }
        assert want["good"]["duration"] >= 0.3  # sleep 0.3
        assert per(got, "raftcron_job_paused") == {"good": 1, "bad": 1, "idle": 0}
        # next fire: what the API shows, and none of the last-run series for idle
        idle = cl.get(member, "/v1/jobs/idle")
        nxt = per(got, "raftcron_job_next_fire_timestamp_seconds")
        assert nxt["idle"] == ms(idle["next_fire"]) / 1000
        assert idle["last_run"] is None
        before = ms(cl.get(member, "/v1/jobs/good")["next_fire"]) / 1000
        good_next = per(samples(scrape(cl, member)), "raftcron_job_next_fire_timestamp_seconds")
        after = ms(cl.get(member, "/v1/jobs/good")["next_fire"]) / 1000
        assert before <= good_next["good"] <= after
        # the cap: 3 jobs exported, the fourth left out and counted
        assert got[("raftcron_metrics_jobs_omitted", ())] == 1
        assert not [k for k in got if "zz-over-the-cap" in str(k)]


def test_no_created_series_and_the_cap_said_once(cl: Cluster) -> None:
    for member in cl.members:
        text = scrape(cl, member)
        names = {ln.split("{")[0].split(" ")[0] for ln in text.splitlines() if ln[:1] != "#"}
        assert "raftcron_fire_lateness_seconds_count" in names  # (it had a _created)
        assert not [n for n in names if n.endswith("_created")], member
        log = cl.members[member].log.read_text(errors="replace")
        said = re.findall(r"leaves out the per-job series of 1 job", log)
        assert len(said) == 1, (member, said)
        assert "max_job_series = 3" in log


def test_peers_from_the_leader_and_alerts_metrics_exported(cl: Cluster) -> None:
    leader = cl.wait_leader(30)
    others = sorted(set(cl.members) - {leader})

    def up() -> Samples | None:
        got = samples(scrape(cl, leader))
        return got if per(got, "raftcron_peer_up", "peer") == dict.fromkeys(others, 1) else None

    got = wait_for("the leader to see both peers up", up, 30)
    assert set(per(got, "raftcron_peer_replication_lag_entries", "peer")) == set(others)
    for member in others:  # a follower does not know: no peer series
        assert not [k for k in samples(scrape(cl, member)) if k[0].startswith("raftcron_peer_")]
    # every metric the example alerts use is in a real scrape
    exported = {k[0] for m in cl.members for k in samples(scrape(cl, m))}
    doc = yaml.safe_load((ROOT / "docs" / "alerts.yml").read_text())
    used = {
        name
        for group in doc["groups"]
        for rule in group["rules"]
        for name in re.findall(r"\b(raftcron_[a-z0-9_]+)", rule["expr"])
    }
    assert used <= exported, used - exported
    # a member killed: down, and behind by the entries committed since
    gone = others[0]
    cl.kill(gone)
    for i in range(3):  # commits the dead member cannot acknowledge
        body = {"schedule": "0 0 1 1 *", "command": ["true"]}
        status, body = cl.request(leader, "PUT", f"/v1/jobs/commit-{i}", body)
        assert status in (200, 201), body

    def down() -> Samples | None:
        got = samples(scrape(cl, leader))
        ok = (
            per(got, "raftcron_peer_up", "peer")[gone] == 0
            and per(got, "raftcron_peer_replication_lag_entries", "peer")[gone] >= 3
            and per(got, "raftcron_peer_replication_lag_seconds", "peer")[gone] > 0.5
        )
        return got if ok else None

    got = wait_for(f"the leader to see {gone} down and behind", down, 30)
    alive = others[1]
    assert per(got, "raftcron_peer_up", "peer")[alive] == 1
    assert per(got, "raftcron_peer_replication_lag_seconds", "peer")[alive] < 5
