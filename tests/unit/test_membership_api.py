"""``GET /v1/membership/standing`` (no token; sealed with the cluster secret) and
``GET /v1/members`` on a node that is not started (its state applied directly)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from raftcron.api import app as api
from raftcron.core import commands as c
from raftcron.core.model import Member
from raftcron.membership import seal, sealed_by
from tests.unit.test_api_hardening import ADMIN, _node

SECRET = "x" * 20  # (tests.unit.test_api_hardening's cluster secret)


def _get(node: Any, path: str, token: str | None = None) -> tuple[int, Any]:
    async def main() -> tuple[int, Any]:
        async with TestClient(TestServer(api.build_app(node))) as client:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            r = await client.get(path, headers=headers)
            return r.status, await r.json()

    return asyncio.run(main())


def test_standing_is_sealed_both_ways(tmp_path: Path) -> None:
    node = _node(tmp_path)  # (with tokens: the standing check needs none)
    seed = (
        Member(name="a", raft="127.0.0.1:1", api="127.0.0.1:2"),
        Member(name="b", raft="127.0.0.1:3", api="127.0.0.1:4"),
    )
    node.machine.apply(c.encode(c.SeedMembers(at_ms=1, members=seed)))
    node.machine.apply(c.encode(c.RemoveMember(at_ms=2, name="b", request="r")))
    nonce = "n1"
    ok = f"/v1/membership/standing?name=b&nonce={nonce}&mac={seal(SECRET, 'ask', nonce, 'b')}"
    status, body = _get(node, ok)
    assert status == 200 and body["removed"] is True and body["member"] is False
    assert sealed_by([SECRET], body["proof"], "removed", nonce, "b")
    wrong = f"/v1/membership/standing?name=b&nonce={nonce}&mac={seal('other', 'ask', nonce, 'b')}"
    assert _get(node, wrong)[0] == 403
    a = f"/v1/membership/standing?name=a&nonce={nonce}&mac={seal(SECRET, 'ask', nonce, 'a')}"
    status, body = _get(node, a)
    assert body == {"name": "a", "removed": False, "member": True}


def test_members_lists_the_file_before_the_seed_then_the_replicated_ones(tmp_path: Path) -> None:
    node = _node(tmp_path)
    status, body = _get(node, "/v1/members", ADMIN)
    assert status == 200 and body["seeded"] is False
    assert [m["name"] for m in body["members"]] == ["a"]
    assert _get(node, "/v1/members")[0] == 401  # (a token is needed here)
    seed = (
        Member(name="a", raft="127.0.0.1:1", api="127.0.0.1:2"),
        Member(name="z", raft="127.0.0.1:5", api="127.0.0.1:6", tags=(("zone", "b"),)),
    )
    node.machine.apply(c.encode(c.SeedMembers(at_ms=1, members=seed)))
    status, body = _get(node, "/v1/members", ADMIN)
    assert body["seeded"] is True
    assert [(m["name"], m["incarnation"], m["tags"]) for m in body["members"]] == [
        ("a", 1, {}),
        ("z", 2, {"zone": "b"}),
    ]
    assert body["file_disagrees"] == ["z is a member but not in the file"]
