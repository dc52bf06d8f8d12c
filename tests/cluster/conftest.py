"""Fixtures shared by the cluster tests.

* ``cl``: one running cluster shared by all the tests of a module (module scope): started,
  every member seeing the established leader, stopped when the module ends (its logs
  printed with RAFTCRON_TEST_LOGS=1). A module shapes it with a function
  ``new_cluster(root: Path) -> Cluster`` (jobs, tags, tokens, environment...); without
  one it is three plain members.
* ``make_cluster``: a list for the clusters a test builds itself; stopped when it ends.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.cluster.harness import Cluster, running


@pytest.fixture(scope="module")
def cl(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    module = request.module
    root = tmp_path_factory.mktemp(module.__name__.rsplit(".", 1)[-1].removeprefix("test_"))
    new_cluster = getattr(module, "new_cluster", Cluster)
    with running(new_cluster(root)) as cluster:
        yield cluster


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
