"""One configuration on three real agents (issue 15, item 2; raftcron/reload.py).

Each member reads its own copy of the cluster file (all in one directory), so one can
differ from the others:

* drift is named in ``/v1/status``, in ``raftcron_config_drift`` and in a WARNING;
* ``POST /v1/members/{name}/reload`` applies a valid file (on the leader a new job fires
  and a removed one is gone) and refuses an invalid one with file, key and fix while the
  old configuration keeps working; it never acts for another member;
* no election silently adds or drops a job that only one member's file has;
* SIGHUP does what the API's reload does.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.harness import SINK_CMD, Cluster, read_sink, toml_job, wait_for

pytestmark = pytest.mark.cluster


def every_second(name: str, sink: Path) -> str:
    return (
        "\n"
        + toml_job(
            {
                "name": name,
                "schedule": "* * * * * *",
                "command": ["sh", "-c", SINK_CMD.format(sink=sink)],
                "lease": "5s",
            }
        )
        + "\n"
    )


def own_files(cl: Cluster, text: str) -> None:
    """Every member reads its own copy of ``text`` (same directory: same data dirs)."""
    for name, m in cl.members.items():
        m.config = cl.root / f"cluster-{name}.toml"
        m.config.write_text(text)


def write(cl: Cluster, name: str, text: str) -> None:
    path = cl.members[name].config
    assert path is not None
    path.write_text(text)


def job_names(cl: Cluster, name: str) -> list[str]:
    return sorted(j["name"] for j in cl.get(name, "/v1/jobs", timeout=5.0)["jobs"])


def metrics(cl: Cluster, name: str) -> str:
    with cl.open(cl.members[name].api + "/metrics", timeout=5.0) as r:
        text: str = r.read().decode()
        return text


def status(cl: Cluster, name: str) -> dict[str, Any]:
    st: dict[str, Any] = cl.get(name, "/v1/status", timeout=5.0)
    return st


def hashes(cl: Cluster, name: str) -> dict[str, str | None]:
    return {m["name"]: m["config_hash"] for m in status(cl, name)["members"]}


def log(cl: Cluster, name: str) -> str:
    return cl.members[name].log.read_text(errors="replace")


def agreed(cl: Cluster, name: str) -> str | None:
    """The one hash every member reports and the leader reconciled, seen from ``name``."""
    st = status(cl, name)
    seen = {m["config_hash"] for m in st["members"]}
    if len(seen) == 1 and st["reconciled_config_hash"] in seen and not st["config_drift"]:
        return str(st["reconciled_config_hash"])
    return None


def fired_after(sink: Path, job: str, t: float) -> bool:
    """A run of ``job`` scheduled after ``t`` (epoch seconds) wrote to the sink."""
    return any(
        r["job"] == job and datetime.fromisoformat(r["at"]).timestamp() > t for r in read_sink(sink)
    )


def transfer(cl: Cluster, to: str) -> None:
    """Leadership moves to ``to``. A transfer the leader refuses for the moment (503: the
    target is catching up, or an election is under way on a loaded machine) is asked again
    until the deadline; any other refusal fails the test."""

    def moved() -> bool:
        leader = cl.wait_leader(30)
        if leader == to:
            return True
        code, body = cl.request(leader, "POST", "/v1/leader/transfer", {"to": to})
        if code not in (200, 409, 503):  # 409: leadership moved meanwhile
            pytest.fail(f"leader transfer to {to} refused: {code} {body}")  # not retried
        return wait_until(lambda: cl.leader() == to, 10)

    wait_for(f"{to} to lead", moved, 90, interval=1.0)


def wait_until(fn: Callable[[], bool], timeout: float) -> bool:
    """Whether ``fn`` became true within ``timeout`` (polling; no failure at the deadline)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return True
        time.sleep(0.1)
    return False


