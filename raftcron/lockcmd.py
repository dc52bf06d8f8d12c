"""``raftcron lock NAME [--ttl 30s] [--wait 0s] -- CMD ...``: run CMD while holding a lock.

What it guarantees (the lease rules of DESIGN.md section 3, as the executor keeps them):

* CMD starts only after the lock was granted, with ``RAFTCRON_LOCK`` and
  ``RAFTCRON_FENCE`` in its environment; hand the fence to whatever CMD writes.
* Renewals go out every D/3. Each one starts its timer before it is sent, so the local
  deadline ``t_send + D*(1-rho)/(1+rho) - m`` is earlier than the leader's expiry
  ``t_commit + D`` however late the commit was. A grant that took long to come (a long
  ``--wait``) is renewed once before CMD starts, for the same reason.
* CMD runs under a guardian: a forked process in its own session that owns CMD (in its
  own process group) and the deadline. It sends SIGTERM to the group ``grace`` before the
  deadline and SIGKILL at it, so CMD is gone before the cluster may grant the lock to
  anyone else, even while this process is frozen (SIGSTOP) or dead. A renewal refused as
  stale (the lock was lost) stops CMD at once the same way.
* On exit the lock is released with its fence (``--hold`` keeps it, renewed, until that
  long after it was taken: for the same crontab line on several servers whose clocks fire
  a little apart).

Exit codes: CMD's own (128+N when signal N ended it); 75 (EX_TEMPFAIL) the lock was not
taken (held past ``--wait``, or no leader answered); 76 the lock was lost while CMD ran
and CMD was stopped; 126/127 CMD could not be run (not executable / not found); 2 bad
usage; 1 the API refused the request (authentication, invalid input).

It is a one-shot process whose start-up is most of its run time, so it imports little:
no aiohttp, no Raft code, no config machinery, and (for an ``http://`` API) not even
:mod:`http.client` or :mod:`raftcron.client`: the three lock calls go through
:class:`raftcron.wire.PlainHttp`. An ``https://`` API uses :class:`raftcron.client.Client`.
No dataclasses and no :mod:`typing` at run time either (``TYPE_CHECKING`` below).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

from raftcron.clientopts import TokenFileError, add_connection_options, token_from
from raftcron.core.lease import margin_for, safe_deadline
from raftcron.wire import (
    ApiError,
    ApiUnavailable,
    ClientError,
    PlainHttp,
    decode,
    query,
    reason_of,
    seg,
    split_base,
)

TYPE_CHECKING = False  # typing costs import time; mypy reads the block below
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType
    from typing import Any, Final

    from raftcron.client import Client

EXIT_NOT_ACQUIRED: Final = 75  # EX_TEMPFAIL: try again later
EXIT_LOST: Final = 76
EXIT_USAGE: Final = 2
EXIT_REFUSED: Final = 1
ACQUIRE_RETRY_S: Final = 5.0  # keep retrying an unanswered acquire at least this long
FORWARDED: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


USAGE: Final = "raftcron lock NAME [--ttl 30s] [--wait 0s] [options] -- CMD [ARG ...]"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``lock`` to the ``raftcron`` command's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "lock",
        usage=USAGE,
        help="run a command while holding a cluster-wide lock",
        description=(
            "Take the named lock, run CMD while keeping the lock alive, stop CMD if the lock "
            "is lost, release it when CMD exits, and exit with CMD's exit code. CMD gets "
            "RAFTCRON_LOCK and RAFTCRON_FENCE (a number that grows with every acquisition)."
        ),
        epilog=(
            "exit codes: CMD's own; 75 lock not taken; 76 lock lost (CMD stopped); "
            "126/127 CMD not runnable; 2 bad usage; 1 refused by the API"
        ),
    )
    p.add_argument("name", help="the lock's name")
    _add_options(p)
    # Everything after NAME: more options, then "--", then CMD (argparse cannot mix a
    # positional NAME, options and a trailing command by itself; see _options()).
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(fn=run)
    return p


def _add_options(p: argparse.ArgumentParser, default: Any = None) -> None:
    def d(value: str | bool | None) -> Any:
        return value if default is None else default

    p.add_argument("--ttl", default=d("30s"), help="lease of the lock (default 30s)")
    p.add_argument(
        "--wait",
        default=d("0s"),
        help="how long to wait for the lock, in FIFO order (default 0s: give up if it is held)",
    )
    p.add_argument(
        "--hold",
        default=d("0s"),
        help="keep the lock at least this long after taking it, even if CMD ends sooner",
    )
    p.add_argument(
        "--grace", default=d("5s"), help="SIGTERM to SIGKILL when CMD must stop (default 5s)"
    )
    p.add_argument("--holder", default=d(None), help="who holds it, shown by the API (host:pid)")
    add_connection_options(
        p, api_help="node API URL(s), comma-separated (or RAFTCRON_API)", default=default
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=d(False),
        help="print nothing when the lock is not taken (exit code 75 still says so)",
    )


def _say(msg: str) -> None:
    sys.stderr.write(f"raftcron lock: {msg}\n")
    sys.stderr.flush()


class _Usage(Exception):
    pass


def _duration_s(value: str, option: str) -> float:
    from raftcron.durations import ConfigError, parse_duration

    try:
        return parse_duration(value, option) / 1000
    except ConfigError as exc:
        raise _Usage(str(exc)) from None


class _Options:
    __slots__ = (
        "api",
        "argv",
        "cacert",
        "grace_s",
        "hold_s",
        "holder",
        "name",
        "quiet",
        "token",
        "ttl_ms",
        "wait_s",
    )

    def __init__(
        self,
        *,
        name: str,
        ttl_ms: int,
        wait_s: float,
        hold_s: float,
        grace_s: float,
        holder: str,
        api: str,
        token: str | None,
        cacert: str | None,
        quiet: bool,
        argv: list[str],
    ) -> None:
        self.name = name
        self.ttl_ms = ttl_ms
        self.wait_s = wait_s
        self.hold_s = hold_s
        self.grace_s = grace_s
        self.holder = holder
        self.api = api
        self.token = token
        self.cacert = cacert
        self.quiet = quiet
        self.argv = argv


def _token(args: argparse.Namespace) -> str | None:
    """``--token``, ``--token-file``, ``RAFTCRON_TOKEN`` or ``RAFTCRON_TOKEN_FILE``. (CMD
    still gets this process's whole environment: the user runs it directly.)"""
    try:
        return token_from(args, os.environ)
    except TokenFileError as exc:
        raise _Usage(str(exc)) from None


def _options(args: argparse.Namespace) -> _Options:
    # argparse drops a "--" that directly follows NAME; one after options stays in ``rest``.
    rest = list(args.rest)
    head: list[str] = []
    if rest and rest[0] == "--":
        argv = rest[1:]
    elif rest and rest[0].startswith("-"):
        if "--" not in rest:
            raise _Usage(f"put -- between the options and the command: {USAGE}")
        i = rest.index("--")
        head, argv = rest[:i], rest[i + 1 :]
    else:
        argv = rest
    if head:
        more = argparse.ArgumentParser(prog="raftcron lock NAME", usage=USAGE)
        _add_options(more, default=argparse.SUPPRESS)
        for key, value in vars(more.parse_args(head)).items():
            setattr(args, key, value)
    if not argv:
        raise _Usage(f"no command to run: {USAGE}")
    api = args.api or os.environ.get("RAFTCRON_API") or "http://127.0.0.1:8100"
    return _Options(
        name=args.name,
        ttl_ms=round(_duration_s(args.ttl, "--ttl") * 1000),
        wait_s=_duration_s(args.wait, "--wait"),
        hold_s=_duration_s(args.hold, "--hold"),
        grace_s=_duration_s(args.grace, "--grace"),
        holder=args.holder or f"{socket.gethostname()}:{os.getpid()}",
        api=api,
        token=_token(args),
        cacert=args.cacert or os.environ.get("RAFTCRON_CACERT") or None,
        quiet=bool(args.quiet),
        argv=argv,
    )


# --------------------------------------------------------------------------- the lease


class _Lost(Exception):
    pass


class _Grant:
    __slots__ = ("fence", "ttl_ms")

    def __init__(self, fence: int, ttl_ms: int) -> None:
        self.fence = fence
        self.ttl_ms = ttl_ms


class _PlainClient:
    """The three lock calls of :class:`raftcron.client.Client`, for an ``http://`` API, on
    :class:`raftcron.wire.PlainHttp`: the same requests, the same errors."""

    def __init__(self, base_url: str, token: str | None) -> None:
        _, host, port, self.prefix = split_base(base_url)
        self.base_url = f"http://{host}:{port}{self.prefix}"
        self.http = PlainHttp(host, port)
        self.token = token
        self.timeout = 10.0

    def _do(self, method: str, path: str, body: Any = None, extra_timeout: float = 0.0) -> Any:
        headers = {"Accept": "application/json", "User-Agent": "raftcron-client"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            status, reason, raw = self.http.request(
                method, self.prefix + path, data, headers, self.timeout + extra_timeout
            )
        except OSError as exc:
            raise ApiUnavailable(self.base_url, reason_of(exc)) from None
        return decode(status, raw, reason)

    def lock_acquire(
        self, name: str, ttl_s: float, wait_s: float, holder: str, request: str
    ) -> _Grant:
        body = {"ttl": ttl_s, "wait": wait_s, "holder": holder, "request": request}
        d = self._do("POST", f"/v1/locks/{seg(name)}", body, extra_timeout=float(wait_s))
        return _Grant(int(d["fence"]), int(d["ttl_ms"]))

    def lock_renew(self, name: str, fence: int) -> None:
        self._do("POST", f"/v1/locks/{seg(name)}/renew", {"fence": fence})

    def lock_release(self, name: str, fence: int) -> None:
        self._do("DELETE", f"/v1/locks/{seg(name)}" + query(fence=fence))


def _client(url: str, token: str | None, cafile: str | None) -> _PlainClient | Client:
    if split_base(url)[0] == "http":
        return _PlainClient(url, token)
    from raftcron.client import Client

    return Client(url, token=token, cafile=cafile)


class _Api:
    """The node APIs to talk to (``--api`` may list several, comma-separated); a request
    that gets no answer (or a 503) moves on to the next one."""

    def __init__(self, urls: str, token: str | None, cafile: str | None) -> None:
        self.clients = [
            _client(u.strip(), token, cafile) for u in urls.split(",") if u.strip()
        ] or [_client("http://127.0.0.1:8100", token, cafile)]
        self.i = 0

    @property
    def client(self) -> _PlainClient | Client:
        return self.clients[self.i]

    def next(self) -> None:
        self.i = (self.i + 1) % len(self.clients)


class _Lease:
    """The lock as this process holds it: fence and local deadline (monotonic seconds)."""

    def __init__(self, api: _Api, name: str, fence: int, ttl_ms: int, t_send: float):
        self.api = api
        self.name = name
        self.fence = fence
        self.ttl_ms = ttl_ms
        self.window = safe_deadline(ttl_ms, margin_for(ttl_ms))
        self.period = max(0.1, self.window / 3)
        self.deadline = t_send + self.window
        self.next_renew = t_send + self.period

    def renew(self) -> bool:
        """One renewal; True if it committed. Raises :class:`_Lost` if it was refused."""
        t_send = time.monotonic()
        client = self.api.client
        client.timeout = max(0.1, self.deadline - t_send)
        try:
            client.lock_renew(self.name, self.fence)
        except ApiError as exc:
            if exc.code == "stale_fence":
                raise _Lost(exc.message) from None
            self.api.next()
            self.next_renew = time.monotonic() + min(0.5, self.period / 2)
            return False
        except ClientError:
            self.api.next()
            self.next_renew = time.monotonic() + min(0.5, self.period / 2)
            return False
        self.deadline = max(self.deadline, t_send + self.window)
        self.next_renew = t_send + self.period
        return True

    def release(self) -> None:
        for _ in range(3):
            client = self.api.client
            client.timeout = 5.0
            try:
                client.lock_release(self.name, self.fence)
                return
            except ApiError as exc:
                if exc.status != 503:
                    return  # stale: it had expired already
            except ClientError:
                pass
            self.api.next()
            time.sleep(0.2)


def _acquire(opts: _Options, api: _Api) -> tuple[_Lease, float] | int:
    """The lease and when it was taken (monotonic), or an exit code."""
    request = f"lock-{os.getpid()}-{os.urandom(8).hex()}"  # one per attempt, kept on retry
    t_first = time.monotonic()
    give_up = t_first + max(opts.wait_s, ACQUIRE_RETRY_S)
    while True:
        left = max(0.0, opts.wait_s - (time.monotonic() - t_first))
        client = api.client
        client.timeout = 10.0
        try:
            grant = client.lock_acquire(
                opts.name, opts.ttl_ms / 1000, round(left, 3), opts.holder, request=request
            )
            break
        except ApiError as exc:
            if exc.status == 409:
                if not opts.quiet:
                    _say(f"not acquired: {exc.message}")
                return EXIT_NOT_ACQUIRED
            if exc.status == 400:
                _say(f"error: {exc.message}")
                return EXIT_USAGE
            if exc.status != 503 and exc.status < 500:
                _say(f"error: {exc}")
                return EXIT_REFUSED
            problem = str(exc)
        except ClientError as exc:
            problem = str(exc)
        if time.monotonic() >= give_up:
            _say(f"not acquired: {problem}")
            return EXIT_NOT_ACQUIRED
        api.next()  # same request id: whichever node answers returns the same outcome
        time.sleep(0.2)
    # The grant committed after t_first: the lease runs from there at the latest.
    lease = _Lease(api, opts.name, grant.fence, grant.ttl_ms, t_first)
    if time.monotonic() > t_first + lease.period:  # it took a while (waited in the queue)
        while True:
            try:
                if lease.renew():
                    break
            except _Lost as exc:
                _say(f"lock lost before the command started: {exc}")
                return EXIT_NOT_ACQUIRED
            if time.monotonic() >= lease.deadline:
                _say("lock granted but not renewed in time; the command was not started")
                lease.release()
                return EXIT_NOT_ACQUIRED
            time.sleep(0.1)
    return lease, t_first


# --------------------------------------------------------------------------- guardian


def _send(fd: int, msg: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, (json.dumps(msg) + "\n").encode())


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def guardian(
    argv: Sequence[str],
    env: dict[str, str],
    deadline: float,
    grace: float,
    ctl: int,
    events: int,
) -> None:
    """Run CMD and enforce the deadline (in the forked guardian; see the module doc).

    ``ctl`` carries ``{"deadline": t}`` (extend) and ``{"stop": reason}`` lines; EOF (the
    lock process died) keeps the last deadline. ``events`` gets ``{"event": "started",
    "pid"}`` and one ``{"event": "exit", "code", "outcome", "detail"}``.
    """
    try:
        child = subprocess.Popen(list(argv), env=env, start_new_session=True)
    except OSError as exc:
        code = 127 if exc.errno in (errno.ENOENT, errno.ENOTDIR) else 126
        _send(
            events, {"event": "exit", "code": code, "outcome": "spawn_failed", "detail": str(exc)}
        )
        return
    _send(events, {"event": "started", "pid": child.pid})
    pgid = child.pid
    outcome, detail = "exited", ""
    kill_at: float | None = None
    killed = False
    buf = b""
    open_ctl = True
    pidfd = -1
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(child.pid)

    def stop(why: str, what: str, at: float) -> None:
        nonlocal outcome, detail, kill_at
        outcome, detail, kill_at = why, what, at
        _killpg(pgid, signal.SIGTERM)

    while child.poll() is None:
        now = time.monotonic()
        if kill_at is None and now >= deadline - grace:
            stop("lease_lost", "the lease deadline passed without a committed renewal", deadline)
        if kill_at is not None and now >= kill_at and not killed:
            _killpg(pgid, signal.SIGKILL)
            killed = True
        if kill_at is None:
            wake = [0.5, deadline - grace - now]
        else:
            wake = [0.5] if killed else [0.5, kill_at - now]  # the pidfd wakes us on exit
        fds = [fd for fd, use in ((ctl, open_ctl), (pidfd, pidfd >= 0)) if use]
        try:
            ready, _, _ = select.select(fds, [], [], max(0.0, min(wake)) if fds else 0.05)
        except InterruptedError:
            continue
        if ctl in ready:
            chunk = os.read(ctl, 65536)
            if not chunk:
                open_ctl = False
            buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "deadline" in msg and kill_at is None:
                deadline = max(deadline, float(msg["deadline"]))
            if "stop" in msg and kill_at is None:
                now = time.monotonic()
                stop("lost", str(msg["stop"]), min(deadline, now + grace))
    if kill_at is not None:
        _killpg(pgid, signal.SIGKILL)  # stragglers of a stopped command must not live on
    rc = child.returncode
    code = 128 - rc if rc < 0 else rc
    _send(events, {"event": "exit", "code": code, "outcome": outcome, "detail": detail})
    if pidfd >= 0:
        os.close(pidfd)


class _Guarded:
    __slots__ = ("buf", "cmd_pid", "ctl", "events", "pid")

    def __init__(self, pid: int, ctl: int, events: int) -> None:
        self.pid = pid  # the guardian
        self.ctl = ctl
        self.events = events
        self.cmd_pid: int | None = None
        self.buf = b""


def _start_guardian(
    argv: Sequence[str], env: dict[str, str], deadline: float, grace: float
) -> _Guarded:
    ctl_r, ctl_w = os.pipe()
    ev_r, ev_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the guardian: never returns into the caller's code
        status = 0
        try:
            os.setsid()
            os.close(ctl_w)
            os.close(ev_r)
            for sig in FORWARDED:
                signal.signal(sig, signal.SIG_DFL)
            guardian(argv, env, deadline, grace, ctl_r, ev_w)
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(ctl_r)
    os.close(ev_w)
    return _Guarded(pid=pid, ctl=ctl_w, events=ev_r)


def _next_event(g: _Guarded, timeout: float) -> dict[str, Any] | None:
    while b"\n" not in g.buf:
        try:
            ready, _, _ = select.select([g.events], [], [], max(0.0, timeout))
        except InterruptedError:
            return None
        if not ready:
            return None
        chunk = os.read(g.events, 65536)
        if not chunk:  # the guardian died without a word
            return {"event": "exit", "code": EXIT_LOST, "outcome": "guardian_died", "detail": ""}
        g.buf += chunk
        timeout = 0.0
    line, g.buf = g.buf.split(b"\n", 1)
    msg: dict[str, Any] = json.loads(line)
    return msg


# --------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> int:
    try:
        opts = _options(args)
    except _Usage as exc:
        _say(f"error: {exc}")
        return EXIT_USAGE
    try:
        api = _Api(opts.api, opts.token, opts.cacert)
    except (ValueError, OSError) as exc:
        _say(f"error: {exc}")
        return EXIT_USAGE
    interrupted: list[int] = []
    guarded: list[_Guarded] = []
    acquiring = [True]

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        interrupted.append(signum)
        if guarded and guarded[0].cmd_pid is not None:
            _killpg(guarded[0].cmd_pid, signum)  # CMD decides; we release when it ends
        elif acquiring[0]:
            raise KeyboardInterrupt  # (CMD not started: forwarded when it is)

    old = {sig: signal.signal(sig, on_signal) for sig in FORWARDED}
    try:
        try:
            got = _acquire(opts, api)
        except KeyboardInterrupt:
            return 128 + (interrupted[0] if interrupted else signal.SIGINT)
        finally:
            acquiring[0] = False
        if isinstance(got, int):
            return got
        lease, taken = got
        return _run_locked(opts, lease, taken, guarded, interrupted)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _run_locked(
    opts: _Options, lease: _Lease, taken: float, guarded: list[_Guarded], interrupted: list[int]
) -> int:
    env = dict(os.environ)
    env["RAFTCRON_LOCK"] = opts.name
    env["RAFTCRON_FENCE"] = str(lease.fence)
    grace = max(0.0, min(opts.grace_s, lease.window / 4))
    g = _start_guardian(opts.argv, env, lease.deadline, grace)
    guarded.append(g)
    lost = ""
    result: dict[str, Any] = {}
    while True:
        now = time.monotonic()
        if not lost and now >= lease.deadline:
            lost = "the lease deadline passed without a committed renewal"
            _say(f"lock {opts.name} fence={lease.fence} lost: {lost}; stopping the command")
        if not lost and now >= lease.next_renew:
            try:
                if lease.renew():
                    _send(g.ctl, {"deadline": lease.deadline})
            except _Lost as exc:
                lost = str(exc)
                _say(f"lock {opts.name} fence={lease.fence} lost: {lost}; stopping the command")
                _send(g.ctl, {"stop": lost})
            continue
        wake = 0.5 if lost else min(lease.next_renew, lease.deadline) - now
        msg = _next_event(g, wake)
        if msg is None:
            continue
        if msg.get("event") == "started":
            g.cmd_pid = int(msg["pid"])
            for sig in interrupted:  # a signal that came before CMD existed
                _killpg(g.cmd_pid, sig)
        elif msg.get("event") == "exit":
            result = msg
            break
    with contextlib.suppress(ChildProcessError):
        os.waitpid(g.pid, 0)
    os.close(g.ctl)
    os.close(g.events)
    outcome = str(result.get("outcome"))
    if outcome == "spawn_failed":
        _say(f"cannot run {opts.argv[0]}: {result.get('detail')}")
    if outcome in ("lease_lost", "lost", "guardian_died") and not lost:
        lost = str(result.get("detail") or outcome)
        _say(f"lock {opts.name} fence={lease.fence} lost: {lost}; the command was stopped")
    if not lost and opts.hold_s > 0:
        lost = _hold(lease, taken + opts.hold_s)
    if lost:
        lease.release()  # in case only this side gave up (cut off): stale is fine
        return EXIT_LOST
    lease.release()
    return int(result.get("code", EXIT_LOST))


def _hold(lease: _Lease, until: float) -> str:
    """Keep the lock, renewed, until ``until``; why it was lost, or ""."""
    while (now := time.monotonic()) < until:
        if now >= lease.deadline:
            return "the lease deadline passed without a committed renewal"
        if now >= lease.next_renew:
            try:
                lease.renew()
            except _Lost as exc:
                return str(exc)
            continue
        time.sleep(max(0.0, min(until, lease.next_renew, lease.deadline) - now))
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m raftcron.lockcmd NAME ... -- CMD`` (the same as ``raftcron lock``)."""
    parser = argparse.ArgumentParser(prog="raftcron")
    add_parser(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(["lock", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.fn(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
