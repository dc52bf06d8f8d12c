"""The watchdog fork server: one long-lived process per agent that forks the watchdogs.

Starting a fresh interpreter for every run's watchdog (``python -I -S watchdog.py``)
costs about 8 ms of wall time on an idle machine and 20-30 ms of CPU under load
(bench/analysis.md). This server starts once, imports the watchdog module (and with it
``subprocess``, ``selectors``, ``json``), and then forks one child per run; a fork of
this small, already-initialised process costs about a millisecond.

Like the watchdog it imports only the standard library and runs as
``python -I -S spawner.py FD`` where FD is its end of a ``SOCK_SEQPACKET`` socketpair
with the agent. Protocol, one datagram per message:

* server -> agent, once, when it is ready: ``ready <pid>``.
* agent -> server: ``<request id>`` with two file descriptors (SCM_RIGHTS): the read end
  of the watchdog's stdin pipe and the write end of its stdout pipe.
* server -> agent: ``<request id> <watchdog pid>``, or ``<request id> error <text>``.

The forked child calls ``os.setsid()`` (the watchdog lives in its own session, as when
the agent spawned it with ``start_new_session``), moves the two pipes to fds 0 and 1,
closes every other descriptor (this socket, above all: a job must not hold it) and runs
``watchdog.main()``; from there on it is a watchdog like any other: same protocol, same
deadline. The agent writes the run spec only after the reply, so a request whose reply
never arrives (the server died or hung) cannot run anything: a watchdog forked for it
reads EOF instead of a spec and exits.

The server reaps its children from a SIGCHLD handler (``waitpid(-1, WNOHANG)``) and never
waits for one. At EOF on the socket (the agent stopped or died) it exits; watchdogs it
forked live on in their own sessions and keep enforcing their deadlines.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import os
import signal
import socket
import sys
import traceback
from types import FrameType, ModuleType

MAX_FDS = 2  # per request: the watchdog's stdin (read end) and stdout (write end)


def _load_watchdog() -> ModuleType:
    """Import watchdog.py from this directory (``-I`` keeps it off ``sys.path``)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "watchdog.py")
    spec = importlib.util.spec_from_file_location("raftcron_watchdog", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _reap(signum: int, frame: FrameType | None) -> None:
    """Collect every child that has exited; never waits for one that has not."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _child(sock: socket.socket, fds: list[int], watchdog: ModuleType) -> None:
    """In the forked child: become the run's watchdog. Never returns."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the watchdog waits for its job
        os.setsid()
        stdin, stdout = fds
        os.dup2(stdin, 0)
        os.dup2(stdout, 1)
        sock.detach()  # closed below; the object must not close a reused number later
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        code = int(watchdog.main() or 0)
    except SystemExit as exc:  # e.g. "no run spec on stdin": the request was abandoned
        if isinstance(exc.code, int):
            code = exc.code
        else:
            if exc.code is not None:
                sys.stderr.write(f"{exc.code}\n")
            code = 1
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):  # nothing left to report to
                stream.flush()
        os._exit(code)


def _reply(sock: socket.socket, text: str) -> bool:
    try:
        sock.send(text.encode())
    except OSError:
        return False
    return True


def serve(sock: socket.socket, watchdog: ModuleType) -> None:
    signal.signal(signal.SIGCHLD, _reap)
    if not _reply(sock, f"ready {os.getpid()}"):
        return
    while True:
        try:
            msg, fds, flags, _ = socket.recv_fds(sock, 256, MAX_FDS, socket.MSG_CMSG_CLOEXEC)
        except OSError:
            return  # the agent is gone
        if not msg and not fds:
            return  # EOF: the agent stopped or died; the watchdogs live on
        rid = msg.decode(errors="replace").split(" ", 1)[0] or "?"
        if len(fds) != 2 or flags & socket.MSG_CTRUNC:
            for fd in fds:
                os.close(fd)
            if not _reply(sock, f"{rid} error expected 2 fds, got {len(fds)}"):
                return
            continue
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            if not _reply(sock, f"{rid} error fork: {exc}"):
                return
            continue
        if pid == 0:
            _child(sock, fds, watchdog)
        for fd in fds:  # only the child keeps them: EOF reaches the agent when it exits
            os.close(fd)
        if not _reply(sock, f"{rid} {pid}"):
            return


def main(argv: list[str]) -> int:
    fd = int(argv[1])
    # Whatever else the agent's own parent left inheritable is not ours to keep open (a
    # directly spawned watchdog gets close_fds=True; the children close all but 0-2 too).
    os.closerange(3, fd)
    os.closerange(fd + 1, os.sysconf("SC_OPEN_MAX"))
    sock = socket.socket(fileno=fd)
    watchdog = _load_watchdog()
    gc.freeze()  # what is loaded now stays shared with the children (fewer pages copied)
    try:
        serve(sock, watchdog)
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
