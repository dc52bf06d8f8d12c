"""The agent's side of the watchdog fork server (raftcron/executor/spawner.py).

:class:`WatchdogSpawner` starts the server once, on first use, and asks it for one
watchdog per run: it makes the two pipes, passes the watchdog's ends over the socketpair
(SCM_RIGHTS) and waits for the reply naming the forked pid. Nothing is written to the
watchdog before that reply, so a request that fails (server dead, hung, refusing) cannot
have started a job: :meth:`WatchdogSpawner.spawn` returns None, the caller spawns that
run's watchdog itself as before, and the server is replaced (killed by pid, a new one
started at most once per ``retry_s``).

The descriptors are kept as plain integers, not socket or subprocess objects, so an
executor that is dropped without :meth:`WatchdogSpawner.close` leaves nothing that warns
at garbage collection; a finalizer closes the socket, and the server exits at EOF.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import sys
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from raftcron.clock import monotonic

logger = logging.getLogger(__name__)

SPAWNER_ARGV: Final = (sys.executable, "-I", "-S", str(Path(__file__).with_name("spawner.py")))
START_TIMEOUT_S: Final = 10.0  # a loaded machine can take seconds to start an interpreter
REPLY_TIMEOUT_S: Final = 5.0  # a fork takes about a millisecond: this is a hung server
RETRY_S: Final = 1.0  # at most one server start per second (a broken install would loop)
# The environment of the fork server and of every watchdog: none of the agent's. A job's
# environment is built whole by job_environment (runner.py) and passed in its run spec,
# so a watchdog needs nothing from the agent's, and the agent's secrets (RAFTCRON_TOKEN,
# a cluster secret in the environment) must not sit in a long-lived process's
# /proc/PID/environ for its whole life, nor reach a watchdog that outlives the agent.
WATCHDOG_ENV: Final[dict[str, str]] = {}


class SpawnerError(Exception):
    pass


@dataclass(eq=False)
class _Server:
    pid: int
    sock: int  # our end of the SOCK_SEQPACKET socketpair
    ready: asyncio.Future[None]
    pending: dict[int, asyncio.Future[int]] = field(default_factory=dict)
    pidfd: int = -1
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False


def _sock(fd: int) -> socket.socket:
    """A temporary socket object over ``fd`` (detach it after use)."""
    return socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=fd)


class WatchdogSpawner:
    def __init__(
        self,
        node: str,
        argv: tuple[str, ...] = SPAWNER_ARGV,
        *,
        start_timeout: float = START_TIMEOUT_S,
        reply_timeout: float = REPLY_TIMEOUT_S,
        retry_s: float = RETRY_S,
    ) -> None:
        self.node = node
        self.argv = argv
        self.start_timeout = start_timeout
        self.reply_timeout = reply_timeout
        self.retry_s = retry_s
        self._server: _Server | None = None
        self._starting: asyncio.Task[_Server | None] | None = None
        self._last_start = -math.inf
        self._next_id = 0
        self._closed = False
        self.starts = 0  # servers started (tests, metrics)
        self.fallbacks = 0  # requests that failed (the caller spawned the watchdog itself)
        self._finalizer: weakref.finalize[[int], WatchdogSpawner] | None = None

    @property
    def pid(self) -> int | None:
        """The running server's pid, if there is one."""
        srv = self._server
        return None if srv is None or srv.closed else srv.pid

    # -- requests

    async def spawn(self, ctx: str) -> tuple[int, int, int] | None:
        """Fork a watchdog: ``(pid, fd to write its stdin, fd to read its stdout)``.

        None when the server is not available or the request failed: nothing was started
        for this run, and the caller must spawn the watchdog itself."""
        srv = await self._get(ctx)
        # Checked with no await before the send below: a discarded server's descriptor
        # number may already belong to something else.
        if srv is None or srv.closed:
            return None
        loop = asyncio.get_running_loop()
        rid = self._next_id
        self._next_id += 1
        in_r, in_w = os.pipe()
        try:
            out_r, out_w = os.pipe()
        except OSError:
            os.close(in_r)
            os.close(in_w)
            raise
        fut: asyncio.Future[int] = loop.create_future()
        srv.pending[rid] = fut
        ok = False
        try:
            try:
                s = _sock(srv.sock)
                try:
                    socket.send_fds(s, [str(rid).encode()], [in_r, out_w])
                finally:
                    s.detach()
            finally:
                os.close(in_r)
                os.close(out_w)
            # asyncio.timeout, not wait_for: on 3.11 wait_for can return the pid and lose a
            # cancel that arrives with it, and the run would start after it was cancelled.
            async with asyncio.timeout(self.reply_timeout):
                pid = await fut
            ok = True
            return pid, in_w, out_r
        except (OSError, SpawnerError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):
                why = f"no reply within {self.reply_timeout:g}s"
            else:
                why = str(exc) or type(exc).__name__
            self.fallbacks += 1
            logger.warning(
                "%s: watchdog spawner pid %d failed (%s); spawning this watchdog directly "
                "and restarting the spawner",
                ctx,
                srv.pid,
                why,
            )
            self._discard(srv, kill=True)
            self._kick(ctx)
            return None
        finally:
            srv.pending.pop(rid, None)
            if not ok:  # a watchdog forked for it reads EOF instead of a spec and exits
                os.close(in_w)
                os.close(out_r)

    async def _get(self, ctx: str) -> _Server | None:
        srv = self._server
        if srv is not None and not srv.closed and srv.ready.done():
            return srv
        if self._closed:
            return None
        task = self._kick(ctx)
        if task is None:
            return None
        return await asyncio.shield(task)

    def _kick(self, ctx: str) -> asyncio.Task[_Server | None] | None:
        """Start a server unless one is starting, or one started less than retry_s ago."""
        if self._closed:
            return None
        if self._starting is not None:
            return self._starting
        srv = self._server
        if srv is not None and not srv.closed:
            return None
        if monotonic() - self._last_start < self.retry_s:
            return None
        self._last_start = monotonic()
        task = asyncio.get_running_loop().create_task(self._start(ctx))
        self._starting = task
        task.add_done_callback(lambda _: setattr(self, "_starting", None))
        return task

    # -- the server process

    async def _start(self, ctx: str) -> _Server | None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        try:
            os.set_inheritable(theirs.fileno(), True)
            null = os.open(os.devnull, os.O_RDWR)
            try:
                pid = os.posix_spawn(  # noqa: ASYNC221 (vfork + exec: well under 1 ms)
                    self.argv[0],
                    [*self.argv, str(theirs.fileno())],
                    WATCHDOG_ENV,
                    file_actions=[
                        (os.POSIX_SPAWN_DUP2, null, 0),
                        (os.POSIX_SPAWN_DUP2, null, 1),
                    ],
                    setsid=True,  # no terminal signal meant for the agent reaches it
                )
            finally:
                os.close(null)
        except OSError as exc:
            ours.close()
            logger.error("%s: cannot start the watchdog spawner: %s", ctx, exc)
            return None
        finally:
            theirs.close()
        srv = _Server(pid=pid, sock=ours.detach(), ready=loop.create_future())
        self._server = srv
        self.starts += 1
        self._watch_exit(srv)
        loop.add_reader(srv.sock, self._on_readable, srv)
        self._finalizer = weakref.finalize(self, _close_quietly, srv.sock)
        try:
            await asyncio.wait_for(asyncio.shield(srv.ready), self.start_timeout)
        except (TimeoutError, SpawnerError) as exc:
            logger.error(
                "%s: the watchdog spawner pid %d did not come up (%s); spawning watchdogs directly",
                ctx,
                pid,
                str(exc) or f"not ready within {self.start_timeout:g}s",
            )
            self._discard(srv, kill=True)
            return None
        logger.info("node=%s: watchdog spawner started, pid %d", self.node, pid)
        return srv

    def _watch_exit(self, srv: _Server) -> None:
        """Reap the server when it exits (it is our child), without blocking: through a
        pidfd, or where the kernel has no pidfd_open (before 5.3) a thread in waitpid."""
        loop = asyncio.get_running_loop()

        def exited() -> None:
            srv.exited.set()
            if not srv.closed:
                logger.warning(
                    "node=%s: watchdog spawner pid %d exited; restarting it", self.node, srv.pid
                )
                self._discard(srv, kill=False)
                self._kick(f"node={self.node}")

        try:
            srv.pidfd = os.pidfd_open(srv.pid)
        except OSError:
            srv.pidfd = -1

            def wait() -> None:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(srv.pid, 0)
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    loop.call_soon_threadsafe(exited)

            threading.Thread(target=wait, name=f"reap-spawner-{srv.pid}", daemon=True).start()
            return

        def readable() -> None:
            loop.remove_reader(srv.pidfd)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(srv.pid, os.WNOHANG)
            os.close(srv.pidfd)
            srv.pidfd = -1
            exited()

        loop.add_reader(srv.pidfd, readable)

    def _on_readable(self, srv: _Server) -> None:
        while not srv.closed:
            try:
                data = os.read(srv.sock, 512)
            except BlockingIOError:
                return
            except OSError as exc:
                self._discard(srv, kill=True, why=f"socket: {exc}")
                return
            if not data:  # EOF: the server is gone
                self._discard(srv, kill=False, why="the spawner exited")
                self._kick(f"node={self.node}")
                return
            head, _, rest = data.decode(errors="replace").partition(" ")
            if head == "ready":
                if not srv.ready.done():
                    srv.ready.set_result(None)
                continue
            try:
                fut = srv.pending.pop(int(head))
            except (ValueError, KeyError):
                continue  # a reply to a request that timed out
            if fut.done():
                continue
            if rest.isdigit():
                fut.set_result(int(rest))
            else:
                fut.set_exception(SpawnerError(rest))

    def _discard(self, srv: _Server, *, kill: bool, why: str = "discarded") -> None:
        """Forget this server: fail its pending requests, close its socket, maybe kill it.

        Watchdogs it forked are unaffected (their own sessions, their own pipes)."""
        if srv.closed:
            return
        srv.closed = True
        if self._server is srv:
            self._server = None
        loop = asyncio.get_running_loop()
        loop.remove_reader(srv.sock)
        os.close(srv.sock)
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        for fut in srv.pending.values():
            if not fut.done():
                fut.set_exception(SpawnerError(why))
        srv.pending.clear()
        if not srv.ready.done():
            srv.ready.set_exception(SpawnerError(why))
            srv.ready.exception()  # retrieved: a start that timed out never awaits it
        if kill and not srv.exited.is_set():
            with contextlib.suppress(ProcessLookupError):
                os.kill(srv.pid, signal.SIGKILL)

    async def close(self) -> None:
        """Stop the server (EOF on its socket; SIGKILL if it lingers). Its watchdogs stay."""
        self._closed = True
        if self._starting is not None:
            self._starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._starting
        srv = self._server
        if srv is None:
            return
        self._discard(srv, kill=False, why="the executor stopped")
        try:
            await asyncio.wait_for(srv.exited.wait(), 2.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(srv.pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(srv.exited.wait(), 2.0)


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
