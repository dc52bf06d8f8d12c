"""The /v1 API and the CLI client against three real agents (one cluster per module).

Every endpoint, each error status (400/404/405/409/503, never a 500 for client input), a
write sent to a follower, a manual trigger obeying overlap=skip, overlap=buffer_one running
the buffered fire right after the live run, fire previews across the
Europe/Berlin DST transitions, run filters and cursor pagination, the OpenAPI document
against what the nodes serve, and `raftcron` client verbs as subprocesses.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from raftcron.client import ApiError, Client
from tests.cluster.harness import SINK_CMD, Cluster, read_sink, wait_for

pytestmark = pytest.mark.cluster

CONFIG_JOB = {"name": "cfg", "schedule": "0 0 1 1 *", "command": ["true"]}
YEARLY = {"schedule": "0 0 1 1 *", "command": ["true"]}


def new_cluster(root: Path) -> Cluster:
    return Cluster(root, [CONFIG_JOB])


def call(
    cl: Cluster, node: str, method: str, path: str, body: Any = None, raw: bytes | None = None
) -> tuple[int, dict[str, str], Any]:
    """One request; (status, headers, decoded JSON body) whatever the status."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(cl.members[node].api + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            payload = r.read()
            if not r.headers.get("Content-Type", "").startswith("application/json"):
                return r.status, dict(r.headers), payload  # /metrics, the dashboard
            return r.status, dict(r.headers), json.loads(payload)
    except urllib.error.HTTPError as exc:
        with exc:
            payload = exc.read()
            assert exc.headers.get("Content-Type", "").startswith("application/json"), payload
            return exc.code, dict(exc.headers), json.loads(payload)


def roles(cl: Cluster) -> tuple[str, list[str]]:
    leader = cl.wait_leader(30)
    return leader, [n for n in cl.members if n != leader]


def put(cl: Cluster, node: str, name: str, **job: Any) -> dict[str, Any]:
    status, _, body = call(cl, node, "PUT", f"/v1/jobs/{name}", job)
    assert status in (200, 201), body
    return body


# --------------------------------------------------------------------------- jobs


def test_status_and_health_on_every_node(cl: Cluster) -> None:
    leader, _ = roles(cl)
    for name in cl.members:
        status, _, st = call(cl, name, "GET", "/v1/status")
        assert status == 200 and st["node"] == name and st["leader"] == leader
        assert [m["name"] for m in st["members"]] == ["a", "b", "c"]
        assert st["role"] == ("leader" if name == leader else "follower")
        assert call(cl, name, "GET", "/health")[0] == 200
        assert call(cl, name, "GET", "/health/leader")[0] == (200 if name == leader else 503)
    st = cl.get(leader, "/v1/status")
    assert all("lag" in m for m in st["members"]), st["members"]


def test_job_lifecycle_through_a_follower(cl: Cluster) -> None:
    """Writes sent to a follower are carried out (not bounced); reads on any node see them."""
    leader, (f1, f2) = roles(cl)
    status, _, body = call(cl, f1, "PUT", "/v1/jobs/life", {**YEARLY, "timezone": "Asia/Tokyo"})
    assert (status, body) == (201, {"job": "life", "result": "created", "warnings": []})
    job = cl.get(f1, "/v1/jobs/life")  # read-your-write on the node that proposed
    assert job["timezone"] == "Asia/Tokyo" and job["source"] == "api" and not job["paused"]
    assert job["next_fires"][0]["local"].endswith("T00:00:00+09:00")
    assert len(job["next_fires"]) == 5 and job["last_run"] is None
    assert job["next_fire"] == job["next_fires"][0]["utc"]
    for other in (leader, f2):
        wait_for(
            f"life on {other}", lambda o=other: call(cl, o, "GET", "/v1/jobs/life")[0] == 200, 5
        )

    # The spec PUT back as it is changes nothing; a change is "updated".
    assert call(cl, f2, "PUT", "/v1/jobs/life", job["spec"])[2]["result"] == "unchanged"
    changed = {**job["spec"], "overlap": "skip"}
    assert call(cl, leader, "PUT", "/v1/jobs/life", changed)[2]["result"] == "updated"

    status, _, paused = call(cl, f2, "POST", "/v1/jobs/life/pause", {"note": "maintenance"})
    assert status == 200 and paused["paused"] and paused["pause_note"] == "maintenance"
    listed = {j["name"]: j for j in cl.get(f2, "/v1/jobs")["jobs"]}
    assert listed["life"]["paused"] and listed["cfg"]["source"] == "config"
    status, _, resumed = call(cl, f1, "POST", "/v1/jobs/life/resume")
    assert status == 200 and not resumed["paused"] and resumed["pause_note"] == ""

    assert call(cl, f1, "DELETE", "/v1/jobs/life")[:3:2] == (
        200,
        {"job": "life", "result": "deleted"},
    )
    assert call(cl, f1, "GET", "/v1/jobs/life")[0] == 404


