"""FACS knowledge table and the coding-sheet AU parser."""
import math

import numpy as np
import pytest
import skimage.data

from mertk.au.facs import (
    AU_TABLE,
    MIRROR_INDEX,
    REGION_NAMES,
    AuLabel,
    AuParseError,
    expected_direction,
    format_au_labels,
    parse_au_string,
    region_box,
    region_boxes,
    rigid_reference_box,
)
from mertk.face import find_face, to_gray

SCHEMA_REGIONS = {"inner_brow", "outer_brow", "upper_lid", "lower_lid", "cheek", "nose_wing", "upper_lip", "lip_corner", "chin"}


# --- parser -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "cell, expected",
    [
        ("4+7+L10", [AuLabel(4), AuLabel(7), AuLabel(10, "L")]),
        (4, [AuLabel(4)]),
        (4.0, [AuLabel(4)]),
        ("12", [AuLabel(12)]),
        ("R12", [AuLabel(12, "R")]),
        ("L10+R12", [AuLabel(10, "L"), AuLabel(12, "R")]),
        ("1+2", [AuLabel(1), AuLabel(2)]),
        (" 12 + 15 ", [AuLabel(12), AuLabel(15)]),
        ("R12 + R15", [AuLabel(12, "R"), AuLabel(15, "R")]),
        ("R14A", [AuLabel(14, "R", "A")]),
        ("AU12", [AuLabel(12)]),
        ("AU L12", [AuLabel(12, "L")]),
        ("l10", [AuLabel(10, "L")]),
        ("4+4", [AuLabel(4)]),
        ("", []),
        (None, []),
        (float("nan"), []),
    ],
)
def test_parse_au_string(cell, expected):
    assert parse_au_string(cell) == expected


@pytest.mark.parametrize("cell, bad_token", [("4+x7", "x7"), ("4++7", ""), ("12?", "12?"), ("Q12", "Q12"), (1.5, "1.5"), ("0", "0"), ("123", "123")])
def test_parse_au_string_broken_input_names_the_token(cell, bad_token):
    with pytest.raises(AuParseError) as info:
        parse_au_string(cell)
    assert info.value.token == bad_token
    assert repr(bad_token) in str(info.value)


def test_format_round_trips():
    for cell in ["4+7+L10", "R12", "L10+R12", "R14A"]:
        assert format_au_labels(parse_au_string(cell)) == cell


# --- table consistency ---------------------------------------------------------------------------

def test_region_names_match_schema():
    assert set(REGION_NAMES) == SCHEMA_REGIONS


def test_required_aus_present_with_known_regions_and_unit_directions():
    for au in (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25, 26):
        spec = AU_TABLE[au]
        assert spec.phrase and spec.motions
        for motion in spec.motions:
            assert motion.region in REGION_NAMES
            for side in "LR":
                dx, dy = motion.direction_xy(side)
                assert math.hypot(dx, dy) == pytest.approx(1.0)
            left, right = motion.direction_xy("L"), motion.direction_xy("R")
            assert left[0] == pytest.approx(-right[0]) and left[1] == pytest.approx(right[1])


def test_directions_follow_facs():
    up = lambda d: d[1] < -0.5
    assert up(expected_direction(1, "inner_brow", "L"))
    assert up(expected_direction(2, "outer_brow", "R"))
    assert expected_direction(4, "inner_brow", "L")[1] > 0 and expected_direction(4, "inner_brow", "L")[0] < 0  # down and toward midline
    assert up(expected_direction(6, "cheek", "L")) and up(expected_direction(7, "lower_lid", "L"))
    assert up(expected_direction(9, "nose_wing", "L")) and up(expected_direction(10, "upper_lip", "R"))
    # AU12: subject's left corner (image right) goes up and to +x; the right one up and to -x.
    assert expected_direction(12, "lip_corner", "L")[0] > 0 and up(expected_direction(12, "lip_corner", "L"))
    assert expected_direction(12, "lip_corner", "R")[0] < 0
    assert expected_direction(14, "lip_corner", "L")[0] < 0
    assert expected_direction(15, "lip_corner", "L")[1] > 0.9
    assert up(expected_direction(17, "chin", "R"))
    assert expected_direction(12, "chin", "L") is None
    assert expected_direction(99, "chin", "L") is None


def test_mirror_index_is_an_involution():
    assert (MIRROR_INDEX[MIRROR_INDEX] == np.arange(68)).all()
    assert MIRROR_INDEX[36] == 45 and MIRROR_INDEX[48] == 54 and MIRROR_INDEX[30] == 30


def test_region_boxes_on_a_real_face_are_placed_anatomically():
    points = find_face(to_gray(skimage.data.astronaut())).points_68_2
    boxes = region_boxes(points)
    assert len(boxes) == 18
    midline_x = points[27:31, 0].mean()
    for (region, side), box in boxes.items():
        cx, cy = box.centre_xy
        assert box.x1 > box.x0 and box.y1 > box.y0
        assert (cx > midline_x) == (side == "L"), (region, side)  # subject's left = image right
    y = lambda region: boxes[(region, "L")].centre_xy[1]
    assert y("inner_brow") < y("upper_lid") < y("lower_lid") < y("cheek") < y("lip_corner") < y("chin")
    assert y("nose_wing") < y("upper_lip")
    rigid = rigid_reference_box(points)
    assert rigid.x0 < midline_x < rigid.x1
    mask = boxes[("lip_corner", "L")].mask((512, 512))
    assert mask.any() and mask.sum() < 0.01 * 512 * 512


def test_region_box_rejects_unknown_names():
    points = np.random.default_rng(0).uniform(0, 100, (68, 2))
    with pytest.raises(KeyError, match="forehead"):
        region_box(points, "forehead", "L")
    with pytest.raises(ValueError, match="side"):
        region_box(points, "chin", "B")
