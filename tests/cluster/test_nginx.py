"""The load-balancer seed pattern, proved with Debian's nginx in front of three agents.

Open-source nginx has no active health checks, so the recipe (docs/operations.md, "Behind a load
balancer") uses passive ones: an upstream of the three members' APIs with
``proxy_next_upstream error timeout http_503`` and ``max_fails=1 fail_timeout=1s``.

* ``GET /health/leader`` through nginx: a follower answers 503, a dead member refuses the
  connection; nginx moves on until the leader answers 200 (and skips the others for a
  second, so the next checks go straight to the leader).
* Every other request is pinned to the leader: an ``auth_request`` subrequest asks the
  upstream for ``/health/leader``, ``$upstream_addr`` of that subrequest says which member
  answered 200, and the request is proxied there. No leader: a JSON 503.

The test shows requests reach the leader (the responses name the node), and after
``kill -9`` of the leader they reach the new one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.harness import Cluster, free_ports, wait_for

pytestmark = pytest.mark.cluster

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
)
needs_nginx = pytest.mark.skipif(
    NGINX is None,
    reason="nginx not found: install Debian's nginx (apt-get install nginx), as .ci/run does, "
    "to run the load-balancer test",
)

# The recipe from docs/operations.md, with paths and ports filled in by the test.
SITE = """
upstream raftcron {{
{servers}
}}

# The member that answered the leader check (the last address nginx tried).
map $raftcron_tried $raftcron_leader {{
    "~(?<addr>[^, ]+)$" $addr;
}}

server {{
    listen {listen};

    proxy_connect_timeout 1s;
    proxy_next_upstream error timeout http_503;
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;

    # For a load balancer's own health check: 200 only from the leader.
    location = /health/leader {{
        proxy_read_timeout 2s;
        proxy_pass http://raftcron;
    }}

    # Everything else goes to the current leader.
    location / {{
        auth_request /.raftcron-leader;
        auth_request_set $raftcron_tried $upstream_addr;
        error_page 500 = @raftcron_no_leader;
        proxy_pass http://$raftcron_leader;
    }}

    location = /.raftcron-leader {{
        internal;
        proxy_read_timeout 2s;
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_pass http://raftcron/health/leader;
    }}

    location @raftcron_no_leader {{
        default_type application/json;
        return 503 '{{"error": {{"code": "no_leader", "message": "no member is leader"}}}}';
    }}
}}
"""

MAIN = """
{user}
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{site}
}}
"""


class Nginx:
    def __init__(self, tmp: Path, backends: list[str]) -> None:
        self.dir = tmp / "nginx"
        self.dir.mkdir()
        self.port = free_ports(1)[0]
        servers = "\n".join(f"    server {b} max_fails=1 fail_timeout=1s;" for b in backends)
        site = SITE.format(servers=servers, listen=f"127.0.0.1:{self.port}")
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(
            MAIN.format(
                # as root, keep the workers root too: they write into the test's tmp dir
                user="user root;" if os.geteuid() == 0 else "",
                tmp=self.dir,
                site=site,
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert NGINX is not None
        cmd = [NGINX, "-p", f"{self.dir}/", "-c", str(self.conf), "-e", str(self.dir / "error.log")]
        test = subprocess.run([*cmd, "-t"], capture_output=True, timeout=30)
        assert test.returncode == 0, test.stderr.decode()
        out = (self.dir / "stdout.log").open("ab")
        self.proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()
        wait_for("nginx to listen", lambda: self._listening(), 15)

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"nginx exited {self.proc.returncode}: {self.log()}")
        try:
            get(self.url + "/health/leader")
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGQUIT)  # graceful shutdown of the master
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own process group
            self.proc.wait(5)

    def log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def get(url: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        with exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, raw.decode(errors="replace")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Cluster, Nginx]]:
    cl = Cluster(tmp_path)
    lb = Nginx(tmp_path, [f"127.0.0.1:{m.api_port}" for m in cl.members.values()])
    try:
        yield cl, lb
    finally:
        lb.stop()
        cl.stop()
        if os.environ.get("RAFTCRON_TEST_LOGS"):
            print(cl.logs(), lb.log())


def through_nginx_reaches(lb: Nginx, leader: str, n: int = 12) -> None:
    """n requests of each kind through nginx, every one answered by ``leader``."""
    for _ in range(n):
        code, body = get(lb.url + "/health/leader")
        assert (code, body.get("node")) == (200, leader), body
        code, body = get(lb.url + "/v1/status")
        assert code == 200, body
        assert (body["node"], body["role"]) == (leader, "leader"), body


@needs_nginx
def test_nginx_routes_to_the_leader_and_follows_a_failover(
    stack: tuple[Cluster, Nginx],
) -> None:
    cl, lb = stack
    cl.start()
    leader = cl.wait_leader(60)
    lb.start()

    wait_for(
        "nginx to reach the leader",
        lambda: get(lb.url + "/v1/status")[1].get("node") == leader,
        15,
    )
    through_nginx_reaches(lb, leader)
    # a write through nginx lands on the leader and is committed
    code, body = get(
        lb.url + "/v1/jobs/via-nginx",
        "PUT",
        {"schedule": "0 0 1 1 *", "command": ["true"]},
    )
    assert code in (200, 201), body
    assert any(j["name"] == "via-nginx" for j in cl.get(leader, "/v1/jobs")["jobs"])

    survivors = [n for n in cl.members if n != leader]
    t0 = time.monotonic()
    cl.kill(leader)  # kill -9
    seen: list[tuple[int, str | None]] = []

    def new_leader() -> str | None:
        code, body = get(lb.url + "/v1/status")
        node = body.get("node") if isinstance(body, dict) else None
        seen.append((code, node))
        if code == 200 and isinstance(body, dict) and body.get("role") == "leader":
            assert node in survivors, body
            return str(node)
        # while there is none: nginx's JSON 503, never a 5xx page or a follower's answer
        # (an assert in a predicate fails the wait at once: wait_for does not retry it)
        error = body.get("error", {}).get("code") if isinstance(body, dict) else body
        assert (code, error) == (503, "no_leader"), (code, body)
        return None

    new = wait_for("nginx to reach a new leader", new_leader, 30, 0.2)
    took = time.monotonic() - t0
    assert new == cl.wait_leader(30, among=survivors)
    through_nginx_reaches(lb, new)
    codes = sorted({c for c, _ in seen})
    print(
        f"nginx: requests reached the new leader {new} {took:.2f}s after kill -9 of {leader}"
        f" ({len(seen)} polls, statuses {codes})"
    )

    lb.stop()
    assert lb.proc is not None and lb.proc.returncode is not None
