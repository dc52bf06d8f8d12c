"""What ships raftcron: the lock files, the wheelhouse's hash list, the packaged example config,
the systemd unit and sysusers file, the Dockerfile (no Docker engine runs here, so it is
linted and checked line by line) and its .dockerignore.

The real offline install runs in tests/cluster/test_offline_install.py.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from raftcron.config import DEFAULT_SHUTDOWN_DRAIN_MS

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "packaging" / "raftcron.service"
SHUTDOWN_DRAIN_DEFAULT_S = DEFAULT_SHUTDOWN_DRAIN_MS / 1000  # [cluster] shutdown_drain's default


# --------------------------------------------------------------------------- lock files


def read_lock(path: Path) -> dict[str, tuple[Requirement, list[str]]]:
    """``name -> (requirement with its marker, hashes)`` of a uv/pip-tools lock file."""
    out: dict[str, tuple[Requirement, list[str]]] = {}
    current: str | None = None
    for line in path.read_text().splitlines():
        if re.match(r"[A-Za-z0-9]", line):
            req = Requirement(line.rstrip(" \\"))
            current = canonicalize_name(req.name)
            assert current not in out, f"{path.name}: {current} twice"
            out[current] = (req, [])
        elif line.strip().startswith("--hash=sha256:") and current is not None:
            out[current][1].append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
    return out


def _pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.mark.parametrize(
    ("lock", "extras"), [("requirements.lock", ()), ("requirements-test.lock", ("test",))]
)
def test_lock_pins_every_dependency_exactly_with_hashes(lock: str, extras: tuple[str, ...]) -> None:
    pins = read_lock(ROOT / lock)
    assert "make lock" in (ROOT / lock).read_text()[:300]  # says how to regenerate it
    for name, (req, hashes) in pins.items():
        [spec] = req.specifier
        assert spec.operator == "==", f"{lock}: {name} is not pinned exactly"
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    wanted = list(project["dependencies"])
    for extra in extras:
        wanted += project["optional-dependencies"][extra]
    for text in wanted:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{lock}: {name} (from pyproject.toml) is not locked: make lock"
        version = next(iter(pins[name][0].specifier)).version
        assert req.specifier.contains(version), f"{lock}: {name}=={version} vs {req.specifier}"
    # The code patches pysyncobj's internals: exactly the version it was written against.
    assert str(pins["pysyncobj"][0].specifier) == "==0.3.17"


def test_runtime_and_test_locks_agree() -> None:
    runtime, test = (
        read_lock(ROOT / "requirements.lock"),
        read_lock(ROOT / "requirements-test.lock"),
    )
    for name, (req, _) in runtime.items():
        assert name in test, f"{name} is in requirements.lock only: make lock"
        assert req.specifier == test[name][0].specifier, f"{name}: the two locks differ"


def test_pysyncobj_pinned_exactly_in_pyproject() -> None:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    [dep] = [d for d in project["dependencies"] if d.startswith("pysyncobj")]
    assert str(Requirement(dep).specifier) == "==0.3.17"


def test_make_install_uses_the_test_lock_with_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet --require-hashes -r requirements-test.lock" in makefile
    assert "pip install --quiet --no-deps -e ." in makefile
    assert re.search(r"^\$\(STAMP\): pyproject.toml requirements-test.lock$", makefile, re.M)


# --------------------------------------------------------------------------- wheelhouse


def _builder() -> ModuleType:
    # packaging/ is no Python package (and its name is taken by PyPI's `packaging`).
    spec = importlib.util.spec_from_file_location(
        "build_wheelhouse", ROOT / "packaging" / "build_wheelhouse.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_wheelhouse_hash_list_pins_and_hashes_every_wheel(tmp_path: Path) -> None:
    build = _builder()
    a = tmp_path / "Python_Dateutil-4.0.0-py3-none-any.whl"
    b = tmp_path / "pysyncobj-0.3.17-py3-none-any.whl"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    text = build.hash_list([b, a])
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == [
        f"pysyncobj==0.3.17 --hash=sha256:{hashlib.sha256(b'two').hexdigest()}",
        f"python-dateutil==4.0.0 --hash=sha256:{hashlib.sha256(b'one').hexdigest()}",
    ]
    c = tmp_path / "pysyncobj-0.3.16-py3-none-any.whl"
    c.write_bytes(b"three")
    with pytest.raises(SystemExit, match="two wheels of pysyncobj"):
        build.hash_list([a, b, c])


def test_wheelhouse_name_says_python_version_and_architecture() -> None:
    import platform

    tag = _builder().tag()
    assert tag == f"cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}"
    makefile = (ROOT / "Makefile").read_text()
    assert "dist/wheelhouse-$(WHEELHOUSE_TAG)" in makefile
    assert 'print(f"cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}")' in (
        makefile.replace("\\\n\t", "")
    )


# --------------------------------------------------------------------------- example config


def test_packaged_example_config_is_the_top_level_file() -> None:
    from raftcron.cli import example_config

    assert example_config() == (ROOT / "cluster.example.toml").read_bytes()
    # One file, two names: the package's is a link to the top-level one, so they cannot drift
    # (the built wheel carries the content: tests/cluster/test_offline_install.py).
    link = ROOT / "raftcron" / "cluster.example.toml"
    assert link.is_symlink() and str(link.readlink()) == "../cluster.example.toml"
    package_data = _pyproject()["tool"]["setuptools"]["package-data"]  # type: ignore[index]
    assert "cluster.example.toml" in package_data["raftcron"]


# --------------------------------------------------------------------------- systemd


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file: section -> key -> values (a key may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|min)?", value)
    assert m, value
    return float(m.group(1)) * {"ms": 0.001, "s": 1.0, "min": 60.0, None: 1.0}[m.group(2)]


def _comment_before(text: str, key: str) -> str:
    """The comment lines right above ``key=`` (what the unit says about it)."""
    lines = text.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith(f"{key}="))
    above = []
    for line in reversed(lines[:i]):
        if not line.startswith("#"):
            break
        above.append(line)
    return " ".join(reversed(above))


def test_unit_file_keys_that_matter() -> None:
    text = UNIT.read_text()
    unit = parse_unit(text)
    svc = unit["Service"]
    one = {k: v[-1] for k, v in svc.items()}
    assert one["User"] == "raftcron" and one["Group"] == "raftcron"
    assert one["StateDirectory"] == "raftcron" and one["StateDirectoryMode"] == "0700"
    assert one["ConfigurationDirectory"] == "raftcron"
    # Running jobs' watchdogs outlive `systemctl restart`, so the new agent re-attaches.
    assert one["KillMode"] == "process"
    why = _comment_before(text, "KillMode")
    assert "watchdog" in why and "re-attach" in why and "restart" in why
    # systemd must not SIGKILL the agent mid-drain: the stop timeout leaves it the whole
    # shutdown drain plus time to detach and exit, and the comment says so.
    assert _seconds(one["TimeoutStopSec"]) > SHUTDOWN_DRAIN_DEFAULT_S + 5
    why = _comment_before(text, "KillSignal")
    assert "shutdown_drain" in why and "SIGKILL" in why
    assert f"default {SHUTDOWN_DRAIN_DEFAULT_S:g}s" in why  # the comment states today's default
    assert one["Restart"] == "on-failure"
    assert int(one["LimitNOFILE"]) >= 65536
    assert one["RestartPreventExitStatus"] == "2"  # a bad cluster file: restarting can't help
    # `systemctl reload` sends SIGHUP: the agent re-reads its file (raftcron/reload.py).
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    why = _comment_before(text, "ExecReload")
    assert "re-reads the cluster file" in why and "refuses" in why
    # Hardening that jobs never notice is on; what breaks jobs is off, each with a reason.
    for key in ("ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups"):
        assert one[key] == "yes", key
    assert one["ProtectSystem"] == "full"
    for key in ("PrivateTmp", "NoNewPrivileges", "MemoryDenyWriteExecute", "ProtectHome"):
        assert key not in svc, f"{key} breaks ordinary jobs"
        assert re.search(rf"^#\s+.*{key}.*:", text, re.M), f"no comment on leaving out {key}"
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_unit_starts_the_node_that_init_names() -> None:
    from raftcron import initcmd

    one = {k: v[-1] for k, v in parse_unit(UNIT.read_text())["Service"].items()}
    argv = shlex.split(one["ExecStart"])
    assert argv[1:5] == ["agent", "--config", "/etc/raftcron/cluster.toml", "--node"]
    assert argv[5] == "${RAFTCRON_NODE_NAME}"
    assert one["EnvironmentFile"] == f"/etc/raftcron/{initcmd.ENV_NAME}"
    # The data dirs `raftcron init` writes lie in the unit's StateDirectory.
    assert f"/var/lib/{one['StateDirectory']}" == initcmd.DEFAULT_DATA_DIR


def _verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` of ``unit_text`` in a scratch root that has the unit's
    programs (it checks that ExecStart and ExecReload exist) and the system's own units."""
    root = tmp_path / "root"
    (root / "opt/raftcron/bin").mkdir(parents=True)
    (root / "bin").mkdir()
    for program in (root / "opt/raftcron/bin/raftcron", root / "bin/kill"):
        program.write_text("#!/bin/sh\n")
        program.chmod(0o755)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/raftcron.service").write_text(unit_text)
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    return subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "--man=no", "raftcron.service"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or not Path("/usr/lib/systemd/system").is_dir(),
    reason="systemd-analyze is not installed (Debian's systemd package; .ci/run installs it)",
)
def test_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    good = _verify(UNIT.read_text(), tmp_path / "good")
    assert good.returncode == 0 and not good.stdout and not good.stderr, good.stderr
    # The check can fail: a misspelled key and a bad value are reported.
    broken = UNIT.read_text().replace("KillMode=process", "KilMode=process")
    broken = broken.replace("Type=exec", "Type=bogus")
    bad = _verify(broken, tmp_path / "bad")
    assert "Unknown key 'KilMode'" in bad.stderr and "bogus" in bad.stderr


