"""Pass 2 of Uni-MER: evidence scored with thresholds calibrated on the whole run, captions,
instructions and the unimer_sample rows (a sample's texts and row are plain functions of its
measurement and the run's intensity bins)."""
from __future__ import annotations

from dataclasses import asdict
from typing import Sequence

import numpy as np

from mertk.au.evidence import EvidenceParameters, calibrate_thresholds, find_unlabelled_motion, score_labels, supported_aus
from mertk.au.facs import AuLabel
from mertk.captions import (
    IntensityBins,
    MotionSummary,
    SupportedMotion,
    build_instructions,
    calibrate_intensity_bins,
    compose_caption,
)
from mertk.captions.instructions import RegionAnswer
from mertk.corpora.casme2 import CorpusListing
from mertk.shards.manifest import Rejection, ShardResult
from mertk.shards.schema import load_schema
from mertk.unimer.measure import SampleMeasurement
from mertk.unimer.parameters import SCHEMA_NAME, SCHEMA_VERSION, UnimerParameters


def score_measurement(m: SampleMeasurement, evidence_params: EvidenceParameters) -> SampleMeasurement:
    """The dual constraint on one measured sample, with calibrated thresholds."""
    m.evidence = score_labels(m.sample.au_labels, m.regions, evidence_params)
    m.unlabelled = find_unlabelled_motion(m.regions, m.sample.au_labels, evidence_params, m.evidence)
    return m


def supported_magnitudes(measurements: Sequence[SampleMeasurement]) -> list[float]:
    return [magnitude for m in measurements for _, _, magnitude in supported_aus(m.evidence)]


def score_run(measurements: Sequence[SampleMeasurement], params: UnimerParameters) -> tuple[EvidenceParameters, IntensityBins]:
    """Calibrate the evidence thresholds on every region's motion of the run, score each
    measurement's AU evidence with them, then calibrate the intensity bins on the supported
    magnitudes. Returns the thresholds used and the bins."""
    evidence_params = calibrate_thresholds(params.evidence, [r.magnitude for m in measurements for r in m.regions])
    for m in measurements:
        score_measurement(m, evidence_params)
    return evidence_params, calibrate_intensity_bins(supported_magnitudes(measurements), params.intensity_quantiles)


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
