"""The cluster TOML file -> frozen dataclasses, validated in one place.

Invariants this module guarantees:

* ``load_config`` and ``parse_config`` raise nothing but :class:`ConfigError` for bad input,
  and they raise it once per file with *every* problem found, each message in the form
  ``<file>: <key>: <problem> (<fix>)``. ``str(ConfigError)`` is the messages, one per line.
* What they return is fully checked: every cron expression and time zone parses, every
  duration is a non-negative number of milliseconds, every relative path is absolute
  (resolved against the config file's directory), addresses are unique, secrets and tokens
  are long enough. Nothing downstream re-validates the file.
* Secrets and tokens never appear in a message.
* :func:`job_spec_from_mapping` (``raftcron.jobconfig``, driven by the job field table
  ``raftcron.core.jobfields``) is the single definition of what a ``[[jobs]]`` table may
  contain; the HTTP API uses it for ``PUT /v1/jobs/{name}`` bodies. The checks shared by
  both parsers are in ``raftcron.tomlcheck``.

This module reads files (the config, ``secret_file``, ``token_file``) and, in
:func:`single_node_config` only, creates a data directory and a secret. It never reads a clock.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import secrets
import stat
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from raftcron.core.jobfields import JOB_KEYS as JOB_KEYS
from raftcron.core.jobfields import MAX_STDIN_CHARS as MAX_STDIN_CHARS
from raftcron.core.model import (
    COUNT_ALL,
    DEFAULT_HISTORY,
    DEFAULT_LEASE_MS,
    JobSpec,
    NotifyTarget,
)
from raftcron.durations import (
    ConfigError,
    parse_duration,
)
from raftcron.jobconfig import (
    _NAME_FIX,
    _NAME_RE,
    MIN_LEASE_MS,
    _notify_targets,
    file_jobs,
)
from raftcron.jobconfig import check_dependencies as check_dependencies
from raftcron.jobconfig import job_spec_from_mapping as job_spec_from_mapping
from raftcron.jobconfig import job_warnings as job_warnings
from raftcron.jobconfig import parse_size as parse_size
from raftcron.tomlcheck import (
    _Errors,
    _get_bool,
    _get_duration,
    _get_int,
    _get_str,
    _get_str_map,
    _get_table,
    _k,
    _q,
    _type_name,
    _unknown_keys,
)

__all__ = [
    "DEFAULT_LEASE_MS",
    "JOB_KEYS",
    "MAX_STDIN_CHARS",
    "MIN_LEASE_MS",
    "MIN_SECRET_CHARS",
    "TOKEN_ROLES",
    "ApiConfig",
    "ApiToken",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "HostPort",
    "NodeConfig",
    "NotifyConfig",
    "account_problems",
    "environment_problems",
    "job_spec_from_mapping",
    "job_warnings",
    "load_config",
    "parse_config",
    "parse_duration",
    "single_node_config",
]

MIN_SECRET_CHARS: Final = 16
# A random value of 16 characters or more has many different characters; fewer than this
# many is a pattern (a random 16-character hex string has fewer with probability 4e-5).
MIN_SECRET_DISTINCT: Final = 6
SECRET_HOWTO: Final = "openssl rand -base64 32"
TOKEN_ROLES: Final = ("admin", "read")
SINGLE_NODE_NAME: Final = "local"
SINGLE_NODE_RAFT: Final = "127.0.0.1:7100"
SINGLE_NODE_API: Final = "127.0.0.1:8100"

_TOML_POS_RE: Final = re.compile(
    r"^(?P<msg>.*?)\s*\((?:at line (?P<line>\d+), column (?P<col>\d+)|at end of document)\)$"
)
_TOP_KEYS: Final = ("cluster", "api", "notify", "metrics", "jobs")
_NOTIFY_KEYS: Final = ("webhooks", "late_after", "timeout", "retries")
_METRICS_KEYS: Final = ("max_job_series",)
# Jobs that get per-job series on /metrics (each has up to ~20 of them).
DEFAULT_MAX_JOB_SERIES: Final = 1_000
DEFAULT_LATE_AFTER_MS: Final = 60_000
DEFAULT_NOTIFY_TIMEOUT_MS: Final = 10_000
DEFAULT_NOTIFY_RETRIES: Final = 5

_CLUSTER_KEYS: Final = (
    "secret",
    "secret_file",
    "previous_secret",
    "previous_secret_file",
    "lease",
    "history",
    "nodes",
    "shutdown_drain",
    "max_apply_lag",
)
# On SIGTERM an agent drains for at most this long (below Docker's 10 s stop timeout).
DEFAULT_SHUTDOWN_DRAIN_MS: Final = 8_000
# A member whose applied state is this far behind the leader's commit is not healthy.
DEFAULT_MAX_APPLY_LAG_MS: Final = 5_000
MIN_MAX_APPLY_LAG_MS: Final = 1_000
_NODE_KEYS: Final = ("raft", "api", "tags", "data_dir", "max_starting")
# Runs of a node in their start phase at once (docs/operations.md, "Bursts of runs");
# RAFTCRON_MAX_STARTING in the agent's environment overrides the node's max_starting.
DEFAULT_MAX_STARTING: Final = 8
_API_KEYS: Final = ("insecure", "tls_cert", "tls_key", "open_health", "tokens")
_TOKEN_KEYS: Final = ("name", "role", "token", "token_file")


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True, kw_only=True)
class HostPort:
    """A ``host:port`` address (IPv4 or a host name; IPv6 literals are refused)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        return _is_loopback(self.host)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    name: str
    raft: HostPort
    api: HostPort
    tags: tuple[tuple[str, str], ...]
    data_dir: Path
    max_starting: int = DEFAULT_MAX_STARTING


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiToken:
    role: str  # "admin" or "read"
    token: str
    # who holds it, for the audit log: ``name = "ci"``, else ``token-N`` by its position
    # in the file (never derived from the value)
    name: str = ""

    def __repr__(self) -> str:  # never show a token in a log or a traceback
        return f"ApiToken(name={self.name!r}, role={self.role!r}, token='***')"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiConfig:
    tokens: tuple[ApiToken, ...] = ()
    insecure: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    open_health: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    secret: str
    nodes: tuple[NodeConfig, ...]
    lease_ms: int = DEFAULT_LEASE_MS
    history: int = DEFAULT_HISTORY
    shutdown_drain_ms: int = DEFAULT_SHUTDOWN_DRAIN_MS
    max_apply_lag_ms: int = DEFAULT_MAX_APPLY_LAG_MS
    # During a secret rotation: the secret being replaced, still accepted from peers.
    previous_secret: str | None = None

    def __repr__(self) -> str:  # never show the secret in a log or a traceback
        previous = "" if self.previous_secret is None else ", previous_secret='***'"
        return (
            f"ClusterConfig(secret='***', nodes={self.nodes!r}, lease_ms={self.lease_ms!r}, "
            f"history={self.history!r}, shutdown_drain_ms={self.shutdown_drain_ms!r}, "
            f"max_apply_lag_ms={self.max_apply_lag_ms!r}{previous})"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifyConfig:
    """The ``[notify]`` table: defaults for notifications, the same file on every node.

    ``webhooks`` go to jobs that set no ``notify`` of their own.
    """

    webhooks: tuple[NotifyTarget, ...] = ()
    late_after_ms: int = DEFAULT_LATE_AFTER_MS
    timeout_ms: int = DEFAULT_NOTIFY_TIMEOUT_MS
    retries: int = DEFAULT_NOTIFY_RETRIES


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsConfig:
    """The ``[metrics]`` table: what ``GET /metrics`` exports (each node reads its own).

    ``max_job_series``: how many jobs get per-job series (``job`` label); the jobs past it,
    in name order, are left out, counted by ``raftcron_metrics_jobs_omitted`` and named
    once in a WARNING.
    """

    max_job_series: int = DEFAULT_MAX_JOB_SERIES


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    path: Path  # as the user gave it; used to name the file in messages
    cluster: ClusterConfig
    api: ApiConfig
    jobs: tuple[JobSpec, ...]
    notify: NotifyConfig = NotifyConfig()
    metrics: MetricsConfig = MetricsConfig()

    def node(self, name: str) -> NodeConfig:
        """The node called ``name``; :class:`ConfigError` if the file has none."""
        for node in self.cluster.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.cluster.nodes)
        raise ConfigError([f"{self.path}: --node {name}: not in cluster.nodes (known: {known})"])


