"""Temporal detection mAP at tIoU thresholds: the ActivityNet-style protocol UnAV-100 papers report.

For each class c present in the ground truth (GT) and each tIoU threshold θ:

1. the predictions of class c (all videos pooled) are sorted by score, highest first (ties keep
   their input order);
2. in that order, each prediction is matched to the GT event of class c in its video that has the
   highest tIoU with it among those not matched yet at θ, provided that tIoU >= θ (among equal
   tIoUs the later GT event in file order wins, as in the reference code); matched = true
   positive, otherwise false positive (also when its video has no GT event of class c);
3. precision and recall (over the n_c GT events of c) after each prediction give AP by the VOC 2011
   interpolation: precision made non-increasing from the right, summed over the recall steps.

A class without predictions has AP 0; predictions of classes absent from the GT are not scored.
mAP(θ) is the mean AP over the GT classes; the figure papers quote is the mean over θ = 0.1 .. 0.9.
tIoU(a, b) = max(0, min(a1, b1) - max(a0, b0)) / ((a1 - a0) + (b1 - b0) - intersection).

The GT passed in must already hold each duplicated event once (the UnAV-100 reader does that).

Speed: the greedy matching is sequential only within one (video, class) group, so it runs as a
loop over the rank of a prediction inside its group (rarely more than a few dozen steps), each
step handling every group and every threshold at once with numpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

TIOU_THRESHOLDS = tuple(round(0.1 * k, 1) for k in range(1, 10))


@dataclass(frozen=True)
class EventTable:
    """Columnar events, one row each: GT events (score None) or predicted segments."""

    video: np.ndarray  # (n,) str
    label: np.ndarray  # (n,) int
    start: np.ndarray  # (n,) float seconds
    end: np.ndarray  # (n,) float seconds
    score: np.ndarray | None = None  # (n,) float, predictions only

    def __len__(self) -> int:
        return len(self.label)

    @classmethod
    def from_columns(cls, video, label, start, end, score=None) -> "EventTable":
        return cls(
            np.asarray(video, dtype=object).astype(str),
            np.asarray(label, dtype=np.int64),
            np.asarray(start, dtype=np.float64),
            np.asarray(end, dtype=np.float64),
            None if score is None else np.asarray(score, dtype=np.float64),
        )


@dataclass(frozen=True)
class DetectionScores:
    thresholds: tuple[float, ...]
    classes: np.ndarray  # (c,) the GT classes, ascending
    ap_t_c: np.ndarray  # (thresholds, c), fractions
    videos: int  # videos with GT events

    @property
    def map_t(self) -> np.ndarray:
        return self.ap_t_c.mean(axis=1) if self.ap_t_c.shape[1] else np.zeros(len(self.thresholds))

    @property
    def average_map(self) -> float:
        return float(self.map_t.mean())

    def to_dict(self) -> dict[str, Any]:
        """`{"map": {"0.1": %, ...}, "average_map": %, "videos": n}`, figures in percent."""
        return {
            "map": {f"{threshold:.1f}": float(100 * value) for threshold, value in zip(self.thresholds, self.map_t)},
            "average_map": 100 * self.average_map,
            "videos": self.videos,
        }

    def per_class_average(self) -> dict[int, float]:
        """Per GT class: AP averaged over the thresholds, in percent."""
        return {int(c): float(100 * ap) for c, ap in zip(self.classes, self.ap_t_c.mean(axis=0))}


def segment_tiou(start_a: np.ndarray, end_a: np.ndarray, start_b: np.ndarray, end_b: np.ndarray) -> np.ndarray:
    """Elementwise (broadcast) tIoU of segments a and b."""
    intersection = np.clip(np.minimum(end_a, end_b) - np.maximum(start_a, start_b), 0, None)
    union = (end_a - start_a) + (end_b - start_b) - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return intersection / union


def interpolated_average_precision(precision_t_n: np.ndarray, recall_t_n: np.ndarray) -> np.ndarray:
    """VOC 2011 interpolated AP per row of (thresholds, predictions) precision/recall curves."""
    rows = precision_t_n.shape[0]
    precision = np.concatenate([np.zeros((rows, 1)), precision_t_n, np.zeros((rows, 1))], axis=1)
    recall = np.concatenate([np.zeros((rows, 1)), recall_t_n, np.ones((rows, 1))], axis=1)
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    # steps where recall does not move contribute exactly 0
    return (np.diff(recall, axis=1) * envelope[:, 1:]).sum(axis=1)


def _match(group_p: np.ndarray, tiou_p_k: np.ndarray, groups: int, thresholds: np.ndarray) -> np.ndarray:
    """True-positive flags (thresholds, predictions) for predictions in score order, grouped by (video, class).

    `group_p` is each prediction's group (-1: no GT of its class in its video); `tiou_p_k` its tIoU
    with the k-th GT event of its group (-inf for padding)."""
    n_thresholds, predictions = len(thresholds), len(group_p)
    tp_t_p = np.zeros((n_thresholds, predictions), dtype=bool)
    matched = np.flatnonzero(group_p >= 0)
    if len(matched) == 0:
        return tp_t_p
    width = tiou_p_k.shape[1]
    by_group = matched[np.argsort(group_p[matched], kind="stable")]  # score order kept inside a group
    group_sorted = group_p[by_group]
    first = np.r_[0, np.flatnonzero(np.diff(group_sorted)) + 1]
    rank = np.arange(len(by_group)) - np.repeat(first, np.diff(np.r_[first, len(by_group)]))
    locked_g_t_k = np.zeros((groups, n_thresholds, width), dtype=bool)
    for r in range(int(rank.max()) + 1):
        chosen = by_group[rank == r]  # one prediction per group at most
        group = group_p[chosen]
        tiou = tiou_p_k[chosen][:, None, :]
        candidate = (tiou >= thresholds[None, :, None]) & ~locked_g_t_k[group]
        ranked = np.where(candidate, tiou, -np.inf)[:, :, ::-1]
        best = width - 1 - np.argmax(ranked, axis=2)  # highest tIoU; the later GT event on ties
        hit = candidate.any(axis=2)
        tp_t_p[:, chosen] = hit.T
        rows, columns = np.nonzero(hit)
        locked_g_t_k[group[rows], columns, best[rows, columns]] = True
    return tp_t_p


def detection_scores(truth: EventTable, predicted: EventTable, thresholds: tuple[float, ...] = TIOU_THRESHOLDS) -> DetectionScores:
    """AP per GT class and threshold (see the module docstring)."""
    if predicted.score is None:
        raise ValueError("predicted events need scores")
    thresholds_array = np.asarray(thresholds, dtype=np.float64)
    classes, gt_class = np.unique(truth.label, return_inverse=True)
    videos, gt_video = np.unique(truth.video, return_inverse=True)
    n_videos = max(1, len(videos))

    # GT groups (class, video), GT events of a group in file order
    gt_key = gt_class.astype(np.int64) * n_videos + gt_video
    gt_order = np.argsort(gt_key, kind="stable")
    group_keys, group_first, group_size = np.unique(gt_key[gt_order], return_index=True, return_counts=True)
    width = int(group_size.max()) if len(group_size) else 1
    slot = np.arange(len(gt_order)) - np.repeat(group_first, group_size)
    group_of_sorted = np.repeat(np.arange(len(group_keys)), group_size)
    gt_start_g_k = np.full((len(group_keys), width), np.nan)
    gt_end_g_k = np.full((len(group_keys), width), np.nan)
    gt_start_g_k[group_of_sorted, slot] = truth.start[gt_order]
    gt_end_g_k[group_of_sorted, slot] = truth.end[gt_order]

    # predictions of GT classes, sorted by class then score (highest first, ties in input order)
    class_position = np.searchsorted(classes, predicted.label)
    known = (class_position < len(classes)) & (classes[np.minimum(class_position, len(classes) - 1)] == predicted.label) if len(classes) else np.zeros(len(predicted), bool)
    keep = np.flatnonzero(known)
    pred_class = class_position[keep]
    order = keep[np.lexsort((-predicted.score[keep], pred_class))]
    pred_class = class_position[order]
    video_position = np.searchsorted(videos, predicted.video[order])
    in_truth = (video_position < len(videos)) & (videos[np.minimum(video_position, len(videos) - 1)] == predicted.video[order]) if len(videos) else np.zeros(len(order), bool)
    pred_key = pred_class.astype(np.int64) * n_videos + video_position
    group_position = np.searchsorted(group_keys, pred_key)
    has_group = in_truth & (group_position < len(group_keys))
    has_group[has_group] = group_keys[group_position[has_group]] == pred_key[has_group]
    group_p = np.where(has_group, group_position, -1)

    tiou_p_k = np.full((len(order), width), -np.inf)
    rows = np.flatnonzero(has_group)
    tiou = segment_tiou(predicted.start[order][rows, None], predicted.end[order][rows, None], gt_start_g_k[group_p[rows]], gt_end_g_k[group_p[rows]])
    tiou_p_k[rows] = np.where(np.isnan(tiou), -np.inf, tiou)
    tp_t_p = _match(group_p, tiou_p_k, len(group_keys), thresholds_array)

    positives_c = np.bincount(gt_class, minlength=len(classes))
    ap_t_c = np.zeros((len(thresholds_array), len(classes)))
    bounds = np.searchsorted(pred_class, np.arange(len(classes) + 1))
    for c in range(len(classes)):
        low, high = bounds[c], bounds[c + 1]
        if high == low:
            continue
        tp = np.cumsum(tp_t_p[:, low:high], axis=1, dtype=np.float64)
        fp = np.cumsum(~tp_t_p[:, low:high], axis=1, dtype=np.float64)
        ap_t_c[:, c] = interpolated_average_precision(tp / (tp + fp), tp / positives_c[c])
    return DetectionScores(tuple(float(t) for t in thresholds), classes, ap_t_c, int(len(videos)))
