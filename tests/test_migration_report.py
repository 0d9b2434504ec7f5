"""The migration report's per-class chart: an absent class is drawn unlike an F1 of 0."""
from __future__ import annotations

import cv2
import numpy as np

from mertk.corpora.llp_annotations import LLP_CLASSES
from mertk.migration.report import _per_class_figure


def chart(value_of_class_3: float) -> np.ndarray:
    values = [0.5] * len(LLP_CLASSES)
    values[3] = value_of_class_3
    scores = {"test": {"per_class_f1": {m: {"pseudo": list(values), "naive": list(values)} for m in ("audio", "visual")}}}
    return cv2.imdecode(np.frombuffer(_per_class_figure(scores), dtype=np.uint8), cv2.IMREAD_COLOR)


def test_absent_class_differs_from_zero_and_from_other_values():
    absent, zero, half = chart(float("nan")), chart(0.0), chart(0.5)
    assert absent.shape == zero.shape == half.shape
    assert not np.array_equal(absent, zero)  # hatched stub vs a flat bar
    assert not np.array_equal(zero, half)
    difference = np.argwhere((absent != zero).any(axis=2))
    # only class 3's columns change: a narrow band of x in each of the two panels
    xs = np.unique(difference[:, 1])
    assert len(xs) < 2 * 30 and len(difference) > 20


def test_chart_is_wide_enough_for_whole_class_names():
    image = chart(0.5)
    assert image.shape[1] >= 2 * 30 * len(LLP_CLASSES)  # 30 pixels a class and modality panel
