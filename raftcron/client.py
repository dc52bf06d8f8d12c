"""A small typed client for the raftcron HTTP API, sync and async (the API is the
outside contract of docs/design.md, "The outside contract").

* :class:`Client` is synchronous and built on :mod:`http.client` only, so a one-shot CLI
  call starts fast: importing this module never imports aiohttp.
* :class:`AsyncClient` has the same methods as coroutines, on aiohttp, which it imports
  when the first instance is created.

Both share one sans-io layer: :func:`_Call` describes a request, ``_decode`` turns a status
and body into a value or an exception. Errors:

* :class:`ApiError` (``status``, ``code``, ``message``): the API answered with an error
  (``{"error": {"code", "message"}}``, or a non-JSON error body, which gets code ``http``).
* :class:`ApiUnavailable`: no answer at all (connection refused, reset, timed out, TLS
  failure). A write that times out may still have been carried out; every write of this
  API is safe to repeat (job puts are idempotent, a lock renewal names its fence).

Results are frozen dataclasses; each keeps the JSON it was built from in ``raw`` so
callers (``--json``) can print exactly what the server sent.
"""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from raftcron import wire

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "DEFAULT_API",
    "ApiError",
    "ApiUnavailable",
    "ApiUnreachable",
    "AsyncClient",
    "Client",
    "ClientError",
    "FailoverClient",
    "FireTime",
    "JobInfo",
    "LockGrant",
    "LockInfo",
    "Member",
    "NextFires",
    "PutResult",
    "RunInfo",
    "RunPage",
    "Status",
    "TriggerResult",
]

DEFAULT_API: Final = "http://127.0.0.1:8100"
DEFAULT_TIMEOUT: Final = 10.0
CONNECT_TIMEOUT: Final = 5.0  # at most, for the TCP (and TLS) connection: then the next member


# --------------------------------------------------------------------------- errors

# Defined in raftcron.wire (shared with the lean `raftcron lock` path); the same classes.
ClientError = wire.ClientError
ApiError = wire.ApiError
ApiUnavailable = wire.ApiUnavailable


class ApiUnreachable(ApiUnavailable):
    """No connection was made (refused, no route, connect or TLS handshake timed out):
    nothing was sent, so any request, even one that is not safe to repeat, may go to
    another member."""


