"""The sink: an independent record of what actually ran, and a fenced resource.

It runs as its own process, outside every fault (no network: a Unix socket, never
signalled), and stamps every event with its own clocks: ``t`` (CLOCK_MONOTONIC seconds) and
``wall_ms`` (the real wall clock; chaos clock faults move only the nodes' clocks).

Protocol: one JSON object per line on a Unix stream socket.

* A job execution (``tests/chaos/job.py``) opens one connection for its whole life and sends
  ``{"op": "begin", "job", "scheduled_at", "run_id", "fence", "node", "attempt"}`` (the
  values of its RAFTCRON_* environment), later ``{"op": "write", "fence": N}``, answered
  ``{"accepted": true|false}``, and finally ``{"op": "end"}``. A connection that closes
  without ``end`` is recorded as ``clean: false`` (the process died or was killed) at the
  moment the sink saw EOF.
* The fenced resource: a write is accepted only if its fence is higher than every fence
  accepted before for that job; otherwise it is rejected and counted.
* The chaos runner sends ``{"op": "event", "event": {...}}`` (nemesis start/end, API
  attempts and acknowledgements) and ``{"op": "stats"}``; both are answered. ``stats`` also
  lists the executions that have begun but not yet written (``open``: job, node, fence and
  age in seconds) and the highest accepted fence per job, so a nemesis can aim at a node
  that holds a fenced write in flight.

Everything is appended to the output file as ``sink.jsonl`` events (see checker.py), flushed
per event, so a reader sees a prefix of the history at any moment.

    python -m tests.chaos.sink SOCKET OUT_JSONL
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import IO, Any, NoReturn


def scheduled_ms(text: str) -> int:
    """RFC 3339 (``2026-11-27T21:30:05Z``, maybe with fractions) to ms since the epoch."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return round(dt.timestamp() * 1000)


class Sink:
    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.next_x = 1
        self.highest: dict[str, int] = {}
        self.begins = 0
        self.stale = 0
        self.accepted = 0
        self.open: dict[int, tuple[str, str, int, float]] = {}  # x -> job, node, fence, t

    def record(self, ev: dict[str, Any]) -> dict[str, Any]:
        ev["t"] = time.monotonic()
        ev["wall_ms"] = time.time_ns() // 1_000_000
        self.out.write(json.dumps(ev, separators=(",", ":")) + "\n")
        self.out.flush()
        return ev

    def write(self, x: int, job: str, fence: int) -> bool:
        self.open.pop(x, None)
        ok = fence > self.highest.get(job, -1)
        if ok:
            self.highest[job] = fence
            self.accepted += 1
        else:
            self.stale += 1
        self.record({"ev": "write", "x": x, "job": job, "fence": fence, "accepted": ok})
        return ok

    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "begins": self.begins,
            "stale": self.stale,
            "accepted": self.accepted,
            "highest": self.highest,
            "open": [
                {"job": job, "node": node, "fence": fence, "age": now - t}
                for job, node, fence, t in self.open.values()
            ],
        }

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        x: int | None = None
        job = ""
        ended = False
        try:
            while line := await reader.readline():
                msg = json.loads(line)
                op = msg.pop("op")
                reply: dict[str, Any] | None = None
                if op == "begin":
                    x, self.next_x = self.next_x, self.next_x + 1
                    job = str(msg["job"])
                    self.begins += 1
                    ev = self.record(
                        {
                            "ev": "begin",
                            "x": x,
                            "job": job,
                            "scheduled_at_ms": scheduled_ms(msg["scheduled_at"]),
                            "run_id": msg["run_id"],
                            "fence": int(msg["fence"]),
                            "node": msg["node"],
                            "attempt": int(msg.get("attempt") or 0),
                        }
                    )
                    self.open[x] = (job, ev["node"], ev["fence"], ev["t"])
                    reply = {"x": x}
                elif op == "write" and x is not None:
                    reply = {"accepted": self.write(x, job, int(msg["fence"]))}
                elif op == "end" and x is not None:
                    ended = True
                    self.record({"ev": "end", "x": x, "clean": True})
                    reply = {}
                elif op == "event":
                    self.record(dict(msg["event"]))
                    reply = {}
                elif op == "stats":
                    reply = self.stats()
                else:
                    reply = {"error": f"unexpected {op!r}"}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, json.JSONDecodeError, KeyError, ValueError):
            pass
        finally:
            if x is not None:
                self.open.pop(x, None)
            if x is not None and not ended and not self.out.closed:
                self.record({"ev": "end", "x": x, "clean": False})
            writer.close()


async def amain(socket_path: str, out: IO[str]) -> NoReturn:
    sink = Sink(out)
    server = await asyncio.start_unix_server(sink.serve, path=socket_path)
    os.chmod(socket_path, 0o777)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    Path(socket_path + ".ready").write_text(str(os.getpid()))  # noqa: ASYNC240 (once)
    async with server:
        await stop.wait()
    # Executions still connected get no end event: the history simply stops here.
    out.flush()
    os._exit(0)


def main() -> None:
    socket_path, out_path = sys.argv[1], sys.argv[2]
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    with open(out_path, "a", encoding="utf-8") as out:
        asyncio.run(amain(socket_path, out))


if __name__ == "__main__":
    main()
