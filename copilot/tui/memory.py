"""Keeping the C heap small: fewer malloc arenas, and freed memory given back to the system after
an answer (glibc only; elsewhere both are no-ops).

A question with the local index open loads Chroma's HNSW index and the embedding model, and
both leave large freed buffers behind (temporary copies made while loading, activations, a
second model session for citation support). glibc keeps such memory in its heaps and the
process's resident size stays at its peak; `malloc_trim(0)` hands the free pages back. With the
100k-chunk benchmark index open the app then holds ~475 MiB instead of 640-710 MiB (together with
onnxruntime's arena turned off; bench/results/scale_100k.md).

glibc also gives each thread that allocates under contention its own heap ("arena"), up to 8 per
core, and each keeps its own fragments. The app embeds and extracts pages on worker threads, so
after a few answers with web pages the fragments added up to tens of MiB: embedding from six
threads held 139-170 MiB with the default arenas and 118-120 MiB with two.

And glibc raises its mmap threshold each time it frees a large mmapped block, so after a few
answers the embedder's activations (a few MiB each) are carved out of the heaps, where they
fragment them: checking an answer's citations then took the app up by 20-33 MiB, and 5-10 MiB
of it stayed even after a trim. With the threshold fixed at 128 KiB every block that large is its
own mapping, handed back the moment it is freed: +15 MiB at the peak, nothing left behind
(bench/results/scale_100k.md, "The C heap's mmap threshold").

`tune_malloc` sets both, before the app starts any thread.
"""

from __future__ import annotations

import functools
import sys

# mallopt's parameter numbers in glibc's malloc.h, the environment variable that sets the same
# (the user's choice wins), and our value.
_SETTINGS = (
    (-8, "MALLOC_ARENA_MAX", 2),  # M_ARENA_MAX
    (-3, "MALLOC_MMAP_THRESHOLD_", 128 * 1024),  # M_MMAP_THRESHOLD (a fixed one: no dynamic raise)
)


@functools.cache
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # here, not at import: the app's start does not pay for it

    try:
        return ctypes.CDLL(None)  # the process's own C library
    except OSError:
        return None


def tune_malloc() -> list[str]:
    """Cap glibc's malloc arenas at two and fix its mmap threshold at 128 KiB, each unless the
    user set its environment variable; returns the names of those set. Call it before threads
    start."""
    import os

    libc = _libc()
    mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    if mallopt is None:
        return []
    return [name for param, name, value in _SETTINGS if not os.environ.get(name) and mallopt(param, value)]


@functools.cache
def _malloc_trim():
    import ctypes

    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None  # glibc only (musl has none)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return the C heap's free pages to the system; True when it did so. Takes a few ms on a
    large process: call it from a thread, when nothing is streaming."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
