"""AVVP metrics: hand-computed cases, an independent loop implementation, layout round trips."""
from __future__ import annotations

import numpy as np
import pytest

from mertk.corpora.llp_annotations import LLP_CLASS_INDEX, NUM_CLASSES, NUM_SEGMENTS
from mertk.metrics.avvp import (
    METRIC_KEYS,
    EvalRowError,
    avvp_scores,
    event_counts,
    matrices_to_rows,
    matrix_to_rows,
    per_class_segment_scores,
    run_intervals,
    rows_to_matrices,
    segment_counts,
    video_f1,
)


def empty(videos: int = 1) -> np.ndarray:
    return np.zeros((videos, NUM_CLASSES, NUM_SEGMENTS), dtype=bool)


def with_runs(matrix: np.ndarray, video: int, class_index: int, *runs: tuple[int, int]) -> np.ndarray:
    for onset, offset in runs:
        matrix[video, class_index, onset:offset] = True
    return matrix


def video_scores(counts_fn, pred, gt) -> float:
    return float(video_f1(counts_fn(pred, gt))[0])


# --- hand-computed cases ------------------------------------------------------------------------
def test_video_with_no_event_scores_one_everywhere():
    scores = avvp_scores(empty(), empty(), empty(), empty())
    for level in (scores.segment, scores.event):
        assert level == {key: 100.0 for key in METRIC_KEYS}
    assert scores.videos == 1


def test_prediction_on_an_empty_video_scores_zero():
    pred = with_runs(empty(), 0, 3, (2, 4))
    scores = avvp_scores(pred, empty(), empty(), empty())
    assert scores.segment["audio"] == 0.0 and scores.event["audio"] == 0.0
    assert scores.segment["visual"] == 100.0  # no visual class occurs: 1.0
    assert scores.segment["audio_visual"] == 100.0  # AV pred = audio AND visual = nothing


def test_run_touching_the_last_segment():
    gt = with_runs(empty(), 0, 0, (7, 10))
    assert run_intervals(gt[0, 0]) == [(7, 10)]
    good = with_runs(empty(), 0, 0, (8, 10))  # IoU 2/3
    assert video_scores(event_counts, good, gt) == 1.0
    assert video_scores(segment_counts, good, gt) == pytest.approx(4 / 5)  # TP 2, FN 1
    bad = with_runs(empty(), 0, 0, (9, 10))  # IoU 1/3: one FP and one FN
    counts = event_counts(bad, gt)
    assert (counts.tp[0, 0], counts.fp[0, 0], counts.fn[0, 0]) == (0, 1, 1)
    assert video_scores(event_counts, bad, gt) == 0.0


@pytest.mark.parametrize(
    "pred_run, gt_run, matched",
    [
        ((0, 2), (0, 4), True),  # IoU 2/4 = 0.5 exactly
        ((0, 3), (1, 4), True),  # 2 / 4 = 0.5 exactly
        ((0, 5), (5, 10), False),  # touching, no overlap
        ((0, 1), (0, 3), False),  # 1/3
        ((3, 7), (2, 10), True),  # 4/8 = 0.5 exactly, GT touching the end
        ((3, 6), (2, 10), False),  # 3/8
    ],
)
def test_iou_threshold_is_inclusive_at_one_half(pred_run, gt_run, matched):
    pred = with_runs(empty(), 0, 5, pred_run)
    gt = with_runs(empty(), 0, 5, gt_run)
    counts = event_counts(pred, gt)
    assert (counts.tp[0, 5], counts.fp[0, 5], counts.fn[0, 5]) == ((1, 0, 0) if matched else (0, 1, 1))


def test_several_runs_of_one_class():
    gt = with_runs(empty(), 0, 2, (0, 2), (4, 6), (8, 10))
    pred = with_runs(empty(), 0, 2, (0, 2), (4, 5), (7, 8))
    # (0,2)-(0,2) IoU 1: TP; (4,5)-(4,6) IoU 0.5: TP; (7,8) overlaps nothing: FP; GT (8,10) missed: FN
    counts = event_counts(pred, gt)
    assert (counts.tp[0, 2], counts.fp[0, 2], counts.fn[0, 2]) == (2, 1, 1)
    assert video_scores(event_counts, pred, gt) == pytest.approx(4 / 6)
    # segment level: TP 3 (0,1,4), FP 1 (7), FN 3 (5,8,9)
    assert video_scores(segment_counts, pred, gt) == pytest.approx(6 / 10)


def test_two_predicted_runs_may_match_one_ground_truth_run():
    gt = with_runs(empty(), 0, 0, (0, 4))
    pred = with_runs(empty(), 0, 0, (0, 2), (3, 4))  # IoU 2/4 and 1/4
    counts = event_counts(pred, gt)
    assert (counts.tp[0, 0], counts.fp[0, 0], counts.fn[0, 0]) == (1, 1, 0)
    gt2 = with_runs(empty(), 0, 0, (0, 2), (3, 5))
    pred2 = with_runs(empty(), 0, 0, (0, 5))  # one long run: IoU 2/5 and 2/5 with each
    counts = event_counts(pred2, gt2)
    assert (counts.tp[0, 0], counts.fp[0, 0], counts.fn[0, 0]) == (0, 1, 2)


