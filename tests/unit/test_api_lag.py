"""A write sent to a member that has not applied the job or run it names yet (created
through another member a moment ago) commits a barrier and looks again: it is carried
out, not answered 404. Found by tests/cluster/test_api.py on a loaded machine: a PUT
through one follower, then a trigger through the other, answered ``unknown_job``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from raftcron.api import app as api
from raftcron.api.http import ApiProblem
from raftcron.core import commands as c
from raftcron.core.model import JobSpec
from raftcron.core.state import Ok, Rejected
from raftcron.node import Node
from tests.unit.test_api_hardening import ADMIN, T0, _apply, _node

JOB = JobSpec(name="late", schedule="0 0 1 1 *", command=("true",))


class LaggingMember:
    """Proposals commit at once on the node's own state, but the node has not applied
    ``behind`` yet: the next entry it applies brings those first (as a follower's next
    AppendEntries would)."""

    def __init__(self, node: Node, behind: list[c.Command]) -> None:
        self.node = node
        self.behind = behind
        self.proposed: list[c.Command] = []

    async def propose(self, node: Node, cmd: c.Command) -> Ok:
        self.proposed.append(cmd)
        for earlier in self.behind:
            _apply(node, earlier)
        self.behind = []
        res = _apply(node, cmd)
        if isinstance(res, Rejected):
            raise ApiProblem(409, res.code, res.message)
        assert isinstance(res, Ok)
        return res


def _post(node: Node, path: str, body: Any = None) -> tuple[int, Any]:
    async def main() -> tuple[int, Any]:
        async with TestClient(TestServer(api.build_app(node))) as client:
            headers = {"Authorization": f"Bearer {ADMIN}"}
            r = await client.post(path, json=body or {}, headers=headers)
            return r.status, await r.json()

    return asyncio.run(main())


@pytest.fixture
def lagging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LaggingMember:
    node = _node(tmp_path)
    member = LaggingMember(node, [c.PutJob(at_ms=T0, spec=JOB)])
    monkeypatch.setattr(api, "_propose", member.propose)
    monkeypatch.setattr(api, "sees_leader", lambda node: True)
    return member


def test_a_trigger_of_a_job_not_applied_here_yet_is_carried_out(lagging: LaggingMember) -> None:
    assert lagging.node.read(lambda s: s.job("late")) is None
    status, body = _post(lagging.node, "/v1/jobs/late/trigger")
    assert status == 202, body
    assert body["run"].startswith("late@") and body["status"] in ("claimed", "skipped"), body
    kinds = [type(cmd).__name__ for cmd in lagging.proposed]
    assert kinds == ["Barrier", "Plan"], kinds


def test_a_backfill_of_a_job_not_applied_here_yet_is_carried_out(lagging: LaggingMember) -> None:
    frm, to = "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"
    status, body = _post(lagging.node, "/v1/jobs/late/backfill", {"from": frm, "to": to})
    assert status == 202, body
    assert [type(cmd).__name__ for cmd in lagging.proposed] == ["Barrier", "StartBackfill"]


def test_an_unknown_job_or_run_is_still_a_404_after_the_barrier(lagging: LaggingMember) -> None:
    status, body = _post(lagging.node, "/v1/jobs/nope/trigger")
    assert status == 404 and body["error"]["code"] == "unknown_job", body
    status, body = _post(lagging.node, "/v1/runs/nope@1/kill")
    assert status == 404 and body["error"]["code"] == "unknown_run", body
    assert [type(cmd).__name__ for cmd in lagging.proposed] == ["Barrier", "Barrier"]


def test_a_known_job_needs_no_barrier(lagging: LaggingMember) -> None:
    _apply(lagging.node, lagging.behind.pop())
    assert _post(lagging.node, "/v1/jobs/late/trigger")[0] == 202
    assert [type(cmd).__name__ for cmd in lagging.proposed] == ["Plan"]
