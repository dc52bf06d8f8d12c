"""Telling people: notify webhooks and dead-man's-switch pings.

Who sends what (only committed records and runs this node executed cause a message):

* **The node that ran the job** (from the executor's events): ``late`` when a run starts
  more than ``late_after`` after it was due (its scheduled time plus its jitter offset;
  buffered runs wait on purpose and are never late); ``failure`` when its fenced
  completion committed as ``failed``, ``timed_out`` or ``lost``; ``recovered`` when it
  committed as ``succeeded`` and the job's previous completed run was a failure. Pings:
  ``<ping_url>/start`` once the fenced start committed, then ``<ping_url>`` on success,
  ``<ping_url>/<exit code>`` for a process that exited 1-255, ``<ping_url>/fail`` for any
  other failure (timeout, lost, killed by a signal, an HTTP job, a completion refused as
  stale). That is healthchecks.io's convention (``/start``, ``/fail``, ``/<exit-status>``);
  Cronitor's ``/fail`` and the plain URL mean the same.
* **The leader** (from the apply stream): ``missed`` for every committed missed record and
  ``failure`` for every lease it expired (``lost``): the executor of such a run is dead,
  frozen or cut off, so the node that applies the record while it is leader sends it.

Delivery is at least once, never exactly once: every webhook carries ``Idempotency-Key:
<run id>/<event>`` (and ``X-Raftcron-Event``) so a receiver can drop repeats. A message
lives only in the sending node's memory: if that node dies before it is delivered, or
leadership moves between the commit and the send, it can be lost (the ledger keeps the
fact; alert on ``raftcron_fires_total`` for anything that must never be missed).

Nothing here blocks the scheduler or the executor: hooks only create background tasks,
at most :data:`MAX_PENDING` at a time (more are dropped and counted). Each attempt has a
timeout; failures are retried with exponential backoff (0.5 s doubling, at most 30 s).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

import aiohttp
import orjson

from raftcron.config import NotifyConfig
from raftcron.core import commands as c
from raftcron.core.model import (
    COMPLETION_STATUSES,
    FAILED,
    LOST,
    SUCCEEDED,
    TIMED_OUT,
    TRIGGER_BUFFERED,
    JobSpec,
    Run,
)
from raftcron.core.state import Ok, PlanOutcome, Result, State
from raftcron.raft.node import Machine
from raftcron.timefmt import rfc3339

logger = logging.getLogger(__name__)

MAX_PENDING: Final = 1_000
BACKOFF_BASE_S: Final = 0.5
BACKOFF_CAP_S: Final = 30.0
OUTPUT_TAIL_CHARS: Final = 4_096  # in a webhook body
PING_BODY_CHARS: Final = 10_000  # healthchecks.io keeps the request body as the ping's log
FAILURE_STATUSES: Final = frozenset({FAILED, TIMED_OUT, LOST})
# Statuses a receiver would not fix by itself: no point in retrying them.
_PERMANENT: Final = frozenset(range(400, 500)) - {408, 425, 429}

WEBHOOK: Final = "webhook"
PING: Final = "ping"


def _rfc3339(ms: int | None) -> str | None:
    return None if ms is None else rfc3339(ms)


# ---------------------------------------------------------------- deciding (pure)


def completion_events(status: str, previous: str | None) -> tuple[str, ...]:
    """The events of a committed completion, given the job's previous completed status."""
    if status in FAILURE_STATUSES:
        return ("failure",)
    if status == SUCCEEDED and previous in FAILURE_STATUSES:
        return ("recovered",)
    return ()


def previous_completion(state: State, run: Run) -> str | None:
    """The status of the job's newest completed run (succeeded/failed/timed_out/lost)
    recorded before ``run``; missed, skipped and paused records do not count."""
    prev = state.newest_record(run.job, COMPLETION_STATUSES, before=run.id)
    return None if prev is None else prev.status


def is_late(started_ms: int, due_ms: int, trigger: str, late_after_ms: int) -> bool:
    return trigger != TRIGGER_BUFFERED and started_ms - due_ms > late_after_ms


