"""``raftcron lock NAME [--ttl 30s] [--wait 0s] -- CMD ...``: run CMD while holding a lock.

What it guarantees (the lease rules of docs/design.md, "Leases and fencing", as the
executor keeps them):

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

Release: when CMD has ended, the guardian sends the release request (fenced) and only
then is this process told CMD's exit code, so ``raftcron lock`` exits with it without
waiting a commit for the release; the guardian, detached from the caller's stdout and
stderr, reads the answer and retries (three tries, as before) in the background. When
``raftcron lock`` has exited, the release is therefore on its way to the node that
answered last (a call right after it, on any node, finds the lock free once that commit
is applied: a few ms). If it cannot be delivered (the guardian killed, no node
answering), the lock lapses on its own: the leader expires it ``--ttl`` after the last
renewal (plus the take-over patience of docs/design.md, "Leases and fencing", if the
leader changes), as it does for a holder that dies. With ``--hold``, after a lost lock, or
for an ``https://`` API, this process releases before it exits, as it always did.

It is a one-shot process whose start-up is most of its run time, so it imports little:
no aiohttp, no Raft code, no config machinery, and nothing that imports :mod:`enum` or
:mod:`re` (together 10-15 ms of a call here): no :mod:`socket`, :mod:`signal`,
:mod:`json`, :mod:`subprocess`, :mod:`argparse` or :mod:`urllib.parse`. The plain forms of
the command line are read by :func:`parse_fast`; anything else (``--help``, an
abbreviation, an error) goes to argparse (:func:`add_parser`), which then parses it as it
always did. For an ``http://`` API the three lock calls go through
:class:`raftcron.wire.PlainHttp` (built-in ``_socket``, ``_json``); an ``https://`` API
uses :class:`raftcron.client.Client`. CMD is started with ``fork`` and ``execvpe`` as
:class:`subprocess.Popen` would start it (new session, descriptors above 2 closed,
SIGPIPE/SIGXFSZ and the forwarded signals at their defaults). No dataclasses and no
:mod:`typing` at run time either (``TYPE_CHECKING`` below).
"""

from __future__ import annotations

# signal without enum: the numbers and signal() of the built-in module signal wraps
import _signal  # type: ignore[import-not-found]
import errno
import os
import select
import sys
import time

from raftcron.clientopts import TokenFileError, token_from
from raftcron.clock import monotonic
from raftcron.core.lease import margin_for, safe_deadline
from raftcron.wire import (
    ApiError,
    ApiUnavailable,
    ClientError,
    PlainHttp,
    decode,
    dumps,
    loads,
    query,
    reason_of,
    seg,
    split_base,
)

TYPE_CHECKING = False  # typing costs import time; mypy reads the block below
if TYPE_CHECKING:
    import _socket
    import argparse
    from collections.abc import Callable, Sequence
    from types import FrameType
    from typing import Any, Final

    from raftcron.client import Client

EXIT_NOT_ACQUIRED: Final = 75  # EX_TEMPFAIL: try again later
EXIT_LOST: Final = 76
EXIT_USAGE: Final = 2
EXIT_REFUSED: Final = 1
ACQUIRE_RETRY_S: Final = 5.0  # keep retrying an unanswered acquire at least this long
FORWARDED: Final = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT)
# What CMD gets at its default: the forwarded signals, and the two CPython ignores
# (subprocess.Popen's restore_signals).
RESTORED: Final = (*FORWARDED, _signal.SIGPIPE, _signal.SIGXFSZ)
RELEASE_SENT_WAIT_S: Final = 2.0  # at most this long for the guardian to send the release


USAGE: Final = "raftcron lock NAME [--ttl 30s] [--wait 0s] [options] -- CMD [ARG ...]"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``lock`` to the ``raftcron`` command's subparsers."""
    import argparse

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
    from raftcron.clientopts import add_connection_options

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


