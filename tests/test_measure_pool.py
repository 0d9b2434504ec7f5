"""Pools of mertk.execution: they start and finish right after OpenCV's thread pool has run.

A worker forked while OpenCV's (or torch's, or a BLAS library's) threads run inherits their locks
held and can block for ever in its first OpenCV call (seen as `cv2.setNumThreads(1)` hanging).
Every pool starts its workers from the fork server; these tests run a threaded OpenCV stage
first and bound each wait, so a hang fails the test instead of stalling the suite.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mertk.corpora.casme2 import read_casme2
from mertk.execution.measure_pool import measure_samples, opencv_threads, start_measure_pool
from mertk.execution.pools import process_pool
from mertk.face import resolve_predictor_path
from mertk.shards.manifest import Rejection
from mertk.unimer.measure import SampleMeasurement
from mertk.unimer.parameters import UnimerParameters

CORPUS = Path(__file__).resolve().parents[1] / "sample_data" / "casme2"
WAIT_S = 300  # far beyond the work; only a hang reaches it


def _threaded_opencv_stage() -> None:
    """Resizes and a dense flow on large arrays with OpenCV's thread pool on (several threads)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1200, 1600), np.uint8)
    for size in ((2400, 1800), (800, 600), (1600, 1200)):
        cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
    cv2.calcOpticalFlowFarneback(image, np.roll(image, 2, axis=1), None, 0.5, 3, 15, 3, 5, 1.2, 0)


def _opencv_in_worker(seed: int) -> int:
    cv2.setNumThreads(1)  # where forked workers used to block
    image = np.random.default_rng(seed).integers(0, 256, (400, 400), np.uint8)
    return int(cv2.resize(image, (200, 200), interpolation=cv2.INTER_AREA).sum())


def test_a_pool_right_after_a_threaded_opencv_stage_finishes():
    with opencv_threads(4):
        _threaded_opencv_stage()
        with process_pool(2) as pool:
            futures = [pool.submit(_opencv_in_worker, seed) for seed in range(6)]
            results = [future.result(timeout=WAIT_S) for future in futures]
    assert results == [_opencv_in_worker(seed) for seed in range(6)]


def test_measure_pool_after_a_threaded_stage_gives_what_this_process_gives(tmp_path):
    samples = read_casme2(CORPUS).samples[:6]
    params = UnimerParameters(shard_size=3, predictor=str(resolve_predictor_path(None)))
    here = measure_samples(samples, params, tmp_path / "here", progress=False)
    with opencv_threads(4):
        _threaded_opencv_stage()
        pool = start_measure_pool(params, 2)
        try:
            pooled = measure_samples(samples, params, tmp_path / "pooled", pool=pool, progress=False)
        finally:
            pool.shutdown(wait=True)
    assert len(pooled) == len(here) == 6
    assert all(isinstance(r, (SampleMeasurement, Rejection)) for r in pooled)
    for a, b in zip(here, pooled):
        assert a.sample.sample_id == b.sample.sample_id
        np.testing.assert_array_equal(a.apex_flow_3hw, b.apex_flow_3hw)  # bit-identical flow


def test_opencv_threads_are_restored():
    before = cv2.getNumThreads()
    with opencv_threads(1):
        assert cv2.getNumThreads() == 1
    assert cv2.getNumThreads() == before


def test_pools_refuse_no_workers():
    with pytest.raises(ValueError, match="workers must be >= 1"):
        process_pool(0)