def test_trigger_obeys_overlap_skip(cl: Cluster) -> None:
    _, (f1, f2) = roles(cl)
    put(cl, f1, "sleeper", schedule="0 0 1 1 *", command=["sleep", "4"], overlap="skip", lease="5s")
    status, _, first = call(cl, f1, "POST", "/v1/jobs/sleeper/trigger")
    assert status == 202 and first["status"] == "claimed" and first["fence"] > 0, first
    assert first["node"] in cl.members and first["run"].endswith("~manual")
    status, _, second = call(cl, f2, "POST", "/v1/jobs/sleeper/trigger", {})
    assert status == 202 and second["status"] == "skipped", second
    assert second["reason"] == f"overlap=skip: {first['run']} is still running"
    assert second["fence"] is None and second["node"] is None
    ledger = {r["id"]: r for r in cl.runs(f2, "sleeper")}
    assert ledger[second["run"]]["status"] == "skipped"
    assert ledger[second["run"]]["reason"] == second["reason"]
    assert ledger[first["run"]]["trigger"] == "manual"

    # The same scheduled_at again is the same fire: answered with that run, not run twice.
    at = first["scheduled_at"]
    status, _, again = call(cl, f1, "POST", "/v1/jobs/sleeper/trigger", {"scheduled_at": at})
    assert status == 200 and again["duplicate"] and again["run"] == first["run"], again

    # A job without overlap=skip runs beside itself.
    put(cl, f1, "twice", schedule="0 0 1 1 *", command=["sleep", "2"])
    a = call(cl, f1, "POST", "/v1/jobs/twice/trigger")[2]
    b = call(cl, f1, "POST", "/v1/jobs/twice/trigger")[2]
    assert a["status"] == b["status"] == "claimed" and a["run"] != b["run"]
    assert b["fence"] > a["fence"]
    job = cl.get(f1, "/v1/jobs/sleeper")  # well within the 4 s the first run sleeps
    assert job["running"] == [first["run"]] and job["last_run"]["id"] == second["run"]