# ---------------------------------------------------------------------------- helpers


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _notify(errs: _Errors, raw: Mapping[str, Any]) -> NotifyConfig:
    """The [notify] table (defaults of every job's notifications)."""
    table = _get_table(errs, raw, "notify", "")
    _unknown_keys(errs, table, _NOTIFY_KEYS, "notify")
    webhooks: tuple[NotifyTarget, ...] = ()
    if table.get("webhooks") is not None:
        webhooks = _notify_targets(errs, table["webhooks"], "notify.webhooks") or ()
    late = _get_duration(errs, table, "late_after", "notify", DEFAULT_LATE_AFTER_MS, minimum=1_000)
    timeout = _get_duration(
        errs, table, "timeout", "notify", DEFAULT_NOTIFY_TIMEOUT_MS, minimum=100
    )
    retries = _get_int(errs, table, "retries", "notify", DEFAULT_NOTIFY_RETRIES, minimum=0)
    if retries > 20:
        errs.add("notify.retries", f"{retries} is too many (use 0-20; backoff doubles each time)")
    return NotifyConfig(
        webhooks=webhooks,
        late_after_ms=late if late is not None else DEFAULT_LATE_AFTER_MS,
        timeout_ms=timeout if timeout is not None else DEFAULT_NOTIFY_TIMEOUT_MS,
        retries=min(retries, 20),
    )


