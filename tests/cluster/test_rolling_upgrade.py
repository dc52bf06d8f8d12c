"""A rolling upgrade of a live 3-node cluster, one node at a time (issue 15 item 4).

Two releases are installed, each into its own virtualenv: the old one and this checkout
(tracked files as they are in the working tree). Each is extracted to a temporary
directory and installed with ``pip install --no-deps``. Each virtualenv reaches the test
environment's packages through a ``.pth`` file, so nothing is downloaded except what
pip's build isolation takes from the configured local wheels.

The old release is ``RAFTCRON_UPGRADE_FROM`` when that is set. Otherwise it is the tag
``v0.2.0`` if it exists, and ``OLD_COMMIT`` if not. ``OLD_COMMIT`` is main when this test
was last merged with it: the most recent commit that speaks HEAD's Raft wire, and that
advertises no feature level (level 0). Upgrading from v0.1.0 is a full stop (CHANGELOG.md), so it is
never the old release here.

The cluster starts on the old release with ``tick``, an every-second job that reports to
the chaos suite's sink (tests/chaos/sink.py), a process outside the cluster. Each node in
turn is stopped with SIGTERM (its shutdown drain) and started again on this checkout.
Before the next node goes, the one just started must be back and caught up, and the job
must have run three more times. While at least one node is still old, a PUT to an
upgraded node of a job that uses a gated key newer than the old release's level answers
409 ``feature_not_enabled``. From a release
before levels (level 0) that key is ``description`` (level 1, raftcron/core/jobfields.py). The
409 names exactly the members still to upgrade, and nothing is written. Once the last
node is upgraded, every member shows every member at the new version and level, and the
same PUT succeeds. If the old release already has this checkout's level, no key is newer
and the gate part has nothing to refuse; the test says so and checks the rest.

Afterwards the chaos checker (tests/chaos/checker.py) runs over the sink's record with
one fault window covering the whole upgrade: no fire executed twice, fences in order,
every execution granted, and every scheduled fire either executed or recorded in a
ledger. The longest gap between executions of ``tick`` is printed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import time
import tomllib
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from raftcron.core import features
from tests.chaos import checker
from tests.cluster.harness import Cluster, running, wait_for
from tests.cluster.test_rolling_restart import Sink, caught_up

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
JOB_PY = ROOT / "tests" / "chaos" / "job.py"
# main when this test was last merged with it (before feature levels): what v0.2.0 will be
# upgraded from until the tag exists. Older commits of main do not share HEAD's wire: the
# AppendEntries reply carries its term since the seam merge (2697cf9), and builds before it
# refuse such replies (raftcron/raft/wire.py: ACK_TERM_ON_WIRE).
OLD_COMMIT = "39d43ae3098b0d79dac287834780071b7ee28243"
NEW_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
NEW_LEVEL = features.FEATURE_LEVEL
# A value for each gated job key (the test writes a job using the newest one the old
# release lacks).
SAMPLES: dict[str, Any] = {"description": "written during a rolling upgrade"}
CLUSTER = 'shutdown_drain = "2s"\nlease = "15s"\nhistory = 1000000'
TICK = {"schedule": "* * * * * *", "overlap": "allow", "timezone": "UTC", "retries": 0}


def old_ref() -> str:
    explicit = os.environ.get("RAFTCRON_UPGRADE_FROM")
    if explicit:
        return explicit
    tagged = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", "v0.2.0^{commit}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return "v0.2.0" if tagged.returncode == 0 else OLD_COMMIT


def extract(ref: str | None, dest: Path) -> None:
    """``ref``'s tree (None: the checkout's tracked files as they are now) into ``dest``."""
    dest.mkdir(parents=True)
    if ref is None:
        names = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True
        ).stdout
        pack = subprocess.run(
            ["tar", "--null", "-c", "-C", str(ROOT), "-T", "-"],
            input=names,
            capture_output=True,
            check=True,
        ).stdout
    else:
        pack = subprocess.run(
            ["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True
        ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=pack, check=True)


def install(ref: str | None, root: Path, name: str) -> str:
    """A virtualenv holding ``ref``'s raftcron; the path of its python."""
    src, venv = root / f"src-{name}", root / f"venv-{name}"
    extract(ref, src)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # the test environment's packages (aiohttp, pysyncobj, ...) after the venv's own
    (Path(purelib) / "_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    done = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", str(src)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"pip install of {ref or 'HEAD'}:\n{done.stdout}\n{done.stderr}"
    return python


def gated_key(old_level: int) -> str | None:
    """A job key this checkout gates above ``old_level`` (None: there is none)."""
    newer = sorted((lv, k) for k, lv in features.JOB_KEYS.items() if lv > old_level)
    if not newer:
        return None
    key = newer[0][1]
    assert key in SAMPLES, f"give SAMPLES a value for the gated job key {key!r}"
    return key


def gated_job(key: str) -> dict[str, Any]:
    """A job using ``key``; it would fire once a year (it never does here)."""
    return {"schedule": "0 0 1 1 *", "command": ["cat"], key: SAMPLES[key]}


def members_view(cl: Cluster, node: str) -> dict[str, tuple[Any, Any]]:
    """What ``node``'s status says each member runs: name -> (version, feature_level)."""
    st = cl.status(node)
    return {m["name"]: (m.get("version"), m.get("feature_level")) for m in st["members"]}


def test_rolling_upgrade_one_node_at_a_time(tmp_path: Path) -> None:
    ref = old_ref()
    known = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{ref}^{{commit}}"], check=False
    )
    if known.returncode != 0:
        pytest.skip(f"the old release {ref} is not in this checkout's history (a shallow clone)")
    t_install = time.monotonic()
    old_python = install(ref, tmp_path, "old")
    new_python = install(None, tmp_path, "new")
    print(f"installed {ref} and HEAD in {time.monotonic() - t_install:.0f}s")
    sink = Sink(tmp_path)
    tick = {
        "name": "tick",
        "schedule": TICK["schedule"],
        "overlap": "allow",
        "command": [sys.executable, "-S", str(JOB_PY), str(sink.sock), "0.2"],
    }
    cl = Cluster(tmp_path, [tick], extra_cluster=CLUSTER)
    for m in cl.members.values():
        m.python = old_python
    refusals: list[str] = []
    try:
        with running(cl):
            wait_for("tick to run", lambda: any(b["job"] == "tick" for b in sink.begins()), 60)
            # a release from before levels advertises nothing: level 0
            old_level = int(cl.status("a").get("feature_level", 0))
            key = gated_key(old_level)
            if key is None:
                print(f"{ref} is already at level {NEW_LEVEL}: no gated key to refuse")
            start_t = time.monotonic()
            window = {"id": 1, "name": "rolling-upgrade", "kind": "restart"}
            sink.client.event(ev="nemesis", phase="start", nodes=list(cl.members), **window)
            t0 = time.monotonic()
            order = list(cl.members)
            for i, node in enumerate(order):
                proc = cl.members[node].proc
                assert proc is not None
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)  # after at most the 2 s shutdown drain
                cl.members[node].python = new_python
                back = time.monotonic()
                cl.start(node)
                cl.wait_leader(60)
                wait_for(f"{node} upgraded and caught up", lambda n=node: caught_up(cl, n), 90)
                # the mixed cluster runs the job a while before the next node goes
                wait_for(
                    f"tick to run 3 times with {node} upgraded",
                    lambda t=back: (
                        sum(b["job"] == "tick" and b["t"] > t for b in sink.begins()) >= 3
                    ),
                    60,
                )
                upgraded, behind = order[: i + 1], order[i + 1 :]
                # every upgraded member sees the upgraded ones at the new level
                for n in upgraded:
                    wait_for(
                        f"{n} to see {upgraded} at level {NEW_LEVEL}",
                        lambda n=n, up=upgraded: all(
                            members_view(cl, n)[u] == (NEW_VERSION, NEW_LEVEL) for u in up
                        ),
                        30,
                    )
                if behind and key is not None:
                    code, body = cl.request(node, "PUT", "/v1/jobs/gated", gated_job(key))
                    assert code == 409, (code, body)
                    err = body["error"]
                    assert err["code"] == "feature_not_enabled", err
                    message = err["message"]
                    assert repr(key) in message, message
                    for n in order:
                        assert (f"{n} (level {old_level})" in message) == (n in behind), message
                    refusals.append(message)
                    assert cl.request(node, "GET", "/v1/jobs/gated")[0] == 404  # nothing written
                print(f"{node} upgraded at {time.monotonic() - t0:.0f}s")
            last = time.monotonic()
            for n in order:  # every member sees every member upgraded
                wait_for(
                    f"{n} to see every member at {NEW_VERSION} level {NEW_LEVEL}",
                    lambda n=n: set(members_view(cl, n).values()) == {(NEW_VERSION, NEW_LEVEL)},
                    60,
                )
                assert cl.status(n)["cluster_feature_level"] == NEW_LEVEL

            def put_gated() -> bool:
                assert key is not None
                code, body = cl.request(order[0], "PUT", "/v1/jobs/gated", gated_job(key))
                assert code in (200, 201, 409, 503), (code, body)
                return code in (200, 201)

            if key is not None:
                wait_for("the gated write to succeed once every member is upgraded", put_gated, 60)
                # (another member has it once it has applied the write)
                job = wait_for(
                    f"the gated job on {order[-1]}",
                    lambda: cl.request(order[-1], "GET", "/v1/jobs/gated")[1].get("spec"),
                    30,
                )
                assert job[key] == SAMPLES[key], job

            wait_for(
                "tick to run after the last upgrade",
                lambda: any(b["job"] == "tick" and b["t"] > last + 1 for b in sink.begins()),
                60,
            )
            sink.client.event(ev="nemesis", phase="end", nodes=list(cl.members), **window)
            end_t = time.monotonic()
            ledgers = cl.quiesce(("tick", "gated") if key is not None else ("tick",))
    finally:
        sink.close()
    report, tl = checker.check_record(
        tmp_path,
        name="rolling-upgrade",
        jobs={"tick": TICK},
        start_t=start_t,
        end_t=end_t,
        ledgers=ledgers,
    )
    print(report.line())
    ticks = sorted(
        e.begin_t for e in tl.executions if e.job == "tick" and start_t <= e.begin_t <= end_t
    )
    gap = max(b - a for a, b in pairwise(ticks))
    print(
        f"rolling upgrade {ref} -> HEAD ({NEW_VERSION}, level {NEW_LEVEL}): 3 nodes in "
        f"{last - t0:.0f}s, {len(ticks)} executions of the every-second job; longest gap "
        f"between executions: {gap:.2f}s; gated write refused {len(refusals)} time(s) during "
        f"the mixed phase, e.g.: {refusals[0] if refusals else '-'}"
    )
    assert report.violations == [], "\n".join(map(str, report.violations))
    assert report.expected_fires > 0 and len(ticks) > 0
    assert len(refusals) == (2 if key is not None else 0)