def test_backfill_runs_a_past_range_once_each_in_order(cl: Cluster, tmp_path: Path) -> None:
    _, (f1, f2) = roles(cl)
    sink = tmp_path / "backfill.txt"
    cmd = ["sh", "-c", SINK_CMD.format(sink=sink)]
    put(cl, f1, "yearly", schedule="0 0 1 1 *", command=cmd, timezone="UTC")
    body = {"from": "2022-06-01T00:00:00Z", "to": "2025-01-01T00:00:00Z", "rate": 5, "id": "t1"}
    status, _, started = call(cl, f1, "POST", "/v1/jobs/yearly/backfill", body)
    assert status == 202, started
    bf = started["backfill"]
    assert bf["id"] == "t1" and bf["total"] == 3 and bf["rate"] == 5  # 2023, 2024, 2025
    # The same request again is the same backfill; another one waits its turn.
    assert call(cl, f2, "POST", "/v1/jobs/yearly/backfill", body)[2]["backfill"]["id"] == "t1"
    wait_for("three backfilled runs", lambda: len(read_sink(sink)) >= 3, 60)

    def settled() -> bool:
        job = cl.get(f2, "/v1/jobs/yearly")
        return job["backfill"] is None and not job["running"]

    wait_for("the backfill to end", settled, 30)
    years = ["2023", "2024", "2025"]
    lines = read_sink(sink)
    assert [ln["at"][:4] for ln in lines] == years  # in order, each once
    assert [ln["run"] for ln in lines] == [f"yearly@{_ms(y)}~backfill-t1" for y in years]
    ledger = {r["id"]: r for r in cl.runs(f2, "yearly")}
    for ln in lines:
        run = ledger[ln["run"]]
        assert run["trigger"] == "backfill" and run["status"] == "succeeded", run
    # Bad requests are 400 with the reason; the CLI starts and cancels one.
    status, _, err = call(
        cl, f1, "POST", "/v1/jobs/yearly/backfill", {**body, "to": "2999-01-01T00:00:00Z"}
    )
    assert status == 400 and "past" in err["error"]["message"], err
    out = ok(
        raftcron(
            cl, "jobs", "backfill", "yearly", "--from", "2010-01-01T00:00:00Z",
            "--to", "2020-01-01T00:00:00Z", "--rate", "0.01", "--id", "t2", node=f2,
        )
    )  # fmt: skip
    assert "backfill t2: 11 fire(s)" in out, out
    show = ok(raftcron(cl, "jobs", "show", "yearly", node=f1))
    assert "backfill" in show and "t2:" in show
    out = ok(raftcron(cl, "jobs", "backfill", "yearly", "--cancel", node=f1))
    assert "backfill t2 cancelled after" in out, out
    assert cl.get(f1, "/v1/jobs/yearly")["backfill"] is None


def _ms(year: str) -> int:
    return int(datetime.fromisoformat(f"{year}-01-01T00:00:00+00:00").timestamp() * 1000)


