"""How Uni-MER's pass 1 runs: chunks of samples measured in worker processes (or here), each
chunk's results kept on disk so that an interrupted build resumes where it stopped.

The method is `mertk.unimer.measure.measure_chunk`, a plain function of a chunk of samples;
this module only decides where it runs:
  * workers come from `process_pool` (fork server: a worker never inherits a running OpenCV,
    torch or BLAS thread pool); they share the dlib models the fork server loaded (else each
    loads them in its initialiser) and run OpenCV single-threaded (one process per core, and
    the flow bit-identical from run to run);
  * in this process, a chunk runs with OpenCV single-threaded too, restored afterwards;
  * chunk i is always samples[i*size:(i+1)*size], so results do not depend on the number of
    workers; its pickle under the cache folder is reused while its inputs (frame files by name,
    size and mtime) and parameters are unchanged.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import threading
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import cv2

from mertk.console import progress_bar
from mertk.corpora.casme2 import MerSample
from mertk.execution.pools import process_pool
from mertk.face import load_models
from mertk.shards.io import write_bytes_atomic
from mertk.unimer.measure import measure_chunk
from mertk.unimer.parameters import UnimerParameters

# Imported once by the fork server, so that the workers it forks start with them and with the
# default face models loaded. "__main__": the program's main module (the `mertk` script) is
# imported there once too, instead of by every worker.
WORKER_MODULES = ("__main__", "mertk.execution.measure_pool", "mertk.unimer.report", "mertk.execution.face_models_preload")


@contextmanager
def opencv_threads(count: int) -> Iterator[None]:
    """OpenCV's thread count set to `count` inside the block and restored after it."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def start_measure_pool(params: UnimerParameters, workers: int) -> ProcessPoolExecutor:
    """The pass-1 process pool. Its `workers` processes are started by a thread of this process,
    so that the caller goes on (e.g. reads the corpus) while the fork server starts, imports the
    method and loads the face models."""
    pool = process_pool(workers, initializer=_start_worker, initargs=(params.predictor,), preload=WORKER_MODULES)
    threading.Thread(target=_start_processes, args=(pool, workers), name="mertk-measure-pool-start", daemon=True).start()
    return pool


def _start_processes(pool: ProcessPoolExecutor, workers: int) -> None:
    try:
        for _ in range(workers):
            pool.submit(int)  # a pool of the fork server starts a process per waiting task
    except RuntimeError:  # shut down (or broken) meanwhile: the caller's own submit reports it
        pass


def _start_worker(predictor: str | None) -> None:
    cv2.setNumThreads(1)  # this process is the pool's: one OpenCV thread per worker
    try:
        load_models(predictor)
    except Exception:  # noqa: BLE001 - the same error is raised, with its message, where the model is used
        pass


def chunk_key(samples: Sequence[MerSample], params: UnimerParameters) -> str:
    """Identifies one chunk's inputs and parameters (frame files by name, size and mtime)."""
    digest = hashlib.sha256(json.dumps(params.fingerprint_dict(), sort_keys=True, default=str).encode())
    for sample in samples:
        digest.update(repr((sample.sample_id, sample.onset_frame, sample.apex_frame, sample.offset_frame, sample.au_text, sample.emotion)).encode())
        for _, path in sample.frames:
            stat = os.stat(path)
            digest.update(f"{os.path.basename(path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def measure_chunk_cached(index: int, samples: list[MerSample], params: UnimerParameters, cache_dir: Path) -> list:
    """`measure_chunk`, or its pickled results from an earlier run with the same key."""
    path = cache_dir / f"chunk-{index:05d}.pkl"
    key = chunk_key(samples, params)
    if path.is_file():
        try:
            cached = pickle.loads(path.read_bytes())
            if cached.get("key") == key:
                return cached["results"]
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, KeyError, ImportError, TypeError):  # stale cache: redo
            pass
    results = measure_chunk(samples, params)
    write_bytes_atomic(path, pickle.dumps({"key": key, "results": results}, protocol=pickle.HIGHEST_PROTOCOL))
    return results


def measure_samples(
    samples: Sequence[MerSample],
    params: UnimerParameters,
    cache_dir: Path,
    pool: Executor | None = None,
    progress: bool = True,
    while_waiting: Callable[[], None] | None = None,
) -> list:
    """Pass 1 over all samples in chunks of `params.shard_size`, each cached: on `pool` (see
    `start_measure_pool`) when given, else here. Results (measurement or rejection) come in
    sample order. `while_waiting` runs here once the chunks are handed to the workers."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    size = params.shard_size
    chunks = [list(samples[i : i + size]) for i in range(0, len(samples), size)]
    results: list = []
    with progress_bar(len(samples), "measuring flow and AU evidence", enabled=progress) as advance:
        if pool is not None:
            futures = [pool.submit(measure_chunk_cached, i, chunk, params, cache_dir) for i, chunk in enumerate(chunks)]
            if while_waiting is not None:
                while_waiting()
            for future, chunk in zip(futures, chunks):
                results.extend(future.result())
                advance(len(chunk))
        else:
            with opencv_threads(1):
                for i, chunk in enumerate(chunks):
                    results.extend(measure_chunk_cached(i, chunk, params, cache_dir))
                    advance(len(chunk))
    return results


def submit_in_parts(pool: Executor, function: Callable[..., list], items: Sequence, *args: Any, parts: int = 8) -> list[Future]:
    """`function(items_part, *args)` for `parts` consecutive parts of `items`, on `pool`; the
    futures in order (their results, concatenated, are `function(items, *args)`)."""
    size = max(1, -(-len(items) // parts))
    return [pool.submit(function, items[i : i + size], *args) for i in range(0, len(items), size)]
