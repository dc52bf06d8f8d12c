"""The grace arithmetic shared by command, HTTP and embedded runs (executor/lease.py)."""

from __future__ import annotations

import pytest

from raftcron.executor.lease import GRACE_S, MIN_LEASE_GRACE_S, lease_grace


@pytest.mark.parametrize(
    ("window", "grace"),
    [(30.0, GRACE_S), (20.0, GRACE_S), (8.0, 2.0), (1.0, 0.25), (0.1, MIN_LEASE_GRACE_S)],
)
def test_lease_grace_is_a_quarter_of_the_window_within_bounds(window: float, grace: float) -> None:
    assert lease_grace(window) == pytest.approx(grace)