def _t(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_buffer_one_runs_the_buffered_fire_right_after_the_run(cl: Cluster) -> None:
    """Every second, each run 2.5 s: the fire due during a run waits and runs as soon as the
    run ends (keeping its own scheduled_at); the fires after it are skipped, and so is a
    manual trigger while one waits. Runs of the job never overlap."""
    _, (f1, f2) = roles(cl)
    put(cl, f1, "buf", schedule="* * * * * *", command=["sleep", "2.5"], overlap="buffer_one")

    def two_done() -> list[dict[str, Any]] | None:
        runs = [r for r in cl.runs(f2, "buf") if r["status"] == "succeeded"]
        buffered = [r for r in runs if r["trigger"] == "buffered"]
        return runs if buffered and len(runs) >= 2 else None

    try:
        wait_for("a run of buf", lambda: cl.get(f1, "/v1/jobs/buf")["running"], 15)
        status, _, manual = call(cl, f1, "POST", "/v1/jobs/buf/trigger")
        assert status == 202 and manual["status"] in ("buffered", "skipped"), manual
        done = wait_for("a buffered run of buf to succeed", two_done, 30)
    finally:
        call(cl, f1, "POST", "/v1/jobs/buf/pause", {"note": "test over"})
    ledger = {r["id"]: r for r in cl.runs(f2, "buf")}
    if manual["status"] == "skipped":
        assert "already buffered" in manual["reason"], manual
    assert ledger[manual["run"]]["status"] in ("skipped", "succeeded", "running", "paused")
    skips = [r for r in ledger.values() if r["status"] == "skipped"]
    assert any("overlap=buffer_one" in r["reason"] and "already buffered" in r["reason"]
               for r in skips), skips  # fmt: skip
    done.sort(key=lambda r: _t(r["started_at"]))
    for before, after in itertools.pairwise(done):
        assert _t(after["started_at"]) >= _t(before["finished_at"]), (before, after)
        if after["trigger"] == "buffered":
            # it fell due during the run before it, and was claimed right after it ended
            assert (
                _t(before["started_at"]) < _t(after["scheduled_at"]) < _t(before["finished_at"])
            ), (before, after)
            assert _t(after["claimed_at"]) - _t(before["finished_at"]) < 1.5, (before, after)
            assert "buffered: due while" in after["reason"] and before["id"] in after["reason"]


def test_next_fires_across_berlin_dst(cl: Cluster) -> None:
    _, (f1, _) = roles(cl)
    put(cl, f1, "berlin", schedule="30 2 * * *", command=["true"], timezone="Europe/Berlin")

    def fires(start: str, count: int = 3) -> list[tuple[str, str]]:
        status, _, body = call(cl, f1, "GET", f"/v1/jobs/berlin/next?from={start}&count={count}")
        assert status == 200 and body["timezone"] == "Europe/Berlin", body
        return [(f["utc"], f["local"]) for f in body["fires"]]

    # Spring forward: 02:30 does not exist on 2026-03-29; the fire runs at 03:00 CEST.
    assert fires("2026-03-28T00:00:00Z") == [
        ("2026-03-28T01:30:00Z", "2026-03-28T02:30:00+01:00"),
        ("2026-03-29T01:00:00Z", "2026-03-29T03:00:00+02:00"),
        ("2026-03-30T00:30:00Z", "2026-03-30T02:30:00+02:00"),
    ]
    # Fall back: 02:30 happens twice on 2026-10-25; it fires once, at the first one.
    assert fires("2026-10-24T02:00:00%2B02:00") == [
        ("2026-10-24T00:30:00Z", "2026-10-24T02:30:00+02:00"),
        ("2026-10-25T00:30:00Z", "2026-10-25T02:30:00+02:00"),
        ("2026-10-26T01:30:00Z", "2026-10-26T02:30:00+01:00"),
    ]
    assert len(fires("2026-01-01T00:00:00Z", 1000)) == 1000
    status, _, body = call(cl, f1, "GET", "/v1/jobs/berlin/next")
    assert status == 200 and len(body["fires"]) == 5


def test_runs_filters_and_pagination(cl: Cluster) -> None:
    leader, (f1, _) = roles(cl)
    put(cl, f1, "burst", schedule="0 0 1 1 *", command=["sh", "-c", "echo out-$RAFTCRON_RUN_ID"])
    put(cl, f1, "sad", schedule="0 0 1 1 *", command=["sh", "-c", "echo oops >&2; exit 3"])
    ids = [call(cl, f1, "POST", "/v1/jobs/burst/trigger")[2]["run"] for _ in range(7)]
    bad = call(cl, leader, "POST", "/v1/jobs/sad/trigger")[2]["run"]
    wait_for(
        "every triggered run to finish",
        lambda: (
            {r["status"] for r in cl.runs(f1, "burst")} == {"succeeded"}
            and len(cl.runs(f1, "burst")) == 7
            and cl.runs(f1, "sad")[0]["status"] == "failed"
        ),
        30,
    )
    seen: list[dict[str, Any]] = []
    cursor = ""
    pages = 0
    while True:
        status, _, page = call(cl, f1, "GET", f"/v1/runs?job=burst&limit=3{cursor}")
        assert status == 200 and page["total"] == 7 and len(page["runs"]) <= 3
        seen.extend(page["runs"])
        pages += 1
        if page["next"] is None:
            break
        assert page["next"] == page["runs"][-1]["id"]
        cursor = f"&before={page['next']}"
    assert pages == 3 and [r["id"] for r in seen] == ids[::-1], "newest first, no gaps"
    keys = [(r["scheduled_at_ms"], r["id"]) for r in seen]
    assert keys == sorted(keys, reverse=True)

    by_ms = cl.get(f1, f"/v1/runs?job=burst&before={seen[2]['scheduled_at_ms']}")["runs"]
    assert [r["id"] for r in by_ms] == [r["id"] for r in seen[3:]]
    for node in cl.members:
        mine = cl.get(f1, f"/v1/runs?job=burst&node={node}")["runs"]
        assert all(r["node"] == node for r in mine)
    assert sum(len(cl.get(f1, f"/v1/runs?job=burst&node={n}")["runs"]) for n in cl.members) == 7
    failed = cl.get(f1, "/v1/runs?status=failed")["runs"]
    assert [r["id"] for r in failed] == [bad] and failed[0]["exit_code"] == 3
    both = cl.get(f1, "/v1/runs?status=failed,succeeded&job=sad")["runs"]
    assert [r["id"] for r in both] == [bad]

    one = cl.get(f1, f"/v1/runs/{ids[-1]}")
    assert one["output"].strip() == f"out-{ids[-1]}" and one["status"] == "succeeded"
    # Output tails are kept on the newest 5 final runs of a job only (docs/jobs.md).
    # (newest in the order they finished, which is not the order they were triggered)
    with_output = [i for i in ids if cl.get(f1, f"/v1/runs/{i}")["output"] != ""]
    assert len(with_output) == 5, with_output
    assert "oops" in cl.get(leader, f"/v1/runs/{bad}")["output"]
    assert "output" not in seen[0]
    assert "output" in cl.get(f1, "/v1/runs?job=burst&limit=1&output=1")["runs"][0]


# --------------------------------------------------------------------------- errors

BAD_JOB = {"schedule": "61 * * * *", "command": ["true"]}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "needle"),
    [
        ("PUT", "/v1/jobs/x", b"{not json", 400, "invalid", "not JSON"),
        ("PUT", "/v1/jobs/x", b"[1, 2]", 400, "invalid", "JSON object"),
        ("PUT", "/v1/jobs/x", b"", 400, "invalid", "[[jobs]]"),
        ("PUT", "/v1/jobs/x", BAD_JOB, 400, "invalid", "request body: schedule: \"61 * * * *\""),
        ("PUT", "/v1/jobs/x", {**YEARLY, "colour": 1}, 400, "invalid", "colour"),
        ("PUT", "/v1/jobs/x", {**YEARLY, "name": "y"}, 400, "invalid", "does not match"),
        ("PUT", "/v1/jobs/x", {"command": "true"}, 400, "invalid", "schedule: missing"),
        ("PUT", "/v1/jobs/bad%20name", YEARLY, 400, "invalid", "not a valid job name"),
        ("PUT", "/v1/jobs/cfg", YEARLY, 409, "config_job", "cluster config file"),
        ("DELETE", "/v1/jobs/cfg", None, 409, "config_job", "cluster config file"),
        ("DELETE", "/v1/jobs/nope", None, 404, "unknown_job", "no job named 'nope'"),
        ("GET", "/v1/jobs/nope", None, 404, "unknown_job", "nope"),
        ("GET", "/v1/jobs/nope/next", None, 404, "unknown_job", "nope"),
        ("POST", "/v1/jobs/nope/trigger", None, 404, "unknown_job", "nope"),
        ("POST", "/v1/jobs/nope/pause", None, 404, "unknown_job", "nope"),
        ("POST", "/v1/jobs/nope/resume", None, 404, "unknown_job", "nope"),
        ("POST", "/v1/jobs/cfg/pause", {"why": 1}, 400, "invalid", "unknown key(s) why"),
        ("POST", "/v1/jobs/cfg/pause", {"note": 5}, 400, "invalid", "note must be a string"),
        ("POST", "/v1/jobs/cfg/trigger", b"{", 400, "invalid", "not JSON"),
        ("POST", "/v1/jobs/cfg/trigger", {"scheduled_at": "2001-01-01T00:00:00Z"}, 400,
         "invalid", "within a day"),
        ("POST", "/v1/jobs/cfg/trigger", {"scheduled_at": "soon"}, 400, "invalid", "RFC 3339"),
        ("GET", "/v1/jobs/cfg/next?from=tomorrow", None, 400, "invalid", "RFC 3339"),
        ("GET", "/v1/jobs/cfg/next?from=2026-01-01T00:00:00", None, 400, "invalid", "offset"),
        ("GET", "/v1/jobs/cfg/next?count=0", None, 400, "invalid", "count must be 1..1000"),
        ("GET", "/v1/jobs/cfg/next?count=1001", None, 400, "invalid", "1..1000"),
        ("GET", "/v1/jobs/cfg/next?count=x", None, 400, "invalid", "integer"),
        ("GET", "/v1/runs?limit=0", None, 400, "invalid", "limit"),
        ("GET", "/v1/runs?limit=lots", None, 400, "invalid", "limit"),
        ("GET", "/v1/runs?status=done", None, 400, "invalid", "unknown done"),
        ("GET", "/v1/runs?before=xyz", None, 400, "invalid", "neither a run id"),
        ("GET", "/v1/runs/cfg@1", None, 404, "unknown_run", "cfg@1"),
        ("GET", "/v1/nothing", None, 404, "not_found", "GET /v1/nothing"),
        ("GET", "/v2/status", None, 404, "not_found", "/v2/status"),
        ("PATCH", "/v1/jobs/cfg", YEARLY, 405, "method_not_allowed", "allowed: DELETE, GET"),
        ("POST", "/v1/status", None, 405, "method_not_allowed", "POST"),
        ("DELETE", "/v1/runs", None, 405, "method_not_allowed", "DELETE"),
    ],
)  # fmt: skip
def test_errors_are_json_with_the_right_status(
    cl: Cluster,
    method: str,
    path: str,
    body: Any,
    status: int,
    code: str,
    needle: str,
) -> None:
    node = "abc"[hash(path) % 3]  # spread over leader and followers
    raw = body if isinstance(body, bytes) else None
    got, headers, err = call(cl, node, method, path, None if raw is not None else body, raw)
    assert (got, err["error"]["code"]) == (status, code), err
    assert needle in err["error"]["message"], err
    assert set(err) == {"error"} and set(err["error"]) == {"code", "message"}
    if status == 405:
        assert "GET" in headers.get("Allow", "") or method == "POST", headers


