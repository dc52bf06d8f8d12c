"""Auth, TLS and metrics on real `raftcron agent` processes.

* With tokens configured, requests without a token or with the read-only token are refused
  exactly where they must be, on the leader and on a follower; health and metrics stay open.
* /metrics is Prometheus text with every family of issue 3, with sensible values after a
  few fires; the per-job outcome counters are cluster facts: after kill -9 of the leader,
  the new leader reports at least what the old one did.
* With a certificate configured the API speaks HTTPS only.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.harness import Cluster, api_tokens, wait_for
from tests.tls import self_signed

pytestmark = pytest.mark.cluster

ADMIN = "admin-token-0123456789abcdef"
READ = "read-token-0123456789abcdef"
TOKENS = api_tokens(ADMIN, READ)
FAMILIES = {
    "raftcron_fires": "counter",
    "raftcron_fire_lateness_seconds": "histogram",
    "raftcron_lock_acquire_seconds": "histogram",
    "raftcron_lease_renewals": "counter",
    "raftcron_stale_fence_rejections": "counter",
    "raftcron_leader_changes": "counter",
    "raftcron_leaderless_seconds": "counter",
    "raftcron_commit_latency_seconds": "histogram",
    "raftcron_ledger_runs": "gauge",
    "raftcron_ledger_jobs": "gauge",
    "raftcron_ledger_leases": "gauge",
    "raftcron_executor_slots_in_use": "gauge",
}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def call(
    cl: Cluster, name: str, method: str, path: str, token: str | None, body: Any = None
) -> tuple[int, dict[str, str], Any]:
    """One request with exactly this token (None: no Authorization header)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(cl.members[name].api + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10, context=cl.ssl) as r:
            raw = r.read()
            status, headers = r.status, dict(r.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            raw = exc.read()
            status, headers = exc.code, dict(exc.headers)
    text = raw.decode()
    try:
        return status, headers, json.loads(text)
    except ValueError:
        return status, headers, text


def scrape(cl: Cluster, name: str) -> tuple[dict[str, str], Samples]:
    status, headers, text = call(cl, name, "GET", "/metrics", None)
    assert status == 200, text
    assert headers["Content-Type"].startswith("text/plain")
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return types, samples


def fires(samples: Samples) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["job"], dict(labels)["outcome"]): v
        for (name, labels), v in samples.items()
        if name == "raftcron_fires_total"
    }


