"""Real `raftcron agent` processes on loopback ports, for cluster tests and benchmarks.

Every wait has a deadline; nothing sleeps and hopes. Processes are ended by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.helpers import free_ports as free_ports  # re-exported: bench uses it from here

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]  # the checkout: tests.* importable from here


class HTTPStatusError(Exception):
    """An API answer that is not 2xx (``Cluster.get``): in a wait predicate, "not yet"."""


def wait_for(what: str, fn: Callable[[], T | None], timeout: float, interval: float = 0.1) -> T:
    """Poll ``fn`` until it returns something truthy; fail naming ``what`` at the deadline.

    An exception from ``fn`` means "not yet" (a node restarting, a 503 during an election),
    except an ``AssertionError``: an ``assert`` in a predicate is a verdict, and it fails
    the wait at once instead of being retried until the deadline hides it."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = fn()
            if value:
                return value
        except AssertionError:
            raise
        except Exception as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what} (last error: {last_exc})"
            )
        time.sleep(interval)


def api_tokens(admin: str, read: str) -> str:
    """An ``[api]`` table with one admin and one read token (``extra_toml``)."""
    return (
        f'[[api.tokens]]\nrole = "admin"\ntoken = "{admin}"\n'
        f'[[api.tokens]]\nrole = "read"\ntoken = "{read}"\n'
    )


def toml_job(job: dict[str, Any]) -> str:
    lines = ["[[jobs]]"]
    for k, v in job.items():
        if isinstance(v, dict):
            inner = ", ".join(f"{ik} = {json.dumps(iv)}" for ik, iv in v.items())
            lines.append(f"{k} = {{ {inner} }}")
        else:
            lines.append(f"{k} = {json.dumps(v)}")
    return "\n".join(lines)


@dataclass
class Member:
    name: str
    raft_port: int
    api_port: int
    log: Path
    tags: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    scheme: str = "http"
    host: str = "127.0.0.1"
    group: int | None = None  # run the agent with this gid (chaos: iptables owner match)
    env: dict[str, str] = field(default_factory=dict)  # extra environment for this node
    # run the agent under this command (e.g. unshare + a mount; it must exec the agent,
    # so that ``proc.pid`` is the agent's)
    prefix: list[str] = field(default_factory=list)
    config: Path | None = None  # this member's own cluster file (default: the shared one)
    # the interpreter that runs this member's agent (default: the test's; a rolling upgrade
    # gives each member the python of a venv holding one release)
    python: str | None = None

    @property
    def api(self) -> str:
        return f"{self.scheme}://{self.host}:{self.api_port}"

    @property
    def raft(self) -> str:
        return f"{self.host}:{self.raft_port}"


