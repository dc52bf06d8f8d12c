"""Run the fuzzer: ``python -m tests.fuzzy.run --seed S --steps N [--nodes 3|5]``.

One step is 10 ms of fake time: the network delivers what is due, every live member
ticks once, the workload and the fault driver act. After ``steps`` steps every fault is
healed, crashed members restart, the workload stops, and the cluster is given fake time
to converge; then the verifiers run (``tests/fuzzy/verify.py``). The same seed replays
the same run exactly (the printed ``trace`` digest is equal); exit status 1 on any
violation. ``make fuzzy`` runs a long one (``SEED=... STEPS=... NODES=...``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.fuzzy import verify
from tests.fuzzy.cluster import Cluster, FakeClock, Faults, MachineFactory, RecordingMachine
from tests.fuzzy.workload import Workload

STEP_S = 0.01
CONVERGE_S = 60.0  # fake seconds the healed cluster gets to agree


@dataclass
class Report:
    seed: int
    nodes: int
    steps: int
    net: str
    violations: list[str] = field(default_factory=list)
    converged: bool = False
    trace: str = ""
    digests: dict[str, str] = field(default_factory=dict)
    stats: dict[str, object] = field(default_factory=dict)

    def summary(self) -> str:
        s = self.stats
        lines = [
            f"fuzzy seed={self.seed} nodes={self.nodes} steps={self.steps} net={self.net} "
            f"converged={self.converged} trace={self.trace[:16]}",
            f"  commits={s.get('commit')} applies={s.get('applies')} "
            f"proposed={s.get('proposed')} acked={s.get('acked')} gave_up={s.get('gave_up')} "
            f"repeats={s.get('repeats')} grants={s.get('grants')}",
            f"  faults: crashes={s.get('crashes')} partitions={s.get('partitions')} "
            f"transfers={s.get('transfers')} "
            f"msgs sent={s.get('sent')} dropped={s.get('dropped')} "
            f"duplicated={s.get('duplicated')} snapshots={s.get('snapshots')} "
            f"terms={s.get('term')}",
            f"  by kind: {s.get('by_kind')}",
            f"  log lines: {s.get('logs')}",
        ]
        if self.violations:
            lines.append(f"  VIOLATIONS ({len(self.violations)}):")
            lines += [f"    {v}" for v in self.violations[:20]]
        else:
            lines.append("  no violations")
        return "\n".join(lines)


class LogCount(logging.Handler):
    """Takes pysyncobj's and raftcron's log lines during a run: counted, not printed
    (``--verbose`` prints them too)."""

    def __init__(self, echo: bool) -> None:
        super().__init__(logging.DEBUG)
        self.echo = echo
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING:
            return
        key = f"{record.levelname} {record.name}: {str(record.msg)[:48]}"
        self.counts[key] = self.counts.get(key, 0) + 1
        if self.echo:
            print(f"  log {record.levelname} {record.name}: {record.getMessage()}")


@contextlib.contextmanager
def captured_logs(echo: bool = False) -> Iterator[LogCount]:
    handler = LogCount(echo)
    saved = []
    for name in ("pysyncobj", "raftcron"):
        log = logging.getLogger(name)
        saved.append((log, log.propagate, log.level))
        log.addHandler(handler)
        log.propagate = False
        log.setLevel(logging.WARNING)
    try:
        yield handler
    finally:
        for log, propagate, level in saved:
            log.removeHandler(handler)
            log.propagate = propagate
            log.setLevel(level)


class FaultDriver:
    """Partitions, crashes and the network's weather, from the run's seed."""

    def __init__(self, cluster: Cluster, rng: random.Random, tcp: bool) -> None:
        self.cluster = cluster
        self.rng = rng
        self.tcp = tcp
        self.heal_at: float | None = None
        self.restart_at: dict[str, float] = {}
        self.next_weather = 0.0
        self.crashes = 0
        self.partitions = 0
        self.transfers = 0

    def tick(self) -> None:
        c, rng, now = self.cluster, self.rng, self.cluster.clock.now
        net = c.network
        if now >= self.next_weather:
            self.next_weather = now + rng.uniform(1.0, 5.0)
            calm = rng.random() < 0.3
            net.faults = Faults(
                drop=0.0 if calm else rng.choice((0.0, 0.01, 0.05, 0.15)),
                duplicate=0.0 if calm else rng.choice((0.0, 0.02, 0.1)),
                delay_max=rng.choice((0.002, 0.01, 0.05)),
                slow=0.0 if calm else rng.choice((0.0, 0.02, 0.1)),
                slow_max=rng.choice((0.1, 0.5, 1.5)),
                tcp=self.tcp,
            )
        for name, at in sorted(self.restart_at.items()):
            if now >= at:
                del self.restart_at[name]
                c.start(name)
        if self.heal_at is not None and now >= self.heal_at:
            self.heal_at = None
            net.heal()
        names = sorted(c.members)
        if self.heal_at is None and rng.random() < 0.004:
            self.partitions += 1
            self.heal_at = now + rng.uniform(0.5, 5.0)
            kind = rng.random()
            if kind < 0.4:  # one member cut off
                lone = rng.choice(names)
                for o in names:
                    if o != lone:
                        net.block(lone, o)
                        net.block(o, lone)
            elif kind < 0.7:  # two sides
                rng.shuffle(names)
                cut = rng.randint(1, len(names) // 2)
                for a in names[:cut]:
                    for b in names[cut:]:
                        net.block(a, b)
                        net.block(b, a)
            else:  # one-way links
                for _ in range(rng.randint(1, len(names))):
                    a, b = rng.sample(names, 2)
                    net.block(a, b)
        leader = c.leader()
        if leader is not None and leader.replica is not None and rng.random() < 0.002:
            # an operator's leader transfer (TimeoutNow; to a named member or the best one),
            # under whatever the network is doing: the leader holds new entries meanwhile
            others = [m.addr for m in c.live() if m is not leader]
            target = rng.choice(others) if others and rng.random() < 0.8 else None
            self.transfers += 1
            c._enter(leader.name)
            leader.replica.transferLeadership(target, None)
        down = len(self.restart_at)
        if rng.random() < 0.002 and down < (len(names) - 1) // 2:
            victim = rng.choice([m.name for m in c.live()])
            self.crashes += 1
            c.crash(victim, torn=random.Random(rng.random()))
            self.restart_at[victim] = now + rng.uniform(0.2, 3.0)

    def heal_all(self) -> None:
        c = self.cluster
        c.network.heal()
        c.network.faults = Faults(tcp=self.tcp)
        self.heal_at = None
        for name in sorted(self.restart_at):
            c.start(name)
        self.restart_at.clear()


def _converged(cluster: Cluster, workload: Workload) -> bool:
    leader = cluster.leader()
    if leader is None or leader.replica is None or workload.inflight:
        return False
    commit = leader.replica.raftCommitIndex
    if leader.replica.raftLastApplied != commit:
        return False
    for m in cluster.live():
        r = m.replica
        assert r is not None
        if r.raftLastApplied != commit or r.raftCommitIndex != commit:
            return False
    return cluster.network.pending() == 0


def run(
    seed: int,
    steps: int,
    nodes: int = 3,
    root: Path | None = None,
    machine_factory: MachineFactory = RecordingMachine,
    verbose: bool = False,
    tcp: bool = False,
) -> Report:
    """One fuzz run; ``root`` holds the members' data dirs (a temporary dir if None)."""
    if root is None:
        with tempfile.TemporaryDirectory(prefix="raftcron-fuzzy-") as tmp:
            return run(seed, steps, nodes, Path(tmp), machine_factory, verbose, tcp)
    clock = FakeClock()
    cluster = Cluster(root, nodes, seed, clock, machine_factory)
    workload = Workload(cluster, random.Random(f"{seed}/workload"))
    faults = FaultDriver(cluster, random.Random(f"{seed}/faults"), tcp)
    report = Report(seed=seed, nodes=nodes, steps=steps, net="tcp" if tcp else "chaos")
    from tests.fuzzy.cluster import harness_time

    with captured_logs(verbose) as logs, harness_time(clock, cluster.switch):
        try:
            for name in sorted(cluster.members):
                cluster.start(name)
            for _ in range(steps):
                cluster.step(STEP_S)
                faults.tick()
                workload.tick()
            faults.heal_all()
            workload.active = False
            limit = clock.now + CONVERGE_S
            while clock.now < limit:
                cluster.step(STEP_S)
                workload.tick()
                if _converged(cluster, workload):
                    report.converged = True
                    break
            verify.check_acks(cluster, workload.acks)
            if report.converged:
                report.digests = verify.check_healed(cluster)
            leader = cluster.leader()
            snapshots = sum(
                m.replica._rc_store.snapshots_written for m in cluster.live() if m.replica
            )
            report.stats = {
                "commit": leader.replica.raftCommitIndex if leader and leader.replica else None,
                "term": max(m.replica.raftCurrentTerm for m in cluster.live() if m.replica),
                "applies": cluster.applies,
                "proposed": workload.stats.proposed,
                "acked": workload.stats.acked,
                "gave_up": workload.stats.gave_up,
                "repeats": workload.stats.repeats,
                "by_kind": dict(sorted(workload.stats.by_kind.items())),
                "grants": len(cluster.grants),
                "crashes": faults.crashes,
                "partitions": faults.partitions,
                "transfers": faults.transfers,
                "sent": cluster.network.sent,
                "dropped": cluster.network.dropped,
                "duplicated": cluster.network.duplicated,
                "snapshots": snapshots,
                "logs": logs.counts,
            }
        finally:
            cluster.stop()
    report.violations = list(cluster.violations)
    report.trace = cluster.network.trace.hexdigest()
    return report


