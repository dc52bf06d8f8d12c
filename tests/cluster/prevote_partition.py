"""``python -m tests.cluster.prevote_partition OUT``: a follower's Raft traffic is cut off
for several election timeouts and healed; the leader and its term must not change (Raft
thesis 9.6, pre-vote, and 4.2.3, stickiness; docs/design.md, "Elections: pre-vote and
stickiness"), and an every-second job must run every second exactly once throughout.

Root only. It re-executes itself in a network namespace of its own (``unshare -n``), as
the chaos runner does, and cuts the follower off with the chaos suite's iptables rules
(``tests.chaos.runner.Net``: each agent runs with its own gid). The job is pinned (tags)
to one member that is never cut off, so no run of it can be stranded on the cut-off one:
any fire missed or run twice is the cluster's doing. Afterwards a leadership transfer
(TimeoutNow, ``POST /v1/leader/transfer``) must still move the leadership: a transfer's
election bypasses stickiness. Prints one line per step; exit status 1 on a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.chaos import checker
from tests.chaos.runner import GID_BASE, Net, SinkClient
from tests.cluster.harness import Cluster, running, wait_for

ROOT = Path(__file__).resolve().parents[2]
JOB_PY = ROOT / "tests" / "chaos" / "job.py"
ADDRS = ["127.0.0.21", "127.0.0.22", "127.0.0.23"]
CUT_S = 8.0  # the election timeout is 0.3-0.9 s: about 9 to 27 of them
NETNS_ENV = "RAFTCRON_PREVOTE_NETNS"


def log(msg: str) -> None:
    print(f"prevote: {msg}", flush=True)


def sink_begins(path: Path) -> list[dict[str, Any]]:
    import json

    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            ev = json.loads(line)
            if ev.get("ev") == "begin":
                out.append(ev)
    return out


def scenario(out: Path) -> list[str]:
    """The failures (empty: all held)."""
    failures: list[str] = []
    sock = out / "sink.sock"
    sink = subprocess.Popen(
        [sys.executable, "-m", "tests.chaos.sink", str(sock), str(out / "sink.jsonl")], cwd=ROOT
    )
    wait_for("the sink", lambda: Path(str(sock) + ".ready").exists(), 15)
    client = SinkClient(sock)
    job = {
        "name": "tick",
        "schedule": "* * * * * *",
        "command": [sys.executable, "-S", str(JOB_PY), str(sock), "0.2"],
        "tags": {"runner": "yes"},
    }
    cl = Cluster(
        out,
        [job],
        size=3,
        hosts=ADDRS,
        tags={"a": {"runner": "yes"}},
        extra_cluster="history = 1000000",
    )
    for i, m in enumerate(cl.members.values()):
        m.group = GID_BASE + i + 1
    net = Net(list(cl.members), ADDRS)
    net.setup()
    try:
        with running(cl):
            leader = cl.wait_leader(60)
            wait_for(
                "every member to advertise feature level 3 (pre-vote on)",
                lambda: all(cl.status(n)["cluster_feature_level"] >= 3 for n in cl.members),
                60,
                interval=0.3,
            )
            wait_for("the job to run", lambda: sink_begins(out / "sink.jsonl"), 60)
            # the member to cut off: a follower that is not the job's runner
            cut = next(n for n in ("b", "c") if n != leader)
            # (a leader that stays: let it settle a moment, then read its term)
            time.sleep(1.0)
            leader = cl.wait_leader(30)
            if cut == leader:
                cut = next(n for n in ("b", "c") if n != leader)
            term = cl.status(leader)["term"]
            log(f"leader {leader} term {term}; cutting off {cut}'s raft traffic for {CUT_S:g}s")
            start_t = time.monotonic()
            for other in cl.members:
                if other != cut:
                    net.cut(cut, other)
            # the cut works: the follower stops hearing the leader (its election timer
            # fires; with pre-vote it forgets the leader but keeps its term)
            wait_for(
                f"{cut} to lose the leader",
                lambda: cl.status(cut)["leader"] is None,  # (the runner's calls are never cut)
                CUT_S / 2,
                interval=0.2,
            )
            time.sleep(max(0.0, start_t + CUT_S - time.monotonic()))
            cut_term = cl.status(cut)["term"]
            net.heal()
            log(f"healed; {cut} is at term {cut_term}")
            wait_for(
                f"{cut} back and caught up",
                lambda: (
                    cl.status(cut)["leader"] == leader
                    and cl.status(cut)["last_applied"] >= cl.status(leader)["commit_index"]
                ),
                60,
                interval=0.3,
            )
            time.sleep(3.0)  # several election timeouts after healing
            after = {n: (cl.status(n)["leader"], cl.status(n)["term"]) for n in cl.members}
            log(f"after healing (leader, term) per member: {after}")
            if cut_term != term:
                failures.append(f"the cut-off {cut} raised its term: {term} -> {cut_term}")
            if any(v != (leader, term) for v in after.values()):
                failures.append(f"leader or term changed: was ({leader}, {term}), now {after}")
            end_t = time.monotonic()
            # a leadership transfer still works (its election bypasses stickiness)
            for _ in range(3):  # a 503 timeout (a commit slowed by a loaded machine): retry
                code, body = cl.request(leader, "POST", "/v1/leader/transfer", {"to": cut}, 30.0)
                log(f"leadership transfer {leader} -> {cut}: {code} {body}")
                if code != 503 or body.get("error", {}).get("code") != "timeout":
                    break
            if code != 200 or not body.get("moved") or body.get("to") != cut:
                failures.append(f"leadership transfer to {cut} failed: {code} {body}")
            new_leader = cl.wait_leader(30)
            if new_leader != cut:
                failures.append(f"after the transfer the leader is {new_leader}, not {cut}")
            ledgers = cl.quiesce(["tick"])
    finally:
        client.close()
        sink.terminate()
        sink.wait(10)
    report, tl = checker.check_record(
        out,
        name="prevote-partition",
        jobs={"tick": {"schedule": "* * * * * *", "overlap": "allow", "timezone": "UTC"}},
        start_t=start_t,
        end_t=end_t,
        ledgers=ledgers,
    )
    log(report.line())
    ticks = [e for e in tl.executions if start_t <= e.begin_t <= end_t]
    log(f"{len(ticks)} executions of tick in the {end_t - start_t:.1f}s window")
    failures += [str(v) for v in report.violations]
    if not ticks:
        failures.append("the job did not run during the window")
    return failures


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]).resolve()
    if os.geteuid() != 0:
        log("needs root (network namespace and iptables)")
        return 2
    if os.environ.get(NETNS_ENV) != str(os.getpid()):
        env = {**os.environ, NETNS_ENV: "exec"}
        cmd = ["unshare", "-n", "sh", "-c", f'{NETNS_ENV}=$$ exec "$@"', "sh"]
        cmd += [sys.executable, "-m", "tests.cluster.prevote_partition", str(out)]
        return subprocess.run(cmd, env=env, cwd=ROOT, check=False).returncode
    out.mkdir(parents=True, exist_ok=True)
    failures = scenario(out)
    for f in failures:
        log(f"FAILED: {f}")
    log("ok" if not failures else f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
