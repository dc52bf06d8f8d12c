"""Embedded Python jobs: a raftcron node inside an application, running its callables.

```python
from raftcron.embed import Cluster

cluster = Cluster.from_config("cluster.toml", node="a")

@cluster.job("*/5 * * * *", name="send-reminders", timeout="1m", overlap="skip")
async def send_reminders(run):      # run: RunContext (job, run_id, fence, scheduled_at, ...)
    ...

await cluster.run()                 # or start()/stop() inside a running loop; run_forever()
```

Design (why it is this simple):

* **Every process of the application registers the same jobs.** The embedded jobs join the
  file's jobs in the set the leader reconciles on taking over (``SyncConfig``); they are
  stored with ``source = "embedded"`` and a ``call`` naming the callable
  (``module:qualname``), so they are replicated, paused, listed and recorded like any
  other job, and the API refuses to replace or delete them (change the code instead).
  Because every member registers them, every member is an eligible executor and the
  planner needs no new idea. A member without the callable (a plain ``raftcron agent``,
  or a process of an older release during a deploy) that is granted a run records it as
  ``failed`` and says why; keep such members out with ``tags``.
  Advertising each node's callables through Raft would allow mixed clusters, at the price
  of a new replicated command and a planner input; the same-code rule is how a service is
  deployed anyway, so it was left out.
* **The same lease path.** A run is claimed, fenced, started, renewed and completed exactly
  like a command (:mod:`raftcron.executor.inproc`), so the no-duplicate guarantees hold:
  a fire is ``(job, scheduled_at)`` and is granted once, and a killed process's run is
  recorded as ``lost``, never run again by someone else.
* **Self-fencing instead of a watchdog.** Nothing can kill a Python callable from outside
  its process. Async callables are cancelled before the lease runs out and at ``timeout``;
  sync callables (run in a thread of their own) cannot be stopped: they are told
  (``run.cancelled``, ``run.still_valid()``) and left to finish. Check
  ``run.still_valid()`` before side effects, or pass ``run.fence`` to a resource that
  refuses stale fences.

Build and run the node from the thread that runs its event loop (pysyncobj's tick thread
lives as long as the thread that created it).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

from raftcron.clock import Clock
from raftcron.config import Config, ConfigError, job_spec_from_mapping, load_config
from raftcron.core.jobfields import JOB_FIELDS
from raftcron.core.model import JobSpec
from raftcron.executor.inproc import Registered, RunContext, registered
from raftcron.node import Node

__all__ = ["Cluster", "ConfigError", "RunContext"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# Keys of a [[jobs]] table that mean nothing for a callable in this process: the command
# and the keys of the job's own process (the field table's command_only rows).
_NOT_FOR_EMBEDDED: Final = ("command", *(f.key for f in JOB_FIELDS if f.command_only and f.key))


def _key_value(value: object) -> object:
    if isinstance(value, timedelta):
        return value.total_seconds()  # durations take a number of seconds too
    return value


class Cluster:
    """One raftcron node in this process, plus the Python jobs it may run."""

    def __init__(self, config: Config, node: str, *, clock: Clock | None = None) -> None:
        config.node(node)  # ConfigError if the file has no such node
        self.config = config
        self.name = node
        self._clock = clock
        self._jobs: dict[str, tuple[JobSpec, Registered]] = {}
        self.node: Node | None = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, path: str | Path, node: str, *, clock: Clock | None = None) -> Cluster:
        """The cluster TOML file (the same on every server) and this process's node name."""
        return cls(load_config(path), node, clock=clock)

    # -- jobs

    def job(
        self,
        schedule: str | None = None,
        *,
        name: str | None = None,
        timezone: str | None = None,
        timeout: str | float | timedelta | None = None,
        overlap: str | None = None,
        catchup: str | float | timedelta | None = None,
        catchup_mode: str | None = None,
        jitter: str | float | timedelta | None = None,
        lease: str | float | timedelta | None = None,
        tags: Mapping[str, str] | None = None,
        **options: Any,
    ) -> Callable[[F], F]:
        """Register the decorated callable as a job on ``schedule`` (or, with no schedule,
        ``after=[...]`` other jobs: docs/jobs.md, Dependencies).

        The keys are those of a ``[[jobs]]`` table (docs/jobs.md), with the same
        defaults and validation; durations are strings such as ``"1m"``, seconds, or a
        ``timedelta``. ``name`` defaults to the function's name. Any other job key (e.g.
        ``retries``) goes in ``options``. The callable takes a :class:`RunContext` (or no
        argument); async callables run on the node's loop, sync ones in a thread.
        Raises :class:`ConfigError` with every problem found.
        """
        keys: dict[str, Any] = {
            "timezone": timezone,
            "timeout": timeout,
            "overlap": overlap,
            "catchup": catchup,
            "catchup_mode": catchup_mode,
            "jitter": jitter,
            "lease": lease,
            "tags": None if tags is None else dict(tags),
            **options,
        }

        def decorate(fn: F) -> F:
            self.add_job(fn, schedule, name=name, **keys)
            return fn

        return decorate

    def add_job(
        self,
        fn: Callable[..., Any],
        schedule: str | None,
        *,
        name: str | None = None,
        **keys: Any,
    ) -> JobSpec:
        """The decorator's work, callable directly; returns the job's validated spec."""
        if self.node is not None:
            raise RuntimeError("register every job before start(): the leader reconciles them")
        job_name = name if name is not None else getattr(fn, "__name__", "")
        where = f"job {job_name!r}"
        bad = sorted(k for k in keys if k in _NOT_FOR_EMBEDDED)
        if bad:
            raise ConfigError(
                [f"{where}: {k}: not for an embedded job (it runs in this process)" for k in bad]
            )
        table: dict[str, Any] = {
            "name": job_name,
            "command": ["embedded"],  # satisfies the table's rules; replaced by ``call``
        }
        if schedule is not None:  # else it needs after (the table's rules say so)
            table["schedule"] = schedule
        table.update({k: _key_value(v) for k, v in keys.items() if v is not None})
        spec = job_spec_from_mapping(table, where, default_lease_ms=self.config.cluster.lease_ms)
        try:
            entry = registered(spec.name, fn)
        except TypeError as exc:
            raise ConfigError([str(exc)]) from None
        if spec.name in self._jobs or any(j.name == spec.name for j in self.config.jobs):
            raise ConfigError([f"{where}: name: a job of that name is already defined"])
        spec = replace(spec, command=(), call=entry.call)
        self._jobs[spec.name] = (spec, entry)
        return spec

    @property
    def jobs(self) -> tuple[JobSpec, ...]:
        """The embedded jobs registered so far."""
        return tuple(spec for spec, _ in self._jobs.values())

    # -- the node

    @property
    def is_leader(self) -> bool:
        """Whether this process is the cluster's established leader right now."""
        return self.node is not None and self.node.is_established_leader()

    async def start(self) -> None:
        """Start the node on the running loop and return; :meth:`stop` ends it."""
        if self._task is not None:
            raise RuntimeError("this Cluster was already started")
        config = replace(self.config, jobs=self.config.jobs + self.jobs)
        node = Node(config, self.name, clock=self._clock)
        for _, entry in self._jobs.values():
            node.executor.inproc.register(entry)
        self.node = node
        self._stop = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            node.run(self._stop), name=f"raftcron node {self.name}"
        )
        self._task.add_done_callback(self._ended)
        await asyncio.sleep(0)  # let it bind its ports (or fail) before returning

    async def stop(self) -> None:
        """Stop the node (its running jobs are cancelled; their leases decide the rest)."""
        if self._stop is None or self._task is None:
            return
        self._stop.set()
        await self._task
        self._raise_if_failed()

    async def wait(self) -> None:
        """Until the node stops (:meth:`stop`, or a fatal error: then it raises)."""
        if self._task is None:
            raise RuntimeError("start() the Cluster first")
        await asyncio.shield(self._task)
        self._raise_if_failed()

    async def run(self, *, handle_signals: bool = True) -> None:
        """Start, then run until SIGINT/SIGTERM (with ``handle_signals``) or :meth:`stop`."""
        await self.start()
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, self._request_stop)
                    installed.append(sig)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass  # not the main thread: the application handles signals
        try:
            await self.wait()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            if self._task is not None and not self._task.done():
                await self.stop()

    def run_forever(self) -> None:
        """Blocking: run the node in a new event loop until SIGINT/SIGTERM."""
        asyncio.run(self.run())

    def _ended(self, task: asyncio.Task[None]) -> None:
        """Say so when the node ends by itself (an app that only called start() would
        not hear of it otherwise); :meth:`wait` and :meth:`stop` raise it too."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            logger.critical("raftcron node %s stopped: %r", self.name, exc, exc_info=exc)
        elif self.node is not None and self.node.failed is not None:
            logger.critical("raftcron node %s stopped: %s", self.name, self.node.failed)

    def _request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def _raise_if_failed(self) -> None:
        if self.node is not None and self.node.failed is not None:
            raise RuntimeError(f"raftcron node {self.name} stopped: {self.node.failed}")
