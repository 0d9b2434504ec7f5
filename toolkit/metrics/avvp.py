"""The AVVP metrics of the field (LLP protocol), vectorised over videos.

Layout: every array is bool (or 0/1) and shaped (videos, 25 classes, 10 segments), suffix
`_v_c_t`; one modality each (audio, visual). The audio-visual matrices are always derived as
audio AND visual, in the prediction and in the ground truth alike.

What is averaged over what (the reference evaluation of Tian et al. 2020, reproduced exactly):
1. Per video and class, count true positives, false positives and false negatives:
   segment level -- over the 10 segments; event level -- over runs (see below).
2. Per video, F1 per class = 2TP / (2TP + FP + FN), taken over the classes that *occur* in
   that video's prediction or ground truth (TP + FP > 0 or TP + FN > 0), then the plain mean
   over those classes. A video where no class occurs scores 1.0 (all true negatives).
   The set of occurring classes is decided separately for each of audio, visual and
   audio-visual.
3. Mean over all videos, times 100.
4. Type@AV = mean of the audio, visual and audio-visual figures of step 3.
   Event@AV = steps 2-3 with the audio and visual counts of each class added together
   (TP_a + TP_v, FP_a + FP_v, FN_a + FN_v) before the per-class F1.

Event level: each class row is cut into runs of consecutive active segments. A predicted run
is a true positive when its IoU (segments in common / segments in either) with at least one
ground-truth run is >= 0.5, otherwise a false positive; a ground-truth run is a false negative
when no predicted run reaches IoU >= 0.5 with it. Matching is not one-to-one (two predicted
runs may both match one ground-truth run), as in the reference.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from mertk.corpora.llp_annotations import LLP_CLASS_INDEX, LLP_CLASSES, MODALITIES, NUM_CLASSES, NUM_SEGMENTS

METRIC_KEYS: tuple[str, ...] = ("audio", "visual", "audio_visual", "type", "event")
IOU_THRESHOLD = 0.5


# --- runs: every possible interval [start, end) of the 10 segments, indexed once ----------------
_INTERVALS_K2 = np.array(
    [(start, end) for start in range(NUM_SEGMENTS) for end in range(start + 1, NUM_SEGMENTS + 1)], dtype=np.int64
)  # (55, 2)


def _interval_match_matrix(threshold: float) -> np.ndarray:
    """(55, 55) bool: IoU(interval i, interval j) >= threshold, exactly (integer arithmetic)."""
    start, end = _INTERVALS_K2[:, 0], _INTERVALS_K2[:, 1]
    intersection = np.clip(np.minimum(end[:, None], end[None, :]) - np.maximum(start[:, None], start[None, :]), 0, None)
    union = (end - start)[:, None] + (end - start)[None, :] - intersection
    return intersection >= threshold * union


_MATCH_K_K = _interval_match_matrix(IOU_THRESHOLD)


def runs_of(active_n_t: np.ndarray) -> np.ndarray:
    """(N, 55) bool: which intervals [start, end) are maximal runs of active segments in each row.

    `active_n_t`: (N, 10) bool. Interval k is `_INTERVALS_K2[k]`; see `run_intervals()`.
    """
    active_n_t = np.asarray(active_n_t, dtype=bool)
    n = active_n_t.shape[0]
    cumulative = np.concatenate([np.zeros((n, 1), np.int64), np.cumsum(active_n_t, axis=1)], axis=1)  # (N, 11)
    start, end = _INTERVALS_K2[:, 0], _INTERVALS_K2[:, 1]
    all_active = (cumulative[:, end] - cumulative[:, start]) == (end - start)
    padded = np.pad(active_n_t, ((0, 0), (1, 1)))  # False before segment 0 and after segment 9
    closed_left = ~padded[:, start]  # segment start-1 inactive (padded index start)
    closed_right = ~padded[:, end + 1]  # segment end inactive (padded index end+1)
    return all_active & closed_left & closed_right


def run_intervals(active_t: Sequence[bool] | np.ndarray) -> list[tuple[int, int]]:
    """The runs [start, end) of one row of 10 segments, in time order."""
    mask_k = runs_of(np.asarray(active_t, dtype=bool)[None, :])[0]
    return sorted(tuple(int(x) for x in interval) for interval in _INTERVALS_K2[mask_k])


# --- counts ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Counts:
    """True positives, false positives, false negatives, each (videos, classes) int."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)


