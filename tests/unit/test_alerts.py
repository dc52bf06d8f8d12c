"""docs/alerts.yml: Prometheus rules that name only metrics /metrics exports, valid for
``promtool check rules`` and behaving as ``tests/unit/alerts_test.yml`` says
(``promtool test rules``). CI installs promtool (``.ci/run``); elsewhere the promtool
half is skipped when it is not on PATH, the rest always runs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from raftcron.clock import FakeClock
from raftcron.core.state import State
from raftcron.metrics import NodeMetrics
from raftcron.raft.node import Machine, RaftStatus

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "docs" / "alerts.yml"
ALERT_TESTS = Path(__file__).with_name("alerts_test.yml")
# suffixes each family type has in the text format
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
    "unknown": ("",),
}


def exported_names() -> set[str]:
    """Every sample name this node's /metrics can export (families are described even
    when they have no sample yet)."""
    m = NodeMetrics(
        node="a",
        clock=FakeClock(),
        machine=Machine(State()),
        raft_status=lambda: RaftStatus(self_addr="127.0.0.1:7101"),
        executor_active=lambda: 0,
    )
    text = m.exposition().decode()
    out = set()
    for family in text_string_to_metric_families(text):
        out.update(family.name + s for s in SUFFIXES[family.type])
    return out


def rules() -> list[dict[str, object]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_every_rule_names_only_exported_metrics() -> None:
    exported = exported_names()
    assert "raftcron_job_last_success_timestamp_seconds" in exported
    assert "raftcron_fires_total" in exported
    wanted = set()
    for rule in rules():
        names = set(re.findall(r"\b(raftcron_[a-z0-9_]+)", str(rule["expr"])))
        assert names, rule["alert"]
        assert names <= exported, (rule["alert"], names - exported)
        wanted |= names
    # the alerts issue 16 asks for, by the metric each needs
    for name in (
        "raftcron_job_last_success_timestamp_seconds",  # job not succeeded in N
        "raftcron_is_leader",  # leaderless
        "raftcron_peer_up",  # member down
        "raftcron_stale_fence_rejections_total",  # stale fence
        "raftcron_fires_total",  # fire missed
    ):
        assert name in wanted, name


def test_every_rule_is_complete() -> None:
    names = []
    for rule in rules():
        names.append(rule["alert"])
        labels, notes = rule["labels"], rule["annotations"]
        assert isinstance(labels, dict) and labels["severity"] in ("page", "warning"), rule
        assert isinstance(notes, dict) and notes["summary"], rule
    assert len(names) == len(set(names)) >= 5


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:  # a failure in CI (tests/skip_policy.py): .ci/run installs it
        pytest.skip("promtool is not installed (CI installs it: see .ci/run)")
    return path


def test_promtool_checks_the_rules() -> None:
    out = subprocess.run(
        [_promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules())} rules found" in out.stdout


def test_promtool_unit_tests_the_alerts() -> None:
    out = subprocess.run(
        [_promtool(), "test", "rules", str(ALERT_TESTS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
