"""FACS knowledge shared by the sample-data generator and the Uni-MER builder.

* Facial regions per side, built from the 68 dlib landmarks and sized relative to the
  inter-ocular distance (IOD), so the same definition works at any resolution.
* A rigid reference region (nose bridge, points 27-30) for head-motion compensation.
* For each Action Unit: the regions it moves, the expected unit motion direction per side and a
  human phrase for captions.
* The AU-cell parser of every corpus' coding sheet is `mertk.au.notation` (re-exported here).

Sides: "L" and "R" are the *subject's* left and right, as in the CASME II sheet. For a frontal,
non-mirrored image the subject's left is on the image's right (larger x). Image coordinates: x to
the right, y down, so "up" is dy < 0. Directions are written once in face terms (`outward` = away
from the face midline, `down`) and turned into image (dx, dy) per side: outward is +x for "L" and
-x for "R", i.e. left and right mirror in x.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SIDES = ("L", "R")
REGION_NAMES = (
    "inner_brow",
    "outer_brow",
    "upper_lid",
    "lower_lid",
    "cheek",
    "nose_wing",
    "upper_lip",
    "lip_corner",
    "chin",
)
RIGID_REGION = "nose_bridge"

# iBUG 68-point left/right mirror pairs (image-left index, image-right index); unlisted points lie on the midline.
_MIRROR_PAIRS = (
    [(i, 16 - i) for i in range(8)]
    + [(17 + i, 26 - i) for i in range(5)]
    + [(31, 35), (32, 34)]
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]
)
MIRROR_INDEX = np.arange(68)
for _a, _b in _MIRROR_PAIRS:
    MIRROR_INDEX[_a], MIRROR_INDEX[_b] = _b, _a


@dataclass(frozen=True)
class RegionSpec:
    """A facial region of the subject's LEFT side (image right); the right side mirrors it.

    The centre is the mean of `anchor_points` shifted by (`offset_out`, `offset_down`) IOD, where
    `offset_out` points away from the face midline. The box is `width` x `height` IOD.
    """

    name: str
    anchor_points: tuple[int, ...]
    offset_out: float
    offset_down: float
    width: float
    height: float


# Subject's-left definitions (points 22-26 brow, 42-47 eye, 35 nostril, 54 mouth corner).
REGION_SPECS: dict[str, RegionSpec] = {
    spec.name: spec
    for spec in (
        RegionSpec("inner_brow", (22, 23), 0.0, 0.02, 0.30, 0.20),
        RegionSpec("outer_brow", (25, 26), -0.02, 0.02, 0.30, 0.20),
        RegionSpec("upper_lid", (43, 44), 0.0, -0.04, 0.30, 0.12),
        RegionSpec("lower_lid", (46, 47), 0.0, 0.06, 0.30, 0.12),
        RegionSpec("cheek", (45, 46, 47), 0.08, 0.45, 0.36, 0.30),
        RegionSpec("nose_wing", (35,), 0.06, -0.08, 0.22, 0.22),
        RegionSpec("upper_lip", (52, 53), 0.0, -0.04, 0.26, 0.16),
        RegionSpec("lip_corner", (54,), 0.04, 0.0, 0.22, 0.22),
        RegionSpec("chin", (8, 57), 0.14, 0.0, 0.26, 0.22),
    )
}
NOSE_BRIDGE_POINTS = (27, 28, 29, 30)


@dataclass(frozen=True)
class RegionBox:
    """An axis-aligned region box in pixels (x0, y0 inclusive; x1, y1 exclusive), float coordinates."""

    region: str
    side: str | None
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def centre_xy(self) -> tuple[float, float]:
        return ((self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2)

    def mask(self, shape_hw: tuple[int, int]) -> np.ndarray:
        """Boolean (H, W) mask of the pixels whose centres fall in the box (clipped to the frame)."""
        height, width = shape_hw
        xs = np.arange(width) + 0.5
        ys = np.arange(height) + 0.5
        in_x = (xs >= self.x0) & (xs < self.x1)
        in_y = (ys >= self.y0) & (ys < self.y1)
        return in_y[:, None] & in_x[None, :]


def _iod(points: np.ndarray) -> float:
    right_eye = points[36:42].mean(axis=0)
    left_eye = points[42:48].mean(axis=0)
    return float(np.linalg.norm(left_eye - right_eye))


def _check_points(points_68_2: np.ndarray) -> np.ndarray:
    points = np.asarray(points_68_2, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got shape {points.shape}")
    return points


def region_box(points_68_2: np.ndarray, region: str, side: str) -> RegionBox:
    """The box of `region` on the subject's `side` ("L" or "R") for these landmarks."""
    if region not in REGION_SPECS:
        raise KeyError(f"unknown facial region {region!r}; known: {', '.join(REGION_NAMES)}")
    if side not in SIDES:
        raise ValueError(f"side must be 'L' or 'R', got {side!r}")
    points = _check_points(points_68_2)
    return _region_box(points, _iod(points), region, side)