def _token(args: argparse.Namespace | _Args) -> str | None:
    """``--token``, ``--token-file``, ``RAFTCRON_TOKEN`` or ``RAFTCRON_TOKEN_FILE``. (CMD
    still gets this process's whole environment: the user runs it directly.)"""
    try:
        return token_from(args, os.environ)
    except TokenFileError as exc:
        raise _Usage(str(exc)) from None


class _Args:
    """What :func:`parse_fast` read: the attributes argparse's namespace has for ``lock``."""

    name: str
    rest: list[str]
    ttl: str
    wait: str
    hold: str
    grace: str
    holder: str | None
    api: str | None
    token: str | None
    token_file: str | None
    cacert: str | None
    quiet: bool

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


# The options of _add_options, by their full spelling, and their defaults.
_VALUED: Final = {
    "--ttl": "ttl",
    "--wait": "wait",
    "--hold": "hold",
    "--grace": "grace",
    "--holder": "holder",
    "--api": "api",
    "--token": "token",
    "--token-file": "token_file",
    "--cacert": "cacert",
}
_DEFAULTS: Final = {
    "ttl": "30s",
    "wait": "0s",
    "hold": "0s",
    "grace": "5s",
    "holder": None,
    "api": None,
    "token": None,
    "token_file": None,
    "cacert": None,
    "quiet": False,
}


def parse_fast(words: Sequence[str]) -> _Args | None:
    """The words after ``lock`` in their plain form, ``[OPTION...] NAME [OPTION...] --
    CMD [ARG...]`` with every option spelled out (``--ttl 5s``, ``--ttl=5s``, ``-q``), read
    without argparse (10 ms of a call here, with what it imports); None for anything else
    (``--help``, an abbreviation, an unknown option, a value that starts with "-", no
    ``--``), which argparse then parses, or refuses, exactly as before. Where this answers,
    it answers what argparse does (``tests/unit/test_lockcmd.py`` compares them)."""
    values: dict[str, Any] = dict(_DEFAULTS)
    name: str | None = None
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            argv = list(words[i + 1 :])
            if name is None or not argv or argv[0].startswith("-"):
                return None  # (argparse may read a CMD that starts with "-" as options)
            return _Args(name=name, rest=["--", *argv], **values)
        if word in ("-q", "--quiet"):
            values["quiet"] = True
        elif word.startswith("--"):
            option, eq, value = word.partition("=")
            key = _VALUED.get(option)
            if key is None:
                return None
            if not eq:
                i += 1
                if i == len(words) or words[i].startswith("-"):
                    return None
                value = words[i]
            values[key] = value
        elif word.startswith("-") or name is not None:
            return None
        else:
            name = word
        i += 1
    return None


def _options(args: argparse.Namespace | _Args) -> _Options:
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
        import argparse

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
        holder=args.holder or f"{_hostname()}:{os.getpid()}",
        api=api,
        token=_token(args),
        cacert=args.cacert or os.environ.get("RAFTCRON_CACERT") or None,
        quiet=bool(args.quiet),
        argv=argv,
    )