def _as_bool(matrix: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(matrix)
    if array.ndim != 3 or array.shape[1:] != (NUM_CLASSES, NUM_SEGMENTS):
        raise ValueError(f"{name}: expected shape (videos, {NUM_CLASSES}, {NUM_SEGMENTS}), got {array.shape}")
    if array.dtype != bool and not np.isin(array, (0, 1)).all():
        # scores or probabilities would silently turn into "active": threshold them first
        raise ValueError(f"{name}: expected bool or 0/1 values (threshold scores before scoring)")
    return array.astype(bool, copy=False)


def segment_counts(pred_v_c_t: np.ndarray, gt_v_c_t: np.ndarray) -> Counts:
    """Per video and class: segments predicted and true (TP), predicted only (FP), true only (FN)."""
    pred, gt = _as_bool(pred_v_c_t, "prediction"), _as_bool(gt_v_c_t, "ground truth")
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    tp = _active_segments(pred & gt)
    return Counts(tp=tp, fp=_active_segments(pred) - tp, fn=_active_segments(gt) - tp)


_ONES_T = np.ones(NUM_SEGMENTS, np.uint8)


def _active_segments(active_v_c_t: np.ndarray) -> np.ndarray:
    """(videos, classes) int64: active segments per row; a product with ones is cheaper than
    numpy's sum over a short last axis of bools (benchmarks/bench_metrics.py)."""
    return (active_v_c_t.view(np.uint8) @ _ONES_T).astype(np.int64)


def event_counts(pred_v_c_t: np.ndarray, gt_v_c_t: np.ndarray) -> Counts:
    """Per video and class: predicted runs matched at IoU >= 0.5 (TP), unmatched (FP), and
    ground-truth runs no predicted run matches (FN)."""
    pred, gt = _as_bool(pred_v_c_t, "prediction"), _as_bool(gt_v_c_t, "ground truth")
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    shape = pred.shape[:2]
    pred_rows, gt_rows = pred.reshape(-1, NUM_SEGMENTS), gt.reshape(-1, NUM_SEGMENTS)
    # only rows with any activity can hold runs; most (video, class) rows are empty
    busy = np.flatnonzero(pred_rows.any(axis=1) | gt_rows.any(axis=1))
    pred_runs = runs_of(pred_rows[busy])  # (busy rows, 55)
    gt_runs = runs_of(gt_rows[busy])
    match = _MATCH_K_K.astype(np.float32)
    # a run is matched when some run of the other side lies in its match set (counts are small
    # integers, exact in float32)
    pred_matched = pred_runs & ((gt_runs.astype(np.float32) @ match) > 0)
    gt_matched = gt_runs & ((pred_runs.astype(np.float32) @ match) > 0)
    tp, fp, fn = (np.zeros(pred_rows.shape[0], dtype=np.int64) for _ in range(3))
    tp[busy] = pred_matched.sum(axis=1)
    fp[busy] = pred_runs.sum(axis=1) - tp[busy]
    fn[busy] = gt_runs.sum(axis=1) - gt_matched.sum(axis=1)
    return Counts(tp.reshape(shape), fp.reshape(shape), fn.reshape(shape))


def video_f1(counts: Counts) -> np.ndarray:
    """(videos,) float: the mean F1 over the classes occurring in each video (1.0 when none)."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (counts.tp, counts.fp, counts.fn))
    occurring = (tp + fp > 0) | (tp + fn > 0)
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    n_occurring = occurring.sum(axis=1)
    total = np.where(occurring, f1, 0.0).sum(axis=1)
    return np.divide(total, n_occurring, out=np.ones_like(total), where=n_occurring > 0)


# --- the ten numbers ------------------------------------------------------------------------------
@dataclass(frozen=True)
class AvvpScores:
    """The ten AVVP figures in percent, and the number of videos averaged over."""

    segment: dict[str, float]
    event: dict[str, float]
    videos: int

    def to_dict(self) -> dict:
        """`{"segment": {...}, "event": {...}, "videos": n}`, keys as in METRIC_KEYS."""
        return {"segment": dict(self.segment), "event": dict(self.event), "videos": self.videos}


def _level_scores(counts_fn, pred_a, pred_v, gt_a, gt_v) -> dict[str, float]:
    audio = counts_fn(pred_a, gt_a)
    visual = counts_fn(pred_v, gt_v)
    audio_visual = counts_fn(pred_a & pred_v, gt_a & gt_v)
    means = {
        "audio": 100.0 * float(np.mean(video_f1(audio))),
        "visual": 100.0 * float(np.mean(video_f1(visual))),
        "audio_visual": 100.0 * float(np.mean(video_f1(audio_visual))),
        "event": 100.0 * float(np.mean(video_f1(audio + visual))),
    }
    means["type"] = (means["audio"] + means["visual"] + means["audio_visual"]) / 3.0
    return {key: means[key] for key in METRIC_KEYS}


def avvp_scores(
    pred_audio_v_c_t: np.ndarray,
    pred_visual_v_c_t: np.ndarray,
    gt_audio_v_c_t: np.ndarray,
    gt_visual_v_c_t: np.ndarray,
) -> AvvpScores:
    """Segment- and event-level F1 (audio, visual, audio_visual, type, event) in percent.

    All four arrays (videos, 25, 10), same video order. See the module docstring for what is
    averaged over what. Raises ValueError for mismatched shapes or zero videos.
    """
    pred_a, pred_v = _as_bool(pred_audio_v_c_t, "audio prediction"), _as_bool(pred_visual_v_c_t, "visual prediction")
    gt_a, gt_v = _as_bool(gt_audio_v_c_t, "audio ground truth"), _as_bool(gt_visual_v_c_t, "visual ground truth")
    shapes = {pred_a.shape, pred_v.shape, gt_a.shape, gt_v.shape}
    if len(shapes) != 1:
        raise ValueError(f"the four matrices differ in shape: {sorted(shapes)}")
    if pred_a.shape[0] == 0:
        raise ValueError("no videos to evaluate")
    return AvvpScores(
        segment=_level_scores(segment_counts, pred_a, pred_v, gt_a, gt_v),
        event=_level_scores(event_counts, pred_a, pred_v, gt_a, gt_v),
        videos=pred_a.shape[0],
    )


# --- per-class figures (reports) ------------------------------------------------------------------
@dataclass(frozen=True)
class PerClassScores:
    """Per-class precision, recall and F1, each (25,) float, NaN where undefined.

    Counts are pooled over all videos (micro within a class): precision = TP / (TP + FP) is NaN
    for a class never predicted, recall = TP / (TP + FN) NaN for a class never true, F1 =
    2TP / (2TP + FP + FN) NaN when the class is neither predicted nor true. `support` is the
    number of true units (segments or runs) per class.
    """

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray

    def rows(self) -> list[dict]:
        return [
            {"class": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(LLP_CLASSES, self.precision, self.recall, self.f1, self.support)
        ]


def per_class_scores(counts: Counts) -> PerClassScores:
    """Pool per-video counts over videos and score each class (see PerClassScores)."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64).sum(axis=0) for x in (counts.tp, counts.fp, counts.fn))
    nan = np.full_like(tp, np.nan)
    precision = np.divide(tp, tp + fp, out=nan.copy(), where=(tp + fp) > 0)
    recall = np.divide(tp, tp + fn, out=nan.copy(), where=(tp + fn) > 0)
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=nan.copy(), where=(2 * tp + fp + fn) > 0)
    return PerClassScores(precision, recall, f1, (tp + fn).astype(np.int64))


