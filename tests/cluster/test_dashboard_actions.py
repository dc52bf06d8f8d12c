"""The dashboard's actions and the agents' logs against three real agents (issue 16 items
5 and 7), in headless Chromium driven over the DevTools protocol (``browser.py``).

* With an admin token the page pauses (with a note), resumes, triggers, kills and
  back-fills, each checked through the API; it shows a run's output; times are shown in
  UTC and in the job's zone. With a read token it shows no actions, the output still.
* ``--log-json``: every line is JSON with a UTC millisecond ``ts``; run lines carry job,
  run id, fence and node; the leader's carry its term; every write is audited once with
  the token's name; no secret or token value appears in any log.

Screenshots go to the test's tmp dir; their paths are printed when a test fails.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.cluster.browser import CHROMIUM, Browser
from tests.cluster.harness import Cluster, wait_for

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        not os.access(CHROMIUM, os.X_OK),
        reason=f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)",
    ),
]

ADMIN = "admin-token-for-dashboard-0123456789"
READ = "read-token-for-dashboard-0123456789"
SECRET = "test-secret-0123456789abcdef"  # the harness's cluster secret
ENV_SECRET = "job-env-password-0123456789"
TOKENS = (
    f'[[api.tokens]]\nname = "ops"\nrole = "admin"\ntoken = "{ADMIN}"\n'
    f'[[api.tokens]]\nname = "wallboard"\nrole = "read"\ntoken = "{READ}"\n'
)
YEARLY = "0 0 1 1 *"
JOBS = [
    {
        "name": "slow",
        "schedule": YEARLY,
        "timezone": "Europe/Berlin",
        "command": ["sh", "-c", "echo started; sleep 120"],
        "lease": "5s",
    },
    {
        "name": "tick",
        "schedule": "* * * * *",
        "command": ["sh", "-c", "echo marker-$RAFTCRON_RUN_ID; echo second line"],
        "lease": "5s",
    },
]
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def new_cluster(root: Path) -> Cluster:
    cluster = Cluster(root, JOBS, extra_toml=TOKENS, token=ADMIN)
    cluster.agent_args = ["--log-json"]
    return cluster


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    """A browser whose screenshots are listed in the test's output (shown on failure)."""
    with Browser(tmp_path) as b:
        try:
            yield b
        finally:
            b.screenshot("at-the-end")
            print("screenshots:", *(str(p) for p in b.shots), sep="\n  ")


def job(cl: Cluster, name: str) -> dict[str, Any]:
    body: dict[str, Any] = cl.get("a", f"/v1/jobs/{name}")
    return body


def runs_of(cl: Cluster, name: str) -> list[dict[str, Any]]:
    return cl.runs("a", name, 100)


def zone_text(iso: str, zone: str) -> str:
    """How the page writes a time in ``zone`` (Intl en-GB: 05:01:02 CET)."""
    t = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(ZoneInfo(zone))
    return t.strftime("%H:%M:%S %Z")


def open_page(b: Browser, cl: Cluster, token: str) -> None:
    b.goto(cl.members["a"].api + "/#token=" + token)
    b.wait("the page to show the cluster", "document.body.dataset.state === 'ok'", 60)
    b.wait("the jobs", "document.querySelectorAll('tr.job').length === 2")


