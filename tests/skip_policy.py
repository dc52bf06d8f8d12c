"""The skip policy: in CI a skipped test is a failure, unless its reason is allow-listed.

A suite that skips when a binary is missing (chromium, nginx, promtool, iptables...) passes
on a machine that lacks it without testing anything. Locally that is convenient; in CI
(``CI=true``, which ``.ci/run`` exports) it hides a broken install. So with ``CI`` set, a
skip turns into a failure that names the reason, unless the reason matches an entry of
``tests/skip_allowlist.toml``: a regular expression (``pattern``, matched against the
whole reason) and why that skip is acceptable in CI (``why``). An expected failure
(``xfail``) is not a skip.

Loaded by ``tests/conftest.py``; the list's path is the ini option ``skip_allowlist``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

DEFAULT_ALLOWLIST = Path(__file__).with_name("skip_allowlist.toml")
CI_VALUES = frozenset({"true", "1", "yes"})


@dataclass(frozen=True)
class Allowed:
    pattern: re.Pattern[str]
    why: str


def in_ci(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    return environ.get("CI", "").strip().lower() in CI_VALUES


def load_allowlist(path: Path) -> list[Allowed]:
    """The entries of ``path``; a missing file is an empty list, a malformed one an error."""
    if not path.exists():
        return []
    data = tomllib.loads(path.read_text())
    out = []
    for i, entry in enumerate(data.get("skip", [])):
        pattern, why = entry.get("pattern"), entry.get("why")
        if not isinstance(pattern, str) or not isinstance(why, str) or not why.strip():
            raise ValueError(f"{path}: skip[{i}] needs a string pattern and a non-empty why")
        unknown = set(entry) - {"pattern", "why"}
        if unknown:
            raise ValueError(f"{path}: skip[{i}]: unknown keys {sorted(unknown)}")
        out.append(Allowed(re.compile(pattern), why))
    return out


def allowed(reason: str, allowlist: list[Allowed]) -> Allowed | None:
    return next((a for a in allowlist if a.pattern.fullmatch(reason)), None)


def skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    """The reason a skipped report carries, without pytest's "Skipped: " prefix."""
    longrepr: Any = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return str(text).removeprefix("Skipped: ")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "skip_allowlist",
        "TOML file of skip reasons allowed in CI (tests/skip_allowlist.toml)",
        default=str(DEFAULT_ALLOWLIST),
    )


def pytest_configure(config: pytest.Config) -> None:
    path = Path(str(config.getini("skip_allowlist")))
    if not path.is_absolute():
        path = config.rootpath / path
    config.stash[_KEY] = _Policy(path, load_allowlist(path), in_ci())


@dataclass
class _Policy:
    path: Path
    allowlist: list[Allowed]
    ci: bool


_KEY = pytest.StashKey[_Policy]()


def _enforce(config: pytest.Config, report: pytest.TestReport | pytest.CollectReport) -> None:
    policy = config.stash[_KEY]
    if not policy.ci or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = skip_reason(report)
    if allowed(reason, policy.allowlist) is None:
        report.outcome = "failed"
        report.longrepr = (
            f"skipped in CI (CI={os.environ.get('CI')}), and the reason is not allow-listed in "
            f"{policy.path}: {reason!r}. Install what the test needs (see .ci/run), or add "
            "the reason to the allow-list with why it may skip in CI."
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _enforce(item.config, report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    _enforce(collector.config, report)
    return report