def targets(spec: JobSpec, defaults: NotifyConfig, event: str) -> list[str]:
    """The webhook URLs that want ``event`` for this job: its own ``notify``, or the
    cluster's ``[notify] webhooks`` when it has none."""
    chosen = spec.notify if spec.notify is not None else defaults.webhooks
    return [t.url for t in chosen if event in t.on]


def event_body(event: str, run: Run, *, status: str | None = None) -> dict[str, Any]:
    """The JSON body of a webhook."""
    body: dict[str, Any] = {
        "event": event,
        "job": run.job,
        "run_id": run.id,
        "node": run.node,
        "fence": run.fence,
        "status": status or run.status,
        "exit_code": run.exit_code,
        "scheduled_at": _rfc3339(run.scheduled_at_ms),
        "started_at": _rfc3339(run.started_ms),
        "finished_at": _rfc3339(run.finished_ms),
        "output_tail": run.output[-OUTPUT_TAIL_CHARS:],
        "reason": run.reason,
        "attempt": run.attempt,
        "trigger": run.trigger,
        "count": run.count,  # fires covered: > 1 only for an aggregated missed record
    }
    return body


def ping_url(base: str, phase: str, status: str = "", exit_code: int | None = None) -> str:
    """``phase`` "start" or "end": the URL of the ping (healthchecks.io convention)."""
    if phase == "start":
        return base + "/start"
    if status == SUCCEEDED:
        return base
    if status == FAILED and exit_code is not None and 1 <= exit_code <= 255:
        return f"{base}/{exit_code}"
    return base + "/fail"


# ---------------------------------------------------------------- sending


@dataclass(frozen=True, slots=True)
class Message:
    kind: str  # WEBHOOK or PING
    url: str
    body: bytes
    headers: Mapping[str, str]
    key: str  # for logs (and the idempotency key of a webhook)


