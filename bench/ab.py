"""Before/after: the lock round trip and ``raftcron lock N -- true`` for several source trees
side by side, interleaved with etcd's gRPC lock and ``etcdctl lock`` in the same run.

    git archive OLD | tar -x -C /tmp/old
    PYTHONPATH=. .venv/bin/python -m bench.ab old=/tmp/old new=.

Each tree gets its own 3-node cluster (its agents run with ``PYTHONPATH`` set to the tree)
and its own venv with the tree installed from a wheel, whose ``raftcron lock`` the wrapper
variant runs; one etcd cluster serves both etcd variants. Every
run measures every variant, in alternating order. Sizes: ``AB_RUNS`` (6), ``AB_ITERS``
(500 pairs), ``AB_WITERS`` (20 wrapper calls); ``AB_NOWRAP=1`` / ``AB_NORTT=1`` skip a part.
``AB_COMMIT=1`` adds one commit per iteration at each tree's leader (``PUT /v1/jobs/NAME``,
sequential on one keep-alive connection: the single-commit latency), and the same through
a follower (``commit-f``: forwarded to the leader, answered once the follower applied it);
``AB_CONTEND=16`` adds, once per run, 16 clients looping acquire + release on distinct names for
``AB_CONTEND_S`` (5) seconds against each tree and etcd's gRPC lock (pairs/s).
Prints per-run p50s, then the median over runs of each variant's p50 and p99 (and of
the contended pairs/s).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import Ctx, Sizes, installed
from bench.lock_latency import RaftcronRaw, _contend, _time_pairs
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
    commit = os.environ.get("AB_COMMIT") == "1"
    contend = int(os.environ.get("AB_CONTEND", "0"))
    contend_s = float(os.environ.get("AB_CONTEND_S", "5"))
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
            raws_f = {}
            for name, cl in clusters.items():
                leader = cl.wait_leader(30)
                raws[name] = (RaftcronRaw(cl.members[leader].api_port), cl.members[leader].api)
                follower = next(n for n in cl.members if n != leader)
                raws_f[name] = RaftcronRaw(cl.members[follower].api_port)

            variants = []
            if not skip_rtt:
                for name, (raw, _) in raws.items():
                    variants.append(
                        (f"rtt {name}", lambda i, r=raw: r.release("ab", r.acquire("ab")), iters)
                    )
                variants.append(("rtt etcd-grpc", lambda i: eg.release(eg.acquire("ab")), iters))
            if commit:
                for name, (raw, _) in raws.items():
                    variants.append((f"commit {name}", lambda i, r=raw: put_job(r, i), iters))
                for name, raw in raws_f.items():
                    variants.append((f"commit-f {name}", lambda i, r=raw: put_job(r, i), iters))
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
                _time_pairs(2 if label.startswith("wrap") else 10, fn)
            contenders: list[tuple[str, Any]] = []
            if contend:
                for name, (raw, _) in raws.items():
                    port = raw.conn.port
                    contenders.append((f"contend{contend} {name}", rc_factory(port)))
                contenders.append(
                    (f"contend{contend} etcd-grpc", etcd_factory(ec.client_port[etcd_leader]))
                )
            pairs_s: dict[str, list[float]] = {}
            for run in range(runs):
                order = variants if run % 2 == 0 else list(reversed(variants))
                for label, fn, n in order:
                    if label.startswith(("rtt", "commit")) and "etcd" not in label:
                        # the connection sat idle through the other variants: a new one
                        tree = label.split(" ", 1)[1]
                        conn = raws_f[tree] if label.startswith("commit-f") else raws[tree][0]
                        conn.conn.close()
                        fn(0)
                    out.setdefault(label, []).append(run_summary(_time_pairs(n, fn)))
                c_order = contenders if run % 2 == 0 else list(reversed(contenders))
                for label, make in c_order:
                    res = _contend(contend, contend_s, make(f"{run}"))
                    pairs_s.setdefault(label, []).append(res["pairs_per_s"])
                print(
                    f"run {run + 1}: "
                    + ", ".join(f"{lb}={out[lb][-1]['p50'] * 1000:.2f}" for lb, _, _ in variants)
                    + "".join(f", {lb}={pairs_s[lb][-1]:.0f}/s" for lb, _ in contenders),
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
            for lb, xs in pairs_s.items():
                summary[lb] = {
                    "pairs_per_s_median": round(statistics.median(xs), 1),
                    "runs": len(xs),
                }
            print(json.dumps(summary, indent=1))
            for name, cl in clusters.items():
                logs = (m.log.read_text(errors="replace") for m in cl.members.values())
                trunc = sum(text.count("truncating already-applied") for text in logs)
                print(f"{name}: 'truncating already-applied' log lines: {trunc}")
        finally:
            reg.stop_all()


def put_job(raw: RaftcronRaw, i: int) -> None:
    """One commit: register (or replace) a job that never fires."""
    body = json.dumps({"schedule": "0 0 1 1 *", "command": ["true", str(i)]}).encode()
    raw.conn.request("PUT", "/v1/jobs/ab-commit", body, {"Content-Type": "application/json"})
    resp = raw.conn.getresponse()
    resp.read()
    if resp.status >= 300:
        raise RuntimeError(f"PUT /v1/jobs/ab-commit: HTTP {resp.status}")


def rc_factory(port: int) -> Callable[[str], Callable[[int], Any]]:
    def per_run(tag: str) -> Callable[[int], Any]:
        def make(i: int) -> Any:
            c = RaftcronRaw(port)
            name = f"c-{tag}-{i}"
            return (lambda: c.acquire(name, "60s"), lambda f: c.release(name, f), c.close)

        return make

    return per_run


def etcd_factory(port: int) -> Callable[[str], Callable[[int], Any]]:
    def per_run(tag: str) -> Callable[[int], Any]:
        def make(i: int) -> Any:
            c = EtcdLockGrpc(port)
            name = f"c-{tag}-{i}"
            return (lambda: c.acquire(name), c.release, c.close)

        return make

    return per_run


if __name__ == "__main__":
    main()
