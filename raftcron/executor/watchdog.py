"""The per-run watchdog: a small process that owns one job process and its deadline.

Why a separate process: the lease deadline must be enforced even when the executor is
frozen (SIGSTOP), dead (kill -9) or cut off from the cluster. The watchdog runs in its own
session, and the job in its own process group, so signals aimed at the agent's process
group reach neither.

Protocol (newline-delimited JSON):

* stdin, first line:
  ``{"argv", "env", "cwd", "out", "deadline", "timeout", "grace", "lease_grace"}``;
  ``deadline`` is an absolute ``time.monotonic()`` value (CLOCK_MONOTONIC is system-wide
  on Linux, so the agent and the watchdog share it). Optional keys say how the job's
  process starts: ``uid``, ``gid``, ``groups`` (the account to switch to; the watchdog is
  then root), ``umask`` and ``nofile_soft`` (what the agent started with, before it set
  its own umask to 077 and raised its open-files limit), ``limits`` (``{"nofile",
  "memory", "cpu"}``: RLIMIT_NOFILE, RLIMIT_AS, RLIMIT_CPU), ``out_max`` and ``out_keep``
  (the output file's bound, below).
* stdin, later lines: ``{"deadline": t}`` extends the lease deadline (never shortens it
  below what was granted); ``{"kill": "reason"}`` stops the job now (SIGTERM, then SIGKILL
  after ``grace``; with ``"hard": true`` SIGKILL at once, even while a stop for another
  reason is in its grace). EOF (the agent died) keeps the last deadline in force.
* stdout: ``{"event": "started", "pid": n}``, then exactly one
  ``{"event": "exit", "exit_code", "outcome", "detail"}`` with outcome one of
  ``exited``, ``timeout``, ``lease_lost``, ``killed``, ``spawn_failed``.

Stopping means SIGTERM to the job's process group, then SIGKILL after ``grace`` seconds;
for the lease, SIGTERM ``lease_grace`` before the deadline and SIGKILL at it at the latest.

Output: the job's stdout and stderr are one pipe that the watchdog reads and appends to
``out`` (created 0600). The file never grows past ``out_max`` bytes: when a write would
take it past, the file is cut to its last ``out_keep`` bytes (what the ledger keeps) first,
so a job printing a gigabyte costs ``out_max`` of disk, not a gigabyte. What is in the pipe
when the job exits is read; a process the job left behind that writes later gets EPIPE.

This module imports only the standard library: it starts once per run.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import selectors
import signal
import subprocess
import sys
import time
from typing import Any


def _emit(obj: dict[str, Any]) -> None:
    """Report to the executor; if it is gone (killed, power cut) there is no one to tell."""
    try:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # Keep interpreter shutdown from flushing into the broken pipe again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


# RLIMIT_CPU: SIGXCPU at the job's ``cpu`` seconds, SIGKILL this many CPU seconds later.
CPU_GRACE_S = 5
READS_PER_WAKE = 16  # pipe reads (64 KiB each) between two looks at the deadline


class _Output:
    """The job's output file, bounded: at most ``cap`` bytes, cut to its last ``keep``."""

    def __init__(self, path: str, cap: int, keep: int) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.size = os.fstat(self.fd).st_size
        self.keep = keep
        self.cap = max(cap, keep)

    def write(self, data: bytes) -> None:
        try:
            if self.size + len(data) > self.cap:
                tail = data[-self.keep :]
                need = min(self.keep - len(tail), self.size)
                if need > 0:
                    tail = os.pread(self.fd, need, self.size - need) + tail
                os.ftruncate(self.fd, 0)
                self.size = 0
                data = tail
            view = memoryview(data)
            while view:
                n = os.write(self.fd, view)
                self.size += n
                view = view[n:]
        except OSError:  # disk full: this chunk is lost, the job runs on
            self.size = os.fstat(self.fd).st_size

    def close(self) -> None:
        os.close(self.fd)


def _drain(fd: int, out: _Output, reads: int) -> str:
    """Up to ``reads`` reads of the non-blocking pipe ``fd`` into ``out``: "eof", "empty"
    (nothing more for now) or "more" (it may hold more)."""
    for _ in range(reads):
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return "empty"
        if not chunk:
            return "eof"
        out.write(chunk)
    return "more"


def _nr_open() -> int:
    try:
        with open("/proc/sys/fs/nr_open", encoding="ascii") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


def _prepare(spec: dict[str, Any]) -> Any:
    """Set what the job inherits from this process (umask, soft open-files limit), and
    return the ``preexec_fn`` that sets its limits and account, or None if it needs none.
    Everything is computed here; the child only makes the system calls."""
    if spec.get("umask") is not None:
        os.umask(int(spec["umask"]))
    nofile_soft = spec.get("nofile_soft")
    limits: dict[str, int] = spec.get("limits") or {}
    if nofile_soft is not None and "nofile" not in limits:  # the watchdog needs a handful
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY:
            nofile_soft = min(int(nofile_soft), hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (int(nofile_soft), hard))
    root = os.geteuid() == 0
    settings: list[tuple[int, tuple[int, int]]] = []
    for key, res, extra in (
        ("nofile", resource.RLIMIT_NOFILE, 0),
        ("memory", resource.RLIMIT_AS, 0),
        ("cpu", resource.RLIMIT_CPU, CPU_GRACE_S),
    ):
        if key not in limits:
            continue
        soft = int(limits[key])
        hard = soft + extra
        if key == "nofile":
            hard = soft = min(soft, _nr_open())
        if not root:  # only root raises a hard limit
            cur = resource.getrlimit(res)[1]
            if cur != resource.RLIM_INFINITY:
                hard = min(hard, cur)
                soft = min(soft, hard)
        settings.append((res, (soft, hard)))
    uid, gid, groups = spec.get("uid"), spec.get("gid"), spec.get("groups")
    if not settings and uid is None and gid is None:
        return None

    def preexec() -> None:  # in the child, after fork: system calls only
        for res, pair in settings:
            resource.setrlimit(res, pair)
        if uid is not None:  # the output pipe is the job's: /dev/stdout opens for it
            os.fchown(1, uid, -1 if gid is None else gid)
        if groups is not None:
            os.setgroups(groups)
        if gid is not None:
            os.setregid(gid, gid)
        if uid is not None:
            os.setreuid(uid, uid)

    return preexec


