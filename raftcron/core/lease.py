"""Lease arithmetic shared by every lease holder (the executor, ``raftcron lock``) and the
leader (docs/design.md, "Leases and fencing"). Pure: callers pass their own monotonic readings.

D = lease duration, rho = clock-rate drift bound, m = safety margin. A holder that started
its timer at ``t_send`` (before sending the grant or renewal) trusts the lease until
``t_send + D*(1-rho)/(1+rho) - m`` on its own clock; the leader expires it at
``t_commit + D`` on its clock, and ``t_commit`` is after ``t_send``.
"""

from __future__ import annotations

TYPE_CHECKING = False  # `raftcron lock` imports this: no typing at run time
if TYPE_CHECKING:
    from typing import Final

RHO: Final = 0.02  # clock-rate drift bound between any two nodes


def safe_deadline(lease_ms: int, margin_s: float) -> float:
    """Seconds after ``t_send`` this node may still trust a lease of ``lease_ms``."""
    d = lease_ms / 1000
    return d * (1 - RHO) / (1 + RHO) - margin_s


def margin_for(lease_ms: int) -> float:
    """The safety margin m for a lease of ``lease_ms``: 5%, between 0.1 s and 1 s."""
    return min(1.0, max(0.1, lease_ms / 1000 * 0.05))


def takeover_patience(lease_ms: int, election_timeout: float) -> float:
    """Extra seconds a new leader waits, on top of the lease, before expiring a lease it
    inherited: the holder may have renewed through the old leader just before it fell.
    Added to the time this node applied the lease's last renewal, never to the takeover
    time (``raftcron/scheduler/leader.py`` states the bound)."""
    return lease_ms / 1000 * RHO + election_timeout
