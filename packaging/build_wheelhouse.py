"""Build an offline wheelhouse: ``make wheelhouse`` (docs/install.md, "Air-gapped servers").

Run it with the Python the servers will run (the same minor version, the same machine
architecture, ideally the same distribution): wheels with compiled code are specific to all
three, so the directory's name says which it is for, e.g. ``wheelhouse-cp311-x86_64``.

    python3.11 packaging/build_wheelhouse.py --out dist/wheelhouse-cp311-x86_64

It needs the package index (it runs on a connected machine) and writes into ``--out``:

- the wheel of raftcron, built from this source tree;
- a wheel for every package of ``requirements.lock`` that this Python needs, each checked
  against the lock's hashes; pysyncobj is published only as a source archive, so its wheel
  is built here (its hash can therefore not be the lock's, which is the archive's);
- ``requirements.txt``: every wheel of the directory as ``name==version --hash=sha256:...``,
  the hash list an offline install checks every file against;
- ``INSTALL.txt``: what it was built for and the install command.

On the server, with no network: ``python3.11 -m venv /opt/raftcron && /opt/raftcron/bin/pip
install --no-index --find-links DIR --require-hashes -r DIR/requirements.txt``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What building raftcron's own wheel reads from the tree (the package data included: the
# package's cluster.example.toml is a link to the top-level file).
SOURCES = ("pyproject.toml", "README.md", "cluster.example.toml", "raftcron")


def tag() -> str:
    """``cp311-x86_64``: the Python version and machine architecture the wheels are for."""
    return f"cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}"


def _wheel_name_version(path: Path) -> tuple[str, str]:
    # PEP 427: {distribution}-{version}(-{build})?-{python}-{abi}-{platform}.whl
    name, version = path.name.split("-")[:2]
    return re.sub(r"[-_.]+", "-", name).lower(), version


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hash_list(wheels: list[Path]) -> str:
    """The ``requirements.txt`` of a wheelhouse: one pinned, hashed line per wheel."""
    lines = [
        "# Every wheel of this directory with its SHA-256, written when it was built.",
        "# pip install --no-index --find-links DIR --require-hashes -r DIR/requirements.txt",
    ]
    seen: dict[str, str] = {}
    for wheel in sorted(wheels, key=lambda w: _wheel_name_version(w)):
        name, version = _wheel_name_version(wheel)
        if name in seen:
            raise SystemExit(f"error: two wheels of {name}: {seen[name]} and {wheel.name}")
        seen[name] = wheel.name
        lines.append(f"{name}=={version} --hash=sha256:{sha256(wheel)}")
    return "\n".join(lines) + "\n"


def _pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def build(out: Path, lock: Path) -> list[Path]:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    # Every locked dependency, hash-checked against the lock as it is downloaded.
    _pip("wheel", "--quiet", "--require-hashes", "--wheel-dir", str(out), "-r", str(lock))
    # raftcron itself, from a clean copy of its sources: setuptools reuses a build/ directory
    # left in the tree, and could ship files since deleted.
    with tempfile.TemporaryDirectory(prefix="raftcron-src-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in SOURCES:
            here = ROOT / name
            if here.is_dir():
                shutil.copytree(
                    here, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                shutil.copy2(here, src / name)
        _pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(src))
    wheels = sorted(out.glob("*.whl"))
    others = sorted(p.name for p in out.iterdir() if p.suffix != ".whl")
    if others:
        raise SystemExit(f"error: {out}: not wheels: {', '.join(others)}")
    return wheels


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "dist" / f"wheelhouse-{tag()}")
    ap.add_argument("--lock", type=Path, default=ROOT / "requirements.lock")
    args = ap.parse_args()
    out: Path = args.out.resolve()
    started = datetime.datetime.now(datetime.UTC)
    wheels = build(out, args.lock.resolve())
    (out / "requirements.txt").write_text(hash_list(wheels), encoding="utf-8")
    size = sum(w.stat().st_size for w in wheels)
    try:
        distro = platform.freedesktop_os_release().get("PRETTY_NAME", "an unknown system")
    except OSError:
        distro = "an unknown system"
    (out / "INSTALL.txt").write_text(
        f"raftcron wheelhouse for CPython {sys.version_info[0]}.{sys.version_info[1]} on "
        f"{platform.machine()} (tag {tag()}), built {started:%Y-%m-%d} on {distro}.\n"
        "Install it only with that Python version on that architecture; build it on the\n"
        "same distribution as the servers (compiled wheels need its C library).\n\n"
        f"  python{sys.version_info[0]}.{sys.version_info[1]} -m venv /opt/raftcron\n"
        "  /opt/raftcron/bin/pip install --no-index --find-links . --require-hashes \\\n"
        "      -r requirements.txt        # run in this directory; no network needed\n"
        "  /opt/raftcron/bin/raftcron --version\n",
        encoding="utf-8",
    )
    print(f"{out}: {len(wheels)} wheels, {size / 1e6:.1f} MB, for {tag()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
