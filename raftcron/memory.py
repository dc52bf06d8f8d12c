"""Giving freed memory back to the operating system, where the C library allows it.

CPython returns a pymalloc arena (1 MiB) only once every object in it is gone, and glibc's
``free`` keeps most freed heap pages, so a process that briefly held a lot (parsing a
19 MB cluster file, encoding a 40 MB snapshot) keeps that high-water mark as RSS for
good. :func:`trim` asks glibc to hand back every free page (``malloc_trim(0)``); where
there is no glibc (musl, macOS) it does nothing.

``malloc_trim`` runs with the GIL released (a ``ctypes.CDLL`` call), so other threads go
on meanwhile; it takes a few milliseconds per 100 MB of heap.

:func:`short_full_collections` keeps CPython's full (generation 2) collections short in a
process whose replicated state holds hundreds of thousands of objects: see there.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

logger = logging.getLogger(__name__)

_loaded = False
_malloc_trim: Callable[[int], int] | None = None

M_ARENA_MAX: Final = -8  # glibc's malloc.h
MALLOC_ARENAS: Final = 2


def _load() -> Callable[[int], int] | None:
    global _loaded, _malloc_trim
    if not _loaded:
        try:
            import ctypes

            native = getattr(ctypes.CDLL(None), "malloc_trim", None)
            if native is not None:
                native.argtypes = [ctypes.c_size_t]
                native.restype = ctypes.c_int
                _malloc_trim = native
        except (OSError, AttributeError, TypeError):  # no dlopen(NULL), no such symbol
            _malloc_trim = None
        _loaded = True
    return _malloc_trim


def trim() -> bool:
    """Return the C heap's free pages to the OS; False where that is not available."""
    fn = _load()
    if fn is None:
        return False
    try:
        fn(0)
    except Exception:  # never let housekeeping fail the caller
        logger.debug("malloc_trim failed", exc_info=True)
        return False
    return True


def release() -> bool:
    """A full garbage collection, then :func:`trim`. The collection holds the GIL for as
    long as it takes (tens of milliseconds per million objects): call this where a pause
    does no harm (before Raft starts), and :func:`trim` alone elsewhere."""
    gc.collect()
    return trim()


# How long objects frozen after a full collection stay out of the collector's sight before
# one full collection looks at everything again (see short_full_collections).
THAW_EVERY_S: Final = 600.0


class _Freezer:
    """A ``gc.callbacks`` hook: after each full collection, ``gc.freeze()`` (or, once per
    ``thaw_every_s``, ``gc.unfreeze()``)."""

    def __init__(self, thaw_every_s: float, clock: Callable[[], float]) -> None:
        self.thaw_every_s = thaw_every_s
        self.clock = clock
        self.thawed_at = clock()
        self.freezes = 0
        self.thaws = 0

    def __call__(self, phase: str, info: Mapping[str, Any]) -> None:
        if phase != "stop" or info.get("generation") != 2:
            return
        now = self.clock()
        if now - self.thawed_at >= self.thaw_every_s:
            gc.unfreeze()  # the next full collection looks at everything once
            self.thawed_at = now
            self.thaws += 1
        else:
            gc.freeze()
            self.freezes += 1


_freezer: _Freezer | None = None


def short_full_collections(thaw_every_s: float = THAW_EVERY_S) -> None:
    """Move what survived each full garbage collection out of the collector's sight
    (``gc.freeze()``, right after the collection, when every object the collector tracks
    is reachable), so the next full collections only look at objects that became
    long-lived since; once every ``thaw_every_s`` the frozen objects are handed back
    (``gc.unfreeze()``) and the next full collection looks at everything once.

    Why: a full collection holds the GIL for as long as it walks every tracked object
    (100,000 jobs with a run each: ~300,000-550,000 objects, 0.2-0.5 s on 2 busy cores),
    and CPython starts one whenever a quarter as many objects as it saw at the last one
    have survived two young collections: every few seconds while jobs are registered or
    a burst is recorded. Each one stalled the Raft tick thread (elections: a 0.3-0.9 s
    timeout) and the scheduler (bench/analysis.md, 2026-12-08). What it costs: a garbage
    cycle among frozen objects (e.g. a finished leadership term's tasks) is freed at the
    first full collection after the next thaw, at most ``thaw_every_s`` later, instead of
    at the next one. Reference counting frees everything else at once, as before.
    Idempotent; process-wide."""
    global _freezer
    if _freezer is not None:
        _freezer.thaw_every_s = thaw_every_s
        return
    _freezer = _Freezer(thaw_every_s, time.monotonic)
    gc.callbacks.append(_freezer)


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Let glibc's malloc use at most ``arenas`` heaps for all threads
    (``mallopt(M_ARENA_MAX)``, what ``MALLOC_ARENA_MAX`` sets); False where there is no
    glibc. Call it before other threads allocate. An environment variable
    ``MALLOC_ARENA_MAX`` set by the operator wins (this does nothing then).

    Why: glibc gives threads that allocate at the same time heaps of their own (up to 8
    per core), and each keeps its freed memory. An agent's tick thread (every decoded
    entry), snapshot thread (the encoding buffers) and executor threads each had one: with
    100,000 jobs glibc held 192-240 MB of heap of which 37-51 MB was in use, and agents
    ended at 300-380 MB RSS. The same tree with ``MALLOC_ARENA_MAX=2`` ended at 247-274 MB
    after a fresh snapshot (bench/analysis.md, 2026-12-08)."""
    import os

    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        import ctypes

        mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
        if mallopt is None:
            return False
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        return bool(mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError, TypeError):  # no dlopen(NULL), no such symbol
        return False
