"""Process pools that never fork a process whose native thread pools are running.

A forked child inherits the parent's memory but only the forking thread: a lock held by one of
OpenCV's, torch's or a BLAS library's worker threads at that moment stays locked in the child for
ever (seen as decode workers hanging in `cv2.setNumThreads(1)`). Workers therefore start from the
`forkserver`: a clean single-threaded server process, started once, forks them, whatever threads
the caller has started since.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Sequence

START_METHOD = "forkserver"


def pool_context() -> multiprocessing.context.BaseContext:
    """The multiprocessing context every mertk pool uses."""
    return multiprocessing.get_context(START_METHOD)


def process_pool(
    workers: int,
    initializer: Callable[..., Any] | None = None,
    initargs: Sequence[Any] = (),
    preload: Sequence[str] = (),
) -> ProcessPoolExecutor:
    """A pool of `workers` processes started from the fork server.

    `preload` names modules the fork server imports once before forking workers (so each worker
    does not pay the import); they must start no threads at import time.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    context = pool_context()
    if preload:
        context.set_forkserver_preload(list(preload))
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=initializer, initargs=tuple(initargs))
