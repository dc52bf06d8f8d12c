"""Fixtures shared by the cluster tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.cluster.harness import Cluster


@pytest.fixture
def make_cluster() -> Iterator[list[Cluster]]:
    """Append every Cluster the test starts; they are stopped when it ends (and their logs
    printed with RAFTCRON_TEST_LOGS=1)."""
    made: list[Cluster] = []
    yield made
    for cl in made:
        cl.stop()
    if made and os.environ.get("RAFTCRON_TEST_LOGS"):
        print(made[0].logs())
