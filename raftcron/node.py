"""The composition root: everything one raftcron node runs, in one asyncio TaskGroup.

Threads: the asyncio loop (API, executor, leader work) and pysyncobj's tick thread
(Raft, apply). The tick thread hands every applied command to the loop with
``call_soon_threadsafe``, in commit order; nothing on the loop acts on anything else.

Life cycle: :meth:`Node.run` first takes the data dir's lock (``raftcron/datadir.py``:
one agent per data dir), then starts Raft, the API and the executor. It ends when
``stop`` is set (SIGTERM, SIGINT: first a drain of at most ``[cluster] shutdown_drain``,
``raftcron/drain.py``; a second signal skips the rest of it) or at once when Raft
reports a storage failure (one CRITICAL line naming the file and the fix; the node
exits non-zero, docs/operations.md, "Health").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Final, TypeVar

from aiohttp import web

from raftcron import hardening, hooks, memory
from raftcron.api.app import build_app
from raftcron.api.auth import AUTHORIZER_KEY, Authorizer, server_ssl_context
from raftcron.api.server import ApiRunner
from raftcron.clock import Clock, system_clock
from raftcron.config import Config, ConfigError, NodeConfig, passthrough_leaks, secret_values
from raftcron.core import commands as c
from raftcron.core import features
from raftcron.core.planner import NodeInfo
from raftcron.core.state import (
    ArmOutcome,
    LockCancelled,
    LockEnded,
    LockGrant,
    LockQueued,
    Ok,
    PlanOutcome,
    Result,
    State,
)
from raftcron.datadir import DataDirLock
from raftcron.drain import DrainControl
from raftcron.executor.runner import Executor
from raftcron.membership import MemberInfo, MembershipControl
from raftcron.metrics import NodeMetrics
from raftcron.notify import Notifier
from raftcron.raft.node import Machine, RaftNode, RaftSettings, RaftStatus
from raftcron.reload import ConfigControl
from raftcron.scheduler.leader import Leader, LeaseTracker

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Node:
    """One raftcron node; it implements the API's port (``raftcron/api/port.py``)."""

    def __init__(
        self,
        config: Config,
        name: str,
        clock: Clock | None = None,
        dir_lock: DataDirLock | None = None,
        cluster_id: str = "",
    ) -> None:
        # The file's jobs are kept packed (a leader unpacks them to reconcile the file,
        # once per term); ``self.config`` has none, so once the caller lets go of its
        # ``Config`` the parsed specs are freed (``run`` then returns the memory).
        self.config_jobs = c.PackedSpecs.pack(config.jobs)
        self.config = replace(config, jobs=())
        self.me: NodeConfig = config.node(name)
        self.name = name
        test_hooks = hooks.current()  # set by test harnesses only
        self.clock = clock or test_hooks.clock or system_clock()
        self.data_dir: Path = self.me.data_dir
        # 0700, and everything in it private to the agent's account, before anything in
        # it is created (the executor's output dir below, Raft's files at start).
        hardening.prepare_data_dir(self.data_dir, name)
        self.settings = RaftSettings(
            self_addr=str(self.me.raft),
            peers=[str(n.raft) for n in config.cluster.nodes if n.name != name],
            password=config.cluster.secret,
            previous_password=config.cluster.previous_secret,
            data_dir=self.data_dir / "raft",
            # Tests shrink this to exercise snapshots (raftcron.hooks); operators leave it.
            **(
                {}
                if test_hooks.compaction_min_entries is None
                else {"compaction_min_entries": test_hooks.compaction_min_entries}
            ),
        )
        # A new member of a cluster with an id (a restored one) starts with it (--cluster-id,
        # printed by raftcron members add): its empty state then says it in the Raft
        # handshake, and the leader's snapshot brings the same id. Checked at start.
        self.cluster_id = cluster_id
        self.machine = Machine(State(cluster_id=cluster_id))
        self.raft = RaftNode(self.settings, self.machine)
        self.leases = LeaseTracker(self.clock)
        self.metrics = NodeMetrics(
            node=name,
            clock=self.clock,
            machine=self.machine,
            raft_status=lambda: self.raft.status,
            executor_active=lambda: self.executor.active_count(),
            members=lambda: tuple(m.name for m in self.members()),
            peers=lambda: {str(m.raft): m.name for m in self.members() if m.name != name},
            max_job_series=lambda: self.config.metrics.max_job_series,
        )
        self.raft.on_committed = self.metrics.on_proposal
        self.notifier = Notifier(
            node=name,
            config=config.notify,
            machine=self.machine,
            is_leader=lambda: self.raft.status.is_leader,
            count=self.metrics.notification,
        )
        self.executor = Executor(
            node=name,
            raft=self.raft,
            clock=self.clock,
            data_dir=self.data_dir,
            tell=self._executor_event,
            # Runs of this node in their start phase at once (docs/operations.md, "Bursts of
            # runs"): the node's max_starting, or RAFTCRON_MAX_STARTING in the agent's environment.
            max_starting=max_starting(self.me, os.environ),
            secret_values=secret_values(config),
            lifecycle_batches=self._lifecycle_batches,
        )
        self.api_scheme = "https" if config.api.tls_cert is not None else "http"
        self.leader: Leader | None = None
        self._leader_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.leader_changes = 0
        self.failed: str | None = None
        # The data dir's lock, taken before anything touches the dir (by the CLI before it
        # builds the node, else by run()); held until run() ends.
        self.dir_lock = dir_lock
        self.drain = DrainControl(self)
        # Its file's config_hash, drift, reload (SIGHUP, the API): raftcron/reload.py.
        self.configctl = ConfigControl(self, config)
        # Pre-vote and leader stickiness once every member advertises level 3 (asked on
        # the tick thread; reads the replicated member levels under the machine's lock).
        self.raft.prevote_gate = lambda: features.prevote_on(self.configctl.levels())
        self.app: web.Application | None = None
        # Called on the loop with every applied command, after the node's own handling
        # (the lock API resolves its waiting requests from here).
        self.commit_listeners: list[Callable[[c.Command | None, Result], None]] = [
            self.notifier.on_commit,
            self.drain.on_commit,
        ]
        # The members (the replicated ones once seeded, else the file's: raftcron/membership.py).
        self.membership = MembershipControl(self)

    def _executor_event(self, event: str, rid: str, fields: dict[str, Any]) -> None:
        self.metrics.executor_event(event, rid, fields)
        try:
            self.notifier.executor_event(event, rid, fields)
        except Exception:
            logger.exception("node %s: notifier failed on %s of %s", self.name, event, rid)

    # -- views used by the API

    def members(self) -> tuple[MemberInfo, ...]:
        """The members: the replicated ones once seeded, else the cluster file's."""
        return self.membership.members()

    @property
    def by_raft(self) -> dict[str, MemberInfo]:
        return {str(m.raft): m for m in self.members()}

    def node_name(self, raft_addr: str | None) -> str | None:
        if raft_addr is None:
            return None
        node = self.by_raft.get(raft_addr)
        return node.name if node else raft_addr

    def status(self) -> RaftStatus:
        return self.raft.status

    def is_established_leader(self) -> bool:
        leader = self.leader
        return bool(
            leader is not None and self.raft.status.is_leader and leader.established.is_set()
        )

    def read(self, query: Callable[[State], T]) -> T:
        return self.machine.read(query)

    async def propose(self, cmd: c.Command, timeout: float) -> Result:  # noqa: ASYNC109 - a deadline per proposal is the contract
        return await self.raft.propose(cmd, timeout)

    def leader_fresh(self) -> bool:
        return self.raft.leader_fresh()

    def apply_lag(self) -> float:
        return self.raft.apply_lag()

    def fsync_count(self) -> int:
        return self.raft.fsync_count()

    def fatal(self) -> str | None:
        return self.raft.fatal()

    async def transfer_leadership(self, target: str | None, timeout: float) -> str:  # noqa: ASYNC109 - a deadline is the contract
        return await self.raft.transfer_leadership(target, timeout)

    def executing(self) -> int:
        return self.executor.active_count()

    def passthrough_leaks(self, names: Collection[str]) -> list[tuple[str, str]]:
        ex = self.executor
        return passthrough_leaks(names, ex.agent_env, ex.secret_values)

    def drain_successor(self) -> str | None:
        return self.drain.successor()

    def config_status(self) -> dict[str, Any]:
        return self.configctl.status_json()

    def feature_refusal(self, cmd: c.Command) -> features.Refusal | None:
        return self.configctl.refusal(cmd)

    def _lifecycle_batches(self) -> bool:
        """Whether the executor may batch its lifecycle commands (``Lifecycle``): every
        member advertises its level (the gate), and ``RAFTCRON_LIFECYCLE_BATCH=0`` in the
        agent's environment does not turn it off (for before/after measurements)."""
        if os.environ.get(LIFECYCLE_BATCH_ENV, "1") == "0":
            return False
        return self.configctl.refusal(c.Lifecycle(at_ms=0, items=())) is None

    async def reload_config(self) -> dict[str, Any]:
        return await self.configctl.reload()

    def live_nodes(self) -> list[NodeInfo]:
        """The members that may get work now: this one and those that answer, among the
        members (a removed member, or one added but not yet in Raft's configuration, gets
        none)."""
        st = self.raft.status
        by_raft = self.by_raft
        me = by_raft.get(str(self.me.raft))
        out = [] if me is None else [NodeInfo(name=self.name, tags=me.tags)]
        for addr in sorted((st.responsive if st.is_leader else st.connected) & st.config):
            node = by_raft.get(addr)
            if node is not None:
                out.append(NodeInfo(name=node.name, tags=node.tags))
        return out

    # -- apply stream (tick thread -> loop)

    def _observe(self, cmd: c.Command | None, res: Result) -> None:
        if isinstance(cmd, c.Plan) and isinstance(res, Ok) and isinstance(res.value, PlanOutcome):
            # armed runs granted here go now, from this (Raft) thread: the loop's turn to
            # hear of the commit costs 1-3 ms at the second (docs/design.md, "Armed fires")
            self.executor.go_armed(res.value.granted, res.value.stopping)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._on_commit, cmd, res)

    def _restored(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._on_restore)

    def _on_restore(self) -> None:
        now_leases = self.machine.read(lambda s: s.lease_list())
        for lz in now_leases:
            self.leases.touch(lz.key, lz.fence, lz.lease_ms, lz.renewals)
        for lk in self.machine.read(lambda s: s.lock_list()):
            self.leases.touch_lock(lk.name, lk.fence, lk.ttl_ms, lk.renewals)
            for w in lk.waiters:
                self.leases.touch_waiter(lk.name, w.request, w.wait_ms)
        if self.leader is not None:
            self.leader.jobs_changed(None)
        self.executor.resume()

    def _touch(self, rid: str, fence: int) -> None:
        lease = self.machine.read(lambda s: s.lease(rid))
        if lease is not None and lease.fence == fence:
            self.leases.touch(rid, fence, lease.lease_ms, lease.renewals)

    def _on_commit(self, cmd: c.Command | None, res: Result) -> None:
        changed: list[str] = []
        self._react(cmd, res, changed)
        if changed and self.leader is not None:
            self.leader.jobs_changed(changed)
        for fn in self.commit_listeners:
            try:
                fn(cmd, res)
            except Exception:
                logger.exception("node %s: commit listener failed", self.name)

    def _react(self, cmd: c.Command | None, res: Result, changed: list[str]) -> None:
        """What a committed command means for this node (lease tracker, executor, the
        scheduler's jobs to look at again: ``changed``); a batch item by item."""
        match cmd:
            case c.Lifecycle() if isinstance(res, Ok) and isinstance(res.value, tuple):
                for item, item_res in zip(cmd.items, res.value, strict=False):
                    self._react(item, item_res, changed)
            case c.Plan() if isinstance(res, Ok) and isinstance(res.value, PlanOutcome):
                for rid, fence, node in res.value.granted:
                    self._touch(rid, fence)
                    self.executor.on_granted(rid, fence, node)
                for rid in res.value.stopping:
                    self.executor.on_kill(rid)
                self.executor.check_armed()
            case c.Arm() if isinstance(res, Ok) and isinstance(res.value, ArmOutcome):
                for rid, fence, node in res.value.armed:
                    self.executor.on_armed(rid, fence, node)
            case c.Start() | c.Renew() if isinstance(res, Ok):
                self._touch(cmd.run_id, cmd.fence)
            case c.Complete() | c.Expire() if isinstance(res, Ok):
                self.leases.forget(cmd.run_id)
                rid = cmd.run_id
                job = self.machine.read(lambda s: s.job_of(rid))
                if job:  # a buffered run or a retry of it may go now: tell the scheduler
                    changed.append(job)
            case c.Kill() if isinstance(res, Ok):
                self.executor.on_kill(cmd.run_id)
                rid = cmd.run_id
                job = self.machine.read(lambda s: s.job_of(rid))
                if job:  # a buffered or pending run of it may have ended
                    changed.append(job)
            case c.PutJob():
                changed.append(cmd.spec.name)
                self.executor.check_armed()
            case c.DeleteJob() | c.SetPaused():
                changed.append(cmd.name)
                self.executor.check_armed()
            case c.StartBackfill() | c.CancelBackfill():
                changed.append(cmd.job)
            case c.SyncConfig() if isinstance(res, Ok):
                changed.extend(res.value)
                self.executor.check_armed()
            case c.AcquireLock() if isinstance(res, Ok) and isinstance(res.value, LockQueued):
                self.leases.touch_waiter(cmd.name, cmd.request, cmd.wait_ms)
            case (
                c.AcquireLock()
                | c.RenewLock()
                | c.ReleaseLock()
                | c.ExpireLock()
                | c.CancelLockWait()
            ) if isinstance(res, Ok):
                self._track_lock(res.value)

    def _track_lock(self, value: object) -> None:
        """Feed the lease tracker from a committed lock command's result."""
        match value:
            case LockGrant():
                self.leases.forget_waiter(value.name, value.request)
                self.leases.touch_lock(value.name, value.fence, value.ttl_ms, value.renewals)
            case LockEnded():
                self.leases.forget_lock(value.name, value.fence)
                if value.granted is not None:
                    self._track_lock(value.granted)
            case LockCancelled():
                self.leases.forget_waiter(value.name, value.request)

    # -- leadership

    def _on_status(self, st: RaftStatus) -> None:
        if st.ready:
            # Caught up with the log: from here on a grant is live, not a replay (the
            # executor ignored the replayed ones; it now resumes what is still ours).
            self.executor.caught_up()
        leader = self.leader
        if leader is not None and (not st.is_leader or st.term != leader.term):
            logger.warning(
                "node %s: leadership of term %d lost",
                self.name,
                leader.term,
                extra={"event": "leader_lost", "term": leader.term},
            )
            self._stop_leader()
        if st.is_leader and self.leader is None:
            self._start_leader(st.term)

    def _start_leader(self, term: int) -> None:
        self.leader_changes += 1
        leader = Leader(
            node=self.name,
            term=term,
            raft=self.raft,
            clock=self.clock,
            leases=self.leases,
            config_jobs=self.config_jobs,
            history=self.config.cluster.history,
            live_nodes=self.live_nodes,
            election_timeout=self.settings.max_timeout,
            stopping=lambda: self.drain.stopping,
            config_hash=self.configctl.hash,
            levels=self.configctl.levels,
        )
        self.leader = leader
        logger.info(
            "node %s: became leader of term %d; committing a barrier",
            self.name,
            term,
            extra={"event": "leader_elected", "term": term},
        )
        self._leader_task = asyncio.get_running_loop().create_task(
            self._lead(leader), name=f"leader term {term}"
        )

    async def _lead(self, leader: Leader) -> None:
        while True:
            try:
                await leader.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception(
                    "node %s: leader loop of term %d failed; restarting", self.name, leader.term
                )
                await asyncio.sleep(1.0)

    def _stop_leader(self) -> None:
        task, self._leader_task = self._leader_task, None
        self.leader = None
        if task is not None:
            task.cancel()

    # -- reload

    def apply_config(self, config: Config, jobs: c.PackedSpecs) -> None:
        """A reload's running configuration (``raftcron/reload.py``; ``config`` has no
        jobs, and the secret, members and TLS files of the one it replaces): the file's
        jobs, the API tokens and the ``[notify]`` settings take effect now."""
        self.config = config
        self.config_jobs = jobs
        self.notifier.config = config.notify
        if self.app is not None:
            self.app[AUTHORIZER_KEY].current = Authorizer.from_config(config.api)

    # -- run

    def _check_storage(self) -> bool:
        """Whether Raft reports a storage failure; the first time, say so (``failed``)."""
        reason = self.raft.fatal()
        if reason is not None and self.failed is None:
            # the one line an operator needs: the file, the error, the fix
            logger.critical("node %s: stopping (exit status 1): %s", self.name, reason)
            self.failed = reason
        return reason is not None

    async def _watch(self, stop: asyncio.Event, removed: asyncio.Event | None = None) -> None:
        """Until ``stop`` is set, Raft reports a storage failure (``self.failed``) or this
        node learns it was removed (``removed``, ``self.membership.removed``)."""
        while not stop.is_set() and not (removed is not None and removed.is_set()):
            if self._check_storage():
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):  # not wait_for: it can lose a cancel (3.11)
                    await stop.wait()

    def skip_drain(self) -> None:
        """A second stop signal: end the shutdown drain now."""
        self.drain.hurry.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set. Raises :class:`~raftcron.datadir.DataDirInUse`
        before touching anything when another agent holds the data dir."""
        own_lock = self.dir_lock is None
        if self.dir_lock is None:
            self.dir_lock = DataDirLock.acquire(self.data_dir)
        try:
            await self._run(stop)
        finally:
            if own_lock and self.dir_lock is not None:
                self.dir_lock.release()
                self.dir_lock = None

    async def _run(self, stop: asyncio.Event) -> None:
        try:
            tls = server_ssl_context(self.config.api)
        except ConfigError as exc:
            self.failed = f"{self.config.path}: {exc}"
            logger.critical("node %s: %s", self.name, self.failed)
            return
        # Give back what loading the config left behind (tomllib's tables, the parsed
        # specs: a high-water mark of ~300 MB for a 100,000-job file) before Raft starts,
        # while a full collection's pause does no harm.
        memory.release()
        self._loop = asyncio.get_running_loop()
        self.machine.observer = self._observe
        self.machine.on_restore = self._restored
        self.raft.add_status_listener(self._on_status)
        self.raft.add_status_listener(self.metrics.on_status)
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.raft.start()
        have = self.machine.read(lambda s: s.cluster_id)
        if self.cluster_id and have != self.cluster_id:
            self.membership.removed = (
                f"node {self.name}: --cluster-id {self.cluster_id} was given, but the data "
                f"dir {self.data_dir} belongs to cluster {have or '(without an id)'}: give "
                "--cluster-id only to a new member started with an empty data dir (or leave "
                "it out)"
            )
            logger.critical("%s (exit status 2)", self.membership.removed)
            self.raft.stop()
            return
        app = self.app = build_app(self)
        runner = ApiRunner(app)
        await runner.setup()
        site = web.TCPSite(
            runner, self.me.api.host, self.me.api.port, reuse_address=True, ssl_context=tls
        )
        try:
            await site.start()
            logger.info(
                "node %s: raft on %s, API on %s://%s",
                self.name,
                self.me.raft,
                self.api_scheme,
                self.me.api,
            )
            drain_task = asyncio.get_running_loop().create_task(self.drain.run(), name="drain")
            config_task = asyncio.get_running_loop().create_task(
                self.configctl.run(), name="config"
            )
            removed = asyncio.Event()  # set by the membership loop: this node was removed
            members_task = asyncio.get_running_loop().create_task(
                self.membership.run(removed), name="membership"
            )
            try:
                await self._watch(stop, removed)
            finally:
                # (its clearing of a shutdown drain must not meet the one that starts now)
                drain_task.cancel()
                config_task.cancel()
                members_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await drain_task
                with contextlib.suppress(asyncio.CancelledError):
                    await config_task
                with contextlib.suppress(asyncio.CancelledError):
                    await members_task
            try:
                if self.failed is None and self.membership.removed is None:
                    await self.drain.shutdown(self.config.cluster.shutdown_drain_ms / 1000)
                    self._check_storage()  # (it may have failed while draining)
            finally:
                await self.drain.close()
        finally:
            logger.info("node %s: stopping", self.name)
            self._stop_leader()
            await self.executor.stop()
            await self.notifier.close()
            await runner.cleanup()
            self.raft.stop()
            self._loop = None


MAX_STARTING_ENV: Final = "RAFTCRON_MAX_STARTING"
# "0" turns the executor's lifecycle batches off (raftcron/executor/batch.py): each Start,
# renewal and Complete is then its own entry, as before level 4 (a before/after knob).
LIFECYCLE_BATCH_ENV: Final = "RAFTCRON_LIFECYCLE_BATCH"


def max_starting(me: NodeConfig, environ: Mapping[str, str]) -> int:
    """The node's ``max_starting``, overridden by ``RAFTCRON_MAX_STARTING`` (an operator
    knob, docs/operations.md, "Bursts of runs")."""
    value = environ.get(MAX_STARTING_ENV)
    return me.max_starting if not value else int(value)