# --------------------------------------------------------------------------- results


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    name: str
    raft: str
    api: str
    role: str  # "leader" or "follower"
    healthy: bool
    is_self: bool
    lag: int | None = None  # entries behind the leader's commit index (seen from the leader)
    drain: str | None = None  # "draining" or "drained" while the member is drained
    # What the member advertised in the replicated state (None/0: nothing: an older release)
    version: str | None = None
    feature_level: int = 0

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Member:
        drain = d.get("drain")
        return cls(
            name=str(d["name"]),
            raft=str(d.get("raft", "")),
            api=str(d.get("api", "")),
            role=str(d.get("role", "")),
            healthy=bool(d.get("healthy")),
            is_self=bool(d.get("self")),
            lag=_opt_int(d.get("lag")),
            drain=str(drain["state"]) if isinstance(drain, Mapping) else None,
            version=_opt_str(d.get("version")),
            feature_level=int(d.get("feature_level") or 0),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    node: str
    role: str
    leader: str | None
    term: int
    commit_index: int
    last_applied: int
    has_quorum: bool
    members: tuple[Member, ...]
    jobs: int
    runs: int
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    version: str | None = None  # the answering node's raftcron version (None: older nodes)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Status:
        return cls(
            node=str(d["node"]),
            role=str(d.get("role", "")),
            leader=_opt_str(d.get("leader")),
            term=int(d.get("term", 0)),
            commit_index=int(d.get("commit_index", 0)),
            last_applied=int(d.get("last_applied", 0)),
            has_quorum=bool(d.get("has_quorum")),
            members=tuple(Member.from_json(m) for m in d.get("members", ())),
            jobs=int(d.get("jobs", 0)),
            runs=int(d.get("runs", 0)),
            raw=d,
            version=_opt_str(d.get("version")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RunInfo:
    id: str
    job: str
    scheduled_at: str  # RFC 3339, UTC
    scheduled_at_ms: int
    status: str
    fence: int
    node: str | None
    trigger: str
    attempt: int
    started_at: str | None
    finished_at: str | None
    exit_code: int | None
    reason: str
    output: str | None  # only from run(); None when the listing did not include it
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    parents: tuple[str, ...] = ()  # a dependency run: its parents' run ids

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RunInfo:
        return cls(
            id=str(d["id"]),
            job=str(d["job"]),
            scheduled_at=str(d["scheduled_at"]),
            scheduled_at_ms=int(d.get("scheduled_at_ms", 0)),
            status=str(d["status"]),
            fence=int(d.get("fence", 0)),
            node=_opt_str(d.get("node")),
            trigger=str(d.get("trigger", "")),
            attempt=int(d.get("attempt", 1)),
            started_at=_opt_str(d.get("started_at")),
            finished_at=_opt_str(d.get("finished_at")),
            exit_code=_opt_int(d.get("exit_code")),
            reason=str(d.get("reason") or ""),
            output=_opt_str(d.get("output")),
            raw=d,
            parents=tuple(str(p) for p in d.get("parents") or ()),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RunPage:
    runs: tuple[RunInfo, ...]
    next: str | None  # pass as ``before`` for the next (older) page; None on the last page
    total: int  # runs matching the filters, over all pages

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RunPage:
        return cls(
            runs=tuple(RunInfo.from_json(r) for r in d.get("runs", ())),
            next=_opt_str(d.get("next")),
            total=int(d.get("total", 0)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FireTime:
    utc: str  # RFC 3339, "Z"
    local: str  # ISO 8601 with the job's UTC offset at that instant
    at_ms: int

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FireTime:
        return cls(utc=str(d["utc"]), local=str(d["local"]), at_ms=int(d["at_ms"]))


@dataclass(frozen=True, slots=True, kw_only=True)
class NextFires:
    job: str
    timezone: str
    fires: tuple[FireTime, ...]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> NextFires:
        return cls(
            job=str(d["job"]),
            timezone=str(d["timezone"]),
            fires=tuple(FireTime.from_json(f) for f in d.get("fires", ())),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class JobInfo:
    """A job as ``GET /v1/jobs`` lists it; ``job()`` also fills ``next_fires``."""

    name: str
    schedule: str
    timezone: str
    command: tuple[str, ...]
    paused: bool
    source: str  # "config" (the cluster file) or "api"
    next_fire: str | None
    last_run: RunInfo | None
    spec: Mapping[str, Any]  # the job's keys as a [[jobs]] table (PUT-able as is)
    next_fires: tuple[FireTime, ...] = ()
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)
    broken: str | None = None  # why the leader cannot compute its fires (docs/troubleshooting.md)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> JobInfo:
        last = d.get("last_run")
        return cls(
            name=str(d["name"]),
            schedule=str(d.get("schedule", "")),
            timezone=str(d.get("timezone", "UTC")),
            command=tuple(str(a) for a in d.get("command", ())),
            paused=bool(d.get("paused")),
            source=str(d.get("source", "")),
            next_fire=_opt_str(d.get("next_fire")),
            last_run=None if not last else RunInfo.from_json(last),
            spec=dict(d.get("spec") or {}),
            next_fires=tuple(FireTime.from_json(f) for f in d.get("next_fires") or ()),
            raw=d,
            broken=_opt_str(d.get("broken")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BackfillInfo:
    """A backfill: the job's fires in ``[from_, to]`` run again, one at a time."""

    job: str
    id: str
    from_: str
    to: str
    rate: float  # fires per second at most
    total: int
    done: int  # fires claimed so far
    next: str | None  # the next fire to run (None: all claimed)
    cancelled: bool
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BackfillInfo:
        b = d["backfill"]
        return cls(
            job=str(d["job"]),
            id=str(b["id"]),
            from_=str(b["from"]),
            to=str(b["to"]),
            rate=float(b["rate"]),
            total=int(b["total"]),
            done=int(b["done"]),
            next=_opt_str(b.get("next")),
            cancelled=bool(d.get("cancelled")),
            raw=d,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PutResult:
    job: str
    result: str  # "created", "updated" or "unchanged"
    # what is valid but probably not meant, as "<key>: <why>" (the job was saved)
    warnings: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PutResult:
        return cls(
            job=str(d["job"]),
            result=str(d["result"]),
            warnings=tuple(str(w) for w in d.get("warnings") or ()),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TriggerResult:
    run: str
    job: str
    status: str  # "claimed", "buffered" or "skipped"
    reason: str  # why it was buffered or skipped ("" when claimed)
    node: str | None
    fence: int | None
    duplicate: bool  # the same scheduled_at was triggered before: this is that run
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TriggerResult:
        return cls(
            run=str(d["run"]),
            job=str(d.get("job", "")),
            status=str(d["status"]),
            reason=str(d.get("reason") or ""),
            node=_opt_str(d.get("node")),
            fence=_opt_int(d.get("fence")),
            duplicate=bool(d.get("duplicate")),
            raw=d,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class KillResult:
    run: str
    job: str
    status: str  # the run's status when the answer was made
    result: str  # "killing" (the stop request committed) or "killed" (already ended so)
    reason: str
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> KillResult:
        return cls(
            run=str(d["run"]),
            job=str(d.get("job", "")),
            status=str(d.get("status", "")),
            result=str(d.get("result", "")),
            reason=str(d.get("reason") or ""),
            raw=d,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LockGrant:
    name: str
    fence: int
    holder: str
    ttl_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LockInfo:
    """One entry of ``GET /v1/locks``; ``raw`` has everything the server sent."""

    name: str
    fence: int | None
    holder: str | None
    ttl_ms: int | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LockInfo:
        return cls(
            name=str(d.get("name", d.get("lock", ""))),
            fence=_opt_int(d.get("fence")),
            holder=_opt_str(d.get("holder")),
            ttl_ms=_opt_int(d.get("ttl_ms")),
            raw=d,
        )


def _grant(d: Mapping[str, Any], holder: str = "") -> LockGrant:
    return LockGrant(
        name=str(d["lock"]),
        fence=int(d["fence"]),
        holder=str(d.get("holder", holder)),
        ttl_ms=int(d["ttl_ms"]),
    )


# --------------------------------------------------------------------------- sans-io


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    path: str  # with the query string
    body: Any = None  # JSON-encodable, or None for no body
    extra_timeout: float = 0.0  # added to the client's timeout (lock waits)
    # Safe to send again after an answer that never came (the API's writes are, except a
    # trigger without a scheduled_at and a backfill without an id): see FailoverClient.
    repeatable: bool = True
    # Answered by the leader only: FailoverClient asks the next member after a 409
    # not_leader.
    leader_only: bool = False
    # The body of a 2xx answer as bytes (not JSON).
    raw: bool = False


_seg = wire.seg


_query = wire.query


def _seconds(value: float | str) -> float:
    """A wait given as seconds or a duration string ("10s"), in seconds, for a timeout."""
    if isinstance(value, int | float):
        return float(value)
    from raftcron.durations import ConfigError, parse_duration

    try:
        return parse_duration(value, "wait") / 1000
    except ConfigError:
        return 0.0  # the server reports the bad value properly


_decode = wire.decode


class _Calls:
    """Every operation of the API as a :class:`_Call` plus a result parser."""

    @staticmethod
    def status() -> _Call:
        return _Call("GET", "/v1/status")

    @staticmethod
    def jobs() -> _Call:
        return _Call("GET", "/v1/jobs")

    @staticmethod
    def job(name: str) -> _Call:
        return _Call("GET", f"/v1/jobs/{_seg(name)}")

    @staticmethod
    def put_job(name: str, spec: Mapping[str, Any]) -> _Call:
        return _Call("PUT", f"/v1/jobs/{_seg(name)}", dict(spec))

    @staticmethod
    def delete_job(name: str) -> _Call:
        return _Call("DELETE", f"/v1/jobs/{_seg(name)}")

    @staticmethod
    def pause(name: str, note: str | None) -> _Call:
        return _Call("POST", f"/v1/jobs/{_seg(name)}/pause", {} if note is None else {"note": note})

    @staticmethod
    def resume(name: str) -> _Call:
        return _Call("POST", f"/v1/jobs/{_seg(name)}/resume", {})

    @staticmethod
    def trigger(name: str, scheduled_at: str | None) -> _Call:
        body = {} if scheduled_at is None else {"scheduled_at": scheduled_at}
        path = f"/v1/jobs/{_seg(name)}/trigger"
        return _Call("POST", path, body, repeatable=scheduled_at is not None)

    @staticmethod
    def backfill(name: str, from_: str, to: str, rate: float | None, id: str | None) -> _Call:
        body: dict[str, Any] = {"from": from_, "to": to}
        if rate is not None:
            body["rate"] = rate
        if id is not None:
            body["id"] = id
        return _Call("POST", f"/v1/jobs/{_seg(name)}/backfill", body, repeatable=id is not None)

    @staticmethod
    def cancel_backfill(name: str) -> _Call:
        return _Call("DELETE", f"/v1/jobs/{_seg(name)}/backfill")

    @staticmethod
    def next_fires(name: str, from_: str | None, count: int | None) -> _Call:
        return _Call(
            "GET", f"/v1/jobs/{_seg(name)}/next" + _query(**{"from": from_, "count": count})
        )

    @staticmethod
    def runs(
        job: str | None, node: str | None, status: str | None, limit: int | None, before: str | None
    ) -> _Call:
        q = _query(job=job, node=node, status=status, limit=limit, before=before)
        return _Call("GET", "/v1/runs" + q)

    @staticmethod
    def run(run_id: str) -> _Call:
        return _Call("GET", f"/v1/runs/{_seg(run_id)}")

    @staticmethod
    def kill(run_id: str, reason: str | None, hard: bool) -> _Call:
        body: dict[str, Any] = {} if reason is None else {"reason": reason}
        if hard:
            body["hard"] = True
        return _Call("POST", f"/v1/runs/{_seg(run_id)}/kill", body)

    @staticmethod
    def lock_acquire(
        name: str, ttl: float | str, wait: float | str, holder: str | None, request: str | None
    ) -> _Call:
        body: dict[str, Any] = {"ttl": ttl, "wait": wait}
        if holder is not None:
            body["holder"] = holder
        if request is not None:
            body["request"] = request
        return _Call("POST", f"/v1/locks/{_seg(name)}", body, extra_timeout=_seconds(wait))

    @staticmethod
    def lock_renew(name: str, fence: int) -> _Call:
        return _Call("POST", f"/v1/locks/{_seg(name)}/renew", {"fence": fence})

    @staticmethod
    def lock_release(name: str, fence: int) -> _Call:
        return _Call("DELETE", f"/v1/locks/{_seg(name)}" + _query(fence=fence))

    @staticmethod
    def drain(name: str, on: bool) -> _Call:
        return _Call("POST" if on else "DELETE", f"/v1/members/{_seg(name)}/drain")

    @staticmethod
    def drain_status(name: str) -> _Call:
        return _Call("GET", f"/v1/members/{_seg(name)}/drain")

    @staticmethod
    def reload(name: str) -> _Call:
        return _Call("POST", f"/v1/members/{_seg(name)}/reload", {})

    @staticmethod
    def transfer_leader(to: str | None) -> _Call:
        return _Call("POST", "/v1/leader/transfer", {} if to is None else {"to": to})

    @staticmethod
    def snapshot() -> _Call:
        return _Call("GET", "/v1/snapshot", leader_only=True, raw=True)

    @staticmethod
    def locks() -> _Call:
        return _Call("GET", "/v1/locks")


def _job_list(body: Any) -> list[JobInfo]:
    return [JobInfo.from_json(j) for j in body["jobs"]]


def _lock_list(body: Any) -> list[LockInfo]:
    return [LockInfo.from_json(lz) for lz in body["locks"]]


_split_base = wire.split_base


class _Base:
    def __init__(
        self,
        base_url: str = DEFAULT_API,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        cafile: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.scheme, self.host, self.port, self.prefix = _split_base(base_url)
        self.base_url = f"{self.scheme}://{self.host}:{self.port}{self.prefix}"
        self.token = token
        self.timeout = timeout
        self.ssl_context = ssl_context
        if self.ssl_context is None and self.scheme == "https":
            self.ssl_context = ssl.create_default_context(cafile=cafile)

    def __repr__(self) -> str:  # never show the token
        return f"{type(self).__name__}({self.base_url!r}, token={'***' if self.token else None})"

    def _headers(self, call: _Call) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "raftcron-client"}
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers


# --------------------------------------------------------------------------- sync


class Client(_Base):
    """Synchronous client on :mod:`http.client`; one connection per request, thread-safe."""

    def _do(self, call: _Call) -> Any:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        timeout = self.timeout + call.extra_timeout
        kwargs: dict[str, Any] = {"timeout": min(timeout, CONNECT_TIMEOUT)}
        if self.scheme == "https":
            kwargs["context"] = self.ssl_context
        conn = cls(self.host, self.port, **kwargs)
        body = None if call.body is None else json.dumps(call.body).encode()
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise ApiUnreachable(self.base_url, _reason(exc)) from None
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        try:
            conn.request(call.method, self.prefix + call.path, body, self._headers(call))
            resp = conn.getresponse()
            data = resp.read()
            status, reason = resp.status, resp.reason
        except (OSError, http.client.HTTPException) as exc:
            raise ApiUnavailable(self.base_url, _reason(exc)) from None
        finally:
            conn.close()
        if call.raw and 200 <= status < 300:
            return data
        return _decode(status, data, reason)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Any API request; the decoded JSON body (or :class:`ApiError`)."""
        return self._do(_Call(method.upper(), path, body))

    def status(self) -> Status:
        return Status.from_json(self._do(_Calls.status()))

    def jobs(self) -> list[JobInfo]:
        return _job_list(self._do(_Calls.jobs()))

    def job(self, name: str) -> JobInfo:
        return JobInfo.from_json(self._do(_Calls.job(name)))

    def put_job(self, name: str, spec: Mapping[str, Any]) -> PutResult:
        body = self._do(_Calls.put_job(name, spec))
        return PutResult.from_json(body)

    def delete_job(self, name: str) -> None:
        self._do(_Calls.delete_job(name))

    def pause(self, name: str, note: str | None = None) -> JobInfo:
        return JobInfo.from_json(self._do(_Calls.pause(name, note)))

    def resume(self, name: str) -> JobInfo:
        return JobInfo.from_json(self._do(_Calls.resume(name)))

    def trigger(self, name: str, scheduled_at: str | None = None) -> TriggerResult:
        """A manual fire now (or labelled ``scheduled_at``, RFC 3339: repeating the same value
        returns the first run instead of firing again)."""
        return TriggerResult.from_json(self._do(_Calls.trigger(name, scheduled_at)))

    def backfill(
        self,
        name: str,
        from_: str,
        to: str,
        rate: float | None = None,
        id: str | None = None,
    ) -> BackfillInfo:
        """Run ``name``'s fires in ``[from_, to]`` (RFC 3339) again, one at a time, at
        most ``rate`` per second (default 1); ``id`` makes the request idempotent."""
        return BackfillInfo.from_json(self._do(_Calls.backfill(name, from_, to, rate, id)))

    def cancel_backfill(self, name: str) -> BackfillInfo:
        return BackfillInfo.from_json(self._do(_Calls.cancel_backfill(name)))

    def next_fires(
        self, name: str, from_: str | None = None, count: int | None = None
    ) -> NextFires:
        return NextFires.from_json(self._do(_Calls.next_fires(name, from_, count)))

    def runs(
        self,
        *,
        job: str | None = None,
        node: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> RunPage:
        return RunPage.from_json(self._do(_Calls.runs(job, node, status, limit, before)))

    def run(self, run_id: str) -> RunInfo:
        return RunInfo.from_json(self._do(_Calls.run(run_id)))

    def kill(self, run_id: str, reason: str | None = None, hard: bool = False) -> KillResult:
        """Stop a run (SIGTERM, grace, SIGKILL; ``hard``: SIGKILL at once). Safe to repeat."""
        return KillResult.from_json(self._do(_Calls.kill(run_id, reason, hard)))

    def lock_acquire(
        self,
        name: str,
        ttl_s: float | str,
        wait_s: float | str = 0,
        holder: str | None = None,
        request: str | None = None,
    ) -> LockGrant:
        """Take lock ``name`` for ``ttl_s``, waiting up to ``wait_s`` (seconds or "10s").
        Not acquired in time: :class:`ApiError` with code ``locked`` (409). ``request`` is
        an idempotency key: after :class:`ApiUnavailable` or a 503, repeating the call with
        the same key returns the grant the first call may have got, never a second one."""
        call = _Calls.lock_acquire(name, ttl_s, wait_s, holder, request)
        return _grant(self._do(call), holder or "")

    def lock_renew(self, name: str, fence: int) -> LockGrant:
        """Extend the lock held with ``fence``; ``stale_fence`` (409) if it was lost."""
        return _grant(self._do(_Calls.lock_renew(name, fence)))

    def lock_release(self, name: str, fence: int) -> None:
        self._do(_Calls.lock_release(name, fence))

    def locks(self) -> list[LockInfo]:
        return _lock_list(self._do(_Calls.locks()))

    def openapi(self) -> dict[str, Any]:
        doc: dict[str, Any] = self._do(_Call("GET", "/v1/openapi.json"))
        return doc

    def drain(self, name: str) -> dict[str, Any]:
        """Drain member ``name`` (``MemberDrain``: node, drained, drain, leader)."""
        body: dict[str, Any] = self._do(_Calls.drain(name, True))
        return body

    def undrain(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = self._do(_Calls.drain(name, False))
        return body

    def drain_status(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = self._do(_Calls.drain_status(name))
        return body

    def reload(self, name: str) -> dict[str, Any]:
        """Member ``name`` re-reads its cluster file (send it to that member: ApiError 409
        wrong_member elsewhere; 400 invalid_config for a file it refuses)."""
        body: dict[str, Any] = self._do(_Calls.reload(name))
        return body

    def transfer_leader(self, to: str | None = None) -> dict[str, Any]:
        """Hand leadership to ``to`` (on the leader; ApiError 409 not_leader elsewhere)."""
        body: dict[str, Any] = self._do(_Calls.transfer_leader(to))
        return body

    def snapshot(self) -> bytes:
        """A backup file's bytes from the leader (admin; ApiError 409 not_leader elsewhere)."""
        data: bytes = self._do(_Calls.snapshot())
        return data


class FailoverClient(Client):
    """:class:`Client` over several members' APIs (``--api a,b,c``), for the CLI.

    A request goes to the member that answered last (the first one at the start); one that
    gets no answer goes on to the next member, in the order given, and so does a 503 (no
    leader seen, or no commit in time). A request that is not safe to repeat (a trigger
    without ``scheduled_at``, a backfill without ``id``) goes on only when nothing was
    sent (:class:`ApiUnreachable`) or the member refused it before proposing (503
    ``no_leader``): it is never carried out twice. A request only the leader answers (a
    backup) goes on after a 409 ``not_leader`` too. When no member answers,
    :class:`ApiUnavailable` names each one and why.

    ``timeout`` and ``token`` set on this object apply to every member."""

    def __init__(self, base_urls: Sequence[str], **kwargs: Any) -> None:
        if not base_urls:
            raise ValueError("no API URL given")
        self.members = [Client(u, **kwargs) for u in base_urls]
        super().__init__(base_urls[0], **kwargs)
        self.answered = self.members[0]  # the member that answered the last request

    def __repr__(self) -> str:
        urls = ", ".join(m.base_url for m in self.members)
        return f"FailoverClient([{urls}], token={'***' if self.token else None})"

    def _do(self, call: _Call) -> Any:
        n = len(self.members)
        start = self.members.index(self.answered)
        unreachable: list[ApiUnavailable] = []
        for k in range(n):
            member = self.members[(start + k) % n]
            member.timeout, member.token = self.timeout, self.token
            last = k == n - 1
            try:
                body = member._do(call)
            except ApiUnreachable as exc:
                unreachable.append(exc)
                continue
            except ApiUnavailable as exc:
                if not call.repeatable:
                    raise
                unreachable.append(exc)
                continue
            except ApiError as exc:
                # no_leader: refused before any proposal, so another member may take it
                if exc.status == 503 and not last and (call.repeatable or exc.code == "no_leader"):
                    continue
                if call.leader_only and exc.code == "not_leader" and not last:
                    continue  # a leader-only read: the next member may be the leader
                raise
            self.answered = member
            return body
        if n == 1:
            raise unreachable[0]
        where = ", ".join(m.base_url for m in self.members)
        why = "; ".join(f"{e.url}: {e.reason}" for e in unreachable)
        raise ApiUnavailable(where, why)


_reason = wire.reason_of


# --------------------------------------------------------------------------- async


class AsyncClient(_Base):
    """The same API as :class:`Client`, as coroutines on aiohttp (imported on first use).

    Use ``async with AsyncClient(...) as c`` or call :meth:`close`.
    """

    def __init__(self, base_url: str = DEFAULT_API, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _do(self, call: _Call) -> Any:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession()
        url = self.base_url + call.path
        timeout = aiohttp.ClientTimeout(total=self.timeout + call.extra_timeout)
        ssl_arg: ssl.SSLContext | bool = self.ssl_context if self.ssl_context is not None else True
        try:
            async with self._session.request(
                call.method,
                url,
                data=None if call.body is None else json.dumps(call.body).encode(),
                headers=self._headers(call),
                timeout=timeout,
                ssl=ssl_arg,
            ) as resp:
                data = await resp.read()
                status, reason = resp.status, resp.reason or ""
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ApiUnavailable(self.base_url, _reason(exc)) from None
        return _decode(status, data, reason)

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        return await self._do(_Call(method.upper(), path, body))

    async def status(self) -> Status:
        return Status.from_json(await self._do(_Calls.status()))

    async def jobs(self) -> list[JobInfo]:
        return _job_list(await self._do(_Calls.jobs()))

    async def job(self, name: str) -> JobInfo:
        return JobInfo.from_json(await self._do(_Calls.job(name)))

    async def put_job(self, name: str, spec: Mapping[str, Any]) -> PutResult:
        body = await self._do(_Calls.put_job(name, spec))
        return PutResult.from_json(body)

    async def delete_job(self, name: str) -> None:
        await self._do(_Calls.delete_job(name))

    async def pause(self, name: str, note: str | None = None) -> JobInfo:
        return JobInfo.from_json(await self._do(_Calls.pause(name, note)))

    async def resume(self, name: str) -> JobInfo:
        return JobInfo.from_json(await self._do(_Calls.resume(name)))

    async def trigger(self, name: str, scheduled_at: str | None = None) -> TriggerResult:
        return TriggerResult.from_json(await self._do(_Calls.trigger(name, scheduled_at)))

    async def backfill(
        self,
        name: str,
        from_: str,
        to: str,
        rate: float | None = None,
        id: str | None = None,
    ) -> BackfillInfo:
        call = _Calls.backfill(name, from_, to, rate, id)
        return BackfillInfo.from_json(await self._do(call))

    async def cancel_backfill(self, name: str) -> BackfillInfo:
        return BackfillInfo.from_json(await self._do(_Calls.cancel_backfill(name)))

    async def next_fires(
        self, name: str, from_: str | None = None, count: int | None = None
    ) -> NextFires:
        return NextFires.from_json(await self._do(_Calls.next_fires(name, from_, count)))

    async def runs(
        self,
        *,
        job: str | None = None,
        node: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> RunPage:
        return RunPage.from_json(await self._do(_Calls.runs(job, node, status, limit, before)))

    async def run(self, run_id: str) -> RunInfo:
        return RunInfo.from_json(await self._do(_Calls.run(run_id)))

    async def kill(self, run_id: str, reason: str | None = None, hard: bool = False) -> KillResult:
        return KillResult.from_json(await self._do(_Calls.kill(run_id, reason, hard)))

    async def lock_acquire(
        self,
        name: str,
        ttl_s: float | str,
        wait_s: float | str = 0,
        holder: str | None = None,
        request: str | None = None,
    ) -> LockGrant:
        body = await self._do(_Calls.lock_acquire(name, ttl_s, wait_s, holder, request))
        return _grant(body, holder or "")

    async def lock_renew(self, name: str, fence: int) -> LockGrant:
        return _grant(await self._do(_Calls.lock_renew(name, fence)))

    async def lock_release(self, name: str, fence: int) -> None:
        await self._do(_Calls.lock_release(name, fence))

    async def locks(self) -> list[LockInfo]:
        return _lock_list(await self._do(_Calls.locks()))

    async def openapi(self) -> dict[str, Any]:
        doc: dict[str, Any] = await self._do(_Call("GET", "/v1/openapi.json"))
        return doc

    async def drain(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = await self._do(_Calls.drain(name, True))
        return body

    async def undrain(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = await self._do(_Calls.drain(name, False))
        return body

    async def drain_status(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = await self._do(_Calls.drain_status(name))
        return body

    async def reload(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = await self._do(_Calls.reload(name))
        return body

    async def transfer_leader(self, to: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = await self._do(_Calls.transfer_leader(to))
        return body
