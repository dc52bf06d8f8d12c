"""Profiles of raftcron under the loads whose targets are missed (py-spy, bench extra).

    .venv/bin/python -m bench.profile lock      # the agents during an acquire/release loop
    .venv/bin/python -m bench.profile cli       # `raftcron lock N -- true`: imports + py-spy
    .venv/bin/python -m bench.profile steady    # executor nodes with every-second jobs
    .venv/bin/python -m bench.profile burst     # the agents during a 1,000-job burst
    .venv/bin/python -m bench.profile memory --jobs 100000   # the state's memory, in-process

Each writes py-spy's collapsed stacks under bench/results/scratch/profile-*/ and prints
the top frames by own ("self") and inclusive samples, per process. Sampling is of CPU
(idle threads are left out) unless ``--idle`` is given.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench.common import BIN, ROOT, Ctx, Sizes, agent_pids
from bench.procs import Registry, log
from tests.cluster.harness import Cluster

OUT = ROOT / "bench" / "results" / "scratch"
WATCHDOG = "raftcron.executor.watchdog"


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    """py-spy ``--format raw`` lines (``frame;frame;... count``) -> (frames, count)."""
    out = []
    for line in text.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        out.append((stack.split(";"), int(n)))
    return out


def top_frames(
    stacks: list[tuple[list[str], int]], k: int = 15
) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """(total samples, top ``k`` frames by own samples, top ``k`` by inclusive samples).
    A frame counts once per stack for the inclusive figure (recursion is not doubled)."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for frames, n in stacks:
        total += n
        fr = [f for f in frames if not f.startswith(("process ", "thread "))] or frames
        own[_short(fr[-1])] += n
        for f in {_short(f) for f in fr}:
            incl[f] += n
    return total, own.most_common(k), incl.most_common(k)


def _short(frame: str) -> str:
    frame = re.sub(r"/\S*/site-packages/", "", frame)
    frame = re.sub(r"/\S*/lib/python3\.\d+/", "", frame)
    return frame.replace(str(ROOT) + "/", "")


def _kind(frames: list[str]) -> str:
    """Which process a stack is from: the agent, a per-run watchdog, or another child."""
    procs = [f for f in frames if f.startswith("process ")]
    last = procs[-1] if procs else ""
    # a watchdog forked by the fork server shows the server's command line (spawner.py)
    if "executor.watchdog" in last or "executor/watchdog.py" in last or "spawner.py" in last:
        return "watchdog"
    return "agent" if "raftcron agent" in last or len(procs) <= 1 else "other child"


def report(path: Path, title: str, k: int = 15) -> str:
    stacks = parse_collapsed(path.read_text())
    total, own, incl = top_frames(stacks, k)
    lines = [f"### {title}: {total} samples ({path.name})", "", "own (self) samples:"]
    lines += [f"  {n / max(1, total):6.1%}  {f}" for f, n in own]
    lines += ["", "inclusive samples:"]
    lines += [f"  {n / max(1, total):6.1%}  {f}" for f, n in incl]
    kinds: Counter[str] = Counter()
    for frames, n in stacks:
        kinds[_kind(frames)] += n
    if len(kinds) > 1:
        lines += [
            "",
            "samples by process: "
            + ", ".join(f"{kd} {n / max(1, total):.0%}" for kd, n in kinds.most_common()),
        ]
        wd = [(f, n) for f, n in stacks if _kind(f) == "watchdog"]
        if wd:
            wt, _, wincl = top_frames(wd, k)
            lines += ["", "inside the watchdog processes, inclusive:"]
            lines += [
                f"  {n / max(1, wt):6.1%}  {f}" for f, n in wincl if not f.startswith("process ")
            ]
    return "\n".join(lines)


def spy(pid: int, seconds: float, out: Path, idle: bool, subprocesses: bool = False) -> None:
    argv = [str(BIN / "py-spy"), "record", "--pid", str(pid), "--duration", str(int(seconds))]
    argv += ["--rate", "250", "--format", "raw", "--output", str(out), "--nonblocking"]
    if idle:
        argv.append("--idle")
    if subprocesses:
        argv.append("--subprocesses")
    subprocess.run(argv, capture_output=True, check=False)


def _spy_all(cl: Cluster, seconds: float, out: Path, idle: bool, subp: bool) -> list[Path]:
    threads, files = [], []
    for name, pid in agent_pids(cl).items():
        f = out / f"{name}.txt"
        files.append(f)
        t = threading.Thread(target=spy, args=(pid, seconds, f, idle, subp))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    return [f for f in files if f.exists()]


