"""The peers raftcron is compared with, started here on loopback ports with data on disk.

* :class:`EtcdCluster`: a 3-member etcd cluster (Debian's ``etcd-server``), default
  heartbeat (100 ms) and election timeout (1 s), WAL fsync on (etcd's default).
* :class:`RedisServer`: one ``redis-server`` with ``appendonly yes`` and
  ``appendfsync always`` (every write fsynced before the reply, like the others).
* Lock clients: etcd's ``v3lockpb.Lock`` service (the server-side lock ``etcdctl``'s
  gRPC API offers) over gRPC with one reused lease, the same through the HTTP/JSON
  gateway, etcd's put-if-absent transaction recipe (etcd-sdk-python), and Redis's
  ``SET NX PX`` + Lua compare-and-delete (redis-py).

No Python library ships the v3lock stubs, so its two tiny messages are encoded here by
hand (protobuf wire format: field numbers from etcd's ``v3lock.proto``).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from bench.procs import Registry, stop_pid
from tests.cluster.harness import free_ports, wait_for

# --------------------------------------------------------------------------- protobuf


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 negatives are 10-byte two's complement varints
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_bytes(field: int, value: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(value)) + value


def pb_int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value) if value else b""


def pb_decode(data: bytes) -> dict[int, list[Any]]:
    """Top-level fields of a message: varints as int, length-delimited as bytes."""
    out: dict[int, list[Any]] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        shift = result = 0
        while True:
            b = data[i]
            i += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    while i < len(data):
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            out.setdefault(field, []).append(varint())
        elif wire == 2:
            n = varint()
            out.setdefault(field, []).append(data[i : i + n])
            i += n
        elif wire == 1:
            out.setdefault(field, []).append(data[i : i + 8])
            i += 8
        elif wire == 5:
            out.setdefault(field, []).append(data[i : i + 4])
            i += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


# --------------------------------------------------------------------------- etcd


def etcd_version() -> str:
    out = subprocess.run(["etcd", "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0].split(":", 1)[-1].strip() if out.stdout else "?"


def redis_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=False)
    for word in out.stdout.split():
        if word.startswith("v="):
            return word[2:]
    return "?"


class EtcdCluster:
    """``size`` etcd members on 127.0.0.1, data under ``root``; ended by PID."""

    def __init__(self, root: Path, reg: Registry, size: int = 3) -> None:
        self.root = root
        self.reg = reg
        ports = free_ports(2 * size)
        self.names = [f"etcd{i}" for i in range(size)]
        self.client_port = {n: ports[2 * i] for i, n in enumerate(self.names)}
        self.peer_port = {n: ports[2 * i + 1] for i, n in enumerate(self.names)}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.token = "bench-" + uuid.uuid4().hex[:8]
        reg.on_stop(self.stop)

    def client_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.client_port[name]}"

    def endpoints(self) -> str:
        return ",".join(self.client_url(n) for n in self.names)

    def start(self, name: str | None = None, *, new: bool = True) -> None:
        initial = ",".join(f"{n}=http://127.0.0.1:{self.peer_port[n]}" for n in self.names)
        for n in self.names if name is None else [name]:
            data = self.root / n
            state = "new" if new and not (data / "member").exists() else "existing"
            log = (self.root / f"{n}.log").open("ab")
            argv = [
                "etcd",
                "--name",
                n,
                "--data-dir",
                str(data),
                "--listen-client-urls",
                self.client_url(n),
                "--advertise-client-urls",
                self.client_url(n),
                "--listen-peer-urls",
                f"http://127.0.0.1:{self.peer_port[n]}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{self.peer_port[n]}",
                "--initial-cluster",
                initial,
                "--initial-cluster-state",
                state,
                "--initial-cluster-token",
                self.token,
                "--logger",
                "zap",
                "--log-level",
                "warn",
            ]
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
            log.close()
            self.procs[n] = self.reg.add(proc)

    def alive(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is None]

    def kill(self, name: str) -> None:
        p = self.procs[name]
        p.kill()
        p.wait(10)

    def stop(self) -> None:
        for p in self.procs.values():
            stop_pid(p)

    def status(self, name: str, timeout: float = 1.0) -> dict[str, Any]:
        req = urllib.request.Request(
            self.client_url(name) + "/v3/maintenance/status", data=b"{}", method="POST"
        )
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body: dict[str, Any] = json.loads(r.read())
            return body

    def leader(self, among: list[str] | None = None) -> str | None:
        found = []
        for n in among or self.alive():
            try:
                st = self.status(n, 0.5)
            except OSError:
                continue
            if str(st.get("leader")) == str(st.get("header", {}).get("member_id")):
                found.append(n)
        return found[0] if len(found) == 1 else None

    def wait_ready(self, timeout: float = 60.0) -> str:
        def healthy() -> bool:
            for n in self.alive():
                with urllib.request.urlopen(self.client_url(n) + "/health", timeout=1) as r:
                    if json.loads(r.read()).get("health") != "true":
                        return False
            return True

        wait_for("etcd members healthy", healthy, timeout)
        return wait_for("an etcd leader", lambda: self.leader(), timeout)


class EtcdLockGrpc:
    """etcd's server-side lock service over gRPC: ``Lock(name, lease)`` / ``Unlock(key)``,
    every acquisition on one lease granted up front and reused (TTL 1 h: it must outlive the
    run, and keep-alives would add traffic to the measurement)."""

    def __init__(self, port: int, ttl_s: int = 3600) -> None:
        import grpc

        self.grpc = grpc
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self._lock = self.channel.unary_unary("/v3lockpb.Lock/Lock")
        self._unlock = self.channel.unary_unary("/v3lockpb.Lock/Unlock")
        grant = self.channel.unary_unary("/etcdserverpb.Lease/LeaseGrant")
        resp = pb_decode(grant(pb_int(1, ttl_s), timeout=10))
        self.lease = int(resp[2][0])

    def acquire(self, name: str, timeout: float = 60.0) -> bytes:
        req = pb_bytes(1, name.encode()) + pb_int(2, self.lease)
        key: bytes = pb_decode(self._lock(req, timeout=timeout))[2][0]
        return key

    def release(self, key: bytes) -> None:
        self._unlock(pb_bytes(1, key), timeout=10)

    def close(self) -> None:
        self.channel.close()


class EtcdLockGateway:
    """The same lock service through etcd's HTTP/JSON gateway (``/v3/lock/*``), one
    keep-alive connection, the lease (TTL 1 h) granted through the gateway too."""

    def __init__(self, port: int, ttl_s: int = 3600) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.lease = str(self._post("/v3/lease/grant", {"TTL": ttl_s})["ID"])

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data: dict[str, Any] = json.loads(resp.read())
        if resp.status != 200:
            raise RuntimeError(f"etcd gateway {path}: HTTP {resp.status}: {data}")
        return data

    def acquire(self, name: str) -> str:
        b64 = base64.b64encode(name.encode()).decode()
        return str(self._post("/v3/lock/lock", {"name": b64, "lease": self.lease})["key"])

    def release(self, key: str) -> None:
        self._post("/v3/lock/unlock", {"key": key})

    def close(self) -> None:
        self.conn.close()


class EtcdLockTxn:
    """The put-if-absent recipe with etcd-sdk-python: acquire = one Txn (create_revision
    == 0 -> put with the reused lease, TTL 1 h), release = one Txn (value == token -> delete)."""

    def __init__(self, port: int, ttl_s: int = 3600) -> None:
        import pyetcd

        self.client = pyetcd.client(host="127.0.0.1", port=port, timeout=60)
        self.lease = self.client.lease(ttl_s)
        self.token = uuid.uuid4().bytes

    def acquire(self, name: str) -> bool:
        c = self.client
        key = "/bench-locks/" + name
        ok, _ = c.transaction(
            compare=[c.transactions.create(key) == 0],
            success=[c.transactions.put(key, self.token, lease=self.lease)],
            failure=[],
        )
        return bool(ok)

    def release(self, name: str) -> None:
        c = self.client
        key = "/bench-locks/" + name
        c.transaction(
            compare=[c.transactions.value(key) == self.token],
            success=[c.transactions.delete(key)],
            failure=[],
        )

    def close(self) -> None:
        self.client.close()


# --------------------------------------------------------------------------- redis

REDIS_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class RedisServer:
    """One redis-server on 127.0.0.1 with an fsync-always append-only file under ``root``."""

    def __init__(self, root: Path, reg: Registry) -> None:
        self.root = root
        self.port = free_ports(1)[0]
        root.mkdir(parents=True, exist_ok=True)
        log = (root / "redis.log").open("ab")
        argv = [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(root),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--daemonize",
            "no",
        ]
        self.proc = reg.add(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=root))
        log.close()
        reg.on_stop(lambda: stop_pid(self.proc))
        import redis

        def up() -> bool:
            return bool(redis.Redis(port=self.port).ping())

        wait_for("redis-server", up, 30)


class RedisLock:
    """``SET name token NX PX ttl`` to acquire, a Lua compare-and-delete to release."""

    def __init__(self, port: int, ttl_ms: int = 60_000) -> None:
        import redis

        self.r = redis.Redis(host="127.0.0.1", port=port)
        self.release_script = self.r.register_script(REDIS_RELEASE)
        self.ttl_ms = ttl_ms
        self.token = uuid.uuid4().hex

    def try_acquire(self, name: str) -> bool:
        return bool(self.r.set(name, self.token, nx=True, px=self.ttl_ms))

    def acquire(self, name: str, poll_s: float = 0.001, timeout: float = 60.0) -> None:
        """Retry ``SET NX`` every ``poll_s`` (Redis has no queue) until it succeeds."""
        deadline = time.monotonic() + timeout
        while not self.try_acquire(name):
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis lock {name} not acquired in {timeout}s")
            time.sleep(poll_s)

    def release(self, name: str) -> None:
        if not self.release_script(keys=[name], args=[self.token]):
            raise RuntimeError(f"redis lock {name} was not ours at release")

    def close(self) -> None:
        self.r.close()


def env_without_proxies() -> dict[str, str]:
    """The environment for client subprocesses, with any proxy variables removed so that
    loopback traffic never goes anywhere else."""
    env = dict(os.environ)
    for k in list(env):
        if k.lower() in ("http_proxy", "https_proxy", "all_proxy", "grpc_proxy"):
            env.pop(k)
    return env
