"""``config_hash``: one short name for what a cluster file says, to compare nodes by.

Invariants:

* The hash is of the *parsed* file, in a canonical form, never of its bytes: key order,
  whitespace, comments, the order of ``[[jobs]]`` tables and the ways TOML can write the
  same value (``"30s"`` or ``30000`` ms, inline or dotted tables) change nothing. A change
  to anything the cluster acts on (a job's key, a node's address or tags, a ``[cluster]``
  or ``[notify]`` setting, which token roles exist) changes it.
* Secrets are not in it: not the cluster secret, not the token values (nor the files they
  are read from). Rotating a token or the secret keeps the hash; the hash of a
  low-entropy secret could otherwise be guessed offline from ``/metrics``.
* Paths that only mean something on the host that reads the file (each node's
  ``data_dir``, the TLS certificate and key files) are not in it, so the same file
  installed in another directory has the same hash. That TLS is on is.
* Jobs are in it in their wire form (:func:`raftcron.core.commands.spec_to_wire`), the
  form the leader reconciles: a key left at its default is not written, so a release that
  adds a key does not change the hash of a file that does not use it.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any, Final

from raftcron.config import Config
from raftcron.core.commands import spec_to_wire
from raftcron.core.model import JobSpec

# Hex digits shown (of SHA-256): 64 bits, plenty to tell files apart, short enough to read.
HASH_CHARS: Final = 16


def canonical(cfg: Config, jobs: Iterable[JobSpec] | None = None) -> dict[str, Any]:
    """The parts of ``cfg`` the hash covers, as plain JSON values (``jobs``: instead of
    ``cfg.jobs``, e.g. the file's jobs plus an embedding application's)."""
    cl = cfg.cluster
    return {
        "cluster": {
            "nodes": [
                {"name": n.name, "raft": str(n.raft), "api": str(n.api), "tags": dict(n.tags)}
                for n in sorted(cl.nodes, key=lambda n: n.name)
            ],
            "lease_ms": cl.lease_ms,
            "history": cl.history,
            "shutdown_drain_ms": cl.shutdown_drain_ms,
            "max_apply_lag_ms": cl.max_apply_lag_ms,
        },
        "api": {
            "token_roles": sorted(t.role for t in cfg.api.tokens),
            "insecure": cfg.api.insecure,
            "tls": cfg.api.tls_cert is not None,
            "open_health": cfg.api.open_health,
        },
        "notify": {
            "webhooks": [[t.url, list(t.on)] for t in cfg.notify.webhooks],
            "late_after_ms": cfg.notify.late_after_ms,
            "timeout_ms": cfg.notify.timeout_ms,
            "retries": cfg.notify.retries,
        },
        "jobs": [spec_to_wire(s) for s in sorted(cfg.jobs if jobs is None else jobs, key=_name)],
    }


def _name(spec: JobSpec) -> str:
    return spec.name


def config_hash(cfg: Config, jobs: Iterable[JobSpec] | None = None) -> str:
    """The hash of ``cfg`` (see the module docstring): ``HASH_CHARS`` hex digits."""
    text = json.dumps(
        canonical(cfg, jobs), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_CHARS]