def _hostname() -> str:
    import _socket

    return _socket.gethostname()


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

    def _send(
        self, method: str, path: str, body: Any = None, extra_timeout: float = 0.0
    ) -> _socket.socket:
        headers = {"Accept": "application/json", "User-Agent": "raftcron-client"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = dumps(body).encode()
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            return self.http.send(
                method, self.prefix + path, data, headers, self.timeout + extra_timeout
            )
        except OSError as exc:
            raise ApiUnavailable(self.base_url, reason_of(exc)) from None

    def _receive(self, sock: _socket.socket) -> Any:
        try:
            status, reason, raw = self.http.receive(sock)
        except OSError as exc:
            raise ApiUnavailable(self.base_url, reason_of(exc)) from None
        return decode(status, raw, reason)

    def _do(self, method: str, path: str, body: Any = None, extra_timeout: float = 0.0) -> Any:
        return self._receive(self._send(method, path, body, extra_timeout))

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

    def lock_release_sent(self, name: str, fence: int) -> Callable[[], None]:
        """Send the release now; what reads its answer (and raises as lock_release)."""
        try:
            sock = self._send("DELETE", f"/v1/locks/{seg(name)}" + query(fence=fence))
        except ClientError as exc:
            failed = exc

            def fail() -> None:
                raise failed

            return fail
        return lambda: self._receive(sock)


def _client(url: str, token: str | None, cafile: str | None) -> _PlainClient | Client:
    if split_base(url)[0] == "http":
        return _PlainClient(url, token)
    from raftcron.client import Client

    return Client(url, token=token, cafile=cafile)


class _Api:
    """The node APIs to talk to (``--api`` may list several, comma-separated); a request
    that gets no answer (or a 503) moves on to the next one."""

    def __init__(self, urls: str, token: str | None, cafile: str | None) -> None:
        from raftcron.clientopts import api_urls  # every verb's --api parser

        self.clients = [_client(u, token, cafile) for u in api_urls(urls, {})]
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
        t_send = monotonic()
        client = self.api.client
        client.timeout = max(0.1, self.deadline - t_send)
        try:
            client.lock_renew(self.name, self.fence)
        except ApiError as exc:
            if exc.code == "stale_fence":
                raise _Lost(exc.message) from None
            self.api.next()
            self.next_renew = monotonic() + min(0.5, self.period / 2)
            return False
        except ClientError:
            self.api.next()
            self.next_renew = monotonic() + min(0.5, self.period / 2)
            return False
        self.deadline = max(self.deadline, t_send + self.window)
        self.next_renew = t_send + self.period
        return True

    def release(self, sent: Callable[[], None] | None = None) -> None:
        """Release with the fence: up to three tries, the next node after a 503 or no
        answer; a refusal (it had expired already) ends it. ``sent``: the first try's
        request, already sent (:meth:`send_release`), to read the answer of."""
        for attempt in range(3):
            client = self.api.client
            client.timeout = 5.0
            try:
                if attempt == 0 and sent is not None:
                    sent()
                else:
                    client.lock_release(self.name, self.fence)
                return
            except ApiError as exc:
                if exc.status != 503:
                    return  # stale: it had expired already
            except ClientError:
                pass
            self.api.next()
            time.sleep(0.2)

    def send_release(self) -> Callable[[], None] | None:
        """The release request sent now, to :meth:`release` later; None for a client that
        cannot split a request (``https://``: :meth:`release` does all of it)."""
        client = self.api.client
        if not isinstance(client, _PlainClient):
            return None
        client.timeout = 5.0
        return client.lock_release_sent(self.name, self.fence)


def _acquire(opts: _Options, api: _Api) -> tuple[_Lease, float] | int:
    """The lease and when it was taken (monotonic), or an exit code."""
    request = f"lock-{os.getpid()}-{os.urandom(8).hex()}"  # one per attempt, kept on retry
    t_first = monotonic()
    give_up = t_first + max(opts.wait_s, ACQUIRE_RETRY_S)
    while True:
        left = max(0.0, opts.wait_s - (monotonic() - t_first))
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
        if monotonic() >= give_up:
            _say(f"not acquired: {problem}")
            return EXIT_NOT_ACQUIRED
        api.next()  # same request id: whichever node answers returns the same outcome
        time.sleep(0.2)
    # The grant committed after t_first: the lease runs from there at the latest.
    lease = _Lease(api, opts.name, grant.fence, grant.ttl_ms, t_first)
    if monotonic() > t_first + lease.period:  # it took a while (waited in the queue)
        while True:
            try:
                if lease.renew():
                    break
            except _Lost as exc:
                _say(f"lock lost before the command started: {exc}")
                return EXIT_NOT_ACQUIRED
            if monotonic() >= lease.deadline:
                _say("lock granted but not renewed in time; the command was not started")
                lease.release()
                return EXIT_NOT_ACQUIRED
            time.sleep(0.1)
    return lease, t_first


# --------------------------------------------------------------------------- guardian


def _send(fd: int, msg: dict[str, Any]) -> None:
    try:
        os.write(fd, (dumps(msg) + "\n").encode())
    except OSError:
        pass


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _close_inherited(keep: int) -> None:
    """In CMD's process before exec: close every descriptor above 2 but ``keep`` (what
    ``close_fds=True`` does; ours are close-on-exec anyway, the caller's may not be)."""
    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        os.closerange(3, keep)
        os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
        return
    for fd in fds:
        if fd > 2 and fd != keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the directory listing's own descriptor


def _exec(args: list[str], env: dict[str, str]) -> None:
    """``os.execvpe(args[0], args, env)``, the same search and the same error, without
    the :mod:`warnings` import of :func:`os.get_exec_path` (a few ms in a fresh fork)."""
    if os.sep in args[0]:
        os.execve(args[0], args, env)
    first: OSError | None = None
    last: OSError | None = None
    for folder in env.get("PATH", os.defpath).split(os.pathsep):
        try:
            os.execve(os.path.join(folder, args[0]), args, env)
        except (FileNotFoundError, NotADirectoryError) as exc:
            last = exc
        except OSError as exc:
            last = exc
            first = first or exc
    raise first or last or FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))


