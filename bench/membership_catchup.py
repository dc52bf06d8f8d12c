"""How long a replaced member takes to catch up with 100,000 runs in the state
(issue 15 item 1; docs/operations.md, "Replacing a member").

    flock /tmp/raftcron-heavy.lock .venv/bin/python -m bench.membership_catchup

A 3-member cluster (a, b, c) starts from a state of 100,000 runs, seeded synthetically as
``tests/cluster/test_snapshot.py`` does (``bulk_state``: 100 jobs, each given 1,000
``missed`` records by ordinary ``Plan`` commands, written as every member's Raft snapshot
before the first start), plus an every-second job. A follower's server dies; it is
removed and ``d`` added at other addresses (``POST /v1/members``), then d's agent starts
with an empty data dir. Printed: from d's agent start until d is healthy and has applied
the leader's commit index (the catch-up: it loads the leader's snapshot and the log after
it), and until d first executes the every-second job. No assertion on the times.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from raftcron.raft.seed import seed_raft_dir
from tests.cluster.harness import SINK_CMD, Cluster, read_sink, wait_for
from tests.cluster.test_membership import caught_up, members, write_file
from tests.cluster.test_snapshot import HISTORY, bulk_state


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="raftcron-catchup-"))
    sink = root / "sink.txt"
    tick = {"name": "tick", "schedule": "* * * * * *",
            "command": ["sh", "-c", SINK_CMD.format(sink=sink)]}  # fmt: skip
    cl = Cluster(root, size=4, extra_cluster=f"history = {HISTORY}")
    write_file(cl, ["a", "b", "c"], cl.config, [tick])
    seeded = bulk_state(int(time.time() * 1000))
    runs = len(seeded.runs)
    blob = seeded.snapshot()
    addrs = [cl.members[n].raft for n in "abc"]
    for n in "abc":
        seed_raft_dir(root / "data" / n, blob, addrs)
    print(f"state: {runs} runs, snapshot {len(blob) / 1e6:.1f} MB")
    del blob, seeded
    for n in "abc":
        cl.start(n)
    try:
        leader = cl.wait_leader(120)
        wait_for("the membership seeded", lambda: members(cl, leader)["seeded"], 120)
        victim = next(n for n in "abc" if n != leader)
        cl.kill(victim)
        status, res = cl.request(leader, "DELETE", f"/v1/members/{victim}", timeout=60)
        assert status == 200, res
        d = cl.members["d"]
        body = {"name": "d", "raft": d.raft, "api": f"127.0.0.1:{d.api_port}"}
        status, res = cl.request(cl.wait_leader(60), "POST", "/v1/members", body, timeout=60)
        assert status == 201, res
        d.config = root / "d.toml"
        write_file(cl, [*(n for n in "abc" if n != victim), "d"], d.config, [tick])
        t0 = time.monotonic()
        cl.start("d")
        wait_for("d caught up", lambda: caught_up(cl, "d"), 600, interval=0.1)
        t_caught = time.monotonic() - t0
        got = cl.get("d", "/v1/status", 10.0)
        assert got["runs"] >= runs, f"d holds {got['runs']} runs, not the {runs} of the state"
        wait_for("d executes", lambda: any(r.get("node") == "d" for r in read_sink(sink)), 120)
        t_exec = time.monotonic() - t0
        result = {
            "runs_in_state": runs,
            "runs_on_d": got["runs"],
            "caught_up_s": round(t_caught, 2),
            "first_execution_s": round(t_exec, 2),
        }
        print(json.dumps(result))
        print(
            f"a replaced member with {runs:,} runs in the state caught up {t_caught:.1f} s "
            f"after its agent started and first executed the every-second job after "
            f"{t_exec:.1f} s"
        )
    finally:
        cl.stop()
        print(f"logs and data: {root}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
