"""The offline install path (docs/install.md, "Air-gapped servers"), for real.

The wheelhouse is built once per test session (``packaging/build_wheelhouse.py``, what
``make wheelhouse`` runs; it needs the package index and takes 10-40 s here, most of it
downloading and building pysyncobj's wheel). Then, inside ``unshare -n`` (a network
namespace with nothing but loopback, so nothing can be downloaded), a fresh virtualenv
installs it with ``--no-index --find-links`` and the wheelhouse's hash list, and the
installed ``raftcron`` shows its version, runs a single-node agent that answers ``/health``
(and the image's health check agrees), runs ``raftcron dev`` from the wheel, and pip refuses
a wheelhouse with one altered wheel (tests/cluster/offline_install.py does the steps).

Needs root (``unshare -n``), as CI has; elsewhere it skips and says why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.test_packaging import read_lock

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.cluster


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "the offline-install test needs root: it creates a network namespace (unshare -n)"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "the offline-install test needs unshare and ip (apt-get install util-linux iproute2)"
    return None


WHY_NOT = _why_not()


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``make wheelhouse``'s directory, built into a temporary directory once per session."""
    import platform

    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}"
    out = tmp_path_factory.mktemp("wh") / f"wheelhouse-{tag}"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "packaging" / "build_wheelhouse.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    took = time.monotonic() - started
    assert proc.returncode == 0, f"building the wheelhouse failed:\n{proc.stdout}\n{proc.stderr}"
    print(f"wheelhouse built in {took:.1f} s: {proc.stdout.strip().splitlines()[-1]}")
    yield out


def test_wheelhouse_holds_every_locked_package_and_a_hash_list(wheelhouse: Path) -> None:
    lines = [
        line
        for line in (wheelhouse / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    pins = {line.split("==")[0]: line for line in lines}
    wheels = sorted(wheelhouse.glob("*.whl"))
    assert len(wheels) == len(lines)  # one hashed line per wheel, no more, no less
    assert all(" --hash=sha256:" in line for line in lines)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert pins["raftcron"].startswith(f"raftcron=={version} ")
    assert pins["pysyncobj"].startswith("pysyncobj==0.3.17 ")  # built here from its sdist
    locked = {
        name
        for name, (req, _) in read_lock(ROOT / "requirements.lock").items()
        if req.marker is None or req.marker.evaluate()  # what this Python needs
    }
    assert locked <= set(pins), f"missing from the wheelhouse: {sorted(locked - set(pins))}"
    assert "croniter" not in pins  # the schedule engine's test oracle only: never shipped
    # The example config is in raftcron's wheel, byte for byte the top-level file.
    [own] = [w for w in wheels if w.name.startswith("raftcron-")]
    with zipfile.ZipFile(own) as z:
        shipped = z.read("raftcron/cluster.example.toml")
    assert shipped == (ROOT / "cluster.example.toml").read_bytes()
    assert "cp3" in wheelhouse.name and wheelhouse.name.endswith(os.uname().machine)
    assert "--require-hashes" in (wheelhouse / "INSTALL.txt").read_text()


@pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")
@pytest.mark.timeout(600)
def test_offline_install_in_a_namespace_without_network(wheelhouse: Path, tmp_path: Path) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    proc = subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "tests.cluster.offline_install",
         "--wheelhouse", str(wheelhouse), "--work", str(work), "--version", version],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"offline install (venv + pip install) took {seen['install_seconds']} s")

    assert seen["interfaces"] == ["lo"]  # nothing but loopback: no network at all
    assert seen["version_line"] == f"raftcron {version}"
    assert seen["module_file"].startswith(str(work / "venv"))  # the wheel, not the checkout
    assert "ok (1 nodes: solo; 0 jobs)" in seen["check_config"]
    assert seen["health"] == 200
    code, said = seen["healthcheck"]
    assert code == 0 and said.startswith("healthy: http://127.0.0.1:8100/health"), said
    code, said = seen["healthcheck_not_agent"]
    assert code == 1 and "not a raftcron agent" in said, said
    code, said = seen["healthcheck_stopped"]
    assert code == 1 and said.startswith("unhealthy: http://127.0.0.1:8100/health"), said

    code, out, err = seen["dev"]
    assert code == 0, f"{out}\n{err}"
    assert "wrote cluster.example.toml" in out and "cluster up" in out, out
    assert seen["dev_example"] == (ROOT / "cluster.example.toml").read_text()

    code, said = seen["tampered"]
    assert code != 0 and "DO NOT MATCH THE HASHES" in said, said
