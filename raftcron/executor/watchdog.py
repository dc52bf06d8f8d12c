"""The per-run watchdog: a small process that owns one job process, its deadline and its
result, and outlives the agent that started it.

Why a separate process: the lease deadline must be enforced even when the executor is
frozen (SIGSTOP), dead (kill -9), restarting, or cut off from the cluster; and the job's
outcome must survive the agent's restart so that the restarted agent records it. The
watchdog runs in its own session, and the job in its own process group, so signals aimed
at the agent's process group reach neither.

What it guarantees:

* A held watchdog (``hold`` in its spec, protocol version 2) comes up, listens and
  then waits for a go from the agent on its stdin before it starts the job: the agent
  starts it while the run's fenced ``Start`` commits and sends the go only once it has.
  EOF on stdin or a cancel before the go, or no go by the ``hold`` time, and the job never
  starts: the result says ``not_started``. Nothing else starts a held job (a hello never
  does).
* Otherwise the job starts as soon as the spec is read, if ``deadline - lease_grace`` is still
  ahead. If it is not (on a loaded machine a watchdog can come up after the agent's
  renewals moved the deadline on), the watchdog waits up to ``attach_wait`` seconds for
  an agent's hello carrying the current deadline, starts the job only if that one is
  ahead, and otherwise gives up without starting anything. A stop request that arrives
  before the start means the job never starts.
* The job is stopped at the lease deadline whether or not an agent is attached: SIGTERM
  ``lease_grace`` before it, SIGKILL at it at the latest. An agent that goes away (its
  connection closes) changes nothing: the last deadline stays in force.
* When the job has ended, its result is written to ``result.json`` in the run directory
  (temp file, fsync, rename, directory fsync) BEFORE any agent is told, and only then does
  the watchdog tell its attached agents, close its socket and exit. A result is therefore
  either on disk or not yet decided; an agent that finds neither the socket nor the result
  knows the watchdog died without one (killed).
* It never deletes the run directory: the agent does, once the outcome is recorded.

The run directory (created by the agent, mode 0700) holds ``wd.sock`` (this watchdog's
listening Unix socket, while it lives), ``output.log`` (the job's stdout and stderr, 0600)
and ``result.json`` (0600).

Output: the job's stdout and stderr are one pipe that the watchdog reads and appends to
``output.log``. The file never grows past ``out_max`` bytes: when a write would take it
past, the file is cut to its last ``out_keep`` bytes (what the ledger keeps) first, so a
job printing a gigabyte costs ``out_max`` of disk, not a gigabyte. What is in the pipe
when the job exits is read; a process the job left behind that writes later gets EPIPE.

Protocol, newline-delimited JSON:

* stdin, one line (the spawn spec): ``{"version", "run_dir", "run", "fence", "job",
  "node", "argv", "env", "cwd", "deadline", "timeout", "grace", "lease_grace",
  "attach_wait"}``.
  ``deadline`` is an absolute ``time.monotonic()`` value (CLOCK_MONOTONIC is system-wide on
  Linux, so the agent and the watchdog share it). Optional keys say how the job's process
  starts: ``uid``, ``gid``, ``groups`` (the account to switch to; the watchdog is then
  root), ``umask`` and ``nofile_soft`` (what the agent started with, before it set its own
  umask to 077 and raised its open-files limit), ``limits`` (``{"nofile", "memory",
  "cpu"}``: RLIMIT_NOFILE, RLIMIT_AS, RLIMIT_CPU), ``out_max`` and ``out_keep`` (the
  output file's bound, below), ``stdin`` (text the job reads on its standard input, from an
  in-memory file; without it the job's stdin is /dev/null), ``trace`` (true: the result
  carries ``trace``, the ``time.time()`` of each start step). Without ``hold`` nothing
  else is read from stdin.
* ``hold`` (version 2): a ``time.monotonic()`` value; the job waits for one more line on
  stdin, ``{"go": true, "deadline"}`` (the lease deadline, which replaces the spec's) or
  ``{"cancel": "reason"}``. The agent gives a held spec ``deadline`` 0, so a watchdog of
  version 1, which ignores ``hold``, starts nothing either until a hello brings a deadline.
* stdout, one line: ``{"event": "listening", "pid", "version"}`` once the socket accepts
  connections, or ``{"event": "error", "detail"}`` (nothing was started); then closed (a
  held watchdog keeps stdin and stdout until the go, the cancel or the end of the hold, so
  the agent sees EOF on stdout when a dismissed one has exited).
* The socket: an agent connects and sends a hello first:
  ``{"hello": MAX, "min": MIN, "run"?, "fence"?, "deadline"?, "kill"?, "hard"?}`` where
  MIN..MAX are the protocol versions the agent speaks. The watchdog answers with the
  highest version both speak, ``{"hello": V, "pid", "job_pid", "state", "deadline", "run",
  "fence", "job"}`` (``state``: ``held`` before the go, ``waiting`` before the job
  started, ``running``, ``ended``), or ``{"error", "versions": [MIN, MAX]}`` and closes.
  Later lines from the agent: ``{"deadline": t}`` extends the lease deadline (never shortens it);
  ``{"kill": "reason"}`` stops the job now (SIGTERM, then SIGKILL after ``grace``; with
  ``"hard": true`` SIGKILL at once, even while a stop for another reason is in its grace).
  To every attached agent, once: ``{"event": "exit", "exit_code", "outcome", "detail",
  ...}`` with outcome one of ``exited``, ``timeout``, ``lease_lost``, ``killed``,
  ``spawn_failed``, ``not_started`` (a held watchdog without a go); the same object is
  ``result.json``.
* The first attach and a re-attach after the agent restarted are the same hello; several
  agents may be attached at once (an old connection is simply never used again).

Versions: every version keeps version 1's messages (``deadline``, ``kill``, the exit
event) or is spoken by agents that also speak the older one, so an upgraded agent
re-attaches to watchdogs started by the previous version. Version 2 adds the held start
(``hold``, the go on stdin, the ``held`` state and the ``not_started`` outcome); its
socket messages are version 1's.

This module imports only the standard library: it starts once per run (forked by the
fork server, spawner.py, or as ``python -I -S watchdog.py``). The agent imports its
constants and file helpers, so both sides share one definition of the channel.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any, Final

PROTOCOL: Final = 2  # the newest version of the agent-watchdog channel this file speaks
MIN_PROTOCOL: Final = 1  # the oldest one it still speaks
SOCKET_NAME: Final = "wd.sock"
OUTPUT_NAME: Final = "output.log"
RESULT_NAME: Final = "result.json"
ATTACH_WAIT_S: Final = 30.0  # default: how long a new watchdog waits for its first hello
_SUN_PATH_MAX: Final = 100  # sockaddr_un.sun_path is 108 bytes on Linux, with its NUL


def negotiate(their_max: int, their_min: int) -> int | None:
    """The version to speak with a peer that speaks ``their_min..their_max``, if any."""
    v = min(PROTOCOL, their_max)
    return v if v >= max(MIN_PROTOCOL, their_min) else None


@contextlib.contextmanager
def socket_path(run_dir: str) -> Iterator[str]:
    """A path to bind or connect to the run's socket; a long data dir (over the 108 bytes
    of ``sun_path``) is reached through ``/proc/self/fd`` of an open descriptor."""
    path = os.path.join(run_dir, SOCKET_NAME)
    if len(os.fsencode(path)) < _SUN_PATH_MAX:
        yield path
        return
    fd = os.open(run_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{SOCKET_NAME}"
    finally:
        os.close(fd)


def write_result(run_dir: str, result: dict[str, Any]) -> None:
    """``result.json``, durably: temp file, fsync, rename, directory fsync."""
    tmp = os.path.join(run_dir, RESULT_NAME + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(result).encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, os.path.join(run_dir, RESULT_NAME))
    dfd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read_result(run_dir: str) -> dict[str, Any] | None:
    """The persisted result of a watchdog that has finished, if it wrote one."""
    try:
        with open(os.path.join(run_dir, RESULT_NAME), "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "outcome" in data else None


def _announce(obj: dict[str, Any], *, keep_pipes: bool = False) -> None:
    """The one line on stdout to the agent that spawned us; then stdin and stdout go
    (``keep_pipes``: a held watchdog's stay until its hold ends)."""
    with contextlib.suppress(OSError):
        os.write(1, json.dumps(obj).encode() + b"\n")
    if not keep_pipes:
        _release_pipes()


def _release_pipes() -> None:
    """Stdin and stdout become /dev/null: the agent's pipe ends see EOF."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)


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
    """The spec line, and what was read after it (a held watchdog reads on)."""
    buf = b""
    while b"\n" not in buf:
        chunk = os.read(fd, 65536)
        if not chunk:
            raise SystemExit("watchdog: no run spec on stdin")
        buf += chunk
    line, rest = buf.split(b"\n", 1)
    spec: dict[str, Any] = json.loads(line)
    return spec, rest


def _stdin_file(text: str) -> int:
    """An anonymous in-memory file holding ``text`` (UTF-8), positioned at its start: the
    job's stdin. A file, not a pipe: the job reads it at its own pace and the watchdog
    never blocks on a job that does not read."""
    fd = os.memfd_create("raftcron-stdin", os.MFD_CLOEXEC)
    try:
        view = memoryview(text.encode("utf-8", "surrogateescape"))
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return fd


def _start_job(spec: dict[str, Any], out_w: int, preexec: Any) -> subprocess.Popen[bytes]:
    """The one place the job's process is created (its output: the pipe ``out_w``; its
    input: the spec's ``stdin`` text, else /dev/null)."""
    stdin_fd = _stdin_file(spec["stdin"]) if spec.get("stdin") else None
    try:
        return subprocess.Popen(
            spec["argv"],
            env=spec["env"],
            cwd=spec.get("cwd") or None,
            stdin=subprocess.DEVNULL if stdin_fd is None else stdin_fd,
            stdout=out_w,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,
        )
    finally:
        if stdin_fd is not None:
            os.close(stdin_fd)  # the job has its own copy


class _Client:
    __slots__ = ("buf", "hello", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.hello = False  # answered our hello: gets events


class Watchdog:
    """One run: its spec, its socket, its job, its deadline."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.run_dir = str(spec["run_dir"])
        self.deadline = float(spec["deadline"])
        self.grace = float(spec.get("grace", 5.0))
        # The lease deadline is a hard limit: SIGTERM goes out lease_grace before it and
        # SIGKILL at it, so the job is dead before the leader may hand the fire to anyone.
        self.lease_grace = float(spec.get("lease_grace", 0.0))
        self.timeout = spec.get("timeout")
        # Before the first hello: wait for one this long (from now), or to the deadline.
        self.attach_by = time.monotonic() + float(spec.get("attach_wait", ATTACH_WAIT_S))
        self.timeout_at: float | None = None
        self.sel = selectors.DefaultSelector()
        self.listener: socket.socket | None = None
        self.clients: dict[int, _Client] = {}
        self.child: subprocess.Popen[bytes] | None = None
        self.pidfd = -1
        # The job's stdout and stderr: one pipe, read into the bounded output file.
        self.out: _Output | None = None
        self.pipe_r = -1
        self.outcome = ""
        self.detail = ""
        self.kill_at: float | None = None
        self.sigkilled = False
        # The start timeline (``time.time()`` of each step), when the spec asks for it
        # (``"trace": true``); returned in the result as ``trace``.
        self.trace: dict[str, float] | None = {} if spec.get("trace") else None
        # Held (version 2): the job waits for the agent's go on stdin, until this time.
        self.hold_until: float | None = None if spec.get("hold") is None else float(spec["hold"])
        self.stdin_buf = b""

    def mark(self, step: str, at: float | None = None) -> None:
        if self.trace is not None:
            self.trace[step] = time.time() if at is None else at

    # -- the socket

    def listen(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            with socket_path(self.run_dir) as path:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)  # a stale one: nobody listens there any more
                sock.bind(path)
                os.chmod(path, 0o600)  # like every file in the data dir (its dir is 0700)
            sock.listen(16)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.listener = sock
        self.sel.register(sock, selectors.EVENT_READ, "listen")

    def hold(self, rest: bytes) -> None:
        """Wait for the go on stdin (``rest``: what was read after the spec line)."""
        self.stdin_buf = rest
        os.set_blocking(0, False)
        self.sel.register(0, selectors.EVENT_READ, "stdin")
        self._handle_stdin()

    def _read_stdin(self) -> None:
        while self.hold_until is not None:
            try:
                chunk = os.read(0, 4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                chunk = b""
            if not chunk:
                self._handle_stdin()
                self._unhold("not_started", "the agent went away before the go")
                return
            self.stdin_buf += chunk
            self._handle_stdin()

    def _handle_stdin(self) -> None:
        while b"\n" in self.stdin_buf and self.hold_until is not None:
            line, self.stdin_buf = self.stdin_buf.split(b"\n", 1)
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if not isinstance(msg, dict):
                continue
            if msg.get("go"):
                self.mark("go")
                self.deadline = float(msg["deadline"])
                self._unhold("", "")
                self._start(give_up=False)
            elif "cancel" in msg:
                self._unhold("not_started", f"cancelled before the go: {msg['cancel']}")

    def _unhold(self, outcome: str, detail: str) -> None:
        """The hold is over: a go (``outcome`` empty), or the job never starts."""
        if self.hold_until is None:
            return
        self.hold_until = None
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(0)
        _release_pipes()
        if outcome and not self.outcome:
            self.outcome, self.detail = outcome, detail

    def _accept(self) -> None:
        assert self.listener is not None
        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            conn.setblocking(False)
            client = _Client(conn)
            self.clients[conn.fileno()] = client
            self.sel.register(conn, selectors.EVENT_READ, "client")
            self._read(client)  # a hello may be there already (we were slow or frozen)

    def _drop(self, client: _Client) -> None:
        """An agent went away: nothing changes for the job (the deadline stays)."""
        self.clients.pop(client.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(client.sock)
        client.sock.close()

    def _send(self, client: _Client, obj: dict[str, Any]) -> bool:
        try:
            client.sock.sendall(json.dumps(obj).encode() + b"\n")
        except (BlockingIOError, OSError):
            self._drop(client)  # gone, or not reading at all: it can attach again
            return False
        return True

    def _read(self, client: _Client) -> None:
        while True:
            try:
                chunk = client.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                chunk = b""
            if not chunk:
                self._handle_lines(client)
                self._drop(client)
                return
            client.buf += chunk
        self._handle_lines(client)

    def _handle_lines(self, client: _Client) -> None:
        while b"\n" in client.buf and client.sock.fileno() in self.clients:
            line, client.buf = client.buf.split(b"\n", 1)
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict):
                self._handle(client, msg)

    # -- messages

    def _handle(self, client: _Client, msg: dict[str, Any]) -> None:
        if "hello" in msg:
            self._hello(client, msg)
        elif client.hello:  # a hello comes first
            self._apply(msg)

    def _hello(self, client: _Client, msg: dict[str, Any]) -> None:
        spec = self.spec
        try:
            version = negotiate(int(msg["hello"]), int(msg.get("min", msg["hello"])))
            same_run = msg.get("run", spec["run"]) == spec["run"] and int(
                msg.get("fence", spec["fence"])
            ) == int(spec["fence"])
        except (TypeError, ValueError):
            version, same_run = None, True
        if version is None or not same_run:
            why = (
                f"no common protocol version (this watchdog speaks {MIN_PROTOCOL}-{PROTOCOL})"
                if version is None
                else f"this watchdog runs {spec['run']} with fence {spec['fence']}"
            )
            self._send(client, {"error": why, "versions": [MIN_PROTOCOL, PROTOCOL]})
            self._drop(client)
            return
        client.hello = True
        self._apply(msg)
        if self.child is None and not self.outcome:  # waiting for a current deadline
            self._start(give_up=True)
        self._send(
            client,
            {
                "hello": version,
                "pid": os.getpid(),
                "job_pid": None if self.child is None else self.child.pid,
                "state": self._state(),
                "deadline": self.deadline,
                "run": spec["run"],
                "fence": spec["fence"],
                "job": spec.get("job", ""),
            },
        )

    def _apply(self, msg: dict[str, Any]) -> None:
        if msg.get("deadline") is not None:
            self.deadline = max(self.deadline, float(msg["deadline"]))
        if "kill" in msg and not self.outcome:
            self.outcome, self.detail = "killed", str(msg["kill"])
            self._unhold("", "")  # held: it never starts
            if self.child is not None and not msg.get("hard"):
                _killpg(self.child.pid, signal.SIGTERM)
                self.kill_at = time.monotonic() + self.grace
        if "kill" in msg and msg.get("hard") and self.child is not None and not self.sigkilled:
            _killpg(self.child.pid, signal.SIGKILL)
            self.sigkilled = True

    def _state(self) -> str:
        if self.hold_until is not None and not self.outcome:
            return "held"
        if self.child is None:
            return "ended" if self.outcome else "waiting"
        return "running" if self.child.poll() is None else "ended"

    # -- the job

    def _start(self, *, give_up: bool) -> None:
        """Start the job if no stop request came and the deadline is ahead; if it is not,
        wait for a hello with a newer one, or (``give_up``) never start it. A held job
        starts only after the go (_handle_stdin)."""
        if self.child is not None or self.outcome or self.hold_until is not None:
            return
        if time.monotonic() >= self.deadline - self.lease_grace:
            if give_up:
                self.outcome = "lease_lost"
                self.detail = "lease deadline reached before the job started"
            return
        spec = self.spec
        pipe_r = pipe_w = -1
        try:
            preexec = _prepare(spec)
            self.out = _Output(
                os.path.join(self.run_dir, OUTPUT_NAME),
                int(spec.get("out_max", 1 << 20)),
                int(spec.get("out_keep", 65536)),
            )
            pipe_r, pipe_w = os.pipe2(os.O_CLOEXEC)
            self.mark("job_prepared")
            self.child = _start_job(spec, pipe_w, preexec)
            self.mark("popen")
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            for fd in (pipe_r, pipe_w):
                if fd >= 0:
                    os.close(fd)
            if self.out is not None:
                self.out.close()
                self.out = None
            self.outcome, self.detail = "spawn_failed", str(exc)
            return
        os.close(pipe_w)  # the job holds the write end now: EOF once it (and its children) exit
        self.pipe_r = pipe_r
        os.set_blocking(pipe_r, False)
        self.sel.register(pipe_r, selectors.EVENT_READ, "out")
        started = time.monotonic()
        if self.timeout:
            self.timeout_at = started + float(self.timeout)
        try:
            self.pidfd = os.pidfd_open(self.child.pid)
            self.sel.register(self.pidfd, selectors.EVENT_READ, "child")
        except (AttributeError, OSError):
            self.pidfd = -1

    def _ended(self) -> bool:
        if self.child is None and self.hold_until is not None:
            return False  # held: the go, a cancel or the end of the hold decides
        if self.child is None:
            return bool(self.outcome)  # never started: stopped, late, or failed to spawn
        return self.child.poll() is not None

    def _enforce(self, now: float) -> None:
        """Deadline, timeout and the SIGKILL after a grace, for a started job."""
        child = self.child
        if self.hold_until is not None:
            if now >= self.hold_until:
                self._unhold("not_started", "no go from the agent by the end of its hold")
            return
        if child is None:
            if not self.outcome and now >= max(self.attach_by, self.deadline - self.lease_grace):
                self.outcome = "lease_lost"
                self.detail = (
                    "the lease deadline had passed when the watchdog came up and no agent "
                    "brought a later one; the job never started"
                )
            return
        pgid = child.pid
        if not self.outcome:
            if now >= self.deadline - self.lease_grace:
                self.outcome, self.detail = "lease_lost", "lease deadline reached without a renewal"
            elif self.timeout_at is not None and now >= self.timeout_at:
                self.outcome, self.detail = "timeout", f"timeout of {self.timeout}s reached"
            if self.outcome:
                _killpg(pgid, signal.SIGTERM)
                self.kill_at = now + self.grace
                if self.outcome == "lease_lost":
                    self.kill_at = min(self.kill_at, self.deadline)
        elif self.kill_at is not None and now >= self.kill_at and not self.sigkilled:
            _killpg(pgid, signal.SIGKILL)
            self.sigkilled = True

    def _wait_s(self, now: float) -> float:
        if self.hold_until is not None:
            return max(0.0, min(0.5, self.hold_until - now))
        if self.child is None and not self.outcome:
            return max(0.0, min(0.5, max(self.attach_by, self.deadline - self.lease_grace) - now))
        waits = [0.5, self.deadline - self.lease_grace - now]
        if self.timeout_at is not None:
            waits.append(self.timeout_at - now)
        if self.kill_at is not None and not self.sigkilled:
            waits.append(self.kill_at - now)
        return max(0.0, min(waits))

    # -- the life of the run

    def serve(self) -> dict[str, Any]:
        """Until the job has ended (or will never start); then persist and report."""
        self._start(give_up=False)
        while True:
            now = time.monotonic()
            # Messages first: a renewal that arrived while this process was starting up
            # (or frozen) must move the deadline before the deadline is checked.
            for key, _ in self.sel.select(self._wait_s(now)):
                if key.data == "listen":
                    self._accept()
                elif key.data == "client":
                    client = self.clients.get(key.fd)
                    if client is not None:
                        self._read(client)
                elif key.data == "out":
                    self._read_output(READS_PER_WAKE)
                elif key.data == "stdin":
                    self._read_stdin()
            if self._ended():
                break
            self._enforce(time.monotonic())
            if self._ended():
                break
        return self._finish()

    def _read_output(self, reads: int) -> str:
        assert self.out is not None
        got = _drain(self.pipe_r, self.out, reads)
        if got == "eof":  # nothing of the job's holds the pipe any more
            self.sel.unregister(self.pipe_r)
            os.close(self.pipe_r)
            self.pipe_r = -1
        return got

    def _finish(self) -> dict[str, Any]:
        child = self.child
        if child is not None:
            child.wait()
            if self.outcome:
                _killpg(child.pid, signal.SIGKILL)  # stragglers of a stopped run must not live on
        # What the job wrote before it exited is in the pipe (bounded: a process it left
        # behind may write on; it gets EPIPE once the pipe is closed). The output file is
        # complete before the result says the job has ended.
        for _ in range(16):
            if self.pipe_r < 0 or self._read_output(READS_PER_WAKE) != "more":
                break
        if self.pipe_r >= 0:
            self.sel.unregister(self.pipe_r)
            os.close(self.pipe_r)
            self.pipe_r = -1
        if self.out is not None:
            self.out.close()
            self.out = None
        spec = self.spec
        result = {
            "version": PROTOCOL,
            "run": spec["run"],
            "fence": spec["fence"],
            "job": spec.get("job", ""),
            "node": spec.get("node", ""),
            "exit_code": None if child is None else child.returncode,
            "outcome": self.outcome or "exited",
            "detail": self.detail,
            "job_pid": None if child is None else child.pid,
            "finished_wall_ms": time.time_ns() // 1_000_000,
        }
        if self.trace is not None:
            result["trace"] = self.trace
        # On disk before anyone is told: an agent that restarts from here on finds it.
        with contextlib.suppress(OSError):
            write_result(self.run_dir, result)
        for client in list(self.clients.values()):
            if client.hello:
                self._send(client, {"event": "exit", **result})
        self.close()
        return result

    def close(self) -> None:
        if self.listener is not None:
            with contextlib.suppress(OSError), socket_path(self.run_dir) as path:
                os.unlink(path)
            self.listener.close()
            self.listener = None
        for client in list(self.clients.values()):
            self._drop(client)
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
        self.sel.close()


def main() -> int:
    began = time.time()
    spec, rest = _read_spec(sys.stdin.fileno())
    wd = Watchdog(spec)
    wd.mark("main", began)
    wd.mark("spec_read")
    try:
        wd.listen()
    except OSError as exc:
        _announce({"event": "error", "detail": f"cannot listen in {wd.run_dir}: {exc}"})
        return 1
    wd.mark("listening")
    held = wd.hold_until is not None
    _announce({"event": "listening", "pid": os.getpid(), "version": PROTOCOL}, keep_pipes=held)
    if held:
        wd.hold(rest)
    wd.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
