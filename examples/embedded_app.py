"""A Python service with raftcron embedded: HA scheduling with no other process.

Run one copy per server (here three on one machine), with the same cluster file:

    python examples/embedded_app.py --config cluster.toml --node a --sink /tmp/reminders.log
    python examples/embedded_app.py --config cluster.toml --node b --sink /tmp/reminders.log
    python examples/embedded_app.py --config cluster.toml --node c --sink /tmp/reminders.log

Every copy registers the same jobs. The cluster elects a leader, and every fire of
``send-reminders`` runs exactly once, in one of the copies, whichever of them is alive
(kill -9 the leader's copy and the others carry on). Each run appends one JSON line to the
sink: job, scheduled_at, run_id, fence, node. The cluster test
``tests/cluster/test_embedded.py`` runs exactly this file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
from pathlib import Path

from raftcron.embed import Cluster, RunContext


def build(
    config: str, node: str, sink: Path, schedule: str, lease: str, work: float = 0.0
) -> Cluster:
    """The application's cluster and its jobs (an app factory: easy to test)."""
    cluster = Cluster.from_config(config, node=node)

    @cluster.job(schedule, name="send-reminders", timeout="1m", overlap="skip", lease=lease)
    async def send_reminders(run: RunContext) -> str:
        # ... query due reminders, send them ...
        record = {
            "job": run.job,
            "scheduled_at": run.scheduled_at.isoformat(),
            "run_id": run.run_id,
            "fence": run.fence,
            "node": run.node,
        }
        # Check the lease right before the side effect (a fenced resource would take
        # run.fence instead and refuse anything older than the newest fence it saw).
        if not run.still_valid():
            raise RuntimeError("lease lost before writing")
        fd = os.open(sink, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(record) + "\n").encode())  # one write: one whole line
        finally:
            os.close(fd)
        await asyncio.sleep(work)  # the rest of the work (the cluster test kills it here)
        return f"recorded {run.run_id} (fence {run.fence})"

    @cluster.job("0 3 * * *", name="nightly-cleanup", timeout="10m")
    def nightly_cleanup(run: RunContext) -> None:
        # A sync job runs in a thread of its own; it cannot be killed, so it checks.
        for _batch in range(3):
            if not run.still_valid():
                return
            run.log("cleaned one batch")

    return cluster


def main() -> None:
    p = argparse.ArgumentParser(description="A Python service with raftcron embedded.")
    p.add_argument("--config", required=True, help="the cluster TOML file")
    p.add_argument("--node", required=True, help="this copy's node name in the file")
    p.add_argument("--sink", required=True, type=Path, help="file the job appends to")
    p.add_argument("--schedule", default="* * * * * *", help="default: every second")
    p.add_argument("--lease", default="5s", help="the job's lease (default 5s)")
    p.add_argument("--work", type=float, default=0.0, help="seconds each run takes after writing")
    args = p.parse_args()
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s [{args.node}] %(name)s: %(message)s",
    )
    build(args.config, args.node, args.sink, args.schedule, args.lease, args.work).run_forever()


if __name__ == "__main__":
    main()
