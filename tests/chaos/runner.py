"""The chaos runner: a real cluster, real faults, an independent record, then the checker.

    python -m tests.chaos.runner [--nemesis NAME ...] [--duration S] [--seed N] [--out DIR]

Topology: the runner re-executes itself inside a fresh network namespace (``unshare -n``,
root only), where node ``i`` listens on its own address ``127.0.0.(11+i)`` (Raft port
7000, API port 8000) and runs with its own group id, so iptables can tell the nodes'
packets apart (see :class:`Net`). The sink (``sink.py``) is a separate process on a Unix
socket, outside every fault. Each nemesis runs against a fresh cluster; the runner writes
``sink.jsonl`` and ``history.json`` into ``OUT/<nemesis>/`` and the checker reads them.

Each run: start the sink and the nodes, wait until every config job has fired, then
repeat (quiet, fault, heal) until the duration is over, run an API workload all along
(jobs put and deleted, final runs observed), heal everything, wait out the recovery
bound, read every node's ledger and job list, stop, check.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from raftcron.core.lease import RHO, takeover_patience
from tests.chaos import checker
from tests.cluster.harness import Cluster, HTTPStatusError, wait_for

HERE = Path(__file__).resolve().parent
JOB_PY = HERE / "job.py"
GID_BASE = 20000
LEASE_S = 3.0
ELECTION_MAX_S = 0.9  # raftMaxTimeout in raftcron/raft/node.py settings
RESTART_S = 3.0  # a node process is back (Python import, journal load) within this
SPAWN_BOUND_S = 1.0  # a committed start reaches the job's first line within this
HOLD_MAX_S = 3 * LEASE_S  # the longest a fault is kept on past its drawn duration
# SIGTERM drains this long, then the agent detaches from the runs still going: shorter
# than the longer jobs below, so restart-rolling leaves runs to re-attach to.
SHUTDOWN_DRAIN_S = 0.5
CHURN_EVERY_S = (1.0, 2.0)  # churn-leader: a leader transfer this often (uniform)

# Config jobs: (name, schedule, overlap, seconds the job holds before its fenced write).
# About 7 fires a second: 1,000 fires in under three minutes.
JOBS: tuple[tuple[str, str, str, float], ...] = (
    ("tick-a", "* * * * * *", "allow", 0.2),
    ("tick-b", "* * * * * *", "allow", 0.2),
    ("tick-c", "* * * * * *", "allow", 0.2),
    ("tick-d", "* * * * * *", "allow", 0.2),
    ("tick-e", "* * * * * *", "allow", 0.2),
    ("tick-long", "* * * * * *", "allow", 1.5),
    ("tick-skip", "* * * * * *", "skip", 0.5),
    ("slow-skip", "* * * * * */3", "skip", 2.5),
)


def hosts(n: int) -> list[str]:
    return [f"127.0.0.{11 + i}" for i in range(n)]


def log(msg: str) -> None:
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def recovery_bound() -> float:
    """Seconds after a fault heals by which every fire runs again on time.

    A restarted node is back within RESTART_S; an election needs up to two rounds of the
    maximum election timeout; a new leader then waits out a lease it may not see expire
    (D*(1+rho)) plus its takeover patience before it re-grants or starts a skip job.
    """
    patience = takeover_patience(int(LEASE_S * 1000), ELECTION_MAX_S)
    return round(RESTART_S + 2 * ELECTION_MAX_S + LEASE_S * (1 + RHO) + patience, 2)


# ------------------------------------------------------------------------------ the sink


class SinkClient:
    """The runner's line to the sink: events stamped on the sink's clock."""

    def __init__(self, path: Path) -> None:
        import socket

        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(str(path))
        self._file = self._sock.makefile("rwb")

    def call(self, msg: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._file.write(json.dumps(msg).encode() + b"\n")
            self._file.flush()
            reply: dict[str, Any] = json.loads(self._file.readline())
            return reply

    def event(self, **fields: Any) -> None:
        self.call({"op": "event", "event": fields})

    def stats(self) -> dict[str, Any]:
        return self.call({"op": "stats"})

    def close(self) -> None:
        self._sock.close()


# ------------------------------------------------------------------------------ the network


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


class Net:
    """iptables inside the namespace. Every node runs with its own gid.

    On loopback a node's outgoing connection leaves from 127.0.0.1, not from its own
    address, so a source address cannot name the sender. Instead every new connection is
    marked (CONNMARK) with the index of the node that opened it (owner match on its gid).
    A packet from node p to node q is then either on a connection p opened (mark p,
    destination q's address) or on one q opened (mark q, source p's address): one rule each.
    The runner itself (gid 0) is never marked, so its API calls always get through.
    """

    def __init__(self, names: list[str], addrs: list[str]) -> None:
        self.index = {n: i + 1 for i, n in enumerate(names)}
        self.addr = dict(zip(names, addrs, strict=True))
        self.blocked: set[tuple[str, str]] = set()

    def setup(self) -> None:
        """Fresh rules (several runs share one namespace: start from nothing each time)."""
        sh("ip", "link", "set", "lo", "up")
        sh("iptables", "-t", "mangle", "-F", "OUTPUT")
        sh("iptables", "-F", "OUTPUT")
        subprocess.run(["iptables", "-X", "CHAOS"], capture_output=True, check=False)
        for i in self.index.values():
            sh(
                "iptables", "-t", "mangle", "-A", "OUTPUT", "-m", "conntrack", "--ctstate",
                "NEW", "-m", "owner", "--gid-owner", str(GID_BASE + i), "-j", "CONNMARK",
                "--set-mark", str(i),
            )  # fmt: skip
        sh("iptables", "-N", "CHAOS")
        sh("iptables", "-A", "OUTPUT", "-j", "CHAOS")
        self.blocked.clear()

    def drop(self, src: str, dst: str) -> None:
        """Drop every packet node ``src`` sends to node ``dst`` (one direction)."""
        if (src, dst) in self.blocked:
            return
        self.blocked.add((src, dst))
        s, d = self.index[src], self.index[dst]
        sh("iptables", "-A", "CHAOS", "-m", "connmark", "--mark", str(s),
           "-d", self.addr[dst], "-j", "DROP")  # fmt: skip
        sh("iptables", "-A", "CHAOS", "-m", "connmark", "--mark", str(d),
           "-s", self.addr[src], "-j", "DROP")  # fmt: skip

    def cut(self, a: str, b: str) -> None:
        self.drop(a, b)
        self.drop(b, a)

    def split(self, groups: list[list[str]]) -> None:
        """Only nodes in the same group reach each other."""
        for i, g in enumerate(groups):
            for h in groups[i + 1 :]:
                for a in g:
                    for b in h:
                        self.cut(a, b)

    def heal(self) -> None:
        sh("iptables", "-F", "CHAOS")
        self.blocked.clear()


# ------------------------------------------------------------------------------ processes


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc), children before grandchildren."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        ppid = parent(int(entry)) if entry.isdigit() else None
        if ppid is not None:
            children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    frontier = [pid]
    while frontier:
        nxt = [c for p in frontier for c in children.get(p, [])]
        out.extend(nxt)
        frontier = nxt
    return out


def parent(pid: int) -> int | None:
    """The parent of ``pid`` (from /proc), None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