def spawn(argv: Sequence[str], env: dict[str, str]) -> int:
    """Start CMD as ``subprocess.Popen(argv, env=env, start_new_session=True)`` would: in
    its own session (and process group), descriptors above 2 closed, the signals of
    :data:`RESTORED` at their defaults, ``argv[0]`` looked up in ``env``'s PATH. Its pid;
    :class:`OSError` (with the errno of exec) if it could not be run."""
    args = list(argv)
    err_r, err_w = os.pipe()  # close-on-exec: EOF at once when exec worked
    pid = os.fork()
    if pid == 0:  # CMD-to-be: never returns into the caller's code
        code = 0
        try:
            os.setsid()
            for sig in RESTORED:
                _signal.signal(sig, _signal.SIG_DFL)
            _close_inherited(err_w)
            _exec(args, env)
        except OSError as exc:
            code = exc.errno or errno.ENOEXEC
        except BaseException:
            code = errno.ENOEXEC
        try:
            os.write(err_w, str(code).encode())
        finally:
            os._exit(127)
    os.close(err_w)
    try:
        data = b""
        while chunk := os.read(err_r, 64):
            data += chunk
    finally:
        os.close(err_r)
    if data:
        os.waitpid(pid, 0)
        code = int(data)
        raise OSError(code, os.strerror(code), args[0])
    return pid


