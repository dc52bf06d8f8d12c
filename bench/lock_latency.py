"""Workloads 1 and 2: lock round trips, uncontended and contended, raftcron vs etcd vs Redis.

1. Uncontended acquire + release, sequential, ``lock_iters`` per run, interleaved per run:
   raftcron raw HTTP (one keep-alive connection), raftcron's client library
   (``raftcron.client.Client``: a connection per request, as it ships), etcd's v3lock
   service over gRPC with a reused lease and through the HTTP/JSON gateway, etcd's
   put-if-absent txn recipe, Redis ``SET NX PX`` + Lua compare-and-delete. Then the
   whole-process wrappers ``raftcron lock N -- true`` and ``etcdctl lock N -- true``.
2. Contended: 16 and 64 client threads on one lock name and on distinct names for a fixed
   time: pairs per second and p99 of the wait (acquire request sent -> lock granted).
   raftcron waits in its FIFO queue (``wait``), etcd's Lock blocks server-side, Redis has
   no queue, so its clients retry ``SET NX`` every 1 ms.

Every client talks to the leader (etcd: the leader member). Standalone:

    .venv/bin/python -m bench.lock_latency [--quick]
"""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.common import BIN, ROOT, Ctx, installed
from bench.peers import (
    EtcdCluster,
    EtcdLockGateway,
    EtcdLockGrpc,
    EtcdLockTxn,
    RedisLock,
    RedisServer,
    env_without_proxies,
)
from bench.procs import log
from bench.stats import median_ratio, over_runs, run_summary
from raftcron.client import Client
from tests.cluster.harness import Cluster


class RaftcronRaw:
    """Acquire/release on one keep-alive HTTP connection, JSON by hand."""

    def __init__(self, port: int, timeout: float = 70.0) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.holder = "bench-" + uuid.uuid4().hex[:8]

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        try:
            self.conn.request(method, path, body=data, headers=headers)
            resp = self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closes a keep-alive connection idle for HEADER_TIMEOUT_S (20 s),
            # as while the other variants of a run are measured: connect again, as every
            # keep-alive client does (a connection closed as idle never carried the request).
            self.conn.close()
            self.conn.request(method, path, body=data, headers=headers)
            resp = self.conn.getresponse()
        out: dict[str, Any] = json.loads(resp.read())
        if resp.status != 200:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status}: {out}")
        return out

    def acquire(self, name: str, wait: str = "0s") -> int:
        body = {"ttl": "30s", "wait": wait, "holder": self.holder}
        return int(self._call("POST", f"/v1/locks/{name}", body)["fence"])

    def release(self, name: str, fence: int) -> None:
        self._call("DELETE", f"/v1/locks/{name}?fence={fence}")

    def close(self) -> None:
        self.conn.close()


def _time_pairs(n: int, pair: Callable[[int], None]) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        pair(i)
        out.append(time.perf_counter() - t0)
    return out


def uncontended(ctx: Ctx, cl: Cluster, ec: EtcdCluster, redis_port: int) -> dict[str, Any]:
    n = ctx.sizes.lock_iters
    leader = cl.wait_leader(30)
    api_port = cl.members[leader].api_port
    etcd_leader = ec.wait_ready()
    etcd_port = ec.client_port[etcd_leader]

    raw = RaftcronRaw(api_port)
    lib = Client(cl.members[leader].api, timeout=30)
    eg = EtcdLockGrpc(etcd_port)
    gw = EtcdLockGateway(etcd_port)
    tx = EtcdLockTxn(etcd_port)
    rl = RedisLock(redis_port)

    def p_raw(i: int) -> None:
        raw.release("rtt-raw", raw.acquire("rtt-raw"))

    def p_lib(i: int) -> None:
        g = lib.lock_acquire("rtt-lib", 30)
        lib.lock_release("rtt-lib", g.fence)

    def p_grpc(i: int) -> None:
        eg.release(eg.acquire("rtt-grpc"))

    def p_gw(i: int) -> None:
        gw.release(gw.acquire("rtt-gw"))

    def p_txn(i: int) -> None:
        if not tx.acquire("rtt-txn"):
            raise RuntimeError("etcd txn lock unexpectedly held")
        tx.release("rtt-txn")

    def p_redis(i: int) -> None:
        if not rl.try_acquire("rtt-redis"):
            raise RuntimeError("redis lock unexpectedly held")
        rl.release("rtt-redis")

    variants: list[tuple[str, str, Callable[[int], None]]] = [
        ("raftcron", "HTTP API, raw (keep-alive)", p_raw),
        ("raftcron", "client library raftcron.client.Client", p_lib),
        ("etcd", "gRPC v3lock Lock/Unlock, reused lease", p_grpc),
        ("etcd", "HTTP/JSON gateway /v3/lock, reused lease", p_gw),
        ("etcd", "gRPC txn put-if-absent (etcd-sdk-python)", p_txn),
        ("redis", "SET NX PX + Lua compare-and-delete (redis-py)", p_redis),
    ]
    per_run: dict[str, list[dict[str, float]]] = {v[1]: [] for v in variants}
    for _, _label, fn in variants:  # warm up connections and caches
        _time_pairs(20, fn)
    for run in range(ctx.sizes.runs):
        order = variants if run % 2 == 0 else list(reversed(variants))
        for _, label, fn in order:
            per_run[label].append(run_summary(_time_pairs(n, fn)))
        log(
            f"lock rtt run {run + 1}/{ctx.sizes.runs}: "
            + ", ".join(
                f"{lb[:18]} p50={per_run[lb][-1]['p50'] * 1000:.2f}ms" for _, lb, _ in variants
            )
        )
    for c in (raw, eg, gw, tx, rl):
        c.close()
    rows = []
    for system, label, _ in variants:
        rows.append(
            {"system": system, "variant": label, "iterations": n, **over_runs(per_run[label])}
        )
    grpc_label = variants[2][1]
    ratios = {
        "raftcron_raw_over_etcd_grpc_p50": median_ratio(
            [r["p50"] for r in per_run[variants[0][1]]], [r["p50"] for r in per_run[grpc_label]]
        ),
        "raftcron_lib_over_etcd_grpc_p50": median_ratio(
            [r["p50"] for r in per_run[variants[1][1]]], [r["p50"] for r in per_run[grpc_label]]
        ),
    }
    return {"rows": rows, "ratios": ratios, "per_run": per_run}


