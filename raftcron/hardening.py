"""What an agent does to its own process and data dir before it starts (docs/operations.md,
"Files and permissions").

* :func:`private_umask` and :func:`raise_open_files_limit` (``raftcron agent`` only, not
  an application embedding a node): umask 077, so everything the agent creates is private
  to its account (directories 0700, files 0600), and the soft open-files limit raised to
  the hard limit (a WARNING when that is still low). Jobs do not inherit either: they get
  the umask and the soft open-files limit the agent started with (:data:`job_defaults`),
  unless a job's ``limits.nofile`` says otherwise.
* :func:`prepare_data_dir` (every node): creates the data dir 0700 and tightens an
  existing one, and every file and directory in it, that is open to its group or others
  (a data dir of an older release: files were 0644 in 0755 directories). It logs once
  what it changed.
"""

from __future__ import annotations

import logging
import os
import resource
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

logger = logging.getLogger(__name__)

AGENT_UMASK: Final = 0o077
# Below this many open files an agent with thousands of jobs and peers can run out.
LOW_NOFILE: Final = 4096


@dataclass(slots=True)
class JobDefaults:
    """What a job's process gets back from before the agent hardened itself; None: leave
    it as the agent's (an embedded node: the application's process was not changed)."""

    umask: int | None = None
    nofile_soft: int | None = None


job_defaults = JobDefaults()


def private_umask() -> None:
    """umask 077 for ``raftcron agent`` (the one it had is kept for its jobs)."""
    old = os.umask(AGENT_UMASK)
    if job_defaults.umask is None:
        job_defaults.umask = old


def raise_open_files_limit(node: str) -> None:
    """The soft open-files limit at the hard limit, for ``raftcron agent``; says so, and
    warns when it is low (the one it had is kept for its jobs)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if job_defaults.nofile_soft is None:
        job_defaults.nofile_soft = soft
    target = hard if hard != resource.RLIM_INFINITY else _nr_open()
    if soft != target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            logger.warning(
                "node %s: cannot raise the open-files limit to %s: %s", node, target, exc
            )
    shown = "unlimited" if soft == resource.RLIM_INFINITY else str(soft)
    if soft != resource.RLIM_INFINITY and soft < LOW_NOFILE:
        logger.warning(
            "node %s: open-files limit is %s (raised to the hard limit); that is low for a "
            "node with many jobs or runs: raise the hard limit (systemd LimitNOFILE=, "
            "ulimit -Hn, /etc/security/limits.conf) to %d or more",
            node,
            shown,
            LOW_NOFILE,
        )
    else:
        logger.info("node %s: open-files limit %s (raised to the hard limit)", node, shown)


def _nr_open() -> int:
    """The kernel's cap on open files per process (a soft limit cannot be infinite)."""
    try:
        with open("/proc/sys/fs/nr_open", encoding="ascii") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


def prepare_data_dir(path: Path, node: str) -> None:
    """Create ``path`` (0700), or tighten it and everything in it to 0700/0600."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    changed = 0
    examples: list[str] = []

    def tighten(p: str, is_dir: bool) -> None:
        nonlocal changed
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            return  # (Linux cannot chmod a link; what it points at is not ours to change)
        mode = stat.S_IMODE(st.st_mode)
        if not mode & 0o077:
            return
        new = (mode & 0o700) | (0o700 if is_dir else 0o600)
        try:
            os.chmod(p, new)
        except OSError as exc:
            logger.warning("node %s: cannot tighten the mode of %s: %s", node, p, exc)
            return
        changed += 1
        if len(examples) < 3:
            examples.append(f"{p} {mode:04o}")

    tighten(str(path), True)
    for root, dirs, files in os.walk(path):
        for d in dirs:
            tighten(os.path.join(root, d), True)
        for f in files:
            tighten(os.path.join(root, f), False)
    if changed:
        logger.warning(
            "node %s: tightened %d entries under %s that their group or others could read "
            "(directories now 0700, files 0600; e.g. %s)",
            node,
            changed,
            path,
            ", ".join(examples),
        )
