"""Per-node Prometheus metrics, in one :class:`CollectorRegistry` per node (never the
process-global default registry).

Two kinds of numbers, kept apart on purpose:

* **Cluster facts** are read at scrape time from the replicated state this node has
  applied: fires by job and outcome (``Counters.extra`` via ``outcome_counts``), stale-fence
  rejections, runs recorded, the highest fence, ledger sizes. Every member reports the same
  values (up to replication lag), they survive leader changes and restarts, and they never
  go down on one member. Aggregate them with ``max``, not ``sum``.
* **Node facts** start at zero with the process: fire lateness and lease renewals of the
  runs this node executed, commit latency of the proposals it made, lock acquire latency of
  the locks it served, leader changes and leaderless time it saw, executor slots in use.
  Aggregate them with ``sum``/``rate`` across members.

Per-job series (every family with a ``job`` label) are exported for at most
``[metrics] max_job_series`` jobs: the defined jobs in name order first, then jobs that
were deleted but still have counters. The jobs left out are counted by
``raftcron_metrics_jobs_omitted`` and named once in a WARNING (again after they all fit
and then stop fitting once more).

Per-peer series (``raftcron_peer_*``) come only from the leader: only it hears every
follower's answers and knows their match index. A follower exports none of them.

No ``*_created`` series: the exposition leaves them out of this registry's families
(prometheus_client's own switch is process-wide and would change an embedding
application's metrics too).

Invariants: nothing here reads a clock except through the node's :class:`Clock`; a scrape
holds the machine's lock only for O(jobs + counters) work (copying references to the
immutable job records; next fires are computed after the lock is released); every hook
is called on the event loop (status listener, executor events, proposal results).
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from raftcron.clock import Clock
from raftcron.core.commands import Command
from raftcron.core.model import (
    FAILED,
    KILLED,
    LOST,
    SUCCEEDED,
    TIMED_OUT,
    TRIGGER_BUFFERED,
    TRIGGER_RETRY,
    Job,
)
from raftcron.core.planner import next_fire_ms
from raftcron.core.state import State, job_errors_counts, outcome_counts, unschedulable_counts
from raftcron.raft.node import Machine, RaftStatus

logger = logging.getLogger(__name__)

__all__ = [
    "COMMIT_BUCKETS",
    "DEFAULT_MAX_JOB_SERIES",
    "LATENESS_BUCKETS",
    "LOCK_BUCKETS",
    "NodeMetrics",
]

DEFAULT_MAX_JOB_SERIES: Final = 1_000  # [metrics] max_job_series (raftcron.config)
# raftcron_job_last_outcome's states: the statuses a run that was given to a node ends with
RUN_OUTCOMES: Final = (SUCCEEDED, FAILED, TIMED_OUT, LOST, KILLED)

LATENESS_BUCKETS: Final = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip
COMMIT_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
LOCK_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


class NodeMetrics:
    """The metrics of one node. Hooks for the node to wire up:

    * :meth:`on_status` as a ``RaftNode`` status listener (leader changes, leaderless time);
    * :meth:`on_proposal` as ``RaftNode.on_committed`` (commit latency by command type);
    * :meth:`executor_event` as the executor's ``tell`` (lateness on "started", renewals).

    :attr:`lock_acquire_seconds` is for the lock API (observe the time from the request to
    the committed grant, waiting included) and ``lease_renewals`` with ``kind="lock"`` for
    its renewals.
    """

    def __init__(
        self,
        *,
        node: str,
        clock: Clock,
        machine: Machine,
        raft_status: Callable[[], RaftStatus],
        executor_active: Callable[[], int],
        version: str | None = None,
        process: bool = True,
        members: tuple[str, ...] | Callable[[], tuple[str, ...]] = (),
        peers: Callable[[], Mapping[str, str]] = dict,
        max_job_series: Callable[[], int] = lambda: DEFAULT_MAX_JOB_SERIES,
    ) -> None:
        self.node = node
        self.clock = clock
        self.machine = machine
        self.raft_status = raft_status
        self.executor_active = executor_active
        # every member's name (raftcron_node_draining; a callable: the replicated members)
        self.members = members
        self.peers = peers  # the other members: raft address -> name (raftcron_peer_*)
        self.max_job_series = max_job_series  # read at every scrape (a reload may change it)
        self._over_cap = False  # the last scrape left jobs out (warned once per crossing)
        self.version = version if version is not None else _version()
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.fire_lateness_seconds = Histogram(
            "raftcron_fire_lateness_seconds",
            "Start of a run on this node minus the time it was due: its scheduled time plus "
            "the job's jitter offset (runs executed here; buffered runs and retries are left "
            "out)",
            buckets=LATENESS_BUCKETS,
            registry=reg,
        )
        self.commit_latency_seconds = Histogram(
            "raftcron_commit_latency_seconds",
            "Time from proposing a command on this node until it committed and applied",
            ["command"],
            buckets=COMMIT_BUCKETS,
            registry=reg,
        )
        self.lock_acquire_seconds = Histogram(
            "raftcron_lock_acquire_seconds",
            "Time from a lock request on this node until it was granted (waiting included)",
            buckets=LOCK_BUCKETS,
            registry=reg,
        )
        self.lease_renewals = Counter(
            "raftcron_lease_renewals",
            "Lease renewals committed for holders served by this node, by kind (run or lock)",
            ["kind"],
            registry=reg,
        )
        self.lease_renewals.labels(kind="run")
        self.lease_renewals.labels(kind="lock")
        self.notifications = Counter(
            "raftcron_notifications",
            "Notify webhooks and pings this node sent, by kind (webhook or ping) and result "
            "(sent, failed after every retry, dropped with too many pending)",
            ["kind", "result"],
            registry=reg,
        )
        for kind in ("webhook", "ping"):
            for result in ("sent", "failed", "dropped"):
                self.notifications.labels(kind=kind, result=result)
        # Leadership as this node saw it (fed by on_status on the loop).
        self._started = clock.monotonic()
        self._leader_changes = 0
        self._last_leader: tuple[str, int] | None = None
        self._leaderless_since: float | None = self._started
        self._leaderless_s = 0.0
        reg.register(_NodeCollector(self))
        if process:
            ProcessCollector(registry=reg)

    # -- hooks

    def on_status(self, st: RaftStatus) -> None:
        now = self.clock.monotonic()
        if st.leader is None:
            if self._leaderless_since is None:
                self._leaderless_since = now
            return
        if self._leaderless_since is not None:
            self._leaderless_s += max(0.0, now - self._leaderless_since)
            self._leaderless_since = None
        key = (st.leader, st.term)
        if key != self._last_leader:
            self._last_leader = key
            self._leader_changes += 1

    def notification(self, kind: str, result: str) -> None:
        """The notifier's counter hook."""
        self.notifications.labels(kind=kind, result=result).inc()

    def on_proposal(self, cmd: Command, seconds: float) -> None:
        self.commit_latency_seconds.labels(command=type(cmd).__name__).observe(max(0.0, seconds))

    def executor_event(self, event: str, run_id: str, fields: dict[str, Any]) -> None:
        if event == "started":
            if fields.get("trigger") in (TRIGGER_BUFFERED, TRIGGER_RETRY):
                return  # it waited on purpose (the run before it, a backoff): not lateness
            due = fields.get("due_ms", fields["scheduled_at_ms"])  # + the job's jitter offset
            late_ms = int(fields["started_ms"]) - int(due)
            self.fire_lateness_seconds.observe(max(0, late_ms) / 1000)
        elif event == "renewed":
            self.lease_renewals.labels(kind="run").inc()

    # -- views (used by the collector; tests read them too)

    def leader_changes(self) -> int:
        return self._leader_changes

    def leaderless_seconds(self) -> float:
        total = self._leaderless_s
        if self._leaderless_since is not None:
            total += max(0.0, self.clock.monotonic() - self._leaderless_since)
        return total

    def exposition(self) -> bytes:
        """The Prometheus text format (version 0.0.4) of everything in :attr:`registry`,
        without ``*_created`` series."""
        return generate_latest(_WithoutCreated(self.registry))

    def jobs_capped(self, omitted: int, cap: int, first: str) -> None:
        """Called at every scrape with how many jobs were left out (WARNING once)."""
        if omitted and not self._over_cap:
            logger.warning(
                "node %s: /metrics leaves out the per-job series of %d job(s) (from %r on, "
                "in name order): more jobs than [metrics] max_job_series = %d; raise it in "
                "the cluster file to export them (raftcron_metrics_jobs_omitted counts them)",
                self.node,
                omitted,
                first,
                cap,
            )
        self._over_cap = omitted > 0