def _region_box(points: np.ndarray, iod: float, region: str, side: str) -> RegionBox:
    spec = REGION_SPECS[region]
    anchors = list(spec.anchor_points) if side == "L" else [int(MIRROR_INDEX[i]) for i in spec.anchor_points]
    outward = 1.0 if side == "L" else -1.0
    cx, cy = points[anchors].mean(axis=0)
    cx += outward * spec.offset_out * iod
    cy += spec.offset_down * iod
    half_w, half_h = spec.width * iod / 2, spec.height * iod / 2
    return RegionBox(region, side, float(cx - half_w), float(cy - half_h), float(cx + half_w), float(cy + half_h))


def region_boxes(points_68_2: np.ndarray) -> dict[tuple[str, str], RegionBox]:
    """All facial regions, keyed by (region, side), in REGION_NAMES x SIDES order."""
    points = _check_points(points_68_2)
    iod = _iod(points)
    return {(name, side): _region_box(points, iod, name, side) for name in REGION_NAMES for side in SIDES}


def rigid_reference_box(points_68_2: np.ndarray) -> RegionBox:
    """The nose bridge (points 27-30, 0.24 IOD wide): moves with the head, hardly with expressions."""
    points = _check_points(points_68_2)
    iod = _iod(points)
    bridge = points[list(NOSE_BRIDGE_POINTS)]
    cx = float(bridge[:, 0].mean())
    half_w = 0.12 * iod
    return RegionBox(RIGID_REGION, None, cx - half_w, float(bridge[:, 1].min()), cx + half_w, float(bridge[:, 1].max()))


# --- Action Units -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AuMotion:
    """One region an AU moves: direction in face terms (outward, down), unit length, and a relative weight."""

    region: str
    outward: float
    down: float
    weight: float = 1.0

    def direction_xy(self, side: str) -> tuple[float, float]:
        """Unit (dx, dy) in image coordinates on the subject's `side`."""
        if side not in SIDES:
            raise ValueError(f"side must be 'L' or 'R', got {side!r}")
        norm = math.hypot(self.outward, self.down)
        sign = 1.0 if side == "L" else -1.0
        return (sign * self.outward / norm, self.down / norm)


@dataclass(frozen=True)
class AuSpec:
    au: int
    name: str  # FACS name, e.g. "Inner Brow Raiser"
    phrase: str  # caption phrase, e.g. "inner brow raise"
    motions: tuple[AuMotion, ...]

    @property
    def primary(self) -> AuMotion:
        return max(self.motions, key=lambda motion: motion.weight)


_UP, _DOWN = -1.0, 1.0
_DIAG = 1 / math.sqrt(2)

