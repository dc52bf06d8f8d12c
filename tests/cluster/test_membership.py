"""Run-time membership changes under load (issue 15 item 1), with real agents.

An every-second job records each execution in the chaos suite's sink (a process outside
the cluster); at the end the chaos checker (tests/chaos/checker.py) checks the record
against every member's ledger over one window spanning all the changes: no fire executed
twice, every execution granted, every scheduled fire executed or recorded.

* ``test_replace_grow_shrink``: a 3-member cluster (a, b, c). c's server dies; c is
  removed and d added with other addresses, d starts with an empty data dir and a file of
  its own, catches up and executes; c started again with its old data and its old file is
  refused by the others and never executes. Then grow to 5 (e, f) and shrink back to 3
  (remove a and b, the leader among them), with an established leader throughout.
* ``test_bad_input``: each a clear error naming the fix, and nothing changes.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.chaos import checker
from tests.cluster.harness import Cluster, Member, toml_job, wait_for
from tests.cluster.test_rolling_restart import JOB_PY, Sink

pytestmark = pytest.mark.cluster

CLUSTER = 'shutdown_drain = "2s"\nlease = "15s"\nhistory = 1000000'


def tick_job(sock: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-S", str(JOB_PY), str(sock), "0.2"]
    return {"name": "tick", "schedule": "* * * * * *", "command": cmd, "overlap": "allow"}


def write_file(cl: Cluster, names: list[str], path: Path, jobs: list[dict[str, Any]]) -> None:
    """A cluster file listing ``names`` (in the harness's format)."""
    parts = ["[cluster]", 'secret = "test-secret-0123456789abcdef"', CLUSTER]
    for n in names:
        m = cl.members[n]
        parts += [
            f"[cluster.nodes.{m.name}]",
            f'raft = "{m.raft}"',
            f'api = "{m.host}:{m.api_port}"',
            f'data_dir = "data/{m.name}"',
        ]
    parts.extend(toml_job(j) for j in jobs)
    path.write_text("\n".join(parts) + "\n")


def members(cl: Cluster, via: str) -> dict[str, Any]:
    return dict(cl.get(via, "/v1/members", timeout=5.0))


def change(cl: Cluster, method: str, path: str, body: Any = None) -> dict[str, Any]:
    """A membership change on the leader; waits until it is done."""
    leader = cl.wait_leader(60)
    status, res = cl.request(leader, method, path, body, timeout=30)
    assert status in (200, 201), (status, res)
    wait_for(
        f"{method} {path} done",
        lambda: (members(cl, cl.wait_leader(60))["change"] or {}).get("done"),
        60,
        interval=0.2,
    )
    return dict(res)


class LeaderWatch:
    """Samples which member is the established leader every 0.1 s; ``longest_gap`` is the
    longest stretch without one (a leader throughout: short, an election at most)."""

    def __init__(self, cl: Cluster) -> None:
        self.cl = cl
        self.stop = threading.Event()
        self.last_seen = time.monotonic()
        self.longest_gap = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            if self.cl.leader() is not None:
                now = time.monotonic()
                self.longest_gap = max(self.longest_gap, now - self.last_seen)
                self.last_seen = now
            time.sleep(0.1)

    def close(self) -> float:
        self.stop.set()
        self.thread.join(5)
        return max(self.longest_gap, time.monotonic() - self.last_seen)


def executes(sink: Sink, node: str, after: float) -> bool:
    return any(b["node"] == node and b["t"] > after for b in sink.begins())


def caught_up(cl: Cluster, node: str) -> bool:
    leader = cl.leader()
    if leader is None:
        return False
    try:
        commit = cl.get(leader, "/v1/status", 5.0)["commit_index"]
        if cl.request(node, "GET", "/health")[0] != 200:
            return False
        return bool(cl.get(node, "/v1/status", 5.0)["last_applied"] >= commit)
    except OSError:
        return False


def test_replace_grow_shrink(tmp_path: Path) -> None:
    sink = Sink(tmp_path)
    jobs = [tick_job(sink.sock)]
    cl = Cluster(tmp_path, size=6, extra_cluster=CLUSTER)
    write_file(cl, ["a", "b", "c"], cl.config, jobs)  # the seed: a, b, c
    for n in "abc":
        cl.start(n)
    watch: LeaderWatch | None = None
    try:
        leader = cl.wait_leader(60)
        wait_for("the membership seeded", lambda: members(cl, leader)["seeded"], 60)
        wait_for("the job to run", lambda: {b["job"] for b in sink.begins()} == {"tick"}, 60)
        start_t = time.monotonic()
        window = {"id": 1, "name": "membership", "kind": "kill"}
        sink.client.event(ev="nemesis", phase="start", nodes=list(cl.members), **window)
        watch = LeaderWatch(cl)

        # -- replace c (its server dies) by d, at other addresses
        victim = next(n for n in "abc" if n != cl.wait_leader(60))
        keep = [n for n in "abc" if n != victim]
        cl.kill(victim)
        change(cl, "DELETE", f"/v1/members/{victim}")
        d = cl.members["d"]
        res = change(cl, "POST", "/v1/members", {"name": "d", "raft": d.raft,
                                                 "api": f"127.0.0.1:{d.api_port}"})  # fmt: skip
        assert res["start"].startswith("raftcron agent --config FILE --node d")
        d_file = tmp_path / "d.toml"
        write_file(cl, [*keep, "d"], d_file, jobs)
        cl.members["d"].config = d_file
        t_d = time.monotonic()
        cl.start("d")
        wait_for("d to catch up", lambda: caught_up(cl, "d"), 90, interval=0.2)
        print(f"replace: d caught up {time.monotonic() - t_d:.1f}s after its agent started")
        view = members(cl, "d")
        assert [m["name"] for m in view["members"]] == sorted([*keep, "d"])
        assert [r["name"] for r in view["removed"]] == [victim]
        wait_for("d to execute", lambda: executes(sink, "d", t_d), 60)

        # the old server comes back with its old data and its old file: the others refuse
        # it, a peer tells it (sealed with the secret) and it stops with exit status 2
        t_back = time.monotonic()
        cl.start(victim)
        proc = cl.members[victim].proc
        assert proc is not None
        assert proc.wait(60) == 2
        assert "was removed from the cluster" in cl.members[victim].log.read_text()
        print(f"replace: the old {victim} stopped {time.monotonic() - t_back:.1f}s after start")

        # -- grow to 5: e and f
        for new in ("e", "f"):
            m: Member = cl.members[new]
            change(cl, "POST", "/v1/members", {"name": new, "raft": m.raft,
                                               "api": f"127.0.0.1:{m.api_port}"})  # fmt: skip
            m.config = tmp_path / f"{new}.toml"
            now = [n for n in cl.members if n != victim and n <= new]
            write_file(cl, now, m.config, jobs)
            cl.start(new)
            wait_for(f"{new} to catch up", lambda n=new: caught_up(cl, n), 90, interval=0.2)
        five = sorted([*keep, "d", "e", "f"])
        assert [m["name"] for m in members(cl, "d")["members"]] == five
        wait_for(
            "e and f to execute", lambda: executes(sink, "e", 0) and executes(sink, "f", 0), 60
        )

        # -- shrink to 3: remove both remaining original members (the leader among them
        # at some point: a removed leader hands off first)
        for gone in keep:

            def removed(gone: str = gone) -> bool:
                """The leader removes ``gone``; asked when leadership moved meanwhile
                (409 ``not_leader``), or when removing itself and the hand-off did not
                finish in time (503, nothing committed: the API says retry), ask again."""
                status, res = cl.request(
                    cl.wait_leader(60), "DELETE", f"/v1/members/{gone}", timeout=30
                )
                error = res.get("error") or {} if isinstance(res, dict) else {}
                if status == 409 and error.get("code") == "not_leader":
                    return False
                if status == 503 and "did not move off" in error.get("message", ""):
                    return False
                assert status == 200, (status, res)
                return True

            wait_for(f"{gone} removed", removed, 120, interval=1.0)
            proc = cl.members[gone].proc
            assert proc is not None
            assert proc.wait(60) == 2  # it applied its own removal: exit status 2
            wait_for(
                f"the removal of {gone} done",
                lambda: (members(cl, cl.wait_leader(60))["change"] or {}).get("done"),
                60,
            )
        three = ["d", "e", "f"]
        assert [m["name"] for m in members(cl, "d")["members"]] == three
        t_shrunk = time.monotonic()
        wait_for(
            "the job to run on the three",
            lambda: any(b["t"] > t_shrunk + 1 for b in sink.begins()),
            30,
        )
        assert not executes(sink, victim, t_back), f"{victim} executed after its removal"
        gap = watch.close()
        watch = None
        sink.client.event(ev="nemesis", phase="end", nodes=list(cl.members), **window)
        end_t = time.monotonic()
        ledgers = cl.quiesce(["tick"], among=three)
    finally:
        if watch is not None:
            watch.close()
        cl.stop()
        sink.close()
        (tmp_path / "logs.txt").write_text(cl.logs())
    report, _ = checker.check_record(
        tmp_path,
        name="membership",
        jobs={"tick": {"schedule": "* * * * * *", "overlap": "allow", "timezone": "UTC"}},
        start_t=start_t,
        end_t=end_t,
        ledgers=ledgers,
    )
    print(report.line())
    print(f"membership: longest stretch without an established leader {gap:.2f}s")
    assert report.violations == [], "\n".join(map(str, report.violations))
    assert report.expected_fires > 0
    assert gap < 10.0, f"no established leader for {gap:.1f}s"


def test_bad_input(tmp_path: Path) -> None:
    """Each refusal is a clear error naming the fix, and nothing changes; a member added
    but not started does not hold back level-2 writes (its own removal included)."""
    cl = Cluster(tmp_path, size=6, extra_cluster=CLUSTER)
    write_file(cl, ["a", "b", "c"], cl.config, [])
    for n in "abc":
        cl.start(n)
    try:
        leader = cl.wait_leader(60)
        wait_for("the membership seeded", lambda: members(cl, leader)["seeded"], 60)
        d, e, f = (cl.members[n] for n in "def")

        def post(name: str, raft: str, api: str) -> tuple[int, Any]:
            body = {"name": name, "raft": raft, "api": api}
            return cl.request(cl.wait_leader(60), "POST", "/v1/members", body, timeout=30)

        def refused(res: tuple[int, Any], status: int, code: str, *words: str) -> None:
            assert res[0] == status and res[1]["error"]["code"] == code, res
            for w in words:
                assert w in res[1]["error"]["message"], (w, res)

        b_raft, c_api = cl.members["b"].raft, f"127.0.0.1:{cl.members['c'].api_port}"
        refused(post("a", d.raft, f"127.0.0.1:{d.api_port}"), 409, "member_clash", "already")
        refused(post("x", b_raft, f"127.0.0.1:{d.api_port}"), 409, "member_clash", "member b")
        refused(post("x", d.raft, c_api), 409, "member_clash", "member c", "remove c first")
        refused(post("x", "no-port", c_api), 400, "invalid", "host:port")
        follower = next(n for n in "abc" if n != cl.wait_leader(60))
        res = cl.request(follower, "POST", "/v1/members", {"name": "x", "raft": d.raft,
                                                           "api": "127.0.0.1:1"})  # fmt: skip
        refused(res, 409, "not_leader", "ask the leader")
        assert [m["name"] for m in members(cl, "a")["members"]] == ["a", "b", "c"]

        # d added, never started: it has advertised no level, and the level-2 write that
        # removes it is not held back; its name is never given again
        status, res = post("d", d.raft, f"127.0.0.1:{d.api_port}")
        assert status == 201 and res["change"]["done"], res
        status, res = cl.request(cl.wait_leader(60), "DELETE", "/v1/members/d", timeout=30)
        assert status == 200, res
        refused(post("d", d.raft, f"127.0.0.1:{d.api_port}"), 409, "member_clash", "never used")
        refused(cl.request(cl.wait_leader(60), "DELETE", "/v1/members/zz"), 404, "unknown_member")

        # a follower dies: removing the other follower would leave two members of which
        # only the leader answers
        leader = cl.wait_leader(60)
        dead, other = (n for n in "abc" if n != leader)
        cl.kill(dead)

        def silent() -> bool:
            view = members(cl, leader)["members"]
            return not next(m for m in view if m["name"] == dead)["answering"]

        wait_for(f"the leader to see {dead} not answering", silent, 30)
        refused(cl.request(leader, "DELETE", f"/v1/members/{other}", timeout=30), 409,
                "no_majority", f"not answering: {dead}")  # fmt: skip

        # adding e now would make 4 members of which 3 must answer until e starts: only 2
        refused(post("e", e.raft, f"127.0.0.1:{e.api_port}"), 409, "no_majority",
                f"not answering: {dead}", "remove a member that is gone first")  # fmt: skip
        cl.start(dead)
        wait_for(f"{dead} back", lambda: caught_up(cl, dead), 60, interval=0.2)

        # two changes at once: the second is refused while the first is not done (sent
        # together; a pair that did not overlap is tried again with other names)
        overlapped = False
        for attempt in range(3):
            names = [f"e{attempt}", f"f{attempt}"]
            out: dict[str, tuple[int, Any]] = {}
            go = threading.Barrier(2)

            def send(
                n: str, m: Member, go: threading.Barrier = go, out: dict[str, Any] = out
            ) -> None:
                go.wait()
                out[n] = post(n, m.raft, f"127.0.0.1:{m.api_port}")

            pairs = zip(names, (e, f), strict=True)
            threads = [threading.Thread(target=send, args=(n, m)) for n, m in pairs]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            codes = sorted(st for st, _ in out.values())
            assert codes in ([201, 409], [201, 201]), out
            added = [n for n in names if out[n][0] == 201]
            for n in names:
                if out[n][0] == 409:
                    refused(out[n], 409, "change_in_progress", "one change at a time")
                    overlapped = True
            for n in added:  # (never started: removed again)
                wait_for(
                    f"the add of {n} done",
                    lambda: (members(cl, cl.wait_leader(60))["change"] or {}).get("done"),
                    60,
                )
                status, res = cl.request(
                    cl.wait_leader(60), "DELETE", f"/v1/members/{n}", timeout=30
                )
                assert status == 200, res
            if overlapped:
                break
        assert overlapped, "three pairs of simultaneous adds never overlapped"
        view = members(cl, "a")
        assert [m["name"] for m in view["members"]] == ["a", "b", "c"]
        assert "d" in [r["name"] for r in view["removed"]]
    finally:
        cl.stop()
        (tmp_path / "logs.txt").write_text(cl.logs())


def test_a_new_member_of_a_restored_cluster_joins_with_its_cluster_id(tmp_path: Path) -> None:
    """A cluster restored from a backup has a cluster id; a new member started empty with
    the ``--cluster-id`` that ``members add`` printed joins it and gets its state."""
    from raftcron.core import commands as c
    from raftcron.core.model import JobSpec
    from raftcron.core.restore import seal
    from raftcron.core.state import State
    from raftcron.raft.seed import seed_raft_dir

    cluster_id = "rc-0123456789abcdef01234567"
    st = State()
    for j in range(20):
        spec = JobSpec(name=f"restored-{j}", schedule="0 0 1 1 *", command=("true",))
        st.apply(c.PutJob(at_ms=1_700_000_000_000, spec=spec))
    seal(st, cluster_id=cluster_id)
    cl = Cluster(tmp_path, size=4, extra_cluster=CLUSTER)
    write_file(cl, ["a", "b", "c"], cl.config, [])
    blob = st.snapshot()
    for n in "abc":
        seed_raft_dir(tmp_path / "data" / n, blob, [cl.members[x].raft for x in "abc"])
        cl.start(n)
    try:
        leader = cl.wait_leader(60)
        wait_for("the membership seeded", lambda: members(cl, leader)["seeded"], 60)
        assert members(cl, leader)["cluster_id"] == cluster_id
        d = cl.members["d"]
        res = change(cl, "POST", "/v1/members", {"name": "d", "raft": d.raft,
                                                 "api": f"127.0.0.1:{d.api_port}"})  # fmt: skip
        assert res["cluster_id"] == cluster_id
        assert res["start"].endswith(f"--node d --cluster-id {cluster_id}"), res
        d.config = tmp_path / "d.toml"
        write_file(cl, ["a", "b", "c", "d"], d.config, [])
        cl.agent_args = ["--cluster-id", cluster_id]  # (only d starts from here on)
        cl.start("d")
        wait_for("d to catch up", lambda: caught_up(cl, "d"), 90, interval=0.2)
        assert members(cl, "d")["cluster_id"] == cluster_id
        jobs = {j["name"] for j in cl.get("d", "/v1/jobs", 5.0)["jobs"]}
        assert {f"restored-{j}" for j in range(20)} <= jobs
    finally:
        cl.stop()
        (tmp_path / "logs.txt").write_text(cl.logs())