def per_class_segment_scores(pred_v_c_t: np.ndarray, gt_v_c_t: np.ndarray) -> PerClassScores:
    """Per-class segment-level precision / recall / F1 of one modality, pooled over videos."""
    return per_class_scores(segment_counts(pred_v_c_t, gt_v_c_t))


def per_class_event_scores(pred_v_c_t: np.ndarray, gt_v_c_t: np.ndarray) -> PerClassScores:
    """Per-class event-level precision / recall / F1 of one modality, pooled over videos."""
    return per_class_scores(event_counts(pred_v_c_t, gt_v_c_t))


# --- eval-file layout <-> matrices ----------------------------------------------------------------
def matrix_to_rows(filename: str, modality: str, matrix_c_t: np.ndarray) -> list[dict]:
    """One (25, 10) matrix as eval-layout rows: filename, modality, event_labels, onset, offset.

    One row per run (onset = first segment, offset = segment after the last), classes in
    LLP_CLASSES order, runs in time order.
    """
    matrix = np.asarray(matrix_c_t, dtype=bool)
    if matrix.shape != (NUM_CLASSES, NUM_SEGMENTS):
        raise ValueError(f"{filename}: expected a ({NUM_CLASSES}, {NUM_SEGMENTS}) matrix, got {matrix.shape}")
    if modality not in MODALITIES:
        raise ValueError(f"{filename}: modality must be one of {MODALITIES}, not {modality!r}")
    runs_c_k = runs_of(matrix)
    rows = []
    for class_index, interval_index in zip(*np.nonzero(runs_c_k)):
        onset, offset = _INTERVALS_K2[interval_index]
        rows.append(
            {
                "filename": filename,
                "modality": modality,
                "event_labels": LLP_CLASSES[class_index],
                "onset": int(onset),
                "offset": int(offset),
            }
        )
    rows.sort(key=lambda row: (LLP_CLASS_INDEX[row["event_labels"]], row["onset"]))
    return rows


