"""Detection mAP: the vectorised evaluator against a plain per-prediction reimplementation of the protocol."""
from __future__ import annotations

import numpy as np
import pytest

from mertk.corpora.unav100 import read_unav_annotations
from mertk.metrics.detection import TIOU_THRESHOLDS, EventTable, detection_scores, interpolated_average_precision
from mertk.metrics.dave_evaluation import truth_events as truth_table
from tests.unav_helpers import REAL_ANNOTATIONS, needs_real_unav


def reference_scores(truth: EventTable, predicted: EventTable, thresholds=TIOU_THRESHOLDS) -> np.ndarray:
    """The protocol written out the slow, obvious way: (thresholds, classes) AP in ascending class order."""
    classes = sorted(set(int(c) for c in truth.label))
    ap = np.zeros((len(thresholds), len(classes)))
    for ci, c in enumerate(classes):
        gt = [(truth.video[i], truth.start[i], truth.end[i]) for i in range(len(truth)) if truth.label[i] == c]
        preds = [i for i in range(len(predicted)) if predicted.label[i] == c]
        preds.sort(key=lambda i: -predicted.score[i])  # Python's sort is stable: ties keep input order
        for ti, threshold in enumerate(thresholds):
            used = [False] * len(gt)
            flags = []
            for i in preds:
                best, best_tiou = None, -1.0
                for j, (video, s, e) in enumerate(gt):
                    if video != predicted.video[i] or used[j]:
                        continue
                    inter = max(0.0, min(e, predicted.end[i]) - max(s, predicted.start[i]))
                    tiou = inter / ((e - s) + (predicted.end[i] - predicted.start[i]) - inter)
                    if tiou >= threshold and tiou >= best_tiou:  # >=: the later GT event wins a tie
                        best, best_tiou = j, tiou
                if best is not None:
                    used[best] = True
                flags.append(best is not None)
            if not flags:
                continue
            tp = fp = 0
            precision, recall = [], []
            for flag in flags:
                tp, fp = tp + flag, fp + (not flag)
                precision.append(tp / (tp + fp))
                recall.append(tp / len(gt))
            # VOC 2011: area under the precision envelope, step by step in recall
            total, previous_recall = 0.0, 0.0
            for k in range(len(flags)):
                envelope = max(precision[k:])
                total += (recall[k] - previous_recall) * envelope
                previous_recall = recall[k]
            ap[ti, ci] = total
    return ap


def random_predictions(truth: EventTable, rng: np.random.Generator, per_video: int, classes: int = 100) -> EventTable:
    videos = np.unique(truth.video)
    rows = {"video": [], "label": [], "start": [], "end": [], "score": []}
    by_video = {}
    for i, video in enumerate(truth.video):
        by_video.setdefault(video, []).append(i)
    for video in videos:
        events = by_video[video]
        duration = max(truth.end[events]) + 5
        for _ in range(per_video):
            if rng.random() < 0.6:  # near a GT event, of its class most of the time
                i = events[rng.integers(len(events))]
                label = int(truth.label[i]) if rng.random() < 0.8 else int(rng.integers(classes))
                length = truth.end[i] - truth.start[i]
                start = truth.start[i] + rng.normal(0, 0.3) * length
                end = truth.end[i] + rng.normal(0, 0.3) * length
            else:
                label = int(rng.integers(classes))
                start = rng.uniform(0, duration)
                end = start + rng.uniform(0.2, 20)
            start, end = min(start, end), max(start, end) + 1e-3
            rows["video"].append(video); rows["label"].append(label); rows["start"].append(start)  # fmt: skip
            rows["end"].append(end); rows["score"].append(rng.random())  # fmt: skip
    return EventTable.from_columns(**rows)


def test_small_hand_checked_case():
    truth = EventTable.from_columns(["a", "a", "b"], [1, 1, 2], [0.0, 10.0, 0.0], [5.0, 20.0, 4.0])
    predicted = EventTable.from_columns(["a", "a", "a", "b"], [1, 1, 1, 2], [0.0, 0.0, 11.0, 30.0], [5.0, 5.0, 19.0, 31.0], [0.9, 0.8, 0.7, 0.5])
    scores = detection_scores(truth, predicted, thresholds=(0.5,))
    # class 1: TP, FP (GT already taken), TP -> precision 1, 1/2, 2/3; recall 1/2, 1/2, 1 -> AP = 0.5 + 0.5 * 2/3
    assert scores.ap_t_c[0, 0] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert scores.ap_t_c[0, 1] == 0.0  # class 2: the only prediction misses
    assert scores.to_dict()["map"] == {"0.5": pytest.approx(100 * (0.5 + 0.5 * 2 / 3) / 2)}


def test_interpolation_uses_the_precision_envelope():
    ap = interpolated_average_precision(np.array([[1.0, 0.5, 2 / 3]]), np.array([[0.5, 0.5, 1.0]]))
    assert ap[0] == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)


def test_matches_the_plain_reimplementation_on_random_synthetic_events():
    rng = np.random.default_rng(0)
    n = 300
    truth = EventTable.from_columns(
        rng.integers(0, 40, n).astype(str), rng.integers(0, 6, n), *(lambda s: (s, s + rng.uniform(0.5, 8, n)))(rng.uniform(0, 50, n))
    )
    predicted = random_predictions(truth, rng, per_video=12, classes=7)
    fast = detection_scores(truth, predicted)
    np.testing.assert_allclose(fast.ap_t_c, reference_scores(truth, predicted), rtol=0, atol=1e-9)


@needs_real_unav
def test_matches_the_plain_reimplementation_on_the_real_test_split():
    annotations = read_unav_annotations(REAL_ANNOTATIONS)
    truth = truth_table(annotations.split("test"))
    predicted = random_predictions(truth, np.random.default_rng(1), per_video=6)
    fast = detection_scores(truth, predicted)
    assert fast.ap_t_c.shape == (9, len(set(truth.label.tolist())))
    assert 0 < fast.average_map < 1
    np.testing.assert_allclose(fast.ap_t_c, reference_scores(truth, predicted), rtol=0, atol=1e-9)


def test_perfect_predictions_score_one_and_missing_classes_zero():
    truth = EventTable.from_columns(["a", "b", "b"], [3, 3, 5], [1.0, 2.0, 0.0], [4.0, 9.0, 3.0])
    predicted = EventTable.from_columns(["a", "b", "c"], [3, 3, 9], [1.0, 2.0, 0.0], [4.0, 9.0, 1.0], [0.2, 0.3, 0.9])
    scores = detection_scores(truth, predicted)
    assert scores.classes.tolist() == [3, 5]
    assert np.all(scores.ap_t_c[:, 0] == 1.0) and np.all(scores.ap_t_c[:, 1] == 0.0)
