"""The account a command job runs as (its ``user`` and ``group`` keys), looked up locally.

Rules (docs/jobs.md, "Job isolation"):

* An agent running as root runs a job with ``user`` as that account: its uid, its primary
  group (or ``group``), its supplementary groups (``getgrouplist``) and its home directory.
  ``group`` alone keeps root's uid and changes only the group.
* An agent that is not root cannot switch: ``user`` is accepted only if it names the
  agent's own account, ``group`` only if it is the agent's own group. Such a job then runs
  exactly as a job without the keys.
* A name this machine does not know is an error, never a fallback to another account.

:func:`resolve` gives the :class:`Account` or raises :class:`AccountError` whose text
(``no user "backup"``) the caller completes with where it was looked up (``on node b``,
``on this machine``). Lookups go through NSS (``pwd``/``grp``) and can block on a
directory service: the executor calls it in a thread.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass

_NO_ACCOUNT_FIX = "create it there, or keep the job off such nodes with tags"


class AccountError(Exception):
    """The job's account cannot be used here.

    ``key`` is the job key at fault (``user`` or ``group``), ``str()`` the reason without
    the place (``no user "backup"``), ``fix`` what to do about it."""

    def __init__(self, key: str, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.key = key
        self.fix = fix


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """Who a job's process runs as. ``switch``: the job's process must change its ids."""

    name: str  # the user name (USER, LOGNAME)
    uid: int
    gid: int
    groups: tuple[int, ...] | None  # supplementary groups to set; None: keep the agent's
    home: str  # the account's home directory (HOME), as the password database has it
    switch: bool


def agent_name() -> str:
    """The name of the account this process runs as (its uid when it has no entry)."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _own(uid: int) -> tuple[str, str]:
    """The agent's own user name and home directory."""
    try:
        pw = pwd.getpwuid(uid)
    except KeyError:  # a container's arbitrary uid: no entry
        return str(uid), os.environ.get("HOME") or "/"
    return pw.pw_name, pw.pw_dir


def resolve(user: str | None, group: str | None) -> Account:
    """The account a job with these keys runs as on this machine."""
    euid = os.geteuid()
    root = euid == 0
    pw = None
    if user is not None:
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            raise AccountError("user", f"no user {_q(user)}", _NO_ACCOUNT_FIX) from None
    gid: int | None = None
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise AccountError("group", f"no group {_q(group)}", _NO_ACCOUNT_FIX) from None
    if not root:
        me = agent_name()
        if pw is not None and pw.pw_uid != euid:
            raise AccountError(
                "user",
                f"user {_q(user or '')}: the agent runs as {_q(me)}, not root, and cannot "
                "switch to another account",
                f"leave user out, or name {_q(me)}; only an agent running as root runs jobs "
                "as other accounts",
            )
        if gid is not None and gid not in (os.getgid(), os.getegid()):
            raise AccountError(
                "group",
                f"group {_q(group or '')}: the agent runs as {_q(me)}, not root, and cannot "
                "switch to another group",
                "leave group out, or name the agent's own group",
            )
        name, home = _own(euid)
        return Account(name=name, uid=euid, gid=os.getegid(), groups=None, home=home, switch=False)
    if pw is not None:
        primary = pw.pw_gid if gid is None else gid
        return Account(
            name=pw.pw_name,
            uid=pw.pw_uid,
            gid=primary,
            groups=tuple(os.getgrouplist(pw.pw_name, primary)),
            home=pw.pw_dir,
            switch=True,
        )
    name, home = _own(euid)
    if gid is not None:
        return Account(name=name, uid=euid, gid=gid, groups=None, home=home, switch=True)
    return Account(name=name, uid=euid, gid=os.getegid(), groups=None, home=home, switch=False)


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
