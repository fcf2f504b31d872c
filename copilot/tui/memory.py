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
threads held 139-170 MiB with the default arenas and 118-120 MiB with two
(`limit_malloc_arenas`, called before the app starts any thread).
"""

from __future__ import annotations

import functools
import sys

M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h


@functools.cache
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # here, not at import: the app's start does not pay for it

    try:
        return ctypes.CDLL(None)  # the process's own C library
    except OSError:
        return None


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (what MALLOC_ARENA_MAX does), unless the user set that variable;
    True when set. Call it before threads start."""
    import os

    libc = _libc()
    mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    if mallopt is None or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))


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
