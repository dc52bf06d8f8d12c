"""Before/after: the lock round trip and ``raftcron lock N -- true`` for several source trees
side by side, interleaved with etcd's gRPC lock and ``etcdctl lock`` in the same run.

    git archive OLD | tar -x -C /tmp/old
    PYTHONPATH=. .venv/bin/python -m bench.ab old=/tmp/old new=.

Each tree gets its own 3-node cluster (its agents run with ``PYTHONPATH`` set to the tree)
and its own venv with the tree installed from a wheel, whose ``raftcron lock`` the wrapper
variant runs; one etcd cluster serves both etcd variants. Every
run measures every variant, in alternating order. Sizes: ``AB_RUNS`` (6), ``AB_ITERS``
(500 pairs), ``AB_WITERS`` (20 wrapper calls); ``AB_NOWRAP=1`` / ``AB_NORTT=1`` skip a part.
Prints per-run p50s, then the median over runs of each variant's p50 and p99.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Ctx, Sizes, installed
from bench.lock_latency import RaftcronRaw, _time_pairs
from bench.peers import EtcdCluster, EtcdLockGrpc, env_without_proxies
from bench.procs import Registry
from bench.stats import run_summary


def main() -> None:
    # absolute: the agents run in their own directories
    trees = {
        name: str(Path(path).resolve())
        for name, path in (a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    }
    runs = int(os.environ.get("AB_RUNS", "6"))
    iters = int(os.environ.get("AB_ITERS", "500"))
    witers = int(os.environ.get("AB_WITERS", "20"))
    skip_wrap = os.environ.get("AB_NOWRAP") == "1"
    skip_rtt = os.environ.get("AB_NORTT") == "1"
    for t in trees.values():
        subprocess.run([sys.executable, "-m", "compileall", "-q", t + "/raftcron"], check=False)
    reg = Registry()
    out: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="raftcron-ab-") as tmp:
        ctx = Ctx(sizes=Sizes.quick(), tmp=Path(tmp), reg=reg, quick=True)
        try:
            clusters = {}
            for name, t in trees.items():
                clusters[name] = ctx.raftcron("c-" + name, env={"PYTHONPATH": t})
            ec = EtcdCluster(ctx.tmp / "etcd", reg)
            (ctx.tmp / "etcd").mkdir()
            ec.start()
            etcd_leader = ec.wait_ready()
            eg = EtcdLockGrpc(ec.client_port[etcd_leader])
            raws = {}
            for name, cl in clusters.items():
                leader = cl.wait_leader(30)
                raws[name] = (RaftcronRaw(cl.members[leader].api_port), cl.members[leader].api)

            variants = []
            if not skip_rtt:
                for name, (raw, _) in raws.items():
                    variants.append(
                        (f"rtt {name}", lambda i, r=raw: r.release("ab", r.acquire("ab")), iters)
                    )
                variants.append(("rtt etcd-grpc", lambda i: eg.release(eg.acquire("ab")), iters))
            env = env_without_proxies()

            def once(argv: list[str], e: dict[str, str]) -> None:
                res = subprocess.run(argv, env=e, capture_output=True, check=False)
                if res.returncode != 0:
                    raise RuntimeError(f"{argv} exited {res.returncode}: {res.stderr[-300:]!r}")

            if not skip_wrap:
                for name, (_, api) in raws.items():
                    # each tree installed from its wheel, as users run it (bench.common)
                    script = installed(Path(trees[name]), ctx.tmp / f"installed-{name}")
                    argv = [str(script), "lock", "wrap", "--api", api, "--", "true"]
                    variants.append((f"wrap {name}", lambda i, a=argv: once(a, env), witers))
                argv = [
                    "etcdctl",
                    "--endpoints",
                    ec.client_url(etcd_leader),
                    "lock",
                    "wrap",
                    "--",
                    "true",
                ]
                variants.append(("wrap etcdctl", lambda i: once(argv, env), witers))
            for label, fn, _ in variants:
                _time_pairs(10 if label.startswith("rtt") else 2, fn)
            for run in range(runs):
                order = variants if run % 2 == 0 else list(reversed(variants))
                for label, fn, n in order:
                    out.setdefault(label, []).append(run_summary(_time_pairs(n, fn)))
                print(
                    f"run {run + 1}: "
                    + ", ".join(f"{lb}={out[lb][-1]['p50'] * 1000:.2f}" for lb, _, _ in variants),
                    flush=True,
                )
            print("finished", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), end=", ")
            print("1-minute load average", os.getloadavg()[0])
            summary = {
                lb: {
                    "p50_median_ms": round(statistics.median(r["p50"] for r in rs) * 1000, 3),
                    "p99_median_ms": round(statistics.median(r["p99"] for r in rs) * 1000, 3),
                    "runs": len(rs),
                }
                for lb, rs in out.items()
            }
            print(json.dumps(summary, indent=1))
            for name, cl in clusters.items():
                logs = (m.log.read_text(errors="replace") for m in cl.members.values())
                trunc = sum(text.count("truncating already-applied") for text in logs)
                print(f"{name}: 'truncating already-applied' log lines: {trunc}")
        finally:
            reg.stop_all()


if __name__ == "__main__":
    main()
