"""Giving freed memory back to the operating system, where the C library allows it.

CPython returns a pymalloc arena (1 MiB) only once every object in it is gone, and glibc's
``free`` keeps most freed heap pages, so a process that briefly held a lot (parsing a
19 MB cluster file, encoding a 40 MB snapshot) keeps that high-water mark as RSS for
good. :func:`trim` asks glibc to hand back every free page (``malloc_trim(0)``); where
there is no glibc (musl, macOS) it does nothing.

``malloc_trim`` runs with the GIL released (a ``ctypes.CDLL`` call), so other threads go
on meanwhile; it takes a few milliseconds per 100 MB of heap.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

_loaded = False
_malloc_trim: Callable[[int], int] | None = None


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
