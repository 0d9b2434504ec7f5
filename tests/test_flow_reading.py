"""Alternatives settled by the flow, and AUs read from the flow alone, on planted region motion."""
from __future__ import annotations

import math

from mertk.au.evidence import EvidenceParameters, RegionMotion
from mertk.au.facs import AU_TABLE, REGION_NAMES, SIDES
from mertk.au.flow_reading import flow_only_aus, settle_alternatives
from mertk.au.notation import AuLabel, parse_au_cell

PARAMS = EvidenceParameters(min_magnitude=0.5, strong_magnitude=0.75)


def _motion(region: str, side: str, dx: float, dy: float, coherence: float = 0.9) -> RegionMotion:
    magnitude = math.hypot(dx, dy)
    return RegionMotion(region, side, dx, dy, magnitude, math.degrees(math.atan2(-dy, dx)), coherence, 0.0)


def face(moving: dict[tuple[str, str], tuple[float, float]]) -> list[RegionMotion]:
    """Every region still (a little noise) except `moving` ((region, side) -> dx, dy in % IOD)."""
    return [_motion(r, s, *moving.get((r, s), (0.02, -0.01)), coherence=0.9 if (r, s) in moving else 0.2) for r in REGION_NAMES for s in SIDES]


def _au_motion(au: int, side: str, strength: float = 2.0) -> dict:
    return {(m.region, side): tuple(strength * m.weight * v for v in m.direction_xy(side)) for m in AU_TABLE[au].motions}


def test_the_supported_option_is_chosen():
    motions = face(_au_motion(12, "L"))
    (settlement,) = settle_alternatives(parse_au_cell("L12 or L14").alternatives, motions, PARAMS)
    assert settlement.chosen == 0 and settlement.chosen_labels == (AuLabel(12, "L"),)
    assert settlement.supported == (True, False) and settlement.scores[0] > 0.9 > settlement.scores[1]
    assert settlement.text.startswith("L12 or L14 -> L12 (flow scores")
    motions = face(_au_motion(14, "L"))
    assert settle_alternatives(parse_au_cell("L12 or L14").alternatives, motions, PARAMS)[0].chosen_labels == (AuLabel(14, "L"),)


def test_a_group_the_flow_does_not_support_stays_unsettled():
    (settlement,) = settle_alternatives(parse_au_cell("(R6 or R12)+R15").alternatives, face({}), PARAMS)
    assert settlement.chosen is None and settlement.chosen_labels == () and "none supported" in settlement.text


def test_flow_only_names_the_planted_aus():
    moving = {**_au_motion(12, "L"), **_au_motion(12, "R"), **_au_motion(1, "L", 1.5), **_au_motion(1, "R", 1.5)}
    found = flow_only_aus(face(moving), PARAMS)
    assert [(f.au, f.side) for f in found][:2] == [(12, None), (1, None)]
    assert found[0].magnitude > found[1].magnitude


def test_flow_only_keeps_a_one_sided_motion_and_finds_nothing_on_a_still_face():
    found = flow_only_aus(face(_au_motion(15, "R")), PARAMS)
    assert [(f.au, f.side) for f in found] == [(15, "R")]
    assert flow_only_aus(face({}), PARAMS) == []


def test_both_sides_beat_one_and_an_au_beats_its_neighbours_drag():
    both = face({**_au_motion(12, "L"), **_au_motion(12, "R")})
    (settlement,) = settle_alternatives(parse_au_cell("A/L12").alternatives, both, PARAMS)
    assert settlement.supported == (True, True) and settlement.chosen_labels == (AuLabel(12, None, None, "A"),)
    one = face(_au_motion(12, "L"))
    assert settle_alternatives(parse_au_cell("A/L12").alternatives, one, PARAMS)[0].chosen_labels == (AuLabel(12, "L"),)
    # AU12 lifts the cheek too (its secondary region): the lip corner's stronger motion decides
    dragged = face({**_au_motion(12, "R", 3.0), ("cheek", "R"): (0.0, -1.2)})
    (settlement,) = settle_alternatives(parse_au_cell("(R6 or R12)+R15").alternatives, dragged, PARAMS)
    assert settlement.supported == (True, True) and settlement.chosen_labels == (AuLabel(12, "R"),)