def test_drift_reload_and_elections(tmp_path: Path, make_cluster: list[Cluster]) -> None:
    sink = tmp_path / "sink.txt"
    cl = Cluster(tmp_path)
    make_cluster.append(cl)
    base = cl.config.read_text()
    tick = every_second("tick", sink)
    own_files(cl, base + tick)
    cl.start()
    leader = cl.wait_leader(60)
    first = wait_for("every member to report the same hash", lambda: agreed(cl, leader), 30)
    assert job_names(cl, leader) == ["tick"]
    follower, other = [n for n in cl.members if n != leader]

    # -- drift: a follower's file gets a job; its reload applies it locally only
    solo = every_second("solo", sink)
    write(cl, follower, base + tick + solo)
    code, body = cl.request(follower, "POST", f"/v1/members/{follower}/reload")
    assert code == 200, body
    assert body["reconciled"] is False and body["previous_config_hash"] == first
    drifted = body["config_hash"]
    assert drifted != first and body["leader"] == leader and "not the leader" in body["note"]
    wait_for(
        "the drift in the leader's status",
        lambda: status(cl, leader)["config_drift"] == [follower],
        20,
    )
    want = {leader: first, follower: drifted, other: first}
    wait_for("the hashes as the third member applied them", lambda: hashes(cl, other) == want, 20)
    assert status(cl, follower)["config_drift"] == [follower]
    assert f'raftcron_config_drift{{member="{follower}"}} 1.0' in metrics(cl, leader)
    assert f'raftcron_config_drift{{member="{other}"}} 0.0' in metrics(cl, leader)
    assert f'raftcron_config_hash_info{{hash="{drifted}"}} 1.0' in metrics(cl, follower)
    assert "raftcron_config_reconciled 0.0" in metrics(cl, follower)
    wait_for(
        "a WARNING naming the member",
        lambda: f"config drift: member(s) {follower} (config_hash {drifted})" in log(cl, leader),
        30,
    )
    assert "WARNING" in next(ln for ln in log(cl, leader).splitlines() if "config drift" in ln)
    assert job_names(cl, leader) == ["tick"]  # a follower's file changes no job

    # -- a reload acts only on the member it is sent to
    code, body = cl.request(leader, "POST", f"/v1/members/{follower}/reload")
    assert code == 409 and body["error"]["code"] == "wrong_member", body
    assert cl.members[follower].api in body["error"]["message"]

    # -- elections: the follower leads, then another; "solo" neither appears nor vanishes
    transfer(cl, follower)
    wait_for(
        "the new leader to say it leaves the jobs alone",
        lambda: (
            f"leader {follower}: its cluster file (config_hash {drifted}) is not the "
            f"configuration last reconciled (config_hash {first})" in log(cl, follower)
        ),
        20,
    )
    assert job_names(cl, follower) == ["tick"]
    assert status(cl, follower)["reconciled_config_hash"] == first
    transfer(cl, other)
    assert job_names(cl, other) == ["tick"]
    # the operator decides: the follower's file becomes the cluster's by a reload on it
    transfer(cl, follower)
    code, body = cl.request(follower, "POST", f"/v1/members/{follower}/reload")
    assert code == 200 and body["reconciled"] is True and body["jobs_changed"] == ["solo"], body
    t = time.time()
    wait_for("solo to fire", lambda: fired_after(sink, "solo", t), 30)
    assert status(cl, follower)["reconciled_config_hash"] == drifted
    # another leader with the old file does not drop it, and says why
    transfer(cl, other)
    wait_for(
        "the next leader to say it leaves the jobs alone",
        lambda: f"leader {other}: its cluster file (config_hash {first})" in log(cl, other),
        20,
    )
    assert job_names(cl, other) == ["solo", "tick"]
    t = time.time()
    wait_for("solo to fire under the next leader", lambda: fired_after(sink, "solo", t), 30)

    # -- an invalid file on the leader is refused, with file, key and fix; nothing changes
    bad = base + tick + solo.replace('"* * * * * *"', '"61 * * * *"')
    write(cl, other, bad)
    code, body = cl.request(other, "POST", f"/v1/members/{other}/reload")
    assert code == 400 and body["error"]["code"] == "invalid_config", body
    message = body["error"]["message"]
    path = cl.members[other].config
    assert f"{path}: jobs[1].schedule:" in message and "minute" in message, message
    assert "running configuration stays" in message
    assert status(cl, other)["config_hash"] == first
    t = time.time()
    wait_for("tick to keep firing", lambda: fired_after(sink, "tick", t), 30)

    # -- a valid file on the leader: the new job fires, the removed one is gone
    fresh = every_second("fresh", sink)
    write(cl, other, base + solo + fresh)
    code, body = cl.request(other, "POST", f"/v1/members/{other}/reload")
    assert code == 200 and body["reconciled"] is True, body
    assert body["jobs_changed"] == ["fresh", "tick"]
    assert job_names(cl, other) == ["fresh", "solo"]
    gone = time.time() + 1  # (a run of tick granted before the delete may still run)
    wait_for("fresh to fire later", lambda: fired_after(sink, "fresh", gone + 1), 30)
    assert not fired_after(sink, "tick", gone)
    # the others' files differ from the leader's: both named as drifting
    wait_for(
        "both other members named",
        lambda: status(cl, other)["config_drift"] == sorted([leader, follower]),
        20,
    )


def test_sighup_reloads_like_the_api(tmp_path: Path, make_cluster: list[Cluster]) -> None:
    sink = tmp_path / "sink.txt"
    cl = Cluster(tmp_path)
    make_cluster.append(cl)
    base = cl.config.read_text()
    tick = every_second("tick", sink)
    own_files(cl, base + tick)
    cl.start()
    leader = cl.wait_leader(60)
    first = wait_for("every member to report the same hash", lambda: agreed(cl, leader), 30)

    # an invalid file: the error is logged with file, key and fix; the agent keeps going
    write(cl, leader, base + tick + "[notify]\nretries = -1\n")
    cl.signal(leader, signal.SIGHUP)
    path = cl.members[leader].config
    wait_for(
        "the refusal in the log",
        lambda: (
            f"reload (SIGHUP) refused, the running configuration stays: {path}: "
            "notify.retries" in log(cl, leader)
        ),
        20,
    )
    assert cl.members[leader].proc is not None and cl.members[leader].proc.poll() is None
    assert status(cl, leader)["config_hash"] == first
    t = time.time()
    wait_for("tick to keep firing", lambda: fired_after(sink, "tick", t), 30)

    # a valid file on the leader: reconciled at once
    fresh = every_second("fresh", sink)
    for name in cl.members:
        write(cl, name, base + fresh)
    cl.signal(leader, signal.SIGHUP)
    wait_for("the new job", lambda: job_names(cl, leader) == ["fresh"], 20)
    t = time.time()
    wait_for("fresh to fire", lambda: fired_after(sink, "fresh", t), 30)
    new = status(cl, leader)["config_hash"]
    assert new != first and status(cl, leader)["reconciled_config_hash"] == new
    wait_for(
        "the followers named as drifting",
        lambda: len(status(cl, leader)["config_drift"]) == 2,
        20,
    )
    # the followers' SIGHUPs end the drift
    for name in cl.members:
        if name != leader:
            cl.signal(name, signal.SIGHUP)
    wait_for("no drift", lambda: agreed(cl, leader) == new, 30)
    assert "configuration reloaded (SIGHUP)" in log(cl, leader)