def wrappers(ctx: Ctx, cl: Cluster, ec: EtcdCluster) -> dict[str, Any]:
    """``raftcron lock N -- true`` vs ``etcdctl lock N -- true``, whole process each time.
    raftcron twice: installed from its wheel into a fresh venv (what users run) and from
    this checkout's editable dev venv (whose path finder adds its own imports)."""
    leader = cl.wait_leader(30)
    etcd_leader = ec.wait_ready()
    env = env_without_proxies()
    tail = ["lock", "wrap", "--api", cl.members[leader].api, "--", "true"]
    etcd_argv = ["etcdctl", "--endpoints", ec.client_url(etcd_leader), "lock", "wrap", "--", "true"]
    variants = []
    try:
        script = installed(ROOT, ctx.tmp / "installed")
        variants.append(
            ("raftcron", "raftcron lock N -- true (installed wheel)", [str(script), *tail])
        )
    except Exception as exc:  # no index to build with: the dev venv only, said so
        ctx.note(f"locks/wrappers: could not install raftcron from a wheel: {exc!r}")
    variants += [
        (
            "raftcron-dev",
            "raftcron lock N -- true (editable dev venv)",
            [str(BIN / "raftcron"), *tail],
        ),
        ("etcd", "etcdctl lock N -- true", etcd_argv),
    ]

    def once(argv: list[str]) -> float:
        t0 = time.perf_counter()
        res = subprocess.run(argv, env=env, capture_output=True, check=False)
        dt = time.perf_counter() - t0
        if res.returncode != 0:
            raise RuntimeError(f"{argv[0]} exited {res.returncode}: {res.stderr[-300:]!r}")
        return dt

    for _, _, argv in variants:
        once(argv)
    per_run: dict[str, list[dict[str, float]]] = {v[1]: [] for v in variants}
    for run in range(ctx.sizes.runs):
        for _, label, argv in variants:
            per_run[label].append(run_summary([once(argv) for _ in range(ctx.sizes.wrapper_iters)]))
        log(
            f"lock wrappers run {run + 1}/{ctx.sizes.runs}: "
            + ", ".join(f"{lb} p50={per_run[lb][-1]['p50'] * 1000:.0f}ms" for _, lb, _ in variants)
        )
    rows = [
        {
            "system": s,
            "variant": lb,
            "iterations": ctx.sizes.wrapper_iters,
            **over_runs(per_run[lb]),
        }
        for s, lb, _ in variants
    ]
    by_system = {system: label for system, label, _ in variants}

    def ratio_to_etcd(system: str) -> float | None:
        if system not in by_system:
            return None
        return median_ratio(
            [r["p50"] for r in per_run[by_system[system]]],
            [r["p50"] for r in per_run[by_system["etcd"]]],
        )

    ratios = {
        "raftcron_over_etcdctl_p50": ratio_to_etcd("raftcron"),
        "raftcron_dev_over_etcdctl_p50": ratio_to_etcd("raftcron-dev"),
    }
    return {"rows": rows, "ratios": ratios, "per_run": per_run}


# --------------------------------------------------------------------------- contended