def _detach_stdio() -> None:
    """Point 0, 1 and 2 at /dev/null: whoever reads our caller's output sees its end
    when the caller exits, not when the guardian does."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def guardian(
    argv: Sequence[str],
    env: dict[str, str],
    deadline: float,
    grace: float,
    ctl: int,
    events: int,
    detach: bool = False,
) -> dict[str, Any]:
    """Run CMD and enforce the deadline (in the forked guardian; see the module doc).

    ``ctl`` carries ``{"deadline": t}`` (extend) and ``{"stop": reason}`` lines; EOF (the
    lock process died) keeps the last deadline. ``events`` gets ``{"event": "started",
    "pid"}`` and one ``{"event": "exit", "code", "outcome", "detail"}``, which is also
    returned. ``detach``: stdin, stdout and stderr go to /dev/null before the exit event.
    """
    try:
        pid = spawn(argv, env)
    except OSError as exc:
        code = 127 if exc.errno in (errno.ENOENT, errno.ENOTDIR) else 126
        done = {"event": "exit", "code": code, "outcome": "spawn_failed", "detail": str(exc)}
        if detach:
            _detach_stdio()
        _send(events, done)
        return done
    _send(events, {"event": "started", "pid": pid})
    pgid = pid
    outcome, detail = "exited", ""
    kill_at: float | None = None
    killed = False
    buf = b""
    open_ctl = True
    pidfd = -1
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pass

    def stop(why: str, what: str, at: float) -> None:
        nonlocal outcome, detail, kill_at
        outcome, detail, kill_at = why, what, at
        _killpg(pgid, _signal.SIGTERM)

    status: int | None = None
    while (status := _reaped(pid)) is None:
        now = monotonic()
        if kill_at is None and now >= deadline - grace:
            stop("lease_lost", "the lease deadline passed without a committed renewal", deadline)
        if kill_at is not None and now >= kill_at and not killed:
            _killpg(pgid, _signal.SIGKILL)
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
                msg = loads(line)
            except ValueError:
                continue
            if "deadline" in msg and kill_at is None:
                deadline = max(deadline, float(msg["deadline"]))
            if "stop" in msg and kill_at is None:
                now = monotonic()
                stop("lost", str(msg["stop"]), min(deadline, now + grace))
    if kill_at is not None:
        _killpg(pgid, _signal.SIGKILL)  # stragglers of a stopped command must not live on
    rc = os.waitstatus_to_exitcode(status)
    code = 128 - rc if rc < 0 else rc
    if pidfd >= 0:
        os.close(pidfd)
    done = {"event": "exit", "code": code, "outcome": outcome, "detail": detail}
    if detach:
        _detach_stdio()
    _send(events, done)
    return done


def _reaped(pid: int) -> int | None:
    """CMD's wait status if it has ended (and is reaped now), else None."""
    while True:
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except InterruptedError:
            continue
        return status if got == pid else None


class _Guarded:
    __slots__ = ("buf", "cmd_pid", "ctl", "events", "pid")

    def __init__(self, pid: int, ctl: int, events: int) -> None:
        self.pid = pid  # the guardian
        self.ctl = ctl
        self.events = events
        self.cmd_pid: int | None = None
        self.buf = b""


def _start_guardian(
    argv: Sequence[str],
    env: dict[str, str],
    deadline: float,
    grace: float,
    release: _Lease | None,
) -> _Guarded:
    """Fork the guardian. With ``release`` it releases that lease when CMD has ended by
    itself (not stopped): the request goes out before it closes its end of ``events``,
    and the answer is read (and the release retried) after, in the background."""
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
                _signal.signal(sig, _signal.SIG_DFL)
            done = guardian(argv, env, deadline, grace, ctl_r, ev_w, detach=release is not None)
            if release is not None and done["outcome"] in ("exited", "spawn_failed"):
                sent = release.send_release()
                if sent is None:  # https: all of it before the caller may exit
                    release.release()
                os.close(ev_w)  # the caller may exit now
                if sent is not None:
                    release.release(sent)
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(ctl_r)
    os.close(ev_w)
    return _Guarded(pid=pid, ctl=ctl_w, events=ev_r)


def _next_event(g: _Guarded, timeout: float) -> dict[str, Any] | None:
    """The guardian's next event within ``timeout``, or None; EOF before an exit event
    reads as ``guardian_died``."""
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
    msg: dict[str, Any] = loads(line)
    return msg


def _wait_closed(fd: int, timeout: float) -> None:
    """Until the other end of ``fd`` is closed (the guardian sent the release), at most
    ``timeout`` seconds."""
    until = monotonic() + timeout
    while (left := until - monotonic()) > 0:
        try:
            ready, _, _ = select.select([fd], [], [], left)
        except InterruptedError:
            continue
        if not ready or not os.read(fd, 65536):
            return


# --------------------------------------------------------------------------- main


