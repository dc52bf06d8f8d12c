"""The composition root: everything one raftcron node runs, in one asyncio TaskGroup.

Threads: the asyncio loop (API, executor, leader work) and pysyncobj's tick thread
(Raft, apply). The tick thread hands every applied command to the loop with
``call_soon_threadsafe``, in commit order; nothing on the loop acts on anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from aiohttp import web

from raftcron.api.app import build_app
from raftcron.clock import Clock, system_clock
from raftcron.config import Config, NodeConfig
from raftcron.core import commands as c
from raftcron.core.planner import NodeInfo
from raftcron.core.state import Ok, PlanOutcome, Result
from raftcron.executor.runner import Executor
from raftcron.raft.node import Machine, RaftNode, RaftSettings, RaftStatus
from raftcron.scheduler.leader import Leader, LeaseTracker

logger = logging.getLogger(__name__)


class Node:
    def __init__(self, config: Config, name: str, clock: Clock | None = None) -> None:
        self.config = config
        self.me: NodeConfig = config.node(name)
        self.name = name
        self.clock = clock or system_clock()
        self.data_dir: Path = self.me.data_dir
        self.by_raft = {str(n.raft): n for n in config.cluster.nodes}
        self.settings = RaftSettings(
            self_addr=str(self.me.raft),
            peers=[str(n.raft) for n in config.cluster.nodes if n.name != name],
            password=config.cluster.secret,
            data_dir=self.data_dir / "raft",
            # Tests and benchmarks shrink this to exercise snapshots; operators leave it.
            compaction_min_entries=int(os.environ.get("RAFTCRON_COMPACT_ENTRIES", "5000")),
        )
        self.machine = Machine()
        self.raft = RaftNode(self.settings, self.machine)
        self.leases = LeaseTracker(self.clock)
        self.executor = Executor(
            node=name, raft=self.raft, clock=self.clock, data_dir=self.data_dir
        )
        self.leader: Leader | None = None
        self._leader_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.leader_changes = 0
        self.failed: str | None = None

    # -- views used by the API

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

    def live_nodes(self) -> list[NodeInfo]:
        st = self.raft.status
        out = [NodeInfo(name=self.name, tags=self.me.tags)]
        for addr in sorted(st.connected):
            node = self.by_raft.get(addr)
            if node is not None:
                out.append(NodeInfo(name=node.name, tags=node.tags))
        return out

    # -- apply stream (tick thread -> loop)

    def _observe(self, cmd: c.Command | None, res: Result) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._on_commit, cmd, res)

    def _restored(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._on_restore)

    def _on_restore(self) -> None:
        now_leases = self.machine.read(lambda s: list(s.leases.values()))
        for lz in now_leases:
            self.leases.touch(lz.key, lz.fence, lz.lease_ms)
        if self.leader is not None:
            self.leader.jobs_changed(None)
        self.executor.resume()

    def _touch(self, rid: str, fence: int) -> None:
        lease = self.machine.read(lambda s: s.leases.get(rid))
        if lease is not None and lease.fence == fence:
            self.leases.touch(rid, fence, lease.lease_ms)

    def _on_commit(self, cmd: c.Command | None, res: Result) -> None:
        changed: list[str] = []
        match cmd:
            case c.Plan() if isinstance(res, Ok) and isinstance(res.value, PlanOutcome):
                for rid, fence, node in res.value.granted:
                    self._touch(rid, fence)
                    self.executor.on_granted(rid, fence, node)
            case c.Start() | c.Renew() if isinstance(res, Ok):
                self._touch(cmd.run_id, cmd.fence)
            case c.Complete() | c.Expire() if isinstance(res, Ok):
                self.leases.forget(cmd.run_id)
            case c.PutJob():
                changed.append(cmd.spec.name)
            case c.DeleteJob() | c.SetPaused():
                changed.append(cmd.name)
            case c.SyncConfig() if isinstance(res, Ok):
                changed.extend(res.value)
        if changed and self.leader is not None:
            self.leader.jobs_changed(changed)

    # -- leadership

    def _on_status(self, st: RaftStatus) -> None:
        leader = self.leader
        if leader is not None and (not st.is_leader or st.term != leader.term):
            logger.warning("node %s: leadership of term %d lost", self.name, leader.term)
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
            config_jobs=self.config.jobs,
            history=self.config.cluster.history,
            live_nodes=self.live_nodes,
            election_timeout=self.settings.max_timeout,
        )
        self.leader = leader
        logger.info("node %s: became leader of term %d; committing a barrier", self.name, term)
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

    # -- run

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self.machine.observer = self._observe
        self.machine.on_restore = self._restored
        self.raft.add_status_listener(self._on_status)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.raft.start()
        app = build_app(self)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.me.api.host, self.me.api.port, reuse_address=True)
        try:
            await site.start()
            logger.info(
                "node %s: raft on %s, API on http://%s", self.name, self.me.raft, self.me.api
            )
            self.executor.resume()
            while not stop.is_set():
                reason = self.raft.fatal()
                if reason is not None:
                    logger.critical(
                        "node %s: %s; stopping (fix the data dir, then restart)", self.name, reason
                    )
                    self.failed = reason
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
        finally:
            logger.info("node %s: stopping", self.name)
            self._stop_leader()
            await self.executor.stop()
            await runner.cleanup()
            self.raft.stop()
            self._loop = None