# ------------------------------------------------------------------------------ one run


@dataclass
class Fault:
    """One fault: its kind and targets, how to apply it and how to undo it.

    ``until``, when set, keeps the fault on past its drawn duration (up to ``HOLD_MAX_S``
    more) until it returns true: the moment the fault has done what it is aimed at.
    ``hold_s``, when set, replaces the drawn duration (restart-rolling: 0, the node is
    restarted at once and the fault lasts until it is back).
    """

    kind: str
    nodes: list[str]
    do: Callable[[], None]
    undo: Callable[[], None]
    until: Callable[[], bool] | None = None
    hold_s: float | None = None  # instead of the drawn duration (then ``until``)


class Run:
    def __init__(self, name: str, out: Path, size: int, seed: int) -> None:
        self.name = name
        self.out = out
        self.rng = random.Random(seed)
        self.seed = seed
        self.size = size
        self.nemesis_id = 0
        self.stop_workload = threading.Event()
        self.stop_churn = threading.Event()
        self.observed: list[dict[str, Any]] = []
        self.observed_ids: set[str] = set()
        self.rolling = 0  # restart-rolling: the index of the node restarted next
        self.transfers = 0  # churn-leader: leader transfers that moved leadership
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        self.sock = out / "sink.sock"
        self.sink_proc = subprocess.Popen(
            [sys.executable, "-m", "tests.chaos.sink", str(self.sock), str(out / "sink.jsonl")],
            cwd=HERE.parent.parent,
        )
        wait_for("the sink", lambda: (out / "sink.sock.ready").exists(), 15)
        self.sink = SinkClient(self.sock)
        jobs = [
            {
                "name": name,
                "schedule": schedule,
                "command": [sys.executable, "-S", str(JOB_PY), str(self.sock), str(hold)],
                "overlap": overlap,
            }
            for name, schedule, overlap, hold in JOBS
        ]
        addrs = hosts(size)
        self.cluster = Cluster(
            out,
            jobs,
            size=size,
            hosts=addrs,
            extra_cluster=(
                f'lease = "{LEASE_S:g}s"\nhistory = 1000000\n'
                f'shutdown_drain = "{SHUTDOWN_DRAIN_S:g}s"'
            ),
        )
        # the clock and power-cut hooks below (tests/cluster/hooked_agent.py)
        self.cluster.use_hooks()
        for i, m in enumerate(self.cluster.members.values()):
            m.group = GID_BASE + i + 1
            m.env = {
                "RAFTCRON_CLOCK_CONTROL": str(out / f"clock-{m.name}"),
                "RAFTCRON_CHAOS_POWER_CUT": "1",
            }
            (out / f"clock-{m.name}").write_text("0")
        self.names = list(self.cluster.members)
        self.net = Net(self.names, addrs)

    # -- helpers

    def pid(self, name: str) -> int | None:
        proc = self.cluster.members[name].proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def leader(self) -> str:
        return self.cluster.wait_leader(timeout=60)

    def leader_now(self) -> str | None:
        """The established leader if there is one right now (None during elections)."""
        return self.cluster.leader()

    def clock(self, name: str, offset_s: float) -> None:
        path = self.out / f"clock-{name}"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{offset_s}")
        tmp.rename(path)

    def restart_dead(self) -> None:
        for name in self.names:
            if self.pid(name) is None:
                self.cluster.start(name)

    # -- the nemeses: each names its targets and says how to apply and undo the fault

    def kill(self, nodes: list[str]) -> Fault:
        def do() -> None:
            for n in nodes:
                if self.pid(n) is not None:
                    self.cluster.kill(n)

        return Fault("kill", nodes, do, self.restart_dead)

    def healthy(self, name: str) -> bool:
        """``name`` is up and sees a leader it can reach (its ``/health`` is 200)."""
        if self.pid(name) is None:
            return False
        try:
            return self.cluster.request(name, "GET", "/health", timeout=2.0)[0] == 200
        except (urllib.error.URLError, OSError):
            return False

    def restart_next(self) -> Fault:
        """restart-rolling: SIGTERM the next node in turn (it drains for SHUTDOWN_DRAIN_S,
        then detaches from its runs, which go on under their watchdogs), wait for it to
        exit, start it again at once (it re-attaches to the runs still within their lease);
        the fault lasts until the node is healthy again. The SIGTERM comes while the node
        runs a job that outlasts the drain (when one shows up within 5 s), so that every
        restart leaves a run to re-attach to."""
        node = self.names[self.rolling % len(self.names)]
        self.rolling += 1

        def do() -> None:
            self.running_past_drain(node)
            proc = self.cluster.members[node].proc
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(SHUTDOWN_DRAIN_S + 30)
                except subprocess.TimeoutExpired:
                    log(f"  restart-rolling: {node} did not exit after SIGTERM; kill -9")
                    self.cluster.kill(node)
            self.cluster.start(node)

        return Fault(
            "restart", [node], do, self.restart_dead, until=lambda: self.healthy(node), hold_s=0
        )

    def running_past_drain(self, node: str) -> bool:
        """Wait (at most 5 s) until ``node`` runs a job that still holds for longer than
        the shutdown drain."""
        holds = {name: hold for name, _, _, hold in JOBS}
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            for o in self.sink.stats()["open"]:
                left = holds.get(o["job"], 0.0) - o["age"]
                if o["node"] == node and left >= SHUTDOWN_DRAIN_S + 0.3:
                    return True
            time.sleep(0.05)
        return False

    def left_running(self, ledger: list[dict[str, Any]]) -> str:
        """What became of the runs a SIGTERMed node left to their watchdogs (its drain's
        log line names them): their final statuses, counted."""
        pattern = re.compile(r"left to their watchdogs \([^)]*\): (.*)$", re.M)
        left = set()
        for m in self.cluster.members.values():
            if m.log.exists():
                for found in pattern.findall(m.log.read_text(errors="replace")):
                    left.update(found.split(", "))
        status = {r["id"]: r["status"] for r in ledger}
        counts = Counter(status.get(rid, "unknown") for rid in left)
        return f"{len(left)} runs left to their watchdogs at SIGTERM, then " + (
            ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"
        )

    def churn(self, stop: threading.Event) -> None:
        """churn-leader, beside the faults: ask the leader to hand leadership to another
        member (``POST /v1/leader/transfer``, the API behind ``raftcron leader transfer``)
        every CHURN_EVERY_S, so no leadership outlives a lease plus its takeover patience.
        Each transfer is logged on the sink's clock (``transfer`` events, not fault
        windows: a leader change is routine, every fire must still run)."""
        rng = random.Random(self.seed + 2)
        while not stop.wait(rng.uniform(*CHURN_EVERY_S)):
            leader = self.leader_now()
            if leader is None:
                continue
            try:
                status, body = self.cluster.request(
                    leader, "POST", "/v1/leader/transfer", {}, timeout=10.0
                )
            except (urllib.error.URLError, OSError):
                continue
            if status == 200 and body.get("moved", True):
                self.transfers += 1
                self.sink.event(ev="transfer", source=leader, to=body.get("to"))

    def power_loss(self) -> Fault:
        def do() -> None:
            procs = [self.cluster.members[n].proc for n in self.names]
            live = [p for p in procs if p is not None and p.poll() is None]
            signal_all([p.pid for p in live], signal.SIGUSR2)
            for p in live:
                p.wait(30)

        return Fault("power-loss", list(self.names), do, self.restart_dead)

    def pause(self, nodes: list[str]) -> Fault:
        pids: list[int] = []

        def do() -> None:
            pids.extend(p for p in (self.pid(n) for n in nodes) if p is not None)
            signal_all(pids, signal.SIGSTOP)

        return Fault("pause", nodes, do, lambda: signal_all(pids, signal.SIGCONT))

    def in_flight(self, leader: str) -> tuple[str, Callable[[], bool]] | None:
        """A follower running a job whose fenced write is still at least 0.6 s away.

        Returns the node and a test that turns true once a newer fence of that job has
        been accepted (the frozen write is stale from then on), or None when no such
        execution shows up within 5 s.
        """
        holds = {name: hold for name, _, overlap, hold in JOBS if overlap == "allow"}
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            for o in self.sink.stats()["open"]:
                hold = holds.get(o["job"])
                if o["node"] != leader and hold is not None and hold - o["age"] >= 0.6:
                    return o["node"], partial(self.superseded, o["job"], o["fence"])
            time.sleep(0.05)
        return None

    def superseded(self, job: str, fence: int) -> bool:
        return int(self.sink.stats()["highest"].get(job, -1)) > fence

    def pause_group(self, node: str) -> Fault:
        """Freeze the node's agent, its watchdogs and its jobs, as a frozen VM would be.

        The jobs resume first, and the watchdogs and the agent only once the node's jobs
        have written (at most 1 s): a job that wakes up before its watchdog gets its stale
        write to the fenced resource in, which is what the fence must stop. (Resuming them
        all at once left it to the scheduler whether the job wrote or its watchdog, which
        sees its lease lapsed, killed it first.) The target is a node with a fenced write
        in flight, and the freeze lasts until another node has written a newer fence of
        that job: every pause really exercises the fence.
        """
        frozen: list[int] = []

        def do() -> None:
            agent = self.pid(node)
            if agent is None:
                return
            os.kill(agent, signal.SIGSTOP)
            frozen.append(agent)
            for _ in range(3):  # a watchdog may be spawning its job right now
                new = [p for p in descendants(agent) if p not in frozen]
                signal_all(new, signal.SIGSTOP)
                frozen.extend(new)

        def undo() -> None:
            parents = {parent(p) for p in frozen}
            jobs = [p for p in frozen[1:] if p not in parents]
            signal_all(jobs, signal.SIGCONT)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                if not any(o["node"] == node for o in self.sink.stats()["open"]):
                    break
                time.sleep(0.02)
            signal_all([p for p in reversed(frozen) if p not in jobs], signal.SIGCONT)

        return Fault("pause-group", [node], do, undo)

    def pause_in_flight(self, leader: str) -> Fault:
        target = self.in_flight(leader)
        if target is None:
            return self.pause_group(self.random_node(but=leader))
        fault = self.pause_group(target[0])
        fault.until = target[1]
        return fault

    def partition(self, groups: list[list[str]]) -> Fault:
        nodes = [n for g in groups for n in g]
        return Fault("partition", nodes, lambda: self.net.split(groups), self.net.heal)

    def one_way(self, src: str) -> Fault:
        def do() -> None:
            for dst in self.names:
                if dst != src:
                    self.net.drop(src, dst)

        return Fault("partition", [src], do, self.net.heal)

    def ring(self) -> Fault:
        """Every node sees only its two ring neighbours: a majority each, no two alike."""
        names = self.names
        n = len(names)

        def do() -> None:
            for i in range(n):
                for j in range(i + 1, n):
                    if (j - i) % n not in (1, n - 1):
                        self.net.cut(names[i], names[j])

        return Fault("partition", list(names), do, self.net.heal)

    def clock_jump(self, node: str, offset_s: float) -> Fault:
        return Fault(
            "clock", [node], lambda: self.clock(node, offset_s), lambda: self.clock(node, 0)
        )

    def clock_strobe(self, node: str) -> Fault:
        stop = threading.Event()

        def strobe() -> None:
            sign = 1
            while not stop.wait(0.2):
                sign = -sign
                self.clock(node, sign * 5.0)
            self.clock(node, 0)

        t = threading.Thread(target=strobe, daemon=True)

        def undo() -> None:
            stop.set()
            t.join(5)

        return Fault("clock", [node], t.start, undo)

    def random_node(self, but: str | None = None) -> str:
        return self.rng.choice([n for n in self.names if n != but])

    def choose(self, nemesis: str) -> Fault:
        """The fault to inject next (its targets chosen now, nothing done yet)."""
        rng = self.rng
        if nemesis == "mixed":
            pool = [n for n in NEMESES if n not in SOLO and NEMESES[n] <= self.size]
            nemesis = rng.choice(pool)
        leader = self.leader()
        names = self.names
        match nemesis:
            case "kill-leader":
                return self.kill([leader])
            case "kill-random":
                return self.kill([self.random_node()])
            case "kill-all":
                return self.kill(list(names))
            case "restart-rolling":
                return self.restart_next()
            case "churn-leader":
                # while leadership moves every 1-2 s (churn): a follower dies with its runs,
                # whose leases every next leader inherits; they must expire on time
                return self.kill([self.random_node(but=leader)])
            case "power-loss":
                return self.power_loss()
            case "pause-leader":
                return self.pause([leader])
            case "pause-executor":
                return self.pause([self.random_node(but=leader)])
            case "pause-executor-group":
                return self.pause_in_flight(leader)
            case "partition-leader":
                return self.partition([[leader], [n for n in names if n != leader]])
            case "partition-random":
                shuffled = rng.sample(names, len(names))
                cut = rng.randint(1, len(names) // 2)
                return self.partition([shuffled[:cut], shuffled[cut:]])
            case "partition-ring":
                return self.ring()
            case "partition-bridge":
                # Two halves that only the middle node connects.
                mid = leader if rng.random() < 0.5 else self.random_node(but=leader)
                rest = [n for n in names if n != mid]
                rng.shuffle(rest)
                half = len(rest) // 2
                fault = self.partition([rest[:half], rest[half:]])
                fault.nodes = [*rest[:half], mid, *rest[half:]]
                return fault
            case "partition-oneway":
                return self.one_way(leader if rng.random() < 0.5 else self.random_node())
            case "clock-forward-leader":
                return self.clock_jump(leader, rng.uniform(5, 20))
            case "clock-backward-leader":
                return self.clock_jump(leader, -rng.uniform(5, 20))
            case "clock-strobe-leader":
                return self.clock_strobe(leader)
            case "clock-jump-executor":
                return self.clock_jump(self.random_node(but=leader), rng.choice([-1, 1]) * 20.0)
            case "clock-strobe-executor":
                return self.clock_strobe(self.random_node(but=leader))
        raise ValueError(f"unknown nemesis {nemesis!r}")

    # -- the API workload (runs beside the faults)

    def api(self, method: str, path: str, body: Any = None) -> bool:
        name = self.rng.choice(self.names)
        try:
            status, _ = self.cluster.request(name, method, path, body, timeout=5.0)
        except (urllib.error.URLError, OSError):
            return False
        return 200 <= status < 300

    def workload(self) -> None:
        n = 0
        rng = random.Random(self.seed + 1)
        while not self.stop_workload.wait(rng.uniform(2.0, 4.0)):
            n += 1
            keep = f"keep-{n}"
            eph = f"eph-{n}"
            spec = {"schedule": "0 0 1 1 *", "command": ["true"]}
            self.sink.event(ev="attempt", op="put_job", job=keep)
            if self.api("PUT", f"/v1/jobs/{keep}", spec):
                self.sink.event(ev="ack", op="put_job", job=keep)
            eph_spec = {
                "schedule": "* * * * * *",
                "command": [sys.executable, "-S", str(JOB_PY), str(self.sock), "0.1"],
            }
            self.sink.event(ev="attempt", op="put_job", job=eph)
            if self.api("PUT", f"/v1/jobs/{eph}", eph_spec):
                self.sink.event(ev="ack", op="put_job", job=eph)
            if self.stop_workload.wait(rng.uniform(1.0, 3.0)):
                break
            self.sink.event(ev="attempt", op="delete_job", job=eph)
            if self.api("DELETE", f"/v1/jobs/{eph}"):
                self.sink.event(ev="ack", op="delete_job", job=eph)
            self.observe()

    def observe(self) -> None:
        """Remember final runs the API showed (they must survive anything, power loss too)."""
        name = self.rng.choice(self.names)
        t = time.monotonic()
        for job, *_ in JOBS:
            try:
                runs = self.cluster.runs(name, job, limit=20)
            except (HTTPStatusError, urllib.error.URLError, OSError, ValueError):
                return
            for run in runs:
                if run["status"] not in ("claimed", "running") and run["id"] not in (
                    self.observed_ids
                ):
                    self.observed_ids.add(run["id"])
                    self.observed.append({"t": t, "run": run})

    # -- the whole run

    def ledger(self, name: str) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = []
        before = ""
        while True:
            q = "/v1/runs?limit=1000" + (f"&before={before}" if before else "")
            page = self.cluster.get(name, q, timeout=30.0)
            runs.extend(page["runs"])
            if not page["next"]:
                return runs
            before = page["next"]

    def quiesce(self) -> None:
        """Pause every job and wait until no run is in flight, so the ledgers read next and
        the sink's record cover the same executions (jobs keep firing otherwise)."""
        leader = self.leader()
        for job in self.cluster.get(leader, "/v1/jobs", timeout=10)["jobs"]:
            path = f"/v1/jobs/{job['name']}/pause"

            def paused(p: str = path) -> bool:
                return self.api("POST", p)

            wait_for(f"{path} acknowledged", paused, 30)

        def drained() -> bool:
            q = "/v1/runs?status=claimed,running&limit=1"
            return all(self.cluster.get(n, q)["total"] == 0 for n in self.names)

        wait_for("every run in flight to finish", drained, 60, interval=0.3)

    def settled(self) -> bool:
        """Every node applied everything the leader has committed (same commit index)."""
        indexes = set()
        for name in self.names:
            st = self.cluster.get(name, "/v1/status")
            indexes.add((st["commit_index"], st["last_applied"]))
        return len(indexes) == 1

    def execute(self, nemesis: str, duration: float, quiet_s: float, fault_s: float) -> None:
        bound = recovery_bound()
        try:
            self.net.setup()
            self.cluster.start()
            self.leader()
            wait_for(
                "every config job to fire",
                lambda: self.sink.stats()["begins"] >= 3 * len(JOBS),
                60,
            )
            start_t = time.monotonic()
            worker = threading.Thread(target=self.workload, daemon=True)
            worker.start()
            churner = threading.Thread(target=self.churn, args=(self.stop_churn,), daemon=True)
            if nemesis == "churn-leader":
                churner.start()
            while time.monotonic() - start_t < duration:
                time.sleep(self.rng.uniform(0.5, 1.5) * quiet_s)
                hold = self.rng.uniform(0.5, 1.5) * fault_s
                self.nemesis_id += 1
                fault = self.choose(nemesis)
                # Stamped before the fault is applied and after it is undone: the window
                # in the sink's record always covers the fault.
                event = {"id": self.nemesis_id, "name": nemesis, "kind": fault.kind}
                self.sink.event(ev="nemesis", phase="start", nodes=fault.nodes, **event)
                fault.do()
                if fault.hold_s is not None:
                    hold = fault.hold_s
                time.sleep(hold)
                if fault.until is not None:
                    began = time.monotonic() - hold
                    deadline = time.monotonic() + HOLD_MAX_S
                    while not fault.until() and time.monotonic() < deadline:
                        time.sleep(0.1)
                    hold = time.monotonic() - began
                fault.undo()
                self.sink.event(ev="nemesis", phase="end", nodes=fault.nodes, **event)
                log(f"  {nemesis}: {fault.kind} {','.join(fault.nodes)} for {hold:.1f}s")
            self.stop_workload.set()
            self.stop_churn.set()
            if churner.is_alive():
                churner.join(30)
                log(f"  {nemesis}: {self.transfers} leader transfers")
            worker.join(30)
            self.restart_dead()
            self.leader()
            time.sleep(bound + 2.0)
            end_t = time.monotonic() - 2.0
            self.quiesce()
            wait_for("every node to apply the same log", self.settled, 60, interval=0.3)
            ledgers = {n: self.ledger(n) for n in self.names}
            history = {
                "name": nemesis,
                "seed": self.seed,
                "jobs": {
                    name: {"schedule": schedule, "overlap": overlap, "timezone": "UTC"}
                    for name, schedule, overlap, _ in JOBS
                },
                "observe": {"start_t": start_t, "end_t": end_t},
                "recovery_bound_s": bound,
                "spawn_bound_s": SPAWN_BOUND_S,
                "ledgers": ledgers,
                "final_jobs": {
                    n: [j["name"] for j in self.cluster.get(n, "/v1/jobs", timeout=10)["jobs"]]
                    for n in self.names
                },
                "observed_runs": self.observed,
            }
            (self.out / "history.json").write_text(json.dumps(history))
            if nemesis == "restart-rolling":
                log(f"  {nemesis}: {self.left_running(ledgers[self.names[0]])}")
        finally:
            self.stop_workload.set()
            self.stop_churn.set()
            self.cluster.stop()
            self.sink.close()
            self.sink_proc.terminate()
            self.sink_proc.wait(10)


# name -> the smallest cluster it needs
NEMESES: dict[str, int] = {
    "kill-leader": 3,
    "kill-random": 3,
    "kill-all": 3,
    "restart-rolling": 3,
    "churn-leader": 3,
    "power-loss": 3,
    "pause-leader": 3,
    "pause-executor": 3,
    "pause-executor-group": 3,
    "partition-leader": 3,
    "partition-random": 5,
    "partition-ring": 5,
    "partition-bridge": 5,
    "partition-oneway": 3,
    "clock-forward-leader": 3,
    "clock-backward-leader": 3,
    "clock-strobe-leader": 3,
    "clock-jump-executor": 3,
    "clock-strobe-executor": 3,
    "mixed": 5,
}


# Nemeses that mixed does not draw: their point is something beside their faults.
SOLO: frozenset[str] = frozenset({"mixed", "churn-leader"})


def in_own_netns() -> bool:
    return os.environ.get("RAFTCRON_CHAOS_NETNS") == str(os.getpid())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.chaos.runner", description=__doc__)
    p.add_argument("--nemesis", action="append", choices=sorted(NEMESES), help="repeatable")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of faults per nemesis")
    p.add_argument("--quiet", type=float, default=4.0, help="mean seconds between faults")
    p.add_argument("--fault", type=float, default=4.0, help="mean seconds a fault lasts")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path("chaos-out"))
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        log("chaos: needs root (network namespace and iptables); run it as root")
        return 2
    if not in_own_netns():
        env = {**os.environ, "RAFTCRON_CHAOS_NETNS": "exec"}
        # `unshare -n` gives this process (and everything it starts) a namespace of its own,
        # which disappears with it: no cleanup, no effect on the machine's network.
        again = sys.argv[1:] if argv is None else argv
        cmd = ["unshare", "-n", sys.executable, "-m", "tests.chaos.runner", *again]
        return subprocess.run(cmd, env=env, check=False).returncode
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    names = args.nemesis or list(NEMESES)
    log(f"chaos: seed={seed} nemeses={len(names)} duration={args.duration:g}s each")
    log(f"chaos: recovery bound {recovery_bound()}s = restart {RESTART_S}s + 2 elections "
        f"x {ELECTION_MAX_S}s + lease {LEASE_S}s x (1+{RHO}) + takeover patience")  # fmt: skip
    failed = []
    for i, name in enumerate(names):
        out = args.out.resolve() / name
        log(f"chaos: [{i + 1}/{len(names)}] {name} -> {out}")
        t0 = time.monotonic()
        run = Run(name, out, max(3, NEMESES[name]), seed + zlib.crc32(name.encode()))
        run.execute(name, args.duration, args.quiet, args.fault)
        history = checker.load(out)
        report = checker.check(history)
        log(report.line() + f" ({time.monotonic() - t0:.0f}s)")
        gap = checker.longest_gap(history)
        if gap is not None:
            log(f"    longest gap between executions of an every-second job: {gap[1]:.2f}s "
                f"({gap[0]})")  # fmt: skip
        for v in report.violations:
            log(f"    {v}")
        if not report.ok:
            failed.append(name)
    if failed:
        log(f"chaos: FAILED {', '.join(failed)} (replay: --seed {seed})")
        return 1
    log(f"chaos: all {len(names)} nemeses passed (seed {seed})")
    return 0


if __name__ == "__main__":
    if os.environ.get("RAFTCRON_CHAOS_NETNS") == "exec":
        os.environ["RAFTCRON_CHAOS_NETNS"] = str(os.getpid())
    sys.exit(main())