def test_tokens_and_metrics_across_a_leader_kill(
    tmp_path: Path, make_cluster: list[Cluster]
) -> None:
    jobs = [
        {"name": "ok", "schedule": "* * * * * *", "command": ["true"], "lease": "3s"},
        {
            # Runs long enough to renew its 2s lease a few times, then fails.
            "name": "slow-fail",
            "schedule": "* * * * * *",
            "command": ["sh", "-c", "sleep 1.5; exit 3"],
            "lease": "2s",
        },
    ]
    cl = Cluster(tmp_path, jobs, extra_toml=TOKENS, token=ADMIN)
    make_cluster.append(cl)
    cl.start()
    leader = cl.wait_leader()
    follower = next(n for n in cl.members if n != leader)
    wait_for(
        "every member sees the leader",
        lambda: all(call(cl, n, "GET", "/health", None)[0] == 200 for n in cl.members),
        30,
    )

    # -- who may do what, on the leader and on a follower
    for node in (leader, follower):
        for token in (None, "wrong-token-0123456789abcdef"):
            status, headers, body = call(cl, node, "GET", "/v1/status", token)
            assert status == 401, body
            assert headers["WWW-Authenticate"].startswith("Bearer")
            assert body["error"]["code"] == "unauthorized"
        for token in (READ, ADMIN):
            status, _, body = call(cl, node, "GET", "/v1/status", token)
            assert status == 200 and body["node"] == node
            assert call(cl, node, "GET", "/v1/runs?limit=1", token)[0] == 200
        for path in ("/health", "/metrics", "/"):
            assert call(cl, node, "GET", path, None)[0] == 200, path
        job = {"schedule": "0 0 1 1 *", "command": ["true"]}
        name = f"made-on-{node}"
        assert call(cl, node, "PUT", f"/v1/jobs/{name}", None, job)[0] == 401
        status, _, body = call(cl, node, "PUT", f"/v1/jobs/{name}", READ, job)
        assert status == 403 and body["error"]["code"] == "forbidden", body
        assert call(cl, node, "POST", f"/v1/jobs/{name}/pause", READ)[0] == 403
        assert call(cl, node, "DELETE", f"/v1/jobs/{name}", READ)[0] == 403
        status, _, body = call(cl, node, "PUT", f"/v1/jobs/{name}", ADMIN, job)
        assert status in (200, 201), body
        assert call(cl, node, "POST", f"/v1/jobs/{name}/pause", ADMIN)[0] == 200
        assert call(cl, node, "DELETE", f"/v1/jobs/{name}", ADMIN)[0] == 200
    assert call(cl, leader, "GET", "/health/leader", None)[0] == 200
    assert call(cl, follower, "GET", "/health/leader", None)[0] == 503

    # -- metrics after a few fires
    def enough() -> bool:
        f = fires(scrape(cl, leader)[1])
        return f.get(("ok", "succeeded"), 0) >= 4 and f.get(("slow-fail", "failed"), 0) >= 2

    wait_for("a few fires in /metrics", enough, 30)
    types, s = scrape(cl, leader)
    for family, kind in FAMILIES.items():
        assert types.get(family) == kind, (family, types.get(family))
    assert s[("raftcron_ledger_jobs", ())] == 2
    assert s[("raftcron_ledger_runs", ())] >= 6
    assert s[("raftcron_leader_changes_total", ())] >= 1
    assert s[("raftcron_is_leader", ())] == 1
    latency = [v for (n, _), v in s.items() if n == "raftcron_commit_latency_seconds_count"]
    assert sum(latency) > 0  # the leader proposes every plan and barrier
    # Node facts live on the node that ran the runs: sum them over the members.
    per_node = {n: scrape(cl, n)[1] for n in cl.members}
    started = sum(x[("raftcron_fire_lateness_seconds_count", ())] for x in per_node.values())
    assert started >= 6
    late_sum = sum(x[("raftcron_fire_lateness_seconds_sum", ())] for x in per_node.values())
    # lateness is measured, in seconds: its mean is above zero and at most the latest start
    # the ledger shows (scheduled -> started, recorded after the spawn the metric times)
    ledger_late = [
        (_ms(r["started_at"]) - r["scheduled_at_ms"]) / 1000
        for r in cl.runs(leader)
        if r.get("started_at")
    ]
    assert ledger_late and 0 < late_sum / started <= max(ledger_late) + 0.5, (
        late_sum / started,
        max(ledger_late),
    )
    renewals = sum(
        x[("raftcron_lease_renewals_total", (("kind", "run"),))] for x in per_node.values()
    )
    assert renewals >= 1
    # slow-fail holds a lease and an executor slot 1.5 s of every second: both gauges show it
    wait_for(
        "a live lease in the leader's gauge",
        lambda: scrape(cl, leader)[1][("raftcron_ledger_leases", ())] >= 1,
        30,
        0.05,
    )
    wait_for(
        "an executor slot in use on some node",
        lambda: any(
            scrape(cl, n)[1][("raftcron_executor_slots_in_use", ())] >= 1 for n in cl.members
        ),
        30,
        0.05,
    )
    # a renewal naming a stale fence is refused and counted in the replicated counter
    stale_before = s[("raftcron_stale_fence_rejections_total", ())]
    status, _, g = call(cl, follower, "POST", "/v1/locks/probe", ADMIN, {"ttl": "30s"})
    assert status == 200, g
    status, _, body = call(
        cl, follower, "POST", "/v1/locks/probe/renew", ADMIN, {"fence": g["fence"] + 1000}
    )
    assert (status, body["error"]["code"]) == (409, "stale_fence"), body
    wait_for(
        "the stale renewal counted",
        lambda: (
            scrape(cl, leader)[1][("raftcron_stale_fence_rejections_total", ())] >= stale_before + 1
        ),
        10,
    )
    assert call(cl, leader, "DELETE", f"/v1/locks/probe?fence={g['fence']}", ADMIN)[0] == 200

    # -- outcome counters are cluster facts: they survive kill -9 of the leader
    before = fires(scrape(cl, leader)[1])
    survivors = [n for n in cl.members if n != leader]
    leaderless = {n: scrape(cl, n)[1][("raftcron_leaderless_seconds_total", ())] for n in survivors}
    cl.kill(leader)
    new = cl.wait_leader(among=survivors)
    _, after_s = scrape(cl, new)
    after = fires(after_s)
    for key, n in before.items():
        assert after.get(key, 0) >= n, (key, n, after.get(key))
    assert after_s[("raftcron_leader_changes_total", ())] >= 2
    # the new leader went through an election after the kill: time without a leader it saw
    assert after_s[("raftcron_leaderless_seconds_total", ())] > leaderless[new], leaderless


def test_https_and_closed_health(tmp_path: Path, make_cluster: list[Cluster]) -> None:
    cert, key = self_signed(tmp_path / "tls")
    api = f'[api]\ntls_cert = "{cert}"\ntls_key = "{key}"\nopen_health = false\n'
    cl = Cluster(tmp_path, size=1, extra_toml=api + TOKENS, token=READ, cafile=cert)
    make_cluster.append(cl)
    cl.start()
    (name,) = cl.members
    assert cl.members[name].api.startswith("https://")
    wait_for("the node leads", lambda: cl.leader([name]), 30)
    status, _, body = call(cl, name, "GET", "/health", READ)
    assert status == 200 and body["status"] == "ok"
    assert call(cl, name, "GET", "/health", None)[0] == 401
    assert call(cl, name, "GET", "/metrics", None)[0] == 401
    status, _, body = call(cl, name, "GET", "/v1/status", READ)
    assert status == 200
    assert body["members"][0]["api"].startswith("https://")
    plain = f"http://127.0.0.1:{cl.members[name].api_port}/health"
    with pytest.raises((OSError, http.client.HTTPException)):
        urllib.request.urlopen(plain, timeout=5).close()


def _ms(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)