def _read_spec(fd: int) -> tuple[dict[str, Any], bytes]:
    buf = b""
    while b"\n" not in buf:
        chunk = os.read(fd, 65536)
        if not chunk:
            raise SystemExit("watchdog: no run spec on stdin")
        buf += chunk
    line, rest = buf.split(b"\n", 1)
    spec: dict[str, Any] = json.loads(line)
    return spec, rest


def main() -> int:
    stdin = sys.stdin.fileno()
    spec, pending = _read_spec(stdin)
    deadline = float(spec["deadline"])
    grace = float(spec.get("grace", 5.0))
    # The lease deadline is a hard limit: SIGTERM goes out lease_grace before it and
    # SIGKILL at it, so the job is dead before the leader may hand the fire to anyone else.
    lease_grace = float(spec.get("lease_grace", 0.0))
    started = time.monotonic()
    timeout = spec.get("timeout")
    timeout_at = started + float(timeout) if timeout else None
    pipe_r = pipe_w = -1
    out: _Output | None = None
    try:
        preexec = _prepare(spec)
        out = _Output(
            spec["out"], int(spec.get("out_max", 1 << 20)), int(spec.get("out_keep", 65536))
        )
        pipe_r, pipe_w = os.pipe2(os.O_CLOEXEC)
        child = subprocess.Popen(
            spec["argv"],
            env=spec["env"],
            cwd=spec.get("cwd") or None,
            stdin=subprocess.DEVNULL,
            stdout=pipe_w,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        for fd in (pipe_r, pipe_w):
            if fd >= 0:
                os.close(fd)
        if out is not None:
            out.close()
        _emit({"event": "exit", "exit_code": None, "outcome": "spawn_failed", "detail": str(exc)})
        return 0
    os.close(pipe_w)  # the job holds the write end now: EOF once it (and its children) exit
    _emit({"event": "started", "pid": child.pid})
    pgid = child.pid

    sel = selectors.DefaultSelector()
    os.set_blocking(stdin, False)
    sel.register(stdin, selectors.EVENT_READ, "stdin")
    os.set_blocking(pipe_r, False)
    sel.register(pipe_r, selectors.EVENT_READ, "out")
    pipe_open = True
    pidfd = -1
    try:
        pidfd = os.pidfd_open(child.pid)
        sel.register(pidfd, selectors.EVENT_READ, "child")
    except (AttributeError, OSError):
        pidfd = -1

    outcome = ""
    detail = ""
    kill_at: float | None = None
    sigkilled = False
    buf = pending
    while child.poll() is None:
        # Messages first: a renewal that arrived while this process was starting up (or
        # frozen) must move the deadline before the deadline is checked.
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "deadline" in msg:
                deadline = max(deadline, float(msg["deadline"]))
            if "kill" in msg and not outcome:
                outcome, detail = "killed", str(msg["kill"])
                if not msg.get("hard"):
                    _killpg(pgid, signal.SIGTERM)
                    kill_at = time.monotonic() + grace
            if "kill" in msg and msg.get("hard") and not sigkilled:
                _killpg(pgid, signal.SIGKILL)
                sigkilled = True
        now = time.monotonic()
        if not outcome:
            if now >= deadline - lease_grace:
                outcome, detail = "lease_lost", "lease deadline reached without a renewal"
            elif timeout_at is not None and now >= timeout_at:
                outcome, detail = "timeout", f"timeout of {timeout}s reached"
            if outcome:
                _killpg(pgid, signal.SIGTERM)
                kill_at = now + grace
                if outcome == "lease_lost":
                    kill_at = min(kill_at, deadline)
        elif kill_at is not None and now >= kill_at and not sigkilled:
            _killpg(pgid, signal.SIGKILL)
            sigkilled = True
        waits = [0.5, deadline - lease_grace - now]
        if timeout_at is not None:
            waits.append(timeout_at - now)
        if kill_at is not None and not sigkilled:
            waits.append(kill_at - now)
        for key, _ in sel.select(max(0.0, min(waits))):
            if key.data == "out":
                if _drain(pipe_r, out, READS_PER_WAKE) == "eof":
                    sel.unregister(pipe_r)  # EOF: nothing of the job's holds it any more
                    pipe_open = False
                continue
            if key.data != "stdin":
                continue
            try:
                chunk = os.read(stdin, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                sel.unregister(stdin)
                continue
            buf += chunk
    if outcome:
        _killpg(pgid, signal.SIGKILL)  # stragglers of a stopped run must not live on
    # What the job wrote before it exited is in the pipe (bounded: a process it left
    # behind may write on; it gets EPIPE once the pipe is closed).
    for _ in range(16):
        if not pipe_open or _drain(pipe_r, out, READS_PER_WAKE) != "more":
            break
    os.close(pipe_r)
    out.close()
    rc = child.returncode
    _emit(
        {
            "event": "exit",
            "exit_code": rc,
            "outcome": outcome or "exited",
            "detail": detail,
        }
    )
    if pidfd >= 0:
        os.close(pidfd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