@pytest.mark.skipif(
    shutil.which("systemd-sysusers") is None,
    reason="systemd-sysusers is not installed (Debian's systemd package)",
)
def test_sysusers_file_creates_the_raftcron_user(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(ROOT / "packaging" / "raftcron.sysusers")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    [user] = [
        line.split(":")
        for line in (tmp_path / "etc/passwd").read_text().splitlines()
        if line.startswith("raftcron:")
    ]
    assert user[5] == "/var/lib/raftcron"  # its home: the unit's StateDirectory
    assert user[6] in ("/usr/sbin/nologin", "/sbin/nologin")
    assert int(user[2]) < 1000  # a system user
    assert "raftcron:" in (tmp_path / "etc/group").read_text()


# --------------------------------------------------------------------------- Dockerfile


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        line = pending + line
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _ports(spec: str) -> set[int]:
    ports: set[int] = set()
    for item in spec.split():
        low, _, high = item.split("/")[0].partition("-")
        ports.update(range(int(low), int(high or low) + 1))
    return ports


def test_dockerfile_healthcheck_uses_the_agents_python() -> None:
    [check] = [args for word, args in dockerfile() if word == "HEALTHCHECK"]
    assert "curl" not in check and "wget" not in check
    cmd = check.split(" CMD ", 1)[1]
    import json

    argv = json.loads(cmd)
    assert argv[0] == "python" and argv[1].endswith("healthcheck.py")
    copies = [args.split() for word, args in dockerfile() if word == "COPY"]
    assert ["packaging/healthcheck.py", argv[1]] in copies


def test_dockerfile_exposes_the_example_ports() -> None:
    from raftcron.config import SINGLE_NODE_API, SINGLE_NODE_RAFT

    exposed: set[int] = set()
    for word, args in dockerfile():
        if word == "EXPOSE":
            exposed |= _ports(args)
    example = tomllib.loads((ROOT / "cluster.example.toml").read_text())
    wanted = {SINGLE_NODE_RAFT, SINGLE_NODE_API}
    for node in example["cluster"]["nodes"].values():
        wanted |= {node["raft"], node["api"]}
    wanted_ports = {int(addr.rsplit(":", 1)[1]) for addr in wanted}
    assert wanted_ports == exposed, f"EXPOSE {sorted(exposed)} vs {sorted(wanted_ports)}"


def test_dockerfile_data_volume_is_not_the_config_mount_and_user_is_not_root() -> None:
    words = dockerfile()
    [volume] = [args for word, args in words if word == "VOLUME"]
    import json

    volumes = json.loads(volume)
    assert volumes == ["/var/lib/raftcron"]
    text = (ROOT / "Dockerfile").read_text()
    assert "/etc/raftcron:/etc/raftcron:ro" in text  # the documented config mount
    assert not any(v.startswith("/etc/raftcron") for v in volumes)
    users = [args for word, args in words if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    from raftcron import initcmd

    assert volumes[0] == initcmd.DEFAULT_DATA_DIR  # init's data dirs land on the volume
    [entry] = [args for word, args in words if word == "ENTRYPOINT"]
    assert json.loads(entry)[:2] == ["/usr/bin/tini", "--"]  # tini stays PID 1
    assert "--stop-timeout" in text and "shutdown_drain" in text


def _section(text: str, heading: str) -> str:
    """The markdown section under ``heading``, up to the next heading of any level (a
    ``#`` line inside a fenced code block is no heading)."""
    lines = text.splitlines()
    start = lines.index(heading)
    fenced = False
    for i in range(start + 1, len(lines)):
        if lines[i].startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", lines[i]):
            return "\n".join(lines[start:i])
    return "\n".join(lines[start:])


def test_docker_docs_say_drain_first_and_stop_timeout_above_shutdown_drain() -> None:
    """A container stop kills the watchdogs (nothing re-attaches), so every Docker note says:
    drain first, and give ``docker stop`` a ``--stop-timeout`` above ``shutdown_drain``;
    every example's ``--stop-timeout`` is above today's default."""
    notes = {
        "Dockerfile": (ROOT / "Dockerfile").read_text(),
        "docs/install.md": _section((ROOT / "docs" / "install.md").read_text(), "## Docker"),
        "docs/operations.md": _section(
            (ROOT / "docs" / "operations.md").read_text(), "## Restarting a node"
        ),
    }
    for where, text in notes.items():
        flat = " ".join(text.replace("#", " ").split())
        assert "drain" in flat and "--stop-timeout" in flat and "shutdown_drain" in flat, where
        assert re.search(r"kills\b[^.]*\b(watchdogs|running jobs)", flat), where
        for value in re.findall(r"--stop-timeout (\d+)", text):
            assert int(value) > SHUTDOWN_DRAIN_DEFAULT_S, (where, value)
    assert re.findall(r"--stop-timeout (\d+)", notes["Dockerfile"] + notes["docs/install.md"])


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; ``!`` re-includes."""
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.replace("**/", "")) for p in prefixes
        ):
            verdict = not negate
    return verdict


def test_dockerignore_keeps_what_the_image_copies_and_drops_the_rest() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for word, args in dockerfile():
        if word == "COPY":
            for src in args.split()[:-1]:
                assert not _ignored(src, patterns), f"COPY {src}: excluded by .dockerignore"
    for secret in (".venv/bin/python", "raftcron-data/secret", ".git/config", "dist/x.whl"):
        assert _ignored(secret, patterns), f"{secret} would enter the build context"
    assert _ignored("raftcron/__pycache__/cli.cpython-311.pyc", patterns)
    assert not _ignored("raftcron/cli.py", patterns)


def test_dockerfile_lints_clean_with_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is missing: it is a test dependency (make install)")
    proc = subprocess.run(
        [hadolint, "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The linter does fail: a Dockerfile with the classic mistakes is refused.
    bad = ROOT / "Dockerfile"
    worse = bad.read_text().replace("USER 10001:10001", "USER root")
    worse = worse.replace("pip install --no-cache-dir --no-deps .", "pip install --no-deps .")
    proc = subprocess.run(
        [hadolint, "--no-color", "-"], input=worse, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0 and "DL3042" in proc.stdout and "DL3002" in proc.stdout