def _contend(
    clients: int,
    seconds: float,
    make: Callable[[int], tuple[Callable[[], Any], Callable[[Any], None], Callable[[], None]]],
) -> dict[str, float]:
    """``clients`` threads loop acquire -> release for ``seconds``; pairs/s and waits."""
    start = threading.Barrier(clients + 1)
    stop = threading.Event()
    waits: list[list[float]] = [[] for _ in range(clients)]
    pairs = [0] * clients
    errors = [0] * clients

    def worker(i: int) -> None:
        acquire, release, close = make(i)
        try:
            start.wait()
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    token = acquire()
                except Exception:
                    errors[i] += 1
                    continue
                waits[i].append(time.perf_counter() - t0)
                release(token)
                pairs[i] += 1
        finally:
            close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(120)
    elapsed = time.perf_counter() - t0
    all_waits = [w for ws in waits for w in ws]
    summary = run_summary(all_waits) if all_waits else {"p50": 0.0, "p99": 0.0, "max": 0.0}
    return {
        "pairs_per_s": sum(pairs) / elapsed,
        "wait_p50": summary["p50"],
        "wait_p99": summary["p99"],
        "wait_max": summary["max"],
        "errors": float(sum(errors)),
        "pairs": float(sum(pairs)),
    }


def contended(ctx: Ctx, cl: Cluster, ec: EtcdCluster, redis_port: int) -> dict[str, Any]:
    leader = cl.wait_leader(30)
    api_port = cl.members[leader].api_port
    etcd_port = ec.client_port[ec.wait_ready()]
    seconds = ctx.sizes.contended_seconds

    def rc(shared: bool, tag: str) -> Callable[[int], Any]:
        def make(i: int) -> Any:
            c = RaftcronRaw(api_port)
            name = f"c-{tag}" if shared else f"c-{tag}-{i}"
            return (lambda: c.acquire(name, "60s"), lambda f: c.release(name, f), c.close)

        return make

    def etcd(shared: bool, tag: str) -> Callable[[int], Any]:
        def make(i: int) -> Any:
            c = EtcdLockGrpc(etcd_port)
            name = f"c-{tag}" if shared else f"c-{tag}-{i}"
            return (lambda: c.acquire(name), c.release, c.close)

        return make

    def redis(shared: bool, tag: str) -> Callable[[int], Any]:
        def make(i: int) -> Any:
            c = RedisLock(redis_port)
            name = f"c-{tag}" if shared else f"c-{tag}-{i}"
            return (lambda: c.acquire(name), lambda _t: c.release(name), c.close)

        return make

    systems = [("raftcron", rc), ("etcd", etcd), ("redis", redis)]
    per_run: dict[str, list[dict[str, float]]] = {}
    for run in range(ctx.sizes.contended_runs):
        for clients in ctx.sizes.contended_clients:
            for shared in (True, False):
                for system, factory in systems:
                    key = f"{system}|{clients}|{'one name' if shared else 'distinct names'}"
                    tag = f"{run}-{clients}-{int(shared)}"
                    res = _contend(clients, seconds, factory(shared, tag))
                    per_run.setdefault(key, []).append(res)
                    log(
                        f"contended {key}: {res['pairs_per_s']:.0f} pairs/s, wait p99 "
                        f"{res['wait_p99'] * 1000:.1f} ms, errors {res['errors']:.0f}"
                    )
    rows = []
    for key, runs in per_run.items():
        system, clients, names = key.split("|")
        rows.append(
            {
                "system": system,
                "clients": int(clients),
                "names": names,
                "seconds": seconds,
                **over_runs(runs),
            }
        )
    return {"rows": rows, "per_run": per_run}


def run_all(ctx: Ctx) -> dict[str, Any]:
    cl = ctx.raftcron("locks")
    ec = EtcdCluster(ctx.tmp / "etcd-locks", ctx.reg)
    (ctx.tmp / "etcd-locks").mkdir(parents=True, exist_ok=True)
    ec.start()
    ec.wait_ready()
    rs = RedisServer(ctx.tmp / "redis", ctx.reg)
    out: dict[str, Any] = {}
    try:
        for key, fn in (
            ("uncontended", lambda: uncontended(ctx, cl, ec, rs.port)),
            ("wrappers", lambda: wrappers(ctx, cl, ec)),
            ("contended", lambda: contended(ctx, cl, ec, rs.port)),
        ):
            try:
                out[key] = fn()
            except Exception as exc:  # keep the other parts; the report shows the error
                log(f"locks/{key} failed: {exc!r}")
                out[key + "_error"] = repr(exc)
                ctx.note(f"locks/{key} failed: {exc!r}")
    finally:
        cl.stop()
        ec.stop()
    return out


if __name__ == "__main__":
    from bench.run import standalone

    standalone("locks", run_all)
