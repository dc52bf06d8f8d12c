"""The skip policy (tests/skip_policy.py): in CI a skip is a failure unless its reason is on
the allow-list. Run on a throwaway suite in a pytest subprocess, with and without CI."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.skip_policy import DEFAULT_ALLOWLIST, allowed, in_ci, load_allowlist

ROOT = Path(__file__).resolve().parents[2]

SUITE = """
import pytest

def test_passes():
    pass

def test_allowed_skip():
    pytest.skip("no widget on this machine (musl)")

def test_other_skip():
    pytest.skip("widget not installed")

@pytest.mark.skipif(True, reason="needs a widget")
def test_skipif_mark():
    pass

@pytest.mark.xfail(reason="known widget bug", strict=True)
def test_xfail():
    assert False
"""
MODULE_SKIP = 'import pytest\npytest.skip("no widgets at all", allow_module_level=True)\n'
ALLOW = '[[skip]]\npattern = "no widget on this machine \\\\(.*\\\\)"\nwhy = "a test of this"\n'


def _run(tmp_path: Path, ci: str | None) -> dict[str, str]:
    """Outcome per test (or module) of the throwaway suite: passed/skipped/failed/error."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tests.skip_policy"]\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\nskip_allowlist = allow.toml\n")
    (tmp_path / "allow.toml").write_text(ALLOW)
    (tmp_path / "test_suite.py").write_text(SUITE)
    (tmp_path / "test_module_skip.py").write_text(MODULE_SKIP)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(ROOT)
    if ci is not None:
        env["CI"] = ci
    xml = tmp_path / "out.xml"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--continue-on-collection-errors",
            f"--junitxml={xml}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    out = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        name = case.get("name") or case.get("classname") or "?"
        kinds = [child.tag for child in case if child.tag in ("skipped", "failure", "error")]
        out[name] = kinds[0] if kinds else "passed"
    return out


def test_outside_ci_skips_stay_skips(tmp_path: Path) -> None:
    assert _run(tmp_path, None) == {
        "test_module_skip": "skipped",
        "test_passes": "passed",
        "test_allowed_skip": "skipped",
        "test_other_skip": "skipped",
        "test_skipif_mark": "skipped",
        "test_xfail": "skipped",  # junit writes an xfail as skipped
    }


def test_in_ci_only_allow_listed_skips_stay_skips(tmp_path: Path) -> None:
    assert _run(tmp_path, "true") == {
        "test_module_skip": "error",  # a module skipped at collection, not allow-listed
        "test_passes": "passed",
        "test_allowed_skip": "skipped",
        "test_other_skip": "failure",
        "test_skipif_mark": "error",  # skipif acts at setup: an error there
        "test_xfail": "skipped",  # an expected failure is not a skip
    }


def test_what_counts_as_ci() -> None:
    assert all(in_ci({"CI": v}) for v in ("true", "TRUE", "1", "yes"))
    assert not any(in_ci({"CI": v}) for v in ("false", "0", ""))
    assert not in_ci({})


def test_patterns_match_the_whole_reason(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text(ALLOW)
    entries = load_allowlist(path)
    assert allowed("no widget on this machine (musl)", entries) is not None
    assert allowed("no widget on this machine (musl) and more", entries) is None
    assert allowed("really no widget on this machine (musl)", entries) is None


@pytest.mark.parametrize(
    "text",
    [
        '[[skip]]\npattern = "x"\n',  # no why
        '[[skip]]\npattern = "x"\nwhy = " "\n',
        '[[skip]]\nwhy = "because"\n',
        '[[skip]]\npattern = "x"\nwhy = "because"\nwhen = "always"\n',
    ],
)
def test_a_malformed_entry_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "a.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match="skip\\[0\\]"):
        load_allowlist(path)


def test_the_repository_allowlist_loads() -> None:
    for entry in load_allowlist(DEFAULT_ALLOWLIST):
        assert entry.why.strip()
