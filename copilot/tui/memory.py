"""Giving freed memory back to the system after an answer (glibc only; elsewhere a no-op).

A question with the local index open loads Chroma's HNSW index and the embedding model, and
both leave large freed buffers behind (temporary copies made while loading, activations, a
second model session for citation support). glibc keeps such memory in its heaps and the
process's resident size stays at its peak; `malloc_trim(0)` hands the free pages back. With the
100k-chunk benchmark index open the app then holds ~475 MiB instead of 640-710 MiB (together with
onnxruntime's arena turned off; bench/results/scale_100k.md).
"""

from __future__ import annotations

import functools
import sys


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # here, not at import: the app's start does not pay for it

    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own C library; glibc only (musl has none)
    except (OSError, AttributeError):
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
