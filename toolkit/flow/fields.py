"""Optical flow fields and what is derived from them.

A flow field is float32 (H, W, 2): per pixel the displacement (u = x right, v = y down) in
pixels that carries the first image onto the second. Estimators are OpenCV's:
  dis        DIS (Kroeger et al. 2016), preset FAST taken down to pyramid level 1 (as MEDIUM)
             with one variational refinement iteration (default): cheaper than preset MEDIUM on
             face crops and a little closer to the planted field (figures: README, measured by
             benchmarks/bench_build_unimer.py)
  dis_medium DIS preset MEDIUM as OpenCV defines it
  dis_light  `dis` without variational refinement and with patches every 5 px instead of 4: the
             default of the motion curve (112 px crop), which only has to place the peak in
             time (as exactly as `dis` on the sample corpus' '/' apexes), at a fraction of the cost
  dis_fast   DIS preset FAST: coarser still (stops at level 2): apex estimates less exact
  farneback  polynomial expansion (Farneback 2003): pyramid 3 levels, window 15
  tvl1       Dual TV-L1 (Zach et al. 2007) from opencv-contrib's optflow module, 3 levels,
             3 warps, 10 x 5 iterations: slowest
Figures (endpoint error, time per pair): benchmarks/bench_build_unimer.py and the README.
"""
from __future__ import annotations

import threading
from typing import Callable

import cv2
import numpy as np

from mertk.errors import InputError
from mertk.flow.methods import CURVE_FLOW_METHODS


class FlowMethodError(InputError):
    """An unknown flow method, or one this OpenCV build does not offer."""


_local = threading.local()


def _dis_level1(refinement_iterations: int, patch_stride: int = 4) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    engine = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    engine.setFinestScale(1)
    engine.setPatchStride(patch_stride)
    engine.setVariationalRefinementIterations(refinement_iterations)
    return lambda a, b: engine.calc(a, b, None)


def _dis() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return _dis_level1(1)


def _dis_medium() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    engine = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return lambda a, b: engine.calc(a, b, None)


def _dis_fast() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    engine = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    return lambda a, b: engine.calc(a, b, None)


def _dis_light() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return _dis_level1(0, patch_stride=5)


def _farneback() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def _tvl1() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    if not hasattr(cv2, "optflow"):
        raise FlowMethodError("flow method 'tvl1' needs OpenCV's contrib module optflow (opencv-contrib-python-headless)")
    engine = cv2.optflow.DualTVL1OpticalFlow_create()
    # Face crops and sub-pixel motion need neither 5 pyramid levels nor 30 inner iterations:
    # these settings are much cheaper than OpenCV's defaults at about the same endpoint error.
    engine.setScalesNumber(3)
    engine.setWarpingsNumber(3)
    engine.setEpsilon(0.02)
    engine.setInnerIterations(10)
    engine.setOuterIterations(5)
    return lambda a, b: engine.calc(a, b, None)


_FACTORIES = {"dis": _dis, "dis_medium": _dis_medium, "dis_light": _dis_light, "dis_fast": _dis_fast, "farneback": _farneback, "tvl1": _tvl1}


def _estimator(method: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    if method not in _FACTORIES:
        raise FlowMethodError(f"unknown flow method {method!r}; choose one of {', '.join(CURVE_FLOW_METHODS)}")
    cache = getattr(_local, "engines", None)
    if cache is None:
        cache = _local.engines = {}
    if method not in cache:
        cache[method] = _FACTORIES[method]()
    return cache[method]


def estimate_flow(first_hw: np.ndarray, second_hw: np.ndarray, method: str = "dis") -> np.ndarray:
    """Flow (H, W, 2) float32 from `first_hw` to `second_hw` (uint8 grey images of one size)."""
    if first_hw.shape != second_hw.shape or first_hw.ndim != 2:
        raise ValueError(f"flow needs two grey images of one size, got {first_hw.shape} and {second_hw.shape}")
    first = np.ascontiguousarray(first_hw, dtype=np.uint8)
    second = np.ascontiguousarray(second_hw, dtype=np.uint8)
    return np.asarray(_estimator(method)(first, second), dtype=np.float32)


def median_of_rows(values_n2: np.ndarray) -> np.ndarray:
    """np.median(values_n2, axis=0) of float32 vectors, bit for bit, at a tenth of its overhead."""
    count = values_n2.shape[0]
    middle = count // 2
    if count % 2:
        return np.partition(values_n2, middle, axis=0)[middle]
    part = np.partition(values_n2, (middle - 1, middle), axis=0)
    return (part[middle - 1] + part[middle]) / values_n2.dtype.type(2)


def compensate_head_motion(flow_hw2: np.ndarray, rigid_mask_hw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Subtract the rigid region's median flow (global head translation) from the whole field.

    Returns (compensated flow, the subtracted (2,) vector). An empty mask subtracts nothing.
    """
    if not rigid_mask_hw.any():
        return flow_hw2, np.zeros(2, dtype=np.float32)
    head_2 = median_of_rows(flow_hw2[rigid_mask_hw].astype(np.float32, copy=False))
    return flow_hw2 - head_2, head_2


def optical_strain(flow_hw2: np.ndarray) -> np.ndarray:
    """Magnitude of the infinitesimal strain tensor, sqrt(exx^2 + eyy^2 + 2 exy^2), float32 (H, W).

    exx = du/dx, eyy = dv/dy, exy = (du/dy + dv/dx) / 2 (central differences). Dimensionless.
    """
    du_dy, du_dx = np.gradient(flow_hw2[..., 0])
    dv_dy, dv_dx = np.gradient(flow_hw2[..., 1])
    exy = 0.5 * (du_dy + dv_dx)
    return np.sqrt(du_dx**2 + dv_dy**2 + 2.0 * exy**2).astype(np.float32)


def resize_flow(flow_hw2: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-resample a flow field to (height, width), scaling the vectors with the image."""
    scale_x = width / flow_hw2.shape[1]
    scale_y = height / flow_hw2.shape[0]
    resized = cv2.resize(flow_hw2, (width, height), interpolation=cv2.INTER_AREA)
    resized[..., 0] *= scale_x
    resized[..., 1] *= scale_y
    return resized.astype(np.float32)


def endpoint_error(estimated_hw2: np.ndarray, truth_hw2: np.ndarray, mask_hw: np.ndarray | None = None) -> float:
    """Mean Euclidean distance between two flow fields (over `mask_hw` when given), in pixels."""
    error_hw = np.linalg.norm(estimated_hw2 - truth_hw2, axis=-1)
    if mask_hw is not None:
        if not mask_hw.any():
            raise ValueError("endpoint error over an empty mask")
        error_hw = error_hw[mask_hw]
    return float(error_hw.mean())
