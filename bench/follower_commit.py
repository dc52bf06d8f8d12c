"""When does a follower apply a committed entry? Before/after for several source trees,
interleaved (issue 17 item 3; docs/design.md, "The commit path").

    PYTHONPATH=. .venv/bin/python -m bench.follower_commit A=/tmp/before B=. \
        [--runs 6] [--iters 100] [--gap 0.02]

Each tree gets three Raft replicas (``RaftNode`` + ``Machine``, no agent, no HTTP) in three
processes on loopback (password on, durable journal), ``PYTHONPATH`` set to the tree.
Every replica records when it applied each entry (``time.monotonic_ns``: one clock for
all processes of this machine). Per run and tree, sequentially, ``--gap`` seconds apart
(an otherwise idle cluster, as in the steady workload):

* ``--iters`` lock commands proposed at the leader: **leader apply -> follower apply**,
  for each follower (the time the commit index takes to reach a follower and be applied
  there), and propose -> leader apply (the commit at the leader);
* ``--iters`` lock commands proposed at a follower (forwarded to the leader): **propose
  -> result on the follower's event loop**, and its parts: propose -> leader apply
  (commit), leader apply -> this follower's apply, follower apply -> the awaiting
  coroutine resumes (tick thread -> loop).

Prints each run's p50s, then the median over runs of each figure's p50 and p99 (ms).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stats import run_summary

HERE = Path(__file__).resolve()

# The node: runs with PYTHONPATH set to the tree under test (so only raftcron's API that
# every tree has), driven by lines on stdin, answering one JSON line each.
_BOOT = (
    "import importlib.util,sys;"
    "s=importlib.util.spec_from_file_location('fc_node',sys.argv[1]);"
    "m=importlib.util.module_from_spec(s);s.loader.exec_module(m);m.node_main(sys.argv[2:])"
)


def node_main(argv: list[str]) -> None:
    import asyncio
    import threading

    from raftcron.core.commands import AcquireLock
    from raftcron.raft.node import Machine, RaftNode, RaftSettings

    me, data, *peers = argv
    applied: dict[str, int] = {}
    lock = threading.Lock()

    def observe(cmd: Any, _result: Any) -> None:
        t = time.monotonic_ns()
        name = getattr(cmd, "name", None)
        if isinstance(name, str):
            with lock:
                applied[name] = t

    async def run() -> None:
        machine = Machine()
        machine.observer = observe
        node = RaftNode(
            RaftSettings(self_addr=me, peers=peers, password="bench", data_dir=Path(data)),
            machine,
        )
        node.start()
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        out = sys.stdout
        while True:
            line = (await reader.readline()).decode().split()
            if not line:
                break
            if line[0] == "status":
                st = node.status
                ans: Any = {"leader": st.is_leader, "known": st.leader, "ready": st.ready}
            elif line[0] == "propose":
                tag, n, gap = line[1], int(line[2]), float(line[3])
                ans = []
                for i in range(n):
                    name = f"{tag}-{i}"
                    cmd = AcquireLock(
                        at_ms=1_000, name=name, request=name, holder="b", ttl_ms=60_000, wait_ms=0
                    )
                    t0 = time.monotonic_ns()
                    await node.propose(cmd, 5.0)
                    ans.append([name, t0, time.monotonic_ns()])
                    await asyncio.sleep(gap)
            elif line[0] == "applied":
                with lock:
                    ans = dict(applied)
            else:
                ans = {"error": line[0]}
            out.write(json.dumps(ans) + "\n")
            out.flush()
        node.stop()

    asyncio.run(run())


class Node:
    def __init__(self, tree: str, me: str, data: Path, peers: list[str]) -> None:
        env = {**os.environ, "PYTHONPATH": tree}
        argv = [sys.executable, "-c", _BOOT, str(HERE), me, str(data), *peers]
        log = open(data.parent / f"{data.name}.log", "wb")  # noqa: SIM115 - closed by stop()
        self.log = log
        self.proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=tree
        )

    def ask(self, line: str) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError(f"node exited ({self.proc.poll()}); see {self.log.name}")
        return json.loads(answer)

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _cluster(tree: str, tmp: Path, name: str) -> list[Node]:
    addrs = [f"127.0.0.1:{p}" for p in _ports(3)]
    nodes = []
    for i, me in enumerate(addrs):
        data = tmp / f"{name}-{i}"
        data.mkdir(parents=True)
        nodes.append(Node(tree, me, data, [a for a in addrs if a != me]))
    return nodes


def _roles(nodes: list[Node], timeout: float = 30.0) -> tuple[Node, list[Node]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = [n.ask("status") for n in nodes]
        leaders = [n for n, s in zip(nodes, st, strict=True) if s["leader"]]
        if len(leaders) == 1 and all(s["ready"] and s["known"] for s in st):
            return leaders[0], [n for n in nodes if n is not leaders[0]]
        time.sleep(0.1)
    raise RuntimeError("no leader")


def _measure(nodes: list[Node], run: int, iters: int, gap: float) -> dict[str, list[float]]:
    leader, followers = _roles(nodes)
    f = followers[0]
    at_leader = leader.ask(f"propose L{run} {iters} {gap}")
    at_follower = f.ask(f"propose F{run} {iters} {gap}")
    applied = [n.ask("applied") for n in (leader, *followers)]
    lead_ap, f_ap = applied[0], applied[1:]
    out: dict[str, list[float]] = {
        "lead propose->commit": [],
        "leader->follower apply": [],
        "fwd propose->result": [],
        "fwd propose->commit": [],
        "fwd commit->follower apply": [],
        "fwd follower apply->loop": [],
    }
    ms = 1e-6
    for name, t0, _ in at_leader:
        out["lead propose->commit"].append((lead_ap[name] - t0) * ms)
        for ap in f_ap:
            out["leader->follower apply"].append((ap[name] - lead_ap[name]) * ms)
    for name, t0, t1 in at_follower:
        out["fwd propose->result"].append((t1 - t0) * ms)
        out["fwd propose->commit"].append((lead_ap[name] - t0) * ms)
        out["fwd commit->follower apply"].append((f_ap[0][name] - lead_ap[name]) * ms)
        out["fwd follower apply->loop"].append((t1 - f_ap[0][name]) * ms)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("trees", nargs="+", help="name=path")
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--gap", type=float, default=0.02)
    args = ap.parse_args()
    trees = {n: str(Path(p).resolve()) for n, p in (a.split("=", 1) for a in args.trees)}
    print("start", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load", os.getloadavg())
    res: dict[str, dict[str, list[dict[str, float]]]] = {n: {} for n in trees}
    with tempfile.TemporaryDirectory(prefix="raftcron-fc-") as tmp:
        clusters = {n: _cluster(t, Path(tmp), n) for n, t in trees.items()}
        try:
            for nodes in clusters.values():  # warm up
                _measure(nodes, -1, 20, args.gap)
            for run in range(args.runs):
                order = list(clusters) if run % 2 == 0 else list(reversed(clusters))
                for name in order:
                    for fig, xs in _measure(clusters[name], run, args.iters, args.gap).items():
                        res[name].setdefault(fig, []).append(run_summary(xs))
                print(
                    f"run {run + 1}: "
                    + "; ".join(
                        f"{n}: " + ", ".join(f"{k} {v[-1]['p50']:.2f}" for k, v in r.items())
                        for n, r in res.items()
                    ),
                    flush=True,
                )
        finally:
            for nodes in clusters.values():
                for node in nodes:
                    node.stop()
    print("finished", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load", os.getloadavg())
    summary = {
        n: {
            fig: {
                "p50_median_ms": round(statistics.median(s["p50"] for s in runs), 3),
                "p99_median_ms": round(statistics.median(s["p99"] for s in runs), 3),
            }
            for fig, runs in r.items()
        }
        for n, r in res.items()
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
