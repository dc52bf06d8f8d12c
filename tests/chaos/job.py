"""The chaos workload's job: report to the sink, hold, write through the fence, end.

Run as ``python -S job.py SOCKET SECONDS`` (``-S``: no site import, the job starts in a few
milliseconds). Standard library only. Exit 0 when the fenced write was accepted, 3 when the
sink rejected it as stale, 2 when the sink cannot be reached.
"""

import json
import os
import socket
import sys
import time


def main() -> int:
    path, hold = sys.argv[1], float(sys.argv[2])
    env = os.environ
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
    except OSError:
        return 2
    f = s.makefile("rwb")

    def call(msg: dict[str, object]) -> dict[str, object]:
        f.write(json.dumps(msg).encode() + b"\n")
        f.flush()
        reply: dict[str, object] = json.loads(f.readline())
        return reply

    fence = int(env["RAFTCRON_FENCE"])
    call(
        {
            "op": "begin",
            "job": env["RAFTCRON_JOB"],
            "scheduled_at": env["RAFTCRON_SCHEDULED_AT"],
            "run_id": env["RAFTCRON_RUN_ID"],
            "fence": fence,
            "node": env["RAFTCRON_NODE"],
            "attempt": env.get("RAFTCRON_ATTEMPT", "0"),
        }
    )
    time.sleep(hold)
    accepted = call({"op": "write", "fence": fence})["accepted"]
    call({"op": "end"})
    return 0 if accepted else 3


if __name__ == "__main__":
    sys.exit(main())
