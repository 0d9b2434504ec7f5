"""Process-wide settings a run may change for its duration, each scoped: restored when it ends.

- `blas_single_threaded`: BLAS libraries start their own thread per core inside every matrix
  product; a stage that runs its own threads (readers, prefetching labellers, a shard writer)
  would only oversubscribe the cores with them.
- `freed_memory_kept`: glibc hands a large freed block (a block of videos, a shard's arrays)
  back to the system at once, so the next block of the same size faults in fresh pages that the
  kernel zeroes; raising its mmap and trim thresholds keeps them in the heap for reuse. At the
  end the thresholds go back to glibc's defaults and the unused heap is trimmed. Elsewhere than
  glibc it does nothing. Kept because benchmarks/bench_migrate_labels.py measures a gain at LLP
  scale against glibc's defaults in the same run (figures in the README).
"""
from __future__ import annotations

import contextlib
import ctypes
import sys
from typing import Iterator

GLIBC_M_TRIM_THRESHOLD = -1
GLIBC_M_MMAP_THRESHOLD = -3
GLIBC_DEFAULT_THRESHOLD = 128 * 1024  # both thresholds' defaults; fixed (no longer dynamic) once set
KEPT_MMAP_THRESHOLD = 32 << 20  # glibc's maximum on 64-bit
KEPT_TRIM_THRESHOLD = 1 << 30


@contextlib.contextmanager
def blas_single_threaded() -> Iterator[None]:
    """BLAS limited to one thread inside the block (threadpoolctl, installed with scikit-learn)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - without it BLAS keeps its own default
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 - glibc only
    except (OSError, AttributeError):
        return None
    return libc


@contextlib.contextmanager
def freed_memory_kept() -> Iterator[None]:
    """Inside the block, glibc keeps freed large blocks for reuse instead of returning them at once."""
    libc = _glibc()
    if libc is None:
        yield
        return
    libc.mallopt(GLIBC_M_MMAP_THRESHOLD, KEPT_MMAP_THRESHOLD)
    libc.mallopt(GLIBC_M_TRIM_THRESHOLD, KEPT_TRIM_THRESHOLD)
    try:
        yield
    finally:
        libc.mallopt(GLIBC_M_MMAP_THRESHOLD, GLIBC_DEFAULT_THRESHOLD)
        libc.mallopt(GLIBC_M_TRIM_THRESHOLD, GLIBC_DEFAULT_THRESHOLD)
        libc.malloc_trim(0)
