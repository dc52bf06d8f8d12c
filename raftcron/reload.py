"""One configuration: this node's ``config_hash``, drift, and reload (SIGHUP, the API).

Which file wins (docs/operations.md, "Changing the configuration"):

* Every node computes the ``config_hash`` of the cluster file it read
  (``raftcron/confighash.py``) and reports it in the replicated state (``ReportConfig``,
  ``State.member_hashes``) once it sees a leader, and again after each reload, so every
  member's status shows every member's hash without asking them.
* The replicated state keeps the hash of the file last reconciled (``State.config_hash``,
  written by the last entry of a ``SyncConfig``). A new leader reconciles its file's jobs
  only when its hash is that one (or none was recorded: a new cluster, or one upgraded from
  before hashes); else it changes no job and says so (``Leader._sync_config_if_agreed``).
  So an election never silently brings back or drops a job: a file edited on one node
  acts only when an operator runs ``reload`` on that node.
* ``reload`` (SIGHUP, ``POST /v1/members/{name}/reload``, ``raftcron reload NAME``) re-reads
  this node's file. An invalid file is refused with every problem (file, key, fix) and
  the running configuration stays. A valid one replaces the jobs, the API tokens, the
  ``[notify]`` settings and the ``[cluster]`` settings read at use (history,
  shutdown_drain, max_apply_lag); what only a restart can change (the secret, the
  members, TLS files) is kept and named in ``restart_needed``. On the leader the file's
  jobs are then reconciled at once and its hash recorded: the operator's reload is what
  makes a file the cluster's. A file whose jobs use a job key that some member does not
  support yet (``raftcron/core/features.py``) is refused the same way, naming the key and
  the members still to upgrade (``ReloadGated``).
* Versions (``raftcron/core/features.py``): the same report carries this node's raftcron
  version and feature level (``State.member_versions``), so every member's status,
  ``raftcron version`` and ``/metrics`` show every member's, and the gate
  (:meth:`ConfigControl.levels`) knows which members are still to upgrade. A node reports
  when the state does not hold what it reads and runs, and once more whenever it sees
  another member's advertisement change: a member of a release from before levels
  applies reports without their version, so its replica, once upgraded, lacks the
  members that advertised while it was old until they say it again.
* Drift: a member whose reported hash differs from the leader's is named in a WARNING
  (by the leader, and by the member itself, each time the set changes), in ``/v1/status``
  and in ``raftcron_config_drift{member}``.

Every proposal has a deadline; nothing here blocks the loop (the file is read and parsed
in a thread). Reloads are serialised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final, Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from raftcron.config import (
    Config,
    ConfigError,
    account_problems,
    environment_problems,
    load_config,
    secret_values,
)
from raftcron.confighash import config_hash
from raftcron.core import commands as c
from raftcron.core import features
from raftcron.core.model import JobSpec
from raftcron.raft.node import ProposalError
from raftcron.scheduler.leader import FeatureNotEnabled

if TYPE_CHECKING:
    from raftcron.clock import Clock
    from raftcron.core.state import State
    from raftcron.executor.runner import Executor
    from raftcron.metrics import NodeMetrics
    from raftcron.raft.node import Machine, RaftNode, RaftStatus
    from raftcron.scheduler.leader import Leader

logger = logging.getLogger(__name__)


class ReloadHost(Protocol):
    """What the config control needs of the node that owns it (``Node``; a Protocol, so
    this module does not import the node: ``tests/unit/test_import_cycles.py``)."""

    @property
    def name(self) -> str: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def config(self) -> Config: ...
    @property
    def config_jobs(self) -> c.PackedSpecs: ...
    @property
    def metrics(self) -> NodeMetrics: ...
    @property
    def machine(self) -> Machine: ...
    @property
    def raft(self) -> RaftNode: ...
    @property
    def executor(self) -> Executor: ...
    @property
    def leader(self) -> Leader | None: ...
    def status(self) -> RaftStatus: ...
    def node_name(self, raft_addr: str | None) -> str | None: ...
    def apply_config(self, config: Config, jobs: c.PackedSpecs) -> None: ...


PROPOSE_TIMEOUT: Final = 3.0
LOOK_EVERY_S: Final = 1.0
# How long a reload on the leader waits for its file's jobs to commit.
RECONCILE_TIMEOUT: Final = 30.0


class ReloadRefused(Exception):
    """The file cannot be used; ``errors``: one ``<file>: <key>: <problem> (<fix>)`` each."""

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class ReloadGated(ReloadRefused):
    """The file's jobs use a feature some member does not support yet
    (``raftcron/core/features.py``): refused like an invalid file, nothing changes."""

    def __init__(self, refusal: features.Refusal, path: Any) -> None:
        self.refusal = refusal
        super().__init__(
            [f"{path}: {refusal.message()} (the running configuration stays; reload again "
             "once they are upgraded)"]
        )  # fmt: skip


class ReloadIncomplete(Exception):
    """The file was loaded, but its jobs did not commit in time (the leader lost its
    majority or leadership): the message says what to do."""


@dataclass(frozen=True, slots=True)
class ConfigView:
    """What the status, the metrics and the drift WARNINGs show (one read)."""

    hash: str  # this node's file
    reconciled: str  # the file last reconciled ("" none recorded)
    leader: str | None  # the leader this node sees
    leader_hash: str | None  # the leader's file (None: not known)
    members: dict[str, str | None]  # member -> its reported hash (None: not reported)
    # member -> its advertised (version, feature level) (None: advertised nothing: level 0)
    versions: dict[str, tuple[str, int] | None] = field(default_factory=dict)

    def drift(self) -> dict[str, str]:
        """Members whose reported hash differs from the leader's, with their hash."""
        if self.leader_hash is None:
            return {}
        return {
            name: h
            for name, h in sorted(self.members.items())
            if h is not None and h != self.leader_hash
        }


