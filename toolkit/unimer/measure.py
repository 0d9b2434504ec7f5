"""Pass 1 of Uni-MER for one sample: face, motion curve, onset->apex flow, region motion.

Stages (each a plain function): onset frame (full and half size) -> dlib face box on a shrunk
copy -> 68 landmarks, refitted in the box they imply (face) -> aligned face crop (flow.crop)
-> onset->t motion curve on a half-size crop (frames spread evenly in time), apex estimate where the
   sheet gives no usable apex ('/', 0, outside onset..offset)
(au.evidence) -> onset->apex flow, head-motion compensation, strain (flow) -> region motion.

Frames decoded per sample: onset and apex at full size (face, apex flow) and `curve_points`
frames from onset to offset (offset included) decoded at half size by the JPEG decoder itself
(DCT scaling) for the motion curve; where the apex must be estimated, the frames around the
coarse peak are added at the same half size. The AU evidence needs thresholds calibrated on the
whole run, so it is scored afterwards (`mertk.unimer.rows.score_run`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import cv2
import numpy as np

from mertk.au.evidence import (
    AuEvidence,
    RegionMotion,
    UnlabelledMotion,
    box_means,
    box_slices,
    curve_values_from_region_means,
    estimate_apex,
    measure_regions,
)
from mertk.au.facs import RegionBox, region_boxes, rigid_reference_box
from mertk.au.flow_reading import FlowAu, Settlement
from mertk.corpora.casme2 import MerSample
from mertk.face import FaceBox, FaceLandmarks, box_from_landmarks, detect_face, find_face, landmarks_68
from mertk.flow import compensate_head_motion, estimate_flow, median_of_rows, optical_strain
from mertk.flow.crop import FaceAlignment, align_face
from mertk.shards.manifest import Rejection
from mertk.unimer.frames import OnsetFrames, SampleError, curve_frame_numbers, frames_within, read_gray, read_onset
from mertk.unimer.parameters import COMPACT_SIZE, FACE_PNG_SIZE, MIN_IOD_PX, UnimerParameters


@dataclass
class SampleMeasurement:
    """Pass-1 result of one sample: everything but the texts."""

    sample: MerSample
    apex_frame: int
    apex_estimated: bool
    face_detected: bool
    inter_ocular_px: float
    head_motion_px: tuple[float, float]
    regions: list[RegionMotion]
    evidence: list[AuEvidence]  # filled after pass 1, once the thresholds are calibrated
    unlabelled: list[UnlabelledMotion]
    curve_frames: list[int]
    curve_values: list[float]
    apex_flow_3hw: np.ndarray  # float32 (3, 28, 28): u, v (percent IOD), strain
    apex_face_png: bytes
    region_boxes_crop: list[tuple[str, str, float, float, float, float]]  # for the report, crop pixels
    # filled with the evidence: alternatives ('or') settled by the flow, and for clips without AU
    # coding the AUs the flow alone suggests (mertk.au.flow_reading)
    settlements: list[Settlement] = field(default_factory=list)
    flow_aus: list[FlowAu] = field(default_factory=list)


def detect_onset_box(onset_hw: np.ndarray, params: UnimerParameters, half_hw: np.ndarray | None = None) -> FaceBox | None:
    """dlib face box on shrunk copies of the onset frame (the tightest one), or None.

    The detector runs at each of `detect_widths` (cheap: a 640x480 frame shrunk to 240 pixels
    wide still holds CASME II faces above the detector's 80 px window). dlib's box size is
    quantised by its image pyramid (steps of 1.2), and a box one step too large makes the
    68-point fit swell (eye distance up by a third, every region misplaced): `face_from_box`
    therefore fits the landmarks again in the box they imply (`box_refits`). That refit does not
    always shrink it back (a swollen fit can imply its own box again, as on some 256x192
    faces), so the default runs two widths 6/7 apart, whose pyramid steps interleave, and keeps
    the tighter box (twice the detector's cost, still small beside the flow).
    """
    height, width = onset_hw.shape
    boxes = []
    for scale in sorted({min(1.0, target / width) for target in params.detect_widths}):
        # `half_hw` (the frame decoded at half size) is shrunk instead where it is large enough.
        source = half_hw if half_hw is not None and scale <= half_hw.shape[1] / width else onset_hw
        small = onset_hw if scale == 1.0 else cv2.resize(source, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        box = detect_face(small, upsample=params.detect_upsample)
        if box is not None:
            boxes.append(FaceBox(
                max(0, int(box.left / scale)), max(0, int(box.top / scale)),
                min(width, int(round(box.right / scale))), min(height, int(round(box.bottom / scale))), box.score,
            ))
    return min(boxes, key=lambda b: b.width) if boxes else None


def face_from_box(onset_hw: np.ndarray, box: FaceBox | None, params: UnimerParameters) -> FaceLandmarks:
    """68 landmarks at full size in the detected box, refitted `box_refits` times in the box they
    imply; without a box, detection at full size, then the whole frame (`detected` False)."""
    if box is not None:
        points = landmarks_68(onset_hw, box, params.predictor)
        for _ in range(params.box_refits):
            implied = box_from_landmarks(points, onset_hw.shape)
            if min(implied.width, implied.height) < MIN_IOD_PX:  # a fit off the frame: keep the detector's box
                break
            box = replace(implied, score=box.score)
            points = landmarks_68(onset_hw, box, params.predictor)
        return FaceLandmarks(box=box, points_68_2=points, detected=True)
    return find_face(onset_hw, params.predictor, upsample=params.detect_upsample)


@dataclass
class _CurveContext:
    alignment: FaceAlignment
    onset_small_hw: np.ndarray
    region_boxes_small: list[RegionBox]
    rigid_slices: tuple[slice, slice]  # rows, columns of the rigid reference box
    iod_px: float


def curve_points(context: _CurveContext, sample: MerSample, numbers: Sequence[int], method: str) -> dict[int, float]:
    """Per frame, the curve value (au.evidence.curve_values_from_region_means) of the head-
    compensated onset->frame flow on the small crop. The compensated fields are never built:
    region means are linear, so each frame's head vector is subtracted from its region means,
    and the region means of all frames come from one slice of the stacked fields per region."""
    curve = {n: 0.0 for n in numbers if n == sample.onset_frame}
    moving = [n for n in numbers if n != sample.onset_frame]
    if not moving:
        return curve
    size = context.onset_small_hw.shape[0]
    flows_fhw2 = np.stack(
        [estimate_flow(context.onset_small_hw, context.alignment.warp(read_gray(sample, n, half=True), frame_scale=0.5, size=size), method) for n in moving]
    )
    rows, columns = context.rigid_slices
    rigid_kf2 = flows_fhw2[:, rows, columns].reshape(len(moving), -1, 2).transpose(1, 0, 2)
    heads_f2 = median_of_rows(rigid_kf2) if rigid_kf2.shape[0] else np.zeros((len(moving), 2), np.float32)
    means_rf2, present_r = box_means(flows_fhw2, context.region_boxes_small, row_axis=1)
    compensated_fr2 = (means_rf2 - present_r[:, None, None] * heads_f2[None]).transpose(1, 0, 2) * (100.0 / context.iod_px)
    curve.update(zip(moving, curve_values_from_region_means(compensated_fr2).tolist()))
    return curve


def _scaled_box(box: RegionBox, scale: float) -> RegionBox:
    return RegionBox(box.region, box.side, box.x0 * scale, box.y0 * scale, box.x1 * scale, box.y1 * scale)


def locate_onset_face(sample: MerSample, params: UnimerParameters) -> tuple[OnsetFrames, FaceLandmarks]:
    """The onset frame (grey, full and half size) and its face; raises SampleError."""
    onset = read_onset(sample)
    return onset, face_from_box(onset.full_hw, detect_onset_box(onset.full_hw, params, onset.half_hw), params)


def measure_sample(sample: MerSample, params: UnimerParameters, onset_face: tuple[OnsetFrames, FaceLandmarks] | None = None) -> SampleMeasurement:
    """Pass 1 for one sample; raises SampleError with a reason for the manifest.

    `onset_face`: the result of `locate_onset_face` when the caller ran it already."""
    onset, face = onset_face if onset_face is not None else locate_onset_face(sample, params)
    onset_hw = onset.full_hw
    if face.inter_ocular_px < MIN_IOD_PX:
        raise SampleError(f"{sample.sample_id}: no usable face on the onset frame (eye distance {face.inter_ocular_px:.1f} px)")
    alignment = align_face(face.points_68_2, params.crop_size)
    points_crop = alignment.points_to_crop(face.points_68_2)

    # Motion curve onset -> t on a half-size crop.
    small = params.curve_crop_size
    # Boxes are linear in the landmarks: those of the small crop are the crop's, scaled (exactly,
    # for the default power-of-two ratio 112 / 224).
    boxes = region_boxes(points_crop)
    rigid_box = rigid_reference_box(points_crop)
    scale = small / params.crop_size
    context = _CurveContext(
        alignment=alignment,
        onset_small_hw=alignment.warp(onset.half_hw, frame_scale=0.5, size=small),
        region_boxes_small=[_scaled_box(b, scale) for b in boxes.values()],
        rigid_slices=box_slices(_scaled_box(rigid_box, scale), (small, small)),
        iod_px=alignment.iod_px * small / params.crop_size,
    )
    curve = curve_points(context, sample, curve_frame_numbers(sample, params.curve_points), params.curve_flow_method)
    apex, apex_estimated = sample.apex_frame, False
    if apex is None:
        coarse = sorted(curve)
        peak = estimate_apex(coarse, [curve[n] for n in coarse])
        # refine within one coarse step of the peak, as a time span (the same at any frame rate)
        step_s = (coarse[-1] - coarse[0]) / max(len(coarse) - 1, 1) / sample.fps
        refine = [n for n in frames_within(sample, peak, step_s) if n not in curve]
        curve.update(curve_points(context, sample, refine, params.curve_flow_method))
        frames = sorted(curve)
        apex, apex_estimated = estimate_apex(frames, [curve[n] for n in frames]), True
    curve_frames = sorted(curve)

    # Onset -> apex flow on the full crop.
    onset_crop = alignment.warp(onset_hw)
    apex_crop = alignment.warp(read_gray(sample, apex)) if apex != sample.onset_frame else onset_crop
    flow_hw2 = estimate_flow(onset_crop, apex_crop, params.flow_method)
    flow_hw2, head_2 = compensate_head_motion(flow_hw2, rigid_box.mask(flow_hw2.shape[:2]))
    strain_hw = optical_strain(flow_hw2)
    flow_pct_hw2 = flow_hw2 * (100.0 / alignment.iod_px)
    regions = measure_regions(flow_pct_hw2, strain_hw, boxes.values())

    compact = np.stack(
        [
            cv2.resize(flow_pct_hw2[..., 0], (COMPACT_SIZE, COMPACT_SIZE), interpolation=cv2.INTER_AREA),
            cv2.resize(flow_pct_hw2[..., 1], (COMPACT_SIZE, COMPACT_SIZE), interpolation=cv2.INTER_AREA),
            cv2.resize(strain_hw, (COMPACT_SIZE, COMPACT_SIZE), interpolation=cv2.INTER_AREA),
        ]
    ).astype(np.float32)
    face_small = cv2.resize(apex_crop, (FACE_PNG_SIZE, FACE_PNG_SIZE), interpolation=cv2.INTER_AREA)
    ok, png = cv2.imencode(".png", face_small)
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 image
        raise SampleError(f"{sample.sample_id}: could not encode the apex face crop")
    return SampleMeasurement(
        sample=sample,
        apex_frame=int(apex),
        apex_estimated=apex_estimated,
        face_detected=face.detected,
        inter_ocular_px=float(face.inter_ocular_px),
        head_motion_px=(float(head_2[0]), float(head_2[1])),
        regions=regions,
        evidence=[],
        unlabelled=[],
        curve_frames=curve_frames,
        curve_values=[float(curve[n]) for n in curve_frames],
        apex_flow_3hw=compact,
        apex_face_png=png.tobytes(),
        region_boxes_crop=[(b.region, b.side, b.x0, b.y0, b.x1, b.y1) for b in boxes.values()],
    )


def measure_chunk(samples: Sequence[MerSample], params: UnimerParameters) -> list[SampleMeasurement | Rejection]:
    """Pass 1 for one chunk; a sample that cannot be measured becomes a Rejection.

    Stage by stage over the whole chunk: onset frames and face boxes, then the 68 landmarks,
    then the flows. The 68-point model (about 100 MB of regression trees) then stays in the CPU
    caches from one face to the next instead of being evicted by the detector and the flow of
    every sample in between.

    OpenCV's own threads are the caller's choice: `mertk.execution.measure_pool` runs chunks
    with one OpenCV thread per process (one process per core; the flow is then bit-identical
    from run to run)."""
    onsets: list[tuple[OnsetFrames, FaceBox | None] | SampleError] = []
    for sample in samples:
        try:
            onset = read_onset(sample)
            onsets.append((onset, detect_onset_box(onset.full_hw, params, onset.half_hw)))
        except SampleError as error:
            onsets.append(error)
    faces = [item if isinstance(item, SampleError) else (item[0], face_from_box(item[0].full_hw, item[1], params)) for item in onsets]
    results: list[SampleMeasurement | Rejection] = []
    for sample, onset_face in zip(samples, faces):
        try:
            if isinstance(onset_face, SampleError):
                raise onset_face
            results.append(measure_sample(sample, params, onset_face))
        except SampleError as error:
            results.append(Rejection(input=sample.sample_id, reason=f"{sample.source}: {error}", file=str(sample.frame_path(sample.onset_frame).parent)))
    return results