class _WithoutCreated:
    """A registry's families minus their ``<name>_created`` samples (what
    ``generate_latest`` reads: anything with ``collect()``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        for family in self.registry.collect():
            created = family.name + "_created"
            if any(s.name == created for s in family.samples):
                family.samples = [s for s in family.samples if s.name != created]
            yield family


def _version() -> str:
    try:
        return importlib.metadata.version("raftcron")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _drain_states(s: State, members: Iterable[str]) -> dict[str, str]:
    """Each member's drain state: "draining" (drained, still holding live runs), "drained"
    (holding none) or "" (not drained)."""
    holders = s.load_by_node()
    drained = s.drained_members()
    out = {}
    for name in {*members, *drained}:
        if name in drained:
            out[name] = "draining" if holders.get(name) else "drained"
        else:
            out[name] = ""
    return out


def _cluster_facts(
    s: State,
) -> tuple[
    list[tuple[str, str, int]],
    tuple[int, ...],
    list[tuple[str, int]],
    list[tuple[str, int]],
    list[Job],
]:
    extra, n = s.counter_extra(), s.totals()
    return (
        outcome_counts(extra),
        (n.stale_rejections, n.runs_recorded, n.fence, n.runs, n.jobs, n.leases, n.paused_jobs),
        unschedulable_counts(extra),
        job_errors_counts(extra),
        s.job_list(),  # immutable records: read after the lock is released
    )


def job_series_order(defined: Iterable[str], counted: Iterable[str]) -> list[str]:
    """The order in which jobs get per-job series until ``max_job_series`` is reached:
    defined jobs in name order, then jobs that are gone but still have counters."""
    names = sorted(set(defined))
    return names + sorted(set(counted) - set(names))


class _NodeCollector(Collector):
    """Reads the replicated counters, Raft status and executor load at scrape time."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.m = metrics

    def describe(self) -> Iterable[Metric]:
        return self._families(describe=True)

    def collect(self) -> Iterable[Metric]:
        return self._families(describe=False)

    def _families(self, *, describe: bool) -> list[Metric]:
        m = self.m
        fires = CounterMetricFamily(
            "raftcron_fires",
            "Final runs recorded in the replicated ledger, by job and outcome (a cluster fact)",
            labels=["job", "outcome"],
        )
        unschedulable = CounterMetricFamily(
            "raftcron_unschedulable",
            "Run instances recorded as skipped because no live node could take them (tags, "
            "max_parallel, fewer matching nodes than count), by job (a cluster fact)",
            labels=["job"],
        )
        job_errors = CounterMetricFamily(
            "raftcron_job_errors",
            "Times the leader failed to compute a job's fires and marked it broken (its "
            "fires are then recorded missed until a PUT or resume), by job (a cluster fact)",
            labels=["job"],
        )
        stale = CounterMetricFamily(
            "raftcron_stale_fence_rejections",
            "Lease operations rejected for naming a stale fence (a cluster fact)",
        )
        recorded = CounterMetricFamily(
            "raftcron_runs_recorded", "Final runs recorded in the ledger (a cluster fact)"
        )
        fence = GaugeMetricFamily("raftcron_fence", "Highest fence granted so far (a cluster fact)")
        runs = GaugeMetricFamily("raftcron_ledger_runs", "Runs in the ledger (live and history)")
        jobs = GaugeMetricFamily("raftcron_ledger_jobs", "Jobs defined in the cluster")
        paused = GaugeMetricFamily("raftcron_ledger_jobs_paused", "Jobs paused")
        leases = GaugeMetricFamily("raftcron_ledger_leases", "Live leases in the ledger")
        info = GaugeMetricFamily(
            "raftcron_node_info", "This node's name and version", labels=["node", "version"]
        )
        is_leader = GaugeMetricFamily("raftcron_is_leader", "1 if this node is the Raft leader")
        has_leader = GaugeMetricFamily("raftcron_has_leader", "1 if this node knows a leader")
        term = GaugeMetricFamily("raftcron_raft_term", "Current Raft term seen by this node")
        commit = GaugeMetricFamily("raftcron_raft_commit_index", "Raft commit index")
        applied = GaugeMetricFamily("raftcron_raft_last_applied", "Last Raft index applied")
        changes = CounterMetricFamily(
            "raftcron_leader_changes",
            "Leaders (leader, term) this node has seen take over since it started",
        )
        leaderless = CounterMetricFamily(
            "raftcron_leaderless_seconds",
            "Seconds this node has spent without a known leader since it started",
        )
        slots = GaugeMetricFamily(
            "raftcron_executor_slots_in_use", "Runs this node's executor is running now"
        )
        next_fire = GaugeMetricFamily(
            "raftcron_job_next_fire_timestamp_seconds",
            "Scheduled time (Unix seconds, UTC) of the job's next fire, as GET /v1/jobs "
            "shows it (before its jitter offset); none for a job without a schedule "
            "(a cluster fact)",
            labels=["job"],
        )
        last_success = GaugeMetricFamily(
            "raftcron_job_last_success_timestamp_seconds",
            "When the job's last succeeded run ended (Unix seconds, UTC; from a replicated "
            "per-job field, not the ledger); none before its first success (a cluster fact)",
            labels=["job"],
        )
        last_duration = GaugeMetricFamily(
            "raftcron_job_last_duration_seconds",
            "End minus start of the job's last run that started, whatever its outcome "
            "(a cluster fact)",
            labels=["job"],
        )
        last_outcome = GaugeMetricFamily(
            "raftcron_job_last_outcome",
            "1 for the status the job's last run that was given to a node ended with, 0 for "
            "the other outcomes; none before its first such run (a cluster fact)",
            labels=["job", "outcome"],
        )
        job_paused = GaugeMetricFamily(
            "raftcron_job_paused", "1 if the job is paused (a cluster fact)", labels=["job"]
        )
        omitted = GaugeMetricFamily(
            "raftcron_metrics_jobs_omitted",
            "Jobs whose per-job series this /metrics leaves out: more jobs than "
            "[metrics] max_job_series (0 when every job is exported)",
        )
        peer_up = GaugeMetricFamily(
            "raftcron_peer_up",
            "Leader only: 1 if the peer answered this leader's appends within 1.5 "
            "election timeouts (what the leader counts as live for new work), else 0",
            labels=["peer"],
        )
        lag_entries = GaugeMetricFamily(
            "raftcron_peer_replication_lag_entries",
            "Leader only: committed Raft entries the peer has not acknowledged (the "
            "leader's commit index minus the peer's match index, at least 0)",
            labels=["peer"],
        )
        lag_seconds = GaugeMetricFamily(
            "raftcron_peer_replication_lag_seconds",
            "Leader only: how long ago the oldest committed entry the peer has not "
            "acknowledged was committed (0 when it has every committed entry; counted "
            "from this leader's takeover at most)",
            labels=["peer"],
        )
        draining = GaugeMetricFamily(
            "raftcron_node_draining",
            '1 for the drain state each member is in (a cluster fact): state="draining" '
            'while a drained member still holds live runs, state="drained" once it holds '
            "none; 0 for the other state, and for both while it is not drained",
            labels=["node", "state"],
        )
        families: list[Metric] = [
            fires, unschedulable, stale, recorded, fence, runs, jobs, paused, leases, info,
            is_leader, has_leader, term, commit, applied, changes, leaderless, slots,
            job_errors, draining, next_fire, last_success, last_duration, last_outcome,
            job_paused, omitted, peer_up, lag_entries, lag_seconds,
        ]  # fmt: skip
        if describe:
            return families
        counts, facts, unplaced, errors, job_list = m.machine.read(_cluster_facts)
        cap = m.max_job_series()
        counted = {job for job, _, _ in counts} | {job for job, _ in (*unplaced, *errors)}
        order = job_series_order((j.spec.name for j in job_list), counted)
        keep, left_out = set(order[: max(0, cap)]), order[max(0, cap) :]
        m.jobs_capped(len(left_out), cap, left_out[0] if left_out else "")
        omitted.add_metric([], len(left_out))
        counts = [x for x in counts if x[0] in keep]
        unplaced = [x for x in unplaced if x[0] in keep]
        errors = [x for x in errors if x[0] in keep]
        now_ms = m.clock.wall_ms()
        for jb in sorted((j for j in job_list if j.spec.name in keep), key=_job_name):
            name = jb.spec.name
            job_paused.add_metric([name], 1 if jb.paused else 0)
            try:
                nxt = next_fire_ms(jb, now_ms)
            except Exception:  # a broken schedule (the job says why): no series
                nxt = None
            if nxt is not None:
                next_fire.add_metric([name], nxt / 1000)
            stats = jb.stats
            if stats.success_ms:
                last_success.add_metric([name], stats.success_ms / 1000)
            if stats.duration_ms is not None:
                last_duration.add_metric([name], stats.duration_ms / 1000)
            if stats.outcome:
                for outcome in RUN_OUTCOMES:
                    last_outcome.add_metric([name, outcome], int(stats.outcome == outcome))
        names = m.members() if callable(m.members) else m.members
        drains = m.machine.read(lambda s: _drain_states(s, names))
        for name in sorted(drains):
            for state in ("draining", "drained"):
                draining.add_metric([name, state], 1 if drains[name] == state else 0)
        n_stale, n_recorded, n_fence, n_runs, n_jobs, n_leases, n_paused = facts
        for job, outcome, n in sorted(counts):
            fires.add_metric([job, outcome], n)
        for job, n in sorted(unplaced):
            unschedulable.add_metric([job], n)
        for job, n in sorted(errors):
            job_errors.add_metric([job], n)
        stale.add_metric([], n_stale)
        recorded.add_metric([], n_recorded)
        fence.add_metric([], n_fence)
        runs.add_metric([], n_runs)
        jobs.add_metric([], n_jobs)
        paused.add_metric([], n_paused)
        leases.add_metric([], n_leases)
        st = m.raft_status()
        info.add_metric([m.node, m.version], 1)
        is_leader.add_metric([], 1 if st.is_leader else 0)
        has_leader.add_metric([], 0 if st.leader is None else 1)
        term.add_metric([], st.term)
        commit.add_metric([], st.commit_index)
        applied.add_metric([], st.last_applied)
        changes.add_metric([], m.leader_changes())
        leaderless.add_metric([], m.leaderless_seconds())
        slots.add_metric([], m.executor_active())
        if st.is_leader:
            match = dict(st.match_index)
            behind = dict(st.peer_behind_since)
            now = m.clock.monotonic()
            for addr, peer in sorted(m.peers().items(), key=lambda x: x[1]):
                peer_up.add_metric([peer], 1 if addr in st.responsive else 0)
                lag_entries.add_metric([peer], max(0, st.commit_index - match.get(addr, 0)))
                since = behind.get(addr)
                lag_seconds.add_metric([peer], 0.0 if since is None else max(0.0, now - since))
        return families


def _job_name(job: Job) -> str:
    return job.spec.name
