"""`raftcron lock`'s lean path (issue 17 item 4) against what it replaces.

* :func:`raftcron.lockcmd.parse_fast` answers what argparse answers wherever it answers;
* the hand-written JSON, quoting and URL parsing of :mod:`raftcron.wire` match json and
  urllib.parse, and :func:`raftcron.durations.parse_duration` matches the regex it had;
* :func:`raftcron.lockcmd.spawn` starts CMD as ``subprocess.Popen(start_new_session=True)``;
* the exit code comes back before the release is answered, the release request is already
  out when the process exits, and it is retried after a 503;
* a plain lock call imports neither enum nor re (nor argparse, json, socket, subprocess).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftcron import lockcmd, wire
from raftcron.durations import ConfigError, parse_duration

# --------------------------------------------------------------------------- the parser

WORDS = st.sampled_from(
    [
        "n",
        "other",
        "--ttl",
        "--ttl=5s",
        "5s",
        "--wait",
        "1s",
        "--hold",
        "--grace=2s",
        "--holder",
        "h",
        "--api",
        "http://127.0.0.1:1",
        "--token",
        "t",
        "--token-file",
        "--cacert",
        "-q",
        "--quiet",
        "--",
        "true",
        "-x",
        "--tt",
        "--help",
        "-1",
        "",
        "--ttl=",
        "--quiet=1",
    ]
)


def _argparse(words: list[str]) -> dict[str, Any] | None:
    """What the argparse path makes of ``raftcron lock WORDS``: the options, or None."""
    parser = argparse.ArgumentParser(prog="raftcron", exit_on_error=False)
    lockcmd.add_parser(parser.add_subparsers(dest="verb", required=True))
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            args = parser.parse_args(["lock", *words])
            opts = lockcmd._options(args)
    except (SystemExit, argparse.ArgumentError, lockcmd._Usage):
        return None
    return {k: getattr(opts, k) for k in opts.__slots__ if k != "holder"} | {"holder": args.holder}


@settings(max_examples=400, deadline=None)
@given(words=st.lists(WORDS, max_size=9))
def test_parse_fast_answers_what_argparse_answers(words: list[str]) -> None:
    fast = lockcmd.parse_fast(words)
    if fast is None:
        return  # argparse decides, as before
    try:
        opts = lockcmd._options(fast)
    except lockcmd._Usage:
        assert _argparse(words) is None
        return
    got = {k: getattr(opts, k) for k in opts.__slots__ if k != "holder"} | {"holder": fast.holder}
    assert got == _argparse(words)


def test_parse_fast_reads_the_plain_forms_and_leaves_the_rest_to_argparse() -> None:
    a = lockcmd.parse_fast(["--ttl", "5s", "n", "--wait=2s", "-q", "--", "sh", "-c", "x"])
    assert a is not None
    assert (a.name, a.ttl, a.wait, a.quiet, a.rest) == (
        "n",
        "5s",
        "2s",
        True,
        ["--", "sh", "-c", "x"],
    )
    for words in (
        ["n", "--"],  # no command
        ["n", "true"],  # no "--"
        ["n", "--tt", "5s", "--", "true"],  # an abbreviation
        ["--help"],
        ["n", "--holder", "-x", "--", "true"],  # a value argparse may read as an option
    ):
        assert lockcmd.parse_fast(words) is None, words


# --------------------------------------------------------------------------- wire

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(JSONISH)
def test_dumps_writes_what_json_dumps_writes(value: Any) -> None:
    assert wire.dumps(value) == json.dumps(value)


@given(JSONISH)
def test_loads_reads_what_json_loads_reads(value: Any) -> None:
    text = json.dumps(value)
    for data in (text.encode(), f" \n{text}\t".encode(), text):
        got = wire.loads(data)
        assert json.dumps(got) == json.dumps(json.loads(data))


@pytest.mark.parametrize("bad", [b"", b"{", b"{} x", b"\xff", b"[1,]", b"nope"])
def test_loads_raises_what_json_raises(bad: bytes) -> None:
    with pytest.raises(ValueError) as ours:
        wire.loads(bad)
    with pytest.raises(ValueError) as theirs:
        json.loads(bad)
    assert type(ours.value) is type(theirs.value) and str(ours.value) == str(theirs.value)


@given(st.text())
def test_seg_and_query_quote_as_urllib(text: str) -> None:
    assert wire.seg(text) == urllib.parse.quote(text, safe="")
    assert wire.query(x=text, fence=7) == "?" + urllib.parse.urlencode(
        [("x", text), ("fence", "7")]
    )


URLS = st.builds(
    lambda scheme, host, port, path: f"{scheme}{host}{port}{path}",
    st.sampled_from(["http://", "https://", "", "ftp://", "HTTP://", " http://"]),
    st.sampled_from(["127.0.0.1", "node-a.example", "Node", "[::1]", "", "a b", "u@h", "h_1"]),
    st.sampled_from(["", ":8100", ":0", ":65535", ":65536", ":", ":x", ":08", ":-1", ":٣"]),
    st.sampled_from(["", "/", "/api/", "/a b", "/%20", "/x?y", "/x#y", "/é", "/a;b", "//x"]),
)


@given(URLS)
def test_split_base_parses_as_urllib(url: str) -> None:
    def outcome(fn: Any) -> Any:
        try:
            return fn(url)
        except ValueError as exc:
            return str(exc)

    assert outcome(wire.split_base) == outcome(wire._split_base_general)


# --------------------------------------------------------------------------- durations

_PART_RE = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h|d)")


def _regex_ms(body: str) -> int | None:
    """The parser durations.py had (a regex), as the oracle: milliseconds or None."""
    pos, num, den = 0, 0, 1
    for match in _PART_RE.finditer(body):
        if match.start() != pos:
            break
        whole, _, frac = match.group(1).partition(".")
        scale = 10 ** len(frac)
        part = (int(whole or "0") * scale + int(frac or "0")) * {
            "ms": 1,
            "s": 1_000,
            "m": 60_000,
            "h": 3_600_000,
            "d": 86_400_000,
        }[match.group(2)]
        num, den = num * scale + part * den, den * scale
        pos = match.end()
    if not body or pos != len(body):
        return None
    q, r = divmod(num, den)
    return q + (1 if 2 * r > den or (2 * r == den and q % 2 == 1) else 0)


@given(st.text(alphabet="0123456789.smhd-x ٣", max_size=10))
def test_durations_parse_as_the_regex_did(text: str) -> None:
    body = text.strip().removeprefix("-")
    expected = _regex_ms(body)
    try:
        got: int | None = parse_duration(text, "w")
    except ConfigError:
        got = None
    if expected is not None and expected > 3650 * 86_400_000:
        expected = None  # too long
    if expected and text.strip().startswith("-"):
        expected = None  # negative
    assert got == expected


# --------------------------------------------------------------------------- spawn


def _wait(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_spawn_starts_cmd_as_popen_would(tmp_path: Path) -> None:
    """Own session, its env and PATH lookup, no inherited descriptor above 2, SIGPIPE and
    the forwarded signals at their defaults (this process ignores SIGPIPE and, here,
    SIGHUP; ignored signals survive exec)."""
    out = tmp_path / "out"
    script = (
        "import os, sys; "
        "print(os.getsid(0) == os.getpid(), os.environ['MARK'], "
        "sorted(int(f) for f in os.listdir('/proc/self/fd') if int(f) > 2), "
        "file=open(sys.argv[1], 'w'))"
    )
    inherited_r, inherited_w = os.pipe()
    os.set_inheritable(inherited_w, True)
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        env = {"MARK": "m", "PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin"}
        pid = lockcmd.spawn([os.path.basename(sys.executable), "-c", script, str(out)], env)
        ign = tmp_path / "ign"
        sh = lockcmd.spawn(["sh", "-c", f"grep SigIgn /proc/$$/status > {ign}"], env)
    finally:
        signal.signal(signal.SIGHUP, old)
        os.close(inherited_r)
        os.close(inherited_w)
    assert _wait(pid) == 0 and _wait(sh) == 0
    session, mark, fds = out.read_text().split(" ", 2)
    assert (session, mark) == ("True", "m")
    assert fds.strip() in ("[3]", "[]")  # at most the listing's own descriptor
    ignored = int(ign.read_text().split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1)) and not ignored & (1 << (signal.SIGHUP - 1))


@pytest.mark.parametrize(
    ("argv", "code"),
    [(["no-such-command-here"], 127), (["/etc/hostname"], 126), (["/no/such/dir/x"], 127)],
)
def test_spawn_raises_the_exec_error_popen_raises(argv: list[str], code: int) -> None:
    with pytest.raises(OSError) as ours:
        lockcmd.spawn(argv, {"PATH": "/usr/bin:/bin"})
    with pytest.raises(OSError) as theirs:
        subprocess.Popen(argv, env={"PATH": "/usr/bin:/bin"})
    assert (ours.value.errno, str(ours.value)) == (theirs.value.errno, str(theirs.value))
    events, _ = _guard(argv)
    assert events[-1]["code"] == code and events[-1]["outcome"] == "spawn_failed"


def _guard(argv: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    ctl_r, ctl_w = os.pipe()
    ev_r, ev_w = os.pipe()
    try:
        done = lockcmd.guardian(
            argv, {"PATH": "/usr/bin:/bin"}, time.monotonic() + 30, 1, ctl_r, ev_w
        )
        os.close(ev_w)
        with os.fdopen(ev_r) as f:
            events = [json.loads(line) for line in f]
    finally:
        os.close(ctl_r)
        os.close(ctl_w)
    return events, done


# --------------------------------------------------------------------------- release


class LockServer:
    """A raw HTTP server for the lock calls: grants at once, answers each DELETE with the
    next of ``deletes`` (status), after ``delete_delay`` s; records when each arrived."""

    def __init__(self, deletes: list[int], delete_delay: float) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.deletes = deletes
        self.delete_delay = delete_delay
        self.seen: list[tuple[str, float]] = []
        self.fence = 40
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            line = data.split(b"\r\n", 1)[0].decode()
            self.seen.append((line, time.monotonic()))
            if line.startswith("DELETE"):
                time.sleep(self.delete_delay)
                status = self.deletes.pop(0) if self.deletes else 200
                body = (
                    b'{"error": {"code": "no_leader", "message": "x"}}' if status == 503 else b"{}"
                )
            else:
                self.fence += 1
                body = json.dumps({"lock": "n", "fence": self.fence, "ttl_ms": 30000}).encode()
                status = 200
            conn.sendall(
                b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % (status, len(body))
                + body
            )

    def close(self) -> None:
        self.sock.close()

    def deletes_seen(self) -> list[float]:
        return [t for line, t in self.seen if line.startswith("DELETE")]


def _lock(url: str, *cmd: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "raftcron", "lock", "n", "--api", url, "--", *cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_exit_code_comes_before_the_release_is_answered_and_the_release_still_happens() -> None:
    # The answer takes 60 s: an exit that waited for it could not come within 45 s of the
    # start, however loaded the machine (the margin is for a slow machine, not a bound).
    srv = LockServer(deletes=[200], delete_delay=60.0)
    try:
        started = time.monotonic()
        p = _lock(srv.url, "sh", "-c", "echo out; exit 3")
        out, err = p.communicate(timeout=90)  # pipes closed: the guardian let go of them
        ended = time.monotonic()
        assert p.returncode == 3, err
        assert out == b"out\n"
        assert ended - started < 45.0  # nobody waited for the release's 60 s answer
        deadline = time.monotonic() + 30
        while not srv.deletes_seen() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(srv.deletes_seen()) == 1  # ... and the release still happened, once
    finally:
        srv.close()


def test_a_release_answered_503_is_retried_by_the_guardian_after_the_exit() -> None:
    srv = LockServer(deletes=[503, 200], delete_delay=0.3)
    try:
        p = _lock(srv.url, "true")
        p.communicate(timeout=30)
        assert p.returncode == 0
        deadline = time.monotonic() + 20
        while len(srv.deletes_seen()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(srv.deletes_seen()) == 2
    finally:
        srv.close()


def test_with_hold_the_lock_process_releases_before_it_exits() -> None:
    srv = LockServer(deletes=[200], delete_delay=1.0)
    try:
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "raftcron",
                "lock",
                "n",
                "--api",
                srv.url,
                "--hold",
                "0.2s",
                "--",
                "true",
            ],
            stderr=subprocess.PIPE,
        )
        _, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        (sent,) = srv.deletes_seen()
        assert time.monotonic() - sent >= 1.0  # it waited for the answer
    finally:
        srv.close()


# --------------------------------------------------------------------------- imports


def test_a_plain_lock_call_imports_neither_enum_nor_re() -> None:
    """The whole fast path, up to the acquire (refused: nothing listens on port 9)."""
    root = str(Path(__file__).resolve().parents[2])
    code = (
        f"import sys; sys.path.insert(0, {root!r}); before = set(sys.modules)\n"
        "from raftcron import entry, lockcmd\n"
        "lockcmd.ACQUIRE_RETRY_S = 0\n"
        "code = entry.lock_fast(['lock', 'n', '--ttl', '5s', '--api', 'http://127.0.0.1:9',"
        " '--', 'true'])\n"
        "bad = {'enum', 're', 'argparse', 'json', 'socket', 'signal', 'subprocess',\n"
        "       'urllib.parse', 'contextlib', 'http.client', 'raftcron.cli', 'typing',\n"
        "       'dataclasses'} & (set(sys.modules) - before)\n"
        "print(sorted(bad)); sys.exit(1 if bad or code != 75 else 0)\n"
    )
    # -I: no site, whose editable-install finder imports re itself
    res = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 0, res.stdout + res.stderr
