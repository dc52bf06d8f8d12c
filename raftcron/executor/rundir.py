"""The agent's side of a run's watchdog: the run directory and the channel to it.

Every process run has a directory ``<data_dir>/runs/<fence>-<run id>`` (mode 0700, under
``runs/``, 0700 too). The agent creates it before it spawns the watchdog; the watchdog
(raftcron/executor/watchdog.py, which defines the files and the protocol) listens on a
Unix socket there, writes the job's output there and, when the job has ended, its
result. The agent reads the result, writes ``record.json`` (the completion it is about to
propose) and, once the completion has committed or been refused, removes the directory.
So a directory outlives the agent exactly as long as a run's outcome is not recorded.

* :func:`attach` is the one way to reach a watchdog, for the run's first attach and for a
  re-attach after the agent restarted: connect, send the versioned hello, read the
  answer. Nobody listening (None) means the watchdog has exited: its result is on disk,
  or it died without one.
* ``record.json`` makes a completion that was in flight when the agent stopped exactly
  repeatable: a restarted agent proposes the same command again, which ``apply`` accepts
  as a retry (same fence, status and finish time) instead of refusing it as stale.

Fences rise strictly across the cluster, so the fence alone names a run's directory; the
run id is appended for people reading the directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from raftcron.core.model import OUTPUT_TAIL_BYTES, Run
from raftcron.executor import watchdog as wd

logger = logging.getLogger(__name__)

RUNS_DIR: Final = "runs"
RECORD_NAME: Final = "record.json"
ATTACH_TIMEOUT_S: Final = 10.0  # a hello answered later than this: the watchdog is hung
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._@~-]")


class AttachError(Exception):
    """A watchdog accepted the connection but gave no usable answer."""


def dir_name(run: Run) -> str:
    return f"{run.fence}-{_UNSAFE.sub('_', run.id)}"[:200]


def fence_of(name: str) -> int | None:
    head = name.split("-", 1)[0]
    return int(head) if head.isdigit() else None


class RunDirs:
    """``<data_dir>/runs``: one directory per process run whose outcome is not recorded."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / RUNS_DIR
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        self._doomed: queue.Queue[Path] = queue.Queue()
        self._remover: threading.Thread | None = None

    def path(self, run: Run) -> Path:
        return self.root / dir_name(run)

    def create(self, run: Run) -> Path:
        path = self.path(run)
        path.mkdir(mode=0o700, exist_ok=True)
        return path

    def entries(self) -> list[Path]:
        try:
            return sorted(p for p in self.root.iterdir() if p.is_dir())
        except OSError:
            return []

    def remove(self, path: Path) -> None:
        _remove(path)

    def discard(self, path: Path) -> None:
        """Remove ``path`` soon, on this object's remover thread: the event loop does not
        wait for the file system (in a burst, removing run directories on the loop took
        a third of its time: bench/analysis.md). One left behind when the agent stops is
        found and removed by the next start's sweep (``Executor._sweep``)."""
        if self._remover is None or not self._remover.is_alive():
            self._remover = threading.Thread(
                target=self._remove_loop, name="run dir remover", daemon=True
            )
            self._remover.start()
        self._doomed.put(path)

    def settle(self) -> None:
        """Wait until every directory handed to :meth:`discard` is removed (blocking: call
        it in a thread)."""
        if self._remover is not None and self._remover.is_alive():
            self._doomed.join()

    def _remove_loop(self) -> None:
        while True:
            path = self._doomed.get()
            try:
                _remove(path)
            finally:
                self._doomed.task_done()


def _remove(path: Path) -> None:
    """A run directory holds files only (and the watchdog's socket): unlink them and the
    directory. A file that went meanwhile (a watchdog exiting unlinks its socket) is
    skipped; anything else (a subdirectory, a file written meanwhile) goes through
    ``shutil.rmtree``."""
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
        os.rmdir(path)
    except FileNotFoundError:
        pass  # the directory itself is gone
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


@dataclass(eq=False)
class Channel:
    """An attached watchdog: its answer to our hello and the open connection."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    reply: dict[str, Any]

    async def wait_exit(self) -> dict[str, Any] | None:
        """The exit event, or None if the connection ended without one (the watchdog
        exited: its result, if any, is on disk)."""
        while True:
            try:
                line = await self.reader.readline()
            except (ConnectionError, OSError, ValueError):
                return None
            if not line:
                return None
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict) and msg.get("event") == "exit":
                return msg

    def close(self) -> None:
        """Detach: a watchdog still running keeps its deadline and waits for an agent."""
        self.writer.close()


async def attach(
    run_dir: Path, hello: dict[str, Any], answer_within: float = ATTACH_TIMEOUT_S
) -> Channel | None:
    """Connect to the run's watchdog and say hello (``hello`` adds run, fence, deadline,
    kill). None when nobody listens there; AttachError when the watchdog does not answer
    within ``answer_within`` seconds or refuses us."""
    try:
        with wd.socket_path(str(run_dir)) as path:
            reader, writer = await asyncio.open_unix_connection(path, limit=2**20)
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
        return None
    ok = False
    try:
        msg = {"hello": wd.PROTOCOL, "min": wd.MIN_PROTOCOL, **hello}
        writer.write(json.dumps(msg).encode() + b"\n")
        try:
            async with asyncio.timeout(answer_within):
                await writer.drain()
                line = await reader.readline()
        except TimeoutError:
            raise AttachError(f"no answer to the hello within {answer_within:g}s") from None
        except (ConnectionError, OSError):
            return None  # it exited just now: its result is on disk, if it wrote one
        if not line:
            return None
        try:
            reply = json.loads(line)
        except ValueError:
            raise AttachError(f"not a hello: {line[:200]!r}") from None
        if not isinstance(reply, dict) or "hello" not in reply:
            raise AttachError(f"refused: {reply!r}")
        chosen = reply["hello"]
        if not isinstance(chosen, int) or wd.negotiate(chosen, chosen) is None:
            raise AttachError(f"it chose protocol version {reply['hello']!r}")
        ok = True
        return Channel(reader=reader, writer=writer, reply=reply)
    finally:
        if not ok:
            writer.close()


def read_result(run_dir: Path) -> dict[str, Any] | None:
    return wd.read_result(str(run_dir))


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """The completion this node was about to propose for the run, if it got that far."""
    try:
        data = json.loads((run_dir / RECORD_NAME).read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "status" in data else None


def write_record(run_dir: Path, record: dict[str, Any]) -> None:
    """No fsync: it only has to survive the agent (a power cut ends the lease anyway)."""
    tmp = run_dir / (RECORD_NAME + ".tmp")
    with contextlib.suppress(OSError):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, json.dumps(record).encode())
        finally:
            os.close(fd)
        os.replace(tmp, run_dir / RECORD_NAME)


def output_tail(run_dir: Path) -> str:
    try:
        with (run_dir / wd.OUTPUT_NAME).open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - OUTPUT_TAIL_BYTES))
            data = f.read()
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace")
