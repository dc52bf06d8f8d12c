"""Process helpers for the benchmarks: /proc readers, a memory guard, a PID registry.

Everything a benchmark starts is registered here by PID and ended by PID (SIGTERM, then
SIGKILL) when the benchmark finishes or fails: never by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def log(msg: str) -> None:
    """Progress line on stderr (results go to the JSON and the Markdown)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _stat(pid: int) -> tuple[int, float, float] | None:
    """``(ppid, own user+system, reaped children's user+system)`` of ``pid``."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); ppid=4, utime=14, stime=15, cutime=16, cstime=17
    own = (int(fields[11]) + int(fields[12])) / CLK_TCK
    children = (int(fields[13]) + int(fields[14])) / CLK_TCK
    return int(fields[1]), own, children


def cpu_seconds(pid: int) -> tuple[float, float]:
    """``(own user+system, descendants' user+system)`` CPU seconds of ``pid``.

    Descendants: the reaped ones (the kernel's cutime/cstime) plus the live ones with
    what they reaped in turn. The live part matters for a long-lived child that reaps
    others: the watchdog fork server (raftcron/executor/spawner.py) reaps the watchdogs,
    whose CPU reaches the agent's cutime only when the server itself exits."""
    top = _stat(pid)
    if top is None:
        return 0.0, 0.0
    kids: dict[int, list[tuple[int, float]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                kids.setdefault(st[0], []).append((int(entry), st[1] + st[2]))
    live = 0.0
    frontier = [pid]
    while frontier:
        nxt = []
        for p in frontier:
            for child, total in kids.get(p, []):
                live += total
                nxt.append(child)
        frontier = nxt
    return top[1], top[2] + live


def mem_available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def dir_bytes(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        with contextlib.suppress(OSError):
            if p.is_file():
                total += p.stat().st_size
    return total


class Registry:
    """PIDs this benchmark started; :meth:`stop_all` ends each by PID."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stoppers: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def add(self, proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        with self._lock:
            self.procs.append(proc)
        return proc

    def on_stop(self, fn: Callable[[], None]) -> None:
        with self._lock:
            self.stoppers.append(fn)

    def stop_all(self) -> None:
        with self._lock:
            stoppers, self.stoppers = list(self.stoppers), []
            procs, self.procs = list(self.procs), []
        for fn in reversed(stoppers):
            with contextlib.suppress(Exception):
                fn()
        for p in procs:
            stop_pid(p)


def stop_pid(p: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if p.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(p.pid, signal.SIGCONT)
        p.terminate()
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            p.kill()
        p.wait(5)


class MemoryGuard:
    """Watches MemAvailable; below ``floor`` it calls ``on_low`` once (which ends what the
    benchmark started) so a runaway workload cannot take the machine down."""

    def __init__(self, floor_bytes: int, on_low: Callable[[str], None]) -> None:
        self.floor = floor_bytes
        self.on_low = on_low
        self.tripped: str | None = None
        self.min_seen = mem_available_bytes()
        self.load: list[float] = []  # 1-minute load average, sampled every 5 s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="memory-guard", daemon=True)

    def __enter__(self) -> MemoryGuard:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)

    def reset(self, recover_bytes: int, timeout: float = 180.0) -> None:
        """After a trip: wait (bounded) until MemAvailable is back above ``recover_bytes``
        (orphaned job processes finish), then arm the guard again."""
        deadline = time.monotonic() + timeout
        while mem_available_bytes() < recover_bytes and time.monotonic() < deadline:
            time.sleep(1.0)
        self.tripped = None

    def _watch(self) -> None:
        ticks = 0
        while not self._stop.wait(0.2):
            ticks += 1
            if ticks % 25 == 0:
                with contextlib.suppress(OSError, ValueError):
                    self.load.append(float(Path("/proc/loadavg").read_text().split()[0]))
            avail = mem_available_bytes()
            self.min_seen = min(self.min_seen, avail)
            if avail < self.floor and self.tripped is None:
                self.tripped = (
                    f"MemAvailable fell to {avail / 2**30:.1f} GiB "
                    f"(floor {self.floor / 2**30:.1f} GiB): stopped the workload"
                )
                log(self.tripped)
                self.on_low(self.tripped)