def restart_needed(old: Config, new: Config) -> list[str]:
    """The keys whose change a reload cannot apply (they keep their running values)."""
    out = []
    if new.cluster.secret != old.cluster.secret:
        out.append("cluster.secret")
    if new.cluster.nodes != old.cluster.nodes:
        out.append("cluster.nodes")
    if (new.api.tls_cert, new.api.tls_key) != (old.api.tls_cert, old.api.tls_key):
        out.append("api.tls_cert/api.tls_key")
    return out


def running_config(old: Config, new: Config) -> Config:
    """``new`` without its jobs, with what only a restart changes taken from ``old``."""
    return replace(
        new,
        jobs=(),
        cluster=replace(new.cluster, secret=old.cluster.secret, nodes=old.cluster.nodes),
        api=replace(new.api, tls_cert=old.api.tls_cert, tls_key=old.api.tls_key),
    )


def embedded_clashes(cfg: Config, embedded: Iterable[JobSpec]) -> list[str]:
    """File jobs that take the name of an embedded job of the application."""
    names = {s.name for s in embedded}
    return [
        f"{cfg.path}: jobs[{i}].name: {s.name!r} is an embedded job of the application "
        "(rename the file's job)"
        for i, s in enumerate(cfg.jobs)
        if s.name in names
    ]


