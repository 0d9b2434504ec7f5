"""AU evidence from optical flow: region motion statistics and the dual constraint.

Stage inputs are a head-motion-compensated flow field and its strain on the aligned face crop,
the region boxes in crop pixels and the crop's inter-ocular distance (IOD). All motion figures
are in percent of IOD, image axes (x right, y down); direction_deg = atan2(-dy, dx) (90 = up).

Dual constraint: a labelled AU is *supported* in one of its regions on one side when the
region's mean motion is at least `min_magnitude` and points within acos(`min_cosine`) of the
FACS direction. score = cosine * min(1, magnitude / min_magnitude), in [-1, 1]: direction
agreement, damped where the motion is too small to mean anything.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from mertk.au.facs import AU_TABLE, SIDES, AuLabel, RegionBox, au_spec


@dataclass(frozen=True)
class EvidenceParameters:
    """Thresholds of the dual constraint (magnitudes in percent of inter-ocular distance).

    `min_magnitude` / `strong_magnitude` left as None are calibrated on the corpus by
    `calibrate_thresholds`: flow noise differs between cameras, resolutions and compression, so
    "still" is defined relative to the run's noise floor (the median magnitude of all regions of
    all samples: most regions of a micro-expression do not move).
    """

    min_magnitude: float | None = None  # a region moving less than this is "still"
    min_cosine: float = 0.5  # within 60 degrees of the FACS direction
    strong_magnitude: float | None = None  # unlabelled motion is recorded from this magnitude on
    min_coherence: float = 0.5  # unlabelled motion must also be a coherent shift, not noise
    noise_multiple: float = 6.0  # calibrated min_magnitude = noise_multiple x noise floor
    strong_factor: float = 1.5  # calibrated strong_magnitude = strong_factor x min_magnitude
    floor_magnitude: float = 0.1  # calibrated min_magnitude is never below this
    spill_ratio: float = 1.5  # motion this many times weaker than a supported neighbour ...
    spill_cosine: float = 0.8  # ... and (anti)parallel to it is that neighbour's spill, not new motion

    @property
    def calibrated(self) -> bool:
        return self.min_magnitude is not None and self.strong_magnitude is not None


def calibrate_thresholds(params: EvidenceParameters, region_magnitudes: Sequence[float]) -> EvidenceParameters:
    """Fill in the thresholds the user left open from the run's region magnitudes."""
    from dataclasses import replace

    noise_floor = float(np.median(region_magnitudes)) if len(region_magnitudes) else 0.0
    min_magnitude = params.min_magnitude
    if min_magnitude is None:
        min_magnitude = round(max(params.floor_magnitude, params.noise_multiple * noise_floor), 6)
    strong = params.strong_magnitude
    if strong is None:
        strong = round(params.strong_factor * min_magnitude, 6)
    return replace(params, min_magnitude=min_magnitude, strong_magnitude=strong)


def _require_calibrated(params: EvidenceParameters) -> None:
    if not params.calibrated:
        raise ValueError("evidence thresholds are not set: pass min_magnitude and strong_magnitude or use calibrate_thresholds")


@dataclass(frozen=True)
class RegionMotion:
    """Mean onset->apex motion of one region on one side (percent of IOD)."""

    region: str
    side: str | None
    dx: float
    dy: float
    magnitude: float
    direction_deg: float
    coherence: float
    strain: float


@dataclass(frozen=True)
class AuEvidence:
    """One labelled AU in one region on one side: agreement of measured and expected motion."""

    au: int
    side: str | None
    region: str
    score: float
    supported: bool
    magnitude: float
    primary: bool  # the AU's main region (captions speak of the AU when this row is supported)


@dataclass(frozen=True)
class UnlabelledMotion:
    """Strong, coherent motion in a region no labelled AU covers; `au` fits its direction best."""

    region: str
    side: str | None
    au: int | None
    magnitude: float
    score: float


def _first_centre_at_or_after(edge: float, count: int) -> int:
    """The first of `count` pixels whose centre (i + 0.5) is >= edge, clipped to [0, count]."""
    return min(max(math.ceil(edge - 0.5), 0), count)


def box_slices(box: RegionBox, shape_hw: tuple[int, int]) -> tuple[slice, slice]:
    """Row and column slices of exactly the pixels `box.mask(shape_hw)` selects (centres inside the box)."""
    height, width = shape_hw
    columns = slice(_first_centre_at_or_after(box.x0, width), _first_centre_at_or_after(box.x1, width))
    rows = slice(_first_centre_at_or_after(box.y0, height), _first_centre_at_or_after(box.y1, height))
    return rows, columns