def matrices_to_rows(filenames: Sequence[str], audio_v_c_t: np.ndarray, visual_v_c_t: np.ndarray) -> list[dict]:
    """Eval-layout rows of many videos (audio rows of a video, then its visual rows)."""
    rows: list[dict] = []
    for index, filename in enumerate(filenames):
        rows.extend(matrix_to_rows(filename, "audio", audio_v_c_t[index]))
        rows.extend(matrix_to_rows(filename, "visual", visual_v_c_t[index]))
    return rows


class EvalRowError(ValueError):
    """A row of an eval-layout table that cannot be turned into a matrix entry."""


def rows_to_matrices(
    rows: Iterable[Mapping], filenames: Sequence[str], source: str = "rows"
) -> tuple[np.ndarray, np.ndarray, int]:
    """Eval-layout rows -> (audio_v_c_t, visual_v_c_t, rows_outside) for the given videos.

    Rows of videos not in `filenames` are skipped and counted (`rows_outside`); videos without
    rows predict nothing. A row with an unknown modality or class, non-integer times, onset >=
    offset or times outside [0, 10] raises EvalRowError naming `source` and the row number
    (0-based position in `rows`).
    """
    index = {name: position for position, name in enumerate(filenames)}
    matrices = {m: np.zeros((len(filenames), NUM_CLASSES, NUM_SEGMENTS), dtype=bool) for m in MODALITIES}
    outside = 0
    for number, row in enumerate(rows):
        where = f"{source}: row {number}"
        try:
            filename, modality, class_name = str(row["filename"]), str(row["modality"]), str(row["event_labels"])
            onset_value, offset_value = row["onset"], row["offset"]
        except KeyError as error:
            raise EvalRowError(f"{where}: missing column {error.args[0]!r}") from None
        if modality not in matrices:
            raise EvalRowError(f"{where} ({filename}): modality {modality!r} is not 'audio' or 'visual'")
        if class_name not in LLP_CLASS_INDEX:
            raise EvalRowError(f"{where} ({filename}): unknown class {class_name!r}")
        try:
            onset, offset = _integer(onset_value), _integer(offset_value)
        except ValueError:
            raise EvalRowError(f"{where} ({filename}): onset/offset {onset_value!r}/{offset_value!r} are not integer seconds") from None
        if not 0 <= onset < offset <= NUM_SEGMENTS:
            raise EvalRowError(f"{where} ({filename}): need 0 <= onset < offset <= 10, got onset {onset}, offset {offset}")
        if filename not in index:
            outside += 1
            continue
        matrices[modality][index[filename], LLP_CLASS_INDEX[class_name], onset:offset] = True
    return matrices["audio"], matrices["visual"], outside


def _integer(value) -> int:
    number = float(value)
    if not np.isfinite(number) or number != int(number):
        raise ValueError(value)
    return int(number)