def test_mean_over_occurring_classes_only():
    gt = with_runs(empty(), 0, 0, (0, 10))
    pred = with_runs(with_runs(empty(), 0, 0, (0, 10)), 0, 1, (0, 3))  # class 1 is a false alarm
    assert video_scores(segment_counts, pred, gt) == pytest.approx(0.5)  # (1 + 0) / 2; 23 absent classes ignored


def test_audio_visual_is_audio_and_visual():
    gt_a = with_runs(empty(), 0, 0, (0, 5))
    gt_v = with_runs(empty(), 0, 0, (3, 8))  # GT AV = (3, 5)
    pred_a = with_runs(empty(), 0, 0, (0, 5))
    pred_v = with_runs(empty(), 0, 0, (3, 10))  # pred AV = (3, 5)
    scores = avvp_scores(pred_a, pred_v, gt_a, gt_v)
    assert scores.segment["audio"] == 100.0
    assert scores.segment["visual"] == pytest.approx(100 * 10 / 12)  # TP 5, FP 2
    assert scores.segment["audio_visual"] == 100.0
    assert scores.event["visual"] == pytest.approx(100.0)  # IoU 5/7
    assert scores.segment["type"] == pytest.approx((100 + 100 * 10 / 12 + 100) / 3)


def test_event_at_av_pools_audio_and_visual_counts_per_class():
    gt_a = with_runs(empty(), 0, 0, (0, 3))
    pred_a = with_runs(empty(), 0, 0, (0, 3))  # audio: TP 3 segments
    pred_v = with_runs(empty(), 0, 0, (9, 10))  # visual: FP 1 segment, no visual GT
    scores = avvp_scores(pred_a, pred_v, gt_a, empty())
    # pooled over modalities: TP 3, FP 1, FN 0 -> 6/7; not the mean of audio (1) and visual (0)
    assert scores.segment["event"] == pytest.approx(100 * 6 / 7)
    assert scores.segment["audio"] == 100.0 and scores.segment["visual"] == 0.0
    # event level: audio run TP, visual run FP -> pooled 2 / 3
    assert scores.event["event"] == pytest.approx(100 * 2 / 3)


def test_mean_over_videos():
    gt = with_runs(empty(2), 0, 0, (0, 10))
    pred = empty(2)  # video 0 misses its event (0), video 1 has none and predicts none (1)
    scores = avvp_scores(pred, pred, gt, gt)
    assert scores.segment["audio"] == pytest.approx(50.0)
    assert scores.event["visual"] == pytest.approx(50.0)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="shape"):
        avvp_scores(empty(2), empty(1), empty(1), empty(1))
    with pytest.raises(ValueError, match=r"\(videos, 25, 10\)"):
        avvp_scores(np.zeros((1, 10, 25)), empty(), empty(), empty())
    with pytest.raises(ValueError, match="0/1 values"):
        avvp_scores(np.full((1, 25, 10), 0.3), empty(), empty(), empty())
    ones = avvp_scores(np.ones((1, 25, 10), dtype=np.int64), empty(), np.ones((1, 25, 10)), empty())
    assert ones.segment["audio"] == 100.0


# --- an independent, loop-based reading of the protocol ---------------------------------------------
def loop_runs(row) -> list[set[int]]:
    runs, current = [], set()
    for t in range(NUM_SEGMENTS):
        if row[t]:
            current.add(t)
        elif current:
            runs.append(current)
            current = set()
    if current:
        runs.append(current)
    return runs


def loop_event_counts(pred_row, gt_row) -> tuple[int, int, int]:
    pred_runs, gt_runs = loop_runs(pred_row), loop_runs(gt_row)

    def hit(run, others):
        return any(2 * len(run & other) >= len(run | other) for other in others)

    tp = sum(hit(run, gt_runs) for run in pred_runs)
    fn = sum(not hit(run, pred_runs) for run in gt_runs)
    return tp, len(pred_runs) - tp, fn


def loop_segment_counts(pred_row, gt_row) -> tuple[int, int, int]:
    tp = sum(bool(p and g) for p, g in zip(pred_row, gt_row))
    fp = sum(bool(p and not g) for p, g in zip(pred_row, gt_row))
    fn = sum(bool(g and not p) for p, g in zip(pred_row, gt_row))
    return tp, fp, fn


def loop_f(per_class: list[tuple[int, int, int]]) -> float:
    scores = [2 * tp / (2 * tp + fp + fn) for tp, fp, fn in per_class if tp + fp + fn > 0]
    return sum(scores) / len(scores) if scores else 1.0


