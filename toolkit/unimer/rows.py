"""Pass 2 of Uni-MER: evidence scored with thresholds calibrated on the whole run, captions,
instructions and the unimer_sample rows (a sample's texts and row are plain functions of its
measurement and the run's intensity bins)."""
from __future__ import annotations

from dataclasses import asdict
from typing import Sequence

import numpy as np

from mertk.au.evidence import EvidenceParameters, calibrate_thresholds, find_unlabelled_motion, score_labels, supported_aus
from mertk.au.flow_reading import flow_only_aus, settle_alternatives
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


def scored_labels(m: SampleMeasurement) -> list[AuLabel]:
    """The sheet's definite AUs and, of each alternative group, the option the flow settled on."""
    labels = list(m.sample.au_labels)
    for settlement in m.settlements:
        labels.extend(label for label in settlement.chosen_labels if label not in labels)
    return labels


def score_measurement(m: SampleMeasurement, evidence_params: EvidenceParameters) -> SampleMeasurement:
    """The dual constraint on one measured sample, with calibrated thresholds: alternatives are
    settled by the flow first (the chosen option is then scored like a labelled AU); a clip
    without AU coding gets the AUs the flow alone suggests instead (mertk.au.flow_reading)."""
    m.settlements = settle_alternatives(m.sample.au_alternatives, m.regions, evidence_params)
    labels = scored_labels(m)
    m.evidence = score_labels(labels, m.regions, evidence_params)
    m.unlabelled = find_unlabelled_motion(m.regions, labels, evidence_params, m.evidence)
    m.flow_aus = [] if m.sample.has_au_coding else flow_only_aus(m.regions, evidence_params)
    return m


def au_source(m: SampleMeasurement) -> str:
    return "labels" if m.sample.has_au_coding else "flow"


def supported_magnitudes(measurements: Sequence[SampleMeasurement]) -> list[float]:
    return [magnitude for m in measurements for _, _, magnitude in supported_aus(m.evidence)] + [f.magnitude for m in measurements for f in m.flow_aus]


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
    if not m.sample.has_au_coding:  # what the flow alone shows, named with its best-fitting AU
        supported = tuple(SupportedMotion(f.au, f.side, f.magnitude) for f in m.flow_aus)
        for f in m.flow_aus:
            for key in f.regions:
                supported_keys.setdefault(key, f.au)
    unlabelled_keys = {(u.region, u.side) for u in m.unlabelled}
    supported_au_set = {s.au for s in supported}
    unsupported = tuple(dict.fromkeys(label.au for label in scored_labels(m) if label.au not in supported_au_set))
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
        fps=m.sample.fps,
        au_source=au_source(m),
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
        "offset_estimated": s.offset_estimated,
        "fps": s.fps,
        "emotion": s.emotion,
        "emotion_5class": s.emotion_5class,
        "emotion_3class": s.emotion_3class,
        "protocol_labels": [{"protocol": protocol, "label": label} for protocol, label in s.protocol_labels],
        "objective_class": s.objective_class,
        "au_labels": _label_rows(s.au_labels),
        "au_alternatives": [
            {"options": " or ".join("+".join(str(l) for l in option) for option in t.options), "chosen": "+".join(str(l) for l in t.chosen_labels) or None}
            for t in m.settlements
        ],
        "au_uncertain": s.au_uncertain,
        "au_source": au_source(m),
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
    peak_ms = [1000.0 * abs(m.curve_frames[int(np.argmax(m.curve_values))] - m.apex_frame) / m.sample.fps for m in labelled_apex]
    datasets: dict[str, int] = {}
    for m in measurements:
        datasets[m.sample.dataset] = datasets.get(m.sample.dataset, 0) + 1
    return {
        "samples_measured": len(measurements),
        "faces_not_detected": sum(not m.face_detected for m in measurements),
        "apex_estimated": sum(m.apex_estimated for m in measurements),
        "labelled_au_rows": len(evidence_rows),
        "labelled_au_rows_supported": sum(e.supported for e in evidence_rows),
        "unlabelled_motions": sum(len(m.unlabelled) for m in measurements),
        "curve_peak_median_frames_from_coded_apex": float(np.median(peak_offsets)) if peak_offsets else None,
        "curve_peak_median_ms_from_coded_apex": float(np.median(peak_ms)) if peak_ms else None,
        "layout": listing.layout,
        "datasets": dict(sorted(datasets.items())),
        "captions_from_flow": sum(not m.sample.has_au_coding for m in measurements),
        "au_uncertain": sum(m.sample.au_uncertain for m in measurements),
        "alternatives": sum(len(m.settlements) for m in measurements),
        "alternatives_settled_by_flow": sum(t.chosen is not None for m in measurements for t in m.settlements),
    }