@dataclass
class Isolation:
    """What :func:`isolate` saw: the leader and term before a minority was cut off, the
    same after it healed, the highest term any cut-off member reached, and the verifiers'
    findings."""

    seed: int
    cut: list[str]
    leader_before: str
    term_before: int
    leader_after: str | None
    term_after: int
    cut_max_term: int
    converged: bool
    prevote_rounds: int
    votes_ignored: int
    violations: list[str] = field(default_factory=list)

    def undisturbed(self) -> bool:
        """The leader and its term survived the partition and its healing, and no
        cut-off member ever raised its term."""
        return (
            self.leader_after == self.leader_before
            and self.term_after == self.term_before
            and self.cut_max_term == self.term_before
        )


def isolate(
    seed: int,
    nodes: int,
    root: Path,
    *,
    prevote: bool = True,
    minority: int = 1,
    cut_s: float = 6.0,
    tcp: bool = False,
) -> Isolation:
    """A healthy cluster under the workload (no other faults): once a leader has been
    stable for 2 s, ``minority`` followers (chosen by the seed) are cut off from
    everyone for ``cut_s`` (many election timeouts), then the network heals and the
    cluster runs 10 s more. Raft thesis 9.6 / 4.2.3: with pre-vote and stickiness the
    cut-off members never raise their term, and on healing they depose nobody."""
    clock = FakeClock()
    cluster = Cluster(root, nodes, seed, clock, prevote=prevote)
    cluster.network.faults = Faults(tcp=tcp)
    rng = random.Random(f"{seed}/isolate")
    workload = Workload(cluster, random.Random(f"{seed}/workload"))
    from tests.fuzzy.cluster import harness_time

    def steps(seconds: float) -> None:
        end = clock.now + seconds
        while clock.now < end:
            cluster.step(STEP_S)
            workload.tick()

    def term() -> int:
        return max(int(m.replica.raftCurrentTerm) for m in cluster.live() if m.replica)

    def cut_term(cut: list[str]) -> int:
        got = [cluster.members[n].replica for n in cut]
        return max(int(r.raftCurrentTerm) for r in got if r is not None)

    with captured_logs(), harness_time(clock, cluster.switch):
        try:
            for name in sorted(cluster.members):
                cluster.start(name)
            stable: str | None = None
            since, limit = 0.0, clock.now + 60.0
            while clock.now < limit:
                steps(0.1)
                leader = cluster.leader()
                now_leading = leader.name if leader else None
                if now_leading != stable:
                    stable, since = now_leading, clock.now
                elif now_leading is not None and clock.now - since >= 2.0:
                    break
            assert stable is not None, f"seed {seed}: no stable leader within 60 s"
            before = term()
            followers = sorted(n for n in cluster.members if n != stable)
            cut = sorted(rng.sample(followers, minority))
            for a in cut:
                for b in cluster.members:
                    if b not in cut:
                        cluster.network.block(a, b)
                        cluster.network.block(b, a)
            cut_max = before
            end = clock.now + cut_s
            while clock.now < end:
                steps(0.1)
                cut_max = max(cut_max, cut_term(cut))
            cluster.network.heal()
            end = clock.now + 10.0
            while clock.now < end:
                steps(0.1)
                cut_max = max(cut_max, cut_term(cut))
            workload.active = False
            converged = False
            limit = clock.now + CONVERGE_S
            while clock.now < limit:
                steps(STEP_S)
                if _converged(cluster, workload):
                    converged = True
                    break
            verify.check_acks(cluster, workload.acks)
            if converged:
                verify.check_healed(cluster)
            leader = cluster.leader()
            replicas = [m.replica for m in cluster.live() if m.replica]
            return Isolation(
                seed=seed,
                cut=cut,
                leader_before=stable,
                term_before=before,
                leader_after=leader.name if leader else None,
                term_after=term(),
                cut_max_term=cut_max,
                converged=converged,
                prevote_rounds=sum(r._seam_prevote_rounds for r in replicas),
                votes_ignored=sum(r._seam_votes_ignored for r in replicas),
                violations=list(cluster.violations),
            )
        finally:
            cluster.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzzy.run", description=__doc__)
    ap.add_argument("--seed", type=int, default=None, help="default: a random one (printed)")
    ap.add_argument("--steps", type=int, default=20_000, help="10 ms of fake time each")
    ap.add_argument("--nodes", type=int, default=3, choices=(3, 5))
    ap.add_argument("--runs", type=int, default=1, help="this many seeds from --seed on")
    ap.add_argument("--verbose", action="store_true", help="print pysyncobj's log lines")
    ap.add_argument(
        "--net",
        choices=("chaos", "tcp"),
        default="chaos",
        help="chaos: messages dropped, duplicated and reordered one by one; tcp: in order, "
        "never twice, a loss breaks the connection (what raftcron's TCP links can do)",
    )
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    failed = 0
    for i in range(args.runs):
        s = seed + i
        print(f"fuzzy: seed {s}, {args.steps} steps, {args.nodes} nodes, {args.net}", flush=True)
        t = time.monotonic()
        report = run(s, args.steps, args.nodes, verbose=args.verbose, tcp=args.net == "tcp")
        print(report.summary())
        print(f"  took {time.monotonic() - t:.1f}s", flush=True)
        if report.violations or not report.converged:
            failed += 1
            print(
                f"  replay: python -m tests.fuzzy.run --seed {s} --steps {args.steps} "
                f"--nodes {args.nodes} --net {args.net}"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