def box_means(values: np.ndarray, boxes: Sequence[RegionBox], row_axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per box, the float64 mean of its pixels (those `box.mask` selects): `values` has its image
    rows on `row_axis` and columns on the next axis; the means keep the other axes, stacked as
    (R, ...). Also (R,) True where the box has pixels (an empty box's mean is 0). Slicing, not
    masks: boxes are rectangles."""
    height, width = values.shape[row_axis], values.shape[row_axis + 1]
    other_shape = values.shape[:row_axis] + values.shape[row_axis + 2 :]
    means = np.zeros((len(boxes),) + other_shape)
    present = np.zeros(len(boxes), bool)
    leading = (slice(None),) * row_axis
    for index, box in enumerate(boxes):
        rows, columns = box_slices(box, (height, width))
        if rows.stop > rows.start and columns.stop > columns.start:
            means[index] = values[leading + (rows, columns)].mean(axis=(row_axis, row_axis + 1), dtype=np.float64)
            present[index] = True
    return means, present


def region_motion(flow_pct_hw2: np.ndarray, strain_hw: np.ndarray, box: RegionBox) -> RegionMotion:
    """Statistics of one region box; `flow_pct_hw2` already in percent of IOD.

    The box is a rectangle, so its pixels are taken by slicing (same pixels and order as the
    box's boolean mask, several times cheaper)."""
    rows, columns = box_slices(box, flow_pct_hw2.shape[:2])
    vectors_n2 = flow_pct_hw2[rows, columns].reshape(-1, 2).astype(np.float64)
    if vectors_n2.shape[0] == 0:
        return RegionMotion(box.region, box.side, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    dx, dy = vectors_n2.mean(axis=0)
    magnitude = math.hypot(dx, dy)
    mean_length = float(np.sqrt(np.einsum("ij,ij->i", vectors_n2, vectors_n2)).mean())
    coherence = magnitude / mean_length if mean_length > 1e-9 else 0.0
    return RegionMotion(
        region=box.region,
        side=box.side,
        dx=float(dx),
        dy=float(dy),
        magnitude=float(magnitude),
        direction_deg=float(math.degrees(math.atan2(-dy, dx))),
        coherence=float(min(1.0, coherence)),
        strain=float(strain_hw[rows, columns].mean()),
    )


def measure_regions(flow_pct_hw2: np.ndarray, strain_hw: np.ndarray, boxes: Iterable[RegionBox]) -> list[RegionMotion]:
    return [region_motion(flow_pct_hw2, strain_hw, box) for box in boxes]


def _agreement(motion: RegionMotion, direction_xy: tuple[float, float], params: EvidenceParameters) -> tuple[float, float]:
    """(cosine, score) of a region's motion against a unit direction."""
    if motion.magnitude <= 1e-9:
        return 0.0, 0.0
    cosine = (motion.dx * direction_xy[0] + motion.dy * direction_xy[1]) / motion.magnitude
    score = cosine * min(1.0, motion.magnitude / params.min_magnitude)
    return float(cosine), float(max(-1.0, min(1.0, score)))


def label_sides(label: AuLabel) -> tuple[str, ...]:
    """The sides a label speaks of: its prefix, or both when it has none."""
    return (label.side,) if label.side else SIDES


def score_au(label: AuLabel, motions: dict[tuple[str, str], RegionMotion], params: EvidenceParameters) -> list[AuEvidence]:
    """Evidence rows for one labelled AU: one per region it moves and side it names.

    An AU without a motion definition in the FACS table yields no rows (nothing to check).
    """
    spec = au_spec(label.au)
    if spec is None:
        return []
    rows = []
    primary_region = spec.primary.region
    for motion_spec in spec.motions:
        for side in label_sides(label):
            motion = motions[(motion_spec.region, side)]
            cosine, score = _agreement(motion, motion_spec.direction_xy(side), params)
            supported = motion.magnitude >= params.min_magnitude and cosine >= params.min_cosine
            rows.append(AuEvidence(label.au, side, motion_spec.region, score, supported, motion.magnitude, motion_spec.region == primary_region))
    return rows


def score_labels(labels: Sequence[AuLabel], motions: Sequence[RegionMotion], params: EvidenceParameters) -> list[AuEvidence]:
    _require_calibrated(params)
    by_key = {(m.region, m.side): m for m in motions}
    return [row for label in labels for row in score_au(label, by_key, params)]


def supported_aus(evidence: Sequence[AuEvidence]) -> list[tuple[int, str | None, float]]:
    """(au, side, magnitude) the dual constraint supports, by the AU's primary region.

    An unsided label supported on both sides comes back once with side None.
    """
    per_au: dict[int, dict[str, float]] = {}
    order: list[int] = []
    for row in evidence:
        if row.primary and row.supported:
            if row.au not in per_au:
                per_au[row.au] = {}
                order.append(row.au)
            per_au[row.au][row.side] = row.magnitude
    result = []
    for au in order:
        sides = per_au[au]
        if set(sides) == set(SIDES):
            result.append((au, None, max(sides.values())))
        else:
            for side, magnitude in sides.items():
                result.append((au, side, magnitude))
    return result


# Regions that share skin: a strong motion in one drags its neighbours along (brows -> upper lid,
# upper lip -> nose wing, ...). Used to tell such spill from motion of its own.
ADJACENT_REGIONS = {
    "inner_brow": ("outer_brow", "upper_lid"),
    "outer_brow": ("inner_brow", "upper_lid"),
    "upper_lid": ("inner_brow", "outer_brow", "lower_lid"),
    "lower_lid": ("upper_lid", "cheek"),
    "cheek": ("lower_lid", "nose_wing", "lip_corner"),
    "nose_wing": ("cheek", "upper_lip", "lip_corner"),
    "upper_lip": ("nose_wing", "lip_corner"),
    "lip_corner": ("upper_lip", "cheek", "chin"),
    "chin": ("lip_corner",),
}


def is_spill(motion: RegionMotion, supported: dict[tuple[str, str | None], RegionMotion], params: EvidenceParameters) -> bool:
    """True when an adjacent region on the same side, moved by a supported labelled AU, is at least
    `spill_ratio` times stronger and (anti)parallel: the motion is dragged skin, not a new AU."""
    for neighbour in ADJACENT_REGIONS.get(motion.region, ()):
        source = supported.get((neighbour, motion.side))
        if source is None or source.magnitude < params.spill_ratio * motion.magnitude:
            continue
        cosine = (source.dx * motion.dx + source.dy * motion.dy) / max(source.magnitude * motion.magnitude, 1e-12)
        if abs(cosine) >= params.spill_cosine:
            return True
    return False


def find_unlabelled_motion(
    motions: Sequence[RegionMotion],
    labels: Sequence[AuLabel],
    params: EvidenceParameters,
    evidence: Sequence[AuEvidence] = (),
) -> list[UnlabelledMotion]:
    """Strong coherent motion in a (region, side) no labelled AU moves; best-fitting AU named.

    The best-fitting AU is the one of the FACS table whose direction in that region agrees best
    (highest score); `au` is None when no AU's direction is within acos(min_cosine). Motion that
    is spill from a neighbouring region with supported labelled motion (`is_spill`; needs the
    sample's `evidence`) is not recorded.
    """
    _require_calibrated(params)
    by_key = {(m.region, m.side): m for m in motions}
    supported = {(e.region, e.side): by_key[(e.region, e.side)] for e in evidence if e.supported and (e.region, e.side) in by_key}
    covered = set()
    for label in labels:
        spec = au_spec(label.au)
        if spec is None:
            continue
        for motion_spec in spec.motions:
            for side in label_sides(label):
                covered.add((motion_spec.region, side))
    found = []
    for motion in motions:
        if (motion.region, motion.side) in covered:
            continue
        if motion.magnitude < params.strong_magnitude or motion.coherence < params.min_coherence:
            continue
        if is_spill(motion, supported, params):
            continue
        best_au, best_score, best_cosine = None, -1.0, -1.0
        for spec in AU_TABLE.values():
            for motion_spec in spec.motions:
                if motion_spec.region != motion.region:
                    continue
                cosine, score = _agreement(motion, motion_spec.direction_xy(motion.side), params)
                # the AU's main region wins ties (AU12 over AU6 for a lip corner)
                key = (round(cosine, 6), motion_spec.weight)
                if best_au is None or key > (round(best_cosine, 6), best_weight):
                    best_au, best_score, best_cosine, best_weight = spec.au, score, cosine, motion_spec.weight
        if best_cosine < params.min_cosine:
            best_au = None
        found.append(UnlabelledMotion(motion.region, motion.side, best_au, motion.magnitude, best_score))
    return found


def estimate_apex(frames: Sequence[int], values: Sequence[float]) -> int:
    """The frame where the motion curve peaks (the earliest one on a tie)."""
    if not frames:
        raise ValueError("an empty motion curve has no apex")
    values_n = np.asarray(values, dtype=np.float64)
    return int(frames[int(np.argmax(values_n))])


def curve_values_from_region_means(means_fr2: np.ndarray, top: int = 3) -> np.ndarray:
    """`curve_value` of F frames from their (F, R, 2) region mean vectors: per frame, the mean
    magnitude of the `top` largest."""
    magnitudes_fr = np.hypot(means_fr2[..., 0], means_fr2[..., 1])
    if magnitudes_fr.shape[-1] == 0:
        return np.zeros(magnitudes_fr.shape[:-1])
    return np.sort(magnitudes_fr, axis=-1)[..., ::-1][..., :top].mean(axis=-1)


def curve_value(motions: Sequence[RegionMotion], top: int = 3) -> float:
    """One number per frame for the motion curve: mean magnitude of the `top` most moving regions."""
    magnitudes = sorted((m.magnitude for m in motions), reverse=True)[:top]
    return float(np.mean(magnitudes)) if magnitudes else 0.0
