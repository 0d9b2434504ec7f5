"""Per-class, per-modality similarity thresholds, from histograms (streaming, O(classes x bins)).

Label-free rules (no dense label is used):
- `midpoint` (default): halfway between the *absent* level -- the median similarity of the
  segments of videos whose weak label lacks the class (the weak label guarantees the class is
  not there, distractors aside) -- and the *present* level -- the 95th percentile of the
  similarities of the segments of videos that carry the class (the class fills at least 5 % of
  its videos' segments in this modality). Works whether a class fills its videos or only part
  of them, and keeps a weak cross-modal leak (e.g. speech heard but not seen) below the cut.
- `otsu`: Otsu's cut of the histogram of the segments of videos carrying the class; good when
  that histogram is clearly bimodal, poor when most such segments hold the class.
Calibrated (`--calibrate val`): the cut that maximises the segment F1 of the class on the val
videos' dense labels; a class without val positives keeps its label-free threshold.
A class that never occurs in a weak label gets +inf (it can never migrate).
"""
from __future__ import annotations

import numpy as np

from mertk.migration.anchors import SIMILARITY_BINS, bin_edges

MIN_SEGMENTS = 10  # fewer segments than this: no shape to split, migrate all of them
THRESHOLD_RULES = ("midpoint", "otsu")
EDGE_SLACK = 1e-6  # a cut at a bin edge keeps the whole bin above it despite rounding
ABSENT_QUANTILE = 0.5
PRESENT_QUANTILE = 0.95  # final thresholds
REFINE_PRESENT_QUANTILE = 0.9  # looser cut while refining prototypes: more segments to average


def histogram_quantile(counts_b: np.ndarray, quantile: float) -> float:
    """The similarity below which `quantile` of the histogram's mass lies (bin centres)."""
    edges = bin_edges(len(counts_b))
    total = counts_b.sum()
    if total == 0:
        return float("nan")
    position = int(np.searchsorted(np.cumsum(counts_b), quantile * total, side="left"))
    return float(0.5 * (edges[position] + edges[position + 1]))


def midpoint_threshold(carrying_b: np.ndarray, null_b: np.ndarray, present_quantile: float = PRESENT_QUANTILE) -> float:
    """Halfway between the null median and the 95th percentile of the carrying videos' segments."""
    if carrying_b.sum() == 0:
        return float("inf")
    present = histogram_quantile(carrying_b, present_quantile)
    absent = histogram_quantile(null_b, ABSENT_QUANTILE)
    if not np.isfinite(absent):  # every video carries the class: no null to compare with
        return otsu_threshold(carrying_b)
    return 0.5 * (absent + present)


def otsu_threshold(counts_b: np.ndarray) -> float:
    """The bin edge that best splits the histogram (Otsu); -1 for a degenerate one, +inf if empty."""
    edges = bin_edges(len(counts_b))
    total = counts_b.sum()
    if total == 0:
        return float("inf")
    occupied = np.flatnonzero(counts_b)
    if total < MIN_SEGMENTS or len(occupied) == 1:
        return float(edges[occupied[0]]) - EDGE_SLACK
    centres = 0.5 * (edges[:-1] + edges[1:])
    weight_low = np.cumsum(counts_b)[:-1].astype(np.float64)
    weight_high = total - weight_low
    mass_low = np.cumsum(counts_b * centres)[:-1]
    mass_high = (counts_b * centres).sum() - mass_low
    with np.errstate(divide="ignore", invalid="ignore"):
        between = weight_low * weight_high * (mass_low / weight_low - mass_high / weight_high) ** 2
    between = np.where((weight_low > 0) & (weight_high > 0), between, -1.0)
    # Ties (flat stretches between the modes): take the middle of the best stretch.
    best = np.flatnonzero(between >= between.max() - 1e-9 * abs(between.max()))
    split = int(best[len(best) // 2]) + 1  # the edge after bin `split - 1`
    return float(edges[split]) - EDGE_SLACK


def calibrated_threshold(positive_b: np.ndarray, negative_b: np.ndarray) -> float | None:
    """The bin edge maximising F1 of `similarity >= edge` on labelled segments; None without positives."""
    if positive_b.sum() == 0:
        return None
    edges = bin_edges(len(positive_b))
    tp = np.cumsum(positive_b[::-1])[::-1]  # positives at or above each edge
    fp = np.cumsum(negative_b[::-1])[::-1]
    fn = positive_b.sum() - tp
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)
    return float(edges[int(best[len(best) // 2])]) - EDGE_SLACK


def label_free_thresholds(
    counts_c_b: np.ndarray, null_c_b: np.ndarray, rule: str = "midpoint", present_quantile: float = PRESENT_QUANTILE
) -> np.ndarray:
    """(25,) thresholds by `rule` from the carrying and null histograms of each class."""
    if rule == "otsu":
        return np.array([otsu_threshold(row) for row in counts_c_b])
    if rule == "midpoint":
        return np.array([midpoint_threshold(row, null, present_quantile) for row, null in zip(counts_c_b, null_c_b)])
    raise ValueError(f"unknown threshold rule {rule!r}; choose one of {', '.join(THRESHOLD_RULES)}")


def calibrated_thresholds(positive_c_b: np.ndarray, negative_c_b: np.ndarray, fallback_c: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Per class: the val-calibrated threshold, or the fallback; and which rule gave it."""
    thresholds, rules = [], []
    for c in range(len(fallback_c)):
        value = calibrated_threshold(positive_c_b[c], negative_c_b[c])
        if value is None or not np.isfinite(fallback_c[c]):
            thresholds.append(float(fallback_c[c]))
            rules.append("label-free (no val positives)")
        else:
            thresholds.append(value)
            rules.append("calibrated on val")
    return np.array(thresholds), rules


__all__ = ["midpoint_threshold", "otsu_threshold", "calibrated_threshold", "label_free_thresholds", "calibrated_thresholds", "SIMILARITY_BINS"]
