"""Captions and instructions: only supported motion, calibrated intensity, seeded variety."""
from __future__ import annotations

import pytest

from mertk.captions import INSTRUCTION_TASKS, MotionSummary, SupportedMotion, build_instructions, calibrate_intensity_bins, compose_caption
from mertk.captions.instructions import RegionAnswer
from mertk.captions.intensity import FALLBACK_EDGES


def summary(sample_id="sub01/EP01", supported=(SupportedMotion(12, "L", 2.0), SupportedMotion(6, None, 0.9)), unsupported=(4,)):
    regions = (
        RegionAnswer("lip_corner", "L", 2.0, 45.0, 12, False),
        RegionAnswer("inner_brow", "R", 0.1, 0.0, None, False),
        RegionAnswer("chin", "R", 2.2, 90.0, None, True),
    )
    return MotionSummary(sample_id, "happiness", tuple(supported), tuple(unsupported), regions, 10, 20, 40, True, 21)


def test_intensity_bins_are_calibrated_quantiles():
    bins = calibrate_intensity_bins([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert bins.edges == pytest.approx((2.666667, 4.333333))
    assert [bins.word(m) for m in (1.0, 3.0, 6.0)] == ["slight", "moderate", "pronounced"]
    assert bins.calibrated_on == 6
    fallback = calibrate_intensity_bins([1.0])
    assert fallback.edges == FALLBACK_EDGES and fallback.calibrated_on == 0
    with pytest.raises(ValueError):
        calibrate_intensity_bins([1.0, 2.0, 3.0], quantiles=(0.7, 0.2))


def test_caption_states_only_supported_motion_with_side_and_intensity():
    bins = calibrate_intensity_bins([0.5, 1.0, 1.5, 2.5, 3.0])
    caption = compose_caption(summary(), bins)
    assert "lip corner pulled up and out on the left side (AU12)" in caption
    assert "cheek raise on both sides (AU6)" in caption
    assert f"{bins.word(2.0)} lip corner" in caption and f"{bins.word(0.9)} cheek" in caption
    assert "AU4" not in caption and "brow" not in caption  # labelled, not supported: not described
    none = compose_caption(summary(supported=()), bins)
    assert "No facial motion is supported" in none


def test_instructions_cover_the_tasks_and_are_seed_deterministic():
    bins = calibrate_intensity_bins([0.5, 1.0, 1.5, 2.5, 3.0])
    pairs = build_instructions(summary(), bins, seed=0)
    assert [p.task for p in pairs] == list(INSTRUCTION_TASKS) and len(pairs) >= 4
    assert pairs == build_instructions(summary(), bins, seed=0)
    by_task = {p.task: p for p in pairs}
    assert "AU12 (Lip Corner Puller) on the left side" in by_task["name_aus"].response
    assert "AU4" in by_task["name_aus"].response and "does not show" in by_task["name_aus"].response
    assert by_task["classify_emotion"].response.startswith("Happiness.") and "lip corner" in by_task["classify_emotion"].response
    assert "apex at frame 20 (estimated" in by_task["temporal_question"].response
    # wording varies across samples and seeds
    questions = {build_instructions(summary(f"sub01/EP{i:02d}"), bins, seed=s)[0].instruction for i in range(20) for s in (0, 1)}
    assert len(questions) >= 3


def test_region_question_answers_follow_the_dual_constraint():
    bins = calibrate_intensity_bins([])
    answers = {}
    for i in range(60):
        pair = build_instructions(summary(f"s/{i}"), bins, seed=0)[3]
        assert pair.task == "region_question"
        answers[pair.instruction] = pair.response
    texts = " | ".join(answers.values())
    assert "Yes. The left lip corner moves up and outward" in texts
    assert "no labelled Action Unit accounts for it" in texts  # the unlabelled chin motion
    assert "No supported motion: the right inner brow" in texts