def prof_lock(ctx: Ctx, out: Path, seconds: float, idle: bool) -> str:
    from bench.lock_latency import RaftcronRaw

    cl = ctx.raftcron("prof-lock")
    leader = cl.wait_leader(30)
    stop = threading.Event()
    count = [0]

    def loop() -> None:
        c = RaftcronRaw(cl.members[leader].api_port)
        while not stop.is_set():
            c.release("p", c.acquire("p"))
            count[0] += 1

    t = threading.Thread(target=loop)
    t.start()
    time.sleep(1)
    files = _spy_all(cl, seconds, out, idle, False)
    stop.set()
    t.join()
    roles = {n: ("leader" if n == leader else "follower") for n in cl.members}
    head = f"lock loop at the leader: {count[0]} pairs while profiling\n"
    return head + "\n\n".join(report(f, f"node {f.stem} ({roles[f.stem]})") for f in files)


def prof_cli(ctx: Ctx, out: Path, iters: int) -> str:
    cl = ctx.raftcron("prof-cli")
    leader = cl.wait_leader(30)
    api = cl.members[leader].api
    argv = [str(BIN / "python"), "-X", "importtime", "-m", "raftcron", "lock", "x", "--api", api]
    res = subprocess.run([*argv, "--", "true"], capture_output=True, text=True, check=False)
    imports = []
    for line in res.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            imports.append((int(m.group(2)), len(m.group(3)), m.group(4)))
    top = sorted((i for i in imports if i[1] <= 3), reverse=True)[:15]
    lines = ["`python -X importtime -m raftcron lock x -- true`, cumulative us (top levels):"]
    lines += [f"  {us / 1000:7.1f} ms  {'  ' * (depth - 1)}{name}" for us, depth, name in top]
    py = str(BIN / "python")
    for label, cmd in (
        ("python -c pass", [py, "-c", "pass"]),
        ("python -S -c pass (no site-packages)", [py, "-S", "-c", "pass"]),
        ("python -c 'import raftcron.cli'", [py, "-c", "import raftcron.cli"]),
        ("python -m raftcron.executor.watchdog (no spec: exits)", [py, "-m", WATCHDOG]),
        ("etcdctl version", ["etcdctl", "version"]),
    ):
        times = []
        for _ in range(iters * 3):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=False, capture_output=True, stdin=subprocess.DEVNULL)
            times.append(time.perf_counter() - t0)
        lines.append(f"`{label}`: median {sorted(times)[len(times) // 2] * 1000:.1f} ms")
    f = out / "cli.txt"
    loop = f"for i in $(seq {iters}); do {BIN}/raftcron lock x --api {api} -- true; done"
    subprocess.run(
        [
            str(BIN / "py-spy"),
            "record",
            "--rate",
            "1000",
            "--format",
            "raw",
            "--subprocesses",
            "--output",
            str(f),
            "--",
            "sh",
            "-c",
            loop,
        ],
        capture_output=True,
        check=False,
    )
    text = "\n".join(lines)
    if f.exists():
        text += "\n\n" + report(f, f"{iters} x `raftcron lock x -- true` (py-spy, subprocesses)")
    return text


