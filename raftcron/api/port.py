"""The port of the HTTP API: everything the handlers need of the node they serve, named in
one Protocol (issue 14; hashicorp/raft's ``FSM`` interface is the model). ``Node``
implements it; the API imports this module, never ``raftcron.node``, so the two do not
import each other (``tests/unit/test_import_cycles.py``), and a handler can be driven by
any object with these members.

Reads go through :meth:`ClusterPort.read` with one of State's named queries
(``raftcron/core/queries.py``), e.g. ``port.read(lambda s: s.run(rid))``; writes through
:meth:`ClusterPort.propose` (the API adds its deadline and its retry rules on top, in
``raftcron/api/http.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from raftcron.clock import Clock
    from raftcron.config import Config
    from raftcron.core.commands import Command
    from raftcron.core.features import Refusal
    from raftcron.core.planner import NodeInfo
    from raftcron.core.state import Result, State
    from raftcron.membership import MemberInfo, MembershipControl
    from raftcron.metrics import NodeMetrics
    from raftcron.raft.node import RaftStatus

T = TypeVar("T")


class ClusterPort(Protocol):
    """This node as the API sees it (all members are read on the event loop)."""

    @property
    def name(self) -> str:
        """This member's name (``[[nodes]] name``)."""
        ...

    @property
    def config(self) -> Config:
        """The running config (the ``[[jobs]]`` excluded)."""
        ...

    @property
    def clock(self) -> Clock: ...

    @property
    def metrics(self) -> NodeMetrics: ...

    @property
    def api_scheme(self) -> str:
        """``https`` when the API serves TLS, else ``http``."""
        ...

    @property
    def leader_changes(self) -> int: ...

    @property
    def failed(self) -> str | None:
        """Why this node stopped serving (its storage failed), or None."""
        ...

    @property
    def commit_listeners(self) -> list[Callable[[Command | None, Result], None]]:
        """Called on the loop with every applied command (append to listen)."""
        ...

    # -- the replicated state

    def read(self, query: Callable[[State], T]) -> T:
        """``query`` (one of State's named queries) on the committed state, under the
        lock that orders it with apply."""
        ...

    async def propose(self, cmd: Command, timeout: float) -> Result:  # noqa: ASYNC109 - a deadline per proposal is the contract
        """The committed result of ``cmd``; raises ``ProposalError`` when it did not
        commit (or its outcome is unknown) within ``timeout`` seconds."""
        ...

    # -- Raft

    def status(self) -> RaftStatus: ...

    def node_name(self, raft_addr: str | None) -> str | None:
        """The member name of a raft address (the address itself if unknown)."""
        ...

    def is_established_leader(self) -> bool: ...

    def leader_fresh(self) -> bool:
        """Leads and heard from a majority within an election timeout."""
        ...

    def apply_lag(self) -> float:
        """Seconds this node has been behind the leader's commit."""
        ...

    def fsync_count(self) -> int: ...

    def fatal(self) -> str | None:
        """Why this replica must not go on (its storage), or None."""
        ...

    async def transfer_leadership(self, target: str | None, timeout: float) -> str:  # noqa: ASYNC109 - a deadline is the contract
        """Hand leadership to ``target`` (a raft address); the new leader's address."""
        ...

    def members(self) -> tuple[MemberInfo, ...]:
        """The members: the replicated ones once seeded, else the cluster file's
        (``raftcron/membership.py``)."""
        ...

    @property
    def membership(self) -> MembershipControl: ...

    def live_nodes(self) -> list[NodeInfo]:
        """The members a fire can be placed on now (this node and the responsive ones)."""
        ...

    # -- this node's executor, drain and config file

    def executing(self) -> int:
        """Runs this node's executor is carrying out now."""
        ...

    def passthrough_leaks(self, names: Collection[str]) -> list[tuple[str, str]]:
        """``(variable, what it holds)`` for each of ``names`` whose value in this agent's
        environment is the cluster secret or an API token."""
        ...

    def drain_successor(self) -> str | None:
        """The raft address a drained leader would hand leadership to, or None."""
        ...

    def config_status(self) -> dict[str, Any]:
        """The ``config`` of ``/v1/status``."""
        ...

    def feature_refusal(self, cmd: Command) -> Refusal | None:
        """Why ``cmd`` may not be proposed yet: a feature some member does not support
        (raftcron/core/features.py); None when every member does."""
        ...

    async def reload_config(self) -> dict[str, Any]:
        """Re-read the config file (``ReloadRefused``/``ReloadIncomplete`` otherwise)."""
        ...