def test_admin_actions_change_the_cluster_and_output_and_zones_show(
    cl: Cluster, browser: Browser
) -> None:
    b = browser
    open_page(b, cl, ADMIN)
    assert b.js("document.getElementById('access').textContent") == "admin"
    b.screenshot("admin-loaded")

    # times: the next fire in UTC and in the job's zone
    nxt = job(cl, "slow")["next_fire"]
    cell = b.js("document.querySelector('tr.job[data-job=slow] td.next').textContent")
    assert b.js("document.querySelector('tr.job[data-job=slow]').dataset.nextFire") == nxt
    assert "UTC" in cell and zone_text(nxt, "Europe/Berlin") in cell, cell
    assert zone_text(nxt, "UTC") in cell, cell

    # pause with a note, then resume
    b.click("tr.job[data-job=slow] button[data-action=pause]")
    b.wait("the pause panel", "!document.getElementById('action-panel').hidden")
    b.type("#field-note", "disk swap, back at 14:00")
    b.click("#action-submit")
    b.wait_for("the job paused in the API", lambda: job(cl, "slow")["paused"])
    assert job(cl, "slow")["pause_note"] == "disk swap, back at 14:00"
    b.wait("the row to say paused", "document.querySelector('tr.job[data-job=slow]')"
           ".dataset.paused === 'true'")  # fmt: skip
    b.screenshot("paused")
    b.click("tr.job[data-job=slow] button[data-action=resume]")
    b.wait_for("the job resumed in the API", lambda: not job(cl, "slow")["paused"])

    # trigger, then kill the run from its row
    b.wait("the pause button back", "!!document.querySelector("
           "'tr.job[data-job=slow] button[data-action=pause]')")  # fmt: skip
    b.click("tr.job[data-job=slow] button[data-action=trigger]")
    b.wait("the trigger panel", "document.getElementById('action-panel').dataset.action"
           " === 'trigger' && !document.getElementById('action-panel').hidden")  # fmt: skip
    b.click("#action-submit")
    run = b.wait_for(
        "a manual run of slow running",
        lambda: next(
            (
                r
                for r in runs_of(cl, "slow")
                if r["trigger"] == "manual" and r["status"] == "running"
            ),
            None,
        ),
        60,
    )
    rid = run["id"]
    kill = f'tr.run[data-run-id="{rid}"] button[data-action=kill]'
    b.wait("the kill button of the run", f"!!document.querySelector({json.dumps(kill)})")
    b.screenshot("running")
    b.click(kill)
    b.wait("the kill panel", "document.getElementById('action-panel').dataset.action === 'kill'")
    b.type("#field-reason", "stuck")
    b.click("#action-submit")
    b.wait_for(
        "the run killed in the API",
        lambda: cl.get("a", f"/v1/runs/{rid}")["status"] == "killed",
        60,
    )
    assert "stuck" in cl.get("a", f"/v1/runs/{rid}")["reason"]

    # backfill tick over the last three minutes
    b.click("tr.job[data-job=tick] button[data-action=backfill]")
    b.wait("the backfill panel", "!!document.getElementById('field-from')")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    frm = (now - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    to = (now - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    b.type("#field-from", frm)
    b.type("#field-to", to)
    b.type("#field-rate", "2")
    b.click("#action-submit")
    b.wait_for(
        "backfill runs of tick in the ledger",
        lambda: sum(r["trigger"] == "backfill" for r in runs_of(cl, "tick")) >= 3,
        90,
    )
    assert "Backfill" in b.js("document.getElementById('notice').textContent")

    # trigger tick and open its output
    b.click("tr.job[data-job=tick] button[data-action=trigger]")
    b.wait("the trigger panel", "document.getElementById('action-panel').dataset.action"
           " === 'trigger' && !document.getElementById('action-panel').hidden")  # fmt: skip
    b.click("#action-submit")
    done = b.wait_for(
        "a manual run of tick succeeded",
        lambda: next(
            (
                r
                for r in runs_of(cl, "tick")
                if r["trigger"] == "manual" and r["status"] == "succeeded"
            ),
            None,
        ),
        60,
    )
    out = f'tr.run[data-run-id="{done["id"]}"] button[data-action=output]'
    b.wait("the run's row", f"!!document.querySelector({json.dumps(out)})")
    b.click(out)
    text = b.wait(
        "the output shown",
        "document.getElementById('output-card').dataset.loaded === 'true' && "
        "document.getElementById('output-text').textContent",
    )
    api_output = cl.get("a", f"/v1/runs/{done['id']}")["output"]
    assert f"marker-{done['id']}" in text and text == api_output
    meta = b.js("document.getElementById('output-meta').textContent")
    assert f"fence {done['fence']}" in meta and "exit 0" in meta, meta
    assert "[object" not in meta and "null" not in meta, meta
    b.screenshot("output")

    # each action was one API write, audited with the admin token's name
    def audits() -> set[tuple[str, str]]:
        out = set()
        for m in cl.members.values():
            for line in m.log.read_text().splitlines():
                r = json.loads(line)
                if r.get("event") == "audit" and r["token"] == "ops" and r["role"] == "admin":
                    out.add((r["method"], r["path"]))
        return out

    assert {
        ("POST", "/v1/jobs/slow/pause"),
        ("POST", "/v1/jobs/slow/resume"),
        ("POST", "/v1/jobs/slow/trigger"),
        ("POST", f"/v1/runs/{rid}/kill"),
        ("POST", "/v1/jobs/tick/backfill"),
        ("POST", "/v1/jobs/tick/trigger"),
    } <= audits()


def test_a_read_token_sees_no_actions_and_can_read_output(cl: Cluster, browser: Browser) -> None:
    done = wait_for(
        "a finished run of tick",
        lambda: next((r for r in runs_of(cl, "tick") if r["status"] == "succeeded"), None),
        90,
    )
    b = browser
    open_page(b, cl, READ)
    b.wait("a run row", "document.querySelectorAll('tr.run').length > 0")
    assert b.js("document.getElementById('access').textContent") == "read-only"
    assert b.js("document.querySelectorAll('button[data-action]:not([data-action=output])')"
                ".length") == 0  # fmt: skip
    assert "Read-only token wallboard" in b.js("document.getElementById('role-note').textContent")
    out = f'tr.run[data-run-id="{done["id"]}"] button[data-action=output]'
    b.wait("the run's row", f"!!document.querySelector({json.dumps(out)})")
    b.click(out)
    text = b.wait(
        "the output shown",
        "document.getElementById('output-card').dataset.loaded === 'true' && "
        "document.getElementById('output-text').textContent",
    )
    assert f"marker-{done['id']}" in text
    b.screenshot("read-only")


def test_json_logs_carry_fields_audit_writes_and_never_a_secret(cl: Cluster) -> None:
    spec = {"schedule": YEARLY, "command": ["true"], "env": {"PASSWORD": ENV_SECRET}}
    assert cl.request("a", "PUT", "/v1/jobs/audited", spec)[0] == 201
    assert cl.request("b", "POST", "/v1/jobs/audited/pause", {"note": "a\nb"})[0] == 200
    assert cl.request("b", "POST", "/v1/jobs/audited/resume")[0] == 200
    cl.token = READ
    try:
        assert cl.request("c", "DELETE", "/v1/jobs/audited")[0] == 403
    finally:
        cl.token = ADMIN
    assert cl.request("c", "DELETE", "/v1/jobs/audited")[0] == 200

    def records() -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for name, m in cl.members.items():
            lines = [ln for ln in m.log.read_text().splitlines() if ln.strip()]
            out[name] = [json.loads(ln) for ln in lines]  # every line is JSON
        return out

    def audited() -> list[tuple[str, str, str, str, int]] | None:
        got = [
            (n, r["method"], r["path"], r["token"], r["status"])
            for n, rs in records().items()
            for r in rs
            if r.get("event") == "audit" and "/audited" in r["path"]
        ]
        return got if len(got) >= 5 else None

    assert sorted(wait_for("the audit lines", audited, 10)) == [
        ("a", "PUT", "/v1/jobs/audited", "ops", 201),
        ("b", "POST", "/v1/jobs/audited/pause", "ops", 200),
        ("b", "POST", "/v1/jobs/audited/resume", "ops", 200),
        ("c", "DELETE", "/v1/jobs/audited", "ops", 200),
        ("c", "DELETE", "/v1/jobs/audited", "wallboard", 403),
    ]
    logs = records()
    every = [r for rs in logs.values() for r in rs]
    assert all(STAMP.match(r["ts"]) for r in every), [r["ts"] for r in every[:5]]
    assert all({"ts", "level", "logger", "msg", "node"} <= set(r) for r in every)
    for name, rs in logs.items():
        assert {r["node"] for r in rs} == {name}
    finished = [r for r in every if r.get("event") == "run_finished"]
    assert finished, "no run_finished line"
    ledger = {r["id"]: r for r in cl.runs("a", limit=1000)}
    for r in finished:
        run = ledger.get(r["run_id"])
        if run is None:  # trimmed from the ledger since
            continue
        assert (r["job"], r["fence"], r["node"]) == (run["job"], run["fence"], run["node"])
        assert f"run={r['run_id']} fence={r['fence']}" in r["msg"]
    leader = cl.leader()
    assert any(
        r.get("event") == "leader_established" and isinstance(r.get("term"), int)
        for r in logs[str(leader)]
    )
    granted = [r for r in logs[str(leader)] if r.get("event") == "run_granted"]
    assert granted and all(isinstance(r["term"], int) and r["fence"] > 0 for r in granted)

    text = "\n".join(m.log.read_text() for m in cl.members.values())
    for secret in (SECRET, ADMIN, READ, ENV_SECRET):
        assert secret not in text, f"{secret[:8]}... is in a log"