class ConfigControl:
    """This node's configuration (see the module docstring). Owned by :class:`Node`."""

    def __init__(self, node: ReloadHost, config: Config) -> None:
        self.node = node
        # An embedding application's jobs (raftcron.embed) are reconciled with the file's
        # and kept across reloads (they come from code, not the file).
        self.embedded: tuple[JobSpec, ...] = tuple(s for s in config.jobs if s.call)
        self.hash = config_hash(config)
        self.reloads = 0
        self._lock = asyncio.Lock()
        self._said: tuple[Any, ...] | None = None  # the drift last logged
        self.version: str = node.metrics.version
        # The other members' advertisements when this node last reported (see _report).
        self._others: dict[str, tuple[str, int]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        node.metrics.registry.register(_ConfigCollector(self))

    # -- views

    def view(self) -> ConfigView:
        node = self.node
        st = node.status()
        leader = node.node_name(st.leader) if (st.is_leader or st.leader in st.connected) else None
        file_names = [n.name for n in node.config.cluster.nodes]

        def read(
            s: State,
        ) -> tuple[str, dict[str, str | None], dict[str, tuple[str, int] | None]]:
            # the members: the replicated ones once seeded (raftcron/membership.py)
            names = sorted(s.members) if s.members else file_names
            return (
                s.reconciled_config_hash(),
                {n: s.member_hash(n) for n in names},
                {n: s.member_version(n) for n in names},
            )

        reconciled, members, versions = node.machine.read(read)
        members[node.name] = self.hash  # its own: what it reads now, reported or not yet
        versions[node.name] = (self.version, features.FEATURE_LEVEL)  # (what it runs)
        leader_hash = members.get(leader) if leader is not None else None
        return ConfigView(self.hash, reconciled, leader, leader_hash, members, versions)

    def levels(self) -> dict[str, int]:
        """Each member's feature level (advertised; 0 if it advertised nothing; this
        node's own is the one it runs): what the gate compares with."""

        # The members: the replicated ones once seeded (raftcron/membership.py), else the
        # file's. A member added at run time that has not advertised yet (not started)
        # is not counted: it can only have been added by a cluster of the level of
        # membership changes, and counting it as level 0 would refuse every write of
        # that level, its own removal included, until it starts.
        def read(s: State) -> list[tuple[str, bool, tuple[str, int] | None]]:
            if s.members:
                return [(m.name, m.added, s.member_version(m.name)) for m in s.members.values()]
            names = [n.name for n in self.node.config.cluster.nodes]
            return [(n, False, s.member_version(n)) for n in names]

        out: dict[str, int] = {}
        for name, added, version in self.node.machine.read(read):
            if version is None and added:
                continue
            out[name] = 0 if version is None else version[1]
        out[self.node.name] = features.FEATURE_LEVEL
        return out

    def refusal(self, cmd: c.Command) -> features.Refusal | None:
        """Why ``cmd`` may not be proposed yet (a feature some member is below), or None."""
        used = features.command_features(cmd)
        return features.refusal(used, self.levels()) if used else None

    def status_json(self) -> dict[str, Any]:
        """The ``config`` of ``/v1/status`` (plus each member's ``config_hash``)."""
        v = self.view()
        return {
            "config_hash": v.hash,
            "reconciled_config_hash": v.reconciled or None,
            "config_drift": sorted(v.drift()),
            "members": v.members,
            "versions": v.versions,
        }

    # -- the loop: report this node's hash, say when members drift

    async def run(self) -> None:
        while True:
            try:
                await self._report()
                self._say_drift(self.view())
            except Exception:
                logger.exception("node %s: config report failed", self.node.name)
            await asyncio.sleep(LOOK_EVERY_S)

    async def _report(self) -> None:
        node = self.node
        st = node.status()
        if not st.ready or st.leader is None or not (st.is_leader or st.leader in st.connected):
            return
        name, mine = node.name, self.hash
        advertised = (self.version, features.FEATURE_LEVEL)

        def read(s: State) -> tuple[str | None, tuple[str, int] | None, dict[str, Any]]:
            others = {n: v for n, v in s.member_version_map().items() if n != name}
            return s.member_hash(name), s.member_version(name), others

        reported, version, others = node.machine.read(read)
        if self._others is None:  # the first look: what the others had advertised then
            self._others = others
        again = others != self._others
        if reported == mine and version == advertised and not again:
            return
        cmd = c.ReportConfig(
            at_ms=node.clock.wall_ms(),
            node=name,
            hash=mine,
            version=advertised[0],
            level=advertised[1],
        )
        with contextlib.suppress(ProposalError):  # (tried again on the next look)
            await node.raft.propose(cmd, PROPOSE_TIMEOUT)
            self._others = others  # (said since the others' last change)

    def _say_drift(self, v: ConfigView) -> None:
        node = self.node
        drift = v.drift()
        leading = v.leader == node.name
        key = (v.leader, v.leader_hash, tuple(drift.items()), v.reconciled)
        if key == self._said or v.leader is None:
            return
        self._said = key
        if leading and drift:
            logger.warning(
                "config drift: member(s) %s read a cluster file that differs from the "
                "leader %s's (config_hash %s): make the files the same and run `raftcron "
                "reload NAME` on each member whose file changed",
                ", ".join(f"{n} (config_hash {h})" for n, h in drift.items()),
                node.name, v.leader_hash,
            )  # fmt: skip
        elif leading:
            logger.info("config: every member that reported reads config_hash %s", v.hash)
        elif node.name in drift:
            logger.warning(
                "config drift: node %s reads a cluster file (config_hash %s) that differs "
                "from the leader %s's (config_hash %s): make the files the same and run "
                "`raftcron reload %s`",
                node.name, v.hash, v.leader, v.leader_hash, node.name,
            )  # fmt: skip

    # -- reload

    def reload_soon(self) -> None:
        """SIGHUP: reload in the background; the outcome goes to the log."""
        task = asyncio.get_running_loop().create_task(self._logged_reload(), name="reload")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _logged_reload(self) -> None:
        try:
            await self.reload(via="SIGHUP")
        except ReloadRefused:
            pass  # logged by reload()
        except ReloadIncomplete as exc:
            logger.error("node %s: reload (SIGHUP): %s", self.node.name, exc)
        except Exception:
            logger.exception("node %s: reload (SIGHUP) failed", self.node.name)

    async def reload(self, via: str = "API") -> dict[str, Any]:
        """Re-read the file; apply it, or raise :class:`ReloadRefused` and change
        nothing. On the leader, reconcile its jobs (:class:`ReloadIncomplete` when they do
        not commit within ``RECONCILE_TIMEOUT``)."""
        async with self._lock:
            return await self._reload(via)

    async def _reload(self, via: str) -> dict[str, Any]:
        node = self.node
        path = node.config.path
        try:
            cfg = await asyncio.to_thread(self._load, path, dict(os.environ))
        except ReloadRefused as exc:
            for line in exc.errors:
                logger.error(
                    "node %s: reload (%s) refused, the running configuration stays: %s",
                    node.name, via, line,
                )  # fmt: skip
            raise
        jobs = cfg.jobs + self.embedded
        used = await asyncio.to_thread(
            lambda: [f for spec in jobs for f in features.spec_features(spec)]
        )
        refused = features.refusal(used, self.levels())
        if refused is not None:
            gated = ReloadGated(refused, path)
            logger.error(
                "node %s: reload (%s) refused, the running configuration stays: %s",
                node.name, via, gated.errors[0],
            )  # fmt: skip
            raise gated
        new_hash = config_hash(cfg, jobs)
        old_hash, old = self.hash, node.config
        later = restart_needed(old, cfg)
        for problem in account_problems(cfg, f"on node {node.name}"):  # runs here would fail
            logger.warning("%s", problem)
        node.apply_config(running_config(old, cfg), c.PackedSpecs.pack(jobs))
        node.executor.secret_values = {**secret_values(cfg), **secret_values(node.config)}
        self.hash = new_hash
        self.reloads += 1
        del cfg
        logger.info(
            "node %s: configuration reloaded (%s) from %s: config_hash %s (was %s)%s",
            node.name, via, path, new_hash, old_hash,
            f"; restart the agent to apply {', '.join(later)}" if later else "",
        )  # fmt: skip
        changed: list[str] | None = None
        leader = node.leader
        if leader is not None and node.status().is_leader:
            try:
                async with asyncio.timeout(RECONCILE_TIMEOUT):
                    changed = await leader.reconcile(
                        node.config_jobs, new_hash, node.config.cluster.history
                    )
            except FeatureNotEnabled as exc:  # (a member's level dropped meanwhile)
                raise ReloadIncomplete(
                    f"{path} was loaded (config_hash {new_hash}) but its jobs were not "
                    f"reconciled: {exc}"
                ) from None
            except TimeoutError:
                raise ReloadIncomplete(
                    f"{path} was loaded (config_hash {new_hash}) but its jobs did not commit "
                    f"within {RECONCILE_TIMEOUT:g}s (leadership or the majority was lost); "
                    f"run the reload again on the leader"
                ) from None
            logger.info(
                "leader %s: its file (config_hash %s) is now the cluster's: %d job(s) "
                "changed",
                node.name, new_hash, len(changed),
            )  # fmt: skip
        await self._report()
        v = self.view()
        out: dict[str, Any] = {
            "node": node.name,
            "file": str(path),
            "config_hash": new_hash,
            "previous_config_hash": old_hash,
            "reconciled_config_hash": v.reconciled or None,
            "leader": v.leader,
            "reconciled": changed is not None,
            "jobs_changed": sorted(changed) if changed is not None else [],
            "restart_needed": later,
        }
        if changed is None and v.reconciled != new_hash:
            out["note"] = (
                f"{node.name} is not the leader: its file is used for jobs only when it "
                f"leads; run `raftcron reload {v.leader or 'LEADER'}` on the leader to "
                "reconcile the leader's file"
            )
        return out

    def _load(self, path: Any, environ: Mapping[str, str]) -> Config:
        """Parse and check the file (in a thread): :class:`ReloadRefused` if unusable."""
        node = self.node
        try:
            cfg = load_config(path)
            cfg.node(node.name)
        except ConfigError as exc:
            raise ReloadRefused(exc.errors) from None
        problems = [
            *environment_problems(cfg, environ, "the agent's environment"),
            *embedded_clashes(cfg, self.embedded),
        ]
        if problems:
            raise ReloadRefused(problems)
        return cfg


class _ConfigCollector(Collector):
    """``raftcron_config_*`` at scrape time (see docs/operations.md, "Metrics")."""

    def __init__(self, control: ConfigControl) -> None:
        self.control = control

    def describe(self) -> Iterable[Metric]:
        return self._families(None)

    def collect(self) -> Iterable[Metric]:
        return self._families(self.control.view())

    def _families(self, v: ConfigView | None) -> list[Metric]:
        info = GaugeMetricFamily(
            "raftcron_config_hash_info",
            "The config_hash of the cluster file this node read (secrets left out)",
            labels=["hash"],
        )
        reconciled_info = GaugeMetricFamily(
            "raftcron_config_reconciled_hash_info",
            "The config_hash of the cluster file the leader last reconciled (a cluster fact)",
            labels=["hash"],
        )
        reconciled = GaugeMetricFamily(
            "raftcron_config_reconciled",
            "1 if this node's file is the one last reconciled, 0 if not (a leader with 0 "
            "leaves the jobs alone until `raftcron reload` on it)",
        )
        drift = GaugeMetricFamily(
            "raftcron_config_drift",
            "1 for a member whose reported config_hash differs from the leader's, 0 if it is "
            "the same (members that have not reported are left out)",
            labels=["member"],
        )
        level = GaugeMetricFamily(
            "raftcron_member_feature_level",
            "Each member's feature level as the replicated state says (0: it advertised "
            "none, a release from before levels); a feature needs it on every member",
            labels=["member"],
        )
        version = GaugeMetricFamily(
            "raftcron_member_version_info",
            "The raftcron version each member advertised (members that advertised none "
            "are left out)",
            labels=["member", "version"],
        )
        families: list[Metric] = [info, reconciled_info, reconciled, drift, level, version]
        if v is None:
            return families
        for name, adv in sorted(v.versions.items()):
            level.add_metric([name], 0 if adv is None else adv[1])
            if adv is not None:
                version.add_metric([name, adv[0]], 1)
        info.add_metric([v.hash], 1)
        if v.reconciled:
            reconciled_info.add_metric([v.reconciled], 1)
            reconciled.add_metric([], 1 if v.reconciled == v.hash else 0)
        if v.leader_hash is not None:
            for name, h in sorted(v.members.items()):
                if h is not None:
                    drift.add_metric([name], 0 if h == v.leader_hash else 1)
        return families
