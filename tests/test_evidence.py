"""AU evidence: region statistics, the dual constraint, unlabelled motion, apex estimate."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mertk.au.evidence import (
    EvidenceParameters,
    calibrate_thresholds,
    RegionMotion,
    curve_value,
    estimate_apex,
    find_unlabelled_motion,
    region_motion,
    score_labels,
    supported_aus,
)
from mertk.au.facs import REGION_NAMES, SIDES, AuLabel, RegionBox, expected_direction

PARAMS = EvidenceParameters(min_magnitude=0.8, strong_magnitude=1.5)


def _still() -> dict[tuple[str, str], RegionMotion]:
    return {(r, s): RegionMotion(r, s, 0.01, 0.0, 0.01, 0.0, 0.2, 0.0) for r in REGION_NAMES for s in SIDES}


def _moving(motions: dict, region: str, side: str, dx: float, dy: float, coherence: float = 0.95) -> None:
    magnitude = math.hypot(dx, dy)
    motions[(region, side)] = RegionMotion(region, side, dx, dy, magnitude, math.degrees(math.atan2(-dy, dx)), coherence, 0.01)


def test_region_motion_statistics():
    flow = np.zeros((20, 20, 2), np.float32)
    flow[5:10, 5:10] = (0.0, -2.0)  # straight up, 2 % IOD
    strain = np.full((20, 20), 0.5, np.float32)
    motion = region_motion(flow, strain, RegionBox("inner_brow", "L", 5, 5, 10, 10))
    assert (motion.dx, motion.dy, motion.magnitude) == pytest.approx((0.0, -2.0, 2.0))
    assert motion.direction_deg == pytest.approx(90.0)
    assert motion.coherence == pytest.approx(1.0) and motion.strain == pytest.approx(0.5)
    flow[5:10, 5:7] = (0.0, 2.0)  # two fifths move the other way: coherence drops
    mixed = region_motion(flow, strain, RegionBox("inner_brow", "L", 5, 5, 10, 10))
    assert mixed.coherence == pytest.approx(0.2)
    outside = region_motion(flow, strain, RegionBox("chin", "R", 40, 40, 50, 50))
    assert outside.magnitude == 0.0


def test_labelled_motion_in_the_facs_direction_is_supported():
    motions = _still()
    _moving(motions, "lip_corner", "L", *[2.0 * c for c in expected_direction(12, "lip_corner", "L")])
    evidence = score_labels([AuLabel(12, "L")], list(motions.values()), PARAMS)
    primary = [e for e in evidence if e.primary]
    assert [(e.au, e.side, e.region, e.supported) for e in primary] == [(12, "L", "lip_corner", True)]
    assert primary[0].score == pytest.approx(1.0)
    assert supported_aus(evidence) == [(12, "L", pytest.approx(2.0))]


def test_wrong_direction_or_no_motion_is_not_supported():
    motions = _still()
    _moving(motions, "lip_corner", "L", 0.0, 2.0)  # down: AU15, not AU12
    evidence = score_labels([AuLabel(12, None)], list(motions.values()), PARAMS)
    by_side = {e.side: e for e in evidence if e.primary}
    assert set(by_side) == {"L", "R"}  # an unsided label is checked on both sides
    assert not by_side["L"].supported and by_side["L"].score < 0
    assert not by_side["R"].supported and abs(by_side["R"].score) < 0.05  # still: score damped to ~0
    assert supported_aus(evidence) == []


def test_mirrored_sides_and_both_sided_support():
    motions = _still()
    for side in SIDES:
        _moving(motions, "inner_brow", side, *[1.5 * c for c in expected_direction(4, "inner_brow", side)])
    evidence = score_labels([AuLabel(4)], list(motions.values()), PARAMS)
    assert all(e.supported for e in evidence if e.primary)
    assert supported_aus(evidence) == [(4, None, pytest.approx(1.5))]


def test_unlabelled_strong_motion_is_recorded_with_best_fitting_au():
    motions = _still()
    _moving(motions, "inner_brow", "R", 0.0, -2.5)  # AU1-like, not labelled
    _moving(motions, "lip_corner", "L", 1.4, -1.4)  # labelled AU12 covers it
    _moving(motions, "cheek", "R", 1.0, 1.0, coherence=0.2)  # strong but incoherent: noise
    found = find_unlabelled_motion(list(motions.values()), [AuLabel(12, "L")], PARAMS)
    assert [(u.region, u.side, u.au) for u in found] == [("inner_brow", "R", 1)]
    assert found[0].score == pytest.approx(1.0)
    _moving(motions, "chin", "L", 2.0, 0.0)  # sideways: no AU's direction fits
    found = find_unlabelled_motion(list(motions.values()), [AuLabel(12, "L")], PARAMS)
    assert ("chin", "L", None) in [(u.region, u.side, u.au) for u in found]


def test_apex_estimate_and_curve_value():
    assert estimate_apex([10, 14, 18, 22], [0.0, 1.0, 3.0, 2.0]) == 18
    assert estimate_apex([10, 14], [1.0, 1.0]) == 10  # earliest on a tie
    with pytest.raises(ValueError):
        estimate_apex([], [])
    motions = list(_still().values())
    assert curve_value(motions) == pytest.approx(0.01)


def test_thresholds_are_calibrated_on_the_noise_floor():
    magnitudes = [0.05] * 80 + [1.0] * 20  # most regions still
    params = calibrate_thresholds(EvidenceParameters(), magnitudes)
    assert params.min_magnitude == pytest.approx(6 * 0.05) and params.strong_magnitude == pytest.approx(1.5 * 6 * 0.05)
    assert calibrate_thresholds(EvidenceParameters(), [0.0] * 10).min_magnitude == pytest.approx(0.1)  # floor
    fixed = calibrate_thresholds(EvidenceParameters(min_magnitude=0.7), magnitudes)
    assert (fixed.min_magnitude, fixed.strong_magnitude) == (0.7, pytest.approx(1.05))
    with pytest.raises(ValueError, match="not set"):
        score_labels([AuLabel(12)], list(_still().values()), EvidenceParameters())


def test_curve_values_from_box_means_match_region_statistics():
    from mertk.au.evidence import box_means, curve_values_from_region_means, measure_regions

    rng = np.random.default_rng(0)
    frames = rng.normal(0, 0.3, (3, 40, 40, 2)).astype(np.float32)
    frames[0, 5:15, 5:15] += (0.0, -2.0)
    frames[2, 22:30, 20:30] += (1.5, 0.0)
    boxes = [RegionBox("inner_brow", "L", 5, 5, 15, 15), RegionBox("chin", "L", 20, 20, 30, 35), RegionBox("cheek", "R", 0, 30, 40, 40), RegionBox("cheek", "L", 50, 50, 60, 60)]
    means_rf2, present = box_means(frames, boxes, row_axis=1)
    assert means_rf2.shape == (4, 3, 2) and present.tolist() == [True, True, True, False]
    assert np.array_equal(box_means(np.stack(list(frames), axis=2), boxes)[0], means_rf2)
    values = curve_values_from_region_means(means_rf2.transpose(1, 0, 2), top=2)
    direct = [curve_value(measure_regions(frame, np.zeros((40, 40), np.float32), boxes), top=2) for frame in frames]
    assert values == pytest.approx(direct, rel=1e-6)
    assert values[0] > values[1] and values[2] > values[1]


def test_spill_from_a_supported_neighbour_is_not_unlabelled_motion():
    motions = _still()
    _moving(motions, "inner_brow", "L", 0.0, -2.0)  # labelled AU1, supported
    _moving(motions, "upper_lid", "L", 0.0, -0.9)  # dragged along: spill
    _moving(motions, "upper_lid", "R", 0.0, -0.9)  # same motion, but nothing moves next to it
    labels = [AuLabel(1, "L")]
    evidence = score_labels(labels, list(motions.values()), EvidenceParameters(min_magnitude=0.5, strong_magnitude=0.8))
    params = EvidenceParameters(min_magnitude=0.5, strong_magnitude=0.8)
    found = find_unlabelled_motion(list(motions.values()), labels, params, evidence)
    assert [(u.region, u.side) for u in found] == [("upper_lid", "R")]
    _moving(motions, "upper_lid", "L", 0.0, -1.6)  # comparable to the brow: a motion of its own (AU5)
    found = find_unlabelled_motion(list(motions.values()), labels, params, evidence)
    assert ("upper_lid", "L", 5) in [(u.region, u.side, u.au) for u in found]


def test_region_motion_takes_exactly_the_pixels_of_the_box_mask():
    rng = np.random.default_rng(3)
    flow = rng.normal(size=(40, 50, 2)).astype(np.float32)
    strain = rng.random((40, 50)).astype(np.float32)
    for x0, y0, x1, y1 in [(3.5, 2.49, 17.51, 30.0), (-4.0, -2.0, 6.2, 5.5), (44.6, 35.4, 60.0, 70.0), (10.0, 10.0, 10.4, 10.4)]:
        box = RegionBox("cheek", "L", x0, y0, x1, y1)
        mask = box.mask(flow.shape[:2])
        motion = region_motion(flow, strain, box)
        if not mask.any():
            assert motion.magnitude == 0.0
            continue
        vectors = flow[mask].astype(np.float64)
        assert (motion.dx, motion.dy) == tuple(vectors.mean(axis=0))
        assert motion.strain == float(strain[mask].mean())
        assert motion.coherence == pytest.approx(math.hypot(motion.dx, motion.dy) / np.linalg.norm(vectors, axis=1).mean())


def test_fast_median_is_numpy_median_bit_for_bit():
    from mertk.flow import median_of_rows

    rng = np.random.default_rng(4)
    for count in (1, 2, 3, 230, 231):
        values = rng.normal(size=(count, 2)).astype(np.float32)
        assert np.array_equal(median_of_rows(values), np.median(values, axis=0).astype(np.float32))
        frames = rng.normal(size=(count, 5, 2)).astype(np.float32)  # one median per frame
        assert np.array_equal(median_of_rows(frames), np.median(frames, axis=0).astype(np.float32))