@pytest.mark.parametrize(
    "path",
    [
        "/v1/runs?limit=99999999999999999999999",
        "/v1/runs?before=x@99999999999999999",
        "/v1/runs?before=99999999999999999999999999",
        "/v1/runs/%00",
        "/v1/jobs/cfg/next?from=99999999999999999",
        "/v1/jobs/cfg/next?from=-99999999999999999",
        "/v1/jobs/cfg/next?from=9999-12-31T23:59:59Z",
        "/v1/jobs/%ff%fe",
        "/v1/runs?job=%ff&node=%00&status=,,",
    ],
)
def test_odd_input_is_never_a_500(cl: Cluster, path: str) -> None:
    status, _, body = call(cl, "a", "GET", path)
    assert status < 500, body


def test_no_quorum_is_503(tmp_path: Path) -> None:
    """Two of three nodes stopped: the survivor still answers reads, refuses writes with 503."""
    small = Cluster(tmp_path, [CONFIG_JOB])
    small.start()
    try:
        small.wait_leader(60)
        survivor = "a"
        # the config's job must have reached the survivor before its peers go
        wait_for("cfg on a", lambda: call(small, survivor, "GET", "/v1/jobs/cfg")[0] == 200, 15)
        for name in ("b", "c"):
            small.kill(name)
        wait_for(
            "the survivor to lose its leader",
            lambda: call(small, survivor, "GET", "/health")[0] == 503,
            15,
        )
        status, headers, body = call(small, survivor, "PUT", "/v1/jobs/late", YEARLY)
        assert status == 503 and body["error"]["code"] in ("no_leader", "timeout"), body
        assert headers.get("Retry-After") == "1"
        assert call(small, survivor, "POST", "/v1/jobs/cfg/trigger")[0] == 503
        assert call(small, survivor, "GET", "/v1/jobs/cfg")[0] == 200  # reads still work
        assert call(small, survivor, "GET", "/v1/status")[0] == 200
    finally:
        small.stop()