class Notifier:
    """Sends notifications of one node in background tasks. Every hook is called on the
    event loop and returns at once."""

    def __init__(
        self,
        *,
        node: str,
        config: NotifyConfig,
        machine: Machine,
        is_leader: Callable[[], bool],
        count: Callable[[str, str], None] | None = None,
        max_pending: int = MAX_PENDING,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        backoff_base: float = BACKOFF_BASE_S,
        backoff_cap: float = BACKOFF_CAP_S,
    ) -> None:
        self.node = node
        self.config = config
        self.machine = machine
        self.is_leader = is_leader
        self._count = count
        self.max_pending = max_pending
        self._sleep = sleep
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._tasks: set[asyncio.Task[None]] = set()
        self._chains: dict[str, asyncio.Task[None]] = {}  # run id -> its last ping
        self._session: aiohttp.ClientSession | None = None

    # -- hooks

    def executor_event(self, event: str, rid: str, fields: dict[str, Any]) -> None:
        """The executor's ``tell``: "started" and "completed" of runs on this node."""
        if event not in ("started", "completed"):
            return
        found = self.machine.read(lambda s: _with_previous(s, rid))
        if found is None:
            return
        run, spec, previous = found
        if event == "started":
            if spec.ping_url is not None:
                self.ping(rid, ping_url(spec.ping_url, "start"))
            late_after = spec.late_after_ms or self.config.late_after_ms
            due = int(fields.get("due_ms", run.scheduled_at_ms))
            started = int(fields.get("started_ms", run.started_ms or 0))
            if is_late(started, due, str(fields.get("trigger", run.trigger)), late_after):
                late = _replace_started(run, started)
                self.webhooks(spec, "late", late, status="running")
            return
        accepted = bool(fields.get("accepted"))
        status = run.status if accepted else str(fields.get("status", ""))
        if spec.ping_url is not None:
            # A completion refused as stale: the lease had passed, the ledger says lost.
            exit_code = run.exit_code if spec.http is None else None
            end = ping_url(spec.ping_url, "end", status if accepted else LOST, exit_code)
            tail = run.output[-PING_BODY_CHARS:] if accepted else ""
            self.ping(rid, end, tail.encode("utf-8", errors="replace"))
        if accepted:  # a refused completion: the ledger says lost, the leader tells
            for ev in completion_events(status, previous):
                self.webhooks(spec, ev, run)

    def on_commit(self, cmd: c.Command | None, res: Result) -> None:
        """Every applied command: the leader tells about missed fires and expired leases."""
        if not isinstance(res, Ok):
            return
        rids: list[str] = []
        match cmd:
            case c.Plan() if isinstance(res.value, PlanOutcome):
                rids = list(res.value.missed)
            case c.Expire():
                rids = [cmd.run_id]
        if not rids or not self.is_leader():
            return
        found = self.machine.read(lambda s: [s.run_and_spec(rid) for rid in rids])
        for item in found:
            if item is None:
                continue
            run, spec = item
            event = "failure" if run.status in FAILURE_STATUSES else "missed"
            self.webhooks(spec, event, run)

    # -- building messages

    def webhooks(self, spec: JobSpec, event: str, run: Run, *, status: str | None = None) -> None:
        urls = targets(spec, self.config, event)
        if not urls:
            return
        body = orjson.dumps(event_body(event, run, status=status))
        key = f"{run.id}/{event}"
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "raftcron",
            "Idempotency-Key": key,
            "X-Raftcron-Event": event,
        }
        for url in urls:
            self.submit(Message(WEBHOOK, url, body, headers, key))

    def ping(self, rid: str, url: str, body: bytes = b"") -> None:
        """A ping; the pings of one run go out in order (``/start`` before the end)."""
        headers = {"User-Agent": "raftcron", "Content-Type": "text/plain; charset=utf-8"}
        self.submit(Message(PING, url, body, headers, rid), chain=rid)

    # -- delivery

    def submit(self, msg: Message, chain: str | None = None) -> bool:
        """Queue ``msg`` for delivery; False (and counted as dropped) when too many are
        pending."""
        if len(self._tasks) >= self.max_pending:
            logger.warning(
                "notify: %d pending; dropping %s %s", len(self._tasks), msg.kind, msg.url
            )
            self._counted(msg.kind, "dropped")
            return False
        after = self._chains.get(chain) if chain is not None else None
        task = asyncio.get_running_loop().create_task(self._deliver(msg, after))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if chain is not None:
            self._chains[chain] = task
            task.add_done_callback(functools.partial(self._forget_chain, chain))
        return True

    def _forget_chain(self, key: str, task: asyncio.Task[None]) -> None:
        if self._chains.get(key) is task:
            del self._chains[key]

    def pending(self) -> int:
        return len(self._tasks)

    def _counted(self, kind: str, result: str) -> None:
        if self._count is not None:
            self._count(kind, result)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _deliver(self, msg: Message, after: asyncio.Task[None] | None) -> None:
        timeout = self.config.timeout_ms / 1000
        if after is not None:  # the run's earlier ping first (it has its own deadline)
            await asyncio.wait({after})
        attempts = self.config.retries + 1
        problem = ""
        for attempt in range(attempts):
            try:
                async with asyncio.timeout(timeout):
                    async with self._http().post(
                        msg.url, data=msg.body, headers=dict(msg.headers)
                    ) as resp:
                        await resp.read()
                        code = resp.status
                if 200 <= code < 300:
                    self._counted(msg.kind, "sent")
                    logger.info("notify: %s %s sent (%s)", msg.kind, msg.url, msg.key)
                    return
                problem = f"HTTP {code}"
                if code in _PERMANENT:
                    break
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                problem = f"no answer within {timeout:g}s"
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt + 1 < attempts:
                await self._sleep(min(self.backoff_cap, self.backoff_base * 2**attempt))
        self._counted(msg.kind, "failed")
        logger.warning(
            "notify: %s %s failed after %d attempt(s): %s (%s)",
            msg.kind,
            msg.url,
            attempt + 1,
            problem,
            msg.key,
        )

    async def close(self, grace: float = 2.0) -> None:
        """Give pending deliveries ``grace`` seconds, then cancel them; close the session."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()


def _with_previous(state: State, rid: str) -> tuple[Run, JobSpec, str | None] | None:
    found = state.run_and_spec(rid)
    if found is None:
        return None
    run, spec = found
    return run, spec, previous_completion(state, run)


def _replace_started(run: Run, started_ms: int) -> Run:
    return replace(run, started_ms=started_ms, status="running")
