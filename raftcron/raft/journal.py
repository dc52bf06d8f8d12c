"""Durable storage for pysyncobj: an fsynced Raft journal and off-thread msgpack snapshots.

docs/design.md, "Durability": pysyncobj's own ``FileJournal`` writes through mmap and
never fsyncs, and its meta and dump files are never fsynced either. This module replaces
both.

:class:`DurableJournal`
    An append-only file of CRC-checked records plus a ``.meta`` file for term, vote and commit
    index. ``add`` only writes; :meth:`DurableJournal.sync` makes everything added so far
    durable (one fdatasync). The caller (the node wrapper) must call ``sync()`` before this node
    acknowledges an entry to a leader or counts itself in a majority. ``setCurrentTerm`` is
    durable when it returns. A torn tail (a crash in the middle of an append) is cut off on load.

:func:`install_journal_factory`
    Makes every ``SyncObj`` with a ``journalFile`` use :class:`DurableJournal`.

:class:`SnapshotStore`
    ``serializer`` / ``deserializer`` / ``serializeChecker`` for ``SyncObjConf``. The snapshot is
    captured on the tick thread (cheap) and encoded, written and fsynced on a daemon thread, so
    compaction never stalls the tick thread past an election timeout. pysyncobj only compacts
    the journal after ``checker()`` reports SUCCESS, i.e. after the new snapshot is durable.

All file I/O goes through :class:`FileOps`; :class:`CrashableFileOps` simulates power cuts.
Nothing of ours is ever pickled.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import random
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, overload

import msgpack

from raftcron import memory
from raftcron.clock import monotonic
from raftcron.raft.seam import SERIALIZER_STATE, JournalBase, MemoryJournal, TCPNode
from raftcron.raft.seam import install_journal_factory as _install_factory

logger = logging.getLogger(__name__)

Entry = tuple[bytes, int, int]
"""A journal entry as pysyncobj sees it: (command, log index, term)."""


class JournalError(Exception):
    """The journal or its meta file cannot be used (not a torn tail: refuse to start)."""


class SnapshotError(Exception):
    """A snapshot file is malformed or fails its checksum."""


# --------------------------------------------------------------------------------------------
# File operations


class FileOps:
    """Every file operation the journal and snapshot store perform (real OS calls).

    File descriptors are plain ints, opened with :meth:`open` and only ever passed back to
    the same ``FileOps`` object.
    """

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        return os.open(path, flags | os.O_CLOEXEC, mode)

    def close(self, fd: int) -> None:
        os.close(fd)

    def write(self, fd: int, data: bytes) -> None:
        """Write all of ``data`` (loops over short writes)."""
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def fsync(self, fd: int, *, data_only: bool = False) -> None:
        """fsync, or fdatasync when ``data_only`` (file size changes are still flushed)."""
        if data_only:
            os.fdatasync(fd)
        else:
            os.fsync(fd)

    def truncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)

    def rename(self, src: str, dst: str) -> None:
        os.rename(src, dst)

    def fsync_dir(self, path: str) -> None:
        """fsync the directory ``path`` (makes creations, renames and removals in it durable)."""
        fd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, path: str) -> bytes:
        """The whole content of ``path``."""
        with open(path, "rb") as f:
            return f.read()

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def remove(self, path: str) -> None:
        os.remove(path)


def _dir_of(path: str) -> str:
    return os.path.dirname(os.path.abspath(path))


def write_file_durably(fs: FileOps, path: str, data: bytes, tmp_path: str | None = None) -> int:
    """Replace ``path`` with ``data``: tmp file, fsync, rename, directory fsync.

    Returns the number of fsyncs issued (always 2).
    """
    tmp = tmp_path if tmp_path is not None else path + ".tmp"
    fd = fs.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        fs.write(fd, data)
        fs.fsync(fd)
    finally:
        fs.close(fd)
    fs.rename(tmp, path)
    fs.fsync_dir(_dir_of(path))
    return 2


# --------------------------------------------------------------------------------------------
# Crash simulation


@dataclass(slots=True)
class _SimFile:
    ino: int
    durable: bytearray  # content as of the last fsync (what a power cut leaves)
    # True when the file may have changed below len(durable) since the last fsync, so the
    # next fsync must read it whole; otherwise fsync reads only the appended tail.
    rewritten: bool = True


class CrashableFileOps(FileOps):
    """Real files, plus a model of what a power cut would leave; :meth:`crash` applies it.

    The model is strict POSIX: file content is durable only up to the last ``fsync`` of that
    file; a created, renamed or removed name is durable only after ``fsync_dir`` of its
    directory. ``crash()`` closes every open descriptor (handed-out descriptors are virtual
    and never reused, so objects from before the crash get EBADF instead of writing into a
    new file), rewrites every known file to its durable content, re-creates durable names
    that were renamed over or removed, and deletes names that were never made durable.

    Files that already exist when a directory is first touched count as durable. Files
    created or replaced behind this object's back (e.g. pysyncobj writing an install-snapshot
    transfer) are tracked once seen and treated as having no durable content until fsynced
    through this object. Hard links are restored as independent files.

    ``real_fsync=False`` (default) skips the real fsync syscalls: tests stay fast and the
    simulated durability is what counts. Thread-safe.
    """

    def __init__(self, *, real_fsync: bool = False) -> None:
        self.real_fsync = real_fsync
        self.crashes = 0
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._vfds = itertools.count(1_000_000)
        self._fds: dict[int, tuple[int, int]] = {}  # virtual fd -> (real fd, file id)
        self._files: dict[int, _SimFile] = {}
        self._names: dict[str, int] = {}  # current name -> file id, as far as we know
        self._durable_names: dict[str, int] = {}  # name -> file id after a power cut
        self._dirs: set[str] = set()

    # -- model helpers (lock held)

    def _new_file(self, ino: int, durable: bytes) -> int:
        fid = next(self._ids)
        self._files[fid] = _SimFile(ino=ino, durable=bytearray(durable))
        return fid

    def _touch_dir(self, directory: str) -> None:
        if directory in self._dirs:
            return
        self._dirs.add(directory)
        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            if path in self._names or os.path.islink(path) or not os.path.isfile(path):
                continue
            with open(path, "rb") as f:
                content = f.read()
            fid = self._new_file(os.stat(path).st_ino, content)
            self._names[path] = fid
            self._durable_names[path] = fid

    def _resolve(self, path: str, ino: int) -> int:
        """The file id now behind ``path`` (a new, non-durable one if replaced externally)."""
        fid = self._names.get(path)
        if fid is None or self._files[fid].ino != ino:
            fid = self._new_file(ino, b"")
            self._names[path] = fid
        return fid

    def _real_fd(self, fd: int) -> tuple[int, int]:
        try:
            return self._fds[fd]
        except KeyError:
            raise OSError(errno.EBADF, "bad (or pre-crash) file descriptor", str(fd)) from None

    @staticmethod
    def _read_fd(real: int, offset: int = 0) -> bytes:
        size = os.fstat(real).st_size
        chunks: list[bytes] = []
        while offset < size:
            chunk = os.pread(real, size - offset, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)

    # -- FileOps

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        path = os.path.abspath(path)
        with self._lock:
            self._touch_dir(os.path.dirname(path))
            if flags & os.O_ACCMODE == os.O_WRONLY:  # fsync() reads the file back
                flags = (flags & ~os.O_ACCMODE) | os.O_RDWR
            real = os.open(path, flags | os.O_CLOEXEC, mode)
            fid = self._resolve(path, os.fstat(real).st_ino)
            vfd = next(self._vfds)
            self._fds[vfd] = (real, fid)
            return vfd

    def close(self, fd: int) -> None:
        with self._lock:
            real, _ = self._real_fd(fd)
            del self._fds[fd]
            os.close(real)

    def write(self, fd: int, data: bytes) -> None:
        with self._lock:
            real, fid = self._real_fd(fd)
            sim = self._files[fid]
            if os.lseek(real, 0, os.SEEK_CUR) < len(sim.durable):
                sim.rewritten = True
            super().write(real, data)

    def fsync(self, fd: int, *, data_only: bool = False) -> None:
        with self._lock:
            real, fid = self._real_fd(fd)
            if self.real_fsync:
                super().fsync(real, data_only=data_only)
            sim = self._files[fid]
            if sim.rewritten:
                sim.durable = bytearray(self._read_fd(real))
                sim.rewritten = False
            else:  # appended since the last fsync: read only the tail
                sim.durable += self._read_fd(real, len(sim.durable))

    def truncate(self, fd: int, length: int) -> None:
        with self._lock:
            real, fid = self._real_fd(fd)
            self._files[fid].rewritten = True
            os.ftruncate(real, length)

    def rename(self, src: str, dst: str) -> None:
        src, dst = os.path.abspath(src), os.path.abspath(dst)
        with self._lock:
            self._touch_dir(os.path.dirname(src))
            self._touch_dir(os.path.dirname(dst))
            fid = self._resolve(src, os.stat(src).st_ino)
            os.rename(src, dst)
            self._names[dst] = fid
            if not os.path.lexists(src):  # rename between two links of one inode is a no-op
                self._names.pop(src, None)

    def fsync_dir(self, path: str) -> None:
        directory = os.path.abspath(path)
        with self._lock:
            self._touch_dir(directory)
            if self.real_fsync:
                super().fsync_dir(directory)
            for name in set(self._names) | set(self._durable_names):
                if os.path.dirname(name) != directory:
                    continue
                if os.path.lexists(name):
                    self._durable_names[name] = self._resolve(name, os.stat(name).st_ino)
                else:
                    self._durable_names.pop(name, None)
                    self._names.pop(name, None)

    def read(self, path: str) -> bytes:
        path = os.path.abspath(path)
        with self._lock:
            self._touch_dir(os.path.dirname(path))
            return super().read(path)

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def remove(self, path: str) -> None:
        path = os.path.abspath(path)
        with self._lock:
            self._touch_dir(os.path.dirname(path))
            os.remove(path)
            self._names.pop(path, None)

    # -- inspection and the power cut

    def durable_content(self, path: str) -> bytes | None:
        """What ``path`` would contain after a crash now (None: it would not exist)."""
        path = os.path.abspath(path)
        with self._lock:
            fid = self._durable_names.get(path)
            return None if fid is None else bytes(self._files[fid].durable)

    def power_cut(self) -> None:
        """:meth:`crash` now and keep the lock: any later call on any thread blocks forever.

        For a process about to exit (the chaos suite's power loss): nothing written after
        the cut can reach the files.
        """
        self._lock.acquire()  # never released, on purpose
        self.crash()

    def crash(self, rng: random.Random | None = None) -> None:
        """Simulate a power cut: every file goes back to what was durable.

        With ``rng``, a file whose current content extends its durable content keeps a random
        prefix of the un-fsynced extension (a torn tail), as a real disk may.
        """
        with self._lock:
            for real, _ in self._fds.values():
                with contextlib.suppress(OSError):
                    os.close(real)
            self._fds.clear()
            restored: dict[str, bytes] = {}
            for name in set(self._names) | set(self._durable_names):
                fid = self._durable_names.get(name)
                if fid is None:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(name)
                    continue
                content = bytes(self._files[fid].durable)
                if rng is not None and os.path.isfile(name):
                    with open(name, "rb") as f:
                        current = f.read()
                    if len(current) > len(content) and current.startswith(content):
                        keep = rng.randint(0, len(current) - len(content))
                        content = current[: len(content) + keep]
                restored[name] = content
            for name, content in restored.items():
                with contextlib.suppress(FileNotFoundError):
                    os.remove(name)  # do not write through a hard link into another name
                with open(name, "wb") as f:
                    f.write(content)
            self._files.clear()
            self._names.clear()
            self._durable_names.clear()
            for name, content in restored.items():
                fid = self._new_file(os.stat(name).st_ino, content)
                self._names[name] = fid
                self._durable_names[name] = fid
            self.crashes += 1


# --------------------------------------------------------------------------------------------
# The journal

_MAGIC: Final = b"RCJRNL\r\n"
_FORMAT_VERSION: Final = 1
_HEADER: Final = struct.Struct("<8sII")  # magic, format version, reserved
_RECORD: Final = struct.Struct("<IIQQ")  # command length, crc32(idx, term, command), idx, term
_IDX_TERM: Final = struct.Struct("<QQ")
_MAX_COMMAND: Final = 1 << 30
_META_VERSION: Final = 1

_HEADER_BYTES: Final = _HEADER.pack(_MAGIC, _FORMAT_VERSION, 0)


def _encode_record(command: bytes, idx: int, term: int) -> bytes:
    idx_term = _IDX_TERM.pack(idx, term)
    crc = zlib.crc32(command, zlib.crc32(idx_term))
    return struct.pack("<II", len(command), crc) + idx_term + command


class DurableJournal(JournalBase):
    """pysyncobj's journal interface on an fsynced, CRC-checked, append-only file.

    Not thread-safe: pysyncobj calls it from the tick thread only (and constructs it in the
    thread that builds the SyncObj). ``sync()`` must be called from the tick thread too.

    ``fsync_count`` counts every fsync/fdatasync this journal issued, directory fsyncs and
    meta writes included.
    """

    def __init__(self, path: str, fs: FileOps | None = None) -> None:
        self.path = path
        self.meta_path = path + ".meta"
        self.fsync_count = 0
        self._fs = fs if fs is not None else FileOps()
        self._entries: list[Entry] = []
        self._offsets: list[int] = []  # file offset of each entry's record
        self._bytes = 0  # the commands' total size (held in memory, see ``command_bytes``)
        self._end = _HEADER.size
        self._dirty = False
        self._fd: int | None = None
        self._failed: BaseException | None = None
        self._term = 0
        self._voted_for: Any = None
        self._commit = 1
        self._saved_commit = 1
        self._load_meta()
        self._load()
        if self._entries and self._commit > self._entries[-1][1]:
            logger.warning(
                "journal %s: stored commit index %d is past the last entry %d; clamping",
                path,
                self._commit,
                self._entries[-1][1],
            )
            self._commit = self._entries[-1][1]

    # -- loading

    def _load_meta(self) -> None:
        if not self._fs.exists(self.meta_path):
            return
        raw = self._fs.read(self.meta_path)
        try:
            meta = msgpack.unpackb(raw, raw=False)
        except Exception as exc:
            raise JournalError(f"{self.meta_path}: unreadable meta file: {exc}") from exc
        if not isinstance(meta, dict) or meta.get("v") != _META_VERSION:
            raise JournalError(f"{self.meta_path}: unknown meta format")
        term, commit = meta.get("term"), meta.get("commit")
        voted_for = meta.get("voted_for")
        if not isinstance(term, int) or not isinstance(commit, int):
            raise JournalError(f"{self.meta_path}: malformed meta file")
        if voted_for is not None and not isinstance(voted_for, str | int):
            raise JournalError(f"{self.meta_path}: malformed votedFor")
        self._term, self._voted_for, self._commit = term, voted_for, commit
        self._saved_commit = commit

    def _load(self) -> None:
        fs = self._fs
        data = fs.read(self.path) if fs.exists(self.path) else b""
        if not data:
            # New journal (an empty file cannot hold anything acknowledged either).
            self.fsync_count += write_file_durably(fs, self.path, _HEADER_BYTES)
            self._fd = fs.open(self.path, os.O_WRONLY | os.O_APPEND)
            return
        if len(data) < _HEADER.size:
            raise JournalError(f"{self.path}: not a raftcron journal (short header)")
        magic, version, _ = _HEADER.unpack_from(data, 0)
        if magic != _MAGIC:
            raise JournalError(f"{self.path}: not a raftcron journal (bad magic {magic!r})")
        if version != _FORMAT_VERSION:
            raise JournalError(f"{self.path}: unsupported journal format version {version}")

        pos = _HEADER.size
        size = len(data)
        problem = ""
        view = memoryview(data)
        while pos < size:
            if pos + _RECORD.size > size:
                problem = "short record header"
                break
            length, crc, idx, term = _RECORD.unpack_from(data, pos)
            end = pos + _RECORD.size + length
            if length > _MAX_COMMAND or end > size:
                problem = "short record"
                break
            if zlib.crc32(view[pos + 8 : end]) != crc:
                problem = "checksum mismatch"
                break
            if self._entries and idx != self._entries[-1][1] + 1:
                raise JournalError(
                    f"{self.path}: record at offset {pos} has index {idx} after "
                    f"{self._entries[-1][1]} (valid checksum: not a torn write)"
                )
            self._entries.append((bytes(view[pos + _RECORD.size : end]), idx, term))
            self._offsets.append(pos)
            self._bytes += length
            pos = end
        self._end = pos
        self._fd = fs.open(self.path, os.O_WRONLY | os.O_APPEND)
        if pos < size:
            logger.warning(
                "journal %s: %s at offset %d; truncating %d trailing bytes "
                "(a torn tail after a crash is normal)",
                self.path,
                problem,
                pos,
                size - pos,
            )
            fs.truncate(self._fd, pos)
            fs.fsync(self._fd)
            self.fsync_count += 1

    # -- durability

    def sync(self) -> None:
        """Make every entry added so far durable (fdatasync, only if something is pending).

        Raises :class:`JournalError` if the journal has failed: after a failed fsync the
        kernel may have dropped the dirty pages, so nothing may be acknowledged any more.
        """
        if self._failed is not None:
            raise JournalError(f"{self.path}: journal failed earlier: {self._failed}")
        if not self._dirty or self._fd is None:
            return
        try:
            self._fs.fsync(self._fd, data_only=True)
        except BaseException as exc:
            raise self._fail(exc) from exc
        self.fsync_count += 1
        self._dirty = False

    @property
    def failed(self) -> BaseException | None:
        """The I/O error that made this journal unusable (then restart the process)."""
        return self._failed

    def _fail(self, exc: BaseException) -> JournalError:
        # Not logged here: the node reports a failed journal in one CRITICAL line (the
        # file and the fix) and stops (raftcron/raft/node.py, _Replica.fatal).
        if self._failed is None:
            self._failed = exc
        return JournalError(f"{self.path}: journal I/O failed: {exc}")

    def refuse_writes(self, exc: BaseException) -> None:
        """Fail the journal for ``exc`` (another storage failure of this node): nothing is
        written, synced or acknowledged from it any more."""
        self._fail(exc)

    @property
    def command_bytes(self) -> int:
        """The total size of the commands this journal holds (in memory, as pysyncobj's
        log: until a snapshot lets them go)."""
        return self._bytes

    @property
    def dirty(self) -> bool:
        """True while entries have been added but not yet synced."""
        return self._dirty

    def _require_open(self) -> int:
        if self._failed is not None:
            raise JournalError(f"{self.path}: journal failed earlier: {self._failed}")
        if self._fd is None:
            raise JournalError(f"{self.path}: journal is closed")
        return self._fd

    def _rewrite(self, entries: list[Entry]) -> None:
        """Atomically replace the file with ``entries`` (tmp, fsync, rename, dir fsync)."""
        fd = self._require_open()
        parts = [_HEADER_BYTES]
        offsets: list[int] = []
        pos = _HEADER.size
        for command, idx, term in entries:
            record = _encode_record(command, idx, term)
            offsets.append(pos)
            parts.append(record)
            pos += len(record)
        try:
            self.fsync_count += write_file_durably(self._fs, self.path, b"".join(parts))
            self._fs.close(fd)
            self._fd = None
            self._fd = self._fs.open(self.path, os.O_WRONLY | os.O_APPEND)
        except BaseException as exc:
            raise self._fail(exc) from exc
        self._entries = entries
        self._offsets = offsets
        self._bytes = sum(len(e[0]) for e in entries)
        self._end = pos
        self._dirty = False

    def _write_meta(self, commit: int) -> None:
        meta = {
            "v": _META_VERSION,
            "term": self._term,
            "voted_for": self._voted_for,
            "commit": commit,
        }
        try:
            self.fsync_count += write_file_durably(
                self._fs, self.meta_path, msgpack.packb(meta, use_bin_type=True)
            )
        except BaseException as exc:
            raise self._fail(exc) from exc
        self._saved_commit = commit

    def _store_commit(self) -> None:
        """Store the current commit index; the journal is synced first so it never runs ahead."""
        self.sync()
        self._write_meta(self._commit)

    # -- pysyncobj Journal interface

    def add(self, command: bytes, idx: int, term: int) -> None:
        fd = self._require_open()
        command = bytes(command)
        idx, term = int(idx), int(term)
        record = _encode_record(command, idx, term)
        try:
            self._fs.write(fd, record)
        except BaseException as exc:
            # Never leave a partial record in front of later ones: cut it off. Either way
            # the journal has failed: an entry it cannot append cannot be acknowledged,
            # and going on would only fail again on every entry (a full disk stays full).
            with contextlib.suppress(BaseException):
                self._fs.truncate(fd, self._end)
            raise self._fail(exc) from exc
        self._entries.append((command, idx, term))
        self._offsets.append(self._end)
        self._bytes += len(command)
        self._end += len(record)
        self._dirty = True

    def clear(self) -> None:
        self._rewrite([])

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        """Drop list positions ``>= entryFrom`` (ftruncate + fsync)."""
        start = slice(entryFrom, None).indices(len(self._entries))[0]
        if start >= len(self._entries):
            return
        fd = self._require_open()
        offset = self._offsets[start]
        try:
            self._fs.truncate(fd, offset)
            self._fs.fsync(fd)
        except BaseException as exc:
            raise self._fail(exc) from exc
        self.fsync_count += 1
        self._bytes -= sum(len(e[0]) for e in self._entries[start:])
        del self._entries[start:]
        del self._offsets[start:]
        self._end = offset
        self._dirty = False

    def deleteEntriesTo(self, entryTo: int) -> None:
        """Drop list positions ``< entryTo`` (rewrite the file atomically)."""
        start = slice(entryTo, None).indices(len(self._entries))[0]
        if start <= 0:
            return
        self._rewrite(self._entries[start:])

    @overload
    def __getitem__(self, item: int) -> Entry: ...

    @overload
    def __getitem__(self, item: slice) -> list[Entry]: ...

    def __getitem__(self, item: int | slice) -> Entry | list[Entry]:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def close(self) -> None:
        """Close the journal (pysyncobj's ``_destroy``); pending entries and the commit
        index are made durable first."""
        if self._fd is None:
            return
        try:
            if self._failed is None:
                self.sync()
                if self._commit != self._saved_commit:
                    self._store_commit()
        finally:
            if self._fd is not None:
                self._fs.close(self._fd)
                self._fd = None

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        self._commit = int(raftCommitIndex)

    def getRaftCommitIndex(self) -> int:
        return self._commit

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:
        """Store term and vote durably before returning (Raft: before any vote goes out)."""
        term = int(term)
        self._require_open()
        if term == self._term and votedForNodeId == self._voted_for:
            return  # already durable
        self._term, self._voted_for = term, votedForNodeId
        # Keep the stored commit index (the journal may hold unsynced entries now).
        self._write_meta(self._saved_commit)

    def getCurrentTerm(self) -> int:
        return self._term

    def getVotedForNodeId(self) -> Any:
        return self._voted_for

    def onOneSecondTimer(self) -> None:
        """Store a changed commit index (journal synced first, so it never runs ahead)."""
        if self._fd is None or self._commit == self._saved_commit:
            return
        self._store_commit()


def _create_journal(journalFile: str | None = None) -> Any:
    if journalFile is None:
        return MemoryJournal()
    return DurableJournal(journalFile, _factory_fs)


_factory_fs: FileOps | None = None


def install_journal_factory(fs: FileOps | None = None) -> None:
    """Make pysyncobj build a :class:`DurableJournal` for every ``journalFile`` (idempotent).

    ``fs`` is used by every journal created from then on (None: the real OS); tests pass a
    :class:`CrashableFileOps`. Call before constructing the SyncObj.
    """
    global _factory_fs
    _factory_fs = fs
    _install_factory(_create_journal)


# --------------------------------------------------------------------------------------------
# Snapshots

_SNAP_MAGIC: Final = b"RCSNAP\r\n"
_SNAP_HEADER: Final = struct.Struct("<8sQI")  # magic, payload length, crc32(payload)
_SNAP_VERSION: Final = 1


def encode_snapshot(last: Entry, prev: Entry, cluster: list[str], state: bytes) -> bytes:
    payload = msgpack.packb(
        {
            "v": _SNAP_VERSION,
            "entries": [list(last), list(prev)],
            "cluster": cluster,
            "state": state,
        },
        use_bin_type=True,
    )
    return _SNAP_HEADER.pack(_SNAP_MAGIC, len(payload), zlib.crc32(payload)) + payload


def _entry(value: Any) -> Entry:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 3
        or not isinstance(value[0], bytes)
        or not isinstance(value[1], int)
        or not isinstance(value[2], int)
    ):
        raise SnapshotError(f"malformed entry {value!r:.100}")
    return (value[0], value[1], value[2])


def decode_snapshot(blob: bytes) -> tuple[Entry, Entry, list[str], bytes]:
    """(last applied entry, previous entry, cluster addresses, state) from a snapshot file."""
    if len(blob) < _SNAP_HEADER.size:
        raise SnapshotError("snapshot too short")
    magic, length, crc = _SNAP_HEADER.unpack_from(blob, 0)
    if magic != _SNAP_MAGIC:
        raise SnapshotError(f"not a raftcron snapshot (magic {magic!r})")
    payload = memoryview(blob)[_SNAP_HEADER.size :]
    if len(payload) != length:
        raise SnapshotError(f"snapshot length {len(payload)} != {length}")
    if zlib.crc32(payload) != crc:
        raise SnapshotError("snapshot checksum mismatch")
    try:
        doc = msgpack.unpackb(payload, raw=False)
    except Exception as exc:
        raise SnapshotError(f"snapshot payload unreadable: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("v") != _SNAP_VERSION:
        raise SnapshotError("unknown snapshot format")
    entries, cluster, state = doc.get("entries"), doc.get("cluster"), doc.get("state")
    if not isinstance(entries, list) or len(entries) != 2:
        raise SnapshotError("malformed snapshot entries")
    if not isinstance(cluster, list) or not all(isinstance(a, str) for a in cluster):
        raise SnapshotError("malformed snapshot cluster")
    if not isinstance(state, bytes):
        raise SnapshotError("malformed snapshot state")
    return _entry(entries[0]), _entry(entries[1]), cluster, state


def snapshot_file_problem(path: str, tail: bytes = b"") -> str | None:
    """Why the bytes of ``path`` followed by ``tail`` are not one whole snapshot (no
    header, a length or checksum that does not match), or None when they are. Reads the
    file in pieces (an installed snapshot is checked before it replaces the local one)."""
    head = b""
    crc, size, want = 0, 0, 0
    length = -1
    try:
        with open(path, "rb") as f:
            chunks: Iterator[bytes] = iter(lambda: f.read(1 << 20), b"")
            for chunk in itertools.chain(chunks, (tail,)):
                if length < 0:
                    head += chunk
                    if len(head) < _SNAP_HEADER.size:
                        continue
                    magic, length, want = _SNAP_HEADER.unpack_from(head, 0)
                    if magic != _SNAP_MAGIC:
                        return f"not a raftcron snapshot (magic {magic!r})"
                    chunk = head[_SNAP_HEADER.size :]
                crc = zlib.crc32(chunk, crc)
                size += len(chunk)
    except OSError as exc:
        return f"unreadable: {exc}"
    if length < 0:
        return "snapshot too short"
    if size != length:
        return f"snapshot length {size} != {length}"
    if crc != want:
        return "snapshot checksum mismatch"
    return None


def snapshot_last_entry(prefix: bytes) -> tuple[int, int] | None:
    """(index, term) of the last applied entry of a snapshot, read from the first bytes
    of its file (a leader sends a snapshot in pieces), or None if they do not hold it."""
    if len(prefix) < _SNAP_HEADER.size:
        return None
    magic, _, _ = _SNAP_HEADER.unpack_from(prefix, 0)
    if magic != _SNAP_MAGIC:
        return None
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(memoryview(prefix)[_SNAP_HEADER.size :])
    try:
        for _ in range(unpacker.read_map_header()):
            if unpacker.unpack() != "entries":
                unpacker.skip()
                continue
            entries = unpacker.unpack()
            if not isinstance(entries, list) or len(entries) != 2:
                return None
            last = _entry(entries[0])
            return last[1], last[2]
    except (msgpack.OutOfData, msgpack.UnpackException, ValueError, SnapshotError):
        return None
    return None


class _Job:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self.started = monotonic()


class SnapshotStore:
    """Snapshot hooks for ``SyncObjConf(serializer=..., deserializer=..., serializeChecker=...)``.

    ``path`` must equal the conf's ``fullDumpFile``. ``capture()`` runs on the tick thread,
    where the state is exactly the last applied entry's; it must be cheap and return a closure
    that produces the state bytes, which runs on a daemon thread. ``restore(state_bytes)`` runs
    on the tick thread, at startup and whenever a leader installs a snapshot on this node; it
    must replace the whole state.

    How the pysyncobj 0.3.17 side works (``serializer.py``, ``syncobj.py``):

    * ``Serializer.serialize`` calls ``serializer(fullDumpFile + ".tmp", (last, prev, cluster))``
      and then immediately ``os.rename(tmp, fullDumpFile)`` inside a ``try/except Exception``
      that only sets an internal pid to -2 (silently). When ``serializeChecker`` is set,
      ``checkSerializing`` reports *only* the checker's status and resets that pid on
      SUCCESS/FAILED, so a failing rename is harmless. We therefore make sure the ``.tmp``
      name never exists when ``serializer`` returns: the rename always fails and can never
      replace the snapshot our thread wrote. (Hard-linking the old snapshot to ``.tmp`` to
      make the rename a no-op would race: if our thread renamed the new snapshot into place
      before pysyncobj's rename ran, that rename would put the old snapshot back while the
      checker still reported SUCCESS and the journal got compacted.)
    * Until the checker has reported SUCCESS or FAILED after a serialize, pysyncobj starts no
      other compaction and streams no snapshot to lagging followers (``getTransmissionData``
      returns None while the pid is non-zero). Every ``serializer`` call therefore leaves a
      job whose outcome the checker reports exactly once, even when ``capture`` raises.
    * The journal is compacted (``deleteEntriesTo``) only on SUCCESS, which we report after
      the snapshot file and its directory entry are fsynced.
    """

    def __init__(
        self,
        path: str,
        capture: Callable[[], Callable[[], bytes]],
        restore: Callable[[bytes], None],
        fs: FileOps | None = None,
    ) -> None:
        self.path = path
        self._capture = capture
        self._restore = restore
        self._fs = fs if fs is not None else FileOps()
        self._lock = threading.Lock()
        self._job: _Job | None = None
        self._last_thread: threading.Thread | None = None
        self.snapshots_written = 0
        self.snapshots_failed = 0
        self.last_error: BaseException | None = None
        # The I/O error of the last snapshot that could not be written: fatal to the node
        # (its journal could never be compacted again; docs/operations.md, "Health").
        self.write_error: OSError | None = None
        self.last_write_seconds: float | None = None
        self.loaded_entry: Entry | None = None
        self.load_error: BaseException | None = None
        # Called after a snapshot's state is restored: the Raft configuration to take
        # instead of the snapshot's (addresses, this replica's included), or None to keep
        # it. raftcron/raft/node.py: the cluster file's until the membership is seeded.
        self.cluster_override: Callable[[], list[str] | None] = lambda: None

    @property
    def serializing(self) -> bool:
        """True from ``serializer`` until the checker has reported the outcome."""
        with self._lock:
            return self._job is not None

    # -- serializer (tick thread)

    def serializer(self, tmpFile: str, data: Any) -> None:
        job = _Job()
        with self._lock:
            previous = self._last_thread
            self._job = job
        try:
            if tmpFile != self.path + ".tmp":
                raise SnapshotError(
                    f"SnapshotStore path {self.path!r} does not match fullDumpFile ({tmpFile!r})"
                )
            if self._fs.exists(tmpFile):
                self._fs.remove(tmpFile)  # see class docstring: pysyncobj's rename must fail
            last_raw, prev_raw, nodes = data
            last, prev = _entry(tuple(last_raw)), _entry(tuple(prev_raw))
            cluster = sorted(str(getattr(node, "id", node)) for node in nodes)
            produce = self._capture()
        except Exception as exc:
            job.error = exc
            job.done.set()
            return
        thread = threading.Thread(
            target=self._write,
            args=(job, previous, last, prev, cluster, produce),
            name="raftcron-snapshot",
            daemon=True,
        )
        job.thread = thread
        with self._lock:
            self._last_thread = thread
        thread.start()

    def _write(
        self,
        job: _Job,
        previous: threading.Thread | None,
        last: Entry,
        prev: Entry,
        cluster: list[str],
        produce: Callable[[], bytes],
    ) -> None:
        try:
            if previous is not None:
                previous.join()  # never let an older snapshot land after a newer one
            self._write_blob(last, prev, cluster, produce)
        except BaseException as exc:
            job.error = exc
            if isinstance(exc, OSError):
                self.write_error = exc
        finally:
            job.done.set()
        # Encoding held about 2.5 times the state for a moment; glibc keeps most of the
        # freed pages unless asked (RSS grew with every snapshot before this).
        memory.trim()

    def _write_blob(
        self, last: Entry, prev: Entry, cluster: list[str], produce: Callable[[], bytes]
    ) -> None:
        state = bytes(produce())
        blob = encode_snapshot(last, prev, cluster, state)
        del state
        write_file_durably(self._fs, self.path, blob, tmp_path=self.path + ".rc-writing")

    # -- checker (tick thread)

    def checker(self) -> int:
        with self._lock:
            job = self._job
            if job is None:
                return int(SERIALIZER_STATE.NOT_SERIALIZING)
            if not job.done.is_set():
                return int(SERIALIZER_STATE.SERIALIZING)
            self._job = None
        elapsed = monotonic() - job.started
        if job.error is not None:
            self.snapshots_failed += 1
            self.last_error = job.error
            if not isinstance(job.error, OSError):  # (an I/O error: the node reports it)
                logger.error(
                    "snapshot %s failed after %.3fs", self.path, elapsed, exc_info=job.error
                )
            return int(SERIALIZER_STATE.FAILED)
        self.snapshots_written += 1
        self.last_write_seconds = elapsed
        return int(SERIALIZER_STATE.SUCCESS)

    # -- deserializer (tick thread; startup and install snapshot)

    def deserializer(self, fileName: str) -> tuple[Entry, Entry, set[Any]]:
        """Verify, make durable, restore; return (last, prev, cluster) for pysyncobj.

        pysyncobj swallows (and only logs) exceptions from here: check ``load_error``.
        """
        try:
            last, prev, cluster, state = decode_snapshot(self._fs.read(fileName))
            # An installed snapshot was written by pysyncobj without fsync, and pysyncobj
            # clears the journal right after we return: make the file durable first.
            fd = self._fs.open(fileName, os.O_RDONLY)
            try:
                self._fs.fsync(fd)
            finally:
                self._fs.close(fd)
            self._fs.fsync_dir(_dir_of(fileName))
            self._restore(state)
            del state
        except Exception as exc:
            self.load_error = exc
            logger.error("cannot load snapshot %s: %s", fileName, exc)
            raise
        memory.trim()  # the snapshot's bytes and what decoding them left behind
        self.load_error = None
        self.loaded_entry = last
        override = self.cluster_override()
        if override is not None:
            cluster = override
        nodes: set[Any] = {TCPNode(address) for address in cluster}
        return last, prev, nodes
