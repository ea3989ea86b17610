"""Giving freed memory back to the operating system (glibc's allocator; a no-op elsewhere),
and keeping the garbage collector off the long-lived objects.

Why: a compaction reads a whole month into numpy columns and frees them minutes later; a big
ingest body becomes many short-lived Python objects. glibc keeps freed heap memory for reuse and,
after freeing a large mmapped block, raises its mmap threshold up to 32 MiB, so that later
arrays of that size come from the heap and fragment it: the server's RSS after a backfill stayed
at the high-water mark of the compaction. :func:`tune_heap` (``tbpanel serve`` calls it once)
fixes the threshold, so large arrays are always mapped and unmapped, and
:func:`release_free_heap` (after each compaction round) trims what the heap holds free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3
#: Allocations from this size on are mapped on their own (glibc's default before it adapts).
MMAP_THRESHOLD = 1 << 20


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:  # pragma: no cover - not a glibc system
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


_LIBC = _libc()


def tune_heap() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD` (process-wide); False if not glibc."""
    if _LIBC is None:  # pragma: no cover
        return False
    return bool(_LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))


class PausedCollector:
    """``with PausedCollector():`` the cyclic garbage collector is off inside (for work that
    makes many acyclic objects, such as decoding JSON). Another thread may pause it too: whoever
    found it on turns it back on."""

    __slots__ = ("_was_on",)

    def __enter__(self) -> None:
        self._was_on = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self._was_on:
            gc.enable()


def freeze_startup_objects() -> None:
    """Move every object alive now (a started server: modules, Panel/Bokeh, the platform) out
    of the garbage collector's generations, so that its full collections during ingest traverse
    only what was made since (``gc.freeze``)."""
    gc.collect()
    gc.freeze()


def release_free_heap() -> None:
    """Return the free memory at the top and in the middle of the heap to the OS."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