# --------------------------------------------------------------------------- openapi


def test_openapi_matches_what_every_node_serves(cl: Cluster) -> None:
    doc = cl.get("b", "/v1/openapi.json")
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    assert doc == cl.get("a", "/v1/openapi.json")
    ops = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert ("GET", "/v1/jobs/{name}/next") in ops and ("POST", "/v1/jobs/{name}/trigger") in ops
    # Every documented operation is routed: a request reaches a handler (no route-level
    # 404/405), and every error it answers has the documented shape.
    for method, path in sorted(ops):
        concrete = path.replace("{name}", "no-such-thing").replace("{run_id}", "no@1")
        body = {} if method in ("PUT", "POST") else None
        status, _, resp = call(cl, "b", method, concrete, raw=b"{}" if body is not None else None)
        if status >= 400:
            code = resp["error"]["code"] if "error" in resp else resp["status"]  # /health*
            assert code not in ("not_found", "method_not_allowed"), (method, path)
            assert str(status) in doc["paths"][path][method.lower()]["responses"], (
                method,
                path,
                status,
            )
        if method == "GET" and path == "/v1/openapi.json":
            assert resp == doc


# --------------------------------------------------------------------------- CLI


def raftcron(
    cl: Cluster, *args: str, node: str = "b", env_api: bool = False
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    api = cl.members[node].api
    argv = [sys.executable, "-m", "raftcron", *args]
    if env_api:
        env["RAFTCRON_API"] = api
    else:
        argv += ["--api", api]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)