def loop_scores(pa, pv, ga, gv) -> dict:
    result = {}
    for level, counter in (("segment", loop_segment_counts), ("event", loop_event_counts)):
        per_video = {key: [] for key in ("audio", "visual", "audio_visual", "event")}
        for v in range(pa.shape[0]):
            a = [counter(pa[v, c], ga[v, c]) for c in range(NUM_CLASSES)]
            vis = [counter(pv[v, c], gv[v, c]) for c in range(NUM_CLASSES)]
            av = [counter(pa[v, c] & pv[v, c], ga[v, c] & gv[v, c]) for c in range(NUM_CLASSES)]
            pooled = [tuple(x + y for x, y in zip(ca, cv)) for ca, cv in zip(a, vis)]
            for key, counts in (("audio", a), ("visual", vis), ("audio_visual", av), ("event", pooled)):
                per_video[key].append(loop_f(counts))
        means = {key: 100 * sum(values) / len(values) for key, values in per_video.items()}
        means["type"] = (means["audio"] + means["visual"] + means["audio_visual"]) / 3
        result[level] = means
    return result


@pytest.mark.parametrize("seed", range(4))
def test_vectorised_metrics_agree_with_a_loop_implementation(seed):
    rng = np.random.default_rng(seed)
    videos = 40
    arrays = []
    for _ in range(4):
        # sparse classes with runs of various lengths
        active_classes = rng.random((videos, NUM_CLASSES, 1)) < 0.12
        arrays.append(active_classes & (rng.random((videos, NUM_CLASSES, NUM_SEGMENTS)) < 0.6))
    pa, pv, ga, gv = arrays
    pa[: videos // 4] = ga[: videos // 4]  # some perfect videos
    pv[videos - 3 :] = False
    gv[videos - 3 :] = False  # some visually empty videos
    scores = avvp_scores(pa, pv, ga, gv).to_dict()
    expected = loop_scores(pa, pv, ga, gv)
    for level in ("segment", "event"):
        for key in METRIC_KEYS:
            assert scores[level][key] == pytest.approx(expected[level][key], abs=1e-9), (level, key)


# --- per-class scores and eval-layout rows ---------------------------------------------------------
def test_per_class_segment_scores_pool_over_videos():
    gt = with_runs(with_runs(empty(2), 0, 0, (0, 4)), 1, 0, (0, 4))
    pred = with_runs(empty(2), 0, 0, (0, 2))
    per_class = per_class_segment_scores(pred, gt)
    assert per_class.precision[0] == 1.0
    assert per_class.recall[0] == pytest.approx(2 / 8)
    assert per_class.f1[0] == pytest.approx(4 / 10)
    assert per_class.support[0] == 8
    assert np.isnan(per_class.f1[1])  # neither predicted nor true
    assert per_class.rows()[0]["class"] == "Speech"


def test_matrix_rows_round_trip():
    rng = np.random.default_rng(3)
    audio = rng.random((3, NUM_CLASSES, NUM_SEGMENTS)) < 0.2
    visual = rng.random((3, NUM_CLASSES, NUM_SEGMENTS)) < 0.2
    names = ["aaaaaaaaaaa_0_10", "bbbbbbbbbbb_0_10", "ccccccccccc_0_10"]
    rows = matrices_to_rows(names, audio, visual)
    back_audio, back_visual, outside = rows_to_matrices(rows + [dict(rows[0], filename="zzzzzzzzzzz_0_10")], names)
    assert (back_audio == audio).all() and (back_visual == visual).all()
    assert outside == 1


def test_matrix_to_rows_layout():
    matrix = empty()[0]
    matrix[LLP_CLASS_INDEX["Dog"], 2:5] = True
    matrix[LLP_CLASS_INDEX["Dog"], 9] = True
    assert matrix_to_rows("BjCEufrlXm4_20_30", "audio", matrix) == [
        {"filename": "BjCEufrlXm4_20_30", "modality": "audio", "event_labels": "Dog", "onset": 2, "offset": 5},
        {"filename": "BjCEufrlXm4_20_30", "modality": "audio", "event_labels": "Dog", "onset": 9, "offset": 10},
    ]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"modality": "sound"}, "modality"),
        ({"event_labels": "Dogs"}, "unknown class 'Dogs'"),
        ({"onset": 5, "offset": 5}, "onset < offset"),
        ({"offset": 11}, "offset <= 10"),
        ({"onset": "x"}, "integer seconds"),
    ],
)
def test_bad_eval_rows_name_the_row(change, message):
    good = {"filename": "BjCEufrlXm4_20_30", "modality": "audio", "event_labels": "Dog", "onset": 0, "offset": 3}
    with pytest.raises(EvalRowError, match=message) as error:
        rows_to_matrices([good, dict(good, **change)], ["BjCEufrlXm4_20_30"], source="pred.tsv")
    assert "pred.tsv: row 1" in str(error.value)
