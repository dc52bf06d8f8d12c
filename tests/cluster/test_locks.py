"""Named locks on a real 3-node cluster: `raftcron lock` processes and the HTTP API.

What each test proves is in its docstring; the times it sees are printed (`pytest -s`),
never asserted: the lock round trip is measured by `python -m bench.lock_paths`. One
cluster serves the whole module; every test uses its own lock names.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.harness import Cluster, wait_for

pytestmark = pytest.mark.cluster

# CMD for the lock processes: append "start <fence> <monotonic>", hold a moment, append
# "end <fence> <monotonic>" (CLOCK_MONOTONIC is system-wide: comparable across processes).
HOLD_SCRIPT = """
import os, sys, time
path, hold = sys.argv[1], float(sys.argv[2])
fence = os.environ["RAFTCRON_FENCE"]
assert os.environ["RAFTCRON_LOCK"]
with open(path, "a") as f:
    f.write(f"start {fence} {time.monotonic()!r} {os.getpid()}\\n")
time.sleep(hold)
with open(path, "a") as f:
    f.write(f"end {fence} {time.monotonic()!r} {os.getpid()}\\n")
"""

# CMD for a holder that will be frozen: record the start, then sleep until stopped,
# recording when SIGTERM arrived.
SLEEP_SCRIPT = """
import os, signal, sys, time
path = sys.argv[1]
fence = os.environ["RAFTCRON_FENCE"]
def term(*_):
    with open(path, "a") as f:
        f.write(f"term {fence} {time.monotonic()!r} {os.getpid()}\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
with open(path, "a") as f:
    f.write(f"start {fence} {time.monotonic()!r} {os.getpid()}\\n")
time.sleep(120)
"""


def lock_cmd(cl: Cluster, node: str, name: str, *opts: str, cmd: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "raftcron",
        "lock",
        name,
        "--api",
        cl.members[node].api,
        *opts,
        "--",
        *cmd,
    ]


def spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)


def events(path: Path) -> list[tuple[str, int, float, int]]:
    out = []
    for line in path.read_text().splitlines():
        kind, fence, mono, pid = line.split()
        out.append((kind, int(fence), float(mono), int(pid)))
    return out


def q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def test_twenty_concurrent_lock_commands_never_overlap(cl: Cluster, tmp_path: Path) -> None:
    """20 `raftcron lock` processes started at once on one name, spread over the three
    nodes' APIs: every one runs its command exactly once, the commands' intervals never
    overlap, and fences rise in the order the commands ran."""
    out = tmp_path / "events"
    nodes = list(cl.members)
    cmd = [sys.executable, "-c", HOLD_SCRIPT, str(out), "0.05"]
    t0 = time.monotonic()
    procs = [
        spawn(
            lock_cmd(cl, nodes[i % 3], "twenty", "--ttl", "5s", "--wait", "90s", cmd=cmd),
            tmp_path / f"lock{i}.err",
        )
        for i in range(20)
    ]
    try:
        for p in procs:
            p.wait(120)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    took = time.monotonic() - t0
    errors = [(tmp_path / f"lock{i}.err").read_text() for i in range(20)]
    assert [p.returncode for p in procs] == [0] * 20, errors
    evs = events(out)
    starts = sorted((mono, fence) for kind, fence, mono, _ in evs if kind == "start")
    ends = {fence: mono for kind, fence, mono, _ in evs if kind == "end"}
    assert len(starts) == 20 and len(ends) == 20
    fences = [fence for _, fence in starts]
    assert fences == sorted(fences) and len(set(fences)) == 20, f"fences not rising: {fences}"
    for (start, fence), (next_start, next_fence) in itertools.pairwise(starts):
        assert start < ends[fence] < next_start, (
            f"fence {fence} ran {start:.4f}..{ends[fence]:.4f}, overlapping fence "
            f"{next_fence} from {next_start:.4f}"
        )
    gaps = [nxt - ends[f] for (_, f), (nxt, _) in itertools.pairwise(starts)]
    print(
        f"\n20 lock processes: {took:.2f}s in all; hand-over gap (end -> next start, "
        f"incl. the next command's start-up) median {sorted(gaps)[len(gaps) // 2] * 1000:.0f} ms"
    )
    # The last holder's guardian sends its release as the command ends and does not wait
    # for the commit (raftcron/lockcmd.py, "Release"): the lock goes soon after.
    wait_for(
        "the last holder's release to commit",
        lambda: all(lk["name"] != "twenty" for lk in cl.get(nodes[0], "/v1/locks")["locks"]),
        30,
    )


def test_frozen_holder_loses_the_lock_and_its_command_is_stopped(
    cl: Cluster, tmp_path: Path
) -> None:
    """A `raftcron lock` holder that is SIGSTOPped past its TTL: its guardian stops the
    command before the lease runs out, the leader expires the lock and hands it to the
    next in line with a higher fence, and the frozen holder, resumed, exits 76."""
    out = tmp_path / "events"
    leader = cl.wait_leader(10)
    stale_before = cl.get(leader, "/v1/status")["stale_rejections"]
    a = spawn(
        lock_cmd(
            cl,
            leader,
            "frozen",
            "--ttl",
            "2s",
            "--grace",
            "1s",
            cmd=[sys.executable, "-c", SLEEP_SCRIPT, str(out)],
        ),
        tmp_path / "a.err",
    )
    b: subprocess.Popen[bytes] | None = None
    try:
        wait_for("the first holder's command to start", lambda: out.exists() and events(out), 20)
        # let it renew a few times first: the lock is alive only because of renewals
        time.sleep(1.5)
        assert a.poll() is None
        a.send_signal(signal.SIGSTOP)
        t_stop = time.monotonic()
        follower = next(n for n in cl.members if n != leader)
        b = spawn(
            lock_cmd(
                cl,
                follower,
                "frozen",
                "--ttl",
                "2s",
                "--wait",
                "30s",
                cmd=[sys.executable, "-c", HOLD_SCRIPT, str(out), "0.01"],
            ),
            tmp_path / "b.err",
        )
        assert b.wait(40) == 0, (tmp_path / "b.err").read_text()
        evs = events(out)
        a_start = next(e for e in evs if e[0] == "start")
        a_term = next((e for e in evs if e[0] == "term"), None)
        b_start = next(e for e in evs if e[0] == "start" and e[1] != a_start[1])
        assert a_term is not None, f"the frozen holder's command was never stopped: {evs}"
        assert a_term[2] < b_start[2], f"the next holder started before the command stopped: {evs}"
        assert b_start[1] > a_start[1]
        print(
            f"\nfrozen holder: command stopped {a_term[2] - t_stop:.2f}s after SIGSTOP, "
            f"next holder (fence {b_start[1]} > {a_start[1]}) started "
            f"{b_start[2] - a_term[2]:.2f}s later"
        )
        with pytest.raises(ProcessLookupError):
            os.kill(a_start[3], 0)  # the command is gone, not just signalled
    finally:
        a.send_signal(signal.SIGCONT)
        if b is not None and b.poll() is None:
            b.kill()
    assert a.wait(20) == 76, (tmp_path / "a.err").read_text()
    # the resumed holder's release named its stale fence: refused and counted
    assert cl.get(leader, "/v1/status")["stale_rejections"] > stale_before


def test_lock_command_exit_codes_and_release(cl: Cluster, tmp_path: Path) -> None:
    """`raftcron lock` exits 75 when the lock is held (wait 0), passes CMD's exit code
    through, releases on exit (or keeps the lock for --hold, released before it exits),
    and says when CMD cannot run."""
    leader = cl.wait_leader(10)
    follower = next(n for n in cl.members if n != leader)

    def run(*args: str, cmd: list[str]) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            lock_cmd(cl, follower, "codes", *args, cmd=cmd), capture_output=True, timeout=60
        )

    def held() -> list[str]:
        return [
            lk["holder"] for lk in cl.get(leader, "/v1/locks")["locks"] if lk["name"] == "codes"
        ]

    status, g = cl.request(leader, "POST", "/v1/locks/codes", {"ttl": "30s", "holder": "api"})
    assert status == 200
    busy = run(cmd=["true"])
    assert busy.returncode == 75 and b"held by 'api'" in busy.stderr
    assert run("-q", cmd=["true"]).stderr == b""
    cl.request(leader, "DELETE", f"/v1/locks/codes?fence={g['fence']}")

    # The exit code comes as soon as CMD ends; the release, already sent, commits after.
    assert run(cmd=["sh", "-c", 'test -n "$RAFTCRON_FENCE" && exit 3']).returncode == 3
    wait_for("the release sent on exit", lambda: held() == [], 10, interval=0.02)
    assert run(cmd=[str(tmp_path / "missing")]).returncode == 127
    wait_for("the release sent on exit", lambda: held() == [], 10, interval=0.02)
    t0 = time.monotonic()
    hold = spawn(
        lock_cmd(cl, follower, "codes", "--hold", "1500ms", "--holder", "holding", cmd=["true"]),
        tmp_path / "hold.err",
    )
    wait_for("the lock to be taken", lambda: held() == ["holding"], 10, interval=0.02)
    assert hold.wait(30) == 0
    assert time.monotonic() - t0 >= 1.5 and held() == []


def test_lock_api_through_followers(cl: Cluster) -> None:
    """The HTTP contract on followers (proposals forwarded to the leader): grant, refusal,
    timed-out wait, renew, stale fences refused (409) and counted, FIFO hand-over to
    waiters on other nodes, release, and 400s for bad input."""
    leader = cl.wait_leader(10)
    f1, f2 = (n for n in cl.members if n != leader)
    path = "/v1/locks/api-lock"
    stale_before = cl.get(leader, "/v1/status")["stale_rejections"]

    status, g = cl.request(f1, "POST", path, {"ttl": "10s", "holder": "one"})
    assert status == 200, g
    assert (g["lock"], g["holder"], g["ttl_ms"]) == ("api-lock", "one", 10_000)
    fence = g["fence"]

    status, body = cl.request(f2, "POST", path, {"ttl": 10, "holder": "two"})
    assert (status, body["error"]["code"]) == (409, "locked")
    assert "'one'" in body["error"]["message"]
    t0 = time.monotonic()
    status, body = cl.request(f2, "POST", path, {"ttl": "10s", "wait": "700ms"})
    assert (status, body["error"]["code"]) == (409, "locked")
    assert time.monotonic() - t0 >= 0.7

    listed = {lk["name"]: lk for lk in cl.get(leader, "/v1/locks")["locks"]}["api-lock"]
    assert (listed["fence"], listed["holder"], listed["ttl_ms"]) == (fence, "one", 10_000)
    assert listed["waiters"] == [] and listed["acquired_at"].endswith("Z")

    status, body = cl.request(f2, "POST", path + "/renew", {"fence": fence})
    assert status == 200 and body["fence"] == fence and body["ttl_ms"] == 10_000
    status, body = cl.request(f2, "POST", path + "/renew", {"fence": fence + 1000})
    assert (status, body["error"]["code"]) == (409, "stale_fence")

    # two waiters, queued through different followers, served in FIFO order
    results: dict[str, tuple[int, Any]] = {}

    def wait_on(node: str, who: str) -> None:
        results[who] = cl.request(
            node, "POST", path, {"ttl": "10s", "wait": "20s", "holder": who}, timeout=30
        )

    def queued() -> list[str]:
        locks = {lk["name"]: lk for lk in cl.get(leader, "/v1/locks")["locks"]}
        return [w["holder"] for w in locks["api-lock"]["waiters"]]

    first = threading.Thread(target=wait_on, args=(f1, "first"))
    first.start()
    wait_for("the first waiter to queue", lambda: queued() == ["first"], 10)
    second = threading.Thread(target=wait_on, args=(f2, "second"))
    second.start()
    wait_for("the second waiter to queue", lambda: queued() == ["first", "second"], 10)

    status, body = cl.request(leader, "DELETE", f"{path}?fence={fence}")
    assert status == 200 and body == {"lock": "api-lock", "released": True, "fence": fence}
    first.join(15)
    status, g1 = results["first"]
    assert status == 200 and g1["holder"] == "first" and g1["fence"] > fence
    assert "second" not in results
    # a repeated release (its answer was lost) is recognised: 200 again, nothing else moves
    status, body = cl.request(f2, "DELETE", f"{path}?fence={fence}")
    assert status == 200 and body["released"] is True
    status, body = cl.request(f2, "DELETE", f"{path}?fence={fence + 1000}")  # never its fence
    assert (status, body["error"]["code"]) == (409, "stale_fence")
    status, _ = cl.request(f1, "DELETE", f"{path}?fence={g1['fence']}")
    assert status == 200
    second.join(15)
    status, g2 = results["second"]
    assert status == 200 and g2["holder"] == "second" and g2["fence"] > g1["fence"]
    status, _ = cl.request(leader, "DELETE", f"{path}?fence={g2['fence']}")
    assert status == 200
    # f1 answers from its own replica, which applies the release a moment after the leader
    wait_for(
        "the release to reach f1",
        lambda: all(lk["name"] != "api-lock" for lk in cl.get(f1, "/v1/locks")["locks"]),
        10,
    )
    assert cl.get(leader, "/v1/status")["stale_rejections"] >= stale_before + 2

    for node, method, url, body_in in [
        (f1, "POST", path, {"ttl": "soon"}),
        (f1, "POST", path, {"ttl": "10ms"}),
        (f1, "POST", path, {"wait": "-1s"}),
        (f1, "POST", path, [1, 2]),
        (f1, "POST", path, {"holder": 7}),
        (f2, "POST", "/v1/locks/" + q("no spaces"), {"ttl": "5s"}),
        (f2, "POST", path + "/renew", {}),
        (f2, "POST", path + "/renew", {"fence": "x"}),
        (f2, "DELETE", path, None),
        (f2, "DELETE", path + "?fence=-3", None),
    ]:
        status, body = cl.request(node, method, url, body_in)
        assert (status, body["error"]["code"]) == (400, "invalid"), (url, body_in, body)


def test_waiter_of_a_frozen_api_node_is_dropped_by_the_leader(cl: Cluster) -> None:
    """A waiter whose API node froze (so it can never send its cancel) is dropped by the
    leader after its wait plus the grace: no waiter lives forever."""
    leader = cl.wait_leader(10)
    f2 = next(n for n in cl.members if n != leader)
    path = "/v1/locks/abandoned"
    status, g = cl.request(leader, "POST", path, {"ttl": "30s", "holder": "keeper"})
    assert status == 200
    result: dict[str, tuple[int, Any]] = {}

    def wait_on() -> None:
        result["w"] = cl.request(
            f2, "POST", path, {"ttl": "5s", "wait": "1s", "holder": "ghost"}, timeout=60
        )

    def waiters() -> list[str]:
        locks = {lk["name"]: lk for lk in cl.get(leader, "/v1/locks")["locks"]}
        return [w["holder"] for w in locks["abandoned"]["waiters"]]

    t = threading.Thread(target=wait_on)
    t.start()
    wait_for("the waiter to queue", lambda: waiters() == ["ghost"], 10, interval=0.02)
    cl.signal(f2, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        wait_for("the leader to drop the abandoned waiter", lambda: waiters() == [], 20)
        dropped_after = time.monotonic() - t0
    finally:
        cl.signal(f2, signal.SIGCONT)
    t.join(30)
    status, body = result["w"]
    assert (status, body["error"]["code"]) == (409, "locked"), body
    assert cl.get(leader, "/v1/locks")["locks"][0]["holder"] == "keeper"
    status, _ = cl.request(leader, "DELETE", f"{path}?fence={g['fence']}")
    assert status == 200
    print(f"\nabandoned waiter (wait 1s) dropped {dropped_after:.1f}s after its node froze")