def prof_jobs(
    ctx: Ctx, out: Path, seconds: float, idle: bool, burst: int, idle_jobs: int = 0
) -> str:
    from bench.scale import put_jobs

    cl = ctx.raftcron("prof-jobs")
    leader = cl.wait_leader(30)
    if idle_jobs:  # registered but not due (a fire once a year)
        put_jobs(
            cl,
            leader,
            [
                {"name": f"idle{i}", "schedule": "0 0 1 1 *", "command": ["true"]}
                for i in range(idle_jobs)
            ],
        )
    if burst:
        at = (int(time.time() + 25) // 10 + 1) * 10
        d = time.gmtime(at)
        sched = f"{d.tm_min} {d.tm_hour} {d.tm_mday} {d.tm_mon} * {d.tm_sec}"
        specs = [{"name": f"b{i}", "schedule": sched, "command": ["true"]} for i in range(burst)]
        put_jobs(cl, leader, specs)
        time.sleep(max(0.0, at - time.time() - 0.5))
    else:
        specs = [
            {"name": f"s{i}", "schedule": "* * * * * *", "command": ["true"]} for i in range(5)
        ]
        put_jobs(cl, leader, specs)
        time.sleep(3)
    files = _spy_all(cl, seconds, out, idle, True)
    roles = {n: ("leader" if n == leader else "follower") for n in cl.members}
    what = f"burst of {burst} jobs" if burst else "5 every-second jobs"
    what += f" ({idle_jobs} idle jobs registered)" if idle_jobs else ""
    return f"{what}, {seconds:g} s\n" + "\n\n".join(
        report(f, f"node {f.stem} ({roles[f.stem]}) and its subprocesses") for f in files
    )


def prof_memory(jobs: int) -> str:
    """The replicated state alone, in this process (no agent): ``jobs`` jobs as the scale
    workload registers them, then one claim-only fire each (a skipped run); tracemalloc's
    top allocation sites, and the snapshot encoding's size and peak."""
    import gc
    import tracemalloc

    from raftcron.config import job_spec_from_mapping
    from raftcron.core import commands as c
    from raftcron.core.state import State

    base = {
        "schedule": "0 0 1 1 *",
        "command": ["sh", "-c", 'echo "$RAFTCRON_RUN_ID $(date +%s%N)" >> /tmp/sink.txt'],
        "lease": "60s",
        "catchup": "10m",
        "tags": {"bench": "nowhere"},
    }
    specs = [
        job_spec_from_mapping({"name": f"b{i:06d}", **base}, "bench", default_lease_ms=30_000)
        for i in range(jobs)
    ]
    gc.collect()
    tracemalloc.start(5)
    t0 = tracemalloc.take_snapshot()
    st = State()
    at = 1_800_000_000_000
    for sp in specs:
        st.apply_bytes(c.encode(c.PutJob(at_ms=at, spec=sp, source="api")))
    gc.collect()
    after_jobs = tracemalloc.get_traced_memory()[0]
    fires = tuple(
        c.Fire(job=sp.name, scheduled_at_ms=at + 60_000, node="", trigger="schedule")
        for sp in specs
    )
    for i in range(0, len(fires), 20_000):
        st.apply_bytes(c.encode(c.Plan(at_ms=at + 60_000, fires=fires[i : i + 20_000], missed=())))
    del fires
    gc.collect()
    after_runs = tracemalloc.get_traced_memory()[0]
    t1 = tracemalloc.take_snapshot()
    tracemalloc.reset_peak()
    snap = st.capture()()
    peak = tracemalloc.get_traced_memory()[1]
    lines = [
        f"State with {jobs} jobs: {after_jobs / 1e6:.1f} MB traced "
        f"({after_jobs / jobs:.0f} B per job); with one skipped run each: "
        f"{after_runs / 1e6:.1f} MB; snapshot {len(snap) / 1e6:.1f} MB, peak while encoding "
        f"{peak / 1e6:.1f} MB",
        "",
        "top allocation sites (tracemalloc, by line):",
    ]
    for stat in t1.compare_to(t0, "lineno")[:12]:
        frame = stat.traceback[0]
        lines.append(
            f"  {stat.size_diff / 1e6:7.1f} MB  {stat.count_diff:>8} blocks  "
            f"{_short(frame.filename)}:{frame.lineno}"
        )
    tracemalloc.stop()
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["lock", "cli", "steady", "burst", "memory"])
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--idle", action="store_true", help="sample idle threads too (wall time)")
    ap.add_argument("--jobs", type=int, default=0, help="steady/burst: idle jobs registered first")
    args = ap.parse_args()
    out = OUT / f"profile-{args.what}{'-idle' if args.idle else ''}{args.jobs or ''}"
    out.mkdir(parents=True, exist_ok=True)
    reg = Registry()
    try:
        with tempfile.TemporaryDirectory(prefix="raftcron-prof-") as tmp:
            ctx = Ctx(sizes=Sizes.quick(), tmp=Path(tmp), reg=reg, quick=True)
            if args.what == "memory":
                text = prof_memory(args.jobs or 100_000)
            elif args.what == "lock":
                text = prof_lock(ctx, out, args.seconds, args.idle)
            elif args.what == "cli":
                text = prof_cli(ctx, out, 10)
            else:
                burst = 1000 if args.what == "burst" else 0
                text = prof_jobs(ctx, out, args.seconds, args.idle, burst, args.jobs)
    finally:
        reg.stop_all()
    (out / "summary.txt").write_text(text + "\n")
    print(text)
    log(f"profile written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
