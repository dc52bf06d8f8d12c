"""schemathesis against a live 3-node cluster with tokens, in a network namespace.

``python -m tests.cluster.fuzz_api --max-time 120`` (root): re-executes itself under
``unshare -n`` (a network namespace with only a loopback interface, gone with the
process), starts three agents with an admin and a read token, and runs schemathesis on
``/v1/openapi.json`` of the leader: the generated requests (stateless: examples, coverage,
fuzzing; stateful: the links between operations in the document) with the admin token,
then a shorter pass with the read token. It talks to the leader; writes sent to a
follower take the same handlers. ``/health/leader`` is left out: it takes no input, and a
member that stopped leading during the run answers it with its documented 503, which
schemathesis counts as a server error. A job or webhook URL that schemathesis makes up
cannot leave the machine: the namespace has no route anywhere. A generated ``command``
runs ``true`` with the generated arguments (``fuzz_hooks``), so no made-up program runs.
``/v1/leader/transfer`` is left out, and a drain never names a real member (``fuzz_hooks``):
either would hand the leadership of the member the run talks to away.

One worker: with two, hypothesis' lambda introspection (``ast.parse`` in threads) failed
now and then inside schemathesis ("AST constructor recursion depth mismatch"), a tool error
that says nothing about the API.

Checks: no server error, every response's status, content type, headers and body as the
document says. Exit 0 when schemathesis found nothing; its report is in ``--out``.
``make fuzz-api`` is the long run; ``tests/cluster/test_fuzz_api.py`` the short one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
ADMIN = "fuzz-admin-token-0123456789abcdef"
READ = "fuzz-read-token-0123456789abcdef"
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_headers_conformance,response_schema_conformance"
)
ENV_FLAG = "RAFTCRON_FUZZ_NETNS"


def why_not() -> str | None:
    """None when this machine can run the fuzzer in a namespace, else why not."""
    if os.geteuid() != 0:
        return "the API fuzz run needs root: it runs the cluster in a network namespace"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "the API fuzz run needs unshare and ip (apt-get install util-linux iproute2)"
    probe = subprocess.run(
        ["unshare", "-n", "ip", "link", "set", "lo", "up"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        return f"cannot create a network namespace here: {probe.stderr.strip()}"
    try:
        import schemathesis  # noqa: F401
    except ImportError:
        return "schemathesis is not installed (make install: it is in the test extra)"
    return None


def schemathesis(
    url: str, token: str, max_time: int, phases: str, out: Path, seed: int | None
) -> int:
    st = Path(sys.executable).with_name("st")
    cmd = [
        str(st), "run", url, "--checks", CHECKS, "--phases", phases,
        "--max-time", str(max_time), "--header", f"Authorization: Bearer {token}",
        "--workers", "1", "--request-timeout", "20", "--max-failures", "20",
        "--suppress-health-check", "all", "--generation-database", "none",
        # it would hand the leadership of the member the run talks to away (fuzz_hooks)
        "--exclude-path", "/v1/leader/transfer",
        # takes no input, and answers a (documented) 503 whenever the member it asks is
        # not the leader: on a loaded machine leadership can move during the run, and
        # schemathesis counts every 5xx as a server error (tests/unit/test_health_api.py
        # checks both of its answers)
        "--exclude-path", "/health/leader",
        "--report", "junit", "--report-dir", str(out), "--no-color",
    ]  # fmt: skip
    if seed is not None:
        cmd += ["--seed", str(seed)]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.cluster.fuzz_hooks"}
    print("fuzz-api: " + " ".join(c if token not in c else "<token>" for c in cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode


def inside(args: argparse.Namespace) -> int:
    from tests.cluster.harness import Cluster, running

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    tokens = (
        f'[[api.tokens]]\nrole = "admin"\ntoken = "{ADMIN}"\n'
        f'[[api.tokens]]\nrole = "read"\ntoken = "{READ}"\n'
    )
    every_second = {"name": "tick", "schedule": "* * * * * *", "command": ["true"]}
    with tempfile.TemporaryDirectory(prefix="raftcron-fuzz-") as tmp:
        cluster = Cluster(Path(tmp), [every_second], extra_toml=tokens, token=ADMIN)
        with running(cluster):
            # the leader: a follower's /health/leader is a (documented) 503, and
            # schemathesis counts every 5xx as a server error
            leader = cluster.wait_leader(30)
            url = cluster.members[leader].api + "/v1/openapi.json"
            try:
                rc = schemathesis(url, ADMIN, args.max_time, args.phases, out / "admin", args.seed)
                read_time = max(10, args.max_time // 4)
                rc_read = schemathesis(
                    url, READ, read_time, "examples,coverage,fuzzing", out / "read", args.seed
                )
            finally:
                (out / "agents.log").write_text(cluster.logs())
            if "Traceback" in cluster.logs():
                print("fuzz-api: a traceback in an agent's log (see agents.log)", flush=True)
                return 1
    return rc or rc_read


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.cluster.fuzz_api", description=__doc__)
    p.add_argument("--max-time", type=int, default=120, help="seconds for the admin pass")
    p.add_argument("--phases", default="examples,coverage,fuzzing,stateful")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path("fuzz-api-out"))
    args = p.parse_args(argv)
    if os.environ.get(ENV_FLAG) == str(os.getpid()):
        return inside(args)
    reason = why_not()
    if reason is not None:
        print(f"fuzz-api: {reason}", file=sys.stderr)
        return 2
    env = {**os.environ, ENV_FLAG: "exec"}
    again = sys.argv[1:] if argv is None else argv
    cmd = ["unshare", "-n", sys.executable, "-m", "tests.cluster.fuzz_api", *again]
    return subprocess.run(cmd, env=env, cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    if os.environ.get(ENV_FLAG) == "exec":
        os.environ[ENV_FLAG] = str(os.getpid())
    sys.exit(main())