def _metrics(errs: _Errors, raw: Mapping[str, Any]) -> MetricsConfig:
    """The [metrics] table."""
    table = _get_table(errs, raw, "metrics", "")
    _unknown_keys(errs, table, _METRICS_KEYS, "metrics")
    cap = _get_int(errs, table, "max_job_series", "metrics", DEFAULT_MAX_JOB_SERIES, minimum=0)
    return MetricsConfig(max_job_series=cap)


# ---------------------------------------------------------------------------- the file


def load_config(path: Path | str) -> Config:
    """Read and validate the cluster TOML file at ``path``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            [f"{path}: not found (check the path; without --config raftcron runs one local node)"]
        ) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a directory (give the path of the TOML file)"]) from None
    except OSError as exc:
        raise ConfigError(
            [f"{path}: cannot read: {exc.strerror or exc} (check the permissions)"]
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"{path}: byte {exc.start} is not UTF-8 (save the file as UTF-8)"]
        ) from None
    del data  # not kept through the parse (19 MB for a 100,000-job file)
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> Config:
    """Validate the TOML ``text`` of the file at ``path`` (relative paths resolve against
    ``path``'s directory; files it names are read)."""
    label = str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _TOML_POS_RE.match(str(exc))
        if m and m.group("line"):
            where = f"line {m.group('line')}, column {m.group('col')}"
            msg = m.group("msg")
        else:
            where, msg = "end of file", m.group("msg") if m else str(exc)
        raise ConfigError(
            [f"{label}: {where}: {msg} (fix the TOML syntax, see https://toml.io)"]
        ) from None

    base_dir = Path(path).absolute().parent
    errs = _Errors()
    _unknown_keys(errs, raw, _TOP_KEYS, "")
    cluster = _cluster(errs, raw, base_dir)
    api = _api(errs, raw, base_dir, cluster.nodes)
    notify = _notify(errs, raw)
    metrics = _metrics(errs, raw)
    jobs = file_jobs(errs, raw, base_dir, cluster.lease_ms)
    _check_counts(errs, raw, jobs, cluster.nodes)
    if errs.items:  # the parts built above are only trusted when nothing was reported
        raise ConfigError(f"{label}: {e}" for e in errs.items)
    return Config(
        path=Path(path), cluster=cluster, api=api, jobs=jobs, notify=notify, metrics=metrics
    )


def _check_counts(
    errs: _Errors, raw: Mapping[str, Any], jobs: Iterable[JobSpec], nodes: Iterable[NodeConfig]
) -> None:
    """A job with ``count = N`` needs N nodes matching its tags: the file lists them all."""
    nodes = list(nodes)
    if not nodes:
        return  # [cluster] itself is wrong; that is reported already
    index: dict[str, int] = {}
    for i, entry in enumerate(raw.get("jobs", []) if isinstance(raw.get("jobs"), list) else []):
        if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
            index.setdefault(entry["name"], i)
    for spec in jobs:
        if spec.count in (1, COUNT_ALL):
            continue
        want = dict(spec.tags)
        fit = [n.name for n in nodes if all(dict(n.tags).get(k) == v for k, v in want.items())]
        if len(fit) < spec.count:
            tags = ", ".join(f"{k}={v}" for k, v in spec.tags)
            errs.add(
                f"jobs[{index.get(spec.name, '?')}].count",
                f"{spec.count} instances per fire, but only {len(fit)} node(s) in "
                f'[cluster.nodes] match tags {{{tags}}} (lower count, use count = "all", or '
                "tag more nodes)",
            )


def _read_small_file(errs: _Errors, key: str, path: Path, what: str, fix: str) -> str | None:
    """The stripped text of a secret or token file, which must be private to its owner
    (no access for group or others, as ssh demands of a private key)."""
    try:
        text = path.read_text(encoding="utf-8").strip()
        problem = private_file_problem(path)
        if problem:
            errs.add(key, problem)
            return None
        return text
    except FileNotFoundError:
        errs.add(key, f"{path}: not found ({fix})")
    except IsADirectoryError:
        errs.add(key, f"{path}: is a directory (point it at a file holding the {what})")
    except UnicodeDecodeError:
        errs.add(key, f"{path}: is not UTF-8 text (write the {what} as plain text)")
    except OSError as exc:
        errs.add(key, f"{path}: cannot read: {exc.strerror or exc} (check the permissions)")
    return None


def private_file_problem(path: Path) -> str | None:
    """Why the secret or token file at ``path`` is not private enough, or None: any
    permission bit for its group or others is refused (the ``chmod 600`` fix)."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        return (
            f"{path}: mode {mode:04o} lets its group or others read it (it holds a secret; "
            f"run: chmod 600 {path})"
        )
    return None


def secret_weakness(value: str) -> str | None:
    """Why ``value`` is too weak for the cluster secret or a token, or None. Never shows
    any part of it."""
    n = len(value)
    if n < MIN_SECRET_CHARS:
        return f"too short ({n} characters; use at least {MIN_SECRET_CHARS} random characters"
    if any(ch.isspace() for ch in value):
        return "contains white space (a random value has none"
    counts: dict[str, int] = {}
    for ch in value:
        counts[ch] = counts.get(ch, 0) + 1
    if len(counts) < MIN_SECRET_DISTINCT:
        return (
            f"too little variety ({len(counts)} different characters; a random value of "
            f"this length has many more"
        )
    if max(counts.values()) * 2 > n:
        return "one character makes up half of it (a random value has no such repeats"
    for period in range(1, n // 2 + 1):
        if all(value[i] == value[i - period] for i in range(period, n)):
            return "repeats a short pattern (a random value does not"
    steps = {ord(b) - ord(a) for a, b in itertools.pairwise(value)}
    if len(steps) == 1:
        return "a run of consecutive characters (a random value is not"
    return None


def _weak(errs: _Errors, key: str, value: str, *, file: str | None) -> bool:
    """Report ``value`` if it is too weak for a secret or a token; True if it was."""
    problem = secret_weakness(value)
    if problem is None:
        return False
    where = file or "FILE"
    how = f"openssl rand -base64 32 > {where}; chmod 600 {where}" if file else SECRET_HOWTO
    errs.add(key, f"{problem}; generate one with: {how})")
    return True


def _cluster(errs: _Errors, raw: Mapping[str, Any], base_dir: Path) -> ClusterConfig:
    """The [cluster] table; with errors reported, what it returns is partial."""
    if "cluster" not in raw:
        errs.add(
            "cluster",
            "missing (add a [cluster] table with secret or secret_file and one "
            "[cluster.nodes.NAME] table per server)",
        )
        return ClusterConfig(secret="", nodes=())
    table = _get_table(errs, raw, "cluster", "")
    _unknown_keys(errs, table, _CLUSTER_KEYS, "cluster")

    secret_fix = (
        f"set cluster.secret or cluster.secret_file, at least {MIN_SECRET_CHARS} characters"
    )
    secret = _get_str(errs, table, "secret", "cluster")
    secret_file = _get_str(errs, table, "secret_file", "cluster")
    secret_key = "cluster.secret"
    secret_path: Path | None = None
    if "secret" in table and "secret_file" in table:
        errs.add("cluster.secret_file", "set together with cluster.secret (keep only one of them)")
    elif secret_file is not None:
        secret_key = "cluster.secret_file"
        secret_path = (base_dir / secret_file).resolve()
        secret = _read_small_file(
            errs,
            secret_key,
            secret_path,
            "secret",
            f"write at least {MIN_SECRET_CHARS} random characters into it, e.g. with "
            f"openssl rand -base64 32 > {secret_path}; chmod 600 {secret_path}; "
            "`raftcron dev` creates it",
        )
    elif "secret" not in table:
        errs.add("cluster.secret", f"missing ({secret_fix})")
    if secret is not None and _weak(
        errs, secret_key, secret, file=None if secret_path is None else str(secret_path)
    ):
        secret = None

    previous_secret = _previous_secret(errs, table, base_dir, secret)
    lease_ms = _get_duration(
        errs, table, "lease", "cluster", DEFAULT_LEASE_MS, minimum=MIN_LEASE_MS
    )
    history = _get_int(errs, table, "history", "cluster", DEFAULT_HISTORY, minimum=1)
    shutdown_drain = _get_duration(
        errs, table, "shutdown_drain", "cluster", DEFAULT_SHUTDOWN_DRAIN_MS
    )
    max_lag = _get_duration(
        errs, table, "max_apply_lag", "cluster", DEFAULT_MAX_APPLY_LAG_MS,
        minimum=MIN_MAX_APPLY_LAG_MS,
    )  # fmt: skip
    nodes = _nodes(errs, table, base_dir)
    return ClusterConfig(
        secret=secret or "",
        nodes=nodes,
        lease_ms=lease_ms if lease_ms is not None else DEFAULT_LEASE_MS,
        history=history,
        shutdown_drain_ms=DEFAULT_SHUTDOWN_DRAIN_MS if shutdown_drain is None else shutdown_drain,
        max_apply_lag_ms=DEFAULT_MAX_APPLY_LAG_MS if max_lag is None else max_lag,
        previous_secret=previous_secret,
    )


def _previous_secret(
    errs: _Errors, table: Mapping[str, Any], base_dir: Path, secret: str | None
) -> str | None:
    """``previous_secret`` / ``previous_secret_file``: during a rotation, the secret being
    replaced, accepted from peers besides ``secret`` (docs/operations.md: Rotating the
    cluster secret)."""
    value = _get_str(errs, table, "previous_secret", "cluster")
    path = _get_str(errs, table, "previous_secret_file", "cluster")
    key = "cluster.previous_secret"
    if "previous_secret" in table and "previous_secret_file" in table:
        errs.add(
            "cluster.previous_secret_file",
            "set together with cluster.previous_secret (keep only one of them)",
        )
        return None
    if path is not None:
        key = "cluster.previous_secret_file"
        value = _read_small_file(
            errs,
            key,
            (base_dir / path).resolve(),
            "previous secret",
            "point it at the file holding the secret being replaced, or remove the key once "
            "every node runs with the new secret",
        )
    if value is None:
        return None
    if len(value) < MIN_SECRET_CHARS:
        errs.add(
            key,
            f"too short ({len(value)} characters; it must be the secret being replaced, at "
            f"least {MIN_SECRET_CHARS} characters)",
        )
        return None
    if value == secret:
        errs.add(
            key,
            "is the same as the cluster secret (set it to the secret being replaced during a "
            "rotation, or remove it)",
        )
        return None
    return value


def _host_port(errs: _Errors, value: object, key: str, *, reachable: bool) -> HostPort | None:
    fix = 'write "host:port", e.g. "10.0.0.1:7101"'
    if not isinstance(value, str):
        errs.add(key, f"expected a string, got {_type_name(value)} ({fix})")
        return None
    host, sep, port_text = value.rpartition(":")
    if host.startswith("[") or host.count(":"):
        errs.add(key, f"{_q(value)}: IPv6 addresses are not supported (use IPv4 or a host name)")
        return None
    if not sep or not host or not port_text.isdigit() or not port_text.isascii():
        errs.add(key, f"{_q(value)} is not host:port ({fix})")
        return None
    if any(c.isspace() for c in host):
        errs.add(key, f"{_q(value)}: the host contains white space ({fix})")
        return None
    port = int(port_text)
    if not 1 <= port <= 65535:
        errs.add(key, f"{_q(value)}: port {port} is out of range (use 1-65535)")
        return None
    if reachable and host in ("0.0.0.0", "*"):
        errs.add(
            key,
            f"{_q(value)}: other nodes cannot connect to {host} (give this server's own "
            "address; raftcron listens on exactly that address)",
        )
        return None
    return HostPort(host=host, port=port)


def _nodes(errs: _Errors, cluster: Mapping[str, Any], base_dir: Path) -> tuple[NodeConfig, ...]:
    fix = (
        'add one table per server, e.g. [cluster.nodes.a] raft = "10.0.0.1:7101" '
        'api = "10.0.0.1:8101"'
    )
    if "nodes" not in cluster:
        errs.add("cluster.nodes", f"missing ({fix})")
        return ()
    nodes_raw = _get_table(errs, cluster, "nodes", "cluster")
    if "nodes" in cluster and isinstance(cluster["nodes"], Mapping) and not nodes_raw:
        errs.add("cluster.nodes", f"no nodes (at least one is needed; {fix})")
    nodes: list[NodeConfig] = []
    used: dict[tuple[str, int], str] = {}
    data_dirs: dict[tuple[str, Path], str] = {}
    for name, table in nodes_raw.items():
        where = f"cluster.nodes.{_k(name)}"
        ok = True
        if not _NAME_RE.fullmatch(name):
            errs.add(where, f"{_q(name)} is not a valid node name ({_NAME_FIX})")
            ok = False
        if not isinstance(table, Mapping):
            errs.add(where, f"expected a table, got {_type_name(table)} ({fix})")
            continue
        _unknown_keys(errs, table, _NODE_KEYS, where)
        addrs: dict[str, HostPort] = {}
        for kind in ("raft", "api"):
            key = f"{where}.{kind}"
            if kind not in table:
                errs.add(key, f'missing ({kind} = "host:port")')
                ok = False
                continue
            hp = _host_port(errs, table[kind], key, reachable=kind == "raft")
            if hp is None:
                ok = False
                continue
            first = used.setdefault((hp.host, hp.port), key)
            if first != key:
                errs.add(
                    key,
                    f"{hp} is already used by {first} (give every raft and api address "
                    "its own port)",
                )
                ok = False
            addrs[kind] = hp
        tags = _get_str_map(errs, table, "tags", where)
        data_dir_text = _get_str(errs, table, "data_dir", where)
        if data_dir_text == "":
            errs.add(f"{where}.data_dir", 'empty (give a directory, e.g. "raftcron-data/a")')
            ok = False
        data_dir = (base_dir / (data_dir_text or f"raftcron-data/{name}")).resolve()
        max_starting = _get_int(errs, table, "max_starting", where, DEFAULT_MAX_STARTING, minimum=1)
        if "raft" in addrs:
            raft_host = addrs["raft"].host
            machine = "loopback" if _is_loopback(raft_host) else raft_host
            first = data_dirs.setdefault((machine, data_dir), where)
            if first != where:
                errs.add(
                    f"{where}.data_dir",
                    f"{data_dir} is also the data_dir of {first} on the same host (give "
                    "every node on one machine its own data_dir)",
                )
                ok = False
        if ok and "raft" in addrs and "api" in addrs:
            nodes.append(
                NodeConfig(
                    name=name,
                    raft=addrs["raft"],
                    api=addrs["api"],
                    tags=tags,
                    data_dir=data_dir,
                    max_starting=max_starting,
                )
            )
    return tuple(nodes)


def _api(
    errs: _Errors, raw: Mapping[str, Any], base_dir: Path, nodes: tuple[NodeConfig, ...]
) -> ApiConfig:
    table = _get_table(errs, raw, "api", "")
    _unknown_keys(errs, table, _API_KEYS, "api")
    insecure = _get_bool(errs, table, "insecure", "api", False)
    open_health = _get_bool(errs, table, "open_health", "api", True)

    tls: dict[str, Path] = {}
    for key in ("tls_cert", "tls_key"):
        text = _get_str(errs, table, key, "api")
        if text is None:
            continue
        p = (base_dir / text).resolve()
        if not text or not p.is_file():
            errs.add(f"api.{key}", f"{p}: not found (give the path of a PEM file)")
            continue
        tls[key] = p
    if ("tls_cert" in table) != ("tls_key" in table):
        have, lack = ("tls_cert", "tls_key") if "tls_cert" in table else ("tls_key", "tls_cert")
        errs.add(f"api.{have}", f"set without api.{lack} (set both, or neither for plain HTTP)")

    tokens: list[ApiToken] = []
    tokens_raw = table.get("tokens", [])
    if not isinstance(tokens_raw, list):
        errs.add(
            "api.tokens",
            f"expected an array of tables, got {_type_name(tokens_raw)} "
            "(write [[api.tokens]] tables)",
        )
        tokens_raw = []
    seen: dict[str, str] = {}
    named: dict[str, str] = {}
    for i, entry in enumerate(tokens_raw):
        where = f"api.tokens[{i}]"
        token = _token(errs, entry, where, base_dir, default_name=f"token-{i + 1}")
        if token is None:
            continue
        first = seen.setdefault(token.token, where)
        if first != where:
            errs.add(where, f"same token as {first} (give every token its own value)")
            continue
        first = named.setdefault(token.name, where)
        if first != where:
            errs.add(
                f"{where}.name",
                f"{_q(token.name)} is already the name of {first} (give every token its own "
                "name: the audit log tells them apart by it)",
            )
            continue
        tokens.append(token)

    if not insecure and nodes:
        exposed = [n for n in nodes if not n.api.is_loopback]
        if exposed:
            n = exposed[0]
            key = f"cluster.nodes.{_k(n.name)}.api"
            if not tokens_raw:
                errs.add(
                    "api.tokens",
                    f"none, but {key} listens on {n.api.host}, not loopback (add "
                    '[[api.tokens]] with role = "admin" or "read", or set api.insecure = true '
                    "to serve the API without tokens)",
                )
            if "tls_cert" not in table:
                errs.add(
                    "api.tls_cert",
                    f"not set, but {key} listens on {n.api.host}, not loopback, so tokens would "
                    "cross the network in clear text (set api.tls_cert and api.tls_key, or set "
                    "api.insecure = true)",
                )
    return ApiConfig(
        tokens=tuple(tokens),
        insecure=insecure,
        tls_cert=tls.get("tls_cert"),
        tls_key=tls.get("tls_key"),
        open_health=open_health,
    )


def _token(
    errs: _Errors, entry: object, where: str, base_dir: Path, *, default_name: str
) -> ApiToken | None:
    if not isinstance(entry, Mapping):
        errs.add(where, f"expected a table, got {_type_name(entry)} (write [[api.tokens]] tables)")
        return None
    _unknown_keys(errs, entry, _TOKEN_KEYS, where)
    name = _get_str(errs, entry, "name", where) if "name" in entry else default_name
    if name is not None and not _NAME_RE.fullmatch(name):
        errs.add(
            f"{where}.name",
            # (not echoed: it might be a token pasted into the wrong key)
            f'not a valid token name (use {_NAME_FIX}, e.g. name = "ci")',
        )
        name = None
    role = _get_str(errs, entry, "role", where)
    roles = " or ".join(_q(r) for r in TOKEN_ROLES)
    if "role" not in entry:
        errs.add(f"{where}.role", f"missing (role = {roles})")
    elif role is not None and role not in TOKEN_ROLES:
        errs.add(f"{where}.role", f"{_q(role)} is not a role (use {roles})")
        role = None
    token = _get_str(errs, entry, "token", where)
    token_file = _get_str(errs, entry, "token_file", where)
    token_key = f"{where}.token"
    token_fix = f"at least {MIN_SECRET_CHARS} random characters"
    token_path: Path | None = None
    if "token" in entry and "token_file" in entry:
        errs.add(f"{where}.token_file", f"set together with {where}.token (keep only one)")
        return None
    if token_file is not None:
        token_key = f"{where}.token_file"
        token_path = (base_dir / token_file).resolve()
        token = _read_small_file(
            errs,
            token_key,
            token_path,
            "token",
            f"write {token_fix} into it, e.g. openssl rand -base64 32 > {token_path}; "
            f"chmod 600 {token_path}",
        )
    elif "token" not in entry:
        errs.add(token_key, f"missing (set token or token_file, {token_fix})")
    if token is not None and _weak(
        errs, token_key, token, file=None if token_path is None else str(token_path)
    ):
        return None
    if role is None or token is None or name is None:
        return None
    if name == token:
        errs.add(
            f"{where}.name",
            "is the token itself (a name is logged with every write: pick one such as "
            '"ci" or "ops")',
        )
        return None
    return ApiToken(role=role, token=token, name=name)


# ---------------------------------------------------------------------------- the host


def secret_values(cfg: Config) -> dict[str, str]:
    """The cluster secret (and, during a rotation, the previous one) and every API
    token, each with what it is (never shown)."""
    out = {t.token: "an API token" for t in cfg.api.tokens if t.token}
    if cfg.cluster.previous_secret:
        out[cfg.cluster.previous_secret] = "the previous cluster secret"
    if cfg.cluster.secret:
        out[cfg.cluster.secret] = "the cluster secret"
    return out


def passthrough_leaks(
    names: Iterable[str], environ: Mapping[str, str], secret_values: Mapping[str, str]
) -> list[tuple[str, str]]:
    """``(name, what it holds)`` for each variable named in an ``env_passthrough`` whose
    value in ``environ`` is the cluster secret or an API token (never given to a job)."""
    out = []
    for name in names:
        value = environ.get(name)
        if value is None:
            continue
        what = secret_values.get(value) or secret_values.get(value.strip())
        if what:
            out.append((name, what))
    return out


def environment_problems(
    cfg: Config, environ: Mapping[str, str], where: str = "this environment"
) -> list[str]:
    """Jobs of the file whose ``env_passthrough`` names a variable that holds the cluster
    secret or an API token in ``environ`` (the agent's environment at start; for
    ``check-config``, its own). Messages name the file, the key and the fix."""
    out = []
    values = secret_values(cfg)
    for i, spec in enumerate(cfg.jobs):
        for name, what in passthrough_leaks(spec.env_passthrough, environ, values):
            out.append(
                f"{cfg.path}: jobs[{i}].env_passthrough: {_q(name)} holds {what} in {where} "
                "(a job must never see it: remove it from env_passthrough)"
            )
    return out


def account_problems(cfg: Config, where: str = "on this machine") -> list[str]:
    """Jobs of the file whose ``user`` or ``group`` cannot be used here: an account this
    machine does not know, or an agent that is not root asked to switch. Messages name the
    file, the key and the fix."""
    from raftcron.accounts import AccountError, resolve

    out = []
    for i, spec in enumerate(cfg.jobs):
        if spec.user is None and spec.group is None:
            continue
        try:
            resolve(spec.user, spec.group)
        except AccountError as exc:
            out.append(f"{cfg.path}: jobs[{i}].{exc.key}: {exc} {where} ({exc.fix})")
    return out


# ---------------------------------------------------------------------------- default


def single_node_config(data_dir: Path) -> Config:
    """The config of ``raftcron agent`` without ``--config``: one node "local" on 127.0.0.1
    (raft 7100, api 8100), no jobs, no tokens (the API is open: it listens on loopback only).

    The secret is generated once into ``data_dir/secret`` (mode 0600) and reused after.
    """
    data_dir = Path(data_dir).resolve()
    secret_path = data_dir / "secret"
    label = str(secret_path)
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            secret = secret_path.read_text(encoding="utf-8").strip()
            private = private_file_problem(secret_path)
            if private:
                raise ConfigError([private]) from None
        else:
            secret = secrets.token_urlsafe(32)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(secret + "\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            [
                f"{label}: cannot create or read the secret: {reason} (check --data-dir and its "
                "permissions)"
            ]
        ) from None
    weak = secret_weakness(secret)
    if weak:
        raise ConfigError(
            [
                f"{label}: {weak}; delete the file and raftcron generates a new one, or write "
                f"one with: openssl rand -base64 32 > {label}; chmod 600 {label})"
            ]
        )
    raft_host, raft_port = SINGLE_NODE_RAFT.split(":")
    api_host, api_port = SINGLE_NODE_API.split(":")
    node = NodeConfig(
        name=SINGLE_NODE_NAME,
        raft=HostPort(host=raft_host, port=int(raft_port)),
        api=HostPort(host=api_host, port=int(api_port)),
        tags=(),
        data_dir=data_dir,
    )
    return Config(
        path=secret_path,
        cluster=ClusterConfig(secret=secret, nodes=(node,)),
        api=ApiConfig(),
        jobs=(),
    )