AU_TABLE: dict[int, AuSpec] = {
    spec.au: spec
    for spec in (
        AuSpec(1, "Inner Brow Raiser", "inner brow raise", (AuMotion("inner_brow", 0.0, _UP),)),
        AuSpec(2, "Outer Brow Raiser", "outer brow raise", (AuMotion("outer_brow", 0.0, _UP),)),
        AuSpec(
            4,
            "Brow Lowerer",
            "brows lowered and drawn together",
            (AuMotion("inner_brow", -0.6, 0.8), AuMotion("outer_brow", 0.0, _DOWN, 0.5)),
        ),
        AuSpec(5, "Upper Lid Raiser", "upper lid raise", (AuMotion("upper_lid", 0.0, _UP),)),
        AuSpec(6, "Cheek Raiser", "cheek raise", (AuMotion("cheek", 0.0, _UP), AuMotion("lower_lid", 0.0, _UP, 0.5))),
        AuSpec(7, "Lid Tightener", "lower lid tightening", (AuMotion("lower_lid", 0.0, _UP),)),
        AuSpec(9, "Nose Wrinkler", "nose wrinkle", (AuMotion("nose_wing", 0.0, _UP), AuMotion("upper_lip", 0.0, _UP, 0.4))),
        AuSpec(10, "Upper Lip Raiser", "upper lip raise", (AuMotion("upper_lip", 0.0, _UP), AuMotion("nose_wing", 0.0, _UP, 0.4))),
        AuSpec(12, "Lip Corner Puller", "lip corner pulled up and out", (AuMotion("lip_corner", _DIAG, -_DIAG), AuMotion("cheek", 0.0, _UP, 0.3))),
        AuSpec(14, "Dimpler", "lip corner tightened inward", (AuMotion("lip_corner", -1.0, 0.0),)),
        AuSpec(15, "Lip Corner Depressor", "lip corner pulled down", (AuMotion("lip_corner", 0.0, _DOWN),)),
        AuSpec(16, "Lower Lip Depressor", "lower lip pulled down", (AuMotion("chin", 0.0, _DOWN, 0.6),)),
        AuSpec(17, "Chin Raiser", "chin raise", (AuMotion("chin", 0.0, _UP),)),
        AuSpec(18, "Lip Pucker", "lips puckered", (AuMotion("lip_corner", -1.0, 0.0, 0.8),)),
        AuSpec(20, "Lip Stretcher", "lips stretched sideways", (AuMotion("lip_corner", 0.98, 0.2),)),
        AuSpec(23, "Lip Tightener", "lips tightened", (AuMotion("lip_corner", -1.0, 0.0, 0.6), AuMotion("upper_lip", 0.0, _DOWN, 0.5))),
        AuSpec(24, "Lip Pressor", "lips pressed together", (AuMotion("upper_lip", 0.0, _DOWN, 0.7), AuMotion("chin", 0.0, _UP, 0.5))),
        AuSpec(25, "Lips Part", "lips parted", (AuMotion("chin", 0.0, _DOWN, 0.5),)),
        AuSpec(26, "Jaw Drop", "jaw dropped", (AuMotion("chin", 0.0, _DOWN),)),
        AuSpec(38, "Nostril Dilator", "nostrils widened", (AuMotion("nose_wing", 1.0, 0.0, 0.6),)),
    )
}


def au_spec(au: int) -> AuSpec | None:
    """The table entry of `au`, or None for an AU without a facial-motion definition here."""
    return AU_TABLE.get(int(au))


def expected_direction(au: int, region: str, side: str) -> tuple[float, float] | None:
    """Unit (dx, dy) in image coordinates that `au` moves `region` on `side`, or None if it does not move it."""
    spec = au_spec(au)
    if spec is None:
        return None
    for motion in spec.motions:
        if motion.region == region:
            return motion.direction_xy(side)
    return None


# --- AU cells of coding sheets: the parser lives in mertk.au.notation (re-exported here) ---

from mertk.au.notation import AuLabel, AuParseError, format_au_labels, parse_au_string  # noqa: E402,F401  (older import path)
