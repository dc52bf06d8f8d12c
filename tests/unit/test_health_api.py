"""``/health`` and ``/health/leader`` decide from the node's real condition (issue 12
item 4, issue 13 item 1): storage failures, apply lag in time, leadership freshness."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from raftcron.api import members
from raftcron.api.http import NODE_KEY
from raftcron.raft.node import RaftStatus

SELF, PEER = "127.0.0.1:7101", "127.0.0.1:7102"


@dataclass
class FakeRaft:
    status: RaftStatus
    fatal_reason: str | None = None
    lag: float = 0.0
    fresh: bool = True

    def fatal(self) -> str | None:
        return self.fatal_reason

    def apply_lag(self) -> float:
        return self.lag

    def leader_fresh(self) -> bool:
        return self.fresh and self.status.is_leader


@dataclass
class FakeNode:
    raft: FakeRaft
    established: bool = True
    failed: str | None = None
    name: str = "a"
    config: Any = field(
        default_factory=lambda: SimpleNamespace(cluster=SimpleNamespace(max_apply_lag_ms=5000))
    )

    def status(self) -> RaftStatus:
        return self.raft.status

    def node_name(self, addr: str | None) -> str | None:
        return {SELF: "a", PEER: "b"}.get(addr or "", addr)

    def is_established_leader(self) -> bool:
        return self.established and self.raft.status.is_leader

    def fatal(self) -> str | None:
        return self.raft.fatal()

    def apply_lag(self) -> float:
        return self.raft.apply_lag()

    def leader_fresh(self) -> bool:
        return self.raft.leader_fresh()


LEADER = RaftStatus(self_addr=SELF, is_leader=True, leader=SELF, last_applied=9, leader_commit=9)
FOLLOWER = RaftStatus(
    self_addr=SELF, leader=PEER, connected=frozenset({PEER}), last_applied=7, leader_commit=40
)


def get(node: FakeNode, path: str) -> tuple[int, dict[str, Any]]:
    app = web.Application()
    app[NODE_KEY] = node  # type: ignore[assignment]
    app.router.add_get("/health", members.health)
    app.router.add_get("/health/leader", members.health_leader)

    async def go() -> tuple[int, dict[str, Any]]:
        async with TestClient(TestServer(app)) as client, client.get(path) as resp:
            return resp.status, await resp.json()

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("node", "health", "leader"),
    [
        (FakeNode(FakeRaft(LEADER)), (200, "ok"), (200, "leader")),
        (FakeNode(FakeRaft(FOLLOWER)), (200, "ok"), (503, "not_leader")),
        # a leader that has not heard from a majority within an election timeout
        (FakeNode(FakeRaft(LEADER, fresh=False)), (503, "no_leader"), (503, "not_leader")),
        (FakeNode(FakeRaft(LEADER), established=False), (200, "ok"), (503, "not_leader")),
        # storage failed: 503 at once, before the node has even stopped
        (FakeNode(FakeRaft(LEADER, fatal_reason="journal /d: full")), (503, "failed"),
         (503, "failed")),
        (FakeNode(FakeRaft(FOLLOWER), failed="journal /d: full"), (503, "failed"), (503, "failed")),
        # applied state too far behind the leader's commit (in time)
        (FakeNode(FakeRaft(FOLLOWER, lag=5.5)), (503, "lagging"), (503, "lagging")),
        (FakeNode(FakeRaft(FOLLOWER, lag=4.5)), (200, "ok"), (503, "not_leader")),
        # cut off from the leader it last knew
        (FakeNode(FakeRaft(RaftStatus(self_addr=SELF, leader=PEER))), (503, "no_leader"),
         (503, "not_leader")),
    ],
)  # fmt: skip
def test_health(node: FakeNode, health: tuple[int, str], leader: tuple[int, str]) -> None:
    code, body = get(node, "/health")
    assert (code, body["status"]) == health, body
    code, body = get(node, "/health/leader")
    assert (code, body["status"]) == leader, body


def test_the_reasons_name_the_problem() -> None:
    _, body = get(FakeNode(FakeRaft(FOLLOWER, lag=7.3)), "/health")
    assert body["reason"] == (
        "applied index 7 has been behind the leader's commit (40) for 7.3s "
        "(cluster.max_apply_lag = 5s)"
    )
    _, body = get(FakeNode(FakeRaft(LEADER, fresh=False)), "/health/leader")
    assert body["reason"] == "has not heard from a majority within an election timeout"
    _, body = get(FakeNode(FakeRaft(LEADER, fatal_reason="journal /d/raft.journal: X")), "/health")
    assert body["reason"] == "journal /d/raft.journal: X"