def ok(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 0 and out.stderr == "", out
    return out.stdout


def fails(out: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert out.returncode == code, out
    assert "Traceback" not in out.stderr
    if code == 1:
        assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out.stderr
    return out.stderr


def test_cli_status(cl: Cluster) -> None:
    leader, (f1, _) = roles(cl)
    text = ok(raftcron(cl, "status", node=f1))
    lines = text.splitlines()
    assert f"leader {leader}" in lines[0] and "term" in lines[0] and "commit" in lines[0]
    header = lines[1].split()
    assert header == ["member", "role", "health", "raft", "api", "lag", "drain", "version", "level"]
    rows = {ln.split()[0]: ln.split() for ln in lines[2:5]}  # (then notes: mixed versions...)
    assert set(rows) == {"a", "b", "c"}, text
    assert all(r[-3] == "-" for r in rows.values()), "nobody is drained"
    assert rows[f1][1] == "*", "this node is marked"
    assert "leader" in rows[leader] and "up" in rows[leader]
    st = json.loads(ok(raftcron(cl, "status", "--json", node=f1, env_api=True)))
    assert st["leader"] == leader and len(st["members"]) == 3
    assert all(m["lag"] is not None for m in st["members"]), "lag comes from the leader"


def test_cli_jobs_apply_list_show_delete(cl: Cluster, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(
        '[[jobs]]\nname = "cli-a"\nschedule = "*/5 * * * *"\ncommand = ["true"]\n'
        'timezone = "Europe/Berlin"\n\n'
        '[[jobs]]\nname = "cli-b"\nschedule = "0 4 * * *"\ncommand = ["sh", "-c", "echo hi"]\n'
        'cwd = "."\n'
    )
    # each job's result, then its next 3 fires (indented: in its zone and UTC)
    applied = ok(raftcron(cl, "jobs", "apply", str(jobs))).splitlines()
    assert [ln for ln in applied if not ln.startswith("  ")] == [
        "cli-a: created; Europe/Berlin; next 3 fires:",
        "cli-b: created; UTC; next 3 fires:",
    ]
    assert len([ln for ln in applied if ln.startswith("  20") and ln.endswith(" UTC")]) == 6
    again = ok(raftcron(cl, "jobs", "apply", str(jobs), node="a")).splitlines()
    assert [ln for ln in again if not ln.startswith("  ")] == [
        "cli-a: unchanged; Europe/Berlin; next 3 fires:",
        "cli-b: unchanged; UTC; next 3 fires:",
    ]
    single = tmp_path / "one.toml"
    single.write_text(
        'name = "cli-a"\nschedule = "*/10 * * * *"\ncommand = ["true"]\n'
        'timezone = "Europe/Berlin"\n'
    )
    updated = ok(raftcron(cl, "jobs", "apply", str(single)))
    assert updated.startswith("cli-a: updated; Europe/Berlin; next 3 fires:\n")
    b = Client(cl.members["c"].api).job("cli-b")
    assert b.spec["cwd"] == str(tmp_path.resolve()), "relative cwd is relative to the file"

    listing = ok(raftcron(cl, "jobs", "list"))
    header, *rows = listing.splitlines()
    assert header.split()[:4] == ["job", "schedule", "timezone", "state"]
    names = [r.split()[0] for r in rows]
    assert "cli-a" in names and "cli-b" in names and "cfg" in names
    parsed = json.loads(ok(raftcron(cl, "jobs", "list", "--json")))
    assert {j["name"] for j in parsed} >= {"cli-a", "cli-b", "cfg"}

    shown = ok(raftcron(cl, "jobs", "show", "cli-a"))
    assert "*/10 * * * *  (Europe/Berlin)" in shown and "next fires (Europe/Berlin, UTC):" in shown
    assert len([ln for ln in shown.splitlines() if ln.startswith("  20")]) == 5
    assert json.loads(ok(raftcron(cl, "jobs", "show", "cli-a", "--json")))["name"] == "cli-a"

    nxt = ok(
        raftcron(cl, "jobs", "next", "cli-a", "--from", "2026-03-29T00:55:00Z", "--count", "2")
    )
    assert nxt.splitlines()[1:] == [
        "2026-03-29T01:00:00Z  2026-03-29T03:00:00+02:00",
        "2026-03-29T01:10:00Z  2026-03-29T03:10:00+02:00",
    ]
    assert (
        ok(raftcron(cl, "jobs", "pause", "cli-a", "--note", "db move"))
        == "cli-a: paused (db move)\n"
    )
    assert "paused (db move)" in ok(raftcron(cl, "jobs", "show", "cli-a"))
    assert ok(raftcron(cl, "jobs", "resume", "cli-a")).startswith("cli-a: resumed")

    trig = ok(raftcron(cl, "trigger", "cli-b"))
    assert trig.startswith("cli-b: cli-b@") and "claimed on node" in trig
    rid = trig.split()[1]
    wait_for(
        "the triggered run", lambda: Client(cl.members["a"].api).run(rid).status == "succeeded", 20
    )
    runs = ok(raftcron(cl, "runs", "--job", "cli-b", "--status", "succeeded"))
    assert rid in runs and runs.splitlines()[0].split()[:3] == ["run", "status", "node"]
    page = json.loads(ok(raftcron(cl, "runs", "--job", "cli-b", "--json", "--limit", "1")))
    assert page["runs"][0]["id"] == rid and page["total"] == 1 and page["next"] is None

    assert ok(raftcron(cl, "jobs", "delete", "cli-a")) == "cli-a: deleted\n"
    ok(raftcron(cl, "jobs", "delete", "cli-b", "--json"))
    with pytest.raises(ApiError):
        Client(cl.members["b"].api).job("cli-a")


def test_cli_errors_are_one_line(cl: Cluster, tmp_path: Path) -> None:
    assert "no job named 'nope' (HTTP 404 unknown_job)" in fails(
        raftcron(cl, "jobs", "show", "nope")
    )
    fails(raftcron(cl, "jobs", "delete", "cfg"))
    fails(raftcron(cl, "trigger", "nope"))
    fails(raftcron(cl, "jobs", "next", "cfg", "--from", "later"))
    fails(raftcron(cl, "runs", "--status", "weird"))
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[jobs]]\nname = "ok-one"\nschedule = "0 0 1 1 *"\ncommand = ["true"]\n'
        '[[jobs]]\nname = "bad-one"\nschedule = "61 * * * *"\ncommand = "true"\n'
    )
    out = raftcron(cl, "jobs", "apply", str(bad))
    assert out.returncode == 1 and out.stdout.startswith("ok-one: created; UTC; next 3 fires:\n")
    (line,) = out.stderr.splitlines()
    assert line.startswith(f"error: {bad}: bad-one: request body: schedule:") and "command" in line
    ok(raftcron(cl, "jobs", "delete", "ok-one"))
    garbage = tmp_path / "garbage.toml"
    garbage.write_text("[[jobs]\n")
    assert "not valid TOML" in fails(raftcron(cl, "jobs", "apply", str(garbage)), 2)
    dead = subprocess.run(
        [sys.executable, "-m", "raftcron", "status", "--api", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "cannot reach the raftcron API at http://127.0.0.1:9" in fails(dead)
    usage = subprocess.run(
        [sys.executable, "-m", "raftcron", "jobs", "frobnicate"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    fails(usage, 2)
