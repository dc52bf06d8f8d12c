"""The offline install, run inside a network namespace with no network at all (``unshare -n``,
by tests/cluster/test_offline_install.py): only loopback exists, and it is down until this
script brings it up.

    unshare -n python -m tests.cluster.offline_install --wheelhouse DIR --work DIR \\
        --version 0.1.0

Steps: a fresh virtualenv; ``pip install --no-index --find-links WHEELHOUSE --require-hashes
-r WHEELHOUSE/requirements.txt`` with no pip configuration at all; ``raftcron --version``;
``raftcron init`` + ``check-config`` + a single-node agent that must answer ``/health``, and
the image's health check against it; ``raftcron dev`` from the installed wheel in an empty
directory; and a wheelhouse with one altered wheel, which pip must refuse. Prints one JSON
object with what it saw (the test asserts on it); exits non-zero on the first failure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def clean_env(home: Path) -> dict[str, str]:
    """No pip configuration (this machine's pip.conf adds find-links and indexes), no
    PYTHONPATH (nothing from the checkout)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "PYTHON", "RAFTCRON_", "VIRTUAL_ENV"))
    }
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INPUT="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        HOME=str(home),
    )
    return env


def run(
    cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def must(proc: subprocess.CompletedProcess[str], what: str) -> str:
    if proc.returncode != 0:
        raise SystemExit(
            f"{what}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc.stdout


def health(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--wheelhouse", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--version", required=True, help="the version raftcron must report")
    args = ap.parse_args()
    wheelhouse: Path = args.wheelhouse
    work: Path = args.work
    out: dict[str, Any] = {}

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    out["interfaces"] = sorted(name for _, name in socket.if_nameindex())  # this namespace's
    if out["interfaces"] != ["lo"]:
        raise SystemExit(f"not an isolated namespace: interfaces {out['interfaces']}")

    home = work / "home"
    home.mkdir(parents=True)
    env = clean_env(home)
    venv = work / "venv"
    started = time.monotonic()
    must(run([sys.executable, "-m", "venv", str(venv)], env, work), "python -m venv")
    install = [
        str(venv / "bin" / "pip"),
        "install",
        "--no-index",
        "--no-cache-dir",
        "--find-links",
        str(wheelhouse),
        "--require-hashes",
        "-r",
        str(wheelhouse / "requirements.txt"),
    ]
    must(run(install, env, work), "offline pip install")
    out["install_seconds"] = round(time.monotonic() - started, 1)

    raftcron = str(venv / "bin" / "raftcron")
    out["version_line"] = must(run([raftcron, "--version"], env, work), "--version").strip()
    out["module_file"] = must(
        run([str(venv / "bin" / "python"), "-c", "import raftcron; print(raftcron.__file__)"],
            env, work),
        "import raftcron",
    ).strip()  # fmt: skip

    # A single node from a file `raftcron init` wrote, and the image's health check on it.
    etc = work / "etc"
    etc.mkdir(mode=0o700)
    conf = etc / "cluster.toml"
    out["init"] = must(
        run([raftcron, "init", "--node", "solo", "--out", str(conf), "--data-dir",
             str(work / "data")], env, work),
        "raftcron init",
    )  # fmt: skip
    out["check_config"] = must(
        run([raftcron, "check-config", str(conf), "--node", "solo"], env, work), "check-config"
    ).strip()
    log = (work / "agent.log").open("wb")
    agent = subprocess.Popen(
        [raftcron, "agent", "--config", str(conf), "--node", "solo"],
        env=env,
        cwd=work,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline and agent.poll() is None:
            status = health("http://127.0.0.1:8100/health")
            if status == 200:
                break
            time.sleep(0.2)
        out["health"] = status
        if status != 200:
            raise SystemExit(
                f"agent: /health {status}, exit {agent.poll()}\n"
                + (work / "agent.log").read_text(errors="replace")[-3000:]
            )
        probe = [str(venv / "bin" / "python"), str(ROOT / "packaging" / "healthcheck.py")]
        hc = run([*probe, "--pid", str(agent.pid)], env, work, timeout=30)
        out["healthcheck"] = [hc.returncode, hc.stdout.strip()]
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(30)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
        log.close()
    hc = run([*probe, "--pid", str(os.getpid())], env, work, timeout=30)
    out["healthcheck_not_agent"] = [hc.returncode, hc.stdout.strip()]
    env_down = dict(env, RAFTCRON_HEALTH_URL="http://127.0.0.1:8100/health")
    hc = run(probe, env_down, work, timeout=30)
    out["healthcheck_stopped"] = [hc.returncode, hc.stdout.strip()]

    # `raftcron dev` from the installed wheel, in an empty directory.
    demo = work / "demo"
    demo.mkdir()
    dev = run([raftcron, "dev", "--duration", "3"], env, demo, timeout=180)
    out["dev"] = [dev.returncode, dev.stdout, dev.stderr[-2000:]]
    out["dev_example"] = (demo / "cluster.example.toml").read_bytes().decode()

    # One altered byte in one wheel: the hash list must stop the install.
    bad = work / "tampered"
    shutil.copytree(wheelhouse, bad)
    victim = next(bad.glob("prometheus_client-*.whl"))
    with victim.open("ab") as f:
        f.write(b"\0")
    tampered = run(
        [str(venv / "bin" / "pip"), "install", "--no-index", "--no-cache-dir", "--find-links",
         str(bad), "--require-hashes", "-r", str(bad / "requirements.txt"), "--target",
         str(work / "tampered-target")],
        env, work,
    )  # fmt: skip
    out["tampered"] = [tampered.returncode, tampered.stdout[-1500:] + tampered.stderr[-1500:]]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
