"""Replacing a node today (docs/operations.md, "Replacing a node"): a new server in the old
one's place, with the same name and addresses and an empty data directory, joins as that
member, catches up with the jobs and the ledger from the leader, and counts toward the
majority again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.cluster.harness import Cluster, running, wait_for

pytestmark = pytest.mark.cluster

JOB = {"schedule": "0 0 1 1 *", "command": ["true"], "timeout": "30s"}


def _trigger(cl: Cluster, via: str) -> str:
    """A manual fire: its 202 means the claim committed (on a majority)."""
    status, body = cl.request(via, "POST", "/v1/jobs/hello/trigger", {})
    assert status == 202, body
    run_id: str = body["run"]
    return run_id


def test_a_member_with_an_empty_data_dir_catches_up_and_counts(tmp_path: Path) -> None:
    cl = Cluster(tmp_path)
    with running(cl):
        leader = cl.wait_leader(30)
        status, body = cl.request(leader, "PUT", "/v1/jobs/hello", JOB)
        assert status == 201, body
        before = [_trigger(cl, leader) for _ in range(3)]

        # The old server is gone for good: its process and its disk.
        replaced, other = [n for n in cl.members if n != leader]
        cl.kill(replaced)
        shutil.rmtree(tmp_path / "data" / replaced)
        # The cluster goes on without it (two of three).
        before.append(_trigger(cl, leader))

        # The new server: same name, same addresses, same file, nothing on disk.
        cl.start(replaced)

        def caught_up() -> bool | None:
            try:
                if cl.request(replaced, "GET", "/health", timeout=2.0)[0] != 200:
                    return None
                job = cl.get(replaced, "/v1/jobs/hello")
                ids = {r["id"] for r in cl.runs(replaced, "hello")}
            except (AssertionError, OSError):
                return None
            return (job["name"] == "hello" and set(before) <= ids) or None

        wait_for(f"{replaced} to catch up from the leader", caught_up, 90)

        # It is a voting member again: with the third member gone, the leader and the
        # new one are the only majority, so a write through the new one commits only
        # with its own acknowledgment.
        cl.kill(other)
        status, body = cl.request(replaced, "PUT", "/v1/jobs/after-replace", JOB, timeout=30)
        assert status == 201, body
        leader = cl.wait_leader(60, among=[n for n in cl.members if n != other])
        assert cl.get(leader, "/v1/jobs/after-replace")["name"] == "after-replace"
