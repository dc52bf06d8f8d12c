"""What every workload gets: the sizes of this run (quick or full), a scratch directory,
the PID registry, and the systems under test."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import MemoryGuard, Registry, log
from tests.cluster.harness import Cluster

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"


@dataclass
class Sizes:
    """Repetitions and sizes; ``quick()`` keeps ``make bench-quick`` to a few minutes."""

    runs: int = 5  # repetitions of each latency figure
    lock_iters: int = 1000
    wrapper_iters: int = 50
    contended_runs: int = 3
    contended_seconds: float = 5.0
    contended_clients: tuple[int, ...] = (16, 64)
    failover_trials: int = 10
    scale_jobs: tuple[int, ...] = (1_000, 10_000, 100_000)
    burst_exec_max: int = 10_000  # above this, bursts run as claim-only (see scale.py)
    burst_runs: int = 2
    steady_seconds: float = 60.0
    every_second_jobs: int = 5
    runs_target: int = 1_000_000
    runs_seconds: float = 420.0
    commit_iters: int = 1000
    inflight: tuple[int, ...] = (1, 16, 64)
    inflight_seconds: float = 5.0
    floor_spawn_seconds: float = 10.0  # bench/floor.py: fork/exec `true` back to back
    floor_timer_fires: int = 30  # bench/floor.py: every-second timer fires per supervisor
    burst_true_jobs: int = 10_000  # bench/burst.py run_all: issue 17's burst of `true` jobs

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            runs=2,
            lock_iters=200,
            wrapper_iters=8,
            contended_runs=1,
            contended_seconds=1.5,
            contended_clients=(16, 64),
            failover_trials=2,
            scale_jobs=(500,),
            burst_exec_max=500,
            burst_runs=1,
            steady_seconds=10.0,
            every_second_jobs=3,
            runs_target=20_000,
            runs_seconds=10.0,
            commit_iters=200,
            inflight=(1, 16, 64),
            inflight_seconds=1.5,
            floor_spawn_seconds=3.0,
            floor_timer_fires=6,
            burst_true_jobs=500,
        )


@dataclass
class Ctx:
    sizes: Sizes
    tmp: Path
    reg: Registry
    quick: bool
    notes: list[str] = field(default_factory=list)
    guard: MemoryGuard | None = None

    def memory_trip(self) -> str | None:
        """The memory guard's reason if it stopped the systems since the last call (then it
        waits for memory to come back and re-arms), else None."""
        g = self.guard
        if g is None or g.tripped is None:
            return None
        why = g.tripped
        self.note(f"memory guard: {why}")
        g.reset(8 * 2**30)
        return why

    def note(self, msg: str) -> None:
        log(msg)
        self.notes.append(msg)

    def raftcron(
        self,
        name: str,
        jobs: list[dict[str, Any]] | None = None,
        env: dict[str, str] | None = None,
        extra_cluster: str = "",
    ) -> Cluster:
        """A 3-node raftcron cluster with the harness's defaults (password, durable
        journal, no API token: loopback), started and with an established leader."""
        root = self.tmp / name
        root.mkdir(parents=True, exist_ok=True)
        e = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        e.update(env or {})
        cl = Cluster(root, jobs or [], env=e, extra_cluster=extra_cluster)
        self.reg.on_stop(cl.stop)
        cl.start()
        cl.wait_leader(60)
        return cl


def installed(tree: Path, dest: Path) -> Path:
    """``raftcron`` installed from a wheel of ``tree`` into a fresh venv at ``dest`` (what
    a user's ``pip install`` gives: no editable-install path finder, whose imports cost a
    one-shot command such as ``raftcron lock`` several ms); the path of its script.
    Built with build isolation (setuptools from the package index); raises on failure."""
    import shutil
    import subprocess
    import sys

    src = dest / "src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "cluster.example.toml"):
        shutil.copy(tree / name, src / name)
    shutil.copytree(
        tree / "raftcron", src / "raftcron", ignore=shutil.ignore_patterns("__pycache__")
    )
    pip = [str(BIN / "pip"), "--quiet", "--disable-pip-version-check"]
    # no PYTHONPATH: a checkout on it (bench.ab runs with PYTHONPATH=.) looks installed
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = {"check": True, "capture_output": True, "env": env}
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(dest / "wheel"), str(src)], **run)
    (wheel,) = (dest / "wheel").glob("raftcron-*.whl")
    venv = dest / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], **run)
    py = str(venv / "bin" / "python")
    subprocess.run([*pip, "--python", py, "install", "--no-deps", "--no-index", str(wheel)], **run)
    return venv / "bin" / "raftcron"


def agent_pids(cl: Cluster) -> dict[str, int]:
    return {n: m.proc.pid for n, m in cl.members.items() if m.proc is not None}