def run(args: argparse.Namespace | _Args) -> int:
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

    old = {sig: _signal.signal(sig, on_signal) for sig in FORWARDED}
    try:
        try:
            got = _acquire(opts, api)
        except KeyboardInterrupt:
            return 128 + (interrupted[0] if interrupted else _signal.SIGINT)
        finally:
            acquiring[0] = False
        if isinstance(got, int):
            return got
        lease, taken = got
        return _run_locked(opts, lease, taken, guarded, interrupted)
    finally:
        for sig, handler in old.items():
            _signal.signal(sig, handler)


def _run_locked(
    opts: _Options, lease: _Lease, taken: float, guarded: list[_Guarded], interrupted: list[int]
) -> int:
    env = dict(os.environ)
    env["RAFTCRON_LOCK"] = opts.name
    env["RAFTCRON_FENCE"] = str(lease.fence)
    grace = max(0.0, min(opts.grace_s, lease.window / 4))
    # The guardian releases when CMD ends by itself, unless --hold keeps the lock longer.
    by_guardian = opts.hold_s <= 0
    g = _start_guardian(opts.argv, env, lease.deadline, grace, lease if by_guardian else None)
    guarded.append(g)
    lost = ""
    result: dict[str, Any] = {}
    while True:
        now = monotonic()
        if not lost and now >= lease.deadline:
            lost = "the lease deadline passed without a committed renewal"
            _say(f"lock {opts.name} fence={lease.fence} lost: {lost}; stopping the command")
        if not lost and now >= lease.next_renew:
            try:
                if lease.renew():
                    _send(g.ctl, {"deadline": lease.deadline})
            except _Lost as exc:
                # Refused because CMD had ended and the guardian released already?
                ended = _ended(g, interrupted)
                if ended is not None:
                    result = ended
                    break
                lost = str(exc)
                _say(f"lock {opts.name} fence={lease.fence} lost: {lost}; stopping the command")
                _send(g.ctl, {"stop": lost})
            continue
        wake = 0.5 if lost else min(lease.next_renew, lease.deadline) - now
        msg = _next_event(g, wake)
        if msg is None:
            continue
        if _on_event(g, msg, interrupted):
            result = msg
            break
    os.close(g.ctl)
    outcome = str(result.get("outcome"))
    released = by_guardian and outcome in ("exited", "spawn_failed")
    if released:
        _wait_closed(g.events, RELEASE_SENT_WAIT_S)  # the release request is out
    else:
        try:
            os.waitpid(g.pid, 0)
        except ChildProcessError:
            pass
    os.close(g.events)
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
    if not released:
        lease.release()
    return int(result.get("code", EXIT_LOST))


def _on_event(g: _Guarded, msg: dict[str, Any], interrupted: list[int]) -> bool:
    """Act on one guardian event; True for the exit event."""
    if msg.get("event") == "started":
        g.cmd_pid = int(msg["pid"])
        for sig in interrupted:  # a signal that came before CMD existed
            _killpg(g.cmd_pid, sig)
        return False
    return msg.get("event") == "exit"


def _ended(g: _Guarded, interrupted: list[int]) -> dict[str, Any] | None:
    """The exit event if the guardian has sent it already (without waiting), else None."""
    while (msg := _next_event(g, 0.0)) is not None:
        if _on_event(g, msg, interrupted):
            return msg if msg.get("outcome") in ("exited", "spawn_failed") else None
    return None


def _hold(lease: _Lease, until: float) -> str:
    """Keep the lock, renewed, until ``until``; why it was lost, or ""."""
    while (now := monotonic()) < until:
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
    words = list(sys.argv[1:] if argv is None else argv)
    args: argparse.Namespace | _Args | None = parse_fast(words)
    if args is None:
        import argparse

        parser = argparse.ArgumentParser(prog="raftcron")
        add_parser(parser.add_subparsers(dest="verb", required=True))
        args = parser.parse_args(["lock", *words])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
