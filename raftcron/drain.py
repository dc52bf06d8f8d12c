"""This node's side of drain (docs/operations.md, "Drain, restarts and leadership").

A drain is replicated state (``State.drained``, the ``Drain`` command): the leader
places no new run on a drained member; what the member already runs finishes under its
leases. This module does what only the member itself can do:

* **Hand off leadership.** A drained member that leads (an operator drained it, it shuts
  down, or it won an election while drained) hands leadership to the most caught-up
  responsive member that is not drained, with Raft's TimeoutNow
  (:meth:`RaftNode.transfer_leadership`). With no such member it keeps leading (a cluster
  must have a leader) and says so once.
* **SIGTERM drains for at most ``[cluster] shutdown_drain``.** :meth:`DrainControl.shutdown`
  commits a ``shutdown`` drain of this member (an operator's drain is left as it is), hands
  leadership off, and waits until this member holds no live run or the time is up; then
  the node stops, and :meth:`Executor.stop` detaches from the command runs still going:
  they keep running under their watchdogs, and the restarted agent re-attaches to them
  (docs/operations.md, "Restarting a node"); an agent not back by a run's lease deadline finds it
  killed by its watchdog and ``lost``.
  A second signal ends the wait at once.
* **A shutdown drain ends with the restart.** As soon as a started member knows a leader
  it lifts a ``shutdown`` mark of its own (never an operator's, which stays until
  ``raftcron undrain``): once it has caught up only if it has one, before that in any case
  (the command is idempotent, and it comes after any mark of its earlier life in the log).
  A member that leads lifts its own before it schedules anything (``Leader.run``), so after
  every member was stopped at once the first leader can place runs at once.

Every proposal has a deadline and is idempotent; nothing here blocks the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Final, Protocol

from raftcron.clock import monotonic
from raftcron.core import commands as c
from raftcron.core.model import DRAIN_OPERATOR, DRAIN_SHUTDOWN, DrainMark
from raftcron.core.state import Ok, Result, State
from raftcron.raft.node import ProposalError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from raftcron.clock import Clock
    from raftcron.executor.runner import Executor
    from raftcron.membership import MemberInfo
    from raftcron.raft.node import Machine, RaftNode

logger = logging.getLogger(__name__)


class DrainHost(Protocol):
    """What drain needs of the node that owns it (``Node``; a Protocol, so this module
    does not import the node: ``tests/unit/test_import_cycles.py``)."""

    @property
    def name(self) -> str: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def machine(self) -> Machine: ...
    @property
    def raft(self) -> RaftNode: ...
    @property
    def executor(self) -> Executor: ...
    @property
    def by_raft(self) -> Mapping[str, MemberInfo]: ...
    def node_name(self, raft_addr: str | None) -> str | None: ...
    def is_established_leader(self) -> bool: ...


PROPOSE_TIMEOUT: Final = 3.0
TRANSFER_TIMEOUT: Final = 5.0
HANDOFF_EVERY_S: Final = 5.0  # a drained leader that could not hand off tries again after
LOOK_EVERY_S: Final = 0.5

DRAINING: Final = "draining"  # drained, and still holds live runs
DRAINED: Final = "drained"  # drained, and holds none


def drain_view(s: State, name: str) -> dict[str, Any] | None:
    """``{"state", "kind", "since_ms", "live_runs"}`` of member ``name``, None if it is not
    drained (call inside ``Machine.read``)."""
    mark = s.drain_mark(name)
    if mark is None:
        return None
    live = live_runs_of(s, name)
    return {
        "state": DRAINING if live else DRAINED,
        "kind": mark.kind,
        "since_ms": mark.since_ms,
        "live_runs": live,
    }


def live_runs_of(s: State, name: str) -> int:
    """Runs that member ``name`` holds a lease of (claimed or running)."""
    return s.load_by_node().get(name, 0)


class DrainControl:
    """Drain as seen by one node (see the module docstring). Owned by :class:`Node`."""

    def __init__(self, node: DrainHost) -> None:
        self.node = node
        self._handoff: asyncio.Task[str | None] | None = None
        self._last_handoff = -HANDOFF_EVERY_S
        self._said_alone = False
        self._cleared = False  # our own shutdown mark has been lifted (or looked at) since start
        self.stopping = False  # the SIGTERM drain has begun
        self.hurry = asyncio.Event()  # a second signal: stop draining now

    # -- views

    def mark(self) -> DrainMark | None:
        name = self.node.name
        return self.node.machine.read(lambda s: s.drain_mark(name))

    def live_runs(self) -> int:
        name = self.node.name
        return self.node.machine.read(lambda s: live_runs_of(s, name))

    # -- apply stream (on the loop)

    def on_commit(self, cmd: c.Command | None, res: Result) -> None:
        mine = isinstance(cmd, c.Drain) and cmd.drain and cmd.node == self.node.name
        if mine and isinstance(res, Ok) and self.node.raft.status.is_leader:
            self.hand_off_soon()

    # -- leadership

    def hand_off_soon(self, timeout: float = TRANSFER_TIMEOUT) -> asyncio.Task[str | None]:
        """Start handing leadership off, or the hand-off already under way."""
        task = self._handoff
        if task is not None and not task.done():
            return task
        self._last_handoff = self.node.clock.monotonic()
        task = asyncio.get_running_loop().create_task(
            self.hand_off(timeout), name="leadership hand-off"
        )
        self._handoff = task
        return task

    def successor(self) -> str | None:
        """The raft address of the member to hand leadership to: responsive, not
        drained, the most caught up; None if there is none."""
        node = self.node
        st = node.raft.status
        drained = node.machine.read(lambda s: set(s.drained_members()))
        match = dict(st.match_index)
        best: tuple[int, str] | None = None
        for addr in st.responsive:
            member = node.by_raft.get(addr)
            if member is None or member.name in drained:
                continue
            key = (match.get(addr, 0), addr)
            if best is None or key > best:
                best = key
        return None if best is None else best[1]

    async def hand_off(self, timeout: float) -> str | None:  # noqa: ASYNC109 - a deadline per hand-off
        """Hand leadership to :meth:`successor`; the new leader's name, or None."""
        node = self.node
        if not node.raft.status.is_leader:
            return None
        target = self.successor()
        if target is None:
            if not self._said_alone:
                self._said_alone = True
                logger.warning(
                    "node %s: drained, but no other member that is not drained is responsive: "
                    "it keeps leading (it still runs no new job)",
                    node.name,
                )
            return None
        self._said_alone = False
        to = node.node_name(target)
        logger.info("node %s: drained: handing leadership to %s", node.name, to)
        try:
            new = await node.raft.transfer_leadership(target, timeout)
        except ProposalError as exc:
            logger.warning(
                "node %s: leadership hand-off to %s did not happen (%s)", node.name, to, exc
            )
            return None
        if not new:
            logger.info("node %s: stepped down; no leader known yet", node.name)
            return None
        logger.info("node %s: %s leads now", node.name, node.node_name(new))
        return node.node_name(new)

    # -- the background loop

    async def run(self) -> None:
        """Clear our own shutdown mark after a restart; keep a drained leader handing
        off. Runs until cancelled."""
        node = self.node
        while True:
            await asyncio.sleep(LOOK_EVERY_S)
            try:
                if not self._cleared:
                    await self._clear_shutdown_mark()
                st = node.raft.status
                if (
                    st.is_leader
                    and node.is_established_leader()
                    and self.mark() is not None
                    and node.clock.monotonic() - self._last_handoff >= HANDOFF_EVERY_S
                ):
                    self.hand_off_soon()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("node %s: drain check failed", node.name)

    async def _clear_shutdown_mark(self) -> None:
        node = self.node
        st = node.raft.status
        if st.leader is None:
            return
        if st.ready:  # caught up: lift only a mark that is there
            mark = self.mark()
            if mark is None or mark.kind != DRAIN_SHUTDOWN:
                self._cleared = True
                return
        # (not caught up yet: a mark of an earlier life may be on its way; lift it anyway)
        cmd = c.Drain(at_ms=node.clock.wall_ms(), node=node.name, drain=False, kind=DRAIN_SHUTDOWN)
        if self._cleared:
            return  # a shutdown began meanwhile
        try:
            await node.raft.propose(cmd, PROPOSE_TIMEOUT)
        except ProposalError as exc:
            logger.info("node %s: clearing its shutdown drain: %s; retrying", node.name, exc)
            return
        self._cleared = True
        logger.info("node %s: started again: its shutdown drain is lifted", node.name)

    # -- SIGTERM

    async def shutdown(self, seconds: float) -> None:
        """Drain this node for at most ``seconds`` (``[cluster] shutdown_drain``): commit a
        shutdown drain, hand leadership off, wait for its live runs to end."""
        node = self.node
        deadline = monotonic() + seconds
        started = monotonic()

        def left() -> float:
            return max(0.0, deadline - monotonic())

        self._cleared = True  # from now on a shutdown mark of ours is this shutdown's
        self.stopping = True
        if seconds <= 0:
            return
        logger.info("node %s: stopping: draining for at most %gs", node.name, seconds)
        mark = self.mark()
        st = node.raft.status
        reachable = st.leader is not None and (st.is_leader or st.leader in st.connected)
        if not reachable:  # nothing it runs could be recorded either
            logger.info("node %s: no leader to drain through: stopping at once", node.name)
            return
        if mark is None or mark.kind != DRAIN_OPERATOR:
            cmd = c.Drain(
                at_ms=node.clock.wall_ms(), node=node.name, drain=True, kind=DRAIN_SHUTDOWN
            )
            try:
                await self._until_hurry(node.raft.propose(cmd, min(PROPOSE_TIMEOUT, left())))
            except ProposalError as exc:
                logger.warning(
                    "node %s: shutdown drain not committed (%s): stopping anyway", node.name, exc
                )
        leading = node.raft.status.is_leader and self.successor() is not None
        if leading and left() > 0 and not self.hurry.is_set():
            handing = self.hand_off_soon(min(TRANSFER_TIMEOUT, left()))
            await self._until_hurry(asyncio.shield(handing))  # (bounded by its timeout)
        while left() > 0 and not self.hurry.is_set():
            if self.live_runs() == 0 and node.executor.active_count() == 0:
                break
            if node.raft.fatal() is not None:
                break  # storage failed meanwhile: the node stops now
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(0.1, left())):
                    await self.hurry.wait()
        still = self._still_running()
        took = monotonic() - started
        if not still:
            logger.info("node %s: drained in %.1fs", node.name, took)
        else:
            # INFO, not WARNING: a restart within the lease re-attaches them, which is the
            # normal case (docs/operations.md, "Restarting a node"); a lost one is logged when
            # it is lost.
            logger.info(
                "node %s: %d run(s) still running after %.1fs of drain, left to their "
                "watchdogs (re-attached after the restart, within their leases): %s",
                node.name, len(still), took, ", ".join(still[:10]),
            )  # fmt: skip

    def _still_running(self) -> list[str]:
        name = self.node.name
        return self.node.machine.read(lambda s: s.leases_held_by(name))

    async def _until_hurry(self, work: Any) -> Any:
        """Await ``work`` unless a second signal comes first (then it is cancelled)."""
        task = asyncio.ensure_future(work)
        hurry = asyncio.ensure_future(self.hurry.wait())
        try:
            await asyncio.wait({task, hurry}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hurry.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            return None
        return task.result()

    async def close(self) -> None:
        task, self._handoff = self._handoff, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