class Cluster:
    def __init__(
        self,
        root: Path,
        jobs: Iterable[dict[str, Any]] = (),
        *,
        size: int = 3,
        tags: dict[str, dict[str, str]] | None = None,
        env: dict[str, str] | None = None,
        extra_cluster: str = "",
        extra_toml: str = "",
        token: str | None = None,
        cafile: Path | None = None,
        hosts: list[str] | None = None,
    ) -> None:
        """``extra_toml`` is appended to the file (e.g. an ``[api]`` table); ``token`` is sent
        as a bearer token by every request this harness makes; with ``cafile`` the members
        speak HTTPS and are verified against it. With ``hosts`` (one loopback address per
        member, e.g. inside a network namespace) every member listens on its own address
        with fixed ports 7000 (Raft) and 8000 (API)."""
        self.root = root
        self.token = token
        self.ssl: ssl.SSLContext | None = None
        if cafile is not None:
            self.ssl = ssl.create_default_context(cafile=str(cafile))
        self.env = dict(os.environ)
        self.env.update(env or {})
        # what `python -m` runs as the agent (a test may wrap raftcron's CLI)
        self.module = "raftcron"
        self.agent_args: list[str] = []  # more options for `raftcron agent`, e.g. --log-json
        ports = free_ports(size * 2) if hosts is None else [7000, 8000] * size
        self.members = {
            name: Member(
                name=name,
                raft_port=ports[2 * i],
                api_port=ports[2 * i + 1],
                log=root / f"{name}.log",
                tags=(tags or {}).get(name, {}),
                scheme="http" if cafile is None else "https",
                host="127.0.0.1" if hosts is None else hosts[i],
            )
            for i, name in enumerate("abcdefg"[:size])
        }
        parts = [
            "[cluster]",
            'secret = "test-secret-0123456789abcdef"',
            extra_cluster,
        ]
        for m in self.members.values():
            parts.append(f"[cluster.nodes.{m.name}]")
            parts.append(f'raft = "{m.raft}"')
            parts.append(f'api = "{m.host}:{m.api_port}"')
            parts.append(f'data_dir = "data/{m.name}"')
            if m.tags:
                parts.append(
                    "tags = { " + ", ".join(f'{k} = "{v}"' for k, v in m.tags.items()) + " }"
                )
        parts.extend(toml_job(j) for j in jobs)
        parts.append(extra_toml)
        self.config = root / "cluster.toml"
        self.config.write_text("\n".join(parts) + "\n")

    def use_hooks(self) -> None:
        """Run the agents as ``tests.cluster.hooked_agent``: the test hooks of
        :mod:`raftcron.hooks` (a controlled clock, power cuts, small snapshots), set from
        the variables that module names in this cluster's or a member's ``env``."""
        self.module = "tests.cluster.hooked_agent"
        path = self.env.get("PYTHONPATH", "")
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), path) if p)

    # -- processes

    def start(self, name: str | None = None) -> None:
        for m in self.members.values() if name is None else [self.members[name]]:
            log = m.log.open("ab")
            m.proc = subprocess.Popen(
                [
                    *m.prefix,
                    m.python or sys.executable,
                    "-m",
                    self.module,
                    "agent",
                    "--config",
                    str(m.config or self.config),
                    "--node",
                    m.name,
                    *self.agent_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self.env, **m.env},
                cwd=self.root,
                group=m.group,
                extra_groups=None if m.group is None else [],
            )
            log.close()

    def signal(self, name: str, sig: int) -> None:
        proc = self.members[name].proc
        assert proc is not None
        os.kill(proc.pid, sig)

    def kill(self, name: str) -> None:
        proc = self.members[name].proc
        assert proc is not None
        proc.kill()
        proc.wait(10)

    def stop(self) -> None:
        for m in self.members.values():
            if m.proc is not None and m.proc.poll() is None:
                try:
                    os.kill(m.proc.pid, signal.SIGCONT)
                    m.proc.terminate()
                except ProcessLookupError:
                    pass
        for m in self.members.values():
            if m.proc is not None:
                try:
                    m.proc.wait(15)
                except subprocess.TimeoutExpired:
                    m.proc.kill()
                    m.proc.wait(5)

    def logs(self) -> str:
        out = []
        for m in self.members.values():
            if m.log.exists():
                out.append(f"===== {m.name} =====\n" + m.log.read_text(errors="replace")[-6000:])
        return "\n".join(out)

    # -- API

    def open(self, req: urllib.request.Request | str, timeout: float) -> Any:
        """``urlopen`` with this cluster's token and TLS context."""
        if isinstance(req, str):
            req = urllib.request.Request(req)
        if self.token is not None and not req.has_header("Authorization"):
            req.add_header("Authorization", f"Bearer {self.token}")
        return urllib.request.urlopen(req, timeout=timeout, context=self.ssl)

    def get(self, name: str, path: str, timeout: float = 2.0) -> Any:
        try:
            with self.open(self.members[name].api + path, timeout=timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            with exc:
                raise HTTPStatusError(
                    f"GET {path} on {name}: HTTP {exc.code}: {exc.read()!r}"
                ) from None

    def request(
        self, name: str, method: str, path: str, body: Any = None, timeout: float = 10.0
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.members[name].api + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with self.open(req, timeout=timeout) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read() or b"null")

    def alive(self) -> list[str]:
        return [n for n, m in self.members.items() if m.proc is not None and m.proc.poll() is None]

    def leader(self, among: Iterable[str] | None = None) -> str | None:
        """The member whose /health/leader is 200 (an established leader), if exactly one."""
        found = []
        for name in among or self.alive():
            try:
                with self.open(self.members[name].api + "/health/leader", timeout=1.0) as r:
                    if r.status == 200:
                        found.append(name)
            except urllib.error.HTTPError as exc:
                exc.close()
            except (urllib.error.URLError, OSError):
                continue
        return found[0] if len(found) == 1 else None

    def all_see_leader(self) -> bool:
        return all(self.request(n, "GET", "/health")[0] == 200 for n in self.members)

    def wait_leader(self, timeout: float = 30.0, among: Iterable[str] | None = None) -> str:
        members = list(among) if among is not None else None
        return wait_for("an established leader", lambda: self.leader(members), timeout)

    def runs(self, name: str, job: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        q = f"/v1/runs?limit={limit}" + (f"&job={job}" if job else "")
        runs: list[dict[str, Any]] = self.get(name, q, timeout=5.0)["runs"]
        return runs

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name, "/v1/status", timeout=5.0))

    def quiesce(
        self, jobs: Iterable[str], among: Iterable[str] | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """Pause ``jobs``, wait until no run is in flight and every member (of ``among``)
        applied the same log, and return each member's ledger: read then, the ledgers
        cover every execution a sink saw (the input of ``checker.check_record``)."""
        names = list(among) if among is not None else list(self.members)
        leader = self.wait_leader(60, among=names)

        def paused(job: str) -> bool:
            return 200 <= self.request(leader, "POST", f"/v1/jobs/{job}/pause")[0] < 300

        for job in jobs:
            wait_for(f"{job} paused", lambda: paused(job), 30)  # noqa: B023 (called at once)

        def idle() -> bool:
            q = "/v1/runs?status=claimed,running&limit=1"
            return all(self.get(n, q)["total"] == 0 for n in names)

        def settled() -> bool:
            applied = {(st["commit_index"], st["last_applied"]) for st in map(self.status, names)}
            return len(applied) == 1

        wait_for("every run in flight to finish", idle, 90, interval=0.3)
        wait_for("every member to apply the same log", settled, 60, interval=0.3)
        return {n: self.ledger(n) for n in names}

    def ledger(self, name: str) -> list[dict[str, Any]]:
        """Every run ``name``'s ledger holds, all pages (newest first)."""
        runs: list[dict[str, Any]] = []
        before = ""
        while True:
            q = "/v1/runs?limit=1000" + (f"&before={before}" if before else "")
            page = self.get(name, q, timeout=30)
            runs.extend(page["runs"])
            if not page["next"]:
                return runs
            before = page["next"]


def read_sink(path: Path) -> list[dict[str, str]]:
    """Lines written by jobs: ``key=value`` pairs separated by spaces."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        out.append(dict(kv.split("=", 1) for kv in line.split()))
    return out


SINK_CMD = (
    'echo "job=$RAFTCRON_JOB run=$RAFTCRON_RUN_ID at=$RAFTCRON_SCHEDULED_AT '
    'fence=$RAFTCRON_FENCE node=$RAFTCRON_NODE attempt=$RAFTCRON_ATTEMPT" >> {sink}'
)


@contextlib.contextmanager
def running(cluster: Cluster) -> Iterator[Cluster]:
    """Start ``cluster``, wait until every member sees an established leader, and stop it
    at the end (printing its logs with RAFTCRON_TEST_LOGS=1): module-scoped fixtures."""
    cluster.start()
    try:
        cluster.wait_leader(60)
        wait_for("every member to see the leader", cluster.all_see_leader, 30)
        yield cluster
    finally:
        cluster.stop()
        if os.environ.get("RAFTCRON_TEST_LOGS"):
            print(cluster.logs())
