"""The per-run watchdog: a small process that owns one job process and its deadline.

Why a separate process: the lease deadline must be enforced even when the executor is
frozen (SIGSTOP), dead (kill -9) or cut off from the cluster. The watchdog runs in its own
session, and the job in its own process group, so signals aimed at the agent's process
group reach neither.

Protocol (newline-delimited JSON):

* stdin, first line:
  ``{"argv", "env", "cwd", "out", "deadline", "timeout", "grace", "lease_grace"}``;
  ``deadline`` is an absolute ``time.monotonic()`` value (CLOCK_MONOTONIC is system-wide
  on Linux, so the agent and the watchdog share it).
* stdin, later lines: ``{"deadline": t}`` extends the lease deadline (never shortens it
  below what was granted); ``{"kill": "reason"}`` stops the job now (SIGTERM, then SIGKILL
  after ``grace``; with ``"hard": true`` SIGKILL at once, even while a stop for another
  reason is in its grace). EOF (the agent died) keeps the last deadline in force.
* stdout: ``{"event": "started", "pid": n}``, then exactly one
  ``{"event": "exit", "exit_code", "outcome", "detail"}`` with outcome one of
  ``exited``, ``timeout``, ``lease_lost``, ``killed``, ``spawn_failed``.

Stopping means SIGTERM to the job's process group, then SIGKILL after ``grace`` seconds;
for the lease, SIGTERM ``lease_grace`` before the deadline and SIGKILL at it at the latest.
This module imports only the standard library: it starts once per run.
"""

from __future__ import annotations

import contextlib
import json
import os
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
    try:
        with open(spec["out"], "ab") as out:
            child = subprocess.Popen(
                spec["argv"],
                env=spec["env"],
                cwd=spec.get("cwd") or None,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    except OSError as exc:
        _emit({"event": "exit", "exit_code": None, "outcome": "spawn_failed", "detail": str(exc)})
        return 0
    _emit({"event": "started", "pid": child.pid})
    pgid = child.pid

    sel = selectors.DefaultSelector()
    os.set_blocking(stdin, False)
    sel.register(stdin, selectors.EVENT_READ, "stdin")
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
