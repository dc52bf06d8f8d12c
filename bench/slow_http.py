"""1,000 slow HTTP clients against a live 3-node cluster with an every-second job.

Each client connects to one of the members (spread evenly) and sends a request head one
byte every ``--drip`` seconds, never finishing it (slowloris); a client the server closes
connects again at once, so the attack keeps its size for ``--seconds``. Meanwhile a job
runs every second and appends its run id to a sink file. Reported:

* duplicates: a fire (``scheduled_at``) executed more than once (must be 0);
* unrecorded misses: a second of the attack window whose fire neither ran nor has a
  ledger record (missed, skipped, ...) with its reason (must be 0);
* each agent's RSS before and after, and the peak (``VmHWM``);
* how many connections the servers closed (header timeout, connection cap) and reopened.

    .venv/bin/python -m bench.slow_http [--clients 1000] [--seconds 60] [--drip 5]
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import json
import tempfile
import time
from pathlib import Path

from tests.cluster.harness import Cluster, running, wait_for


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def slow_client(port: int, stop: float, drip: float, stats: dict[str, int]) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < stop:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            stats["connect_failed"] += 1
            await asyncio.sleep(0.5)
            continue
        stats["connects"] += 1
        try:
            writer.write(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
            while loop.time() < stop:
                await asyncio.sleep(drip)
                writer.write(b"X")
                await writer.drain()
                if reader.at_eof():
                    break
            else:
                writer.close()
                return
            stats["closed_by_server"] += 1
        except (ConnectionError, OSError):
            stats["closed_by_server"] += 1
        writer.close()


async def attack(ports: list[int], clients: int, seconds: float, drip: float) -> dict[str, int]:
    stats = {"connects": 0, "closed_by_server": 0, "connect_failed": 0}
    stop = asyncio.get_running_loop().time() + seconds
    tasks = [slow_client(ports[i % len(ports)], stop, drip, stats) for i in range(clients)]
    await asyncio.gather(*tasks)
    return stats


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.slow_http", description=__doc__)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--drip", type=float, default=5.0, help="seconds between bytes")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="raftcron-slow-http-") as tmp:
        root = Path(tmp)
        sink = root / "sink.txt"
        tick = {
            "name": "tick",
            "schedule": "* * * * * *",
            "command": ["sh", "-c", f'echo "$RAFTCRON_SCHEDULED_AT $RAFTCRON_RUN_ID" >> {sink}'],
            "catchup": "10s",
        }
        cluster = Cluster(root, [tick], extra_cluster="history = 1000")
        with running(cluster):
            wait_for("tick to run", lambda: sink.exists() and sink.stat().st_size > 0, 30)
            pids = {n: m.proc.pid for n, m in cluster.members.items() if m.proc}
            before = {n: rss_kb(pid) for n, pid in pids.items()}
            t0 = time.time()
            ports = [m.api_port for m in cluster.members.values()]
            stats = asyncio.run(attack(ports, args.clients, args.seconds, args.drip))
            t1 = time.time()
            after = {n: rss_kb(pid) for n, pid in pids.items()}
            peak = {n: rss_kb(pid, "VmHWM") for n, pid in pids.items()}
            time.sleep(15)  # every fire of the window is claimed, run and recorded by now
            runs = cluster.runs("a", "tick", limit=1000)
        executed = [line.split()[0] for line in sink.read_text().splitlines() if line.strip()]
    first, last = int(t0) + 2, int(t1) - 2  # whole seconds inside the window
    window = range(first, last + 1)
    dup = len(executed) - len(set(executed))
    recorded: set[int] = set()
    for r in runs:
        at = r["scheduled_at_ms"] // 1000
        span = r.get("count", 1)
        for k in range(span):  # an aggregated record covers its consecutive fires
            recorded.add(at + k)
    ran = {calendar.timegm(time.strptime(x[:19], "%Y-%m-%dT%H:%M:%S")) for x in executed}
    unrecorded = [t for t in window if t not in ran and t not in recorded]
    statuses: dict[str, int] = {}
    for r in runs:
        if first * 1000 <= r["scheduled_at_ms"] <= last * 1000:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    out = {
        "clients": args.clients,
        "seconds": args.seconds,
        "drip_s": args.drip,
        "attack": stats,
        "fires_in_window": len(window),
        "duplicates": dup,
        "unrecorded_misses": len(unrecorded),
        "ledger_statuses_in_window": statuses,
        "rss_kb_before": before,
        "rss_kb_after": after,
        "rss_kb_peak": peak,
    }
    print(json.dumps(out, indent=2))
    return 0 if dup == 0 and not unrecorded else 1


if __name__ == "__main__":
    raise SystemExit(main())
